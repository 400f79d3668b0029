"""A module that fails to import, for the CLI's --app error message."""

raise RuntimeError("this module cannot be imported")
