"""Time the kit's training steps against the authors' official code, side by side in one process.

Usage (the official repository is not part of the kit; clone it anywhere first)::

    git clone https://github.com/THUNLP-AIPoet/MixPoet /tmp/MixPoet      # tested at commit 3131f30
    python scripts/side_by_side.py --official /tmp/MixPoet --steps 12 --json runs/side_by_side.json

Both codes get the *same* batches (real CCPC/CQCF instances from the kit's prepared data, the full
configuration: emb 256, hidden 512, context 512, latent 256, batch 128, vocabulary 5,547) and random
weights. Their steps are interleaved (official, kit, official, kit, ...) so that a machine whose speed drifts
affects both alike; the figures are medians over the timed steps, the first ``--skip`` of each left out.

* DAE step: the official ``DAETrainer.run_step`` against :func:`mixpoet_lib.train.steps.dae_step`.
* Mixture step after the reconstruction warm-up: the official ``run_rec_step`` + ``ndis`` × ``run_dis_step``
  + ``run_adv_step`` (with its temperature and noise schedules ticking as in its loop) against
  :func:`mixpoet_lib.train.steps.aus_step` with the warm-up counted as done.

The official modules are imported unchanged from ``<official>/codes``; nothing of them is copied here. The
kit's side takes ``--set`` overrides (e.g. ``--set train.encode_once=false`` for the official order of
work) so each saving can be timed on its own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from mixpoet_lib.checkpoints import build_model
from mixpoet_lib.cli.bench import OFFICIAL_VOCAB
from mixpoet_lib.cli.bench_probes import cpu_info, matmul_peak
from mixpoet_lib.config import get_profile
from mixpoet_lib.data.batching import epoch_order, make_batch
from mixpoet_lib.data.dataset import prepare
from mixpoet_lib.data.vocab import BOS, N_SPECIALS, PAD
from mixpoet_lib.models.factor_models import MixPoetAUS
from mixpoet_lib.overrides import apply_overrides, parse_overrides
from mixpoet_lib.train import optimisers, steps
from mixpoet_lib.train.factor_trainers import aus_optimiser_specs
from mixpoet_lib.train.steps import factor_counters


def official_modules(root: Path) -> dict[str, Any]:
    """Import the official code's modules from ``root/codes`` (or ``root`` itself)."""
    codes = root / "codes" if (root / "codes").is_dir() else root
    if not (codes / "graphs.py").is_file():
        raise SystemExit(f"{codes}: no graphs.py here; --official must name a clone of THUNLP-AIPoet/MixPoet")
    sys.path.insert(0, str(codes))  # the official modules import each other by their bare names
    names = {"config": "config", "graphs": "graphs", "layers": "layers", "dae": "dae_trainer", "mix": "mix_trainer"}
    return {k: importlib.import_module(v) for k, v in names.items()}


def official_batch(b: dict[str, torch.Tensor]) -> tuple:
    """The kit's batch dict in the official argument order (lines trimmed to the batch's longest + <E>)."""
    width = int(b["lines"].ne(PAD).sum(-1).max())
    dec = [b["lines"][:, i, :width].contiguous() for i in range(b["lines"].size(1))]
    return b["keys"], b["poems"], dec, b["labels"], b["label_mask"], b["length"]


def official_setup(mods: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """The official model, optimisers, trainers and schedule tools, built as its ``train`` methods build them."""
    hps = mods["config"].hparams._replace(vocab_size=vocab_size, pad_idx=PAD, bos_idx=BOS)
    lay = mods["layers"]
    model = mods["graphs"].MixPoetAUS(hps).train()

    def sched(params: Any, betas: tuple[float, float], warm: int, lr: float, beta: float = 0.55) -> Any:
        opt = torch.optim.AdamW(params, lr=1e-3, betas=betas, weight_decay=hps.weight_decay)
        return lay.ScheduledOptim(optimizer=opt, warmup_steps=warm, max_lr=lr, min_lr=hps.min_lr, beta=beta)

    dae = mods["dae"].DAETrainer(hps)
    mix = mods["mix"].MixTrainer(hps)
    for tr in (dae, mix):
        tr.losswrapper = lay.LossWrapper(pad_idx=PAD, sens_num=hps.sens_num, sen_len=hps.sen_len)
    mix.tau_decay_tool = lay.ExponentialDecay(0, hps.tau_annealing_steps, hps.min_tau)
    mix.noise_decay_tool = lay.LinearDecay(0, hps.noise_decay_steps, max_v=0.3, min_v=0.0)
    return {
        "hps": hps,
        "model": model,
        "dae": dae,
        "mix": mix,
        "opt_dae": sched(model.dae_parameters(), (0.9, 0.99), hps.dae_warmup_steps, hps.dae_max_lr),
        "opt_rec": sched(model.rec_parameters(), (0.9, 0.99), hps.warmup_steps, hps.max_lr),
        "opt_dis": sched(model.dis_parameters(), (0.5, 0.99), hps.warmup_steps, hps.max_lr, beta=0.5),
        "opt_gen": sched(model.gen_parameters(), (0.9, 0.99), hps.warmup_steps, hps.max_lr),
    }


def official_dae_step(o: dict[str, Any], batch: tuple) -> float:
    """One official DAE update."""
    keys, poems, dec, _, _, lengths = batch
    loss, _ = o["dae"].run_step(o["model"], o["opt_dae"], keys, poems, dec, lengths)
    return loss


def official_mixture_step(o: dict[str, Any], batch: tuple) -> float:
    """One official post-warm-up mixture iteration: R, ndis × D, G, then the temperature tick (its loop's order)."""
    keys, poems, dec, labels, mask, lengths = batch
    mix, model = o["mix"], o["model"]
    rec = mix.run_rec_step(model, o["opt_rec"], keys, poems, dec, labels, mask, lengths)[0]
    for _ in range(o["hps"].ndis):
        mix.run_dis_step(model, o["opt_dis"], keys, poems, labels, mask)
    mix.noise_decay_tool.do_step()
    mix.run_adv_step(model, o["opt_gen"], keys, poems, labels, mask)
    model.set_tau(mix.tau_decay_tool.do_step())
    return rec


def kit_setup(prof: Any, vocab_size: int) -> dict[str, Any]:
    """The kit's DAE and AUS models with the optimisers its trainers make; AUS counters past the warm-up."""
    t = prof.train
    dae = build_model("dae", prof.model, vocab_size).train()
    aus = cast(MixPoetAUS, build_model("aus", prof.model, vocab_size).train())
    specs = aus_optimiser_specs(aus, t, t.mixture)
    counters = factor_counters()
    counters["rec_steps"] = t.rec_warm_steps
    return {
        "dae": dae,
        "aus": aus,
        "opt_dae": optimisers.make_optimisers(
            {"rec": (list(dae.param_groups()["rec"]), t.betas, t.dae.decay_exponent)}, t.dae, t
        ),
        "opt_aus": optimisers.make_optimisers(specs, t.mixture, t),
        "counters": counters,
    }


def interleave(runs: dict[str, Any], batches: list[Any], skip: int) -> dict[str, dict[str, float]]:
    """Run each named step on every batch in turn; return per-name median/min seconds and the last loss."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    last: dict[str, float] = {}
    for i, b in enumerate(batches):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            last[name] = fn(b)
            if i >= skip:
                times[name].append(time.perf_counter() - t0)
    return {
        k: {"median_s": statistics.median(v), "min_s": min(v), "steps": len(v), "last_loss": last[k]}
        for k, v in times.items()
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="a clone of THUNLP-AIPoet/MixPoet")
    ap.add_argument("--steps", type=int, default=12, help="steps per code and kind (default 12)")
    ap.add_argument("--skip", type=int, default=3, help="first steps left out of the medians")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    ap.add_argument("--set", dest="overrides", default="", help="kit settings, e.g. train.encode_once=true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    mods = official_modules(args.official.resolve())
    prof = apply_overrides(get_profile("full"), {"data": {"max_vocab": OFFICIAL_VOCAB - N_SPECIALS}})
    prof = apply_overrides(prof, parse_overrides(args.overrides or None))
    data = prepare(prof)
    arrays = data.arrays("unl_train")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    order = epoch_order(len(arrays.poem_index), prof.train.mixture.batch_size, seed=0, epoch=0, drop_last=True)
    dae_b = [make_batch(arrays, ids, prof.train.dae_corrupt_ratio, rng) for ids in order[: args.steps]]
    mix_b = [make_batch(arrays, ids) for ids in order[: args.steps]]
    off = official_setup(mods, len(data.vocab))
    kit = kit_setup(prof, len(data.vocab))
    peaks = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
    t = prof.train
    dae = interleave(
        {
            "official": lambda p: official_dae_step(off, p[0]),
            "kit": lambda p: steps.dae_step(kit["dae"], p[1], kit["opt_dae"], 1.0, t.amp_bf16)["loss"],
        },
        [(official_batch(b), b) for b in dae_b],
        args.skip,
    )
    mixture = interleave(
        {
            "official": lambda p: official_mixture_step(off, p[0]),
            "kit": lambda p: steps.aus_step(kit["aus"], p[1], kit["opt_aus"], t, kit["counters"], 1.0)["rec"],
        },
        [(official_batch(b), b) for b in mix_b],
        args.skip,
    )
    out = {
        "cpu": cpu_info(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_peak_gflops": peaks,
        "kit_overrides": args.overrides,
        "batch": t.mixture.batch_size,
        "vocab": len(data.vocab),
        "dae": dae,
        "mixture": mixture,
    }
    for kind in ("dae", "mixture"):
        r = out[kind]
        r["speed-up"] = r["official"]["median_s"] / r["kit"]["median_s"]
    print(json.dumps(out, indent=1, ensure_ascii=False))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
