"""Every CLI command and option is documented (README.md or docs/*.md)."""

from __future__ import annotations

import glob
import os
from typing import Iterator, List, Tuple

import click
import pytest

from ddbmigrate.cli import main

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def docs_text() -> str:
    parts = [open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()]
    for p in sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        parts.append(open(p, encoding="utf-8").read())
    return "\n".join(parts)


def walk(group: click.Group, prefix: str = "") -> Iterator[Tuple[str, click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        yield full, cmd
        if isinstance(cmd, click.Group):
            yield from walk(cmd, full + " ")


COMMANDS: List[Tuple[str, click.Command]] = list(walk(main))


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_command_documented(name: str, cmd: click.Command) -> None:
    assert f"ddbmigrate {name}" in docs_text(), f"`ddbmigrate {name}` is not in README.md or docs/"


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_options_documented(name: str, cmd: click.Command) -> None:
    text = docs_text()
    missing = []
    for p in cmd.params:
        if isinstance(p, click.Option):
            longs = [o for o in p.opts if o.startswith("--")]
            if longs and not any(o in text for o in longs) and "--help" not in longs:
                missing.append(longs[0])
    assert not missing, f"ddbmigrate {name}: undocumented options {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    head = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()[:8]
    text = "\n".join(head)
    assert "make demo" in text and "make test" in text
    makefile = open(os.path.join(ROOT, "Makefile"), encoding="utf-8").read()
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    assert "make test" in ci
