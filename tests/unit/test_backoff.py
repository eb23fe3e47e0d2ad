"""Batch-level back-off: capped exponential with full jitter, injected sleep and randomness."""

from __future__ import annotations

import socket
from typing import List

import pytest

from ddbmigrate.aws.client import Backoff, DynamoClient, RetryStats
from ddbmigrate.config import RetryPolicy, TableRef
from ddbmigrate.errors import EXIT_RETRIABLE, RetriesExhaustedError


def test_full_jitter_is_uniform_below_a_capped_exponential() -> None:
    slept: List[float] = []
    b = Backoff(RetryPolicy(max_attempts=10, base_delay=0.1, max_delay=2.0), sleep=slept.append, rand=lambda: 1.0)
    caps = [b.delay(a) for a in range(8)]
    assert caps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])  # doubles, then capped
    b.rand = lambda: 0.25
    assert b.wait(3) == pytest.approx(0.2)
    assert slept == [pytest.approx(0.2)]
    b.rand = lambda: 0.0  # full jitter may mean no wait at all: then we do not call sleep
    assert b.wait(5) == 0.0
    assert slept == [pytest.approx(0.2)]


def test_jitter_spreads_over_the_whole_interval() -> None:
    import random

    r = random.Random(4)
    b = Backoff(RetryPolicy(base_delay=1.0, max_delay=8.0), sleep=lambda s: None, rand=r.random)
    delays = [b.delay(3) for _ in range(2000)]
    assert 0.0 <= min(delays) < 0.1 and 7.9 < max(delays) <= 8.0
    assert 3.7 < sum(delays) / len(delays) < 4.3  # the mean of U(0, 8)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: every attempt is refused
    return port


def test_retries_exhausted_is_resumable_and_counted() -> None:
    slept: List[float] = []
    stats = RetryStats()
    c = DynamoClient(TableRef("t-any", endpoint_url=f"http://127.0.0.1:{_closed_port()}", region="us-east-1"),
                     retry=RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=1.0), stats=stats,
                     sleep=slept.append, rand=lambda: 0.5)
    with pytest.raises(RetriesExhaustedError) as ei:
        c.call("Scan", {"TableName": "t-any"})
    assert ei.value.exit_code == EXIT_RETRIABLE == 75
    assert "after 4 attempts" in ei.value.message
    assert stats.snapshot()["retries"] == {"connection": 3}
    assert slept == pytest.approx([0.5, 0.5, 0.5])  # 0.5 x min(1.0, 0.5 * 2**n), capped at 1.0
