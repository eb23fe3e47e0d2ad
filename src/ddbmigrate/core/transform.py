"""User transforms, loaded by reference (``path/to/file.py:func`` or ``pkg.module:func``).

A transform receives one item as plain Python values (str, Decimal, bytes, bool, None, list,
dict, set) and returns a dict, a list of dicts (fan-out) or None (drop). An optional second
parameter receives a :class:`TransformContext`. The wire <-> Python conversion happens here and
only here (invariant 5). The SHA-256 of the transform's source file is part of the job identity,
so resuming with edited code is refused unless forced.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Dict, List, Mapping, Optional

from ..errors import InvalidItemError, TransformError, UsageError
from .items import WireItem, from_python, to_python


@dataclass
class TransformContext:
    """What a transform may want to know about where an item comes from."""

    source_table: Optional[str] = None
    target_table: Optional[str] = None
    segment: Optional[int] = None
    origin: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


class Transform:
    """A loaded, signature-checked user function."""

    def __init__(self, func: Callable[..., Any], name: str, code_hash: str, location: str) -> None:
        self.func = func
        self.name = name
        self.code_hash = code_hash
        self.location = location
        self.wants_context = _wants_context(func, name)

    def __call__(self, item: WireItem, ctx: Optional[TransformContext] = None) -> List[WireItem]:
        """Apply to a wire item; returns wire items. Raises TransformError / InvalidItemError."""
        py = to_python(item)
        try:
            out = self.func(py, ctx or TransformContext()) if self.wants_context else self.func(py)
        except (Exception, SystemExit) as e:  # user code: anything may escape, we classify it
            # (sys.exit() in a transform too: it must not end the job as if it had succeeded.)
            raise TransformError(
                f"transform {self.name} raised {type(e).__name__}: {e} at {_user_frame(e, self.location)}",
                code=type(e).__name__,
            ) from e
        return self.to_wire(out)

    def to_wire(self, out: Any) -> List[WireItem]:
        if out is None:
            return []
        # A dict, the usual return, by its type first: isinstance against typing's Mapping costs ~1 µs.
        if type(out) is dict or isinstance(out, Mapping):
            return [self._one(out)]
        if isinstance(out, (list, tuple)):
            return [self._one(o) for o in out]
        raise TransformError(
            f"transform {self.name} returned {type(out).__name__}; expected a dict, a list of dicts or None",
            code="BadReturnType",
        )

    def _one(self, o: Any) -> WireItem:
        if type(o) is not dict and not isinstance(o, Mapping):
            raise TransformError(
                f"transform {self.name} returned a list holding {type(o).__name__}; expected dicts",
                code="BadReturnType",
            )
        try:
            return from_python(o)
        except InvalidItemError as e:
            raise TransformError(f"transform {self.name} returned an invalid item: {e.message}",
                                 code="InvalidOutput") from None
        except RecursionError:
            raise TransformError(f"transform {self.name} returned an item nested too deep to follow (a map or "
                                 "list that holds itself?); DynamoDB allows 32 levels", code="InvalidOutput") from None


def _wants_context(func: Callable[..., Any], name: str) -> bool:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in params if p.default is p.empty]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
    kw_required = [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if kw_required:  # it would fail on every item: say so now, once
        raise UsageError(f"transform {name} has required keyword-only parameters ({', '.join(kw_required)}) that "
                         f"ddbmigrate cannot give; its signature is {name.split(':')[-1]}{sig}")
    if len(required) > 2 or (not params and not varargs):
        raise UsageError(
            f"transform {name} must take one argument (item) or two (item, context); "
            f"its signature is {name.split(':')[-1]}{sig}"
        )
    return len(params) >= 2 or varargs


def _user_frame(e: BaseException, location: str) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    for fr in reversed(tb):
        if os.path.abspath(fr.filename) == location or fr.filename == location:
            return f"{fr.filename}:{fr.lineno}"
    return f"{tb[-1].filename}:{tb[-1].lineno}" if tb else location


def short_traceback(e: BaseException, limit: int = 5) -> Optional[str]:
    """The last ``limit`` frames of the user's exception, or None when the user's code did not raise
    (a bad return value has no user traceback worth keeping)."""
    cause = e.__cause__
    if cause is None:
        return None
    return "".join(traceback.format_exception(type(cause), cause, cause.__traceback__, limit=-limit))[-2000:]


def load_transform(ref: str) -> Transform:
    """Load ``file.py:func`` or ``package.module:func``; errors are one clear line."""
    if ":" not in ref:
        raise UsageError(f"--transform {ref!r}: expected path/to/file.py:function or package.module:function")
    target, _, fname = ref.rpartition(":")
    if not fname.isidentifier():
        raise UsageError(f"--transform {ref!r}: {fname!r} is not a function name")
    module: ModuleType
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = os.path.abspath(target)
        if os.path.isdir(path):
            raise UsageError(f"--transform {ref!r}: {target} is a folder; expected the .py file that defines "
                             f"{fname}")
        if not os.path.isfile(path):
            raise UsageError(f"--transform {ref!r}: file {target} not found")
        modname = "ddbmigrate_user_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"--transform {ref!r}: cannot load {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module  # so pickling (Spark, processes) can find it by name
        # The file's folder stays importable, as a script's is: a transform may import a sibling
        # module inside the function, on its first item, not only at the top of the file.
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as e:
            raise UsageError(f"--transform {ref!r}: importing {target} failed: {type(e).__name__}: {e}") from None
        location = path
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:
            raise UsageError(f"--transform {ref!r}: cannot import {target}: {type(e).__name__}: {e}") from None
        location = os.path.abspath(getattr(module, "__file__", "") or target)
    func = getattr(module, fname, None)
    if func is None:
        raise UsageError(f"--transform {ref!r}: {target} has no function {fname!r}")
    if not callable(func):
        raise UsageError(f"--transform {ref!r}: {target} has no function {fname!r} (that name holds a "
                         f"value of type {type(func).__name__}, not a function)")
    try:
        with open(location, "rb") as fh:
            code_hash = hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        code_hash = hashlib.sha256(ref.encode()).hexdigest()
    return Transform(func, ref, code_hash, location)


def as_transform(fn: Any, *, name: Optional[str] = None) -> Transform:
    """A :class:`Transform` from a reference string, a loaded Transform, or a plain callable.

    A callable (a migration's function, a lambda in a script) gets its name from where it is
    defined. A module-level function of a file keeps the ``file.py:func`` reference, so worker
    processes can load it again (and check its hash); any other callable runs on the threads
    engine only (its reference cannot be loaded elsewhere, and says so).
    """
    if isinstance(fn, Transform):
        return fn
    if isinstance(fn, str):
        return load_transform(fn)
    if not callable(fn):
        raise UsageError(f"a transform must be a function or a 'file.py:func' reference, not {type(fn).__name__}")
    qual = getattr(fn, "__qualname__", None) or type(fn).__name__
    try:
        location = os.path.abspath(inspect.getsourcefile(fn) or "")
    except TypeError:
        location = ""
    ref = name
    if ref is None:
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        top_level = module is not None and getattr(module, qual, None) is fn and "<" not in qual
        ref = f"{location}:{qual}" if location and top_level else f"<callable {qual}>"
    try:
        with open(location, "rb") as fh:
            code_hash = hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        code_hash = hashlib.sha256(ref.encode()).hexdigest()
    return Transform(fn, ref, code_hash, location or ref)
