"""Quatrain generation with the constrained beam search of spec §4, batched over poems and hypotheses.

One :class:`Generator` wraps any of the four models (basic / cvae / igs / aus) through the step-wise
interface they share (``encode_keyword``, ``init_decoder_state``, ``decode_step``, ``update_context``).
Poems are decoded line by line; for every character position **one** ``decode_step`` call serves every
live hypothesis of every poem in the batch, and every constraint is a boolean tensor over the vocabulary,
built once per vocabulary (:class:`ConstraintTables`) and combined per step by indexing.

Procedure per poem (spec §4.2-4.5)
----------------------------------
1. Encode the keyword; labels given as -1 are inferred with argmax p(y|w) (``infer_labels``).
2. Draw one latent sample from the prior with a per-poem :class:`torch.Generator` (CVAE, IGS, AUS; the
   basic model has none). The seed of that generator is a hash of (``seed``, keyword, length, requested
   labels, sample number), so a poem does not depend on what else is in the batch or where it sits.
   Diversity at fixed inputs therefore comes only from the latent sample and the labels: the beam is
   deterministic.
3. For each line: constrained beam search (below), post-filter, pick the best survivor, update the
   pattern/rhyme state and the inter-line context with the chosen hypothesis' decoder states
   (the states after reading ``<B>, c1 … cL``, zeroed beyond and padded to 8, exactly as in training).

Beam search (spec §4.3). Scores are accumulated log-probabilities; banned tokens get -inf (the official
code adds +1e5 to the cost, which lets a banned token through when nothing else is left; here such a
hypothesis simply dies). At position 0 only one row per poem is expanded, so the first B tokens are
distinct; afterwards the best ``n_live`` entries of each poem's flattened (live × V) matrix are kept and
hypotheses that pick ``<E>`` leave the beam. Completed hypotheses are ranked by cost / tokens (``<E>``
included). Bans:

* ``UNK`` always; also ``PAD`` and ``<B>`` always (the official code never bans PAD; a PAD inside a line
  would be dropped from the text and give a line whose decoder states do not match it);
* ``<E>`` while k < L;
* every character of the poem's earlier lines;
* the in-line repetition rule, see below;
* once the poem's tonal pattern is set (after line 1): at k < L a level position (0) bans the oblique
  list, an oblique position (1) bans the level list, -1 is free. Polyphonic characters (in both lists)
  are thus banned at every constrained position; characters in neither list are never banned (§6.2-9);
* at the last position of lines 2 and 4, every character outside the poem's rhyme class. When line 1
  gave no class, line 2 must end in a character that *has* a (level) rhyme class, which then becomes the
  poem's class (the official code leaves line 2 free in that case and may end with no rhyme at all).

**In-line repetition rule (decision, spec §4.3 / §6.2-8).** At position k the hypothesis is
``[<B>, c1, …, ck]`` and its first m entries are banned. ``repetition_rule='intended'`` (default) uses
m = k: no character may repeat within a line except by doubling the immediately previous one (茫茫), and
no tripling. ``'official'`` reproduces the official window m = k (k even) or k-1 (k odd), which also lets
c4 repeat c2 and c6 repeat c4. The default is the intended rule because the official window is an
off-by-one with no linguistic motivation; the flag keeps the faithful behaviour available.

Post-filter (spec §4.4), on completed hypotheses in rank order: text truncated at ``<E>`` and to L
characters, shorter lines dropped, lines found verbatim in the training lines dropped (novelty), line 1
must be recognised by the rule-based recogniser, and lines 2-4 must be recognised as the type the poem
pattern requires. The pattern comes from line 1's type; the rhyme class from line 1's last character,
else line 2's (first listed Pingshui class, :func:`~mixpoet_lib.data.rhythm.rhyme_class`).

Relaxation ladder
-----------------
The official generator gives up on a poem as soon as one line has no surviving candidate (with an
under-trained model, every poem). Here each line first tries the strict procedure and, if nothing
survives, climbs :data:`RELAXATION_LEVELS` one rung at a time until a candidate survives. Every line
starts again at the bottom, so a poem is only as relaxed as its worst line needs; the poem records the
highest level used (``relaxation``) and the level of every line (``line_relaxation``). Rungs that only
change the post-filter re-use the beam's candidates; rungs that change the beam re-run it (batched over
all poems that need it). If even the last rung fails, the poem is returned with ``ok=False`` and no lines.

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

``UNK``, specials, the in-line rule and the exact line length are never relaxed. ``form_ok`` on the
result is an independent check of the finished poem (:func:`~mixpoet_lib.data.rhythm.check_poem`): tone
pattern and rhyme of lines 2 and 4.

API
---
* ``Generator(model, vocab, tone_rhyme, training_lines, gen_cfg, device).generate(keywords, length, labels,
  n_samples, seed)`` → list of :class:`GeneratedPoem`; ``.top_n_distinct(keyword, length, n)`` for a model
  without latent (the basic baseline's intra-topic diversity);
* :func:`greedy_decode`: argmax decoding without constraints (a first look at a model);
* :func:`benchmark_generation`: poems per second, end to end and raw decode.

Speed. The network dominates: per 5-character poem at paper size (V ≈ 6,000, beam 20) the beam needs
4 × (1 + 20 × 5) decoder rows, each ≈ 10 MFLOP (output projection 6.1, GRU 3.1, input map 0.8), i.e.
≈ 4 GFLOP (7-character: ≈ 5.7 GFLOP). Batching many poems turns the per-step work into large GEMMs and
removes the per-poem Python bookkeeping; on a CPU the throughput is then bounded by GEMM speed.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixpoet_lib.config import FACTOR_NAMES, GenConfig, parse_label
from mixpoet_lib.data.rhythm import (N_RHYME_CLASSES, TEMPLATES_5, TEMPLATES_7, ToneRhyme, check_poem, default_tone_rhyme,
                     line_type, poem_pattern, position_template, rhyme_class, tone_masks, tone_string)
from mixpoet_lib.data.vocab import BOS, EOS, PAD, UNK, Vocab

__all__ = [
    "RELAXATION_LEVELS", "REPETITION_RULES", "GeneratedPoem", "ConstraintTables", "Generator",
    "repetition_window", "inline_ban_mask", "closest_line_types", "greedy_decode",
    "GenerationBenchmark", "benchmark_generation",
]

RELAXATION_LEVELS: tuple[str, ...] = (
    "strict", "forced_end", "no_novelty", "no_form_check", "no_tone", "no_rhyme", "no_cross_line_ban",
)
STRICT, FORCED_END, NO_NOVELTY, NO_FORM_CHECK, NO_TONE, NO_RHYME, NO_CROSS_LINE_BAN = range(7)
MAX_RELAXATION = len(RELAXATION_LEVELS) - 1
REPETITION_RULES = ("intended", "official")
LENGTHS = (5, 7)
MAX_KEYWORD_LEN = 2
N_LINES = 4
ANY_RHYME_ROW = N_RHYME_CLASSES + 1  # rhyme-table row: "must end in a character that has a rhyme class"


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GeneratedPoem:
    """One generated quatrain (or a failed attempt: ``ok=False`` and no lines).

    ``relaxation`` is the highest rung of :data:`RELAXATION_LEVELS` any line needed (0 = strict); for a
    failed poem it is the last rung tried. ``score`` is the mean over lines of the average log-probability
    per generated token (``<E>`` included; higher is better, nan when failed). ``form_ok`` says whether
    the finished poem passes :func:`~mixpoet_lib.data.rhythm.check_poem` (tone pattern and rhyme).
    """

    keyword: str
    length: int
    labels: tuple[int, int]  # the labels used (inferred where -1 was given; (-1, -1) for basic / cvae)
    lines: tuple[str, ...]
    ok: bool
    relaxation: int
    score: float
    form_ok: bool
    line_relaxation: tuple[int, ...] = ()
    line_scores: tuple[float, ...] = ()
    sample: int = 0
    pattern: tuple[int, ...] | None = None  # line types fixed by line 1
    rhyme_class: int | None = None
    failed_line: int | None = None  # 0-based line on which a failed poem stopped

    @property
    def relaxation_name(self) -> str:
        """Name of the relaxation rung (``'strict'``, ``'forced_end'``, …)."""
        return RELAXATION_LEVELS[self.relaxation]

    @property
    def text(self) -> str:
        """The poem as one string, lines joined by '|' (empty when generation failed)."""
        return "|".join(self.lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (with the relaxation name)."""
        out = dataclasses.asdict(self)
        out["relaxation_name"] = self.relaxation_name
        for key in ("score",):
            if isinstance(out[key], float) and math.isnan(out[key]):
                out[key] = None
        return out


# ----------------------------------------------------------------------------------------------
# constraint helpers (pure functions, unit-tested on hand-made hypotheses)
# ----------------------------------------------------------------------------------------------

def repetition_window(k: int, rule: str = "intended") -> int:
    """Number m of leading entries of the hypothesis ``[<B>, c1, …, ck]`` banned at position k.

    ``'intended'``: m = k (only the immediately previous character may repeat); ``'official'``: m = k for
    even k, k - 1 for odd k (spec §4.3 table: 0, 0, 2, 2, 4, 4, 6 for k = 0..6).
    """
    if k < 0:
        raise ValueError(f"position must be ≥ 0, got {k}")
    if rule == "intended":
        return k
    if rule == "official":
        return k if k % 2 == 0 else k - 1
    raise ValueError(f"unknown repetition rule {rule!r}; choose one of {', '.join(REPETITION_RULES)}")


def inline_ban_mask(hyps: Tensor, vocab_size: int, rule: str = "intended") -> Tensor:
    """Tokens banned by the in-line repetition rule: hypotheses (N, k+1) = ``[<B>, c1..ck]`` → bool (N, V)."""
    m = repetition_window(hyps.size(1) - 1, rule)
    mask = torch.zeros(hyps.size(0), vocab_size, dtype=torch.bool, device=hyps.device)
    if m > 0:
        mask.scatter_(1, hyps[:, :m], True)
    return mask


def closest_line_types(line: str, *, tr: ToneRhyme) -> list[int]:
    """Line types whose recogniser templates agree with ``line`` at the most positions (ties all returned).

    Used to give an unrecognised first line a pattern (relaxation rung ``no_form_check``): a 'B'
    (polyphonic) character agrees with both symbols, a character in neither list with none.
    """
    if len(line) == 5:
        tones, templates = tone_string(line, tr=tr), TEMPLATES_5
    elif len(line) == 7:
        tones, templates = tone_string(line[1:], tr=tr), TEMPLATES_7
    else:
        raise ValueError(f"line length must be 5 or 7, got {len(line)}: {line!r}")
    best = {t: max(sum(s == p or s == "B" for s, p in zip(tones, tpl)) for tpl in tpls)
            for t, tpls in templates.items()}
    top = max(best.values())
    return sorted(t for t, v in best.items() if v == top)


class ConstraintTables:
    """Boolean ban tables over a vocabulary, built once and kept on the generation device.

    * ``always`` (V,): UNK, PAD, <B>;
    * ``tone`` (3, V): row 0 free (nothing), row 1 a level position (bans the oblique list, polyphonic
      included), row 2 an oblique position (bans the level list); index = template value + 1;
    * ``rhyme`` (N_RHYME_CLASSES + 2, V): row 0 nothing, row c bans every token outside class c, the last
      row (:data:`ANY_RHYME_ROW`) bans every token without a rhyme class;
    * ``not_eos`` (V,): everything except <E> (position L under ``forced_end``).
    """

    def __init__(self, vocab: Vocab, tr: ToneRhyme, device: torch.device | str = "cpu"):
        tokens = list(vocab.tokens)
        v = len(tokens)
        masks = tone_masks(tokens, tr=tr)
        always = np.zeros(v, dtype=bool)
        always[[UNK, PAD, BOS]] = True
        tone = np.stack([np.zeros(v, dtype=bool), masks["oblique"], masks["level"]])
        rhyme = np.zeros((N_RHYME_CLASSES + 2, v), dtype=bool)
        has_class = np.zeros(v, dtype=bool)
        for i, tok in enumerate(tokens):
            for c in tr.rhyme_classes.get(tok, ()) if i >= 4 else ():
                if 1 <= c <= N_RHYME_CLASSES:
                    rhyme[c, i] = True
                    has_class[i] = True
        rhyme[1:N_RHYME_CLASSES + 1] = ~rhyme[1:N_RHYME_CLASSES + 1]
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
# internal state
# ----------------------------------------------------------------------------------------------

@dataclass
class _Request:
    keyword: str
    length: int
    labels: tuple[int, int]  # as requested (-1 = infer)
    sample: int
    seed: int


@dataclass
class _PoemState:
    req: _Request
    rng: torch.Generator
    lines: list[str] = field(default_factory=list)
    line_levels: list[int] = field(default_factory=list)
    line_scores: list[float] = field(default_factory=list)
    used: set[int] = field(default_factory=set)
    pattern: tuple[int, ...] | None = None
    rhyme: int | None = None
    failed_line: int | None = None
    last_level: int = 0
    labels: tuple[int, int] = (-1, -1)

    @property
    def active(self) -> bool:
        return self.failed_line is None


@dataclass(frozen=True)
class _BeamConfig:
    force_end: bool
    template: tuple[int, ...] | None
    rhyme_row: int
    cross_ban: bool


@dataclass
class _Candidate:
    norm: float  # log-prob per generated token (<E> included)
    ids: list[int]  # generated characters before <E>
    step: int
    row: int


@dataclass
class _BeamResult:
    candidates: list[list[_Candidate]]  # per item, best first
    states: list[Tensor]  # states[k]: decoder outputs after step k (rows of step k's layout), k ≤ max L
    parents: list[Tensor | None]  # parents[k]: row of step k-1 for each row of step k


def _stable_seed(*parts: Any) -> int:
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


# ----------------------------------------------------------------------------------------------
# the generator
# ----------------------------------------------------------------------------------------------

class Generator:
    """Batched constrained beam-search generator for every model kind (see the module docstring).

    Args:
        model: a model built by :func:`~mixpoet_lib.checkpoints.build_model` (a basic model must have
            ``condition_on_poem=False``). It is switched to eval mode while generating.
        vocab: the model's :class:`~mixpoet_lib.data.vocab.Vocab` (or its token list).
        tone_rhyme: CRRD resources; default :func:`~mixpoet_lib.data.rhythm.default_tone_rhyme`.
        training_lines: the novelty filter's library (e.g. ``PreparedData.training_lines()``); None
            disables the filter, as does ``gen_cfg.novelty_filter=False``.
        gen_cfg: beam size, extra positions per line, novelty switch.
        device: where to decode (default: the model's device; the model is moved there if needed).
        repetition_rule: ``'intended'`` (default) or ``'official'`` (default taken from
            ``gen_cfg.repetition_rule`` if that field exists).
        max_relaxation: highest rung of the ladder to try (0 = official behaviour: fail instead of relax).
        min_relaxation: rung every line starts at (benchmarks use ``no_form_check`` to time exactly one beam
            search per line).
        max_batch_poems: poems decoded together (memory: about max_batch_poems × beam × V floats per step).
    """

    def __init__(self, model: torch.nn.Module, vocab: Vocab | Sequence[str], tone_rhyme: ToneRhyme | None = None,
                 training_lines: Iterable[str] | None = None, gen_cfg: GenConfig = GenConfig(),
                 device: torch.device | str | None = None, *, repetition_rule: str | None = None,
                 max_relaxation: int = MAX_RELAXATION, min_relaxation: int = STRICT, max_batch_poems: int = 128):
        self.model = model
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab(tuple(vocab))
        if len(self.vocab) != model.vocab_size:
            raise ValueError(f"vocabulary has {len(self.vocab)} tokens but the model expects {model.vocab_size}")
        self.tr = tone_rhyme if tone_rhyme is not None else default_tone_rhyme()
        self.gen_cfg = gen_cfg
        rule = repetition_rule or getattr(gen_cfg, "repetition_rule", None) or "intended"
        repetition_window(0, rule)  # validates the name
        self.repetition_rule = rule
        if not 0 <= min_relaxation <= max_relaxation <= MAX_RELAXATION:
            raise ValueError(f"need 0 ≤ min_relaxation ≤ max_relaxation ≤ {MAX_RELAXATION}, "
                             f"got {min_relaxation}, {max_relaxation}")
        self.min_relaxation, self.max_relaxation = min_relaxation, max_relaxation
        if gen_cfg.beam_size < 1:
            raise ValueError(f"beam_size must be ≥ 1, got {gen_cfg.beam_size}")
        if max_batch_poems < 1:
            raise ValueError(f"max_batch_poems must be ≥ 1, got {max_batch_poems}")
        self.max_batch_poems = max_batch_poems
        self.training_lines = (frozenset(training_lines) if training_lines is not None and gen_cfg.novelty_filter
                               else None)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if next(model.parameters()).device != self.device:
            model.to(self.device)
        self.tables = ConstraintTables(self.vocab, self.tr, self.device)
        self.tokens = list(self.vocab.tokens)
        self.window = model.cfg.max_line_len + 1
        self.kind = getattr(model, "kind", "base")
        self.z_rejections = 0  # latent draws replaced by the outlier guard so far
        self.line_type = functools.lru_cache(maxsize=1 << 18)(lambda s: line_type(s, tr=self.tr))

    # -- public API ------------------------------------------------------------------------------
    def generate(self, keywords: Sequence[str] | str, length: int | Sequence[int], labels: Any = (-1, -1),
                 n_samples: int = 1, seed: int = 0) -> list[GeneratedPoem]:
        """Generate ``n_samples`` poems per keyword (keyword-major order: kw0 s0, kw0 s1, …, kw1 s0 …).

        ``length`` and ``labels`` are one value for every keyword or one per keyword; a label pair holds
        ids or class names (e.g. ``('military', -1)``), -1 meaning "infer with p(y|w)". Identical requests
        (keyword, length, labels, sample number, seed) give identical poems wherever they sit in the batch.
        """
        reqs = self._requests(keywords, length, labels, n_samples, seed)
        out: list[GeneratedPoem] = []
        for start in range(0, len(reqs), self.max_batch_poems):
            out.extend(self._generate_chunk(reqs[start:start + self.max_batch_poems]))
        return out

    def top_n_distinct(self, keyword: str, length: int, n: int, labels: Any = (-1, -1),
                       seed: int = 0) -> list[GeneratedPoem]:
        """N poems from the N best distinct first lines of one beam (intra-topic diversity of the basic model).

        The beam of line 1 is widened to max(beam_size, n); its distinct surviving candidates are taken in
        rank order, climbing the relaxation ladder when fewer than n survive, and each is completed into a
        poem. Fewer than n distinct first lines → the missing poems come back failed (``ok=False``).
        """
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        req = self._requests([keyword], length, labels, 1, seed)[0]
        with self._eval_mode():
            states, s0, length_oh = self._init_poems([req])
            first = states[0]
            ctx0 = self.model.initial_context(1, like=s0)
            beam = max(self.gen_cfg.beam_size, n)
            picked: list[tuple[_Candidate, str, int, Tensor, Tensor]] = []  # cand, text, level, states, mask
            seen: set[str] = set()
            cfg_used, result = None, None
            for level in range(self.min_relaxation, self.max_relaxation + 1):
                cfg = self._beam_config(first, 0, level)
                if cfg != cfg_used:
                    result = self._beam_search(s0, length_oh, ctx0, 0, [req.length], [cfg], [set()], beam)
                    cfg_used = cfg
                for cand in result.candidates[0]:
                    text = self._accept(cand, first, 0, level)
                    if text is not None and text not in seen:
                        seen.add(text)
                        picked.append((cand, text, level, *self._line_states(result, [cand], [req.length])))
                        if len(picked) == n:
                            break
                if len(picked) == n:
                    break
            polys = [_PoemState(req=req, rng=_clone_rng(first.rng), labels=first.labels) for _ in picked]
            for st, (cand, text, level, _, _) in zip(polys, picked):
                self._record(st, cand, text, level, 0)
            if polys:
                k = len(polys)
                ctx = self.model.update_context(ctx0.expand(k, -1), torch.cat([p[3] for p in picked]),
                                                torch.cat([p[4] for p in picked]))
                self._run_lines(polys, s0.expand(k, -1), length_oh.expand(k, -1), ctx, start_line=1)
            poems = [self._finish(st) for st in polys]
        failed = _PoemState(req=req, rng=first.rng, labels=first.labels, failed_line=0, last_level=self.max_relaxation)
        return poems + [self._finish(failed) for _ in range(n - len(poems))]

    def generate_from_s0(self, keyword: str, length: int, s0: Tensor, seed: int = 0) -> list[GeneratedPoem]:
        """Decode one poem per row of a given decoder start state s0 (P, S0), e.g. an interpolated latent.

        The keyword only names the poems (s0 already holds it); labels are reported as (-1, -1).
        """
        if s0.dim() != 2 or s0.size(0) < 1:
            raise ValueError(f"s0 must be (P, S0) with P ≥ 1, got shape {tuple(s0.shape)}")
        reqs = self._requests([keyword] * s0.size(0), length, None, 1, seed)
        with self._eval_mode():
            states = [_PoemState(req=r, rng=torch.Generator().manual_seed(r.seed)) for r in reqs]
            s0 = s0.to(self.device)
            ctx = self.model.initial_context(len(reqs), like=s0)
            self._run_lines(states, s0, self._length_onehot(reqs, s0.dtype), ctx, start_line=0)
            return [self._finish(st) for st in states]

    # -- input handling ----------------------------------------------------------------------------
    def _requests(self, keywords: Sequence[str] | str, length: int | Sequence[int], labels: Any,
                  n_samples: int, seed: int) -> list[_Request]:
        if isinstance(keywords, str):
            keywords = [keywords]
        keywords = list(keywords)
        if not keywords:
            raise ValueError("no keywords given")
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        per_poem = isinstance(length, (Sequence, np.ndarray, Tensor)) and not isinstance(length, str)
        lengths = list(length.tolist() if isinstance(length, (np.ndarray, Tensor)) else length) if per_poem \
            else [length] * len(keywords)
        if len(lengths) != len(keywords):
            raise ValueError(f"{len(lengths)} lengths for {len(keywords)} keywords")
        label_list = self._label_list(labels, len(keywords))
        factored = self.kind in ("igs", "aus")
        reqs = []
        for kw, ln, lab in zip(keywords, lengths, label_list):
            kw = self._check_keyword(kw)
            if isinstance(ln, bool) or not isinstance(ln, (int, np.integer)) or int(ln) not in LENGTHS:
                raise ValueError(f"length must be 5 or 7, got {ln!r}")
            if not factored and lab != (-1, -1):
                raise ValueError(f"model kind {self.kind!r} has no factor labels, got labels {lab} "
                                 f"(use -1 / leave them out)")
            for j in range(n_samples):
                reqs.append(_Request(kw, int(ln), lab, j, _stable_seed(int(seed), kw, int(ln), lab, j)))
        return reqs

    def _check_keyword(self, kw: Any) -> str:
        if not isinstance(kw, str):
            raise ValueError(f"keyword must be a string, got {kw!r}")
        kw = kw.strip()
        if not kw:
            raise ValueError("empty keyword")
        if len(kw) > MAX_KEYWORD_LEN:
            raise ValueError(f"keyword {kw!r} has {len(kw)} characters; MixPoet keywords have 1-{MAX_KEYWORD_LEN}")
        missing = [ch for ch in kw if ch not in self.vocab or self.vocab.id(ch) < 4]
        if missing:
            raise ValueError(f"keyword {kw!r}: character(s) {''.join(dict.fromkeys(missing))!r} not in the vocabulary")
        return kw

    @staticmethod
    def _label_pair(pair: Any) -> tuple[int, int]:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != len(FACTOR_NAMES):
            raise ValueError(f"labels must be a pair (living, era), got {pair!r}")
        return tuple(parse_label(f, v) for f, v in zip(FACTOR_NAMES, pair))  # type: ignore[return-value]

    def _label_list(self, labels: Any, n: int) -> list[tuple[int, int]]:
        if labels is None:
            return [(-1, -1)] * n
        if (isinstance(labels, Sequence) and not isinstance(labels, str) and len(labels) > 0
                and all(isinstance(x, Sequence) and not isinstance(x, str) for x in labels)):
            if len(labels) != n:
                raise ValueError(f"{len(labels)} label pairs for {n} keywords")
            return [self._label_pair(p) for p in labels]
        if isinstance(labels, Tensor):
            return self._label_list(labels.tolist(), n)
        pair = self._label_pair(labels)
        return [pair] * n

    # -- model glue ---------------------------------------------------------------------------------
    class _EvalMode:
        def __init__(self, model: torch.nn.Module):
            self.model, self.was_training = model, model.training
            self.ctx = torch.inference_mode()

        def __enter__(self) -> None:
            self.model.eval()
            self.ctx.__enter__()

        def __exit__(self, *exc: Any) -> None:
            self.ctx.__exit__(*exc)
            self.model.train(self.was_training)

    def _eval_mode(self) -> "_EvalMode":
        return Generator._EvalMode(self.model)

    def _keys(self, keywords: Sequence[str]) -> Tensor:
        width = max(len(k) for k in keywords) + 2
        keys = torch.full((len(keywords), width), PAD, dtype=torch.long)
        for i, kw in enumerate(keywords):
            keys[i, 0] = BOS
            keys[i, 1:1 + len(kw)] = torch.tensor(self.vocab.encode(kw))
            keys[i, 1 + len(kw)] = EOS
        return keys.to(self.device)

    def _init_poems(self, reqs: Sequence[_Request]) -> tuple[list[_PoemState], Tensor, Tensor]:
        """Return per-poem states, s0 (P, S0) and the length one-hots (P, 2) (latent drawn per poem)."""
        m = self.model
        states = [_PoemState(req=r, rng=torch.Generator().manual_seed(r.seed)) for r in reqs]
        h_w = m.encode_keyword(self._keys([r.keyword for r in reqs]))
        labels = torch.tensor([r.labels for r in reqs], dtype=torch.long, device=self.device)
        if self.kind == "basic":
            s0 = m.decoder_s0(h_w)
            ids = None
        elif self.kind in ("cvae", "igs", "aus"):
            ids = m.infer_labels(h_w, labels) if self.kind != "cvae" else None
            y = [ids[:, k] for k in range(ids.size(1))] if ids is not None else []
            z = self._draw_latents(states, h_w, y)
            s0 = m.decoder_s0(z, h_w, y) if y else m.decoder_s0(z, h_w)
        else:
            raise ValueError(f"unsupported model kind {self.kind!r}")
        if ids is not None:
            for st, row in zip(states, ids.tolist()):
                st.labels = (int(row[0]), int(row[1]))
        return states, s0, self._length_onehot(reqs, s0.dtype)

    def _length_onehot(self, reqs: Sequence[_Request], dtype: torch.dtype) -> Tensor:
        """Length condition per poem (P, 2): [1, 0] for 7 characters, [0, 1] for 5."""
        return torch.tensor([[1.0, 0.0] if r.length == 7 else [0.0, 1.0] for r in reqs], dtype=dtype, device=self.device)

    def _prior_from_eps(self, h_w: Tensor, y: list[Tensor], eps: Tensor) -> Tensor:
        """Prior latent for given noise: Gaussian kinds reparameterise, AUS runs its implicit sampler."""
        if self.kind == "cvae":
            return self.model.prior_sample(h_w, eps=eps)
        return self.model.prior_sample(h_w, y, eps=eps)

    def _draw_latents(self, states: list[_PoemState], h_w: Tensor, y: list[Tensor]) -> Tensor:
        """One prior latent per poem (P, Z), drawn from each poem's own generator, with the outlier guard.

        Each poem draws R = ``z_candidates`` noise vectors; the first whose latent norm is at most
        ``z_outlier_ratio`` × the median of its R norms is kept (so the choice never depends on the batch).
        """
        z_size = self.model.cfg.latent_size
        r = max(1, int(getattr(self.gen_cfg, "z_candidates", 1)))
        ratio = float(getattr(self.gen_cfg, "z_outlier_ratio", 0.0))
        if ratio <= 0:
            r = 1
        eps = torch.stack([torch.randn(r, z_size, generator=st.rng) for st in states]).to(self.device, h_w.dtype)
        p = len(states)
        # candidate-major rows: row c·P + b is candidate c of poem b
        flat = eps.transpose(0, 1).reshape(r * p, z_size)
        z = self._prior_from_eps(h_w.repeat(r, 1), [yk.repeat(r) for yk in y], flat).view(r, p, z_size)
        if r == 1:
            return z[0]
        norms = z.float().norm(dim=-1)  # (R, P)
        ok = norms <= ratio * norms.median(dim=0).values
        first = torch.where(ok.any(0), ok.float().argmax(0), norms.argmin(0))
        self.z_rejections += int((first > 0).sum())
        return z[first, torch.arange(p, device=z.device)]

    # -- poem loop ------------------------------------------------------------------------------------
    def _generate_chunk(self, reqs: Sequence[_Request]) -> list[GeneratedPoem]:
        with self._eval_mode():
            states, s0, length_oh = self._init_poems(reqs)
            ctx = self.model.initial_context(len(reqs), like=s0)
            self._run_lines(states, s0, length_oh, ctx, start_line=0)
            return [self._finish(st) for st in states]

    def _run_lines(self, states: list[_PoemState], s0: Tensor, length_oh: Tensor, ctx: Tensor,
                   start_line: int) -> None:
        for i in range(start_line, N_LINES):
            active = [p for p, st in enumerate(states) if st.active]
            if not active:
                return
            ctx = self._generate_line(states, active, i, s0, length_oh, ctx)

    def _generate_line(self, states: list[_PoemState], active: list[int], i: int, s0: Tensor, length_oh: Tensor,
                       ctx: Tensor) -> Tensor:
        """Decode line i for the active poems, climbing the ladder per poem; return the updated context."""
        level = {p: self.min_relaxation for p in active}
        pending = active
        while pending:
            cfgs = [self._beam_config(states[p], i, level[p]) for p in pending]
            idx = torch.tensor(pending, device=self.device)
            result = self._beam_search(s0[idx], length_oh[idx], ctx[idx], i, [states[p].req.length for p in pending],
                                       cfgs, [states[p].used if c.cross_ban else set() for p, c in zip(pending, cfgs)],
                                       self.gen_cfg.beam_size)
            chosen_items, chosen, texts, levels = [], [], [], []
            retry = []
            for j, p in enumerate(pending):
                st, lvl = states[p], level[p]
                while True:
                    hit = self._first_accepted(result.candidates[j], st, i, lvl)
                    if hit is not None:
                        chosen_items.append(j)
                        chosen.append(hit[0])
                        texts.append(hit[1])
                        levels.append(lvl)
                        break
                    lvl += 1
                    if lvl > self.max_relaxation:
                        st.failed_line, st.last_level = i, self.max_relaxation
                        break
                    if self._beam_config(st, i, lvl) != cfgs[j]:
                        level[p] = lvl
                        retry.append(p)
                        break
            if chosen_items:
                poems = [pending[j] for j in chosen_items]
                for p, cand, text, lvl in zip(poems, chosen, texts, levels):
                    self._record(states[p], cand, text, lvl, i)
                line_states, mask = self._line_states(result, chosen, [states[p].req.length for p in poems])
                rows = torch.tensor(poems, device=self.device)
                ctx = ctx.clone()
                ctx[rows] = self.model.update_context(ctx[rows], line_states, mask)
            pending = retry
        return ctx

    def _record(self, st: _PoemState, cand: _Candidate, text: str, level: int, i: int) -> None:
        """Append the chosen line i to a poem and update its pattern, rhyme class and used characters."""
        st.lines.append(text)
        st.line_levels.append(level)
        st.line_scores.append(cand.norm)
        st.used.update(self.vocab.encode(text))
        if i == 0:
            t = self.line_type(text)
            if t < 0:  # only at rung no_form_check: the closest type, ties broken by the poem's generator
                ties = closest_line_types(text, tr=self.tr)
                t = ties[int(torch.randint(len(ties), (1,), generator=st.rng))]
            st.pattern = poem_pattern(t)
            st.rhyme = rhyme_class(text[-1], tr=self.tr)
        elif i == 1 and st.rhyme is None:
            st.rhyme = rhyme_class(text[-1], tr=self.tr)

    def _finish(self, st: _PoemState) -> GeneratedPoem:
        r = st.req
        if not st.active or len(st.lines) < N_LINES:
            return GeneratedPoem(r.keyword, r.length, st.labels, (), False, st.last_level, float("nan"), False,
                                 tuple(st.line_levels), tuple(st.line_scores), r.sample, st.pattern, st.rhyme,
                                 st.failed_line if st.failed_line is not None else len(st.lines))
        lines = tuple(st.lines)
        return GeneratedPoem(r.keyword, r.length, st.labels, lines, True, max(st.line_levels),
                             float(np.mean(st.line_scores)), check_poem(lines, tr=self.tr).ok,
                             tuple(st.line_levels), tuple(st.line_scores), r.sample, st.pattern, st.rhyme, None)

    # -- ladder --------------------------------------------------------------------------------------
    def _beam_config(self, st: _PoemState, i: int, level: int) -> _BeamConfig:
        template = None
        if st.pattern is not None and level < NO_TONE:
            template = position_template(st.pattern[i], st.req.length)
        rhyme_row = 0
        if level < NO_RHYME and i in (1, 3):
            if st.rhyme is not None:
                rhyme_row = st.rhyme
            elif i == 1:
                rhyme_row = ANY_RHYME_ROW
        return _BeamConfig(level >= FORCED_END, template, rhyme_row, level < NO_CROSS_LINE_BAN and bool(st.used))

    def _accept(self, cand: _Candidate, st: _PoemState, i: int, level: int) -> str | None:
        """Post-filter one candidate (spec §4.4) at a rung; return its text or None."""
        length = st.req.length
        if len(cand.ids) < length:
            return None
        text = "".join(self.tokens[c] for c in cand.ids[:length])
        if level < NO_NOVELTY and self.training_lines is not None and text in self.training_lines:
            return None
        if level < NO_FORM_CHECK:
            t = self.line_type(text)
            if i == 0 and t < 0:
                return None
            if i > 0 and (st.pattern is None or t != st.pattern[i]):
                return None
        return text

    def _first_accepted(self, cands: list[_Candidate], st: _PoemState, i: int,
                        level: int) -> tuple[_Candidate, str] | None:
        for cand in cands:
            text = self._accept(cand, st, i, level)
            if text is not None:
                return cand, text
        return None

    # -- the batched beam search --------------------------------------------------------------------
    def _beam_search(self, s0: Tensor, length_oh: Tensor, ctx: Tensor, line_idx: int, lengths: list[int],
                     cfgs: list[_BeamConfig], used: list[set[int]], beam: int) -> _BeamResult:
        """Constrained beam search of one line for n items at once; candidates per item, best first."""
        m, tb = self.model, self.tables
        dev, n, v = self.device, len(lengths), tb.vocab_size
        neg_inf = float("-inf")
        lens = torch.tensor(lengths, device=dev)
        force = torch.tensor([c.force_end for c in cfgs], device=dev)
        max_pos = torch.where(force, lens + 1, lens + self.gen_cfg.extra_steps)  # positions 0..max_pos-1
        n_pos = int(max_pos.max())
        l_max = max(lengths)
        # per-item static bans and per-position tone rows
        base = tb.always.expand(n, v).clone()
        for j, u in enumerate(used):
            if u:
                base[j, torch.tensor(sorted(u), device=dev)] = True
        tone_idx = torch.zeros(n, n_pos, dtype=torch.long)
        for j, c in enumerate(cfgs):
            if c.template is not None:
                tone_idx[j, :len(c.template)] = torch.tensor(c.template) + 1
        tone_idx = tone_idx.to(dev)
        rhyme_rows = torch.tensor([c.rhyme_row for c in cfgs], device=dev)

        def item_ban(k: int) -> Tensor:
            """Additive (n, V) mask of position k: 0 allowed, -inf banned."""
            ban = base | tb.tone[tone_idx[:, k]]
            last = lens - 1 == k
            if bool((last & rhyme_rows.gt(0)).any()):
                ban |= tb.rhyme[torch.where(last, rhyme_rows, 0)]
            ban[:, EOS] |= k < lens
            fe = force & (lens == k)
            if bool(fe.any()):
                ban |= fe.unsqueeze(1) & tb.not_eos
            return torch.zeros(n, v, dtype=dtype, device=dev).masked_fill_(ban, neg_inf)

        comp: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = []  # item, norm, step, row, hist
        states: list[Tensor] = []
        parents: list[Tensor | None] = [None]
        # position 0: one row per item
        hidden = m.init_decoder_state(s0, length_oh, line_idx)
        tok = torch.full((n,), BOS, dtype=torch.long, device=dev)
        logits, h = m.decode_step(tok, hidden, ctx)
        states.append(h)
        logits = _score_dtype(logits)
        dtype = logits.dtype
        scores = torch.log_softmax(logits, -1).add_(item_ban(0))
        kk = min(beam, v)
        top, idx = scores.topk(kk, dim=-1)
        if kk < beam:
            top = torch.cat([top, top.new_full((n, beam - kk), neg_inf)], 1)
            idx = torch.cat([idx, idx.new_zeros((n, beam - kk))], 1)
        item_of = torch.arange(n, device=dev).repeat_interleave(beam)
        parent_row = item_of.clone()  # rows of states[0]
        tok = idx.reshape(-1)
        cost = top.reshape(-1)
        valid = torch.isfinite(cost)
        hist = torch.stack([torch.full_like(tok, BOS), tok], 1)
        ctx_rep = ctx.repeat_interleave(beam, 0)
        k = 0
        while True:
            is_eos = tok == EOS
            done = valid & is_eos
            if bool(done.any()):
                sel = done.nonzero().squeeze(1)
                comp.append((item_of[sel], cost[sel] / (k + 1), torch.full_like(sel, k), parent_row[sel],
                             hist[sel, 1:-1]))
            alive = valid & ~is_eos & (k + 1 < max_pos[item_of])
            if not bool(alive.any()):
                break
            k += 1
            parents.append(parent_row)
            hidden = h[parent_row]
            # scores = cost + log p; banned entries get -inf (additive mask: cheaper than masked_fill_)
            if bool(alive.all()):
                logits, h = m.decode_step(tok, hidden, ctx_rep)
                scores = torch.log_softmax(_score_dtype(logits), -1).add_(cost.unsqueeze(1))
            else:
                rows = alive.nonzero().squeeze(1)
                logits_a, h_a = m.decode_step(tok[rows], hidden[rows], ctx_rep[rows])
                h = hidden.clone()
                h[rows] = h_a
                scores = cost.new_full((n * beam, v), neg_inf)
                scores[rows] = torch.log_softmax(_score_dtype(logits_a), -1).add_(cost[rows].unsqueeze(1))
            if k <= l_max:
                states.append(h)
            scores = scores.view(n, beam, v).add_(item_ban(k).unsqueeze(1)).view(n * beam, v)
            mw = repetition_window(k, self.repetition_rule)
            if mw > 0:
                scores.scatter_(1, hist[:, :mw], neg_inf)
            n_live = alive.view(n, beam).sum(1)
            top, idx = scores.view(n, beam * v).topk(beam, dim=-1)
            slot_ok = torch.arange(beam, device=dev).unsqueeze(0) < n_live.unsqueeze(1)
            valid = (slot_ok & torch.isfinite(top)).reshape(-1)
            parent_row = (item_of.view(n, beam) * beam + idx // v).reshape(-1)
            tok = (idx % v).reshape(-1)
            cost = top.reshape(-1)
            hist = torch.cat([hist[parent_row], tok.unsqueeze(1)], 1)
        return _BeamResult(self._collect(comp, n), states, parents)

    def _collect(self, comp: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]], n: int) -> list[list[_Candidate]]:
        out: list[list[_Candidate]] = [[] for _ in range(n)]
        for item, norm, step, row, hist in comp:
            for it, nm, sp, rw, ids in zip(item.tolist(), norm.tolist(), step.tolist(), row.tolist(), hist.tolist()):
                out[it].append(_Candidate(nm, ids, sp, rw))
        for cands in out:
            cands.sort(key=lambda c: -c.norm)  # stable: ties keep completion order
        return out

    def _line_states(self, result: _BeamResult, cands: list[_Candidate], lengths: list[int]) -> tuple[Tensor, Tensor]:
        """Decoder states after reading <B>, c1 … cL of each chosen candidate, zero-padded to the window (8)."""
        dev = self.device
        m = len(cands)
        steps = torch.tensor([c.step for c in cands], device=dev)
        cur = torch.tensor([c.row for c in cands], device=dev)
        lens = torch.tensor(lengths, device=dev)
        hsize = result.states[0].size(1)
        out = result.states[0].new_zeros(m, self.window, hsize)
        for k in range(int(steps.max()), -1, -1):
            active = steps >= k
            if k < len(result.states) and k < self.window:
                take = (active & (lens >= k)).nonzero().squeeze(1)
                if take.numel():
                    out[take, k] = result.states[k][cur[take]]
            if k > 0:
                par = result.parents[k]
                cur = torch.where(active, par[cur.clamp(max=par.numel() - 1)], cur)
        mask = torch.arange(self.window, device=dev).unsqueeze(0) <= lens.unsqueeze(1)
        return out, mask


def _score_dtype(logits: Tensor) -> Tensor:
    """Beam scores in the model's precision, at least float32."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _clone_rng(rng: torch.Generator) -> torch.Generator:
    g = torch.Generator()
    g.set_state(rng.get_state())
    return g


# ----------------------------------------------------------------------------------------------
# greedy decoding (no constraints), for first looks at a model
# ----------------------------------------------------------------------------------------------

def greedy_decode(model: torch.nn.Module, vocab: Vocab | Sequence[str], keyword: str, length: int,
                  labels: Any = (-1, -1), seed: int = 0) -> list[str]:
    """Four lines of exactly ``length`` characters, each the argmax character at every step.

    No tone, rhyme or repetition constraint; only specials are excluded (UNK, PAD, <B>, and <E> before
    the line is full). The latent sample and inferred labels are drawn as in :meth:`Generator.generate`
    (same seed → same latent), and the context chain is the same. Shows what the network writes unaided.
    """
    gen = Generator(model, vocab, ToneRhyme.from_strings("", ""), None, GenConfig(beam_size=1))
    req = gen._requests([keyword], length, labels, 1, seed)[0]
    banned = torch.tensor([PAD, UNK, BOS, EOS], device=gen.device)
    lines: list[str] = []
    with gen._eval_mode():
        _, s0, length_oh = gen._init_poems([req])
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


# ----------------------------------------------------------------------------------------------
# speed
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GenerationBenchmark:
    """Throughput of :func:`benchmark_generation`."""

    poems_per_s: float  # end to end: the full ladder as a user would run it (wall clock)
    decode_poems_per_s: float  # raw decode: exactly one forced-end beam search per line, no retries (wall clock)
    seconds: float
    decode_seconds: float
    cpu_seconds: float  # process CPU time (all threads): with one thread, the cost on an idle core
    decode_cpu_seconds: float
    threads: int
    n_poems: int
    length: int
    beam: int
    max_batch_poems: int
    relaxation_counts: dict[int, int]
    n_ok: int


def benchmark_generation(model: torch.nn.Module, vocab: Vocab | Sequence[str], n_poems: int, length: int,
                         beam: int, *, tone_rhyme: ToneRhyme | None = None, max_batch_poems: int = 128,
                         training_lines: Iterable[str] | None = None, seed: int = 0,
                         keywords: Sequence[str] | None = None) -> GenerationBenchmark:
    """Time ``n_poems`` poems of one length at one beam size (keywords: the most frequent real tokens).

    Returns end-to-end poems/s (the ladder, retries included; with random weights the strict rung runs
    all L + extra_steps positions before the forced-end rung) and raw decode poems/s (the ladder started
    at ``no_form_check``, i.e. exactly one forced-end beam search per line: what a trained model costs
    when its lines end at L), in wall-clock and process-CPU time. Thread count: torch's current setting.
    """
    vocab = vocab if isinstance(vocab, Vocab) else Vocab(tuple(vocab))
    if keywords is None:
        pool = [t for t in vocab.tokens[4:] if len(t) == 1]
        keywords = [pool[i % len(pool)] for i in range(n_poems)]
    keywords = list(keywords)[:n_poems]
    cfg = GenConfig(beam_size=beam)
    tr = tone_rhyme if tone_rhyme is not None else default_tone_rhyme()
    timings, cpu, results = {}, {}, {}
    for name, start in (("decode", NO_FORM_CHECK), ("e2e", STRICT)):
        gen = Generator(model, vocab, tr, training_lines, cfg, min_relaxation=start, max_batch_poems=max_batch_poems)
        t0, c0 = time.perf_counter(), time.process_time()
        results[name] = gen.generate(keywords, length, seed=seed)
        timings[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
    poems = results["e2e"]
    counts: dict[int, int] = {}
    for p in poems:
        counts[p.relaxation] = counts.get(p.relaxation, 0) + 1
    return GenerationBenchmark(len(poems) / timings["e2e"], len(results["decode"]) / timings["decode"],
                               timings["e2e"], timings["decode"], cpu["e2e"], cpu["decode"], torch.get_num_threads(),
                               len(poems), length, beam, max_batch_poems,
                               dict(sorted(counts.items())), sum(p.ok for p in poems))
