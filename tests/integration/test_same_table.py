"""A copy whose target is its source reached another way (DynamoDB Local's shared database seen
from two regions, an endpoint spelled two ways) is refused before --clean-target empties it;
a checkpoint knows the region a profile sets; an endpoint URL with user:password@ is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest
from support import create_table, put_items, scan_all

from ddbmigrate.config import TableRef

pytestmark = pytest.mark.integration


def run(tmp_path: Path, *args: str, env: Any = None) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "ddbmigrate", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env=env)


def sides(endpoint: str, how: str) -> List[str]:
    port = endpoint.rsplit(":", 1)[1]
    if how == "regions":  # one shared database, two regions
        return ["--endpoint-url", endpoint, "--source-region", "us-east-1", "--target-region", "eu-west-1"]
    return ["--source-endpoint-url", f"http://127.0.0.1:{port}", "--target-endpoint-url", f"http://localhost:{port}",
            "--region", "us-east-1"]


@pytest.mark.parametrize("how", ["regions", "endpoint-spellings"])
def test_the_source_reached_another_way_is_not_emptied(endpoint: str, tmp_path: Path, how: str) -> None:
    table = create_table(endpoint)
    items = [{"pk": {"S": f"k{i:03d}"}} for i in range(50)]
    put_items(endpoint, table, items)
    r = run(tmp_path, "copy", table, table, *sides(endpoint, how), "--clean-target", "--yes", "--progress", "off")
    assert r.returncode == 2 and "source and target are the same table" in r.stderr, (r.returncode, r.stderr)
    assert len(scan_all(endpoint, table)) == 50


def test_two_tables_of_one_name_are_still_two(endpoint: str, tmp_path: Path) -> None:
    # The same name on another server (here: a table created later under another name stands in
    # for it, reached through the same endpoint) is copied as before: only identity refuses.
    src, dst = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, src, [{"pk": {"S": "a"}}])
    r = run(tmp_path, "copy", src, dst, *sides(endpoint, "endpoint-spellings"), "--progress", "off")
    assert r.returncode == 0, r.stderr
    assert scan_all(endpoint, dst) == [{"pk": {"S": "a"}}]


def test_an_endpoint_with_user_and_password_is_refused(endpoint: str, tmp_path: Path) -> None:
    secret_url = endpoint.replace("http://", "http://admin:hunter2@")
    r = run(tmp_path, "copy", "aaa", "bbb", "--endpoint-url", secret_url)
    assert r.returncode == 2 and "user:password@" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / ".ddbmigrate").exists()


def test_a_checkpoint_knows_the_region_a_profile_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config"
    cfg.write_text("[profile west]\nregion = eu-west-1\n[profile south]\nregion = ap-south-1\n"
                   "[profile local]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:8000\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    west, south = TableRef("orders", profile="west").identity(), TableRef("orders", profile="south").identity()
    assert west["region"] == "eu-west-1" and south["region"] == "ap-south-1" and west != south
    assert TableRef("orders", profile="local").identity()["endpoint_url"] == "http://127.0.0.1:8000"
    # What was given wins over the profile, as it does for the client.
    assert TableRef("orders", profile="west", region="us-west-2").identity()["region"] == "us-west-2"
    assert os.environ.get("AWS_REGION") is None


def test_two_profiles_of_one_region_are_two_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # prod and staging, both us-east-1: the same fingerprint let a --resume run against the other
    # account skip every item before the saved positions, and say done.
    cfg = tmp_path / "config"
    cfg.write_text("[profile prod]\nregion = us-east-1\n[profile staging]\nregion = us-east-1\n"
                   "[profile cross]\nregion = us-east-1\nrole_arn = arn:aws:iam::222222222222:role/m\n"
                   "source_profile = prod\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    prod, staging, cross = (TableRef("orders", profile=p).identity() for p in ("prod", "staging", "cross"))
    assert prod != staging and prod != cross and staging != cross
    monkeypatch.setenv("AWS_PROFILE", "staging")
    assert TableRef("orders").identity() == staging
    # Without a profile (or the default one) the fingerprint is what it always was.
    monkeypatch.delenv("AWS_PROFILE")
    plain = {"table": "orders", "region": "us-west-2", "endpoint_url": None, "role_arn": None}
    assert TableRef("orders", region="us-west-2").identity() == plain
    assert TableRef("orders", region="us-west-2", profile="default").identity() == plain
