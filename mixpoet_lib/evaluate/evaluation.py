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
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from mixpoet_lib.evaluate.analysis import MIXTURES
from mixpoet_lib.config import FACTOR_CLASSES, FACTOR_NAMES, Profile
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.generate.generator import RELAXATION_LEVELS, GeneratedPoem, Generator
from mixpoet_lib.metrics import (copy_rate, distinct_n, factor_control_scores, form_pass_rate, inter_topic_jaccard,
                      intra_topic_jaccard, mean_std)

SYSTEMS: tuple[str, ...] = ("gt", "basic", "cvae", "igs", "aus", "aus_st")
SYSTEM_TITLES: dict[str, str] = {"gt": "GT (human)", "basic": "Basic", "cvae": "CVAE", "igs": "MixPoet-IGS",
                                 "aus": "MixPoet-AUS", "aus_st": "MixPoet-AUS-ST"}
FACTOR_SYSTEMS: frozenset[str] = frozenset({"igs", "aus", "aus_st"})
DETERMINISTIC: frozenset[str] = frozenset({"gt", "basic"})
EVAL_FORMAT = 1

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
            kw = next((k for k in poem.keywords
                       if 1 <= len(k) <= 2 and all(ch in vocab and vocab.id(ch) >= 4 for ch in k)), None)
            if kw is None or kw in seen:
                continue
            seen.add(kw)
            picked.append(TestItem(kw, length, "|".join(poem.lines), poem.origin))
            if len(picked) == n_keywords // 2:
                break
        if len(picked) < n_keywords // 2:
            raise EvaluationError(f"{split} has only {len(picked)} distinct usable keywords for {length}-character "
                                  f"poems; asked for {n_keywords // 2}")
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
    return {"role": role, "item": item_idx, "keyword": poem.keyword, "length": poem.length,
            "requested": list(requested), "labels": list(poem.labels), "sample": poem.sample, "ok": poem.ok,
            "relaxation": poem.relaxation, "form_ok": poem.form_ok, "text": poem.text,
            "score": None if math.isnan(poem.score) else poem.score}


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def cache_key(system: str, seed: int, items: Sequence[TestItem], profile: Profile, intra_n: int,
              weights: str = "") -> str:
    """Hash of everything that decides a system's poems: items, generation settings, seed, weights digest."""
    blob = json.dumps({"format": EVAL_FORMAT, "system": system, "seed": seed if system not in DETERMINISTIC else 0,
                       "items": [asdict(it) for it in items], "gen": asdict(profile.gen), "intra_n": intra_n,
                       "weights": weights}, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def generate_system(system: str, items: Sequence[TestItem], seed: int, intra_n: int,
                    generator: Generator | None = None, log: Callable[[str], None] = lambda m: None) -> SystemPoems:
    """Generate (or, for GT, collect) one system's inter, intra and mixture poems for the items, timed."""
    if system not in SYSTEMS:
        raise EvaluationError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    if intra_n < 2:
        raise EvaluationError(f"intra_n must be ≥ 2, got {intra_n}")
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    n_gen = 0
    if system == "gt":
        for i, it in enumerate(items):
            records.append({"role": "inter", "item": i, "keyword": it.keyword, "length": it.length,
                            "requested": [-1, -1], "labels": [-1, -1], "sample": 0, "ok": True, "relaxation": 0,
                            "form_ok": None, "text": it.reference, "score": None})
        return SystemPoems(system, seed, records, time.perf_counter() - t0, 0)
    if generator is None:
        raise EvaluationError(f"system {system!r} needs a generator")
    kws, lens = [it.keyword for it in items], [it.length for it in items]
    if system == "basic":
        inter = generator.generate(kws, lens, n_samples=1, seed=seed)
        records += [_record("inter", i, p, (-1, -1)) for i, p in enumerate(inter)]
        for i, it in enumerate(items):
            group = generator.top_n_distinct(it.keyword, it.length, intra_n, seed=seed)
            records += [_record("intra", i, dataclass_replace_sample(p, j), (-1, -1)) for j, p in enumerate(group)]
        n_gen = len(items) * (1 + intra_n)
    else:
        samples = generator.generate(kws, lens, n_samples=intra_n, seed=seed)  # keyword-major
        for k, p in enumerate(samples):
            i = k // intra_n
            if p.sample == 0:
                records.append(_record("inter", i, p, (-1, -1)))
            records.append(_record("intra", i, p, (-1, -1)))
        n_gen = len(samples)
        if system in FACTOR_SYSTEMS:
            for mix in MIXTURES:
                poems = generator.generate(kws, lens, labels=mix, n_samples=1, seed=seed)
                records += [_record("mixture", i, p, mix) for i, p in enumerate(poems)]
                n_gen += len(poems)
    seconds = time.perf_counter() - t0
    log(f"{system} seed {seed}: {n_gen} poems in {seconds:.1f} s ({seconds / max(n_gen, 1) * 1000:.1f} ms/poem)")
    return SystemPoems(system, seed, records, seconds, n_gen)


def dataclass_replace_sample(poem: GeneratedPoem, sample: int) -> GeneratedPoem:
    """The same poem with its sample number set (top-N distinct poems all come back as sample 0)."""
    from dataclasses import replace
    return replace(poem, sample=sample)


def _save_json_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=None), encoding="utf-8")
    os.replace(tmp, path)


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
    return SystemPoems(obj["system"], int(obj["seed"]), obj["records"], float(obj["seconds"]),
                       int(obj["n_generated"]), key)


def save_cached(sp: SystemPoems, path: Path) -> None:
    """Write one system's poems (atomically) with their key."""
    _save_json_atomic({"key": sp.key, "system": sp.system, "seed": sp.seed, "seconds": sp.seconds,
                       "n_generated": sp.n_generated, "records": sp.records}, path)


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


def _ok_texts(records: Iterable[dict[str, Any]]) -> list[str]:
    return [r["text"] for r in records if r["ok"]]


def score_subset(sp: SystemPoems, scorers: Scorers, lengths: Sequence[int], seed: int) -> dict[str, float]:
    """Every metric of one system and seed on the poems of the given lengths (nan where not defined)."""
    from mixpoet_lib.train.judges import classify, lm_score

    keep = set(lengths)
    recs = [r for r in sp.records if r["length"] in keep]
    inter = [r for r in recs if r["role"] == "inter"]
    inter_ok = [r for r in inter if r["ok"]]
    texts = [r["text"] for r in inter_ok]
    out: dict[str, float] = {"n_inter": float(len(inter)), "n_poems": float(len(recs)),
                             "n_intra": float(sum(r["role"] == "intra" for r in recs)),
                             "n_mixture": float(sum(r["role"] == "mixture" for r in recs))}
    out["fail_rate"] = float(np.mean([not r["ok"] for r in recs])) if recs else math.nan
    out["relaxed_rate"] = float(np.mean([r["relaxation"] > 0 for r in recs])) if recs else math.nan
    kws = [r["keyword"] for r in inter_ok]
    out["inter_jaccard"] = inter_topic_jaccard(texts, scorers.max_pairs, seed, "char", kws)
    out["inter_jaccard_bigram"] = inter_topic_jaccard(texts, scorers.max_pairs, seed, "bigram", kws)
    for role, name in (("intra", "intra_jaccard"), ("mixture", "intra_jaccard_mix")):
        groups: dict[int, list[str]] = {}
        for r in recs:
            if r["role"] == role and r["ok"]:
                groups.setdefault(r["item"], []).append(r["text"])
        out[name] = intra_topic_jaccard(list(groups.values())) if groups else math.nan
    out["distinct_1"] = distinct_n(texts, 1)
    out["distinct_2"] = distinct_n(texts, 2)
    out["copy_rate"] = copy_rate(texts, scorers.training_lines)
    if texts:
        lm = lm_score(scorers.lm, texts).summary()
        out["lms"], out["lm_ppl"] = lm["mean_lms"], lm["corpus_ppl"]
        out["form_ok"] = form_pass_rate(texts, scorers.tone_rhyme)["ok"]
    else:
        out["lms"] = out["lm_ppl"] = out["form_ok"] = math.nan
    mix = [r for r in recs if r["role"] == "mixture" and r["ok"]]
    if mix:
        tags = classify(scorers.judges, [r["text"] for r in mix])
        pred = [[t[f]["label"] for f in FACTOR_NAMES] for t in tags]
        fc = factor_control_scores([r["requested"] for r in mix], pred,
                                   tuple(len(FACTOR_CLASSES[f]) for f in FACTOR_NAMES), FACTOR_NAMES)
        for f in FACTOR_NAMES:
            out[f"{f}_acc"] = float(fc[f]["accuracy"])  # type: ignore[index]
            out[f"{f}_f1"] = float(fc[f]["macro_f1"])  # type: ignore[index]
        out["joint_acc"] = float(fc["joint_accuracy"])  # type: ignore[arg-type]
    else:
        for f in FACTOR_NAMES:
            out[f"{f}_acc"] = out[f"{f}_f1"] = math.nan
        out["joint_acc"] = math.nan
    return out


def factor_confusions(sp: SystemPoems, judges: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per factor, the confusion matrix (rows requested, columns judged) of the mixture poems."""
    from mixpoet_lib.train.judges import classify

    mix = [r for r in sp.role("mixture") if r["ok"]]
    if not mix:
        return {}
    tags = classify(judges, [r["text"] for r in mix])
    pred = [[t[f]["label"] for f in FACTOR_NAMES] for t in tags]
    fc = factor_control_scores([r["requested"] for r in mix], pred,
                               tuple(len(FACTOR_CLASSES[f]) for f in FACTOR_NAMES), FACTOR_NAMES)
    return {f: np.asarray(fc[f]["confusion"]) for f in FACTOR_NAMES}  # type: ignore[index]


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
        rows = {}
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
    """Rows (system, metric) with mean, std (ddof 1 over seeds), n_seeds and n_poems for one length ('all', '5', '7')."""
    sub = scores[scores["length"] == str(length)]
    rows = []
    for (system, metric), grp in sub.groupby(["system", "metric"], sort=False):
        vals = grp["value"].astype(float)
        vals = vals[np.isfinite(vals)]
        mean, std, n = mean_std(vals.tolist())
        rows.append({"system": system, "metric": metric, "mean": mean, "std": std, "n_seeds": n,
                     "n_poems": int(grp["n_poems"].max()) if len(grp) else 0,
                     "deterministic": system in DETERMINISTIC})
    return pd.DataFrame(rows)


def results_table(summary: pd.DataFrame, metrics: Sequence[str] | None = None, digits: int = 3) -> pd.DataFrame:
    """Wide table: one row per system (paper order), one 'mean ± std' column per metric (— where undefined)."""
    metrics = list(metrics or METRICS)
    table = pd.DataFrame(index=[SYSTEM_TITLES[s] for s in SYSTEMS if s in set(summary["system"])])
    for m in metrics:
        col = {}
        for _, r in summary[summary["metric"] == m].iterrows():
            col[SYSTEM_TITLES[r["system"]]] = ("—" if not np.isfinite(r["mean"])
                                              else f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}")
        table[METRICS[m][0]] = pd.Series(col)
    return table.fillna("—")


def evaluate(profile: Profile, data: PreparedData, run_dir: str | Path, models: dict[str, Any],
             judges: dict[str, Any], lm: Any, systems: Sequence[str] = SYSTEMS, seeds: Sequence[int] | None = None,
             n_keywords: int | None = None, intra_n: int | None = None, weights: dict[str, str] | None = None,
             log: Callable[[str], None] = print, progress: bool = True) -> EvaluationResult:
    """Generate (or load from cache) and score every system on the same seeded keywords; see the module doc.

    ``models`` maps system → trained model (GT needs none); ``weights`` optionally maps system → a digest of
    its checkpoint file for the cache key (default: a digest of the model's state dict).
    """
    from tqdm.auto import tqdm

    from mixpoet_lib.data.rhythm import default_tone_rhyme

    ecfg = profile.eval
    seeds = tuple(ecfg.seeds if seeds is None else seeds)
    if not seeds:
        raise EvaluationError("no generation seeds given")
    n_keywords = ecfg.n_keywords if n_keywords is None else n_keywords
    intra_n = ecfg.intra_n if intra_n is None else intra_n
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise EvaluationError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    missing = [s for s in systems if s != "gt" and s not in models]
    if missing:
        raise EvaluationError(f"no trained model given for system(s) {missing}")
    items = test_items(data, n_keywords, profile.seed)
    tr = default_tone_rhyme()
    training_lines = frozenset(data.training_lines())
    scorers = Scorers(judges, lm, training_lines, tr, ecfg.max_pairs)
    weights = dict(weights or {})
    poems: dict[tuple[str, int], SystemPoems] = {}
    rows: list[dict[str, Any]] = []
    jobs = [(s, seed) for s in systems for seed in seeds]
    bar = tqdm(jobs, desc="evaluation", disable=not progress)
    generators: dict[str, Generator] = {}
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
                generators[system] = Generator(models[system], data.vocab, tr, training_lines, profile.gen)
            sp = generate_system(system, items, gen_seed, intra_n, generators.get(system), log)
            sp.key = key
            save_cached(sp, path)
        poems[(system, seed)] = sp
        for length in ("all", "5", "7"):
            lens = (5, 7) if length == "all" else (int(length),)
            metrics = score_subset(sp, scorers, lens, seed)
            counts = {k: int(metrics.pop(k)) for k in ("n_inter", "n_poems", "n_intra", "n_mixture")}
            for m, v in metrics.items():
                n = (counts["n_mixture"] if m.startswith(("living", "era", "joint", "intra_jaccard_mix"))
                     else counts["n_intra"] if m == "intra_jaccard"
                     else counts["n_poems"] if m in ("fail_rate", "relaxed_rate") else counts["n_inter"])
                rows.append({"system": system, "seed": seed, "length": length, "metric": m, "value": v,
                             "n_poems": n})
    bar.close()
    ceiling = {f: dict(getattr(j, "report", {}).get("test", {})) for f, j in judges.items()}
    from mixpoet_lib.train.judges import lm_score
    gt_all = [it.reference for it in items]
    ref = lm_score(lm, gt_all).summary()
    meta = {"profile": profile.name, "n_keywords": n_keywords, "intra_n": intra_n, "seeds": list(seeds),
            "systems": list(systems), "beam_size": profile.gen.beam_size, "weights": weights}
    return EvaluationResult(pd.DataFrame(rows), poems, items, ceiling, ref, seeds, meta)


def _state_digest(model: Any) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# claims and files
# ----------------------------------------------------------------------------------------------

def _stat(summary: pd.DataFrame, system: str, metric: str) -> tuple[float, float]:
    row = summary[(summary["system"] == system) & (summary["metric"] == metric)]
    if row.empty:
        return math.nan, math.nan
    return float(row["mean"].iloc[0]), float(row["std"].iloc[0])


def _compare(summary: pd.DataFrame, a: str, b: str, metric: str) -> tuple[str, str]:
    """Verdict of 'a is better than b on metric' and the evidence string."""
    (ma, sa), (mb, sb) = _stat(summary, a, metric), _stat(summary, b, metric)
    direction = METRICS[metric][1]
    if not (np.isfinite(ma) and np.isfinite(mb)):
        return "not measured", f"{SYSTEM_TITLES[a]} or {SYSTEM_TITLES[b]} has no {metric}"
    better = (ma - mb) * direction > 0
    clear = abs(ma - mb) > (sa + sb)
    verdict = ("supported" if clear else "weakly supported (within seed spread)") if better else \
        ("not supported" if clear else "not supported (within seed spread)")
    return verdict, f"{SYSTEM_TITLES[a]} {ma:.3f} ± {sa:.3f} vs {SYSTEM_TITLES[b]} {mb:.3f} ± {sb:.3f}"


def claims(summary: pd.DataFrame, main: str = "aus") -> pd.DataFrame:
    """The paper's qualitative claims checked against the measured summary (length 'all'), one row per comparison."""
    rows = []
    for base in ("basic", "cvae"):
        for metric, claim in (("inter_jaccard", "more diverse across keywords (inter-topic)"),
                              ("intra_jaccard", "more diverse for one keyword (intra-topic, N samples each)"),
                              ("intra_jaccard_mix", "more diverse for one keyword (6 mixtures vs the baseline's N samples)"),
                              ("lms", "quality not worse (LMS)")):
            if metric == "intra_jaccard_mix":
                # MixPoet's mixture groups against the baseline's own N-sample groups
                m_mean, m_std = _stat(summary, main, metric)
                b_mean, b_std = _stat(summary, base, "intra_jaccard")
                if np.isfinite(m_mean) and np.isfinite(b_mean):
                    better, clear = m_mean < b_mean, abs(m_mean - b_mean) > m_std + b_std
                    verdict = ("supported" if clear else "weakly supported (within seed spread)") if better else \
                        ("not supported" if clear else "not supported (within seed spread)")
                    ev = (f"{SYSTEM_TITLES[main]} {m_mean:.3f} ± {m_std:.3f} vs "
                          f"{SYSTEM_TITLES[base]} {b_mean:.3f} ± {b_std:.3f}")
                else:
                    verdict, ev = "not measured", "missing system"
            elif metric == "lms":
                verdict, ev = _compare(summary, main, base, metric)
                if verdict.startswith("not supported") and "within" in verdict:
                    verdict = "supported (not worse within seed spread)"
            else:
                verdict, ev = _compare(summary, main, base, metric)
            rows.append({"claim": f"{SYSTEM_TITLES[main]} vs {SYSTEM_TITLES[base]}: {claim}",
                         "metric": metric, "verdict": verdict, "evidence": ev})
    for f, chance in (("living", 1 / 3), ("era", 1 / 2)):
        m, s = _stat(summary, main, f"{f}_acc")
        if np.isfinite(m):
            verdict = "supported" if m - s > chance else ("weakly supported" if m > chance else "not supported")
            ev = f"judged accuracy {m:.3f} ± {s:.3f} vs chance {chance:.3f}"
        else:
            verdict, ev = "not measured", "no mixture poems"
        rows.append({"claim": f"{SYSTEM_TITLES[main]} controls the {f} factor", "metric": f"{f}_acc",
                     "verdict": verdict, "evidence": ev})
    verdict, ev = _compare(summary, main, "igs", "joint_acc")
    rows.append({"claim": f"{SYSTEM_TITLES[main]} controls the factors better than MixPoet-IGS (ablation)",
                 "metric": "joint_acc", "verdict": verdict, "evidence": ev})
    return pd.DataFrame(rows)


def write_results(result: EvaluationResult, run_dir: str | Path) -> dict[str, Path]:
    """Write ``results.csv`` (long summary, every length), ``results.json`` (with metadata) and the raw scores."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for length in ("all", "5", "7"):
        s = result.summary(length)
        s.insert(1, "length", length)
        parts.append(s)
    summary = pd.concat(parts, ignore_index=True)
    paths = {"csv": run_dir / "results.csv", "json": run_dir / "results.json", "scores": run_dir / "eval" / "scores.csv"}
    paths["scores"].parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(paths["csv"], index=False)
    result.scores.to_csv(paths["scores"], index=False)
    obj = {
        "meta": result.meta,
        "metrics": {k: {"title": t, "direction": d} for k, (t, d) in METRICS.items()},
        "systems": SYSTEM_TITLES,
        "summary": json.loads(summary.to_json(orient="records")),
        "judge_ceiling": {f: {k: v for k, v in c.items() if k in ("n", "accuracy", "macro_f1", "confusion")}
                          for f, c in result.judge_ceiling.items()},
        "lm_reference_gt": result.lm_reference,
        "seconds_per_poem": result.seconds_per_poem().to_dict(),
        "relaxations": json.loads(result.relaxations().to_json(orient="index")),
        "claims": json.loads(claims(result.summary()).to_json(orient="records")),
    }
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, paths["json"])
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
    lines = [header, sep] + ["| " + idx + " | " + " | ".join(str(v) for v in row) + " |"
                             for idx, row in zip(table.index, table.values)]
    return "\n".join(lines)
