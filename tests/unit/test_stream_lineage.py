"""Stream reading logic against a SCRIPTED stream (DynamoDB Local has one shard that never splits).

The fake implements the three Streams calls the reader uses, with the real service's semantics
that matter here: paginated DescribeStream, shard lineage, iterators that expire after 15 minutes,
trimming after 24 hours, and no NextShardIterator once a closed shard is fully read.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

from ddbmigrate.core.protocols import SinkBase
from ddbmigrate.errors import AwsError, ResyncNeededError, TransformError
from ddbmigrate.core.items import KeySchema
from ddbmigrate.core.records import DELETE, PUT
from ddbmigrate.sources.changes import ChangeMapper
from ddbmigrate.sources.stream import StreamReader, check_stream_view, fix_image
from ddbmigrate.core.transform import Transform

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/label"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class ScriptedStream:
    """Shards with records; sequence numbers are global, padded, and compared as integers."""

    def __init__(self, clock: Clock, describe_page: int = 2) -> None:
        self.clock = clock
        self.describe_page = describe_page
        self.shards: Dict[str, Dict[str, Any]] = {}
        self.order: List[str] = []
        self.seq = 0
        self.trimmed_before = 0  # records with seq < this are gone
        self.calls: List[str] = []
        self.status = "ENABLED"

    def add_shard(self, sid: str, parent: Optional[str] = None) -> None:
        self.shards[sid] = {"parent": parent, "records": [], "closed": False, "start": self.seq + 1}
        self.order.append(sid)

    def write(self, sid: str, key: str, name: str = "INSERT") -> int:
        assert not self.shards[sid]["closed"]
        self.seq += 1
        rec = {"eventName": name, "dynamodb": {
            "Keys": {"pk": {"S": key}}, "NewImage": {"pk": {"S": key}, "v": {"N": str(self.seq)}},
            "SequenceNumber": f"{self.seq:021d}", "ApproximateCreationDateTime": self.clock()}}
        self.shards[sid]["records"].append(rec)
        return self.seq

    def close(self, sid: str) -> None:
        self.shards[sid]["closed"] = True
        self.shards[sid]["end"] = self.seq

    def call(self, op: str, payload: Dict[str, Any]) -> Dict[str, Any]:
        self.calls.append(op)
        return getattr(self, "_" + op)(payload)

    def _DescribeStream(self, p: Dict[str, Any]) -> Dict[str, Any]:
        ids = self.order
        if p.get("ExclusiveStartShardId"):
            ids = ids[ids.index(p["ExclusiveStartShardId"]) + 1:]
        page = ids[: self.describe_page]
        shards = []
        for sid in page:
            s = self.shards[sid]
            rng = {"StartingSequenceNumber": f"{s['start']:021d}"}
            if s["closed"]:
                rng["EndingSequenceNumber"] = f"{s['end']:021d}"
            d: Dict[str, Any] = {"ShardId": sid, "SequenceNumberRange": rng}
            if s["parent"]:
                d["ParentShardId"] = s["parent"]
            shards.append(d)
        desc: Dict[str, Any] = {"StreamArn": ARN, "StreamStatus": self.status, "StreamViewType": "NEW_AND_OLD_IMAGES",
                                "Shards": shards}
        if len(ids) > self.describe_page:
            desc["LastEvaluatedShardId"] = page[-1]
        return {"StreamDescription": desc}

    def _index_after(self, sid: str, seq: int) -> int:
        recs = self.shards[sid]["records"]
        return next((i for i, r in enumerate(recs) if int(r["dynamodb"]["SequenceNumber"]) > seq), len(recs))

    def _GetShardIterator(self, p: Dict[str, Any]) -> Dict[str, Any]:
        sid, typ = p["ShardId"], p["ShardIteratorType"]
        recs = self.shards[sid]["records"]
        if typ == "TRIM_HORIZON":
            idx = self._index_after(sid, self.trimmed_before - 1)
        elif typ == "LATEST":
            idx = len(recs)
        else:
            seq = int(p["SequenceNumber"])
            if seq < self.trimmed_before:
                raise AwsError("trimmed", code="TrimmedDataAccessException")
            idx = self._index_after(sid, seq if typ == "AFTER_SEQUENCE_NUMBER" else seq - 1)
        return {"ShardIterator": f"{sid}|{idx}|{self.clock()}"}

    def _GetRecords(self, p: Dict[str, Any]) -> Dict[str, Any]:
        sid, idx_s, issued = p["ShardIterator"].split("|")
        if self.clock() - float(issued) > 900:
            raise AwsError("expired", code="ExpiredIteratorException")
        idx = int(idx_s)
        s = self.shards[sid]
        out = s["records"][idx: idx + p.get("Limit", 1000)]
        if out and int(out[0]["dynamodb"]["SequenceNumber"]) < self.trimmed_before:
            raise AwsError("trimmed", code="TrimmedDataAccessException")
        nidx = idx + len(out)
        resp: Dict[str, Any] = {"Records": out}
        if not (s["closed"] and nidx >= len(s["records"])):
            resp["NextShardIterator"] = f"{sid}|{nidx}|{self.clock()}"
        return resp


def drain(reader: StreamReader, rounds: int = 200) -> List[Tuple[str, int]]:
    """Read like the replicator: round after round over the ready shards, until nothing is left."""
    got: List[Tuple[str, int]] = []
    for _ in range(rounds):
        reader.refresh(force=True)
        ready = reader.ready_shards()
        if not ready:
            break
        for sid in ready:
            page = reader.read_page(sid)
            got.extend((sid, int(r["dynamodb"]["SequenceNumber"])) for r in page.records)
    return got


def build_tree(stream: ScriptedStream, rng: random.Random) -> None:
    """root -> a, b (split); a -> a1; b -> b1, b2; with writes interleaved across open shards."""
    stream.add_shard("root")
    for i in range(5):
        stream.write("root", f"k{i}")
    stream.close("root")
    stream.add_shard("a", "root")
    stream.add_shard("b", "root")
    for i in range(20):
        stream.write(rng.choice(["a", "b"]), f"k{i % 7}")
    stream.close("a")
    stream.add_shard("a1", "a")
    for i in range(10):
        stream.write(rng.choice(["a1", "b"]), f"k{i}")
    stream.close("b")
    stream.add_shard("b1", "b")
    stream.add_shard("b2", "b")
    for i in range(12):
        stream.write(rng.choice(["a1", "b1", "b2"]), f"k{i}")


def parent_of(stream: ScriptedStream, sid: str) -> Optional[str]:
    return stream.shards[sid]["parent"]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("page_limit", [1, 3, 1000])
def test_parents_finish_before_children_over_generations(seed: int, page_limit: int) -> None:
    clock = Clock()
    stream = ScriptedStream(clock)
    build_tree(stream, random.Random(seed))
    reader = StreamReader(stream, ARN, page_limit=page_limit, clock=clock)
    reader.load({})
    got = drain(reader)
    # Every record exactly once, each shard in sequence order.
    expected = sorted((sid, int(r["dynamodb"]["SequenceNumber"])) for sid, s in stream.shards.items()
                      for r in s["records"])
    assert sorted(got) == expected
    for sid in stream.shards:
        seqs = [q for s, q in got if s == sid]
        assert seqs == sorted(seqs)
    # Lineage: the last record of a parent comes before the first record of any of its children.
    pos = {rec: i for i, rec in enumerate(got)}
    for sid in stream.shards:
        parent = parent_of(stream, sid)
        mine = [pos[(s, q)] for s, q in got if s == sid]
        theirs = [pos[(s, q)] for s, q in got if s == parent]
        if parent and mine and theirs:
            assert max(theirs) < min(mine), (parent, sid)
    # Closed shards are finished; open ones stay readable.
    for sid, s in stream.shards.items():
        assert bool(reader.positions[sid].get("done")) == s["closed"]
    assert "DescribeStream" in stream.calls


def test_describe_stream_is_paginated() -> None:
    clock = Clock()
    stream = ScriptedStream(clock, describe_page=1)
    build_tree(stream, random.Random(0))
    d = StreamReader(stream, ARN, clock=clock).describe()
    assert [s.shard_id for s in d.shards] == stream.order
    assert stream.calls.count("DescribeStream") == len(stream.order)
    assert {s.shard_id: s.parent_id for s in d.shards}["b2"] == "b"
    assert [s.closed for s in d.shards] == [stream.shards[x]["closed"] for x in stream.order]


def test_start_positions_finish_closed_shards_and_replay_open_ones() -> None:
    clock = Clock()
    stream = ScriptedStream(clock)
    build_tree(stream, random.Random(5))
    reader = StreamReader(stream, ARN, clock=clock)
    start = reader.start_positions()
    assert {k for k, v in start.items() if v.get("done")} == {"root", "a", "b"}
    assert all(v == {"from": "TRIM_HORIZON", "since": clock()} for k, v in start.items() if k in ("a1", "b1", "b2"))
    # A record written after the start is replayed; records of closed shards are not.
    after = stream.write("b2", "late")
    got = drain(reader)
    assert ("b2", after) in got
    assert not any(s in ("root", "a", "b") for s, _ in got)


def test_new_child_shard_is_discovered_and_waits_for_its_parent() -> None:
    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("p")
    stream.write("p", "x")
    reader = StreamReader(stream, ARN, clock=clock, describe_every=30)
    reader.load({})
    assert drain(reader) == [("p", 1)]
    # The parent splits while we tail it: the child appears, but only after the parent is finished.
    stream.add_shard("c", "p")
    stream.write("p", "y")
    stream.close("p")
    stream.write("c", "x")
    reader.refresh(force=True)
    assert reader.ready_shards() == ["p"] and reader.waiting_shards() == ["c"]
    page = reader.read_page("p")
    assert [int(r["dynamodb"]["SequenceNumber"]) for r in page.records] == [2] and page.finished
    assert reader.ready_shards() == ["c"]
    assert [int(r["dynamodb"]["SequenceNumber"]) for r in reader.read_page("c").records] == [3]


def test_expired_iterator_is_renewed_from_the_position_without_loss_or_duplicates() -> None:
    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("s")
    for i in range(6):
        stream.write("s", f"k{i}")
    reader = StreamReader(stream, ARN, page_limit=2, clock=clock)
    reader.load({})
    reader.refresh(force=True)
    first = reader.read_page("s")
    clock.t += 16 * 60  # past the 15-minute iterator lifetime
    second = reader.read_page("s")
    rest = reader.read_page("s")
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for p in (first, second, rest) for r in p.records]
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert reader.iterator_renewals == 1
    assert reader.positions["s"] == {"after": f"{6:021d}"}


def test_resume_from_checkpointed_position_uses_after_sequence_number() -> None:
    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("s")
    for i in range(5):
        stream.write("s", f"k{i}")
    reader = StreamReader(stream, ARN, clock=clock)
    reader.load({"s": {"after": f"{3:021d}"}})
    assert drain(reader) == [("s", 4), ("s", 5)]
    reader.load({"s": {"at": f"{3:021d}"}})
    assert drain(reader) == [("s", 3), ("s", 4), ("s", 5)]


def test_trimmed_position_means_resync_needed() -> None:
    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("s")
    for i in range(5):
        stream.write("s", f"k{i}")
    stream.trimmed_before = 4
    reader = StreamReader(stream, ARN, clock=clock)
    reader.load({"s": {"after": f"{2:021d}"}})
    reader.refresh(force=True)
    with pytest.raises(ResyncNeededError, match="resync needed.*trimmed"):
        reader.read_page("s")



def test_a_parent_gone_from_the_stream_before_it_was_read_to_its_end_means_resync_needed() -> None:
    """Before: resumed with a position in a shard the stream no longer lists (trimmed while the
    replicator was down and behind), its unread records were lost and its child waited for it
    forever, the replication saying nothing but a growing lag."""
    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("p")
    stream.write("p", "a")
    stream.write("p", "b")
    reader = StreamReader(stream, ARN, clock=clock, page_limit=1)
    reader.start_positions()
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in reader.read_page("p").records] == ["a"]
    saved = reader.snapshot()
    stream.close("p")
    stream.add_shard("c", parent="p")
    stream.write("c", "x")
    stream.order.remove("p")  # p's records (b) trimmed: DynamoDB no longer lists it
    stream.trimmed_before = 3
    resumed = StreamReader(stream, ARN, clock=clock)
    resumed.load(saved)
    with pytest.raises(ResyncNeededError, match="shard p is gone from the stream before it was read to its end"):
        resumed.refresh(force=True)


def test_trim_horizon_start_older_than_retention_means_resync_needed() -> None:
    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("s")
    reader = StreamReader(stream, ARN, clock=clock)
    reader.load({"s": {"from": "TRIM_HORIZON", "since": clock() - 25 * 3600}})
    reader.refresh(force=True)
    with pytest.raises(ResyncNeededError, match="24 h"):
        reader.read_page("s")
    # An empty read from TRIM_HORIZON proves nothing older can be lost: the start moves forward.
    reader.load({"s": {"from": "TRIM_HORIZON", "since": clock() - 3600}})
    reader.refresh(force=True)
    assert reader.read_page("s").records == []
    assert reader.positions["s"] == {"from": "TRIM_HORIZON", "since": clock()}



def test_a_shard_polled_empty_for_a_day_resumes_without_a_resync() -> None:
    """Before: an empty shard's start stayed at the time of its first iterator (the next ones are
    chained from it), so a replicator that polled it empty for a day and was stopped a moment
    ago was told "resync needed" on --resume, with nothing trimmed."""
    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("s")
    reader = StreamReader(stream, ARN, clock=clock)
    reader.load({"s": {"from": "TRIM_HORIZON", "since": clock()}})
    reader.refresh(force=True)
    for _ in range(25 * 6):  # every 10 minutes for 25 h, one chained iterator after another
        assert reader.read_page("s").records == []
        clock.t += 600
    assert stream.calls.count("GetShardIterator") == 1
    assert reader.positions["s"] == {"from": "TRIM_HORIZON", "since": clock() - 600}
    stream.write("s", "k1")
    resumed = StreamReader(stream, ARN, clock=clock)
    resumed.load(reader.snapshot())
    resumed.refresh(force=True)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in resumed.read_page("s").records] == ["k1"]


class _LocalQuirk(ScriptedStream):
    """DynamoDB Local's: an iterator from TRIM_HORIZON of a shard that was empty while other
    tables took writes is refused as trimmed once records come; a fresh one reads them."""

    def _GetRecords(self, p: Dict[str, Any]) -> Dict[str, Any]:
        sid, idx_s, issued = p["ShardIterator"].split("|")
        if self.shards[sid]["records"] and (getattr(self, "always", False) or float(issued) < self.shards[sid][
                "records"][0]["dynamodb"]["ApproximateCreationDateTime"] - 1):
            raise AwsError("The operation attempted to read past the oldest stream record in a shard.",
                           code="TrimmedDataAccessException")
        return super()._GetRecords(p)


def test_an_empty_shard_read_moments_ago_refused_as_trimmed_is_read_again_from_its_horizon() -> None:
    """Before: the replication stopped with "resync needed" on DynamoDB Local as soon as the
    source took writes, when its stream had been enabled by the replicator (an empty shard) and
    the backfill wrote the target meanwhile. Nothing can be trimmed of a shard that was empty
    moments ago; a position really trimmed still needs a resync."""
    clock = Clock()
    stream = _LocalQuirk(clock)
    stream.add_shard("s")
    reader = StreamReader(stream, ARN, clock=clock)
    reader.load({"s": {"from": "TRIM_HORIZON", "since": clock()}})
    reader.refresh(force=True)
    assert reader.read_page("s").records == []
    clock.t += 5
    for i in range(3):
        stream.write("s", f"k{i}")
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in reader.read_page("s").records] == ["k0", "k1", "k2"]
    # Refused again from a fresh iterator: that is no quirk, and the replication needs a resync.
    stream.always = True  # type: ignore[attr-defined]
    stream.write("s", "k9")
    reader.load({"s": {"from": "TRIM_HORIZON", "since": clock()}})
    reader.refresh(force=True)
    before = stream.calls.count("GetShardIterator")
    with pytest.raises(ResyncNeededError, match="trimmed"):
        reader.read_page("s")
    assert stream.calls.count("GetShardIterator") == before + 2


def test_stream_view_types() -> None:
    check_stream_view("NEW_AND_OLD_IMAGES", needs_old=True, table="t")
    check_stream_view("NEW_IMAGE", needs_old=False, table="t")
    for view, old in (("KEYS_ONLY", False), ("NEW_IMAGE", True), ("OLD_IMAGE", False)):
        with pytest.raises(Exception, match="NEW_AND_OLD_IMAGES"):
            check_stream_view(view, needs_old=old, table="t")


def test_fix_image_restores_untagged_empty_maps() -> None:
    img = {"pk": {"S": "a"}, "m": {}, "x": {"M": {"e": {}, "n": {"N": "1"}}}, "l": {"L": [{}, {"M": {"z": {}}}]}}
    assert fix_image(img) == {"pk": {"S": "a"}, "m": {"M": {}}, "x": {"M": {"e": {"M": {}}, "n": {"N": "1"}}},
                              "l": {"L": [{"M": {}}, {"M": {"z": {"M": {}}}}]}}
    clean = {"pk": {"S": "a"}, "s": {"SS": ["x"]}}
    assert fix_image(clean) is clean


# --------------------------------------------------------------------------- change mapping


def _fanout(item: Dict[str, Any]) -> Any:
    """Re-keys by owner and fans out one target item per tag."""
    if item.get("bad"):
        raise ValueError("bad item")
    return [{"pk": f"{item['owner']}#{t}", "src": item["pk"]} for t in sorted(item.get("tags", []))]


FANOUT = Transform(_fanout, "test:_fanout", "hash", __file__)
# Each source item derives its own keys (what replication requires of a transform).
UNIQUE_FANOUT = Transform(lambda item: [dict(o, pk=o["pk"] + "#" + item["pk"]) for o in _fanout(item)],
                          "test:unique", "hash", __file__)
SK = KeySchema("pk", "S")


def rec(name: str, seq: int, old: Optional[Dict[str, Any]], new: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    key = (new or old or {})["pk"]
    d: Dict[str, Any] = {"Keys": {"pk": key}, "SequenceNumber": f"{seq:021d}", "ApproximateCreationDateTime": 100.0 + seq}
    if old is not None:
        d["OldImage"] = old
    if new is not None:
        d["NewImage"] = new
    return {"eventName": name, "dynamodb": d}


def img(pk: str, owner: str, *tags: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {"pk": {"S": pk}, "owner": {"S": owner}}
    if tags:
        out["tags"] = {"SS": list(tags)}
    return out


def keys_of(ops: List[Tuple[int, Dict[str, Any]]], kind: int) -> List[str]:
    return sorted(o["pk"]["S"] for k, o in ops if k == kind)


def test_modify_that_rekeys_deletes_stale_derived_items() -> None:
    m = ChangeMapper(FANOUT, SK, SK)
    ops, rejects = m.map("s", [rec("MODIFY", 1, img("i1", "ann", "a", "b"), img("i1", "bob", "b", "c"))])
    assert not rejects
    assert keys_of(ops, DELETE) == ["ann#a", "ann#b"]
    assert keys_of(ops, PUT) == ["bob#b", "bob#c"]
    assert all(list(o) == ["pk"] for k, o in ops if k == DELETE)  # deletes carry only the key


def test_remove_deletes_every_derived_item() -> None:
    m = ChangeMapper(FANOUT, SK, SK)
    ops, _ = m.map("s", [rec("REMOVE", 1, img("i1", "ann", "a", "b", "c"), None)])
    assert keys_of(ops, DELETE) == ["ann#a", "ann#b", "ann#c"] and keys_of(ops, PUT) == []


def test_records_of_one_key_collapse_to_the_net_change_over_every_image() -> None:
    """INSERT A, MODIFY A->B, MODIFY B->C in one page: delete what A and B derived but C does not."""
    m = ChangeMapper(FANOUT, SK, SK)
    a, b, c = img("i1", "ann", "x"), img("i1", "bob", "y"), img("i1", "cat", "x", "z")
    other = img("i2", "dan", "q")
    ops, _ = m.map("s", [rec("INSERT", 1, None, a), rec("INSERT", 2, None, other), rec("MODIFY", 3, a, b),
                         rec("MODIFY", 4, b, c)])
    assert keys_of(ops, DELETE) == ["ann#x", "bob#y"]
    assert keys_of(ops, PUT) == ["cat#x", "cat#z", "dan#q"]
    assert m.counts["collapsed_records"] == 2 and m.counts["records"] == 4
    # Delete then re-insert inside one page: the final image wins, nothing stale survives.
    ops, _ = m.map("s", [rec("REMOVE", 5, c, None), rec("INSERT", 6, None, img("i1", "cat", "z"))])
    assert keys_of(ops, DELETE) == ["cat#x"] and keys_of(ops, PUT) == ["cat#z"]


def test_identity_mapping_uses_keys_and_last_wins() -> None:
    m = ChangeMapper(None, SK, SK)
    ops, _ = m.map("s", [rec("INSERT", 1, None, {"pk": {"S": "a"}, "v": {"N": "1"}}),
                         rec("MODIFY", 2, {"pk": {"S": "a"}}, {"pk": {"S": "a"}, "v": {"N": "2"}, "m": {}}),
                         rec("REMOVE", 3, {"pk": {"S": "b"}}, None)])
    assert ops == [(PUT, {"pk": {"S": "a"}, "v": {"N": "2"}, "m": {"M": {}}}), (DELETE, {"pk": {"S": "b"}})]


def test_records_older_than_the_start_are_skipped() -> None:
    m = ChangeMapper(None, SK, SK)
    ops, _ = m.map("s", [rec("INSERT", 1, None, {"pk": {"S": "a"}}), rec("INSERT", 9, None, {"pk": {"S": "b"}})],
                   skip_before=105.0)
    assert ops == [(PUT, {"pk": {"S": "b"}})] and m.counts["skipped_before_start"] == 1


def test_transform_errors_fail_or_are_rejected_with_the_record() -> None:
    bad = dict(img("i1", "ann", "a"), bad={"BOOL": True})
    with pytest.raises(TransformError, match="bad item.*shard s seq"):
        ChangeMapper(FANOUT, SK, SK).map("s", [rec("INSERT", 1, None, bad)])
    m = ChangeMapper(FANOUT, SK, SK, on_error="skip")
    ops, rejects = m.map("s", [rec("INSERT", 1, None, bad), rec("INSERT", 2, None, img("i2", "bo", "b"))])
    assert keys_of(ops, PUT) == ["bo#b"]
    assert len(rejects) == 1 and "bad item" in rejects[0][1] and "i1" in rejects[0][0]


# --------------------------------------------------------------------------- through the pipeline


class SimulatedTable:
    """A source table whose writes land in the stream shard that owns the key, splits included."""

    def __init__(self, stream: ScriptedStream) -> None:
        self.stream = stream
        self.items: Dict[str, Dict[str, Any]] = {}
        self.route: Dict[str, str] = {}  # key -> open shard currently owning it
        self.open: List[str] = ["g0"]
        stream.add_shard("g0")

    def split(self, sid: str, rng: random.Random) -> None:
        kids = [f"{sid}.0", f"{sid}.1"]
        self.stream.close(sid)
        for k in kids:
            self.stream.add_shard(k, sid)
        self.open = [s for s in self.open if s != sid] + kids
        for key, owner in list(self.route.items()):
            if owner == sid:
                self.route[key] = rng.choice(kids)

    def write(self, key: str, new: Optional[Dict[str, Any]]) -> None:
        sid = self.route.setdefault(key, self.open[hash(key) % len(self.open)])
        old = self.items.get(key)
        if new is None and old is None:
            return  # deleting nothing emits no record
        name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
        self.stream.seq += 1
        d: Dict[str, Any] = {"Keys": {"pk": {"S": key}}, "SequenceNumber": f"{self.stream.seq:021d}",
                             "ApproximateCreationDateTime": self.stream.clock()}
        if old is not None:
            d["OldImage"] = old
        if new is not None:
            d["NewImage"] = new
            self.items[key] = new
        else:
            del self.items[key]
        self.stream.shards[sid]["records"].append({"eventName": name, "dynamodb": d})


class MemorySink(SinkBase):
    """Applies batches to a dict, finishing in a shuffled order (parallel writers, random latency)."""

    def __init__(self, seed: int) -> None:
        self.rows: Dict[Any, Dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.rng = random.Random(seed)

    def write(self, ops: List[Any]) -> Any:
        from ddbmigrate.core.records import BatchResult

        with self.lock:
            delay = self.rng.random() * 0.003
        time.sleep(delay)
        with self.lock:
            for o in ops:
                if o.kind == DELETE:
                    self.rows.pop(SK.key(o.item), None)
                else:
                    self.rows[SK.key(o.item)] = o.item
        puts = sum(1 for o in ops if o.kind != DELETE)
        return BatchResult(written=puts, deleted=len(ops) - puts)

    def close(self) -> None:
        return None


class TickClock(Clock):
    """Every reading moves time on; scripted events fire when their time comes."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step
        self.events: List[Tuple[float, Any]] = []

    def __call__(self) -> float:
        self.t += self.step
        while self.events and self.t >= self.events[0][0]:
            self.events.pop(0)[1]()
        return self.t


def test_a_rekey_mapped_back_to_one_key_keeps_the_put_not_the_old_images_delete() -> None:
    """A rollback's inverse transform maps a re-key in the new table (a put of "moved#k1", then a
    delete of "none#k1") to one key of the old table, k1: the delete for the old image came after
    the put in the page and deleted the item the put had just written. The put wins, whatever
    the order; a delete of a key nothing puts in the page still goes out."""
    inverse = Transform(lambda item: {**{k: v for k, v in item.items() if k not in ("pk", "src")}, "pk": item["src"]},
                        "test:inverse", "hash", __file__)
    new = {"pk": {"S": "moved#k1"}, "src": {"S": "k1"}, "owner": {"S": "ann"}}
    old = {"pk": {"S": "none#k1"}, "src": {"S": "k1"}, "owner": {"S": "ann"}}
    gone = {"pk": {"S": "none#k2"}, "src": {"S": "k2"}, "owner": {"S": "bob"}}
    for page in ([rec("INSERT", 1, None, new), rec("REMOVE", 2, old, None), rec("REMOVE", 3, gone, None)],
                 [rec("REMOVE", 1, old, None), rec("INSERT", 2, None, new), rec("REMOVE", 3, gone, None)]):
        ops, rejects = ChangeMapper(inverse, SK, SK).map("s", page)
        assert not rejects
        assert keys_of(ops, PUT) == ["k1"] and keys_of(ops, DELETE) == ["k2"], ops


def test_an_output_without_the_target_key_is_left_to_the_pipeline_not_a_crash() -> None:
    """The put-wins rule read every put's key: an output lacking it (which the pipeline
    dead-letters) raised KeyError and stopped the replicator."""
    keyless = Transform(lambda item: {"owner": item["owner"]}, "test:keyless", "hash", __file__)
    ops, rejects = ChangeMapper(keyless, SK, SK).map("s", [rec("INSERT", 1, None, img("a", "ann")),
                                                          rec("REMOVE", 2, img("b", "bob"), None)])
    assert not rejects and [k for k, _ in ops] == [PUT], ops
