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
from ddbmigrate.state.deadletter import MAX_RECORD, DeadLetters, dead_letter_line


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
    with pytest.raises(UsageError, match="cannot be made"):
        DeadLetters(str(tmp_path / "afile" / "dl.jsonl")).check()
    (tmp_path / "adir").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        DeadLetters(str(tmp_path / "adir")).check()
    DeadLetters(str(tmp_path / "new" / "dl.jsonl")).check()  # a folder to make is fine
    DeadLetters("s3://bucket/dead/").check()  # the Spark engine's: not a local path
    assert not os.path.exists("s3:")


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
