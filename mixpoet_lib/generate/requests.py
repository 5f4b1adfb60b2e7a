"""What a generator is asked for, and the model inputs of each poem: checked requests, seeds, latent draws.

:func:`make_requests` turns the arguments of :meth:`~mixpoet_lib.generate.generator.Generator.generate`
(keywords, lengths, labels, samples, seed) into one checked :class:`PoemRequest` per poem, with the seed
of the poem's own :class:`torch.Generator`: a hash of (seed, keyword, length, requested labels, sample
number), so a poem does not depend on what else is in the batch or where it sits.
:func:`draw_latents` draws each poem's prior latent from that generator, with an outlier guard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixpoet_lib.config import FACTOR_NAMES, parse_label
from mixpoet_lib.data.vocab import BOS, EOS, PAD, SPECIALS, Vocab
from mixpoet_lib.generate.constraints import LONG_LINE

__all__ = [
    "LENGTHS",
    "MAX_KEYWORD_LEN",
    "FACTORED_KINDS",
    "PoemRequest",
    "make_requests",
    "keyword_tensor",
    "length_onehot",
    "prior_from_eps",
    "draw_latents",
]

LENGTHS = (5, 7)  # characters per line
MAX_KEYWORD_LEN = 2
FACTORED_KINDS = ("fbasic", "igs", "aus")  # model kinds with factor labels (living, era)


@dataclass(frozen=True)
class PoemRequest:
    """One poem to generate, checked."""

    keyword: str
    length: int
    labels: tuple[int, int]  # as requested (-1 = infer)
    sample: int  # sample number for this keyword
    seed: int  # seed of the poem's own torch.Generator


def _poem_seed(*parts: Any) -> int:
    """A poem's seed: blake2b of the parts' repr (not ``_util.derived_seed``, whose different hash would
    change every generated poem)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def make_requests(
    vocab: Vocab,
    kind: str,
    keywords: Sequence[str] | str,
    length: int | Sequence[int],
    labels: Any,
    n_samples: int,
    seed: int,
) -> list[PoemRequest]:
    """``n_samples`` requests per keyword (keyword-major), or ValueError naming the bad value.

    ``length`` and ``labels`` are one value for every keyword or one per keyword; a label pair holds ids or
    class names, -1 meaning "infer" ("unknown" for fbasic); None means no labels (only a ``kind`` without factors
    accepts none but (-1, -1)). Keywords have 1-2 characters of ``vocab``.
    """
    if isinstance(keywords, str):
        keywords = [keywords]
    keywords = list(keywords)
    if not keywords:
        raise ValueError("no keywords given")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    lengths: list[Any]
    if isinstance(length, (np.ndarray, Tensor)):
        lengths = list(length.tolist())
    elif isinstance(length, Sequence) and not isinstance(length, str):
        lengths = list(length)
    else:
        lengths = [length] * len(keywords)
    if len(lengths) != len(keywords):
        raise ValueError(f"{len(lengths)} lengths for {len(keywords)} keywords")
    label_list = _label_list(labels, len(keywords))
    reqs = []
    for kw, ln, lab in zip(keywords, lengths, label_list):
        kw = _check_keyword(vocab, kw)
        if isinstance(ln, bool) or not isinstance(ln, (int, np.integer)) or int(ln) not in LENGTHS:
            raise ValueError(f"length must be 5 or 7, got {ln!r}")
        if kind not in FACTORED_KINDS and lab != (-1, -1):
            raise ValueError(f"model kind {kind!r} has no factor labels, got labels {lab} (use -1 / leave them out)")
        for j in range(n_samples):
            reqs.append(PoemRequest(kw, int(ln), lab, j, _poem_seed(int(seed), kw, int(ln), lab, j)))
    return reqs


def _check_keyword(vocab: Vocab, kw: Any) -> str:
    if not isinstance(kw, str):
        raise ValueError(f"keyword must be a string, got {kw!r}")
    kw = kw.strip()
    if not kw:
        raise ValueError("empty keyword")
    if len(kw) > MAX_KEYWORD_LEN:
        raise ValueError(f"keyword {kw!r} has {len(kw)} characters; MixPoet keywords have 1-{MAX_KEYWORD_LEN}")
    missing = [ch for ch in kw if ch not in vocab or vocab.id(ch) < len(SPECIALS)]
    if missing:
        raise ValueError(f"keyword {kw!r}: character(s) {''.join(dict.fromkeys(missing))!r} not in the vocabulary")
    return kw


def _label_pair(pair: Any) -> tuple[int, int]:
    if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != len(FACTOR_NAMES):
        raise ValueError(f"labels must be a pair (living, era), got {pair!r}")
    return tuple(parse_label(f, v) for f, v in zip(FACTOR_NAMES, pair))  # type: ignore[return-value]


def _label_list(labels: Any, n: int) -> list[tuple[int, int]]:
    if labels is None:
        return [(-1, -1)] * n
    if (
        isinstance(labels, Sequence)
        and not isinstance(labels, str)
        and len(labels) > 0
        and all(isinstance(x, Sequence) and not isinstance(x, str) for x in labels)
    ):
        if len(labels) != n:
            raise ValueError(f"{len(labels)} label pairs for {n} keywords")
        return [_label_pair(p) for p in labels]
    if isinstance(labels, Tensor):
        return _label_list(labels.tolist(), n)
    return [_label_pair(labels)] * n


# ----------------------------------------------------------------------------------------------
# model inputs
# ----------------------------------------------------------------------------------------------


def keyword_tensor(vocab: Vocab, keywords: Sequence[str], device: torch.device | str = "cpu") -> Tensor:
    """Keyword ids as the keyword encoder reads them: rows ``[<B>, chars…, <E>, PAD…]`` (P, max_len + 2)."""
    width = max(len(k) for k in keywords) + 2
    keys = torch.full((len(keywords), width), PAD, dtype=torch.long)
    for i, kw in enumerate(keywords):
        keys[i, 0] = BOS
        keys[i, 1 : 1 + len(kw)] = torch.tensor(vocab.encode(kw))
        keys[i, 1 + len(kw)] = EOS
    return keys.to(device)


def length_onehot(lengths: Sequence[int], dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
    """Length condition per poem (P, 2): [1, 0] for 7 characters, [0, 1] for 5."""
    return torch.tensor([[1.0, 0.0] if n == LONG_LINE else [0.0, 1.0] for n in lengths], dtype=dtype, device=device)


def prior_from_eps(model: Any, h_w: Tensor, y: list[Tensor], eps: Tensor, contrast: float = 0.0) -> Tensor:
    """Prior latent for given noise: Gaussian kinds reparameterise, AUS runs its implicit sampler; a factor model
    with ``contrast`` > 0 returns the mixture-contrasted draw (design §5.10)."""
    if model.kind == "cvae":
        return model.prior_sample(h_w, eps=eps)
    return model.contrast_latent(h_w, y, eps, contrast)


def draw_latents(
    prior: Callable[[Tensor, list[Tensor], Tensor], Tensor],
    h_w: Tensor,
    y: list[Tensor],
    rngs: Sequence[torch.Generator],
    latent_size: int,
    n_candidates: int = 1,
    outlier_ratio: float = 0.0,
) -> tuple[Tensor, int]:
    """One prior latent per poem (P, Z), drawn from each poem's own generator, with the outlier guard.

    ``prior(h_w, y, eps)`` maps noise to latents (e.g. :func:`prior_from_eps` bound to a model). Each poem
    draws R = ``n_candidates`` noise vectors; the first whose latent norm is at most ``outlier_ratio`` × the
    median of its R norms is kept (so the choice never depends on the batch). ``outlier_ratio`` ≤ 0 is the
    official behaviour: one draw, kept whatever it is. Returns the latents and how many poems rejected their
    first draw.
    """
    r = max(1, int(n_candidates)) if outlier_ratio > 0 else 1
    eps = torch.stack([torch.randn(r, latent_size, generator=g) for g in rngs]).to(h_w.device, h_w.dtype)
    p = len(rngs)
    # candidate-major rows: row c·P + b is candidate c of poem b
    flat = eps.transpose(0, 1).reshape(r * p, latent_size)
    z = prior(h_w.repeat(r, 1), [yk.repeat(r) for yk in y], flat).view(r, p, latent_size)
    if r == 1:
        return z[0], 0
    norms = z.float().norm(dim=-1)  # (R, P)
    ok = norms <= outlier_ratio * norms.median(dim=0).values
    first = torch.where(ok.any(0), ok.float().argmax(0), norms.argmin(0))
    return z[first, torch.arange(p, device=z.device)], int((first > 0).sum())
