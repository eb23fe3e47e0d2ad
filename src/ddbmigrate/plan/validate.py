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
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ..config import RetryPolicy, TableRef
from ..errors import DdbMigrateError, UsageError
from ..jobs import registry
from .load import Plan, PlanJob, read_plan, ref_key
from .yaml_lines import PlanError, PlanProblem


def validate_plan(path: str, *, check_tables: bool = True, sample: int = 20,
                  client_factory: Optional[Callable[[TableRef], Any]] = None,
                  warnings: Optional[List[PlanProblem]] = None) -> List[PlanProblem]:
    """Every problem with the plan at ``path`` (empty list: it would run).

    Checks the schema (unknown fields, types, kinds, names, dependencies), that transforms and
    table specs load, and with ``check_tables``: that tables exist and are readable
    (DescribeTable, which also tests that permission), that targets exist or will be created,
    that PITR is on for native exports, and that the transform's output for ``sample`` source
    items has the target table's key schema. ``warnings``, when given, receives what would not
    stop the plan but is worth a look (sampled items a job with ``on_error: skip`` would
    dead-letter).
    """
    try:
        plan, problems = read_plan(path)
    except PlanError as e:
        return list(e.problems)

    def add(job: PlanJob, key: Optional[str], msg: str, *, shared: bool = False) -> None:
        """``shared``: the message is about the field's value alone (a spec or transform that does
        not load); when that value is a default, it is said once, at the default's line."""
        if key is None:
            problems.append(PlanProblem(path, job.line, f"{job.name}: {msg}", job.name))
            return
        line = job.line_of(key)
        if shared and key in job.defaulted:
            where = "defaults.transforms" if key == "transform" else f"defaults.{key}"
            problem = PlanProblem(path, line, f"{where}: {msg}")
            if not any(p.line == problem.line and p.message == problem.message for p in problems):
                problems.append(problem)
            return
        problems.append(PlanProblem(path, line, f"{job.name}: {msg}", job.name))

    def warn(job: PlanJob, key: str, msg: str) -> None:
        if warnings is not None:
            warnings.append(PlanProblem(path, job.line_of(key), f"{job.name}: {msg}", job.name))

    # Where the plan keeps its state, and local export folders: a place that takes no folder or
    # file is said now, not by `run` after its first jobs (an internal error, before).
    from ..state.paths import output_path_problem

    state_problem = output_path_problem(os.path.join(plan.state_dir, "probe"), replaced=True)
    if state_problem:
        problems.append(PlanProblem(path, None, f"state_dir {plan.state_dir}: {state_problem}"))
    for job in plan.jobs:
        dest = getattr(job, "path_to", None)
        if job.kind == "export" and isinstance(dest, str) and dest and "://" not in dest:
            dest_problem = output_path_problem(os.path.join(dest, "probe"), replaced=True)
            if dest_problem:
                add(job, "to", f"cannot write the export to {dest}: {dest_problem}")

    transforms: Dict[str, Any] = {}
    bad_specs: Set[str] = set()
    for job in plan.jobs:
        # A defaulted transform without ':' was already reported at its line by read_plan.
        if job.transform and (":" in job.transform or "transform" not in job.defaulted):
            from ..core.transform import load_transform

            try:
                transforms[job.name] = load_transform(job.transform)
            except DdbMigrateError as e:
                add(job, "transform", e.one_line(), shared=True)
        for key, p in (("target_spec", job.target_spec), ("spec", job.spec)):
            if p:
                from ..schema.spec import load_definition

                try:  # every setting checked, not only the keys: a bad one stops the plan before it starts
                    load_definition(p, job.target.table if job.target else None)
                except DdbMigrateError as e:
                    bad_specs.add(p)
                    add(job, key, e.one_line(), shared=True)
        exported = [j.path_to for j in plan.jobs if j.kind == "export" and j.path_to]
        if job.kind == "import" and job.path_from and "://" not in job.path_from \
                and not os.path.exists(job.path_from) \
                and not any(job.path_from == e or job.path_from.startswith(e.rstrip("/") + "/") for e in exported):
            add(job, "from", f"input {job.path_from} does not exist (and no export job of this plan writes it)")
        _check_import_schema(job, exported, add)
        _check_functions(job, add)
    if check_tables:
        # In the same pass as the problems above: one run of `plan validate` lists them all.
        _TableChecks(plan, transforms, add, sample, client_factory, bad_specs, warn).run()
    return sorted(problems, key=lambda p: (p.line or 0))


def _check_import_schema(job: PlanJob, exported: List[str], add: Callable[..., None]) -> None:
    """An import that creates its target without a spec needs files that carry a schema (a
    dynamodump backup); otherwise the run stops at once, after the jobs before it ran."""
    if job.kind != "import" or job.native or not job.create_target or job.spec or job.target_spec:
        return
    src = job.path_from
    if not src or "://" in src or any(c in src for c in "*?["):
        return  # S3 or a glob: only the run reads it
    if os.path.exists(src):
        from ..storage.export_layout import discover
        from ..storage.stores import LocalStorage

        try:
            found = discover(src, LocalStorage(), table=job.target.table if job.target else None)
        except DdbMigrateError:
            return  # not this check's to report: the run (or the input check) says what is wrong
        if found.schema is not None:
            return
        what = f"{src} carries no table schema"
    elif any(src == e or src.startswith(e.rstrip("/") + "/") for e in exported):
        what = f"the export job that writes {src} writes no table schema"
    else:
        return
    # The fix is on the job (a spec), wherever create_target came from.
    key = None if "create_target" in job.defaulted else "create_target"
    add(job, key, f"create_target needs a table spec: {what}; add target_spec: FILE")


def _check_functions(job: PlanJob, add: Callable[..., None]) -> None:
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
    def __init__(self, plan: Plan, transforms: Dict[str, Any], add: Callable[..., None],
                 sample: int, client_factory: Optional[Callable[[TableRef], Any]], bad_specs: Set[str],
                 warn: Callable[[PlanJob, str, str], None]) -> None:
        self.plan = plan
        self.bad_specs = bad_specs  # reported where they are written; not again as a table problem
        self.warn = warn
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
                if self.spec_of(job) in self.bad_specs:
                    tdesc = None
                elif planned is not None:
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

    @staticmethod
    def spec_of(job: PlanJob) -> Optional[str]:
        return job.target_spec or (job.spec if job.native else None)

    def planned_target(self, job: PlanJob, sdesc: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        from ..aws.tables import load_spec, spec_to_request

        spec = self.spec_of(job)
        if spec in self.bad_specs:
            return None
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
        raised: List[str] = []  # one per sampled item the transform raised on
        misfit: List[str] = []  # one per sampled item with an output that does not fit
        for item in items:
            if tr is not None:
                from ..core.transform import TransformContext

                try:
                    outs = tr(item, TransformContext(source_table=job.source.table,
                                                     target_table=job.target.table if job.target else None))
                except DdbMigrateError as e:
                    raised.append(e.one_line())
                    continue
            else:
                outs = [item]
            problem = next((p for p in (tkeys.problem(o) for o in outs) if p), None)
            if problem:
                misfit.append(problem)
        table = job.target.table if job.target else "?"
        schema = f"{tkeys.hash_name}{'/' + tkeys.range_name if tkeys.range_name else ''}"
        if raised and job.options.get("on_error") == "skip":
            # The run dead-letters these items with their reason and goes on: worth a look, not a stop.
            self.warn(job, "transform", f"the transform raised on {len(raised)} of {len(items)} sampled items; "
                      f"with on_error: skip they will be dead-lettered, e.g. {raised[0]}")
            raised = []
        bad = raised + misfit
        if bad:
            what = "transformed " if tr is not None else ""
            self.add(job, "transform" if tr is not None else "target",
                     f"{len(bad)} of {len(items)} sampled {what}items do not fit the key schema of "
                     f"{table} ({schema}), e.g. {bad[0]}")
