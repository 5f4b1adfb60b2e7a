"""Latent-space analysis helpers: PCA, separation ratio, mixture prior samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixpoet_lib.checkpoints import build_model
from mixpoet_lib.config import get_profile
from mixpoet_lib.data.vocab import SPECIALS, Vocab
from mixpoet_lib.evaluate.analysis import (
    MIXTURES,
    keyword_tensor,
    mixture_prior_samples,
    pca_2d,
    prior_spread,
    separation_ratio,
)


def test_pca_recovers_the_main_axis():
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    x = np.stack([3 * t, 3 * t, 0.1 * rng.normal(size=200)], axis=1)
    proj, ratio = pca_2d(x)
    assert proj.shape == (200, 2) and ratio[0] > 0.99
    assert abs(np.corrcoef(proj[:, 0], t)[0, 1]) > 0.999
    with pytest.raises(ValueError):
        pca_2d(np.zeros(3))


def test_separation_ratio_by_hand():
    z = np.array([[0.0], [2.0], [10.0], [12.0]])
    g = np.array([0, 0, 1, 1])
    # centroids 1 and 11, centre 6: between = 2·25 + 2·25 = 100; within = 4·1 = 4
    assert separation_ratio(z, g) == pytest.approx(25.0)


def test_mixture_prior_samples_shapes_and_seed():
    vocab = Vocab(SPECIALS + tuple("明月秋风"))
    for kind in ("igs", "aus"):
        model = build_model(kind, get_profile("smoke").model, len(vocab))
        z, y = mixture_prior_samples(model, vocab, "明月", n_per_mixture=8, seed=3)
        assert z.shape == (48, get_profile("smoke").model.latent_size) and y.shape == (48, 2)
        assert [tuple(r) for r in y[::8]] == list(MIXTURES)
        z2, _ = mixture_prior_samples(model, vocab, "明月", n_per_mixture=8, seed=3)
        assert np.array_equal(z, z2) and model.training
    with pytest.raises(ValueError, match="outside the vocabulary: 星"):
        keyword_tensor(vocab, "星月")
    with pytest.raises(ValueError, match="1 or 2 characters"):
        keyword_tensor(vocab, "明月秋")
    with pytest.raises(ValueError, match="no factor-conditioned prior"):
        mixture_prior_samples(build_model("basic", get_profile("smoke").model, len(vocab)), vocab, "明月")


@pytest.mark.parametrize("kind", ["igs", "aus"])
def test_interpolate_mixtures_endpoints_and_errors(kind):
    from mixpoet_lib.evaluate.analysis import interpolate_mixtures

    vocab = Vocab(SPECIALS + tuple("明月秋风"))
    torch.manual_seed(0)
    model = build_model(kind, get_profile("smoke").model, len(vocab)).eval()
    ts, s0 = interpolate_mixtures(model, vocab, "明月", (0, 1), (1, 0), steps=5, seed=2)
    assert list(ts) == [0.0, 0.25, 0.5, 0.75, 1.0] and s0.shape == (5, model.s0_size)
    # the endpoints are the ordinary decoder starts of mixtures A and B for the same noise
    with torch.no_grad():
        h_w = model.encode_keyword(keyword_tensor(vocab, "明月"))
        eps = torch.randn(1, model.cfg.latent_size, generator=torch.Generator().manual_seed(2))
        for t_idx, mix in ((0, (0, 1)), (-1, (1, 0))):
            y = [torch.tensor([m]) for m in mix]
            if kind == "aus":
                z = model.prior_sample(h_w, y, eps=eps)
            else:
                parts = eps.split(model.sub_size, dim=-1)
                z = torch.cat(
                    [mu + e * torch.exp(0.5 * lv) for (mu, lv), e in zip(model.prior_params(h_w, y), parts)], -1
                )
            torch.testing.assert_close(s0[t_idx], model.decoder_s0(z, h_w, y)[0])
    assert not torch.allclose(s0[0], s0[2])
    with pytest.raises(ValueError, match="steps"):
        interpolate_mixtures(model, vocab, "明月", (0, 1), (1, 0), steps=1)
    with pytest.raises(ValueError, match="out of range"):
        interpolate_mixtures(model, vocab, "明月", (5, 1), (1, 0))
    with pytest.raises(ValueError, match="factor model"):
        interpolate_mixtures(build_model("cvae", get_profile("smoke").model, len(vocab)), vocab, "明月", (0, 1), (1, 0))


class _StubPrior(torch.nn.Module):
    """z = (keyword code, y1) + noise·ε: the keyword moves dimension 0, the living label dimension 1."""

    def __init__(self, noise: float) -> None:
        super().__init__()
        self.w, self.noise = torch.nn.Parameter(torch.zeros(1)), noise

    def encode_keyword(self, keys: torch.Tensor) -> torch.Tensor:
        return keys[:, 1:2].float()  # the first character's id

    def prior_sample(self, h_w: torch.Tensor, y: list[torch.Tensor], n: int = 1) -> torch.Tensor:
        mean = torch.cat([h_w, y[0].float().view(-1, 1)], dim=1)
        return mean.repeat(n, 1) + self.noise * torch.randn(n, 2)


def test_prior_spread_separates_noise_mixture_and_keyword_by_hand():
    """Noise σ = 0: noise 0; the six mixture means put y1 = 0, 0, 1, 1, 2, 2 on dimension 1 (var 0.8); two keywords
    whose codes differ by 3 give a keyword variance 3² / 2. σ = 2 on 2 dimensions: noise ≈ 2 · 4 = 8."""
    vocab = Vocab(SPECIALS + tuple("山水"))
    exact = prior_spread(_StubPrior(0.0), vocab, ["山", "水"], n=8)
    gap = vocab.encode("水")[0] - vocab.encode("山")[0]
    assert exact == pytest.approx({"noise": 0.0, "mixture": 0.8, "keyword": gap**2 / 2})
    noisy = prior_spread(_StubPrior(2.0), vocab, ["山"], n=4000)
    assert noisy["noise"] == pytest.approx(8.0, rel=0.05) and np.isnan(noisy["keyword"])
    with pytest.raises(ValueError, match="n ≥ 2"):
        prior_spread(_StubPrior(0.0), vocab, ["山"], n=1)
