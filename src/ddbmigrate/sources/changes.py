"""The change mapping of a replication: stream records -> full-image writes.

    journal records (sources.journal, in stream order per key) ──▶ ChangeMapper ──ops──▶ pipeline

Change mapping (full images only, so any replay is harmless)::

    INSERT / MODIFY  -> put transform(NewImage)
    REMOVE           -> delete every target key derived from transform(OldImage)
    MODIFY re-keyed  -> also delete the derived keys of the old image that the new one lacks

Invariants:
1. Per-key net change: the records of one source key in one chunk (given in stream order)
   collapse into one net change: delete the keys derived from *every* image seen (the backfill
   may have copied any of them) that the final image does not derive, then put the final image's
   items (or nothing, for a REMOVE).
2. Every record ends in one place: mapped to writes, skipped as older than the replication's
   start or as a TTL expiry (``--skip-ttl-deletes``), or rejected with its reason — each counted.

The transform must give each source item its own target keys (no two source items may derive
the same target key), as for any replicated re-modelling. Within one page of records, a key that
one source item's final image derives is never deleted for another item's old image (a re-key
made as a put and a delete, mapped back by a rollback's inverse transform, is two source items
deriving one key for a moment); across pages the rule above stands.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import orjson

from ..core.items import KeySchema, WireItem
from ..core.processing import Processing, Processor
from ..core.records import DELETE, PUT
from ..core.transform import Transform, TransformContext
from ..errors import FatalError, TransformError
from .stream import approx_time, fix_image

# An ENABLED stream whose shards are all closed has children coming; after this long, it ended.
STREAM_END_GRACE = 120.0


# --------------------------------------------------------------------------- change mapping


def is_ttl_delete(record: Dict[str, Any]) -> bool:
    """A REMOVE made by DynamoDB's TTL expiry: its ``userIdentity`` is the DynamoDB service."""
    ident = record.get("userIdentity") or {}
    kind = ident.get("Type") or ident.get("type")
    principal = ident.get("PrincipalId") or ident.get("principalId")
    return kind == "Service" and principal == "dynamodb.amazonaws.com"


class ChangeMapper:
    """Stream records of one page -> write operations (see the module docstring, invariant 1)."""

    def __init__(self, transform: Optional[Transform], source_keys: KeySchema, target_keys: KeySchema, *,
                 on_error: str = "fail", context: Optional[TransformContext] = None,
                 skip_ttl_deletes: bool = False) -> None:
        self.tf = transform
        self.skip_ttl_deletes = skip_ttl_deletes
        self.skeys = source_keys
        self.tkeys = target_keys
        self.on_error = on_error
        self.ctx = context or TransformContext()
        # The pipeline's own processing step: a change derives exactly the items a backfill writes.
        self.step = Processor(Processing(key_schema=None, transform=transform, context=self.ctx))
        # Without a transform and with the same key, a record's Keys are the target key.
        self.simple = transform is None and source_keys == target_keys
        self.counts: Dict[str, int] = {"records": 0, "inserts": 0, "modifies": 0, "removes": 0,
                                       "skipped_before_start": 0, "collapsed_records": 0, "ttl_deletes": 0,
                                       "ttl_deletes_skipped": 0}

    @property
    def needs_old_images(self) -> bool:
        return not self.simple

    def _apply(self, image: WireItem) -> List[WireItem]:
        return self.step.apply(image, self.ctx)

    def map(self, shard_id: str, records: List[Dict[str, Any]], skip_before: Optional[float] = None,
            ) -> Tuple[List[Tuple[int, WireItem]], List[Tuple[str, str, str]]]:
        """Ops (kind, image) and rejects (raw, reason, origin) for one page of one shard."""
        groups: Dict[Any, List[Dict[str, Any]]] = {}
        c = self.counts
        for r in records:
            d = r.get("dynamodb") or {}
            c["records"] += 1
            if skip_before is not None:
                t = approx_time(r)
                if t is not None and t < skip_before:
                    c["skipped_before_start"] += 1
                    continue
            name = r.get("eventName")
            if name == "REMOVE" and is_ttl_delete(r):
                if self.skip_ttl_deletes:
                    c["ttl_deletes_skipped"] += 1  # --skip-ttl-deletes: the target keeps its copy
                    continue
                c["ttl_deletes"] += 1
            c["inserts" if name == "INSERT" else "modifies" if name == "MODIFY" else "removes"] += 1
            groups.setdefault(self.skeys.key(d["Keys"]), []).append(r)
        ops: List[Tuple[int, WireItem]] = []
        rejects: List[Tuple[str, str, str]] = []
        for recs in groups.values():
            c["collapsed_records"] += len(recs) - 1
            self._group(shard_id, recs, ops, rejects)
        if not self.simple:
            # A key one source item's final image derives is not deleted for another one's old
            # image: a re-key made as a put of the new key and a delete of the old (a rollback's
            # inverse transform maps both to one key) deleted the item the put had just written.
            tk = self.tkeys
            # (An output that lacks the key is the pipeline's to dead-letter: it keys nothing.)
            kept = {tk.key(o) for kind, o in ops if kind == PUT and tk.problem(o) is None}
            if kept:
                ops = [(kind, o) for kind, o in ops
                       if kind == PUT or tk.problem(o) is not None or tk.key(o) not in kept]
        return ops, rejects

    def _group(self, shard_id: str, recs: List[Dict[str, Any]], ops: List[Tuple[int, WireItem]],
               rejects: List[Tuple[str, str, str]]) -> None:
        first, last = recs[0]["dynamodb"], recs[-1]["dynamodb"]
        removed = recs[-1].get("eventName") == "REMOVE"
        final = None if removed else fix_image(last.get("NewImage"))
        origin = f"shard {shard_id} seq {last.get('SequenceNumber')}"
        if not removed and final is None:
            raise FatalError(f"stream record without NewImage ({origin}): the stream must carry new images",
                             code="StreamViewType")
        if self.simple:
            ops.append((PUT, final) if final is not None else (DELETE, dict(last["Keys"])))
            return
        # Every image this source item had since the previous page: the backfill (or an earlier
        # page) may have written the items derived from any of them.
        if recs[0].get("eventName") != "INSERT" and first.get("OldImage") is None:
            raise FatalError(f"stream record without OldImage ({origin}): deleting derived items needs "
                             "a NEW_AND_OLD_IMAGES stream", code="StreamViewType")
        images: Dict[bytes, WireItem] = {}
        for i, r in enumerate(recs):
            d = r["dynamodb"]
            # Old images of every record (they chain, but a gap must not leave a stale item) and
            # the new images of all but the last, each transformed once.
            for img in (d.get("OldImage"), d.get("NewImage") if i < len(recs) - 1 else None):
                fixed = fix_image(img)
                if fixed is not None:
                    images.setdefault(orjson.dumps(fixed, option=orjson.OPT_SORT_KEYS), fixed)
        try:
            outs = self._apply(final) if final is not None else []
        except TransformError as e:
            self._reject(e, last, origin, rejects, "transform of the new image failed")
            return
        tk = self.tkeys
        keep = {tk.key(o) for o in outs if tk.problem(o) is None}
        stale: Dict[Any, WireItem] = {}
        for img in images.values():
            try:
                derived = self._apply(img)
            except TransformError as e:
                self._reject(e, last, origin, rejects, "cannot derive the target keys of an earlier image "
                             "to delete them")
                continue
            for o in derived:
                if tk.problem(o) is not None:
                    continue  # never writable, so never written
                k = tk.key(o)
                if k not in keep and k not in stale:
                    stale[k] = tk.project(o)
        ops.extend((DELETE, k) for k in stale.values())
        ops.extend((PUT, o) for o in outs)

    def _reject(self, e: TransformError, rec: Dict[str, Any], origin: str, rejects: List[Tuple[str, str, str]],
                what: str) -> None:
        key = orjson.dumps(rec.get("Keys")).decode()
        if self.on_error == "fail":
            raise TransformError(f"{what}: {e.message} (source key {key}, {origin})", code=e.code) from e
        raw = orjson.dumps({"Keys": rec.get("Keys"), "SequenceNumber": rec.get("SequenceNumber"),
                            "NewImage": rec.get("NewImage"), "OldImage": rec.get("OldImage")}).decode()
        rejects.append((raw, f"{what}: {e.message}", origin))


__all__ = ["STREAM_END_GRACE", "ChangeMapper", "is_ttl_delete"]
