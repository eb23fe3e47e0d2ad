"""The import graph of ``src/ddbmigrate`` has no cycle (issue 14: the layers show in the imports).

The graph is read with ``ast``, without importing anything, so a cycle is found even when it
happens to work at run time. What counts as an edge ``A -> B`` ("A needs B"):

* every ``import`` and ``from ... import`` of a ddbmigrate module, absolute or relative, anywhere
  in A: at module level, inside functions, in ``try`` blocks. A lazy import is still a
  dependency; it only postpones the cycle to the first call.
* ``from .x import y``: the module ``x.y`` when it exists, else ``x`` itself (its ``__init__``
  when ``x`` is a package). So a package ``__init__`` that re-exports names is a node of its
  own, and importing a name through it depends on what it imports.
* importing ``a.b.c`` also runs the ``__init__`` of ``a.b`` (and ``a``): an implied edge to each
  such package's *module-level code*, the node ``a.b [init]``, whose edges are only the imports
  that running the ``__init__`` executes (not those inside its functions, which run when called).
  Packages that contain A itself are left out: they have already started running before A
  (Python imports parents first), so they are not "needed by" A; counting them would turn every
  re-export in ``ddbmigrate/__init__.py`` into a false cycle. A name imported from a package's
  ``__init__`` explicitly (``from . import helper``, ``from ..engine import engine_for``) is an
  edge to the whole ``__init__``, lazy imports included, even from inside the package.

Not counted: imports under ``if TYPE_CHECKING:`` (they never run; they exist for annotations),
and dynamic imports (``__import__``, ``importlib``) whose target is not a literal.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple


PACKAGE = "ddbmigrate"
SRC = Path(__file__).resolve().parents[2] / "src" / PACKAGE


@dataclass(frozen=True)
class Edge:
    target: str
    where: str  # "path:line" of the import statement, for the failure message


def module_names(root: Path, package: str) -> Dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root`` (a package's ``__init__`` is
    named after the package; folders without ``__init__`` are namespace packages)."""
    out: Dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package] + parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


INIT = " [init]"  # suffix of the node "what running a package's __init__ imports"
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _imports(tree: ast.AST) -> Iterator[Tuple[ast.stmt, bool]]:
    """Every Import/ImportFrom node at any depth, with whether it runs only when a function is
    called (lazy); ``if TYPE_CHECKING:`` bodies are skipped. Class bodies run at import time."""
    stack: List[Tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, lazy = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, lazy
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((n, lazy) for n in node.orelse)
            continue
        inner = lazy or isinstance(node, _FUNCTIONS)
        stack.extend((n, inner) for n in ast.iter_child_nodes(node))


def _existing(name: str, modules: Dict[str, Path]) -> Optional[str]:
    """``name`` if it is one of our modules, else its longest prefix that is (``import a.b.X``
    where X is not a module file still needs ``a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def edges_of(module: str, path: Path, modules: Dict[str, Path], package: str) -> List[Tuple[Edge, bool]]:
    """The edges of ``module``, each with whether its import is lazy (inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_init = path.name == "__init__.py"
    # The package a relative import is relative to.
    here = module.split(".") if is_init else module.split(".")[:-1]
    targets: List[Tuple[str, int, bool]] = []
    for node, lazy in _imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    targets.append((alias.name, node.lineno, lazy))
            continue
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            base_parts = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if not (base == package or base.startswith(package + ".")):
            continue
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            # ``from .x import y``: the module x.y when there is one, else x (its __init__).
            targets.append((sub if sub in modules else base, node.lineno, lazy))

    ancestors_of_self = {".".join(module.split(".")[:i]) for i in range(1, len(module.split(".")))}
    if is_init:
        ancestors_of_self.add(module)
    packages = {m for m, p in modules.items() if p.name == "__init__.py"}
    out: List[Tuple[Edge, bool]] = []
    rel = _relpath(path)
    for name, line, lazy in targets:
        target = _existing(name, modules)
        if target is None:
            continue
        parts = target.split(".")
        # Importing a.b.c first runs the __init__ of a.b and a: A needs them too, unless they
        # contain A (they run before A anyway; see the module docstring).
        implied = [".".join(parts[:i]) for i in range(1, len(parts))]
        for t in implied:
            if t != module and t not in ancestors_of_self and t in packages:
                out.append((Edge(t + INIT, f"{rel}:{line}"), lazy))
        # What the statement names is always needed, even a package containing A
        # (``from . import helper`` in a package's module needs that package's __init__).
        if target != module:
            out.append((Edge(target, f"{rel}:{line}"), lazy))
    return out


def _relpath(path: Path) -> str:
    try:
        return str(path.relative_to(SRC.parent))
    except ValueError:
        return str(path)


def import_graph(root: Path = SRC, package: str = PACKAGE) -> Dict[str, List[Edge]]:
    """Module -> its edges; each package also has a ``<package> [init]`` node: what running its
    ``__init__`` imports (its module-level imports only)."""
    modules = module_names(root, package)
    graph: Dict[str, List[Edge]] = {}
    for m, p in modules.items():
        edges = edges_of(m, p, modules, package)
        graph[m] = [e for e, _ in edges]
        if p.name == "__init__.py":
            graph[m + INIT] = [e for e, lazy in edges if not lazy]
    return graph


def find_cycles(graph: Dict[str, List[Edge]]) -> List[List[Tuple[str, str]]]:
    """The strongly connected components (Tarjan), each as concrete cycles of
    [(module, where it imports the next one)]."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    components: List[List[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        # Iterative Tarjan: the graph is small, but recursion depth is not ours to spend.
        work = [(v, iter(graph.get(v, [])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for e in it:
                w = e.target
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph.get(w, []))))
                    advanced = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)

    cycles = []
    for comp in sorted(components):
        # A component can hold several cycles: show a shortest one through each module that no
        # cycle shown so far passes through.
        covered: Set[str] = set()
        for start in comp:
            if start not in covered:
                cycle = _shortest_cycle(graph, start, set(comp))
                covered.update(m for m, _ in cycle)
                cycles.append(cycle)
    return cycles


def _shortest_cycle(graph: Dict[str, List[Edge]], start: str, members: Set[str]) -> List[Tuple[str, str]]:
    """BFS from ``start`` back to itself inside one strongly connected component."""
    prev: Dict[str, Tuple[str, str]] = {}
    frontier = [start]
    while start not in prev:
        nxt = []
        for u in frontier:
            for e in graph[u]:
                if e.target in members and e.target not in prev:
                    prev[e.target] = (u, e.where)
                    nxt.append(e.target)
        frontier = nxt
    path: List[Tuple[str, str]] = []
    node = start
    while True:
        u, where = prev[node]
        path.append((u, where))
        node = u
        if node == start:
            return list(reversed(path))


def describe(cycle: List[Tuple[str, str]]) -> str:
    lines = [f"  {m}\n    -> imports the next one at {where}" for m, where in cycle]
    return "\n".join(lines + [f"  {cycle[0][0]}"])


# --------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "pkg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "pkg"


def _targets(graph: Dict[str, List[Edge]], module: str) -> Set[str]:
    return {e.target for e in graph[module]}


def test_checker_resolves_relative_absolute_lazy_and_reexports(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "from .a.x import f\nfrom .b import g\n",
        "a/__init__.py": "",
        "a/x.py": "from ..b import y\nfrom .. import c\n",
        "b/__init__.py": "from .y import g\n",
        "b/y.py": "def g():\n    import pkg.c.z as z\n",
        "c/__init__.py": "",
        "c/z.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\n"
                   "else:\n    import os\nfrom pkg.a.x import nothing_module\n"),
        "d.py": "from . import c\nfrom .c import z, missing\n",
        "e/__init__.py": "def helper():\n    from . import w\n",
        "e/w.py": "from . import helper\n",
    })
    g = import_graph(root, "pkg")
    assert _targets(g, "pkg") == {"pkg.a [init]", "pkg.a.x", "pkg.b"}
    # from ..b import y -> the module b.y (and running b's __init__); from .. import c -> c
    assert _targets(g, "pkg.a.x") == {"pkg.b [init]", "pkg.b.y", "pkg.c"}
    # an __init__ re-export does not point back at itself
    assert _targets(g, "pkg.b") == _targets(g, "pkg.b [init]") == {"pkg.b.y"}
    # a lazy import inside a function is an edge; pkg.c's __init__ runs first
    assert _targets(g, "pkg.b.y") == {"pkg.c [init]", "pkg.c.z"}
    # TYPE_CHECKING imports are not edges; an absolute import of a name resolves to its module
    assert _targets(g, "pkg.c.z") == {"pkg.a [init]", "pkg.a.x"}
    assert _targets(g, "pkg.d") == {"pkg.c", "pkg.c [init]", "pkg.c.z"}
    # a name from the own package's __init__ is an explicit edge to it, lazy imports included
    assert _targets(g, "pkg.e.w") == {"pkg.e"}
    assert _targets(g, "pkg.e") == {"pkg.e.w"} and _targets(g, "pkg.e [init]") == set()
    cycles = find_cycles(g)
    assert [[m for m, _ in c] for c in cycles if c[0][0].startswith("pkg.e")] == [["pkg.e", "pkg.e.w"]]
    cycles = [c for c in cycles if not c[0][0].startswith("pkg.e")]
    # one component, pkg.a.x -> pkg.b.y -> pkg.c.z -> pkg.a.x (the lazy import in b.y closes it),
    # shown with a second cycle for running pkg.b's __init__, which the first one does not pass through
    assert [m for m, _ in cycles[0]] == ["pkg.a.x", "pkg.b.y", "pkg.c.z"]
    assert {m for c in cycles for m, _ in c} == {"pkg.a.x", "pkg.b [init]", "pkg.b.y", "pkg.c.z"}
    assert "b/y.py:2" in describe(cycles[0])


def test_running_a_package_init_does_not_run_its_lazy_imports(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "",
        "f/__init__.py": "def get():\n    from .. import g, h\n",
        "f/k.py": "",
        "g.py": "from .f.k import thing\n",  # runs f/__init__, which imports nothing at module level
        "h.py": "from .f import get\n",  # uses f's function, whose import of h closes a cycle
    })
    g = import_graph(root, "pkg")
    assert _targets(g, "pkg.g") == {"pkg.f [init]", "pkg.f.k"}
    assert [[m for m, _ in c] for c in find_cycles(g)] == [["pkg.f", "pkg.h"]]


def test_checker_sees_the_real_tree() -> None:
    g = import_graph()
    assert len(g) > 40
    # every module but the leaves imports something of ours; a broken resolver finds nothing
    assert sum(len(v) for v in g.values()) > 100
    assert any(e.target == f"{PACKAGE}.errors" for e in g[f"{PACKAGE}.reporting.report"])


# --------------------------------------------------------------------------- the rule


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    message = "\n\n".join(f"import cycle {i + 1}:\n{describe(c)}" for i, c in enumerate(cycles))
    if cycles:
        print(message)
    assert not cycles, f"{len(cycles)} import cycle(s) in src/{PACKAGE}:\n\n{message}"
