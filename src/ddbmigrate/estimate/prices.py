"""Prices and throughput assumptions: a dated JSON file in the package, overridable with ``--prices``.

The packaged file (``prices.json``) names its date and its source. A user file has the same
shape and may give only what it changes: it is merged key by key over the packaged one, so
``{"regions": {"eu-west-1": {...}}}`` adds a region and ``{"throughput": {...}}`` changes an
assumption. A price that is ``null`` is unknown: costs that need it are reported as unknown,
never as zero.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from ..errors import UsageError

PACKAGED = os.path.join(os.path.dirname(__file__), "prices.json")


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read(path: str) -> Dict[str, Any]:
    def refuse_repeats(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for k, v in pairs:
            if k in out:  # json keeps the last one silently: a price given twice is a mistake
                raise UsageError(f"--prices {path}: the key {k!r} appears twice in one object")
            out[k] = v
        return out

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh, object_pairs_hook=refuse_repeats)
    except OSError as e:
        raise UsageError(f"--prices {path}: cannot read it: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"--prices {path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--prices {path}: expected a JSON object like the packaged prices.json")
    return data


@dataclass
class Prices:
    """The prices of one region and the throughput assumptions, with where they come from."""

    region: str
    rates: Dict[str, Any]
    throughput: Dict[str, Any]
    date: str
    source: str
    file: str
    notes: List[str] = field(default_factory=list)
    rates_region: str = ""  # whose prices these are (the default region's after a fallback)

    def rate(self, name: str, tier: Optional[str] = None) -> Optional[float]:
        v = self.rates.get(name)
        if isinstance(v, dict):
            v = v.get(tier or "STANDARD")
        return None if v is None else float(v)

    def assume(self, name: str, tier: Optional[str] = None) -> float:
        v = self.throughput[name]
        if isinstance(v, dict):
            v = v[tier or "STANDARD"]
        return float(v)

    def describe(self) -> Dict[str, Any]:
        return {"region": self.region, "rates_region": self.rates_region or self.region, "date": self.date,
                "source": self.source, "file": self.file}


# Throughput figures the estimate divides by: 0 would be a ZeroDivisionError, not an estimate.
_MAY_BE_ZERO = ("managed_startup_seconds",)
_TEXT = ("source", "date", "note", "currency")


def _number_problem(v: Any, positive: bool) -> Optional[str]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"must be a number, not {json.dumps(v)}"
    if not math.isfinite(v):
        return f"must be a finite number, not {v}"
    # -0.0 too: it prints as $-0.00 and reads as a refund
    if v < 0 or math.copysign(1.0, v) < 0:
        return f"must not be negative, not {v}"
    if positive and v == 0:
        return "must be more than 0 (the estimate divides by it)"
    return None


def _known_names(base: Dict[str, Any]) -> Tuple[Set[str], Set[str], Dict[str, Set[str]]]:
    """The price names any packaged region has, the throughput figures' names, and each tiered
    name's tiers: what an override may give."""
    prices: Set[str] = set(_TEXT)
    tiers: Dict[str, Set[str]] = {}
    for rates in (base.get("regions") or {}).values():
        for name, v in (rates or {}).items():
            prices.add(name)
            if isinstance(v, dict):
                tiers.setdefault(name, set()).update(v)
    for name, v in (base.get("throughput") or {}).items():
        if isinstance(v, dict):
            tiers.setdefault(name, set()).update(v)
    return prices, set(base.get("throughput") or {}), tiers


def _check(path: str, data: Dict[str, Any], base: Optional[Dict[str, Any]] = None) -> None:
    """A UsageError naming ``path`` and the key of the first value the estimate cannot use: a price
    that is not null or a finite number >= 0, a throughput figure that is not a finite number > 0,
    or (given the packaged ``base``) a name it does not have — a misspelt price would otherwise be
    merged unread, and the packaged price it meant to change used without a word."""
    def fail(key: str, problem: str) -> None:
        raise UsageError(f"--prices {path}: {key} {problem}")

    def unknown(key: str, name: str, known: Iterable[str]) -> None:
        names = sorted(known)
        near = difflib.get_close_matches(name, names, n=1)
        fail(key, "is not a name the prices file has" + (f" (did you mean {near[0]!r}?)" if near else
                                                           f"; known: {', '.join(names)}" if names else
                                                           ": this price has no tiers"))

    def names_in(prefix: str, values: Any, known: Set[str], tier_names: Dict[str, Set[str]]) -> None:
        for name, v in (values.items() if isinstance(values, dict) else ()):
            if name not in known:
                unknown(f"{prefix}.{name}", name, known)
            for tier in (v if isinstance(v, dict) else ()):
                if tier not in tier_names.get(name, ()):
                    unknown(f"{prefix}.{name}.{tier}", tier, tier_names.get(name, ()))

    if base is not None:
        price_names, figure_names, tier_names = _known_names(base)
        for k in data:
            if k not in base:
                unknown(k, k, base)
        regions = data.get("regions")
        for region, rates in (regions.items() if isinstance(regions, dict) else ()):
            names_in(f"regions.{region}", rates, price_names, tier_names)
        names_in("throughput", data.get("throughput"), figure_names, tier_names)

    regions = data.get("regions")
    if regions is not None and not isinstance(regions, dict):
        fail("regions", "must be an object of regions")
    for region, rates in (regions or {}).items():
        if not isinstance(rates, dict):
            fail(f"regions.{region}", "must be an object of prices")
        for name, v in rates.items():
            if name in _TEXT or v is None:
                continue
            tiers = v.items() if isinstance(v, dict) else [("", v)]
            for tier, x in tiers:
                problem = None if x is None else _number_problem(x, positive=False)
                if problem:
                    fail(f"regions.{region}.{name}" + (f".{tier}" if tier else ""), problem)
    throughput = data.get("throughput")
    if throughput is not None and not isinstance(throughput, dict):
        fail("throughput", "must be an object of figures")
    for name, v in (throughput or {}).items():
        tiers = v.items() if isinstance(v, dict) else [("", v)]
        for tier, x in tiers:
            problem = _number_problem(x, positive=name not in _MAY_BE_ZERO)
            if problem:
                fail(f"throughput.{name}" + (f".{tier}" if tier else ""), problem)


def load_prices(region: Optional[str] = None, path: Optional[str] = None) -> Prices:
    """The prices for ``region`` (default: the file's default region) from the packaged file,
    merged with ``path`` when given (a UsageError naming the key when one of its values is not
    a usable price or figure)."""
    data = _read(PACKAGED)
    if path:
        over = _read(path)
        _check(path, over, data)
        data = _merge(data, over)
    regions = data.get("regions") or {}
    default = str(data.get("default_region") or "us-east-1")
    want = region or default
    notes: List[str] = []
    rates_region = want
    if want not in regions:
        notes.append(f"no prices for {want} in the prices file: {default} prices are used (give --prices FILE "
                     f"with a regions.{want} entry)")
        want_rates = regions.get(default)
        rates_region = default
        if want_rates is None:
            raise UsageError(f"prices file has no entry for its default region {default}")
    else:
        want_rates = regions[want]
    if path:
        notes.append(f"prices merged from {path}")
    rates = {k: v for k, v in dict(want_rates).items() if k not in ("source", "date")}
    # Each region names its own source and date; the file's top-level ones are the default region's.
    return Prices(region=want, rates=rates, throughput=dict(data.get("throughput") or {}),
                  date=str(want_rates.get("date") or data.get("date", "?")),
                  source=str(want_rates.get("source") or data.get("source", "?")),
                  file=path or PACKAGED, notes=notes, rates_region=rates_region)
