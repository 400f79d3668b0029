"""Worker processes for the durable-jobs tests (the plugin tests' runner and fleet)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chancy import Chancy, Queue
from tests.plugins.conftest import Fleet


@pytest.fixture
async def fleet(chancy: Chancy, dsn: str, prefix: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    # Every worker declares "default"; tagged for nobody, it is never served.
    await chancy.declare(Queue("default", tags={"^nobody$"}))
    running = Fleet(dsn, prefix, tmp_path)
    try:
        yield running
    finally:
        running.close()
