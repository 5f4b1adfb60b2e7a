"""The training logs: one CSV row per step (and per validation), a timing table, a progress bar.

Each phase ``<name>_<phase>`` writes ``<run>/logs/<name>_<phase>.csv`` (one row per optimiser step) and
``<name>_<phase>_valid.csv`` (one row per validation pass); ``timing.csv`` gets one row per call of a phase.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mixpoet_lib._util import default_device, write_text_atomic
from mixpoet_lib.config import Profile, get_profile
from mixpoet_lib.paths import runs_dir

__all__ = ["CsvLog", "format_value", "log_path", "read_log", "append_timing"]

TIMING_COLUMNS = (
    "phase",
    "from_step",
    "to_step",
    "seconds",
    "median_step_s",
    "validation_s",
    "checkpoint_s",
    "threads",
    "device",
    "finished",
)


def format_value(value: Any) -> str:
    """One CSV cell: '' for None and NaN, integers and booleans as integers, floats by repr (exact round trip)."""
    if value is None:
        return ""
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return str(int(value))
    value = float(value)
    return "" if math.isnan(value) else repr(value)


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


class CsvLog:
    """An append-only CSV whose first column is the step; rows past a resumed checkpoint's step are dropped.

    ``add`` queues a row, ``flush`` appends the queued rows (writing the header to a new file).
    """

    def __init__(self, path: Path, columns: Sequence[str]):
        self.path, self.columns = Path(path), ("step", *columns)
        self.pending: list[list[str]] = []

    def reset(self) -> None:
        """Forget queued rows and delete the file (a fresh start of the phase)."""
        self.pending.clear()
        self.path.unlink(missing_ok=True)

    def truncate(self, last_step: int) -> None:
        """Keep only the rows up to ``last_step`` (a file with other columns is deleted)."""
        self.pending.clear()
        if not self.path.exists():
            return
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows or tuple(rows[0]) != self.columns:
            self.path.unlink()
            return
        write_text_atomic(self.path, _csv_text([rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= last_step]))

    def add(self, step: int, row: dict[str, Any]) -> None:
        """Queue the row of ``step`` (missing columns stay empty)."""
        self.pending.append([str(step)] + [format_value(row.get(c)) for c in self.columns[1:]])

    def flush(self) -> None:
        """Append the queued rows to the file."""
        if not self.pending:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(self.columns)
            w.writerows(self.pending)
        self.pending.clear()


def log_path(run_dir: str | os.PathLike[str], name: str, phase: str, valid: bool = False) -> Path:
    """``<run>/logs/<name>_<phase>.csv`` (``_valid.csv`` for the validation log)."""
    return Path(run_dir) / "logs" / f"{name}_{phase}{'_valid' if valid else ''}.csv"


def read_log(
    name: str,
    phase: str,
    profile: str | Profile | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    valid: bool = False,
) -> pd.DataFrame:
    """A phase's per-step log (or, with ``valid``, its validation log) as a DataFrame; default run folder of
    the profile unless ``run_dir``."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    return pd.read_csv(log_path(run_dir if run_dir else runs_dir(prof.name), name, phase, valid))


def append_timing(
    run_dir: Path, key: str, start: int, end: int, seconds: float, steps: list[float], val_s: float, ckpt_s: float
) -> None:
    """Append one row to ``<run>/logs/timing.csv``: steps start..end of phase ``key``, wall times, threads, device."""
    path = Path(run_dir) / "logs" / "timing.csv"
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(TIMING_COLUMNS)
        med = statistics.median(steps) if steps else math.nan
        w.writerow(
            [
                key,
                start,
                end,
                f"{seconds:.2f}",
                f"{med:.4f}",
                f"{val_s:.2f}",
                f"{ckpt_s:.2f}",
                torch.get_num_threads(),
                str(default_device()),
                time.strftime("%Y-%m-%dT%H:%M:%S"),
            ]
        )
