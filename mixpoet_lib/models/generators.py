"""Networks of the kit: the shared base of every model and the two without factors, basic / cvae (design §3).

Sizes come only from :class:`~mixpoet_lib.config.ModelConfig`. With ``E = emb_size``, ``H = hidden_size``,
``C = context_size``, ``Z = latent_size`` and ``F = factor_emb_size`` (paper values in brackets):

* h_x = 2H (1024): final states of the bidirectional GRU poem encoder;
* h_w = 2E (512): final states of the bidirectional tanh-RNN keyword encoder (E per direction);
* s0 = H − 2 − sens_num (506): decoder start vector, completed per line by the length and position one-hots;
* z = Z (256), split into one Z/2 (128) sub-space per factor.

A batch is a dict of tensors (``keys``, ``poems``, ``lines``, ``length``, ``labels``, ``label_mask``);
see :mod:`mixpoet_lib.data.batching`. Every model trains through ``forward(batch, ...)`` (returning a dict
of ingredients for :mod:`mixpoet_lib.models.losses`), and generates through the same three step-wise pieces:
``generation_init`` → ``init_decoder_state`` → ``decode_step`` (+ ``update_context`` after each line),
so a constrained beam search can live outside the models.

The building blocks (encoders, context, CBN, samplers, discriminator) are in :mod:`mixpoet_lib.models.layers`;
the factor models MixPoet-IGS and MixPoet-AUS (on :class:`PoetBase`) in :mod:`mixpoet_lib.models.factor_models`.
:class:`FBasicGenerator` is the paper's supervised style baseline fBasic: Basic with the factor labels as inputs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixpoet_lib.config import ModelConfig
from mixpoet_lib.data.vocab import BOS, EOS, PAD, UNK
from mixpoet_lib.models.layers import (
    BiRNNEncoder,
    DecodeOutput,
    GaussianHead,
    InterLineContext,
    reparameterise,
    unique_params,
)

__all__ = ["SHARED_PREFIXES", "PoetBase", "BasicGenerator", "FBasicGenerator", "CVAE"]

Batch = dict[str, Tensor]
# Sub-modules every model shares under the same names (what DAE pre-training hands on, design §4.1).
SHARED_PREFIXES = ("embed.", "encoder.", "word_encoder.", "map_x.", "decoder.", "out_proj.", "context.")

# ----------------------------------------------------------------------------------------------
# shared base: embeddings, encoders, line decoder with context
# ----------------------------------------------------------------------------------------------


class PoetBase(nn.Module):
    """Shared pieces of every model: embedding, poem/keyword encoders, line decoder, context, projection."""

    kind = "base"
    word_dropout = 0.0  # share of decoder input characters replaced by <UNK> in training (set by the trainer)

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.n_classes: tuple[int, ...] = cfg.n_classes
        e, h, c = cfg.emb_size, cfg.hidden_size, cfg.context_size
        self.hx_size, self.hw_size = 2 * h, 2 * e
        self.s0_size = h - 2 - cfg.sens_num
        if self.s0_size <= 0:
            raise ValueError(f"hidden_size {h} too small for the length and position one-hots")
        self.embed = nn.Embedding(vocab_size, e, padding_idx=PAD)
        self.encoder = BiRNNEncoder(e, h, "gru")
        self.word_encoder = BiRNNEncoder(e, e, "rnn")
        self.map_x = nn.Linear(e + c, h)
        self.decoder = nn.GRU(h, h, batch_first=True)
        self.out_proj = nn.Linear(h, vocab_size)
        self.context = InterLineContext(h, c, cfg.max_line_len + 1)
        self.dropout = nn.Dropout(cfg.drop_ratio)

    # -- encoders -------------------------------------------------------------------------------
    def encode_poem(self, poems: Tensor) -> Tensor:
        """Encode poems (B, T) → h_x (B, 2H)."""
        return self.encoder(self.dropout(self.embed(poems)), poems.ne(PAD).sum(1))

    def encode_keyword(self, keys: Tensor) -> Tensor:
        """Encode keywords (B, Kt) → h_w (B, 2E)."""
        return self.word_encoder(self.dropout(self.embed(keys)), keys.ne(PAD).sum(1))

    def encode(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Return (h_x, h_w) for a batch."""
        return self.encode_poem(batch["poems"]), self.encode_keyword(batch["keys"])

    # -- step-wise decoder pieces (also used by beam search) --------------------------------------
    def init_decoder_state(self, s0: Tensor, length: Tensor, line_idx: int) -> Tensor:
        """Return the GRU start state [s0; length one-hot; line-position one-hot] (B, H) for line ``line_idx``."""
        pos = s0.new_zeros(s0.size(0), self.cfg.sens_num)
        pos[:, line_idx] = 1.0
        return torch.cat([s0, length.to(s0.dtype), pos], dim=-1)

    def initial_context(self, batch_size: int, like: Tensor | None = None) -> Tensor:
        """Return the zero context used before line 1 (B, C)."""
        if like is not None:
            return like.new_zeros(batch_size, self.cfg.context_size)
        return torch.zeros(batch_size, self.cfg.context_size, device=self.out_proj.weight.device)

    def decode_step(self, tokens: Tensor, hidden: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """Feed one token per hypothesis: tokens (N,), hidden (N, H), context (N, C) → (logits (N, V), hidden)."""
        u = torch.tanh(self.map_x(torch.cat([self.embed(tokens), context], dim=-1)))
        out, h = self.decoder(self.dropout(u).unsqueeze(1), hidden.unsqueeze(0).contiguous())
        return self.out_proj(out[:, 0]), h[0]

    def update_context(self, context: Tensor, states: Tensor, mask: Tensor | None = None) -> Tensor:
        """Update the context (B, C) with a finished line's decoder states (B, T, H); mask marks real steps."""
        return self.context(context, states, mask)

    @torch.no_grad()
    def greedy_lines(self, s0: Tensor, length: Tensor, n_chars: Tensor, slots: int) -> Tensor:
        """Four lines from s0, the argmax character at every step: (B, S, slots) ids, <E> after ``n_chars`` (B,).

        PAD follows the <E>. ``length`` is the (B, 2) length one-hot; only the specials are excluded; dropout is off
        whatever the mode.
        """
        b, dropout = s0.size(0), self.dropout.training
        banned = torch.tensor([PAD, UNK, BOS, EOS], device=s0.device)
        steps = torch.arange(slots, device=s0.device)
        out = s0.new_full((b, self.cfg.sens_num, slots), PAD, dtype=torch.long)
        context = self.initial_context(b, like=s0)
        self.dropout.eval()
        try:
            for i in range(self.cfg.sens_num):
                h, tok, states = self.init_decoder_state(s0, length, i), s0.new_full((b,), BOS, dtype=torch.long), []
                for k in range(int(n_chars.max()) + 1):
                    logits, h = self.decode_step(tok, h, context)
                    states.append(h)
                    tok = logits.index_fill(1, banned, float("-inf")).argmax(-1)
                    out[:, i, k] = tok.masked_fill(n_chars.lt(k), PAD).masked_fill(n_chars.eq(k), EOS)
                real = steps[: len(states)].unsqueeze(0) <= n_chars.unsqueeze(1)  # <B> … last character
                context = self.update_context(context, torch.stack(states, 1), real)
        finally:
            self.dropout.train(dropout)
        return out

    # -- whole-poem decoding for training -------------------------------------------------------
    def decode(self, s0: Tensor, lines: Tensor, length: Tensor, teacher_ratio: float = 1.0) -> DecodeOutput:
        """Decode the 4 lines from s0 (B, S0) with the context chain and scheduled sampling.

        ``lines`` (B, S, Lt) holds the targets (chars + <E>, PAD after). In training mode with
        ``teacher_ratio < 1``, one Bernoulli(r) draw per line and time step decides for the whole batch
        whether the gold previous character or the argmax of the model's own previous output (no
        gradient) is fed. Eval mode is always teacher-forced. Logits are projected only at non-PAD targets.
        In training mode with ``word_dropout`` > 0 each gold input character is replaced by <UNK> with that
        probability (the targets stay).
        """
        b, n_lines, _ = lines.shape
        mask_full = lines.ne(PAD)
        steps = max(int(mask_full.sum(-1).max()), 1)
        lines, mask = lines[:, :, :steps], mask_full[:, :, :steps]
        inputs = torch.cat([lines.new_full((b, n_lines, 1), BOS), lines[:, :, :-1]], dim=-1)
        if self.training and self.word_dropout > 0:  # never <B> or padding
            drop = torch.rand(inputs.shape, device=inputs.device) < self.word_dropout
            inputs = inputs.masked_fill(drop & inputs.gt(BOS), UNK)
        e = self.cfg.emb_size
        w_emb, w_ctx = self.map_x.weight[:, :e], self.map_x.weight[:, e:]
        gold = F.linear(self.embed(inputs), w_emb)  # (B, S, T, H): embedding part of map_x, all lines at once
        teacher_forced = (not self.training) or teacher_ratio >= 1.0
        context = self.initial_context(b, like=s0)
        all_states = []
        for i in range(n_lines):
            h = self.init_decoder_state(s0, length, i).unsqueeze(0).contiguous()
            ctx = F.linear(context, w_ctx, self.map_x.bias).unsqueeze(1)  # (B, 1, H)
            use_gold = [True] * steps if teacher_forced else [True, *(torch.rand(steps - 1) < teacher_ratio).tolist()]
            pieces: list[Tensor] = []
            t = 0
            while t < steps:  # run maximal gold-fed segments through the GRU in one call
                end = t + 1
                while end < steps and use_gold[end]:
                    end += 1
                seg = gold[:, i, t:end]
                if not use_gold[t]:
                    with torch.no_grad():
                        prev = self.out_proj(pieces[-1][:, -1]).argmax(-1)
                    first = F.linear(self.embed(prev), w_emb).unsqueeze(1)
                    seg = torch.cat([first, seg[:, 1:]], dim=1)
                out, h = self.decoder(self.dropout(torch.tanh(seg + ctx)), h)
                pieces.append(out)
                t = end
            states = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
            all_states.append(states)
            if i < n_lines - 1:
                context = self.update_context(context, states, mask[:, i])
        states = torch.stack(all_states, dim=1)  # (B, S, T, H)
        return DecodeOutput(logits=self.out_proj(states[mask]), targets=lines, mask=mask)

    # -- bookkeeping -----------------------------------------------------------------------------
    def load_shared(self, state_dict: dict[str, Tensor]) -> list[str]:
        """Copy the shared encoder/decoder weights (e.g. from a DAE-trained BasicGenerator); return the keys copied."""
        own = self.state_dict()
        take = {
            k: v
            for k, v in state_dict.items()
            if k.startswith(SHARED_PREFIXES) and k in own and own[k].shape == v.shape
        }
        self.load_state_dict(take, strict=False)
        return sorted(take)

    def shared_modules(self) -> list[nn.Module]:
        """Return the modules shared by every model (embed, encoders, map_x, decoder, out_proj, context)."""
        return [self.embed, self.encoder, self.word_encoder, self.map_x, self.decoder, self.out_proj, self.context]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Return named parameter groups for the trainer's optimisers ('rec' = everything here)."""
        return {"rec": unique_params(self)}

    def generation_init(self, keys: Tensor, labels: Tensor | None = None) -> dict[str, Any]:
        """Return {'s0', 'h_w', ...} to start decoding poems for keywords (B, Kt); call in eval mode."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------
# phase-A network, the two baselines without latent and the Gaussian CVAE
# ----------------------------------------------------------------------------------------------


class BasicGenerator(PoetBase):
    """Keyword-conditioned generator without latent; with ``condition_on_poem`` it is the DAE network (phase A).

    s0 = tanh(dec_init_pre([h_x; h_w])) (design §3.2, pre-training variant); with
    ``condition_on_poem=False`` s0 = tanh(dec_init_pre(h_w)), a plain keyword-to-poem baseline that can generate.
    """

    kind = "basic"

    def __init__(self, cfg: ModelConfig, vocab_size: int, condition_on_poem: bool = True):
        super().__init__(cfg, vocab_size)
        self.condition_on_poem = condition_on_poem
        in_size = self.hw_size + (self.hx_size if condition_on_poem else 0)
        self.dec_init_pre = nn.Linear(in_size, self.s0_size)

    def decoder_s0(self, h_w: Tensor, h_x: Tensor | None = None) -> Tensor:
        """Return s0 (B, S0)."""
        if self.condition_on_poem:
            if h_x is None:
                raise ValueError("this BasicGenerator is conditioned on the poem (DAE); pass h_x")
            return torch.tanh(self.dec_init_pre(torch.cat([h_x, h_w], dim=-1)))
        return torch.tanh(self.dec_init_pre(h_w))

    def forward(self, batch: Batch, teacher_ratio: float = 1.0) -> dict[str, Any]:
        """Reconstruct the (clean) lines from the (possibly corrupted) poem and the keyword."""
        h_w = self.encode_keyword(batch["keys"])
        h_x = self.encode_poem(batch["poems"]) if self.condition_on_poem else None
        s0 = self.decoder_s0(h_w, h_x)
        return {"decode": self.decode(s0, batch["lines"], batch["length"], teacher_ratio), "h_x": h_x, "h_w": h_w}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Return {'dae': all parameters} (phase A trains everything here)."""
        params = unique_params(self)
        return {"dae": params, "rec": params}

    def generation_init(self, keys: Tensor, labels: Tensor | None = None) -> dict[str, Any]:
        """Return {'s0', 'h_w'}; only for ``condition_on_poem=False`` (a DAE needs a poem)."""
        if self.condition_on_poem:
            raise ValueError("a poem-conditioned (DAE) BasicGenerator cannot generate from keywords alone")
        h_w = self.encode_keyword(keys)
        return {"s0": self.decoder_s0(h_w), "h_w": h_w, "labels": None}


class FBasicGenerator(PoetBase):
    """fBasic (the paper's supervised style baseline): Basic whose decoder start also reads the factor labels.

    s0 = tanh(dec_init([h_w; d_1(ỹ_1); d_2(ỹ_2)])) with one embedding table per factor of K_k + 1 rows: the
    label y_k where it is known, the extra row ỹ_k = K_k ("unknown") where it is -1. No latent variable, no
    classifier: labels are inputs in training (unlabelled poems read "unknown") and requests in generation.
    """

    kind = "fbasic"

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__(cfg, vocab_size)
        f = cfg.factor_emb_size
        self.label_embed = nn.ModuleList(nn.Embedding(k + 1, f) for k in self.n_classes)  # row k = unknown
        self.dec_init = nn.Linear(self.hw_size + f * len(self.n_classes), self.s0_size)

    def label_inputs(self, labels: Tensor) -> Tensor:
        """Embedding rows (B, n_factors) of labels (B, n_factors): a known label itself, -1 → K_k ("unknown")."""
        unknown = torch.tensor(self.n_classes, dtype=labels.dtype, device=labels.device)
        return torch.where(labels.ge(0), labels, unknown)

    def decoder_s0(self, h_w: Tensor, labels: Tensor) -> Tensor:
        """Return s0 (B, S0) from the keyword h_w (B, 2E) and the labels (B, n_factors), -1 = unknown."""
        rows = self.label_inputs(labels)
        labs = [tab(rows[:, k]) for k, tab in enumerate(self.label_embed)]
        return torch.tanh(self.dec_init(torch.cat([h_w, *labs], dim=-1)))

    def forward(self, batch: Batch, teacher_ratio: float = 1.0) -> dict[str, Any]:
        """Reconstruct the lines from the keyword and the batch's labels ("unknown" where unlabelled)."""
        h_w = self.encode_keyword(batch["keys"])
        s0 = self.decoder_s0(h_w, batch["labels"])
        return {"decode": self.decode(s0, batch["lines"], batch["length"], teacher_ratio), "h_w": h_w}

    def generation_init(self, keys: Tensor, labels: Tensor | None = None) -> dict[str, Any]:
        """Return {'s0', 'h_w', 'labels'}; labels (B, n_factors) as requested, -1 or None read as "unknown"."""
        h_w = self.encode_keyword(keys)
        if labels is None:
            labels = torch.full((keys.size(0), len(self.n_classes)), -1, dtype=torch.long, device=keys.device)
        labels = labels.to(keys.device)
        return {"s0": self.decoder_s0(h_w, labels), "h_w": h_w, "labels": labels}


class CVAE(PoetBase):
    """Keyword-conditioned Gaussian CVAE: p(z|w)=N(μ_p,σ_p²), q(z|x,w)=N(μ_q,σ_q²), s0 = tanh(W[z; h_w]).

    ``bow`` adds the linear bag-of-words head z → V of the training loss (``train.bow_weight``, design §4.5).
    """

    kind = "cvae"

    def __init__(self, cfg: ModelConfig, vocab_size: int, bow: bool = False):
        super().__init__(cfg, vocab_size)
        z = cfg.latent_size
        self.prior_net = GaussianHead(self.hw_size, z, z)
        self.posterior_net = GaussianHead(self.hx_size + self.hw_size, z, z)
        self.dec_init = nn.Linear(z + self.hw_size, self.s0_size)
        self.bow = nn.Linear(z, vocab_size) if bow else None  # bag-of-words head of the training loss only

    def prior_params(self, h_w: Tensor) -> tuple[Tensor, Tensor]:
        """Return the prior (mu, logvar), each (B, Z)."""
        return self.prior_net(h_w)

    def posterior_params(self, h_x: Tensor, h_w: Tensor) -> tuple[Tensor, Tensor]:
        """Return the posterior (mu, logvar), each (B, Z)."""
        return self.posterior_net(torch.cat([h_x, h_w], dim=-1))

    def prior_sample(self, h_w: Tensor, n: int = 1, eps: Tensor | None = None) -> Tensor:
        """Return (n·B, Z) prior samples (row j·B + b belongs to item b); ``eps`` fixes the noise."""
        mu, logvar = self.prior_params(h_w.repeat(n, 1))
        return reparameterise(mu, logvar, eps)

    def posterior_sample(self, h_x: Tensor, h_w: Tensor) -> Tensor:
        """Return one reparameterised posterior sample (B, Z)."""
        return reparameterise(*self.posterior_params(h_x, h_w))

    def decoder_s0(self, z: Tensor, h_w: Tensor) -> Tensor:
        """Return s0 (B, S0)."""
        return torch.tanh(self.dec_init(torch.cat([z, h_w], dim=-1)))

    def forward(self, batch: Batch, teacher_ratio: float = 1.0) -> dict[str, Any]:
        """Return the decode output, the prior/posterior parameters (for the KL) and z."""
        h_x, h_w = self.encode(batch)
        prior, post = self.prior_params(h_w), self.posterior_params(h_x, h_w)
        z = reparameterise(*post)
        dec = self.decode(self.decoder_s0(z, h_w), batch["lines"], batch["length"], teacher_ratio)
        bow = self.bow(z) if self.bow is not None else None
        return {"decode": dec, "prior": prior, "posterior": post, "z": z, "h_x": h_x, "h_w": h_w, "bow_logits": bow}

    def generation_init(self, keys: Tensor, labels: Tensor | None = None) -> dict[str, Any]:
        """Return {'s0', 'h_w', 'z'} with z drawn from the prior."""
        h_w = self.encode_keyword(keys)
        z = self.prior_sample(h_w)
        return {"s0": self.decoder_s0(z, h_w), "h_w": h_w, "z": z, "labels": None}
