"""Data and drawings of the paper's Figures 4a, 4b, 4d and 5, on tiny random-weight models and hand-made inputs."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from mixpoet_lib import paper_figures as PF
from mixpoet_lib import plots
from mixpoet_lib.checkpoints import build_model
from mixpoet_lib.config import get_profile
from mixpoet_lib.data.vocab import SPECIALS, Vocab
from mixpoet_lib.evaluate import figures as FD
from mixpoet_lib.models.judges import CharLM, JudgeClassifier
from mixpoet_lib.train.judges import classify

matplotlib.use("Agg")
plots.use_cjk_font(quiet=True)  # Chinese tick labels render where a CJK font is installed
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMOKE = get_profile("smoke")
CHARS = "春风秋月山水花落人归白日依尽黄河入海流欲穷千里目更上一层楼"
VOCAB = Vocab(SPECIALS + tuple(dict.fromkeys(CHARS)))
POEMS = ["白日依山尽|黄河入海流|欲穷千里目|更上一层楼", "春风花落尽|秋月水山流|人归千里目|白日上层楼"]


def _model(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(kind, SMOKE.model, len(VOCAB)).eval()


def _written(folder, key):
    return sorted(p.name for p in folder.iterdir() if p.stem == PF.FIGURE_NAMES[key])


def test_prior_projection_and_fig4a(tmp_path):
    views = {s: FD.prior_projection(_model(s), VOCAB, "春风", n_per_mixture=20, seed=3) for s in ("aus", "igs")}
    for view in views.values():
        assert view.xy.shape == (120, 2) and len(view.groups) == 120
        assert sorted(set(view.groups)) == sorted(PF.MIXTURE_COLORS) and (view.groups == "MC&PT").sum() == 20
        assert np.isfinite(view.separation) and 0 < view.explained.sum() <= 1
    again = FD.prior_projection(_model("aus"), VOCAB, "春风", n_per_mixture=20, seed=3)
    assert np.array_equal(again.xy, views["aus"].xy)  # seeded
    fig = PF.fig4a_prior_samples(views, "春风", folder=tmp_path)
    assert len(fig.axes) == 2 and _written(tmp_path, "fig4a") == ["fig4a_prior_samples.png", "fig4a_prior_samples.svg"]
    with pytest.raises(ValueError, match="no factor-conditioned prior"):
        FD.prior_projection(_model("basic"), VOCAB)


def test_lm_embeddings_ignore_padding():
    torch.manual_seed(0)
    lm = CharLM(VOCAB, emb=8, hidden=12).eval()
    short = "白日依山尽|黄河入海流|欲穷千里目|更上一层楼"
    long = "白日依山尽尽尽|黄河入海流流流|欲穷千里目目目|更上一层楼楼楼"
    both = FD.lm_embeddings(lm, [short, long], batch_size=2)
    assert both.shape == (2, 12)
    assert np.allclose(FD.lm_embeddings(lm, [short]), both[:1], atol=1e-6)


def test_bridge_position_by_hand():
    a = np.array([[-1.0, 0.0], [1.0, 0.0]])  # centre (0, 0)
    b = np.array([[2.0, 1.0], [2.0, -1.0]])  # centre (2, 0)
    t = FD.bridge_position(np.array([[1.0, 5.0], [-2.0, 0.0], [2.0, 0.0]]), a, b)
    assert t.tolist() == pytest.approx([0.5, -1.0, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        FD.bridge_position(a, a[:1], b)


def test_bridge_projection_and_fig4b(tmp_path):
    torch.manual_seed(1)
    lm = CharLM(VOCAB, emb=8, hidden=12)
    groups = {"human MC": POEMS * 3, "human PT": POEMS[::-1] * 2, "human MC&PT": [], "generated MC&PT": POEMS}
    view = FD.bridge_projection(lm, groups)
    assert view.xy.shape == (12, 2) and list(dict.fromkeys(view.groups)) == ["human MC", "human PT", "generated MC&PT"]
    assert set(view.stats) >= {"generated MC&PT: median t", "human MC: share 0 ≤ t ≤ 1"}
    assert lm.training  # the training mode is restored
    PF.fig4b_lm_embedding(view, "aus", folder=tmp_path)
    assert len(_written(tmp_path, "fig4b")) == 2
    with pytest.raises(ValueError, match=r"several line lengths \[5, 7\]"):
        FD.bridge_projection(
            lm, {**groups, "human PT": ["白日依山尽尽尽|黄河入海流流流|欲穷千里目目目|更上一层楼楼楼"]}
        )
    with pytest.raises(ValueError, match="human PT"):
        FD.bridge_projection(lm, {"human MC": POEMS, "generated MC&PT": POEMS})


def test_labelled_human_poems_and_candidates(smoke_data):
    groups = FD.labelled_human_poems(smoke_data)
    labels = {p.content: p.labels for p in smoke_data.poems("cqcf_test")}
    assert groups["human MC"] and groups["human PT"]
    assert all(labels[p][0] == 0 and labels[p][1] != 0 for p in groups["human MC"])
    assert all(labels[p][1] == 0 and labels[p][0] != 0 for p in groups["human PT"])
    assert all(labels[p] == (0, 0) for p in groups["human MC&PT"])
    sevens = FD.labelled_human_poems(smoke_data, length=7)
    assert all(len(p.split("|")[0]) == 7 for g in sevens.values() for p in g)
    assert sum(map(len, sevens.values())) < sum(map(len, groups.values()))
    kws = FD.candidate_keywords(smoke_data, min_count=5, limit=50)
    assert 0 < len(kws) <= 50 and all(1 <= len(k) <= 2 and not smoke_data.vocab.unknown(k) for k in kws)


def test_keyword_mixture_probs_top_keywords_and_fig4d(tmp_path):
    model = _model("aus", 2)
    keywords = ["春", "春风", "山水", "月", "黄河", "花"]
    probs = FD.keyword_mixture_probs(model, VOCAB, keywords, batch_size=4)
    assert probs.shape == (6, 6) and np.allclose(probs.sum(1), 1.0, atol=1e-5)  # Σ_y1 Σ_y2 p(y1|w) p(y2|w) = 1
    assert np.allclose(FD.keyword_mixture_probs(model, VOCAB, ["春风"]), probs[1:2], atol=1e-6)  # padding-free
    top = FD.top_keywords(keywords, probs, k=3)
    assert list(top) == [FD.mixture_name(m) for m in ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1))]
    for j, ranked in enumerate(top.values()):
        assert [p for _, p in ranked] == sorted(probs[:, j], reverse=True)[:3]
    with pytest.raises(ValueError, match="probs must be"):
        FD.top_keywords(keywords[:2], probs)
    fig = PF.fig4d_keyword_mixtures(top, "aus", folder=tmp_path)
    assert len([ax for ax in fig.axes if ax.has_data()]) == 6 and len(_written(tmp_path, "fig4d")) == 2


def test_factor_attribution_repeats_and_fig5(tmp_path):
    torch.manual_seed(3)
    judges = {f: JudgeClassifier(VOCAB, f, emb=8, hidden=8).eval() for f in ("living", "era")}
    att = FD.factor_attribution(judges, POEMS[0], (0, 1))
    assert [len(row) for row in att.drops["living"]] == [5, 5, 5, 5] and set(att.base) == {"living", "era"}
    without = "白日山尽|黄河入海流|欲穷千里目|更上一层楼"  # line 1, character 3 (依) deleted
    p = classify(judges, [POEMS[0], without])
    assert att.drops["era"][0][2] == pytest.approx(p[0]["era"]["probs"][1] - p[1]["era"]["probs"][1], abs=1e-6)
    top = att.top_chars("living", 3)
    assert len(top) <= 3 and all(att.drops["living"][i][j] > 0 for i, j in top)
    only_era = FD.factor_attribution(judges, POEMS[0], (-1, 0))
    assert set(only_era.drops) == {"era"} and only_era.top_chars("living") == []
    poems = ["甲乙|丙丁|戊己|庚辛", "甲乙|丙丁|子丑|寅卯", "甲乙|辰巳|午未|申酉"]
    assert FD.repeated_lines(poems) == [("甲乙", 3), ("丙丁", 2)]
    fig = PF.fig5_case_studies(
        [("aus", "MC&PT", att), ("aus", "MC&TT", only_era)], FD.repeated_lines(poems), folder=tmp_path
    )
    assert len(fig.axes) == 3 and len(_written(tmp_path, "fig5")) == 2
