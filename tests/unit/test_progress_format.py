"""How the progress line and the managed jobs' status lines write sizes (reporting/progress.py)."""

from __future__ import annotations


def test_sizes_are_written_for_people_and_an_unknown_one_says_so() -> None:
    from ddbmigrate.reporting.progress import fmt_bytes

    assert fmt_bytes(None) == "?"
    assert fmt_bytes(0) == "0 B"
    assert fmt_bytes(1023) == "1,023 B"
    assert fmt_bytes(1536) == "1.5 KB"
    assert fmt_bytes(3 * 1024 ** 3) == "3.0 GB"
    assert fmt_bytes(5 * 1024 ** 4) == "5.0 TB"
    assert fmt_bytes(2048 * 1024 ** 4) == "2,048.0 TB"
