"""Decide each data file's format before the import starts (on the driver, in parallel).

A layout that fixes the format (an export's ``outputFormat``, a dynamodump backup, a Data
Pipeline manifest) wins. Every other file's head (up to ``HEAD_BYTES``, decompressed) is read
once: with ``--input-format auto`` :func:`ddbmigrate.formats.detect.detect` names its format;
with a format given, :func:`ddbmigrate.formats.detect.check_sample` refuses a file none of whose
first records is in it.

Invariant: a file in no readable format, or not in the format asked for, is a UsageError (exit 2)
naming the file, the format(s) tried and what was found, before anything is written.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

from ..errors import UsageError
from ..formats.detect import FORMATS, INPUT_FORMATS, check_sample, detect
from ..storage.export_layout import FileEntry, Plan
from ..storage.stores import Storage
from .lines import CORRUPT_ERRORS, MAX_LINE, LineStream, TooLong

HEAD_BYTES = 256 * 1024


def _head(storage: Storage, path: str) -> Tuple[bytes, bool]:
    """The file's first HEAD_BYTES (decompressed), or up to its first whole line when that is
    longer (an item of 400 KB may be one long line); and whether that is the whole file."""
    ls = LineStream(storage, path)
    limit = HEAD_BYTES
    try:
        head = ls.peek(limit + 1)
        if len(head) > limit and b"\n" not in head:
            limit = MAX_LINE
            head = ls.peek(limit + 1)
    except CORRUPT_ERRORS:
        head = b"".join(ls._pending)  # what decompressed before the damage; the read reports it
    finally:
        ls.close()
    return head[:limit], len(head) <= limit


def _after_first_line(storage: Storage, path: str) -> Tuple[bytes, bool]:
    """The lines after a first line over the line limit, up to HEAD_BYTES of them (skipped
    unheld: the reader dead-letters that line as it does any such line)."""
    ls = LineStream(storage, path)
    lines: List[bytes] = []
    size = 0
    try:
        for _, line in ls.numbered():
            if isinstance(line, TooLong):
                continue
            lines.append(line)
            size += len(line) + 1
            if size > HEAD_BYTES:
                break
    except CORRUPT_ERRORS:
        pass  # the read reports it
    finally:
        ls.close()
    # Whole lines, each ended: none is cut by the sample's end.
    return b"".join(ln + b"\n" for ln in lines), size <= HEAD_BYTES


def _utf16(head: bytes) -> bool:
    """A UTF-16 text (PowerShell 5's `>`, a spreadsheet's "Unicode text"): a byte-order mark, or
    a NUL beside every ASCII character."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    sample = head[:64]
    if len(sample) < 8 or len(sample) % 2:
        sample = sample[: len(sample) // 2 * 2]
    if len(sample) < 8:
        return False
    even, odd = sample[0::2], sample[1::2]
    # ASCII in UTF-16: every other byte NUL, the others text (a file of NULs is not this).
    return (odd.count(0) == len(odd) and 0 not in even) or (even.count(0) == len(even) and 0 not in odd)


def _decide(storage: Storage, f: FileEntry, forced: Optional[str]) -> FileEntry:
    head, complete = _head(storage, f.path)
    name = f.path.rsplit("/", 1)[-1]
    if _utf16(head) and (forced or "") != "csv" and ".csv" not in name.lower():
        # Said as what it is: "text starting '\xff\xfe{\x00'", and --input-format then "does not
        # start with a JSON object", left the user guessing. (CSV says it at its header.)
        raise UsageError(f"{f.path}: the file is UTF-16 text (PowerShell's `>`, or \"Unicode text\"): save it "
                         "as UTF-8 (e.g. `Out-File -Encoding utf8`, or `iconv -f UTF-16 -t UTF-8`)", file=f.path)
    if forced is not None:
        problem = check_sample(head, forced, complete)
        if problem is not None:
            found = detect(head, name, complete)
            raise UsageError(f"{f.path}: not {forced} ({problem}); found {found.found}"
                             + (f": try --input-format {found.fmt}" if found.fmt in FORMATS else ""), file=f.path)
        return replace(f, fmt=forced)
    d = detect(head, name, complete)
    if d.fmt is None and not complete and b"\n" not in head:
        # A first line over the line limit that is no document this reads whole (an array, a
        # Scan response): a record the reader dead-letters, and the lines after it tell the format
        # (told by its first 8 MB, it was "a multi-line JSON document", and the file was refused).
        rest, rest_complete = _after_first_line(storage, f.path)
        if rest.strip():
            d = detect(rest, name, rest_complete)
    if d.fmt == "incremental":
        raise UsageError(f"{f.path}: holds incremental export records (Keys/NewImage/Metadata) without their "
                         "export: import the export folder (its manifest-summary.json says INCREMENTAL_EXPORT)",
                         file=f.path)
    if d.fmt is None:
        raise UsageError(f"{f.path}: not a format ddbmigrate reads (tried {', '.join(FORMATS)}); found {d.found}. "
                         "Name the format with --input-format", file=f.path)
    return replace(f, fmt=d.fmt)


def assign_formats(plan: Plan, storage: Storage, input_format: str = "auto", *, workers: int = 8) -> Plan:
    """The plan with every file's format decided (see the module docstring)."""
    if input_format not in INPUT_FORMATS:
        raise UsageError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}")
    forced = None if input_format == "auto" else input_format
    todo = [i for i, f in enumerate(plan.files) if not f.fmt]
    if not todo:
        return plan
    files: List[FileEntry] = list(plan.files)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as ex:
        for i, entry in zip(todo, ex.map(lambda i: _decide(storage, plan.files[i], forced), todo)):
            files[i] = entry
    return replace(plan, files=files)


def formats_used(plan: Plan) -> Dict[str, str]:
    """``{unit: format}`` for the report (which format each file was read in)."""
    return {f.unit: f.fmt for f in plan.files}


def formats_line(plan: Plan) -> str:
    """One line for the summary: each file's format (few files), or the count per format."""
    if len(plan.files) <= 4:
        return "; ".join(f"{f.unit}: {f.fmt}" for f in plan.files)
    counts: Dict[str, int] = {}
    for f in plan.files:
        counts[f.fmt] = counts.get(f.fmt, 0) + 1
    return ", ".join(f"{n} {fmt}" for fmt, n in sorted(counts.items())) + " files (report: file_formats)"


__all__ = ["HEAD_BYTES", "assign_formats", "formats_line", "formats_used"]
