"""Capacity-aware rate limiting: a token bucket fed by ReturnConsumedCapacity, made adaptive.

Workers call ``acquire(estimate)`` before a request and ``settle(estimate, consumed)`` after
it, so the bucket is charged what DynamoDB actually consumed. ``throttled()`` halves the rate
(multiplicative decrease); each second without throttling adds back ``recover_step`` of the
ceiling (additive increase). Time and sleep are injected so tests run without sleeping.

Invariant: over any window the consumed units stay within rate x window + burst.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional


class RateLimiter:
    """No limit: the default."""

    rate: Optional[float] = None

    def acquire(self, units: float = 1.0) -> None:
        return None

    def settle(self, estimate: float, consumed: float) -> None:
        return None

    def throttled(self) -> None:
        return None

    def current_rate(self) -> Optional[float]:
        return None


class TokenBucket(RateLimiter):
    def __init__(
        self,
        rate: float,
        *,
        burst_seconds: float = 1.0,
        min_rate: Optional[float] = None,
        recover_step: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
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
        self._lock = threading.Lock()
        self._tokens = self.rate * burst_seconds
        self._last = clock()
        self._last_throttle = -1e18
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
                if self._tokens > 0 or units <= 0:
                    self._tokens -= units
                    return
                wait = -self._tokens / self.rate if self._tokens < 0 else units / self.rate
                wait = max(wait, 0.001)
            self.sleep(min(wait, 1.0))

    def settle(self, estimate: float, consumed: float) -> None:
        with self._lock:
            self._tokens -= consumed - estimate

    def throttled(self) -> None:
        with self._lock:
            now = self.clock()
            self.throttle_events += 1
            self.rate = max(self.min_rate, self.rate / 2.0)
            self._tokens = min(self._tokens, 0.0)
            self._last_throttle = now
            self._last_recover = now

    def current_rate(self) -> Optional[float]:
        return self.rate


def limiter_for(rate: Optional[float]) -> RateLimiter:
    return TokenBucket(rate) if rate else RateLimiter()
