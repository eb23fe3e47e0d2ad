"""Item-level schema upgrades: one chain of functions for the backfill and for lazy reads.

    v1 item ──step 1──▶ v2 ──step 2──▶ v3 (latest)     the version lives in one attribute (``_v``)

An :class:`UpgradeRegistry` holds the steps. The same object is the backfill's transform
(``ddbmigrate update TABLE --transform schema.py:REGISTRY --schema-version-attribute _v``, or
``ctx.update(table, REGISTRY)`` in a migration) and what the application calls on every read
(:func:`upgrade_item`), so an item read before the backfill reached it looks exactly like one
the backfill wrote.

Invariants:
1. ``upgrade_item`` never mutates its argument and is idempotent: an item at the latest version
   (or newer: written by newer code) comes back equal to itself.
2. Steps run in order from the item's version; each one's result gets the next version number,
   so a chain stopped half-way (an exception) never labels an item with a version it lacks.
3. An item without the attribute is at ``initial`` (1 by default): the shape before versioning.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from ..core.transform import Transform, load_transform
from ..errors import UsageError

Step = Callable[[Dict[str, Any]], Optional[Dict[str, Any]]]


class UpgradeRegistry:
    """Steps that upgrade an item from version N to N + 1, keyed by N.

    ::

        REGISTRY = UpgradeRegistry("_v")

        @REGISTRY.step(1)          # v1 -> v2
        def split_name(item): ...

    A step returns the upgraded item, or None after changing the item it was given in place.
    Calling the registry upgrades one item (it is a transform, plain dict in and out).
    """

    def __init__(self, attribute: str = "_v", steps: Optional[Mapping[int, Step]] = None, *, initial: int = 1) -> None:
        if not attribute:
            raise UsageError("an UpgradeRegistry needs the name of its schema-version attribute")
        self.attribute = attribute
        self.initial = initial
        self.steps: Dict[int, Step] = {}
        for v, fn in sorted((steps or {}).items()):
            self.add(v, fn)

    def add(self, from_version: int, fn: Step) -> Step:
        if not isinstance(from_version, int) or isinstance(from_version, bool) or from_version < self.initial:
            raise UsageError(f"upgrade step versions are integers >= {self.initial}, not {from_version!r}")
        if from_version in self.steps:
            raise UsageError(f"two upgrade steps from version {from_version} ({self.steps[from_version].__name__} "
                             f"and {getattr(fn, '__name__', fn)})")
        if not callable(fn):
            raise UsageError(f"upgrade step from version {from_version} is not a function")
        self.steps[from_version] = fn
        return fn

    def step(self, from_version: int) -> Callable[[Step], Step]:
        """Decorator: register the function that upgrades ``from_version`` items to the next version."""
        def deco(fn: Step) -> Step:
            return self.add(from_version, fn)

        return deco

    register = step

    @property
    def latest(self) -> int:
        """The version every chain ends at; steps must cover initial .. latest - 1 without a gap."""
        v = self.initial
        while v in self.steps:
            v += 1
        extra = sorted(k for k in self.steps if k >= v)
        if extra:
            raise UsageError(f"upgrade steps have a gap: no step from version {v}, but one from {extra[0]}")
        return v

    def check(self) -> int:
        """The latest version, after checking the steps have no gap (UsageError otherwise)."""
        return self.latest

    def version_of(self, item: Mapping[str, Any]) -> int:
        """The schema version ``item`` is at (``initial`` when it has no version attribute)."""
        v = item.get(self.attribute)
        if v is None:
            return self.initial
        if isinstance(v, bool) or not isinstance(v, (int, Decimal)) or int(v) != v:
            raise ValueError(f"schema-version attribute {self.attribute!r} holds {v!r}, not a whole number")
        return int(v)

    def __call__(self, item: Dict[str, Any]) -> Dict[str, Any]:
        return upgrade_item(item, self)

    def __repr__(self) -> str:
        return f"UpgradeRegistry({self.attribute!r}, steps={sorted(self.steps)})"


def upgrade_item(item: Mapping[str, Any],
                 registry: Union[UpgradeRegistry, Mapping[int, Step], Sequence[Step]]) -> Dict[str, Any]:
    """``item`` (plain Python values, as boto3's resource API or a transform sees it) upgraded to
    the registry's latest version; see the module docstring. ``registry`` may also be a plain
    mapping {from_version: step} or a list of steps (the first upgrades version 1), with the
    version in ``_v``."""
    if isinstance(registry, UpgradeRegistry):
        reg = registry
    elif isinstance(registry, Mapping):
        reg = UpgradeRegistry("_v", registry)
    else:
        reg = UpgradeRegistry("_v", {i + 1: fn for i, fn in enumerate(registry)})
    latest = reg.latest
    v = reg.version_of(item)
    if v >= latest:
        return dict(item)
    out: Dict[str, Any] = copy.deepcopy(dict(item))
    while v < latest:
        res = reg.steps[v](out)
        if res is not None:
            if not isinstance(res, dict):
                raise TypeError(f"upgrade step from version {v} returned {type(res).__name__}, not a dict")
            out = res
        v += 1
        out[reg.attribute] = v
    return out


def load_registry(ref: Optional[str], attribute: str) -> Transform:
    """``--transform file.py:NAME --schema-version-attribute ATTR``: NAME must be an
    :class:`UpgradeRegistry` versioned in ATTR (checked here, before anything is read)."""
    if not ref:
        raise UsageError("--schema-version-attribute needs --transform file.py:REGISTRY (an UpgradeRegistry)")
    tf = load_transform(ref)
    reg = tf.func
    if not isinstance(reg, UpgradeRegistry):
        raise UsageError(f"--transform {ref}: with --schema-version-attribute it must name an UpgradeRegistry "
                         f"(ddbmigrate.migrations), not a {type(reg).__name__}")
    if reg.attribute != attribute:
        raise UsageError(f"--transform {ref}: the registry keeps its version in {reg.attribute!r}, not "
                         f"{attribute!r} (--schema-version-attribute)")
    try:
        reg.check()  # a gap in the steps is refused now, not on the first item
    except UsageError as e:
        raise UsageError(f"--transform {ref}: {e.message}") from None
    return tf


__all__ = ["UpgradeRegistry", "load_registry", "upgrade_item"]
