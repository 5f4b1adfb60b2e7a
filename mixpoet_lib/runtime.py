"""Where and how the kit computes: the device a command asked for, threads chosen from the machine's load, and
denormal flushing for recurrent nets on long inputs.

Like :mod:`mixpoet_lib._util` it knows nothing about poems or models and imports nothing of the kit but it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from mixpoet_lib._util import default_device

__all__ = ["resolve_device", "flush_denormal", "choose_threads", "auto_threads"]

LOAD_WINDOW_S = 60.0  # the window of the 1-minute load average


def resolve_device(name: str | None) -> torch.device:
    """The torch device named ``name`` (None: :func:`default_device`), checked to exist on this machine.

    ValueError (one line) for a name torch does not know or a CUDA/MPS device this machine does not have.
    """
    if name is None or not str(name).strip():
        return default_device()
    try:
        device = torch.device(str(name).strip())
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {name!r}: no CUDA device is available on this machine; use --device cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: MPS is not available on this machine; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported here; use cpu, cuda or cuda:N")
    return device


@contextlib.contextmanager
def flush_denormal() -> Iterator[bool]:
    """Treat denormal floats as zero inside the block (yields whether the CPU supports it).

    Recurrent nets reading long repetitive inputs drift into denormal activations, which the CPU computes
    up to 100× slower; flushing only changes values below ~1.2e-38 to zero. Torch has no getter for the flag, so
    the block restores the default (off).
    """
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        if supported:
            torch.set_flush_denormal(False)


def choose_threads(load: float, cores: int, default: int, own_load: float = 0.0) -> tuple[int, str]:
    """Intra-op threads for training given the 1-minute load average, and why.

    ``own_load`` is this process's share of ``load`` (it is not competition). Threads are the cores left
    free by the other processes (rounded to the nearest whole core), at least 1 and at most ``default``
    (what torch would use): tiny recurrent steps with more threads than free cores stall at every
    parallel barrier (measured 2.7–7.7 s/step instead of 0.4 with one busy core out of two).
    """
    others = max(0.0, load - max(0.0, own_load))
    free = cores - others
    n = max(1, min(default, int(free + 0.5)))
    state = "busy" if n < default else "idle enough"
    return n, f"load average {load:.2f} on {cores} cores ({others:.2f} from other processes): machine {state}"


def _own_load() -> float:
    """This process's estimated part of the 1-minute load average (Linux; 0 where it cannot be read).

    The CPU time it used, spread over its age but at least over the minute the load average looks back on
    (a fresh process adds little to it); for a notebook kernel that just prepared the data this part is not
    competition for the training that follows.
    """
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        age = float(Path("/proc/uptime").read_text().split()[0]) - start
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
    t = os.times()
    return (t.user + t.system) / max(age, LOAD_WINDOW_S)


def auto_threads(requested: int = 0) -> tuple[int, str]:
    """Threads to train with: ``requested`` when > 0, else :func:`choose_threads` on this machine's load."""
    default = torch.get_num_threads()
    if requested > 0:
        return requested, "set in the profile (train.num_threads)"
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average (Windows): keep torch's choice
        return default, "no load average on this system: torch's default"
    return choose_threads(load, os.cpu_count() or 1, default, _own_load())
