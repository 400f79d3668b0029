"""Installing chancy into one's own project works as docs/index.md says.

The wheel that ``python3 dev.py wheel`` builds is installed with its extras into a fresh
virtualenv outside the repository, and the README's seed example runs there against a real
server (a database of its own, since the example uses the default table prefix).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def seed_example() -> str:
    """The README's seed example (its first Python block)."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"## Seed example\s+```python\n(.*?)```", readme, re.S)
    assert found, "README.md has no seed example"
    return found.group(1)


@pytest.fixture
def own_database(dsn: str) -> Iterator[str]:
    name = f"chancy_wheel_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    try:
        yield make_conninfo("", **params)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def test_the_built_wheel_installs_with_its_extras_and_runs_the_seed_example(
    own_database: str,
) -> None:
    outside = Path(tempfile.mkdtemp(prefix="chancy-wheel-"))
    try:
        built = subprocess.run(
            [sys.executable, str(ROOT / "dev.py"), "wheel", str(outside / "dist")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert built.returncode == 0, built.stdout + built.stderr
        wheel = next((outside / "dist").glob("chancy-*.whl"))
        # The command the docs give, in a fresh virtualenv outside the repository.
        assert f"pip install 'chancy[all] @ file://{wheel}'" in built.stdout
        venv = outside / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        python = str(venv / "bin" / "python")
        installed = subprocess.run(
            [
                *(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
                *("-c", str(ROOT / "constraints.txt"), f"chancy[all] @ {wheel.as_uri()}"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
        script = outside / "seed.py"
        script.write_text(seed_example().replace("postgresql://localhost/mydb", own_database))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHANCY_", "PYTHON"))}
        where = subprocess.run(
            [python, "-c", "import chancy, starlette, click; print(chancy.__file__)"],
            capture_output=True,
            text=True,
            cwd=outside,
            env=env,
            check=True,
        ).stdout.strip()
        assert Path(where).is_relative_to(venv), where  # the wheel, not this checkout
        ran = subprocess.run(
            [python, str(script)],
            capture_output=True,
            text=True,
            cwd=outside,
            env=env,
            timeout=120,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert ran.stdout.strip() == "succeeded sent", ran.stdout
    finally:
        shutil.rmtree(outside, ignore_errors=True)
