"""Training of every model, phase by phase, resumable and bit-reproducible (spec §3).

Phases (spec §3.1), each a resumable unit with its own optimisers, learning-rate schedules, CSV log and
checkpoint ``<run>/checkpoints/<name>_<phase>.pt``:

============  ==========  =======================================================================
name          phase       what
============  ==========  =======================================================================
``shared``    ``dae``     A: DAE pre-training of the shared encoder/decoder (BasicGenerator on the corrupted poem)
``shared``    ``cl1/2``   B1/B2: classifier pre-training q(y_k|x,w) + p(y_k|w), factor by factor
``basic``     ``c1``      keyword-only generator, reconstruction only (mixture-phase settings)
``cvae``      ``c1``      Gaussian CVAE: reconstruction + annealed KL with free bits
``igs``       ``c1, c2``  MixPoet-IGS: reconstruction + per-sub-space KL + classifier terms; C2 = labelled fine-tuning
``aus``       ``c1, c2``  MixPoet-AUS, the paper's model: R step, then ndis D steps and one G step (spec §3.3)
``aus_st``    ``c1, c2``  MixPoet-AUS with straight-through Gumbel labels (the §2.3 ablation)
============  ==========  =======================================================================

Every random draw comes from torch's global generator (dropout, ε, Gumbel noise, scheduled sampling)
or from generators seeded by (seed, epoch, step) (batches, corruption). A checkpoint stores the
weights, optimiser states, schedule counters and every RNG state, so a run killed at any moment and
resumed from its last checkpoint ends with bit-identical weights and an identical CSV log
(same machine, same thread count). Validation and diagnostics run under a forked, fixed-seed RNG in
eval mode, so they never change training.

Decisions (faithful to the official code unless marked [RECON]):

* Each phase is seeded from (profile seed, model kind, phase): ``aus`` and ``aus_st`` start from the same
  initial weights; every second-stage model sees the same batch order.
* B1/B2 train a :class:`~mixpoet_lib.models.generators.FactorModelBase` that starts from the DAE weights; B2 continues B1
  (the shared embedding and encoders move in both). IGS/AUS C1 starts from B2 (shared weights + classifiers),
  with ``dec_init`` freshly initialised (official). basic/cvae start from the DAE. [RECON] for the baselines.
* ``basic`` = BasicGenerator(condition_on_poem=False): s0 = tanh(dec_init_pre(h_w)), dec_init_pre fresh,
  trained on reconstruction with the mixture-phase settings. basic and cvae have no C2 (no labels to tune on). [RECON]
* C2 keeps C1's optimisers (their step counts, hence the LR schedules, continue; the finetune PhaseConfig's
  LR settings apply from then on), τ/σ counters and the teacher-forcing epoch count.
* AUS σ: as the official code, the first discriminator round after the warm-up still uses the initial σ = 1.0,
  and the generator step uses σ after the advance. σ, τ and the warm-up count batches across C1 and C2.
* Teacher forcing: with ``tf_leftover_quirk`` the first second-stage epoch runs at the ratio the DAE ended on.
* DAE validation uses corrupted inputs like its training [RECON]; the prior's BN statistics move only in
  training steps (never in validation or diagnostics, spec §6.2-4 fixed).
* bf16 autocast (``amp_bf16``) covers the reconstruction/classifier forward; the prior statistics update,
  the discriminator and the adversarial steps run in fp32. Only useful on CUDA or CPUs with native bf16.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import clip_grad_norm_

from mixpoet_lib._util import default_device, derived_seed, digest, jsonable, seed_everything, torch_save_atomic
from mixpoet_lib.checkpoints import (FACTOR_MODELS, MODEL_NAMES, PHASES, SHARED, CKPT_FORMAT, build_model,
                                     check_model_names, checkpoint_path, final_phase, find_published, load_model,
                                     read_checkpoint, use_published_default)
from mixpoet_lib.data.batching import BatchStream, make_batch
from mixpoet_lib.config import PhaseConfig, Profile, get_profile, weight_settings
from mixpoet_lib.data.dataset import TRAIN_SPLITS, PreparedData
from mixpoet_lib.models.losses import (classifier_terms, gaussian_kl, mahalanobis_distance, mean_pairwise_distance,
                     reconstruction_loss, relativistic_d_loss, relativistic_g_loss)
from mixpoet_lib.models.factor_models import FactorModelBase
from mixpoet_lib.paths import runs_dir
from mixpoet_lib.train.schedules import gumbel_tau, instance_noise, kl_weight, phase_lr_scheduler, teacher_forcing_ratio

__all__ = [
    "PhaseResult", "phase_plan",
    "train", "ensure_model", "read_log", "latent_diagnostics",
    "classification_scores",
]

VAL_SPLITS = ("unl_valid", "cqcf_valid")
_VAL_SEED = 20_200_207  # fixed seed of every validation / diagnostic pass (never touches training RNG)
_CL_EVAL_BATCH = 256

_KIND_OF = {"basic": "basic", "cvae": "cvae", "igs": "igs", "aus": "aus", "aus_st": "aus"}

Callback = Callable[[str, int, dict[str, Any]], None]


def _key(name: str, phase: str) -> str:
    return f"{name}_{phase}"


# ----------------------------------------------------------------------------------------------
# small public helpers
# ----------------------------------------------------------------------------------------------


def classification_scores(pred: np.ndarray, gold: np.ndarray, n_classes: int) -> tuple[float, float]:
    """Return (accuracy, macro-F1) over the classes that occur in gold or pred (NaN, NaN when empty)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    if gold.size == 0:
        return math.nan, math.nan
    f1 = []
    for c in range(n_classes):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        if tp + fp + fn:
            f1.append(2 * tp / (2 * tp + fp + fn))
    return float((pred == gold).mean()), float(np.mean(f1))


def _tqdm_disabled(progress: bool) -> bool:
    return (not progress) or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def _fixed_rng(seed: int) -> Iterator[None]:
    """Run a block with a fixed torch seed and restore every torch RNG afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


# ----------------------------------------------------------------------------------------------
# plan: which phases, in which order, from which upstream checkpoint
# ----------------------------------------------------------------------------------------------


def phase_plan(names: Sequence[str]) -> list[tuple[str, str]]:
    """Return the (name, phase) pairs that train these models, prerequisites first, each once."""
    names = check_model_names([names] if isinstance(names, str) else names)
    plan = [(SHARED, "dae")]
    if any(n in FACTOR_MODELS for n in names):
        plan += [(SHARED, "cl1"), (SHARED, "cl2")]
    for n in MODEL_NAMES:  # canonical order: cheap baselines first
        if n in names:
            plan.append((n, "c1"))
            if n in FACTOR_MODELS:
                plan.append((n, "c2"))
    return plan


def _upstream(name: str, phase: str) -> tuple[str, str] | None:
    if phase == "dae":
        return None
    if phase == "cl1":
        return SHARED, "dae"
    if phase == "cl2":
        return SHARED, "cl1"
    if phase == "c1":
        return (SHARED, "cl2") if name in FACTOR_MODELS else (SHARED, "dae")
    return name, "c1"


def _resolve_profile(profile: str | Profile | None) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def _resolve_run_dir(run_dir: str | os.PathLike[str] | None, profile: Profile) -> Path:
    path = Path(run_dir).expanduser().resolve() if run_dir else runs_dir(profile.name)
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    (path / "logs").mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------
# models and checkpoints
# ----------------------------------------------------------------------------------------------


def _np_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": _np_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _load_prefixes(model: nn.Module, state: dict[str, Tensor], prefixes: tuple[str, ...]) -> list[str]:
    own = model.state_dict()
    take = {k: v for k, v in state.items() if k.startswith(prefixes) and k in own and own[k].shape == v.shape}
    model.load_state_dict(take, strict=False)
    return sorted(take)


# ----------------------------------------------------------------------------------------------
# CSV logs
# ----------------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return "" if math.isnan(value) else repr(value)


class _CsvLog:
    """Append-only CSV whose rows carry a 'step'; rows after a resumed checkpoint are dropped."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.path, self.columns = path, ("step", *columns)
        self.pending: list[list[str]] = []

    def reset(self) -> None:
        self.pending.clear()
        self.path.unlink(missing_ok=True)

    def truncate(self, last_step: int) -> None:
        self.pending.clear()
        if not self.path.exists():
            return
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows or tuple(rows[0]) != self.columns:
            self.path.unlink()
            return
        keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= last_step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(keep)
        os.replace(tmp, self.path)

    def add(self, step: int, row: dict[str, Any]) -> None:
        self.pending.append([str(step)] + [_fmt(row.get(c)) for c in self.columns[1:]])

    def flush(self) -> None:
        if not self.pending:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(self.columns)
            w.writerows(self.pending)
        self.pending.clear()


def read_log(name: str, phase: str, profile: str | Profile | None = None, run_dir: str | os.PathLike[str] | None = None,
             valid: bool = False) -> Any:
    """Return a phase's per-step log (or its validation log) as a pandas DataFrame."""
    import pandas as pd

    root = Path(run_dir) if run_dir else runs_dir(_resolve_profile(profile).name)
    return pd.read_csv(root / "logs" / f"{_key(name, phase)}{'_valid' if valid else ''}.csv")


# ----------------------------------------------------------------------------------------------
# diagnostics (spec §7.2)
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def latent_diagnostics(model: nn.Module, batch: dict[str, Tensor], samples: int = 512, chunk: int = 128,
                       tau: float = 1.0, seed: int = _VAL_SEED, index: int | None = None) -> dict[str, float]:
    """Spec §7.2 distances, in eval mode (BN statistics untouched) under a fixed, forked RNG.

    'prior_post': one instance of ``batch`` (random unless ``index``) replicated ``chunk``×; ``samples``
    prior and posterior draws; mean Mahalanobis distance of the posterior draws from a Gaussian fitted
    to the prior draws. 'mixture': for that keyword, ``samples`` prior draws under each of the 6 (y1, y2)
    mixtures; mean symmetric Mahalanobis distance over the 15 pairs.
    """
    rounds = max(math.ceil(samples / chunk), 1)
    with _eval_mode(model), _fixed_rng(seed):
        i = int(torch.randint(batch["keys"].size(0), (1,))) if index is None else index
        one = {k: batch[k][i:i + 1].repeat(chunk, *([1] * (batch[k].dim() - 1)))
               for k in ("keys", "poems", "labels", "label_mask")}
        h_x, h_w = model.encode(one)
        logits = model.classify_xw(h_x, h_w)
        priors, posts = [], []
        for _ in range(rounds):
            y = model.sample_labels(logits, one["labels"], one["label_mask"], tau)
            priors.append(model.prior_sample(h_w, y).float())
            posts.append(model.posterior_sample(h_x, h_w, y).float())
        prior_post = mahalanobis_distance(torch.cat(posts), torch.cat(priors))
        groups = []
        for y1 in range(model.n_classes[0]):
            for y2 in range(model.n_classes[1]):
                y = [h_w.new_full((chunk,), y1, dtype=torch.long), h_w.new_full((chunk,), y2, dtype=torch.long)]
                groups.append(torch.cat([model.prior_sample(h_w, y).float() for _ in range(rounds)]))
        mixture = mean_pairwise_distance(groups)
    return {"prior_post": prior_post, "mixture": mixture}


# ----------------------------------------------------------------------------------------------
# trainers: one class per kind of phase
# ----------------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    profile: Profile
    data: PreparedData
    run_dir: Path
    device: torch.device
    progress: bool
    callback: Callback | None
    log: Callable[[str], None]

    @property
    def vocab_size(self) -> int:
        return len(self.data.vocab)


def _to(batch: dict[str, Tensor], dev: torch.device) -> dict[str, Tensor]:
    return {k: v.to(dev, non_blocking=True) for k, v in batch.items()}


def _detach(y: Tensor) -> Tensor:
    return y.detach().float() if y.dtype.is_floating_point else y.detach()


class _Trainer:
    """Base: optimisers with their schedules, counters, autocast, rec validation batches."""

    model_kind = "?"
    stream_mode = "mixpoet_pre"
    columns: tuple[str, ...] = ()
    val_columns: tuple[str, ...] = ()

    def __init__(self, ctx: _Ctx, name: str, phase: str):
        self.ctx, self.name, self.phase = ctx, name, phase
        self.tcfg = ctx.profile.train
        self.model: nn.Module = None  # type: ignore[assignment]
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.groups: dict[str, list[nn.Parameter]] = {}
        self.scheds: dict[str, Any] = {}
        self.counters: dict[str, Any] = {"opt_steps": {}}
        self._val_cache: list[dict[str, Tensor]] | None = None

    # -- set-up -----------------------------------------------------------------------------------
    @property
    def pcfg(self) -> PhaseConfig:
        return self.tcfg.mixture

    def model_args(self) -> dict[str, Any]:
        return {"kind": self.model_kind}

    def stream(self) -> BatchStream:
        seed = derived_seed(self.ctx.profile.seed, "batches", self.phase)  # same order for every model
        return BatchStream(self.ctx.data, TRAIN_SPLITS, self.stream_mode, self.pcfg.batch_size, seed)

    def build(self) -> nn.Module:
        args = self.model_args()
        self.model = build_model(args["kind"], self.ctx.profile.model, self.ctx.vocab_size,
                                 straight_through=bool(args.get("straight_through", False))).to(self.ctx.device)
        self.model.train()
        return self.model

    def optimiser_specs(self) -> dict[str, tuple[list[nn.Parameter], tuple[float, float], float]]:
        """name → (parameters, betas, LR decay exponent)."""
        return {"rec": (list(self.model.param_groups()["rec"]), self.tcfg.betas, self.pcfg.decay_exponent)}

    def make_optimisers(self, opt_states: dict[str, Any] | None = None,
                        sched_states: dict[str, Any] | None = None) -> None:
        for name, (params, betas, beta_exp) in self.optimiser_specs().items():
            self.groups[name] = params
            self.opts[name] = torch.optim.AdamW(params, lr=self.pcfg.lr_max, betas=betas,
                                                weight_decay=self.tcfg.weight_decay)
            if opt_states and name in opt_states:
                self.opts[name].load_state_dict(opt_states[name])
            self.counters["opt_steps"].setdefault(name, 0)
            self.scheds[name] = phase_lr_scheduler(self.opts[name], self.pcfg, beta_exp,
                                                   last_step=self.counters["opt_steps"][name])
            if sched_states and name in sched_states:  # resume: the rebuilt schedule's bookkeeping, verbatim
                self.scheds[name].load_state_dict(sched_states[name])

    def init_fresh(self, upstream: dict[str, Any] | None) -> None:
        """Load upstream weights into a freshly built model (before the optimisers are made)."""

    def fresh_counters(self, upstream: dict[str, Any] | None) -> None:
        """Set counters for a fresh start (may read the upstream checkpoint)."""

    def upstream_opt_states(self, upstream: dict[str, Any] | None) -> dict[str, Any] | None:
        return None

    def state(self) -> dict[str, Any]:
        return {"optimizers": {k: o.state_dict() for k, o in self.opts.items()},
                "schedulers": {k: s.state_dict() for k, s in self.scheds.items()},
                "counters": self.counters}

    # -- helpers used by steps ----------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.tcfg.amp_bf16)

    def lr(self, name: str = "rec") -> float:
        return float(self.opts[name].param_groups[0]["lr"])

    def update(self, name: str, loss: Tensor) -> float:
        """Backward, clip the group's global norm, step its optimiser and LR schedule; return the grad norm."""
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_grad_norm_(self.groups[name], self.tcfg.clip_grad_norm)
        self.opts[name].step()
        self.scheds[name].step()
        self.counters["opt_steps"][name] += 1
        return float(norm)

    def tf_ratio(self, epoch: int) -> float:
        p = self.pcfg
        return teacher_forcing_ratio(epoch, p.tf_burn_in, p.tf_decay, p.tf_min)

    def rec_val_batches(self, corrupt_ratio: float = 0.0, mode: str = "mixpoet_pre") -> list[dict[str, Tensor]]:
        if self._val_cache is None:
            stream = BatchStream(self.ctx.data, VAL_SPLITS, mode, self.pcfg.batch_size, _VAL_SEED, corrupt_ratio)
            out = []
            for b in stream.batches(0):
                if len(out) >= self.tcfg.val_batches:
                    break
                out.append(_to(b, self.ctx.device))
            self._val_cache = out
        return self._val_cache

    # -- to implement ---------------------------------------------------------------------------------
    def step(self, batch: dict[str, Tensor], step: int, epoch: int) -> dict[str, Any]:
        raise NotImplementedError

    def validate(self) -> dict[str, Any]:
        raise NotImplementedError


def _classifier_eval(model: FactorModelBase, data: PreparedData, dev: torch.device,
                     factors: Sequence[int], limit: int = 0) -> dict[str, float]:
    """Accuracy and macro-F1 of q(y_k|x,w) and p(y_k|w) on the cqcf_valid instances labelled for factor k.

    ``limit`` > 0 keeps a fixed, seeded subset of that many instances.
    """
    arrays = data.arrays("cqcf_valid")
    labels = arrays.instance_labels()
    ids = np.flatnonzero((labels[:, list(factors)] >= 0).any(axis=1))
    if 0 < limit < len(ids):
        ids = np.sort(np.random.default_rng(_VAL_SEED).choice(ids, size=limit, replace=False))
    preds_xw: list[list[np.ndarray]] = [[] for _ in model.n_classes]
    preds_w: list[list[np.ndarray]] = [[] for _ in model.n_classes]
    with _eval_mode(model), torch.no_grad():
        for start in range(0, len(ids), _CL_EVAL_BATCH):
            b = _to(make_batch(arrays, ids[start:start + _CL_EVAL_BATCH]), dev)
            h_x, h_w = model.encode(b)
            for k in factors:
                preds_xw[k].append(model.cl_xw[k](torch.cat([h_x, h_w], -1)).argmax(-1).cpu().numpy())
                preds_w[k].append(model.cl_w[k](h_w).argmax(-1).cpu().numpy())
    out: dict[str, float] = {}
    gold_all = labels[ids]
    for k in factors:
        mask = gold_all[:, k] >= 0
        gold = gold_all[mask, k]
        sfx = "" if len(factors) == 1 else str(k + 1)
        for tag, preds in (("xw", preds_xw[k]), ("w", preds_w[k])):
            pred = np.concatenate(preds)[mask] if preds else np.zeros(0, dtype=np.int64)
            acc, f1 = classification_scores(pred, gold, model.n_classes[k])
            out[f"val_acc_{tag}{sfx}"], out[f"val_f1_{tag}{sfx}"] = acc, f1
    return out


_CL_VAL_COLUMNS = tuple(f"val_{m}_{t}{k}" for k in (1, 2) for t in ("xw", "w") for m in ("acc", "f1"))


def _reconstruction_step(tr: _Trainer, batch: dict[str, Tensor], epoch: int) -> dict[str, Any]:
    """One reconstruction-only update (DAE and Basic): teacher-forcing schedule, masked line CE, 'rec' optimiser."""
    r, lr = tr.tf_ratio(epoch), tr.lr()
    with tr.autocast():
        loss = reconstruction_loss(tr.model(batch, teacher_ratio=r)["decode"])
    gn = tr.update("rec", loss)
    return {"epoch": epoch, "lr": lr, "tf_ratio": r, "loss": loss.item(), "grad_norm": gn}


class _DAETrainer(_Trainer):
    """Phase A (spec §3.3): reconstruct the clean lines from the UNK-corrupted poem and the keyword."""

    model_kind = "dae"
    stream_mode = "dae"
    columns = ("epoch", "lr", "tf_ratio", "loss", "grad_norm")
    val_columns = ("val_rec", "val_ppl")

    @property
    def pcfg(self) -> PhaseConfig:
        return self.tcfg.dae

    def stream(self) -> BatchStream:
        seed = derived_seed(self.ctx.profile.seed, "batches", "dae")
        return BatchStream(self.ctx.data, TRAIN_SPLITS, "dae", self.pcfg.batch_size, seed, self.tcfg.dae_corrupt_ratio)

    def optimiser_specs(self):
        return {"rec": (list(self.model.param_groups()["dae"]), self.tcfg.betas, self.pcfg.decay_exponent)}

    def step(self, batch, step, epoch):
        return _reconstruction_step(self, batch, epoch)

    def validate(self):
        return _rec_validation(self, lambda b: self.model(b)["decode"], corrupt=self.tcfg.dae_corrupt_ratio, mode="dae")


def _rec_validation(tr: _Trainer, decode: Callable[[dict[str, Tensor]], Any], corrupt: float = 0.0,
                    mode: str = "mixpoet_pre", extra: Callable[[dict[str, Any], dict[str, Tensor]], None] | None = None
                    ) -> dict[str, Any]:
    """Mean reconstruction loss (and perplexity) over the fixed validation batches, eval mode, no grad."""
    losses = []
    with _eval_mode(tr.model), torch.no_grad(), _fixed_rng(_VAL_SEED), tr.autocast():
        for b in tr.rec_val_batches(corrupt, mode):
            out = decode(b)
            losses.append(float(reconstruction_loss(out["decode"] if isinstance(out, dict) else out)))
            if extra is not None and isinstance(out, dict):
                extra(out, b)
    rec = float(np.mean(losses))
    return {"val_rec": rec, "val_ppl": math.exp(min(rec, 50.0))}


class _ClassifierTrainer(_Trainer):
    """Phases B1/B2: CE(q(y_k|x,w)) + CE(p(y_k|w)) on the instances labelled for factor k, clean poems."""

    model_kind = "classifier"
    columns = ("epoch", "lr", "loss", "loss_xw", "loss_w", "acc_xw", "acc_w", "grad_norm")
    val_columns = ("val_acc_xw", "val_f1_xw", "val_acc_w", "val_f1_w")

    def __init__(self, ctx: _Ctx, name: str, phase: str):
        super().__init__(ctx, name, phase)
        self.k = int(phase[-1]) - 1
        self.stream_mode = phase

    @property
    def pcfg(self) -> PhaseConfig:
        return self.tcfg.classifier

    def init_fresh(self, upstream):
        if self.phase == "cl1":
            self.model.load_shared(upstream["model"])  # embed, encoders (and decoder, handed on untouched)
        else:
            self.model.load_state_dict(upstream["model"])

    def optimiser_specs(self):
        return {"rec": (list(self.model.classifier_groups()[self.phase]), self.tcfg.betas, self.pcfg.decay_exponent)}

    def step(self, batch, step, epoch):
        m, k, lr = self.model, self.k, self.lr()
        y = batch["labels"][:, k]
        with self.autocast():
            h_x, h_w = m.encode(batch)
            lx = m.cl_xw[k](torch.cat([h_x, h_w], -1)).float()
            lw = m.cl_w[k](h_w).float()
            loss_xw, loss_w = nn.functional.cross_entropy(lx, y), nn.functional.cross_entropy(lw, y)
            loss = loss_xw + loss_w
        gn = self.update("rec", loss)
        return {"epoch": epoch, "lr": lr, "loss": loss.item(), "loss_xw": loss_xw.item(), "loss_w": loss_w.item(),
                "acc_xw": float((lx.argmax(-1) == y).float().mean()),
                "acc_w": float((lw.argmax(-1) == y).float().mean()),
                "grad_norm": gn}

    def validate(self):
        with self.autocast():
            return _classifier_eval(self.model, self.ctx.data, self.ctx.device, [self.k], self.tcfg.cl_val_instances)


class _SecondStage(_Trainer):
    """Shared by the C phases: c1 (mixture settings) or c2 (fine-tuning); teacher forcing with the leftover quirk."""

    @property
    def pcfg(self) -> PhaseConfig:
        return self.tcfg.finetune if self.phase == "c2" else self.tcfg.mixture

    def stream(self) -> BatchStream:
        mode = "mixpoet_tune" if self.phase == "c2" else "mixpoet_pre"
        seed = derived_seed(self.ctx.profile.seed, "batches", self.phase)
        return BatchStream(self.ctx.data, TRAIN_SPLITS, mode, self.pcfg.batch_size, seed)

    def init_fresh(self, upstream):
        if self.phase == "c2":
            self.model.load_state_dict(upstream["model"])
        else:
            self.model.load_shared(upstream["model"])
            if isinstance(self.model, FactorModelBase):
                _load_prefixes(self.model, upstream["model"], ("cl_xw.", "cl_w."))

    def upstream_opt_states(self, upstream):
        return upstream["optimizers"] if self.phase == "c2" else None

    def fresh_counters(self, upstream):
        if self.phase == "c2":  # the optimisers' step counts, τ, σ and the teacher-forcing epoch count go on
            self.counters = json.loads(json.dumps(upstream["counters"]))
            up_steps, up_per_epoch = int(upstream["step"]), int(upstream["steps_per_epoch"])
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
        if epoch == 1 and self.counters.get("tf_leftover") is not None:
            return float(self.counters["tf_leftover"])
        p = self.pcfg
        return teacher_forcing_ratio(epoch + int(self.counters.get("tf_epoch_offset", 0)), p.tf_burn_in, p.tf_decay,
                                     p.tf_min)


class _BasicTrainer(_SecondStage):
    """Keyword-only generator: s0 = tanh(dec_init_pre(h_w)) (fresh), everything else from the DAE."""

    model_kind = "basic"
    columns = ("epoch", "lr", "tf_ratio", "loss", "grad_norm")
    val_columns = ("val_rec", "val_ppl")

    def step(self, batch, step, epoch):
        return _reconstruction_step(self, batch, epoch)

    def validate(self):
        return _rec_validation(self, lambda b: self.model(b))


def _active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Number of latent dimensions whose posterior mean varies across items by more than ``threshold``."""
    return int((mu.float().var(0) > threshold).sum()) if mu.size(0) > 1 else 0


class _CVAETrainer(_SecondStage):
    """Gaussian CVAE: L = rec + β_t · KL(q(z|x,w) ‖ p(z|w)) with free bits per dimension."""

    model_kind = "cvae"
    columns = ("epoch", "lr", "tf_ratio", "loss", "rec", "kl", "kl_fb", "kl_weight", "active_units", "grad_norm")
    val_columns = ("val_rec", "val_ppl", "val_kl", "val_active_units")

    def step(self, batch, step, epoch):
        r, lr, t = self.tf_ratio(epoch), self.lr(), self.tcfg
        beta = kl_weight(int(self.counters["opt_steps"]["rec"]), t.kl_anneal_steps, t.kl_anneal_kind)
        with self.autocast():
            out = self.model(batch, teacher_ratio=r)
            rec = reconstruction_loss(out["decode"])
        (mq, lq), (mp, lp) = [(a.float(), b.float()) for a, b in (out["posterior"], out["prior"])]
        kl_fb = gaussian_kl(mq, lq, mp, lp, t.free_bits)
        loss = rec + beta * kl_fb
        gn = self.update("rec", loss)
        return {"epoch": epoch, "lr": lr, "tf_ratio": r, "loss": loss.item(), "rec": rec.item(),
                "kl": float(gaussian_kl(mq, lq, mp, lp).detach()), "kl_fb": kl_fb.item(), "kl_weight": beta,
                "active_units": _active_units(mq.detach()), "grad_norm": gn}

    def validate(self):
        kls, mus = [], []

        def extra(out, _b):
            (mq, lq), (mp, lp) = [(a.float(), b.float()) for a, b in (out["posterior"], out["prior"])]
            kls.append(float(gaussian_kl(mq, lq, mp, lp)))
            mus.append(mq)

        res = _rec_validation(self, lambda b: self.model(b), extra=extra)
        res.update(val_kl=float(np.mean(kls)), val_active_units=_active_units(torch.cat(mus)))
        return res


class _FactorTrainer(_SecondStage):
    """Shared by IGS and AUS: straight-through flag, Gumbel τ, classifier validation."""

    def model_args(self):
        st = True if self.name == "aus_st" else bool(self.tcfg.straight_through_labels)
        return {"kind": self.model_kind, "straight_through": st}

    def fresh_counters(self, upstream):
        super().fresh_counters(upstream)
        if self.phase == "c1":
            self.counters.update(tau_step=0, rec_steps=0, noise_step=0, adv_batches=0)

    def tau(self) -> float:
        return gumbel_tau(int(self.counters["tau_step"]), self.tcfg.tau_annealing_steps, self.tcfg.min_tau)

    def diagnostics(self, batch: dict[str, Tensor], tau: float) -> dict[str, float]:
        t = self.tcfg
        seed = derived_seed(_VAL_SEED, "diag", self.counters["tau_step"])
        d = latent_diagnostics(self.model, batch, t.diag_samples, t.diag_chunk, tau, seed)
        return {"diag_prior_post": d["prior_post"], "diag_mixture": d["mixture"]}


class _IGSTrainer(_FactorTrainer):
    """MixPoet-IGS: rec + β_t Σ_k KL_k (free bits) + Σ_k (L_xw + L_ent + L_w)."""

    model_kind = "igs"
    columns = ("epoch", "lr", "tf_ratio", "tau", "loss", "rec", "kl1", "kl2", "kl_weight", "xw", "ent", "w",
               "active_units", "grad_norm", "diag_prior_post", "diag_mixture")
    val_columns = ("val_rec", "val_ppl", "val_kl1", "val_kl2", "val_active_units") + _CL_VAL_COLUMNS

    def step(self, batch, step, epoch):
        t, m = self.tcfg, self.model
        r, lr, tau = self.tf_ratio(epoch), self.lr(), self.tau()
        beta = kl_weight(int(self.counters["opt_steps"]["rec"]), t.kl_anneal_steps, t.kl_anneal_kind)
        with self.autocast():
            out = m(batch, teacher_ratio=r, tau=tau)
            rec = reconstruction_loss(out["decode"])
            terms = classifier_terms(out["logits_xw"], out["logits_w"], batch["labels"], batch["label_mask"],
                                     out["labels"])
        kls_raw, kls_fb = [], []
        for (mq, lq), (mp, lp) in zip(out["posterior"], out["prior"]):
            mq, lq, mp, lp = mq.float(), lq.float(), mp.float(), lp.float()
            kls_fb.append(gaussian_kl(mq, lq, mp, lp, t.free_bits))
            kls_raw.append(float(gaussian_kl(mq, lq, mp, lp).detach()))
        loss = rec + beta * sum(kls_fb) + terms["xw"] + terms["ent"] + terms["w"]
        gn = self.update("rec", loss)
        row = {"epoch": epoch, "lr": lr, "tf_ratio": r, "tau": tau, "loss": loss.item(), "rec": rec.item(),
               "kl1": kls_raw[0], "kl2": kls_raw[1], "kl_weight": beta, "xw": terms["xw"].item(),
               "ent": terms["ent"].item(), "w": terms["w"].item(),
               "active_units": _active_units(torch.cat([mq for mq, _ in out["posterior"]], -1).detach()),
               "grad_norm": gn}
        if t.diag_every > 0 and int(self.counters["tau_step"]) % t.diag_every == 0:
            row.update(self.diagnostics(batch, tau))
        self.counters["tau_step"] += 1
        return row

    def validate(self):
        kls: list[list[float]] = [[], []]
        mus = []

        def extra(out, _b):
            for k, ((mq, lq), (mp, lp)) in enumerate(zip(out["posterior"], out["prior"])):
                kls[k].append(float(gaussian_kl(mq.float(), lq.float(), mp.float(), lp.float())))
            mus.append(torch.cat([mq for mq, _ in out["posterior"]], -1))

        res = _rec_validation(self, lambda b: self.model(b, tau=self.tau()), extra=extra)
        res.update(val_kl1=float(np.mean(kls[0])), val_kl2=float(np.mean(kls[1])),
                   val_active_units=_active_units(torch.cat(mus)))
        with self.autocast():
            res.update(_classifier_eval(self.model, self.ctx.data, self.ctx.device, [0, 1], self.tcfg.cl_val_instances))
        return res


class _AUSTrainer(_FactorTrainer):
    """MixPoet-AUS, spec §3.3 C1/C2 per batch: R update; after the warm-up ndis D updates and one G update."""

    model_kind = "aus"
    columns = ("epoch", "lr_rec", "lr_dis", "lr_gen", "tf_ratio", "tau", "sigma", "loss", "rec", "xw", "ent", "w",
               "grad_norm", "d_loss", "g_loss", "diag_prior_post", "diag_mixture")
    val_columns = ("val_rec", "val_ppl", "val_d_loss", "val_g_loss") + _CL_VAL_COLUMNS

    def optimiser_specs(self):
        g, t = self.model.param_groups(), self.tcfg
        return {"rec": (list(g["rec"]), t.betas, self.pcfg.decay_exponent),
                "dis": (list(g["dis"]), t.dis_betas, t.dis_decay_exponent),
                "gen": (list(g["gen"]), t.betas, self.pcfg.decay_exponent)}

    def step(self, batch, step, epoch):
        t, m, c = self.tcfg, self.model, self.counters
        r, tau = self.tf_ratio(epoch), self.tau()
        lrs = {k: self.lr(k) for k in ("rec", "dis", "gen")}
        # 1. reconstruction / classifier update (group R), decoding from z_post
        with self.autocast():
            out = m(batch, teacher_ratio=r, tau=tau, update_prior_stats=False)
            rec = reconstruction_loss(out["decode"])
            terms = classifier_terms(out["logits_xw"], out["logits_w"], batch["labels"], batch["label_mask"],
                                     out["labels"])
            loss = rec + terms["xw"] + terms["ent"] + terms["w"]
        with torch.no_grad():  # z_prior only to move the prior's BN/CBN running statistics (fp32)
            m.prior_sample(out["h_w"].detach().float(), [_detach(y) for y in out["labels"]])
        gn = self.update("rec", loss)
        c["rec_steps"] += 1
        row = {"epoch": epoch, "lr_rec": lrs["rec"], "lr_dis": math.nan, "lr_gen": math.nan, "tf_ratio": r, "tau": tau,
               "sigma": instance_noise(int(c["noise_step"]), t.noise_init, t.noise_decay_steps,
                                       started=int(c["noise_step"]) > 0),
               "loss": loss.item(), "rec": rec.item(), "xw": terms["xw"].item(), "ent": terms["ent"].item(),
               "w": terms["w"].item(), "grad_norm": gn}
        if c["rec_steps"] > t.rec_warm_steps:
            # 2. ndis discriminator updates on no-grad latent pairs; σ is the official 1.0 until the first advance
            d_losses = []
            encoded = None
            if t.share_dis_encoding:
                with torch.no_grad():
                    encoded = m.encode(batch)
            for _ in range(t.ndis):
                with torch.no_grad():
                    z_post, z_prior, y = m.latent_pair(batch, tau, row["sigma"], encoded)
                d_loss = relativistic_d_loss(m.discriminate(z_post, y), m.discriminate(z_prior, y))
                self.update("dis", d_loss)
                d_losses.append(d_loss.item())
            c["noise_step"] += 1
            # 3. one generator update (prior, posterior, encoders), with the advanced σ
            sigma_g = instance_noise(int(c["noise_step"]), t.noise_init, t.noise_decay_steps)
            dis_params = self.groups["dis"]
            for p in dis_params:
                p.requires_grad_(False)
            try:
                z_post, z_prior, y = m.latent_pair(batch, tau, sigma_g)
                g_loss = relativistic_g_loss(m.discriminate(z_post, y), m.discriminate(z_prior, y))
                self.update("gen", g_loss)
            finally:
                for p in dis_params:
                    p.requires_grad_(True)
            row.update(lr_dis=lrs["dis"], lr_gen=lrs["gen"], d_loss=float(np.mean(d_losses)), g_loss=g_loss.item())
            c["adv_batches"] += 1
            if t.diag_every > 0 and (int(c["adv_batches"]) - 1) % t.diag_every == 0:
                row.update(self.diagnostics(batch, tau))
        c["tau_step"] += 1
        return row

    def validate(self):
        adv: list[tuple[float, float]] = []
        m = self.model

        def extra(_out, b):
            z_post, z_prior, y = m.latent_pair(b, self.tau(), 0.0)
            d_real, d_fake = m.discriminate(z_post.float(), y), m.discriminate(z_prior.float(), y)
            adv.append((float(relativistic_d_loss(d_real, d_fake)), float(relativistic_g_loss(d_real, d_fake))))

        res = _rec_validation(self, lambda b: m(b, tau=self.tau(), update_prior_stats=False), extra=extra)
        res.update(val_d_loss=float(np.mean([a for a, _ in adv])), val_g_loss=float(np.mean([g for _, g in adv])))
        with self.autocast():
            res.update(_classifier_eval(m, self.ctx.data, self.ctx.device, [0, 1], self.tcfg.cl_val_instances))
        return res


def _trainer(ctx: _Ctx, name: str, phase: str) -> _Trainer:
    if name == SHARED:
        return _DAETrainer(ctx, name, phase) if phase == "dae" else _ClassifierTrainer(ctx, name, phase)
    cls = {"basic": _BasicTrainer, "cvae": _CVAETrainer, "igs": _IGSTrainer, "aus": _AUSTrainer}[_KIND_OF[name]]
    return cls(ctx, name, phase)


# ----------------------------------------------------------------------------------------------
# the phase runner
# ----------------------------------------------------------------------------------------------

@dataclass
class PhaseResult:
    """What one phase did in this call: steps run, wall time, last metrics, where its files are."""

    name: str
    phase: str
    step: int  # the phase's step count at the end of this call
    total_steps: int  # planned steps of the whole phase
    steps_run: int  # steps executed in this call (0 = skipped, already done)
    seconds: float
    checkpoint: Path
    log: Path
    complete: bool
    step_seconds: list[float] = field(default_factory=list, repr=False)  # wall time of each training step
    val_seconds: float = 0.0
    ckpt_seconds: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)  # the last logged training row
    metrics: dict[str, Any] = field(default_factory=dict)  # the last validation result

    @property
    def key(self) -> str:
        """'<name>_<phase>'."""
        return _key(self.name, self.phase)

    @property
    def seconds_per_step(self) -> float:
        """Median wall time of one training step in this call (NaN if none ran)."""
        return statistics.median(self.step_seconds) if self.step_seconds else math.nan


def _signature(ctx: _Ctx, tr: _Trainer, upstream: tuple[str, int] | None) -> str:
    adversarial = tr.name in ("aus", "aus_st") and tr.phase in ("c1", "c2")
    train_cfg = weight_settings(ctx.profile.train, adversarial)
    blob = {"name": tr.name, "phase": tr.phase, "model_args": tr.model_args(),
            "model": repr(ctx.profile.model),  # the repr string: the form every existing checkpoint was signed with
            "train": train_cfg, "seed": ctx.profile.seed,
            "data": ctx.data.root.name, "vocab": ctx.vocab_size, "upstream": upstream, "format": CKPT_FORMAT}
    return digest(blob)


def _run_phase(ctx: _Ctx, name: str, phase: str, resume: bool, max_steps: int | None) -> PhaseResult:
    t_start = time.perf_counter()
    key = _key(name, phase)
    path = checkpoint_path(ctx.run_dir, name, phase)
    for stale in path.parent.glob(f"{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    tr = _trainer(ctx, name, phase)
    up = _upstream(name, phase)
    up_path, up_print = None, None
    if up is not None:
        up_path = checkpoint_path(ctx.run_dir, *up)
        if not up_path.exists():
            raise ValueError(f"{key} starts from {_key(*up)}, but {up_path} does not exist; "
                             f"train phase {up[1]!r} first")
        head = read_checkpoint(up_path, mmap=True)  # only the fingerprint: (signature, step)
        up_print = (str(head["signature"]), int(head["step"]))
        del head
    sig = _signature(ctx, tr, up_print)
    stream = tr.stream()
    per_epoch = len(stream)
    planned = per_epoch * tr.pcfg.epochs
    if tr.pcfg.max_steps is not None:
        planned = min(planned, tr.pcfg.max_steps)
    target = min(planned, max_steps) if max_steps is not None else planned
    logs = {"train": _CsvLog(ctx.run_dir / "logs" / f"{key}.csv", tr.columns),
            "valid": _CsvLog(ctx.run_dir / "logs" / f"{key}_valid.csv", tr.val_columns)}

    state = None
    if resume and path.exists():
        head = read_checkpoint(path, mmap=True)
        if head.get("signature") != sig:
            ctx.log(f"{key}: settings or upstream changed since its checkpoint; training it again")
        elif int(head["step"]) >= target:
            return PhaseResult(name, phase, int(head["step"]), int(head["total_steps"]), 0,
                               time.perf_counter() - t_start, path, logs["train"].path, bool(head["complete"]),
                               metrics=dict(head.get("metrics") or {}))
        else:
            state = read_checkpoint(path)
        del head
    up_state = read_checkpoint(up_path) if state is None and up_path is not None else None

    seed_everything(derived_seed(ctx.profile.seed, _KIND_OF.get(name, name), phase))  # aus, aus_st: same init
    tr.build()
    if state is None:
        tr.init_fresh(up_state)
        tr.fresh_counters(up_state)
        tr.make_optimisers(tr.upstream_opt_states(up_state))
        start, metrics = 0, {}
        for lg in logs.values():
            lg.reset()
    else:
        tr.model.load_state_dict(state["model"])
        tr.counters = state["counters"]
        tr.make_optimisers(state["optimizers"], state["schedulers"])
        _set_rng_state(state["rng"])
        start, metrics = int(state["step"]), dict(state.get("metrics") or {})
        for lg in logs.values():
            lg.truncate(start)
        ctx.log(f"{key}: resuming at step {start} of {planned}")
    del up_state, state

    def save(step: int) -> None:
        for lg in logs.values():
            lg.flush()
        payload = {
            "format": CKPT_FORMAT, "name": name, "phase": phase, "complete": step >= planned,
            "step": step, "total_steps": planned, "steps_per_epoch": per_epoch,
            "epoch": (step - 1) // per_epoch + 1 if step else 0,
            "batch_in_epoch": (step - 1) % per_epoch + 1 if step else 0,
            "model_args": tr.model_args(), "model_config": jsonable(ctx.profile.model), "vocab_size": ctx.vocab_size,
            "model": tr.model.state_dict(), **tr.state(), "rng": _rng_state(), "signature": sig,
            "upstream": _key(*up) if up else None, "config": jsonable(ctx.profile.to_dict()),
            "metrics": metrics, "torch_version": str(torch.__version__),
        }
        torch_save_atomic(payload, path)

    t = tr.tcfg
    bar = None
    if not _tqdm_disabled(ctx.progress):
        from tqdm.auto import tqdm
        bar = tqdm(total=target, initial=start, desc=key, unit="step", dynamic_ncols=True, leave=True)
    step_times: list[float] = []
    val_s = ckpt_s = 0.0
    last: dict[str, Any] = {}
    it: Iterator[dict[str, Tensor]] | None = None
    cur_epoch = -1
    try:
        for s in range(start + 1, target + 1):
            t0 = time.perf_counter()
            epoch, pos = (s - 1) // per_epoch + 1, (s - 1) % per_epoch
            if epoch != cur_epoch:
                it, cur_epoch = stream.batches(epoch, pos), epoch
            batch = _to(next(it), ctx.device)  # type: ignore[arg-type]
            row = tr.step(batch, s, epoch)
            logs["train"].add(s, row)
            last = row
            step_times.append(time.perf_counter() - t0)
            if (t.validate_every_epoch and pos == per_epoch - 1) or (t.validate_every and s % t.validate_every == 0) \
                    or s == target:
                t1 = time.perf_counter()
                metrics = {k: float(v) for k, v in tr.validate().items()}
                logs["valid"].add(s, metrics)
                val_s += time.perf_counter() - t1
            for lg in logs.values():  # every step: a crash loses no row, a notebook can plot it live
                lg.flush()
            if s % t.ckpt_every == 0 or s == target:
                t1 = time.perf_counter()
                save(s)
                ckpt_s += time.perf_counter() - t1
            if bar is not None:
                bar.update(1)
                if s % max(t.log_every, 1) == 0 or s == target:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in row.items()
                                     if k in ("loss", "rec", "kl", "d_loss", "g_loss", "acc_xw", "tf_ratio")
                                     and isinstance(v, float) and not math.isnan(v)}, refresh=False)
            if ctx.callback is not None:
                ctx.callback(key, s, row)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t_start
    _append_timing(ctx.run_dir, key, start, target, seconds, step_times, val_s, ckpt_s)
    return PhaseResult(name, phase, target, planned, target - start, seconds, path, logs["train"].path,
                       target >= planned, step_times, val_s, ckpt_s, last, metrics)


def _append_timing(run_dir: Path, key: str, start: int, end: int, seconds: float, steps: list[float],
                   val_s: float, ckpt_s: float) -> None:
    path = run_dir / "logs" / "timing.csv"
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(["phase", "from_step", "to_step", "seconds", "median_step_s", "validation_s", "checkpoint_s",
                        "threads", "device", "finished"])
        med = statistics.median(steps) if steps else math.nan
        w.writerow([key, start, end, f"{seconds:.2f}", f"{med:.4f}", f"{val_s:.2f}", f"{ckpt_s:.2f}",
                    torch.get_num_threads(), str(default_device()), time.strftime("%Y-%m-%dT%H:%M:%S")])


# ----------------------------------------------------------------------------------------------
# public entry points
# ----------------------------------------------------------------------------------------------

def _prepare_data(profile: Profile, data: PreparedData | None) -> PreparedData:
    if data is not None:
        return data
    from mixpoet_lib.data.dataset import prepare

    return prepare(profile)


def train(kinds: str | Sequence[str], profile: str | Profile | None = None, data: PreparedData | None = None,
          run_dir: str | os.PathLike[str] | None = None, resume: bool = True, progress: bool = True,
          max_steps: int | None = None, phases: Sequence[str] | None = None, callback: Callback | None = None,
          log: Callable[[str], None] | None = None) -> dict[str, PhaseResult]:
    """Train these models (and their prerequisite phases); return {'<name>_<phase>': PhaseResult} in run order.

    Finished phases are skipped, interrupted ones resume from their last checkpoint (``resume=False``
    retrains every phase of the plan). ``max_steps`` caps every phase at that many steps (a later call
    without it continues the phase). ``phases`` restricts the run to these phase names (their upstream
    checkpoints must exist). ``callback(key, step, row)`` is called after every step.
    """
    plan = phase_plan(kinds)
    if phases is not None:
        wanted = [str(p).strip().lower() for p in ([phases] if isinstance(phases, str) else phases)]
        bad = [p for p in wanted if p not in PHASES]
        if bad:
            raise ValueError(f"unknown phase {bad[0]!r}; choose from {', '.join(PHASES)}")
        plan = [(n, p) for n, p in plan if p in wanted]
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be ≥ 1, got {max_steps}")
    prof = _resolve_profile(profile)
    if log is None:
        log = (lambda m: print(f"[train] {m}", file=sys.stderr, flush=True)) if progress else (lambda m: None)
    ctx = _Ctx(prof, _prepare_data(prof, data), _resolve_run_dir(run_dir, prof), default_device(), progress, callback, log)
    results: dict[str, PhaseResult] = {}
    threads = torch.get_num_threads()
    if prof.train.num_threads > 0:
        torch.set_num_threads(prof.train.num_threads)
    try:
        for name, phase in plan:
            results[_key(name, phase)] = _run_phase(ctx, name, phase, resume, max_steps)
    finally:
        torch.set_num_threads(threads)
    return results


def ensure_model(kind: str, profile: str | Profile | None = None, data: PreparedData | None = None,
                 run_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                 published: bool | None = None) -> nn.Module:
    """Return the trained model of this kind: its finished checkpoint, else train it (and its prerequisites) first.

    ``kind`` is a model name (basic, cvae, igs, aus, aus_st), 'dae' or 'classifiers'; the model comes back in
    eval mode on ``default_device()``. Notebooks call this so that each one runs on its own. With ``published`` (default:
    $MIXPOET_PUBLISHED) and no finished checkpoint in the run folder, published weights trained with the same
    settings (``weights/<profile>/<kind>.safetensors``) are loaded instead of training.
    """
    prof = _resolve_profile(profile)
    name, phase = final_phase(str(kind).strip().lower())
    root = _resolve_run_dir(run_dir, prof)
    path = checkpoint_path(root, name, phase)
    if (use_published_default() if published is None else published) and not path.exists():
        pub = find_published(prof, str(kind).strip().lower())
        if pub is not None:
            return load_model(pub)
    if data is None and path.exists():  # fast path: finished with exactly these settings, no data needed
        head = read_checkpoint(path, mmap=True)
        if head.get("complete") and head.get("config") == jsonable(prof.to_dict()):
            return load_model(path)
    plan_names = [name] if name != SHARED else ["igs" if phase == "cl2" else "basic"]
    phases = None if name != SHARED else (["dae"] if phase == "dae" else ["dae", "cl1", "cl2"])
    train(plan_names, prof, data=data, run_dir=root, progress=progress, phases=phases)
    return load_model(path)


def validation_loss(model: nn.Module, data: PreparedData, batch_size: int = 64, n_batches: int = 20) -> dict[str, float]:
    """Reconstruction loss and perplexity of any generator on fixed validation batches (unl_valid + cqcf_valid).

    The same batches every call (fixed seed), eval mode, teacher forcing; latent models decode from their
    posterior sample as in training. Used to compare weights of the same model (e.g. published int8 vs fp32).
    """
    dev = next(model.parameters()).device
    stream = BatchStream(data, VAL_SPLITS, "mixpoet_pre", batch_size, _VAL_SEED)
    losses = []
    with _eval_mode(model), torch.no_grad(), _fixed_rng(_VAL_SEED):
        for b in stream.batches(0):
            if len(losses) >= n_batches:
                break
            out = model(_to(b, dev))
            losses.append(float(reconstruction_loss(out["decode"] if isinstance(out, dict) else out)))
    rec = float(np.mean(losses))
    return {"val_rec": rec, "val_ppl": math.exp(min(rec, 50.0)), "batches": len(losses)}
