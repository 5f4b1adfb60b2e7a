"""The side-by-side evaluation of design §6 (reconstructed protocols): every system on the same keywords.

Systems: ``gt`` (the held-out human poems the keywords come from), ``basic``, ``fbasic``, ``cvae``, ``igs``,
``aus`` and ``aus_st``. For a fixed, seeded set of test keywords (half 5-, half 7-character, drawn from ``unl_test``):

* **inter** poems: one poem per keyword (factor models infer the labels with p(y|w), the official default;
  fBasic, which has no p(y|w), reads its "unknown" labels);
* **intra** groups: N poems per keyword — N latent samples for CVAE and the factor models (labels fixed at
  the inferred ones), the top-N distinct beam results for Basic and fBasic (which have no randomness);
* **mixture** poems (factor models and fBasic): one poem per keyword under each of the six (living, era)
  mixtures; they give the second intra-topic variant ("one per mixture", the paper's intra-topic protocol for
  fBasic and MixPoet) and the factor-control scores.

Every metric is computed per system, per generation seed and per length (5, 7, all); :func:`summarise` turns
them into mean ± sample std over the seeds. Generated poems are cached as JSON per (system, seed), keyed by the
checkpoint's content and the settings, so a re-run only scores. Deterministic systems (GT, Basic, fBasic) are
generated once and their one result stands for every seed (std 0 by construction, said in the table).

This module runs the whole protocol (:func:`evaluate`, :class:`EvaluationResult`). The systems, the test keywords,
each system's poems and their cache are :mod:`mixpoet_lib.evaluate.systems`; the metrics and their summary
:mod:`mixpoet_lib.evaluate.scoring`.
The paper's claims checked against the numbers are in :mod:`mixpoet_lib.evaluate.claims`; the results tables and
files (``results.csv``, ``results.json``) in :mod:`mixpoet_lib.evaluate.report`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixpoet_lib._util import progress_bar
from mixpoet_lib.config import Profile
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.data.rhythm import default_tone_rhyme
from mixpoet_lib.evaluate.scoring import (
    CLASS_METRICS,
    METRIC_GROUPS,
    Scorers,
    judged_rows,
    relaxation_counts,
    score_rows,
    summarise,
)
from mixpoet_lib.evaluate.systems import (
    DETERMINISTIC,
    SYSTEMS,
    EvaluationError,
    SystemPoems,
    TestItem,
    cache_key,
    generate_system,
    load_cached,
    poems_path,
    save_cached,
    state_digest,
    test_items,
)
from mixpoet_lib.generate.generator import Generator
from mixpoet_lib.relevance import fit_char_embedding
from mixpoet_lib.train.charlm import LM_VAL_POEMS, lm_score

__all__ = ["EvaluationResult", "build_scorers", "evaluate", "rejudge", "replace_systems"]

REFERENCE_SPLIT = "unl_valid"  # held-out human poems the LMS reconstruction is measured against
EMBEDDING_SPLIT = "unl_train"  # poems the keyword-relevance embedding is fitted on


@dataclass
class EvaluationResult:
    """Long table of scores (system, seed, length, metric, value), poems, judge ceiling, timings."""

    scores: pd.DataFrame
    poems: dict[tuple[str, int], SystemPoems]
    items: list[TestItem]
    judge_ceiling: dict[str, dict[str, Any]]
    lm_reference: dict[str, float]
    seeds: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self, length: str = "all") -> pd.DataFrame:
        """Mean and std over seeds per system and metric (see :func:`summarise`)."""
        return summarise(self.scores, length)

    def system_row(self, system: str) -> dict[str, float]:
        """{metric: mean, metric_sd: std} over the seeds for one system (all lengths), 4 places, NaNs left out."""
        own = self.summary().set_index(["system", "metric"]).xs(system, level="system")
        row = {m: round(float(v), 4) for m, v in own["mean"].items() if v == v}
        row.update({f"{m}_sd": round(float(v), 4) for m, v in own["std"].items() if v == v})
        return row

    def relaxations(self) -> pd.DataFrame:
        """Poems per relaxation rung, per system, summed over seeds (deterministic systems counted once)."""
        rows: dict[str, dict[str, int]] = {}
        for (system, seed), sp in self.poems.items():
            if system == "gt" or (system in DETERMINISTIC and seed != self.seeds[0]):
                continue
            counts = relaxation_counts(sp)
            prev = rows.setdefault(system, {k: 0 for k in counts})
            for k, v in counts.items():
                prev[k] += v
        df = pd.DataFrame(rows).T
        return df.loc[[s for s in SYSTEMS if s in df.index]]

    def seconds_per_poem(self) -> pd.Series:
        """Generation wall time per poem (s), per system, over all its seeds."""
        agg: dict[str, list[float]] = {}
        for (system, _seed), sp in self.poems.items():
            if sp.n_generated:
                agg.setdefault(system, [0.0, 0.0])
                agg[system][0] += sp.seconds
                agg[system][1] += sp.n_generated
        return pd.Series({s: v[0] / v[1] for s, v in agg.items()}, name="s/poem")


def build_scorers(
    data: PreparedData, judges: dict[str, Any], lm: Any, max_pairs: int, seed: int
) -> tuple[Scorers, dict[str, Any]]:
    """The scorers of an evaluation and a description of their references (for the results' metadata).

    The LMS reference is the char LM's per-poem log-prob over a seeded subset of :data:`LM_VAL_POEMS`
    ``unl_valid`` poems (mean, sample std); the keyword embedding is fitted on the ``unl_train`` poems.
    """
    valid = data.poems(REFERENCE_SPLIT)
    pick = np.sort(np.random.default_rng(seed).permutation(len(valid))[:LM_VAL_POEMS])
    ref = lm_score(lm, ["|".join(valid[i].lines) for i in pick.tolist()]).summary()
    embedding = fit_char_embedding(("|".join(p.lines) for p in data.poems(EMBEDDING_SPLIT)), seed=seed)
    scorers = Scorers(
        judges,
        lm,
        frozenset(data.training_lines()),
        default_tone_rhyme(),
        max_pairs,
        (ref["mean_lms"], ref["std_lms"]) if ref["n"] > 1 and ref["std_lms"] > 0 else None,
        embedding,
    )
    about = {
        "lms_reference": {"split": REFERENCE_SPLIT, "n": ref["n"], "mean": ref["mean_lms"], "std": ref["std_lms"]},
        "embedding": {"split": EMBEDDING_SPLIT, "chars": len(embedding.index), "dim": embedding.vectors.shape[1]},
    }
    return scorers, about


def _check_request(systems: Sequence[str], seeds: tuple[int, ...], models: dict[str, Any]) -> None:
    """Raise EvaluationError for no seeds, an unknown system or a system without a trained model."""
    if not seeds:
        raise EvaluationError("no generation seeds given")
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise EvaluationError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    missing = [s for s in systems if s != "gt" and s not in models]
    if missing:
        raise EvaluationError(f"no trained model given for system(s) {missing}")


def _generator(
    generators: dict[str, Generator],
    system: str,
    models: dict[str, Any],
    data: PreparedData,
    scorers: Scorers,
    profile: Profile,
) -> Generator | None:
    """The system's generator, built once per evaluation and kept in ``generators`` (None for GT)."""
    if system == "gt":
        return None
    if system not in generators:
        generators[system] = Generator(
            models[system], data.vocab, scorers.tone_rhyme, scorers.training_lines, profile.gen
        )
    return generators[system]


def evaluate(
    profile: Profile,
    data: PreparedData,
    run_dir: str | Path,
    models: dict[str, Any],
    judges: dict[str, Any],
    lm: Any,
    systems: Sequence[str] = SYSTEMS,
    seeds: Sequence[int] | None = None,
    n_keywords: int | None = None,
    intra_n: int | None = None,
    weights: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> EvaluationResult:
    """Generate (or load from cache) and score every system on the same seeded keywords; see the module doc.

    ``models`` maps system → trained model (GT needs none); ``weights`` optionally maps system → a digest of
    its checkpoint file for the cache key (default: a digest of the model's state dict).
    """
    ecfg = profile.eval
    seeds = tuple(ecfg.seeds if seeds is None else seeds)
    _check_request(systems, seeds, models)
    n_keywords = ecfg.n_keywords if n_keywords is None else n_keywords
    intra_n = ecfg.intra_n if intra_n is None else intra_n
    items = test_items(data, n_keywords, profile.seed)
    scorers, references = build_scorers(data, judges, lm, ecfg.max_pairs, profile.seed)
    weights = dict(weights or {})
    poems, rows = {}, []
    generators: dict[str, Generator] = {}
    bar = progress_bar([(s, seed) for s in systems for seed in seeds], desc="evaluation", progress=progress)
    for system, seed in bar:
        bar.set_postfix(system=system, seed=seed)
        if system not in weights:
            weights[system] = "" if system == "gt" else state_digest(models[system])
        key = cache_key(system, seed, items, profile, intra_n, weights[system])
        gen_seed = seed if system not in DETERMINISTIC else seeds[0]
        path = poems_path(run_dir, system, gen_seed)
        sp = load_cached(path, key)
        if sp is None:
            generator = _generator(generators, system, models, data, scorers, profile)
            sp = generate_system(system, items, gen_seed, intra_n, generator, log)
            sp.key = key
            save_cached(sp, path)
        poems[(system, seed)] = sp
        rows += score_rows(sp, system, seed, scorers)
    bar.close()
    return _result(profile, rows, poems, items, judges, lm, seeds, intra_n, weights, references)


def _result(
    profile: Profile,
    rows: list[dict[str, Any]],
    poems: dict[tuple[str, int], SystemPoems],
    items: list[TestItem],
    judges: dict[str, Any],
    lm: Any,
    seeds: tuple[int, ...],
    intra_n: int,
    weights: dict[str, str],
    references: dict[str, Any],
) -> EvaluationResult:
    """Assemble the evaluation result: scores, the judges' ceiling, the LM on the GT poems, the metadata."""
    ceiling = {f: dict(getattr(j, "report", {}).get("test", {})) for f, j in judges.items()}
    ref = lm_score(lm, [it.reference for it in items]).summary()
    meta = {
        "profile": profile.name,
        "n_keywords": len(items),
        "intra_n": intra_n,
        "seeds": list(seeds),
        "systems": list(dict.fromkeys(system for system, _ in poems)),
        "beam_size": profile.gen.beam_size,
        "weights": weights,
        **references,
    }
    return EvaluationResult(pd.DataFrame(rows), poems, items, ceiling, ref, seeds, meta)


def rejudge(result: EvaluationResult, judges: dict[str, Any]) -> EvaluationResult:
    """The same evaluation with its factor-control metrics and the judges' ceiling from ``judges``.

    Nothing is generated again and every other metric is kept: for scoring stored poems (e.g. a committed run's
    ``eval/poems``, read with :func:`mixpoet_lib.evaluate.report.load_evaluation`) with judges trained later.
    """
    keys = ["system", "seed", "length", "metric"]
    judged = result.scores["metric"].isin(set(METRIC_GROUPS["Factor control"]) | set(CLASS_METRICS))
    rows = [row for (system, seed), sp in result.poems.items() for row in judged_rows(sp, system, seed, judges)]
    fresh = result.scores.loc[judged, keys].merge(pd.DataFrame(rows), on=keys, how="left")  # keeps the row order
    scores = result.scores.copy()
    scores.loc[judged, ["value", "n_poems"]] = fresh[["value", "n_poems"]].to_numpy()
    ceiling = {f: dict(getattr(j, "report", {}).get("test", {})) for f, j in judges.items()}
    return EvaluationResult(
        scores, result.poems, result.items, ceiling, result.lm_reference, result.seeds, dict(result.meta)
    )


def _same(a: Any, b: Any, rel_tol: float) -> bool:
    """Equal, except that floats (also inside dicts and lists) may differ by ``rel_tol`` relative."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel_tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rel_tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, rel_tol) for x, y in zip(a, b))
    return bool(a == b)


def replace_systems(result: EvaluationResult, other: EvaluationResult, systems: Sequence[str]) -> EvaluationResult:
    """``result`` with the score rows, poems and weight digests of ``systems`` taken from ``other``: for a run whose
    other models stay as they were after only these were re-trained and evaluated again.

    Every row depends on one system's poems, the test keywords, the judges and the character LM alone, so both
    evaluations must share those: a different number of keywords, generation seeds, LM reference or judges'
    ceiling stops it with one line naming what differs (as does a system ``other`` did not evaluate). The LM
    reference's numbers need only agree to a relative 1e-6: the same LM re-trained with another summation order
    (thread count, processor) moves its mean log-probability in the eighth digit.
    """
    checks = {
        "generation seeds": (result.seeds, other.seeds),
        "number of keywords": (result.meta.get("n_keywords"), other.meta.get("n_keywords")),
        "LM reference": (result.meta.get("lms_reference"), other.meta.get("lms_reference")),
        "judges' ceiling": (result.judge_ceiling, other.judge_ceiling),
    }
    for what, (mine, theirs) in checks.items():
        if not _same(mine, theirs, 1e-6 if what == "LM reference" else 0.0):
            raise ValueError(f"cannot take systems from another evaluation: its {what} differ ({mine} vs {theirs})")
    missing = [s for s in systems if s not in set(other.scores["system"])]
    if missing:
        raise ValueError(f"cannot take systems from another evaluation: it has no scores for {', '.join(missing)}")
    taken = set(systems)
    scores = pd.concat(
        [result.scores[~result.scores["system"].isin(taken)], other.scores[other.scores["system"].isin(taken)]]
    )
    order = {s: i for i, s in enumerate(SYSTEMS)}
    scores = scores.sort_values("system", key=lambda col: col.map(order), kind="stable").reset_index(drop=True)
    poems = {k: v for k, v in result.poems.items() if k[0] not in taken}
    poems.update({k: v for k, v in other.poems.items() if k[0] in taken})
    meta = dict(result.meta)
    meta["weights"] = {**meta.get("weights", {}), **{s: other.meta.get("weights", {}).get(s) for s in systems}}
    return EvaluationResult(scores, poems, result.items, result.judge_ceiling, result.lm_reference, result.seeds, meta)
