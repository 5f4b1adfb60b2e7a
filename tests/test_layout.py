"""The library's shape: chapters as layers, imports only downwards, no cycles, imports at the top, modules short."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "mixpoet_lib"

# A module may import from its own package and from layers to its left (README "Layout").
LAYERS = (
    ("_util", "paths", "runtime"),
    ("config", "overrides", "signatures"),
    ("data",),
    ("metrics", "relevance"),
    ("models",),
    ("checkpoints", "published"),
    ("train",),
    ("generate",),
    ("evaluate",),
    ("plots", "paper_figures", "notebook", "pipeline", "run_report"),
    ("cli",),
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _kit_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported kit module or package, line, at module top level) for every import of mixpoet_lib."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks count as the top of the module
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            top |= {id(n) for n in node.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mixpoet_lib"):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [(n, node.lineno, id(node) in top) for n in [node.module, *names]]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in top) for a in node.names if a.name.startswith("mixpoet_lib")]
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {n for n, _, _ in _kit_imports(p) if n in mods and n != m} for m, p in mods.items()}


def test_every_module_has_a_layer():
    assert {_layer(m) for m in _modules() if m != "mixpoet_lib"} <= set(RANK)


def test_imports_go_down_the_layers_and_sit_at_the_top():
    mods = _modules()
    problems = []
    for mod, path in mods.items():
        for target, line, at_top in _kit_imports(path):
            if target not in mods or mod == "mixpoet_lib":
                continue
            src, dst = _layer(mod), _layer(target)
            if dst and RANK[dst] > RANK[src]:
                problems.append(f"{path.relative_to(LIB.parent)}:{line} imports {target} (a higher layer)")
            if not at_top:
                problems.append(f"{path.relative_to(LIB.parent)}:{line} imports {target} inside a function")
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif not state.get(nxt):
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for mod in sorted(graph):
        if not state.get(mod):
            visit(mod, [mod])
    assert not cycles, "; ".join(cycles)


@pytest.mark.parametrize("path", sorted(LIB.rglob("*.py")), ids=lambda p: str(p.relative_to(LIB)))
def test_modules_and_functions_stay_short(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name}: {len(text.splitlines())} lines"
    long = [
        f"{n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for n in ast.walk(ast.parse(text))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: {', '.join(long)}"
