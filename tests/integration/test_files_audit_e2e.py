"""Defects an audit of file imports found, end to end on DynamoDB Local (and moto S3): what is in
the table, what is in the dead-letter file with its file:line, and the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import boto3
import pytest

from ddbmigrate import RunOptions, TableRef
from ddbmigrate.jobs.export import export_table
from ddbmigrate.sources.lines import MAX_LINE
from support import create_table, put_items, scan_all, unique

pytestmark = pytest.mark.integration


def cli(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def pks(endpoint: str, table: str) -> List[str]:
    return sorted(i["pk"]["S"] for i in scan_all(endpoint, table))


def dead(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_csv_quote_left_open_fails_the_file_naming_its_line(endpoint: str, tmp_path: Path) -> None:
    q = tmp_path / "q.csv"
    q.write_text('pk,v\na,1\nb,"oops\n' + "".join(f"r{i},{i}\n" for i in range(50)))
    t = create_table(endpoint)
    r = cli("import", str(q), t, "--endpoint-url", endpoint, "--quiet")
    # Before: exit 0, b written with v="oops\nr0,0\n...", r0..r49 never written.
    assert r.returncode == 1, r.stderr
    assert "q.csv:3: the quoted value opened on line 3 is never closed" in r.stderr
    assert pks(endpoint, t) == ["a"]


def test_csv_bad_utf8_big_fields_and_over_long_lines(endpoint: str, tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    with open(p, "wb") as fh:
        fh.write(b"pk,v\na,caf\xe9\nb," + b"x" * 200_000 + b"\nc," + b"y" * 500_000 + b"\nd,"
                 + b"z" * (MAX_LINE + 10) + b"\ne,ok\n")
    t, dl = create_table(endpoint), tmp_path / "dead.jsonl"
    r = cli("import", str(p), t, "--endpoint-url", endpoint, "--dead-letter", str(dl), "--quiet")
    assert r.returncode == 3, r.stderr
    # b's 200 KB value is over csv's own 128 KB field limit but a valid item (before: the file failed).
    assert pks(endpoint, t) == ["b", "e"]
    got = {d["origin"]: d["reason"] for d in dead(dl)}
    assert set(got) == {"in.csv:2", "in.csv:4", "in.csv:5"}
    assert got["in.csv:2"].startswith("invalid UTF-8 on line 2: byte 0xe9")  # before: written as "caf\ufffd"
    assert "409600" in got["in.csv:4"]  # c: a real row, too big for an item
    assert "line limit" in got["in.csv:5"]


def test_over_long_elements_of_arrays_and_scan_documents_are_dead_letters(endpoint: str, tmp_path: Path) -> None:
    big = "x" * (MAX_LINE + 2 * 1024 * 1024)
    (tmp_path / "arr.json").write_text('[{"pk":"a1"},\n{"pk":"a2","v":"%s"},\n{"pk":"a3"}]\n' % big)
    (tmp_path / "scan.json").write_text('{"Items":[{"pk":{"S":"s1"}},\n{"pk":{"S":"%s"}},\n{"pk":{"S":"s3"}}],'
                                        '"Count":3,"ScannedCount":3}\n' % big)
    t, dl = create_table(endpoint), tmp_path / "dead.jsonl"
    r = cli("import", str(tmp_path / "*.json"), t, "--endpoint-url", endpoint, "--dead-letter", str(dl), "--quiet")
    assert r.returncode == 3, r.stderr  # before: exit 1, a3 and s3 never read
    assert pks(endpoint, t) == ["a1", "a3", "s1", "s3"]
    got = {d["origin"]: d["reason"] for d in dead(dl)}
    assert sorted(got) == ["arr.json:2", "scan.json:2"]
    assert got["arr.json:2"].startswith("array element 2 is ") and got["scan.json:2"].startswith("item 2 of document 1")


def _export(endpoint: str, tmp_path: Path, n: int) -> Path:
    src = create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i:05d}"}, "v": {"S": "v" * 40}} for i in range(n)])
    rep = export_table(TableRef(src, endpoint_url=endpoint, region="us-east-1"), str(tmp_path / "out"),
                       RunOptions(progress="off", segments=2), file_size=20_000)
    return Path(rep.extra["export_path"])


@pytest.mark.parametrize("cut", ["last-line", "empty"])
def test_a_cut_manifest_files_json_is_refused_before_anything_is_written(endpoint: str, tmp_path: Path,
                                                                          cut: str) -> None:
    root = _export(endpoint, tmp_path, 1500)
    mf = root / "manifest-files.json"
    lines = mf.read_bytes().splitlines(keepends=True)
    assert len(lines) > 1
    dropped = [json.loads(x)["dataFileS3Key"].rsplit("/", 1)[-1] for x in (lines[-1:] if cut == "last-line" else lines)]
    mf.write_bytes(b"".join(lines[:-1]) if cut == "last-line" else b"")
    (root / "manifest-files.md5").unlink()
    t = create_table(endpoint)
    r = cli("import", str(root), t, "--endpoint-url", endpoint, "--quiet")
    # Before: exit 0 with only the listed files' items (or "done" with 0 written).
    assert r.returncode == 1, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and "says the export holds 1500" in err[0] and "nothing was written" in err[0]
    assert all(name in err[0] for name in dropped[:5])
    assert scan_all(endpoint, t) == []


def test_the_complete_export_still_imports(endpoint: str, tmp_path: Path) -> None:
    root = _export(endpoint, tmp_path, 300)
    t = create_table(endpoint)
    r = cli("import", str(root), t, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 0, r.stderr
    assert pks(endpoint, t) == [f"k{i:05d}" for i in range(300)]


def test_an_s3_glob_star_stays_in_its_folder(endpoint: str, moto_s3: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    bucket = unique("bkt")
    s3.create_bucket(Bucket=bucket)
    for key, pk in (("data/a.json", "a"), ("data/b.json", "b"), ("data/old/c.json", "c")):
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({"pk": pk}).encode() + b"\n")
    env = {"AWS_ENDPOINT_URL_S3": moto_s3}
    t = create_table(endpoint)
    r = cli("import", f"s3://{bucket}/data/*.json", t, "--endpoint-url", endpoint, "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    assert pks(endpoint, t) == ["a", "b"]  # before: data/old/c.json too
    t2 = create_table(endpoint)
    r = cli("import", f"s3://{bucket}/data/**/*.json", t2, "--endpoint-url", endpoint, "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    assert pks(endpoint, t2) == ["a", "b", "c"]


def test_items_lacking_the_key_at_the_head_are_dead_letters_and_the_rest_loads(endpoint: str,
                                                                                tmp_path: Path) -> None:
    p = tmp_path / "in.json"
    p.write_text("".join(json.dumps({"id": f"x{i}"}) + "\n" for i in range(20))
                 + "".join(json.dumps({"pk": f"k{i:04d}"}) + "\n" for i in range(1000)))
    t, dl = create_table(endpoint), tmp_path / "dead.jsonl"
    r = cli("import", str(p), t, "--endpoint-url", endpoint, "--dead-letter", str(dl), "--quiet")
    # Before: exit 2 "source items lack the target's table key", nothing loaded, no file named.
    assert r.returncode == 3, r.stderr
    assert pks(endpoint, t) == [f"k{i:04d}" for i in range(1000)]
    d = dead(dl)
    assert sorted(x["origin"] for x in d) == sorted(f"in.json:{i}" for i in range(1, 21))
    assert all("pk" in x["reason"] for x in d)


def test_an_input_none_of_whose_items_has_the_key_is_refused_naming_its_lines(endpoint: str,
                                                                             tmp_path: Path) -> None:
    p = tmp_path / "in.json"
    p.write_text("".join(json.dumps({"id": f"x{i}"}) + "\n" for i in range(30)))
    t = create_table(endpoint)
    r = cli("import", str(p), t, "--endpoint-url", endpoint, "--quiet")
    assert r.returncode == 2, r.stderr
    assert "none of the 30 record(s) of the input fits (in.json:1 to in.json:30)" in r.stderr
    assert scan_all(endpoint, t) == []
