"""Helpers for the job x engine matrix (tests/integration/test_engine_matrix.py).

Everything here is independent of ddbmigrate's own readers and writers: items are seeded with
plain boto3, AWS-layout export folders are built byte for byte with gzip + hashlib, exports are
read back with gzip + json, and the expected target of a transform is computed here in wire
form, never by calling the transform. A bug in the code under test cannot hide in the oracle.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from support import boto_client, every_type_items, from_wire

Item = Dict[str, Any]


# --------------------------------------------------------------------------- items


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def typed_items(n: int, start: int = 0) -> List[Item]:
    """``n`` small items, each holding every DynamoDB type (hash key ``pk``, number ``n``)."""
    out = []
    for i in range(start, start + n):
        out.append({
            "pk": {"S": f"item-{i:05d}"},
            "n": {"N": str(i)},
            "name": {"S": f"name é {i}"},
            "big": {"N": str(10 ** 37 + i)},  # 38 digits
            "neg": {"N": f"-{i}.25"},
            "exp": {"N": f"{i % 9 + 1}.5E+{i % 120}"},
            "tiny": {"N": f"-{i % 9 + 1}E-{100 + i % 30}"},
            "bin": {"B": b64(bytes([i % 256, 0, 255]))},
            "flag": {"BOOL": i % 2 == 0},
            "nul": {"NULL": True},
            "list": {"L": [{"S": "a"}, {"N": str(i)}, {"L": []}, {"M": {"k": {"BOOL": False}}}]},
            "map": {"M": {"inner": {"M": {"x": {"N": "1.0"}, "deep": {"M": {"s": {"SS": ["p", "q"]}}}}},
                          "empty": {"M": {}}}},
            "ss": {"SS": [f"s{i}", "common"]},
            "ns": {"NS": [str(i), "-1", "3.14"]},
            "bs": {"BS": [b64(b"\x00"), b64(f"b{i}".encode())]},
        })
    return out


def matrix_items(n: int = 240) -> List[Item]:
    """The matrix's table content: the shared awkward items plus ``n`` typed items."""
    return every_type_items() + typed_items(n)


def seed(endpoint: str, table: str, items: List[Item]) -> None:
    """Write wire items with plain boto3 BatchWriteItem (independent of ddbmigrate)."""
    c = boto_client(endpoint)
    for i in range(0, len(items), 25):
        req: Dict[str, Any] = {table: [{"PutRequest": {"Item": from_wire(it)}} for it in items[i:i + 25]]}
        while req:
            req = c.batch_write_item(RequestItems=req).get("UnprocessedItems") or {}


def number(item: Item) -> Optional[int]:
    n = item.get("n")
    return int(n["N"]) if n is not None else None


# --------------------------------------------------------------------------- transforms

# Re-model into a table keyed (PK, SK): rename name -> title, drop every n % 7 == 3, fan every
# n % 5 == 0 out into a second "TAG#" item. Items without n (the awkward ones) only get keys.
RESHAPE = '''
def reshape(item):
    pk = item["pk"]
    out = dict(item)
    out["PK"] = "ITEM#" + pk
    out["SK"] = "META"
    n = item.get("n")
    if n is None:
        return out
    n = int(n)
    if n % 7 == 3:
        return None
    if "name" in out:
        out["title"] = out.pop("name")
    if n % 5 == 0:
        return [out, {"PK": "ITEM#" + pk, "SK": "TAG#" + str(n), "n": n}]
    return out
'''


def expected_reshape(items: List[Item]) -> Tuple[List[Item], Dict[str, int]]:
    """What RESHAPE must write, computed on wire items, and the counters it implies."""
    out: List[Item] = []
    dropped = fanout = 0
    for it in items:
        pk = it["pk"]["S"]
        keyed = {**it, "PK": {"S": "ITEM#" + pk}, "SK": {"S": "META"}}
        n = number(it)
        if n is None:
            out.append(keyed)
            continue
        if n % 7 == 3:
            dropped += 1
            continue
        if "name" in keyed:
            keyed["title"] = keyed.pop("name")
        out.append(keyed)
        if n % 5 == 0:
            fanout += 1
            out.append({"PK": {"S": "ITEM#" + pk}, "SK": {"S": f"TAG#{n}"}, "n": {"N": str(n)}})
    return out, {"dropped": dropped, "fanout_extra": fanout}


# Raises for every item whose n is in the set written into FAILING; passes the rest unchanged.
# ``sleep`` seconds per item make a run slow enough to interrupt.
FAILING = '''
import time
FAIL = set({fail!r})
SLEEP = {sleep!r}

def pick(item):
    if SLEEP:
        time.sleep(SLEEP)
    n = item.get("n")
    if n is not None and int(n) in FAIL:
        raise ValueError("refusing item %s" % item["pk"])
    return item
'''


def write_transform(folder: Path, name: str, code: str) -> str:
    """Write ``code`` to ``folder/name.py``; returns the ``file.py:func`` reference."""
    path = folder / f"{name}.py"
    path.write_text(code)
    func = code.split("def ", 1)[1].split("(", 1)[0]
    return f"{path}:{func}"


def failing_transform(folder: Path, fail: List[int], sleep: float = 0.0, name: str = "pick") -> str:
    return write_transform(folder, name, FAILING.format(fail=sorted(fail), sleep=sleep))


# --------------------------------------------------------------------------- export folders


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def write_aws_export(folder: Path, items: List[Item], files: int = 4,
                     export_id: str = "01760000000000-0badcafe") -> Path:
    """An export folder exactly as DynamoDB's Export to S3 writes it, items round-robin over files."""
    root = folder / "AWSDynamoDB" / export_id
    (root / "data").mkdir(parents=True)
    (root / "_started").write_bytes(b"")
    entries = []
    for f in range(files):
        chunk = items[f::files]
        gz = gzip.compress(b"".join(_dumps({"Item": it}) + b"\n" for it in chunk))
        name = f"{f:02d}matrixdatafile{'x' * 10}"
        (root / "data" / f"{name}.json.gz").write_bytes(gz)
        entries.append({"itemCount": len(chunk), "md5Checksum": b64md5(gz), "etag": hashlib.md5(gz).hexdigest(),
                        "dataFileS3Key": f"p/AWSDynamoDB/{export_id}/data/{name}.json.gz"})
    mf = b"".join(_dumps(e) + b"\n" for e in entries)
    (root / "manifest-files.json").write_bytes(mf)
    (root / "manifest-files.md5").write_bytes(b64md5(mf).encode())
    summary = {
        "version": "2020-06-30", "exportArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/S/export/{export_id}",
        "startTime": "2026-11-04T07:28:34.028Z", "endTime": "2026-11-04T07:33:43.897Z",
        "tableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/S", "tableId": "matrix",
        "exportTime": "2026-11-04T07:28:34.028Z", "s3Bucket": "bucket", "s3Prefix": "p",
        "s3SseAlgorithm": "AES256", "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"p/AWSDynamoDB/{export_id}/manifest-files.json",
        "billedSizeBytes": 0, "itemCount": len(items), "outputFormat": "DYNAMODB_JSON",
    }
    sb = _dumps(summary)
    (root / "manifest-summary.json").write_bytes(sb)
    (root / "manifest-summary.md5").write_bytes(b64md5(sb).encode())
    return root


def read_export(dest: Path) -> Tuple[Path, List[Item], List[Dict[str, Any]], Dict[str, Any]]:
    """Read an export back with gzip + json: (root, items, manifest-files entries, summary).

    Checks what a consumer of AWS exports relies on: one ``AWSDynamoDB/<id>``, every listed file
    present with its md5Checksum and itemCount, no unlisted data file, the manifests' .md5 files.
    """
    roots = sorted((dest / "AWSDynamoDB").iterdir())
    assert len(roots) == 1, roots
    root = roots[0]
    assert (root / "_started").exists()
    mf = (root / "manifest-files.json").read_bytes()
    assert (root / "manifest-files.md5").read_text().strip() == b64md5(mf)
    sb = (root / "manifest-summary.json").read_bytes()
    assert (root / "manifest-summary.md5").read_text().strip() == b64md5(sb)
    entries = [json.loads(x) for x in mf.decode().splitlines() if x.strip()]
    summary = json.loads(sb)
    items: List[Item] = []
    listed = set()
    for e in entries:
        key = e["dataFileS3Key"]
        assert f"AWSDynamoDB/{root.name}/data/" in key, key
        path = root / "data" / key.rsplit("/", 1)[1]
        listed.add(path.name)
        gz = path.read_bytes()
        assert b64md5(gz) == e["md5Checksum"], path
        lines = [json.loads(x) for x in gzip.decompress(gz).decode().splitlines() if x.strip()]
        assert len(lines) == e["itemCount"], path
        for ln in lines:
            assert set(ln) == {"Item"}, ln
            items.append(ln["Item"])
    assert {p.name for p in (root / "data").iterdir()} == listed
    assert summary["itemCount"] == len(items)
    return root, items, entries, summary


# --------------------------------------------------------------------------- dead letters


def dead_letter_lines(path: Path) -> List[Dict[str, Any]]:
    """Every line of the dead-letter file and of its per-segment files (the Spark engine's layout)."""
    files = [path] if path.exists() else []
    root, ext = str(path.name).rsplit(".", 1)
    files += sorted(path.parent.glob(f"{root}.segment-*.{ext}"))
    out: List[Dict[str, Any]] = []
    for f in files:
        out.extend(json.loads(x) for x in f.read_text().splitlines() if x.strip())
    return out


def source_pk(line: Dict[str, Any]) -> str:
    """The source key a dead-letter line names (``source_key``, else its item's ``pk``)."""
    key = line.get("source_key") or line["item"]
    pk = key["pk"]
    return pk["S"] if isinstance(pk, dict) else pk


# --------------------------------------------------------------------------- observing


class Recorder:
    """An Observer that polls its job's snapshot every few ms and keeps every one it saw.

    ``on_snapshot(snap)`` (optional) is called with each: the resume tests set ``cancel`` there.
    """

    def __init__(self, on_snapshot: Optional[Callable[[Dict[str, Any]], None]] = None,
                 every: float = 0.01) -> None:
        self.on_snapshot = on_snapshot
        self.every = every
        self.attached: List[str] = []
        self.detached = 0
        self.snapshots: List[Dict[str, Any]] = []
        self._lock = threading.Lock()

    def attach(self, job: str, snapshot: Callable[[], Dict[str, Any]]) -> Callable[[], None]:
        self.attached.append(job)
        stop = threading.Event()

        def take() -> None:
            snap = dict(snapshot())
            with self._lock:
                self.snapshots.append(snap)
            if self.on_snapshot is not None:
                self.on_snapshot(snap)

        def poll() -> None:
            while not stop.wait(self.every):
                take()

        t = threading.Thread(target=poll, name="recorder", daemon=True)
        t.start()

        def detach() -> None:
            self.detached += 1
            stop.set()
            t.join()
            take()  # the last word: what the job shows as it ends

        return detach

    def done_values(self) -> List[int]:
        with self._lock:
            return [int(s.get("done") or 0) for s in self.snapshots]
