"""Job ids: time-ordered UUIDs (version 7 layout), made one at a time or a batch at a time."""

from __future__ import annotations

import time
import uuid

import pytest

from chancy import utils
from chancy.utils import chancy_uuid, chancy_uuids


def _check_layout(ids: list[uuid.UUID]) -> None:
    now_ms = time.time_ns() // 1_000_000
    for made in ids:
        assert made.version == 7 and made.variant == uuid.RFC_4122
        # Their millisecond is now (a batch of over 4,096 borrows the milliseconds after).
        assert abs((made.int >> 80) - now_ms) < 60_000
        assert uuid.UUID(str(made)) == made and hash(made) == hash(uuid.UUID(str(made)))


@pytest.mark.parametrize("n", [0, 1, 500, 4096, 10_000])
def test_a_batch_of_ids_is_strictly_increasing_and_follows_single_ids(n: int) -> None:
    """Ids made together sort in the order they were made, after the id made before them
    and before the one made after, even when the batch spans several milliseconds' worth of
    the 4,096 ids a millisecond holds."""
    before = chancy_uuid()
    batch = chancy_uuids(n)
    after = chancy_uuid()
    assert len(batch) == n
    ordered = [before, *batch, after]
    assert [u.int for u in ordered] == sorted(u.int for u in ordered)
    assert len({u.int for u in ordered}) == n + 2
    assert ordered == sorted(ordered)  # UUID's own ordering agrees
    _check_layout(ordered)


def test_a_batch_made_in_a_full_millisecond_borrows_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the clock stopped, ids keep increasing: the counter runs to 4,095, then the next
    millisecond is borrowed, as single ids do."""
    frozen = time.time_ns()
    monkeypatch.setattr(utils.time, "time_ns", lambda: frozen)
    monkeypatch.setattr(utils, "_last_ms", 0)
    monkeypatch.setattr(utils, "_seq", 0)
    first = chancy_uuids(4000)
    mixed = [chancy_uuid() for _ in range(50)]
    more = chancy_uuids(5000)
    ids = [*first, *mixed, *more]
    assert [u.int for u in ids] == sorted(u.int for u in ids)
    assert len({u.int for u in ids}) == len(ids)
    ms = [u.int >> 80 for u in ids]
    assert ms[0] == frozen // 1_000_000
    # 9,050 ids at 4,096 a millisecond: three milliseconds, counters restarting at 0.
    assert sorted(set(ms)) == [ms[0], ms[0] + 1, ms[0] + 2]
    assert [(u.int >> 64) & 0xFFF for u in ids[4096:4098]] == [0, 1]
