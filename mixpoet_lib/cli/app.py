"""The ``mixpoet`` command: one parser, each sub-command registered by its own module of :mod:`mixpoet_lib.cli`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from mixpoet_lib._util import first_line
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

ENV_TRACEBACK = "MIXPOET_TRACEBACK"
SIGPIPE = 13  # signal number of a write to a closed pipe (POSIX)


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
    """Entry point: parse arguments, run the sub-command, turn every error into a one-line message.

    Known errors (bad input, missing or unreadable files, failed downloads) print their message; any other
    exception prints its type and first line ($MIXPOET_TRACEBACK=1 shows the full traceback instead). A
    closed output pipe (``mixpoet … | head``) ends the command quietly, as it does for other Unix tools.
    """
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # output still buffered for a reader that went away fails here, not at exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        print("mixpoet: interrupted (finished files and caches are kept)", file=sys.stderr)
        return 130
    except (FetchError, DataFormatError, ValueError, OSError) as exc:
        print(f"mixpoet: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or an unforeseen input: still one line, unless asked for the traceback
        if os.environ.get(ENV_TRACEBACK):
            raise
        hint = f"(set {ENV_TRACEBACK}=1 for the traceback)"
        print(f"mixpoet: error: {_one_line(first_line(exc))} {hint}", file=sys.stderr)
        return 1


def _one_line(text: str) -> str:
    """The message on one line (continuation lines joined with ' | ')."""
    return " | ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def _quiet_broken_pipe() -> int:
    """The reader of standard output went away: point stdout at /dev/null (so the interpreter's final flush
    cannot fail again) and exit with the shell's status for SIGPIPE."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
