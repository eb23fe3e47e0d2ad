"""Session fixtures: one real DynamoDB Local and one moto S3 server per test session, each on a
free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

import pytest

# Tests never touch a real AWS account: fixed fake credentials, no instance metadata.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
})
for _v in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
    os.environ.pop(_v, None)


@pytest.fixture(scope="session")
def ddb_local() -> Iterator[object]:
    from ddbmigrate import dynamodb_local as local

    server = local.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def endpoint(ddb_local: object) -> str:
    return ddb_local.endpoint_url  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """The endpoint URL of a ``moto[server]`` process on loopback (S3, and moto's partial DynamoDB).

    One process serves the whole session; tests keep apart by unique bucket and table names.
    """
    from ddbmigrate.dynamodb_local import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                # An HTTP answer, not just an open port: the server is ready to serve requests.
                urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def _workdir(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # Default checkpoints land in ./.ddbmigrate: keep each test's in its own folder.
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
