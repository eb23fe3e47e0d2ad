"""The two ends of every job: a :class:`Source` of records and a :class:`Sink` of writes.

Both *declare* what they can do (class attributes), so the engine never probes them with
``getattr``; :class:`SourceBase` and :class:`SinkBase` give the common defaults.

    Source: units() ─▶ read(unit, position, stop) ─▶ Chunk ...          (one unit = segment / file / shard)
    Sink:   open() ─▶ write(ops) ... ─▶ commit(final) ─▶ close()    (in every worker)
            prepare, merge, finalize(state)                              (once, on the driver: the SinkSpec, core/specs.py)

Invariants:
1. A unit is read from a position a checkpoint saved, and every chunk carries the position to
   resume from once its records are settled (written, skipped or dead-lettered).
2. ``Sink.commit`` is entered around every checkpoint save: inside it, everything the sink
   acknowledged is durable, and the state it yields is saved atomically with the positions. It
   yields ``None`` to skip this save (a files sink commits every N seconds, not every save).
3. A sink writes full images only (put / delete), so a replay after a crash is harmless. The
   one exception, the in-place update (sinks/conditional_update.py), re-applies its transform to
   the item as it is now, so its replay is harmless too.
"""

from __future__ import annotations

import contextlib
import threading
from typing import (
    Any,
    ClassVar,
    Dict,
    Iterator,
    List,
    Optional,
    Protocol,
    Sequence,
    runtime_checkable,
)

from .records import BatchResult, Chunk, Op


class UnitFailure(Protocol):
    """A unit a source could not read to its end (a corrupt file): the job fails after the others."""

    unit: str
    path: str
    line: Optional[int]

    def one_line(self) -> str: ...


@runtime_checkable
class Source(Protocol):
    """Splits into independent units, each read from a resumable position."""

    # Records of one unit may hold one key several times, in order (lines of a file, stream
    # records): the engine then writes one key's versions in that order (last wins).
    ordered: ClassVar[bool]

    def units(self) -> List[str]: ...

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]: ...

    def failures(self) -> Sequence[UnitFailure]: ...

    def attach(self, pipeline: Any) -> None: ...

    def progress_fields(self) -> Dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Takes batches of full-image writes; see the module docstring for its lifecycle."""

    # Of several versions of one key, the first written stays (conditional puts): duplicates
    # in one chunk collapse to the first, not the last.
    first_write_wins: bool
    # Writes are held in the sink (files) until ``commit``: it may then only commit when no
    # chunk is half-acknowledged, so the engine pauses reading and drains first.
    buffers: bool

    def open(self) -> None: ...

    def commit_due(self, final: bool) -> bool: ...

    def write(self, ops: List[Op]) -> BatchResult: ...

    def commit(self, final: bool) -> "contextlib.AbstractContextManager[Optional[Dict[str, Any]]]": ...

    def close(self) -> None: ...


class SourceBase:
    """Defaults for a source: unordered, never fails a unit on its own, nothing to close."""

    ordered: ClassVar[bool] = False

    def failures(self) -> Sequence[UnitFailure]:
        return ()

    def attach(self, pipeline: Any) -> None:
        """Called with the pipeline that reads this source (a stream waits for acknowledgements)."""
        return None

    def progress_fields(self) -> Dict[str, Any]:
        """Fields added to every progress snapshot (a replicator's lag)."""
        return {}

    def close(self) -> None:
        return None


class SinkBase:
    """Defaults for a sink: last write wins, no state of its own, every checkpoint may be saved."""

    first_write_wins: bool = False
    buffers: bool = False

    def commit_due(self, final: bool) -> bool:
        """Whether a checkpoint now would commit (a buffering sink commits every N seconds)."""
        return True

    def open(self) -> None:
        """Acquire what writing needs, in the worker, before the first write."""
        return None

    @contextlib.contextmanager
    def commit(self, final: bool) -> Iterator[Optional[Dict[str, Any]]]:
        # A sink that writes through (a table) has nothing to flush: acknowledged is durable.
        yield {}

    def close(self) -> None:
        return None


__all__ = ["Sink", "SinkBase", "Source", "SourceBase", "UnitFailure"]
