"""The ``batch`` migration line (``{prefix}batches``, ``{prefix}batch_jobs``).

Version 1 creates both tables. The line is chancy's own (Chancy 0.26 has no batches).
"""
