"""How often MixPoet-AUS writes a stock line: the greedy share that ``train.unlikelihood_weight`` trains against.

For each AUS checkpoint (or published weights file) given, over ``--batches`` fixed batches of 64 validation poems
(``unl_valid``, seeded): one prior draw per poem at its keyword and labels (the annotated ones, else p(y|w)'s
argmax), the four greedy lines from it, and the share of lines that a poem of another keyword in the batch also
got (``MixPoetAUS.greedy_stock_lines``, what ``stock_line_loss`` trains against, design §4.15, here in eval
mode). Also the lines that recur most often. ``docs/experiments.md`` §28 reads the before/after of the term with it.

Usage::

    python scripts/stock_lines.py weights/tutorial/aus.safetensors /tmp/ul/checkpoints/aus_c2.pt --batches 20
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

import torch

from mixpoet_lib.checkpoints import load_model
from mixpoet_lib.data.batching import BatchStream
from mixpoet_lib.data.vocab import EOS, PAD
from mixpoet_lib.models.factor_models import MixPoetAUS
from mixpoet_lib.notebook import setup

BATCH = 64


def stock_lines(model: MixPoetAUS, stream: BatchStream, n_batches: int, tokens: list[str]) -> dict[str, Any]:
    """{'stock_share': mean share of stock lines, 'top': the 8 most frequent stock lines with their counts}."""
    shares, counts = [], collections.Counter[str]()
    model.eval()
    with torch.no_grad():
        for i, batch in enumerate(stream.batches(0)):
            if i == n_batches:
                break
            lines, stock = model.greedy_stock_lines(model.generation_init(batch["keys"], batch["labels"])["s0"], batch)
            shares.append(float(stock.float().mean()))
            for b, s in stock.nonzero().tolist():
                counts["".join(tokens[t] for t in lines[b, s].tolist() if t not in (EOS, PAD))] += 1
    return {"stock_share": round(sum(shares) / len(shares), 4), "top": counts.most_common(8)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="AUS checkpoints (.pt) or published weights (.safetensors)")
    ap.add_argument("--profile", default="tutorial")
    ap.add_argument("--batches", type=int, default=20, help="validation batches of 64 poems (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the batches and the prior draws (default 0)")
    args = ap.parse_args(argv)
    _, data = setup(args.profile, 1234)
    if data is None:
        raise SystemExit("stock_lines: the data could not be prepared")
    for path in args.models:
        model = load_model(path)
        if not isinstance(model, MixPoetAUS):
            raise SystemExit(f"stock_lines: {path} holds a {type(model).__name__}, not a MixPoet-AUS")
        torch.manual_seed(args.seed)
        stream = BatchStream(data, ("unl_valid",), "mixpoet_pre", BATCH, seed=args.seed)
        row = stock_lines(model, stream, args.batches, list(data.vocab.tokens))
        print(json.dumps({"model": str(path), **row}, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
