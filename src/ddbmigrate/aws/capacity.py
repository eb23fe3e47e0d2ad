"""Capacity-aware rate limiting: a token bucket fed by ReturnConsumedCapacity, made adaptive.

Workers call ``acquire(estimate)`` before a request and ``settle(estimate, consumed)`` after
it, so the bucket is charged what DynamoDB actually consumed. ``throttled()`` halves the rate
(multiplicative decrease, at most once per ``decrease_interval``: eight writers throttled by the
same burst are one signal, not eight halvings); each second without throttling adds back
``recover_step`` of the ceiling (additive increase). Time and sleep are injected so tests run without sleeping.

Invariant: over any window the consumed units stay within rate x window + burst.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import UsageError

# What --*-percent of an on-demand table without a configured maximum is a percentage of.
ON_DEMAND_DEFAULT_UNITS = 40_000.0


class RateLimiter:
    """No limit: the default."""

    rate: Optional[float] = None
    ceiling: Optional[float] = None
    name: str = ""
    throttle_events: int = 0

    def acquire(self, units: float = 1.0) -> None:
        return None

    def settle(self, estimate: float, consumed: float) -> None:
        return None

    def held_back(self, units: float) -> None:
        """Units sent but not admitted (``UnprocessedItems``): what was sent counts, not only
        what was consumed, or a throttled table would be offered ever more than the rate."""
        return None

    def throttled(self) -> None:
        return None

    def current_rate(self) -> Optional[float]:
        return None

    def describe(self) -> Optional[Dict[str, Any]]:
        """For the report: the configured limit, the current (adapted) rate, throttle events."""
        if self.ceiling is None:
            return None
        return {"limit": round(self.ceiling, 1), "current": round(self.rate or 0.0, 1),
                "throttle_events": self.throttle_events}


class TokenBucket(RateLimiter):
    rate: float
    ceiling: float

    def __init__(
        self,
        rate: float,
        *,
        burst_seconds: float = 1.0,
        min_rate: Optional[float] = None,
        recover_step: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        decrease_interval: float = 1.0,
        name: str = "",
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.ceiling = float(rate)
        self.rate = float(rate)
        self.min_rate = min_rate if min_rate is not None else max(1.0, rate * 0.05)
        self.burst_seconds = burst_seconds
        self.recover_step = recover_step
        self.clock = clock
        self.sleep = sleep
        self.decrease_interval = decrease_interval
        self.name = name
        self._lock = threading.Lock()
        self._tokens = self.rate * burst_seconds
        self._last = clock()
        self._last_throttle = -1e18
        self._last_decrease = -1e18
        self._last_recover = self._last
        self.throttle_events = 0

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._last)
        self._last = now
        # Additive increase: every whole second since the last throttle adds back a step.
        if self.rate < self.ceiling and now - self._last_throttle >= 1.0:
            steps = int(now - self._last_recover)
            if steps > 0:
                self.rate = min(self.ceiling, self.rate + steps * self.recover_step * self.ceiling)
                self._last_recover += steps
        self._tokens = min(self.rate * self.burst_seconds, self._tokens + elapsed * self.rate)

    def acquire(self, units: float = 1.0) -> None:
        """Block until ``units`` tokens are available (the balance may go negative by one request)."""
        while True:
            with self._lock:
                now = self.clock()
                self._refill(now)
                # A tiny tolerance: after sleeping exactly -tokens/rate the balance is ~0.
                if self._tokens > -1e-9 or units <= 0:
                    self._tokens -= units
                    return
                wait = -self._tokens / self.rate if self._tokens < 0 else units / self.rate
                wait = max(wait, 0.001)
            self.sleep(min(wait, 1.0))

    def settle(self, estimate: float, consumed: float) -> None:
        with self._lock:
            self._tokens -= consumed - estimate

    def held_back(self, units: float) -> None:
        with self._lock:
            self._tokens -= units

    def throttled(self) -> None:
        with self._lock:
            now = self.clock()
            self.throttle_events += 1
            self._tokens = min(self._tokens, 0.0)
            # Throttles within decrease_interval of the last halving are the same congestion
            # event (every worker sees it at once): answer it once, but still delay recovery.
            if now - self._last_decrease >= self.decrease_interval:
                self.rate = max(self.min_rate, self.rate / 2.0)
                self._last_decrease = now
            self._last_throttle = now
            self._last_recover = now

    def current_rate(self) -> Optional[float]:
        return self.rate


_HISTORY = 10.0  # seconds of admitted units an AdaptiveLimiter keeps


class AdaptiveLimiter(RateLimiter):
    """No limit until DynamoDB says there is one; then hold just under what it admits.

    The job was given no rate, so the table's capacity is whatever DynamoDB admits. Until the
    first throttle nothing is limited. A throttle sets the rate to ``hold`` (95 %) of the units
    DynamoDB *admitted* over the last ``window`` second(s) — under a capacity limit, that is the
    capacity, whatever was asked — and at least 10 % below the rate before (what a table admits
    right after we stayed under its rate includes the burst it saved up meanwhile). Each second
    without a throttle adds ``probe`` (3 %), so a capacity that grows is found again and one that
    shrinks is followed at the next throttle. Throttles within ``decrease_interval`` of a decrease
    are one signal (every writer sees the same congestion). Two edge cases: with less than a
    quarter second of answers there is nothing to learn a rate from (the retries' back-off waits);
    with no answer for half a second (every writer inside a refused call's retries) what was
    admitted reads near zero and says nothing, so the rate is only halved.
    Measured against the fault proxy's capacity model in ``bench/capacity.py``.
    """

    def __init__(self, *, hold: float = 0.95, probe: float = 0.03, window: float = 1.0,
                 min_rate: float = 1.0, decrease_interval: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, name: str = "") -> None:
        self.hold, self.probe, self.window = hold, probe, window
        self.min_rate = min_rate
        self.decrease_interval = decrease_interval
        self.clock, self.sleep = clock, sleep
        self.name = name
        self.rate = None
        self.ceiling = None
        self._lock = threading.Lock()
        self._bucket: Optional[TokenBucket] = None
        self._accepted: List[Tuple[float, float]] = []  # (time, units) in the window
        self._started = clock()
        self._last_decrease = -1e18
        self._last_probe = 0.0
        self.throttle_events = 0

    def acquire(self, units: float = 1.0) -> None:
        with self._lock:
            bucket = self._bucket
            if bucket is not None:
                self._maybe_probe(bucket)
        if bucket is not None:
            bucket.acquire(units)

    def _maybe_probe(self, bucket: "TokenBucket") -> None:
        now = self.clock()
        steps = int(now - self._last_probe)
        if steps > 0 and now - self._last_decrease >= 1.0:
            bucket.rate = bucket.ceiling = bucket.rate * (1.0 + self.probe) ** min(steps, 30)
            self.rate = bucket.rate
            self._last_probe += steps

    def settle(self, estimate: float, consumed: float) -> None:
        now = self.clock()
        with self._lock:
            self._accepted.append((now, consumed))
            cut = now - _HISTORY
            if self._accepted[0][0] < cut:
                self._accepted = [(t, u) for t, u in self._accepted if t >= cut]
            bucket = self._bucket
        if bucket is not None:
            bucket.settle(estimate, consumed)

    def held_back(self, units: float) -> None:
        bucket = self._bucket
        if bucket is not None:
            bucket.held_back(units)

    def accepted_rate(self) -> float:
        now = self.clock()
        with self._lock:
            if not self._accepted:
                return 0.0
            # Over the window; never less than a second, because what a table admits in its
            # first instants includes its burst allowance, which is not a rate it can hold.
            span = max(1.0, self.window)
            return sum(u for t, u in self._accepted if t > now - span) / span

    def _peak_rate(self, now: float) -> float:
        """The most units admitted in any one second of the recent history."""
        per: Dict[int, float] = {}
        for t, u in self._accepted:
            per[int(now - t)] = per.get(int(now - t), 0.0) + u
        return max(per.values(), default=0.0)

    def throttled(self) -> None:
        accepted = self.accepted_rate()
        with self._lock:
            now = self.clock()
            self.throttle_events += 1
            if now - self._last_decrease < self.decrease_interval:
                return
            if self._bucket is None and (not self._accepted or now - self._accepted[0][0] < 0.25):
                # Too few answers to learn a rate from (the first answers of many writers arrive
                # together): the retries' back-off waits meanwhile.
                return
            self._last_decrease = self._last_probe = now
            target = max(self.min_rate, accepted * self.hold)
            if not any(t >= now - 0.5 for t, _ in self._accepted[-64:]):
                # No answer for half a second (every writer in a refused call's retries): what
                # was admitted reads near zero, which says nothing; only halve.
                before = self._bucket.rate if self._bucket is not None else self._peak_rate(now)
                target = max(self.min_rate, before * 0.5)
            if self._bucket is None:
                self._bucket = TokenBucket(target, min_rate=self.min_rate, recover_step=0.0, clock=self.clock,
                                           sleep=self.sleep, decrease_interval=self.decrease_interval,
                                           name=self.name)
                self._bucket._tokens = 0.0  # no burst on top of what is already in flight
            else:
                # At least a tenth below what was asked before this throttle: what a table
                # admitted in the last second includes the burst it saved up while we stayed
                # under its rate, so 95 % of it alone could still be above the rate.
                target = max(self.min_rate, min(target, self._bucket.rate * 0.9))
                self._bucket.rate = self._bucket.ceiling = target
                self._bucket._tokens = min(self._bucket._tokens, 0.0)
            self.rate = target

    def current_rate(self) -> Optional[float]:
        return self.rate

    def describe(self) -> Optional[Dict[str, Any]]:
        if self.rate is None and not self.throttle_events:
            return None
        return {"limit": round(self.rate or 0.0, 1), "current": round(self.rate or 0.0, 1),
                "throttle_events": self.throttle_events, "auto": True}


def limiter_for(rate: Optional[float], name: str = "") -> RateLimiter:
    return TokenBucket(rate, name=name) if rate else RateLimiter()


def capacity_limit(desc: Dict[str, Any], units: Optional[float], percent: Optional[float], kind: str) -> Optional[float]:
    """Units/s from --max-*-units, or --*-percent of provisioned (on-demand: max/warm or 40,000)."""
    if units:
        return float(units)
    if not percent:
        return None
    if not 0 < percent <= 100:
        raise UsageError(f"--{kind}-percent must be in (0, 100]")
    field = "ReadCapacityUnits" if kind == "read" else "WriteCapacityUnits"
    prov = float((desc.get("ProvisionedThroughput") or {}).get(field) or 0)
    if prov <= 0:
        odt = desc.get("OnDemandThroughput") or {}
        warm = desc.get("WarmThroughput") or {}
        odt_key = "MaxReadRequestUnits" if kind == "read" else "MaxWriteRequestUnits"
        warm_key = "ReadUnitsPerSecond" if kind == "read" else "WriteUnitsPerSecond"
        prov = float(odt.get(odt_key) or 0) if float(odt.get(odt_key) or 0) > 0 else float(warm.get(warm_key) or 0)
        if prov <= 0:
            prov = ON_DEMAND_DEFAULT_UNITS
    return max(1.0, prov * percent / 100.0)


def page_limit(read_rate: Optional[float]) -> Optional[int]:
    """Scan page size under a read limit: small pages keep each request's cost near the bucket's size."""
    if not read_rate:
        return None
    return int(max(10, min(1000, read_rate * 4)))
