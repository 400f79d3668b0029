"""A real PgBouncer in transaction pooling mode, started by a test in front of a server.

Debian's ``pgbouncer`` binary runs as a subprocess from a temporary directory, on a free port
of 127.0.0.1, with ``auth_type = trust``. Its pools are deliberately tiny and it sends no
reset query, so statements of different clients interleave on the same few server
connections: any session state, prepared statement or session lock one client left behind
is seen (or missed) by the next. ``config()`` is the file docs/pgbouncer.md shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import eventually_sync


def find_pgbouncer() -> str | None:
    """The ``pgbouncer`` binary (Debian puts it in /usr/sbin, often not on PATH)."""
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """``with PgBouncer(upstream_dsn) as b:`` a pooler at ``b.dsn`` (transaction mode)."""

    def __init__(self, upstream: str, *, pool_size: int = 2, max_clients: int = 400) -> None:
        binary = find_pgbouncer()
        if binary is None:
            raise FileNotFoundError("pgbouncer")
        self.binary = binary
        params = conninfo_to_dict(upstream)
        self.user = str(params.get("user") or "postgres")
        self.dbname = str(params.get("dbname") or self.user)
        self.upstream_host = str(params.get("host") or "127.0.0.1")
        self.upstream_port = str(params.get("port") or "5432")
        self.pool_size = pool_size
        self.max_clients = max_clients
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="chancy-pgbouncer-"))
        self.ini = self.root / "pgbouncer.ini"
        self.logfile = self.root / "pgbouncer.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """The pgbouncer.ini of the test (and of docs/pgbouncer.md)."""
        return f"""\
[databases]
{self.dbname} = host={self.upstream_host} port={self.upstream_port} dbname={self.dbname}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.root / "userlist.txt"}
admin_users = {self.user}
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = {self.max_clients}
; No reset query: transaction pooling never runs one anyway, and the test wants any state a
; client leaves behind to reach the next client.
server_reset_query =
logfile = {self.logfile}
"""

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def dsn_named(self, application_name: str) -> str:
        """``dsn`` with an application name (to find a client in ``SHOW CLIENTS``)."""
        params = conninfo_to_dict(self.dsn)
        params["application_name"] = application_name
        return make_conninfo("", **params)

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run a console command (``SHOW CLIENTS``, ``SHOW POOLS``...) and return its rows."""
        params = conninfo_to_dict(self.dsn)
        params["dbname"] = "pgbouncer"
        with psycopg.connect(make_conninfo("", **params), autocommit=True) as conn:
            cur = conn.execute(command)  # type: ignore[arg-type]
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def clients(self, application_name: str) -> int:
        """How many client connections carry ``application_name`` now."""
        return sum(
            1 for c in self.admin("SHOW CLIENTS") if c["application_name"] == application_name
        )

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def __enter__(self) -> PgBouncer:
        (self.root / "userlist.txt").write_text(f'"{self.user}" ""\n')
        self.ini.write_text(self.config())
        cmd = [self.binary, str(self.ini)]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; -u drops to an unprivileged account.
            # Through a socket directory (the embedded server's), as the account that owns it:
            # another one may not be allowed to enter it.
            account = _socket_owner(self.upstream_host) or (
                "postgres" if _has_account("postgres") else "nobody"
            )
            shutil.chown(self.root, account)
            for path in self.root.iterdir():
                shutil.chown(path, account)
            cmd = [self.binary, "-u", account, str(self.ini)]
        with open(self.root / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            eventually_sync(self._accepts, timeout=15, message="pgbouncer accepts connections")
        except BaseException:
            stderr = (self.root / "stderr.log").read_text(errors="replace")
            self.__exit__(None, None, None)
            raise RuntimeError(f"pgbouncer did not start: {stderr}\n{self.log()}") from None
        return self

    def _accepts(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}")
        try:
            with psycopg.connect(self.dsn, connect_timeout=2, prepare_threshold=None):
                return True
        except psycopg.OperationalError:
            return False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _has_account(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _socket_owner(host: str) -> str | None:
    """The account owning ``host`` when it is a socket directory, else None."""
    import pwd

    if not host.startswith("/"):
        return None
    try:
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    except (OSError, KeyError):
        return None
