"""Training the independent judges of notebook 05 and scoring poems with them (spec §5.3-5.4, [RECON]).

The networks are in :mod:`mixpoet_lib.models.judges`, their loaders and file places in :mod:`mixpoet_lib.checkpoints`.
A judge per factor is trained on the CQCF train poems labelled for it, model-selected on CQCF valid (best
macro-F1) and scored on CQCF test: the *ceiling* a generated poem's factor control is judged against (MixPoet's
own q(y|x,w) is never a judge). The char LM is trained on ``unl_train``, selected on ``unl_valid``; LMS(p) = mean
log-probability per character of poem p, with the ``unl_test`` poems as the GT reference.

* **One fitting loop**, :func:`fit_supervised`, trains both with the main loop's optimiser and learning-rate
  schedule (:mod:`mixpoet_lib.train.schedules`, ``EvalConfig`` phases, ``profile.train`` betas, weight decay
  and clipping) and batch order (:func:`mixpoet_lib.data.batching.epoch_order`). It validates
  :data:`VAL_POINTS` times, evenly spread (the last step included), and keeps the best state (judges: macro-F1;
  LM: character perplexity on a seeded subset of :data:`LM_VAL_POEMS` unl_valid poems).
* **LM targets.** The LM trains on every target (characters and ``<E>``); LMS and every perplexity reported
  here average over the **character targets only** (UNK included), conditioning on the line ends.
* **Items are poems**, not (keyword, poem) instances: the judges never see keywords.
* **Checkpoints** (``judge_<factor>.pt``, ``charlm.pt``) are plain dicts for ``torch.load(weights_only=True)``
  with their vocabulary, report and a settings key (sizes, phase, seed, vocabulary hash, dataset folder);
  :func:`ensure_judges` / :func:`ensure_lm` reuse a checkpoint (or published weights) whose key matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mixpoet_lib._util import default_device, progress_bar, seed_everything, torch_save_atomic
from mixpoet_lib.checkpoints import (
    CKPT_FORMAT,
    find_published,
    judge_path,
    lm_path,
    load_judge,
    load_lm,
    read_checkpoint,
)
from mixpoet_lib.config import FACTOR_NAMES, PhaseConfig, Profile
from mixpoet_lib.data.batching import epoch_order
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.data.vocab import EOS, PAD, UNK, Vocab
from mixpoet_lib.metrics import accuracy, confusion_matrix, macro_f1, mean_std, per_class_f1
from mixpoet_lib.models.judges import JUDGE_DROPOUT, LM_DROPOUT, CharLM, JudgeClassifier, encode_arrays
from mixpoet_lib.train.schedules import make_optimizer, phase_lr_scheduler, planned_steps

__all__ = [
    "VAL_POINTS",
    "LM_VAL_POEMS",
    "Selection",
    "fit_supervised",
    "LMScores",
    "fit_classifier",
    "evaluate_classifier",
    "train_judge",
    "ensure_judges",
    "classify",
    "fit_lm",
    "train_lm",
    "ensure_lm",
    "lm_score",
]

LM_VAL_POEMS = 1000  # seeded unl_valid subset for the validations during LM training
VAL_POINTS = 8  # validations spread evenly over a training run (the last step included)

Log = Callable[[str], None]
Items = tuple[torch.Tensor, ...]  # encoded poems: (tokens, lengths) or (tokens, lengths, labels)


def _quiet(_: str) -> None:
    return None


# ------------------------------------------------------------------------------------------ helpers


def _vocab_hash(vocab: Vocab) -> str:
    # not _util.digest: that hashes the JSON list, which would change every published judge/LM key
    return hashlib.sha256("\n".join(vocab.tokens).encode()).hexdigest()[:16]


def _batches_of(n: int, size: int) -> Iterable[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------- the fitting loop


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


def fit_supervised(
    model: nn.Module,
    n_items: int,
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    validate: Callable[[], dict[str, float]],
    select: Selection,
    phase: PhaseConfig,
    seed: int,
    weight_decay: float,
    clip: float,
    betas: tuple[float, float],
    progress: bool = False,
    desc: str = "fit",
) -> dict[str, Any]:
    """Train ``model`` in place on ``n_items`` items; keep the state with the best validation score.

    ``batch_loss(ids)`` returns the mean loss of the items ``ids`` (forward pass in training mode);
    ``validate()`` returns named validation scores (it must leave the model in training mode). The optimiser
    is :func:`~mixpoet_lib.train.schedules.make_optimizer` with the phase's learning-rate schedule and gradient
    clipping at ``clip``; the batches come from :func:`~mixpoet_lib.data.batching.epoch_order` (seeded by
    ``seed`` and the epoch). Returns ``{"history": rows, "best": {"step", scores…}, "steps": total}``; the
    model ends in eval mode with the selected weights.
    """
    opt = make_optimizer(model.parameters(), phase, weight_decay, betas)
    sched = phase_lr_scheduler(opt, phase)
    total = planned_steps(math.ceil(n_items / phase.batch_size), phase)
    checks = _val_steps(total)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {select.score: select.start}
    best_state = _cpu_state(model)
    running, seen = 0.0, 0
    model.train()
    bar = progress_bar(total=total, desc=desc, leave=False, progress=progress)
    for step, epoch, ids in _step_batches(n_items, phase, seed, total):
        loss = batch_loss(ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        running, seen = running + loss.item(), seen + 1
        bar.update(1)
        if step not in checks:
            continue
        scores = validate()
        history.append(
            {
                "step": step,
                "epoch": epoch,
                "train_loss": running / seen,
                "lr": sched.get_last_lr()[0],
                **{f"valid_{k}": v for k, v in scores.items()},
            }
        )
        running, seen = 0.0, 0
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", **{select.score: f"{scores[select.score]:.4g}"})
        if select.better(scores[select.score], best[select.score]):
            best, best_state = {"step": step, **scores}, _cpu_state(model)
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best": best, "steps": total}


# ------------------------------------------------------------------------------ checkpoint reuse


def _stored_key(path: Path, log: Log) -> dict[str, Any] | None:
    """The settings key of a checkpoint, or None (logged) if it is missing or unreadable."""
    if not path.exists():
        return None
    try:
        return read_checkpoint(path).get("key")
    except Exception as exc:  # truncated or foreign file: retrain rather than fail
        log(f"{path} is unreadable ({type(exc).__name__}: {exc}); retraining")
        return None


def _reuse(
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


# ------------------------------------------------------------------------------------------- judges


@torch.no_grad()
def _predict(
    model: JudgeClassifier, tokens: torch.Tensor, lengths: torch.Tensor, batch_size: int = 512
) -> torch.Tensor:
    """Class probabilities (N, C) on the CPU, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    out = []
    for sl in _batches_of(len(lengths), batch_size):
        ln = lengths[sl]
        tok = tokens[sl, : int(ln.max())].to(model.device)
        out.append(torch.softmax(model(tok, ln), dim=-1).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, len(model.classes))


def evaluate_classifier(
    model: JudgeClassifier, tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1 and confusion matrix (rows true, columns predicted) on encoded items."""
    pred = _predict(model, tokens, lengths).argmax(-1).numpy()
    y = labels.numpy()
    n = len(model.classes)
    return {
        "n": int(len(y)),
        "accuracy": accuracy(y, pred),
        "macro_f1": macro_f1(y, pred, n),
        "per_class_f1": per_class_f1(y, pred, n).tolist(),
        "confusion": confusion_matrix(y, pred, n).tolist(),
    }


def fit_classifier(
    model: JudgeClassifier,
    train: Items,
    valid: Items,
    phase: PhaseConfig,
    seed: int,
    weight_decay: float = 2.5e-4,
    clip: float = 2.0,
    betas: tuple[float, float] = (0.9, 0.99),
    progress: bool = False,
    desc: str = "judge",
) -> dict[str, Any]:
    """Train in place on (tokens, lengths, labels) with cross-entropy; keep the best-validation-macro-F1 state.

    Returns the :func:`fit_supervised` history (validation rows carry ``valid_accuracy`` and ``valid_macro_f1``).
    """
    tokens, lengths, labels = train

    def batch_loss(ids: np.ndarray) -> torch.Tensor:
        ln = lengths[ids]
        tok = tokens[ids, : int(ln.max())].to(model.device)
        return F.cross_entropy(model(tok, ln), labels[ids].to(model.device))

    def validate() -> dict[str, float]:
        ev = evaluate_classifier(model, *valid)
        return {"accuracy": ev["accuracy"], "macro_f1": ev["macro_f1"]}

    return fit_supervised(
        model,
        len(labels),
        batch_loss,
        validate,
        Selection("macro_f1", True, -1.0),
        phase,
        seed,
        weight_decay,
        clip,
        betas,
        progress,
        desc,
    )


def _judge_key(data: PreparedData, factor: str, profile: Profile, seed: int) -> dict[str, Any]:
    cfg = profile.eval
    return {
        "kind": "judge",
        "format": CKPT_FORMAT,
        "factor": factor,
        "emb": cfg.judge_emb,
        "hidden": cfg.judge_hidden,
        "dropout": JUDGE_DROPOUT,
        "phase": dataclasses.asdict(cfg.judge),
        "weight_decay": profile.train.weight_decay,
        "clip": profile.train.clip_grad_norm,
        "betas": list(profile.train.betas),
        "seed": seed,
        "vocab": _vocab_hash(data.vocab),
        "dataset": data.root.name,
    }


def _factor_items(data: PreparedData, split: str, fi: int) -> Items:
    arrays = data.arrays(split)
    rows = np.flatnonzero(arrays.labels[:, fi] >= 0)
    tokens, lengths = encode_arrays(arrays, rows=rows)
    return tokens, lengths, torch.as_tensor(arrays.labels[rows, fi].astype(np.int64))


def train_judge(
    data: PreparedData,
    factor: str,
    profile: Profile,
    run_dir: str | Path,
    seed: int | None = None,
    progress: bool = False,
    log: Log = _quiet,
) -> tuple[JudgeClassifier, dict[str, Any]]:
    """Train the judge of one factor (CQCF train → select on valid → report on test) and save its checkpoint."""
    if factor not in FACTOR_NAMES:
        raise ValueError(f"unknown factor {factor!r}; choose one of {', '.join(FACTOR_NAMES)}")
    seed = profile.seed if seed is None else seed
    cfg, fi, vocab = profile.eval, FACTOR_NAMES.index(factor), data.vocab
    t0 = time.perf_counter()
    train, valid, test = (_factor_items(data, s, fi) for s in ("cqcf_train", "cqcf_valid", "cqcf_test"))
    seed_everything(seed)
    model = JudgeClassifier(vocab, factor, cfg.judge_emb, cfg.judge_hidden).to(default_device())
    log(f"judge {factor}: {len(train[2])} train / {len(valid[2])} valid / {len(test[2])} test poems")
    fit = fit_classifier(
        model,
        train,
        valid,
        cfg.judge,
        seed,
        profile.train.weight_decay,
        profile.train.clip_grad_norm,
        profile.train.betas,
        progress,
        f"judge {factor}",
    )
    counts = np.bincount(train[2].numpy(), minlength=len(model.classes)).tolist()
    model.report = {
        "factor": factor,
        "classes": list(model.classes),
        "n_train": len(train[2]),
        "train_class_counts": counts,
        "n_valid": len(valid[2]),
        "steps": fit["steps"],
        "best_step": fit["best"].get("step"),
        "valid": fit["best"],
        "test": evaluate_classifier(model, *test),
        "history": fit["history"],
        "seconds": round(time.perf_counter() - t0, 2),
        "device": str(model.device),
        "seed": seed,
    }
    path = judge_path(run_dir, factor)
    torch_save_atomic(
        {
            "key": _judge_key(data, factor, profile, seed),
            "tokens": list(vocab.tokens),
            "factor": factor,
            "hparams": model.hparams,
            "state_dict": _cpu_state(model),
            "report": model.report,
        },
        path,
    )
    t = model.report["test"]
    log(
        f"judge {factor}: test accuracy {t['accuracy']:.3f}, macro-F1 {t['macro_f1']:.3f} "
        f"({model.report['seconds']:.0f} s) → {path}"
    )
    return model, model.report


def ensure_judges(
    data: PreparedData,
    profile: Profile,
    run_dir: str | Path,
    seed: int | None = None,
    progress: bool = False,
    log: Log = _quiet,
    factors: Sequence[str] = FACTOR_NAMES,
    retrain: bool = False,
    published: bool = False,
) -> dict[str, JudgeClassifier]:
    """Return {factor: judge}, loading a checkpoint whose settings key matches, else training (and saving) it.

    With ``published`` and no checkpoint in the run folder, matching published weights (weights/<profile>) are used.
    """
    seed = profile.seed if seed is None else seed
    judges = {}
    for factor in factors:
        key = _judge_key(data, factor, profile, seed)
        model = _reuse(
            f"judge {factor}",
            judge_path(run_dir, factor),
            key,
            load_judge,
            log,
            retrain,
            profile,
            f"judge_{factor}" if published else None,
        )
        if model is None:
            model = train_judge(data, factor, profile, run_dir, seed, progress, log)[0]
        judges[factor] = model
    return judges


def classify(
    judges: dict[str, JudgeClassifier], poems: Sequence[str | Sequence[str]], batch_size: int = 512
) -> list[dict[str, dict[str, Any]]]:
    """Per poem and factor: predicted label id, its name and the class probabilities (ordered by label id)."""
    out: list[dict[str, dict[str, Any]]] = [{} for _ in poems]
    if not poems:
        return out
    for factor, model in judges.items():
        probs = _predict(model, *model.encode(poems), batch_size=batch_size)
        for row, p in zip(out, probs.tolist()):
            label = int(np.argmax(p))
            row[factor] = {"label": label, "name": model.classes[label], "probs": p}
    return out


# ----------------------------------------------------------------------------------- language model


def _lm_losses(lm: CharLM, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-target log-probabilities (B, T-1) and the character-target mask (B, T-1)."""
    tgt = tokens[:, 1:]
    return lm(tokens), (tgt != PAD) & (tgt != EOS)


@torch.no_grad()
def _lm_eval(
    lm: CharLM, tokens: torch.Tensor, lengths: torch.Tensor, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Per poem: summed character log-probability and number of characters (eval mode, restored after)."""
    was_training = lm.training
    lm.eval()
    sums, counts = [], []
    for sl in _batches_of(len(lengths), batch_size):
        tok = tokens[sl, : int(lengths[sl].max())].to(lm.device)
        logp, is_char = _lm_losses(lm, tok)
        sums.append((logp * is_char).sum(1).double().cpu())
        counts.append(is_char.sum(1).cpu())
    lm.train(was_training)
    if not sums:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return torch.cat(sums).numpy(), torch.cat(counts).numpy()


@dataclass(frozen=True)
class LMScores:
    """Per-poem LMS (mean log-prob per character, natural log), perplexity exp(−LMS) and character count."""

    lms: np.ndarray
    ppl: np.ndarray
    n_chars: np.ndarray
    n_unk: np.ndarray

    def summary(self) -> dict[str, float]:
        """Mean ± sample std of LMS, corpus perplexity exp(−Σ log p / Σ chars), median poem perplexity, UNK rate."""
        mean, std, n = mean_std(self.lms.tolist())
        total = float(self.n_chars.sum())
        corpus_ppl = math.exp(-float((self.lms * self.n_chars).sum()) / total) if total else math.nan
        return {
            "mean_lms": mean,
            "std_lms": std,
            "corpus_ppl": corpus_ppl,
            "median_ppl": float(np.median(self.ppl)) if n else math.nan,
            "n": n,
            "unk_rate": float(self.n_unk.sum()) / total if total else math.nan,
        }


def _scores(sums: np.ndarray, counts: np.ndarray, tokens: torch.Tensor) -> LMScores:
    lms = sums / np.maximum(counts, 1)
    n_unk = (tokens == UNK).sum(1).numpy()
    return LMScores(lms=lms, ppl=np.exp(-lms), n_chars=counts.astype(np.int64), n_unk=n_unk.astype(np.int64))


def lm_score(lm: CharLM, poems: Sequence[str | Sequence[str]], batch_size: int = 256) -> LMScores:
    """LMS of every poem: mean natural-log probability per character (line ends <E> not scored) and perplexity."""
    if not poems:
        return LMScores(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    tokens, lengths = lm.encode(poems)
    return _scores(*_lm_eval(lm, tokens, lengths, batch_size), tokens)


def _char_ppl(lm: CharLM, tokens: torch.Tensor, lengths: torch.Tensor) -> float:
    sums, counts = _lm_eval(lm, tokens, lengths)
    return math.exp(-float(sums.sum()) / max(int(counts.sum()), 1))


def fit_lm(
    lm: CharLM,
    train: Items,
    valid: Items,
    phase: PhaseConfig,
    seed: int,
    weight_decay: float = 2.5e-4,
    clip: float = 2.0,
    betas: tuple[float, float] = (0.9, 0.99),
    progress: bool = False,
    desc: str = "char LM",
) -> dict[str, Any]:
    """Train in place on encoded poems (mean loss over every non-PAD target); keep the best validation state.

    Selection is on the character perplexity of ``valid`` (history rows carry ``valid_char_ppl``).
    """
    tokens, lengths = train

    def batch_loss(ids: np.ndarray) -> torch.Tensor:
        tok = tokens[ids, : int(lengths[ids].max())].to(lm.device)
        logp, _ = _lm_losses(lm, tok)
        return -logp.sum() / (tok[:, 1:] != PAD).sum()

    def validate() -> dict[str, float]:
        return {"char_ppl": _char_ppl(lm, *valid)}

    return fit_supervised(
        lm,
        len(lengths),
        batch_loss,
        validate,
        Selection("char_ppl", False, math.inf),
        phase,
        seed,
        weight_decay,
        clip,
        betas,
        progress,
        desc,
    )


def _lm_key(data: PreparedData, profile: Profile, seed: int) -> dict[str, Any]:
    cfg = profile.eval
    return {
        "kind": "charlm",
        "format": CKPT_FORMAT,
        "emb": cfg.lm_emb,
        "hidden": cfg.lm_hidden,
        "layers": cfg.lm_layers,
        "dropout": LM_DROPOUT,
        "phase": dataclasses.asdict(cfg.lm),
        "weight_decay": profile.train.weight_decay,
        "clip": profile.train.clip_grad_norm,
        "betas": list(profile.train.betas),
        "seed": seed,
        "vocab": _vocab_hash(data.vocab),
        "dataset": data.root.name,
    }


def train_lm(
    data: PreparedData,
    profile: Profile,
    run_dir: str | Path,
    seed: int | None = None,
    progress: bool = False,
    log: Log = _quiet,
) -> tuple[CharLM, dict[str, Any]]:
    """Train the character LM on unl_train poems (select on unl_valid), score the GT unl_test poems, save it."""
    seed = profile.seed if seed is None else seed
    cfg, vocab = profile.eval, data.vocab
    t0 = time.perf_counter()
    train, valid, test = (
        encode_arrays(data.arrays(s), bos=True, eos=True) for s in ("unl_train", "unl_valid", "unl_test")
    )
    pick = np.sort(np.random.default_rng(seed).permutation(len(valid[1]))[:LM_VAL_POEMS])
    valid_subset = (valid[0][pick], valid[1][pick])
    seed_everything(seed)
    lm = CharLM(vocab, cfg.lm_emb, cfg.lm_hidden, cfg.lm_layers).to(default_device())
    log(f"char LM: {len(train[1])} train / {len(valid[1])} valid poems ({len(pick)} for model selection)")
    fit = fit_lm(
        lm,
        train,
        valid_subset,
        cfg.lm,
        seed,
        profile.train.weight_decay,
        profile.train.clip_grad_norm,
        profile.train.betas,
        progress,
    )
    gt = _scores(*_lm_eval(lm, *test), test[0]).summary()
    lm.report = {
        "n_train": len(train[1]),
        "n_valid": len(valid[1]),
        "steps": fit["steps"],
        "best_step": fit["best"].get("step"),
        "valid_char_ppl": _char_ppl(lm, *valid),
        "valid_subset_char_ppl": fit["best"]["char_ppl"],
        "n_valid_subset": len(pick),
        "gt_unl_test": gt,
        "history": fit["history"],
        "seconds": round(time.perf_counter() - t0, 2),
        "device": str(lm.device),
        "seed": seed,
    }
    path = lm_path(run_dir)
    torch_save_atomic(
        {
            "key": _lm_key(data, profile, seed),
            "tokens": list(vocab.tokens),
            "hparams": lm.hparams,
            "state_dict": _cpu_state(lm),
            "report": lm.report,
        },
        path,
    )
    log(
        f"char LM: valid perplexity {lm.report['valid_char_ppl']:.1f}, GT LMS {gt['mean_lms']:.3f} "
        f"({lm.report['seconds']:.0f} s) → {path}"
    )
    return lm, lm.report


def ensure_lm(
    data: PreparedData,
    profile: Profile,
    run_dir: str | Path,
    seed: int | None = None,
    progress: bool = False,
    log: Log = _quiet,
    retrain: bool = False,
    published: bool = False,
) -> CharLM:
    """Return the char LM, loading a checkpoint whose settings key matches, else training (and saving) it.

    With ``published`` and no checkpoint in the run folder, matching published weights (weights/<profile>) are used.
    """
    seed = profile.seed if seed is None else seed
    lm = _reuse(
        "char LM",
        lm_path(run_dir),
        _lm_key(data, profile, seed),
        load_lm,
        log,
        retrain,
        profile,
        "char_lm" if published else None,
    )
    return train_lm(data, profile, run_dir, seed, progress, log)[0] if lm is None else lm
