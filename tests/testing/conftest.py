"""The chancy pytest plugin's fixtures, as a user's conftest would enable them.

(``pytest_plugins`` may only be set in the root conftest, so they are imported here.)
"""

from chancy.pytest_plugin import chancy_app, chancy_dsn, chancy_prefix

__all__ = ["chancy_app", "chancy_dsn", "chancy_prefix"]
