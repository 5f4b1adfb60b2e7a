"""``mixpoet train``: run the training phases of one or more models (resumable; see :mod:`mixpoet_lib.train.loop`)."""

from __future__ import annotations

import argparse
import math
import time

from mixpoet_lib.checkpoints import MODEL_NAMES, PHASES
from mixpoet_lib.cli.settings import add_profile_options, default_run_dir, profile_from_args
from mixpoet_lib.data.corpora import DataFormatError
from mixpoet_lib.data.dataset import prepare
from mixpoet_lib.data.fetch import FetchError
from mixpoet_lib.train.loop import train
from mixpoet_lib.train.phases import phase_plan

DEFAULT_MODELS = ("basic", "cvae", "igs", "aus")


def _cmd_train(args: argparse.Namespace) -> int:
    models = args.models or list(DEFAULT_MODELS)
    phase_plan(models)  # validates the names before any data work (ValueError → one line, exit 1)
    for p in args.phases or ():
        if p not in PHASES:
            raise ValueError(f"unknown phase {p!r}; choose from {', '.join(PHASES)}")
    profile = profile_from_args(args)
    try:
        data = prepare(profile, data_dir=args.data_dir, mirror=args.mirror)
    except (FetchError, DataFormatError, FileNotFoundError, OSError) as exc:
        raise ValueError(
            f"data for profile {profile.name!r} is not available ({exc}); "
            f"run `mixpoet data fetch --profile {profile.name}` or pass --mirror"
        ) from None
    t0 = time.perf_counter()
    results = train(
        models,
        profile,
        data=data,
        run_dir=default_run_dir(args, profile),
        resume=not args.no_resume,
        progress=not args.quiet,
        max_steps=args.max_steps,
        phases=args.phases,
    )
    if not results:
        print(f"nothing to do: no phase of {', '.join(models)} matches {', '.join(args.phases or [])}")
        return 0
    print(f"{'phase':<14}{'steps':>13}{'run':>7}{'s/step':>9}{'seconds':>9}  last validation")
    for key, r in results.items():
        val = ", ".join(
            f"{k[4:]}={v:.4g}" for k, v in list(r.metrics.items())[:4] if isinstance(v, float) and not math.isnan(v)
        )
        sps = "-" if not r.step_seconds else f"{r.seconds_per_step:.3f}"
        print(f"{key:<14}{f'{r.step}/{r.total_steps}':>13}{r.steps_run:>7}{sps:>9}{r.seconds:>9.1f}  {val}")
    print(f"done in {time.perf_counter() - t0:.0f} s; checkpoints in {next(iter(results.values())).checkpoint.parent}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mixpoet train`` to the ``mixpoet`` command."""
    p = subparsers.add_parser(
        "train",
        help="train models phase by phase (DAE, classifiers, basic, fbasic, cvae, igs, aus); "
        "resumes interrupted phases and skips finished ones",
    )
    add_profile_options(p)
    p.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help=f"models to train, with their prerequisite phases: {' '.join(MODEL_NAMES)} "
        f"(default: {' '.join(DEFAULT_MODELS)})",
    )
    p.add_argument(
        "--phases",
        nargs="+",
        metavar="PHASE",
        help=f"run only these phases of the plan ({' '.join(PHASES)}); their upstream checkpoints must exist",
    )
    p.add_argument(
        "--run-dir",
        help="where checkpoints/ and logs/ go (default: runs/<profile>, runs/<profile>-<digest> with --set)",
    )
    p.add_argument("--max-steps", type=int, help="stop every phase after this many steps (a later run continues it)")
    p.add_argument("--no-resume", action="store_true", help="retrain every phase of the plan from scratch")
    p.add_argument("--data-dir", help="where data lives (default: $MIXPOET_DATA_DIR or <repo>/data)")
    p.add_argument("--mirror", help="local folder mirroring the raw files (default: $MIXPOET_MIRROR)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)
