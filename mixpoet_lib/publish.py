"""Published weights: trained models, judges and the char LM as safetensors + a small JSON each (no pickle).

Layout of ``weights/<profile>/``: ``vocab.json`` (shared token list), and per network ``<name>.safetensors`` with
``<name>.json`` (what to build, how it was trained, how the tensors are stored). To keep the repository small,
large weight matrices (2-D, ≥ 4,096 entries) can be stored as **int8 with one fp32 scale per row**
(symmetric, scale = max|row| / 127) or as fp16; everything else (biases, norms, running statistics) stays fp32.
Loading dequantises to fp32. ``weights_key`` ties the files to the settings that trained them, so a notebook
only uses them when its profile would have trained exactly these networks.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig, Profile
from .paths import repo_root
from .vocab import Vocab

STORAGE_MODES = ("fp32", "fp16", "int8")
MIN_QUANT_NUMEL = 4096
SCALE_SUFFIX = ".__scale"
PUBLISHED_FORMAT = 1
ENV_PUBLISHED = "MIXPOET_PUBLISHED"


def weights_dir(profile: str) -> Path:
    """``<repo>/weights/<profile>`` (not created)."""
    return repo_root() / "weights" / profile


def use_published_default() -> bool:
    """True when $MIXPOET_PUBLISHED is set to 1/true/yes (notebooks then load published weights instead of training)."""
    return os.environ.get(ENV_PUBLISHED, "").strip().lower() in ("1", "true", "yes")


def weights_key(profile: Profile) -> str:
    """Hash of the settings that decide the trained weights (data, model, training, seed; bookkeeping excluded)."""
    from .training import _NOT_IN_SIGNATURE, _SIGNATURE_IF_SET, _jsonable

    train = {k: v for k, v in _jsonable(profile.train).items()
             if k not in _NOT_IN_SIGNATURE and not (k in _SIGNATURE_IF_SET and v == _SIGNATURE_IF_SET[k])}
    blob = {"data": _jsonable(profile.data), "model": _jsonable(profile.model), "train": train, "seed": profile.seed,
            "format": PUBLISHED_FORMAT}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# tensor storage
# ----------------------------------------------------------------------------------------------

def pack_state(state: dict[str, torch.Tensor], mode: str = "int8") -> dict[str, torch.Tensor]:
    """State dict → tensors to store: big float matrices as int8 (+ per-row fp32 scale) or fp16, the rest as is."""
    if mode not in STORAGE_MODES:
        raise ValueError(f"unknown storage mode {mode!r}; choose one of {', '.join(STORAGE_MODES)}")
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        big = t.is_floating_point() and t.dim() == 2 and t.numel() >= MIN_QUANT_NUMEL
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


def _save(out_dir: Path, name: str, state: dict[str, torch.Tensor], meta: dict[str, Any], mode: str) -> list[Path]:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    st, js = out_dir / f"{name}.safetensors", out_dir / f"{name}.json"
    tmp = st.with_suffix(".tmp")
    save_file(pack_state(state, mode), str(tmp))
    os.replace(tmp, st)
    meta = {**meta, "format": PUBLISHED_FORMAT, "storage": mode, "weights": st.name}
    js.write_text(json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    return [st, js]


def read_published(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata JSON, fp32 state dict) of a published ``.safetensors`` file (its ``.json`` must sit beside it)."""
    from safetensors.torch import load_file

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


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------

def export_run(run_dir: str | Path, profile: Profile, vocab: Vocab, out_dir: str | Path | None = None,
               models: tuple[str, ...] = ("basic", "cvae", "igs", "aus"), mode: str = "int8",
               judges: bool = True, lm: bool = True) -> list[Path]:
    """Export the finished models (and judges / LM) of a run folder; return the written files."""
    from .judges import judge_path, lm_path
    from .training import _final_phase, checkpoint_path, load_checkpoint

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else weights_dir(profile.name)
    out.mkdir(parents=True, exist_ok=True)
    vocab.save(out / "vocab.json")
    written = [out / "vocab.json"]
    key = weights_key(profile)
    for name in models:
        ck_name, phase = _final_phase(name)
        path = checkpoint_path(run_dir, ck_name, phase)
        ck = load_checkpoint(path)
        if not ck.get("complete"):
            raise ValueError(f"{path} is not a finished checkpoint; train {name} first")
        if int(ck["vocab_size"]) != len(vocab):
            raise ValueError(f"{path} expects {ck['vocab_size']} tokens, the vocabulary has {len(vocab)}")
        args = dict(ck["model_args"])
        meta = {"type": "model", "name": name, "kind": args.get("kind"), "model_args": args,
                "model_config": ck["model_config"], "vocab_size": int(ck["vocab_size"]), "vocab_path": "vocab.json",
                "profile": profile.name, "weights_key": key, "step": ck.get("step"),
                "total_steps": ck.get("total_steps"), "metrics": ck.get("metrics"), "source": f"{ck_name}_{phase}"}
        written += _save(out, name, ck["model"], meta, mode)
    if judges:
        from .config import FACTOR_NAMES

        for factor in FACTOR_NAMES:
            ck = torch.load(judge_path(run_dir, factor), map_location="cpu", weights_only=True)
            report = {k: v for k, v in ck["report"].items() if k != "history"}
            meta = {"type": "judge", "factor": factor, "hparams": ck["hparams"], "report": report,
                    "key": ck["key"], "vocab_path": "vocab.json", "profile": profile.name}
            written += _save(out, f"judge_{factor}", ck["state_dict"], meta, mode)
    if lm:
        ck = torch.load(lm_path(run_dir), map_location="cpu", weights_only=True)
        meta = {"type": "lm", "hparams": ck["hparams"], "key": ck["key"], "report": ck.get("report"),
                "vocab_path": "vocab.json", "profile": profile.name}
        written += _save(out, "char_lm", ck["state_dict"], meta, mode)
    return written


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------

def load_published_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, Vocab, dict[str, Any]]:
    """Rebuild a published generator (eval mode on ``device``); return (model, vocab, metadata)."""
    from .training import _build_model

    path = Path(path)
    meta, state = read_published(path)
    if meta.get("type") != "model":
        raise ValueError(f"{path} holds a {meta.get('type')!r}, not a generator model")
    vocab = published_vocab(path, meta)
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    cfg = ModelConfig(**{k: v for k, v in meta["model_config"].items() if k in fields})
    model = _build_model(meta["model_args"], cfg, int(meta["vocab_size"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit a {meta.get('kind')} model: {str(exc).splitlines()[0]}") from None
    model.training_info = {"name": meta.get("source"), "phase": "published", "step": meta.get("step"),
                           "total_steps": meta.get("total_steps"), "complete": True, "metrics": meta.get("metrics")}
    return model.to(device).eval(), vocab, meta


def load_published_judge(path: str | Path, device: torch.device | str | None = None) -> Any:
    """Rebuild a published judge classifier (with its report), in eval mode."""
    from .judges import JudgeClassifier, default_device

    path = Path(path)
    meta, state = read_published(path)
    if meta.get("type") != "judge":
        raise ValueError(f"{path} holds a {meta.get('type')!r}, not a judge classifier")
    model = JudgeClassifier(published_vocab(path, meta), meta["factor"], **meta["hparams"])
    model.load_state_dict(state)
    model.report = meta["report"]
    return model.to(device or default_device()).eval()


def load_published_lm(path: str | Path, device: torch.device | str | None = None) -> Any:
    """Rebuild the published character LM, in eval mode."""
    from .judges import CharLM, default_device

    path = Path(path)
    meta, state = read_published(path)
    if meta.get("type") != "lm":
        raise ValueError(f"{path} holds a {meta.get('type')!r}, not a language model")
    model = CharLM(published_vocab(path, meta), **meta["hparams"])
    model.load_state_dict(state)
    model.report = meta.get("report")
    return model.to(device or default_device()).eval()


def published_meta(profile: Profile, name: str) -> tuple[Path, dict[str, Any]] | None:
    """(file, metadata) of ``weights/<profile>/<name>.safetensors`` if it and its readable JSON exist, else None."""
    path = weights_dir(profile.name) / f"{name}.safetensors"
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        return path, json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def find_published(profile: Profile, name: str, key: Any = None) -> Path | None:
    """The published file of a generator whose weights_key matches the profile (judges/LM: whose ``key`` equals
    the given settings key after a JSON round trip), else None."""
    found = published_meta(profile, name)
    if found is None:
        return None
    path, meta = found
    if meta.get("type") == "model":
        return path if meta.get("weights_key") == weights_key(profile) else None
    return path if key is not None and meta.get("key") == json.loads(json.dumps(key)) else None


def total_size_mb(folder: str | Path) -> float:
    """Size of every file in a published folder, in MB (10^6 bytes)."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file()) / 1e6
