"""How much of a factor model's inter-topic Jaccard comes from the labels p(y|w) infers (docs/experiments.md §18).

The inter-topic poems of MixPoet-IGS/-AUS carry the labels argmax p(y|w) infers from their keyword (the official
default). Notebook 05 also writes, for every keyword, one poem per mixture (role ``mixture``). From those stored
poems (``<run>/eval/poems/<system>_seed<G>.json``, nothing is generated) this script scores the word-level
inter-topic Jaccard three ways: with the inferred labels (the metric), with the labels spread evenly over the six
mixtures (keyword i gets mixture i mod 6), and with one fixed mixture for every keyword; plus how concentrated the
inferred labels are.

Usage::

    python scripts/inter_topic_labels.py runs/long runs/long/train-seeds/seed-1235 --systems aus igs --seeds 1,2
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mixpoet_lib.metrics import inter_topic_jaccard

MAX_PAIRS = 100_000  # as notebook 05 (eval.max_pairs of every profile)


def _jaccard(records: list[dict[str, Any]]) -> float:
    texts, keywords = [r["text"] for r in records], [r["keyword"] for r in records]
    return inter_topic_jaccard(texts, MAX_PAIRS, 0, "word", keywords)


def label_spread(records: list[dict[str, Any]]) -> dict[str, float]:
    """The three inter-topic Jaccards and the label concentration of one system's stored poems of one seed."""
    inter = [r for r in records if r["role"] == "inter" and r["ok"]]
    mixtures: dict[int, dict[tuple[int, ...], dict[str, Any]]] = collections.defaultdict(dict)
    for r in records:
        if r["role"] == "mixture" and r["ok"]:
            mixtures[r["item"]][tuple(r["labels"])] = r
    combos = sorted({c for m in mixtures.values() for c in m})
    if not inter or not combos:
        raise ValueError("no inter-topic or mixture poems among the records")
    items = sorted(mixtures.items())
    even = [m[combos[i % len(combos)]] for i, m in items if combos[i % len(combos)] in m]
    counts = collections.Counter(tuple(r["labels"]) for r in inter)
    out = {
        "inferred": _jaccard(inter),
        "even": _jaccard(even),
        "share_of_top_mixture": counts.most_common(1)[0][1] / len(inter),
        "mixtures_used": float(len(counts)),
    }
    out.update({f"fixed_{'_'.join(map(str, c))}": _jaccard([m[c] for _, m in items if c in m]) for c in combos})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders with eval/poems/")
    ap.add_argument("--systems", nargs="+", default=["aus", "igs"])
    ap.add_argument("--seeds", default="1", help="generation seeds, comma-separated (default 1)")
    args = ap.parse_args(argv)
    for run in args.runs:
        for system in args.systems:
            rows = []
            for seed in (int(s) for s in args.seeds.split(",")):
                path = run / "eval" / "poems" / f"{system}_seed{seed}.json"
                if not path.is_file():
                    raise SystemExit(f"inter_topic_labels: no stored poems {path}; run notebook 05 first")
                try:
                    rows.append(label_spread(json.loads(path.read_text(encoding="utf-8"))["records"]))
                except ValueError as exc:  # e.g. the CVAE, which writes no mixtures
                    raise SystemExit(f"inter_topic_labels: {path}: {exc}") from None
            means = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
            print(json.dumps({"run": str(run), "system": system, **means}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
