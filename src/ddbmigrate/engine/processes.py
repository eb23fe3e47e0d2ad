"""The processes engine: a job's units spread over N worker processes, one driver in the parent.

Why: one process moves items at a few tens of microseconds of CPU each, which one core turns
into roughly 30-40k items/s; past that the GIL, not DynamoDB, is the limit. Each worker runs
the threads engine's pipeline over every N-th unit; what the driver owns stays in the parent:

    parent: Driver (checkpoint, dead-letter file, counters, progress, report)
      ▲  one queue, in order per worker:  dead letters ... commit ... live ... end
    worker i: Pipeline(units[i::N]) with a driver stand-in that forwards to the parent

Invariants:
- The checkpoint format is the threads engine's (per-unit positions + done), so a job can be
  resumed with a different --processes value (or none).
- A worker's dead letters reach the parent before the commit that counts them (one FIFO queue
  per worker), and the parent fsyncs them before it saves that commit: the same invariant as
  in one process.
- ``--max-errors`` counts over the whole job: every worker draws from one shared counter.
- Rate limits are divided evenly between the workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as _queue
import signal
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from ..core.specs import Resources
from ..errors import FatalError, InterruptedError_, from_wire, to_wire
from ..reporting.report import Report, merge_stats
from .job import Job, split_units
from .run import Driver, Observer, WorkerView, first_error

# Seconds between the parent's checkpoint saves (workers commit every second).
SAVE_EVERY = 1.0


class ProcessesEngine:
    name = "processes"

    def __init__(self, processes: int = 2) -> None:
        self.processes = max(1, processes)

    def run(self, job: Job, *, cancel: Optional[Any] = None, observer: Optional[Observer] = None) -> Report:
        driver = Driver(job, self.name, cancel=cancel, observer=observer)
        todo = driver.todo()
        groups = split_units(todo, self.processes) if todo else []
        ctx = mp.get_context("spawn")
        out: Any = ctx.Queue(maxsize=10_000)
        budget: Any = ctx.Value("q", driver.dead.count)
        children: List[Any] = []
        share = 1.0 / max(1, len(groups))
        for wid, units in enumerate(groups):
            positions = {u: driver.positions[u] for u in units if u in driver.positions}
            p = ctx.Process(target=_child_main, name=f"ddbmigrate-worker-{wid}", daemon=True,
                            args=(job, driver.sink, wid, units, positions, share, out, budget))
            p.start()
            children.append(p)
            driver.worker(wid)
        driver.report.extra["processes"] = self.processes

        def signal_all() -> None:
            for c in children:
                if c.is_alive() and c.pid is not None:
                    try:
                        os.kill(c.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass

        # A worker's first SIGTERM drains; a second one aborts (as Ctrl-C does in one process).
        driver.on_stop(signal_all, signal_all)
        errors: List[Optional[BaseException]] = []
        ended: Set[int] = set()
        # Dead-letter lines received per worker, not yet covered by one of its commits.
        pending: Dict[int, List[Tuple[bytes, str]]] = {wid: [] for wid in range(len(children))}
        flushed = {wid: 0 for wid in range(len(children))}
        unsettled: List[Tuple[bytes, str]] = []  # a stopped worker's last chunks (see Pipeline)

        def flush(wid: int, upto: int) -> None:
            n = upto - flushed[wid]
            if n > 0:
                driver.dead.commit(pending[wid][:n])
                del pending[wid][:n]
                flushed[wid] = upto
        last_save = 0.0
        with driver.running():
            while len(ended) < len(children):
                try:
                    msg = out.get(timeout=0.5)
                except _queue.Empty:
                    for wid, c in enumerate(children):
                        if wid not in ended and not c.is_alive():
                            # Killed without a word (OOM, kill -9): what it committed stays valid.
                            ended.add(wid)
                            driver.worker(wid).finished = True
                            errors.append(FatalError(f"worker process {wid} died (exit code {c.exitcode})"))
                            driver.interrupt()
                    continue
                kind, wid = msg[0], msg[1]
                if kind == "dead":
                    pending[wid].extend(msg[2])
                elif kind == "unsettled":
                    unsettled.extend(msg[2])
                elif kind == "commit":
                    flush(wid, msg[6])
                    driver.commit(wid, msg[2], msg[3], msg[4], msg[5], save=False)
                    if time.monotonic() - last_save >= SAVE_EVERY:
                        driver.save()
                        last_save = time.monotonic()
                elif kind == "live":
                    driver.live(wid, msg[2], msg[3], msg[4], msg[5])
                elif kind == "end":
                    _, _, result, err = msg
                    flush(wid, result["dead_mark"])
                    view = driver.worker(wid)
                    view.committed = result["counters"]
                    view.finished = True
                    driver.samples.extend(result["samples"])
                    driver.unit_seconds.update(result["unit_seconds"])
                    driver.failures.extend(result["failures"])
                    ended.add(wid)
                    if err is not None:
                        e = from_wire(err)
                        errors.append(e)
                        if not isinstance(e, InterruptedError_):
                            driver.interrupt()  # one failure stops the others, checkpoint kept
            for c in children:
                c.join(timeout=60)
        # The last commits are saved before any unsettled line is appended after them.
        driver.save()
        for lines in list(pending.values()) + [unsettled]:
            if lines:
                driver.dead.commit(lines, settled=False)
        if driver.interrupted and not errors:
            errors.append(KeyboardInterrupt())
        return driver.finish(first_error(errors))


class _RemoteDriver:
    """The parent's driver as one worker sees it: everything it reports is forwarded."""

    def __init__(self, sink: Any, wid: int, units: Sequence[str], positions: Mapping[str, Any], out: Any) -> None:
        self.sink = sink
        self.wid = wid
        self.done: List[str] = []
        self.positions = dict(positions)
        self.out = out
        self.samples: List[Any] = []
        self.unit_seconds: Dict[str, float] = {}
        self.failures: List[Any] = []
        self._view = WorkerView()
        self._stops: List[Any] = []
        self.dead_mark = 0

    def worker(self, wid: int) -> WorkerView:
        return self._view

    def on_stop(self, interrupt: Any, abort: Any) -> None:
        self._stops.append((interrupt, abort))

    def commit(self, wid: int, positions: Mapping[str, Any], done: Sequence[str], counters: Mapping[str, int],
               sink_state: Optional[Mapping[str, Any]], save: bool = True, dead_mark: Optional[int] = None) -> None:
        self._view.committed = dict(counters)
        self.dead_mark = dead_mark if dead_mark is not None else self.dead_mark
        self.out.put(("commit", wid, dict(positions), list(done), dict(counters),
                      dict(sink_state) if sink_state is not None else None, self.dead_mark))

    def live(self, wid: int, counters: Mapping[str, int], stats: Mapping[str, Any],
             limits: Mapping[str, Mapping[str, Any]], settled: Optional[Mapping[str, int]] = None) -> None:
        self.out.put(("live", wid, dict(counters), dict(stats), {k: dict(v) for k, v in limits.items()},
                      dict(settled) if settled is not None else None))


class _ForwardedDeadLetters:
    """Dead letters of a worker: counted job-wide here, encoded here, written by the parent.

    Lines travel when their chunk commits, numbered; a commit carries the number it covers
    (``mark``), so the parent writes exactly the lines of the commits it saves.
    """

    def __init__(self, out: Any, wid: int, budget: Any) -> None:
        self.out = out
        self.wid = wid
        self.budget = budget
        self.sent = 0
        self.path = None

    def reserve(self, limit: Optional[int] = None) -> bool:
        with self.budget.get_lock():
            if limit is not None and self.budget.value >= limit:
                return False
            self.budget.value += 1
            return True

    def commit(self, lines: Sequence[Tuple[bytes, str]], settled: bool = True) -> None:
        if not settled:
            self.out.put(("unsettled", self.wid, list(lines)))
            return
        self.sent += len(lines)
        self.out.put(("dead", self.wid, list(lines)))

    def mark(self) -> int:
        return self.sent

    def sync(self) -> None:
        return None  # the parent fsyncs before it saves the commit that covers these lines

    def close(self) -> None:
        return None


def _child_main(job: Job, sink: Any, wid: int, units: List[str], positions: Dict[str, Any], share: float,
                out: Any, budget: Any) -> None:
    """A worker process: the threads engine's pipeline over ``units``, reporting to the parent."""
    from ..state.crashpoints import crash_point
    from .threads import run_units

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sends SIGTERM
    driver = _RemoteDriver(sink, wid, units, positions, out)
    res = Resources(share=share, units=units)
    err: Optional[Dict[str, Any]] = None
    stop = threading.Event()
    signals = [0]

    def on_term(signum: int, frame: Any) -> None:
        signals[0] += 1
        for interrupt, abort in driver._stops:
            (interrupt if signals[0] == 1 else abort)()

    signal.signal(signal.SIGTERM, on_term)
    view = driver.worker(wid)

    def live() -> None:
        while not stop.wait(0.5):
            if view.live_fn is not None and view.settled_fn is not None:
                driver.live(wid, view.live_fn(), merge_stats(*res.stats()), _limits(res), view.settled_fn())

    t = threading.Thread(target=live, name="live", daemon=True)
    t.start()
    try:
        run_units(driver, job, res, crash_point, wid=wid, dead=_ForwardedDeadLetters(out, wid, budget),
                  checkpoint=True)
    except BaseException as e:  # anything escaping must still reach the parent as a clear line
        err = to_wire(e) if not isinstance(e, KeyboardInterrupt) else {"class": "InterruptedError_",
                                                                        "message": "interrupted"}
    finally:
        stop.set()
    driver.live(wid, view.committed, merge_stats(*res.stats()), _limits(res), view.committed)
    out.put(("end", wid, {"dead_mark": driver.dead_mark,
                          "counters": view.committed if err else (view.live or view.committed),
                          "samples": driver.samples, "unit_seconds": driver.unit_seconds,
                          "failures": driver.failures}, err))
    out.close()
    out.join_thread()


def _limits(res: Resources) -> Dict[str, Dict[str, Any]]:
    return {lim.name or str(i): d for i, lim in enumerate(res.limiters) if (d := lim.describe()) is not None}

