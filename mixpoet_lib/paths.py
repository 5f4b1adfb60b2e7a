"""Where things live: repository root, data, mirror, figures and runs folders (all overridable)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA_DIR = "MIXPOET_DATA_DIR"
ENV_MIRROR = "MIXPOET_MIRROR"
ENV_PROFILE = "MIXPOET_PROFILE"
ENV_FONT = "MIXPOET_CJK_FONT"
ENV_FIGURES = "MIXPOET_FIGURES_DIR"


def repo_root() -> Path:
    """Return the kit's root folder (the one holding pyproject.toml), independent of the cwd."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent, *here.parents):
        if (cand / "pyproject.toml").exists() and (cand / "mixpoet_lib").is_dir():
            return cand
    return Path.cwd()


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Return the data folder: the argument, else $MIXPOET_DATA_DIR, else <repo>/data."""
    value = override or os.environ.get(ENV_DATA_DIR)
    return Path(value).expanduser().resolve() if value else repo_root() / "data"


def raw_dir(data: Path | None = None) -> Path:
    """Return the folder the raw downloads are stored in (``<data>/raw``)."""
    return (data or data_dir()) / "raw"


def processed_dir(data: Path | None = None) -> Path:
    """Return the folder of processed, cache-keyed datasets (``<data>/processed``)."""
    return (data or data_dir()) / "processed"


def mirror_dir(override: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the local mirror folder of raw files (argument, else $MIXPOET_MIRROR), or None."""
    value = override or os.environ.get(ENV_MIRROR)
    return Path(value).expanduser().resolve() if value else None


def figures_dir(profile: str = "tutorial") -> Path:
    """Return where a profile's figures go (created): $MIXPOET_FIGURES_DIR when set (``mixpoet reproduce`` sets
    it to the user's run folder), else <repo>/figures for the published tutorial run, else figures/<profile>."""
    value = os.environ.get(ENV_FIGURES)
    if value:
        path = Path(value).expanduser().resolve()
    else:
        path = repo_root() / "figures" if profile == "tutorial" else repo_root() / "figures" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir(profile: str) -> Path:
    """Return <repo>/runs/<profile>, created if missing."""
    path = repo_root() / "runs" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_path(name: str) -> Path:
    """Return <repo>/runs/<name> without creating it."""
    return repo_root() / "runs" / name
