"""Loading a plan file: YAML with a line for every node, checked into a :class:`Plan`.

The format (``docs/plans.md`` has every field)::

    version: 1
    defaults:
      source: {region: eu-west-1, role_arn: arn:aws:iam::111111111111:role/migrate-read}
      target: {region: eu-west-1, role_arn: arn:aws:iam::222222222222:role/migrate-write}
      options: {max_write_units: 2000, segments: 8}
      engine: processes
      create_target: true
      verify_after: true
      transforms: {users: transforms/users.py:to_v2}
    jobs:
      - {kind: copy, source: users, target: users}
      - {kind: copy, source: orders, target: orders, options: {max_write_units: 500}, engine: spark}

Invariants:

* One pass reports every problem, each as one line located at ``file:line`` (the line of the
  offending key, else of its closest parent), so a plan is fixed in one edit, not one per run.
* A loaded :class:`PlanJob` has every default applied and every relative path (transforms, specs,
  files, state_dir) resolved against the plan file's folder, so a plan runs from anywhere.
* Only safe YAML types are constructed; no string in a plan is evaluated.
* A job's *definition hash* covers what it does, not how it is scheduled: the engine fields are
  left out, so moving a finished job to another engine does not make ``--resume`` run it again,
  and plan states written before engines existed still resume.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import orjson

from ..config import RetryPolicy, RunOptions, TableRef
from ..engine import ENGINES
from ..errors import DdbMigrateError, UsageError
from ..jobs.registry import KINDS, job_kind
from .yaml_lines import Path_, PlanError, PlanProblem, load_yaml

TABLE_FIELDS = ("table", "region", "profile", "role_arn", "endpoint_url", "external_id", "role_session_name")
ACCOUNT_FIELDS = tuple(f for f in TABLE_FIELDS if f != "table")
_NUM = (int, float)
OPTION_TYPES: Dict[str, Any] = {
    "segments": int, "writers": int, "mode": str, "on_error": str, "max_errors": int,
    "max_read_units": _NUM, "max_write_units": _NUM, "read_percent": _NUM, "write_percent": _NUM,
    "max_attempts": int, "consistent_read": bool, "dead_letters": bool,
    "max_cost": _NUM,  # USD: `run` refuses to start the job when its estimate is above (plan/estimate.py)
}
# How a job is scheduled (threads, processes or Spark), per job or as a default.
ENGINE_FIELDS = ("engine", "processes", "spark_master")
COMMON_FIELDS = ("name", "kind", "after", "options", "args") + ENGINE_FIELDS
KIND_FIELDS: Dict[str, Tuple[str, ...]] = {
    "copy": ("source", "target", "transform", "create_target", "target_spec", "clean_target", "verify_after", "confirm"),
    "export": ("source", "to", "native", "export_time", "incremental"),
    "import": ("from", "target", "transform", "create_target", "target_spec", "native", "spec", "verify_after"),
    "verify": ("source", "target", "transform"),
    "clean": ("target", "confirm"),
    "replicate": ("source", "target", "transform", "create_target", "target_spec"),
    "update": ("target", "transform"),
}
REQUIRED: Dict[str, Tuple[str, ...]] = {
    "copy": ("source", "target"), "export": ("source", "to"), "import": ("from", "target"),
    "verify": ("source", "target"), "clean": ("target",), "replicate": ("source", "target"),
    "update": ("target", "transform"),
}
TOP_FIELDS = ("version", "name", "state_dir", "parallel", "fail_fast", "defaults", "jobs")
DEFAULT_FIELDS = ("source", "target", "options", "create_target", "target_spec", "verify_after", "transforms",
                  *ENGINE_FIELDS)
_TRANSFORM_FORM = "expected path/to/file.py:function or package.module:function"
_JOB_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


# --------------------------------------------------------------------------- the plan model


@dataclass
class PlanJob:
    """One job of a plan, with every default applied and every path resolved."""

    name: str
    kind: str
    line: int
    index: int
    source: Optional[TableRef] = None
    target: Optional[TableRef] = None
    transform: Optional[str] = None
    create_target: bool = False
    target_spec: Optional[str] = None
    clean_target: bool = False
    verify_after: bool = False
    confirm: bool = False  # the user confirmed a destructive job (clean, clean_target)
    path_from: Optional[str] = None
    path_to: Optional[str] = None
    native: bool = False
    export_time: Optional[str] = None
    incremental: Optional[Tuple[str, str]] = None
    spec: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    args: Dict[str, Any] = field(default_factory=dict)
    after: List[str] = field(default_factory=list)
    engine: Optional[str] = None  # None: the job's function runs as it always did (threads)
    processes: Optional[int] = None  # set when engine is processes
    spark_master: Optional[str] = None  # only with engine spark; None: the active or default Spark
    field_lines: Dict[str, int] = field(default_factory=dict)
    # Fields taken from ``defaults``, each with the line of the default: a problem with one is
    # fixed there, once, not in every job it serves.
    defaulted: Dict[str, int] = field(default_factory=dict)

    def line_of(self, key: str) -> int:
        return self.defaulted.get(key) or self.field_lines.get(key, self.line)

    def passed_engine(self) -> Optional[str]:
        """The engine to build and pass as ``engine=``: None when the job named none, or when its
        kind runs on threads only and so takes no engine (replicate, native export/import)."""
        if self.engine is None or not job_kind(self.kind, native=self.native).takes_engine:
            return None
        return self.engine

    def definition(self) -> Dict[str, Any]:
        d = asdict(self)
        # Scheduling is not part of what a job does (see the module docstring).
        for k in ("line", "index", "field_lines", "defaulted") + ENGINE_FIELDS:
            d.pop(k)
        return d

    def definition_hash(self) -> str:
        return hashlib.sha256(orjson.dumps(self.definition(), option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()

    def describe(self) -> str:
        src = self.source.describe() if self.source else None
        dst = self.target.describe() if self.target else None
        if self.kind == "copy":
            what = f"{src} -> {dst}"
        elif self.kind == "export":
            what = f"{src} -> {self.path_to}" + (" (native export)" if self.native else "")
        elif self.kind == "import":
            what = f"{self.path_from} -> {dst}" + (" (native import)" if self.native else "")
        elif self.kind == "verify":
            what = f"{src} == {dst}"
        elif self.kind == "clean":
            what = f"delete every item of {dst}"
        elif self.kind == "update":
            what = f"{dst} in place"
        else:
            what = f"{src} => {dst} (backfill + stream)"
        notes = []
        if self.transform:
            notes.append(f"transform {self.transform}")
        if self.target_spec:
            notes.append(f"create target from {self.target_spec}")
        elif self.create_target:
            notes.append("create target if missing")
        if self.clean_target:
            notes.append("empty target first")
        if self.verify_after:
            notes.append("verify after")
        if self.after:
            notes.append(f"after {', '.join(self.after)}")
        if self.engine == "processes":
            notes.append(f"engine processes ({self.processes})")
        elif self.engine == "spark":
            notes.append(f"engine spark ({self.spark_master})" if self.spark_master else "engine spark")
        limits = {k: v for k, v in self.options.items() if k.startswith("max_") or k.endswith("_percent")}
        if limits:
            notes.append(", ".join(f"{k} {v}" for k, v in sorted(limits.items())))
        return f"{self.kind} {self.name}: {what}" + (f" [{'; '.join(notes)}]" if notes else "")


@dataclass
class Plan:
    """A checked plan: its jobs in file order, each with its defaults applied."""

    path: str
    name: str
    state_dir: str
    parallel: int
    fail_fast: bool
    jobs: List[PlanJob]

    def job(self, name: str) -> PlanJob:
        for j in self.jobs:
            if j.name == name:
                return j
        raise KeyError(name)

    def describe(self) -> List[str]:
        return [f"{i + 1}. {j.describe()}" for i, j in enumerate(self.jobs)]


class _Checker:
    """Collects problems while reading the raw YAML, so one run reports all of them."""

    def __init__(self, path: str, lines: Dict[Path_, int]) -> None:
        self.path = path
        self.lines = lines
        self.problems: List[PlanProblem] = []

    def line(self, p: Path_) -> Optional[int]:
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p[:-1]

    def add(self, p: Path_, message: str, job: Optional[str] = None) -> None:
        self.problems.append(PlanProblem(self.path, self.line(p), message, job))

    def where(self, p: Path_) -> str:
        out = ""
        for part in p:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "plan"

    def mapping(self, value: Any, p: Path_, allowed: Sequence[str]) -> Dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(p, f"{self.where(p)} must be a mapping, not {type(value).__name__}")
            return {}
        for k in value:
            if isinstance(k, bool):
                self.add(p, f"{self.where(p)}: a key reads as {k} (YAML 1.1 treats yes/no/on/off as booleans); "
                         "quote it or use the documented field name")
                continue
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (expected one of {', '.join(allowed)})"
                self.add(p + (k,), f"{self.where(p)}: unknown field {k!r}{hint}")
        return value

    def typed(self, value: Any, p: Path_, typ: Any, what: str) -> bool:
        ok = isinstance(value, typ) and not (typ in (int, _NUM) and isinstance(value, bool))
        if not ok:
            names = {int: "an integer", bool: "true or false", str: "a string", _NUM: "a number"}
            self.add(p, f"{self.where(p)}: {what} must be {names.get(typ, typ)}, not {value!r}")
        return ok


def _resolve_path(base: str, p: str) -> str:
    if "://" in p or os.path.isabs(p):
        return p
    return os.path.normpath(os.path.join(base, os.path.expanduser(p)))


def _resolve_transform(base: str, ref: str) -> str:
    target, sep, fname = ref.rpartition(":")
    if sep and (target.endswith(".py") or "/" in target or os.sep in target):
        return f"{_resolve_path(base, target)}:{fname}"
    return ref


def _table_ref(ck: _Checker, value: Any, p: Path_, defaults: Dict[str, Any]) -> Optional[TableRef]:
    if isinstance(value, str):
        fields: Dict[str, Any] = {"table": value}
    elif isinstance(value, dict):
        fields = dict(ck.mapping(value, p, TABLE_FIELDS))
        if "table" not in fields:
            ck.add(p, f"{ck.where(p)}: 'table' is required")
            return None
    else:
        ck.add(p, f"{ck.where(p)} must be a table name or a mapping with 'table', not {value!r}")
        return None
    merged = {k: v for k, v in defaults.items() if k in ACCOUNT_FIELDS}
    merged.update({k: v for k, v in fields.items() if v is not None})
    for k, v in merged.items():
        if not isinstance(v, str):
            ck.add(p + ((k,) if k in fields else ()), f"{ck.where(p)}.{k} must be a string, not {v!r}")
            return None
    try:
        return TableRef(**merged)
    except DdbMigrateError as e:
        ck.add(p + (("table",) if isinstance(value, dict) else ()), f"{ck.where(p)}: {e.message}")
        return None


def _options(ck: _Checker, value: Any, p: Path_) -> Dict[str, Any]:
    opts = ck.mapping(value, p, tuple(OPTION_TYPES))
    out: Dict[str, Any] = {}
    for k, v in opts.items():
        if k in OPTION_TYPES and ck.typed(v, p + (k,), OPTION_TYPES[k], k):
            out[k] = v
    if "max_cost" in out:
        from ..estimate.guard import max_cost_problem

        problem = max_cost_problem(out["max_cost"], "max_cost")
        if problem:
            ck.add(p + ("max_cost",), f"{ck.where(p)}: {problem}")
    # Each option alone, so that every bad value is named (together, the first stopped the
    # check), then all of them together for what one says of another.
    bad = False
    for k in out:
        try:
            run_options({k: out[k]})
        except UsageError as e:
            bad = True
            ck.add(p + (k,), f"{ck.where(p + (k,))}: {_plan_words(e.message)}")
    if not bad:
        try:
            run_options(out)
        except UsageError as e:
            ck.add(p, f"{ck.where(p)}: {_plan_words(e.message)}")
    return out


def _plan_words(message: str) -> str:
    """A CLI option's message in the plan's words: ``--max-write-units`` is ``max_write_units``.
    Only the option names: the values it lists are the plan's too (mode skip-existing read
    "one of overwrite, skip_existing, ..., not 'skip_existing'")."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), message)


def load_plan(path: str, *, state_dir: Optional[str] = None) -> Plan:
    """Read and check a plan file; raises :class:`PlanError` listing every problem with its line."""
    plan, problems = read_plan(path, state_dir=state_dir)
    if problems:
        raise PlanError(problems)
    return plan


def read_plan(path: str, *, state_dir: Optional[str] = None) -> Tuple[Plan, List[PlanProblem]]:
    """The plan as far as it could be read, and every problem found with its line.

    Raises :class:`PlanError` only when there is no plan to speak of (unreadable, not YAML, not
    a mapping); otherwise the jobs whose fields were readable are in the plan, so a validation
    can go on checking their tables in the same pass.
    """
    data, lines = load_yaml(path)
    ck = _Checker(path, lines)
    base = os.path.dirname(os.path.abspath(path))
    top = ck.mapping(data, (), TOP_FIELDS)
    if not isinstance(data, dict):
        raise PlanError(ck.problems)
    if "version" in top and top["version"] != 1:
        ck.add(("version",), f"version must be 1, not {top['version']!r}")
    parallel = top.get("parallel", 4)
    if not ck.typed(parallel, ("parallel",), int, "parallel") or parallel < 1:
        if isinstance(parallel, int) and not isinstance(parallel, bool):
            ck.add(("parallel",), "parallel must be at least 1")
        parallel = 4
    fail_fast = top.get("fail_fast", False)
    if not ck.typed(fail_fast, ("fail_fast",), bool, "fail_fast"):
        fail_fast = False
    stem = os.path.splitext(os.path.basename(path))[0]
    plan_name = top.get("name", stem)
    if not isinstance(plan_name, str) or not _JOB_NAME.match(plan_name):
        ck.add(("name",), f"name must be 1-100 characters of [A-Za-z0-9_.-], not {plan_name!r}")
        plan_name = stem
    if state_dir is None:
        if isinstance(top.get("state_dir"), str):
            state_dir = _resolve_path(base, top["state_dir"])
        else:
            if "state_dir" in top:
                ck.add(("state_dir",), "state_dir must be a path")
            # Deterministic per plan file, so --resume finds the same checkpoints.
            h = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:8]
            state_dir = os.path.join(".ddbmigrate", "plans", f"{plan_name}-{h}")

    d = ck.mapping(top.get("defaults"), ("defaults",), DEFAULT_FIELDS)
    dsrc = ck.mapping(d.get("source"), ("defaults", "source"), ACCOUNT_FIELDS)
    dtgt = ck.mapping(d.get("target"), ("defaults", "target"), ACCOUNT_FIELDS)
    dopts = _options(ck, d.get("options"), ("defaults", "options"))
    dtransforms = ck.mapping(d.get("transforms"), ("defaults", "transforms"), list(d.get("transforms") or {}))
    for k, v in dtransforms.items():
        if ck.typed(v, ("defaults", "transforms", k), str, f"transform for {k}") and ":" not in v:
            ck.add(("defaults", "transforms", k), f"defaults.transforms.{k} {v!r}: {_TRANSFORM_FORM}")
    dflags: Dict[str, Any] = {}
    for flag in ("create_target", "verify_after"):
        if flag in d and ck.typed(d[flag], ("defaults", flag), bool, flag):
            dflags[flag] = d[flag]
    dengine = _engine_settings(ck, d, ("defaults",))

    raw_jobs = top.get("jobs")
    if not isinstance(raw_jobs, list) or not raw_jobs:
        ck.add(("jobs",), "jobs must be a non-empty list")
        raw_jobs = []
    jobs: List[PlanJob] = []
    seen: Dict[str, int] = {}
    for i, raw in enumerate(raw_jobs):
        jp: Path_ = ("jobs", i)
        if not isinstance(raw, dict):
            ck.add(jp, f"jobs[{i}] must be a mapping with a 'kind'")
            continue
        kind = raw.get("kind")
        if kind not in KINDS:
            close = difflib.get_close_matches(str(kind), KINDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            ck.add(jp + (("kind",) if "kind" in raw else ()),
                   f"jobs[{i}].kind must be one of {', '.join(KINDS)}, not {kind!r}{hint}")
            continue
        allowed = COMMON_FIELDS + KIND_FIELDS[kind]
        ck.mapping(raw, jp, allowed)
        for req in REQUIRED[kind]:
            if raw.get(req) in (None, ""):
                ck.add(jp, f"jobs[{i}] ({kind}) needs '{req}'")
        job = PlanJob(name="", kind=kind, line=ck.line(jp) or 0, index=i)
        job.field_lines = {k: ck.line(jp + (k,)) or job.line for k in raw}
        if raw.get("source") is not None and "source" in allowed:
            job.source = _table_ref(ck, raw["source"], jp + ("source",), dsrc)
        if raw.get("target") is not None and "target" in allowed:
            job.target = _table_ref(ck, raw["target"], jp + ("target",), dtgt)
        for flag in ("create_target", "clean_target", "verify_after", "confirm", "native"):
            if flag in raw and flag in allowed:
                if ck.typed(raw[flag], jp + (flag,), bool, flag):
                    setattr(job, flag, raw[flag])
            elif flag in dflags and flag in allowed and not (flag == "verify_after" and kind == "import"):
                # A default serves the kinds it can apply to: an import has no source table to
                # compare its target with, so defaults.verify_after leaves it alone.
                setattr(job, flag, dflags[flag])
                job.defaulted[flag] = ck.line(("defaults", flag)) or 0
        if kind == "import" and job.verify_after:
            ck.add(jp + ("verify_after",), f"jobs[{i}].verify_after: an import has no source table to compare "
                   "its target with; add a verify job after it instead")
        for key, attr in (("target_spec", "target_spec"), ("spec", "spec"), ("from", "path_from"), ("to", "path_to")):
            if raw.get(key) is not None and key in allowed and ck.typed(raw[key], jp + (key,), str, key):
                setattr(job, attr, _resolve_path(base, raw[key]))
        if job.target_spec is None and "target_spec" in allowed and isinstance(d.get("target_spec"), str):
            job.target_spec = _resolve_path(base, d["target_spec"])
            job.defaulted["target_spec"] = ck.line(("defaults", "target_spec")) or 0
        tr = raw.get("transform")
        if tr is None and job.source is not None and "transform" in allowed:
            tr = dtransforms.get(job.source.table)
            if tr is not None:
                # Checked once where it is written (defaults.transforms), not in every job it serves.
                job.defaulted["transform"] = ck.line(("defaults", "transforms", job.source.table)) or 0
                if isinstance(tr, str):
                    job.transform = _resolve_transform(base, tr)
                tr = None
        if tr is not None and ck.typed(tr, jp + ("transform",), str, "transform"):
            if ":" not in tr:
                ck.add(jp + ("transform",), f"jobs[{i}].transform {tr!r}: {_TRANSFORM_FORM}")
            job.transform = _resolve_transform(base, tr)
        if "export_time" in raw and ck.typed(raw["export_time"], jp + ("export_time",), str, "export_time"):
            job.export_time = raw["export_time"]
        inc = raw.get("incremental")
        if inc is not None:
            if isinstance(inc, list) and len(inc) == 2 and all(isinstance(x, str) for x in inc):
                job.incremental = (inc[0], inc[1])
            else:
                ck.add(jp + ("incremental",), f"jobs[{i}].incremental must be [FROM, TO] (two timestamps)")
        if job.kind in ("export", "import") and not job.native and (job.export_time or job.incremental):
            ck.add(jp, f"jobs[{i}]: export_time / incremental need native: true")
        if job.kind == "export" and job.native:
            _check_native_export(ck, job, jp)
        if job.kind == "import" and job.native and not (job.spec or job.target_spec):
            ck.add(jp, f"jobs[{i}]: a native import creates its table: give spec: table.yaml")
        merged_opts = dict(dopts)
        merged_opts.update(_options(ck, raw.get("options"), jp + ("options",)))
        job.options = merged_opts
        _apply_engine(ck, job, _engine_settings(ck, raw, jp), dengine, jp)
        args = raw.get("args")
        if args is not None:
            if isinstance(args, dict) and all(isinstance(k, str) and k.isidentifier() for k in args):
                job.args = dict(args)
                if "engine" in args:
                    ck.add(jp + ("args", "engine"), f"jobs[{i}].args: give the engine as the job's 'engine' field")
            else:
                ck.add(jp + ("args",), f"jobs[{i}].args must map argument names to values")
        after = raw.get("after", [])
        if isinstance(after, str):
            after = [after]
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            ck.add(jp + ("after",), f"jobs[{i}].after must be a job name or a list of job names")
            after = []
        job.after = list(after)
        name = raw.get("name")
        if name is None:
            table = (job.source or job.target)
            name = f"{kind}-{table.table}" if table else kind
            n, suffix = name, 2
            while n in seen:
                n, suffix = f"{name}-{suffix}", suffix + 1
            name = n
        elif not isinstance(name, str) or not _JOB_NAME.match(name):
            ck.add(jp + ("name",), f"jobs[{i}].name must be 1-100 characters of [A-Za-z0-9_.-], not {name!r}")
            name = f"job{i}"
        elif name in seen:
            ck.add(jp + ("name",), f"jobs[{i}].name {name!r} is already used by jobs[{seen[name]}]")
        seen.setdefault(name, i)
        job.name = name
        if kind in ("clean",) and not job.confirm:
            ck.add(jp, f"jobs[{i}] ({name}) empties table {job.target.table if job.target else '?'}: "
                   "add 'confirm: true'")
        if job.clean_target and not job.confirm:
            ck.add(jp + ("clean_target",), f"jobs[{i}] ({name}) empties its target first: add 'confirm: true'")
        jobs.append(job)
    # A transform keyed by a table no job reads (a typo) would leave that data untransformed.
    read = sorted({j.source.table for j in jobs if j.source is not None and "transform" in KIND_FIELDS[j.kind]})
    for k in dtransforms:
        if isinstance(k, str) and k not in read:
            close = difflib.get_close_matches(k, read, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            ck.add(("defaults", "transforms", k), f"defaults.transforms: no job reads a table {k!r}, so this "
                   f"transform would never run{hint}")
    names = {j.name for j in jobs}
    for j in jobs:
        for a in j.after:
            if a not in names:
                ck.add(("jobs", j.index, "after"), f"jobs[{j.index}].after: no job named {a!r}")
            elif a == j.name:
                ck.add(("jobs", j.index, "after"), f"jobs[{j.index}] cannot run after itself")
    cycle = _find_cycle(jobs)
    if cycle:
        first = next(j for j in jobs if j.name == cycle[0])
        ck.add(("jobs", first.index, "after"), f"jobs depend on each other in a cycle: {' -> '.join(cycle)}")
    return Plan(path=path, name=plan_name, state_dir=state_dir,
                parallel=parallel, fail_fast=fail_fast, jobs=jobs), list(ck.problems)


def _check_native_export(ck: _Checker, job: PlanJob, jp: Path_) -> None:
    """What a native export's run would refuse at once, found here with the plan field's line
    (the same parsing the export uses, so the two never disagree)."""
    from ..aws.managed import MAX_INCREMENTAL, MIN_INCREMENTAL, parse_time, split_s3_uri

    where = ck.where(jp)
    if job.path_to is not None:
        try:
            split_s3_uri(job.path_to)
        except UsageError:
            ck.add(jp + ("to",), f"{where}.to {job.path_to!r}: a native export writes to S3: give "
                   "s3://bucket/prefix (or drop native: true to export to a folder)")
    if job.export_time is not None and job.incremental is not None:
        ck.add(jp + ("incremental",), f"{where}: export_time and incremental are exclusive "
               "(an incremental export has its own window)")
    if job.export_time is not None:
        try:
            parse_time(job.export_time, f"{where}.export_time")
        except UsageError as e:
            ck.add(jp + ("export_time",), e.message)
    if job.incremental is not None:
        try:
            frm = parse_time(job.incremental[0], f"{where}.incremental FROM")
            to = parse_time(job.incremental[1], f"{where}.incremental TO")
        except UsageError as e:
            ck.add(jp + ("incremental",), e.message)
            return
        if to <= frm:
            ck.add(jp + ("incremental",), f"{where}.incremental: TO ({to.isoformat()}) must be after FROM "
                   f"({frm.isoformat()})")
        elif not MIN_INCREMENTAL <= to - frm <= MAX_INCREMENTAL:
            ck.add(jp + ("incremental",), f"{where}.incremental: the window must be between 15 minutes and "
                   f"24 hours (got {to - frm})")


def _engine_settings(ck: _Checker, raw: Dict[str, Any], p: Path_) -> Dict[str, Any]:
    """The well-typed engine fields of one level (a job or the defaults); problems for the others."""
    out: Dict[str, Any] = {}
    where = ck.where(p)
    engine = raw.get("engine")
    if engine is not None:
        if engine in ENGINES:
            out["engine"] = engine
        else:
            close = difflib.get_close_matches(str(engine), ENGINES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            ck.add(p + ("engine",), f"{where}.engine must be one of {', '.join(ENGINES)}, not {engine!r}{hint}")
    n = raw.get("processes")
    if n is not None:
        if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
            out["processes"] = n
        else:
            ck.add(p + ("processes",), f"{where}.processes must be a positive integer, not {n!r}")
    master = raw.get("spark_master")
    if master is not None:
        if isinstance(master, str) and master.strip():
            out["spark_master"] = master
        else:
            ck.add(p + ("spark_master",), f"{where}.spark_master must be a Spark master URL such as "
                   f"\"local[2]\", not {master!r}")
    return out


def _apply_engine(ck: _Checker, job: PlanJob, own: Dict[str, Any], defaults: Dict[str, Any], jp: Path_) -> None:
    """Settle the job's engine: its own field, else the default when its kind can run on it."""
    kind = job_kind(job.kind, native=job.native)
    supported = kind.engines
    where = ck.where(jp)
    engine = own.get("engine")
    if engine is not None and engine not in supported:
        what = f"a native {job.kind}" if kind.native else job.kind
        ck.add(jp + ("engine",), f"{where}.engine: {what} runs on {' or '.join(supported)} only, not {engine!r}")
        return
    if engine is None and defaults.get("engine") in supported:
        # A default engine serves the kinds that can use it; the others (replicate, native
        # export/import) keep threads, so one plan default does not force a field on every job.
        engine = defaults["engine"]
    job.engine = engine
    for key, needs in (("processes", "processes"), ("spark_master", "spark")):
        if key in own and engine != needs:
            ck.add(jp + (key,), f"{where}.{key} applies only to engine: {needs} "
                   f"(this job runs on {engine or 'threads'})")
    if engine == "processes":
        job.processes = int(own.get("processes") or defaults.get("processes") or 2)
    elif engine == "spark":
        job.spark_master = own.get("spark_master") or defaults.get("spark_master")


def _find_cycle(jobs: List[PlanJob]) -> Optional[List[str]]:
    deps = {j.name: [a for a in j.after if a != j.name] for j in jobs}
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(n: str) -> Optional[List[str]]:
        state[n] = 1
        stack.append(n)
        for m in deps.get(n, []):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if state.get(m) is None and m in deps:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for j in jobs:
        if state.get(j.name) is None:
            found = visit(j.name)
            if found:
                return found
    return None


def ref_key(ref: Optional[TableRef]) -> Any:
    """What makes two references the same table (so two jobs never race to create it)."""
    if ref is None:
        return None
    return (ref.table, ref.region, ref.endpoint_url, ref.role_arn, ref.profile)


def run_options(o: Dict[str, Any], **kw: Any) -> RunOptions:
    """A job's ``options`` mapping as :class:`RunOptions` (checked here exactly as the CLI checks them)."""
    return RunOptions(
        segments=o.get("segments"), writers=o.get("writers"), mode=o.get("mode", "overwrite"),
        on_error=o.get("on_error", "fail"), max_errors=o.get("max_errors"),
        max_read_units=o.get("max_read_units"), max_write_units=o.get("max_write_units"),
        read_percent=o.get("read_percent"), write_percent=o.get("write_percent"),
        consistent_read=bool(o.get("consistent_read", False)),
        retry=RetryPolicy(max_attempts=int(o.get("max_attempts", 10))), **kw,
    )

