"""Test kit for ddbmigrate users: run the tool (and your own transforms) under injected faults.

- :class:`FaultProxy` (``python -m ddbmigrate.testing.proxy``): a seeded, fault-injecting HTTP
  proxy on loopback between the tool and DynamoDB (Local): throttling, 500/503, connection
  resets, lost responses after the write was applied, partial ``UnprocessedItems`` and outages,
  with a per-key audit of the writes it forwarded.
- :class:`RetentionProxy`: a proxy in front of DynamoDB Local's Streams API that trims records
  older than R seconds the way DynamoDB does after 24 h (``TrimmedDataAccessException``,
  ``TRIM_HORIZON`` starting after the trimmed records), so a replication's retention handling
  can be tested in seconds.
- :func:`run_tool`: run ``python -m ddbmigrate ...`` as a subprocess (optionally killed with
  SIGKILL or stopped with SIGTERM at a chosen moment) and collect its exit code, output and
  peak RSS.

Nothing here is imported by the tool itself; it is only for tests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .proxy import Audit, FaultProxy, Faults
    from .retention import RetentionProxy
    from .tool import ToolRun, run_tool

__all__ = ["Audit", "FaultProxy", "Faults", "RetentionProxy", "ToolRun", "run_tool"]
_HOME = {"Audit": "proxy", "FaultProxy": "proxy", "Faults": "proxy", "RetentionProxy": "retention",
         "ToolRun": "tool", "run_tool": "tool"}


def __getattr__(name: str) -> Any:
    # Imported on first use, not here: `python -m ddbmigrate.testing.proxy` imports this package
    # first, and a proxy module already imported by it made runpy warn on every start.
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
