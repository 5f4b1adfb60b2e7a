"""One optimiser update per function: the part of training a notebook shows under its equation.

Every step function takes the model, a batch (already on the model's device), an
:class:`~mixpoet_lib.train.optimisers.Optimisers` and the few numbers of the moment (teacher-forcing ratio,
Gumbel temperature, ...); it runs one update and returns the row of the training log as a dict of floats. The
factor models' steps also take ``counters``, the dict of batch counters the schedules read (``tau_step``,
``rec_steps``, ``noise_step``, ``adv_batches``), and move them on. The training loop
(:mod:`mixpoet_lib.train.trainers`) calls exactly these functions, in this order of operations, so a notebook
that calls them with the same seed reproduces the loop's weights bit for bit.

    opt = make_optimisers({"rec": (model.param_groups()["rec"], cfg.betas, cfg.mixture.decay_exponent)},
                          cfg.mixture, cfg)
    row = basic_step(model, batch, opt, tf_ratio=1.0)
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mixpoet_lib.config import TrainConfig
from mixpoet_lib.models.factor_models import FactorModelBase, MixPoetAUS, MixPoetIGS
from mixpoet_lib.models.generators import CVAE, BasicGenerator, FBasicGenerator
from mixpoet_lib.models.losses import (
    bow_loss,
    classifier_terms,
    gaussian_kl,
    kl_share_above,
    mode_seeking_loss,
    reconstruction_loss,
    relativistic_d_loss,
    relativistic_g_loss,
)
from mixpoet_lib.runtime import bf16_choice
from mixpoet_lib.train.diagnostics import active_units, diagnostic_row
from mixpoet_lib.train.optimisers import Optimisers
from mixpoet_lib.train.schedules import gumbel_tau, instance_noise, kl_weight

__all__ = [
    "autocast",
    "factor_counters",
    "gumbel_temperature",
    "dae_step",
    "basic_step",
    "fbasic_step",
    "classifier_step",
    "cvae_step",
    "igs_step",
    "aus_reconstruction_step",
    "aus_discriminator_step",
    "aus_generator_step",
    "aus_step",
]


def autocast(model: nn.Module, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on the model's device when ``amp`` (``train.amp_bf16``) asks for it there (else a no-op)."""
    device = next(model.parameters()).device.type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=bf16_choice(amp, device)[0])


def factor_counters() -> dict[str, int]:
    """Fresh batch counters of a factor model (IGS/AUS): Gumbel-τ steps, R steps, noise steps, adversarial batches."""
    return {"tau_step": 0, "rec_steps": 0, "noise_step": 0, "adv_batches": 0}


def gumbel_temperature(settings: TrainConfig, counters: dict[str, Any]) -> float:
    """The Gumbel-softmax temperature τ of the current batch."""
    return gumbel_tau(int(counters["tau_step"]), settings.tau_annealing_steps, settings.min_tau)


def _bow(out: dict[str, Any], batch: dict[str, Tensor], settings: TrainConfig) -> Tensor | None:
    """The bag-of-words loss of z when ``settings.bow_weight`` > 0 (the model then has its head), else None."""
    return bow_loss(out["bow_logits"], batch["poems"]) if settings.bow_weight > 0 else None


def _kl_pair(posterior: tuple[Tensor, Tensor], prior: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    (mq, lq), (mp, lp) = posterior, prior
    return mq.float(), lq.float(), mp.float(), lp.float()


# ---- reconstruction-only and classifier phases ----


def dae_step(
    model: BasicGenerator | FBasicGenerator,
    batch: dict[str, Tensor],
    opt: Optimisers,
    tf_ratio: float,
    amp: str = "off",
) -> dict[str, float]:
    """Phase A (DAE): minimise L = CE(lines | corrupted poem, keyword), the masked per-line cross-entropy.

    Decodes with teacher forcing at ratio ``tf_ratio``; steps optimiser 'rec'.
    Returns {'lr', 'tf_ratio', 'loss', 'grad_norm'}.
    """
    lr = opt.lr()
    with autocast(model, amp):
        loss = reconstruction_loss(model(batch, teacher_ratio=tf_ratio)["decode"])
    gn = opt.update(model, "rec", loss)
    return {"lr": lr, "tf_ratio": tf_ratio, "loss": loss.item(), "grad_norm": gn}


def basic_step(
    model: BasicGenerator, batch: dict[str, Tensor], opt: Optimisers, tf_ratio: float, amp: str = "off"
) -> dict[str, float]:
    """Keyword-only generator: minimise L = CE(lines | keyword), the same update as :func:`dae_step` on clean poems.

    Steps optimiser 'rec'. Returns {'lr', 'tf_ratio', 'loss', 'grad_norm'}.
    """
    return dae_step(model, batch, opt, tf_ratio, amp)


def fbasic_step(
    model: FBasicGenerator, batch: dict[str, Tensor], opt: Optimisers, tf_ratio: float, amp: str = "off"
) -> dict[str, float]:
    """fBasic: minimise L = CE(lines | keyword, ỹ_1, ỹ_2), the masked per-line cross-entropy of the clean poem.

    The labels are decoder inputs: ỹ_k = y_k where the poem is labelled for factor k, the extra "unknown" id
    K_k where it is not (``batch['labels']`` = -1); in C1 the batches hold every instance, in C2 the labelled
    CQCF ones. The same update as :func:`dae_step`; steps optimiser 'rec'. Returns {'lr', 'tf_ratio', 'loss',
    'grad_norm'}.
    """
    return dae_step(model, batch, opt, tf_ratio, amp)


def classifier_step(
    model: FactorModelBase, batch: dict[str, Tensor], opt: Optimisers, factor: int, amp: str = "off"
) -> dict[str, float]:
    """Phases B1/B2: minimise L = CE(q(y_k|x,w), y_k) + CE(p(y_k|w), y_k) for factor k = ``factor`` (0 or 1).

    Steps optimiser 'rec' (the classifiers of factor k and the shared encoders).
    Returns {'lr', 'loss', 'loss_xw', 'loss_w', 'acc_xw', 'acc_w', 'grad_norm'}.
    """
    lr, y = opt.lr(), batch["labels"][:, factor]
    with autocast(model, amp):
        h_x, h_w = model.encode(batch)
        lx = model.cl_xw[factor](torch.cat([h_x, h_w], -1)).float()
        lw = model.cl_w[factor](h_w).float()
        loss_xw, loss_w = nn.functional.cross_entropy(lx, y), nn.functional.cross_entropy(lw, y)
        loss = loss_xw + loss_w
    gn = opt.update(model, "rec", loss)
    return {
        "lr": lr,
        "loss": loss.item(),
        "loss_xw": loss_xw.item(),
        "loss_w": loss_w.item(),
        "acc_xw": float((lx.argmax(-1) == y).float().mean()),
        "acc_w": float((lw.argmax(-1) == y).float().mean()),
        "grad_norm": gn,
    }


# ---- latent-variable baselines ----


def cvae_step(
    model: CVAE, batch: dict[str, Tensor], opt: Optimisers, settings: TrainConfig, tf_ratio: float
) -> dict[str, float]:
    """Gaussian CVAE: minimise L = rec + β_t · Σ_d max(KL_d(q(z|x,w) ‖ p(z|w)), free_bits) [+ λ_bow · L_bow].

    With ``free_bits_scope="subspace"`` the KL term is max(Σ_d KL_d, free_bits · D) instead. β_t = kl_max_weight ×
    the KL-annealing weight after t = opt.steps['rec'] updates. Steps optimiser 'rec'.
    Returns {'lr', 'tf_ratio', 'loss', 'rec', 'kl' (no free bits), 'kl_fb', 'kl_weight', 'kl_above' (share of
    dimensions above the floor), 'bow', 'active_units', 'grad_norm'}.
    """
    lr = opt.lr()
    beta = kl_weight(int(opt.steps["rec"]), settings.kl_anneal_steps, settings.kl_anneal_kind, settings.kl_max_weight)
    with autocast(model, settings.amp_bf16):
        out = model(batch, teacher_ratio=tf_ratio)
        rec = reconstruction_loss(out["decode"])
    mq, lq, mp, lp = _kl_pair(out["posterior"], out["prior"])
    kl_fb, bow = gaussian_kl(mq, lq, mp, lp, settings.free_bits, settings.free_bits_scope), _bow(out, batch, settings)
    loss = rec + beta * kl_fb
    if bow is not None:
        loss = loss + settings.bow_weight * bow
    gn = opt.update(model, "rec", loss)
    return {
        "lr": lr,
        "tf_ratio": tf_ratio,
        "loss": loss.item(),
        "rec": rec.item(),
        "kl": float(gaussian_kl(mq, lq, mp, lp).detach()),
        "kl_fb": kl_fb.item(),
        "kl_weight": beta,
        "kl_above": kl_share_above(mq, lq, mp, lp, settings.free_bits),
        "bow": bow.item() if bow is not None else math.nan,
        "active_units": active_units(mq.detach()),
        "grad_norm": gn,
    }


def igs_step(
    model: MixPoetIGS,
    batch: dict[str, Tensor],
    opt: Optimisers,
    settings: TrainConfig,
    counters: dict[str, Any],
    tf_ratio: float,
    diag_batch: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """MixPoet-IGS: minimise L = rec + β_t Σ_k KL_k(free bits) + Σ_k (L_xw + L_ent + L_w) [+ λ_bow · L_bow].

    Labels are Gumbel-softmax samples at τ from ``counters['tau_step']`` (moved on by one); every
    ``settings.diag_every`` batches the row also gets the latent diagnostics (of ``diag_batch`` when given). Steps
    optimiser 'rec'.
    Returns {'lr', 'tf_ratio', 'tau', 'loss', 'rec', 'kl1', 'kl2', 'kl_weight', 'kl_above', 'bow', 'xw', 'ent',
    'w', 'active_units', 'grad_norm'} (+ 'diag_prior_post', 'diag_mixture', 'diag_match',
    'diag_match_rel').
    """
    lr, tau = opt.lr(), gumbel_temperature(settings, counters)
    beta = kl_weight(int(opt.steps["rec"]), settings.kl_anneal_steps, settings.kl_anneal_kind, settings.kl_max_weight)
    with autocast(model, settings.amp_bf16):
        out = model(batch, teacher_ratio=tf_ratio, tau=tau)
        rec = reconstruction_loss(out["decode"])
        terms = classifier_terms(out["logits_xw"], out["logits_w"], batch["labels"], batch["label_mask"], out["labels"])
    pairs = [_kl_pair(q, p) for q, p in zip(out["posterior"], out["prior"])]
    kls_fb = [gaussian_kl(*pq, settings.free_bits, settings.free_bits_scope) for pq in pairs]
    kls = [gaussian_kl(*pq) for pq in pairs]
    mq, lq, mp, lp = (torch.cat(t, -1) for t in zip(*pairs))
    bow = _bow(out, batch, settings)
    loss = rec + beta * sum(kls_fb) + terms["xw"] + terms["ent"] + terms["w"]
    if bow is not None:
        loss = loss + settings.bow_weight * bow
    gn = opt.update(model, "rec", loss)
    row = {
        "lr": lr,
        "tf_ratio": tf_ratio,
        "tau": tau,
        "loss": loss.item(),
        "rec": rec.item(),
        "kl1": kls[0].item(),
        "kl2": kls[1].item(),
        "kl_weight": beta,
        "kl_above": kl_share_above(mq, lq, mp, lp, settings.free_bits),
        "bow": bow.item() if bow is not None else math.nan,
        "xw": terms["xw"].item(),
        "ent": terms["ent"].item(),
        "w": terms["w"].item(),
        "grad_norm": gn,
        "active_units": active_units(mq.detach()),
    }
    if settings.diag_every > 0 and int(counters["tau_step"]) % settings.diag_every == 0:
        row.update(diagnostic_row(model, batch, settings, counters, tau, diag_batch))
    counters["tau_step"] += 1
    return row


# ---- MixPoet-AUS: R step, then ndis D steps and one G step (design §4.6) ----


def _detach(y: Tensor) -> Tensor:
    return y.detach().float() if y.dtype.is_floating_point else y.detach()


def _aus_rec_loss(
    model: MixPoetAUS, batch: dict[str, Tensor], tf_ratio: float, tau: float, amp: str, stock_weight: float = 0.0
) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
    """The loss of step R, its terms and the forward pass; then (no grad, fp32) one prior draw for its BN statistics.

    With ``stock_weight`` > 0 that draw also starts the stock-line unlikelihood term (design §4.15), added × weight.
    """
    with autocast(model, amp):
        out = model(batch, teacher_ratio=tf_ratio, tau=tau, update_prior_stats=False)
        rec = reconstruction_loss(out["decode"])
        terms = classifier_terms(out["logits_xw"], out["logits_w"], batch["labels"], batch["label_mask"], out["labels"])
        loss = rec + terms["xw"] + terms["ent"] + terms["w"]
    y = [_detach(yk) for yk in out["labels"]]
    with torch.no_grad():
        z_prior = model.prior_sample(out["h_w"].detach().float(), y)
    if stock_weight > 0:
        terms["stock"], terms["stock_share"] = model.stock_line_loss(z_prior, out["h_w"].float(), y, batch)
        loss = loss + stock_weight * terms["stock"]
    return loss, {"rec": rec, **terms}, out


def _rec_row(loss: Tensor, terms: dict[str, Tensor], grad_norm: float) -> dict[str, float]:
    row = {"loss": loss.item(), **{k: terms[k].item() for k in ("rec", "xw", "ent", "w")}, "grad_norm": grad_norm}
    return {**row, **{k: terms[k].item() if k in terms else math.nan for k in ("stock", "stock_share")}}


def aus_reconstruction_step(
    model: MixPoetAUS,
    batch: dict[str, Tensor],
    opt: Optimisers,
    tf_ratio: float,
    tau: float,
    amp: str = "off",
    stock_weight: float = 0.0,
) -> dict[str, float]:
    """AUS step R: minimise L = rec(decoded from z_post) + Σ_k (L_xw + L_ent + L_w) [+ λ_ul · L_stock].

    Afterwards (no grad, fp32) one prior draw moves the prior's batch-norm statistics; with ``stock_weight`` = λ_ul
    > 0 the decoder's greedy lines from that draw give the stock-line term (design §4.15). Steps optimiser 'rec'.
    Returns {'loss', 'rec', 'xw', 'ent', 'w', 'grad_norm', 'stock', 'stock_share'} (NaN without the term).
    """
    loss, terms, _ = _aus_rec_loss(model, batch, tf_ratio, tau, amp, stock_weight)
    return _rec_row(loss, terms, opt.update(model, "rec", loss))


def aus_discriminator_step(
    model: MixPoetAUS,
    batch: dict[str, Tensor],
    opt: Optimisers,
    tau: float,
    sigma: float,
    encoded: tuple[Tensor, Tensor] | None = None,
) -> float:
    """AUS step D: minimise the relativistic loss L_D = −E log σ(D(z_post, y) − D(z_prior, y)).

    The latent pair is drawn without gradients, with instance noise of std ``sigma`` (``encoded`` reuses an
    encoder pass of the batch). Steps optimiser 'dis'. Returns L_D.
    """
    with torch.no_grad():
        z_post, z_prior, y = model.latent_pair(batch, tau, sigma, encoded)
    d_loss = relativistic_d_loss(model.discriminate(z_post, y), model.discriminate(z_prior, y))
    opt.update(model, "dis", d_loss)
    return d_loss.item()


def _g_loss(
    model: MixPoetAUS, batch: dict[str, Tensor], tau: float, sigma: float, settings: TrainConfig, encoded: Any = None
) -> tuple[Tensor, dict[str, Tensor | None]]:
    """(L_G + ms × L_ms + ro × L_ro + bw × L_bow, the terms {'g_loss', 'ms', 'readout', 'bow'}; None when off).

    L_G = −E log σ(D(z_prior, y) − D(z_post, y)) on a fresh latent pair (``encoded`` reuses an encoder pass); L_ms
    the mode-seeking term of two prior draws of the same (w, y), which trains the prior alone; L_ro the read-out term
    of design §4.13 and L_bow the bag-of-words term of design §4.14, both read from the same prior and posterior
    draws. The weights are ``settings``' mode_seeking_weight, readout_weight and bow_weight (0: official, no term).
    """
    ms, ro, bw = settings.mode_seeking_weight, settings.readout_weight, settings.bow_weight
    z_post, z_prior, y = model.latent_pair(batch, tau, sigma, encoded)
    adversarial = relativistic_g_loss(model.discriminate(z_post, y), model.discriminate(z_prior, y))
    terms: dict[str, Tensor | None] = {"g_loss": adversarial, "ms": None, "readout": None, "bow": None}
    if ro > 0:
        terms["readout"] = model.readout_loss(z_prior, y) + model.readout_loss(z_post, y)
    if bw > 0:
        terms["bow"] = model.latent_bow_loss(z_prior, batch["poems"]) + model.latent_bow_loss(z_post, batch["poems"])
    if ms > 0:
        h_w = (model.encode_keyword(batch["keys"]) if encoded is None else encoded[1]).detach()
        eps = torch.randn(2 * h_w.shape[0], z_post.shape[1], device=h_w.device)
        z1, z2 = model.prior_sample(h_w, [_detach(yk) for yk in y], n=2, eps=eps).chunk(2)
        e1, e2 = eps.chunk(2)
        terms["ms"] = mode_seeking_loss(z1, z2, e1, e2)
    total = adversarial
    for key, weight in (("readout", ro), ("bow", bw), ("ms", ms)):
        term = terms[key]
        if term is not None:
            total = total + weight * term
    return total, terms


def _g_row(terms: dict[str, Tensor | None]) -> dict[str, float]:
    return {k: math.nan if v is None else v.item() for k, v in terms.items()}


@contextlib.contextmanager
def _frozen(params: list[nn.Parameter]) -> Any:
    """Switch the gradients of ``params`` off for the block (the discriminator during a G step)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def aus_generator_step(
    model: MixPoetAUS, batch: dict[str, Tensor], opt: Optimisers, tau: float, sigma: float, settings: TrainConfig
) -> dict[str, float]:
    """AUS step G: minimise L_G = −E log σ(D(z_prior, y) − D(z_post, y)) in prior, posterior and encoders
    (+ the mode-seeking, read-out and bag-of-words terms that ``settings`` weigh in, see ``_g_loss``).

    The discriminator is frozen during the step. Steps optimiser 'gen'. Returns {'g_loss': L_G, 'ms': L_ms,
    'readout': L_ro, 'bow': L_bow} (NaN without the term).
    """
    with _frozen(opt.params["dis"]):
        total, terms = _g_loss(model, batch, tau, sigma, settings)
        opt.update(model, "gen", total)
    return _g_row(terms)


def aus_encode_once_step(
    model: MixPoetAUS,
    batch: dict[str, Tensor],
    opt: Optimisers,
    settings: TrainConfig,
    tf_ratio: float,
    tau: float,
    sigmas: tuple[float, float],
) -> dict[str, float]:
    """R, ndis × D and G of one batch from a single encoder pass (``encode_once``, design §4.11).

    R's forward encodes the batch; the D steps draw their latent pairs from those codes (detached, fresh labels
    and noise each), and G's gradient is taken through the same pass, before R's update (the official code
    re-encodes the batch for every D and G step, after the previous update). Then 'rec' and 'gen' step.
    Returns R's row plus 'd_loss', 'g_loss', 'ms', 'readout' and 'bow'.
    """
    loss, terms, out = _aus_rec_loss(model, batch, tf_ratio, tau, settings.amp_bf16, settings.unlikelihood_weight)
    codes = (out["h_x"].float(), out["h_w"].float())
    detached = (codes[0].detach(), codes[1].detach())
    d_losses = [aus_discriminator_step(model, batch, opt, tau, sigmas[0], detached) for _ in range(settings.ndis)]
    with _frozen(opt.params["dis"]):
        total, g_terms = _g_loss(model, batch, tau, sigmas[1], settings, codes)
        g_grads = torch.autograd.grad(total, opt.params["gen"], retain_graph=True, allow_unused=True)
    row = _rec_row(loss, terms, opt.update(model, "rec", loss))
    opt.apply("gen", g_grads)
    return {**row, "d_loss": float(np.mean(d_losses)), **_g_row(g_terms)}


def aus_step(
    model: MixPoetAUS,
    batch: dict[str, Tensor],
    opt: Optimisers,
    settings: TrainConfig,
    counters: dict[str, Any],
    tf_ratio: float,
    diag_batch: dict[str, Tensor] | None = None,
) -> dict[str, float]:
    """One AUS batch: step R; after ``settings.rec_warm_steps`` R steps, ``settings.ndis`` D steps and one G step.

    The D steps see σ before the noise schedule advances (the official 1.0 until the first advance), the G step
    σ after it. Moves ``counters`` on; steps optimisers 'rec', 'dis' and 'gen'. Returns the log row
    {'lr_rec', 'lr_dis', 'lr_gen', 'tf_ratio', 'tau', 'sigma', 'loss', 'rec', 'xw', 'ent', 'w', 'grad_norm',
    'stock', 'stock_share', 'd_loss', 'g_loss', 'ms', 'readout', 'bow'} (+ 'diag_prior_post', 'diag_mixture',
    'diag_match', 'diag_match_rel' every ``settings.diag_every`` adversarial batches, of ``diag_batch`` when given).
    """
    t, c = settings, counters
    tau = gumbel_temperature(t, c)
    lrs = {k: opt.lr(k) for k in ("rec", "dis", "gen")}
    row: dict[str, float] = {
        "lr_rec": lrs["rec"],
        "lr_dis": math.nan,
        "lr_gen": math.nan,
        "tf_ratio": tf_ratio,
        "tau": tau,
    }
    noise_step = int(c["noise_step"])
    sigma = instance_noise(noise_step, t.noise_init, t.noise_decay_steps, started=noise_step > 0)
    sigma_g = instance_noise(noise_step + 1, t.noise_init, t.noise_decay_steps)
    adversarial = c["rec_steps"] + 1 > t.rec_warm_steps
    if adversarial and t.encode_once:
        row.update(aus_encode_once_step(model, batch, opt, t, tf_ratio, tau, (sigma, sigma_g)))
    else:
        row.update(aus_reconstruction_step(model, batch, opt, tf_ratio, tau, t.amp_bf16, t.unlikelihood_weight))
    c["rec_steps"] += 1
    row["sigma"] = sigma
    if adversarial:
        if not t.encode_once:
            d_losses = [aus_discriminator_step(model, batch, opt, tau, sigma) for _ in range(t.ndis)]
            row.update(d_loss=float(np.mean(d_losses)))
            row.update(aus_generator_step(model, batch, opt, tau, sigma_g, t))
        c["noise_step"] += 1
        row.update(lr_dis=lrs["dis"], lr_gen=lrs["gen"])
        c["adv_batches"] += 1
        if t.diag_every > 0 and (int(c["adv_batches"]) - 1) % t.diag_every == 0:
            row.update(diagnostic_row(model, batch, t, c, tau, diag_batch))
    c["tau_step"] += 1
    return row
