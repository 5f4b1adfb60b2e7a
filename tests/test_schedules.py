"""Sanity values of mixpoet_lib.train.schedules (design §4.2, §4.3)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mixpoet_lib.config import TrainConfig
from mixpoet_lib.train.schedules import (
    gumbel_tau,
    instance_noise,
    kl_weight,
    learning_rate,
    make_lr_scheduler,
    make_optimizer,
    phase_learning_rate,
    phase_lr_scheduler,
    planned_steps,
    teacher_forcing_ratio,
)

TRAIN = TrainConfig()


@pytest.mark.parametrize("step,expected", [(1, 1.3e-7), (3000, 4e-4), (6000, 8e-4), (12000, 5.46e-4), (18000, 4.37e-4)])
def test_mixpoet_lr_sanity_values(step, expected):
    assert phase_learning_rate(step, TRAIN.mixture) == pytest.approx(expected, rel=0.03)


def test_dae_lr_and_floor():
    assert phase_learning_rate(9769, TRAIN.dae) == pytest.approx(5.2e-4, rel=0.01)
    assert learning_rate(10**15, 8e-4, 5e-8, 4500, 0.55) == 5e-8
    assert learning_rate(0) == 0.0
    # discriminator decays with β = 0.5
    assert phase_learning_rate(24000, TRAIN.mixture, TRAIN.dis_decay_exponent) == pytest.approx(4e-4, rel=1e-6)


def test_lambda_lr_factory_steps_follow_the_rule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=123.0)
    sched = make_lr_scheduler(opt, 8e-4, 5e-8, 10, 0.55)
    seen = []
    for _ in range(25):
        seen.append(opt.param_groups[0]["lr"])  # lr used by this optimiser step
        opt.step()
        sched.step()
    assert seen == pytest.approx([learning_rate(n, 8e-4, 5e-8, 10, 0.55) for n in range(1, 26)])
    opt2 = torch.optim.AdamW([p], lr=1.0)
    resumed = phase_lr_scheduler(opt2, TRAIN.mixture, last_step=12000 - 1)
    assert opt2.param_groups[0]["lr"] == pytest.approx(5.46e-4, rel=0.01)  # next step is the 12,000th
    assert resumed.last_epoch == 12000 - 1


def test_gumbel_tau():
    assert gumbel_tau(0) == 1.0
    assert gumbel_tau(3000) == pytest.approx(0.1)
    assert gumbel_tau(6000) == pytest.approx(0.01)
    assert gumbel_tau(20000) == 0.01


def test_instance_noise():
    assert instance_noise(0, started=False) == 1.0
    assert instance_noise(0) == pytest.approx(0.3)
    assert instance_noise(4250) == pytest.approx(0.15)
    assert instance_noise(8500) == 0.0 and instance_noise(10**6) == 0.0


def test_teacher_forcing_tables():
    mix = TRAIN.mixture
    got = [teacher_forcing_ratio(e, mix.tf_burn_in, mix.tf_decay, mix.tf_min) for e in range(1, 13)]
    assert got == pytest.approx([1.0] * 4 + [0.897, 0.873] + [0.85] * 6, abs=5e-4)
    dae = TRAIN.dae
    got = [teacher_forcing_ratio(e, dae.tf_burn_in, dae.tf_decay, dae.tf_min) for e in range(1, 11)]
    assert got == pytest.approx([1.0] * 3 + [0.922, 0.897, 0.873] + [0.85] * 4, abs=5e-4)


def test_kl_weight():
    assert kl_weight(0, 100) == 0.0 and kl_weight(50, 100) == 0.5 and kl_weight(500, 100) == 1.0
    assert kl_weight(50, 100, "sigmoid") == pytest.approx(0.5)
    assert kl_weight(0, 100, "sigmoid") < 0.01 and kl_weight(100, 100, "sigmoid") > 0.99
    assert kl_weight(3, 100, "constant", max_weight=0.3) == 0.3
    with pytest.raises(ValueError):
        kl_weight(1, 10, "cosine")


def test_planned_steps_and_optimizer():
    assert planned_steps(10, TRAIN.dae) == 10 * TRAIN.dae.epochs
    assert planned_steps(10, replace(TRAIN.dae, max_steps=7)) == 7
    assert planned_steps(10, replace(TRAIN.dae, max_steps=10**6)) == 10 * TRAIN.dae.epochs
    p = torch.nn.Parameter(torch.zeros(2))
    opt = make_optimizer([p], TRAIN.mixture, TRAIN.weight_decay, TRAIN.dis_betas)
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.AdamW) and group["lr"] == TRAIN.mixture.lr_max
    assert group["betas"] == TRAIN.dis_betas and group["weight_decay"] == TRAIN.weight_decay
