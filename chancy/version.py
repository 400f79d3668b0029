"""chancy's version, read from the installed distribution (pyproject.toml is the one source)."""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("chancy")
except metadata.PackageNotFoundError:  # run from a checkout that is not installed
    VERSION = "0.0.0+unknown"

__all__ = ["VERSION"]
