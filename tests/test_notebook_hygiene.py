"""What a committed notebook must not store: machine paths, widget state, frozen progress bars, stray return values.

Covers the source notebooks and the executed copies of published runs (``runs/<profile>/*.ipynb``). The pipeline
and ``scripts/refresh_notebooks.py`` drop widgets and progress bars themselves (``pipeline.clean_notebook``);
stray return values and printed paths have to be fixed in the notebook's code.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COMMITTED = SOURCES + sorted((REPO / "runs").glob("*/*.ipynb"))

MACHINE_PATH = re.compile(r"(/home/|/work/|/tmp/|/Users/|/root/|[A-Za-z]:\\\\)")
PROGRESS_BAR = re.compile(r"\d+%\||\b\d+/\d+ \[\d+:\d+")  # tqdm: " 40%|████  | 2/5 [00:01<00:01, ...]"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
BARE_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _texts(output: dict) -> list[str]:
    """Every text an output shows (stream text, text/plain, text/html, error traceback)."""
    if output.get("output_type") == "stream":
        return [output.get("text", "")]
    if output.get("output_type") == "error":
        return [*output.get("traceback", []), str(output.get("evalue", ""))]
    data = output.get("data", {})
    return [v if isinstance(v, str) else "".join(v) for k, v in data.items() if k.startswith("text/")]


def _problems(nb: nbformat.NotebookNode) -> list[str]:
    found = []
    if "widgets" in nb.metadata:
        found.append("widget state in the notebook metadata")
    for index, cell in enumerate(nb.cells):
        if MACHINE_PATH.search(cell.source):
            found.append(f"cell {index}: a machine path in the source")
        for out in cell.get("outputs", []):
            if WIDGET_VIEW in out.get("data", {}):
                found.append(f"cell {index}: a widget view (shows nothing without its kernel)")
            for text in _texts(out):
                if MACHINE_PATH.search(text):
                    found.append(f"cell {index}: a machine path in the output: {MACHINE_PATH.search(text).group(0)}")
                if PROGRESS_BAR.search(text):
                    found.append(f"cell {index}: a frozen progress bar: {text.strip()[:40]!r}")
            plain = out.get("data", {}).get("text/plain", "")
            if out.get("output_type") == "execute_result" and BARE_NUMBER.fullmatch(str(plain).strip()):
                found.append(f"cell {index}: a stray return value {plain!r} (assign it: `_ = ...`)")
    return found


def test_there_are_committed_notebooks():
    assert len(COMMITTED) >= 6


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_notebook_is_clean(path):
    problems = _problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.relative_to(REPO)}:\n" + "\n".join(problems)


def test_the_checks_catch_each_kind_of_problem():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("open('/home/me/x')")])
    nb.metadata["widgets"] = {}
    nb.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="written: /work/main/runs/tutorial/results.csv\n"),
        nbformat.v4.new_output("stream", name="stderr", text="evaluation:   0%|          | 0/18 [00:00<?, ?it/s]"),
        nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "a"}, "text/plain": "x"}),
        nbformat.v4.new_output("execute_result", data={"text/plain": "2018"}, execution_count=1),
    ]
    problems = "\n".join(_problems(nb))
    for expected in ("widget state", "machine path in the source", "/work/", "progress bar", "widget view", "2018"):
        assert expected in problems
    clean = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    clean.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.82 (n = 369)\n")]
    assert _problems(clean) == []


def _refresh_sources():
    spec = importlib.util.spec_from_file_location("refresh_sources", REPO / "scripts" / "refresh_sources.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_notebooks_show_the_library_code_as_it_is(path):
    """A stored show_source(...) output is the code that runs now (scripts/refresh_sources.py --write mends it).
    The executed copies of published runs keep the code they ran with, so only notebooks/ is checked."""
    stale = _refresh_sources().stale_cells(path)
    cells = [i for i, _ in stale]
    assert not stale, f"{path.name}: cells {cells} show old source; run scripts/refresh_sources.py --write"


def test_refresh_sources_finds_and_mends_a_stale_display(tmp_path):
    script = _refresh_sources()
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("from mixpoet_lib.models import losses"),
            nbformat.v4.new_code_cell("show_source(losses.mode_seeking_loss)"),
        ]
    )
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": "```python\nold\n```"})]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert [i for i, _ in script.stale_cells(path)] == [1]
    assert script.main([str(path)]) == 1 and script.main(["--write", str(path)]) == 0
    shown = "".join(json.loads(path.read_text())["cells"][1]["outputs"][0]["data"]["text/markdown"])
    assert shown.startswith("```python\ndef mode_seeking_loss(") and script.stale_cells(path) == []
