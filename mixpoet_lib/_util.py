"""Small helpers every chapter uses, defined once: atomic writes, digests, seeds, the device, JSON-safe settings.

Nothing here knows about poems or models; every other module may import it, it imports no module of the kit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

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


def first_line(exc: BaseException) -> str:
    """``'TypeName: first line of the message'`` for one-line error reports."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def progress_bar(iterable: Any = None, *, progress: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar that ``progress=False`` switches off; otherwise tqdm itself honours ``$TQDM_DISABLE``.

    (Passing ``disable=False`` explicitly would override the environment variable, so it is left out.)
    """
    return tqdm(iterable, **kwargs, **({} if progress else {"disable": True}))
