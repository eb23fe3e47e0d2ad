"""Dead-letter file: every item we could not write, with why, as replayable JSON lines.

Line format (one JSON object per line)::

    {"item": {...wire item...}, "reason": "...", "error_code": "...", "stage": "validate",
     "origin": "segment 3" | "data/x.json.gz:17", "source_key": {...}, "transform": "f.py:fn",
     "time": "2026-11-25T10:00:00Z"}

``ddbmigrate import dead.jsonl TABLE`` replays the ``item`` of every line. In a file the user named (``--dead-letter FILE``),
which several jobs may share, each record also starts with ``"job"``, the job's fingerprint: a
resumed job cuts back and recounts only its own records. A record the source
could not parse has no ``item`` but its ``raw`` text (an Ion line starts with ``$ion_1_0``; a
line over ``MAX_RAW`` characters is cut, with ``raw_truncated`` and ``raw_length``), which the
replay parses again. A line that is not valid UTF-8 is kept exactly too: its bytes in ``raw_b64``
beside a readable ``raw`` (U+FFFD for each bad byte), so that a replay reads the bytes, not the
readable text (which would load U+FFFD as if it were the data); a ``raw`` edited to fix the line is
read instead. Invariant: the file is flushed and fsynced before any checkpoint that
counts its lines is saved.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import orjson

from ..errors import FatalError, UsageError
from .paths import output_path_problem

# The raw text of a line kept in a record: every line that can hold a DynamoDB item (400 KB, its
# JSON a few times that with escapes), and a record still within the line reader's limit.
MAX_RAW = 2_000_000
MAX_RECORD = 7 * 1024 * 1024  # under the line reader's 8 MB (sources/lines.py MAX_LINE)
# Every name a record may hold (what format detection knows a dead-letter file by); "code" and
# "key" are older versions' names.
RECORD_KEYS = frozenset(("job", "item", "raw", "raw_b64", "raw_truncated", "raw_length", "reason", "error_code", "stage",
                         "origin", "source_key", "transform", "traceback", "time", "code", "key"))


class DeadLetters:
    """The dead-letter file of one job (``path=None``: counted, not kept).

    Records are reserved when they fail (:meth:`reserve`, which enforces ``--max-errors``) and
    written when the chunk they belong to is committed (:meth:`commit`), so the file holds
    exactly the dead letters a checkpoint counts; :meth:`mark` is the size a checkpoint records
    and :meth:`truncate` cuts a resumed file back to it.
    """

    def __init__(self, path: Optional[str], job: Optional[str] = None) -> None:
        self.path = path
        # A shared file's records say whose they are (see the module doc); None: the file is the job's.
        self._tag = b'{"job":' + orjson.dumps(job) + b"," if job else None
        self.count = 0  # records reserved (the --max-errors budget)
        self._lock = threading.Lock()
        self._fh: Any = None
        self._bytes = 0
        self._broken: Optional[FatalError] = None  # a write failed: the file takes no more
        self.by_reason: Dict[str, int] = {}
        self.examples: Dict[str, str] = {}  # code -> one of its messages

    def reserve(self, limit: Optional[int] = None) -> bool:
        """Count one more dead letter; False (nothing counted) when ``limit`` are already counted."""
        with self._lock:
            if limit is not None and self.count >= limit:
                return False
            self.count += 1
            return True

    def add(self, item: Any, reason: str, *, limit: Optional[int] = None, **kw: Any) -> bool:
        """Reserve and write one record at once (callers without chunks to commit)."""
        if not self.reserve(limit):
            return False
        self.commit([(dead_letter_line(item, reason, **kw), kw.get("code") or reason)])
        return True

    def commit(self, lines: Sequence[Tuple[bytes, str]], settled: bool = True) -> None:
        """Append encoded lines, each with what the report counts it under (code or reason).

        ``settled=False``: lines of records no checkpoint covers (a stopped run's last chunks),
        kept to be read but not counted; a resume cuts them off and reads their records again.
        All or nothing: a write that fails (a full disk) is cut back off the file, counts nothing,
        and leaves the file refusing every later commit, so no line is torn or written twice.
        """
        with self._lock:
            if self._broken is not None:
                raise self._broken
            tag = self._tag
            data = b"".join(line if tag is None else tag + line[1:] for line, _ in lines)
            if self.path is not None and data:
                before = None
                try:
                    if self._fh is None:
                        self._folder()
                        # Unbuffered: a write error is known here, not at a later flush.
                        self._fh = open(self.path, "ab", buffering=0)
                    # Locked against other processes sharing the file: a resume's cut-back reads
                    # and rewrites its end, and must not lose a line appended meanwhile.
                    _flock(self._fh, exclusive=True)
                    before = os.fstat(self._fh.fileno()).st_size
                    view = memoryview(data)
                    while view:
                        view = view[self._fh.write(view):]
                    # The end of this job's last line: other jobs' lines may lie before it.
                    self._bytes = before + len(data)
                except OSError as e:
                    self._broken = self._cannot(e)
                    if self._fh is not None and before is not None:
                        with contextlib.suppress(OSError):
                            os.ftruncate(self._fh.fileno(), before)
                    raise self._broken from None
                finally:
                    if self._fh is not None:
                        with contextlib.suppress(OSError):
                            _flock(self._fh, exclusive=False)
            if settled:
                for line, key in lines:
                    self.by_reason[key] = self.by_reason.get(key, 0) + 1
                    if key not in self.examples:
                        # The message behind a code, once per code: the report shows it.
                        self.examples[key] = str(orjson.loads(line).get("reason", ""))[:500]

    def _folder(self) -> None:
        assert self.path is not None
        os.makedirs(os.path.dirname(os.path.abspath(self.path)) or ".", exist_ok=True)

    def _cannot(self, e: OSError) -> FatalError:
        return FatalError(f"cannot write the dead-letter file {self.path}: {e.strerror or e}; the checkpoint "
                          "stays before the records it would hold", hint="free the space or fix the path, then "
                          "rerun with --resume (or give --dead-letter FILE elsewhere)")

    def check(self) -> None:
        """Before the job reads anything: can the file be written? (A UsageError naming it, not a
        failure midway, with records read whose only trace it was to be.) An object-store path
        (``s3://``, the Spark engine's) is its engine's to check."""
        if self.path is None or "://" in self.path:
            return
        problem = output_path_problem(self.path, replaced=False)
        if problem:
            raise UsageError(f"cannot write the dead-letter file {self.path}: {problem}",
                             hint="give --dead-letter FILE in a writable place")

    def recount(self, start: Optional[int], last: int) -> int:
        """The reasons of the records already in the file (a resumed job's earlier runs), so the
        report's reasons add up to its dead-letter count, as the counts do: from byte ``start``,
        or, when where the job began is not known (a checkpoint made before it was recorded), its
        ``last`` records (a file the user named may hold other jobs' before them). Returns the
        byte where the job's records begin."""
        if self.path is None or not os.path.exists(self.path):
            return start or 0
        with self._lock, open(self.path, "rb") as fh:
            skip = 0
            if start is None:
                skip = max(0, sum(1 for _ in fh) - last)
                fh.seek(0)
            else:
                fh.seek(start)
            begin = fh.tell()
            for i, line in enumerate(fh):
                if i < skip:
                    begin += len(line)
                    continue
                if not self._mine(line):
                    continue  # another job's, in a file they share
                try:
                    rec = orjson.loads(line)
                    key = str(rec.get("error_code") or rec.get("reason") or "")
                except (orjson.JSONDecodeError, AttributeError):
                    continue  # a line cut short by a crash: not counted (the checkpoint never was)
                self.by_reason[key] = self.by_reason.get(key, 0) + 1
                self.examples.setdefault(key, str(rec.get("reason", ""))[:500])
        return begin

    def mark(self) -> int:
        """The file's size as far as committed lines go (what a checkpoint records)."""
        with self._lock:
            if self._fh is None and self.path is not None and os.path.exists(self.path):
                return os.path.getsize(self.path)
            return self._bytes

    def _mine(self, line: bytes) -> bool:
        """Is ``line`` this job's? In a shared file, a line of another job (or of none, written
        before records said whose they are) is not."""
        return self._tag is None or line.startswith(self._tag)

    def truncate(self, size: int) -> int:
        """Take this job's lines after ``size`` bytes out of the file (lines of chunks a resume
        reads again); returns their bytes. A file of this job alone is cut back to ``size``. In a
        shared file, other jobs' lines follow: this job's are blanked where they stand (readers
        skip blank lines), so no line moves and every other job's checkpointed offsets stay true;
        nothing is ever held in memory but the lines' places."""
        if self.path is None or not os.path.exists(self.path):
            return 0
        with self._lock, open(self.path, "r+b") as fh:
            _flock(fh, exclusive=True)
            try:
                have = os.fstat(fh.fileno()).st_size
                if have <= size:
                    return 0
                mine: List[Tuple[int, int]] = []
                others = False
                if self._tag is not None:
                    fh.seek(size)
                    pos = size
                    for line in fh:
                        # A line cut short by a crash (no newline) is nobody's record: taken out too.
                        if self._mine(line) or not line.endswith(b"\n"):
                            mine.append((pos, len(line)))
                        elif line.strip():
                            others = True
                        pos += len(line)
                if not others:
                    fh.truncate(size)
                    cut = have - size
                else:
                    for at, n in mine:
                        fh.seek(at)
                        fh.write(b" " * (n - 1) + b"\n" if n else b"")
                    cut = sum(n for _, n in mine)
                fh.flush()
                os.fsync(fh.fileno())
                return cut
            finally:
                _flock(fh, exclusive=False)

    def sync(self) -> None:
        """Make every line written so far durable (called before a checkpoint save)."""
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if self._fh is not None:
                try:
                    os.fsync(self._fh.fileno())
                except OSError as e:
                    self._broken = self._cannot(e)
                    raise self._broken from None

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                with contextlib.suppress(OSError):  # a broken file already said why
                    os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None


def _flock(fh: Any, *, exclusive: bool) -> None:
    """Lock (or unlock) the whole file against other processes sharing it; where there is no
    flock (Windows), a file is one job's at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_UN)


def dead_letter_line(
    item: Any,
    reason: str,
    *,
    code: str = "",
    stage: str = "validate",
    origin: Optional[str] = None,
    source_key: Any = None,
    transform: Optional[str] = None,
    raw: Optional[str] = None,
    traceback: Optional[str] = None,
) -> bytes:
    """One dead-letter line, as the module docstring shows it."""
    rec: Dict[str, Any] = {"item": item, "reason": reason, "error_code": code or reason, "stage": stage}
    if origin is not None:
        rec["origin"] = origin
    if source_key is not None:
        rec["source_key"] = source_key
    if transform is not None:
        rec["transform"] = transform
    if raw is not None:
        exact = _invalid_utf8(raw)
        if exact is not None:
            raw = exact.decode("utf-8", "replace")
            if len(exact) <= MAX_RAW:
                rec["raw_b64"] = base64.b64encode(exact).decode("ascii")
        if len(raw) <= MAX_RAW:
            rec["raw"] = raw
        else:  # a replay of it says so, rather than failing to parse what is left
            rec["raw"], rec["raw_truncated"], rec["raw_length"] = raw[:MAX_RAW], True, len(raw)
    if traceback is not None:
        rec["traceback"] = traceback
    rec["time"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out = orjson.dumps(rec, default=_default) + b"\n"
    while len(out) > MAX_RECORD and rec.get("raw"):
        # Escapes (a control character is six bytes) can make the record longer than a replay
        # reads as one line: cut the raw text further, and say so.
        text = rec["raw"]
        rec.pop("raw_b64", None)
        rec["raw"], rec["raw_truncated"] = text[: len(text) // 2], True
        rec.setdefault("raw_length", len(raw or ""))
        out = orjson.dumps(rec, default=_default) + b"\n"
    return out


def raw_text(line: bytes) -> str:
    """A line's bytes as the ``raw`` text of a record: exact, invalid UTF-8 included (as surrogate
    escapes, which :func:`dead_letter_line` keeps as ``raw_b64``)."""
    return line.decode("utf-8", "surrogateescape")


def _invalid_utf8(raw: str) -> Optional[bytes]:
    """The bytes of a ``raw`` text that is not valid UTF-8 (see :func:`raw_text`), or None."""
    try:
        raw.encode("utf-8")
        return None
    except UnicodeEncodeError:
        try:
            return raw.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate from elsewhere than a byte
            return raw.encode("utf-8", "surrogatepass")


def raw_bytes(record: Dict[str, Any]) -> Optional[bytes]:
    """The line a record keeps, as bytes to parse again: ``raw_b64``'s exact bytes while ``raw`` is
    still their readable form, else ``raw`` (edited to fix the line, or valid UTF-8 from the
    start). None: no raw text; ValueError: ``raw_b64`` is not base64."""
    raw = record.get("raw")
    if not isinstance(raw, str):
        return None
    b64 = record.get("raw_b64")
    if isinstance(b64, str):
        exact = base64.b64decode(b64, validate=True)  # binascii.Error is a ValueError
        if exact.decode("utf-8", "replace") == raw:
            return exact
    return raw.encode("utf-8", "surrogatepass")


def _default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(bytes(o)).decode("ascii")
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    return str(o)
