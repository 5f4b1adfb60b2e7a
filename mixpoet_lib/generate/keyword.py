"""Keyword placement in the beam search [kit choice, design §5.8].

MixPoet conditions the decoder on the keyword only through the start state and the prior; the paper scores
relevance by human judgement. A tutorial-size model reads the keyword too weakly for it to show in the text
(2 % of the published tutorial AUS poems contained their keyword), so the search can add a constant
``bonus`` (in nats) to the log-probability of the keyword's *next* character until the poem holds the whole
keyword: its first character, or, when a line under way already ends with the keyword's first j characters,
its character j + 1. Once an earlier line or the hypothesis itself holds the keyword, nothing is added. The
bonus is a soft preference (every ban still applies, the model may still prefer other characters), the same
for every system, and 0 switches it off (the official search).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mixpoet_lib.data.vocab import Vocab

__all__ = ["KeywordBonus"]


@dataclass(frozen=True)
class KeywordBonus:
    """The keyword bonus of n items (rows of a beam search), see the module docstring."""

    ids: Tensor  # (n, K) keyword character ids, -1 after the keyword's end
    lens: Tensor  # (n,) keyword length
    need: Tensor  # (n,) bool: the item's earlier lines do not hold its keyword
    bonus: float

    @classmethod
    def build(
        cls,
        vocab: Vocab,
        keywords: Sequence[str],
        earlier_lines: Sequence[Sequence[str]],
        bonus: float,
        device: torch.device | str = "cpu",
    ) -> KeywordBonus | None:
        """The bonus for items with these keywords and earlier lines; None when ``bonus`` is 0."""
        if bonus == 0:
            return None
        width = max(len(k) for k in keywords)
        ids = torch.full((len(keywords), width), -1, dtype=torch.long)
        for i, kw in enumerate(keywords):
            ids[i, : len(kw)] = torch.tensor(vocab.encode(kw))
        need = [kw not in "".join(lines) for kw, lines in zip(keywords, earlier_lines)]
        lens = torch.tensor([len(k) for k in keywords])
        return cls(ids.to(device), lens.to(device), torch.tensor(need, device=device), float(bonus))

    def add_to_(self, scores: Tensor, hist: Tensor, item_of: Tensor) -> Tensor:
        """Add the bonus in place to ``scores`` (rows, V) of the next position of each hypothesis ``[<B>, c1 … ck]``:
        at most one character per row, the keyword's next one. Returns ``scores``."""
        kw, kl = self.ids[item_of], self.lens[item_of]
        rows, t = hist.shape
        width = kw.size(1)
        padded = torch.cat([hist, hist.new_full((rows, width), -2)], 1)
        windows = padded.unfold(1, width, 1)[:, :t]  # (rows, t, K): every start position
        beyond = torch.arange(width, device=hist.device).unsqueeze(0) >= kl.unsqueeze(1)  # (rows, K)
        holds = ((windows == kw.unsqueeze(1)) | beyond.unsqueeze(1)).all(-1).any(-1)
        nxt = torch.zeros(rows, dtype=torch.long, device=hist.device)  # index into the keyword
        for j in range(1, min(width, t)):  # the line ends with the keyword's first j characters
            ends = (hist[:, t - j :] == kw[:, :j]).all(1) & (j < kl)
            nxt = torch.where(ends, torch.full_like(nxt, j), nxt)
        active = self.need[item_of] & ~holds
        target = kw.gather(1, nxt.unsqueeze(1)).squeeze(1)
        sel = active.nonzero().squeeze(1)
        return scores.index_put_((sel, target[sel]), scores.new_tensor(self.bonus), accumulate=True)
