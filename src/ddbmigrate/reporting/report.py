"""The report every job returns: counts that add up, retries by cause, capacity, speed.

Balance (invariant 2 of the pipeline), checked by :meth:`Report.balanced`::

    read + fanout_extra == written + deleted + skipped_existing + collapsed + dead_lettered + dropped
                           + unchanged + vanished      (an in-place update: left as they were / deleted meanwhile)
                           + condition_failed          (bulk put --condition: the condition did not hold)

Without a transform this is ``read == written + dead_lettered + collapsed (+ skipped_existing)``.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import orjson

from ..errors import EXIT_DEAD_LETTERS, EXIT_OK
from ..state.checkpoint import atomic_write


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Report:
    job: str
    source: str = ""
    target: str = ""
    status: str = "done"  # done | interrupted | failed | dry-run
    started_at: str = field(default_factory=utcnow)
    finished_at: Optional[str] = None
    duration_seconds: float = 0.0
    counters: Dict[str, int] = field(default_factory=dict)
    retries: Dict[str, int] = field(default_factory=dict)
    consumed_read_units: float = 0.0
    consumed_write_units: float = 0.0
    items_per_second: float = 0.0
    segments: Optional[int] = None
    writers: Optional[int] = None
    dead_letter_path: Optional[str] = None
    dead_letter_reasons: Dict[str, int] = field(default_factory=dict)
    checkpoint_path: Optional[str] = None
    error: Optional[str] = None
    samples: List[Dict[str, Any]] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)
    # per limiter ("read"/"write"): {"limit": units/s, "current": units/s at the end, "throttle_events": n};
    # "auto" when not given; "declared": the table's figure it started at, "declared_last" the figure
    # it read later if that changed, "declared_look_failures" the looks that failed
    rate_limits: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    timeline: List[Dict[str, Any]] = field(default_factory=list)
    # The exit code of a run that ended on an error (130 interrupted, 75 resumable, 1, 2);
    # None for a run that ended: its code comes from its counters.
    error_exit_code: Optional[int] = None

    # ------------------------------------------------------------------ derived

    def count(self, name: str) -> int:
        return int(self.counters.get(name, 0))

    @property
    def read(self) -> int:
        return self.count("read")

    @property
    def written(self) -> int:
        return self.count("written")

    @property
    def dead_lettered(self) -> int:
        return self.count("dead_lettered")

    def balanced(self) -> bool:
        c = self.count
        lhs = c("read") + c("fanout_extra")
        rhs = (c("written") + c("deleted") + c("skipped_existing") + c("collapsed") + c("dead_lettered")
               + c("dropped") + c("unchanged") + c("vanished") + c("condition_failed"))
        return lhs == rhs

    @property
    def exit_code(self) -> int:
        if self.error_exit_code is not None:
            return self.error_exit_code
        return EXIT_DEAD_LETTERS if self.dead_lettered else EXIT_OK

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        del d["error_exit_code"]
        d["balanced"] = self.balanced()
        d["exit_code"] = self.exit_code
        return d

    def write_json(self, path: str) -> None:
        from ..logs import redact_obj

        atomic_write(path, orjson.dumps(redact_obj(self.to_dict()), option=orjson.OPT_INDENT_2, default=str))


def _moved(job: str, counters: Mapping[str, int]) -> int:
    if job in ("export", "verify", "update"):  # an update's unchanged items are work done too
        return int(counters.get("read", 0))
    return sum(int(counters.get(k, 0)) for k in ("written", "deleted", "skipped_existing"))


def finish(report: Report, counters: Dict[str, int], stats: Dict[str, Any], elapsed: float,
           before: Optional[Mapping[str, int]] = None) -> Report:
    """``counters`` are the whole job's; ``before``, what a resumed job's checkpoint held when
    this run began: items/s is this run's items over this run's time."""
    report.counters = {k: v for k, v in counters.items()}
    report.retries = dict(stats.get("retries", {}))
    report.consumed_read_units = float(stats.get("consumed_read_units", 0.0))
    report.consumed_write_units = float(stats.get("consumed_write_units", 0.0))
    report.duration_seconds = round(elapsed, 3)
    moved = _moved(report.job, counters) - (_moved(report.job, before) if before else 0)
    report.items_per_second = round(max(0, moved) / elapsed, 1) if elapsed > 0 else 0.0
    if before and any(before.values()):
        # The counts are the whole job's, the time, units, retries and rate this run's: said, so
        # that 20,000 written over this run's 16.9 s is not read as this run's rate.
        report.extra["resumed"] = {"counters_before": {k: int(v) for k, v in before.items() if v},
                                   "note": "counters are the whole job's; duration, units, retries and "
                                           "items_per_second are this run's"}
    report.finished_at = utcnow()
    return report


def deliver(report: Report, path: Optional[str], error: Optional[BaseException] = None) -> Report:
    """Write the report to ``path`` (if given) and return it; with ``error``, raise that instead,
    carrying the report as ``error.report`` so a failed job still shows its counts."""
    if error is not None:
        report.error_exit_code = int(getattr(error, "exit_code", 1))
    if path:
        report.write_json(path)
    if error is not None:
        setattr(error, "report", report)
        raise error
    return report


def merge_stats(*snaps: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"retries": {}, "consumed_read_units": 0.0, "consumed_write_units": 0.0}
    for s in snaps:
        for k, v in s.get("retries", {}).items():
            out["retries"][k] = out["retries"].get(k, 0) + v
        out["consumed_read_units"] += s.get("consumed_read_units", 0.0)
        out["consumed_write_units"] += s.get("consumed_write_units", 0.0)
    return out


def default_report_dir() -> str:
    return os.path.join(".ddbmigrate")
