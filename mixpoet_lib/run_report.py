"""The report of a ``mixpoet reproduce`` run: ``report.md`` and its HTML rendering (all text escaped).

It lists the environment, each notebook's status and wall time, the data, the results table, the figures and
sample poems, and — for a user's run — the key metrics and notebook times side by side with the published
reference run of the same profile (``runs/<profile>/``), when that reference has results.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy
import torch

from mixpoet_lib._util import write_text_atomic
from mixpoet_lib.config import Profile, get_profile
from mixpoet_lib.evaluate.report import markdown_paper, markdown_result_groups
from mixpoet_lib.evaluate.systems import SYSTEM_TITLES, SYSTEMS
from mixpoet_lib.runtime import processor_summary

__all__ = [
    "write_report",
    "rewrite_report",
    "phase_training_times",
    "training_section",
    "results_markdown",
    "comparison_markdown",
    "environment",
    "failed_copy",
]

# The metrics the comparison with the reference run shows (all of them are in results.csv).
KEY_METRICS = ("fail_rate", "form_ok", "inter_jaccard", "intra_jaccard", "distinct_2", "lm_ppl", "joint_acc")


def failed_copy(target: Path) -> Path:
    """Where the partial copy of a notebook that failed (or was interrupted) is kept: ``NN_name.failed.ipynb``."""
    return target.with_name(f"{target.stem}.failed{target.suffix}")


def environment() -> dict[str, str]:
    """Return versions and device information for the report."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": processor_summary(),
        "device": device,
        "command": " ".join(sys.argv[:1] + sys.argv[1:]),
    }


def _read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (a report never fails on it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_report(
    profile: Profile,
    out: Path,
    state: dict[str, Any],
    books: list[Path],
    overrides: str = "",
    figures: Path | None = None,
    reference: Path | None = None,
) -> Path:
    """Write ``report.md`` and ``report.html`` summarising the run folder ``out``.

    ``figures``: the folder the run's figures went to; ``reference``: the published run folder to compare
    with (left out when it is ``out`` itself or holds no ``results.json``).
    """
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
    same = reference is not None and reference.resolve() == out.resolve()
    ref_state = None if reference is None or same else _read_json(reference / "state.json")
    lines += _notebooks_section(state, books, out, ref_state) + training_section(out) + _data_section(out)
    results = _read_json(out / "results.json")
    lines += ["## Results", ""]
    if results is not None:
        lines += [*results_markdown(results), ""]
    else:
        lines += ["No results table yet (the evaluation notebook has not produced `results.csv`).", ""]
    reference_results = None if reference is None or same else _read_json(reference / "results.json")
    if reference is not None and reference_results is not None:
        lines += _comparison_section(results, reference_results, reference, out)
    lines += _figures_section(figures, out) + _samples_section(out)
    text = "\n".join(lines)
    report = write_text_atomic(out / "report.md", text)
    write_text_atomic(out / "report.html", render_html(text))
    return report


def rewrite_report(run: Path, profile_name: str) -> bool:
    """Write ``report.md`` again for a ``mixpoet reproduce`` run folder (one with a ``state.json``) of the profile
    ``profile_name`` whose results were rewritten without re-running it (re-scored, or systems replaced); False for
    any other folder (nothing is resolved or written then)."""
    state = _read_json(run / "state.json")
    if not isinstance(state, dict):
        return False
    write_report(get_profile(profile_name), run, state, sorted(run.glob("0*.ipynb")))
    return True


def render_html(markdown: str) -> str:
    """The report as a standalone HTML page; any HTML inside the Markdown is shown as text, never run."""
    import mistune  # optional dependency (notebooks extra), like papermill: only the pipeline writes reports

    body = mistune.create_markdown(escape=True, plugins=["table"])(markdown)
    return f"<!doctype html><meta charset='utf-8'><title>report</title>{body}"


def _notebooks_section(
    state: dict[str, Any], books: list[Path], out: Path, ref_state: dict[str, Any] | None
) -> list[str]:
    """Markdown table of every notebook's status and wall time (and the reference run's, when given)."""
    ref = ref_state if isinstance(ref_state, dict) else None
    head = "| notebook | status | wall time (s) | finished |" + (" reference run (s) |" if ref else "")
    lines = ["", "## Notebooks", "", head, "|---|---|---:|---|" + ("---:|" if ref else "")]
    total = 0.0
    for nb in books:
        s = state.get(nb.name, {})
        total += float(s.get("seconds", 0.0))
        status = s.get("status", "not run")
        if status != "ok" and failed_copy(out / nb.name).exists():
            status += f" (partial copy: [{failed_copy(out / nb.name).name}]({failed_copy(out / nb.name).name}))"
        if s.get("earlier_attempts"):
            spent = sum(float(a.get("seconds", 0.0)) for a in s["earlier_attempts"])
            status += f" (after {len(s['earlier_attempts'])} unfinished attempt(s): {spent:.0f} s more)"
        row = f"| [{nb.name}]({nb.name}) | {status} | {s.get('seconds', '')} | {s.get('finished', '')} |"
        lines.append(row + (f" {ref.get(nb.name, {}).get('seconds', '')} |" if ref else ""))
    ref_total = f" {sum(float(r.get('seconds', 0.0)) for r in ref.values()):.0f} |" if ref else ""
    return [*lines, f"| **total** | | {total:.0f} | |{ref_total}", ""]


def phase_training_times(out: Path) -> tuple[dict[str, list[float]], set[str]]:
    """{phase: [seconds, last step, calls]} from ``<out>/logs/timing.csv``, summed over the calls since the phase
    last started from step 0 (a retrain replaces what its earlier calls did), and the threads the calls used.
    A malformed row is named and skipped; no file gives nothing."""
    path = out / "logs" / "timing.csv"
    totals: dict[str, list[float]] = {}
    threads: dict[str, set[str]] = {}
    if not path.is_file():
        return totals, set()
    with path.open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            try:
                sec, start, to_step = float(row["seconds"]), int(row["from_step"]), int(row["to_step"])
            except (KeyError, TypeError, ValueError):
                print(f"{path}:{n}: unreadable timing row, left out: {row}", file=sys.stderr)
                continue
            if start == 0:  # a fresh start (a retrain) replaces what the phase's earlier calls did
                totals.pop(row["phase"], None)
                threads.pop(row["phase"], None)
            t = totals.setdefault(row["phase"], [0.0, 0.0, 0.0])
            t[0], t[1], t[2] = t[0] + sec, max(t[1], to_step), t[2] + 1
            threads.setdefault(row["phase"], set()).add(str(row.get("threads", "?")))
    return totals, set().union(*threads.values())


def training_section(out: Path) -> list[str]:
    """Markdown table of the training time per phase (:func:`phase_training_times`).

    The notebooks that train (02–04) only load a phase whose checkpoint is already finished, so their wall
    times above leave out training done earlier (by ``mixpoet train`` or an interrupted run); this says where
    that time went.
    """
    totals, _ = phase_training_times(out)
    if not totals:
        return []
    lines = [
        "## Training",
        "",
        "Training time per phase (from `logs/timing.csv`, summed over the calls since the phase last started from",
        "step 0). Notebooks 02–04 load a phase that is already trained, so their times above do not include this.",
        "",
        "| phase | steps | calls | seconds |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {k} | {int(v[1])} | {int(v[2])} | {v[0]:.0f} |" for k, v in totals.items()]
    return [*lines, f"| **total** | | | {sum(v[0] for v in totals.values()):.0f} |", ""]


def _data_section(out: Path) -> list[str]:
    """Poems and instances per split, from the ``data_summary.json`` notebook 01 leaves in the run folder."""
    d = _read_json(out / "data_summary.json")
    if not isinstance(d, dict):
        return []
    lines = ["## Data", "", "| split | poems | instances |", "|---|---:|---:|"]
    lines += [f"| {s} | {n} | {d['instances_per_split'].get(s, '')} |" for s, n in d["poems_per_split"].items()]
    return [
        *lines,
        "",
        f"Vocabulary: {d['vocab_size']} ids. Held-out human poems passing the tone-pattern and rhyme "
        f"check: {d.get('form_pass_rate_unl_test', float('nan')):.1%}.",
        "",
    ]


def _figures_section(figures: Path | None, out: Path) -> list[str]:
    """Links to the run's figures, relative to the report."""
    figs = sorted(figures.glob("*.png")) if figures is not None and figures.is_dir() else []
    if not figs:
        return []
    return ["## Figures", ""] + [f"![{f.stem}]({Path(os.path.relpath(f, out)).as_posix()})" for f in figs] + [""]


def _samples_section(out: Path) -> list[str]:
    """The sample poems the last notebook leaves in ``samples.json``, one line of the poem per report line."""
    samples = _read_json(out / "samples.json")
    if not isinstance(samples, list):
        return []
    lines = ["## Sample poems", ""]
    for item in samples:
        lines += [f"**{item.get('title', '')}**", "", "\\\n".join(item["content"].split("|")), ""]
    return lines


def _mean(results: dict[str, Any] | None, system: str, metric: str) -> float:
    """The mean over seeds of one metric of one system (all lengths), NaN when absent."""
    for row in (results or {}).get("summary", []):
        if row.get("system") == system and row.get("metric") == metric and row.get("length") == "all":
            value = row.get("mean")
            return float(value) if isinstance(value, (int, float)) else math.nan
    return math.nan


def comparison_markdown(results: dict[str, Any] | None, reference: dict[str, Any]) -> list[str]:
    """A table of :data:`KEY_METRICS` for every system, this run next to the reference (means over seeds)."""
    titles = {k: v.get("title", k) for k, v in reference.get("metrics", {}).items()}
    lines = ["| system | metric | this run | reference | difference |", "|---|---|---:|---:|---:|"]
    for system in SYSTEMS:
        for metric in KEY_METRICS:
            ours, ref = _mean(results, system, metric), _mean(reference, system, metric)
            if math.isnan(ref) and math.isnan(ours):
                continue
            diff = "—" if math.isnan(ours) or math.isnan(ref) else f"{ours - ref:+.3f}"
            show = [("—" if math.isnan(v) else f"{v:.3f}") for v in (ours, ref)]
            lines.append(
                f"| {SYSTEM_TITLES.get(system, system)} | {titles.get(metric, metric)} | {show[0]} | "
                f"{show[1]} | {diff} |"
            )
    return lines


def _comparison_section(
    results: dict[str, Any] | None, reference_results: dict[str, Any], reference: Path, out: Path
) -> list[str]:
    """The comparison with the published reference run, introduced by where it lives."""
    where = Path(os.path.relpath(reference, out)).as_posix()
    seeds = reference_results.get("meta", {}).get("seeds", "?")
    note = "" if results is not None else " (this run has no results yet: only the reference column is filled)"
    return [
        "## Compared with the published reference run",
        "",
        f"The reference is the committed run in `{where}` (means over its seeds {seeds}); this run's "
        f"numbers should fall within a few seed standard deviations of it{note}.",
        "",
        *comparison_markdown(results, reference_results),
        "",
    ]


def results_markdown(results: dict[str, Any]) -> list[str]:
    """The results section (table, judge ceiling, LM reference, claims, generation time) from ``results.json``."""
    meta = results.get("meta", {})
    lines = [
        f"{meta.get('n_keywords', '?')} test keywords (half 5-, half 7-character), generation seeds "
        f"{meta.get('seeds', '?')}, beam {meta.get('beam_size', '?')}; mean ± std over the seeds "
        "(GT and Basic do not depend on the seed). ↓ lower is better, ↑ higher is better; `docs/metrics.md` "
        "defines every column.",
        "",
        *markdown_result_groups(results),
    ]
    lines += _counts_lines(results)
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
            f"Character LM on the GT poems: log-prob per character {ref.get('mean_lms', float('nan')):.3f} (the "
            f"`lms` column), perplexity "
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
        lines += [
            "### The paper's claims and the reproduction targets",
            "",
            "| claim | verdict | evidence |",
            "|---|---|---|",
        ]
        lines += [f"| {c['claim']} | {c['verdict']} | {c['evidence']} |" for c in claims]
    paper = markdown_paper(results)
    if paper:
        lines += ["", "### Side by side with the paper", "", *paper]
    return lines


def _counts_lines(results: dict[str, Any]) -> list[str]:
    """How many poems stand behind each diversity / control number, per system."""
    per: dict[str, dict[str, Any]] = {}
    for row in results.get("summary", []):
        if row.get("length") == "all" and row.get("metric") in ("inter_jaccard", "intra_jaccard", "joint_acc"):
            per.setdefault(row["system"], {})[row["metric"]] = row.get("n_poems")
    if not per:
        return []
    parts = []
    for system, c in per.items():
        bits = [
            f"{c[m]} {label}"
            for m, label in (("inter_jaccard", "inter"), ("intra_jaccard", "intra"), ("joint_acc", "mixture"))
            if c.get(m)
        ]
        parts.append(f"{SYSTEM_TITLES.get(system, system)} {' / '.join(bits)}")
    return ["Poems behind each number, per seed: " + "; ".join(parts) + ".", ""]
