"""Loss terms and diagnostics as pure functions (design §4.4–4.6 and §4.8).

Every function takes tensors and returns a scalar tensor (or a float for the diagnostics); none
touches a model. The reconstruction loss works on the packed logits of
:class:`~mixpoet_lib.models.layers.DecodeOutput` or on full (B, S, T, V) logits.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from mixpoet_lib.config import FREE_BITS_SCOPES
from mixpoet_lib.data.vocab import N_SPECIALS, PAD

if TYPE_CHECKING:
    from mixpoet_lib.models.layers import DecodeOutput

__all__ = [
    "token_cross_entropy",
    "line_cross_entropy",
    "reconstruction_loss",
    "gaussian_kl",
    "gaussian_kl_per_item",
    "kl_share_above",
    "dimension_share_above",
    "bow_loss",
    "stock_line_mask",
    "unlikelihood_loss",
    "supervised_ce",
    "entropy_term",
    "keyword_distill_ce",
    "classifier_terms",
    "relativistic_d_loss",
    "relativistic_g_loss",
    "mode_seeking_loss",
    "fit_gaussian",
    "mahalanobis_distance",
    "symmetric_mahalanobis",
    "mean_pairwise_distance",
    "frechet_distance",
    "UNIFORM_ENTROPY_TERM",
]

# Summed entropy term at uniform q for factors of 3 and 2 classes: −(ln3/3 + ln2/2) = −0.7128 (repo log: −0.712).
UNIFORM_ENTROPY_TERM = -(math.log(3) / 3 + math.log(2) / 2)
_TINY = 1e-10
CE_CHUNK_ROWS = 256  # rows of logits per pass of token_cross_entropy (a 256 × V fp32 block is ≈ 5.7 MB)


# ----------------------------------------------------------------------------------------------
# reconstruction
# ----------------------------------------------------------------------------------------------


class _TokenCrossEntropy(torch.autograd.Function):
    """−log softmax(logits)[target] per row; the gradient softmax − onehot is formed block by block."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, logits: Tensor, targets: Tensor) -> Tensor:
        work = torch.promote_types(logits.dtype, torch.float32)  # fp32, or fp64 for gradcheck
        lse = torch.cat([torch.logsumexp(block.to(work), -1) for block in logits.split(CE_CHUNK_ROWS)])
        ctx.save_for_backward(logits, targets, lse)
        return lse - logits.gather(1, targets.unsqueeze(1)).squeeze(1).to(work)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        logits, targets, lse = ctx.saved_tensors  # type: ignore[attr-defined]
        out = torch.empty_like(logits)
        for start in range(0, logits.size(0), CE_CHUNK_ROWS):
            rows = slice(start, start + CE_CHUNK_ROWS)
            p = torch.sub(logits[rows].to(lse.dtype), lse[rows, None]).exp_()  # softmax of the block (a new tensor)
            p[torch.arange(p.size(0), device=p.device), targets[rows]] -= 1.0
            out[rows] = p.mul_(grad[rows, None])
        return out, None


def token_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-row cross-entropy −log softmax(logits)ᵢ[targetᵢ] of (N, V) logits, in fp32 whatever their dtype.

    The same numbers as ``F.cross_entropy(logits.float(), targets, reduction="none")``, computed without an fp32
    copy, a log-softmax tensor or a zero-filled gradient of the whole (N, V) matrix: log Σ exp in blocks of
    :data:`CE_CHUNK_ROWS` rows, and the gradient (softmax − one-hot) · g formed block by block in the logits' own
    dtype. For a 5,547-character vocabulary the loss had been the largest item of a training step after the
    matmuls (half the time of ``F.cross_entropy`` on bf16 logits, two thirds on fp32; README, Speed).
    """
    return _TokenCrossEntropy.apply(logits, targets)


def line_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor | None = None, pad_id: int = PAD) -> Tensor:
    """Mean over lines of each line's token cross-entropy (the reconstruction loss of every phase, design §4.6).

    For line position i, the CE is averaged over all non-PAD targets (chars and <E>) of that line in
    the batch; the 4 line values are then averaged. ``logits`` is either (B, S, T, V) or packed
    (N, V) holding only the positions where ``targets != pad_id`` in row-major order. Logits at
    PAD positions never contribute.
    """
    if mask is None:
        mask = targets.ne(pad_id)
    if logits.dim() == targets.dim() + 1:  # full logits: keep only real positions
        logits = logits[mask]
    nll = token_cross_entropy(logits, targets[mask])
    n_lines = targets.size(1)
    line_of = torch.arange(n_lines, device=targets.device).view(1, -1, 1).expand_as(targets)[mask]
    sums = torch.zeros(n_lines, device=nll.device, dtype=nll.dtype).index_add(0, line_of, nll)
    counts = mask.sum(dim=(0, 2)).to(nll.dtype)
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def reconstruction_loss(out: DecodeOutput) -> Tensor:
    """Return :func:`line_cross_entropy` of a DecodeOutput (packed logits, its targets and mask)."""
    return line_cross_entropy(out.logits, out.targets, out.mask)


# ----------------------------------------------------------------------------------------------
# Gaussian KL (CVAE / IGS baselines)
# ----------------------------------------------------------------------------------------------


def gaussian_kl_per_item(
    mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor | None = None, logvar_p: Tensor | None = None
) -> Tensor:
    """Analytic KL(N(μq, σq²) ‖ N(μp, σp²)) per dimension, same shape as the inputs (prior N(0, I) if omitted)."""
    if mu_p is None:
        mu_p = torch.zeros_like(mu_q)
    if logvar_p is None:
        logvar_p = torch.zeros_like(logvar_q)
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0)


def gaussian_kl(
    mu_q: Tensor,
    logvar_q: Tensor,
    mu_p: Tensor | None = None,
    logvar_p: Tensor | None = None,
    free_bits: float = 0.0,
    scope: str = "dimension",
) -> Tensor:
    """Batch-mean KL summed over dimensions, with free bits (Kingma et al. 2016) per dimension or per sub-space.

    ``scope="dimension"``: each dimension's batch-mean KL is floored at ``free_bits`` nats before summing, so a
    dimension below the floor gets no gradient. ``scope="subspace"``: the sum over the D dimensions is floored at
    ``free_bits × D`` instead, so the same allowance may sit on a few dimensions and, once the sum is above it,
    every dimension gets a gradient. ``free_bits=0`` is the plain analytic KL either way.
    """
    kl = gaussian_kl_per_item(mu_q, logvar_q, mu_p, logvar_p)
    per_dim = kl.reshape(-1, kl.size(-1)).mean(0)
    if free_bits <= 0:
        return per_dim.sum()
    if scope == "dimension":
        return per_dim.clamp(min=free_bits).sum()
    if scope == "subspace":
        return per_dim.sum().clamp(min=free_bits * per_dim.numel())
    raise ValueError(f"free-bits scope {scope!r}: expected one of {FREE_BITS_SCOPES}")


def kl_share_above(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor, floor: float) -> float:
    """Share of latent dimensions whose batch-mean KL exceeds ``floor`` nats: with free bits per dimension, the
    dimensions that still get a KL gradient because the posterior uses them beyond the free allowance."""
    return dimension_share_above(
        gaussian_kl_per_item(mu_q.detach(), logvar_q.detach(), mu_p.detach(), logvar_p.detach()), floor
    )


def dimension_share_above(kl: Tensor, floor: float) -> float:
    """Share of latent dimensions (last axis of the per-item, per-dimension KL ``kl``) whose mean KL over the items
    exceeds ``floor`` nats — the validation version of ``kl_above`` (design §4.5)."""
    return float(kl.detach().float().reshape(-1, kl.size(-1)).mean(0).gt(floor).float().mean())


def bow_loss(logits: Tensor, poems: Tensor) -> Tensor:
    """Bag-of-words loss (Zhao et al. 2017): predict every character of the poem from z alone, in any order.

    ``logits`` (B, V) from z, ``poems`` (B, T) ids; the mean over poems of −(1/n) Σ log softmax(logits)[c] over the
    poem's n characters (ids ≥ N_SPECIALS; PAD, UNK and the line marks are left out).
    """
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, poems)
    mask = poems.ge(N_SPECIALS).to(logp.dtype)
    return -((logp * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def stock_line_mask(lines: Tensor, keys: Tensor) -> Tensor:
    """(B, S) bool: line s of poem b also occurs, anywhere, in a poem of the batch with a different keyword.

    ``lines`` (B, S, T) character ids (PAD after the line), ``keys`` (B, K) the keyword ids of each poem. Two poems
    of the same keyword may share a line; this marks the lines a model writes whatever the keyword (design §4.15).
    Its mean is :func:`mixpoet_lib.metrics.shared_line_rate` (the evaluation's "lines shared across keywords") of the
    same poems, here on id tensors inside training.
    """
    b, s, _ = lines.shape
    flat = lines.reshape(b * s, -1)
    same_line = flat.unsqueeze(1).eq(flat.unsqueeze(0)).all(-1)  # (B·S, B·S)
    owner = torch.arange(b, device=lines.device).repeat_interleave(s)
    other_keyword = ~keys.unsqueeze(1).eq(keys.unsqueeze(0)).all(-1)[owner][:, owner]
    return (same_line & other_keyword).any(1).view(b, s)


def unlikelihood_loss(logits: Tensor, targets: Tensor, penalised: Tensor, n: int | None = None) -> Tensor:
    """Σ −log(1 − p(target)) over the ``penalised`` positions / the number of positions (Welleck et al. 2020).

    ``logits`` (N, V), ``targets`` (N,), ``penalised`` (N,) bool. Dividing by all positions (not by the penalised
    ones) lets the term fade as the penalised characters become rare; 0 when nothing is penalised. ``n`` (default N)
    is that count when the logits cover only part of the positions (those that can be penalised).
    """
    p = F.softmax(logits.float(), dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    ul = -torch.log1p(-p.clamp(max=1 - 1e-6))
    return (ul * penalised.to(ul.dtype)).sum() / max(targets.numel() if n is None else n, 1)


# ----------------------------------------------------------------------------------------------
# semi-supervised classifier terms (design §4.4)
# ----------------------------------------------------------------------------------------------


def supervised_ce(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """CE of q(y|x,w) over labelled items: Σ mask·CE / (Σ mask + 1e-10) (0 when nothing is labelled)."""
    if mask is None:
        mask = labels.ge(0).to(logits.dtype)
    ce = F.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none")
    mask = mask.to(ce.dtype)
    return (ce * mask).sum() / (mask.sum() + _TINY)


def entropy_term(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean over *unlabelled* items (mask = 0) of (1/K) Σ_c q_c log q_c; minimising it maximises H(q).

    At uniform q it equals −ln(K)/K; zero when every item is labelled.
    """
    logq = F.log_softmax(logits.float(), dim=-1)
    neg_ent = (logq.exp() * logq).sum(-1) / logits.size(-1)
    unl = 1.0 - mask.to(neg_ent.dtype)
    return (neg_ent * unl).sum() / (unl.sum() + _TINY)


def keyword_distill_ce(logits_w: Tensor, labels: Tensor) -> Tensor:
    """Batch-mean CE of p(y|w) against the combined labels (true or sampled; index (B,) or one-hot (B, K))."""
    if labels.dtype.is_floating_point:
        labels = labels.argmax(-1)
    return F.cross_entropy(logits_w.float(), labels.detach())


def classifier_terms(
    logits_xw: list[Tensor], logits_w: list[Tensor], labels: Tensor, label_mask: Tensor, combined: list[Tensor]
) -> dict[str, Tensor]:
    """Sum over factors of the three classifier terms: {'xw': Σ L_xw,k, 'ent': Σ L_ent,k, 'w': Σ L_w,k}."""
    xw = sum(supervised_ce(lx, labels[:, k], label_mask[:, k]) for k, lx in enumerate(logits_xw))
    ent = sum(entropy_term(lx, label_mask[:, k]) for k, lx in enumerate(logits_xw))
    w = sum(keyword_distill_ce(lw, yk) for lw, yk in zip(logits_w, combined))
    return {"xw": xw, "ent": ent, "w": w}  # type: ignore[dict-item]


# ----------------------------------------------------------------------------------------------
# relativistic standard GAN on the latent codes (design §4.6)
# ----------------------------------------------------------------------------------------------


def relativistic_d_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Discriminator loss −mean log σ(D(real) − D(fake)); real = posterior samples, fake = prior samples."""
    return F.softplus(-(d_real.float() - d_fake.float())).mean()


def relativistic_g_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Generator loss −mean log σ(D(fake) − D(real)) (moves prior and posterior towards each other)."""
    return F.softplus(-(d_fake.float() - d_real.float())).mean()


def mode_seeking_loss(z1: Tensor, z2: Tensor, eps1: Tensor, eps2: Tensor, floor: float = 1e-5) -> Tensor:
    """Mode-seeking term (Mao et al. 2019) of an implicit sampler z = G(ε, c): 1 / (r + floor) with
    r = mean|z1 − z2| / mean|ε1 − ε2| for two noise draws of the same conditions c. Small when different noise
    gives different codes; large when the sampler ignores its noise (mode collapse)."""
    ratio = (z1.float() - z2.float()).abs().mean() / (eps1.float() - eps2.float()).abs().mean()
    return 1.0 / (ratio + floor)


# ----------------------------------------------------------------------------------------------
# Mahalanobis diagnostics (design §4.8)
# ----------------------------------------------------------------------------------------------


def fit_gaussian(samples: Tensor, shrinkage: float = 0.1, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Return (mean, inverse covariance) of samples (n, d), the covariance shrunk towards (tr/d)·I.

    Σ_reg = (1 − s)·Σ + s·(tr Σ / d)·I + eps·I; with n ≈ 2d samples the raw inverse is very noisy.
    """
    x = samples.detach().double()
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / max(x.size(0) - 1, 1)
    d = cov.size(0)
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    cov = (1.0 - shrinkage) * cov + shrinkage * (torch.trace(cov) / d) * eye + eps * eye
    return mean, torch.linalg.inv(cov)


def mahalanobis_distance(samples: Tensor, reference: Tensor, shrinkage: float = 0.1, squared: bool = False) -> float:
    """Mean Mahalanobis distance of ``samples`` (n, d) from a Gaussian fitted to ``reference`` (m, d)."""
    mean, prec = fit_gaussian(reference, shrinkage)
    xc = samples.detach().double() - mean
    d2 = ((xc @ prec) * xc).sum(-1).clamp(min=0)
    return float((d2 if squared else d2.sqrt()).mean())


def symmetric_mahalanobis(a: Tensor, b: Tensor, shrinkage: float = 0.1, squared: bool = False) -> float:
    """Average of the two directed mean Mahalanobis distances between sample sets a and b."""
    return 0.5 * (mahalanobis_distance(a, b, shrinkage, squared) + mahalanobis_distance(b, a, shrinkage, squared))


def mean_pairwise_distance(groups: list[Tensor], shrinkage: float = 0.1, squared: bool = False) -> float:
    """Mean symmetric Mahalanobis distance over all pairs of sample groups (15 pairs for 6 mixtures)."""
    pairs = list(itertools.combinations(range(len(groups)), 2))
    if not pairs:
        return 0.0
    return sum(symmetric_mahalanobis(groups[i], groups[j], shrinkage, squared) for i, j in pairs) / len(pairs)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted (maximum likelihood) to sample sets a (n, d) and b (m, d):
    ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a^½ Σ_b Σ_a^½)^½), in squared latent units; 0 when the fits coincide."""
    x, y = a.detach().double(), b.detach().double()
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x = (x - mu_x).T @ (x - mu_x) / x.size(0)
    cov_y = (y - mu_y).T @ (y - mu_y) / y.size(0)
    vals, vecs = torch.linalg.eigh(cov_x)
    root_x = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_x @ cov_y @ root_x).clamp(min=0).sqrt().sum()
    return float((mu_x - mu_y).pow(2).sum() + torch.trace(cov_x) + torch.trace(cov_y) - 2 * cross)
