"""The paper's Figures 4a, 4b, 4d and 5 drawn from the data of :mod:`mixpoet_lib.evaluate.figures`.

Each function returns the matplotlib figure and, given a ``profile`` (the figure folder of that run, see
:func:`mixpoet_lib.plots.save_figure`) or a ``folder``, saves it as ``fig4a_prior_samples``,
``fig4b_lm_embedding``, ``fig4d_keyword_mixtures`` or ``fig5_case_studies`` (.png and .svg), so a reviewer finds
each paper figure by its number. A system is drawn in its colour of :data:`mixpoet_lib.plots.SYSTEM_COLORS`
in every figure; the six mixtures have colours of their own (:data:`MIXTURE_COLORS`), the same in every panel.
Chinese labels need the CJK font of :func:`mixpoet_lib.plots.setup_style` (call it once before plotting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from mixpoet_lib.config import FACTOR_NAMES
from mixpoet_lib.evaluate.analysis import MIXTURES
from mixpoet_lib.evaluate.figures import Attribution, Projection, mixture_name
from mixpoet_lib.evaluate.systems import SYSTEM_TITLES
from mixpoet_lib.plots import save_figure, system_color

__all__ = [
    "FIGURE_NAMES",
    "MIXTURE_COLORS",
    "FACTOR_COLORS",
    "fig4a_prior_samples",
    "fig4b_lm_embedding",
    "fig4d_keyword_mixtures",
    "fig5_case_studies",
]

FIGURE_NAMES = {
    "fig4a": "fig4a_prior_samples",
    "fig4b": "fig4b_lm_embedding",
    "fig4d": "fig4d_keyword_mixtures",
    "fig5": "fig5_case_studies",
}
# one colour per (living, era) mixture, in the order of evaluate.analysis.MIXTURES (seaborn "colorblind")
MIXTURE_COLORS: dict[str, str] = {
    mixture_name(m): c for m, c in zip(MIXTURES, ("#0173B2", "#DE8F05", "#029E73", "#D55E00", "#CC78BC", "#CA9161"))
}
FACTOR_COLORS = {"living": "#F0A35E", "era": "#7FB3D5"}  # Fig. 5: characters that carry each factor
HUMAN_STYLE = {"human MC": ("^", "#5A5A5A"), "human PT": ("s", "#B0B0B0"), "human MC&PT": ("D", "#2B2B2B")}


def _finish(fig: Any, key: str, profile: str | None, folder: str | Path | None) -> Any:
    """Lay the figure out and save it under its paper name when a profile or folder is given."""
    fig.tight_layout()
    if profile is not None or folder is not None:
        save_figure(fig, FIGURE_NAMES[key], profile or "tutorial", Path(folder) if folder is not None else None)
    return fig


def _title(system: str) -> str:
    return SYSTEM_TITLES.get(system, system)


def fig4a_prior_samples(
    views: Mapping[str, Projection], keyword: str, *, profile: str | None = None, folder: str | Path | None = None
) -> Any:
    """Fig. 4a: one panel per system (e.g. AUS and IGS side by side) of its prior samples, coloured by mixture.

    The panel frame and title carry the system's colour; the title gives the separation ratio.
    """
    fig, axes = plt.subplots(1, len(views), figsize=(5.2 * len(views), 4.6), squeeze=False)
    for ax, (system, view) in zip(axes[0], views.items()):
        for name, color in MIXTURE_COLORS.items():
            sel = view.groups == name
            ax.scatter(view.xy[sel, 0], view.xy[sel, 1], s=7, alpha=0.55, color=color, label=name, linewidths=0)
        ax.set_title(f"{_title(system)}: separation {view.separation:.2f}", color=system_color(system))
        for side in ax.spines.values():
            side.set_edgecolor(system_color(system))
        ax.set(xlabel=f"PC 1 ({view.explained[0]:.0%})", ylabel=f"PC 2 ({view.explained[1]:.0%})")
    axes[0, -1].legend(markerscale=2.5, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), title="mixture")
    fig.suptitle(f"Fig. 4a · prior samples z ~ p(z | w = {keyword}, y) under the six mixtures")
    return _finish(fig, "fig4a", profile, folder)


def fig4b_lm_embedding(
    view: Projection, system: str = "aus", *, profile: str | None = None, folder: str | Path | None = None
) -> Any:
    """Fig. 4b: human MC / PT poems (grey shapes) and the system's generated MC&PT poems (its colour) in 2-D."""
    fig, ax = plt.subplots(figsize=(6.4, 5))
    for group in dict.fromkeys(view.groups.tolist()):
        sel = view.groups == group
        marker, color = HUMAN_STYLE.get(group, ("o", system_color(system)))
        label = group if group in HUMAN_STYLE else f"{_title(system)}: {group}"
        ax.scatter(view.xy[sel, 0], view.xy[sel, 1], s=12, marker=marker, color=color, alpha=0.6, label=label)
    ax.set(xlabel=f"PC 1 ({view.explained[0]:.0%})", ylabel=f"PC 2 ({view.explained[1]:.0%})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Fig. 4b · poems embedded by the character LM (mean hidden state)")
    return _finish(fig, "fig4b", profile, folder)


def fig4d_keyword_mixtures(
    top: Mapping[str, Sequence[tuple[str, float]]],
    system: str = "aus",
    *,
    profile: str | None = None,
    folder: str | Path | None = None,
) -> Any:
    """Fig. 4d: per mixture, the keywords the system's p(y | w) finds most probable (bars in the system's colour)."""
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.4), squeeze=False)
    for ax, (name, ranked) in zip(axes.flat, top.items()):
        words = [w for w, _ in ranked][::-1]
        ax.barh(range(len(words)), [p for _, p in ranked][::-1], color=system_color(system))
        ax.set_yticks(range(len(words)), words)
        ax.set_title(name, color=MIXTURE_COLORS.get(name, "black"))
        ax.set_xlabel("p(y | w)")
    for ax in list(axes.flat)[len(top) :]:
        ax.axis("off")
    fig.suptitle(f"Fig. 4d · keywords {_title(system)}'s p(y | w) ranks most probable per mixture")
    return _finish(fig, "fig4d", profile, folder)


def _draw_poem(ax: Any, att: Attribution, top_k: int) -> None:
    """The poem's characters on a grid; the top-k characters of each factor on that factor's colour."""
    marks: dict[tuple[int, int], str] = {}
    for factor in FACTOR_NAMES[::-1]:  # living drawn last: it wins a character both factors picked
        for pos in att.top_chars(factor, top_k):
            marks[pos] = FACTOR_COLORS[factor]
    width = max(len(line) for line in att.lines)
    ax.set(xlim=(-0.5, width - 0.5), ylim=(len(att.lines) - 0.5, -0.5))
    for i, line in enumerate(att.lines):
        for j, ch in enumerate(line):
            box = (
                {"boxstyle": "round,pad=0.15", "facecolor": marks[(i, j)], "edgecolor": "none"}
                if (i, j) in marks
                else None
            )
            ax.text(j, i, ch, ha="center", va="center", fontsize=15, bbox=box)
    ax.axis("off")


def fig5_case_studies(
    cases: Sequence[tuple[str, str, Attribution]],
    repeats: Sequence[tuple[str, int]] = (),
    repeat_system: str = "basic",
    top_k: int = 3,
    *,
    profile: str | None = None,
    folder: str | Path | None = None,
) -> Any:
    """Fig. 5: each case (system, caption, attribution) as a poem with the characters that carry each factor
    marked; with ``repeats`` (line, count) a last panel shows the lines ``repeat_system`` reuses across keywords."""
    n = len(cases) + bool(repeats)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    for ax, (system, caption, att) in zip(axes[0], cases):
        _draw_poem(ax, att, top_k)
        probs = ", ".join(f"p({f}) {p:.2f}" for f, p in att.base.items())
        ax.set_title(f"{_title(system)} · {caption}\n{probs}", fontsize=9, color=system_color(system))
    if repeats:
        ax = axes[0, -1]
        lines = [s for s, _ in repeats][::-1]
        ax.barh(range(len(lines)), [c for _, c in repeats][::-1], color=system_color(repeat_system))
        ax.set_yticks(range(len(lines)), lines)
        ax.set(xlabel="poems with this line", title=f"{_title(repeat_system)}: repeated lines")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in FACTOR_COLORS.values()]
    fig.legend(handles, [f"carries {f}" for f in FACTOR_COLORS], loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("Fig. 5 · case studies (marked: characters whose deletion lowers the judge's probability most)")
    fig.subplots_adjust(bottom=0.12)
    return _finish(fig, "fig5", profile, folder)
