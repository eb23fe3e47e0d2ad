"""TokenBucket with an injected clock and sleep: limits, adaptation, capacity percentages."""

from __future__ import annotations

import os
import random
from typing import List, Optional, Tuple

import pytest

from ddbmigrate.aws.capacity import ON_DEMAND_DEFAULT_UNITS, capacity_limit
from ddbmigrate.errors import UsageError
from ddbmigrate.config import RunOptions
from ddbmigrate.aws.capacity import AdaptiveLimiter, RateLimiter, TokenBucket, limiter_for
from capacity_sim import FakeClock  # tests/: time that moves only when slept or advanced


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


class SimTable:
    """A table that admits ``capacity`` units a second with a second of burst, as DynamoDB's
    partitions do (one partition here); ``noise`` throttles that share of calls whatever the rate."""

    def __init__(self, clock: FakeClock, capacity: float, noise: float = 0.0, seed: int = 7) -> None:
        self.clock, self.capacity, self.noise = clock, capacity, noise
        self.tokens, self.at = capacity, clock.now
        self.rng = random.Random(seed)
        self.calls = self.throttled = 0
        self.admitted: List[Tuple[float, float]] = []

    def set_capacity(self, capacity: float) -> None:
        self.capacity = capacity
        self.tokens = min(self.tokens, capacity)

    def call(self, units: float) -> float:
        now = self.clock.now
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.capacity)
        self.at = now
        got = min(units, float(int(self.tokens)))
        if self.noise and self.rng.random() < self.noise:
            got = float(self.rng.randrange(0, int(units)))  # a random prefix kept, or nothing
        self.tokens -= got
        self.calls += 1
        self.throttled += got < units
        self.admitted.append((now, got))
        return got


def simulate(lim: AdaptiveLimiter, clock: FakeClock, table: SimTable, seconds: float,
             step: float = 0.00125, change: Optional[Tuple[float, float]] = None) -> None:
    """Writers one after another (a call every ``step`` when nothing holds them: 20,000 units/s),
    each through the limiter as the table writer does: acquire, call, settle, held back, throttled."""
    end = clock.now + seconds
    while clock.now < end:
        if change is not None and clock.now >= end - seconds + change[0]:
            table.set_capacity(change[1])
            change = None
        lim.acquire(25)
        clock.now += step
        got = table.call(25)
        lim.settle(25, got)
        if got < 25:
            lim.held_back(25 - got)
            lim.throttled()


def admitted_rate(table: SimTable, since: float, until: float) -> float:
    return sum(u for t, u in table.admitted if since <= t < until) / (until - since)


def test_adaptive_limiter_is_unlimited_until_a_table_pushes_back() -> None:
    clock = FakeClock()
    lim = _adaptive(clock)
    lim.acquire(10_000)  # no limit yet: returns at once
    assert lim.rate is None and lim.describe() is None and not clock.sleeps
    table = SimTable(clock, capacity=1e9)
    simulate(lim, clock, table, 5.0)
    assert lim.rate is None and table.throttled == 0


def test_adaptive_limiter_finds_the_capacity_and_holds_it_with_few_throttled_calls() -> None:
    clock = FakeClock()
    lim = _adaptive(clock)
    table = SimTable(clock, capacity=1500)
    start = clock.now
    simulate(lim, clock, table, 60.0)
    assert lim.rate is not None and 1300 <= lim.rate <= 1600, lim.rate
    assert admitted_rate(table, start + 5, clock.now) >= 0.9 * 1500
    # Each crossing of the capacity while probing costs a congestion's calls (the goal is 5 %; in
    # this one-partition model with a second of burst it is about 6.5 %, the old limiter's 10-19 %
    # is what this bound keeps out).
    assert table.throttled / table.calls <= 0.08, (table.throttled, table.calls)
    d = lim.describe()
    assert d is not None and d["auto"] and d["current"] == round(lim.rate, 1)


def test_adaptive_limiter_follows_a_capacity_that_shrinks_and_one_that_grows() -> None:
    clock = FakeClock()
    lim = _adaptive(clock)
    table = SimTable(clock, capacity=3000)
    simulate(lim, clock, table, 30.0, change=(10.0, 1000.0))
    assert lim.rate is not None and 850 <= lim.rate <= 1150, lim.rate
    mark, calls, throttled = clock.now, table.calls, table.throttled
    table.set_capacity(2000)  # grows: probing finds it again
    simulate(lim, clock, table, 40.0)
    # Probing runs on past the capacity while the burst the table saved lasts: bounds, not a value.
    assert lim.rate is not None and 1700 <= lim.rate <= 1.3 * 2000, lim.rate
    assert admitted_rate(table, mark + 25, clock.now) >= 0.9 * 2000
    # Of calls, on one partition where every crossing throttles whole calls: 6.4 % since cuts
    # hold 90 % of what the table admitted (4.95 % at 85 %, which held runs over 4-8 partitions
    # under 90 %); the bound is on write requests, far fewer.
    assert (table.throttled - throttled) / (table.calls - calls) <= 0.07


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_throttles_do_not_decay_the_rate(seed: int) -> None:
    """A server refusing 15 % of calls whatever the rate (the fault proxy's throttles) is noise:
    cutting on it would crawl. The rate may be cut by a chance run of throttles, never for long."""
    clock = FakeClock()
    lim = _adaptive(clock)
    table = SimTable(clock, capacity=1e9, noise=0.15, seed=seed)
    start = clock.now
    simulate(lim, clock, table, 60.0)
    assert admitted_rate(table, start + 30, clock.now) >= 0.5 * 0.85 * 20_000
    assert lim.rate is None or lim.rate >= 0.5 * 0.85 * 20_000, lim.rate


def test_throttles_of_calls_sent_before_a_cut_are_not_counted_against_it() -> None:
    clock = FakeClock()
    lim = _adaptive(clock)
    table = SimTable(clock, capacity=1500)
    simulate(lim, clock, table, 3.0)
    first = lim.rate
    assert first is not None
    cuts = lim.rate
    # Sixteen writers' calls, sent before the cut, answer throttled after it: one congestion.
    lim._last_cut = clock.now
    for _ in range(16):
        lim._local.sent = clock.now - 0.01
        lim._local.call = None
        lim.throttled()
    assert lim.rate == cuts


def test_units_held_back_are_charged_as_sent() -> None:
    clock = FakeClock()
    b = bucket(100, clock)
    b.acquire(100)
    b.settle(100, 40)  # 60 refunded: DynamoDB consumed 40 ...
    b.held_back(60)  # ... because it held the other 60 back: they were sent all the same
    assert b._tokens == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("current,expected", [
    (0.0, "no capacity limit found (7 throttles retried"),
    (1234.0, "found from throttles: held at 1,234/s (7 throttles)"),
])
def test_the_summary_says_whether_a_rate_was_found(current: float, expected: str) -> None:
    """Throttles the limiter took for noise leave no rate: the summary must not say "held at 0/s"."""
    import io

    from rich.console import Console

    from ddbmigrate.reporting.report import Report
    from ddbmigrate.reporting.terminal import render_report

    rep = Report(job="copy")
    rep.rate_limits["write"] = {"limit": current, "current": current, "throttle_events": 7, "auto": True}
    out = io.StringIO()
    render_report(rep, Console(file=out, width=200))
    assert expected in out.getvalue()
    assert "held at 0/s" not in out.getvalue()


def _calls(lim: AdaptiveLimiter, clock: FakeClock, pattern: List[bool]) -> None:
    for throttled in pattern:
        lim.acquire(25)
        clock.now += 0.02
        lim.settle(25, 20 if throttled else 25)
        if throttled:
            lim.held_back(5)
            lim.throttled()


def _first_cut(clock: FakeClock) -> Tuple[AdaptiveLimiter, float]:
    """A limiter that only cuts (no probing), after a congestion's first cut, and its rate."""
    lim = AdaptiveLimiter(clock=clock, sleep=clock.sleep, probe=0.0, slow_probe=0.0)
    _calls(lim, clock, [True] * 24)
    assert lim.rate is not None
    return lim, lim.rate


def _steady_share(n: int, every: int) -> List[bool]:
    return [i % every == 0 for i in range(n)]


def test_a_steady_minority_of_throttled_calls_gets_a_trial_cut_kept_when_it_helps() -> None:
    """A rate a little over the capacity throttles a share of calls, not most: a 5 % trial cut
    that makes them stop is kept."""
    clock = FakeClock()
    lim, first = _first_cut(clock)
    clock.now += 5.0  # the table's buckets have had time to fill (see the next test)
    _calls(lim, clock, _steady_share(60, 5))  # a fifth of the calls throttled, steadily
    assert lim.rate == pytest.approx(first * 0.95)
    clock.now += 2.0
    _calls(lim, clock, [False] * 60 + [True])  # the trial helped: none throttled since
    assert lim.rate == pytest.approx(first * 0.95)
    assert lim._noise == 0.0


def test_a_steady_share_soon_after_a_cut_is_tried_as_far_under_as_a_cut() -> None:
    """Within 5 s of a cut the table's buckets are still empty: a steady share throttled then
    says the cut landed at the capacity. A trial 5 % under it still found them short, was taken
    for noise and put back, and the calls stayed throttled until the next congestion (seen
    against the fault proxy: 15-25 % of calls for seconds after a capacity shrank). It goes
    as far under as a cut does (to ``hold`` of it)."""
    clock = FakeClock()
    lim, first = _first_cut(clock)
    clock.now += 2.0
    _calls(lim, clock, _steady_share(60, 5))
    assert lim._trial is not None and lim.rate == pytest.approx(first * lim.hold)
    clock.now += 2.0
    _calls(lim, clock, [False] * 60 + [True])  # it helped: kept
    assert lim.rate == pytest.approx(first * lim.hold) and lim._noise == 0.0


def test_a_trial_cut_that_does_not_help_is_put_back_and_the_share_taken_as_noise() -> None:
    clock = FakeClock()
    lim, first = _first_cut(clock)
    clock.now += 5.0
    _calls(lim, clock, _steady_share(60, 5))
    assert lim.rate == pytest.approx(first * 0.95)
    clock.now += 2.0
    _calls(lim, clock, _steady_share(60, 5))  # as many throttled at the lower rate: noise
    assert lim.rate == pytest.approx(first)
    assert lim._noise == pytest.approx(0.2, abs=0.03)
    clock.now += 2.0
    _calls(lim, clock, _steady_share(60, 4))  # a quarter: within the noise and a tenth, no trial
    assert lim.rate == pytest.approx(first)


def test_a_trial_needs_no_more_than_its_calls_at_a_slow_rate() -> None:
    """At a few calls a second, the calls a trial looks at span far more than the two seconds of
    answers kept otherwise: they are kept all the same."""
    clock = FakeClock()
    lim, first = _first_cut(clock)
    clock.now += 2.0
    for throttled in _steady_share(60, 5):
        clock.now += 0.5  # two calls a second
        _calls(lim, clock, [throttled])
    # The trial is under what the table admitted to those calls (two calls of ~24 units a
    # second), not 5 % under a rate the writers were not using: that would test nothing.
    assert lim._trial is not None
    assert 0.9 * 48 <= lim.rate <= 0.95 * 50


# --------------------------------------------------------------------------- whole runs, simulated

def _runs(seeds: int = 10, **kw: object) -> list:
    from capacity_sim import simulate  # tests/: writers and a partitioned table in simulated time

    return [simulate(20_000, 1500, seed=seed, **kw) for seed in range(1, seeds + 1)]  # type: ignore[arg-type]


def test_a_whole_run_finds_the_capacity_with_few_throttled_requests() -> None:
    """16 writers, 4 partitions with a second of burst, 20,000 items: the start-up congestion,
    then one crossing of the capacity every ten seconds or so as the probe tests it again. The
    issue's bound (5 % of write requests throttled) holds for every run; of calls (one
    throttled item makes a throttled call) at most 10 % in each of these seeds (11 % in 2 of 40
    seeds) and 6 % on average."""
    runs = _runs()
    for r in runs:
        assert r.efficiency >= 0.9, r
        assert r.throttled_item_share <= 0.05, r
        # A congestion every ten seconds or so is what holding near the capacity costs (the
        # probe crosses it again once the last push-back is stale).
        assert r.throttled_share <= 0.10, r
    assert sum(r.throttled_share for r in runs) / len(runs) <= 0.06


@pytest.mark.parametrize("partitions", [4, 8])
def test_after_start_up_a_run_holds_at_least_90_percent_of_the_capacity(partitions: int) -> None:
    """From 5 s on, each of these runs admits at least 90 % of the capacity (over 40 seeds: 40
    of 40 with 4 partitions, 39 of 40 with 8, the lowest 0.89; before cuts held 90 % of what the
    table admitted, 39 and 34, the lowest 0.79). It failed (0.83-0.90) while the rate crawled at
    0.5 %/s under a push-back read low, for as long as it took to pass it: the slow zone now
    lasts ``slow_for`` (3 s), then the probe is fast again."""
    runs = _runs(partitions=partitions)
    for r in runs:
        assert r.steady_efficiency >= 0.9, r
        assert r.throttled_item_share <= 0.05, r


def test_a_capacity_that_grows_is_found_in_seconds() -> None:
    """Doubled at 8 s (auto scaling): 12 s later the rate is at least 2,700 units/s in each of
    these seeds (40 of 40; 8 s later 30 of 40, 36 before probing stopped while more than 5 %
    of the calls are throttled, which keeps a halved capacity from being probed past). At a
    fixed 3 %/s it was under 1,900; the probe grows the longer the table has not pushed back,
    and crosses the new capacity with few throttled calls."""
    from capacity_sim import simulate

    for seed in range(1, 11):
        r = simulate(40_000, 1500, seed=seed, change=(8.0, 3000.0))
        rate_at_20 = max(rate or 0.0 for at, rate in r.rates if at <= 20.0)
        assert rate_at_20 >= 2700, (seed, rate_at_20)
        assert r.throttled_share_after(8.0) <= 0.05, (seed, r.throttled_share_after(8.0))


def test_a_knee_read_low_is_not_crawled_past_for_long() -> None:
    """Near where the table last pushed back the rate climbs 0.5 %/s, for at most ``slow_for``
    seconds: then that push-back is taken as stale (no throttle came) and probing is fast."""
    clock = FakeClock()
    lim = _adaptive(clock)
    table = SimTable(clock, capacity=1e9)
    lim._bucket = TokenBucket(970.0, recover_step=0.0, clock=clock, sleep=clock.sleep)
    lim.rate, lim._knee = 970.0, 1000.0  # a push-back read low: nothing throttles near it
    lim._last_cut = lim._last_probe = clock.now
    simulate(lim, clock, table, 3.5)
    assert lim._knee == 1000.0 and lim.rate is not None and 980 < lim.rate < 1000.0  # crawling near it
    simulate(lim, clock, table, 1.0)
    assert lim._knee is None  # 3 s near it without a throttle: stale
    simulate(lim, clock, table, 3.0)
    # Fast again, and faster the longer the table has not pushed back (at 0.5 %/s and then
    # 3 %/s past the old knee it would be at about 1,030).
    assert lim.rate is not None and lim.rate > 1200.0, lim.rate


def test_a_capacity_halved_mid_run_costs_no_storm() -> None:
    """One congestion when it halves, then the new capacity held: 5 s after the change no call
    is throttled (over 40 seeds; before trials began with nothing saved up under the rate before,
    39 of 40 at most 2 %, the worst 6.8 %; with cuts to 85 % and trials from 10 %, 38, the worst
    12.8 %). (A trial cut to the capacity itself finds the table's buckets still empty: it was
    taken for noise, and a fifth of the calls stayed throttled.)"""
    runs = _runs(20, change=(8.0, 750.0))
    for r in runs:
        assert r.efficiency >= 0.9, r
        assert r.throttled_item_share <= 0.05, r
        assert r.throttled_share <= 0.15, r
        assert r.throttled_share_after(13.0) <= 0.01, r.throttled_share_after(13.0)


def test_a_capacity_that_shrinks_under_slow_calls_is_followed_without_a_storm() -> None:
    """3,000 WCU that become 1,000 at 1.5 s, calls of 150-400 ms (a loaded proxy in front of
    DynamoDB Local): the table's burst hides the shrink, so the first push-back is a steady
    minority and gets a trial. Two things made that a storm: the bucket's second saved up at the
    rate before was sent over the trial's (its first second was not under it), and a share that
    rose under the trial was taken for noise, which put the rate back to none (a fifth to a
    quarter of the calls throttled from then on, in 20 of 60 runs over a tenth). Now the rate,
    once found, stays, and 3.5 s after the change at most 5 % of the calls are throttled."""
    from capacity_sim import simulate

    for seed in range(1, 9):
        for on_arrival in (False, True):
            r = simulate(12_000, 3000, seed=seed, change=(1.5, 1000.0), latency=(0.15, 0.4),
                         admit_on_arrival=on_arrival)
            found = [t for t, rate in r.rates if rate is not None]
            assert found and all(rate is not None for t, rate in r.rates if t >= found[0]), (seed, on_arrival)
            assert r.throttled_share_after(5.0) <= 0.05, (seed, on_arrival, r.throttled_share_after(5.0))


def test_a_trial_under_which_more_is_throttled_is_not_noise() -> None:
    clock = FakeClock()
    lim, first = _first_cut(clock)
    clock.now += 5.0
    _calls(lim, clock, _steady_share(60, 10))  # a tenth throttled: a trial 5 % under
    trial = lim.rate
    assert trial == pytest.approx(first * 0.95)
    clock.now += 2.0
    _calls(lim, clock, _steady_share(60, 3))  # a third under the trial: the capacity is lower still
    assert lim.rate is not None and lim.rate < trial
    assert lim._noise == 0.0


def test_a_trial_sends_nothing_saved_up_under_the_rate_before() -> None:
    clock = FakeClock()
    lim, first = _first_cut(clock)
    clock.now += 5.0  # a quiet 5 s: the bucket is full, a second of the rate
    for throttled in _steady_share(60, 10):
        _calls(lim, clock, [throttled])
        if lim.rate != first:
            break
    assert lim.rate == pytest.approx(first * 0.95)
    clock.now += 0.5
    sent = 0.0
    while lim._bucket is not None and lim._bucket.try_take(25) <= 0.0:
        sent += 25
    assert sent <= 0.5 * lim.rate + 25, (sent, lim.rate)


def test_the_start_up_congestion_is_cut_not_tried() -> None:
    """A congestion begins with throttles in the latest calls only: that is a cut's to answer
    (from what the table admitted), not a steady share's trial (which would take the rate of the
    table's burst for a limit and cost a second round of throttles)."""
    clock = FakeClock()
    lim = AdaptiveLimiter(clock=clock, sleep=clock.sleep)
    _calls(lim, clock, [False] * 40 + [True] * 7)  # 7 of 48 throttled, all of them lately
    assert lim.rate is None and lim._trial is None
    _calls(lim, clock, [True] * 5)
    assert lim.rate is not None and lim._trial is None  # the cut


def test_the_rate_does_not_run_away_from_what_the_writers_send() -> None:
    """Writers sending 500 units/s under a found rate of 1,000 for a minute: the rate stays near
    what they use. Grown unchecked (3-15 %/s for a minute) it would take many cuts of at most
    half each to come down to a capacity that binds later."""
    clock = FakeClock()
    lim = _adaptive(clock)
    lim._bucket = TokenBucket(1000.0, recover_step=0.0, clock=clock, sleep=clock.sleep)
    lim.rate = 1000.0
    lim._last_cut = lim._last_probe = clock.now
    for _ in range(1200):  # 60 s, a call of 25 every 0.05 s
        lim.acquire(25)
        clock.now += 0.05
        lim.settle(25, 25)
    assert lim.rate is not None and lim.rate <= 1000.0, lim.rate


def _held_by_the_rate(clock: FakeClock, lim: AdaptiveLimiter, estimate: float, consumed: float,
                      seconds: float) -> None:
    """Writers as fast as the limiter lets them, no throttles: each call estimated at
    ``estimate`` units consumes ``consumed`` (an item with a GSI consumes more than its size)."""
    end = clock.now + seconds
    while clock.now < end:
        lim.acquire(estimate)
        clock.now += 0.0001
        lim.settle(estimate, consumed)


@pytest.mark.parametrize("estimate,consumed", [(25.0, 50.0), (1.0, 1.0), (1.0, 2.0)])
def test_probing_counts_what_the_bucket_was_charged(estimate: float, consumed: float) -> None:
    """The cap on probing (1.25x what the writers use) is in the bucket's units: what was
    consumed, twice the estimate for items with a GSI (measured in estimates, the rate stayed at
    the first cut for the whole run), and over the time the kept calls span (4,096 calls of one
    unit at 3,000 a second are 1.4 s, not 2: read as 2 the rate could not pass 2,560)."""
    clock = FakeClock()
    lim = _adaptive(clock)
    lim._bucket = TokenBucket(3000.0, recover_step=0.0, clock=clock, sleep=clock.sleep)
    lim.rate = 3000.0
    lim._last_cut = lim._last_probe = clock.now
    _held_by_the_rate(clock, lim, estimate, consumed, 8.0)
    assert lim.rate is not None and lim.rate > 3000.0 * 1.03 ** 5, lim.rate


def test_the_capacity_grid_reports_the_bound_as_the_runs_met_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench/capacity_simulated.py --grid`` (the limiter at other capacities and partition
    counts): each row's verdict is the issue's bound over its own runs, and the start-up column
    is a part of the whole. At the tuned point (1,500 WCU over 4 partitions) the bound is met."""
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    from capacity_sim import simulate
    from capacity_simulated import grid_rows

    rows = grid_rows([200.0, 1500.0], [1, 4], 2, 6.0)
    assert [(r["capacity"], r["partitions"]) for r in rows] == [(200.0, 1), (200.0, 4), (1500.0, 1), (1500.0, 4)]
    for row in rows:
        runs = [simulate(int(row["capacity"] * 6.0), row["capacity"], partitions=row["partitions"], seed=s)
                for s in (1, 2)]
        assert row["efficiency"] == [r.efficiency for r in runs]
        assert row["throttled"] == [r.throttled_item_share for r in runs]
        assert row["met"] == all(r.efficiency >= 0.9 and r.throttled_item_share <= 0.05 for r in runs)
        assert all(0.0 <= e <= t + 1e-12 for e, t in zip(row["early"], row["throttled"]))
    assert rows[3]["met"] and min(rows[3]["efficiency"]) >= 0.9 and max(rows[3]["throttled"]) <= 0.05


# --------------------------------------------------------------------------- start-up and charging

def test_a_call_sent_before_the_limit_was_found_is_not_refunded_by_it() -> None:
    """Estimates run over consumption (a 600-byte item is 2 units of JSON, 1 WCU): a call the
    bucket charged is refunded the difference, a call it never charged (in flight when the
    limit was found) is settled by nobody. Refunded, every call in flight at the first cut
    handed the new rate free units, and the writers sent twice the rate for a while (seen
    against the fault proxy: a cascade of cuts to half the capacity)."""
    clock = FakeClock()
    lim = _adaptive(clock)
    lim.acquire(50)  # no limit yet: nothing charged
    lim._bucket = TokenBucket(100.0, recover_step=0.0, clock=clock, sleep=clock.sleep)
    lim._bucket._tokens = 0.0  # the cut: no burst on top of what is in flight
    lim.settle(50, 20)
    lim.held_back(5)
    assert lim._bucket._tokens == 0.0
    lim._bucket._tokens = 100.0
    lim.acquire(50)  # charged by the bucket, then refunded what it did not consume
    lim.settle(50, 25)
    assert lim._bucket._tokens == pytest.approx(75.0)


def test_the_charge_follows_what_whole_calls_consumed() -> None:
    """Calls admitted whole that consume half their estimate teach the limiter to charge half;
    a call held back in part says nothing about it."""
    clock = FakeClock()
    lim = _adaptive(clock)
    for _ in range(60):
        lim.acquire(50)
        lim.settle(50, 25)
    lim.acquire(50)
    assert lim._local.units == pytest.approx(25.0, rel=0.02)
    lim.settle(50, 5)  # held back in part
    lim.held_back(20)
    lim.throttled()
    lim.acquire(50)
    assert lim._local.units == pytest.approx(25.0, rel=0.02)


def test_a_call_refused_whole_waits_for_the_rate_before_it_is_sent_again() -> None:
    clock = FakeClock()
    lim = _adaptive(clock)
    lim._bucket = TokenBucket(100.0, recover_step=0.0, clock=clock, sleep=clock.sleep)
    lim._bucket._tokens = 0.0
    lim.acquire(25)
    lim.throttled()  # refused whole: the client's retry sends the same call again
    lim.again()
    assert sum(clock.sleeps) == pytest.approx(0.25)  # the second attempt paid for as the first
    assert TokenBucket(100.0).again() is None and RateLimiter().again() is None  # fixed limits: once


def test_a_first_cut_from_calls_refused_whole_keeps_a_rate() -> None:
    """Calls refused whole (a throttled Scan or PutItem, or a batch with nothing admitted) carry
    no admitted share: the first cut is read from what the table admitted, not from a share of
    0, which set the rate to 1 unit/s."""
    clock = FakeClock()
    lim = _adaptive(clock)
    for _ in range(12):
        lim.acquire(25)
        clock.now += 0.02
        lim.settle(25, 25)
    for _ in range(12):
        lim.acquire(25)
        clock.now += 0.02
        lim.throttled()  # refused whole
    assert lim.rate is not None and lim.rate >= 100.0, lim.rate


@pytest.mark.parametrize("on_arrival", [False, True])
@pytest.mark.parametrize("capacity", [1000.0, 1500.0])
def test_a_first_cut_read_low_is_raised_once_the_calls_under_it_come_back_quiet(capacity: float,
                                                                              on_arrival: bool) -> None:
    """One partition: every item in one bucket, so the first cut's share of what was sent reads
    the writers' back-off as the table's refusal and lands at 0.34-0.6 of the capacity, climbed
    back at 3 %/s (whole runs of C x 12 items: 0.66-0.94 of it, in both models of when the
    table decides). Half a second later the calls sent under it come back quiet and the rate is
    raised to what the table admitted while its buckets were empty. Each of these seeds now
    holds at least 90 % with at most 5 % of write requests throttled (over 6 seeds and runs of
    12 and 25 s: 0.94-1.05)."""
    from capacity_sim import simulate

    for seed in range(1, 7):
        r = simulate(int(capacity * 12), capacity, partitions=1, seed=seed, admit_on_arrival=on_arrival)
        assert r.efficiency >= 0.9, (seed, r)
        assert r.throttled_item_share <= 0.05, (seed, r)


def _congested(clock: FakeClock, late_whole: int) -> AdaptiveLimiter:
    """A limiter's first congestion, scripted: 12 calls admitted whole (the table's burst), one
    every 0.05 s, then 12 throttled calls, one every 0.02 s, each admitted 5 units (250 units/s:
    the table's refill). The first cut reads about 130 (the share admitted, a fifth, of what was
    sent since the burst began). Among the throttled calls come ``late_whole`` calls sent with
    the first of them but answered whole (admitted when they arrived, from the burst; answered
    late)."""
    lim = AdaptiveLimiter(clock=clock, sleep=clock.sleep, probe=0.0, slow_probe=0.0)
    for _ in range(12):
        lim.acquire(25)
        clock.now += 0.05
        lim.settle(25, 25)
    early = clock.now
    for i in range(12 + late_whole):
        lim.acquire(25)
        clock.now += 0.02
        if 4 <= i < 4 + late_whole:
            lim._local.sent = early
            lim.settle(25, 25)
            continue
        lim.settle(25, 5)
        lim.held_back(20)
        lim.throttled()
    return lim


def test_the_recheck_reads_the_refill_by_send_and_by_answer_time() -> None:
    """What the table admitted while its buckets were empty is read both ways, the lower taken:
    calls sent with the first throttled one but answered late after it (a table that decides on
    arrival) admitted whole from the burst, and counted by their answer they made the reading
    4.4 times the capacity in a real run; and a limiter whose calls under its first cut come
    back quiet is raised to ``hold`` of that reading, not to the burst."""
    clock = FakeClock()
    lim = _congested(clock, late_whole=3)
    first = lim.rate
    assert first is not None
    for _ in range(12):  # calls under the cut come back quiet
        lim.acquire(25)
        clock.now += 0.05
        lim.settle(25, 25)
    lim.acquire(1)
    # By the time sent: the throttled calls after the first admitted 55 units in 0.3 s (about
    # 180 units/s; 250 is the refill, the first call's 0.02 s and 5 units are the difference).
    # By their answers the late calls add 75 units: 460 units/s.
    assert lim.rate is not None and lim.rate > first
    assert lim._knee is not None and 150.0 <= lim._knee <= 260.0, lim._knee
    assert lim.rate == pytest.approx(0.9 * lim._knee)


def test_a_first_cut_whose_calls_come_back_throttled_is_not_raised() -> None:
    clock = FakeClock()
    lim = _congested(clock, late_whole=0)
    first = lim.rate
    assert first is not None
    for _ in range(12):  # under the cut, still a third throttled: the cut did not read low
        lim.acquire(25)
        clock.now += 0.05
        lim.settle(25, 20)
        if _ % 3 == 0:
            lim.held_back(5)
            lim.throttled()
    lim.acquire(1)
    assert lim.rate is not None and lim.rate <= first


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_the_recheck_never_raises_a_first_cut_far_over_the_capacity(noise: float,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every raise over 500 and 1,000 WCU, 1 and 2 partitions, both models of when the table
    decides, 6 seeds: at most 1.1 times the capacity, and 1.3 times with 10 % of calls refused
    at random. A lone throttle before the congestion (noise, a hot key) once started the
    reading's window: the table's burst came into it and the rate was raised to 2.45 times the
    capacity. (It raises at all: at least 12 raises over these 48 runs; 58 without noise, 23
    with it.)"""
    from capacity_sim import simulate

    raises: List[float] = []
    recheck = AdaptiveLimiter._maybe_recheck

    def recorded(self: AdaptiveLimiter, bucket: TokenBucket, now: float) -> None:
        before = bucket.rate
        recheck(self, bucket, now)
        if bucket.rate != before:
            raises.append(bucket.rate / capacity)

    monkeypatch.setattr(AdaptiveLimiter, "_maybe_recheck", recorded)
    for capacity in (500.0, 1000.0):
        for partitions in (1, 2):
            for on_arrival in (False, True):
                for seed in range(1, 7):
                    simulate(int(capacity * 12), capacity, partitions=partitions, seed=seed,
                             admit_on_arrival=on_arrival, noise=noise)
    assert len(raises) >= 12, raises
    assert max(raises) <= (1.3 if noise else 1.1), sorted(raises)[-5:]


# --------------------------------------------------------------------------- a rate given

@pytest.mark.parametrize("rate,units", [(100.0, 1.0), (100.0, 25.0), (7.5, 2.0), (40_000.0, 128.0), (0.5, 1.0)])
def test_a_rate_given_is_never_exceeded(rate: float, units: float) -> None:
    """``--max-write-units`` is a ceiling: what is sent stays within the rate times the time
    since the start (no second of burst on top of it at once: a table given its own capacity had
    its burst emptied by that at start-up), on a table that never pushes back (nothing to adapt
    to) and on one that always does (every call short: the cuts never raise it; a limit under
    the cuts' floor of 1 unit/s was raised to it). The job may start long after its limiter
    was made: no burst was saved up meanwhile."""
    for capacity in (1e12, rate / 3):
        clock = FakeClock()
        lim = limiter_for(rate)
        assert isinstance(lim, AdaptiveLimiter)
        lim.clock, lim.sleep = clock, clock.sleep
        assert lim._bucket is not None
        lim._bucket.clock, lim._bucket.sleep, lim._bucket._last = clock, clock.sleep, clock.now
        clock.now += 30.0  # a slow start (S3 listing, an import's check pass)
        table = SimTable(clock, capacity=capacity)
        start, sent = clock.now, 0.0
        for _ in range(2000):
            lim.acquire(units)
            sent += units
            assert sent <= rate * (clock.now - start) + units + 1e-6
            got = table.call(units)
            lim.settle(units, got)
            if got < units:
                lim.held_back(units - got)
                lim.throttled()
            assert lim.rate is not None and lim.rate <= rate
        if capacity > rate:  # and a table that never pushes back gets all of it
            assert sent >= rate * (clock.now - start) - units
    assert limiter_for(rate).describe() == {"limit": rate, "current": rate, "throttle_events": 0}


@pytest.mark.parametrize("partitions", [1, 4, 8])
def test_a_rate_given_at_the_capacity_holds_it(partitions: int) -> None:
    """``--max-write-units C`` on a table of C. A bucket that started with a second of the rate
    on top of it, halved on every throttle and climbed back 5 % a second held 0.85-0.87 of it in
    every run (0.90 after start-up): it emptied the table's burst at once, and the writers'
    lumps and the partitions' uneven shares then crossed the capacity now and then. Now the rate
    starts without that second, and under it the table's push-back is answered as when no rate
    is given (a cut to what it admits, then probes, never over the rate): 0.98-1.01 over the
    simulated grid (200-3,000 WCU, 1-8 partitions, every seed; `bench/capacity_simulated.py
    --limit 1 --grid`)."""
    from capacity_sim import simulate

    for seed in range(1, 7):
        r = simulate(12_000, 1000, partitions=partitions, seed=seed, limit=1000)
        assert r.efficiency >= 0.9, (seed, r)
        assert r.steady_efficiency >= 0.95, (seed, r)
        assert r.throttled_item_share <= 0.05, (seed, r)
        assert max(rate or 0.0 for _, rate in r.rates) <= 1000
        before = simulate(12_000, 1000, partitions=partitions, seed=seed, limit=1000, fixed=True)
        # What this replaced, measured the same way.
        assert before.efficiency < 0.9 < r.efficiency and before.steady_efficiency < 0.92


def test_a_rate_under_the_capacity_is_held_exactly_and_one_over_it_finds_the_capacity() -> None:
    from capacity_sim import simulate

    for seed in range(1, 5):
        under = simulate(9_000, 1500, partitions=4, seed=seed, limit=750)
        assert under.throttled_calls == 0 and 0.49 <= under.efficiency <= 0.505, under
        over = simulate(18_000, 1500, partitions=4, seed=seed, limit=3000)
        assert over.efficiency >= 0.9 and over.throttled_item_share <= 0.05, over
        assert max(rate or 0.0 for _, rate in over.rates) <= 3000


def test_a_rate_given_follows_a_capacity_halved_under_it_without_a_storm() -> None:
    from capacity_sim import simulate

    for seed in range(1, 9):
        r = simulate(20_000, 1500, seed=seed, change=(8.0, 750.0), limit=1500)
        assert r.efficiency >= 0.9 and r.throttled_item_share <= 0.05, r
        assert r.throttled_share_after(13.0) <= 0.02, (seed, r.throttled_share_after(13.0))


def test_noise_under_a_rate_given_is_not_a_push_back() -> None:
    """A server refusing 15 % of calls at random under the rate given: a trial finds it is not a
    capacity, the rate is put back at the limit, and the table's first real push-back is still
    read as a first cut (from the throttled calls' admitted share, then rechecked). (In 1 of 15
    seeds a chance run makes the first trial look kept, as it does with no rate given.)"""
    for seed in (1, 2, 3):
        clock = FakeClock()
        lim = AdaptiveLimiter(clock=clock, sleep=clock.sleep, limit=15_000.0)
        table = SimTable(clock, capacity=1e9, noise=0.15, seed=seed)
        simulate(lim, clock, table, 20.0)
        assert lim._noise > 0.0 and lim.rate == 15_000.0 and not lim._found, seed
        table.noise = 0.0
        table.set_capacity(8_000.0)
        end = clock.now + 3.0  # the table's second of burst, then its push-back
        while not lim._found and clock.now < end:
            simulate(lim, clock, table, 0.01)
        assert lim._found and lim.rate is not None and lim.rate < 8_000.0
        # A first cut (to be rechecked by the calls sent under it), not a later one (never
        # rechecked) nor a trial.
        assert lim._recheck and lim._trial is None and lim._cut_at > clock.now - 0.1


def test_a_recheck_never_raises_past_the_rate_given() -> None:
    clock = FakeClock()
    lim = AdaptiveLimiter(clock=clock, sleep=clock.sleep, limit=1000.0)
    assert lim._bucket is not None
    lim._bucket.rate = lim.rate = 400.0  # a first cut read low
    lim._recheck, lim._found, lim._last_cut, lim._run = True, True, clock.now - 1.0, [10, 0]
    lim._after_push_back = lambda: 5000.0  # type: ignore[method-assign]  # the refill read high
    lim._maybe_recheck(lim._bucket, clock.now)
    assert lim.rate == 1000.0 and lim._bucket.rate == 1000.0


def test_callers_waiting_for_the_rate_are_served_in_the_order_they_came() -> None:
    """Writers take batches from the queue in order and then wait for the rate: served in any
    order, the batches of a few pages settled together near a slow copy's end, and progress
    stood at 0 for most of it. In the order they came, the first page's writes settle first."""
    import threading
    import time

    from ddbmigrate.aws.capacity import AdaptiveLimiter

    lim = AdaptiveLimiter(limit=200.0, in_order=True)  # a job's write limiter (limiter_for(rate, "write"))
    lim.acquire(20.0)  # the first call: taken at once, the balance 20 units (0.1 s) in debt
    served: List[int] = []
    threads = []
    for i in range(6):
        def take(i: int = i) -> None:
            lim.acquire(20.0)
            served.append(i)
        t = threading.Thread(target=take)
        t.start()
        threads.append(t)
        time.sleep(0.01)  # the order they come in
    for t in threads:
        t.join(10.0)
    assert served == list(range(6)), served
    assert not lim._line
