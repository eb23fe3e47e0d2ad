"""Session fixtures: one real DynamoDB Local per test session, on a free loopback port."""

from __future__ import annotations

import os
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
    from ddbmigrate import local

    server = local.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def endpoint(ddb_local: object) -> str:
    return ddb_local.endpoint_url  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(autouse=True)
def _workdir(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # Default checkpoints land in ./.ddbmigrate: keep each test's in its own folder.
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
