"""Notebook hygiene: .py/.ipynb pairs in sync, a parameters cell, outputs storable by nbval."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS and all(p.with_suffix(".py").exists() for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_pair_in_sync(path):
    nb, py = jupytext.read(path), jupytext.read(path.with_suffix(".py"))

    def strip(book):
        return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in book.cells]

    assert strip(nb) == strip(py), f"{path.name} differs from its .py twin: run `make refresh-notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_and_stored_outputs(path):
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "PROFILE: str = None" in params[0].source
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "refresh the notebook: unrun cells"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert nb.metadata["kernelspec"]["name"] == "python3"
