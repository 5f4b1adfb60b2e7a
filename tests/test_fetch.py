"""Registry completeness and the downloader: mirror copies, skip-on-rerun, corruption, real loopback HTTP."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from mixpoet_lib.data import fetch as fetch_mod
from mixpoet_lib.data.fetch import FetchError, ensure_raw, fetch, raw_path, verify
from mixpoet_lib.data.registry import GROUPS, RawFile, get, load_registry, select

COMMITS = {
    "THUNLP-AIPoet/MixPoet": "3131f3011df8ff46b5fc80feccca088115d8392d",
    "THUNLP-AIPoet/Datasets": "0a53d6a29c1dc5e3f69de446e8c94b28b3b2437b",
    "chinese-poetry/chinese-poetry": "99ebbef7e1345c0985c44b9fd96a3f9e776f117b",
}
PINGSHUI = "thu-aipoet/CRRD/pingshui.txt"
ZH_README = "chinese-poetry/全唐诗/README.md"


def _flip_byte(data: bytes, at: int | None = None) -> bytes:
    i = len(data) // 2 if at is None else at
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _leftovers(root: Path) -> list[Path]:
    """Temporary files of interrupted or rejected writes (``_util.atomic_write`` names them ``.<name>.*.part``)."""
    return [p for p in root.rglob("*") if p.name.endswith(".part") or ".part-" in p.name]


@pytest.fixture(autouse=True)
def _no_env_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's environment out: no data dir, no mirror, no proxies, no retry sleeps."""
    for var in ("MIXPOET_DATA_DIR", "MIXPOET_MIRROR", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(fetch_mod, "RETRY_DELAY", 0.0)


# ---------------------------------------------------------------- registry


def test_registry_matches_checksums_and_mirror(mirror_dir: Path) -> None:
    reg = load_registry()
    assert len(reg) == 327
    listed = {}
    for line in (mirror_dir.parent / "checksums.sha256").read_text(encoding="utf-8").splitlines():
        sha, rel = line.split(maxsplit=1)
        listed[rel.removeprefix("raw/")] = sha
    assert set(reg) == set(listed)
    for name, f in reg.items():
        assert f.name == name
        assert f.sha256 == listed[name]
        assert f.size == (mirror_dir / name).stat().st_size
        assert f.commit == COMMITS[f.source]
        assert f.url.startswith(f"https://raw.githubusercontent.com/{f.source}/{f.commit}/")
        assert f.url.isascii()  # Chinese path segments are percent-encoded
        assert f.group in GROUPS and f.terms
    counts = {g: sum(f.group == g for f in reg.values()) for g in GROUPS}
    assert counts == {"cqcf": 3, "test_inps": 1, "ccpc": 2, "crrd": 3, "tang": 58, "song": 255, "docs": 5}
    assert reg["mixpoet/cqcf_train_sample.json"].url.endswith("/preprocess/cqcf_train_sample.json")
    assert reg["mixpoet/test_inps.txt"].url.endswith("/data/test_inps.txt")
    assert reg[ZH_README].url.endswith("/%E5%85%A8%E5%94%90%E8%AF%97/README.md")
    assert "academic use only" in reg[PINGSHUI].terms and "MIT" in reg[ZH_README].terms


def test_select_orders_numerically_and_caps() -> None:
    tang = [f.name.rsplit("/", 1)[-1] for f in select(["tang"])]
    assert tang[:3] == ["poet.tang.0.json", "poet.tang.1000.json", "poet.tang.2000.json"]
    assert tang[-1] == "poet.tang.57000.json" and len(tang) == 58
    assert [f.name for f in select(["tang"], {"tang": 1})] == ["chinese-poetry/全唐诗/poet.tang.0.json"]
    song = select(["song"], {"song": 2})
    assert [f.name.rsplit("/", 1)[-1] for f in song] == ["poet.song.0.json", "poet.song.1000.json"]
    both = select(["crrd", "cqcf"], {"cqcf": None})
    assert [f.group for f in both] == ["crrd"] * 3 + ["cqcf"] * 3
    assert len(select()) == 327 and isinstance(select()[0], RawFile)
    with pytest.raises(ValueError, match="unknown raw-data group"):
        select(["tang", "poems"])
    with pytest.raises(KeyError, match="not a registered raw file"):
        get("nope.txt")


# ---------------------------------------------------------------- mirror


def test_fetch_from_mirror_then_skip(tmp_path: Path, mirror_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = select(["crrd", "cqcf"])
    data = tmp_path / "data"
    got = fetch(files, data_dir=data, mirror=mirror_dir, progress=True)
    assert list(got) == [f.name for f in files]
    for f in files:
        assert got[f.name] == raw_path(f.name, data) == data / "raw" / f.name
        assert got[f.name].read_bytes() == (mirror_dir / f.name).read_bytes()
    assert verify(files, data_dir=data) == []
    assert not _leftovers(data)
    mtimes = {n: p.stat().st_mtime_ns for n, p in got.items()}

    # Rerun: the stamp proves every file, so nothing is copied and nothing is even re-hashed.
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not be called on a verified rerun")

    monkeypatch.setattr(fetch_mod, "_write", boom)
    monkeypatch.setattr(fetch_mod, "sha256_file", boom)
    assert fetch(files, data_dir=data, mirror=mirror_dir, progress=False) == got
    assert {n: p.stat().st_mtime_ns for n, p in got.items()} == mtimes


def test_local_damage_is_detected_and_repaired(tmp_path: Path, mirror_dir: Path) -> None:
    data = tmp_path / "data"
    files = select(["crrd"])
    fetch(files, data_dir=data, mirror=mirror_dir, progress=False)
    target = raw_path(PINGSHUI, data)
    before = target.stat()
    target.write_bytes(_flip_byte(target.read_bytes()))  # same size, different bytes
    # Force a different mtime even on coarse-grained file systems.
    fetch_mod.os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert verify(files, data_dir=data) == [PINGSHUI]
    ensure_raw([PINGSHUI], data_dir=data, mirror=mirror_dir)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == get(PINGSHUI).sha256
    assert verify(files, data_dir=data, rehash=True) == []


def test_corrupt_mirror_file_is_never_copied(tmp_path: Path, mirror_dir: Path) -> None:
    files = select(["crrd"])  # pingsheng, pingshui, zesheng
    bad_mirror = tmp_path / "mirror"
    for f in files:
        (bad_mirror / f.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror_dir / f.name, bad_mirror / f.name)
    src = bad_mirror / PINGSHUI
    src.write_bytes(_flip_byte(src.read_bytes()))
    data = tmp_path / "data"

    with pytest.raises(FetchError, match="sha256 mismatch") as info:
        fetch(files, data_dir=data, mirror=bad_mirror, progress=False)
    msg = str(info.value)
    assert PINGSHUI in msg and str(src) in msg and get(PINGSHUI).sha256 in msg and "\n" not in msg
    assert not raw_path(PINGSHUI, data).exists()
    assert not _leftovers(data)
    assert verify(files[:1], data_dir=data) == []  # the file fetched before the failure stays
    assert verify(files, data_dir=data) == [PINGSHUI, "thu-aipoet/CRRD/zesheng.txt"]

    src.unlink()
    with pytest.raises(FetchError, match=re.escape(f"missing mirror file for {PINGSHUI} from {src}")):
        fetch(files, data_dir=data, mirror=bad_mirror, progress=False)
    with pytest.raises(FetchError, match="does not exist"):
        fetch(files, data_dir=data, mirror=tmp_path / "no-such-mirror", progress=False)


# ---------------------------------------------------------------- loopback HTTP


class _MirrorHandler(BaseHTTPRequestHandler):
    """Serves <mirror>/<unquoted path>; server.mode picks ok / corrupt / truncate / 404."""

    server: _MirrorServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        name = unquote(urlsplit(self.path).path).lstrip("/")
        self.server.hits.append(name)
        path = self.server.mirror / name
        if self.server.mode == "404" or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        if self.server.mode == "corrupt":
            body = _flip_byte(body)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.mode == "truncate":  # promise everything, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _MirrorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mirror: Path) -> None:
        super().__init__(("127.0.0.1", 0), _MirrorHandler)
        self.mirror = mirror
        self.mode = "ok"
        self.hits: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@pytest.fixture
def http_mirror(mirror_dir: Path) -> Iterator[_MirrorServer]:
    server = _MirrorServer(mirror_dir)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_download(tmp_path: Path, http_mirror: _MirrorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXPOET_MIRROR", str(tmp_path / "ignored"))  # an explicit base_url wins over the env
    files = [*select(["crrd"]), get(ZH_README)]
    data = tmp_path / "data"
    got = fetch(files, data_dir=data, base_url=http_mirror.base_url, progress=False, timeout=10)
    assert http_mirror.hits == [f.name for f in files]  # the Chinese name arrived percent-encoded intact
    for f in files:
        assert got[f.name].read_bytes() == (http_mirror.mirror / f.name).read_bytes()
    assert verify(files, data_dir=data) == [] and not _leftovers(data)
    fetch(files, data_dir=data, base_url=http_mirror.base_url, progress=False)
    assert len(http_mirror.hits) == len(files)  # second run: no request at all


def test_http_corrupt_bytes(tmp_path: Path, http_mirror: _MirrorServer) -> None:
    http_mirror.mode = "corrupt"
    data = tmp_path / "data"
    with pytest.raises(FetchError, match=re.escape(f"sha256 mismatch for {PINGSHUI} from {http_mirror.base_url}")):
        fetch([PINGSHUI], data_dir=data, base_url=http_mirror.base_url, progress=False)
    assert not raw_path(PINGSHUI, data).exists() and not _leftovers(data)


def test_http_dropped_connection_is_retried_then_fails(tmp_path: Path, http_mirror: _MirrorServer) -> None:
    http_mirror.mode = "truncate"
    data = tmp_path / "data"
    size = get(PINGSHUI).size
    with pytest.raises(FetchError, match=f"connection dropped after {size // 2} of {size} bytes") as info:
        fetch([PINGSHUI], data_dir=data, base_url=http_mirror.base_url, progress=False, timeout=10, retries=2)
    assert PINGSHUI in str(info.value) and "3 attempts" in str(info.value)
    assert http_mirror.hits == [PINGSHUI] * 3
    assert not raw_path(PINGSHUI, data).exists() and not _leftovers(data)


def test_http_404_is_not_retried(tmp_path: Path, http_mirror: _MirrorServer) -> None:
    http_mirror.mode = "404"
    data = tmp_path / "data"
    with pytest.raises(FetchError, match=f"HTTP 404 .* for {PINGSHUI} from {http_mirror.base_url}"):
        fetch([PINGSHUI], data_dir=data, base_url=http_mirror.base_url, progress=False, retries=2)
    assert http_mirror.hits == [PINGSHUI]
    assert not raw_path(PINGSHUI, data).exists() and not _leftovers(data)


def test_http_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and now has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match=f"network error .* for {PINGSHUI} from http://127.0.0.1:{port}/"):
        fetch([PINGSHUI], data_dir=tmp_path, base_url=f"http://127.0.0.1:{port}/", progress=False, retries=1)
