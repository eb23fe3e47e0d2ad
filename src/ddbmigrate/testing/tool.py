"""Run ``python -m ddbmigrate ...`` as a subprocess, the way a user (or a kill -9) would.

:func:`run_tool` returns a :class:`ToolRun` with the exit code (negative: killed by that
signal), stdout, stderr, wall time and the child's peak RSS: ``VmHWM`` from ``/proc/<pid>/status``
(the high-water mark of the child's own address space, sampled every 50 ms while it runs). Not
``wait4``'s ``ru_maxrss``: Linux carries the parent's high-water mark across fork and exec into
it, so it would report the test runner's size. It can SIGKILL or SIGTERM the tool
after a delay or when a condition becomes true (e.g. "the proxy forwarded 40 writes"), which is
how the reliability suite kills the tool at random moments mid-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence


@dataclass
class ToolRun:
    args: List[str]
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    peak_rss_kb: int
    signalled: Optional[str] = None  # "SIGKILL"/"SIGTERM" when run_tool sent it
    timed_out: bool = False
    extra: Dict[str, float] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_tool(
    args: Sequence[str],
    *,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[str] = None,
    timeout: float = 300.0,
    kill_after: Optional[float] = None,
    kill_when: Optional[Callable[[], bool]] = None,
    signal_to_send: int = signal.SIGKILL,
    second_signal_after: Optional[float] = None,
    python: str = sys.executable,
) -> ToolRun:
    """Run the CLI with ``args``; optionally send ``signal_to_send`` after ``kill_after`` seconds
    or once ``kill_when()`` is true (polled every 5 ms). ``second_signal_after`` sends the signal
    again that many seconds after the first (Ctrl-C twice). Always returns; a timeout kills."""
    cmd = [python, "-m", "ddbmigrate", *args]
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd)
        state: Dict[str, object] = {"signalled": None, "timed_out": False}
        finished = threading.Event()

        def send(sig: int) -> None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass

        def watch() -> None:
            deadline = t0 + timeout
            fired_at: Optional[float] = None
            ticks = 0
            while not finished.wait(0.005):
                ticks += 1
                if ticks % 10 == 1:
                    state["hwm_kb"] = max(int(state.get("hwm_kb", 0)), _vm_hwm_kb(proc.pid))  # type: ignore[call-overload]
                now = time.monotonic()
                if now > deadline:
                    state["timed_out"] = True
                    send(signal.SIGKILL)
                    return
                if fired_at is None:
                    due = (kill_after is not None and now - t0 >= kill_after) or (kill_when is not None and kill_when())
                    if due:
                        state["signalled"] = signal.Signals(signal_to_send).name
                        state["signal_at"] = now - t0
                        send(signal_to_send)
                        fired_at = now
                elif second_signal_after is not None and now - fired_at >= second_signal_after:
                    send(signal_to_send)
                    fired_at = float("inf")

        watcher = threading.Thread(target=watch, name="tool-watch", daemon=True)
        watcher.start()
        # wait4 rather than Popen.wait: it also returns this child's own resource usage.
        _, status, usage = os.wait4(proc.pid, 0)
        finished.set()
        watcher.join()
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        duration = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        run = ToolRun(args=list(args), exit_code=code, stdout=out.read().decode("utf-8", "replace"),
                      stderr=err.read().decode("utf-8", "replace"), duration_s=round(duration, 3),
                      peak_rss_kb=int(state.get("hwm_kb") or usage.ru_maxrss),  # type: ignore[call-overload]
                      signalled=state["signalled"],  # type: ignore[arg-type]
                      timed_out=bool(state["timed_out"]))
        if "signal_at" in state:
            run.extra["signal_at_s"] = round(float(state["signal_at"]), 3)  # type: ignore[arg-type]
        return run


def _vm_hwm_kb(pid: int) -> int:
    """The process's peak resident set size in KB (Linux), or 0 when unavailable."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
