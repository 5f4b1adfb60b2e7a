"""Checkpoints and published weights: where they live, one factory, one loader per network family.

Every network the kit trains is saved in one of two forms, both free of pickled code:

* a **training checkpoint** ``<run>/checkpoints/<name>_<phase>.pt`` — a plain dict read with
  ``torch.load(weights_only=True)``: weights, optimiser states, RNG states, schedule counters, the settings
  signature and (``model_args``, ``model_config``, ``vocab_size``) to rebuild the network; judges and the
  character LM keep ``checkpoints/judge_<factor>.pt`` and ``checkpoints/charlm.pt`` with their vocabulary;
* **published weights** ``weights/<profile>/<name>.safetensors`` + ``<name>.json`` + a shared ``vocab.json``.
  Their storage (int8 / fp16 packing, reading them back, their digests) is in :mod:`mixpoet_lib.published`.
  :func:`weights_key` ties the files to the settings that trained them, so a notebook only uses them when its
  profile would have trained exactly these networks.

**Content digests.** Every ``.pt`` file is written by :func:`save_checkpoint`, which stores under ``"digest"``
the :func:`~mixpoet_lib._util.tree_digest` of everything else in it (every tensor byte, optimiser and RNG states
included). :func:`read_checkpoint` recomputes it on every load and raises
:class:`~mixpoet_lib._util.CorruptFileError` (one line: the file, delete it and train again) for a file that is
truncated, empty, unreadable, altered or carries no digest (written before digests existed); so training never
resumes from, and nothing generates with, a damaged checkpoint. The digest sits inside the file, so a save
stays one atomic rename (a killed save leaves the previous checkpoint intact) and the format number, part of
every phase signature, is unchanged.

:func:`build_model` is the one factory of the generators, :func:`load_model` / :func:`load_judge` /
:func:`load_lm` the one loader of each family (either form), :func:`load_generator` adds the vocabulary a
generation run needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mixpoet_lib._util import CorruptFileError, default_device, digest, first_line, torch_save_atomic, tree_digest
from mixpoet_lib.config import FACTOR_NAMES, DataConfig, ModelConfig, Profile
from mixpoet_lib.data.dataset import prepare
from mixpoet_lib.data.vocab import Vocab
from mixpoet_lib.models.factor_models import FactorModelBase, MixPoetAUS, MixPoetIGS
from mixpoet_lib.models.generators import CVAE, BasicGenerator, FBasicGenerator, PoetBase
from mixpoet_lib.models.judges import CharLM, Judge, JudgeClassifier, NgramJudge
from mixpoet_lib.paths import repo_root
from mixpoet_lib.published import PUBLISHED_FORMAT, published_vocab, read_published, save_published
from mixpoet_lib.signatures import FACTOR_MODELS, MODEL_NAMES, TUNED_MODELS, weight_settings

__all__ = [
    "MODEL_NAMES",
    "PHASES",
    "PRETRAINED_PHASES",
    "FACTOR_MODELS",
    "TUNED_MODELS",
    "SHARED",
    "CKPT_FORMAT",
    "check_model_names",
    "final_phase",
    "checkpoint_path",
    "judge_path",
    "lm_path",
    "build_model",
    "save_checkpoint",
    "read_checkpoint",
    "load_model",
    "load_judge",
    "load_lm",
    "load_generator",
    "weights_dir",
    "use_published_default",
    "weights_key",
    "export_run",
    "find_published",
    "total_size_mb",
]

PHASES = ("dae", "cl1", "cl2", "c1", "c2")
SHARED = "shared"  # the name of the phases every model starts from (DAE, classifier pre-training)
PRETRAINED_PHASES = ((SHARED, "dae"), (SHARED, "cl1"), (SHARED, "cl2"))  # (name, phase) of those shared phases
CKPT_FORMAT = 1
ENV_PUBLISHED = "MIXPOET_PUBLISHED"


# ----------------------------------------------------------------------------------------------
# names and places
# ----------------------------------------------------------------------------------------------


def check_model_names(names: Iterable[str]) -> list[str]:
    """Lower-cased, de-duplicated model names; a one-line ValueError for an unknown or empty list."""
    out: list[str] = []
    for n in names:
        key = str(n).strip().lower()
        if key not in MODEL_NAMES:
            raise ValueError(f"unknown model {n!r}; choose from {', '.join(MODEL_NAMES)}")
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError(f"no model given; choose from {', '.join(MODEL_NAMES)}")
    return out


def final_phase(name: str) -> tuple[str, str]:
    """(checkpoint name, phase) holding the finished network: a model name, 'dae' or 'classifiers'."""
    if name in ("dae", "shared"):
        return SHARED, "dae"
    if name in ("classifier", "classifiers", "cl"):
        return SHARED, "cl2"
    check_model_names([name])
    return name, "c2" if name in TUNED_MODELS else "c1"


def checkpoint_path(run_dir: str | os.PathLike[str], name: str, phase: str) -> Path:
    """``<run>/checkpoints/<name>_<phase>.pt``."""
    return Path(run_dir) / "checkpoints" / f"{name}_{phase}.pt"


def judge_path(run_dir: str | os.PathLike[str], factor: str) -> Path:
    """``<run>/checkpoints/judge_<factor>.pt``."""
    return Path(run_dir) / "checkpoints" / f"judge_{factor}.pt"


def lm_path(run_dir: str | os.PathLike[str]) -> Path:
    """``<run>/checkpoints/charlm.pt``."""
    return Path(run_dir) / "checkpoints" / "charlm.pt"


def weights_dir(profile: str) -> Path:
    """``<repo>/weights/<profile>`` (not created)."""
    return repo_root() / "weights" / profile


def use_published_default() -> bool:
    """True when $MIXPOET_PUBLISHED is set to 1/true/yes (``mixpoet reproduce`` then loads published weights)."""
    return os.environ.get(ENV_PUBLISHED, "").strip().lower() in ("1", "true", "yes")


def weights_key(profile: Profile) -> str:
    """Hash of the settings that decide the trained weights (data, model, training, seed; bookkeeping excluded)."""
    return digest(
        {
            "data": profile.data,
            "model": profile.model,
            "train": weight_settings(profile.train),
            "seed": profile.seed,
            "format": PUBLISHED_FORMAT,
        }
    )


# ----------------------------------------------------------------------------------------------
# the one model factory
# ----------------------------------------------------------------------------------------------


def build_model(
    kind: str,
    cfg: ModelConfig,
    vocab_size: int,
    *,
    straight_through: bool = False,
    bow: bool = False,
    readout: bool = False,
) -> PoetBase:
    """Build an untrained network of this kind with these sizes and vocabulary size.

    Kinds: ``dae`` (the keyword + poem autoencoder of phase A), ``classifier`` (the shared networks with the
    factor classifiers, phases B1/B2), ``basic`` (keyword only), ``fbasic`` (keyword and factor labels), ``cvae``,
    ``igs``, ``aus``; ``straight_through`` (igs/aus) makes the sampled labels differentiable; ``bow`` (cvae/igs/aus)
    adds the bag-of-words head of ``train.bow_weight``; ``readout`` (aus) the latent read-out heads of
    ``train.readout_weight``.
    """
    builders = {
        "dae": lambda: BasicGenerator(cfg, vocab_size, condition_on_poem=True),
        "classifier": lambda: FactorModelBase(cfg, vocab_size),
        "basic": lambda: BasicGenerator(cfg, vocab_size, condition_on_poem=False),
        "fbasic": lambda: FBasicGenerator(cfg, vocab_size),
        "cvae": lambda: CVAE(cfg, vocab_size, bow=bow),
        "igs": lambda: MixPoetIGS(cfg, vocab_size, straight_through=straight_through, bow=bow),
        "aus": lambda: MixPoetAUS(cfg, vocab_size, straight_through=straight_through, readout=readout, bow=bow),
    }
    key = str(kind).strip().lower()
    if key not in builders:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(builders)}")
    return builders[key]()


def _model_config(values: dict[str, Any]) -> ModelConfig:
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in dict(values).items() if k in fields})


# ----------------------------------------------------------------------------------------------
# training checkpoints
# ----------------------------------------------------------------------------------------------


DIGEST_KEY = "digest"


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a checkpoint dict atomically with the digest of its content under ``"digest"``."""
    body = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    return torch_save_atomic({**body, DIGEST_KEY: tree_digest(body)}, path)


def read_checkpoint(path: str | os.PathLike[str], mmap: bool = False) -> dict[str, Any]:
    """A checkpoint (a plain dict, ``weights_only``) on the CPU whose content matches its digest.

    FileNotFoundError if there is none; :class:`~mixpoet_lib._util.CorruptFileError` (one line naming the file)
    if it is unreadable, damaged or has no digest.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    advice = "delete it and train again"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # truncated / empty / not a torch file / disallowed pickle content
        raise CorruptFileError(f"checkpoint {path} is unreadable ({first_line(exc)}); {advice}") from None
    if not isinstance(ckpt, dict):
        raise CorruptFileError(f"checkpoint {path} is not a dict (got {type(ckpt).__name__}); {advice}")
    stored = ckpt.get(DIGEST_KEY)
    if stored is None:
        raise CorruptFileError(f"checkpoint {path} has no content digest (an older kit wrote it); {advice}")
    if stored != tree_digest({k: v for k, v in ckpt.items() if k != DIGEST_KEY}):
        raise CorruptFileError(f"checkpoint {path} is corrupt (its content does not match its digest); {advice}")
    return ckpt


def _restore(model: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit a {what}: {first_line(exc)}") from None


def load_model(path: str | os.PathLike[str], device: str | torch.device | None = None) -> PoetBase:
    """Rebuild a generator from a training checkpoint (.pt) or published weights (.safetensors), in eval mode.

    The model carries ``training_info`` (name, phase, step, total_steps, complete, metrics).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        meta, state = read_published(path, "model")
        args, cfg, size = meta["model_args"], meta["model_config"], meta["vocab_size"]
        info = {
            "name": meta.get("source"),
            "phase": "published",
            "step": meta.get("step"),
            "total_steps": meta.get("total_steps"),
            "complete": True,
            "metrics": meta.get("metrics"),
        }
    else:
        ckpt = read_checkpoint(path)
        missing = [k for k in ("model_args", "model_config", "vocab_size", "model") if k not in ckpt]
        if missing:
            raise ValueError(f"checkpoint {path} lacks {', '.join(missing)}")
        args, cfg, size, state = ckpt["model_args"], ckpt["model_config"], ckpt["vocab_size"], ckpt["model"]
        info = {k: ckpt.get(k) for k in ("name", "phase", "step", "total_steps", "complete", "metrics")}
    model = build_model(
        args["kind"],
        _model_config(cfg),
        int(size),
        straight_through=bool(args.get("straight_through", False)),
        bow=bool(args.get("bow", False)),
        readout=bool(args.get("readout", False)),
    )
    _restore(model, state, path, f"{args.get('kind')} model")
    object.__setattr__(model, "training_info", info)  # a plain attribute (Module.__setattr__ is typed for tensors)
    return model.to(device or default_device()).eval()


def load_judge(path: str | os.PathLike[str], device: str | torch.device | None = None) -> Judge:
    """A judge (n-gram or BiGRU, from ``hparams["kind"]``) from its checkpoint (.pt) or published weights
    (.safetensors), with its report."""
    path = Path(path)
    if path.suffix == ".safetensors":
        meta, state = read_published(path, "judge")
        vocab, factor = published_vocab(path, meta), meta["factor"]
    else:
        meta = read_checkpoint(path)
        vocab, factor, state = Vocab(tuple(meta["tokens"])), meta["factor"], meta["state_dict"]
    hparams = dict(meta["hparams"])
    model: Judge
    if hparams.pop("kind", "bigru") == "ngram":
        model = NgramJudge(vocab, factor, **hparams)
    else:
        model = JudgeClassifier(vocab, factor, **hparams)
    _restore(model, state, path, f"{factor} judge")
    model.report = meta["report"]
    return model.to(device or default_device()).eval()


def load_lm(path: str | os.PathLike[str], device: str | torch.device | None = None) -> CharLM:
    """The character LM from its checkpoint (.pt) or published weights (.safetensors), with its report."""
    path = Path(path)
    if path.suffix == ".safetensors":
        meta, state = read_published(path, "lm")
        vocab = published_vocab(path, meta)
    else:
        meta = read_checkpoint(path)
        vocab, state = Vocab(tuple(meta["tokens"])), meta["state_dict"]
    lm = CharLM(vocab, **meta["hparams"])
    _restore(lm, state, path, "character LM")
    lm.report = meta.get("report") or {}
    return lm.to(device or default_device()).eval()


def load_generator(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    vocab: Vocab | str | Path | None = None,
    data_dir: str | Path | None = None,
) -> tuple[PoetBase, Vocab, dict[str, Any]]:
    """A generator, its vocabulary and its metadata, for ``mixpoet generate`` and notebooks.

    Published weights carry their vocabulary. A training checkpoint takes it from ``vocab`` (a Vocab or a
    vocab.json path), else from a ``vocab`` list inside it, else from the dataset its profile's data settings
    name (``prepare``, reusing the cache under ``data_dir``); the metadata then gets ``training_lines_path``
    for the novelty filter. Raises FileNotFoundError / ValueError with a one-line message.
    """
    path = Path(path)
    if isinstance(vocab, (str, Path)):
        if not Path(vocab).is_file():
            raise FileNotFoundError(f"vocabulary not found: {vocab}")
        vocab = Vocab.load(Path(vocab))
    model = load_model(path, device)
    if path.suffix == ".safetensors":
        if vocab is not None:
            raise ValueError(f"{path} carries its own vocabulary; do not pass --vocab")
        meta, _ = read_published(path, "model")
        return model, published_vocab(path, meta), meta
    ckpt = read_checkpoint(path, mmap=True)
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "vocab", "optimizers", "schedulers", "rng")}
    if vocab is None and "vocab" in ckpt:
        vocab = Vocab(tuple(ckpt["vocab"]))
    elif vocab is None and isinstance(ckpt.get("config"), dict) and "data" in ckpt["config"]:
        fields = {f.name for f in dataclasses.fields(DataConfig)}
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["config"]["data"].items() if k in fields
        }
        name = str(ckpt["config"].get("name") or "checkpoint")
        data = prepare(Profile(name, data=DataConfig(**values)), data_dir=data_dir)
        vocab = data.vocab
        meta.setdefault("training_lines_path", str(data.root / "training_lines.txt"))
    elif vocab is None:
        raise ValueError(f"checkpoint {path} holds no vocabulary and no data settings; pass a vocab.json")
    if len(vocab) != int(ckpt["vocab_size"]):
        raise ValueError(f"checkpoint {path} expects {ckpt['vocab_size']} tokens but the vocabulary has {len(vocab)}")
    return model, vocab, meta


# ----------------------------------------------------------------------------------------------
# export and lookup
# ----------------------------------------------------------------------------------------------


def export_run(
    run_dir: str | Path,
    profile: Profile,
    vocab: Vocab,
    out_dir: str | Path | None = None,
    models: tuple[str, ...] = ("basic", "cvae", "igs", "aus"),
    mode: str = "int8",
    judges: bool = True,
    lm: bool = True,
) -> list[Path]:
    """Export the finished models (and judges / LM) of a run folder; return the written files."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else weights_dir(profile.name)
    out.mkdir(parents=True, exist_ok=True)
    vocab.save(out / "vocab.json")
    written = [out / "vocab.json"]
    key = weights_key(profile)
    for name in models:
        written += _export_model(run_dir, out, name, profile.name, key, len(vocab), mode)
    if judges:
        for factor in FACTOR_NAMES:
            written += _export_judge(run_dir, out, factor, profile.name, mode)
    if lm:
        ck = read_checkpoint(lm_path(run_dir))
        meta = {
            "type": "lm",
            "hparams": ck["hparams"],
            "key": ck["key"],
            "report": ck.get("report"),
            "vocab_path": "vocab.json",
            "profile": profile.name,
        }
        written += save_published(out, "char_lm", ck["state_dict"], meta, mode)
    return written


def _export_model(run_dir: Path, out: Path, name: str, profile: str, key: str, n_vocab: int, mode: str) -> list[Path]:
    """Export the finished checkpoint of model ``name`` (after checking it matches the vocabulary)."""
    ck_name, phase = final_phase(name)
    path = checkpoint_path(run_dir, ck_name, phase)
    ck = read_checkpoint(path)
    if not ck.get("complete"):
        raise ValueError(f"{path} is not a finished checkpoint; train {name} first")
    if int(ck["vocab_size"]) != n_vocab:
        raise ValueError(f"{path} expects {ck['vocab_size']} tokens, the vocabulary has {n_vocab}")
    args = dict(ck["model_args"])
    meta = {
        "type": "model",
        "name": name,
        "kind": args.get("kind"),
        "model_args": args,
        "model_config": ck["model_config"],
        "vocab_size": int(ck["vocab_size"]),
        "vocab_path": "vocab.json",
        "profile": profile,
        "weights_key": key,
        "step": ck.get("step"),
        "total_steps": ck.get("total_steps"),
        "metrics": ck.get("metrics"),
        "source": f"{ck_name}_{phase}",
    }
    return save_published(out, name, ck["model"], meta, mode)


def _export_judge(run_dir: Path, out: Path, factor: str, profile: str, mode: str) -> list[Path]:
    """Export the judge classifier of one factor (its report without the training history).

    An n-gram judge is always stored in fp32: its one matrix maps tens of thousands of sparse features to 2–3
    classes, so one int8 scale per class row would round most of its small weights to zero (≈ 0.3 MB in fp32).
    """
    ck = read_checkpoint(judge_path(run_dir, factor))
    mode = "fp32" if ck["hparams"].get("kind") == "ngram" else mode
    report = {k: v for k, v in ck["report"].items() if k != "history"}
    meta = {
        "type": "judge",
        "factor": factor,
        "hparams": ck["hparams"],
        "report": report,
        "key": ck["key"],
        "vocab_path": "vocab.json",
        "profile": profile,
    }
    return save_published(out, f"judge_{factor}", ck["state_dict"], meta, mode)


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
