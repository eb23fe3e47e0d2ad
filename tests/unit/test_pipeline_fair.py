"""The pipeline's shared batch queue: writers are spread over the units (scan segments) that
have work queued, instead of all writing one page's neighbouring keys at once."""

from __future__ import annotations

import pytest


# ------------------------------------------------------------------ writers spread over units

def test_the_shared_queue_deals_batches_out_one_unit_after_the_other() -> None:
    """A scan page's items are neighbours in the hash space (one target partition): batches are
    served round-robin over units, each unit's in its own order, stop sentinels last."""
    from ddbmigrate.engine.pipeline import Batch, Ticket, UnitRoundRobinQueue

    q = UnitRoundRobinQueue(maxsize=100)

    def batch(unit: str, n: int) -> Batch:
        return Batch(ops=[], ticket=Ticket(unit, n, False), nbytes=n)

    for unit in ("a", "b", "c"):
        for n in range(3):
            q.put(batch(unit, n))
    q.put(None)
    q.put(batch("d", 0))  # a batch put after a sentinel still comes before it
    got = []
    while not q.empty():
        b = q.get_nowait()
        got.append(None if b is None else (b.ticket.unit, b.ticket.position))
    assert got == [("a", 0), ("b", 0), ("c", 0), ("d", 0), ("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2),
                   ("c", 2), None]


def test_the_shared_queue_is_bounded() -> None:
    import queue

    from ddbmigrate.engine.pipeline import Batch, Ticket, UnitRoundRobinQueue

    q = UnitRoundRobinQueue(maxsize=2)
    q.put(Batch(ops=[], ticket=Ticket("a", 0, False), nbytes=0))
    q.put(Batch(ops=[], ticket=Ticket("b", 0, False), nbytes=0))
    with pytest.raises(queue.Full):
        q.put(Batch(ops=[], ticket=Ticket("c", 0, False), nbytes=0), timeout=0.01)
