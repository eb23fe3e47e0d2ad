"""The cutover gate: wait until a running replication has caught up on a quiet source, then verify.

    status file (state.status) ──▶ lag 0, nothing pending, quiet for quiet_period ──▶ verify_tables ──▶ GO / NO-GO

Invariants:
1. Read-only: the gate reads the replicator's status file and the two tables, and writes nothing.
2. GO only when the replicator is alive (or stopped cleanly), caught up on every shard with
   nothing pending, the source has been quiet for ``quiet_period`` seconds, and (unless skipped)
   verify found the target equal to transform(source); every other outcome is NO-GO with the
   reason and a non-zero exit code.
3. A stopped replicator reads no stream: it cannot tell whether the source took writes after it
   stopped. Only verify can vouch for it, so ``verify=False`` with a stopped replicator is NO-GO.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

from ..config import TableRef
from ..core.transform import Transform
from ..errors import EXIT_DIFFERENCES, EXIT_FATAL, EXIT_OK, UsageError
from ..state.status import read_status, status_path_for


@dataclass
class CutoverReport:
    """Go / no-go with the numbers behind it. ``exit_code``: 0 go, 4 differences, 1 lag never reached 0."""

    source: str
    target: str
    go: bool = False
    reason: str = ""
    waited_seconds: float = 0.0
    lag_seconds: Optional[float] = None
    pending_records: Optional[int] = None
    quiet_seconds: Optional[float] = None
    replicator_state: Optional[str] = None
    counts: Dict[str, Any] = field(default_factory=dict)
    verify: Optional[Dict[str, Any]] = None
    differences: Optional[int] = None
    # On NO-GO: the first differing keys (category, key, paths) and the file holding them all.
    differing: List[Dict[str, Any]] = field(default_factory=list)
    diff_path: Optional[str] = None
    transform: Optional[str] = None
    exit_code: int = EXIT_FATAL

    def to_dict(self) -> Dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def cutover(
    source: TableRef,
    target: TableRef,
    *,
    transform: Union[str, Transform, None] = None,
    status_path: Optional[str] = None,
    checkpoint: Optional[str] = None,
    quiet_period: float = 10.0,
    timeout: float = 600.0,
    verify: bool = True,
    progress: str = "off",
    verify_fn: Optional[Callable[..., Any]] = None,
    diff_path: Optional[str] = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> CutoverReport:
    """The cutover gate: wait for lag 0 after source writes stopped, then verify; go or no-go.

    Reads the status file of the running replicator. "Lag 0" means: the replicator is alive (or
    stopped cleanly), caught up on every shard, nothing pending, and no new stream record for
    ``quiet_period`` seconds. A stopped replicator cannot see writes made after it stopped: with
    ``verify=False`` it is NO-GO (exit 1). Then ``verify`` compares the target with transform(source), where
    the transform is the replicator's own (from its status) unless ``transform`` is given. On
    NO-GO the report names up to 20 differing keys; ``diff_path`` receives every difference.
    """
    if not (quiet_period >= 0 and timeout >= 0):  # nan: never quiet enough, never timed out
        raise UsageError("--quiet-period and --timeout must be numbers of seconds >= 0")
    path = status_path or status_path_for(source, target, checkpoint)
    rep = CutoverReport(source=source.describe(), target=target.describe())
    t0 = clock()
    while True:
        st = read_status(path)
        if transform is None and st.get("transform"):
            transform = str(st["transform"])
        rep.transform = transform if isinstance(transform, str) or transform is None else transform.name
        rep.replicator_state = st.get("state")
        rep.lag_seconds = st.get("lag_seconds")
        rep.pending_records = st.get("pending_records")
        rep.counts = dict(st.get("counts") or {})
        rep.waited_seconds = round(clock() - t0, 1)
        if st.get("state") == "failed":
            rep.reason = f"the replicator failed: {st.get('error', 'see its output')}"
            rep.exit_code = EXIT_FATAL
            return rep
        alive = bool(st.get("alive"))
        stopped_clean = st.get("state") == "stopped"
        if stopped_clean and not alive:
            # Where it stopped (its lag now is unknown: writes after the stop are the verify's to find).
            caught = bool(st.get("last_caught_up")) and not st.get("pending_records") \
                and float(st.get("last_lag_seconds") or 0) == 0
        else:
            caught = bool(st.get("caught_up")) and not st.get("pending_records") \
                and float(st.get("lag_seconds") or 0) == 0
        quiet = float(st.get("idle_seconds") or 0)
        rep.quiet_seconds = quiet
        if stopped_clean and not alive and not verify:
            rep.reason = ("the replicator is stopped and cannot prove the source quiet (writes after it stopped "
                          "are not seen): run cutover without --no-verify, or restart the replicator with --resume")
            rep.exit_code = EXIT_FATAL
            return rep
        if caught and (alive or stopped_clean) and (quiet >= quiet_period or stopped_clean):
            break
        if stopped_clean and not alive and not caught:
            # A stopped replicator's figures never change: waiting out --timeout would tell nothing more.
            during = " during its backfill" if st.get("phase") == "backfill" else " before it caught up"
            rep.reason = f"the replicator was stopped{during}; resume it (--resume) and run cutover again"
            rep.exit_code = EXIT_FATAL
            return rep
        if not alive and not stopped_clean:
            rep.reason = (f"the replicator is not running (state {st.get('state')}, last update "
                          f"{st.get('age_seconds')} s ago); restart it with --resume")
            rep.exit_code = EXIT_FATAL
            return rep
        if clock() - t0 >= timeout:
            rep.reason = (f"lag did not reach zero with {quiet_period:.0f} s of quiet within {timeout:.0f} s "
                          f"(lag {rep.lag_seconds} s, pending {rep.pending_records}); are writes to the source stopped?")
            rep.exit_code = EXIT_FATAL
            return rep
        sleep(0.5)
    rep.waited_seconds = round(clock() - t0, 1)
    if not verify:
        rep.go, rep.exit_code = True, EXIT_OK
        rep.reason = "lag is zero and the source is quiet (verify skipped)"
        return rep
    vf: Callable[..., Any]
    if verify_fn is not None:
        vf = verify_fn
    else:
        from ..verify.job import verify_tables

        vf = verify_tables
    vrep: Any = vf(source, target, transform=transform, progress=progress, diff_path=diff_path)
    d: Dict[str, Any] = vrep.to_dict()
    rep.diff_path = d.get("diff_path")
    rep.differing = list(d.get("preview") or [])[:20]
    rep.verify = {k: d.get(k) for k in ("equal", "missing", "unexpected", "mismatched", "invalid", "differences")}
    rep.differences = int(d.get("differences") or 0)
    if int(getattr(vrep, "exit_code", 0)) == 0 and rep.differences == 0:
        rep.go, rep.exit_code = True, EXIT_OK
        # A stopped replicator saw nothing after it stopped: verify alone proves the tables equal.
        rep.reason = ("the replicator stopped with nothing pending and the target equals transform(source)"
                      if stopped_clean and not alive else
                      "lag is zero, the source is quiet and the target equals transform(source)")
    else:
        rep.go, rep.exit_code = False, EXIT_DIFFERENCES
        rep.reason = f"verify found {rep.differences} differences; do not switch traffic"
    return rep


__all__ = ["CutoverReport", "cutover"]
