"""Training phases, checkpoints, exact kill-and-resume, schedules and input errors (smoke profile, fast)."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from mixpoet_lib._util import default_device, derived_seed, seed_everything
from mixpoet_lib.checkpoints import PHASES, build_model, checkpoint_path, load_model
from mixpoet_lib.cli import app as cli
from mixpoet_lib.config import get_profile
from mixpoet_lib.data.batching import BatchStream
from mixpoet_lib.data.dataset import TRAIN_SPLITS
from mixpoet_lib.data.vocab import N_SPECIALS
from mixpoet_lib.evaluate.report import load_results
from mixpoet_lib.models.factor_models import MixPoetAUS
from mixpoet_lib.models.generators import BasicGenerator
from mixpoet_lib.paths import repo_root
from mixpoet_lib.signatures import weight_settings
from mixpoet_lib.train.diagnostics import to_device
from mixpoet_lib.train.factor_trainers import aus_optimiser_specs
from mixpoet_lib.train.logs import CsvLog, read_log
from mixpoet_lib.train.loop import ensure_model, train, validation_loss
from mixpoet_lib.train.optimisers import make_optimisers
from mixpoet_lib.train.phases import make_trainer, phase_plan, phase_signature
from mixpoet_lib.train.schedules import gumbel_tau, phase_learning_rate, teacher_forcing_ratio
from mixpoet_lib.train.steps import aus_step, cvae_step, dae_step
from mixpoet_lib.train.trainers import TrainContext

REPO = Path(__file__).resolve().parents[1]
SMOKE = get_profile("smoke")
ALL = ("basic", "fbasic", "cvae", "igs", "aus", "aus_st")
CAP = 6  # steps per phase in the all-phases run: AUS c1 stays in the reconstruction warm-up, c2 goes past it


def _data_dir(data) -> Path:
    return Path(data.root).parents[1]  # <data>/processed/dataset-<key>


def _same(a, b, where="") -> None:
    """Assert two checkpoint objects are identical: tensors bit for bit, everything else by ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"tensor differs at {where}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"keys differ at {where}: {set(a) ^ set(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def all_phases(smoke_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("all_phases")
    t0 = time.perf_counter()
    res = train(ALL, "smoke", data=smoke_data, run_dir=run, progress=False, max_steps=CAP)
    return run, res, time.perf_counter() - t0


def test_plan_order_and_prerequisites():
    assert phase_plan(["basic"]) == [("shared", "dae"), ("basic", "c1")]
    plan = phase_plan(["aus_st", "cvae"])
    assert plan == [
        ("shared", "dae"),
        ("shared", "cl1"),
        ("shared", "cl2"),
        ("cvae", "c1"),
        ("aus_st", "c1"),
        ("aus_st", "c2"),
    ]
    assert {p for _, p in phase_plan(ALL)} == set(PHASES)


def test_every_phase_runs_logs_and_is_finite(all_phases):
    run, res, _ = all_phases
    assert list(res) == [f"{n}_{p}" for n, p in phase_plan(ALL)]
    for key, r in res.items():
        assert r.steps_run == CAP and r.step == CAP and not r.complete, key
        log = pd.read_csv(run / "logs" / f"{key}.csv")
        assert list(log["step"]) == list(range(1, CAP + 1)), key
        assert np.isfinite(log["loss"]).all() and (log["grad_norm"] > 0).all(), key
        val = pd.read_csv(run / "logs" / f"{key}_valid.csv")
        assert list(val["step"]) == [CAP], key
        cols = [c for c in val.columns if c != "step"]
        assert cols and np.isfinite(val[cols].to_numpy(dtype=float)).all(), key
        if "val_ppl" in val:
            assert 1 < float(val["val_ppl"].iloc[0]) < 2 * 3004, key  # below uniform over the vocabulary
    cl = pd.read_csv(run / "logs" / "shared_cl1_valid.csv")
    assert 0 <= cl["val_acc_xw"].iloc[0] <= 1 and 0 <= cl["val_f1_w"].iloc[0] <= 1
    for key in ("cvae_c1", "igs_c1", "igs_c2"):  # share of dimensions whose validation-mean KL is above λ
        assert 0 <= pd.read_csv(run / "logs" / f"{key}_valid.csv")["val_kl_above"].iloc[0] <= 1, key


def test_aus_adversarial_steps_noise_and_diagnostics(all_phases):
    run, _, _ = all_phases
    t = SMOKE.train
    c1 = pd.read_csv(run / "logs" / "aus_c1.csv")
    assert c1["d_loss"].isna().all() and (c1["sigma"] == 1.0).all()  # still in the reconstruction warm-up
    c2 = pd.read_csv(run / "logs" / "aus_c2.csv")
    rec_steps = CAP + c2["step"]
    adv = rec_steps > t.rec_warm_steps
    assert adv.any() and not adv.all()
    assert np.isfinite(c2.loc[adv, ["d_loss", "g_loss", "lr_dis", "lr_gen"]].to_numpy()).all()
    assert c2.loc[~adv, "d_loss"].isna().all()
    first = c2.index[adv][0]
    assert c2.loc[first, "sigma"] == 1.0  # official: the first discriminator round still sees σ = 1.0
    assert np.isfinite(
        c2.loc[first, ["diag_prior_post", "diag_mixture", "diag_match", "diag_match_rel"]].to_numpy(dtype=float)
    ).all()
    # τ counts batches from the first C1 batch on, through C2
    assert np.allclose(c2["tau"], [gumbel_tau(CAP + s - 1, t.tau_annealing_steps, t.min_tau) for s in c2["step"]])
    igs = pd.read_csv(run / "logs" / "igs_c1.csv")
    assert np.isfinite(
        igs.loc[0, ["diag_prior_post", "diag_mixture", "diag_match", "diag_match_rel"]].to_numpy(dtype=float)
    ).all()


def test_learning_rate_and_teacher_forcing_follow_the_schedules(all_phases):
    run, _, _ = all_phases
    t = SMOKE.train
    dae = pd.read_csv(run / "logs" / "shared_dae.csv")
    assert dae["lr"].tolist() == [phase_learning_rate(s, t.dae) for s in dae["step"]]
    assert dae["tf_ratio"].tolist() == [teacher_forcing_ratio(1, t.dae.tf_burn_in, t.dae.tf_decay, t.dae.tf_min)] * CAP
    cl = pd.read_csv(run / "logs" / "shared_cl2.csv")
    assert cl["lr"].tolist() == [phase_learning_rate(s, t.classifier) for s in cl["step"]]
    c1 = pd.read_csv(run / "logs" / "aus_c1.csv")
    assert c1["lr_rec"].tolist() == [phase_learning_rate(s, t.mixture) for s in c1["step"]]
    c2 = pd.read_csv(run / "logs" / "aus_c2.csv")  # C2 continues the optimisers' step counts
    assert c2["lr_rec"].tolist() == [phase_learning_rate(CAP + s, t.finetune) for s in c2["step"]]
    adv = c2[c2["d_loss"].notna()]
    n_dis = [t.ndis * (i + 1) for i in range(len(adv))]  # the discriminator's schedule advances ndis× per batch
    assert adv["lr_dis"].tolist() == [
        phase_learning_rate(n - t.ndis + 1, t.finetune, t.dis_decay_exponent) for n in n_dis
    ]
    cvae = pd.read_csv(run / "logs" / "cvae_c1.csv")
    assert cvae["kl_weight"].tolist() == [min((s - 1) / t.kl_anneal_steps, 1.0) for s in cvae["step"]]


def test_fbasic_pretrains_on_everything_then_tunes_on_labels(all_phases, smoke_data, tmp_path):
    """fBasic: DAE → C1 on every instance ("unknown" where unlabelled) → C2 on the labelled ones, continuing C1's
    optimiser; C1 trained on to step 25 (from the 6-step DAE), its reconstruction loss falls."""
    run, res, _ = all_phases
    assert phase_plan(["fbasic"]) == [("shared", "dae"), ("fbasic", "c1"), ("fbasic", "c2")]
    ctx = TrainContext(SMOKE, smoke_data, run, default_device(), False, None, lambda m: None)
    pre, tune = make_trainer(ctx, "fbasic", "c1").stream(), make_trainer(ctx, "fbasic", "c2").stream()
    per_part = [part.instance_labels() for part in pre.parts]
    labelled = [bool((per_part[q][i] >= 0).any()) for q, i in pre.index]
    assert not all(labelled) and len(tune.index) == sum(labelled)  # C1: all instances, C2: the labelled ones
    ck = {p: torch.load(res[f"fbasic_{p}"].checkpoint, weights_only=True) for p in ("c1", "c2")}
    assert ck["c1"]["upstream"] == "shared_dae" and ck["c2"]["upstream"] == "fbasic_c1"
    assert ck["c2"]["model_args"] == {"kind": "fbasic"} and ck["c2"]["counters"]["opt_steps"] == {"rec": 2 * CAP}
    c2 = pd.read_csv(run / "logs" / "fbasic_c2.csv")
    assert c2["lr"].tolist() == [phase_learning_rate(CAP + s, SMOKE.train.finetune) for s in c2["step"]]
    shutil.copytree(run, tmp_path / "run")
    more = train(
        ["fbasic"], SMOKE, data=smoke_data, run_dir=tmp_path / "run", progress=False, phases=["c1"], max_steps=25
    )
    assert more["fbasic_c1"].steps_run == 25 - CAP  # resumed from the all-phases checkpoint
    loss = pd.read_csv(tmp_path / "run" / "logs" / "fbasic_c1.csv")["loss"].to_numpy()
    assert len(loss) == 25 and loss[-5:].mean() < loss[:5].mean() - 0.5, loss  # ≈ 7.96 → 6.7 nats


def test_checkpoints_round_trip_with_weights_only(all_phases):
    _, res, _ = all_phases
    for key, r in res.items():
        ckpt = torch.load(r.checkpoint, map_location="cpu", weights_only=True)
        assert ckpt["step"] == CAP and ckpt["complete"] is False and ckpt["name"] + "_" + ckpt["phase"] == key
        assert {"model", "optimizers", "schedulers", "counters", "rng", "config", "signature"} <= set(ckpt)
        assert {"torch", "numpy", "python"} <= set(ckpt["rng"])
        model = load_model(r.checkpoint, device="cpu")
        assert not model.training
        _same(model.state_dict(), ckpt["model"], key)
    aus, aus_st = load_model(res["aus_c2"].checkpoint, "cpu"), load_model(res["aus_st_c2"].checkpoint, "cpu")
    assert isinstance(aus, MixPoetAUS) and not aus.straight_through and aus_st.straight_through
    assert set(torch.load(res["aus_c2"].checkpoint, weights_only=True)["optimizers"]) == {"rec", "dis", "gen"}


def test_rerun_skips_finished_work(all_phases, smoke_data):
    run, _, _ = all_phases
    t0 = time.perf_counter()
    again = train(ALL, "smoke", data=smoke_data, run_dir=run, progress=False, max_steps=CAP)
    assert all(r.steps_run == 0 for r in again.values()) and time.perf_counter() - t0 < 10


def test_encode_once_reuses_upstream_and_trains(all_phases, smoke_data, tmp_path):
    """encode_once only re-runs the adversarial (AUS) phases, which still train with finite losses."""
    run, _, _ = all_phases
    shutil.copytree(run, tmp_path / "run")
    fast = replace(SMOKE, train=replace(SMOKE.train, encode_once=True))
    res = train(["aus"], fast, data=smoke_data, run_dir=tmp_path / "run", progress=False, max_steps=CAP)
    assert res["shared_dae"].steps_run == 0 and res["shared_cl2"].steps_run == 0  # upstream reused
    assert res["aus_c2"].steps_run > 0
    log = pd.read_csv(tmp_path / "run" / "logs" / "aus_c2.csv")
    adv = log["d_loss"].notna()
    assert adv.any() and np.isfinite(log.loc[adv, "d_loss"]).all() and np.isfinite(log.loc[adv, "g_loss"]).all()


def test_settings_of_one_model_family_leave_the_other_phases_signed_as_before(all_phases, smoke_data, tmp_path):
    """free_bits acts in CVAE/IGS only, ndis in AUS only (signatures.ACTS_ONLY_IN): a variant changing both re-runs
    just cvae_c1, igs_c1/c2 and aus_c1/c2; the DAE, the classifiers and Basic are reused, signed as before."""
    run, _, _ = all_phases
    shutil.copytree(run, tmp_path / "run")
    variant = replace(SMOKE, train=replace(SMOKE.train, free_bits=0.0, ndis=2))
    res = train(
        ["basic", "cvae", "igs", "aus"],
        variant,
        data=smoke_data,
        run_dir=tmp_path / "run",
        progress=False,
        max_steps=CAP,
    )
    for key in ("shared_dae", "shared_cl1", "shared_cl2", "basic_c1"):
        assert res[key].steps_run == 0, key
        assert torch.load(res[key].checkpoint, weights_only=True)["signature"] == STABLE_SIGNATURES[key]
    for key in ("cvae_c1", "igs_c1", "igs_c2", "aus_c1", "aus_c2"):
        assert res[key].steps_run > 0, key
    assert weight_settings(variant.train, "", SMOKE.train)["free_bits"] == SMOKE.train.free_bits
    assert weight_settings(variant.train, "cvae", SMOKE.train)["free_bits"] == 0.0
    assert weight_settings(variant.train, "cvae", SMOKE.train)["ndis"] == SMOKE.train.ndis
    assert weight_settings(variant.train, "aus", SMOKE.train)["ndis"] == 2


def test_second_stage_schedules_leave_the_shared_phases_signed_as_before(all_phases, smoke_data, tmp_path):
    """A longer fine-tune re-trains only the fine-tune phases (C2): the DAE, the classifiers, the CVAE and AUS's C1
    are reused, signed as before; the C1 schedule signs every second-stage model, the Gumbel temperature the
    factor models only."""
    run, _, _ = all_phases
    shutil.copytree(run, tmp_path / "run")
    t = SMOKE.train
    variant = replace(SMOKE, train=replace(t, finetune=replace(t.finetune, max_steps=t.finetune.max_steps + 5)))
    res = train(["cvae", "aus"], variant, data=smoke_data, run_dir=tmp_path / "run", progress=False, max_steps=CAP)
    for key in ("shared_dae", "shared_cl1", "shared_cl2", "cvae_c1", "aus_c1"):
        assert res[key].steps_run == 0, key
        assert torch.load(res[key].checkpoint, weights_only=True)["signature"] == STABLE_SIGNATURES[key]
    assert res["aus_c2"].steps_run > 0
    longer = replace(t, mixture=replace(t.mixture, max_steps=t.mixture.max_steps * 2), min_tau=0.5)
    assert weight_settings(longer, "", t) == weight_settings(t, "", t)
    assert weight_settings(longer, "basic", t, "c1")["mixture"]["max_steps"] == t.mixture.max_steps * 2
    assert weight_settings(longer, "cvae", t, "c1")["min_tau"] == t.min_tau
    assert weight_settings(longer, "igs", t, "c1")["min_tau"] == 0.5


def test_the_long_profile_shares_the_tutorials_pre_trained_phases(smoke_data):
    """`long` is the tutorial with a four-times-longer second stage: its DAE and classifier phases are signed as the
    tutorial's (a copied tutorial checkpoint is reused), every second-stage phase is signed anew."""
    tut, long = get_profile("tutorial"), get_profile("long")
    assert (long.data, long.model, long.gen, long.eval, long.seed) == (tut.data, tut.model, tut.gen, tut.eval, tut.seed)
    assert long.train.mixture.max_steps == 4 * tut.train.mixture.max_steps == 2000
    assert long.train.finetune.max_steps == 4 * tut.train.finetune.max_steps == 600
    for key in ("rec_warm_steps", "tau_annealing_steps", "noise_decay_steps", "kl_anneal_steps"):
        assert getattr(long.train, key) == 4 * getattr(tut.train, key), key

    def signs(profile, name, phase):
        return phase_signature(profile, name, phase, {"vocab": 10}, smoke_data, None)

    for name, phase in (("shared", "dae"), ("shared", "cl1"), ("shared", "cl2")):
        assert signs(long, name, phase) == signs(tut, name, phase), phase
    for name, phase in (("basic", "c1"), ("cvae", "c1"), ("igs", "c1"), ("aus", "c1"), ("aus", "c2")):
        assert signs(long, name, phase) != signs(tut, name, phase), (name, phase)


def test_word_dropout_retrains_only_the_latent_models(all_phases, smoke_data, tmp_path):
    """train.word_dropout acts in the second stage of CVAE/IGS/AUS: Basic and the DAE are reused, CVAE re-trains."""
    run, _, _ = all_phases
    shutil.copytree(run, tmp_path / "run")
    variant = replace(SMOKE, train=replace(SMOKE.train, word_dropout=0.25))
    res = train(["basic", "cvae"], variant, data=smoke_data, run_dir=tmp_path / "run", progress=False, max_steps=CAP)
    assert res["shared_dae"].steps_run == 0 and res["basic_c1"].steps_run == 0
    assert res["cvae_c1"].steps_run > 0
    assert "word_dropout" not in weight_settings(variant.train, "basic", SMOKE.train)  # not a setting of Basic's
    assert "word_dropout" not in weight_settings(SMOKE.train, "cvae", SMOKE.train)  # nor of anything when off
    assert weight_settings(variant.train, "cvae", SMOKE.train)["word_dropout"] == 0.25


def test_word_dropout_hides_the_gold_characters_from_the_decoder(smoke_data):
    torch.manual_seed(0)
    model = build_model("basic", SMOKE.model, len(smoke_data.vocab)).train()
    batch = next(iter(BatchStream(smoke_data, TRAIN_SPLITS, "mixpoet_pre", 4, seed=1).batches(0)))
    lines = batch["lines"]
    other = torch.where(lines > 3, 4 + (lines - 3) % (len(smoke_data.vocab) - 4), lines)  # other characters
    assert not torch.equal(lines, other)
    s0 = torch.zeros(lines.size(0), model.s0_size)
    for p, same in ((1.0, True), (0.0, False)):
        model.word_dropout = p
        torch.manual_seed(1)
        a = model.decode(s0, lines, batch["length"]).logits
        torch.manual_seed(1)
        b = model.decode(s0, other, batch["length"]).logits
        assert torch.equal(a, b) == same  # every input <UNK>: the decoder cannot tell the two poems apart
    model.eval()
    model.word_dropout = 1.0
    assert not torch.equal(
        model.decode(s0, lines, batch["length"]).logits, model.decode(s0, other, batch["length"]).logits
    )


def test_label_dropout_zeroes_the_decoder_labels_in_training_only(smoke_data):
    """train.label_dropout (design §4.12): p = 0.5 zeroes some poems' d_k(y_k) in training, none at generation;
    p = 1 zeroes and freezes the embeddings, so the start state no longer depends on the labels anywhere."""
    torch.manual_seed(0)
    model = build_model("aus", SMOKE.model, len(smoke_data.vocab))
    z, h_w = torch.randn(64, SMOKE.model.latent_size), torch.randn(64, model.hw_size)
    ys = [[torch.full((64,), c, dtype=torch.long) for c in pair] for pair in ((0, 0), (2, 1))]
    model.set_label_dropout(0.5)
    model.train()
    torch.manual_seed(1)
    a = model.decoder_s0(z, h_w, ys[0])
    torch.manual_seed(1)
    b = model.decoder_s0(z, h_w, ys[1])
    same = (a - b).abs().amax(dim=1).eq(0)  # poems whose both label embeddings were dropped
    assert 0 < same.sum() < 64  # about a quarter: both factors dropped (chance 0.25 each)
    model.eval()
    assert not (model.decoder_s0(z, h_w, ys[0]) - model.decoder_s0(z, h_w, ys[1])).abs().amax(dim=1).eq(0).any()
    model.set_label_dropout(1.0)
    assert all(t.weight.abs().sum() == 0 and not t.weight.requires_grad for t in model.factor_embed)
    for mode in (model.train, model.eval):
        mode()
        assert torch.equal(model.decoder_s0(z, h_w, ys[0]), model.decoder_s0(z, h_w, ys[1]))


def test_label_dropout_and_readout_sign_only_the_factor_models(all_phases, smoke_data, tmp_path):
    """The settings re-train AUS's C phases and reuse the DAE and classifiers; p = 1 trains with d_k frozen at 0,
    and the read-out heads travel with the checkpoint."""
    run, _, _ = all_phases
    shutil.copytree(run, tmp_path / "run")
    variant = replace(SMOKE, train=replace(SMOKE.train, label_dropout=1.0, readout_weight=1.0))
    res = train(["aus"], variant, data=smoke_data, run_dir=tmp_path / "run", progress=False, max_steps=CAP)
    assert res["shared_dae"].steps_run == 0 and res["shared_cl1"].steps_run == 0
    assert res["aus_c1"].steps_run > 0 and res["aus_c2"].steps_run > 0
    assert "label_dropout" not in weight_settings(variant.train, "cvae", SMOKE.train)
    assert "label_dropout" not in weight_settings(SMOKE.train, "aus", SMOKE.train)  # off: old signatures hold
    model = load_model(checkpoint_path(tmp_path / "run", "aus", "c2"))
    assert all(t.weight.abs().sum() == 0 for t in model.factor_embed) and model.readout is not None
    assert read_log("aus", "c2", SMOKE, tmp_path / "run")["readout"].notna().any()  # c2 is past the warm-up


def test_resuming_aus_mid_adversarial_phase_is_exact(all_phases, smoke_data, tmp_path):
    """Continue aus_c2 from its step-6 checkpoint (3 optimisers, σ/τ counters, SN and BN buffers, RNG) to step 9."""
    run, _, _ = all_phases
    resumed, fresh = tmp_path / "resumed", tmp_path / "fresh"
    for target, keys in (
        (resumed, ("shared_dae", "shared_cl1", "shared_cl2", "aus_c1", "aus_c2")),
        (fresh, ("shared_dae", "shared_cl1", "shared_cl2", "aus_c1")),
    ):
        (target / "checkpoints").mkdir(parents=True)
        (target / "logs").mkdir()
        for key in keys:
            shutil.copy(run / "checkpoints" / f"{key}.pt", target / "checkpoints")
        if "aus_c2" in keys:
            shutil.copy(run / "logs" / "aus_c2.csv", target / "logs")
    a = train(["aus"], "smoke", data=smoke_data, run_dir=resumed, progress=False, max_steps=CAP + 3, phases=["c2"])
    b = train(["aus"], "smoke", data=smoke_data, run_dir=fresh, progress=False, max_steps=CAP + 3, phases=["c2"])
    assert a["aus_c2"].steps_run == 3 and b["aus_c2"].steps_run == CAP + 3
    _same(torch.load(a["aus_c2"].checkpoint, weights_only=True), torch.load(b["aus_c2"].checkpoint, weights_only=True))
    assert (resumed / "logs" / "aus_c2.csv").read_bytes() == (fresh / "logs" / "aus_c2.csv").read_bytes()


def _numbered_batches(stream: BatchStream, n: int) -> Iterator[tuple[int, dict]]:
    """(epoch, batch) of the first n training steps, epochs 1, 2, ... as the loop walks them."""
    epoch = 1
    while n > 0:
        for batch in stream.batches(epoch):
            if n == 0:
                return
            yield epoch, batch
            n -= 1
        epoch += 1


def test_public_step_functions_reproduce_the_loop(all_phases, smoke_data):
    """A notebook-style loop over the public step functions ends with the loop's weights, bit for bit:
    the DAE from scratch, and AUS fine-tuning (R, ndis D and G steps) from the loop's C1 checkpoint. Bit for bit
    needs the summation order of the run, so the loop here uses the torch thread count the run's phases used."""
    run, _, _ = all_phases
    threads = set(pd.read_csv(run / "logs" / "timing.csv")["threads"])
    assert len(threads) == 1, f"the smoke run's phases used different thread counts: {threads}"
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads.pop()))
    try:
        _replay_dae_and_aus_fine_tune(run, smoke_data)
    finally:
        torch.set_num_threads(before)


def _replay_dae_and_aus_fine_tune(run: Path, smoke_data: Any) -> None:
    t, dev, vocab = SMOKE.train, default_device(), len(smoke_data.vocab)
    seed_everything(derived_seed(SMOKE.seed, "shared", "dae"))  # the loop seeds each phase from (seed, name, phase)
    dae = build_model("dae", SMOKE.model, vocab).to(dev).train()
    opt = make_optimisers({"rec": (dae.param_groups()["dae"], t.betas, t.dae.decay_exponent)}, t.dae, t)
    stream = BatchStream(
        smoke_data,
        TRAIN_SPLITS,
        "dae",
        t.dae.batch_size,
        derived_seed(SMOKE.seed, "batches", "dae"),
        t.dae_corrupt_ratio,
    )
    losses = []
    for epoch, batch in _numbered_batches(stream, CAP):
        ratio = teacher_forcing_ratio(epoch, t.dae.tf_burn_in, t.dae.tf_decay, t.dae.tf_min)
        losses.append(dae_step(dae, to_device(batch, dev), opt, ratio, t.amp_bf16)["loss"])
    _same(dae.state_dict(), torch.load(checkpoint_path(run, "shared", "dae"), weights_only=True)["model"], "dae")
    assert losses == pd.read_csv(run / "logs" / "shared_dae.csv")["loss"].tolist()

    up = torch.load(checkpoint_path(run, "aus", "c1"), weights_only=True)
    f, counters = t.finetune, copy.deepcopy(up["counters"])
    seed_everything(derived_seed(SMOKE.seed, "aus", "c2"))
    aus = build_model("aus", SMOKE.model, vocab).to(dev).train()
    aus.load_state_dict(up["model"])
    g = aus.param_groups()
    opt = make_optimisers(
        {
            "rec": (g["rec"], t.betas, f.decay_exponent),
            "dis": (g["dis"], t.dis_betas, t.dis_decay_exponent),
            "gen": (g["gen"], t.betas, f.decay_exponent),
        },
        f,
        t,
        counters["opt_steps"],
        up["optimizers"],
    )
    offset = math.ceil(up["step"] / up["steps_per_epoch"])  # C2 continues C1's teacher-forcing epochs
    stream = BatchStream(
        smoke_data, TRAIN_SPLITS, "mixpoet_tune", f.batch_size, derived_seed(SMOKE.seed, "batches", "c2")
    )
    rows = [
        aus_step(
            aus,
            to_device(batch, dev),
            opt,
            t,
            counters,
            teacher_forcing_ratio(epoch + offset, f.tf_burn_in, f.tf_decay, f.tf_min),
        )
        for epoch, batch in _numbered_batches(stream, CAP)
    ]
    ck = torch.load(checkpoint_path(run, "aus", "c2"), weights_only=True)
    _same(aus.state_dict(), ck["model"], "aus_c2")
    _same(
        {k: counters[k] for k in ("opt_steps", "tau_step", "rec_steps", "noise_step", "adv_batches")},
        {k: ck["counters"][k] for k in ("opt_steps", "tau_step", "rec_steps", "noise_step", "adv_batches")},
    )
    log = pd.read_csv(run / "logs" / "aus_c2.csv")
    assert [r["loss"] for r in rows] == log["loss"].tolist()
    assert [r.get("d_loss", math.nan) for r in rows] == pytest.approx(log["d_loss"].tolist(), nan_ok=True, abs=0)
    assert any("d_loss" in r for r in rows)  # the adversarial steps ran


# ----------------------------------------------------------------------------------------------
# kill -9 in the middle of a phase, resume, compare with an uninterrupted run
# ----------------------------------------------------------------------------------------------


def _env(mirror_dir: Path) -> dict[str, str]:
    env = dict(os.environ, TQDM_DISABLE="1", MIXPOET_MIRROR=str(mirror_dir), PYTHONPATH=str(REPO))
    env.pop("MIXPOET_PROFILE", None)
    return env


KILL_STEPS = 12  # --max-steps of the kill-and-resume runs (checkpoints at 10 and 12)


def _cli_train(run: Path, data_dir: Path, mirror_dir: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "mixpoet_lib.cli",
        "train",
        "--profile",
        "smoke",
        "--models",
        "basic",
        "--run-dir",
        str(run),
        "--data-dir",
        str(data_dir),
        "--max-steps",
        str(KILL_STEPS),
        "-q",
    ]
    return subprocess.run(cmd, cwd=REPO, env=_env(mirror_dir), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(smoke_data, mirror_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted")
    proc = _cli_train(run, _data_dir(smoke_data), mirror_dir)
    assert proc.returncode == 0, proc.stderr
    return run


# The child slows down once basic_c1 has passed its first checkpoint, so the kill lands mid-phase.
_SLOW_CHILD = """
import sys, time
from mixpoet_lib.data.dataset import prepare
from mixpoet_lib.config import get_profile
from mixpoet_lib.train.loop import train
def slow(key, step, row):
    if key == "basic_c1" and step > {ckpt}:
        time.sleep(2.0)
train(["basic"], "smoke", data=prepare(get_profile("smoke"), data_dir=sys.argv[2]), run_dir=sys.argv[1],
      progress=False, callback=slow, max_steps={steps})
"""


def test_kill_and_resume_is_bit_identical(uninterrupted, smoke_data, mirror_dir, tmp_path):
    run = tmp_path / "killed"
    data_dir = _data_dir(smoke_data)
    script = _SLOW_CHILD.format(ckpt=SMOKE.train.ckpt_every, steps=KILL_STEPS)
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(run), str(data_dir)],
        cwd=REPO,
        env=_env(mirror_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt = checkpoint_path(run, "basic", "c1")
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "no mid-phase checkpoint appeared"
        time.sleep(0.02)
    time.sleep(0.6)  # one more (slow) step past the checkpoint, then kill -9
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    partial = torch.load(ckpt, weights_only=True)
    assert partial["step"] == SMOKE.train.ckpt_every < KILL_STEPS
    log_rows = len(pd.read_csv(run / "logs" / "basic_c1.csv"))
    assert log_rows == partial["step"] + 1  # a row past the checkpoint was written; resuming must drop it

    proc = _cli_train(run, data_dir, mirror_dir)
    assert proc.returncode == 0, proc.stderr
    assert "basic_c1" in proc.stdout
    for name, phase in (("shared", "dae"), ("basic", "c1")):
        a = torch.load(checkpoint_path(uninterrupted, name, phase), weights_only=True)
        b = torch.load(checkpoint_path(run, name, phase), weights_only=True)
        assert a["step"] == b["step"] == KILL_STEPS
        _same(a, b, f"{name}_{phase}")
        for suffix in ("", "_valid"):
            log = f"{name}_{phase}{suffix}.csv"
            assert (uninterrupted / "logs" / log).read_bytes() == (run / "logs" / log).read_bytes(), log


def test_ensure_model_trains_once_then_loads(smoke_data, tmp_path):
    t = SMOKE.train
    tiny = replace(SMOKE, train=replace(t, dae=replace(t.dae, max_steps=3), mixture=replace(t.mixture, max_steps=3)))
    model = ensure_model("basic", tiny, data=smoke_data, run_dir=tmp_path, progress=False)
    assert isinstance(model, BasicGenerator) and not model.condition_on_poem and not model.training
    path = checkpoint_path(tmp_path, "basic", "c1")
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["complete"] and ckpt["step"] == 3
    _same({k: v.cpu() for k, v in model.state_dict().items()}, ckpt["model"])
    stamp = path.stat().st_mtime_ns
    again = ensure_model("basic", tiny, run_dir=tmp_path)  # finished: loaded, not trained (no data needed)
    assert path.stat().st_mtime_ns == stamp
    _same(again.state_dict(), model.state_dict())
    out = again.generation_init(torch.tensor([[3, 10, 2]], device=next(again.parameters()).device))
    assert out["s0"].shape[0] == 1


def test_csv_log_appends_truncates_and_reads(tmp_path):
    log = CsvLog(tmp_path / "logs" / "x_c1.csv", ("loss", "ok", "note"))
    log.path.parent.mkdir()
    for s in (1, 2, 3):
        log.add(s, {"loss": 0.1 * s, "ok": s > 1, "note": math.nan if s == 2 else None})
    log.flush()
    assert log.path.read_text().splitlines() == ["step,loss,ok,note", "1,0.1,0,", "2,0.2,1,", f"3,{0.1 * 3!r},1,"]
    log.truncate(2)  # a resume from step 2 drops the later rows
    assert read_log("x", "c1", run_dir=tmp_path)["step"].tolist() == [1, 2]
    CsvLog(log.path, ("other",)).truncate(5)  # other columns: the file is dropped
    assert not log.path.exists()


# ----------------------------------------------------------------------------------------------
# errors and small helpers
# ----------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(smoke_data, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        train(["nope"], "smoke", data=smoke_data, run_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown phase"):
        train(["basic"], "smoke", data=smoke_data, run_dir=tmp_path, phases=["c3"])
    with pytest.raises(ValueError, match="max_steps"):
        train(["basic"], "smoke", data=smoke_data, run_dir=tmp_path, max_steps=0)
    with pytest.raises(ValueError, match="shared_dae"):  # C1 alone needs the DAE checkpoint
        train(["basic"], "smoke", data=smoke_data, run_dir=tmp_path, phases=["c1"], progress=False)
    assert cli.main(["train", "--profile", "smoke", "--models", "basic", "gpt"]) == 1
    err = capsys.readouterr().err.strip()
    assert "unknown model 'gpt'" in err and len(err.splitlines()) == 1
    code = cli.main(
        [
            "train",
            "--profile",
            "smoke",
            "--models",
            "basic",
            "--data-dir",
            str(tmp_path / "nodata"),
            "--mirror",
            str(tmp_path / "no-mirror"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and "not available" in err and len(err.splitlines()) == 1


def test_full_profile_code_path_runs_a_few_steps_on_cpu(smoke_data, tmp_path):
    """The `full` profile (official sizes, batch 128, every phase of aus) runs on the CPU: 2 steps per phase.

    The data are the smoke profile's (building the full dataset is the data pipeline's test); the AUS warm-up
    is shortened to one step so the adversarial R + 3·D + G step runs too.
    """
    full = get_profile("full")
    assert full.model.hidden_size == 512 and full.train.mixture.batch_size == 128
    prof = replace(
        full,
        data=SMOKE.data,
        train=replace(
            full.train, rec_warm_steps=1, validate_every_epoch=False, val_batches=1, cl_val_instances=64, diag_every=0
        ),
    )
    res = train(["aus"], prof, data=smoke_data, run_dir=tmp_path, progress=False, max_steps=2)
    assert {"shared_dae", "shared_cl1", "shared_cl2", "aus_c1", "aus_c2"} <= set(res)
    log = pd.read_csv(tmp_path / "logs" / "aus_c1.csv")
    assert len(log) == 2 and np.isfinite(log["rec"]).all() and log["d_loss"].notna().any()
    ck = torch.load(checkpoint_path(tmp_path, "aus", "c1"), map_location="cpu", weights_only=True)
    assert ck["model_config"]["hidden_size"] == 512 and ck["model_config"]["latent_size"] == 256


def test_validation_loss_is_deterministic_and_sensitive(smoke_data):
    torch.manual_seed(0)
    m = build_model("aus", SMOKE.model, len(smoke_data.vocab))
    a = validation_loss(m, smoke_data, batch_size=16, n_batches=2)
    b = validation_loss(m, smoke_data, batch_size=16, n_batches=2)
    assert a == b and a["batches"] == 2 and a["val_ppl"] == pytest.approx(math.exp(a["val_rec"]))
    assert a["val_rec"] == pytest.approx(math.log(len(smoke_data.vocab)), rel=0.2)  # untrained ≈ uniform
    with torch.no_grad():
        m.out_proj.bias.add_(torch.randn_like(m.out_proj.bias))
    assert validation_loss(m, smoke_data, batch_size=16, n_batches=2)["val_rec"] != a["val_rec"]


# Signatures of the smoke profile's phases as the kit has always computed them: a change here means every
# existing checkpoint would be retrained on resume, so it must be deliberate (bump CKPT_FORMAT and say so).
STABLE_SIGNATURES = {
    "shared_dae": "10acc9f38a48178f",
    "shared_cl1": "1a655622334c382c",
    "shared_cl2": "f758a6db3594487a",
    "basic_c1": "c146a589e78b6775",
    "cvae_c1": "21c307edfe3cfba7",
    "igs_c1": "80bfbc3256d9bf86",
    "igs_c2": "2e3660ef31bff736",
    "aus_c1": "99c43977e7b42abe",
    "aus_c2": "39acc97720d9dd92",
    "aus_st_c1": "20b1666c148581e2",
    "aus_st_c2": "70385a451e2d8951",
}  # the all-phases run: CAP steps each


def test_checkpoint_signatures_are_stable(all_phases):
    _, res, _ = all_phases
    for key, expected in STABLE_SIGNATURES.items():
        assert torch.load(res[key].checkpoint, weights_only=True)["signature"] == expected, key


# ----------------------------------------------------------------------------------------------
# encode_once: R, D and G of a batch from one encoder pass
# ----------------------------------------------------------------------------------------------


def _aus_with_optimisers(vocab: int, readout: bool = False, bow: bool = False) -> tuple[MixPoetAUS, Any]:
    t = SMOKE.train
    torch.manual_seed(0)
    aus = build_model("aus", SMOKE.model, vocab, readout=readout, bow=bow).train()
    return aus, make_optimisers(aus_optimiser_specs(aus, t, t.mixture), t.mixture, t)


@pytest.mark.parametrize("encode_once", [False, True])
def test_encode_once_runs_the_encoders_once_per_adversarial_batch(smoke_data, encode_once):
    """Official order: R, each of the ndis D steps and G encode the batch again (ndis + 2 passes); encode_once: 1.
    Either way every optimiser steps as often as the official loop steps it."""
    t = replace(SMOKE.train, encode_once=encode_once, ndis=3, diag_every=0)
    aus, opt = _aus_with_optimisers(len(smoke_data.vocab))
    calls = []
    aus.encoder.register_forward_hook(lambda *_: calls.append(1))
    batch = next(iter(BatchStream(smoke_data, TRAIN_SPLITS, "mixpoet_pre", 8, seed=1).batches(0)))
    counters = {"tau_step": 0, "rec_steps": t.rec_warm_steps, "noise_step": 0, "adv_batches": 0}
    row = aus_step(aus, batch, opt, t, counters, 1.0)
    assert len(calls) == (1 if encode_once else t.ndis + 2)
    assert opt.steps == {"rec": 1, "dis": 3, "gen": 1}
    assert all(math.isfinite(row[k]) for k in ("loss", "d_loss", "g_loss"))
    if encode_once:  # the gradients handed to 'gen' are not left behind
        assert all(p.grad is None for p in opt.params["gen"])


def test_optimisers_apply_matches_update_for_the_same_gradient():
    """Stepping with gradients taken elsewhere (``apply``) is the same update as ``update`` on that loss."""
    t = SMOKE.train
    torch.manual_seed(0)
    nets = [torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [make_optimisers({"gen": (list(n.parameters()), t.betas, 0.5)}, t.mixture, t) for n in nets]
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    for _ in range(3):
        norm_a = opts[0].update(nets[0], "gen", (nets[0](x) ** 2).sum())
        grads = torch.autograd.grad((nets[1](x) ** 2).sum(), opts[1].params["gen"])
        norm_b = opts[1].apply("gen", grads)
        assert norm_a == pytest.approx(norm_b)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_gen_lr_scale_multiplies_only_the_generator_schedule(smoke_data, tmp_path):
    """``train.gen_lr_scale`` = 3: AUS's G learns 3× as fast as R at every step (same schedule shape); it changes
    the AUS weights' signature only when set, so the published checkpoints stay valid."""
    prof = replace(SMOKE, train=replace(SMOKE.train, gen_lr_scale=3.0))
    ctx = TrainContext(prof, smoke_data, tmp_path, default_device(), False, None, lambda m: None)
    tr = make_trainer(ctx, "aus", "c1")
    tr.build()
    tr.make_optimisers()
    for _ in range(4):
        assert tr.opt.lr("gen") == pytest.approx(3 * tr.opt.lr("rec")) and tr.opt.lr("gen") > 0
        for name in ("rec", "gen"):
            tr.opt.schedulers[name].step()
    assert "gen_lr_scale" in weight_settings(prof.train) and "gen_lr_scale" not in weight_settings(SMOKE.train)
    assert "gen_lr_scale" in weight_settings(prof.train, "aus")
    assert "gen_lr_scale" not in weight_settings(prof.train, "")
    assert "gen_lr_scale" not in weight_settings(prof.train, "cvae")


def test_gen_shared_off_leaves_the_encoders_to_r(smoke_data):
    """``train.gen_shared`` = False: G's optimiser holds exactly the prior's and the posterior's parameters, so the
    adversarial objective no longer moves the embedding or the encoders (R still does); on by default (official)."""
    model = build_model("aus", SMOKE.model, len(smoke_data.vocab))
    assert isinstance(model, MixPoetAUS)
    own = {id(p) for p in [*model.prior.parameters(), *model.posterior.parameters()]}
    shared = {id(p) for m in (model.embed, model.encoder, model.word_encoder) for p in m.parameters()}
    off = aus_optimiser_specs(model, replace(SMOKE.train, gen_shared=False), SMOKE.train.mixture)
    on = aus_optimiser_specs(model, SMOKE.train, SMOKE.train.mixture)
    assert {id(p) for p in off["gen"][0]} == own
    assert shared <= {id(p) for p in on["gen"][0]} and shared <= {id(p) for p in off["rec"][0]}
    assert "gen_shared" in weight_settings(replace(SMOKE.train, gen_shared=False), "aus")
    assert "gen_shared" not in weight_settings(SMOKE.train, "aus")


def test_bow_weight_retrains_the_latent_models_with_the_head(all_phases, smoke_data, tmp_path):
    """``train.bow_weight`` > 0: CVAE, IGS and AUS are retrained with the bag-of-words head (the shared phases are
    reused), log a finite 'bow' loss (AUS: on its adversarial steps) and 'kl_above' share, and their checkpoints load
    back with the head."""
    run, _, _ = all_phases
    shutil.copytree(run, tmp_path / "run")
    bow = replace(SMOKE, train=replace(SMOKE.train, bow_weight=1.0))
    res = train(["cvae", "igs", "aus"], bow, data=smoke_data, run_dir=tmp_path / "run", progress=False, max_steps=CAP)
    assert res["shared_dae"].steps_run == 0 and res["shared_cl2"].steps_run == 0
    assert res["cvae_c1"].steps_run == CAP and res["igs_c2"].steps_run == CAP and res["aus_c2"].steps_run == CAP
    for key in ("cvae_c1", "igs_c1", "aus_c2"):
        log = pd.read_csv(tmp_path / "run" / "logs" / f"{key}.csv")
        terms = log["bow"].dropna()
        assert len(terms) > 0 and np.isfinite(terms).all() and terms.iloc[0] > 0
        if key != "aus_c2":
            assert log["kl_above"].between(0, 1).all()
        model = load_model(checkpoint_path(tmp_path / "run", *key.split("_")))
        assert isinstance(model.bow, torch.nn.Linear) and model.bow.out_features == len(smoke_data.vocab)
    for key in ("cvae_c1", "aus_c2"):
        assert pd.read_csv(run / "logs" / f"{key}.csv")["bow"].isna().all()
        assert load_model(checkpoint_path(run, *key.split("_"))).bow is None


def test_kl_max_weight_scales_the_annealed_kl_weight(smoke_data, tmp_path):
    """``train.kl_max_weight`` = 0.25: the CVAE's KL weight is a quarter of the annealing schedule at every step, and
    the option enters the CVAE's and IGS's signatures only (not the shared phases', not AUS's)."""
    prof = replace(SMOKE, train=replace(SMOKE.train, kl_max_weight=0.25))
    ctx = TrainContext(prof, smoke_data, tmp_path, default_device(), False, None, lambda m: None)
    tr = make_trainer(ctx, "cvae", "c1")
    tr.build()
    tr.make_optimisers()
    batches = BatchStream(smoke_data, TRAIN_SPLITS, "mixpoet_pre", 8, seed=1).batches(0)
    for step in range(3):
        row = cvae_step(tr.model, to_device(next(batches), ctx.device), tr.opt, prof.train, 1.0)
        expected = 0.25 * min(step / prof.train.kl_anneal_steps, 1.0)
        assert row["kl_weight"] == pytest.approx(expected)
    assert "kl_max_weight" in weight_settings(prof.train, "cvae") and "kl_max_weight" in weight_settings(
        prof.train, "igs"
    )
    assert "kl_max_weight" not in weight_settings(prof.train, "aus") and "kl_max_weight" not in weight_settings(
        prof.train, ""
    )


def test_free_bits_scope_subspace_reaches_the_cvae_loss(smoke_data, tmp_path):
    """``train.free_bits_scope="subspace"`` with a floor far above the KL: the CVAE's floored KL is exactly λ · D (the
    per-dimension floor would give at least as much, summed); the option enters the CVAE's and IGS's signatures only,
    and the profile refuses an unknown scope with the setting's name."""
    sub = replace(SMOKE.train, free_bits=5.0, free_bits_scope="subspace")
    prof = replace(SMOKE, train=sub)
    ctx = TrainContext(prof, smoke_data, tmp_path, default_device(), False, None, lambda m: None)
    tr = make_trainer(ctx, "cvae", "c1")
    tr.build()
    tr.make_optimisers()
    batch = to_device(next(BatchStream(smoke_data, TRAIN_SPLITS, "mixpoet_pre", 8, seed=1).batches(0)), ctx.device)
    row = cvae_step(tr.model, batch, tr.opt, sub, 1.0)
    assert row["kl"] < 5.0 * SMOKE.model.latent_size
    assert row["kl_fb"] == pytest.approx(5.0 * SMOKE.model.latent_size)
    assert weight_settings(sub, "cvae")["free_bits_scope"] == "subspace"
    assert "free_bits_scope" in weight_settings(sub, "igs") and "free_bits_scope" not in weight_settings(sub, "aus")
    assert "free_bits_scope" not in weight_settings(SMOKE.train, "cvae")
    with pytest.raises(ValueError, match="free_bits_scope"):
        replace(SMOKE.train, free_bits_scope="token")


def test_readout_loss_by_hand(smoke_data):
    """Zero read-out heads give uniform guesses: log 3 + log 2 for any labels, as indices or one-hot rows alike."""
    model = build_model("aus", SMOKE.model, len(smoke_data.vocab), readout=True)
    for head in model.readout:
        torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)
    z = torch.randn(5, SMOKE.model.latent_size)
    ids = [torch.tensor([0, 1, 2, 0, 1]), torch.tensor([1, 0, 1, 1, 0])]
    onehot = [torch.nn.functional.one_hot(y, k).float() for y, k in zip(ids, (3, 2))]
    for y in (ids, onehot):
        assert model.readout_loss(z, y).item() == pytest.approx(math.log(3) + math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="readout=True"):
        build_model("aus", SMOKE.model, len(smoke_data.vocab)).readout_loss(z, ids)


def test_latent_bow_loss_by_hand(smoke_data):
    """A zero bag-of-words head guesses uniformly: log V per character, whatever z; PAD, UNK and the line marks are
    left out of the count; an AUS built without the head refuses the term."""
    vocab = len(smoke_data.vocab)
    model = build_model("aus", SMOKE.model, vocab, bow=True)
    torch.nn.init.zeros_(model.bow.weight), torch.nn.init.zeros_(model.bow.bias)
    poems = torch.tensor([[N_SPECIALS, N_SPECIALS + 1, 0], [N_SPECIALS + 2, 0, 0]])
    z = torch.randn(2, SMOKE.model.latent_size)
    assert model.latent_bow_loss(z, poems).item() == pytest.approx(math.log(vocab), rel=1e-6)
    torch.nn.init.zeros_(model.bow.bias).data[N_SPECIALS + 2] = 50.0  # item 2's only character gets all the mass
    assert model.latent_bow_loss(z, poems[1:]).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="bow=True"):
        build_model("aus", SMOKE.model, vocab).latent_bow_loss(z, poems)


_G_TERMS = [("mode_seeking_weight", "ms", None), ("readout_weight", "readout", "readout"), ("bow_weight", "bow", "bow")]


@pytest.mark.parametrize("encode_once", [False, True])
@pytest.mark.parametrize(("option", "column", "head"), _G_TERMS)
def test_g_step_terms_act_in_g_only(smoke_data, encode_once, option, column, head):
    """``train.mode_seeking_weight`` / ``.readout_weight`` / ``.bow_weight`` > 0, from the same start and seed: D's
    and G's adversarial losses are the same numbers, the row logs the term (NaN without it), and the G update moves
    the prior differently (and the term's head); the option counts in AUS's signature (bow: also CVAE / IGS)."""
    batch = next(iter(BatchStream(smoke_data, TRAIN_SPLITS, "mixpoet_pre", 8, seed=1).batches(0)))
    rows, priors = {}, {}
    for w in (0.0, 5.0):
        t = replace(SMOKE.train, encode_once=encode_once, ndis=1, diag_every=0, **{option: w})
        flags = {k: head == k and w > 0 for k in ("readout", "bow")}
        aus, opt = _aus_with_optimisers(len(smoke_data.vocab), **flags)
        module = getattr(aus, head) if head else None
        before = [p.detach().clone() for p in module.parameters()] if module is not None else []
        counters = {"tau_step": 0, "rec_steps": t.rec_warm_steps, "noise_step": 0, "adv_batches": 0}
        torch.manual_seed(3)
        rows[w] = aus_step(aus, batch, opt, t, counters, 1.0)
        priors[w] = torch.cat([p.detach().flatten() for p in aus.prior.parameters()])
        if before:
            assert all(not torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert rows[5.0]["d_loss"] == pytest.approx(rows[0.0]["d_loss"], rel=1e-5)
    assert rows[5.0]["g_loss"] == pytest.approx(rows[0.0]["g_loss"], rel=1e-5)
    assert math.isnan(rows[0.0][column]) and rows[5.0][column] > 0
    assert not torch.allclose(priors[0.0], priors[5.0])
    on = replace(SMOKE.train, **{option: 1.0})
    assert option in weight_settings(on, "aus") and (option in weight_settings(on, "igs")) == (option == "bow_weight")
    assert option not in weight_settings(on, "") and option not in weight_settings(SMOKE.train, "aus")


@pytest.mark.parametrize("encode_once", [False, True])
def test_stock_line_term_acts_in_the_r_step(smoke_data, encode_once):
    """``train.unlikelihood_weight`` > 0, from the same start and seed (a decoder start that ignores its inputs, so
    every greedy line recurs under other keywords): R's reconstruction and classifier terms are the same numbers,
    the row logs the term and the share of stock lines (NaN without it), the R update moves the decoder
    differently; the option counts in AUS's signature only."""
    batch = next(iter(BatchStream(smoke_data, TRAIN_SPLITS, "mixpoet_pre", 8, seed=1).batches(0)))
    rows, decoders = {}, {}
    for w in (0.0, 5.0):
        t = replace(SMOKE.train, encode_once=encode_once, ndis=1, diag_every=0, unlikelihood_weight=w)
        aus, opt = _aus_with_optimisers(len(smoke_data.vocab))
        torch.nn.init.zeros_(aus.dec_init.weight)  # s0 = tanh(bias) for every poem: the same greedy lines for all
        counters = {"tau_step": 0, "rec_steps": t.rec_warm_steps, "noise_step": 0, "adv_batches": 0}
        torch.manual_seed(3)
        rows[w] = aus_step(aus, batch, opt, t, counters, 1.0)
        decoders[w] = aus.out_proj.weight.detach().clone()
    for key in ("rec", "xw", "ent", "w"):
        assert rows[5.0][key] == pytest.approx(rows[0.0][key], rel=1e-6)
    assert math.isnan(rows[0.0]["stock"]) and math.isnan(rows[0.0]["stock_share"])
    assert rows[5.0]["stock"] >= 0 and 0 <= rows[5.0]["stock_share"] <= 1
    assert rows[5.0]["loss"] == pytest.approx(rows[0.0]["loss"] + 5.0 * rows[5.0]["stock"], rel=1e-5)
    assert rows[5.0]["stock"] > 0 and rows[5.0]["stock_share"] == 1.0  # one start state: every line is stock
    assert not torch.equal(decoders[0.0], decoders[5.0])
    on = replace(SMOKE.train, unlikelihood_weight=1.0)
    assert "unlikelihood_weight" in weight_settings(on, "aus") and "unlikelihood_weight" not in weight_settings(on, "")
    assert "unlikelihood_weight" not in weight_settings(on, "igs")
    assert "unlikelihood_weight" not in weight_settings(SMOKE.train, "aus")


def test_stock_lines_script_counts_greedy_stock_lines_and_refuses_another_model(all_phases, capsys):
    """scripts/stock_lines.py on the smoke run's AUS: one JSON line with the share of stock lines (most of them,
    for a model of a few steps) and the recurring lines; a CVAE checkpoint stops it with a line naming the file."""
    run, _, _ = all_phases
    spec = importlib.util.spec_from_file_location("stock_lines", repo_root() / "scripts" / "stock_lines.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    aus = checkpoint_path(run, "aus", "c2")
    assert script.main([str(aus), "--profile", "smoke", "--batches", "2"]) == 0
    (row,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert row["model"] == str(aus) and 0 <= row["stock_share"] <= 1
    assert row["top"] and all(isinstance(line, str) and count >= 2 for line, count in row["top"])  # a smoke model:
    assert row["stock_share"] > 0.5  # its few steps write the same lines (人人人人山) for most keywords
    cvae = checkpoint_path(run, "cvae", "c1")
    with pytest.raises(SystemExit, match="not a MixPoet-AUS") as stop:
        script.main([str(cvae), "--profile", "smoke"])
    assert str(cvae) in str(stop.value)


def test_evaluate_run_script_scores_a_run_folder_and_refuses_a_missing_checkpoint(all_phases, tmp_path, capsys):
    """scripts/evaluate_run.py on the smoke run: one JSON line per system with the notebook-05 metrics (and the
    prior's spread for a factor model); a system without its final checkpoint stops with a line naming the file."""
    run, _, _ = all_phases
    shutil.copytree(run, tmp_path / "run")
    spec = importlib.util.spec_from_file_location("evaluate_run", repo_root() / "scripts" / "evaluate_run.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path / "run"), "--systems", "cvae", "aus", "--profile", "smoke"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    by_system = {x["system"]: x for x in lines}
    assert set(by_system) == {"cvae", "aus"}
    assert 0 <= by_system["cvae"]["inter_jaccard_word"] <= 1 and "prior_spread_noise" not in by_system["cvae"]
    assert by_system["aus"]["prior_spread_noise"] >= 0 and 0 <= by_system["aus"]["living_acc"] <= 1
    assert by_system["aus"]["living_acc_sd"] == 0  # one generation seed: no spread
    # the human poems need no checkpoint; --results writes notebook 05's files, which load_results reads back
    args = ["--systems", "gt", "cvae", "aus", "--profile", "smoke", "--results"]
    assert script.main([str(tmp_path / "run"), *args]) == 0
    results = load_results(tmp_path / "run")
    assert results["meta"]["systems"] == ["gt", "cvae", "aus"]
    assert {"gt", "cvae", "aus"} == {r["system"] for r in results["summary"]}
    _check_rescore_judges(tmp_path / "run", capsys)
    _check_merge_systems(tmp_path / "run", tmp_path / "src", capsys)
    # scripts/inter_topic_labels.py reads the stored AUS poems back (docs/experiments.md §18)
    spec = importlib.util.spec_from_file_location("labels", repo_root() / "scripts" / "inter_topic_labels.py")
    assert spec is not None and spec.loader is not None
    labels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(labels)
    assert labels.main([str(tmp_path / "run"), "--systems", "aus"]) == 0
    spread = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= spread["inferred"] <= 1 and 0 <= spread["even"] <= 1 and 1 <= spread["mixtures_used"] <= 6
    assert len([k for k in spread if k.startswith("fixed_")]) == 6  # one per mixture: 3 living × 2 era
    with pytest.raises(SystemExit, match=r"cvae_seed3\.json"):  # generation seed 3 was not run
        labels.main([str(tmp_path / "run"), "--systems", "cvae", "--seeds", "3"])
    with pytest.raises(SystemExit, match=r"cvae_seed1\.json: no inter-topic or mixture poems"):
        labels.main([str(tmp_path / "run"), "--systems", "cvae"])
    (tmp_path / "run" / "checkpoints" / "cvae_c1.pt").unlink()
    with pytest.raises(SystemExit, match=r"cvae_c1\.pt"):
        script.main([str(tmp_path / "run"), "--systems", "cvae", "--profile", "smoke"])


def _check_rescore_judges(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """scripts/rescore_judges.py: the same judges give the same factor-control rows back; other judges (the BiGRU)
    change those rows and the ceiling and keep every other row; a damaged poems file stops with its name."""
    spec = importlib.util.spec_from_file_location("rescore", repo_root() / "scripts" / "rescore_judges.py")
    assert spec is not None and spec.loader is not None
    rescore = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rescore)
    keys = ["system", "seed", "length", "metric"]

    def scores() -> pd.DataFrame:
        return pd.read_csv(run / "eval" / "scores.csv", dtype={"length": str})

    before = scores()
    assert rescore.main([str(run), "--profile", "smoke"]) == 0
    pd.testing.assert_frame_equal(scores(), before)
    assert "aus living / era accuracy" in capsys.readouterr().out
    assert rescore.main([str(run), "--profile", "smoke", "--set", "eval.judge_kind=bigru"]) == 0
    after = scores()
    judged = before["metric"].str.startswith(("living", "era", "joint"))
    assert judged.sum() > 0 and after[keys].equals(before[keys])  # the same rows in the same order
    pd.testing.assert_frame_equal(after[~judged], before[~judged])
    assert not np.allclose(after.loc[judged, "value"], before.loc[judged, "value"], equal_nan=True)
    ceiling = load_results(run)["judge_ceiling"]
    assert (
        ceiling["era"]["accuracy"]
        == torch.load(run / "checkpoints" / "judge_era.pt", weights_only=True)["report"]["test"]["accuracy"]
    )
    poems = run / "eval" / "poems" / "aus_seed1.json"
    stored = poems.read_bytes()
    poems.write_text("{}", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"aus_seed1\.json: not a poems file"):
        rescore.main([str(run), "--profile", "smoke"])
    poems.write_bytes(stored)


def _check_merge_systems(run: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """scripts/merge_systems.py: the CVAE's rows, poems and weight digest come from the other folder (here a copy
    whose CVAE rows were shifted by hand), every other system's rows stay; evaluations of another number of
    keywords are refused in one line."""
    spec = importlib.util.spec_from_file_location("merge", repo_root() / "scripts" / "merge_systems.py")
    assert spec is not None and spec.loader is not None
    merge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge)
    shutil.copytree(run, src)
    path = Path("eval") / "scores.csv"
    other = pd.read_csv(src / path, dtype={"length": str})
    other.loc[other["system"] == "cvae", "value"] += 1.0
    other.to_csv(src / path, index=False)
    meta = json.loads((src / "results.json").read_text(encoding="utf-8"))
    meta["meta"]["weights"]["cvae"] = "retrained"
    (src / "results.json").write_text(json.dumps(meta), encoding="utf-8")
    (src / "eval" / "poems" / "cvae_seed1.json").write_bytes((run / "eval" / "poems" / "cvae_seed1.json").read_bytes())
    before = pd.read_csv(run / path, dtype={"length": str})
    (run / "state.json").write_text("{}", encoding="utf-8")  # a `mixpoet reproduce` folder: its report is rewritten
    assert merge.main([str(src), str(run), "--systems", "cvae"]) == 0
    assert "run report — profile `smoke`" in (run / "report.md").read_text(encoding="utf-8")
    after = pd.read_csv(run / path, dtype={"length": str})
    is_cvae = after["system"] == "cvae"
    np.testing.assert_allclose(after.loc[is_cvae, "value"], other.loc[other["system"] == "cvae", "value"])
    keep = before["system"] != "cvae"
    pd.testing.assert_frame_equal(after[~is_cvae].reset_index(drop=True), before[keep].reset_index(drop=True))
    assert list(dict.fromkeys(after["system"])) == ["gt", "cvae", "aus"]  # the kit's system order
    assert load_results(run)["meta"]["weights"]["cvae"] == "retrained"
    assert "cvae inter_jaccard_word" in capsys.readouterr().out
    meta["meta"]["n_keywords"] += 1
    (src / "results.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"merge_systems: .*number of keywords differ"):
        merge.main([str(src), str(run), "--systems", "cvae"])
    meta["meta"]["n_keywords"] -= 1
    # the same LM re-trained with another summation order: its reference agrees to the eighth digit, accepted
    meta["meta"]["lms_reference"]["mean"] *= 1 + 3e-9
    (src / "results.json").write_text(json.dumps(meta), encoding="utf-8")
    assert merge.main([str(src), str(run), "--systems", "cvae"]) == 0
    meta["meta"]["lms_reference"]["mean"] *= 1 + 1e-4  # another LM: refused
    (src / "results.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"merge_systems: .*LM reference differ"):
        merge.main([str(src), str(run), "--systems", "cvae"])


def test_judge_variants_script_starts_the_judges_from_the_dae_embedding(all_phases, capsys):
    """scripts/judge_variants.py (docs/experiments.md §11) on the smoke run: both judges scored, the DAE's character
    embedding copied in when asked, and a size mismatch refused in one line naming both shapes."""
    run, _, _ = all_phases
    spec = importlib.util.spec_from_file_location("judge_variants", repo_root() / "scripts" / "judge_variants.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    dae = run / "checkpoints" / "shared_dae.pt"
    emb = script.dae_embedding(str(dae))
    assert emb.ndim == 2 and torch.equal(emb, torch.load(dae, weights_only=True)["model"]["embed.weight"])
    args = ["x", "--profile", "smoke", "--set", f"eval.judge_emb={emb.shape[1]}", "--dae", str(dae)]
    assert script.main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"living", "era"} <= set(out)
    assert all(0 <= out[f]["test_f1"] <= 1 and out[f]["steps"] > 0 for f in ("living", "era"))
    with pytest.raises(SystemExit, match=r"embedding .* ≠ judge"):
        script.main(["x", "--profile", "smoke", "--set", f"eval.judge_emb={emb.shape[1] + 2}", "--dae", str(dae)])
