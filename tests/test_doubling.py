"""The attested reduplication rule (generate/doubling.py): table measured on hand-made lines, bans, generation."""

from __future__ import annotations

import pytest
import torch

from mixpoet_lib.checkpoints import build_model
from mixpoet_lib.config import GenConfig, get_profile
from mixpoet_lib.data.rhythm import ToneRhyme
from mixpoet_lib.data.vocab import BOS, SPECIALS, Vocab
from mixpoet_lib.generate.doubling import (
    ReduplicationTable,
    count_doublings,
    doubled_positions,
    doubling_barred,
    earlier_doublings,
)
from mixpoet_lib.generate.generator import Generator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHARS = "水悠去远山青深处日今人年岁月花"
VOCAB = Vocab(SPECIALS + tuple(CHARS))
# 悠 doubled in both its lines, 处 in 1 of 4 lines holding it, 年 once in 1 line; 深处 is a common word (×3).
LINES = ["水悠悠去远", "山悠悠去远", "处处青山远", "深处青山远", "深处人去远", "深处月花远", "岁岁年年月"]


def table(**kw) -> ReduplicationTable:
    opts = {"min_count": 1, "min_share": 0.3, "min_rate": 0.1, "word_count": 3, **kw}
    return ReduplicationTable.from_lines(LINES, VOCAB, **opts)


def ids(text: str) -> list[int]:
    return VOCAB.encode(text)


def test_doubled_positions_and_counts() -> None:
    assert doubled_positions("水悠悠去远") == [2]
    assert doubled_positions("岁岁年年月") == [1, 3]
    assert count_doublings(["岁岁年年月", "水悠悠去远", "山青"]) == 3
    assert earlier_doublings([["岁岁年年月"], [], ["水悠悠去远"]]).tolist() == [2, 0, 1]


def test_table_from_hand_lines() -> None:
    t = table()
    allowed = {VOCAB.tokens[i] for i in t.chars.nonzero().flatten().tolist()}
    # 悠 2/2 lines, 处 1/4 < 0.3, 岁 1/1, 年 1/1 (share ≥ 0.3, count ≥ 1)
    assert allowed == {"悠", "岁", "年"}
    # positions of length 5 seen in ≥ 10 % of the 7 lines: i=2 (2 lines), i=1 (2 lines), i=3 (1 line ≥ 0.7)
    assert t.allowed_positions(5) == [1, 2, 3]
    tails = {(VOCAB.tokens[x // len(VOCAB)], VOCAB.tokens[x % len(VOCAB)]) for x in t.word_tails.tolist()}
    assert ("深", "处") in tails  # 深处 ×3, 深处处 never written
    assert ("水", "悠") not in tails  # once only
    assert all(a != b for a, b in tails)
    assert table(min_share=0.2).chars[VOCAB.id("处")]  # 1/4 = 0.25 ≥ 0.2


def ban_of(t: ReduplicationTable, prefix: str, length: int = 5, before: int = 0) -> set[str]:
    hist = torch.tensor([[BOS, *ids(prefix)]])
    barred = doubling_barred(t, hist, torch.zeros(1, dtype=torch.long), torch.tensor([length]), torch.tensor([before]))
    return {prefix[-1]} if bool(barred[0]) else set()


def test_doubling_ban_hand_cases() -> None:
    t = table(min_share=0.2)
    assert ban_of(t, "") == set()  # nothing to double at position 0
    assert ban_of(t, "水悠") == set()  # 水悠悠: attested char, position 2 allowed, 水悠 not a word
    assert ban_of(t, "深处") == {"处"}  # 深处处 re-uses the tail of the word 深处
    assert ban_of(t, "处") == set()  # 处处 at the start of a line
    assert ban_of(t, "水") == {"水"}  # 水 never doubled in the corpus
    assert ban_of(t, "水悠悠去") == {"去"}  # 去 never doubled (and position 4 never doubled)
    assert ban_of(t, "水悠", before=1) == {"悠"}  # the poem already holds its one doubling
    assert ban_of(t, "岁岁年") == {"年"}  # one doubled pair per poem, counted inside the line too
    assert ban_of(table(min_share=0.2, max_doublings=2), "岁岁年") == set()


def test_generator_honours_the_attested_rule() -> None:
    """A random model doubles freely under 'intended'; under 'attested' only where the table allows."""
    tr = ToneRhyme.from_strings(CHARS, CHARS, {c: 1 for c in CHARS})
    torch.manual_seed(0)
    model = build_model("basic", get_profile("smoke").model, len(VOCAB)).eval()
    with torch.no_grad():  # 水 is the model's favourite character at every position, so it wants 水水
        model.out_proj.weight.mul_(0.0)
        model.out_proj.bias[VOCAB.id("水")] += 5.0
    cfg = GenConfig(
        beam_size=4,
        novelty_filter=False,
        doubling_min_count=1,
        doubling_min_share=0.2,
        doubling_min_rate=0.1,
        doubling_word_count=3,
    )
    intended = Generator(model, VOCAB, tr, LINES, cfg, repetition_rule="intended")
    assert any("水水" in line for p in intended.generate(["山", "月"], 5, seed=1) for line in p.lines)
    g = Generator(model, VOCAB, tr, LINES, cfg)
    assert g.repetition_rule == "attested" and g.doubling is not None
    poems = g.generate(["山", "水", "月"], 5, n_samples=3, seed=1)
    t = g.doubling
    for p in poems:
        assert p.ok
        assert count_doublings(p.lines) <= 1
        for line in p.lines:
            assert "水水" not in line
            for i in doubled_positions(line):
                assert t.chars[VOCAB.id(line[i])] and t.positions[5, i], line
    with pytest.warns(UserWarning, match="needs the training lines"):
        fallback = Generator(model, VOCAB, tr, None, cfg)
    assert fallback.repetition_rule == "intended" and fallback.doubling is None
