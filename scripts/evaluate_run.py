"""Evaluate the trained models of one run folder like notebook 05 and print the mean of every metric per system.

The experiments of ``docs/experiments.md`` train a variant into its own folder (``mixpoet train --run-dir``) and
score it with this script: the same keywords, search, judges and character LM as notebook 05 (published judges
and LM when they match the profile, else trained into the run folder), on the generation seeds given. For the
factor models it also prints :func:`mixpoet_lib.evaluate.analysis.prior_spread` (what moves a prior draw).

Usage::

    mixpoet train --profile tutorial --models aus --set train.mode_seeking_weight=1 --run-dir /tmp/ms
    python scripts/evaluate_run.py /tmp/ms --systems aus --set train.mode_seeking_weight=1 --seeds 1

One JSON object per system on stdout (``--json FILE`` also writes them); a system whose final checkpoint is
missing stops the script with one line naming the file. ``--results`` also writes notebook 05's own files into the
run folder (``results.json``, ``results.csv``, ``eval/scores.csv``), so that a run trained outside ``mixpoet
reproduce`` (e.g. a further training seed of only some models) can be pooled with ``scripts/pool_seeds.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mixpoet_lib.checkpoints import checkpoint_path, final_phase, load_model
from mixpoet_lib.evaluate import analysis, evaluation, report
from mixpoet_lib.evaluate.systems import FACTOR_SYSTEMS, test_items
from mixpoet_lib.notebook import setup
from mixpoet_lib.train import charlm, judges

SPREAD_KEYWORDS = 24  # test keywords of prior_spread (as notebook 04)
SPREAD_DRAWS = 64
NOTEBOOK_SEED = 1234  # notebook 05's SEED parameter


def evaluate_run(
    run_dir: Path,
    systems: list[str],
    profile_name: str,
    overrides: str,
    seeds: tuple[int, ...],
    write_results: bool = False,
) -> dict[str, dict[str, Any]]:
    """{system: {metric: mean over ``seeds``, metric_sd: std over them}} for the final checkpoints of
    ``systems`` in ``run_dir`` (``gt``: the human poems, no checkpoint); ``write_results``: also notebook 05's
    result files in ``run_dir``."""
    profile, data = setup(profile_name, NOTEBOOK_SEED, overrides)
    if data is None:
        raise SystemExit("evaluate_run: the data could not be prepared")
    models = {}
    for system in (s for s in systems if s != "gt"):
        path = checkpoint_path(run_dir, *final_phase(system))
        if not path.is_file():
            raise SystemExit(f"evaluate_run: no final checkpoint {path} for {system!r}; train it first")
        models[system] = load_model(path)
    judge_models = judges.ensure_judges(data, profile, run_dir, published=True)
    lm = charlm.ensure_lm(data, profile, run_dir, published=True)
    result = evaluation.evaluate(profile, data, run_dir, models, judge_models, lm, systems, seeds, progress=False)
    if write_results:
        print(f"evaluate_run: wrote {report.write_results(result, run_dir)['json']}")
    keywords = [it.keyword for it in test_items(data, profile.eval.n_keywords, profile.seed)][:SPREAD_KEYWORDS]
    out = {}
    for system in systems:
        means: dict[str, Any] = result.system_row(system)
        if system in FACTOR_SYSTEMS:
            spread = analysis.prior_spread(models[system], data.vocab, keywords, n=SPREAD_DRAWS)
            means.update({f"prior_spread_{k}": round(v, 2) for k, v in spread.items()})
        out[system] = means
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="the run folder (checkpoints/ of a `mixpoet train --run-dir`)")
    ap.add_argument("--systems", nargs="+", required=True, help="gt basic fbasic cvae igs aus aus_st")
    ap.add_argument("--profile", default="tutorial")
    ap.add_argument("--set", default="", help="the settings the run was trained with (as for mixpoet train)")
    ap.add_argument("--seeds", default="1", help="generation seeds, comma-separated (default 1)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--results", action="store_true", help="also write results.json/.csv into the run folder")
    args = ap.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    out = evaluate_run(args.run_dir, args.systems, args.profile, args.set, seeds, args.results)
    for system, means in out.items():
        print(json.dumps({"system": system, **means}, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
