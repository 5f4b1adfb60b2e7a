"""One trainer per kind of phase: it builds the model, loads its upstream weights, makes the optimisers, keeps the
counters and calls the step function of :mod:`mixpoet_lib.train.steps` on every batch.

The trainers of the factor models (IGS, AUS) are in :mod:`mixpoet_lib.train.factor_trainers`; the phase runner
(:mod:`mixpoet_lib.train.phases`) picks the trainer of a phase and drives it through ``build`` → ``init_fresh`` →
``fresh_counters`` → ``make_optimisers`` (or a resume from a checkpoint), then ``step`` for every batch and
``validate`` at the validation points.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mixpoet_lib._util import derived_seed
from mixpoet_lib.checkpoints import SHARED, build_model, checkpoint_path, read_checkpoint
from mixpoet_lib.config import PhaseConfig, Profile
from mixpoet_lib.data.batching import BatchStream
from mixpoet_lib.data.dataset import TRAIN_SPLITS, PreparedData
from mixpoet_lib.models.factor_models import FactorModelBase
from mixpoet_lib.models.generators import PoetBase
from mixpoet_lib.models.losses import dimension_share_above, gaussian_kl_per_item, reconstruction_loss
from mixpoet_lib.signatures import SIGNATURE_IF_SET
from mixpoet_lib.train import steps
from mixpoet_lib.train.diagnostics import (
    VAL_SEED,
    active_units,
    classifier_scores,
    eval_mode,
    fixed_rng,
    validation_batches,
)
from mixpoet_lib.train.optimisers import Optimisers, OptimiserSpec, make_optimisers
from mixpoet_lib.train.schedules import teacher_forcing_ratio

__all__ = ["TrainContext", "Trainer", "Callback"]  # and the Trainer subclasses, one per phase kind

Callback = Callable[[str, int, dict[str, Any]], None]
Extra = Callable[[dict[str, Any], dict[str, Tensor]], None]  # sees each (model output, batch) of a validation

WORD_DROPOUT_MODELS = SIGNATURE_IF_SET["word_dropout"][1]  # the models ``train.word_dropout`` acts in (and signs)
LABEL_DROPOUT_MODELS = SIGNATURE_IF_SET["label_dropout"][1]  # the models ``train.label_dropout`` acts in


@dataclass
class TrainContext:
    """What every phase of one ``train`` call shares: settings, data, run folder, device, progress and logging."""

    profile: Profile
    data: PreparedData
    run_dir: Path
    device: torch.device
    progress: bool
    callback: Callback | None
    log: Callable[[str], None]

    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary the models are built for."""
        return len(self.data.vocab)


class Trainer:
    """Base: model, optimisers (a :class:`~mixpoet_lib.train.optimisers.Optimisers`), counters, validation batches."""

    model_kind = "?"
    stream_mode = "mixpoet_pre"
    columns: tuple[str, ...] = ()
    val_columns: tuple[str, ...] = ()

    def __init__(self, ctx: TrainContext, name: str, phase: str):
        self.ctx, self.name, self.phase = ctx, name, phase
        self.tcfg = ctx.profile.train
        self.model: Any = None  # the network of this phase's kind, built by build()
        self.opt = Optimisers()
        self.counters: dict[str, Any] = {"opt_steps": {}}
        self._val_cache: list[dict[str, Tensor]] | None = None

    @property
    def pcfg(self) -> PhaseConfig:
        """The phase's settings (batch size, epochs, learning rate, teacher forcing)."""
        return self.tcfg.mixture

    def model_args(self) -> dict[str, Any]:
        """The arguments of ``build_model`` (stored in the checkpoint and its signature); 'bow' only when set."""
        bow = self.model_kind in ("cvae", "igs", "aus") and self.tcfg.bow_weight > 0
        return {"kind": self.model_kind, **({"bow": True} if bow else {})}

    def stream(self) -> BatchStream:
        """The phase's training batches; the order depends on (seed, phase) only, the same for every model."""
        seed = derived_seed(self.ctx.profile.seed, "batches", self.phase)
        return BatchStream(self.ctx.data, TRAIN_SPLITS, self.stream_mode, self.pcfg.batch_size, seed)

    def build(self) -> nn.Module:
        """Build a fresh model on the device, in training mode."""
        args = self.model_args()
        self.model = build_model(
            args["kind"],
            self.ctx.profile.model,
            self.ctx.vocab_size,
            straight_through=bool(args.get("straight_through", False)),
            bow=bool(args.get("bow", False)),
            readout=bool(args.get("readout", False)),
        ).to(self.ctx.device)
        self.model.train()
        return self.model

    def optimiser_specs(self) -> dict[str, OptimiserSpec]:
        """name → (parameters, betas, LR decay exponent)."""
        return {"rec": (list(self.model.param_groups()["rec"]), self.tcfg.betas, self.pcfg.decay_exponent)}

    def make_optimisers(
        self, opt_states: dict[str, Any] | None = None, sched_states: dict[str, Any] | None = None
    ) -> None:
        """Make the optimisers and schedules (from saved states when given), at the counters' step counts."""
        self.opt = make_optimisers(
            self.optimiser_specs(),
            self.pcfg,
            self.tcfg,
            self.counters["opt_steps"],
            opt_states,
            sched_states,
            self.lr_scales(),
        )

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers per optimiser name (none by default)."""
        return {}

    def init_fresh(self, upstream: dict[str, Any] | None) -> None:
        """Load upstream weights into a freshly built model (before the optimisers are made)."""

    def fresh_counters(self, upstream: dict[str, Any] | None) -> None:
        """Set counters for a fresh start (may read the upstream checkpoint)."""

    def upstream_opt_states(self, upstream: dict[str, Any] | None) -> dict[str, Any] | None:
        """Optimiser states to continue from (C2 keeps C1's), else None."""
        return None

    def state(self) -> dict[str, Any]:
        """Optimisers, schedules and counters, as stored in a checkpoint."""
        return {
            "optimizers": {k: o.state_dict() for k, o in self.opt.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.opt.schedulers.items()},
            "counters": self.counters,
        }

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when the profile asks for it."""
        return steps.autocast(self.model, self.tcfg.amp_bf16)

    def tf_ratio(self, epoch: int) -> float:
        """Teacher-forcing ratio of this epoch."""
        p = self.pcfg
        return teacher_forcing_ratio(epoch, p.tf_burn_in, p.tf_decay, p.tf_min)

    def rec_val_batches(self, corrupt_ratio: float = 0.0, mode: str = "mixpoet_pre") -> list[dict[str, Tensor]]:
        """The fixed validation batches (made once per phase)."""
        if self._val_cache is None:
            self._val_cache = validation_batches(
                self.ctx.data, mode, self.pcfg.batch_size, self.tcfg.val_batches, self.ctx.device, corrupt_ratio
            )
        return self._val_cache

    def rec_validation(
        self,
        decode: Callable[[dict[str, Tensor]], Any],
        corrupt: float = 0.0,
        mode: str = "mixpoet_pre",
        extra: Extra | None = None,
    ) -> dict[str, Any]:
        """Mean reconstruction loss and perplexity over the validation batches (eval mode, no grad, fixed RNG);
        ``extra(output, batch)`` sees every model output."""
        losses = []
        with eval_mode(self.model), torch.no_grad(), fixed_rng(VAL_SEED), self.autocast():
            for b in self.rec_val_batches(corrupt, mode):
                out = decode(b)
                losses.append(float(reconstruction_loss(out["decode"] if isinstance(out, dict) else out)))
                if extra is not None and isinstance(out, dict):
                    extra(out, b)
        rec = float(np.mean(losses))
        return {"val_rec": rec, "val_ppl": math.exp(min(rec, 50.0))}

    def classifier_validation(self, factors: list[int]) -> dict[str, float]:
        """Accuracy and macro-F1 of both classifiers of these factors on cqcf_valid."""
        with self.autocast():
            return classifier_scores(self.model, self.ctx.data, self.ctx.device, factors, self.tcfg.cl_val_instances)

    def step(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Any]:
        """One training update on ``batch``; returns the log row."""
        raise NotImplementedError

    def validate(self) -> dict[str, Any]:
        """The validation row."""
        raise NotImplementedError


class DAETrainer(Trainer):
    """Phase A (design §4.1): reconstruct the clean lines from the UNK-corrupted poem and the keyword."""

    model_kind = "dae"
    stream_mode = "dae"
    columns = ("epoch", "lr", "tf_ratio", "loss", "grad_norm")
    val_columns = ("val_rec", "val_ppl")

    @property
    def pcfg(self) -> PhaseConfig:
        """The DAE settings."""
        return self.tcfg.dae

    def stream(self) -> BatchStream:
        """Corrupted training batches."""
        seed = derived_seed(self.ctx.profile.seed, "batches", "dae")
        return BatchStream(self.ctx.data, TRAIN_SPLITS, "dae", self.pcfg.batch_size, seed, self.tcfg.dae_corrupt_ratio)

    def optimiser_specs(self) -> dict[str, OptimiserSpec]:
        """One optimiser over every parameter."""
        return {"rec": (list(self.model.param_groups()["dae"]), self.tcfg.betas, self.pcfg.decay_exponent)}

    def step(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Any]:
        """:func:`~mixpoet_lib.train.steps.dae_step`."""
        return steps.dae_step(self.model, batch, self.opt, self.tf_ratio(epoch), self.tcfg.amp_bf16)

    def validate(self) -> dict[str, Any]:
        """Reconstruction of corrupted validation poems."""
        return self.rec_validation(lambda b: self.model(b)["decode"], corrupt=self.tcfg.dae_corrupt_ratio, mode="dae")


class ClassifierTrainer(Trainer):
    """Phases B1/B2: CE(q(y_k|x,w)) + CE(p(y_k|w)) on the instances labelled for factor k, clean poems."""

    model_kind = "classifier"
    columns = ("epoch", "lr", "loss", "loss_xw", "loss_w", "acc_xw", "acc_w", "grad_norm")
    val_columns = ("val_acc_xw", "val_f1_xw", "val_acc_w", "val_f1_w")

    def __init__(self, ctx: TrainContext, name: str, phase: str):
        super().__init__(ctx, name, phase)
        self.k = int(phase[-1]) - 1
        self.stream_mode = phase

    @property
    def pcfg(self) -> PhaseConfig:
        """The classifier settings."""
        return self.tcfg.classifier

    def init_fresh(self, upstream: dict[str, Any] | None) -> None:
        """B1 takes the DAE's shared weights, B2 the whole B1 model."""
        up = _required(upstream, self)
        if self.phase == "cl1":
            self.model.load_shared(up["model"])  # embed, encoders (and decoder, handed on untouched)
        else:
            self.model.load_state_dict(up["model"])

    def optimiser_specs(self) -> dict[str, OptimiserSpec]:
        """The classifiers of this factor and the shared encoders."""
        return {"rec": (list(self.model.classifier_groups()[self.phase]), self.tcfg.betas, self.pcfg.decay_exponent)}

    def step(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Any]:
        """:func:`~mixpoet_lib.train.steps.classifier_step`."""
        return steps.classifier_step(self.model, batch, self.opt, self.k, self.tcfg.amp_bf16)

    def validate(self) -> dict[str, Any]:
        """Accuracy and macro-F1 of this factor's classifiers."""
        return self.classifier_validation([self.k])


def _required(upstream: dict[str, Any] | None, tr: Trainer) -> dict[str, Any]:
    """The upstream checkpoint a phase starts from (every phase but the DAE has one)."""
    if upstream is None:
        raise ValueError(f"{tr.name}_{tr.phase} starts from an upstream checkpoint, but none was given")
    return upstream


def _load_prefixes(model: nn.Module, state: dict[str, Tensor], prefixes: tuple[str, ...]) -> list[str]:
    own = model.state_dict()
    take = {k: v for k, v in state.items() if k.startswith(prefixes) and k in own and own[k].shape == v.shape}
    model.load_state_dict(take, strict=False)
    return sorted(take)


class SecondStage(Trainer):
    """Shared by the C phases: c1 (mixture settings) or c2 (fine-tuning); teacher forcing with the leftover quirk."""

    @property
    def pcfg(self) -> PhaseConfig:
        """Fine-tuning settings in C2, mixture settings in C1."""
        return self.tcfg.finetune if self.phase == "c2" else self.tcfg.mixture

    def build(self) -> nn.Module:
        """A fresh model; the latent models get ``train.word_dropout``, IGS / AUS also ``train.label_dropout``."""
        model = super().build()
        if self.name in WORD_DROPOUT_MODELS and isinstance(model, PoetBase):
            model.word_dropout = self.tcfg.word_dropout
        if self.name in LABEL_DROPOUT_MODELS and isinstance(model, FactorModelBase):
            model.set_label_dropout(self.tcfg.label_dropout)
        return model

    def stream(self) -> BatchStream:
        """All training instances in C1, the labelled ones in C2."""
        mode = "mixpoet_tune" if self.phase == "c2" else "mixpoet_pre"
        seed = derived_seed(self.ctx.profile.seed, "batches", self.phase)
        return BatchStream(self.ctx.data, TRAIN_SPLITS, mode, self.pcfg.batch_size, seed)

    def init_fresh(self, upstream: dict[str, Any] | None) -> None:
        """C2 continues C1; C1 takes the shared weights (and, for factor models, the pre-trained classifiers)."""
        up = _required(upstream, self)
        if self.phase == "c2":
            self.model.load_state_dict(up["model"])
        else:
            self.model.load_shared(up["model"])
            if isinstance(self.model, FactorModelBase):
                _load_prefixes(self.model, up["model"], ("cl_xw.", "cl_w."))

    def upstream_opt_states(self, upstream: dict[str, Any] | None) -> dict[str, Any] | None:
        """C2 keeps C1's optimiser states."""
        return _required(upstream, self)["optimizers"] if self.phase == "c2" else None

    def fresh_counters(self, upstream: dict[str, Any] | None) -> None:
        """C2 continues C1's counters and teacher-forcing epochs; C1 may start at the DAE's last ratio."""
        if self.phase == "c2":  # the optimisers' step counts, τ, σ and the teacher-forcing epoch count go on
            up = _required(upstream, self)
            self.counters = json.loads(json.dumps(up["counters"]))
            up_steps, up_per_epoch = int(up["step"]), int(up["steps_per_epoch"])
            self.counters["tf_epoch_offset"] = math.ceil(up_steps / max(up_per_epoch, 1))
            self.counters["tf_leftover"] = None
            return
        self.counters["tf_epoch_offset"] = 0
        self.counters["tf_leftover"] = self._dae_leftover_ratio() if self.tcfg.tf_leftover_quirk else None

    def _dae_leftover_ratio(self) -> float:
        dae = read_checkpoint(checkpoint_path(self.ctx.run_dir, SHARED, "dae"), mmap=True)
        done_epochs = int(dae["step"]) // max(int(dae["steps_per_epoch"]), 1)
        p = self.tcfg.dae
        return teacher_forcing_ratio(done_epochs + 1, p.tf_burn_in, p.tf_decay, p.tf_min)

    def tf_ratio(self, epoch: int) -> float:
        """The leftover DAE ratio in C1's first epoch (quirk), else the schedule at the continued epoch count."""
        if epoch == 1 and self.counters.get("tf_leftover") is not None:
            return float(self.counters["tf_leftover"])
        p = self.pcfg
        return teacher_forcing_ratio(
            epoch + int(self.counters.get("tf_epoch_offset", 0)), p.tf_burn_in, p.tf_decay, p.tf_min
        )


class BasicTrainer(SecondStage):
    """Keyword-only generator: s0 = tanh(dec_init_pre(h_w)) (fresh), everything else from the DAE."""

    model_kind = "basic"
    columns = ("epoch", "lr", "tf_ratio", "loss", "grad_norm")
    val_columns = ("val_rec", "val_ppl")

    def step(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Any]:
        """:func:`~mixpoet_lib.train.steps.basic_step`."""
        return steps.basic_step(self.model, batch, self.opt, self.tf_ratio(epoch), self.tcfg.amp_bf16)

    def validate(self) -> dict[str, Any]:
        """Reconstruction of the validation poems."""
        return self.rec_validation(lambda b: self.model(b))


class FBasicTrainer(BasicTrainer):
    """fBasic: s0 = tanh(dec_init([h_w; d_1(ỹ_1); d_2(ỹ_2)])) (fresh), labels or "unknown" as inputs; C1 on every
    instance, C2 on the labelled ones (:class:`SecondStage` streams)."""

    model_kind = "fbasic"

    def step(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Any]:
        """:func:`~mixpoet_lib.train.steps.fbasic_step`."""
        return steps.fbasic_step(self.model, batch, self.opt, self.tf_ratio(epoch), self.tcfg.amp_bf16)


class CVAETrainer(SecondStage):
    """Gaussian CVAE: L = rec + β_t · KL(q(z|x,w) ‖ p(z|w)) with free bits per dimension [+ λ_bow · L_bow]."""

    model_kind = "cvae"
    columns = (
        *("epoch", "lr", "tf_ratio", "loss", "rec", "kl", "kl_fb", "kl_weight"),
        *("kl_above", "bow", "active_units", "grad_norm"),
    )
    val_columns = ("val_rec", "val_ppl", "val_kl", "val_kl_above", "val_active_units")

    def step(self, batch: dict[str, Tensor], epoch: int) -> dict[str, Any]:
        """:func:`~mixpoet_lib.train.steps.cvae_step`."""
        return steps.cvae_step(self.model, batch, self.opt, self.tcfg, self.tf_ratio(epoch))

    def validate(self) -> dict[str, Any]:
        """Reconstruction, KL, share of dimensions whose mean KL is above λ, and active units on validation poems."""
        kls, dims, mus = [], [], []

        def _extra(out: dict[str, Any], _b: dict[str, Tensor]) -> None:
            (mq, lq), (mp, lp) = [(a.float(), b.float()) for a, b in (out["posterior"], out["prior"])]
            dims.append(gaussian_kl_per_item(mq, lq, mp, lp))
            kls.append(float(dims[-1].mean(0).sum()))  # = gaussian_kl(mq, lq, mp, lp): batch mean, summed
            mus.append(mq)

        res = self.rec_validation(lambda b: self.model(b), extra=_extra)
        res.update(
            val_kl=float(np.mean(kls)),
            val_kl_above=dimension_share_above(torch.cat(dims), self.tcfg.free_bits),
            val_active_units=active_units(torch.cat(mus)),
        )
        return res
