"""The keyword-relevance embedding and rank score (mixpoet_lib.relevance) on tiny hand-made corpora."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixpoet_lib import relevance as V

# Two topics that never meet: mountains (山 峰 云 松 石) and rivers (江 水 舟 波 鱼); 风 and 月 go everywhere.
MOUNTAIN = ["山峰云松|石风月", "山云石|松峰", "峰松山|云石月", "石山|峰云松风"]
RIVER = ["江水舟波|鱼风月", "江舟鱼|水波", "波鱼江|舟水月", "水江|波舟鱼风"]


@pytest.fixture(scope="module")
def emb() -> V.CharEmbedding:
    return V.fit_char_embedding(MOUNTAIN * 3 + RIVER * 3, dim=4, seed=0)


def test_embedding_is_seeded_unit_length_and_separates_topics(emb):
    again = V.fit_char_embedding(MOUNTAIN * 3 + RIVER * 3, dim=4, seed=0)
    np.testing.assert_allclose(again.vectors, emb.vectors, atol=1e-6)
    assert emb.vectors.shape == (12, 4) and set(emb.index) == set("山峰云松石江水舟波鱼风月")
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    vec = {ch: emb.vectors[i] for ch, i in emb.index.items()}
    assert vec["山"] @ vec["峰"] > 0.5 > vec["山"] @ vec["江"]


def test_text_vector_skips_unknown_and_excluded_characters(emb):
    assert emb.text_vector("龙虎") is None
    assert emb.text_vector("山峰", exclude="山峰") is None
    v = emb.text_vector("山|龙")
    np.testing.assert_allclose(v, emb.vectors[emb.index["山"]], atol=1e-6)


def test_rank_score_is_one_on_topic_zero_off_topic_and_leaves_the_keyword_out(emb):
    poems = ["峰云松|石", "江水|舟波", "山峰|云"]
    # poem 1 (mountain) against keyword 山 vs the other keyword 江: closer to its own → 1; poem 2 the same → 1
    assert V.keyword_rank_scores(emb, poems[:2], ["山", "江"]).tolist() == [1.0, 1.0]
    assert V.keyword_rank_scores(emb, poems[:2], ["江", "山"]).tolist() == [0.0, 0.0]
    # a poem made only of its keyword's characters has nothing left to judge
    assert math.isnan(V.keyword_rank_scores(emb, ["山山|山"], ["山"])[0])
    # no other keyword in the set: undefined
    assert np.isnan(V.keyword_rank_scores(emb, poems[:2], ["山", "山"])).all()
    with pytest.raises(ValueError, match="1 keywords for 2 poems"):
        V.keyword_rank_scores(emb, poems[:2], ["山"])


def test_small_corpora_clip_the_dimension_and_tiny_ones_raise():
    emb = V.fit_char_embedding(["山水|云"], dim=64)
    assert emb.vectors.shape == (3, 2)
    with pytest.raises(ValueError, match="at least 3"):
        V.fit_char_embedding(["山|山"])
