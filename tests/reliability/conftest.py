"""Reliability suite fixtures: one seeded source table per session, the summary at the end."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import pytest

from ddbmigrate.aws.client import DynamoClient
from ddbmigrate.config import TableRef
from ddbmigrate.jobs.seed import seed_table
from reliability_support import RESULTS, by_key, summary_table, write_summary
from support import create_table, every_type_items, put_items, scan_all

SOURCE_ITEMS = 2000


@pytest.fixture(scope="session")
def source(endpoint: str) -> Tuple[str, Dict[str, Any]]:
    """A read-only source table (2,000 sample items plus every DynamoDB type) and its contents by key."""
    name = create_table(endpoint)
    seed_table(DynamoClient(TableRef(name, endpoint_url=endpoint, region="us-east-1")), name, SOURCE_ITEMS,
               size=600)
    put_items(endpoint, name, every_type_items())
    expected = by_key(scan_all(endpoint, name))
    assert len(expected) == SOURCE_ITEMS + len(every_type_items())
    return name, expected


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    path = write_summary()
    terminalreporter.write_sep("=", "ddbmigrate reliability summary")
    terminalreporter.write_line(summary_table())
    terminalreporter.write_line(f"summary JSON: {path}")
