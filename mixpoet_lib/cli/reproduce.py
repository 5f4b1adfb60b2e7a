"""``mixpoet reproduce``: run every notebook with papermill into ``runs/<profile>/`` and write the report."""

from __future__ import annotations

import argparse
import sys
import time

from mixpoet_lib._util import FolderLock
from mixpoet_lib.cli.settings import add_profile_options, overrides_from_args
from mixpoet_lib.overrides import format_overrides, run_name
from mixpoet_lib.paths import runs_dir
from mixpoet_lib.pipeline import PipelineError, default_profile_name, run_pipeline


def _cmd_reproduce(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    overrides = format_overrides(overrides_from_args(args))
    out = runs_dir(run_name(args.profile or default_profile_name(), overrides))
    try:
        with FolderLock(out):  # the notebooks' training (child processes) inherits the lock
            runs = run_pipeline(args.profile, force=args.force, progress=not args.quiet, overrides=overrides)
    except PipelineError as exc:
        print(f"mixpoet: reproduce stopped: {exc}", file=sys.stderr)
        return 1
    ran = sum(r.status == "ran" for r in runs)
    print(
        f"{ran} notebook(s) executed, {len(runs) - ran} unchanged, in {time.perf_counter() - t0:.0f} s; "
        f"report: {out / 'report.md'}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mixpoet reproduce``."""
    p = sub.add_parser("reproduce", help="run every notebook with papermill into runs/<profile>/ and write the report")
    add_profile_options(p, "default: full when CUDA is available, else tutorial")
    p.add_argument("--force", action="store_true", help="re-run notebooks even when their inputs are unchanged")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-cell progress bars")
    p.set_defaults(func=_cmd_reproduce)
