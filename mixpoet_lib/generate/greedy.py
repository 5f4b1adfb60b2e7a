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
from mixpoet_lib.data.vocab import Vocab
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
    with eval_mode(model):
        ids = model.greedy_lines(s0, length_oh, torch.tensor([length], device=gen.device), length + 1)
    return ["".join(gen.tokens[t] for t in line[:length].tolist()) for line in ids[0]]
