"""Canary credentials never leak: verbose runs, faults, dead letters and forced failures.

Every command runs with -vv and a log file, canary credentials (access key id, secret, session
token) in the environment, through the fault proxy. Afterwards the canaries must appear nowhere:
stdout, stderr, the log file, checkpoints, dead-letter files, reports. botocore/urllib3 debug
output (signed headers) must be absent even at the highest verbosity.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from ddbmigrate.testing import FaultProxy, Faults, ToolRun, run_tool
from reliability_support import Outcome, record
from support import create_table

pytestmark = pytest.mark.reliability

CANARIES = {
    "AWS_ACCESS_KEY_ID": "AKIACANARY7Q2W9E4R1T",
    "AWS_SECRET_ACCESS_KEY": "canarySecret/7f3e9a1b2c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f",
    "AWS_SESSION_TOKEN": "canaryToken/FwoGZXIvYXdzEJr//////////wEaDCanary0123456789abcdef",
}
TRANSFORM = '''
def transform(item):
    # Fails for some items, so dead letters (with the user's traceback) are written.
    if item["pk"].endswith("7"):
        raise ValueError("refusing items ending in 7")
    return item
'''


def fragments() -> List[str]:
    out = []
    for v in CANARIES.values():
        out += [v, v[:16], v[-16:]]
    return out


def test_canary_credentials_appear_nowhere(endpoint: str, source: Tuple[str, Dict[str, Any]], tmp_path: Path) -> None:
    src, expected = source
    env = dict(os.environ, **CANARIES)
    (tmp_path / "tf.py").write_text(TRANSFORM)
    common = ["-vv", "--log-file", "tool.log", "--progress", "json", "--segments", "4"]
    runs: List[ToolRun] = []
    with FaultProxy(endpoint, seed=5, faults=Faults(throttle=0.05, reset=0.05, lost_response=0.05,
                                                    unprocessed=0.1)) as proxy:
        dst = create_table(endpoint)
        # 1. faults, a transform that fails for some items (dead letters, exit 3)
        runs.append(run_tool(["copy", src, dst, "--endpoint-url", proxy.url, *common, "--transform", "tf.py:transform",
                              "--on-error", "skip", "--dead-letter", "dead.jsonl", "--report", "r1.json",
                              "--checkpoint", "ck1.json"], env=env, cwd=str(tmp_path)))
        # 2. a forced failure: every write throttled until the attempts run out (exit 75)
        proxy.faults = Faults(throttle=1.0, writes_only=True)
        runs.append(run_tool(["copy", src, create_table(endpoint), "--endpoint-url", proxy.url, *common,
                              "--max-attempts", "2", "--report", "r2.json", "--checkpoint", "ck2.json"],
                             env=env, cwd=str(tmp_path)))
        # 3. a failure inside botocore (control plane): the source table does not exist (exit 1)
        runs.append(run_tool(["copy", "no-such-table", dst, "--endpoint-url", proxy.url, *common,
                              "--report", "r3.json"], env=env, cwd=str(tmp_path)))
        # 4. clean with a failure after it started (exit 75), checkpointed
        runs.append(run_tool(["clean", dst, "--yes", "--endpoint-url", proxy.url, *common, "--max-attempts", "2",
                              "--report", "r4.json", "--checkpoint", "ck4.json"], env=env, cwd=str(tmp_path)))
    assert [r.exit_code for r in runs] == [3, 75, 1, 75], [r.stderr[-1500:] for r in runs]
    record(Outcome(scenario="secrets/canaries", kind="secrets", exit_codes=[r.exit_code for r in runs],
                   peak_rss_mb=round(max(r.peak_rss_kb for r in runs) / 1024, 1)))

    files = {str(p.relative_to(tmp_path)): p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()}
    # What we check really exists (else the test could pass by checking nothing):
    assert any(name.startswith(".tmp") or name.endswith("ck1.json") for name in files)
    assert "dead.jsonl" in files and "refusing items ending in 7" in files["dead.jsonl"]
    assert {"r1.json", "r2.json", "ck2.json", "ck4.json"} <= set(files)
    log = files["tool.log"]
    assert "DEBUG" in log and "checkpoint" in log and "retry" in log  # it really was verbose
    texts = dict(files, **{f"run{i}.{s}": getattr(r, s) for i, r in enumerate(runs) for s in ("stdout", "stderr")})
    for name, text in texts.items():
        for frag in fragments():
            assert frag not in text, f"canary {frag[:10]}... leaked into {name}"
        # botocore/urllib3 debug output carries signed headers: it must never be on.
        for marker in ("Authorization", "X-Amz-Security-Token", "Credential=", "botocore.endpoint", "urllib3.connectionpool"):
            assert marker not in text, f"{marker} in {name}"


def test_redaction_covers_credential_shapes() -> None:
    from ddbmigrate.logs import redact

    secrets = list(CANARIES.values())
    line = (f"headers={{'Authorization': 'AWS4-HMAC-SHA256 Credential={CANARIES['AWS_ACCESS_KEY_ID']}/20261125/"
            f"us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0123abcdef', "
            f"'X-Amz-Security-Token': '{CANARIES['AWS_SESSION_TOKEN']}'}} secret={CANARIES['AWS_SECRET_ACCESS_KEY']}")
    for text in (redact(line, secrets), redact(line, [])):  # by value, and by shape alone
        assert CANARIES["AWS_ACCESS_KEY_ID"] not in text and "0123abcdef" not in text
        assert CANARIES["AWS_SESSION_TOKEN"] not in text
    assert CANARIES["AWS_SECRET_ACCESS_KEY"] not in redact(line, secrets)
    assert redact("copied 10 items from t-1 to t-2", secrets) == "copied 10 items from t-1 to t-2"
