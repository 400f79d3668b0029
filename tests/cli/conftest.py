"""What the CLI tests share: running ``python -m chancy`` on the test's own DSN and prefix."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import drop_prefix

ROOT = Path(__file__).resolve().parents[2]
DSN_ENV = "CHANCY_CLI_TEST_DSN"  # read by tests/cli/apps.py
PREFIX_ENV = "CHANCY_CLI_TEST_PREFIX"
UNREACHABLE_DSN = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=3"


class Cli:
    """Runs ``python -m chancy`` with a DSN and prefix of the test's own."""

    def __init__(self, dsn: str, prefix: str) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CHANCY_DSN", "CHANCY_APP", "CHANCY_PREFIX")
        }
        self.env[DSN_ENV] = dsn
        self.env[PREFIX_ENV] = prefix

    def raw(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        # No input means an empty stdin (never the terminal pytest may run in), so commands
        # that ask for confirmation see no TTY.
        return subprocess.run(
            [sys.executable, "-m", "chancy", *args],
            cwd=ROOT,
            env=env or self.env,
            input="" if input is None else input,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command on this test's DSN and prefix."""
        return self.raw("--dsn", self.dsn, "--prefix", self.prefix, *args, input=input)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
        return result.stdout

    def json(self, *args: str) -> Any:
        """The parsed output of a command run with ``--json``."""
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture
def cli(dsn: str, prefix: str) -> Iterator[Cli]:
    try:
        yield Cli(dsn, prefix)
    finally:
        drop_prefix(dsn, prefix)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A clear failure: non-zero exit, no traceback, one 'Error:' line naming the problem."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def run_on_a_tty(cli: Cli, *args: str, answer: str) -> subprocess.CompletedProcess[str]:
    """Run a command on the test's DSN and prefix with a terminal as stdin, typing ``answer``.

    The answer is written before the command reads it: the terminal holds the line until then.
    """
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chancy", "--dsn", cli.dsn, "--prefix", cli.prefix, *args],
            cwd=ROOT,
            env=cli.env,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(slave)
        slave = -1
        os.write(master, answer.encode() + b"\n")
        out, err = proc.communicate(timeout=60)
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
