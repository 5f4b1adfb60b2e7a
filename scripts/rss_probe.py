"""Resident memory of the kit's full-configuration training steps over many steps: is it flat?

Usage::

    python scripts/rss_probe.py --steps 500 --set train.encode_once=true --json runs/bench/rss_probe.json

Runs ``--steps`` AUS mixture steps (R + ndis D + G, warm-up counted as done; the heaviest step of the kit) at
the full configuration (official sizes, batch 128, vocabulary 5,547) on real batches, with random weights, and
records the process's resident set size after every step. Prints it at a few steps, the peak, and the growth
from step 50 to the last step (a leak grows steadily; a flat curve stays within allocator noise).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mixpoet_lib.cli.bench import OFFICIAL_VOCAB
from mixpoet_lib.cli.bench_probes import RSSSampler, cpu_info
from mixpoet_lib.config import get_profile
from mixpoet_lib.data.batching import epoch_order, make_batch
from mixpoet_lib.data.dataset import prepare
from mixpoet_lib.data.vocab import N_SPECIALS
from mixpoet_lib.overrides import apply_overrides, parse_overrides
from mixpoet_lib.train import steps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import kit_setup  # the kit's model and optimisers, as its trainers make them

SETTLE = 50  # steps after which the allocator has seen every shape


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--set", dest="overrides", default="", help="kit settings, e.g. train.encode_once=true")
    ap.add_argument("--json", type=Path, help="also write the per-step figures here")
    args = ap.parse_args(argv)
    if args.steps <= SETTLE:
        raise SystemExit(f"--steps must exceed {SETTLE}, got {args.steps}")
    prof = apply_overrides(get_profile("full"), {"data": {"max_vocab": OFFICIAL_VOCAB - N_SPECIALS}})
    prof = apply_overrides(prof, parse_overrides(args.overrides or None))
    data = prepare(prof)
    arrays = data.arrays("unl_train")
    torch.manual_seed(0)
    bsz = prof.train.mixture.batch_size
    order = epoch_order(len(arrays.poem_index), bsz, seed=0, epoch=0, drop_last=True)
    kit = kit_setup(prof, len(data.vocab))
    rss, secs = [], []
    for i in range(args.steps):
        batch = make_batch(arrays, order[i % len(order)])
        t0 = time.perf_counter()
        steps.aus_step(kit["aus"], batch, kit["opt_aus"], prof.train, kit["counters"], 1.0)
        secs.append(time.perf_counter() - t0)
        rss.append(RSSSampler.rss_bytes() / 2**20)
    out = {
        "cpu": cpu_info(),
        "threads": torch.get_num_threads(),
        "overrides": args.overrides,
        "steps": args.steps,
        "rss_mb": {str(s): round(rss[s - 1], 1) for s in (1, 10, SETTLE, 100, 250, args.steps) if s <= args.steps},
        "peak_rss_mb": round(max(rss), 1),
        "growth_after_settle_mb": round(rss[-1] - rss[SETTLE - 1], 1),
        "slope_mb_per_100_steps": round(float(np.polyfit(np.arange(SETTLE, args.steps), rss[SETTLE:], 1)[0]) * 100, 2),
        "median_step_s": round(float(np.median(secs[3:])), 3),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**out, "rss_per_step_mb": rss}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
