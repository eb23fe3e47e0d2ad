"""Names and messages from the data printed on the operator's terminal: never a control sequence
(an attribute name can hold ESC), never read as rich markup (an attribute named "[/]" stopped
the summary with a MarkupError)."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from ddbmigrate.reporting.report import Report
from ddbmigrate.reporting.terminal import render_report, render_verify_report
from ddbmigrate.verify.report import VerifyReport

HOSTILE = ["a\x1b[31mRED\x1b[0m", "\x1b]0;title\x07", "[/]", "[bold]x", "nul\x00", "c1\x9b2J", "tab\tok"]


def _printed(render, report) -> str:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    render(report, Console(file=buf, width=240, force_terminal=False, color_system=None))
    return buf.getvalue()


def test_a_verify_preview_prints_hostile_paths_keys_and_reasons_inertly() -> None:
    rep = VerifyReport(source="src", target="dst[/]", mismatched=len(HOSTILE), status="done",
                       preview=[{"category": "mismatched", "key": {"pk": {"S": h}}, "paths": [h, "ok"], "reason": h}
                                for h in HOSTILE])
    out = _printed(render_verify_report, rep)
    assert "\x1b" not in out and "\x00" not in out and "\x07" not in out and "\x9b" not in out
    assert "\\x1b[31mRED\\x1b[0m" in out and "[/]" in out and "[bold]x" in out and "dst[/]" in out


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_any_error_text_prints_without_control_characters_or_markup_errors(text: str) -> None:
    out = _printed(render_report, Report(job="copy", source=text, target="t", status="failed", error=text))
    assert not any(0 <= ord(c) < 32 and c != "\n" or 0x7f <= ord(c) <= 0x9f for c in out)
