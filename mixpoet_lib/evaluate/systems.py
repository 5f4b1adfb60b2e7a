"""The systems of the side-by-side evaluation, its seeded test keywords, and each system's poems, cached.

:func:`test_items` draws the keywords (half 5-, half 7-character, from ``unl_test``); :func:`generate_system`
writes one system's inter, intra and mixture poems for them at one seed (or collects the human poems for
``gt``); :func:`load_cached` / :func:`save_cached` keep them as JSON under ``<run_dir>/eval/poems/`` keyed by
:func:`cache_key` (items, generation settings, seed, weights digest), so a re-run only scores. Each cache file
carries a digest of its content; one that no longer matches it is generated again (files written before the
digest existed, such as the committed reference run's, are read as they are).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mixpoet_lib._util import digest, write_text_atomic
from mixpoet_lib.config import Profile
from mixpoet_lib.data.corpora import LINE_LENGTHS, MAX_KEYWORD_CHARS
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.data.vocab import N_SPECIALS
from mixpoet_lib.evaluate.analysis import MIXTURES
from mixpoet_lib.generate.generator import Generator
from mixpoet_lib.generate.poems import GeneratedPoem

__all__ = [
    "SYSTEMS",
    "SYSTEM_TITLES",
    "FACTOR_SYSTEMS",
    "DETERMINISTIC",
    "EVAL_FORMAT",
    "MIN_INTRA_N",
    "EvaluationError",
    "TestItem",
    "test_items",
    "SystemPoems",
    "cache_key",
    "state_digest",
    "generate_system",
    "poems_path",
    "load_cached",
    "load_stored",
    "save_cached",
]

SYSTEMS: tuple[str, ...] = ("gt", "basic", "fbasic", "cvae", "igs", "aus", "aus_st")
SYSTEM_TITLES: dict[str, str] = {
    "gt": "GT (human)",
    "basic": "Basic",
    "fbasic": "fBasic",
    "cvae": "CVAE",
    "igs": "MixPoet-IGS",
    "aus": "MixPoet-AUS",
    "aus_st": "MixPoet-AUS-ST",
}
FACTOR_SYSTEMS: frozenset[str] = frozenset({"fbasic", "igs", "aus", "aus_st"})  # they write one poem per mixture
DETERMINISTIC: frozenset[str] = frozenset({"gt", "basic", "fbasic"})  # no latent: the same poems for every seed
EVAL_FORMAT = 1
# Generation settings added after poem caches were committed: in the cache key only when set away from this default,
# so the committed runs' poems stay valid.
GEN_IF_SET: dict[str, Any] = {"mixture_contrast": 0.0, "generic_per_label": False}
MIN_INTRA_N = 2  # poems per keyword in an intra-topic group (Jaccard needs pairs)
NO_LABELS = (-1, -1)  # the 'requested' labels of a poem generated without a requested mixture


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
    n_lengths = len(LINE_LENGTHS)
    if n_keywords < n_lengths or n_keywords % n_lengths:
        raise EvaluationError(f"n_keywords must be an even number ≥ 2, got {n_keywords}")
    vocab = data.vocab
    poems = data.poems(split)
    rng = np.random.default_rng(seed)
    items: list[TestItem] = []
    per_length = n_keywords // n_lengths
    for length in LINE_LENGTHS:
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
                    if 1 <= len(k) <= MAX_KEYWORD_CHARS and all(ch in vocab and vocab.id(ch) >= N_SPECIALS for ch in k)
                ),
                None,
            )
            if kw is None or kw in seen:
                continue
            seen.add(kw)
            picked.append(TestItem(kw, length, "|".join(poem.lines), poem.origin))
            if len(picked) == per_length:
                break
        if len(picked) < per_length:
            raise EvaluationError(
                f"{split} has only {len(picked)} distinct usable keywords for {length}-character "
                f"poems; asked for {per_length}"
            )
        items.extend(picked)
    return items


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
            "gen": {k: v for k, v in asdict(profile.gen).items() if k not in GEN_IF_SET or v != GEN_IF_SET[k]},
            "intra_n": intra_n,
            "weights": weights,
        }
    )


def state_digest(model: Any) -> str:
    """A digest of a model's weights (the default weights part of the cache key)."""
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
    """One beam result per keyword (inter) and the top-N distinct ones (intra): Basic and fBasic have no randomness
    (fBasic writes them with its "unknown" labels)."""
    inter = generator.generate([it.keyword for it in items], [it.length for it in items], n_samples=1, seed=seed)
    records = [_record("inter", i, p, NO_LABELS) for i, p in enumerate(inter)]
    groups = generator.top_n_distinct([it.keyword for it in items], [it.length for it in items], intra_n, seed=seed)
    for k, p in enumerate(groups):  # keyword-major: intra_n poems per item
        records.append(_record("intra", k // intra_n, replace(p, sample=k % intra_n), NO_LABELS))
    return records


def _mixture_records(generator: Generator, items: Sequence[TestItem], seed: int) -> list[dict[str, Any]]:
    """One poem per keyword under each of the six (living, era) mixtures, requested as given."""
    kws, lens = [it.keyword for it in items], [it.length for it in items]
    records: list[dict[str, Any]] = []
    for mix in MIXTURES:
        poems = generator.generate(kws, lens, labels=mix, n_samples=1, seed=seed)
        records += [_record("mixture", i, p, mix) for i, p in enumerate(poems)]
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
        records += _mixture_records(generator, items, seed)
        n_gen += len(MIXTURES) * len(items)
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
    if intra_n < MIN_INTRA_N:
        raise EvaluationError(f"intra_n must be ≥ 2, got {intra_n}")
    t0 = time.perf_counter()
    if system == "gt":
        return SystemPoems(system, seed, _gt_records(items), time.perf_counter() - t0, 0)
    if generator is None:
        raise EvaluationError(f"system {system!r} needs a generator")
    if system in ("basic", "fbasic"):
        records, n_gen = _basic_records(generator, items, seed, intra_n), len(items) * (1 + intra_n)
        if system in FACTOR_SYSTEMS:
            records += _mixture_records(generator, items, seed)
            n_gen += len(MIXTURES) * len(items)
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
    if not isinstance(obj, dict) or obj.get("key") != key:
        return None
    if "digest" in obj and obj["digest"] != digest({k: v for k, v in obj.items() if k != "digest"}, 64):
        return None  # damaged: generate again
    return SystemPoems(
        obj["system"], int(obj["seed"]), obj["records"], float(obj["seconds"]), int(obj["n_generated"]), key
    )


def load_stored(path: Path) -> SystemPoems:
    """The poems stored at ``path`` under their own key; a missing, unreadable or damaged file raises ValueError."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: no readable poems file ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or not {"key", "system", "seed", "records"} <= set(obj):
        raise ValueError(f"{path}: not a poems file (it lacks key, system, seed or records)")
    sp = load_cached(path, obj["key"])
    if sp is None:
        raise ValueError(f"{path}: its digest does not match its content (damaged); generate the poems again")
    return sp


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
    obj["digest"] = digest(obj, 64)
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False))  # fields in this order, one line
