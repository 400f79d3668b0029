"""Leadership: exactly one worker of an installation leads, by a lease in the database.

Some services must run once per installation, not once per worker: recovery, pruning, cron,
workflows. They run on the leader only, and this module decides who that is.

How it works (read this before changing it):

* **The lease.** ``{prefix}leader`` has one row (``id = 1``): the holder's ``worker_id``, its
  ``term`` and ``expires_at``. Election and renewal are single statements in ``leader.sql``
  whose times come from the database's ``now()``; no worker's clock grants or extends a lease.
  Election takes the row only when it is absent or expired (or already this worker's), and
  bumps the term. Renewal succeeds only for the holder of the live lease, worker *and* term,
  so a leader that was replaced can never renew its way back.
* **Terms.** The row is never deleted, a resignation only expires it, so terms only grow and
  ``(worker_id, term)`` names one tenure for ever.
* **The trust window.** The leader also stops trusting its lease on its own monotonic clock:
  ``trusted_until = (when the last successful renewal was sent) + timeout - trust_margin``,
  enforced by a loop timer even while a renewal hangs. The database lease ran from no earlier
  than that send, so the leader gives up (``is_leader`` cleared, ``leadership.lost`` emitted,
  leader-only services cancelled) before the lease can expire and pass to anyone else. A
  process frozen (SIGSTOP, a debugger, a VM pause) past its window finds the window elapsed
  the moment it resumes and steps down before its leader-only services get to run.
* **Fencing.** A process can still be frozen between a check and its write, so every
  leader-only write carries the leader's identity and term in its SQL and applies only while
  that lease is live in the database; the check share-locks the lease row, so no election can
  complete while such a write is in flight. :func:`lease_params` gives the parameters; the
  ``.sql`` files write the fence as ``{leader_fence}``, a fragment defined once in
  ``chancy/store/fragments/fragments.sql``.

* **Followers** try to elect every ``poll_interval``, at once when the leader resigns
  (NOTIFY ``leadership.resigned``), and right when the holder's lease runs out (the election
  statement returns the seconds left, computed by the database), so a crashed leader is
  replaced within ``timeout`` of its last renewal.
* **Resignation.** A stopping worker steps down as soon as its shutdown starts: it clears
  ``is_leader`` first, then expires its own lease and notifies the followers, so one takes
  over within milliseconds rather than after the lease runs out.

Hub events: ``leadership.gained`` ``{worker_id, term, monotonic}`` and ``leadership.lost``
``{worker_id, term, reason, monotonic}``, where ``monotonic`` is the event loop's clock
(``time.monotonic()``) at the moment ``is_leader`` changed.

``ImmediateLeadership`` makes every worker a leader without a lease (term ``None``, writes not
fenced); it is meant for tests and single-worker setups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from chancy import events
from chancy.errors import ConfigurationError
from chancy.plugin import Plugin, PluginScope
from chancy.plugins import store
from chancy.runtime.service import Backoff, is_transient

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.hub import Event
    from chancy.worker import Worker

log = logging.getLogger("chancy.leadership")

IDENTIFIER = "chancy.leadership"

#: The hub event (and NOTIFY event) a resigning leader sends.
RESIGNED = events.LEADERSHIP_RESIGNED


def lease_params(worker: Worker) -> dict[str, Any]:
    """The parameters of the lease fence that every leader-only statement carries.

    ``leader`` and ``term`` name this worker's tenure; ``fenced`` is False only when the
    installed leadership provider grants leadership without a lease (``ImmediateLeadership``).
    A worker that does not lead has ``term`` None, which matches no lease, so its fenced
    writes change nothing.
    """
    return {
        "leader": worker.worker_id,
        "term": worker.leader_term,
        "fenced": _fences(worker.chancy),
    }


def _fences(chancy: Chancy) -> bool:
    for plugin in chancy.plugins.values():
        if plugin.provides_leadership:
            return plugin.fence_leader_writes
    # No leadership plugin: leader-only plugins run on every worker (as in Chancy 0.26).
    # Nothing grants a lease to fence by; their statements lock what they change with SKIP
    # LOCKED and record it in the same transaction, so each cron slot fires and each
    # workflow step is queued once however many workers run them.
    return False


class Leadership(Plugin):
    """One leader among all workers, elected through a lease in the database.

    :param poll_interval: seconds between renewals (leader) and election attempts (followers).
    :param timeout: seconds a lease lasts after each renewal; a crashed leader is replaced
        within this time.
    :param trust_margin: how long before the lease expires the leader stops trusting it on its
        own clock (default ``min(5, timeout / 10)``), covering clock-rate differences and the
        time between a check and a write.
    :param probe_interval: how often followers check the leader's session (its liveness
        lock, see chancy.plugins.recovery).
    :param session_grace: how long the leader's session may be gone before a follower takes
        over: a killed leader is replaced within about ``session_grace + 2 * probe_interval``
        (about 4 s by default) instead of at its lease's end.
    """

    provides_leadership = True
    fence_leader_writes = True

    def __init__(
        self,
        poll_interval: float = 60,
        timeout: float = 120,
        *,
        trust_margin: float | None = None,
        probe_interval: float = 1.0,
        session_grace: float = 2.0,
    ) -> None:
        super().__init__()
        for name, value in (("poll_interval", poll_interval), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(
                    f"Leadership({name}={value!r}): {name} must be a positive number of seconds"
                )
        margin = min(5.0, timeout / 10) if trust_margin is None else trust_margin
        if margin < 0 or margin >= timeout:
            raise ConfigurationError(
                f"Leadership(trust_margin={trust_margin!r}) must be at least 0 and below the"
                f" timeout ({timeout}s)"
            )
        if poll_interval >= timeout - margin:
            raise ConfigurationError(
                f"Leadership(poll_interval={poll_interval}, timeout={timeout}): the leader"
                f" renews every poll_interval and stops trusting its lease {timeout - margin:g}s"
                f" (timeout - trust margin of {margin:g}s) after a renewal, so poll_interval"
                " must be shorter than that or the leader would step down between renewals;"
                " make the timeout at least twice the poll interval (e.g. poll_interval=60,"
                " timeout=120)"
            )
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)
        self.trust_margin = float(margin)
        for name, value in (("probe_interval", probe_interval), ("session_grace", session_grace)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"Leadership({name}={value!r}) must be seconds > 0")
        #: Followers check the leader's session this often (see leader_probe).
        self.probe_interval = float(probe_interval)
        #: A leader whose session is gone this long is replaced, its lease notwithstanding.
        self.session_grace = float(session_grace)
        self._leases: dict[Worker, _Lease] = {}

    @classmethod
    def get_identifier(cls) -> str:
        return IDENTIFIER

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.WORKER

    def lease(self, worker: Worker) -> _Lease:
        """The lease state this plugin keeps for ``worker``."""
        found = self._leases.get(worker)
        if found is None:
            found = self._leases[worker] = _Lease(self, worker)
        return found

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        await self.lease(worker).run()

    async def on_worker_stopped(self, worker: Worker) -> None:
        lease = self._leases.pop(worker, None)
        if lease is not None:
            await lease.stop()


class _Lease:
    """One worker's side of the election: its term, trust window and loop."""

    def __init__(self, plugin: Leadership, worker: Worker) -> None:
        self.plugin = plugin
        self.worker = worker
        self.chancy = worker.chancy
        #: The term this worker holds and trusts, or None.
        self.term: int | None = None
        #: Loop time (monotonic) after which the held lease is no longer trusted.
        self.trusted_until = 0.0
        self.next_renew = 0.0
        self.next_elect = 0.0
        self.next_probe = 0.0
        self.resigned = False
        #: Set when the leader resigned: elect at once, even if an election is in flight.
        self._prompt = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._lapse: asyncio.TimerHandle | None = None

    # -- local state --------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _gain(self, term: int, sent: float) -> None:
        loop = asyncio.get_running_loop()
        self.term = term
        self._trust(sent)
        self.next_renew = sent + self.plugin.poll_interval
        worker = self.worker
        worker.leader_term = term
        at = loop.time()
        worker.is_leader.set()
        log.info("worker %s is now the leader (term %d)", worker.worker_id, term)
        worker.hub.emit(
            events.LEADERSHIP_GAINED, {"worker_id": worker.worker_id, "term": term, "monotonic": at}
        )

    def _trust(self, sent: float) -> None:
        """Trust the lease until ``sent + timeout - margin``, enforced by a loop timer."""
        self.trusted_until = sent + self.plugin.timeout - self.plugin.trust_margin
        if self._lapse is not None:
            self._lapse.cancel()
        self._lapse = asyncio.get_running_loop().call_at(self.trusted_until, self._check_trust)

    def _check_trust(self) -> None:
        self._lapse = None
        if self.term is not None and self._now() >= self.trusted_until:
            window = self.plugin.timeout - self.plugin.trust_margin
            self._lose(f"its lease was not renewed within {window:g}s")
            self.next_elect = 0.0
            self._wake.set()

    def _lose(self, reason: str, *, graceful: bool = False) -> None:
        if self._lapse is not None:
            self._lapse.cancel()
            self._lapse = None
        term, self.term = self.term, None
        if term is None:
            return
        worker = self.worker
        worker.leader_term = None
        worker.is_leader.clear()
        at = self._now()
        log.log(
            logging.INFO if graceful else logging.WARNING,
            "worker %s is no longer the leader (term %d): %s",
            worker.worker_id,
            term,
            reason,
        )
        worker.hub.emit(
            events.LEADERSHIP_LOST,
            {"worker_id": worker.worker_id, "term": term, "reason": reason, "monotonic": at},
        )

    def _on_resigned(self, event: Event) -> None:
        if self.term is None:
            self._prompt = True
            self._wake.set()

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        worker = self.worker
        worker.hub.on(RESIGNED, self._on_resigned)
        watcher = asyncio.create_task(self._watch_shutdown())
        self._done.clear()
        backoff = Backoff(0.05, max(0.1, self.plugin.poll_interval / 2))
        self.next_elect = 0.0
        try:
            while not self._stopping:
                try:
                    await self._step()
                    backoff.reset()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    delay = backoff.next()
                    log.warning(
                        "leadership: database unavailable (%s); retrying in %.2fs", exc, delay
                    )
                    if self.term is not None:
                        self.next_renew = self._now() + delay
                    else:
                        self.next_elect = self._now() + delay
                await self._sleep_until(self._next_wake())
            await self._resign("the worker is stopping")
        finally:
            watcher.cancel()
            worker.hub.remove(RESIGNED, self._on_resigned)
            self._lose("the leadership service stopped")
            self._done.set()

    async def _step(self) -> None:
        now = self._now()
        if self.term is not None:
            if now >= self.trusted_until:
                self._lose("its lease was not renewed in time")
                self.next_elect = 0.0
            elif now >= self.next_renew:
                await self._renew()
                return
        if self.term is None and not self._prompt and now >= self.next_probe:
            self.next_probe = now + self.plugin.probe_interval
            if await self._probe():
                self._prompt = True  # the leader's session is gone: take over now
        if self.term is None and (self._prompt or self._now() >= self.next_elect):
            self._prompt = False
            await self._elect()

    def _next_wake(self) -> float:
        if self.term is not None:
            return min(self.next_renew, self.trusted_until)
        return 0.0 if self._prompt else min(self.next_elect, self.next_probe)

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._now()
        if delay > 0 and not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()

    async def _watch_shutdown(self) -> None:
        await self.worker.shutdown_event.wait()
        self._stopping = True
        self._wake.set()

    def _params(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker.worker_id,
            "timeout": self.plugin.timeout,
            "liveness_key": self.worker.runtime.liveness_key,
            "grace": self.plugin.session_grace,
        }

    async def _probe(self) -> bool:
        """Whether the leader's session has been gone for the grace period (then: elect)."""
        row = await self.chancy.db.run(store.leader_probe(self.chancy.prefix, self._params()))
        return bool(row and row["takeover"])

    async def _elect(self) -> None:
        sent = self._now()
        row = await self.chancy.db.run(store.leader_elect(self.chancy.prefix, self._params()))
        poll = self.plugin.poll_interval
        term = row["term"] if row else None
        if term is not None:
            if self._stopping:
                # Elected while shutting down: give it back at once (the loop resigns next).
                self.next_elect = self._now() + poll
                return
            if self._now() >= sent + self.plugin.timeout - self.plugin.trust_margin:
                # The answer came too late to trust; elect again (we hold it: new term).
                self.next_elect = 0.0
                return
            self._gain(int(term), sent)
            return
        remaining = row["remaining"] if row else None
        if remaining is None or remaining <= 0:
            # The statement's snapshot predates a concurrent election; look again shortly.
            wait = min(poll, 0.1)
        else:
            # Try again right when the holder's lease runs out, or at the next poll.
            wait = min(poll, float(remaining) + 0.005)
        self.next_elect = sent + wait

    async def _renew(self) -> None:
        term = self.term
        sent = self._now()
        params = {**self._params(), "term": term, "notify": self.chancy.notifications}
        row = await self.chancy.db.run(store.leader_renew(self.chancy.prefix, params))
        if self.term is None or self.term != term:
            # The trust window closed while the renewal was in flight; the loop elects again.
            self.next_elect = 0.0
            return
        if row is None:
            self._lose("another worker holds the lease, or it expired")
            self.next_elect = 0.0
            return
        self._trust(sent)
        self.next_renew = sent + self.plugin.poll_interval
        if self._now() >= self.trusted_until:
            self._lose("the renewal was answered too late to trust")
            self.next_elect = 0.0

    async def _resign(self, reason: str) -> None:
        """Step down locally first, then expire our lease in the database and tell others."""
        self._lose(reason, graceful=True)
        if self.resigned:
            return
        self.resigned = True
        spec = store.leader_resign(
            self.chancy.prefix, self.worker.worker_id, notify=self.chancy.notifications
        )
        try:
            row = await self.chancy.db.run(spec)
        except Exception as exc:
            log.warning(
                "worker %s could not resign its lease (%s); a follower takes over when it expires",
                self.worker.worker_id,
                exc,
            )
            return
        if row is not None:
            log.info(
                "worker %s resigned the leadership (term %s)", self.worker.worker_id, row["term"]
            )

    async def stop(self) -> None:
        """Stop the loop (if it runs) and make sure this worker's lease is given up."""
        self._stopping = True
        self._wake.set()
        if not self._done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), 5)
        await self._resign("the worker stopped")


class ImmediateLeadership(Plugin):
    """Every worker leads at once, without a lease; for tests and single-worker setups.

    Leader-only writes are not fenced (``worker.leader_term`` stays None). With more than one
    worker, leader-only services run on each of them.
    """

    provides_leadership = True
    fence_leader_writes = False

    @classmethod
    def get_identifier(cls) -> str:
        return IDENTIFIER

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.WORKER

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        worker.leader_term = None
        worker.is_leader.set()
        worker.hub.emit(
            events.LEADERSHIP_GAINED,
            {"worker_id": worker.worker_id, "term": None, "monotonic": _monotonic()},
        )
        try:
            await asyncio.Event().wait()
        finally:
            worker.is_leader.clear()
            worker.hub.emit(
                events.LEADERSHIP_LOST,
                {
                    "worker_id": worker.worker_id,
                    "term": None,
                    "reason": "the worker is stopping",
                    "monotonic": _monotonic(),
                },
            )


def _monotonic() -> float:
    return asyncio.get_running_loop().time()
