"""YAML (and JSON) as ddbmigrate reads it: safe types only, and no key given twice.

PyYAML keeps the last of two equal keys of a mapping without a word, so a plan job with
``target: dst`` then ``target: vaa`` (or a table spec with ``KeySchema`` twice) would silently run
against the second. Every file ddbmigrate loads (plans, table specs, CloudFormation templates;
JSON is read as YAML) goes through :func:`load_text`, which refuses a repeated key at any depth
with the line of the repetition and of the first occurrence.

Merge keys (``<<: *base``) are not repetitions: a key given explicitly overrides the merged one,
as YAML says. The check runs on the composed node tree, before anything is constructed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class DuplicateKey:
    """A mapping key given a second time: ``line`` (1-based) repeats the key first given at ``first_line``."""

    key: Any
    line: int
    first_line: int

    def message(self) -> str:
        return (f"duplicate key {self.key!r} (first given at line {self.first_line}): "
                "a key may appear only once in a mapping")


def duplicate_keys(loader: Any, node: Any) -> List[DuplicateKey]:
    """Every repeated key of every mapping under ``node`` (a composed PyYAML node), in file order."""
    import yaml

    found: List[DuplicateKey] = []
    seen_nodes: Set[int] = set()
    todo: List[Any] = [node]
    while todo:
        n = todo.pop()
        if n is None or id(n) in seen_nodes:
            continue  # an alias repeats a node already checked (or a recursive one)
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: Dict[Any, int] = {}
            for knode, vnode in n.value:
                todo.append(vnode)
                if not isinstance(knode, yaml.ScalarNode):
                    todo.append(knode)
                    continue  # a complex key: constructing it says whether it can be a key at all
                key = _scalar_key(loader, knode)
                line = knode.start_mark.line + 1
                if key in first:
                    found.append(DuplicateKey(key=_shown(key), line=line, first_line=first[key]))
                else:
                    first[key] = line
        elif isinstance(n, yaml.SequenceNode):
            todo.extend(n.value)
    found.sort(key=lambda d: d.line)
    return found


def _scalar_key(loader: Any, knode: Any) -> Tuple[Any, ...]:
    """What a scalar key is once constructed: ``true`` and ``True`` are the same key, ``1`` and
    ``"1"`` are not."""
    import yaml

    if knode.tag == MERGE_TAG:
        return ("merge", "<<")
    try:
        value = yaml.SafeLoader.construct_object(loader, knode)
        hash(value)
    except Exception:  # noqa: BLE001 - the real construction reports it with its own message
        return ("text", knode.tag, knode.value)
    return ("value", value)


def _shown(key: Tuple[Any, ...]) -> Any:
    return "<<" if key[0] == "merge" else key[-1]


class DuplicateKeyError(Exception):
    """The text repeats a key; ``duplicates`` lists each repetition (with its line)."""

    def __init__(self, duplicates: List[DuplicateKey]) -> None:
        super().__init__(duplicates[0].message())
        self.duplicates = duplicates


def load_text(text: str) -> Tuple[Any, Optional[Any]]:
    """(data, root node) of one YAML/JSON document, safe types only; (None, None) when it is empty.

    Raises ``DuplicateKeyError`` for a repeated key, ``yaml.YAMLError`` for anything else wrong."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        dups = duplicate_keys(loader, node)
        if dups:
            raise DuplicateKeyError(dups)
        # Constructing also flattens merge keys (<<) in the node tree.
        return loader.construct_document(node), node
    finally:
        loader.dispose()


__all__ = ["DuplicateKey", "DuplicateKeyError", "duplicate_keys", "load_text"]
