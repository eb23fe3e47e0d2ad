"""Read items from files: AWS exports (full and incremental), DynamoDB-JSON lines, plain JSON.

What SOURCE may be (see :func:`discover`): an export folder (``.../AWSDynamoDB/<ExportId>/``,
or a folder holding exactly one ``AWSDynamoDB/<ExportId>``), one file, a folder of files, or a
glob. Files may be gzip (detected by their magic bytes) or plain. Per file, the format is
detected from its first object: ``{"Item": ...}`` or bare DynamoDB-JSON items, incremental export
records (``Keys``/``NewImage``/``Metadata``), our own dead-letter lines (``{"item": ...}``), a
JSON array, or JSON lines of plain values (parsed with ``Decimal``, so numbers keep every digit).

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

Incremental exports (:class:`IncrementalSource`) are applied in ``WriteTimestampMicros`` order
per key, which parallel batched writes cannot guarantee by themselves. So before anything is
written, every record is spilled to a local partition file chosen by a hash of its key; each
partition (one pipeline unit) then keeps only the newest record of each key (ties broken by
file order, then line) and writes that one: a put of ``NewImage``, or a delete when there is no
``NewImage``. Older versions are counted as ``collapsed``. Memory is bounded by one partition's
distinct keys; the partition count grows with the input size.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import concurrent.futures
import hashlib
import json
import os
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple, Union

import orjson

from ..errors import FatalError, InvalidItemError, RetriableError, UsageError
from ..core.items import ALL_TYPES, WireItem, canonical_item, from_python, item_problem
from ..engine.pipeline import DELETE, PUT, Chunk
from ..storage.stores import GLOB_CHARS, Storage, is_s3

MAX_LINE = 8 * 1024 * 1024
BLOCK = 1 << 20
CHUNK_LINES = 1000
CHUNK_BYTES = 4 * 1024 * 1024
DATA_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".gz")
INPUT_FORMATS = ("auto", "dynamodb-json", "json")

_CORRUPT = (OSError, EOFError, zlib.error)


class FileProblem(Exception):
    """A whole file is unusable (corrupt gzip, checksum or count mismatch)."""

    def __init__(self, reason: str, line: Optional[int] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


@dataclass
class FileEntry:
    path: str
    unit: str
    size: int = 0
    item_count: Optional[int] = None  # from manifest-files.json
    md5: Optional[str] = None  # base64, from manifest-files.json


@dataclass
class Plan:
    kind: str  # "files" | "export" | "incremental"
    root: str
    files: List[FileEntry]
    summary: Dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- discovery


def discover(source: str, storage: Storage) -> Plan:
    """Find what SOURCE names; errors are one clear line."""
    if any(c in source for c in GLOB_CHARS):
        found = storage.glob(source)
        base = _glob_base(source)
        files = [FileEntry(p, storage.relative(base, p), s) for p, s in found if _is_data_name(p)]
        if not files:
            raise UsageError(f"no data files match {source}")
        return Plan("files", base, files)
    if storage.is_dir(source):
        return _discover_folder(source, storage)
    if not storage.exists(source):
        raise UsageError(f"{source} does not exist", file=source)
    return Plan("files", source.rsplit("/", 1)[0], [FileEntry(source, source.rsplit("/", 1)[-1], storage.size(source))])


def _glob_base(pattern: str) -> str:
    cut = min(pattern.find(c) for c in GLOB_CHARS if c in pattern)
    return pattern[:cut].rsplit("/", 1)[0]


def _is_data_name(p: str) -> bool:
    name = p.rsplit("/", 1)[-1]
    return not name.startswith(".") and name.endswith(DATA_SUFFIXES) and not name.startswith("manifest-")


def _discover_folder(folder: str, storage: Storage) -> Plan:
    listing = storage.list_files(folder)
    names = {storage.relative(folder, p): s for p, s in listing}
    if "manifest-summary.json" in names or "_started" in names:
        return _export_plan(folder, storage, names)
    exports = sorted({n.split("/")[1] for n in names if n.startswith("AWSDynamoDB/") and n.count("/") >= 2})
    if exports:
        if len(exports) > 1:
            raise UsageError(f"{folder} holds {len(exports)} exports ({', '.join(exports[:5])}); "
                             "name one: SOURCE/AWSDynamoDB/<ExportId>")
        sub = storage.join(folder, "AWSDynamoDB", exports[0])
        prefix = f"AWSDynamoDB/{exports[0]}/"
        return _export_plan(sub, storage, {n[len(prefix):]: s for n, s in names.items() if n.startswith(prefix)})
    files = [FileEntry(p, storage.relative(folder, p), s) for p, s in listing
             if _is_data_name(p) and "/." not in storage.relative(folder, "/" + p)]
    if not files:
        raise UsageError(f"no data files (*.json, *.json.gz, *.jsonl) in {folder}")
    return Plan("files", folder, files)


def _verify_checksum(storage: Storage, root: str, names: Dict[str, int], name: str, data: bytes) -> None:
    stem = name[: -len(".json")]
    for ext in (".md5", ".checksum"):
        if stem + ext in names:
            expected = storage.read_bytes(storage.join(root, stem + ext)).decode("ascii", "replace").strip()
            if not _checksum_matches(expected, data):
                raise FatalError(f"{name} does not match its {stem + ext} (manifest corrupt or changed)",
                                 file=storage.join(root, name), code="ChecksumMismatch")
            return


def _checksum_matches(expected: str, data: bytes) -> bool:
    """AWS writes the base64 MD5; accept hex too, and SHA-256 in either encoding."""
    for h in (hashlib.md5(data).digest(), hashlib.sha256(data).digest()):
        if expected in (base64.b64encode(h).decode(), h.hex()):
            return True
    return False


def _export_plan(root: str, storage: Storage, names: Dict[str, int]) -> Plan:
    if "manifest-summary.json" not in names:
        raise FatalError(f"{root} is an unfinished export: _started is there but manifest-summary.json is "
                         "not (the export was interrupted; resume it, or import its data/ folder knowingly)",
                         file=root, code="TornExport")
    raw_summary = storage.read_bytes(storage.join(root, "manifest-summary.json"))
    _verify_checksum(storage, root, names, "manifest-summary.json", raw_summary)
    try:
        summary = orjson.loads(raw_summary)
    except orjson.JSONDecodeError as e:
        raise FatalError(f"manifest-summary.json is not JSON: {e}", file=root) from None
    if "manifest-files.json" not in names:
        raise FatalError("manifest-files.json is missing", file=root, code="TornExport")
    raw_files = storage.read_bytes(storage.join(root, "manifest-files.json"))
    _verify_checksum(storage, root, names, "manifest-files.json", raw_files)
    fmt = summary.get("outputFormat", "DYNAMODB_JSON")
    if fmt not in ("DYNAMODB_JSON", "JSON"):
        raise UsageError(f"{root}: outputFormat {fmt} is not supported (export as DYNAMODB_JSON)")
    files: List[FileEntry] = []
    for i, line in enumerate(raw_files.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            key = str(entry["dataFileS3Key"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise FatalError("manifest-files.json line is not a valid entry", file=storage.join(root, "manifest-files.json"),
                             line=i) from None
        idx = key.find("/data/")
        rel = key[idx + 1:] if idx >= 0 else "data/" + key.rsplit("/", 1)[-1]
        if rel not in names:
            raise FatalError(f"data file {rel} listed in manifest-files.json is missing", file=root,
                             code="MissingDataFile")
        files.append(FileEntry(storage.join(root, rel), rel, names[rel],
                               int(entry["itemCount"]) if entry.get("itemCount") is not None else None,
                               entry.get("md5Checksum")))
    kind = "incremental" if summary.get("exportType") == "INCREMENTAL_EXPORT" else "export"
    return Plan(kind, root, files, summary)


# --------------------------------------------------------------------------- streaming lines


class _Raw:
    """The stored bytes as read: hashed and counted on the way (for md5Checksum)."""

    def __init__(self, fh: BinaryIO, head: bytes = b"") -> None:
        self.fh = fh
        self.md5 = hashlib.md5()
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
    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


Line = Union[bytes, TooLong]


class LineStream:
    """Lines of one stored file, decompressed if it is gzip; md5 of the stored bytes at the end."""

    def __init__(self, storage: Storage, path: str) -> None:
        fh = storage.open_read(path)
        self._fh = fh
        head = fh.read(2)
        self.raw = _Raw(fh)
        self.raw.md5.update(head)
        self.raw._head = head
        self.gzip = head == b"\x1f\x8b"
        self._reader: Any = _Gunzip(self.raw) if self.gzip else self.raw
        self._pending: List[bytes] = []

    def first_char(self) -> bytes:
        """The first non-blank byte of the content (read ahead, not consumed)."""
        while True:
            b: bytes = self._reader.read(BLOCK)
            if not b:
                return b""
            if not self._pending and b.startswith(codecs.BOM_UTF8):
                b = b[len(codecs.BOM_UTF8):]
            self._pending.append(b)
            s = b.lstrip()
            if s:
                return s[:1]

    def blocks(self) -> Iterator[bytes]:
        while self._pending:
            yield self._pending.pop(0)
        while True:
            b = self._reader.read(BLOCK)
            if not b:
                return
            yield b

    def lines(self) -> Iterator[Line]:
        buf = b""
        skipping = 0  # bytes of an over-long line dropped so far
        for block in self.blocks():
            if skipping:
                nl = block.find(b"\n")
                if nl < 0:
                    skipping += len(block)
                    continue
                yield TooLong(skipping + nl)
                skipping = 0
                block = block[nl + 1:]
            buf += block
            parts = buf.split(b"\n")
            buf = parts.pop()
            for part in parts:
                yield TooLong(len(part)) if len(part) > MAX_LINE else part
            if len(buf) > MAX_LINE:
                skipping, buf = len(buf), b""
        if skipping:
            yield TooLong(skipping)
        elif buf:
            yield TooLong(len(buf)) if len(buf) > MAX_LINE else buf

    def md5_b64(self) -> str:
        self.raw.drain()
        return base64.b64encode(self.raw.md5.digest()).decode("ascii")

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
    # Decimal for every non-integer number, Python int (exact) for integers: no digit is lost.
    return json.loads(text, parse_float=Decimal)


def parse_item(line: bytes, fmt: str) -> Tuple[Optional[WireItem], Optional[str], str]:
    """(item, None, fmt) or (None, reason, fmt); ``fmt`` is fixed by the first object of a file."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        if fmt in ("auto", "plain"):
            try:  # orjson refuses what json accepts only in edge cases (e.g. huge ints): retry
                obj = _loads_plain(line)
            except ValueError:
                return None, f"invalid JSON: {e}", fmt
        else:
            return None, f"invalid JSON: {e}", fmt
    if fmt == "auto":
        fmt = detect(obj)
    if fmt == "incremental":
        return None, "an incremental export record outside an incremental import", fmt
    if fmt == "deadletter":
        return _from_dead_letter(obj) + (fmt,)
    if fmt == "plain":
        if not isinstance(obj, dict):
            return None, f"expected a JSON object, got {type(obj).__name__}", fmt
        try:
            return from_python(_loads_plain(line)), None, fmt
        except InvalidItemError as e:
            return None, e.message, fmt
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}", fmt
    item = _unwrap(obj)
    p = item_problem(item)
    return (None, p, fmt) if p else (item, None, fmt)


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
        if not isinstance(raw, str):
            return None, "dead-letter line has neither an item nor the raw line"
        got, reason, _ = parse_item(raw.encode("utf-8"), "auto")
        return got, reason
    p = item_problem(item)
    return (None, p) if p else (item, None)


# --------------------------------------------------------------------------- one file -> chunks


@dataclass
class FileFailure:
    unit: str
    path: str
    reason: str
    line: Optional[int]
    handed_on: int  # items of this file handed to the writers before the failure

    def one_line(self) -> str:
        where = f"{self.unit}:{self.line}" if self.line else self.unit
        return f"{where}: {self.reason} ({self.handed_on} items of this file were loaded)"


class FileSource:
    """One pipeline unit per file; see the module docstring."""

    # Lines of one file are versions in order: the pipeline writes one key's lines in that order.
    ordered = True

    def __init__(self, storage: Storage, plan: Plan, *, validate: bool = True, input_format: str = "auto",
                 chunk_lines: int = CHUNK_LINES) -> None:
        if input_format not in INPUT_FORMATS:
            raise UsageError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}")
        self.storage = storage
        self.plan = plan
        self.validate = validate
        self.fmt = {"auto": "auto", "dynamodb-json": "ddb", "json": "plain"}[input_format]
        if plan.kind == "export" and input_format == "auto":
            self.fmt = "plain" if plan.summary.get("outputFormat") == "JSON" else "ddb"
        self.chunk_lines = chunk_lines
        self.by_unit = {f.unit: f for f in plan.files}
        self.failures: Dict[str, FileFailure] = {}
        self._lock = threading.Lock()

    def units(self) -> List[str]:
        return [f.unit for f in self.plan.files]

    def _fail(self, f: FileEntry, reason: str, line: Optional[int], handed_on: int) -> None:
        with self._lock:
            self.failures[f.unit] = FileFailure(f.unit, f.path, reason, line, handed_on)

    def check_file(self, f: FileEntry) -> None:
        """The validation pass: gzip integrity, md5Checksum, itemCount. Raises FileProblem."""
        ls = LineStream(self.storage, f.path)
        n = 0
        try:
            for line in ls.lines():
                if isinstance(line, TooLong) or line.strip():
                    n += 1
            md5 = ls.md5_b64()
        except _CORRUPT as e:
            raise FileProblem(f"corrupt file: {_corrupt_reason(e)}") from None
        finally:
            ls.close()
        _check_manifest(f, md5, n)

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        f = self.by_unit[unit]
        start = int(position or 0)
        ls = LineStream(self.storage, f.path)
        # Only a gzip stream or a manifest entry gives something to verify; plain files stream.
        if self.validate and (f.md5 or f.item_count is not None or ls.gzip):
            ls.close()
            try:
                self.check_file(f)
            except FileProblem as e:
                self._fail(f, e.reason, e.line, 0)
                return
            ls = LineStream(self.storage, f.path)
        try:
            yield from self._read_stream(f, ls, start, stop)
        finally:
            ls.close()

    def _read_stream(self, f: FileEntry, ls: LineStream, start: int, stop: threading.Event) -> Iterator[Chunk]:
        handed = 0
        lineno = 0
        nonblank = 0
        fmt = self.fmt
        chunk = Chunk(position=start, origins=[])
        nbytes = 0
        try:
            if ls.first_char() == b"[":
                yield from self._read_array(f, ls, start, stop)
                return
            for line in ls.lines():
                lineno += 1
                if isinstance(line, TooLong) or line.strip():
                    nonblank += 1
                if lineno <= start:
                    continue
                origin = f"{f.unit}:{lineno}"
                if isinstance(line, TooLong):
                    chunk.rejects.append(("", f"line is {line.size} bytes, over the {MAX_LINE}-byte line limit "
                                          "(DynamoDB items are at most 400 KB)", origin))
                elif line.strip():
                    item, reason, fmt = parse_item(line.rstrip(b"\r"), fmt)
                    if item is not None:
                        chunk.items.append(item)
                        chunk.origins.append(origin)  # type: ignore[union-attr]
                    else:
                        chunk.rejects.append((line[:100_000].decode("utf-8", "replace"), reason or "invalid", origin))
                    nbytes += len(line)
                chunk.position = lineno
                if len(chunk.items) + len(chunk.rejects) >= self.chunk_lines or nbytes >= CHUNK_BYTES:
                    handed += len(chunk.items)
                    yield chunk
                    chunk, nbytes = Chunk(position=lineno, origins=[]), 0
                    if stop.is_set():
                        return
            md5 = ls.md5_b64()
        except _CORRUPT as e:
            handed += len(chunk.items)
            if chunk.items or chunk.rejects:
                yield chunk
            self._fail(f, f"corrupt file: {_corrupt_reason(e)}", lineno + 1, handed)
            return
        if chunk.items or chunk.rejects:
            handed += len(chunk.items)
            chunk.done = False
            yield chunk
        try:
            _check_manifest(f, md5, nonblank)
        except FileProblem as e:
            self._fail(f, e.reason, None, handed)
            return
        yield Chunk(position=lineno, done=True)

    def _read_array(self, f: FileEntry, ls: LineStream, start: int, stop: threading.Event) -> Iterator[Chunk]:
        """A JSON array, decoded one element at a time (position = elements handed on)."""
        dec = json.JSONDecoder(parse_float=Decimal)
        text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        blocks = ls.blocks()
        buf, pos, line, eof = "", 0, 1, False
        idx, handed, fmt = 0, 0, self.fmt
        chunk = Chunk(position=start, origins=[])

        def fill() -> None:
            nonlocal buf, pos, eof
            if pos > BLOCK:
                buf, pos = buf[pos:], 0
            b = next(blocks, None)
            if b is None:
                eof = True
                buf += text.decode(b"", final=True)
            else:
                buf += text.decode(b)

        def skip_ws() -> None:
            nonlocal pos, line
            while True:
                end = len(buf) - len(buf[pos:].lstrip())
                line += buf.count("\n", pos, end)
                pos = end
                if pos < len(buf) or eof:
                    return
                fill()

        try:
            skip_ws()
            pos += 1  # the "[" that made this an array
            while True:
                skip_ws()
                if pos >= len(buf):
                    raise FileProblem("the JSON array is not closed (truncated file?)", line)
                if buf[pos] == "]":
                    break
                if idx:
                    if buf[pos] != ",":
                        raise FileProblem(f"invalid JSON array: expected ',' or ']' after element {idx}", line)
                    pos += 1
                    skip_ws()
                while True:
                    try:
                        obj, end = dec.raw_decode(buf, pos)
                        if end < len(buf) or eof:
                            break
                    except json.JSONDecodeError as e:
                        if eof:
                            raise FileProblem(f"invalid JSON in array element {idx + 1}: {e.msg}",
                                              line + buf.count("\n", pos, e.pos)) from None
                        if len(buf) - pos > MAX_LINE:
                            raise FileProblem(f"array element {idx + 1} is over {MAX_LINE} bytes", line) from None
                    fill()
                elem_line = line
                line += buf.count("\n", pos, end)
                pos = end
                idx += 1
                if idx <= start:
                    continue
                origin = f"{f.unit}:{elem_line}"
                item, reason, fmt = _convert_decoded(obj, fmt)
                if item is not None:
                    chunk.items.append(item)
                    chunk.origins.append(origin)  # type: ignore[union-attr]
                else:
                    chunk.rejects.append((_short_json(obj), reason or "invalid", origin))
                chunk.position = idx
                if len(chunk.items) + len(chunk.rejects) >= self.chunk_lines:
                    handed += len(chunk.items)
                    yield chunk
                    chunk = Chunk(position=idx, origins=[])
                    if stop.is_set():
                        return
            md5 = ls.md5_b64()
        except (FileProblem, *_CORRUPT) as e:
            handed += len(chunk.items)
            if chunk.items or chunk.rejects:
                yield chunk
            if isinstance(e, FileProblem):
                self._fail(f, e.reason, e.line, handed)
            else:
                self._fail(f, f"corrupt file: {_corrupt_reason(e)}", line, handed)
            return
        if chunk.items or chunk.rejects:
            yield chunk
        try:
            _check_manifest(f, md5, None)
        except FileProblem as e:
            self._fail(f, e.reason, None, handed + len(chunk.items))
            return
        yield Chunk(position=idx, done=True)


def _convert_decoded(obj: Any, fmt: str) -> Tuple[Optional[WireItem], Optional[str], str]:
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


def _short_json(obj: Any) -> str:
    try:
        return json.dumps(obj, default=str)[:100_000]
    except (TypeError, ValueError):
        return repr(obj)[:100_000]


def _corrupt_reason(e: BaseException) -> str:
    s = str(e) or type(e).__name__
    return f"{type(e).__name__}: {s}" if type(e).__name__ not in s else s


def _check_manifest(f: FileEntry, md5: str, count: Optional[int]) -> None:
    if f.md5 and md5 != f.md5:
        raise FileProblem(f"md5Checksum mismatch: manifest says {f.md5}, file has {md5}")
    if count is not None and f.item_count is not None and count != f.item_count:
        raise FileProblem(f"itemCount mismatch: manifest says {f.item_count}, file has {count} lines")


# --------------------------------------------------------------------------- incremental exports


def _record_problem(rec: Any) -> Optional[str]:
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    keys = rec.get("Keys")
    p = item_problem(keys)
    if p:
        return f"Keys: {p}"
    try:
        int(rec["Metadata"]["WriteTimestampMicros"]["N"])
    except (KeyError, TypeError, ValueError):
        return "Metadata.WriteTimestampMicros.N is missing or not an integer"
    for name in ("NewImage", "OldImage"):
        if rec.get(name) is not None:
            p = item_problem(rec[name])
            if p:
                return f"{name}: {p}"
    return None


def key_text(keys: WireItem) -> str:
    """One spelling per primary key (numbers by value), for grouping versions of a key."""
    return orjson.dumps(canonical_item(keys)).decode()


class IncrementalSource:
    """Applies an incremental export: newest record per key wins (see the module docstring).

    :meth:`prepare` stages every record before the pipeline starts; a file that fails its
    checks stops the import there, before anything is written (a missing file could make an
    older version of a key win).
    """

    def __init__(self, storage: Storage, plan: Plan, *, validate: bool = True, partitions: Optional[int] = None,
                 spill_dir: Optional[str] = None, readers: int = 4, chunk_ops: int = CHUNK_LINES) -> None:
        self.storage = storage
        self.plan = plan
        self.validate = validate
        total = sum(f.size for f in plan.files)
        # About 64 MB of uncompressed records per partition (gzip shrinks JSON ~8-10x).
        self.partitions = partitions or max(1, min(1024, -(-total * 10 // (64 * 1024 * 1024))))
        self.spill_dir = spill_dir
        self.readers = readers
        self.chunk_ops = chunk_ops
        self._tmp: Optional[tempfile.TemporaryDirectory[str]] = None
        self._locks = [threading.Lock() for _ in range(self.partitions)]
        self._files: List[Any] = []
        self.failures: Dict[str, FileFailure] = {}
        self.records = 0

    def units(self) -> List[str]:
        return [f"partition-{i:04d}" for i in range(self.partitions)]

    def _path(self, i: int) -> str:
        assert self._tmp is not None
        return os.path.join(self._tmp.name, f"p{i:04d}.jsonl")

    def prepare(self) -> None:
        """Stage every record into its key's partition file. Raises FatalError on a bad file."""
        self._tmp = tempfile.TemporaryDirectory(prefix="ddbmigrate-incremental-", dir=self.spill_dir)
        self._files = [open(self._path(i), "ab") for i in range(self.partitions)]
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(self.readers, len(self.plan.files)))) as ex:
                for fut in [ex.submit(self._stage, n, f) for n, f in enumerate(self.plan.files)]:
                    fut.result()
        finally:
            for fh in self._files:
                fh.close()
        if self.failures:
            first = next(iter(self.failures.values()))
            raise FatalError(f"incremental export not applied, nothing written: {len(self.failures)} file(s) failed "
                             f"their checks; first: {first.one_line()}", file=first.path, line=first.line,
                             code="BadFile")

    def _stage(self, n: int, f: FileEntry) -> None:
        if self.validate:
            try:
                FileSource(self.storage, self.plan).check_file(f)
            except FileProblem as e:
                self.failures[f.unit] = FileFailure(f.unit, f.path, e.reason, e.line, 0)
                return
        ls = LineStream(self.storage, f.path)
        buffers: Dict[int, List[bytes]] = {}
        lineno = nonblank = 0

        def flush(i: int) -> None:
            with self._locks[i]:
                self._files[i].write(b"".join(buffers.pop(i)))

        try:
            for line in ls.lines():
                lineno += 1
                if isinstance(line, bytes) and not line.strip():
                    continue
                nonblank += 1
                origin = f"{f.unit}:{lineno}"
                if isinstance(line, TooLong):
                    rec: Any = ["!", "", f"line is {line.size} bytes, over the {MAX_LINE}-byte line limit", origin]
                    part = lineno % self.partitions
                else:
                    try:
                        obj = orjson.loads(line)
                        reason = _record_problem(obj)
                    except orjson.JSONDecodeError as e:
                        obj, reason = None, f"invalid JSON: {e}"
                    if reason is not None:
                        rec = ["!", line[:100_000].decode("utf-8", "replace"), reason, origin]
                        part = lineno % self.partitions
                    else:
                        kt = key_text(obj["Keys"])
                        ts = int(obj["Metadata"]["WriteTimestampMicros"]["N"])
                        new = obj.get("NewImage")
                        if new is not None:
                            rec = [kt, ts, n, lineno, PUT, new, origin]
                        else:
                            rec = [kt, ts, n, lineno, DELETE, obj.get("OldImage") or obj["Keys"], origin]
                        part = int.from_bytes(hashlib.blake2b(kt.encode(), digest_size=8).digest(), "big") % self.partitions
                buffers.setdefault(part, []).append(orjson.dumps(rec) + b"\n")
                if len(buffers[part]) >= 256:
                    flush(part)
            md5 = ls.md5_b64()
            _check_manifest(f, md5, nonblank)
        except _CORRUPT as e:
            self.failures[f.unit] = FileFailure(f.unit, f.path, f"corrupt file: {_corrupt_reason(e)}", lineno + 1, 0)
            return
        except FileProblem as e:
            self.failures[f.unit] = FileFailure(f.unit, f.path, e.reason, None, 0)
            return
        finally:
            ls.close()
        for i in list(buffers):
            flush(i)
        with self._locks[0]:
            self.records += nonblank

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        i = int(unit.rsplit("-", 1)[1])
        best: Dict[str, List[Any]] = {}
        rejects: List[List[Any]] = []
        superseded = 0
        with open(self._path(i), "rb") as fh:
            for raw in fh:
                rec = orjson.loads(raw)
                if rec[0] == "!":
                    rejects.append(rec)
                    continue
                cur = best.get(rec[0])
                if cur is None:
                    best[rec[0]] = rec
                    continue
                superseded += 1
                # Newest write wins; equal timestamps: the later file, then the later line.
                if (rec[1], rec[2], rec[3]) > (cur[1], cur[2], cur[3]):
                    best[rec[0]] = rec
        rejects.sort(key=lambda r: r[3])
        winners = [best[k] for k in sorted(best)]
        del best
        start = int(position or 0)
        n = len(rejects) + len(winners)
        first = True
        pos = start
        while pos < n or first:
            end = min(n, pos + self.chunk_ops)
            chunk = Chunk(position=end, ops=[], origins=[], done=end >= n)
            if first and start == 0 and superseded:
                chunk.counts = {"read": superseded, "collapsed": superseded}
            first = False
            for j in range(pos, end):
                if j < len(rejects):
                    r = rejects[j]
                    chunk.rejects.append((r[1], r[2], r[3]))
                else:
                    w = winners[j - len(rejects)]
                    chunk.ops.append((w[4], w[5]))  # type: ignore[union-attr]
                    chunk.origins.append(w[6])  # type: ignore[union-attr]
            yield chunk
            pos = end
            if stop.is_set():
                return

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
