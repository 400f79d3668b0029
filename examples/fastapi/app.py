"""A FastAPI app that pushes chancy jobs from its request handlers and serves the dashboard.

- ``POST /signup`` writes a user row and pushes a welcome email job in the *same* psycopg
  transaction (``push_ex``): if the request fails after the push, neither exists.
- ``POST /orders`` does the same through SQLAlchemy 2 (psycopg 3 driver), with the sync
  cursor form (``sync_push_ex``) on the session's own connection.
- ``GET /jobs/{id}`` shows a job; ``/chancy/`` is the dashboard.

Run it: ``CHANCY_DSN=postgresql://localhost/app uvicorn examples.fastapi.app:app``, and a
worker: ``chancy --app examples.fastapi.app:chancy worker start``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from starlette.routing import Mount

from chancy import Chancy, Queue, job
from chancy.plugins.api import SimpleAuthBackend, build_starlette_app


@job(queue="emails", max_attempts=3)
async def send_welcome(to: str) -> str:
    # Idempotent: sending twice must be harmless (a real one would use an idempotency key).
    return f"welcome mail for {to}"


@job(queue="orders")
async def ship(order_id: int) -> str:
    return f"order {order_id} shipped"


class Signup(BaseModel):
    email: str
    fail_after_push: bool = False


class Order(BaseModel):
    item: str
    fail_after_push: bool = False


def create_app(dsn: str, prefix: str = "chancy_") -> tuple[FastAPI, Chancy]:
    chancy = Chancy(dsn, prefix=prefix, max_connection_pool_size=4)
    engine = create_engine(_sqlalchemy_url(dsn), pool_size=2)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with chancy:
            await chancy.migrate()
            await chancy.declare(Queue("emails", executor=Chancy.Executor.Async), upsert=True)
            await chancy.declare(Queue("orders", executor=Chancy.Executor.Async), upsert=True)
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {prefix}users (email text PRIMARY KEY)"  # type: ignore[arg-type]
                )
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {prefix}orders"  # type: ignore[arg-type]
                    " (id serial PRIMARY KEY, item text NOT NULL)"
                )
            yield
        engine.dispose()

    dashboard = build_starlette_app(
        chancy,
        authentication_backend=SimpleAuthBackend(
            {"admin": os.environ.get("DASHBOARD_PASSWORD", "change-me-please")}
        ),
        secret_key=os.environ.get("DASHBOARD_SECRET", "a development secret, change it"),
    )
    app = FastAPI(lifespan=lifespan, routes=[Mount("/chancy", app=dashboard)])

    @app.post("/signup")
    async def signup(body: Signup) -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(
                    f"INSERT INTO {prefix}users (email) VALUES (%s)",  # type: ignore[arg-type]
                    (body.email,),
                )
                ref = await chancy.push_ex(cur, send_welcome.job.with_kwargs(to=body.email))
                if body.fail_after_push:
                    raise HTTPException(500, "failed after the push: both are rolled back")
        return {"job_id": str(ref.identifier)}

    @app.post("/orders")
    def order(body: Order) -> dict[str, Any]:
        # A sync endpoint (FastAPI runs it in a thread), like most SQLAlchemy code.
        with Session(engine) as session, session.begin():
            order_id = session.execute(
                text(f"INSERT INTO {prefix}orders (item) VALUES (:item) RETURNING id"),
                {"item": body.item},
            ).scalar_one()
            raw = session.connection().connection.driver_connection
            with raw.cursor() as cur:
                ref = chancy.sync_push_ex(cur, ship.job.with_kwargs(order_id=order_id))
            if body.fail_after_push:
                raise HTTPException(500, "failed after the push: both are rolled back")
        return {"order_id": order_id, "job_id": str(ref.identifier)}

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        found = await chancy.get_job(job_id)
        if found is None:
            raise HTTPException(404, "no such job")
        return {"state": str(found.state), "result": found.result, "func": found.func}

    return app, chancy


def _sqlalchemy_url(dsn: str) -> str:
    """SQLAlchemy's URL for a libpq DSN, with the psycopg 3 driver."""
    info = conninfo_to_dict(dsn)
    user = info.get("user", "postgres")
    password = f":{info['password']}" if info.get("password") else ""
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    return f"postgresql+psycopg://{user}{password}@{host}:{port}/{info.get('dbname', 'postgres')}"


if "CHANCY_DSN" in os.environ:
    app, chancy = create_app(os.environ["CHANCY_DSN"])
