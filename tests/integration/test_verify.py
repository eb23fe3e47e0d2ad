"""verify_tables / ``ddbmigrate verify`` against the real DynamoDB Local.

After a clean copy, differences are injected into the target with plain boto3; every one must
be reported in its category with its key (and, for mismatches, the attribute paths and both
values), and nothing else: number spelling and set order are never differences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, List

import orjson
import pytest

from ddbmigrate.core.protocols import SourceBase
from ddbmigrate import RunOptions, TableRef, copy_table
from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.verify.compare import sampled
from ddbmigrate.errors import UsageError
from ddbmigrate.core.items import KeySchema
from ddbmigrate.core.records import Chunk
from ddbmigrate.jobs.seed import seed_table
from ddbmigrate.verify import Side, iter_diffs, verify_tables
from support import as_set, boto_client, create_table, every_type_items, put_items, scan_all, unique, VERIFY_FANOUT as FANOUT

pytestmark = pytest.mark.integration
N = 240


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def uid(i: int) -> str:
    return f"user#{i:09d}"


@pytest.fixture(scope="module")
def source_table(endpoint: str) -> str:
    """N sample items (every type) plus the awkward ones; never modified by a test."""
    src = create_table(endpoint)
    seed_table(DynamoClient(ref(endpoint, src)), src, N, size=700)
    put_items(endpoint, src, every_type_items())
    return src


@pytest.fixture
def copied(endpoint: str, source_table: str) -> Dict[str, str]:
    """The shared source, copied to a fresh target this test may damage."""
    src, dst = source_table, create_table(endpoint)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(segments=3, progress="off"))
    assert rep.written == N + len(every_type_items())
    return {"src": src, "dst": dst}


def diffs_by_category(path: str) -> Dict[str, Dict[str, Dict[str, Any]]]:
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for d in iter_diffs(path):
        out.setdefault(d["category"], {})[d["key"]["pk"]["S"]] = d
    return out


def test_clean_copy_verifies_equal(endpoint: str, copied: Dict[str, str]) -> None:
    rep = verify_tables(ref(endpoint, copied["src"]), ref(endpoint, copied["dst"]), segments=4, progress="off",
                        report_path="r.json")
    total = N + len(every_type_items())
    assert rep.exit_code == 0 and rep.equal_sides and rep.differences == 0
    assert rep.equal == total and rep.count("source_read") == total and rep.count("target_read") == total
    assert rep.balanced()
    saved = json.loads(open("r.json").read())
    assert saved["exit_code"] == 0 and saved["equal"] == total and saved["balanced"] is True
    # No item body in the JSON report (invariant 8): the big 399 KB attribute is nowhere.
    assert "yyyyyyyy" not in open("r.json").read()
    assert not [f for f in os.listdir(".ddbmigrate") if f.startswith("verify-")]  # spill folder removed


def inject(endpoint: str, table: str) -> Dict[str, Any]:
    """Plant one of each kind of difference (and two non-differences) in ``table``."""
    c = boto_client(endpoint)
    for i in (1, 2, 3):
        c.delete_item(TableName=table, Key={"pk": {"S": uid(i)}})
    c.update_item(TableName=table, Key={"pk": {"S": uid(10)}}, UpdateExpression="SET #n = :v",
                  ExpressionAttributeNames={"#n": "name"}, ExpressionAttributeValues={":v": {"S": "changed"}})
    age = c.get_item(TableName=table, Key={"pk": {"S": uid(11)}})["Item"]["age"]["N"]
    c.update_item(TableName=table, Key={"pk": {"S": uid(11)}}, UpdateExpression="SET age = :v",
                  ExpressionAttributeValues={":v": {"S": age}})  # N "x" -> S "x"
    c.update_item(TableName=table, Key={"pk": {"S": uid(12)}}, UpdateExpression="SET address.city = :v",
                  ExpressionAttributeValues={":v": {"S": "elsewhere"}})
    for k in ("extra-1", "extra-2"):
        c.put_item(TableName=table, Item={"pk": {"S": k}, "v": {"N": "1"}})
    # Not differences: the same item rewritten with other number spellings and set order.
    it = c.get_item(TableName=table, Key={"pk": {"S": uid(13)}}, ConsistentRead=True)["Item"]
    it["age"] = {"N": it["age"]["N"] + ".000"}
    it["scores"] = {"NS": list(reversed(it["scores"]["NS"]))}
    it["tags"] = {"SS": list(reversed(it["tags"]["SS"]))}
    c.put_item(TableName=table, Item=it)
    return {"age11": age}


def test_injected_differences_are_reported_exactly(endpoint: str, copied: Dict[str, str]) -> None:
    planted = inject(endpoint, copied["dst"])
    # A 5 KB budget means many small partitions; the answer must not change.
    rep = verify_tables(ref(endpoint, copied["src"]), ref(endpoint, copied["dst"]), segments=3, progress="off",
                        diff_path="diff.jsonl", memory_mb=0.005)
    assert rep.exit_code == 4
    assert (rep.missing, rep.unexpected, rep.mismatched, rep.invalid, rep.unreadable) == (3, 2, 3, 0, 0)
    total = N + len(every_type_items())
    assert rep.equal == total - 3 - 3 and rep.balanced()
    assert rep.partitions > 16 and rep.count("max_partition_records") * 200 < 0.005 * 1024 * 1024
    d = diffs_by_category("diff.jsonl")
    assert set(d) == {"missing", "unexpected", "mismatched"}
    assert set(d["missing"]) == {uid(1), uid(2), uid(3)}
    assert set(d["unexpected"]) == {"extra-1", "extra-2"}
    assert set(d["mismatched"]) == {uid(10), uid(11), uid(12)}
    paths = {k: [x["path"] for x in v["differences"]] for k, v in d["mismatched"].items()}
    assert paths == {uid(10): ["name"], uid(11): ["age"], uid(12): ["address.city"]}
    age = d["mismatched"][uid(11)]["differences"][0]
    assert age["expected"] == {"N": planted["age11"]} and age["actual"] == {"S": planted["age11"]}
    assert d["mismatched"][uid(12)]["differences"][0]["actual"] == {"S": "elsewhere"}
    # The missing item's line carries the whole expected item (what a repair would write).
    src_items = {it["pk"]["S"]: it for it in scan_all(endpoint, copied["src"])}
    assert as_set([d["missing"][uid(1)]["expected"]]) == as_set([src_items[uid(1)]])
    assert d["unexpected"]["extra-1"]["actual"] == {"pk": {"S": "extra-1"}, "v": {"N": "1"}}
    # The summary keeps keys and paths, never bodies.
    assert {p["category"] for p in rep.preview} == {"missing", "unexpected", "mismatched"}
    assert all("expected" not in p and "actual" not in p for p in rep.preview)


class ListSource(SourceBase):
    """A real pipeline Source over a list of wire items (as a file side would yield them)."""

    def __init__(self, items: List[Dict[str, Any]], per_unit: int = 50) -> None:
        self.items, self.per_unit = items, per_unit

    def units(self) -> List[str]:
        return [str(i) for i in range(0, len(self.items), self.per_unit)] or ["0"]

    def read(self, unit: str, position: Any, stop: threading.Event) -> Iterator[Chunk]:
        lo = int(unit)
        yield Chunk(items=self.items[lo:lo + self.per_unit], done=True)


def test_number_spelling_and_set_order_are_not_differences(endpoint: str) -> None:
    """DynamoDB normalises what it stores, so the odd spellings come from a non-table side."""
    dst = create_table(endpoint)
    stored = [{"pk": {"S": f"k{i}"}, "n": {"N": "1"}, "big": {"N": "100"}, "neg": {"N": "-0.5"},
               "ns": {"NS": ["1", "2.5", "30"]}, "ss": {"SS": ["a", "b", "c"]},
               "m": {"M": {"l": {"L": [{"N": "1"}, {"SS": ["x", "y"]}]}}}} for i in range(60)]
    put_items(endpoint, dst, stored)
    spelled = [{"pk": {"S": f"k{i}"}, "n": {"N": ["1.0", "1E0", "10E-1"][i % 3]}, "big": {"N": "1E+2"},
                "neg": {"N": "-5E-1"}, "ns": {"NS": ["30", "2.50", "1"]}, "ss": {"SS": ["c", "a", "b"]},
                "m": {"M": {"l": {"L": [{"N": "1.00"}, {"SS": ["y", "x"]}]}}}} for i in range(60)]
    spelled[7]["n"] = {"S": "1"}  # ... but S "1" vs N "1" is a difference
    side = Side("spelled", ListSource(spelled), KeySchema("pk", "S"))
    rep = verify_tables("unused", ref(endpoint, dst), source_side=side, progress="off", diff_path="d.jsonl")
    assert (rep.equal, rep.mismatched, rep.missing, rep.unexpected) == (59, 1, 0, 0)
    (line,) = list(iter_diffs("d.jsonl"))
    assert line["key"] == {"pk": {"S": "k7"}}
    assert line["differences"] == [{"path": "n", "expected": {"S": "1"}, "actual": {"N": "1"}}]




def test_fanout_transform_missing_derived_item(endpoint: str, tmp_path: Any) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    seed_table(DynamoClient(ref(endpoint, src)), src, 100, size=600)
    (tmp_path / "tf.py").write_text(FANOUT)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(transform="tf.py:split", progress="off"))
    assert rep.written == 180
    ok = verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="tf.py:split", progress="off")
    assert ok.exit_code == 0 and ok.equal == 180 and ok.count("dropped") == 10 and ok.count("fanout_extra") == 90
    assert ok.balanced()
    c = boto_client(endpoint)
    c.delete_item(TableName=dst, Key={"pk": {"S": uid(42) + "#b"}})
    c.put_item(TableName=dst, Item={"pk": {"S": uid(17) + "#a"}})  # derived from a dropped item
    rep2 = verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="tf.py:split", progress="off",
                         diff_path="d.jsonl")
    assert rep2.exit_code == 4 and (rep2.missing, rep2.unexpected, rep2.mismatched) == (1, 1, 0)
    d = diffs_by_category("d.jsonl")
    assert set(d["missing"]) == {uid(42) + "#b"} and set(d["unexpected"]) == {uid(17) + "#a"}
    # Without the transform every source item is "missing" and every derived one "unexpected".
    raw = verify_tables(ref(endpoint, src), ref(endpoint, dst), progress="off")
    assert (raw.missing, raw.unexpected) == (100, 180)


def test_transform_output_without_target_key_is_invalid(endpoint: str, tmp_path: Any) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": f"k{i}"}} for i in range(5)])
    (tmp_path / "bad.py").write_text("def f(item):\n    return {'other': item['pk']} if item['pk'] == 'k3' else item\n")
    put_items(endpoint, dst, [{"pk": {"S": f"k{i}"}} for i in range(5) if i != 3])
    rep = verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="bad.py:f", progress="off",
                        diff_path="d.jsonl")
    assert rep.invalid == 1 and rep.equal == 4 and rep.exit_code == 4 and rep.balanced()
    (line,) = list(iter_diffs("d.jsonl"))
    assert line["category"] == "invalid" and "missing key attribute 'pk'" in line["reason"]
    assert line["source_key"] == {"pk": {"S": "k3"}}


def test_repair_then_second_verify_is_clean(endpoint: str, copied: Dict[str, str]) -> None:
    inject(endpoint, copied["dst"])
    asked: List[str] = []
    # Declined: missing and mismatched are rewritten, unexpected ones are kept (and still count).
    rep = verify_tables(ref(endpoint, copied["src"]), ref(endpoint, copied["dst"]), progress="off", repair=True,
                        confirm=lambda m: asked.append(m) or False)
    assert len(asked) == 1 and "Delete 2 unexpected items" in asked[0] and copied["dst"] in asked[0]
    assert rep.repair is not None
    assert rep.repair["put"] == 6 and rep.repair["deleted"] == 0 and rep.repair["delete_skipped"] == 2
    assert rep.repair["still_different"] == 0 and rep.repair["rechecked"] == 6
    assert rep.exit_code == 4 and rep.remaining == 2
    rep = verify_tables(ref(endpoint, copied["src"]), ref(endpoint, copied["dst"]), progress="off", repair=True,
                        confirm=lambda m: True)
    assert (rep.missing, rep.mismatched, rep.unexpected) == (0, 0, 2)
    assert rep.repair is not None and rep.repair["deleted"] == 2 and rep.repair["still_different"] == 0
    assert rep.exit_code == 0
    again = verify_tables(ref(endpoint, copied["src"]), ref(endpoint, copied["dst"]), progress="off")
    assert again.differences == 0 and again.exit_code == 0
    assert as_set(scan_all(endpoint, copied["dst"])) == as_set(scan_all(endpoint, copied["src"]))


def test_repair_with_fanout_transform(endpoint: str, tmp_path: Any) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    seed_table(DynamoClient(ref(endpoint, src)), src, 40, size=600)
    (tmp_path / "tf.py").write_text(FANOUT)
    copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(transform="tf.py:split", progress="off"))
    c = boto_client(endpoint)
    c.delete_item(TableName=dst, Key={"pk": {"S": uid(5) + "#a"}})
    c.update_item(TableName=dst, Key={"pk": {"S": uid(6) + "#b"}}, UpdateExpression="REMOVE tags")
    rep = verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="tf.py:split", progress="off",
                        repair=True, confirm=lambda m: True)
    assert (rep.missing, rep.mismatched) == (1, 1) and rep.exit_code == 0
    assert verify_tables(ref(endpoint, src), ref(endpoint, dst), transform="tf.py:split",
                         progress="off").differences == 0


def test_keys_only_and_sample(endpoint: str, copied: Dict[str, str]) -> None:
    inject(endpoint, copied["dst"])
    ko = verify_tables(ref(endpoint, copied["src"]), ref(endpoint, copied["dst"]), keys_only=True, progress="off")
    assert (ko.missing, ko.unexpected, ko.mismatched) == (3, 2, 0) and ko.balanced()
    sm = verify_tables(ref(endpoint, copied["src"]), ref(endpoint, copied["dst"]), sample=0.5, progress="off",
                       diff_path="d.jsonl")
    planted = {uid(1), uid(2), uid(3), uid(10), uid(11), uid(12), "extra-1", "extra-2"}
    ks = KeySchema("pk", "S")
    want = {k for k in planted if sampled(orjson.dumps(ks.key({"pk": {"S": k}})), 0.5)}
    got = {d["key"]["pk"]["S"] for d in iter_diffs("d.jsonl")}
    assert got == want and sm.differences == len(want) and sm.balanced()
    assert 0 < sm.count("sampled_out_expected") < N
    assert sm.confidence["rate"] == 0.5 and "statement" in sm.confidence
    assert sm.exit_code == (4 if want else 0)


def test_usage_errors(endpoint: str, copied: Dict[str, str]) -> None:
    s, t = ref(endpoint, copied["src"]), ref(endpoint, copied["dst"])
    for kw in ({"sample": 0}, {"sample": 1.5}, {"repair": True, "keys_only": True}, {"memory_mb": 0}):
        with pytest.raises(UsageError):
            verify_tables(s, t, progress="off", **kw)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True, timeout=120)


def test_cli_exit_codes(endpoint: str, copied: Dict[str, str]) -> None:
    common = ["--endpoint-url", endpoint, "--region", "us-east-1", "--progress", "off"]
    ok = run_cli("verify", copied["src"], copied["dst"], *common, "--report", "ok.json")
    assert ok.returncode == 0, ok.stderr
    assert "EQUAL" in ok.stderr and json.load(open("ok.json"))["exit_code"] == 0
    inject(endpoint, copied["dst"])
    bad = run_cli("verify", copied["src"], copied["dst"], *common, "--report", "bad.json", "--diff", "d.jsonl",
                  "--memory", "1")
    assert bad.returncode == 4, bad.stderr
    assert "DIFFERENT (8)" in bad.stderr and "Traceback" not in bad.stderr
    rep = json.load(open("bad.json"))
    assert (rep["missing"], rep["unexpected"], rep["mismatched"], rep["exit_code"]) == (3, 2, 3, 4)
    assert len(open("d.jsonl").read().splitlines()) == 8
    usage = run_cli("verify", copied["src"], copied["dst"], *common, "--sample", "2")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    # Repair without a terminal and without --yes: unexpected items stay, exit 4.
    rep_no = run_cli("verify", copied["src"], copied["dst"], *common, "--repair", "-q")
    assert rep_no.returncode == 4 and "refusing without --yes" in rep_no.stderr
    rep_yes = run_cli("verify", copied["src"], copied["dst"], *common, "--repair", "--yes", "-q")
    assert rep_yes.returncode == 0, rep_yes.stderr
    assert run_cli("verify", copied["src"], copied["dst"], *common, "-q").returncode == 0
    missing = run_cli("verify", copied["src"], unique("nope"), *common)
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_cli_copy_verify(endpoint: str, tmp_path: Any) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, every_type_items())
    (tmp_path / "tf.py").write_text(FANOUT)
    res = run_cli("copy", src, dst, "--endpoint-url", endpoint, "--region", "us-east-1", "--progress", "off",
                  "--transform", "tf.py:split", "--verify")
    assert res.returncode == 0, res.stderr
    assert "ddbmigrate verify: done: EQUAL" in res.stderr


def test_export_folder_as_either_side(endpoint: str, copied: Dict[str, str]) -> None:
    from ddbmigrate.errors import FatalError
    from ddbmigrate.jobs.export import export_table

    exp = export_table(ref(endpoint, copied["src"]), "exported", RunOptions(progress="off"))
    path = exp.extra["export_path"]
    total = N + len(every_type_items())
    a = verify_tables(path, ref(endpoint, copied["dst"]), progress="off")
    assert a.exit_code == 0 and a.equal == total and a.balanced()
    b = verify_tables(ref(endpoint, copied["src"]), "./exported", progress="off")  # the folder holding the export
    assert b.exit_code == 0 and b.equal == total
    inject(endpoint, copied["dst"])
    c = verify_tables(path, ref(endpoint, copied["dst"]), progress="off", diff_path="d.jsonl")
    assert (c.missing, c.unexpected, c.mismatched, c.exit_code) == (3, 2, 3, 4)
    assert {d["key"]["pk"]["S"] for d in iter_diffs("d.jsonl") if d["category"] == "missing"} == {uid(1), uid(2), uid(3)}
    folder = os.path.join(path, "data")
    data = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    with open(data[0], "r+b") as fh:  # corrupt one gzip file: the comparison would be incomplete
        fh.seek(20)
        fh.write(b"\xff\xff\xff\xff")
    with pytest.raises(FatalError) as ei:
        verify_tables(path, ref(endpoint, copied["dst"]), progress="off")
    assert "failed their checks" in ei.value.one_line()


def test_cli_files_side_and_import_verify(endpoint: str, copied: Dict[str, str]) -> None:
    from ddbmigrate.jobs.export import export_table

    path = export_table(ref(endpoint, copied["src"]), "exported", RunOptions(progress="off")).extra["export_path"]
    common = ["--endpoint-url", endpoint, "--region", "us-east-1", "--progress", "off"]
    res = run_cli("verify", path, copied["dst"], *common)
    assert res.returncode == 0, res.stderr
    fresh = create_table(endpoint)
    imp = run_cli("import", path, fresh, *common, "--verify")
    assert imp.returncode == 0, imp.stderr
    assert "ddbmigrate verify: done: EQUAL" in imp.stderr
    boto_client(endpoint).delete_item(TableName=fresh, Key={"pk": {"S": uid(7)}})
    bad = run_cli("verify", path, fresh, *common, "--diff", "d.jsonl")
    assert bad.returncode == 4 and [d["key"] for d in iter_diffs("d.jsonl")] == [{"pk": {"S": uid(7)}}]


def test_composite_number_and_binary_keys(endpoint: str) -> None:
    import base64

    src = create_table(endpoint, hash_key=("h", "N"), range_key=("r", "B"))
    dst = create_table(endpoint, hash_key=("h", "N"), range_key=("r", "B"))
    items = [{"h": {"N": str(i // 3 * 10 ** 30 + 1)}, "r": {"B": base64.b64encode(bytes([i % 3, 255])).decode()},
              "v": {"N": str(i)}} for i in range(60)]
    put_items(endpoint, src, items)
    copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off"))
    c = boto_client(endpoint)
    gone = {"h": {"N": items[10]["h"]["N"]}, "r": {"B": base64.b64decode(items[10]["r"]["B"])}}
    c.delete_item(TableName=dst, Key=gone)
    rep = verify_tables(ref(endpoint, src), ref(endpoint, dst), progress="off", diff_path="d.jsonl", segments=2,
                        repair=True, confirm=lambda m: True)
    assert (rep.missing, rep.mismatched, rep.unexpected, rep.equal) == (1, 0, 0, 59)
    (line,) = list(iter_diffs("d.jsonl"))
    ks = KeySchema("h", "N", "r", "B")
    assert ks.key(line["key"]) == ks.key(items[10])
    assert rep.repair is not None and rep.repair["put"] == 1 and rep.repair["still_different"] == 0
    assert as_set(scan_all(endpoint, dst)) == as_set(items)


def test_a_killed_verifys_spill_folder_is_deleted_by_the_next_verify(endpoint: str, copied: Dict[str, str],
                                                                     tmp_path: Path) -> None:
    import subprocess
    import sys

    from ddbmigrate.state import leftovers

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    left = tmp_path / f"verify-{leftovers.HOST}-{gone.pid}-x1y2z3"  # as a kill -9 leaves it
    (left / "spill").mkdir(parents=True)
    (left / "spill" / "side0-p0").write_bytes(b"z" * 4096)
    rep = verify_tables(ref(endpoint, copied["src"]), ref(endpoint, copied["dst"]), segments=2, progress="off",
                        work_dir=str(tmp_path))
    assert rep.exit_code == 0
    # The dead one's spill and its own work folder are both gone.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("verify-")]
