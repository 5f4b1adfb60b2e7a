"""The reproduction runner: every numbered notebook in order with papermill, resumable, then a report.

``mixpoet reproduce`` executes ``notebooks/NN_*.ipynb`` into ``runs/<profile>/`` (never over the source
notebooks), injecting ``PROFILE``, ``RUN_DIR`` (relative to the notebooks' folder, so no machine path is stored),
``OVERRIDES`` (settings changed with ``--set``, in the text form of :func:`mixpoet_lib.overrides.parse_overrides`)
and ``TRAIN=True``: a reproduction trains from scratch, while a student's "run all" loads the published weights
(``MIXPOET_PUBLISHED=1`` makes the pipeline load them too). The executed copies are cleaned of widget state and
frozen progress bars (:func:`clean_notebook`). A notebook is skipped when its *inputs* are
unchanged since its last successful run: its own file, the library code, the profile with its overrides,
and the outputs of the notebooks before it (chained through their input hashes). The first failure stops the
run and names the notebook and the cell; the partially executed copy is kept for inspection.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import torch

from mixpoet_lib._util import default_device, write_json_atomic
from mixpoet_lib.checkpoints import use_published_default
from mixpoet_lib.config import Profile, get_profile
from mixpoet_lib.evaluate.report import markdown_results
from mixpoet_lib.evaluate.systems import SYSTEM_TITLES
from mixpoet_lib.overrides import run_name
from mixpoet_lib.paths import figures_dir, repo_root, runs_dir

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar, e.g. " 40%|████      | 2/5"


class PipelineError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


@dataclass
class NotebookRun:
    """What happened to one notebook in a pipeline run."""

    name: str
    status: str  # "ran", "skipped" (inputs unchanged), "failed"
    seconds: float
    input_hash: str


def default_profile_name() -> str:
    """Return 'full' when a CUDA device is available, else 'tutorial'."""
    return "full" if default_device().type == "cuda" else "tutorial"


def notebook_paths(folder: Path | None = None) -> list[Path]:
    """Return the numbered notebooks (``NN_*.ipynb``) in execution order."""
    folder = folder or repo_root() / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def library_hash() -> str:
    """Return a hash of the library's source files (a change re-runs every notebook)."""
    root = repo_root() / "mixpoet_lib"
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):  # every sub-package too: an edit anywhere re-runs the notebooks
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def input_hash(notebook: Path, profile: Profile, upstream: str, lib: str, overrides: str = "") -> str:
    """Return the hash of everything a notebook's outputs depend on (``overrides`` counts only when given, so
    runs without overrides keep their hashes)."""
    h = hashlib.sha256()
    for part in (notebook.read_bytes(), profile.digest().encode(), upstream.encode(), lib.encode()):
        h.update(part)
    if overrides:
        h.update(b"overrides\0" + overrides.encode())
    return h.hexdigest()[:16]


def notebook_parameters(notebook: Path) -> set[str]:
    """The names assigned in a notebook's cell tagged ``parameters`` (what papermill can inject)."""
    import nbformat  # optional dependency (notebooks extra); only the pipeline reads notebooks

    nb = nbformat.read(notebook, as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return set()
    return set(re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=", cell.source, flags=re.MULTILINE))


def _relative_to(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (with ``..`` where needed), or absolute when no relative path exists."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return str(path)


def notebook_inputs(notebook: Path, profile: Profile, out: Path, overrides: str) -> dict[str, Any]:
    """The parameters to inject: ``PROFILE`` and ``RUN_DIR`` always, ``OVERRIDES`` and ``TRAIN`` where the notebook
    declares them.

    ``RUN_DIR`` is given relative to the notebook's folder (papermill runs there). ``TRAIN`` is True unless
    $MIXPOET_PUBLISHED asks for the published weights. A notebook without an ``OVERRIDES`` parameter runs as before
    when there are no overrides; asked to apply some, it raises :class:`PipelineError` instead of ignoring them.
    """
    params: dict[str, Any] = {"PROFILE": profile.name, "RUN_DIR": _relative_to(out, notebook.parent)}
    declared = notebook_parameters(notebook)
    if "TRAIN" in declared:
        params["TRAIN"] = not use_published_default()
    if "OVERRIDES" in declared:
        params["OVERRIDES"] = overrides
    elif overrides:
        raise PipelineError(
            f"{notebook.name} has no OVERRIDES parameter, so it cannot apply the settings "
            f"{overrides!r}; run it without --set or add OVERRIDES to its parameters cell"
        )
    return params


def clean_notebook(nb: Any) -> Any:
    """Drop what must not be stored in a notebook (in place; returns it): widget state in the metadata, widget
    views among the outputs (a progress bar or an ``interact`` form that shows nothing once the kernel is gone) and
    progress-bar text printed to stderr."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        cell.outputs = [
            out
            for out in cell.outputs
            if WIDGET_VIEW not in out.get("data", {})
            and not (out.get("output_type") == "stream" and out.get("name") == "stderr" and PROGRESS.search(out.text))
        ]
    return nb


def clean_notebook_file(path: Path) -> None:
    """:func:`clean_notebook` on a notebook file, rewritten only when something was dropped."""
    import nbformat  # optional dependency (notebooks extra); only the pipeline reads notebooks

    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    if nbformat.writes(clean_notebook(nb)) != before:
        nbformat.write(nb, path)


def _failing_cell(nb_path: Path) -> str:
    import nbformat  # optional dependency (notebooks extra); only the pipeline reads notebooks

    nb = nbformat.read(nb_path, as_version=4)
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = next((ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")), "")
                return f"cell {index} ({first[:60]!r}): {out.get('ename')}: {out.get('evalue')}"
    return "unknown cell"


def run_pipeline(
    profile_name: str | None = None,
    force: bool = False,
    out_dir: Path | None = None,
    notebooks: list[Path] | None = None,
    log: Callable[[str], Any] = print,
    progress: bool = True,
    overrides: str = "",
) -> list[NotebookRun]:
    """Execute the notebooks in order (skipping unchanged ones unless ``force``) and write the report.

    ``overrides`` (e.g. ``"model.latent_size=64"``) changes settings of the profile; it is checked here, passed
    to every notebook as ``OVERRIDES`` and is part of each notebook's input hash.
    """
    profile = get_profile(profile_name or default_profile_name(), overrides)  # bad overrides fail before any run
    out = Path(out_dir) if out_dir else runs_dir(run_name(profile.name, overrides))  # never the profile's own run
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    books = notebooks if notebooks is not None else notebook_paths()
    if not books:
        raise PipelineError("no notebooks found to run")
    lib, upstream, runs = library_hash(), "", []
    for i, nb in enumerate(books, start=1):
        key = input_hash(nb, profile, upstream, lib, overrides)
        previous = state.get(nb.name, {})
        if (
            not force
            and previous.get("input_hash") == key
            and previous.get("status") == "ok"
            and (out / nb.name).exists()
        ):
            log(f"[{i}/{len(books)}] {nb.name}: inputs unchanged, skipped")
            runs.append(NotebookRun(nb.name, "skipped", previous.get("seconds", 0.0), key))
        else:
            log(f"[{i}/{len(books)}] {nb.name}: running (profile {profile.name})")
            seconds = _execute(nb, out, notebook_inputs(nb, profile, out, overrides), key, state, progress)
            runs.append(NotebookRun(nb.name, "ran", seconds, key))
            log(f"[{i}/{len(books)}] {nb.name}: done in {seconds:.0f} s")
        upstream = key
    write_report(profile, out, state, books, overrides)
    return runs


def _execute(nb: Path, out: Path, params: dict[str, Any], key: str, state: dict[str, Any], progress: bool) -> float:
    """Run one notebook into ``out`` with papermill, record the outcome in ``state.json``; return its seconds."""
    import papermill as pm  # optional dependency (notebooks extra), heavy; only ``reproduce`` runs notebooks

    target, state_path = out / nb.name, out / "state.json"
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(nb),
            str(target),
            parameters=params,
            kernel_name="python3",
            cwd=str(nb.parent),
            progress_bar=progress,
            log_output=False,
        )
    except pm.PapermillExecutionError:
        if target.exists():
            clean_notebook_file(target)
        state[nb.name] = {"input_hash": key, "status": "failed", "seconds": time.perf_counter() - t0}
        write_json_atomic(state_path, state, sort_keys=False)
        raise PipelineError(f"{nb.name} failed at {_failing_cell(target)}; partial notebook kept at {target}") from None
    seconds = time.perf_counter() - t0
    clean_notebook_file(target)
    state[nb.name] = {
        "input_hash": key,
        "status": "ok",
        "seconds": round(seconds, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json_atomic(state_path, state, sort_keys=False)
    return seconds


def environment() -> dict[str, str]:
    """Return versions and device information for the report."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "device": device,
        "command": " ".join(sys.argv[:1] + sys.argv[1:]),
    }


def write_report(profile: Profile, out: Path, state: dict[str, Any], books: list[Path], overrides: str = "") -> Path:
    """Write ``report.md`` and ``report.html`` summarising the run folder."""
    lines = [
        f"# MixPoet-kit run report — profile `{profile.name}`",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}; seed {profile.seed}; profile digest `{profile.digest()}`.",
        "",
    ]
    if overrides:
        lines += [f"Settings changed from the profile: `{overrides}`.", ""]
    lines += ["## Environment", "", "| item | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in environment().items()]
    lines += _notebooks_section(state, books) + _data_section(out)
    results = out / "results.json"
    if results.exists():
        lines += ["## Results", "", *results_markdown(json.loads(results.read_text(encoding="utf-8"))), ""]
    else:
        lines += [
            "## Results",
            "",
            "No results table yet (the evaluation notebook has not produced `results.csv`).",
            "",
        ]
    lines += _figures_section(profile, out) + _samples_section(out)
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    import mistune  # optional dependency (notebooks extra), like papermill: only the pipeline writes reports

    (out / "report.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>report</title>" + str(mistune.html("\n".join(lines))),
        encoding="utf-8",
    )
    return report


def _notebooks_section(state: dict[str, Any], books: list[Path]) -> list[str]:
    """Markdown table of every notebook's status and wall time."""
    lines = ["", "## Notebooks", "", "| notebook | status | wall time (s) | finished |", "|---|---|---:|---|"]
    total = 0.0
    for nb in books:
        s = state.get(nb.name, {})
        total += float(s.get("seconds", 0.0))
        lines.append(
            f"| [{nb.name}]({nb.name}) | {s.get('status', 'not run')} | {s.get('seconds', '')} "
            f"| {s.get('finished', '')} |"
        )
    return [*lines, f"| **total** | | {total:.0f} | |", ""]


def _data_section(out: Path) -> list[str]:
    """Poems and instances per split, from the ``data_summary.json`` notebook 01 leaves in the run folder."""
    data_summary = out / "data_summary.json"
    if not data_summary.exists():
        return []
    d = json.loads(data_summary.read_text(encoding="utf-8"))
    lines = ["## Data", "", "| split | poems | instances |", "|---|---:|---:|"]
    lines += [f"| {s} | {n} | {d['instances_per_split'].get(s, '')} |" for s, n in d["poems_per_split"].items()]
    return [
        *lines,
        "",
        f"Vocabulary: {d['vocab_size']} ids. Held-out human poems passing the tone-pattern and rhyme "
        f"check: {d.get('form_pass_rate_unl_test', float('nan')):.1%}.",
        "",
    ]


def _figures_section(profile: Profile, out: Path) -> list[str]:
    """Links to the profile's figures: relative from the profile's own run folder, absolute elsewhere."""
    figs = sorted(figures_dir(profile.name).glob("*.png"))
    if not figs:
        return []
    up = Path("../.." if profile.name == "tutorial" else "../../..")
    own_folder = out.resolve() == runs_dir(profile.name).resolve()
    return (
        ["## Figures", ""]
        + [f"![{f.stem}]({up / f.relative_to(repo_root())})" if own_folder else f"![{f.stem}]({f})" for f in figs]
        + [""]
    )


def _samples_section(out: Path) -> list[str]:
    """The sample poems the last notebook leaves in ``samples.json``."""
    samples = out / "samples.json"
    if not samples.exists():
        return []
    lines = ["## Sample poems", ""]
    for item in json.loads(samples.read_text(encoding="utf-8")):
        lines += [f"**{item.get('title', '')}**", "", "<br>".join(item["content"].split("|")), ""]
    return lines


def results_markdown(results: dict[str, Any]) -> list[str]:
    """The results section (table, judge ceiling, LM reference, claims, generation time) from ``results.json``."""
    meta = results.get("meta", {})
    lines = [
        f"{meta.get('n_keywords', '?')} test keywords (half 5-, half 7-character), generation seeds "
        f"{meta.get('seeds', '?')}, beam {meta.get('beam_size', '?')}; mean ± std over the seeds "
        "(GT and Basic do not depend on the seed). ↓ lower is better, ↑ higher is better.",
        "",
        markdown_results(results),
        "",
    ]
    counts = []
    for row in results.get("summary", []):
        if row.get("length") == "all" and row.get("metric") in ("inter_jaccard", "intra_jaccard", "joint_acc"):
            counts.append(row)
    if counts:
        per: dict[str, dict[str, Any]] = {}
        for row in counts:
            per.setdefault(row["system"], {})[row["metric"]] = row.get("n_poems")
        parts = []
        for system, c in per.items():
            bits = [
                f"{c[m]} {label}"
                for m, label in (("inter_jaccard", "inter"), ("intra_jaccard", "intra"), ("joint_acc", "mixture"))
                if c.get(m)
            ]
            parts.append(f"{SYSTEM_TITLES.get(system, system)} {' / '.join(bits)}")
        lines += ["Poems behind each number, per seed: " + "; ".join(parts) + ".", ""]
    ceiling = results.get("judge_ceiling", {})
    if ceiling:
        lines += [
            "Judge classifiers on the CQCF test split (the ceiling for factor control): "
            + "; ".join(
                f"{f} accuracy {c.get('accuracy', float('nan')):.3f}, macro-F1 "
                f"{c.get('macro_f1', float('nan')):.3f} (n = {c.get('n', '?')})"
                for f, c in ceiling.items()
            )
            + ".",
            "",
        ]
    ref = results.get("lm_reference_gt", {})
    if ref:
        lines += [
            f"Character LM on the GT poems: LMS {ref.get('mean_lms', float('nan')):.3f}, perplexity "
            f"{ref.get('corpus_ppl', float('nan')):.1f}.",
            "",
        ]
    spp = results.get("seconds_per_poem", {})
    if spp:
        lines += [
            "Generation time per poem (s, CPU): "
            + ", ".join(f"{SYSTEM_TITLES.get(k, k)} {v:.3f}" for k, v in spp.items())
            + ".",
            "",
        ]
    claims = results.get("claims", [])
    if claims:
        lines += ["### The paper's claims", "", "| claim | verdict | evidence |", "|---|---|---|"]
        lines += [f"| {c['claim']} | {c['verdict']} | {c['evidence']} |" for c in claims]
    return lines
