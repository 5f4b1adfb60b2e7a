"""Scoring the evaluation poems: every metric per system, seed and length, and the mean ± std over seeds.

:data:`METRICS` names each metric with its title and direction, :data:`METRIC_GROUPS` groups them for tables.
:func:`score_subset` computes them for one system and seed on the poems of some lengths: diversity (Jaccard
on characters, bigrams and the paper-calibrated word unit, distinct-n, copies of training lines), quality (the
char LM's log-prob and perplexity, the LMS reconstruction, the reader's and the generator's form checks),
keyword relevance, repetition, and factor control (the judges' accuracy, macro-F1, per-class recall and F1 on
the mixture poems). :func:`score_rows` lays them out as the long table, :func:`summarise` averages it over the
seeds. ``docs/metrics.md`` gives each definition and its calibration on human poems.

Intra-topic variants: ``intra_jaccard*`` are the N-sample groups (N latent samples for CVAE and the factor
models, the top-N distinct beams for Basic, its analogue), ``intra_jaccard_mix*`` the paper's protocol for the
factor models (one poem per each of the six mixtures of a keyword).
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
    doubled_rates,
    factor_control_scores,
    form_pass_rate,
    human_closeness,
    inter_topic_jaccard,
    intra_topic_jaccard,
    keyword_rate,
    mean_std,
    shared_line_rate,
    topk_accumulated_frequency,
)
from mixpoet_lib.relevance import CharEmbedding, keyword_rank_scores
from mixpoet_lib.train.charlm import lm_score
from mixpoet_lib.train.judges import classify

__all__ = [
    "METRICS",
    "METRIC_GROUPS",
    "CLASS_METRICS",
    "COUNTS",
    "Scorers",
    "score_subset",
    "factor_confusions",
    "topk_word_curves",
    "relaxation_counts",
    "score_rows",
    "judged_rows",
    "summarise",
]

COUNTS = ("n_inter", "n_poems", "n_intra", "n_mixture")  # poem counts score_subset reports beside the metrics
LENGTH_SETS = {"all": (5, 7), "5": (5,), "7": (7,)}  # the length column of the scores → the line lengths it holds
TOP_WORDS = 5  # top-k of the word-frequency summary (the paper's Fig. 4c: Basic's top 5 cover over 10 %)

# per factor and class: recall and F1 of the judged mixture poems, e.g. "living_recall_military"
CLASS_METRICS: dict[str, tuple[str, int]] = {
    f"{f}_{kind}_{cls}": (f"{f}: {cls} {kind} ↑", 1)
    for f in FACTOR_NAMES
    for kind in ("recall", "f1")
    for cls in FACTOR_CLASSES[f]
}

# metric name → (title, direction: +1 higher is better, −1 lower is better, 0 neither)
METRICS: dict[str, tuple[str, int]] = {
    "inter_jaccard": ("inter-topic Jaccard (char) ↓", -1),
    "inter_jaccard_bigram": ("inter-topic Jaccard (bigram) ↓", -1),
    "inter_jaccard_word": ("inter-topic Jaccard (word, paper unit) ↓", -1),
    "intra_jaccard": ("intra-topic Jaccard, N samples / Basic top-N beams (char) ↓", -1),
    "intra_jaccard_word": ("intra-topic Jaccard, N samples / Basic top-N beams (word) ↓", -1),
    "intra_jaccard_mix": ("intra-topic Jaccard, 6 mixtures (char) ↓", -1),
    "intra_jaccard_mix_word": ("intra-topic Jaccard, 6 mixtures (word, paper protocol) ↓", -1),
    "distinct_1": ("distinct-1 ↑", 1),
    "distinct_2": ("distinct-2 ↑", 1),
    "copy_rate": ("lines copied from training ↓", -1),
    "lms": ("LM log-prob (mean log p per char; not the paper's LMS) ↑", 1),
    "lms_closeness": ("LMS reconstruction: closeness to human LM log-prob ↑", 1),
    "lm_ppl": ("LM perplexity ↓", -1),
    "form_ok": ("regulated form, reader's check ↑", 1),
    "form_ok_strict": ("form, the generator's own check ↑", 1),
    "keyword_rate": ("poems containing their keyword ↑", 1),
    "keyword_rank": ("keyword relevance, embedding rank (0.5 = none) ↑", 1),
    "doubled_poems": ("poems with a doubled character ↓", -1),
    "doubled_lines": ("lines with a doubled character ↓", -1),
    "shared_lines": ("lines shared across keywords ↓", -1),
    "top5_words": ("share of the 5 most frequent words ↓", -1),
    "fail_rate": ("failed generations ↓", -1),
    "relaxed_rate": ("poems needing a relaxed rung ↓", -1),
    "living_acc": ("living: judged accuracy ↑", 1),
    "living_f1": ("living: judged macro-F1 ↑", 1),
    "era_acc": ("era: judged accuracy ↑", 1),
    "era_f1": ("era: judged macro-F1 ↑", 1),
    "joint_acc": ("both factors judged right ↑", 1),
    **CLASS_METRICS,
}

# table title → the metrics it shows (every metric in exactly one group)
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "Diversity": (
        "inter_jaccard",
        "inter_jaccard_bigram",
        "inter_jaccard_word",
        "intra_jaccard",
        "intra_jaccard_word",
        "intra_jaccard_mix",
        "intra_jaccard_mix_word",
        "distinct_1",
        "distinct_2",
        "copy_rate",
    ),
    "Quality and form": ("lms", "lms_closeness", "lm_ppl", "form_ok", "form_ok_strict", "fail_rate", "relaxed_rate"),
    "Keyword and repetition": (
        "keyword_rate",
        "keyword_rank",
        "doubled_poems",
        "doubled_lines",
        "shared_lines",
        "top5_words",
    ),
    "Factor control": ("living_acc", "living_f1", "era_acc", "era_f1", "joint_acc"),
    "Factor control per class": tuple(CLASS_METRICS),
}


@dataclass
class Scorers:
    """What scoring needs besides the poems: judges, the char LM, the training lines and the tone tables.

    ``lm_reference`` is (mean, std) of the char LM's per-poem log-prob on held-out human poems (the LMS
    reconstruction measures closeness to it; None leaves ``lms_closeness`` undefined); ``embedding`` the
    character embedding of the keyword rank score (None leaves ``keyword_rank`` undefined).
    """

    judges: dict[str, Any]
    lm: Any
    training_lines: frozenset[str]
    tone_rhyme: Any = None
    max_pairs: int = 100_000
    lm_reference: tuple[float, float] | None = None
    embedding: CharEmbedding | None = None


def _intra_groups(recs: list[dict[str, Any]], role: str) -> list[list[str]]:
    """The texts of the good poems of one role, grouped by keyword item."""
    groups: dict[int, list[str]] = {}
    for r in recs:
        if r["role"] == role and r["ok"]:
            groups.setdefault(r["item"], []).append(r["text"])
    return list(groups.values())


def _diversity(
    recs: list[dict[str, Any]], inter_ok: list[dict[str, Any]], scorers: Scorers, seed: int
) -> dict[str, float]:
    """Inter- and intra-topic Jaccard (char, bigram, word), distinct-n and the copy rate."""
    texts, kws = [r["text"] for r in inter_ok], [r["keyword"] for r in inter_ok]
    out = {
        f"inter_jaccard{suffix}": inter_topic_jaccard(texts, scorers.max_pairs, seed, kind, kws)
        for suffix, kind in (("", "char"), ("_bigram", "bigram"), ("_word", "word"))
    }
    for role, name in (("intra", "intra_jaccard"), ("mixture", "intra_jaccard_mix")):
        groups = _intra_groups(recs, role)
        for suffix, kind in (("", "char"), ("_word", "word")):
            out[name + suffix] = intra_topic_jaccard(groups, kind) if groups else math.nan
    out["distinct_1"] = distinct_n(texts, 1)
    out["distinct_2"] = distinct_n(texts, 2)
    out["copy_rate"] = copy_rate(texts, scorers.training_lines)
    return out


def _quality(texts: list[str], scorers: Scorers) -> dict[str, float]:
    """LM log-prob and perplexity, the LMS reconstruction and the two form checks (nan without poems)."""
    if not texts:
        return {k: math.nan for k in ("lms", "lms_closeness", "lm_ppl", "form_ok", "form_ok_strict")}
    scores = lm_score(scorers.lm, texts)
    lm = scores.summary()
    ref = scorers.lm_reference
    form = form_pass_rate(texts, scorers.tone_rhyme)
    return {
        "lms": lm["mean_lms"],
        "lms_closeness": human_closeness(scores.lms.tolist(), *ref) if ref else math.nan,
        "lm_ppl": lm["corpus_ppl"],
        "form_ok": form["ok"],
        "form_ok_strict": form["ok_strict"],
    }


def _keyword_repetition(inter_ok: list[dict[str, Any]], scorers: Scorers) -> dict[str, float]:
    """Keyword presence and rank relevance, doubled characters, lines shared across keywords, top-word share."""
    texts, kws = [r["text"] for r in inter_ok], [r["keyword"] for r in inter_ok]
    if not texts:
        return {k: math.nan for k in METRIC_GROUPS["Keyword and repetition"]}
    ranks = keyword_rank_scores(scorers.embedding, texts, kws) if scorers.embedding is not None else None
    poems_doubled, lines_doubled = doubled_rates(texts)
    return {
        "keyword_rate": keyword_rate(texts, kws),
        "keyword_rank": float(np.nanmean(ranks)) if ranks is not None and np.isfinite(ranks).any() else math.nan,
        "doubled_poems": poems_doubled,
        "doubled_lines": lines_doubled,
        "shared_lines": shared_line_rate(texts, kws),
        "top5_words": float(topk_accumulated_frequency(texts, TOP_WORDS, "word")[-1]),
    }


def _judged_control(mix: list[dict[str, Any]], judges: dict[str, Any]) -> dict[str, Any]:
    """:func:`~mixpoet_lib.metrics.factor_control_scores` of mixture poems: requested labels vs the judges' labels."""
    tags = classify(judges, [r["text"] for r in mix])
    pred = [[t[f]["label"] for f in FACTOR_NAMES] for t in tags]
    return factor_control_scores(
        [r["requested"] for r in mix], pred, tuple(len(FACTOR_CLASSES[f]) for f in FACTOR_NAMES), FACTOR_NAMES
    )


def _control(mix: list[dict[str, Any]], judges: dict[str, Any]) -> dict[str, float]:
    """Per factor judged accuracy, macro-F1, per-class recall and F1 of the good mixture poems, and the joint
    accuracy (nan without poems)."""
    names = [*METRIC_GROUPS["Factor control"], *CLASS_METRICS]
    if not mix:
        return {k: math.nan for k in names}
    fc = _judged_control(mix, judges)
    out = {"joint_acc": float(fc["joint_accuracy"])}
    for f in FACTOR_NAMES:
        out[f"{f}_acc"] = float(fc[f]["accuracy"])
        out[f"{f}_f1"] = float(fc[f]["macro_f1"])
        for kind in ("recall", "f1"):
            for cls, v in zip(FACTOR_CLASSES[f], fc[f][kind]):
                out[f"{f}_{kind}_{cls}"] = float(v)
    return {k: out[k] for k in names}


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
    out.update(_keyword_repetition(inter_ok, scorers))
    out.update(_control([r for r in recs if r["role"] == "mixture" and r["ok"]], scorers.judges))
    return out


def factor_confusions(sp: SystemPoems, judges: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per factor, the confusion matrix (rows requested, columns judged) of the mixture poems."""
    mix = [r for r in sp.role("mixture") if r["ok"]]
    if not mix:
        return {}
    fc = _judged_control(mix, judges)
    return {f: np.asarray(fc[f]["confusion"]) for f in FACTOR_NAMES}


def topk_word_curves(poems: dict[tuple[str, int], SystemPoems], k_max: int = 50) -> dict[str, np.ndarray]:
    """Per system, the top-k word accumulated frequency of its good inter-topic poems (the paper's Fig. 4c),
    averaged over its seeds (a deterministic system's seeds give the same curve)."""
    curves: dict[str, list[np.ndarray]] = {}
    for (system, _seed), sp in poems.items():
        texts = [r["text"] for r in sp.role("inter") if r["ok"]]
        if texts:
            curves.setdefault(system, []).append(topk_accumulated_frequency(texts, k_max, "word"))
    return {system: np.mean(c, axis=0) for system, c in curves.items()}


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
    if metric.startswith("intra_jaccard"):
        return counts["n_intra"]
    return counts["n_poems"] if metric in ("fail_rate", "relaxed_rate") else counts["n_inter"]


def score_rows(sp: SystemPoems, system: str, seed: int, scorers: Scorers) -> list[dict[str, Any]]:
    """Long-table rows (system, seed, length, metric, value, n_poems) for the lengths 'all', '5' and '7'."""
    rows = []
    for length, lens in LENGTH_SETS.items():
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


def judged_rows(sp: SystemPoems, system: str, seed: int, judges: dict[str, Any]) -> list[dict[str, Any]]:
    """The factor-control rows of :func:`score_rows` alone (the same layout), e.g. for other judges."""
    rows = []
    for length, lens in LENGTH_SETS.items():
        mix = [r for r in sp.records if r["role"] == "mixture" and r["length"] in lens]
        rows += [
            {"system": system, "seed": seed, "length": length, "metric": m, "value": v, "n_poems": len(mix)}
            for m, v in _control([r for r in mix if r["ok"]], judges).items()
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
