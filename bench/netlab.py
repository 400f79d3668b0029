"""W7's laboratory: worker hosts in network namespaces, a delayed link, a throwaway server.

- :class:`Cluster`: a PostgreSQL cluster of its own (``initdb`` and ``pg_ctl`` in a temporary
  directory, on a free port of 127.0.0.1, ``max_connections`` room for eight hosts), removed
  afterwards. The shared server is never touched.
- :class:`Network`: a bridge in the root namespace with an address on a private /24, and per
  host a network namespace joined to the bridge by a veth pair. Every name carries the run's
  process id, so two runs never collide; :meth:`Network.close` removes all of it (deleting a
  namespace deletes its end of the veth pair, and with it the other end).
- The delay: with the kernel's netem qdisc, ``tc qdisc ... netem delay`` of half the round trip
  on both ends of every veth pair. Kernels built without netem (``CONFIG_NET_SCH_NETEM``
  unset, as on the development VM) get the same round trip from ``bench/delayproxy.c``: a
  small TCP proxy on the bridge address that holds every chunk for half the round trip in each
  direction before passing it on (timerfd precision, ``TCP_NODELAY``, run at real-time
  priority when ``chrt`` allows, so a loaded machine delays its wake-ups less). Hosts always
  connect through the proxy (with netem its delay is 0), which forwards to the server on
  127.0.0.1: the server needs no other listen address.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY_SOURCE = os.path.join(ROOT, "bench", "delayproxy.c")


class Unavailable(RuntimeError):
    """This machine cannot run W7 (not root, no ``ip netns``, no compiler, no server)."""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def check_available() -> None:
    """Raise :class:`Unavailable` with the reason when W7 cannot run here."""
    if os.geteuid() != 0:
        raise Unavailable("W7 needs root (it creates network namespaces and veth pairs)")
    if shutil.which("ip") is None:
        raise Unavailable("W7 needs iproute2's `ip` command")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        raise Unavailable("W7 needs a C compiler for its delay proxy (apt-get install gcc)")
    name = f"chancy-w7-probe-{os.getpid()}"
    probe = _run("ip", "netns", "add", name, check=False)
    if probe.returncode != 0:
        raise Unavailable(f"`ip netns add` does not work here: {probe.stderr.strip()}")
    _run("ip", "netns", "del", name, check=False)


# -- the server ----------------------------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    try:
        from chancy.embedded.install import server_binaries

        return server_binaries().bin
    except Exception as exc:
        raise Unavailable(f"no PostgreSQL server binaries for W7's cluster: {exc}") from exc


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Cluster:
    """A throwaway PostgreSQL server on 127.0.0.1 (``with Cluster() as c: c.dsn``)."""

    def __init__(self, max_connections: int = 200, settings: dict[str, str] | None = None) -> None:
        self.bin = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="chancy-w7-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.max_connections = max_connections
        #: Extra server settings (``-c name=value``), e.g. logging for a diagnosis.
        self.settings = settings or {}
        self.account = ""
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            if str(self.bin).startswith("/usr/lib/postgresql/"):
                self.account = "postgres"
            else:
                from chancy.embedded.install import ACCOUNT, ensure_account

                ensure_account()
                self.account = ACCOUNT
            shutil.chown(self.root, self.account, self.account)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.account:
            cmd = ["runuser", "-u", self.account, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr}\n{log}")

    def __enter__(self) -> Cluster:
        try:
            self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                f" -c max_connections={self.max_connections} -c shared_buffers=128MB"
            )
            for name, value in self.settings.items():
                options += f" -c {name}={value}"
            self._pg(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


# -- the network ---------------------------------------------------------------------


def _used_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of this namespace's interfaces (another W7 run's bridge among them)."""
    out = _run("ip", "-4", "-o", "addr", "show", check=False).stdout
    used = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            network = ipaddress.ip_interface(parts[parts.index("inet") + 1]).network
            if isinstance(network, ipaddress.IPv4Network):
                used.append(network)
    return used


def build_proxy(directory: str) -> str:
    """Compile bench/delayproxy.c into ``directory``; return the executable's path."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Unavailable("W7 needs a C compiler for its delay proxy (apt-get install gcc)")
    out = os.path.join(directory, "delayproxy")
    _run(cc, "-O2", "-o", out, PROXY_SOURCE)
    return out


class Network:
    """``hosts`` network namespaces on a bridge, a delay between them and the server.

    ``host_dsn(i)`` is the DSN host ``i`` (0-based) uses to reach the server through the link;
    ``command(i, argv)`` runs a program inside host ``i``'s namespace.
    """

    def __init__(self, hosts: int, server_dsn: str) -> None:
        from psycopg.conninfo import conninfo_to_dict

        self.tag = f"{os.getpid() % 100000}"
        self.hosts = hosts
        self.bridge = f"w7b{self.tag}"
        self.namespaces = [f"chancy-w7-{self.tag}-h{i}" for i in range(hosts)]
        self.veths = [f"w7v{self.tag}h{i}" for i in range(hosts)]
        params = conninfo_to_dict(server_dsn)
        host = str(params.get("host") or "127.0.0.1")
        if host == "localhost":
            host = "127.0.0.1"
        self.target = (socket.gethostbyname(host), int(params.get("port") or 5432))
        self.params = {k: v for k, v in params.items() if k not in ("host", "port", "hostaddr")}
        self.method = ""
        self.subnet = ipaddress.IPv4Network("10.77.0.0/24")
        self.proxy: subprocess.Popen[str] | None = None
        self.proxy_port = 0
        self._tmp = tempfile.mkdtemp(prefix="chancy-w7-")
        self._created: list[tuple[str, str]] = []
        self.delay_ms = 0.0

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def address(self, i: int) -> str:
        return str(self.subnet.network_address + 10 + i)

    def open(self) -> Network:
        """Create the bridge, the namespaces, the links and the proxy."""
        try:
            used = _used_networks()
            base = int(self.tag) % 250
            for k in range(250):
                candidate = ipaddress.IPv4Network(f"10.77.{(base + k) % 250 + 1}.0/24")
                if not any(candidate.overlaps(n) for n in used):
                    self.subnet = candidate
                    break
            else:
                raise RuntimeError("no free /24 in 10.77.0.0/16 for W7's bridge")
            prefix = f"/{self.subnet.prefixlen}"
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            self._created.append(("link", self.bridge))
            _run("ip", "addr", "add", self.gateway + prefix, "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for i, (ns, veth) in enumerate(zip(self.namespaces, self.veths, strict=True)):
                _run("ip", "netns", "add", ns)
                self._created.append(("netns", ns))
                _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _run("ip", "link", "set", veth, "master", self.bridge, "up")
                inside = ("ip", "netns", "exec", ns)
                _run(*inside, "ip", "addr", "add", self.address(i) + prefix, "dev", "eth0")
                _run(*inside, "ip", "link", "set", "eth0", "up")
                _run(*inside, "ip", "link", "set", "lo", "up")
            self.method = self._probe_netem()
            self._start_proxy()
        except BaseException:
            self.close()
            raise
        return self

    def _probe_netem(self) -> str:
        probe = _run(
            "tc", "qdisc", "add", "dev", self.veths[0], "root", "netem", "delay", "0us", check=False
        )
        if probe.returncode == 0:
            return "netem"
        return "proxy"

    def _start_proxy(self) -> None:
        exe = build_proxy(self._tmp)
        cmd = [exe, self.gateway, "0", self.target[0], str(self.target[1]), "0"]
        if shutil.which("chrt") and _run("chrt", "-f", "10", "true", check=False).returncode == 0:
            cmd = ["chrt", "-f", "10", *cmd]
        self.proxy = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proxy.stdout is not None
        line = self.proxy.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            raise RuntimeError(f"the delay proxy did not start (code {self.proxy.poll()})")
        self.proxy_port = int(line[1])

    def set_rtt(self, rtt_ms: float) -> None:
        """Make every host's round trip to the server ``rtt_ms`` (half each way)."""
        one_way_us = round(rtt_ms * 1000 / 2)
        if self.method == "netem":
            for ns, veth in zip(self.namespaces, self.veths, strict=True):
                delay = f"{one_way_us}us"
                _run("tc", "qdisc", "replace", "dev", veth, "root", "netem", "delay", delay)
                _run(
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "tc",
                    "qdisc",
                    "replace",
                    "dev",
                    "eth0",
                    "root",
                    "netem",
                    "delay",
                    delay,
                )
        else:
            assert self.proxy is not None and self.proxy.stdin is not None
            assert self.proxy.stdout is not None
            self.proxy.stdin.write(f"delay {one_way_us}\n")
            self.proxy.stdin.flush()
            if self.proxy.stdout.readline().strip() != f"delay {one_way_us}":
                raise RuntimeError("the delay proxy did not take the new delay")
        self.delay_ms = rtt_ms

    def host_dsn(self, i: int) -> str:
        from psycopg.conninfo import make_conninfo

        params = {**self.params, "application_name": f"w7h{i}"}
        params.setdefault("connect_timeout", "10")
        conninfo = make_conninfo("", host=self.gateway, port=str(self.proxy_port), **params)
        return conninfo

    def command(self, i: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[i], *argv]

    def python(self, i: int, module: str, *args: str) -> list[str]:
        return self.command(i, [sys.executable, "-m", module, *args])

    def kill_hosts(self) -> None:
        """SIGKILL every process inside the namespaces (a run cut short)."""
        for ns in self.namespaces:
            pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)

    def close(self) -> None:
        """Remove everything :meth:`open` created (also after a partial open)."""
        if self.proxy is not None:
            if self.proxy.poll() is None:
                with contextlib.suppress(OSError):
                    if self.proxy.stdin is not None:
                        self.proxy.stdin.close()
                try:
                    self.proxy.wait(5)
                except subprocess.TimeoutExpired:
                    self.proxy.send_signal(signal.SIGKILL)
                    self.proxy.wait()
            self.proxy = None
        # Any process still inside (a host that did not exit) would keep its links alive.
        self.kill_hosts()
        for kind, name in reversed(self._created):
            if kind == "netns":
                _run("ip", "netns", "del", name, check=False)
            else:
                _run("ip", "link", "del", name, check=False)
        for veth in self.veths:
            if os.path.exists(f"/sys/class/net/{veth}"):
                _run("ip", "link", "del", veth, check=False)
        self._created.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Network:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def leftovers() -> list[str]:
    """W7 namespaces of runs whose process is gone (a run killed outright)."""
    out = _run("ip", "netns", "list", check=False).stdout
    stale = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("chancy-w7-") and name.count("-") >= 3:
            tag = name.split("-")[2]
            alive = any(
                int(p) % 100000 == int(tag)
                for p in os.listdir("/proc")
                if p.isdigit() and _is_w7(int(p))
            )
            if not alive:
                stale.append(name)
    return stale


def _is_w7(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"w7" in f.read()
    except OSError:
        return False


def remove_leftovers() -> list[str]:
    """Delete the namespaces and bridges of W7 runs killed outright; return what was removed."""
    removed = []
    for ns in leftovers():
        _run("ip", "netns", "del", ns, check=False)
        removed.append(ns)
        bridge = f"w7b{ns.split('-')[2]}"
        if os.path.exists(f"/sys/class/net/{bridge}"):
            _run("ip", "link", "del", bridge, check=False)
            removed.append(bridge)
    return removed
