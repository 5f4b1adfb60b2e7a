"""The independent factor judges of notebook 05: training, reuse, and classifying poems (design §6.4).

The network is ``eval.judge_kind``'s: :class:`~mixpoet_lib.models.judges.NgramJudge` (the default; bigrams from
the labelled training poems, IDF counted on the unlabelled pool, an L2-regularised class-balanced logistic
regression fitted with L-BFGS for each strength of ``eval.judge_l2``) or
:class:`~mixpoet_lib.models.judges.JudgeClassifier` (a BiGRU, trained by the shared fitting loop); loader and file
place in :mod:`mixpoet_lib.checkpoints`. A judge per factor is trained on the CQCF train poems labelled for it,
model-selected on CQCF valid (best macro-F1) and scored on CQCF test: the *ceiling* a generated poem's factor
control is judged against (MixPoet's own q(y|x,w) is never a judge). **Items are poems**, not (keyword, poem)
instances: the judges never see keywords.

The fitting loop and the checkpoint reuse are shared with the char LM (:mod:`mixpoet_lib.train.supervised`,
:mod:`mixpoet_lib.train.charlm`); :func:`ensure_judges` reuses a ``judge_<factor>.pt`` (or published weights)
whose settings key matches.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mixpoet_lib._util import default_device, seed_everything
from mixpoet_lib.checkpoints import CKPT_FORMAT, judge_path, load_judge
from mixpoet_lib.config import FACTOR_NAMES, Profile
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.data.vocab import Vocab
from mixpoet_lib.metrics import accuracy, confusion_matrix, macro_f1, per_class_f1
from mixpoet_lib.models.judges import (
    JUDGE_DROPOUT,
    Judge,
    JudgeClassifier,
    NgramJudge,
    character_occurrences,
    character_pairs,
    encode_arrays,
)
from mixpoet_lib.train.supervised import (
    FitSettings,
    Items,
    Log,
    Selection,
    batches_of,
    cpu_state,
    fit_supervised,
    quiet,
    reuse_checkpoint,
    save_fitted,
    vocab_hash,
)

__all__ = [
    "VAT_XI",
    "UNLABELLED_SPLIT",
    "NGRAM_MIN_DF",
    "NGRAM_MAX_ITER",
    "ngram_judge",
    "fit_ngram",
    "virtual_adversarial_loss",
    "fit_classifier",
    "evaluate_classifier",
    "factor_items",
    "train_judge",
    "ensure_judges",
    "classify",
]

VAT_XI = 1e-6  # norm of the random direction whose gradient gives the adversarial one (finite difference)
UNLABELLED_SPLIT = "unl_train"  # the judges' unlabelled poems: VAT, the n-gram judge's IDF (never a test split)
NGRAM_MIN_DF = 2  # a character pair is a feature if at least this many labelled training poems hold it
NGRAM_MAX_ITER = 300  # L-BFGS iterations of the n-gram judge, per L2 strength
_SCORES = ("accuracy", "macro_f1")  # the validation scores a judge's history records


@torch.no_grad()
def _predict(model: Judge, tokens: torch.Tensor, lengths: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities (N, C) on the CPU, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    out = []
    for sl in batches_of(len(lengths), batch_size):
        ln = lengths[sl]
        tok = tokens[sl, : int(ln.max())].to(model.device)
        out.append(torch.softmax(model(tok, ln), dim=-1).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, len(model.classes))


def evaluate_classifier(
    model: Judge, tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1 and confusion matrix (rows true, columns predicted) on encoded items."""
    pred = _predict(model, tokens, lengths).argmax(-1).numpy()
    y = labels.numpy()
    n = len(model.classes)
    return {
        "n": len(y),
        "accuracy": accuracy(y, pred),
        "macro_f1": macro_f1(y, pred, n),
        "per_class_f1": per_class_f1(y, pred, n).tolist(),
        "confusion": confusion_matrix(y, pred, n).tolist(),
    }


def _unit(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` (B, T, E) zeroed at the padding and scaled to L2 norm 1 per poem."""
    x = x * mask[:, :, None]
    return x / x.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]


def virtual_adversarial_loss(
    model: JudgeClassifier, tokens: torch.Tensor, lengths: torch.Tensor, eps: float, xi: float = VAT_XI
) -> torch.Tensor:
    """Local distributional smoothness (Miyato et al. 2017): KL(p(y|e) ‖ p(y|e + r_adv)), batch mean.

    e are the poem's character embeddings; r_adv (L2 norm ``eps`` per poem, zero at the padding) points where
    the KL grows fastest, found by one power iteration: the gradient at a random direction of norm ``xi``.
    Needs no labels; p(y|e) is a constant target, the embeddings and the network learn through p(y|e + r_adv).
    """
    emb = model.embed(tokens)
    mask = (torch.arange(tokens.shape[1], device=emb.device)[None, :] < lengths.to(emb.device)[:, None]).float()
    with torch.no_grad():
        target = F.log_softmax(model.classify_embedded(emb, lengths), dim=-1)
    d = (xi * _unit(torch.randn_like(emb), mask)).requires_grad_()
    near = F.log_softmax(model.classify_embedded(emb.detach() + d, lengths), dim=-1)
    (grad,) = torch.autograd.grad(F.kl_div(near, target, log_target=True, reduction="batchmean"), d)
    adv = F.log_softmax(model.classify_embedded(emb + eps * _unit(grad, mask), lengths), dim=-1)
    return F.kl_div(adv, target, log_target=True, reduction="batchmean")


def fit_classifier(
    model: JudgeClassifier,
    train: Items,
    valid: Items,
    fit: FitSettings,
    unlabelled: tuple[torch.Tensor, torch.Tensor] | None = None,
    vat: tuple[float, float] = (0.0, 1.0),
) -> dict[str, Any]:
    """Train in place on (tokens, lengths, labels) with cross-entropy; keep the best-validation-macro-F1 state.

    With ``unlabelled`` (tokens, lengths) and ``vat`` = (weight α, ε) with α > 0, each step adds α × the
    :func:`virtual_adversarial_loss` of as many unlabelled poems (seeded draws). Returns the
    :func:`fit_supervised` history (validation rows carry ``valid_accuracy`` and ``valid_macro_f1``).
    """
    tokens, lengths, labels = train
    rng = np.random.default_rng(fit.seed)

    def batch_loss(ids: np.ndarray) -> torch.Tensor:
        ln = lengths[ids]
        tok = tokens[ids, : int(ln.max())].to(model.device)
        loss = F.cross_entropy(model(tok, ln), labels[ids].to(model.device))
        if unlabelled is None or vat[0] <= 0:
            return loss
        pick = torch.from_numpy(rng.integers(0, len(unlabelled[1]), len(ids)))
        u_ln = unlabelled[1][pick]
        u_tok = unlabelled[0][pick, : int(u_ln.max())].to(model.device)
        return loss + vat[0] * virtual_adversarial_loss(model, u_tok, u_ln, vat[1])

    def validate() -> dict[str, float]:
        ev = evaluate_classifier(model, *valid)
        return {"accuracy": ev["accuracy"], "macro_f1": ev["macro_f1"]}

    return fit_supervised(model, len(labels), batch_loss, validate, Selection("macro_f1", True, -1.0), fit)


def _document_frequency(rows: torch.Tensor, ids: torch.Tensor, size: int) -> torch.Tensor:
    """How many distinct rows hold each id in 0..size-1."""
    unique = torch.unique(rows * size + ids)
    return torch.bincount(unique % size, minlength=size)


def ngram_judge(vocab: Vocab, factor: str, train_tokens: torch.Tensor, pool_tokens: torch.Tensor) -> NgramJudge:
    """An untrained n-gram judge: the characters and pairs of ≥ :data:`NGRAM_MIN_DF` labelled training poems are its
    features (idf 0 for every other character: no weight, no share of a poem's norm), with idf_j = ln((N + 1) /
    (df_j + 1)) + 1 counted on the N poems of ``pool_tokens`` (the unlabelled pool)."""
    rows, keys = character_pairs(train_tokens, len(vocab))
    uniq, counts = torch.unique(torch.unique(rows * len(vocab) ** 2 + keys) % len(vocab) ** 2, return_counts=True)
    model = NgramJudge(vocab, factor, int((counts >= NGRAM_MIN_DF).sum()))
    model.bigram_keys.copy_(uniq[counts >= NGRAM_MIN_DF])  # torch.unique sorts
    df = torch.zeros(model.n_features, dtype=torch.long)
    for sl in batches_of(len(pool_tokens), 4096):
        df += _document_frequency(*model.feature_ids(pool_tokens[sl]), model.n_features)
    idf = torch.log((len(pool_tokens) + 1) / (df.double() + 1)).float() + 1
    idf[: len(vocab)][_document_frequency(*character_occurrences(train_tokens), len(vocab)) < NGRAM_MIN_DF] = 0.0
    model.idf.copy_(idf)
    return model


def _lbfgs(model: NgramJudge, x: torch.Tensor, labels: torch.Tensor, l2: float) -> float:
    """Fit ``model.out`` from zero to class-balanced cross-entropy + l2·‖W‖² with L-BFGS; return the final loss."""
    k = len(model.classes)
    weight = len(labels) / (k * torch.bincount(labels, minlength=k).clamp(min=1).float())
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.zero_()
    opt = torch.optim.LBFGS(model.out.parameters(), max_iter=NGRAM_MAX_ITER, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = torch.sparse.mm(x, model.out.weight.T) + model.out.bias
        loss = F.cross_entropy(logits, labels, weight=weight) + l2 * model.out.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float(closure().detach())


def fit_ngram(model: NgramJudge, train: Items, valid: Items, l2_grid: Sequence[float]) -> dict[str, Any]:
    """Fit the n-gram judge for every L2 strength of ``l2_grid`` and keep the best on valid macro-F1.

    Deterministic (L-BFGS from zero weights on the whole training set; no seed). Returns ``{"history": one row
    per strength, "best": {"step": its 1-based index, "l2", macro_f1, accuracy}, "steps": len(l2_grid)}``.
    """
    x = model.features(train[0])
    labels = train[2].to(model.device)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"macro_f1": -1.0}
    best_state = cpu_state(model)
    for step, l2 in enumerate(l2_grid, 1):
        loss = _lbfgs(model, x, labels, l2)
        ev = evaluate_classifier(model, *valid)
        history.append({"step": step, "l2": l2, "train_loss": loss, **{f"valid_{k}": ev[k] for k in _SCORES}})
        if ev["macro_f1"] > best["macro_f1"]:
            best, best_state = {"step": step, "l2": l2, **{k: ev[k] for k in _SCORES}}, cpu_state(model)
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best": best, "steps": len(l2_grid)}


def _judge_key(data: PreparedData, factor: str, profile: Profile, seed: int) -> dict[str, Any]:
    cfg = profile.eval
    if cfg.judge_kind == "ngram":  # deterministic: no seed, so every training seed of a profile shares the judges
        return {
            "kind": "judge",
            "format": CKPT_FORMAT,
            "factor": factor,
            "judge": "ngram",
            "l2": list(cfg.judge_l2),
            "min_df": NGRAM_MIN_DF,
            "max_iter": NGRAM_MAX_ITER,
            "idf": UNLABELLED_SPLIT,
            "vocab": vocab_hash(data.vocab),
            "dataset": data.root.name,
        }
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
        "vocab": vocab_hash(data.vocab),
        "dataset": data.root.name,
        **({"vat": [cfg.judge_vat_weight, cfg.judge_vat_eps]} if cfg.judge_vat_weight > 0 else {}),
    }


def factor_items(data: PreparedData, split: str, fi: int) -> Items:
    """The poems of ``split`` labelled for factor ``fi`` (0 living, 1 era): (tokens, lengths, labels)."""
    arrays = data.arrays(split)
    rows = np.flatnonzero(arrays.labels[:, fi] >= 0)
    tokens, lengths = encode_arrays(arrays, rows=rows)
    return tokens, lengths, torch.as_tensor(arrays.labels[rows, fi].astype(np.int64))


def _judge_report(
    model: Judge, fit: dict[str, Any], train: Items, valid: Items, test: Items, t0: float, seed: int
) -> dict[str, Any]:
    """The report a judge checkpoint carries: data sizes, selection, test scores, history, time, device, seed."""
    counts = np.bincount(train[2].numpy(), minlength=len(model.classes)).tolist()
    return {
        "factor": model.factor,
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


def train_judge(
    data: PreparedData,
    factor: str,
    profile: Profile,
    run_dir: str | Path,
    seed: int | None = None,
    progress: bool = False,
    log: Log = quiet,
) -> tuple[Judge, dict[str, Any]]:
    """Train the judge of one factor (CQCF train → select on valid → report on test) and save its checkpoint."""
    if factor not in FACTOR_NAMES:
        raise ValueError(f"unknown factor {factor!r}; choose one of {', '.join(FACTOR_NAMES)}")
    seed = profile.seed if seed is None else seed
    cfg, fi = profile.eval, FACTOR_NAMES.index(factor)
    t0 = time.perf_counter()
    train, valid, test = (factor_items(data, s, fi) for s in ("cqcf_train", "cqcf_valid", "cqcf_test"))
    log(f"judge {factor}: {len(train[2])} train / {len(valid[2])} valid / {len(test[2])} test poems")
    model: Judge
    if cfg.judge_kind == "ngram":
        model = ngram_judge(data.vocab, factor, train[0], encode_arrays(data.arrays(UNLABELLED_SPLIT))[0])
        fit = fit_ngram(model.to(default_device()), train, valid, cfg.judge_l2)
    else:
        seed_everything(seed)
        model = JudgeClassifier(data.vocab, factor, cfg.judge_emb, cfg.judge_hidden).to(default_device())
        settings = FitSettings.from_profile(profile, cfg.judge, seed, progress, f"judge {factor}")
        unlabelled = encode_arrays(data.arrays(UNLABELLED_SPLIT)) if cfg.judge_vat_weight > 0 else None
        fit = fit_classifier(model, train, valid, settings, unlabelled, (cfg.judge_vat_weight, cfg.judge_vat_eps))
    model.report = _judge_report(model, fit, train, valid, test, t0, seed)
    path = judge_path(run_dir, factor)
    save_fitted(model, _judge_key(data, factor, profile, seed), path, factor=model.factor)
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
    log: Log = quiet,
    factors: Sequence[str] = FACTOR_NAMES,
    retrain: bool = False,
    published: bool = False,
) -> dict[str, Judge]:
    """Return {factor: judge}, loading a checkpoint whose settings key matches, else training (and saving) it.

    With ``published`` and no checkpoint in the run folder, matching published weights (weights/<profile>) are used.
    """
    seed = profile.seed if seed is None else seed
    judges = {}
    for factor in factors:
        key = _judge_key(data, factor, profile, seed)
        model = reuse_checkpoint(
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
    judges: dict[str, Judge], poems: Sequence[str | Sequence[str]], batch_size: int = 512
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
