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

Invariants:
1. A step that dead-lettered items fails the migration (its data is not all there); rerun
   after the fix, that step starts over (copies and updates are idempotent), not from its end.
2. The checkpoint of a failed step is resumed even when the migration's code changed since
   (that is what fixing it means); items it already wrote are not written again.
3. Every step's report summary is kept for the history record, a failed step's too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from ..aws.client import DynamoClient
from ..aws.tables import create_table, load_spec, request_from_spec
from ..config import RunOptions, TableRef
from ..core.items import KeySchema
from ..errors import DdbMigrateError, FatalError, TableNotFoundError, UsageError
from ..jobs.copy import copy_table
from ..jobs.import_files import import_files
from ..jobs.update import update_table
from ..reporting.report import Report
from ..state.checkpoint import CheckpointStore

log = logging.getLogger("ddbmigrate.migrations")

Confirm = Callable[[str], bool]
RUN_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(RunOptions))


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
    """A migration step ended with items dead-lettered or differences found."""


class MigrationContext:
    """The ``ctx`` of one migration run; see the module docstring."""

    def __init__(self, migration_id: str, settings: AwsSettings, *,
                 state_dir: str = os.path.join(".ddbmigrate", "migrations"), options: Optional[RunOptions] = None,
                 confirm: Optional[Confirm] = None) -> None:
        self.id = migration_id
        self.settings = settings
        self.state_dir = os.path.join(state_dir, migration_id)
        self.base = options or RunOptions()
        self.confirm = confirm or (lambda message: False)
        self.summary: List[Dict[str, Any]] = []
        self._steps = 0

    # ------------------------------------------------------------------ helpers

    def table(self, name: Union[str, TableRef]) -> TableRef:
        """A table of this run's account and region (a TableRef is taken as it is)."""
        return self.settings.ref(name)

    def _next(self, kind: str) -> str:
        self._steps += 1
        return os.path.join(self.state_dir, f"{self._steps:02d}-{kind}.checkpoint.json")

    def _options(self, checkpoint: str, overrides: Mapping[str, Any]) -> RunOptions:
        unknown = sorted(set(overrides) - RUN_OPTION_NAMES)
        if unknown:
            raise UsageError(f"migration {self.id}: unknown job option(s) {', '.join(unknown)}")
        resume, restart = _resume_mode(checkpoint)
        kw: Dict[str, Any] = {f.name: getattr(self.base, f.name) for f in dataclasses.fields(RunOptions)}
        kw.update({"checkpoint": checkpoint, "resume": resume, "restart": restart, "force": resume,
                   "dead_letter": None, "report": None, "transform": None})
        kw.update(overrides)
        return RunOptions(**kw)

    def _record(self, kind: str, label: str, report: Optional[Report], error: Optional[BaseException]) -> None:
        entry: Dict[str, Any] = {"step": self._steps, "kind": kind, "what": label}
        if report is not None:
            entry.update({"status": report.status, "exit_code": report.exit_code,
                          "counters": {k: v for k, v in report.counters.items() if v},
                          "seconds": report.duration_seconds, "checkpoint": report.checkpoint_path})
            if report.dead_lettered:
                entry["dead_letters"] = report.dead_letter_path
        if error is not None:
            entry["error"] = error.one_line() if isinstance(error, DdbMigrateError) \
                else f"{type(error).__name__}: {error}"
        self.summary.append(entry)

    def _run(self, kind: str, label: str, call: Callable[[], Report]) -> Report:
        try:
            report = call()
        except BaseException as e:
            self._record(kind, label, getattr(e, "report", None), e)
            raise
        self._record(kind, label, report, None)
        if report.dead_lettered:
            raise StepFailed(f"step {self._steps} ({kind} {label}): {report.dead_lettered} item(s) dead-lettered "
                             f"(see {report.dead_letter_path}); fix the cause and run `migrations up` again")
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
        opts = self._options(path, options)
        return self._run("copy", f"{src.table} -> {dst.table}", lambda: copy_table(
            src, dst, opts, create_target=create_target, target_spec=target_spec, clean_target=clean_target,
            confirm=self.confirm, transform=tf))

    def update(self, table: Union[str, TableRef], transform: Any, *, version_attribute: Optional[str] = None,
               max_races: int = 10, **options: Any) -> Report:
        """Transform ``table``'s items in place, safe under live writes (``ddbmigrate update``)."""
        path = self._next("update")
        ref = self.table(table)
        opts = self._options(path, options)
        return self._run("update", ref.table, lambda: update_table(
            ref, opts, transform=transform, version_attribute=version_attribute, max_races=max_races))

    def import_files(self, source: str, table: Union[str, TableRef], *, transform: Any = None,
                     create_target: bool = False, spec: Optional[str] = None, input_format: str = "auto",
                     **options: Any) -> Report:
        """Load files (an export folder, JSON lines, ``s3://...``) into ``table``."""
        path = self._next("import")
        ref = self.table(table)
        opts = self._options(path, options)
        tf = _transform(transform)
        return self._run("import", f"{source} -> {ref.table}", lambda: import_files(
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
            raise StepFailed(f"step {self._steps} (verify {label}): the tables differ "
                             f"({ {k: v for k, v in rep.counters.items() if v} })")
        return rep


def _transform(transform: Any) -> Any:
    from ..core.transform import as_transform

    return as_transform(transform) if transform is not None else None


def _resume_mode(path: str) -> "tuple[bool, bool]":
    """(resume, restart) for a step's checkpoint; see the module docstring's invariants."""
    if not os.path.exists(path):
        return False, False
    state = CheckpointStore(path).load()
    if state is None:
        return False, False
    if state.state == "done" and int(state.counters.get("dead_lettered") or 0) > 0:
        return False, True
    return True, False


__all__ = ["AwsSettings", "MigrationContext", "StepFailed"]
