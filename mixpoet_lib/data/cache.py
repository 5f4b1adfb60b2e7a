"""The processed caches' integrity: each cache folder's ``manifest.json`` lists the size and sha256 of its files.

:func:`build_cache` fills a folder atomically (:func:`mixpoet_lib._util.atomic_folder`) and ends it with its
manifest; :func:`usable_cache` reuses a folder only when every file it needs still matches, and otherwise removes
it so that it is rebuilt, or, when it cannot be removed (a read-only data folder), raises a one-line
:class:`~mixpoet_lib._util.CorruptFileError` naming the damaged file. :mod:`mixpoet_lib.data.dataset` decides what
goes into each folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mixpoet_lib._util import CorruptFileError, atomic_folder, sha256_file, write_json_atomic

__all__ = ["MANIFEST", "write_manifest", "cache_problem", "usable_cache", "build_cache"]

MANIFEST = "manifest.json"

Log = Callable[[str], None]


def write_manifest(folder: Path) -> Path:
    """Write ``manifest.json``: the size and sha256 of every other file in ``folder``."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    return write_json_atomic(folder / MANIFEST, {"files": files})


def cache_problem(folder: Path, expected: tuple[str, ...]) -> str | None:
    """None if ``folder``'s manifest lists every ``expected`` file and each still has its size and sha256;
    otherwise what is wrong, naming the file."""
    mpath = folder / MANIFEST
    try:
        files = json.loads(mpath.read_text(encoding="utf-8"))["files"]
        listed = {name: (int(files[name]["size"]), str(files[name]["sha256"])) for name in expected}
    except FileNotFoundError:
        return f"{folder.name}/{MANIFEST} is missing (an unfinished or older cache)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{mpath} is unreadable or incomplete ({type(exc).__name__})"
    for name, (size, sha) in listed.items():
        path = folder / name
        try:
            actual = path.stat().st_size
        except OSError:
            return f"{path} is missing"
        if actual != size:
            return f"{path} has {actual} bytes instead of {size}"
        if sha256_file(path) != sha:
            return f"{path} is corrupt (its sha256 differs from the manifest's)"
    return None


def usable_cache(root: Path, expected: tuple[str, ...], what: str, log: Log) -> bool:
    """True if the cached stage at ``root`` passes its manifest; a damaged one is removed (False)."""
    if not root.exists():
        return False
    problem = cache_problem(root, expected)
    if problem is None:
        log(f"{what} cache hit: {root.name}")
        return True
    log(f"{problem}; rebuilding {root.name}")
    aside = root.with_name(f".{root.name}.{os.getpid()}.damaged.part")  # removed now, or by the next clean-up
    try:
        root.rename(aside)
    except FileNotFoundError:  # another process removed it first
        return False
    except OSError as exc:
        raise CorruptFileError(
            f"processed cache damaged: {problem}; it cannot be rebuilt here ({exc.strerror}): "
            f"delete {root} or make {root.parent} writable"
        ) from None
    shutil.rmtree(aside, ignore_errors=True)
    return False


def build_cache(root: Path, fill: Callable[[Path], None]) -> None:
    """Build a cache folder atomically, ending with its manifest; a read-only data folder gives a one-line error."""

    def fill_and_list(tmp: Path) -> None:
        fill(tmp)
        write_manifest(tmp)

    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(root.parent, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        raise ValueError(
            f"cannot build the processed cache {root.name}: {root.parent} is not writable "
            "(a read-only data folder?); make it writable or pass another --data-dir"
        )
    atomic_folder(root, fill_and_list)
