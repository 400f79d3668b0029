"""Start, find and stop one embedded server: initdb, pg_ctl and the list of attached processes.

Several processes may use one data directory. Each attached process is listed (by pid) in
``<data_dir>/.handle_pids.json``; the last one to leave stops the server. A process killed
without detaching stays listed, so dead pids are dropped before every change of the list.
Callers hold the data directory's lock (``install.file_lock``) around each function here.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from chancy.embedded.install import ACCOUNT, Binaries, check_free_space
from chancy.errors import ChancyError, ConfigurationError

logger = logging.getLogger("chancy.embedded")

PIDS_FILE = ".handle_pids.json"
#: The server listens only on a Unix socket in its data directory; the port only names the
#: socket file, so a server on TCP 5432 (or its socket in /var/run/postgresql) is never touched.
PORT = 5432
_START_TIMEOUT = 60


def _run(binaries: Binaries, args: list[str], *, as_account: bool, timeout: float) -> None:
    # PG* variables (PGPORT, PGDATA, PGHOST, ...) are meant for the user's own server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    kwargs: dict[str, Any] = {}
    if as_account:
        import pwd

        account = pwd.getpwnam(ACCOUNT)
        kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        env["HOME"] = "/nonexistent"
    result = subprocess.run(
        [binaries.exe(args[0]), *args[1:]],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, args[0], result.stdout, result.stderr
        )


def initialise(binaries: Binaries, data_dir: Path, *, as_root: bool) -> None:
    """Create the cluster in ``data_dir`` (trust auth, superuser ``postgres``, UTF-8)."""
    check_free_space(data_dir.parent, "a new embedded PostgreSQL data directory")
    data_dir.mkdir(mode=0o700, exist_ok=True)
    if as_root:
        import pwd

        account = pwd.getpwnam(ACCOUNT)
        os.chown(data_dir, account.pw_uid, account.pw_gid)
    try:
        _run(
            binaries,
            [
                *("initdb", "-D", str(data_dir), "-U", "postgres"),
                *("--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions"),
            ],
            as_account=as_root,
            timeout=120,
        )
    except subprocess.CalledProcessError as exc:
        raise ChancyError(
            f"initdb failed for the embedded PostgreSQL in {data_dir} (exit {exc.returncode}):"
            f" {(exc.stderr or exc.stdout or '').strip()[-1500:]}"
        ) from exc


def start(binaries: Binaries, data_dir: Path, *, as_root: bool) -> None:
    """Start the server of ``data_dir`` and wait until it accepts connections."""
    options = " ".join(
        shlex.quote(o)
        for o in (
            *("-c", "listen_addresses="),
            *("-c", f"unix_socket_directories={data_dir}"),
            *("-p", str(PORT)),
        )
    )
    try:
        _run(
            binaries,
            [
                *("pg_ctl", "-D", str(data_dir), "-l", str(data_dir / "log")),
                *("-o", options, "-w", "-t", str(_START_TIMEOUT), "start"),
            ],
            as_account=as_root,
            timeout=_START_TIMEOUT + 10,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise ChancyError(
            f"The embedded PostgreSQL server in {data_dir} did not start ({exc}). Its log"
            f" ends with:\n{log_tail(data_dir)}"
        ) from exc


def stop(binaries: Binaries, data_dir: Path, *, as_root: bool) -> None:
    """Stop the server (fast shutdown); signal the postmaster if pg_ctl cannot."""
    pid = postmaster_pid(data_dir)
    if pid is None:
        return
    try:
        _run(
            binaries,
            ["pg_ctl", "-D", str(data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
            as_account=as_root,
            timeout=40,
        )
        return
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        logger.warning("pg_ctl stop failed for %s (%s); signalling the server", data_dir, exc)
    deadline = time.monotonic() + 10
    for sig in (signal.SIGINT, signal.SIGQUIT):
        if not process_alive(pid):
            return
        os.kill(pid, sig)
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def check_version(binaries: Binaries, data_dir: Path) -> None:
    """Refuse a data directory made by another major version, before touching it."""
    try:
        version = (data_dir / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {data_dir / 'PG_VERSION'}: {exc}") from exc
    major = binaries.major()
    if version != major:
        raise ConfigurationError(
            f"The embedded PostgreSQL data directory {data_dir} was created by PostgreSQL"
            f" {version}, but the installed server is PostgreSQL {major}. Use another"
            " directory (CHANCY_EMBEDDED_DIR), or dump the old data with that version's"
            " pg_dump and delete the directory."
        )


# --- the attached processes -----------------------------------------------------------------


def attached(data_dir: Path) -> list[int]:
    """The live processes listed as attached (dead ones are dropped from the file)."""
    path = data_dir / PIDS_FILE
    try:
        listed = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        listed = None
    if not isinstance(listed, list):
        listed = []
    running = postmaster_pid(data_dir) is not None
    alive = [p for p in listed if isinstance(p, int) and running and process_alive(p)]
    if alive != listed:
        logger.info("dropping stale pids %s from %s", sorted(set(listed) - set(alive)), path)
        _write_pids(data_dir, alive)
    return alive


def set_attached(data_dir: Path, pids: list[int]) -> None:
    _write_pids(data_dir, pids)


def _write_pids(data_dir: Path, pids: list[int]) -> None:
    path = data_dir / PIDS_FILE
    tmp = path.with_name(f"{PIDS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(pids))
    os.replace(tmp, path)


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        # Field 3 of /proc/<pid>/stat is the state; a zombie has exited already.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the running postmaster of ``data_dir``, or None."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def read_postmaster(data_dir: Path) -> tuple[str, int]:
    """The DSN and pid from postmaster.pid: pid, data dir, start time, port, socket dir, ..."""
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    pid, port = int(lines[0]), int(lines[3])
    socket_dir = lines[4].strip() or str(data_dir)
    dsn = f"postgresql://postgres@/postgres?host={quote(socket_dir, safe='/')}&port={port}"
    return dsn, pid


def log_tail(data_dir: Path, lines: int = 20) -> str:
    try:
        return "\n".join((data_dir / "log").read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"
