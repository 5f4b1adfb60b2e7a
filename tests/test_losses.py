"""Hand-checkable tests of mixpoet_lib.models.losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixpoet_lib.metrics import shared_line_rate
from mixpoet_lib.models import losses
from mixpoet_lib.models.losses import (
    UNIFORM_ENTROPY_TERM,
    bow_loss,
    classifier_terms,
    dimension_share_above,
    entropy_term,
    frechet_distance,
    gaussian_kl,
    gaussian_kl_per_item,
    keyword_distill_ce,
    kl_share_above,
    line_cross_entropy,
    mahalanobis_distance,
    mean_pairwise_distance,
    mode_seeking_loss,
    relativistic_d_loss,
    relativistic_g_loss,
    stock_line_mask,
    supervised_ce,
    symmetric_mahalanobis,
    token_cross_entropy,
    unlikelihood_loss,
)


def _nll(row: list[float], target: int) -> float:
    return -(row[target] - math.log(sum(math.exp(v) for v in row)))


def test_line_ce_matches_hand_computation_and_ignores_pad():
    # B=2 items, S=2 lines, T=3 steps, V=3 classes; PAD = 0
    targets = torch.tensor([[[1, 2, 0], [2, 0, 0]], [[2, 1, 2], [1, 2, 0]]])
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 3, 3)
    lg = logits.tolist()
    line0 = [
        _nll(lg[0][0][0], 1),
        _nll(lg[0][0][1], 2),
        _nll(lg[1][0][0], 2),
        _nll(lg[1][0][1], 1),
        _nll(lg[1][0][2], 2),
    ]
    line1 = [_nll(lg[0][1][0], 2), _nll(lg[1][1][0], 1), _nll(lg[1][1][1], 2)]
    expected = 0.5 * (sum(line0) / len(line0) + sum(line1) / len(line1))
    got = line_cross_entropy(logits, targets)
    assert got.item() == pytest.approx(expected, abs=1e-5)
    mask = targets.ne(0)
    assert line_cross_entropy(logits[mask], targets).item() == pytest.approx(expected, abs=1e-5)  # packed form
    changed = logits.clone()
    changed[~mask] = 1e3 * torch.randn_like(changed[~mask])
    assert line_cross_entropy(changed, targets).item() == pytest.approx(expected, abs=1e-5)


def test_gaussian_kl_known_values():
    # KL(N(1, 4) || N(0, 1)) = 0.5 (4 + 1 − 1 − ln 4)
    mu, lv = torch.tensor([[1.0]]), torch.tensor([[math.log(4.0)]])
    assert gaussian_kl(mu, lv).item() == pytest.approx(0.5 * (4 - math.log(4)), abs=1e-6)
    # general: ln(σp/σq) + (σq² + (μq−μp)²)/(2σp²) − 1/2
    mq, sq, mp, sp = 0.5, 0.7, -1.0, 2.0
    hand = math.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5
    kl = gaussian_kl_per_item(
        torch.tensor([mq]), torch.tensor([2 * math.log(sq)]), torch.tensor([mp]), torch.tensor([2 * math.log(sp)])
    )
    assert kl.item() == pytest.approx(hand, abs=1e-6)
    # batch mean, sum over dims, free bits per dimension
    mu2 = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    lv2 = torch.zeros(2, 2)
    assert gaussian_kl(mu2, lv2).item() == pytest.approx(0 + (0.5 + 4.5) / 2, abs=1e-6)
    assert gaussian_kl(mu2, lv2, free_bits=1.0).item() == pytest.approx(1.0 + 2.5, abs=1e-6)
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_gaussian_kl_free_bits_per_subspace_by_hand():
    """Per-dimension KLs (0, 2.5): per dimension with λ = 1 the floor lifts the first to 1 (sum 3.5, no gradient to
    it); per sub-space the sum 2.5 is above 2 × 1 and stays 2.5 (every dimension keeps its gradient), and a sum
    under the floor is lifted to λ · D."""
    mu = torch.tensor([[0.0, 1.0], [0.0, 3.0]], requires_grad=True)
    lv = torch.zeros(2, 2)
    assert gaussian_kl(mu, lv, free_bits=1.0, scope="dimension").item() == pytest.approx(3.5, abs=1e-6)
    sub = gaussian_kl(mu, lv, free_bits=1.0, scope="subspace")
    assert sub.item() == pytest.approx(2.5, abs=1e-6)
    (grad,) = torch.autograd.grad(sub, mu)
    assert torch.allclose(grad, mu.detach() / 2)  # d/dμ of mean over 2 items of μ²/2
    assert gaussian_kl(mu, lv, free_bits=2.0, scope="subspace").item() == pytest.approx(4.0, abs=1e-6)
    assert gaussian_kl(mu, lv, free_bits=0.0, scope="subspace").item() == pytest.approx(2.5, abs=1e-6)
    with pytest.raises(ValueError, match="free-bits scope 'token'"):
        gaussian_kl(mu, lv, free_bits=1.0, scope="token")


def test_supervised_ce_labelled_only_and_zero_when_none():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    labels = torch.tensor([0, -1, 1])
    expected = (_nll([2.0, 0, 0], 0) + _nll([0, 0, 5.0], 1)) / 2
    assert supervised_ce(logits, labels, labels.ge(0).float()).item() == pytest.approx(expected, abs=1e-5)
    none = torch.tensor([-1, -1, -1])
    assert supervised_ce(logits, none, none.ge(0).float()).item() == pytest.approx(0.0, abs=1e-8)


def test_entropy_term_uniform_is_minus_0712():
    mask = torch.zeros(5)
    total = entropy_term(torch.zeros(5, 3), mask) + entropy_term(torch.zeros(5, 2), mask)
    assert total.item() == pytest.approx(-0.712, abs=1e-3)  # exactly −0.71278; the repo log shows −0.712
    assert total.item() == pytest.approx(UNIFORM_ENTROPY_TERM, abs=1e-6)
    # labelled items are ignored; all labelled → 0
    peaked = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert entropy_term(peaked, torch.tensor([1.0, 0.0])).item() == pytest.approx(-math.log(3) / 3, abs=1e-6)
    assert entropy_term(peaked, torch.ones(2)).item() == pytest.approx(0.0, abs=1e-8)


def test_keyword_distill_and_classifier_terms():
    lw = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    idx = torch.tensor([0, 1])
    expected = (_nll([1.0, 0, -1.0], 0) + _nll([0, 2.0, 0], 1)) / 2
    assert keyword_distill_ce(lw, idx).item() == pytest.approx(expected, abs=1e-5)
    assert keyword_distill_ce(lw, torch.eye(3)[idx]).item() == pytest.approx(expected, abs=1e-5)
    labels = torch.tensor([[-1, -1], [-1, -1]])
    terms = classifier_terms(
        [torch.zeros(2, 3), torch.zeros(2, 2)],
        [lw, torch.zeros(2, 2)],
        labels,
        labels.ge(0).float(),
        [idx, torch.tensor([0, 1])],
    )
    assert terms["xw"].item() == pytest.approx(0.0, abs=1e-8)
    assert terms["ent"].item() == pytest.approx(UNIFORM_ENTROPY_TERM, abs=1e-6)
    assert terms["w"].item() == pytest.approx(expected + math.log(2), abs=1e-5)


def test_relativistic_losses_on_known_scores():
    real, fake = torch.tensor([2.0]), torch.tensor([0.0])
    sig = 1 / (1 + math.exp(-2))
    assert relativistic_d_loss(real, fake).item() == pytest.approx(-math.log(sig), abs=1e-6)
    assert relativistic_g_loss(real, fake).item() == pytest.approx(-math.log(1 - sig), abs=1e-6)
    assert relativistic_d_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(math.log(2), abs=1e-6)


def test_mahalanobis_helpers():
    torch.manual_seed(0)
    ref = torch.randn(4000, 4)
    same = torch.randn(1000, 4)
    d2 = mahalanobis_distance(same, ref, shrinkage=0.0, squared=True)
    assert d2 == pytest.approx(4.0, rel=0.1)  # E[χ²_d] = d
    shifted = same + torch.tensor([3.0, 0, 0, 0])
    assert mahalanobis_distance(shifted, ref) > mahalanobis_distance(same, ref) + 1.0
    # regularisation keeps a rank-deficient reference invertible
    flat = torch.randn(10, 16)
    assert math.isfinite(mahalanobis_distance(torch.randn(5, 16), flat, shrinkage=0.1))
    a, b = torch.randn(300, 3), torch.randn(300, 3) + 2
    assert symmetric_mahalanobis(a, b) == pytest.approx(symmetric_mahalanobis(b, a))
    groups = [torch.randn(200, 3) + i for i in range(4)]
    assert mean_pairwise_distance(groups) > 0 and mean_pairwise_distance(groups[:1]) == 0.0


def test_frechet_distance_by_hand():
    """1-d: a = {−1, 1} fits N(0, 1), b = {0, 4} fits N(2, 4): (0 − 2)² + 1 + 4 − 2·√(1·4) = 5. 2-d with a
    rotated covariance checks the matrix square roots: identical sets give 0, a shift by (3, 4) adds 25."""
    a, b = torch.tensor([[-1.0], [1.0]]), torch.tensor([[0.0], [4.0]])
    assert frechet_distance(a, b) == pytest.approx(5.0, abs=1e-9)
    assert frechet_distance(b, a) == pytest.approx(5.0, abs=1e-9)
    torch.manual_seed(0)
    x = torch.randn(500, 2) @ torch.tensor([[2.0, 1.0], [0.0, 0.5]])
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + torch.tensor([3.0, 4.0])) == pytest.approx(25.0, abs=1e-6)


def test_kl_share_above_and_bow_loss_by_hand():
    """Dimension KLs (batch means) 0 and (0.5 + 4.5) / 2 = 2.5: one of two dimensions is above a floor of 1, none
    above 3. Bag of words over V = 8: poem 0 = <B> 5 6 <E> PAD with all mass on {5, 6} → ln 2 (the marks and PAD are
    not characters); poem 1 = 4 4 7 under uniform logits → ln 8; the batch mean is (ln 2 + ln 8) / 2 = 2 ln 2."""
    mu, zeros = torch.tensor([[0.0, 1.0], [0.0, 3.0]]), torch.zeros(2, 2)
    assert kl_share_above(mu, zeros, zeros, zeros, 1.0) == 0.5
    assert kl_share_above(mu, zeros, zeros, zeros, 3.0) == 0.0
    # the validation form: per-item, per-dimension KLs whose means over the items are (0.5, 0.1, 0) with λ = 0.2
    per_item = torch.tensor([[1.0, 0.2, 0.0], [0.0, 0.0, 0.0]])
    assert dimension_share_above(per_item, 0.2) == pytest.approx(1 / 3)
    assert dimension_share_above(per_item, 0.05) == pytest.approx(2 / 3)
    poems = torch.tensor([[3, 5, 6, 2, 0], [4, 4, 7, 0, 0]])
    logits = torch.zeros(2, 8)
    logits[0, 5] = logits[0, 6] = 100.0
    assert bow_loss(logits, poems).item() == pytest.approx(2 * math.log(2), abs=1e-6)
    assert bow_loss(torch.zeros(2, 8), poems).item() == pytest.approx(math.log(8), abs=1e-6)


def test_token_cross_entropy_is_the_softmax_nll_by_hand():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, -1.0]], requires_grad=True)
    nll = token_cross_entropy(logits, torch.tensor([2, 1]))
    assert nll.tolist() == pytest.approx([_nll([0, 1, 2], 2), _nll([3, 0, -1], 1)], abs=1e-6)
    (nll * torch.tensor([1.0, 2.0])).sum().backward()
    soft = torch.softmax(logits.detach(), -1)
    want = torch.stack([soft[0] - torch.tensor([0, 0, 1.0]), 2 * (soft[1] - torch.tensor([0, 1.0, 0]))])
    assert torch.allclose(logits.grad, want, atol=1e-6)  # (softmax − one-hot) · upstream gradient


def test_token_cross_entropy_matches_torch_across_blocks_and_dtypes(monkeypatch):
    monkeypatch.setattr(losses, "CE_CHUNK_ROWS", 7)  # 30 rows: four full blocks and a short one
    torch.manual_seed(0)
    targets, weights = torch.randint(0, 50, (30,)), torch.rand(30)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-5), (torch.float64, 1e-12)):
        x = (3 * torch.randn(30, 50)).to(dtype).requires_grad_()
        ref = x.detach().clone().requires_grad_()
        got = token_cross_entropy(x, targets)
        want = F.cross_entropy(ref.to(got.dtype), targets, reduction="none")
        assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert torch.allclose(got, want, atol=tol)
        (got * weights).sum().backward()
        (want * weights).sum().backward()
        assert x.grad.dtype == dtype and torch.allclose(
            x.grad.double(), ref.grad.double(), atol=1e-2 if dtype == torch.bfloat16 else tol
        )
    x64 = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: token_cross_entropy(v, targets[:9] % 5), (x64,))


def test_mode_seeking_loss_by_hand():
    """r = mean|Δz| / mean|Δε|: Δz = (0, 2) and Δε = (1, 1) give r = 1, loss 1 / (1 + 1e-5); codes that ignore the
    noise give r = 0 and the largest loss 1 / floor; the gradient pushes the two codes apart."""
    z1 = torch.tensor([[0.0, 2.0]], requires_grad=True)
    z2, e1, e2 = torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1, 2)
    loss = mode_seeking_loss(z1, z2, e1, e2)
    assert loss.item() == pytest.approx(1 / (1 + 1e-5), rel=1e-6)
    assert mode_seeking_loss(z2, z2, e1, e2, floor=0.01).item() == pytest.approx(100.0)
    (g,) = torch.autograd.grad(loss, z1)
    assert g[0, 1] < 0  # larger z1[1] (further from z2) lowers the loss


def test_stock_line_mask_marks_lines_shared_across_keywords_only():
    """Poems 0 and 1 share a keyword, poem 2 has another: a line of 0 also in 1 is not stock; a line of 0 also
    in 2 (at another position) is stock in both poems; a line nobody else wrote is not."""
    keys = torch.tensor([[3, 10, 2], [3, 10, 2], [3, 11, 2]])
    a, b, c, d, e = ([5, 6, 2], [7, 8, 2], [9, 9, 2], [4, 5, 2], [6, 7, 2])
    lines = torch.tensor([[a, b], [a, c], [d, b]])  # b: poems 0 and 2; a: poems 0 and 1 (same keyword)
    assert stock_line_mask(lines, keys).tolist() == [[False, True], [False, False], [False, True]]
    lines[2, 0] = torch.tensor(e)
    assert stock_line_mask(lines, keys[[0, 0, 0]]).sum() == 0  # one keyword for all: nothing is stock


def test_unlikelihood_loss_by_hand():
    """Two positions, V = 2: p(target) = 1/2 at the penalised one gives −log(1 − 1/2) / 2 positions (/ 5 when the
    batch had n = 5); nothing penalised gives 0; a target of probability ≈ 1 stays finite."""
    logits = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    targets = torch.tensor([1, 0])
    loss = unlikelihood_loss(logits, targets, torch.tensor([True, False]))
    assert loss.item() == pytest.approx(math.log(2) / 2, rel=1e-6)
    assert unlikelihood_loss(logits, targets, torch.tensor([False, False])).item() == 0.0
    assert unlikelihood_loss(logits, targets, torch.tensor([True, False]), n=5).item() == pytest.approx(
        math.log(2) / 5, rel=1e-6
    )  # the two positions of a batch of five that can be penalised
    sure = unlikelihood_loss(torch.tensor([[50.0, -50.0]]), torch.tensor([0]), torch.tensor([True]))
    assert torch.isfinite(sure) and sure.item() == pytest.approx(-math.log(1e-6), rel=1e-3)


def test_stock_line_mask_is_the_evaluations_shared_line_rate():
    """The training mask is the tensor form of the evaluation's "lines shared across keywords": on random poems
    of three keywords drawn from a few lines, its mean equals ``metrics.shared_line_rate`` of the same poems."""
    gen = torch.Generator().manual_seed(5)
    pool = torch.randint(4, 40, (40, 3), generator=gen)  # forty 3-character lines, some repeated
    picks = torch.randint(0, 40, (12, 4), generator=gen)
    keys = torch.tensor([[3, 10 + i % 3, 2] for i in range(12)])
    lines = torch.cat([pool[picks], torch.full((12, 4, 1), 2)], dim=-1)  # + <E>
    text = ["|".join("".join(chr(0x4E00 + int(c)) for c in line[:3]) for line in poem) for poem in lines]
    rate = shared_line_rate(text, [str(int(k[1])) for k in keys])
    assert 0 < rate < 1 and stock_line_mask(lines, keys).float().mean().item() == pytest.approx(rate)
