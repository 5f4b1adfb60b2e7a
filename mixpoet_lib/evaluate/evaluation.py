"""The side-by-side evaluation of spec §5 (reconstructed protocols, [RECON]): every system on the same keywords.

Systems: ``gt`` (the held-out human poems the keywords come from), ``basic``, ``cvae``, ``igs``, ``aus`` and
``aus_st``. For a fixed, seeded set of test keywords (half 5-, half 7-character, drawn from ``unl_test``):

* **inter** poems: one poem per keyword (factor models infer the labels with p(y|w), the official default);
* **intra** groups: N poems per keyword — N latent samples for CVAE and the factor models (labels fixed at
  the inferred ones), the top-N distinct beam results for Basic (which has no randomness);
* **mixture** poems (factor models only): one poem per keyword under each of the six (living, era) mixtures;
  they give the second intra-topic variant ("one per mixture") and the factor-control scores.

Every metric is computed per system, per generation seed and per length (5, 7, all); :func:`summarise` turns
them into mean ± sample std over the seeds. Generated poems are cached as JSON per (system, seed), keyed by the
checkpoint's content and the settings, so a re-run only scores. Deterministic systems (GT, Basic) are generated
once and their one result stands for every seed (std 0 by construction, said in the table).

The paper's claims checked against the numbers are in :mod:`mixpoet_lib.evaluate.claims`; the results tables and
files (``results.csv``, ``results.json``) in :mod:`mixpoet_lib.evaluate.report`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixpoet_lib._util import digest, progress_bar, write_text_atomic
from mixpoet_lib.config import FACTOR_CLASSES, FACTOR_NAMES, Profile
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.data.rhythm import default_tone_rhyme
from mixpoet_lib.data.vocab import N_SPECIALS
from mixpoet_lib.evaluate.analysis import MIXTURES
from mixpoet_lib.generate.generator import RELAXATION_LEVELS, GeneratedPoem, Generator
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
    "SYSTEMS",
    "SYSTEM_TITLES",
    "FACTOR_SYSTEMS",
    "DETERMINISTIC",
    "EVAL_FORMAT",
    "METRICS",
    "EvaluationError",
    "TestItem",
    "test_items",
    "SystemPoems",
    "cache_key",
    "generate_system",
    "poems_path",
    "load_cached",
    "save_cached",
    "Scorers",
    "score_subset",
    "factor_confusions",
    "relaxation_counts",
    "EvaluationResult",
    "summarise",
    "evaluate",
]

SYSTEMS: tuple[str, ...] = ("gt", "basic", "cvae", "igs", "aus", "aus_st")
SYSTEM_TITLES: dict[str, str] = {
    "gt": "GT (human)",
    "basic": "Basic",
    "cvae": "CVAE",
    "igs": "MixPoet-IGS",
    "aus": "MixPoet-AUS",
    "aus_st": "MixPoet-AUS-ST",
}
FACTOR_SYSTEMS: frozenset[str] = frozenset({"igs", "aus", "aus_st"})
DETERMINISTIC: frozenset[str] = frozenset({"gt", "basic"})
EVAL_FORMAT = 1
NO_LABELS = (-1, -1)  # the 'requested' labels of a poem generated without a requested mixture
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


class EvaluationError(RuntimeError):
    """Raised for unusable evaluation input (too few keywords, unknown system, …) with the value named."""


@dataclass(frozen=True)
class TestItem:
    """One test keyword with its line length and the human poem it was taken from (the GT system)."""

    keyword: str
    length: int
    reference: str  # lines joined by '|'
    origin: str = ""


def test_items(data: PreparedData, n_keywords: int, seed: int, split: str = "unl_test") -> list[TestItem]:
    """Seeded test keywords from ``split``: n/2 from 5- and n/2 from 7-character poems, distinct per length.

    A poem contributes its first keyword that is 1–2 characters long and fully in the vocabulary.
    """
    if n_keywords < 2 or n_keywords % 2:
        raise EvaluationError(f"n_keywords must be an even number ≥ 2, got {n_keywords}")
    vocab = data.vocab
    poems = data.poems(split)
    rng = np.random.default_rng(seed)
    items: list[TestItem] = []
    for length in (5, 7):
        pool = [p for p in poems if p.length == length]
        order = rng.permutation(len(pool))
        seen: set[str] = set()
        picked: list[TestItem] = []
        for i in order.tolist():
            poem = pool[i]
            kw = next(
                (
                    k
                    for k in poem.keywords
                    if 1 <= len(k) <= 2 and all(ch in vocab and vocab.id(ch) >= N_SPECIALS for ch in k)
                ),
                None,
            )
            if kw is None or kw in seen:
                continue
            seen.add(kw)
            picked.append(TestItem(kw, length, "|".join(poem.lines), poem.origin))
            if len(picked) == n_keywords // 2:
                break
        if len(picked) < n_keywords // 2:
            raise EvaluationError(
                f"{split} has only {len(picked)} distinct usable keywords for {length}-character "
                f"poems; asked for {n_keywords // 2}"
            )
        items.extend(picked)
    return items


# ----------------------------------------------------------------------------------------------
# generation with a cache
# ----------------------------------------------------------------------------------------------


@dataclass
class SystemPoems:
    """All poems of one system and seed: records with role 'inter' | 'intra' | 'mixture', plus timing."""

    system: str
    seed: int
    records: list[dict[str, Any]]
    seconds: float = 0.0
    n_generated: int = 0
    key: str = ""

    def role(self, role: str) -> list[dict[str, Any]]:
        """The records of one role."""
        return [r for r in self.records if r["role"] == role]


def _record(role: str, item_idx: int, poem: GeneratedPoem, requested: tuple[int, int]) -> dict[str, Any]:
    return {
        "role": role,
        "item": item_idx,
        "keyword": poem.keyword,
        "length": poem.length,
        "requested": list(requested),
        "labels": list(poem.labels),
        "sample": poem.sample,
        "ok": poem.ok,
        "relaxation": poem.relaxation,
        "form_ok": poem.form_ok,
        "text": poem.text,
        "score": None if math.isnan(poem.score) else poem.score,
    }


def cache_key(
    system: str, seed: int, items: Sequence[TestItem], profile: Profile, intra_n: int, weights: str = ""
) -> str:
    """Hash of everything that decides a system's poems: items, generation settings, seed, weights digest."""
    return digest(
        {
            "format": EVAL_FORMAT,
            "system": system,
            "seed": seed if system not in DETERMINISTIC else 0,
            "items": [asdict(it) for it in items],
            "gen": asdict(profile.gen),
            "intra_n": intra_n,
            "weights": weights,
        }
    )


def _state_digest(model: Any) -> str:
    # the raw bytes of every tensor, not _util.digest (JSON): the weights digests in results.json stay the same
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _gt_records(items: Sequence[TestItem]) -> list[dict[str, Any]]:
    return [
        {
            "role": "inter",
            "item": i,
            "keyword": it.keyword,
            "length": it.length,
            "requested": [-1, -1],
            "labels": [-1, -1],
            "sample": 0,
            "ok": True,
            "relaxation": 0,
            "form_ok": None,
            "text": it.reference,
            "score": None,
        }
        for i, it in enumerate(items)
    ]


def _basic_records(generator: Generator, items: Sequence[TestItem], seed: int, intra_n: int) -> list[dict[str, Any]]:
    """One beam result per keyword (inter) and the top-N distinct ones (intra): Basic has no randomness."""
    inter = generator.generate([it.keyword for it in items], [it.length for it in items], n_samples=1, seed=seed)
    records = [_record("inter", i, p, NO_LABELS) for i, p in enumerate(inter)]
    for i, it in enumerate(items):
        group = generator.top_n_distinct(it.keyword, it.length, intra_n, seed=seed)
        records += [_record("intra", i, replace(p, sample=j), NO_LABELS) for j, p in enumerate(group)]
    return records


def _sampled_records(
    system: str, generator: Generator, items: Sequence[TestItem], seed: int, intra_n: int
) -> tuple[list[dict[str, Any]], int]:
    """N latent samples per keyword (sample 0 is also the inter poem); factor models add one poem per mixture."""
    kws, lens = [it.keyword for it in items], [it.length for it in items]
    samples = generator.generate(kws, lens, n_samples=intra_n, seed=seed)  # keyword-major
    records: list[dict[str, Any]] = []
    for k, p in enumerate(samples):
        if p.sample == 0:
            records.append(_record("inter", k // intra_n, p, NO_LABELS))
        records.append(_record("intra", k // intra_n, p, NO_LABELS))
    n_gen = len(samples)
    if system in FACTOR_SYSTEMS:
        for mix in MIXTURES:
            poems = generator.generate(kws, lens, labels=mix, n_samples=1, seed=seed)
            records += [_record("mixture", i, p, mix) for i, p in enumerate(poems)]
            n_gen += len(poems)
    return records, n_gen


def generate_system(
    system: str,
    items: Sequence[TestItem],
    seed: int,
    intra_n: int,
    generator: Generator | None = None,
    log: Callable[[str], None] = lambda m: None,
) -> SystemPoems:
    """Generate (or, for GT, collect) one system's inter, intra and mixture poems for the items, timed."""
    if system not in SYSTEMS:
        raise EvaluationError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    if intra_n < 2:
        raise EvaluationError(f"intra_n must be ≥ 2, got {intra_n}")
    t0 = time.perf_counter()
    if system == "gt":
        return SystemPoems(system, seed, _gt_records(items), time.perf_counter() - t0, 0)
    if generator is None:
        raise EvaluationError(f"system {system!r} needs a generator")
    if system == "basic":
        records, n_gen = _basic_records(generator, items, seed, intra_n), len(items) * (1 + intra_n)
    else:
        records, n_gen = _sampled_records(system, generator, items, seed, intra_n)
    seconds = time.perf_counter() - t0
    log(f"{system} seed {seed}: {n_gen} poems in {seconds:.1f} s ({seconds / max(n_gen, 1) * 1000:.1f} ms/poem)")
    return SystemPoems(system, seed, records, seconds, n_gen)


def poems_path(run_dir: str | Path, system: str, seed: int) -> Path:
    """``<run_dir>/eval/poems/<system>_seed<seed>.json``."""
    return Path(run_dir) / "eval" / "poems" / f"{system}_seed{seed}.json"


def load_cached(path: Path, key: str) -> SystemPoems | None:
    """The cached poems at ``path`` if their key matches (an unreadable or stale file counts as absent)."""
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if obj.get("key") != key:
        return None
    return SystemPoems(
        obj["system"], int(obj["seed"]), obj["records"], float(obj["seconds"]), int(obj["n_generated"]), key
    )


def save_cached(sp: SystemPoems, path: Path) -> None:
    """Write one system's poems (atomically) with their key."""
    obj = {
        "key": sp.key,
        "system": sp.system,
        "seed": sp.seed,
        "seconds": sp.seconds,
        "n_generated": sp.n_generated,
        "records": sp.records,
    }
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False))  # fields in this order, one line


# ----------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------


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


def _score_rows(sp: SystemPoems, system: str, seed: int, scorers: Scorers) -> list[dict[str, Any]]:
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


# ----------------------------------------------------------------------------------------------
# the whole evaluation
# ----------------------------------------------------------------------------------------------


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
    scorers = Scorers(judges, lm, frozenset(data.training_lines()), default_tone_rhyme(), ecfg.max_pairs)
    weights = dict(weights or {})
    poems: dict[tuple[str, int], SystemPoems] = {}
    rows: list[dict[str, Any]] = []
    generators: dict[str, Generator] = {}
    bar = progress_bar([(s, seed) for s in systems for seed in seeds], desc="evaluation", progress=progress)
    for system, seed in bar:
        bar.set_postfix(system=system, seed=seed)
        if system not in weights:
            weights[system] = "" if system == "gt" else _state_digest(models[system])
        key = cache_key(system, seed, items, profile, intra_n, weights[system])
        gen_seed = seed if system not in DETERMINISTIC else seeds[0]
        path = poems_path(run_dir, system, gen_seed)
        sp = load_cached(path, key)
        if sp is None:
            if system != "gt" and system not in generators:
                generators[system] = Generator(
                    models[system], data.vocab, scorers.tone_rhyme, scorers.training_lines, profile.gen
                )
            sp = generate_system(system, items, gen_seed, intra_n, generators.get(system), log)
            sp.key = key
            save_cached(sp, path)
        poems[(system, seed)] = sp
        rows += _score_rows(sp, system, seed, scorers)
    bar.close()
    ceiling = {f: dict(getattr(j, "report", {}).get("test", {})) for f, j in judges.items()}
    ref = lm_score(lm, [it.reference for it in items]).summary()
    meta = {
        "profile": profile.name,
        "n_keywords": n_keywords,
        "intra_n": intra_n,
        "seeds": list(seeds),
        "systems": list(systems),
        "beam_size": profile.gen.beam_size,
        "weights": weights,
    }
    return EvaluationResult(pd.DataFrame(rows), poems, items, ceiling, ref, seeds, meta)
