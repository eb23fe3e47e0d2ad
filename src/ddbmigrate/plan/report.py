"""The combined report of a plan run: one :class:`JobResult` per job, totals, and the exit code.

Data only: the terminal table is :func:`ddbmigrate.reporting.terminal.render_plan_report`, and
``ddbmigrate report`` draws the HTML from :meth:`PlanReport.to_dict`.

Invariants: a job that failed, was blocked or never started is in ``jobs`` with its status and
error (a plan never drops one), and the exit code is the plan's worst outcome: a fatal failure
(1/2) before a retriable one (75), then interrupted (130), verify differences (4), dead letters
(3), else 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import orjson

from ..errors import (
    EXIT_DEAD_LETTERS,
    EXIT_DIFFERENCES,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
)
from ..reporting.report import utcnow
from ..state.checkpoint import atomic_write


@dataclass
class JobResult:
    """How one job of a plan ended (``report`` is the job's own report, as a dict)."""

    name: str
    kind: str
    line: int
    status: str = "not-started"  # done | failed | interrupted | blocked | not-started | differences
    description: str = ""
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    offset_seconds: Optional[float] = None  # start, in seconds after the plan started
    duration_seconds: float = 0.0
    exit_code: int = EXIT_OK
    error: Optional[str] = None
    checkpoint_path: Optional[str] = None
    dead_letter_path: Optional[str] = None
    resumed_from_state: bool = False
    report: Optional[Dict[str, Any]] = None
    verify: Optional[Dict[str, Any]] = None


@dataclass
class PlanReport:
    """The combined report of a plan run: one entry per job, plus totals."""

    plan: str
    name: str
    status: str = "done"  # done | failed | interrupted | differences
    started_at: str = field(default_factory=utcnow)
    finished_at: Optional[str] = None
    duration_seconds: float = 0.0
    parallel: int = 1
    state_dir: str = ""
    jobs: List[JobResult] = field(default_factory=list)
    totals: Dict[str, Any] = field(default_factory=dict)
    timeline: List[Dict[str, Any]] = field(default_factory=list)

    kind: str = "plan"

    @property
    def exit_code(self) -> int:
        codes = [j.exit_code for j in self.jobs]
        failed = [c for j, c in zip(self.jobs, codes) if j.status in ("failed", "blocked")]
        fatal = [c for c in failed if c in (EXIT_FATAL, EXIT_USAGE)]
        # Before interrupted: a job that failed for good before the Ctrl-C needs fixing, and a
        # 130 would say that resuming is all there is to do.
        if fatal:
            return fatal[0]
        if failed:
            return max(failed)
        if self.status == "interrupted":
            return EXIT_INTERRUPTED
        if any(j.status in ("interrupted", "not-started") for j in self.jobs):
            return EXIT_INTERRUPTED
        if EXIT_DIFFERENCES in codes:
            return EXIT_DIFFERENCES
        if EXIT_DEAD_LETTERS in codes:
            return EXIT_DEAD_LETTERS
        return EXIT_OK

    def balanced(self) -> bool:
        # (None: a job with no verdict, a verify that failed before comparing: nothing to add up.)
        return all(j.report is None or j.report.get("balanced", True) is not False for j in self.jobs)

    def job(self, name: str) -> JobResult:
        for j in self.jobs:
            if j.name == name:
                return j
        raise KeyError(name)

    def compute_totals(self) -> None:
        counters: Dict[str, int] = {}
        retries: Dict[str, int] = {}
        dead = 0
        for j in self.jobs:
            if not j.report:
                continue
            for k, v in (j.report.get("counters") or {}).items():
                if isinstance(v, int):
                    counters[k] = counters.get(k, 0) + v
            for k, v in (j.report.get("retries") or {}).items():
                if isinstance(v, int):
                    retries[k] = retries.get(k, 0) + v
            dead += int((j.report.get("counters") or {}).get("dead_lettered", 0) or 0)
        by_status: Dict[str, int] = {}
        for j in self.jobs:
            by_status[j.status] = by_status.get(j.status, 0) + 1
        self.totals = {"jobs": len(self.jobs), "by_status": by_status, "counters": counters, "retries": retries,
                       "dead_lettered": dead, "balanced": self.balanced()}

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["exit_code"] = self.exit_code
        d["balanced"] = self.balanced()
        return d

    def write_json(self, path: str) -> None:
        from ..logs import redact_obj

        atomic_write(path, orjson.dumps(redact_obj(self.to_dict()), option=orjson.OPT_INDENT_2, default=str))
