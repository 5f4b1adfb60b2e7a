"""Where and how the kit computes: the device a command asked for, threads chosen from the machine's load, bf16
where the hardware has bf16 units, and denormal flushing for recurrent nets on long inputs.

Like :mod:`mixpoet_lib._util` it knows nothing about poems or models and imports nothing of the kit but it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from mixpoet_lib._util import default_device

__all__ = [
    "resolve_device",
    "flush_denormal",
    "choose_threads",
    "sampled_busy_cores",
    "auto_threads",
    "cpu_identity",
    "speed_flags",
    "processor_summary",
    "bf16_choice",
]

LOAD_WINDOW_S = 60.0  # the window of the 1-minute load average
CPU_SAMPLE_S = 1.0  # how long auto_threads watches the machine's CPU use before training
PROC_STAT_FIELDS = 8  # user nice system idle iowait irq softirq steal (guest time is inside user)
# CPU flags of bf16 matrix units: with them a bf16 matmul ran 3–6× faster than fp32 (Xeon, AMX); without them
# (AVX2-only EPYC) ~100× slower, because torch then emulates bf16 (README, Speed).
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


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


def choose_threads(
    load: float, cores: int, default: int, own_load: float = 0.0, source: str = "load average"
) -> tuple[int, str]:
    """Intra-op threads for training given the machine's load (``source``: what measured it), and why.

    ``own_load`` is this process's share of ``load`` (it is not competition). Threads are the cores left
    free by the other processes (rounded to the nearest whole core), at least 1 and at most ``default``
    (what torch would use): tiny recurrent steps with more threads than free cores stall at every
    parallel barrier (measured 2.7–7.7 s/step instead of 0.4 with one busy core out of two).
    """
    others = max(0.0, load - max(0.0, own_load))
    free = cores - others
    n = max(1, min(default, int(free + 0.5)))
    state = "busy" if n < default else "idle enough"
    return n, f"{source} {load:.2f} on {cores} cores ({others:.2f} from other processes): machine {state}"


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs together since boot, from the first line of /proc/stat (Linux)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1 : PROC_STAT_FIELDS + 1]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def sampled_busy_cores(interval: float = CPU_SAMPLE_S) -> tuple[float, float] | None:
    """(cores busy on the whole machine, cores this process used) over the next ``interval`` seconds, from
    /proc/stat; ``None`` where it cannot be read (not Linux).

    Unlike the 1-minute load average it does not remember processes that have just ended — in ``mixpoet
    reproduce`` the previous notebook's kernel kept one core busy until a moment ago, and the load average
    still counted it as competition for a minute or more, so every notebook trained on one thread — and it
    sees what runs now.
    """
    try:
        busy0, total0 = _cpu_ticks()
        own0, wall0 = os.times(), time.perf_counter()
        time.sleep(interval)
        busy1, total1 = _cpu_ticks()
        own1, wall1 = os.times(), time.perf_counter()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    busy = (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)
    own = (own1.user + own1.system - own0.user - own0.system) / max(wall1 - wall0, 1e-9)
    return busy, max(0.0, own)


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
    """Threads to train with: ``requested`` when > 0, else :func:`choose_threads` on what the machine's CPUs do
    over the next second (:func:`sampled_busy_cores`), or on the load average where that cannot be read."""
    default = torch.get_num_threads()
    if requested > 0:
        return requested, "set in the profile (train.num_threads)"
    if default <= 1:
        return default, "torch's default is one thread here (OMP_NUM_THREADS or a 1-core machine)"
    sampled = sampled_busy_cores()
    if sampled is not None:
        busy, own = sampled
        return choose_threads(busy, os.cpu_count() or 1, default, own, f"CPU use over {CPU_SAMPLE_S:g} s:")
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average (Windows): keep torch's choice
        return default, "no load average on this system: torch's default"
    return choose_threads(load, os.cpu_count() or 1, default, _own_load())


@functools.lru_cache(maxsize=1)
def cpu_identity() -> tuple[str, frozenset[str]]:
    """The processor's model name and its flags, from /proc/cpuinfo or ``lscpu``; where neither answers, the name is
    ``platform.processor()`` (else "unknown") and the flags are empty."""
    text = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    if "flags" not in text:
        try:
            text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "model name(s)") and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model or platform.processor() or "unknown", flags


def speed_flags(flags: frozenset[str]) -> list[str]:
    """The speed-relevant instruction sets among a processor's ``flags``: AVX2, FMA, AVX-512* and AMX*, sorted."""
    return sorted(f for f in flags if f in ("avx2", "fma") or f.startswith(("avx512", "amx")))


def processor_summary() -> str:
    """The processor that ran this, for reports: its model name and speed flags, e.g. "AMD EPYC (avx2, fma)"."""
    model, flags = cpu_identity()
    return f"{model} ({', '.join(speed_flags(flags)) or 'no AVX2'})"


def bf16_choice(setting: str, device_type: str) -> tuple[bool, str]:
    """Whether training runs under bf16 autocast, and why: ``setting`` is ``train.amp_bf16`` ("auto", "on", "off");
    "auto" means on where the hardware computes bf16 fast (a CPU with AMX/AVX512-BF16, a CUDA device with bf16)."""
    if setting in ("on", "off"):
        return setting == "on", f"set in the profile (train.amp_bf16={setting})"
    if device_type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"auto: the CUDA device {'has' if ok else 'lacks'} bf16 support"
    if device_type == "cpu":
        units = sorted(cpu_identity()[1] & BF16_CPU_FLAGS)
        if units:
            return True, f"auto: the CPU has bf16 units ({', '.join(units)})"
        return False, "auto: the CPU has no bf16 units (no amx_bf16/avx512_bf16), where bf16 is slower than fp32"
    return False, f"auto: no bf16 rule for a {device_type} device"
