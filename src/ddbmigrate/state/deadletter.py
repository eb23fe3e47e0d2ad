"""Dead-letter file: every item we could not write, with why, as replayable JSON lines.

Line format (one JSON object per line)::

    {"item": {...wire item...}, "reason": "...", "error_code": "...", "stage": "validate",
     "origin": "segment 3" | "data/x.json.gz:17", "source_key": {...}, "transform": "f.py:fn",
     "time": "2026-11-25T10:00:00Z"}

``ddbmigrate import dead.jsonl TABLE`` replays the ``item`` of every line. Invariant: the file is
flushed and fsynced before any checkpoint that counts its lines is saved.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from typing import Any, Dict, Optional

import orjson


class DeadLetters:
    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self.count = 0
        self._lock = threading.Lock()
        self._fh: Any = None
        self.by_reason: Dict[str, int] = {}

    def add(
        self,
        item: Any,
        reason: str,
        *,
        code: str = "",
        stage: str = "validate",
        origin: Optional[str] = None,
        source_key: Any = None,
        transform: Optional[str] = None,
        raw: Optional[str] = None,
        traceback: Optional[str] = None,
    ) -> None:
        rec: Dict[str, Any] = {"item": item, "reason": reason, "error_code": code or reason, "stage": stage}
        if origin is not None:
            rec["origin"] = origin
        if source_key is not None:
            rec["source_key"] = source_key
        if transform is not None:
            rec["transform"] = transform
        if raw is not None:
            rec["raw"] = raw if len(raw) <= 1_000_000 else raw[:1_000_000]
        if traceback is not None:
            rec["traceback"] = traceback
        rec["time"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        line = orjson.dumps(rec, default=_default) + b"\n"
        with self._lock:
            self.count += 1
            key = code or reason
            self.by_reason[key] = self.by_reason.get(key, 0) + 1
            if self.path is None:
                return
            if self._fh is None:
                d = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(d, exist_ok=True)
                self._fh = open(self.path, "ab")
            self._fh.write(line)

    def sync(self) -> None:
        """Make every line written so far durable (called before a checkpoint save)."""
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None


def _default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(o)).decode("ascii")
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    return str(o)
