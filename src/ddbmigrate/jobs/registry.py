"""The job kinds a plan can name, and the library function that runs each one.

A kind maps to a ``module:function`` reference, imported only when a plan uses it::

    copy              -> ddbmigrate.jobs.copy:copy_table
    clean             -> ddbmigrate.jobs.clean:clean_table
    export            -> ddbmigrate.jobs.export:export_table
    export (native)   -> ddbmigrate.aws.managed:native_export
    import            -> ddbmigrate.jobs.import_files:import_files
    import (native)   -> ddbmigrate.aws.managed:native_import
    verify            -> ddbmigrate.verify:verify_tables (or ddbmigrate.verify.job)
    replicate         -> ddbmigrate.jobs.replicate:replicate
    update            -> ddbmigrate.jobs.update:update_table

Invariants:

* Nothing here imports a job module at import time: a build without (say) replication can still
  load, validate and run plans that do not replicate, and a plan that does fails with one line
  (``job kind 'replicate' needs ddbmigrate.jobs.replicate.replicate, which this build of
  ddbmigrate does not include``) instead of an ImportError traceback.
* An ImportError raised *inside* a job module (a bug, or a missing third-party package) is not
  disguised as a missing kind: it propagates unchanged.
* Each kind declares the engines it runs on; a plan checks a job's ``engine:`` against that list
  before anything runs.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from ..engine import (
    ENGINES,  # every engine a job can name, in the order messages list them
)
from ..errors import UsageError

#: The kinds a plan can name, in the order messages list them.
KINDS: Tuple[str, ...] = ("copy", "export", "import", "verify", "clean", "replicate", "update")


@dataclass(frozen=True)
class JobKind:
    """One kind of job: where its function lives and which engines can run it."""

    kind: str
    module: str
    function: str
    engines: Tuple[str, ...] = ENGINES
    native: bool = False
    #: Modules tried after ``module``, for a function that is moving between packages.
    also_in: Tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        return f"{self.module}.{self.function}"

    @property
    def takes_engine(self) -> bool:
        """Whether the function takes ``engine=``: only kinds that run on more than threads do."""
        return self.engines != ("threads",)

    def resolve(self) -> Callable[..., Any]:
        """Import and return the function; :class:`UsageError` when this build lacks it."""
        try:
            return resolve(self.module, self.function, f"job kind {self.kind!r}")
        except UsageError:
            # The primary location wins; the others are only consulted when it lacks the function.
            for module in self.also_in:
                found = _find(module, self.function)
                if found is not None:
                    return found
            raise


# Managed exports and imports run inside DynamoDB, and replication follows one stream in order:
# none of them has units an engine could spread over processes or Spark executors.
_REGISTRY: Dict[Tuple[str, bool], JobKind] = {
    ("copy", False): JobKind("copy", "ddbmigrate.jobs.copy", "copy_table"),
    ("clean", False): JobKind("clean", "ddbmigrate.jobs.clean", "clean_table"),
    ("export", False): JobKind("export", "ddbmigrate.jobs.export", "export_table"),
    ("export", True): JobKind("export", "ddbmigrate.aws.managed", "native_export", ("threads",), native=True),
    ("import", False): JobKind("import", "ddbmigrate.jobs.import_files", "import_files"),
    ("import", True): JobKind("import", "ddbmigrate.aws.managed", "native_import", ("threads",), native=True),
    ("verify", False): JobKind("verify", "ddbmigrate.verify", "verify_tables", also_in=("ddbmigrate.verify.job",)),
    ("replicate", False): JobKind("replicate", "ddbmigrate.jobs.replicate", "replicate", ("threads",)),
    ("update", False): JobKind("update", "ddbmigrate.jobs.update", "update_table"),
}

# Only export and import have a native variant; for every other kind ``native`` is ignored.
_HAS_NATIVE = frozenset(k for k, native in _REGISTRY if native)


def job_kind(kind: str, *, native: bool = False) -> JobKind:
    """The registered :class:`JobKind`; :class:`UsageError` for a kind that does not exist."""
    entry = _REGISTRY.get((kind, native and kind in _HAS_NATIVE))
    if entry is None:
        raise UsageError(f"unknown job kind {kind!r}: expected one of {', '.join(KINDS)}")
    return entry


def job_function(kind: str, *, native: bool = False, engine: Optional[str] = None) -> Callable[..., Any]:
    """The library function that runs ``kind``, imported now (another build may lack it).

    With ``engine``, also checks that the kind runs on that engine, that this build has the
    engine (:func:`engine_factory`) and that the function takes ``engine=``, so a plan fails
    before any job starts rather than after the first ones finished.
    """
    entry = job_kind(kind, native=native)
    func = entry.resolve()
    if engine is not None:
        if engine not in entry.engines:
            raise UsageError(f"job kind {kind!r} runs on {' or '.join(entry.engines)} only, not {engine!r}")
        if entry.takes_engine:
            engine_factory(engine)
            if not takes_keyword(func, "engine"):
                raise UsageError(f"engine {engine!r} needs {entry.reference} to take engine=, which it does not "
                                 "in this build of ddbmigrate")
    return func


def engine_factory(engine: str) -> Callable[..., Any]:
    """``ddbmigrate.engine.engine_for``, imported now: it builds the engine a job names."""
    return resolve("ddbmigrate.engine", "engine_for", f"engine {engine!r}")


def takes_keyword(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` accepts the keyword argument ``name`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return True
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def engines_for(kind: str, *, native: bool = False) -> Tuple[str, ...]:
    """The engines that can run ``kind``."""
    return job_kind(kind, native=native).engines


def resolve(module: str, function: str, needed_by: str) -> Callable[..., Any]:
    """Import ``module`` and return its callable ``function``.

    Raises :class:`UsageError` naming ``needed_by`` when the module or the function is absent
    from this build; any other import failure propagates as it is.
    """
    try:
        m = importlib.import_module(module)
    except ModuleNotFoundError as e:
        # Only the module we asked for (or a package above it) counts as "not in this build";
        # a third-party import failing inside it is a real error and must stay visible.
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            raise UsageError(f"{needed_by} needs {module}.{function}, which this build of ddbmigrate "
                             "does not include") from None
        raise
    f = getattr(m, function, None)
    if f is None or not callable(f):
        raise UsageError(f"{needed_by} needs {module}.{function}, which this build of ddbmigrate does not include")
    return f  # type: ignore[no-any-return]


def _find(module: str, function: str) -> Optional[Callable[..., Any]]:
    try:
        return resolve(module, function, "")
    except UsageError:
        return None
