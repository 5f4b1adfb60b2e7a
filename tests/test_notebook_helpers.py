"""mixpoet_lib.notebook: the code shown under equations, published weights or training, posterior codes, diagram."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from mixpoet_lib import notebook
from mixpoet_lib.checkpoints import build_model
from mixpoet_lib.config import get_profile
from mixpoet_lib.paths import ENV_FIGURES, repo_root
from mixpoet_lib.train import steps
from mixpoet_lib.train.logs import log_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shown(x: int) -> int:
    """A function whose source the test knows."""
    return x + 1


def test_source_markdown_is_the_real_source_in_one_python_block():
    text = notebook.source_markdown(_shown, steps.gumbel_temperature)
    assert text.startswith("```python\ndef _shown(x: int) -> int:") and text.endswith("\n```")
    assert "return x + 1" in text and "def gumbel_temperature(" in text
    with pytest.raises(ValueError, match="at least one"):
        notebook.source_markdown()


def test_say_cuts_the_repository_path(capsys):
    notebook.say(f"judge living: using the published weights {repo_root().resolve()}/weights/tutorial/a.safetensors")
    assert capsys.readouterr().out == "judge living: using the published weights weights/tutorial/a.safetensors\n"


@pytest.fixture()
def fake_training(monkeypatch):
    """Record what load_or_train does instead of loading or training anything."""
    calls = []
    monkeypatch.setattr(notebook, "load_model", lambda path: calls.append(("load", path)) or "published model")
    monkeypatch.setattr(notebook, "ensure_model", lambda name, *a, **k: calls.append(("ensure", name, k)) or "trained")
    return calls


def test_load_or_train_prefers_published_weights_and_says_so(monkeypatch, tmp_path, fake_training, capsys):
    published = repo_root() / "weights" / "smoke" / "aus.safetensors"
    monkeypatch.setattr(notebook, "find_published", lambda profile, name, key=None: published)
    prof = get_profile("smoke")
    assert notebook.load_or_train("aus", prof, None, tmp_path) == "published model"
    out = capsys.readouterr().out
    assert "aus: found published weights weights/smoke/aus.safetensors, loading; set TRAIN=True" in out
    assert notebook.load_or_train("aus", prof, None, tmp_path, train=True) == "trained"
    assert fake_training[-1][:2] == ("ensure", "aus") and fake_training[-1][2]["published"] is False
    assert "training into" in capsys.readouterr().out


def test_load_or_train_trains_without_published_weights(monkeypatch, tmp_path, fake_training, capsys):
    monkeypatch.setattr(notebook, "find_published", lambda profile, name, key=None: None)
    assert notebook.load_or_train("cvae", get_profile("smoke"), None, tmp_path) == "trained"
    assert "cvae: no published weights for these settings; training into" in capsys.readouterr().out
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "cvae_c1.pt").write_bytes(b"")
    notebook.load_or_train("cvae", get_profile("smoke"), None, tmp_path)
    assert "cvae: found the checkpoint" in capsys.readouterr().out


def test_pretraining_stage_shows_the_published_runs_log(monkeypatch, tmp_path, fake_training, capsys):
    prof = get_profile("smoke")
    monkeypatch.setattr(notebook, "published_generators", lambda profile: True)
    monkeypatch.setattr(notebook, "run_path", lambda name: tmp_path / "no-reference" / name)
    for phase in ("cl1", "cl2"):
        path = log_path(tmp_path, "shared", phase)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("step,loss\n1,1.0\n")
    assert notebook.pretrained_or_logged("classifiers", prof, None, tmp_path) is None
    assert "classifiers: not published, but the published run's log is" in capsys.readouterr().out
    assert fake_training == []
    assert notebook.pretrained_or_logged("classifiers", prof, None, tmp_path, train=True) == "trained"
    assert notebook.pretrained_or_logged("dae", prof, None, tmp_path) == "trained"  # no DAE log: it trains
    monkeypatch.setattr(notebook, "published_generators", lambda profile: False)
    assert notebook.pretrained_or_logged("classifiers", prof, None, tmp_path) == "trained"


def test_notebooks_write_beside_the_reference_run_never_into_it(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_FIGURES, "")  # recorded, so that what notebook_run_dir sets is undone after the test
    monkeypatch.delenv(ENV_FIGURES)
    assert notebook.notebook_run_dir("tutorial", "../runs/x") == "../runs/x"  # papermill's folder wins
    assert ENV_FIGURES not in os.environ
    folder = notebook.notebook_run_dir("tutorial-1a2b3c4d")
    assert folder == str(repo_root() / "runs" / "tutorial-1a2b3c4d-local")
    assert os.environ[ENV_FIGURES] == str(Path(folder) / "figures")  # figures/ of the repository left alone
    monkeypatch.setenv(ENV_FIGURES, "/somewhere/else")
    notebook.notebook_run_dir("tutorial")
    assert os.environ[ENV_FIGURES] == "/somewhere/else"


def test_run_log_falls_back_to_the_reference_run_only_for_published_weights(monkeypatch, tmp_path):
    reference, local = tmp_path / "runs" / "smoke", tmp_path / "runs" / "smoke-local"
    monkeypatch.setattr(notebook, "run_path", lambda name: tmp_path / "runs" / name)
    monkeypatch.setattr(notebook, "published_generators", lambda profile: True)
    prof = get_profile("smoke")
    for folder in (reference, local):
        log_path(folder, "aus", "c1").parent.mkdir(parents=True)
    log_path(reference, "aus", "c1").write_text("step,loss\n1,2.5\n")
    log_path(reference, "aus", "c1", valid=True).write_text("step,val_ppl\n1,300.0\n")
    assert notebook.run_log("aus", "c1", prof, local)["loss"].tolist() == [2.5]  # the published run's log
    assert notebook.run_log("aus", "c1", prof, local, valid=True)["val_ppl"].tolist() == [300.0]
    log_path(local, "aus", "c1").write_text("step,loss\n1,1.5\n2,1.25\n")
    assert notebook.run_log("aus", "c1", prof, local)["loss"].tolist() == [1.5, 1.25]  # this run trained it
    monkeypatch.setattr(notebook, "published_generators", lambda profile: False)
    with pytest.raises(FileNotFoundError, match=r"smoke-local/logs/aus_c1_valid\.csv"):
        notebook.run_log("aus", "c1", prof, local, valid=True)  # other settings: never the reference's log


def test_posterior_codes_of_labelled_poems(smoke_data):
    prof = get_profile("smoke")
    torch.manual_seed(0)
    model = build_model("aus", prof.model, len(smoke_data.vocab)).train()
    z, true, guess = notebook.posterior_codes(model, smoke_data, "cqcf_valid", seed=3, batch_size=64)
    poems = smoke_data.poems("cqcf_valid")
    assert z.shape == (len(poems), prof.model.latent_size) and np.isfinite(z).all()
    assert true.tolist() == [list(p.labels) for p in poems]  # one code per poem, in poem order
    assert set(guess[:, 0]) <= {0, 1, 2} and set(guess[:, 1]) <= {0, 1}
    assert model.training  # the model's mode is restored
    again, _, _ = notebook.posterior_codes(model, smoke_data, "cqcf_valid", seed=3, batch_size=200)
    assert np.allclose(z, again, atol=1e-5)  # same seed, same codes, whatever the batch size


def test_model_diagram_draws_every_box_and_arrow():
    fig = notebook.model_diagram()
    ax = fig.axes[0]
    assert len(ax.patches) == len(notebook._BOXES)
    assert len([t for t in ax.texts if t.get_text()]) >= len(notebook._BOXES)
    fig.canvas.draw()
    plt.close(fig)
