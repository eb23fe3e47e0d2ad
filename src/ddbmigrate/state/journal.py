"""The replicator's change journal: stream records kept durably, in numbered segments, until applied.

    stream shards ──append(page, position)──▶ open buffer ──seal──▶ seg-000000000007.jsonl.gz  (folder or S3)
                                                          └──────▶ <checkpoint>.journal.json  (next, positions)
    applier ◀──read_segment(k)── sealed segments (k < next) ──delete_below(k)── once applied and checkpointed

DynamoDB Streams keep records for 24 hours; a backfill may take longer. The journal is the
replication's own log: the stream is read continuously from the moment the positions are
recorded, whatever the backfill does, and the records wait here until they are applied.

Invariants:
1. A segment is durable (local: temp file, fsync, rename, fsync of the folder; S3: PutObject
   acknowledged) *before* the state file records the stream positions that cover it, so a
   checkpointed position never points past a record that is not in a sealed segment.
2. A segment is never rewritten once the state says it is sealed; a segment written but not yet
   recorded (a crash in between) is written again, whole, from the same stream positions.
3. Records of one shard are appended in stream order, and a child shard's records only after its
   parent's last one (the caller's scheduler guarantees it); segments are applied in order, so
   per-key order holds from the stream to the target.
4. Memory is bounded by one open segment (``segment_bytes``) plus the segment being applied.
5. A full disk (or a failing S3 bucket) stops the replication with a resumable error
   (:class:`JournalFullError`, exit 75); nothing is dropped: the positions stay where the last
   sealed segment left them.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import threading
import time
import zlib
from typing import Any, Dict, List, Optional, Tuple

import orjson

from ..errors import DdbMigrateError, ResyncNeededError, RetriableError, UsageError
from ..storage.stores import S3Settings, Storage, is_s3, normalize, storage_for
from .checkpoint import atomic_write
from .crashpoints import crash_point

VERSION = 1
DEFAULT_SEGMENT_BYTES = 8 << 20
# A segment is sealed at least this often while records arrive, so a tailing replicator applies
# a change within about this long of reading it.
DEFAULT_SEAL_EVERY = 0.25

# Segment metadata kept in the state file: [records, bytes, first time, last time].
SegMeta = List[float]


class JournalFullError(RetriableError):
    """The journal cannot be written (disk full, quota, bucket failing): resumable once fixed."""


def segment_name(n: int) -> str:
    return f"seg-{n:012d}.jsonl.gz"


def record_time(rec: Dict[str, Any], read_at: float) -> float:
    """When a change happened, as closely as we can tell: its ApproximateCreationDateTime, unless
    that is rounded down (DynamoDB Local rounds to the minute) below the moment we read it."""
    v = (rec.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    try:
        approx = float(v) if v is not None else None
    except (TypeError, ValueError):
        approx = None
    if approx is None:
        return read_at
    return min(read_at, approx + 60.0) if approx % 60 == 0 else min(read_at, approx)


class Journal:
    """One replication's journal: the folder or S3 prefix of its segments and its local state file."""

    def __init__(self, location: str, state_path: str, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 seal_every: float = DEFAULT_SEAL_EVERY, s3: Optional[S3Settings] = None,
                 storage: Optional[Storage] = None, clock: Any = time.time) -> None:
        self.location = normalize(location)
        self.state_path = state_path
        self.segment_bytes = segment_bytes
        self.seal_every = seal_every
        self.storage = storage or storage_for(self.location, s3)
        self.clock = clock
        self._lock = threading.Lock()  # the open buffer and the positions it covers
        self._seal_lock = threading.Lock()  # one seal at a time: segments are numbered in order
        self._buf: List[bytes] = []
        self._buf_bytes = 0
        self._buf_meta: Optional[SegMeta] = None
        self._buf_since: Optional[float] = None
        self._dirty = False  # positions moved without records (finished shards, empty reads)
        self.positions: Dict[str, Any] = {}  # positions covering the sealed segments and the buffer
        self.next = 0  # segments < next are sealed
        self.first = 0  # lowest segment not yet deleted
        self.segments: Dict[int, SegMeta] = {}
        self.records_total = 0  # records ever sealed into this journal
        self.alive_at: Optional[float] = None
        self.saved_at = 0.0
        self.extra: Dict[str, Any] = {}
        # Set when a seal failed: the buffer it held is gone, so no later state may be saved
        # (it would record positions past records that are in no segment).
        self.broken: Optional[JournalFullError] = None

    # ------------------------------------------------------------------ lifecycle

    def open(self, *, fresh: bool, positions: Dict[str, Any], extra: Optional[Dict[str, Any]] = None) -> None:
        """Start a new journal at ``positions``, or load the state of an existing one."""
        if not is_s3(self.location):
            try:
                os.makedirs(self.location, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create the journal folder {self.location}: {e.strerror}",
                                 file=self.location) from None
        state = None if fresh else self._load()
        if state is None:
            for path, _ in self._existing():
                self.storage.delete(path)  # a fresh replication starts an empty journal
            self.positions = {k: dict(v) for k, v in positions.items()}
            self.next = self.first = 0
            self.segments = {}
            self.records_total = 0
            self.alive_at = self.clock()
            self.extra = dict(extra or {})
            self._save_state()
            return
        self.positions = dict(state["positions"])
        self.next = int(state["next"])
        self.segments = {int(k): list(v) for k, v in (state.get("segments") or {}).items()}
        self.first = min(self.segments, default=self.next)
        self.records_total = int(state.get("records_total") or 0)
        self.alive_at = float(state.get("alive_at") or self.clock())
        self.extra = dict(state.get("extra") or {})
        for path, _ in self._existing():
            n = _segment_number(path)
            if n is not None and n >= self.next:
                self.storage.delete(path)  # written but never recorded: rewritten from the positions

    def exists(self) -> bool:
        return os.path.exists(self.state_path)

    def _load(self) -> Optional[Dict[str, Any]]:
        try:
            with open(self.state_path, "rb") as fh:
                doc = orjson.loads(fh.read())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as e:
            raise UsageError(f"journal state {self.state_path} is unreadable: {e}; use --restart to start over") from None
        if not isinstance(doc, dict) or doc.get("version") != VERSION or "next" not in doc:
            raise UsageError(f"journal state {self.state_path} is not a version-{VERSION} journal state; "
                             "use --restart to start over")
        if doc.get("checksum") != _checksum(doc):
            raise UsageError(f"journal state {self.state_path} does not match its checksum (edited by hand, or "
                             "damaged): its stream positions cannot be trusted; use --restart to start over",
                             file=self.state_path)
        if normalize(str(doc.get("location"))) != self.location:
            raise UsageError(f"the journal of this replication is {doc.get('location')}, not {self.location}: "
                             "resume with the same --journal (or --restart)")
        return doc

    def _existing(self) -> List[Tuple[str, int]]:
        """This journal's segment files: directly in its folder (never in a subfolder of it)."""
        try:
            files = self.storage.list_files(self.location)
        except (DdbMigrateError, OSError):
            return []
        return [(p, s) for p, s in files if _segment_number(p) is not None
                and self.storage.join(self.location, os.path.basename(p)) == p]

    def _save_state(self, positions: Optional[Dict[str, Any]] = None, nxt: Optional[int] = None,
                    segments: Optional[Dict[int, SegMeta]] = None, records_total: Optional[int] = None) -> None:
        with self._lock:
            segs = dict(self.segments if segments is None else segments)
            pos = {k: dict(v) for k, v in (self.positions if positions is None else positions).items()}
        self.alive_at = self.clock()
        doc = {"version": VERSION, "location": self.location, "next": self.next if nxt is None else nxt,
               "positions": pos, "segments": {str(k): v for k, v in sorted(segs.items())},
               "records_total": self.records_total if records_total is None else records_total,
               "alive_at": self.alive_at, "extra": self.extra}
        doc = orjson.loads(orjson.dumps(doc))  # exactly what a load will see
        doc["checksum"] = _checksum(doc)
        atomic_write(self.state_path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        self.saved_at = self.clock()

    # ------------------------------------------------------------------ writing

    def append(self, shard_id: str, records: List[Dict[str, Any]], position: Dict[str, Any], read_at: float) -> None:
        """Add one page of one shard; ``position`` is the shard's position after it."""
        lines = [orjson.dumps({"s": shard_id, "t": round(read_at, 3), "r": r}) + b"\n" for r in records]
        with self._lock:
            if records:
                if self._buf_meta is None:
                    self._buf_meta = [0, 0, record_time(records[0], read_at), 0.0]
                    self._buf_since = self.clock()
                self._buf.extend(lines)
                n = sum(len(x) for x in lines)
                self._buf_bytes += n
                self._buf_meta[0] += len(records)
                self._buf_meta[1] += n
                self._buf_meta[3] = record_time(records[-1], read_at)
            else:
                self._dirty = True
            self.positions[shard_id] = dict(position)

    def set_position(self, shard_id: str, position: Dict[str, Any]) -> None:
        """A shard learnt from DescribeStream (no records yet): saved with the next state."""
        with self._lock:
            if shard_id not in self.positions:
                self.positions[shard_id] = dict(position)
                self._dirty = True

    def forget(self, shard_ids: List[str]) -> None:
        """Finished shards DynamoDB no longer lists (trimmed after 24 h): their positions can go,
        so the state stays as small as the stream, however long the replication runs."""
        with self._lock:
            for sid in shard_ids:
                if self.positions.get(sid, {}).get("done"):
                    del self.positions[sid]
                    self._dirty = True

    def seal_due(self) -> bool:
        with self._lock:
            if self._buf_meta is not None:
                return (self._buf_bytes >= self.segment_bytes
                        or self.clock() - (self._buf_since or 0.0) >= self.seal_every)
            return self._dirty and self.clock() - self.saved_at >= max(self.seal_every, 1.0)

    def buffered_bytes(self) -> int:
        with self._lock:
            return self._buf_bytes

    def seal(self) -> bool:
        """Make the open buffer a durable segment, then record the positions it covers (invariant 1).

        Returns whether a segment was written. Raises :class:`JournalFullError` when it cannot be.
        """
        with self._seal_lock:
            if self.broken is not None:
                raise self.broken
            with self._lock:
                buf, meta = self._buf, self._buf_meta
                positions = {k: dict(v) for k, v in self.positions.items()}
                self._buf, self._buf_bytes, self._buf_meta, self._buf_since = [], 0, None, None
                self._dirty = False
            n = self.next
            try:
                if meta is not None:
                    # gzip level 1: JSON images shrink about 5x for little CPU; a backlog of a day
                    # of writes is what has to fit on the disk (zcat reads a segment).
                    data = gzip.compress(b"".join(buf), compresslevel=1, mtime=0)
                    self.storage.write_bytes(self.storage.join(self.location, segment_name(n)), data)
                    meta[1] = len(data)
                    crash_point("after_journal_segment")  # sealed, its positions not yet recorded
                    with self._lock:
                        segments = dict(self.segments)
                    segments[n] = meta
                    self._save_state(positions, n + 1, segments, self.records_total + int(meta[0]))
                    with self._lock:  # published only once durable: the applier may read it now
                        self.segments[n] = meta
                        self.next = n + 1
                        self.records_total += int(meta[0])
                else:
                    self._save_state(positions)
            except OSError as e:
                self.broken = self._full(e)
                raise self.broken from None
            except DdbMigrateError as e:
                self.broken = e if isinstance(e, JournalFullError) else JournalFullError(
                    f"cannot write the journal at {self.location}: {e.message}; fix it, then rerun with --resume "
                    "(nothing was lost)", file=self.location, code=e.code)
                raise self.broken from None
            return meta is not None

    def _full(self, e: OSError) -> JournalFullError:
        why = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
        return JournalFullError(f"cannot write the journal at {self.location}: {why}; free space (or move it "
                                "with --journal), then rerun with --resume (nothing was lost)",
                                file=self.location, code=errno.errorcode.get(e.errno or 0, "OSError"))

    # ------------------------------------------------------------------ reading

    def sealed_next(self) -> int:
        return self.next

    def read_segment(self, n: int) -> List[Dict[str, Any]]:
        """The lines of sealed segment ``n``: ``{"s": shard, "t": read at, "r": stream record}``."""
        if n >= self.next:
            raise ValueError(f"segment {n} is not sealed")
        path = self.storage.join(self.location, segment_name(n))
        try:
            data = self.storage.read_bytes(path)
        except (DdbMigrateError, OSError) as e:
            if not self._exists(path):
                # Its records are gone and the stream positions moved past them: no rerun can
                # bring them back, only a resync can (the caller adds the command).
                raise ResyncNeededError(f"resync needed: journal segment {path} is missing, so the changes it "
                                        "held are lost", file=path, code="JournalSegmentMissing") from None
            msg = e.message if isinstance(e, DdbMigrateError) else str(e)
            raise RetriableError(f"cannot read journal segment {path}: {msg}", file=path) from None
        try:
            text = gzip.decompress(data)
            lines = [orjson.loads(line) for line in text.splitlines() if line]
        except (OSError, EOFError, zlib.error, orjson.JSONDecodeError) as e:
            raise ResyncNeededError(f"resync needed: journal segment {path} is damaged ({e}), so the changes it "
                                    "held are lost", file=path, code="JournalSegmentDamaged") from None
        with self._lock:
            meta = self.segments.get(n)
        if meta is not None and len(lines) != int(meta[0]):
            # A valid file with records missing (truncated, replaced): applying what is left would
            # skip changes silently.
            raise ResyncNeededError(f"resync needed: journal segment {path} holds {len(lines)} records where the "
                                    f"journal recorded {int(meta[0])}, so changes are lost", file=path,
                                    code="JournalSegmentShort")
        return lines

    def _exists(self, path: str) -> bool:
        try:
            return self.storage.exists(path)
        except (DdbMigrateError, OSError):
            return True  # cannot tell (a failing bucket): retriable, not lost

    def delete_below(self, n: int) -> None:
        """Delete the segments before ``n``: applied, and the applier's checkpoint says so."""
        with self._lock:
            old = sorted(k for k in self.segments if k < n)
        for k in old:
            try:
                self.storage.delete(self.storage.join(self.location, segment_name(k)))
            except (DdbMigrateError, OSError):
                return  # kept for now; deleted on a later pass
            with self._lock:
                self.segments.pop(k, None)
        self.first = max(self.first, min(n, self.next))

    # ------------------------------------------------------------------ figures

    def backlog(self, segment: int, offset: int) -> Dict[str, Any]:
        """Records and bytes not yet applied, from the applier's position (sealed and buffered)."""
        with self._lock:
            segs = dict(self.segments)
        recs = sum(int(m[0]) for k, m in segs.items() if k >= segment) - (offset if segment in segs else 0)
        with self._lock:
            buffered = int(self._buf_meta[0]) if self._buf_meta else 0
            buf_bytes = self._buf_bytes
        return {"records": max(0, recs) + buffered, "bytes": sum(int(m[1]) for m in segs.values()) + buf_bytes,
                "segments": len(segs), "sealed_records": self.records_total}

    def oldest_time(self, segment: int) -> Optional[float]:
        """When the oldest change of segment ``segment`` or later (or of the buffer) happened."""
        with self._lock:
            later = [k for k in self.segments if k >= segment]
            if later:
                return float(self.segments[min(later)][2])
            return float(self._buf_meta[2]) if self._buf_meta else None


def _checksum(doc: Dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _segment_number(path: str) -> Optional[int]:
    name = os.path.basename(path)
    if not (name.startswith("seg-") and name.endswith(".jsonl.gz")):
        return None
    try:
        return int(name[len("seg-"):-len(".jsonl.gz")])
    except ValueError:
        return None


def journal_paths(checkpoint_meta: str) -> Tuple[str, str]:
    """Default journal folder and state file: next to the replication checkpoint."""
    base = checkpoint_meta.removesuffix(".checkpoint.json")
    return base + ".journal", base + ".journal.json"


__all__ = ["DEFAULT_SEAL_EVERY", "DEFAULT_SEGMENT_BYTES", "Journal", "JournalFullError", "journal_paths",
           "record_time", "segment_name"]
