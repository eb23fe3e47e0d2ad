"""Capacity-aware rate limiting: a token bucket fed by ReturnConsumedCapacity, made adaptive.

Workers call ``acquire(estimate)`` before a request and ``settle(estimate, consumed)`` after
it, so the bucket is charged what DynamoDB actually consumed; ``again()`` before the client's
retry re-sends a call refused whole (each attempt sent is charged). Every job's limiter is an
:class:`AdaptiveLimiter`: with no rate given it starts at what the table declares it admits
(a provisioned table's units, on DynamoDB itself), or is unlimited until the table pushes back,
then holds just under what the table admits; with a rate given (``--max-*-units``, ``--*-percent``)
it starts at that rate and never goes over it, and under it answers the table's push-back the
same way. :class:`TokenBucket` is the bucket it sets; on its own (``throttled()`` halves its
rate at most once per ``decrease_interval``, each second without throttling adds back
``recover_step`` of the ceiling) it held a given rate before, and measured 0.85-0.87 of a
table's capacity when that rate was the capacity (``bench/capacity_simulated.py --fixed``).
Time and sleep are injected so tests run without sleeping.

Invariant: over any window the consumed units stay within rate x window + burst.
"""

from __future__ import annotations

import collections
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import UsageError

log = logging.getLogger("ddbmigrate.capacity")

# How often a limiter started at a table's declared capacity reads it again (see
# AdaptiveLimiter._maybe_redescribe).
REDESCRIBE_EVERY = 10.0

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

    def again(self) -> None:
        """Before a call refused whole is sent again (the client's retry): a job's limiter
        charges the new attempt as it did the first (each attempt sent is charged); no limit,
        and a bare :class:`TokenBucket`, count the call once."""
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
            wait = self.try_take(units)
            if wait <= 0.0:
                return
            self.sleep(min(wait, 1.0))

    def try_take(self, units: float) -> float:
        """Take ``units`` if the balance allows (0.0), else the seconds until it may."""
        with self._lock:
            self._refill(self.clock())
            # A tiny tolerance: after sleeping exactly -tokens/rate the balance is ~0.
            if self._tokens > -1e-9 or units <= 0:
                self._tokens -= units
                return 0.0
            wait = -self._tokens / self.rate if self._tokens < 0 else units / self.rate
            return max(wait, 0.001)

    def settle(self, estimate: float, consumed: float) -> None:
        with self._lock:
            self._tokens -= consumed - estimate

    def held_back(self, units: float) -> None:
        with self._lock:
            self._tokens -= units

    def drain(self) -> None:
        """Nothing saved up: from now on at most the rate (a debt stays owed)."""
        with self._lock:
            self._refill(self.clock())
            self._tokens = min(self._tokens, 0.0)

    def restart(self) -> None:
        """From now on, with nothing saved up: no burst for the time before its first call."""
        with self._lock:
            self._tokens, self._last = 0.0, self.clock()

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


class AdaptiveLimiter(RateLimiter):
    """No limit until DynamoDB says there is one (or the rate given, ``limit``); then hold just
    under what it admits.

    With no rate given the table's capacity is whatever DynamoDB admits; with one, that is so
    under it. The evidence is per call: when it was sent, what it had admitted, whether anything
    was held back.

    - **Capacity or noise.** Over a capacity, the table's bucket is empty and most calls find it
      short; throttles that are not about capacity (a server refusing a share of calls whatever
      the rate) touch a few. So the rate is cut only when at least half of the last
      ``window_calls`` (24) calls sent since the last cut, and at least ``min_throttled`` (8) of
      them, were throttled (with no limit yet, also 6 of the last 8: the first cut is read from
      the throttled calls, and noise would make it deep): a chance run of that many in 15 %
      random throttles is rare, and the probe wins back what it cost (simulated in
      ``tests/unit/test_ratelimit.py``).
    - **How far to cut.** What the table admitted since those calls began to be sent is its
      capacity (plus what was left of its burst): the rate becomes ``hold`` (90 %) of that,
      headroom for the table's emptied buckets to fill again (at 95 % a call in three still
      found one short for seconds; at 85 % runs over 4-8 partitions held under 90 %). A cut is
      at least 5 % (15 % when it follows another within 2 s: the estimate was high, as the
      table's partitions run out of burst one after the other) and at most half. The first
      cut, from no limit, takes at most the admitted share of the throttled calls times what
      was sent (the table's burst makes what it admitted read high; when every throttled call
      was refused whole there is no share, and what it admitted is taken). Calls sent before a
      cut are not evidence against it (they were in flight), so one congestion is one cut
      however many writers saw it.
    - **A first cut read low.** That share counts the writers' back-off as the table's refusal:
      with one or two partitions a first cut landed at 0.34-0.6 of the capacity, and was climbed
      back at 3 % a second. So half a second after it, when ``recheck_calls`` (8) calls sent
      under it have come back with at most ``recheck_quiet`` (a quarter) throttled, the rate is
      raised to ``hold`` of what the table admitted while its buckets were empty (their refill,
      the capacity; see ``_after_push_back``), which becomes the knee: up to it the probe is as
      after any cut (3 % a second, then 0.5 % near it), past it its steps are the largest
      (``max_probe``, 15 %), for the reading too is low when the writers back off. When that
      reading is no higher than the rate there is no knee, and the steps start at
      ``recheck_step`` (10 %) a second. With four partitions and more the first cut
      mostly reads high, the calls under it come back throttled, and nothing changes (at 3,000
      WCU it reads low there too, and is raised).
    - **A steady minority.** ``trial_share`` (5 %) or more of the last ``trial_calls`` (48)
      throttled, in both halves of them and since the last cut, but not half: a rate a little
      over the capacity, or noise. A trial tells them apart: ``trial_cut`` (5 %) under what the
      table admitted to those calls (not under the rate: at the capacity itself its buckets stay empty, and
      writers sending less than the rate would test nothing), with nothing saved up under the
      rate before (its first second was otherwise not under the trial's). If the share since
      the trial is half of the share before it, the cut stays; if over twice it, the
      capacity is under the trial too (one that shrank behind the table's burst), and a new
      trial starts from it; else the rate is put back and the share is taken as noise (only
      more than it counts from then on). Shares are of all the calls since
      the cut, not of the 48 that started the trial, which a chance run in noise would make
      look halved afterwards.
    - **Finding more.** A second after a cut the rate grows: ``probe`` (3 %) a second while below
      where the table last pushed back, ``slow_probe`` (0.5 %) a second from 97 % of it up to it
      (the likeliest capacity: crossing it slowly costs few throttled calls), for at most
      ``slow_for`` (3) steps: a push-back read low (a first cut's estimate reads low when the
      writers back off) was otherwise crawled past for seconds at 80-90 % of the capacity. Past
      it, or with it stale, each step is ``probe_growth`` x ``probe`` (0.9 points) larger than
      the last since the cut, up to ``max_probe`` (15 %): the longer the table has not pushed
      back, the less that push-back says, and a capacity that grew (auto scaling) is found in
      seconds. A step is taken only while the rate is under ``headroom`` (1.25) times what the
      bucket was charged in the last 2 s (consumed, or sent when some was held back): a rate the
      writers do not use tests nothing, and a cut takes at most half of it. Nor while more than
      ``probe_quiet`` (5 %, over the noise) of the calls answered in those 2 s were throttled:
      the rate is at the capacity already (grown on past it, a capacity that halved was held
      over, a call in thirteen throttled, under the trial's share).

    - **A capacity the table declares** (``declared``: :func:`declared_write_capacity`, a
      provisioned table's write units on DynamoDB's own endpoints). The rate starts there at the
      first call, with nothing saved up, as with a rate given, and the push-back is read as a
      later cut (what the table admitted, within 5-50 % of the rate). Probing near it is slow
      (it is the knee) and past it ``probe`` (3 %) a second with no growing steps, up to
      ``past_declared`` (1.3) times it: the table's burst is there. Further past it with no
      push-back the table has more (auto scaling raised it), and the steps grow as for any
      capacity that grew (a table auto scaled from 500 to 2,000 WCU is at 1,500 within 20 s,
      not 855). A push-back more than 3 % past it is that burst
      running out, and the cut goes back to ``hold`` of the declared capacity, not below what the
      emptied partitions admitted (0.68 of it in the simulator); the next push-back, if the
      declaration was wrong, cuts as any. Below 1,000 WCU, with no limit, 16 writers put 400
      units in flight before the first answer, which no rule that answers throttles can take
      back: 6-20 % of a 12 s run's writes throttled at start-up, none from the declared start
      (``bench/capacity_simulated.py --declared 1 --grid``). The figure is read again as the
      job runs (``redescribe``: every 10 s, and soon after a push-back), and a changed one
      moves the rate and the knee (``_maybe_redescribe``, ``_redeclare``).

    - **A rate given** (``limit``: ``--max-*-units``, ``--*-percent``). The rate starts there at
      the first call, with no second of it saved up on top, and neither a probe nor a recheck
      takes it over (nor a cut's floor: ``min_rate`` is at most the limit). The first push-back
      under it is read as the first cut from no limit is, then the cuts, trials and probes are
      the same; a trial found to be noise leaves the next push-back a first cut again. It is
      a ceiling, not a target: a bucket that began with a second's burst, halved on every
      throttle and climbed back 5 % a second held 0.85-0.87 of a table whose capacity was the
      rate given (its burst emptied the table's at start-up; the writers' lumps and the
      partitions' uneven shares then crossed it now and then).

    Measured against the fault proxy's capacity model in ``bench/capacity.py``, and in
    simulated time (16 writers, a partitioned table) in ``tests/unit/test_ratelimit.py``.
    """

    def __init__(self, *, hold: float = 0.9, probe: float = 0.03, slow_probe: float = 0.005, slow_for: int = 3,
                 probe_growth: float = 0.3, max_probe: float = 0.15, headroom: float = 1.25, probe_quiet: float = 0.05,
                 window_calls: int = 24, min_throttled: int = 8, min_calls: int = 16, trial_calls: int = 48, min_rate: float = 1.0,
                 trial_share: float = 0.05, trial_cut: float = 0.05, after_cut: float = 5.0,
                 recheck_after: float = 0.5, recheck_calls: int = 8, recheck_quiet: float = 0.25,
                 recheck_step: float = 0.1, limit: Optional[float] = None, declared: Optional[float] = None,
                 declared_exact: bool = True, past_declared: float = 1.3,
                 redescribe: Optional[Callable[[], Optional["Declared"]]] = None,
                 redescribe_every: float = REDESCRIBE_EVERY,
                 redescribe_soon: float = 2.0, redescribe_first: Optional[float] = None,
                 redescribe_jitter: float = 0.2, look_aside: bool = True, share: float = 1.0,
                 in_order: bool = False,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 name: str = "") -> None:
        self.hold, self.probe, self.slow_probe = hold, probe, slow_probe
        self.slow_for, self.probe_growth, self.max_probe = slow_for, probe_growth, max_probe
        self.headroom, self.probe_quiet = headroom, probe_quiet
        self.window_calls, self.min_throttled, self.min_calls = window_calls, min_throttled, min_calls
        self.trial_calls = trial_calls
        self.trial_share, self.trial_cut, self.after_cut = trial_share, trial_cut, after_cut
        self.min_rate = min_rate
        self.recheck_after, self.recheck_calls = recheck_after, recheck_calls
        self.recheck_quiet, self.recheck_step = recheck_quiet, recheck_step
        self.clock, self.sleep = clock, sleep
        self.name = name
        self.rate = None
        self.ceiling = None
        self._lock = threading.Lock()
        self._bucket: Optional[TokenBucket] = None
        # The last calls' answers: [answered at, sent at, units admitted, throttled, units sent].
        self._calls: Deque[List[Any]] = collections.deque(maxlen=4096)
        self._local = threading.local()
        self._line: Deque[object] = collections.deque()  # callers waiting for the rate, in order
        # Whether callers that wait are served in the order they came (writes: see _acquire).
        # Not reads: a replicate's scan at --max-read-units 4 then missed the phase a test
        # kills it in, 1 run in 4, where it never did served in any order.
        self.in_order = in_order
        self._last_cut = -1e18  # the last cut, trial or trial verdict: evidence counts from here
        self._run = [0, 0]  # calls answered since then, and those throttled
        self._last_probe = 0.0
        self._knee: Optional[float] = None  # what the table admitted when it last pushed back
        # Probe steps taken since then (the rate not held by what the writers use), and of them
        # near the knee.
        self._probes = self._slow_steps = 0
        self._cut_at = -1e18  # the last cut (not trial)
        # (rate before, share, whether the table had pushed back before) of a trial cut
        self._trial: Optional[Tuple[Optional[float], float, bool]] = None
        self._noise = 0.0  # the share of calls throttled whatever the rate, as a trial found it
        self.throttle_events = 0
        self._ratio = 1.0  # units consumed per unit of the callers' estimates, as calls admitted whole showed
        self._recheck = False  # the first cut is to be checked against what came after it
        self._found = False  # a first cut or trial made: the table has pushed back
        # A rate given (--max-*-units): the rate starts there and never goes over it; under it the
        # table's push-back is answered as without one (a cut to what it admits, then probes).
        self.limit: Optional[float] = None
        self._started = True  # the first call was charged (a bucket built before it starts then)
        if limit is not None:
            if limit <= 0:
                raise ValueError("limit must be positive")
            self.limit = self.rate = float(limit)
            self.min_rate = min(self.min_rate, self.limit)  # a cut's floor, or it would raise a small limit
            self._bucket = TokenBucket(self.limit, min_rate=self.min_rate, recover_step=0.0,
                                       clock=clock, sleep=sleep, name=name)
            self._started = False
        # What the table says it admits (its provisioned write units, where DynamoDB enforces
        # them): the rate starts there instead of at no limit, as the likeliest capacity. With no
        # limit the writers put 400 units in flight before the first answer; under 1,000 WCU the
        # table's burst cannot take them, and no rule that answers throttles saves what was sent
        # before the first one came back. A start, not a ceiling: probes go past it (burst
        # capacity, auto scaling), and push-back under it is read as without it.
        self.declared: Optional[float] = None
        # Whether the declared figure is the capacity (the knee, with no growing steps past it and
        # cuts back to it), or only where to start (a table with GSIs: see Declared).
        self._declared_exact = declared_exact
        self.past_declared = past_declared
        self._floored = -1e18  # the last cut held at hold x declared (see _declared_floor)
        # What the table declares, read again while the job runs (see _maybe_redescribe): the
        # figure at the start is what the report says the rate started at; ``declared`` is the last.
        self._redescribe = redescribe
        self.redescribe_every, self.redescribe_soon = redescribe_every, redescribe_soon
        # The first look, from the first call: ``redescribe_every`` when the figure was just read;
        # sooner for a worker started later from the job's reading (a Spark task, a resumed
        # process): it would otherwise miss a capacity raised since for its first 10 s.
        self.redescribe_first = redescribe_every if redescribe_first is None else max(0.0, redescribe_first)
        # Workers look at different moments (a congestion brings every worker's look forward at
        # once: 16 DescribeTables in the same second otherwise).
        self.redescribe_jitter = redescribe_jitter
        self._describe_due: Optional[float] = None  # when to look next (set at the first call)
        self._described = -1e18  # when it was last looked at
        self._describing = False
        self._look_again_soon = False  # pushed back while a look was in flight
        self.share = share  # this worker's part of the job's figures: the report says the table's whole
        self._declared_read: Optional[Tuple[float, float]] = None  # (wall time, whole figure) of the last look
        # Looked at in a thread of its own: a writer that looked would hold its batch for as long
        # as a DescribeTable takes, which an outage or a hung endpoint makes minutes (the control
        # client retries), and a job's stop would wait for it. Inline in simulated time.
        self._look_aside = look_aside
        self.declared_first: Optional[float] = None
        self.declared_changes = 0
        self.describe_failures = 0
        self._failing = 0  # looks failed since the last that did not
        if declared is not None and declared > 0 and self.limit is None:  # a rate given is the start
            self.declared = self.declared_first = self.rate = float(declared)
            self.min_rate = min(self.min_rate, self.declared)  # a worker's small share: no cut raises it
            self._knee = self.declared if declared_exact else None
            # A push-back is read as a later cut (what the table admitted, within 5-50 % of the
            # rate), not as a first cut from no limit, whose reading of the throttled calls'
            # share is for the burst of 16 writers' first calls (it read 0.58 of the capacity
            # after a probe past it, in the simulator).
            self._found = True
            self._bucket = TokenBucket(self.declared, min_rate=self.min_rate, recover_step=0.0,
                                       clock=clock, sleep=sleep, name=name)
            self._started = False

    def acquire(self, units: float = 1.0) -> None:
        if self._redescribe is not None and self.limit is None:
            self._maybe_redescribe()
        place: List[Optional[object]] = [None]  # this caller's place in the line, once it has had to wait
        try:
            self._acquire(units, place)
        finally:
            if place[0] is not None:  # left the line without its turn (an exception in the wait)
                with self._lock:
                    try:
                        self._line.remove(place[0])
                    except ValueError:
                        pass

    def _acquire(self, units: float, place: List[Optional[object]]) -> None:
        while True:
            with self._lock:
                # Charged in the table's units: the caller's estimate times what calls admitted
                # whole consumed per estimated unit (JSON is larger than DynamoDB's item size; a
                # GSI doubles a write), within bounds (a retry's estimate counts items).
                whole = getattr(self._local, "whole", None)
                if whole is not None:
                    self._local.whole = None
                    self._ratio = min(4.0, max(0.25, self._ratio + 0.1 * (whole[1] / whole[0] - self._ratio)))
                charge = units * self._ratio
                bucket = self._bucket
                if not self._started and bucket is not None:
                    # The rate given starts at the first call, with no second of it at once on
                    # top (a table given its own capacity as the rate had its burst emptied by
                    # that at start-up, and read low when it pushed back), however long the job
                    # took to start.
                    self._started = True
                    bucket.restart()
                    # Probe steps count from the first call (one grown from the epoch would take
                    # all its steps at once).
                    self._last_probe = self.clock()
                if bucket is not None:
                    self._maybe_recheck(bucket, self.clock())
                    self._maybe_probe(bucket)
                me = place[0]
                if bucket is None:
                    wait = 0.0
                elif self.in_order and self._line and self._line[0] is not me:
                    # Callers that had to wait for the rate are served in the order they came: a
                    # batch taken from the queue first is sent first, so a page's writes settle
                    # before the next page's (served in any order, the 16 writers' batches of a
                    # few pages settled together near a slow copy's end, and progress stood at 0).
                    if me is None:
                        me = place[0] = object()
                        self._line.append(me)
                    wait = -1.0
                else:
                    wait = bucket.try_take(charge)
                    if wait > 0.0 and me is None and self.in_order:
                        me = place[0] = object()
                        self._line.append(me)
                    elif wait <= 0.0 and me is not None:
                        self._line.popleft()  # its turn, taken
                        place[0] = None
            if wait == 0.0:
                break
            # Then looks again: the rate may have been cut or grown meanwhile. Behind another
            # caller, for as long as that one's turn may take.
            self.sleep(min(wait, 1.0) if wait > 0.0 else 0.02)
        self._local.sent = self.clock()
        self._local.units, self._local.estimate = charge, units
        self._local.call = None
        self._local.charged = bucket

    def _interval(self, seconds: float) -> float:
        """``seconds``, give or take ``redescribe_jitter`` of it (at most all of it)."""
        return seconds * (1.0 + min(1.0, self.redescribe_jitter) * (2.0 * random.random() - 1.0))

    def _maybe_redescribe(self) -> None:
        """Read what the table declares again, every ``redescribe_every`` seconds, and
        ``redescribe_soon`` after a push-back: a capacity changed under a running job (an
        UpdateTable, auto scaling) is otherwise only found from throttles. Found that way, a
        capacity halved at 8 s of a 40 s run was crossed again and again: the old figure stayed
        the knee, and past it the probe grew (4.6-6.1 % of the writes after the change held
        back, in the simulator; 2.6-4.9 % read again). One look at a time, aside from the
        writers (see ``look_aside``); a look that fails leaves the rate as it was, and the
        table's push-back is still answered."""
        now = self.clock()
        with self._lock:
            if self._describe_due is None:  # the first call
                self._describe_due = now + self._interval(self.redescribe_first)
            if self._describing or now < self._describe_due:
                return
            self._describing = True
        if not self._look_aside:
            self._look()
            return
        try:
            threading.Thread(target=self._look, name=f"{self.name or 'limiter'}-describe", daemon=True).start()
        except RuntimeError as e:  # no thread to be had (at the limit, or the interpreter exiting)
            with self._lock:
                self._describing = False
                self._describe_due = self.clock() + self._interval(self.redescribe_every)
                self._failed(e)

    def _look(self) -> None:
        lookup = self._redescribe
        assert lookup is not None
        failed: Optional[BaseException] = None
        found: Optional[Declared] = None
        try:
            found = lookup()
        except Exception as e:  # noqa: BLE001 - any failure to look: the rate stays as it is
            failed = e
        with self._lock:
            self._describing = False
            self._described = now = self.clock()
            soon, self._look_again_soon = self._look_again_soon, False
            if failed is not None:
                # Looked at less often while it fails (a role that may write but not describe
                # the table would otherwise be refused every 10 s and after every cut).
                self._failed(failed)
                self._describe_due = now + self._interval(self.redescribe_every * min(6, 1 + self._failing))
            else:
                self._failing = 0
                self._describe_due = now + self._interval(self.redescribe_soon if soon else self.redescribe_every)
                self._redeclare(found, now)
                # Every look, changed or not: the driver takes the newest reading of any worker
                # (one that saw a raise and another that later saw it undone).
                self._declared_read = (time.time(), (found.units if found is not None else 0.0) / self.share)

    def _failed(self, e: BaseException) -> None:
        self.describe_failures += 1
        self._failing += 1
        if self.describe_failures == 1:
            log.warning("%s: could not read the table's write capacity again (%s); the rate follows the table's "
                        "push-back alone until a look succeeds", self.name or "limiter", str(e).splitlines()[0][:200])
        else:
            log.debug("%s: the table's capacity could not be read again: %s", self.name or "limiter", e)

    def _redeclare(self, found: Optional["Declared"], now: float) -> None:
        """The table declares ``found`` now. A figure lowered takes the rate to it (a rate under
        it is kept); one raised moves the rate by as much (0.9 of the old figure becomes 0.9 of
        the new: a rate held under it for a hot key stays as far under it). Either is the knee if
        exact. None: it no longer declares one (on demand with no maximum), and the rate is left
        to its push-back."""
        old = self.declared
        if found is None:
            if old is not None:
                log.info("%s: the table no longer declares a write capacity (%.0f before): the rate is "
                         "left to its push-back", self.name or "limiter", old)
                self.declared = None
                self._knee = None
                self.declared_changes += 1
            return
        units = found.units
        if old is not None and abs(units - old) <= 0.005 * old and found.exact == self._declared_exact:
            return
        bucket = self._bucket
        if old is not None and bucket is not None and units < old:
            # Lowered: the rate may have been cut for it already (a push-back brings a look
            # forward), and is then kept: scaled again, a rate cut to what a capacity lowered
            # from 3,000 to 1,000 admitted went on to a third of that (0.48 of the capacity
            # after 5 s, in the simulator). Over an exact figure it goes to the figure; with
            # GSIs (the rate counts index units too) as far under the old rate as the figure.
            target = units if found.exact else max(units, bucket.rate * units / old)
            rate = min(bucket.rate, target)
        elif old is not None and bucket is not None:
            # Raised: as far under the new figure as under the old (a rate held under it for a
            # hot key stays under it); past an exact figure was the old one's burst.
            rate = bucket.rate * units / old
            if found.exact:
                rate = min(rate, units)
        elif bucket is not None:
            # Found under it: kept; over an exact figure: the figure (with GSIs the rate counts
            # index units too, and runs over the table's own figure).
            rate = min(bucket.rate, units) if found.exact else bucket.rate
        else:
            rate = units  # no limit until now, and none pushed back
        rate = max(min(self.min_rate, units), rate)
        log.info("%s: the table declares %.0f write units a second (%s before): rate %.0f",
                 self.name or "limiter", units, f"{old:.0f}" if old is not None else "none", rate)
        self.declared = units
        self._declared_exact = found.exact
        self.declared_changes += 1
        self.min_rate = min(self.min_rate, units)
        if bucket is None:
            bucket = self._bucket = TokenBucket(rate, min_rate=self.min_rate, recover_step=0.0, clock=self.clock,
                                                sleep=self.sleep, name=self.name)
            bucket.restart()
        else:
            if rate < bucket.rate:
                bucket.drain()  # nothing saved up at the old rate is sent over the new one
            bucket.rate = bucket.ceiling = rate
            bucket.min_rate = min(bucket.min_rate, self.min_rate)
        self._found = True  # a push-back under it is read as a later cut, as from a declared start
        self._knee = units if found.exact else (self._knee * units / old if self._knee and old else None)
        self._trial = None
        self._recheck = False
        self._floored = -1e18
        self._fresh_evidence(now)  # calls sent at the old rate are no evidence about the new one
        self._last_probe = now
        self.rate = rate

    def _maybe_probe(self, bucket: "TokenBucket") -> None:
        now = self.clock()
        steps = int(now - self._last_probe)
        if steps <= 0 or now - self._last_cut < 1.0:
            return
        self._last_probe += steps
        # Never far above what the writers use: a rate they do not use proves nothing (nor
        # counts as probing), and one grown unchecked would take many cuts (each at most half)
        # to come down when it binds. Used = what the bucket was charged: consumed, which is
        # more than the estimate with indexes or deletes, or sent, when some was held back.
        calls = self._calls
        start = max(now - 2.0, calls[0][0]) if calls else now
        window = [c for c in calls if c[0] >= start]
        if len(window) < 4 and len(calls) >= 4:
            last = [calls[-k] for k in range(4, 0, -1)]
            if bucket.rate * 2.0 < sum(c[4] for c in last):
                # A rate too low for 2 s to hold 4 calls (at 25 units a call, under 50 units/s:
                # one or two, read as 12.5 or 25 units/s used, and the rate stopped at 1.25
                # times that for good): the use is read over the last 4 calls. Not at a higher
                # rate's end, when the calls thin out: that reading would be of the busy time.
                start, window = min(c[1] for c in last), last
        used = sum(max(c[2], c[4]) for c in window) / max(0.5, now - start)
        cap = self.headroom * used
        if self.limit is not None:
            cap = min(cap, self.limit)
        rate = bucket.rate
        # Throttled calls in the last 2 s (not those sent before the last cut): at the capacity
        # already. At a rate of a few calls in 2 s, the last 4 since the last cut.
        since_cut = [c for c in calls if c[1] >= self._last_cut]
        late = [c for c in since_cut if c[0] >= start]
        if len(late) < 4:
            late = since_cut[-4:]
        if len(late) >= 2 and sum(1 for c in late if c[3]) > (self._noise + self.probe_quiet) * len(late):
            return
        for _ in range(min(steps, 30)):
            if rate >= cap:
                break
            knee = self._knee
            near = knee is not None and rate >= knee * 0.97  # the step that crosses it is slow too
            if knee is not None and (rate > knee or (near and self._slow_steps >= self.slow_for)):
                # Past the old capacity with no push-back (it grew), or crawling below a knee that
                # was read low (a first cut's estimate reads low when the writers back off): the
                # likeliest capacity is no longer known.
                self._knee = knee = None
                near = False
            if near:
                step = self.slow_probe
                self._slow_steps += 1
            elif knee is None:
                # The longer the table has not pushed back, the less its last push-back says: a
                # capacity that grew is found in seconds, not in minutes of 3 %.
                step = min(self.max_probe, self.probe * (1.0 + self.probe_growth * self._probes))
                if self.declared is not None and self._declared_exact and \
                        self.declared <= rate < self.past_declared * self.declared:
                    # Just past what the table declares there is its burst: no growing steps
                    # there. Further past it with no push-back, the table has more (auto scaling
                    # raised it, or minutes of saved burst): found as any capacity that grew.
                    step = self.probe
            else:
                step = self.probe
            self._probes += 1
            rate *= 1.0 + step
        rate = max(bucket.rate, min(rate, cap))
        bucket.rate = bucket.ceiling = rate
        self.rate = rate

    def _answer(self, admitted: float, throttled: bool) -> None:
        now = self.clock()
        sent = getattr(self._local, "sent", now)
        call = [now, sent, admitted, throttled, getattr(self._local, "units", admitted)]
        calls = self._calls
        calls.append(call)
        if sent >= self._last_cut:
            self._run[0] += 1
            self._run[1] += throttled
        while len(calls) > max(self.window_calls, self.trial_calls) and calls[0][0] < now - 2.0:
            calls.popleft()
        self._local.call = call

    def _charged_by(self, bucket: "TokenBucket") -> bool:
        """Whether this thread's call was charged by ``bucket`` (not sent before it existed)."""
        return getattr(self._local, "charged", None) is bucket

    def settle(self, estimate: float, consumed: float) -> None:
        with self._lock:
            self._answer(consumed, False)
            bucket = self._bucket
        # Learnt at this thread's next acquire, unless the call turns out throttled (a call held
        # back in part says nothing of the ratio).
        self._local.whole = (estimate, consumed) if estimate > 0 and consumed > 0 else None
        # Only the bucket that charged a call settles it. A call sent before the limit was found
        # was refunded an estimate it never paid: with estimates over the consumption, every
        # call in flight at the first cut handed the new rate free units.
        if bucket is not None and self._charged_by(bucket):
            bucket.settle(self._local.units, consumed)

    def held_back(self, units: float) -> None:
        self._local.whole = None  # held back in part: nothing learnt of the ratio
        bucket = self._bucket
        if bucket is not None and self._charged_by(bucket):
            bucket.held_back(units)

    def throttled(self) -> None:
        with self._lock:
            self.throttle_events += 1
            call = getattr(self._local, "call", None)
            if call is not None:
                call[3] = True  # this call's answer (settled with what it admitted) held some back
                self._run[1] += call[1] >= self._last_cut
            else:
                self._answer(0.0, True)  # refused whole
            # A refused call is re-sent by the client's retries, after ``again``.
            self._local.call = self._local.whole = None
            self._local.sent = self.clock()
            self._maybe_cut()

    def again(self) -> None:
        """The attempt refused stays charged (it was sent, as units held back are); the next
        one is charged and waits for the rate like any call."""
        self.acquire(getattr(self._local, "estimate", 1.0))

    def _maybe_cut(self) -> None:
        now = self.clock()
        if len(self._calls) < self.min_calls:
            return
        recent = [c for c in self._calls if c[1] >= self._last_cut][-self.window_calls:]
        throttled = sum(1 for c in recent if c[3])
        # With no limit yet, a congestion is also most of the latest calls throttled at once:
        # half of 24 by chance in noise is rare, and that on top rarer still (its first cut would
        # be read from noise and cost the most).
        if (throttled < self.min_throttled or 2 * throttled < len(recent)
                or (not self._found and sum(1 for c in recent[-8:] if c[3]) < 6)):
            self._maybe_trial(now)
            return
        self._trial = None
        # What the table admitted (to any call) since the first of these was sent: they found it
        # short, so that is its capacity, plus what was left of its burst. The rate becomes
        # ``hold`` of it: after a congestion the table's buckets are empty, and only headroom
        # lets them fill again (at 95 % a call in three still finds one short for seconds).
        since = min(c[1] for c in recent)
        span = max(0.05, now - since)
        admitted = sum(c[2] for c in self._calls if c[0] >= since) / span
        bucket = self._bucket
        if not self._found or bucket is None:
            # The first cut (from no limit, or from the rate given): the table's burst makes what
            # it admitted look like far more than its rate; the admitted share of the throttled
            # calls times what was sent is nearer.
            sent = sum(c[4] for c in recent) / span
            held = [c for c in recent if c[3]]
            share = sum(c[2] for c in held) / max(1e-9, sum(c[4] for c in held))
            # Calls refused whole (every throttled Scan or PutItem) say nothing of the share: a
            # share of 0 set the first cut to 1 unit/s.
            if share > 0.0:
                admitted = min(admitted, share * sent)
            self._recheck = True
            self._found = True
            target = max(self.min_rate, self.hold * admitted)
            if bucket is None:
                bucket = self._bucket = TokenBucket(target, min_rate=self.min_rate, recover_step=0.0, clock=self.clock,
                                                    sleep=self.sleep, name=self.name)
            else:  # under a rate given: a cut, never a raise
                target = min(target, bucket.rate * 0.95)
                bucket.rate = bucket.ceiling = target
        else:
            # A cut is between 5 % and half of the rate before (a few calls' lumps must not make
            # the rate); one soon after another says the last estimate was high (the table's
            # partitions run out of burst one after the other): at least 15 %, and the same
            # congestion gives no higher knee.
            self._recheck = False
            before = bucket.rate
            soon = now - self._last_cut < 2.0
            target = max(self.min_rate, min(max(self.hold * admitted, before * 0.5), before * (0.85 if soon else 0.95)))
            if soon and self._knee is not None:
                admitted = min(admitted, self._knee)
            floored = self._declared_floor(before, target)
            if floored > target:
                admitted = max(admitted, floored / self.hold)  # the knee: where probing slows
            target = floored
            bucket.rate = bucket.ceiling = target
        if self._redescribe is not None and self.declared is not None and self._describe_due is not None \
                and not self._failing:  # (looks that fail are not brought forward: see _look)
            # Pushed back: the figure it declares may have been lowered (a look is one call).
            if self._describing:
                self._look_again_soon = True  # it may have read the figure before the change
            else:
                look = self._described + self._interval(self.redescribe_soon)
                self._describe_due = min(self._describe_due, max(now, look))
        # No burst on top of what is in flight: the table's own burst is spent.
        bucket.drain()
        log.debug("%s: %d of the last %d calls throttled; the table admitted %.0f units/s; rate now %.0f",
                  self.name or "limiter", throttled, len(recent), admitted, target)
        self._knee = admitted  # the likeliest capacity, where probing slows down
        self._fresh_evidence(now)
        self._last_probe = self._cut_at = now
        self.rate = target

    def _declared_floor(self, before: float, target: float) -> float:
        """A push-back past ``hold`` of what the table declares is its burst running out (or the
        partitions' uneven shares): the rate goes back to ``hold`` of the declared capacity, not
        below it by what the emptied partitions admitted (0.68 of it, in the simulator, after two
        cuts in one congestion). If the declaration is wrong, the push-back under that says so,
        and is cut as any."""
        if self.declared is None or not self._declared_exact:
            return target
        floor = self.hold * self.declared
        now = self.clock()
        # Past it by more than the slow steps near it take the rate (a table that has less than
        # it declares pushes back before that), or the same congestion's next cut.
        if before > 1.03 * self.declared or (before > floor and now - self._floored < 2.0):
            self._floored = now
            return max(target, min(before * 0.95, floor))
        return target

    def _after_push_back(self) -> Optional[float]:
        """What the table admitted while its buckets were empty, in the congestion that made the
        first cut: their refill, the capacity. The congestion is the calls answered before the
        cut and those in flight then, back from the last for as long as at least half of every 8
        in a row were throttled, from three throttled in a row (a throttle before it, in noise
        or from a hot key, would bring the table's burst into the reading: 2.45 times the
        capacity in 10 % noise). When the table decides is between the send and
        the answer, so it is read both ways and the lower taken: by the time answered, from the
        first throttled answer (a call answered after it may have been admitted long before it,
        when the table decides on arrival: one sent 0.26 s before a cut came back whole after
        the first throttled answer, and that reading was 4.4 times the capacity), and by the
        time sent, from the first throttled call's send (a call sent after it may have been
        admitted before it, when the table decides late)."""
        calls = [c for c in self._calls if c[1] < self._cut_at]
        start = len(calls)
        for i in range(len(calls) - 1, -1, -1):
            window = calls[i:i + 8]
            if len(window) == 8 and 2 * sum(1 for c in window if c[3]) < 8:
                break
            if calls[i][3]:
                start = i
        # It begins with three throttled answers in a row: a lone throttle at its edge (noise,
        # a refused call) would bring in the whole calls around it.
        while start + 2 < len(calls) and not (calls[start][3] and calls[start + 1][3] and calls[start + 2][3]):
            start += 1
        congestion = calls[start:]
        thr = [c for c in congestion if c[3]]
        if len(thr) < 4:
            return None
        end: float = congestion[-1][0]
        answered: float = thr[0][0]
        sent: float = min(c[1] for c in thr)
        if end - answered < 0.05 or self._cut_at - sent < 0.05:
            return None
        by_answer = float(sum(c[2] for c in congestion if c[0] > answered)) / (end - answered)
        by_send = float(sum(c[2] for c in calls if c[1] > sent)) / (self._cut_at - sent)
        return min(by_answer, by_send)

    def _maybe_recheck(self, bucket: "TokenBucket", now: float) -> None:
        """The first cut checked by the calls sent under it (see the class docstring). No knee
        when the reading of the refill is no higher than the rate: quiet says the capacity is
        above it, not by how much (with the writers in back-off the reading is low too: 3,000
        WCU on one partition read 0.6-0.7 of it). Never a cut."""
        if not self._recheck or now - self._last_cut < self.recheck_after:
            return
        n, throttled = self._run
        if n < self.recheck_calls:
            return
        self._recheck = False
        if throttled > (self._noise + self.recheck_quiet) * n:
            return
        admitted = self._after_push_back()
        rate = self.hold * admitted if admitted is not None else 0.0
        if self.limit is not None:
            rate = min(rate, self.limit)
        if admitted is not None and rate > bucket.rate:
            log.debug("%s: quiet under the first cut; the table admitted %.0f units/s after it pushed back: "
                      "rate now %.0f", self.name or "limiter", admitted, rate)
            bucket.rate = bucket.ceiling = rate
            self._fresh_evidence(now)
            self._last_probe = now
            self.rate = rate
            self._knee = admitted
        else:
            self._knee = None  # quiet under it: the table's last push-back said too little
        # Steps from ``recheck_step`` (probe x (1 + growth x steps)); counted on below a knee, so
        # past it they are the largest.
        if self.probe > 0 and self.probe_growth > 0:
            self._probes = max(0, round((self.recheck_step / self.probe - 1.0) / self.probe_growth))

    def _fresh_evidence(self, now: float) -> None:
        """A cut, a trial or a trial's verdict: calls, throttles and probe steps count anew."""
        self._last_cut = now
        self._run = [0, 0]
        self._probes = self._slow_steps = 0

    def _maybe_trial(self, now: float) -> None:
        """A share of calls throttled, steadily, but not most: a rate a little over the capacity,
        or noise. A trial tells them apart (see the class docstring): if the share halves under
        the trial rate it was the capacity and the cut stays, else it is noise: the rate is put
        back and the share noted, so only more than it counts from then on."""
        since = [c for c in self._calls if c[1] >= self._last_cut][-self.trial_calls:]
        if len(since) < self.trial_calls or now - self._last_cut < 2.0:
            return
        # The share since the last cut (or trial), not only of these calls: a trial started on a
        # chance run of throttles in noise would otherwise look kept as the share falls back.
        share = self._run[1] / max(1, self._run[0])
        half = len(since) // 2
        if self._trial is None and min(sum(1 for c in since[:half] if c[3]), sum(1 for c in since[half:] if c[3])) < 2:
            # Not a steady share: throttles only in the later calls are a congestion beginning,
            # which the cut answers (a trial first would take the rate of the burst for it).
            return
        if self._trial is not None:
            before, before_share, found = self._trial
            self._trial = None
            self._fresh_evidence(now)  # either way
            # More throttled under a lower rate is no noise: a capacity under the trial's rate
            # too (one that shrank behind the table's burst). A new trial, from this rate, which
            # keeps the first one's flag (noise after it is no push-back either).
            lower_still = share > 2.0 * before_share
            if lower_still:
                self._found = found
                log.debug("%s: %.0f%% throttled after the trial (%.0f%% before): the capacity is under it",
                          self.name or "limiter", 100 * share, 100 * before_share)
            elif share < 0.5 * before_share:
                log.debug("%s: %.0f%% throttled after the trial (%.0f%% before): kept", self.name or "limiter",
                          100 * share, 100 * before_share)
                return
            else:
                self._noise = share
                self._found = found  # noise is no push-back: the next one is read as a first cut
                if before is None:
                    self._bucket = None
                    self.rate = None
                elif self._bucket is not None:
                    self._bucket.rate = self._bucket.ceiling = before
                    self.rate = before
                log.debug("%s: %.0f%% of calls throttled whatever the rate: not a capacity",
                          self.name or "limiter", 100 * share)
                return
        else:
            floor = max(self.trial_share, self._noise + self.trial_share)
            if min(share, sum(1 for c in since if c[3]) / len(since)) < floor:
                return
        before_rate = self._bucket.rate if self._bucket is not None else None
        found, self._found = self._found, True
        # The trial rate: under what the table admitted to these calls, so that a rate over the
        # capacity by more than a little is tried under it too (a trial at the capacity itself
        # still finds the buckets empty and would be taken for noise).
        span = max(0.05, now - since[0][1])
        admitted = sum(c[2] for c in since) / span
        if self._bucket is None:
            basis = min(admitted, sum(c[4] for c in since) / span)
            rate = max(self.min_rate, (1 - self.trial_cut) * basis)
            self._bucket = TokenBucket(rate, min_rate=self.min_rate, recover_step=0.0, clock=self.clock,
                                       sleep=self.sleep, name=self.name)
        else:
            basis = min(self._bucket.rate, admitted)
            # Soon after a cut the table's buckets are still empty: a share throttled then says the
            # cut landed at the capacity, where a trial 5 % under it still finds them short (and
            # was taken for noise); it goes as far under as a cut does.
            cut = (1 - self.hold) if now - self._cut_at < self.after_cut else self.trial_cut
            rate = self._declared_floor(self._bucket.rate, max(self.min_rate, basis * (1 - cut)))
            self._bucket.rate = self._bucket.ceiling = rate
        # What the bucket saved up under the rate before would be sent over the trial's: tried
        # from now, or the first second of the two it is judged on is not under it.
        self._bucket.drain()
        self._trial = (before_rate, share, found)
        self._recheck = False  # the trial decides now
        log.debug("%s: %.0f%% of the calls since the last cut throttled: trying %.0f units/s",
                  self.name or "limiter", 100 * share, rate)
        self._knee = basis
        self._fresh_evidence(now)
        self._last_probe = now
        self.rate = rate

    def current_rate(self) -> Optional[float]:
        return self.rate

    def describe(self) -> Optional[Dict[str, Any]]:
        if self.limit is not None:
            return {"limit": round(self.limit, 1), "current": round(self.rate or 0.0, 1),
                    "throttle_events": self.throttle_events}
        if self.declared_first is not None and not self._started:
            return None  # nothing was written (a dry run, nothing to write): it started nowhere
        if self.declared_first is None and self.rate is None and not self.throttle_events:
            return None
        # A rate found or started at the table's figure; or throttled but never cut (noise the
        # back-off absorbed): 0, none held.
        out: Dict[str, Any] = {"limit": round(self.rate or 0.0, 1), "current": round(self.rate or 0.0, 1),
                               "throttle_events": self.throttle_events, "auto": True}
        if self.declared_first is not None:
            # Unrounded: the driver sums the workers' shares (three thirds of 1,000 read 999.9).
            out["declared"] = self.declared_first
        read = self._declared_read
        if read is not None and self.declared_first is not None:
            # What the table declared when last read (0: none any more), the table's whole
            # figure, and when: the driver takes the newest of any worker's, and says it only if
            # it differs from the start.
            out["declared_last"], out["declared_read_at"] = read[1], read[0]
        if self.describe_failures:
            out["declared_look_failures"] = self.describe_failures
        return out


def limiter_for(rate: Optional[float], name: str = "") -> RateLimiter:
    """With a rate (``--max-*-units``, ``--*-percent``): never over it, and under it the table's
    push-back answered as when the rate is found (a cut to what it admits, then probes). Without
    one: no limit (the engine's workers use an :class:`AdaptiveLimiter` without a limit instead)."""
    return AdaptiveLimiter(limit=rate, name=name, in_order=name == "write") if rate else RateLimiter()


@dataclass(frozen=True)
class Declared:
    """What a table says it admits a second, in the limiter's units: the write units consumed,
    the table's and its indexes' together (ReturnConsumedCapacity TOTAL). ``exact``: that is its
    capacity (a table with no GSI). With GSIs it is the table's own figure, a start: a write
    spends index units too, for each index the item has the keys of, which a description cannot
    tell, so the rate only starts there and probes on (or is cut) as when it was found."""

    units: float
    exact: bool = True
    # When it was read (wall time; 0: not known): a worker started long after the job read it
    # (a Spark task, a process) looks again at its first call. Not part of the figure.
    read_at: float = field(default=0.0, compare=False)

    def share(self, fraction: float) -> "Declared":
        return Declared(self.units * fraction, self.exact, self.read_at)


# DynamoDB's own endpoints, which enforce what a table declares: dynamodb[-fips].REGION.amazonaws.com
# (.com.cn, .api.aws for dual stack, the ISO partitions), an interface VPC endpoint
# (vpce-....dynamodb.REGION.vpce.amazonaws.com) and an account-based one (ACCOUNT.ddb.REGION...).
# DynamoDB Local and moto report whatever a table was created with (5 WCU, say) and never
# throttle: a job that started at that rate there would crawl. Neither does any other host, on
# AWS or not (Local on EC2, behind a load balancer, LocalStack, a compatible database): there
# the capacity is left to the table's push-back.
DYNAMODB_HOST = re.compile(r"(?:[a-z0-9-]+\.)?(?:dynamodb(?:-fips)?|ddb)\.[a-z0-9-]+\.(?:vpce\.)?"
                           r"(?:amazonaws\.com(?:\.cn)?|api\.aws|c2s\.ic\.gov|sc2s\.sgov\.gov)")


def is_dynamodb_host(endpoint: Optional[str]) -> bool:
    """Whether ``endpoint`` is DynamoDB's own (see ``DYNAMODB_HOST``)."""
    host = urlsplit(endpoint).hostname if endpoint else None
    return host is not None and DYNAMODB_HOST.fullmatch(host.lower().rstrip(".")) is not None


# The fault proxy's capacity model (testing/capacity.py) answers DescribeTable with this header:
# the units it enforces, as a provisioned table's WriteCapacityUnits on DynamoDB. The client puts
# it in the description under CAPACITY_MODEL_MARK (never from DynamoDB's own endpoints).
CAPACITY_MODEL_HEADER = "x-ddbmigrate-capacity-model"
CAPACITY_MODEL_MARK = "DdbmigrateCapacityModel"


def declared_write_capacity(desc: Dict[str, Any], endpoint: Optional[str]) -> Optional[Declared]:
    """Write units per second the table enforces by its own description, or None: a provisioned
    table's ``WriteCapacityUnits``, an on-demand table's ``MaxWriteRequestUnits`` (its
    ``WarmThroughput`` is a floor, not a limit). Exact only for a table with no GSI (see
    :class:`Declared`); with GSIs it is the table's own figure, where the rate starts: an
    index's is spent only by the items that have its keys (a sparse index of 5 WCU would have
    held a table of 1,000 at 5 units/s), and an index short of capacity pushes back like any
    table. None on an endpoint that does not enforce it (see ``DYNAMODB_HOST``) or with
    nothing declared."""
    if not desc:
        return None
    model = desc.get(CAPACITY_MODEL_MARK)
    if isinstance(model, dict):
        v = model.get("WriteCapacityUnits")
    elif not is_dynamodb_host(endpoint):
        return None
    elif (desc.get("BillingModeSummary") or {}).get("BillingMode") == "PAY_PER_REQUEST":
        v = (desc.get("OnDemandThroughput") or {}).get("MaxWriteRequestUnits")  # -1 or none: no maximum
    else:
        v = (desc.get("ProvisionedThroughput") or {}).get("WriteCapacityUnits")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return Declared(float(v), exact=not desc.get("GlobalSecondaryIndexes"), read_at=time.time())
    return None


def redescriber(client: Any, table: str) -> Callable[[], Optional[Declared]]:
    """What ``table`` declares now, read through ``client`` (a DynamoClient): for a limiter to
    follow a capacity changed under a running job (see ``AdaptiveLimiter._maybe_redescribe``)."""
    def look() -> Optional[Declared]:
        return declared_write_capacity(client.describe_table(table), client.endpoint)
    return look


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


def page_limit(read_rate: Optional[float], write_rate: Optional[float] = None, readers: int = 1) -> Optional[int]:
    """Scan page size (items) under a rate limit. Under a read limit, small pages keep each
    request's cost near the bucket's size. Under a write limit, a page is the unit a job settles
    and checkpoints: a 1 MB page written at 20 units/s showed no progress for minutes (and a
    kill -9 lost all of it). The ``readers`` pages read at once are written side by side (the
    writers take their batches in turn), so each settles only when all of them are nearly
    written: together they hold about two seconds of writes (of items of 1 KB or less), and
    progress and the ETA trail the writes by that much, not by a page per reader."""
    limits = [r * 4 for r in (read_rate,) if r] + [w * 2 / max(1, readers) for w in (write_rate,) if w]
    if not limits:
        return None
    return int(max(10, min(1000, min(limits))))
