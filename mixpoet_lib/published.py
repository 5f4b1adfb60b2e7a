"""Published weights on disk: ``<name>.safetensors`` + ``<name>.json`` beside a shared ``vocab.json``.

Large matrices (2-D, ≥ 4,096 entries) may be stored as int8 with one fp32 scale per row (symmetric,
scale = max|row| / 127) or as fp16; everything else stays fp32. Loading dequantises to fp32. Which run's
networks get exported, and when a notebook may use them, is decided in :mod:`mixpoet_lib.checkpoints`.

**Digests.** The JSON file carries ``sha256`` (of the ``.safetensors`` file), ``vocab_sha256`` (of the
vocabulary it names) and ``digest``: the sha256 of the JSON's own content without that field, which therefore
covers the weights and the vocabulary too. :func:`read_published` first checks the JSON's keys, types and
values against the settings dataclasses (one-line errors naming the file and the key; malformed JSON: its line
and column), then the three digests, so a damaged weights file, a swapped vocabulary or a hand edit of the
JSON (say ``max_line_len`` or ``drop_ratio``, which would load into tensors of the same shapes) is refused
instead of used. :func:`write_published_meta` is the one way to write such a JSON (export, and the later
``check`` entry of ``mixpoet publish``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mixpoet_lib._util import CorruptFileError, atomic_write, digest, jsonable, sha256_file, write_json_atomic
from mixpoet_lib.config import FACTOR_NAMES, ModelConfig
from mixpoet_lib.data.vocab import Vocab

__all__ = [
    "STORAGE_MODES",
    "SCALE_SUFFIX",
    "pack_state",
    "unpack_state",
    "save_published",
    "write_published_meta",
    "check_meta",
    "read_published",
    "published_vocab",
]

STORAGE_MODES = ("fp32", "fp16", "int8")
MIN_QUANT_NUMEL = 4096  # smaller tensors stay fp32
MATRIX_DIM = 2  # only matrices are packed (one scale per row)
SCALE_SUFFIX = ".__scale"
PUBLISHED_FORMAT = 1
DIGEST_LENGTH = 64
REQUIRED: dict[str, dict[str, type]] = {  # key -> type, per file type (plus COMMON)
    "model": {
        "name": str,
        "kind": str,
        "model_args": dict,
        "model_config": dict,
        "vocab_size": int,
        "weights_key": str,
    },
    "judge": {"factor": str, "hparams": dict, "report": dict, "key": dict},
    "lm": {"hparams": dict, "key": dict},
}
COMMON = {
    "type": str,
    "format": int,
    "storage": str,
    "weights": str,
    "vocab_path": str,
    "sha256": str,
    "vocab_sha256": str,
    "digest": str,
}


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
    """Write ``<name>.safetensors`` (packed as ``mode``) and ``<name>.json`` (``meta`` + format and digests);
    return both paths. The vocabulary the JSON names must already be in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    st = out_dir / f"{name}.safetensors"
    packed = pack_state(state, mode)
    atomic_write(st, lambda tmp: save_file(packed, str(tmp)))
    js = write_published_meta(st, {**meta, "format": PUBLISHED_FORMAT, "storage": mode, "weights": st.name})
    return [st, js]


def _body(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k != "digest"}


def write_published_meta(weights: Path, meta: dict[str, Any]) -> Path:
    """Write the JSON beside ``weights`` with the sha256 of the weights and of the vocabulary, and its digest."""
    body = _body(meta)
    body["sha256"] = sha256_file(weights)
    vocab = weights.parent / str(body.get("vocab_path", "vocab.json"))
    if not vocab.is_file():
        raise FileNotFoundError(f"vocabulary {vocab} (named by {weights.with_suffix('.json')}) not found")
    body["vocab_sha256"] = sha256_file(vocab)
    body = jsonable(body)
    return write_json_atomic(weights.with_suffix(".json"), {**body, "digest": digest(body, DIGEST_LENGTH)})


def _kind_error(value: Any, want: type) -> bool:
    """True if ``value`` is not of JSON type ``want`` (a bool is no number; an int will do for a float)."""
    if want in (int, float) and isinstance(value, bool):
        return True
    return not isinstance(value, (int, float) if want is float else want)


def _check_types(meta: dict[str, Any], spec: dict[str, type], where: str, prefix: str = "") -> None:
    missing = [prefix + k for k in spec if k not in meta]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    for key, want in spec.items():
        if _kind_error(meta[key], want):
            raise ValueError(f"{where}: {prefix}{key} must be of type {want.__name__}, got {meta[key]!r}")


def check_meta(meta: Any, where: str) -> None:
    """Check a published JSON's keys, types and values (ValueError naming ``where`` and the key)."""
    if not isinstance(meta, dict):
        raise ValueError(f"{where} must hold a JSON object, got {type(meta).__name__}")
    kind = meta.get("type")
    if kind not in REQUIRED:
        raise ValueError(f"{where}: type must be one of {', '.join(REQUIRED)}, got {kind!r}")
    _check_types(meta, {**COMMON, **REQUIRED[kind]}, where)
    if meta["format"] != PUBLISHED_FORMAT or meta["storage"] not in STORAGE_MODES:
        raise ValueError(f"{where}: unknown format {meta['format']!r} or storage {meta['storage']!r}")
    if kind == "judge" and meta["factor"] not in FACTOR_NAMES:
        raise ValueError(f"{where}: factor must be one of {', '.join(FACTOR_NAMES)}, got {meta['factor']!r}")
    if kind == "model":
        _check_model(meta, where)


def _check_model(meta: dict[str, Any], where: str) -> None:
    """The generator's settings: model_config exactly the fields of ModelConfig with valid values."""
    fields = {f.name: type(f.default) for f in dataclasses.fields(ModelConfig)}
    cfg = meta["model_config"]
    extra = sorted(set(cfg) - set(fields))
    if extra:
        raise ValueError(f"{where}: model_config has unknown key(s) {', '.join(extra)}")
    _check_types(cfg, fields, where, "model_config.")
    try:
        ModelConfig(**cfg)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: model_config: {exc}") from None
    _check_types(meta["model_args"], {"kind": str}, where, "model_args.")
    flags = [meta["model_args"].get(k, False) for k in ("straight_through", "bow", "readout")]
    if any(_kind_error(f, bool) for f in flags) or meta["vocab_size"] < 1:
        raise ValueError(f"{where}: model_args.straight_through, .bow, .readout must be true/false and vocab_size ≥ 1")


def _read_meta(meta_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"cannot read {meta_path}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {meta_path}: {exc}") from None
    check_meta(meta, str(meta_path))
    return meta


def _check_digests(meta: dict[str, Any], path: Path, meta_path: Path) -> None:
    """The JSON's own digest (covering every setting in it), then the weights file's sha256."""
    redo = "restore it (e.g. git checkout) or export the weights again with `mixpoet publish`"
    if meta["digest"] != digest(_body(meta), DIGEST_LENGTH):
        raise CorruptFileError(f"{meta_path} is not the JSON published with {path.name} (edited or damaged); {redo}")
    if sha256_file(path) != meta["sha256"]:
        raise CorruptFileError(f"{path} is corrupt (its sha256 differs from the one in {meta_path.name}); {redo}")


def read_published(path: str | Path, kind: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata JSON, fp32 state dict) of a published ``.safetensors`` file (its ``.json`` must sit beside it).

    ``kind`` (model | judge | lm): refuse a file that holds another type of network. The JSON is checked
    (:func:`check_meta`) and the digests compared before anything is loaded.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    meta_path = path.with_suffix(".json")
    for p in (path, meta_path):
        if not p.is_file():
            raise FileNotFoundError(f"published weights incomplete: {p} not found")
    try:
        meta = _read_meta(meta_path)
    except ValueError as exc:
        raise ValueError(f"cannot use {path}: {exc}") from None
    if kind is not None and meta.get("type") != kind:
        raise ValueError(f"{path} holds a {meta.get('type')!r}, not a {kind}")
    _check_digests(meta, path, meta_path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # truncated / not a safetensors file
        raise ValueError(f"cannot read weights {path}: {str(exc).splitlines()[0]}") from None
    return meta, unpack_state(tensors)


def published_vocab(path: Path, meta: dict[str, Any]) -> Vocab:
    """The vocabulary a published file names (``vocab_path`` relative to its folder), checked against its sha256."""
    vpath = path.parent / meta.get("vocab_path", "vocab.json")
    if not vpath.is_file():
        raise FileNotFoundError(f"vocabulary {vpath} (named by {path.with_suffix('.json')}) not found")
    if sha256_file(vpath) != meta.get("vocab_sha256"):
        raise CorruptFileError(
            f"vocabulary {vpath} is not the one {path.with_suffix('.json').name} was published with "
            "(edited or damaged); restore it or export the weights again"
        )
    return Vocab.load(vpath)
