"""Plotting helpers: a CJK font for Chinese labels, reproducible figure files, and the data figures."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import font_manager

from mixpoet_lib.config import FACTOR_CLASSES, FACTOR_CLASSES_ZH, FACTOR_NAMES, FACTOR_TITLES
from mixpoet_lib.evaluate.claims import CHANCE
from mixpoet_lib.evaluate.paper import FIG3
from mixpoet_lib.evaluate.systems import SYSTEM_TITLES, SYSTEMS
from mixpoet_lib.paths import ENV_FONT, figures_dir

FIG3_NAME = "fig3_factor_control"  # file names (save_figure) of the paper-figure counterparts
FIG4C_NAME = "fig4c_topk_words"

# One colour per system in every figure of the kit (seaborn "deep" hues; human poems in grey). Systems the kit does
# not know (an added baseline) fall back to black so a missing entry is visible rather than silently recoloured.
SYSTEM_COLORS: dict[str, str] = {
    "gt": "#8C8C8C",
    "basic": "#4C72B0",
    "fbasic": "#64B5CD",
    "cvae": "#DD8452",
    "igs": "#55A868",
    "aus": "#C44E52",
    "aus_st": "#8172B3",
}


def system_color(system: str) -> str:
    """The colour that stands for `system` in every figure (black for a system without an entry)."""
    return SYSTEM_COLORS.get(system, "#000000")


FONT_FAMILIES = [
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "SimHei",
]
FONT_FILES = [
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
]


def use_cjk_font(path: str | None = None, quiet: bool = False) -> str | None:
    """Register and select a CJK font (argument, $MIXPOET_CJK_FONT, system fonts); warn and return None if none."""
    explicit = path or os.environ.get(ENV_FONT)
    if explicit and not Path(explicit).is_file():
        warnings.warn(f"{ENV_FONT}={explicit!r} is not a font file; looking for system CJK fonts instead", stacklevel=2)
        explicit = None
    chosen: list[str] = []
    for file in filter(None, [explicit, *FONT_FILES]):
        if Path(file).is_file():
            font_manager.fontManager.addfont(file)
            if file == explicit:
                chosen.append(font_manager.FontProperties(fname=file).get_name())
    have = {f.name for f in font_manager.fontManager.ttflist}
    chosen += [name for name in FONT_FAMILIES if name in have and name not in chosen]
    if not chosen:
        if not quiet:
            warnings.warn(
                "no CJK font found: Chinese labels will render as boxes. Install fonts-wqy-microhei or "
                f"fonts-noto-cjk, or set {ENV_FONT}=/path/to/font.ttf",
                stacklevel=2,
            )
        return None
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["font.sans-serif"] = [*chosen, "DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = False
    return chosen[0]


def setup_style(font: str | None = None) -> str | None:
    """Apply the kit's seaborn theme and then the CJK font (seaborn resets fonts, so order matters)."""
    sns.set_theme(style="whitegrid", context="notebook")
    matplotlib.rcParams["svg.hashsalt"] = "mixpoet-kit"  # byte-stable SVG files
    matplotlib.rcParams["figure.dpi"] = 100
    return use_cjk_font(font)


def save_figure(fig: Any, name: str, profile: str = "tutorial", folder: Path | None = None) -> list[Path]:
    """Save ``fig`` as ``<name>.png`` and ``<name>.svg`` in the profile's figure folder (no timestamps)."""
    folder = folder or figures_dir(profile)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None})):
        path = folder / f"{name}.{ext}"
        fig.savefig(path, bbox_inches="tight", metadata=meta)
        out.append(path)
    return out


def label_distribution(label_stats: dict[str, dict[str, int]], zh: bool = True) -> Any:
    """Bar charts of the CQCF label counts per factor class and split."""
    names = FACTOR_CLASSES_ZH if zh else FACTOR_CLASSES
    rows = []
    for split in ("cqcf_train", "cqcf_valid", "cqcf_test"):
        stats = label_stats[split]
        for k, factor in enumerate(("living", "era")):
            for c in (-1, *range(len(names[factor]))):
                label = ("未标注" if zh else "unlabelled") if c == -1 else names[factor][c]
                rows.append(
                    {
                        "split": split.removeprefix("cqcf_"),
                        "factor": factor,
                        "class": label,
                        "poems": stats[f"y{k + 1}={c}"],
                    }
                )
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, factor in zip(axes, ("living", "era")):
        sns.barplot(data=df[df.factor == factor], x="class", y="poems", hue="split", ax=ax)
        ax.set_title(f"{FACTOR_TITLES[factor]} ({'生活经历' if factor == 'living' else '历史背景'})")
        ax.set_xlabel("")
    fig.tight_layout()
    return fig


def cooccurrence_heatmap(pairs: dict[str, int], zh: bool = True) -> Any:
    """Heat map of how often each (living, era) label pair occurs, -1 = unlabelled."""
    names = FACTOR_CLASSES_ZH if zh else FACTOR_CLASSES
    unl = "未标注" if zh else "unlabelled"
    grid = np.zeros((4, 3), dtype=int)
    for key, n in pairs.items():
        a, b = (int(x) for x in key.split())
        grid[a + 1, b + 1] = n
    fig, ax = plt.subplots(figsize=(5.2, 4))
    sns.heatmap(
        grid,
        annot=True,
        fmt="d",
        cmap="rocket_r",
        cbar=False,
        ax=ax,
        xticklabels=[unl, *names["era"]],
        yticklabels=[unl, *names["living"]],
    )
    ax.set_xlabel("历史背景 historical background")
    ax.set_ylabel("生活经历 living experience")
    ax.set_title("CQCF train: label co-occurrence")
    fig.tight_layout()
    return fig


def length_split(line_lengths: dict[str, dict[str, int]]) -> Any:
    """Stacked bars of 5- vs 7-character poems per split."""
    df = pd.DataFrame(line_lengths).T
    fig, ax = plt.subplots(figsize=(7, 3.2))
    df.plot(kind="barh", stacked=True, ax=ax, color=["#4C72B0", "#DD8452"])
    ax.set_xlabel("poems")
    ax.set_title("五言 / 七言: 5- and 7-character poems per split")
    fig.tight_layout()
    return fig


def char_frequency_rank(texts: Sequence[str], top_labels: int = 12) -> Any:
    """Log-log rank/frequency plot of characters (Zipf); the most frequent ones are marked and named in a box
    (on a log axis their labels would overlap)."""
    counts = Counter(ch for t in texts for ch in t if ch != "|")
    ranked = counts.most_common()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.loglog(range(1, len(ranked) + 1), [n for _, n in ranked], lw=1.5)
    top = ranked[:top_labels]
    ax.plot(range(1, len(top) + 1), [n for _, n in top], "o", ms=3, color="C3")
    names = " ".join(ch for ch, _ in top)
    ax.text(0.03, 0.05, f"ranks 1–{len(top)} (dots):\n{names}", transform=ax.transAxes, ha="left", va="bottom",
            fontsize=10, bbox={"fc": "white", "ec": "#cccccc"})  # fmt: skip
    ax.set_xlabel("rank")
    ax.set_ylabel("count")
    ax.set_title(f"character frequency ({len(ranked)} distinct characters)")
    fig.tight_layout()
    return fig


def _stat(summary: pd.DataFrame, system: str, metric: str) -> tuple[float, float]:
    row = summary[(summary["system"] == system) & (summary["metric"] == metric)]
    return (float(row["mean"].iloc[0]), float(row["std"].iloc[0])) if len(row) else (np.nan, np.nan)


def _control_panel(ax: Any, summary: pd.DataFrame, factor: str, systems: list[str], ceiling: dict[str, Any]) -> None:
    """One factor of :func:`factor_control_figure`: bars per system and the reference lines."""
    width = 0.38
    for i, system in enumerate(systems):
        for j, (metric, hatch) in enumerate(((f"{factor}_acc", ""), (f"{factor}_f1", "//"))):
            mean, std = _stat(summary, system, metric)
            ax.bar(
                i + (j - 0.5) * width,
                mean,
                width,
                yerr=std,
                capsize=3,
                color=system_color(system),
                hatch=hatch,
                edgecolor="white",
            )
    refs: list[tuple[float, str, Any, str]] = [(CHANCE[factor], "k", "--", "chance")]
    for key, style, name in (("accuracy", ":", "judge accuracy"), ("macro_f1", "-.", "judge macro-F1")):
        if np.isfinite(float(ceiling.get(factor, {}).get(key, np.nan))):
            refs.append((float(ceiling[factor][key]), "tab:gray", style, f"{name} on CQCF test (ceiling)"))
    refs.append((FIG3[f"{factor}_acc_at_least"], "tab:red", (0, (1, 3)), "paper: MixPoet accuracy above"))
    for y, color, style, name in refs:
        ax.axhline(y, color=color, ls=style, lw=1.3, label=name)
    ax.set_xticks(range(len(systems)), [SYSTEM_TITLES.get(s, s) for s in systems], rotation=20, ha="right")
    ax.set(ylim=(0, 1), title=f"{FACTOR_TITLES[factor]}", ylabel="share of mixture poems")


def factor_control_figure(summary: pd.DataFrame, ceiling: dict[str, Any] | None = None) -> Any:
    """The paper's Fig. 3 counterpart: judged accuracy (plain bars) and macro-F1 (hatched) per system and factor,
    with chance, the judges' own test scores (the ceiling) and the paper's stated bound; legend outside.

    ``summary`` is a length-'all' summary (columns system, metric, mean, std); systems without a value are left out.
    """
    systems = [s for s in SYSTEMS if np.isfinite(_stat(summary, s, "living_acc")[0])]
    if not systems:
        raise ValueError("the summary holds no factor-control numbers (living_acc) for any system")
    fig, axes = plt.subplots(1, len(FACTOR_NAMES), figsize=(4.2 * len(FACTOR_NAMES) + 2.8, 3.8), sharey=True)
    for ax, factor in zip(axes, FACTOR_NAMES):
        _control_panel(ax, summary, factor, systems, ceiling or {})
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [
        plt.Rectangle((0, 0), 1, 1, facecolor="0.6", edgecolor="white"),
        plt.Rectangle((0, 0), 1, 1, facecolor="0.6", edgecolor="white", hatch="//"),
    ]
    labels += ["accuracy (bars)", "macro-F1 (hatched bars)"]
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False)
    fig.suptitle("Factor control of the mixture poems (cf. the paper's Fig. 3); error bars: std over seeds")
    fig.tight_layout()
    return fig


def topk_words_figure(curves: dict[str, np.ndarray]) -> Any:
    """The paper's Fig. 4c counterpart: accumulated frequency of the top-k words per system; legend outside."""
    if not curves:
        raise ValueError("no top-k word curves to plot")
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for system in [s for s in SYSTEMS if s in curves] + sorted(set(curves) - set(SYSTEMS)):
        y = np.asarray(curves[system], dtype=float)
        ax.plot(
            np.arange(1, len(y) + 1),
            y,
            marker=".",
            ms=3,
            color=system_color(system),
            label=SYSTEM_TITLES.get(system, system),
            lw=2 if system == "gt" else 1.5,
        )
    ax.set(
        xlabel="k (most frequent words)",
        ylabel="share of all words",
        ylim=(0, None),
        title="Top-k word accumulated frequency (cf. the paper's Fig. 4c)",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
