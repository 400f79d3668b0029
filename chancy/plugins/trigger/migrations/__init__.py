"""The ``trigger`` migration line (``{prefix}triggers`` and the functions its triggers run).

Version 1 is the end state of Chancy 0.26's own trigger line (the same table), so a database
made by 0.26 continues in place; version 2 adds row-level triggers and moves every installed
trigger onto ``{prefix}trigger_fire``, which pushes through ``{prefix}push``.
"""
