"""Fixtures: a migrated Chancy with the Metrics plugin on the test's own prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chancy import Chancy
from chancy.plugins.leadership import ImmediateLeadership
from chancy.plugins.metrics import Metrics
from tests.conftest import drop_prefix


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(flush_interval=0.1, sample_interval=0.1)


@pytest.fixture
async def app(dsn: str, prefix: str, metrics: Metrics) -> AsyncIterator[Chancy]:
    chancy = Chancy(
        dsn,
        prefix=prefix,
        plugins=[ImmediateLeadership(), metrics],
        no_default_plugins=True,
        min_connection_pool_size=1,
        max_connection_pool_size=3,
    )
    async with chancy:
        await chancy.migrate()
        try:
            yield chancy
        finally:
            try:
                await chancy.migrate(to_version=0)
            finally:
                drop_prefix(dsn, prefix)
