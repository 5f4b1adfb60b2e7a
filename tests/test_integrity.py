"""Issue 13, artifacts side: one test per reproduced failure (items 1-4, 6, 7, 12, 15), smoke profile, small.

Each test first builds the situation the issue measured (a damaged checkpoint, a second writer, a byte
flipped under a restored mtime, a damaged processed cache, an edited config JSON, an unfinished checkpoint,
a read-only data folder, leftovers of a killed writer) and checks the kit now refuses it with a one-line
error naming the file, or recomputes it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from mixpoet_lib import _util
from mixpoet_lib._util import (
    CorruptFileError,
    FolderBusyError,
    FolderLock,
    atomic_folder,
    atomic_write,
    default_mode,
    remove_stale_parts,
    write_json_atomic,
)
from mixpoet_lib.checkpoints import build_model, checkpoint_path, load_model, read_checkpoint, save_checkpoint
from mixpoet_lib.cli import app as cli
from mixpoet_lib.config import get_profile
from mixpoet_lib.data import dataset as ds
from mixpoet_lib.data.cache import cache_problem
from mixpoet_lib.data.fetch import fetch, verify
from mixpoet_lib.published import read_published, save_published
from mixpoet_lib.train.loop import train

REPO = Path(__file__).resolve().parents[1]
SMOKE = get_profile("smoke")
PINGSHUI = "thu-aipoet/CRRD/pingshui.txt"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data_dir(data) -> Path:
    return Path(data.root).parents[1]  # <data>/processed/dataset-<key>


def _flip(path: Path, offset: int, keep_mtime: bool = False) -> None:
    """Flip the low bit of one byte of a file (optionally giving the file its old mtime back, as ``touch -r``)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _one_line_error(capsys, argv: list[str], *named: str) -> str:
    """Run the command in-process; assert exit status 1 and one stderr line naming every ``named``."""
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("mixpoet: error:"), err
    for word in named:
        assert word in err, err
    return err


def _child_env() -> dict[str, str]:
    env = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("MIXPOET_PROFILE", None)
    return env


# ---------------------------------------------------------------------------------------------------------
# item 1: damaged training checkpoints
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_run(smoke_data, tmp_path_factory) -> Path:
    """Two steps of the DAE and of basic: real checkpoints with Adam state, RNG states and counters."""
    run = tmp_path_factory.mktemp("short_run")
    train(["basic"], SMOKE, data=smoke_data, run_dir=run, progress=False, max_steps=2)
    return run


def test_item_1_truncated_and_empty_checkpoints_give_one_line_errors(short_run, tmp_path, capsys):
    good = checkpoint_path(short_run, "basic", "c1")
    assert read_checkpoint(good)["step"] == 2
    for name, content in (("truncated.pt", good.read_bytes()[: good.stat().st_size // 2]), ("empty.pt", b"")):
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(CorruptFileError, match=rf"{name}.*delete it and train again"):
            read_checkpoint(bad)
        _one_line_error(capsys, ["generate", "--checkpoint", str(bad), "--keyword", "春"], name)


def test_item_1_altered_adam_state_refuses_to_resume(short_run, smoke_data, tmp_path):
    """One value of the optimiser state changed (the digest left as it was): resuming would diverge, so it stops."""
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    path = checkpoint_path(run, "shared", "dae")
    ckpt = torch.load(path, weights_only=True)
    state = next(iter(ckpt["optimizers"].values()))["state"]
    moment = next(iter(state.values()))["exp_avg"]
    moment.view(-1)[0] += 1e-3
    torch.save(ckpt, path)
    with pytest.raises(CorruptFileError, match=r"cannot resume shared_dae: checkpoint .*shared_dae\.pt is corrupt"):
        train(["basic"], SMOKE, data=smoke_data, run_dir=run, progress=False, max_steps=4)
    assert torch.load(path, weights_only=True)["step"] == 2  # nothing was overwritten


def test_item_1_checkpoint_without_digest_is_refused(short_run, tmp_path):
    ckpt = torch.load(checkpoint_path(short_run, "basic", "c1"), weights_only=True)
    del ckpt["digest"]
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(CorruptFileError, match=r"old\.pt has no content digest"):
        load_model(tmp_path / "old.pt")


# ---------------------------------------------------------------------------------------------------------
# item 2: one writer per run folder
# ---------------------------------------------------------------------------------------------------------

_HOLDER = """
import sys, time
from mixpoet_lib._util import FolderLock
with FolderLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""

_NESTED = """
import sys
from mixpoet_lib._util import FolderLock
with FolderLock(sys.argv[1]):
    print("inherited", flush=True)
"""


def test_item_2_second_writer_is_refused_and_a_dead_holder_taken_over(smoke_data, tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run)], env=_child_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError, match=rf"in use by pid {holder.pid} on "):
            train(["basic"], SMOKE, data=smoke_data, run_dir=run, progress=False, max_steps=1)
        argv = ["train", "--profile", "smoke", "--models", "basic", "--run-dir", str(run), "--max-steps", "1", "-q"]
        _one_line_error(capsys, [*argv, "--data-dir", str(_data_dir(smoke_data))], f"pid {holder.pid}", str(run))
        assert not list((run / "checkpoints").glob("*.pt"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()  # type: ignore[union-attr]
    warnings: list[str] = []
    with FolderLock(run, warn=warnings.append) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert len(warnings) == 1 and f"pid {holder.pid}" in warnings[0] and "taking over" in warnings[0]
    assert (run / ".lock").read_text() == ""  # released cleanly: the next writer gets no warning


def test_item_2_lock_is_reentrant_and_inherited_by_child_processes(tmp_path):
    with FolderLock(tmp_path), FolderLock(tmp_path):  # nested in one process
        proc = subprocess.run(
            [sys.executable, "-c", _NESTED, str(tmp_path)], env=_child_env(), capture_output=True, text=True
        )
        assert proc.returncode == 0 and proc.stdout.strip() == "inherited", proc.stderr
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert _util.ENV_HELD_LOCKS not in os.environ or str(tmp_path.resolve()) not in os.environ[_util.ENV_HELD_LOCKS]


# ---------------------------------------------------------------------------------------------------------
# item 3: verify re-hashes
# ---------------------------------------------------------------------------------------------------------


def test_item_3_verify_finds_a_flipped_byte_under_a_restored_mtime(smoke_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(_data_dir(smoke_data) / "raw", data / "raw")  # copy2: mtimes and stamps kept
    files = ds.required_files(SMOKE.data)
    assert verify(files, data_dir=data) == []
    _flip(data / "raw" / PINGSHUI, 1000, keep_mtime=True)
    assert verify(files, data_dir=data, rehash=False) == []  # the stamp alone cannot see it
    assert verify(files, data_dir=data) == [PINGSHUI]
    assert cli.main(["data", "verify", "--profile", "smoke", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    assert f"missing or corrupt: {PINGSHUI}" in out and f"{len(files) - 1} of {len(files)}" in out


# ---------------------------------------------------------------------------------------------------------
# item 4: the processed cache is checked by its manifest
# ---------------------------------------------------------------------------------------------------------


def _same_dataset(a: ds.PreparedData, b: ds.PreparedData) -> None:
    assert a.vocab.tokens == b.vocab.tokens and a.summary == b.summary
    for split in ds.SPLITS:
        x, y = a.arrays(split), b.arrays(split)
        for field in ("chars", "length", "labels", "keyword", "poem_index"):
            assert np.array_equal(getattr(x, field), getattr(y, field)), (split, field)


@pytest.mark.parametrize("damage", ["missing", "empty", "flipped", "no manifest"])
def test_item_4_damaged_processed_cache_is_rebuilt(smoke_data, tmp_path, damage):
    data = tmp_path / "data"
    shutil.copytree(_data_dir(smoke_data), data)
    root = data / "processed" / smoke_data.root.name
    target = root / ("manifest.json" if damage == "no manifest" else "unl_train.npz")
    if damage in ("missing", "no manifest"):
        target.unlink()
    elif damage == "empty":
        target.write_bytes(b"")
    else:
        _flip(target, target.stat().st_size // 2, keep_mtime=True)
    said: list[str] = []
    again = ds.prepare(SMOKE, data_dir=data, log=said.append)
    assert any(f"{root.name}/{target.name}" in m and "rebuilding" in m for m in said), said  # the file, named
    assert cache_problem(again.root, ds.DATASET_FILES) is None
    _same_dataset(again, smoke_data)
    assert not list((data / "processed").glob(".*.part"))


# ---------------------------------------------------------------------------------------------------------
# item 6: the config JSON beside published weights
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture()
def published_aus(smoke_data, tmp_path) -> Path:
    """A published AUS generator (random weights) in tmp_path/w."""
    out = tmp_path / "w"
    out.mkdir()
    smoke_data.vocab.save(out / "vocab.json")
    torch.manual_seed(0)
    model = build_model("aus", SMOKE.model, len(smoke_data.vocab))
    meta = {
        "type": "model",
        "name": "aus",
        "kind": "aus",
        "model_args": {"kind": "aus", "straight_through": False},
        "model_config": asdict(SMOKE.model),
        "vocab_size": len(smoke_data.vocab),
        "vocab_path": "vocab.json",
        "weights_key": "0" * 16,
    }
    save_published(out, "aus", model.state_dict(), meta, "int8")
    return out / "aus.safetensors"


def _edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text(encoding="utf-8"))
    change(meta)
    path.write_text(json.dumps(meta, indent=1), encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["model_config"].update(max_line_len=5), "not the JSON published with"),
        (lambda m: m["model_config"].update(key_len=3), "not the JSON published with"),
        (lambda m: m["model_config"].update(drop_ratio=0.5), "not the JSON published with"),
        (lambda m: m["model_args"].update(straight_through=True), "not the JSON published with"),
        (lambda m: m["model_config"].update(key_len="4"), "model_config.key_len must be of type int, got '4'"),
        (lambda m: m["model_config"].pop("key_len"), "lacks model_config.key_len"),
        (lambda m: m["model_config"].update(depth=2), "unknown key(s) depth"),
        (lambda m: m["model_config"].update(drop_ratio=1.5), "drop_ratio"),
        (lambda m: m.pop("digest"), "lacks digest"),
    ],
)
def test_item_6_edited_config_json_is_refused(published_aus, capsys, edit, message):
    assert load_model(published_aus, "cpu").kind == "aus"
    js = published_aus.with_suffix(".json")
    _edit_json(js, edit)
    with pytest.raises(ValueError, match=r"aus\.json") as info:
        load_model(published_aus, "cpu")
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1
    _one_line_error(capsys, ["generate", "--checkpoint", str(published_aus), "--keyword", "春"], "aus.json")


def test_item_6_malformed_json_swapped_vocabulary_and_damaged_weights(published_aus, smoke_data, capsys):
    js = published_aus.with_suffix(".json")
    good = js.read_text(encoding="utf-8")
    js.write_text(good.replace('"name": "aus",', '"name": "aus",,'), encoding="utf-8")
    line = next(i for i, text in enumerate(js.read_text().splitlines(), 1) if ",," in text)
    err = _one_line_error(capsys, ["generate", "--checkpoint", str(published_aus), "--keyword", "春"], "aus.json")
    assert f"line {line} column" in err
    js.write_text(good, encoding="utf-8")
    vocab = published_aus.parent / "vocab.json"
    obj = json.loads(vocab.read_text(encoding="utf-8"))
    obj["tokens"][-2:] = obj["tokens"][-1:-3:-1]  # two characters swapped: same size, other ids
    vocab.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    _one_line_error(capsys, ["generate", "--checkpoint", str(published_aus), "--keyword", "春"], "vocab.json")
    _flip(published_aus, published_aus.stat().st_size - 10)
    with pytest.raises(CorruptFileError, match=r"aus\.safetensors is corrupt"):
        read_published(published_aus)


def test_item_6_committed_weights_carry_valid_digests():
    for st in sorted((REPO / "weights" / "tutorial").glob("*.safetensors")):
        meta, state = read_published(st)
        assert meta["sha256"] and meta["digest"] and state, st.name


# ---------------------------------------------------------------------------------------------------------
# item 7: unfinished checkpoints
# ---------------------------------------------------------------------------------------------------------


def test_item_7_generate_refuses_an_unfinished_checkpoint(smoke_data, mirror_dir, tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model("basic", SMOKE.model, len(smoke_data.vocab))
    path = tmp_path / "basic_c1.pt"
    save_checkpoint(
        {
            "name": "basic",
            "phase": "c1",
            "complete": False,
            "step": 20,
            "total_steps": 40,
            "model_args": {"kind": "basic"},
            "model_config": asdict(SMOKE.model),
            "vocab_size": len(smoke_data.vocab),
            "vocab": list(smoke_data.vocab.tokens),
            "model": model.state_dict(),
        },
        path,
    )
    argv = ["generate", "--checkpoint", str(path), "--keyword", "春", "--length", "5", "--beam", "2"]
    argv += ["--crrd", str(mirror_dir / "thu-aipoet" / "CRRD"), "--no-novelty"]
    _one_line_error(capsys, argv, "basic_c1.pt", "step 20 of 40", "--allow-unfinished")
    code = cli.main([*argv, "--allow-unfinished"])
    out, err = capsys.readouterr()
    assert code in (0, 3) and " 1. [春]" in out  # random weights: the poem may or may not pass the rules
    assert "warning" in err and "step 20 of 40" in err


# ---------------------------------------------------------------------------------------------------------
# item 12: a read-only data folder
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture()
def read_only(monkeypatch):
    """Folders appended to the returned list refuse every write of the kit, as a read-only mount does (the tests
    may run as root, whom chmod does not stop, so the refusals are simulated with EROFS)."""
    roots: list[Path] = []

    def under(path: object) -> bool:
        return any(Path(str(path)).resolve().is_relative_to(r) for r in roots)

    def refuse(real):
        def wrapper(*args, **kwargs):
            if under(kwargs.get("dir") or os.getcwd()):
                raise OSError(errno.EROFS, "Read-only file system", str(kwargs.get("dir")))
            return real(*args, **kwargs)

        return wrapper

    real_access, real_rename = os.access, Path.rename

    def rename(self, target):
        if under(self):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_rename(self, target)

    monkeypatch.setattr(tempfile, "mkstemp", refuse(tempfile.mkstemp))
    monkeypatch.setattr(tempfile, "mkdtemp", refuse(tempfile.mkdtemp))
    monkeypatch.setattr(os, "access", lambda p, mode, **k: not (under(p) and mode & os.W_OK) and real_access(p, mode))
    monkeypatch.setattr(Path, "rename", rename)
    return roots


def test_item_12_read_only_data_folder_with_new_mtimes_verifies_and_prepares(smoke_data, tmp_path, read_only, capsys):
    data = tmp_path / "data"
    shutil.copytree(_data_dir(smoke_data), data, copy_function=shutil.copyfile)  # new mtimes: stamps do not match
    read_only.append(data.resolve())
    files = ds.required_files(SMOKE.data)
    assert verify(files, data_dir=data) == []
    assert fetch(files, data_dir=data, progress=False)  # every file hashed, no stamp written, no error
    again = ds.prepare(SMOKE, data_dir=data)
    assert again.root.name == smoke_data.root.name and len(again.vocab) == len(smoke_data.vocab)
    assert cli.main(["data", "verify", "--profile", "smoke", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    (again.root / "unl_train.npz").write_bytes(b"")  # damaged, and it cannot be rebuilt here
    argv = ["data", "prepare", "--profile", "smoke", "--data-dir", str(data), "-q"]
    _one_line_error(capsys, argv, "unl_train.npz", "cannot be rebuilt")


# ---------------------------------------------------------------------------------------------------------
# item 15: leftovers of killed writers, permissions
# ---------------------------------------------------------------------------------------------------------


def test_item_15_leftovers_are_removed_unless_a_live_writer_holds_them(smoke_data, mirror_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(_data_dir(smoke_data), data)
    raw_left = data / "raw" / "thu-aipoet" / "CRRD" / ".pingshui.txt.x1y2.part"
    raw_left.write_bytes(b"half a file")
    dir_left = data / "processed" / f".{smoke_data.root.name}.a1b2.part"
    dir_left.mkdir()
    (dir_left / "vocab.json").write_text("[]")
    busy = data / "raw" / ".busy.txt.c3d4.part"
    busy.write_bytes(b"being written")
    fd = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a live writer holds this one
        fetch(ds.required_files(SMOKE.data), data_dir=data, mirror=mirror_dir, progress=False)
        ds.prepare(SMOKE, data_dir=data)
        assert not raw_left.exists() and not dir_left.exists() and busy.exists()
    finally:
        os.close(fd)
    assert remove_stale_parts(data / "raw") == [busy]


def test_item_15_files_and_folders_get_the_umask_permissions(smoke_data, tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.bin", lambda p: p.write_bytes(b"x"))
        write_json_atomic(tmp_path / "b.json", {"x": 1})
        atomic_folder(tmp_path / "folder", lambda p: (p / "c.txt").write_text("x"))
        assert [(tmp_path / n).stat().st_mode & 0o777 for n in ("a.bin", "b.json", "folder")] == [0o644, 0o644, 0o755]
        os.umask(0o027)
        write_json_atomic(tmp_path / "d.json", {"x": 1})
        atomic_folder(tmp_path / "folder2", lambda p: None)
        assert (tmp_path / "d.json").stat().st_mode & 0o777 == 0o640
        assert (tmp_path / "folder2").stat().st_mode & 0o777 == 0o750
    finally:
        os.umask(old)
    for path in (smoke_data.root, smoke_data.corpus_root):  # the processed caches built this session
        assert path.stat().st_mode & 0o777 == default_mode(folder=True)
        assert (path / "manifest.json").stat().st_mode & 0o777 == default_mode()
    assert (_data_dir(smoke_data) / "raw" / PINGSHUI).stat().st_mode & 0o777 == default_mode()


def test_a_failed_write_keeps_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"v": 1})

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail)
    assert json.loads(target.read_text()) == {"v": 1} and not list(tmp_path.glob(".*.part"))
