"""The character language model of notebook 05: training, reuse, and the LMS of poems (design §6.3).

The network is :class:`mixpoet_lib.models.judges.CharLM`, its loader and file place in
:mod:`mixpoet_lib.checkpoints`. The char LM is trained on ``unl_train``, selected on a seeded subset of
:data:`LM_VAL_POEMS` ``unl_valid`` poems (character perplexity); LMS(p) = mean log-probability per character
of poem p, with the ``unl_test`` poems as the GT reference.

* **LM targets.** The LM trains on every target (characters and ``<E>``); LMS and every perplexity reported
  here average over the **character targets only** (UNK included), conditioning on the line ends.
* The fitting loop and the checkpoint reuse are shared with the judges (:mod:`mixpoet_lib.train.supervised`);
  :func:`ensure_lm` reuses a ``charlm.pt`` (or published weights) whose settings key matches.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixpoet_lib._util import default_device, seed_everything
from mixpoet_lib.checkpoints import CKPT_FORMAT, lm_path, load_lm
from mixpoet_lib.config import Profile
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.data.vocab import EOS, PAD, UNK
from mixpoet_lib.metrics import mean_std
from mixpoet_lib.models.judges import LM_DROPOUT, CharLM, encode_arrays
from mixpoet_lib.train.supervised import (
    FitSettings,
    Items,
    Log,
    Selection,
    batches_of,
    fit_supervised,
    quiet,
    reuse_checkpoint,
    save_fitted,
    vocab_hash,
)

__all__ = ["LM_VAL_POEMS", "LMScores", "fit_lm", "train_lm", "ensure_lm", "lm_score"]

LM_VAL_POEMS = 1000  # seeded unl_valid subset for the validations during LM training


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
    for sl in batches_of(len(lengths), batch_size):
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


def fit_lm(lm: CharLM, train: Items, valid: Items, fit: FitSettings) -> dict[str, Any]:
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

    return fit_supervised(lm, len(lengths), batch_loss, validate, Selection("char_ppl", False, math.inf), fit)


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
        "vocab": vocab_hash(data.vocab),
        "dataset": data.root.name,
    }


def train_lm(
    data: PreparedData,
    profile: Profile,
    run_dir: str | Path,
    seed: int | None = None,
    progress: bool = False,
    log: Log = quiet,
) -> tuple[CharLM, dict[str, Any]]:
    """Train the character LM on unl_train poems (select on unl_valid), score the GT unl_test poems, save it."""
    seed = profile.seed if seed is None else seed
    cfg = profile.eval
    t0 = time.perf_counter()
    train, valid, test = (
        encode_arrays(data.arrays(s), bos=True, eos=True) for s in ("unl_train", "unl_valid", "unl_test")
    )
    pick = np.sort(np.random.default_rng(seed).permutation(len(valid[1]))[:LM_VAL_POEMS])
    valid_subset = (valid[0][pick], valid[1][pick])
    seed_everything(seed)
    lm = CharLM(data.vocab, cfg.lm_emb, cfg.lm_hidden, cfg.lm_layers).to(default_device())
    log(f"char LM: {len(train[1])} train / {len(valid[1])} valid poems ({len(pick)} for model selection)")
    fit = fit_lm(lm, train, valid_subset, FitSettings.from_profile(profile, cfg.lm, seed, progress, "char LM"))
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
    save_fitted(lm, _lm_key(data, profile, seed), path)
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
    log: Log = quiet,
    retrain: bool = False,
    published: bool = False,
) -> CharLM:
    """Return the char LM, loading a checkpoint whose settings key matches, else training (and saving) it.

    With ``published`` and no checkpoint in the run folder, matching published weights (weights/<profile>) are used.
    """
    seed = profile.seed if seed is None else seed
    lm = reuse_checkpoint(
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
