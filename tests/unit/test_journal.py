"""The change journal and its parallel shard reader, against the SCRIPTED multi-shard stream.

No DynamoDB: the scripted stream of test_stream_lineage (splits, closed parents, many lineages,
trimming), a local folder for the journal, and the pipeline into an in-memory sink.
"""

from __future__ import annotations

import errno
import gzip
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from test_stream_lineage import (
    ARN,
    SK,
    UNIQUE_FANOUT,
    Clock,
    MemorySink,
    ScriptedStream,
    SimulatedTable,
    TickClock,
    img,
    rec,
)

from ddbmigrate.core.processing import Processing
from ddbmigrate.engine.pipeline import Pipeline
from ddbmigrate.errors import EXIT_RETRIABLE, ResyncNeededError
from ddbmigrate.reporting import metrics
from ddbmigrate.sources.changes import ChangeMapper, is_ttl_delete
from ddbmigrate.sources.journal import JournalSource, JournalWriter
from ddbmigrate.sources.stream import StreamReader
from ddbmigrate.state.journal import (
    Journal,
    JournalFullError,
    record_time,
    segment_name,
)
from ddbmigrate.storage.stores import LocalStorage
from support import wait_for


def journal(tmp_path: Path, **kw: Any) -> Journal:
    return Journal(str(tmp_path / "j"), str(tmp_path / "j.json"), **kw)


def lines(j: Journal) -> List[Dict[str, Any]]:
    return [x for n in range(j.first, j.sealed_next()) for x in j.read_segment(n)]


# --------------------------------------------------------------------------- the journal


def test_segments_are_sealed_before_the_positions_that_cover_them(tmp_path: Path) -> None:
    j = journal(tmp_path, seal_every=0.0)
    j.open(fresh=True, positions={"s": {"from": "TRIM_HORIZON", "since": 1.0}})
    j.append("s", [rec("INSERT", 1, None, img("a", "ann"))], {"after": "1"}, 10.0)
    j.append("s", [rec("INSERT", 2, None, img("b", "ann"))], {"after": "2"}, 10.0)
    assert j.sealed_next() == 0 and j.backlog(0, 0)["records"] == 2  # buffered, not sealed
    assert j.seal() and j.sealed_next() == 1
    seg = (tmp_path / "j" / segment_name(0)).read_bytes()
    assert len(gzip.decompress(seg).splitlines()) == 2  # gzip'd JSON lines: zcat reads a segment
    j.append("s", [rec("INSERT", 3, None, img("c", "ann"))], {"after": "3"}, 11.0)
    again = journal(tmp_path)  # a crash now: the buffered record is not in the journal ...
    again.open(fresh=False, positions={})
    assert again.positions == {"s": {"after": "2"}}  # ... and the position is before it
    assert [x["r"]["dynamodb"]["SequenceNumber"] for x in lines(again)] == [f"{1:021d}", f"{2:021d}"]


def test_a_segment_written_but_not_recorded_is_written_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = journal(tmp_path)
    j.open(fresh=True, positions={})
    j.append("s", [rec("INSERT", 1, None, img("a", "ann"))], {"after": "1"}, 1.0)
    j.seal()
    j.append("s", [rec("INSERT", 2, None, img("b", "ann"))], {"after": "2"}, 1.0)
    import ddbmigrate.state.journal as jmod

    def crash() -> None:
        raise SystemExit("kill -9")  # the state file is not written after the segment

    monkeypatch.setattr(jmod, "crash_point", lambda name: crash() if name == "after_journal_segment" else None)
    with pytest.raises(SystemExit):
        j.seal()
    assert (tmp_path / "j" / segment_name(1)).exists()
    monkeypatch.undo()
    again = journal(tmp_path)
    again.open(fresh=False, positions={})
    assert again.sealed_next() == 1 and again.positions == {"s": {"after": "1"}}
    assert not (tmp_path / "j" / segment_name(1)).exists()  # the orphan is gone: read again from the stream


def test_applied_segments_are_deleted_and_the_backlog_shrinks(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.open(fresh=True, positions={})
    for i in range(4):
        j.append("s", [rec("INSERT", 2 * i + 1, None, img(f"a{i}", "ann")),
                       rec("INSERT", 2 * i + 2, None, img(f"b{i}", "ann"))], {"after": str(2 * i + 2)}, 1.0)
        j.seal()
    assert j.backlog(0, 0)["records"] == 8 and j.backlog(2, 1)["records"] == 3 and j.backlog(0, 0)["segments"] == 4
    j.delete_below(2)
    assert sorted(p.name for p in (tmp_path / "j").iterdir()) == [segment_name(2), segment_name(3)]
    assert j.backlog(2, 0)["records"] == 4 and j.first == 2


def test_full_disk_stops_with_a_resumable_error_and_loses_nothing(tmp_path: Path) -> None:
    class FullDisk(LocalStorage):
        full = False

        def write_bytes(self, path: str, data: bytes) -> str:
            if self.full:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write_bytes(path, data)

    store = FullDisk()
    j = journal(tmp_path, storage=store)
    j.open(fresh=True, positions={})
    j.append("s", [rec("INSERT", 1, None, img("a", "ann"))], {"after": "1"}, 1.0)
    j.seal()
    store.full = True
    j.append("s", [rec("INSERT", 2, None, img("b", "ann"))], {"after": "2"}, 1.0)
    with pytest.raises(JournalFullError, match="disk is full.*--resume") as ei:
        j.seal()
    assert ei.value.exit_code == EXIT_RETRIABLE == 75
    store.full = False  # even once space is back, this run saves nothing more: it must resume
    with pytest.raises(JournalFullError):
        j.seal()
    again = journal(tmp_path)
    again.open(fresh=False, positions={})
    assert again.positions == {"s": {"after": "1"}} and again.sealed_next() == 1  # record 2 is read again


def test_resume_with_another_journal_location_or_an_edited_state_is_refused(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.open(fresh=True, positions={"s": {"after": "5"}})
    state = tmp_path / "j.json"
    good = state.read_text()
    state.write_text(good.replace('"after": "5"', '"after": "9"'))  # a position moved by hand
    with pytest.raises(Exception, match="checksum"):
        journal(tmp_path).open(fresh=False, positions={})
    state.write_text(good)
    other = Journal(str(tmp_path / "elsewhere"), str(tmp_path / "j.json"))
    with pytest.raises(Exception, match="same --journal"):
        other.open(fresh=False, positions={})


def test_record_time_uses_precise_timestamps_and_bounds_rounded_ones() -> None:
    precise = {"dynamodb": {"ApproximateCreationDateTime": 1000.5}}
    rounded = {"dynamodb": {"ApproximateCreationDateTime": 960.0}}
    assert record_time(precise, 1003.0) == 1000.5
    assert record_time(rounded, 1003.0) == 1003.0 and record_time(rounded, 1100.0) == 1020.0
    assert record_time({}, 7.0) == 7.0


# --------------------------------------------------------------------------- parallel shards


def lineage_forest(stream: ScriptedStream, rng: random.Random, roots: int, steps: int) -> SimulatedTable:
    """Many independent lineages whose shards split (and close) while keys are written."""
    table = SimulatedTable(stream)
    for r in range(1, roots):
        stream.add_shard(f"g{r}")
        table.open.append(f"g{r}")
    keys = [f"k{i}" for i in range(60)]
    for step in range(steps):
        if step % 40 == 39:
            table.split(rng.choice(table.open), rng)
        key = rng.choice(keys)
        if rng.random() < 0.2:
            table.write(key, None)
        else:
            table.write(key, img(key, rng.choice(("ann", "bob")), *rng.sample(("a", "b", "c"), rng.randint(1, 2))))
    return table


def run_writer(reader: StreamReader, j: Journal, readers: int, until: Any, timeout: float = 20.0) -> JournalWriter:
    w = JournalWriter(reader, j, readers=readers, poll_interval=0.0)
    w.start()
    deadline = time.monotonic() + timeout
    while not until(w) and time.monotonic() < deadline and w.error is None:
        time.sleep(0.005)
    w.stop()
    w.check()
    return w


class SlowStream(ScriptedStream):
    """GetRecords takes a moment, so shards being read at once overlap (and can be counted)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.lock = threading.Lock()
        self.reading: Dict[str, int] = {}
        self.max_per_shard = 0

    def _GetRecords(self, p: Dict[str, Any]) -> Dict[str, Any]:
        sid = p["ShardIterator"].split("|")[0]
        with self.lock:
            self.reading[sid] = self.reading.get(sid, 0) + 1
            self.max_per_shard = max(self.max_per_shard, self.reading[sid])
        try:
            time.sleep(0.002)
            return super()._GetRecords(p)
        finally:
            with self.lock:
                self.reading[sid] -= 1


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("readers", [1, 4])
def test_parallel_lineages_keep_shard_order_and_parents_first(tmp_path: Path, seed: int, readers: int) -> None:
    clock = Clock()
    stream = SlowStream(clock)
    lineage_forest(stream, random.Random(seed), roots=6, steps=320)
    j = journal(tmp_path, seal_every=0.2, segment_bytes=16384)
    j.open(fresh=True, positions={})
    reader = StreamReader(stream, ARN, page_limit=5, clock=clock)
    total = sum(len(s["records"]) for s in stream.shards.values())
    closed = [sid for sid, s in stream.shards.items() if s["closed"]]
    w = run_writer(reader, j, readers, lambda w: j.records_total >= total
                   and all(j.positions.get(sid, {}).get("done") for sid in closed))
    got = [(x["s"], int(x["r"]["dynamodb"]["SequenceNumber"])) for x in lines(j)]
    expected = sorted((sid, int(r["dynamodb"]["SequenceNumber"])) for sid, s in stream.shards.items() for r in s["records"])
    assert sorted(got) == expected  # every record exactly once
    order = {r: i for i, r in enumerate(got)}
    for sid, s in stream.shards.items():
        mine = [order[(sid, int(r["dynamodb"]["SequenceNumber"]))] for r in s["records"]]
        assert mine == sorted(mine), sid  # a shard's records in stream order
        parent = s["parent"]
        if parent and mine and stream.shards[parent]["records"]:
            theirs = [order[(parent, int(r["dynamodb"]["SequenceNumber"]))] for r in stream.shards[parent]["records"]]
            assert max(theirs) < min(mine), (parent, sid)  # the parent's last record before the child's first
    assert 1 <= w.max_concurrent <= readers  # bounded readers ...
    assert stream.max_per_shard == 1  # ... and never two readers on one shard (DynamoDB allows two)
    if readers > 1:
        assert w.max_concurrent > 1  # independent lineages really were read at the same time
    # Closed shards are finished in the saved positions; open ones hold a sequence number.
    for sid, s in stream.shards.items():
        assert bool(j.positions[sid].get("done")) == s["closed"]


@pytest.mark.parametrize("with_transform", [False, True])
def test_journal_applied_through_the_pipeline_converges(tmp_path: Path, with_transform: bool) -> None:
    clock = Clock()
    stream = ScriptedStream(clock)
    table = lineage_forest(stream, random.Random(7), roots=4, steps=250)
    j = journal(tmp_path, seal_every=0.1, segment_bytes=8192)
    j.open(fresh=True, positions={})
    reader = StreamReader(stream, ARN, page_limit=7, clock=clock)
    writer = JournalWriter(reader, j, readers=4, poll_interval=0.0)
    writer.start()
    tf = UNIQUE_FANOUT if with_transform else None
    saved: Dict[str, Any] = {}
    src = JournalSource(j, writer, ChangeMapper(tf, SK, SK), skip_before=None, persisted=lambda: saved.get("pos"),
                        stop_after_idle=0.2, poll_interval=0.0, chunk_records=16)
    sink = MemorySink(3)

    def save(p: Pipeline, state: Dict[str, Any]) -> None:
        saved["pos"] = p.checkpoint_cut().positions.get("journal")

    pipeline = Pipeline(src, sink, Processing(key_schema=SK, trusted=tf is None), readers=1, writers=6,
                        on_checkpoint=save, checkpoint_every=0.05)
    src.attach(pipeline)
    try:
        pipeline.run()
    finally:
        writer.stop()
    writer.check()
    expected = [o for it in table.items.values() for o in (tf(it) if tf else [it])]
    assert sink.rows == {SK.key(o): o for o in expected}
    assert src.stopped_by == "idle" and src.backlog()["records"] == 0
    c = pipeline.counters.snapshot(committed=True)
    assert c["read"] + c["fanout_extra"] == c["written"] + c["deleted"] + c["collapsed"] + c["dead_lettered"]
    # Every closed shard is finished in the journal's positions; open ones hold a sequence number.
    assert all(bool(j.positions[s].get("done")) == stream.shards[s]["closed"] for s in stream.shards)
    src.prune(force=True)
    assert len(list((tmp_path / "j").iterdir())) <= 1  # applied segments deleted


def test_writer_resumes_from_the_journal_and_a_trimmed_position_needs_resync(tmp_path: Path) -> None:
    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("s")
    for i in range(5):
        stream.write("s", f"k{i}")
    j = journal(tmp_path, seal_every=0.0)
    j.open(fresh=True, positions={"s": {"from": "TRIM_HORIZON", "since": clock()}})
    run_writer(StreamReader(stream, ARN, clock=clock), j, 2, lambda w: j.records_total >= 5)
    for i in range(3):
        stream.write("s", f"x{i}")
    again = journal(tmp_path, seal_every=0.0)
    again.open(fresh=False, positions={})
    run_writer(StreamReader(stream, ARN, clock=clock), again, 2, lambda w: again.records_total >= 8)
    assert [int(x["r"]["dynamodb"]["SequenceNumber"]) for x in lines(again)] == list(range(1, 9))  # no gap, no repeat
    stream.write("s", "late")
    stream.trimmed_before = 100  # everything after our position was trimmed
    w = JournalWriter(StreamReader(stream, ARN, clock=clock), again, readers=2, poll_interval=0.0)
    w.start()
    deadline = time.monotonic() + 10
    while w.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    with pytest.raises(ResyncNeededError, match="resync needed"):
        w.check()
    # A journal whose positions are older than the retention (the replicator was down too long).
    old = journal(tmp_path)
    old.open(fresh=False, positions={})
    old.alive_at = clock() - 25 * 3600
    with pytest.raises(ResyncNeededError, match="older than the stream's retention"):
        JournalWriter(StreamReader(stream, ARN, clock=clock), old, clock=clock).start()




class _StalledStream(ScriptedStream):
    """GetRecords hangs while ``stall`` is set (a Streams endpoint down, its calls retried)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.stall = threading.Event()
        self.release = threading.Event()
        self.stalled = threading.Event()

    def _GetRecords(self, p: Dict[str, Any]) -> Dict[str, Any]:
        if self.stall.is_set():
            self.stalled.set()
            self.release.wait(60)
        return super()._GetRecords(p)


def _stalled_after_catching_up(tmp_path: Path, kind: Any) -> Tuple[Clock, Any, Journal, JournalWriter]:
    """A writer caught up on one shard, then its GetRecords hung, with a change made meanwhile.
    The caller stops the writer (``w.stop()``, after ``stream.release.set()``)."""
    clock = Clock()
    stream = kind(clock)
    stream.add_shard("s")
    j = journal(tmp_path, seal_every=0.0, clock=clock)
    j.open(fresh=True, positions={"s": {"from": "TRIM_HORIZON", "since": clock()}})
    w = JournalWriter(StreamReader(stream, ARN, clock=clock), j, readers=1, poll_interval=0.0, clock=clock)
    w.start()
    try:
        wait_for(lambda: w.caught_up, 10, "caught up")
        stream.stall.set()
        assert stream.stalled.wait(10)
        stream.write("s", "unread")
    except BaseException:
        stream.release.set()
        w.stop()
        raise
    return clock, stream, j, w


def test_a_stream_whose_reads_stall_is_no_longer_caught_up(tmp_path: Path) -> None:
    """Before: once caught up, a poll that hung (the Streams endpoint failing, retried for a
    minute) left the writer "caught up" while the source took changes nobody read: status said
    lag 0 and the quiet period ran, so `cutover --no-verify` said GO over unread changes."""
    clock, stream, j, w = _stalled_after_catching_up(tmp_path, _StalledStream)
    try:
        clock.t += 2
        time.sleep(0.3)
        assert w.caught_up  # a poll under way for a moment is no reason to doubt it
        clock.t += 10
        wait_for(lambda: not w.caught_up, 5, "not caught up")
        # And its lag is the stall's, not 0: `status --max-lag` and the cutover gate see it.
        lag = JournalSource(j, w, None, skip_before=None, persisted=lambda: None,  # type: ignore[arg-type]
                            clock=clock).lag_seconds()  # (no mapping here)
        assert lag >= 10, lag
        stream.stall.clear()
        stream.release.set()
        wait_for(lambda: j.records_total == 1 and w.caught_up, 10, "caught up again")
    finally:
        stream.release.set()
        w.stop()
    w.check()


class _DownStream(_StalledStream):
    """The whole Streams endpoint down: DescribeStream hangs too once ``stall`` is set."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.describing = threading.Event()

    def _DescribeStream(self, p: Dict[str, Any]) -> Dict[str, Any]:
        if self.stall.is_set():
            self.describing.set()
            self.release.wait(60)
        return super()._DescribeStream(p)


def test_a_stall_shows_in_the_lag_while_the_writer_is_stuck_listing_shards(tmp_path: Path) -> None:
    """The writer's periodic DescribeStream retried through the outage too, so its 'caught up'
    was the one from before the outage, and the lag read 0 over a poll stalled for 30 s."""
    clock, stream, j, w = _stalled_after_catching_up(tmp_path, _DownStream)
    try:
        clock.t += 31  # the next round lists the shards first, and hangs there
        assert stream.describing.wait(10)
        lag = JournalSource(j, w, None, skip_before=None, persisted=lambda: None,  # type: ignore[arg-type]
                            clock=clock).lag_seconds()  # (no mapping here)
        assert lag >= 30, lag
    finally:
        stream.release.set()
        w.stop()


class _SlowParent(ScriptedStream):
    """Reading the rest of shard p takes an hour, meanwhile the oldest record of its child is trimmed."""

    def _GetRecords(self, p: Dict[str, Any]) -> Dict[str, Any]:
        resp = super()._GetRecords(p)
        if p["ShardIterator"].startswith("p|") and "NextShardIterator" not in resp:
            self.clock.t += 3600
            self.trimmed_before = int(self.shards["c"]["records"][0]["dynamodb"]["SequenceNumber"]) + 1
        return resp


def test_a_child_shard_born_while_the_replicator_was_down_is_checked_from_the_stop(tmp_path: Path) -> None:
    """Before: a shard first listed on --resume was taken as begun at the resume, though it began
    while the replicator was down (23 h here); read an hour later, its trimmed first records were
    skipped silently (TRIM_HORIZON starts after them) instead of a resync."""
    clock = Clock()
    stream = _SlowParent(clock)
    stream.add_shard("p")
    stream.write("p", "k0")
    j = journal(tmp_path, seal_every=0.0, clock=clock)
    j.open(fresh=True, positions={"p": {"from": "TRIM_HORIZON", "since": clock()}})
    w = JournalWriter(StreamReader(stream, ARN, clock=clock), j, readers=1, poll_interval=0.0, clock=clock)
    w.start()
    deadline = time.monotonic() + 10
    while j.records_total < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    w.stop()
    w.check()
    clock.t += 600  # stopped; the stream goes on: p splits, its child c takes writes
    stream.write("p", "k1")
    stream.close("p")
    stream.add_shard("c", parent="p")
    stream.write("c", "k2")
    clock.t += 23 * 3600  # resumed within the retention (the journal's positions are 23 h 10 min old)
    again = journal(tmp_path, seal_every=0.0, clock=clock)
    again.open(fresh=False, positions={})
    w = JournalWriter(StreamReader(stream, ARN, clock=clock), again, readers=1, poll_interval=0.0, clock=clock)
    w.start()
    deadline = time.monotonic() + 10
    while w.error is None and time.monotonic() < deadline:
        time.sleep(0.005)
    w.stop()
    with pytest.raises(ResyncNeededError, match="shard c .*longer than the stream's retention"):
        w.check()
    assert [x["r"]["dynamodb"]["Keys"]["pk"]["S"] for x in lines(again)] == ["k0", "k1"]


# --------------------------------------------------------------------------- TTL deletes


def ttl(r: Dict[str, Any], style: str = "api") -> Dict[str, Any]:
    r["userIdentity"] = ({"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"} if style == "api"
                         else {"type": "Service", "principalId": "dynamodb.amazonaws.com"})
    return r


def test_ttl_deletes_are_replicated_by_default_and_skipped_on_request() -> None:
    a, b = img("a", "ann", "x"), img("b", "bob", "y")
    page = [ttl(rec("REMOVE", 1, a, None)), rec("REMOVE", 2, b, None),
            ttl(rec("REMOVE", 3, img("c", "cat"), None), "lambda")]
    assert is_ttl_delete(page[0]) and not is_ttl_delete(page[1]) and is_ttl_delete(page[2])
    assert not is_ttl_delete({"userIdentity": {"Type": "Service", "PrincipalId": "someone.else"}})
    m = ChangeMapper(None, SK, SK)
    ops, _ = m.map("s", page)
    assert sorted(o["pk"]["S"] for _, o in ops) == ["a", "b", "c"] and m.counts["ttl_deletes"] == 2
    m = ChangeMapper(UNIQUE_FANOUT, SK, SK, skip_ttl_deletes=True)
    ops, _ = m.map("s", page)
    assert [o["pk"]["S"] for _, o in ops] == ["bob#y#b"]  # only the user's delete
    assert m.counts["ttl_deletes_skipped"] == 2 and m.counts["removes"] == 1 and m.counts["records"] == 3
    # A skipped expiry between two writes of one key: the later write still wins.
    m = ChangeMapper(None, SK, SK, skip_ttl_deletes=True)
    ops, _ = m.map("s", [rec("INSERT", 4, None, a), ttl(rec("REMOVE", 5, a, None)), rec("INSERT", 6, None, b | {"pk": {"S": "a"}})])
    assert ops == [(1, b | {"pk": {"S": "a"}})] or [o for _, o in ops] == [b | {"pk": {"S": "a"}}]


# --------------------------------------------------------------------------- metrics server


def _get(url: str) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_server_serves_providers_and_health() -> None:
    server = metrics.acquire("127.0.0.1", 0)
    try:
        lag = {"v": 1.5}
        remove = server.add(lambda: [metrics.Sample("replication_lag_seconds", lag["v"]),
                                     metrics.Sample("records", 7, {"job": "copy", "counter": "read"}, "counter")],
                            lambda: "lag too high" if lag["v"] > 5 else None)
        code, text = _get(server.url + "/metrics")
        assert code == 200 and "ddbmigrate_replication_lag_seconds 1.5" in text
        assert 'ddbmigrate_records_total{counter="read",job="copy"} 7.0' in text and "ddbmigrate_healthy 1.0" in text
        assert _get(server.url + "/healthz") == (200, "ok\n")
        lag["v"] = 9
        code, body = _get(server.url + "/healthz")
        assert code == 503 and "lag too high" in body
        assert metrics.acquire("127.0.0.1", server.port) is server  # shared by every job in the process
        metrics.release(server)
        assert "ddbmigrate_running 1.0" in _get(server.url + "/metrics")[1]
        remove()
        # The ended job's counters stay at their last values; its gauges (a lag) say nothing now.
        code, text = _get(server.url + "/metrics")
        assert _get(server.url + "/healthz")[0] == 200 and "lag_seconds" not in text
        assert 'ddbmigrate_records_total{counter="read",job="copy"} 7.0' in text and "ddbmigrate_running 0.0" in text
    finally:
        metrics.release(server)
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/metrics", timeout=1)


def test_a_released_server_lingers_with_the_final_counts_then_closes() -> None:
    """--metrics-linger: a job shorter than the scrape interval is still seen as it ended."""
    metrics.set_linger(30)
    try:
        server = metrics.acquire("127.0.0.1", 0)
        count = {"n": 0}
        remove = server.add(lambda: [metrics.Sample("records", count["n"], {"job": "copy", "counter": "written"},
                                                    "counter")])
        count["n"] = 1234
        remove()
        metrics.release(server)
        code, text = _get(server.url + "/metrics")  # released, still serving
        assert code == 200 and 'ddbmigrate_records_total{counter="written",job="copy"} 1234.0' in text
        assert metrics.acquire("127.0.0.1", server.port) is server  # the same address serves again
        metrics.release(server)
        said: List[str] = []
        metrics.set_linger(0.3)
        metrics.release(metrics.acquire("127.0.0.1", server.port))  # released again: 0.3 s now
        t0 = time.monotonic()
        metrics.wait_lingering(said.append)
        assert 0.1 < time.monotonic() - t0 < 5
        assert said and said[0].startswith(f"metrics: the final figures stay on {server.url}/metrics for ")
        with pytest.raises(OSError):
            urllib.request.urlopen(server.url + "/metrics", timeout=1)
        metrics.wait_lingering()  # nothing left: returns at once
    finally:
        metrics.set_linger(0)


def test_stall_means_failing_only_while_retries_come_and_nothing_settles() -> None:
    now = {"t": 0.0}
    s = metrics.Stall(after=10, clock=lambda: now["t"])
    assert s.observe(0, 0) is None
    now["t"] = 5
    assert s.observe(0, 3) is None  # retrying, not for long yet
    now["t"] = 16
    assert "failing" in (s.observe(0, 9) or "")
    now["t"] = 17
    assert s.observe(4, 9) is None  # writes settle again
    now["t"] = 40
    assert s.observe(4, 9) is None  # idle without retries is healthy


def test_finished_shards_trimmed_from_the_stream_are_forgotten(tmp_path: Path) -> None:
    """A replication that runs for weeks keeps only the shards the stream still lists."""
    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("old")
    stream.write("old", "a")
    stream.close("old")
    stream.add_shard("new", "old")
    stream.write("new", "b")
    j = journal(tmp_path, seal_every=0.0)
    j.open(fresh=True, positions={})
    reader = StreamReader(stream, ARN, clock=clock)
    run_writer(reader, j, 2, lambda w: j.records_total >= 2 and j.positions.get("old", {}).get("done"))
    del stream.shards["old"]  # trimmed after 24 h: DescribeStream no longer lists it
    stream.order.remove("old")
    stream.write("new", "c")
    run_writer(reader, j, 2, lambda w: j.records_total >= 3 and "old" not in j.positions)
    again = journal(tmp_path)
    again.open(fresh=False, positions={})
    assert set(again.positions) == {"new"} and "old" not in reader.shards
    assert [x["r"]["dynamodb"]["Keys"]["pk"]["S"] for x in lines(again)] == ["a", "b", "c"]


def test_a_full_disk_stops_the_writer_with_the_resumable_error(tmp_path: Path) -> None:
    class FullDisk(LocalStorage):
        def write_bytes(self, path: str, data: bytes) -> str:
            raise OSError(errno.ENOSPC, "No space left on device")

    clock = Clock()
    stream = ScriptedStream(clock)
    stream.add_shard("s")
    stream.write("s", "a")
    j = journal(tmp_path, storage=FullDisk(), seal_every=0.0, clock=clock)
    j.open(fresh=True, positions={})
    w = JournalWriter(StreamReader(stream, ARN, clock=clock), j, readers=2, poll_interval=0.0, clock=clock)
    w.start()
    deadline = time.monotonic() + 10
    while w.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    with pytest.raises(JournalFullError, match="disk is full") as ei:
        w.check()
    assert ei.value.exit_code == 75 and j.sealed_next() == 0
    saved = journal(tmp_path, clock=clock)
    saved.open(fresh=False, positions={})
    assert saved.positions == {}  # as opened: never past the page that is in no segment


def _writer_error(clock: Clock, stream: ScriptedStream, tmp_path: Path, seconds: float = 10.0) -> Optional[BaseException]:
    j = journal(tmp_path, seal_every=0.0, clock=clock)
    j.open(fresh=True, positions={})
    w = JournalWriter(StreamReader(stream, ARN, clock=clock), j, readers=2, poll_interval=0.0, clock=clock, table="t")
    w.start()
    deadline = time.monotonic() + seconds
    while w.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    return w.error


def test_split_in_progress_waits_for_children_then_a_disabled_stream_needs_resync(tmp_path: Path) -> None:
    clock = TickClock(0.5)
    stream = ScriptedStream(clock)
    stream.add_shard("s")
    stream.write("s", "a")
    stream.close("s")  # closed; its child is listed only a minute later

    def child() -> None:
        stream.add_shard("c", "s")
        stream.write("c", "b")

    def disable() -> None:
        stream.close("c")
        stream.status = "DISABLED"

    clock.events.append((clock.t + 60, child))
    clock.events.append((clock.t + 200, disable))
    err = _writer_error(clock, stream, tmp_path)
    assert isinstance(err, ResyncNeededError) and err.message.startswith("resync needed: the stream of")
    assert "has ended (status DISABLED)" in err.message
    j = journal(tmp_path)
    j.open(fresh=False, positions={})
    assert [x["r"]["dynamodb"]["Keys"]["pk"]["S"] for x in lines(j)] == ["a", "b"]  # no error during the wait


def test_enabled_stream_without_open_shards_for_long_needs_resync(tmp_path: Path) -> None:
    clock = TickClock(1.0)
    stream = ScriptedStream(clock)
    stream.add_shard("s")
    stream.close("s")
    err = _writer_error(clock, stream, tmp_path)
    assert isinstance(err, ResyncNeededError) and "has ended" in err.message
    assert clock.t > 1_800_000_000.0 + 120
