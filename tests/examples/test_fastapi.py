"""The FastAPI example (examples/fastapi): jobs pushed in the request's transaction run."""

from __future__ import annotations

import pytest

from chancy.testing import assert_pushed, run_until_idle

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from examples.fastapi.app import create_app  # noqa: E402


async def test_jobs_pushed_in_a_request_s_transaction_commit_or_roll_back_with_it(
    chancy_dsn: str, chancy_prefix: str
) -> None:
    app, chancy = create_app(chancy_dsn, prefix=chancy_prefix)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app.test") as client,
    ):
        ok = await client.post("/signup", json={"email": "ana@example.com"})
        assert ok.status_code == 200, ok.text
        failed = await client.post(
            "/signup", json={"email": "bo@example.com", "fail_after_push": True}
        )
        assert failed.status_code == 500
        order = await client.post("/orders", json={"item": "book"})
        assert order.status_code == 200, order.text
        lost = await client.post("/orders", json={"item": "lamp", "fail_after_push": True})
        assert lost.status_code == 500
        # The dashboard is mounted under /chancy.
        assert (await client.get("/chancy/health")).json() == {"status": "ok"}

        # Only the committed requests left jobs behind.
        await assert_pushed(chancy, "examples.fastapi.app.send_welcome", count=1)
        await assert_pushed(
            chancy, "examples.fastapi.app.send_welcome", kwargs={"to": "ana@example.com"}
        )
        await assert_pushed(chancy, "examples.fastapi.app.ship", count=1)

        # A real worker runs them (chancy.testing), and the API shows the results.
        finished = await run_until_idle(chancy, queues=["emails", "orders"])
        assert sorted(j.func for j in finished) == [
            "examples.fastapi.app.send_welcome",
            "examples.fastapi.app.ship",
        ]
        job = (await client.get(f"/jobs/{ok.json()['job_id']}")).json()
        assert job == {
            "state": "succeeded",
            "result": "welcome mail for ana@example.com",
            "func": "examples.fastapi.app.send_welcome",
        }
        shipped = (await client.get(f"/jobs/{order.json()['job_id']}")).json()
        assert shipped["result"] == f"order {order.json()['order_id']} shipped"
