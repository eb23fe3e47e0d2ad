"""The one processing step: transform -> validate -> encode, for the pipeline, verify and streams.

    record ──transform (optional, user code)──▶ outputs ──validate (key, size, fan-out keys)──▶ encode ──▶ Op

:class:`Processor.chunk` runs it over a source chunk for the pipeline; :meth:`Processor.apply`
and :meth:`Processor.problem` are the same two steps for one record, for verify (what the
target must hold) and the stream change mapper (what a change must write or delete).

Invariants:
1. Every record ends in exactly one place: an op, a drop by the transform (counted), or a
   dead letter with its reason (handed to the caller's ``dead`` callback). The counts returned
   add up: ``read + fanout_extra == out + dropped + dead letters of the transform stage``.
2. Items stay in wire format unless a transform needs Python values (invariant 5 of DESIGN.md);
   a record no rule needs to look at (same key schema, no transform) is never parsed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

import orjson

from ..errors import TransformError
from .items import MAX_ITEM_BYTES, IndexKey, KeySchema, WireItem, index_key_problem, oversize
from .records import DELETE, MAX_BATCH_OPS, PUT, Chunk, Op
from .transform import Transform, TransformContext, short_traceback

# dead(item, reason, code, stage, origin, source_key, raw=None, tb=None)
DeadFn = Callable[..., None]


@dataclass
class Processing:
    """How records become write operations."""

    key_schema: Optional[KeySchema]  # the sink's key (None: files, no key checks)
    transform: Optional[Transform] = None
    on_error: str = "fail"
    max_errors: Optional[int] = None
    trusted: bool = False  # records come from a table with this very key schema: skip key checks
    source_key_schema: Optional[KeySchema] = None
    context: TransformContext = field(default_factory=TransformContext)
    max_batch_ops: int = MAX_BATCH_OPS
    dedupe: bool = True
    sample: int = 0  # keep N before/after pairs (dry run)
    # The transform sees the scan segment a record came from (ctx.segment). Verify turns it off:
    # its segments are not the copy's, so there ctx.segment is None, as it always was.
    unit_segment: bool = True
    # The sink table's index keys: an output DynamoDB would refuse for an index is a dead letter
    # here (and a dry run's "invalid"), not a refused batch narrowed down item by item.
    index_keys: Tuple[IndexKey, ...] = ()


class Processed(NamedTuple):
    ops: List[Op]
    counts: Dict[str, int]
    keyed: bool  # ops carry their keys: duplicates in the chunk may be collapsed


class Processor:
    """Runs :class:`Processing` over records; keeps the first ``sample`` before/after pairs."""

    def __init__(self, proc: Processing) -> None:
        self.proc = proc
        ks = proc.key_schema
        self.check_keys = ks is not None and not (proc.trusted and proc.transform is None)
        self.dedupe = proc.dedupe and ks is not None
        self.samples: List[Tuple[Any, Any]] = []
        self._sample_lock = threading.Lock()

    # ------------------------------------------------------------------ one record

    def source_key(self, item: WireItem) -> Any:
        ks = self.proc.source_key_schema
        return ks.project_or_none(item) if ks is not None else None

    def apply(self, item: WireItem, ctx: Optional[TransformContext] = None) -> List[WireItem]:
        """The outputs of one record: the transform's (fan-out, [] for a drop) or the record itself.

        Raises TransformError when the user's code fails or returns something that is not items.
        """
        tf = self.proc.transform
        return tf(item, ctx or self.proc.context) if tf is not None else [item]

    def problem(self, out: WireItem, enc: Optional[bytes] = None) -> Optional[str]:
        """Why ``out`` cannot be written to the sink (its key, its size), or None."""
        ks = self.proc.key_schema
        if ks is not None and self.check_keys:
            p = ks.problem(out)
            if p:
                return p
        n = len(enc) if enc is not None else len(orjson.dumps(out))
        if n > MAX_ITEM_BYTES:
            size = oversize(out, n)
            if size is not None:
                return f"item is {size} bytes; DynamoDB's limit is {MAX_ITEM_BYTES}"
        return None

    # ------------------------------------------------------------------ a chunk

    def chunk(self, chunk: Chunk, segment: Optional[int], dead: DeadFn, keep_keys: bool = False) -> "Processed":
        """Ops for every record of ``chunk`` (dead letters through ``dead``) and the counts.

        ``keep_keys``: ops carry their key even when nothing is deduplicated (the pipeline
        routes keyed ops of an ordered source to one writer per key).
        """
        proc = self.proc
        keyschema = proc.key_schema
        check_keys = self.check_keys
        index_keys = proc.index_keys
        dedupe = self.dedupe
        tf = proc.transform
        dumps = orjson.dumps
        counts = {"read": 0, "out": 0, "dropped": 0, "transform_errors": 0, "fanout_extra": 0}

        for name, n in (chunk.counts or {}).items():
            counts[name] = counts.get(name, 0) + n
        for raw, reason, where in chunk.rejects:
            counts["read"] += 1
            dead(None, reason, "InvalidInput", "read", where, None, raw=raw)

        if proc.sample and tf is None and len(self.samples) < proc.sample:
            self._sample_as_is(chunk)
        records: Iterable[Tuple[int, WireItem]]
        if chunk.raw is not None and chunk.ops is None:
            if tf is None and not check_keys and not keep_keys:
                return Processed(self._pass_through(chunk.raw, dead, counts), counts, False)
            # Parse one item at a time: only one item's dicts are alive at once, not a page's.
            loads = orjson.loads
            records = ((PUT, loads(b)) for b in chunk.raw)
        elif chunk.ops is not None:
            records = chunk.ops
        else:
            records = [(PUT, it) for it in chunk.items]
        origins = chunk.origins
        encs = chunk.encs if tf is None and chunk.ops is None and chunk.raw is None else None
        ops: List[Op] = []
        # A context of its own per chunk: reader threads never share a mutable context, and the
        # transform sees the segment it is reading.
        ctx = replace(proc.context, segment=segment) if tf else proc.context
        for idx, (kind, item) in enumerate(records):
            counts["read"] += 1
            origin = origins[idx] if origins is not None else None
            if tf is not None:
                if origin is not None:
                    ctx.origin = origin
                try:
                    outs = tf(item, ctx)
                except TransformError as e:
                    counts["transform_errors"] += 1
                    skey = self.source_key(item)
                    if proc.on_error == "fail":
                        # Name the record: by its key (tables) or its place (files without a key).
                        where = (f"source key {orjson.dumps(skey).decode()}" if skey is not None
                                 else f"source record {origin}" if origin is not None else "source record")
                        raise TransformError(f"{e.message} ({where})", code=e.code) from e
                    dead(item, e.message, e.code or "TransformError", "transform", origin, skey,
                         tb=short_traceback(e))
                    continue
                if proc.sample and len(self.samples) < proc.sample:
                    with self._sample_lock:
                        if len(self.samples) < proc.sample:
                            self.samples.append((item, outs))
                if not outs:
                    counts["dropped"] += 1
                    continue
                if len(outs) > 1:
                    counts["fanout_extra"] += len(outs) - 1
                # Every dead letter of a transformed item names the source item it came from.
                skey = self.source_key(item)
            else:
                outs = [item]
                skey = None
            # Keys already produced by this one source record: a second output with the same key
            # is a transform bug (the writes would race); the first is kept, the rest dead-lettered.
            seen_keys: Optional[Set[Any]] = set() if len(outs) > 1 and keyschema is not None else None
            for out in outs:
                counts["out"] += 1
                if kind == DELETE:
                    # A delete only needs the key; the image may be an old full item.
                    if keyschema is not None:
                        p = keyschema.problem(out) if check_keys else None
                        if p:
                            dead(out, p, "InvalidKey", "validate", origin, skey)
                            continue
                        try:
                            out = keyschema.project(out)
                            keyschema.key(out)
                        except (KeyError, TypeError, ValueError, ArithmeticError):
                            # (No table gives an item without its key; a server may: it stopped
                            # a clean with KeyError.)
                            dead(out, keyschema.problem(out) or "the item lacks the key", "InvalidKey", "validate",
                                 origin, skey)
                            continue
                    try:
                        enc = exact(dumps(out))
                    except TypeError as e:
                        dead(None, _unencodable(e), "InvalidOutput", "validate", origin, skey, raw=_escaped(out))
                        continue
                    ops.append(Op(DELETE, out, enc, keyschema.key(out) if dedupe and keyschema else None,
                                  origin, skey))
                    continue
                if check_keys:
                    p = keyschema.problem(out)  # type: ignore[union-attr]
                    if p:
                        dead(out, p, "InvalidKey", "validate", origin, skey)
                        continue
                if index_keys:
                    p = index_key_problem(out, index_keys)
                    if p:
                        dead(out, p, "InvalidIndexKey", "validate", origin, skey)
                        continue
                given = encs[idx] if encs is not None else None
                try:
                    enc = given if given is not None else exact(dumps(out))
                except TypeError as e:
                    dead(None, _unencodable(e), "InvalidOutput", "validate", origin, skey, raw=_escaped(out))
                    continue
                if len(enc) > MAX_ITEM_BYTES:
                    p = self.problem(out, enc)
                    if p is not None:
                        dead(out, p, "ItemTooLarge", "validate", origin, skey)
                        continue
                okey = keyschema.key(out) if (dedupe or seen_keys is not None) and keyschema else None
                if seen_keys is not None:
                    if okey in seen_keys:
                        dead(out, "the transform returned more than one item with key "
                             f"{orjson.dumps(keyschema.project(out)).decode()} for one source item; "  # type: ignore[union-attr]
                             "the first was kept", "DuplicateKey", "validate", origin, skey)
                        continue
                    seen_keys.add(okey)
                # Only the encoding is kept (Op.wire() decodes it again if ever needed), so a
                # chunk waiting in the queue costs its JSON bytes, not its Python objects.
                ops.append(Op(PUT, None, enc, okey if dedupe else None, origin, skey))
        return Processed(ops, counts, dedupe)

    def _sample_as_is(self, chunk: Chunk) -> None:
        """``--sample`` without a transform: the first records, each written as it is."""
        with self._sample_lock:
            want = self.proc.sample - len(self.samples)
            if chunk.raw is not None:
                first: List[WireItem] = [orjson.loads(b) for b in chunk.raw[:want]]
            elif chunk.ops is not None:
                first = [img for _kind, img in chunk.ops[:want]]
            else:
                first = list(chunk.items[:want])
            self.samples.extend((it, [it]) for it in first)

    def _pass_through(self, raw: List[bytes], dead: DeadFn, counts: Dict[str, int]) -> List[Op]:
        """Items from a table with the target's very key schema, no transform: no parsing.

        A scan page holds each key once, so no dedupe is needed; only the size is checked
        (JSON length is an upper bound of DynamoDB's size, so almost never parsed).
        """
        ops: List[Op] = []
        append = ops.append
        for enc in raw:
            if len(enc) > MAX_ITEM_BYTES:
                item = orjson.loads(enc)
                size = oversize(item, len(enc))
                if size is not None:
                    dead(item, f"item is {size} bytes; DynamoDB's limit is {MAX_ITEM_BYTES}",
                         "ItemTooLarge", "validate", None, None)
                    continue
            append(Op(PUT, None, enc, None))
        n = len(raw)
        counts["read"] += n
        counts["out"] += n
        return ops


# orjson refuses to encode only a str that is not UTF-8 (a transform's lone surrogate, "\ud800"):
# DynamoDB cannot hold it either, so the item is a dead letter, not the job's end.
NOT_UTF8 = "the item holds a string that is not valid UTF-8 (a lone surrogate?); DynamoDB strings are UTF-8"


def _unencodable(e: TypeError) -> str:
    return NOT_UTF8 if "UTF-8" in str(e) else f"the item cannot be encoded as JSON: {e}"


def _escaped(item: Any) -> str:
    """The item as JSON with every non-ASCII character escaped: a dead letter can hold it."""
    import json

    try:
        return json.dumps(item, ensure_ascii=True, default=str)
    except (TypeError, ValueError, RecursionError):
        return ascii(item)


def exact(enc: bytes) -> bytes:
    """A copy of ``enc`` that owns exactly its length.

    orjson.dumps returns bytes inside the buffer it grew while writing and never shrinks (8 KB for
    a 1 KB item, 130 KB for a 9 KB one): the ~13,000 ops a transform copy holds in its queues
    took ~100 MB instead of ~13 MB (measured with tracemalloc). One memcpy fixes it.
    """
    return memoryview(enc).tobytes()


__all__ = ["DeadFn", "Processed", "Processing", "Processor", "exact"]
