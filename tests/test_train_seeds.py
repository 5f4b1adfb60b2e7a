"""Results over training seeds (issue 12, item 5): exact pooling of the runs' per-seed statistics, claims judged on
the pooled spread, and ``mixpoet reproduce --train-seeds`` running one whole run per seed and pooling them."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from mixpoet_lib import pipeline
from mixpoet_lib.cli import app as cli
from mixpoet_lib.cli import reproduce as cmd_reproduce
from mixpoet_lib.evaluate.seeds import pool_summaries, pooled_results, seed_report_markdown, write_seed_report
from mixpoet_lib.paths import repo_root


def _summary(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """A results summary (length 'all') from the per-generation-seed values of each (system, metric)."""
    return pd.DataFrame(
        [
            {
                "system": sys,
                "length": "all",
                "metric": metric,
                "mean": float(np.mean(v)),
                "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                "n_seeds": len(v),
            }
            for (sys, metric), v in values.items()
        ]
    )


def test_pooling_equals_the_statistics_of_all_values():
    """Runs [1, 2, 3] and [4, 5, 6]: pooled mean 3.5 and sample std sqrt(17.5 / 5), as over the six values."""
    a = _summary({("aus", "keyword_rate"): [1.0, 2.0, 3.0], ("gt", "keyword_rate"): [1.0, 1.0, 1.0]})
    b = _summary({("aus", "keyword_rate"): [4.0, 5.0, 6.0], ("gt", "keyword_rate"): [1.0, 1.0, 1.0]})
    pooled = pool_summaries([a, b]).set_index(["system", "metric"])
    assert pooled.loc[("aus", "keyword_rate"), "mean"] == pytest.approx(3.5)
    assert pooled.loc[("aus", "keyword_rate"), "std"] == pytest.approx(np.sqrt(17.5 / 5))
    assert pooled.loc[("aus", "keyword_rate"), "std"] == pytest.approx(np.std([1, 2, 3, 4, 5, 6], ddof=1))
    assert pooled.loc[("gt", "keyword_rate"), "std"] == 0.0  # the same human poems in every run
    assert pooled.loc[("aus", "keyword_rate"), "n_seeds"] == 6 and pooled.loc[("aus", "keyword_rate"), "n_runs"] == 2
    # unequal numbers of seeds and a row that only one run has
    c = _summary({("aus", "keyword_rate"): [7.0], ("igs", "keyword_rate"): [0.5, 0.7]})
    pooled = pool_summaries([a, c]).set_index(["system", "metric"])
    assert pooled.loc[("aus", "keyword_rate"), "mean"] == pytest.approx(np.mean([1, 2, 3, 7]))
    assert pooled.loc[("aus", "keyword_rate"), "std"] == pytest.approx(np.std([1, 2, 3, 7], ddof=1))
    assert pooled.loc[("igs", "keyword_rate"), "n_runs"] == 1
    with pytest.raises(ValueError, match="no summaries"):
        pool_summaries([])


def _results(seed_values: dict[tuple[str, str], list[float]]) -> dict:
    return {
        "meta": {"profile": "smoke", "seeds": [1, 2], "weights": {"aus": "x"}},
        "summary": json.loads(_summary(seed_values).to_json(orient="records")),
        "judge_ceiling": {"living": {"accuracy": 0.8, "macro_f1": 0.8}, "era": {"accuracy": 0.7, "macro_f1": 0.7}},
    }


def test_a_claim_clear_within_one_run_is_judged_on_the_training_seed_spread():
    """AUS beats the 0.40 keyword target clearly in each run's generation spread, but the two training seeds
    (0.46 and 0.38) straddle it: pooled, the target is met only within the spread."""
    one = _results({("aus", "keyword_rate"): [0.459, 0.461]})
    two = _results({("aus", "keyword_rate"): [0.379, 0.381]})
    row = lambda p: next(c for c in p["claims"] if c["claim"] == "target: MixPoet-AUS keyword_rate ≥ 0.4")  # noqa: E731
    alone = pooled_results({1234: one, 1235: one})
    assert row(alone)["verdict"] == "supported"
    both = pooled_results({1234: one, 1235: two})
    assert row(both)["verdict"] == "weakly supported (within seed spread)"
    assert both["meta"]["train_seeds"] == [1234, 1235]
    assert [r["training seed"] for r in both["per_seed"]] == [1234, 1235]
    assert both["per_seed"][1]["aus keyword_rate"] == pytest.approx(0.38)
    assert both["judge_ceiling"]["living"]["macro_f1"] == pytest.approx(0.8)


def test_seed_report_files(tmp_path):
    res = {s: _results({("aus", "keyword_rate"): [0.4 + s / 1e5, 0.5]}) for s in (1, 2)}
    paths = write_seed_report(res, tmp_path)
    md = paths["md"].read_text(encoding="utf-8")
    assert "results over training seeds [1, 2]" in md and "| 2 | " in md and "Claims and targets" in md
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["meta"]["train_seeds"] == [1, 2]
    with pytest.raises(ValueError, match="at least two"):
        write_seed_report({1: res[1]}, tmp_path)


def test_readme_results_add_the_training_seeds_where_the_run_has_them(tmp_path):
    spec = importlib.util.spec_from_file_location("readme", repo_root() / "scripts" / "update_readme_results.py")
    assert spec is not None and spec.loader is not None
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    assert readme._seed_lines(tmp_path) == []  # one training seed: nothing to add
    res = {s: _results({("aus", "keyword_rate"): [0.4 + s / 1e5, 0.5]}) for s in (1234, 7)}
    write_seed_report(res, tmp_path, main=1234)
    text = "\n".join(readme._seed_lines(tmp_path))
    assert text.startswith("**Over training seeds 7, 1234.** The tables above are the run of seed 1234")
    assert "also trained with seed(s) 7 (whole runs in" in text
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith(("| 1234 |", "| 7 |"))}
    assert "| 0.456 |" in rows["| 1234"] and "| 0.450 |" in rows["| 7"]  # AUS keyword rate: mean of 0.4 + s/1e5, 0.5
    assert "| claim | verdict | evidence |" in text
    with pytest.raises(ValueError, match="main run's seed 5 is not among"):
        write_seed_report(res, tmp_path, main=5)


def test_train_seeds_option_parses_and_places_each_run():
    assert cmd_reproduce.train_seeds(None, 1234) == [1234]
    assert cmd_reproduce.train_seeds("1235,1234,1236", 1234) == [1234, 1235, 1236]  # the profile's own run first
    assert cmd_reproduce.train_seeds("1235", 1234) == [1234, 1235]
    for bad in ("12a", "1,1"):
        with pytest.raises(ValueError, match="--train-seeds"):
            cmd_reproduce.train_seeds(bad, 1234)
    out = pipeline.run_path("x")
    assert cmd_reproduce.seed_run(out, "", 1234, 1234) == (out, "")
    assert cmd_reproduce.seed_run(out, "train.ndis=2", 7, 1234) == (
        out / "train-seeds" / "seed-7",
        "train.ndis=2,seed=7",
    )


def test_reproduce_with_train_seeds_runs_each_seed_and_pools(monkeypatch, tmp_path, capsys):
    """Each seed is a whole pipeline run (fake here: it writes a results.json) with ``seed=`` in its overrides."""
    seen = []

    def fake_run(name, out_dir, overrides, **kwargs):
        seen.append((out_dir, overrides))
        rate = 0.5 if "seed=" not in overrides else 0.3
        (out_dir / "results.json").write_text(json.dumps(_results({("aus", "keyword_rate"): [rate, rate + 0.01]})))
        return []

    monkeypatch.setattr(cmd_reproduce, "run_pipeline", fake_run)
    out = tmp_path / "run"
    assert cli.main(["reproduce", "--profile", "smoke", "-q", "--run-dir", str(out), "--train-seeds", "5,6"]) == 0
    assert seen == [(out, ""), (out / "train-seeds" / "seed-5", "seed=5"), (out / "train-seeds" / "seed-6", "seed=6")]
    pooled = json.loads((out / "training_seeds.json").read_text(encoding="utf-8"))
    assert pooled["meta"]["train_seeds"] == [5, 6, 1234]
    assert "training_seeds.md" in capsys.readouterr().out
    assert cli.main(["reproduce", "--profile", "smoke", "-q", "--run-dir", str(out), "--train-seeds", "x"]) == 2
    assert "--train-seeds: 'x'" in capsys.readouterr().err


def test_a_run_without_some_systems_is_pooled_over_the_runs_that_have_them(tmp_path, capsys):
    """scripts/pool_seeds.py: the main run (first) holds fBasic, the seed runs do not; fBasic's rows come from the
    main run alone (n_runs 1) and the report says which seeds hold it; bad arguments stop with one line."""
    spec = importlib.util.spec_from_file_location("pool_seeds", repo_root() / "scripts" / "pool_seeds.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    runs = {
        1234: {("aus", "keyword_rate"): [0.5, 0.6], ("fbasic", "keyword_rate"): [0.2, 0.3]},
        1235: {("aus", "keyword_rate"): [0.4, 0.5]},
        1236: {("aus", "keyword_rate"): [0.3, 0.4]},
    }
    for seed, values in runs.items():
        (tmp_path / str(seed)).mkdir()
        (tmp_path / str(seed) / "results.json").write_text(json.dumps(_results(values)), encoding="utf-8")
    assert script.main([f"{s}={tmp_path / str(s)}" for s in runs]) == 0
    pooled = json.loads((tmp_path / "1234" / "training_seeds.json").read_text(encoding="utf-8"))
    rows = {(r["system"], r["metric"]): r for r in pooled["summary"]}
    assert rows[("aus", "keyword_rate")]["mean"] == pytest.approx(0.45) and rows[("aus", "keyword_rate")]["n_runs"] == 3
    assert rows[("fbasic", "keyword_rate")]["mean"] == pytest.approx(0.25)
    assert rows[("fbasic", "keyword_rate")]["n_runs"] == 1
    assert pooled["meta"]["train_seeds"] == [1234, 1235, 1236] and pooled["meta"]["main_seed"] == 1234
    md = (tmp_path / "1234" / "training_seeds.md").read_text(encoding="utf-8")
    assert "Not every run holds every system (fbasic: seed 1234)" in md
    assert "evaluated over its generation seeds (1, 2);" in md  # the same in every run here
    assert "pool_seeds: wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="not distinct"):
        script.main([f"1234={tmp_path / '1234'}", f"1234={tmp_path / '1235'}"])
    with pytest.raises(SystemExit, match=r"no evaluation results at .*nowhere"):
        script.main([f"1234={tmp_path / '1234'}", f"7={tmp_path / 'nowhere'}"])
    with pytest.raises(SystemExit):  # argparse: "'x' is not SEED=RUN_FOLDER"
        script.main(["x"])
    assert "is not SEED=RUN_FOLDER" in capsys.readouterr().err


def test_readme_profile_comparison_adds_the_long_profiles_training_seeds(tmp_path):
    """The long section gains a pooled column, the per-seed table and the note on which seeds hold each system once
    the long run has a training_seeds.json; without it, the long column says it is one training seed."""
    spec = importlib.util.spec_from_file_location("readme", repo_root() / "scripts" / "update_readme_results.py")
    assert spec is not None and spec.loader is not None
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    main, long = tmp_path / "tutorial", tmp_path / "long"
    for run, rate in ((main, 0.5), (long, 0.6)):
        run.mkdir()
        (run / "results.json").write_text(json.dumps(_results({("aus", "keyword_rate"): [rate, rate]})))
    assert "| long, seed 1234 (one training seed) |" in readme.long_block(main, long)
    runs = {1234: long, 1235: tmp_path / "s1235"}
    runs[1235].mkdir()
    values = {("aus", "keyword_rate"): [0.4, 0.4], ("igs", "keyword_rate"): [0.3, 0.3]}
    (runs[1235] / "results.json").write_text(json.dumps(_results(values)))
    write_seed_report({s: json.loads((r / "results.json").read_text()) for s, r in runs.items()}, long, main=1234)
    text = readme.long_block(main, long)
    assert "| long, seed 1234 | long, training seeds 1234, 1235 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| 1235 |"))
    assert "| 0.400 |" in row  # the seed run's AUS keyword rate in the per-seed table
    assert "Not every run holds every system (igs: seed 1235)" in text
    assert text.endswith(readme.LONG_END)


def test_the_seed_report_names_each_runs_generation_seeds_when_they_differ():
    one, two = _results({("aus", "keyword_rate"): [0.5, 0.6]}), _results({("aus", "keyword_rate"): [0.4]})
    two["meta"] = {**two["meta"], "seeds": [1]}
    md = "\n".join(seed_report_markdown(pooled_results({1234: one, 1235: two})))
    assert "evaluated over its generation seeds (training seed 1234: 1, 2; training seed 1235: 1);" in md
