"""Jobs that hand the worker data PostgreSQL cannot store, or break in unusual ways."""

from __future__ import annotations

from typing import Any

from chancy import QueuedJob

NOT_CALLABLE = 42


async def returns(value: str) -> Any:
    """Return something awkward, chosen by name (kwargs must be storable themselves)."""
    return {
        "nan": float("nan"),
        "inf": [float("inf")],
        "nul": "a\x00b",
        "surrogate": {"k": "\ud800"},
        "object": object(),
    }[value]


async def raises_nul() -> None:
    raise ValueError("bad byte \x00 and a lone surrogate \udfff in the message")


async def spoils_meta(*, job: QueuedJob) -> str:
    job.meta["unstorable"] = float("nan")
    job.meta["also"] = object()
    return "done"


async def ok() -> str:
    return "ok"
