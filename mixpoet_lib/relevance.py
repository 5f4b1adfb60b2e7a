"""Keyword relevance beyond the literal keyword: a character embedding fitted on poems, and a rank score.

* **Embedding.** Two characters co-occur when they appear in the same poem (each counted once per poem).
  The counts of the ``max_chars`` most frequent characters give a positive PMI matrix with the context
  distribution smoothed by ``alpha`` = 0.75 (Levy, Goldberg and Dagan 2015); a seeded randomized SVD
  (Halko et al. 2011, two power iterations) keeps ``dim`` components, each character's vector is its row of
  U·√S, centred on the mean vector and scaled to unit length. Same poems and seed → same vectors (up to
  the floating-point order of the BLAS in use).
* **Text vector.** The normalised mean of the unit vectors of a text's known characters.
* **Rank score.** For poem i with keyword k_i, the share of the *other* distinct keywords k of the set whose
  cosine with the poem is below that of k_i (ties count one half): 1 when the poem is closer to its own
  keyword than to every other, 0.5 when the keyword tells nothing about the poem. The poem's vector leaves
  out the keyword's own characters, so the score measures association, not copying (the share of poems that
  contain their keyword is :func:`mixpoet_lib.metrics.keyword_rate`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from mixpoet_lib.metrics import PoemLike, is_unit_char, split_lines

__all__ = ["CharEmbedding", "fit_char_embedding", "keyword_rank_scores"]

CHUNK = 4096  # poems per block of co-occurrence counting (bounds the memory of one bincount)
OVERSAMPLE = 16  # extra random directions of the randomized SVD
POWER_ITERATIONS = 2
MIN_CHARS = 3  # distinct characters an embedding needs (two dimensions, centred)


@dataclass(frozen=True)
class CharEmbedding:
    """Unit-length character vectors (rows of ``vectors``) and the row of each character."""

    index: Mapping[str, int]
    vectors: np.ndarray

    def text_vector(self, text: PoemLike, exclude: str = "") -> np.ndarray | None:
        """Normalised mean vector of the known characters of ``text`` not in ``exclude`` (None if there is none)."""
        rows = [self.index[ch] for line in split_lines(text) for ch in line if ch in self.index and ch not in exclude]
        if not rows:
            return None
        v = self.vectors[rows].mean(axis=0)
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 0 else None


def _poem_chars(poems: Iterable[PoemLike]) -> list[str]:
    """Each poem's distinct unit characters as one string (sorted, so counting is order-independent)."""
    return ["".join(sorted({ch for line in split_lines(p) for ch in line if is_unit_char(ch)})) for p in poems]


def _cooccurrence(docs: Sequence[str], chars: Sequence[str]) -> np.ndarray:
    """(n, n) counts of poems holding both characters (diagonal zero) over the given characters."""
    n = len(chars)
    pos = {ch: i for i, ch in enumerate(chars)}
    counts = np.zeros(n * n, dtype=np.int64)
    for start in range(0, len(docs), CHUNK):
        keys = []
        for doc in docs[start : start + CHUNK]:
            ids = np.fromiter((pos[ch] for ch in doc if ch in pos), dtype=np.int64)
            keys.append((ids[:, None] * n + ids[None, :]).ravel())
        if keys:
            counts += np.bincount(np.concatenate(keys), minlength=n * n)
    out = counts.reshape(n, n)
    np.fill_diagonal(out, 0)
    return out


def _ppmi(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Positive PMI with the context distribution raised to ``alpha`` (float32)."""
    c = counts.astype(np.float64)
    rows, ctx = c.sum(axis=1), c.sum(axis=0) ** alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(c * ctx.sum() / (rows[:, None] * ctx[None, :]))
    return np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0).astype(np.float32)


def _randomized_svd(m: np.ndarray, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``dim`` left singular vectors and values of ``m`` (seeded randomized range finder)."""
    k = min(dim + OVERSAMPLE, min(m.shape))
    y = m @ np.random.default_rng(seed).standard_normal((m.shape[1], k)).astype(m.dtype)
    for _ in range(POWER_ITERATIONS):
        q, _ = np.linalg.qr(y)
        y = m @ (m.T @ q)
    q, _ = np.linalg.qr(y)
    u, s, _ = np.linalg.svd(q.T @ m, full_matrices=False)
    return (q @ u)[:, :dim], s[:dim]


def fit_char_embedding(
    poems: Iterable[PoemLike], dim: int = 64, max_chars: int = 4000, seed: int = 0, alpha: float = 0.75
) -> CharEmbedding:
    """Fit the PPMI/SVD character embedding of the module doc on ``poems``.

    A corpus with at most ``dim`` distinct characters gets one dimension fewer than it has characters; one with
    fewer than 3 raises ValueError.
    """
    docs = _poem_chars(poems)
    freq = Counter(ch for doc in docs for ch in doc)
    chars = sorted(freq, key=lambda ch: (-freq[ch], ch))[:max_chars]
    if len(chars) < MIN_CHARS:
        raise ValueError(f"the poems hold {len(chars)} distinct characters; the embedding needs at least {MIN_CHARS}")
    u, s = _randomized_svd(_ppmi(_cooccurrence(docs, chars), alpha), min(dim, len(chars) - 1), seed)
    vec = u * np.sqrt(s)
    vec = vec - vec.mean(axis=0)
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    return CharEmbedding(MappingProxyType({ch: i for i, ch in enumerate(chars)}), vec.astype(np.float32))


def keyword_rank_scores(emb: CharEmbedding, poems: Sequence[PoemLike], keywords: Sequence[str]) -> np.ndarray:
    """Per poem (poem i ↔ keyword i) the rank score of the module doc; nan where it is undefined.

    Undefined: the poem has no known character outside its keyword, its keyword none, or the set holds no other
    keyword with a vector.
    """
    if len(poems) != len(keywords):
        raise ValueError(f"{len(keywords)} keywords for {len(poems)} poems")
    kw_vec = {k: emb.text_vector(k) for k in dict.fromkeys(keywords)}
    others = {k: v for k, v in kw_vec.items() if v is not None}
    out = np.full(len(poems), math.nan)
    for i, (poem, kw) in enumerate(zip(poems, keywords)):
        pv, own = emb.text_vector(poem, exclude=kw), kw_vec[kw]
        rest = [v for k, v in others.items() if k != kw]
        if pv is None or own is None or not rest:
            continue
        sims = np.stack(rest) @ pv
        mine = float(own @ pv)
        out[i] = (float((sims < mine).sum()) + 0.5 * float((sims == mine).sum())) / len(rest)
    return out
