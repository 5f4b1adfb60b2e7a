"""``mixpoet reproduce`` as a user meets it (issue 13, items 8, 15 (HTML), 16–19): the profile it runs, what a
failed or interrupted notebook leaves, a quiet terminal with a live status line, user runs kept apart from the
committed reference, and the thread count chosen from the machine's load."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

from mixpoet_lib import paths, pipeline, run_report, runtime
from mixpoet_lib.cli import app as cli
from mixpoet_lib.cli import live
from mixpoet_lib.cli import reproduce as cmd_reproduce
from mixpoet_lib.config import get_profile

REPO = Path(__file__).resolve().parents[1]
PARAMS = "PROFILE = None\nRUN_DIR = None"


def _notebook(folder: Path, name: str, *code: str) -> Path:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]})]
        + [nbformat.v4.new_code_cell(c) for c in code]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


@pytest.fixture()
def runs(monkeypatch, tmp_path):
    """runs/ and figures/ of a throw-away repository: nothing a test does lands in the real one."""

    monkeypatch.setattr(pipeline, "run_path", lambda name: tmp_path / "runs" / name)
    monkeypatch.setattr(paths, "repo_root", lambda: tmp_path)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path


# ----------------------------------------------------------------------------- item 8


def test_reproduce_honours_mixpoet_profile(runs, monkeypatch, capsys):
    seen = {}

    def fake_run(name, **kwargs):
        seen.update(kwargs, name=name)
        return []

    monkeypatch.setattr(cmd_reproduce, "run_pipeline", fake_run)
    monkeypatch.setenv("MIXPOET_PROFILE", "smoke")
    assert pipeline.default_profile_name() == "smoke"
    assert cli.main(["reproduce", "-q"]) == 0
    assert seen["name"] == "smoke" and seen["out_dir"] == runs / "runs" / "smoke-local"
    assert "profile smoke →" in capsys.readouterr().out
    monkeypatch.setenv("MIXPOET_PROFILE", "nope")
    assert cli.main(["reproduce", "-q"]) == 1
    assert "unknown profile 'nope'" in capsys.readouterr().err


def test_failed_rerun_keeps_the_good_copy_and_reports_the_failure(runs):
    folder, out = runs / "nbs", runs / "run"
    good = _notebook(folder, "01_only.ipynb", "print('good result')")
    kwargs = {"out_dir": out, "notebooks": [good], "log": lambda m: None, "progress": False}
    pipeline.run_pipeline("smoke", **kwargs)
    first = (out / good.name).read_text(encoding="utf-8")
    assert "good result" in first and "| ok |" in (out / "report.md").read_text(encoding="utf-8")
    _notebook(folder, "01_only.ipynb", "print('partial')", "raise ValueError('broken on rerun')")
    failure = r"01_only\.ipynb failed at cell \d+ .*ValueError: broken on rerun"
    with pytest.raises(pipeline.PipelineError, match=failure):
        pipeline.run_pipeline("smoke", force=True, **kwargs)
    assert (out / good.name).read_text(encoding="utf-8") == first  # the good executed copy is not overwritten
    assert "broken on rerun" in (out / "01_only.failed.ipynb").read_text(encoding="utf-8")
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| ok |" not in report and "| failed (partial copy: [01_only.failed.ipynb]" in report
    assert json.loads((out / "state.json").read_text())["01_only.ipynb"]["status"] == "failed"


# ----------------------------------------------------------------------------- item 17


def test_kernel_is_quiet_and_an_interrupt_is_one_message(runs, tmp_path):
    folder, started = tmp_path / "nbs", tmp_path / "slow_cell_started"
    slow = f"import time\nopen({str(started)!r}, 'w').close()\nfor _ in range(600):\n    time.sleep(0.1)"
    _notebook(folder, "01_slow.ipynb", slow)
    out = tmp_path / "run"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mixpoet_lib import pipeline\n"
        "from mixpoet_lib.cli import app\n"
        f"pipeline.notebook_paths = lambda folder=None: [Path({str(folder / '01_slow.ipynb')!r})]\n"
        f"sys.exit(app.main(['reproduce', '--profile', 'smoke', '--run-dir', {str(out)!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not started.exists():
        time.sleep(0.2)  # until the slow cell itself executes (the notebook's "running" mark comes cells earlier)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    err = stderr.decode().strip().splitlines()
    assert proc.returncode == 130, stderr.decode()
    assert err == [
        f"mixpoet: reproduce interrupted while running 01_slow.ipynb; partial notebook kept at "
        f"{out / '01_slow.failed.ipynb'}; run the command again to continue"
    ]
    assert b"without encryption" not in stdout + stderr and b"Traceback" not in stdout + stderr
    assert json.loads((out / "state.json").read_text())["01_slow.ipynb"]["status"] == "interrupted"
    assert (out / "kernel_logs" / "01_slow.log").exists()


# ----------------------------------------------------------------------------- item 16


def _log(path: Path, header: str, rows: list[str], tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n" + tail, encoding="utf-8")


def test_log_tailer_reads_the_last_complete_row(tmp_path):
    run = tmp_path / "run"
    rows = [f"{s},1,0.001,1.0,{9 - s / 10},0.5" for s in range(1, 2001)]  # more than the tail window
    _log(run / "logs" / "shared_dae.csv", "step,epoch,lr,tf_ratio,loss,grad_norm", rows, tail="2001,1,0.0")
    row = live.tail_row(run / "logs" / "shared_dae.csv")
    assert row is not None and row["step"] == "2000" and float(row["loss"]) == pytest.approx(-191.0)
    _log(run / "logs" / "shared_dae_valid.csv", "step,val_rec", ["2000,5.0"])
    _log(run / "logs" / "timing.csv", "phase,from_step", ["shared_dae,0"])
    _log(run / "logs" / "basic_c1.csv", "step,epoch,loss", ["1,1,7.5", "2,1,7.25"])
    os.utime(run / "logs" / "shared_dae.csv", (time.time() - 100, time.time() - 100))
    phase = live.latest_phase(run, since=time.time() - 50, profile=get_profile("smoke"))
    assert phase == live.PhaseProgress("basic_c1", 2, 40, 7.25)  # newest log; smoke caps the mixture at 40 steps
    assert live.latest_phase(run, since=time.time() + 50) is None  # logs older than this notebook are ignored
    assert live.tail_row(run / "logs" / "missing.csv") is None


def test_status_line_shows_notebook_cell_phase_loss_and_eta(tmp_path):
    phase = live.PhaseProgress("shared_dae", 340, 1500, 5.2134)
    line = live.format_status("02_generator.ipynb", (6, 20), 192.4, phase, 0.41)
    assert line == (
        "02_generator.ipynb · cell 7/20 │ 3:12 │ shared_dae step 340/1500 · loss 5.213 · 0.41 s/step · ETA 7:56"
    )
    assert live.format_status("05_evaluation.ipynb", (0, 0), 3725) == "05_evaluation.ipynb │ 1:02:05"
    finished = live.PhaseProgress("shared_dae", 1500, 1500, 4.0)
    assert live.format_status("x", (1, 2), 1, finished, 0.4).endswith("step 1500/1500 · loss 4 · 0.40 s/step · done")
    assert len(live.format_status("02_generator.ipynb", (6, 20), 1, phase, 0.4, width=30)) == 30
    nb = _notebook(tmp_path, "x.ipynb", "a = 1", "b = 2")
    doc = json.loads(nb.read_text())
    doc["cells"][0]["metadata"]["papermill"] = {"status": "completed"}
    doc["cells"][1]["metadata"]["papermill"] = {"status": "running"}
    nb.write_text(json.dumps(doc))
    assert live.notebook_cells(nb) == (1, 3) and live.notebook_cells(tmp_path / "none.ipynb") == (0, 0)


def test_live_status_refreshes_one_terminal_line(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    run, term = tmp_path / "run", Terminal()
    status = live.LiveStatus(run, term, get_profile("smoke"), interval=0.02)

    def shown(part: str) -> None:
        """Wait until the status thread has drawn ``part`` (on a loaded machine it may be starved for a second)."""
        deadline = time.time() + 30
        while part not in term.getvalue() and time.time() < deadline:
            time.sleep(0.02)

    with status.watch("02_generator.ipynb", run / "02_generator.running.ipynb"):
        _log(run / "logs" / "shared_dae.csv", "step,loss", ["1,9.0"])
        shown("step 1/40")
        time.sleep(0.1)
        _log(run / "logs" / "shared_dae.csv", "step,loss", ["1,9.0", "2,8.5", "3,8.0"])
        shown("ETA")
    text = term.getvalue()
    # the clock reads 0:00 unless the machine starved the status thread: its value is not what is tested here
    assert re.search(r"\r\033\[K02_generator\.ipynb │ 0:0\d │ shared_dae step 3/40 · loss 8 · ", text), text
    assert "ETA" in text
    assert text.endswith("\r\033[K")  # the line is cleared for the next message
    assert status.speed(live.PhaseProgress("x", 10, None, None), 100.0) is None
    assert status.speed(live.PhaseProgress("x", 20, None, None), 105.0) == pytest.approx(0.5)
    assert status.speed(live.PhaseProgress("x", 20, None, None), 150.0) == pytest.approx(0.5)  # phase over: no drift


# ----------------------------------------------------------------------------- item 18 and 15 (HTML)


def test_user_run_stays_out_of_the_reference_and_is_compared_with_it(runs):
    reference = runs / "runs" / "smoke"
    reference.mkdir(parents=True)
    summary = [{"system": "aus", "length": "all", "metric": "form_ok", "mean": 0.75, "std": 0.01}]
    metrics = {"form_ok": {"title": "tone pattern + rhyme pass rate ↑", "direction": 1}}
    (reference / "results.json").write_text(json.dumps({"summary": summary, "metrics": metrics}))
    (reference / "state.json").write_text(json.dumps({"01_fig.ipynb": {"status": "ok", "seconds": 12.0}}))
    book = _notebook(
        runs / "nbs",
        "01_fig.ipynb",
        "from mixpoet_lib import paths\n(paths.figures_dir('smoke') / '01_x.png').write_bytes(b'png')",
        "import json, os\nresults = {'summary': [{'system': 'aus', 'length': 'all', 'metric': 'form_ok', "
        "'mean': 0.70, 'std': 0.02}]}\njson.dump(results, open(os.path.join(RUN_DIR, 'results.json'), 'w'))",
        "json.dump([{'title': '<script>alert(1)</script>', 'content': 'a|b'}], "
        "open(os.path.join(RUN_DIR, 'samples.json'), 'w'))",
    )
    pipeline.run_pipeline("smoke", notebooks=[book], log=lambda m: None, progress=False)
    local = runs / "runs" / "smoke-local"
    assert (local / "figures" / "01_x.png").exists() and not (runs / "figures").exists()
    assert sorted(p.name for p in reference.iterdir()) == ["results.json", "state.json"]  # untouched
    report = (local / "report.md").read_text(encoding="utf-8")
    assert "![01_x](figures/01_x.png)" in report and "## Compared with the published reference run" in report
    assert "| MixPoet-AUS | tone pattern + rhyme pass rate ↑ | 0.700 | 0.750 | -0.050 |" in report
    assert "| [01_fig.ipynb](01_fig.ipynb) | ok |" in report and "| 12.0 |" in report
    html = (local / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_reference_mode_and_gitignore(runs):
    book = _notebook(
        runs / "nbs", "01_fig.ipynb", "from mixpoet_lib import paths\n(paths.figures_dir('smoke') / '01_y.png').touch()"
    )
    pipeline.run_pipeline("smoke", notebooks=[book], log=lambda m: None, progress=False, reference=True)
    assert (runs / "figures" / "smoke" / "01_y.png").exists()  # the reference keeps figures/<profile>/
    assert "Compared with" not in (runs / "runs" / "smoke" / "report.md").read_text(encoding="utf-8")
    ignored = ["runs/tutorial-local/report.md", "runs/tutorial/01_x.failed.ipynb", "runs/tutorial/kernel_logs/a.log"]
    ignored += [f"runs/tutorial/train-seeds/seed-7/{p}" for p in ("checkpoints/aus_c2.pt", "figures/04_x.png", ".lock")]
    tracked = ["runs/tutorial/report.md", "figures/05_relaxations.png", "runs/tutorial/train-seeds/seed-7/results.json"]
    check = subprocess.run(["git", "check-ignore", *ignored, *tracked], cwd=REPO, capture_output=True, text=True)
    assert check.stdout.split() == ignored


def test_html_report_escapes_markup(tmp_path):
    html = run_report.render_html("| a |\n|---|\n| <img src=x onerror=alert(1)> |\n\n**<b>bold</b>**")
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html and "<table>" in html


# ----------------------------------------------------------------------------- item 19


@pytest.mark.parametrize(
    ("load", "cores", "default", "own", "threads"),
    [
        (0.1, 2, 2, 0.0, 2),  # idle 2-core laptop: torch's 2 threads
        (1.0, 2, 2, 0.0, 1),  # one other CPU-bound process (even niced): 1 thread
        (1.0, 2, 2, 1.0, 2),  # the load is this process's own (e.g. the kernel just prepared the data)
        (0.6, 2, 2, 0.0, 1),
        (0.4, 2, 2, 0.0, 2),
        (3.0, 8, 8, 0.0, 5),  # a bigger machine keeps the free cores
        (0.0, 8, 1, 0.0, 1),  # never more than torch's default (e.g. OMP_NUM_THREADS=1)
        (9.0, 2, 2, 0.0, 1),  # at least one
    ],
)
def test_thread_choice_follows_the_load(load, cores, default, own, threads):
    n, why = runtime.choose_threads(load, cores, default, own)
    assert n == threads and f"load average {load:.2f} on {cores} cores" in why
    assert ("busy" in why) == (threads < default)


def test_thread_setting_of_the_profile_wins(monkeypatch):
    assert runtime.auto_threads(3) == (3, "set in the profile (train.num_threads)")
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(runtime, "_own_load", lambda: 0.0)
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(runtime, "sampled_busy_cores", lambda: None)  # no /proc/stat: the load average decides
    assert runtime.auto_threads(0)[0] == 1
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: 1)
    assert runtime.auto_threads(0)[0] == 1  # torch's one thread: nothing to measure


def test_threads_follow_what_the_cpus_do_now_not_the_load_average(monkeypatch):
    """The previous notebook's kernel has just ended: the load average still says 1.0 (one core busy), the CPUs
    are idle now, so training gets both threads; with another program really running it gets one."""
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(runtime, "sampled_busy_cores", lambda: (0.02, 0.0))
    n, why = runtime.auto_threads(0)
    assert n == 2 and why.startswith("CPU use over 1 s: 0.02 on 2 cores") and "idle enough" in why
    monkeypatch.setattr(runtime, "sampled_busy_cores", lambda: (1.0, 0.0))
    assert runtime.auto_threads(0)[0] == 1


def test_sampled_busy_cores_from_proc_stat_ticks(monkeypatch):
    """Busy ticks 100 → 150 of total 1,000 → 1,100 on 2 cores: half of all CPU time, i.e. one core busy."""
    real = runtime._cpu_ticks
    ticks = iter([(100, 1000), (150, 1100)])
    monkeypatch.setattr(runtime, "_cpu_ticks", lambda: next(ticks))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    busy, own = runtime.sampled_busy_cores(0.0)
    assert busy == pytest.approx(1.0) and own >= 0.0
    monkeypatch.setattr(runtime, "_cpu_ticks", lambda: (_ for _ in ()).throw(OSError("no /proc")))
    assert runtime.sampled_busy_cores(0.0) is None
    if Path("/proc/stat").exists():  # the real parser: busy ticks never exceed the total
        busy_ticks, total = real()
        assert 0 <= busy_ticks <= total


def test_bf16_is_chosen_by_the_setting_or_by_the_cpus_bf16_units(monkeypatch):
    assert runtime.bf16_choice("on", "cpu")[0] is True and runtime.bf16_choice("off", "cuda")[0] is False
    monkeypatch.setattr(runtime, "cpu_identity", lambda: ("Xeon", frozenset({"avx2", "avx512f", "amx_bf16"})))
    on, why = runtime.bf16_choice("auto", "cpu")
    assert on and "amx_bf16" in why
    monkeypatch.setattr(runtime, "cpu_identity", lambda: ("EPYC", frozenset({"avx2", "fma"})))
    on, why = runtime.bf16_choice("auto", "cpu")
    assert not on and "no bf16 units" in why
    assert runtime.bf16_choice("auto", "mps")[0] is False


def test_report_environment_names_the_processor_and_its_speed_flags(monkeypatch):
    """Timings in a report mean little without the processor: the environment table names it and the instruction
    sets that decide the speed (AMX/AVX-512 against AVX2 only), leaving the others out."""
    flags = frozenset({"sse4_2", "avx2", "fma", "avx512f", "amx_bf16", "aes"})
    monkeypatch.setattr(runtime, "cpu_identity", lambda: ("Intel Xeon", flags))
    assert runtime.processor_summary() == "Intel Xeon (amx_bf16, avx2, avx512f, fma)"
    assert run_report.environment()["processor"] == "Intel Xeon (amx_bf16, avx2, avx512f, fma)"
    monkeypatch.setattr(runtime, "cpu_identity", lambda: ("Old CPU", frozenset({"sse4_2"})))
    assert runtime.processor_summary() == "Old CPU (no AVX2)"


def test_cpu_identity_without_cpuinfo_or_lscpu_falls_back_to_the_platform_name(monkeypatch):
    def unreadable(self, *args, **kwargs):
        raise OSError("no such file")

    def no_lscpu(*args, **kwargs):
        raise OSError("lscpu: not found")

    monkeypatch.setattr(runtime.Path, "read_text", unreadable)
    monkeypatch.setattr(runtime.subprocess, "run", no_lscpu)
    monkeypatch.setattr(runtime.platform, "processor", lambda: "x86_64")
    read = runtime.cpu_identity.__wrapped__  # not the cached answer of this machine, nor caching this fake one
    assert read() == ("x86_64", frozenset())
    monkeypatch.setattr(runtime.platform, "processor", lambda: "")
    assert read()[0] == "unknown"


def test_amp_setting_takes_three_words():
    assert get_profile("tutorial", "train.amp_bf16=on").train.amp_bf16 == "on"
    assert all(get_profile(p).train.amp_bf16 == "off" for p in ("smoke", "tutorial", "full"))
    with pytest.raises(ValueError, match=r"TrainConfig.amp_bf16 must be one of .*got 'fast'"):
        get_profile("tutorial", "train.amp_bf16=fast")
    with pytest.raises(ValueError, match=r"train.amp_bf16.*expects str, got True"):  # the earlier boolean form
        get_profile("tutorial", "train.amp_bf16=true")


def test_weights_key_holds_bf16_as_this_machine_resolves_it(monkeypatch):
    from mixpoet_lib import signatures
    from mixpoet_lib.checkpoints import weights_key

    def key(amp: str) -> str:
        return weights_key(get_profile("tutorial", f"train.amp_bf16={amp}"))

    assert signatures.weight_settings(get_profile("tutorial").train)["amp_bf16"] is False  # as published (fp32)
    assert key("on") != key("off")
    for flags, same_as in ((frozenset({"amx_bf16"}), "on"), (frozenset({"avx2"}), "off")):
        monkeypatch.setattr(runtime, "cpu_identity", lambda flags=flags: ("cpu", flags))
        monkeypatch.setattr(signatures, "default_device", lambda: torch.device("cpu"))
        assert key("auto") == key(same_as)
