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


# Values a document may stand for once its aliases are expanded. Plans, table specs and templates
# hold thousands at most; a "billion laughs" file (nine aliases of nine aliases of ...) holds a
# few lines and expands to millions, which anything walking the data then pays for in full.
MAX_EXPANDED = 1_000_000


class AliasBombError(Exception):
    """The aliases (``*name``) of a document expand it past :data:`MAX_EXPANDED` values, or
    refer to a node from inside itself."""


def check_expansion(node: Any, limit: int = MAX_EXPANDED) -> None:
    """Raise :class:`AliasBombError` when ``node`` expanded would hold over ``limit`` values or
    contains itself. Each distinct node is sized once (aliases share it), so this is linear in
    the text, whatever the expansion."""
    import yaml

    size: Dict[int, int] = {}
    open_nodes: Set[int] = set()
    stack: List[Tuple[Any, bool]] = [(node, False)]
    while stack:
        n, children_done = stack.pop()
        if id(n) in size:
            continue
        kids: List[Any] = []
        if isinstance(n, yaml.SequenceNode):
            kids = list(n.value)
        elif isinstance(n, yaml.MappingNode):
            kids = [x for kv in n.value for x in kv]
        if children_done:
            open_nodes.discard(id(n))
            total = 1 + sum(size[id(k)] for k in kids)
            if total > limit:
                raise AliasBombError(
                    f"its aliases (*name) expand it to over {limit:,} values (line {n.start_mark.line + 1}): "
                    "refused, no plan or table spec is that large")
            size[id(n)] = total
            continue
        if id(n) in open_nodes:
            raise AliasBombError(f"an alias at line {n.start_mark.line + 1} refers to a value from inside "
                                 "itself: refused")
        open_nodes.add(id(n))
        stack.append((n, True))
        for k in kids:
            if id(k) in open_nodes:
                raise AliasBombError(f"an alias at line {k.start_mark.line + 1} refers to a value from inside "
                                     "itself: refused")
            if id(k) not in size:
                stack.append((k, False))


class DuplicateKeyError(Exception):
    """The text repeats a key; ``duplicates`` lists each repetition (with its line)."""

    def __init__(self, duplicates: List[DuplicateKey]) -> None:
        super().__init__(duplicates[0].message())
        self.duplicates = duplicates


def load_text(text: str) -> Tuple[Any, Optional[Any]]:
    """(data, root node) of one YAML/JSON document, safe types only; (None, None) when it is empty.

    Raises ``DuplicateKeyError`` for a repeated key, ``AliasBombError`` for aliases that expand
    it past :data:`MAX_EXPANDED` values (or into itself), ``yaml.YAMLError`` for anything else."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        check_expansion(node)
        dups = duplicate_keys(loader, node)
        if dups:
            raise DuplicateKeyError(dups)
        # Constructing also flattens merge keys (<<) in the node tree.
        return loader.construct_document(node), node
    finally:
        loader.dispose()


__all__ = ["AliasBombError", "DuplicateKey", "DuplicateKeyError", "check_expansion", "duplicate_keys", "load_text"]
