"""Scoring the evaluation poems: every metric per system, seed and length, and the mean ± std over seeds.

:data:`METRICS` names each metric with its title and direction. :func:`score_subset` computes them for one
system and seed on the poems of some lengths: diversity (Jaccard, distinct-n, copies of training lines),
quality (the char LM's LMS and perplexity, the tone pattern and rhyme pass rate) and factor control (the
judges' accuracy and macro-F1 on the mixture poems). :func:`score_rows` lays them out as the long table,
:func:`summarise` averages it over the seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mixpoet_lib.config import FACTOR_CLASSES, FACTOR_NAMES
from mixpoet_lib.evaluate.systems import DETERMINISTIC, SystemPoems
from mixpoet_lib.generate.constraints import RELAXATION_LEVELS
from mixpoet_lib.metrics import (
    copy_rate,
    distinct_n,
    factor_control_scores,
    form_pass_rate,
    inter_topic_jaccard,
    intra_topic_jaccard,
    mean_std,
)
from mixpoet_lib.train.charlm import lm_score
from mixpoet_lib.train.judges import classify

__all__ = [
    "METRICS",
    "COUNTS",
    "Scorers",
    "score_subset",
    "factor_confusions",
    "relaxation_counts",
    "score_rows",
    "summarise",
]

COUNTS = ("n_inter", "n_poems", "n_intra", "n_mixture")  # poem counts score_subset reports beside the metrics

# metric name → (title, direction: +1 higher is better, −1 lower is better, 0 neither)
METRICS: dict[str, tuple[str, int]] = {
    "inter_jaccard": ("inter-topic Jaccard (char) ↓", -1),
    "inter_jaccard_bigram": ("inter-topic Jaccard (bigram) ↓", -1),
    "intra_jaccard": ("intra-topic Jaccard, N samples ↓", -1),
    "intra_jaccard_mix": ("intra-topic Jaccard, 6 mixtures ↓", -1),
    "distinct_1": ("distinct-1 ↑", 1),
    "distinct_2": ("distinct-2 ↑", 1),
    "copy_rate": ("lines copied from training ↓", -1),
    "lms": ("LMS (mean log p per char) ↑", 1),
    "lm_ppl": ("LM perplexity ↓", -1),
    "form_ok": ("tone pattern + rhyme pass rate ↑", 1),
    "fail_rate": ("failed generations ↓", -1),
    "relaxed_rate": ("poems needing a relaxed rung ↓", -1),
    "living_acc": ("living: judged accuracy ↑", 1),
    "living_f1": ("living: judged macro-F1 ↑", 1),
    "era_acc": ("era: judged accuracy ↑", 1),
    "era_f1": ("era: judged macro-F1 ↑", 1),
    "joint_acc": ("both factors judged right ↑", 1),
}


@dataclass
class Scorers:
    """What scoring needs besides the poems: judges, the char LM, the training lines and the tone tables."""

    judges: dict[str, Any]
    lm: Any
    training_lines: frozenset[str]
    tone_rhyme: Any = None
    max_pairs: int = 100_000


def _diversity(
    recs: list[dict[str, Any]], inter_ok: list[dict[str, Any]], scorers: Scorers, seed: int
) -> dict[str, float]:
    """Inter- and intra-topic Jaccard, distinct-n and the copy rate."""
    texts, kws = [r["text"] for r in inter_ok], [r["keyword"] for r in inter_ok]
    out = {
        "inter_jaccard": inter_topic_jaccard(texts, scorers.max_pairs, seed, "char", kws),
        "inter_jaccard_bigram": inter_topic_jaccard(texts, scorers.max_pairs, seed, "bigram", kws),
    }
    for role, name in (("intra", "intra_jaccard"), ("mixture", "intra_jaccard_mix")):
        groups: dict[int, list[str]] = {}
        for r in recs:
            if r["role"] == role and r["ok"]:
                groups.setdefault(r["item"], []).append(r["text"])
        out[name] = intra_topic_jaccard(list(groups.values())) if groups else math.nan
    out["distinct_1"] = distinct_n(texts, 1)
    out["distinct_2"] = distinct_n(texts, 2)
    out["copy_rate"] = copy_rate(texts, scorers.training_lines)
    return out


def _quality(texts: list[str], scorers: Scorers) -> dict[str, float]:
    """LMS, LM perplexity and the tone pattern + rhyme pass rate (nan without poems)."""
    if not texts:
        return {"lms": math.nan, "lm_ppl": math.nan, "form_ok": math.nan}
    lm = lm_score(scorers.lm, texts).summary()
    return {
        "lms": lm["mean_lms"],
        "lm_ppl": lm["corpus_ppl"],
        "form_ok": form_pass_rate(texts, scorers.tone_rhyme)["ok"],
    }


def _judged_control(mix: list[dict[str, Any]], judges: dict[str, Any]) -> dict[str, Any]:
    """:func:`~mixpoet_lib.metrics.factor_control_scores` of mixture poems: requested labels vs the judges' labels."""
    tags = classify(judges, [r["text"] for r in mix])
    pred = [[t[f]["label"] for f in FACTOR_NAMES] for t in tags]
    return factor_control_scores(
        [r["requested"] for r in mix], pred, tuple(len(FACTOR_CLASSES[f]) for f in FACTOR_NAMES), FACTOR_NAMES
    )


def _control(mix: list[dict[str, Any]], judges: dict[str, Any]) -> dict[str, float]:
    """Per factor judged accuracy and macro-F1 of the good mixture poems, and the joint accuracy (nan without)."""
    if not mix:
        out = {}
        for f in FACTOR_NAMES:
            out[f"{f}_acc"] = out[f"{f}_f1"] = math.nan
        return {**out, "joint_acc": math.nan}
    fc = _judged_control(mix, judges)
    out = {}
    for f in FACTOR_NAMES:
        out[f"{f}_acc"] = float(fc[f]["accuracy"])
        out[f"{f}_f1"] = float(fc[f]["macro_f1"])
    return {**out, "joint_acc": float(fc["joint_accuracy"])}


def score_subset(sp: SystemPoems, scorers: Scorers, lengths: Sequence[int], seed: int) -> dict[str, float]:
    """Every metric of one system and seed on the poems of the given lengths (nan where not defined).

    The result also holds the poem counts :data:`COUNTS` (as floats) before the metrics.
    """
    keep = set(lengths)
    recs = [r for r in sp.records if r["length"] in keep]
    inter = [r for r in recs if r["role"] == "inter"]
    inter_ok = [r for r in inter if r["ok"]]
    out: dict[str, float] = {
        "n_inter": float(len(inter)),
        "n_poems": float(len(recs)),
        "n_intra": float(sum(r["role"] == "intra" for r in recs)),
        "n_mixture": float(sum(r["role"] == "mixture" for r in recs)),
    }
    out["fail_rate"] = float(np.mean([not r["ok"] for r in recs])) if recs else math.nan
    out["relaxed_rate"] = float(np.mean([r["relaxation"] > 0 for r in recs])) if recs else math.nan
    out.update(_diversity(recs, inter_ok, scorers, seed))
    out.update(_quality([r["text"] for r in inter_ok], scorers))
    out.update(_control([r for r in recs if r["role"] == "mixture" and r["ok"]], scorers.judges))
    return out


def factor_confusions(sp: SystemPoems, judges: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per factor, the confusion matrix (rows requested, columns judged) of the mixture poems."""
    mix = [r for r in sp.role("mixture") if r["ok"]]
    if not mix:
        return {}
    fc = _judged_control(mix, judges)
    return {f: np.asarray(fc[f]["confusion"]) for f in FACTOR_NAMES}


def relaxation_counts(sp: SystemPoems) -> dict[str, int]:
    """How many generated poems needed each rung of the relaxation ladder (failed poems counted as 'failed')."""
    counts = {name: 0 for name in RELAXATION_LEVELS}
    counts["failed"] = 0
    for r in sp.records:
        if sp.system == "gt":
            continue
        if not r["ok"]:
            counts["failed"] += 1
        else:
            counts[RELAXATION_LEVELS[int(r["relaxation"])]] += 1
    return counts


def _poems_behind(metric: str, counts: dict[str, int]) -> int:
    """How many poems a metric was computed on (mixture, intra, all, or inter poems)."""
    if metric.startswith(("living", "era", "joint", "intra_jaccard_mix")):
        return counts["n_mixture"]
    if metric == "intra_jaccard":
        return counts["n_intra"]
    return counts["n_poems"] if metric in ("fail_rate", "relaxed_rate") else counts["n_inter"]


def score_rows(sp: SystemPoems, system: str, seed: int, scorers: Scorers) -> list[dict[str, Any]]:
    """Long-table rows (system, seed, length, metric, value, n_poems) for the lengths 'all', '5' and '7'."""
    rows = []
    for length in ("all", "5", "7"):
        lens = (5, 7) if length == "all" else (int(length),)
        metrics = score_subset(sp, scorers, lens, seed)
        counts = {k: int(metrics.pop(k)) for k in COUNTS}
        rows += [
            {
                "system": system,
                "seed": seed,
                "length": length,
                "metric": m,
                "value": v,
                "n_poems": _poems_behind(m, counts),
            }
            for m, v in metrics.items()
        ]
    return rows


def summarise(scores: pd.DataFrame, length: str = "all") -> pd.DataFrame:
    """Rows (system, metric) with mean, std (ddof 1 over seeds), n_seeds and n_poems for one length.

    ``length`` is 'all', '5' or '7'; undefined (nan) values are left out of the mean and std.
    """
    sub = scores[scores["length"] == str(length)]
    rows = []
    for (system, metric), grp in sub.groupby(["system", "metric"], sort=False):
        vals = grp["value"].astype(float)
        vals = vals[np.isfinite(vals)]
        mean, std, n = mean_std(vals.tolist())
        rows.append(
            {
                "system": system,
                "metric": metric,
                "mean": mean,
                "std": std,
                "n_seeds": n,
                "n_poems": int(grp["n_poems"].max()) if len(grp) else 0,
                "deterministic": system in DETERMINISTIC,
            }
        )
    return pd.DataFrame(rows)
