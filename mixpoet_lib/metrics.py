"""Evaluation metrics as pure functions (design §6, docs/metrics.md; top-K concentration, design §7.1).

Poems are strings with the lines joined by ``'|'`` (the kit's ``Poem.content``) or sequences of lines.

Conventions (each one also stated in the function's docstring):

* **Units.** Characters, excluding the line separator, whitespace and every Unicode punctuation, symbol,
  separator or control character; bigrams are pairs of adjacent characters *within* a line (punctuation
  inside a line also breaks a bigram, so no bigram spans it); words are jieba's segmentation of each run of
  unit characters (:func:`segment`: default dictionary, HMM off, so deterministic). ``"word"`` keeps the words
  of two or more characters (the unit whose inter-topic Jaccard on human poems matches the paper's 0.12 %,
  ``docs/metrics.md``), ``"word_all"`` every word.
* **Jaccard.** J(A, B) = |A ∩ B| / |A ∪ B|; two empty sets count as identical (J = 1, as
  ``scipy.spatial.distance.jaccard`` gives distance 0). Lower means more diverse.
* **Nothing to average.** Shares and means over an empty input are ``nan`` (never a made-up 0).
* **Macro-F1** follows ``sklearn.metrics.f1_score(y_true, y_pred, labels=range(n_classes), average="macro")``
  with the default ``zero_division``: every class 0..n_classes-1 takes part, F1_c = 2·TP/(2·TP + FP + FN),
  and a class absent from both ``y_true`` and ``y_pred`` (0/0) scores 0 — without sklearn's warning.
* **Std** is the sample standard deviation (ddof = 1); one value gives std 0, none gives nan.
* **Inter-topic pairs.** Poem i is the poem of keyword i. All n(n-1)/2 pairs are scored when they are at
  most ``max_pairs``; otherwise ``max_pairs`` distinct pairs are drawn without replacement with
  ``numpy.random.default_rng(seed)``. With ``keywords`` given, pairs sharing a keyword are dropped (after
  sampling).
* **Top-K accumulated frequency** plateaus at 1.0 once K exceeds the number of distinct characters.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import jieba
import numpy as np

from mixpoet_lib.data.corpora import N_LINES
from mixpoet_lib.data.rhythm import ToneRhyme, check_poem, check_verse

PoemLike = str | Sequence[str]
UNIT_KINDS = ("char", "bigram", "word", "word_all")
PAIR = 2  # poems a pairwise similarity needs
MIN_WORD_CHARS = 2  # the "word" unit keeps jieba words of at least this many characters

__all__ = [
    "UNIT_KINDS",
    "split_lines",
    "is_unit_char",
    "segment",
    "units",
    "jaccard",
    "inter_topic_jaccard",
    "intra_topic_jaccard",
    "distinct_n",
    "copy_rate",
    "accuracy",
    "macro_f1",
    "per_class_f1",
    "confusion_matrix",
    "per_class_recall",
    "form_pass_rate",
    "human_closeness",
    "keyword_rate",
    "doubled_rates",
    "shared_line_rate",
    "mean_std",
    "topk_accumulated_frequency",
    "pair_from_index",
    "factor_control_scores",
]


def split_lines(poem: PoemLike) -> list[str]:
    """Return the lines of a poem given as a '|'-joined string (newlines also split) or a sequence of lines."""
    if isinstance(poem, str):
        return [line.strip() for line in poem.replace("\n", "|").split("|")]
    return [str(line).strip() for line in poem]


def is_unit_char(ch: str) -> bool:
    """True for a character that counts as a unit (not punctuation, symbol, separator, whitespace or control)."""
    return unicodedata.category(ch)[0] not in "PSZC"


def _segments(line: str) -> list[str]:
    """Split one line at every non-unit character (runs of unit characters only)."""
    out, cur = [], []
    for ch in line:
        if is_unit_char(ch):
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def _ngrams(poem: PoemLike, n: int) -> list[str]:
    """All n-grams of unit characters within lines, in order, with repeats."""
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    grams: list[str] = []
    for line in split_lines(poem):
        for seg in _segments(line):
            grams.extend(seg[i : i + n] for i in range(len(seg) - n + 1))
    return grams


@functools.cache
def _tokenizer() -> jieba.Tokenizer:
    """jieba's default-dictionary tokenizer, built once (its loading messages kept off stderr)."""
    tok = jieba.Tokenizer()
    level = jieba.default_logger.level
    jieba.default_logger.setLevel(logging.WARNING)
    try:
        tok.initialize()
    finally:
        jieba.default_logger.setLevel(level)
    return tok


@functools.lru_cache(maxsize=1 << 17)
def segment(line: str) -> tuple[str, ...]:
    """jieba words of one line, punctuation and separators dropped (dictionary only, HMM off; cached)."""
    return tuple(w for seg in _segments(line) for w in _tokenizer().lcut(seg, HMM=False))


def _words(poem: PoemLike, min_chars: int = 1) -> list[str]:
    """All words of a poem's lines, in order, with repeats (only those of at least ``min_chars`` characters)."""
    return [w for line in split_lines(poem) for w in segment(line) if len(w) >= min_chars]


def units(poem: PoemLike, kind: str = "char") -> frozenset[str]:
    """Return the set S(p) of a poem's units: characters, bigrams within lines, or jieba words (see the module doc)."""
    if kind == "char":
        return frozenset(_ngrams(poem, 1))
    if kind == "bigram":
        return frozenset(_ngrams(poem, 2))
    if kind == "word":
        return frozenset(_words(poem, MIN_WORD_CHARS))
    if kind == "word_all":
        return frozenset(_words(poem))
    raise ValueError(f"unknown unit kind {kind!r}; choose one of {', '.join(UNIT_KINDS)}")


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """Jaccard similarity |A∩B| / |A∪B| of two unit collections (as sets); two empty sets give 1.0."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return 1.0 if union == 0 else len(sa & sb) / union


def pair_from_index(k: np.ndarray | int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map linear indices 0 ≤ k < n(n-1)/2 to the unordered pairs (i < j) in row-major order (0,1),(0,2),…,(n-2,n-1)."""
    k = np.asarray(k, dtype=np.int64)
    # row i starts at s(i) = i·n − i(i+1)/2; invert with the quadratic formula, then fix rounding.
    i = np.floor((2 * n - 1 - np.sqrt((2.0 * n - 1) ** 2 - 8.0 * k)) / 2).astype(np.int64)
    start = i * n - i * (i + 1) // 2
    too_far = start > k
    i = np.where(too_far, i - 1, i)
    start = i * n - i * (i + 1) // 2
    nxt = (i + 1) * n - (i + 1) * (i + 2) // 2
    past = k >= nxt
    i = np.where(past, i + 1, i)
    start = np.where(past, nxt, start)
    return i, k - start + i + 1


def inter_topic_jaccard(
    poems_by_keyword: Sequence[PoemLike],
    max_pairs: int = 100_000,
    seed: int = 0,
    kind: str = "char",
    keywords: Sequence[str] | None = None,
) -> float:
    """Mean J over poem pairs with different keywords (poem i ↔ keyword i).

    All pairs are scored if there are at most ``max_pairs``, else a seeded sample of ``max_pairs`` of them.
    """
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be ≥ 1, got {max_pairs}")
    if keywords is not None and len(keywords) != len(poems_by_keyword):
        raise ValueError(f"{len(keywords)} keywords for {len(poems_by_keyword)} poems")
    sets = [units(p, kind) for p in poems_by_keyword]
    n = len(sets)
    total = n * (n - 1) // 2
    if total == 0:
        return math.nan
    if total <= max_pairs:
        ii, jj = np.triu_indices(n, k=1)
    else:
        ks = np.random.default_rng(seed).choice(total, size=max_pairs, replace=False)
        ii, jj = pair_from_index(np.sort(ks), n)
    scores = [
        jaccard(sets[i], sets[j])
        for i, j in zip(ii.tolist(), jj.tolist())
        if keywords is None or keywords[i] != keywords[j]
    ]
    return float(np.mean(scores)) if scores else math.nan


def _mean_pairwise(sets: Sequence[frozenset[str]]) -> float:
    scores = [jaccard(sets[i], sets[j]) for i in range(len(sets)) for j in range(i + 1, len(sets))]
    return float(np.mean(scores)) if scores else math.nan


def intra_topic_jaccard(groups: Sequence[Sequence[PoemLike]], kind: str = "char") -> float:
    """Mean pairwise J within each keyword's group, averaged over groups (groups of < 2 poems skipped; none → nan)."""
    per_group = [_mean_pairwise([units(p, kind) for p in g]) for g in groups if len(g) >= PAIR]
    return float(np.mean(per_group)) if per_group else math.nan


def distinct_n(poems: Sequence[PoemLike], n: int) -> float:
    """Distinct-n: distinct n-grams / all n-grams over all poems (n-grams within lines; no n-gram → nan)."""
    grams = [g for p in poems for g in _ngrams(p, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def copy_rate(poems: Sequence[PoemLike], training_lines: Iterable[str]) -> float:
    """Share of generated lines (empty lines included) that appear verbatim among the training lines (no line → nan)."""
    library = training_lines if isinstance(training_lines, (set, frozenset)) else set(training_lines)
    lines = [line for p in poems for line in split_lines(p)]
    return sum(line in library for line in lines) / len(lines) if lines else math.nan


def _labels(y: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(y, dtype=np.int64).reshape(-1)


def accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Share of positions where prediction equals truth (empty → nan)."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} items, y_pred {p.size}")
    return float((t == p).mean()) if t.size else math.nan


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """(n_classes, n_classes) int64 counts, rows = true class, columns = predicted class.

    Labels outside 0..n_classes-1 raise ValueError.
    """
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} items, y_pred {p.size}")
    for name, y in (("y_true", t), ("y_pred", p)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} holds labels outside 0..{n_classes - 1}: {sorted(set(y.tolist()))}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of every class, 2·TP/(2·TP+FP+FN); a class absent from truth and prediction scores 0 (sklearn default)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(float)
    denom = 2 * tp + (cm.sum(0) - tp) + (cm.sum(1) - tp)
    return np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)


def per_class_recall(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """Recall of every class, TP / (TP + FN); nan for a class absent from ``y_true`` (nothing to recall)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(1).astype(float)
    return np.divide(np.diag(cm).astype(float), support, out=np.full(n_classes, math.nan), where=support > 0)


def macro_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int) -> float:
    """The kit's one macro-F1: the mean of :func:`per_class_f1` over all n_classes; empty → nan.

    Equal to sklearn's ``f1_score(y_true, y_pred, labels=range(n_classes), average="macro")``.
    """
    if _labels(y_true).size == 0:
        return math.nan
    return float(per_class_f1(y_true, y_pred, n_classes).mean())


def form_pass_rate(poems: Sequence[PoemLike], tr: ToneRhyme | None = None) -> dict[str, float]:
    """Shares of poems passing the reader's check (rhythm.check_verse): 'ok', 'pattern_ok', 'rhyme_ok'; the
    share passing the generator's own check (rhythm.check_poem) as 'ok_strict'; plus 'n'.

    A poem that does not have 4 lines fails.
    """
    counts: Counter[str] = Counter()
    for p in poems:
        lines = split_lines(p)
        if len(lines) != N_LINES:
            continue
        rep = check_verse(lines, tr=tr)
        counts["ok"] += rep.ok
        counts["pattern_ok"] += rep.pattern_ok
        counts["rhyme_ok"] += rep.rhyme_ok
        counts["ok_strict"] += check_poem(lines, tr=tr).ok
    n = len(poems)
    out = {k: (counts[k] / n if n else math.nan) for k in ("ok", "pattern_ok", "rhyme_ok", "ok_strict")}
    out["n"] = n
    return out


def human_closeness(values: Iterable[float], ref_mean: float, ref_std: float) -> float:
    """Mean of exp(−½·((v − μ)/σ)²) over per-poem scores v against human poems' mean μ and std σ (empty → nan).

    1 for a poem exactly as predictable as the average human poem, towards 0 for one far more generic *or* far
    more garbled; human poems themselves average about 1/√2 ≈ 0.71 when their scores are near normal.
    """
    if not ref_std > 0:
        raise ValueError(f"the human reference std must be > 0, got {ref_std}")
    v = np.asarray(list(values), dtype=float)
    return float(np.exp(-0.5 * ((v - ref_mean) / ref_std) ** 2).mean()) if v.size else math.nan


def keyword_rate(poems: Sequence[PoemLike], keywords: Sequence[str]) -> float:
    """Share of poems that hold their keyword (poem i ↔ keyword i) inside one line (no poem → nan)."""
    if len(poems) != len(keywords):
        raise ValueError(f"{len(keywords)} keywords for {len(poems)} poems")
    hits = [any(k in line for line in split_lines(p)) for p, k in zip(poems, keywords)]
    return float(np.mean(hits)) if hits else math.nan


def _has_doubling(line: str) -> bool:
    return any(a == b and is_unit_char(a) for a, b in itertools.pairwise(line))


def doubled_rates(poems: Sequence[PoemLike]) -> tuple[float, float]:
    """(share of poems with a line holding two equal adjacent characters, share of such lines); none → nan."""
    per_poem = [[_has_doubling(line) for line in split_lines(p)] for p in poems]
    lines = [d for lines in per_poem for d in lines]
    if not lines:
        return math.nan, math.nan
    return float(np.mean([any(d) for d in per_poem])), float(np.mean(lines))


def shared_line_rate(poems: Sequence[PoemLike], keywords: Sequence[str]) -> float:
    """Share of non-empty lines that also occur in a poem of a different keyword (poem i ↔ keyword i; none → nan)."""
    if len(poems) != len(keywords):
        raise ValueError(f"{len(keywords)} keywords for {len(poems)} poems")
    owners: dict[str, set[str]] = {}
    lines = [(line, k) for p, k in zip(poems, keywords) for line in split_lines(p) if line]
    for line, k in lines:
        owners.setdefault(line, set()).add(k)
    return float(np.mean([len(owners[line]) > 1 for line, _ in lines])) if lines else math.nan


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n); n = 1 gives std 0.0 and n = 0 gives (nan, nan, 0)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    if v.size == 1:
        return float(v[0]), 0.0, 1
    return float(v.mean()), float(v.std(ddof=1)), int(v.size)


def topk_accumulated_frequency(poems: Sequence[PoemLike], k_max: int, unit: str = "char") -> np.ndarray:
    """Entry K-1 = share of all unit occurrences taken by the K most frequent units, K = 1..k_max (design §7.1).

    ``unit`` is 'char' or 'word' (every jieba word, one-character words included: the paper's Fig. 4c).
    """
    if k_max < 1:
        raise ValueError(f"k_max must be ≥ 1, got {k_max}")
    if unit not in ("char", "word"):
        raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
    counts = Counter(g for p in poems for g in (_ngrams(p, 1) if unit == "char" else _words(p)))
    total = sum(counts.values())
    if total == 0:
        return np.full(k_max, math.nan)
    top = np.array(sorted(counts.values(), reverse=True)[:k_max], dtype=float)
    acc = np.cumsum(top) / total
    if acc.size < k_max:
        acc = np.concatenate([acc, np.full(k_max - acc.size, acc[-1])])
    return acc


def factor_control_scores(
    specified: Sequence[Sequence[int]] | np.ndarray,
    predicted: Sequence[Sequence[int]] | np.ndarray,
    n_classes: Sequence[int] = (3, 2),
    names: Sequence[str] = ("living", "era"),
) -> dict[str, object]:
    """Judged vs *specified* (y1, y2) of generated poems: per factor accuracy, macro-F1, per-class recall and F1,
    confusion; joint accuracy."""
    s, p = np.asarray(specified, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if s.shape != p.shape or s.shape[1:] != (len(n_classes),):  # both (N, n_factors)
        raise ValueError(f"specified {s.shape} and predicted {p.shape} must both be (N, {len(n_classes)})")
    out: dict[str, object] = {"n": int(s.shape[0])}
    for k, (name, n) in enumerate(zip(names, n_classes)):
        out[name] = {
            "accuracy": accuracy(s[:, k], p[:, k]),
            "macro_f1": macro_f1(s[:, k], p[:, k], n),
            "recall": per_class_recall(s[:, k], p[:, k], n),
            "f1": per_class_f1(s[:, k], p[:, k], n),
            "confusion": confusion_matrix(s[:, k], p[:, k], n),
        }
    out["joint_accuracy"] = float((s == p).all(axis=1).mean()) if s.shape[0] else math.nan
    return out
