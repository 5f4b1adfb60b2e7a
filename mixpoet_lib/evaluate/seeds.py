"""Results over training seeds: one profile trained with several seeds (``mixpoet reproduce --train-seeds``), each
run evaluated over its own generation seeds, pooled into one summary whose spread covers both sources of chance.

For every (system, length, metric), run i gives the mean m_i and the sample std s_i of its n_i per-seed values.
The mean and the sample std of all N = Σ n_i values follow exactly from them:

    mean = Σ n_i m_i / N,        var = (Σ (n_i − 1) s_i² + Σ n_i (m_i − mean)²) / (N − 1).

The claims and reproduction targets (:func:`~mixpoet_lib.evaluate.claims.claims`) are then judged against this
pooled spread, which is what "beyond the seed spread" has to mean when the training seed moves a model more than
the generation seed does. Each run trains its own judges and character LM (they follow the profile's seed too),
so the factor-control spread also holds the judges' own variation; the judges' targets use their mean macro-F1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixpoet_lib._util import write_text_atomic
from mixpoet_lib.evaluate.claims import claims
from mixpoet_lib.evaluate.report import markdown_result_groups

__all__ = [
    "KEY_METRICS",
    "pool_summaries",
    "pooled_results",
    "seed_table",
    "per_seed_markdown",
    "pooled_claims_markdown",
    "coverage_markdown",
    "seed_report_markdown",
    "write_seed_report",
]

KEY = ["system", "length", "metric"]
MIN_RUNS = 2  # pooling needs at least two training seeds
# the numbers shown per training seed in the report (the before/after rows)
KEY_METRICS: tuple[tuple[str, str], ...] = (
    ("aus", "intra_jaccard_mix_word"),
    ("igs", "intra_jaccard_mix_word"),
    ("cvae", "intra_jaccard_word"),
    ("aus", "inter_jaccard_word"),
    ("aus", "keyword_rate"),
    ("aus", "shared_lines"),
    ("aus", "living_acc"),
    ("aus", "era_acc"),
)


def pool_summaries(summaries: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One summary from several runs' summaries (columns system, length, metric, mean, std, n_seeds): the exact
    mean and sample std over all their per-seed values (module doc); ``n_runs`` says how many runs had the row."""
    if not summaries:
        raise ValueError("no summaries to pool")
    both = pd.concat([s[[*KEY, "mean", "std", "n_seeds"]] for s in summaries], ignore_index=True)
    both = both[np.isfinite(both["mean"].astype(float))]
    rows = []
    for key, g in both.groupby(KEY, sort=False):
        n, m, s = g["n_seeds"].to_numpy(float), g["mean"].to_numpy(float), np.nan_to_num(g["std"].to_numpy(float))
        total = n.sum()
        mean = float((n * m).sum() / total)
        ss = float(((n - 1) * s**2).sum() + (n * (m - mean) ** 2).sum())
        std = float(np.sqrt(ss / (total - 1))) if total > 1 else 0.0
        stats = {"mean": mean, "std": std, "n_seeds": int(total), "n_runs": len(g)}
        rows.append({**dict(zip(KEY, key, strict=True)), **stats})
    return pd.DataFrame(rows)


def _mean_ceiling(ceilings: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The judges' test accuracy and macro-F1 averaged over the runs (each run trains its own judges)."""
    factors = sorted({f for c in ceilings for f in c})
    return {
        f: {k: float(np.mean([c[f][k] for c in ceilings if f in c])) for k in ("accuracy", "macro_f1")} for f in factors
    }


def pooled_results(results: Mapping[int, dict[str, Any]], main: int | None = None) -> dict[str, Any]:
    """A results.json-like dict pooled over training seeds (``results``: training seed → that run's results.json):
    meta (training and generation seeds; ``main_seed``: the seed of the main run, the others' parent folder,
    default the first), pooled summary, the judges' mean ceiling, and the claims judged on the pooled spread;
    ``per_seed`` keeps each run's mean of :data:`KEY_METRICS`."""
    seeds = sorted(results)
    if main is not None and main not in results:
        raise ValueError(f"the main run's seed {main} is not among the training seeds {seeds}")
    summaries = [pd.DataFrame(results[s]["summary"]) for s in seeds]
    pooled = pool_summaries(summaries)
    ceiling = _mean_ceiling([results[s].get("judge_ceiling", {}) for s in seeds])
    first = results[seeds[0]]["meta"]
    return {
        "meta": {
            **first,
            "train_seeds": seeds,
            "main_seed": next(iter(results)) if main is None else main,
            "weights": {s: results[s]["meta"].get("weights") for s in seeds},
            "systems_by_seed": {s: sorted(set(summaries[i]["system"])) for i, s in enumerate(seeds)},
            "generation_seeds_by_seed": {s: results[s]["meta"].get("seeds") for s in seeds},
        },
        "summary": json.loads(pooled.to_json(orient="records")),
        "judge_ceiling": ceiling,
        "claims": json.loads(claims(pooled[pooled["length"] == "all"], ceiling=ceiling).to_json(orient="records")),
        "per_seed": seed_table(dict(zip(seeds, summaries, strict=True))).reset_index().to_dict(orient="records"),
    }


def seed_table(summaries: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Training seed × :data:`KEY_METRICS` (length 'all', the mean over that run's generation seeds)."""
    rows = {}
    for seed, s in summaries.items():
        s = s[s["length"] == "all"].set_index(["system", "metric"])["mean"]
        rows[seed] = {f"{sys} {metric}": float(s.get((sys, metric), np.nan)) for sys, metric in KEY_METRICS}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "training seed"
    return table


def per_seed_markdown(pooled: dict[str, Any]) -> list[str]:
    """The table of :data:`KEY_METRICS` per training seed (each the mean over that run's generation seeds)."""
    per_seed = pd.DataFrame(pooled["per_seed"]).set_index("training seed")
    return [
        "| training seed | " + " | ".join(per_seed.columns) + " |",
        "|---|" + "---|" * len(per_seed.columns),
        *(f"| {seed} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for seed, row in per_seed.iterrows()),
        "",
    ]


def pooled_claims_markdown(pooled: dict[str, Any]) -> list[str]:
    """The claims and targets judged on the spread over training × generation seeds, as a Markdown table."""
    return [
        "| claim | verdict | evidence |",
        "|---|---|---|",
        *(f"| {c['claim']} | {c['verdict']} | {c['evidence']} |" for c in pooled["claims"]),
        "",
    ]


def coverage_markdown(systems_by_seed: Mapping[Any, Sequence[str]]) -> list[str]:
    """Which training seeds hold each system, when not every run holds every system (else nothing to say)."""
    every = sorted({x for systems in systems_by_seed.values() for x in systems})
    partial = {x: [str(s) for s, systems in systems_by_seed.items() if x in systems] for x in every}
    partial = {x: seeds for x, seeds in partial.items() if len(seeds) < len(systems_by_seed)}
    if not partial:
        return []
    held = "; ".join(f"{x}: seed{'s' * (len(seeds) > 1)} {', '.join(seeds)}" for x, seeds in partial.items())
    return [
        f"Not every run holds every system ({held}): such a system's rows pool only the runs that hold it, so their"
        " spread (and a claim that compares it) covers fewer training seeds (`n_runs` in training_seeds.json).",
        "",
    ]


def _generation_seeds(meta: Mapping[str, Any]) -> str:
    """``1, 2, 3`` when every run used the same generation seeds, else one entry per run:
    ``training seed 1234: 1, 2, 3; training seed 1235: 1, 2``."""
    by_seed = meta.get("generation_seeds_by_seed") or {s: meta["seeds"] for s in meta["train_seeds"]}
    shown = {s: ", ".join(map(str, g or [])) for s, g in by_seed.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return "; ".join(f"training seed {s}: {g}" for s, g in shown.items())


def seed_report_markdown(pooled: dict[str, Any]) -> list[str]:
    """The Markdown of ``training_seeds.md``: per-seed key numbers, the pooled tables, the claims on that spread."""
    meta = pooled["meta"]
    return [
        f"# {meta['profile']}: results over training seeds {meta['train_seeds']}",
        "",
        "Each training seed is a run of its own (its models and LM trained with that seed; the n-gram judges are"
        " deterministic, so every seed has the same ones), evaluated over its generation seeds"
        f" ({_generation_seeds(meta)}); mean ± std below are over every (training × generation) value, pooled"
        " exactly from each run's mean and std.",
        "",
        *coverage_markdown(meta.get("systems_by_seed", {})),
        "## Key numbers per training seed (mean over generation seeds)",
        "",
        *per_seed_markdown(pooled),
        "## Pooled over training and generation seeds",
        "",
        *markdown_result_groups(pooled),
        "## Claims and targets on the pooled spread",
        "",
        *pooled_claims_markdown(pooled),
    ]


def write_seed_report(
    results: Mapping[int, dict[str, Any]], out: str | Path, main: int | None = None
) -> dict[str, Path]:
    """Pool the runs' results (training seed → results.json; ``main``: :func:`pooled_results`) and write
    ``training_seeds.json`` and ``.md`` in ``out``; fewer than two seeds is refused (there is nothing to pool)."""
    if len(results) < MIN_RUNS:
        raise ValueError(f"need at least two training seeds to pool, got {sorted(results)}")
    pooled = pooled_results(results, main)
    out = Path(out)
    paths = {"json": out / "training_seeds.json", "md": out / "training_seeds.md"}
    write_text_atomic(paths["json"], json.dumps(pooled, ensure_ascii=False, indent=1))
    write_text_atomic(paths["md"], "\n".join(seed_report_markdown(pooled)))
    return paths
