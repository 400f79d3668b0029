"""A throwaway PostgreSQL cluster from the machine's server binaries, for restart tests.

Never the shared server: a new data directory, its own port on 127.0.0.1 and socket
directory, removed on exit. The binaries are the machine's newest PostgreSQL, or the embedded
build when the machine has none (so these tests also run where no PostgreSQL is installed).
As root, the server runs as that build's account: ``postgres``, or the embedded server's
account (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin``, else the embedded build's ``bin``."""
    found = [
        Path(p).parent
        for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
        if os.path.exists(os.path.join(os.path.dirname(p), "initdb"))
    ]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if found:
        return found[-1]
    try:
        from chancy.embedded import server_binaries

        return server_binaries().bin
    except Exception:
        return None


def _server_account(bin_dir: Path) -> str:
    """Who runs a server from ``bin_dir`` when the tests run as root."""
    if str(bin_dir).startswith("/usr/lib/postgresql/"):
        return "postgres"
    from chancy.embedded.install import ACCOUNT, ensure_account

    ensure_account()
    return ACCOUNT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """``with Cluster() as c:`` a running server at ``c.dsn``; ``crash_and_restart()``."""

    def __init__(
        self, settings: dict[str, str] | None = None, *, listen: tuple[str, ...] = ()
    ) -> None:
        #: Extra server settings (``-c name=value``), e.g. shared_preload_libraries.
        self.settings = settings or {}
        #: Addresses to listen on besides 127.0.0.1 (clients from anywhere are trusted).
        self.listen = listen
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server binaries (neither Debian's nor embedded)")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="chancy-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.account = _server_account(bin_dir) if self.as_root else ""
        if self.as_root:
            shutil.chown(self.root, self.account, self.account)

    @property
    def dsn(self) -> str:
        return self.dsn_at("127.0.0.1")

    def dsn_at(self, host: str) -> str:
        return f"postgresql://postgres@{host}:{self.port}/postgres?connect_timeout=5"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", self.account, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr}\n{log[-2000:]}"
            )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root}"
            f" -c listen_addresses={','.join(('127.0.0.1', *self.listen))}"
            " -c max_connections=40 -c shared_buffers=32MB"
        )
        for name, value in self.settings.items():
            options += f" -c {name}={value}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def crash_and_restart(self) -> None:
        """Kill the server without a checkpoint (immediate mode), then start it again."""
        self.stop("immediate")
        self.start()

    def __enter__(self) -> Cluster:
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
            if self.listen:
                with open(self.data / "pg_hba.conf", "a") as hba:
                    hba.write("host all all 0.0.0.0/0 trust\n")
            self.start()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        self._remove()

    def _remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
