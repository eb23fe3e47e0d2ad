"""What a transform returns or does, beyond a plain dict, ends the way a user expects: an Enum's
value (not its name) is written; a string that is not UTF-8 or an item that holds itself is a dead
letter naming the source key, not the job's end; sys.exit() inside a transform is a transform
error, not a success; a signature ddbmigrate cannot call is refused before anything is read; a
sibling module imported inside the function is found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List

import pytest

from support import create_table, one_error_line, put_items, scan_all

pytestmark = pytest.mark.integration

TRANSFORMS = '''
import enum, sys

class Status(str, enum.Enum):
    ACTIVE = "active"

class Level(int, enum.Enum):
    HIGH = 3

def enums(item):
    return {"pk": item["pk"], "status": Status.ACTIVE, "tags": {Status.ACTIVE, "x"}, "level": Level.HIGH}

def surrogate(item):
    if int(item["n"]) % 10 == 0:
        item["note"] = "a\\ud800b"
    return item

def cycle(item):
    if int(item["n"]) % 10 == 0:
        item["self"] = item
    return item

def exits(item):
    if int(item["n"]) == 7:
        sys.exit(0)
    return item

def kwonly(item, *, strict):
    return item

def gsi_bad(item):
    n = int(item["n"])
    d = {"PK": "USER#" + item["pk"], "SK": "PROFILE", "GSI1PK": "USER", "GSI1SK": item["pk"]}
    if n % 10 == 0:
        d["GSI1PK"] = 5
    if n % 10 == 1:
        d["GSI1SK"] = ""
    if n % 10 == 2:
        d["SK"] = "y" * 1500
    if n % 10 == 3:
        d["GSI1PK"] = "z" * 2100
    return d

def lazy(item):
    from helpers import mark
    return mark(item)
'''


def cli(tmp_path: Path, *args: str) -> Any:
    """The command in its own process (sys.exit in a transform must reach the real exit code)."""
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                       timeout=180, cwd=tmp_path)
    return SimpleNamespace(exit_code=r.returncode, returncode=r.returncode, stderr=r.stderr)


@pytest.fixture
def tables(endpoint: str, tmp_path: Path) -> Dict[str, str]:
    # In a folder of their own, not the working directory: the sibling must be found from the
    # transform's folder.
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "t.py").write_text(TRANSFORMS)
    (tmp_path / "tf" / "helpers.py").write_text("def mark(item):\n    item['marked'] = True\n    return item\n")
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i:02d}"}, "n": {"N": str(i)}} for i in range(30)])
    return {"src": src, "dst": dst}


def copy(endpoint: str, tmp_path: Path, t: Dict[str, str], fn: str, *more: str) -> Any:
    return cli(tmp_path, "copy", t["src"], t["dst"], "--endpoint-url", endpoint, "--progress", "off",
               "--transform", f"tf/t.py:{fn}", "--dead-letter", "dl.jsonl", *more)


def dead(tmp_path: Path) -> List[Dict[str, Any]]:
    p = tmp_path / "dl.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def test_an_enum_member_is_written_as_its_value(endpoint: str, tmp_path: Path, tables: Dict[str, str]) -> None:
    r = copy(endpoint, tmp_path, tables, "enums")
    assert r.returncode == 0, r.stderr
    got = scan_all(endpoint, tables["dst"])
    assert len(got) == 30
    assert all(i["status"] == {"S": "active"} and i["level"] == {"N": "3"} for i in got), got[0]
    assert all(sorted(i["tags"]["SS"]) == ["active", "x"] for i in got), got[0]


@pytest.mark.parametrize("fn,reason", [("surrogate", "not valid UTF-8"), ("cycle", "nested too deep")])
def test_an_unwritable_output_is_a_dead_letter_naming_its_source(endpoint: str, tmp_path: Path,
                                                                 tables: Dict[str, str], fn: str, reason: str) -> None:
    r = copy(endpoint, tmp_path, tables, fn, "--on-error", "skip")
    assert r.returncode == 3, r.stderr  # dead letters, not an internal error
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    recs = dead(tmp_path)
    assert sorted(d["source_key"]["pk"]["S"] for d in recs) == ["k00", "k10", "k20"], recs
    assert all(reason in d["reason"] for d in recs), recs
    assert sorted(i["pk"]["S"] for i in scan_all(endpoint, tables["dst"])) == [
        f"k{i:02d}" for i in range(30) if i % 10]


def test_sys_exit_in_a_transform_fails_the_job_naming_the_item(endpoint: str, tmp_path: Path,
                                                               tables: Dict[str, str]) -> None:
    r = copy(endpoint, tmp_path, tables, "exits")
    line = one_error_line(r, 1, "SystemExit", "k07", alone=False)
    assert "transform tf/t.py:exits raised SystemExit" in line, line


def test_a_required_keyword_only_parameter_is_refused_before_reading(endpoint: str, tmp_path: Path,
                                                                     tables: Dict[str, str]) -> None:
    r = copy(endpoint, tmp_path, tables, "kwonly")
    one_error_line(r, 2, "strict", "keyword-only")
    assert scan_all(endpoint, tables["dst"]) == [] and not dead(tmp_path)


def test_a_sibling_module_imported_inside_the_function_is_found(endpoint: str, tmp_path: Path,
                                                                tables: Dict[str, str]) -> None:
    r = copy(endpoint, tmp_path, tables, "lazy")
    assert r.returncode == 0, r.stderr
    got = scan_all(endpoint, tables["dst"])
    assert len(got) == 30 and all(i["marked"] == {"BOOL": True} for i in got)


@pytest.mark.parametrize("target_key", [("pk", None), ("name", None)])
def test_a_copy_without_a_transform_into_a_target_keyed_otherwise_is_refused(endpoint: str, tmp_path: Path,
                                                                             target_key: Any) -> None:
    # (pk, sk) into pk kept one item per pk; email-keyed items into a table keyed by name merged
    # the namesakes. Both ended "done", exit 0. Now refused before anything is read.
    src = create_table(endpoint, hash_key=("pk", "S"), range_key=("sk", "N"))
    put_items(endpoint, src, [{"pk": {"S": f"p{i % 3}"}, "sk": {"N": str(i)}, "name": {"S": f"n{i % 2}"}}
                              for i in range(12)])
    dst = create_table(endpoint, hash_key=(target_key[0], "S"))
    r = cli(tmp_path, "copy", src, dst, "--endpoint-url", endpoint, "--progress", "off")
    one_error_line(r, 2, "does not hold the source's (pk, sk)", "share it", "--transform", alone=False)
    assert scan_all(endpoint, dst) == []
    # A target whose key holds the source's (here with a sort key more) is fine.
    wider = create_table(endpoint, hash_key=("pk", "S"), range_key=("sk", "N"))
    r = cli(tmp_path, "copy", src, wider, "--endpoint-url", endpoint, "--progress", "off")
    assert r.returncode == 0 and len(scan_all(endpoint, wider)) == 12, r.stderr


def test_what_an_index_or_a_key_size_refuses_is_caught_before_sending_and_by_a_dry_run(
        endpoint: str, tmp_path: Path, tables: Dict[str, str]) -> None:
    # A GSI key of another type, an empty GSI key, a sort key over 1,024 bytes, a GSI partition key
    # over 2,048: the dry run said "invalid 0, would write 30"; the real run dead-lettered them
    # only after DynamoDB refused whole batches.
    gsi = [{"IndexName": "GSI1", "KeySchema": [{"AttributeName": "GSI1PK", "KeyType": "HASH"},
                                               {"AttributeName": "GSI1SK", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}]
    app = create_table(endpoint, hash_key=("PK", "S"), range_key=("SK", "S"), gsis=gsi)
    args = ["copy", tables["src"], app, "--endpoint-url", endpoint, "--progress", "off",
            "--transform", "tf/t.py:gsi_bad", "--on-error", "skip"]
    dry = cli(tmp_path, *args, "--dry-run", "--dead-letter", "dry.jsonl")
    assert dry.returncode in (0, 3), dry.stderr
    assert "18" in [ln.split("│")[2].strip() for ln in dry.stderr.splitlines() if "would write" in ln], dry.stderr
    real = cli(tmp_path, *args, "--dead-letter", "dl.jsonl")
    assert real.returncode == 3, real.stderr
    recs = dead(tmp_path)
    assert len(recs) == 12 and all(d["stage"] == "validate" for d in recs), recs
    reasons = sorted({d["reason"] for d in recs})
    assert reasons == ["index GSI1 key attribute 'GSI1PK' is over 2048 bytes (HASH key)",
                       "index GSI1 key attribute 'GSI1PK' must be of type S, got N",
                       "index GSI1 key attribute 'GSI1SK' is empty",
                       "key attribute 'SK' is over 1024 bytes (DynamoDB's limit for a sort key)"], reasons
    assert len(scan_all(endpoint, app)) == 18


def test_a_job_the_fit_check_refuses_creates_no_target(endpoint: str, tmp_path: Path,
                                                      tables: Dict[str, str]) -> None:
    # --create-target clones the source (keyed pk); the transform's items carry PK/SK only: the
    # job is refused, "nothing was read or written", and there is no new empty table either.
    from support import boto_client, unique

    new = unique("created")
    r = cli(tmp_path, "copy", tables["src"], new, "--endpoint-url", endpoint, "--progress", "off",
            "--create-target", "--transform", "tf/t.py:gsi_bad")
    one_error_line(r, 2, "missing key attribute 'pk'", alone=False)
    assert new not in boto_client(endpoint).list_tables()["TableNames"]


def test_one_item_collection_that_does_not_fit_is_dead_lettered_not_the_whole_job(endpoint: str,
                                                                                  tmp_path: Path) -> None:
    """The fit check sampled one Scan page's first 20 items: an item collection (one partition
    key's items, read together). When the first key's items alone did not fit, the whole copy was
    refused (exit 2), where the rest fit and those belonged in the dead-letter file."""
    from support import boto_client

    src = create_table(endpoint, range_key=("sk", "N"))
    dst = create_table(endpoint, hash_key=("PK", "S"), range_key=("SK", "S"),
                       gsis=[{"IndexName": "GSI1", "Projection": {"ProjectionType": "ALL"},
                              "KeySchema": [{"AttributeName": "GSI1PK", "KeyType": "HASH"},
                                            {"AttributeName": "GSI1SK", "KeyType": "RANGE"}]}])
    put_items(endpoint, src, [{"pk": {"S": f"p{p:02d}"}, "sk": {"N": str(s)}} for p in range(30) for s in range(25)])
    first = boto_client(endpoint).scan(TableName=src, Limit=1)["Items"][0]["pk"]["S"]
    (tmp_path / "tf.py").write_text(
        "def legacy(item):\n"
        f"    bad = item['pk'] == {first!r}\n"
        "    return {'PK': item['pk'], 'SK': str(item['sk']), 'GSI1PK': 'ALL', 'GSI1SK': 5 if bad else str(item['sk'])}\n")
    r = cli(tmp_path, "copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--transform", "tf.py:legacy",
            "--dead-letter", "dl.jsonl")
    assert r.returncode == 3, r.stderr
    assert len(scan_all(endpoint, dst)) == 29 * 25
    recs = dead(tmp_path)
    assert len(recs) == 25 and {d["source_key"]["pk"]["S"] for d in recs} == {first}, recs[:2]
