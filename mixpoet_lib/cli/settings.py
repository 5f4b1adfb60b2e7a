"""Options every ``mixpoet`` command shares: ``--profile`` and ``--set KEY=VALUE`` overrides of any setting."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mixpoet_lib.config import PROFILES, Profile, get_profile
from mixpoet_lib.overrides import parse_overrides, run_name
from mixpoet_lib.paths import runs_dir

SET_HELP = (
    "change settings of the profile: dotted names with JSON values, comma-separated or repeated, "
    "e.g. --set model.latent_size=64,train.ndis=5"
)


def add_profile_options(p: argparse.ArgumentParser, profile_help: str | None = None) -> None:
    """Add ``--profile`` and ``--set`` to a sub-command's parser."""
    p.add_argument(
        "--profile", choices=PROFILES, help=profile_help or "settings profile (default: $MIXPOET_PROFILE or tutorial)"
    )
    add_set_option(p)


def add_set_option(p: argparse.ArgumentParser, help_: str = SET_HELP) -> None:
    """Add the repeatable ``--set KEY=VALUE[,KEY=VALUE]`` option (collected in ``args.set``)."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]", help=help_)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--set`` options as ``{dotted key: value}`` (later options win)."""
    return parse_overrides(getattr(args, "set", None) or [])


def profile_from_args(args: argparse.Namespace, name: str | None = None) -> Profile:
    """The profile named by ``--profile`` (or ``name``), with the ``--set`` overrides applied."""
    return get_profile(name or getattr(args, "profile", None), overrides_from_args(args))


def default_run_dir(args: argparse.Namespace, profile: Profile) -> Path:
    """``--run-dir`` if given, else ``runs/<profile>``, or ``runs/<profile>-<digest>`` when ``--set`` changed
    settings (see :func:`mixpoet_lib.overrides.run_name`)."""
    given = getattr(args, "run_dir", None)
    return Path(given) if given else runs_dir(run_name(profile.name, overrides_from_args(args)))
