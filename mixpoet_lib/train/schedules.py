"""Schedules as pure functions of a step or epoch counter (design §4.2, §4.3 and §4.6).

Counters are 1-based where the official code counts "the s-th optimiser step" or "epoch e" so the
functions read like the formulas; each docstring says which counter it expects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from mixpoet_lib.config import PhaseConfig

__all__ = [
    "learning_rate",
    "phase_learning_rate",
    "make_lr_scheduler",
    "phase_lr_scheduler",
    "gumbel_tau",
    "instance_noise",
    "teacher_forcing_ratio",
    "kl_weight",
    "planned_steps",
    "make_optimizer",
]


def learning_rate(
    step: int, lr_max: float = 8e-4, lr_min: float = 5e-8, warmup: int = 4500, decay_exponent: float = 0.55
) -> float:
    """Learning rate of the ``step``-th optimiser step (1-based): linear warm-up, then (warmup/s)^β decay.

    lr(s) = lr_max·s/warmup for s ≤ warmup, else max(lr_max·(warmup/s)^β, lr_min) (design §4.2).
    """
    if step <= 0:
        return 0.0
    if warmup > 0 and step <= warmup:
        return lr_max * step / warmup
    return max(lr_max * (max(warmup, 1) / step) ** decay_exponent, lr_min)


def phase_learning_rate(step: int, phase: PhaseConfig, decay_exponent: float | None = None) -> float:
    """:func:`learning_rate` with a phase's settings (``decay_exponent`` overrides, e.g. 0.5 for the discriminator)."""
    beta = phase.decay_exponent if decay_exponent is None else decay_exponent
    return learning_rate(step, phase.lr_max, phase.lr_min, phase.warmup_steps, beta)


def make_lr_scheduler(
    optimizer: Optimizer, lr_max: float, lr_min: float, warmup: int, decay_exponent: float, last_step: int = 0
) -> LambdaLR:
    """Return a LambdaLR so that the n-th ``optimizer.step()`` (1-based) runs at :func:`learning_rate` (n).

    Call ``scheduler.step()`` after every ``optimizer.step()``. The groups' lr is reset to ``lr_max``
    (the LambdaLR base). ``last_step`` resumes a schedule that has already done that many steps.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr_max
        group["initial_lr"] = lr_max

    def factor(i: int) -> float:
        return learning_rate(i + 1, lr_max, lr_min, warmup, decay_exponent) / lr_max

    return LambdaLR(optimizer, factor, last_epoch=last_step - 1 if last_step > 0 else -1)


def phase_lr_scheduler(
    optimizer: Optimizer, phase: PhaseConfig, decay_exponent: float | None = None, last_step: int = 0
) -> LambdaLR:
    """:func:`make_lr_scheduler` with a phase's settings."""
    beta = phase.decay_exponent if decay_exponent is None else decay_exponent
    return make_lr_scheduler(optimizer, phase.lr_max, phase.lr_min, phase.warmup_steps, beta, last_step)


def gumbel_tau(step: int, annealing_steps: int = 6000, min_tau: float = 0.01) -> float:
    """Gumbel temperature τ_t = max(min_tau^(t/annealing_steps), min_tau), t = MixPoet batches so far (0-based)."""
    if annealing_steps <= 0:
        return min_tau
    return max(min_tau ** (max(step, 0) / annealing_steps), min_tau)


def instance_noise(
    step: int, init: float = 0.3, decay_steps: int = 8500, started: bool = True, before: float = 1.0
) -> float:
    """Instance-noise std σ_s = max(init·(1 − s/decay_steps), 0), s = post-warm-up batches (0-based).

    Before any discriminator step (``started=False``) the official logs show ``before`` (1.0).
    """
    if not started:
        return before
    if decay_steps <= 0:
        return 0.0
    return max(init * (1.0 - max(step, 0) / decay_steps), 0.0)


def teacher_forcing_ratio(epoch: int, burn_in: int, decay: int, r_min: float = 0.85) -> float:
    """Teacher-forcing ratio used *during* ``epoch`` (1-based), design §4.3.

    The ratio set at the end of epoch e applies to e+1: r = 1 while e ≤ burn_in, else
    max(exp(−α·e), r_min) with α = −ln(r_min)/decay. So epoch ``epoch`` uses the value of e = epoch − 1.
    """
    e = epoch - 1
    if e <= burn_in or r_min >= 1.0:
        return 1.0
    alpha = -math.log(r_min) / max(decay, 1)
    return max(math.exp(-alpha * e), r_min)


def kl_weight(
    step: int,
    total_steps: int,
    kind: str = "linear",
    max_weight: float = 1.0,
    midpoint: float = 0.5,
    steepness: float = 10.0,
) -> float:
    """KL-annealing weight for the Gaussian baselines at ``step`` (0-based).

    ``linear``: max_weight·min(step/total_steps, 1); ``sigmoid``: max_weight·σ(steepness·(step/total − midpoint));
    ``constant``: max_weight. total_steps ≤ 0 means no annealing.
    """
    if kind == "constant" or total_steps <= 0:
        return max_weight
    frac = max(step, 0) / total_steps
    if kind == "linear":
        return max_weight * min(frac, 1.0)
    if kind == "sigmoid":
        return max_weight / (1.0 + math.exp(-steepness * (frac - midpoint)))
    raise ValueError(f"unknown KL annealing kind {kind!r}; choose linear, sigmoid or constant")


def planned_steps(per_epoch: int, phase: PhaseConfig) -> int:
    """Optimiser steps of a phase: ``epochs`` passes of ``per_epoch`` batches, capped by ``max_steps`` (at least 1)."""
    total = per_epoch * phase.epochs
    if phase.max_steps is not None:
        total = min(total, phase.max_steps)
    return max(total, 1)


def make_optimizer(
    params: Iterable[torch.nn.Parameter], phase: PhaseConfig, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """The kit's optimiser for every phase: AdamW at the phase's peak learning rate (the schedule scales it)."""
    return torch.optim.AdamW(params, lr=phase.lr_max, betas=betas, weight_decay=weight_decay)
