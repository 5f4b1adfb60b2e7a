"""Vocabulary determinism and the TF-IDF keyword extractor."""

from __future__ import annotations

import pytest

from mixpoet_lib.data.keywords import KeywordExtractor, extract_keywords
from mixpoet_lib.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab, build_vocab


def test_vocab_order_ids_and_round_trip(tmp_path):
    v = build_vocab(["明月|明月光", "光明"], min_freq=1)
    assert v.tokens[:4] == SPECIALS and (PAD, UNK, EOS, BOS) == (0, 1, 2, 3)
    assert v.tokens[4:] == ("明", "光", "月")  # 明×3, then 光×2 and 月×2 tied → code point order
    assert v.encode("明月夜") == [4, 6, UNK] and v.unknown("明月夜") == ["夜"]
    assert v.decode([BOS, 4, 6, EOS, 5]) == "明月" and v.decode([4, EOS, 5], stop_at_eos=False) == "明光"
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == v
    assert build_vocab(["明月|明月光", "光明"], min_freq=3).tokens[4:] == ("明",)
    assert build_vocab(["明月|明月光", "光明"], max_size=2).tokens[4:] == ("明", "光")
    with pytest.raises(ValueError):
        build_vocab([], min_freq=0)
    with pytest.raises(ValueError):
        Vocab(("a", "b", "c", "d"))


def test_keywords_keep_single_characters_and_rank_by_tfidf():
    docs = [
        ["孤城遥望玉门关", "黄沙百战穿金甲"],
        ["孤城落日斗兵稀", "玉门关外雪"],
        ["春风桃李花开日", "秋雨梧桐叶落时"],
    ]
    ex = KeywordExtractor(user_words=["孤城", "玉门"])
    toks = ex.fit(docs)
    assert "孤城" in toks[0] and all(1 <= len(t) <= 2 for ts in toks for t in ts)
    kws = ex.extract(toks[0], k=4)
    assert len(kws) == 4 and len(set(kws)) == 4
    # words unique to a poem outrank words shared with another poem at equal term frequency
    assert kws == ("遥望", "黄沙", "百战", "穿")  # ties in score → order of appearance
    assert ex.extract(toks[0], k=9)[-3:] == ("孤城", "玉门", "关")
    with pytest.raises(ValueError):
        ex.extract(toks[0], k=0)
    with pytest.raises(RuntimeError):
        KeywordExtractor().extract(["孤城"])


def test_extract_keywords_never_empty():
    out = extract_keywords([["不知何处是", "不见一人来"], ["床前明月光", "疑是地上霜"]], k=3)
    assert all(1 <= len(k) <= 3 for k in out)
    assert "明月" in out[1]
