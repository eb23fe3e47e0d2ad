"""The same jobs on Spark: one DynamoDB scan segment per Spark task.

    driver                                              executors (one task per segment)
    ------                                              --------------------------------
    DescribeTable -> total segments (or --segments)
    checkpoint: which segments are already done
    RDD = parallelize(range(total), total)
    for each segment still to do (at most N at once):   mapPartitions(run_segment):
        runJob(RDD, [segment])  ───── task config ────▶   own DynamoClient(s) from TableRef
                                                          Pipeline(TableScanSource([segment])
                                                            -> Processing -> TableWriter / sink)
        result ◀──── counters, retries, dead letters ──   dead letters -> <path>.segment-NNNN.jsonl
        mark the segment done in the checkpoint

Each task runs exactly the pipeline the local engine runs (pipeline.Pipeline with the same
source, processing and sink classes), so validation, batching, retries and dead letters behave
identically. Task configuration is a plain picklable dataclass (TableRef, RunOptions, key
schemas, the transform *by reference*), so executors build their own clients and load the
transform themselves; nothing on the executor depends on the driver's objects.

Invariants:
1. A segment is recorded done in the driver's checkpoint only after its task returned, i.e.
   after every write of that segment was acknowledged by DynamoDB. An interrupted or failed run
   re-runs unfinished segments from their start.
2. Writes are full images (put / delete), so a segment run twice — a Spark task retry, a
   speculative task, a resumed run — leaves the target exactly as one run would. Counts come from
   the attempt that succeeded, and each attempt starts its segment's dead-letter file afresh, so
   the report still adds up (report.Report.balanced) and lists every dead letter once.
3. Rate limits are per job: each of the N concurrently running tasks gets 1/N of
   --max-read-units / --max-write-units, and the driver never runs more than N tasks at once.
4. The core never imports pyspark: it is imported here, lazily, inside the driver functions.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from .. import errors as _errors
from ..state.checkpoint import CheckpointState, CheckpointStore, default_path, fingerprint, open_checkpoint
from ..aws.client import DynamoClient
from ..config import RunOptions, TableRef
from ..state.crashpoints import crash_point
from ..state.deadletter import DeadLetters
from ..errors import DdbMigrateError, FatalError, InterruptedError_, UsageError
from ..core.items import KeySchema
from .pipeline import Pipeline, Processing
from ..reporting.progress import Progress
from ..aws.capacity import RateLimiter, TokenBucket
from ..reporting.report import Report, deliver, finish, merge_stats
from .run import install_handler, pool_size
from ..sinks.table_writer import TableWriter
from ..sources.table_scan import TableScanSource, default_segments
from ..core.transform import Transform, TransformContext, load_transform

# Test hook, read on the driver and shipped in the task config (executors may not share the
# driver's environment): "<segment>:<after_batches>:<marker file>" makes the first attempt of
# that segment raise after that many acknowledged batches, so Spark retries the task.
FAIL_ONCE_ENV = "DDBMIGRATE_SPARK_FAIL_ONCE"

# Seconds between checkpoint saves while segments finish (and always once at the end).
CHECKPOINT_EVERY = 1.0


# --------------------------------------------------------------------------- settings & results


@dataclass(frozen=True)
class SparkSettings:
    """Where and how wide to run.

    ``master`` is only used when no SparkContext is active (spark-submit and Glue create one
    first). ``max_tasks`` caps concurrently running segments (default: the context's
    defaultParallelism, i.e. the executor cores); rate limits are divided by it.
    """

    master: Optional[str] = None
    max_tasks: Optional[int] = None
    app_name: str = "ddbmigrate"


@dataclass
class SegmentResult:
    """What one task reports back about its segment (picklable)."""

    segment: int
    attempt: int = 0
    counters: Dict[str, int] = field(default_factory=dict)
    stats: Dict[str, Any] = field(default_factory=dict)
    dead_letter_reasons: Dict[str, int] = field(default_factory=dict)
    dead_letter_file: Optional[str] = None
    samples: List[Dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    error: Optional[Dict[str, Any]] = None  # {"class", "message"} of a DdbMigrateError
    extra: Dict[str, Any] = field(default_factory=dict)  # job-specific (export files, diffs)
    host: str = ""

    def to_state(self) -> Dict[str, Any]:
        """The part kept in the checkpoint for a finished segment."""
        return {"counters": self.counters, "stats": self.stats, "dead_letter_reasons": self.dead_letter_reasons,
                "attempt": self.attempt, "extra": self.extra}


Worker = Callable[[Any, int, int], SegmentResult]


# --------------------------------------------------------------------------- executor side


def _partition(worker: Worker, task: Any, segments: Iterable[int]) -> Iterator[SegmentResult]:
    """mapPartitions body: one partition holds one segment number."""
    attempt = 0
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            attempt = int(ctx.attemptNumber())
    except ImportError:  # called directly (unit tests, the local fallback)
        pass
    for seg in segments:
        yield worker(task, int(seg), attempt)


def segment_file(base: str, segment: int, digits: int = 4, default_ext: str = ".jsonl") -> str:
    """``dead.jsonl`` -> ``dead.segment-0007.jsonl``; a base ending in ``/`` is a folder."""
    name = f"segment-{segment:0{digits}d}"
    if base.endswith("/"):
        return f"{base}{name}{default_ext}"
    root, ext = os.path.splitext(base)
    if not ext or "/" in ext:
        root, ext = base, default_ext
    return f"{root}.{name}{ext}"


def _split_s3(url: str) -> Tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise UsageError(f"{url!r}: expected s3://bucket/key")
    return bucket, key


def driver_s3_settings(ref: Optional[TableRef] = None) -> Any:
    """S3 settings for task outputs (dead letters, differences), captured on the driver.

    Executors may not share the driver's environment, so the S3 endpoint override
    (``AWS_ENDPOINT_URL_S3``) travels in the task config instead of being looked up there.
    """
    from ..storage.stores import S3Settings

    return S3Settings(region=ref.region if ref else None, profile=ref.profile if ref else None,
                      endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3"))


def upload(local: str, url: str, s3: Any) -> None:
    from ..storage.stores import storage_for

    storage_for(url, s3).put_file(local, url)


class SegmentDeadLetters:
    """A segment's dead-letter file: local (truncated per attempt) or S3 (uploaded at the end).

    Starting afresh on every attempt keeps invariant 2: lines of a failed attempt never add to
    the lines of the attempt that counts.
    """

    def __init__(self, base: Optional[str], segment: int, digits: int, s3: Any = None) -> None:
        self.target = segment_file(base, segment, digits) if base else None
        self.s3 = s3
        self._tmpdir: Optional[str] = None
        local: Optional[str] = None
        if self.target is not None and self.target.startswith("s3://"):
            _split_s3(self.target)
            self._tmpdir = tempfile.mkdtemp(prefix="ddbmigrate-dead-")
            local = os.path.join(self._tmpdir, os.path.basename(self.target))
        elif self.target is not None:
            local = self.target
            try:
                os.unlink(local)
            except FileNotFoundError:
                pass
        self.local = local
        self.dead = DeadLetters(local)

    def publish(self) -> Optional[str]:
        """Close the file; upload it when the destination is S3. Returns where it is (or None)."""
        self.dead.close()
        if self.target is None or self.dead.count == 0:
            self._cleanup()
            return None
        try:
            if self._tmpdir is not None and self.local is not None:
                upload(self.local, self.target, self.s3)
        finally:
            self._cleanup()
        return self.target

    def discard(self) -> None:
        """A failed attempt: close, drop the temporary copy (the next attempt starts afresh)."""
        self.dead.close()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def _fault_hook(fault: Optional[Tuple[int, int, str]], segment: int) -> Callable[[str], None]:
    if fault is None or fault[0] != segment:
        return crash_point
    _, after, marker = fault
    lock = threading.Lock()
    acks = [0]

    def hook(point: str) -> None:
        crash_point(point)
        if point != "after_batch_ack":
            return
        with lock:
            acks[0] += 1
            fire = acks[0] == after and not os.path.exists(marker)
            if fire:
                with open(marker, "w") as fh:
                    fh.write(f"segment {segment} failed once on purpose\n")
        if fire:
            raise RuntimeError(f"injected task failure in segment {segment} ({FAIL_ONCE_ENV})")

    return hook


def parse_fail_once(value: Optional[str]) -> Optional[Tuple[int, int, str]]:
    if not value:
        return None
    try:
        seg, after, marker = value.split(":", 2)
        return int(seg), max(1, int(after)), marker
    except ValueError:
        raise UsageError(f"{FAIL_ONCE_ENV}={value!r}: expected <segment>:<after_batches>:<marker file>") from None


def load_task_transform(ref: Optional[str], code_hash: Optional[str]) -> Optional[Transform]:
    """Load the transform on the executor and check it is the code the driver fingerprinted."""
    if not ref:
        return None
    tf = load_transform(ref)
    if code_hash and tf.code_hash != code_hash:
        raise UsageError(
            f"transform {ref} on this executor differs from the driver's copy (sha256 {tf.code_hash[:12]} != "
            f"{code_hash[:12]}): ship the same code to every node (--py-files / --additional-python-modules)"
        )
    return tf


def error_dict(e: DdbMigrateError) -> Dict[str, Any]:
    return {"class": type(e).__name__, "message": e.one_line()}


def rebuild_error(seg: Optional[int], err: Dict[str, Any]) -> DdbMigrateError:
    """The driver-side error for a task's error (same class, so the same exit code)."""
    cls = getattr(_errors, str(err.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, DdbMigrateError)):
        cls = FatalError
    prefix = f"segment {seg}: " if seg is not None else ""
    try:
        return cls(prefix + str(err.get("message", "")))
    except TypeError:
        return FatalError(prefix + str(err.get("message", "")))


def _host() -> str:
    try:
        return os.uname().nodename
    except AttributeError:
        return ""


@dataclass(frozen=True)
class CopyTask:
    """Everything an executor needs to copy one segment (plain, picklable values only)."""

    source: TableRef
    target: TableRef
    options: RunOptions
    total_segments: int
    source_keys: KeySchema
    target_keys: KeySchema
    transform: Optional[str] = None
    transform_hash: Optional[str] = None
    read_rate: Optional[float] = None  # units/s for this task (job limit / concurrent tasks)
    write_rate: Optional[float] = None
    page_limit: Optional[int] = None
    writers: int = 8
    dead_letter: Optional[str] = None
    digits: int = 4
    fault: Optional[Tuple[int, int, str]] = None
    output_s3: Any = None  # storage.S3Settings for an s3:// dead-letter path


def _limiter(rate: Optional[float]) -> RateLimiter:
    return TokenBucket(rate) if rate else RateLimiter()


def _segment_outcome(res: SegmentResult, dl: SegmentDeadLetters, pipeline: Optional[Pipeline],
                     clients: Tuple[Optional[DynamoClient], ...]) -> None:
    """A task's ``finally``, however it ended: committed counters, retry stats and dead-letter
    reasons into ``res``; the clients closed."""
    if pipeline is not None:
        res.counters = pipeline.counters.snapshot(committed=True)
    res.stats = merge_stats(*(c.stats.snapshot() for c in clients if c is not None))
    res.dead_letter_reasons = dict(dl.dead.by_reason)
    for c in clients:
        if c is not None:
            c.close()


def copy_segment(task: CopyTask, seg: int, attempt: int = 0) -> SegmentResult:
    """Copy one scan segment with the local engine's pipeline; runs on an executor.

    Errors of the ddbmigrate taxonomy are returned (Spark retrying them would not help: our
    client already retried); anything else propagates so Spark retries the task.
    """
    from ..jobs.copy import DryRunSink

    t0 = time.monotonic()
    opts = task.options
    res = SegmentResult(segment=seg, attempt=attempt, host=_host())
    dl = SegmentDeadLetters(task.dead_letter, seg, task.digits, task.output_s3)
    src: Optional[DynamoClient] = None
    dst: Optional[DynamoClient] = None
    pipeline: Optional[Pipeline] = None
    try:
        transform = load_task_transform(task.transform, task.transform_hash)
        src = DynamoClient(task.source, pool_size=pool_size(1, 0), retry=opts.retry)
        dst = DynamoClient(task.target, pool_size=pool_size(0, task.writers), retry=opts.retry)
        rlim, wlim = _limiter(task.read_rate), _limiter(task.write_rate)
        scan = TableScanSource(src, task.source.table, task.total_segments, consistent_read=opts.consistent_read,
                               limiter=rlim, page_limit=task.page_limit, segments=[seg],
                               raw=True)
        sink = DryRunSink() if opts.dry_run else TableWriter(dst, task.target.table, task.target_keys,
                                                             mode=opts.mode, limiter=wlim)
        proc = Processing(
            key_schema=task.target_keys, transform=transform, on_error=opts.on_error, max_errors=opts.max_errors,
            trusted=(task.source_keys == task.target_keys), source_key_schema=task.source_keys,
            context=TransformContext(source_table=task.source.table, target_table=task.target.table, segment=seg),
            sample=opts.sample,
        )
        pipeline = Pipeline(scan, sink, proc, readers=1, writers=task.writers, queue_batches=opts.queue_batches,
                            dead_letters=dl.dead, crash_hook=_fault_hook(task.fault, seg))
        try:
            pipeline.run()
        finally:
            sink.close()
        res.samples = [{"before": b, "after": a} for b, a in pipeline.samples]
    except DdbMigrateError as e:
        res.error = error_dict(e)
    except BaseException:
        dl.discard()
        raise  # not ours to classify: Spark retries the task
    finally:
        _segment_outcome(res, dl, pipeline, (src, dst))
    res.dead_letter_file = dl.publish()
    res.elapsed = round(time.monotonic() - t0, 3)
    return res


# --------------------------------------------------------------------------- driver side


def spark_context(settings: SparkSettings) -> Tuple[Any, bool]:
    """The active SparkContext, or a new one on ``settings.master`` (default ``local[*]``).

    Returns (context, created): a context we created is stopped by the caller at the end;
    one that spark-submit / Glue / a notebook created is left alone.
    """
    try:
        from pyspark import SparkConf, SparkContext
    except ImportError:
        raise UsageError("--engine spark needs pyspark: pip install 'ddbmigrate[spark]' "
                         "(or run inside spark-submit / AWS Glue, which provide it)") from None
    active = SparkContext._active_spark_context
    if active is not None:
        return active, False
    conf = SparkConf().setAppName(settings.app_name)
    master = settings.master or conf.get("spark.master") or "local[*]"
    conf.setMaster(master)
    if master.startswith("local"):
        # Executors are Python workers on this machine: run them on this interpreter.
        os.environ.setdefault("PYSPARK_PYTHON", _python())
    conf.set("spark.ui.showConsoleProgress", "false")  # our own progress display is enough
    sc = SparkContext.getOrCreate(conf)
    sc.setLogLevel("ERROR")
    return sc, True


def _python() -> str:
    import sys

    return sys.executable


def task_slots(sc: Any, todo: int, settings: SparkSettings) -> int:
    """How many segments run at once: --spark-tasks, else the cluster's default parallelism."""
    slots = settings.max_tasks or int(getattr(sc, "defaultParallelism", 0) or 1)
    return max(1, min(slots, max(1, todo)))


def divide_rate(rate: Optional[float], slots: int) -> Optional[float]:
    """Each of ``slots`` concurrent tasks gets an equal share of the job's limit."""
    if not rate:
        return None
    return max(0.5, float(rate) / max(1, slots))


def _java_error_line(e: BaseException) -> str:
    """The Python error inside a Py4JJavaError, as one line."""
    text = str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error:" in ln or "Exception:" in ln:
            if not ln.startswith("at ") and "py4j" not in ln.lower():
                return ln[:300]
    return (lines[0] if lines else type(e).__name__)[:300]


class SegmentRunner:
    """Driver side: run segments as Spark tasks, record them done, build the report."""

    def __init__(self, *, job: str, identity: Dict[str, Any], total: int, options: RunOptions,
                 settings: SparkSettings, report: Report, total_estimate: Optional[int] = None,
                 spark: Any = None, checkpoint: bool = True, progress_label: str = "items",
                 progress_done: Callable[[Dict[str, int]], int] = lambda c: c.get("read", 0)) -> None:
        self.job = job
        self.identity = dict(identity, engine="spark")
        self.total = total
        self.opts = options
        self.settings = settings
        self.report = report
        self.total_estimate = total_estimate
        self.progress_label = progress_label
        self.progress_done = progress_done
        self.fp = fingerprint(self.identity)
        self.store: Optional[CheckpointStore] = None
        self.results: Dict[int, SegmentResult] = {}  # finished segments (this run and resumed)
        self.failed: Dict[int, SegmentResult] = {}
        self._lock = threading.Lock()
        self._last_save = 0.0
        # Job-level state a resume needs (e.g. the ExportId), saved with every checkpoint.
        self.job_state: Dict[str, Any] = {}
        if checkpoint and not options.dry_run:
            path = options.checkpoint or default_path(job, self.identity)
            self.store, state = open_checkpoint(path, self.identity, resume=options.resume,
                                                restart=options.restart, force=options.force)
            report.checkpoint_path = path
            if state is not None:
                self.job_state = dict((state.extra or {}).get("job_state", {}))
                seg_state = (state.extra or {}).get("segments", {})
                for name in state.done:
                    s = seg_state.get(name, {})
                    self.results[int(name)] = SegmentResult(
                        segment=int(name), attempt=int(s.get("attempt", 0)), counters=dict(s.get("counters", {})),
                        stats=dict(s.get("stats", {})), dead_letter_reasons=dict(s.get("dead_letter_reasons", {})),
                        extra=dict(s.get("extra", {})))
        self.resumed = sorted(self.results)
        self.todo = [s for s in range(total) if s not in self.results]
        self.sc: Any = None
        self._created = False
        if self.todo:
            self.sc, self._created = spark_context(settings)
        self.slots = task_slots(self.sc, len(self.todo), settings) if self.sc is not None else 1

    # ------------------------------------------------------------------ checkpoint

    def _counters(self, results: Iterable[SegmentResult]) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for r in results:
            for k, v in r.counters.items():
                out[k] = out.get(k, 0) + int(v)
        return out

    def save(self, final: bool = False, force: bool = False) -> None:
        if self.store is None:
            return
        now = time.monotonic()
        if not (final or force) and now - self._last_save < CHECKPOINT_EVERY:
            return
        self._last_save = now
        with self._lock:
            done = dict(self.results)
        st = CheckpointState(
            fingerprint=self.fp, job=self.identity, positions={}, done=[str(s) for s in done],
            counters=self._counters(done.values()), state="done" if final else "running",
            extra={"engine": "spark", "total_segments": self.total, "job_state": self.job_state,
                   "segments": {str(s): r.to_state() for s, r in done.items()}},
        )
        self.store.save(st)

    # ------------------------------------------------------------------ running

    def run(self, worker: Worker, task: Any, on_result: Optional[Callable[[SegmentResult], None]] = None) -> Report:
        """Run every segment still to do; returns the report or raises (report attached)."""
        opts = self.opts
        t0 = time.monotonic()
        error: Optional[BaseException] = None
        stop = threading.Event()
        progress = Progress(self.job, self._snapshot, mode=opts.progress, label=self.progress_label)
        progress.start()
        restore = _sigterm_as_interrupt()
        try:
            if self.todo:
                error = self._run_all(worker, task, stop, on_result)
        except KeyboardInterrupt:
            error = InterruptedError_("interrupted")
        finally:
            restore()
            progress.stop()
            if self._created and self.sc is not None:
                try:
                    self.sc.stop()
                except Exception:  # stopping a broken context must not hide the job's outcome
                    pass
        if isinstance(error, InterruptedError_):
            error.message = (f"interrupted; finished segments saved in {self.report.checkpoint_path}; "
                             "rerun the same command with --resume")
            error.hint = "rerun the same command with --resume"
        self.save(final=error is None, force=True)
        return self._finish(error, time.monotonic() - t0, progress)

    def _run_all(self, worker: Worker, task: Any, stop: threading.Event,
                 on_result: Optional[Callable[[SegmentResult], None]]) -> Optional[BaseException]:
        sc = self.sc
        rdd = sc.parallelize(range(self.total), self.total)
        func = functools.partial(_partition, worker, task)
        group = f"ddbmigrate-{self.job}-{uuid.uuid4().hex[:8]}"
        first_error: List[BaseException] = []
        cancelled = threading.Event()

        def one(seg: int) -> Optional[SegmentResult]:
            if stop.is_set():
                return None
            # Job groups are thread-local properties: set in each submitting thread so a
            # Ctrl-C can cancel every running segment at once.
            sc.setJobGroup(group, f"ddbmigrate {self.job} segment {seg}", interruptOnCancel=True)
            try:
                out = sc.runJob(rdd, func, [seg])
            except Exception as e:
                if cancelled.is_set():
                    return None  # Ctrl-C cancelled the job group: not a failure of this segment
                raise FatalError(f"segment {seg}: Spark task failed (after Spark's task retries): "
                                 f"{_java_error_line(e)}") from None
            return out[0] if out else SegmentResult(segment=seg)

        pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="spark-segment")
        pending: Dict[Future[Optional[SegmentResult]], int] = {}
        queue = list(self.todo)
        try:
            while queue or pending:
                while queue and len(pending) < self.slots and not stop.is_set():
                    seg = queue.pop(0)
                    pending[pool.submit(one, seg)] = seg
                if not pending:
                    break
                done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    seg = pending.pop(fut)
                    try:
                        res = fut.result()
                    except DdbMigrateError as e:
                        first_error.append(e)
                        stop.set()  # one failure stops new segments; running ones finish
                        continue
                    if res is None:
                        continue
                    if res.error is not None:
                        with self._lock:
                            self.failed[seg] = res
                        first_error.append(rebuild_error(seg, res.error))
                        stop.set()
                        continue
                    with self._lock:
                        self.results[seg] = res
                    if on_result is not None:
                        on_result(res)
                    self.save()
                    limit = self.opts.max_errors
                    if limit is not None and self._dead_total() > limit:
                        first_error.append(FatalError(
                            f"more than --max-errors {limit} items dead-lettered; stopping (finished segments "
                            "are checkpointed; fix the cause and --resume)"))
                        stop.set()
                if stop.is_set() and queue:
                    queue.clear()
        except KeyboardInterrupt:
            stop.set()
            cancelled.set()
            try:
                sc.cancelJobGroup(group)
            except Exception:
                pass
            pool.shutdown(wait=True, cancel_futures=True)
            return InterruptedError_("interrupted")
        pool.shutdown(wait=True)
        return first_error[0] if first_error else None

    def _dead_total(self) -> int:
        with self._lock:
            return sum(int(r.counters.get("dead_lettered", 0)) for r in self.results.values())

    def _snapshot(self) -> Dict[str, Any]:
        with self._lock:
            results = list(self.results.values())
        c = self._counters(results)
        stats = merge_stats(*(r.stats for r in results))
        return {"done": self.progress_done(c), "total": self.total_estimate,
                "retries": sum(stats["retries"].values()), "throttles": stats["retries"].get("throttle", 0),
                "dead_lettered": c.get("dead_lettered", 0),
                "status": f"segments {len(results)}/{self.total}"}

    def _finish(self, error: Optional[BaseException], elapsed: float, progress: Progress) -> Report:
        report = self.report
        with self._lock:
            all_results = list(self.results.values()) + list(self.failed.values())
        all_results.sort(key=lambda r: r.segment)
        counters = self._counters(all_results)
        stats = merge_stats(*(r.stats for r in all_results))
        task_retries = sum(r.attempt for r in all_results if r.segment not in self.resumed)
        if task_retries:
            stats["retries"]["spark_task"] = stats["retries"].get("spark_task", 0) + task_retries
        finish(report, counters, stats, elapsed)
        reasons: Dict[str, int] = {}
        for r in all_results:
            for k, v in r.dead_letter_reasons.items():
                reasons[k] = reasons.get(k, 0) + v
        report.dead_letter_reasons = reasons
        report.segments = self.total
        report.timeline = progress.timeline
        samples: List[Dict[str, Any]] = []
        for r in all_results:
            samples.extend(r.samples)
        if samples:
            report.samples = samples[: max(self.opts.sample, 0)] if self.opts.sample else samples
        report.extra.update({
            "engine": "spark",
            "spark_master": getattr(self.sc, "master", None),
            "spark_tasks": self.slots,
            "segments_resumed": len(self.resumed) or None,
            "dead_letter_files": sorted(r.dead_letter_file for r in all_results if r.dead_letter_file) or None,
        })
        report.extra = {k: v for k, v in report.extra.items() if v is not None}
        if error is None:
            report.status = "dry-run" if self.opts.dry_run else "done"
        else:
            report.status = "interrupted" if isinstance(error, InterruptedError_) else "failed"
            report.error = error.one_line() if isinstance(error, DdbMigrateError) else str(error)
        return deliver(report, self.opts.report, error)


def _sigterm_as_interrupt() -> Callable[[], None]:
    """SIGTERM (a cancelled EMR step, a stopped container) stops like Ctrl-C: cancel the running
    segments, save the finished ones, exit 130. Only the main thread can install handlers."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return install_handler(handler, (signal.SIGTERM,))


def _digits(total: int) -> int:
    return max(4, len(str(max(0, total - 1))))


def dead_letter_pattern(base: Optional[str], total: int) -> Optional[str]:
    """What the report shows as the dead-letter path: ``dead.segment-*.jsonl``."""
    if not base:
        return None
    d = _digits(total)
    return segment_file(base, 0, d).replace("segment-" + "0" * d, "segment-*")


# --------------------------------------------------------------------------- jobs


def copy_table_spark(
    source: TableRef,
    target: TableRef,
    options: Optional[RunOptions] = None,
    *,
    spark: Optional[SparkSettings] = None,
    create_target: bool = False,
    target_spec: Optional[str] = None,
    clean_target: bool = False,
    confirm: Optional[Callable[[str], bool]] = None,
) -> Report:
    """``copy_table`` with one scan segment per Spark task (same options, same report).

    The transform travels by reference (``options.transform``): executors load it themselves,
    so it must be importable there (a module shipped with --py-files, or a path on every node).
    """
    from ..jobs.copy import _copy_target, _page_limit, capacity_limit, copy_identity, default_writers, resumed_segments

    opts = options or RunOptions()
    settings = spark or SparkSettings()
    if opts.resume and opts.restart:
        raise UsageError("--resume and --restart are mutually exclusive")
    transform = load_transform(opts.transform) if opts.transform else None  # fail fast, on the driver
    writers = opts.writers or default_writers(opts.mode)
    src = DynamoClient(source, pool_size=4, retry=opts.retry)
    dst = DynamoClient(target, pool_size=4, retry=opts.retry)
    try:
        sdesc = src.describe_table()
        tdesc = _copy_target(source, target, src, dst, sdesc, opts.dry_run, create_target, target_spec)
        if clean_target and not opts.dry_run and not opts.resume:
            from ..jobs.clean import clean_table

            clean_table(target, options=RunOptions(progress=opts.progress, retry=opts.retry), confirm=confirm,
                        client=dst)
    finally:
        src.close()
        dst.close()
    src_keys = KeySchema.from_table_description(sdesc)
    dst_keys = KeySchema.from_table_description(tdesc)
    # On --resume, the checkpoint's segment count (the table's size may have drifted since).
    segments = (opts.segments or resumed_segments(opts, "copy", dict(
        copy_identity(source, target, [source.table, target.table], 0, transform, opts), engine="spark"))
        or default_segments(sdesc))
    read_rate = capacity_limit(sdesc, opts.max_read_units, opts.read_percent, "read")
    write_rate = capacity_limit(tdesc, opts.max_write_units, opts.write_percent, "write")
    identity = copy_identity(source, target, [source.table, target.table], segments, transform, opts)
    report = Report(job="copy", source=source.describe(), target=target.describe(),
                    dead_letter_path=dead_letter_pattern(opts.dead_letter, segments),
                    writers=writers)
    report.extra.update({"mode": opts.mode, "transform": transform.name if transform else None})
    runner = SegmentRunner(job="copy", identity=identity, total=segments, options=opts, settings=settings,
                           report=report, total_estimate=int(sdesc.get("ItemCount") or 0) or None)
    task = CopyTask(
        source=source, target=target, options=opts, total_segments=segments, source_keys=src_keys,
        target_keys=dst_keys, transform=transform.name if transform else None,
        transform_hash=transform.code_hash if transform else None,
        read_rate=divide_rate(read_rate, runner.slots), write_rate=divide_rate(write_rate, runner.slots),
        page_limit=_page_limit(divide_rate(read_rate, runner.slots)), writers=writers,
        dead_letter=opts.dead_letter, digits=_digits(segments),
        fault=parse_fail_once(os.environ.get(FAIL_ONCE_ENV)), output_s3=driver_s3_settings(target),
    )
    return runner.run(copy_segment, task)


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportTask:
    """Everything an executor needs to export one segment into the shared ExportId folder."""

    table: TableRef
    options: RunOptions
    total_segments: int
    keys: KeySchema
    dest: str
    fmt: str
    export_id: str
    s3: Any = None  # storage.S3Settings (plain dataclass)
    s3_prefix: Optional[str] = None
    file_size: int = 256 * 1024 * 1024
    transform: Optional[str] = None
    transform_hash: Optional[str] = None
    read_rate: Optional[float] = None
    page_limit: Optional[int] = None
    writers: int = 1
    dead_letter: Optional[str] = None
    digits: int = 4
    fault: Optional[Tuple[int, int, str]] = None
    output_s3: Any = None


def export_segment(task: ExportTask, seg: int, attempt: int = 0) -> SegmentResult:
    """Export one scan segment with the local engine's pipeline and file sink; runs on an executor.

    The segment's data files (random names, so attempts never clash) are finished and uploaded
    before the task returns; their manifest entries travel back in ``result.extra["files"]``.
    Files of a failed attempt are not listed anywhere and are deleted by the driver.
    """
    from ..sinks.export_files import FileSink
    from ..storage.stores import storage_for

    t0 = time.monotonic()
    opts = task.options
    res = SegmentResult(segment=seg, attempt=attempt, host=_host())
    dl = SegmentDeadLetters(task.dead_letter, seg, task.digits, task.output_s3)
    src: Optional[DynamoClient] = None
    pipeline: Optional[Pipeline] = None
    try:
        transform = load_task_transform(task.transform, task.transform_hash)
        src = DynamoClient(task.table, pool_size=pool_size(1, 0), retry=opts.retry)
        scan = TableScanSource(src, task.table.table, task.total_segments, consistent_read=opts.consistent_read,
                               limiter=_limiter(task.read_rate), page_limit=task.page_limit, segments=[seg])
        # commit_every=inf: no checkpoints inside a task; close() finishes every file at the end.
        sink = FileSink(storage_for(task.dest, task.s3), task.dest, fmt=task.fmt, file_size=task.file_size,
                        commit_every=float("inf"), s3_prefix=task.s3_prefix, export_id=task.export_id)
        proc = Processing(
            # Files have no key schema: transformed (possibly re-keyed) items are not key-checked.
            key_schema=task.keys if transform is None else None, transform=transform, on_error=opts.on_error,
            max_errors=opts.max_errors, trusted=True, source_key_schema=task.keys, dedupe=False, max_batch_ops=1000,
            context=TransformContext(source_table=task.table.table, segment=seg), sample=opts.sample,
        )
        pipeline = Pipeline(scan, sink, proc, readers=1, writers=task.writers, queue_batches=opts.queue_batches,
                            dead_letters=dl.dead, crash_hook=_fault_hook(task.fault, seg))
        try:
            pipeline.run()
        except BaseException:
            # Drop this attempt's unfinished data files; finished ones are not in any manifest
            # and the driver deletes them.
            for f in list(getattr(sink, "_open", {}).values()):
                f.discard()
            raise
        sink.close()
        res.extra = {"files": list(sink.committed), "bytes": sink.bytes_written}
    except DdbMigrateError as e:
        res.error = error_dict(e)
    except BaseException:
        dl.discard()
        raise  # not ours to classify: Spark retries the task
    finally:
        _segment_outcome(res, dl, pipeline, (src,))
    res.dead_letter_file = dl.publish()
    res.elapsed = round(time.monotonic() - t0, 3)
    return res


def export_table_spark(
    table: TableRef,
    dest: str,
    options: Optional[RunOptions] = None,
    fmt: str = "dynamodb-json",
    *,
    spark: Optional[SparkSettings] = None,
    s3: Any = None,
    file_size: Optional[int] = None,
) -> Report:
    """``export_table`` with one scan segment per Spark task: the same AWS Export-to-S3 layout.

    Every task writes its own data files under the one ExportId; the driver writes the
    manifests (files, then summary: the completion marker) once every segment is done.
    A resumed run keeps the ExportId and the files of finished segments.
    """
    from ..jobs.copy import _page_limit, capacity_limit, resumed_segments
    from ..jobs.export import check_export_options, export_identity, export_summary
    from ..sinks.export_files import DEFAULT_FILE_SIZE, FileSink, new_export_id
    from ..storage.stores import S3Settings, is_s3, normalize, split_s3, storage_for

    opts = options or RunOptions()
    settings = spark or SparkSettings()
    check_export_options(opts, fmt)
    transform = load_transform(opts.transform) if opts.transform else None
    dest = normalize(dest)
    s3 = s3 or S3Settings(region=table.region, profile=table.profile, role_arn=table.role_arn)
    storage = storage_for(dest, s3)
    c = DynamoClient(table, pool_size=4, retry=opts.retry)
    try:
        desc = c.describe_table()
        region = c.region
    finally:
        c.close()
    keys = KeySchema.from_table_description(desc)
    segments = (opts.segments or resumed_segments(opts, "export", dict(
        export_identity(table, table.table, dest, fmt, 0, transform), engine="spark")) or default_segments(desc))
    read_rate = capacity_limit(desc, opts.max_read_units, opts.read_percent, "read")
    bucket, prefix = split_s3(dest) if is_s3(dest) else (None, None)
    identity = export_identity(table, table.table, dest, fmt, segments, transform)
    report = Report(job="export", source=table.describe(), target=dest,
                    dead_letter_path=dead_letter_pattern(opts.dead_letter, segments), writers=opts.writers or 1)
    report.extra.update({"format": fmt, "transform": transform.name if transform else None})
    runner = SegmentRunner(job="export", identity=identity, total=segments, options=opts, settings=settings,
                           report=report, total_estimate=int(desc.get("ItemCount") or 0) or None)
    if not runner.job_state.get("export_id"):
        runner.job_state.update({"export_id": new_export_id(), "started_at": time.time()})
    export_id = str(runner.job_state["export_id"])
    started_at = float(runner.job_state.get("started_at") or time.time())
    task = ExportTask(
        table=table, options=opts, total_segments=segments, keys=keys, dest=dest, fmt=fmt, export_id=export_id,
        s3=s3, s3_prefix=prefix, file_size=file_size or DEFAULT_FILE_SIZE,
        transform=transform.name if transform else None, transform_hash=transform.code_hash if transform else None,
        read_rate=divide_rate(read_rate, runner.slots), page_limit=_page_limit(divide_rate(read_rate, runner.slots)),
        writers=opts.writers or 1, dead_letter=opts.dead_letter, digits=_digits(segments),
        fault=parse_fail_once(os.environ.get(FAIL_ONCE_ENV)), output_s3=s3,
    )
    report = runner.run(export_segment, task)

    # Every segment is done: list exactly the files the successful attempts wrote, delete any
    # other data file (a failed attempt's, an interrupted run's), then the manifests, summary last.
    files: List[Dict[str, Any]] = []
    nbytes = 0
    for seg in sorted(runner.results):
        files.extend(runner.results[seg].extra.get("files", []))
        nbytes += int(runner.results[seg].extra.get("bytes", 0))
    sink = FileSink(storage, dest, fmt=fmt, s3_prefix=prefix, export_id=export_id)
    keep = {e["dataFileS3Key"].rsplit("/", 1)[-1] for e in files}
    data = storage.join(sink.root, "data")
    orphans = 0
    if storage.is_dir(data):
        for path, _size in storage.list_files(data):
            if path.rsplit("/", 1)[-1] not in keep:
                storage.delete(path)
                orphans += 1
    sink.committed = files
    sink.bytes_written = nbytes
    sink.started_at = started_at
    summary = export_summary(desc, region, table.table, export_id, started_at, bucket, prefix)
    summary["exportType"] = "FULL_EXPORT"  # as the local engine and AWS write it
    manifest = sink.write_manifests(summary)
    report.extra.update({"export_id": export_id, "export_path": sink.root, "files": len(files),
                         "items_exported": manifest["itemCount"]})
    if orphans:
        report.extra["orphan_files_deleted"] = orphans
    if opts.report:
        report.write_json(opts.report)
    return report


# --------------------------------------------------------------------------- verify
#
#   map tasks (one per source segment and per target segment)      reduce tasks (by key hash)
#   scan -> transform -> key checks (verify._scan, as locally)  ──▶  compare.Comparer (bounded
#   emit (key bytes, side, item)  + per-unit counters           ─┘   memory, spills to disk)
#                                                                    -> differences part file
#
# Spark's shuffle does what the local engine's spill files do: it brings both sides of a key
# together. Counts travel through the shuffle with the items, so a retried task (whose output
# Spark discards) never counts twice.

_SIDE_ITEM = (0, 1)  # compare.EXPECTED, compare.ACTUAL
_DIFF, _COUNTS, _ERROR = 2, 3, 4


@dataclass(frozen=True)
class VerifyTask:
    source: TableRef
    target: TableRef
    source_keys: KeySchema
    target_keys: KeySchema
    keys: KeySchema  # what both sides are matched by (the target's key)
    source_segments: int
    target_segments: int
    retry: Any = None
    transform: Optional[str] = None
    transform_hash: Optional[str] = None
    on_error: str = "fail"
    keys_only: bool = False
    sample: Optional[float] = None
    consistent_read: bool = False
    read_rate: Optional[float] = None
    budget: int = 256 * 1024 * 1024
    partition_estimate: int = 0
    diff_path: Optional[str] = None
    digits: int = 5
    fault: Optional[Tuple[int, int, str]] = None
    output_s3: Any = None


class TaskOutput:
    """A task's own output file: local (started afresh per attempt) or S3 (uploaded at the end)."""

    def __init__(self, target: Optional[str], s3: Any = None) -> None:
        self.target = target
        self.s3 = s3
        self.lines = 0
        self._tmpdir: Optional[str] = None
        self._fh: Any = None
        if target is None:
            return
        if target.startswith("s3://"):
            _split_s3(target)
            self._tmpdir = tempfile.mkdtemp(prefix="ddbmigrate-out-")
            self.local = os.path.join(self._tmpdir, os.path.basename(target))
        else:
            self.local = target
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        self._fh = open(self.local, "wb")

    def write(self, line: bytes) -> None:
        self.lines += 1
        if self._fh is not None:
            self._fh.write(line)

    def publish(self) -> Optional[str]:
        if self._fh is None:
            return None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        try:
            if self.lines == 0:
                if self._tmpdir is None:
                    os.unlink(self.local)
                return None
            if self._tmpdir is not None and self.target is not None:
                upload(self.local, self.target, self.s3)
            return self.target
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)


class _ShuffleFeed:
    """Stands in for the Comparer inside verify._scan: hands the items to the map task's output."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def add(self, side: int, items: Iterable[Any]) -> None:
        # Consumed here, in the scan thread: verify may pass a generator that counts (drops,
        # invalid items) as it is iterated, and counts it must be before _scan bumps them.
        batch: List[Any] = []
        for it in items:
            batch.append(it)
            if len(batch) >= 500:
                self.out.put(("items", side, batch))
                batch = []
        if batch:
            self.out.put(("items", side, batch))


def verify_partition(kb: bytes) -> int:
    """Partition of a key (the same hash compare.Comparer partitions by); deterministic everywhere."""
    from ..verify.compare import key_hash

    return key_hash(kb)[0]


def _verify_map(task: VerifyTask, units: Iterable[int]) -> Iterator[Tuple[bytes, Tuple[int, bytes]]]:
    attempt = _attempt()
    for u in units:
        u = int(u)
        side, seg = (0, u) if u < task.source_segments else (1, u - task.source_segments)
        yield from _verify_unit(task, side, seg, attempt)


def _attempt() -> int:
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        return int(ctx.attemptNumber()) if ctx is not None else 0
    except ImportError:
        return 0


def _verify_unit(task: VerifyTask, side: int, seg: int, attempt: int) -> Iterator[Tuple[bytes, Tuple[int, bytes]]]:
    """Read one segment of one side through verify's own scan logic; stream what it produces."""
    import orjson

    from ..verify import job as V
    from .pipeline import Counters

    import queue as _queue

    ref = task.source if side == 0 else task.target
    total = task.source_segments if side == 0 else task.target_segments
    client = DynamoClient(ref, pool_size=pool_size(1, 0), retry=task.retry)
    tf = load_task_transform(task.transform, task.transform_hash) if side == 0 else None
    proj = None
    if task.keys_only and side == 1:
        proj = list(task.keys.names)
    elif task.keys_only and tf is None:
        proj = sorted(set(task.source_keys.names) | set(task.keys.names))
    scan = TableScanSource(client, ref.table, total, consistent_read=task.consistent_read,
                           limiter=_limiter(task.read_rate), segments=[seg], projection=proj)
    me = V.Side(ref.describe(), scan, task.source_keys if side == 0 else task.target_keys, None, client, trusted=True)
    other = V.Side("", V._placeholder, None, None, None)
    src, tgt = (me, other) if side == 0 else (other, me)
    check_expected = not (tf is None and task.source_keys == task.keys)
    check_actual = task.target_keys != task.keys
    counters = Counters()
    q: "_queue.Queue[Any]" = _queue.Queue(maxsize=8)  # bounded: the scan waits for the shuffle writer

    def diffs(d: Dict[str, Any]) -> None:
        q.put(("diff", d))

    def run() -> None:
        try:
            # The same context as a local verify (no segment), so both engines expect the same items.
            ctx = TransformContext(source_table=task.source.table, target_table=task.target.table)
            # Duck types: the feed stands in for the Comparer, ``diffs`` for the differences file.
            feed: Any = _ShuffleFeed(q)
            sink: Any = diffs
            V._scan(src, tgt, feed, task.keys, tf, ctx, check_expected, check_actual, task.on_error, counters,
                    sink, 1)
            q.put(("end", None))
        except BaseException as e:  # handed to the generator, which decides what Spark sees
            q.put(("end", e))

    t = threading.Thread(target=run, name=f"verify-scan-{side}-{seg}", daemon=True)
    t.start()
    ks = task.keys
    fault = task.fault if (task.fault is not None and side == 0 and task.fault[0] == seg) else None
    batches = 0
    tag = f"{side}:{seg}".encode()
    n = 0
    try:
        while True:
            msg = q.get()
            if msg[0] == "items":
                for it in msg[2]:
                    kb = orjson.dumps(ks.key(it))
                    body = orjson.dumps(ks.project(it) if task.keys_only else it)
                    yield kb, (msg[1], body)
                batches += 1
                if fault is not None and batches == fault[1] and not os.path.exists(fault[2]):
                    with open(fault[2], "w") as fh:
                        fh.write(f"verify segment {seg} failed once on purpose\n")
                    raise RuntimeError(f"injected task failure in verify segment {seg} ({FAIL_ONCE_ENV})")
            elif msg[0] == "diff":
                n += 1
                yield b"\x00d" + tag + b":" + str(n).encode(), (_DIFF, orjson.dumps(msg[1]))
            else:
                err = msg[1]
                if err is not None and not isinstance(err, DdbMigrateError):
                    raise err
                payload = {"counters": counters.snapshot(), "stats": client.stats.snapshot(), "attempt": attempt}
                yield b"\x00c" + tag, (_COUNTS, orjson.dumps(payload))
                if err is not None:
                    yield b"\x00e" + tag, (_ERROR, orjson.dumps({"segment": seg, "side": side,
                                                                   **error_dict(err)}))
                return
    finally:
        client.close()


def _verify_reduce(task: VerifyTask, records: Iterable[Tuple[bytes, Tuple[int, bytes]]]) -> Iterator[Dict[str, Any]]:
    """Compare one hash partition with the local engine's Comparer (bounded memory, spills)."""
    import orjson

    from ..verify.compare import Comparer, partitions_for

    pid = 0
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        pid = int(ctx.partitionId()) if ctx is not None else 0
    except ImportError:
        pass
    out = TaskOutput(segment_file(task.diff_path, pid, task.digits).replace(".segment-", ".part-")
                     if task.diff_path else None, task.output_s3)
    preview: List[Dict[str, Any]] = []
    folder = tempfile.mkdtemp(prefix="ddbmigrate-verify-")
    counters: Dict[str, int] = {}
    stats: List[Dict[str, Any]] = []
    errors: List[Dict[str, Any]] = []
    attempts = 0

    def emit(d: Dict[str, Any]) -> None:
        from ..verify.job import PREVIEW, preview_entry

        out.write(orjson.dumps(d) + b"\n")
        if len(preview) < PREVIEW:
            preview.append(preview_entry(d))

    try:
        comparer = Comparer(task.keys, os.path.join(folder, "spill"),
                            partitions=partitions_for(task.partition_estimate, task.budget), budget=task.budget,
                            keys_only=task.keys_only, sample=task.sample)
        bufs: Dict[int, List[Any]] = {0: [], 1: []}
        for _kb, (kind, body) in records:
            if kind in _SIDE_ITEM:
                bufs[kind].append(orjson.loads(body))
                if len(bufs[kind]) >= 1000:
                    comparer.add(kind, bufs[kind])
                    bufs[kind] = []
            elif kind == _DIFF:
                emit(orjson.loads(body))
            elif kind == _COUNTS:
                c = orjson.loads(body)
                for k, v in c["counters"].items():
                    counters[k] = counters.get(k, 0) + int(v)
                stats.append(c["stats"])
                attempts += int(c.get("attempt", 0))
            elif kind == _ERROR:
                errors.append(orjson.loads(body))
        for side, items in bufs.items():
            if items:
                comparer.add(side, items)
        comparer.close()
        spilled = sum(sp.bytes for sp in comparer.spills)
        cc = comparer.compare(emit)
        result = {"partition": pid, "compare": cc.as_dict(), "counters": counters, "stats": stats,
                  "sampled_out": list(comparer.sampled_out), "preview": preview, "spilled": spilled,
                  "errors": errors, "attempts": attempts, "reduce_attempt": _attempt()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["diff_file"] = out.publish()
    yield result


def verify_tables_spark(
    source: TableRef,
    target: TableRef,
    *,
    spark: Optional[SparkSettings] = None,
    transform: Optional[str] = None,
    sample: Optional[float] = None,
    keys_only: bool = False,
    diff_path: Optional[str] = None,
    report_path: Optional[str] = None,
    repair: bool = False,
    confirm: Optional[Callable[[str], bool]] = None,
    segments: Optional[int] = None,
    source_segments: Optional[int] = None,
    target_segments: Optional[int] = None,
    consistent_read: bool = False,
    memory_mb: Optional[float] = None,
    progress: str = "auto",
    on_error: str = "fail",
    retry: Any = None,
    max_read_units: Optional[float] = None,
) -> Any:
    """``verify_tables`` for two tables with the scans and the comparison spread over Spark.

    Same categories, counts and report (``verify.VerifyReport``) as the local engine. With a
    local ``diff_path`` the per-partition difference files are joined into it on the driver
    (which ``repair`` then replays); with ``s3://`` they stay as ``<diff>.part-NNNNN.jsonl``.
    """
    import orjson

    from ..verify.compare import ACTUAL, DEFAULT_BUDGET, EXPECTED
    from ..config import RetryPolicy
    from ..verify.job import VerifyReport, check_verify_options, repair_differences, sample_confidence

    if not isinstance(source, TableRef) or not isinstance(target, TableRef):
        raise UsageError("verify --engine spark compares two tables; verify files with the local engine")
    check_verify_options(sample, on_error, repair, keys_only)
    if repair and diff_path is not None and diff_path.startswith("s3://"):
        raise UsageError("--repair with --engine spark needs a local --diff file")
    budget = int(memory_mb * 1024 * 1024) if memory_mb is not None else DEFAULT_BUDGET
    settings = spark or SparkSettings()
    retry = retry or RetryPolicy()
    tf = load_transform(transform) if transform else None
    sc_, dc_ = DynamoClient(source, pool_size=4, retry=retry), DynamoClient(target, pool_size=4, retry=retry)
    try:
        sdesc, tdesc = sc_.describe_table(), dc_.describe_table()
    finally:
        sc_.close()
    skeys, tkeys = KeySchema.from_table_description(sdesc), KeySchema.from_table_description(tdesc)
    ss = source_segments or segments or default_segments(sdesc)
    ts = target_segments or segments or default_segments(tdesc)
    estimate = int(sdesc.get("ItemCount") or 0) + int(tdesc.get("ItemCount") or 0)
    sc, created = spark_context(settings)
    work_diff = diff_path
    tmp_diff_dir: Optional[str] = None
    if repair and diff_path is None:
        tmp_diff_dir = tempfile.mkdtemp(prefix="ddbmigrate-diff-", dir=os.path.abspath("."))
        work_diff = os.path.join(tmp_diff_dir, "differences.jsonl")
    try:
        slots = max(1, min(ss + ts, settings.max_tasks or int(sc.defaultParallelism or 1)))
        reducers = max(int(sc.defaultParallelism or 1), min(10_000, estimate // 1_000_000 + 1))
        task = VerifyTask(
            source=source, target=target, source_keys=skeys, target_keys=tkeys, keys=tkeys, source_segments=ss,
            target_segments=ts, retry=retry, transform=tf.name if tf else None,
            transform_hash=tf.code_hash if tf else None, on_error=on_error, keys_only=keys_only, sample=sample,
            consistent_read=consistent_read, read_rate=divide_rate(max_read_units, slots), budget=budget,
            partition_estimate=estimate // reducers + 1,
            diff_path=os.path.abspath(work_diff) if work_diff and not work_diff.startswith("s3://") else work_diff,
            digits=max(5, len(str(reducers - 1))), fault=parse_fail_once(os.environ.get(FAIL_ONCE_ENV)),
            output_s3=driver_s3_settings(target),
        )
        report = VerifyReport(source=source.describe(), target=target.describe(), keys_only=keys_only,
                              sample_rate=sample, memory_budget_bytes=budget, partitions=reducers)
        report.extra = {k: v for k, v in {"transform": tf.name if tf else None}.items() if v}
        started = time.monotonic()
        display = Progress("verify", lambda: {"done": 0, "total": None, "status": "spark"}, mode=progress)
        display.start()
        try:
            rdd = sc.parallelize(range(ss + ts), ss + ts).mapPartitions(functools.partial(_verify_map, task))
            group = f"ddbmigrate-verify-{uuid.uuid4().hex[:8]}"
            sc.setJobGroup(group, "ddbmigrate verify", interruptOnCancel=True)
            try:
                results = rdd.partitionBy(reducers, verify_partition) \
                    .mapPartitions(functools.partial(_verify_reduce, task)).collect()
            except KeyboardInterrupt:
                sc.cancelJobGroup(group)
                raise InterruptedError_("verify interrupted; nothing was changed") from None
            except Exception as e:
                if isinstance(e, DdbMigrateError):
                    raise
                raise FatalError(f"verify: Spark job failed (after Spark's task retries): {_java_error_line(e)}") \
                    from None
        finally:
            display.stop()
        counters: Dict[str, int] = {}
        stats_snaps: List[Dict[str, Any]] = []
        preview: List[Dict[str, Any]] = []
        errors: List[Dict[str, Any]] = []
        parts: List[str] = []
        compare_totals: Dict[str, int] = {}
        sampled_out = [0, 0]
        retries = 0
        for r in sorted(results, key=lambda r: r["partition"]):
            for k, v in r["counters"].items():
                counters[k] = counters.get(k, 0) + v
            for k, v in r["compare"].items():
                compare_totals[k] = max(compare_totals.get(k, 0), v) if k == "max_partition_records" \
                    else compare_totals.get(k, 0) + v
            stats_snaps.extend(r["stats"])
            preview.extend(r["preview"])
            errors.extend(r["errors"])
            sampled_out[EXPECTED] += r["sampled_out"][EXPECTED]
            sampled_out[ACTUAL] += r["sampled_out"][ACTUAL]
            report.spilled_bytes += int(r["spilled"])
            retries += int(r["attempts"]) + int(r["reduce_attempt"])
            if r["diff_file"]:
                parts.append(r["diff_file"])
        if errors:
            first = sorted(errors, key=lambda x: (x["side"], x["segment"]))[0]
            raise rebuild_error(first["segment"], first)
        counters["sampled_out_expected"] = sampled_out[EXPECTED]
        counters["sampled_out_actual"] = sampled_out[ACTUAL]
        for k, v in compare_totals.items():
            if k not in ("equal", "missing", "unexpected", "mismatched"):
                counters[k] = counters.get(k, 0) + v
        report.equal = compare_totals.get("equal", 0)
        report.missing = compare_totals.get("missing", 0)
        report.unexpected = compare_totals.get("unexpected", 0)
        report.mismatched = compare_totals.get("mismatched", 0)
        report.invalid = counters.get("invalid", 0)
        report.unreadable = counters.get("unreadable_source", 0) + counters.get("unreadable_target", 0)
        report.preview = preview[:20]
        report.remaining = report.differences
        if sample is not None:
            report.confidence = sample_confidence(sample, report.differences)
        # Local differences: join the part files into the one file the user named.
        if work_diff and not work_diff.startswith("s3://"):
            with open(work_diff, "wb") as fh:
                for part in sorted(parts):
                    with open(part, "rb") as pf:
                        shutil.copyfileobj(pf, fh)
                    os.unlink(part)
            report.diff_path = diff_path
        elif work_diff:
            report.diff_path = segment_file(work_diff, 0, task.digits).replace(
                ".segment-" + "0" * task.digits, ".part-*")
            report.extra["diff_files"] = sorted(parts)
        if repair and (report.missing or report.mismatched or report.unexpected):
            assert work_diff is not None
            report.repair = repair_differences(work_diff, dc_, tkeys, confirm=confirm)
            rr = report.repair
            report.remaining = (report.invalid + report.unreadable + rr["still_different"] + rr["rejected"]
                                + rr["delete_skipped"])
            stats_snaps.append(dc_.stats.snapshot())
        elif repair:
            report.repair = {"put": 0, "deleted": 0, "delete_skipped": 0, "rejected": 0, "rechecked": 0,
                             "still_different": 0}
        counters["read"] = counters.get("source_read", 0) + counters.get("target_read", 0)
        stats = merge_stats(*stats_snaps)
        if retries:
            stats["retries"]["spark_task"] = stats["retries"].get("spark_task", 0) + retries
        finish(report, {k: v for k, v in counters.items() if v}, stats, time.monotonic() - started)
        report.timeline = display.timeline
        report.extra.update({"engine": "spark", "spark_master": sc.master, "segments": [ss, ts]})
        report.status = "done"
        if report_path:
            report.write_json(report_path)
        return report
    finally:
        dc_.close()
        if tmp_diff_dir is not None:
            shutil.rmtree(tmp_diff_dir, ignore_errors=True)
        if created:
            try:
                sc.stop()
            except Exception:
                pass


__all__ = [
    "VerifyTask",
    "verify_tables_spark",
    "CopyTask",
    "ExportTask",
    "export_segment",
    "export_table_spark",
    "FAIL_ONCE_ENV",
    "SegmentDeadLetters",
    "SegmentResult",
    "SegmentRunner",
    "SparkSettings",
    "copy_segment",
    "copy_table_spark",
    "divide_rate",
    "segment_file",
    "spark_context",
    "task_slots",
]
