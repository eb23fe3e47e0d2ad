"""Lines and records of one stored file: streamed, gunzipped, and parsed into wire items.

Files may be gzip or zstd (detected by their magic bytes) or plain. Per file, the format is detected
from its first object (:func:`detect`): ``{"Item": ...}`` or bare DynamoDB-JSON items,
incremental export records (``Keys``/``NewImage``/``Metadata``), our own dead-letter lines
(``{"item": ...}``), or JSON lines of plain values (parsed with ``Decimal``, so numbers keep
every digit).

Invariants:
1. Memory is bounded: files are streamed in ``BLOCK`` (1 MB) blocks; a line longer than
   ``MAX_LINE`` is handed on as :class:`TooLong` without being held.
2. Everything decompressed before a truncation or corruption is handed out before the error
   (one of ``CORRUPT_ERRORS``) is raised, so a caller can say exactly what was read.
3. Parsing is lossless: a record becomes a wire item or a reason, never a rounded number.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import re
import zlib
from decimal import Decimal
from typing import IO, Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import orjson

from ..core.items import ALL_TYPES, WireItem, from_python, item_problem, valid_item_names
from ..errors import InvalidItemError, RetriableError
from ..formats.compression import HEAD, ZstdError, ZstdReader, codec_of
from ..formats.records import RecordProblem, from_data_pipeline, hive_fields
from ..state.deadletter import raw_bytes
from ..storage.stores import Storage

MAX_LINE = 8 * 1024 * 1024
BLOCK = 1 << 20

# What reading a corrupt or truncated file raises (gzip CRC / length, cut streams).
CORRUPT_ERRORS = (OSError, EOFError, zlib.error, ZstdError)


# --------------------------------------------------------------------------- streaming lines


class _Raw:
    """The stored bytes as read: hashed and counted on the way (for md5Checksum)."""

    def __init__(self, fh: IO[bytes], head: bytes = b"", hashed: bool = True) -> None:
        self.fh = fh
        self.md5 = hashlib.md5()
        self.hashed = hashed
        self._head = head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            b, self._head = self._head, b""
            if n is not None and 0 <= n < len(b):
                b, self._head = b[:n], b[n:]
            return b
        try:
            data: bytes = self.fh.read(n) if n is not None and n >= 0 else self.fh.read()
        except OSError:
            raise
        except Exception as e:  # an S3 stream cut mid-file (botocore/urllib3 errors): resumable
            raise RetriableError(f"reading stopped: {type(e).__name__}: {str(e)[:200]}; rerun with --resume",
                                 code="ReadError") from None
        if self.hashed:
            self.md5.update(data)
        return data

    def drain(self) -> None:
        while self.read(BLOCK):
            pass


class _Gunzip:
    """Streaming gunzip (multi-member, CRC and length checked by zlib).

    Unlike gzip.GzipFile, everything decompressed before a truncation or corruption is handed
    out before the error is raised, so --no-validate can say exactly what was loaded.
    """

    def __init__(self, raw: _Raw) -> None:
        self.raw = raw
        self.d = zlib.decompressobj(31)
        self._in = b""

    def read(self, n: int) -> bytes:
        while True:
            if self._in:
                buf, self._in = self._in, b""
            else:
                buf = self.raw.read(BLOCK)
                if not buf:
                    if not self.d.eof:
                        raise EOFError("compressed file ended before the end of the gzip stream (truncated)")
                    return b""
            if self.d.eof:  # the previous member ended: another member, or padding
                if not buf.strip(b"\0"):
                    continue
                self.d = zlib.decompressobj(31)
            out = self.d.decompress(buf, n)
            self._in = self.d.unconsumed_tail or (self.d.unused_data if self.d.eof else b"")
            if out:
                return out


class TooLong:
    """Stands in for a line over MAX_LINE bytes, which is skipped without being held."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


Line = Union[bytes, TooLong]

# A non-blank line: from its first non-space byte up to (not including) its newline. Linear:
# once a non-space byte is found, ``[^\n]*`` cannot fail, so nothing is ever backtracked.
_CONTENT = re.compile(rb"[^\s][^\n]*")


class LineStream:
    """Lines of one stored file, decompressed if it is gzip; md5 of the stored bytes at the end.

    Blank lines cost (almost) nothing: whitespace is skipped by a regular expression and counted
    with ``bytes.count``, never split into Python objects, and whitespace-only blocks are never
    held. So a file of 128 MB of newlines, or one line of 2 GB of spaces, is read in bounded
    memory and in the time it takes to gunzip it.
    """

    def __init__(self, storage: Storage, path: str, *, keep: Optional[IO[bytes]] = None,
                 keep_limit: int = 0) -> None:
        """``keep``: a file that receives the content as it is decompressed, up to ``keep_limit``
        bytes, so that one reading can both check a file and feed its items (:meth:`replay`);
        ``kept_all`` says whether all of it fitted."""
        fh = storage.open_read(path)
        head = fh.read(HEAD)
        self._setup(fh, _Raw(fh, head), codec_of(head), keep)
        self.raw.md5.update(head)
        self._keep_left = keep_limit

    @classmethod
    def replay(cls, kept: IO[bytes], checked: "LineStream") -> "LineStream":
        """The lines of what ``checked`` kept, read from ``kept`` (rewound): not decompressed or
        hashed again; ``md5_b64`` and ``gzip`` are those of the checked file."""
        kept.seek(0)
        ls = cls.__new__(cls)
        ls._setup(kept, _Raw(kept, hashed=False), "plain", None)
        ls.codec, ls.gzip, ls._md5 = checked.codec, checked.gzip, checked.md5_b64()
        return ls

    def _setup(self, fh: IO[bytes], raw: _Raw, codec: str, keep: Optional[IO[bytes]]) -> None:
        self._fh = fh
        self.raw = raw
        self.codec = codec  # gzip / zstd / plain, by magic bytes (ImportTable's three)
        self.gzip = self.codec != "plain"  # compressed: a stream with its own integrity check
        self._reader: Any = (_Gunzip(self.raw) if self.codec == "gzip" else
                             ZstdReader(self.raw) if self.codec == "zstd" else self.raw)
        self._keep = keep
        self._keep_left = 0
        self.kept_all = keep is not None
        self._md5: Optional[str] = None
        self._pending: List[bytes] = []
        self._started = False
        # Newlines in the whitespace-only blocks first_char() dropped: line numbers stay true.
        self.skipped_newlines = 0

    def keep_nothing(self) -> None:
        self._keep, self.kept_all = None, False

    def _read_block(self) -> bytes:
        b: bytes = self._reader.read(BLOCK)
        if self._keep is not None and b:
            if len(b) > self._keep_left:  # too much to keep: give the space back now
                self._keep.seek(0)
                self._keep.truncate()
                self._keep, self.kept_all = None, False
            else:
                self._keep.write(b)  # before the BOM is dropped: the replay drops it the same way
                self._keep_left -= len(b)
        if not self._started and b:
            self._started = True
            if b.startswith(codecs.BOM_UTF8):
                b = b[len(codecs.BOM_UTF8):]
        return b

    def first_char(self) -> bytes:
        """The first non-blank byte of the content (read ahead, not consumed; blank blocks dropped)."""
        for b in self._pending:
            s = b.lstrip()
            if s:
                return s[:1]
        while True:
            b = self._read_block()
            if not b:
                return b""
            s = b.lstrip()
            if s:
                self._pending.append(b)
                return s[:1]
            if not self._pending:  # leading whitespace only: count its lines, hold nothing
                self.skipped_newlines += b.count(b"\n")
            else:
                self._pending.append(b)

    def peek(self, n: int = BLOCK) -> bytes:
        """Up to ``n`` bytes of the (decompressed) content, read ahead and not consumed."""
        have = sum(len(b) for b in self._pending)
        while have < n:
            b = self._read_block()
            if not b:
                break
            self._pending.append(b)
            have += len(b)
        return b"".join(self._pending)[:n]

    def blocks(self) -> Iterator[bytes]:
        while self._pending:
            yield self._pending.pop(0)
        while True:
            b = self._read_block()
            if not b:
                return
            yield b

    def numbered(self) -> Iterator[Tuple[int, Line]]:
        """``(line number, line)`` for every non-blank line, leading whitespace dropped.

        A line over ``MAX_LINE`` bytes comes as :class:`TooLong` and is never held whole.
        """
        lineno = 1 + self.skipped_newlines  # the number of the line that ``pos`` is in
        carry = b""  # the start of a line that goes on in the next block
        skipping = 0  # bytes of an over-long line dropped so far
        for block in self.blocks():
            if skipping or carry:
                nl = block.find(b"\n")
                if nl < 0:
                    if skipping:
                        skipping += len(block)
                    else:
                        carry += block
                        if len(carry) > MAX_LINE:
                            skipping, carry = len(carry), b""
                    continue
                if skipping:
                    yield lineno, TooLong(skipping + nl)
                else:
                    line = carry + block[:nl]
                    yield lineno, TooLong(len(line)) if len(line) > MAX_LINE else line
                skipping, carry = 0, b""
                lineno += 1
                block = block[nl + 1:]
            pos = 0
            end = len(block)
            for m in _CONTENT.finditer(block):
                start, stop = m.span()
                lineno += block.count(b"\n", pos, start)
                pos = stop
                if stop == end:  # no newline after it in this block: the line goes on
                    carry = m.group()
                    break
                yield lineno, TooLong(stop - start) if stop - start > MAX_LINE else m.group()
            else:
                lineno += block.count(b"\n", pos)
        if skipping:
            yield lineno, TooLong(skipping)
        elif carry:
            yield lineno, TooLong(len(carry)) if len(carry) > MAX_LINE else carry

    def md5_b64(self) -> str:
        if self._md5 is None:
            self.raw.drain()
            self._md5 = base64.b64encode(self.raw.md5.digest()).decode("ascii")
        return self._md5

    def close(self) -> None:
        try:
            self._fh.close()
        except Exception:  # closing a half-read HTTP body may complain; nothing to keep
            pass


# --------------------------------------------------------------------------- parsing


def looks_wire(obj: Dict[str, Any]) -> bool:
    """Every value a one-key type descriptor: DynamoDB JSON rather than plain JSON."""
    if not obj:
        return False
    for v in obj.values():
        if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in ALL_TYPES:
            return False
    return True


def detect(obj: Any) -> str:
    """The format of a file, from its first object: ddb, incremental, deadletter or plain."""
    if not isinstance(obj, dict):
        return "plain"
    if isinstance(obj.get("Item"), dict):
        return "ddb"
    if "Keys" in obj and ("NewImage" in obj or "Metadata" in obj or "OldImage" in obj):
        return "incremental"
    if "item" in obj and ("reason" in obj or "error_code" in obj):
        return "deadletter"
    return "ddb" if looks_wire(obj) else "plain"


def _loads_plain(text: Union[bytes, str]) -> Any:
    """JSON with Decimal for every non-integer number and exact ints: no digit is lost.

    Raises ValueError (with the reason) for what must be a bad line, not a crash: nesting deep
    enough to exhaust the stack, and lone UTF-16 surrogates (``"\\ud800"``), which json accepts
    but no UTF-8 writer can encode.
    """
    try:
        obj = json.loads(text, parse_float=Decimal)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if (b"\\u" in text) if isinstance(text, bytes) else ("\\u" in text):
        p = unicode_problem(obj)
        if p:
            raise ValueError(p)
    return obj


def unicode_problem(obj: Any) -> Optional[str]:
    """Why a value decoded by ``json`` cannot be written as UTF-8 (a lone surrogate), or None."""
    try:
        json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return "a string holds a lone UTF-16 surrogate escape, which is not valid Unicode"
    return None


def duplicate_recorder() -> Tuple[List[str], Any]:
    """(found, hook): a ``json`` object_pairs_hook that records the first repeated name."""
    found: List[str] = []

    def pairs(kv: List[Tuple[str, Any]]) -> Dict[str, Any]:
        d = dict(kv)
        if len(d) != len(kv) and not found:
            seen = set()
            for k, _ in kv:
                if k in seen:
                    found.append(k)
                    break
                seen.add(k)
        return d

    return found, pairs


def duplicate_reason(name: str) -> str:
    return f"the name {name!r} appears twice in one object (JSON keeps only one of them)"


# A key is a string followed by ``:``; inside a string a quote is always escaped, so every key
# matches this and the only other matches are escaped quotes followed by a colon inside strings.
_KEY_END = re.compile(rb'"[ \t\r\n]*:')


def key_ends(line: bytes) -> int:
    """How many times ``_KEY_END`` matches ``line``; a plain count when no quote is followed by
    whitespace (always so for the compact JSON that AWS and ddbmigrate write)."""
    if _QUOTE_SPACE(line):
        return len(_KEY_END.findall(line))
    return line.count(b'":')


_QUOTE_SPACE = re.compile(rb'"[ \t\r\n]').search


def _count_keys(obj: Any) -> int:
    n = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if type(o) is dict:
            n += len(o)
            stack.extend(o.values())
        elif type(o) is list:
            stack.extend(o)
    return n


def duplicate_name(line: bytes, obj: Any) -> Optional[str]:
    """Why ``line`` holds an object with a repeated name (``obj`` is its parse), or None.

    A JSON parser keeps one of two equal names, silently; a repeated attribute or type tag must
    be a rejected line instead. Cheap in the usual case: the colons after quotes can only
    outnumber the names kept if a name was repeated (or a string holds an escaped quote and a
    colon); only then is the line parsed again, slowly, to be sure.
    """
    if len(_KEY_END.findall(line)) == _count_keys(obj):
        return None
    found, pairs = duplicate_recorder()
    try:
        json.loads(line, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None  # the first parser accepted it; nothing more to learn here
    return duplicate_reason(found[0]) if found else None


def _json_reason(line: bytes, e: Exception) -> str:
    """Why a line is not JSON: bytes that are not UTF-8 said as such (orjson's words for them,
    "surrogates not allowed", name neither the bytes nor where they are)."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as u:
        return f"not valid UTF-8: byte {u.start + 1} of the line is {line[u.start:u.start + 1]!r}"
    return f"invalid JSON: {e}"


def parse_item(line: bytes, fmt: str) -> Tuple[Optional[WireItem], Optional[str], str]:
    """(item, None, fmt) or (None, reason, fmt); ``fmt`` is fixed by the first object of a file."""
    item, reason, fmt, _ = parse_line(line, fmt)
    return item, reason, fmt


def parse_line(line: bytes, fmt: str) -> Tuple[Optional[WireItem], Optional[str], str, bool]:
    """:func:`parse_item`, and whether the line was a wrapper with one name (``{"Item": {...}}``)
    whose value is the item: only then is the text after ``{"Item":`` the item's own JSON."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        if fmt in ("auto", "plain"):
            try:  # orjson refuses what json accepts only in edge cases (e.g. huge ints): retry
                obj = _loads_plain(line)
            except ValueError as e2:
                return None, _json_reason(line, e2), fmt, False
        else:
            return None, _json_reason(line, e), fmt, False
    if fmt == "ddb" and type(obj) is dict:
        # The usual line, proven valid and free of repeated names in one walk (no second
        # validation, no second parse); anything else takes the full path below for its reason.
        inner = obj.get("Item")
        item = inner if len(obj) == 1 and type(inner) is dict else obj
        names = valid_item_names(item)
        if names is not None:
            names += item is inner
            # Every name is followed by a colon: as many colons as names kept means none was
            # repeated (a one-byte count, three times faster than the two-byte one on a long line).
            if line.count(b":") == names or key_ends(line) == names:
                return item, None, fmt, item is inner
    dup = duplicate_name(line, obj)
    if dup:
        return None, dup, fmt, False
    if fmt == "auto":
        fmt = detect(obj)
    if fmt == "incremental":
        return None, "an incremental export record outside an incremental import", fmt, False
    if fmt == "deadletter":
        return _from_dead_letter(obj) + (fmt, False)
    if fmt == "plain":
        if not isinstance(obj, dict):
            return None, f"expected a JSON object, got {type(obj).__name__}", fmt, False
        try:
            return from_python(_loads_plain(line)), None, fmt, False
        except ValueError as e:
            return None, f"invalid JSON: {e}", fmt, False
        except InvalidItemError as e:
            return None, e.message, fmt, False
        except RecursionError:
            return None, "nested deeper than DynamoDB's 32 levels", fmt, False
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}", fmt, False
    item = _unwrap(obj)
    p = item_problem(item)
    return (None, p, fmt, False) if p else (item, None, fmt, len(obj) == 1 and item is obj.get("Item"))


def _unwrap(obj: Dict[str, Any]) -> Any:
    """``{"Item": {...}}`` -> the item; a bare item is returned as is.

    A bare item with one attribute named ``Item`` looks like the wrapper: it is read as the
    wrapper unless only the bare reading is a valid item.
    """
    inner = obj.get("Item")
    if not isinstance(inner, dict):
        return obj
    if len(obj) == 1 and item_problem(inner) is not None and item_problem(obj) is None:
        return obj
    if len(obj) > 1 and item_problem(obj) is None:
        return obj  # the wrapper has no other keys: this is a bare item with an attribute "Item"
    return inner


def _from_dead_letter(obj: Dict[str, Any]) -> Tuple[Optional[WireItem], Optional[str]]:
    item = obj.get("item")
    if item is None:
        raw = obj.get("raw")
        if not isinstance(raw, str) or not raw:
            return None, "dead-letter line has neither an item nor the raw line"
        reason = obj.get("reason")
        if isinstance(reason, str) and reason.startswith("row has ") and "values but the header names" in reason:
            # A CSV row kept as CSV: without its header it is no item (and not JSON).
            return None, ("a CSV row with more values than its header has columns is not replayed alone: fix it in "
                          f"its file ({obj.get('origin', '?')}) and import that file again")
        if obj.get("raw_truncated"):
            return None, (f"the dead letter kept only the first {len(raw):,} characters of its line "
                          f"({obj.get('raw_length', '?')} in all): replay it from its source ({obj.get('origin', '?')})")
        try:
            data = raw_bytes(obj) or b""
        except ValueError:
            return None, "dead-letter line's raw_b64 is not base64"
        fmt = pipeline_format(reason)
        if fmt is not None:  # a Data Pipeline line kept as it was: read as one again, never as plain JSON
            got, why, _ = parse_pipeline_line(data, fmt)
            return got, why
        if data.lstrip().startswith(b"$ion_1_0"):  # an Ion file's line (files.py marks every one)
            from ..formats import ion

            return ion.parse_item_line(data)
        got, reason, _ = parse_item(data, "auto")
        return got, reason
    p = item_problem(item)
    return (None, p) if p else (item, None)


# --------------------------------------------------------------------------- AWS Data Pipeline lines

# The reason of a dead letter that keeps a Data Pipeline line as it was (it did not convert to an
# item, which would be kept as DynamoDB JSON instead) ends with its format: its replay reads the
# raw line (edited or not) as that format again. Read as JSON lines, {"s": "x"} is a map.
PIPELINE_TAGS = {"data-pipeline": " (data-pipeline)", "data-pipeline-hive": " (data-pipeline-hive)"}


def pipeline_format(reason: Any) -> Optional[str]:
    """The Data Pipeline format a dead letter's ``reason`` says its raw line is in, or None."""
    if isinstance(reason, str) and reason.endswith(")"):
        for fmt, tag in PIPELINE_TAGS.items():
            if reason.endswith(tag):
                return fmt
    return None


def parse_pipeline_line(line: bytes, fmt: str) -> Tuple[Optional[WireItem], Optional[str], Optional[Dict[str, Any]]]:
    """A ``data-pipeline`` (JSON) or ``data-pipeline-hive`` line -> (item, None, None), or
    (None, reason, the item as far as it converted or None)."""
    obj: Dict[str, Any] = {}
    try:
        if fmt == "data-pipeline":
            try:
                whole = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                return None, _json_reason(line, e), None
            dup = duplicate_name(line, whole)
            if dup:
                return None, dup, None
            return from_data_pipeline(whole), None, None
        for name, text in hive_fields(line):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                return None, f"invalid JSON in the value of {name!r}: {e}", None
            dup = duplicate_name(text, value)
            if dup:
                return None, f"{name!r}: {dup}", None
            obj[name] = value
        return from_data_pipeline(obj), None, None
    except RecordProblem as e:
        return None, str(e), e.item
    except RecursionError:
        return None, "nested deeper than DynamoDB's 32 levels", None


def data_pipeline_line(line: bytes) -> Tuple[Optional[WireItem], Optional[str]]:
    item, reason, _ = parse_pipeline_line(line, "data-pipeline")
    return item, reason


def hive_line(line: bytes) -> Tuple[Optional[WireItem], Optional[str]]:
    item, reason, _ = parse_pipeline_line(line, "data-pipeline-hive")
    return item, reason


def pipeline_reject(line: bytes, fmt: str, reason: str) -> Tuple[bytes, str]:
    """A rejected Data Pipeline line as its dead letter keeps it, (raw, reason): the DynamoDB-JSON
    item it made when its attributes converted (fix the value there and replay: it is read as
    DynamoDB JSON); else the line as it was, its reason tagged with its format (see
    ``PIPELINE_TAGS``), so that its replay reads it, fixed or not, as that format again."""
    _, _, partial = parse_pipeline_line(line, fmt)
    if partial is not None:
        return orjson.dumps(partial), reason
    return line, reason + PIPELINE_TAGS[fmt]


def _innermost(rec: Any) -> Any:
    """A dead-letter record, or the one it keeps whole as its raw line (a replay that refused a
    record keeps it so, and the right replay reads it again): the record that says what it holds."""
    for _ in range(8):
        raw = rec.get("raw") if isinstance(rec, dict) else None
        if not (isinstance(rec, dict) and rec.get("stage") == "read" and isinstance(raw, str)
                and raw.lstrip().startswith("{")):
            return rec
        try:
            inner = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return rec
        if not (isinstance(inner, dict) and "reason" in inner and ("item" in inner or "raw" in inner)):
            return rec
        rec = inner
    return rec


def _stream_record(rec: Dict[str, Any]) -> bool:
    """Does a dead letter hold a DynamoDB Streams record (``eventName`` and ``dynamodb``)?"""
    raw = rec.get("raw")
    held: Any = rec.get("item")
    if held is None and isinstance(raw, str) and '"eventName"' in raw:
        try:
            held = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
    return isinstance(held, dict) and "eventName" in held and isinstance(held.get("dynamodb"), dict)


def _export_record(rec: Dict[str, Any]) -> bool:
    """Does a dead letter hold an incremental export's record (``Metadata``, ``Keys`` and an image),
    as JSON or as Ion?"""
    raw = rec.get("raw")
    # (Only a record kept as its raw line: a dead letter holding an item is an item, whatever its
    # attributes are called.)
    if rec.get("item") is not None or not (isinstance(raw, str) and "WriteTimestampMicros" in raw):
        return False
    text = raw.lstrip()
    try:
        if text.startswith("{"):
            held: Any = orjson.loads(text)
        else:
            from ..formats import ion

            held = ion.loads_line(text.encode())
    except Exception:  # noqa: BLE001 - not a record of either: none to refuse
        return False
    meta = held.get("Metadata") if isinstance(held, Mapping) else None
    return (isinstance(meta, Mapping) and "WriteTimestampMicros" in meta and isinstance(held.get("Keys"), Mapping)
            and ("NewImage" in held or "OldImage" in held))


def replay_refusal(record: Any, transformed: bool) -> Optional[str]:
    """Why this dead letter must not be written by a replay with (``transformed``) or without a
    transform, or None. A record of a failed transform holds the *source* item (so does an
    unreadable line of a job with a transform); one refused later holds what the transform
    returned. Written the other way, a replay would put a source-model item into the target, or
    transform an item twice. A repeated key's second item would replace the first one written.
    ``record``: the dead-letter line, decoded."""
    rec = _innermost(record)
    if not isinstance(rec, dict):
        return None
    stage, tf = rec.get("stage"), rec.get("transform")
    if stage == "update":
        return ("not replayed: a dead letter of `ddbmigrate update` holds the item as it was read before the "
                "update; put back, it would undo every write made to it since. Fix the cause and run the update "
                "again (it reads each item afresh)")
    if _stream_record(rec):
        return ("not replayed: a dead letter of `ddbmigrate replicate` holds a stream record, which import does not "
                "apply; fix the cause, then `ddbmigrate verify SOURCE TARGET --repair` (with the replication's "
                "--transform) writes what the target lacks")
    if _export_record(rec):
        return ("not replayed: a dead letter of an incremental export's import holds an export record; applied "
                "alone it would put its image over the one the import wrote for its key, which may be newer. Fix "
                "the export's file and import the export again (the newest record of each key is applied), or "
                "`ddbmigrate verify SOURCE TARGET --repair` from the source table")
    if rec.get("error_code") == "DuplicateKey":
        return ("not replayed: the transform returned two items with this key for one source item and the first "
                "was written; this one would replace it (fix the transform, then replay the source item)")
    if tf and not transformed and (stage == "transform" or stage == "read"):
        return (f"not replayed: this dead letter holds a source record of a job with --transform {tf}, not what "
                "it writes; replay it with --transform (the fixed function): this file's other lines replay "
                "without it")
    if transformed and stage in ("validate", "write"):
        # (Whatever the job that wrote it: a replay's own records no longer name the first job's
        # transform.)
        return ("not replayed: this dead letter holds an item as it was to be written (what a transform "
                "returned, if the job had one); with --transform it would be transformed again: replay it "
                "without --transform")
    return None


def convert_decoded(obj: Any, fmt: str) -> Tuple[Optional[WireItem], Optional[str], str]:
    """An already decoded JSON value (numbers as Decimal/int) -> wire item or reason."""
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}", fmt
    if fmt == "auto":
        fmt = detect(obj)
        fmt = fmt if fmt in ("ddb", "plain") else "plain"
    if fmt == "ddb":
        item = _unwrap(obj)
        p = item_problem(item)
        return (None, p, fmt) if p else (item, None, fmt)
    try:
        return from_python(obj), None, fmt
    except InvalidItemError as e:
        return None, e.message, fmt


def short_json(obj: Any) -> str:
    """A decoded value as JSON text for a reject line (the dead letter bounds its length)."""
    try:
        return json.dumps(obj, default=str)
    except (TypeError, ValueError):
        return repr(obj)


def corrupt_reason(e: BaseException) -> str:
    """One line for a CORRUPT_ERRORS exception, naming its type once."""
    s = str(e) or type(e).__name__
    return f"{type(e).__name__}: {s}" if type(e).__name__ not in s else s


__all__ = ["BLOCK", "CORRUPT_ERRORS", "Line", "LineStream", "MAX_LINE", "PIPELINE_TAGS", "TooLong", "convert_decoded",
           "corrupt_reason", "data_pipeline_line", "detect", "duplicate_name", "duplicate_reason", "duplicate_recorder",
           "hive_line", "looks_wire", "parse_item", "parse_line", "parse_pipeline_line", "pipeline_format",
           "pipeline_reject", "replay_refusal", "short_json", "unicode_problem"]
