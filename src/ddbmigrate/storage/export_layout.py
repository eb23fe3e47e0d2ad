"""The layouts a files SOURCE may name, read side: what to read, in which format, and the checks.

    <prefix>/AWSDynamoDB/<ExportId>/          an AWS export (full or incremental)
        _started
        manifest-summary.json  (+ .md5 or .checksum)
        manifest-files.json    (+ .md5 or .checksum)   one JSON object per line
        data/<name>.json.gz | .ion.gz          full export: its own data folder
    <prefix>/AWSDynamoDB/data/<name>.json.gz   incremental exports: one data folder shared by all

    <backup>/<table>/schema.json + data/0001.json ...     a dynamodump backup
    <folder>/manifest {"name":"DynamoDB-export",...} + UUID-named files   an AWS Data Pipeline export

What SOURCE may be (see :func:`discover`): an export folder, a prefix holding one export or a
chain of them (a full export and/or incremental exports, applied in time order), a dynamodump
backup or table folder, a Data Pipeline export folder, one file, a folder of files, or a glob. The
result is a :class:`Plan`: the data files to read with, for each, the manifest's ``itemCount`` and
``md5Checksum`` when a manifest lists them, and the format when the layout fixes it.

Invariants:
1. A torn export is refused, never half-read: ``_started`` without ``manifest-summary.json``,
   a missing ``manifest-files.json`` or a listed data file that is not there is a FatalError.
   Data files are found where the manifest's ``dataFileS3Key`` says (relative to the bucket).
2. A manifest with a ``.md5`` or ``.checksum`` file is checked against it before it is trusted.
3. A data file is only as good as its manifest entry says (:func:`check_against_manifest`):
   a file whose md5Checksum or itemCount differs raises :class:`FileProblem`.
4. Several exports under one prefix are applied only as a chain without gaps (one full export at
   most, incremental windows in ``exportFromTime`` order); anything else is a UsageError naming them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional

import orjson

from ..errors import DdbMigrateError, FatalError, UsageError
from .stores import GLOB_CHARS, Storage, is_s3

_STEMS = (".json", ".jsonl", ".ndjson", ".ion", ".csv")
DATA_SUFFIXES = tuple(s + c for s in _STEMS for c in ("", ".gz", ".zst", ".zstd")) + (".gz", ".zst")
# Files of the layouts that are never data.
NOT_DATA = ("manifest", "manifest-summary.json", "manifest-files.json", "_started", "_SUCCESS", "schema.json")
OUTPUT_FORMATS = {"DYNAMODB_JSON": "dynamodb-json", "ION": "ion", "JSON": "json"}
# The largest real one, an export's manifest-files.json, takes about 250 bytes per data file.
MANIFEST_LIMIT = 64 * 1024 * 1024


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
    fmt: str = ""  # the format it is read in ("" until detected; see formats.detect)
    # For a full export applied before incremental ones: its exportTime, as each item's write time.
    snapshot_micros: Optional[int] = None
    # For an incremental export applied after a full one: that exportTime; older records are stale.
    since_micros: Optional[int] = None


@dataclass
class Plan:
    """What a SOURCE names: its kind, root, data files and (for an export) manifest-summary.json."""

    kind: str  # "files" | "export" | "incremental" | "dynamodump" | "data-pipeline"
    root: str
    files: List[FileEntry]
    summary: Dict[str, Any] = field(default_factory=dict)
    # The exports read, in the order applied: ExportId, exportType, outputFormat, times.
    exports: List[Dict[str, Any]] = field(default_factory=list)
    # A table description the files carry (dynamodump's schema.json), for --create-target.
    schema: Optional[Dict[str, Any]] = None


# --------------------------------------------------------------------------- discovery


def discover(source: str, storage: Storage, *, any_name: bool = False, table: Optional[str] = None,
             follow_symlinks: bool = False) -> Plan:
    """Find what SOURCE names; errors are one clear line.

    ``any_name``: a folder's files are data whatever their names (an explicit --input-format);
    ``table``: the target table's name, to pick its folder in a dynamodump backup of several.

    A file found inside a folder (or by a glob) that resolves, through links, to a place outside
    that folder is refused unless ``follow_symlinks``: an export handed over by someone else must
    not make the import read (and copy into a dead-letter file) whatever the link points at. For
    an export folder, "that folder" is the prefix holding its ``AWSDynamoDB/``: incremental
    exports keep their data in the prefix's shared ``AWSDynamoDB/data/``.
    """
    # A file or folder by that very name is that one: a name may hold "[" or "*" (files named
    # "report[1].json" matched no glob of themselves).
    literal = any(c in source for c in GLOB_CHARS) and _names_itself(source, storage)
    if any(c in source for c in GLOB_CHARS) and not literal:
        found = storage.glob(source)
        base = _glob_base(source)
        files = [FileEntry(p, storage.relative(base, p), s) for p, s in found if _is_data_name(p, any_name)]
        if not files:
            raise UsageError(f"no data files match {source}")
        plan = Plan("files", base, files)
        return plan if follow_symlinks else _confined(plan, base, storage)
    if storage.is_dir(source):
        plan = _discover_folder(source, storage, any_name, table)
        return plan if follow_symlinks else _confined(plan, _confine_root(source, plan), storage)
    if not storage.exists(source):
        raise UsageError(f"{source} does not exist", file=source)
    parent, _, name = source.rpartition("/")
    if name in ("manifest-summary.json", "manifest-files.json"):
        # Read as data, a manifest was one item refused for lacking the table's key.
        raise UsageError(f"{source} is an export's manifest, not its data: import the export's folder "
                         f"({parent or '.'})", file=source)
    return Plan("files", source.rsplit("/", 1)[0], [FileEntry(source, source.rsplit("/", 1)[-1], storage.size(source))])


def _names_itself(source: str, storage: Storage) -> bool:
    """Whether a source holding glob characters is a file or folder of that very name."""
    try:
        return storage.exists(source) or storage.is_dir(source)
    except DdbMigrateError:  # (S3 may refuse a look at a key that is not there: then it is a glob)
        return False


def _confine_root(source: str, plan: Plan) -> str:
    parent, _, base = source.rstrip("/").rpartition("/")
    if plan.kind in ("export", "incremental") and parent.rsplit("/", 1)[-1] == "AWSDynamoDB":
        return parent.rpartition("/")[0]
    if plan.kind in ("export", "incremental") and base == "AWSDynamoDB":
        return parent  # (read as the prefix that holds it)
    return source


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


def _is_data_name(p: str, any_name: bool = False) -> bool:
    name = p.rsplit("/", 1)[-1]
    if name.startswith(".") or name.startswith("manifest-") or name in NOT_DATA:
        return False
    if name.endswith((".md5", ".checksum")):
        return False
    return any_name or name.endswith(DATA_SUFFIXES)


def _discover_folder(folder: str, storage: Storage, any_name: bool = False, table: Optional[str] = None) -> Plan:
    listing = storage.list_files(folder)
    names = {storage.relative(folder, p): s for p, s in listing}
    if "manifest-summary.json" in names or "_started" in names:
        return _export_plan(folder, storage, names)
    # The AWSDynamoDB/ folder itself is read as the prefix that holds it: read as a folder of
    # files, it skipped every manifest check and mixed the items of all its exports, in no order.
    parent, _, base = folder.rstrip("/").rpartition("/")
    if base == "AWSDynamoDB" and any(n.count("/") == 1 and n.endswith(("/manifest-summary.json", "/_started"))
                                     for n in names):
        folder, names = parent, {"AWSDynamoDB/" + n: s for n, s in names.items()}
    # Every folder under AWSDynamoDB/ but the incremental exports' shared data/ is an export (one
    # without manifest-summary.json is torn, and refused as such).
    exports = sorted({n.split("/")[1] for n in names if n.startswith("AWSDynamoDB/") and n.count("/") >= 2}
                     - {"data"})
    if exports:
        aws_dir = storage.join(folder, "AWSDynamoDB")
        plans = []
        for eid in exports:
            prefix = f"AWSDynamoDB/{eid}/"
            plans.append(_export_plan(storage.join(aws_dir, eid), storage,
                                      {n[len(prefix):]: s for n, s in names.items() if n.startswith(prefix)},
                                      shared={storage.join(folder, n): s for n, s in names.items()
                                              if n.startswith("AWSDynamoDB/data/")}))
        return plans[0] if len(plans) == 1 else _chain(folder, plans)
    if "manifest" in names:
        dp = _data_pipeline_plan(folder, storage, names)
        if dp is not None:
            return dp
    dump = _dynamodump_plan(folder, storage, names, table)
    if dump is not None:
        return dump
    files = [FileEntry(p, storage.relative(folder, p), s) for p, s in listing
             if _is_data_name(p, any_name) and "/." not in storage.relative(folder, "/" + p)]
    if not files:
        raise UsageError(f"no data files (*.json, *.json.gz, *.jsonl, *.ion, *.csv, optionally .gz/.zst) in {folder}")
    return Plan("files", folder, files)


def _micros(ts: Any) -> Optional[int]:
    """An ISO-8601 time of a manifest (``2023-09-19T04:00:00.000Z``) as epoch microseconds."""
    if not isinstance(ts, str):
        return None
    try:
        d = _dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return (d - _EPOCH) // _dt.timedelta(microseconds=1)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _describe(p: Plan) -> str:
    s = p.summary
    if p.kind == "incremental":
        return f"{p.root.rsplit('/', 1)[-1]} (incremental {s.get('exportFromTime')} .. {s.get('exportToTime')})"
    return f"{p.root.rsplit('/', 1)[-1]} (full at {s.get('exportTime')})"


def _chain(folder: str, plans: List[Plan]) -> Plan:
    """Several exports under one prefix: the full export (one at most) then the incremental windows
    in ``exportFromTime`` order, without gaps; otherwise ask which one (invariant 4)."""
    fulls = [p for p in plans if p.kind == "export"]
    incs = sorted((p for p in plans if p.kind == "incremental"),
                  key=lambda p: (_micros(p.summary.get("exportFromTime")) or 0, _micros(p.summary.get("exportToTime")) or 0))
    listing = "; ".join(_describe(p) for p in plans[:6]) + (" ..." if len(plans) > 6 else "")
    if len(fulls) > 1 or not incs:
        raise UsageError(f"{folder} holds {len(plans)} exports ({listing}); name one: SOURCE/AWSDynamoDB/<ExportId>")
    covered = _micros(fulls[0].summary.get("exportTime")) if fulls else None
    for p in incs:
        start, end = _micros(p.summary.get("exportFromTime")), _micros(p.summary.get("exportToTime"))
        if start is None or end is None:
            raise UsageError(f"{p.root}: manifest-summary.json has no exportFromTime/exportToTime")
        if covered is not None and start > covered:
            raise UsageError(f"{folder}: the exports leave a gap before {_describe(p)} (changes before "
                             f"{p.summary.get('exportFromTime')} are missing); exports found: {listing}; "
                             "name one to import it alone: SOURCE/AWSDynamoDB/<ExportId>")
        covered = max(covered or end, end)
    files: List[FileEntry] = []
    order = fulls + incs
    full_time = _micros(fulls[0].summary.get("exportTime")) if fulls else None
    for p in order:
        snap = full_time if p.kind == "export" else None
        since = full_time if p.kind == "incremental" else None
        for f in p.files:
            # Named from the AWSDynamoDB/ folder: <ExportId>/data/... for an export's own files,
            # data/... for those in the prefix's shared data folder (named under the export's id,
            # a dead letter's file:line pointed at a file that is not there).
            own = f.path.startswith(p.root.rstrip("/") + "/")
            files.append(replace(f, unit=f"{p.root.rsplit('/', 1)[-1]}/{f.unit}" if own else f.unit,
                                 snapshot_micros=snap, since_micros=since))
    exports = [e for p in order for e in p.exports]
    return Plan("incremental", folder, files, order[-1].summary, exports)


def _data_pipeline_plan(folder: str, storage: Storage, names: Dict[str, int]) -> Optional[Plan]:
    if names["manifest"] > MANIFEST_LIMIT:
        return None  # (no Data Pipeline manifest is that big: a data file of that name)
    raw = _read_manifest(storage, storage.join(folder, "manifest"))
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(manifest, dict) or manifest.get("name") != "DynamoDB-export":
        return None
    files: List[FileEntry] = []
    # Entries are s3:// URLs of where the export was written; the files are found by name here.
    by_name = {n.rsplit("/", 1)[-1]: n for n in sorted(names, key=lambda n: n.count("/"), reverse=True)}
    entries = manifest.get("entries") or []
    if not isinstance(entries, list):
        raise FatalError("the Data Pipeline manifest's entries is not a list", file=storage.join(folder, "manifest"))
    for e in entries:
        url = str(e.get("url", "")) if isinstance(e, dict) else ""
        base = url.rstrip("/").rsplit("/", 1)[-1]
        rel = by_name.get(base) if base else None
        if rel is None:
            if isinstance(e, dict) and e.get("mandatory") is False:
                continue
            raise FatalError(f"data file {base or url!r} listed in the Data Pipeline manifest is missing",
                             file=storage.join(folder, "manifest"), code="MissingDataFile")
        files.append(FileEntry(storage.join(folder, rel), rel, names[rel], fmt="data-pipeline"))
    return Plan("data-pipeline", folder, files, {"name": manifest.get("name"), "version": manifest.get("version")})


def _dynamodump_plan(folder: str, storage: Storage, names: Dict[str, int], table: Optional[str]) -> Optional[Plan]:
    if "schema.json" in names:
        sub = ""
    else:
        tables = sorted({n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/schema.json")})
        if not tables:
            return None
        if len(tables) > 1 and table in tables:
            tables = [table]
        if len(tables) > 1:
            raise UsageError(f"{folder} is a dynamodump backup of {len(tables)} tables ({', '.join(tables[:8])}); "
                             "name one: SOURCE/<table>")
        sub = tables[0] + "/"
    try:
        desc = orjson.loads(_read_manifest(storage, storage.join(folder, sub + "schema.json")))
    except orjson.JSONDecodeError as e:
        raise FatalError(f"{sub}schema.json is not JSON: {e}", file=folder) from None
    schema = desc.get("Table", desc) if isinstance(desc, dict) else None
    root = storage.join(folder, sub.rstrip("/")) if sub else folder
    files = [FileEntry(storage.join(folder, n), n[len(sub):], s, fmt="dynamodump") for n, s in sorted(names.items())
             if n.startswith(sub + "data/") and n.endswith(".json")]
    return Plan("dynamodump", root, files, {}, schema=schema if isinstance(schema, dict) else None)


def _read_manifest(storage: Storage, path: str) -> bytes:
    """A layout's own file (a manifest, a checksum, schema.json), read whole: never more than
    MANIFEST_LIMIT bytes of it, so a huge one (no real manifest is) cannot fill the memory."""
    parts: List[bytes] = []
    n = 0
    with storage.open_read(path) as fh:
        while n <= MANIFEST_LIMIT:  # (a read of a network stream may return less than asked)
            part = fh.read(min(1 << 20, MANIFEST_LIMIT + 1 - n))
            if not part:
                break
            parts.append(part)
            n += len(part)
    if n > MANIFEST_LIMIT:
        raise FatalError(f"{path.rsplit('/', 1)[-1]} is over {MANIFEST_LIMIT:,} bytes, more than any manifest "
                         "holds: not read", file=path, code="ManifestTooLarge")
    return b"".join(parts)


def _verify_checksum(storage: Storage, root: str, names: Dict[str, int], name: str, data: bytes) -> None:
    stem = name[: -len(".json")]
    for ext in (".md5", ".checksum"):
        if stem + ext in names:
            expected = _read_manifest(storage, storage.join(root, stem + ext)).decode("ascii", "replace").strip()
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


def _export_plan(root: str, storage: Storage, names: Dict[str, int],
                 shared: Optional[Dict[str, int]] = None) -> Plan:
    """One export at ``root`` (names: its files, relative to it); ``shared``: the files of the
    prefix's shared ``AWSDynamoDB/data/`` folder (full paths), listed on demand when None."""
    if "manifest-summary.json" not in names:
        raise FatalError(f"{root} is an unfinished export: it has no manifest-summary.json (the export was "
                         "interrupted; resume it, or import its data/ folder knowingly)",
                         file=root, code="TornExport")
    raw_summary = _read_manifest(storage, storage.join(root, "manifest-summary.json"))
    _verify_checksum(storage, root, names, "manifest-summary.json", raw_summary)
    try:
        summary = orjson.loads(raw_summary)
    except orjson.JSONDecodeError as e:
        raise FatalError(f"manifest-summary.json is not JSON: {e}", file=root) from None
    if not isinstance(summary, dict):
        raise FatalError(f"manifest-summary.json is not a JSON object (found {type(summary).__name__})", file=root)
    if "manifest-files.json" not in names:
        raise FatalError("manifest-files.json is missing", file=root, code="TornExport")
    raw_files = _read_manifest(storage, storage.join(root, "manifest-files.json"))
    _verify_checksum(storage, root, names, "manifest-files.json", raw_files)
    out_fmt = summary.get("outputFormat", "DYNAMODB_JSON")
    if out_fmt not in OUTPUT_FORMATS:
        raise UsageError(f"{root}: outputFormat {out_fmt} is not supported (DYNAMODB_JSON, ION or JSON)")
    fmt = OUTPUT_FORMATS[out_fmt]
    # The folder that holds AWSDynamoDB/: dataFileS3Key (relative to the bucket) resolves under it.
    parent, _, eid = root.rstrip("/").rpartition("/")
    base = parent.rpartition("/")[0] if parent.rsplit("/", 1)[-1] == "AWSDynamoDB" else None
    files: List[FileEntry] = []
    for i, line in enumerate(raw_files.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            key = str(entry["dataFileS3Key"])
            count = int(entry["itemCount"]) if entry.get("itemCount") is not None else None
        except (ValueError, KeyError, TypeError):  # (an itemCount that is no number too)
            raise FatalError("manifest-files.json line is not a valid entry", file=storage.join(root, "manifest-files.json"),
                             line=i) from None
        if shared is None and base is not None and "/AWSDynamoDB/data/" in "/" + key:
            # Listed once per export (not per file): the prefix's shared data folder.
            d = storage.join(base, "AWSDynamoDB", "data")
            shared = dict(storage.list_files(d)) if storage.is_dir(d) else {}
        found = _resolve(storage, root, base, names, key, shared or {})
        if found is None:
            raise FatalError(f"data file {key} listed in manifest-files.json is missing (looked at its "
                             "dataFileS3Key under the export's prefix and in the export's data/ folder)",
                             file=root, code="MissingDataFile")
        path, size = found
        rel = storage.relative(root, path) if path.startswith(root.rstrip("/") + "/") else \
            storage.relative(parent, path)
        files.append(FileEntry(path, rel, size, count, entry.get("md5Checksum"), fmt=fmt))
    _check_listed(root, storage, names, summary, files)
    kind = "incremental" if summary.get("exportType") == "INCREMENTAL_EXPORT" else "export"
    info = {"export_id": eid, "type": summary.get("exportType") or "FULL_EXPORT", "outputFormat": out_fmt,
            "exportTime": summary.get("exportTime"), "exportFromTime": summary.get("exportFromTime"),
            "exportToTime": summary.get("exportToTime"), "files": len(files)}
    return Plan(kind, root, files, summary, [info])


def _check_listed(root: str, storage: Storage, names: Dict[str, int], summary: Dict[str, Any],
                  files: List[FileEntry]) -> None:
    """manifest-files.json against manifest-summary.json's ``itemCount`` (AWS and ddbmigrate both
    write it, full and incremental exports alike): a manifest that lost lines (or was emptied)
    still passes its own checksum when the checksum file went with it, and every file it lists
    would load cleanly, so only this sum shows the items it no longer names.

    Fewer items listed than the summary counts is refused before anything is read. More listed
    than counted is left to the per-file check, which names the entry whose count is off; unless
    the export's own data/ folder holds files no entry names, which says the manifest is not the
    one written with this data. Incremental exports keep their data in the prefix's shared
    folder, where other exports' files are expected: only the export's own data/ is looked at.
    """
    total = summary.get("itemCount")
    if not isinstance(total, int) or isinstance(total, bool) or any(f.item_count is None for f in files):
        return
    listed = sum(f.item_count or 0 for f in files)
    own = {storage.relative(root, f.path) for f in files if f.path.startswith(root.rstrip("/") + "/")}
    unlisted = sorted(n for n in names if n.startswith("data/") and n not in own and _is_data_name(n, True))
    if listed == total or (listed > total and not unlisted):
        return
    extra = (f"; data/ holds {len(unlisted)} file(s) it does not list: " + ", ".join(unlisted[:5])
             + (" ..." if len(unlisted) > 5 else "")) if unlisted else ""
    raise FatalError(f"manifest-files.json lists {len(files)} file(s) with {listed} items but manifest-summary.json "
                     f"says the export holds {total}{extra}; nothing was written (the manifest is cut or not this "
                     "export's)", file=storage.join(root, "manifest-files.json"), code="ManifestMismatch")


def _resolve(storage: Storage, root: str, base: Optional[str], names: Dict[str, int], key: str,
             shared: Dict[str, int]) -> Optional[Any]:
    """Where a manifest's ``dataFileS3Key`` is: under the prefix's folder (AWS: relative to the
    bucket), else in the export's own data/ folder (a copy whose prefix changed)."""
    idx = key.rfind("AWSDynamoDB/")
    if base is not None and idx >= 0:
        path = storage.join(base, key[idx:])
        if path.startswith(root.rstrip("/") + "/"):
            rel = storage.relative(root, path)
            if rel in names:
                return path, names[rel]
        elif path in shared:
            return path, shared[path]
    rel = "data/" + key.rsplit("/", 1)[-1]
    if rel in names:
        return storage.join(root, rel), names[rel]
    return None


def check_against_manifest(f: FileEntry, md5: str, count: Optional[int]) -> None:
    """A data file against its manifest entry: md5Checksum and itemCount (``count`` None: not counted)."""
    if f.md5 and md5 != f.md5:
        raise FileProblem(f"md5Checksum mismatch: manifest says {f.md5}, file has {md5}")
    if count is not None and f.item_count is not None and count != f.item_count:
        raise FileProblem(f"itemCount mismatch: manifest says {f.item_count}, file has {count} lines")


__all__ = ["DATA_SUFFIXES", "FileEntry", "FileProblem", "NOT_DATA", "OUTPUT_FORMATS", "Plan", "check_against_manifest",
           "checksum_matches", "discover"]
