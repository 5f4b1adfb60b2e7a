"""Results tables and files of an evaluation: the mean ± std table, ``results.csv``, ``results.json``, Markdown.

``results.json`` is what the run report and the README read back (:func:`load_results`); its keys keep the
order in which they are written (judge factors, systems), which the Markdown report follows. Its ``paper``
entry holds the side-by-side with the paper's tables (:mod:`mixpoet_lib.evaluate.paper`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixpoet_lib._util import write_text_atomic
from mixpoet_lib.evaluate import paper
from mixpoet_lib.evaluate.claims import claims
from mixpoet_lib.evaluate.evaluation import EvaluationResult
from mixpoet_lib.evaluate.scoring import METRIC_GROUPS, METRICS
from mixpoet_lib.evaluate.systems import DETERMINISTIC, SYSTEM_TITLES, SYSTEMS, load_stored, poems_path

__all__ = [
    "results_table",
    "paper_section",
    "write_results",
    "load_evaluation",
    "load_results",
    "markdown_results",
    "markdown_result_groups",
    "markdown_paper",
]

# what results.json keeps of a judge's test report
CEILING_FIELDS = ("n", "accuracy", "macro_f1", "per_class_f1", "confusion")


def results_table(summary: pd.DataFrame, metrics: Sequence[str] | None = None, digits: int = 3) -> pd.DataFrame:
    """Wide table: one row per system (paper order), one 'mean ± std' column per metric (— where undefined)."""
    metrics = list(metrics or METRICS)
    table = pd.DataFrame(index=[SYSTEM_TITLES[s] for s in SYSTEMS if s in set(summary["system"])])
    for m in metrics:
        col = {}
        for _, r in summary[summary["metric"] == m].iterrows():
            col[SYSTEM_TITLES[r["system"]]] = (
                "—" if not np.isfinite(r["mean"]) else f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}"
            )
        table[METRICS[m][0]] = pd.Series(col)
    return table.fillna("—")


def _long_summary(result: EvaluationResult) -> pd.DataFrame:
    """The summaries of every length ('all', '5', '7') in one table with a ``length`` column."""
    parts = []
    for length in ("all", "5", "7"):
        s = result.summary(length)
        s.insert(1, "length", length)
        parts.append(s)
    return pd.concat(parts, ignore_index=True)


def paper_section(summary: pd.DataFrame, n_keywords: int | None = None) -> dict[str, Any]:
    """The side-by-side with the paper as JSON-able data: source, table, key ratios, what is not reproduced."""
    return {
        "source": paper.SOURCE,
        "side_by_side": json.loads(paper.side_by_side(summary).to_json(orient="records")),
        "key_ratios": json.loads(paper.key_ratios(summary).to_json(orient="records")),
        "not_reproduced": paper.not_reproduced(sorted(set(summary["system"])), n_keywords),
    }


def write_results(result: EvaluationResult, run_dir: str | Path) -> dict[str, Path]:
    """Write ``results.csv`` (long summary, every length), ``results.json`` (with metadata) and the raw scores."""
    run_dir = Path(run_dir)
    summary = _long_summary(result)
    paths = {
        "csv": run_dir / "results.csv",
        "json": run_dir / "results.json",
        "scores": run_dir / "eval" / "scores.csv",
    }
    write_text_atomic(paths["csv"], summary.to_csv(index=False))
    write_text_atomic(paths["scores"], result.scores.to_csv(index=False))
    ceiling = {f: {k: v for k, v in c.items() if k in CEILING_FIELDS} for f, c in result.judge_ceiling.items()}
    obj = {
        "meta": result.meta,
        "metrics": {k: {"title": t, "direction": d} for k, (t, d) in METRICS.items()},
        "systems": SYSTEM_TITLES,
        "summary": json.loads(summary.to_json(orient="records")),
        "judge_ceiling": ceiling,
        "lm_reference_gt": result.lm_reference,
        "seconds_per_poem": result.seconds_per_poem().to_dict(),
        "relaxations": json.loads(result.relaxations().to_json(orient="index")),
        "claims": json.loads(claims(result.summary(), ceiling=ceiling).to_json(orient="records")),
        "paper": paper_section(result.summary(), result.meta.get("n_keywords")),
    }
    write_text_atomic(paths["json"], json.dumps(obj, ensure_ascii=False, indent=1))  # keys in written order
    return paths


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """Read ``results.json`` of a run (raise FileNotFoundError naming the path if there is none)."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"no evaluation results at {path}; run notebook 05 (or `mixpoet reproduce`) first")
    return json.loads(path.read_text(encoding="utf-8"))


def load_evaluation(run_dir: str | Path) -> EvaluationResult:
    """An evaluation read back from the files :func:`write_results` and the poem cache left in a run folder
    (``results.json``, ``eval/scores.csv``, ``eval/poems/``), to be scored again without generating.

    Test items are not stored, so ``items`` is empty (``meta`` keeps their number).
    """
    run_dir = Path(run_dir)
    saved = load_results(run_dir)
    meta, seeds = saved["meta"], tuple(int(s) for s in saved["meta"]["seeds"])
    poems = {}
    for system in meta["systems"]:
        for seed in seeds:
            gen_seed = seeds[0] if system in DETERMINISTIC else seed
            poems[(system, seed)] = load_stored(poems_path(run_dir, system, gen_seed))
    scores = pd.read_csv(run_dir / "eval" / "scores.csv", dtype={"length": str})
    return EvaluationResult(scores, poems, [], saved["judge_ceiling"], saved["lm_reference_gt"], seeds, meta)


def _markdown_table(table: pd.DataFrame, first: str = "system") -> list[str]:
    header = f"| {first} | " + " | ".join(str(c) for c in table.columns) + " |"
    sep = "|---|" + "---|" * len(table.columns)
    return [header, sep] + [
        "| " + str(idx) + " | " + " | ".join(str(v) for v in row) + " |" for idx, row in zip(table.index, table.values)
    ]


def markdown_results(results: dict[str, Any], metrics: Sequence[str] | None = None) -> str:
    """The README/report results table (length 'all') as Markdown, from a loaded ``results.json``."""
    summary = pd.DataFrame(results["summary"])
    summary = summary[summary["length"] == "all"]
    return "\n".join(_markdown_table(results_table(summary, metrics)))


def markdown_result_groups(results: dict[str, Any]) -> list[str]:
    """One Markdown table per :data:`~mixpoet_lib.evaluate.scoring.METRIC_GROUPS` entry (length 'all'), each
    under a bold title; metrics the results lack are left out, and so are systems without any value."""
    summary = pd.DataFrame(results["summary"])
    summary = summary[summary["length"] == "all"]
    lines: list[str] = []
    for title, metrics in METRIC_GROUPS.items():
        have = [m for m in metrics if m in set(summary["metric"])]
        if not have:
            continue
        table = results_table(summary, have)
        table = table[(table != "—").any(axis=1)]
        lines += [f"**{title}**", "", *_markdown_table(table), ""]
    return lines


def _fmt(value: Any, digits: int = 4) -> str:
    return "—" if value is None or not np.isfinite(float(value)) else f"{float(value):.{digits}f}"


def markdown_paper(results: dict[str, Any]) -> list[str]:
    """The side-by-side with the paper (``results.json``'s ``paper`` entry) as Markdown lines; none without it."""
    sec = results.get("paper")
    if not sec:
        return []
    lines = [f"Paper values: {sec['source']}. Kit values: mean ± std over the seeds (length 'all').", ""]
    lines += ["| system | measure | paper | kit | kit metric | protocol |", "|---|---|---|---|---|---|"]
    for r in sec["side_by_side"]:
        kit = "—" if r["kit"] is None else f"{_fmt(r['kit'])} ± {_fmt(r['kit_std'])}"
        lines.append(
            f"| {r['system']} | {r['measure']} | {_fmt(r['paper'])} | {kit} | `{r['kit_metric']}` | {r['protocol']} |"
        )
    lines += ["", "| key ratio | paper | kit |", "|---|---|---|"]
    for r in sec["key_ratios"]:
        kit = "—" if r["kit"] is None else f"{_fmt(r['kit'], 2)} ± {_fmt(r['kit_std'], 2)}"
        lines.append(f"| {r['ratio']} | {_fmt(r['paper'], 2)} | {kit} |")
    lines += ["", "Not reproduced:", ""] + [f"* {item}" for item in sec["not_reproduced"]]
    return lines
