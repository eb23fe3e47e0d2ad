"""The combined plan display: per-job phases, totals, timelines, JSON events (fake clock)."""

from __future__ import annotations

import io
import json
from typing import Any, Dict

from ddbmigrate.plan.progress import PlanProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_totals_timelines_and_json_events() -> None:
    clock = Clock()
    out = io.StringIO()
    pp = PlanProgress([("users", "users"), ("orders", "orders")], mode="json", stream=out, interval=3600,
                      clock=clock)
    pp.start()
    state: Dict[str, Dict[str, Any]] = {"users": {"done": 0, "total": 100, "retries": 0, "throttles": 0},
                                        "orders": {"done": 0, "total": None, "retries": 0, "throttles": 0}}
    detach_u = pp.observer_for("users").attach("copy", lambda: dict(state["users"]))
    detach_o = pp.observer_for("orders").attach("copy", lambda: dict(state["orders"]))
    for step in range(1, 4):
        clock.now += 1.0
        state["users"].update(done=20 * step, retries=step, throttles=step - 1)
        state["orders"].update(done=5 * step)
        pp._tick()
    detach_u()
    detach_o()
    pp.stop()
    tl = pp.phase_timeline("users", "copy")
    assert [p["done"] for p in tl] == [0, 20, 40, 60, 60] and tl[3] == {"t": 3.0, "done": 60, "retries": 3,
                                                                         "throttles": 2}
    assert [p["done"] for p in pp.timeline][:3] == [25, 50, 75]
    events = [json.loads(x) for x in out.getvalue().splitlines()]
    users = [e for e in events if e["job"] == "users"]
    assert users[1]["items_per_s"] == 20.0 and users[1]["eta_s"] == 3.0  # 60 left at 20/s
    totals = [e for e in events if e["job"] == "total"]
    # a running job of unknown size makes the plan's total unknown (the others' total would read
    # as nearly done); the rate is from the plan's start, on the first line too
    assert totals[2]["done"] == 75 and totals[2]["total"] is None and totals[2]["eta_s"] is None
    assert totals[0]["items_per_s"] == 25.0
    assert events[-1]["event"] == "progress_final"


def test_a_job_still_to_start_makes_the_plans_total_unknown() -> None:
    clock = Clock()
    out = io.StringIO()
    pp = PlanProgress([("a", "a"), ("b", "b")], mode="json", stream=out, interval=3600, clock=clock)
    pp.start()
    state = {"done": 0, "total": 100}
    detach = pp.observer_for("a").attach("copy", lambda: dict(state))
    clock.now += 2.0
    state["done"] = 100
    pp._tick()  # a is done with its 100, b has not started: not "100 of 100"
    total = [json.loads(x) for x in out.getvalue().splitlines() if json.loads(x)["job"] == "total"][-1]
    assert total["done"] == 100 and total["total"] is None and total["waiting"] == 1  # b
    detach()
    pp.set_status("a", "done")
    detach = pp.observer_for("b").attach("copy", lambda: {"done": 10, "total": 50})
    clock.now += 1.0
    pp._tick()
    detach()
    pp.stop()
    total = [json.loads(x) for x in out.getvalue().splitlines() if json.loads(x)["job"] == "total"][-2]
    assert total["done"] == 110 and total["total"] == 150 and total["waiting"] == 0


def test_phases_are_kept_separately() -> None:
    clock = Clock()
    pp = PlanProgress([("j", "j")], mode="off", interval=3600, clock=clock)
    pp.start()
    done = {"n": 0}
    detach = pp.observer_for("j").attach("clean", lambda: {"done": done["n"]})
    done["n"] = 7
    detach()
    detach = pp.observer_for("j").attach("copy", lambda: {"done": done["n"]})
    done["n"] = 9
    pp._tick()
    detach()
    pp.stop()
    assert [p["done"] for p in pp.phase_timeline("j", "clean")] == [0, 7]
    assert [p["done"] for p in pp.phase_timeline("j", "copy")] == [7, 9, 9]
    assert pp.phase_timeline("j", "verify") == []


def test_a_broken_snapshot_never_stops_the_display() -> None:
    pp = PlanProgress([("j", "j")], mode="json", stream=io.StringIO(), interval=3600, clock=Clock())
    pp.start()

    def boom() -> Dict[str, Any]:
        raise RuntimeError("display bug")

    detach = pp.observer_for("j").attach("copy", boom)
    pp._safe_tick()
    detach()
    pp.stop()
