"""Bounded-memory comparison of two item collections by primary key (the engine of ``verify``).

Both sides are hash-partitioned by key into spill files on disk while they are read; then the
partitions are compared one at a time. Only one partition's *index* (key -> digest and file
offset, about 200 bytes + key per record) is ever in memory, never items: an item is read back
from its spill file only when it is reported (missing, unexpected or mismatched). A partition
whose index would exceed the memory budget is split again on disk with a fresh hash salt before
it is loaded, so the budget holds however wrong the initial size estimate was.

Spill files are written by :class:`~ddbmigrate.sinks.compare_spill.Spill` (here, or in a verify
job's sink, one set of files per worker process); :meth:`Comparer.compare` takes every file
of a partition, whoever wrote it. Spill record (little endian)::

    u16 key length | u32 item length | 16-byte digest | key (orjson of KeySchema.key) | item

``item`` is the item's JSON (as it came in, from a verify job's sinks; with sorted attribute
names, from :meth:`Comparer.add`) and ``digest`` is BLAKE2b-128 of exactly those bytes. Equal
digests therefore prove equal items cheaply; unequal digests are confirmed with
:func:`items.canonical_item` (attribute and set order, number spelling, base64),
so a reordered set or ``1`` vs ``1.0`` is never a difference, while ``N "1"`` vs ``S "1"`` is.

Invariant: every record added to a side is counted in exactly one outcome: ``equal`` (both
sides), ``missing`` (expected only), ``unexpected`` (target only), ``mismatched`` (both sides),
or a duplicate of a key already seen on the same side. So::

    expected == equal + missing + mismatched + expected_duplicates
    actual   == equal + unexpected + mismatched + actual_duplicates
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import orjson

from ..core.items import KeySchema, WireItem, canonical_item, canonical_value
from ..sinks.compare_spill import (
    ACTUAL,
    EXPECTED,
    HDR,
    Spill,
    SpillSet,
    iter_records,
    read_item,
    sample_threshold,
    spill_buffer,
    spill_records,
)

_IDX = struct.Struct("<16sHQI")  # digest, file number, item offset, item length: one index entry's value
_MATCHED = b""  # index value of a key already paired
# Rough bytes of Python heap per index entry, beyond the key bytes: key object header, packed
# value object, and the dict slot. Used to size partitions, so it errs on the high side.
INDEX_ENTRY_OVERHEAD = 200
DEFAULT_BUDGET = 256 * 1024 * 1024
MIN_PARTITIONS = 16
MAX_PARTITIONS = 4096
SPLIT_FANOUT = 16

Emit = Callable[[Dict[str, Any]], None]


def key_bytes(keys: KeySchema, item: WireItem) -> bytes:
    """The key's identity as bytes (numbers by value), the unit of partitioning and matching."""
    return orjson.dumps(keys.key(item))


def key_hash(kb: bytes) -> Tuple[int, int]:
    """Two independent 32-bit hashes of a key: one picks the partition, one decides sampling."""
    h = hashlib.blake2b(kb, digest_size=8).digest()
    return int.from_bytes(h[:4], "little"), int.from_bytes(h[4:], "little")


def sampled(kb: bytes, rate: Optional[float]) -> bool:
    """Deterministic key sampling: the same key is in (or out of) the sample on both sides."""
    if rate is None or rate >= 1.0:
        return True
    return key_hash(kb)[1] < int(rate * 2 ** 32)


def partitions_for(estimated_records: int, budget: int, avg_key: int = 40) -> int:
    """Enough partitions that one partition's index fits in half the budget (a power of two)."""
    need = estimated_records * (INDEX_ENTRY_OVERHEAD + avg_key) * 2 // max(1, budget) + 1
    n = MIN_PARTITIONS
    while n < need and n < MAX_PARTITIONS:
        n *= 2
    return n


@dataclass
class CompareCounts:
    expected: int = 0
    actual: int = 0
    equal: int = 0
    missing: int = 0
    unexpected: int = 0
    mismatched: int = 0
    expected_duplicates: int = 0
    actual_duplicates: int = 0
    splits: int = 0
    max_partition_records: int = 0

    def balanced(self) -> bool:
        return (self.expected == self.equal + self.missing + self.mismatched + self.expected_duplicates
                and self.actual == self.equal + self.unexpected + self.mismatched + self.actual_duplicates)

    def as_dict(self) -> Dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Comparer:
    """Add records of both sides (thread-safe), then :meth:`compare` partition by partition.

    ``keys`` is the key schema both sides are matched by (the target's). With ``keys_only``
    no item is stored, so only presence is compared. ``sample`` keeps a deterministic fraction
    of keys (by key hash, identical on both sides).
    """

    keys: KeySchema
    folder: str
    partitions: int = MIN_PARTITIONS
    budget: int = DEFAULT_BUDGET
    keys_only: bool = False
    sample: Optional[float] = None
    spills: List[Spill] = field(default_factory=list)
    sampled_out: List[int] = field(default_factory=lambda: [0, 0])

    def __post_init__(self) -> None:
        buf = spill_buffer(self.budget, self.partitions)
        self.spills = [Spill(self.folder, "expected", self.partitions, buf),
                       Spill(self.folder, "actual", self.partitions, buf)]
        self._threshold = sample_threshold(self.sample)
        self._lock = threading.Lock()

    def add(self, side: int, items: Iterable[WireItem]) -> None:
        """Spill ``items`` (which must carry the key attributes) for ``side`` (EXPECTED/ACTUAL)."""
        recs, dropped = spill_records(self.keys, self.partitions, self._threshold, self.keys_only, items)
        if dropped:
            with self._lock:
                self.sampled_out[side] += dropped
        self.spills[side].add(recs)

    def close(self) -> None:
        for s in self.spills:
            s.close()

    # ------------------------------------------------------------------ compare

    def compare(self, emit: Emit, on_partition: Optional[Callable[[int], None]] = None,
                sides: Optional[Tuple[SpillSet, SpillSet]] = None) -> CompareCounts:
        """Compare every partition; ``emit`` receives one dict per difference.

        ``sides``: the (expected, actual) spill files to compare instead of this comparer's own,
        each partition possibly in several files (one per writer: a verify job's workers).
        Every file is deleted once its partition is compared.
        """
        self.close()
        counts = CompareCounts()
        exp, act = sides if sides is not None else (self.spills[0].spilled(), self.spills[1].spilled())
        for p in range(self.partitions):
            load = exp.counts[p] + act.counts[p]
            kbytes = exp.key_bytes[p] + act.key_bytes[p]
            self._compare_files(exp.files[p], act.files[p], load, kbytes, 0, emit, counts)
            for path in exp.files[p] + act.files[p]:
                if os.path.exists(path):
                    os.unlink(path)  # free the disk as we go
            if on_partition is not None:
                on_partition(p)
        return counts

    def _compare_files(self, epaths: List[str], apaths: List[str], records: int, kbytes: int, depth: int,
                       emit: Emit, counts: CompareCounts) -> None:
        if records * INDEX_ENTRY_OVERHEAD + kbytes > self.budget and depth < 8 and records > 1:
            self._split(epaths, apaths, depth, emit, counts)
            return
        counts.max_partition_records = max(counts.max_partition_records, records)
        # On both sides the later record of a key wins, as a later write would (within one
        # writer's file; across writers, which is "later" is arbitrary: either way it is
        # counted). On the target side it is what a file imported writes: compared by its first,
        # a file whose repeated key's last record differed read EQUAL, and the table imported
        # from it did not. The partition's size counts both sides, so both fit the budget.
        index, counts.expected, counts.expected_duplicates = _last_records(
            epaths, counts.expected, counts.expected_duplicates)
        last, counts.actual, counts.actual_duplicates = _last_records(apaths, counts.actual, counts.actual_duplicates)
        # One handle per file, opened when one of its items is first reported.
        handles: Dict[Tuple[int, int], Any] = {}

        def item(side: int, fno: int, off: int, ilen: int) -> Optional[WireItem]:
            fh = handles.get((side, fno))
            if fh is None:
                fh = handles[(side, fno)] = open((epaths, apaths)[side][fno], "rb")
            return read_item(fh, off, ilen)

        try:
            for kb, packed in last.items():
                dig, afno, off, ilen = _IDX.unpack(packed)
                v = index.get(kb)
                if v is None:
                    counts.unexpected += 1
                    emit(self._diff("unexpected", kb, None, item(ACTUAL, afno, off, ilen)))
                    continue
                index[kb] = _MATCHED
                edig, efno, eoff, elen = _IDX.unpack(v)
                if edig == dig:
                    counts.equal += 1
                    continue
                e_item = item(EXPECTED, efno, eoff, elen)
                a_item = item(ACTUAL, afno, off, ilen)
                if e_item is not None and a_item is not None and canonical_item(e_item) == canonical_item(a_item):
                    counts.equal += 1
                    continue
                counts.mismatched += 1
                emit(self._diff("mismatched", kb, e_item, a_item))
            # Expected keys never paired are missing; report them in key order (stable output).
            for kb in sorted(k for k, v in index.items() if v != _MATCHED):
                _dig, efno, eoff, elen = _IDX.unpack(index[kb])
                counts.missing += 1
                emit(self._diff("missing", kb, item(EXPECTED, efno, eoff, elen), None))
        finally:
            for fh in handles.values():
                fh.close()

    def _split(self, epaths: List[str], apaths: List[str], depth: int, emit: Emit, counts: CompareCounts) -> None:
        """Re-partition one oversized partition on disk with a salt of its own, then recurse."""
        counts.splits += 1
        salt = (depth + 1).to_bytes(8, "little")
        subs: List[List[str]] = [[], []]
        sub_counts = [[0] * SPLIT_FANOUT, [0] * SPLIT_FANOUT]
        sub_kbytes = [0] * SPLIT_FANOUT
        for side, paths in enumerate((epaths, apaths)):
            # A side's sub-files are named after its first file (unique to this comparison).
            base = paths[0] if paths else os.path.join(self.folder, f"empty-{side}-{depth}")
            outs = [f"{base}.{depth + 1}.{i:02d}" for i in range(SPLIT_FANOUT)]
            subs[side] = outs
            bufs = [bytearray() for _ in range(SPLIT_FANOUT)]
            for path in paths:
                if not os.path.exists(path):
                    continue
                with open(path, "rb", buffering=1 << 20) as fh:
                    for kb, dig, off, ilen in iter_records(path):
                        i = int.from_bytes(hashlib.blake2b(kb, digest_size=4, salt=salt).digest(),
                                           "little") % SPLIT_FANOUT
                        fh.seek(off)
                        body = fh.read(ilen) if ilen else b""
                        bufs[i] += HDR.pack(len(kb), ilen, dig) + kb + body
                        sub_counts[side][i] += 1
                        sub_kbytes[i] += len(kb)
                        if len(bufs[i]) >= 1 << 18:
                            with open(outs[i], "ab") as out:
                                out.write(bufs[i])
                            bufs[i] = bytearray()
                os.unlink(path)
            for i, b in enumerate(bufs):
                if b:
                    with open(outs[i], "ab") as out:
                        out.write(b)
        for i in range(SPLIT_FANOUT):
            self._compare_files([subs[0][i]], [subs[1][i]], sub_counts[0][i] + sub_counts[1][i], sub_kbytes[i],
                                depth + 1, emit, counts)
            for path in (subs[0][i], subs[1][i]):
                if os.path.exists(path):
                    os.unlink(path)

    def _diff(self, category: str, kb: bytes, expected: Optional[WireItem], actual: Optional[WireItem]) -> Dict[str, Any]:
        key = self.keys.key_from_tuple(tuple(orjson.loads(kb)))
        d: Dict[str, Any] = {"category": category, "key": key}
        if category == "mismatched" and expected is not None and actual is not None:
            d["differences"] = [{"path": p, "expected": e, "actual": a} for p, e, a in diff_paths(expected, actual)]
        if expected is not None:
            d["expected"] = expected
        if actual is not None:
            d["actual"] = actual
        return d


# --------------------------------------------------------------------------- attribute diffs


def _tag(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        return str(next(iter(v)))
    return "M"  # an untagged {} is an empty map (see items.canonical_value)


def diff_paths(expected: WireItem, actual: WireItem) -> List[Tuple[str, Any, Any]]:
    """The attribute paths that differ (``a.b[2].c``) with the expected and actual wire values.

    A path present on one side only has None on the other. Sets compare as sets, numbers by value.
    """
    out: List[Tuple[str, Any, Any]] = []
    for name in sorted(set(expected) | set(actual)):
        _diff_value(expected.get(name), actual.get(name), _name(name), out)
    return out


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def _name(k: str) -> str:
    """A name as a path shows it: quoted (JSON) when it is not a plain word, so an attribute
    named ``a.b`` (``"a.b"``) is not taken for the map ``a``'s key ``b`` (``a.b``), nor ``l[0]``
    for a list's first element."""
    return k if _PLAIN_NAME.match(k) else json.dumps(k, ensure_ascii=False)


def _diff_value(e: Any, a: Any, path: str, out: List[Tuple[str, Any, Any]]) -> None:
    if e is None or a is None:
        out.append((path, e, a))
        return
    te, ta = _tag(e), _tag(a)
    if te != ta:
        out.append((path, e, a))
        return
    if te == "M":
        em, am = e.get("M", {}), a.get("M", {})
        for k in sorted(set(em) | set(am)):
            _diff_value(em.get(k), am.get(k), f"{path}.{_name(k)}", out)
        return
    if te == "L":
        el, al = e["L"], a["L"]
        for i in range(max(len(el), len(al))):
            _diff_value(el[i] if i < len(el) else None, al[i] if i < len(al) else None, f"{path}[{i}]", out)
        return
    if canonical_value(e) != canonical_value(a):
        out.append((path, e, a))


def compare_in_memory(keys: KeySchema, expected: List[WireItem], actual: List[WireItem]) -> Dict[str, List[Any]]:
    """The obvious all-in-memory comparison (reference for tests): category -> sorted keys."""
    exp = {orjson.dumps(keys.key(i)): canonical_item(i) for i in expected}
    act = {orjson.dumps(keys.key(i)): canonical_item(i) for i in actual}
    out: Dict[str, List[Any]] = {"missing": [], "unexpected": [], "mismatched": [], "equal": []}
    for k, v in exp.items():
        if k not in act:
            out["missing"].append(k)
        elif act[k] != v:
            out["mismatched"].append(k)
        else:
            out["equal"].append(k)
    out["unexpected"] = [k for k in act if k not in exp]
    return {c: sorted(v) for c, v in out.items()}


# The spill format and side numbers live with their writer (sinks/compare_spill.py); they are
# re-exported here, where the comparison has always offered them.
__all__ = ["ACTUAL", "DEFAULT_BUDGET", "EXPECTED", "INDEX_ENTRY_OVERHEAD", "MAX_PARTITIONS", "MIN_PARTITIONS",
           "SPLIT_FANOUT", "CompareCounts", "Comparer", "Emit", "Spill", "SpillSet", "compare_in_memory",
           "diff_paths", "iter_records", "key_bytes", "key_hash", "partitions_for", "read_item", "sampled",
           "spill_buffer"]


def _last_records(paths: List[str], records: int, repeats: int) -> Tuple[Dict[bytes, bytes], int, int]:
    """Key -> its last record's packed (digest, file, offset, length) over ``paths``, with the
    running count of records and of repeated keys carried on."""
    index: Dict[bytes, bytes] = {}
    pack = _IDX.pack
    for fno, path in enumerate(paths):
        for kb, dig, off, ilen in iter_records(path):
            records += 1
            if kb in index:
                repeats += 1
            index[kb] = pack(dig, fno, off, ilen)
    return index, records, repeats
