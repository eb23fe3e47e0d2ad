"""kill -9 of the tool at each named crash point and at seeded random moments, then --resume.

20 trials in all (the issue's number): 7 at named crash points (copy and clean) and 13 seeded
random kills, some of which also kill the first resume. Each trial ends with an independent
scan showing target == source (or an empty table for clean) and a final report whose counts
add up to exactly the number of source items: the checkpoint's counters match its positions,
so nothing is counted twice or missed across the kills.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from ddbmigrate import RunOptions, TableRef, copy_table
from ddbmigrate.testing import FaultProxy, Faults
from reliability_support import PACE, Outcome, after_more_writes, assert_copied, compare, record, run_until_done
from support import create_table, scan_all

pytestmark = pytest.mark.reliability



def crash_env(point: str, after: int) -> Dict[str, str]:
    return {"DDBMIGRATE_CRASH_AT": point, "DDBMIGRATE_CRASH_AFTER": str(after)}




def finish_trial(name: str, kind: str, att: Any, proxy: FaultProxy, table: str, expected_n: int,
                 diff: Dict[str, int]) -> Outcome:
    return record(Outcome(
        scenario=name, kind=kind, items=expected_n, **diff,
        write_amplification=proxy.audit.write_amplification(table, expected_n), retries=att.retries(),
        recovery_s=round(sum(r.duration_s for r in att.runs[1:]), 2), peak_rss_mb=att.peak_rss_mb(),
        exit_codes=att.exit_codes, duration_s=round(sum(r.duration_s for r in att.runs), 2),
    ))


def copy_args(proxy: FaultProxy, src: str, dst: str) -> List[str]:
    return ["copy", src, dst, "--endpoint-url", proxy.url, "--segments", "4", "--progress", "json", *PACE]




NAMED_COPY = [("after_batch_ack", 1), ("after_batch_ack", 25), ("after_batch_ack", 60),
              ("mid_checkpoint_write", 1), ("mid_checkpoint_write", 3)]


@pytest.mark.parametrize("point,after", NAMED_COPY, ids=[f"{p}-{a}" for p, a in NAMED_COPY])
def test_copy_killed_at_named_crash_point(endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path,
                                          point: str, after: int) -> None:
    src, expected = source
    dst = create_table(endpoint)
    with FaultProxy(endpoint) as proxy:
        att = run_until_done(copy_args(proxy, src, dst), tmp_path, first={"env": crash_env(point, after)})
    diff = compare(expected, endpoint, dst)
    finish_trial(f"copy/kill9@{point}#{after}", "crash", att, proxy, dst, len(expected), diff)
    assert att.exit_codes[0] == -9, att.describe()  # the crash point really fired
    assert_copied(att, diff, len(expected))


NAMED_CLEAN = [("after_batch_ack", 15), ("mid_checkpoint_write", 2)]


@pytest.mark.parametrize("point,after", NAMED_CLEAN, ids=[f"{p}-{a}" for p, a in NAMED_CLEAN])
def test_clean_killed_at_named_crash_point(endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path,
                                           point: str, after: int) -> None:
    src, expected = source
    table = create_table(endpoint)
    copy_table(TableRef(src, endpoint_url=endpoint), TableRef(table, endpoint_url=endpoint),
               RunOptions(progress="off", checkpoint=str(tmp_path / "seed.json")))
    with FaultProxy(endpoint) as proxy:
        att = run_until_done(["clean", table, "--yes", "--endpoint-url", proxy.url, "--segments", "4",
                              "--progress", "json", *PACE], tmp_path, first={"env": crash_env(point, after)})
    remaining = scan_all(endpoint, table)
    finish_trial(f"clean/kill9@{point}#{after}", "crash", att, proxy, table, len(expected),
                 {"lost": 0, "unexpected": len(remaining), "mismatched": 0})
    assert att.exit_codes[0] == -9, att.describe()
    assert remaining == [], att.describe()
    rep = att.last_report
    # A clean's source is the table it empties: items deleted by the killed run before its
    # checkpoint caught up are gone when the resume re-scans that page, so they are read (and
    # counted) once, by the run that deleted them only if it committed. What must hold: counts
    # balance, and every item's key was sent a delete at least once.
    assert rep["balanced"] and rep["counters"]["read"] == rep["counters"]["deleted"] <= len(expected)
    assert len(proxy.audit.writes_for(table)) == len(expected)


RANDOM_TRIALS = 13


@pytest.mark.parametrize("trial", range(RANDOM_TRIALS))
def test_copy_killed_at_a_random_moment(endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path,
                                        trial: int) -> None:
    rng = random.Random(int(os.environ.get("DDBMIGRATE_RELIABILITY_SEED", "2026")) * 100 + trial)
    src, expected = source
    dst = create_table(endpoint)
    batches = len(expected) // 25
    # Some trials add light network faults, so kills also land in the middle of retries.
    faults = Faults(throttle=0.03, reset=0.03, unprocessed=0.08) if trial % 3 == 2 else Faults()
    with FaultProxy(endpoint, seed=trial, faults=faults) as proxy:
        if trial % 2:
            first: Dict[str, Any] = {"kill_after": round(rng.uniform(0.6, 2.2), 2)}
        else:
            first = {"kill_when": after_more_writes(proxy, rng.randint(1, batches - 5))}
        then = [{"kill_when": after_more_writes(proxy, rng.randint(1, batches // 2))}] if rng.random() < 0.4 else []
        att = run_until_done(copy_args(proxy, src, dst), tmp_path, first=first, then=then)
    diff = compare(expected, endpoint, dst)
    how = ", ".join(f"{k}={v if not callable(v) else 'writes'}" for k, v in first.items())
    out = finish_trial(f"copy/kill9@random#{trial}", "crash", att, proxy, dst, len(expected), diff)
    out.notes = f"{how}; resume killed too: {bool(then)}; faults: {dict(proxy.audit.faults)}"
    assert_copied(att, diff, len(expected))


FAILING_SEVENTH = "def f(item):\n    if int(item['n']) % 7 == 0:\n        raise ValueError('seven')\n    return item\n"


@pytest.mark.parametrize("after", [3, 12])
def test_dead_letters_after_kill_9_and_resume_hold_each_item_once(endpoint: str, tmp_path: Path, after: int) -> None:
    """kill -9 after some acknowledged batches: the dead letters of chunks committed after the last
    checkpoint are in the file but not in the checkpoint; the resume cuts them off before it reads
    those chunks again, so each rejected item has exactly one line."""
    from support import put_items

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i:05d}"}, "n": {"N": str(i)}} for i in range(700)])
    (tmp_path / "tf.py").write_text(FAILING_SEVENTH)
    dead = tmp_path / "dead.jsonl"
    args = ["copy", src, dst, "--endpoint-url", endpoint, "--segments", "4", "--progress", "json",
            "--transform", str(tmp_path / "tf.py") + ":f", "--on-error", "skip", "--dead-letter", str(dead),
            "--checkpoint-every", "5", "--max-read-units", "40", "--writers", "2"]
    att = run_until_done(args, tmp_path, first={"env": crash_env("after_batch_ack", after)})
    assert att.exit_codes[0] < 0, att.describe()  # the first run was killed
    import json

    keys = [json.loads(line)["source_key"]["pk"]["S"] for line in dead.read_text().splitlines()]
    expected = sorted(f"k{i:05d}" for i in range(700) if i % 7 == 0)
    assert sorted(keys) == expected, f"{len(keys)} lines for {len(expected)} items; {att.describe()}"
    assert att.last_report["counters"]["dead_lettered"] == len(expected)
