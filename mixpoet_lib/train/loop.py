"""Training entry points: :func:`train` runs the phases a set of models needs (prerequisites first, each once,
resuming where a previous call stopped), :func:`ensure_model` returns a finished model (training it, or loading
published weights, when needed) and :func:`validation_loss` scores any generator on fixed validation batches.

One phase — planning, checkpoints, resume, logging — is :mod:`mixpoet_lib.train.phases`; the updates are the step
functions of :mod:`mixpoet_lib.train.steps`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mixpoet_lib._util import FolderLock, default_device, jsonable
from mixpoet_lib.checkpoints import (
    PHASES,
    SHARED,
    checkpoint_path,
    final_phase,
    find_published,
    load_model,
    read_checkpoint,
    use_published_default,
)
from mixpoet_lib.config import Profile, get_profile
from mixpoet_lib.data.batching import BatchStream
from mixpoet_lib.data.dataset import PreparedData, prepare
from mixpoet_lib.models.losses import reconstruction_loss
from mixpoet_lib.paths import runs_dir
from mixpoet_lib.runtime import auto_threads, bf16_choice
from mixpoet_lib.train.diagnostics import VAL_SEED, VAL_SPLITS, eval_mode, fixed_rng, to_device
from mixpoet_lib.train.phases import PhaseResult, phase_key, phase_plan, run_phase
from mixpoet_lib.train.trainers import Callback, TrainContext

__all__ = ["train", "ensure_model", "validation_loss"]


# ----------------------------------------------------------------------------------------------
# plan: which phases, in which order, from which upstream checkpoint
# ----------------------------------------------------------------------------------------------


def _resolve_profile(profile: str | Profile | None) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def _resolve_run_dir(run_dir: str | os.PathLike[str] | None, profile: Profile) -> Path:
    path = Path(run_dir).expanduser().resolve() if run_dir else runs_dir(profile.name)
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    (path / "logs").mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------
# resume: signature, RNG state, checkpoints
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# public entry points
# ----------------------------------------------------------------------------------------------


def train(
    kinds: str | Sequence[str],
    profile: str | Profile | None = None,
    data: PreparedData | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    max_steps: int | None = None,
    phases: Sequence[str] | None = None,
    callback: Callback | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, PhaseResult]:
    """Train these models (and their prerequisite phases); return {'<name>_<phase>': PhaseResult} in run order.

    Finished phases are skipped, interrupted ones resume from their last checkpoint (``resume=False``
    retrains every phase of the plan). ``max_steps`` caps every phase at that many steps (a later call
    without it continues the phase). ``phases`` restricts the run to these phase names (their upstream
    checkpoints must exist). ``callback(key, step, row)`` is called after every step. The run folder is locked
    for the whole call: a second writer gets a FolderBusyError naming this process.
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
    ctx = TrainContext(
        prof,
        data if data is not None else prepare(prof),
        _resolve_run_dir(run_dir, prof),
        default_device(),
        progress,
        callback,
        log,
    )
    results: dict[str, PhaseResult] = {}
    threads = torch.get_num_threads()
    chosen, why = auto_threads(prof.train.num_threads)
    log(f"{chosen} torch thread(s): {why}")
    bf16, bf16_why = bf16_choice(prof.train.amp_bf16, ctx.device.type)
    log(f"bf16 autocast {'on' if bf16 else 'off'}: {bf16_why}")
    torch.set_num_threads(chosen)
    try:
        with FolderLock(ctx.run_dir):  # one writer per run folder (FolderBusyError names the other one)
            for name, phase in plan:
                results[phase_key(name, phase)] = run_phase(ctx, name, phase, resume, max_steps)
    finally:
        torch.set_num_threads(threads)
    return results


def ensure_model(
    kind: str,
    profile: str | Profile | None = None,
    data: PreparedData | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    published: bool | None = None,
) -> nn.Module:
    """Return the trained model of this kind: its finished checkpoint, else train it (and its prerequisites) first.

    ``kind`` is a model name (basic, fbasic, cvae, igs, aus, aus_st), 'dae' or 'classifiers'; the model comes back in
    eval mode on ``default_device()``. Notebooks call this so that each one runs on its own. With ``published``
    (default: $MIXPOET_PUBLISHED) and no finished checkpoint in the run folder, published weights trained with the same
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


def validation_loss(
    model: nn.Module, data: PreparedData, batch_size: int = 64, n_batches: int = 20
) -> dict[str, float]:
    """Reconstruction loss and perplexity of any generator on fixed validation batches (unl_valid + cqcf_valid).

    The same batches every call (fixed seed), eval mode, teacher forcing; latent models decode from their
    posterior sample as in training. Used to compare weights of the same model (e.g. published int8 vs fp32).
    """
    dev = next(model.parameters()).device
    stream = BatchStream(data, VAL_SPLITS, "mixpoet_pre", batch_size, VAL_SEED)
    losses: list[float] = []
    with eval_mode(model), torch.no_grad(), fixed_rng(VAL_SEED):
        for b in stream.batches(0):
            if len(losses) >= n_batches:
                break
            out = model(to_device(b, dev))
            losses.append(float(reconstruction_loss(out["decode"] if isinstance(out, dict) else out)))
    rec = float(np.mean(losses))
    return {"val_rec": rec, "val_ppl": math.exp(min(rec, 50.0)), "batches": len(losses)}
