"""Building blocks of the generators (design §3): encoders, the inter-line context, class-conditional batch norm,
Gaussian heads, the implicit prior/posterior samplers and the latent discriminator, plus label helpers.

Labels for one factor travel either as a Long index tensor ``(B,)`` or as a float one-hot / relaxed tensor
``(B, K)`` (straight-through mode); :func:`embed_label` accepts both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from mixpoet_lib.config import ModelConfig

__all__ = [
    "LRELU_SLOPE",
    "DecodeOutput",
    "BiRNNEncoder",
    "InterLineContext",
    "ConditionalBatchNorm",
    "MLPClassifier",
    "GaussianHead",
    "ImplicitPriorBranch",
    "ImplicitPrior",
    "ImplicitPosterior",
    "LatentDiscriminator",
    "embed_label",
    "label_index",
    "gumbel_label_sample",
    "count_parameters",
    "unique_params",
    "reparameterise",
]

LRELU_SLOPE = 0.2

# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def embed_label(table: nn.Module, y: Tensor) -> Tensor:
    """Look a label up in an embedding table: Long index (B,) → row, float (B, K) one-hot → y @ W.

    ``table`` is an :class:`torch.nn.Embedding` (typed as a Module: it comes out of an ``nn.ModuleList``).
    """
    if y.dtype.is_floating_point:
        return y @ cast(Tensor, table.weight)
    return table(y)


def label_index(y: Tensor) -> Tensor:
    """Return the integer label (B,) of an index or one-hot label tensor."""
    return y.argmax(-1) if y.dtype.is_floating_point else y


def gumbel_label_sample(logits: Tensor, tau: float, straight_through: bool) -> Tensor:
    """Draw a label from softmax(logits) with the Gumbel trick.

    ``straight_through=False`` (official, design §3.8): argmax of Gumbel-perturbed logits as a Long index,
    so neither τ nor any gradient matters. ``True``: hard one-hot forward, softmax((l+g)/τ) gradient backward.
    """
    gumbel = -torch.empty_like(logits).exponential_().log()
    if not straight_through:
        with torch.no_grad():
            return (logits + gumbel).argmax(-1)
    soft = F.softmax((logits + gumbel) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(-1), logits.size(-1)).to(soft.dtype)
    return hard - soft.detach() + soft


def count_parameters(module: nn.Module) -> int:
    """Return the number of trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def unique_params(*modules: nn.Module | None) -> list[nn.Parameter]:
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for mod in (m for m in modules if m is not None):  # None: an optional module the model was built without
        for p in mod.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


@dataclass
class DecodeOutput:
    """Decoder result: logits only at non-PAD target positions (row-major over batch, line, time)."""

    logits: Tensor  # (N, V), N = mask.sum()
    targets: Tensor  # (B, S, T) gold line tokens, trimmed to the batch's longest line + 1
    mask: Tensor  # (B, S, T) bool, True where the target is not PAD

    def full_logits(self) -> Tensor:
        """Return (B, S, T, V) logits with zeros at PAD positions (for inspection; costs memory)."""
        out = self.logits.new_zeros(*self.mask.shape, self.logits.size(-1))
        out[self.mask] = self.logits
        return out


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------


class BiRNNEncoder(nn.Module):
    """One-layer bidirectional GRU or tanh RNN over padded embeddings; returns [last fwd; last bwd].

    The two directions run as two one-directional passes over the *padded* batch (the backward one over each
    sequence reversed within its length) instead of one pass over a packed sequence: the same function (the
    state at a sequence's last real token never sees its padding), but torch's CPU backward of a packed RNN
    zero-fills the whole packed input gradient once per time step, which cost about a fifth of a full-size
    mixture step (design §4.11). The parameters are those of one bidirectional ``nn.GRU``/``nn.RNN`` (``self.rnn``).
    """

    def __init__(self, input_size: int, hidden_size: int, cell: str = "gru"):
        super().__init__()
        rnn_cls = {"gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = rnn_cls(input_size, hidden_size, batch_first=True, bidirectional=True)
        self.hidden_size = hidden_size
        # a parameter-less one-direction twin, called with the forward or the reverse weights of self.rnn
        self._one_way = (rnn_cls(input_size, hidden_size, batch_first=True, device="meta"),)

    def _direction(self, emb: Tensor, suffix: str) -> Tensor:
        """Run one direction's weights (``suffix`` '' or '_reverse') over (B, T, in) → outputs (B, T, H)."""
        names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        weights = {n: getattr(self.rnn, n + suffix) for n in names}
        out, _ = torch.func.functional_call(self._one_way[0], weights, (emb,))
        return cast(Tensor, out)

    def forward(self, emb: Tensor, lengths: Tensor) -> Tensor:
        """Encode (B, T, in) with true lengths (B,) → (B, 2·hidden)."""
        t = emb.size(1)
        lengths = lengths.to(emb.device, torch.int64).clamp(1, t)
        pos = torch.arange(t, device=emb.device).unsqueeze(0)  # (1, T)
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, self.hidden_size)
        # index t of the reversed sequence holds token len−1−t (padding stays where it is)
        flip = torch.where(pos < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - pos, pos)
        reversed_emb = emb.gather(1, flip.unsqueeze(-1).expand_as(emb))
        fwd = self._direction(emb, "").gather(1, last).squeeze(1)
        bwd = self._direction(reversed_emb, "_reverse").gather(1, last).squeeze(1)
        return torch.cat([fwd, bwd], dim=-1)


class InterLineContext(nn.Module):
    """Inter-line context (design §3.3): Conv1d over the previous line's decoder states, mean, gated update.

    States at PAD targets are zeroed and the sequence is zero-padded to ``window`` (= max_line_len + 1 = 8)
    both in training and generation (fix of the official 6-vs-8 padding, design §3.3).
    """

    def __init__(self, hidden_size: int, context_size: int, window: int):
        super().__init__()
        self.conv = nn.Conv1d(hidden_size, context_size, kernel_size=3)
        self.update = nn.Linear(2 * context_size, context_size)
        self.window = window
        self.context_size = context_size

    def forward(self, context: Tensor, states: Tensor, mask: Tensor | None = None) -> Tensor:
        """Return the new context (B, C) from the old one (B, C) and a line's states (B, T, H)."""
        if mask is not None:
            states = states * mask.unsqueeze(-1).to(states.dtype)
        if states.size(1) < self.window:
            states = F.pad(states, (0, 0, 0, self.window - states.size(1)))
        return torch.tanh(self.update(torch.cat([context, self.features(states)], dim=-1)))

    def features(self, states: Tensor) -> Tensor:
        """mean_t tanh(conv(states))_t (B, C): the convolution as one matmul over the stacked 3-step windows.

        The same function as ``self.conv`` (the weights stay the Conv1d's), but torch's CPU convolution backward
        for these shapes was 2–3× slower than the matmul's.
        """
        k, n = self.conv.kernel_size[0], states.size(1) - self.conv.kernel_size[0] + 1
        windows = torch.cat([states[:, i : i + n] for i in range(k)], dim=-1)  # (B, T-k+1, k·H)
        weight = self.conv.weight.permute(0, 2, 1).reshape(self.conv.out_channels, -1)  # (C, k·H), tap-major
        return torch.tanh(F.linear(windows, weight, self.conv.bias)).mean(dim=1)


class ConditionalBatchNorm(nn.Module):
    """Class-conditional batch norm: BN without affine, then scale γ+Δγ[y] and shift β+Δβ[y].

    The normalisation is a standard :class:`nn.BatchNorm1d` (biased batch variance, momentum 0.1,
    running statistics as plain buffers updated without autograd; design §3.5). Init γ=1, Δγ=1, β=Δβ=0.
    """

    def __init__(self, num_features: int, num_classes: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, affine=False, momentum=momentum, eps=eps)
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.delta_gamma = nn.Embedding(num_classes, num_features)
        self.delta_beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.delta_gamma.weight)
        nn.init.zeros_(self.delta_beta.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Normalise x (B, n) and apply the label-dependent affine map."""
        scale = self.gamma + embed_label(self.delta_gamma, y)
        shift = self.beta + embed_label(self.delta_beta, y)
        return self.bn(x) * scale + shift


class MLPClassifier(nn.Sequential):
    """Two hidden ReLU layers with dropout after each, then raw logits (design §3.4)."""

    def __init__(self, in_size: int, hidden1: int, hidden2: int, n_classes: int, dropout: float):
        super().__init__(
            nn.Linear(in_size, hidden1),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden1, hidden2),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden2, n_classes),
        )


class GaussianHead(nn.Module):
    """MLP → (mean, log-variance) of a diagonal Gaussian (used by the CVAE and IGS baselines)."""

    def __init__(self, in_size: int, hidden: int, out_size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_size, hidden), nn.Tanh(), nn.Linear(hidden, 2 * out_size))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (mu, logvar), each (B, out_size)."""
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar


def reparameterise(mu: Tensor, logvar: Tensor, eps: Tensor | None = None) -> Tensor:
    return mu + (torch.randn_like(mu) if eps is None else eps) * torch.exp(0.5 * logvar)


class ImplicitPriorBranch(nn.Module):
    """One factor's implicit prior sampler: [ε; h_w; a(y)] → Lin-CBN-LReLU ×2 → Lin-BN (design §3.5)."""

    def __init__(self, noise_size: int, cond_size: int, label_size: int, n_classes: int, hidden: int, out_size: int):
        super().__init__()
        self.noise_size = noise_size
        self.label_embed = nn.Embedding(n_classes, label_size)
        self.fc1 = nn.Linear(noise_size + cond_size + label_size, hidden)
        self.cbn1 = ConditionalBatchNorm(hidden, n_classes)
        self.fc2 = nn.Linear(hidden, hidden)
        self.cbn2 = ConditionalBatchNorm(hidden, n_classes)
        self.fc3 = nn.Linear(hidden, out_size)
        self.bn = nn.BatchNorm1d(out_size)

    def forward(self, eps: Tensor, h_w: Tensor, y: Tensor) -> Tensor:
        """Map noise (B, noise), keyword (B, h_w) and label (index or one-hot) to z^(k) (B, out)."""
        h = self.fc1(torch.cat([eps, h_w, embed_label(self.label_embed, y)], dim=-1))
        h = F.leaky_relu(self.cbn1(h, y), LRELU_SLOPE)
        h = F.leaky_relu(self.cbn2(self.fc2(h), y), LRELU_SLOPE)
        return self.bn(self.fc3(h))


class ImplicitPrior(nn.Module):
    """The mixed-latent prior p(z|w,y): one implicit branch per factor, outputs concatenated."""

    def __init__(self, cfg: ModelConfig, cond_size: int, n_classes: tuple[int, ...]):
        super().__init__()
        sub = cfg.latent_size // len(n_classes)
        self.branches = nn.ModuleList(
            ImplicitPriorBranch(sub, cond_size, cfg.factor_emb_size, k, cfg.latent_size, sub) for k in n_classes
        )
        self.sub_size = sub

    def forward(self, h_w: Tensor, y: list[Tensor], eps: Tensor | None = None) -> Tensor:
        """Return z (B, Z); eps (B, Z) may be given for reproducibility (split per factor)."""
        if eps is None:
            eps = h_w.new_empty(h_w.size(0), self.sub_size * len(self.branches)).normal_()
        parts = eps.split(self.sub_size, dim=-1)
        return torch.cat([br(e, h_w, yk) for br, e, yk in zip(self.branches, parts, y)], dim=-1)


class ImplicitPosterior(nn.Module):
    """Implicit posterior q(z|x,w,y): [h_x; h_w; b1(y1); b2(y2); ε] → 3-layer LReLU MLP (design §3.6)."""

    def __init__(self, cfg: ModelConfig, hx_size: int, hw_size: int, n_classes: tuple[int, ...]):
        super().__init__()
        z, f = cfg.latent_size, cfg.factor_emb_size
        self.label_embed = nn.ModuleList(nn.Embedding(k, f) for k in n_classes)
        self.net = nn.Sequential(
            nn.Linear(hx_size + hw_size + f * len(n_classes) + z, cfg.hidden_size),
            nn.LeakyReLU(LRELU_SLOPE),
            nn.Linear(cfg.hidden_size, z),
            nn.LeakyReLU(LRELU_SLOPE),
            nn.Linear(z, z),
        )
        self.noise_size = z

    def forward(self, h_x: Tensor, h_w: Tensor, y: list[Tensor], eps: Tensor | None = None) -> Tensor:
        """Return z_post (B, Z)."""
        if eps is None:
            eps = h_x.new_empty(h_x.size(0), self.noise_size).normal_()
        labs = [embed_label(tab, yk) for tab, yk in zip(self.label_embed, y)]
        return self.net(torch.cat([h_x, h_w, *labs, eps], dim=-1))


class LatentDiscriminator(nn.Module):
    """Spectral-normalised projection discriminator D(z, y1, y2) (design §3.7).

    φ(z) = 3 SN-Linear+LReLU(0.2) layers Z → Z → nF → nF; score = SN-Linear(φ) + ⟨φ, [e1(y1); e2(y2)]⟩,
    with n = number of factors (so nF = 128 = Z/2 at paper sizes). Spectral norm uses 3 power iterations
    per training-mode forward pass.
    """

    def __init__(self, cfg: ModelConfig, n_classes: tuple[int, ...], n_power_iterations: int = 3):
        super().__init__()
        z, f = cfg.latent_size, cfg.factor_emb_size
        feat = f * len(n_classes)

        def sn(m: nn.Module) -> nn.Module:
            return spectral_norm(m, n_power_iterations=n_power_iterations)

        self.fc1, self.fc2, self.fc3 = sn(nn.Linear(z, z)), sn(nn.Linear(z, feat)), sn(nn.Linear(feat, feat))
        self.out = sn(nn.Linear(feat, 1))
        self.label_embed = nn.ModuleList(sn(nn.Embedding(k, f)) for k in n_classes)

    def features(self, z: Tensor) -> Tensor:
        """Return φ(z) (B, nF)."""
        h = F.leaky_relu(self.fc1(z), LRELU_SLOPE)
        h = F.leaky_relu(self.fc2(h), LRELU_SLOPE)
        return F.leaky_relu(self.fc3(h), LRELU_SLOPE)

    def forward(self, z: Tensor, y: list[Tensor]) -> Tensor:
        """Return the scores (B,)."""
        phi = self.features(z)
        proj = torch.cat([embed_label(tab, yk) for tab, yk in zip(self.label_embed, y)], dim=-1)
        return self.out(phi).squeeze(-1) + (phi * proj).sum(-1)
