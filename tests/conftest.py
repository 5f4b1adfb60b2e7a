"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    """The read-only mirror of raw files: $MIXPOET_MIRROR, else <repo>/../shared/data/raw (skip if absent)."""
    value = os.environ.get("MIXPOET_MIRROR")
    path = Path(value).expanduser().resolve() if value else REPO.parent / "shared" / "data" / "raw"
    if (path / "raw").is_dir():  # MIXPOET_MIRROR may name shared/data rather than its raw/
        path = path / "raw"
    if not path.is_dir():
        pytest.skip(f"raw-data mirror not found at {path} (set MIXPOET_MIRROR)")
    return path


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory: pytest.TempPathFactory, mirror_dir: Path):
    """The smoke profile's prepared dataset, built once per test session in a temporary data folder."""
    from mixpoet_lib.config import get_profile
    from mixpoet_lib.data.dataset import prepare

    return prepare(get_profile("smoke"), data_dir=tmp_path_factory.mktemp("data"), mirror=mirror_dir)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run single-threaded: on a busy 2-core machine extra intra-op threads only add contention
    (10–25× slower seen here). Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
