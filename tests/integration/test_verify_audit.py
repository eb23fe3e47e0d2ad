"""``ddbmigrate verify``: the audit's findings, against the real DynamoDB Local.

An output path that cannot be written and a read limit that is not a positive rate are usage
errors found before anything is read (not an internal error after the whole comparison, which
lost its verdict); a record without a key (unreadable, invalid) is shown with its file:line; a
side job's failure is summarised under verify's own two sides.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner, Result

from ddbmigrate import TableRef
from ddbmigrate.cli import main
from ddbmigrate.errors import UsageError
from ddbmigrate.verify import verify_tables
from support import create_table, put_items, unique

pytestmark = pytest.mark.integration


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def common(endpoint: str) -> List[str]:
    return ["--endpoint-url", endpoint, "--region", "us-east-1", "--progress", "off"]


@pytest.fixture
def differing(endpoint: str) -> Dict[str, str]:
    """Two tables that differ by one missing item."""
    src, dst = create_table(endpoint), create_table(endpoint)
    items = [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(5)]
    put_items(endpoint, src, items)
    put_items(endpoint, dst, items[:4])
    return {"src": src, "dst": dst}


def unwritable_paths(tmp_path: Any) -> List[str]:
    (tmp_path / "afile").write_text("not a folder")
    paths = ["afile/out.json", str(tmp_path)]
    if os.path.isdir("/proc/self"):  # a folder that takes no new file, even for root
        paths.append("/proc/ddbmigrate-verify-out.json")
    return paths


def test_unwritable_report_or_diff_is_refused_before_reading(endpoint: str, tmp_path: Any) -> None:
    # The source table does not exist: a check made after opening the sides would fail on that
    # (exit 1) instead, so the usage error proves the path was checked before anything was read.
    nope, dst = unique("nope"), create_table(endpoint)
    for path in unwritable_paths(tmp_path):
        for option, kw in (("--report", "report_path"), ("--diff", "diff_path")):
            with pytest.raises(UsageError, match=f"^{option} "):
                opts: Dict[str, Any] = {kw: path}
                verify_tables(ref(endpoint, nope), ref(endpoint, dst), progress="off", **opts)
            res = cli("verify", nope, dst, *common(endpoint), option, path)
            assert res.exit_code == 2, (option, path, res.output)
            assert option in res.stderr and "internal error" not in res.stderr, res.stderr
            assert "does not exist" not in res.stderr and "Traceback" not in res.stderr
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".ddbmigrate-probe-")]
    # Not over-strict: a folder that does not exist yet is made, and the verdict is kept.
    put_items(endpoint, dst, [{"pk": {"S": "extra"}}])
    res = cli("verify", create_table(endpoint), dst, *common(endpoint), "-q",
              "--report", "new/sub/r.json", "--diff", "new/d.jsonl")
    assert res.exit_code == 4, res.output
    saved = json.load(open("new/sub/r.json"))
    assert (saved["unexpected"], saved["exit_code"]) == (1, 4)
    assert len(open("new/d.jsonl").read().splitlines()) == 1


@pytest.mark.parametrize("units", ["-1", "0", "nan", "inf"])
def test_max_read_units_must_be_a_positive_rate(endpoint: str, differing: Dict[str, str], units: str) -> None:
    with pytest.raises(UsageError, match="--max-read-units must be a"):
        verify_tables(ref(endpoint, differing["src"]), ref(endpoint, differing["dst"]), progress="off",
                      max_read_units=float(units))
    res = cli("verify", differing["src"], differing["dst"], *common(endpoint), "-q", "--max-read-units", units)
    assert res.exit_code == 2, res.output
    assert "--max-read-units must be a" in res.stderr and "internal error" not in res.stderr


def test_records_without_a_key_are_shown_with_file_and_line(endpoint: str, tmp_path: Any) -> None:
    dst = create_table(endpoint)
    put_items(endpoint, dst, [{"pk": {"S": "a"}, "v": {"N": "1"}}])
    os.makedirs("files")
    (tmp_path / "files" / "d.json").write_text(
        '{"Item":{"pk":{"S":"a"},"v":{"N":"1"}}}\n'
        "not json at all\n"
        '{"Item":{"pk":{"N":"5"}}}\n')
    res = cli("verify", "./files", dst, *common(endpoint), "--report", "r.json")
    assert res.exit_code == 4, res.output
    preview = {p["category"]: p for p in json.load(open("r.json"))["preview"]}
    assert set(preview) == {"unreadable", "invalid"}
    assert preview["unreadable"]["key"] is None and preview["unreadable"]["origin"] == "d.json:2"
    assert preview["unreadable"]["side"] == "source"
    assert preview["invalid"]["key"] is None and preview["invalid"]["origin"] == "d.json:3"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip().startswith(("unreadable", "invalid"))]
    assert len(lines) == 2, res.stderr
    assert any("d.json:2" in ln for ln in lines if "unreadable" in ln), lines
    assert any("d.json:3" in ln for ln in lines if "invalid" in ln), lines
    assert not any("null" in ln.split()[1] for ln in lines), lines  # named by file:line, not "null"


def test_transform_failure_is_summarised_under_verify_sides(endpoint: str, tmp_path: Any) -> None:
    table = create_table(endpoint)
    put_items(endpoint, table, [{"pk": {"S": f"k{i}"}} for i in range(3)])
    (tmp_path / "tf.py").write_text("def boom(item):\n    raise ValueError('boom')\n")
    res = cli("verify", table, table, *common(endpoint), "--transform", "tf.py:boom", "--report", "r.json")
    assert res.exit_code == 1, res.output
    assert "boom" in res.stderr and "-> compare" not in res.stderr and "no verdict" in res.stderr, res.stderr
    saved = json.load(open("r.json"))
    label = ref(endpoint, table).describe()
    assert (saved["job"], saved["source"], saved["target"], saved["exit_code"]) == ("verify", label, label, 1)


def test_a_verify_whose_target_fails_says_what_each_side_read_and_gives_no_verdict(endpoint: str, tmp_path: Any) -> None:
    # Every Scan of the target fails: the source was read (5 items), the target not. The summary
    # and --report are verify's own (sides read, units, the error and its exit code), with no
    # verdict: not "EQUAL", not "missing 0", not a copy's "written 0" nor "counts do not add up".
    from ddbmigrate.testing.proxy import Faults, FaultProxy

    src, dst = create_table(endpoint), create_table(endpoint)
    items = [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(5)]
    put_items(endpoint, src, items)
    put_items(endpoint, dst, items)
    with FaultProxy(endpoint, seed=1, faults=Faults(error500=1.0, ops=frozenset({"Scan"}))) as proxy:
        res = cli("verify", src, dst, "--source-endpoint-url", endpoint, "--target-endpoint-url", proxy.url,
                  "--region", "us-east-1", "--progress", "off", "--max-attempts", "2", "--report", "r.json")
    assert res.exit_code == 75, res.output
    err = res.stderr
    assert "failed: no verdict" in err and "EQUAL" not in err and "missing" not in err, err
    assert "written" not in err and "do not add up" not in err, err
    assert [ln.split("│")[2].strip() for ln in err.splitlines() if "read  " in ln] == ["5", "0"], err
    saved = json.load(open("r.json"))
    assert (saved["status"], saved["exit_code"], saved["equal_sides"], saved["balanced"]) == ("failed", 75, None, None)
    assert saved["counters"] == {"read": 5, "source_read": 5} and saved["consumed_read_units"] > 0
    assert saved["retries"].get("5xx", 0) >= 1 and "Scan" in saved["error"] and "writers" not in [
        k for k, v in saved.items() if v]
