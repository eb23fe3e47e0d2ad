"""The benchmark's synthetic endpoint (bench/synthetic_endpoint.py) serves a table as DynamoDB's
parallel scan does: every item in exactly one segment, once, in pages of at most 1 MB that
resume from their LastEvaluatedKey. The --processes scaling table counts on it."""

from __future__ import annotations

import os
import sys

import orjson
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from synthetic_endpoint import PAGE_BYTES, SyntheticEndpoint  # noqa: E402

from ddbmigrate.sources.generated import sample_item  # noqa: E402


@pytest.mark.parametrize("total,limit", [(1, 0), (3, 0), (16, 0), (4, 100), (7, 1)])
def test_segments_cover_every_item_once_in_pages_that_resume(total: int, limit: int) -> None:
    n = 2_003 if limit != 1 else 57
    ep = SyntheticEndpoint("http://127.0.0.1:1", "t", n, size=1500)
    seen = []
    for seg in range(total):
        req = {"TableName": "t", "Segment": seg, "TotalSegments": total}
        if limit:
            req["Limit"] = limit
        pages = 0
        while True:
            body, crc = ep._page(req)
            d = orjson.loads(body)
            pages += 1
            assert len(body) <= PAGE_BYTES + 1000 and d["Count"] == len(d["Items"]) <= (limit or n)
            assert crc.isdigit()
            seen += [it["pk"]["S"] for it in d["Items"]]
            if "LastEvaluatedKey" not in d:
                break
            assert d["LastEvaluatedKey"] == {"pk": d["Items"][-1]["pk"]}
            req["ExclusiveStartKey"] = d["LastEvaluatedKey"]
        assert pages < n + 2
    assert sorted(seen) == [f"user#{i:09d}" for i in range(n)]
    assert orjson.loads(ep._page({"TableName": "t", "TotalSegments": 1})[0])["Items"][0] == sample_item(0, size=1500)
