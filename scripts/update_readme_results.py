"""Regenerate the README's results section from a run's results.json (default: runs/tutorial), and from its
training_seeds.json where the run was trained with more than one seed (`mixpoet reproduce --train-seeds`).

    .venv/bin/python scripts/update_readme_results.py [--run runs/tutorial] [--check]

The section sits between the markers `<!-- results:start -->` and `<!-- results:end -->`; with --check the
script only reports whether the README is up to date (exit 1 if not).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixpoet_lib.evaluate.seeds import per_seed_markdown, pooled_claims_markdown  # noqa: E402
from mixpoet_lib.run_report import results_markdown  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _training_note(run: Path) -> str:
    """How much of the notebooks' time was training, from the run's ``logs/timing.csv`` (empty if it has none)."""
    timing = run / "logs" / "timing.csv"
    if not timing.exists():
        return ""
    with timing.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    seconds = sum(float(r["seconds"]) for r in rows)
    threads = sorted({r["threads"] for r in rows})
    return (
        f"; {seconds / 60:.1f} min of it training {len(rows)} phases inside the notebooks "
        f"({', '.join(threads)} thread(s); `logs/timing.csv`), the rest data preparation, judges, LM, generation "
        "and scoring"
    )


def _seed_lines(run: Path) -> list[str]:
    """The key numbers per training seed and the claims on the pooled spread (none without training_seeds.json)."""
    path = run / "training_seeds.json"
    if not path.exists():
        return []
    pooled = json.loads(path.read_text(encoding="utf-8"))
    meta = pooled["meta"]
    seeds, gen, main = meta["train_seeds"], meta["seeds"], meta.get("main_seed", meta["train_seeds"][0])
    others = ", ".join(str(s) for s in seeds if s != main)
    where = path.parent.relative_to(ROOT) if path.parent.is_relative_to(ROOT) else path.parent
    return [
        f"**Over training seeds {', '.join(map(str, seeds))}.** The tables above are the run of seed {main}, "
        f"their ± over its generation seeds only. The same recipe was also trained with seed(s) {others} (whole "
        f"runs in `{where}/train-seeds/`); the key numbers per training seed (each the mean over generation seeds "
        f"{gen}):",
        "",
        *per_seed_markdown(pooled),
        f"The claims and targets judged on the spread over all {len(seeds)} × {len(gen)} (training × generation) "
        f"values (every pooled table: `{where}/training_seeds.md`):",
        "",
        *pooled_claims_markdown(pooled),
    ]


def block(run: Path) -> str:
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    state_path = run / "state.json"
    lines = [
        START,
        f"_Generated from `{run.relative_to(ROOT)}/results.json` by `scripts/update_readme_results.py`._",
        "",
    ]
    if state_path.exists():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        per_nb = ", ".join(f"{k.split('_')[0]} {v.get('seconds', 0) / 60:.1f} min" for k, v in sorted(state.items()))
        lines += [f"Notebook wall times of this run: {per_nb}{_training_note(run)}.", ""]
    lines += [*results_markdown(results), "", *_seed_lines(run), END]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "tutorial"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"README.md lacks the markers {START} … {END}", file=sys.stderr)
        return 1
    new = text[: text.index(START)] + block(Path(args.run).resolve()) + text[text.index(END) + len(END) :]
    if args.check:
        print("README results are up to date" if new == text else "README results are stale")
        return 0 if new == text else 1
    readme.write_text(new, encoding="utf-8")
    print("README results section updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
