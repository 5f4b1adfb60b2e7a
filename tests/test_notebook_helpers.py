"""mixpoet_lib.notebook: the code shown under equations, published weights or training, posterior codes, diagram."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from mixpoet_lib import notebook
from mixpoet_lib.checkpoints import build_model
from mixpoet_lib.config import get_profile
from mixpoet_lib.paths import repo_root
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
