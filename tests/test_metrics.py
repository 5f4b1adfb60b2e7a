"""Hand-checkable values of mixpoet_lib.metrics (design §6, §7.1)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mixpoet_lib import metrics as M
from mixpoet_lib.data.rhythm import ToneRhyme

# ----------------------------------------------------------------------------- units and Jaccard


def test_units_chars_exclude_separators_punctuation_and_space():
    assert M.units("春风|花落，。| 春 ") == frozenset("春风花落")
    assert M.units(["白日依山尽", "黄河入海流"]) == frozenset("白日依山尽黄河入海流")
    assert M.units("") == frozenset()


def test_units_bigrams_stay_within_lines_and_punctuation_breaks_them():
    assert M.units("ab|cd", "bigram") == {"ab", "cd"}  # no "bc" across the separator
    assert M.units("春风，花落", "bigram") == {"春风", "花落"}  # no bigram across the comma
    assert M.units("春春春|春", "bigram") == {"春春"}
    with pytest.raises(ValueError):
        M.units("ab", "trigram")


def test_word_units_are_jieba_words_and_the_paper_unit_drops_single_characters(capfd):
    M._tokenizer.cache_clear()
    M.segment.cache_clear()
    assert M.segment("春风又绿江南岸") == ("春风", "又", "绿", "江南", "岸")
    assert M.segment("明月几时有，把酒问青天") == ("明月", "几时", "有", "把酒", "问青天")  # the comma is dropped
    assert capfd.readouterr().err == ""  # jieba's dictionary-loading messages stay off stderr
    assert M.units("春风又绿江南岸|明月几时有", "word") == {"春风", "江南", "明月", "几时"}
    assert M.units("春风又绿江南岸", "word_all") == {"春风", "又", "绿", "江南", "岸"}
    assert M.segment("春风又绿江南岸") is M.segment("春风又绿江南岸")  # cached
    # two poems sharing only a single-character word have word Jaccard 0 but char Jaccard > 0
    assert M.jaccard(M.units("春风又绿", "word"), M.units("白日又来", "word")) == 0.0
    assert M.inter_topic_jaccard(["春风又绿", "春风明月"], kind="word") == pytest.approx(1 / 2)


def test_jaccard_hand_values():
    assert M.jaccard({"a", "b", "c"}, {"b", "c", "d"}) == pytest.approx(2 / 4)
    assert M.jaccard({"a"}, {"b"}) == 0.0
    assert M.jaccard(set(), set()) == 1.0  # documented convention: two empty sets are identical
    assert M.jaccard(M.units("春风|秋月"), M.units("春月|夏云")) == pytest.approx(2 / 6)


def test_pair_from_index_enumerates_all_pairs_in_order():
    for n in (2, 3, 7, 50):
        ii, jj = M.pair_from_index(np.arange(n * (n - 1) // 2), n)
        assert list(zip(ii.tolist(), jj.tolist())) == list(itertools.combinations(range(n), 2))
    n = 100_000  # far end of a large triangle
    total = n * (n - 1) // 2
    i, j = M.pair_from_index(np.array([0, total - 1, n - 1, n - 2]), n)
    assert i.tolist() == [0, n - 2, 1, 0] and j.tolist() == [1, n - 1, 2, n - 1]


def test_inter_topic_exact_and_subsampled():
    poems = ["ab", "bc", "cd"]  # pairs: ab/bc 1/3, ab/cd 0, bc/cd 1/3
    assert M.inter_topic_jaccard(poems, max_pairs=10) == pytest.approx(2 / 9)
    # sub-sample of 2 of the 3 pairs: the mean of exactly two distinct pair scores, seeded
    a = M.inter_topic_jaccard(poems, max_pairs=2, seed=5)
    assert a == M.inter_topic_jaccard(poems, max_pairs=2, seed=5)
    assert a in (pytest.approx(1 / 6), pytest.approx(1 / 3))
    # identical poems under the same keyword are not compared when keywords are given
    assert M.inter_topic_jaccard(["ab", "ab", "cd"], 10, keywords=["k", "k", "m"]) == 0.0
    assert math.isnan(M.inter_topic_jaccard(["ab"], 10))


def test_inter_topic_subsample_approximates_exact():
    rng = np.random.default_rng(0)
    poems = ["".join(rng.choice(list("甲乙丙丁戊己庚辛壬癸子丑寅卯"), 5)) for _ in range(120)]
    exact = M.inter_topic_jaccard(poems, max_pairs=10**6)
    approx = M.inter_topic_jaccard(poems, max_pairs=2000, seed=1)
    assert approx == pytest.approx(exact, abs=0.01)


def test_intra_topic_averages_groups_and_skips_singletons():
    groups = [["ab", "ab", "cd"], ["xy", "xz"], ["lonely"]]
    # group 1: (1 + 0 + 0)/3; group 2: 1/3; mean = 1/3
    assert M.intra_topic_jaccard(groups) == pytest.approx(1 / 3)
    assert math.isnan(M.intra_topic_jaccard([["a"], []]))


# ----------------------------------------------------------------------------- diversity, copying


def test_distinct_n():
    assert M.distinct_n(["春春春|风"], 1) == pytest.approx(2 / 4)
    assert M.distinct_n(["abab", "ab"], 2) == pytest.approx(2 / 4)  # ab, ba, ab, ab
    assert math.isnan(M.distinct_n(["a|b"], 2))


def test_copy_rate():
    train = {"白日依山尽", "黄河入海流"}
    assert M.copy_rate(["白日依山尽|黄河入海流|欲穷千里目|更上一层楼"], train) == 0.5
    assert M.copy_rate([["白日依山尽", "x"], "y|z"], list(train)) == 0.25
    assert math.isnan(M.copy_rate([], train))


# ----------------------------------------------------------------------------- classification


def test_accuracy_and_confusion_matrix():
    t, p = [0, 0, 1, 2, 2], [0, 1, 1, 2, 0]
    assert M.accuracy(t, p) == pytest.approx(3 / 5)
    assert M.confusion_matrix(t, p, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    with pytest.raises(ValueError):
        M.confusion_matrix([0, -1], [0, 0], 2)
    with pytest.raises(ValueError):
        M.accuracy([0], [0, 1])
    assert math.isnan(M.accuracy([], []))


def test_macro_f1_hand_computed():
    t, p = [0, 0, 1, 2, 2], [0, 1, 1, 2, 0]
    # class 0: tp1 fp1 fn1 → 2/4; class 1: tp1 fp1 fn0 → 2/3; class 2: tp1 fp0 fn1 → 2/3
    assert M.per_class_f1(t, p, 3) == pytest.approx([0.5, 2 / 3, 2 / 3])
    assert M.macro_f1(t, p, 3) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)


def test_macro_f1_zero_division_matches_sklearn_default():
    # sklearn f1_score([0,0,1],[0,0,0], labels=[0,1,2], average="macro") = (0.8 + 0 + 0)/3:
    # class 1 is never predicted (precision 0/0 → 0, F1 0); class 2 is absent from both (F1 0/0 → 0).
    assert M.per_class_f1([0, 0, 1], [0, 0, 0], 3) == pytest.approx([0.8, 0.0, 0.0])
    assert M.macro_f1([0, 0, 1], [0, 0, 0], 3) == pytest.approx(0.8 / 3)
    assert M.macro_f1([1, 1], [1, 1], 2) == pytest.approx(0.5)  # absent class 0 still counts (labels=range(n))


def test_factor_control_scores():
    spec = [(0, 0), (1, 1), (2, 0), (0, 1)]
    pred = [(0, 0), (1, 0), (1, 0), (0, 1)]
    out = M.factor_control_scores(spec, pred)
    assert out["living"]["accuracy"] == 0.75 and out["era"]["accuracy"] == 0.75
    assert out["joint_accuracy"] == 0.5
    assert out["living"]["confusion"].tolist() == [[2, 0, 0], [0, 1, 0], [0, 1, 0]]
    # living: class 0 recalled 2/2, class 1 1/1, class 2 0/1; F1 1, 2·1/(2+1) , 0
    assert out["living"]["recall"].tolist() == [1.0, 1.0, 0.0]
    assert out["living"]["f1"] == pytest.approx([1.0, 2 / 3, 0.0])
    assert out["era"]["recall"].tolist() == [1.0, 0.5]


def test_per_class_recall_is_nan_for_a_class_never_requested():
    rec = M.per_class_recall([0, 0, 1], [0, 1, 1], 3)
    assert rec[:2].tolist() == [0.5, 1.0] and math.isnan(rec[2])


# ----------------------------------------------------------------------------- form, statistics, frequency


def test_form_pass_rate_with_a_tiny_tone_table():
    # a, c = level (rhyme classes 1, 2), b = oblique. "good" spells the type-0 pattern 0,1,3,2 with lines 2
    # and 4 rhyming on class 1; the others break only the rhyme, only the pattern, or the shape.
    tr = ToneRhyme.from_strings("ac", "b", {"a": 1, "c": 2})
    good = "aaabb|bbbaa|abaab|aabba"  # PPPZZ (0), ZZZPP (1), PZPPZ (3), PPZZP (2)
    rhyme_bad = "aaabb|bbbaa|abaab|aabbc"  # line 4 still type 2, but ends in rhyme class 2
    pattern_bad = "aaabb|bbbaa|aaaab|aabba"  # PPPPZ matches no template
    bad_shape = "aaabb|bbbaa|abaab"
    out = M.form_pass_rate([good, rhyme_bad, pattern_bad, bad_shape], tr=tr)
    assert out == {"ok": 0.25, "pattern_ok": 0.5, "rhyme_ok": 0.5, "ok_strict": 0.25, "n": 4}
    empty = M.form_pass_rate([], tr=tr)
    assert math.isnan(empty["ok"]) and empty["n"] == 0
    # c is polyphonic (both tones; rhyme classes 2 and 1). Line 4 "aabbc" (PPZZB) fits PPZZP, the expected
    # type 2, but the official recogniser returns its first match PPZZZ (type 0): only the reader's check passes.
    poly = "aaabb|bbbaa|abaab|aabbc"
    out = M.form_pass_rate([poly], tr=ToneRhyme.from_strings("ac", "bc", {"a": 1, "c": (2, 1)}))
    assert out["ok"] == 1.0 and out["ok_strict"] == 0.0


def test_human_closeness_is_one_at_the_human_mean_and_falls_both_ways():
    assert M.human_closeness([-6.0], -6.0, 0.5) == 1.0
    assert M.human_closeness([-5.0, -7.0], -6.0, 0.5) == pytest.approx(math.exp(-2.0))  # two std away, either side
    assert math.isnan(M.human_closeness([], -6.0, 0.5))
    with pytest.raises(ValueError, match="std"):
        M.human_closeness([-6.0], -6.0, 0.0)


def test_keyword_rate_counts_the_whole_keyword_inside_one_line():
    poems = ["春风又绿|江南岸", "春|风起", "明月光"]
    assert M.keyword_rate(poems, ["春风", "春风", "月"]) == pytest.approx(2 / 3)  # not across the line break
    assert math.isnan(M.keyword_rate([], []))
    with pytest.raises(ValueError, match="2 keywords for 3 poems"):
        M.keyword_rate(poems, ["a", "b"])


def test_doubled_rates_and_shared_lines():
    poems = ["年年岁岁|花相似", "白云|深处处", "山高|水长"]
    assert M.doubled_rates(poems) == (pytest.approx(2 / 3), pytest.approx(2 / 6))
    assert all(math.isnan(x) for x in M.doubled_rates([]))
    assert M.doubled_rates(["春，，风"]) == (0.0, 0.0)  # repeated punctuation is not a doubled character
    # "白云" is in the poems of keywords a and b (shared); the second "山高" poem has the same keyword a
    shared = M.shared_line_rate(["白云|山高", "白云|流水", "山高|明月"], ["a", "b", "a"])
    assert shared == pytest.approx(2 / 6)
    assert math.isnan(M.shared_line_rate([], []))


def test_mean_std_sample_std():
    assert M.mean_std([1.0, 2.0, 3.0]) == (pytest.approx(2.0), pytest.approx(1.0), 3)
    assert M.mean_std([0.25]) == (0.25, 0.0, 1)
    m, s, n = M.mean_std([])
    assert math.isnan(m) and math.isnan(s) and n == 0


def test_topk_accumulated_frequency():
    # counts: 春 3, 风 2, 月 1 → 3/6, 5/6, 6/6, then a plateau at 1
    acc = M.topk_accumulated_frequency(["春风|春月", "春风"], 5)
    assert acc == pytest.approx([0.5, 5 / 6, 1.0, 1.0, 1.0])
    assert np.isnan(M.topk_accumulated_frequency(["，"], 2)).all()
    with pytest.raises(ValueError):
        M.topk_accumulated_frequency(["a"], 0)
    # words (every jieba word): 春风 2, 又 1, 绿 1, 江南 1, 岸 1, 明月 1 → 2/7, 3/7, 4/7
    acc = M.topk_accumulated_frequency(["春风又绿江南岸|春风明月"], 3, "word")
    assert acc == pytest.approx([2 / 7, 3 / 7, 4 / 7])
    with pytest.raises(ValueError, match="unit"):
        M.topk_accumulated_frequency(["a"], 1, "bigram")
