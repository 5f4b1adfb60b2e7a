"""What the numbered notebooks share: the first cell, showing the code under an equation, published weights or
training (the UvA way: load what exists, say so, train otherwise), posterior codes of labelled poems, and the
diagram of the whole model.
"""

from __future__ import annotations

import inspect
import logging
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jieba
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.patches import FancyBboxPatch
from torch import nn

from mixpoet_lib import plots
from mixpoet_lib._util import default_device, seed_everything
from mixpoet_lib.checkpoints import (
    MODEL_NAMES,
    PRETRAINED_PHASES,
    checkpoint_path,
    final_phase,
    find_published,
    load_model,
)
from mixpoet_lib.config import Profile, get_profile
from mixpoet_lib.data.batching import make_batch
from mixpoet_lib.data.dataset import PreparedData, prepare
from mixpoet_lib.paths import ENV_FIGURES, repo_root, run_path
from mixpoet_lib.train.logs import log_path
from mixpoet_lib.train.loop import ensure_model

__all__ = [
    "setup",
    "say",
    "source_markdown",
    "show_source",
    "notebook_run_dir",
    "run_log",
    "published_generators",
    "load_or_train",
    "pretrained_or_logged",
    "posterior_codes",
    "model_diagram",
]

TRAIN_HINT = "set TRAIN=True (or run make reproduce) to train from scratch"
PROSE_PROFILE = "tutorial"  # the readings between the cells describe the published run of this profile
PRETRAINING_LOGS = {"dae": PRETRAINED_PHASES[:1], "classifiers": PRETRAINED_PHASES[1:]}


def setup(
    profile_name: str | None, seed: int, overrides: str = "", prepare_data: bool = True
) -> tuple[Profile, PreparedData | None]:
    """Resolve the profile (with the notebook's ``OVERRIDES``, e.g. ``"model.latent_size=64"``), seed every
    generator, silence jieba, apply the CJK plot style and prepare the data."""
    jieba.setLogLevel(logging.INFO)  # jieba logs its dictionary loading to stderr otherwise
    profile = get_profile(profile_name, overrides or None)
    seed_everything(seed)
    font = plots.setup_style()
    data = prepare(profile) if prepare_data else None
    vocab = f" | vocabulary {len(data.vocab)}" if data is not None else ""
    trained = f" | training seed {profile.seed}" if profile.seed != seed else ""  # e.g. --set seed=1235
    print(f"profile {profile.name} | seed {seed}{trained} | device {default_device()} | CJK font {font}{vocab}")
    if profile.name != PROSE_PROFILE or overrides:
        changed = f" with {overrides}" if overrides else ""
        print(
            f"note: the readings between the cells describe the published {PROSE_PROFILE} run; this run uses "
            f"profile {profile.name}{changed}, so its own numbers are in the outputs, not in the prose"
        )
    return profile, data


def _relative(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository when it lies inside it (no machine paths in stored outputs)."""
    try:
        return Path(path).resolve().relative_to(repo_root().resolve()).as_posix()
    except ValueError:
        return str(path)


def say(message: str) -> None:
    """Print ``message`` with the repository's absolute path cut off (a ``log`` for the library's loaders)."""
    print(message.replace(f"{repo_root().resolve()}{os.sep}", ""))


# ----------------------------------------------------------------------------------------------
# the code under the equation
# ----------------------------------------------------------------------------------------------


def source_markdown(*objects: Callable[..., Any] | type) -> str:
    """Markdown with the source of each function, method or class as one fenced Python block."""
    if not objects:
        raise ValueError("give at least one function, method or class")
    parts = [textwrap.dedent(inspect.getsource(obj)).rstrip() for obj in objects]
    return "```python\n" + "\n\n\n".join(parts) + "\n```"


def show_source(*objects: Callable[..., Any] | type) -> None:
    """Display the source of library functions as a highlighted code block: the code that runs, not a copy."""
    from IPython.display import Markdown, display  # optional dependency (notebooks extra); only notebooks show code

    display(Markdown(source_markdown(*objects)))


# ----------------------------------------------------------------------------------------------
# published weights or training
# ----------------------------------------------------------------------------------------------


def notebook_run_dir(run: str, given: str | None = None) -> str:
    """The folder a notebook writes to: ``given`` (``mixpoet reproduce`` passes its run folder), else
    ``runs/<run>-local/`` — the folder ``mixpoet reproduce`` writes to, ignored by git — with the figures in its
    ``figures/`` (unless $MIXPOET_FIGURES_DIR names a folder). So a notebook opened in JupyterLab never
    overwrites the committed reference run ``runs/<run>/`` or ``figures/``; it only reads the reference run's
    training logs (:func:`run_log`)."""
    if given:
        return given
    folder = run_path(f"{run}-local")
    os.environ.setdefault(ENV_FIGURES, str(folder / "figures"))
    return str(folder)


def _log_file(name: str, phase: str, profile: Profile, run_dir: str | os.PathLike[str], valid: bool) -> Path:
    """This run's log of a phase when it has one; else, while the profile's published weights are in use, the
    log of the reference run ``runs/<profile>/`` the weights were exported from (when that exists)."""
    own = log_path(run_dir, name, phase, valid)
    if own.exists() or not published_generators(profile):
        return own
    reference = log_path(run_path(profile.name), name, phase, valid)
    return reference if reference.exists() else own


def run_log(
    name: str, phase: str, profile: Profile, run_dir: str | os.PathLike[str], valid: bool = False
) -> pd.DataFrame:
    """A training phase's per-step log (with ``valid``: its validation log) as a DataFrame: this run's when it
    trained the phase, else the reference run's, whose training produced the published weights."""
    return pd.read_csv(_log_file(name, phase, profile, run_dir, valid))


def published_generators(profile: Profile) -> bool:
    """True when ``weights/<profile>`` holds generators trained with exactly this profile's settings."""
    return any(find_published(profile, name) is not None for name in MODEL_NAMES)


def load_or_train(
    kind: str, profile: Profile, data: PreparedData, run_dir: str | os.PathLike[str], train: bool = False
) -> nn.Module:
    """The trained model ``kind``, saying where it comes from in one printed line.

    Without ``train``: a finished checkpoint in ``run_dir``, else the profile's published weights when they
    match its settings. Otherwise (or when neither exists) the model is trained, resumably, into ``run_dir``.
    """
    name = str(kind).strip().lower()
    done = checkpoint_path(run_dir, *final_phase(name))
    if not train and not done.exists():
        pub = find_published(profile, name) if name in MODEL_NAMES else None
        if pub is not None:
            print(f"{name}: found published weights {_relative(pub)}, loading; {TRAIN_HINT}")
            return load_model(pub)
    if done.exists():
        print(f"{name}: found the checkpoint {_relative(done)}, loading (training resumes if it is unfinished)")
    else:
        print(f"{name}: no published weights for these settings; training into {_relative(run_dir)}")
    return ensure_model(name, profile, data=data, run_dir=run_dir, progress=False, published=False)


def pretrained_or_logged(
    kind: str, profile: Profile, data: PreparedData, run_dir: str | os.PathLike[str], train: bool = False
) -> nn.Module | None:
    """The pre-training stage ``kind`` ('dae' or 'classifiers'), or None when only its log is needed.

    Those stages are not published. When the profile's generators are, ``train`` is off and the published
    run's log of the stage is there (``run_dir``, else the reference run: :func:`run_log`), the notebook shows that
    log instead of re-training the stage.
    """
    logs = [_log_file(name, phase, profile, run_dir, False) for name, phase in PRETRAINING_LOGS[kind]]
    done = checkpoint_path(run_dir, *final_phase(kind))
    if not train and not done.exists() and published_generators(profile) and all(p.exists() for p in logs):
        print(
            f"{kind}: not published, but the published run's log is ({', '.join(_relative(p) for p in logs)}); "
            f"showing it; {TRAIN_HINT}"
        )
        return None
    return load_or_train(kind, profile, data, run_dir, train=True)


# ----------------------------------------------------------------------------------------------
# the posterior codes of labelled poems
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def posterior_codes(
    model: Any, data: PreparedData, split: str = "cqcf_test", seed: int = 0, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior codes z_post of the poems of ``split`` (one instance per poem, its first keyword), eval mode.

    The labels fed to the posterior are the model's own guesses argmax q(y_k|x,w), never the annotations, so
    a code depends only on the poem and its keyword. Returns (z (n, Z), annotated labels (n, 2) with -1 where
    unannotated, guessed labels (n, 2)).
    """
    arrays = data.arrays(split)
    _, first = np.unique(arrays.poem_index, return_index=True)
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    zs, true, guess = [], [], []
    try:
        for start in range(0, len(first), batch_size):
            batch = {k: v.to(dev) for k, v in make_batch(arrays, first[start : start + batch_size]).items()}
            h_x, h_w = model.encode(batch)
            y = [logits.argmax(-1) for logits in model.classify_xw(h_x, h_w)]
            eps = torch.randn(h_x.size(0), model.posterior.noise_size, generator=gen).to(dev)
            zs.append(model.posterior_sample(h_x, h_w, y, eps).float().cpu().numpy())
            true.append(batch["labels"].cpu().numpy())
            guess.append(torch.stack(y, -1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(zs), np.concatenate(true), np.concatenate(guess)


# ----------------------------------------------------------------------------------------------
# the diagram of the whole model
# ----------------------------------------------------------------------------------------------

# name: (x, y, width, text, colour); axes coordinates of the box centre
_BOXES: dict[str, tuple[float, float, float, str, str]] = {
    "poem": (0.06, 0.78, 0.09, "poem x\n(4 lines)", "#eeeeee"),
    "kw": (0.06, 0.30, 0.09, "keyword w", "#eeeeee"),
    "enc_x": (0.22, 0.78, 0.14, "poem encoder\nbi-GRU → $h_x$", "#dddddd"),
    "enc_w": (0.22, 0.30, 0.14, "keyword encoder\nbi tanh-RNN → $h_w$", "#dddddd"),
    "q": (0.43, 0.93, 0.17, "classifier $q(y_k|x,w)$ on $[h_x;h_w]$\n(labels missing in training)", "#fde0c5"),
    "y": (0.43, 0.60, 0.17, "labels $\\tilde y_1,\\tilde y_2$: true,\nelse a Gumbel-max\nsample of $q$", "#fff3b0"),
    "p": (0.43, 0.07, 0.17, "classifier $p(y_k|w)$\n(labels missing at generation)", "#fde0c5"),
    "post": (
        0.66,
        0.82,
        0.19,
        "posterior: one MLP, no CBN\n$[h_x;h_w;b_1(\\tilde y_1);b_2(\\tilde y_2);\\varepsilon]\\to z_{post}$",
        "#f4b183",
    ),
    "prior1": (
        0.66,
        0.46,
        0.19,
        "prior branch 1 (living)\n$[\\varepsilon_1;h_w;a_1(\\tilde y_1)]$ → Lin–CBN–LReLU ×2\n→ Lin–BN → $z_1$",
        "#9dc3e6",
    ),
    "prior2": (
        0.66,
        0.24,
        0.19,
        "prior branch 2 (era)\n$[\\varepsilon_2;h_w;a_2(\\tilde y_2)]$ → Lin–CBN–LReLU ×2\n→ Lin–BN → $z_2$",
        "#9dc3e6",
    ),
    "disc": (
        0.89,
        0.64,
        0.17,
        "discriminator $D(z,\\tilde y)$\nprojection, spectral norm\n$L_D$, $L_G$: $z_{post}$ vs $[z_1;z_2]$",
        "#f8cbad",
    ),
    "dec": (
        0.89,
        0.22,
        0.17,
        "$\\tilde s=\\tanh(W[z;h_w;d(\\tilde y)])$\nline $i$ starts from $[\\tilde s;\\ell;\\pi_i]$\n"
        "GRU decoder, context $c_i$\n→ 4 lines",
        "#c5e0b4",
    ),
}
# (from, to, line style, curvature, label, label position); solid: training, dashed: generation
_ARROWS: tuple[tuple[str, str, str, float, str, tuple[float, float]], ...] = (
    ("poem", "enc_x", "-", 0.0, "", (0, 0)),
    ("kw", "enc_w", "-", 0.0, "", (0, 0)),
    ("enc_x", "q", "-", 0.0, "", (0, 0)),
    ("enc_w", "p", "-", 0.0, "", (0, 0)),
    ("q", "y", "-", 0.0, "", (0, 0)),
    ("enc_x", "post", "-", 0.0, "", (0, 0)),
    ("enc_w", "prior1", "-", 0.0, "", (0, 0)),
    ("enc_w", "prior2", "-", 0.0, "", (0, 0)),
    ("y", "post", "-", 0.0, "", (0, 0)),
    ("y", "prior1", "-", 0.0, "", (0, 0)),
    ("y", "prior2", "-", 0.0, "", (0, 0)),
    ("post", "disc", "-", 0.0, "real", (0.80, 0.76)),
    ("prior1", "disc", "-", 0.0, "fake: $[z_1;z_2]$", (0.80, 0.53)),
    ("post", "dec", "-", -0.3, "$z_{post}$ (training)", (0.86, 0.40)),
    ("prior2", "dec", "--", 0.0, "$[z_1;z_2]$\n(generation)", (0.778, 0.31)),
    ("p", "dec", "--", 0.0, "$\\arg\\max\\,p$ when no label", (0.62, 0.125)),
)


def _draw_box(ax: Any, x: float, y: float, width: float, text: str, colour: str) -> Any:
    height = 0.042 * (text.count("\n") + 1) + 0.02
    box = FancyBboxPatch(
        (x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.006", fc=colour, ec="#555555", lw=1
    )
    ax.add_patch(box)
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)
    return box


def model_diagram() -> Any:
    """Boxes-and-arrows drawing of MixPoet-AUS: encoders, classifiers, label sampling, implicit prior and
    posterior, discriminator, decoder. Solid arrows are the training path, dashed ones generation."""
    fig, ax = plt.subplots(figsize=(15, 7.5))
    ax.set(xlim=(0.0, 0.99), ylim=(0.0, 1.0))
    ax.axis("off")
    boxes = {name: _draw_box(ax, *spec) for name, spec in _BOXES.items()}
    for src, dst, style, rad, label, where in _ARROWS:
        ax.annotate(
            "",
            xy=_BOXES[dst][:2],
            xytext=_BOXES[src][:2],
            arrowprops={
                "arrowstyle": "-|>",
                "ls": style,
                "color": "#444444",
                "lw": 1.0,
                "patchA": boxes[src],
                "patchB": boxes[dst],
                "connectionstyle": f"arc3,rad={rad}",
            },
        )
        if label:
            ax.text(*where, label, fontsize=8, ha="center", color="#333333", bbox={"fc": "white", "ec": "none"})
    ax.set_title("MixPoet-AUS (solid arrows: training path; dashed: generation)", fontsize=11)
    return fig
