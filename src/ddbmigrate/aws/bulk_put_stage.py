"""A per-item condition for bulk put items (``--condition``): checked, staged into the records, counted.

StartBulkPutItems has no condition parameter: AWS's input-format page ("Amazon S3 input formats
for bulk put items", sections "Per-item condition expressions" and "Condition failure
reporting") puts the condition in each input record. So with ``--condition`` the lane writes a
copy of the input under a staging prefix, every record with the condition added, and starts the
bulk put on that copy. The record shape used (PutItem's own field names next to the export's
``Item``; AWS's page could not be read past its table of contents when this was built, see
docs/files.md)::

    DYNAMODB_JSON  {"Item":{...},"ConditionExpression":"...","ExpressionAttributeNames":{"#n":"a"},
                    "ExpressionAttributeValues":{":v":{"S":"x"}}}
    ION            $ion_1_0 {Item:{...},ConditionExpression:"...",ExpressionAttributeNames:{'#n':"a"},
                    ExpressionAttributeValues:{':v':"x"}}

Invariants: the expression is checked (balanced parentheses, every ``#name``/``:value`` it uses
defined, none defined and unused: DynamoDB refuses those) before anything is written to S3. The
staged objects hold exactly the input's records, in order, each with the condition; a line that
is not a record stops the staging with one line naming the object and line (exit 2), and what
was staged so far is deleted. Memory is bounded by one line: objects are read as streams and
written through a local temporary file with boto3's managed (multipart) upload.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import orjson

from ..errors import UsageError

_NAME = re.compile(r"#[A-Za-z0-9_]+")
_VALUE = re.compile(r":[A-Za-z0-9_]+")
MAX_LINE = 64 * 1024 * 1024  # a record is at most a 400 KB item: far longer lines are not records
COMPRESSIONS = ("GZIP", "ZSTD", "NONE")


@dataclass(frozen=True)
class Condition:
    """``--condition`` with its ``--condition-names`` and ``--condition-values`` (DynamoDB JSON)."""

    expression: str
    names: Dict[str, str] = field(default_factory=dict)
    values: Dict[str, Any] = field(default_factory=dict)

    def fields(self) -> Dict[str, Any]:
        """The record fields, in the order they are written."""
        out: Dict[str, Any] = {"ConditionExpression": self.expression}
        if self.names:
            out["ExpressionAttributeNames"] = self.names
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out

    def identity(self) -> List[Any]:
        return [self.expression, sorted(self.names.items()), orjson.dumps(self.values, option=orjson.OPT_SORT_KEYS)
                .decode()]


def _json_map(text: Optional[str], option: str) -> Dict[str, Any]:
    if text is None or text.strip() == "":
        return {}
    raw = text
    if text.startswith("@"):  # --condition-values @file.json, like the AWS CLI's file://
        try:
            with open(text[1:], encoding="utf-8") as fh:
                raw = fh.read()
        except OSError as e:
            raise UsageError(f"{option} {text}: cannot read it: {e.strerror}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise UsageError(f"{option}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{option}: expected a JSON object, got {type(data).__name__}")
    return data


def parse_condition(expression: Optional[str], names: Optional[str] = None,
                    values: Optional[str] = None) -> Optional[Condition]:
    """The checked condition, or None without ``--condition``. Raises UsageError (exit 2) with one line."""
    if expression is None:
        if names or values:
            raise UsageError("--condition-names/--condition-values need --condition EXPR")
        return None
    expr = expression.strip()
    if not expr:
        raise UsageError("--condition: the expression is empty")
    depth = 0
    for i, ch in enumerate(expr):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise UsageError(f"--condition {expr!r}: ')' at character {i + 1} closes nothing")
    if depth:
        raise UsageError(f"--condition {expr!r}: {depth} '(' not closed")
    name_map = _json_map(names, "--condition-names")
    value_map = _json_map(values, "--condition-values")
    for k, v in name_map.items():
        if not _NAME.fullmatch(k):
            raise UsageError(f"--condition-names: {k!r} is not a placeholder like #name")
        if not isinstance(v, str) or not v:
            raise UsageError(f"--condition-names: {k} must name an attribute (a non-empty string)")
    for k in value_map:
        if not _VALUE.fullmatch(k):
            raise UsageError(f"--condition-values: {k!r} is not a placeholder like :value")
    if value_map:
        from ..core.items import item_problem

        problem = item_problem(value_map)
        if problem:
            raise UsageError(f"--condition-values: not DynamoDB JSON: {problem}")
    used_names, used_values = set(_NAME.findall(expr)), set(_VALUE.findall(expr))
    for what, used, defined, option in (("attribute name", used_names, name_map, "--condition-names"),
                                        ("value", used_values, value_map, "--condition-values")):
        missing = sorted(used - set(defined))
        if missing:
            raise UsageError(f"--condition {expr!r}: {what} {', '.join(missing)} not defined: give it in {option}")
        unused = sorted(set(defined) - used)
        if unused:
            raise UsageError(f"{option}: {', '.join(unused)} not used in --condition {expr!r} "
                             "(DynamoDB refuses unused placeholders)")
    return Condition(expr, dict(name_map), dict(value_map))


# --------------------------------------------------------------------------- one record


def _ion_text(cond: Condition) -> str:
    from ..formats.ion import _name, _write_struct

    out = [",ConditionExpression:", orjson.dumps(cond.expression).decode()]
    if cond.names:
        out.append(",ExpressionAttributeNames:{")
        out.append(",".join(f"{_name(k)}:{orjson.dumps(v).decode()}" for k, v in cond.names.items()))
        out.append("}")
    if cond.values:
        out.append(",ExpressionAttributeValues:")
        _write_struct(cond.values, out)
    return "".join(out)


class Rewriter:
    """One input record -> the same record with the condition (or a one-line reason it is not one)."""

    def __init__(self, cond: Condition, input_format: str) -> None:
        self.input_format = input_format
        self._json_tail = b"," + orjson.dumps(cond.fields())[1:]  # ',"ConditionExpression":...}' after the Item
        self._ion_tail = _ion_text(cond) + "}\n"

    def __call__(self, line: bytes) -> bytes:
        if self.input_format == "ION":
            from ..formats.ion import _write_struct, loads_line, to_wire_item

            v = loads_line(line)
            if not isinstance(v, Mapping) or not isinstance(v.get("Item"), Mapping):
                raise ValueError("expected an Ion struct {Item:{...}} (an export line)")
            if "ConditionExpression" in v:
                raise ValueError("the record already has a ConditionExpression")
            item = to_wire_item(v["Item"])
            out = ["$ion_1_0 {Item:"]
            _write_struct(dict(item), out)
            return ("".join(out) + self._ion_tail).encode("utf-8")
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"not JSON ({e})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("Item"), dict):
            raise ValueError('expected a DynamoDB JSON record {"Item": {...}} (an export line)')
        if "ConditionExpression" in rec:
            raise ValueError("the record already has a ConditionExpression")
        if set(rec) != {"Item"}:
            raise ValueError(f"unexpected fields next to Item: {', '.join(sorted(set(rec) - {'Item'}))}")
        return orjson.dumps({"Item": rec["Item"]})[:-1] + self._json_tail + b"\n"


# --------------------------------------------------------------------------- streams


def _decompressed(body: Any) -> Any:
    """A ``read(n)`` stream of ``body``'s content, whatever its codec (told by magic bytes)."""
    from ..formats.compression import HEAD, ZstdReader, codec_of

    head: bytes = body.read(HEAD)

    class _Prefixed:
        def __init__(self) -> None:
            self.head = head

        def read(self, n: int = -1) -> bytes:
            if self.head:
                if n is None or n < 0:
                    out, self.head = self.head, b""
                    everything: bytes = body.read()
                    return out + everything
                out, self.head = self.head[:n], self.head[n:]
                rest: bytes = body.read(n - len(out)) if n > len(out) else b""
                return out + rest
            out2: bytes = body.read(n)
            return out2

    raw: Any = _Prefixed()
    codec = codec_of(head)
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "zstd":
        return ZstdReader(raw)
    return raw


def iter_lines(stream: Any, block: int = 1 << 20) -> Iterator[bytes]:
    """The lines of a ``read(n)`` stream, without their newlines; memory: one line and one block."""
    buf = b""
    while True:
        chunk = stream.read(block)
        if not chunk:
            break
        buf += chunk
        parts = buf.split(b"\n")
        buf = parts.pop()
        if len(buf) > MAX_LINE:
            raise ValueError(f"a line longer than {MAX_LINE // (1024 * 1024)} MB: not a record")
        yield from parts
    if buf:
        yield buf


def _compressed_writer(path: str, compression: str) -> Any:
    fh = open(path, "wb")
    if compression == "GZIP":
        return gzip.GzipFile(fileobj=fh, mode="wb", mtime=0)
    if compression == "ZSTD":
        import zstandard

        return zstandard.ZstdCompressor().stream_writer(fh, closefd=True)
    return fh


# --------------------------------------------------------------------------- staging


def _list(client: Any, bucket: str, prefix: str) -> Iterator[Dict[str, Any]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents") or []


def stage_input(client: Any, src_bucket: str, src_prefix: str, dst_bucket: str, dst_prefix: str,
                cond: Condition, *, input_format: str, compression: str,
                on_object: Optional[Callable[[str, int], None]] = None) -> Dict[str, Any]:
    """Copy every object under ``s3://src_bucket/src_prefix`` to ``dst_prefix`` (same relative
    names), each record with the condition, in ``compression``. Returns what was staged."""
    if compression not in COMPRESSIONS:
        raise UsageError(f"compression must be GZIP, ZSTD or NONE, not {compression!r}")
    rewrite = Rewriter(cond, input_format)
    staged: List[str] = []
    items = 0
    base = src_prefix if src_prefix.endswith("/") or not src_prefix else src_prefix.rsplit("/", 1)[0] + "/"
    try:
        for obj in _list(client, src_bucket, src_prefix):
            key = str(obj["Key"])
            if key.endswith("/") or int(obj.get("Size") or 0) == 0:
                continue  # folder markers and empty objects hold no records
            rel = key[len(base):] if key.startswith(base) else key.rsplit("/", 1)[-1]
            dst_key = f"{dst_prefix}{rel}"
            fd, tmp = tempfile.mkstemp(prefix="ddbmigrate-stage-")
            os.close(fd)
            n = 0
            try:
                body = client.get_object(Bucket=src_bucket, Key=key)["Body"]
                out = _compressed_writer(tmp, compression)
                try:
                    for lineno, line in enumerate(iter_lines(_decompressed(body)), 1):
                        if not line.strip():
                            continue
                        try:
                            out.write(rewrite(line))
                        except ValueError as e:
                            raise UsageError(f"s3://{src_bucket}/{key}:{lineno}: {e}; nothing was loaded",
                                             file=f"s3://{src_bucket}/{key}") from None
                        n += 1
                finally:
                    out.close()
                    body.close()
                client.upload_file(Filename=tmp, Bucket=dst_bucket, Key=dst_key)
                staged.append(dst_key)
            except (EOFError, OSError) as e:
                raise UsageError(f"s3://{src_bucket}/{key}: cannot read it ({e}); nothing was loaded",
                                 file=f"s3://{src_bucket}/{key}") from None
            finally:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
            items += n
            if on_object is not None:
                on_object(key, n)
    except BaseException:
        delete_staged(client, dst_bucket, staged)
        raise
    if not staged:
        raise UsageError(f"s3://{src_bucket}/{src_prefix}: no input objects to stage; nothing was loaded")
    return {"bucket": dst_bucket, "prefix": dst_prefix, "objects": staged, "items": items}


def delete_staged(client: Any, bucket: str, keys: List[str]) -> int:
    """Delete the staged objects (1,000 a request); returns how many were asked to go."""
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                     "Quiet": True})
    return len(keys)


# --------------------------------------------------------------------------- condition failures


def count_condition_failures(client: Any, bucket: str, prefix: str,
                             since: Optional[_dt.datetime]) -> Tuple[Optional[int], List[str]]:
    """Records in DynamoDB's CONDITION_CHECK_FAILURE report under ``s3://bucket/prefix``.

    DescribeBulkOperation has no condition-failure count (botocore 1.44: FailedItemCount excludes
    them, ProcessedItemCount includes them), so they are counted from the report: objects under
    the output prefix written since the operation started whose key names the output type
    (``condition``, any case), manifests excluded, one record per non-blank line.
    Returns (count or None when the report cannot be read, the objects counted).
    """
    p = prefix.strip("/")
    counted: List[str] = []
    total = 0
    try:
        for obj in _list(client, bucket, f"{p}/" if p else ""):
            key = str(obj["Key"])
            low = key.lower()
            if "condition" not in low or "manifest" in low or key.endswith("/"):
                continue
            modified = obj.get("LastModified")
            if since is not None and isinstance(modified, _dt.datetime) and modified < since:
                continue  # an earlier operation's report under the same prefix
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                total += sum(1 for line in iter_lines(_decompressed(body)) if line.strip())
            finally:
                body.close()
            counted.append(f"s3://{bucket}/{key}")
    except Exception:
        return None, counted
    return total, counted


__all__ = ["Condition", "Rewriter", "count_condition_failures", "delete_staged", "iter_lines", "parse_condition",
           "stage_input"]
