"""Keyword extraction for poems that come without keywords: TF-IDF over jieba words, IDF from the corpus.

jieba's own extractors (``jieba.analyse``) drop every one-character word and use an IDF table built
from modern Chinese, but a quarter of CCPC's keywords are single characters (暮, 石, 侯 …).
So this module segments with jieba (HMM off, the dictionary extended with the keywords that CCPC and
CQCF already carry), keeps words of 1–2 CJK characters, splits longer dictionary entries into
2-character pieces, computes the inverse document frequency on the poem corpus itself, and returns
the top-k words of each poem by TF-IDF (ties: earlier position first).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import jieba

from mixpoet_lib.data.corpora import MAX_KEYWORD_CHARS, is_cjk

# Function words that never make a useful topic keyword on their own (one split string: a list would take 80 lines).
STOPWORDS = frozenset(
    "不 无 有 之 也 而 其 何 乎 者 以 于 於 与 矣 焉 哉 兮 亦 又 已 且 皆 若 所 为 是 此 彼 谁 自 "  # noqa: SIM905
    "几 莫 未 还 犹 更 尚 即 则 乃 只 却 但 欲 可 能 得 将 共 向 在 如 似 我 吾 尔 汝 着 了 个 那 这 "
    "一 二 三 不知 不见 何处 何事 何人 无人 不是 只有 不可 如何 相逢".split()
)


class KeywordExtractor:
    """TF-IDF keyword extractor over jieba segmentation, with the IDF fitted on a poem corpus."""

    def __init__(self, user_words: Iterable[str] = ()) -> None:
        jieba.setLogLevel(logging.INFO)
        self._tok = jieba.Tokenizer()
        self._tok.initialize()
        for word in sorted(set(user_words)):
            if len(word) == MAX_KEYWORD_CHARS:
                self._tok.add_word(word, freq=None)
        self.idf: dict[str, float] = {}
        self.n_docs = 0

    def tokens(self, lines: Sequence[str]) -> list[str]:
        """Return the candidate keyword tokens of a poem, in order of appearance."""
        out: list[str] = []
        for line in lines:
            for word in self._tok.lcut(line, HMM=False):
                n = MAX_KEYWORD_CHARS
                pieces = [word] if len(word) <= n else [word[i : i + n] for i in range(0, len(word), n)]
                out.extend(p for p in pieces if is_cjk(p) and p not in STOPWORDS)
        return out

    def fit(self, docs: Iterable[Sequence[str]]) -> list[list[str]]:
        """Segment every poem (a list of lines), fit the IDF and return the token lists."""
        token_lists = [self.tokens(lines) for lines in docs]
        df: Counter = Counter()
        for toks in token_lists:
            df.update(set(toks))
        self.n_docs = len(token_lists)
        self.idf = {w: math.log((1 + self.n_docs) / (1 + n)) + 1.0 for w, n in df.items()}
        return token_lists

    def extract(self, tokens: Sequence[str], k: int = 4) -> tuple[str, ...]:
        """Return up to ``k`` distinct tokens ranked by TF-IDF (ties broken by first position)."""
        if not self.idf:
            raise RuntimeError("KeywordExtractor.fit() must run before extract()")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        tf = Counter(tokens)
        first: dict[str, int] = {}
        for i, tok in enumerate(tokens):
            first.setdefault(tok, i)
        default_idf = math.log(1 + self.n_docs) + 1.0
        ranked = sorted(tf, key=lambda w: (-tf[w] * self.idf.get(w, default_idf), first[w]))
        return tuple(ranked[:k])


def extract_keywords(
    docs: Sequence[Sequence[str]], k: int = 4, user_words: Iterable[str] = ()
) -> list[tuple[str, ...]]:
    """Fit an extractor on ``docs`` (poems as line lists) and return each poem's top-k keywords."""
    extractor = KeywordExtractor(user_words)
    token_lists = extractor.fit(docs)
    out = []
    for lines, toks in zip(docs, token_lists):
        words = extractor.extract(toks, k) if toks else ()
        out.append(words or (lines[0][:2],))  # a poem made only of stop-words keeps its opening pair
    return out
