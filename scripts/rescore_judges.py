"""Score the factor control of runs' stored poems again with the profile's current judges, generating nothing.

The judges decide only the factor-control metrics and the judges' ceiling; every other number of an evaluation
depends on the poems, the character LM and the keywords alone. When the judges change (``eval.judge_kind``,
docs/experiments.md §19), the committed runs that cannot be re-run in a session — further training seeds, the
long profile — keep their poems (``eval/poems/``) and are re-scored here: ``results.json``, ``results.csv`` and
``eval/scores.csv`` are rewritten with the new factor-control rows and ceiling, the other rows kept as they were;
a run folder with a ``state.json`` (a ``mixpoet reproduce`` run) also gets its ``report.md`` rewritten. Its executed
notebooks are not re-run: their factor-control cells still show the judges they ran with.

Usage::

    python scripts/rescore_judges.py runs/long runs/long/train-seeds/seed-1235 --profile long

The judges are the profile's (published weights whose key matches, else trained into the first run folder, as
notebook 05 would). Prints each system's living / era accuracy before → after.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixpoet_lib.config import FACTOR_NAMES
from mixpoet_lib.evaluate import evaluation, report
from mixpoet_lib.notebook import setup
from mixpoet_lib.run_report import rewrite_report
from mixpoet_lib.train import judges

NOTEBOOK_SEED = 1234  # notebook 05's SEED parameter (the judges of the n-gram kind do not depend on it)


def _accuracies(result: evaluation.EvaluationResult) -> dict[str, tuple[float, ...]]:
    summary = result.summary().set_index(["system", "metric"])["mean"]
    systems = sorted({s for s, m in summary.index if m == "living_acc" and summary[(s, m)] == summary[(s, m)]})
    return {s: tuple(round(float(summary[(s, f"{f}_acc")]), 3) for f in FACTOR_NAMES) for s in systems}


def rescore(run: Path, judge_models: dict[str, judges.Judge]) -> dict[str, tuple[float, ...]]:
    """Rewrite one run folder's results with ``judge_models``; return {system: (living, era) accuracy} after."""
    before = report.load_evaluation(run)
    after = evaluation.rejudge(before, judge_models)
    report.write_results(after, run)
    rewrite_report(run, before.meta["profile"])
    old, new = _accuracies(before), _accuracies(after)
    for system, acc in new.items():
        print(f"{run}: {system} living / era accuracy {old.get(system)} → {acc}")
    return new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders holding results.json and eval/poems")
    ap.add_argument("--profile", default="tutorial")
    ap.add_argument("--set", default="", help="settings overrides (as the runs were evaluated with)")
    a = ap.parse_args(argv)
    profile, data = setup(a.profile, NOTEBOOK_SEED, a.set)
    if data is None:
        raise SystemExit("rescore_judges: the data could not be prepared")
    judge_models = judges.ensure_judges(data, profile, a.runs[0], published=True, log=print)
    for run in a.runs:
        try:
            rescore(run, judge_models)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise SystemExit(f"rescore_judges: {run}: {exc}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
