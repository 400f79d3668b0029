"""The layering rules of docs/architecture.md, checked on the source tree.

- Every named query in a ``.sql`` file is used by some code (a query nobody runs is either dead
  or run under another name by mistake).
- No ``.py`` file under ``chancy/`` holds SQL text, except ``chancy.rule``, which compiles rules
  into fragments: statements live in ``.sql`` files.
- Nothing outside the store calls the app's private runners, and no plugin is found by its
  class name or by probing for attributes: plugins declare what they provide on ``Plugin``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from chancy.store.loader import parse

ROOT = Path(__file__).resolve().parent.parent / "chancy"

#: SQL statements as they are written in the .sql files (keywords in capitals).
_SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b"
    r"|\bINSERT\s+INTO\b"
    r"|\bUPDATE\s+\S+\s+(?:AS\s+\w+\s+)?SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|DROP|ALTER)\s+(?:OR\s+REPLACE\s+)?(?:TABLE|INDEX|FUNCTION|TRIGGER|SCHEMA)\b"
    r"|^\s*(?:LISTEN|UNLISTEN|NOTIFY)\s+\w+\s*;?\s*$"
    r"|\bpg_(?:advisory|try_advisory|notify)\w*\s*\("
)


def _python_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "migrations" not in p.parts)


def _sql_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.sql") if "migrations" not in p.parts)


def _strings(tree: ast.AST) -> list[ast.Constant]:
    """The string constants of a module, docstrings left out."""
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            docstrings.add(id(body[0].value))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def test_every_named_query_is_used() -> None:
    literals: set[str] = set()
    for path in _python_files():
        literals.update(node.value for node in _strings(ast.parse(path.read_text())))
    fragments = set(parse((ROOT / "store/fragments/fragments.sql").read_text()))
    unused = []
    for path in _sql_files():
        for name in parse(path.read_text()):
            if name not in literals and name not in fragments:
                unused.append(f"{path.relative_to(ROOT)}: {name}")
    assert not unused, f"named queries no code uses: {unused}"


def test_no_sql_text_in_python_outside_rule() -> None:
    found = []
    for path in _python_files():
        if path.parent == ROOT / "rule":
            continue
        for node in _strings(ast.parse(path.read_text())):
            if _SQL.search(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
    assert not found, "SQL text belongs in a .sql file:\n" + "\n".join(found)


def test_the_detector_sees_sql() -> None:
    """The two tests above would notice: the patterns match real statements."""
    for text in (
        "SELECT id FROM chancy_jobs",
        "INSERT INTO x (a) VALUES (1)",
        "UPDATE chancy_jobs AS j SET state = 'x'",
        "DELETE FROM chancy_jobs",
        "DROP TABLE IF EXISTS x",
        "LISTEN chancy_events",
        "SELECT pg_try_advisory_lock(1)",
    ):
        assert _SQL.search(text), text
    assert not _SQL.search("LISTEN connection lost (%s); reconnecting")


def test_no_private_runner_outside_the_store() -> None:
    from chancy import Chancy

    assert not [name for name in dir(Chancy) if name.startswith("_run")]
    pattern = re.compile(r"\b(?:chancy|app)\._run(?:_sync|_ex|_ex_sync)?\(")
    found = [
        f"{path.relative_to(ROOT)}"
        for path in _python_files()
        if path.parent.name != "store" and pattern.search(path.read_text())
    ]
    assert not found, f"private runners called outside the store: {found}"


def test_no_plugin_found_by_name_or_probing() -> None:
    patterns = [
        re.compile(r"__name__\s*==\s*[\"'][A-Z]"),
        re.compile(r"hasattr\((?:plugin|p|installed)\b"),
        re.compile(r"getattr\((?:plugin|p|installed)\b"),
        re.compile(r"[\"']chancy\.[a-z_]+[\"']\s+(?:not\s+)?in\s+(?:self\.)?chancy\.plugins"),
    ]
    found = []
    for path in _python_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(p.search(line) for p in patterns):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "plugins are found by what they declare:\n" + "\n".join(found)


def test_no_module_over_500_lines() -> None:
    """One concept per file: a module past 500 lines is split (the UI's static files aside)."""
    found = {
        str(path.relative_to(ROOT)): n
        for path in ROOT.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not found, f"modules over 500 lines: {found}"
