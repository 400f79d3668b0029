"""Apps the CLI tests load with ``--app``; DSN and prefix come from the environment."""

from __future__ import annotations

import os
from typing import Any

from chancy import Chancy
from chancy.plugin import Plugin

DSN_ENV = "CHANCY_CLI_TEST_DSN"
PREFIX_ENV = "CHANCY_CLI_TEST_PREFIX"


def _make(**kwargs: Any) -> Chancy:
    return Chancy(
        os.environ[DSN_ENV],
        prefix=os.environ[PREFIX_ENV],
        min_connection_pool_size=1,
        max_connection_pool_size=2,
        **kwargs,
    )


class Crasher(Plugin):
    """A plugin whose service always crashes, so the worker stops on a fatal error."""

    async def run(self, worker: Any, chancy: Any) -> None:
        raise RuntimeError("this plugin always crashes")


#: A Chancy instance (``tests.cli.apps.instance`` or ``tests.cli.apps:instance``).
instance = _make()

#: Not an app.
not_an_app = 42


def factory() -> Chancy:
    """A callable returning an app."""
    return _make()


def broken_factory() -> Chancy:
    raise RuntimeError("the factory is broken")


def crashing() -> Chancy:
    return _make(plugins=[Crasher()])


def with_cron() -> Chancy:
    """An app with the Cron plugin (its migration line and schedules)."""
    from chancy.plugins.cron import Cron

    return _make(plugins=[Cron()])


def with_api() -> Chancy:
    """An app with its own Api plugin, which allows one origin."""
    from chancy.plugins.api import Api

    return _make(plugins=[Api(allow_origins=["https://kept.example"])])
