"""Load named queries from ``.sql`` files once, with the table prefix filled in.

A file holds blocks introduced by ``-- name: query_name``; everything up to the next such line
is that query. ``{prefix}`` in the text becomes the installation's prefix (validated to letters,
digits and ``_``, so substitution cannot inject SQL). Values are always bound parameters.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import LiteralString, cast

from chancy.errors import ConfigurationError

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is safe to use in identifiers, else raise ConfigurationError."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ConfigurationError(
            f"prefix {prefix!r} is invalid: use 1-40 letters, digits and '_', starting with a"
            " letter or '_' (for example 'chancy_' or 'app1_')"
        )
    return prefix


def parse(text: str) -> dict[str, str]:
    """Split the text of a ``.sql`` file into ``{name: query}``."""
    queries: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        name = match.group(1)
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body
    return queries


@functools.cache
def _raw(package: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    for entry in sorted(resources.files(package).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, body in parse(entry.read_text(encoding="utf-8")).items():
                if name in queries:
                    raise ValueError(f"query {name!r} is defined in two files of {package}")
                queries[name] = body
    return queries


def fill(text: str, prefix: str) -> LiteralString:
    """Put the (checked) prefix into a query's text."""
    return cast(LiteralString, text.replace("{prefix}", check_prefix(prefix)))


class Queries:
    """The named queries of one package's ``sql/`` folder, for one prefix."""

    def __init__(self, package: str, prefix: str) -> None:
        check_prefix(prefix)
        self._q = {name: fill(body, prefix) for name, body in _raw(package).items()}

    def __getitem__(self, name: str) -> LiteralString:
        return self._q[name]

    def __contains__(self, name: str) -> bool:
        return name in self._q

    def names(self) -> list[str]:
        return sorted(self._q)
