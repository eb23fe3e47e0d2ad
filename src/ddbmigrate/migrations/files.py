"""The migrations folder: ``NNNN_slug.py`` files, each a docstring and ``upgrade(ctx)``.

    migrations/
        0001_create_users.py        id "0001_create_users", applied in the order of NNNN
        0002_copy_orders_v2.py
        0003_add_user_alias.py      ``ddbmigrate migrations new "add user alias"``

Invariants:
1. Discovering and loading never runs ``upgrade``: a file is imported (its top level runs, as
   for any Python module) and its functions are checked, nothing more.
2. Every file is checked (name, number unique, docstring, ``upgrade(ctx)`` a plain function (not
   async, not a generator) with one parameter, an optional ``downgrade(ctx)`` and ``verify(ctx)``
   alike) before any migration is applied; a bad one is one line naming the file.
3. A migration's checksum is the SHA-256 of its file's bytes: what the history compares.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, List, Optional

from ..errors import UsageError

FILE_RE = re.compile(r"^(\d{4,})_([A-Za-z0-9_]+)\.py$")
TEMPLATE = '''"""{title}"""

# Applied by `ddbmigrate migrations up --dir {dir}`. Loading this file never runs upgrade().
# ctx runs ddbmigrate's jobs with the run's AWS settings, each resumable from its checkpoint:
#   ctx.create_table({{"TableName": "users_v2", "KeySchema": [...], "AttributeDefinitions": [...]}})
#   ctx.copy("users", "users_v2", transform=remodel)       # into a new or an existing table
#   ctx.update("users", add_gsi_key)                       # in place, safe under live writes
#   ctx.import_files("s3://bucket/export/", "users")
#   ctx.verify("users", "users_v2", transform=remodel)
# Transforms are plain functions: a dict in, a dict (or a list of dicts, or None) out.


def upgrade(ctx):
    raise NotImplementedError("write this migration")


# Optional: undo it (`ddbmigrate migrations down`).
# def downgrade(ctx):
#     ...
'''


@dataclass
class MigrationFile:
    """One migration file, loaded (its functions checked, never called)."""

    id: str  # the file name without ".py": "0003_add_user_alias"
    number: int
    path: str
    checksum: str
    description: str  # the docstring's first line
    upgrade: Callable[[Any], Any]
    downgrade: Optional[Callable[[Any], Any]]
    verify: Optional[Callable[[Any], Any]]
    module: ModuleType


def slug(title: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
    if not s:
        raise UsageError(f"migration title {title!r} has no letters or digits to name the file with")
    return s[:60]


def checksum(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def discover(directory: str) -> List[str]:
    """The migration file paths of ``directory``, by number; refuses duplicates and stray names."""
    if not os.path.isdir(directory):
        raise UsageError(f"migrations folder {directory} does not exist (create it with "
                         f"`ddbmigrate migrations init {directory}`)")
    found: List[tuple[int, str]] = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".py") or name.startswith(("_", ".")):
            continue
        m = FILE_RE.match(name)
        if m is None:
            raise UsageError(f"{os.path.join(directory, name)}: a migration file is named NNNN_title.py "
                             "(e.g. 0003_add_user_alias.py)")
        found.append((int(m.group(1)), os.path.join(directory, name)))
    numbers = [n for n, _ in found]
    for n in set(numbers):
        if numbers.count(n) > 1:
            dup = [p for k, p in found if k == n]
            raise UsageError(f"two migrations share the number {n:04d}: {', '.join(dup)}")
    return [p for _, p in sorted(found)]


def _check_fn(path: str, module: ModuleType, name: str, required: bool) -> Optional[Callable[[Any], Any]]:
    fn = getattr(module, name, None)
    if fn is None:
        if required:
            raise UsageError(f"{path}: a migration needs a function {name}(ctx)")
        return None
    if not callable(fn):
        raise UsageError(f"{path}: {name} must be a function {name}(ctx)")
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        # Called, it returns a coroutine or generator without running a line: the migration
        # would be recorded applied (or its verify passed) with nothing done.
        kind = "a generator" if inspect.isgeneratorfunction(fn) else "async"
        raise UsageError(f"{path}: {name} must be a plain function {name}(ctx), not {kind}: it is called, never "
                         "awaited or iterated, so its body would not run")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return fn  # type: ignore[no-any-return]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_params = [p for p in positional if p.default is p.empty]
    if len(required_params) > 1 or not (positional or any(p.kind == p.VAR_POSITIONAL for p in params)):
        raise UsageError(f"{path}: {name} must take one argument, ctx (its signature is {name}{inspect.signature(fn)})")
    return fn  # type: ignore[no-any-return]


def load(path: str) -> MigrationFile:
    """Import one migration file and check it; see the module docstring."""
    name = os.path.basename(path)
    m = FILE_RE.match(name)
    if m is None:
        raise UsageError(f"{path}: a migration file is named NNNN_title.py")
    digest = checksum(path)
    modname = "ddbmigrate_migration_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12] + "_" + digest[:8]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: cannot be loaded as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module  # transforms defined in it can be pickled by reference
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # a migration may import helpers that sit beside it
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(modname, None)
        raise UsageError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except (Exception, SystemExit) as e:  # a file that calls sys.exit() while imported: said, not obeyed
        sys.modules.pop(modname, None)
        raise UsageError(f"{path}: importing it failed: {type(e).__name__}: {e}") from None
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    doc = (module.__doc__ or "").strip()
    if not doc:
        raise UsageError(f"{path}: a migration starts with a docstring saying what it does")
    upgrade = _check_fn(path, module, "upgrade", True)
    assert upgrade is not None
    return MigrationFile(id=name[:-3], number=int(m.group(1)), path=path, checksum=digest,
                         description=doc.splitlines()[0].strip(), upgrade=upgrade,
                         downgrade=_check_fn(path, module, "downgrade", False),
                         verify=_check_fn(path, module, "verify", False), module=module)


def load_all(directory: str) -> List[MigrationFile]:
    """Every migration of ``directory``, loaded and checked, in order."""
    return [load(p) for p in discover(directory)]


def init(directory: str) -> str:
    """Create the migrations folder (an existing one is fine); returns its path."""
    os.makedirs(directory, exist_ok=True)
    return directory


def new(directory: str, title: str) -> str:
    """Write the next migration file from the template; returns its path."""
    paths = discover(directory)
    numbers = [int(FILE_RE.match(os.path.basename(p)).group(1)) for p in paths]  # type: ignore[union-attr]
    n = max(numbers, default=0) + 1
    path = os.path.join(directory, f"{n:04d}_{slug(title)}.py")
    text = TEMPLATE.format(title=title.replace('"""', "'''").replace("\\", "\\\\").strip() or "A migration",
                           dir=directory)
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(text)
    return path


def find(migrations: List[MigrationFile], ref: str) -> MigrationFile:
    """A migration by id (``0003_add_user_alias``) or number (``0003``, ``3``)."""
    for m in migrations:
        if ref == m.id:
            return m
    if ref.isdigit():
        for m in migrations:
            if int(ref) == m.number:
                return m
    raise UsageError(f"no migration {ref!r} in the folder (ids: {', '.join(m.id for m in migrations) or 'none'})")


__all__ = ["MigrationFile", "checksum", "discover", "find", "init", "load", "load_all", "new", "slug"]
