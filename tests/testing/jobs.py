"""Jobs for the chancy.testing tests."""

from __future__ import annotations

import asyncio
import os

from chancy import job


@job(queue="emails")
async def send_welcome(to: str, plan: str = "free") -> str:
    return f"welcome {to}"


async def sleepy(seconds: float) -> None:
    await asyncio.sleep(seconds)


def which_process() -> int:
    return os.getpid()
