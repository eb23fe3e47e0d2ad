"""``ddbmigrate report --html`` of a real plan run, opened in headless Chromium.

Needs the Debian package ``chromium`` (skipped with that reason when it is absent). The page
must render its charts with its scripts run and no network: we dump the DOM after load and take
a screenshot.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

from support import create_table, put_items

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-extensions", "--no-first-run", "--disable-dev-shm-usage"]


def _png_distinct_bytes(path: Path) -> int:
    """How many distinct byte values the decoded image data holds (a blank page has ~2)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs Chromium: apt-get install -y chromium")
def test_html_report_of_a_plan_renders_in_a_browser(endpoint: str, tmp_path: Path) -> None:
    a, b = create_table(endpoint), create_table(endpoint)
    put_items(endpoint, a, [{"pk": {"S": f"a{i}"}} for i in range(80)])
    put_items(endpoint, b, [{"pk": {"S": f"b{i}"}, "n": {"N": str(i)}} for i in range(60)])
    (tmp_path / "tx.py").write_text("def odd_fails(item):\n"
                                    "    if int(item['n']) % 20 == 7:\n"
                                    "        raise ValueError('bad n')\n"
                                    "    return item\n")
    side = {"endpoint_url": endpoint, "region": "us-east-1"}
    plan = {"defaults": {"source": side, "target": side, "create_target": True},
            "jobs": [{"kind": "copy", "source": a, "target": a + "-n"},
                     {"kind": "copy", "source": b, "target": b + "-n", "transform": "tx.py:odd_fails",
                      "options": {"on_error": "skip", "segments": 4}}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "run", "plan.yaml", "--report", "run.json", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 3, r.stderr  # done, with dead letters
    r = subprocess.run([sys.executable, "-m", "ddbmigrate", "report", "run.json", "--html", "run.html"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "total" in r.stdout and "bad n" not in r.stdout  # reasons are by code in the summary
    source = (tmp_path / "run.html").read_text()
    n_charts = source.count("<svg ")
    assert n_charts >= 4
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", source)  # nothing fetched

    dom = subprocess.run([CHROMIUM, *BROWSER_FLAGS, "--dump-dom", (tmp_path / "run.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    # The inline script ran over every chart (it marks the page when done).
    assert f'data-charts-ready="{n_charts}"' in dom
    assert len(re.findall(r"<svg [^>]*class=\"chart\"", dom)) == n_charts
    # every line chart with a line got its hover read-out (both have one: plan jobs sample at start and end)
    assert dom.count('data-interactive="1"') == 2
    report = json.loads((tmp_path / "run.json").read_text())
    for job in report["jobs"]:
        assert job["name"] in dom
    # n = 7, 27, 47 dead-lettered by the transform: the code, its message, the count
    assert re.search(r"<td>ValueError</td><td>[^<]*ValueError[^<]*</td><td>3</td>", dom)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *BROWSER_FLAGS, f"--screenshot={shot}", "--window-size=1000,1600",
                    (tmp_path / "run.html").as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and _png_distinct_bytes(shot) > 16  # something was drawn, not a blank page
