"""Published weights on disk: ``<name>.safetensors`` + ``<name>.json`` beside a shared ``vocab.json``.

Large matrices (2-D, ≥ 4,096 entries) may be stored as int8 with one fp32 scale per row (symmetric,
scale = max|row| / 127) or as fp16; everything else stays fp32. Loading dequantises to fp32. Which run's
networks get exported, and when a notebook may use them, is decided in :mod:`mixpoet_lib.checkpoints`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mixpoet_lib._util import atomic_write, write_json_atomic
from mixpoet_lib.data.vocab import Vocab

__all__ = [
    "STORAGE_MODES",
    "SCALE_SUFFIX",
    "pack_state",
    "unpack_state",
    "save_published",
    "read_published",
    "published_vocab",
]

STORAGE_MODES = ("fp32", "fp16", "int8")
MIN_QUANT_NUMEL = 4096  # smaller tensors stay fp32
MATRIX_DIM = 2  # only matrices are packed (one scale per row)
SCALE_SUFFIX = ".__scale"
PUBLISHED_FORMAT = 1


def pack_state(state: dict[str, torch.Tensor], mode: str = "int8") -> dict[str, torch.Tensor]:
    """State dict → tensors to store: big float matrices as int8 (+ per-row fp32 scale) or fp16, the rest as is."""
    if mode not in STORAGE_MODES:
        raise ValueError(f"unknown storage mode {mode!r}; choose one of {', '.join(STORAGE_MODES)}")
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        big = t.is_floating_point() and t.dim() == MATRIX_DIM and t.numel() >= MIN_QUANT_NUMEL
        if not big or mode == "fp32":
            out[name] = t.float() if t.is_floating_point() else t
        elif mode == "fp16":
            out[name] = t.half()
        else:
            scale = t.abs().amax(dim=1, keepdim=True).float() / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            out[name] = torch.round(t.float() / scale).clamp(-127, 127).to(torch.int8)
            out[name + SCALE_SUFFIX] = scale
    return out


def unpack_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack_state`: fp32 (and integer buffers) again."""
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(name + SCALE_SUFFIX)
        if scale is not None:
            out[name] = t.float() * scale
        elif t.is_floating_point():
            out[name] = t.float()
        else:
            out[name] = t
    return out


def save_published(
    out_dir: Path, name: str, state: dict[str, torch.Tensor], meta: dict[str, Any], mode: str
) -> list[Path]:
    """Write ``<name>.safetensors`` (packed as ``mode``) and ``<name>.json`` (``meta`` + format); return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    st, js = out_dir / f"{name}.safetensors", out_dir / f"{name}.json"
    packed = pack_state(state, mode)
    atomic_write(st, lambda tmp: save_file(packed, str(tmp)))
    meta = {**meta, "format": PUBLISHED_FORMAT, "storage": mode, "weights": st.name}
    write_json_atomic(js, meta)
    return [st, js]


def read_published(path: str | Path, kind: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata JSON, fp32 state dict) of a published ``.safetensors`` file (its ``.json`` must sit beside it).

    ``kind`` (model | judge | lm): refuse a file that holds another type of network.
    """

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    meta_path = path.with_suffix(".json")
    for p in (path, meta_path):
        if not p.is_file():
            raise FileNotFoundError(f"published weights incomplete: {p} not found")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"cannot read {meta_path}: {exc}") from None
    if kind is not None and meta.get("type") != kind:
        raise ValueError(f"{path} holds a {meta.get('type')!r}, not a {kind}")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # truncated / not a safetensors file
        raise ValueError(f"cannot read weights {path}: {str(exc).splitlines()[0]}") from None
    return meta, unpack_state(tensors)


def published_vocab(path: Path, meta: dict[str, Any]) -> Vocab:
    """The vocabulary a published file names (``vocab_path`` relative to its folder)."""
    vpath = path.parent / meta.get("vocab_path", "vocab.json")
    if not vpath.is_file():
        raise FileNotFoundError(f"vocabulary {vpath} (named by {path.with_suffix('.json')}) not found")
    return Vocab.load(vpath)
