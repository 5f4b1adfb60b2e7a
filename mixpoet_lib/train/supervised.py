"""The fitting loop and checkpoint reuse shared by notebook 05's judges and character LM (design §6.3–6.4).

* **One fitting loop**, :func:`fit_supervised`, trains both with the main loop's optimiser and learning-rate
  schedule (:mod:`mixpoet_lib.train.schedules`, ``EvalConfig`` phases, ``profile.train`` betas, weight decay
  and clipping) and batch order (:func:`mixpoet_lib.data.batching.epoch_order`). It validates
  :data:`VAL_POINTS` times, evenly spread (the last step included), and keeps the best state (judges: macro-F1;
  LM: character perplexity on a seeded subset of unl_valid poems).
* **Checkpoints** (``judge_<factor>.pt``, ``charlm.pt``) are plain dicts for ``torch.load(weights_only=True)``
  with their vocabulary, report, a settings key (sizes, phase, seed, vocabulary hash, dataset folder) and a
  content digest (:func:`mixpoet_lib.checkpoints.save_checkpoint`); :func:`reuse_checkpoint` finds a checkpoint
  (or published weights) whose key matches, and retrains one that is damaged (saying so).

The judges are trained in :mod:`mixpoet_lib.train.judges`, the char LM in :mod:`mixpoet_lib.train.charlm`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mixpoet_lib._util import progress_bar
from mixpoet_lib.checkpoints import find_published, read_checkpoint, save_checkpoint
from mixpoet_lib.config import PhaseConfig, Profile
from mixpoet_lib.data.batching import epoch_order
from mixpoet_lib.data.vocab import Vocab
from mixpoet_lib.models.judges import CharLM, Judge
from mixpoet_lib.train.schedules import make_optimizer, phase_lr_scheduler, planned_steps

__all__ = [
    "FitSettings",
    "save_fitted",
    "VAL_POINTS",
    "Log",
    "Items",
    "quiet",
    "vocab_hash",
    "batches_of",
    "cpu_state",
    "Selection",
    "fit_supervised",
    "reuse_checkpoint",
]

VAL_POINTS = 8  # validations spread evenly over a training run (the last step included)

Log = Callable[[str], None]
Items = tuple[torch.Tensor, ...]  # encoded poems: (tokens, lengths) or (tokens, lengths, labels)


def quiet(_: str) -> None:
    """The default ``log``: say nothing."""
    return None


# ------------------------------------------------------------------------------------------ helpers


def vocab_hash(vocab: Vocab) -> str:
    """The vocabulary's part of a judge/LM settings key."""
    # not _util.digest: that hashes the JSON list, which would change every published judge/LM key
    return hashlib.sha256("\n".join(vocab.tokens).encode()).hexdigest()[:16]


def batches_of(n: int, size: int) -> Iterable[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the module's state dict."""
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------- the fitting loop


@dataclass(frozen=True)
class FitSettings:
    """How a supervised fit runs: the phase (batch size, epochs, learning-rate schedule), the seed of the batch
    order, the AdamW settings, gradient clipping and the progress bar."""

    phase: PhaseConfig
    seed: int
    weight_decay: float = 2.5e-4
    clip: float = 2.0
    betas: tuple[float, float] = (0.9, 0.99)
    progress: bool = False
    desc: str = "fit"

    @classmethod
    def from_profile(cls, profile: Profile, phase: PhaseConfig, seed: int, progress: bool, desc: str) -> FitSettings:
        """The profile's optimiser settings (``profile.train``) with this phase and seed."""
        t = profile.train
        return cls(phase, seed, t.weight_decay, t.clip_grad_norm, t.betas, progress, desc)


@dataclass(frozen=True)
class Selection:
    """Which validation score picks the state :func:`fit_supervised` keeps: its name, direction and start value.

    ``start`` is the best score before the first validation (a validation must beat it to be kept).
    """

    score: str
    maximize: bool
    start: float

    def better(self, value: float, best: float) -> bool:
        """True if ``value`` improves on ``best`` (NaN never does)."""
        return value > best if self.maximize else value < best


def _val_steps(total: int) -> set[int]:
    """The steps after which to validate: VAL_POINTS evenly spaced ones, the last step included."""
    return {max(1, round(total * k / VAL_POINTS)) for k in range(1, VAL_POINTS + 1)}


def _step_batches(n_items: int, phase: PhaseConfig, seed: int, total: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (step 1-based, epoch 1-based, item ids) until ``total`` steps are done."""
    step = 0
    for epoch in range(1, phase.epochs + 1):
        for ids in epoch_order(n_items, phase.batch_size, seed, epoch):
            step += 1
            if step > total:
                return
            yield step, epoch, ids


def _update(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    loss: torch.Tensor,
    clip: float,
) -> None:
    """One optimiser step on ``loss``: backward, gradient clipping at ``clip``, step, schedule step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()


def fit_supervised(
    model: nn.Module,
    n_items: int,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    validate: Callable[[], dict[str, float]],
    select: Selection,
    fit: FitSettings,
) -> dict[str, Any]:
    """Train ``model`` in place on ``n_items`` items; keep the state with the best validation score.

    ``batch_loss(ids)`` returns the mean loss of the items ``ids`` (forward pass in training mode);
    ``validate()`` returns named validation scores (it must leave the model in training mode). The optimiser
    is :func:`~mixpoet_lib.train.schedules.make_optimizer` with the phase's learning-rate schedule and gradient
    clipping at ``fit.clip``; the batches come from :func:`~mixpoet_lib.data.batching.epoch_order` (seeded by
    ``fit.seed`` and the epoch). Returns ``{"history": rows, "best": {"step", scores…}, "steps": total}``; the
    model ends in eval mode with the selected weights.
    """
    phase = fit.phase
    opt = make_optimizer(model.parameters(), phase, fit.weight_decay, fit.betas)
    sched = phase_lr_scheduler(opt, phase)
    total = planned_steps(math.ceil(n_items / phase.batch_size), phase)
    checks = _val_steps(total)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {select.score: select.start}
    best_state = cpu_state(model)
    running, seen = 0.0, 0
    model.train()
    bar = progress_bar(total=total, desc=fit.desc, leave=False, progress=fit.progress)
    for step, epoch, ids in _step_batches(n_items, phase, fit.seed, total):
        loss = batch_loss(ids)
        _update(model, opt, sched, loss, fit.clip)
        running, seen = running + loss.item(), seen + 1
        bar.update(1)
        if step not in checks:
            continue
        scores = validate()
        row = {"step": step, "epoch": epoch, "train_loss": running / seen, "lr": sched.get_last_lr()[0]}
        history.append({**row, **{f"valid_{k}": v for k, v in scores.items()}})
        running, seen = 0.0, 0
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", **{select.score: f"{scores[select.score]:.4g}"})
        if select.better(scores[select.score], best[select.score]):
            best, best_state = {"step": step, **scores}, cpu_state(model)
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best": best, "steps": total}


# ------------------------------------------------------------------------------ checkpoint reuse


def save_fitted(model: Judge | CharLM, key: dict[str, Any], path: Path, **extra: Any) -> None:
    """Save a judge or the char LM (``vocab``, ``hparams``, ``report`` attributes) as a plain-dict checkpoint.

    ``extra`` fields (e.g. the judge's ``factor``) follow the vocabulary; :func:`reuse_checkpoint` and the loaders
    of :mod:`mixpoet_lib.checkpoints` read it back.
    """
    payload = {"key": key, "tokens": list(model.vocab.tokens), **extra}
    payload.update({"hparams": model.hparams, "state_dict": cpu_state(model), "report": model.report})
    save_checkpoint(payload, path)


def _stored_key(path: Path, log: Log) -> dict[str, Any] | None:
    """The settings key of a checkpoint, or None (logged) if it is missing or unreadable."""
    if not path.exists():
        return None
    try:
        return read_checkpoint(path).get("key")
    except Exception as exc:  # truncated or foreign file: retrain rather than fail
        log(f"{path} is unreadable ({type(exc).__name__}: {exc}); retraining")
        return None


def reuse_checkpoint(
    what: str,
    path: Path,
    key: dict[str, Any],
    load: Callable[[Path], Any],
    log: Log,
    retrain: bool,
    profile: Profile,
    published: str | None,
) -> Any:
    """The network saved at ``path`` if its settings key matches, else None (the caller trains it).

    With ``published`` (the name of a published file) and no checkpoint at ``path``, published weights
    (weights/<profile>) whose key matches are used.
    """
    stored = None if retrain else _stored_key(path, log)
    if stored is None and not retrain and published:
        pub = find_published(profile, published, key)
        if pub is not None:
            log(f"{what}: using the published weights {pub}")
            return load(pub)
    if stored is not None:
        if stored == key:
            log(f"{what}: reusing {path}")
            return load(path)
        log(f"{what}: {path} was trained with other settings; retraining")
    return None
