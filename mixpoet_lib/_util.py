"""Small helpers every chapter uses, defined once: atomic writes, digests, seeds, the device, JSON-safe settings.

Nothing here knows about poems or models; every other module may import it, it imports no module of the kit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

LOAD_WINDOW_S = 60.0  # the window of the 1-minute load average

__all__ = [
    "atomic_write",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "torch_save_atomic",
    "digest",
    "derived_seed",
    "seed_everything",
    "default_device",
    "resolve_device",
    "flush_denormal",
    "choose_threads",
    "auto_threads",
    "jsonable",
    "first_line",
    "progress_bar",
]


# ----------------------------------------------------------------------------------------------
# atomic writes: bytes go to a temporary file beside the target, which is renamed into place
# ----------------------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then rename it to ``path``.

    A crash (or an exception in ``write``) leaves the old file untouched and removes the temporary one;
    readers never see a half-written file. The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(
    path: str | os.PathLike[str], obj: object, indent: int | None = 1, sort_keys: bool = True
) -> Path:
    """Write ``obj`` as UTF-8 JSON (CJK readable; keys sorted unless ``sort_keys=False``) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent, sort_keys=sort_keys))


def torch_save_atomic(obj: object, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ----------------------------------------------------------------------------------------------
# settings, digests and seeds
# ----------------------------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


def jsonable(obj: Any) -> Any:
    """A JSON round trip of ``obj`` (dataclasses, nested too, become dicts, tuples lists, other objects strings)."""
    return json.loads(json.dumps(_plain(obj) if dataclasses.is_dataclass(obj) else obj, sort_keys=True, default=_plain))


def digest(obj: Any, length: int = 16) -> str:
    """A stable hex digest of any JSON-able object (sha256 of its sorted-key JSON), ``length`` characters."""
    blob = json.dumps(jsonable(obj), sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:length]


def derived_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (the same in every process and Python version)."""
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def default_device() -> torch.device:
    """The CUDA device when one is available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def first_line(exc: BaseException) -> str:
    """``'TypeName: first line of the message'`` for one-line error reports."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def progress_bar(iterable: Any = None, *, progress: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar that ``progress=False`` switches off; otherwise tqdm itself honours ``$TQDM_DISABLE``.

    (Passing ``disable=False`` explicitly would override the environment variable, so it is left out.)
    """
    return tqdm(iterable, **kwargs, **({} if progress else {"disable": True}))
