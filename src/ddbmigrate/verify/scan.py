"""Reading both sides of a verify in one pool of threads: the expected items (transform(source),
validated by the pipeline's own processing step) and the actual ones, fed to a feed by key.

Spark's verify runs it in each map task (one segment of one side). The local verify reads its
sides as jobs instead (:mod:`ddbmigrate.verify.side_jobs`), through the same processing step,
so a side read on Spark is checked and counted as it is locally; :func:`check_verify_options`
serves both.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Protocol,
    Sequence,
    Tuple,
)

import orjson

from ..core.items import KeySchema, WireItem
from ..core.processing import Processing, Processor
from ..core.records import DELETE, Chunk
from ..core.transform import Transform, TransformContext
from ..engine.pipeline import Counters
from ..errors import TransformError, UsageError
from .compare import ACTUAL, EXPECTED
from .report import check_output_path
from .sides import Side


def check_verify_options(sample: Optional[float], on_error: str, repair: bool, keys_only: bool, *,
                         max_read_units: Optional[float] = None, report_path: Optional[str] = None,
                         diff_path: Optional[str] = None) -> None:
    """The usage checks every verify engine (local, Spark) makes before reading anything."""
    if sample is not None and not (0 < sample <= 1):
        raise UsageError(f"--sample must be a rate in (0, 1], not {sample}")
    if on_error not in ("fail", "skip"):
        raise UsageError(f"--on-error must be fail or skip, not {on_error!r}")
    if repair and keys_only:
        raise UsageError("--repair needs full items; it cannot be combined with --keys-only")
    # As copy refuses them (config.RunOptions): 0 must not quietly mean "no limit", and a
    # negative rate would only fail inside the rate limiter, after the scans began.
    if max_read_units is not None:
        if isinstance(max_read_units, float) and math.isnan(max_read_units):
            raise UsageError("--max-read-units must be a number, not nan")
        if not 0 < max_read_units < math.inf:
            raise UsageError("--max-read-units must be a positive number of units per second")
    # The report is written only at the end: a path that cannot take it would lose the verdict
    # of a comparison that may have read for hours.
    check_output_path(report_path, "--report", replaced=True)
    check_output_path(diff_path, "--diff", replaced=False)


# --------------------------------------------------------------------------- scan phase


class ItemFeed(Protocol):
    """Where :func:`scan_sides` hands each side's items: the shuffle on Spark (or a Comparer)."""

    def add(self, side: int, items: Iterable[WireItem]) -> None: ...


DiffWriter = Callable[[Dict[str, Any]], None]


def scan_sides(src: Side, tgt: Side, comparer: ItemFeed, keys: KeySchema, tf: Optional[Transform],
               ctx: TransformContext, check_expected: bool, check_actual: bool, on_error: str, counters: Counters,
               diffs: DiffWriter, readers: int) -> None:
    """Read both sides with one pool of threads, units interleaved so both sides advance together.

    A Spark verify task runs it on one segment of one side; its counters are the ones the
    local side jobs produce (see verify/side_jobs.py), so both engines report alike.
    """
    su = [(EXPECTED, u) for u in src.source.units()]
    tu = [(ACTUAL, u) for u in tgt.source.units()]
    work: Deque[Tuple[int, str]] = deque()
    for i in range(max(len(su), len(tu))):
        if i < len(su):
            work.append(su[i])
        if i < len(tu):
            work.append(tu[i])
    stop = threading.Event()
    errors: List[BaseException] = []
    sides = {EXPECTED: src, ACTUAL: tgt}
    # The pipeline's own processing step: the target must hold exactly what a copy would write.
    step = Processor(Processing(key_schema=keys, transform=tf, context=ctx, source_key_schema=src.key_schema))

    def handle(side: int, chunk: Chunk, unit: str) -> None:
        # Items are parsed, transformed and spilled one at a time (generators below), so a
        # reader holds one page (raw bytes) plus one item, never a whole parsed page.
        items: Sequence[Any] = chunk.items
        parse = chunk.raw is not None
        if chunk.raw is not None:
            items = chunk.raw
        elif chunk.ops is not None:
            if any(kind == DELETE for kind, _ in chunk.ops):
                raise UsageError(f"{sides[side].label}: an incremental export (with deletes) cannot be verified; "
                                 "verify a full export or the table")
            items = [img for _kind, img in chunk.ops]
        name = "source" if side == EXPECTED else "target"
        counts: Dict[str, int] = {f"{name}_read": len(items) + len(chunk.rejects)}
        extra = chunk.counts or {}
        if extra.get("read"):
            # Records the source resolved itself (superseded versions of a key in an
            # incremental export): read, and collapsed into the version we compare.
            counts[f"{name}_read"] += int(extra["read"])
            counts[f"{name}_collapsed"] = int(extra["read"])
        for raw, reason, origin in chunk.rejects:
            counts[f"unreadable_{name}"] = counts.get(f"unreadable_{name}", 0) + 1
            diffs({"category": "unreadable", "side": name, "origin": origin, "reason": reason, "raw": raw[:10_000]})

        def actual() -> Iterator[WireItem]:
            for i, it in enumerate(items):
                if parse:
                    it = orjson.loads(it)
                if check_actual:
                    p = keys.problem(it)
                    if p:
                        counts["unreadable_target"] = counts.get("unreadable_target", 0) + 1
                        diffs({"category": "unreadable", "side": name, "reason": f"target record: {p}",
                               "origin": _origin(chunk, i)})
                        continue
                yield it

        def expected() -> Iterator[WireItem]:
            for i, item in enumerate(items):
                if parse:
                    item = orjson.loads(item)
                if tf is not None:
                    try:
                        outs = step.apply(item, ctx)
                    except TransformError as e:
                        skey = step.source_key(item)
                        if on_error == "fail":
                            raise TransformError(f"{e.message} (source key {orjson.dumps(skey).decode()})",
                                                 code=e.code) from e
                        counts["transform_errors"] = counts.get("transform_errors", 0) + 1
                        continue
                    if not outs:
                        counts["dropped"] = counts.get("dropped", 0) + 1
                        continue
                    if len(outs) > 1:
                        counts["fanout_extra"] = counts.get("fanout_extra", 0) + len(outs) - 1
                else:
                    outs = [item]
                for o in outs:
                    if check_expected:
                        p = step.problem(o)
                        if p:
                            counts["invalid"] = counts.get("invalid", 0) + 1
                            diffs({"category": "invalid", "reason": p, "source_key": step.source_key(item),
                                   "origin": _origin(chunk, i), "expected": o})
                            continue
                    yield o

        comparer.add(side, actual() if side == ACTUAL else expected())
        counters.bump(counts)

    def worker() -> None:
        try:
            while not stop.is_set():
                try:
                    side, unit = work.popleft()
                except IndexError:
                    return
                for chunk in sides[side].source.read(unit, None, stop):
                    handle(side, chunk, unit)
                    if stop.is_set():
                        return
        except BaseException as e:  # the first failure stops every reader
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=worker, name=f"verify-reader-{i}", daemon=True)
               for i in range(max(1, min(readers, len(work))))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]


def _origin(chunk: Chunk, i: int) -> Optional[str]:
    if chunk.origins is not None and i < len(chunk.origins):
        return chunk.origins[i]
    return None


__all__ = ["DiffWriter", "ItemFeed", "check_verify_options", "scan_sides"]
