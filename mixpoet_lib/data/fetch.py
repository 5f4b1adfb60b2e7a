"""Fetch raw data files into ``<data>/raw``, from a local mirror or their public URLs, verified by sha256.

A file is only ever named as the real one after its size and sha256 matched: bytes are hashed while
they stream into a temporary file beside the target (:func:`mixpoet_lib._util.atomic_write`), which is
renamed into place only when both checks pass. Verified files are remembered in
``<data>/raw/.verified.json`` (size, mtime_ns, sha256 per name), so a rerun of :func:`fetch` skips them
without re-hashing; :func:`verify` (``mixpoet data verify``) re-hashes by default, because a stamp cannot tell
a flipped byte whose file got its old mtime back. In a read-only data folder the stamps are simply not written.
Temporary files of a killed fetch (``.<name>.*.part``) are removed by the next one.

Source order: the ``mirror`` argument, else ``base_url``, else ``$MIXPOET_MIRROR``, else the
registry URL (raw.githubusercontent.com at the pinned commit).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from tqdm.auto import tqdm

from mixpoet_lib import paths
from mixpoet_lib._util import atomic_write, progress_bar, remove_stale_parts, sha256_file, write_json_atomic
from mixpoet_lib.data.registry import RawFile, get, select

STAMP_NAME = ".verified.json"
CHUNK = 1 << 16
RETRY_DELAY = 1.0  # seconds before the first retry; doubled for each further one
USER_AGENT = "mixpoet-kit/0.1 (raw data fetch)"
HTTP_SERVER_ERROR = 500  # below it (client errors) a retry cannot help, except on 408 / 429

FileSpec = RawFile | str


class FetchError(RuntimeError):
    """A raw file could not be obtained or did not verify (one-line message: file, source, reason)."""


class _Transient(Exception):
    """Internal: a failure worth retrying (the message is the reason)."""


def _fail(what: str, f: RawFile, source: object, detail: str = "") -> FetchError:
    return FetchError(f"{what} for {f.name} from {source}" + (f": {detail}" if detail else ""))


def _resolve(files: Iterable[FileSpec] | None) -> list[RawFile]:
    return select() if files is None else [get(f) if isinstance(f, str) else f for f in files]


def raw_path(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return where the raw file of this name lives: ``<data>/raw/<name>``."""
    return paths.raw_dir(paths.data_dir(data_dir)) / name


class _Stamps:
    """The ``.verified.json`` cache: name -> {size, mtime_ns, sha256} of a file that hashed right."""

    def __init__(self, raw: Path) -> None:
        self.path = raw / STAMP_NAME
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            self.data: dict[str, dict] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    @staticmethod
    def _key(f: RawFile, st: os.stat_result) -> dict:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": f.sha256}

    def is_valid(self, f: RawFile, path: Path, rehash: bool = False) -> bool:
        """Whether ``path`` holds ``f`` (trusting a matching stamp unless ``rehash``); stamps are updated."""
        try:
            st = path.stat()
        except OSError:
            return False
        key = self._key(f, st)
        if st.st_size == f.size and not rehash and self.data.get(f.name) == key:
            return True
        if st.st_size == f.size and sha256_file(path) == f.sha256:
            self.data[f.name] = key
            self.dirty = True
            return True
        self.dirty |= self.data.pop(f.name, None) is not None
        return False

    def record(self, f: RawFile, path: Path) -> None:
        """Stamp a file that was just written and verified."""
        self.data[f.name] = self._key(f, path.stat())
        self.dirty = True

    def save(self) -> None:
        """Write the stamps back (atomically) if they changed and the folder is writable (else carry on: they
        only save time)."""
        if not self.dirty or not os.access(self.path.parent, os.W_OK):
            return
        try:
            write_json_atomic(self.path, self.data, indent=0)
        except OSError:
            return
        self.dirty = False


def _write(f: RawFile, stream: BinaryIO, dest: Path, source: object, bar: tqdm) -> None:
    """Stream into a temp file beside ``dest``, hashing; it becomes ``dest`` only if size and sha256 match."""
    count = 0

    def copy_and_check(tmp: Path) -> None:
        nonlocal count
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            while chunk := stream.read(CHUNK):
                count += len(chunk)
                if count > f.size:
                    raise _fail("size mismatch", f, source, f"more than the expected {f.size} bytes")
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
        if count < f.size:
            raise _Transient(f"connection dropped after {count} of {f.size} bytes")
        if digest.hexdigest() != f.sha256:
            raise _fail("sha256 mismatch", f, source, f"expected {f.sha256}, got {digest.hexdigest()}")

    try:
        atomic_write(dest, copy_and_check)  # an exception in the check removes the temp file, dest untouched
    except BaseException:
        bar.update(-count)
        raise


def _from_mirror(f: RawFile, src: Path, dest: Path, bar: tqdm) -> None:
    try:
        size = src.stat().st_size
    except FileNotFoundError:
        raise _fail("missing mirror file", f, src) from None
    if size != f.size:
        raise _fail("size mismatch", f, src, f"expected {f.size} bytes, got {size}")
    try:
        with open(src, "rb") as stream:
            _write(f, stream, dest, src, bar)
    except _Transient as exc:  # the mirror file changed while we read it
        raise _fail("short read", f, src, str(exc)) from None
    except OSError as exc:
        raise _fail("copy failed", f, src, str(exc)) from None


def _from_url(f: RawFile, url: str, dest: Path, bar: tqdm, timeout: float, retries: int) -> None:
    attempts = max(retries, 0) + 1
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) != f.size:
                    raise _fail("size mismatch", f, url, f"server sends {length} bytes, expected {f.size}")
                _write(f, response, dest, url, bar)
            return
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = f"HTTP {exc.code} {exc.reason}"
            if exc.code < HTTP_SERVER_ERROR and exc.code not in (408, 429):
                raise _fail(reason, f, url) from None
        except _Transient as exc:
            reason = str(exc)
        except urllib.error.URLError as exc:
            reason = f"network error ({exc.reason})"
        except (OSError, http.client.HTTPException) as exc:
            reason = f"network error ({type(exc).__name__}: {exc})"
        if attempt < attempts:
            time.sleep(RETRY_DELAY * 2 ** (attempt - 1))
    raise _fail(reason, f, url, f"gave up after {attempts} attempt{'s' * (attempts > 1)}")


def _mirror_root(mirror: str | os.PathLike[str] | None, base_url: str | None) -> Path | None:
    """Return the mirror's raw folder (argument, else $MIXPOET_MIRROR unless base_url is given)."""
    root = paths.mirror_dir(mirror) if mirror is not None or base_url is None else None
    if root is None:
        return None
    if not root.is_dir():
        raise FetchError(f"mirror folder {root} does not exist")
    return root / "raw" if (root / "raw").is_dir() else root  # accept shared/data as well as its raw/


def fetch(
    files: Sequence[FileSpec] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 60,
    retries: int = 2,
    rehash: bool = False,
) -> dict[str, Path]:
    """Make sure each file (default: all) is in ``<data>/raw`` and verified; return name -> path.

    ``rehash``: hash every present file instead of trusting its stamp.
    """
    wanted = _resolve(files)
    raw = paths.raw_dir(paths.data_dir(data_dir))
    root = _mirror_root(mirror, base_url)
    remove_stale_parts(raw, recursive=True)
    stamps = _Stamps(raw)
    out = {f.name: raw / f.name for f in wanted}
    todo = [f for f in wanted if not stamps.is_valid(f, out[f.name], rehash)]
    try:
        if todo:
            with progress_bar(
                total=sum(f.size for f in todo),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"raw data ({len(todo)} file{'s' * (len(todo) > 1)})",
                progress=progress,
            ) as bar:
                for f in todo:
                    dest = out[f.name]
                    if root is not None:
                        _from_mirror(f, root / f.name, dest, bar)
                    else:
                        url = f"{base_url.rstrip('/')}/{quote(f.name)}" if base_url else f.url
                        _from_url(f, url, dest, bar, timeout, retries)
                    stamps.record(f, dest)
    finally:
        stamps.save()
    return out


def verify(
    files: Sequence[FileSpec] | None = None, data_dir: str | os.PathLike[str] | None = None, rehash: bool = True
) -> list[str]:
    """Return the names of the files (default: all) that are missing or corrupt in ``<data>/raw``.

    Every file is hashed unless ``rehash=False`` (then a file whose size and mtime match its stamp is trusted).
    """
    raw = paths.raw_dir(paths.data_dir(data_dir))
    stamps = _Stamps(raw)
    try:
        return [f.name for f in _resolve(files) if not stamps.is_valid(f, raw / f.name, rehash)]
    finally:
        stamps.save()


def ensure_raw(
    files: Iterable[FileSpec],
    data_dir: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    rehash: bool = False,
) -> dict[str, Path]:
    """Quietly fetch whichever of these files are missing or corrupt (``rehash``: hash them all); return
    name -> path."""
    return fetch(list(files), data_dir=data_dir, mirror=mirror, progress=False, rehash=rehash)
