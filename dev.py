#!/usr/bin/env python3
"""The one entry point for working on chancy; needs nothing but Python 3.11+ (stdlib only).

    python3 dev.py demo [args]                 run the demo (embedded PostgreSQL unless CHANCY_DSN)
    python3 dev.py check [--quick] [pytest args]
                                               ruff format --check, ruff check, mypy,
                                               mkdocs build --strict, pytest
    python3 dev.py fmt                         ruff format, then ruff check --fix
    python3 dev.py wheel                       build dist/chancy-<version>-py3-none-any.whl

Each command creates or reuses .venv in the repository and installs chancy there (editable, with
the extras `all` and `dev`) against constraints.txt. The install is skipped while a stamp in .venv
still matches pyproject.toml, constraints.txt and this file, so repeated runs start at once.
The tests use CHANCY_TEST_DSN when set, else they start the embedded PostgreSQL themselves.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
VENV_BIN = os.path.join(VENV, "Scripts" if os.name == "nt" else "bin")
VENV_PYTHON = os.path.join(VENV_BIN, "python.exe" if os.name == "nt" else "python")
CONSTRAINTS = os.path.join(ROOT, "constraints.txt")
PYPROJECT = os.path.join(ROOT, "pyproject.toml")
STAMP = os.path.join(VENV, ".chancy-dev-stamp")
# Where the check builds the docs (inside .venv, so the tree stays clean).
DOCS_SITE = os.path.join(VENV, "site")
EXTRAS = "all,dev"
# Bump to force a reinstall when the way this script installs changes.
SETUP_VERSION = "1"
# pyproject's build backend plus what it asks for to build an editable wheel; installed in the
# venv so that the editable install is built by pinned versions, without an isolated build env.
BUILD_REQUIRES = ("hatchling", "editables")
MAX_TEST_WORKERS = 4
PYTEST_NO_TESTS = 5

USAGE = """\
usage: python3 dev.py demo [args...]
       python3 dev.py check [--quick] [pytest args...]
       python3 dev.py fmt
       python3 dev.py wheel

  demo    run `python -m chancy.demo` (uses the embedded PostgreSQL unless CHANCY_DSN is set)
  check   ruff format --check, ruff check, mypy, mkdocs build --strict, then pytest; stops at
          the first failure.
          --quick leaves out tests marked slow; other arguments go to pytest.
  fmt     format the code and apply ruff's safe fixes
  wheel   build the wheel to install chancy into your own project (dist/)
"""


def say(message: str) -> None:
    print(message, flush=True)


def header(title: str) -> None:
    say(f"\n==> {title}")


def run(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` in the repository, inheriting stdio; return its exit code."""
    try:
        return subprocess.call(cmd, cwd=ROOT, env=env)
    except FileNotFoundError as exc:
        say(f"dev.py: cannot run {cmd[0]}: {exc}")
        return 127
    except OSError as exc:
        explain_os_error(exc)
        return 1


def run_watched(cmd: list[str]) -> tuple[int, str]:
    """Run ``cmd``, echoing its output, and return its exit code with the output's tail."""
    tail: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    except OSError as exc:
        explain_os_error(exc)
        return 1, str(exc)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        tail = [*tail[-199:], line]
    return proc.wait(), "".join(tail)


# What a failed install printed, and the one line that says what to do about it.
INSTALL_DIAGNOSES = (
    (
        ("No space left on device", "[Errno 28]"),
        "the disk is full: free some space (pip's cache is ~/.cache/pip) and run dev.py again.",
    ),
    (
        (
            "command 'gcc' failed",
            "command 'cc' failed",
            "error: command 'x86_64-linux-gnu-gcc'",
            "No such file or directory: 'gcc'",
            "unable to execute 'gcc'",
            "Python.h: No such file or directory",
            "You need a C compiler",
        ),
        "a package had to be compiled here and there is no C compiler (or no Python headers):"
        " install them (Debian/Ubuntu: `apt-get install build-essential python3-dev`;"
        " Fedora: `dnf install gcc python3-devel`), or use a Python version that has wheels.",
    ),
    (
        (
            "Could not find a version that satisfies",
            "No matching distribution found",
            "Temporary failure in name resolution",
            "Failed to establish a new connection",
        ),
        "pip could not download the pinned packages: check the network (or set PIP_INDEX_URL"
        " to your package mirror) and run dev.py again.",
    ),
)


def diagnose_install(output: str) -> str | None:
    for needles, advice in INSTALL_DIAGNOSES:
        if any(needle in output for needle in needles):
            return advice
    return None


def explain_os_error(exc: OSError) -> None:
    import errno

    if exc.errno == errno.ENOSPC:
        sys.exit(f"dev.py: the disk is full ({exc}); free some space and run dev.py again.")
    say(f"dev.py: {exc}")


# --- the virtualenv -------------------------------------------------------------------------


@contextmanager
def setup_lock() -> Iterator[None]:
    """Serialise concurrent setups (two terminals running dev.py at once)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, setups just should not overlap
        yield
        return
    os.makedirs(VENV, exist_ok=True)
    with open(os.path.join(VENV, ".chancy-dev.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def wanted_stamp() -> str:
    digest = hashlib.sha256()
    digest.update(SETUP_VERSION.encode())
    for path in (PYPROJECT, CONSTRAINTS):
        with open(path, "rb") as f:
            digest.update(f.read())
    digest.update(os.path.realpath(VENV_PYTHON).encode())
    return digest.hexdigest()


def venv_python_works() -> bool:
    if not os.path.exists(VENV_PYTHON):
        return False
    check = "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)"
    try:
        return subprocess.call([VENV_PYTHON, "-c", check], cwd=ROOT) == 0
    except OSError:
        return False


def create_venv() -> None:
    header(f"creating {VENV} with {sys.executable}")
    # --clear: an existing but broken .venv (moved, or its Python removed) is rebuilt.
    code, output = run_watched([sys.executable, "-m", "venv", "--clear", VENV])
    if code != 0:
        advice = diagnose_install(output)
        sys.exit(
            "dev.py: `python3 -m venv` failed: "
            + (
                advice
                or "on Debian or Ubuntu install the venv module first:"
                " `apt-get install python3-venv`."
            )
        )


def install() -> None:
    pip = [VENV_PYTHON, "-m", "pip", "--disable-pip-version-check"]
    header("upgrading pip and installing the build backend (pinned by constraints.txt)")
    code, output = run_watched(
        [*pip, "install", "--upgrade", "-c", CONSTRAINTS, "pip", *BUILD_REQUIRES]
    )
    if code == 0:
        header(f"installing chancy (editable) with extras [{EXTRAS}] against constraints.txt")
        # Build with the pinned hatchling in the venv instead of an unpinned isolated copy.
        code, output = run_watched(
            [
                *pip,
                "install",
                "--no-build-isolation",
                "-c",
                CONSTRAINTS,
                "-e",
                f".[{EXTRAS}]",
            ]
        )
    if code != 0:
        advice = diagnose_install(output)
        sys.exit(
            f"dev.py: installing into {VENV} failed (exit {code}): "
            + (advice or "see pip's output above.")
        )


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py may be run by an older python3)
        sys.exit(f"dev.py: chancy needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    for path in (PYPROJECT, CONSTRAINTS):
        if not os.path.exists(path):
            sys.exit(f"dev.py: {path} is missing.")
    with setup_lock():
        if not venv_python_works():
            create_venv()
        stamp = wanted_stamp()
        try:
            with open(STAMP) as f:
                current = f.read().strip() == stamp
        except OSError:
            current = False
        if current:
            return
        started = time.monotonic()
        install()
        with open(STAMP, "w") as f:
            f.write(stamp + "\n")
        say(f"dev.py: environment ready in {time.monotonic() - started:.0f}s")


def venv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = VENV
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONHOME", None)
    return env


# --- commands -------------------------------------------------------------------------------


def cmd_demo(args: list[str]) -> int:
    env = venv_env()
    if not env.get("CHANCY_DSN", "").strip():
        # An empty value would otherwise be passed on as a DSN; unset means "embedded server".
        env.pop("CHANCY_DSN", None)
        say("dev.py: CHANCY_DSN is not set; the demo uses the embedded PostgreSQL server.")
    return run([VENV_PYTHON, "-m", "chancy.demo", *args], env=env)


def test_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_TEST_WORKERS, cpus))


def cmd_check(args: list[str]) -> int:
    quick = "--quick" in args
    pytest_args = [a for a in args if a != "--quick"]
    env = venv_env()
    env["NO_MKDOCS_2_WARNING"] = "1"  # Material's notice about its successor, not a docs issue
    pytest_cmd = [VENV_PYTHON, "-m", "pytest", "-n", str(test_workers())]
    if quick:
        pytest_cmd += ["-m", "not slow"]
    # (short name, header, command)
    steps = [
        ("format", "ruff format --check .", [VENV_PYTHON, "-m", "ruff", "format", "--check", "."]),
        ("lint", "ruff check .", [VENV_PYTHON, "-m", "ruff", "check", "."]),
        ("types", "mypy", [VENV_PYTHON, "-m", "mypy"]),
        (
            "docs",
            "mkdocs build --strict",
            [VENV_PYTHON, "-m", "mkdocs", "build", "--strict", "-q", "-d", DOCS_SITE],
        ),
        (
            "tests",
            shlex.join(["pytest", *pytest_cmd[3:], *pytest_args]),
            [*pytest_cmd, *pytest_args],
        ),
    ]
    if env.get("CHANCY_TEST_DSN"):
        say("dev.py: tests use CHANCY_TEST_DSN.")
    else:
        say("dev.py: CHANCY_TEST_DSN is not set; the tests start the embedded PostgreSQL server.")
    timings = []
    for name, title, cmd in steps:
        header(title)
        started = time.monotonic()
        code = run(cmd, env=env)
        timings.append(f"{name} {time.monotonic() - started:.1f}s")
        if code != 0:
            if name == "tests" and code == PYTEST_NO_TESTS:
                say("dev.py: pytest collected no tests; that counts as a failure.")
            say(f"\ndev.py check: FAILED at `{title}` (exit {code})")
            return code
    say(f"\ndev.py check: all steps passed ({', '.join(timings)})")
    return 0


def cmd_fmt(args: list[str]) -> int:
    env = venv_env()
    header("ruff format .")
    code = run([VENV_PYTHON, "-m", "ruff", "format", ".", *args], env=env)
    if code != 0:
        return code
    header("ruff check --fix .")
    return run([VENV_PYTHON, "-m", "ruff", "check", "--fix", "."], env=env)


def build_wheel(out_dir: str) -> str:
    """Build chancy's wheel into ``out_dir`` with the pinned backend; return its path."""
    os.makedirs(out_dir, exist_ok=True)
    before = set(os.listdir(out_dir))
    code = run(
        [
            *(VENV_PYTHON, "-m", "pip", "wheel", "--disable-pip-version-check", "--quiet"),
            *("--no-deps", "--no-build-isolation", "-w", out_dir, ROOT),
        ],
        env=venv_env(),
    )
    if code != 0:
        sys.exit(f"dev.py: building the wheel failed (exit {code}); see pip's output above.")
    built = sorted(n for n in set(os.listdir(out_dir)) - before if n.endswith(".whl"))
    if not built:  # rebuilt over an identical file
        built = sorted(n for n in os.listdir(out_dir) if n.startswith("chancy-"))
    return os.path.join(out_dir, built[-1])


def cmd_wheel(args: list[str]) -> int:
    out_dir = args[0] if args else os.path.join(ROOT, "dist")
    path = build_wheel(out_dir)
    say(f"built {path}")
    say(f"install it into your project with:\n  pip install 'chancy[all] @ file://{path}'")
    return 0


COMMANDS = {"demo": cmd_demo, "check": cmd_check, "fmt": cmd_fmt, "wheel": cmd_wheel}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        sys.stderr.write(f"dev.py: unknown command {argv[0]!r}\n\n{USAGE}")
        return 2
    ensure_venv()
    return command(argv[1:])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
