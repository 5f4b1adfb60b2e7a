"""Looking inside the mixed latent space: prior samples per factor mixture and 2-D projections (design §7.1)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mixpoet_lib.data.corpora import MAX_KEYWORD_CHARS
from mixpoet_lib.data.vocab import BOS, EOS, Vocab

MIXTURES: tuple[tuple[int, int], ...] = tuple(itertools.product(range(3), range(2)))  # (y1, y2), 6 in all
N_COMPONENTS = 2  # principal components pca_2d projects on
MIN_STEPS = 2  # interpolation: at least the two ends


def keyword_tensor(vocab: Vocab, keyword: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Encode one keyword as the (1, Kt) tensor ``<B> chars <E>``; unknown characters or >2 chars raise."""
    if not 1 <= len(keyword) <= MAX_KEYWORD_CHARS:
        raise ValueError(f"keyword {keyword!r} must have 1 or 2 characters")
    missing = vocab.unknown(keyword)
    if missing:
        raise ValueError(f"keyword {keyword!r} has characters outside the vocabulary: {''.join(missing)}")
    return torch.tensor([[BOS, *vocab.encode(keyword), EOS]], device=device)


@torch.no_grad()
def mixture_prior_samples(
    model: Any, vocab: Vocab, keyword: str, n_per_mixture: int = 512, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_per_mixture`` prior samples z ~ p(z | w, y1, y2) for each of the 6 mixtures (eval mode, seeded).

    Returns ``(z, labels)`` with z of shape (6·n, Z) and labels (6·n, 2).
    """
    if not hasattr(model, "prior_sample"):
        raise ValueError(f"{type(model).__name__} has no factor-conditioned prior")
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        h_w = model.encode_keyword(keyword_tensor(vocab, keyword, dev))
        zs, ys = [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for y1, y2 in MIXTURES:
                y = [torch.tensor([y1], device=dev), torch.tensor([y2], device=dev)]
                zs.append(model.prior_sample(h_w, y, n=n_per_mixture).float().cpu().numpy())
                ys.append(np.tile([y1, y2], (n_per_mixture, 1)))
    finally:
        model.train(was_training)
    return np.concatenate(zs), np.concatenate(ys)


def prior_spread(model: Any, vocab: Vocab, keywords: Sequence[str], n: int = 64, seed: int = 0) -> dict[str, float]:
    """What moves a prior draw z ~ p(z | w, y1, y2): the noise, the mixture or the keyword (total variances tr Σ).

    For each keyword, ``n`` draws per mixture (:func:`mixture_prior_samples`, eval mode). ``noise``: tr Σ of the
    draws of one keyword and mixture, averaged; ``mixture``: tr Σ of the 6 mixture means of one keyword, averaged
    over keywords; ``keyword``: tr Σ over keywords of each keyword's mean. A prior whose ``noise`` is near 0
    ignores its noise (one poem per mixture); one whose ``mixture`` is small hardly tells the mixtures apart.
    """
    if n < MIN_STEPS or not keywords:
        raise ValueError(f"prior_spread needs n ≥ {MIN_STEPS} draws and at least one keyword")
    noise, mixture, means = [], [], []
    for keyword in keywords:
        z, _ = mixture_prior_samples(model, vocab, keyword, n, seed)
        per_mix = z.reshape(len(MIXTURES), n, -1)
        noise.append(float(per_mix.var(axis=1, ddof=1).sum(-1).mean()))
        mixture.append(float(per_mix.mean(1).var(axis=0, ddof=1).sum()))
        means.append(per_mix.mean((0, 1)))
    keyword_var = float(np.stack(means).var(axis=0, ddof=1).sum()) if len(means) > 1 else float("nan")
    return {"noise": float(np.mean(noise)), "mixture": float(np.mean(mixture)), "keyword": keyword_var}


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` on their first two principal components; return (projection, explained-variance ratios)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < N_COMPONENTS:  # noqa: PLR2004 (a matrix: rows × features)
        raise ValueError(f"need a 2-D array with at least 2 rows, got shape {x.shape}")
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[:2, np.argmax(np.abs(vt[:2]), axis=1)].diagonal())  # deterministic orientation
    proj = centred @ (vt[:2].T * signs)
    var = s**2
    return proj, var[:2] / var.sum()


def separation_ratio(z: np.ndarray, groups: np.ndarray) -> float:
    """Between-group over within-group mean squared distance to centroids (higher = groups better separated)."""
    z = np.asarray(z, dtype=np.float64)
    centre = z.mean(axis=0)
    between, within = 0.0, 0.0
    for g in np.unique(groups):
        part = z[groups == g]
        mu = part.mean(axis=0)
        between += len(part) * float(((mu - centre) ** 2).sum())
        within += float(((part - mu) ** 2).sum())
    return between / max(within, 1e-12)


@torch.no_grad()
def interpolate_mixtures(
    model: Any,
    vocab: Vocab,
    keyword: str,
    mix_a: tuple[int, int],
    mix_b: tuple[int, int],
    steps: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, torch.Tensor]:
    """Decoder start states along a straight line from mixture A to mixture B for one keyword (factor models).

    One noise vector is drawn (seeded) and pushed through the prior under A and under B; both the latents and
    the label one-hots are mixed linearly, z_t = (1−t)·z_A + t·z_B and y_t = (1−t)·y_A + t·y_B, and
    s0_t = dec_init([z_t; h_w; d(y_t)]). Returns (t values, s0 of shape (steps, S0)).
    """
    if steps < MIN_STEPS:
        raise ValueError(f"steps must be ≥ 2, got {steps}")
    if getattr(model, "kind", None) not in ("igs", "aus"):
        raise ValueError(f"interpolation needs a factor model (igs or aus), got {getattr(model, 'kind', model)!r}")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    h_w = model.encode_keyword(keyword_tensor(vocab, keyword, dev))
    n_cls = model.n_classes
    for a, b, k in zip(mix_a, mix_b, n_cls):
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"mixture labels {mix_a} / {mix_b} out of range for classes {tuple(n_cls)}")
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(1, model.cfg.latent_size, generator=gen).to(dev)
    ids_a = [torch.tensor([a], device=dev) for a in mix_a]
    ids_b = [torch.tensor([b], device=dev) for b in mix_b]
    z_a, z_b = model.prior_sample(h_w, ids_a, eps=eps), model.prior_sample(h_w, ids_b, eps=eps)
    ts = np.linspace(0.0, 1.0, steps)
    t = torch.tensor(ts, dtype=z_a.dtype, device=dev).unsqueeze(1)
    z = (1 - t) * z_a + t * z_b
    y = [
        (1 - t) * F.one_hot(torch.tensor([a], device=dev), k).float()
        + t * F.one_hot(torch.tensor([b], device=dev), k).float()
        for a, b, k in zip(mix_a, mix_b, n_cls)
    ]
    s0 = model.decoder_s0(z, h_w.expand(steps, -1), y)
    model.train(was_training)
    return ts, s0
