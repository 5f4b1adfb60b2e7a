"""Regenerate the README's results sections: the main one from a run's results.json (default: runs/tutorial), and
from its training_seeds.json where the run was trained with more than one seed (`mixpoet reproduce --train-seeds`);
and, where the long profile's run exists (runs/long), the comparison of the profiles, target by target.

    .venv/bin/python scripts/update_readme_results.py [--run runs/tutorial] [--long runs/long] [--check]

The sections sit between the markers `<!-- results:start -->` … `<!-- results:end -->` and
`<!-- results-long:start -->` … `<!-- results-long:end -->`; with --check the script only reports whether the
README is up to date (exit 1 if not).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixpoet_lib.evaluate.seeds import coverage_markdown, per_seed_markdown, pooled_claims_markdown  # noqa: E402
from mixpoet_lib.run_report import phase_training_times, results_markdown  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"
LONG_START, LONG_END = "<!-- results-long:start -->", "<!-- results-long:end -->"
# the rows of the profile comparison: the targets and what the longer second stage was expected to move
PROFILE_ROWS: tuple[tuple[str, str], ...] = (
    ("aus", "intra_jaccard_mix_word"),
    ("igs", "intra_jaccard_mix_word"),
    ("cvae", "intra_jaccard_word"),
    ("aus", "inter_jaccard_word"),
    ("cvae", "inter_jaccard_word"),
    ("basic", "inter_jaccard_word"),
    ("aus", "shared_lines"),
    ("aus", "keyword_rate"),
    ("aus", "doubled_poems"),
    ("aus", "lms_closeness"),
    ("aus", "distinct_2"),
    ("aus", "living_acc"),
    ("aus", "era_acc"),
    ("aus", "era_recall_troubled"),
    ("igs", "living_acc"),
    ("fbasic", "living_acc"),
)


def _shown(path: Path) -> Path:
    """``path`` relative to the repository where it lies inside it (no machine paths in the README)."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _training_note(run: Path) -> str:
    """How much of the notebooks' time was training, from the run's ``logs/timing.csv`` (empty if it has none);
    counted as the run's report counts it (``run_report.phase_training_times``)."""
    totals, threads = phase_training_times(run)
    if not totals:
        return ""
    seconds = sum(t[0] for t in totals.values())
    return (
        f"; training its {len(totals)} phases took {seconds / 60:.1f} min ({', '.join(sorted(threads))} thread(s); "
        "`logs/timing.csv`, each phase's latest training, which an execution over finished checkpoints does not repeat)"
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
    where = _shown(path.parent)
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
    lines = [START, f"_Generated from `{_shown(run)}/results.json` by `scripts/update_readme_results.py`._", ""]
    if state_path.exists():
        lines += [f"Notebook wall times of this run's last execution: {_wall_times(run)}{_training_note(run)}.", ""]
    lines += [*results_markdown(results), "", *_seed_lines(run), END]
    return "\n".join(lines)


def _cell(summary: list[dict], system: str, metric: str) -> str:
    for row in summary:
        if (row["system"], row["metric"], row["length"]) == (system, metric, "all"):
            return f"{row['mean']:.3f} ± {row['std']:.3f}"
    return "—"


def _verdicts(claims: list[dict]) -> dict[str, str]:
    return {c["claim"]: f"{c['verdict']}: {c['evidence']}" for c in claims}


def _wall_times(run: Path) -> str:
    """Each notebook's wall time from the run's state.json, e.g. ``01 0.8 min, 02 13.4 min``."""
    path = run / "state.json"
    state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return ", ".join(f"{k.split('_')[0]} {v.get('seconds', 0) / 60:.1f} min" for k, v in sorted(state.items()))


def _pooled(run: Path) -> dict | None:
    """The run's ``training_seeds.json`` (results pooled over training seeds), or None where it has none."""
    path = run / "training_seeds.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _long_seed_lines(long: Path, pooled: dict | None) -> list[str]:
    """The long profile's key numbers per training seed and which seeds hold each system (none with one seed)."""
    if pooled is None:
        return []
    where = _shown(long)
    return [
        "",
        f"The `{long.name}` profile per training seed (each the mean over its generation seeds; how the further "
        f"seeds were made: `{where}/train-seeds/README.md`; every pooled table: `{where}/training_seeds.md`):",
        "",
        *per_seed_markdown(pooled),
        *coverage_markdown(pooled["meta"].get("systems_by_seed", {})),
    ]


def long_block(main: Path, long: Path) -> str:
    """The profiles side by side: key numbers and every claim / target, tutorial and long, each for its main
    training seed and, where the run has them, pooled over its training seeds."""
    tut, lng = (json.loads((r / "results.json").read_text(encoding="utf-8")) for r in (main, long))
    pooled, long_pooled = _pooled(main), _pooled(long)
    cols = [(f"tutorial, seed {tut['meta'].get('seed', 1234)}", tut)]
    if pooled is not None:
        cols.append((f"tutorial, training seeds {', '.join(map(str, pooled['meta']['train_seeds']))}", pooled))
    cols.append(("long, seed 1234" + (" (one training seed)" if long_pooled is None else ""), lng))
    if long_pooled is not None:
        cols.append((f"long, training seeds {', '.join(map(str, long_pooled['meta']['train_seeds']))}", long_pooled))
    titles = {k: v.get("title", k) for k, v in tut.get("metrics", {}).items()}
    head = "| " + " | ".join(name for name, _ in cols) + " |"
    lines = [
        LONG_START,
        f"_Generated from `{_shown(main)}` and `{_shown(long)}` by `scripts/update_readme_results.py`._",
        "",
        f"Notebook wall times of the `{long.name}` run's last execution: {_wall_times(long)}{_training_note(long)}.",
        "",
        "| system | metric " + head,
        "|---|---" + "|---:" * len(cols) + "|",
    ]
    for system, metric in PROFILE_ROWS:
        cells = " | ".join(_cell(r["summary"], system, metric) for _, r in cols)
        lines.append(f"| {system} | {titles.get(metric, metric)} | {cells} |")
    lines += ["", "| claim or target " + head, "|---" + "|---" * len(cols) + "|"]
    verdicts = [_verdicts(r.get("claims", [])) for _, r in cols]
    for claim in verdicts[0]:
        lines.append(f"| {claim} | " + " | ".join(v.get(claim, "—") for v in verdicts) + " |")
    return "\n".join([*lines, *_long_seed_lines(long, long_pooled), LONG_END])


def _replace(text: str, start: str, end: str, new: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the markers {start} … {end}")
    return text[: text.index(start)] + new + text[text.index(end) + len(end) :]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "tutorial"))
    ap.add_argument("--long", default=str(ROOT / "runs" / "long"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    main_run, long_run = Path(args.run).resolve(), Path(args.long).resolve()
    new = _replace(text, START, END, block(main_run))
    if (long_run / "results.json").exists():
        new = _replace(new, LONG_START, LONG_END, long_block(main_run, long_run))
    if args.check:
        print("README results are up to date" if new == text else "README results are stale")
        return 0 if new == text else 1
    readme.write_text(new, encoding="utf-8")
    print("README results section updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
