"""Turning encoded instances into model batches (design §2.7), with seeded, resumable batch order.

A batch is a dict of tensors (token ids PAD=0, UNK=1, <E>=2, <B>=3):

* ``keys``  (B, Kt)   ``<B>`` keyword ``<E>`` PAD…            (Kt ≤ 4)
* ``poems`` (B, T)    ``<B>`` 4 lines concatenated ``<E>`` PAD (T ≤ 30; DAE mode corrupts it with UNK)
* ``lines`` (B, 4, 8) each line + ``<E>``, PAD to 8 always (the same padding in training and generation)
* ``length`` (B, 2)   one-hot, [0, 1] for 5-character and [1, 0] for 7-character poems (official order)
* ``labels`` (B, 2)   factor ids or -1; ``label_mask`` (B, 2) 1.0 where labelled
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from mixpoet_lib.data.corpora import LONG_LINE
from mixpoet_lib.data.dataset import PreparedData, SplitArrays
from mixpoet_lib.data.vocab import BOS, EOS, PAD, UNK

LINE_SLOTS = 8  # 7 characters + <E>
MODES = ("dae", "cl1", "cl2", "mixpoet_pre", "mixpoet_tune", "all")


def select_instances(arrays: SplitArrays, mode: str) -> np.ndarray:
    """Return the instance ids a training mode uses (design §2.7)."""
    labels = arrays.instance_labels()
    if mode in ("dae", "mixpoet_pre", "all"):
        return np.arange(arrays.n_instances)
    if mode == "cl1":
        return np.flatnonzero(labels[:, 0] >= 0)
    if mode == "cl2":
        return np.flatnonzero(labels[:, 1] >= 0)
    if mode == "mixpoet_tune":
        return np.flatnonzero((labels >= 0).any(axis=1))
    raise ValueError(f"unknown batching mode {mode!r}; choose one of {', '.join(MODES)}")


def corrupt(chars: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Replace ceil(ratio × n) distinct real characters of one poem (flat ids) with UNK (DAE input)."""
    real = np.flatnonzero(chars != PAD)
    k = math.ceil(ratio * len(real)) if ratio > 0 else 0
    out = chars.copy()
    if k:
        out[rng.choice(real, size=k, replace=False)] = UNK
    return out


def make_batch(
    arrays: SplitArrays, ids: np.ndarray, corrupt_ratio: float = 0.0, rng: np.random.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Build the batch dict for the given instance ids."""
    pidx = arrays.poem_index[ids]
    chars = arrays.chars[pidx]  # (B, 4, 7)
    lengths = arrays.length[pidx].astype(np.int64)
    b = len(ids)
    kw = arrays.keyword[ids]
    kw_len = (kw != PAD).sum(1)
    keys = np.full((b, int(kw_len.max()) + 2), PAD, dtype=np.int64)
    keys[:, 0] = BOS
    for i in range(b):
        keys[i, 1 : 1 + kw_len[i]] = kw[i, : kw_len[i]]
        keys[i, 1 + kw_len[i]] = EOS
    t = int(lengths.max()) * 4 + 2
    poems = np.full((b, t), PAD, dtype=np.int64)
    poems[:, 0] = BOS
    lines = np.full((b, 4, LINE_SLOTS), PAD, dtype=np.int64)
    if corrupt_ratio > 0 and rng is None:
        raise ValueError("corrupting the poems needs a seeded rng")
    for i in range(b):
        n = lengths[i]
        flat = chars[i, :, :n].reshape(-1)
        if corrupt_ratio > 0:
            flat = corrupt(flat, corrupt_ratio, rng)  # type: ignore[arg-type]
        poems[i, 1 : 1 + 4 * n] = flat
        poems[i, 1 + 4 * n] = EOS
        lines[i, :, :n] = chars[i, :, :n]
        lines[i, :, n] = EOS
    labels = arrays.labels[pidx].astype(np.int64)
    length = np.where(lengths[:, None] == LONG_LINE, [[1.0, 0.0]], [[0.0, 1.0]]).astype(np.float32)
    return {
        "keys": torch.from_numpy(keys),
        "poems": torch.from_numpy(poems),
        "lines": torch.from_numpy(lines),
        "length": torch.from_numpy(length),
        "labels": torch.from_numpy(labels),
        "label_mask": torch.from_numpy((labels >= 0).astype(np.float32)),
    }


def epoch_order(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = False) -> list[np.ndarray]:
    """Return the batches of one epoch: a permutation seeded by (seed, epoch), cut into batches.

    The last short batch is topped up with randomly re-drawn instances, as in the official code,
    unless ``drop_last``. Being a pure function of (seed, epoch), it lets a resumed run see exactly the
    batches an uninterrupted run would have seen.
    """
    if n <= 0:
        raise ValueError("cannot batch an empty set of instances")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches[-1]) < batch_size:
        if drop_last and len(batches) > 1:
            batches.pop()
        else:
            extra = rng.choice(n, size=batch_size - len(batches[-1]), replace=n < batch_size)
            batches[-1] = np.concatenate([batches[-1], extra])
    return batches


class BatchStream:
    """Seeded, resumable stream of batches over one or more splits for a training mode."""

    def __init__(
        self,
        data: PreparedData,
        splits: tuple[str, ...],
        mode: str,
        batch_size: int,
        seed: int,
        corrupt_ratio: float = 0.0,
    ) -> None:
        self.parts = [data.arrays(s) for s in splits]
        self.mode, self.batch_size, self.seed, self.corrupt_ratio = mode, batch_size, seed, corrupt_ratio
        self.index = [(p, i) for p, arr in enumerate(self.parts) for i in select_instances(arr, mode)]
        if not self.index:
            raise ValueError(f"no instances for mode {mode!r} in splits {splits}")

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self.index) / self.batch_size)

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Yield the batches of ``epoch`` from batch number ``start`` on."""
        order = epoch_order(len(self.index), self.batch_size, self.seed, epoch)
        for step in range(start, len(order)):
            rng = np.random.default_rng([self.seed, epoch, step])
            yield self._collate(order[step], rng)

    def _collate(self, picks: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        chosen = [self.index[i] for i in picks]
        if len(self.parts) == 1:
            return make_batch(self.parts[0], np.array([i for _, i in chosen]), self.corrupt_ratio, rng)
        merged = concat_arrays([self.parts[p] for p, _ in chosen], [i for _, i in chosen])
        return make_batch(merged, np.arange(len(chosen)), self.corrupt_ratio, rng)


def concat_arrays(parts: list[SplitArrays], ids: list[int]) -> SplitArrays:
    """Gather single instances from several splits into one small SplitArrays (one poem per instance)."""
    pidx = [a.poem_index[i] for a, i in zip(parts, ids)]
    return SplitArrays(
        chars=np.stack([a.chars[p] for a, p in zip(parts, pidx)]),
        length=np.array([a.length[p] for a, p in zip(parts, pidx)], dtype=np.int8),
        labels=np.stack([a.labels[p] for a, p in zip(parts, pidx)]),
        keyword=np.stack([a.keyword[i] for a, i in zip(parts, ids)]),
        poem_index=np.arange(len(ids), dtype=np.int32),
    )
