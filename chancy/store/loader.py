"""Load named queries from ``.sql`` files once, with the table prefix filled in.

A file holds blocks introduced by ``-- name: query_name``; everything up to the next such line
is that query. ``{prefix}`` in the text becomes the installation's prefix (validated to letters,
digits and ``_``, so substitution cannot inject SQL). Values are always bound parameters.

A name in braces that ``chancy/store/fragments/fragments.sql`` defines (``{leader_fence}``,
the predicate every leader-only write carries) becomes that fragment's text.

A query whose comment holds the line ``-- plan: per run`` is planned on every execution, never
server-prepared (:func:`per_run`). Its plan on a tiny table reads the whole table, which is
the cheapest plan there; prepared (psycopg prepares a statement after five runs), the server
may keep that plan as its generic plan and go on using it once the table is big, until the
next ANALYZE. Planned per run, it is planned for the table as it is (tests/store/test_plans.py).

Every package's queries are read through :func:`queries`, the one cached loader.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import LiteralString, cast

from chancy.errors import ConfigurationError

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
_PER_RUN = re.compile(r"^--\s*plan:\s*per run\s*$", re.MULTILINE)
#: The filled text of every query marked ``-- plan: per run``, for every prefix loaded.
_per_run: set[str] = set()


def per_run(query: object) -> bool:
    """Whether ``query`` (a filled query's text) must be planned on every execution."""
    return isinstance(query, str) and query in _per_run


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


@functools.cache
def _fragments() -> dict[str, str]:
    """The fragments by ``{name}``, each with the fragments it uses already expanded."""
    raw = {"{" + name + "}": body for name, body in _raw("chancy.store.fragments").items()}
    expanded: dict[str, str] = {}

    def expand(name: str, seen: tuple[str, ...]) -> str:
        if name in seen:
            raise ValueError(f"fragment {name} includes itself: {' -> '.join(seen)}")
        if name not in expanded:
            body = raw[name]
            for inner in raw:
                if inner in body:
                    body = body.replace(inner, expand(inner, (*seen, name)))
            expanded[name] = body
        return expanded[name]

    return {name: expand(name, ()) for name in raw}


def fill(text: str, prefix: str) -> LiteralString:
    """Expand the shared fragments and put the (checked) prefix into a query's text."""
    for name, body in _fragments().items():
        text = text.replace(name, body)
    return cast(LiteralString, text.replace("{prefix}", check_prefix(prefix)))


class Queries:
    """The named queries of one package's ``sql/`` folder, for one prefix."""

    def __init__(self, package: str, prefix: str) -> None:
        check_prefix(prefix)
        self._q = {name: fill(body, prefix) for name, body in _raw(package).items()}
        _per_run.update(
            self._q[name] for name, body in _raw(package).items() if _PER_RUN.search(body)
        )

    def __getitem__(self, name: str) -> LiteralString:
        return self._q[name]

    def __contains__(self, name: str) -> bool:
        return name in self._q

    def names(self) -> list[str]:
        return sorted(self._q)


@functools.cache
def queries(package: str, prefix: str) -> Queries:
    """The named queries of ``package`` (a folder of ``.sql`` files) for one prefix, loaded
    once per process."""
    return Queries(package, prefix)
