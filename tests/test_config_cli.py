"""Profiles, label parsing, the `mixpoet data` command and the environment files."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from mixpoet_lib.cli import app as cli
from mixpoet_lib.config import PROFILES, get_profile, label_name, parse_label, resolve_profile_name

REPO = Path(__file__).resolve().parents[1]


def test_profiles(monkeypatch):
    monkeypatch.delenv("MIXPOET_PROFILE", raising=False)
    assert resolve_profile_name() == "tutorial"
    monkeypatch.setenv("MIXPOET_PROFILE", "smoke")
    assert get_profile().name == "smoke"
    assert get_profile("full").model.hidden_size == 512 and get_profile("full").train.dae.warmup_steps == 4500
    assert get_profile("full").data.unlabelled_train_instances == 150_000
    sizes = [get_profile(p).model.hidden_size for p in PROFILES]
    assert sizes == sorted(sizes) and get_profile("smoke").digest() == get_profile("smoke").digest()
    assert get_profile("smoke").digest() != get_profile("tutorial").digest()
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")


def test_labels():
    assert parse_label("living", "military") == 0 and parse_label("era", "troubled") == 1
    assert parse_label("living", "2") == 2 and parse_label("era", -1) == -1
    assert label_name("living", 1) == "countryside" and label_name("era", 0, zh=True) == "盛世"
    with pytest.raises(ValueError, match="unknown era value 'medieval'"):
        parse_label("era", "medieval")
    with pytest.raises(ValueError, match="unknown living value 3;"):
        parse_label("living", 3)
    with pytest.raises(ValueError, match="out of range"):
        label_name("era", 2)


def test_cli_prepare_twice_and_corrupt_mirror(tmp_path, mirror_dir, capsys):
    args = ["data", "prepare", "--profile", "smoke", "--mirror", str(mirror_dir), "--data-dir", str(tmp_path / "d")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "building corpus" in out and "Poems per source and split" in out and "Vocabulary size: 3004" in out
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "corpus cache hit" in out and "dataset cache hit" in out and "building" not in out
    assert cli.main(["data", "verify", "--profile", "smoke", "--data-dir", str(tmp_path / "d")]) == 0


def test_cli_one_line_error_on_corrupt_mirror(tmp_path, mirror_dir):
    import shutil

    mirror = tmp_path / "m"
    shutil.copytree(mirror_dir / "thu-aipoet" / "CRRD", mirror / "thu-aipoet" / "CRRD")
    for part in ("mixpoet", "chinese-poetry", "thu-aipoet/CCPC"):  # the rest of the mirror, unchanged
        (mirror / part).parent.mkdir(parents=True, exist_ok=True)
        (mirror / part).symlink_to(mirror_dir / part)
    (mirror / "thu-aipoet" / "CRRD" / "pingshui.txt").chmod(0o644)
    with open(mirror / "thu-aipoet" / "CRRD" / "pingshui.txt", "ab") as fh:
        fh.write(b"x")
    proc = subprocess.run([sys.executable, "-m", "mixpoet_lib.cli", "data", "fetch", "--profile", "smoke", "-q",
                           "--mirror", str(mirror), "--data-dir", str(tmp_path / "d")], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mixpoet: error:") and "pingshui.txt" in lines[0]
    assert not (tmp_path / "d" / "raw" / "thu-aipoet" / "CRRD" / "pingshui.txt").exists()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    low = re.search(r">=(\d+\.\d+)", project["requires-python"]).group(1)
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, low.split(".")))
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    editable = next(p for p in pip if p.startswith("-e ."))
    extras = set(re.search(r"\[(.*)\]", editable).group(1).split(","))
    assert extras == set(project["optional-dependencies"])  # every extra of pyproject, nothing else
    assert "torch==2.13.0" in pip and any(d.startswith("torch") for d in project["dependencies"])
    # the conda recipe declares no packages of its own beyond python/pip: pyproject is the single list
    assert {d.split("=")[0] for d in deps if isinstance(d, str)} == {"python", "pip"}


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make reproduce" in readme
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == ["make test"]


def test_notebook_setup_without_data(capsys):
    import torch

    from mixpoet_lib.notebook import setup

    profile, data = setup("smoke", 7, prepare_data=False)
    first = torch.rand(1)
    setup("smoke", 7, prepare_data=False)
    assert profile.name == "smoke" and data is None and torch.equal(first, torch.rand(1))
    assert "profile smoke | seed 7" in capsys.readouterr().out
