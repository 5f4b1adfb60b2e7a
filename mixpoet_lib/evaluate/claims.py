"""The paper's qualitative claims checked against a measured summary (length 'all'), one verdict per comparison.

A comparison of system A against system B on a metric is

* **supported** when A is better (in the metric's direction, :data:`~mixpoet_lib.evaluate.scoring.METRICS`)
  by more than the sum of the two seed spreads (sample std over the seeds), **weakly supported (within seed
  spread)** when it is better by less;
* **not supported** when A is worse by more than the spreads, **not supported (within seed spread)** when by
  less; **not measured** when either number is missing.

Quality (LMS) is a "not worse" claim: a deficit within the seed spread counts as supported. Factor control is
judged against chance (1/3 for living, 1/2 for era): supported when mean − std is above chance, weakly when
only the mean is.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mixpoet_lib.evaluate.scoring import METRICS
from mixpoet_lib.evaluate.systems import SYSTEM_TITLES

__all__ = ["CHANCE", "claims"]

CHANCE: dict[str, float] = {"living": 1 / 3, "era": 1 / 2}  # accuracy of a random guess per factor

DIVERSITY_CLAIMS: tuple[tuple[str, str], ...] = (
    ("inter_jaccard", "more diverse across keywords (inter-topic)"),
    ("intra_jaccard", "more diverse for one keyword (intra-topic, N samples each)"),
    ("intra_jaccard_mix", "more diverse for one keyword (6 mixtures vs the baseline's N samples)"),
    ("lms", "quality not worse (LMS)"),
)


def _stat(summary: pd.DataFrame, system: str, metric: str) -> tuple[float, float]:
    row = summary[(summary["system"] == system) & (summary["metric"] == metric)]
    if row.empty:
        return math.nan, math.nan
    return float(row["mean"].iloc[0]), float(row["std"].iloc[0])


def _verdict(better: bool, clear: bool) -> str:
    if better:
        return "supported" if clear else "weakly supported (within seed spread)"
    return "not supported" if clear else "not supported (within seed spread)"


def _compare(summary: pd.DataFrame, a: str, b: str, metric: str, b_metric: str | None = None) -> tuple[str, str]:
    """Verdict of 'a is better than b on metric' (b read on ``b_metric`` if given) and the evidence string."""
    (ma, sa), (mb, sb) = _stat(summary, a, metric), _stat(summary, b, b_metric or metric)
    if not (np.isfinite(ma) and np.isfinite(mb)):
        return "not measured", (
            "missing system" if b_metric else f"{SYSTEM_TITLES[a]} or {SYSTEM_TITLES[b]} has no {metric}"
        )
    verdict = _verdict((ma - mb) * METRICS[metric][1] > 0, abs(ma - mb) > (sa + sb))
    return verdict, f"{SYSTEM_TITLES[a]} {ma:.3f} ± {sa:.3f} vs {SYSTEM_TITLES[b]} {mb:.3f} ± {sb:.3f}"


def _against_baseline(summary: pd.DataFrame, main: str, base: str, metric: str) -> tuple[str, str]:
    """Verdict and evidence of one diversity or quality claim of ``main`` against a baseline."""
    if metric == "intra_jaccard_mix":  # main's mixture groups against the baseline's own N-sample groups
        return _compare(summary, main, base, metric, "intra_jaccard")
    verdict, evidence = _compare(summary, main, base, metric)
    if metric == "lms" and verdict == "not supported (within seed spread)":
        verdict = "supported (not worse within seed spread)"
    return verdict, evidence


def _control_claim(summary: pd.DataFrame, main: str, factor: str) -> dict[str, str]:
    """Does ``main`` control ``factor``: its judged accuracy on mixture poems against chance."""
    m, s = _stat(summary, main, f"{factor}_acc")
    chance = CHANCE[factor]
    if np.isfinite(m):
        verdict = "supported" if m - s > chance else ("weakly supported" if m > chance else "not supported")
        evidence = f"judged accuracy {m:.3f} ± {s:.3f} vs chance {chance:.3f}"
    else:
        verdict, evidence = "not measured", "no mixture poems"
    return {
        "claim": f"{SYSTEM_TITLES[main]} controls the {factor} factor",
        "metric": f"{factor}_acc",
        "verdict": verdict,
        "evidence": evidence,
    }


def claims(summary: pd.DataFrame, main: str = "aus") -> pd.DataFrame:
    """The paper's qualitative claims checked against the measured summary (length 'all'), one row per comparison.

    Columns: claim, metric, verdict, evidence (the two numbers compared, mean ± std over the seeds).
    """
    rows = []
    for base in ("basic", "cvae"):
        for metric, claim in DIVERSITY_CLAIMS:
            verdict, evidence = _against_baseline(summary, main, base, metric)
            rows.append(
                {
                    "claim": f"{SYSTEM_TITLES[main]} vs {SYSTEM_TITLES[base]}: {claim}",
                    "metric": metric,
                    "verdict": verdict,
                    "evidence": evidence,
                }
            )
    verdict, evidence = _compare(summary, main, "fbasic", "intra_jaccard_mix")
    rows.append(
        {
            "claim": f"{SYSTEM_TITLES[main]} vs fBasic: more diverse for one keyword (6 mixtures each)",
            "metric": "intra_jaccard_mix",
            "verdict": verdict,
            "evidence": evidence,
        }
    )
    rows += [_control_claim(summary, main, factor) for factor in CHANCE]
    for base, why in (("igs", "MixPoet-IGS (ablation)"), ("fbasic", "fBasic (labels as decoder inputs)")):
        verdict, evidence = _compare(summary, main, base, "joint_acc")
        rows.append(
            {
                "claim": f"{SYSTEM_TITLES[main]} controls the factors better than {why}",
                "metric": "joint_acc",
                "verdict": verdict,
                "evidence": evidence,
            }
        )
    return pd.DataFrame(rows)
