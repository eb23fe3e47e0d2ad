"""The two sides of a verification: what each one reads, and how a side argument is opened.

A side is a table (parallel segmented Scan) or an export folder / file / glob / ``s3://``
prefix (the file source); either way it is a pipeline source — a picklable ``spec`` that any
engine builds in its workers (``TableScanSpec``, ``FilesSpec``), or a live ``source`` the caller
built (threads only) — plus what is known of it (label, key schema, item estimate, client).

Invariants:
1. Opening a side only reads: DescribeTable for a table, the listing and manifests for files.
2. A files side that is an incremental export (changes, not a full image) is refused, and a side
   whose files failed their checks fails the verification (:func:`check_file_failures`), so a
   comparison is never silently incomplete.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..aws.client import DynamoClient, RetryStats
from ..config import RetryPolicy, TableRef
from ..core.items import KeySchema
from ..core.protocols import Source, SourceBase
from ..core.records import Chunk
from ..core.specs import LiveSourceSpec, SourceSpec
from ..errors import DdbMigrateError, FatalError, TableNotFoundError, UsageError
from ..sources.files import FilesSpec

SideRef = Union[TableRef, str]


@dataclass
class Side:
    """One side of a verification: something that yields wire items, and what we know of it.

    ``spec`` is what a verify job reads (any engine); without one, the live ``source`` (the
    pipeline's Source protocol: units, read(unit, position, stop)) is read, on threads only.
    ``client`` is set for table sides (it describes the table; jobs open their own clients).
    """

    label: str
    source: Source
    key_schema: Optional[KeySchema] = None
    estimate: Optional[int] = None
    client: Optional[DynamoClient] = None
    trusted: bool = False  # items come from DynamoDB itself: valid, sized, keyed by key_schema
    spec: Optional[SourceSpec] = None

    def job_source(self) -> SourceSpec:
        """The source spec a verify job reads this side through."""
        return self.spec if self.spec is not None else _LiveSideSpec(self.source, self.label)


def side_failed(label: str, failures: Sequence[Any]) -> DdbMigrateError:
    """A side whose files failed their checks: the comparison would be incomplete."""
    return FatalError(
        f"{len(failures)} file(s) of {label} failed their checks, so the comparison would be "
        "incomplete: " + "; ".join(f.one_line() for f in failures[:5]) + (" ..." if len(failures) > 5 else ""),
        file=failures[0].path, line=failures[0].line, code="BadFile")


@dataclass(frozen=True)
class VerifyFilesSpec(FilesSpec):
    """A files side: the file source's spec, failing as a verification (picklable)."""

    label: str = ""

    def failed(self, failures: Any) -> DdbMigrateError:
        return side_failed(self.label or self.location, failures)


class _LiveSideSpec(LiveSourceSpec):
    """A side the caller built as a live source (threads engine only)."""

    def __init__(self, source: Source, label: str) -> None:
        super().__init__(source)
        self.label = label

    def failed(self, failures: Sequence[Any]) -> DdbMigrateError:
        return side_failed(self.label, failures)


class EmptySource(SourceBase):
    """A Source with nothing to read: stands in for a table side's scan until the projection is
    known, and for the side a Spark verify task does not read."""

    def units(self) -> List[str]:
        return []

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        return iter(())


EMPTY_SOURCE = EmptySource()


def is_files_location(arg: str) -> bool:
    """A side argument names files when it says so: ``s3://...``, ``file:...``, a path with a
    separator (``./dir``, ``/abs/dir``) or a glob. A bare name is a table, even when the working
    directory has a file or folder of that name."""
    if arg.startswith("arn:"):
        return False
    return arg.startswith(("s3://", "file:")) or "/" in arg or os.sep in arg or any(c in arg for c in "*?[")


def files_location(arg: str) -> str:
    """The location a files argument names (``file:dir`` is ``dir``)."""
    return arg[len("file:"):] if arg.startswith("file:") else arg


def open_table(ref: TableRef, client: Optional[DynamoClient], retry: RetryPolicy, readers: int) -> Tuple[DynamoClient, Dict[str, Any]]:
    """A table's client (``client`` if given) and its description."""
    c = client or DynamoClient(ref, pool_size=readers + 8, retry=retry, stats=RetryStats())
    return c, c.describe_table()


def open_side(arg: SideRef, client: Optional[DynamoClient], s3: Any, input_format: str, retry: RetryPolicy,
               readers: int, follow_symlinks: bool = False) -> Tuple[Side, Optional[Dict[str, Any]]]:
    """A files location, or a table with its key schema and item count (and its description)."""
    if isinstance(arg, str) and is_files_location(arg):
        return files_side(files_location(arg), s3=s3, input_format=input_format,
                          follow_symlinks=follow_symlinks), None
    ref = arg if isinstance(arg, TableRef) else TableRef(str(arg))
    try:
        c, desc = open_table(ref, client, retry, readers)
    except TableNotFoundError as e:
        if os.path.exists(ref.table):
            e.hint = f"to compare the files at {ref.table!r} instead, write ./{ref.table} (or file:{ref.table})"
        raise
    side = Side(ref.describe(), EMPTY_SOURCE, KeySchema.from_table_description(desc),
                int(desc.get("ItemCount") or 0) or None, c, trusted=True)
    return side, desc


def files_side(location: str, *, s3: Any = None, input_format: str = "auto", validate: bool = True,
               follow_symlinks: bool = False, key_types: Optional[Dict[str, str]] = None,
               csv_header: Optional[List[str]] = None, csv_delimiter: str = ",") -> Side:
    """An export folder, file, folder of files, glob or ``s3://`` prefix, read by the file source.

    Files carry no key schema: it comes from the other side's table or ``key_schema``. CSV files
    are read as the import read them: ``key_types`` (the attribute types the table defines),
    ``csv_header`` and ``csv_delimiter``.
    Incremental exports hold changes, not a full image, so they cannot be a verify side.
    """
    from ..sources.files import FileSource
    from ..storage.export_layout import discover
    from ..storage.stores import normalize, storage_for

    src = normalize(location) if "://" in location or not any(c in location for c in "*?[") else location
    storage = storage_for(src, s3)
    plan = discover(src, storage, any_name=input_format != "auto", follow_symlinks=follow_symlinks)
    if plan.kind == "incremental":
        raise UsageError(f"{location} is an incremental export (changes, not a full image): it cannot be "
                         "verified; verify the table it was applied to, or a full export")
    from ..sources.detection import assign_formats

    plan = assign_formats(plan, storage, input_format)
    fs = FileSource(storage, plan, validate=validate, input_format=input_format, key_types=key_types,
                    csv_header=csv_header, csv_delimiter=csv_delimiter)
    estimate = sum(f.item_count or 0 for f in plan.files) or None
    spec = VerifyFilesSpec(src, plan, s3=s3, validate=validate, input_format=input_format, label=src,
                           key_types=key_types, csv_header=csv_header, csv_delimiter=csv_delimiter)
    return Side(label=src, source=fs, key_schema=None, estimate=estimate, spec=spec)


def check_file_failures(side: Side) -> None:
    """A side whose files failed their checks cannot be compared completely: FatalError."""
    failures = list(side.source.failures())
    if failures:
        raise side_failed(side.label, failures)


__all__ = ["EMPTY_SOURCE", "EmptySource", "Side", "SideRef", "VerifyFilesSpec", "check_file_failures", "files_side",
           "is_files_location", "open_side", "open_table", "side_failed"]
