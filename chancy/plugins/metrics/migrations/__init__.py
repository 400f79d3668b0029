"""The metrics plugin's migration line ("metrics").

It starts at version 4: Chancy 0.26's own metrics line reached version 3, and its data is
disposable, so version 4 replaces whatever table an older install left with chancy's.
"""
