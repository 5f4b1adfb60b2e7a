"""Profiles, label parsing, the `mixpoet data` command and the environment files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from mixpoet_lib.checkpoints import weights_key
from mixpoet_lib.cli import app as cli
from mixpoet_lib.cli.settings import default_run_dir, profile_from_args
from mixpoet_lib.config import (
    FACTOR_CLASSES,
    PROFILES,
    ModelConfig,
    PhaseConfig,
    TrainConfig,
    get_profile,
    label_name,
    parse_label,
    resolve_profile_name,
)
from mixpoet_lib.overrides import format_overrides, parse_overrides, run_name

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


def test_overrides_in_every_form_give_the_same_profile():
    forms = [
        get_profile("tutorial", "model.latent_size=64,train.ndis=5"),
        get_profile("tutorial", {"model.latent_size": 64, "train.ndis": 5}),
        get_profile("tutorial", model={"latent_size": 64}, train={"ndis": 5}),
        get_profile("tutorial", **{"model.latent_size": 64, "train.ndis": 5}),
    ]
    assert all(p == forms[0] for p in forms)
    p = forms[0]
    assert p.model.latent_size == 64 and p.train.ndis == 5 and p.model.hidden_size == 256 and p.name == "tutorial"
    nested = get_profile("smoke", "train.dae.batch_size=8,train.betas=[0.5,0.9],data.max_vocab=null,seed=7")
    assert nested.train.dae.batch_size == 8 and nested.train.dae.max_steps == 40 and nested.train.betas == (0.5, 0.9)
    assert nested.data.max_vocab is None and nested.seed == 7
    assert get_profile("smoke", "gen.z_outlier_ratio=2").gen.z_outlier_ratio == 2.0  # int accepted for a float
    assert get_profile("smoke", "") == get_profile("smoke")


def test_parse_overrides_reads_json_values_else_strings():
    assert parse_overrides('a.b=1, c=x y,d=[1, 2],e=null,f="s",g=true,h=0.5') == {
        "a.b": 1,
        "c": "x y",
        "d": [1, 2],
        "e": None,
        "f": "s",
        "g": True,
        "h": 0.5,
    }
    assert parse_overrides(["a=1", "b=2,a=3"]) == {"a": 3, "b": 2} and parse_overrides("") == {}
    assert parse_overrides(format_overrides({"train.betas": [0.5, 0.9], "x": "y"})) == {
        "train.betas": [0.5, 0.9],
        "x": "y",
    }
    with pytest.raises(ValueError, match="not of the form KEY=VALUE"):
        parse_overrides("model.latent_size")


@pytest.mark.parametrize(
    "text, message",
    [
        ("model.latnt=3", "unknown setting 'model.latnt'"),
        ("modle.latent_size=3", "unknown setting 'modle'"),
        ("train.ndis=x", "setting 'train.ndis' expects int, got 'x'"),
        ("gen.beam_size=2.5", "expects int"),
        ("model.latent_size.x=1", "has no sub-settings"),
        ("model.latent_size=63", "ModelConfig.latent_size must be a multiple of 2"),
        ("model.drop_ratio=1", "ModelConfig.drop_ratio must be in \\[0, 1\\)"),
        ("model.n_class1=4", "ModelConfig.n_class1 must be 3"),
        ("train.ndis=0", "TrainConfig.ndis must be > 0, got 0"),
        ("train.kl_anneal_kind=cosine", "TrainConfig.kl_anneal_kind must be one of"),
        ("train.dae.lr_min=1", "PhaseConfig.lr_min must be in"),
        ("train.classifier.epochs=0", "PhaseConfig.epochs must be > 0"),
        ('data.chinese_poetry_sets=["yuan"]', "DataConfig.chinese_poetry_sets must be a subset"),
        ("eval.seeds=[]", "EvalConfig.seeds must be at least one seed"),
    ],
)
def test_bad_settings_give_one_line_errors(text, message):
    with pytest.raises(ValueError, match=message) as err:
        get_profile("smoke", text)
    assert "\n" not in str(err.value)


def test_settings_checked_on_construction_and_class_counts_derived():
    with pytest.raises(ValueError, match="latent_size"):
        ModelConfig(latent_size=33)
    with pytest.raises(ValueError, match="batch_size"):
        PhaseConfig(batch_size=0, epochs=1)
    with pytest.raises(ValueError, match="ndis"):
        TrainConfig(ndis=0)
    cfg = ModelConfig()
    assert cfg.n_classes == tuple(len(c) for c in FACTOR_CLASSES.values()) == (cfg.n_class1, cfg.n_class2)


def test_published_weights_key_unchanged():
    for meta in (REPO / "weights" / "tutorial").glob("*.json"):
        stored = json.loads(meta.read_text(encoding="utf-8")).get("weights_key")
        if stored:
            assert stored == weights_key(get_profile("tutorial")), meta.name
    assert weights_key(get_profile("tutorial", "model.latent_size=64")) != weights_key(get_profile("tutorial"))


def test_cli_set_option_collects_overrides(capsys):
    args = cli.build_parser().parse_args(
        ["train", "--profile", "smoke", "--set", "model.latent_size=16,train.ndis=2", "--set", "train.ndis=4"]
    )
    profile = profile_from_args(args)
    assert profile.name == "smoke" and profile.model.latent_size == 16 and profile.train.ndis == 4
    # a run with changed settings gets its own folder, never the profile's own checkpoints
    assert run_name("smoke") == run_name("smoke", "") == "smoke"
    assert run_name("smoke", "train.ndis=4,model.latent_size=16") == run_name(
        "smoke", {"model.latent_size": 16, "train.ndis": 4}
    )
    assert run_name("smoke", "model.latent_size=16,train.ndis=4") != "smoke"
    args.run_dir = "elsewhere"
    assert default_run_dir(args, profile) == Path("elsewhere")
    for argv, message in (
        (["data", "verify", "--profile", "smoke", "--set", "data.max_vocb=3"], "data.max_vocb"),
        (["train", "--profile", "smoke", "--models", "basic", "--set", "model.latent_size=3"], "latent_size"),
        (
            ["generate", "--checkpoint", "x.pt", "--keyword", "月", "--set", "model.latent_size=4"],
            "only gen.* settings",
        ),
        (
            ["generate", "--checkpoint", "x.pt", "--keyword", "月", "--set", "gen.beam_size=0"],
            "GenConfig.beam_size must be in 1..200, got 0",
        ),
    ):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mixpoet: error:") and message in err[0], err


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
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mixpoet_lib.cli",
            "data",
            "fetch",
            "--profile",
            "smoke",
            "-q",
            "--mirror",
            str(mirror),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
    )
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
    out = capsys.readouterr().out
    assert "profile smoke | seed 7" in out
    # the prose was written for the published tutorial run: any other profile or setting says so under the line
    assert (
        "note: the readings between the cells describe the published tutorial run; this run uses profile smoke" in out
    )
    setup("tutorial", 7, prepare_data=False)
    assert "note:" not in capsys.readouterr().out
    setup("tutorial", 7, "seed=1235", prepare_data=False)
    assert "this run uses profile tutorial with seed=1235" in capsys.readouterr().out
