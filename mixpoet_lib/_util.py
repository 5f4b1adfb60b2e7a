"""Small helpers every chapter uses, defined once: atomic writes, digests, seeds, the device, JSON-safe settings,
folder locks and the clean-up of temporary files left by killed writers.

Nothing here knows about poems or models; every other module may import it, it imports no module of the kit.

* **Atomic writes** go to ``.<name>.<random>.part`` beside the target and are renamed into place. The writer
  holds an ``flock`` on its temporary file (or folder) while it writes, so :func:`remove_stale_parts` can tell
  the leftovers of a killed writer (nobody holds them) from a write in progress. Written files and folders get
  the ordinary permissions of the process's umask (0644 / 0755 under the usual 022), not the private 0600 / 0700
  of ``tempfile``.
* **Folder locks** (:class:`FolderLock`): ``<folder>/.lock`` is ``flock``-ed for as long as a writer works in the
  folder and names its holder (pid, host, start time, command). The kernel drops the lock when the holder dies,
  so a lock left by a killed process is taken over (with a warning). A process started by the holder (a notebook
  kernel under ``mixpoet reproduce``) inherits the right to work in the folder through ``$MIXPOET_HELD_LOCKS``.
* **Content digests**: :func:`tree_digest` hashes a nested checkpoint payload (tensors by their bytes),
  :func:`sha256_file` a file. :class:`CorruptFileError` is the one-line error for a file whose content does
  not match its digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no advisory locks; folders and temporary files are then unguarded
    fcntl = None  # type: ignore[assignment]

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "atomic_write",
    "atomic_folder",
    "default_mode",
    "remove_stale_parts",
    "FolderLock",
    "FolderBusyError",
    "CorruptFileError",
    "sha256_file",
    "tree_digest",
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


def _umask() -> int:
    """The process's umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The permissions a new file (or folder) gets from ``open`` / ``mkdir`` under the current umask."""
    return (0o777 if folder else 0o666) & ~_umask()


def _try_lock(fd: int) -> bool | None:
    """Take an exclusive ``flock`` on ``fd`` without waiting: True if taken, False if another process holds it,
    None where the system or file system has no such locks."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK on a file system without flock
        return None
    return True


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then rename it to ``path``.

    A crash (or an exception in ``write``) leaves the old file untouched and removes the temporary one;
    readers never see a half-written file. The parent folder is created if needed. The temporary file is
    locked while ``write`` runs (see :func:`remove_stale_parts`) and ends with the umask's permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(name)
    try:
        _try_lock(fd)
        os.fchmod(fd, default_mode())
        write(tmp)
        os.replace(tmp, path)
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)
    return path


def atomic_folder(final: str | os.PathLike[str], fill: Callable[[Path], object]) -> bool:
    """Fill a fresh temporary folder beside ``final`` with ``fill(tmp)``, then rename it to ``final``.

    The temporary folder is locked while ``fill`` runs and gets the umask's permissions. If ``final`` appeared
    meanwhile (another process finished first), theirs is kept and False is returned. An exception removes the
    temporary folder.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part"))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        _try_lock(fd)
        os.chmod(tmp, default_mode(folder=True))
        fill(tmp)
        if final.exists():
            return False
        tmp.rename(final)
        return True
    finally:
        os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_parts(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Delete the ``.*.part`` temporary files and folders under ``folder`` that no live writer holds.

    A writer (:func:`atomic_write`, :func:`atomic_folder`) locks its temporary file while it writes and the
    kernel releases the lock when the writer dies, so what can be locked here was left by a killed process.
    A fresh, empty one (a writer between creating and locking it) is left alone. Files that cannot be removed
    (a read-only folder) are skipped. Returns what was removed.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for part in sorted(root.rglob(".*.part") if recursive else root.glob(".*.part")):
        if not _abandoned(part):
            continue
        try:
            if part.is_dir() and not part.is_symlink():
                shutil.rmtree(part)
            else:
                part.unlink()
        except OSError:
            continue
        removed.append(part)
    return removed


_FRESH_SECONDS = 5.0


def _abandoned(part: Path) -> bool:
    """True if no process holds a lock on ``part`` and it is not a just-created, still empty one."""
    try:
        fd = os.open(part, os.O_RDONLY)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        empty = st.st_size == 0 if not part.is_dir() else not any(part.iterdir())
        if empty and time.time() - st.st_mtime < _FRESH_SECONDS:
            return False
        return _try_lock(fd) is True  # where nothing can be locked, nothing is known to be abandoned
    finally:
        os.close(fd)


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


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(obj: Any) -> str:
    """The hex sha256 of a nested payload: mappings (any key order), lists/tuples, tensors (dtype, shape and raw
    bytes) and plain values (by type and repr).

    A payload saved with ``torch.save`` and read back with ``torch.load(weights_only=True)`` has the same
    digest; any changed value, key or tensor byte gives another one.
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(obj, Mapping):
        h.update(f"M{len(obj)}:".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}:".encode())
        for item in obj:
            _feed(h, item)
    else:
        text = repr(obj)
        h.update(f"{type(obj).__name__}{len(text)}:{text}".encode())


class CorruptFileError(ValueError):
    """A file's content does not match its digest, or it cannot be read at all (one-line message: file, what to do)."""


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


# ----------------------------------------------------------------------------------------------
# one writer per folder
# ----------------------------------------------------------------------------------------------

LOCK_NAME = ".lock"
ENV_HELD_LOCKS = "MIXPOET_HELD_LOCKS"  # {lock path: holder pid} of the locks this process's ancestors hold


class FolderBusyError(ValueError):
    """Another process works in this folder (one-line message naming the holder)."""


def _stderr(message: str) -> None:
    print(f"mixpoet: warning: {message}", file=sys.stderr, flush=True)


def _holder_text(info: dict[str, Any]) -> str:
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} (started {info.get('started', '?')})"


def _ancestors() -> set[int]:
    """The pids of this process's parent, grandparent, … (from /proc; only the parent elsewhere)."""
    found, pid = set(), os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


class FolderLock:
    """``with FolderLock(folder):`` — this process is the folder's only writer until the block ends.

    Raises :class:`FolderBusyError` (naming the holder) when another live process holds it; a lock file left by
    a dead holder is taken over with a warning (``warn``). Re-entrant within a process, and a process whose
    ancestor holds the lock (``$MIXPOET_HELD_LOCKS``) may work in the folder without taking it.
    """

    _held: ClassVar[dict[str, int]] = {}  # lock path -> nesting depth in this process

    def __init__(self, folder: str | os.PathLike[str], warn: Callable[[str], None] = _stderr) -> None:
        self.folder = Path(folder)
        self.path = (self.folder / LOCK_NAME).resolve()
        self.warn = warn
        self._fd: int | None = None

    def _read(self) -> dict[str, Any]:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def _inherited(self) -> bool:
        """True if the holder is an ancestor of this process that passed the lock down through the environment."""
        try:
            held = json.loads(os.environ.get(ENV_HELD_LOCKS, "{}"))
        except ValueError:
            return False
        pid = held.get(str(self.path)) if isinstance(held, dict) else None
        return pid is not None and pid == self._read().get("pid") and pid in _ancestors()

    def _publish(self, add: bool) -> None:
        try:
            held = json.loads(os.environ.get(ENV_HELD_LOCKS, "{}"))
        except ValueError:
            held = {}
        if add:
            held[str(self.path)] = os.getpid()
        else:
            held.pop(str(self.path), None)
        os.environ[ENV_HELD_LOCKS] = json.dumps(held)

    def __enter__(self) -> FolderLock:
        key = str(self.path)
        if key in self._held:
            self._held[key] += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, default_mode())
        if _try_lock(fd) is False:
            os.close(fd)
            if self._inherited():
                return self
            raise FolderBusyError(
                f"{self.folder} is in use by {_holder_text(self._read())}; wait for it to finish or use another folder"
            )
        previous = self._read()
        if previous.get("pid"):
            self.warn(f"taking over the lock of {self.folder} left by {_holder_text(previous)}, which has ended")
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
        self._fd, self._held[key] = fd, 1
        self._publish(add=True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        key = str(self.path)
        if self._fd is None:  # inherited from an ancestor, or nested
            if self._held.get(key, 0) > 1:
                self._held[key] -= 1
            return
        del self._held[key]
        self._publish(add=False)
        os.ftruncate(self._fd, 0)  # an empty lock file: released cleanly (the file stays: no unlink race)
        os.close(self._fd)
        self._fd = None
