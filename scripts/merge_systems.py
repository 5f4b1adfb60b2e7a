"""Put some systems' new evaluation into a finished run folder whose other models stay as they were.

When a recipe change re-trains only some models (say CVAE and MixPoet-IGS, docs/experiments.md §20), a committed run
that cannot be re-run whole in a session — a further training seed — gets those models re-trained into a scratch
folder (``mixpoet train --models cvae igs --run-dir SRC``) and evaluated there like notebook 05
(``scripts/evaluate_run.py SRC --systems cvae igs --seeds 1,2,3 --results``). This script then takes those
systems' rows of ``eval/scores.csv``, their poem files and weight digests from SRC into DST, keeps every other
system's rows, and rewrites DST's ``results.json`` / ``results.csv`` (summary, claims, paper side by side) and, for
a ``mixpoet reproduce`` folder, its ``report.md``. Both evaluations must share keywords, generation seeds, judges
and character LM (checked; ``evaluation.replace_systems``). DST's executed notebooks are not re-run.

Usage::

    python scripts/merge_systems.py /tmp/seed-1235 runs/tutorial/train-seeds/seed-1235 --systems cvae igs
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

from mixpoet_lib.evaluate import evaluation, report
from mixpoet_lib.evaluate.systems import DETERMINISTIC, poems_path
from mixpoet_lib.run_report import rewrite_report


def merge(src: Path, dst: Path, systems: list[str]) -> None:
    """Replace ``systems`` of ``dst``'s evaluation with ``src``'s, poem files included."""
    before, new = report.load_evaluation(dst), report.load_evaluation(src)
    merged = evaluation.replace_systems(before, new, systems)
    for system in systems:
        for seed in merged.seeds[:1] if system in DETERMINISTIC else merged.seeds:
            shutil.copyfile(poems_path(src, system, seed), poems_path(dst, system, seed))
    report.write_results(merged, dst)
    rewrite_report(dst, merged.meta["profile"])
    old, now = before.summary().set_index(["system", "metric"]), merged.summary().set_index(["system", "metric"])
    shown = ("intra_jaccard_word", "intra_jaccard_mix_word", "inter_jaccard_word", "keyword_rate", "living_acc")
    for system in systems:
        for metric in (m for m in shown if (system, m) in now.index and (system, m) in old.index):
            was, becomes = old.loc[(system, metric), "mean"], now.loc[(system, metric), "mean"]
            if not (math.isnan(was) and math.isnan(becomes)):  # NaN: a metric that does not apply to the system
                print(f"{dst}: {system} {metric} {was:.3f} → {becomes:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="run folder holding the new evaluation (results.json, eval/)")
    ap.add_argument("dst", type=Path, help="run folder whose systems are replaced")
    ap.add_argument("--systems", nargs="+", required=True, help="the systems to take from SRC, e.g. cvae igs")
    a = ap.parse_args(argv)
    try:
        merge(a.src, a.dst, a.systems)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise SystemExit(f"merge_systems: {exc}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
