"""Compare the training logs of runs of one recipe (e.g. bf16 autocast against fp32): validation values side by
side, and the training curves overlaid in one figure.

Usage::

    mixpoet train --profile tutorial --models aus --set train.amp_bf16=on  --run-dir /tmp/bf16
    mixpoet train --profile tutorial --models aus --set train.amp_bf16=off --run-dir /tmp/fp32
    python scripts/compare_runs.py /tmp/fp32 /tmp/bf16 --labels fp32 bf16 --figure figures/bf16_vs_fp32.png

Prints, for every phase all runs logged, each validation column at each validation step of every run and the
relative difference of each run from the first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

PHASES = ("shared_dae", "shared_cl1", "shared_cl2", "aus_c1", "aus_c2", "cvae_c1", "igs_c1", "igs_c2", "basic_c1")
CURVE = {"shared_dae": "loss", "shared_cl1": "loss", "shared_cl2": "loss", "aus_c1": "rec", "aus_c2": "rec"}
SMOOTH = 50  # steps in the rolling mean of a training curve


def validation_table(runs: list[Path], labels: list[str]) -> pd.DataFrame:
    """One row per (phase, step, column) present in every run's ``logs/<phase>_valid.csv``; a column per run and
    the relative difference ``rel <label>`` of each later run from the first."""
    rows = []
    for phase in PHASES:
        paths = [r / "logs" / f"{phase}_valid.csv" for r in runs]
        if not all(p.is_file() for p in paths):
            continue
        logs = [pd.read_csv(p).set_index("step") for p in paths]
        cols = [c for c in logs[0].columns if all(c in log.columns for log in logs[1:])]
        steps = [s for s in logs[0].index if all(s in log.index for log in logs[1:])]
        for col in cols:
            for step in steps:
                vals = [float(log.at[step, col]) for log in logs]
                row = {"phase": phase, "step": step, "value": col, **dict(zip(labels, vals, strict=True))}
                for label, v in zip(labels[1:], vals[1:], strict=True):
                    row[f"rel {label}"] = (v - vals[0]) / abs(vals[0]) if vals[0] else float("nan")
                rows.append(row)
    return pd.DataFrame(rows)


def plot_curves(runs: list[Path], labels: list[str], out: Path) -> None:
    """The training loss of each phase in :data:`CURVE`, all runs overlaid (rolling mean), validation as dots;
    the y-axis starts after the first tenth of the phase, where the curves are worth telling apart."""
    phases = [p for p in CURVE if all((r / "logs" / f"{p}.csv").is_file() for r in runs)]
    fig, axes = plt.subplots(1, len(phases), figsize=(max(6.0, 3.4 * len(phases)), 3.6), squeeze=False)
    for ax, phase in zip(axes[0], phases, strict=True):
        late: list[float] = []
        for run, label in zip(runs, labels, strict=True):
            log = pd.read_csv(run / "logs" / f"{phase}.csv")
            curve = log[CURVE[phase]].rolling(SMOOTH, min_periods=1).mean()
            line = ax.plot(log["step"], curve, label=label, lw=1)
            late += curve[log["step"] > log["step"].max() / 10].tolist()
            valid = run / "logs" / f"{phase}_valid.csv"
            val = pd.read_csv(valid) if valid.is_file() else None
            if val is not None and "val_rec" in val:
                ax.plot(val["step"], val["val_rec"], "o", color=line[0].get_color(), ms=4)
                late += val["val_rec"].tolist()[1:]
        if late:
            lo, hi = min(late), max(late)
            ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.set_title(phase, fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel(f"loss (lines: training, mean of {SMOOTH};\ndots: validation)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="run folders (each with logs/); the first is the reference")
    ap.add_argument("--labels", nargs="+", help="a name per run (default: the folder names)")
    ap.add_argument("--figure", type=Path, help="write the overlaid training curves here")
    args = ap.parse_args(argv)
    labels = args.labels or [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"--labels: {len(labels)} names for {len(args.runs)} runs")
    table = validation_table(args.runs, labels)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.figure:
        plot_curves(args.runs, labels, args.figure)


if __name__ == "__main__":
    main()
