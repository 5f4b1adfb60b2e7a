"""``mixpoet human-eval``: blind rating sheets of a run's evaluation poems, and the scores of returned sheets.

Example::

    mixpoet human-eval export --run-dir runs/tutorial --n 40 --seed 1 --out human_eval/
    # send human_eval/sheet.csv or sheet.html to each rater; keep key.csv to yourself
    mixpoet human-eval score --key human_eval/key.csv alice.csv bob.csv --out human_eval/

See :mod:`mixpoet_lib.evaluate.human` for the design (paired keywords, blind shuffled ids, per-cell checks).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from mixpoet_lib.cli.settings import add_profile_options, default_run_dir, profile_from_args
from mixpoet_lib.evaluate.human import PAPER_KAPPA, ROLES, export_sheet, score_sheets, write_scores
from mixpoet_lib.evaluate.systems import SYSTEMS


def _cmd_export(args: argparse.Namespace) -> int:
    run_dir = default_run_dir(args, profile_from_args(args)) if not args.run_dir else Path(args.run_dir)
    paths = export_sheet(run_dir, args.out, args.n, args.seed, args.systems, args.eval_seed, args.role)
    print(f"rating sheet for the raters: {paths['sheet']} (printable: {paths['html']})")
    print(f"key (ids → systems; keep it away from the raters): {paths['key']}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    scores = score_sheets(args.sheets, args.key)
    raters = scores.ratings["rater"].nunique()
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"{raters} rater(s), {scores.ratings['id'].nunique()} poem(s) rated\n")
        print("mean ± std over poems (a poem's score: the mean over its raters)")
        print(scores.table().to_string(), "\n")
        print("in the paper's Table 3 layout, beside the paper's values")
        print(scores.table3().to_string(), "\n")
        if len(scores.kappa):
            print("quadratic weighted kappa between raters (cells both rated)")
            print(scores.kappa.round(3).to_string(index=False))
            kappa = scores.mean_kappa()
            shown = "—" if math.isnan(kappa) else f"{kappa:.3f}"
            print(f"mean κ (weighted by shared poems): {shown} (paper: {PAPER_KAPPA})")
        else:
            print("quadratic weighted kappa: needs sheets from at least two raters")
    if args.out:
        paths = write_scores(scores, args.out)
        print("written:", ", ".join(str(p) for p in paths.values()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``human-eval export`` and ``human-eval score``."""
    p = sub.add_parser("human-eval", help="blind rating sheets for human raters, and the scores of returned sheets")
    steps = p.add_subparsers(dest="human_command", required=True)
    ex = steps.add_parser("export", help="write sheet.csv, sheet.html and key.csv from a run's evaluation poems")
    add_profile_options(ex, "profile whose run folder holds the poems (default: $MIXPOET_PROFILE or tutorial)")
    ex.add_argument("--run-dir", help="run folder with eval/poems/ (default: runs/<profile>)")
    ex.add_argument("--out", required=True, help="folder for sheet.csv, sheet.html and key.csv")
    ex.add_argument("--n", type=int, default=40, help="poems per system (paper: 40; default 40)")
    ex.add_argument("--seed", type=int, default=0, help="seed of the keyword draw and the shuffle (default 0)")
    ex.add_argument("--systems", nargs="+", choices=SYSTEMS, help="systems on the sheet (default: all with poems)")
    ex.add_argument("--eval-seed", type=int, help="generation seed of the poems (default: the lowest one)")
    ex.add_argument(
        "--role", choices=ROLES, default="inter", help="inter: one poem per keyword; mixture: poems under a mixture"
    )
    ex.set_defaults(func=_cmd_export)
    sc = steps.add_parser("score", help="score returned sheets (one per rater; the file name names the rater)")
    sc.add_argument("sheets", nargs="+", help="the returned sheet.csv files, one per rater")
    sc.add_argument("--key", required=True, help="the key.csv written by `human-eval export`")
    sc.add_argument("--out", help="also write human_means.csv, human_table3.csv and human_kappa.csv here")
    sc.set_defaults(func=_cmd_score)
