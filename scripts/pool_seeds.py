"""Pool a main run with further training-seed runs into ``training_seeds.md`` / ``.json`` of the main run.

``mixpoet reproduce --train-seeds`` does this itself for whole runs. This script is for seed runs made another way,
e.g. only the models whose claims need the spread, trained with ``mixpoet train --set seed=S`` and scored with
``scripts/evaluate_run.py --results``; a system that a seed run lacks is pooled over the runs that have it, and
``training_seeds.md`` says which runs hold each system.

Usage::

    python scripts/pool_seeds.py 1234=runs/long 1235=/tmp/L1235/run 1236=/tmp/L1236/run

The first run is the main one: the report goes into its folder and its seed heads the tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixpoet_lib.evaluate.report import load_results
from mixpoet_lib.evaluate.seeds import write_seed_report


def seed_folder(text: str) -> tuple[int, Path]:
    """``1235=/path/run`` → (1235, Path); one line naming the bad value otherwise."""
    seed, sep, folder = text.partition("=")
    if not sep or not seed.strip().isdigit() or not folder:
        raise argparse.ArgumentTypeError(f"{text!r} is not SEED=RUN_FOLDER")
    return int(seed), Path(folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=seed_folder, help="SEED=RUN_FOLDER of each training seed, main run first")
    args = ap.parse_args(argv)
    seeds = [s for s, _ in args.runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"pool_seeds: training seeds {seeds} are not distinct")
    try:
        results = {s: load_results(folder) for s, folder in args.runs}
        paths = write_seed_report(results, args.runs[0][1], seeds[0])
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"pool_seeds: {exc}") from None
    print(f"pool_seeds: wrote {paths['md']} and {paths['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
