"""The examples' tests use chancy's own pytest plugin, as a project would."""

from chancy.pytest_plugin import chancy_app, chancy_dsn, chancy_prefix

__all__ = ["chancy_app", "chancy_dsn", "chancy_prefix"]
