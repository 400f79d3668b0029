"""SubInterpreterExecutor: below Python 3.13 it says it cannot run, and why.

Its 3.13+ implementation is not exercised here: the project's interpreter is 3.11.
"""

from __future__ import annotations

import sys

import pytest

from chancy.errors import ConfigurationError
from chancy.executors.base import Executor
from chancy.executors.sub import SubInterpreterExecutor
from chancy.queue import Queue
from tests.executors.conftest import FakeWorker

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="the unsupported path exists only below Python 3.13"
)


def test_reports_why_it_cannot_run() -> None:
    reason = SubInterpreterExecutor.unsupported_reason()
    assert reason is not None
    assert "Python 3.13" in reason
    assert "ProcessExecutor" in reason
    assert SubInterpreterExecutor.supports() == Executor.Capability(0)


def test_constructing_it_fails_clearly() -> None:
    queue = Queue("q", executor=SubInterpreterExecutor)
    with pytest.raises(ConfigurationError, match=r"needs Python 3\.13 or newer.*ProcessExecutor"):
        SubInterpreterExecutor(FakeWorker(), queue)  # type: ignore[arg-type]
