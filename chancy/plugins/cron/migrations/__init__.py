"""The ``cron`` migration line (``{prefix}cron``).

It starts at version 3, the end state of Chancy's own cron line (0.26), so a database made by
Chancy continues in place; versions 1 and 2 are not separate steps.
"""
