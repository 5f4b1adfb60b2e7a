"""The trainers of the factor models: MixPoet-IGS and MixPoet-AUS (and its straight-through variant ``aus_st``).

They run the second-stage phases C1 (every instance) and C2 (labelled fine-tuning) of
:class:`~mixpoet_lib.train.trainers.SecondStage`, start C1 from the pre-trained classifiers of phases B1/B2, and
keep the batch counters of the Gumbel temperature τ, the instance noise σ and the AUS warm-up across C1 and C2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixpoet_lib.config import PhaseConfig, TrainConfig
from mixpoet_lib.models.factor_models import MixPoetAUS
from mixpoet_lib.models.layers import unique_params
from mixpoet_lib.models.losses import (
    dimension_share_above,
    gaussian_kl_per_item,
    relativistic_d_loss,
    relativistic_g_loss,
)
from mixpoet_lib.train import steps
from mixpoet_lib.train.diagnostics import active_units, diagnostic_batch
from mixpoet_lib.train.optimisers import OptimiserSpec
from mixpoet_lib.train.trainers import SecondStage

__all__ = ["CL_VAL_COLUMNS", "FactorTrainer", "IGSTrainer", "AUSTrainer"]

CL_VAL_COLUMNS = tuple(f"val_{m}_{t}{k}" for k in (1, 2) for t in ("xw", "w") for m in ("acc", "f1"))


def aus_optimiser_specs(model: MixPoetAUS, settings: TrainConfig, phase: PhaseConfig) -> dict[str, OptimiserSpec]:
    """MixPoet-AUS's three optimisers (design §4.6): R (reconstruction and classifiers), D (discriminator, its own
    betas and LR decay) and G (prior, posterior and the read-out / bag-of-words heads when built; also the embedding
    and both encoders unless ``settings.gen_shared`` is off)."""
    g, t = model.param_groups(), settings
    gen = g["gen"] if t.gen_shared else unique_params(model.prior, model.posterior, *model.term_heads())
    return {
        "rec": (list(g["rec"]), t.betas, phase.decay_exponent),
        "dis": (list(g["dis"]), t.dis_betas, t.dis_decay_exponent),
        "gen": (list(gen), t.betas, phase.decay_exponent),
    }


class FactorTrainer(SecondStage):
    """Shared by IGS and AUS: straight-through flag, the batch counters of τ, σ and the warm-up, and the fixed
    batch of the latent diagnostics."""

    _diag_cache: dict[str, Tensor] | None = None

    def model_args(self) -> dict[str, Any]:
        """Kind (and bag-of-words flag), straight-through flag (always on for aus_st), AUS's 'readout' when set."""
        st = True if self.name == "aus_st" else bool(self.tcfg.straight_through_labels)
        readout = self.model_kind == "aus" and self.tcfg.readout_weight > 0
        return {**super().model_args(), "straight_through": st, **({"readout": True} if readout else {})}

    def fresh_counters(self, upstream: dict[str, Any] | None) -> None:
        """C1 starts the factor counters at 0; C2 continues them."""
        super().fresh_counters(upstream)
        if self.phase == "c1":
            self.counters.update(steps.factor_counters())

    def diag_batch(self) -> dict[str, Tensor] | None:
        """The fixed batch of the latent diagnostics (made once), or None for the official random instance."""
        if self.tcfg.diag_instances <= 0 or self.tcfg.diag_every <= 0:
            return None
        if self._diag_cache is None:
            self._diag_cache = diagnostic_batch(self.ctx.data, self.ctx.device)
        return self._diag_cache

    def tau(self) -> float:
        """The current Gumbel temperature."""
        return steps.gumbel_temperature(self.tcfg, self.counters)


class IGSTrainer(FactorTrainer):
    """MixPoet-IGS: rec + β_t Σ_k KL_k (free bits) + Σ_k (L_xw + L_ent + L_w) [+ λ_bow · L_bow]."""

    model_kind = "igs"
    columns = (
        "epoch",
        "lr",
        "tf_ratio",
        "tau",
        "loss",
        "rec",
        "kl1",
        "kl2",
        "kl_weight",
        "kl_above",
        "bow",
        "xw",
        "ent",
        "w",
        "active_units",
        "grad_norm",
        "diag_prior_post",
        "diag_mixture",
        "diag_match",
        "diag_match_rel",
    )
    val_columns = ("val_rec", "val_ppl", "val_kl1", "val_kl2", "val_kl_above", "val_active_units", *CL_VAL_COLUMNS)

    def step(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Any]:
        """:func:`~mixpoet_lib.train.steps.igs_step`."""
        return steps.igs_step(
            self.model, batch, self.opt, self.tcfg, self.counters, self.tf_ratio(epoch), self.diag_batch()
        )

    def validate(self) -> dict[str, Any]:
        """Reconstruction, per-factor KL, share of dimensions whose mean KL is above λ, active units and both
        factors' classifier scores."""
        kls: list[list[float]] = [[], []]
        dims, mus = [], []

        def _extra(out: dict[str, Any], _b: dict[str, Tensor]) -> None:
            per_factor = [
                gaussian_kl_per_item(mq.float(), lq.float(), mp.float(), lp.float())
                for (mq, lq), (mp, lp) in zip(out["posterior"], out["prior"])
            ]
            for k, kl in enumerate(per_factor):
                kls[k].append(float(kl.mean(0).sum()))  # = gaussian_kl of the sub-space: batch mean, summed
            dims.append(torch.cat(per_factor, -1))
            mus.append(torch.cat([mq for mq, _ in out["posterior"]], -1))

        res = self.rec_validation(lambda b: self.model(b, tau=self.tau()), extra=_extra)
        res.update(
            val_kl1=float(np.mean(kls[0])),
            val_kl2=float(np.mean(kls[1])),
            val_kl_above=dimension_share_above(torch.cat(dims), self.tcfg.free_bits),
            val_active_units=active_units(torch.cat(mus)),
        )
        res.update(self.classifier_validation([0, 1]))
        return res


class AUSTrainer(FactorTrainer):
    """MixPoet-AUS, design §4.6, per batch of C1/C2: R update; after the warm-up ndis D updates and one G update."""

    model_kind = "aus"
    columns = (
        "epoch",
        "lr_rec",
        "lr_dis",
        "lr_gen",
        "tf_ratio",
        "tau",
        "sigma",
        "loss",
        "rec",
        "xw",
        "ent",
        "w",
        "grad_norm",
        "stock",
        "stock_share",
        "d_loss",
        "g_loss",
        "ms",
        "readout",
        "bow",
        "diag_prior_post",
        "diag_mixture",
        "diag_match",
        "diag_match_rel",
    )
    val_columns = ("val_rec", "val_ppl", "val_d_loss", "val_g_loss", *CL_VAL_COLUMNS)

    def optimiser_specs(self) -> dict[str, OptimiserSpec]:
        """:func:`aus_optimiser_specs` at this phase's LR decay."""
        return aus_optimiser_specs(self.model, self.tcfg, self.pcfg)

    def lr_scales(self) -> dict[str, float]:
        """G's learning rate × ``train.gen_lr_scale`` (1 = official)."""
        return {"gen": self.tcfg.gen_lr_scale}

    def step(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Any]:
        """:func:`~mixpoet_lib.train.steps.aus_step`."""
        return steps.aus_step(
            self.model, batch, self.opt, self.tcfg, self.counters, self.tf_ratio(epoch), self.diag_batch()
        )

    def validate(self) -> dict[str, Any]:
        """Reconstruction, adversarial losses without noise and both factors' classifier scores."""
        adv: list[tuple[float, float]] = []
        m = self.model

        def _extra(_out: dict[str, Any], b: dict[str, Tensor]) -> None:
            z_post, z_prior, y = m.latent_pair(b, self.tau(), 0.0)
            d_real, d_fake = m.discriminate(z_post.float(), y), m.discriminate(z_prior.float(), y)
            adv.append((float(relativistic_d_loss(d_real, d_fake)), float(relativistic_g_loss(d_real, d_fake))))

        res = self.rec_validation(lambda b: m(b, tau=self.tau(), update_prior_stats=False), extra=_extra)
        res.update(val_d_loss=float(np.mean([a for a, _ in adv])), val_g_loss=float(np.mean([g for _, g in adv])))
        res.update(self.classifier_validation([0, 1]))
        return res
