"""The ``mixpoet`` command: one parser, each sub-command registered by its own module of :mod:`mixpoet_lib.cli`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mixpoet_lib.cli import bench as cmd_bench
from mixpoet_lib.cli import classify as cmd_classify
from mixpoet_lib.cli import data as cmd_data
from mixpoet_lib.cli import generate as cmd_generate
from mixpoet_lib.cli import human_eval as cmd_human_eval
from mixpoet_lib.cli import publish as cmd_publish
from mixpoet_lib.cli import reproduce as cmd_reproduce
from mixpoet_lib.cli import train as cmd_train
from mixpoet_lib.data.corpora import DataFormatError
from mixpoet_lib.data.fetch import FetchError


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``mixpoet`` command."""
    parser = argparse.ArgumentParser(prog="mixpoet", description="MixPoet tutorial and reproduction kit")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (
        cmd_data,
        cmd_reproduce,
        cmd_train,
        cmd_generate,
        cmd_classify,
        cmd_human_eval,
        cmd_bench,
        cmd_publish,
    ):
        module.register(sub)  # each adds its own sub-command(s)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse arguments, run the sub-command, turn known errors into one-line messages."""
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
