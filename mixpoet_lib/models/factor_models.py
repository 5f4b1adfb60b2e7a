"""The factor models of the kit (design §3.4–3.8): MixPoet-IGS and MixPoet-AUS on their shared base.

:class:`FactorModelBase` adds to :class:`~mixpoet_lib.models.generators.PoetBase` the per-factor classifiers
q(y_k|x,w) and p(y_k|w), label sampling (true labels where annotated, Gumbel samples elsewhere) and the
label-conditioned decoder start. :class:`MixPoetIGS` gives each factor an isotropic-Gaussian latent sub-space;
:class:`MixPoetAUS` (the paper's model) an implicit prior and posterior with a latent discriminator.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixpoet_lib.config import ModelConfig
from mixpoet_lib.data.vocab import EOS, PAD
from mixpoet_lib.models.generators import Batch, PoetBase
from mixpoet_lib.models.layers import (
    GaussianHead,
    ImplicitPosterior,
    ImplicitPrior,
    LatentDiscriminator,
    MLPClassifier,
    embed_label,
    gumbel_label_sample,
    label_index,
    reparameterise,
    unique_params,
)
from mixpoet_lib.models.losses import bow_loss, stock_line_mask, unlikelihood_loss

__all__ = ["FactorModelBase", "MixPoetIGS", "MixPoetAUS"]


class FactorModelBase(PoetBase):
    """Adds the per-factor classifiers q(y_k|x,w) (``cl_xw``) and p(y_k|w) (``cl_w``), label sampling and dec_init."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, straight_through: bool = False):
        super().__init__(cfg, vocab_size)
        self.straight_through = straight_through
        h, hx, hw, f = cfg.hidden_size, self.hx_size, self.hw_size, cfg.factor_emb_size
        d = cfg.drop_ratio
        self.cl_xw = nn.ModuleList(MLPClassifier(hx + hw, h, max(h // 4, 1), k, d) for k in self.n_classes)
        self.cl_w = nn.ModuleList(MLPClassifier(hw, max(hw // 2, 1), max(hw // 8, 1), k, d) for k in self.n_classes)
        self.factor_embed = nn.ModuleList(nn.Embedding(k, f) for k in self.n_classes)  # decoder-side d_k
        self.dec_init = nn.Linear(cfg.latent_size + hw + f * len(self.n_classes), self.s0_size)
        self.label_dropout = 0.0  # training: chance that d_k(y_k) is zeroed (set by the trainer, design §4.12)

    def set_label_dropout(self, p: float) -> None:
        """Zero each factor's decoder label embedding d_k(y_k) with chance ``p`` per poem in training (design §4.12).

        ``p`` = 1 cuts the label path for good: the embeddings are zeroed and frozen, so the decoder sees the style
        only through z, in training and at generation alike (the saved weights carry the zeros).
        """
        self.label_dropout = p
        if p >= 1:
            for tab in self.factor_embed:
                nn.init.zeros_(cast(Tensor, tab.weight)).requires_grad_(False)

    def classify_xw(self, h_x: Tensor, h_w: Tensor) -> list[Tensor]:
        """Return the logits of q(y_k|x,w) for every factor, each (B, K_k)."""
        inp = torch.cat([h_x, h_w], dim=-1)
        return [cl(inp) for cl in self.cl_xw]

    def classify_w(self, h_w: Tensor) -> list[Tensor]:
        """Return the logits of p(y_k|w) for every factor, each (B, K_k)."""
        return [cl(h_w) for cl in self.cl_w]

    def sample_labels(
        self,
        logits_xw: list[Tensor],
        labels: Tensor,
        label_mask: Tensor | None = None,
        tau: float = 1.0,
        straight_through: bool | None = None,
    ) -> list[Tensor]:
        """Combine true labels with Gumbel samples from q(y|x,w) where unlabelled (design §3.8).

        Returns one tensor per factor: Long (B,) in official mode, float one-hot (B, K) in
        straight-through mode (gradient reaches ``cl_xw`` through the unlabelled rows only).
        """
        st = self.straight_through if straight_through is None else straight_through
        if label_mask is None:
            label_mask = labels.ge(0).float()
        out = []
        for k, logits in enumerate(logits_xw):
            known = label_mask[:, k] > 0
            sample = gumbel_label_sample(logits, tau, st)
            true = labels[:, k].clamp(min=0)
            if st:
                onehot = F.one_hot(true, logits.size(-1)).to(sample.dtype)
                out.append(torch.where(known.unsqueeze(-1), onehot, sample))
            else:
                out.append(torch.where(known, true, sample))
        return out

    @staticmethod
    def label_ids(y: list[Tensor]) -> Tensor:
        """Stack per-factor labels (index or one-hot) into a Long (B, n_factors) tensor."""
        return torch.stack([label_index(yk) for yk in y], dim=-1)

    def infer_labels(self, h_w: Tensor, labels: Tensor | None = None) -> Tensor:
        """Fill labels (B, n_factors) equal to -1 (or all, if None) with argmax p(y_k|w) (design §5.1)."""
        guess = torch.stack([lg.argmax(-1) for lg in self.classify_w(h_w)], dim=-1)
        if labels is None:
            return guess
        labels = labels.to(guess.device)
        return torch.where(labels.ge(0), labels, guess)

    def decoder_s0(self, z: Tensor, h_w: Tensor, y: list[Tensor], contrast: float = 0.0) -> Tensor:
        """Return s0 = tanh(dec_init([z; h_w; d_1(y_1); d_2(y_2)])) (B, S0); d_k dropped as :meth:`set_label_dropout`.

        ``contrast`` γ > 0 (generation only, design §5.10) moves each label embedding away from its factor's mean
        embedding: d̄ + (1 + γ)(d(y) − d̄); pass a latent contrasted the same way (:meth:`contrast_latent`).
        """
        labs = [embed_label(tab, yk) for tab, yk in zip(self.factor_embed, y)]
        if self.training and 0 < self.label_dropout < 1:
            labs = [d * (torch.rand(d.size(0), 1, device=d.device) >= self.label_dropout).to(d.dtype) for d in labs]
        if contrast > 0:
            means = [cast(Tensor, tab.weight).mean(0) for tab in self.factor_embed]
            labs = [m + (1 + contrast) * (d - m) for d, m in zip(labs, means)]
        return torch.tanh(self.dec_init(torch.cat([z, h_w, *labs], dim=-1)))

    def contrast_latent(self, h_w: Tensor, y: list[Tensor], eps: Tensor, contrast: float) -> Tensor:
        """Mixture contrast of a prior draw (design §5.10): z̄ + (1 + γ)(z(y, ε) − z̄), z̄ = mean over all mixtures.

        Every mixture (y_1, y_2) is drawn with the same noise ε (B, Z), so z̄ is what a keyword's draws share and
        z(y, ε) − z̄ what the requested mixture adds; γ = 0 returns the plain prior draw z(y, ε).
        """
        z = self.prior_sample(h_w, y, eps=eps)
        if contrast <= 0:
            return z
        mixtures = list(itertools.product(*(range(k) for k in self.n_classes)))
        b = h_w.size(0)
        ids = torch.tensor(mixtures, dtype=torch.long, device=h_w.device).repeat_interleave(b, dim=0)  # (M·B, F)
        every = self.prior_sample(h_w.repeat(len(mixtures), 1), self._split(ids), eps=eps.repeat(len(mixtures), 1))
        z_bar = every.view(len(mixtures), b, -1).mean(0)
        return z_bar + (1 + contrast) * (z - z_bar)

    def classifier_groups(self) -> dict[str, list[nn.Parameter]]:
        """Return {'cl1': ..., 'cl2': ...}: embed, encoders and factor k's two classifiers (phases B1/B2)."""
        base = (self.embed, self.encoder, self.word_encoder)
        return {f"cl{k + 1}": unique_params(*base, self.cl_w[k], self.cl_xw[k]) for k in range(len(self.n_classes))}

    def generation_init(self, keys: Tensor, labels: Tensor | None = None) -> dict[str, Any]:
        """Return {'s0', 'h_w', 'labels', 'z'}: labels -1 / None inferred from p(y|w), one prior sample per keyword."""
        h_w = self.encode_keyword(keys)
        ids = self.infer_labels(h_w, labels)
        y = self._split(ids)
        z = self.prior_sample(h_w, y)
        return {"s0": self.decoder_s0(z, h_w, y), "h_w": h_w, "labels": ids, "z": z}

    def prior_sample(self, h_w: Tensor, y: list[Tensor], n: int = 1, eps: Tensor | None = None) -> Tensor:
        """Return (n·B, Z) prior samples (row j·B + b belongs to item b); defined by IGS and AUS."""
        raise NotImplementedError

    def _split(self, labels: Tensor) -> list[Tensor]:
        return [labels[:, k] for k in range(labels.size(1))]


class MixPoetIGS(FactorModelBase):
    """Mixed latent space with one isotropic-Gaussian sub-space per factor, trained as a semi-supervised CVAE (M2).

    Prior of sub-space k: N(μ, σ²) from [h_w; a_k(y_k)]; posterior: from [h_x; h_w; b_k(y_k)]. ``bow`` adds the
    bag-of-words head z → V of the training loss (``train.bow_weight``; the paper's IG has one, design §4.5).
    """

    kind = "igs"

    def __init__(self, cfg: ModelConfig, vocab_size: int, straight_through: bool = False, bow: bool = False):
        super().__init__(cfg, vocab_size, straight_through)
        sub, f, z = cfg.latent_size // len(self.n_classes), cfg.factor_emb_size, cfg.latent_size
        self.sub_size = sub
        self.bow = nn.Linear(z, vocab_size) if bow else None  # bag-of-words head of the training loss only
        self.prior_label_embed = nn.ModuleList(nn.Embedding(k, f) for k in self.n_classes)
        self.post_label_embed = nn.ModuleList(nn.Embedding(k, f) for k in self.n_classes)
        self.prior_heads = nn.ModuleList(GaussianHead(self.hw_size + f, z, sub) for _ in self.n_classes)
        self.post_heads = nn.ModuleList(GaussianHead(self.hx_size + self.hw_size + f, z, sub) for _ in self.n_classes)

    def prior_params(self, h_w: Tensor, y: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Return [(mu, logvar)] per factor sub-space, each (B, Z/2)."""
        return [
            head(torch.cat([h_w, embed_label(tab, yk)], dim=-1))
            for head, tab, yk in zip(self.prior_heads, self.prior_label_embed, y)
        ]

    def posterior_params(self, h_x: Tensor, h_w: Tensor, y: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Return [(mu, logvar)] of q(z_k|x,w,y_k) per factor, each (B, Z/2)."""
        return [
            head(torch.cat([h_x, h_w, embed_label(tab, yk)], dim=-1))
            for head, tab, yk in zip(self.post_heads, self.post_label_embed, y)
        ]

    def prior_sample(self, h_w: Tensor, y: list[Tensor], n: int = 1, eps: Tensor | None = None) -> Tensor:
        """Return (n·B, Z) prior samples (row j·B + b belongs to item b); ``eps`` (n·B, Z) fixes the noise."""
        h_w, y = h_w.repeat(n, 1), [yk.repeat(n, *([1] * (yk.dim() - 1))) for yk in y]
        parts = eps.split(self.sub_size, dim=-1) if eps is not None else [None] * len(y)
        return torch.cat([reparameterise(mu, lv, e) for (mu, lv), e in zip(self.prior_params(h_w, y), parts)], dim=-1)

    def posterior_sample(self, h_x: Tensor, h_w: Tensor, y: list[Tensor]) -> Tensor:
        """Return one reparameterised posterior sample (B, Z)."""
        return torch.cat([reparameterise(mu, lv) for mu, lv in self.posterior_params(h_x, h_w, y)], dim=-1)

    def forward(self, batch: Batch, teacher_ratio: float = 1.0, tau: float = 1.0) -> dict[str, Any]:
        """Return decode output, classifier logits, combined labels, per-factor prior/posterior parameters and z."""
        h_x, h_w = self.encode(batch)
        lx, lw = self.classify_xw(h_x, h_w), self.classify_w(h_w)
        y = self.sample_labels(lx, batch["labels"], batch.get("label_mask"), tau)
        prior, post = self.prior_params(h_w, y), self.posterior_params(h_x, h_w, y)
        z = torch.cat([reparameterise(mu, lv) for mu, lv in post], dim=-1)
        dec = self.decode(self.decoder_s0(z, h_w, y), batch["lines"], batch["length"], teacher_ratio)
        return {
            "decode": dec,
            "logits_xw": lx,
            "logits_w": lw,
            "labels": y,
            "label_ids": self.label_ids(y),
            "prior": prior,
            "posterior": post,
            "z": z,
            "h_x": h_x,
            "h_w": h_w,
            "bow_logits": self.bow(z) if self.bow is not None else None,
        }

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Return {'rec': all, 'cl1', 'cl2'}."""
        return {"rec": unique_params(self), **self.classifier_groups()}


class MixPoetAUS(FactorModelBase):
    """MixPoet-AUS (the paper's model): implicit CBN prior per factor, implicit posterior, latent discriminator.

    Training (design §4.6): ``forward`` gives the reconstruction/classifier ingredients with z = z_post;
    ``latent_pair`` gives (z_post, z_prior, labels) for the discriminator and generator steps.
    """

    kind = "aus"

    def __init__(
        self,
        cfg: ModelConfig,
        vocab_size: int,
        straight_through: bool = False,
        readout: bool = False,
        bow: bool = False,
    ):
        super().__init__(cfg, vocab_size, straight_through)
        self.prior = ImplicitPrior(cfg, self.hw_size, self.n_classes)
        self.posterior = ImplicitPosterior(cfg, self.hx_size, self.hw_size, self.n_classes)
        self.discriminator = LatentDiscriminator(cfg, self.n_classes)
        sub = self.prior.sub_size  # ``readout``: linear heads z_k → y_k of the training term train.readout_weight
        self.readout = nn.ModuleList(nn.Linear(sub, k) for k in self.n_classes) if readout else None
        self.bow = nn.Linear(cfg.latent_size, vocab_size) if bow else None  # ``bow``: z → V of train.bow_weight

    def readout_loss(self, z: Tensor, y: list[Tensor]) -> Tensor:
        """Σ_k cross-entropy of y_k read back from its own sub-space z_k by a linear head (design §4.13).

        ``y`` holds indices or (Gumbel) one-hot rows; needs a model built with ``readout``.
        """
        if self.readout is None:
            raise ValueError("readout_loss needs a MixPoetAUS built with readout=True (train.readout_weight > 0)")
        total = z.new_zeros((), dtype=torch.float32)
        for head, zk, yk in zip(self.readout, z.split(self.prior.sub_size, dim=-1), y):
            logp = F.log_softmax(head(zk).float(), dim=-1)
            soft = yk.is_floating_point()
            total = total + (-(yk.float() * logp).sum(-1).mean() if soft else F.nll_loss(logp, yk))
        return total

    def term_heads(self) -> tuple[nn.Module | None, ...]:
        """The training-only heads of G's extra terms (read-out, bag-of-words); None where the model has none."""
        return (self.readout, self.bow)

    def latent_bow_loss(self, z: Tensor, poems: Tensor) -> Tensor:
        """The bag-of-words loss of the poem's characters predicted from a latent draw z alone (design §4.14).

        Needs a model built with ``bow``.
        """
        if self.bow is None:
            raise ValueError("latent_bow_loss needs a MixPoetAUS built with bow=True (train.bow_weight > 0)")
        return bow_loss(self.bow(z), poems)

    def greedy_stock_lines(self, s0: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """(greedy lines (B, S, T), stock mask (B, S)): each poem of the batch written greedily from s0 at its own line
        length (no gradient), and the lines that a poem of another keyword in the batch also got (design §4.15)."""
        n_chars = batch["lines"][:, 0].ne(PAD).sum(-1) - 1
        lines = self.greedy_lines(s0.detach(), batch["length"], n_chars, batch["lines"].size(-1))
        return lines, stock_line_mask(lines, batch["keys"])

    def stock_line_loss(self, z: Tensor, h_w: Tensor, y: list[Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
        """(unlikelihood of the stock lines, their share) for the decoder started from prior draws z (design §4.15).

        The greedy poems and their stock lines of :meth:`greedy_stock_lines`; returns :func:`unlikelihood_loss` of
        the stock lines' characters under the teacher-forced decoder (gradient into s0's inputs and the decoder),
        with the share of stock lines. Only the poems with a stock line are decoded again (the others add nothing);
        the sum is still divided by the characters of the whole batch.
        """
        s0 = self.decoder_s0(z, h_w, y)
        lines, stock = self.greedy_stock_lines(s0, batch)
        rows = stock.any(1)
        if not bool(rows.any()):
            return s0.new_zeros(()), stock.float().mean()
        dec = self.decode(s0[rows], lines[rows], batch["length"][rows])
        penalised = (stock[rows].unsqueeze(-1) & dec.targets.ne(EOS))[dec.mask]
        n_all = int(lines.ne(PAD).sum())
        return unlikelihood_loss(dec.logits, dec.targets[dec.mask], penalised, n_all), stock.float().mean()

    def prior_sample(self, h_w: Tensor, y: list[Tensor], n: int = 1, eps: Tensor | None = None) -> Tensor:
        """Return (n·B, Z) prior samples (row j·B + b belongs to item b); BN uses batch stats in train mode."""
        if n > 1:
            h_w = h_w.repeat(n, 1)
            y = [yk.repeat(n, *([1] * (yk.dim() - 1))) for yk in y]
        return self.prior(h_w, y, eps)

    def posterior_sample(self, h_x: Tensor, h_w: Tensor, y: list[Tensor], eps: Tensor | None = None) -> Tensor:
        """Return one posterior sample z_post (B, Z)."""
        return self.posterior(h_x, h_w, y, eps)

    def discriminate(self, z: Tensor, y: list[Tensor]) -> Tensor:
        """Return the discriminator scores D(z, y1, y2) (B,)."""
        return self.discriminator(z, y)

    def forward(
        self, batch: Batch, teacher_ratio: float = 1.0, tau: float = 1.0, update_prior_stats: bool = True
    ) -> dict[str, Any]:
        """Reconstruction/classifier step ingredients (design §4.6, step R): decode from z_post.

        With ``update_prior_stats`` the prior is also run (no gradient) so its BN/CBN running
        statistics follow training, as in the official step; the sample is returned as 'z_prior'.
        """
        h_x, h_w = self.encode(batch)
        lx, lw = self.classify_xw(h_x, h_w), self.classify_w(h_w)
        y = self.sample_labels(lx, batch["labels"], batch.get("label_mask"), tau)
        z_post = self.posterior_sample(h_x, h_w, y)
        z_prior = None
        if update_prior_stats and self.training:
            with torch.no_grad():
                z_prior = self.prior_sample(h_w.detach(), [yk.detach() for yk in y])
        dec = self.decode(self.decoder_s0(z_post, h_w, y), batch["lines"], batch["length"], teacher_ratio)
        return {
            "decode": dec,
            "logits_xw": lx,
            "logits_w": lw,
            "labels": y,
            "label_ids": self.label_ids(y),
            "z_post": z_post,
            "z_prior": z_prior,
            "h_x": h_x,
            "h_w": h_w,
        }

    def latent_pair(
        self, batch: Batch, tau: float = 1.0, noise_std: float = 0.0, encoded: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Return (z_post + n, z_prior + n′, labels) for the adversarial steps (labels re-sampled each call).

        Run it under ``torch.no_grad()`` for the discriminator step and with gradients for the generator step.
        ``encoded`` = (h_x, h_w) skips the encoders (the discriminator steps can share one no-grad pass).
        """
        h_x, h_w = self.encode(batch) if encoded is None else encoded
        y = self.sample_labels(self.classify_xw(h_x, h_w), batch["labels"], batch.get("label_mask"), tau)
        z_post = self.posterior_sample(h_x, h_w, y)
        z_prior = self.prior_sample(h_w, y)
        if noise_std > 0:
            z_post = z_post + noise_std * torch.randn_like(z_post)
            z_prior = z_prior + noise_std * torch.randn_like(z_prior)
        return z_post, z_prior, y

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups of design §4.6: 'rec' (R), 'gen' (G), 'dis' (D) and 'cl1'/'cl2' (phases B1/B2)."""
        rec = unique_params(
            self.embed,
            self.encoder,
            self.decoder,
            self.word_encoder,
            self.cl_xw,
            self.cl_w,
            self.factor_embed,
            self.posterior,
            self.out_proj,
            self.dec_init,
            self.context,
            self.map_x,
        )
        gen = unique_params(self.prior, self.posterior, self.encoder, self.word_encoder, self.embed, *self.term_heads())
        return {"rec": rec, "gen": gen, "dis": unique_params(self.discriminator), **self.classifier_groups()}
