"""Rebuild notebooks/NN_*.ipynb from their jupytext .py twins and store fresh outputs.

The .py (py:percent) file is the one to edit and review; this script turns it into the .ipynb, executes it
in place with papermill (no injected parameters, so the stored notebook keeps its plain `parameters` cell)
under the chosen profile, strips papermill's timing metadata so the stored outputs are what nbval checks, and drops
widget state, widget views and progress bars (``mixpoet_lib.pipeline.clean_notebook``), which must not be stored.
Usage: python scripts/refresh_notebooks.py [--profile tutorial] [NN_name.py ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jupytext
import nbformat
import papermill as pm

from mixpoet_lib.pipeline import clean_notebook

ROOT = Path(__file__).resolve().parents[1]


def refresh(py: Path, profile: str) -> None:
    nb = jupytext.read(py)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    ipynb = py.with_suffix(".ipynb")
    nbformat.write(nb, ipynb)
    os.environ["MIXPOET_PROFILE"] = profile
    os.environ["TQDM_DISABLE"] = "1"  # no progress bars in stored outputs
    pm.execute_notebook(str(ipynb), str(ipynb), kernel_name="python3", cwd=str(py.parent), progress_bar=False)
    nb = nbformat.read(ipynb, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nbformat.write(clean_notebook(nb), ipynb)
    print(f"refreshed {ipynb.relative_to(ROOT)} with profile {profile}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tutorial")
    parser.add_argument("notebooks", nargs="*")
    args = parser.parse_args()
    books = [ROOT / "notebooks" / n for n in args.notebooks] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    for py in books:
        refresh(py, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
