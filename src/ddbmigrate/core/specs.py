"""Specs: picklable configuration of a job's source, processing and sink, built in each worker.

A spec is configuration; ``build(Resources)`` makes the live object (clients, rate limiters,
open files) in the process that uses it, so a job crosses process and Spark boundaries as plain
values. The driver calls the driver-side parts of a sink's lifecycle: ``prepare`` once before
any worker (resume state, clean-up of what a checkpoint does not count), ``merge`` to save the
workers' committed states with the checkpoint, ``finalize`` once after the last unit.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from ..config import RetryPolicy, TableRef
from ..errors import DdbMigrateError, FatalError, UsageError
from .items import KeySchema
from .processing import Processing
from .protocols import Sink, Source
from .transform import Transform, TransformContext, load_transform

if TYPE_CHECKING:
    from ..aws.capacity import Declared, RateLimiter
    from ..aws.client import DynamoClient
    from ..reporting.report import Report


class Resources:
    """What one worker's live source and sink hold: clients (their retry stats) and limiters.

    ``share`` is this worker's part of the job's rate limits (1 / concurrent workers), so N
    workers together stay within one limit; ``units`` the units this worker reads (None: all).
    """

    def __init__(self, *, share: float = 1.0, units: Optional[Sequence[str]] = None) -> None:
        self.share = share
        self.units = list(units) if units is not None else None
        self.clients: List["DynamoClient"] = []
        self.watched: List["DynamoClient"] = []  # not ours to close; only their stats are reported
        self.limiters: List["RateLimiter"] = []

    def client(self, ref: TableRef, retry: RetryPolicy, *, pool_size: int = 16) -> "DynamoClient":
        from ..aws.client import DynamoClient

        c = DynamoClient(ref, pool_size=pool_size, retry=retry)
        self.clients.append(c)
        return c

    def limiter(self, rate: Optional[float], name: str, declared: Optional["Declared"] = None,
                redescribe: Optional[Callable[[], Optional["Declared"]]] = None) -> "RateLimiter":
        """The limiter that finds the table's capacity from DynamoDB's throttles
        (aws/capacity.py AdaptiveLimiter); with a rate, never over this worker's share of it,
        starting there; without one, starting at this worker's share of what the table
        ``declared`` it admits, if it did (a rate given is what the user asked for), and
        following what ``redescribe`` says it declares as the job runs."""
        from ..aws.capacity import REDESCRIBE_EVERY, AdaptiveLimiter, limiter_for

        start = declared.share(self.share) if declared else None
        look: Optional[Callable[[], Optional["Declared"]]] = None
        first: Optional[float] = None
        if start is not None and redescribe is not None:
            share, lookup = self.share, redescribe

            def look() -> Optional["Declared"]:
                found = lookup()
                return found.share(share) if found is not None else None

            # Read by the job before this worker began (a Spark task, a later process): the
            # first look is due when the job's reading is as old as a look's interval.
            if start.read_at:
                first = min(REDESCRIBE_EVERY, max(0.0, REDESCRIBE_EVERY - (time.time() - start.read_at)))

        lim = (limiter_for(rate * self.share, name) if rate else
               AdaptiveLimiter(name=name, declared=start.units if start else None,
                               declared_exact=start.exact if start else True, redescribe=look,
                               redescribe_first=first, share=self.share, in_order=name == "write"))
        lim.name = name
        self.limiters.append(lim)
        return lim

    def stats(self) -> List[Dict[str, Any]]:
        """Each client's retry stats (clients sharing one RetryStats are counted once)."""
        seen: List[Any] = []
        for c in self.clients + self.watched:
            if all(c.stats is not s for s in seen):
                seen.append(c.stats)
        return [s.snapshot() for s in seen]

    def close(self) -> None:
        for c in self.clients:
            c.close()


class SourceSpec(Protocol):
    """Configuration of a source; ``units()`` is cheap and runs on the driver."""

    def units(self) -> List[str]: ...

    def build(self, res: Resources) -> Source: ...

    def failed(self, failures: Sequence[Any]) -> DdbMigrateError: ...


class SourceSpecBase:
    """Defaults for a source spec: units that failed on their own end the job as one error."""

    def failed(self, failures: Sequence[Any]) -> DdbMigrateError:
        return FatalError(f"{len(failures)} unit(s) could not be read to their end: "
                          + "; ".join(f.one_line() for f in failures[:5]) + (" ..." if len(failures) > 5 else ""))


class LiveSourceSpec(SourceSpecBase):
    """A source the caller already built (a stream reader shared between a replicator's phases,
    an incremental import staged on disk): threads engine only, it does not cross processes."""

    def __init__(self, source: Source, watched: Sequence["DynamoClient"] = ()) -> None:
        self.source = source
        self.watched = list(watched)  # clients the source reads through: their retries are reported

    def units(self) -> List[str]:
        return self.source.units()

    def build(self, res: Resources) -> Source:
        res.watched.extend(self.watched)
        return self.source

    def __reduce__(self) -> Any:
        raise UsageError("this job reads a source that only the threads engine can run (it cannot be "
                         "sent to another process)")


class SinkSpec(Protocol):
    """Configuration of a sink, with the driver-side steps of its lifecycle."""

    # Returns the spec every worker builds its sink from (the same or a copy with resume state).
    def prepare(self, saved: Optional[Mapping[str, Any]]) -> Any: ...

    def build(self, res: Resources) -> Sink: ...

    def merge(self, states: Sequence[Mapping[str, Any]]) -> Dict[str, Any]: ...

    def finalize(self, state: Mapping[str, Any], report: "Report") -> None: ...


class SinkSpecBase:
    """Defaults for a sink that keeps no state of its own (a table writer)."""

    def prepare(self, saved: Optional[Mapping[str, Any]]) -> "SinkSpecBase":
        return self

    def merge(self, states: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        return {}

    def finalize(self, state: Mapping[str, Any], report: "Report") -> None:
        return None


@dataclass(frozen=True)
class TransformRef:
    """A user transform by reference: each process loads it and checks it is the same code."""

    ref: str
    code_hash: str

    @classmethod
    def of(cls, tf: Optional[Transform]) -> Optional["TransformRef"]:
        return cls(tf.name, tf.code_hash) if tf is not None else None

    def load(self) -> Transform:
        tf = load_transform(self.ref)
        if self.code_hash and tf.code_hash != self.code_hash:
            raise UsageError(
                f"transform {self.ref} here differs from the copy the job was started with (sha256 "
                f"{tf.code_hash[:12]} != {self.code_hash[:12]}): ship the same code to every worker "
                "(--py-files / --additional-python-modules on Spark)")
        return tf


@dataclass(frozen=True)
class ProcessingSpec:
    """How records become writes (see core/processing.py), with the transform by reference."""

    key_schema: Optional[KeySchema]
    transform: Optional[TransformRef] = None
    on_error: str = "fail"
    trusted: bool = False
    source_key_schema: Optional[KeySchema] = None
    source_table: Optional[str] = None
    target_table: Optional[str] = None
    max_batch_ops: int = 25
    dedupe: bool = True
    sample: int = 0
    unit_segment: bool = True  # ctx.segment is the scan segment (verify: None; see Processing)
    index_keys: Tuple[Any, ...] = ()  # the sink table's GSI/LSI keys (core.items.index_keys_of)
    # The loaded transform of the process that made the job, so the threads engine does not
    # load it twice; never pickled (other processes load it by reference).
    loaded: Optional[Transform] = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> Dict[str, Any]:
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state["loaded"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    def build(self, max_errors: Optional[int] = None) -> Processing:
        tf = self.loaded if self.loaded is not None else (self.transform.load() if self.transform else None)
        return Processing(
            key_schema=self.key_schema, transform=tf, on_error=self.on_error, max_errors=max_errors,
            trusted=self.trusted, source_key_schema=self.source_key_schema,
            context=TransformContext(source_table=self.source_table, target_table=self.target_table),
            max_batch_ops=self.max_batch_ops, dedupe=self.dedupe, sample=self.sample,
            unit_segment=self.unit_segment, index_keys=self.index_keys,
        )


__all__ = ["LiveSourceSpec", "ProcessingSpec", "Resources", "SinkSpec", "SinkSpecBase", "SourceSpec", "SourceSpecBase", "TransformRef"]
