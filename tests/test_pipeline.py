"""The papermill runner: parameter injection, output folder, resume/skip, failure report."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from mixpoet_lib import pipeline, run_report
from mixpoet_lib.config import get_profile
from mixpoet_lib.evaluate import report
from mixpoet_lib.paths import repo_root

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def env(monkeypatch, tmp_path, mirror_dir):
    monkeypatch.setenv("MIXPOET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MIXPOET_MIRROR", str(mirror_dir))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path


def test_runner_executes_injects_and_skips(env):
    out = env / "run"
    books = [REPO / "notebooks" / "01_data_preparation.ipynb"]
    runs = pipeline.run_pipeline("smoke", out_dir=out, notebooks=books, log=lambda m: None, progress=False)
    assert [r.status for r in runs] == ["ran"]
    executed = nbformat.read(out / books[0].name, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    relative = os.path.relpath(out, REPO / "notebooks")  # papermill runs in the notebooks' folder
    assert len(injected) == 1 and 'PROFILE = "smoke"' in injected[0].source
    assert f'RUN_DIR = "{relative}"' in injected[0].source  # relative: no machine path is stored
    assert json.loads((out / "data_summary.json").read_text())["settings"]["unlabelled_train_instances"] == 6000
    report = (out / "report.md").read_text()
    assert "profile `smoke`" in report and "01_data_preparation.ipynb" in report and "| ok |" in report
    assert (out / "report.html").exists()
    assert not (REPO / "notebooks" / "runs").exists()
    again = pipeline.run_pipeline("smoke", out_dir=out, notebooks=books, log=lambda m: None, progress=False)
    assert [r.status for r in again] == ["skipped"]
    forced = pipeline.run_pipeline(
        "smoke", out_dir=out, notebooks=books, force=True, log=lambda m: None, progress=False
    )
    assert [r.status for r in forced] == ["ran"]


def test_runner_stops_on_failure_naming_notebook_and_cell(env):
    folder = env / "nbs"
    folder.mkdir()
    params = "PROFILE = None\nRUN_DIR = None"
    good = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell("x = 1")]
    )
    bad = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("print('before')"),
            nbformat.v4.new_code_cell("raise ValueError('boom in cell')"),
        ]
    )
    after = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("y = 2")])
    for name, nb in (("01_good.ipynb", good), ("02_bad.ipynb", bad), ("03_after.ipynb", after)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / name)
    out = env / "run"
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.run_pipeline(
            "smoke", out_dir=out, notebooks=pipeline.notebook_paths(folder), log=lambda m: None, progress=False
        )
    message = str(err.value)
    assert "02_bad.ipynb" in message and "ValueError: boom in cell" in message and "raise ValueError" in message
    assert (out / "02_bad.failed.ipynb").exists() and not (out / "02_bad.ipynb").exists()
    assert not (out / "03_after.ipynb").exists()
    state = json.loads((out / "state.json").read_text())
    assert state["01_good.ipynb"]["status"] == "ok" and state["02_bad.ipynb"]["status"] == "failed"
    # fix the notebook: the rerun skips the good one and continues from the failed one
    bad.cells[2].source = "z = 3"
    nbformat.write(bad, folder / "02_bad.ipynb")
    runs = pipeline.run_pipeline(
        "smoke", out_dir=out, notebooks=pipeline.notebook_paths(folder), log=lambda m: None, progress=False
    )
    assert [r.status for r in runs] == ["skipped", "ran", "ran"]
    state = json.loads((out / "state.json").read_text())
    earlier = state["02_bad.ipynb"]["earlier_attempts"]  # the failed attempt's time is kept, and reported
    assert state["02_bad.ipynb"]["status"] == "ok" and [a["status"] for a in earlier] == ["failed"]
    assert earlier[0]["seconds"] > 0 and "after 1 unfinished attempt(s)" in (out / "report.md").read_text()
    assert "earlier_attempts" not in state["01_good.ipynb"]


def _notebook(folder, name, params, code):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(code)]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / name)
    return folder / name


def test_overrides_injected_where_declared_refused_elsewhere_and_hashed(env):
    folder = env / "nbs"
    folder.mkdir()
    declared = _notebook(
        folder,
        "01_declared.ipynb",
        'PROFILE = None\nRUN_DIR = None\nOVERRIDES: str = ""',
        "from mixpoet_lib.config import get_profile\nassert get_profile(PROFILE, OVERRIDES).train.ndis == 5",
    )
    plain = _notebook(folder, "02_plain.ipynb", "PROFILE = None\nRUN_DIR = None", "x = 1")
    assert pipeline.notebook_parameters(declared) == {"PROFILE", "RUN_DIR", "OVERRIDES"}
    out = env / "run"
    runs = pipeline.run_pipeline(
        "smoke", out_dir=out, notebooks=[declared], log=lambda m: None, progress=False, overrides="train.ndis=5"
    )
    assert [r.status for r in runs] == ["ran"]
    executed = nbformat.read(out / declared.name, as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'OVERRIDES = "train.ndis=5"' in injected.source
    with pytest.raises(pipeline.PipelineError, match=r"02_plain\.ipynb has no OVERRIDES parameter"):
        pipeline.run_pipeline(
            "smoke", out_dir=out, notebooks=[plain], log=lambda m: None, progress=False, overrides="train.ndis=5"
        )
    assert not (out / plain.name).exists()
    with pytest.raises(ValueError, match=r"unknown setting 'train\.ndiss'"):
        pipeline.run_pipeline("smoke", out_dir=out, notebooks=[plain], log=lambda m: None, overrides="train.ndiss=5")
    prof = get_profile("smoke")
    base = pipeline.input_hash(plain, prof, "", "lib")
    assert pipeline.input_hash(plain, prof, "", "lib", "") == base != pipeline.input_hash(plain, prof, "", "lib", "a=1")


def test_train_is_injected_true_unless_published_weights_are_asked_for(env, monkeypatch):
    folder = env / "nbs"
    folder.mkdir()
    params = "PROFILE = None\nRUN_DIR = None\nTRAIN: bool = False"
    book = _notebook(folder, "01_train.ipynb", params, "print('TRAIN is', TRAIN)")
    assert pipeline.notebook_parameters(book) == {"PROFILE", "RUN_DIR", "TRAIN"}
    monkeypatch.delenv("MIXPOET_PUBLISHED", raising=False)
    assert pipeline.notebook_inputs(book, get_profile("smoke"), env / "run", "")["TRAIN"] is True
    monkeypatch.setenv("MIXPOET_PUBLISHED", "1")
    assert pipeline.notebook_inputs(book, get_profile("smoke"), env / "run", "")["TRAIN"] is False
    monkeypatch.delenv("MIXPOET_PUBLISHED")
    pipeline.run_pipeline("smoke", out_dir=env / "run", notebooks=[book], log=lambda m: None, progress=False)
    executed = nbformat.read(env / "run" / book.name, as_version=4)
    assert "TRAIN is True" in executed.cells[-1].outputs[0].text


def test_clean_notebook_drops_widget_state_widget_views_and_progress_bars():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x"), nbformat.v4.new_markdown_cell("text")])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    view = {"application/vnd.jupyter.widget-view+json": {"model_id": "abc"}, "text/plain": "evaluation: 0%| 0/18"}
    nb.cells[0].outputs = [
        nbformat.v4.new_output("display_data", data=view),
        nbformat.v4.new_output("stream", name="stderr", text="judge living:  40%|████      | 2/5 [00:01<00:01]"),
        nbformat.v4.new_output("stream", name="stderr", text="a real warning\n"),
        nbformat.v4.new_output("stream", name="stdout", text="kept: 50%|\n"),
    ]
    pipeline.clean_notebook(nb)
    assert "widgets" not in nb.metadata
    assert [o.get("text") for o in nb.cells[0].outputs] == ["a real warning\n", "kept: 50%|\n"]


def test_results_markdown_from_results_json():
    results = {
        "meta": {"n_keywords": 4, "seeds": [1, 2], "beam_size": 8},
        "summary": [
            {"system": "gt", "length": "all", "metric": "inter_jaccard", "mean": 0.05, "std": 0.0},
            {"system": "aus", "length": "all", "metric": "inter_jaccard", "mean": 0.1234, "std": 0.01},
            {"system": "aus", "length": "5", "metric": "inter_jaccard", "mean": 0.9, "std": 0.0},
        ],
        "judge_ceiling": {"living": {"n": 10, "accuracy": 0.8, "macro_f1": 0.75}},
        "lm_reference_gt": {"mean_lms": -6.4, "corpus_ppl": 600.0},
        "seconds_per_poem": {"aus": 0.02},
        "claims": [{"claim": "c", "verdict": "supported", "evidence": "e"}],
    }
    text = "\n".join(run_report.results_markdown(results))
    assert "| MixPoet-AUS | 0.123 ± 0.010 |" in text and "0.900" not in text  # only the 'all' rows
    assert "living accuracy 0.800, macro-F1 0.750 (n = 10)" in text and "log-prob per character -6.400" in text
    assert "MixPoet-AUS 0.020" in text and "| c | supported | e |" in text
    assert "**Diversity**" in text and "Side by side with the paper" not in text
    summary = pd.DataFrame(results["summary"])
    results["paper"] = report.paper_section(summary[summary["length"] == "all"], 4)
    text = "\n".join(run_report.results_markdown(results))
    assert "### Side by side with the paper" in text and "| MixPoet-AUS | inter-topic JS ↓ | 0.0139 | — |" in text


def test_training_section_sums_calls_per_phase_and_names_bad_rows(tmp_path, capsys):
    """The training table adds up a resumed phase's calls, keeps only the last fresh start, names a broken row."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "timing.csv").write_text(
        "phase,from_step,to_step,seconds,median_step_s,validation_s,checkpoint_s,threads,device,finished\n"
        "shared_dae,0,600,60.5,0.1,0,0,2,cpu,x\n"
        "shared_dae,600,1500,90.0,0.1,0,0,2,cpu,x\n"
        "aus_c1,0,500,oops,0.1,0,0,2,cpu,x\n"
        "aus_c1,0,500,70,0.1,0,0,2,cpu,x\n"
        "aus_c1,0,500,40,0.1,0,0,2,cpu,x\n",
        encoding="utf-8",
    )
    text = "\n".join(run_report.training_section(tmp_path))
    assert "| shared_dae | 1500 | 2 | 150 |" in text
    assert "| aus_c1 | 500 | 1 | 40 |" in text
    assert "| **total** | | | 190 |" in text
    assert "timing.csv:4: unreadable timing row" in capsys.readouterr().err
    assert run_report.training_section(tmp_path / "nowhere") == []
    # the README's training note counts the same way (the retrained aus_c1 once, not three times)
    spec = importlib.util.spec_from_file_location("readme", repo_root() / "scripts" / "update_readme_results.py")
    assert spec is not None and spec.loader is not None
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    assert readme._training_note(tmp_path).startswith("; training its 2 phases took 3.2 min (2 ")


def test_the_long_profile_adopts_the_tutorials_pre_trained_phases(tmp_path):
    """A profile that shares its pre-trained phases (config.FIRST_STAGE_OF) copies them — checkpoint, logs, timing
    row — from the base profile's run into its own, never over what it already has; other profiles copy nothing."""
    src, out = tmp_path / "tutorial-local", tmp_path / "long-local"
    (src / "checkpoints").mkdir(parents=True)
    (src / "logs").mkdir()
    (src / "checkpoints" / "shared_dae.pt").write_bytes(b"dae")
    (src / "checkpoints" / "shared_cl1.pt").write_bytes(b"cl1")
    (src / "logs" / "shared_dae.csv").write_text("step,loss\n1,9.0\n")
    (src / "logs" / "shared_dae_valid.csv").write_text("step,val_rec\n1,5.0\n")
    header = "phase,from_step,to_step,seconds\n"
    (src / "logs" / "timing.csv").write_text(header + "shared_dae,0,1500,656.1\nbasic_c1,0,500,138.1\n")
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "shared_cl1.pt").write_bytes(b"own")

    assert pipeline.adopt_first_stage("tutorial", out, [src]) == []
    copied = pipeline.adopt_first_stage("long", out, [src])
    assert copied == [f"shared_dae from {src}"]  # cl1 is already there, cl2 nowhere
    assert (out / "checkpoints" / "shared_dae.pt").read_bytes() == b"dae"
    assert (out / "checkpoints" / "shared_cl1.pt").read_bytes() == b"own"
    assert (out / "logs" / "shared_dae_valid.csv").read_text() == "step,val_rec\n1,5.0\n"
    assert (out / "logs" / "timing.csv").read_text() == header + "shared_dae,0,1500,656.1\n"
    assert pipeline.adopt_first_stage("long", out, [src]) == []  # a second call copies nothing
