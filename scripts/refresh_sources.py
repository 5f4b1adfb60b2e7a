"""Find (and with --write, mend) committed notebook cells whose stored `show_source(...)` output is stale.

A notebook shows the library's code with ``show_source(f, g, …)`` — the code that runs, not a copy. Its stored
output is the source as it was when the notebook last ran, so a later change to ``f`` leaves the committed
notebook showing old code. This script recomputes each such cell's Markdown from the library as it is now
(``notebook.source_markdown``; the names resolved with the notebook's own import lines), lists the cells that
differ and, with ``--write``, replaces just those outputs — no kernel, no training, nothing else touched.

    python scripts/refresh_sources.py notebooks/*.ipynb            # list stale cells, exit 1 if any
    python scripts/refresh_sources.py --write notebooks/04_*.ipynb  # mend them
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from mixpoet_lib.notebook import source_markdown

CALL = "show_source"


def _namespace(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Execute the notebook's top-level import statements (only those) into a fresh namespace."""
    ns: dict[str, Any] = {}
    for cell in (c for c in cells if c["cell_type"] == "code"):
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:  # IPython magics: such a cell holds no imports of the kit
            continue
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        if imports:
            exec(compile(ast.Module(body=imports, type_ignores=[]), "<imports>", "exec"), ns)
    return ns


def _shown(source: str, ns: dict[str, Any]) -> list[str]:
    """The Markdown of each top-level ``show_source(...)`` call of a cell, in order."""
    out = []
    for node in ast.parse(source).body:
        call = node.value if isinstance(node, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == CALL:
            objects = [eval(compile(ast.Expression(arg), "<arg>", "eval"), ns) for arg in call.args]
            out.append(source_markdown(*objects))
    return out


def stale_cells(path: Path) -> list[tuple[int, list[str]]]:
    """[(cell index, fresh Markdown of each call)] for the cells whose stored source display differs."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    ns = _namespace(cells)
    stale = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or CALL not in "".join(cell["source"]):
            continue
        fresh = _shown("".join(cell["source"]), ns)
        stored = ["".join(o["data"]["text/markdown"]) for o in cell["outputs"] if "text/markdown" in o.get("data", {})]
        if fresh and stored[: len(fresh)] != fresh:
            stale.append((i, fresh))
    return stale


def mend(path: Path, stale: list[tuple[int, list[str]]]) -> None:
    """Replace the Markdown outputs of the ``stale`` cells in place (other outputs and cells untouched)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, fresh in stale:
        shown = iter(fresh)
        for out in nb["cells"][i]["outputs"]:
            if "text/markdown" in out.get("data", {}):
                out["data"]["text/markdown"] = next(shown, "").splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--write", action="store_true", help="replace the stale outputs")
    args = ap.parse_args(argv)
    found = 0
    for path in args.notebooks:
        stale = stale_cells(path)
        found += len(stale)
        for i, _ in stale:
            print(f"{path}: cell {i} shows old source{' (mended)' if args.write else ''}")
        if stale and args.write:
            mend(path, stale)
    return 1 if found and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
