"""The ``workflow`` migration line (``{prefix}workflows``, ``{prefix}workflow_steps``).

It starts at version 3, the end state of Chancy's own workflow line (0.26), so a database made
by Chancy continues in place; versions 1 and 2 are not separate steps. Version 4 is chancy's:
the step state the leader keeps, and an index of steps by job id.
"""
