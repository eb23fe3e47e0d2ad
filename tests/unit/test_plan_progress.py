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
    # the total counts an unknown-size job as its done items
    assert totals[2]["done"] == 75 and totals[2]["total"] == 115
    assert events[-1]["event"] == "progress_final"


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
