"""Published weights: int8/fp16 packing, export of a finished run, loading by every entry point."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from mixpoet_lib import checkpoints as publish
from mixpoet_lib import published
from mixpoet_lib.cli import app as cli
from mixpoet_lib.config import get_profile
from mixpoet_lib.generate.generator import Generator
from mixpoet_lib.models.generators import FBasicGenerator
from mixpoet_lib.train import charlm as L
from mixpoet_lib.train import judges as J
from mixpoet_lib.train.loop import ensure_model, train

SMOKE = get_profile("smoke")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pack_unpack_int8_fp16_and_exact_parts():
    torch.manual_seed(0)
    state = {
        "big": torch.randn(64, 128),
        "small": torch.randn(3, 4),
        "bias": torch.randn(128),
        "count": torch.tensor(7, dtype=torch.long),
        "zero": torch.zeros(64, 64),
    }
    packed = published.pack_state(state, "int8")
    assert packed["big"].dtype == torch.int8 and packed["big" + published.SCALE_SUFFIX].shape == (64, 1)
    back = published.unpack_state(packed)
    scale = state["big"].abs().amax(1, keepdim=True) / 127
    assert ((back["big"] - state["big"]).abs() <= scale / 2 + 1e-7).all()  # round-to-nearest error bound
    for k in ("small", "bias", "count", "zero"):
        assert torch.equal(back[k], state[k]), k
    half = published.unpack_state(published.pack_state(state, "fp16"))
    torch.testing.assert_close(half["big"], state["big"], rtol=1e-3, atol=1e-3)
    assert torch.equal(published.unpack_state(published.pack_state(state, "fp32"))["big"], state["big"])
    with pytest.raises(ValueError, match="bogus"):
        published.pack_state(state, "bogus")


@pytest.fixture(scope="module")
def trained(smoke_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("pub_run")
    train(["basic", "aus"], SMOKE, data=smoke_data, run_dir=run, progress=False)
    J.ensure_judges(smoke_data, SMOKE, run)
    L.ensure_lm(smoke_data, SMOKE, run)
    return run


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_export_and_load_every_way(trained, smoke_data, tmp_path, mode, capsys):
    out = tmp_path / "weights"
    files = publish.export_run(trained, SMOKE, smoke_data.vocab, out, models=("basic", "aus"), mode=mode)
    names = {p.name for p in files}
    assert {"vocab.json", "aus.safetensors", "aus.json", "judge_living.safetensors", "char_lm.safetensors"} <= names
    meta = json.loads((out / "aus.json").read_text())
    assert meta["weights_key"] == publish.weights_key(SMOKE) and meta["storage"] == mode
    # generator: same logits as the training checkpoint (exactly in fp32, closely in int8)
    orig = ensure_model("aus", SMOKE, run_dir=trained, progress=False)
    model, vocab, _ = publish.load_generator(out / "aus.safetensors")
    assert vocab.tokens == smoke_data.vocab.tokens
    keys = torch.tensor([[vocab.id("春"), 0]])
    with torch.no_grad():
        a, b = orig.encode_keyword(keys), model.encode_keyword(keys)
    if mode == "fp32":
        assert torch.equal(a, b)
    else:
        assert (a - b).abs().max() < 0.05
    poems = Generator(model, vocab, gen_cfg=SMOKE.gen, repetition_rule="intended").generate(["春"], 5, seed=1)
    assert poems[0].ok
    # the command line takes the published file directly
    assert (
        cli.main(["generate", "--checkpoint", str(out / "basic.safetensors"), "--keyword", "春", "--length", "5"]) == 0
    )
    printed = capsys.readouterr().out
    assert " 1. [春] " in printed and printed.split("[春] ")[1].split()[0].count("|") == 3
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"content": "春风吹又生|明月照高楼|白日依山尽|黄河入海流"}, ensure_ascii=False) + "\n")
    assert cli.main(["classify", "--checkpoint", str(out), "--input", str(src)]) == 0
    tag = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert "living" in json.dumps(tag) and "era" in json.dumps(tag)
    # judges and LM through the ensure_* fallbacks
    judge = publish.load_judge(out / "judge_era.safetensors")
    assert judge.report["test"]["n"] > 0
    assert json.loads((out / "judge_era.json").read_text())["storage"] == "fp32"  # n-gram judges: never int8
    trained_judge = J.ensure_judges(smoke_data, SMOKE, trained, factors=("era",))["era"]
    sa, sb = judge.state_dict(), trained_judge.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)
    lm = publish.load_lm(out / "char_lm.safetensors")
    assert L.lm_score(lm, ["春风吹又生|明月照高楼|白日依山尽|黄河入海流"]).lms[0] < 0


def test_ensure_model_uses_published_only_when_asked_and_matching(trained, smoke_data, tmp_path, monkeypatch):
    out = tmp_path / "weights" / "smoke"
    publish.export_run(trained, SMOKE, smoke_data.vocab, out, models=("aus",), judges=False, lm=False)
    monkeypatch.setattr(publish, "weights_dir", lambda profile: tmp_path / "weights" / profile)
    empty = tmp_path / "empty_run"
    m = ensure_model("aus", SMOKE, run_dir=empty, published=True)
    assert m.training_info["phase"] == "published" and not (empty / "checkpoints" / "aus_c2.pt").exists()
    other = get_profile("smoke", seed=99)  # other settings: the published weights do not apply
    assert publish.find_published(other, "aus") is None
    assert publish.find_published(SMOKE, "aus") == out / "aus.safetensors"


def test_fbasic_exports_its_fine_tuned_phase(smoke_data, tmp_path, monkeypatch):
    """fBasic's finished network is its C2 checkpoint; published, it loads and generates a requested mixture."""
    t = SMOKE.train
    tiny = replace(
        SMOKE,
        train=replace(
            t,
            dae=replace(t.dae, max_steps=2),
            mixture=replace(t.mixture, max_steps=2),
            finetune=replace(t.finetune, max_steps=2),
        ),
    )
    train(["fbasic"], tiny, data=smoke_data, run_dir=tmp_path / "run", progress=False)
    out = tmp_path / "weights" / "smoke"
    publish.export_run(tmp_path / "run", tiny, smoke_data.vocab, out, models=("fbasic",), judges=False, lm=False)
    meta = json.loads((out / "fbasic.json").read_text())
    assert (
        meta["source"] == "fbasic_c2" and meta["kind"] == "fbasic" and meta["weights_key"] == publish.weights_key(tiny)
    )
    monkeypatch.setattr(publish, "weights_dir", lambda profile: tmp_path / "weights" / profile)
    model = ensure_model("fbasic", tiny, run_dir=tmp_path / "empty", published=True)
    assert isinstance(model, FBasicGenerator) and model.training_info["phase"] == "published"
    poems = Generator(model, smoke_data.vocab, gen_cfg=SMOKE.gen, repetition_rule="intended").generate(
        ["春"], 5, labels=("military", "troubled"), seed=1
    )
    assert poems[0].labels == (0, 1)


def test_corrupt_or_incomplete_published_files(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "x.json").write_text(json.dumps({"type": "model"}))
    with pytest.raises(ValueError, match=r"x\.safetensors"):
        published.read_published(tmp_path / "x.safetensors")
    (tmp_path / "y.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"y\.json"):
        published.read_published(tmp_path / "y.safetensors")
    assert cli.main(["generate", "--checkpoint", str(tmp_path / "x.safetensors"), "--keyword", "春"]) == 1


def test_export_refuses_unfinished_checkpoint(smoke_data, tmp_path):
    run = tmp_path / "run"
    train(["basic"], SMOKE, data=smoke_data, run_dir=run, progress=False, max_steps=3)
    with pytest.raises(ValueError, match="not a finished checkpoint"):
        publish.export_run(run, SMOKE, smoke_data.vocab, tmp_path / "w", models=("basic",), judges=False, lm=False)


def test_weights_key_matches_the_committed_weights():
    """The settings hash of the tutorial profile is the one the published files were made with."""
    meta = json.loads((publish.weights_dir("tutorial") / "aus.json").read_text(encoding="utf-8"))
    assert publish.weights_key(get_profile("tutorial")) == meta["weights_key"]
