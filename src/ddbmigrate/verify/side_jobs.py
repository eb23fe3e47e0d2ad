"""A verify's two scans as jobs: each side is read by the job model into a compare sink.

    expected: Job(side's SourceSpec ─▶ ProcessingSpec(keys, transform, on_error, dedupe=False)
                  ─▶ CompareSpillSpec(EXPECTED))        — literally what a copy would write
    actual:   Job(side's SourceSpec ─▶ ProcessingSpec(keys, key checks only) ─▶ CompareSpillSpec(ACTUAL))

Both run on the engine verify is given (threads or processes), through the one driver, so a
side is read, transformed, validated and counted exactly as a copy would; the compare sink
spills every op into key-hash partition files (one set per worker), which the comparison
(:mod:`ddbmigrate.verify.compare`) then reads partition by partition.

What a job dead-letters becomes verify's categories (:func:`side_outcomes`):

    expected job: stage "validate" (InvalidKey, ItemTooLarge, and
                  DuplicateKey: a fan-out giving one key twice)     -> ``invalid`` differences
                  stage "read" (a record the source could not parse) -> ``unreadable`` (side source)
                  stage "transform" (``on_error=skip``)              -> counted as ``transform_errors``
    actual job:   stage "read" or "validate"                         -> ``unreadable`` (side target)

Invariant: every record a side's job reads ends in exactly one of: spilled (then compared),
sampled out, dropped by the transform, a transform error, or a dead letter turned into one
difference line; so :meth:`VerifyReport.balanced` holds with the job's own counters.
``dedupe=False`` keeps duplicate keys of a side apart, so the comparer counts them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import orjson

from ..config import RunOptions
from ..core.items import KeySchema
from ..core.specs import ProcessingSpec, SourceSpec
from ..engine.job import Job
from ..engine.run import Engine, Snapshot
from ..errors import DdbMigrateError, InterruptedError_
from ..reporting.report import Report
from ..sinks.compare_spill import ACTUAL, EXPECTED, CompareSpillSpec, SpillSet, spill_of
from .compare import Emit as DiffWriter

# Today's verify kept at most this much of an unparsable record in its difference line.
RAW_KEPT = 10_000
SIDE_NAME = {EXPECTED: "source", ACTUAL: "target"}
# The ``job`` label of each side's --metrics-port series.
METRICS_JOB = {side: f"verify-{name}" for side, name in SIDE_NAME.items()}
# One writer thread per worker spills: the spill is one lock and the work is CPU under the GIL;
# more writers only contend (measured: 59k items/s with one, 45k with four, 100k items a side).
WRITERS = 1


@dataclass
class SideRun:
    """One side's job and what it left: its report, its spill files and its counters."""

    side: int
    job: Job
    dead_path: str
    report: Optional[Report] = None
    spill: Optional[SpillSet] = None
    counters: Dict[str, int] = field(default_factory=dict)


def side_job(side: int, spec: SourceSpec, processing: ProcessingSpec, sink: CompareSpillSpec, *, label: str,
             estimate: Optional[int], readers: int, dead_path: str, on_error: str,
             metrics: Tuple[str, Optional[int]] = ("127.0.0.1", None), metrics_job: Optional[str] = None) -> SideRun:
    """The job that reads one side into its compare sink (never checkpointed: a verify reruns).
    ``metrics_job`` prefixes its series' label (a plan's job name: ``orders:verify-source``)."""
    # Each side's series under its own label: the two jobs run one after the other and each counts
    # from 0, so under one label "read" fell from the source's count to the target's (Prometheus
    # takes a drop for a restart); apart, each only rises and both final counts stay served.
    opts = RunOptions(progress="off", dead_letter=dead_path, on_error=on_error, metrics_host=metrics[0],
                      metrics_port=metrics[1],
                      metrics_job=f"{metrics_job}:{METRICS_JOB[side]}" if metrics_job else METRICS_JOB[side])
    job = Job(kind="verify", identity={"job": "verify", "side": SIDE_NAME[side]}, options=opts, source=spec,
              sink=sink, processing=processing, source_label=label, target_label="compare",
              total_estimate=estimate, readers=readers, writers=WRITERS, checkpoint=False)
    return SideRun(side, job, dead_path)


class ReadObserver:
    """Follows the running side job's reads, for verify's own progress display."""

    def __init__(self, outer: Any = None) -> None:
        self.finished = 0
        self._current: Optional[Snapshot] = None
        self.outer = outer  # a caller's observer (a plan's row), shown each side job too

    def fields(self) -> Dict[str, Any]:
        return {}

    def attach(self, job: str, snapshot: Snapshot) -> Callable[[], None]:
        self._current = snapshot
        outer_detach = self.outer.attach(job, snapshot) if self.outer is not None else None

        def detach() -> None:
            # The job's last reads stay counted once it is over.
            self.finished += int(snapshot().get("read") or 0)
            self._current = None
            if outer_detach is not None:
                outer_detach()

        return detach

    def read(self) -> int:
        cur = self._current
        return self.finished + (int(cur().get("read") or 0) if cur is not None else 0)


def run_side(run: SideRun, engine: Engine, observer: ReadObserver, cancel: Optional[Any] = None) -> None:
    """Run one side's job; its spill files and counters land in ``run``. A job's error is raised
    as it is (a transform error with ``on_error=fail`` stops verify with that error)."""
    try:
        rep = engine.run(run.job, observer=observer, cancel=cancel)
    except DdbMigrateError as e:
        # What the side read before it stopped, and its client's retries and units: verify's own
        # report of the failure counts them.
        partial = getattr(e, "report", None)
        if isinstance(partial, Report):
            run.report = partial
            run.counters = {f"{SIDE_NAME[run.side]}_read": int(partial.counters.get("read", 0))}
        if isinstance(e, InterruptedError_):
            raise KeyboardInterrupt from None  # verify says what an interrupted verify means
        raise
    run.report = rep
    run.spill = spill_of(rep)
    c = rep.counters
    name = SIDE_NAME[run.side]
    run.counters = {f"{name}_read": c.get("read", 0), f"{name}_collapsed": c.get("collapsed", 0)}
    if run.side == EXPECTED:
        for k in ("dropped", "transform_errors", "fanout_extra"):
            run.counters[k] = c.get(k, 0)


def side_outcomes(run: SideRun, diffs: DiffWriter, source_keys: Optional[KeySchema], transformed: bool) -> None:
    """Turn the job's dead letters into difference lines and counters (see the module docstring).

    Streams the dead-letter file line by line: memory stays bounded however many there are.
    Lines keep the fields verify always wrote (category, side, origin, reason, raw / source_key,
    expected).
    """
    counts = run.counters
    name = SIDE_NAME[run.side]
    if not os.path.exists(run.dead_path):
        return
    with open(run.dead_path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            d = orjson.loads(line)
            stage, reason, origin = d.get("stage"), d.get("reason", ""), d.get("origin")
            if stage == "transform":
                continue  # counted by the job as transform_errors (on_error=skip), as before
            if stage == "read":
                counts[f"unreadable_{name}"] = counts.get(f"unreadable_{name}", 0) + 1
                diffs({"category": "unreadable", "side": name, "origin": origin, "reason": reason,
                       "raw": (d.get("raw") or "")[:RAW_KEPT]})
            elif run.side == ACTUAL:
                counts["unreadable_target"] = counts.get("unreadable_target", 0) + 1
                diffs({"category": "unreadable", "side": name, "reason": f"target record: {reason}",
                       "origin": origin})
            else:
                counts["invalid"] = counts.get("invalid", 0) + 1
                item = d.get("item")
                skey = d.get("source_key")
                if skey is None and not transformed and source_keys is not None:
                    # Without a transform the record is its own output: its source key is in it.
                    skey = source_keys.project_or_none(item)
                diffs({"category": "invalid", "reason": reason, "source_key": skey, "origin": origin,
                       "expected": item})


def stats_of(runs: List[SideRun]) -> List[Dict[str, Any]]:
    """The side jobs' client stats (retries, consumed units), for verify's report."""
    return [{"retries": dict(r.report.retries), "consumed_read_units": r.report.consumed_read_units,
             "consumed_write_units": 0.0} for r in runs if r.report is not None]


def spills(runs: List[SideRun]) -> Tuple[SpillSet, SpillSet]:
    by_side = {r.side: r.spill for r in runs}
    exp, act = by_side[EXPECTED], by_side[ACTUAL]
    assert exp is not None and act is not None
    return exp, act


__all__ = ["METRICS_JOB", "ReadObserver", "SideRun", "run_side", "side_job", "side_outcomes", "spills", "stats_of"]
