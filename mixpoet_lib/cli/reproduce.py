"""``mixpoet reproduce``: run every notebook with papermill into a run folder and write the report.

A user's run goes to ``runs/<profile>-local/`` (not tracked by git; figures inside it) and its report compares
it with the committed reference run ``runs/<profile>/``; ``--reference`` regenerates that reference instead.
While a notebook executes, one status line shows the notebook, the cell, and the training phase, step, loss
and time left (see :mod:`mixpoet_lib.cli.live`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mixpoet_lib._util import FolderLock, default_device
from mixpoet_lib.cli.live import LiveStatus
from mixpoet_lib.cli.settings import add_profile_options, overrides_from_args
from mixpoet_lib.config import get_profile
from mixpoet_lib.evaluate.report import load_results
from mixpoet_lib.evaluate.seeds import write_seed_report
from mixpoet_lib.overrides import format_overrides
from mixpoet_lib.pipeline import (
    PipelineError,
    PipelineInterrupted,
    default_profile_name,
    local_run_dir,
    reference_dir,
    run_pipeline,
)
from mixpoet_lib.runtime import auto_threads, bf16_choice


def _run_dir(args: argparse.Namespace, profile: str, overrides: str) -> Path:
    """``--run-dir``, else the reference folder with ``--reference``, else the user's local run folder."""
    if args.run_dir:
        return Path(args.run_dir).expanduser().resolve()
    return reference_dir(profile, overrides) if args.reference else local_run_dir(profile, overrides)


def train_seeds(text: str | None, profile_seed: int) -> list[int]:
    """``--train-seeds 1234,1235,1236`` → the seeds in order, the profile's own first (its run is the main one);
    one line naming the bad value otherwise."""
    if not text:
        return [profile_seed]
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--train-seeds: {text!r} is not a comma-separated list of integers") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"--train-seeds: {text!r} must name distinct seeds")
    return [profile_seed] + [s for s in seeds if s != profile_seed]


def seed_run(out: Path, overrides: str, seed: int, profile_seed: int) -> tuple[Path, str]:
    """Run folder and overrides of one training seed: the profile's seed is the main run itself; another seed
    runs in ``<main run>/train-seeds/seed-<seed>/`` with ``seed=<seed>`` added to the overrides."""
    if seed == profile_seed:
        return out, overrides
    return out / "train-seeds" / f"seed-{seed}", ",".join(filter(None, [overrides, f"seed={seed}"]))


def _run(args: argparse.Namespace, name: str, overrides: str, out: Path) -> int:
    """One pipeline run into ``out`` (the status line unless ``--quiet``); the exit code."""
    t0 = time.perf_counter()
    live = None if args.quiet else LiveStatus(out, sys.stderr, get_profile(name, overrides))
    try:
        with FolderLock(out):  # the notebooks' training (child processes) inherits the lock
            runs = run_pipeline(
                name,
                force=args.force,
                out_dir=out,
                progress=not args.quiet,
                overrides=overrides,
                watch=live.watch if live is not None else None,
            )
    except PipelineInterrupted as exc:
        print(f"mixpoet: reproduce {exc}; run the command again to continue", file=sys.stderr)
        return 130
    except PipelineError as exc:
        print(f"mixpoet: reproduce stopped: {exc}", file=sys.stderr)
        return 1
    ran = sum(r.status == "ran" for r in runs)
    print(
        f"{ran} notebook(s) executed, {len(runs) - ran} unchanged, in {time.perf_counter() - t0:.0f} s; "
        f"report: {out / 'report.md'}"
    )
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    overrides = format_overrides(overrides_from_args(args))
    name = args.profile or default_profile_name()  # $MIXPOET_PROFILE counts, as for every command
    profile = get_profile(name, overrides)  # bad --set values fail here, in one line
    try:
        seeds = train_seeds(args.train_seeds, profile.seed)
    except ValueError as exc:
        print(f"mixpoet: {exc}", file=sys.stderr)
        return 2
    out = _run_dir(args, name, overrides)
    threads, why = auto_threads(profile.train.num_threads)
    print(f"profile {name} → {out}; training will use {threads} torch thread(s) ({why}; re-checked per notebook)")
    bf16, bf16_why = bf16_choice(profile.train.amp_bf16, default_device().type)
    print(f"bf16 autocast {'on' if bf16 else 'off'} ({bf16_why})")
    folders = {}
    for seed in seeds:
        folders[seed], seed_overrides = seed_run(out, overrides, seed, profile.seed)
        if len(seeds) > 1:
            print(f"training seed {seed} → {folders[seed]}")
        rc = _run(args, name, seed_overrides, folders[seed])
        if rc:
            return rc
    if len(seeds) > 1:
        paths = write_seed_report({s: load_results(f) for s, f in folders.items()}, out, profile.seed)
        print(f"results over training seeds {seeds}: {paths['md']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mixpoet reproduce``."""
    p = sub.add_parser(
        "reproduce",
        help="run every notebook with papermill into runs/<profile>-local/ and write a report that compares it "
        "with the published run",
    )
    add_profile_options(p, "default: $MIXPOET_PROFILE, else full when CUDA is available, else tutorial")
    p.add_argument("--force", action="store_true", help="re-run notebooks even when their inputs are unchanged")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="run folder (default: runs/<profile>-local, not tracked by git)")
    where.add_argument(
        "--reference",
        action="store_true",
        help="regenerate the committed reference run runs/<profile>/ and its figures (maintainers)",
    )
    p.add_argument(
        "--train-seeds",
        metavar="S1,S2,…",
        help="also train and evaluate with these seeds (each a whole run, in <run>/train-seeds/seed-<S>/) and pool "
        "the results over training × generation seeds into <run>/training_seeds.md (default: the profile's seed only)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no live status line or progress bars")
    p.set_defaults(func=_cmd_reproduce)
