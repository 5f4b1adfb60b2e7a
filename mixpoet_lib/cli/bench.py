"""``mixpoet bench``: steady-state training speed, FLOP/s against the machine's matmul peak, memory, generation speed.

For every requested profile a fresh subprocess (so peak memory is its own) runs every training phase of
basic, cvae, igs and aus for a few steps on the real data with the real training code (``train(...,
max_steps=N)`` in a temporary folder; no validation passes, diagnostics or intermediate checkpoints), and
reports per phase:

* steady-state seconds per optimiser step (median, the first ``--skip`` steps of every phase left out, and its
  last step, which also runs the phase's final validation and checkpoint; AUS split into its reconstruction
  warm-up and its adversarial steps: R + ndis·D + G, as the official figure);
* decoded tokens per second (target characters + one ``<E>`` per line, at the phase's batch size);
* FLOPs of one step counted by ``torch.utils.flop_counter`` on a separate step (never a phase's last), hence
  achieved GFLOP/s and
  its share of the measured fp32 and bf16 peak of a large matmul on the same threads;
* peak resident memory while the phase ran (sampled every 5 ms) and the process's peak RSS;
* generation poems/s at the profile's sizes, beam 20, batched (random weights; the decode-only figure is one
  forced-end beam search per line, what a trained model costs).

The ``full`` profile uses the official model and batch sizes with the vocabulary capped at 5,547 tokens, the
size of the official vocabulary, so that its seconds per step compare with the official code's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mixpoet_lib._util import default_device
from mixpoet_lib.checkpoints import build_model
from mixpoet_lib.cli.bench_probes import RSSSampler, StepTimer, cpu_info, matmul_peak
from mixpoet_lib.cli.settings import add_set_option, overrides_from_args
from mixpoet_lib.config import Profile, get_profile
from mixpoet_lib.data.dataset import PreparedData, prepare
from mixpoet_lib.data.vocab import N_SPECIALS
from mixpoet_lib.generate.bench import benchmark_generation
from mixpoet_lib.overrides import apply_overrides, format_overrides, parse_overrides
from mixpoet_lib.runtime import bf16_choice
from mixpoet_lib.train.loop import train

# Against the authors' code, only figures measured in one run compare: these machines' speed drifts by 20–60 %
# between days and up to 3× within an hour, so a ratio to official step times taken elsewhere would mislead.
SIDE_BY_SIDE_HINT = (
    "against the authors' code: scripts/side_by_side.py --official <clone of THUNLP-AIPoet/MixPoet> times both "
    "on the same batches, interleaved, on this machine"
)
OFFICIAL_VOCAB = 5547
DEFAULT_PROFILES = ("smoke", "tutorial", "full")
MODELS = ("basic", "cvae", "igs", "aus")
# warm-up = max(skip + 3, steps // 3), then the FLOP-counted adversarial step, ≥ 2 timed ones and the last one
MIN_STEPS_PAST_SKIP = 7


# ----------------------------------------------------------------------------------------------
# measurements (worker side)
# ----------------------------------------------------------------------------------------------


def bench_settings(profile_name: str, steps: int, skip: int, threads: int, overrides: str | None = None) -> Profile:
    """The profile as benchmarked: ``--set`` overrides applied, the official vocabulary size for ``full``,
    AUS warm-up long enough to time both regimes, no checkpoints, validation or diagnostics in between."""
    prof = get_profile(profile_name)
    if profile_name == "full":
        prof = apply_overrides(prof, {"data.max_vocab": OFFICIAL_VOCAB - N_SPECIALS})
    prof = apply_overrides(prof, parse_overrides(overrides))  # the user's settings win
    warm = max(skip + 3, steps // 3)  # AUS: reconstruction warm-up steps, then adversarial ones
    return apply_overrides(
        prof,
        {
            "train": {
                "rec_warm_steps": warm,
                "ckpt_every": 10**9,
                "validate_every": 0,
                "validate_every_epoch": False,
                "diag_every": 0,
                "num_threads": threads or prof.train.num_threads,
            }
        },
    )


def _regimes(name: str, key: str, per_step: list[tuple[int, float]], logs: Path) -> dict[str, list]:
    """Split AUS step timings into warm-up and adversarial steps (from its CSV log); one regime otherwise."""
    if name != "aus":
        return {"": per_step}
    log = pd.read_csv(logs / f"{key}.csv")
    adv_steps = set(log.loc[log["d_loss"].notna(), "step"].astype(int)) if "step" in log else set()
    if not adv_steps:
        return {"": per_step}
    return {
        "warm-up": [(s, x) for s, x in per_step if s not in adv_steps],
        "adversarial": [(s, x) for s, x in per_step if s in adv_steps],
    }


def rss_growth(rss: RSSSampler, lo: float, hi: float) -> float:
    """How much a phase's resident memory grew while it ran: peak of its last quarter less that of its second
    (the first quarter holds one-off allocations: optimiser state, caches); ≈ 0 when memory stays flat."""
    quarter = (hi - lo) / 4
    return float(rss.peak(hi - quarter, hi) - rss.peak(lo + quarter, lo + 2 * quarter))


def phase_rows(
    profile_name: str,
    prof: Profile,
    keys: list[str],
    timer: StepTimer,
    logs: Path,
    skip: int,
    mean_len: float,
    peaks: dict[str, float],
    rss: RSSSampler,
) -> list[dict[str, Any]]:
    """One row of figures per timed phase (and per AUS regime)."""
    t = prof.train
    configs = {"dae": t.dae, "cl1": t.classifier, "cl2": t.classifier, "c1": t.mixture, "c2": t.finetune}
    rows = []
    for key in keys:
        name, phase = key.rsplit("_", 1)
        pc = configs[phase]
        final = max((s for s, _ in timer.times.get(key, [])), default=0)  # also ran validation and checkpoint
        per_step = [(s, x) for s, x in timer.times.get(key, []) if skip < s < final]
        lo, hi = timer.bounds.get(key, [0.0, 0.0])
        for regime, vals in _regimes(name, key, per_step, logs).items():
            if not vals:
                continue
            sps = statistics.median(x for _, x in vals)
            f = timer.flops.get(key, {})
            if name == "aus" and phase == "c1":
                fl = f.get(timer.flop_steps["adv" if regime == "adversarial" else "warm"])
            else:
                fl = next(iter(f.values()), None)
            tokens = pc.batch_size * 4 * (mean_len + 1)
            gflops = fl / 1e9 if fl else float("nan")
            rows.append(
                {
                    "profile": profile_name,
                    "phase": f"{key}" + (f" ({regime})" if regime else ""),
                    "batch": pc.batch_size,
                    "steps_timed": len(vals),
                    "s_per_step": sps,
                    "tokens_per_s": tokens / sps,
                    "gflop_per_step": gflops,
                    "gflop_per_s": gflops / sps,
                    "pct_fp32_peak": 100 * gflops / sps / peaks["fp32"],
                    "pct_bf16_peak": 100 * gflops / sps / peaks["bf16"],
                    "peak_rss_mb": rss.peak(lo, hi) / 2**20,
                    "rss_growth_mb": rss_growth(rss, lo, hi) / 2**20,
                }
            )
    return rows


def bench_profile(
    profile_name: str,
    steps: int,
    skip: int,
    threads: int,
    generation: bool,
    overrides: str | None = None,
    models: tuple[str, ...] = MODELS,
) -> dict[str, Any]:
    """Run the training phases of one profile for a few steps and return the per-phase figures (worker side)."""
    if threads > 0:
        torch.set_num_threads(threads)
    prof = bench_settings(profile_name, steps, skip, threads, overrides)
    data = prepare(prof)
    arrays = data.arrays("unl_train")
    mean_len = float(arrays.length[arrays.poem_index].mean())  # characters per line over training instances
    peaks = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
    warm = prof.train.rec_warm_steps
    timer = StepTimer({"warm": skip + 1, "adv": warm + 1, "plain": skip + 1})  # each before its phase's last step
    with tempfile.TemporaryDirectory() as tmp, RSSSampler() as rss:
        t0 = time.perf_counter()
        res = train(list(models), prof, data=data, run_dir=tmp, progress=False, max_steps=steps, callback=timer)
        wall = time.perf_counter() - t0
        rows = phase_rows(profile_name, prof, list(res), timer, Path(tmp) / "logs", skip, mean_len, peaks, rss)
    out: dict[str, Any] = {
        "profile": profile_name,
        "overrides": overrides or "",
        "cpu": cpu_info(),
        "threads": torch.get_num_threads(),
        "vocab": len(data.vocab),
        "model": dataclasses.asdict(prof.model),
        "steps_per_phase": steps,
        "skip": skip,
        "flop_steps": dict(timer.flop_steps),
        "encode_once": prof.train.encode_once,
        "bf16_autocast": bf16_choice(prof.train.amp_bf16, default_device().type)[0],
        "models": list(models),
        "matmul_peak_gflops": peaks,
        "phases": rows,
        "train_wall_s": wall,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if generation:
        out["generation"] = bench_generation(prof, data)
    return out


def bench_generation(prof: Profile, data: PreparedData, n_poems: int = 64, beam: int = 20) -> list[dict[str, Any]]:
    """Poems per second at the profile's model size, beam 20, batched, 5- and 7-character (random weights)."""
    torch.manual_seed(0)
    model = build_model("aus", prof.model, len(data.vocab)).eval()
    rows = []
    for length in (5, 7):
        b = benchmark_generation(model, data.vocab, n_poems, length, beam)
        rows.append(
            {
                "length": length,
                "beam": beam,
                "poems": n_poems,
                "decode_poems_per_s": b.decode_poems_per_s,
                "end_to_end_poems_per_s": b.poems_per_s,
                "threads": b.threads,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------
# command (parent side)
# ----------------------------------------------------------------------------------------------


def _run_worker(profile: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "mixpoet_lib.cli.bench",
        "--worker",
        profile,
        "--steps",
        str(args.steps),
        "--skip",
        str(args.skip),
        "--threads",
        str(args.threads),
    ]
    if args.no_generation:
        cmd.append("--no-generation")
    cmd += ["--models", *args.models]
    overrides = overrides_from_args(args)
    if overrides:
        cmd += ["--set", format_overrides(overrides)]
    env = dict(os.environ, TQDM_DISABLE="1")
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ValueError(f"bench of profile {profile} failed (exit {proc.returncode}): {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_report(results: list[dict[str, Any]]) -> str:
    """Human-readable tables of the bench results, with the official figures beside the full profile."""
    out = []
    for r in results:
        cpu = r.get("cpu", {})
        out.append(
            f"== CPU {cpu.get('model', '?')}, {cpu.get('cores', '?')} cores; speed flags: "
            f"{' '.join(cpu.get('flags', [])) or 'none of avx2/avx512*/amx*'}"
        )
        if r.get("overrides"):
            out.append(f"== settings changed: {r['overrides']}")
        out.append(
            f"== profile {r['profile']}: vocab {r['vocab']}, {r['threads']} thread(s), "
            f"matmul peak fp32 {r['matmul_peak_gflops']['fp32']:.0f} GFLOP/s, "
            f"bf16 {r['matmul_peak_gflops']['bf16']:.1f} GFLOP/s, process peak RSS "
            f"{r['process_peak_rss_mb']:.0f} MB, encode_once={r['encode_once']}, "
            f"bf16 autocast {'on' if r.get('bf16_autocast') else 'off'}"
        )
        df = pd.DataFrame(r["phases"]).drop(columns=["profile"])
        out.append(df.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if r.get("generation"):
            out.append(pd.DataFrame(r["generation"]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if r["profile"] == "full":
            out.append(SIDE_BY_SIDE_HINT)
    return "\n".join(out)


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.steps < args.skip + MIN_STEPS_PAST_SKIP:
        raise ValueError(
            f"--steps must be at least --skip + {MIN_STEPS_PAST_SKIP} = {args.skip + MIN_STEPS_PAST_SKIP} (AUS "
            f"needs warm-up steps and at least two timed adversarial steps besides the counted and the last one), "
            f"got {args.steps}"
        )
    for profile in args.profiles:  # unknown or invalid --set settings fail here, in one line, before any work
        bench_settings(profile, args.steps, args.skip, args.threads, format_overrides(overrides_from_args(args)))
    results = []
    for profile in args.profiles:
        print(f"[bench] profile {profile}: {args.steps} steps per phase …", file=sys.stderr, flush=True)
        results.append(_run_worker(profile, args))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(format_report(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` sub-command."""
    p = sub.add_parser(
        "bench",
        help="measure training speed, FLOP/s, memory and generation speed per profile",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "--profiles",
        nargs="+",
        default=list(DEFAULT_PROFILES),
        choices=DEFAULT_PROFILES,
        help="profiles to measure (default: all three; full uses the official sizes, vocab 5,547)",
    )
    p.add_argument("--steps", type=int, default=12, help="optimiser steps per phase (default 12)")
    p.add_argument("--skip", type=int, default=2, help="first steps of every phase left out of the medians")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default, all cores)")
    add_set_option(p, "change settings of every measured profile, e.g. --set train.encode_once=true")
    p.add_argument("--no-generation", action="store_true", help="skip the generation benchmark")
    p.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=MODELS,
        help="models whose phases are timed (with their prerequisites; default: all four)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--output", help="also write the JSON figures to this file")
    p.set_defaults(func=_cmd_bench)


def _worker_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--skip", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-generation", action="store_true")
    ap.add_argument("--set", default="")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    a = ap.parse_args(argv)
    res = bench_profile(a.worker, a.steps, a.skip, a.threads, not a.no_generation, a.set, tuple(a.models))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
