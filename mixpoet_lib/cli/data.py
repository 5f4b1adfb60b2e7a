"""``mixpoet data fetch|verify|prepare``: obtain the raw files, check them, build the processed dataset."""

from __future__ import annotations

import argparse
import time

from mixpoet_lib.cli.settings import add_profile_options, profile_from_args
from mixpoet_lib.data.dataset import format_summary, prepare, required_files
from mixpoet_lib.data.fetch import fetch, verify
from mixpoet_lib.data.registry import RawFile


def _wanted_files(args: argparse.Namespace) -> list[RawFile]:
    """The raw files of the chosen profile (``--all``: of the full profile, i.e. every file)."""
    return required_files(profile_from_args(args, "full" if args.all else None).data)


def _cmd_fetch(args: argparse.Namespace) -> int:
    files = _wanted_files(args)
    t0 = time.perf_counter()
    got = fetch(files, data_dir=args.data_dir, mirror=args.mirror, progress=not args.quiet)
    print(f"{len(got)} raw files present and verified (sha256) in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    files = _wanted_files(args)
    bad = verify(files, data_dir=args.data_dir, rehash=True)  # every byte: a stamp cannot see a restored mtime
    for name in bad:
        print(f"missing or corrupt: {name}")
    print(f"{len(files) - len(bad)} of {len(files)} raw files verified")
    return 1 if bad else 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    profile = profile_from_args(args)
    t0 = time.perf_counter()
    data = prepare(
        profile,
        data_dir=args.data_dir,
        mirror=args.mirror,
        log=(lambda m: None) if args.quiet else (lambda m: print(f"[data] {m}", flush=True)),
    )
    print(f"profile {profile.name}: dataset {data.root} ready in {time.perf_counter() - t0:.1f} s\n")
    print(format_summary(data.summary))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mixpoet data`` and its three actions."""
    data = sub.add_parser("data", help="download, verify and prepare the corpora")
    actions = data.add_subparsers(dest="action", required=True)
    for name, func, help_ in (
        ("fetch", _cmd_fetch, "download (or copy from a mirror) and verify the raw files"),
        ("verify", _cmd_verify, "re-hash every raw file (sha256) without downloading"),
        ("prepare", _cmd_prepare, "build (or reuse) the processed dataset and print its summary"),
    ):
        p = actions.add_parser(name, help=help_)
        p.add_argument("--data-dir", help="where data lives (default: $MIXPOET_DATA_DIR or <repo>/data)")
        p.add_argument(
            "--mirror",
            help="local folder mirroring the raw files (default: $MIXPOET_MIRROR); used instead of the network",
        )
        add_profile_options(p)
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        if name != "prepare":
            p.add_argument("--all", action="store_true", help="every data file, whatever the profile")
        p.set_defaults(func=func)
