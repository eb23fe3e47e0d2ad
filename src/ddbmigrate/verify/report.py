"""What verify found: the report data, the sampling confidence, and the differences file.

``VerifyReport`` holds the counts by category — ``missing`` (expected, not in the target),
``unexpected`` (in the target, not expected), ``mismatched`` (same key, different content),
``invalid`` (an expected item that cannot exist in the target) and ``unreadable`` (a record that
could not be parsed) — and draws nothing: :func:`ddbmigrate.reporting.terminal.render_verify_report`
draws it. The differences file holds one JSON line per difference, with the item bodies.

Invariants:
1. Counts add up (:meth:`VerifyReport.balanced`): every record read on either side ends in
   exactly one outcome (compared, sampled out, dropped by the transform, invalid, unreadable).
2. No item body reaches the terminal or the JSON report: the report keeps bodiless previews
   (:func:`preview_entry`); bodies go only to the ``diff_path`` file the user asked for.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import orjson

from ..errors import EXIT_DIFFERENCES, EXIT_OK, UsageError
from ..reporting.report import Report
from ..state.paths import output_path_problem

CATEGORIES = ("missing", "unexpected", "mismatched", "invalid", "unreadable")
PREVIEW = 20


@dataclass
class VerifyReport(Report):
    """What ``verify`` found. ``exit_code`` is 0 when nothing differs (after repair), else 4."""

    job: str = "verify"
    equal: int = 0
    missing: int = 0
    unexpected: int = 0
    mismatched: int = 0
    invalid: int = 0
    unreadable: int = 0
    keys_only: bool = False
    sample_rate: Optional[float] = None
    confidence: Dict[str, Any] = field(default_factory=dict)
    diff_path: Optional[str] = None
    preview: List[Dict[str, Any]] = field(default_factory=list)
    partitions: int = 0
    spilled_bytes: int = 0
    memory_budget_bytes: int = 0
    repair: Optional[Dict[str, Any]] = None
    remaining: int = 0

    @property
    def differences(self) -> int:
        return self.missing + self.unexpected + self.mismatched + self.invalid + self.unreadable

    @property
    def equal_sides(self) -> bool:
        return self.differences == 0

    @property
    def compared(self) -> bool:
        """Both sides read to their end and compared: only then is there a verdict (a verify that
        failed or was interrupted says what it read, and that it has none)."""
        return self.status == "done"

    @property
    def exit_code(self) -> int:
        if self.error_exit_code is not None:
            return self.error_exit_code
        return EXIT_DIFFERENCES if self.remaining else EXIT_OK

    def balanced(self) -> bool:
        c = self.count
        source_ok = (c("source_read") + c("fanout_extra") == c("expected") + c("sampled_out_expected") + c("dropped")
                     + c("transform_errors") + c("invalid") + c("unreadable_source") + c("source_collapsed"))
        target_ok = c("target_read") == (c("actual") + c("sampled_out_actual") + c("unreadable_target")
                                         + c("target_collapsed"))
        compare_ok = (c("expected") == self.equal + self.missing + self.mismatched + c("expected_duplicates")
                      and c("actual") == self.equal + self.unexpected + self.mismatched + c("actual_duplicates"))
        return source_ok and target_ok and compare_ok

    def to_dict(self) -> Dict[str, Any]:
        d = super().to_dict()
        d["differences"] = self.differences
        d["equal_sides"] = self.equal_sides if self.compared else None
        # A verify stopped midway read records it never compared: its counts cannot add up, and
        # saying "false" would read as a bug. One stopped before reading adds up (all zeros), as
        # every job's report of a failure before its first read does.
        d["balanced"] = self.balanced() if self.compared or not self.count("read") else None
        return d


def sample_confidence(rate: float, found: int) -> Dict[str, Any]:
    """What a key-hash sample at ``rate`` that found ``found`` differences says about the whole.

    Each key is in the sample independently with probability ``rate``, so k differences all
    escape the sample with probability (1 - rate)^k.
    """
    catch = {str(k): round(1 - (1 - rate) ** k, 6) for k in (1, 10, 100, 1000)}
    out: Dict[str, Any] = {"rate": rate, "found": found, "estimated_total": round(found / rate, 1),
                           "catch_probability": catch}
    if found == 0:
        bound = math.inf if rate <= 0 else (1 if rate >= 1 else math.ceil(math.log(0.05) / math.log1p(-rate)))
        out["max_differences_95"] = bound
        out["statement"] = (f"no difference in the sample; with 95% confidence the full comparison would find "
                            f"fewer than {bound:,} differences (one given difference is caught with probability "
                            f"{rate:.2%}, 100 differences with probability {catch['100']:.2%})")
    else:
        out["statement"] = (f"{found:,} differences in the sample; about {found / rate:,.0f} expected in a full "
                            "comparison")
    return out


# --------------------------------------------------------------------------- differences file


def preview_entry(d: Dict[str, Any]) -> Dict[str, Any]:
    """A difference line without the item bodies: category, key, differing paths, reason, and
    for a record with no key (unreadable, or invalid without a source key) where it was read."""
    key = d.get("key") or d.get("source_key")
    p: Dict[str, Any] = {"category": d["category"], "key": key}
    if "differences" in d:
        p["paths"] = [x["path"] for x in d["differences"]]
    if d.get("side"):
        p["side"] = d["side"]
    if d.get("origin"):
        p["origin"] = d["origin"]
    if "reason" in d:
        p["reason"] = d["reason"]
    return p


def check_output_path(path: Optional[str], option: str, *, replaced: bool) -> None:
    """Before anything is read: a UsageError naming ``option`` if ``path`` cannot be written. An
    object-store path (``s3://``, Spark's differences) is its engine's to check."""
    if not path or "://" in path:
        return
    problem = output_path_problem(path, replaced=replaced)
    if problem:
        raise UsageError(f"{option} {path} cannot be written: {problem}",
                         hint=f"give {option} a path in a writable folder")


class DifferencesFile:
    """Writes difference lines (JSONL) and counts them; keeps a bodiless preview for the summary."""

    def __init__(self, path: str) -> None:
        self.path = path
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self._fh = open(path, "wb")
        self._lock = threading.Lock()
        self.counts: Dict[str, int] = {c: 0 for c in CATEGORIES}
        self.preview: List[Dict[str, Any]] = []

    def __call__(self, d: Dict[str, Any]) -> None:
        line = orjson.dumps(d) + b"\n"
        with self._lock:
            self._fh.write(line)
            self.counts[d["category"]] = self.counts.get(d["category"], 0) + 1
            if len(self.preview) < PREVIEW:
                self.preview.append(preview_entry(d))

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


def iter_diffs(path: str) -> Iterator[Dict[str, Any]]:
    """Read a differences file back (one JSON object per line)."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


__all__ = ["CATEGORIES", "DifferencesFile", "PREVIEW", "VerifyReport", "check_output_path", "iter_diffs",
           "preview_entry", "sample_confidence"]
