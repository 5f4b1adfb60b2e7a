"""One training phase, planned, resumed and run bit-reproducibly (design §4).

Phases (design §4.1), each a resumable unit with its own optimisers, learning-rate schedules, CSV log and
checkpoint ``<run>/checkpoints/<name>_<phase>.pt``:

============  ==========  =======================================================================
name          phase       what
============  ==========  =======================================================================
``shared``    ``dae``     A: DAE pre-training of the shared encoder/decoder (BasicGenerator on the corrupted poem)
``shared``    ``cl1/2``   B1/B2: classifier pre-training q(y_k|x,w) + p(y_k|w), factor by factor
``basic``     ``c1``      keyword-only generator, reconstruction only (mixture-phase settings)
``fbasic``    ``c1, c2``  fBasic: keyword + factor labels ("unknown" where missing); C1 all data, C2 labelled only
``cvae``      ``c1``      Gaussian CVAE: reconstruction + annealed KL with free bits
``igs``       ``c1, c2``  MixPoet-IGS: reconstruction + per-sub-space KL + classifier terms; C2 = labelled fine-tuning
``aus``       ``c1, c2``  MixPoet-AUS, the paper's model: R step, then ndis D steps and one G step (design §4.6)
``aus_st``    ``c1, c2``  MixPoet-AUS with straight-through Gumbel labels (design §3.8 ablation)
============  ==========  =======================================================================

Every random draw comes from torch's global generator (dropout, ε, Gumbel noise, scheduled sampling)
or from generators seeded by (seed, epoch, step) (batches, corruption). A checkpoint stores the
weights, optimiser states, schedule counters and every RNG state, so a run killed at any moment and
resumed from its last checkpoint ends with bit-identical weights and an identical CSV log
(same machine, same thread count). Validation and diagnostics run under a forked, fixed-seed RNG in
eval mode, so they never change training. A checkpoint whose content no longer matches its digest (see
:mod:`mixpoet_lib.checkpoints`) is never resumed from: the phase stops with a one-line error naming the file.

Decisions (faithful to the official code unless marked "kit choice"; design §4):

* Each phase is seeded from (profile seed, model kind, phase): ``aus`` and ``aus_st`` start from the same
  initial weights; every second-stage model sees the same batch order.
* B1/B2 train a :class:`~mixpoet_lib.models.factor_models.FactorModelBase` that starts from the DAE weights; B2
  continues B1 (the shared embedding and encoders move in both). IGS/AUS C1 starts from B2 (shared weights +
  classifiers), with ``dec_init`` freshly initialised (official). basic/cvae start from the DAE (kit choice for the
  baselines, design §4.1).
* ``basic`` = BasicGenerator(condition_on_poem=False): s0 = tanh(dec_init_pre(h_w)), dec_init_pre fresh,
  trained on reconstruction with the mixture-phase settings. basic and cvae have no C2 (no labels to tune on).
  Kit choice (design §3.9).
* ``fbasic`` (the paper's fBasic) = FBasicGenerator, from the DAE like basic: C1 pre-trains on every instance (the
  unlabelled pool and CQCF, labels where known, "unknown" elsewhere), C2 fine-tunes on the labelled CQCF
  instances with the fine-tuning settings, continuing C1's optimiser like the factor models. Kit choice (design §3.9).
* C2 keeps C1's optimisers (their step counts, hence the LR schedules, continue; the finetune PhaseConfig's
  LR settings apply from then on), τ/σ counters and the teacher-forcing epoch count.
* AUS σ: as the official code, the first discriminator round after the warm-up still uses the initial σ = 1.0,
  and the generator step uses σ after the advance. σ, τ and the warm-up count batches across C1 and C2.
* Teacher forcing: with ``tf_leftover_quirk`` the first second-stage epoch runs at the ratio the DAE ended on.
* DAE validation uses corrupted inputs like its training (kit choice); the prior's BN statistics move only in
  training steps (never in validation or diagnostics, design §4.7).
* bf16 autocast (``amp_bf16``) covers the reconstruction/classifier forward; the prior statistics update,
  the discriminator and the adversarial steps run in fp32. Only useful on CUDA or CPUs with native bf16.

This module plans, resumes and runs one phase (:func:`run_phase`, with the trainer :func:`make_trainer` picks);
:mod:`mixpoet_lib.train.loop` runs the plan. The updates themselves are the step functions of
:mod:`mixpoet_lib.train.steps`, called by the per-phase trainers of :mod:`mixpoet_lib.train.trainers` and
:mod:`mixpoet_lib.train.factor_trainers`; the CSV logs are :mod:`mixpoet_lib.train.logs`, validation and
diagnostics :mod:`mixpoet_lib.train.diagnostics`.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixpoet_lib._util import (
    CorruptFileError,
    derived_seed,
    digest,
    jsonable,
    progress_bar,
    remove_stale_parts,
    seed_everything,
)
from mixpoet_lib.checkpoints import (
    CKPT_FORMAT,
    FACTOR_MODELS,
    MODEL_NAMES,
    SHARED,
    TUNED_MODELS,
    check_model_names,
    checkpoint_path,
    read_checkpoint,
    save_checkpoint,
)
from mixpoet_lib.config import FIRST_STAGE_OF, PROFILES, Profile, get_profile
from mixpoet_lib.data.batching import BatchStream
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.signatures import weight_settings
from mixpoet_lib.train.diagnostics import to_device
from mixpoet_lib.train.factor_trainers import AUSTrainer, IGSTrainer
from mixpoet_lib.train.logs import CsvLog, append_timing, log_path
from mixpoet_lib.train.schedules import planned_steps
from mixpoet_lib.train.trainers import (
    BasicTrainer,
    ClassifierTrainer,
    CVAETrainer,
    DAETrainer,
    FBasicTrainer,
    TrainContext,
    Trainer,
)

__all__ = [
    "KIND_OF",
    "make_trainer",
    "PhaseResult",
    "phase_key",
    "phase_plan",
    "upstream_phase",
    "phase_signature",
    "rng_state",
    "restore_rng_state",
    "run_phase",
]


_BAR_KEYS = ("loss", "rec", "kl", "d_loss", "g_loss", "acc_xw", "tf_ratio")  # live values on the progress bar
# model name → kind of trainer (aus_st trains as aus; the kind also seeds each phase)
KIND_OF = {"basic": "basic", "fbasic": "fbasic", "cvae": "cvae", "igs": "igs", "aus": "aus", "aus_st": "aus"}
_TRAINERS: dict[str, type[Trainer]] = {
    t.model_kind: t for t in (BasicTrainer, FBasicTrainer, CVAETrainer, IGSTrainer, AUSTrainer)
}


def make_trainer(ctx: TrainContext, name: str, phase: str) -> Trainer:
    """The trainer of phase ``phase`` of model ``name`` ('shared' for the DAE and classifier phases)."""
    if name == SHARED:
        return DAETrainer(ctx, name, phase) if phase == "dae" else ClassifierTrainer(ctx, name, phase)
    return _TRAINERS[KIND_OF[name]](ctx, name, phase)


def phase_key(name: str, phase: str) -> str:
    """The key of a phase in logs and results: "<name>_<phase>"."""
    return f"{name}_{phase}"


def phase_plan(names: Sequence[str]) -> list[tuple[str, str]]:
    """Return the (name, phase) pairs that train these models, prerequisites first, each once."""
    names = check_model_names([names] if isinstance(names, str) else names)
    plan = [(SHARED, "dae")]
    if any(n in FACTOR_MODELS for n in names):
        plan += [(SHARED, "cl1"), (SHARED, "cl2")]
    for n in MODEL_NAMES:  # canonical order: cheap baselines first
        if n in names:
            plan.append((n, "c1"))
            if n in TUNED_MODELS:
                plan.append((n, "c2"))
    return plan


def upstream_phase(name: str, phase: str) -> tuple[str, str] | None:
    """The (name, phase) whose checkpoint this phase starts from (None for the DAE)."""
    if phase == "dae":
        return None
    if phase == "cl1":
        return SHARED, "dae"
    if phase == "cl2":
        return SHARED, "cl1"
    if phase == "c1":
        return (SHARED, "cl2") if name in FACTOR_MODELS else (SHARED, "dae")
    return name, "c1"


def rng_state() -> dict[str, Any]:
    """Every global RNG state (torch, CUDA, Python, NumPy) in a form ``torch.load(weights_only=True)`` reads."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set every global RNG back to a state saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def phase_signature(
    profile: Profile,
    name: str,
    phase: str,
    model_args: dict[str, Any],
    data: PreparedData,
    upstream: tuple[str, int] | None,
) -> str:
    """Digest of everything that decides a phase's weights; a checkpoint with another signature is retrained.

    ``upstream`` is the (signature, step) of the checkpoint the phase starts from.
    """
    second_stage = name if phase in ("c1", "c2") else ""
    base_name = FIRST_STAGE_OF.get(profile.name, profile.name)  # see signatures.ACTS_ONLY_IN
    base = get_profile(base_name).train if profile.name in PROFILES else None
    blob = {
        "name": name,
        "phase": phase,
        "model_args": model_args,
        "model": repr(profile.model),  # the repr string: the form every existing checkpoint was signed with
        "train": weight_settings(profile.train, second_stage, base, phase),
        "seed": profile.seed,
        "data": data.root.name,
        "vocab": len(data.vocab),
        "upstream": upstream,
        "format": CKPT_FORMAT,
    }
    return digest(blob)


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
        return phase_key(self.name, self.phase)

    @property
    def seconds_per_step(self) -> float:
        """Median wall time of one training step in this call (NaN if none ran)."""
        return statistics.median(self.step_seconds) if self.step_seconds else math.nan


@dataclass
class _Phase:
    """One phase of one call: its trainer, files, signature and step plan."""

    ctx: TrainContext
    tr: Trainer
    stream: BatchStream
    path: Path  # the checkpoint
    upstream: tuple[str, str] | None
    up_path: Path | None
    signature: str
    per_epoch: int
    planned: int  # steps of the whole phase
    target: int  # last step of this call
    logs: dict[str, CsvLog]
    t_start: float

    @property
    def key(self) -> str:
        """'<name>_<phase>'."""
        return phase_key(self.tr.name, self.tr.phase)


def _upstream_fingerprint(ctx: TrainContext, name: str, phase: str) -> tuple[Path | None, tuple[str, int] | None]:
    """(path, (signature, step)) of the upstream checkpoint, which must exist; (None, None) for the DAE."""
    up = upstream_phase(name, phase)
    if up is None:
        return None, None
    up_path = checkpoint_path(ctx.run_dir, *up)
    if not up_path.exists():
        raise ValueError(
            f"{phase_key(name, phase)} starts from {phase_key(*up)}, but {up_path} does not exist; "
            f"train phase {up[1]!r} first"
        )
    head = read_checkpoint(up_path, mmap=True)  # only the fingerprint: (signature, step)
    return up_path, (str(head["signature"]), int(head["step"]))


def _plan_phase(ctx: TrainContext, name: str, phase: str, max_steps: int | None) -> _Phase:
    t_start = time.perf_counter()
    path = checkpoint_path(ctx.run_dir, name, phase)
    remove_stale_parts(path.parent)  # temporary files of a save killed mid-write (_util.atomic_write)
    tr = make_trainer(ctx, name, phase)
    up_path, up_print = _upstream_fingerprint(ctx, name, phase)
    sig = phase_signature(ctx.profile, name, phase, tr.model_args(), ctx.data, up_print)
    stream = tr.stream()
    per_epoch = len(stream)
    planned = planned_steps(per_epoch, tr.pcfg)
    target = min(planned, max_steps) if max_steps is not None else planned
    logs = {
        "train": CsvLog(log_path(ctx.run_dir, name, phase), tr.columns),
        "valid": CsvLog(log_path(ctx.run_dir, name, phase, valid=True), tr.val_columns),
    }
    return _Phase(
        ctx, tr, stream, path, upstream_phase(name, phase), up_path, sig, per_epoch, planned, target, logs, t_start
    )


def _resumable(run: _Phase) -> PhaseResult | dict[str, Any] | None:
    """A finished result when the checkpoint already reached the target, its state to resume from, or None.

    A damaged checkpoint stops the run (CorruptFileError naming it): resuming from it would silently diverge.
    """
    try:
        head = read_checkpoint(run.path)
    except CorruptFileError as exc:
        raise CorruptFileError(f"cannot resume {run.key}: {exc}") from None
    if head.get("signature") != run.signature:
        run.ctx.log(f"{run.key}: settings or upstream changed since its checkpoint; training it again")
        return None
    if int(head["step"]) >= run.target:
        return PhaseResult(
            run.tr.name,
            run.tr.phase,
            int(head["step"]),
            int(head["total_steps"]),
            0,
            time.perf_counter() - run.t_start,
            run.path,
            run.logs["train"].path,
            bool(head["complete"]),
            metrics=dict(head.get("metrics") or {}),
        )
    return head


def _start(run: _Phase, state: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    """Build the model fresh from upstream or from ``state``; return (step reached, last validation metrics)."""
    tr = run.tr
    up_state = read_checkpoint(run.up_path) if state is None and run.up_path is not None else None
    seed_everything(derived_seed(run.ctx.profile.seed, KIND_OF.get(tr.name, tr.name), tr.phase))  # aus, aus_st alike
    tr.build()
    if state is None:
        tr.init_fresh(up_state)
        tr.fresh_counters(up_state)
        tr.make_optimisers(tr.upstream_opt_states(up_state))
        for lg in run.logs.values():
            lg.reset()
        return 0, {}
    tr.model.load_state_dict(state["model"])
    tr.counters = state["counters"]
    tr.make_optimisers(state["optimizers"], state["schedulers"])
    restore_rng_state(state["rng"])
    start = int(state["step"])
    for lg in run.logs.values():
        lg.truncate(start)
    run.ctx.log(f"{run.key}: resuming at step {start} of {run.planned}")
    return start, dict(state.get("metrics") or {})


def _save(run: _Phase, step: int, metrics: dict[str, Any]) -> None:
    """Flush the logs and write the resumable checkpoint of ``step`` atomically."""
    for lg in run.logs.values():
        lg.flush()
    ctx, tr, per_epoch = run.ctx, run.tr, run.per_epoch
    payload = {
        "format": CKPT_FORMAT,
        "name": tr.name,
        "phase": tr.phase,
        "complete": step >= run.planned,
        "step": step,
        "total_steps": run.planned,
        "steps_per_epoch": per_epoch,
        "epoch": (step - 1) // per_epoch + 1 if step else 0,
        "batch_in_epoch": (step - 1) % per_epoch + 1 if step else 0,
        "model_args": tr.model_args(),
        "model_config": jsonable(ctx.profile.model),
        "vocab_size": ctx.vocab_size,
        "model": tr.model.state_dict(),
        **tr.state(),
        "rng": rng_state(),
        "signature": run.signature,
        "upstream": phase_key(*run.upstream) if run.upstream else None,
        "config": jsonable(ctx.profile.to_dict()),
        "metrics": metrics,
        "torch_version": str(torch.__version__),
    }
    save_checkpoint(payload, run.path)


@dataclass
class _Timing:
    steps: list[float] = field(default_factory=list)
    val_s: float = 0.0
    ckpt_s: float = 0.0


def _validation_due(run: _Phase, step: int, pos: int) -> bool:
    t = run.tr.tcfg
    return bool(
        (t.validate_every_epoch and pos == run.per_epoch - 1)
        or (t.validate_every and step % t.validate_every == 0)
        or step == run.target
    )


def _train_steps(run: _Phase, start: int, metrics: dict[str, Any], timing: _Timing) -> tuple[dict, dict]:
    """Steps start+1 .. target: update, log, validate and checkpoint when due; return (last row, last metrics)."""
    ctx, tr, t = run.ctx, run.tr, run.tr.tcfg
    bar = progress_bar(
        total=run.target,
        initial=start,
        desc=run.key,
        unit="step",
        dynamic_ncols=True,
        leave=True,
        progress=ctx.progress,
    )
    last: dict[str, Any] = {}
    it: Iterator[dict[str, Tensor]] | None = None
    cur_epoch = -1
    try:
        for s in range(start + 1, run.target + 1):
            t0 = time.perf_counter()
            epoch, pos = (s - 1) // run.per_epoch + 1, (s - 1) % run.per_epoch
            if epoch != cur_epoch:
                it, cur_epoch = run.stream.batches(epoch, pos), epoch
            last = {"epoch": epoch, **tr.step(to_device(next(it), ctx.device), epoch)}  # type: ignore[arg-type]
            run.logs["train"].add(s, last)
            timing.steps.append(time.perf_counter() - t0)
            if _validation_due(run, s, pos):
                t1 = time.perf_counter()
                metrics = {k: float(v) for k, v in tr.validate().items()}
                run.logs["valid"].add(s, metrics)
                timing.val_s += time.perf_counter() - t1
            for lg in run.logs.values():  # every step: a crash loses no row, a notebook can plot it live
                lg.flush()
            if s % t.ckpt_every == 0 or s == run.target:
                t1 = time.perf_counter()
                _save(run, s, metrics)
                timing.ckpt_s += time.perf_counter() - t1
            bar.update(1)
            if s % max(t.log_every, 1) == 0 or s == run.target:
                bar.set_postfix(
                    {
                        k: f"{v:.3g}"
                        for k, v in last.items()
                        if k in _BAR_KEYS and isinstance(v, float) and not math.isnan(v)
                    },
                    refresh=False,
                )
            if ctx.callback is not None:
                ctx.callback(run.key, s, last)
    finally:
        bar.close()
    return last, metrics


def run_phase(ctx: TrainContext, name: str, phase: str, resume: bool, max_steps: int | None) -> PhaseResult:
    """Run (or resume, or skip) one phase up to ``max_steps``; append its timing row."""
    run = _plan_phase(ctx, name, phase, max_steps)
    state = _resumable(run) if resume and run.path.exists() else None
    if isinstance(state, PhaseResult):
        return state
    start, metrics = _start(run, state)
    del state
    timing = _Timing()
    last, metrics = _train_steps(run, start, metrics, timing)
    seconds = time.perf_counter() - run.t_start
    append_timing(ctx.run_dir, run.key, start, run.target, seconds, timing.steps, timing.val_s, timing.ckpt_s)
    return PhaseResult(
        name,
        phase,
        run.target,
        run.planned,
        run.target - start,
        seconds,
        run.path,
        run.logs["train"].path,
        run.target >= run.planned,
        timing.steps,
        timing.val_s,
        timing.ckpt_s,
        last,
        metrics,
    )
