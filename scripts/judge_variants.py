"""Judge variants on CQCF (docs/experiments.md §11): size, length of training, character embeddings initialised from
a trained DAE (i.e. learnt on the unlabelled pool). Trains both judges like ``train.judges.train_judge`` (same data,
selection on CQCF valid, scores on CQCF test) but saves nothing.

    python scripts/judge_variants.py NAME [--profile tutorial] [--set OVERRIDES] [--dae RUN/checkpoints/shared_dae.pt]

Prints one JSON line with test/valid macro-F1 and accuracy of both factors. ``--dae`` needs ``eval.judge_emb``
equal to the DAE's embedding size (128 in the tutorial profile); a mismatch stops with one line naming both sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from mixpoet_lib._util import default_device, seed_everything
from mixpoet_lib.config import FACTOR_NAMES, Profile
from mixpoet_lib.data.dataset import PreparedData
from mixpoet_lib.models.judges import JudgeClassifier
from mixpoet_lib.notebook import setup
from mixpoet_lib.train.judges import evaluate_classifier, factor_items, fit_classifier
from mixpoet_lib.train.supervised import FitSettings


def dae_embedding(path: str) -> torch.Tensor:
    """The character embedding matrix of a DAE checkpoint."""
    state = torch.load(path, weights_only=True, map_location="cpu")
    return state["model"]["embed.weight"]


def judge_scores(
    profile: Profile, data: PreparedData, factor: str, seed: int, embedding: torch.Tensor | None = None
) -> dict[str, Any]:
    """Train one judge (embedding initialised from ``embedding`` when given) and score it on CQCF test."""
    t0, fi = time.perf_counter(), FACTOR_NAMES.index(factor)
    train, valid, test = (factor_items(data, s, fi) for s in ("cqcf_train", "cqcf_valid", "cqcf_test"))
    seed_everything(seed)
    model = JudgeClassifier(data.vocab, factor, profile.eval.judge_emb, profile.eval.judge_hidden).to(default_device())
    if embedding is not None:
        if embedding.shape != model.embed.weight.shape:
            raise SystemExit(f"--dae: embedding {tuple(embedding.shape)} ≠ judge {tuple(model.embed.weight.shape)}")
        with torch.no_grad():
            model.embed.weight.copy_(embedding)
    settings = FitSettings.from_profile(profile, profile.eval.judge, seed, False, factor)
    fit = fit_classifier(model, train, valid, settings)
    test_scores = evaluate_classifier(model, *test)
    return {
        "test_f1": round(test_scores["macro_f1"], 4),
        "test_acc": round(test_scores["accuracy"], 4),
        "valid_f1": round(fit["best"]["macro_f1"], 4),
        "best_step": fit["best"].get("step"),
        "steps": fit["steps"],
        "s": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--profile", default="tutorial")
    ap.add_argument("--set", default="", help="settings overrides, e.g. eval.judge_emb=128")
    ap.add_argument("--dae", default="", help="DAE checkpoint whose character embedding starts the judges")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args(argv)
    profile, data = setup(a.profile, a.seed, a.set)
    embedding = dae_embedding(a.dae) if a.dae else None
    out: dict[str, Any] = {"name": a.name, "set": a.set, "dae": a.dae, "seed": a.seed}
    for factor in FACTOR_NAMES:
        out[factor] = judge_scores(profile, data, factor, a.seed, embedding)
        print(factor, out[factor], file=sys.stderr, flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
