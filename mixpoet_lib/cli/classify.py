"""``mixpoet classify``: tag poems (JSON lines with a ``content`` field) with the judge classifiers' factor labels."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import IO, Any

from mixpoet_lib.checkpoints import load_judge
from mixpoet_lib.config import FACTOR_NAMES
from mixpoet_lib.metrics import split_lines
from mixpoet_lib.models.judges import JudgeClassifier
from mixpoet_lib.train.judges import classify


def _jsonl_poem(raw: str) -> tuple[dict[str, Any], str]:
    """The object and its ``content`` of one JSON line; ValueError says what is wrong with it."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    content = obj.get("content")
    if not isinstance(content, str):
        raise ValueError("'content' missing or not a string")
    if not "".join(split_lines(content)):
        raise ValueError("'content' holds no characters")
    return obj, content


def classify_jsonl(
    judges: dict[str, JudgeClassifier], in_path: str | Path, out_stream: IO[str], batch_size: int = 512
) -> tuple[int, list[str]]:
    """Classify a JSON-lines file of ``{"content": "l1|l2|l3|l4", …}``; write one JSON line per good poem.

    Each output line is the input object plus ``"judge": {factor: {label, name, probs}}`` and ``"line"`` (its
    1-based line number). A malformed line (bad JSON, not an object, ``content`` missing, not a string or
    without characters) is skipped and reported as ``"line N: reason"`` in the returned error list; blank
    lines are ignored. Returns (poems written, errors).
    """
    errors: list[str] = []
    pending: list[tuple[int, dict[str, Any], str]] = []
    n_ok = 0

    def flush() -> None:
        nonlocal n_ok
        for (lineno, obj, _), pred in zip(pending, classify(judges, [c for _, _, c in pending], batch_size)):
            out_stream.write(json.dumps({**obj, "line": lineno, "judge": pred}, ensure_ascii=False) + "\n")
            n_ok += 1
        pending.clear()

    with open(in_path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                pending.append((lineno, *_jsonl_poem(raw)))
            except ValueError as exc:
                errors.append(f"line {lineno}: {exc}")
                continue
            if len(pending) >= batch_size:
                flush()
    flush()
    return n_ok, errors


def _judge_files(checkpoint: str) -> dict[str, Path]:
    path = Path(checkpoint)
    if path.is_dir():
        found = {}
        for f in FACTOR_NAMES:
            for suffix in (".pt", ".safetensors"):  # training checkpoints, or published weights
                if (path / f"judge_{f}{suffix}").is_file():
                    found[f] = path / f"judge_{f}{suffix}"
                    break
        if not found:
            raise FileNotFoundError(f"no judge checkpoint (judge_living.pt / judge_era.pt, or .safetensors) in {path}")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"judge checkpoint {path} does not exist")
    factor = next((f for f in FACTOR_NAMES if path.stem.endswith(f)), None)
    if factor is None:
        raise ValueError(
            f"cannot tell the factor of {path.name}; expected judge_living.pt or judge_era.pt "
            "(or give the folder holding both)"
        )
    return {factor: path}


def _cmd_classify(args: argparse.Namespace) -> int:
    if not Path(args.input).is_file():
        raise FileNotFoundError(f"input file {args.input} does not exist")
    judges = {}
    for factor, path in _judge_files(args.checkpoint).items():
        try:
            judges[factor] = load_judge(path)
        except Exception as exc:  # corrupt, truncated or foreign file: say which one, in one line
            raise ValueError(f"cannot load judge checkpoint {path}: {exc}") from None
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(args.output, "w", encoding="utf-8")) if args.output else sys.stdout
        n_ok, errors = classify_jsonl(judges, args.input, out)
    for err in errors:
        print(f"mixpoet classify: {args.input}: {err}", file=sys.stderr)
    print(f"{n_ok} poem(s) tagged, {len(errors)} malformed line(s) skipped", file=sys.stderr)
    return 0 if not errors else 2


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``classify`` sub-command."""
    p = sub.add_parser("classify", help="tag poems with the judge classifiers' factor labels and probabilities")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a judge checkpoint (judge_living.pt / judge_era.pt) or the folder holding them "
        "(e.g. runs/tutorial/checkpoints)",
    )
    p.add_argument("--input", required=True, help="JSON lines, one poem per line, lines joined by '|' in 'content'")
    p.add_argument("--output", help="write the tagged JSON lines here (default: standard output)")
    p.set_defaults(func=_cmd_classify)
