"""Shared machinery of the reliability suite: the source table, independent comparison, the
scenario runner (tool subprocess through the fault proxy, resumed until done) and the summary.

The comparison is independent of ddbmigrate: plain boto3 scans (support.scan_all) of the real
DynamoDB Local, compared by key with the canonical form of each item.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import orjson

from ddbmigrate.core.items import canonical_item
from ddbmigrate.testing import FaultProxy, ToolRun, run_tool
from support import scan_all

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_PATH = Path(os.environ.get("DDBMIGRATE_RELIABILITY_OUT") or ROOT / ".ddbmigrate-reliability.json")
SOAK = os.environ.get("DDBMIGRATE_SOAK", "").lower() in ("1", "true", "yes")
EXIT_RETRIABLE, EXIT_INTERRUPTED = 75, 130


@dataclass
class Outcome:
    """One scenario's line in the summary."""

    scenario: str
    kind: str  # fault | crash | signal | secrets | clean
    items: int = 0
    lost: int = 0
    unexpected: int = 0
    mismatched: int = 0
    write_amplification: float = 0.0
    retries: Dict[str, int] = field(default_factory=dict)
    recovery_s: Optional[float] = None
    peak_rss_mb: float = 0.0
    exit_codes: List[int] = field(default_factory=list)
    duration_s: float = 0.0
    notes: str = ""


RESULTS: List[Outcome] = []


def key_of(item: Dict[str, Any], key_names: Sequence[str] = ("pk",)) -> str:
    return orjson.dumps({k: item[k] for k in key_names}, option=orjson.OPT_SORT_KEYS).decode()


def by_key(items: List[Dict[str, Any]], key_names: Sequence[str] = ("pk",)) -> Dict[str, Any]:
    return {key_of(i, key_names): canonical_item(i) for i in items}


def compare(expected: Dict[str, Any], endpoint: str, table: str) -> Dict[str, int]:
    """lost / unexpected / mismatched between ``expected`` (by key) and an independent scan of ``table``."""
    got = by_key(scan_all(endpoint, table))
    lost = sum(1 for k in expected if k not in got)
    unexpected = sum(1 for k in got if k not in expected)
    mismatched = sum(1 for k, v in expected.items() if k in got and got[k] != v)
    return {"lost": lost, "unexpected": unexpected, "mismatched": mismatched}


def read_report(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


@dataclass
class Attempts:
    """Every run of one scenario (first run, kills, resumes) and the reports they left."""

    runs: List[ToolRun] = field(default_factory=list)
    reports: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def exit_codes(self) -> List[int]:
        return [r.exit_code for r in self.runs]

    @property
    def last_report(self) -> Dict[str, Any]:
        assert self.reports, f"no report written; runs: {self.describe()}"
        return self.reports[-1]

    def retries(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for rep in self.reports:
            for k, v in (rep.get("retries") or {}).items():
                out[k] = out.get(k, 0) + int(v)
        return out

    def peak_rss_mb(self) -> float:
        return round(max((r.peak_rss_kb for r in self.runs), default=0) / 1024, 1)

    def describe(self) -> str:
        return "\n".join(f"--- exit {r.exit_code} ({r.signalled or 'no signal'}) {r.args}\n{r.stderr[-2500:]}"
                         for r in self.runs)


def run_until_done(args: List[str], workdir: Path, *, env: Optional[Dict[str, str]] = None,
                   first: Optional[Dict[str, Any]] = None, then: Sequence[Dict[str, Any]] = (),
                   max_resumes: int = 4, timeout: float = 120.0, resume_first: bool = False) -> Attempts:
    """Run ``ddbmigrate *args`` (+ ``--report``) in ``workdir``; ``first`` and each of ``then`` are
    run_tool keyword overrides (kills, env) for the first run and the following resumes; after
    those, ``--resume`` until exit 0/3 (exit 75 and kills are resumable; anything else stops)."""
    att = Attempts()
    workdir.mkdir(parents=True, exist_ok=True)
    plans = [first or {}] + list(then)
    for i in range(len(plans) + max_resumes):
        plan = plans[i] if i < len(plans) else {}
        report = workdir / f"report-{i}.json"
        run_args = list(args) + ["--report", str(report)] + (["--resume"] if i or resume_first else [])
        run_env = dict(os.environ if env is None else env)
        run_env.update(plan.pop("env", {}) if "env" in plan else {})
        r = run_tool(run_args, env=run_env, cwd=str(workdir), timeout=timeout, **plan)
        att.runs.append(r)
        rep = read_report(report)
        if rep is not None:
            att.reports.append(rep)
        if r.timed_out:
            raise AssertionError(f"tool timed out\n{att.describe()}")
        if r.exit_code in (0, 3) and i >= len(plans) - 1:
            return att
        if r.exit_code not in (0, 3, EXIT_RETRIABLE, EXIT_INTERRUPTED, -9):
            raise AssertionError(f"unexpected exit {r.exit_code}\n{att.describe()}")
    raise AssertionError(f"not done after {len(att.runs)} runs\n{att.describe()}")


def record(outcome: Outcome) -> Outcome:
    RESULTS.append(outcome)
    return outcome


def write_summary() -> Optional[str]:
    if not RESULTS:
        return None
    rows = [asdict(o) for o in RESULTS]
    totals = {
        "scenarios": len(rows),
        "lost": sum(r["lost"] for r in rows), "unexpected": sum(r["unexpected"] for r in rows),
        "mismatched": sum(r["mismatched"] for r in rows),
        "kill_trials": sum(1 for r in rows if r["kind"] in ("crash", "clean-crash")),
        "max_write_amplification": max(r["write_amplification"] for r in rows),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
    }
    SUMMARY_PATH.write_text(json.dumps({"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                        "totals": totals, "scenarios": rows}, indent=2))
    return str(SUMMARY_PATH)


def summary_table() -> str:
    head = f"{'scenario':34} {'lost':>4} {'unexp':>5} {'mism':>4} {'w-amp':>6} {'recov s':>7} {'RSS MB':>6}  exits / retries"
    lines = [head, "-" * len(head)]
    for o in RESULTS:
        retries = ",".join(f"{k}:{v}" for k, v in sorted(o.retries.items()) if v) or "-"
        rec = f"{o.recovery_s:.2f}" if o.recovery_s is not None else "-"
        lines.append(f"{o.scenario[:34]:34} {o.lost:>4} {o.unexpected:>5} {o.mismatched:>4} "
                     f"{o.write_amplification:>6.3f} {rec:>7} {o.peak_rss_mb:>6.1f}  "
                     f"{o.exit_codes} {retries}")
    return "\n".join(lines)


def when_writes(proxy: FaultProxy, n: int) -> Callable[[], bool]:
    """A kill condition: the proxy has forwarded at least ``n`` write requests."""
    return lambda: proxy.audit.forwarded.get("BatchWriteItem", 0) >= n


# Slow enough that kills land mid-run, small pages so segments have several positions.
PACE = ["--max-write-units", "1500", "--max-read-units", "100", "--checkpoint-every", "0.3"]


def after_more_writes(proxy: FaultProxy, k: int) -> Callable[[], bool]:
    """True once the proxy forwarded ``k`` more BatchWriteItem requests than when first polled."""
    base: List[int] = []

    def cond() -> bool:
        n = proxy.audit.forwarded.get("BatchWriteItem", 0)
        if not base:
            base.append(n)
        return n - base[0] >= k

    return cond


def assert_copied(att: Attempts, diff: Dict[str, int], n: int) -> None:
    """Target == source, and the final report's counts add up to exactly the source's items."""
    assert diff == {"lost": 0, "unexpected": 0, "mismatched": 0}, att.describe()
    rep = att.last_report
    assert rep["balanced"], rep["counters"]
    assert rep["counters"]["read"] == n == rep["counters"]["written"], (rep["counters"], att.describe())
    # The rate limits were applied, and reported with their current rate and throttles.
    if "--max-write-units" in att.runs[-1].args:
        assert rep["rate_limits"]["write"]["limit"] == float(att.runs[-1].args[att.runs[-1].args.index("--max-write-units") + 1])
        final = [json.loads(line) for line in att.runs[-1].stderr.splitlines() if line.startswith('{"event":"progress_final"')]
        assert final and "write" in final[-1]["rate_limits"], att.runs[-1].stderr[-2000:]
