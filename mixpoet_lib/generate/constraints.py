"""The constraints of quatrain generation (design §5.2–5.6): bans inside the beam, the post-filter, the ladder.

The bans of a line are boolean tensors over the vocabulary. :class:`ConstraintTables` builds the per-vocabulary
tables once, from the same functions :mod:`mixpoet_lib.data.rhythm` exposes and tests
(:func:`~mixpoet_lib.data.rhythm.tone_ban_mask`, :func:`~mixpoet_lib.data.rhythm.rhyme_mask`);
:class:`LineBans` combines them per position for a batch of lines; :func:`inline_banned` gives the ids the
in-line repetition rule bans for each hypothesis. The beam search (:mod:`mixpoet_lib.generate.beam`) calls exactly
these.

Bans
----
* ``UNK`` always; also ``PAD`` and ``<B>`` always (the official code never bans PAD; a PAD inside a line
  would be dropped from the text and give a line whose decoder states do not match it);
* ``<E>`` while k < L;
* every character of the poem's earlier lines;
* the in-line repetition rule, see below;
* once the poem's tonal pattern is set (after line 1): at k < L a level position (0) bans the oblique
  list, an oblique position (1) bans the level list, -1 is free. Polyphonic characters (in both lists)
  are thus banned at every constrained position; characters in neither list are never banned (design §5.4);
* at the last position of lines 2 and 4, every character outside the poem's rhyme class. When line 1
  gave no class, line 2 must end in a character that *has* a (level) rhyme class, which then becomes the
  poem's class (the official code leaves line 2 free in that case and may end with no rhyme at all).

**In-line repetition rule (decision, design §5.3).** At position k the hypothesis is
``[<B>, c1, …, ck]`` and its first m entries are banned. ``repetition_rule='intended'`` uses
m = k: no character may repeat within a line except by doubling the immediately previous one (茫茫), and
no tripling; ``'attested'`` (the default) also restricts that doubling to characters, positions and a
number per poem that human poems show (:mod:`mixpoet_lib.generate.doubling`). ``'official'`` reproduces
the official window m = k (k even) or k-1 (k odd), which also lets c4 repeat c2 and c6 repeat c4. The kit
does not default to the official window because it is an off-by-one with no linguistic motivation; the
flag keeps the faithful behaviour available.

Post-filter (design §5.5), on completed hypotheses in rank order (:func:`accept_line`): text truncated at
``<E>`` and to L characters, shorter lines dropped, lines found verbatim in the training lines dropped
(novelty), line 1 must be recognised by the rule-based recogniser, and lines 2-4 must be recognised as the
type the poem pattern requires. The pattern comes from line 1's type; the rhyme class from line 1's last
character, else line 2's (first listed Pingshui class, :func:`~mixpoet_lib.data.rhythm.rhyme_class`).

Relaxation ladder
-----------------
The official generator gives up on a poem as soon as one line has no surviving candidate (with an
under-trained model, every poem). Here each line first tries the strict procedure and, if nothing
survives, climbs :data:`RELAXATION_LEVELS` one rung at a time until a candidate survives. Every line
starts again at the bottom, so a poem is only as relaxed as its worst line needs; the poem records the
highest level used (``relaxation``) and the level of every line (``line_relaxation``). Rungs that only
change the post-filter re-use the beam's candidates (:func:`line_constraints` returns the same value);
rungs that change the beam re-run it (batched over all poems that need it). If even the last rung fails,
the poem is returned with ``ok=False`` and no lines.

====  ====================  ======================================================================
 0    strict                the official procedure (lines may run up to L + extra_steps positions and
                            are then truncated to L)
 1    forced_end            <E> is the only choice at position L: every hypothesis completes with
                            exactly L characters (the official code's failure mode when the model
                            never picks <E>)
 2    no_novelty            lines seen in training are accepted
 3    no_form_check         line 1 may be unrecognised (the poem then takes the type whose templates
                            agree with it at most positions, ties broken by the poem's seeded generator);
                            lines 2-4 may be recognised as another type (the tone bans still hold)
 4    no_tone               tone bans dropped for the line
 5    no_rhyme              rhyme constraint dropped for the line
 6    no_cross_line_ban     characters of earlier lines allowed again (only matters for tiny vocabularies)
====  ====================  ======================================================================

``UNK``, specials, the in-line rule and the exact line length are never relaxed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mixpoet_lib.config import REPETITION_RULES
from mixpoet_lib.data.corpora import LINE_LENGTHS
from mixpoet_lib.data.rhythm import (
    FREE,
    LEVEL,
    N_RHYME_CLASSES,
    OBLIQUE,
    TEMPLATES_5,
    TEMPLATES_7,
    ToneRhyme,
    position_template,
    rhyme_mask,
    tone_ban_mask,
    tone_masks,
    tone_string,
)
from mixpoet_lib.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab

__all__ = [
    "RELAXATION_LEVELS",
    "STRICT",
    "FORCED_END",
    "NO_NOVELTY",
    "NO_FORM_CHECK",
    "NO_TONE",
    "NO_RHYME",
    "NO_CROSS_LINE_BAN",
    "MAX_RELAXATION",
    "ANY_RHYME_ROW",
    "N_LINES",
    "SHORT_LINE",
    "LONG_LINE",
    "repetition_window",
    "inline_banned",
    "closest_line_types",
    "ConstraintTables",
    "LineConstraints",
    "line_constraints",
    "LineBans",
    "accept_line",
]

RELAXATION_LEVELS: tuple[str, ...] = (
    "strict",
    "forced_end",
    "no_novelty",
    "no_form_check",
    "no_tone",
    "no_rhyme",
    "no_cross_line_ban",
)
STRICT, FORCED_END, NO_NOVELTY, NO_FORM_CHECK, NO_TONE, NO_RHYME, NO_CROSS_LINE_BAN = range(len(RELAXATION_LEVELS))
MAX_RELAXATION = len(RELAXATION_LEVELS) - 1
N_LINES = 4  # lines of a quatrain
SHORT_LINE, LONG_LINE = LINE_LENGTHS  # characters per line of the two forms
ANY_RHYME_ROW = N_RHYME_CLASSES + 1  # rhyme-table row: "must end in a character that has a rhyme class"
RHYME_LINES = (1, 3)  # 0-based lines whose last character must rhyme


# ----------------------------------------------------------------------------------------------
# pure helpers
# ----------------------------------------------------------------------------------------------


def repetition_window(k: int, rule: str = "intended") -> int:
    """Number m of leading entries of the hypothesis ``[<B>, c1, …, ck]`` banned at position k.

    ``'intended'`` and ``'attested'``: m = k (only the immediately previous character may repeat; the attested
    rule narrows that further, see :mod:`mixpoet_lib.generate.doubling`); ``'official'``: m = k for even k,
    k - 1 for odd k (official window: 0, 0, 2, 2, 4, 4, 6 for k = 0..6; design §5.3).
    """
    if k < 0:
        raise ValueError(f"position must be ≥ 0, got {k}")
    if rule in ("attested", "intended"):
        return k
    if rule == "official":
        return k if k % 2 == 0 else k - 1
    raise ValueError(f"unknown repetition rule {rule!r}; choose one of {', '.join(REPETITION_RULES)}")


def inline_banned(hyps: Tensor, rule: str = "intended") -> Tensor:
    """Tokens banned by the in-line repetition rule: hypotheses (N, k+1) = ``[<B>, c1..ck]`` → ids (N, m).

    The first m = :func:`repetition_window` entries of each hypothesis (m may be 0); the beam sets their scores
    to -inf with one scatter instead of a dense (N, V) mask."""
    return hyps[:, : repetition_window(hyps.size(1) - 1, rule)]


def closest_line_types(line: str, *, tr: ToneRhyme) -> list[int]:
    """Line types whose recogniser templates agree with ``line`` at the most positions (ties all returned).

    Used to give an unrecognised first line a pattern (relaxation rung ``no_form_check``): a 'B'
    (polyphonic) character agrees with both symbols, a character in neither list with none.
    """
    if len(line) == SHORT_LINE:
        tones, templates = tone_string(line, tr=tr), TEMPLATES_5
    elif len(line) == LONG_LINE:
        tones, templates = tone_string(line[1:], tr=tr), TEMPLATES_7
    else:
        raise ValueError(f"line length must be 5 or 7, got {len(line)}: {line!r}")
    best = {
        t: max(sum(s == p or s == "B" for s, p in zip(tones, tpl)) for tpl in tpls) for t, tpls in templates.items()
    }
    top = max(best.values())
    return sorted(t for t, v in best.items() if v == top)


# ----------------------------------------------------------------------------------------------
# ban tables over a vocabulary
# ----------------------------------------------------------------------------------------------


class ConstraintTables:
    """Boolean ban tables over a vocabulary, built once and kept on the generation device.

    * ``always`` (V,): UNK, PAD, <B>;
    * ``tone`` (3, V): row ``value + 1`` is :func:`~mixpoet_lib.data.rhythm.tone_ban_mask` of template
      value -1 (free: nothing), 0 (level: the oblique list, polyphonic included), 1 (oblique: the level list);
    * ``rhyme`` (N_RHYME_CLASSES + 2, V): row 0 nothing, row c bans every token outside class c
      (the complement of :func:`~mixpoet_lib.data.rhythm.rhyme_mask`; specials never belong to a class),
      the last row (:data:`ANY_RHYME_ROW`) bans every token without a rhyme class;
    * ``not_eos`` (V,): everything except <E> (position L under ``forced_end``).
    """

    def __init__(self, vocab: Vocab, tr: ToneRhyme, device: torch.device | str = "cpu") -> None:
        tokens = list(vocab.tokens)
        v = len(tokens)
        masks = tone_masks(tokens, tr=tr)
        always = np.zeros(v, dtype=bool)
        always[[UNK, PAD, BOS]] = True
        tone = np.stack([tone_ban_mask(masks, value) for value in (FREE, LEVEL, OBLIQUE)])
        in_class = np.zeros((N_RHYME_CLASSES + 1, v), dtype=bool)
        for c in range(1, N_RHYME_CLASSES + 1):
            in_class[c] = rhyme_mask(tokens, c, tr=tr)
        in_class[:, : len(SPECIALS)] = False
        has_class = in_class.any(0)
        rhyme = np.zeros((N_RHYME_CLASSES + 2, v), dtype=bool)
        rhyme[1 : N_RHYME_CLASSES + 1] = ~in_class[1:]
        rhyme[ANY_RHYME_ROW] = ~has_class
        not_eos = np.ones(v, dtype=bool)
        not_eos[EOS] = False
        self.vocab_size = v
        self.device = torch.device(device)
        self.always = torch.from_numpy(always).to(self.device)
        self.tone = torch.from_numpy(tone).to(self.device)
        self.rhyme = torch.from_numpy(rhyme).to(self.device)
        self.not_eos = torch.from_numpy(not_eos).to(self.device)
        self.level = torch.from_numpy(masks["level"]).to(self.device)
        self.oblique = torch.from_numpy(masks["oblique"]).to(self.device)


# ----------------------------------------------------------------------------------------------
# the constraints of one line, and their bans per position
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineConstraints:
    """What the beam enforces for one line at one rung (equal values: the beam need not re-run)."""

    force_end: bool  # <E> is the only choice at position L
    template: tuple[int, ...] | None  # per-position tone values (0 level, 1 oblique, -1 free); None: no tone bans
    rhyme_row: int  # row of ConstraintTables.rhyme applied at the last position (0: none)
    cross_ban: bool  # characters of the poem's earlier lines are banned


def line_constraints(
    line_index: int, length: int, level: int, pattern: Sequence[int] | None, rhyme: int | None, has_earlier_chars: bool
) -> LineConstraints:
    """The beam constraints of line ``line_index`` (0-based) of a poem at relaxation rung ``level``.

    ``pattern`` holds the poem's line types (None before line 1 fixed it), ``rhyme`` its rhyme class (None
    while unknown: line 2 then has to end in some rhyming character).
    """
    template = None
    if pattern is not None and level < NO_TONE:
        template = position_template(pattern[line_index], length)
    rhyme_row = 0
    if level < NO_RHYME and line_index in RHYME_LINES:
        if rhyme is not None:
            rhyme_row = rhyme
        elif line_index == 1:
            rhyme_row = ANY_RHYME_ROW
    return LineConstraints(level >= FORCED_END, template, rhyme_row, level < NO_CROSS_LINE_BAN and has_earlier_chars)


class LineBans:
    """The bans of one line for n items at once: the static part is built here, :meth:`at` adds a position's.

    Args:
        tables: the vocabulary's :class:`ConstraintTables`.
        lengths: line length L of each item.
        rules: the :class:`LineConstraints` of each item.
        used: characters (ids) of each item's earlier lines, banned where ``cross_ban`` is set.
        n_pos: number of positions the beam may visit (tone templates are padded with 'free').
    """

    def __init__(
        self,
        tables: ConstraintTables,
        lengths: Sequence[int],
        rules: Sequence[LineConstraints],
        used: Sequence[Collection[int]],
        n_pos: int,
    ) -> None:
        dev, n, v = tables.device, len(rules), tables.vocab_size
        self.tables = tables
        base = tables.always.expand(n, v).clone()
        for j, (rule, u) in enumerate(zip(rules, used)):
            if rule.cross_ban and u:
                base[j, torch.tensor(sorted(u), device=dev)] = True
        self.base = base
        tone_idx = torch.zeros(n, n_pos, dtype=torch.long)
        for j, rule in enumerate(rules):
            if rule.template is not None:
                tone_idx[j, : len(rule.template)] = torch.tensor(rule.template) + 1
        self.tone_idx = tone_idx.to(dev)
        self.rhyme_rows = torch.tensor([rule.rhyme_row for rule in rules], device=dev)
        self.lens = torch.tensor(list(lengths), device=dev)
        self.force = torch.tensor([rule.force_end for rule in rules], device=dev)

    def at(self, k: int) -> Tensor:
        """Tokens banned at position k (0-based; position L is the slot of <E>) → bool (n, V)."""
        tb, lens = self.tables, self.lens
        ban = self.base | tb.tone[self.tone_idx[:, k]]
        last = lens - 1 == k
        if bool((last & self.rhyme_rows.gt(0)).any()):
            ban |= tb.rhyme[torch.where(last, self.rhyme_rows, 0)]
        ban[:, EOS] |= k < lens
        fe = self.force & (lens == k)
        if bool(fe.any()):
            ban |= fe.unsqueeze(1) & tb.not_eos
        return ban


# ----------------------------------------------------------------------------------------------
# post-filter
# ----------------------------------------------------------------------------------------------


def accept_line(
    ids: Sequence[int],
    tokens: Sequence[str],
    length: int,
    line_index: int,
    level: int,
    pattern: Sequence[int] | None,
    training_lines: Collection[str] | None,
    line_type: Callable[[str], int],
) -> str | None:
    """Post-filter one completed hypothesis (design §5.5) at a rung: its line text, or None when rejected.

    ``ids`` are the generated characters before <E>; ``training_lines`` None disables the novelty check;
    ``line_type`` is the recogniser (:func:`~mixpoet_lib.data.rhythm.line_type` bound to a resource).
    """
    if len(ids) < length:
        return None
    text = "".join(tokens[c] for c in ids[:length])
    if level < NO_NOVELTY and training_lines is not None and text in training_lines:
        return None
    if level < NO_FORM_CHECK:
        t = line_type(text)
        if line_index == 0 and t < 0:
            return None
        if line_index > 0 and (pattern is None or t != pattern[line_index]):
            return None
    return text
