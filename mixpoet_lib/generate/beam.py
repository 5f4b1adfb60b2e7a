"""The constrained beam search of one line (design §5.2–5.4), batched over poems and hypotheses.

For every character position **one** ``decode_step`` call serves every live hypothesis of every item in
the batch; the constraints come from :mod:`mixpoet_lib.generate.constraints`
(:class:`~mixpoet_lib.generate.constraints.LineBans`: the per-line and per-position bans, a boolean (items × V)
tensor per position; :func:`~mixpoet_lib.generate.constraints.inline_banned`: the ids the in-line repetition rule
bans) and :mod:`mixpoet_lib.generate.doubling`, and are written into the scores in place (design §5.2).

Scores are accumulated log-probabilities; banned tokens get -inf (the official code adds +1e5 to the cost,
which lets a banned token through when nothing else is left; here such a hypothesis simply dies). At
position 0 only one row per item is expanded, so the first B tokens are distinct; afterwards the best
``n_live`` entries of each item's flattened (live × V) matrix are kept and hypotheses that pick ``<E>``
leave the beam. Completed hypotheses are ranked by cost / tokens (``<E>`` included).

Speed. The network dominates: per 5-character poem at paper size (V ≈ 6,000, beam 20) the beam needs
4 × (1 + 20 × 5) decoder rows, each ≈ 10 MFLOP (output projection 6.1, GRU 3.1, input map 0.8), i.e.
≈ 4 GFLOP (7-character: ≈ 5.7 GFLOP). Batching many poems turns the per-step work into large GEMMs and
removes the per-poem Python bookkeeping; on a CPU the throughput is then bounded by GEMM speed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from mixpoet_lib.data.vocab import BOS, EOS
from mixpoet_lib.generate.constraints import ConstraintTables, LineBans, LineConstraints, inline_banned
from mixpoet_lib.generate.doubling import ReduplicationTable, doubling_barred
from mixpoet_lib.generate.keyword import KeywordBonus
from mixpoet_lib.models.generators import PoetBase

__all__ = ["Candidate", "BeamResult", "beam_search", "line_states", "score_dtype"]

NEG_INF = float("-inf")


@dataclass
class Candidate:
    """One completed hypothesis of a line."""

    norm: float  # log-prob per generated token (<E> included)
    ids: list[int]  # generated characters before <E>
    step: int  # position at which <E> was chosen
    row: int  # row of that position's decoder states that produced <E>


@dataclass
class BeamResult:
    """Output of :func:`beam_search`: candidates per item, and what :func:`line_states` needs."""

    candidates: list[list[Candidate]]  # per item, best first
    states: list[Tensor]  # states[k]: decoder outputs after step k (rows of step k's layout), k ≤ max L
    parents: list[Tensor | None]  # parents[k]: row of step k-1 for each row of step k


@dataclass
class _Generic:
    """The anti-generic term of the scores: the decoder run from a generic start state beside the poem's."""

    weight: float
    states: Tensor  # decoder states of the generic run, same row layout as the beam's


@dataclass
class _Beam:
    """The live hypotheses: ``beam`` rows per item (row j·beam + b is slot b of item j)."""

    item_of: Tensor  # item of each row
    parent_row: Tensor  # row of the previous position's layout each row extends
    tok: Tensor  # last token of each row
    cost: Tensor  # accumulated log-probability
    valid: Tensor  # the row holds a hypothesis (not -inf, not an unused slot)
    hist: Tensor  # [<B>, c1, …, ck] of each row


def score_dtype(logits: Tensor) -> Tensor:
    """Beam scores in the model's precision, at least float32."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def beam_search(
    model: PoetBase,
    tables: ConstraintTables,
    s0: Tensor,
    length_oh: Tensor,
    ctx: Tensor,
    line_idx: int,
    lengths: Sequence[int],
    rules: Sequence[LineConstraints],
    used: Sequence[Collection[int]],
    *,
    beam: int,
    extra_steps: int,
    repetition_rule: str,
    doubling: ReduplicationTable | None = None,
    earlier_doublings: Tensor | None = None,
    keyword: KeywordBonus | None = None,
    generic_s0: Tensor | None = None,
    generic_weight: float = 0.0,
    doubling_penalty: float = 0.0,
) -> BeamResult:
    """Constrained beam search of line ``line_idx`` for n items at once (item j: row j of s0, ctx, …).

    Lines run up to L + ``extra_steps`` positions (L + 1 under ``force_end``); ``used``: earlier characters
    (banned where ``cross_ban``); ``doubling``/``earlier_doublings``: the attested rule. Search terms (design §5.3,
    §5.8, §5.9): ``keyword`` bonus, log p(c | s0, …) − ``generic_weight`` · log p(c | ``generic_s0``, …),
    ``doubling_penalty`` nats per doubling. Candidates per item, best first (ties keep completion order)."""
    dev, n, v = tables.device, len(lengths), tables.vocab_size
    lens = torch.tensor(list(lengths), device=dev)
    force = torch.tensor([r.force_end for r in rules], device=dev)
    max_pos = torch.where(force, lens + 1, lens + extra_steps)  # positions 0..max_pos-1
    bans = LineBans(tables, lengths, rules, used, int(max_pos.max()))
    l_max = max(lengths)
    first, h, generic = _start(model, s0, length_oh, ctx, line_idx, generic_s0, generic_weight)
    states: list[Tensor] = [h]
    parents: list[Tensor | None] = [None]
    if keyword is not None:
        keyword.add_to_(first, torch.full((n, 1), BOS, device=dev), torch.arange(n, device=dev))
    hyps = _first_position(first, bans, beam)
    ctx_rep = ctx.repeat_interleave(beam, 0)
    done: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = []  # item, norm, step, row, ids
    k = 0
    while True:
        _complete(hyps, k, done)
        alive = hyps.valid & (hyps.tok != EOS) & (k + 1 < max_pos[hyps.item_of])
        if not bool(alive.any()):
            break
        k += 1
        parents.append(hyps.parent_row)
        scores, h = _expand(model, hyps, h, alive, ctx_rep, generic)
        if k <= l_max:
            states.append(h)
        scores.view(n, beam, v).masked_fill_(bans.at(k).unsqueeze(1), NEG_INF)
        _ban_repeats(scores, hyps, repetition_rule, doubling, earlier_doublings, lens)
        _prefer(scores, hyps, keyword, doubling_penalty)
        hyps = _select(scores, hyps, alive, n, beam)
    return BeamResult(_collect(done, n), states, parents)


def _first_position(logp: Tensor, bans: LineBans, beam: int) -> _Beam:
    """Position 0: one row per item, whose best ``beam`` tokens start the hypotheses (padded with -inf)."""
    n, v = logp.shape
    scores = logp.masked_fill(bans.at(0), NEG_INF)
    kk = min(beam, v)
    top, idx = scores.topk(kk, dim=-1)
    if kk < beam:
        top = torch.cat([top, top.new_full((n, beam - kk), NEG_INF)], 1)
        idx = torch.cat([idx, idx.new_zeros((n, beam - kk))], 1)
    item_of = torch.arange(n, device=logp.device).repeat_interleave(beam)
    tok = idx.reshape(-1)
    cost = top.reshape(-1)
    return _Beam(
        item_of, item_of.clone(), tok, cost, torch.isfinite(cost), torch.stack([torch.full_like(tok, BOS), tok], 1)
    )


def _complete(hyps: _Beam, k: int, done: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]) -> None:
    """Record the hypotheses that picked <E> at position k (normalised by k + 1 tokens)."""
    finished = hyps.valid & (hyps.tok == EOS)
    if bool(finished.any()):
        sel = finished.nonzero().squeeze(1)
        done.append(
            (
                hyps.item_of[sel],
                hyps.cost[sel] / (k + 1),
                torch.full_like(sel, k),
                hyps.parent_row[sel],
                hyps.hist[sel, 1:-1],
            )
        )


def _start(
    model: PoetBase,
    s0: Tensor,
    length_oh: Tensor,
    ctx: Tensor,
    line_idx: int,
    generic_s0: Tensor | None,
    generic_weight: float,
) -> tuple[Tensor, Tensor, _Generic | None]:
    """Position 0: log p of the first character (minus the generic term), the decoder states, the generic run."""
    bos = torch.full((s0.size(0),), BOS, dtype=torch.long, device=s0.device)
    logits, h = model.decode_step(bos, model.init_decoder_state(s0, length_oh, line_idx), ctx)
    first = torch.log_softmax(score_dtype(logits), -1)
    if generic_s0 is None or generic_weight <= 0:
        return first, h, None
    logits_g, h_g = model.decode_step(bos, model.init_decoder_state(generic_s0, length_oh, line_idx), ctx)
    return (
        first.sub_(torch.log_softmax(score_dtype(logits_g), -1), alpha=generic_weight),
        h,
        _Generic(generic_weight, h_g),
    )


def _ban_repeats(
    scores: Tensor,
    hyps: _Beam,
    rule: str,
    doubling: ReduplicationTable | None,
    earlier_doublings: Tensor | None,
    lens: Tensor,
) -> None:
    """Set the scores of the in-line repetition rule's banned tokens to -inf in place, and under the attested rule
    the doubling of each barred row's last character (a scatter each: a handful of entries per row)."""
    banned = inline_banned(hyps.hist, rule)
    if banned.size(1):
        scores.scatter_(1, banned, NEG_INF)
    if doubling is not None:
        before = earlier_doublings if earlier_doublings is not None else lens.new_zeros(lens.size(0))
        rows = doubling_barred(doubling, hyps.hist, hyps.item_of, lens, before).nonzero().squeeze(1)
        scores[rows, hyps.hist[rows, -1]] = NEG_INF


def _prefer(scores: Tensor, hyps: _Beam, keyword: KeywordBonus | None, doubling_penalty: float) -> None:
    """Add the keyword bonus and take the doubling penalty (the next character repeating ``hyps.tok``) in place."""
    if keyword is not None:
        keyword.add_to_(scores, hyps.hist, hyps.item_of)
    if doubling_penalty:
        scores.scatter_add_(1, hyps.tok.unsqueeze(1), scores.new_full((scores.size(0), 1), -doubling_penalty))


def _expand(
    model: PoetBase, hyps: _Beam, h: Tensor, alive: Tensor, ctx_rep: Tensor, generic: _Generic | None
) -> tuple[Tensor, Tensor]:
    """One decoder step for the live rows: scores (rows, V) = cost + log p − weight · log p_generic (-inf for
    dead rows) and the new states; the generic run's states are advanced in place."""
    live = None if bool(alive.all()) else alive
    logp, h = _log_probs(model, hyps.tok, h[hyps.parent_row], ctx_rep, live, NEG_INF)
    if generic is not None:
        logp_g, generic.states = _log_probs(model, hyps.tok, generic.states[hyps.parent_row], ctx_rep, live, 0.0)
        logp = logp.sub_(logp_g, alpha=generic.weight)
    return logp.add_(hyps.cost.unsqueeze(1)), h


def _log_probs(
    model: PoetBase, tok: Tensor, hidden: Tensor, ctx: Tensor, live: Tensor | None, fill: float
) -> tuple[Tensor, Tensor]:
    """log p(next | hidden) for the ``live`` rows (a bool mask; all when None; the others get ``fill``), and the
    new states. Only the live rows are decoded; each row of the (rows, V) result is written once."""
    if live is None:
        logits, h = model.decode_step(tok, hidden, ctx)
        return torch.log_softmax(score_dtype(logits), -1), h
    rows, dead = live.nonzero().squeeze(1), (~live).nonzero().squeeze(1)
    logits_a, h_a = model.decode_step(tok[rows], hidden[rows], ctx[rows])
    h = hidden.index_copy(0, rows, h_a)
    logp_a = torch.log_softmax(score_dtype(logits_a), -1)
    logp = logp_a.new_empty((tok.numel(), logp_a.size(1))).index_copy_(0, rows, logp_a)
    return logp.index_fill_(0, dead, fill), h


def _select(scores: Tensor, hyps: _Beam, alive: Tensor, n: int, beam: int) -> _Beam:
    """Keep the best ``n_live`` entries of each item's flattened (beam × V) score matrix."""
    v = scores.size(1)
    n_live = alive.view(n, beam).sum(1)
    top, idx = scores.view(n, beam * v).topk(beam, dim=-1)
    slot_ok = torch.arange(beam, device=scores.device).unsqueeze(0) < n_live.unsqueeze(1)
    parent_row = (hyps.item_of.view(n, beam) * beam + idx // v).reshape(-1)
    tok = (idx % v).reshape(-1)
    return _Beam(
        hyps.item_of,
        parent_row,
        tok,
        top.reshape(-1),
        (slot_ok & torch.isfinite(top)).reshape(-1),
        torch.cat([hyps.hist[parent_row], tok.unsqueeze(1)], 1),
    )


def _collect(done: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]], n: int) -> list[list[Candidate]]:
    """Completed hypotheses per item, best first (stable: ties keep completion order)."""
    out: list[list[Candidate]] = [[] for _ in range(n)]
    for item, norm, step, row, hist in done:
        for it, nm, sp, rw, ids in zip(item.tolist(), norm.tolist(), step.tolist(), row.tolist(), hist.tolist()):
            out[it].append(Candidate(nm, ids, sp, rw))
    for cands in out:
        cands.sort(key=lambda c: -c.norm)
    return out


def line_states(
    result: BeamResult, cands: Sequence[Candidate], lengths: Sequence[int], window: int
) -> tuple[Tensor, Tensor]:
    """Decoder states after reading <B>, c1 … cL of each chosen candidate, zero-padded to ``window``.

    Returns the states (m, window, H) and their mask (m, window), as the inter-line context update expects
    (exactly the layout of training).
    """
    dev = result.states[0].device
    steps = torch.tensor([c.step for c in cands], device=dev)
    cur = torch.tensor([c.row for c in cands], device=dev)
    lens = torch.tensor(list(lengths), device=dev)
    out = result.states[0].new_zeros(len(cands), window, result.states[0].size(1))
    for k in range(int(steps.max()), -1, -1):
        active = steps >= k
        if k < len(result.states) and k < window:
            take = (active & (lens >= k)).nonzero().squeeze(1)
            if take.numel():
                out[take, k] = result.states[k][cur[take]]
        if k > 0:
            par = cast(Tensor, result.parents[k])  # only position 0 has no parents
            cur = torch.where(active, par[cur.clamp(max=par.numel() - 1)], cur)
    mask = torch.arange(window, device=dev).unsqueeze(0) <= lens.unsqueeze(1)
    return out, mask
