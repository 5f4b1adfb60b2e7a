"""CJK font set-up and reproducible figure files."""

from __future__ import annotations

import warnings

import matplotlib
import matplotlib.pyplot as plt
import pytest

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
