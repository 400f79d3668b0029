"""Every Python example in ``docs/`` runs, against a fresh database of its own.

Each page's blocks run in order in one namespace (top-level ``await`` allowed) in a
subprocess whose ``CHANCY_DSN`` names a database created for the page and dropped after. A
block marked ``<!-- not-run: tests/... -->`` is skipped, and the named test must exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.docs.run_page import blocks

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if blocks(p.read_text()))


def test_not_run_blocks_name_an_existing_test() -> None:
    for page in (ROOT / "docs").rglob("*.md"):
        for why, _, line in blocks(page.read_text()):
            if why is not None:
                target = why.split()[0]
                assert (ROOT / target).exists(), f"{page}:{line}: not-run names {target!r}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run(dsn: str, page: Path) -> None:
    name = f"docs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        page_dsn = make_conninfo("", **{**conninfo_to_dict(dsn), "dbname": name})
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANCY_")}
        env["CHANCY_DSN"] = page_dsn
        result = subprocess.run(
            [sys.executable, "-m", "tests.docs.run_page", str(page)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        runnable = sum(1 for why, _, _ in blocks(page.read_text()) if why is None)
        assert result.stdout.strip().splitlines()[-1] == f"ran {runnable} blocks", result.stdout
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.mark.slow
def test_the_docs_build_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "WARNING" not in result.stderr, result.stderr[-5000:]
    built = (tmp_path / "site" / "reference" / "app" / "index.html").read_text()
    assert "sync_push_many" in built  # the API reference is generated from the docstrings
