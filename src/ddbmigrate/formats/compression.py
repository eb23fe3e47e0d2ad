"""Compressed data files: which codec, by magic bytes (never by name), and a streaming ZSTD reader.

ImportTable accepts data uncompressed, GZIP or ZSTD; so does every files source here. The gzip
reader lives with the line reader (:mod:`ddbmigrate.sources.lines`); this module adds ZSTD with
the same contract.

Invariant: like the gzip reader, everything decompressed before a truncation or corruption is
handed out before the error (``EOFError`` / ``zstandard.ZstdError``, both in ``CORRUPT_ERRORS``)
is raised; several concatenated frames read as one stream.
"""

from __future__ import annotations

from typing import Any

import zstandard

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
HEAD = 4  # bytes read to tell the codecs apart

ZstdError = zstandard.ZstdError


def codec_of(head: bytes) -> str:
    """``gzip``, ``zstd`` or ``plain`` from a file's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "plain"


# Compressed bytes fed to the decompressor at once. zstd has no output limit per call, and one
# byte of an RLE block can stand for 32 KB: 1 KB in is at most 32 MB out (a "zstd bomb" stays
# bounded), and costs nothing measurable on ordinary files.
SLICE = 1024


class ZstdReader:
    """Streaming ZSTD decompression over a raw reader with ``read(n)`` (multi-frame)."""

    def __init__(self, raw: Any, block: int = 1 << 16) -> None:
        self.raw = raw
        self.block = block
        self._dctx = zstandard.ZstdDecompressor()
        self.d = self._dctx.decompressobj()
        self._in = b""
        self._pos = 0
        self._started = False

    def read(self, n: int) -> bytes:
        while True:
            if self._pos >= len(self._in):
                self._in, self._pos = self.raw.read(self.block), 0
                if not self._in:
                    if self._started and not self.d.eof:
                        raise EOFError("compressed file ended before the end of the zstd frame (truncated)")
                    return b""
            if self.d.eof:  # the previous frame ended: another frame follows
                self.d = self._dctx.decompressobj()
            self._started = True
            piece = self._in[self._pos:self._pos + SLICE]
            self._pos += len(piece)
            out = self.d.decompress(piece)
            if self.d.eof and self.d.unused_data:  # the next frame starts inside this piece
                self._in, self._pos = self.d.unused_data + self._in[self._pos:], 0
            if out:
                return out


__all__ = ["GZIP_MAGIC", "HEAD", "SLICE", "ZSTD_MAGIC", "ZstdError", "ZstdReader", "codec_of"]
