"""The ``mixpoet`` command: ``mixpoet data fetch|verify|prepare`` (more sub-commands join as the kit grows)."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from mixpoet_lib.cli import bench as cmd_bench
from mixpoet_lib.cli import classify as cmd_classify
from mixpoet_lib.cli import generate as cmd_generate
from mixpoet_lib.cli import publish as cmd_publish
from mixpoet_lib.cli import train as cmd_train
from mixpoet_lib.config import PROFILES, get_profile


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where data lives (default: $MIXPOET_DATA_DIR or <repo>/data)")
    p.add_argument("--mirror", help="local folder mirroring the raw files (default: $MIXPOET_MIRROR); "
                                    "used instead of the network")
    p.add_argument("--profile", choices=PROFILES, help="settings profile (default: $MIXPOET_PROFILE or tutorial)")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from mixpoet_lib.data.dataset import required_files
    from mixpoet_lib.data.fetch import fetch

    files = required_files(get_profile("full" if args.all else args.profile).data)
    t0 = time.perf_counter()
    got = fetch(files, data_dir=args.data_dir, mirror=args.mirror, progress=not args.quiet)
    print(f"{len(got)} raw files present and verified (sha256) in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from mixpoet_lib.data.dataset import required_files
    from mixpoet_lib.data.fetch import verify

    files = required_files(get_profile("full" if args.all else args.profile).data)
    bad = verify(files, data_dir=args.data_dir)
    for name in bad:
        print(f"missing or corrupt: {name}")
    print(f"{len(files) - len(bad)} of {len(files)} raw files verified")
    return 1 if bad else 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from mixpoet_lib.data.dataset import format_summary, prepare

    profile = get_profile(args.profile)
    t0 = time.perf_counter()
    data = prepare(profile, data_dir=args.data_dir, mirror=args.mirror,
                   log=(lambda m: None) if args.quiet else (lambda m: print(f"[data] {m}", flush=True)))
    print(f"profile {profile.name}: dataset {data.root} ready in {time.perf_counter() - t0:.1f} s\n")
    print(format_summary(data.summary))
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from mixpoet_lib.pipeline import PipelineError, run_pipeline

    t0 = time.perf_counter()
    try:
        runs = run_pipeline(args.profile, force=args.force, progress=not args.quiet)
    except PipelineError as exc:
        print(f"mixpoet: reproduce stopped: {exc}", file=sys.stderr)
        return 1
    ran = sum(r.status == "ran" for r in runs)
    print(f"{ran} notebook(s) executed, {len(runs) - ran} unchanged, in {time.perf_counter() - t0:.0f} s; "
          f"report: runs/<profile>/report.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``mixpoet`` command."""
    parser = argparse.ArgumentParser(prog="mixpoet", description="MixPoet tutorial and reproduction kit")
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="download, verify and prepare the corpora").add_subparsers(dest="action", required=True)
    for name, func, help_ in (("fetch", _cmd_fetch, "download (or copy from a mirror) and verify the raw files"),
                              ("verify", _cmd_verify, "check the raw files' sha256 without downloading"),
                              ("prepare", _cmd_prepare, "build (or reuse) the processed dataset and print its summary")):
        p = data.add_parser(name, help=help_)
        _data_args(p)
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        if name != "prepare":
            p.add_argument("--all", action="store_true", help="every data file, whatever the profile")
        p.set_defaults(func=func)
    rep = sub.add_parser("reproduce", help="run every notebook with papermill into runs/<profile>/ and write the report")
    rep.add_argument("--profile", choices=PROFILES, help="default: full when CUDA is available, else tutorial")
    rep.add_argument("--force", action="store_true", help="re-run notebooks even when their inputs are unchanged")
    rep.add_argument("-q", "--quiet", action="store_true", help="no per-cell progress bars")
    rep.set_defaults(func=_cmd_reproduce)
    for module in (cmd_train, cmd_generate, cmd_classify, cmd_bench, cmd_publish):  # each adds its own sub-commands
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse arguments, run the sub-command, turn known errors into one-line messages."""
    from mixpoet_lib.data.corpora import DataFormatError
    from mixpoet_lib.data.fetch import FetchError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FetchError, DataFormatError, ValueError, FileNotFoundError) as exc:
        print(f"mixpoet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mixpoet: interrupted (finished files and caches are kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
