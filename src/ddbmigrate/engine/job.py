"""A :class:`Job` is a picklable recipe: what to read, how to process it, where to write it.

    Job(kind, identity, options, source=SourceSpec, processing=ProcessingSpec, sink=SinkSpec)
        │  crosses process and Spark boundaries unchanged (plain dataclasses, the transform by reference)
        ▼
    in each worker: spec.build(Resources) -> a live Source / Processing / Sink over that worker's units
                    (core/specs.py)

Invariant: everything that defines *which* data a job writes is in ``identity`` (fingerprinted
into the checkpoint), never only in a live object, so a resume in another process, on another
engine or with another worker count continues the same job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence

from ..config import RunOptions
from ..core.specs import ProcessingSpec, SinkSpec, SourceSpec


@dataclass(frozen=True)
class Job:
    """One run of one kind of job; see the module docstring.

    ``progress_counter`` is the counter the progress bar and ETA count against ``total_estimate``.
    """

    kind: str
    identity: Mapping[str, Any]
    options: RunOptions
    source: SourceSpec
    sink: SinkSpec
    processing: ProcessingSpec
    source_label: str = ""
    target_label: str = ""
    total_estimate: Optional[int] = None
    readers: int = 4
    writers: int = 8
    progress_counter: str = "read"
    extra: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: bool = True
    # The retry stats of the clients the job builder used before the run (describing the tables,
    # sampling the source): their throttles and retries are the job's too, and the report says so.
    preflight: Sequence[Mapping[str, Any]] = ()

    def with_identity(self, **kw: Any) -> "Job":
        return dataclasses.replace(self, identity={**self.identity, **kw})


def split_units(units: Sequence[str], n: int) -> List[List[str]]:
    """Round-robin ``units`` over ``n`` workers (neighbouring segments land on different workers)."""
    n = max(1, min(n, len(units) or 1))
    return [list(units[i::n]) for i in range(n)]


__all__ = ["Job", "split_units"]
