"""TokenBucket with an injected clock and sleep: limits, adaptation, capacity percentages."""

from __future__ import annotations

from typing import List

import pytest

from ddbmigrate.aws.capacity import ON_DEMAND_DEFAULT_UNITS, capacity_limit
from ddbmigrate.errors import UsageError
from ddbmigrate.config import RunOptions
from ddbmigrate.aws.capacity import RateLimiter, TokenBucket, limiter_for


class FakeClock:
    """Time moves only when the bucket sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        assert s > 0
        self.sleeps.append(s)
        self.now += s


def bucket(rate: float, clock: FakeClock, **kw: float) -> TokenBucket:
    return TokenBucket(rate, clock=clock, sleep=clock.sleep, **kw)


@pytest.mark.parametrize("rate,units", [(100.0, 1.0), (100.0, 25.0), (7.5, 2.0), (40_000.0, 128.0)])
def test_consumption_stays_within_rate_times_window_plus_burst(rate: float, units: float) -> None:
    clock = FakeClock()
    b = bucket(rate, clock)
    start = clock.now
    consumed = 0.0
    for _ in range(2000):
        b.acquire(units)
        consumed += units
        window = clock.now - start
        # The invariant from the module docstring (plus the one request the balance may owe).
        assert consumed <= rate * window + rate * b.burst_seconds + units + 1e-6
    # ...and the bucket is not needlessly slow either: it runs at the rate, give or take a burst.
    assert consumed >= rate * (clock.now - start) - units


def test_settle_charges_what_was_actually_consumed() -> None:
    clock = FakeClock()
    b = bucket(10.0, clock)
    b.acquire(1.0)
    b.settle(1.0, 31.0)  # the request cost 30 more units than estimated
    t0 = clock.now
    b.acquire(1.0)
    # The 30-unit debt (minus the 9 tokens left) must be paid off at 10 units/s first.
    assert clock.now - t0 == pytest.approx(2.1, abs=0.01)


def test_throttle_halves_and_recovers_additively() -> None:
    clock = FakeClock()
    b = bucket(100.0, clock, recover_step=0.1)
    b.throttled()
    assert b.current_rate() == 50.0
    clock.now += 1.5
    b.throttled()
    assert b.current_rate() == 25.0
    assert b.throttle_events == 2
    for expected in (35.0, 45.0, 55.0):
        clock.now += 1.0
        b.acquire(0)
        assert b.current_rate() == pytest.approx(expected)
    clock.now += 100.0
    b.acquire(0)
    assert b.current_rate() == 100.0  # never above the ceiling
    assert b.describe() == {"limit": 100.0, "current": 100.0, "throttle_events": 2}


def test_a_burst_of_throttles_is_one_congestion_event() -> None:
    clock = FakeClock()
    b = bucket(100.0, clock, decrease_interval=1.0)
    for _ in range(8):  # eight writers throttled by the same burst
        b.throttled()
    assert b.current_rate() == 50.0
    assert b.throttle_events == 8
    clock.now += 1.0
    b.throttled()
    assert b.current_rate() == 25.0


def test_rate_never_drops_below_the_floor() -> None:
    clock = FakeClock()
    b = bucket(100.0, clock, min_rate=10.0)
    for _ in range(20):
        clock.now += 1.0
        b.throttled()
    assert b.current_rate() == 10.0


def test_no_limit_is_free() -> None:
    lim = limiter_for(None)
    assert type(lim) is RateLimiter
    lim.acquire(1e9)
    lim.throttled()
    assert lim.current_rate() is None and lim.describe() is None
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_capacity_limit_units_and_percentages() -> None:
    prov = {"ProvisionedThroughput": {"ReadCapacityUnits": 1000, "WriteCapacityUnits": 200}}
    assert capacity_limit(prov, 123.0, None, "read") == 123.0
    assert capacity_limit(prov, None, 50.0, "read") == 500.0
    assert capacity_limit(prov, None, 25.0, "write") == 50.0
    assert capacity_limit(prov, None, None, "write") is None
    on_demand = {"ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0}}
    assert capacity_limit(on_demand, None, 10.0, "write") == ON_DEMAND_DEFAULT_UNITS / 10
    capped = dict(on_demand, OnDemandThroughput={"MaxReadRequestUnits": 6000, "MaxWriteRequestUnits": -1},
                  WarmThroughput={"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 4000})
    assert capacity_limit(capped, None, 50.0, "read") == 3000.0  # of the on-demand maximum
    assert capacity_limit(capped, None, 50.0, "write") == 2000.0  # unlimited max: of the warm throughput
    with pytest.raises(UsageError):
        capacity_limit(prov, None, 150.0, "read")


@pytest.mark.parametrize("kw", [{"max_write_units": 0}, {"max_read_units": -5}, {"read_percent": 0},
                                {"write_percent": 101}, {"drain_timeout": -1}, {"checkpoint_every": 0}])
def test_bad_limits_are_usage_errors(kw: dict) -> None:
    with pytest.raises(UsageError):
        RunOptions(**kw)


def _adaptive(clock: "FakeClock") -> "AdaptiveLimiter":
    from ddbmigrate.aws.capacity import AdaptiveLimiter

    return AdaptiveLimiter(clock=clock, sleep=clock.sleep)


def _admit(lim: "AdaptiveLimiter", clock: "FakeClock", rate: float, seconds: float, step: float = 0.05) -> None:
    for _ in range(int(seconds / step)):
        clock.now += step
        lim.settle(rate * step, rate * step)


def test_adaptive_limiter_is_unlimited_until_a_throttle_then_holds_95_percent_of_what_was_admitted() -> None:
    clock = FakeClock()
    lim = _adaptive(clock)
    lim.acquire(10_000)  # no limit yet: returns at once
    assert lim.rate is None and lim.describe() is None
    _admit(lim, clock, 1000, 0.1)
    lim.throttled()  # a tenth of a second of answers: nothing to learn from yet
    assert lim.rate is None and lim.throttle_events == 1
    _admit(lim, clock, 1000, 1.0)
    lim.throttled()
    assert lim.rate is not None and 940 <= lim.rate <= 1000  # 95 % of ~1,000 admitted a second
    assert lim.describe() == {"limit": lim.rate, "current": lim.rate, "throttle_events": 2, "auto": True}


def test_adaptive_limiter_decreases_at_least_a_tenth_probes_up_and_halves_when_nothing_answers() -> None:
    clock = FakeClock()
    lim = _adaptive(clock)
    _admit(lim, clock, 1000, 1.0)
    lim.throttled()
    first = lim.rate
    assert first is not None
    lim.throttled()  # the same congestion (within decrease_interval): one signal
    assert lim.rate == first
    _admit(lim, clock, 1000, 1.0)  # admitted as much as before, yet throttled again
    lim.throttled()
    assert lim.rate == pytest.approx(first * 0.9)
    second = lim.rate
    clock.now += 3.0  # three quiet seconds: +3 % each
    lim.acquire(1)
    assert lim.rate == pytest.approx(second * 1.03 ** 3)
    probed = lim.rate
    clock.now += 1.0  # nothing admitted for a second: every writer is stuck in retries
    lim.throttled()
    assert lim.rate == pytest.approx(probed * 0.5)


def test_units_held_back_are_charged_as_sent() -> None:
    clock = FakeClock()
    b = bucket(100, clock)
    b.acquire(100)
    b.settle(100, 40)  # 60 refunded: DynamoDB consumed 40 ...
    b.held_back(60)  # ... because it held the other 60 back: they were sent all the same
    assert b._tokens == pytest.approx(0.0, abs=1e-6)
