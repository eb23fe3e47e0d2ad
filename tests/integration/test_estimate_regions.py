"""``estimate`` picks the prices of the region the job runs in (--region, or the target's own),
and says so when it has none for it."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from click.testing import CliRunner
from support import create_table, put_items, unique

from ddbmigrate.cli import main


def _estimate(*args: str) -> Dict[str, Any]:
    r = CliRunner().invoke(main, ["estimate", "copy", *args, "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_region_picks_its_prices_and_an_unknown_one_falls_back_with_a_note(endpoint: str) -> None:
    src = create_table(endpoint)
    items: List[Dict[str, Any]] = [{"pk": {"S": f"u{i}"}, "v": {"S": "a" * 100}} for i in range(10)]
    put_items(endpoint, src, items)
    target = unique("t")
    # 10 items of under 1 KB: 10 write units; 1 read unit (one 4 KB block), halved (eventually consistent)
    tokyo = _estimate(src, target, "--endpoint-url", endpoint, "--region", "ap-northeast-1")
    assert tokyo["region"] == "ap-northeast-1" and tokyo["prices"]["rates_region"] == "ap-northeast-1"
    assert "APN1-WriteRequestUnits" in tokyo["prices"]["source"]
    engine = next(ln for ln in tokyo["lanes"] if ln["lane"] == "engine")
    assert engine["cost_parts_usd"]["write units"] == pytest.approx(10 * 0.715 / 1e6)
    assert not any("no prices for" in a for a in tokyo["assumptions"])
    # the target side's own region decides (the prices of where the writes are billed)
    split = _estimate(src, target, "--endpoint-url", endpoint, "--source-region", "us-east-1",
                      "--target-region", "ap-northeast-1")
    assert split["prices"]["rates_region"] == "ap-northeast-1"
    other = _estimate(src, target, "--endpoint-url", endpoint, "--region", "eu-west-1")
    assert other["region"] == "eu-west-1" and other["prices"]["rates_region"] == "us-east-1"
    assert any("no prices for eu-west-1 in the prices file: us-east-1 prices are used" in a
               for a in other["assumptions"])
    engine = next(ln for ln in other["lanes"] if ln["lane"] == "engine")
    assert engine["cost_parts_usd"]["write units"] == pytest.approx(10 * 0.625 / 1e6)
