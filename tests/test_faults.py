"""Fault injection (issue 13): kill -9 at seeded random points of fetch, prepare and train, then run again;
flip seeded random bytes of every kind of artifact; two writers on one run folder. Smoke profile, few steps.

A killed process is a ``mixpoet`` command run by :data:`CHILD`, which wraps one function of the kit (chosen
with its call number by a seeded draw) so that the process stops there, tells the test it is there, waits
for a go-ahead and SIGKILLs itself; meanwhile the test can check what a killed run leaves behind and try a
second writer. ``MIXPOET_FAULT_SEED`` changes the draws (default 13).

What must hold: the run after a kill ends exactly where an uninterrupted run ends (the same files, the same
checkpoint content, the same logs) and leaves no temporary file behind; a damaged artifact is refused with an
error naming the file, or rebuilt, and only ever loaded when its content is intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mixpoet_lib._util import CorruptFileError, FolderBusyError, sha256_file, tree_digest
from mixpoet_lib.checkpoints import build_model, checkpoint_path, load_judge, load_lm, load_model, read_checkpoint
from mixpoet_lib.cli import app as cli
from mixpoet_lib.config import get_profile
from mixpoet_lib.data import dataset as ds
from mixpoet_lib.data.cache import cache_problem
from mixpoet_lib.data.fetch import FetchError, ensure_raw, fetch, verify
from mixpoet_lib.evaluate import systems
from mixpoet_lib.models.judges import CharLM, JudgeClassifier
from mixpoet_lib.published import save_published, write_published_meta
from mixpoet_lib.train.loop import train
from mixpoet_lib.train.supervised import save_fitted

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("MIXPOET_FAULT_SEED", "13"))
STEPS = 6  # per phase; a checkpoint every 2 steps: 3 saves per phase
OVERRIDES = "train.ckpt_every=2"
PROFILE = get_profile("smoke", OVERRIDES)
FLIPS = 8  # random byte flips per artifact (3 for the processed cache, whose repair rebuilds it)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHILD = r"""
import importlib, io, json, os, signal, sys, time
from pathlib import Path

plan = json.loads(sys.argv[1])
owner = importlib.import_module(plan["module"])
name = plan["attr"]
if "." in name:  # a method: Class.method
    cls, name = name.split(".")
    owner = getattr(owner, cls)
real = getattr(owner, name)
seen = {"calls": 0, "bytes": 0}


def die():
    Path(plan["ready"]).write_text(str(os.getpid()))
    while not Path(plan["go"]).exists():
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGKILL)


class Reader:  # a source stream that dies once plan["at"] bytes have been read
    def __init__(self, stream):
        self.stream = stream

    def read(self, n=-1):
        chunk = self.stream.read(n)
        seen["bytes"] += len(chunk)
        if seen["bytes"] >= plan["at"]:
            die()
        return chunk


def hooked(*args, **kwargs):
    seen["calls"] += 1
    if plan["mode"] == "stream":
        f, stream, *rest = args
        return real(f, Reader(stream), *rest, **kwargs)
    if seen["calls"] == plan["at"]:
        if plan["mode"] == "mid_save":  # torch.save(obj, path): half of the bytes reach the file
            buf = io.BytesIO()
            real(args[0], buf)
            Path(args[1]).write_bytes(buf.getvalue()[: buf.tell() // 2])
        die()
    return real(*args, **kwargs)


setattr(owner, name, hooked)
from mixpoet_lib.cli.app import main

sys.exit(main(plan["argv"]))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("MIXPOET_PROFILE", None)
    return env


def _data_dir(data) -> Path:
    return Path(data.root).parents[1]  # <data>/processed/dataset-<key>


def _parts(root: Path) -> list[Path]:
    return sorted(root.rglob(".*.part"))


@contextmanager
def killed_at(plan: dict[str, Any], tmp: Path) -> Iterator[subprocess.Popen]:
    """Run a ``mixpoet`` command that stops at the planned point; yield while it waits there, then kill -9 it."""
    ready, go = tmp / f"ready-{time.monotonic_ns()}", tmp / f"go-{time.monotonic_ns()}"
    plan = {**plan, "ready": str(ready), "go": str(go)}
    cmd = [sys.executable, "-c", CHILD, json.dumps(plan)]
    child = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            if child.poll() is not None:
                pytest.fail(
                    f"the child ended (rc {child.returncode}) before its kill point {plan}: {child.stderr.read()}"
                )  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"kill point never reached: {plan}"
            time.sleep(0.05)
        yield child
    finally:
        go.touch()
        child.wait(timeout=60)
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL, plan


# ---------------------------------------------------------------------------------------------------------
# kill -9 during fetch, prepare and train
# ---------------------------------------------------------------------------------------------------------


def test_fetch_killed_mid_file_then_a_rerun_completes(mirror_dir, tmp_path):
    files = ds.required_files(PROFILE.data)
    at = random.Random(f"{SEED}/fetch").randrange(1, sum(f.size for f in files))
    data = tmp_path / "data"
    argv = ["data", "fetch", "--profile", "smoke", "--mirror", str(mirror_dir), "--data-dir", str(data), "-q"]
    plan = {"module": "mixpoet_lib.data.fetch", "attr": "_write", "mode": "stream", "at": at, "argv": argv}
    with killed_at(plan, tmp_path):
        assert len(_parts(data / "raw")) == 1  # the file being copied, under its temporary name only
    fetch(files, data_dir=data, mirror=mirror_dir, progress=False)
    assert verify(files, data_dir=data) == [] and not _parts(data)
    for f in files:
        assert (data / "raw" / f.name).read_bytes() == (mirror_dir / f.name).read_bytes(), f.name


def _same_dataset(a: ds.PreparedData, b: ds.PreparedData) -> None:
    assert a.root.name == b.root.name and a.corpus_root.name == b.corpus_root.name
    assert a.vocab.tokens == b.vocab.tokens and a.summary == b.summary
    for split in ds.SPLITS:
        assert a.poems(split) == b.poems(split), split
        x, y = a.arrays(split), b.arrays(split)
        for field in ("chars", "length", "labels", "keyword", "poem_index"):
            assert np.array_equal(getattr(x, field), getattr(y, field)), (split, field)


def test_prepare_killed_at_a_random_write_then_a_rerun_equals_a_clean_build(smoke_data, tmp_path):
    points = [("numpy", "savez_compressed", k) for k in range(1, len(ds.SPLITS) + 1)]
    points += [("mixpoet_lib.data.dataset", "write_json_atomic", k) for k in range(1, 5)]  # corpus/summary/manifests
    points += [("mixpoet_lib.data.dataset", "build_dataset", 1)]
    module, attr, at = random.Random(f"{SEED}/prepare").choice(points)
    data = tmp_path / "data"
    shutil.copytree(_data_dir(smoke_data) / "raw", data / "raw")
    argv = ["data", "prepare", "--profile", "smoke", "--data-dir", str(data), "-q"]
    with killed_at({"module": module, "attr": attr, "mode": "call", "at": at, "argv": argv}, tmp_path):
        pass
    said: list[str] = []
    again = ds.prepare(PROFILE, data_dir=data, log=said.append)
    assert not _parts(data), said
    _same_dataset(again, smoke_data)
    for root in (again.root, again.corpus_root):
        assert cache_problem(root, ds.DATASET_FILES if root == again.root else ds.CORPUS_FILES) is None


def _train_argv(run: Path, data: Path) -> list[str]:
    return [
        "train",
        "--profile",
        "smoke",
        "--set",
        OVERRIDES,
        "--models",
        "basic",
        "--run-dir",
        str(run),
        "--data-dir",
        str(data),
        "--max-steps",
        str(STEPS),
        "-q",
    ]


@pytest.fixture(scope="module")
def reference_run(smoke_data, tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must end equal to."""
    run = tmp_path_factory.mktemp("reference")
    train(["basic"], PROFILE, data=smoke_data, run_dir=run, progress=False, max_steps=STEPS)
    return run


def _assert_same_run(a: Path, b: Path) -> None:
    names = sorted(p.name for p in (a / "checkpoints").glob("*.pt"))
    assert names == sorted(p.name for p in (b / "checkpoints").glob("*.pt")) == ["basic_c1.pt", "shared_dae.pt"]
    for name in names:  # the digest covers every tensor byte, optimiser and RNG state, counter and setting
        x, y = read_checkpoint(a / "checkpoints" / name), read_checkpoint(b / "checkpoints" / name)
        assert x["step"] == y["step"] == STEPS and x["digest"] == y["digest"], name
    for log in ("shared_dae.csv", "shared_dae_valid.csv", "basic_c1.csv", "basic_c1_valid.csv"):
        assert (a / "logs" / log).read_bytes() == (b / "logs" / log).read_bytes(), log


def test_train_killed_twice_at_random_points_resumes_to_the_uninterrupted_result(
    reference_run, smoke_data, tmp_path, capsys
):
    """Two kills (mid-checkpoint-write or between checkpoints), then a normal run: the reference, bit for bit.
    While the first killed run waits at its kill point, a second writer of the same folder is refused."""
    rng = random.Random(f"{SEED}/train")
    saves = STEPS // 2  # per phase (a checkpoint every 2 steps); each step and each save flush both logs
    points = [("torch", "save", k, "mid_save") for k in range(1, 2 * saves + 1)]
    points += [("mixpoet_lib.train.logs", "CsvLog.flush", k, "call") for k in range(1, 2 * (2 * STEPS + 2 * saves) + 1)]
    # a resumed run saves at least once and flushes its logs at least 6 times: the second point is among those
    early = [
        ("torch", "save", 1, "mid_save"),
        *(("mixpoet_lib.train.logs", "CsvLog.flush", k, "call") for k in range(1, 7)),
    ]
    run, data = tmp_path / "run", _data_dir(smoke_data)
    for attempt, (module, attr, at, mode) in enumerate((rng.choice(points), rng.choice(early))):
        plan = {"module": module, "attr": attr, "mode": mode, "at": at, "argv": _train_argv(run, data)}
        with killed_at(plan, tmp_path) as child:
            if attempt == 0:  # a second writer while the first one works
                assert cli.main(_train_argv(run, data)) == 1
                err = capsys.readouterr().err.strip()
                assert len(err.splitlines()) == 1 and f"in use by pid {child.pid}" in err, err
                with pytest.raises(FolderBusyError):
                    train(["basic"], PROFILE, data=smoke_data, run_dir=run, progress=False, max_steps=STEPS)
    train(["basic"], PROFILE, data=smoke_data, run_dir=run, progress=False, max_steps=STEPS)
    assert not _parts(run)
    _assert_same_run(reference_run, run)


# ---------------------------------------------------------------------------------------------------------
# random byte flips in every kind of artifact
# ---------------------------------------------------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << (offset % 8)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `touch -r`: the mtime says nothing changed


def _offsets(path: Path, label: str, n: int = FLIPS) -> list[int]:
    rng = random.Random(f"{SEED}/{label}")
    size = path.stat().st_size
    return sorted({rng.randrange(size) for _ in range(n)} | {size - 1})


def _refused_or_intact(path: Path, label: str, load: Callable[[Path], Any], fingerprint: Callable[[Any], str]) -> int:
    """Flip bytes of a copy of ``path`` one at a time; each load must fail naming the file, or give back exactly
    what the intact file gives. Returns how many flips were refused."""
    want = fingerprint(load(path))
    refused = 0
    for offset in _offsets(path, label):
        copy = path.with_name(f"flipped-{path.name}")
        shutil.copy(path, copy)
        if path.suffix == ".safetensors":  # the copy gets its own JSON, sealed before the flip
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            write_published_meta(copy, {**meta, "weights": copy.name})
        _flip(copy, offset)
        try:
            got = load(copy)
        except (CorruptFileError, ValueError) as exc:
            assert copy.name in str(exc) and len(str(exc).splitlines()) == 1, (offset, exc)
            refused += 1
            continue
        assert fingerprint(got) == want, f"{label}: byte {offset} flipped and silently used"
    return refused


def _state_print(module: torch.nn.Module) -> str:
    return tree_digest({k: v.cpu() for k, v in module.state_dict().items()})


def test_flipped_bytes_in_training_checkpoints_are_refused(reference_run):
    for name in ("shared_dae", "basic_c1"):
        path = checkpoint_path(reference_run, *name.split("_"))
        assert _refused_or_intact(path, name, read_checkpoint, lambda c: c["digest"]) > 0


def test_flipped_bytes_in_judge_and_lm_checkpoints_are_refused(smoke_data, tmp_path):
    torch.manual_seed(0)
    judge = JudgeClassifier(smoke_data.vocab, "era", 16, 16)
    judge.report = {"test": {"n": 1}}
    save_fitted(judge, {"kind": "judge"}, tmp_path / "judge_era.pt", factor="era")
    lm = CharLM(smoke_data.vocab, 16, 16)
    save_fitted(lm, {"kind": "charlm"}, tmp_path / "charlm.pt")
    assert _refused_or_intact(tmp_path / "judge_era.pt", "judge", lambda p: load_judge(p, "cpu"), _state_print) > 0
    assert _refused_or_intact(tmp_path / "charlm.pt", "lm", lambda p: load_lm(p, "cpu"), _state_print) > 0


def test_flipped_bytes_in_published_weights_and_their_json_are_refused(smoke_data, tmp_path):
    smoke_data.vocab.save(tmp_path / "vocab.json")
    torch.manual_seed(0)
    model = build_model("igs", PROFILE.model, len(smoke_data.vocab))
    meta = {
        "type": "model",
        "name": "igs",
        "kind": "igs",
        "model_args": {"kind": "igs", "straight_through": False},
        "model_config": asdict(PROFILE.model),
        "vocab_size": len(smoke_data.vocab),
        "vocab_path": "vocab.json",
        "weights_key": "0" * 16,
    }
    st, js = save_published(tmp_path, "igs", model.state_dict(), meta, "int8")
    flips = _offsets(st, "published")
    assert _refused_or_intact(st, "published", lambda p: load_model(p, "cpu"), _state_print) == len(flips)
    for offset in _offsets(js, "config"):  # every byte of the JSON counts: each flip is refused
        shutil.copy(js, tmp_path / "keep.json")
        _flip(js, offset)
        with pytest.raises(ValueError, match=r"igs\.json"):
            load_model(st, "cpu")
        shutil.copy(tmp_path / "keep.json", js)


def test_flipped_bytes_in_raw_files_are_found_and_fetched_again(smoke_data, mirror_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(_data_dir(smoke_data) / "raw", data / "raw")
    files = ds.required_files(PROFILE.data)
    rng = random.Random(f"{SEED}/raw")
    for f in rng.sample(files, 3):
        _flip(data / "raw" / f.name, rng.randrange(f.size))
        assert verify(files, data_dir=data) == [f.name]
        bad_mirror = tmp_path / "bad_mirror" / f.name  # a damaged mirror file is never copied either
        bad_mirror.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data / "raw" / f.name, bad_mirror)
        with pytest.raises(FetchError, match="sha256 mismatch"):
            fetch([f], data_dir=tmp_path / "other", mirror=tmp_path / "bad_mirror", progress=False)
        ensure_raw(files, data_dir=data, mirror=mirror_dir, rehash=True)
        assert sha256_file(data / "raw" / f.name) == f.sha256


def test_flipped_bytes_in_the_processed_cache_are_rebuilt(smoke_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(_data_dir(smoke_data), data)
    rng = random.Random(f"{SEED}/processed")
    names = [smoke_data.root / n for n in ds.DATASET_FILES] + [smoke_data.corpus_root / n for n in ds.CORPUS_FILES]
    for original in rng.sample(names, 3):
        target = data / "processed" / original.parent.name / original.name
        _flip(target, rng.randrange(target.stat().st_size))
        said: list[str] = []
        again = ds.prepare(PROFILE, data_dir=data, log=said.append)
        assert any(str(target) in m and "rebuilding" in m for m in said), said
        _same_dataset(again, smoke_data)
    assert not _parts(data)


def test_flipped_bytes_in_an_evaluation_cache_make_it_generate_again(tmp_path):
    record = {"role": "inter", "item": 0, "keyword": "春", "text": "春风吹又生|明月照高楼|白日依山尽|黄河入海流"}
    path = systems.poems_path(tmp_path, "aus", 1)
    systems.save_cached(systems.SystemPoems("aus", 1, [{**record, "score": -1.25}], 2.5, 1, "k"), path)
    want = systems.load_cached(path, "k")
    assert want is not None and want.records[0]["text"] == record["text"]
    for offset in _offsets(path, "eval"):
        copy = tmp_path / "copy.json"
        shutil.copy(path, copy)
        _flip(copy, offset)
        got = systems.load_cached(copy, "k")
        assert got is None or got == want, f"byte {offset} flipped and silently used"
    legacy = json.loads(path.read_text(encoding="utf-8"))
    del legacy["digest"]  # written before caches had digests (the committed reference run): still read
    path.write_text(json.dumps(legacy, ensure_ascii=False), encoding="utf-8")
    assert systems.load_cached(path, "k") == want
