"""``mixpoet publish``: export a run's finished models, judges and char LM to weights/<profile>/ (safetensors, JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mixpoet_lib.checkpoints import checkpoint_path, export_run, final_phase, load_model, total_size_mb, weights_dir
from mixpoet_lib.cli.settings import add_profile_options, default_run_dir, overrides_from_args, profile_from_args
from mixpoet_lib.data.dataset import PreparedData, prepare
from mixpoet_lib.overrides import run_name
from mixpoet_lib.published import write_published_meta
from mixpoet_lib.train.loop import validation_loss


def _cmd_publish(args: argparse.Namespace) -> int:
    profile = profile_from_args(args)
    run = default_run_dir(args, profile)
    data = prepare(profile, data_dir=args.data_dir, mirror=args.mirror)
    out = args.output or weights_dir(run_name(profile.name, overrides_from_args(args)))
    files = export_run(
        run, profile, data.vocab, out, tuple(args.models), args.storage, judges=not args.no_judges, lm=not args.no_lm
    )
    for f in files:
        print(f"{f}  {f.stat().st_size / 1e6:.2f} MB")
    print(f"total {total_size_mb(out):.1f} MB in {out}")
    if not args.no_check:
        check_published(run, out, tuple(args.models), data)
    return 0


def check_published(run: Path | str, out: Path | str, models: tuple[str, ...], data: PreparedData) -> None:
    """Validation perplexity of each model from its training checkpoint and from the published file (noted in its
    JSON)."""
    for name in models:
        orig = load_model(checkpoint_path(run, *final_phase(name)), device="cpu")
        pub = load_model(Path(out) / f"{name}.safetensors", device="cpu")
        a, b = validation_loss(orig, data), validation_loss(pub, data)
        print(f"{name}: validation perplexity {a['val_ppl']:.2f} (checkpoint) vs {b['val_ppl']:.2f} (published)")
        meta_path = Path(out) / f"{name}.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["check"] = {
            "val_ppl_checkpoint": round(a["val_ppl"], 3),
            "val_ppl_published": round(b["val_ppl"], 3),
            "batches": a["batches"],
        }
        write_published_meta(Path(out) / f"{name}.safetensors", meta)  # the digests cover the new entry too


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``publish`` sub-command."""
    p = sub.add_parser(
        "publish",
        help="export trained weights as safetensors + JSON (weights/<profile>/)",
        description=__doc__.splitlines()[0],
    )
    add_profile_options(p)
    p.add_argument(
        "--run-dir", help="run folder with checkpoints/ (default: runs/<profile>, runs/<profile>-<digest> with --set)"
    )
    p.add_argument("--output", help="output folder (default: weights/<profile>, weights/<profile>-<digest> with --set)")
    p.add_argument(
        "--models",
        nargs="+",
        default=["basic", "cvae", "igs", "aus"],
        help="models to export (default: basic cvae igs aus)",
    )
    p.add_argument(
        "--storage",
        choices=("fp32", "fp16", "int8"),
        default="int8",
        help="storage of large weight matrices (default int8 with per-row scales)",
    )
    p.add_argument("--no-judges", action="store_true", help="do not export the judge classifiers")
    p.add_argument("--no-lm", action="store_true", help="do not export the character LM")
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip comparing validation perplexity of the checkpoints and the published files",
    )
    p.add_argument("--data-dir", help="data folder (default: $MIXPOET_DATA_DIR or data/)")
    p.add_argument("--mirror", help="local mirror of the raw files (default: $MIXPOET_MIRROR)")
    p.set_defaults(func=_cmd_publish)
