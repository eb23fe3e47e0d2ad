"""Settings that differ between two table definitions (two tables, or a table and a spec).

Compared setting by setting on the compact canonical form (:func:`ddbmigrate.schema.model.normalize`),
so a default written out on one side and omitted on the other is no difference. Indexes are
compared per index and per index setting. The table name is never compared (a clone has another).

Invariant: a setting unread on either side is listed under ``not_compared`` with the reason and
never counted as equal or different; ``exit_code`` is 4 exactly when ``differences`` is non-empty.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import orjson

from ..errors import EXIT_DIFFERENCES, EXIT_OK
from .model import DEFAULTS, INDEX_ORDER, ORDER, TableDefinition

log = logging.getLogger("ddbmigrate.schema")


@dataclass
class SettingDiff:
    setting: str
    a: Any
    b: Any

    def to_dict(self) -> Dict[str, Any]:
        return {"setting": self.setting, "a": self.a, "b": self.b}


@dataclass
class SchemaDiff:
    """The outcome of ``schema diff``: ``exit_code`` 0 when equal, 4 on differences."""

    a: str
    b: str
    differences: List[SettingDiff] = field(default_factory=list)
    not_compared: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.equal else EXIT_DIFFERENCES

    def to_dict(self) -> Dict[str, Any]:
        return {"a": self.a, "b": self.b, "equal": self.equal, "exit_code": self.exit_code,
                "differences": [d.to_dict() for d in self.differences],
                "not_compared": [{"setting": s, "reason": r} for s, r in self.not_compared]}


def shown(value: Any) -> str:
    """A setting's value on one line (absent: '-')."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _value(props: Dict[str, Any], key: str) -> Any:
    return props.get(key, DEFAULTS.get(key))


_ACCOUNT_IN_ARN = re.compile(r"(arn:aws[a-zA-Z-]*:[a-z0-9-]*:[a-z0-9-]*:)(\d{12})(?=:)")


def _policy_view(doc: Any, arns: List[str], accounts: List[str]) -> Any:
    """A resource policy with the compared tables' own ARNs and account ids as placeholders: a
    clone's policy (rewritten for the new table, see schema.apply) equals its source's."""
    text = json.dumps(doc, sort_keys=True)
    for arn in sorted(arns, key=len, reverse=True):
        text = text.replace(arn, "${TableArn}")
    for acct in accounts:
        text = _ACCOUNT_IN_ARN.sub(lambda m: m.group(1) + "${AccountId}" if m.group(2) == acct else m.group(0), text)
        text = text.replace(f'"{acct}"', '"${AccountId}"')
    return json.loads(text)


def diff_definitions(a: TableDefinition, b: TableDefinition) -> SchemaDiff:
    """Every setting whose value differs between ``a`` and ``b``."""
    out = SchemaDiff(a=a.label or (a.name or "A"), b=b.label or (b.name or "B"))
    unread: Dict[str, str] = {}
    for side, d in (("A", a), ("B", b)):
        for setting, reason in d.unread.items():
            unread.setdefault(setting, f"{side}: {reason}")
    for setting, reason in unread.items():
        out.not_compared.append((setting, reason))
    keys = [k for k in ORDER if k != "TableName"] + sorted((set(a.props) | set(b.props)) - set(ORDER))
    arns = [x.arn for x in (a, b) if x.arn]
    accounts = sorted({x.split(":")[4] for x in arns if x.count(":") >= 5})
    for key in keys:
        if key in unread:
            continue
        if key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            _indexes(out, key, a.props.get(key) or [], b.props.get(key) or [], unread)
            continue
        va, vb = _value(a.props, key), _value(b.props, key)
        if key == "ResourcePolicy" and va and vb and arns:
            va, vb = (_policy_view(v, arns, accounts) for v in (va, vb))
        if va != vb:
            out.differences.append(SettingDiff(key, va, vb))
    return out


def _indexes(out: SchemaDiff, kind: str, ia: List[Dict[str, Any]], ib: List[Dict[str, Any]],
             unread: Dict[str, str]) -> None:
    ma, mb = {g["IndexName"]: g for g in ia}, {g["IndexName"]: g for g in ib}
    for name in sorted(set(ma) | set(mb)):
        where = f"{kind}[{name}]"
        if name not in ma or name not in mb:
            out.differences.append(SettingDiff(where, "present" if name in ma else None,
                                               "present" if name in mb else None))
            continue
        for k in INDEX_ORDER[1:]:
            if k in unread:
                continue
            va, vb = _value(ma[name], k), _value(mb[name], k)
            if va != vb:
                out.differences.append(SettingDiff(f"{where}.{k}", va, vb))


def schema_diff(a: Any, b: Any) -> SchemaDiff:
    """``ddbmigrate schema diff A B``: each side a TableRef (a table) or a path (a spec file)."""
    from .read import definition_of

    return diff_definitions(definition_of(a), definition_of(b))


def lines(d: SchemaDiff) -> List[str]:
    """The diff as aligned text rows: setting, A, B; then what was not compared."""
    rows = [("setting", d.a, d.b)] + [(x.setting, shown(x.a), shown(x.b)) for x in d.differences]
    w0 = max(len(r[0]) for r in rows)
    w1 = min(60, max(len(r[1]) for r in rows))
    out = [f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}" for r in rows] if d.differences else \
        [f"{d.a} and {d.b}: every compared setting is equal"]
    for setting, reason in d.not_compared:
        out.append(f"not compared: {setting} ({reason})")
    return out


def preflight_note(source: Any, target: Any) -> Optional[str]:
    """One line for copy/replicate/cutover when ``target`` exists and its settings differ from
    ``source``'s (``ddbmigrate schema diff`` shows them); None when equal, missing or unreadable.

    Never raises: a pre-flight note must not stop a job that would otherwise run.
    """
    from ..aws.client import DynamoClient
    from .read import read_definition

    from concurrent.futures import ThreadPoolExecutor

    from ..config import RetryPolicy

    # A courtesy, never worth a wait: one retry, 10 s a call (with the clients' defaults an endpoint
    # that never answers held the job back 5 minutes before it began, whatever --max-attempts said).
    quick = RetryPolicy(max_attempts=2)
    try:
        sc = DynamoClient(source, pool_size=1, retry=quick, timeout=10.0)
        tc = DynamoClient(target, pool_size=1, retry=quick, timeout=10.0)
        try:
            if not tc.table_exists():
                return None
            # The two sides are read at once: a pre-flight should cost one table's reading time.
            with ThreadPoolExecutor(2, thread_name_prefix="schema-preflight") as pool:
                a, b = pool.submit(read_definition, sc), pool.submit(read_definition, tc)
                d = diff_definitions(a.result(), b.result())
        finally:
            sc.close()
            tc.close()
    except Exception as e:  # the job itself reports a real problem with either table
        log.debug("schema pre-flight skipped: %s", e)
        return None
    if d.equal:
        return None
    names = ", ".join(x.setting for x in d.differences[:8]) + (", ..." if len(d.differences) > 8 else "")
    return (f"note: target {target.table} differs from source {source.table} in {len(d.differences)} "
            f"setting(s): {names} (details: ddbmigrate schema diff {source.table} {target.table})")
