"""Does training still learn? The smoke profile trained in full (basic, cvae, igs, aus), checked two ways.

(a) **"Did it learn" thresholds** the smoke profile meets, each set well inside what three seeds (1234, 1, 2)
    gave on a 2-core CPU (measured values in the comments beside each threshold).
(b) **Golden numbers**: the key numbers of the run (per-phase losses, classifier accuracies, KL terms, the AUS
    discriminator/generator losses and latent distance, a tiny generation's diversity) compared with
    ``tests/golden/smoke_numbers.json`` within relative tolerances (:data:`TOLERANCES`). The tolerances come
    from two measurements: the same seed trained with 2 torch threads instead of 1 (another summation order,
    the way another CPU rounds differently) moved reconstruction losses by < 1e-4 %, the AUS adversarial numbers
    by up to 0.9 % and the generation's distinct-2 by 5 %; changing the seed moved them by 0.1-2 %, up to
    120 % and 5 %. Each group's tolerance is a few times its rounding spread, at least 5 % and at most 15 %.

After a deliberate change of training (new defaults, a fixed bug), regenerate the file and commit it with the
change, saying why the numbers moved::

    MIXPOET_UPDATE_GOLDEN=1 pytest tests/test_learning.py

The module trains for about 80 s of CPU time (one thread); the thresholds and tolerances are in the tests below.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mixpoet_lib.checkpoints import checkpoint_path, load_model
from mixpoet_lib.config import get_profile
from mixpoet_lib.data.batching import BatchStream
from mixpoet_lib.data.dataset import TRAIN_SPLITS
from mixpoet_lib.data.rhythm import default_tone_rhyme
from mixpoet_lib.evaluate import systems
from mixpoet_lib.evaluate.analysis import MIXTURES
from mixpoet_lib.generate.generator import Generator
from mixpoet_lib.metrics import distinct_n, intra_topic_jaccard
from mixpoet_lib.train.loop import train
from mixpoet_lib.train.optimisers import make_optimisers
from mixpoet_lib.train.steps import classifier_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMOKE = get_profile("smoke")
GOLDEN = Path(__file__).resolve().parent / "golden" / "smoke_numbers.json"
UPDATE = os.environ.get("MIXPOET_UPDATE_GOLDEN", "") not in ("", "0")
MODELS = ("basic", "cvae", "igs", "aus")
C1 = ("basic_c1", "cvae_c1", "igs_c1", "aus_c1")
LAST = 5  # steps averaged for a phase's final training loss
GEN_KEYWORDS = 4  # the tiny generation: AUS, 4 test keywords × 6 mixtures, beam of the smoke profile

# relative tolerance per group of numbers (first matching pattern wins)
TOLERANCES = (
    ("*_rec", 0.05),  # reconstruction losses: rounding < 1e-6 relative, seeds 0.1-2 %
    ("shared_cl?/*_loss", 0.05),  # classifier losses: rounding 0, seeds < 2 % (first batch: 8 %)
    ("shared_cl?/val_*", 0.15),  # at the majority-class level in smoke: jumps between constant predictions
    ("*val_kl*", 0.10),  # KL terms: rounding < 1e-6, seeds 3-26 %
    ("aus/adv_batches", 0.0),
    ("aus*", 0.15),  # adversarial numbers: rounding ≤ 0.9 %, seeds 15-120 %
    ("gen/*", 0.15),  # discrete beam search: rounding 5 % on distinct-2, 0.3 % on Jaccard
)


def _tolerance(key: str) -> float:
    return next(tol for pattern, tol in TOLERANCES if fnmatch.fnmatch(key, pattern))


def _log(run: Path, key: str, valid: bool = False) -> pd.DataFrame:
    return pd.read_csv(run / "logs" / f"{key}{'_valid' if valid else ''}.csv")


def training_numbers(run: Path) -> dict[str, float]:
    """The key numbers of a trained smoke run, from its training and validation logs."""
    out: dict[str, float] = {}
    for key in ("shared_dae", *C1, "igs_c2", "aus_c2"):
        log = _log(run, key)
        col = "rec" if "rec" in log else "loss"
        out[f"{key}/first_rec"] = float(log[col].iloc[0])  # the loss before the phase's first update
        out[f"{key}/train_rec"] = float(log[col].tail(LAST).mean())
        out[f"{key}/val_rec"] = float(_log(run, key, True)["val_rec"].iloc[-1])
    for key in ("shared_cl1", "shared_cl2"):
        log, val = _log(run, key), _log(run, key, True)
        out[f"{key}/first_loss"] = float(log["loss"].iloc[0])
        out[f"{key}/train_loss"] = float(log["loss"].tail(LAST).mean())
        out.update({f"{key}/{m}": float(val[m].iloc[-1]) for m in ("val_acc_xw", "val_acc_w")})
    out["cvae_c1/val_kl"] = float(_log(run, "cvae_c1", True)["val_kl"].iloc[-1])
    out.update({f"igs_c2/{k}": float(_log(run, "igs_c2", True)[k].iloc[-1]) for k in ("val_kl1", "val_kl2")})
    adv = pd.concat([_log(run, "aus_c1"), _log(run, "aus_c2")], ignore_index=True)
    adv = adv[adv["d_loss"].notna()]  # the batches after the reconstruction warm-up, C1 then C2
    out["aus/adv_batches"] = float(len(adv))
    for col in ("d_loss", "g_loss"):
        out[f"aus/{col}_first"] = float(adv[col].head(LAST).mean())
        out[f"aus/{col}_last"] = float(adv[col].tail(LAST).mean())
    distance = adv["diag_prior_post"].dropna()
    out["aus/prior_post_first"], out["aus/prior_post_last"] = float(distance.iloc[0]), float(distance.iloc[-1])
    val = _log(run, "aus_c2", True)
    out["aus_c2/val_d_loss"], out["aus_c2/val_g_loss"] = (
        float(val["val_d_loss"].iloc[-1]),
        float(val["val_g_loss"].iloc[-1]),
    )
    return out


def generation_numbers(run: Path, data, tone_rhyme) -> dict[str, float]:
    """Diversity of a tiny AUS generation: each of 4 test keywords under each of the 6 mixtures (seed 1)."""
    model = load_model(checkpoint_path(run, "aus", "c2"), "cpu")
    gen = Generator(model, data.vocab, tone_rhyme, data.training_lines(), SMOKE.gen)
    items = systems.test_items(data, GEN_KEYWORDS, SMOKE.seed)
    groups: list[list[str]] = [[] for _ in items]
    for mix in MIXTURES:
        for group, poem in zip(
            groups, gen.generate([it.keyword for it in items], [it.length for it in items], mix, seed=1)
        ):
            group.extend([poem.text] if poem.ok else [])
    poems = [p for g in groups for p in g]
    return {
        "gen/ok_share": len(poems) / (len(items) * len(MIXTURES)),
        "gen/distinct_2": distinct_n(poems, 2),
        "gen/intra_jaccard_mix": intra_topic_jaccard(groups),
    }


@pytest.fixture(scope="module")
def run(smoke_data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("learning")
    train(MODELS, SMOKE, data=smoke_data, run_dir=folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def numbers(run, smoke_data, mirror_dir) -> dict[str, float]:
    return {**training_numbers(run), **generation_numbers(run, smoke_data, default_tone_rhyme(mirror_dir))}


# ----------------------------------------------------------------------------------------------
# (a) did it learn?
# ----------------------------------------------------------------------------------------------


def test_dae_learns_from_uniform(numbers, smoke_data):
    first, val = numbers["shared_dae/first_rec"], numbers["shared_dae/val_rec"]
    assert first == pytest.approx(math.log(len(smoke_data.vocab)), rel=0.02)  # untrained: ≈ uniform over the vocabulary
    assert val <= first - 1.0, (
        f"DAE validation loss {val:.3f} not 1 nat below the untrained {first:.3f}"
    )  # seeds: 1.57-1.61


@pytest.mark.parametrize("key", C1)
def test_second_stage_learns_beyond_the_dae(numbers, key):
    drop = numbers[f"{key}/first_rec"] - numbers[f"{key}/train_rec"]
    assert drop >= 0.1, f"{key}: training loss fell only {drop:.3f} over the phase"  # seeds: 0.25-0.39
    gain = numbers["shared_dae/val_rec"] - numbers[f"{key}/val_rec"]
    assert gain >= 0.05, f"{key}: validation loss only {gain:.3f} below the DAE's"  # seeds: 0.11-0.15


@pytest.mark.parametrize("name", ["igs", "aus"])
def test_fine_tuning_lowers_validation_loss(numbers, name):
    gain = numbers[f"{name}_c1/val_rec"] - numbers[f"{name}_c2/val_rec"]
    assert gain >= 0.025, f"{name}: C2 validation loss only {gain:.3f} below C1's"  # seeds: 0.052-0.059


def test_latent_kl_terms_stay_open(numbers):
    assert numbers["cvae_c1/val_kl"] >= 0.2  # seeds: 0.53-0.54
    assert numbers["igs_c2/val_kl1"] >= 0.1 and numbers["igs_c2/val_kl2"] >= 0.1  # seeds: 0.25-0.34


def test_aus_adversarial_game_moves_without_collapse(numbers):
    n = numbers
    assert (
        n["aus/adv_batches"]
        == SMOKE.train.mixture.max_steps + SMOKE.train.finetune.max_steps - SMOKE.train.rec_warm_steps
    )
    # the discriminator learns to tell posterior from prior codes; the generator's loss answers (seeds: ×0.14-0.31)
    assert n["aus/d_loss_last"] <= 0.6 * n["aus/d_loss_first"], "discriminator loss did not fall"
    assert n["aus/g_loss_last"] >= 1.3 * n["aus/g_loss_first"], "generator loss did not move"  # seeds: ×1.97-3.35
    assert min(n["aus/d_loss_last"], n["aus_c2/val_d_loss"]) >= 0.02, "discriminator collapsed to 0"  # seeds ≥ 0.08
    ratio = n["aus/prior_post_last"] / n["aus/prior_post_first"]
    assert math.isfinite(ratio) and ratio <= 2.0, "prior-posterior distance exploded"  # seeds: ×0.62-1.06


def test_classifier_step_fits_one_batch(run, smoke_data):
    """The smoke classifier phases (30 steps) end at the majority-class level on validation (seeds: living 0.31-0.36
    vs majority 0.36, era 0.48-0.52 vs 0.52), so "beats the majority class" cannot be asked of them. Instead the
    production step must fit one fixed labelled batch in 40 steps, starting from the trained phase's weights."""
    t = SMOKE.train
    for k, phase in enumerate(("cl1", "cl2")):
        model = load_model(checkpoint_path(run, "shared", phase), "cpu").train()
        opt = make_optimisers(
            {"rec": (model.classifier_groups()[phase], t.betas, t.classifier.decay_exponent)}, t.classifier, t
        )
        batch = next(iter(BatchStream(smoke_data, TRAIN_SPLITS, phase, 32, 7).batches(1)))
        rows = [classifier_step(model, batch, opt, k) for _ in range(40)]
        majority = np.bincount(batch["labels"][:, k].numpy()).max() / len(batch["labels"])
        acc = np.mean([r["acc_xw"] for r in rows[-8:]])
        assert acc >= majority + 0.1, (
            f"{phase}: batch accuracy {acc:.2f} vs majority {majority:.2f}"
        )  # seeds: 0.62-0.96
        assert rows[-1]["loss"] <= 0.9 * rows[0]["loss"]  # seeds: ×0.51-0.83


def test_mixtures_give_different_poems(numbers):
    assert numbers["gen/ok_share"] >= 0.75  # seeds: 1.0
    assert numbers["gen/intra_jaccard_mix"] <= 0.95  # the six mixtures of a keyword are not one poem (seeds: 0.77-0.82)


# ----------------------------------------------------------------------------------------------
# (b) the golden numbers
# ----------------------------------------------------------------------------------------------


def test_numbers_match_the_golden_file(numbers):
    if UPDATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        doc = {
            "about": "key numbers of the smoke profile (tests/test_learning.py); MIXPOET_UPDATE_GOLDEN=1 rewrites them",
            "torch": torch.__version__,
            "numbers": {k: round(v, 6) for k, v in sorted(numbers.items())},
        }
        GOLDEN.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))["numbers"]
    assert set(golden) == set(numbers), f"keys differ from {GOLDEN.name} (regenerate it): {set(golden) ^ set(numbers)}"
    off = []
    for key, want in golden.items():
        got, tol = numbers[key], _tolerance(key)
        if not abs(got - want) <= tol * abs(want) + 1e-9:
            off.append(f"{key}: {got:.6g} vs golden {want:.6g} ({(got - want) / want:+.1%}, tolerance {tol:.0%})")
    assert not off, "smoke numbers moved:\n" + "\n".join(off)
