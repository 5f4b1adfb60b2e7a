"""Greedy decoding without constraints: what a network writes unaided (a first look at a model, notebooks 02–04).

Only the special tokens are banned; the latent sample, the inferred labels and the inter-line context chain are
those of :meth:`~mixpoet_lib.generate.generator.Generator.generate` (same seed → same latent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mixpoet_lib.config import GenConfig
from mixpoet_lib.data.rhythm import ToneRhyme
from mixpoet_lib.data.vocab import BOS, EOS, PAD, UNK, Vocab
from mixpoet_lib.generate.constraints import N_LINES
from mixpoet_lib.generate.generator import Generator
from mixpoet_lib.generate.poems import eval_mode
from mixpoet_lib.models.generators import PoetBase

__all__ = ["greedy_decode"]


def greedy_decode(
    model: PoetBase, vocab: Vocab | Sequence[str], keyword: str, length: int, labels: Any = (-1, -1), seed: int = 0
) -> list[str]:
    """Four lines of exactly ``length`` characters, each the argmax character at every step.

    No tone, rhyme or repetition constraint; only specials are excluded (UNK, PAD, <B>, and <E> before
    the line is full). The latent sample and inferred labels are drawn as in :meth:`Generator.generate`
    (same seed → same latent), and the context chain is the same. Shows what the network writes unaided.
    """
    gen = Generator(
        model, vocab, ToneRhyme.from_strings("", ""), None, GenConfig(beam_size=1), repetition_rule="intended"
    )
    s0, length_oh = gen.decoder_start([keyword], length, labels, 1, seed)
    banned = torch.tensor([PAD, UNK, BOS, EOS], device=gen.device)
    lines: list[str] = []
    with eval_mode(model):
        ctx = model.initial_context(1, like=s0)
        for i in range(N_LINES):
            h = model.init_decoder_state(s0, length_oh, i)
            tok = torch.full((1,), BOS, dtype=torch.long, device=gen.device)
            hs, ids = [], []
            for k in range(length + 1):
                logits, h = model.decode_step(tok, h, ctx)
                hs.append(h)
                if k == length:
                    break
                tok = logits.index_fill(1, banned, float("-inf")).argmax(-1)
                ids.append(int(tok))
            states = torch.stack(hs, 1)
            mask = torch.ones(1, states.size(1), dtype=torch.bool, device=gen.device)
            ctx = model.update_context(ctx, states, mask)
            lines.append("".join(gen.tokens[t] for t in ids))
    return lines
