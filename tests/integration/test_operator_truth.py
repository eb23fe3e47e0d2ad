"""What the tool *tells* the operator is true: default dead letters, resumes that repeat no dead
letter, checks before the first read, progress on settled records, reports of failed runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List

import pytest

from ddbmigrate import RunOptions, TableRef, copy_table
from ddbmigrate.errors import InterruptedError_, UsageError
from support import boto_client, create_table, put_items, scan_all

pytestmark = pytest.mark.integration


def ref(endpoint: str, table: str) -> TableRef:
    return TableRef(table, endpoint_url=endpoint, region="us-east-1")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                          timeout=180, cwd=cwd)


def items(n: int) -> List[Dict[str, Any]]:
    return [{"pk": {"S": f"k{i:05d}"}, "n": {"N": str(i)}, "pad": {"S": "x" * 200}} for i in range(n)]


def write_transform(tmp_path: Path, body: str, name: str = "tf.py") -> str:
    p = tmp_path / name
    p.write_text(body)
    return f"{p}:f"


# Every 7th item fails: a known set of rejected source keys.
FAILING = "def f(item):\n    if int(item['n']) % 7 == 0:\n        raise ValueError('seven')\n    return item\n"
SLOW_FAILING = ("import time\n"
                "def f(item):\n    time.sleep(0.002)\n    if int(item['n']) % 7 == 0:\n"
                "        raise ValueError('seven')\n    return item\n")


def dead_keys(path: Path) -> List[str]:
    return [json.loads(line)["source_key"]["pk"]["S"] for line in path.read_text().splitlines()]


def test_dead_letters_are_kept_by_default_beside_the_checkpoint(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(300))
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     RunOptions(progress="off", transform=write_transform(tmp_path, FAILING), on_error="skip"))
    expected = sorted(f"k{i:05d}" for i in range(300) if i % 7 == 0)
    assert rep.dead_letter_path is not None and rep.dead_letter_path.endswith(".deadletter.jsonl")
    assert rep.checkpoint_path is not None
    assert Path(rep.dead_letter_path).parent == Path(rep.checkpoint_path).parent
    assert sorted(dead_keys(Path(rep.dead_letter_path))) == expected
    assert rep.dead_lettered == len(expected) and rep.exit_code == 3
    assert len(scan_all(endpoint, dst)) == 300 - len(expected)


def test_dead_letter_path_is_printed_in_the_summary(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(50))
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--transform", write_transform(tmp_path, FAILING),
            "--on-error", "skip", "--progress", "off", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    out = r.stdout + r.stderr
    assert ".deadletter.jsonl" in out.replace("\n", "").replace(" ", "") or "deadletter" in out


def test_a_fresh_run_keeps_the_last_runs_default_dead_letters(endpoint: str, tmp_path: Path) -> None:
    # Run twice, as an operator reruns a job: the first run's records are the only trace of its
    # rejected items, so the second run moves them aside instead of emptying the file.
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(60))
    args = ("copy", src, dst, "--endpoint-url", endpoint, "--on-error", "skip", "--progress", "off")
    first = cli(*args, "--transform", write_transform(tmp_path, FAILING), cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    files = list((tmp_path / ".ddbmigrate").glob("*.deadletter.jsonl"))
    assert len(files) == 1
    first_keys = sorted(dead_keys(files[0]))
    assert first_keys == [f"k{i:05d}" for i in range(60) if i % 7 == 0]
    # The same job (same tables), now with a transform that rejects other items.
    second = cli(*args, "--transform", write_transform(tmp_path, FAILING.replace("% 7", "% 11"), "tf2.py"),
                 cwd=tmp_path)
    assert second.returncode == 3, second.stderr
    kept = [p for p in (tmp_path / ".ddbmigrate").glob("*.deadletter.*.jsonl")]
    assert len(kept) == 1 and kept[0].name in second.stderr, second.stderr
    assert sorted(dead_keys(kept[0])) == first_keys
    assert sorted(dead_keys(files[0])) == [f"k{i:05d}" for i in range(60) if i % 11 == 0]
    assert "Traceback" not in second.stderr


def test_a_verify_that_finds_differences_is_in_the_jobs_report(endpoint: str, tmp_path: Path) -> None:
    # The target holds an item the source does not: the copy succeeds, --verify finds it, and the
    # command's exit code is the report's, with what verify found.
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(20))
    put_items(endpoint, dst, [{"pk": {"S": "stray"}}])
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--verify", "--report", "r.json",
            cwd=tmp_path)
    assert r.returncode not in (0, 1), r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["exit_code"] == r.returncode and rep["counters"]["written"] == 20
    assert rep["extra"]["verify"]["unexpected"] == 1 and rep["extra"]["verify"]["missing"] == 0
    assert rep["extra"]["verify"]["exit_code"] == r.returncode and "difference" in rep["error"]
    # And a verify that agrees leaves the job's own exit code.
    dst2 = create_table(endpoint)
    r = cli("copy", src, dst2, "--endpoint-url", endpoint, "--progress", "off", "--verify", "--report", "r2.json",
            cwd=tmp_path)
    rep = json.loads((tmp_path / "r2.json").read_text())
    assert r.returncode == 0 and rep["exit_code"] == 0 and rep["extra"]["verify"]["differences"] == 0, r.stderr


def test_an_unwritable_dead_letter_file_is_refused_before_anything_is_read(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(30))
    (tmp_path / "afile").write_text("")
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--dead-letter", "afile/dl.jsonl",
            cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "dead-letter file afile/dl.jsonl" in r.stderr and "Traceback" not in r.stderr
    assert scan_all(endpoint, dst) == []
    assert not list((tmp_path / ".ddbmigrate").glob("*.checkpoint.json")) if (tmp_path / ".ddbmigrate").exists() else True


def test_a_dead_letter_write_that_fails_midway_loses_no_record(endpoint: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The disk fills after the first dead letters: the job stops, its checkpoint stays before the
    # records whose lines were lost, and a resume writes or dead-letters every one of them.
    from ddbmigrate.state import deadletter

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(600))
    tf = write_transform(tmp_path, FAILING)
    real = deadletter.DeadLetters.commit
    calls = [0]

    def full_disk(self: Any, lines: Any, settled: bool = True) -> None:
        calls[0] += 1
        if calls[0] > 2 and settled:
            raise deadletter.DeadLetters._cannot(self, OSError(28, "No space left on device"))
        real(self, lines, settled)

    monkeypatch.setattr(deadletter.DeadLetters, "commit", full_disk)
    dl = tmp_path / "dl.jsonl"
    o = dict(progress="off", transform=tf, on_error="skip", segments=4, dead_letter=str(dl),
             checkpoint=str(tmp_path / "cp.json"), max_read_units=40)
    with pytest.raises(Exception, match="cannot write the dead-letter file"):
        copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(**o))
    monkeypatch.setattr(deadletter.DeadLetters, "commit", real)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(**o, resume=True))
    expected = sorted(f"k{i:05d}" for i in range(600) if i % 7 == 0)
    assert sorted(dead_keys(dl)) == expected
    assert sorted(i["pk"]["S"] for i in scan_all(endpoint, dst)) == sorted(
        f"k{i:05d}" for i in range(600) if i % 7)
    assert rep.balanced() and rep.dead_lettered == len(expected)


def test_a_resumed_run_repeats_no_dead_letter(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(1200))
    tf = write_transform(tmp_path, SLOW_FAILING)
    cancel = threading.Event()

    class StopAfterSome:
        def attach(self, job: str, snapshot: Callable[[], Dict[str, Any]]) -> Callable[[], None]:
            done = threading.Event()

            def watch() -> None:
                while not done.wait(0.05):
                    if snapshot().get("done", 0) > 0:
                        cancel.set()
                        return

            threading.Thread(target=watch, daemon=True).start()
            return done.set

    # A read limit makes small pages (80 items), so the stop lands between pages of a segment;
    # no drain: chunks already read and dead-lettered are dropped unacknowledged, to be read again.
    o = RunOptions(progress="off", transform=tf, on_error="skip", segments=4, checkpoint_every=0.2,
                   max_read_units=20, drain_timeout=0, writers=1, max_write_units=200)
    with pytest.raises(InterruptedError_) as ei:
        copy_table(ref(endpoint, src), ref(endpoint, dst), o, cancel=cancel, observer=StopAfterSome())
    first = ei.value.report  # type: ignore[attr-defined]
    assert first.exit_code == 130 and first.to_dict()["exit_code"] == 130
    assert 0 < first.read < 1200  # the report of an interrupted run carries its real counts
    # ... and its dead-letter file holds exactly what that report counts (no line of a chunk the
    # checkpoint does not cover: those are read again, and dead-lettered, by the resume).
    assert len(dead_keys(Path(first.dead_letter_path))) == first.dead_lettered
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     RunOptions(progress="off", transform=tf, on_error="skip", segments=4, resume=True,
                                max_read_units=20))
    keys = dead_keys(Path(rep.dead_letter_path))  # type: ignore[arg-type]
    expected = sorted(f"k{i:05d}" for i in range(1200) if i % 7 == 0)
    assert sorted(keys) == expected, f"{len(keys)} lines for {len(expected)} rejected items"
    assert rep.dead_lettered == len(expected) and rep.balanced()
    # The reasons are the whole job's too, the interrupted run's included.
    assert sum(rep.dead_letter_reasons.values()) == len(expected), rep.dead_letter_reasons


def test_skip_existing_resumed_counts_what_the_killed_run_wrote_as_written(endpoint: str, tmp_path: Path) -> None:
    # 50 of 1,200 keys exist before the job, with other content. The run dies (as by kill -9)
    # with batches acknowledged that no checkpoint covers; the resume finds those items there,
    # equal to its own: the job wrote them. Only the 50 were found existing.
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(1200))
    put_items(endpoint, dst, [{"pk": {"S": f"k{i:05d}"}, "old": {"S": "yes"}} for i in range(0, 1200, 24)])
    args = ["copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--mode", "skip-existing",
            "--segments", "2", "--checkpoint-every", "30", "--report", "r.json"]
    env = {**os.environ, "DDBMIGRATE_CRASH_AT": "after_batch_ack", "DDBMIGRATE_CRASH_AFTER": "20"}
    killed = subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                            timeout=180, cwd=tmp_path, env=env)
    assert killed.returncode != 0
    r = cli(*args, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counters = json.loads((tmp_path / "r.json").read_text())["counters"]
    assert (counters["written"], counters["skipped_existing"]) == (1150, 50), counters
    got = {i["pk"]["S"]: i for i in scan_all(endpoint, dst)}
    assert len(got) == 1200 and sum(1 for i in got.values() if "old" in i) == 50


def test_every_retry_is_in_the_report_the_preflight_scan_included(endpoint: str, tmp_path: Path) -> None:
    # Half of all Scans fail with a 500, the sample Scan before the copy too: the report's retries
    # are exactly the faults the proxy injected.
    from ddbmigrate.testing.proxy import Faults, FaultProxy

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(300))
    with FaultProxy(endpoint, seed=7, faults=Faults(error500=0.5, ops=frozenset({"Scan"}))) as proxy:
        rep = copy_table(ref(proxy.url, src), ref(endpoint, dst),
                         RunOptions(progress="off", segments=2, max_read_units=40, checkpoint=str(tmp_path / "c.json")))
        injected = sum(proxy.audit.faults.values())
    assert injected >= 3 and rep.retries.get("5xx", 0) == injected, (rep.retries, dict(proxy.audit.faults))
    assert len(scan_all(endpoint, dst)) == 300


def test_resume_without_a_checkpoint_says_it_starts_from_the_beginning(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(10))
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("--resume: no checkpoint at") == 1 and "starts from the beginning" in r.stderr
    assert len(scan_all(endpoint, dst)) == 10


def test_progress_moves_during_a_copy_held_to_a_low_write_rate(endpoint: str, tmp_path: Path) -> None:
    # One segment whose items fit one 1 MB page, written at 40 units/s: a page is what a job
    # settles and checkpoints, so under a write limit pages are a few seconds of writes, and
    # progress (and the checkpoint) moves while the copy runs, not only at its end.
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(200))
    seen: List[int] = []

    class Watch:
        def attach(self, job: str, snapshot: Callable[[], Dict[str, Any]]) -> Callable[[], None]:
            done = threading.Event()

            def watch() -> None:
                while not done.wait(0.1):
                    seen.append(int(snapshot().get("done", 0)))

            threading.Thread(target=watch, daemon=True).start()
            return done.set

    rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     RunOptions(progress="off", segments=1, max_write_units=40, checkpoint=str(tmp_path / "c.json")),
                     observer=Watch())
    assert rep.written == 200
    assert any(0 < d < 200 for d in seen), sorted(set(seen))


def test_a_target_that_cannot_fit_exits_2_before_any_read(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    dst = create_table(endpoint, hash_key=("pk", "N"))
    put_items(endpoint, src, items(100))
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "'pk'" in r.stderr and "N (number)" in r.stderr and "S (string)" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 3
    assert not (tmp_path / ".ddbmigrate").exists() or not list((tmp_path / ".ddbmigrate").glob("*.checkpoint.json"))
    assert scan_all(endpoint, dst) == []


def test_a_gsi_key_of_another_type_exits_2(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    gsi = [{"IndexName": "by_n", "KeySchema": [{"AttributeName": "n", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}}]
    dst = create_table(endpoint, gsis=gsi)  # the helper declares GSI key attributes as S
    put_items(endpoint, src, items(30))  # ... while every item carries n as a number
    with pytest.raises(UsageError, match=r"GSI by_n attribute 'n' is S \(string\) but source items carry N"):
        copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off"))
    assert scan_all(endpoint, dst) == []


def test_a_transform_whose_outputs_cannot_fit_exits_2(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    dst = create_table(endpoint, hash_key=("PK", "S"))
    put_items(endpoint, src, items(30))
    tf = write_transform(tmp_path, "def f(item):\n    return {'PK': int(item['n']), 'v': item['pad']}\n")
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--transform", tf, "--progress", "off", cwd=tmp_path)
    assert r.returncode == 2 and "'PK'" in r.stderr and "transformed items" in r.stderr, r.stderr


def test_a_few_odd_items_are_dead_letters_not_a_refusal(endpoint: str, tmp_path: Path) -> None:
    src = create_table(endpoint)
    dst = create_table(endpoint, hash_key=("PK", "S"))
    put_items(endpoint, src, items(30))
    tf = write_transform(tmp_path, "def f(item):\n    n = int(item['n'])\n"
                         "    return {'PK': n if n == 3 else str(n)}\n")
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off", transform=tf))
    assert rep.dead_lettered == 1 and rep.written == 29


def test_progress_counts_settled_records_not_reads(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(600))
    seen: List[Dict[str, Any]] = []

    class Record:
        def attach(self, job: str, snapshot: Callable[[], Dict[str, Any]]) -> Callable[[], None]:
            done = threading.Event()

            def watch() -> None:
                while not done.wait(0.02):
                    seen.append(snapshot())

            t = threading.Thread(target=watch, daemon=True)
            t.start()

            def detach() -> None:
                seen.append(snapshot())
                done.set()
                t.join()

            return detach

    # Writes limited, reads not: reads run ahead of acknowledged writes.
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     RunOptions(progress="off", max_write_units=400, segments=2, writers=2), observer=Record())
    assert rep.written == 600
    dones = [s["done"] for s in seen]
    assert dones == sorted(dones) and dones[-1] == 600
    assert all(s["done"] <= s["read"] for s in seen)
    assert any(s["done"] < s["read"] for s in seen), "progress never lagged reads: it counts reads"
    c = boto_client(endpoint)
    assert c.scan(TableName=dst, Select="COUNT")["Count"] == 600


def test_a_bare_name_is_a_table_even_beside_a_folder_of_that_name(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(20))
    put_items(endpoint, dst, items(20))
    (tmp_path / src).mkdir()  # a folder named like the source table, in the working directory
    r = cli("verify", src, dst, "--endpoint-url", endpoint, "--progress", "off", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # ... while ./name still means the folder
    r = cli("verify", f"./{src}", dst, "--endpoint-url", endpoint, "--progress", "off", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    r = cli("verify", "nosuchtable", dst, "--endpoint-url", endpoint, "--progress", "off", cwd=tmp_path)
    assert r.returncode == 1 and "nosuchtable" in r.stderr


@pytest.mark.parametrize("processes", [1, 2])
def test_a_stop_asked_before_the_job_starts_still_stops_it(endpoint: str, processes: int) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(300))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InterruptedError_):
        copy_table(ref(endpoint, src), ref(endpoint, dst),
                   RunOptions(progress="off", processes=processes, max_read_units=20), cancel=cancel)


def test_a_fresh_run_starts_its_default_dead_letter_file_afresh(endpoint: str, tmp_path: Path) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(70))
    tf = write_transform(tmp_path, FAILING)
    for restart in (False, True, True):
        rep = copy_table(ref(endpoint, src), ref(endpoint, dst),
                         RunOptions(progress="off", transform=tf, on_error="skip", restart=restart))
        assert len(Path(rep.dead_letter_path).read_text().splitlines()) == 10 == rep.dead_lettered  # type: ignore[arg-type]
    dry = copy_table(ref(endpoint, src), ref(endpoint, dst),
                     RunOptions(progress="off", transform=tf, on_error="skip", dry_run=True))
    assert dry.dead_letter_path != rep.dead_letter_path and "dry-run" in str(dry.dead_letter_path)
    assert len(Path(rep.dead_letter_path).read_text().splitlines()) == 10  # type: ignore[arg-type]


def test_dry_run_shows_samples_without_a_transform_too(endpoint: str) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(40))
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off", dry_run=True, sample=4))
    assert len(rep.samples) == 4 and all(s["after"] == [s["before"]] for s in rep.samples)
    assert scan_all(endpoint, dst) == []


def test_clean_target_deletions_are_counted_and_timed(endpoint: str) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(30))
    put_items(endpoint, dst, [{"pk": {"S": f"old{i}"}} for i in range(25)])
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off"), clean_target=True,
                     confirm=lambda m: True)
    cleaned = rep.extra["clean_target"]
    assert cleaned["deleted"] == 25 and cleaned["seconds"] >= 0
    assert len(scan_all(endpoint, dst)) == 30


def test_a_library_call_prints_no_progress(endpoint: str, capfd: pytest.CaptureFixture[str]) -> None:
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(30))
    copy_table(ref(endpoint, src), ref(endpoint, dst))
    out, err = capfd.readouterr()
    assert "progress" not in err and "progress" not in out


def test_report_off_a_terminal_does_not_cut_numbers(tmp_path: Path) -> None:
    from ddbmigrate.reporting.report import Report

    rep = Report(job="copy", source="s" * 60, target="t" * 60, counters={"read": 12345678901, "written": 12345678901})
    rep.write_json(str(tmp_path / "run.json"))
    r = cli("report", str(tmp_path / "run.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "12,345,678,901" in r.stdout and "…" not in r.stdout


def test_an_exit_3_run_is_not_a_green_done_in_html(tmp_path: Path) -> None:
    from ddbmigrate.reporting.html import STATUS_COLOURS, load_run_report, render_html
    from ddbmigrate.reporting.report import Report

    rep = Report(job="copy", counters={"read": 10, "written": 7, "dead_lettered": 3},
                 dead_letter_reasons={"ValueError": 3}, extra={"dead_letter_messages": {"ValueError": "seven"}})
    rep.write_json(str(tmp_path / "run.json"))
    page = render_html(load_run_report(str(tmp_path / "run.json")))
    assert "done with dead letters" in page and STATUS_COLOURS["done"] not in page.split("<h2>")[0]
    assert "<td>seven</td>" in page


@pytest.mark.parametrize("engine", [[], ["--processes", "2", "--segments", "2"], ["--engine", "spark"]],
                         ids=["threads", "processes", "spark"])
def test_a_failed_copy_says_what_it_wrote_past_its_checkpoint(endpoint: str, tmp_path: Path,
                                                               engine: List[str]) -> None:
    # One segment, 3,000 items, writes held to 1,000 units/s: the transform fails on the second page
    # while the first is being written. The report counts what the checkpoint covers (its counts
    # add up, a resume starts there), and says how many more DynamoDB acknowledged: together,
    # exactly what the target holds. Before, it said "written 0" over hundreds of items.
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(3000))
    tf = write_transform(tmp_path, "def f(item):\n    if int(item['n']) == 2500:\n        raise ValueError('late')\n"
                                   "    return item\n")
    # Every engine says it (the processes and Spark engines said nothing before: their stopped
    # workers' and tasks' writes were neither counted nor mentioned).
    seg = [] if "--segments" in engine else ["--segments", "1"]
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--transform", tf, *seg, *engine,
            "--max-write-units", "1000", "--progress", "off", "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 1 and "late" in r.stderr, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    in_target = len(scan_all(endpoint, dst))
    unsettled = rep["extra"].get("unsettled", {}).get("written", 0)
    assert rep["balanced"] and unsettled > 0, rep
    assert rep["counters"]["written"] + unsettled == in_target, (rep["counters"], unsettled, in_target)
    assert "also written, not settled" in r.stderr and f"{unsettled:,} (a resume writes them again)" in r.stderr, \
        r.stderr


@pytest.mark.parametrize("mode", ["fail-existing", "skip-existing"])
def test_a_failed_conditional_copy_counts_the_puts_it_made(endpoint: str, tmp_path: Path, mode: str) -> None:
    """Conditional modes write one PutItem at a time; a batch whose retries run out midway had
    written the items before. Before, they were dropped with the batch's result: "written 0" and
    no "not settled" line over hundreds of items in the target."""
    from ddbmigrate.testing.proxy import FaultProxy, Faults

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(600))
    with FaultProxy(endpoint, seed=5, faults=Faults(error500=0.3, writes_only=True)) as proxy:
        r = cli("copy", src, dst, "--endpoint-url", proxy.url, "--mode", mode, "--max-attempts", "2",
                "--progress", "off", "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 75, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    in_target = len(scan_all(endpoint, dst))
    unsettled = rep["extra"].get("unsettled", {}).get("written", 0)
    assert in_target > 0 and rep["counters"]["written"] + unsettled == in_target, (rep["counters"], unsettled,
                                                                                   in_target)


def test_a_second_run_of_a_running_job_is_refused_and_kill_9_leaves_no_lock(endpoint: str, tmp_path: Path) -> None:
    # Two runs of one job at once each wrote its checkpoint and dead letters (the file held
    # duplicates); a --restart would empty the files under the first. The second is refused.
    import signal

    from support import one_error_line, wait_for

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(2000))
    args = [sys.executable, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", endpoint, "--progress", "off",
            "--max-write-units", "200"]
    first = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: list((tmp_path / ".ddbmigrate").glob("*.lock")), 60.0, "the first run's lock")
        wait_for(lambda: scan_all(endpoint, dst), 60.0, "the first run's writes")
        # (--clean-target too: refused before its clean, which would empty the target under the copy)
        for more in (["--resume"], ["--restart"], ["--restart", "--clean-target", "--yes"]):
            before = len(scan_all(endpoint, dst))
            r = cli("copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", *more, cwd=tmp_path)
            one_error_line(SimpleNamespace(exit_code=r.returncode, stderr=r.stderr), 2,
                           "another run of this job", f"pid {first.pid}")
            assert len(scan_all(endpoint, dst)) >= before > 0
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    r = cli("copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(scan_all(endpoint, dst)) == 2000
    assert not list((tmp_path / ".ddbmigrate").glob("*.lock"))  # released at the end


def test_a_resume_that_names_another_dead_letter_file_is_refused(endpoint: str, tmp_path: Path) -> None:
    # The first run's dead letters (and lines a resume must cut off) are in the default file: a
    # resume writing elsewhere split them (the report's reasons counted one file) and repeated one.
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(700))
    tf = write_transform(tmp_path, FAILING)
    args = ["copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--transform", tf, "--on-error", "skip",
            "--segments", "4", "--checkpoint-every", "0.05"]
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True, timeout=180,
                       cwd=tmp_path, env={**os.environ, "DDBMIGRATE_CRASH_AT": "after_batch_ack",
                                          "DDBMIGRATE_CRASH_AFTER": "8"})
    assert r.returncode == -9, r.stderr
    (cp,) = (tmp_path / ".ddbmigrate").glob("*.checkpoint.json")
    default = tmp_path / ".ddbmigrate" / cp.name.replace(".checkpoint.json", ".deadletter.jsonl")
    r = cli(*args, "--resume", "--dead-letter", "other.jsonl", cwd=tmp_path)
    from support import one_error_line

    one_error_line(SimpleNamespace(exit_code=r.returncode, stderr=r.stderr), 2, "dead letters so far are in",
                   "--dead-letter .ddbmigrate/" + default.name)
    assert not (tmp_path / "other.jsonl").exists()
    r = cli(*args, "--resume", "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    expected = sorted(f"k{i:05d}" for i in range(700) if i % 7 == 0)
    assert sorted(dead_keys(default)) == expected  # each once, in one file
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["counters"]["dead_lettered"] == len(expected)
    assert sum(rep["dead_letter_reasons"].values()) == len(expected)


def test_a_resumed_copy_with_clean_target_still_says_the_target_was_emptied(endpoint: str, tmp_path: Path) -> None:
    # The clean ran in the first run, killed in its copy phase; the resumed run's report dropped
    # the clean entirely, as if the target had never been emptied.
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(600))
    put_items(endpoint, dst, [{"pk": {"S": f"old{i}"}} for i in range(100)])
    args = ["copy", src, dst, "--endpoint-url", endpoint, "--progress", "off", "--clean-target", "--yes",
            "--writers", "1", "--checkpoint-every", "0.05"]
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True, timeout=180,
                       cwd=tmp_path, env={**os.environ, "DDBMIGRATE_CRASH_AT": "after_batch_ack",
                                          "DDBMIGRATE_CRASH_AFTER": "12"})
    assert r.returncode == -9, r.stderr
    assert not any(i["pk"]["S"].startswith("old") for i in scan_all(endpoint, dst))  # the clean was done
    r = cli(*args, "--resume", "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["extra"]["clean_target"]["deleted"] == 100, rep["extra"]
    assert "target emptied first" in r.stderr and "100 items deleted" in r.stderr
    assert len(scan_all(endpoint, dst)) == 600


def test_a_clean_that_leaves_items_written_meanwhile_says_so(endpoint: str, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """An application writing during a clean leaves items its scan never saw: "done" alone let a
    --clean-target copy mix them in. The check at its end finds them and warns."""
    import ddbmigrate.jobs.clean as clean_mod
    from ddbmigrate import clean_table

    table = create_table(endpoint)
    put_items(endpoint, table, items(300))
    real_run = clean_mod.run

    def run_then_write(*a: Any, **kw: Any) -> Any:
        rep = real_run(*a, **kw)
        put_items(endpoint, table, [{"pk": {"S": "late-1"}}, {"pk": {"S": "late-2"}}])  # after the scan
        return rep

    monkeypatch.setattr(clean_mod, "run", run_then_write)
    with caplog.at_level("WARNING", logger="ddbmigrate.clean"):
        rep = clean_table(TableRef(table, endpoint_url=endpoint, region="us-east-1"), RunOptions(progress="off"),
                          confirm=lambda m: True)
    assert rep.counters["deleted"] == 300 and rep.extra["left_after_clean"] == "2"
    assert f"{table} is not empty after the clean: 2 item(s)" in caplog.text
    monkeypatch.setattr(clean_mod, "run", real_run)
    rep = clean_table(TableRef(table, endpoint_url=endpoint, region="us-east-1"), RunOptions(progress="off"),
                      confirm=lambda m: True)
    assert "left_after_clean" not in rep.extra and scan_all(endpoint, table) == []


def test_a_clean_target_that_leaves_items_says_so_in_the_copy_report(endpoint: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer still writing during --clean-target leaves items the copy then mixes in: the
    copy's report and summary said "done" and only how many were deleted."""
    import ddbmigrate.jobs.clean as clean_mod
    from rich.console import Console

    from ddbmigrate.reporting.terminal import render_report

    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, items(30))
    put_items(endpoint, dst, [{"pk": {"S": f"old{i}"}} for i in range(25)])
    real_run = clean_mod.run

    def run_then_write(*a: Any, **kw: Any) -> Any:
        rep = real_run(*a, **kw)
        put_items(endpoint, dst, [{"pk": {"S": "late-1"}}, {"pk": {"S": "late-2"}}])  # after the clean's scan
        return rep

    monkeypatch.setattr(clean_mod, "run", run_then_write)
    rep = copy_table(ref(endpoint, src), ref(endpoint, dst), RunOptions(progress="off"), clean_target=True,
                     confirm=lambda m: True)
    assert rep.extra["clean_target"]["deleted"] == 25
    assert rep.extra["clean_target"]["left_after_clean"] == "2"
    assert len(scan_all(endpoint, dst)) == 32
    console = Console(record=True, width=240)
    render_report(rep, console)
    assert "2 written meanwhile left in it" in console.export_text()
