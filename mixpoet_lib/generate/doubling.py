"""Reduplication (叠字) in generated lines: allowed only where human poets use it (design §5.3).

Human quatrains double a character now and then — 茫茫, 萧萧, 处处 — but only certain characters, almost only
inside one rhythmic unit of the line (positions 1–2 and 4–5 of a 5-character line, not across the caesura as
in 何处处), and rarely more than once a poem: in the kit's training lines 4.0 % of 5-character and 5.3 % of
7-character lines hold a doubling. An under-trained decoder doubles far more (60–97 % of the poems of the first
tutorial run), because a repeated character is the cheapest likely continuation.

The ``'attested'`` repetition rule (the kit's default) therefore lets the beam extend ``… c`` by ``c`` only when

* ``c`` is doubled at least ``min_count`` times in the training lines, and in at least ``min_share`` of the
  lines that contain it (悠 is doubled in 40 % of its lines, 年 in 6 %, 日 in 3 %: 今日日 is not a reduplication),
* the corpus doubles characters at that position of lines of that length in at least ``min_rate`` of its lines,
* the poem (its earlier lines and the line so far) holds fewer than ``max_doublings`` doubled pairs,
* the character before, x, does not form a common word with c — the bigram xc occurs ≥ ``word_count`` times
  and is followed by another c in fewer than ``word_share`` of them: 深处 (490 lines, 深处处 in 2) and 今日
  (1,443, 今日日 in 9) are words whose tail must not be doubled, 水悠 (48, 水悠悠 in 48) is not.

:class:`ReduplicationTable` measures the first two from the training lines; :func:`doubling_barred` applies
them to a beam. Everything else about in-line repetition (no other repeats, no tripling) stays with
:func:`~mixpoet_lib.generate.constraints.inline_banned`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mixpoet_lib.config import GenConfig
from mixpoet_lib.data.corpora import LINE_LENGTHS
from mixpoet_lib.data.vocab import Vocab

WORD_CONTEXT = 2  # positions needed before a doubling for a word xc to precede it

__all__ = ["ReduplicationTable", "doubled_positions", "count_doublings", "doubling_barred", "earlier_doublings"]


def doubled_positions(line: str) -> list[int]:
    """0-based positions i ≥ 1 where ``line[i] == line[i - 1]`` (茫茫然 → [1])."""
    return [i for i in range(1, len(line)) if line[i] == line[i - 1]]


def count_doublings(lines: Iterable[str]) -> int:
    """Number of doubled pairs in the lines (岁岁年年 counts 2)."""
    return sum(len(doubled_positions(line)) for line in lines)


@dataclass(frozen=True)
class ReduplicationTable:
    """Where the corpus doubles characters: ``chars`` (V,) bool and ``positions`` (max L + 1, max L + 1) bool.

    ``positions[L, i]`` is True when lines of length L double at position i (``line[i] == line[i-1]``) in at
    least ``min_rate`` of the corpus' lines of that length.
    """

    chars: Tensor
    positions: Tensor
    word_tails: Tensor  # sorted ids x·V + c of the bigrams xc after which c may not be doubled
    max_doublings: int = 1

    @classmethod
    def from_lines(
        cls,
        lines: Iterable[str],
        vocab: Vocab,
        *,
        min_count: int = 3,
        min_share: float = 0.05,
        min_rate: float = 0.002,
        word_count: int = 20,
        word_share: float = 0.1,
        max_doublings: int = 1,
        device: torch.device | str = "cpu",
    ) -> ReduplicationTable:
        """Measure the table on the training lines (see the module docstring for the three thresholds)."""
        doubled: Counter[str] = Counter()
        containing: Counter[str] = Counter()
        at: Counter[tuple[int, int]] = Counter()
        per_length: Counter[int] = Counter()
        bigrams: Counter[str] = Counter()
        attested: Counter[str] = Counter()
        for line in lines:
            per_length[len(line)] += 1
            containing.update(set(line))
            bigrams.update(line[i - 1 : i + 1] for i in range(1, len(line)))
            for i in doubled_positions(line):
                doubled[line[i]] += 1
                at[(len(line), i)] += 1
                attested[line[i - 2 : i + 1]] += 1
        size = max(LINE_LENGTHS) + 1
        chars = torch.zeros(len(vocab), dtype=torch.bool)
        for ch, n in doubled.items():
            if n >= min_count and n >= min_share * containing[ch] and ch in vocab:
                chars[vocab.id(ch)] = True
        positions = torch.zeros(size, size, dtype=torch.bool)
        for (length, i), n in at.items():
            if length < size and n >= min_rate * per_length[length]:
                positions[length, i] = True
        v = len(vocab)
        tails = sorted(
            vocab.id(xc[0]) * v + vocab.id(xc[1])
            for xc, n in bigrams.items()
            if n >= word_count
            and xc[0] != xc[1]
            and attested[xc + xc[1]] < word_share * n
            and xc[0] in vocab
            and xc[1] in vocab
        )
        return cls(
            chars.to(device), positions.to(device), torch.tensor(tails, dtype=torch.long, device=device), max_doublings
        )

    @classmethod
    def for_generation(
        cls, lines: Iterable[str], vocab: Vocab, cfg: GenConfig, device: torch.device | str = "cpu"
    ) -> ReduplicationTable:
        """The table under the generation settings' thresholds (``cfg.doubling_*``, ``cfg.max_doublings``)."""
        return cls.from_lines(
            lines,
            vocab,
            min_count=cfg.doubling_min_count,
            min_share=cfg.doubling_min_share,
            min_rate=cfg.doubling_min_rate,
            word_count=cfg.doubling_word_count,
            word_share=cfg.doubling_word_share,
            max_doublings=cfg.max_doublings,
            device=device,
        )

    def allowed_positions(self, length: int) -> list[int]:
        """The positions at which a line of ``length`` characters may double a character."""
        return [int(i) for i in self.positions[length].nonzero().flatten()]


def doubling_barred(
    table: ReduplicationTable, hist: Tensor, item_of: Tensor, lengths: Tensor, earlier_doublings: Tensor
) -> Tensor:
    """Rows that the attested rule forbids to double their last character next: bool (rows,).

    ``hist`` (rows, k+1) = ``[<B>, c1, …, ck]``; the next character sits at 0-based position k and doubles
    ``ck`` when equal to it, so a barred row bans exactly one token, ``ck``. ``item_of`` maps rows to items,
    ``lengths`` and ``earlier_doublings`` are per item.
    """
    rows, k = hist.size(0), hist.size(1) - 1
    if k < 1:
        return torch.zeros(rows, dtype=torch.bool, device=hist.device)
    last = hist[:, -1]
    lens = lengths[item_of]
    pos_ok = table.positions[lens.clamp(max=table.positions.size(0) - 1), min(k, table.positions.size(1) - 1)]
    pos_ok = pos_ok & (k < table.positions.size(1))
    so_far = earlier_doublings[item_of] + (hist[:, 2:] == hist[:, 1:-1]).sum(1)
    ok = table.chars[last] & pos_ok & (so_far < table.max_doublings)
    if k >= WORD_CONTEXT:
        ok &= ~torch.isin(hist[:, -2] * table.chars.numel() + last, table.word_tails)
    return ~ok


def earlier_doublings(lines_per_item: Sequence[Sequence[str]], device: torch.device | str = "cpu") -> Tensor:
    """Per item, the doubled pairs in its earlier lines (Long (n,))."""
    return torch.tensor([count_doublings(lines) for lines in lines_per_item], dtype=torch.long, device=device)
