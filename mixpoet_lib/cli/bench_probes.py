"""The instruments of ``mixpoet bench``: matmul peak, FLOP counting, resident-memory sampling, the CPU's
model and instruction sets, and the per-step timer it hands to training as its callback."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from mixpoet_lib.runtime import cpu_identity, speed_flags

__all__ = ["matmul_peak", "flop_counter", "RSSSampler", "cpu_info", "StepTimer"]

SLOW_GFLOPS = 5  # a 256³ matmul below this rate: no fast kernel for the dtype
SLOW_SECONDS = 5  # one timed matmul longer than this: one timing is enough


def matmul_peak(dtype_name: str, n: int = 2048, reps: int = 3) -> float:
    """Measured GFLOP/s of an n×n×n matmul in the given dtype on the current torch threads (best of reps)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    probe = torch.randn(256, 256).to(dtype)
    t0 = time.perf_counter()
    torch.mm(probe, probe)
    rate = 2 * 256**3 / (time.perf_counter() - t0) / 1e9
    if rate < SLOW_GFLOPS:  # no fast kernel for this dtype: a small size will do
        n = 512
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
        if best > SLOW_SECONDS:  # very slow dtype (e.g. bf16 without hardware support): one timing is enough
            break
    return 2 * n**3 / best / 1e9


def flop_counter() -> Any:
    """A dispatch mode summing FLOPs with torch.utils.flop_counter's per-op formulas (matmuls, convs, attention).

    Unlike ``FlopCounterMode`` it keeps no module tracker, whose hooks fail on the scheduled-sampling decoder's
    views; the GRUs decompose into counted matmuls on the CPU.
    """

    class _Counter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            rule = flop_registry.get(func._overloadpacket)
            if rule is not None:
                self.total += int(rule(*args, **kwargs, out_val=out))
            return out

        def get_total_flops(self) -> int:
            """FLOPs counted so far."""
            return self.total

    return _Counter()


class RSSSampler:
    """Background sampler of this process's resident memory (VmRSS), for per-interval peaks."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss_bytes() -> int:
        """Current resident set size in bytes (Linux /proc; 0 elsewhere)."""
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self.rss_bytes()))
            time.sleep(self.period)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        """Largest sample taken between two perf_counter times."""
        vals = [r for t, r in self.samples if start <= t <= end]
        return max(vals) if vals else 0


def cpu_info() -> dict[str, Any]:
    """The processor model and its speed-relevant instruction sets (AVX2, AVX-512*, AMX*), from /proc/cpuinfo
    or ``lscpu``; empty values where neither is available."""
    model, flags = cpu_identity()
    return {"model": model, "flags": speed_flags(flags), "cores": os.cpu_count()}


class StepTimer:
    """The training callback of the bench: per-step wall times, each phase's time span and the FLOPs of
    chosen steps (counted on those steps only, which are then left out of the timings)."""

    def __init__(self, flop_steps: dict[str, int]) -> None:
        self.flop_steps = flop_steps  # "warm", "adv" (AUS mixture phase) and "plain" (every other phase)
        self.times: dict[str, list[tuple[int, float]]] = {}
        self.bounds: dict[str, list[float]] = {}
        self.flops: dict[str, dict[int, int]] = {}
        self._last: float | None = None
        self._counter: Any = None
        self._key: str | None = None

    def __call__(self, key: str, step: int, row: dict) -> None:
        """Record the step that just ended; start a FLOP count if the next step is one to count."""
        now = time.perf_counter()
        if self._counter is not None:  # close the FLOP count of the step that just ended
            self._counter.__exit__(None, None, None)
            self.flops.setdefault(key, {})[step] = self._counter.get_total_flops()
            self._counter = None
        elif self._key == key and self._last is not None:
            self.times.setdefault(key, []).append((step, now - self._last))
        self.bounds.setdefault(key, [now, now])[1] = now
        if self._key != key:
            self.bounds[key][0] = now
        self._key = key
        name = key.rsplit("_", 1)[0]
        at = self.flop_steps
        targets = {at["warm"], at["adv"]} if name.startswith("aus") and key.endswith("c1") else {at["plain"]}
        if step + 1 in targets:
            self._counter = flop_counter()
            self._counter.__enter__()
        self._last = time.perf_counter()
