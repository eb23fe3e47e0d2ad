"""Canary credentials never leak: verbose runs, faults, dead letters and forced failures.

Every command runs with -vv and a log file, canary credentials (access key id, secret, session
token) in the environment, through the fault proxy. Afterwards the canaries must appear nowhere:
stdout, stderr, the log file, checkpoints, dead-letter files, reports. botocore/urllib3 debug
output (signed headers) must be absent even at the highest verbosity.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from ddbmigrate.testing import FaultProxy, Faults, ToolRun, run_tool
from reliability_support import Outcome, record
from support import create_table, every_type_items, put_items

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


def test_echoed_request_headers_never_reach_reports_status_or_logs(endpoint: str, source: Tuple[str, Dict[str, Any]],
                                                                   tmp_path: Path) -> None:
    """An endpoint that puts the request's headers (Authorization, X-Amz-Security-Token) into its
    error body. The credentials come from a profile, not the environment, so redaction must know
    them from the credential chain itself, and by their shape."""
    src, _ = source
    (tmp_path / "credentials").write_text(
        "[canary]\n" + "".join(f"{k.lower()} = {v}\n" for k, v in CANARIES.items()) + "region = us-east-1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_PROFILE="canary", AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    common = ["-vv", "--log-file", "tool.log", "--progress", "json"]
    streamed = create_table(endpoint, stream="NEW_AND_OLD_IMAGES")
    put_items(endpoint, streamed, every_type_items())
    runs: List[ToolRun] = []
    with FaultProxy(endpoint, seed=3, faults=Faults(echo_headers=1.0, writes_only=True)) as proxy:
        runs.append(run_tool(["copy", src, create_table(endpoint), "--endpoint-url", proxy.url, *common,
                              "--report", "r-copy.json", "--checkpoint", "ck-copy.json"], env=env, cwd=str(tmp_path)))
        runs.append(run_tool(["replicate", "run", streamed, create_table(endpoint), "--endpoint-url", proxy.url, "--yes",
                              *common, "--status-file", "status.json", "--report", "r-replicate.json",
                              "--checkpoint", "ck-rep.json"], env=env, cwd=str(tmp_path), timeout=120))
        proxy.faults = Faults(echo_headers=1.0, ops=frozenset({"Scan"}))
        runs.append(run_tool(["export", src, str(tmp_path / "out"), "--endpoint-url", proxy.url, *common,
                              "--report", "r-export.json", "--checkpoint", "ck-export.json"], env=env, cwd=str(tmp_path)))
        assert proxy.audit.faults["echo_headers"] >= 3
    assert [r.exit_code for r in runs] == [1, 1, 1], [r.stderr[-1500:] for r in runs]

    files = {str(p.relative_to(tmp_path)): p.read_text(errors="replace") for p in tmp_path.rglob("*")
             if p.is_file() and p.name != "credentials"}
    assert {"r-copy.json", "r-export.json", "r-replicate.json", "status.json", "tool.log"} <= set(files)
    failed = json.loads(files["r-replicate.json"])  # a failed replication still reports, truthfully
    assert failed["status"] == "failed" and failed["exit_code"] == runs[1].exit_code == 1, failed
    # The echo really came through (else this could pass by checking nothing):
    assert "Forbidden by policy" in files["r-copy.json"] and "Forbidden by policy" in files["status.json"]
    assert "Forbidden by policy" in files["r-replicate.json"]
    assert "Forbidden by policy" in files["r-export.json"] and "AccessDeniedException" in runs[0].stderr
    texts = dict(files, **{f"run{i}.{s}": getattr(r, s) for i, r in enumerate(runs) for s in ("stdout", "stderr")})
    for name, text in texts.items():
        for frag in fragments():
            assert frag not in text, f"canary {frag[:10]}... leaked into {name}"
        assert "Signature=0" not in text and not any(f"Signature={c}" in text for c in "0123456789abcdef")


@pytest.mark.parametrize("text,secret", [
    ("GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAQWERTYUIOPASDFGH%2F2026"
     "1205%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Security-Token=IQoJb3JpZ2luX2VjE%2Fabc%3D&X-Amz-Signature=abcdef0123",
     ["ASIAQWERTYUIOPASDFGH", "IQoJb3JpZ2luX2VjE", "abcdef0123"]),
    ("{'Proxy-Authorization': 'Basic dXNlcjpwQHNzd29yZA=='}", ["dXNlcjpwQHNzd29yZA"]),
    ("proxy http://alice:s3cr3t-pw@proxy.example:3128 refused", ["s3cr3t-pw"]),
    ('{"SessionToken": "FQoGZXIvYXdzELr//////////session", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG"}',
     ["FQoGZXIvYXdzELr", "wJalrXUtnFEMI"]),
])
def test_redaction_covers_signed_urls_proxy_credentials_and_json_keys(text: str, secret: List[str]) -> None:
    from ddbmigrate.logs import redact

    out = redact(text, [])  # by shape alone: none of these values is known
    for s in secret:
        assert s not in out, out


def test_credentials_from_any_source_are_redacted_by_value() -> None:
    from ddbmigrate.logs import redact, register_secrets

    register_secrets(["a-process-issued-token/with+chars=", None, "short"])
    assert redact("echo: a-process-issued-token/with+chars= end") == "echo: *** end"
    assert redact("short words stay") == "short words stay"
