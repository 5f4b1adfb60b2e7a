"""What the training loop measures without changing training: validation batches, classifier scores, latent distances.

Everything here runs in eval mode (batch-norm statistics untouched) and, where it draws random numbers, under a
forked torch RNG seeded with :data:`VAL_SEED`, so calling it between two training steps leaves the weights and the
RNG stream of the run exactly as they were.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mixpoet_lib._util import derived_seed
from mixpoet_lib.config import TrainConfig
from mixpoet_lib.data.batching import BatchStream, make_batch
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.metrics import accuracy, macro_f1
from mixpoet_lib.models.factor_models import FactorModelBase, MixPoetAUS, MixPoetIGS
from mixpoet_lib.models.losses import frechet_distance, mahalanobis_distance, mean_pairwise_distance

__all__ = [
    "VAL_SPLITS",
    "VAL_SEED",
    "to_device",
    "fixed_rng",
    "eval_mode",
    "validation_batches",
    "diagnostic_batch",
    "active_units",
    "classifier_scores",
    "latent_diagnostics",
    "aggregate_samples",
    "aggregate_match",
    "diagnostic_row",
]

VAL_SPLITS = ("unl_valid", "cqcf_valid")
VAL_SEED = 20_200_207  # the fixed seed of every validation and diagnostic pass
_CL_EVAL_BATCH = 256
DIAG_BATCH = 128  # instances in the fixed diagnostic batch (the official mixture batch size)


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """The batch with every tensor moved to ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@contextlib.contextmanager
def fixed_rng(seed: int) -> Iterator[None]:
    """Run a block with torch seeded to ``seed``; every torch RNG (CPU and CUDA) is restored afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run a block with ``model`` in eval mode, then put it back in the mode it was in."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def validation_batches(
    data: PreparedData, mode: str, batch_size: int, n_batches: int, device: torch.device, corrupt_ratio: float = 0.0
) -> list[dict[str, Tensor]]:
    """The first ``n_batches`` batches of the validation splits in their fixed (seeded) order, on ``device``."""
    stream = BatchStream(data, VAL_SPLITS, mode, batch_size, VAL_SEED, corrupt_ratio)
    out: list[dict[str, Tensor]] = []
    for b in stream.batches(0):
        if len(out) >= n_batches:
            break
        out.append(to_device(b, device))
    return out


def diagnostic_batch(data: PreparedData, device: torch.device) -> dict[str, Tensor]:
    """The fixed batch the latent diagnostics watch (``train.diag_instances`` > 0): the first
    :data:`DIAG_BATCH` validation instances in their seeded order, the same in C1 and C2."""
    return validation_batches(data, "mixpoet_pre", DIAG_BATCH, 1, device)[0]


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies across the batch's items by more than ``threshold``."""
    return int((mu.float().var(0) > threshold).sum()) if mu.size(0) > 1 else 0


def _predictions(
    model: FactorModelBase, data: PreparedData, ids: np.ndarray, device: torch.device, factors: Sequence[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Arg-max classes of q(y_k|x,w) and p(y_k|w) for these cqcf_valid instances, factor by factor."""
    arrays = data.arrays("cqcf_valid")
    preds_xw: list[list[np.ndarray]] = [[] for _ in model.n_classes]
    preds_w: list[list[np.ndarray]] = [[] for _ in model.n_classes]
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(ids), _CL_EVAL_BATCH):
            b = to_device(make_batch(arrays, ids[start : start + _CL_EVAL_BATCH]), device)
            h_x, h_w = model.encode(b)
            for k in factors:
                preds_xw[k].append(model.cl_xw[k](torch.cat([h_x, h_w], -1)).argmax(-1).cpu().numpy())
                preds_w[k].append(model.cl_w[k](h_w).argmax(-1).cpu().numpy())
    joined = [[np.concatenate(p) if p else np.zeros(0, dtype=np.int64) for p in preds] for preds in (preds_xw, preds_w)]
    return joined[0], joined[1]


def classifier_scores(
    model: FactorModelBase, data: PreparedData, device: torch.device, factors: Sequence[int], limit: int = 0
) -> dict[str, float]:
    """Accuracy and macro-F1 (over all classes) of q(y_k|x,w) and p(y_k|w) on the cqcf_valid instances labelled
    for factor k: keys ``val_acc_xw``, ``val_f1_xw``, ``val_acc_w``, ``val_f1_w`` (suffixed 1, 2 for two factors).

    ``limit`` > 0 keeps a fixed, seeded subset of that many instances.
    """
    labels = data.arrays("cqcf_valid").instance_labels()
    ids = np.flatnonzero((labels[:, list(factors)] >= 0).any(axis=1))
    if 0 < limit < len(ids):
        ids = np.sort(np.random.default_rng(VAL_SEED).choice(ids, size=limit, replace=False))
    preds_xw, preds_w = _predictions(model, data, ids, device, factors)
    out: dict[str, float] = {}
    gold_all = labels[ids]
    for k in factors:
        mask = gold_all[:, k] >= 0
        gold = gold_all[mask, k]
        sfx = "" if len(factors) == 1 else str(k + 1)
        for tag, preds in (("xw", preds_xw), ("w", preds_w)):
            pred = preds[k][mask]
            out[f"val_acc_{tag}{sfx}"] = accuracy(gold, pred)
            out[f"val_f1_{tag}{sfx}"] = macro_f1(gold, pred, model.n_classes[k])
    return out


@torch.no_grad()
def latent_diagnostics(
    model: MixPoetIGS | MixPoetAUS,
    batch: dict[str, Tensor],
    samples: int = 512,
    chunk: int = 128,
    tau: float = 1.0,
    seed: int = VAL_SEED,
    index: int | Sequence[int] | None = None,
) -> dict[str, float]:
    """The latent distances of design §4.8 between latent distributions, in eval mode under a fixed, forked RNG.

    'prior_post': one instance of ``batch`` (random unless ``index``; the mean over the instances when ``index``
    lists several) replicated ``chunk``×; ``samples`` prior and posterior draws; mean Mahalanobis distance of the
    posterior draws from a Gaussian fitted to the prior draws. 'mixture': for that keyword, ``samples`` prior draws
    under each of the 6 (y1, y2) mixtures; mean symmetric Mahalanobis distance over the 15 pairs. 'match' and
    'match_rel': :func:`aggregate_match` over the whole ``batch``.
    """
    with eval_mode(model), fixed_rng(seed):
        if index is None:
            index = int(torch.randint(batch["keys"].size(0), (1,)))
        rows = [_instance_distances(model, batch, i, samples, chunk, tau) for i in np.atleast_1d(index).tolist()]
        match, match_rel = aggregate_match(model, batch, samples, tau)
    return {
        "prior_post": float(np.mean([r[0] for r in rows])),
        "mixture": float(np.mean([r[1] for r in rows])),
        "match": match,
        "match_rel": match_rel,
    }


def _instance_distances(
    model: MixPoetIGS | MixPoetAUS, batch: dict[str, Tensor], i: int, samples: int, chunk: int, tau: float
) -> tuple[float, float]:
    """('prior_post', 'mixture') of :func:`latent_diagnostics` for instance ``i`` of ``batch``."""
    one = {
        k: batch[k][i : i + 1].repeat(chunk, *([1] * (batch[k].dim() - 1)))
        for k in ("keys", "poems", "labels", "label_mask")
    }
    prior_post = mahalanobis_distance(*aggregate_samples(model, one, samples, tau))
    h_w = model.encode_keyword(one["keys"])  # eval mode: no random numbers drawn
    rounds = max(math.ceil(samples / chunk), 1)
    groups = []
    for y1 in range(model.n_classes[0]):
        for y2 in range(model.n_classes[1]):
            y = [h_w.new_full((chunk,), y1, dtype=torch.long), h_w.new_full((chunk,), y2, dtype=torch.long)]
            groups.append(torch.cat([model.prior_sample(h_w, y).float() for _ in range(rounds)]))
    return prior_post, mean_pairwise_distance(groups)


def aggregate_samples(
    model: MixPoetIGS | MixPoetAUS, batch: dict[str, Tensor], samples: int, tau: float
) -> tuple[Tensor, Tensor]:
    """(posterior, prior) draws over ``batch``: ⌈samples / B⌉ draws of z ~ q(z|x, w, y) and of z ~ p(z|w, y) for
    each of its B instances, labels sampled as in training. Call under :func:`fixed_rng` (and :func:`eval_mode`
    for the networks as generation uses them)."""
    h_x, h_w = model.encode(batch)
    logits = model.classify_xw(h_x, h_w)
    priors, posts = [], []
    for _ in range(max(math.ceil(samples / h_x.size(0)), 1)):
        y = model.sample_labels(logits, batch["labels"], batch["label_mask"], tau)
        priors.append(model.prior_sample(h_w, y).float())
        posts.append(model.posterior_sample(h_x, h_w, y).float())
    return torch.cat(posts), torch.cat(priors)


def aggregate_match(
    model: MixPoetIGS | MixPoetAUS, batch: dict[str, Tensor], samples: int, tau: float
) -> tuple[float, float]:
    """How far the aggregate prior is from the aggregate posterior over ``batch``: the Fréchet distance d_F between
    Gaussians fitted to the draws of :func:`aggregate_samples`, and d_F / (tr Σ_q + tr Σ_p), its scale-free version
    (d_F alone grows and shrinks with the spread of z). This is what the adversarial game matches (the two
    distributions, not one poem's posterior against its keyword's prior as 'prior_post' does); 0 = the fits
    coincide, about 1 or more = they barely overlap. Call under :func:`eval_mode` and :func:`fixed_rng`."""
    z_q, z_p = aggregate_samples(model, batch, samples, tau)
    d_f = frechet_distance(z_q, z_p)
    return d_f, d_f / float(z_q.var(0).sum() + z_p.var(0).sum())


def diagnostic_row(
    model: MixPoetIGS | MixPoetAUS,
    batch: dict[str, Tensor],
    settings: TrainConfig,
    counters: dict[str, Any],
    tau: float,
    fixed: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """The log columns 'diag_prior_post', 'diag_mixture', 'diag_match', 'diag_match_rel' of a factor model's
    training step.

    With a ``fixed`` batch (:func:`diagnostic_batch`): the mean over its first ``settings.diag_instances``
    instances, under :data:`VAL_SEED` every time, so that successive rows differ only by the model (and τ).
    Without: one random instance of the training ``batch``, seeded from the step's Gumbel counter (the official
    code's measure, noisy from row to row)."""
    if fixed is not None and settings.diag_instances > 0:
        index: list[int] | None = list(range(min(settings.diag_instances, fixed["keys"].size(0))))
        batch, seed = fixed, VAL_SEED
    else:
        index, seed = None, derived_seed(VAL_SEED, "diag", counters["tau_step"])
    d = latent_diagnostics(model, batch, settings.diag_samples, settings.diag_chunk, tau, seed, index)
    return {f"diag_{k}": v for k, v in d.items()}
