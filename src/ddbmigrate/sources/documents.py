"""Text of a stored file read in other shapes than non-blank lines (those are
:meth:`ddbmigrate.sources.lines.LineStream.numbered`): every line as it is (CSV, whose quoted
values may hold blank lines), and a stream of JSON documents read value by value (Scan output).

Invariant: memory is bounded by ``MAX_LINE`` whatever the file: a line or a JSON value longer
than that is refused without being held whole.
"""

from __future__ import annotations

import codecs
import json
from decimal import Decimal
from typing import Any, Iterator

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


class JsonText:
    """A JSON text read block by block: whitespace, single characters and whole values (numbers
    as Decimal), with the line number; a value longer than MAX_LINE is refused (memory bound)."""

    def __init__(self, ls: LineStream) -> None:
        self._blocks = ls.blocks()
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Names repeated in an object of the last value decoded (JSON would keep one silently).
        self.repeated, pairs = duplicate_recorder()
        self._dec = json.JSONDecoder(parse_float=Decimal, object_pairs_hook=pairs)
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False

    def _fill(self) -> bool:
        if self.eof:
            return False
        if self.pos > BLOCK:
            self.buf, self.pos = self.buf[self.pos:], 0
        b = next(self._blocks, None)
        if b is None:
            self.eof = True
            self.buf += self._text.decode(b"", final=True)
        else:
            self.buf += self._text.decode(b)
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
        self.repeated.clear()
        while True:
            try:
                obj, end = self._dec.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:
                    break
            except RecursionError:
                raise FileProblem(f"{what} is nested too deeply", self.line) from None
            except json.JSONDecodeError as e:
                if self.eof:
                    raise FileProblem(f"invalid JSON in {what}: {e.msg}",
                                      self.line + self.buf.count("\n", self.pos, e.pos)) from None
                if len(self.buf) - self.pos > MAX_LINE:
                    raise FileProblem(f"{what} is over {MAX_LINE} bytes", self.line) from None
            self._fill()
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end
        return obj


__all__ = ["JsonText", "every_line"]
