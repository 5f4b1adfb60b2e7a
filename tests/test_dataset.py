"""The prepared dataset: splits without leakage, instances, sub-sampling, cache behaviour, summary."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mixpoet_lib.config import DataConfig, Profile, get_profile
from mixpoet_lib.data import dataset as ds
from mixpoet_lib.data.corpora import Poem, normalised_key
from mixpoet_lib.data.vocab import PAD, build_vocab


def test_no_evaluation_poem_in_a_training_pool(smoke_data):
    train = {normalised_key(p) for s in ds.TRAIN_SPLITS for p in smoke_data.poems(s)}
    for split in ds.EVAL_SPLITS:
        keys = [normalised_key(p) for p in smoke_data.poems(split)]
        assert keys and not train.intersection(keys), split
    every = [normalised_key(p) for s in ds.SPLITS for p in smoke_data.poems(s)]
    assert len(every) == len(set(every)), "a poem appears in two splits"


def test_split_sizes_and_labels(smoke_data):
    cfg = get_profile("smoke").data
    s = smoke_data.summary
    assert s["poems_per_split"]["unl_test"] == cfg.unlabelled_test_poems
    assert s["poems_per_split"]["unl_valid"] == cfg.unlabelled_valid_poems
    assert s["instances_per_split"]["unl_train"] == cfg.unlabelled_train_instances
    assert s["labels"]["cqcf_train"]["poems"] == 10870  # as read, before de-duplication
    assert s["poems_per_split"]["cqcf_train"] == 10867  # 3 exact repeats inside the sample
    assert all(p.labels == (-1, -1) for p in smoke_data.poems("unl_train")[:500])
    assert all(
        1 <= len(p.keywords) <= 4 and all(1 <= len(k) <= 2 for k in p.keywords) for p in smoke_data.poems("unl_train")
    )
    assert s["vocab_size"] == len(smoke_data.vocab) == cfg.max_vocab + 4


def test_arrays_round_trip_to_text(smoke_data):
    arrays = smoke_data.arrays("cqcf_valid")
    poems = smoke_data.poems("cqcf_valid")
    vocab = smoke_data.vocab
    assert arrays.chars.shape == (len(poems), 4, 7) and arrays.n_instances == ds.count_instances(poems)
    for i in (0, 17, len(poems) - 1):
        p = poems[i]
        text = [vocab.decode(arrays.chars[i, j]) for j in range(4)]
        expected = ["".join(ch if ch in vocab else "" for ch in line) for line in p.lines]
        assert text == expected and arrays.length[i] == p.length and tuple(arrays.labels[i]) == p.labels
        if p.length == 5:
            assert (arrays.chars[i, :, 5:] == PAD).all()
    first_kw = arrays.keyword[arrays.poem_index == 0]
    assert [vocab.decode(k) for k in first_kw] == list(poems[0].keywords)


def test_subsample_is_seeded_and_bounded():
    a = ds.subsample_instances(1000, 100, seed=1)
    assert a is not None and len(a) == 100 and len(set(a.tolist())) == 100 and (np.diff(a) > 0).all()
    assert (a == ds.subsample_instances(1000, 100, seed=1)).all()
    assert not (a == ds.subsample_instances(1000, 100, seed=2)).all()
    assert ds.subsample_instances(1000, None, 1) is None and ds.subsample_instances(50, 100, 1) is None
    with pytest.raises(ValueError, match="unlabelled_train_instances"):
        ds.subsample_instances(10, 0, 1)


def test_encode_split_keeps_selected_instances():
    poems = [Poem(("床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"), ("明月", "霜"), (0, 1))]
    vocab = build_vocab(p.content for p in poems)
    arr = ds.encode_split(poems, vocab, np.array([1]))
    assert arr.n_instances == 1 and vocab.decode(arr.keyword[0]) == "霜"
    assert arr.instance_labels().tolist() == [[0, 1]]


def test_cache_reused_and_rebuilt_on_change(tmp_path, mirror_dir, monkeypatch):
    cfg = DataConfig(
        chinese_poetry_max_files=1, unlabelled_valid_poems=50, unlabelled_test_poems=50, unlabelled_train_instances=500
    )
    first = ds.prepare(Profile("test", data=cfg), data_dir=tmp_path, mirror=mirror_dir)
    calls = []
    monkeypatch.setattr(ds, "build_corpus", lambda *a, **k: calls.append("corpus"))
    monkeypatch.setattr(ds, "build_dataset", lambda *a, **k: calls.append("dataset"))
    again = ds.prepare(Profile("test", data=cfg), data_dir=tmp_path, mirror=mirror_dir)
    assert again.root == first.root and calls == []
    monkeypatch.undo()
    changed = ds.prepare(
        Profile("test", data=replace(cfg, unlabelled_train_instances=400)), data_dir=tmp_path, mirror=mirror_dir
    )
    assert changed.corpus_root == first.corpus_root and changed.root != first.root
    assert changed.summary["instances_per_split"]["unl_train"] == 400
    assert not list((tmp_path / "processed").glob(".*part"))


def test_interrupted_build_leaves_no_cache(tmp_path, mirror_dir, monkeypatch):
    cfg = DataConfig(
        chinese_poetry_max_files=1, unlabelled_valid_poems=50, unlabelled_test_poems=50, unlabelled_train_instances=500
    )

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ds, "build_dataset", boom)
    with pytest.raises(KeyboardInterrupt):
        ds.prepare(Profile("test", data=cfg), data_dir=tmp_path, mirror=mirror_dir)
    processed = tmp_path / "processed"
    assert [p.name.startswith("corpus-") for p in processed.iterdir()] == [True]  # finished stage kept
    monkeypatch.undo()
    assert ds.prepare(Profile("test", data=cfg), data_dir=tmp_path, mirror=mirror_dir).summary["vocab_size"] > 100


def test_corrupt_mirror_file_stops_before_any_processing(tmp_path, mirror_dir):
    import shutil

    from mixpoet_lib.data.fetch import FetchError

    bad = tmp_path / "mirror"
    shutil.copytree(mirror_dir / "mixpoet", bad / "mixpoet")
    target = bad / "mixpoet" / "cqcf_valid_sample.json"
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[100] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(FetchError, match=r"cqcf_valid_sample\.json"):
        ds.prepare(get_profile("smoke"), data_dir=tmp_path / "data", mirror=bad)
    assert not (tmp_path / "data" / "raw" / "mixpoet" / "cqcf_valid_sample.json").exists()
    assert not (tmp_path / "data" / "processed").exists()


def test_format_summary_mentions_every_section(smoke_data):
    text = ds.format_summary(smoke_data.summary)
    for needle in (
        "Poems per source and split",
        "CQCF labels",
        "5- / 7-character",
        "Vocabulary size",
        "Skipped records by reason",
        "not 4 lines",
        "Duplicates dropped",
        "Keywords extracted",
    ):
        assert needle in text
