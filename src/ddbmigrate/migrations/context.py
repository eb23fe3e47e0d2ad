"""``ctx``: what a migration's ``upgrade(ctx)`` uses, the library's jobs bound to the run's settings.

    upgrade(ctx)
      ctx.create_table(spec)            step 1   (skipped when the table exists with that key)
      ctx.copy("users", "users_v2", transform=fn)    step 2   checkpoint <state>/<id>/02-copy.checkpoint.json
      ctx.update("users_v2", fn)        step 3   checkpoint <state>/<id>/03-update.checkpoint.json

Each step is the library's job (copy_table, update_table, import_files, verify_tables) with its
usual guarantees, and a checkpoint named by the migration and the step's place in ``upgrade``.
Running ``upgrade`` again (``up`` after a failure) therefore walks the same steps: a finished
step is a no-op (its checkpoint says done), the step that failed resumes from its checkpoint,
the rest run fresh.

A place in ``upgrade`` is not a job, though: the file may have been edited between the runs
(a step retargeted, one inserted before the failed one). So a step's checkpoint is only used by
the job it was made by, compared on the job's identity (what the job fingerprints its checkpoint
with, see state/checkpoint.py):

    checkpoint found at the step's place        the step
    none                                        runs from the beginning
    of another job: other tables, other files   runs from the beginning; the checkpoint is moved
      (the identity outside HOW_FIELDS)           aside (``<name>.superseded-<UTC>``), never resumed
    unfinished, same tables, other code/options  resumes from it (invariant 2)
    unfinished, other scan segments              runs from the beginning (its positions are places
                                                   in a scan of that many segments), moved aside
    finished, same job                           a no-op: its counts are the ones reported
    finished, other code or options              not run again, with a warning and a ``kept`` note in
                                                   its history entry: its data is what that code
                                                   wrote (a transform defined in the migration file
                                                   is identified by the file's hash, so fixing a
                                                   later step edits it; run again, an update that
                                                   raises a price would raise it twice, a copy would
                                                   overwrite what later steps changed). Move its
                                                   checkpoint aside to run it as written now
    finished with dead letters                   runs again (invariant 1)
    unreadable or not matching its checksum      refused, naming the file to move aside

Invariants:
1. A step that dead-lettered items fails the migration (its data is not all there) with exit 3
   (StepDeadLettered; a verify's differences: exit 4); rerun after the fix, that step starts
   over (copies and updates are idempotent), not from its end.
2. The checkpoint of a failed step is resumed even when the migration's code or the step's
   options changed since (that is what fixing it means); items it already wrote are not written
   again. Never when the step now reads or writes other tables or files: positions in another
   job's scan would skip items of this one, and its counts would be recorded as this one's.
3. Every step's report summary is kept for the history record, a failed step's too; a step that
   did not resume the checkpoint at its place says so (``started_over``).
4. No message of a step names an option ``migrations up`` lacks (--restart, --force, --resume):
   what to do is said with the commands that exist.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from ..aws.client import DynamoClient
from ..aws.tables import create_table, load_spec, request_from_spec
from ..config import RunOptions, TableRef
from ..core.items import KeySchema
from ..errors import (
    EXIT_DEAD_LETTERS,
    EXIT_DIFFERENCES,
    DdbMigrateError,
    FatalError,
    TableNotFoundError,
    UsageError,
)
from ..jobs.copy import copy_identity, copy_table
from ..jobs.import_files import import_files
from ..jobs.update import update_identity, update_table
from ..reporting.report import Report
from ..state.checkpoint import HOW_FIELDS, CheckpointState, CheckpointStore
from .history import clip

log = logging.getLogger("ddbmigrate.migrations")

Confirm = Callable[[str], bool]
# The job identity a step would checkpoint under, from the step's options (see _checkpoint_mode).
Identity = Callable[[RunOptions], Dict[str, Any]]
RUN_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(RunOptions))
RUN_AGAIN = "run `ddbmigrate migrations up` again"
# The tail of a checkpoint refusal that names the single-job commands' options.
_JOB_ADVICE = re.compile(r"(?:;|:) (?:use --|resume with --segments).*$")
# A job's own advice ("rerun the same command with --resume") is wrong inside a migration: the
# migrations commands have no --resume, a plain `up` resumes the migration from its checkpoints.
_JOB_RESUME = re.compile(r"(?:re)?run (?:the same command )?with --resume|(?<=and )--resume")


@dataclass(frozen=True)
class AwsSettings:
    """Where the migration's tables live (the CLI's --region/--profile/--endpoint-url/--role-arn)."""

    region: Optional[str] = None
    profile: Optional[str] = None
    endpoint_url: Optional[str] = None
    role_arn: Optional[str] = None

    def ref(self, table: Union[str, TableRef]) -> TableRef:
        if isinstance(table, TableRef):
            return table
        return TableRef(table, region=self.region, profile=self.profile, endpoint_url=self.endpoint_url,
                        role_arn=self.role_arn)


class StepFailed(FatalError):
    """A migration step ended with items dead-lettered or differences found (exit 1 as such;
    the two subclasses below carry the project's codes for those outcomes)."""


class StepDeadLettered(StepFailed):
    """A step dead-lettered items: the migration fails (never recorded applied), exit 3 as any
    job done with dead letters."""

    exit_code = EXIT_DEAD_LETTERS


class StepDiffered(StepFailed):
    """A ``ctx.verify`` found differences: the migration fails, exit 4 as ``verify``'s."""

    exit_code = EXIT_DIFFERENCES


class MigrationContext:
    """The ``ctx`` of one migration run; see the module docstring."""

    def __init__(self, migration_id: str, settings: AwsSettings, *,
                 state_dir: str = os.path.join(".ddbmigrate", "migrations"), options: Optional[RunOptions] = None,
                 confirm: Optional[Confirm] = None, again: str = RUN_AGAIN) -> None:
        self.id = migration_id
        self.again = again  # how to go on after a failure: `up` again, or `down` again for a downgrade
        self.settings = settings
        self.state_dir = os.path.join(state_dir, migration_id)
        self.base = options or RunOptions()
        self.confirm = confirm or (lambda message: False)
        self.summary: List[Dict[str, Any]] = []
        self._steps = 0
        self._started_over: Optional[str] = None  # why this step's checkpoint was not resumed
        # A finished step whose code changed since: (why, its checkpoint), not run again.
        self._kept: Optional[Tuple[str, CheckpointState]] = None

    # ------------------------------------------------------------------ helpers

    def table(self, name: Union[str, TableRef]) -> TableRef:
        """A table of this run's account and region (a TableRef is taken as it is)."""
        return self.settings.ref(name)

    def _next(self, kind: str) -> str:
        self._steps += 1
        return os.path.join(self.state_dir, f"{self._steps:02d}-{kind}.checkpoint.json")

    def _options(self, checkpoint: str, overrides: Mapping[str, Any], identity: Identity) -> RunOptions:
        unknown = sorted(set(overrides) - RUN_OPTION_NAMES)
        if unknown:
            raise UsageError(f"migration {self.id}: unknown job option(s) {', '.join(unknown)}")
        kw: Dict[str, Any] = {f.name: getattr(self.base, f.name) for f in dataclasses.fields(RunOptions)}
        kw.update({"checkpoint": checkpoint, "resume": False, "restart": False, "force": False,
                   "dead_letter": None, "report": None, "transform": None})
        kw.update(overrides)
        opts = RunOptions(**kw)
        if opts.checkpoint is None:
            return opts
        resume, restart, force = self._checkpoint_mode(opts.checkpoint, identity(opts), opts)
        # A migration that passes one of these itself means it.
        return dataclasses.replace(opts, resume=overrides.get("resume", resume),
                                   restart=overrides.get("restart", restart), force=overrides.get("force", force))

    def _checkpoint_mode(self, path: str, want: Dict[str, Any], opts: RunOptions) -> Tuple[bool, bool, bool]:
        """(resume, restart, force) for the step's checkpoint at ``path``; see the module docstring.

        ``want``: the identity the step's job will have. Its segments are the checkpoint's unless
        the step names some (the job resumes with the checkpoint's count), so they are compared
        only then; keys the job adds later (an import's file count) are not known here.
        """
        self._started_over = self._kept = None
        if not os.path.exists(path):
            return False, False, False
        try:
            state = CheckpointStore(path).load()
        except UsageError as e:
            raise UsageError(self._advice(e.message, path)) from None
        if state is None:
            return False, False, False
        if state.state == "done" and int(state.counters.get("dead_lettered") or 0) > 0:
            return False, True, False
        want = {k: v for k, v in want.items() if k != "segments"}
        if opts.segments:
            want["segments"] = opts.segments
        diff = sorted(k for k in want if want[k] != state.job.get(k))
        where = [k for k in diff if k not in HOW_FIELDS]
        if where:
            why = f"its checkpoint is of another job ({_what(state)}; differs in: {', '.join(where)})"
        elif state.state == "done" and diff:
            # Finished: not run again (see the module docstring), said in the log and the history.
            self._kept = (f"finished before with other code or options (differs in: {', '.join(diff)}); not run "
                          f"again: its data is what that code wrote (move {path} aside to run it as written now)",
                          state)
            log.warning("migration %s, step %d: %s", self.id, self._steps, self._kept[0])
            return False, False, False
        elif state.state != "done" and "segments" in diff:
            why = (f"its checkpoint was made with {state.job.get('segments')} scan segments, not "
                   f"{opts.segments}: its positions mean nothing for this scan")
        else:
            return True, False, bool(diff)
        self._set_aside(path, why)
        return False, True, False

    def _set_aside(self, path: str, why: str) -> None:
        """Move the checkpoint at ``path`` (and its clean phase's) out of the step's way, kept."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = f"{path}.superseded-{stamp}"
        n = 1
        while os.path.exists(aside):
            aside, n = f"{path}.superseded-{stamp}-{n}", n + 1
        os.replace(path, aside)
        if os.path.exists(path + ".clean"):
            os.replace(path + ".clean", aside + ".clean")
        self._started_over = f"{why}; that checkpoint is kept as {aside}"
        log.warning("migration %s, step %d: %s; this step runs from the beginning (the old checkpoint is kept "
                    "as %s)", self.id, self._steps, why, aside)

    def _advice(self, message: str, path: str) -> str:
        """A checkpoint refusal, with what to do in a migration instead of a job's --restart/--force."""
        head = _JOB_ADVICE.sub("", message)
        return (f"step {self._steps}: {head}; move {path} aside (or delete it) to run this step from the "
                f"beginning, then {self.again}")

    def _record(self, kind: str, label: str, report: Optional[Report], error: Optional[BaseException]) -> None:
        entry: Dict[str, Any] = {"step": self._steps, "kind": kind, "what": label}
        if self._started_over:
            entry["started_over"] = self._started_over
            self._started_over = None
        if report is not None:
            entry.update({"status": report.status, "exit_code": report.exit_code,
                          "counters": {k: v for k, v in report.counters.items() if v},
                          "seconds": report.duration_seconds, "checkpoint": report.checkpoint_path})
            if report.dead_lettered:
                entry["dead_letters"] = report.dead_letter_path
            if report.extra.get("unsettled"):
                # A stopped step's writes past its checkpoint are in the table too (its counters
                # cover the checkpoint only): the record says so, as the report does.
                entry["unsettled"] = dict(report.extra["unsettled"])
        if error is not None:
            # (Invariant 4: the step's error, as the migration's, says what to run, not --resume.)
            entry["error"] = clip(_JOB_RESUME.sub(self.again, error.one_line()) if isinstance(error, DdbMigrateError)
                                  else f"{type(error).__name__}: {error}")
        self.summary.append(entry)

    def _run(self, kind: str, label: str, opts: RunOptions, call: Callable[[], Report]) -> Report:
        kept, self._kept = self._kept, None
        if kept is not None:
            why, state = kept
            report = Report(job=kind, status="done", counters=dict(state.counters))
            self._record(kind, label, report, None)
            self.summary[-1]["kept"] = why
            return report
        try:
            report = call()
        except BaseException as e:
            cp = opts.checkpoint
            if isinstance(e, DdbMigrateError) and cp and cp in e.message and _JOB_ADVICE.search(e.message):
                # A refusal of what the step could not check before the job (an import's file
                # count, a --clean-target's own checkpoint), in the terms of a migration.
                e.message = self._advice(e.message, cp + ".clean" if cp + ".clean" in e.message else cp)
                e.args = (e.message,)
                e.hint = None
            self._record(kind, label, getattr(e, "report", None), e)
            raise
        self._record(kind, label, report, None)
        if report.dead_lettered:
            raise StepDeadLettered(f"step {self._steps} ({kind} {label}): {report.dead_lettered} item(s) "
                                   f"dead-lettered (see {report.dead_letter_path}); fix the cause and {self.again}")
        return report

    # ------------------------------------------------------------------ the jobs

    def create_table(self, spec: Union[str, Mapping[str, Any]], table: Optional[str] = None) -> Dict[str, Any]:
        """Create a table from a CloudFormation-style spec (a mapping, or a YAML/JSON file path),
        waiting until it is ACTIVE. A table that already exists with the spec's key is left as it is."""
        self._steps += 1
        data = load_spec(spec) if isinstance(spec, str) else dict(spec)
        req, ttl = request_from_spec(data, spec if isinstance(spec, str) else f"(migration {self.id})", table)
        name = req["TableName"]
        ref = self.table(name)
        client = DynamoClient(ref, pool_size=4, retry=self.base.retry)
        try:
            try:
                desc = client.describe_table()
                want = KeySchema.from_table_description(req)
                have = KeySchema.from_table_description(desc)
                if want != have:
                    raise UsageError(f"migration {self.id}: table {name} exists with key {have.to_dict()}, not the "
                                     f"spec's {want.to_dict()}")
                self.summary.append({"step": self._steps, "kind": "create_table", "what": name, "status": "exists"})
                return desc
            except TableNotFoundError:
                pass
            desc = create_table(client, req, ttl_attribute=ttl)
            self.summary.append({"step": self._steps, "kind": "create_table", "what": name, "status": "created"})
            return desc
        finally:
            client.close()

    def copy(self, source: Union[str, TableRef], target: Union[str, TableRef], *, transform: Any = None,
             create_target: bool = False, target_spec: Optional[str] = None, clean_target: bool = False,
             **options: Any) -> Report:
        """Copy ``source`` into ``target`` (new or existing), re-modelled by ``transform``."""
        path = self._next("copy")
        src, dst = self.table(source), self.table(target)
        tf = _transform(transform)

        def identity(o: RunOptions) -> Dict[str, Any]:
            # As copy_table makes it (a transform given as an option is loaded by it the same way).
            loaded = tf if tf is not None or not o.transform else _transform(o.transform)
            return copy_identity(src, dst, [src.table, dst.table], 0, loaded, o)

        opts = self._options(path, options, identity)
        return self._run("copy", f"{src.table} -> {dst.table}", opts, lambda: copy_table(
            src, dst, opts, create_target=create_target, target_spec=target_spec, clean_target=clean_target,
            confirm=self.confirm, transform=tf))

    def update(self, table: Union[str, TableRef], transform: Any, *, version_attribute: Optional[str] = None,
               max_races: int = 10, **options: Any) -> Report:
        """Transform ``table``'s items in place, safe under live writes (``ddbmigrate update``)."""
        path = self._next("update")
        ref = self.table(table)

        def identity(o: RunOptions) -> Dict[str, Any]:
            chosen = transform if transform is not None else o.transform
            return update_identity(ref, 0, _transform(chosen), version_attribute, o) if chosen is not None \
                else {"job": "update", "names": [ref.table], "table": ref.identity()}

        opts = self._options(path, options, identity)
        return self._run("update", ref.table, opts, lambda: update_table(
            ref, opts, transform=transform, version_attribute=version_attribute, max_races=max_races))

    def import_files(self, source: str, table: Union[str, TableRef], *, transform: Any = None,
                     create_target: bool = False, spec: Optional[str] = None, input_format: str = "auto",
                     **options: Any) -> Report:
        """Load files (an export folder, JSON lines, ``s3://...``) into ``table``."""
        path = self._next("import")
        ref = self.table(table)
        tf = _transform(transform)

        def identity(o: RunOptions) -> Dict[str, Any]:
            # import_files adds what its plan finds (kind, file count): a finished step that
            # differs only there is refused by the job, and _run says what to do.
            loaded = tf if tf is not None or not o.transform else _transform(o.transform)
            return {"job": "import", "names": [ref.table], "source": _import_source(source),
                    "target": ref.identity(), "transform": loaded.name if loaded else None,
                    "transform_hash": loaded.code_hash if loaded else None, **o.fingerprint_fields()}

        opts = self._options(path, options, identity)
        return self._run("import", f"{source} -> {ref.table}", opts, lambda: import_files(
            source, ref, opts, create_target=create_target, spec=spec, input_format=input_format, transform=tf))

    def verify(self, source: Union[str, TableRef], target: Union[str, TableRef], *, transform: Any = None,
               fail: bool = True, **kw: Any) -> Any:
        """Compare ``target`` with ``transform(source)``; differences fail the migration unless ``fail=False``."""
        from ..verify import verify_tables

        self._steps += 1
        src, dst = self.table(source), self.table(target)
        tf = _transform(transform)
        kw.setdefault("progress", self.base.progress)
        kw.setdefault("retry", self.base.retry)
        label = f"{src.table} vs {dst.table}"
        try:
            rep = verify_tables(src, dst, transform=tf, **kw)
        except BaseException as e:
            self._record("verify", label, getattr(e, "report", None), e)
            raise
        self._record("verify", label, rep, None)
        if fail and rep.exit_code:
            raise StepDiffered(f"step {self._steps} (verify {label}): the tables differ "
                               f"({ {k: v for k, v in rep.counters.items() if v} })")
        return rep


def _transform(transform: Any) -> Any:
    from ..core.transform import as_transform

    return as_transform(transform) if transform is not None else None


def _import_source(source: str) -> str:
    """The source as import_files records it in its identity."""
    from ..storage.stores import normalize

    return normalize(source) if "://" in source or not any(c in source for c in "*?[") else source


def _what(state: CheckpointState) -> str:
    names = [str(n) for n in state.job.get("names") or []]
    return f"{state.job.get('job', 'job')} {' -> '.join(names)}".strip()


__all__ = ["AwsSettings", "MigrationContext", "StepDeadLettered", "StepDiffered", "StepFailed"]
