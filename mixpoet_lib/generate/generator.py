"""Quatrain generation (design §5): the :class:`Generator`.

One :class:`Generator` wraps any of the models (basic / fbasic / cvae / igs / aus) through the step-wise
interface they share (``encode_keyword``, ``init_decoder_state``, ``decode_step``, ``update_context``).
Poems are decoded line by line, many poems at once, with the constrained beam search of
:mod:`mixpoet_lib.generate.beam`; the bans, the post-filter and the relaxation ladder are described in
:mod:`mixpoet_lib.generate.constraints`, the poem under way and the finished :class:`GeneratedPoem` in
:mod:`mixpoet_lib.generate.poems`.

Procedure per poem (design §5.1–5.5)
----------------------------------
1. Encode the keyword; labels given as -1 are inferred with argmax p(y|w) (``infer_labels``); fbasic reads the
   requested labels as inputs, -1 as its "unknown" label.
2. Draw one latent sample from the prior with a per-poem :class:`torch.Generator` (CVAE, IGS, AUS; basic and
   fbasic have none), see :mod:`mixpoet_lib.generate.requests`. The seed of that generator is a hash of
   (``seed``, keyword, length, requested labels, sample number), so a poem does not depend on what else is in
   the batch or where it sits. Diversity at fixed inputs therefore comes only from the latent sample and the
   labels: the beam is deterministic.
3. For each line: constrained beam search, post-filter, pick the best survivor (climbing the relaxation
   ladder when none survives), update the pattern/rhyme state and the inter-line context with the chosen
   hypothesis' decoder states (the states after reading ``<B>, c1 … cL``, zeroed beyond and padded to 8,
   exactly as in training).

``form_ok`` on the result is an independent check of the finished poem
(:func:`~mixpoet_lib.data.rhythm.check_poem`): tone pattern and rhyme of lines 2 and 4.

API
---
* ``Generator(model, vocab, tone_rhyme, training_lines, gen_cfg, device).generate(keywords, length, labels,
  n_samples, seed)`` → list of :class:`GeneratedPoem`; ``.top_n_distinct(keywords, length, n)`` for a model
  without latent (the basic baseline's intra-topic diversity); ``.generate_from_s0`` for given decoder
  start states (e.g. interpolated latents); ``.decoder_start`` for the start states ``generate`` uses;
* argmax decoding without constraints (a first look at a model): :func:`mixpoet_lib.generate.greedy.greedy_decode`;
* poems per second, end to end and raw decode: :func:`mixpoet_lib.generate.bench.benchmark_generation`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from mixpoet_lib.config import GenConfig
from mixpoet_lib.data.rhythm import ToneRhyme, default_tone_rhyme, line_type, poem_pattern, rhyme_class
from mixpoet_lib.data.vocab import N_SPECIALS, Vocab
from mixpoet_lib.generate.beam import BeamResult, Candidate, beam_search, line_states
from mixpoet_lib.generate.constraints import (
    MAX_RELAXATION,
    N_LINES,
    SHORT_LINE,
    STRICT,
    ConstraintTables,
    LineConstraints,
    accept_line,
    closest_line_types,
    line_constraints,
    repetition_window,
)
from mixpoet_lib.generate.doubling import ReduplicationTable, earlier_doublings
from mixpoet_lib.generate.keyword import KeywordBonus
from mixpoet_lib.generate.poems import GeneratedPoem, PoemState, clone_rng, eval_mode
from mixpoet_lib.generate.requests import (
    PoemRequest,
    draw_latents,
    keyword_tensor,
    length_onehot,
    make_requests,
    prior_from_eps,
)
from mixpoet_lib.models.generators import PoetBase

__all__ = ["Generator"]

DEFAULT_GEN = GenConfig()  # the generation settings when none are given
# Beam rows (poems × beam) decoded together at most: memory per step is about rows × vocabulary floats, so
# wide beams decode fewer poems at a time (128 poems at the default beam 20; 12 at the largest beam, 200).
MAX_BEAM_ROWS = 2560


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
        gen_cfg: beam size, extra positions per line, novelty switch, latent outlier guard.
        device: where to decode (default: the model's device; the model is moved there if needed).
        repetition_rule: ``'attested'``, ``'intended'`` or ``'official'`` (default ``gen_cfg.repetition_rule``).
            ``'attested'`` measures where doubling is allowed on ``training_lines`` (even with the novelty filter
            off); without training lines it falls back to ``'intended'`` with a warning.
        max_relaxation: highest rung of the ladder to try (0 = official behaviour: fail instead of relax).
        min_relaxation: rung every line starts at (benchmarks use ``no_form_check`` to time exactly one beam
            search per line).
        max_batch_poems: poems decoded together (memory: about max_batch_poems × beam × V floats per step);
            fewer when the beam is wide, so that poems × beam stays ≤ :data:`MAX_BEAM_ROWS`.
    """

    def __init__(
        self,
        model: PoetBase,
        vocab: Vocab | Sequence[str],
        tone_rhyme: ToneRhyme | None = None,
        training_lines: Iterable[str] | None = None,
        gen_cfg: GenConfig = DEFAULT_GEN,
        device: torch.device | str | None = None,
        *,
        repetition_rule: str | None = None,
        max_relaxation: int = MAX_RELAXATION,
        min_relaxation: int = STRICT,
        max_batch_poems: int = 128,
    ) -> None:
        self.model = model
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab(tuple(vocab))
        if len(self.vocab) != model.vocab_size:
            raise ValueError(f"vocabulary has {len(self.vocab)} tokens but the model expects {model.vocab_size}")
        self.tr = tone_rhyme if tone_rhyme is not None else default_tone_rhyme()
        self.gen_cfg = gen_cfg
        lines = None if training_lines is None else frozenset(training_lines)
        rule = repetition_rule or gen_cfg.repetition_rule
        repetition_window(0, rule)  # validates the name
        if rule == "attested" and lines is None:
            warnings.warn("the 'attested' repetition rule needs the training lines; using 'intended'", stacklevel=2)
            rule = "intended"
        self.repetition_rule = rule
        if not 0 <= min_relaxation <= max_relaxation <= MAX_RELAXATION:
            raise ValueError(
                f"need 0 ≤ min_relaxation ≤ max_relaxation ≤ {MAX_RELAXATION}, got {min_relaxation}, {max_relaxation}"
            )
        self.min_relaxation, self.max_relaxation = min_relaxation, max_relaxation
        if gen_cfg.beam_size < 1:
            raise ValueError(f"beam_size must be ≥ 1, got {gen_cfg.beam_size}")
        if max_batch_poems < 1:
            raise ValueError(f"max_batch_poems must be ≥ 1, got {max_batch_poems}")
        self.max_batch_poems = max(1, min(max_batch_poems, MAX_BEAM_ROWS // gen_cfg.beam_size))
        self.training_lines = lines if gen_cfg.novelty_filter else None
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if next(model.parameters()).device != self.device:
            model.to(self.device)
        self.tables = ConstraintTables(self.vocab, self.tr, self.device)
        self.doubling = (
            ReduplicationTable.for_generation(lines, self.vocab, gen_cfg, self.device)
            if rule == "attested" and lines is not None
            else None
        )
        self.tokens = list(self.vocab.tokens)
        self.window = model.cfg.max_line_len + 1
        self.kind = getattr(model, "kind", "base")
        self.z_rejections = 0  # latent draws replaced by the outlier guard so far
        self._generic: dict[tuple[int, int], Tensor] = {}  # label pair → generic start state, see _generic_s0
        self.line_type = functools.lru_cache(maxsize=1 << 18)(lambda s: line_type(s, tr=self.tr))

    # -- public API ------------------------------------------------------------------------------
    def generate(
        self,
        keywords: Sequence[str] | str,
        length: int | Sequence[int],
        labels: Any = (-1, -1),
        n_samples: int = 1,
        seed: int = 0,
    ) -> list[GeneratedPoem]:
        """Generate ``n_samples`` poems per keyword (keyword-major order: kw0 s0, kw0 s1, …, kw1 s0 …).

        ``length`` and ``labels`` are one value for every keyword or one per keyword; a label pair holds
        ids or class names (e.g. ``('military', -1)``), -1 meaning "infer with p(y|w)" (fbasic: "unknown").
        Identical requests (keyword, length, labels, sample number, seed) give identical poems wherever they sit in
        the batch.
        """
        reqs = make_requests(self.vocab, self.kind, keywords, length, labels, n_samples, seed)
        out: list[GeneratedPoem] = []
        for start in range(0, len(reqs), self.max_batch_poems):
            chunk = reqs[start : start + self.max_batch_poems]
            with eval_mode(self.model):
                states, s0, length_oh = self._init_poems(chunk)
                ctx = self.model.initial_context(len(chunk), like=s0)
                self._run_lines(states, s0, length_oh, ctx, start_line=0)
                out.extend(st.result(self.tr) for st in states)
        return out

    def decoder_start(
        self,
        keywords: Sequence[str] | str,
        length: int | Sequence[int],
        labels: Any = (-1, -1),
        n_samples: int = 1,
        seed: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """The decoder start states s0 (P, S0) and length one-hots (P, 2) that :meth:`generate` decodes from.

        Same arguments and order as :meth:`generate` (the same latent draws, labels inferred the same way);
        use them to re-score generated poems or to build inputs for :meth:`generate_from_s0`.
        """
        reqs = make_requests(self.vocab, self.kind, keywords, length, labels, n_samples, seed)
        with eval_mode(self.model):
            _, s0, length_oh = self._init_poems(reqs)
        return s0, length_oh

    def top_n_distinct(
        self, keywords: Sequence[str] | str, length: int | Sequence[int], n: int, labels: Any = (-1, -1), seed: int = 0
    ) -> list[GeneratedPoem]:
        """N poems per keyword from the N best distinct first lines of its beam (keyword-major, as :meth:`generate`).

        The intra-topic diversity of a model without latent (Basic, fBasic): the beam of line 1 is widened to
        max(beam_size, n); its distinct surviving candidates are taken in rank order, climbing the relaxation ladder
        when fewer than n survive, and each is completed into a poem. Fewer than n distinct first lines → the missing
        poems come back failed (``ok=False``). Keywords are decoded together, as many as keep n poems per keyword
        within ``max_batch_poems``; a keyword gets the poems it gets alone (their beam scores may differ in the last
        bits of fp32, as the batch shape of the matrix products does).
        """
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        reqs = make_requests(self.vocab, self.kind, keywords, length, labels, 1, seed)
        per_chunk = max(1, self.max_batch_poems // n)
        out: list[GeneratedPoem] = []
        for start in range(0, len(reqs), per_chunk):
            with eval_mode(self.model):
                out.extend(self._top_n_chunk(reqs[start : start + per_chunk], n))
        return out

    def _top_n_chunk(self, reqs: Sequence[PoemRequest], n: int) -> list[GeneratedPoem]:
        """:meth:`top_n_distinct` for one batch of keywords."""
        firsts, s0, length_oh = self._init_poems(reqs)
        ctx0 = self.model.initial_context(len(reqs), like=s0)
        picked = self._distinct_first_lines(firsts, s0, length_oh, ctx0, n)
        polys: list[PoemState] = []
        owner: list[int] = []
        for j, (first, lines) in enumerate(zip(firsts, picked)):
            for cand, text, level, _, _ in lines:
                polys.append(PoemState(req=first.req, rng=clone_rng(first.rng), labels=first.labels))
                self._record(polys[-1], cand, text, level, 0)
                owner.append(j)
        if polys:
            rows = torch.tensor(owner, device=self.device)
            states = torch.cat([p[3] for lines in picked for p in lines])
            masks = torch.cat([p[4] for lines in picked for p in lines])
            ctx = self.model.update_context(ctx0[rows], states, masks)
            self._run_lines(polys, s0[rows], length_oh[rows], ctx, start_line=1)
        done = iter([st.result(self.tr) for st in polys])
        out: list[GeneratedPoem] = []
        for first, lines in zip(firsts, picked):
            out.extend(next(done) for _ in lines)
            failed = PoemState(
                req=first.req, rng=first.rng, labels=first.labels, failed_line=0, last_level=self.max_relaxation
            )
            out.extend(failed.result(self.tr) for _ in range(n - len(lines)))
        return out

    def generate_from_s0(self, keyword: str, length: int, s0: Tensor, seed: int = 0) -> list[GeneratedPoem]:
        """Decode one poem per row of a given decoder start state s0 (P, S0), e.g. an interpolated latent.

        The keyword only names the poems (s0 already holds it); labels are reported as (-1, -1).
        """
        if s0.dim() != 2 or s0.size(0) < 1:  # noqa: PLR2004 (a matrix: poems × state)
            raise ValueError(f"s0 must be (P, S0) with P ≥ 1, got shape {tuple(s0.shape)}")
        reqs = make_requests(self.vocab, self.kind, [keyword] * s0.size(0), length, None, 1, seed)
        with eval_mode(self.model):
            states = [PoemState(req=r, rng=torch.Generator().manual_seed(r.seed)) for r in reqs]
            s0 = s0.to(self.device)
            ctx = self.model.initial_context(len(reqs), like=s0)
            length_oh = length_onehot([r.length for r in reqs], s0.dtype, self.device)
            self._run_lines(states, s0, length_oh, ctx, start_line=0)
            return [st.result(self.tr) for st in states]

    # -- model glue ---------------------------------------------------------------------------------
    def _init_poems(self, reqs: Sequence[PoemRequest]) -> tuple[list[PoemState], Tensor, Tensor]:
        """Return per-poem states, s0 (P, S0) and the length one-hots (P, 2) (latent drawn per poem)."""
        m: Any = self.model  # decoder_s0, infer_labels and the prior depend on the kind
        states = [PoemState(req=r, rng=torch.Generator().manual_seed(r.seed)) for r in reqs]
        h_w = m.encode_keyword(keyword_tensor(self.vocab, [r.keyword for r in reqs], self.device))
        labels = torch.tensor([r.labels for r in reqs], dtype=torch.long, device=self.device)
        if self.kind == "basic":
            s0 = m.decoder_s0(h_w)
            ids = None
        elif self.kind == "fbasic":  # the requested labels are inputs, -1 = "unknown"
            s0, ids = m.decoder_s0(h_w, labels), labels
        elif self.kind in ("cvae", "igs", "aus"):
            ids = m.infer_labels(h_w, labels) if self.kind != "cvae" else None
            y = [ids[:, k] for k in range(ids.size(1))] if ids is not None else []
            z, rejected = draw_latents(
                functools.partial(prior_from_eps, m, contrast=self.gen_cfg.mixture_contrast),
                h_w,
                y,
                [st.rng for st in states],
                m.cfg.latent_size,
                self.gen_cfg.z_candidates,
                self.gen_cfg.z_outlier_ratio,
            )
            self.z_rejections += rejected
            s0 = m.decoder_s0(z, h_w, y, self.gen_cfg.mixture_contrast) if y else m.decoder_s0(z, h_w)
        else:
            raise ValueError(f"unsupported model kind {self.kind!r}")
        if ids is not None:
            for st, row in zip(states, ids.tolist()):
                st.labels = (int(row[0]), int(row[1]))
        return states, s0, length_onehot([r.length for r in reqs], s0.dtype, self.device)

    def _beam(
        self,
        s0: Tensor,
        length_oh: Tensor,
        ctx: Tensor,
        line_idx: int,
        states: Sequence[PoemState],
        rules: Sequence[LineConstraints],
        beam: int,
    ) -> BeamResult:
        """The batched beam search of line ``line_idx`` for the given poems (rows of s0, length_oh, ctx)."""
        return beam_search(
            self.model,
            self.tables,
            s0,
            length_oh,
            ctx,
            line_idx,
            [st.req.length for st in states],
            rules,
            [st.used for st in states],
            beam=beam,
            extra_steps=self.gen_cfg.extra_steps,
            repetition_rule=self.repetition_rule,
            doubling=self.doubling,
            earlier_doublings=earlier_doublings([st.lines for st in states], self.device),
            keyword=KeywordBonus.build(
                self.vocab,
                [st.req.keyword for st in states],
                [st.lines for st in states],
                self.gen_cfg.keyword_bonus,
                self.device,
            ),
            generic_s0=self._generic_s0(states),
            generic_weight=self.gen_cfg.generic_weight,
            doubling_penalty=self.gen_cfg.doubling_penalty,
        )

    def _generic_s0(self, states: Sequence[PoemState]) -> Tensor | None:
        """The generic start state (design §5.9), one row per poem; None when the anti-generic weight is 0.

        It is the mean of the start states of the ``generic_keywords`` most frequent characters as keywords (one
        latent draw each, seed 0), computed once per generator and label pair: with labels inferred, or with each
        poem's own labels under ``gen.generic_per_label`` (design §5.11). A property of the model and the poem's
        own request, so a poem still does not depend on the rest of its batch.
        """
        if self.gen_cfg.generic_weight == 0:
            return None
        keys = [st.labels if self.gen_cfg.generic_per_label else (-1, -1) for st in states]
        for key in set(keys) - set(self._generic):
            pool = [t for t in self.tokens[N_SPECIALS:] if len(t) == 1][: self.gen_cfg.generic_keywords]
            reqs = make_requests(self.vocab, self.kind, pool, SHORT_LINE, key, 1, 0)
            self._generic[key] = self._init_poems(reqs)[1].mean(0, keepdim=True)
        return torch.cat([self._generic[k] for k in keys])

    # -- poem loop ------------------------------------------------------------------------------------
    def _run_lines(self, states: list[PoemState], s0: Tensor, length_oh: Tensor, ctx: Tensor, start_line: int) -> None:
        for i in range(start_line, N_LINES):
            active = [p for p, st in enumerate(states) if st.active]
            if not active:
                return
            ctx = self._generate_line(states, active, i, s0, length_oh, ctx)

    def _generate_line(
        self, states: list[PoemState], active: list[int], i: int, s0: Tensor, length_oh: Tensor, ctx: Tensor
    ) -> Tensor:
        """Decode line i for the active poems, climbing the ladder per poem; return the updated context."""
        level = {p: self.min_relaxation for p in active}
        pending = active
        while pending:
            rules = [self._rules(states[p], i, level[p]) for p in pending]
            idx = torch.tensor(pending, device=self.device)
            result = self._beam(
                s0[idx], length_oh[idx], ctx[idx], i, [states[p] for p in pending], rules, self.gen_cfg.beam_size
            )
            chosen: list[tuple[int, Candidate, str, int]] = []  # poem, candidate, text, rung
            retry = []
            for j, p in enumerate(pending):
                hit = self._climb(result.candidates[j], states[p], i, level[p], rules[j])
                if isinstance(hit, int):
                    level[p] = hit
                    retry.append(p)
                elif hit is not None:
                    chosen.append((p, *hit))
            if chosen:
                poems = [c[0] for c in chosen]
                for p, cand, text, lvl in chosen:
                    self._record(states[p], cand, text, lvl, i)
                new_states, mask = line_states(
                    result, [c[1] for c in chosen], [states[p].req.length for p in poems], self.window
                )
                rows = torch.tensor(poems, device=self.device)
                ctx = ctx.clone()
                ctx[rows] = self.model.update_context(ctx[rows], new_states, mask)
            pending = retry
        return ctx

    def _climb(
        self, cands: list[Candidate], st: PoemState, i: int, level: int, rules: LineConstraints
    ) -> tuple[Candidate, str, int] | int | None:
        """Post-filter a beam's candidates, climbing rungs that keep the same beam constraints.

        Returns (candidate, text, rung) when one is accepted, the first rung needing a new beam search (an
        int), or None when the ladder is exhausted (the poem is marked failed).
        """
        while True:
            hit = self._first_accepted(cands, st, i, level)
            if hit is not None:
                return (*hit, level)
            level += 1
            if level > self.max_relaxation:
                st.failed_line, st.last_level = i, self.max_relaxation
                return None
            if self._rules(st, i, level) != rules:
                return level

    def _rules(self, st: PoemState, i: int, level: int) -> LineConstraints:
        return line_constraints(i, st.req.length, level, st.pattern, st.rhyme, bool(st.used))

    def _accept(self, cand: Candidate, st: PoemState, i: int, level: int) -> str | None:
        return accept_line(
            cand.ids, self.tokens, st.req.length, i, level, st.pattern, self.training_lines, self.line_type
        )

    def _first_accepted(
        self, cands: list[Candidate], st: PoemState, i: int, level: int
    ) -> tuple[Candidate, str] | None:
        for cand in cands:
            text = self._accept(cand, st, i, level)
            if text is not None:
                return cand, text
        return None

    def _distinct_first_lines(
        self, firsts: Sequence[PoemState], s0: Tensor, length_oh: Tensor, ctx0: Tensor, n: int
    ) -> list[list[tuple[Candidate, str, int, Tensor, Tensor]]]:
        """Per poem, up to n distinct accepted first lines of one widened beam: (candidate, text, rung, states, mask).

        Every rung re-runs the beam only for the poems whose beam constraints it changes, all of them together."""
        beam = max(self.gen_cfg.beam_size, n)
        picked: list[list[tuple[Candidate, str, int, Tensor, Tensor]]] = [[] for _ in firsts]
        seen: list[set[str]] = [set() for _ in firsts]
        beams: dict[int, tuple[LineConstraints, BeamResult, int]] = {}  # poem → rules, beam result, its item there
        for level in range(self.min_relaxation, self.max_relaxation + 1):
            active = [j for j in range(len(firsts)) if len(picked[j]) < n]
            rules = {j: self._rules(firsts[j], 0, level) for j in active}
            redo = [j for j in active if j not in beams or beams[j][0] != rules[j]]
            if redo:
                idx = torch.tensor(redo, device=self.device)
                result = self._beam(
                    s0[idx], length_oh[idx], ctx0[idx], 0, [firsts[j] for j in redo], [rules[j] for j in redo], beam
                )
                beams.update({j: (rules[j], result, item) for item, j in enumerate(redo)})
            for j in active:
                _, result, item = beams[j]
                for cand in result.candidates[item]:
                    text = self._accept(cand, firsts[j], 0, level)
                    if text is not None and text not in seen[j]:
                        seen[j].add(text)
                        states = line_states(result, [cand], [firsts[j].req.length], self.window)
                        picked[j].append((cand, text, level, *states))
                        if len(picked[j]) == n:
                            break
        return picked

    def _record(self, st: PoemState, cand: Candidate, text: str, level: int, i: int) -> None:
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
