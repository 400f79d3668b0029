"""The plain asyncio example (examples/asyncio_app) runs end to end."""

from __future__ import annotations

from chancy import Chancy
from chancy.testing import assert_pushed
from examples.asyncio_app.app import main


async def test_the_asyncio_example_runs_its_jobs(chancy_dsn: str, chancy_prefix: str) -> None:
    results = await main(chancy_dsn, prefix=chancy_prefix)
    assert sorted(str(r) for r in results.values()) == sorted(
        [f"img{i}.png@128px" for i in range(5)] + ["2880067194370816120"]
    )
    async with Chancy(chancy_dsn, prefix=chancy_prefix, no_default_plugins=True) as chancy:
        pushed = await assert_pushed(chancy, "examples.asyncio_app.app.thumbnail", count=5)
        assert {str(j.state) for j in pushed} == {"succeeded"}
