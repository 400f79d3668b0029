"""Fixtures: a migrated Chancy with the Metrics plugin on the test's own prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chancy import Chancy
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.metrics import Metrics
from tests.conftest import migrated_app


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(flush_interval=0.1, sample_interval=0.1)


@pytest.fixture
async def app(dsn: str, prefix: str, metrics: Metrics) -> AsyncIterator[Chancy]:
    async with migrated_app(dsn, prefix, [ImmediateLeadership(), metrics], pool=3) as chancy:
        yield chancy
