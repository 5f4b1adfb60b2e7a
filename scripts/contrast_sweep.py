"""Score MixPoet-IGS / MixPoet-AUS under mixture contrasts γ (design §5.10) as notebook 05 scores them.

``docs/experiments.md`` §21 was measured with this script: for every γ it loads the generators (published weights or
training checkpoints), generates the notebook-05 poems under ``gen.mixture_contrast=γ`` into ``OUT/g<γ>/`` (poem
caches, so a re-run only scores) and prints one JSON object per system with the mean and std over the generation
seeds of every metric. ``--path latent`` contrasts only the prior draw z, ``--path labels`` only the label
embeddings d(y) (the other path stays at γ = 0): which of the two carries the style.

Usage::

    python scripts/contrast_sweep.py --weights weights/tutorial --gammas 0,1,2 --systems aus igs --out /tmp/contrast
    python scripts/contrast_sweep.py --weights weights/tutorial --gammas 1 --systems aus --path labels --out /tmp/labels
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mixpoet_lib.checkpoints import load_model
from mixpoet_lib.evaluate import evaluation
from mixpoet_lib.models.factor_models import FactorModelBase
from mixpoet_lib.notebook import setup
from mixpoet_lib.train import charlm, judges

NOTEBOOK_SEED = 1234  # notebook 05's SEED parameter
PATHS = ("both", "latent", "labels")


def one_path(model: FactorModelBase, path: str) -> FactorModelBase:
    """Keep γ on one path only: 'latent' leaves the label embeddings plain, 'labels' the prior draw."""
    cls = type(model)
    if path == "latent":
        model.decoder_s0 = lambda z, h_w, y, contrast=0.0: cls.decoder_s0(model, z, h_w, y, 0.0)  # type: ignore[method-assign]
    elif path == "labels":
        model.contrast_latent = lambda h_w, y, eps, contrast: cls.contrast_latent(model, h_w, y, eps, 0.0)  # type: ignore[method-assign]
    return model


def sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (γ, system): means and stds over the generation seeds."""
    seeds = tuple(int(s) for s in args.seeds.split(","))
    if not args.weights.is_dir() and len(args.systems) > 1:
        raise SystemExit(f"contrast_sweep: {args.weights} is one file; name one system, or give a weights folder")
    models = {}
    for system in args.systems:
        path = args.weights / f"{system}.safetensors" if args.weights.is_dir() else args.weights
        if not path.is_file():
            raise SystemExit(f"contrast_sweep: no weights {path} for {system!r}")
        models[system] = one_path(load_model(path), args.path)  # generation does not change them: loaded once
    rows = []
    for gamma in (float(g) for g in args.gammas.split(",")):
        profile, data = setup(args.profile, NOTEBOOK_SEED, f"gen.mixture_contrast={gamma}")
        if data is None:
            raise SystemExit("contrast_sweep: the data could not be prepared")
        run = args.out / f"g{gamma:g}"
        run.mkdir(parents=True, exist_ok=True)
        judge_models = judges.ensure_judges(data, profile, run, published=True)
        lm = charlm.ensure_lm(data, profile, run, published=True)
        result = evaluation.evaluate(
            profile, data, run, models, judge_models, lm, args.systems, seeds, args.keywords, progress=False
        )
        for system in args.systems:
            row: dict[str, Any] = {"gamma": gamma, "path": args.path, "system": system, **result.system_row(system)}
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, required=True, help="a weights folder (<system>.safetensors) or one file")
    ap.add_argument("--systems", nargs="+", default=["aus", "igs"], choices=["igs", "aus", "aus_st"])
    ap.add_argument("--gammas", default="0,1", help="mixture contrasts, comma-separated (default 0,1)")
    ap.add_argument("--path", choices=PATHS, default="both", help="where γ acts (default both)")
    ap.add_argument("--profile", default="tutorial", help="the profile the weights were trained under")
    ap.add_argument("--keywords", type=int, default=None, help="test keywords (default: the profile's)")
    ap.add_argument("--seeds", default="1,2,3", help="generation seeds (default 1,2,3)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the poem caches, one sub-folder per γ")
    args = ap.parse_args(argv)
    sweep(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
