"""The latent diagnostics of the factor models' training logs: the fixed-batch measure moves only with the model."""

from __future__ import annotations

import pytest
import torch

from mixpoet_lib.checkpoints import build_model
from mixpoet_lib.config import get_profile
from mixpoet_lib.train.diagnostics import (
    DIAG_BATCH,
    VAL_SEED,
    diagnostic_batch,
    diagnostic_row,
    latent_diagnostics,
    validation_batches,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMOKE = get_profile("smoke")


@pytest.fixture(scope="module")
def aus_and_batches(smoke_data):
    torch.manual_seed(0)
    model = build_model("aus", SMOKE.model, len(smoke_data.vocab))
    cpu = torch.device("cpu")
    training = validation_batches(smoke_data, "mixpoet_pre", 32, 2, cpu)
    return model, diagnostic_batch(smoke_data, cpu), training


def test_the_fixed_measure_ignores_the_training_batch_and_the_step(aus_and_batches):
    model, fixed, (b1, b2) = aus_and_batches
    assert fixed["keys"].size(0) == DIAG_BATCH
    t = SMOKE.train
    assert t.diag_instances == 2
    first = diagnostic_row(model, b1, t, {"tau_step": 3}, 1.0, fixed)
    later = diagnostic_row(model, b2, t, {"tau_step": 40}, 1.0, fixed)
    assert first == later  # same model, same numbers: a curve of these rows is a curve of the model
    assert all(v > 0 for v in first.values())
    mean = latent_diagnostics(model, fixed, t.diag_samples, t.diag_chunk, 1.0, VAL_SEED, [0, 1])
    assert first == {f"diag_{k}": v for k, v in mean.items()}  # the mean over instances 0 and 1
    single = latent_diagnostics(model, fixed, t.diag_samples, t.diag_chunk, 1.0, VAL_SEED, 0)
    assert single == latent_diagnostics(model, fixed, t.diag_samples, t.diag_chunk, 1.0, VAL_SEED, [0])
    with torch.no_grad():
        model.prior.parameters().__next__().add_(0.5)  # another model: other numbers
    moved = diagnostic_row(model, b1, t, {"tau_step": 3}, 1.0, fixed)
    assert moved["diag_prior_post"] != first["diag_prior_post"]


def test_without_a_fixed_batch_each_step_draws_its_own_instance(aus_and_batches):
    model, _, (b1, _) = aus_and_batches
    t = SMOKE.train
    rows = [diagnostic_row(model, b1, t, {"tau_step": s}, 1.0) for s in (3, 4)]
    assert rows[0] != rows[1]  # the official measure: another instance and other draws each time
    assert rows[0] == diagnostic_row(model, b1, t, {"tau_step": 3}, 1.0)  # but seeded by the step
    official = get_profile("smoke", "train.diag_instances=0").train
    assert diagnostic_row(model, b1, official, {"tau_step": 3}, 1.0, aus_and_batches[1]) == rows[0]
