"""CJK font set-up and reproducible figure files."""

from __future__ import annotations

import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from mixpoet_lib import plots


def test_cjk_font_renders_without_missing_glyphs(monkeypatch):
    monkeypatch.delenv("MIXPOET_CJK_FONT", raising=False)
    name = plots.setup_style()
    if name is None:
        pytest.skip("no CJK font on this machine (scripts/install_fonts.sh installs one)")
    assert matplotlib.rcParams["font.sans-serif"][0] == name and not matplotlib.rcParams["axes.unicode_minus"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig, ax = plt.subplots()
        ax.set_title("床前明月光 疑是地上霜")
        ax.set_xlabel("生活经历 · 历史背景")
        fig.canvas.draw()
        plt.close(fig)
    assert not [w for w in caught if "missing from font" in str(w.message)]


def test_bad_font_variable_warns_but_does_not_crash(monkeypatch, tmp_path):
    monkeypatch.setenv("MIXPOET_CJK_FONT", str(tmp_path / "nope.ttf"))
    with pytest.warns(UserWarning, match="not a font file"):
        plots.use_cjk_font()


def test_save_figure_is_byte_stable(tmp_path):
    plots.setup_style()
    paths = []
    for run in range(2):
        fig = plots.cooccurrence_heatmap({"1 -1": 5, "0 1": 3, "-1 0": 7})
        paths.append(plots.save_figure(fig, f"heat{run}", folder=tmp_path))
        plt.close(fig)
    for a, b in zip(*paths):
        assert a.suffix == b.suffix and a.read_bytes() == b.read_bytes()
    assert {p.suffix for p in paths[0]} == {".png", ".svg"}


def test_data_figures_draw(smoke_data):
    s = smoke_data.summary
    for fig in (
        plots.label_distribution(s["labels"]),
        plots.length_split(s["line_lengths"]),
        plots.char_frequency_rank([p.content for p in smoke_data.poems("cqcf_valid")]),
    ):
        assert fig.axes
        plt.close(fig)


def _control_summary():
    rows = []
    for system, (acc, f1) in {"igs": (0.7, 0.65), "aus": (0.8, 0.78), "cvae": (float("nan"), float("nan"))}.items():
        for factor in ("living", "era"):
            rows += [
                {"system": system, "metric": f"{factor}_acc", "mean": acc, "std": 0.02},
                {"system": system, "metric": f"{factor}_f1", "mean": f1, "std": 0.03},
            ]
    return pd.DataFrame(rows)


def test_fig3_factor_control_bars_colours_and_reference_lines(tmp_path):
    ceiling = {"living": {"accuracy": 0.82, "macro_f1": 0.81}, "era": {"accuracy": 0.65, "macro_f1": 0.64}}
    fig = plots.factor_control_figure(_control_summary(), ceiling)
    living, era = fig.axes
    bars = [p for p in living.patches if p.get_height() > 0]
    assert [round(b.get_height(), 2) for b in bars] == [0.7, 0.65, 0.8, 0.78]  # IGS acc, F1, AUS acc, F1 (no CVAE)
    assert to_hex(bars[0].get_facecolor()) == plots.system_color("igs").lower()
    assert to_hex(bars[2].get_facecolor()) == plots.system_color("aus").lower()
    levels = sorted(round(line.get_ydata()[0], 3) for line in era.get_lines() if not line.get_label().startswith("_"))
    assert levels == [0.5, 0.6, 0.64, 0.65]  # chance, paper's bound, judge macro-F1, judge accuracy
    legend = fig.legends[0]
    assert legend.get_bbox_to_anchor().x0 >= fig.bbox.x1 - 1  # outside the panels, right of the figure
    assert [p.name for p in plots.save_figure(fig, plots.FIG3_NAME, folder=tmp_path)] == [
        "fig3_factor_control.png",
        "fig3_factor_control.svg",
    ]
    plt.close(fig)
    with pytest.raises(ValueError, match="living_acc"):
        plots.factor_control_figure(_control_summary()[lambda d: d["system"] == "cvae"])


def test_fig4c_topk_word_curves(tmp_path):
    curves = {"basic": np.array([0.2, 0.3, 0.35]), "gt": np.array([0.01, 0.02, 0.03])}
    fig = plots.topk_words_figure(curves)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["GT (human)", "Basic"]  # the kit's system order
    assert to_hex(lines["Basic"].get_color()) == plots.system_color("basic").lower()
    assert lines["Basic"].get_xdata().tolist() == [1, 2, 3]
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.bbox.x1 - 1
    assert plots.save_figure(fig, plots.FIG4C_NAME, folder=tmp_path)[0].name.startswith("fig4c_")
    plt.close(fig)
    with pytest.raises(ValueError, match="no top-k"):
        plots.topk_words_figure({})
