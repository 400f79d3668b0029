"""Custom metrics (Chancy 0.26's increment_counter & co.) on the dashboard's metric routes and
its Prometheus scrape."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra (starlette)")

from chancy import Chancy
from chancy.plugins.metrics import Metrics
from tests.api.conftest import httpx, login, make_asgi


async def test_the_dashboard_lists_and_charts_custom_metrics(app: Chancy, metrics: Metrics) -> None:
    await metrics.increment_counter("shop:orders", 2)
    await metrics.increment_counter("shop:orders", 0.5)
    await metrics.record_gauge("shop:basket", 4)
    await metrics.record_histogram_value("shop:size", 300, unit="bytes")
    await metrics.flush(app)
    transport = httpx.ASGITransport(app=make_asgi(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard.test") as client:
        admin = await login(client)
        index: Any = (await client.get("/api/v1/metrics", headers=admin)).json()
        assert index["custom"] == {
            "shop:basket": "gauge",
            "shop:orders": "counter",
            "shop:size": "histogram",
        }
        orders = (await client.get("/api/v1/metrics/shop:orders", headers=admin)).json()
        assert orders["kind"] == "counter"
        assert [p["count"] + p["total"] for p in orders["points"]] == [2.5]
        size = (
            await client.get("/api/v1/metrics/shop:size?resolution=1hour", headers=admin)
        ).json()
        assert size["kind"] == "histogram" and size["points"][0]["total"] == 300
        basket = (await client.get("/api/v1/metrics/shop:basket", headers=admin)).json()
        assert basket["kind"] == "gauge" and basket["points"][0]["total"] == 4
        unknown = await client.get("/api/v1/metrics/shop:nothing", headers=admin)
        assert unknown.status_code == 404 and "custom metrics" in unknown.text
        scrape = await client.get("/metrics", headers=admin)
        assert "chancy_shop_orders_total 2.5\n" in scrape.text
        assert "chancy_shop_basket 4\n" in scrape.text
        assert "chancy_shop_size_bytes_sum 300\n" in scrape.text
