"""Apply an AWS incremental export: the newest record of each key wins.

Incremental exports are applied in ``WriteTimestampMicros`` order per key, which parallel
batched writes cannot guarantee by themselves. So before anything is written, every record is
spilled to a local partition file chosen by a hash of its key; each partition (one pipeline
unit) then keeps only the newest record of each key (ties broken by file order, then line) and
writes that one: a put of ``NewImage``, or a delete when there is no ``NewImage``. Older
versions are counted as ``collapsed``.

Several exports under one prefix (see :func:`ddbmigrate.storage.export_layout.discover`) are one
staging: the full export's items count as puts written at its ``exportTime`` and every
incremental record at its own ``WriteTimestampMicros``, so the newest version of each key wins
whatever order the exports' files are read in. An incremental record older than the full
export is superseded by it even when the key is absent from it (the snapshot says the key did
not exist then), so an old put never brings back an item deleted before the snapshot. Records in ION are read into the same shape as
their DYNAMODB_JSON twins first.

Invariants:
1. Memory is bounded by one partition's distinct keys; the partition count grows with the
   input size.
2. Nothing is written before every file passed its checks: a missing or bad file could make an
   older version of a key win, so :meth:`IncrementalSource.prepare` stops the import first.
3. Every record ends as a put, a delete, a collapsed older version or a reject; counts add up.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import tempfile
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import orjson

from ..core.items import WireItem, canonical_item, item_problem
from ..core.protocols import SourceBase
from ..core.records import DELETE, PUT, Chunk
from ..errors import FatalError
from ..formats import ion
from ..state import leftovers
from ..state.deadletter import raw_text
from ..storage.export_layout import FileEntry, FileProblem, Plan, check_against_manifest
from ..storage.stores import Storage
from .files import CHUNK_LINES, FIRST_RECORDS, SYNTAX_REASONS, FileFailure, FileSource
from .lines import (
    CORRUPT_ERRORS,
    MAX_LINE,
    LineStream,
    TooLong,
    corrupt_reason,
    parse_item,
)


# A record older than the full export applied before it (see IncrementalSource.read).
STALE = "stale"
# The folder of an import's staged records, named for its process (state/leftovers.py).
STAGE_PREFIX = "ddbmigrate-incremental-"


def _record_problem(rec: Any) -> Optional[str]:
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    keys = rec.get("Keys")
    p = item_problem(keys)
    if p:
        return f"Keys: {p}"
    try:
        int(rec["Metadata"]["WriteTimestampMicros"]["N"])
    except (KeyError, TypeError, ValueError):
        return "Metadata.WriteTimestampMicros.N is missing or not an integer"
    for name in ("NewImage", "OldImage"):
        if rec.get(name) is not None:
            p = item_problem(rec[name])
            if p:
                return f"{name}: {p}"
            # An image of another key than the record's: applied, it would write that key (and
            # the record's own key would neither be written nor deleted), silently.
            image = rec[name]
            for k, v in (keys or {}).items():
                if k not in image:
                    return f"{name} lacks the key attribute {k!r} that Keys gives"
                if canonical_item({k: image[k]}) != canonical_item({k: v}):
                    return f"{name}'s key attribute {k!r} differs from Keys"
    return None


def key_text(keys: WireItem) -> str:
    """One spelling per primary key (numbers by value), for grouping versions of a key."""
    return orjson.dumps(canonical_item(keys)).decode()


class IncrementalSource(SourceBase):
    """Applies an incremental export: newest record per key wins (see the module docstring).

    :meth:`prepare` stages every record before the pipeline starts; a file that fails its
    checks stops the import there, before anything is written (a missing file could make an
    older version of a key win).
    """

    def __init__(self, storage: Storage, plan: Plan, *, validate: bool = True, partitions: Optional[int] = None,
                 spill_dir: Optional[str] = None, readers: int = 4, chunk_ops: int = CHUNK_LINES,
                 key_names: Sequence[str] = ()) -> None:
        self.storage = storage
        self.plan = plan
        self.validate = validate
        total = sum(f.size for f in plan.files)
        # About 64 MB of uncompressed records per partition (gzip shrinks JSON ~8-10x).
        self.partitions = partitions or max(1, min(1024, -(-total * 10 // (64 * 1024 * 1024))))
        self.spill_dir = spill_dir
        self.readers = readers
        self.chunk_ops = chunk_ops
        self.key_names = tuple(key_names)  # to find the keys of a full export's items
        self._tmp: Optional[tempfile.TemporaryDirectory[str]] = None
        self._locks = [threading.Lock() for _ in range(self.partitions)]
        self._files: List[Any] = []
        self._failed: Dict[str, FileFailure] = {}
        self.records = 0

    def failures(self) -> List[FileFailure]:
        """Files that failed their checks (the others were read): the job fails after them."""
        return list(self._failed.values())

    def units(self) -> List[str]:
        return [f"partition-{i:04d}" for i in range(self.partitions)]

    def _path(self, i: int) -> str:
        assert self._tmp is not None
        return os.path.join(self._tmp.name, f"p{i:04d}.jsonl")

    def prepare(self) -> None:
        """Stage every record into its key's partition file. Raises FatalError on a bad file."""
        # An import killed midway left its staged records (the whole export's): the next one deletes them.
        prefix = leftovers.claim(self.spill_dir or tempfile.gettempdir(), STAGE_PREFIX)
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix, dir=self.spill_dir)
        self._files = [open(self._path(i), "ab") for i in range(self.partitions)]
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(self.readers, len(self.plan.files)))) as ex:
                for fut in [ex.submit(self._stage, n, f) for n, f in enumerate(self.plan.files)]:
                    fut.result()
        finally:
            for fh in self._files:
                fh.close()
        if self._failed:
            first = next(iter(self._failed.values()))
            raise FatalError(f"incremental export not applied, nothing written: {len(self._failed)} file(s) failed "
                             f"their checks; first: {first.one_line()}", file=first.path, line=first.line,
                             code="BadFile")

    def _stage(self, n: int, f: FileEntry) -> None:
        if self.validate:
            try:
                ls = FileSource(self.storage, self.plan).checked(f)
            except FileProblem as e:
                self._failed[f.unit] = FileFailure(f.unit, f.path, e.reason, e.line, 0)
                return
        else:
            ls = LineStream(self.storage, f.path)
        buffers: Dict[int, List[bytes]] = {}
        lineno = nonblank = 0
        good = 0  # records of this file that parsed: none after FIRST_RECORDS lines, it is not in its format
        syntax = 0  # lines that were not even the format's syntax
        first = ""

        def flush(i: int) -> None:
            with self._locks[i]:
                self._files[i].write(b"".join(buffers.pop(i)))

        try:
            for lineno, line in ls.numbered():
                if f.fmt == "ion" and not isinstance(line, TooLong) and ion.is_marker_line(line):
                    continue  # no record (nor one the manifest's itemCount counts)
                nonblank += 1
                origin = f"{f.unit}:{lineno}"
                if isinstance(line, TooLong):
                    rec: Any = ["!", "", f"line is {line.size} bytes, over the {MAX_LINE}-byte line limit", origin]
                    part = lineno % self.partitions
                else:
                    obj, reason = self._decode(f, line)
                    if reason is not None:
                        if not good and nonblank >= FIRST_RECORDS:
                            self._failed[f.unit] = FileFailure(
                                f.unit, f.path, f"not {f.fmt or 'dynamodb-json'}: its first {FIRST_RECORDS} records "
                                f"all failed to parse (last: {reason})", None, 0)
                            return
                        if reason.startswith(SYNTAX_REASONS):
                            syntax += 1
                            first = first or f"{origin}: {reason}"
                        # Cut: a partition holds its rejects in memory while it is read, and an
                        # incremental record is not replayed as an item (its file is, from origin).
                        rec = ["!", raw_text(line[:100_000]), reason, origin]
                        part = lineno % self.partitions
                    else:
                        good += 1
                        kt = key_text(obj["Keys"])
                        ts = int(obj["Metadata"]["WriteTimestampMicros"]["N"])
                        new = obj.get("NewImage")
                        if f.since_micros is not None and ts < f.since_micros:
                            rec = [kt, ts, n, lineno, STALE, None, origin]
                        elif new is not None:
                            rec = [kt, ts, n, lineno, PUT, new, origin]
                        else:
                            rec = [kt, ts, n, lineno, DELETE, obj.get("OldImage") or obj["Keys"], origin]
                        part = int.from_bytes(hashlib.blake2b(kt.encode(), digest_size=8).digest(), "big") % self.partitions
                buffers.setdefault(part, []).append(orjson.dumps(rec) + b"\n")
                if len(buffers[part]) >= 256:
                    flush(part)
            md5 = ls.md5_b64()
            check_against_manifest(f, md5, nonblank)
            if not good and syntax and syntax == nonblank:
                # A short file none of whose lines is its format's syntax (invariant 5 of files.py;
                # under FIRST_RECORDS lines, so none of its buffers was flushed).
                self._failed[f.unit] = FileFailure(
                    f.unit, f.path, f"not {f.fmt or 'dynamodb-json'}: its {nonblank} record"
                    f"{'s all' if nonblank > 1 else ''} failed to parse (first, {first})", None, 0)
                return
        except CORRUPT_ERRORS as e:
            self._failed[f.unit] = FileFailure(f.unit, f.path, f"corrupt file: {corrupt_reason(e)}", lineno + 1, 0)
            return
        except FileProblem as e:
            self._failed[f.unit] = FileFailure(f.unit, f.path, e.reason, None, 0)
            return
        finally:
            ls.close()
        for i in list(buffers):
            flush(i)
        with self._locks[0]:
            self.records += nonblank

    def source_key_names(self, limit: int = 1000) -> Optional[Tuple[str, ...]]:
        """The key attribute names the incremental records carry (their ``Keys``), from the first
        valid record: a full export applied before them is keyed the same way, whatever the
        target's key (a transform may re-key items). None when no record says."""
        for f in self.plan.files:
            if f.snapshot_micros is not None:
                continue
            ls = LineStream(self.storage, f.path)
            try:
                for n, (_, line) in enumerate(ls.numbered()):
                    if n >= limit:
                        break
                    if isinstance(line, TooLong):
                        continue
                    rec, _ = self._decode(f, line)
                    if isinstance(rec, dict):
                        return tuple(sorted(rec["Keys"]))
            except CORRUPT_ERRORS:
                pass  # staging names the file
            finally:
                ls.close()
        return None

    def _decode(self, f: FileEntry, line: bytes) -> Tuple[Any, Optional[str]]:
        """A data line -> (record in DYNAMODB_JSON's incremental shape, None) or (None, reason)."""
        if f.snapshot_micros is not None:  # a full export's item, written at its exportTime
            if f.fmt == "ion":
                item, reason = ion.parse_item_line(line)
            else:
                item, reason, _ = parse_item(line, "plain" if f.fmt == "json" else "ddb")
            if item is None:
                return None, reason
            missing = [k for k in self.key_names if k not in item]
            if missing or not self.key_names:
                return None, f"missing key attribute {missing[0]!r}" if missing else "no key schema"
            return {"Metadata": {"WriteTimestampMicros": {"N": str(f.snapshot_micros)}},
                    "Keys": {k: item[k] for k in self.key_names}, "NewImage": item}, None
        try:
            obj = ion.parse_change_line(line) if f.fmt == "ion" else orjson.loads(line)
        except orjson.JSONDecodeError as e:
            return None, f"invalid JSON: {e}"
        except ion.IonProblem as e:
            return None, str(e)
        reason = _record_problem(obj)
        return (None, reason) if reason else (obj, None)

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        i = int(unit.rsplit("-", 1)[1])
        best: Dict[str, List[Any]] = {}
        rejects: List[List[Any]] = []
        superseded = 0
        with open(self._path(i), "rb") as fh:
            for raw in fh:
                rec = orjson.loads(raw)
                if rec[0] == "!":
                    rejects.append(rec)
                    continue
                cur = best.get(rec[0])
                if cur is None:
                    best[rec[0]] = rec
                    continue
                superseded += 1
                # Newest write wins; equal timestamps: the later file, then the later line.
                if (rec[1], rec[2], rec[3]) > (cur[1], cur[2], cur[3]):
                    best[rec[0]] = rec
        rejects.sort(key=lambda r: r[3])
        winners = [best[k] for k in sorted(best)]
        # A key whose newest record predates the full export applied first: the snapshot is the
        # truth then (the key was absent from it), so nothing is written for it.
        stale = sum(1 for w in winners if w[4] == STALE)
        if stale:
            winners = [w for w in winners if w[4] != STALE]
            superseded += stale
        del best
        start = int(position or 0)
        n = len(rejects) + len(winners)
        first = True
        pos = start
        while pos < n or first:
            end = min(n, pos + self.chunk_ops)
            chunk = Chunk(position=end, ops=[], origins=[], done=end >= n)
            if first and start == 0 and superseded:
                chunk.counts = {"read": superseded, "collapsed": superseded}
            first = False
            for j in range(pos, end):
                if j < len(rejects):
                    r = rejects[j]
                    chunk.rejects.append((r[1], r[2], r[3]))
                else:
                    w = winners[j - len(rejects)]
                    chunk.ops.append((w[4], w[5]))  # type: ignore[union-attr]
                    chunk.origins.append(w[6])  # type: ignore[union-attr]
            yield chunk
            pos = end
            if stop.is_set():
                return

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


__all__ = ["IncrementalSource", "key_text"]
