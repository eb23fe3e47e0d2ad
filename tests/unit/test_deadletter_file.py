"""The dead-letter file takes a commit whole or not at all: a write that fails (a full disk) is
cut back off the file and counts nothing, and the file then refuses every later commit, so a
record is never torn, written twice or counted without its line."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ddbmigrate.errors import FatalError, UsageError
from ddbmigrate.state.deadletter import MAX_RAW, MAX_RECORD, DeadLetters, dead_letter_line
from ddbmigrate.state.status import check_status_path
from ddbmigrate.verify.report import check_output_path


class FullDisk:
    """A file that takes ``room`` more bytes, then fails as a full disk does."""

    def __init__(self, real: Any, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data: Any) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.real.write(bytes(data[: self.room]))
        self.room -= n
        return n

    def fileno(self) -> int:
        return int(self.real.fileno())

    def tell(self) -> int:
        return int(self.real.tell())

    def close(self) -> None:
        self.real.close()


def _lines(n: int, tag: str) -> Any:
    return [(dead_letter_line({"pk": {"S": f"{tag}{i}"}}, "bad", code="Bad"), "Bad") for i in range(n)]


def test_a_commit_that_fails_midway_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    dl = DeadLetters(str(path))
    dl.commit(_lines(3, "a"))
    before = path.read_bytes()
    assert dl.mark() == len(before) and dl.by_reason == {"Bad": 3}
    dl._fh = FullDisk(dl._fh, room=100)  # part of the next commit's first line fits
    with pytest.raises(FatalError, match="cannot write the dead-letter file"):
        dl.commit(_lines(5, "b"))
    assert path.read_bytes() == before  # the torn part was cut back off
    assert dl.mark() == len(before) and dl.by_reason == {"Bad": 3}
    with pytest.raises(FatalError):  # the same chunk committed again: refused, not repeated
        dl.commit(_lines(5, "b"))
    with pytest.raises(FatalError):
        dl.sync()
    dl.close()
    assert [json.loads(x)["item"]["pk"]["S"] for x in path.read_text().splitlines()] == ["a0", "a1", "a2"]


def test_the_file_is_checked_before_the_job(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(UsageError, match="afile is a file, not a folder"):
        DeadLetters(str(tmp_path / "afile" / "dl.jsonl")).check()
    (tmp_path / "adir").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        DeadLetters(str(tmp_path / "adir")).check()
    DeadLetters(str(tmp_path / "new" / "dl.jsonl")).check()  # a folder to make is fine
    assert not (tmp_path / "new").exists()  # checked, not made
    DeadLetters("s3://bucket/dead/").check()  # the Spark engine's: not a local path
    assert not os.path.exists("s3:")


def test_every_file_a_job_writes_beside_its_data_is_probed_for_real() -> None:
    """/proc refuses new files whatever its mode bits (and root passes os.access everywhere): the
    dead-letter, status and report files are each refused before the job, not midway."""
    with pytest.raises(UsageError, match="/proc does not take new files"):
        DeadLetters("/proc/ddbmigrate-dead.jsonl").check()
    with pytest.raises(UsageError, match="--status-file /proc/sub/status.json: /proc does not take new files"):
        check_status_path("/proc/sub/status.json", given=True)
    with pytest.raises(UsageError, match="--report /proc/r.json cannot be written: /proc does not take new files"):
        check_output_path("/proc/r.json", "--report", replaced=True)


def test_a_record_stays_shorter_than_a_line_a_replay_reads() -> None:
    rec = json.loads(dead_letter_line(None, "bad", raw="\x01" * 1_900_000))  # six bytes a character, escaped
    assert rec["raw_truncated"] is True and rec["raw_length"] == 1_900_000
    assert len(dead_letter_line(None, "bad", raw="\x01" * 1_900_000)) <= MAX_RECORD


def test_a_resumed_jobs_reasons_are_recounted_from_where_it_began(tmp_path: Path) -> None:
    # A named file holds another job's 2 records, then this job's 3: from the byte it began, or
    # (a checkpoint that did not record it) from its last 3 records.
    path = tmp_path / "dl.jsonl"
    other = [(dead_letter_line({"pk": {"S": f"o{i}"}}, "other", code="Other"), "Other") for i in range(2)]
    DeadLetters(str(path)).commit(other)
    begin = path.stat().st_size
    mine = [(dead_letter_line({"pk": {"S": f"m{i}"}}, "mine", code="Mine"), "Mine") for i in range(3)]
    DeadLetters(str(path)).commit(mine)
    for start in (begin, None):
        dl = DeadLetters(str(path))
        assert dl.recount(start, 3) == begin and dl.by_reason == {"Mine": 3}, start


def _pks(path: Path) -> Any:
    return [json.loads(x)["item"]["pk"]["S"] for x in path.read_text().splitlines() if x.strip()]


def test_a_shared_file_is_cut_back_and_recounted_by_whose_records_they_are(tmp_path: Path) -> None:
    # Two jobs name one --dead-letter file and append to it in turn. Job A is killed after its
    # checkpoint counted a0-a1; on resume it takes out its own later records only: B's stay,
    # at the very bytes where they were (B's own checkpoint offsets stay true).
    path = tmp_path / "shared.jsonl"
    a, b = DeadLetters(str(path), job="aaaa"), DeadLetters(str(path), job="bbbb")
    a.commit(_lines(2, "a"))
    b.commit(_lines(1, "b"))
    checkpointed = a.mark()  # the end of A's last line: B's line comes after it
    assert checkpointed < path.stat().st_size
    a.commit(_lines(2, "x"))  # after A's checkpoint: read again on resume
    b_start = path.stat().st_size
    b.commit(_lines(2, "c"))
    b_mark = b.mark()
    a.close()
    b.close()
    assert _pks(path) == ["a0", "a1", "b0", "x0", "x1", "c0", "c1"]
    assert [json.loads(x)["job"] for x in path.read_text().splitlines()] == ["aaaa"] * 2 + ["bbbb"] + ["aaaa"] * 2 + ["bbbb"] * 2
    size = path.stat().st_size
    resumed = DeadLetters(str(path), job="aaaa")
    assert resumed.truncate(checkpointed) == 2 * (len(_lines(1, "x")[0][0]) + len(b'"job":"aaaa",'))
    assert _pks(path) == ["a0", "a1", "b0", "c0", "c1"]
    assert path.stat().st_size == size and b.mark() == b_mark  # nothing moved
    # Its reasons are its own: B's records, before and after, are not counted; and B, resumed
    # from its own checkpoint, finds its records where it left them.
    recount = DeadLetters(str(path), job="aaaa")
    recount.recount(0, 2)
    assert recount.by_reason == {"Bad": 2}
    b_again = DeadLetters(str(path), job="bbbb")
    assert b_again.recount(b_start, 2) == b_start and b_again.by_reason == {"Bad": 2}
    # Every record left is still a replayable dead letter (a replay skips blank lines).
    assert all(json.loads(x)["item"] for x in path.read_text().splitlines() if x.strip())


def test_a_shared_file_with_only_this_jobs_lines_after_its_mark_is_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    b, a = DeadLetters(str(path), job="bbbb"), DeadLetters(str(path), job="aaaa")
    b.commit(_lines(1, "b"))
    a.commit(_lines(1, "a"))
    mark = a.mark()
    a.commit(_lines(3, "x"))
    a.close()
    b.close()
    assert DeadLetters(str(path), job="aaaa").truncate(mark) > 0
    assert path.stat().st_size == mark and _pks(path) == ["b0", "a0"]


def test_a_file_from_before_tags_is_the_jobs_own(tmp_path: Path) -> None:
    # A checkpoint made before records said whose they were: its lines are untagged, and the
    # resumed job (no tag) cuts back and recounts them as its own, as that version did.
    path = tmp_path / "old.jsonl"
    old = DeadLetters(str(path))
    old.commit(_lines(2, "a"))
    mark = old.mark()
    old.commit(_lines(1, "x"))
    old.close()
    assert "job" not in json.loads(path.read_text().splitlines()[0])  # (a file of one job: no tags)
    resumed = DeadLetters(str(path))
    assert resumed.truncate(mark) > 0 and _pks(path) == ["a0", "a1"] and path.stat().st_size == mark
    resumed.recount(0, 2)
    assert resumed.by_reason == {"Bad": 2}


@pytest.mark.parametrize("kw", [{}, {"raw": "x" * (MAX_RAW + 1)}], ids=["item", "raw-cut"])
def test_every_record_is_detected_as_a_dead_letter_file(tmp_path: Path, kw: Any) -> None:
    # A named file's records carry "job", a cut raw line "raw_truncated" and "raw_length": the
    # replay (`import FILE TABLE`, format auto) must still know the file for what it is.
    from ddbmigrate.formats.detect import detect

    path = tmp_path / "named.jsonl"
    dl = DeadLetters(str(path), job="0123456789abcdef")
    item = None if kw else {"pk": {"S": "a"}}
    dl.commit([(dead_letter_line(item, "bad", code="Bad", origin="f:1", source_key={"pk": {"S": "a"}},
                                 transform="t.py:f", traceback="tb", **kw), "Bad")])
    dl.close()
    data = path.read_bytes()
    assert json.loads(data)["job"] == "0123456789abcdef"
    assert detect(data, "named.jsonl", True).fmt == "dead-letter"


def test_only_an_export_record_kept_raw_is_refused_as_one() -> None:
    """An incremental import's record (kept as its raw line) is refused on replay; an item that
    happens to have attributes called Metadata, Keys and NewImage is an item, replayed."""
    from ddbmigrate.sources.lines import replay_refusal

    record = {"Metadata": {"WriteTimestampMicros": {"N": "1"}}, "Keys": {"pk": {"S": "a"}},
              "NewImage": {"pk": {"S": "a"}}}
    kept = json.loads(dead_letter_line(None, "bad", code="InvalidInput", stage="read", origin="f:1",
                                       raw=json.dumps(record)))
    refusal = replay_refusal(kept, False)
    assert refusal is not None and "incremental export's import" in refusal
    ion_kept = dict(kept, raw="$ion_1_0 {Metadata:{WriteTimestampMicros:1},Keys:{pk:\"a\"},NewImage:{pk:\"a\"}}")
    assert replay_refusal(ion_kept, False) is not None
    item = {"pk": {"S": "x"}, "Metadata": {"S": "WriteTimestampMicros"}, "Keys": {"M": {}}, "NewImage": {"S": "y"}}
    as_item = json.loads(dead_letter_line(item, "throttled", code="RetriesExhausted", stage="write", origin="f:2"))
    assert replay_refusal(as_item, False) is None
