"""A migration's record is one DynamoDB item: its per-step summary is cut to a byte budget, the
entries an operator needs kept, and totals over every step (no I/O)."""

from __future__ import annotations

from typing import Any, Dict, List

from ddbmigrate.migrations.history import FIRST_STEPS, bounded_summary, record_size


def entry(step: int, **extra: Any) -> Dict[str, Any]:
    return {"step": step, "kind": "copy" if step % 2 else "update", "what": f"src -> tenant-{step:05d}-users",
            "status": "done", "exit_code": 0, "counters": {"read": 3, "written": 3}, "seconds": 0.5,
            "checkpoint": f"/state/0001_m/{step:02d}-copy.checkpoint.json", **extra}


def test_a_short_summary_is_kept_whole_with_its_totals() -> None:
    summary = [entry(i) for i in range(1, 6)]
    kept, totals = bounded_summary(summary, 100_000)
    assert kept == summary
    assert totals == {"count": 5, "by_kind": {"copy": 3, "update": 2}, "counters": {"read": 15, "written": 15},
                      "seconds": 2.5, "omitted": 0}


def test_a_long_summary_keeps_the_last_the_notable_and_the_first_steps_within_the_budget() -> None:
    n = 20_000
    notable = {500: {"started_over": "its checkpoint is of another job"}, 7_000: {"kept": "finished before"},
               12_000: {"unsettled": {"written": 4}}, 15_000: {"exit_code": 3, "dead_letters": "/dl.jsonl"}}
    summary: List[Dict[str, Any]] = [entry(i, **notable.get(i, {})) for i in range(1, n)]
    summary.append(entry(n, status="failed", error="throttled " + "x" * 50_000))  # where the run stopped
    budget = 64 * 1024
    kept, totals = bounded_summary(summary, budget)
    assert record_size(kept) <= budget
    steps = [e["step"] for e in kept]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert steps[-1] == n and kept[-1]["error"].endswith("more characters)")  # the failure, its error cut
    assert set(notable) <= set(steps)
    assert steps[:FIRST_STEPS] == list(range(1, FIRST_STEPS + 1))
    assert n - 1 in steps  # then the latest ones
    assert totals["count"] == n and totals["omitted"] == n - len(kept)
    assert totals["counters"] == {"read": 3 * n, "written": 3 * n} and totals["seconds"] == 0.5 * n
    assert totals["by_kind"] == {"copy": n // 2, "update": n // 2}
    assert totals["omitted_steps"].startswith(f"{FIRST_STEPS + 1}-499, 501-")
    assert len(totals["omitted_steps"]) < 2100  # cut as an error is


def test_notable_steps_past_the_budget_keep_the_newest() -> None:
    summary = [entry(i, error=f"step {i} failed " + "y" * 1500) for i in range(1, 2001)]
    kept, totals = bounded_summary(summary, 32 * 1024)
    steps = [e["step"] for e in kept]
    assert steps[-1] == 2000 and steps == list(range(2001 - len(steps), 2001))
    assert totals["omitted"] == 2000 - len(steps) > 0
