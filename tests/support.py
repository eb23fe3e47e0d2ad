"""Test helpers shared by every suite: tables on DynamoDB Local, independent scans, items.

The independent scan uses plain boto3 (botocore's own parser), not ddbmigrate's fast path, so
a bug in our codec cannot hide itself in the assertions.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import boto3

from ddbmigrate.core.items import canonical_item


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def boto_client(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def create_table(endpoint: str, name: Optional[str] = None, *, hash_key: Tuple[str, str] = ("pk", "S"),
                 range_key: Optional[Tuple[str, str]] = None, stream: Optional[str] = None,
                 gsis: Optional[List[Dict[str, Any]]] = None) -> str:
    name = name or unique()
    attrs = {hash_key[0]: hash_key[1]}
    keys = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    if range_key:
        attrs[range_key[0]] = range_key[1]
        keys.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
    kw: Dict[str, Any] = {}
    for g in gsis or []:
        for k in g["KeySchema"]:
            attrs.setdefault(k["AttributeName"], "S")
    if gsis:
        kw["GlobalSecondaryIndexes"] = gsis
    if stream:
        kw["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
    c = boto_client(endpoint)
    c.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in attrs.items()],
                   KeySchema=keys, **kw)
    c.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    return name


def _b64(v: Any) -> Any:
    if isinstance(v, dict):
        out = {}
        for t, x in v.items():
            if t == "B":
                out[t] = base64.b64encode(x).decode()
            elif t == "BS":
                out[t] = [base64.b64encode(e).decode() for e in x]
            elif t == "L":
                out[t] = [_b64(e) for e in x]
            elif t == "M":
                out[t] = {k: _b64(e) for k, e in x.items()}
            else:
                out[t] = x
        return out
    return v


def to_wire(boto_item: Dict[str, Any]) -> Dict[str, Any]:
    """boto3's low-level item (bytes for B) -> wire JSON form (base64 for B)."""
    return {k: _b64(v) for k, v in boto_item.items()}


def put_items(endpoint: str, table: str, items: List[Dict[str, Any]]) -> None:
    """Write wire-format items with plain boto3 (one PutItem each, independent of ddbmigrate)."""
    c = boto_client(endpoint)
    for it in items:
        c.put_item(TableName=table, Item=from_wire(it))


def _unb64(v: Any) -> Any:
    out = {}
    for t, x in v.items():
        if t == "B":
            out[t] = base64.b64decode(x)
        elif t == "BS":
            out[t] = [base64.b64decode(e) for e in x]
        elif t == "L":
            out[t] = [_unb64(e) for e in x]
        elif t == "M":
            out[t] = {k: _unb64(e) for k, e in x.items()}
        else:
            out[t] = x
    return out


def from_wire(item: Dict[str, Any]) -> Dict[str, Any]:
    return {k: _unb64(v) for k, v in item.items()}


def scan_all(endpoint: str, table: str) -> List[Dict[str, Any]]:
    """Every item of ``table`` in wire form, via plain boto3, strongly consistent."""
    c = boto_client(endpoint)
    out: List[Dict[str, Any]] = []
    for page in c.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        out.extend(to_wire(i) for i in page["Items"])
    return out


def as_set(items: List[Dict[str, Any]]) -> Dict[Any, int]:
    """Multiset of canonical items (set order and number spelling ignored)."""
    out: Dict[Any, int] = {}
    for it in items:
        k = canonical_item(it)
        out[k] = out.get(k, 0) + 1
    return out


def every_type_items() -> List[Dict[str, Any]]:
    """Items using every DynamoDB type and awkward values (hash key 'pk' of type S)."""
    deep: Dict[str, Any] = {"S": "bottom"}
    for i in range(12):
        deep = {"M": {f"level{i}": deep, "n": {"N": str(i)}}}
    return [
        {"pk": {"S": "scalars"}, "s": {"S": "héllo wörld ✓ 日本"}, "n": {"N": "12345678901234567890123456789012345678"},
         "neg": {"N": "-0.000000000000000000000000000000000001"}, "exp": {"N": "1.5E+100"},
         "small": {"N": "1E-130"}, "b": {"B": base64.b64encode(b"\x00\x01\xff").decode()},
         "t": {"BOOL": True}, "f": {"BOOL": False}, "null": {"NULL": True}},
        {"pk": {"S": "empties"}, "es": {"S": ""}, "eb": {"B": ""}, "el": {"L": []}, "em": {"M": {}}},
        {"pk": {"S": "sets"}, "ss": {"SS": ["a", "b", "ç"]}, "ns": {"NS": ["1", "-2.5", "99999999999999999999999999999999999999"]},
         "bs": {"BS": [base64.b64encode(b"x").decode(), base64.b64encode(b"\x00").decode()]}},
        {"pk": {"S": "nested"}, "deep": deep,
         "list": {"L": [{"S": "a"}, {"N": "1"}, {"L": [{"NULL": True}, {"M": {"k": {"SS": ["z"]}}}]}]}},
        {"pk": {"S": "unicode-ключ-🔑"}, "emoji": {"S": "🙂" * 10}},
        {"pk": {"S": "big"}, "blob": {"S": "y" * (399 * 1024)}},
    ]


@contextlib.contextmanager
def local_spark(master: str, app: str) -> Iterator[Any]:
    """A SparkContext on this machine, its workers on this interpreter, quiet, stopped at the end."""
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark import SparkConf, SparkContext

    conf = (SparkConf().setMaster(master).setAppName(app)
            .set("spark.ui.enabled", "false").set("spark.ui.showConsoleProgress", "false")
            .set("spark.driver.host", "127.0.0.1"))
    sc = SparkContext.getOrCreate(conf)
    sc.setLogLevel("ERROR")
    try:
        yield sc
    finally:
        sc.stop()


# A fan-out transform for verify tests: drops keys ending in 7, splits the others in two.
VERIFY_FANOUT = '''
def split(item):
    if item["pk"].endswith("7"):
        return None  # dropped
    return [{"pk": item["pk"] + "#a", "age": item.get("age")},
            {"pk": item["pk"] + "#b", "tags": item.get("tags", {"none"})}]
'''


def one_error_line(r: Any, code: int, *words: str, alone: bool = True) -> str:
    """A CLI result (click's, or a finished process's) that is exit ``code`` with one ``error:``
    line naming every word, and never a traceback or "internal error"; ``alone``: nothing else
    on stderr. Returns the line."""
    assert r.exit_code == code, (r.exit_code, r.stderr, getattr(r, "exception", None))
    if hasattr(r, "exception"):
        assert isinstance(r.exception, SystemExit)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines() if alone else [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return str(lines[0])


def one_usage_line(r: Any, *words: str) -> str:
    """:func:`one_error_line` of a usage error (exit 2)."""
    return one_error_line(r, 2, *words)


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    """``pred()``'s first truthy value, polled until ``timeout`` seconds (then the test fails)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def write_plan(path: Any, endpoint: str, jobs: List[Dict[str, Any]], **top: Any) -> Any:
    """A plan file whose every job reads and writes ``endpoint``; ``top`` adds top-level keys."""
    import yaml

    side = {"endpoint_url": endpoint, "region": "us-east-1"}
    doc = {"version": 1, "defaults": {"source": side, "target": side}, "jobs": jobs, **top}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
