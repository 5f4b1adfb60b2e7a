"""Results tables and files of an evaluation: the mean ± std table, ``results.csv``, ``results.json``, Markdown.

``results.json`` is what the run report and the README read back (:func:`load_results`); its keys keep the
order in which they are written (judge factors, systems), which the Markdown report follows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixpoet_lib._util import write_text_atomic
from mixpoet_lib.evaluate.claims import claims
from mixpoet_lib.evaluate.evaluation import EvaluationResult
from mixpoet_lib.evaluate.scoring import METRICS
from mixpoet_lib.evaluate.systems import SYSTEM_TITLES, SYSTEMS

__all__ = ["results_table", "write_results", "load_results", "markdown_results"]

CEILING_FIELDS = ("n", "accuracy", "macro_f1", "confusion")  # what results.json keeps of a judge's test report


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
    obj = {
        "meta": result.meta,
        "metrics": {k: {"title": t, "direction": d} for k, (t, d) in METRICS.items()},
        "systems": SYSTEM_TITLES,
        "summary": json.loads(summary.to_json(orient="records")),
        "judge_ceiling": {
            f: {k: v for k, v in c.items() if k in CEILING_FIELDS} for f, c in result.judge_ceiling.items()
        },
        "lm_reference_gt": result.lm_reference,
        "seconds_per_poem": result.seconds_per_poem().to_dict(),
        "relaxations": json.loads(result.relaxations().to_json(orient="index")),
        "claims": json.loads(claims(result.summary()).to_json(orient="records")),
    }
    write_text_atomic(paths["json"], json.dumps(obj, ensure_ascii=False, indent=1))  # keys in written order
    return paths


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """Read ``results.json`` of a run (raise FileNotFoundError naming the path if there is none)."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"no evaluation results at {path}; run notebook 05 (or `mixpoet reproduce`) first")
    return json.loads(path.read_text(encoding="utf-8"))


def markdown_results(results: dict[str, Any], metrics: Sequence[str] | None = None) -> str:
    """The README/report results table (length 'all') as Markdown, from a loaded ``results.json``."""
    summary = pd.DataFrame(results["summary"])
    summary = summary[summary["length"] == "all"]
    table = results_table(summary, metrics)
    header = "| system | " + " | ".join(table.columns) + " |"
    sep = "|---|" + "---|" * len(table.columns)
    lines = [header, sep] + [
        "| " + idx + " | " + " | ".join(str(v) for v in row) + " |" for idx, row in zip(table.index, table.values)
    ]
    return "\n".join(lines)
