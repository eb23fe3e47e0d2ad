"""Failures of the credential chain and of the CA bundle are usage errors naming what is wrong
(the profile and its credential_process / source_profile; AWS_CA_BUNDLE or a profile's ca_bundle
and the path), on one line, exit 2: never "internal error", never blamed on the endpoint, never a
secret. And ``estimate`` prices a job in the region its profiles send it to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Optional

import pytest
from support import create_table, one_usage_line, put_items, unique

pytestmark = pytest.mark.integration

SECRET = "leakySecretValue12345"
TOKEN = "s3cr3tTokenValue99"
CLEAR = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
         "AWS_CA_BUNDLE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB",
         "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "DDBMIGRATE_DEBUG")


def _aws_files(tmp: Path) -> Dict[str, str]:
    """A config and a credentials file with every profile the tests use; the environment for them."""
    bad_json = tmp / "bad_json.sh"
    # Cut short after the secret: the JSON parser fails, and the secret must not be printed.
    bad_json.write_text('#!/bin/sh\necho \'{"Version": 1, "AccessKeyId": "AKIAPROCBAD000000001", '
                        f'"SecretAccessKey": "{SECRET}"\'\n')
    bad_json.chmod(0o755)
    (tmp / "config").write_text(
        "[profile srcp]\nregion = eu-west-1\n"
        "[profile dstp]\nregion = ap-northeast-1\n"
        f"[profile procbad]\nregion = us-east-1\ncredential_process = {bad_json}\n"
        f"[profile procmissing]\nregion = us-east-1\ncredential_process = {tmp}/no/such/cred --token {TOKEN}\n"
        "[profile rolebad]\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = nosuchprofile\n"
        f"[profile cap]\nregion = us-east-2\nca_bundle = {tmp}/no/such/ca.pem\n")
    (tmp / "credentials").write_text(
        "".join(f"[{p}]\naws_access_key_id = AKIA{p.upper():0<16}\naws_secret_access_key = {SECRET}{p}\n"
                for p in ("srcp", "dstp", "cap")))
    env = {k: v for k, v in os.environ.items() if k not in CLEAR}
    env.update(AWS_CONFIG_FILE=str(tmp / "config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp / "credentials"),
               AWS_EC2_METADATA_DISABLED="true", PYTHONPATH=os.pathsep.join(sys.path))
    return env


def _run(env: Dict[str, str], *args: str, ca_bundle: Optional[str] = None) -> SimpleNamespace:
    e = dict(env)
    if ca_bundle is not None:
        e["AWS_CA_BUNDLE"] = ca_bundle
    p = subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                       timeout=300, env=e, cwd=env["AWS_CONFIG_FILE"].rsplit("/", 1)[0])
    return SimpleNamespace(exit_code=p.returncode, stdout=p.stdout, stderr=p.stderr)


def _copy(env: Dict[str, str], endpoint: str, profile: str, ca_bundle: Optional[str] = None) -> SimpleNamespace:
    return _run(env, "copy", unique("s"), unique("d"), "--profile", profile, "--endpoint-url", endpoint,
                "--progress", "off", ca_bundle=ca_bundle)


def test_a_credential_process_printing_bad_json_is_named_not_the_endpoint(endpoint: str, tmp_path: Path) -> None:
    env = _aws_files(tmp_path)
    r = _copy(env, endpoint, "procbad")
    line = one_usage_line(r, "'procbad'", "credential_process", "JSON")
    assert "endpoint:" not in line and "invalid dynamodb endpoint" not in line, line
    assert SECRET not in r.stderr + r.stdout


def test_a_missing_credential_process_program_is_a_usage_error(endpoint: str, tmp_path: Path) -> None:
    env = _aws_files(tmp_path)
    r = _copy(env, endpoint, "procmissing")
    one_usage_line(r, "'procmissing'", "credential_process", f"{tmp_path}/no/such/cred")
    assert TOKEN not in r.stderr + r.stdout  # the command line's arguments are never printed


def test_a_missing_source_profile_is_named(endpoint: str, tmp_path: Path) -> None:
    env = _aws_files(tmp_path)
    one_usage_line(_copy(env, endpoint, "rolebad"), "'rolebad'", "source_profile", "nosuchprofile")


def test_a_missing_aws_ca_bundle_names_the_variable_and_the_path(endpoint: str, tmp_path: Path) -> None:
    env = _aws_files(tmp_path)
    https = endpoint.replace("http://", "https://")  # the bundle is loaded before any connection
    missing = str(tmp_path / "nonexistent.pem")
    one_usage_line(_copy(env, https, "srcp", ca_bundle=missing), "AWS_CA_BUNDLE", missing)
    # and on the urllib3 stack too (not a connection error retried ten times)
    env_urllib3 = {**env, "DDBMIGRATE_HTTP_CLIENT": "urllib3"}
    one_usage_line(_copy(env_urllib3, https, "srcp", ca_bundle=missing), "AWS_CA_BUNDLE", missing)


def test_an_aws_ca_bundle_that_is_no_certificate_names_the_variable_and_the_path(endpoint: str,
                                                                                  tmp_path: Path) -> None:
    env = _aws_files(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not a certificate\n")
    line = one_usage_line(_copy(env, endpoint.replace("http://", "https://"), "srcp", ca_bundle=str(junk)),
                          "AWS_CA_BUNDLE", str(junk))
    assert "SSLError" not in line or "certificate" in line.lower(), line


def test_a_profiles_missing_ca_bundle_names_the_profile_and_the_path(endpoint: str, tmp_path: Path) -> None:
    env = _aws_files(tmp_path)
    one_usage_line(_copy(env, endpoint.replace("http://", "https://"), "cap"), "ca_bundle", "'cap'",
                   f"{tmp_path}/no/such/ca.pem")


def test_estimate_prices_the_job_in_the_profiles_regions(endpoint: str, tmp_path: Path) -> None:
    env = _aws_files(tmp_path)
    src = create_table(endpoint)  # DynamoDB Local runs with -sharedDb: one table space for every region
    put_items(endpoint, src, [{"pk": {"S": f"u{i}"}, "v": {"S": "a" * 100}} for i in range(10)])
    target = unique("t")
    args = ("estimate", "copy", src, target, "--source-profile", "srcp", "--target-profile", "dstp",
            "--endpoint-url", endpoint)
    r = _run(env, *args, "--json")
    assert r.exit_code == 0, r.stderr
    est = json.loads(r.stdout)
    # the target's region (where the writes are billed): dstp's, not us-east-1
    assert est["region"] == "ap-northeast-1" and est["prices"]["rates_region"] == "ap-northeast-1", est["prices"]
    engine = next(ln for ln in est["lanes"] if ln["lane"] == "engine")
    assert engine["cost_parts_usd"]["write units"] == pytest.approx(10 * 0.715 / 1e6)
    # the text report says the same; an AWS_CA_BUNDLE that is not there is no concern of an http endpoint
    r = _run(env, *args, ca_bundle=str(tmp_path / "nonexistent.pem"))
    assert r.exit_code == 0, r.stderr
    # each side at its own region's prices, and a region the prices file lacks said
    assert "prices: reads us-east-1 (none for eu-west-1 in the prices file)" in r.stdout, r.stdout
    assert "writes ap-northeast-1" in r.stdout, r.stdout
    # one side only: the source's profile region (a Scan's reads are all there is to price)
    r = _run(env, "estimate", "export", src, str(tmp_path / "out"), "--profile", "srcp", "--endpoint-url", endpoint,
             "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["region"] == "eu-west-1"


def test_a_role_that_cannot_be_assumed_is_named(endpoint: str, tmp_path: Path) -> None:
    # The line named only the profile underneath ("from profile 'srcp': ... RoleArn ..."), which
    # was fine: the role given for one side was the fault.
    env = _aws_files(tmp_path)
    dst = unique("d")
    r = _run(env, "copy", unique("s"), dst, "--profile", "srcp", "--endpoint-url", endpoint,
             "--target-role-arn", "notanarn", "--progress", "off")
    one_usage_line(r, f"for {dst} @", "'srcp'", "assuming role 'notanarn'")
