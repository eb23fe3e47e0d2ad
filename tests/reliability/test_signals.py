"""Ctrl-C / SIGTERM: stop reading, drain in-flight batches (bounded), save, say how to resume, exit 130."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from ddbmigrate.testing import FaultProxy, run_tool
from reliability_support import PACE, Outcome, after_more_writes, assert_copied, compare, read_report, record, run_until_done
from support import create_table

pytestmark = pytest.mark.reliability


def args(proxy: FaultProxy, src: str, dst: str, *extra: str) -> List[str]:
    return ["copy", src, dst, "--endpoint-url", proxy.url, "--segments", "4", "--progress", "json",
            "--checkpoint", "ck.json", *PACE, *extra]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_saves_and_resumes(endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path,
                                         sig: int) -> None:
    src, expected = source
    dst = create_table(endpoint)
    with FaultProxy(endpoint) as proxy:
        first = run_tool(args(proxy, src, dst, "--report", "stopped.json"), cwd=str(tmp_path), timeout=120,
                         kill_when=after_more_writes(proxy, 15), signal_to_send=sig)
        assert first.exit_code == 130, first.stderr
        assert "ck.json" in first.stderr and "--resume" in first.stderr
        assert "Traceback" not in first.stderr
        ck = json.loads((tmp_path / "ck.json").read_text())
        stopped = read_report(tmp_path / "stopped.json")
        assert ck["state"] == "running" and stopped is not None and stopped["status"] == "interrupted"
        # The interrupted run's counts are the committed ones: they add up, and match the checkpoint.
        assert stopped["balanced"] and ck["counters"]["read"] == stopped["counters"]["read"] > 0
        assert ck["counters"]["read"] < len(expected)
        att = run_until_done(args(proxy, src, dst), tmp_path, resume_first=True)
    diff = compare(expected, endpoint, dst)
    att.runs.insert(0, first)
    record(Outcome(scenario=f"copy/{signal.Signals(sig).name}+resume", kind="signal", items=len(expected), **diff,
                   write_amplification=proxy.audit.write_amplification(dst, len(expected)),
                   retries=att.retries(), recovery_s=round(sum(r.duration_s for r in att.runs[1:]), 2),
                   peak_rss_mb=att.peak_rss_mb(), exit_codes=att.exit_codes))
    assert_copied(att, diff, len(expected))


def outage_then_signal(proxy: FaultProxy, writes: int, delay: float) -> Callable[[], bool]:
    """Start an endless outage after ``writes`` writes; true ``delay`` seconds later."""
    state: Dict[str, float] = {}

    def cond() -> bool:
        if "t" not in state and proxy.audit.forwarded.get("BatchWriteItem", 0) >= writes:
            proxy.start_outage(3600)
            state["t"] = time.monotonic()
        return "t" in state and time.monotonic() - state["t"] >= delay

    return cond


@pytest.mark.parametrize("drain,attempts,delay,sig", [
    # In-flight batches cannot finish (every request is reset): the drain must time out
    # (--drain-timeout 1) and the process still exit 130 with its checkpoint saved.
    ("1", "50", 1.0, signal.SIGTERM),
    # The in-flight batches' retries run out while the job drains (2 attempts, well within
    # --drain-timeout): the user stopped the job, so 130 "interrupted", not 75 "failed".
    ("30", "2", 0.2, signal.SIGINT),
], ids=["drain-times-out", "retries-run-out-while-draining"])
def test_signal_during_an_outage_is_an_interrupt_and_keeps_a_consistent_checkpoint(
        endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path, drain: str, attempts: str, delay: float,
        sig: signal.Signals) -> None:
    src, expected = source
    dst = create_table(endpoint)
    with FaultProxy(endpoint) as proxy:
        first = run_tool(args(proxy, src, dst, "--drain-timeout", drain, "--max-attempts", attempts), cwd=str(tmp_path),
                         timeout=90, kill_when=outage_then_signal(proxy, 10, delay), signal_to_send=sig)
        assert first.exit_code == 130, first.stderr
        assert not first.timed_out and "--resume" in first.stderr
        assert "interrupted" in first.stderr and "still failing" not in first.stderr.split("error:")[-1]
        proxy.end_outage()
        att = run_until_done(args(proxy, src, dst), tmp_path, resume_first=True)
    diff = compare(expected, endpoint, dst)
    att.runs.insert(0, first)
    if sig == signal.SIGTERM:
        record(Outcome(scenario="copy/SIGTERM-in-outage+resume", kind="signal", items=len(expected), **diff,
                       write_amplification=proxy.audit.write_amplification(dst, len(expected)),
                       retries=att.retries(), recovery_s=round(sum(r.duration_s for r in att.runs[1:]), 2),
                       peak_rss_mb=att.peak_rss_mb(), exit_codes=att.exit_codes))
    assert_copied(att, diff, len(expected))


def test_sigterm_before_the_run_begins_is_an_interrupt_with_its_report(endpoint: str, tmp_path: Path) -> None:
    # The transform's sample (before the job, and before its own signal handling) is where the
    # SIGTERM lands: the command still ends as interrupted (exit 130) with its --report, as a
    # Ctrl-C would, rather than being killed by the signal (exit -15) with nothing said.
    src = create_table(endpoint)
    from support import put_items

    put_items(endpoint, src, [{"pk": {"S": f"k{i}"}} for i in range(20)])
    (tmp_path / "marker.py").write_text(
        "import pathlib, time\n"
        "def slow(item):\n"
        "    pathlib.Path('sampling').touch()\n"
        "    time.sleep(30)\n"
        "    return item\n")
    run = run_tool(["copy", src, src + "-new", "--endpoint-url", endpoint, "--create-target", "--transform",
                    "marker.py:slow", "--progress", "off", "--report", "r.json"], cwd=str(tmp_path), timeout=60,
                   kill_when=lambda: (tmp_path / "sampling").exists(), signal_to_send=signal.SIGTERM)
    assert run.signalled == "SIGTERM"
    assert run.exit_code == 130, (run.exit_code, run.stderr)
    assert "interrupted" in run.stderr and "Traceback" not in run.stderr
    rep = read_report(tmp_path / "r.json")
    assert rep is not None and rep["status"] == "interrupted" and rep["exit_code"] == 130
