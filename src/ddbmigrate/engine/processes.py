"""The processes engine: a job's units spread over N worker processes, one driver in the parent.

Why: one process moves items at a few tens of microseconds of CPU each, which one core turns
into roughly 30-40k items/s; past that the GIL, not DynamoDB, is the limit. Each worker runs
the threads engine's pipeline over every N-th unit; what the driver owns stays in the parent:

    parent: Driver (checkpoint, dead-letter file, counters, progress, report)
      ▲  one queue, in order per worker:  dead letters ... commit ... live ... end
      │  stop / abort requests: two shared events (signals go to the parent only)
    worker i: Pipeline(units[i::N]) with a driver stand-in that forwards to the parent

Invariants:
- The checkpoint format is the threads engine's (per-unit positions + done), so a job can be
  resumed with a different --processes value (or none).
- A worker's dead letters reach the parent numbered, and each commit says how many it covers:
  the parent writes (and fsyncs) exactly those before it saves that commit, the same invariant
  as in one process. (All workers share one queue; the messages of one worker keep their order.)
- ``--max-errors`` counts over the whole job: every worker draws from one shared counter.
- Rate limits are divided evenly between the workers.
- Workers die with the parent (:func:`die_with_parent`), so a resume never runs beside orphans.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as _queue
import signal
import sys
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
        try:
            run = _Run(driver, job, self.processes)
            error: Optional[BaseException] = None
            try:
                with driver.running():
                    run.start()
                    run.loop()
            except BaseException as e:  # the parent's own failure: stop the workers, report it
                error = e
            finally:
                run.stop_workers()
            run.settle_dead_letters()
            if driver.interrupted and not run.errors and error is None:
                run.errors.append(KeyboardInterrupt())
        except BaseException:
            driver.release()  # (finish does it otherwise): the next run of the job is not refused
            raise
        return driver.finish(first_error([error, *run.errors]))


class _Run:
    """The parent's side of one job on worker processes: start them, read what they report."""

    def __init__(self, driver: Driver, job: Job, processes: int) -> None:
        self.driver = driver
        self.job = job
        todo = driver.todo()
        self.groups = split_units(todo, processes) if todo else []
        self.ctx = mp.get_context("spawn")
        self.out: Any = self.ctx.Queue(maxsize=10_000)
        self.budget: Any = self.ctx.Value("q", driver.dead.count)
        # Stopping is asked through these (not signals): a SIGTERM sent to the whole process
        # group must drain the workers once, not abort them by arriving twice.
        self.stop_ev: Any = self.ctx.Event()
        self.abort_ev: Any = self.ctx.Event()
        self.children: List[Any] = []
        self.errors: List[Optional[BaseException]] = []
        self.ended: Set[int] = set()
        # Dead-letter lines received per worker, not yet covered by one of its commits.
        self.pending: Dict[int, List[Tuple[bytes, str]]] = {wid: [] for wid in range(len(self.groups))}
        self.flushed = {wid: 0 for wid in range(len(self.groups))}
        self.unsettled: List[Tuple[bytes, str]] = []  # a stopped worker's last chunks (see Pipeline)
        self.exited_at: Dict[int, float] = {}
        driver.report.extra["processes"] = processes
        driver.on_stop(self.stop_ev.set, self.abort_ev.set)

    def start(self) -> None:
        driver = self.driver
        share = 1.0 / max(1, len(self.groups))
        for wid, units in enumerate(self.groups):
            positions = {u: driver.positions[u] for u in units if u in driver.positions}
            p = self.ctx.Process(target=_child_main, name=f"ddbmigrate-worker-{wid}", daemon=True,
                                 args=(self.job, driver.sink, wid, units, positions, share, self.out, self.budget,
                                       self.stop_ev, self.abort_ev, os.getpid()))
            p.start()
            self.children.append(p)
            driver.worker(wid)

    def loop(self) -> None:
        driver = self.driver
        last_save = last_check = 0.0
        while len(self.ended) < len(self.children):
            if time.monotonic() - last_check >= 1.0:
                self._check_alive()
                last_check = time.monotonic()
            try:
                msg = self.out.get(timeout=0.5)
            except _queue.Empty:
                continue
            kind, wid = msg[0], msg[1]
            if kind == "dead":
                self.pending[wid].extend(msg[2])
            elif kind == "unsettled":
                self.unsettled.extend(msg[2])
            elif kind == "commit":
                self._flush(wid, msg[6])
                driver.commit(wid, msg[2], msg[3], msg[4], msg[5], save=False)
                if time.monotonic() - last_save >= SAVE_EVERY:
                    driver.save()
                    last_save = time.monotonic()
            elif kind == "live":
                driver.live(wid, msg[2], msg[3], msg[4], msg[5])
            elif kind == "end":
                self._end(wid, msg[2], msg[3])

    def _end(self, wid: int, result: Dict[str, Any], err: Optional[Dict[str, Any]]) -> None:
        driver = self.driver
        self._flush(wid, result["dead_mark"])
        view = driver.worker(wid)
        view.committed = result["counters"]
        view.stopped = result.get("stopped")
        view.finished = True
        driver.samples.extend(result["samples"])
        driver.unit_seconds.update(result["unit_seconds"])
        driver.failures.extend(result["failures"])
        self.ended.add(wid)
        if err is not None:
            e = from_wire(err)
            self.errors.append(e)
            if not isinstance(e, InterruptedError_):
                self._stop_others(wid, "failed")

    def _check_alive(self) -> None:
        """A worker killed without a word (OOM, kill -9) stops the job; what it committed stays valid.
        One that exited normally has its last messages in the queue: it gets a few seconds."""
        now = time.monotonic()
        for wid, c in enumerate(self.children):
            if wid in self.ended or c.is_alive():
                continue
            first = self.exited_at.setdefault(wid, now)
            if c.exitcode == 0 and now - first < 10.0:
                continue
            self.ended.add(wid)
            self.driver.worker(wid).finished = True
            self.errors.append(FatalError(f"worker process {wid} died (exit code {c.exitcode})"))
            self._stop_others(wid, "died")

    def _stop_others(self, wid: int, what: str) -> None:
        """One worker's failure stops the others (they drain, checkpoint kept) — as a failure: the
        driver's interrupt() would mark the job stopped by a signal, and its progress say
        "signal again to stop at once" when nobody sent one (a Ctrl-C later still is one)."""
        self.stop_ev.set()
        status = {"status": f"failing: worker process {wid} {what}; the other workers stop (checkpoint kept)"}
        self.driver.worker(wid).extra_fn = lambda: status

    def _flush(self, wid: int, upto: int) -> None:
        n = upto - self.flushed[wid]
        if n > 0:
            self.driver.dead.commit(self.pending[wid][:n])
            del self.pending[wid][:n]
            self.flushed[wid] = upto

    def stop_workers(self) -> None:
        if any(c.is_alive() for c in self.children) and len(self.ended) < len(self.children):
            self.stop_ev.set()
        for c in self.children:
            c.join(timeout=60)
            if c.is_alive():
                c.terminate()  # stuck past the drain: its uncommitted work is read again on resume
                c.join(timeout=10)

    def settle_dead_letters(self) -> None:
        # The last commits are saved before any unsettled line is appended after them.
        self.driver.save()
        for lines in list(self.pending.values()) + [self.unsettled]:
            if lines:
                self.driver.dead.commit(lines, settled=False)


class _RemoteDriver:
    """The parent's driver as one worker sees it: everything it reports is forwarded."""

    def __init__(self, sink: Any, wid: int, units: Sequence[str], positions: Mapping[str, Any], out: Any,
                 stop_ev: Any, abort_ev: Any) -> None:
        self.stop_ev = stop_ev
        self.abort_ev = abort_ev
        self._applied = 0  # 1: interrupted, 2: aborted
        self.sink = sink
        self.wid = wid
        self.done: List[str] = []
        self.positions = dict(positions)
        self.out = out
        self.samples: List[Any] = []
        self.unit_seconds: Dict[str, float] = {}
        self.failures: List[Any] = []
        self.cut_short = False  # (only the threads engine's driver acts on it)
        self._view = WorkerView()
        self._stops: List[Any] = []
        self.dead_mark = 0

    def worker(self, wid: int) -> WorkerView:
        return self._view

    def on_stop(self, interrupt: Any, abort: Any) -> None:
        self._stops.append((interrupt, abort))
        # A stop asked before the pipeline existed applies to it at once.
        if self._applied >= 1:
            interrupt()
        if self._applied >= 2:
            abort()

    def apply_stops(self) -> None:
        """The parent's stop requests, as this worker's pipeline understands them."""
        if self._applied < 1 and self.stop_ev.is_set():
            self._applied = 1
            for interrupt, _ in self._stops:
                interrupt()
        if self._applied < 2 and self.abort_ev.is_set():
            self._applied = 2
            for _, abort in self._stops:
                abort()

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


def die_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, however it dies (kill -9 included).

    A worker that outlives its parent keeps writing with nobody to checkpoint it, and a resume
    would run beside it. Linux ends it with the parent (PR_SET_PDEATHSIG); everywhere, a
    watcher thread polls the parent's pid as well (and covers the moment before prctl ran).
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(EXIT_ORPHANED)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# A worker's exit status when its parent died: nothing it did after its last commit counts.
EXIT_ORPHANED = 70


def _child_main(job: Job, sink: Any, wid: int, units: List[str], positions: Dict[str, Any], share: float,
                out: Any, budget: Any, stop_ev: Any, abort_ev: Any, parent: int) -> None:
    """A worker process: the threads engine's pipeline over ``units``, reporting to the parent."""
    die_with_parent(parent)
    # The parent decides when to stop (through stop_ev / abort_ev): signals to the whole process
    # group (Ctrl-C, a service manager's SIGTERM) reach the parent, which asks the workers once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from ..state.crashpoints import crash_point
    from .threads import run_units

    driver = _RemoteDriver(sink, wid, units, positions, out, stop_ev, abort_ev)
    res = Resources(share=share, units=units)
    err: Optional[Dict[str, Any]] = None
    stop = threading.Event()
    view = driver.worker(wid)

    def live() -> None:
        while not stop.wait(0.5):
            driver.apply_stops()
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
                          # Stopped: what it wrote beyond its last commit is in the target too.
                          "stopped": (view.live or view.committed) if err else None,
                          "samples": driver.samples, "unit_seconds": driver.unit_seconds,
                          "failures": driver.failures}, err))
    out.close()
    out.join_thread()


def _limits(res: Resources) -> Dict[str, Dict[str, Any]]:
    return {lim.name or str(i): d for i, lim in enumerate(res.limiters) if (d := lim.describe()) is not None}

