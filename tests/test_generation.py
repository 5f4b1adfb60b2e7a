"""Constrained, batched beam-search generation (mixpoet_lib.generate.generator) and the ``mixpoet generate`` command."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mixpoet_lib.checkpoints import build_model, load_generator, save_checkpoint
from mixpoet_lib.cli import app as cli
from mixpoet_lib.config import GenConfig, get_profile
from mixpoet_lib.data.rhythm import (
    N_RHYME_CLASSES,
    ToneRhyme,
    check_poem,
    find_crrd_dir,
    line_type,
    load_tone_rhyme,
    poem_pattern,
    position_template,
    rhyme_classes_of,
    rhyme_mask,
    tone_ban_mask,
    tone_masks,
    tone_of,
)
from mixpoet_lib.data.vocab import BOS, EOS, N_SPECIALS, PAD, SPECIALS, UNK, Vocab
from mixpoet_lib.generate.beam import beam_search
from mixpoet_lib.generate.bench import benchmark_generation
from mixpoet_lib.generate.constraints import (
    ANY_RHYME_ROW,
    FORCED_END,
    MAX_RELAXATION,
    NO_CROSS_LINE_BAN,
    NO_FORM_CHECK,
    NO_NOVELTY,
    NO_RHYME,
    NO_TONE,
    RELAXATION_LEVELS,
    STRICT,
    ConstraintTables,
    LineBans,
    LineConstraints,
    accept_line,
    closest_line_types,
    inline_banned,
    line_constraints,
    repetition_window,
)
from mixpoet_lib.generate.generator import Generator
from mixpoet_lib.generate.greedy import greedy_decode
from mixpoet_lib.generate.keyword import KeywordBonus
from mixpoet_lib.generate.poems import GeneratedPoem
from mixpoet_lib.generate.requests import draw_latents, keyword_tensor, prior_from_eps

# A tiny hand-made tone/rhyme table over real characters (the tones are not meant to be historically right).
LEVEL = "天风山春花时人云江秋心年声空中归高烟愁眠前园家情东"
OBLIQUE = "月雨草树水路夜色客日影意去老落处望寺海酒"
BOTH = "看思重过"  # listed in both files (polyphonic)
NEITHER = "一兮"  # in neither file
RHYMES = {**{c: 1 for c in "天年烟眠前园"}, **{c: 2 for c in "风中空东"}, **{c: 3 for c in "时归心情声家思"}}
TR = ToneRhyme.from_strings(LEVEL + BOTH, OBLIQUE + BOTH, RHYMES)
VOCAB = Vocab(SPECIALS + tuple(LEVEL + OBLIQUE + BOTH + NEITHER))
SMOKE = get_profile("smoke").model
KINDS = ("basic", "fbasic", "cvae", "igs", "aus")
KEYWORDS = ["春", "秋风", "月", "江"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: extra threads only add contention


def make_model(kind: str, seed: int = 0, eos_bias: float = 0.0, dtype: torch.dtype = torch.float32):
    torch.manual_seed(seed)
    m = build_model(kind, SMOKE, len(VOCAB)).to(dtype).eval()
    with torch.no_grad():
        m.out_proj.bias[EOS] += eos_bias
    return m


def gen(model, **kw) -> Generator:
    """A generator over the hand-made vocabulary; the attested doubling rule has its own tests (test_doubling)."""
    kw.setdefault("repetition_rule", "intended")
    cfg = kw.pop("gen_cfg", GenConfig(beam_size=6))
    return Generator(model, VOCAB, TR, kw.pop("training_lines", None), cfg, **kw)


# ----------------------------------------------------------------------------------------------
# pure helpers
# ----------------------------------------------------------------------------------------------


def test_repetition_window_tables():
    assert [repetition_window(k, "official") for k in range(7)] == [0, 0, 2, 2, 4, 4, 6]  # official window, design §5.3
    assert [repetition_window(k, "intended") for k in range(7)] == [0, 1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="bogus"):
        repetition_window(3, "bogus")


@pytest.mark.parametrize(
    "rule, hyp, banned",
    [
        # hypothesis [<B>, c1..ck] (ids; 10.. are characters) → ids banned at position k
        ("official", [BOS], set()),
        ("intended", [BOS], set()),
        ("official", [BOS, 10], set()),  # k=1: m=0, doubling c1 allowed
        ("intended", [BOS, 10], {BOS}),
        ("official", [BOS, 10, 11], {BOS, 10}),  # k=2: m=2
        ("intended", [BOS, 10, 11], {BOS, 10}),
        ("official", [BOS, 10, 11, 12], {BOS, 10}),  # k=3: m=2 → c2 (11) may come back: the off-by-one
        ("intended", [BOS, 10, 11, 12], {BOS, 10, 11}),
        ("official", [BOS, 10, 10, 12, 13], {BOS, 10, 12}),  # k=4: m=4
        ("intended", [BOS, 10, 10, 12, 13], {BOS, 10, 12}),
        ("intended", [BOS, 10, 11, 11], {BOS, 10, 11}),  # after a doubling, no tripling
        ("official", [BOS, 10, 11, 11], {BOS, 10}),  # official: k=3 → 11 allowed a third time
        ("official", [BOS, 10, 11, 12, 13, 14], {BOS, 10, 11, 12}),  # k=5: m=4 → c4 (13) and c5 (14) allowed
        ("intended", [BOS, 10, 11, 12, 13, 14], {BOS, 10, 11, 12, 13}),
    ],
)
def test_inline_banned_hand_tables(rule, hyp, banned):
    assert set(inline_banned(torch.tensor([hyp]), rule)[0].tolist()) == banned


def test_constraint_tables_follow_tone_lists():
    tb = ConstraintTables(VOCAB, TR)
    ids = {ch: VOCAB.id(ch) for ch in LEVEL + OBLIQUE + BOTH + NEITHER}
    for ch, i in ids.items():
        t = tone_of(ch, tr=TR)
        assert bool(tb.tone[1, i]) == (t in "ZB")  # level position bans oblique + polyphonic
        assert bool(tb.tone[2, i]) == (t in "PB")  # oblique position bans level + polyphonic
        assert not tb.tone[0, i]
        for c in (1, 2, 3):
            assert bool(tb.rhyme[c, i]) == (c not in rhyme_classes_of(ch, tr=TR))
    assert not tb.tone[:, ids["一"]].any()  # neither list: never banned by tone
    assert tb.always[[UNK, PAD, BOS]].all() and not tb.always[EOS]


def test_closest_line_types():
    assert closest_line_types("天风月雨山", tr=TR) == [line_type("天风月雨山", tr=TR)] == [2]  # PPZZP
    ties = closest_line_types("一一一一一", tr=TR)
    assert ties == [0, 1, 2, 3]


def test_constraint_tables_are_built_from_the_rhythm_masks() -> None:
    """The beam's tone and rhyme rows are exactly rhythm.tone_ban_mask and the complement of rhythm.rhyme_mask."""
    tb = ConstraintTables(VOCAB, TR)
    tokens = list(VOCAB.tokens)
    masks = tone_masks(tokens, tr=TR)
    for value in (-1, 0, 1):
        assert tb.tone[value + 1].tolist() == tone_ban_mask(masks, value).tolist()
    real = np.arange(len(tokens)) >= len(SPECIALS)
    in_class = [rhyme_mask(tokens, c, tr=TR) & real for c in range(1, N_RHYME_CLASSES + 1)]
    for c, allowed in enumerate(in_class, start=1):
        assert (~tb.rhyme[c]).tolist() == allowed.tolist()
    assert (~tb.rhyme[ANY_RHYME_ROW]).tolist() == np.any(in_class, axis=0).tolist()
    assert not tb.rhyme[0].any() and tb.not_eos.sum() == len(tokens) - 1 and not tb.not_eos[EOS]


def test_line_constraints_follow_the_ladder() -> None:
    pattern = poem_pattern(2)  # line types (2, 1, 3, 2)
    strict = line_constraints(1, 5, STRICT, pattern, 3, True)
    assert strict == LineConstraints(False, position_template(1, 5), 3, True)
    forced = line_constraints(1, 5, FORCED_END, pattern, 3, True)
    assert forced == LineConstraints(True, position_template(1, 5), 3, True)
    for level in (NO_NOVELTY, NO_FORM_CHECK):  # post-filter rungs: the same beam
        assert line_constraints(1, 5, level, pattern, 3, True) == forced
    assert line_constraints(1, 5, NO_TONE, pattern, 3, True) == LineConstraints(True, None, 3, True)
    assert line_constraints(1, 5, NO_RHYME, pattern, 3, True) == LineConstraints(True, None, 0, True)
    assert line_constraints(1, 5, NO_CROSS_LINE_BAN, pattern, 3, True) == LineConstraints(True, None, 0, False)
    assert line_constraints(1, 7, STRICT, pattern, None, True).rhyme_row == ANY_RHYME_ROW  # line 2, no class yet
    assert line_constraints(3, 7, STRICT, pattern, None, True).rhyme_row == 0
    assert line_constraints(2, 7, STRICT, pattern, 3, True).rhyme_row == 0  # line 3 never rhymes
    assert line_constraints(0, 7, STRICT, None, None, False) == LineConstraints(False, None, 0, False)


def test_line_bans_per_position() -> None:
    """Item 0: 5 characters, template (-1, 1, 1, 0, 0), rhyme class 1, 天 used; item 1: 7, forced end, free."""
    tb = ConstraintTables(VOCAB, TR)
    rules = [LineConstraints(False, position_template(1, 5), 1, True), LineConstraints(True, None, 0, False)]
    bans = LineBans(tb, [5, 7], rules, [{VOCAB.id("天")}, {VOCAB.id("风")}], n_pos=8)

    def banned(k: int, item: int, chars: str) -> list[bool]:
        return [bool(bans.at(k)[item, VOCAB.id(ch)]) for ch in chars]

    for k in range(8):
        assert bans.at(k)[:, [UNK, PAD, BOS]].all()
    assert bans.at(0)[:, EOS].all() and banned(0, 0, "天风山月") == [True, False, False, False]
    assert banned(0, 1, "天风") == [False, False]  # no cross-line ban for item 1
    assert banned(1, 0, "山月看一") == [True, False, True, False]  # oblique position: level and polyphonic banned
    assert banned(3, 0, "山月看一") == [False, True, True, False]  # level position
    assert banned(4, 0, "年烟风山") == [False, False, True, True]  # last position: only rhyme class 1
    assert not bans.at(5)[0, EOS] and bans.at(5)[1, EOS]
    assert bans.at(7)[1].sum() == len(VOCAB) - 1 and not bans.at(7)[1, EOS]  # forced end: only <E>


def test_accept_line_post_filter() -> None:
    tokens = list(VOCAB.tokens)
    ids = VOCAB.encode("天风月雨山")  # PPZZP: type 2

    def accept(
        ids: list[int], i: int, level: int, pattern: tuple[int, ...] | None = None, lines: set[str] | None = None
    ) -> str | None:
        return accept_line(ids, tokens, 5, i, level, pattern, lines, lambda s: line_type(s, tr=TR))

    assert accept(ids, 0, STRICT) == "天风月雨山"
    assert accept(ids[:4], 0, MAX_RELAXATION) is None  # too short, at every rung
    assert accept(ids + VOCAB.encode("水"), 0, STRICT) == "天风月雨山"  # cut to L characters
    assert accept(ids, 0, FORCED_END, lines={"天风月雨山"}) is None  # novelty
    assert accept(ids, 0, NO_NOVELTY, lines={"天风月雨山"}) == "天风月雨山"
    assert accept(VOCAB.encode("一一一一一"), 0, NO_NOVELTY) is None  # line 1 unrecognised
    assert accept(VOCAB.encode("一一一一一"), 0, NO_FORM_CHECK) == "一一一一一"
    assert accept(ids, 3, STRICT, poem_pattern(2)) == "天风月雨山"  # line 4 of pattern (2, 1, 3, 2) is type 2
    assert accept(ids, 1, NO_NOVELTY, poem_pattern(2)) is None  # line 2 must be type 1
    assert accept(ids, 1, NO_FORM_CHECK, poem_pattern(2)) == "天风月雨山"


# ----------------------------------------------------------------------------------------------
# constraints in the output
# ----------------------------------------------------------------------------------------------


def assert_constraints(p, rule: str = "intended", tr: ToneRhyme = TR, vocab: Vocab = VOCAB):
    assert p.ok and len(p.lines) == 4 and len(p.line_relaxation) == 4
    assert p.relaxation == max(p.line_relaxation)
    specials = set(SPECIALS)
    for i, line in enumerate(p.lines):
        assert len(line) == p.length
        assert all(ch in vocab and ch not in specials for ch in line)
        assert inline_rule_ok(line, rule), (rule, line)
        if p.line_relaxation[i] < RELAXATION_LEVELS.index("no_cross_line_ban"):
            assert not set(line) & set("".join(p.lines[:i])), p.lines
        if i > 0 and p.line_relaxation[i] < RELAXATION_LEVELS.index("no_tone"):
            for ch, want in zip(line, position_template(p.pattern[i], p.length)):
                if want == 0:
                    assert tone_of(ch, tr=tr) in "P?", (line, ch)
                elif want == 1:
                    assert tone_of(ch, tr=tr) in "Z?", (line, ch)
        if i in (1, 3) and p.line_relaxation[i] < RELAXATION_LEVELS.index("no_rhyme") and p.rhyme_class:
            assert p.rhyme_class in rhyme_classes_of(line[-1], tr=tr), (p.lines, p.rhyme_class)
    t1 = line_type(p.lines[0], tr=tr)
    if t1 >= 0:
        assert p.pattern == poem_pattern(t1)
    if p.relaxation < RELAXATION_LEVELS.index("no_form_check"):
        assert p.form_ok and check_poem(p.lines, tr=tr).ok


@pytest.mark.parametrize("kind", KINDS)
def test_constraints_honoured_all_kinds(kind):
    g = gen(make_model(kind))
    poems = g.generate(KEYWORDS, [5, 7, 5, 7], n_samples=2, seed=1)
    assert len(poems) == 8 and [p.keyword for p in poems[:2]] == ["春", "春"]
    for p in poems:
        assert_constraints(p)
        if kind in ("igs", "aus"):
            assert all(lab >= 0 for lab in p.labels)  # inferred
        else:
            assert p.labels == (-1, -1)


def inline_rule_ok(line: str, rule: str) -> bool:
    """Every character of ``line`` is allowed by the in-line repetition rule ``rule``."""
    return all(ch not in line[: max(repetition_window(t, rule) - 1, 0)] for t, ch in enumerate(line))


def test_inline_rule_ok_tells_the_rules_apart() -> None:
    assert inline_rule_ok("天风月风", "official") and not inline_rule_ok("天风月风", "intended")  # c4 repeats c2
    assert inline_rule_ok("天风月雨山雨", "official") and not inline_rule_ok("天风月雨山雨", "intended")  # c6 = c4
    assert inline_rule_ok("天风风风", "official") and not inline_rule_ok("天风风风", "intended")  # tripling
    for line in ("天风天月", "天风月天", "天风月雨月"):  # c3 = c1, c4 = c1, c5 = c3: both rules ban them
        assert not inline_rule_ok(line, "official") and not inline_rule_ok(line, "intended")
    assert inline_rule_ok("天天风月", "intended") and inline_rule_ok("天天风月", "official")  # doubling


def test_official_repetition_rule_variant() -> None:
    """The official window lets through repetitions the intended rule bans: the two rules give different poems."""
    model = make_model("cvae", seed=3, eos_bias=2.0)
    cfg = GenConfig(beam_size=4, extra_steps=2)
    official = gen(model, repetition_rule="official", gen_cfg=cfg).generate(KEYWORDS, 7, n_samples=2, seed=2)
    intended = gen(model, gen_cfg=cfg).generate(KEYWORDS, 7, n_samples=2, seed=2)
    for p in official:
        assert_constraints(p, "official")
    for p in intended:
        assert_constraints(p, "intended")
    assert any(not inline_rule_ok(line, "intended") for p in official for line in p.lines)
    assert all(inline_rule_ok(line, "intended") for p in intended for line in p.lines)
    assert [p.lines for p in official] != [p.lines for p in intended]


def test_strict_success_passes_form_check():
    """With <E> favoured at position L the strict rung often succeeds; rungs < no_form_check give well-formed poems."""
    g = gen(make_model("aus", eos_bias=8.0), gen_cfg=GenConfig(beam_size=8))
    poems = g.generate(KEYWORDS, [5, 7, 5, 7], n_samples=3, seed=0)
    assert any(p.relaxation == 0 for p in poems)
    for p in poems:
        assert_constraints(p)


def test_constraints_with_real_crrd(mirror_dir):
    """The real THU-CRRD lists (polyphonic characters, characters without rhyme class) on a 600-character vocabulary."""
    tr = load_tone_rhyme(find_crrd_dir(mirror_dir))
    level = sorted(ch for ch in tr.level - tr.oblique if ch in tr.rhyme_classes)[:250]
    oblique = sorted(tr.oblique - tr.level)[:250]
    both = sorted(tr.both)[:50]
    plain = sorted(tr.level - tr.oblique - set(tr.rhyme_classes))[:50]
    vocab = Vocab(SPECIALS + tuple(dict.fromkeys(level + oblique + both + plain + list("秋风春月一"))))
    torch.manual_seed(0)
    model = build_model("aus", SMOKE, len(vocab)).eval()
    with torch.no_grad():
        model.out_proj.bias[EOS] += 8.0
    g = Generator(model, vocab, tr, None, GenConfig(beam_size=8), repetition_rule="intended")
    poems = g.generate(["秋风", "春", "月"], [5, 7, 7], n_samples=3, seed=0)
    for p in poems:
        assert_constraints(p, tr=tr, vocab=vocab)
    assert sum(p.relaxation < 3 and p.form_ok for p in poems) >= 3


def test_novelty_filter_rejects_training_lines():
    model = make_model("cvae", eos_bias=8.0)
    first = gen(model).generate(["春"], 5, seed=4)[0]
    again = gen(model, training_lines={first.lines[0]}).generate(["春"], 5, seed=4)[0]
    assert again.lines[0] != first.lines[0]
    off = gen(model, training_lines={first.lines[0]}, gen_cfg=GenConfig(beam_size=6, novelty_filter=False))
    assert off.generate(["春"], 5, seed=4)[0].lines == first.lines


# ----------------------------------------------------------------------------------------------
# batching, seeding, scores
# ----------------------------------------------------------------------------------------------


def test_batched_equals_one_at_a_time():
    model = make_model("aus", seed=5, dtype=torch.float64)  # float64: no near-ties from batch-size-dependent BLAS
    kws, lens, labs = ["春", "秋风", "月"], [5, 7, 5], [(0, 1), (-1, -1), ("countryside", "prosperous")]
    batched = gen(model).generate(kws, lens, labels=labs, n_samples=2, seed=3)
    chunked = gen(model, max_batch_poems=4).generate(kws, lens, labels=labs, n_samples=2, seed=3)
    single = [
        p
        for kw, ln, lab in zip(kws, lens, labs)
        for p in gen(model).generate([kw], ln, labels=lab, n_samples=2, seed=3)
    ]
    for a, b, c in zip(batched, chunked, single):
        assert a.lines == b.lines == c.lines and a.labels == c.labels and a.line_relaxation == c.line_relaxation
        assert a.score == pytest.approx(c.score, abs=1e-9)
    assert batched[0].labels == (0, 1) and batched[4].labels == (1, 0)


def test_batched_equals_single_float32():
    model = make_model("igs", seed=6)
    batched = gen(model).generate(KEYWORDS, 5, seed=7)
    single = [gen(model).generate([kw], 5, seed=7)[0] for kw in KEYWORDS]
    assert [p.lines for p in batched] == [p.lines for p in single]


def test_determinism_and_seed_dependence():
    model = make_model("cvae", seed=2)
    a = gen(model).generate(KEYWORDS, 5, n_samples=2, seed=11)
    b = gen(model).generate(KEYWORDS, 5, n_samples=2, seed=11)
    c = gen(model).generate(KEYWORDS, 5, n_samples=2, seed=12)
    assert a == b
    assert [p.lines for p in a] != [p.lines for p in c]
    assert a[0].lines != a[1].lines or a[2].lines != a[3].lines  # samples differ through the latent


def test_scores_and_context_match_teacher_forced_decode():
    """Per-line scores equal a teacher-forced re-scoring by model.decode (same s0, context padded to 8)."""
    model = make_model("aus", seed=8, eos_bias=3.0, dtype=torch.float64)
    g = gen(model, gen_cfg=GenConfig(beam_size=6, extra_steps=1))
    for length in (5, 7):
        p = g.generate(["秋风"], length, labels=(2, 1), seed=9)[0]
        assert p.ok
        s0, length_oh = g.decoder_start(["秋风"], length, (2, 1), seed=9)
        with torch.no_grad():
            lines = torch.full((1, 4, 8), PAD, dtype=torch.long)
            for i, line in enumerate(p.lines):
                lines[0, i, :length] = torch.tensor(VOCAB.encode(line))
                lines[0, i, length] = EOS
            dec = model.decode(s0, lines, length_oh)
            logp = torch.log_softmax(dec.full_logits(), -1).gather(-1, dec.targets.unsqueeze(-1)).squeeze(-1)
            per_line = (logp * dec.mask).sum(-1)[0] / (length + 1)
        assert per_line.tolist() == pytest.approx(list(p.line_scores), abs=1e-8)


# ----------------------------------------------------------------------------------------------
# relaxation ladder
# ----------------------------------------------------------------------------------------------


def test_relaxation_ladder_counts_and_strict_failure():
    model = make_model("aus", seed=4)
    full = gen(model).generate(KEYWORDS, [5, 7, 5, 7], n_samples=2, seed=5)
    strict = gen(model, max_relaxation=0).generate(KEYWORDS, [5, 7, 5, 7], n_samples=2, seed=5)
    assert all(p.ok for p in full)
    assert sum(p.relaxation > 0 for p in full) >= 4  # an untrained model needs the ladder
    for a, b in zip(full, strict):
        if a.relaxation == 0:
            assert b.ok and b.lines == a.lines
        else:  # the official behaviour: the poem fails, and says so
            assert not b.ok and b.lines == () and b.failed_line is not None and b.form_ok is False
            assert b.failed_line == min(i for i, lvl in enumerate(a.line_relaxation) if lvl > 0)


def test_ladder_reaches_cross_line_rung_on_exhausted_vocabulary():
    """With too few characters for four lines, the last rung is used (or the poem fails, never half-made)."""
    small = Vocab(SPECIALS + tuple("天风山春花时月雨草树水路"))
    torch.manual_seed(0)
    model = build_model("cvae", SMOKE, len(small)).eval()
    g = Generator(model, small, TR, None, GenConfig(beam_size=4), repetition_rule="intended")
    for p in g.generate(["春", "月"], 7, seed=0):
        if p.ok:
            assert len(p.lines) == 4 and p.relaxation == MAX_RELAXATION
        else:
            assert p.lines == () and p.relaxation == MAX_RELAXATION
    failing = Generator(model, small, TR, None, GenConfig(beam_size=4), max_relaxation=3)
    p = failing.generate(["春"], 7, seed=0)[0]
    assert not p.ok and p.lines == () and p.failed_line is not None


@pytest.mark.parametrize("kind", ["cvae", "igs", "aus"])
def test_latent_outlier_guard(kind: str) -> None:
    """A far-away latent draw is replaced by the poem's next candidate; the choice is per poem, not per batch."""
    model = make_model(kind)

    def blow_up_first(h_w: torch.Tensor, y: list[torch.Tensor], eps: torch.Tensor) -> torch.Tensor:
        """The model's prior, except that candidate 0 of poem 0 (row 0) lands 1000× too far."""
        z = prior_from_eps(model, h_w, y, eps).clone()
        z[0] *= 1000.0
        return z

    def draw(n_candidates: int, ratio: float) -> tuple[torch.Tensor, int]:
        rngs = [torch.Generator().manual_seed(s) for s in (11, 12)]
        with torch.no_grad():
            h_w = model.encode_keyword(keyword_tensor(VOCAB, KEYWORDS[:2]))
            y = [] if kind == "cvae" else [torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)]
            return draw_latents(blow_up_first, h_w, y, rngs, model.cfg.latent_size, n_candidates, ratio)

    z, rejected = draw(3, 3.0)
    assert rejected == 1
    norms = z.norm(dim=-1)
    assert norms.max() < 100 * norms.min()
    # official behaviour (ratio 0: one draw, no guard): the outlier is kept
    z0, rejected = draw(3, 0.0)
    assert z0[0].norm() > 100 * z0[1].norm() and rejected == 0


def test_generation_with_guard_is_batch_independent():
    g = gen(make_model("aus"), gen_cfg=GenConfig(beam_size=4, z_candidates=4, z_outlier_ratio=1.05))
    both = g.generate(KEYWORDS[:2], 5, n_samples=2, seed=3)
    one = g.generate(KEYWORDS[1:2], 5, n_samples=2, seed=3)
    assert [p.text for p in both[2:]] == [p.text for p in one]
    assert g.z_rejections > 0  # a ratio this tight rejects some first draws


def test_generate_from_s0_matches_generate():
    g = gen(make_model("basic"))
    s0, _ = g.decoder_start(["秋风"], 5, seed=4)
    a = g.generate("秋风", 5, seed=4)[0]
    b = g.generate_from_s0("秋风", 5, s0.expand(2, -1), seed=4)
    assert a.ok and b[0].text == a.text == b[1].text
    with pytest.raises(ValueError, match="shape"):
        g.generate_from_s0("秋风", 5, s0[0])


def test_top_n_distinct_basic():
    g = gen(make_model("basic", seed=1), gen_cfg=GenConfig(beam_size=4))
    poems = g.top_n_distinct("春", 5, 6)
    assert len(poems) == 6
    firsts = [p.lines[0] for p in poems if p.ok]
    assert len(firsts) == len(set(firsts)) >= 2
    for p in poems:
        if p.ok:
            assert_constraints(p)
    assert g.generate(["春"], 5, n_samples=2)[0].lines == g.generate(["春"], 5, n_samples=2)[1].lines


def test_top_n_distinct_batches_keywords_without_changing_their_poems():
    """Keywords decoded together (two batches of two: max_batch_poems 8, n 4) give each keyword's poems alone."""
    g = gen(make_model("basic", seed=1), gen_cfg=GenConfig(beam_size=4), max_batch_poems=8)
    kws, lens = ["春", "秋风", "月", "山"], [5, 7, 5, 7]
    together = g.top_n_distinct(kws, lens, 4, seed=3)
    alone = [p for kw, n in zip(kws, lens) for p in g.top_n_distinct(kw, n, 4, seed=3)]
    assert [(p.keyword, p.lines, p.ok) for p in together] == [(p.keyword, p.lines, p.ok) for p in alone]
    assert [p.keyword for p in together] == [kw for kw in kws for _ in range(4)]


# ----------------------------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"keywords": ["鹤"]}, "鹤"),
        ({"keywords": ["春秋风"]}, "春秋风"),
        ({"length": 6}, "6"),
        ({"labels": ("soldier", -1)}, "soldier"),
        ({"labels": (0, 5)}, "5"),
        ({"n_samples": 0}, "0"),
    ],
)
def test_bad_inputs_raise_with_value(kwargs, named):
    g = gen(make_model("aus"))
    args = {"keywords": ["春"], "length": 5, **kwargs}
    with pytest.raises(ValueError, match=named):
        g.generate(**args)


def test_fbasic_honours_the_requested_labels(ckpt_env, tmp_path, capsys):
    """fBasic decodes from the labels it is asked for (no inference): each mixture its own s0, -1 = "unknown"."""
    g = gen(make_model("fbasic", seed=2))
    mixtures = [(a, b) for a in range(3) for b in range(2)]
    s0, _ = g.decoder_start(["春"] * 7, 5, labels=[*mixtures, (-1, -1)])
    assert len({tuple(row.tolist()) for row in s0}) == 7
    again, _ = g.decoder_start("春", 5, labels=("countryside", "troubled"))  # names or ids, the same start
    torch.testing.assert_close(again[0], s0[mixtures.index((1, 1))])
    poems = g.generate(["春", "秋风"], [5, 7], labels=[(0, 1), (-1, 0)], n_samples=2, seed=1)
    assert [p.labels for p in poems] == [(0, 1)] * 2 + [(-1, 0)] * 2  # as requested, never re-inferred
    assert poems[0].text == poems[1].text  # no latent: the samples of one request are the same poem
    for p in poems:
        assert_constraints(p)
    path = tmp_path / "fbasic.pt"
    model_args = {"kind": "fbasic"}
    state = {"model_args": model_args, "model_config": dataclasses.asdict(SMOKE), "vocab_size": len(VOCAB)}
    save_checkpoint({**state, "vocab": list(VOCAB.tokens), "model": g.model.state_dict(), "complete": True}, path)
    crrd = ckpt_env[1]
    code, out, err = run_cli(
        capsys, "--checkpoint", path, "--crrd", crrd, "--keyword", "春", "--living", 0, "--beam", 4
    )
    assert code in (0, 3), err
    assert "asked living=military era=unknown" in out and "[春 · military/unlabelled]" in out


def test_labels_on_label_free_model_raise():
    with pytest.raises(ValueError, match="cvae"):
        gen(make_model("cvae")).generate(["春"], 5, labels=(0, 1))


def test_greedy_decode():
    model = make_model("aus")
    lines = greedy_decode(model, VOCAB, "秋风", 7, labels=("other", -1), seed=1)
    assert len(lines) == 4 and all(len(line) == 7 and all(ch in VOCAB for ch in line) for line in lines)
    assert lines == greedy_decode(model, VOCAB, "秋风", 7, labels=("other", -1), seed=1)
    with pytest.raises(ValueError, match="9"):
        greedy_decode(model, VOCAB, "春", 9)


def test_benchmark_generation_smoke():
    b = benchmark_generation(make_model("aus"), VOCAB, 4, 5, 4, tone_rhyme=TR)
    assert b.n_poems == 4 and b.poems_per_s > 0 and b.decode_poems_per_s > 0
    assert sum(b.relaxation_counts.values()) == 4


# ----------------------------------------------------------------------------------------------
# checkpoint + CLI
# ----------------------------------------------------------------------------------------------


@pytest.fixture()
def ckpt_env(tmp_path):
    crrd = tmp_path / "CRRD"
    crrd.mkdir()
    (crrd / "pingsheng.txt").write_text(LEVEL + BOTH + "\n", encoding="utf-8")
    (crrd / "zesheng.txt").write_text(OBLIQUE + BOTH + "\n", encoding="utf-8")
    (crrd / "pingshui.txt").write_text("".join(f"{c} {k}\n" for c, k in RHYMES.items()), encoding="utf-8")
    model = make_model("aus")
    path = tmp_path / "aus.pt"
    save_checkpoint(
        {
            "format": 1,
            "name": "aus",
            "phase": "c2",
            "complete": True,
            "step": 1,
            "total_steps": 1,
            "model_args": {"kind": "aus"},
            "model_config": dataclasses.asdict(SMOKE),
            "vocab_size": len(VOCAB),
            "vocab": list(VOCAB.tokens),
            "model": model.state_dict(),
            "metrics": {},
        },
        path,
    )
    return path, crrd


def run_cli(capsys, *args):
    code = cli.main(["generate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_load_checkpoint_roundtrip(ckpt_env):
    path, _ = ckpt_env
    model, vocab, meta = load_generator(path)
    assert model.kind == "aus" and vocab == VOCAB and meta["name"] == "aus" and not model.training


def training_checkpoint(tmp_path, with_data: bool = False):
    """A checkpoint in mixpoet_lib.train.loop's format (no vocabulary inside) and a vocab.json beside it."""
    model = make_model("igs")
    path = tmp_path / "igs_c2.pt"
    payload = {
        "format": 1,
        "name": "igs",
        "phase": "c2",
        "complete": True,
        "step": 3,
        "total_steps": 3,
        "model_args": {"kind": "igs", "straight_through": False},
        "model_config": dataclasses.asdict(SMOKE),
        "vocab_size": len(VOCAB),
        "model": model.state_dict(),
        "metrics": {},
    }
    if with_data:
        payload["config"] = {"data": {"max_vocab": 3}}
    save_checkpoint(payload, path)
    VOCAB.save(tmp_path / "vocab.json")
    return path, tmp_path / "vocab.json"


def test_training_format_checkpoint(ckpt_env, capsys, tmp_path):
    _, crrd = ckpt_env
    path, vocab_json = training_checkpoint(tmp_path)
    model, vocab, meta = load_generator(path, vocab=vocab_json)
    assert model.kind == "igs" and vocab == VOCAB and meta["phase"] == "c2"
    code, out, err = run_cli(
        capsys,
        "--checkpoint",
        path,
        "--vocab",
        vocab_json,
        "--crrd",
        crrd,
        "--keyword",
        "春",
        "--length",
        5,
        "--beam",
        4,
        "--living",
        "countryside",
    )
    assert code == 0, err
    assert "countryside/" in out
    code, _, err = run_cli(capsys, "--checkpoint", path, "--crrd", crrd, "--keyword", "春")  # no vocabulary anywhere
    assert code == 1 and len(err.strip().splitlines()) == 1 and "vocab" in err


def test_cli_generate_text_and_json(ckpt_env, capsys):
    path, crrd = ckpt_env
    code, out, err = run_cli(
        capsys,
        "--checkpoint",
        path,
        "--crrd",
        crrd,
        "--keyword",
        "秋风",
        "--length",
        7,
        "--living",
        "military",
        "--era",
        "troubled",
        "-n",
        2,
        "--beam",
        4,
        "--seed",
        1,
    )
    assert code == 0, err
    rows = [r for r in out.splitlines() if not r.startswith("#")]
    assert len(rows) == 2 and all("relaxation" in r and "military/troubled" in r for r in rows)
    code, out, _ = run_cli(
        capsys, "--checkpoint", path, "--crrd", crrd, "--keyword", "春", "--length", 5, "--beam", 4, "--json"
    )
    data = json.loads(out)
    assert code == 0 and len(data) == 1 and len(data[0]["lines"]) == 4 and data[0]["relaxation_name"]


def test_cli_strict_failure_is_reported(ckpt_env, capsys):
    path, crrd = ckpt_env
    code, out, _ = run_cli(
        capsys, "--checkpoint", path, "--crrd", crrd, "--keyword", "春", "--length", 7, "--beam", 4, "-n", 3, "--strict"
    )
    assert code == 3  # an untrained model fails the official procedure, and the output says so
    assert out.count("generation FAILED on line") == 3


@pytest.mark.parametrize(
    "change, named",
    [
        ({"--checkpoint": "missing.pt"}, "missing.pt"),
        ({"--keyword": "鹤"}, "鹤"),
        ({"--length": "6"}, "6"),
        ({"--length": "five"}, "five"),
        ({"--living": "soldier"}, "soldier"),
        ({"--era": "golden"}, "golden"),
    ],
)
def test_cli_bad_inputs_one_line(ckpt_env, capsys, change, named):
    path, crrd = ckpt_env
    opts = {"--checkpoint": str(path), "--crrd": str(crrd), "--keyword": "春", "--length": "5", **change}
    if change.get("--checkpoint") == "missing.pt":
        opts["--checkpoint"] = str(path.parent / "missing.pt")
    code, out, err = run_cli(capsys, *[x for kv in opts.items() for x in kv])
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("mixpoet: error:") and named in err


def test_cli_corrupt_checkpoint(ckpt_env, capsys, tmp_path):
    _, crrd = ckpt_env
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    code, _, err = run_cli(capsys, "--checkpoint", bad, "--crrd", crrd, "--keyword", "春")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "bad.pt" in err
    incomplete = tmp_path / "inc.pt"
    save_checkpoint({"kind": "aus"}, incomplete)
    code, _, err = run_cli(capsys, "--checkpoint", incomplete, "--crrd", crrd, "--keyword", "春")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "model_args" in err


# ----------------------------------------------------------------------------------------------
# regression: poems of fixed tiny models and seeds, recorded before the beam search was restructured
# ----------------------------------------------------------------------------------------------


def _regression_cases() -> Iterator[tuple[str, list[GeneratedPoem]]]:
    """(name, poems) of several kinds, lengths, labels, beams, rules and ladder rungs (0, 1, 3, 5, 6)."""
    yield (
        "aus_ladder",
        gen(make_model("aus", seed=4)).generate(
            KEYWORDS,
            [5, 7, 5, 7],
            labels=[(0, 1), (-1, -1), ("countryside", "prosperous"), (1, -1)],
            n_samples=2,
            seed=5,
        ),
    )
    yield (
        "aus_strict",
        gen(make_model("aus", eos_bias=8.0), gen_cfg=GenConfig(beam_size=8)).generate(
            KEYWORDS, [7, 5, 7, 5], n_samples=2, seed=0
        ),
    )
    yield (
        "cvae_official",
        gen(
            make_model("cvae", seed=3, eos_bias=2.0),
            repetition_rule="official",
            gen_cfg=GenConfig(beam_size=4, extra_steps=2),
        ).generate(KEYWORDS, 7, n_samples=2, seed=2),
    )
    yield (
        "igs_novelty",
        gen(
            make_model("igs", seed=6, eos_bias=8.0),
            training_lines={"春风山天花"},
            gen_cfg=GenConfig(beam_size=5, z_candidates=4, z_outlier_ratio=1.05),
        ).generate(KEYWORDS, 5, seed=7),
    )
    yield "basic_top_n", gen(make_model("basic", seed=1), gen_cfg=GenConfig(beam_size=4)).top_n_distinct("春", 5, 4)
    small = Vocab(SPECIALS + tuple("天风山春花时月雨草树水路"))
    torch.manual_seed(0)
    model = build_model("cvae", SMOKE, len(small)).eval()
    yield "small_vocab", Generator(model, small, TR, None, GenConfig(beam_size=4)).generate(["春", "月"], 7, seed=0)


# (text, line_relaxation, labels, score) per poem
REGRESSION = {
    "aus_ladder": [
        ("过园草草寺|雨望处眠眠|重树风风夜|烟春水路天", (1, 1, 1, 0), (0, 1), -3.842213988304138),
        ("过园草草寺|雨望处眠眠|中老心烟树|家春夜夜天", (1, 1, 0, 0), (0, 1), -3.8353331089019775),
        ("望草草烟园园雨|风风夜夜寺心天|春春过去眠眠树|水一中愁处处年", (3, 0, 1, 3), (0, 1), -3.833361864089966),
        ("望草草烟园园雨|风风夜夜寺心天|过中愁去眠眠树|春水声空路处年", (3, 0, 1, 0), (0, 1), -3.8298471570014954),
        ("望草草烟园|风风寺寺眠|海空心路雨|水夜夜中天", (1, 0, 0, 0), (1, 0), -3.82427316904068),
        ("望草草烟园|风风寺寺眠|海心东路处|过去雨空天", (1, 0, 0, 0), (1, 0), -3.8239120841026306),
        ("望草草烟园园雨|风风夜夜寺眠心|过中愁去天天处|重树春春水路声", (3, 1, 1, 0), (1, 1), -3.829581320285797),
        ("望草草烟园园雨|风风夜夜寺眠心|过愁去树空天路|重处春春水海声", (3, 1, 0, 0), (1, 1), -3.8345142602920532),
    ],
    "aus_strict": [
        ("情情落时空老天|意年年兮兮江眠|处声烟月家春望|思树归归夜夜前", (3, 3, 0, 0), (0, 1), -6.788752198219299),
        ("情情年年落兮空|意时老老处天风|声声烟夜家归草|思树江江影影中", (3, 0, 0, 0), (0, 1), -6.775860905647278),
        ("时老老天天|年年落落烟|思情情月夜|意意影家前", (0, 0, 0, 0), (0, 1), -6.430291771888733),
        ("时老老天天|年年落落烟|思情情月夜|意意影空前", (0, 0, 0, 0), (0, 1), -6.431192874908447),
        ("意老老天天落空|情情年兮兮江中|处时时色烟烟夜|思水前家树去东", (0, 3, 0, 0), (0, 1), -6.779924988746643),
        ("意老老思思年夜|情情落落月空空|处时时兮天天草|一树江江影影中", (0, 0, 3, 0), (0, 1), -6.759708404541016),
        ("时时老老天|树落落情烟|声影年年夜|兮一意意眠", (0, 0, 0, 3), (2, 1), -6.454757332801819),
        ("时时老老天|树树影年年|落落烟空色|兮一意意眠", (0, 0, 0, 3), (2, 1), -6.436970233917236),
    ],
    "cvae_official": [
        ("春秋秋客客风归|一望江江草草时|海处花花高水雨|看情重酒日愁家", (0, 0, 0, 0), (-1, -1), -3.7158974409103394),
        ("月客客客风归时|路一江江草草家|寺海雨秋秋望日|空高看影处年情", (3, 3, 0, 0), (-1, -1), -3.7074273824691772),
        ("路一望客客客风|云海家秋草草东|看酒花花高水雨|时时兮月日江空", (3, 0, 0, 3), (-1, -1), -3.704943001270294),
        ("江影一处客客风|时时高路草归东|心花花望春家老|色日愁愁树树中", (3, 0, 0, 0), (-1, -1), -3.7170506715774536),
        ("望客客客风归时|江色春秋一一情|海处看花高草草|意东东路路人家", (3, 3, 0, 0), (-1, -1), -3.7046218514442444),
        ("路风看草草草客|时寺家秋一处归|思酒江江人望日|影花高水雨愁心", (3, 3, 0, 0), (-1, -1), -3.7097891569137573),
        ("草草望客客客风|江一情一处处中|日日高高东水雨|看春秋酒夜空空", (3, 3, 0, 0), (-1, -1), -3.7136975526809692),
        ("客客风归秋草草|一一情望日高东|路年看影花花水|空月春家处老中", (0, 3, 0, 0), (-1, -1), -3.7177721858024597),
    ],
    "igs_novelty": [
        ("酒酒情情路|风空去去家|意秋秋一一|落落海人时", (0, 0, 3, 0), (1, 0), -6.553723931312561),
        ("风情情酒路|海去去中家|心一一时日|云云意意声", (0, 0, 3, 0), (1, 0), -6.569879174232483),
        ("夜酒酒风去|心情路日时|意空空望月|云落落秋家", (0, 0, 0, 0), (1, 0), -6.623003363609314),
        ("情情酒酒路|风去去秋家|心日时东望|云空意意声", (0, 0, 0, 0), (1, 0), -6.578093886375427),
    ],
    "basic_top_n": [
        ("月客客山山|秋秋处处家|意云云老老|园日日江归", (0, 0, 0, 0), (-1, -1), -3.7938440442085266),
        ("月客客山日|秋秋处处天|意云云老老|园草一归烟", (1, 0, 0, 3), (-1, -1), -3.8033429980278015),
        ("月客山山高|秋秋处处家|意云云老老|园日日江归", (3, 0, 0, 0), (-1, -1), -3.7967289090156555),
        ("月客客日山|秋秋处处天|意云云老老|园草一归烟", (3, 0, 0, 3), (-1, -1), -3.8048039078712463),
    ],
    "small_vocab": [
        ("春春树树草风风|月月花花水水天|时雨雨山山路路|春树树草风风花", (0, 5, 0, 6), (-1, -1), -2.6944504380226135),
        ("天天月春春树草|时花花水水风风|月春春树草风风|天月春春草树风", (3, 0, 6, 6), (-1, -1), -2.6508726477622986),
    ],
}


def test_regression_poems_unchanged() -> None:
    """Generated text, rungs, labels and scores of fixed models and seeds stay exactly as recorded."""
    got = {name: [(p.text, p.line_relaxation, p.labels, p.score) for p in poems] for name, poems in _regression_cases()}
    assert got.keys() == REGRESSION.keys()
    for name, want in REGRESSION.items():
        assert [g[:3] for g in got[name]] == [w[:3] for w in want], name
        assert [g[3] for g in got[name]] == pytest.approx([w[3] for w in want], abs=1e-6), name
    assert greedy_decode(make_model("aus"), VOCAB, "秋风", 7, labels=("other", -1), seed=1) == [
        "时老天天天情情",
        "意老天天天落空",
        "声老天天天落空",
        "树时老天天落空",
    ]


# ----------------------------------------------------------------------------------------------
# keyword bonus, anti-generic scoring, doubling penalty (design §5.3, §5.7, §5.8)
# ----------------------------------------------------------------------------------------------


def _one_line_search(model, s0, length_oh, length: int = 5, **extra):
    """Line 1 of one poem without tone bans (rung no_form_check), beam 20, through the production beam search."""
    tables = ConstraintTables(VOCAB, TR)
    rules = [line_constraints(0, length, NO_FORM_CHECK, None, None, False)]
    ctx = model.initial_context(1, like=s0)
    return beam_search(
        model,
        tables,
        s0,
        length_oh,
        ctx,
        0,
        [length],
        rules,
        [set()],
        beam=20,
        extra_steps=1,
        repetition_rule="intended",
        **extra,
    ).candidates[0]


@pytest.mark.parametrize(
    ("keyword", "line", "target"),
    [
        ("秋风", "", "秋"),  # nothing yet: the keyword's first character
        ("秋风", "月秋", "风"),  # the line ends with 秋: its continuation
        ("秋风", "秋月", "秋"),  # a broken start: the first character again
        ("秋风", "山秋风", None),  # the line holds the keyword: nothing
        ("月", "", "月"),
    ],
)
def test_keyword_bonus_targets_the_keyword_next_character(keyword, line, target) -> None:
    kb = KeywordBonus.build(VOCAB, [keyword], [[]], 2.0)
    assert kb is not None
    add = kb.add_to_(torch.zeros(1, len(VOCAB)), torch.tensor([[BOS, *VOCAB.encode(line)]]), torch.tensor([0]))
    expected = torch.zeros(1, len(VOCAB))
    if target is not None:
        expected[0, VOCAB.encode(target)[0]] = 2.0
    assert torch.equal(add, expected)


def test_keyword_bonus_ends_once_an_earlier_line_holds_the_keyword() -> None:
    kb = KeywordBonus.build(VOCAB, ["秋风", "月"], [["秋风山月色"], ["山秋风"]], 2.0)
    assert kb is not None
    add = kb.add_to_(torch.zeros(2, len(VOCAB)), torch.tensor([[BOS], [BOS]]), torch.tensor([0, 1]))
    assert not add[0].any() and add[1, VOCAB.encode("月")[0]] == 2.0
    assert KeywordBonus.build(VOCAB, ["春"], [[]], 0.0) is None


def test_keyword_bonus_puts_the_keyword_into_poems() -> None:
    model = make_model("cvae", seed=2)
    kws = ["秋风", "月", "江", "春"] * 3
    plain = gen(model).generate(kws, 5, seed=4)
    pushed = gen(model, gen_cfg=GenConfig(beam_size=6, keyword_bonus=20.0)).generate(kws, 5, seed=4)
    held = [sum(p.keyword in "".join(p.lines) for p in poems if p.ok) for poems in (plain, pushed)]
    assert held[1] >= 10 and held[1] > held[0], held


def test_generic_scoring_against_the_poem_own_state_only_rescales() -> None:
    """log p − w · log p = (1 − w) · log p: the same candidates in the same order, every score × (1 − w)."""
    model = make_model("aus", seed=8, eos_bias=3.0, dtype=torch.float64)
    s0, length_oh = gen(model).decoder_start(["秋风"], 5, (2, 1), seed=9)
    plain = _one_line_search(model, s0, length_oh)
    half = _one_line_search(model, s0, length_oh, generic_s0=s0, generic_weight=0.25)
    assert [c.ids for c in half] == [c.ids for c in plain] and plain
    assert [c.norm for c in half] == pytest.approx([0.75 * c.norm for c in plain], abs=1e-9)


def test_generic_scoring_keeps_poems_independent_of_their_batch() -> None:
    model = make_model("igs", seed=6, dtype=torch.float64)
    cfg = GenConfig(beam_size=6, generic_weight=0.5, generic_keywords=8)
    batched = gen(model, gen_cfg=cfg).generate(KEYWORDS, 5, seed=7)
    single = [gen(model, gen_cfg=cfg).generate([kw], 5, seed=7)[0] for kw in KEYWORDS]
    plain = gen(model).generate(KEYWORDS, 5, seed=7)
    assert [p.lines for p in batched] == [p.lines for p in single]
    assert [p.lines for p in batched] != [p.lines for p in plain]


def test_generic_state_per_label_is_the_mean_start_at_the_poem_own_labels() -> None:
    """gen.generic_per_label (design §5.11): each poem's generic row is the mean start state of the pool keywords at
    its own labels; poems still do not depend on their batch, and the search differs from the inferred-label state."""
    model = make_model("aus", seed=6, dtype=torch.float64)
    cfg = GenConfig(beam_size=6, generic_weight=0.5, generic_keywords=8, generic_per_label=True)
    g = gen(model, gen_cfg=cfg)
    labels = [(0, 1), (2, 0), (0, 1)]
    poems = g.generate(KEYWORDS[:3], 5, labels, seed=7)
    rows = g._generic_s0([SimpleNamespace(labels=lab) for lab in labels])  # only a poem's labels choose its row
    assert rows is not None
    pool = [t for t in g.tokens[N_SPECIALS:] if len(t) == 1][:8]
    for row, lab in zip(rows, labels):
        assert torch.allclose(row, g.decoder_start(pool, 5, lab, seed=0)[0].mean(0))
    assert torch.equal(rows[0], rows[2]) and not torch.allclose(rows[0], rows[1])
    single = [gen(model, gen_cfg=cfg).generate([kw], 5, lab, seed=7)[0] for kw, lab in zip(KEYWORDS, labels)]
    assert [p.lines for p in poems] == [p.lines for p in single]
    plain_cfg = dataclasses.replace(cfg, generic_per_label=False)
    inferred = gen(model, gen_cfg=plain_cfg).generate(KEYWORDS[:3], 5, labels, seed=7)
    assert [p.lines for p in poems] != [p.lines for p in inferred]


def test_doubling_penalty_is_taken_once_per_doubled_pair() -> None:
    """With penalty p a candidate's score drops by p · pairs / tokens (<E> counted); a large p removes them all."""
    model = make_model("basic", seed=3, eos_bias=3.0, dtype=torch.float64)
    s0, length_oh = gen(model).decoder_start(["月"], 5, seed=1)
    one = {tuple(c.ids): c.norm for c in _one_line_search(model, s0, length_oh)}
    two = {tuple(c.ids): c.norm for c in _one_line_search(model, s0, length_oh, doubling_penalty=0.05)}
    pairs = {ids: sum(a == b for a, b in itertools.pairwise(ids)) for ids in set(one) & set(two)}
    assert any(pairs.values()), "no shared candidate with a doubling: the test would prove nothing"
    for ids, n in pairs.items():
        assert two[ids] == pytest.approx(one[ids] - 0.05 * n / (len(ids) + 1), abs=1e-9)
    never = _one_line_search(model, s0, length_oh, doubling_penalty=1e4)
    assert never and not any(a == b for c in never for a, b in itertools.pairwise(c.ids))


# ----------------------------------------------------------------------------------------------
# mixture contrast (design §5.10)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["igs", "aus"])
def test_mixture_contrast_keeps_the_mean_over_mixtures(kind: str) -> None:
    """γ = 0 is the plain prior draw; for γ > 0 the six contrasted draws of one noise average to the plain draws'
    mean z̄ and each lies (1 + γ) times as far from it; the label embeddings the same way."""
    model = make_model(kind, seed=4, dtype=torch.float64)
    h_w = model.encode_keyword(keyword_tensor(VOCAB, ["秋风"]))
    eps = torch.randn(1, model.cfg.latent_size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mixtures = list(itertools.product(range(3), range(2)))
    ys = [[torch.tensor([a]), torch.tensor([b])] for a, b in mixtures]
    plain = torch.cat([model.prior_sample(h_w, y, eps=eps) for y in ys])
    assert torch.equal(torch.cat([model.contrast_latent(h_w, y, eps, 0.0) for y in ys]), plain)
    sharp = torch.cat([model.contrast_latent(h_w, y, eps, 2.0) for y in ys])
    z_bar = plain.mean(0, keepdim=True)
    torch.testing.assert_close(sharp.mean(0, keepdim=True), z_bar)
    torch.testing.assert_close(sharp - z_bar, 3.0 * (plain - z_bar))
    z = plain[:1]
    assert torch.equal(model.decoder_s0(z, h_w, ys[0], 0.0), model.decoder_s0(z, h_w, ys[0]))
    labs = [tab.weight[0] + 1.5 * (tab.weight[0] - tab.weight.mean(0)) for tab in model.factor_embed]
    pre = model.dec_init(torch.cat([z, h_w, *(d.unsqueeze(0) for d in labs)], dim=-1))
    y_half = [torch.tensor([0]), torch.tensor([0])]
    torch.testing.assert_close(model.decoder_s0(z, h_w, y_half, 1.5), torch.tanh(pre))


def test_mixture_contrast_in_generation() -> None:
    """γ = 0 writes the default poems; γ > 0 other poems, still independent of their batch and deterministic."""
    model = make_model("aus", seed=6, dtype=torch.float64)
    labels = [(0, 0), (1, 1), (2, 0), (0, 1)]
    plain = gen(model).generate(KEYWORDS, 5, labels, seed=3)
    zero = gen(model, gen_cfg=GenConfig(beam_size=6, mixture_contrast=0.0)).generate(KEYWORDS, 5, labels, seed=3)
    cfg = GenConfig(beam_size=6, mixture_contrast=1.0)
    sharp = gen(model, gen_cfg=cfg).generate(KEYWORDS, 5, labels, seed=3)
    single = [gen(model, gen_cfg=cfg).generate([kw], 5, [lab], seed=3)[0] for kw, lab in zip(KEYWORDS, labels)]
    assert [p.lines for p in zero] == [p.lines for p in plain]
    assert [p.lines for p in sharp] == [p.lines for p in single] != [p.lines for p in plain]
    assert [p.labels for p in sharp] == labels


def test_contrast_sweep_keeps_gamma_on_one_path_only() -> None:
    """scripts/contrast_sweep.py (experiments §21): 'labels' leaves the prior draw plain, 'latent' the embeddings."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("sweep", Path(__file__).parents[1] / "scripts" / "contrast_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    h_w_keys = keyword_tensor(VOCAB, ["秋风"])
    eps = torch.randn(1, SMOKE.latent_size, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = [torch.tensor([1]), torch.tensor([0])]
    full = make_model("aus", seed=4, dtype=torch.float64)
    h_w = full.encode_keyword(h_w_keys)
    z_plain, z_sharp = full.contrast_latent(h_w, y, eps, 0.0), full.contrast_latent(h_w, y, eps, 1.0)
    labels = sweep.one_path(make_model("aus", seed=4, dtype=torch.float64), "labels")
    latent = sweep.one_path(make_model("aus", seed=4, dtype=torch.float64), "latent")
    assert torch.equal(labels.contrast_latent(h_w, y, eps, 1.0), z_plain)
    assert torch.equal(labels.decoder_s0(z_plain, h_w, y, 1.0), full.decoder_s0(z_plain, h_w, y, 1.0))
    assert torch.equal(latent.contrast_latent(h_w, y, eps, 1.0), z_sharp)
    assert torch.equal(latent.decoder_s0(z_sharp, h_w, y, 1.0), full.decoder_s0(z_sharp, h_w, y, 0.0))
    assert not torch.equal(z_sharp, z_plain)
