"""The independent judges of notebook 05: a factor classifier per style factor and a character language model.

They share nothing with MixPoet (a generated poem is never judged by MixPoet's own q(y|x,w)); how they are
trained, saved and reused is in :mod:`mixpoet_lib.train.judges` and :mod:`mixpoet_lib.train.charlm`.

* :class:`NgramJudge` (the default judge) — a linear classifier over the poem's TF-IDF-weighted characters and
  within-line character pairs, the IDF counted on the unlabelled pool (design §6.4).
* :class:`JudgeClassifier` — a BiGRU over the poem's characters, max-pooled over time, then a linear layer.
* :class:`CharLM` — a character LSTM language model over whole poems with an adaptive-softmax output
  (``nn.AdaptiveLogSoftmaxWithLoss``; the vocabulary is sorted by frequency, so frequent characters sit in
  its head cluster): exact normalised log-probabilities at a fraction of a full softmax's cost.

Both read the kit vocabulary and reuse ``<E>`` as the line end, as MixPoet's decoder does: the judges read
``line1 <E> line2 <E> line3 <E> line4``, the LM ``<B> line1 <E> … line4 <E>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mixpoet_lib.config import FACTOR_CLASSES, FACTOR_NAMES
from mixpoet_lib.data.dataset import SplitArrays
from mixpoet_lib.data.vocab import BOS, EOS, N_SPECIALS, PAD, Vocab
from mixpoet_lib.metrics import split_lines

__all__ = [
    "LM_CUTOFFS",
    "Judge",
    "NgramJudge",
    "JudgeClassifier",
    "CharLM",
    "encode_poem",
    "encode_arrays",
    "encode_texts",
    "character_occurrences",
    "character_pairs",
]

LM_CUTOFFS = (400, 2000)  # adaptive-softmax clusters: ids < 400 (head), 400-1999, ≥ 2000
LM_DIV_VALUE = 4.0
JUDGE_DROPOUT = 0.2
LM_DROPOUT = 0.2


def encode_poem(vocab: Vocab, poem: str | Sequence[str], bos: bool = False, eos: bool = False) -> list[int]:
    """Token ids ``[<B>] line1 <E> line2 <E> … line4 [<E>]`` of a poem ('|'-joined string or lines)."""
    ids = [BOS] if bos else []
    for i, line in enumerate(split_lines(poem)):
        if i:
            ids.append(EOS)
        ids.extend(vocab.encode(line))
    if eos:
        ids.append(EOS)
    return ids


def encode_arrays(
    arrays: SplitArrays, bos: bool = False, eos: bool = False, rows: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode a split's poem arrays like :func:`encode_poem`: a PAD-padded (P, T) int64 tensor and (P,) lengths."""
    idx = np.arange(len(arrays.length)) if rows is None else np.asarray(rows, dtype=np.int64)
    lens = arrays.length[idx].astype(np.int64)
    width = int(bos) + 4 * 7 + 3 + int(eos)
    out = np.full((len(idx), width), PAD, dtype=np.int64)
    for n in np.unique(lens):
        sel = np.flatnonzero(lens == n)
        chars = arrays.chars[idx[sel], :, :n].astype(np.int64)  # (k, 4, n)
        body = np.concatenate([chars, np.full((len(sel), 4, 1), EOS, dtype=np.int64)], axis=2)
        body = body.reshape(len(sel), -1)[:, :-1]  # drop the line end after line 4
        parts = [np.full((len(sel), 1), BOS)] * bos + [body] + [np.full((len(sel), 1), EOS)] * eos
        row = np.concatenate(parts, axis=1)
        out[sel, : row.shape[1]] = row
    lengths = int(bos) + 4 * lens + 3 + int(eos)
    tokens = torch.from_numpy(out)
    return tokens[:, : int(lengths.max())] if len(idx) else tokens[:, :0], torch.from_numpy(lengths)


def _pad(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(np.asarray(s, dtype=np.int64))
    return out, lengths


def encode_texts(
    vocab: Vocab, poems: Sequence[str | Sequence[str]], bos: bool, eos: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode raw poems like :func:`encode_poem`: a PAD-padded (P, T) int64 tensor and (P,) lengths.

    A poem without any character raises ValueError naming its index.
    """
    seqs = []
    for k, p in enumerate(poems):
        ids = encode_poem(vocab, p, bos, eos)
        if len(ids) - bos - eos - (len(split_lines(p)) - 1) <= 0:
            raise ValueError(f"poem {k} has no characters: {p!r}")
        seqs.append(ids)
    return _pad(seqs)


def character_occurrences(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(poem rows, character ids) of every character in (P, T) token ids; specials (padding, unknown, line ends)
    are left out."""
    real = tokens >= N_SPECIALS
    rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None].expand_as(tokens)
    return rows[real], tokens[real]


def character_pairs(tokens: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(poem rows, a·V + b) of every pair of adjacent characters a, b within a line of (P, T) token ids (a pair
    never spans a line end or a special)."""
    real = tokens >= N_SPECIALS
    pair = real[:, :-1] & real[:, 1:]
    rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None].expand(-1, tokens.shape[1] - 1)
    return rows[pair], (tokens[:, :-1] * vocab_size + tokens[:, 1:])[pair]


class JudgeClassifier(nn.Module):
    """BiGRU over characters → max-pool over time → dropout → linear, for one factor."""

    def __init__(self, vocab: Vocab, factor: str, emb: int, hidden: int, dropout: float = JUDGE_DROPOUT) -> None:
        super().__init__()
        if factor not in FACTOR_CLASSES:
            raise ValueError(f"unknown factor {factor!r}; choose one of {', '.join(FACTOR_NAMES)}")
        self.vocab, self.factor = vocab, factor
        self.classes = FACTOR_CLASSES[factor]
        self.hparams = {"emb": emb, "hidden": hidden, "dropout": dropout}
        self.report: dict[str, Any] = {}
        self.embed = nn.Embedding(len(vocab), emb, padding_idx=PAD)
        self.rnn = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, len(self.classes))

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.out.weight.device

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids and (B,) lengths → (B, n_classes) logits."""
        return self.classify_embedded(self.embed(tokens), lengths)

    def classify_embedded(self, emb: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, emb) character embeddings (perhaps perturbed: virtual adversarial training) → (B, n_classes)."""
        t = emb.shape[1]
        packed = pack_padded_sequence(self.drop(emb), lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=t)
        mask = torch.arange(t, device=emb.device)[None, :] < lengths.to(emb.device)[:, None]
        pooled = states.masked_fill(~mask[:, :, None], float("-inf")).max(dim=1).values
        return self.out(self.drop(pooled))

    def encode(self, poems: Sequence[str | Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode raw poems for :meth:`forward` (no <B>/<E>)."""
        return encode_texts(self.vocab, poems, bos=False, eos=False)


class NgramJudge(nn.Module):
    """Linear classifier of one factor over a poem's characters and within-line character pairs (bigrams).

    Feature j of a poem is x_j = tf_j · idf_j / ‖tf · idf‖: tf counts the character (j < V) or the pair of
    adjacent characters of one line (j ≥ V, one of the ``bigrams`` the judge knows), idf_j = ln((N + 1) /
    (df_j + 1)) + 1 over the N poems it was counted on. logits = W x + b. Pairs never cross a line end; specials
    (padding, unknown, line ends) are no features.
    """

    bigram_keys: torch.Tensor
    idf: torch.Tensor

    def __init__(self, vocab: Vocab, factor: str, n_bigrams: int) -> None:
        super().__init__()
        if factor not in FACTOR_CLASSES:
            raise ValueError(f"unknown factor {factor!r}; choose one of {', '.join(FACTOR_NAMES)}")
        self.vocab, self.factor = vocab, factor
        self.classes = FACTOR_CLASSES[factor]
        self.hparams = {"kind": "ngram", "n_bigrams": n_bigrams}
        self.report: dict[str, Any] = {}
        self.register_buffer("bigram_keys", torch.zeros(n_bigrams, dtype=torch.long))  # sorted a·V + b
        self.register_buffer("idf", torch.ones(len(vocab) + n_bigrams))
        self.out = nn.Linear(len(vocab) + n_bigrams, len(self.classes))

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.out.weight.device

    @property
    def n_features(self) -> int:
        """V characters + the known bigrams."""
        return int(self.idf.numel())

    def feature_ids(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, feature ids) of every character and known bigram occurrence in (B, T) token ids (repeats kept)."""
        tokens = tokens.to(self.idf.device)
        uni_rows, uni = character_occurrences(tokens)
        pair_rows, keys = character_pairs(tokens, len(self.vocab))
        pos = torch.searchsorted(self.bigram_keys, keys).clamp(max=max(self.bigram_keys.numel() - 1, 0))
        known = self.bigram_keys[pos] == keys if self.bigram_keys.numel() else torch.zeros_like(keys, dtype=torch.bool)
        return torch.cat([uni_rows, pair_rows[known]]), torch.cat([uni, len(self.vocab) + pos[known]])

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, F) sparse TF-IDF features, each row of L2 norm 1 (a poem with no feature stays zero)."""
        rows, ids = self.feature_ids(tokens)
        shape = (tokens.shape[0], self.n_features)
        x = torch.sparse_coo_tensor(torch.stack([rows, ids]), self.idf[ids], shape, check_invariants=True).coalesce()
        r, v = x.indices()[0], x.values()
        norm = torch.zeros(tokens.shape[0], device=v.device).index_add_(0, r, v * v).sqrt().clamp(min=1e-12)
        return torch.sparse_coo_tensor(x.indices(), v / norm[r], shape, is_coalesced=True, check_invariants=True)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) token ids (lengths unused: padding is no feature) → (B, n_classes) logits."""
        return torch.sparse.mm(self.features(tokens), self.out.weight.T) + self.out.bias

    def encode(self, poems: Sequence[str | Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode raw poems for :meth:`forward` (no <B>/<E>)."""
        return encode_texts(self.vocab, poems, bos=False, eos=False)


class CharLM(nn.Module):
    """Character LSTM language model over ``<B> line1 <E> … line4 <E>`` with an adaptive-softmax output."""

    def __init__(
        self,
        vocab: Vocab,
        emb: int,
        hidden: int,
        layers: int = 1,
        dropout: float = LM_DROPOUT,
        cutoffs: Sequence[int] = LM_CUTOFFS,
        div_value: float = LM_DIV_VALUE,
    ) -> None:
        super().__init__()
        n = len(vocab)
        cuts = [int(c) for c in cutoffs if 0 < c < n - 1] or [max(1, n // 2)]
        self.vocab = vocab
        self.hparams = {
            "emb": emb,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
            "cutoffs": cuts,
            "div_value": div_value,
        }
        self.report: dict[str, Any] = {}
        self.embed = nn.Embedding(n, emb, padding_idx=PAD)
        self.rnn = nn.LSTM(emb, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.out = nn.AdaptiveLogSoftmaxWithLoss(hidden, n, cuts, div_value=div_value)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.embed.weight.device

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) ids → (B, T-1) log-probability of each next token ``tokens[:, 1:]`` (0 where it is PAD)."""
        states, _ = self.rnn(self.drop(self.embed(tokens[:, :-1])))
        h = self.drop(states)
        tgt = tokens[:, 1:]
        logp = self.out(h.reshape(-1, h.shape[-1]), tgt.reshape(-1)).output.view_as(tgt)
        return logp.masked_fill(tgt == PAD, 0.0)

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) ids → (B, T, V) full next-token log-probabilities (for sampling or inspection; slower)."""
        states, _ = self.rnn(self.drop(self.embed(tokens)))
        h = self.drop(states)
        return self.out.log_prob(h.reshape(-1, h.shape[-1])).view(*tokens.shape, -1)

    def encode(self, poems: Sequence[str | Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode raw poems with <B> … <E>."""
        return encode_texts(self.vocab, poems, bos=True, eos=True)


Judge = NgramJudge | JudgeClassifier  # what the judge loaders return
