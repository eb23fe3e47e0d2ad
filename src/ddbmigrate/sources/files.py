"""Read items from files: AWS exports (full; DYNAMODB_JSON or ION), DynamoDB-JSON lines, plain
JSON (lines or an array), Ion, CSV, Scan documents (aws CLI, dynamodump), Data Pipeline lines (JSON
or Hive).

Each file's format is decided before the job (:mod:`ddbmigrate.sources.detection`) and carried
in its :class:`FileEntry`; this module reads it.

What SOURCE may be, and the manifest checks, are in :mod:`ddbmigrate.storage.export_layout`;
reading and parsing lines in :mod:`ddbmigrate.sources.lines`; incremental exports in
:mod:`ddbmigrate.sources.incremental`. This module is the pipeline Source over them.

Invariants:
1. Memory is bounded: files are streamed in 1 MB blocks; a line longer than ``MAX_LINE`` is
   rejected without being held; a JSON array is decoded element by element.
2. One pipeline unit per file; a unit's position is the number of lines (array elements) fully
   handed on, so --resume continues inside each file.
3. By default every file with an integrity check (gzip CRC, manifest ``md5Checksum`` and
   ``itemCount``) is verified in a first pass *before* any of its items is handed on; a file
   that fails is reported and none of its items is written. With ``validate=False`` items stream
   at once and a failure reports how many of the file's items had been handed on.
4. Every line ends as an item, a reject (dead-lettered with ``file:line`` and the reason) or is
   blank; counts add up.
5. A file whose first ``FIRST_RECORDS`` records all fail to parse is not in the format it is
   read as: it fails as a whole with one line (file, format, first reason), and none of those
   records is dead-lettered. So does a shorter file none of whose lines is even valid syntax of
   its format (a manifest saying DYNAMODB_JSON over Ion lines); a file of valid lines holding
   bad items is dead-lettered line by line.
6. A checked file is fetched and decompressed once: the check pass keeps its content (memory up
   to ``KEEP_IN_MEMORY`` per reader, then an unnamed temporary file up to ``KEEP_LIMIT``) and
   the items are read from that. Over ``KEEP_LIMIT`` (a decompression bomb, say) nothing more is
   kept and the file is read from storage a second time, as before: disk use is bounded too.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import threading
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterator, List, Optional, Tuple

import orjson

from ..core.items import item_problem
from ..core.protocols import SourceBase
from ..core.records import Chunk
from ..core.specs import Resources, SourceSpecBase
from ..errors import DdbMigrateError, FatalError, UsageError
from ..formats import ion
from ..formats.detect import INPUT_FORMATS, READER
from ..formats.records import (
    RecordProblem,
    csv_reject_raw,
    csv_header_problem,
    csv_item,
    parse_csv_header,
)
from ..state.deadletter import raw_text
from ..storage.export_layout import FileEntry, FileProblem, Plan, check_against_manifest
from ..storage.stores import S3Settings, Storage, storage_for
from .documents import JsonText, ValueSkipped, every_line
from .lines import (
    CORRUPT_ERRORS,
    MAX_LINE,
    Line,
    LineStream,
    PIPELINE_TAGS,
    TooLong,
    convert_decoded,
    corrupt_reason,
    data_pipeline_line,
    duplicate_reason,
    hive_line,
    parse_line,
    pipeline_reject,
    replay_refusal,
    short_json,
    unicode_problem,
)

log = logging.getLogger(__name__)
CHUNK_LINES = 1000
# A CSV value may be as long as a line (an item's one attribute may be 400 KB, over csv's own
# 128 KB default); _read_csv bounds what the reader holds to MAX_LINE itself. The limit is the
# csv module's, process-wide: raised, never lowered.
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE))
# A checked file's content is kept for its reading (invariant 6): this much in memory per reader
# thread, the rest in an unnamed temporary file (in TMPDIR, gone with the process even on kill -9)
# up to KEEP_LIMIT; a file whose content is larger is read from storage again instead.
KEEP_IN_MEMORY = 4 * 1024 * 1024
KEEP_LIMIT = 256 * 1024 * 1024
CHUNK_BYTES = 4 * 1024 * 1024
FIRST_RECORDS = 100
# Reasons that say a line is not the format's syntax at all, as opposed to a bad item in it.
SYNTAX_REASONS = ("invalid JSON", "not valid UTF-8", "invalid Ion", "expected one Ion value", "expected a JSON object",
                  "expected an Ion struct", "invalid Hive line")
# How parse_item names the line formats it reads.
_LINE_FMT = {"dynamodb-json": "ddb", "json": "plain", "dead-letter": "deadletter"}


@dataclass
class FileFailure:
    """A file that failed its checks: where, why, and how many of its items were already handed on."""

    unit: str
    path: str
    reason: str
    line: Optional[int]
    handed_on: int  # items of this file handed to the writers before the failure

    def one_line(self) -> str:
        where = f"{self.unit}:{self.line}" if self.line else self.unit
        return f"{where}: {self.reason} ({self.handed_on} items of this file were loaded)"


class FileSource(SourceBase):
    """One pipeline unit per file; see the module docstring."""

    # Lines of one file are versions in order: the pipeline writes one key's lines in that order.
    ordered = True

    def __init__(self, storage: Storage, plan: Plan, *, validate: bool = True, input_format: str = "auto",
                 chunk_lines: int = CHUNK_LINES, key_types: Optional[Dict[str, str]] = None,
                 csv_header: Optional[List[str]] = None, csv_delimiter: str = ",",
                 transformed: Optional[bool] = None) -> None:
        if input_format not in INPUT_FORMATS:
            raise UsageError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}")
        self.storage = storage
        self.plan = plan
        self.validate = validate
        # A file whose format was not decided up front (library use): the given one, or detected
        # from its first object as before.
        self.input_format = input_format
        self.key_types = dict(key_types or {})
        self.csv_header = list(csv_header) if csv_header else None
        self.csv_delimiter = csv_delimiter
        # An import's: whether it applies a transform (a dead letter is replayed with one only
        # when it holds a source record; see lines.replay_refusal). None: not a replay's concern.
        self.transformed = transformed
        self.chunk_lines = chunk_lines
        self.by_unit = {f.unit: f for f in plan.files}
        self._failed: Dict[str, FileFailure] = {}
        self._lock = threading.Lock()

    def failures(self) -> List[FileFailure]:
        """Files that failed their checks (the others were read): the job fails after them."""
        return list(self._failed.values())

    def units(self) -> List[str]:
        return [f.unit for f in self.plan.files]

    def _fail(self, f: FileEntry, reason: str, line: Optional[int], handed_on: int) -> None:
        with self._lock:
            self._failed[f.unit] = FileFailure(f.unit, f.path, reason, line, handed_on)

    def checked(self, f: FileEntry) -> LineStream:
        """The check pass (gzip integrity, md5Checksum, itemCount; raises FileProblem), and the
        file's lines to read after it: replayed from what the pass kept (invariant 6), or read
        from storage again when the file was over ``KEEP_LIMIT``. Only a gzip stream or a
        manifest entry gives something to check: any other file is streamed as it is read."""
        kept = tempfile.SpooledTemporaryFile(max_size=KEEP_IN_MEMORY)
        try:
            ls = LineStream(self.storage, f.path, keep=kept, keep_limit=KEEP_LIMIT)
        except BaseException:
            kept.close()
            raise
        if not (f.md5 or f.item_count is not None or ls.gzip):
            ls.keep_nothing()
            kept.close()
            return ls
        n = 0
        ion_file = self._fmt(f) == "ion"
        try:
            for _, line in ls.numbered():
                # (an Ion marker on its own line is no record: not one the itemCount counts)
                n += not (ion_file and not isinstance(line, TooLong) and ion.is_marker_line(line))
            check_against_manifest(f, ls.md5_b64(), n)
        except BaseException as e:
            kept.close()
            if isinstance(e, CORRUPT_ERRORS):
                raise FileProblem(f"corrupt file: {corrupt_reason(e)}") from None
            raise
        finally:
            ls.close()
        if ls.kept_all:
            return LineStream.replay(kept, ls)
        kept.close()
        return LineStream(self.storage, f.path)

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        f = self.by_unit[unit]
        start = int(position or 0)
        if self.validate:
            try:
                ls = self.checked(f)
            except FileProblem as e:
                self._fail(f, e.reason, e.line, 0)
                return
        else:
            ls = LineStream(self.storage, f.path)
        try:
            reader = READER.get(self._fmt(f), self._fmt(f))
            if reader == "csv":
                yield from self._read_csv(f, ls, start, stop)
            elif reader == "scan":
                yield from self._read_docs(f, ls, start, stop)
            else:
                yield from self._read_stream(f, ls, start, stop)
        finally:
            ls.close()

    def _fmt(self, f: FileEntry) -> str:
        return f.fmt or ("auto" if self.input_format == "auto" else self.input_format)

    def _not_format(self, f: FileEntry, first: Optional[Tuple[str, str]], records: int = FIRST_RECORDS) -> None:
        where, reason = first or ("", "")
        which = f"first {records} records all" if records >= FIRST_RECORDS else \
            f"{records} record{'s all' if records > 1 else ''}"
        self._fail(f, f"not {self._fmt(f)}: its {which} failed to parse, so none was "
                   f"loaded or dead-lettered (first, {where}: {reason})", None, 0)

    def _end(self, f: FileEntry, chunk: Chunk, handed: int, md5: str, count: Optional[int],
             position: int) -> Iterator[Chunk]:
        """A file read to its end: its last chunk, then the manifest's check, then done."""
        if chunk.items or chunk.rejects:
            handed += len(chunk.items)
            yield chunk
        try:
            check_against_manifest(f, md5, count)
        except FileProblem as e:
            self._fail(f, e.reason, None, handed)
            return
        yield Chunk(position=position, done=True)

    def _broken(self, f: FileEntry, chunk: Chunk, handed: int, reason: str, line: Optional[int]) -> Iterator[Chunk]:
        """A file that failed midway: what was read of it still goes on, then it is marked failed."""
        handed += len(chunk.items)
        if chunk.items or chunk.rejects:
            yield chunk
        self._fail(f, reason, line, handed)

    def _read_stream(self, f: FileEntry, ls: LineStream, start: int, stop: threading.Event) -> Iterator[Chunk]:
        handed = 0
        lineno = 0
        nonblank = 0
        name = self._fmt(f)
        fmt = _LINE_FMT.get(name, name)
        other: Any = {"ion": ion.parse_item_line, "data-pipeline": data_pipeline_line,
                      "data-pipeline-hive": hive_line}.get(name)
        chunk = Chunk(position=start, origins=[], encs=[])
        nbytes = 0
        parsed = failed = 0  # records of this file parsed / failed from its first line (invariant 5)
        syntax_failed = 0  # of those, not even the format's syntax
        first_fail: Optional[Tuple[str, str]] = None
        try:
            if ls.first_char() == b"[" and other is None:  # first_char also drops a UTF-8 BOM
                yield from self._read_array(f, ls, start, stop)
                return
            # (A Hive line starts with an attribute's raw name, which may start with a space.)
            for lineno, line in (ls.numbered() if other is not hive_line else _unstripped(ls)):
                if other is ion.parse_item_line and not isinstance(line, TooLong) and ion.is_marker_line(line):
                    continue  # no record (nor one the manifest's itemCount counts)
                nonblank += 1
                if lineno <= start:
                    continue
                origin = f"{f.unit}:{lineno}"
                if isinstance(line, TooLong):
                    chunk.rejects.append(("", f"line is {line.size} bytes, over the {MAX_LINE}-byte line limit "
                                          "(DynamoDB items are at most 400 KB)", origin))
                else:
                    text = line.rstrip(b"\r")
                    alone = refused_here = a_record = False
                    if other is None:
                        item, reason, fmt, alone = parse_line(text, fmt)
                        if fmt == "deadletter":
                            try:  # (parse_line keeps its object to itself: one more parse, not two)
                                record: Any = orjson.loads(text)
                            except orjson.JSONDecodeError:
                                record = None
                            # A record of this format whatever the line it keeps: one whose line
                            # fails again is dead-lettered again, not taken for another format.
                            a_record = isinstance(record, dict) and "reason" in record
                            origin = replayed_origin(origin, record)
                            if self.transformed is not None and (item is not None or a_record):
                                refused = replay_refusal(record, self.transformed)
                                if refused is not None:
                                    # Kept whole (as its raw line): the right replay reads it again.
                                    chunk.rejects.append((raw_text(line), refused, origin))
                                    parsed += 1  # a record of this format: not a sign of another
                                    item, refused_here = None, True
                    else:
                        item, reason = other(text)
                    if refused_here:
                        pass
                    elif item is not None:
                        chunk.items.append(item)
                        chunk.origins.append(origin)  # type: ignore[union-attr]
                        # An Export-to-S3 line ({"Item": ...} and nothing else) holds the item's
                        # JSON as it is to be sent: hand it on, so it is not encoded again.
                        chunk.encs.append(text[8:-1] if alone and text.startswith(b'{"Item":')  # type: ignore[union-attr]
                                          and text.endswith(b"}") else None)
                        parsed += 1
                    else:
                        syntax_failed += reason is not None and reason.startswith(SYNTAX_REASONS)
                        raw = line if other is not ion.parse_item_line or line.startswith(ion.IVM) else ion.IVM + b" " + line
                        if name in PIPELINE_TAGS:
                            raw, reason = pipeline_reject(text, name, reason or "invalid")
                        # The whole line, so that a replay of the dead letter reads it again (an
                        # Ion line marked as Ion).
                        chunk.rejects.append((raw_text(raw), reason or "invalid", origin))
                        if a_record:
                            parsed += 1
                        elif not parsed and start == 0:
                            failed += 1
                            first_fail = first_fail or (origin, reason or "invalid")
                            if failed >= FIRST_RECORDS:
                                self._not_format(f, first_fail)
                                return
                    nbytes += len(line)
                chunk.position = lineno
                if len(chunk.items) + len(chunk.rejects) >= self.chunk_lines or nbytes >= CHUNK_BYTES:
                    handed += len(chunk.items)
                    yield chunk
                    chunk, nbytes = Chunk(position=lineno, origins=[], encs=[]), 0
                    if stop.is_set():
                        return
            md5 = ls.md5_b64()
        except CORRUPT_ERRORS as e:
            yield from self._broken(f, chunk, handed, f"corrupt file: {corrupt_reason(e)}", lineno + 1)
            return
        if failed and failed == syntax_failed and not parsed and start == 0 and chunk.rejects and \
                len(chunk.rejects) == failed:
            self._not_format(f, first_fail, failed)  # nothing of it was handed on
            return
        yield from self._end(f, chunk, handed, md5, nonblank, lineno)

    def _read_array(self, f: FileEntry, ls: LineStream, start: int, stop: threading.Event) -> Iterator[Chunk]:
        """A JSON array, decoded one element at a time (position = elements handed on); an
        element over MAX_LINE is skipped unheld and dead-lettered, and the next one read."""
        js = JsonText(ls)
        name = self._fmt(f)
        idx, handed, fmt = 0, 0, _LINE_FMT.get(name, name)
        chunk = Chunk(position=start, origins=[])
        nbytes = 0
        try:
            js.skip_ws()
            js.take("[")  # the "[" that made this an array
            while True:
                js.skip_ws()
                if js.at_end():
                    raise FileProblem("the JSON array is not closed (truncated file?)", js.line)
                if js.take("]"):
                    break
                if idx:
                    if not js.take(","):
                        raise FileProblem(f"invalid JSON array: expected ',' or ']' after element {idx}", js.line)
                    js.skip_ws()
                elem_line = js.line
                idx += 1
                origin = f"{f.unit}:{elem_line}"
                try:
                    obj, elem_text = js.value_text(f"array element {idx}")  # as written: a dead letter replays it
                except ValueSkipped as e:
                    if idx > start:
                        chunk.rejects.append((e.raw, e.reason, origin))
                        chunk.position = idx
                    continue
                problem: Optional[str] = duplicate_reason(js.repeated[0]) if js.repeated else None
                if idx <= start:
                    continue
                problem = problem or (unicode_problem(obj) if "\\u" in elem_text else None)
                item, reason = None, problem
                if not problem:
                    item, reason, fmt = convert_decoded(obj, fmt)
                if item is not None:
                    chunk.items.append(item)
                    chunk.origins.append(origin)  # type: ignore[union-attr]
                else:
                    chunk.rejects.append((elem_text, reason or "invalid", origin))
                nbytes += len(elem_text)
                chunk.position = idx
                # Cut by bytes too: an element may be megabytes (memory is bounded per chunk).
                if len(chunk.items) + len(chunk.rejects) >= self.chunk_lines or nbytes >= CHUNK_BYTES:
                    handed += len(chunk.items)
                    yield chunk
                    chunk, nbytes = Chunk(position=idx, origins=[]), 0
                    if stop.is_set():
                        return
            md5 = ls.md5_b64()
        except (FileProblem, *CORRUPT_ERRORS) as e:
            yield from self._broken(f, chunk, handed, *_problem(e, js.line))
            return
        yield from self._end(f, chunk, handed, md5, None, idx)

    # ------------------------------------------------------------------ CSV

    def _read_csv(self, f: FileEntry, ls: LineStream, start: int, stop: threading.Event) -> Iterator[Chunk]:
        """CSV as ImportTable reads it; position = data records handed on (header excluded).

        csv.reader pulls one line at a time and hands a record back as soon as its last line is
        read (each line given to it ends in a newline), so what the reader holds is what was read
        since the last record: that is bounded by MAX_LINE here, and a record the reader hands
        back after the text ran out was cut inside a quoted value."""
        lineno = 0
        pending = 0  # bytes read into the record the reader is in (0: between records)
        opened = 0  # the line that record started on
        at_eof = False
        bad_text: Optional[str] = None  # the first undecodable bytes of that record
        skipped: List[Tuple[int, int]] = []  # lines over MAX_LINE outside any record: (line, size)
        record: List[str] = []  # the lines of the record being read (at most MAX_LINE bytes)

        def text() -> Iterator[str]:
            nonlocal lineno, pending, opened, at_eof, bad_text
            for line in every_line(ls):  # blank lines and spaces too: they may be inside a quoted value
                lineno += 1
                size = line.size if isinstance(line, TooLong) else len(line) + 1
                if pending and pending + size > MAX_LINE:
                    raise FileProblem(f"the quoted value opened on line {opened} runs over {MAX_LINE} bytes "
                                      "(a quote never closed?)", opened)
                if isinstance(line, TooLong):
                    if header is None:
                        raise FileProblem(f"line {lineno} is {line.size} bytes, over the {MAX_LINE}-byte line "
                                          "limit", lineno)
                    # Dropped unread (never held): a record of its own, dead-lettered in order.
                    skipped.append((lineno, line.size))
                    continue
                if not pending:
                    opened, bad_text = lineno, None
                    record.clear()
                pending += size
                try:
                    decoded = line.decode("utf-8") + "\n"
                    record.append(decoded)  # what a malformed record's dead letter keeps
                    yield decoded
                except UnicodeDecodeError as e:
                    # Kept undecodable (surrogateescape) so the row still splits where it should;
                    # the record is then dead-lettered with this reason, never loaded with U+FFFD.
                    utf16 = lineno == 1 and line.startswith((b"\xff\xfe", b"\xfe\xff"))
                    bad_text = bad_text or (
                        "the file is UTF-16 (a spreadsheet's \"Unicode text\"?): save it as CSV UTF-8" if utf16 else
                        f"invalid UTF-8 on line {lineno}: byte 0x{line[e.start]:02x} at column {e.start + 1} ({e.reason})")
                    decoded = line.decode("utf-8", "surrogateescape") + "\n"
                    record.append(decoded)
                    yield decoded
            at_eof = True

        header = self.csv_header
        idx = handed = parsed = failed = nbytes = 0
        first_fail: Optional[Tuple[str, str]] = None
        chunk = Chunk(position=start, origins=[])

        def reject(raw: str, reason: str, origin: str) -> bool:
            """A dead letter; True when the file's first records all failed (invariant 5)."""
            nonlocal failed, first_fail
            chunk.rejects.append((raw, reason, origin))
            if not parsed and start == 0:
                failed += 1
                first_fail = first_fail or (origin, reason)
                return failed >= FIRST_RECORDS
            return False

        def records() -> Iterator[Tuple[List[str], Optional[str]]]:
            """(row, None), or ([the record's text], what is wrong with it) for a record csv cannot
            read strictly, e.g. ``x,"ab"cd`` (text after a closing quote): lenient csv would load
            ``abcd``, which no one wrote. The reader goes on at the next line."""
            rows = csv.reader(text(), delimiter=self.csv_delimiter, strict=True)
            while True:
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except csv.Error as e:
                    if at_eof:  # "unexpected end of data": the file ends inside a quoted value
                        yield [], None
                        return
                    if "expected after" not in str(e):
                        raise  # a bare CR and the like: the file's fault, said below as before
                    yield ["".join(record).rstrip("\n")], str(e)
                    continue
                yield row, None

        try:
            for row, malformed in records():
                where, bad, pending = opened, bad_text, 0
                if at_eof:
                    raise FileProblem(f"the quoted value opened on line {where} is never closed: the file ends "
                                      f"inside it, {lineno - where + 1} line(s) later", where)
                if malformed is not None:
                    why = (f"malformed CSV record ({malformed}): a quoted value must be followed by the "
                           "delimiter or the end of the line; write a quote inside a quoted value as two quotes")
                    if header is None:
                        raise FileProblem(f"not csv: the header is a {why}", where)
                    idx += 1
                    if idx > start and reject(row[0], bad or why, f"{f.unit}:{where}"):
                        self._not_format(f, first_fail)
                        return
                    chunk.position = idx
                    nbytes += len(row[0])
                    # Handed on as any record is: a file of such rows is not held whole in one chunk.
                    if len(chunk.items) + len(chunk.rejects) >= self.chunk_lines or nbytes >= CHUNK_BYTES:
                        handed += len(chunk.items)
                        yield chunk
                        chunk, nbytes = Chunk(position=idx, origins=[]), 0
                        if stop.is_set():
                            return
                    continue
                while skipped:
                    at, size = skipped.pop(0)
                    idx += 1
                    if idx > start and reject("", f"line is {size} bytes, over the {MAX_LINE}-byte line limit "
                                              "(DynamoDB items are at most 400 KB)", f"{f.unit}:{at}"):
                        self._not_format(f, first_fail)
                        return
                if header is None:
                    header = [c.strip() for c in row]
                    if header and header[0].startswith("\ufeff"):
                        header[0] = header[0][1:]
                    problem = bad or csv_header_problem(header)
                    if problem:
                        raise FileProblem(f"not csv: {problem}", where)
                    continue
                if not any(row):
                    continue  # a blank line is no record
                idx += 1
                if idx <= start:
                    continue
                origin = f"{f.unit}:{where}"
                if bad:
                    raw = self.csv_delimiter.join(row)
                    if reject(raw, bad, origin):
                        self._not_format(f, first_fail)
                        return
                else:
                    try:
                        chunk.items.append(csv_item(header, row, self.key_types))
                        chunk.origins.append(origin)  # type: ignore[union-attr]
                        parsed += 1
                    except RecordProblem as e:
                        if reject(csv_reject_raw(e, row, self.csv_delimiter), str(e), origin):
                            self._not_format(f, first_fail)
                            return
                nbytes += sum(map(len, row))
                chunk.position = idx
                if len(chunk.items) + len(chunk.rejects) >= self.chunk_lines or nbytes >= CHUNK_BYTES:
                    handed += len(chunk.items)
                    yield chunk
                    chunk, nbytes = Chunk(position=idx, origins=[]), 0
                    if stop.is_set():
                        return
            while skipped:  # over-long lines after the last record
                at, size = skipped.pop(0)
                idx += 1
                if idx > start:
                    chunk.rejects.append(("", f"line is {size} bytes, over the {MAX_LINE}-byte line limit "
                                          "(DynamoDB items are at most 400 KB)", f"{f.unit}:{at}"))
                chunk.position = idx
            md5 = ls.md5_b64()
        except (FileProblem, csv.Error, *CORRUPT_ERRORS) as e:
            yield from self._broken(f, chunk, handed, *_problem(e, lineno))
            return
        yield from self._end(f, chunk, handed, md5, idx, idx)

    # ------------------------------------------------------------------ Scan documents

    def _read_docs(self, f: FileEntry, ls: LineStream, start: int, stop: threading.Event) -> Iterator[Chunk]:
        """Scan response documents one after another (``aws dynamodb scan`` pages, dynamodump data
        files); the ``Items`` array is streamed element by element. Position = items handed on."""
        js = JsonText(ls)
        idx = handed = nbytes = 0
        chunk = Chunk(position=start, origins=[])
        docs = 0
        try:
            while True:
                js.skip_ws()
                if js.at_end():
                    break
                docs += 1
                if not js.take("{"):
                    raise FileProblem(f"not a Scan document: document {docs} does not start with '{{' "
                                      f"(found {js.peek_text()!r})", js.line)
                count: Optional[int] = None
                in_doc = 0
                paged = False
                first = True
                while True:
                    js.skip_ws()
                    if js.take("}"):
                        break
                    if not first and not js.take(","):
                        raise FileProblem(f"invalid JSON in document {docs}: expected ',' or '}}'", js.line)
                    first = False
                    js.skip_ws()
                    key = js.value(f"document {docs}")
                    js.skip_ws()
                    if not isinstance(key, str) or not js.take(":"):
                        raise FileProblem(f"invalid JSON in document {docs}: expected a key", js.line)
                    js.skip_ws()
                    if key != "Items":
                        v = js.value(f"document {docs}")
                        if key == "Count" and isinstance(v, int):
                            count = v
                        elif key == "NextToken":
                            paged = True
                        elif key not in _SCAN_OTHER_KEYS:
                            raise FileProblem(f"not a Scan document: document {docs} has a key {key!r}", js.line)
                        continue
                    if not js.take("["):
                        raise FileProblem(f"Items of document {docs} is not a list", js.line)
                    n = 0
                    while True:
                        js.skip_ws()
                        if js.take("]"):
                            break
                        if n and not js.take(","):
                            raise FileProblem(f"invalid JSON in Items of document {docs}: expected ',' or ']'",
                                              js.line)
                        js.skip_ws()
                        line = js.line
                        n += 1
                        idx += 1
                        origin = f"{f.unit}:{line}"
                        try:
                            obj = js.value(f"item {n} of document {docs}")
                        except ValueSkipped as e:
                            # Skipped unheld; counted as an item the document holds (its Count).
                            if idx > start:
                                chunk.rejects.append((e.raw, e.reason, origin))
                                chunk.position = idx
                            continue
                        if idx <= start:
                            continue
                        p = duplicate_reason(js.repeated[0]) if js.repeated else item_problem(obj)
                        if p is None:
                            chunk.items.append(obj)
                            chunk.origins.append(origin)  # type: ignore[union-attr]
                        else:
                            raw = short_json(obj)
                            chunk.rejects.append((raw, p, origin))
                            nbytes += len(raw)
                        chunk.position = idx
                        if len(chunk.items) + len(chunk.rejects) >= self.chunk_lines or nbytes >= CHUNK_BYTES:
                            handed += len(chunk.items)
                            yield chunk
                            chunk, nbytes = Chunk(position=idx, origins=[]), 0
                            if stop.is_set():
                                return
                    in_doc = n
                # The AWS CLI's `--max-items` cuts Items, not Count (the pages it fetched), and says
                # so with a NextToken; the last output of a `--starting-token` resume has no
                # NextToken, and its Count holds the items of the resumed page before the token. So
                # only more items than Count is a contradiction; fewer is said, not refused.
                if count is not None and count < in_doc:
                    raise FileProblem(f"document {docs} says Count {count} but holds {in_doc} items", js.line)
                if count is not None and count > in_doc and not paged:
                    log.warning("%s: document %d says Count %d but holds %d items: read as the last output of a "
                                "paginated `aws dynamodb scan` (--starting-token); if the file was cut, the rest "
                                "is not in it", f.unit, docs, count, in_doc)
            md5 = ls.md5_b64()
        except (FileProblem, *CORRUPT_ERRORS) as e:
            yield from self._broken(f, chunk, handed, *_problem(e, js.line))
            return
        yield from self._end(f, chunk, handed, md5, None, idx)


_SCAN_OTHER_KEYS = frozenset(("Count", "ScannedCount", "LastEvaluatedKey", "ConsumedCapacity", "NextToken",
                              "ResponseMetadata"))


def _unstripped(ls: LineStream) -> Iterator[Tuple[int, Line]]:
    """``LineStream.numbered`` that keeps a line's leading spaces (blank lines are still none)."""
    for lineno, line in enumerate(every_line(ls), 1):
        if isinstance(line, TooLong) or line.strip():
            yield lineno, line


def _problem(e: BaseException, line: Optional[int]) -> Tuple[str, Optional[int]]:
    """(reason, line) of what stopped reading a file: a bad layout, bad CSV, or corrupt bytes."""
    if isinstance(e, FileProblem):
        return e.reason, e.line or line
    if isinstance(e, csv.Error):
        if "new-line character seen in unquoted field" in str(e):
            return ("invalid CSV: a carriage return (\\r) alone inside an unquoted value; quote the value "
                    "(RFC 4180) or remove the \\r"), line
        return f"invalid CSV: {e}", line
    return f"corrupt file: {corrupt_reason(e)}", line


__all__ = ["CHUNK_BYTES", "CHUNK_LINES", "FIRST_RECORDS", "SYNTAX_REASONS", "FileFailure", "FileSource", "INPUT_FORMATS"]


def replayed_origin(origin: str, record: Any) -> str:
    """A replayed dead letter's place, with the place it first came from (the decoded record's
    own ``origin``)."""
    first = record.get("origin") if isinstance(record, dict) else None
    if not isinstance(first, str) or not first:
        return origin
    if " (from " in first:  # replayed before: the place it first came from
        first = first.rsplit(" (from ", 1)[1].rstrip(")")
    return f"{origin} (from {first})"


@dataclass(frozen=True)
class FilesSpec(SourceSpecBase):
    """The files of ``plan`` (discovered once, on the driver), one unit per file (picklable)."""

    location: str
    plan: Plan
    s3: Optional[S3Settings] = None
    validate: bool = True
    input_format: str = "auto"
    # CSV: the key attributes' types (from the table's key schema), header and delimiter.
    key_types: Optional[Dict[str, str]] = None
    csv_header: Optional[List[str]] = None
    csv_delimiter: str = ","
    transformed: Optional[bool] = None

    def units(self) -> List[str]:
        return [f.unit for f in self.plan.files]

    def build(self, res: Resources) -> FileSource:
        plan = self.plan
        if res.units is not None:
            mine = set(res.units)
            plan = replace(plan, files=[f for f in plan.files if f.unit in mine])
        return FileSource(storage_for(self.location, self.s3), plan, validate=self.validate,
                          input_format=self.input_format, key_types=self.key_types, csv_header=self.csv_header,
                          csv_delimiter=self.csv_delimiter, transformed=self.transformed)

    def csv_headers(self) -> Iterator[Tuple[FileEntry, List[str]]]:
        """Each CSV file's header (``csv_header`` when given, else its first line: only that much
        of the file is read, eight files at a time), to check them all before the import starts.
        A file whose first line cannot be read is left to the import, which names its problem."""
        files = [f for f in self.plan.files if f.fmt == "csv"]
        if self.csv_header is not None:
            yield from ((f, list(self.csv_header)) for f in files)
            return
        if not files:
            return
        storage = storage_for(self.location, self.s3)

        def header_of(f: FileEntry) -> Optional[List[str]]:
            ls = LineStream(storage, f.path)
            try:
                first = next((line for _, line in ls.numbered() if not isinstance(line, TooLong)), None)
            except (DdbMigrateError, *CORRUPT_ERRORS):
                return None
            finally:
                ls.close()
            if first is None:
                return None
            try:
                return parse_csv_header(first.decode("utf-8").lstrip("\ufeff"), self.csv_delimiter)
            except (UnicodeDecodeError, csv.Error):  # (not UTF-8: UTF-16 from a spreadsheet, say)
                return None

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(files)), thread_name_prefix="csv-header") as pool:
            for f, header in zip(files, pool.map(header_of, files)):
                if header is not None:
                    yield f, header

    def failed(self, failures: Any) -> DdbMigrateError:
        return FatalError(
            f"{len(failures)} file(s) failed their checks and were not fully loaded: "
            + "; ".join(f.one_line() for f in failures[:5]) + (" ..." if len(failures) > 5 else ""),
            file=failures[0].path, line=failures[0].line, code="BadFile",
            hint="fix or replace the file(s), then rerun with --resume (loaded files are not redone; a file "
                 "replaced since needs --resume --force: it is read on from where it stopped)",
        )
