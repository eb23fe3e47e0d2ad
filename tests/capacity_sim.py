"""Writers against a table with partitioned capacity, in simulated time: the limiter's whole-run
behaviour (start-up, holding, a capacity that changes) measured deterministically, without a
server or a clock.

The table is the fault proxy's own capacity model (``testing.capacity.WriteCapacity``: buckets
per partition by the hash of the key, a second of burst, items over a bucket held back, a call
with none admitted refused). The writers do what ``TableWriter._batch_write`` and
``DynamoClient.call_raw`` do with the limiter: acquire, call, settle; held-back items retried
after a jittered back-off (acquired again); a refused call re-sent after a back-off and
``again()`` (the client's retry loop). Each writer is one event stream with its own
thread-local limiter state.
"""

from __future__ import annotations

import heapq
import random
import types
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ddbmigrate.aws.capacity import AdaptiveLimiter, Declared, TokenBucket
from ddbmigrate.testing.capacity import WriteCapacity


class _Wait(Exception):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class FakeClock:
    """Time moves only when the limiter sleeps (or the test advances it): one caller at a time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        assert s > 0
        self.sleeps.append(s)
        self.now += s


class SimClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        raise _Wait(seconds)  # the writer is re-scheduled; the bucket took nothing


@dataclass
class Run:
    seconds: float
    items: int
    calls: int
    throttled_calls: int
    throttled_items: int
    admitted_units: float
    capacity_seconds: float
    # The limiter's rate every 0.25 s of simulated time: to read what a failing run did.
    rates: List[Tuple[float, Optional[float]]] = field(default_factory=list, repr=False)
    steady_efficiency: float = 0.0  # from 5 s on: the table's starting burst left out
    calls_log: List[Tuple[float, float, float]] = field(default_factory=list, repr=False)  # (at, sent, admitted)

    def throttled_share_after(self, seconds: float) -> float:
        late = [(s, a) for t, s, a in self.calls_log if t >= seconds]
        return sum(1 for s, a in late if s > a) / max(1, len(late))

    @property
    def throttled_share(self) -> float:
        return self.throttled_calls / max(1, self.calls)

    @property
    def throttled_item_share(self) -> float:
        """Of the write requests inside the calls (DynamoDB's per-request throttle events)."""
        return self.throttled_items / max(1, self.throttled_items + self.items)

    @property
    def efficiency(self) -> float:
        return self.admitted_units / self.capacity_seconds


def simulate(items: int, capacity: float, *, partitions: int = 4, writers: int = 16, seed: int = 1,
             latency: Tuple[float, float] = (0.05, 0.1), change: Optional[Tuple[float, float]] = None,
             limiter: Optional[AdaptiveLimiter] = None, estimate: float = 1.0, admit_on_arrival: bool = False,
             noise: float = 0.0, limit: Optional[float] = None, fixed: bool = False,
             declared: Optional[float] = None, redescribe: bool = True) -> Run:
    """Write ``items`` items of 1 WCU in calls of 25; ``change`` = (at seconds, new capacity);
    ``estimate`` = the writers' estimate of an item's units (the table writer's comes from the
    item's JSON, which is larger than DynamoDB's measure of it: 2 for an item of 600 bytes).
    ``admit_on_arrival``: the table decides when the call arrives and the latency is all in the
    answer (the fault proxy in front of DynamoDB Local, whose writing is the slow part), rather
    than when it is answered: a call answered after a throttled one may then have been admitted
    long before it. ``noise``: that share of calls is refused whole whatever the rate (a server
    throttling at random), counted as throttled. ``limit``: the rate given (``--max-write-units``);
    ``fixed``: with it, the plain token bucket (halved on throttles, 5 % back a second) that held
    a given rate before the limiter adapted under it, to compare the two. ``declared``: the
    capacity the table says it has (a provisioned table's write units), where the rate starts;
    ``redescribe``: with it, the limiter reads the table's figure again as it runs, as a job's
    does with DescribeTable (``declared``, times what ``change`` did to the capacity)."""
    rng = random.Random(seed)
    noise_rng = random.Random(seed * 7919 + 1)  # its own stream: the writers' draws stay as they were
    noise_calls = noise_items = 0
    clock = SimClock()
    table = WriteCapacity(capacity, partitions=partitions, clock=clock)
    lim: Any = limiter
    if lim is None and fixed and limit:
        lim = TokenBucket(limit, clock=clock, sleep=clock.sleep)
    elif lim is None:
        lim = AdaptiveLimiter(clock=clock, sleep=clock.sleep, limit=limit, declared=declared,
                              redescribe=(lambda: Declared(declared * table.units / capacity))
                              if declared and redescribe else None, look_aside=False,
                              redescribe_jitter=0.0)
    start = clock.now
    keys = iter(range(items))
    events: List[Tuple[float, int, int, str, Any]] = []
    seq = 0

    def push(t: float, w: int, what: str, batch: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, w, what, batch))

    def next_batch() -> Optional[List[Dict[str, Any]]]:
        batch = [{"PutRequest": {"Item": {"pk": {"S": f"k{k}"}}}} for _, k in zip(range(25), keys)]
        return batch or None

    def admit(batch: List[Dict[str, Any]]) -> Tuple[List[Any], List[Any]]:
        nonlocal noise_calls, noise_items
        if noise and noise_rng.random() < noise:
            noise_calls += 1
            noise_items += len(batch)
            return [], batch
        return table.admit("t", batch, "pk", {})

    locals_ = [types.SimpleNamespace() for _ in range(writers)]
    attempts: Dict[int, int] = {}
    rates: List[Tuple[float, Optional[float]]] = []
    for w in range(writers):
        b = next_batch()
        if b:
            push(clock.now, w, "acquire", b)
    changed = change is None
    end = clock.now
    while events:
        t, _, w, what, batch = heapq.heappop(events)
        clock.now = t
        if not changed and change is not None and t - start >= change[0]:
            table.set_units(change[1])
            changed = True
        lim._local = locals_[w]
        if not rates or t - start - rates[-1][0] >= 0.25:
            rates.append((t - start, lim.rate))
        if what in ("acquire", "again"):
            try:
                if what == "again":
                    lim.again()
                else:
                    lim.acquire(estimate * len(batch))
            except _Wait as e:
                push(t + max(e.seconds, 0.001), w, what, batch)
                continue
            if admit_on_arrival:
                batch = (batch, admit(batch))
            push(t + rng.uniform(*latency), w, "answer", batch)
        else:
            if admit_on_arrival:
                batch, (kept, held) = batch
            else:
                kept, held = admit(batch)
            end = t
            if not kept:  # refused whole: the client's retry loop, which waits for the rate again
                lim.throttled()
                attempts[w] = attempts.get(w, 0) + 1
                push(t + _backoff(rng, attempts[w]), w, "again", batch)
                continue
            lim.settle(estimate * len(batch), float(len(kept)))
            if held:
                lim.held_back(float(len(held)))
                lim.throttled()
                attempts[w] = attempts.get(w, 0) + 1
                push(t + _backoff(rng, attempts[w]), w, "acquire", held)
                continue
            attempts[w] = 0
            b = next_batch()
            if b:
                push(t, w, "acquire", b)
    seconds = end - start

    def capacity_seconds(until: float) -> float:
        if change is not None and until > change[0]:
            return capacity * change[0] + change[1] * (until - change[0])
        return capacity * until

    cap_s = capacity_seconds(seconds)
    late = [a for t, _, a in table.calls if t >= 5.0]
    cap_late = cap_s - capacity_seconds(min(5.0, seconds))
    return Run(seconds, items, table.write_calls + noise_calls, table.throttled_calls + noise_calls,
               table.throttled_items + noise_items, table.accepted_units,
               cap_s, rates, sum(late) / cap_late if cap_late > 0 else 0.0, list(table.calls))


def _backoff(rng: random.Random, attempt: int) -> float:
    return min(5.0, 0.05 * 2 ** attempt) * rng.random()
