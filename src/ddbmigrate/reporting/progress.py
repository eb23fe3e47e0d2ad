"""Progress: a rich bar on a TTY, one-line JSON events elsewhere, nothing with --quiet.

The display polls a snapshot function from its own thread, so the hot path only bumps
counters. JSON events go to stderr, one per ``interval`` seconds::

    {"event": "progress", "job": "copy", "done": 12000, "total": 100000, "items_per_s": 8123.4,
     "eta_s": 10.8, "read": 14000, "retries": 3, "throttles": 1, "dead_lettered": 0, "rate_limit": null}

``done`` counts records *settled*: every write they led to acknowledged, or skipped, dropped or
dead-lettered. ``read`` (records read) is shown beside, so a drain after the reads are over is
visible as ``done`` catching up with ``read``.

The rate is of acknowledged work. A chunk settles only once its last write is acknowledged: under
a write limit (a throttled target, a few WCU/s) that is a minute or more of writes landing with
``done`` standing still, and a rate of ``done`` alone would read 0 all along. So when the snapshot
counts the writes the target acknowledged (``acked``, settled or not), the rate is the faster of
``done``'s and ``acked``'s, the writes turned into records at the ratio this run settled them (one
to one until a first chunk settles). The rate is this run's: never below 0, even when a job counts
``done`` from 0 while the count it started from was a resumed checkpoint's.

Invariant 8: no secret and no item body is ever part of an event.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import orjson

Snapshot = Callable[[], Dict[str, Any]]


def resolve_mode(mode: str, stream: Any = None) -> str:
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    try:
        return "bar" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


class Progress:
    """Owns the display thread. ``snapshot()`` returns done/total/retries/... for one moment."""

    def __init__(self, job: str, snapshot: Snapshot, *, mode: str = "auto", interval: Optional[float] = None,
                 stream: Any = None, label: str = "items") -> None:
        self.job = job
        self.snapshot = snapshot
        self.stream = stream or sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.interval = interval if interval is not None else (0.25 if self.mode == "bar" else 5.0)
        self.label = label
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._bar: Any = None
        self._task: Any = None
        self._t0 = time.monotonic()
        self._history: List[Tuple[Any, ...]] = []  # (when, done, acked)
        self._base: Optional[Tuple[Any, ...]] = None  # the same, as the job started
        self._settled_at: Optional[Tuple[int, int]] = None  # (done, acked) when records last settled
        self._done_shown = 0  # the most that has been shown done (see _tick)
        self.timeline: List[Dict[str, Any]] = []

    def __enter__(self) -> "Progress":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.mode == "off":
            return
        # What was done when the job started (a resumed job's checkpoint): the first line's rate is
        # the progress since then, not 0 items/s for lack of an earlier line to compare with.
        try:
            s = self.snapshot()
            self._base = (time.monotonic(), int(s.get("done", 0)), _acked(s))
            self._history.append(self._base)
        except Exception:  # a display problem must never stop a migration
            pass
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=BAR_WIDTH),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("ETA {task.fields[eta]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[extra]}"),
                console=Console(file=self.stream),
                transient=False,
                refresh_per_second=4,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.job, total=None, rate="", eta="?", extra="")
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._tick(final=True)
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._tick()
            except Exception:  # a display problem must never stop a migration
                pass

    def _rebase(self, done: int, acked: Optional[int]) -> None:
        """A count below the one the job started from was started again from 0 (a job counting
        this run's records only, after a start that showed its checkpoint's): this run's rate is
        measured from 0, not from a figure the count never had."""
        if self._base is None:
            return
        t, d0, a0 = _point(self._base)
        done_again = done < d0
        acked_again = acked is not None and a0 is not None and acked < a0
        if done_again or acked_again:
            self._base = (t, 0 if done_again else d0, 0 if acked_again else a0)
            self._history = [self._base]
            self._settled_at = None

    def _ratio(self) -> float:
        """Records settled per acknowledged write in this run, as of the last time records
        settled (1 until some did)."""
        if self._settled_at is None or self._base is None:
            return 1.0
        _, d0, a0 = _point(self._base)
        dd, da = self._settled_at[0] - d0, self._settled_at[1] - (a0 or 0)
        return dd / da if dd > 0 and da > 0 else 1.0

    def _since(self, since: Tuple[Any, ...], now: float, done: int, acked: Optional[int]) -> float:
        """The rate of acknowledged work from ``since`` (a point of the history) to now."""
        t0, d0, a0 = _point(since)
        if now - t0 <= 0:
            return 0.0
        rate = (done - d0) / (now - t0)
        if acked is not None and a0 is not None:
            rate = max(rate, (acked - a0) * self._ratio() / (now - t0))
        return max(0.0, rate)

    def _rate(self, now: float, done: int, acked: Optional[int] = None) -> float:
        self._rebase(done, acked)
        if acked is not None and self._history and done > _point(self._history[-1])[1] \
                and self._base is not None and _point(self._base)[2] is not None:
            self._settled_at = (done, acked)
        self._history.append((now, done, acked))
        # A 10-second window: responsive to turning the speed up, smooth enough to read.
        while len(self._history) > 2 and now - self._history[0][0] > 10.0:
            self._history.pop(0)
        # Until the job's first writes are acknowledged, the window starts at the last moment none
        # were: the pipeline's fill (pages of writes in flight, seconds of them under a write limit)
        # is paid once, and counted in the rate it made the early ETA read high.
        _, start, astart = _point(self._base) if self._base is not None else (0.0, 0, None)
        while (len(self._history) > 2 and self._history[1][1] == start
               and (acked is None or _point(self._history[1])[2] in (None, astart))):
            self._history.pop(0)
        return self._since(self._history[0], now, done, acked)

    def _tick(self, final: bool = False) -> None:
        if self.mode == "off":
            return
        s = self.snapshot()
        now = time.monotonic()
        # Never backwards: a unit done again (a Spark task retried from its start) settles its
        # items anew, and the count holds until the retry passes it.
        done = max(int(s.get("done", 0)), self._done_shown)
        self._done_shown = done
        acked = _acked(s)
        total = s.get("total")
        # An estimated total (DescribeTable's ItemCount, up to 6 hours old) that the job has passed
        # is no total: it becomes what is done, and the ETA is unknown until the end.
        passed = total is not None and done >= int(total) and not final
        if total is not None and done > int(total):
            total = done
        rate = self._rate(now, done, acked)
        if final and self._base is not None and now > self._base[0]:
            # The last line gives the whole run's rate (this run's: a resumed job's count before it
            # is left out), not the last 10 seconds'.
            rate = self._since(self._base, now, done, acked)
        eta = (max(0, int(total) - done) / rate) if (total and rate > 0 and not passed) else None
        self.timeline.append({"t": round(now - self._t0, 2), "done": done, "retries": s.get("retries", 0),
                              "throttles": s.get("throttles", 0)})
        if len(self.timeline) > 2000:
            self.timeline = self.timeline[::2]
        if self.mode == "bar" and self._bar is not None:
            extra = []
            if s.get("retries"):
                extra.append(f"retries {s['retries']}")
            if s.get("throttles"):
                extra.append(f"throttles {s['throttles']}")
            if s.get("dead_lettered"):
                extra.append(f"[red]dead {s['dead_lettered']}[/red]")
            if s.get("rate_limits") and any(s["rate_limits"].values()):
                extra.append(" ".join(f"{k} limit {v:,.0f}/s" for k, v in sorted(s["rate_limits"].items()) if v))
            elif s.get("rate_limit"):
                extra.append(f"limit {s['rate_limit']:.0f}/s")
            if "journal_backlog" in s:
                size = fmt_bytes(s.get("journal_bytes") or 0)
                extra.append(f"journal {int(s['journal_backlog']):,} changes ({size})")
            if s.get("status"):
                extra.append(str(s["status"]))
            if s.get("read") and int(s["read"]) > done:
                extra.append(f"read {int(s['read']):,}")
            rate_text, eta_text = f"{rate:,.0f} {self.label}/s", _fmt_eta(eta)
            shown = max(int(total), done) if total else None
            # On a narrow terminal the extras (retries, limits, a drain's "stopping: ...") are what
            # is cut, never the job, its done/total, its rate or its ETA (rich would squeeze them all).
            essentials = (len(self.job) + BAR_WIDTH + len(f"{done}/{shown if shown is not None else '?'}")
                          + len(rate_text) + len(f"ETA {eta_text}") + len("0:00:00") + 7)
            self._bar.update(
                self._task, completed=done, total=shown, rate=rate_text, eta=eta_text,
                extra=_fit(" ".join(extra), self._bar.console.width - essentials),
            )
        elif self.mode == "json":
            ev = {"event": "progress" if not final else "progress_final", "job": self.job, "done": done,
                  "total": total, "items_per_s": round(rate, 1), "eta_s": round(eta, 1) if eta is not None else None,
                  "elapsed_s": round(now - self._t0, 1)}
            for k in ("read", "retries", "throttles", "dead_lettered", "rate_limit", "rate_limits", "status", "lag_s",
                      "backlog", "journal_backlog", "journal_bytes"):
                if k in s:
                    ev[k] = s[k]
            try:
                self.stream.write(orjson.dumps(ev).decode() + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass


BAR_WIDTH = 20


def _point(p: Tuple[Any, ...]) -> Tuple[float, int, Optional[int]]:
    """(when, done, acked) of a point of the history (acked None when the job does not count it)."""
    return float(p[0]), int(p[1]), (int(p[2]) if len(p) > 2 and p[2] is not None else None)


def _acked(s: Dict[str, Any]) -> Optional[int]:
    """The writes the target acknowledged, settled or not, when the job counts them."""
    v = s.get("acked")
    return int(v) if v is not None else None


def _fit(markup: str, room: int) -> str:
    """``markup`` cut to ``room`` characters on screen (an ellipsis where cut; nothing if no room)."""
    from rich.text import Text

    text = Text.from_markup(markup)
    if text.cell_len <= room:
        return markup
    if room <= 1:
        return ""
    text.truncate(room, overflow="ellipsis")
    return text.markup


def _fmt_eta(eta: Optional[float]) -> str:
    if eta is None:
        return "?"
    eta = int(eta)
    h, rem = divmod(eta, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_bytes(n: Optional[float]) -> str:
    """A size for people: ``1.5 MB``; ``?`` when it is not known."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TB"
