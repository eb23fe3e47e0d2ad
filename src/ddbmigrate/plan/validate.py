"""Validating a plan: everything :func:`~ddbmigrate.plan.load.load_plan` checks, then what the
plan needs from this build and from AWS.

Beyond the file itself, :func:`validate_plan` checks that every job's function (and engine) is
in this build, that transforms and table specs load, and, with ``check_tables``, that tables
exist and DescribeTable is permitted, that targets exist or some job creates them, that
point-in-time recovery is on for native exports, and that a sample of source items, transformed,
fits the target's key schema.

Invariants: validation never writes (DescribeTable, DescribeContinuousBackups and one small Scan
per job are its only calls), and every problem is one line at the ``file:line`` of the field to
change.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..config import RetryPolicy, TableRef
from ..errors import DdbMigrateError, UsageError
from ..jobs import registry
from .load import Plan, PlanJob, read_plan, ref_key
from .yaml_lines import PlanError, PlanProblem


def validate_plan(path: str, *, check_tables: bool = True, sample: int = 20,
                  client_factory: Optional[Callable[[TableRef], Any]] = None) -> List[PlanProblem]:
    """Every problem with the plan at ``path`` (empty list: it would run).

    Checks the schema (unknown fields, types, kinds, names, dependencies), that transforms and
    table specs load, and with ``check_tables``: that tables exist and are readable
    (DescribeTable, which also tests that permission), that targets exist or will be created,
    that PITR is on for native exports, and that the transform's output for ``sample`` source
    items has the target table's key schema.
    """
    try:
        plan, problems = read_plan(path)
    except PlanError as e:
        return list(e.problems)

    def add(job: PlanJob, key: str, msg: str) -> None:
        problems.append(PlanProblem(path, job.line_of(key), f"{job.name}: {msg}", job.name))

    transforms: Dict[str, Any] = {}
    for job in plan.jobs:
        if job.transform:
            from ..core.transform import load_transform

            try:
                transforms[job.name] = load_transform(job.transform)
            except DdbMigrateError as e:
                add(job, "transform", e.one_line())
        for key, p in (("target_spec", job.target_spec), ("spec", job.spec)):
            if p:
                from ..schema.spec import load_definition

                try:  # every setting checked, not only the keys: a bad one stops the plan before it starts
                    load_definition(p, job.target.table if job.target else None)
                except DdbMigrateError as e:
                    add(job, key, e.one_line())
        exported = [j.path_to for j in plan.jobs if j.kind == "export" and j.path_to]
        if job.kind == "import" and job.path_from and "://" not in job.path_from \
                and not os.path.exists(job.path_from) \
                and not any(job.path_from == e or job.path_from.startswith(e.rstrip("/") + "/") for e in exported):
            add(job, "from", f"input {job.path_from} does not exist (and no export job of this plan writes it)")
        _check_functions(job, add)
    if check_tables:
        # In the same pass as the problems above: one run of `plan validate` lists them all.
        _TableChecks(plan, transforms, add, sample, client_factory).run()
    return sorted(problems, key=lambda p: (p.line or 0))


def _check_functions(job: PlanJob, add: Callable[[PlanJob, str, str], None]) -> None:
    """What the job needs from this build: its function, its engine, verify for verify_after."""
    try:
        registry.job_function(job.kind, native=job.native)
    except UsageError as e:
        add(job, "kind", e.message)
        return
    if job.engine is not None:
        try:
            registry.job_function(job.kind, native=job.native, engine=job.engine)
        except UsageError as e:
            add(job, "engine", e.message)
    if job.verify_after:
        try:
            registry.job_function("verify", engine=job.passed_engine())
        except UsageError as e:
            add(job, "verify_after", e.message)


class _TableChecks:
    def __init__(self, plan: Plan, transforms: Dict[str, Any], add: Callable[[PlanJob, str, str], None],
                 sample: int, client_factory: Optional[Callable[[TableRef], Any]]) -> None:
        self.plan = plan
        self.transforms = transforms
        self.add = add
        self.sample = sample
        self.factory = client_factory
        self.clients: Dict[TableRef, Any] = {}
        self.descs: Dict[TableRef, Tuple[Optional[Dict[str, Any]], Optional[str]]] = {}
        # Targets some job creates: others may rely on them without create_target.
        self.created = {ref_key(j.target) for j in plan.jobs
                        if j.target is not None and (j.create_target or j.target_spec or (j.native and j.spec))}

    def client(self, ref: TableRef) -> Any:
        if ref not in self.clients:
            if self.factory is not None:
                self.clients[ref] = self.factory(ref)
            else:
                from ..aws.client import DynamoClient

                self.clients[ref] = DynamoClient(ref, pool_size=2, retry=RetryPolicy(max_attempts=3))
        return self.clients[ref]

    def describe(self, ref: TableRef) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
        """(description, None) or (None, why not): 'missing' or a permission/other problem."""
        if ref not in self.descs:
            from ..errors import TableNotFoundError

            try:
                self.descs[ref] = (self.client(ref).describe_table(), None)
            except TableNotFoundError:
                self.descs[ref] = (None, "missing")
            except DdbMigrateError as e:
                code = e.code or ""
                if "AccessDenied" in code or "UnrecognizedClient" in code:
                    self.descs[ref] = (None, f"no permission to DescribeTable {ref.describe()} ({code})")
                else:
                    self.descs[ref] = (None, f"cannot describe {ref.describe()}: {e.one_line()}")
        return self.descs[ref]

    def run(self) -> None:
        for job in self.plan.jobs:
            try:
                self.check(job)
            except DdbMigrateError as e:
                self.add(job, "kind", e.one_line())

    def check(self, job: PlanJob) -> None:
        sdesc: Optional[Dict[str, Any]] = None
        if job.source is not None:
            sdesc, why = self.describe(job.source)
            if why == "missing":
                # A source another job creates first (after:) is fine.
                if ref_key(job.source) not in self.created:
                    self.add(job, "source", f"source table {job.source.describe()} does not exist")
            elif why:
                self.add(job, "source", why)
        tkeys = None
        if job.target is not None:
            tdesc, why = self.describe(job.target)
            if why == "missing":
                planned = self.planned_target(job, sdesc)
                if planned is not None:
                    tdesc = planned
                elif job.kind == "import" and job.native:
                    tdesc = None
                elif ref_key(job.target) in self.created:
                    tdesc = self.planned_for_key(job.target)
                else:
                    self.add(job, "target", f"target table {job.target.describe()} does not exist; add "
                             "create_target: true or target_spec: FILE")
            elif why:
                self.add(job, "target", why)
            elif job.kind == "import" and job.native:
                self.add(job, "target", f"native import creates {job.target.table}, which already exists")
            if tdesc is not None:
                from ..core.items import KeySchema

                tkeys = KeySchema.from_table_description(tdesc)
        if job.kind == "export" and job.native and sdesc is not None and job.source is not None:
            try:
                cb = self.client(job.source).control.describe_continuous_backups(TableName=job.source.table)
                status = cb["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {}) \
                    .get("PointInTimeRecoveryStatus")
                if status != "ENABLED":
                    self.add(job, "native", f"point-in-time recovery is {status or 'off'} on {job.source.table}: "
                             "a native export needs it (aws dynamodb update-continuous-backups ...)")
            except Exception as e:  # not permitted / not supported: say so, do not guess
                self.add(job, "native", f"cannot check point-in-time recovery on {job.source.table}: "
                         f"{type(e).__name__}: {str(e)[:200]}")
        if sdesc is not None and tkeys is not None and job.kind in ("copy", "replicate", "verify"):
            self.check_keys(job, tkeys)

    def planned_target(self, job: PlanJob, sdesc: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        from ..aws.tables import load_spec, spec_to_request

        spec = job.target_spec or (job.spec if job.native else None)
        if spec and job.target is not None:
            return spec_to_request(load_spec(spec), table_name=job.target.table)
        if job.create_target and sdesc is not None:
            return sdesc
        return None

    def planned_for_key(self, ref: TableRef) -> Optional[Dict[str, Any]]:
        for j in self.plan.jobs:
            if j.target is not None and ref_key(j.target) == ref_key(ref):
                sdesc = self.describe(j.source)[0] if j.source is not None else None
                planned = self.planned_target(j, sdesc)
                if planned is not None:
                    return planned
        return None

    def check_keys(self, job: PlanJob, tkeys: Any) -> None:
        """Sample source items, transform them, and check they fit the target's key schema."""
        assert job.source is not None
        try:
            page = self.client(job.source).call("Scan", {"TableName": job.source.table, "Limit": self.sample},
                                                table=job.source.table)
        except DdbMigrateError as e:
            self.add(job, "source", f"cannot Scan {job.source.describe()}: {e.one_line()}")
            return
        items = page.get("Items") or []
        tr = self.transforms.get(job.name)
        bad: List[str] = []
        outputs = 0
        for item in items:
            if tr is not None:
                from ..core.transform import TransformContext

                try:
                    outs = tr(item, TransformContext(source_table=job.source.table,
                                                     target_table=job.target.table if job.target else None))
                except DdbMigrateError as e:
                    bad.append(e.one_line())
                    continue
            else:
                outs = [item]
            for o in outs:
                outputs += 1
                p = tkeys.problem(o)
                if p:
                    bad.append(p)
        if bad:
            what = "transformed " if tr is not None else ""
            self.add(job, "transform" if tr is not None else "target",
                     f"{len(bad)} of {outputs or len(items)} sampled {what}items do not fit the key schema of "
                     f"{job.target.table if job.target else '?'} ({tkeys.hash_name}"
                     f"{'/' + tkeys.range_name if tkeys.range_name else ''}), e.g. {bad[0]}")
