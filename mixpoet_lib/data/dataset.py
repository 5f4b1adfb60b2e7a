"""From verified raw files to training-ready arrays: splits, de-duplication, keywords, vocabulary, instances.

Two cached stages, each in its own folder under ``<data>/processed`` named by a hash of its inputs
(the sha256 of every raw file used, the settings, the pipeline version):

1. **corpus** — every source parsed and validated, poems de-duplicated across sources, evaluation
   splits carved out so that none of their poems is in a training pool, keywords extracted where a
   source has none. Stored as JSON lines, one file per split.
2. **dataset** — the vocabulary (JSON), one instance per (poem, keyword) (design §2.6), the seeded
   sub-sample of unlabelled training instances, all as ``.npz`` integer arrays (no pickle), the
   training-line library for the novelty filter and ``summary.json``.

A folder is written under a temporary name and renamed when complete, so an interrupted run never
leaves a half cache behind (the next run removes the temporary folder of a killed one), and a finished stage
is reused by the next run. Each folder ends with ``manifest.json``: the size and sha256 of every file in it.
A stage is reused only when every file it needs is listed there and still has that size and digest; a
missing, truncated or altered file (or a folder without a manifest, made by an older version of the kit)
makes :func:`prepare` rebuild the stage, or, where the data folder is read-only, stop with a one-line error
naming the file. When the corpus stage is rebuilt, every raw file is hashed again first.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixpoet_lib import paths as _paths
from mixpoet_lib._util import digest, remove_stale_parts, write_json_atomic
from mixpoet_lib.config import DataConfig, Profile
from mixpoet_lib.data.cache import build_cache, usable_cache
from mixpoet_lib.data.corpora import (
    LINE_LENGTHS,
    Poem,
    SkipLog,
    label_table,
    load_ccpc,
    load_chinese_poetry,
    load_cqcf,
    normalised_key,
)
from mixpoet_lib.data.fetch import ensure_raw
from mixpoet_lib.data.keywords import extract_keywords
from mixpoet_lib.data.registry import RawFile, select
from mixpoet_lib.data.vocab import N_SPECIALS, PAD, Vocab, build_vocab

PIPELINE_VERSION = 1
SPLITS = ("cqcf_train", "cqcf_valid", "cqcf_test", "unl_train", "unl_valid", "unl_test")
TRAIN_SPLITS = ("unl_train", "cqcf_train")
EVAL_SPLITS = ("cqcf_valid", "cqcf_test", "unl_valid", "unl_test")
CQCF_FILES = {
    "cqcf_train": "mixpoet/cqcf_train_sample.json",
    "cqcf_valid": "mixpoet/cqcf_valid_sample.json",
    "cqcf_test": "mixpoet/cqcf_test_sample.json",
}
CCPC_FILES = {"valid": "thu-aipoet/CCPC/ccpc_valid_v1.0.json", "test": "thu-aipoet/CCPC/ccpc_test_v1.0.json"}
CORPUS_FILES = (*(f"{s}.jsonl" for s in SPLITS), "corpus.json")
DATASET_FILES = ("vocab.json", *(f"{s}.npz" for s in SPLITS), "training_lines.txt", "summary.json")
CORPUS_FIELDS = (
    "chinese_poetry_sets",
    "chinese_poetry_max_files",
    "unlabelled_valid_poems",
    "unlabelled_test_poems",
    "max_keywords",
    "seed",
)

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def required_files(cfg: DataConfig) -> list[RawFile]:
    """Return the registry entries the data pipeline reads for these settings."""
    groups = ["cqcf", "ccpc", "crrd", "test_inps", *cfg.chinese_poetry_sets]
    return select(groups, {s: cfg.chinese_poetry_max_files for s in cfg.chinese_poetry_sets})


def corpus_key(cfg: DataConfig, files: list[RawFile]) -> str:
    """Return the cache key of the corpus stage (raw file hashes + corpus settings + version)."""
    settings = {k: getattr(cfg, k) for k in CORPUS_FIELDS}
    return digest({"v": PIPELINE_VERSION, "files": sorted((f.name, f.sha256) for f in files), "cfg": settings})


def dataset_key(cfg: DataConfig, corpus: str) -> str:
    """Return the cache key of the dataset stage (corpus key + every data setting + version)."""
    return digest({"v": PIPELINE_VERSION, "corpus": corpus, "cfg": cfg.cache_dict()})


# --------------------------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    """Poems per split plus the book-keeping of how they were obtained."""

    splits: dict[str, list[Poem]]
    read: dict[str, int] = field(default_factory=dict)  # poems kept after parsing, per source
    skips: SkipLog = field(default_factory=SkipLog)
    duplicates: Counter = field(default_factory=Counter)  # (source, split that already had it) → n
    keywords_extracted: int = 0
    label_stats: dict[str, dict[str, int]] = field(default_factory=dict)  # CQCF files as read (design §2.3)

    def meta(self) -> dict[str, Any]:
        """Return the book-keeping as JSON-able data."""
        return {
            "read": self.read,
            "skipped": self.skips.as_rows(),
            "duplicates": [{"source": s, "kept_in": k, "count": n} for (s, k), n in sorted(self.duplicates.items())],
            "keywords_extracted": self.keywords_extracted,
            "labels": self.label_stats,
        }


def build_corpus(raw: dict[str, Path], cfg: DataConfig, log: Log = _quiet) -> Corpus:
    """Parse every source, de-duplicate, carve the evaluation splits and fill in missing keywords."""
    skips = SkipLog()
    cqcf = {split: load_cqcf(raw[name]) for split, name in CQCF_FILES.items()}
    ccpc = {part: load_ccpc(raw[name], skips) for part, name in CCPC_FILES.items()}
    classical: list[Poem] = []
    read = {split: len(p) for split, p in cqcf.items()}
    read.update({f"ccpc_{part}": len(p) for part, p in ccpc.items()})
    for name in sorted(n for n in raw if n.startswith("chinese-poetry/") and n.endswith(".json")):
        source = "tang" if ".tang." in name else "song"
        if source not in cfg.chinese_poetry_sets:
            continue
        got = load_chinese_poetry(raw[name], skips, source)
        read[source] = read.get(source, 0) + len(got)
        classical.extend(got)
    log(f"parsed: {read}")

    seen: dict[str, str] = {}
    duplicates: Counter = Counter()
    splits: dict[str, list[Poem]] = {s: [] for s in SPLITS}

    def claim(poem: Poem, split: str) -> None:
        key = normalised_key(poem)
        if key in seen:
            duplicates[(poem.source, seen[key])] += 1
            return
        seen[key] = split
        splits[split].append(poem)

    # Evaluation splits claim their poems first, so no evaluation poem can enter a training pool.
    for split in ("cqcf_test", "cqcf_valid", "cqcf_train"):
        for poem in cqcf[split]:
            claim(poem, split)
    rng = random.Random(cfg.seed)
    for split, part, n in (
        ("unl_test", "test", cfg.unlabelled_test_poems),
        ("unl_valid", "valid", cfg.unlabelled_valid_poems),
    ):
        fresh: dict[str, int] = {}
        for i, p in enumerate(ccpc[part]):
            fresh.setdefault(normalised_key(p), i)
        fresh_idx = [i for k, i in fresh.items() if k not in seen]
        chosen = set(rng.sample(fresh_idx, min(n, len(fresh_idx))))
        for i in sorted(chosen):
            claim(ccpc[part][i], split)
        ccpc[part] = [p for i, p in enumerate(ccpc[part]) if i not in chosen]
    for poem in ccpc["valid"] + ccpc["test"] + classical:
        claim(poem, "unl_train")

    n_missing = _fill_keywords(splits, cfg.max_keywords, log)
    stats = {split: label_table(poems) for split, poems in cqcf.items()}
    pairs = Counter(f"{a} {b}" for a, b in (p.labels for p in cqcf["cqcf_train"]))
    stats["cqcf_train_pairs"] = dict(pairs.most_common())
    return Corpus(splits, read, skips, duplicates, n_missing, stats)


def _fill_keywords(splits: dict[str, list[Poem]], max_keywords: int, log: Log) -> int:
    """Give the unlabelled training poems without keywords some (TF-IDF over jieba); return how many got them."""
    pool = splits["unl_train"]
    missing = [i for i, p in enumerate(pool) if not p.keywords]
    if missing:
        user_words = {w for s in SPLITS for p in splits[s] for w in p.keywords}
        log(f"extracting keywords for {len(missing)} poems (TF-IDF over jieba)")
        found = extract_keywords([pool[i].lines for i in missing], max_keywords, user_words)
        for i, words in zip(missing, found):
            p = pool[i]
            pool[i] = Poem(p.lines, words, p.labels, p.source, p.origin)
    return len(missing)


def _save_corpus(corpus: Corpus, folder: Path) -> None:
    for split, poems in corpus.splits.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for p in poems:
                fh.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")
    write_json_atomic(folder / "corpus.json", corpus.meta(), sort_keys=False)


def _load_corpus(folder: Path) -> Corpus:
    splits = {}
    for split in SPLITS:
        with open(folder / f"{split}.jsonl", encoding="utf-8") as fh:
            splits[split] = [Poem.from_json(json.loads(line)) for line in fh]
    meta = json.loads((folder / "corpus.json").read_text(encoding="utf-8"))
    skips = SkipLog()
    for row in meta["skipped"]:
        skips.counts[(row["source"], row["reason"])] = row["count"]
        skips.examples[(row["source"], row["reason"])] = row["example"]
    dups = Counter({(r["source"], r["kept_in"]): r["count"] for r in meta["duplicates"]})
    return Corpus(splits, meta["read"], skips, dups, meta["keywords_extracted"], meta["labels"])


# -------------------------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class SplitArrays:
    """Integer arrays of one split: poems once, instances as (keyword ids, poem index)."""

    chars: np.ndarray  # (P, 4, 7) int32 character ids, PAD after the line end
    length: np.ndarray  # (P,) int8, 5 or 7
    labels: np.ndarray  # (P, 2) int8, -1 = unlabelled
    keyword: np.ndarray  # (N, 2) int32 keyword character ids, PAD-padded
    poem_index: np.ndarray  # (N,) int32 index into the poem arrays

    @property
    def n_instances(self) -> int:
        """Number of (keyword, poem) instances."""
        return int(self.poem_index.shape[0])

    def instance_labels(self) -> np.ndarray:
        """Return the (N, 2) labels of every instance."""
        return self.labels[self.poem_index]


def encode_split(poems: list[Poem], vocab: Vocab, instance_ids: np.ndarray | None = None) -> SplitArrays:
    """Encode poems and their (keyword, poem) instances; optionally keep only some instance ids."""
    chars = np.full((len(poems), 4, 7), PAD, dtype=np.int32)
    length = np.zeros(len(poems), dtype=np.int8)
    labels = np.zeros((len(poems), 2), dtype=np.int8)
    kw_rows, owners = [], []
    for i, p in enumerate(poems):
        for j, line in enumerate(p.lines):
            chars[i, j, : len(line)] = vocab.encode(line)
        length[i] = p.length
        labels[i] = p.labels
        for word in p.keywords:
            kw_rows.append(vocab.encode(word) + [PAD] * (2 - len(word)))
            owners.append(i)
    keyword = np.asarray(kw_rows, dtype=np.int32).reshape(-1, 2)
    poem_index = np.asarray(owners, dtype=np.int32)
    if instance_ids is not None:
        keyword, poem_index = keyword[instance_ids], poem_index[instance_ids]
    return SplitArrays(chars, length, labels, keyword, poem_index)


def count_instances(poems: list[Poem]) -> int:
    """Number of (keyword, poem) instances the poems expand to."""
    return sum(len(p.keywords) for p in poems)


def subsample_instances(n_total: int, n_keep: int | None, seed: int) -> np.ndarray | None:
    """Return sorted, seeded instance ids to keep (None = keep all)."""
    if n_keep is None or n_keep >= n_total:
        return None
    if n_keep < 1:
        raise ValueError(f"unlabelled_train_instances must be ≥ 1 or None, got {n_keep}")
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n_keep, replace=False))


@dataclass
class PreparedData:
    """A finished, cached dataset: vocabulary, per-split arrays and poems, summary."""

    root: Path
    corpus_root: Path

    @cached_property
    def vocab(self) -> Vocab:
        """The character vocabulary."""
        return Vocab.load(self.root / "vocab.json")

    @cached_property
    def summary(self) -> dict[str, Any]:
        """The summary written at preparation time."""
        return json.loads((self.root / "summary.json").read_text(encoding="utf-8"))

    def arrays(self, split: str) -> SplitArrays:
        """Load one split's arrays."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        with np.load(self.root / f"{split}.npz", allow_pickle=False) as z:
            return SplitArrays(**{k: z[k] for k in SplitArrays.__dataclass_fields__})

    def poems(self, split: str) -> list[Poem]:
        """Load one split's poems (text, keywords, labels, origin)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        with open(self.corpus_root / f"{split}.jsonl", encoding="utf-8") as fh:
            return [Poem.from_json(json.loads(line)) for line in fh]

    def training_lines(self) -> set[str]:
        """Every line of every training poem (the novelty filter's library)."""
        return set((self.root / "training_lines.txt").read_text(encoding="utf-8").split())


def build_dataset(corpus: Corpus, cfg: DataConfig, folder: Path, log: Log = _quiet) -> None:
    """Write vocabulary, encoded splits, training lines and the summary into ``folder``."""
    train_poems = corpus.splits["unl_train"] + corpus.splits["cqcf_train"]
    vocab = build_vocab((p.content for p in train_poems), cfg.min_char_freq, cfg.max_vocab)
    vocab.save(folder / "vocab.json")
    keep = subsample_instances(count_instances(corpus.splits["unl_train"]), cfg.unlabelled_train_instances, cfg.seed)
    instances = {}
    for split in SPLITS:
        arrays = encode_split(corpus.splits[split], vocab, keep if split == "unl_train" else None)
        np.savez_compressed(
            folder / f"{split}.npz", **{k: getattr(arrays, k) for k in SplitArrays.__dataclass_fields__}
        )
        instances[split] = arrays.n_instances
    lines = sorted({line for p in train_poems for line in p.lines})
    (folder / "training_lines.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json_atomic(folder / "summary.json", make_summary(corpus, vocab, instances, cfg), sort_keys=False)
    log(f"dataset written: vocabulary {len(vocab)}, instances {instances}")


def make_summary(corpus: Corpus, vocab: Vocab, instances: dict[str, int], cfg: DataConfig) -> dict[str, Any]:
    """Collect the counts ``mixpoet data prepare`` prints and notebook 01 shows."""
    per_source: dict[str, dict[str, int]] = {}
    for split, poems in corpus.splits.items():
        for p in poems:
            per_source.setdefault(p.source, Counter())[split] += 1
    lengths = {
        split: {f"{n}-char": sum(p.length == n for p in ps) for n in LINE_LENGTHS}
        for split, ps in corpus.splits.items()
    }
    eval_chars = "".join(p.content.replace("|", "") for s in EVAL_SPLITS for p in corpus.splits[s])
    unk = sum(ch not in vocab for ch in eval_chars) / max(1, len(eval_chars))
    return {
        "pipeline_version": PIPELINE_VERSION,
        "settings": cfg.cache_dict(),
        "poems_per_source": {src: dict(sorted(c.items())) for src, c in sorted(per_source.items())},
        "poems_per_split": {s: len(p) for s, p in corpus.splits.items()},
        "instances_per_split": instances,
        "line_lengths": lengths,
        "vocab_size": len(vocab),
        "eval_unk_rate": round(unk, 5),
        **corpus.meta(),
    }


def prepare(
    profile: Profile, data_dir: str | Path | None = None, mirror: str | Path | None = None, log: Log = _quiet
) -> PreparedData:
    """Fetch/verify the raw files the profile's data settings need, then build (or reuse) both caches."""
    if not isinstance(profile, Profile):
        raise TypeError(f"prepare() takes a Profile (e.g. get_profile('smoke')), got {type(profile).__name__}")
    cfg = profile.data
    data = _paths.data_dir(data_dir)
    processed = _paths.processed_dir(data)
    remove_stale_parts(processed)  # temporary folders of a killed run
    files = required_files(cfg)
    ckey = corpus_key(cfg, files)
    croot = processed / f"corpus-{ckey}"
    droot = processed / f"dataset-{dataset_key(cfg, ckey)}"
    corpus_ok = usable_cache(croot, CORPUS_FILES, "corpus", log)
    raw = ensure_raw(files, data_dir=data, mirror=mirror, rehash=not corpus_ok)  # the corpus will read every byte
    corpus = None
    if not corpus_ok:
        log(f"building corpus {croot.name}")
        corpus = build_corpus(raw, cfg, log)
        build_cache(croot, lambda tmp: _save_corpus(corpus, tmp))  # type: ignore[arg-type]
    if not usable_cache(droot, DATASET_FILES, "dataset", log):
        log(f"building dataset {droot.name}")
        corpus = corpus or _load_corpus(croot)
        build_cache(droot, lambda tmp: build_dataset(corpus, cfg, tmp, log))
    return PreparedData(droot, croot)


def format_summary(summary: dict[str, Any]) -> str:
    """Render the summary as the plain-text tables printed by ``mixpoet data prepare``."""
    out = []
    src = pd.DataFrame(summary["poems_per_source"]).T.fillna(0).astype(int)
    src = src.reindex(columns=[s for s in SPLITS if s in src.columns])
    src.loc["total"] = src.sum()
    out.append("Poems per source and split\n" + src.to_string())
    out.append("Instances (one per keyword) per split\n" + pd.Series(summary["instances_per_split"]).to_string())
    labels = {k: v for k, v in summary["labels"].items() if k in CQCF_FILES}
    out.append(
        "CQCF labels per factor class (poems as read, before de-duplication)\n" + pd.DataFrame(labels).T.to_string()
    )
    out.append("5- / 7-character poems\n" + pd.DataFrame(summary["line_lengths"]).T.to_string())
    out.append(
        f"Vocabulary size: {summary['vocab_size']} (incl. {N_SPECIALS} specials); "
        f"UNK rate on evaluation splits: {summary['eval_unk_rate']:.3%}"
    )
    skipped = pd.DataFrame(summary["skipped"])
    if len(skipped):
        out.append("Skipped records by reason\n" + skipped.to_string(index=False))
    dups = pd.DataFrame(summary["duplicates"])
    if len(dups):
        out.append("Duplicates dropped (source → split that already held the poem)\n" + dups.to_string(index=False))
    out.append(f"Keywords extracted by TF-IDF for {summary['keywords_extracted']} poems")
    return "\n\n".join(out)
