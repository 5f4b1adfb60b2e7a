"""The data behind the paper's Figures 4a, 4b, 4d and 5; :mod:`mixpoet_lib.paper_figures` draws them.

* **Fig. 4a** :func:`prior_projection`: prior samples z ~ p(z | w, y) of one keyword under each of the six
  mixtures, projected on their first two principal components (fitted on all samples of that model).
* **Fig. 4b** :func:`bridge_projection`: human poems of CQCF test labelled military (MC) or prosperous (PT)
  and generated MC&PT poems, each embedded as the mean of the character LM's top-layer hidden states over its
  tokens, projected together; :func:`bridge_position` says where the generated poems sit on the line from the
  human MC centre to the human PT centre (t = 0 at MC, 1 at PT) in the full embedding space.
* **Fig. 4d** :func:`keyword_mixture_probs`: p(y | w) = p(y1 | w) · p(y2 | w) of the model's keyword-only
  classifiers for every candidate keyword and mixture; :func:`top_keywords` ranks them.
* **Fig. 5** :func:`factor_attribution`: which characters carry a poem's factors. A character's weight for a
  factor is how much the independent judge's probability of the requested class drops when that one character
  is deleted from its line (occlusion; the judge, not the generator's own classifier, so the generator cannot
  have been trained to please it). :func:`repeated_lines` finds the lines a system (Basic) reuses across keywords.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mixpoet_lib.config import FACTOR_NAMES
from mixpoet_lib.data.corpora import MAX_KEYWORD_CHARS
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.data.vocab import PAD, Vocab
from mixpoet_lib.evaluate.analysis import MIXTURES, keyword_tensor, mixture_prior_samples, pca_2d, separation_ratio
from mixpoet_lib.metrics import split_lines
from mixpoet_lib.models.judges import CharLM, Judge
from mixpoet_lib.train.judges import classify

__all__ = [
    "LIVING_CODES",
    "ERA_CODES",
    "mixture_name",
    "Projection",
    "prior_projection",
    "lm_embeddings",
    "labelled_human_poems",
    "bridge_position",
    "bridge_projection",
    "candidate_keywords",
    "keyword_mixture_probs",
    "top_keywords",
    "Attribution",
    "factor_attribution",
    "repeated_lines",
]

LIVING_CODES = ("MC", "CL", "OT")  # military career, countryside life, other
ERA_CODES = ("PT", "TT")  # prosperous times, troubled times
MIN_GROUP = 2  # poems a group needs for a centre


def mixture_name(mixture: Sequence[int]) -> str:
    """'MC&PT' for (0, 0) and so on: the paper's short names of a (living, era) mixture."""
    return f"{LIVING_CODES[mixture[0]]}&{ERA_CODES[mixture[1]]}"


@dataclass
class Projection:
    """Points in 2-D (first two principal components), their group names and the variance each axis explains."""

    xy: np.ndarray  # (N, 2)
    groups: np.ndarray  # (N,) group name of each point
    explained: np.ndarray  # (2,) share of the variance on each axis
    separation: float = float("nan")  # between- / within-group spread in the full space (higher: groups apart)
    stats: dict[str, float] = field(default_factory=dict)


def prior_projection(
    model: Any, vocab: Vocab, keyword: str = "春风", n_per_mixture: int = 200, seed: int = 0
) -> Projection:
    """Fig. 4a for one model: ``n_per_mixture`` prior samples per mixture for ``keyword``, PCA to 2-D (seeded)."""
    z, labels = mixture_prior_samples(model, vocab, keyword, n_per_mixture, seed)
    xy, explained = pca_2d(z)
    names = np.array([mixture_name(row) for row in labels.tolist()])
    return Projection(xy, names, explained, separation_ratio(z, names))


@torch.no_grad()
def lm_embeddings(lm: CharLM, poems: Sequence[str | Sequence[str]], batch_size: int = 256) -> np.ndarray:
    """(P, H): per poem, the mean of the LM's top-layer LSTM states over its tokens (<B> … <E>; eval mode)."""
    tokens, _ = lm.encode(poems)
    was_training = lm.training
    lm.eval()
    out = []
    try:
        for start in range(0, len(poems), batch_size):
            tok = tokens[start : start + batch_size].to(lm.device)
            states, _ = lm.rnn(lm.embed(tok))
            mask = (tok != PAD).unsqueeze(-1).to(states.dtype)
            out.append(((states * mask).sum(1) / mask.sum(1)).float().cpu().numpy())
    finally:
        lm.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, lm.rnn.hidden_size), dtype=np.float32)


def labelled_human_poems(
    data: PreparedData, split: str = "cqcf_test", length: int | None = None
) -> dict[str, list[str]]:
    """Human poems of a labelled split (of one line ``length`` if given): 'human MC' (military, era not
    prosperous), 'human PT' (prosperous, living not military) and 'human MC&PT' (both labels)."""
    groups: dict[str, list[str]] = {"human MC": [], "human PT": [], "human MC&PT": []}
    for poem in data.poems(split):
        mc, pt = poem.labels[0] == 0, poem.labels[1] == 0
        if (mc or pt) and length in (None, poem.length):
            groups["human MC&PT" if mc and pt else "human MC" if mc else "human PT"].append(poem.content)
    return groups


def bridge_position(points: np.ndarray, group_a: np.ndarray, group_b: np.ndarray) -> np.ndarray:
    """t of each point projected on the line from the centre of ``group_a`` (t = 0) to that of ``group_b`` (t = 1)."""
    if len(group_a) < MIN_GROUP or len(group_b) < MIN_GROUP:
        raise ValueError(f"need at least {MIN_GROUP} poems in each human group, got {len(group_a)} and {len(group_b)}")
    a, b = group_a.mean(axis=0), group_b.mean(axis=0)
    direction = b - a
    return (points - a) @ direction / max(float(direction @ direction), 1e-12)


def bridge_projection(
    lm: CharLM, groups: Mapping[str, Sequence[str]], generated: str = "generated MC&PT"
) -> Projection:
    """Fig. 4b: embed every group's poems with the LM, project them together; stats of the ``generated`` group's
    position between 'human MC' (t = 0) and 'human PT' (t = 1): median t, share with 0 ≤ t ≤ 1, and the same for
    the human poems of each side (the spread a bridge is judged against).

    All poems must have one line length: the mean LM state separates 5- from 7-character poems before anything
    else (the first principal component of a mixed set is the length), which would hide the picture.
    """
    names = [g for g in groups if len(groups[g])]
    lengths = sorted({len(split_lines(p)[0]) for g in names for p in groups[g]})
    if len(lengths) > 1:
        raise ValueError(f"poems of several line lengths {lengths}: pass poems of one length (see the docstring)")
    emb = {g: lm_embeddings(lm, list(groups[g])) for g in names}
    if generated not in emb or "human MC" not in emb or "human PT" not in emb:
        raise ValueError(f"need poems in 'human MC', 'human PT' and {generated!r}; got {', '.join(names)}")
    stacked = np.concatenate([emb[g] for g in names])
    labels = np.concatenate([[g] * len(emb[g]) for g in names])
    xy, explained = pca_2d(stacked)
    stats: dict[str, float] = {}
    for g in ("human MC", "human PT", generated):
        t = bridge_position(emb[g], emb["human MC"], emb["human PT"])
        stats[f"{g}: median t"] = float(np.median(t))
        stats[f"{g}: share 0 ≤ t ≤ 1"] = float(np.mean((t >= 0) & (t <= 1)))
    return Projection(xy, labels, explained, separation_ratio(stacked, labels), stats)


def candidate_keywords(
    data: PreparedData, splits: Sequence[str] = ("cqcf_train", "unl_train"), min_count: int = 3, limit: int = 2000
) -> list[str]:
    """Keywords of 1-2 in-vocabulary characters seen at least ``min_count`` times, most frequent first."""
    counts = Counter(k for split in splits for poem in data.poems(split) for k in poem.keywords)
    vocab = data.vocab
    usable = [
        k
        for k, n in counts.most_common()
        if n >= min_count and 1 <= len(k) <= MAX_KEYWORD_CHARS and not vocab.unknown(k)
    ]
    return usable[:limit]


@torch.no_grad()
def keyword_mixture_probs(model: Any, vocab: Vocab, keywords: Sequence[str], batch_size: int = 512) -> np.ndarray:
    """(K, 6) p(y1 | w) · p(y2 | w) of each keyword (rows) under each mixture of :data:`MIXTURES` (eval mode)."""
    if not hasattr(model, "classify_w"):
        raise ValueError(f"{type(model).__name__} has no keyword classifier p(y|w)")
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    try:
        for start in range(0, len(keywords), batch_size):
            chunk = [keyword_tensor(vocab, k)[0] for k in keywords[start : start + batch_size]]
            keys = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True, padding_value=PAD).to(dev)
            p1, p2 = (lg.float().softmax(-1).cpu().numpy() for lg in model.classify_w(model.encode_keyword(keys)))
            rows.append(np.stack([p1[:, a] * p2[:, b] for a, b in MIXTURES], axis=1))
    finally:
        model.train(was_training)
    return np.concatenate(rows) if rows else np.zeros((0, len(MIXTURES)))


def top_keywords(keywords: Sequence[str], probs: np.ndarray, k: int = 10) -> dict[str, list[tuple[str, float]]]:
    """Fig. 4d: per mixture name, the ``k`` keywords with the highest p(y | w), most probable first."""
    if probs.shape != (len(keywords), len(MIXTURES)):
        raise ValueError(f"probs must be ({len(keywords)}, {len(MIXTURES)}), got {probs.shape}")
    out = {}
    for j, mix in enumerate(MIXTURES):
        order = np.argsort(-probs[:, j], kind="stable")[:k]
        out[mixture_name(mix)] = [(keywords[i], float(probs[i, j])) for i in order]
    return out


@dataclass
class Attribution:
    """Per character of a poem, the drop of each judge's probability of the requested class when it is deleted."""

    lines: list[str]
    labels: tuple[int, int]  # the requested (living, era) classes; -1: not attributed
    base: dict[str, float]  # factor → the judge's probability of the requested class for the whole poem
    drops: dict[str, list[list[float]]]  # factor → per line, per character: base − probability without it

    def top_chars(self, factor: str, k: int = 3) -> list[tuple[int, int]]:
        """(line, position) of the ``k`` characters whose deletion lowers the factor's probability most (drop > 0)."""
        flat = [(d, i, j) for i, row in enumerate(self.drops.get(factor, [])) for j, d in enumerate(row) if d > 0]
        return [(i, j) for _, i, j in sorted(flat, key=lambda t: (-t[0], t[1], t[2]))[:k]]


def factor_attribution(judges: Mapping[str, Judge], poem: str, labels: Sequence[int]) -> Attribution:
    """Occlusion: delete each character in turn and ask the judges again (one batched call per judge)."""
    lines = split_lines(poem)
    variants = [
        "|".join(line[:j] + line[j + 1 :] if n == i else line for n, line in enumerate(lines))
        for i, line in enumerate(lines)
        for j in range(len(line))
    ]
    factors = [f for f, y in zip(FACTOR_NAMES, labels) if y >= 0 and f in judges]
    probs = classify({f: judges[f] for f in factors}, ["|".join(lines), *variants])
    base, drops = {}, {}
    for f in factors:
        y = labels[FACTOR_NAMES.index(f)]
        p = [row[f]["probs"][y] for row in probs]
        base[f], flat = p[0], [p[0] - q for q in p[1:]]
        sizes = np.cumsum([0, *(len(line) for line in lines)])
        drops[f] = [flat[sizes[i] : sizes[i + 1]] for i in range(len(lines))]
    return Attribution(lines, (int(labels[0]), int(labels[1])), base, drops)


def repeated_lines(poems: Sequence[str], min_count: int = 2) -> list[tuple[str, int]]:
    """Lines that occur in at least ``min_count`` different poems, with that count, most repeated first."""
    counts = Counter(line for p in poems for line in set(split_lines(p)))
    return sorted(((s, n) for s, n in counts.items() if n >= min_count), key=lambda t: (-t[1], t[0]))
