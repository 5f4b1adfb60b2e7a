"""Batch tensors: shapes, special tokens, DAE corruption, modes and the seeded epoch order."""

from __future__ import annotations

import numpy as np
import pytest

from mixpoet_lib.data.batching import BatchStream, corrupt, epoch_order, make_batch, select_instances
from mixpoet_lib.data.corpora import Poem
from mixpoet_lib.data.dataset import encode_split
from mixpoet_lib.data.vocab import BOS, EOS, PAD, UNK, build_vocab

POEMS = [
    Poem(("床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"), ("明月", "霜"), (2, -1)),
    Poem(("秦时明月汉时关", "万里长征人未还", "但使龙城飞将在", "不教胡马度阴山"), ("龙城",), (0, 1)),
    Poem(("春眠不觉晓", "处处闻啼鸟", "夜来风雨声", "花落知多少"), ("春",), (-1, -1)),
]


@pytest.fixture()
def arrays():
    vocab = build_vocab(p.content for p in POEMS)
    return vocab, encode_split(POEMS, vocab)


def test_batch_layout(arrays):
    vocab, arr = arrays
    b = make_batch(arr, np.array([0, 2]))  # instance 2 = second poem (龙城)
    assert b["keys"].tolist()[0] == [BOS, *vocab.encode("明月"), EOS]
    assert b["keys"].tolist()[1] == [BOS, *vocab.encode("龙城"), EOS]
    assert b["poems"].shape == (2, 30)
    assert b["poems"][0, :22].tolist() == [BOS, *vocab.encode("床前明月光疑是地上霜举头望明月低头思故乡"), EOS]
    assert (b["poems"][0, 22:] == PAD).all()
    assert b["lines"].shape == (2, 4, 8)
    assert b["lines"][0, 0].tolist() == [*vocab.encode("床前明月光"), EOS, PAD, PAD]
    assert b["lines"][1, 3].tolist() == [*vocab.encode("不教胡马度阴山"), EOS]
    assert b["length"].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert b["labels"].tolist() == [[2, -1], [0, 1]] and b["label_mask"].tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_dae_corruption_counts(arrays):
    _, arr = arrays
    rng = np.random.default_rng(0)
    b = make_batch(arr, np.array([0, 2]), corrupt_ratio=0.1, rng=rng)
    assert (b["poems"][0] == UNK).sum() == 2 and (b["poems"][1] == UNK).sum() == 3  # ceil(10% of 20 / 28)
    assert (b["lines"] != UNK).all(), "targets are never corrupted"
    flat = np.array([5, 6, 7, PAD, PAD])
    assert corrupt(flat, 0.5, rng).tolist().count(UNK) == 2 and corrupt(flat, 0.0, rng).tolist() == flat.tolist()
    with pytest.raises(ValueError, match="seeded rng"):
        make_batch(arr, np.array([0]), corrupt_ratio=0.1)


def test_modes(arrays):
    _, arr = arrays  # instances: poem0 ×2 (2,-1), poem1 ×1 (0,1), poem2 ×1 (-1,-1)
    assert select_instances(arr, "dae").tolist() == [0, 1, 2, 3]
    assert select_instances(arr, "cl1").tolist() == [0, 1, 2]
    assert select_instances(arr, "cl2").tolist() == [2]
    assert select_instances(arr, "mixpoet_tune").tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown batching mode"):
        select_instances(arr, "nope")


def test_epoch_order_is_a_seeded_function_of_epoch():
    a, b = epoch_order(10, 4, seed=3, epoch=0), epoch_order(10, 4, seed=3, epoch=0)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [len(x) for x in a] == [4, 4, 4]  # last batch topped up with re-drawn instances
    assert sorted(np.concatenate(a)[:10].tolist()) == list(range(10))
    assert [x.tolist() for x in epoch_order(10, 4, 3, 1)] != [x.tolist() for x in a]
    assert len(epoch_order(10, 4, 3, 0, drop_last=True)) == 2
    with pytest.raises(ValueError):
        epoch_order(0, 4, 3, 0)


def test_stream_over_real_splits_resumes_identically(smoke_data):
    stream = BatchStream(
        smoke_data, ("unl_train", "cqcf_train"), "mixpoet_pre", batch_size=16, seed=7, corrupt_ratio=0.1
    )
    full = list(b["poems"] for _, b in zip(range(5), stream.batches(epoch=2)))
    resumed = list(b["poems"] for _, b in zip(range(2), stream.batches(epoch=2, start=3)))
    assert all((x == y).all() for x, y in zip(full[3:], resumed))
    tune = BatchStream(smoke_data, ("cqcf_train",), "mixpoet_tune", batch_size=16, seed=7)
    batch = next(tune.batches(0))
    assert (batch["label_mask"].sum(1) >= 1).all()
    assert len(tune) == -(-len(tune.index) // 16)
