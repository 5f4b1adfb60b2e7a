"""The optimisers of a training phase: AdamW per parameter group with its learning-rate schedule, gradient
clipping and step counts (design §4.3). The step functions of :mod:`mixpoet_lib.train.steps` update through them.

    opt = make_optimisers({"rec": (model.param_groups()["rec"], cfg.betas, cfg.mixture.decay_exponent)},
                          cfg.mixture, cfg)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn
from torch.nn.utils import clip_grad_norm_
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from mixpoet_lib.config import PhaseConfig, TrainConfig
from mixpoet_lib.train.schedules import make_optimizer, phase_lr_scheduler

__all__ = ["OptimiserSpec", "Optimisers", "make_optimisers"]

OptimiserSpec = tuple[Iterable[nn.Parameter], tuple[float, float], float]  # parameters, betas, LR decay exponent


@dataclass
class Optimisers:
    """A phase's optimisers by name ('rec', 'dis', 'gen') with their parameters, LR schedules and step counts.

    ``steps`` is the dict of optimiser steps done so far; the trainer keeps it in its checkpointed counters.
    """

    optimizers: dict[str, Optimizer] = field(default_factory=dict)
    schedulers: dict[str, LambdaLR] = field(default_factory=dict)
    params: dict[str, list[nn.Parameter]] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    clip_grad_norm: float = 2.0

    def lr(self, name: str = "rec") -> float:
        """The learning rate the next update of optimiser ``name`` will use."""
        return float(self.optimizers[name].param_groups[0]["lr"])

    def update(self, model: nn.Module, name: str, loss: Tensor) -> float:
        """Backward ``loss``, clip the group's global gradient norm, step the optimiser and its LR schedule.

        Returns the gradient norm before clipping.
        """
        model.zero_grad(set_to_none=True)
        loss.backward()
        return self._step(name)

    def _step(self, name: str) -> float:
        """Clip the group's gradients, step its optimiser and LR schedule, count the step; return the norm."""
        norm = clip_grad_norm_(self.params[name], self.clip_grad_norm)
        self.optimizers[name].step()
        self.schedulers[name].step()
        self.steps[name] += 1
        return float(norm)

    def apply(self, name: str, grads: Iterable[Tensor | None]) -> float:
        """Step optimiser ``name`` with gradients computed elsewhere (one per parameter of its group, in order).

        Clips their global norm as :meth:`update` does; returns the norm before clipping.
        """
        for p, g in zip(self.params[name], grads, strict=True):
            p.grad = g
        norm = self._step(name)
        for p in self.params[name]:
            p.grad = None
        return norm


def make_optimisers(
    specs: dict[str, OptimiserSpec],
    phase: PhaseConfig,
    settings: TrainConfig,
    steps: dict[str, int] | None = None,
    opt_states: dict[str, Any] | None = None,
    sched_states: dict[str, Any] | None = None,
    lr_scales: dict[str, float] | None = None,
) -> Optimisers:
    """AdamW + warm-up/decay LR schedule for each ``name → (parameters, betas, decay exponent)`` of ``specs``.

    ``steps`` (updated in place: a new name starts at 0) sets where each schedule starts; ``opt_states`` and
    ``sched_states`` restore the optimisers and schedules of a checkpoint; ``lr_scales`` multiplies the phase's
    learning rates (``lr_max`` and ``lr_min``) of the named optimisers.
    """
    steps = {} if steps is None else steps
    out = Optimisers(steps=steps, clip_grad_norm=settings.clip_grad_norm)
    for name, (params, betas, decay_exponent) in specs.items():
        out.params[name] = list(params)
        scale = (lr_scales or {}).get(name, 1.0)
        own = dataclasses.replace(phase, lr_max=phase.lr_max * scale, lr_min=phase.lr_min * scale)
        opt = out.optimizers[name] = make_optimizer(out.params[name], own, settings.weight_decay, betas)
        if opt_states and name in opt_states:
            opt.load_state_dict(opt_states[name])
        steps.setdefault(name, 0)
        out.schedulers[name] = phase_lr_scheduler(opt, own, decay_exponent, last_step=steps[name])
        if sched_states and name in sched_states:  # resume: the rebuilt schedule's bookkeeping, verbatim
            out.schedulers[name].load_state_dict(sched_states[name])
    return out
