"""A sink for ``--dry-run``: counts what would be written, writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from ..core.protocols import SinkBase
from ..core.records import DELETE, PUT, BatchResult, Op
from ..core.specs import Resources, SinkSpecBase


class DryRunSink(SinkBase):
    """Acknowledges every op as if it had been written."""

    def write(self, ops: List[Op]) -> BatchResult:
        return BatchResult(written=sum(1 for o in ops if o.kind == PUT), deleted=sum(1 for o in ops if o.kind == DELETE))


@dataclass(frozen=True)
class DryRunSpec(SinkSpecBase):
    def build(self, res: Resources) -> DryRunSink:
        return DryRunSink()
