"""The compare sink: a verify job's "writes" are spilled, by key hash, into partition files.

    verify job: side's SourceSpec ─▶ ProcessingSpec (what a copy would write) ─▶ CompareSpillSpec(side)
        each worker's sink: op's JSON ─▶ key hash ─▶ partition p ─▶ <folder>/<side>-<pid>-<uuid>-<p>.bin
        driver: merge() concatenates the workers' file lists per partition ─▶ finalize() hands them
        to the comparison (verify/compare.py, partition by partition, over every worker's files)

The spill file format lives here, with its writer; the Comparer (verify/compare.py) reads it
and, for a comparison run in one process, writes it through the same :class:`Spill`.

Invariants:
1. Every op a sink acknowledges is spilled (or counted as sampled out, by the same key-hash rule
   on both sides) exactly once; each sink writes only its own files (named by pid and a uuid), so
   workers never append to one file, and its committed state lists every file it wrote.
2. Every record is placed and encoded by one rule (``_spill``), so a key lands in the same
   partition whoever spilled it. The digest is of the item's JSON: as it came in for a verify
   job's sinks (:func:`spill_ops`), with sorted names for the Comparer's ``add``
   (:func:`spill_records`); both sides of one comparison are spilled the same way. Equal digests
   are equal items; unequal ones are compared in full and canonically by the Comparer, so an
   attribute order that differs between the sides costs time, never a wrong answer.
3. Memory is bounded by one buffer per partition (``buffer_bytes``), never the items.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar

import orjson

_simdjson: Any
try:  # a lazy parser: the key is read out of an item's JSON without building the item
    import simdjson as _simdjson
except ImportError:  # pragma: no cover - pysimdjson is a dependency
    _simdjson = None

from ..core.items import KeySchema, WireItem
from ..core.protocols import SinkBase
from ..core.records import DELETE, BatchResult, Op
from ..core.specs import Resources, SinkSpecBase
from ..errors import UsageError

if TYPE_CHECKING:
    from ..reporting.report import Report

EXPECTED = 0
ACTUAL = 1

# Spill record (little endian): u16 key length | u32 item length | 16-byte digest | key | item
HDR = struct.Struct("<HI16s")
NO_DIGEST = b"\0" * 16


# --------------------------------------------------------------------------- the spill file format


def encode_record(kb: bytes, ib: Optional[bytes]) -> bytes:
    """One record: the key, and the item's JSON ``ib`` with its digest (None: the key alone)."""
    if ib is None:
        return HDR.pack(len(kb), 0, NO_DIGEST) + kb
    return HDR.pack(len(kb), len(ib), hashlib.blake2b(ib, digest_size=16).digest()) + kb + ib


def iter_records(path: str) -> Iterator[Tuple[bytes, bytes, int, int]]:
    """(key bytes, digest, item offset, item length) of each record; items are skipped, not read."""
    if not os.path.exists(path):
        return
    with open(path, "rb", buffering=1 << 20) as fh:
        read, hsize = fh.read, HDR.size
        pos = 0
        while True:
            hdr = read(hsize)
            if not hdr:
                return
            if len(hdr) < hsize:
                raise OSError(f"spill file {path} is truncated")
            klen, ilen, dig = HDR.unpack(hdr)
            kb = read(klen)
            off = pos + hsize + klen
            if ilen:
                fh.seek(ilen, 1)
            pos = off + ilen
            yield kb, dig, off, ilen


def read_item(fh: Any, off: int, length: int) -> Optional[WireItem]:
    if not length:
        return None
    fh.seek(off)
    item: WireItem = orjson.loads(fh.read(length))
    return item


class Spill:
    """One side's partition files, appended to by many threads; buffers bounded per partition."""

    def __init__(self, folder: str, name: str, partitions: int, buffer_bytes: int = 64 * 1024) -> None:
        self.folder = folder
        self.name = name
        self.partitions = partitions
        self.buffer_bytes = buffer_bytes
        self.counts = [0] * partitions
        self.key_bytes = [0] * partitions
        self.bytes = 0
        self._bufs = [bytearray() for _ in range(partitions)]
        self._lock = threading.Lock()
        os.makedirs(folder, exist_ok=True)

    def path(self, p: int) -> str:
        return os.path.join(self.folder, f"{self.name}-{p:05d}.bin")

    def add(self, records: List[Tuple[int, int, bytes]]) -> None:
        """Append (partition, key length, record bytes) tuples."""
        with self._lock:
            for p, klen, rec in records:
                buf = self._bufs[p]
                buf += rec
                self.counts[p] += 1
                self.key_bytes[p] += klen
                self.bytes += len(rec)
                if len(buf) >= self.buffer_bytes:
                    self._flush(p)

    def _flush(self, p: int) -> None:
        buf = self._bufs[p]
        if buf:
            # Opened per flush, not kept open: thousands of partitions never exhaust descriptors.
            with open(self.path(p), "ab") as fh:
                fh.write(buf)
            self._bufs[p] = bytearray()

    def close(self) -> None:
        with self._lock:
            for p in range(self.partitions):
                self._flush(p)

    @property
    def records(self) -> int:
        return sum(self.counts)

    def spilled(self, sampled_out: int = 0) -> "SpillSet":
        """What this spill wrote so far (flush first), as a :class:`SpillSet` of one writer."""
        return SpillSet([[self.path(p)] for p in range(self.partitions)], list(self.counts),
                        list(self.key_bytes), self.bytes, sampled_out)


@dataclass
class SpillSet:
    """One side's spill files, possibly from several writers (worker processes): per partition,
    every file holding records of it. Its counts are what sizes the comparison of a partition."""

    files: List[List[str]]
    counts: List[int]
    key_bytes: List[int]
    bytes: int = 0
    sampled_out: int = 0

    @classmethod
    def empty(cls, partitions: int) -> "SpillSet":
        return cls([[] for _ in range(partitions)], [0] * partitions, [0] * partitions)

    def merged(self, other: "SpillSet") -> "SpillSet":
        """Both writers' files and counts, partition by partition (same partition count)."""
        assert len(self.files) == len(other.files), "spills of one comparison share their partitions"
        return SpillSet([a + b for a, b in zip(self.files, other.files)],
                        [a + b for a, b in zip(self.counts, other.counts)],
                        [a + b for a, b in zip(self.key_bytes, other.key_bytes)],
                        self.bytes + other.bytes, self.sampled_out + other.sampled_out)

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SpillSet":
        return cls([list(f) for f in d["files"]], list(d["counts"]), list(d["key_bytes"]), int(d.get("bytes", 0)),
                   int(d.get("sampled_out", 0)))


def sample_threshold(sample: Optional[float]) -> Optional[int]:
    """The key-hash bound below which a key is in the sample (None: every key)."""
    return int(sample * 2 ** 32) if sample is not None and sample < 1.0 else None


Records = Tuple[List[Tuple[int, int, bytes]], int]
T = TypeVar("T")


def _spill(partitions: int, threshold: Optional[int], keys_only: bool, things: Iterable[T],
           key_of: Callable[[T], Optional[bytes]], body_of: Callable[[T], bytes],
           keyless: Optional[List[T]] = None) -> Records:
    """(partition, key length, record) of each thing in the sample, and how many were sampled out:
    the one placement rule (by key hash, the same on both sides) and the one record format. A
    thing with no key (``key_of`` gives None) goes to ``keyless``."""
    recs: List[Tuple[int, int, bytes]] = []
    dropped = 0
    for t in things:
        kb = key_of(t)
        if kb is None:
            if keyless is not None:
                keyless.append(t)
            continue
        h = hashlib.blake2b(kb, digest_size=8).digest()
        if threshold is not None and int.from_bytes(h[4:], "little") >= threshold:
            dropped += 1
            continue
        recs.append((int.from_bytes(h[:4], "little") % partitions, len(kb),
                     encode_record(kb, None if keys_only else body_of(t))))
    return recs, dropped


def spill_records(keys: KeySchema, partitions: int, threshold: Optional[int], keys_only: bool,
                  items: Iterable[WireItem]) -> Records:
    """Items as Python objects (the Comparer's ``add``): each spilled as its JSON with sorted
    names, so items built in any order digest alike."""
    return _spill(partitions, threshold, keys_only, items, lambda it: orjson.dumps(keys.key(it)),
                  lambda it: orjson.dumps(it, option=orjson.OPT_SORT_KEYS))


_parsers = threading.local()


def _key_of(keys: KeySchema, op: Op) -> Optional[bytes]:
    """The key bytes of an op, read from its JSON without building the item (simdjson), unless
    the item is already built or the JSON does not hold the key as expected."""
    if op._item is None and _simdjson is not None:
        parser = getattr(_parsers, "parser", None)
        if parser is None:
            parser = _parsers.parser = _simdjson.Parser()
        try:
            doc: Any = parser.parse(op.enc)
            try:
                return orjson.dumps(keys.key(doc))
            finally:
                del doc
        except (KeyError, TypeError, ValueError, RuntimeError):
            pass
    try:
        return orjson.dumps(keys.key(op.item))
    except (KeyError, TypeError, AttributeError):
        # An item without the key, or with it of another type: no DynamoDB table gives one, but a
        # server may (the sink says which, item by item).
        return None


def spill_ops(keys: KeySchema, partitions: int, threshold: Optional[int], keys_only: bool,
              ops: Iterable[Op], keyless: Optional[List[Op]] = None) -> Records:
    """A job's ops (a verify side's sink): each item is spilled as the JSON it came in and its
    digest is of those bytes, so no item is built or encoded again. Ops whose item lacks the key
    go to ``keyless``."""
    return _spill(partitions, threshold, keys_only, ops, lambda o: _key_of(keys, o), lambda o: o.enc, keyless)


def spill_buffer(budget: int, partitions: int) -> int:
    """Bytes buffered per partition file: write buffers take at most an eighth of the budget
    across both sides."""
    return max(4096, min(256 * 1024, budget // 8 // (2 * partitions)))



# --------------------------------------------------------------------------- the sink


SIDE_NAMES = {EXPECTED: "expected", ACTUAL: "actual"}
# Where finalize() leaves the merged SpillSet for the caller that ran the job (verify_tables).
SPILL_REPORT_KEY = "compare_spill"


class CompareSpillSink(SinkBase):
    """One worker's spill of one side; see the module docstring."""

    def __init__(self, spec: "CompareSpillSpec") -> None:
        self.spec = spec
        self.threshold = sample_threshold(spec.sample)
        # pid and a uuid: several worker processes (and several sinks of one process) each
        # write their own files into the one folder.
        name = f"{SIDE_NAMES[spec.side]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.spill = Spill(spec.folder, name, spec.partitions, spec.buffer_bytes)
        self.sampled_out = 0
        self._lock = threading.Lock()

    def write(self, ops: List[Op]) -> BatchResult:
        if any(o.kind == DELETE for o in ops):
            # Verify reads full images only (an incremental export is refused when its side opens).
            raise UsageError("a verify side produced a delete: only full images can be compared")
        keyless: List[Op] = []
        recs, dropped = spill_ops(self.spec.keys, self.spec.partitions, self.threshold, self.spec.keys_only, ops,
                                  keyless)
        self.spill.add(recs)
        if dropped:
            with self._lock:
                self.sampled_out += dropped
        # Sampled-out ops are acknowledged too: they are settled (counted in the state), not lost.
        # One without the key cannot be matched: refused, with why (it stopped verify with KeyError).
        keys = self.spec.keys
        rejected = [(o, keys.problem(o.item) or "the item lacks the key", "InvalidKey") for o in keyless]
        return BatchResult(written=len(ops) - len(keyless), rejected=rejected)

    @contextlib.contextmanager
    def commit(self, final: bool) -> Iterator[Optional[Dict[str, Any]]]:
        # Flushed so the files hold every acknowledged record the state counts.
        self.spill.close()
        with self._lock:
            yield self.spill.spilled(self.sampled_out).to_dict()

    def close(self) -> None:
        self.spill.close()


@dataclass(frozen=True)
class CompareSpillSpec(SinkSpecBase):
    """Spill ``side``'s items into ``partitions`` key-hash partition files under ``folder`` (picklable).

    ``keys`` is the key schema both sides are matched by; ``keys_only`` spills keys without
    bodies; ``sample`` keeps a deterministic key-hash fraction (the same keys on both sides).
    """

    side: int
    folder: str
    keys: KeySchema
    partitions: int
    buffer_bytes: int = 64 * 1024
    keys_only: bool = False
    sample: Optional[float] = None

    def build(self, res: Resources) -> CompareSpillSink:
        return CompareSpillSink(self)

    def merge(self, states: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        """Every worker's files and counts, partition by partition."""
        out = SpillSet.empty(self.partitions)
        for st in states:
            if st:
                out = out.merged(SpillSet.from_dict(st))
        return out.to_dict()

    def finalize(self, state: Mapping[str, Any], report: "Report") -> None:
        report.extra[SPILL_REPORT_KEY] = dict(state) if state else SpillSet.empty(self.partitions).to_dict()


def spill_of(report: "Report") -> SpillSet:
    """The merged spill a verify job's report carries (see :meth:`CompareSpillSpec.finalize`)."""
    return SpillSet.from_dict(report.extra.pop(SPILL_REPORT_KEY))


__all__ = ["ACTUAL", "EXPECTED", "CompareSpillSink", "CompareSpillSpec", "SPILL_REPORT_KEY", "Spill", "SpillSet",
           "encode_record", "iter_records", "read_item", "sample_threshold", "spill_buffer", "spill_of", "spill_ops",
           "spill_records"]
