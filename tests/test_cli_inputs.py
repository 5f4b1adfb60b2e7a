"""Hostile and careless input to the command line (issue 13, items 5, 9–11, 13, 14): refusals and one-line errors
instead of truncated files, runaway searches and tracebacks; bad lines skipped, good lines kept."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixpoet_lib import runtime
from mixpoet_lib.checkpoints import load_generator
from mixpoet_lib.cli import app as cli
from mixpoet_lib.cli import classify as cmd_classify
from mixpoet_lib.config import MAX_BEAM, GenConfig
from mixpoet_lib.data.rhythm import ToneRhyme
from mixpoet_lib.generate.generator import MAX_BEAM_ROWS, Generator

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights" / "tutorial"
QUATRAIN = "床前明月光|疑是地上霜|举头望明月|低头思故乡"
OTHER = "白日依山尽|黄河入海流|欲穷千里目|更上一层楼"


def _jsonl(*contents: str) -> bytes:
    return b"".join(json.dumps({"content": c}, ensure_ascii=False).encode("utf-8") + b"\n" for c in contents)


def _classify(capsys, *argv: str) -> tuple[int, list[str]]:
    code = cli.main(["classify", "--checkpoint", str(WEIGHTS), *argv])
    return code, capsys.readouterr().err.strip().splitlines()


# ----------------------------------------------------------------------------- item 5: output = input


def test_classify_refuses_to_write_over_its_input(tmp_path, capsys, monkeypatch):
    src = tmp_path / "poems.jsonl"
    src.write_bytes(_jsonl(QUATRAIN, OTHER))
    before = src.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(src)
    monkeypatch.chdir(tmp_path)
    for out in (str(src), str(link), "./poems.jsonl", "../" + tmp_path.name + "/poems.jsonl"):
        code, err = _classify(capsys, "--input", str(src), "--output", out)
        assert code == 1 and len(err) == 1 and "is the input file" in err[0], (out, err)
    assert src.read_bytes() == before  # untouched: not truncated, not rewritten


def test_classify_output_appears_only_when_complete(tmp_path, capsys, monkeypatch):
    src, out = tmp_path / "poems.jsonl", tmp_path / "tagged.jsonl"
    src.write_bytes(_jsonl(QUATRAIN, OTHER))
    out.write_text("previous results\n", encoding="utf-8")

    def boom(*args, **kwargs):
        raise RuntimeError("judge crashed half-way")

    monkeypatch.setattr(cmd_classify, "classify", boom)
    code, err = _classify(capsys, "--input", str(src), "--output", str(out))
    assert code == 1 and len(err) == 1 and "judge crashed half-way" in err[0]
    assert out.read_text(encoding="utf-8") == "previous results\n"  # the old file stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["poems.jsonl", "tagged.jsonl"]  # no temporary left
    monkeypatch.undo()
    assert _classify(capsys, "--input", str(src), "--output", str(out))[0] == 0
    assert [json.loads(line)["line"] for line in out.read_text(encoding="utf-8").splitlines()] == [1, 2]


# ----------------------------------------------------------------------------- item 11: decoding, BOM, stdin


def test_classify_skips_a_non_utf8_line_and_keeps_the_others(tmp_path, capsys):
    lines = _jsonl(QUATRAIN, OTHER, QUATRAIN).splitlines(keepends=True)
    bad = b'{"content": "\xff\xfe broken"}\n'
    src, out = tmp_path / "poems.jsonl", tmp_path / "tagged.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + lines[0] + lines[1] + lines[2] + bad)  # a BOM, as Notepad writes
    offset = len(b"\xef\xbb\xbf" + lines[0] + lines[1] + lines[2]) + len(b'{"content": "')
    code, err = _classify(capsys, "--input", str(src), "--output", str(out))
    assert code == 2
    assert err[0] == f"mixpoet classify: {src}: line 4: not UTF-8 (byte 0xff at byte offset {offset} of the file)"
    assert err[-1] == "3 poem(s) tagged, 1 malformed line(s) skipped"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]  # line 1 despite its BOM


def test_classify_reads_stdin_and_writes_stdout(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(_jsonl(QUATRAIN, OTHER))))
    assert cli.main(["classify", "--checkpoint", str(WEIGHTS), "--input", "-", "--output", "-"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["content"] for r in rows] == [QUATRAIN, OTHER] and "2 poem(s) tagged" in captured.err


def test_classify_skips_oversized_lines_without_reading_them_whole(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cmd_classify, "MAX_LINE_BYTES", 256)
    src = tmp_path / "poems.jsonl"
    src.write_bytes(_jsonl(QUATRAIN) + b'{"content": "' + b"x" * 2000 + b'"}\n' + _jsonl(OTHER))
    code, err = _classify(capsys, "--input", str(src))
    assert code == 2 and err[0].endswith("line 2: longer than 256 bytes; skipped")
    assert err[-1] == "2 poem(s) tagged, 1 malformed line(s) skipped"


# ----------------------------------------------------------------------------- item 10: length cap, warnings


def test_classify_caps_line_length_and_flags_odd_poems(tmp_path, capsys):
    src, out = tmp_path / "poems.jsonl", tmp_path / "tagged.jsonl"
    long_poem = "|".join(["风" * 5000] * 4)
    odd = ["床前明月光|疑是地上霜|举头望明月", "床前明月光|疑是地上霜|举头望明月思|低头思故乡", "ÆØÅ|ÆØÅ|ÆØÅ|ÆØÅ"]
    src.write_bytes(_jsonl(long_poem, QUATRAIN, *odd))
    code, err = _classify(capsys, "--input", str(src), "--output", str(out))
    assert code == 2 and len(err) == 2
    assert "line 1: poem line 1 has 5000 characters; the models read lines of at most 7" in err[0]
    rows = {r["line"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert sorted(rows) == [2, 3, 4, 5] and "warning" not in rows[2]
    assert rows[3]["warning"] == "3 lines (the judges were trained on 4-line quatrains)"
    assert rows[4]["warning"] == "lines of mixed lengths 5/5/6/5"
    assert "no character is in the judges' vocabulary" in rows[5]["warning"]
    assert "3-character lines" in rows[5]["warning"]


def test_flush_denormal_is_scoped():
    tiny = torch.tensor([1e-40])  # a denormal float32
    with runtime.flush_denormal() as supported:
        inside = float(tiny * 1.0)
    assert float(tiny * 1.0) > 0  # switched off again after the block
    if supported:
        assert inside == 0.0


# ----------------------------------------------------------------------------- item 9: bounded searches


def test_beam_and_counts_are_bounded_before_anything_loads(capsys):
    base = ["generate", "--checkpoint", "does-not-exist.safetensors", "--keyword", "月"]
    for extra, message in (
        (["--beam", "100000"], f"--beam must be in 1..{MAX_BEAM}, got 100000"),
        (["--set", "gen.beam_size=100000"], f"GenConfig.beam_size must be in 1..{MAX_BEAM}, got 100000"),
        (["--set", "gen.extra_steps=100000"], "GenConfig.extra_steps must be in 0..50"),
        (["-n", "5000"], "-n must be in 1..1000, got 5000"),
        (["--keyword", "风"] * 19 + ["-n", "1000"], "20 keywords × -n 1000 = 20000 poems; at most 10000"),
    ):
        assert cli.main(base + extra) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)
    with pytest.raises(ValueError, match=r"beam_size must be in 1\.\.200"):
        GenConfig(beam_size=MAX_BEAM + 1)
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    assert f"beam size, 1..{MAX_BEAM}" in " ".join(capsys.readouterr().out.split())  # the cap is explained


def test_wide_beams_decode_fewer_poems_at_once():
    model, vocab, _ = load_generator(WEIGHTS / "basic.safetensors")
    tr = ToneRhyme.from_strings("", "")
    assert (
        Generator(model, vocab, tr, None, GenConfig(beam_size=20, repetition_rule="intended")).max_batch_poems == 128
    )  # unchanged default
    wide = Generator(model, vocab, tr, None, GenConfig(beam_size=MAX_BEAM, repetition_rule="intended"))
    assert wide.max_batch_poems * MAX_BEAM <= MAX_BEAM_ROWS and wide.max_batch_poems == 12


# ----------------------------------------------------------------------------- item 13: one-line errors


def test_device_errors_are_one_line(capsys, monkeypatch, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(_jsonl(QUATRAIN))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command in (
        ["generate", "--checkpoint", str(WEIGHTS / "aus.safetensors"), "--keyword", "月"],
        ["classify", "--checkpoint", str(WEIGHTS), "--input", str(src)],
    ):
        for device, message in (("bogus", "unknown device 'bogus'"), ("cuda", "no CUDA device is available")):
            assert cli.main([*command, "--device", device]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and message in err[0], err
    assert runtime.resolve_device("cpu") == torch.device("cpu")


def test_unexpected_errors_and_broken_config_json_are_one_line(capsys, monkeypatch, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in ("aus.safetensors", "vocab.json"):
        (folder / name).symlink_to(WEIGHTS / name)
    meta = json.loads((WEIGHTS / "aus.json").read_text(encoding="utf-8"))
    argv = ["generate", "--checkpoint", str(folder / "aus.safetensors"), "--keyword", "月", "--crrd", str(folder)]
    monkeypatch.setattr("mixpoet_lib.cli.generate.load_tone_rhyme", lambda path: None)
    monkeypatch.setattr("mixpoet_lib.cli.generate.find_crrd_dir", lambda path: path)
    for text in ("{not json", json.dumps({**meta, "model_config": 5}), json.dumps({k: meta[k] for k in ("type",)})):
        (folder / "aus.json").write_text(text, encoding="utf-8")
        assert cli.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mixpoet: error:"), err

    def crash(*args, **kwargs):
        raise KeyError("model_config")  # an unexpected failure inside the loader

    monkeypatch.setattr("mixpoet_lib.cli.generate.load_generator", crash)
    assert cli.main(argv) == 1 and len(capsys.readouterr().err.strip().splitlines()) == 1
    monkeypatch.setenv(cli.ENV_TRACEBACK, "1")  # the traceback is there when asked for
    with pytest.raises(KeyError):
        cli.main(argv)


def test_closed_output_pipe_ends_quietly():
    script = (
        "import sys\n"
        "from mixpoet_lib.cli import app, data\n"
        "def flood(args):\n"
        "    for i in range(200000):\n"
        "        print('line', i)\n"
        "    return 0\n"
        "data._cmd_verify = flood\n"
        "sys.exit(app.main(['data', 'verify']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -c "$0" | head -n 1; echo "rc=${{PIPESTATUS[0]}}" >&2', script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.stdout == "line 0\n"
    assert proc.stderr.strip() == "rc=141"  # no traceback, no "Exception ignored", the status of SIGPIPE


# ----------------------------------------------------------------------------- item 14: a fresh clone


def test_generate_without_data_says_how_to_get_it_and_uses_data_dir(capsys, monkeypatch, tmp_path, mirror_dir):
    monkeypatch.delenv("MIXPOET_MIRROR", raising=False)
    monkeypatch.setenv("MIXPOET_DATA_DIR", str(tmp_path / "empty"))
    argv = ["generate", "--checkpoint", str(WEIGHTS / "aus.safetensors"), "--keyword", "月", "--beam", "4"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run `mixpoet data fetch`" in err[0] and "MIXPOET_MIRROR" in err[0]
    data = tmp_path / "data"
    (data / "raw" / "thu-aipoet").mkdir(parents=True)
    (data / "raw" / "thu-aipoet" / "CRRD").symlink_to(mirror_dir / "thu-aipoet" / "CRRD")
    assert cli.main([*argv, "--data-dir", str(data)]) in (0, 3)  # 3: a poem failed its constraints
    out = capsys.readouterr().out
    assert out.startswith("# model aus") and " 1. [月" in out
