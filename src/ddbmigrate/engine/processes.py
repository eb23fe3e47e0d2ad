"""The local engine across processes: scan segments spread over a pool of worker processes.

Why: one process moves items at a few tens of microseconds of CPU each, which one core turns
into roughly 30-40k items/s; past that the GIL, not DynamoDB, is the limit. ``--processes N``
runs N processes, each the ordinary threaded pipeline over every N-th segment, with its own
clients; the parent merges their checkpoints, progress, counters and dead letters.

Invariants:
- The checkpoint format is the threaded engine's (per-segment LastEvaluatedKey + done), so a job
  can be resumed with a different --processes value (or none).
- A child reports a segment position only after its own pipeline committed it (acknowledged
  writes, dead letters fsynced); the parent saves exactly what children reported.
- Rate limits are divided evenly between the processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as _queue
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..state.checkpoint import CheckpointState, fingerprint
from ..config import RunOptions, TableRef
from ..errors import DdbMigrateError, FatalError, InterruptedError_, RetriesExhaustedError, UsageError
from ..core.items import KeySchema
from ..reporting.progress import Progress
from ..reporting.report import Report, deliver, finish, merge_stats
from .run import interrupted_error, open_job_checkpoint


@dataclass
class ChildJob:
    """Everything one worker process needs (plain, picklable values)."""

    index: int
    source: TableRef
    target: TableRef
    options: RunOptions
    total_segments: int
    segments: List[int]
    positions: Dict[str, Any]
    source_keys: KeySchema
    target_keys: KeySchema
    read_rate: Optional[float]
    write_rate: Optional[float]
    page_limit: Optional[int]
    writers: int
    dead_letter: Optional[str]
    raw: bool


@dataclass
class _ChildState:
    positions: Dict[str, Any] = field(default_factory=dict)
    done: List[str] = field(default_factory=list)
    committed: Dict[str, int] = field(default_factory=dict)
    live: Dict[str, int] = field(default_factory=dict)
    stats: Dict[str, Any] = field(default_factory=dict)
    reasons: Dict[str, int] = field(default_factory=dict)
    finished: bool = False
    error: Optional[Dict[str, Any]] = None


def _child_main(job: ChildJob, out: Any) -> None:
    """Runs in a worker process: the threaded pipeline over this process's segments."""
    from ..aws.client import DynamoClient
    from ..jobs.copy import DryRunSink
    from ..state.crashpoints import crash_point
    from ..state.deadletter import DeadLetters
    from .pipeline import Pipeline, Processing, default_readers
    from ..aws.capacity import RateLimiter, TokenBucket
    from .run import pool_size
    from ..sinks.table_writer import TableWriter
    from ..sources.table_scan import TableScanSource
    from ..core.transform import TransformContext, load_transform

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sends SIGTERM
    opts = job.options
    pipeline: Optional[Pipeline] = None
    src = dst = None
    try:
        transform = load_transform(opts.transform) if opts.transform else None
        readers = default_readers(len(job.segments))
        src = DynamoClient(job.source, pool_size=pool_size(readers, 0), retry=opts.retry)
        dst = DynamoClient(job.target, pool_size=pool_size(0, job.writers), retry=opts.retry)
        rlim = TokenBucket(job.read_rate) if job.read_rate else RateLimiter()
        wlim = TokenBucket(job.write_rate) if job.write_rate else RateLimiter()
        scan = TableScanSource(src, job.source.table, job.total_segments, consistent_read=opts.consistent_read,
                               limiter=rlim, page_limit=job.page_limit, segments=job.segments, raw=job.raw)
        sink: Any = DryRunSink() if opts.dry_run else TableWriter(dst, job.target.table, job.target_keys,
                                                                  mode=opts.mode, limiter=wlim)
        proc = Processing(key_schema=job.target_keys, transform=transform, on_error=opts.on_error,
                          max_errors=opts.max_errors, trusted=job.source_keys == job.target_keys,
                          source_key_schema=job.source_keys,
                          context=TransformContext(source_table=job.source.table, target_table=job.target.table))
        dead = DeadLetters(job.dead_letter)

        def report_checkpoint(p: Pipeline) -> None:
            pos, done, committed = p.checkpoint_snapshot()  # one consistent cut
            out.put(("ckpt", job.index, pos, done, committed))

        pipeline = Pipeline(scan, sink, proc, readers=readers, writers=job.writers, dead_letters=dead,
                            positions=job.positions, on_checkpoint=report_checkpoint, crash_hook=crash_point,
                            checkpoint_every=1.0)
        p = pipeline
        signal.signal(signal.SIGTERM, lambda *_: p.interrupt())
        stop = threading.Event()

        def live() -> None:
            while not stop.wait(0.5):
                out.put(("live", job.index, p.counters.snapshot(), merge_stats(src.stats.snapshot(),
                                                                               dst.stats.snapshot())))

        t = threading.Thread(target=live, daemon=True)
        t.start()
        err: Optional[Dict[str, Any]] = None
        try:
            pipeline.run()
        except DdbMigrateError as e:
            err = {"type": type(e).__name__, "message": e.one_line(), "exit_code": e.exit_code}
        finally:
            stop.set()
            dead.close()
            sink.close()
        out.put(("end", job.index, pipeline.counters.snapshot(committed=True),
                 merge_stats(src.stats.snapshot(), dst.stats.snapshot()), dict(dead.by_reason), err))
    except BaseException as e:  # anything escaping must still reach the parent as a clear line
        msg = e.one_line() if isinstance(e, DdbMigrateError) else f"{type(e).__name__}: {e}"
        code = e.exit_code if isinstance(e, DdbMigrateError) else 1
        out.put(("end", job.index, {}, {}, {}, {"type": type(e).__name__, "message": msg, "exit_code": code}))


def run_copy_processes(
    *,
    processes: int,
    source: TableRef,
    target: TableRef,
    options: RunOptions,
    total_segments: int,
    identity: Dict[str, Any],
    source_keys: KeySchema,
    target_keys: KeySchema,
    read_rate: Optional[float],
    write_rate: Optional[float],
    page_limit: Optional[int],
    writers: int,
    raw: bool,
    total_estimate: Optional[int],
    extra: Dict[str, Any],
) -> Report:
    opts = options
    report = Report(job="copy", source=source.describe(), target=target.describe(), dead_letter_path=opts.dead_letter,
                    writers=writers * processes)
    report.extra.update(extra, processes=processes)
    fp = fingerprint(identity)
    store, state = open_job_checkpoint("copy", identity, opts, report)
    base_counters = dict(state.counters) if state else {}
    done_all = set(state.done) if state else set()
    positions = dict(state.positions) if state else {}
    if state is not None and state.state == "done":
        done_all = {str(s) for s in range(total_segments)}
    todo = [s for s in range(total_segments) if str(s) not in done_all]
    n = max(1, min(processes, len(todo) or 1))
    groups = [todo[i::n] for i in range(n)]
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    children: List[Any] = []
    states: List[_ChildState] = [_ChildState() for _ in range(n)]
    for i, segs in enumerate(groups):
        dl = f"{opts.dead_letter}.part{i}" if opts.dead_letter else None
        job = ChildJob(index=i, source=source, target=target, options=opts, total_segments=total_segments,
                       segments=segs, positions={str(s): positions[str(s)] for s in segs if str(s) in positions},
                       source_keys=source_keys, target_keys=target_keys,
                       read_rate=read_rate / n if read_rate else None, write_rate=write_rate / n if write_rate else None,
                       page_limit=page_limit, writers=writers, dead_letter=dl, raw=raw)
        # Until the worker reports, its segments stay where the checkpoint had them (a worker that
        # dies before its first report must not erase them).
        states[i].positions = dict(job.positions)
        p = ctx.Process(target=_child_main, args=(job, out), name=f"ddbmigrate-worker-{i}", daemon=True)
        p.start()
        children.append(p)

    def merged(live: bool) -> Dict[str, int]:
        total = dict(base_counters)
        for st in states:
            for k, v in (st.live if live and not st.finished else st.committed).items():
                total[k] = total.get(k, 0) + v
        return total

    def save(final: bool = False) -> None:
        if store is None:
            return
        pos: Dict[str, Any] = {}
        done = set(done_all)
        for st in states:
            pos.update(st.positions)
            done.update(st.done)
        for d in done:
            pos.pop(d, None)
        store.save(CheckpointState(fingerprint=fp, job=identity, positions=pos, done=sorted(done),
                                   counters=merged(False), state="done" if final else "running"))

    def snapshot() -> Dict[str, Any]:
        c = merged(True)
        stats = merge_stats(*(st.stats for st in states))
        return {"done": c.get("read", 0), "total": total_estimate, "retries": sum(stats["retries"].values()),
                "throttles": stats["retries"].get("throttle", 0), "dead_lettered": c.get("dead_lettered", 0)}

    progress = Progress("copy", snapshot, mode=opts.progress)
    progress.start()
    t0 = time.monotonic()
    interrupted = False
    last_save = 0.0
    try:
        while not all(st.finished for st in states):
            try:
                msg = out.get(timeout=0.5)
            except _queue.Empty:
                for i, p in enumerate(children):
                    if not p.is_alive() and not states[i].finished:
                        # Killed without a word (OOM, kill -9): what it reported stays valid.
                        states[i].finished = True
                        states[i].error = {"type": "FatalError", "exit_code": 1,
                                           "message": f"worker process {i} died (exit code {p.exitcode})"}
                continue
            except KeyboardInterrupt:
                interrupted = True
                for p in children:
                    if p.is_alive():
                        os.kill(p.pid, signal.SIGTERM)
                continue
            kind, i = msg[0], msg[1]
            st = states[i]
            if kind == "ckpt":
                st.positions, st.done, st.committed = msg[2], msg[3], msg[4]
                if time.monotonic() - last_save > 1.0:
                    save()
                    last_save = time.monotonic()
            elif kind == "live":
                st.live, st.stats = msg[2], msg[3]
            elif kind == "end":
                if msg[2]:
                    st.committed = msg[2]
                st.stats, st.reasons, st.error = msg[3] or st.stats, msg[4], msg[5]
                st.finished = True
                if st.error is not None:
                    for p in children:
                        if p.is_alive():
                            os.kill(p.pid, signal.SIGTERM)
    finally:
        for p in children:
            p.join(timeout=60)
        progress.stop()
    errors = [st.error for st in states if st.error]
    error: Optional[DdbMigrateError] = None
    real = [e for e in errors if e.get("type") != "InterruptedError_"]
    if real:
        e0 = real[0]
        cls = {75: RetriesExhaustedError, 2: UsageError}.get(int(e0.get("exit_code", 1)), FatalError)
        error = cls(e0["message"])
    elif errors or interrupted:
        error = interrupted_error(report.checkpoint_path)
        report.status = "interrupted"
    if error is None:
        report.status = "dry-run" if opts.dry_run else "done"
    elif report.status != "interrupted":
        report.status = "failed"
    _merge_dead_letters(opts.dead_letter, n)
    stats = merge_stats(*(st.stats for st in states))
    finish(report, merged(False), stats, time.monotonic() - t0)
    report.segments = total_segments
    for st in states:
        for k, v in st.reasons.items():
            report.dead_letter_reasons[k] = report.dead_letter_reasons.get(k, 0) + v
    save(final=error is None)
    report.timeline = progress.timeline
    if error is not None:
        report.error = error.one_line()
    return deliver(report, opts.report, error)


def _merge_dead_letters(path: Optional[str], n: int) -> None:
    """Append the workers' dead-letter parts to the one file the user asked for."""
    if not path:
        return
    parts = [f"{path}.part{i}" for i in range(n) if os.path.exists(f"{path}.part{i}")]
    if not parts:
        return
    with open(path, "ab") as out:
        for part in parts:
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out)
        out.flush()
        os.fsync(out.fileno())
    for part in parts:
        os.unlink(part)
