"""The import graph of `vita/`: no cycles among its modules, and the layers import only downwards (not even through
another module: media knows no models).

Imports are read statically with `ast`, the ones inside functions included (a lazy import still ties the two
modules together); only an `if TYPE_CHECKING:` block is exempt. An edge goes to the module named: `from a.b
import c` points at `a.b.c` when that is a module, else at `a.b` (the package `__init__` is not counted as an
import of every parent).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vita"

# (low, high): no module in or under `low` imports a module in or under `high`, directly or through other modules
LAYER_RULES = [
    ("vita.media", "vita.models"),
    ("vita.models", "vita.duplex"),
    ("vita.models", "vita.server"),
    ("vita.duplex", "vita.server"),
    ("vita.generation", "vita.server"),
    ("vita.checkpoint", "vita.training"),
    ("vita.datasets", "vita.training"),  # the factories write files; the loop reads them
    ("vita.datasets", "vita.duplex"),
    ("vita.datasets", "vita.server"),
]

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, str | None]]:
    """(module, name) pairs imported by `tree`; `name` is set for `from module import name`."""
    found: list[tuple[str, str | None]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # relative: a package's `.` is itself, a module's `.` is its parent
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.extend((target, alias.name) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def build_graph(root: Path = PACKAGE) -> Graph:
    """Module -> the `root` package's modules it imports."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    top = root.name
    graph: Graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: set[str] = set()
        for target, imported in _imports(tree, name, path.name == "__init__.py"):
            if target != top and not target.startswith(top + "."):
                continue
            if imported is not None and f"{target}.{imported}" in files:
                target = f"{target}.{imported}"
            while target not in files:  # `import vita.x.y.attr`-style names fall back to the module
                target = target.rpartition(".")[0]
            if target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None; deterministic (sorted walk)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _chain(graph: Graph, src: str, package: str) -> list[str] | None:
    """The shortest import chain from `src` to a module in or under `package`, or None (breadth-first, sorted)."""
    parent: dict[str, str] = {}
    frontier = [src]
    while frontier:
        nxt = []
        for node in frontier:
            for dst in sorted(graph.get(node, ())):
                if dst in parent or dst == src:
                    continue
                parent[dst] = node
                if _within(dst, package):
                    chain = [dst]
                    while chain[-1] != src:
                        chain.append(parent[chain[-1]])
                    return chain[::-1]
                nxt.append(dst)
        frontier = nxt
    return None


def layer_violations(graph: Graph, rules: list[tuple[str, str]] = LAYER_RULES) -> list[str]:
    """One line per module of a low layer that reaches a high one, with the chain that does it."""
    out = []
    for low, high in rules:
        for src in sorted(graph):
            if _within(src, low) and (chain := _chain(graph, src, high)):
                out.append(" -> ".join(chain) + f" ({low} must not import {high})")
    return out


def test_no_import_cycles():
    cycle = find_cycle(build_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_import_downwards():
    violations = layer_violations(build_graph())
    assert not violations, "layer rule broken:\n" + "\n".join(violations)


def test_checker_catches_a_cycle_and_a_violation(tmp_path: Path):
    pkg = tmp_path / "vita"
    for sub in ("media", "models", "server"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "media" / "a.py").write_text("from . import b\n")
    (pkg / "media" / "b.py").write_text("def f():\n    from vita.media.a import g\n")  # lazy import: counted
    (pkg / "media" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vita.models import x\n"  # exempt
    )
    (pkg / "media" / "d.py").write_text("import vita.util\n")
    (pkg / "util.py").write_text("from vita.models import m\n")  # media -> models through util
    (pkg / "models" / "m.py").write_text("import vita.server.app\nimport os\n")
    (pkg / "server" / "app.py").write_text("from ..media.c import thing\n")

    graph = build_graph(pkg)
    assert graph["vita.media.a"] == {"vita.media.b"}
    assert graph["vita.media.c"] == set()
    assert graph["vita.models.m"] == {"vita.server.app"}
    assert graph["vita.server.app"] == {"vita.media.c"}
    assert find_cycle(graph) == ["vita.media.a", "vita.media.b", "vita.media.a"]
    assert layer_violations(graph) == [
        "vita.media.d -> vita.util -> vita.models.m (vita.media must not import vita.models)",
        "vita.models.m -> vita.server.app (vita.models must not import vita.server)",
    ]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_only_vita_cli_parses_command_lines():
    """argparse belongs to `vita.cli`: library modules expose typed functions, the CLI maps flags onto them."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path, PACKAGE)
        tree = ast.parse(path.read_text(), filename=str(path))
        if not _within(name, "vita.cli") and any(
                target.split(".")[0] == "argparse" for target, _ in _imports(tree, name, path.name == "__init__.py")):
            offenders.append(name)
    assert not offenders, "argparse outside vita.cli: " + ", ".join(offenders)


def test_one_construction_of_the_llm_reply_stream():
    """Every path (the API, the chat server, both duplex roles) gets its reply stream from `Vita.token_loop`: the
    LLM's `TokenLoop` is built in `vita.api` only, above the generation package (which defines it and whose id-level
    `generate` the decode benchmarks use; VITA-1.5's speech decoder runs its own codec LM through it)."""
    builders = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        if any(isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "TokenLoop"
               for node in ast.walk(tree)):
            builders.add(module_name(path, PACKAGE))
    above = {b for b in builders if not _within(b, "vita.generation")} - {"vita.speech.vita15_tts"}
    assert above == {"vita.api"}, sorted(builders)
