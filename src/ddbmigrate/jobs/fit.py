"""Before the first read: does what a job will write fit the target's keys and indexes?

A target whose key (or an index key) has another type than the items carry would reject every
item: the job would read the whole source and dead-letter all of it. This check finds that in
seconds, before any item is read for real, and stops the job (exit 2) naming the attribute and
both types.

Two kinds of evidence, both cheap:
1. Schemas: without a transform, an attribute that the source and the target both define
   (table or index key, in ``AttributeDefinitions``) with different types cannot fit.
2. A sample: the first items of a few scan segments of the source (several partition keys, not
   one item collection), through the transform when there is one, checked
   against the target's table key and every GSI/LSI key attribute that they carry (an index key
   may be absent: that is a sparse index, not an error). When no sampled item fits, the job
   stops; a few items that do not fit are left to the dead-letter file, item by item. An
   import reads its records until one fits (:func:`check_records_fit`): unfit records at the
   head of a file do not stop it when later ones fit.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import orjson

from ..core.items import KeySchema, WireItem
from ..core.transform import Transform, TransformContext
from ..errors import DdbMigrateError, UsageError

SAMPLE = 20
log = logging.getLogger("ddbmigrate.fit")

# How many unfit records in a row an import reads before it concludes the input does not fit.
SAMPLE_RECORDS = 1000
_TYPE_NAMES = {"S": "string", "N": "number", "B": "binary"}


def index_key_attributes(desc: Mapping[str, Any]) -> List[Tuple[str, str, str]]:
    """(attribute, type, where) of every key attribute of the table and of its GSIs and LSIs."""
    types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions") or []}
    out: List[Tuple[str, str, str]] = []
    seen = set()

    def add(schema: Iterable[Mapping[str, Any]], where: str) -> None:
        for k in schema:
            name = k["AttributeName"]
            if (name, where) not in seen and name in types:
                seen.add((name, where))
                out.append((name, types[name], where))

    add(desc.get("KeySchema") or [], "table key")
    for kind, label in (("GlobalSecondaryIndexes", "GSI"), ("LocalSecondaryIndexes", "LSI")):
        for ix in desc.get(kind) or []:
            add(ix.get("KeySchema") or [], f"{label} {ix.get('IndexName')}")
    return out


def _type(t: str) -> str:
    return f"{t} ({_TYPE_NAMES.get(t, t)})"


def schema_problems(source_desc: Mapping[str, Any], target_desc: Mapping[str, Any]) -> List[str]:
    """Attributes both tables define as keys with different types (meaningful without a transform)."""
    src = {a["AttributeName"]: a["AttributeType"] for a in source_desc.get("AttributeDefinitions") or []}
    problems = []
    for name, typ, where in index_key_attributes(target_desc):
        if name in src and src[name] != typ:
            problems.append(f"target {where} attribute {name!r} is {_type(typ)} but the source's {name!r} is "
                            f"{_type(src[name])}")
    return problems


def rekey_problems(source_desc: Mapping[str, Any], target_desc: Mapping[str, Any],
                   sample: Iterable[WireItem]) -> List[str]:
    """A copy without a transform into a table keyed otherwise: source items that share the
    target's key would be one target item, all but the last overwritten, and the job would end
    "done" (a table keyed (pk, sk) copied into one keyed pk keeps one item per pk). Two sampled
    items that share it are a problem; otherwise it is said, once, as a warning."""
    skey = [k["AttributeName"] for k in source_desc.get("KeySchema") or []]
    tkeys = KeySchema.from_table_description(target_desc)
    tkey = list(tkeys.names)
    if not skey or not tkey or set(skey) <= set(tkey):
        return []
    seen: Dict[Any, WireItem] = {}
    for item in sample:
        if tkeys.problem(item) is None:  # (unfit items are the dead-letter file's)
            k = tkeys.key(item)
            if k in seen:
                first = {n: seen[k][n] for n in skey if n in seen[k]}
                second = {n: item[n] for n in skey if n in item}
                return [f"the target's primary key ({', '.join(tkey)}) does not hold the source's ({', '.join(skey)}): "
                        f"source items {orjson.dumps(first).decode()} and {orjson.dumps(second).decode()} share it "
                        "and would overwrite one another; give --transform to re-key on purpose"]
            seen[k] = item
    log.warning("the target's primary key (%s) is not the source's (%s): source items that share its value "
                "overwrite one another (%s)", ", ".join(tkey), ", ".join(skey),
                f"none did in a sample of {len(seen)}" if seen else "no sampled item carries the target's key")
    return []


def sample_problems(items: Iterable[WireItem], target_desc: Mapping[str, Any],
                    transform: Optional[Transform] = None, context: Optional[TransformContext] = None,
                    ) -> Tuple[int, int, List[str]]:
    """(outputs checked, outputs that cannot fit, problems) of sampled source items, transformed
    when there is a transform."""
    keys = KeySchema.from_table_description(target_desc)
    attrs = index_key_attributes(target_desc)
    what = "transformed items" if transform is not None else "source items"
    problems: List[str] = []
    outputs = bad = 0
    for item in items:
        try:
            outs = transform(item, context) if transform is not None else [item]
        except DdbMigrateError:
            continue  # the transform's own errors are the job's to report, item by item
        for out in outs:
            outputs += 1
            found: List[str] = []
            p = keys.problem(out)
            if p and "missing" in p:
                found.append(f"{what} lack the target's table key: {p}")
            for name, typ, where in attrs:
                v = out.get(name)
                if isinstance(v, dict) and v and typ not in v:
                    found.append(f"target {where} attribute {name!r} is {_type(typ)} but {what} carry "
                                 f"{_type(next(iter(v)))}")
            if found:
                bad += 1
                problems += found
    return outputs, bad, problems


def check_fits_target(target_name: str, target_desc: Mapping[str, Any], *,
                      source_desc: Optional[Mapping[str, Any]] = None, sample: Iterable[WireItem] = (),
                      transform: Optional[Transform] = None, context: Optional[TransformContext] = None) -> None:
    """Raise UsageError (exit 2) naming the first attribute that cannot fit, before any read."""
    problems: List[str] = []
    sample = list(sample)
    if source_desc is not None and transform is None:
        problems += schema_problems(source_desc, target_desc)
        problems += rekey_problems(source_desc, target_desc, sample)
    if not problems:
        # A few odd items are the dead-letter file's business; a sample in which no item fits
        # means the whole job would be dead letters.
        outputs, bad, found = sample_problems(sample, target_desc, transform, context)
        if outputs and bad == outputs:
            problems += found
    if problems:
        unique: Dict[str, None] = dict.fromkeys(problems)
        first = next(iter(unique))
        more = f" (and {len(unique) - 1} more)" if len(unique) > 1 else ""
        raise UsageError(f"what this job writes does not fit table {target_name!r}: {first}{more}; nothing "
                         "was read or written", table=target_name, code="KeyMismatch")


def check_records_fit(target_name: str, target_desc: Mapping[str, Any], records: Iterable[Tuple[WireItem, str]],
                      whole: Callable[[], bool], *, limit: int = SAMPLE_RECORDS,
                      transform: Optional[Transform] = None, context: Optional[TransformContext] = None) -> None:
    """The import's check, over ``(item, origin)`` records read in order (at most ``limit``).

    Files often open with a few odd records (a junk header, test rows), so the first records
    alone prove nothing about the rest: the check ends at the first record that fits, and the
    unfit ones before it are the dead-letter file's, each with its ``file:line``. It refuses
    (UsageError, exit 2) only when every record read is unfit and they are either the whole
    input (``whole()`` after the records ran out: then nothing could be loaded anyway) or
    ``limit`` of them (no longer a few odd ones), naming where they are and how to go on.
    """
    checked = 0
    problems: Dict[str, None] = {}
    first = last = ""
    for item, origin in records:
        outputs, bad, found = sample_problems([item], target_desc, transform, context)
        if not outputs:
            continue  # dropped by the transform (or its error): says nothing about fitting
        if not bad:
            return
        checked += 1
        problems.update(dict.fromkeys(found))
        first, last = first or origin, origin
        if checked >= limit:
            break
    if not checked or (checked < limit and not whole()):
        return
    reason = next(iter(problems))
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    span = first if first == last else f"{first} to {last}"
    if checked < limit:
        raise UsageError(f"what this job writes does not fit table {target_name!r}: {reason}{more}; none of the "
                         f"{checked} record(s) of the input fits ({span}); nothing was written",
                         table=target_name, code="KeyMismatch")
    raise UsageError(f"what this job writes does not fit table {target_name!r}: {reason}{more}; the first {checked} "
                     f"records ({span}) all fail to fit, so the import stops before writing anything",
                     table=target_name, code="KeyMismatch",
                     hint="check the target table's key (or the --transform); if records after these do fit, "
                          "move these out of the input and run again")


SAMPLE_SEGMENTS = 4


def sample_table(client: Any, table: str, n: int = SAMPLE, segments: int = SAMPLE_SEGMENTS) -> List[WireItem]:
    """The first ``n`` items of each of ``segments`` Scan segments. One page's first items are
    mostly one item collection (one partition key's items are read together): when that key's
    items alone did not fit, the whole job was refused where its other items fit and those few
    belonged in the dead-letter file. Each segment covers its own share of the partition keys;
    ``n`` from each keeps the evidence of a table of one collection as it was."""
    per = max(1, n)
    out: List[WireItem] = []
    for seg in range(segments):
        resp = client.call("Scan", {"TableName": table, "Limit": per, "Segment": seg, "TotalSegments": segments},
                           table=table)
        out += list(resp.get("Items") or [])
    return out
