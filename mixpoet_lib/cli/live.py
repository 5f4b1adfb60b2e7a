"""The live status line of ``mixpoet reproduce``: which notebook and cell, and while a model trains its phase,
step, loss and time left.

Nothing is sent from the notebook's kernel: a thread reads what is on disk anyway — the copy of the notebook
papermill saves at every cell start and end, and the per-step CSV logs the training loop appends to
``<run>/logs/`` — and rewrites one line of the terminal (or, when stderr is not a terminal, prints a plain
line now and then, so that CI logs show progress too).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mixpoet_lib.checkpoints import read_checkpoint
from mixpoet_lib.config import Profile

__all__ = ["PhaseProgress", "tail_row", "latest_phase", "notebook_cells", "format_status", "LiveStatus"]

# Which PhaseConfig of TrainConfig bounds each training phase (its max_steps).
PHASE_SETTINGS = {"dae": "dae", "cl1": "classifier", "cl2": "classifier", "c1": "mixture", "c2": "finetune"}
TAIL_BYTES = 8192  # enough for the last row of any training log
PLAIN_EVERY_S = 60.0  # how often a non-terminal stream gets a status line


@dataclass(frozen=True)
class PhaseProgress:
    """The last logged step of a training phase."""

    key: str  # '<model>_<phase>', e.g. 'shared_dae'
    step: int
    total: int | None  # planned steps, when known
    loss: float | None


def tail_row(path: Path) -> dict[str, str] | None:
    """The last complete row of a CSV log as {column: text}, reading only its header and its last bytes."""
    try:
        with open(path, "rb") as fh:
            header = fh.readline()
            size = fh.seek(0, 2)
            start = max(len(header), size - TAIL_BYTES)
            fh.seek(start)
            pieces = fh.read().split(b"\n")
    except OSError:
        return None
    if start > len(header):  # began in the middle of a row
        pieces = pieces[1:]
    rows = [ln for ln in pieces[:-1] if ln.strip()]  # the piece after the last newline may be half-written
    if not header.strip() or not rows:
        return None
    names = next(csv.reader([header.decode("utf-8", "replace")]))
    values = next(csv.reader([rows[-1].decode("utf-8", "replace")]))
    return dict(zip(names, values)) if len(values) == len(names) else None


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return None
    return None if math.isnan(value) else value


def phase_total(profile: Profile | None, run_dir: Path, key: str) -> int | None:
    """Planned steps of phase ``key``: from its checkpoint when one was written, else the profile's cap."""
    path = run_dir / "checkpoints" / f"{key}.pt"
    if path.exists():
        with contextlib.suppress(Exception):  # being replaced, or not a checkpoint: fall back to the profile
            return int(read_checkpoint(path, mmap=True)["total_steps"])
    phase = PHASE_SETTINGS.get(key.rsplit("_", 1)[-1])
    return getattr(getattr(profile.train, phase), "max_steps", None) if profile and phase else None


def latest_phase(run_dir: Path, since: float, profile: Profile | None = None) -> PhaseProgress | None:
    """The training phase whose per-step log changed last (not before ``since``, a time.time() value)."""
    logs = [
        p
        for p in (run_dir / "logs").glob("*.csv")
        if not p.stem.endswith("_valid") and p.stem != "timing" and p.stat().st_mtime >= since
    ]
    if not logs:
        return None
    newest = max(logs, key=lambda p: p.stat().st_mtime)
    row = tail_row(newest)
    if row is None or not row.get("step", "").isdigit():
        return None
    return PhaseProgress(
        newest.stem, int(row["step"]), phase_total(profile, run_dir, newest.stem), _float(row.get("loss"))
    )


def notebook_cells(path: Path) -> tuple[int, int]:
    """(cells finished, cells in all) of a notebook papermill is executing (0, 0 until it is first saved)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0, 0
    cells = nb.get("cells", [])
    done = sum(c.get("metadata", {}).get("papermill", {}).get("status") == "completed" for c in cells)
    return done, len(cells)


def _clock(seconds: float) -> str:
    """'m:ss' or 'h:mm:ss'."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"  # noqa: PLR2004


def format_status(
    notebook: str,
    cells: tuple[int, int],
    elapsed: float,
    phase: PhaseProgress | None = None,
    seconds_per_step: float | None = None,
    width: int = 120,
) -> str:
    """One status line: notebook, cell counter and elapsed time; then, while a model trains, its phase, step
    (of the planned total), latest loss, speed and time left. Cut to ``width`` characters."""
    done, total = cells
    parts = [f"{notebook} · cell {min(done + 1, total)}/{total}" if total else notebook, _clock(elapsed)]
    if phase is not None:
        train = [f"{phase.key} step {phase.step}" + (f"/{phase.total}" if phase.total else "")]
        if phase.loss is not None:
            train.append(f"loss {phase.loss:.4g}")
        if seconds_per_step:
            train.append(f"{seconds_per_step:.2f} s/step")
        if phase.total and phase.step >= phase.total:
            train.append("done")
        elif phase.total and seconds_per_step:
            train.append(f"ETA {_clock((phase.total - phase.step) * seconds_per_step)}")
        parts.append(" · ".join(train))
    line = " │ ".join(parts)
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


class LiveStatus:
    """Shows :func:`format_status` for the notebook being executed, refreshed every ``interval`` seconds."""

    def __init__(self, run_dir: Path, stream: IO[str], profile: Profile | None = None, interval: float = 1.0) -> None:
        self.run_dir, self.stream, self.profile, self.interval = Path(run_dir), stream, profile, interval
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._seen: dict[str, tuple[tuple[int, float], tuple[int, float]]] = {}  # phase → (step, when) first, latest
        self._last_plain = 0.0

    def speed(self, phase: PhaseProgress, now: float) -> float | None:
        """Seconds per step of ``phase``: from the first step this status saw to the latest step change (so the
        figure does not drift while the notebook does something else after the phase)."""
        first, last = self._seen.setdefault(phase.key, ((phase.step, now), (phase.step, now)))
        if phase.step != last[0]:
            last = (phase.step, now)
            self._seen[phase.key] = (first, last)
        return (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else None

    def line(self, notebook: str, running: Path, started: float, now: float) -> str:
        """The status line for ``notebook`` (executing into ``running``) at time ``now``."""
        phase = latest_phase(self.run_dir, started, self.profile)
        rate = self.speed(phase, now) if phase is not None else None
        width = shutil.get_terminal_size((120, 20)).columns - 1
        return format_status(notebook, notebook_cells(running), now - started, phase, rate, width)

    def show(self, text: str, final: bool = False) -> None:
        """Rewrite the terminal line (a terminal), or print a plain line at most every minute (anything else)."""
        now = time.time()
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final or now - self._last_plain >= PLAIN_EVERY_S:
            self.stream.write(text + "\n")
            self._last_plain = now
        self.stream.flush()

    @contextlib.contextmanager
    def watch(self, notebook: str, running: Path) -> Iterator[None]:
        """Refresh the status in a thread while the block (the notebook's execution) runs."""
        started, stop = time.time(), threading.Event()
        self._last_plain = started  # the "running" line was just printed

        def loop() -> None:
            while not stop.wait(self.interval):
                with contextlib.suppress(Exception):  # a status line must never break the run
                    self.show(self.line(notebook, running, started, time.time()))

        thread = threading.Thread(target=loop, name="mixpoet-live-status", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            if self.tty:  # leave the terminal line empty for the next message
                self.stream.write("\r\033[K")
                self.stream.flush()
