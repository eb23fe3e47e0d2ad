"""Text of a stored file read in other shapes than non-blank lines (those are
:meth:`ddbmigrate.sources.lines.LineStream.numbered`): every line as it is (CSV, whose quoted
values may hold blank lines), and a stream of JSON documents read value by value (Scan output).

Invariant: memory is bounded by ``MAX_LINE`` whatever the file: a line or a JSON value longer
than that is refused without being held whole. An over-long JSON value is skipped to its end
(:class:`ValueTooLong`), so a reader of elements can dead-letter it and go on with the next.
"""

from __future__ import annotations

import codecs
import json
import re
from decimal import Decimal
from typing import Any, Iterator, Tuple

from ..storage.export_layout import FileProblem
from .lines import BLOCK, MAX_LINE, Line, LineStream, TooLong, duplicate_recorder


def every_line(ls: LineStream) -> Iterator[Line]:
    """Every line of the file as it is (blank ones included; ``LineStream.numbered`` drops them),
    a line over MAX_LINE as :class:`TooLong` without holding it."""
    carry, skipping = b"", 0
    for block in ls.blocks():
        start = 0
        while True:
            nl = block.find(b"\n", start)
            if nl < 0:
                if skipping:
                    skipping += len(block) - start
                else:
                    carry += block[start:]
                    if len(carry) > MAX_LINE:
                        skipping, carry = len(carry), b""
                break
            if skipping:
                yield TooLong(skipping + nl - start)
                skipping = 0
            else:
                line, carry = carry + block[start:nl], b""
                yield TooLong(len(line)) if len(line) > MAX_LINE else line
            start = nl + 1
    if skipping:
        yield TooLong(skipping)
    elif carry:
        yield carry


class ValueSkipped(FileProblem):
    """A JSON value that cannot be an item, skipped to its end unheld: what follows it can still be
    read (a reader of elements dead-letters it and goes on, with ``raw``, its text if kept)."""

    raw = ""


class ValueNotUtf8(ValueSkipped):
    """A JSON value holding bytes that are not UTF-8: kept exactly (``raw``, with the bytes as
    surrogate escapes, which a dead letter keeps as ``raw_b64``), never loaded with U+FFFD."""

    def __init__(self, what: str, raw: str, line: int) -> None:
        bad = _NOT_UTF8.search(raw)
        byte = f" (byte 0x{ord(bad.group()) - 0xDC00:02x})" if bad and 0xDC80 <= ord(bad.group()) <= 0xDCFF else ""
        super().__init__(f"not valid UTF-8: {what} holds bytes that are not UTF-8{byte}", line)
        self.raw = raw


class ValueTooLong(ValueSkipped):
    """A JSON value over MAX_LINE."""

    def __init__(self, what: str, size: int, line: int) -> None:
        super().__init__(f"{what} is {size:,} characters, over the {MAX_LINE}-byte limit (DynamoDB items are "
                         "at most 400 KB)", line)
        self.size = size


class ValueTooDeep(ValueSkipped):
    """A JSON value nested deeper than the parser's recursion allows (DynamoDB allows 32 levels)."""

    def __init__(self, what: str, line: int) -> None:
        super().__init__(f"{what} is nested too deeply to parse (DynamoDB allows 32 levels)", line)


# What ends a skipped value: inside a string, its quote or an escape; outside, a string or a bracket;
# a number or literal ends at whitespace or the next delimiter.
_IN_STRING = re.compile(r'["\\]')
_STRUCTURE = re.compile(r'["{}\[\]]')
_SCALAR_END = re.compile(r'[\s,\]}]')
# A byte that is not UTF-8, as the reader decodes it (surrogateescape: U+DC80-U+DCFF); a JSON
# escape of a lone surrogate stays six characters of text here, which the item checks refuse.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


class JsonText:
    """A JSON text read block by block: whitespace, single characters and whole values (numbers
    as Decimal), with the line number; a value longer than MAX_LINE is refused (memory bound)."""

    def __init__(self, ls: LineStream) -> None:
        self._blocks = ls.blocks()
        # Bytes that are not UTF-8 kept as surrogate escapes: a value holding them is refused
        # (ValueNotUtf8), where U+FFFD in their place would have been loaded as the data.
        self._text = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        # Names repeated in an object of the last value decoded (JSON would keep one silently).
        self.repeated, pairs = duplicate_recorder()
        self._dec = json.JSONDecoder(parse_float=Decimal, object_pairs_hook=pairs)
        self.buf, self.pos, self.line, self.eof = "", 0, 1 + ls.skipped_newlines, False
        self._suspect = False  # a block held bytes that are not UTF-8 (see _fill)

    def _fill(self) -> bool:
        if self.eof:
            return False
        if self.pos > BLOCK:
            self.buf, self.pos = self.buf[self.pos:], 0
        b = next(self._blocks, None)
        if b is None:
            self.eof = True
            text = self._text.decode(b"", final=True)
        else:
            text = self._text.decode(b)
        # Values are searched for bytes that are not UTF-8 only once a block held some: an ASCII
        # block (most exports) holds none, and the search cost a third of each value's decode.
        if not self._suspect and (b is None or not b.isascii()) and _NOT_UTF8.search(text):
            self._suspect = True
        self.buf += text
        return True

    def skip_ws(self) -> None:
        while True:
            end = len(self.buf) - len(self.buf[self.pos:].lstrip())
            self.line += self.buf.count("\n", self.pos, end)
            self.pos = end
            if self.pos < len(self.buf) or not self._fill():
                return

    def at_end(self) -> bool:
        return self.pos >= len(self.buf) and self.eof

    def peek_text(self) -> str:
        return self.buf[self.pos:self.pos + 40]

    def take(self, ch: str) -> bool:
        if self.pos >= len(self.buf):
            self._fill()
        if self.buf[self.pos:self.pos + 1] == ch:
            self.pos += 1
            return True
        return False

    def value(self, what: str) -> Any:
        return self.value_text(what, False)[0]

    def value_text(self, what: str, text: bool = True) -> Tuple[Any, str]:
        """The next value, and its text as written when ``text``. A value over MAX_LINE raises
        :class:`ValueTooLong` once it has been skipped to its end (never held whole)."""
        self.repeated.clear()
        while True:
            try:
                obj, end = self._dec.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:
                    break
            except RecursionError:
                line = self.line
                self._skip_value(what)
                raise ValueTooDeep(what, line) from None
            except json.JSONDecodeError as e:
                # Only an error at the end of what is read so far (or a string still open) may be
                # a value that goes on in the next block; any other is invalid JSON, said as such
                # (not skipped as "too long", its text lost).
                # A block may also end inside an escape ("\u00e"): the decoder says so a few
                # characters before the end, where the escape begins (a surrogate pair is 12).
                incomplete = e.pos >= len(self.buf) - 12 or e.msg.startswith("Unterminated string")
                if self.eof or not incomplete:
                    raise FileProblem(f"invalid JSON in {what}: {e.msg}",
                                      self.line + self.buf.count("\n", self.pos, e.pos)) from None
                if len(self.buf) - self.pos > MAX_LINE:
                    line = self.line
                    raise ValueTooLong(what, self._skip_value(what), line) from None
            self._fill()
        got = self.buf[self.pos:end] if text else ""
        line = self.line
        self.line += self.buf.count("\n", self.pos, end)
        if self._suspect and _NOT_UTF8.search(self.buf, self.pos, end):
            raw = self.buf[self.pos:end]
            self.pos = end
            raise ValueNotUtf8(what, raw, line)
        self.pos = end
        return obj, got

    def _skip_value(self, what: str) -> int:
        """Skip the value at ``pos`` to its end, holding at most a block of it; its length."""
        size, depth = 0, 0
        first = self.buf[self.pos]
        in_str, scalar = first == '"', first not in '{["'
        i = self.pos + 1 if in_str or not scalar else self.pos
        if not scalar and not in_str:
            depth = 1
        while True:
            done = False
            while i < len(self.buf):
                if scalar:
                    m = _SCALAR_END.search(self.buf, i)
                    i, done = (m.start(), True) if m else (len(self.buf), False)
                    break
                m = (_IN_STRING if in_str else _STRUCTURE).search(self.buf, i)
                if m is None:
                    i = len(self.buf)
                    break
                c = m.group()
                if c == "\\":
                    if m.end() >= len(self.buf):
                        i = m.start()  # the escaped character is in the next block
                        break
                    i = m.end() + 1
                elif c == '"':
                    in_str, i = not in_str, m.end()
                    done = not in_str and depth == 0
                else:
                    depth += 1 if c in "{[" else -1
                    i = m.end()
                    done = depth == 0
                if done:
                    break
            size += i - self.pos
            self.line += self.buf.count("\n", self.pos, i)
            self.buf, self.pos = self.buf[i:], 0
            i = 0
            if done or (scalar and self.eof):
                return size
            if not self._fill():
                raise FileProblem(f"{what} is not closed (truncated file?)", self.line)


__all__ = ["JsonText", "ValueNotUtf8", "ValueSkipped", "ValueTooDeep", "ValueTooLong", "every_line"]
