"""Estimate the training wall time of a profile from a short timed run of every phase (nothing is kept).

    .venv/bin/python scripts/time_training.py --profile tutorial --steps 30
    .venv/bin/python scripts/time_training.py --profile full --data-profile tutorial --steps 15 --threads 2

Each phase runs ``--steps`` steps in a temporary run folder (AUS with its reconstruction warm-up shortened
to a third of them, so both regimes are timed). The estimate for the profile's real step counts is
median s/step × steps (AUS: warm-up and adversarial steps separately) + validation and checkpoint passes
at the profile's cadence. The first 3 steps of every phase are left out of the medians.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixpoet_lib.batching import BatchStream  # noqa: E402
from mixpoet_lib.config import get_profile  # noqa: E402
from mixpoet_lib.dataset import TRAIN_SPLITS, prepare  # noqa: E402
from mixpoet_lib.training import train  # noqa: E402

SKIP = 3


def planned_steps(profile, data, name: str, phase: str) -> tuple[int, int]:
    """(planned steps, steps per epoch) of a phase under the profile."""
    t = profile.train
    pc = {"dae": t.dae, "cl1": t.classifier, "cl2": t.classifier, "c1": t.mixture, "c2": t.finetune}[phase]
    mode = {"dae": "dae", "cl1": "cl1", "cl2": "cl2", "c1": "mixpoet_pre", "c2": "mixpoet_tune"}[phase]
    per_epoch = len(BatchStream(data, TRAIN_SPLITS, mode, pc.batch_size, 0))
    total = per_epoch * pc.epochs
    return (min(total, pc.max_steps) if pc.max_steps else total), per_epoch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tutorial")
    ap.add_argument("--data-profile", help="prepare the data with this profile instead")
    ap.add_argument("--models", nargs="+", default=["basic", "cvae", "igs", "aus"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = the profile's setting)")
    ap.add_argument("--json", help="write the table here as JSON")
    args = ap.parse_args()

    prof = get_profile(args.profile)
    real = prof
    warm = max(args.steps // 3, 1)
    t = prof.train
    timing = dataclasses.replace(t, rec_warm_steps=warm, ckpt_every=10**9, validate_every=0,
                                 num_threads=args.threads or t.num_threads)
    prof = dataclasses.replace(prof, train=timing)
    data = prepare(get_profile(args.data_profile) if args.data_profile else real)
    vocab = len(data.vocab)
    print(f"profile {real.name} (model {dataclasses.asdict(real.model)}), data {data.root.name}, vocab {vocab}, "
          f"threads {timing.num_threads or torch.get_num_threads()}", flush=True)
    rows = []
    cpu: dict[str, list[float]] = {}
    last = [time.process_time()]

    def on_step(key: str, step: int, row: dict) -> None:  # CPU seconds per step (≈ uncontended wall time at 1 thread)
        now = time.process_time()
        if step > 1:
            cpu.setdefault(key, []).append(now - last[0])
        last[0] = now

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(args.models, prof, data=data, run_dir=tmp, progress=False, max_steps=args.steps, callback=on_step)
        wall = time.perf_counter() - t0
        for key, r in res.items():
            name, phase = key.rsplit("_", 1)
            steps, per_epoch = planned_steps(real, data, name, phase)
            times = r.step_seconds[SKIP:]
            med = statistics.median(times)
            est = med * steps
            cpu_med = statistics.median(cpu[key][SKIP:-1])  # the last step also carries validation + checkpoint
            row = {"phase": key, "planned_steps": steps, "steps_per_epoch": per_epoch,
                   "s_per_step": med, "cpu_s_per_step": cpu_med}
            if name.startswith("aus"):
                log = pd.read_csv(Path(tmp) / "logs" / f"{key}.csv")
                adv = log["d_loss"].notna().to_numpy()
                warm_t = [x for x, a in zip(r.step_seconds, adv) if not a][SKIP:]
                adv_t = [x for x, a in zip(r.step_seconds, adv) if a][1:]  # the first carries a diagnostic
                w = statistics.median(warm_t) if warm_t else math.nan
                a = statistics.median(adv_t) if adv_t else math.nan
                row.update(s_per_step_warmup=w, s_per_step_adversarial=a)
                n_warm = max(min(real.train.rec_warm_steps, steps), 0) if phase == "c1" else 0
                est = (w * n_warm if n_warm else 0.0) + a * (steps - n_warm)
            n_val = (steps // real.train.validate_every if real.train.validate_every else 0) + 1 \
                + (steps // per_epoch if real.train.validate_every_epoch else 0)
            n_ckpt = steps // real.train.ckpt_every + 1
            row.update(validation_s=r.val_seconds, checkpoint_s=r.ckpt_seconds,
                       estimate_min=(est + n_val * r.val_seconds + n_ckpt * max(r.ckpt_seconds, 0.05)) / 60)
            rows.append(row)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"estimated training total for {real.name}: {df['estimate_min'].sum():.1f} min "
          f"(timed run took {wall:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
