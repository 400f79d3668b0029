"""Pruner: the leader deletes finished jobs that match a rule, then lets plugins clean up.

Only ``succeeded`` and ``failed`` jobs are ever deleted; pending, retrying and running jobs
are never touched, whatever the rule says. Each pass deletes at most ``maximum_to_prune``
jobs, in batches of ``batch_size`` (oldest completion first, ``FOR UPDATE SKIP LOCKED``), so a
large backlog never becomes one long transaction. Every batch is fenced by the leader's lease.
A plugin that needs some finished jobs kept declares it with ``prune_guard`` (the workflow
plugin keeps the steps of running workflows); the pruner ANDs every guard into its delete and
knows no plugin by name. After the jobs, each plugin's ``cleanup(chancy)`` runs (plugins
without one are skipped).

::

    Pruner(rule=(Pruner.Rules.Queue() == "reports") & (Pruner.Rules.Age() > 3600))

Retention counts from ``completed_at`` (``JobRules.Age``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, LiteralString

from psycopg import sql

from chancy import events
from chancy.errors import ConfigurationError
from chancy.plugin import Plugin, PluginScope
from chancy.plugins import store
from chancy.plugins.leadership import lease_params
from chancy.rule import JobRules, SQLAble, compile_rule_named
from chancy.utils import timed_block

if TYPE_CHECKING:
    import psycopg

    from chancy.app import Chancy
    from chancy.worker import Worker

log = logging.getLogger("chancy.pruner")


def _positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{owner}({name}={value!r}) must be an int >= 1")
    return value


def _interval(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(f"{owner}({name}={value!r}) must be a positive number of seconds")
    return float(value)


class Pruner(Plugin):
    """Leader-only: delete finished jobs matching ``rule``.

    :param rule: which finished jobs to delete (default: finished more than a day ago).
    :param maximum_to_prune: the most jobs deleted in one pass.
    :param poll_interval: seconds between passes.
    :param batch_size: jobs deleted per statement.
    """

    Rules = JobRules
    calls_cleanup = True

    def __init__(
        self,
        rule: SQLAble = JobRules.Age() > 86400,
        maximum_to_prune: int = 10000,
        poll_interval: float = 60,
        *,
        batch_size: int = 1000,
    ) -> None:
        super().__init__()
        # Compiling now turns a malformed rule into an error at configuration time.
        compile_rule_named(rule, alias="j")
        self.rule = rule
        self.maximum_to_prune = _positive_int("Pruner", "maximum_to_prune", maximum_to_prune)
        self.poll_interval = _interval("Pruner", "poll_interval", poll_interval)
        self.batch_size = _positive_int("Pruner", "batch_size", batch_size)

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.pruner"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        while True:
            pool = await chancy.open()
            with timed_block() as timer:
                async with pool.connection() as conn, conn.cursor() as cursor:
                    removed = await self.prune(chancy, cursor, lease=lease_params(worker))
            if removed:
                log.info("pruned %d finished job(s) in %.2fs", removed, timer.elapsed)
            async with pool.connection() as conn, conn.cursor() as cursor:
                # Every pass is announced, as in Chancy 0.26 (hub and NOTIFY).
                body = {"elapsed": timer.elapsed, "rows_removed": removed}
                await chancy.notify(cursor, events.PRUNER_REMOVED, body)
            await self.cleanup_plugins(chancy)
            await self.sleep(self.poll_interval)

    async def prune(
        self,
        chancy: Chancy,
        cursor: psycopg.AsyncCursor[Any],
        *,
        lease: dict[str, Any] | None = None,
    ) -> int:
        """Delete finished jobs matching the rule, in batches; return how many were deleted.

        Runs on ``cursor`` (so inside the caller's transaction, if any). ``lease`` is the
        fence from :func:`~chancy.plugins.leadership.lease_params`; without it (an operator
        calling this by hand) the deletes are not fenced.
        """
        statement, rule_params = self.delete_statement(chancy.prefix, guards(chancy))
        fence = lease if lease is not None else store.UNFENCED
        total = 0
        while total < self.maximum_to_prune:
            limit = min(self.batch_size, self.maximum_to_prune - total)
            spec = store.pruner_delete(statement, rule_params, fence, limit)
            row = await chancy.db.run_ex(cursor, spec)
            deleted = int(row["deleted"]) if row else 0
            total += deleted
            if deleted < limit:
                break
        return total

    def delete_statement(
        self, prefix: str, guards: Sequence[LiteralString] = ()
    ) -> tuple[sql.Composed, dict[str, Any]]:
        """The statement that deletes one batch, with the rule's parameters (without the
        fence and the batch ``limit``); ``guards`` are the installed plugins' (see
        :func:`guards`)."""
        where, rule_params = compile_rule_named(self.rule, alias="j")
        return store.pruner_delete_statement(prefix, where, guards), rule_params

    @staticmethod
    async def cleanup_plugins(chancy: Chancy) -> dict[str, int]:
        """Call every plugin's ``cleanup``; return rows removed by plugin identifier."""
        removed: dict[str, int] = {}
        for identifier, plugin in chancy.plugins.items():
            try:
                rows = await plugin.cleanup(chancy)
            except NotImplementedError:
                continue
            except Exception:
                log.exception("cleanup of plugin %s failed", identifier)
                continue
            if rows:
                removed[identifier] = rows
                log.info("plugin %s removed %d row(s)", identifier, rows)
        return removed


def guards(chancy: Chancy) -> list[LiteralString]:
    """The prune guards of the installed plugins (``Plugin.prune_guard``)."""
    found = []
    for plugin in chancy.plugins.values():
        guard = plugin.prune_guard(chancy.prefix)
        if guard is not None:
            found.append(guard)
    return found
