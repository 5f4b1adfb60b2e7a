"""Shape, masking, sampling and training-signal tests for mixpoet_lib.models (paper and smoke sizes)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from mixpoet_lib.checkpoints import build_model
from mixpoet_lib.config import ModelConfig, get_profile
from mixpoet_lib.data.vocab import BOS, EOS, PAD
from mixpoet_lib.models.factor_models import MixPoetAUS, MixPoetIGS
from mixpoet_lib.models.generators import CVAE, BasicGenerator, FBasicGenerator
from mixpoet_lib.models.layers import ConditionalBatchNorm, InterLineContext, gumbel_label_sample
from mixpoet_lib.models.losses import line_cross_entropy, reconstruction_loss, unlikelihood_loss
from mixpoet_lib.train.optimisers import make_optimisers
from mixpoet_lib.train.steps import fbasic_step

VOCAB = 6000
PAPER = ModelConfig()
SMOKE = get_profile("smoke").model


def fake_batch(
    batch_size: int = 4,
    vocab: int = VOCAB,
    lengths: list[int] | None = None,
    labels: list[list[int]] | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random ids in the data module's batch format (keys, poems, lines padded to 8, length, labels, label_mask)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = lengths or [5 if i % 2 == 0 else 7 for i in range(batch_size)]
    b = len(lengths)
    first_real = 4  # ids 0..3 are PAD, UNK, <E>, <B>
    keys = torch.full((b, 4), PAD, dtype=torch.long)
    poems = torch.full((b, 2 + 4 * max(lengths)), PAD, dtype=torch.long)
    lines = torch.full((b, 4, 8), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        k = 1 + i % 2
        keys[i, 0], keys[i, 1 + k] = BOS, EOS
        keys[i, 1 : 1 + k] = torch.randint(first_real, vocab, (k,), generator=gen)
        chars = torch.randint(first_real, vocab, (4, n), generator=gen)
        lines[i, :, :n], lines[i, :, n] = chars, EOS
        poems[i, 0], poems[i, 1 : 1 + 4 * n], poems[i, 1 + 4 * n] = BOS, chars.reshape(-1), EOS
    keys = keys[:, : int(keys.ne(PAD).sum(1).max())]
    length = torch.tensor([[1.0, 0.0] if n == 7 else [0.0, 1.0] for n in lengths])
    if labels is None:
        labels = [[0, 1], [-1, 0], [2, -1], [-1, -1]] * ((b + 3) // 4)
    lab = torch.tensor(labels[:b], dtype=torch.long)
    return {
        "keys": keys,
        "poems": poems,
        "lines": lines,
        "length": length,
        "labels": lab,
        "label_mask": lab.ge(0).float(),
    }


@pytest.fixture(scope="module")
def paper_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {kind: build_model(kind, PAPER, VOCAB) for kind in ("dae", "cvae", "igs", "aus")}


# ----------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------


def test_shared_shapes_paper_sizes(paper_models):
    m = paper_models["aus"]
    b = fake_batch()
    h_x, h_w = m.encode(b)
    assert h_x.shape == (4, 1024) and h_w.shape == (4, 512)
    assert m.s0_size == 506
    s0 = torch.zeros(4, 506)
    h0 = m.init_decoder_state(s0, b["length"], 2)
    assert h0.shape == (4, 512)
    assert torch.equal(h0[:, 506:508], b["length"]) and torch.equal(h0[:, 508:], torch.tensor([[0.0, 0, 1, 0]] * 4))
    ctx = m.initial_context(4)
    logits, h1 = m.decode_step(torch.full((4,), BOS), h0, ctx)
    assert logits.shape == (4, VOCAB) and h1.shape == (4, 512)
    new_ctx = m.update_context(ctx, torch.randn(4, 6, 512), torch.ones(4, 6, dtype=torch.bool))
    assert new_ctx.shape == (4, 512)


@pytest.mark.parametrize("kind", ["dae", "cvae", "igs", "aus"])
def test_forward_shapes_paper_sizes(paper_models, kind):
    m = paper_models[kind].train()
    b = fake_batch()
    out = m(b, teacher_ratio=0.8)
    dec = out["decode"]
    n_real = int(b["lines"].ne(PAD).sum())
    assert dec.logits.shape == (n_real, VOCAB)
    assert dec.targets.shape == (4, 4, 8) and dec.mask.shape == (4, 4, 8)  # a 7-char item → 8 steps
    assert torch.isfinite(reconstruction_loss(dec))
    if kind == "cvae":
        assert out["z"].shape == (4, 256)
        assert all(t.shape == (4, 256) for t in out["prior"] + out["posterior"])
    if kind in ("igs", "aus"):
        assert [t.shape for t in out["logits_xw"]] == [(4, 3), (4, 2)]
        assert [t.shape for t in out["logits_w"]] == [(4, 3), (4, 2)]
        assert out["label_ids"].shape == (4, 2) and out["label_ids"].dtype == torch.long
        known = b["label_mask"].bool()
        assert torch.equal(out["label_ids"][known], b["labels"][known])
    if kind == "igs":
        assert out["z"].shape == (4, 256)
        assert all(mu.shape == (4, 128) and lv.shape == (4, 128) for mu, lv in out["prior"] + out["posterior"])
    if kind == "aus":
        assert out["z_post"].shape == (4, 256) and out["z_prior"].shape == (4, 256)
        y = out["labels"]
        assert m.discriminate(out["z_post"], y).shape == (4,)
        assert m.prior_sample(out["h_w"], y, n=3).shape == (12, 256)
        assert m.discriminator.features(out["z_post"]).shape == (4, 128)
        z_post, z_prior, y2 = m.latent_pair(b, tau=0.5, noise_std=0.3)
        assert z_post.shape == z_prior.shape == (4, 256) and len(y2) == 2


@pytest.mark.parametrize("kind", ["dae", "cvae", "igs", "aus"])
def test_forward_shapes_smoke_sizes(kind):
    torch.manual_seed(0)
    m = build_model(kind, SMOKE, 300)
    b = fake_batch(vocab=300, lengths=[5, 5, 5, 5])
    out = m(b, teacher_ratio=0.5)
    dec = out["decode"]
    assert dec.targets.shape == (4, 4, 6)  # all 5-char: trimmed to 6 steps
    assert dec.logits.shape == (4 * 4 * 6, 300)
    assert m.hx_size == 2 * SMOKE.hidden_size and m.hw_size == 2 * SMOKE.emb_size
    reconstruction_loss(dec).backward()
    m.eval()
    with torch.no_grad():
        if kind == "dae":
            with pytest.raises(ValueError):
                m.generation_init(b["keys"])
            m2 = BasicGenerator(SMOKE, 300, condition_on_poem=False).eval()
            init = m2.generation_init(b["keys"][:1])
        else:
            init = m.generation_init(b["keys"][:1], torch.tensor([[-1, 1]]) if kind != "cvae" else None)
    assert init["s0"].shape == (1, m.s0_size)
    if kind in ("igs", "aus"):
        assert init["labels"].shape == (1, 2) and int(init["labels"][0, 1]) == 1
        assert init["z"].shape == (1, SMOKE.latent_size)


def test_build_model_kinds():
    assert isinstance(build_model("dae", SMOKE, 50), BasicGenerator)
    assert isinstance(build_model("cvae", SMOKE, 50), CVAE)
    assert isinstance(build_model("igs", SMOKE, 50), MixPoetIGS)
    assert isinstance(build_model("fbasic", SMOKE, 50), FBasicGenerator)
    assert build_model("aus", SMOKE, 50, straight_through=True).straight_through
    with pytest.raises(ValueError):
        build_model("vae", SMOKE, 50)


# ----------------------------------------------------------------------------------------------
# decoding: masks, teacher forcing, scheduled sampling, step-wise equivalence
# ----------------------------------------------------------------------------------------------


def _step_decode(m, s0, lines, length, feed_gold: bool):
    """Reference decoder built from init_decoder_state / decode_step / update_context only."""
    b, n_lines, steps = lines.shape
    mask = lines.ne(PAD)
    ctx = m.initial_context(b)
    per_line = []
    for i in range(n_lines):
        h = m.init_decoder_state(s0, length, i)
        tok = torch.full((b,), BOS, dtype=torch.long)
        logits_t, states = [], []
        for t in range(steps):
            logits, h = m.decode_step(tok, h, ctx)
            logits_t.append(logits)
            states.append(h)
            tok = lines[:, i, t] if feed_gold else logits.argmax(-1)
        per_line.append(torch.stack(logits_t, 1))
        ctx = m.update_context(ctx, torch.stack(states, 1), mask[:, i])
    return torch.stack(per_line, 1)  # (B, S, T, V)


def test_decode_matches_stepwise_teacher_forced():
    torch.manual_seed(1)
    m = BasicGenerator(SMOKE, 200).eval()
    b = fake_batch(vocab=200)
    with torch.no_grad():
        out = m(b, teacher_ratio=0.0)  # eval mode ignores the ratio: teacher-forced
        s0 = m.decoder_s0(*reversed(m.encode(b)))
        ref = _step_decode(m, s0, out.get("decode").targets, b["length"], feed_gold=True)
    assert torch.allclose(out["decode"].full_logits()[out["decode"].mask], ref[out["decode"].mask], atol=1e-5)


def test_scheduled_sampling_zero_ratio_feeds_argmax():
    torch.manual_seed(2)
    m = BasicGenerator(replace(SMOKE, drop_ratio=0.0), 200).train()
    b = fake_batch(vocab=200)
    with torch.no_grad():
        free = m(b, teacher_ratio=0.0)["decode"]
        forced = m(b, teacher_ratio=1.0)["decode"]
        s0 = m.decoder_s0(m.encode_keyword(b["keys"]), m.encode_poem(b["poems"]))
        ref = _step_decode(m, s0, free.targets, b["length"], feed_gold=False)
    assert torch.allclose(free.full_logits()[free.mask], ref[free.mask], atol=1e-5)
    assert not torch.allclose(free.logits, forced.logits)


def test_scheduled_sampling_has_no_grad_through_choice_and_is_seeded():
    m = BasicGenerator(replace(SMOKE, drop_ratio=0.0), 200).train()
    b = fake_batch(vocab=200)
    torch.manual_seed(5)
    a = m(b, teacher_ratio=0.5)["decode"].logits
    torch.manual_seed(5)
    c = m(b, teacher_ratio=0.5)["decode"].logits
    assert torch.equal(a, c)
    reconstruction_loss(m(b, teacher_ratio=0.5)["decode"]).backward()  # argmax feed must not break autograd


def test_pad_positions_do_not_change_loss():
    torch.manual_seed(3)
    m = BasicGenerator(SMOKE, 200).eval()
    b = fake_batch(vocab=200)
    with torch.no_grad():
        dec = m(b)["decode"]
    full = dec.full_logits()
    base = line_cross_entropy(full, dec.targets)
    assert torch.allclose(base, reconstruction_loss(dec))
    noisy = full.clone()
    noisy[~dec.mask] = torch.randn_like(noisy[~dec.mask]) * 100
    assert torch.allclose(line_cross_entropy(noisy, dec.targets), base)


def test_context_pads_to_window_and_masks():
    torch.manual_seed(4)
    m = BasicGenerator(SMOKE, 50)
    ctx = torch.randn(2, SMOKE.context_size)
    states = torch.randn(2, 6, SMOKE.hidden_size)
    padded = torch.cat([states, torch.randn(2, 2, SMOKE.hidden_size)], 1)
    mask = torch.tensor([[1] * 6 + [0] * 2] * 2, dtype=torch.bool)
    a = m.update_context(ctx, states)
    assert torch.allclose(a, m.update_context(ctx, padded, mask), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# labels: official vs straight-through Gumbel
# ----------------------------------------------------------------------------------------------


def _cl_grad(straight_through: bool) -> float:
    torch.manual_seed(6)
    m = MixPoetAUS(SMOKE, 100, straight_through=straight_through).train()
    b = fake_batch(vocab=100, labels=[[-1, -1]] * 4)
    out = m(b, tau=1.0)
    (out["z_post"] ** 2).sum().backward()
    grads = [p.grad for p in m.cl_xw.parameters()]
    return sum(float(g.abs().sum()) for g in grads if g is not None)


def test_straight_through_flag_controls_classifier_gradient():
    assert _cl_grad(straight_through=True) > 0
    assert _cl_grad(straight_through=False) == 0


def test_official_gumbel_sample_is_categorical_and_keeps_true_labels():
    torch.manual_seed(7)
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).expand(20000, 3)
    s = gumbel_label_sample(logits, tau=0.01, straight_through=False)
    assert s.dtype == torch.long
    freq = torch.bincount(s, minlength=3).float() / len(s)
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.02)
    m = MixPoetIGS(SMOKE, 50)
    labels = torch.tensor([[2, -1], [-1, 1]])
    y = m.sample_labels([torch.randn(2, 3), torch.randn(2, 2)], labels, labels.ge(0).float())
    assert int(y[0][0]) == 2 and int(y[1][1]) == 1
    y_st = m.sample_labels([torch.randn(2, 3), torch.randn(2, 2)], labels, straight_through=True)
    assert y_st[0].shape == (2, 3) and torch.equal(y_st[0][0], torch.tensor([0.0, 0.0, 1.0]))


# ----------------------------------------------------------------------------------------------
# discriminator spectral norm, conditional batch norm
# ----------------------------------------------------------------------------------------------


def test_spectral_norm_top_singular_value_is_one():
    torch.manual_seed(8)
    d = MixPoetAUS(SMOKE, 50).discriminator.train()
    for _ in range(5):  # a few power iterations' worth of forward passes
        d(torch.randn(8, SMOKE.latent_size), [torch.randint(0, 3, (8,)), torch.randint(0, 2, (8,))])
    for layer in (d.fc1, d.fc2, d.fc3, d.out, *d.label_embed):
        sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
        assert abs(float(sigma) - 1.0) < 0.05


def test_cbn_running_stats_no_grad_and_used_in_eval():
    torch.manual_seed(9)
    cbn = ConditionalBatchNorm(5, 3)
    x = (torch.randn(16, 5) * 3 + 1).requires_grad_()
    y = torch.randint(0, 3, (16,))
    out = cbn(x, y)
    out.sum().backward()
    for buf in (cbn.bn.running_mean, cbn.bn.running_var):
        assert not buf.requires_grad and buf.grad_fn is None
    expected_mean = 0.9 * torch.zeros(5) + 0.1 * x.detach().mean(0)
    assert torch.allclose(cbn.bn.running_mean, expected_mean, atol=1e-6)
    # training mode normalises with the biased batch variance
    xd = x.detach()
    manual = (xd - xd.mean(0)) / torch.sqrt(xd.var(0, unbiased=False) + 1e-5) * 2.0  # γ + Δγ = 2 at init
    assert torch.allclose(out.detach(), manual, atol=1e-4)
    cbn.eval()
    x2 = torch.randn(1, 5)
    y2 = torch.tensor([1])
    ev = cbn(x2, y2)
    ref = (x2 - cbn.bn.running_mean) / torch.sqrt(cbn.bn.running_var + 1e-5) * 2.0
    assert torch.allclose(ev, ref, atol=1e-5)
    copy.deepcopy(cbn)


def test_aus_prior_eval_single_item_and_stats_detached():
    torch.manual_seed(10)
    m = MixPoetAUS(SMOKE, 100).train()
    m(fake_batch(vocab=100))  # also runs the prior (no grad) to move its BN statistics
    bn = m.prior.branches[0].cbn1.bn
    assert int(bn.num_batches_tracked) == 1 and not bn.running_mean.requires_grad
    m.eval()
    h_w = torch.randn(1, m.hw_size)
    y = [torch.tensor([0]), torch.tensor([1])]
    with torch.no_grad():
        z1, z2 = m.prior_sample(h_w, y), m.prior_sample(h_w, y)
    assert z1.shape == (1, SMOKE.latent_size) and not torch.equal(z1, z2)  # diversity only from ε
    copy.deepcopy(m)


# ----------------------------------------------------------------------------------------------
# parameter groups, weight hand-over, training signal
# ----------------------------------------------------------------------------------------------


def test_param_groups_and_shared_loading():
    torch.manual_seed(11)
    aus = MixPoetAUS(SMOKE, 80)
    g = aus.param_groups()
    ids = {k: {id(p) for p in v} for k, v in g.items()}
    assert not ids["dis"] & (ids["rec"] | ids["gen"])
    assert {id(p) for p in aus.prior.parameters()} <= ids["gen"] and not {id(p) for p in aus.prior.parameters()} & ids[
        "rec"
    ]
    assert {id(p) for p in aus.posterior.parameters()} <= ids["rec"] & ids["gen"]
    assert {id(p) for p in aus.cl_xw[1].parameters()} <= ids["cl2"] and not {
        id(p) for p in aus.cl_xw[1].parameters()
    } & ids["cl1"]
    every = {id(p) for p in aus.parameters()}
    assert ids["rec"] | ids["gen"] | ids["dis"] == every
    basic = BasicGenerator(SMOKE, 80)
    copied = aus.load_shared(basic.state_dict())
    assert "embed.weight" in copied and not any(k.startswith("dec_init") for k in copied)
    assert torch.equal(aus.out_proj.weight, basic.out_proj.weight)


def test_basic_model_overfits_four_poems():
    torch.manual_seed(12)
    m = BasicGenerator(SMOKE, 120).train()
    b = fake_batch(vocab=120, seed=3)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = reconstruction_loss(m(b, teacher_ratio=1.0)["decode"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_fbasic_reads_known_labels_and_an_unknown_row():
    """fBasic: one extra embedding row per factor for "unknown" (-1); the labels change s0, the DAE's shared weights
    load, and its start layer is its own."""
    torch.manual_seed(13)
    m = build_model("fbasic", SMOKE, 80).eval()
    assert [t.num_embeddings for t in m.label_embed] == [4, 3]  # 3 living + unknown, 2 era + unknown
    labels = torch.tensor([[0, 1], [-1, 0], [2, -1], [-1, -1]])
    assert m.label_inputs(labels).tolist() == [[0, 1], [3, 0], [2, 2], [3, 2]]
    keys = fake_batch(vocab=80)["keys"][:1].expand(7, -1)
    mixtures = torch.tensor([[a, b] for a in range(3) for b in range(2)] + [[-1, -1]])
    with torch.no_grad():
        s0 = m.generation_init(keys, mixtures)["s0"]
        default = m.generation_init(keys[:1])
    assert s0.shape == (7, m.s0_size) and len({tuple(row.tolist()) for row in s0}) == 7  # one start per mixture
    assert torch.allclose(default["s0"][0], s0[6], atol=1e-6) and default["labels"].tolist() == [
        [-1, -1]
    ]  # None: unknown
    copied = m.load_shared(build_model("dae", SMOKE, 80).state_dict())
    assert "decoder.weight_hh_l0" in copied and not any(k.startswith(("dec_init", "label_embed")) for k in copied)


def test_fbasic_step_fits_four_poems_with_their_labels():
    """The public fbasic_step on one batch (labelled, half-labelled and unlabelled poems): the loss falls."""
    torch.manual_seed(14)
    m = build_model("fbasic", SMOKE, 120).train()
    b = fake_batch(vocab=120, seed=3)
    t = get_profile("smoke").train
    phase = replace(t.mixture, lr_max=3e-3, warmup_steps=0, decay_exponent=0.0)
    opt = make_optimisers({"rec": (m.param_groups()["rec"], t.betas, 0.0)}, phase, t)
    rows = [fbasic_step(m, b, opt, tf_ratio=1.0) for _ in range(30)]
    assert set(rows[0]) == {"lr", "tf_ratio", "loss", "grad_norm"} and opt.steps["rec"] == 30
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"], [r["loss"] for r in rows]


def test_context_features_are_the_convolution_computed_as_one_matmul():
    torch.manual_seed(0)
    ctx = InterLineContext(hidden_size=6, context_size=4, window=8)
    states = torch.randn(3, 8, 6, requires_grad=True)
    want = torch.tanh(ctx.conv(states.transpose(1, 2))).mean(dim=-1)  # the Conv1d the weights belong to
    got = ctx.features(states)
    assert torch.allclose(got, want, atol=1e-6)
    g_want = torch.autograd.grad(want.sum(), (states, ctx.conv.weight))
    g_got = torch.autograd.grad(got.sum(), (states, ctx.conv.weight))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_got, g_want, strict=True))


def test_greedy_lines_mixed_lengths_match_each_poem_alone():
    """A batch of a 5- and a 7-character poem writes what each writes alone (the context chain masks the short
    poem's extra steps): characters, then <E>, then PAD; no gradient; the dropout's mode is left as it was."""
    torch.manual_seed(2)
    m = MixPoetAUS(SMOKE, 200).train()
    b = fake_batch(batch_size=2, vocab=200, lengths=[5, 7])
    s0 = torch.tanh(torch.randn(2, m.dec_init.out_features, requires_grad=True))
    n = torch.tensor([5, 7])
    both = m.greedy_lines(s0, b["length"], n, 8)
    assert not both.requires_grad and m.dropout.training and both.shape == (2, 4, 8)
    for i in range(2):
        alone = m.greedy_lines(s0[i : i + 1], b["length"][i : i + 1], n[i : i + 1], 8)
        assert torch.equal(alone[0], both[i])
    assert both[0, :, 5].eq(EOS).all() and both[0, :, 6:].eq(PAD).all() and both[1, :, 7].eq(EOS).all()
    assert both[:, :, :5].ge(4).all()  # never a special inside the line


def test_stock_line_loss_penalises_only_lines_other_keywords_share():
    """Eight poems of two keywords from one z: the greedy poems are identical, so every line is stock across
    the keywords (share 1) and the term is positive with a gradient into the decoder; with a single keyword
    nothing is stock and the term is 0."""
    torch.manual_seed(4)
    m = MixPoetAUS(SMOKE, 200).train()
    b = fake_batch(batch_size=8, vocab=200, lengths=[5] * 8)
    b["keys"] = torch.tensor([[BOS, 10, EOS]] * 4 + [[BOS, 11, EOS]] * 4)
    z, h_w = torch.zeros(1, SMOKE.latent_size).expand(8, -1), torch.zeros(1, m.hw_size).expand(8, -1)
    y = [torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long)]
    loss, share = m.stock_line_loss(z, h_w, y, b)
    assert share.item() == 1.0 and loss.item() > 0
    loss.backward()
    assert m.out_proj.weight.grad is not None and m.out_proj.weight.grad.abs().sum() > 0
    b["keys"][:] = b["keys"][0]
    loss, share = m.stock_line_loss(z, h_w, y, b)
    assert share.item() == 0.0 and loss.item() == 0.0


def test_stock_line_loss_decodes_only_poems_with_stock_lines_and_keeps_the_whole_batch_norm():
    """Four poems from one z over two keywords (all lines stock) and four from far-apart z's with keywords of their
    own (none stock, two of them 7-character): the term, decoded again for the first four only, equals the
    unlikelihood over all eight poems' characters (eval mode: no dropout), value and gradient."""
    torch.manual_seed(0)
    m = MixPoetAUS(SMOKE, 200).eval()
    b = fake_batch(batch_size=8, vocab=200, lengths=[5] * 6 + [7] * 2)
    b["keys"] = torch.tensor([[BOS, 10, EOS]] * 2 + [[BOS, 11, EOS]] * 2 + [[BOS, 12 + i, EOS] for i in range(4)])
    z = torch.cat([torch.zeros(4, SMOKE.latent_size), 30 * torch.randn(4, SMOKE.latent_size)])
    h_w, y = torch.zeros(8, m.hw_size), [torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long)]
    loss, share = m.stock_line_loss(z, h_w, y, b)
    assert share.item() == 0.5
    loss.backward()
    fast = m.out_proj.weight.grad.clone()
    m.zero_grad()
    s0 = m.decoder_s0(z, h_w, y)
    lines, stock = m.greedy_stock_lines(s0, b)
    assert stock[:4].all() and not stock[4:].any()
    dec = m.decode(s0, lines, b["length"])
    full = unlikelihood_loss(dec.logits, dec.targets[dec.mask], (stock.unsqueeze(-1) & dec.targets.ne(EOS))[dec.mask])
    full.backward()
    assert loss.item() == pytest.approx(full.item(), rel=1e-5) and loss.item() > 0
    assert torch.allclose(fast, m.out_proj.weight.grad, rtol=1e-4, atol=1e-8)
