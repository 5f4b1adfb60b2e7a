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
    assert out == {"ok": 0.25, "pattern_ok": 0.5, "rhyme_ok": 0.5, "n": 4}
    empty = M.form_pass_rate([], tr=tr)
    assert math.isnan(empty["ok"]) and empty["n"] == 0


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
