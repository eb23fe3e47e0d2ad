"""Migration plans: many jobs over many tables, described in one YAML file, run concurrently.

A plan is loaded, validated (every problem names its ``file:line``), then run with at most
``parallel`` jobs at a time, one combined progress display, one combined report and one resume::

    version: 1
    defaults:
      source: {region: eu-west-1, role_arn: arn:aws:iam::111111111111:role/migrate-read}
      target: {region: eu-west-1, role_arn: arn:aws:iam::222222222222:role/migrate-write}
      options: {max_write_units: 2000, segments: 8}
      create_target: true
      verify_after: true
      transforms: {users: transforms/users.py:to_v2}
    jobs:
      - {kind: copy, source: users, target: users}
      - {kind: copy, source: orders, target: orders, options: {max_write_units: 500}}

Invariants:

* Every job has a deterministic checkpoint (``<state_dir>/<job name>.checkpoint.json``) and a
  dead-letter file, and the plan keeps ``plan-state.json`` (written atomically after each job
  ends): ``--resume`` skips the jobs that finished and resumes the others from their
  checkpoints, so a plan resumed any number of times converges like each of its jobs does.
* A failing job never silently disappears: it is reported with its error and exit code, jobs
  that depend on it (``after:``) are reported ``blocked``, and the plan's exit code reflects the
  worst outcome. Independent jobs keep running unless ``fail_fast`` is set.
* Relative paths in a plan (transforms, specs, files, state_dir) are relative to the plan file.

Job functions are imported lazily, so a plan that uses a job kind missing from this build fails
with one clear line instead of an ImportError.
"""

from __future__ import annotations

import concurrent.futures as cf
import difflib
import hashlib
import inspect
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import orjson

from ..state.checkpoint import atomic_write
from ..config import RetryPolicy, RunOptions, TableRef
from ..errors import (
    EXIT_DEAD_LETTERS,
    EXIT_DIFFERENCES,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    DdbMigrateError,
    UsageError,
)
from ..reporting.report import utcnow

KINDS = ("copy", "export", "import", "verify", "clean", "replicate")
TABLE_FIELDS = ("table", "region", "profile", "role_arn", "endpoint_url", "external_id", "role_session_name")
ACCOUNT_FIELDS = tuple(f for f in TABLE_FIELDS if f != "table")
_NUM = (int, float)
OPTION_TYPES: Dict[str, Any] = {
    "segments": int, "writers": int, "mode": str, "on_error": str, "max_errors": int,
    "max_read_units": _NUM, "max_write_units": _NUM, "read_percent": _NUM, "write_percent": _NUM,
    "max_attempts": int, "consistent_read": bool, "dead_letters": bool,
}
COMMON_FIELDS = ("name", "kind", "after", "options", "args")
KIND_FIELDS: Dict[str, Tuple[str, ...]] = {
    "copy": ("source", "target", "transform", "create_target", "target_spec", "clean_target", "verify_after", "confirm"),
    "export": ("source", "to", "native", "export_time", "incremental"),
    "import": ("from", "target", "transform", "create_target", "target_spec", "native", "spec", "verify_after"),
    "verify": ("source", "target", "transform"),
    "clean": ("target", "confirm"),
    "replicate": ("source", "target", "transform", "create_target", "target_spec"),
}
REQUIRED: Dict[str, Tuple[str, ...]] = {
    "copy": ("source", "target"), "export": ("source", "to"), "import": ("from", "target"),
    "verify": ("source", "target"), "clean": ("target",), "replicate": ("source", "target"),
}
TOP_FIELDS = ("version", "name", "state_dir", "parallel", "fail_fast", "defaults", "jobs")
DEFAULT_FIELDS = ("source", "target", "options", "create_target", "target_spec", "verify_after", "transforms")
_JOB_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
STATE_VERSION = 1


# --------------------------------------------------------------------------- problems


@dataclass
class PlanProblem:
    """One thing wrong with a plan, located at ``file:line``."""

    file: str
    line: Optional[int]
    message: str
    job: Optional[str] = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class PlanError(UsageError):
    """The plan file is invalid; ``problems`` lists every problem found (each with its line)."""

    def __init__(self, problems: List[PlanProblem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{first.message}{more}", file=first.file, line=first.line)
        self.problems = problems


# --------------------------------------------------------------------------- YAML with lines


Path_ = Tuple[Any, ...]


def _load_yaml(path: str) -> Tuple[Any, Dict[Path_, int]]:
    """Parse YAML (safe types only) and return the data plus the 1-based line of every node path."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise PlanError([PlanProblem(path, None, f"cannot read plan: {e.strerror or e}")]) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PlanError([PlanProblem(path, 1, "plan is empty")])
        # Constructing first also flattens merge keys (<<) in the node tree, so the walk below
        # sees the same shape as the data.
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PlanError([PlanProblem(path, line, f"not valid YAML: {e.problem or e.context}")]) from None
    except yaml.YAMLError as e:
        raise PlanError([PlanProblem(path, None, f"not valid YAML: {e}")]) from None
    finally:
        loader.dispose()
    lines: Dict[Path_, int] = {}
    _walk(node, data, (), lines)
    return data, lines


def _walk(node: Any, data: Any, path: Path_, lines: Dict[Path_, int]) -> None:
    import yaml

    # setdefault: a mapping value keeps the line of its key, which is where people look.
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if key is None or key == "<<" or key not in data:
                continue
            lines.setdefault(path + (key,), knode.start_mark.line + 1)
            _walk(vnode, data[key], path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
        for i, (child, value) in enumerate(zip(node.value, data)):
            _walk(child, value, path + (i,), lines)


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
    field_lines: Dict[str, int] = field(default_factory=dict)

    def line_of(self, key: str) -> int:
        return self.field_lines.get(key, self.line)

    def definition(self) -> Dict[str, Any]:
        d = asdict(self)
        for k in ("line", "index", "field_lines"):
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
        limits = {k: v for k, v in self.options.items() if k.startswith("max_") or k.endswith("_percent")}
        if limits:
            notes.append(", ".join(f"{k} {v}" for k, v in sorted(limits.items())))
        return f"{self.kind} {self.name}: {what}" + (f" [{'; '.join(notes)}]" if notes else "")


@dataclass
class Plan:
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
    try:
        _run_options(out)
    except UsageError as e:
        ck.add(p, f"{ck.where(p)}: {e.message.replace('--', '').replace('-', '_')}")
    return out


def load_plan(path: str, *, state_dir: Optional[str] = None) -> Plan:
    """Read and check a plan file; raises :class:`PlanError` listing every problem with its line."""
    data, lines = _load_yaml(path)
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
        ck.typed(v, ("defaults", "transforms", k), str, f"transform for {k}")
    dflags: Dict[str, Any] = {}
    for flag in ("create_target", "verify_after"):
        if flag in d and ck.typed(d[flag], ("defaults", flag), bool, flag):
            dflags[flag] = d[flag]

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
            elif flag in dflags and flag in allowed:
                setattr(job, flag, dflags[flag])
        for key, attr in (("target_spec", "target_spec"), ("spec", "spec"), ("from", "path_from"), ("to", "path_to")):
            if raw.get(key) is not None and key in allowed and ck.typed(raw[key], jp + (key,), str, key):
                setattr(job, attr, _resolve_path(base, raw[key]))
        if job.target_spec is None and "target_spec" in allowed and isinstance(d.get("target_spec"), str):
            job.target_spec = _resolve_path(base, d["target_spec"])
        tr = raw.get("transform")
        if tr is None and job.source is not None and "transform" in allowed:
            tr = dtransforms.get(job.source.table)
        if tr is not None and ck.typed(tr, jp + ("transform",), str, "transform"):
            if ":" not in tr:
                ck.add(jp + ("transform",), f"jobs[{i}].transform {tr!r}: expected path/to/file.py:function "
                       "or package.module:function")
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
        if job.kind == "import" and job.native and not (job.spec or job.target_spec):
            ck.add(jp, f"jobs[{i}]: a native import creates its table: give spec: table.yaml")
        merged_opts = dict(dopts)
        merged_opts.update(_options(ck, raw.get("options"), jp + ("options",)))
        job.options = merged_opts
        args = raw.get("args")
        if args is not None:
            if isinstance(args, dict) and all(isinstance(k, str) and k.isidentifier() for k in args):
                job.args = dict(args)
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
    if ck.problems:
        raise PlanError(ck.problems)
    return Plan(path=path, name=plan_name, state_dir=state_dir,
                parallel=parallel, fail_fast=fail_fast, jobs=jobs)


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


def _run_options(o: Dict[str, Any], **kw: Any) -> RunOptions:
    return RunOptions(
        segments=o.get("segments"), writers=o.get("writers"), mode=o.get("mode", "overwrite"),
        on_error=o.get("on_error", "fail"), max_errors=o.get("max_errors"),
        max_read_units=o.get("max_read_units"), max_write_units=o.get("max_write_units"),
        read_percent=o.get("read_percent"), write_percent=o.get("write_percent"),
        consistent_read=bool(o.get("consistent_read", False)),
        retry=RetryPolicy(max_attempts=int(o.get("max_attempts", 10))), **kw,
    )


# --------------------------------------------------------------------------- validation


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
        plan = load_plan(path)
    except PlanError as e:
        return list(e.problems)
    problems: List[PlanProblem] = []

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
                from ..aws.tables import load_spec, spec_to_request

                try:
                    spec_to_request(load_spec(p), table_name=job.target.table if job.target else None)
                except DdbMigrateError as e:
                    add(job, key, e.one_line())
        exported = [j.path_to for j in plan.jobs if j.kind == "export" and j.path_to]
        if job.kind == "import" and job.path_from and "://" not in job.path_from \
                and not os.path.exists(job.path_from) \
                and not any(job.path_from == e or job.path_from.startswith(e.rstrip("/") + "/") for e in exported):
            add(job, "from", f"input {job.path_from} does not exist (and no export job of this plan writes it)")
        missing = _job_function_missing(job)
        if missing:
            add(job, "kind", missing)
        if job.verify_after:
            try:
                _import_function("verify.job", "verify_tables", "verify_after")
            except UsageError as e:
                add(job, "verify_after", e.message)
    if not check_tables or problems:
        return problems
    _TableChecks(plan, transforms, add, sample, client_factory).run()
    return problems


def _job_function_missing(job: PlanJob) -> Optional[str]:
    try:
        _job_function(job)
    except UsageError as e:
        return e.message
    return None


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
        self.created = {_ref_key(j.target) for j in plan.jobs
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
                if _ref_key(job.source) not in self.created:
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
                elif _ref_key(job.target) in self.created:
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
            if j.target is not None and _ref_key(j.target) == _ref_key(ref):
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


def _ref_key(ref: Optional[TableRef]) -> Any:
    if ref is None:
        return None
    return (ref.table, ref.region, ref.endpoint_url, ref.role_arn, ref.profile)


# --------------------------------------------------------------------------- the report


@dataclass
class JobResult:
    name: str
    kind: str
    line: int
    status: str = "not-started"  # done | failed | interrupted | blocked | not-started | differences
    description: str = ""
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    offset_seconds: Optional[float] = None  # start, in seconds after the plan started
    duration_seconds: float = 0.0
    exit_code: int = EXIT_OK
    error: Optional[str] = None
    checkpoint_path: Optional[str] = None
    dead_letter_path: Optional[str] = None
    resumed_from_state: bool = False
    report: Optional[Dict[str, Any]] = None
    verify: Optional[Dict[str, Any]] = None


@dataclass
class PlanReport:
    """The combined report of a plan run: one entry per job, plus totals."""

    plan: str
    name: str
    status: str = "done"  # done | failed | interrupted | differences
    started_at: str = field(default_factory=utcnow)
    finished_at: Optional[str] = None
    duration_seconds: float = 0.0
    parallel: int = 1
    state_dir: str = ""
    jobs: List[JobResult] = field(default_factory=list)
    totals: Dict[str, Any] = field(default_factory=dict)
    timeline: List[Dict[str, Any]] = field(default_factory=list)

    kind: str = "plan"

    @property
    def exit_code(self) -> int:
        codes = [j.exit_code for j in self.jobs]
        if self.status == "interrupted":
            return EXIT_INTERRUPTED
        failed = [c for j, c in zip(self.jobs, codes) if j.status in ("failed", "blocked")]
        if failed:
            fatal = [c for c in failed if c in (EXIT_FATAL, EXIT_USAGE)]
            return fatal[0] if fatal else max(failed)
        if any(j.status in ("interrupted", "not-started") for j in self.jobs):
            return EXIT_INTERRUPTED
        if EXIT_DIFFERENCES in codes:
            return EXIT_DIFFERENCES
        if EXIT_DEAD_LETTERS in codes:
            return EXIT_DEAD_LETTERS
        return EXIT_OK

    def balanced(self) -> bool:
        return all(j.report is None or j.report.get("balanced", True) for j in self.jobs)

    def job(self, name: str) -> JobResult:
        for j in self.jobs:
            if j.name == name:
                return j
        raise KeyError(name)

    def compute_totals(self) -> None:
        counters: Dict[str, int] = {}
        retries: Dict[str, int] = {}
        dead = 0
        for j in self.jobs:
            if not j.report:
                continue
            for k, v in (j.report.get("counters") or {}).items():
                if isinstance(v, int):
                    counters[k] = counters.get(k, 0) + v
            for k, v in (j.report.get("retries") or {}).items():
                if isinstance(v, int):
                    retries[k] = retries.get(k, 0) + v
            dead += int((j.report.get("counters") or {}).get("dead_lettered", 0) or 0)
        by_status: Dict[str, int] = {}
        for j in self.jobs:
            by_status[j.status] = by_status.get(j.status, 0) + 1
        self.totals = {"jobs": len(self.jobs), "by_status": by_status, "counters": counters, "retries": retries,
                       "dead_lettered": dead, "balanced": self.balanced()}

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["exit_code"] = self.exit_code
        d["balanced"] = self.balanced()
        return d

    def write_json(self, path: str) -> None:
        atomic_write(path, orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2, default=str))

    def render(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=True)
        t = Table(title=f"ddbmigrate plan {self.name}: {self.status}", title_justify="left")
        for col, just in (("job", "left"), ("kind", "left"), ("status", "left"), ("read", "right"),
                          ("written", "right"), ("dead", "right"), ("retries", "right"), ("seconds", "right")):
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        for j in self.jobs:
            c = (j.report or {}).get("counters") or {}
            r = sum((j.report or {}).get("retries", {}).values()) if j.report else 0
            colour = {"done": "green", "failed": "red", "interrupted": "yellow", "blocked": "red",
                      "differences": "red"}.get(j.status, "")
            status = f"[{colour}]{j.status}[/{colour}]" if colour else j.status
            if j.resumed_from_state:
                status += " (earlier run)"
            t.add_row(j.name, j.kind, status, f"{c.get('read', 0):,}", f"{c.get('written', 0):,}",
                      f"{c.get('dead_lettered', 0):,}", f"{r:,}", f"{j.duration_seconds:,.1f}")
        tc = self.totals.get("counters", {})
        t.add_row("[bold]total", "", "", f"{tc.get('read', 0):,}", f"{tc.get('written', 0):,}",
                  f"{self.totals.get('dead_lettered', 0):,}", f"{sum(self.totals.get('retries', {}).values()):,}",
                  f"{self.duration_seconds:,.1f}")
        console.print(t)
        for j in self.jobs:
            if j.error:
                console.print(f"[red]{j.name}:[/red] {j.error}")
        if not self.balanced():
            console.print("[red]counts do not add up in at least one job[/red]")


def _report_dict(obj: Any) -> Optional[Dict[str, Any]]:
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if isinstance(obj, dict):
        return obj
    try:
        return asdict(obj)
    except TypeError:
        return {"value": str(obj)}


# --------------------------------------------------------------------------- running


def _job_function(job: PlanJob) -> Callable[..., Any]:
    """The library function for a job kind, imported at run time (another build may lack it)."""
    table = {
        ("copy", False): ("jobs.copy", "copy_table"),
        ("clean", False): ("jobs.clean", "clean_table"),
        ("export", False): ("jobs.export", "export_table"),
        ("export", True): ("aws.managed", "native_export"),
        ("import", False): ("jobs.import_files", "import_files"),
        ("import", True): ("aws.managed", "native_import"),
        ("verify", False): ("verify.job", "verify_tables"),
        ("replicate", False): ("jobs.replicate", "replicate"),
    }
    mod, func = table[(job.kind, job.native and job.kind in ("export", "import"))]
    return _import_function(mod, func, job.kind)


def _import_function(mod: str, func: str, kind: str) -> Callable[..., Any]:
    import importlib

    try:
        m = importlib.import_module(f"ddbmigrate.{mod}")
    except ModuleNotFoundError as e:
        if e.name and e.name.endswith(mod):
            raise UsageError(f"job kind {kind!r} needs ddbmigrate.{mod}.{func}, which this build of "
                             "ddbmigrate does not include") from None
        raise
    f = getattr(m, func, None)
    if f is None or not callable(f):
        raise UsageError(f"job kind {kind!r} needs ddbmigrate.{mod}.{func}, which this build does not include")
    return f  # type: ignore[no-any-return]


def _call(func: Callable[..., Any], args: Sequence[Any], optional: Dict[str, Any], user: Dict[str, Any]) -> Any:
    """Call a job function with the optional keyword arguments it accepts, plus the user's ``args``.

    The user's arguments are always passed (a wrong one is their error to see); ours are
    dropped when the function does not take them, so the plan works across versions.
    """
    try:
        params = inspect.signature(func).parameters
        open_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
        kw = {k: v for k, v in optional.items() if v is not None and (open_kw or k in params)}
    except (TypeError, ValueError):
        kw = {k: v for k, v in optional.items() if v is not None}
    kw.update(user)
    try:
        return func(*args, **kw)
    except TypeError as e:
        if "argument" in str(e) and func.__name__ in str(e):
            raise UsageError(f"{func.__name__}: {e}") from None
        raise


class _PlanState:
    """``plan-state.json``: what each job's last run ended with, saved atomically."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "plan-state.json")
        self.jobs: Dict[str, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def load(self) -> bool:
        try:
            with open(self.path, "rb") as fh:
                data = orjson.loads(fh.read())
        except FileNotFoundError:
            return False
        except (OSError, orjson.JSONDecodeError) as e:
            raise UsageError(f"plan state {self.path} is unreadable: {e}; use --restart to start over") from None
        if data.get("version") != STATE_VERSION:
            raise UsageError(f"plan state {self.path} has version {data.get('version')}, expected {STATE_VERSION}")
        self.jobs = dict(data.get("jobs") or {})
        return True

    def unfinished(self) -> List[str]:
        return [n for n, j in self.jobs.items() if j.get("status") != "done"]

    def record(self, job: PlanJob, result: JobResult) -> None:
        with self._lock:
            self.jobs[job.name] = {"hash": job.definition_hash(), "status": result.status, "result": asdict(result)}
            atomic_write(self.path, orjson.dumps({"version": STATE_VERSION, "jobs": self.jobs, "saved_at": utcnow()},
                                                 option=orjson.OPT_INDENT_2, default=str))

    def finished_result(self, job: PlanJob) -> Optional[JobResult]:
        rec = self.jobs.get(job.name)
        if not rec or rec.get("status") != "done" or rec.get("hash") != job.definition_hash():
            return None
        try:
            return JobResult(**rec["result"])
        except TypeError:
            return None


class _Runner:
    def __init__(self, plan: Plan, *, parallel: int, resume: bool, restart: bool, progress: str, stream: Any,
                 fail_fast: bool) -> None:
        from .progress import PlanProgress

        self.plan = plan
        self.parallel = max(1, parallel)
        self.resume = resume
        self.restart = restart
        self.fail_fast = fail_fast
        self.state = _PlanState(plan.state_dir)
        self.display = PlanProgress([(j.name, f"{j.name}") for j in plan.jobs], mode=progress, stream=stream)
        self.stopping = threading.Event()
        self.stop_reason: Optional[str] = None
        self.t0 = time.monotonic()
        self.results: Dict[str, JobResult] = {
            j.name: JobResult(j.name, j.kind, j.line, description=j.describe()) for j in plan.jobs}
        self.report = PlanReport(plan=plan.path, name=plan.name, parallel=self.parallel, state_dir=plan.state_dir)

    # ------------------------------------------------------------------ paths

    def checkpoint_path(self, job: PlanJob) -> str:
        return os.path.join(self.plan.state_dir, "checkpoints", f"{job.name}.checkpoint.json")

    def dead_letter_path(self, job: PlanJob) -> Optional[str]:
        if job.options.get("dead_letters", True) is False:
            return None
        return os.path.join(self.plan.state_dir, "dead-letters", f"{job.name}.jsonl")

    def options(self, job: PlanJob, checkpoint: Optional[str] = None) -> RunOptions:
        return _run_options(job.options, transform=job.transform, dead_letter=self.dead_letter_path(job),
                            checkpoint=checkpoint or self.checkpoint_path(job), resume=self.resume,
                            restart=self.restart, progress="off")

    # ------------------------------------------------------------------ run

    def run(self) -> PlanReport:
        had_state = self.state.load()
        if had_state and self.restart:
            self.state.jobs = {}
        elif had_state and not self.resume and self.state.unfinished():
            raise UsageError(
                f"an unfinished run of this plan exists ({self.state.path}: "
                f"{', '.join(self.state.unfinished())} not done): add --resume to continue it or --restart "
                "to start over")
        elif had_state and not self.resume:
            self.state.jobs = {}  # the last run finished: this is a new run
        os.makedirs(self.plan.state_dir, exist_ok=True)
        pending: List[PlanJob] = []
        for job in self.plan.jobs:
            earlier = self.state.finished_result(job) if self.resume else None
            if earlier is not None:
                earlier.resumed_from_state = True
                self.results[job.name] = earlier
                self.display.set_status(job.name, "done (earlier run)")
            else:
                pending.append(job)
        self.display.start()
        restore = self._install_signals()
        try:
            self._prepare_targets(pending)
            self._schedule(pending)
        finally:
            restore()
            self.display.stop()
        rep = self.report
        rep.jobs = [self.results[j.name] for j in self.plan.jobs]
        rep.duration_seconds = round(time.monotonic() - self.t0, 3)
        rep.finished_at = utcnow()
        rep.timeline = self.display.timeline
        statuses = {j.status for j in rep.jobs}
        if self.stop_reason == "signal":
            rep.status = "interrupted"
        elif statuses & {"failed", "blocked", "not-started", "interrupted"}:
            rep.status = "failed"
        elif "differences" in statuses:
            rep.status = "differences"
        else:
            rep.status = "done"
        rep.compute_totals()
        return rep

    def _install_signals(self) -> Callable[[], None]:
        # Ctrl-C and SIGTERM: running jobs drain and checkpoint, no new job starts. Handled as
        # a signal (not KeyboardInterrupt) so it never lands in the middle of a state save.
        from ..engine.run import install_handler

        def handler(signum: int, frame: Any) -> None:
            try:
                os.write(2, b"ddbmigrate: stopping the plan: running jobs finish in-flight batches and "
                            b"save their checkpoints\n")
            except OSError:
                pass
            self.stop("signal")

        return install_handler(handler)

    def stop(self, reason: str = "signal") -> None:
        if not self.stopping.is_set():
            self.stop_reason = reason
        self.stopping.set()
        self.display.interrupt_all()

    def _schedule(self, pending: List[PlanJob]) -> None:
        running: Dict[cf.Future[JobResult], PlanJob] = {}
        with cf.ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="plan-job") as pool:
            while pending or running:
                if not self.stopping.is_set():
                    for job in list(pending):
                        if len(running) >= self.parallel:
                            break
                        dep_status = [self.results[a].status for a in job.after]
                        if any(s in ("failed", "blocked", "interrupted", "differences") for s in dep_status):
                            res = self.results[job.name]
                            res.status, res.exit_code = "blocked", EXIT_FATAL
                            bad = [a for a in job.after if self.results[a].status != "done"]
                            res.error = f"not run: it runs after {', '.join(bad)}, which did not finish"
                            self.display.set_status(job.name, "blocked")
                            pending.remove(job)
                            continue
                        if all(s == "done" for s in dep_status):
                            pending.remove(job)
                            self.display.set_status(job.name, "starting")
                            running[pool.submit(self._run_job, job)] = job
                else:
                    pending.clear()
                if not running:
                    if pending:  # waiting on nothing: cannot happen without a cycle, but never spin
                        time.sleep(0.05)
                    continue
                try:
                    done, _ = cf.wait(list(running), timeout=0.2, return_when=cf.FIRST_COMPLETED)
                except KeyboardInterrupt:
                    self.stop("signal")
                    continue
                for fut in done:
                    job = running.pop(fut)
                    res = fut.result()
                    self.results[job.name] = res
                    self.state.record(job, res)
                    self.display.set_status(job.name, res.status)
                    if res.status == "failed" and self.fail_fast:
                        self.stop("fail_fast")

    def _prepare_targets(self, jobs: List[PlanJob]) -> None:
        """Create missing targets one at a time before jobs run concurrently.

        Two jobs writing into one new table (a re-model of two tables into one) would otherwise
        race to create it; preparing here also fails early, before any data moves.
        """
        from ..aws.client import DynamoClient
        from ..jobs.copy import prepare_target

        done: Dict[Any, Optional[str]] = {}
        for job in jobs:
            if job.after or job.target is None or not (job.create_target or job.target_spec):
                continue
            if job.kind not in ("copy", "import", "replicate") or (job.kind == "import" and job.native):
                continue
            key = _ref_key(job.target)
            if key not in done:
                try:
                    retry = RetryPolicy(max_attempts=int(job.options.get("max_attempts", 10)))
                    dst = DynamoClient(job.target, pool_size=2, retry=retry)
                    src = DynamoClient(job.source, pool_size=2, retry=retry) if job.source is not None else None
                    sdesc = src.describe_table() if (src is not None and not job.target_spec) else None
                    prepare_target(dst, source_desc=sdesc, source_client=src, create=job.create_target,
                                   spec_path=job.target_spec)
                    done[key] = None
                except DdbMigrateError as e:
                    done[key] = e.one_line()
                    res = self.results[job.name]
                    res.status, res.exit_code, res.error = "failed", e.exit_code, f"preparing the target: {e.one_line()}"
            if done[key] is not None and self.results[job.name].status != "failed":
                res = self.results[job.name]
                res.status, res.exit_code, res.error = "failed", EXIT_FATAL, f"preparing the target: {done[key]}"
        for job in jobs:
            if self.results[job.name].status == "failed":
                self.state.record(job, self.results[job.name])
                self.display.set_status(job.name, "failed")
        jobs[:] = [j for j in jobs if self.results[j.name].status != "failed"]

    def _run_job(self, job: PlanJob) -> JobResult:
        from ..engine.run import progress_hook_context

        res = JobResult(job.name, job.kind, job.line, description=job.describe(), started_at=utcnow(),
                        offset_seconds=round(time.monotonic() - self.t0, 2))
        res.checkpoint_path = self.checkpoint_path(job)
        res.dead_letter_path = self.dead_letter_path(job)
        t = time.monotonic()
        with progress_hook_context(self.display.hook_for(job.name)):
            try:
                report = self._execute(job, res)
                res.report = _report_dict(report)
                res.exit_code = int(getattr(report, "exit_code", EXIT_OK) or EXIT_OK)
                res.status = "done"
                if job.verify_after and job.kind in ("copy", "import", "replicate") and not self.stopping.is_set():
                    self.display.set_status(job.name, "verifying")
                    vrep = self._verify(job)
                    res.verify = _report_dict(vrep)
                    vcode = int(getattr(vrep, "exit_code", EXIT_OK) or EXIT_OK)
                    if vcode == EXIT_DIFFERENCES:
                        res.status, res.exit_code = "differences", EXIT_DIFFERENCES
                        res.error = "verify found differences between source and target"
                    elif job.kind == "verify" or vcode:
                        res.exit_code = max(res.exit_code, vcode)
                if job.kind == "verify" and res.exit_code == EXIT_DIFFERENCES:
                    res.status = "differences"
            except DdbMigrateError as e:
                rep = getattr(e, "report", None)
                res.report = _report_dict(rep)
                res.status = "interrupted" if e.exit_code == EXIT_INTERRUPTED else "failed"
                res.exit_code = e.exit_code
                res.error = e.one_line()
            except Exception as e:  # a bug or an unexpected library error: report it, keep the plan going
                res.status, res.exit_code = "failed", EXIT_FATAL
                res.error = f"internal error: {type(e).__name__}: {str(e)[:500]}"
        res.duration_seconds = round(time.monotonic() - t, 3)
        res.finished_at = utcnow()
        if res.report is not None and not res.report.get("timeline"):
            res.report["timeline"] = self.display.phase_timeline(job.name, str(res.report.get("job") or job.kind))
        return res

    def _execute(self, job: PlanJob, res: JobResult) -> Any:
        func = _job_function(job)
        opts = self.options(job)
        confirm = (lambda message: True) if job.confirm else (lambda message: False)
        if job.kind == "copy":
            return _call(func, (job.source, job.target, opts),
                         {"create_target": job.create_target, "target_spec": job.target_spec,
                          "clean_target": job.clean_target, "confirm": confirm}, job.args)
        if job.kind == "clean":
            return _call(func, (job.target, opts), {"confirm": confirm}, job.args)
        if job.kind == "export" and job.native:
            return _call(func, (job.source, job.path_to),
                         {"export_time": job.export_time, "incremental": job.incremental, "progress": "off"}, job.args)
        if job.kind == "import" and job.native:
            return _call(func, (job.path_from, job.target, job.spec or job.target_spec), {"progress": "off"}, job.args)
        if job.kind == "export":
            return _call(func, (job.source, job.path_to, opts), {}, job.args)
        if job.kind == "import":
            return _call(func, (job.path_from, job.target, opts),
                         {"create_target": job.create_target, "spec": job.spec or job.target_spec}, job.args)
        if job.kind == "verify":
            return _call(func, (job.source, job.target), self._verify_kwargs(job, opts), job.args)
        # replicate: runs until the plan stops (Ctrl-C / SIGTERM / fail_fast) unless the job's
        # args give max_runtime or stop_after_idle.
        return _call(func, (job.source, job.target),
                     {"options": opts, "transform": job.transform, "create_target": job.create_target,
                      "target_spec": job.target_spec, "clean_target": job.clean_target, "confirm": confirm,
                      "stop_event": self.stopping}, job.args)

    def _verify_kwargs(self, job: PlanJob, opts: RunOptions) -> Dict[str, Any]:
        return {"transform": job.transform, "progress": "off", "segments": opts.segments,
                "consistent_read": opts.consistent_read or None, "max_read_units": opts.max_read_units,
                "retry": opts.retry, "on_error": opts.on_error,
                "diff_path": os.path.join(self.plan.state_dir, "diffs", f"{job.name}.jsonl")}

    def _verify(self, job: PlanJob) -> Any:
        func = _import_function("verify.job", "verify_tables", "verify (verify_after)")
        if job.kind == "import":
            raise UsageError("verify_after on an import job is not supported; add a verify job instead")
        os.makedirs(os.path.join(self.plan.state_dir, "diffs"), exist_ok=True)
        return _call(func, (job.source, job.target), self._verify_kwargs(job, self.options(job)), {})


def run_plan(
    path: str,
    *,
    parallel: Optional[int] = None,
    resume: bool = False,
    restart: bool = False,
    report: Optional[str] = None,
    progress: str = "auto",
    state_dir: Optional[str] = None,
    fail_fast: Optional[bool] = None,
    stream: Any = None,
) -> PlanReport:
    """Run every job of the plan at ``path`` and return the combined report.

    Job failures do not raise: they are in the report (``status``, ``exit_code``, each job's
    ``error``). Invalid plans raise :class:`PlanError`; an unfinished earlier run without
    ``resume`` or ``restart`` raises :class:`UsageError`.
    """
    if resume and restart:
        raise UsageError("--resume and --restart are mutually exclusive")
    plan = load_plan(path, state_dir=state_dir)
    for job in plan.jobs:
        _job_function(job)  # a missing job kind fails before anything runs
    runner = _Runner(plan, parallel=parallel or plan.parallel, resume=resume, restart=restart, progress=progress,
                     stream=stream, fail_fast=plan.fail_fast if fail_fast is None else fail_fast)
    rep = runner.run()
    if report:
        rep.write_json(report)
    rep.write_json(os.path.join(plan.state_dir, "last-report.json"))
    return rep


def iter_problems_text(problems: Sequence[PlanProblem]) -> Iterator[str]:
    for p in problems:
        yield str(p)
