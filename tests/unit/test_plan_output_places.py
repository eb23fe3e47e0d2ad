"""`plan validate` says when the plan's state folder or an export's local folder cannot be made:
before, it passed them, and `run` failed after its first jobs with an internal error."""

from __future__ import annotations

from pathlib import Path

from ddbmigrate.plan import validate_plan


def test_a_state_dir_and_an_export_folder_under_a_file_are_named(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    plan = tmp_path / "p.yaml"
    plan.write_text(f"version: 1\nstate_dir: {tmp_path}/afile/state\njobs:\n  - name: e\n    kind: export\n"
                    f"    source: src\n    to: {tmp_path}/afile/out\n")
    problems = [p.message for p in validate_plan(str(plan), check_tables=False)]
    assert any(m.startswith(f"state_dir {tmp_path}/afile/state: ") and "is a file, not a folder" in m
               for m in problems), problems
    assert any(m.startswith(f"e: cannot write the export to {tmp_path}/afile/out") for m in problems), problems


def test_writable_places_raise_nothing(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(f"version: 1\nstate_dir: {tmp_path}/state\njobs:\n  - name: e\n    kind: export\n"
                    f"    source: src\n    to: {tmp_path}/out\n")
    assert validate_plan(str(plan), check_tables=False) == []


def test_an_unreadable_folder_is_said_not_taken_for_an_empty_one(tmp_path: Path, monkeypatch: "object") -> None:
    """os.walk skips a folder it cannot list: an import of it said "no data files" (as root, a
    mode of 000 does not stop a read, so the refusal is simulated)."""
    import os

    import pytest

    from ddbmigrate.errors import UsageError
    from ddbmigrate.storage.stores import LocalStorage

    (tmp_path / "in").mkdir()
    real = os.scandir

    def scandir(path: "object" = ".") -> "object":
        if str(path) == str(tmp_path / "in"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match=f"cannot read the folder {tmp_path}/in: Permission denied"):
        LocalStorage().list_files(str(tmp_path / "in"))
