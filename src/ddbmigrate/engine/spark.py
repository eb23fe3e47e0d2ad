"""The Spark engine: a job's units (scan segments, files) run as Spark tasks, one unit per task.

    driver (this process)                                executors (one task per unit)
    ---------------------                                -----------------------------
    Driver(job): checkpoint, prepared sink, report
    todo = units not done in the checkpoint
    broadcast(pickled UnitTask: job, prepared sink)
    for each unit still to do (at most N at once):       mapPartitions(run_unit):
        runJob(RDD, [unit])  ─────── unit index ───────▶   Resources(share=1/N, units=[unit])
                                                           source/sink/processing built from the specs
                                                           Pipeline(unit) -> sink.commit(True)
        driver.commit(unit done, counters, sink state) ◀── SegmentResult: committed counters, retries,
        driver.live(retries, limits)                        limits, samples, sink state, errors (wire)
                                                           dead letters -> <file>.segment-NNNN.jsonl
    driver.finish(error): final checkpoint, sink.finalize (export manifests), report

Everything but scheduling is the shared :class:`~ddbmigrate.engine.run.Driver`'s, so a job
resumes, reports, counts and stops as on the threads and processes engines. Each task runs the
threads engine's pipeline over its one unit, with the source, processing and sink its specs
build: validation, batching, retries and dead letters behave identically.

Invariants:
1. A unit is recorded done in the checkpoint only after its task returned, i.e. after every
   write of that unit was acknowledged (and, for files, every data file finished). An
   interrupted or failed run re-runs unfinished units from their start.
2. Writes are full images (put / delete), so a unit run twice — a Spark task retry, a
   speculative task, a resumed run — leaves the target as one run would. Counts come from the
   attempt that returned, and each attempt starts its unit's dead-letter file afresh, so the
   report adds up (``Report.balanced``) and lists every dead letter once.
3. Rate limits are per job: each of the N concurrently running tasks gets 1/N of them
   (``Resources.share``), and the driver never runs more than N tasks at once.
4. ``--max-errors`` counts over the whole job: every task asks the driver's budget before it
   dead-letters a record (spark_tasks.ErrorBudget), so tasks side by side never pass the limit
   together; a task that cannot reach the driver counts from the job's count when scheduled.
5. Errors cross the boundary as ``errors.to_wire`` values (same class, same exit code on the
   driver); anything else a task raises propagates, so Spark retries the task.
6. The core never imports pyspark: it is imported lazily, when a job needs a SparkContext
   (``spark_tasks.spark_context``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pickle
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

import orjson

from ..core.specs import Resources
from ..errors import DdbMigrateError, FatalError, UsageError, from_wire, to_wire
from ..reporting.report import Report, merge_stats
from .job import Job
from .pipeline import Pipeline
from .run import Driver, Observer, first_error, max_errors_error
from .spark_tasks import (  # re-exported: Spark verify and the tests import them from here
    FAIL_ONCE_ENV,
    ErrorBudget,
    SegmentDeadLetters,
    SparkSettings,
    _digits,
    check_s3_key_url,
    dead_letter_pattern,
    divide_rate,
    driver_s3_settings,
    fault_hook,
    host_name,
    java_error_line,
    lease_context,
    load_task_transform,
    parse_fail_once,
    segment_file,
    spark_context,
    task_slots,
    upload,
)

# Seconds between checkpoint saves while units finish (and always once at the end).
CHECKPOINT_EVERY = 1.0


@dataclass
class SegmentResult:
    """What one task reports back about its unit (picklable). ``segment`` is the unit's index."""

    segment: int
    unit: str = ""
    attempt: int = 0
    done: bool = False
    counters: Dict[str, int] = field(default_factory=dict)
    live: Dict[str, int] = field(default_factory=dict)  # writes not yet acknowledged too
    stats: Dict[str, Any] = field(default_factory=dict)
    limits: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    dead_letter_reasons: Dict[str, int] = field(default_factory=dict)
    dead_letter_file: Optional[str] = None
    samples: List[Tuple[Any, Any]] = field(default_factory=list)
    failures: List[Any] = field(default_factory=list)
    sink_state: Optional[Dict[str, Any]] = None
    elapsed: float = 0.0
    error: Optional[Dict[str, Any]] = None  # errors.to_wire of a DdbMigrateError
    host: str = ""


# --------------------------------------------------------------------------- executor side


@dataclass(frozen=True)
class UnitTask:
    """Everything a task needs, as plain picklable values: the job, its sink the driver's prepared one."""

    job: Job  # job.sink is the Driver's prepared spec (an export's ExportId fixed)
    units: Tuple[str, ...]  # every unit of the job; a task gets an index into it
    positions: Mapping[str, Any]  # where unfinished units resume (a Spark checkpoint has none)
    share: float  # of the job's rate limits: 1 / concurrent tasks
    dead_letter: Optional[str] = None
    digits: int = 4
    fault: Optional[Tuple[int, int, str]] = None
    output_s3: Any = None  # storage.S3Settings for an s3:// dead-letter path
    progress_to: Optional[Tuple[str, int]] = None  # the driver's UDP address for progress inside units
    budget_at: Optional[Tuple[str, int]] = None  # the driver's --max-errors budget (spark_tasks.ErrorBudget)


def run_unit(task: UnitTask, index: int, attempt: int = 0, already_dead: int = 0) -> SegmentResult:
    """Run one unit through the threads engine's pipeline; runs on an executor.

    Errors of the ddbmigrate taxonomy are returned (Spark retrying them would not help: our
    client already retried); anything else propagates so Spark retries the task.
    """
    t0 = time.monotonic()
    job = task.job
    unit = task.units[index]
    res = SegmentResult(segment=index, unit=unit, attempt=attempt, host=host_name())
    dl = SegmentDeadLetters(task.dead_letter, index, task.digits, task.output_s3, already=already_dead,
                            budget_at=task.budget_at, attempt=attempt)
    resources = Resources(share=task.share, units=[unit])
    src: Any = None
    sink: Any = None
    pipeline: Optional[Pipeline] = None
    try:
        src = job.source.build(resources)
        sink = job.sink.build(resources)
        sink.open()
        pos = task.positions.get(unit)
        pipeline = Pipeline(
            src, sink, job.processing.build(max_errors=job.options.max_errors), readers=1, writers=job.writers,
            queue_batches=job.options.queue_batches, dead_letters=dl.dead,
            positions={unit: pos} if pos is not None else None, crash_hook=fault_hook(task.fault, index),
            drain_timeout=job.options.drain_timeout,
        )
        with _reporting_progress(task.progress_to, index, attempt, pipeline):
            pipeline.run()
        # No checkpoint inside a task: the sink's one commit, final, as a pipeline's last save.
        with sink.commit(True) as state:
            res.sink_state = dict(state) if state is not None else None
        res.done = unit in pipeline.unit_positions()[1]
        res.samples = list(pipeline.samples)
        res.failures = list(src.failures())
    except DdbMigrateError as e:
        res.error = to_wire(e)
    except BaseException:
        dl.discard()
        raise  # not ours to classify: Spark retries the task
    finally:
        if pipeline is not None:
            res.counters = pipeline.counters.snapshot(committed=True)
            res.live = pipeline.counters.snapshot()
        res.stats = merge_stats(*resources.stats())
        res.limits = {lim.name or str(i): d for i, lim in enumerate(resources.limiters)
                      if (d := lim.describe()) is not None}
        res.dead_letter_reasons = dict(dl.dead.by_reason)
        try:
            if sink is not None:
                sink.close()
            if src is not None:
                src.close()
        finally:
            resources.close()
    res.dead_letter_file = dl.publish()
    res.elapsed = round(time.monotonic() - t0, 3)
    return res


@contextlib.contextmanager
def _reporting_progress(to: Optional[Tuple[str, int]], index: int, attempt: int,
                        pipeline: Pipeline) -> Iterator[None]:
    """Every half second, the unit's counters to the driver, over UDP: best effort (a lost datagram
    only delays the display; the task's result carries the counts that count)."""
    if to is None:
        yield
        return
    stop = threading.Event()

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.wait(0.5):
                try:
                    msg = {"i": index, "a": attempt, "live": pipeline.counters.snapshot(),
                           "settled": pipeline.counters.snapshot(committed=True)}
                    sock.sendto(orjson.dumps(msg), to)
                except OSError:
                    pass

    t = threading.Thread(target=send, name="unit-progress", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


class _ProgressListener:
    """The driver's end of :func:`_reporting_progress`: counters of units still running."""

    def __init__(self, driver: Driver, host: str) -> None:
        self.driver = driver
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("", 0))
        self.sock.settimeout(0.3)
        self.address = (host, int(self.sock.getsockname()[1]))
        self.attempts: Dict[int, int] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._listen, name="spark-progress", daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.done.is_set():
            try:
                data = self.sock.recv(65536)
                msg = orjson.loads(data)
                i, attempt = int(msg["i"]), int(msg["a"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if attempt < self.attempts.get(i, 0) or self.driver.worker(i).finished:
                continue  # a late datagram of an earlier attempt, or of a unit already counted
            self.attempts[i] = attempt
            self.driver.live(i, msg.get("live") or {}, {}, {}, settled=msg.get("settled") or {})

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.sock.close()


def _task_main(payload: Tuple[Any, int], index: int, attempt: int) -> SegmentResult:
    broadcast, already_dead = payload
    return run_unit(pickle.loads(broadcast.value), index, attempt, already_dead)


def _partition(worker: Callable[[Any, int, int], SegmentResult], task: Any,
               segments: Iterable[int]) -> Iterator[SegmentResult]:
    """mapPartitions body: one partition holds one unit index."""
    attempt = 0
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            attempt = int(ctx.attemptNumber())
    except ImportError:  # called directly (unit tests)
        pass
    for seg in segments:
        yield worker(task, int(seg), attempt)


def _where(index: int, unit: str) -> str:
    # Spark runs scans (units are segment numbers) and file imports (units are files).
    return f"segment {index}" if unit.isdigit() else f"file {unit}"


@dataclass(frozen=True)
class Spark01State:
    """Wraps a job's sink spec to read what a 0.1 Spark checkpoint saved as its extra state.

    0.1 kept job-level state under ``extra["job_state"]`` (an export's ExportId, start time) and
    each finished segment's outputs under ``extra["segments"][n]["extra"]`` (its data files);
    today a sink's merged state is the extra itself. ``prepare`` returns the wrapped spec, prepared.
    """

    spec: Any

    def prepare(self, saved: Optional[Mapping[str, Any]]) -> Any:
        if saved and "job_state" in saved:
            state = dict(saved.get("job_state") or {})
            if state.get("export_id"):
                segs = saved.get("segments") or {}
                outs = [dict(segs[s].get("extra") or {}) for s in sorted(segs, key=int)]
                state["files"] = [f for o in outs for f in o.get("files") or []]
                state["bytes"] = sum(int(o.get("bytes") or 0) for o in outs)
            saved = state
        return self.spec.prepare(saved)

    def build(self, res: Resources) -> Any:
        return self.spec.build(res)

    def merge(self, states: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        return dict(self.spec.merge(states))

    def finalize(self, state: Mapping[str, Any], report: Report) -> None:
        self.spec.finalize(state, report)


class SparkEngine:
    """Runs a :class:`Job` with one Spark task per unit; see the module docstring."""

    name = "spark"

    def __init__(self, settings: Optional[SparkSettings] = None) -> None:
        self.settings = settings or SparkSettings()

    def run(self, job: Job, *, cancel: Optional[threading.Event] = None,
            observer: Optional[Observer] = None) -> Report:
        # 0.1 Spark checkpoints had engine="spark" in their identity: they resume as they are.
        job = dataclasses.replace(job.with_identity(engine="spark"), sink=Spark01State(job.sink))
        driver = Driver(job, self.name, cancel=cancel, observer=observer)
        try:
            return _SparkRun(driver, self.settings).run()
        finally:
            driver.release()  # (finish does it; a failure before finish must not keep the job's lock)


class _SparkRun:
    """One run of one job on Spark: schedules units, hands what they return to the driver."""

    def __init__(self, driver: Driver, settings: SparkSettings) -> None:
        self.driver = driver
        self.job = driver.job
        self.settings = settings
        self.units = list(driver.units)
        self.todo = driver.todo()
        self.resumed = len(self.units) - len(self.todo)
        self.finished = self.resumed
        self.errors: List[BaseException] = []
        self.late: List[SegmentResult] = []  # units that did not finish: in the report, not the checkpoint
        self.dead_files: List[str] = []
        self.stop = threading.Event()
        self.slot_limits: Dict[int, Dict[str, Dict[str, Any]]] = {}
        self.sc: Any = None
        self.slots = 1
        self._last_save = 0.0
        self.over_limit = False
        self.dead_base: Optional[str] = None

    def run(self) -> Report:
        driver = self.driver
        # Each task writes its unit's own file beside the driver's dead-letter path (--dead-letter
        # or the default next to the checkpoint): dead.jsonl -> dead.segment-0007.jsonl.
        base = driver.dead.path
        self.dead_base = base if base is None or base.startswith("s3://") else os.path.abspath(base)
        driver.report.dead_letter_path = dead_letter_pattern(self.dead_base, len(self.units))
        # Progress: "segments k/N" (or "files k/N") beside the counters.
        what = "segments" if all(u.isdigit() for u in self.units) else "files"
        driver.worker(-1).extra_fn = lambda: {"status": f"{what} {self.finished}/{len(self.units)}"}
        driver.on_stop(self.stop.set, self.stop.set)
        release: Callable[[], None] = lambda: None
        try:
            with driver.running():
                if self.todo and not driver.interrupted:
                    self.sc, release = lease_context(self.settings)
                    self.slots = task_slots(self.sc, len(self.todo), self.settings)
                    self._schedule()
        except BaseException as e:  # a driver-side failure (no pyspark, a task we cannot ship)
            self.errors.append(e)
        finally:
            release()
        driver.save()  # whatever finished, however the run ended
        for r in self.late:  # counted in this run's report, never in the checkpoint (invariant 1)
            driver.commit(r.segment, {}, [], r.counters, None, save=False)
        if driver.interrupted and not self.errors:
            self.errors.append(KeyboardInterrupt())
        return driver.finish(first_error(self.errors), extra={
            "engine": "spark",
            "spark_master": getattr(self.sc, "master", None),
            "spark_tasks": self.slots,
            "segments_resumed": self.resumed or None,
            "dead_letter_files": sorted(self.dead_files) or None,
        })

    def _task(self, progress_to: Optional[Tuple[str, int]], budget_at: Optional[Tuple[str, int]]) -> UnitTask:
        driver = self.driver
        return UnitTask(
            progress_to=progress_to, budget_at=budget_at,
            job=dataclasses.replace(self.job, sink=driver.sink), units=tuple(self.units),
            positions=dict(driver.positions), share=1.0 / self.slots, dead_letter=self.dead_base,
            digits=_digits(len(self.units)), fault=parse_fail_once(os.environ.get(FAIL_ONCE_ENV)),
            output_s3=_output_s3(driver.sink) if self.dead_base and self.dead_base.startswith("s3://") else None,
        )

    def _schedule(self) -> None:
        sc, driver = self.sc, self.driver
        # Progress inside running units: tasks send their counters to the address executors
        # reach the driver at (spark.driver.host).
        listener: Optional[_ProgressListener] = None
        try:
            listener = _ProgressListener(driver, str(sc.getConf().get("spark.driver.host") or socket.gethostname()))
        except OSError:
            listener = None  # no progress inside units, only per unit
        host = str(sc.getConf().get("spark.driver.host") or socket.gethostname())
        limit = self.job.options.max_errors
        budget: Optional[ErrorBudget] = None
        if limit is not None:
            try:
                budget = ErrorBudget(limit, driver.dead.count, host)
            except OSError:
                budget = None  # tasks count from the job's count when they were scheduled
        try:
            payload = pickle.dumps(self._task(listener.address if listener else None,
                                              budget.address if budget else None), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            if listener is not None:
                listener.close()
            if budget is not None:
                budget.close()
            raise UsageError(f"this job cannot be sent to Spark tasks: {e}") from None
        broadcast = sc.broadcast(payload)  # once, not with every task
        rdd = sc.parallelize(range(len(self.units)), len(self.units))
        group = f"ddbmigrate-{self.job.kind}-{uuid.uuid4().hex[:8]}"
        cancelled = threading.Event()
        index = {u: i for i, u in enumerate(self.units)}

        def one(i: int, already_dead: int) -> Optional[SegmentResult]:
            if self.stop.is_set():
                return None
            # Job groups are thread-local properties: set in each submitting thread so a stop
            # cancels every running task at once.
            sc.setJobGroup(group, f"ddbmigrate {self.job.kind} {_where(i, self.units[i])}", interruptOnCancel=True)
            func = functools.partial(_partition, _task_main, (broadcast, already_dead))
            try:
                out = sc.runJob(rdd, func, [i])
            except Exception as e:
                if cancelled.is_set():
                    return None  # a stop cancelled the job group: not a failure of this unit
                raise FatalError(f"{_where(i, self.units[i])}: Spark task failed (after Spark's task retries): "
                                 f"{java_error_line(e)}") from None
            return out[0] if out else None

        pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="spark-unit")
        pending: Dict[Future[Optional[SegmentResult]], int] = {}  # future -> slot
        free = list(range(self.slots))
        queue = [index[u] for u in self.todo]
        try:
            while queue or pending:
                while queue and free and not self.stop.is_set():
                    pending[pool.submit(one, queue.pop(0), driver.dead.count)] = free.pop()
                if self.stop.is_set():
                    queue.clear()
                    if driver.interrupted and not cancelled.is_set():
                        # A stop cancels running tasks (their units run again on --resume);
                        # after a failure they finish, and are checkpointed.
                        cancelled.set()
                        _cancel(sc, group)
                if not pending:
                    break
                try:
                    done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:  # not the main thread's handler (a plan's worker thread)
                    driver.interrupt()
                    continue
                for fut in done:
                    slot = pending.pop(fut)
                    free.append(slot)
                    try:
                        res = fut.result()
                    except DdbMigrateError as e:
                        self._fail(e)
                        continue
                    if res is not None:
                        self._record(res, slot)
        finally:
            if pending and not cancelled.is_set():
                cancelled.set()
                _cancel(sc, group)
            pool.shutdown(wait=True, cancel_futures=True)
            if listener is not None:
                listener.close()
            if budget is not None:
                budget.close()
            try:
                broadcast.destroy()
            except Exception:
                pass

    def _fail(self, e: BaseException) -> None:
        self.errors.append(e)
        self.stop.set()  # one failure stops new units; running ones finish

    def _record(self, res: SegmentResult, slot: int) -> None:
        """A task's result into the driver: see invariant 1 for when a unit counts as done."""
        driver, wid = self.driver, res.segment
        stats = dict(res.stats)
        if res.attempt:
            stats["retries"] = dict(stats.get("retries", {}))
            stats["retries"]["spark_task"] = stats["retries"].get("spark_task", 0) + res.attempt
        view = driver.worker(wid)
        view.finished = True
        driver.live(wid, res.counters, stats, {})
        self._slot_limits(slot, res.limits)
        for k, v in res.dead_letter_reasons.items():
            driver.dead.by_reason[k] = driver.dead.by_reason.get(k, 0) + v
            driver.dead.count += v
        if res.dead_letter_file:
            self.dead_files.append(res.dead_letter_file)
        driver.samples.extend(res.samples)
        driver.failures.extend(res.failures)
        if res.error is not None or not res.done:
            # Its unit is done again on a resume; what it wrote is in the target meanwhile.
            view.stopped = dict(res.live or res.counters)
            self.late.append(res)
            if res.error is not None:
                self._fail(from_wire(res.error, f"{_where(res.segment, res.unit)}: "))
            elif not res.failures:  # else: a unit its source could not read to its end (a bad file)
                self._fail(FatalError(f"{_where(res.segment, res.unit)}: the task ended before its unit did"))
        else:
            driver.commit(wid, {}, [res.unit], res.counters, res.sink_state, save=False)
            driver.unit_seconds[res.unit] = res.elapsed
            self.finished += 1
            if time.monotonic() - self._last_save >= CHECKPOINT_EVERY:
                driver.save()
                self._last_save = time.monotonic()
        limit = self.job.options.max_errors
        if limit is not None and driver.dead.count > limit and not self.over_limit:
            self.over_limit = True  # once, though a task that crossed it may have said so too
            if not self.errors:
                self._fail(max_errors_error(limit))

    def _slot_limits(self, slot: int, limits: Mapping[str, Mapping[str, Any]]) -> None:
        """Limits are summed over the tasks running at once (their shares add up to the job's
        limit), so each slot reports its latest task's, with its throttle events accumulated."""
        mine = self.slot_limits.setdefault(slot, {})
        for name, d in limits.items():
            prev = mine.get(name, {})
            merged = {**d, "throttle_events": int(prev.get("throttle_events", 0)) + int(d.get("throttle_events") or 0)}
            failures = int(prev.get("declared_look_failures") or 0) + int(d.get("declared_look_failures") or 0)
            if failures:
                merged["declared_look_failures"] = failures
            # The newest reading of the table's figure, of this task or an earlier one.
            if float(prev.get("declared_read_at") or 0) > float(d.get("declared_read_at") or 0):
                merged["declared_last"], merged["declared_read_at"] = prev["declared_last"], prev["declared_read_at"]
            mine[name] = merged
        view = self.driver.worker(-2 - slot)
        view.finished = True
        self.driver.live(-2 - slot, {}, {}, mine)


def _output_s3(sink: Any) -> Any:
    """S3 settings for ``--dead-letter s3://...`` uploads from the tasks: an export's own (its
    --s3-endpoint-url), else the target table's region and profile with botocore's S3 endpoint."""
    own = getattr(sink, "s3", None)
    return own if own is not None else driver_s3_settings(getattr(sink, "ref", None))


def _cancel(sc: Any, group: str) -> None:
    try:
        sc.cancelJobGroup(group)
    except Exception:  # a context already stopping
        pass


__all__ = [
    "FAIL_ONCE_ENV",
    "SegmentDeadLetters",
    "SegmentResult",
    "SparkEngine",
    "SparkSettings",
    "UnitTask",
    "check_s3_key_url",
    "dead_letter_pattern",
    "divide_rate",
    "driver_s3_settings",
    "java_error_line",
    "load_task_transform",
    "parse_fail_once",
    "run_unit",
    "segment_file",
    "spark_context",
    "task_slots",
    "upload",
]
