"""Reprioritize: the leader raises the priority of waiting jobs that match a rule.

Typically used to age jobs up so that a steady stream of high-priority work cannot starve old
low-priority jobs::

    Reprioritize(Reprioritize.Rules.Age() > 600, check_interval=300, priority_increase=1)

Every ``check_interval`` seconds each ``pending`` or ``retrying`` job matching the rule gains
``priority_increase`` (clamped to the 32-bit range). Jobs are visited in id order in batches
(``FOR UPDATE SKIP LOCKED``, so a job being claimed is skipped this time), each batch fenced by
the leader's lease.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError
from chancy.plugin import Plugin, PluginScope
from chancy.plugins import store
from chancy.plugins.leadership import lease_params
from chancy.plugins.pruner import _interval, _positive_int
from chancy.rule import JobRules, SQLAble, compile_rule_named

if TYPE_CHECKING:
    import psycopg

    from chancy.app import Chancy
    from chancy.worker import Worker

log = logging.getLogger("chancy.reprioritize")


class Reprioritize(Plugin):
    """Leader-only: add ``priority_increase`` to waiting jobs matching ``rule``.

    :param rule: which waiting jobs to raise.
    :param check_interval: seconds between passes.
    :param priority_increase: added to each matching job's priority per pass (may be negative).
    :param batch_size: jobs changed per statement.
    """

    Rules = JobRules

    def __init__(
        self,
        rule: SQLAble,
        check_interval: float = 300,
        priority_increase: int = 1,
        *,
        batch_size: int = 1000,
    ) -> None:
        super().__init__()
        compile_rule_named(rule, alias="j")
        if isinstance(priority_increase, bool) or not isinstance(priority_increase, int):
            raise ConfigurationError(
                f"Reprioritize(priority_increase={priority_increase!r}) must be an int"
            )
        self.rule = rule
        self.check_interval = _interval("Reprioritize", "check_interval", check_interval)
        self.priority_increase = priority_increase
        self.batch_size = _positive_int("Reprioritize", "batch_size", batch_size)

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.reprioritize"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            await self.sleep(self.check_interval)
            pool = await chancy.open()
            async with pool.connection() as conn, conn.cursor() as cursor:
                changed = await self.reprioritize(chancy, cursor, lease=lease_params(worker))
            if changed:
                log.info("raised the priority of %d job(s) by %d", changed, self.priority_increase)

    async def reprioritize_jobs(self, chancy: Chancy) -> int:
        """One pass, unfenced, on a connection of its own (Chancy 0.26's entry point)."""
        pool = await chancy.open()
        async with pool.connection() as conn, conn.cursor() as cursor:
            return await self.reprioritize(chancy, cursor)

    async def reprioritize(
        self,
        chancy: Chancy,
        cursor: psycopg.AsyncCursor[Any],
        *,
        lease: dict[str, Any] | None = None,
    ) -> int:
        """One pass over the matching waiting jobs; return how many were changed.

        ``lease`` is the fence from :func:`~chancy.plugins.leadership.lease_params`; without
        it (an operator calling this by hand) the updates are not fenced.
        """
        where, rule_params = compile_rule_named(self.rule, alias="j")
        statement = store.reprioritize_statement(chancy.prefix, where)
        fence = lease if lease is not None else store.UNFENCED
        after: uuid.UUID | None = None
        total = 0
        while True:
            params = {
                **rule_params,
                "after": after,
                "limit": self.batch_size,
                "increase": self.priority_increase,
            }
            row = await chancy.db.run_ex(cursor, store.reprioritize_bump(statement, params, fence))
            if row is None:
                break
            total += int(row["bumped"])
            if row["picked"] < self.batch_size or row["last_id"] is None:
                break
            after = row["last_id"]
        return total
