"""Compare the training logs of two runs of one recipe (e.g. bf16 autocast against fp32): validation losses
side by side, and the training curves overlaid in one figure.

Usage::

    mixpoet train --profile tutorial --models aus --set train.amp_bf16=on  --run-dir /tmp/bf16
    mixpoet train --profile tutorial --models aus --set train.amp_bf16=off --run-dir /tmp/fp32
    python scripts/compare_runs.py /tmp/fp32 /tmp/bf16 --labels fp32 bf16 --figure figures/speed_bf16_vs_fp32.png

Prints, for every phase both runs logged, each validation column at each validation step of both runs and the
relative difference of the second from the first.
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
    """One row per (phase, step, column) present in both runs' ``logs/<phase>_valid.csv``."""
    rows = []
    for phase in PHASES:
        paths = [r / "logs" / f"{phase}_valid.csv" for r in runs]
        if not all(p.is_file() for p in paths):
            continue
        a, b = (pd.read_csv(p).set_index("step") for p in paths)
        for col in a.columns.intersection(b.columns):
            for step in a.index.intersection(b.index):
                x, y = float(a.at[step, col]), float(b.at[step, col])
                rel = (y - x) / abs(x) if x else float("nan")
                rows.append({"phase": phase, "step": step, "value": col, labels[0]: x, labels[1]: y, "rel": rel})
    return pd.DataFrame(rows)


def plot_curves(runs: list[Path], labels: list[str], out: Path) -> None:
    """The training loss of each phase in :data:`CURVE`, both runs overlaid (rolling mean), validation as dots."""
    phases = [p for p in CURVE if all((r / "logs" / f"{p}.csv").is_file() for r in runs)]
    fig, axes = plt.subplots(1, len(phases), figsize=(3.2 * len(phases), 3.0), squeeze=False)
    for ax, phase in zip(axes[0], phases, strict=True):
        for run, label in zip(runs, labels, strict=True):
            log = pd.read_csv(run / "logs" / f"{phase}.csv")
            line = ax.plot(log["step"], log[CURVE[phase]].rolling(SMOOTH, min_periods=1).mean(), label=label, lw=1)
            valid = run / "logs" / f"{phase}_valid.csv"
            val = pd.read_csv(valid) if valid.is_file() else None
            if val is not None and "val_rec" in val:
                ax.plot(val["step"], val["val_rec"], "o", color=line[0].get_color(), ms=4)
        ax.set_title(phase, fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel(f"training loss (mean of {SMOOTH}); dots: validation")
    axes[0][0].legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs=2, help="two run folders (each with logs/)")
    ap.add_argument("--labels", nargs=2, default=["first", "second"])
    ap.add_argument("--figure", type=Path, help="write the overlaid training curves here")
    args = ap.parse_args(argv)
    table = validation_table(args.runs, args.labels)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.figure:
        plot_curves(args.runs, args.labels, args.figure)


if __name__ == "__main__":
    main()
