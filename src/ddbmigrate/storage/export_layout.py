"""The AWS Export-to-S3 layout, read side: what a files SOURCE names, and the manifest checks.

    <prefix>/AWSDynamoDB/<ExportId>/
        _started
        manifest-summary.json  (+ .md5 or .checksum)
        manifest-files.json    (+ .md5 or .checksum)   one JSON object per line
        data/<name>.json.gz    one {"Item": {...}} per line

What SOURCE may be (see :func:`discover`): an export folder (``.../AWSDynamoDB/<ExportId>/``,
or a folder holding exactly one ``AWSDynamoDB/<ExportId>``), one file, a folder of files, or a
glob. The result is a :class:`Plan`: the data files to read, with the manifest's ``itemCount``
and ``md5Checksum`` of each when an export lists them.

Invariants:
1. A torn export is refused, never half-read: ``_started`` without ``manifest-summary.json``,
   a missing ``manifest-files.json`` or a listed data file that is not there is a FatalError.
2. A manifest with a ``.md5`` or ``.checksum`` file is checked against it before it is trusted.
3. A data file is only as good as its manifest entry says (:func:`check_against_manifest`):
   a file whose md5Checksum or itemCount differs raises :class:`FileProblem`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import orjson

from ..errors import FatalError, UsageError
from .stores import GLOB_CHARS, Storage, is_s3

DATA_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".gz")


class FileProblem(Exception):
    """A whole file is unusable (corrupt gzip, checksum or count mismatch)."""

    def __init__(self, reason: str, line: Optional[int] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


@dataclass
class FileEntry:
    """One data file of a files source; an export's manifest adds its itemCount and md5Checksum."""

    path: str
    unit: str
    size: int = 0
    item_count: Optional[int] = None  # from manifest-files.json
    md5: Optional[str] = None  # base64, from manifest-files.json


@dataclass
class Plan:
    """What a SOURCE names: its kind, root, data files and (for an export) manifest-summary.json."""

    kind: str  # "files" | "export" | "incremental"
    root: str
    files: List[FileEntry]
    summary: Dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- discovery


def discover(source: str, storage: Storage, *, follow_symlinks: bool = False) -> Plan:
    """Find what SOURCE names; errors are one clear line.

    A file found inside a folder (or by a glob) that resolves, through links, to a place outside
    that folder is refused unless ``follow_symlinks``: an export handed over by someone else must
    not make the import read (and copy into a dead-letter file) whatever the link points at.
    """
    if any(c in source for c in GLOB_CHARS):
        found = storage.glob(source)
        base = _glob_base(source)
        files = [FileEntry(p, storage.relative(base, p), s) for p, s in found if _is_data_name(p)]
        if not files:
            raise UsageError(f"no data files match {source}")
        plan = Plan("files", base, files)
        return plan if follow_symlinks else _confined(plan, base, storage)
    if storage.is_dir(source):
        plan = _discover_folder(source, storage)
        return plan if follow_symlinks else _confined(plan, source, storage)
    if not storage.exists(source):
        raise UsageError(f"{source} does not exist", file=source)
    return Plan("files", source.rsplit("/", 1)[0], [FileEntry(source, source.rsplit("/", 1)[-1], storage.size(source))])


def _confined(plan: Plan, root: str, storage: Storage) -> Plan:
    if is_s3(root):
        return plan  # S3 has no links
    top = os.path.realpath(root or ".")
    paths = [f.path for f in plan.files]
    if plan.kind != "files":
        paths += [os.path.join(plan.root, n) for n in ("manifest-summary.json", "manifest-files.json")]
    for path in paths:
        real = os.path.realpath(path)
        if real != top and not real.startswith(top.rstrip(os.sep) + os.sep):
            raise UsageError(f"{path} leads to {real}, outside {root}: refused (a link out of the import folder; "
                             "pass --follow-symlinks to read it anyway)", file=path)
    return plan


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
            if not checksum_matches(expected, data):
                raise FatalError(f"{name} does not match its {stem + ext} (manifest corrupt or changed)",
                                 file=storage.join(root, name), code="ChecksumMismatch")
            return


def checksum_matches(expected: str, data: bytes) -> bool:
    """Whether ``data`` matches a manifest's checksum file: AWS writes the base64 MD5; accept hex
    too, and SHA-256 in either encoding."""
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


def check_against_manifest(f: FileEntry, md5: str, count: Optional[int]) -> None:
    """A data file against its manifest entry: md5Checksum and itemCount (``count`` None: not counted)."""
    if f.md5 and md5 != f.md5:
        raise FileProblem(f"md5Checksum mismatch: manifest says {f.md5}, file has {md5}")
    if count is not None and f.item_count is not None and count != f.item_count:
        raise FileProblem(f"itemCount mismatch: manifest says {f.item_count}, file has {count} lines")


__all__ = ["DATA_SUFFIXES", "FileEntry", "FileProblem", "Plan", "check_against_manifest", "checksum_matches", "discover"]
