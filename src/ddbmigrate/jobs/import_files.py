"""``import_files``: files (AWS exports full/incremental in DYNAMODB_JSON or ION, DynamoDB-JSON,
plain JSON, Ion, CSV, Scan output, dynamodump, Data Pipeline) -> (transform) -> table.

Each file's format is decided before anything is written (sources/detection.py) and reported
per file in ``report.extra["file_formats"]``.

Built on the same pipeline, writer, checkpoint and report as ``copy``: one unit per file (or per
key partition for an incremental export), positions are line numbers, writes go through
:class:`sinks.table_writer.TableWriter` with the chosen ``--mode``.

Invariant: a file that fails its checks (corrupt gzip, md5Checksum or itemCount mismatch) never
passes silently. The other files load; the job then fails (exit 1) naming each bad file and how
many of its items were loaded (0 unless ``validate=False``), and the checkpoint stays unfinished
so ``--resume`` retries only what is left once the file is fixed.
"""

from __future__ import annotations

import hashlib

import threading
from dataclasses import replace
from typing import Dict, Any, Iterator, List, Optional, Sequence, Tuple

from ..aws.capacity import capacity_limit, declared_write_capacity
from ..aws.client import DynamoClient
from ..config import RunOptions, TableRef
from ..core.items import KeySchema, gsi_partition_keys, index_keys_of
from ..core.specs import LiveSourceSpec, ProcessingSpec, Resources, TransformRef
from ..core.transform import Transform, TransformContext, load_transform
from ..engine.job import Job
from ..engine.run import Engine, Observer, pool_size
from ..errors import DdbMigrateError, UsageError
from ..formats.detect import INPUT_FORMATS
from ..formats.records import csv_header_problem
from ..reporting.report import Report
from ..sinks.dry_run import DryRunSpec
from ..sinks.table_writer import TableWriterSpec
from ..sources.detection import assign_formats, formats_line, formats_used
from ..sources.files import FilesSpec
from ..sources.incremental import IncrementalSource
from ..storage.export_layout import discover
from ..storage.stores import S3Settings, normalize, storage_for
from .common import check_resume_options, default_writers, prepare_target, run
from .fit import SAMPLE, SAMPLE_RECORDS, check_fits_target, check_records_fit

DEFAULT_READERS = 8


def check_file_input(input_format: str, csv_header: Optional[Sequence[str]],
                     csv_delimiter: str) -> Optional[List[str]]:
    """The import's input options checked (exit 2 naming the option); the CSV header, trimmed.

    Shared with ``estimate import``, which must refuse what the import would refuse."""
    if input_format not in INPUT_FORMATS:
        raise UsageError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}")
    if len(csv_delimiter) != 1:
        raise UsageError(f"--csv-delimiter must be one character, not {csv_delimiter!r}")
    header = [h.strip() for h in csv_header] if csv_header else None
    if header is not None and csv_header_problem(header):
        raise UsageError(f"--csv-header: {csv_header_problem(header)}")
    return header


def _inputs_version(plan: Any, storage: Any) -> Dict[str, str]:
    """Each data file's version, by unit (see the import identity): a short digest of its
    manifest MD5, or of its size and mtime or ETag."""
    return {f.unit: hashlib.sha256(str(f.md5 or storage.version(f.path)).encode()).hexdigest()[:16]
            for f in plan.files}


def import_files(
    source: str,
    table: TableRef,
    options: Optional[RunOptions] = None,
    *,
    create_target: bool = False,
    spec: Optional[str] = None,
    validate: bool = True,
    input_format: str = "auto",
    csv_header: Optional[Sequence[str]] = None,
    csv_delimiter: str = ",",
    follow_symlinks: bool = False,
    s3: Optional[S3Settings] = None,
    readers: Optional[int] = None,
    transform: Optional[Transform] = None,
    spill_dir: Optional[str] = None,
    engine: Optional[Engine] = None,
    cancel: Optional[threading.Event] = None,
    observer: Optional[Observer] = None,
) -> Report:
    """Load the items of ``source`` (path, folder, glob or ``s3://...``) into ``table``.

    ``create_target``/``spec`` create the table from a CloudFormation-style spec when missing (a
    dynamodump backup carries its table's schema: no spec needed). ``csv_header`` names the
    columns of CSV files without a header line; ``csv_delimiter`` is their separator.
    ``validate=False`` skips the per-file check pass (items stream at once). A file that links out
    of SOURCE's folder is refused unless ``follow_symlinks``. Returns the report;
    raises FatalError (with ``.report``) when a file failed its checks. An incremental export is
    staged on this machine first, so it runs on the threads engine.
    """
    opts = options or RunOptions()
    check_resume_options(opts)
    header = check_file_input(input_format, csv_header, csv_delimiter)
    if transform is None and opts.transform:
        transform = load_transform(opts.transform)
    src = normalize(source) if "://" in source or not any(c in source for c in "*?[") else source
    s3 = s3 or S3Settings(region=table.region, profile=table.profile, role_arn=table.role_arn)
    storage = storage_for(src, s3)
    plan = discover(src, storage, any_name=input_format != "auto", table=table.table,
                    follow_symlinks=follow_symlinks)
    if create_target and not spec and plan.schema is None:
        raise UsageError("--create-target needs --spec FILE (these files carry no table schema)")
    plan = assign_formats(plan, storage, input_format, workers=readers or DEFAULT_READERS)
    if plan.kind == "incremental" and engine is not None and engine.name != "threads":
        raise UsageError("an incremental export is applied on the threads engine (its records are staged "
                         "by key on this machine first): drop --engine/--processes")

    dst = DynamoClient(table, pool_size=pool_size(0, 4), retry=opts.retry)
    try:
        tdesc = prepare_target(dst, create=create_target, spec_path=spec, dry_run=opts.dry_run,
                               source_desc=plan.schema if create_target and not spec else None)
    finally:
        dst.close()
    keys = KeySchema.from_table_description(tdesc)
    n_readers = readers or DEFAULT_READERS
    source_spec: Any
    if plan.kind == "incremental":
        inc = IncrementalSource(storage, plan, validate=validate, spill_dir=spill_dir, readers=n_readers,
                                key_names=keys.names)
        if any(f.snapshot_micros is not None for f in plan.files):
            # A full export applied with incremental ones: its items are keyed like their records.
            inc.key_names = inc.source_key_names() or inc.key_names
        # Before staging the whole export: do its first new images fit the table?
        check_fits_target(table.table, tdesc, sample=_first_new_images(inc), transform=transform,
                          context=TransformContext(target_table=table.table))
        inc.prepare()
        source_spec = LiveSourceSpec(inc)
    else:
        # CSV: attributes the table defines (its keys and index keys) get their type, as ImportTable does.
        key_types = {a["AttributeName"]: a["AttributeType"] for a in tdesc.get("AttributeDefinitions") or []}
        source_spec = FilesSpec(src, plan, s3, validate=validate, input_format=input_format, key_types=key_types,
                                csv_header=header, csv_delimiter=csv_delimiter, transformed=transform is not None)
        # Before the import proper: do the first records fit the table's keys and indexes? And
        # does every CSV file have a column for each key (else its every row is a dead letter)?
        sampled = _Records(source_spec)
        check_records_fit(table.table, tdesc, sampled, sampled.whole, transform=transform,
                          context=TransformContext(target_table=table.table))
        if transform is None:
            _check_csv_headers(source_spec, keys, table.table)
    write_rate = capacity_limit(tdesc, opts.max_write_units, opts.write_percent, "write")
    writers = opts.writers or default_writers(opts.mode, write_rate)
    identity = {
        "job": "import",
        "names": [table.table],
        "source": src,
        "target": table.identity(),
        "kind": plan.kind,
        "files": len(plan.files),
        # Which bytes the positions are places in: a file rewritten after a crash (the same name,
        # other lines) must not be resumed at line N of the old one (items were lost, exit 0).
        # An export's manifest MD5s say it; other files their size and mtime, or their ETag.
        "inputs": _inputs_version(plan, storage),
        # How lines become items: another header or delimiter reads the same lines as others.
        **({"input_format": input_format} if input_format != "auto" else {}),
        **({"csv_header": list(header)} if header else {}),
        **({"csv_delimiter": csv_delimiter} if csv_delimiter != "," else {}),
        "transform": transform.name if transform else None,
        "transform_hash": transform.code_hash if transform else None,
        **opts.fingerprint_fields(),
    }
    job = Job(
        kind="import", identity=identity, options=opts, source=source_spec,
        sink=DryRunSpec() if opts.dry_run else TableWriterSpec(table, keys, retry=opts.retry, mode=opts.mode,
                                                               write_rate=write_rate, writers=writers,
                                                               index_keys=gsi_partition_keys(tdesc),
                                                               declared=declared_write_capacity(tdesc, dst.endpoint)),
        processing=ProcessingSpec(key_schema=keys, transform=TransformRef.of(transform), on_error=opts.on_error,
                                  target_table=table.table, sample=opts.sample, loaded=transform,
                                  index_keys=index_keys_of(tdesc)),
        source_label=src, target_label=table.describe(),
        total_estimate=sum(f.item_count or 0 for f in plan.files) or None,
        readers=min(n_readers, max(1, len(source_spec.units()))), writers=writers,
        extra={"mode": opts.mode, "source_kind": plan.kind, "files": len(plan.files),
               "transform": transform.name if transform else None, "formats": formats_line(plan),
               "file_formats": formats_used(plan),
               **({"exports": plan.exports} if plan.exports else {}),
               # How CSV values were typed (for --verify, which reads the files again).
               **({"key_types": source_spec.key_types} if any(f.fmt == "csv" for f in plan.files) else {})},
        preflight=(dst.stats.snapshot(),),
    )
    return run(job, engine, cancel=cancel, observer=observer)


def _check_csv_headers(spec: FilesSpec, keys: KeySchema, table: str) -> None:
    for f, header in spec.csv_headers():
        missing = [k for k in keys.names if k not in header]
        if missing:
            raise UsageError(f"{f.unit}: the CSV header has no column {missing[0]!r}, a key attribute of table "
                             f"{table!r}; nothing was written", file=f.path, line=1,
                             hint="give the file a header naming the key columns (or --csv-header for files without one)")


class _Records:
    """The input's records in order, ``(item, origin)``, read for the fit check (unchecked: the
    job checks the files), at most ``limit`` of them from the first ``max_files`` files. One
    chunk is held at a time. ``whole()`` says, once they ran out, whether they were every record
    of the input (every file read to its end), so that a refusal can say nothing would load."""

    def __init__(self, spec: FilesSpec, limit: int = SAMPLE_RECORDS, max_files: int = 16) -> None:
        self.spec, self.limit, self.max_files = spec, limit, max_files
        self._whole = False

    def whole(self) -> bool:
        return self._whole

    def __iter__(self) -> Iterator[Tuple[Any, str]]:
        import threading as _threading

        stop = _threading.Event()
        units = self.spec.units()
        n = 0
        ended = 0  # files read to their end
        for unit in units[:self.max_files]:
            src = replace(self.spec, validate=False).build(Resources(units=[unit]))
            try:
                for chunk in src.read(unit, None, stop):
                    items = chunk.items or [img for _kind, img in (chunk.ops or [])]
                    origins = chunk.origins if chunk.origins is not None and len(chunk.origins) == len(items) \
                        else [unit] * len(items)
                    for item, origin in zip(items, origins):
                        yield item, origin
                        n += 1
                        if n >= self.limit:
                            return
                    ended += chunk.done
            except DdbMigrateError:
                continue  # a bad file: the job reports it with its own message
            finally:
                src.close()
        self._whole = ended == len(units)


def _first_new_images(inc: IncrementalSource, n: int = SAMPLE) -> List[Any]:
    """The ``NewImage`` of the first records of an incremental export (deletes carry none)."""
    from ..sources.lines import LineStream, TooLong

    out: List[Any] = []
    for f in inc.plan.files[:3]:
        ls = LineStream(inc.storage, f.path)
        try:
            for _, line in ls.numbered():
                if isinstance(line, TooLong):
                    continue
                rec, _ = inc._decode(f, line)
                new = rec.get("NewImage") if isinstance(rec, dict) else None
                if isinstance(new, dict):
                    out.append(new)
                if len(out) >= n:
                    return out
        except Exception:  # a corrupt file: the import's own checks name it
            continue
        finally:
            ls.close()
    return out
