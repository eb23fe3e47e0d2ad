"""Named crash points for kill -9 tests.

Set ``DDBMIGRATE_CRASH_AT=<point>`` (and optionally ``DDBMIGRATE_CRASH_AFTER=<n>``, default 1)
and the process SIGKILLs itself the n-th time it reaches that point. Points:

- ``after_batch_ack``: a batch was acknowledged by DynamoDB, the checkpoint not yet saved;
- ``mid_checkpoint_write``: half of the checkpoint's temp file is written;
- ``mid_export_line``: half of an export data line is written;
- ``after_stream_write``: journaled stream records were written, the apply checkpoint not yet saved;
- ``after_journal_segment``: a journal segment is durable, the positions it covers not yet recorded.

When the variable is unset this costs one dict lookup per call.

``DDBMIGRATE_PAUSE_AT=<point>:<seconds>`` widens a race window instead (tests kill the process
while it is held there). Points: ``checkpoint_window``: just before a pipeline takes a
checkpoint's cut (where an fsync of the dead letters would come too early: chunks completing
in between are counted by the cut but not yet durable).
"""

from __future__ import annotations

import os
import signal
import threading
import time

_lock = threading.Lock()
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    target = os.environ.get("DDBMIGRATE_CRASH_AT")
    if target is None or target != name:
        return
    after = int(os.environ.get("DDBMIGRATE_CRASH_AFTER", "1"))
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] >= after:
            os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    target = os.environ.get("DDBMIGRATE_PAUSE_AT")
    if target is None or not target.startswith(name + ":"):
        return
    time.sleep(float(target.split(":", 1)[1]))
