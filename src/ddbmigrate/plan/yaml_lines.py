"""A plan file as YAML, with the line of every value, and the problems found in it.

Every problem a plan check reports names ``file:line``; the lines come from the YAML node tree,
walked beside the data it constructs (merge keys included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..errors import UsageError
from ..yaml_strict import AliasBombError, DuplicateKeyError, load_text

# --------------------------------------------------------------------------- problems


@dataclass
class PlanProblem:
    """One thing wrong with a plan, located at ``file:line``."""

    file: str
    line: Optional[int]
    message: str
    job: Optional[str] = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class PlanError(UsageError):
    """The plan file is invalid; ``problems`` lists every problem found (each with its line)."""

    def __init__(self, problems: List[PlanProblem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{first.message}{more}", file=first.file, line=first.line)
        self.problems = problems


# --------------------------------------------------------------------------- YAML with lines


Path_ = Tuple[Any, ...]


def load_yaml(path: str) -> Tuple[Any, Dict[Path_, int]]:
    """Parse YAML (safe types only, no key given twice) and return the data plus the 1-based line
    of every node path."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise PlanError([PlanProblem(path, None, f"cannot read plan: {e.strerror or e}")]) from None
    except UnicodeDecodeError as e:
        # UTF-16 from some editors, or not a text file at all: a plan is UTF-8 YAML.
        raise PlanError([PlanProblem(path, None, f"cannot read plan: not UTF-8 text (byte {e.start}: "
                                                 f"{e.reason}); save it as UTF-8")]) from None
    try:
        # A key given twice is refused (PyYAML would keep the last one silently). Constructing
        # first also flattens merge keys (<<) in the node tree, so the walk below sees the same
        # shape as the data.
        data, node = load_text(text)
    except DuplicateKeyError as e:
        raise PlanError([PlanProblem(path, d.line, d.message()) for d in e.duplicates]) from None
    except AliasBombError as e:
        raise PlanError([PlanProblem(path, None, str(e))]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PlanError([PlanProblem(path, line, f"not valid YAML: {e.problem or e.context}")]) from None
    except yaml.YAMLError as e:
        raise PlanError([PlanProblem(path, None, f"not valid YAML: {e}")]) from None
    if node is None:
        raise PlanError([PlanProblem(path, 1, "plan is empty")])
    lines: Dict[Path_, int] = {}
    _walk(node, data, (), lines)
    return data, lines


def _walk(node: Any, data: Any, path: Path_, lines: Dict[Path_, int]) -> None:
    import yaml

    # setdefault: a mapping value keeps the line of its key, which is where people look.
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        # Last first: a key given next to a merge key (<<) overrides the merged one, which the
        # flattened node lists before it; the line shown is the one whose value is used.
        for knode, vnode in reversed(node.value):
            key = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if key is None or key == "<<" or key not in data:
                continue
            lines.setdefault(path + (key,), knode.start_mark.line + 1)
            _walk(vnode, data[key], path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
        for i, (child, value) in enumerate(zip(node.value, data)):
            _walk(child, value, path + (i,), lines)


__all__ = ["Path_", "PlanError", "PlanProblem", "load_yaml"]
