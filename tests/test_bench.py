"""``mixpoet bench``: the figures it reports are real measurements of the training code (smoke profile)."""

from __future__ import annotations

import importlib.util
import json
import time
from typing import Any

import numpy as np
import pytest

from mixpoet_lib.cli import app as cli
from mixpoet_lib.cli.bench import bench_settings, format_report, rss_growth
from mixpoet_lib.cli.bench_probes import RSSSampler, cpu_info, matmul_peak
from mixpoet_lib.paths import repo_root


def test_matmul_peak_is_positive_and_finite():
    g = matmul_peak("fp32", n=256, reps=2)
    assert 0.1 < g < 1e5


def test_rss_sampler_sees_an_allocation():
    """While 50 MB are held, the sampler records a resident size ≥ 40 MB above the size before the allocation.

    The allocation is held until the sampler has taken a sample after it: on a loaded machine the sampler
    thread may not run at all during a fixed short sleep.
    """
    with RSSSampler(period=0.001) as s:
        before = RSSSampler.rss_bytes()
        t0 = time.perf_counter()
        a = np.ones(50_000_000 // 8)  # 50 MB touched
        done = time.perf_counter()
        while not any(t > done for t, _ in s.samples) and time.perf_counter() < done + 5:
            time.sleep(0.01)
        t1 = time.perf_counter()
        del a
    assert s.peak(t0, t1) - before > 40 * 2**20


def test_bench_smoke_json(mirror_dir, monkeypatch, capsys):
    monkeypatch.setenv("MIXPOET_MIRROR", str(mirror_dir))
    rc = cli.main(
        [
            "bench",
            "--profiles",
            "smoke",
            "--steps",
            "9",
            "--threads",
            "1",
            "--json",
            "--no-generation",
            "--set",
            "eval.intra_n=2",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    (r,) = res
    phases = {p["phase"]: p for p in r["phases"]}
    for key in (
        "shared_dae",
        "shared_cl1",
        "basic_c1",
        "cvae_c1",
        "igs_c1",
        "aus_c1 (warm-up)",
        "aus_c1 (adversarial)",
    ):
        p = phases[key]
        assert p["s_per_step"] > 0 and p["tokens_per_s"] > 0 and p["peak_rss_mb"] > 50, key
        assert p["gflop_per_step"] > 0 and 0 < p["pct_fp32_peak"] < 100, key
    # the adversarial step (R + 3 D + G) costs more FLOPs than the reconstruction step alone
    assert phases["aus_c1 (adversarial)"]["gflop_per_step"] > phases["aus_c1 (warm-up)"]["gflop_per_step"]
    assert r["matmul_peak_gflops"]["fp32"] > 0 and r["threads"] == 1
    # FLOPs counted on steps that are not a phase's last (which also validates and saves a checkpoint)
    assert max(r["flop_steps"].values()) < r["steps_per_phase"] and phases["aus_c1 (adversarial)"]["steps_timed"] >= 2
    assert r["overrides"] == "eval.intra_n=2" and r["cpu"]["model"]
    report = format_report(res)
    assert "shared_dae" in report and f"CPU {r['cpu']['model']}" in report and "speed flags" in report
    # a full-size report points to the side-by-side script, with no ratio to official times taken elsewhere
    assert "side_by_side" not in report
    full = format_report([{**r, "profile": "full"}])
    assert "scripts/side_by_side.py" in full and "×" not in full


def test_cpu_info_names_the_processor_and_speed_flags():
    info = cpu_info()
    assert info["model"] and isinstance(info["flags"], list)
    assert all(f in ("avx2", "fma") or f.startswith(("avx512", "amx")) for f in info["flags"])


def test_bench_settings_keep_user_overrides():
    full = bench_settings("full", 12, 2, 1, "train.encode_once=true,data.max_vocab=100")
    assert full.train.encode_once and full.data.max_vocab == 100 and full.train.ckpt_every == 10**9
    assert bench_settings("full", 12, 2, 1).data.max_vocab == 5547 - 4 and full.train.rec_warm_steps == 5


def test_bench_rejects_too_few_steps(capsys):
    assert cli.main(["bench", "--profiles", "smoke", "--steps", "3"]) == 1
    assert "--steps must be at least" in capsys.readouterr().err


def test_flop_counter_counts_linear_and_gru_by_hand():
    import torch

    from mixpoet_lib.cli.bench_probes import flop_counter

    lin = torch.nn.Linear(8, 16)
    x = torch.randn(4, 8, requires_grad=True)
    c = flop_counter()
    with c:
        lin(x).sum().backward()
    assert c.get_total_flops() == 3 * 2 * 4 * 8 * 16  # forward + two backward matmuls
    gru = torch.nn.GRU(8, 16, batch_first=True)
    c = flop_counter()
    with c, torch.no_grad():
        gru(torch.randn(2, 5, 8))
    assert c.get_total_flops() == 2 * 2 * 5 * 3 * (8 * 16 + 16 * 16)


def test_rss_growth_compares_the_last_quarter_with_the_second():
    sampler = RSSSampler()  # not started: samples set by hand, (time, bytes)
    sampler.samples = [(0.5, 900), (1.5, 100), (2.5, 120), (3.5, 150), (3.9, 170)]
    assert rss_growth(sampler, 0.0, 4.0) == 170 - 100  # the first quarter's one-off peak does not count
    sampler.samples = [(t + 0.5, 100) for t in range(4)]
    assert rss_growth(sampler, 0.0, 4.0) == 0


def _compare_runs_script() -> Any:
    spec = importlib.util.spec_from_file_location("compare_runs", repo_root() / "scripts" / "compare_runs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_runs_tables_common_validation_points_and_refuses_mismatched_labels(tmp_path, capsys):
    """Two runs' DAE validation logs: only the steps and columns both have are compared, with the later run's
    relative difference from the first ((4.8 − 4.0) / 4.0 = 0.2 by hand); the figure is written; a label count
    that does not match the runs stops with one line."""
    for name, rows in (("a", "step,val_rec,val_ppl\n250,5.0,148.4\n500,4.0,54.6\n"), ("b", "step,val_rec\n500,4.8\n")):
        logs = tmp_path / name / "logs"
        logs.mkdir(parents=True)
        (logs / "shared_dae_valid.csv").write_text(rows, encoding="utf-8")
        (logs / "shared_dae.csv").write_text("step,loss\n1,6.0\n2,5.5\n3,5.2\n", encoding="utf-8")
    script = _compare_runs_script()
    table = script.validation_table([tmp_path / "a", tmp_path / "b"], ["fp32", "bf16"])
    assert table[["phase", "step", "value"]].values.tolist() == [["shared_dae", 500, "val_rec"]]
    assert table.loc[0, "rel bf16"] == pytest.approx(0.2)
    script.main(
        [str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "fp32", "bf16", "--figure", str(tmp_path / "c.png")]
    )
    assert "val_rec" in capsys.readouterr().out and (tmp_path / "c.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="1 names for 2 runs"):
        script.main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "fp32"])
