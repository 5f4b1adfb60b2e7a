"""``mixpoet classify``: tag poems (JSON lines with a ``content`` field) with the judge classifiers' factor labels.

Input is read line by line as bytes, so one bad line costs only that line: a line that is not UTF-8, not
JSON, not an object, without a ``content`` string, or with a poem line longer than the models' lines is
reported as ``FILE: line N: reason`` and skipped; every good line is tagged. A UTF-8 byte-order mark is
accepted, ``--input -`` reads standard input and ``--output -`` (or no ``--output``) writes standard output.
An output file is written to a temporary file and renamed into place when complete, and it may not be the
input file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from mixpoet_lib._util import atomic_write
from mixpoet_lib.checkpoints import load_judge
from mixpoet_lib.config import FACTOR_NAMES, ModelConfig
from mixpoet_lib.data.vocab import Vocab
from mixpoet_lib.generate.requests import LENGTHS
from mixpoet_lib.metrics import is_unit_char, split_lines
from mixpoet_lib.models.judges import Judge
from mixpoet_lib.runtime import flush_denormal, resolve_device
from mixpoet_lib.train.judges import classify

STDIO = "-"
BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 1 << 20  # an input line longer than this (1 MiB) is skipped without being held in memory
MAX_LINE_CHARS = ModelConfig().max_line_len  # characters per poem line the models are built for (7)
QUATRAIN_LINES = ModelConfig().sens_num  # lines of the quatrains the judges were trained on (4)
MAX_POEM_LINES = 2 * QUATRAIN_LINES  # longer "poems" are refused (an eight-line regulated verse still passes)


def _raw_lines(stream: BinaryIO) -> Iterator[tuple[int, int, bytes | None]]:
    """(line number, byte offset of its start, its bytes) per input line; None for a line over the size cap."""
    offset, lineno = 0, 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        lineno, start = lineno + 1, offset
        offset += len(raw)
        if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield lineno, start, raw
            continue
        while raw and not raw.endswith(b"\n"):  # skip the rest of the oversized line in bounded pieces
            raw = stream.readline(MAX_LINE_BYTES)
            offset += len(raw)
        yield lineno, start, None


def _decode(lineno: int, start: int, raw: bytes | None) -> str:
    """The text of one input line; ValueError says why it cannot be read (size, encoding, byte offset)."""
    if raw is None:
        raise ValueError(f"longer than {MAX_LINE_BYTES} bytes; skipped")
    if lineno == 1 and raw.startswith(BOM):  # Notepad and some editors start UTF-8 files with a BOM
        raw, start = raw[len(BOM) :], start + len(BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise ValueError(f"not UTF-8 (byte 0x{bad} at byte offset {start + exc.start} of the file)") from None


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
    lines = split_lines(content)
    if not "".join(lines):
        raise ValueError("'content' holds no characters")
    if len(lines) > MAX_POEM_LINES:
        raise ValueError(f"'content' has {len(lines)} lines; at most {MAX_POEM_LINES} (lines are joined by '|')")
    for i, line in enumerate(lines, 1):
        n = sum(map(is_unit_char, line))
        if n > MAX_LINE_CHARS:
            raise ValueError(
                f"poem line {i} has {n} characters; the models read lines of at most {MAX_LINE_CHARS} "
                "(join the lines of a poem with '|')"
            )
    return obj, content


def poem_warnings(content: str, vocab: Vocab) -> list[str]:
    """Why the judges' labels for this poem deserve less trust: not a quatrain of 5- or 7-character lines, or
    characters the judges never saw (an empty list for an ordinary quatrain)."""
    lines = [line for line in split_lines(content) if line]
    sizes = [sum(map(is_unit_char, line)) for line in lines]
    out = []
    if len(lines) != QUATRAIN_LINES:
        out.append(f"{len(lines)} lines (the judges were trained on {QUATRAIN_LINES}-line quatrains)")
    if len(set(sizes)) > 1:
        out.append(f"lines of mixed lengths {'/'.join(map(str, sizes))}")
    elif sizes and sizes[0] not in LENGTHS:
        out.append(f"{sizes[0]}-character lines (the judges were trained on 5- and 7-character lines)")
    chars = [ch for line in lines for ch in line if is_unit_char(ch)]
    unknown = sum(ch not in vocab for ch in chars)
    if chars and unknown == len(chars):
        out.append("no character is in the judges' vocabulary: the labels are a guess")
    elif 2 * unknown > len(chars):
        out.append(f"{unknown} of {len(chars)} characters are not in the judges' vocabulary")
    return out


def classify_jsonl(
    judges: dict[str, Judge], source: str | os.PathLike[str] | BinaryIO, out_stream: IO[str], batch_size: int = 512
) -> tuple[int, list[str]]:
    """Classify JSON lines of ``{"content": "l1|l2|l3|l4", …}`` (a path or a binary stream); write one JSON
    line per good poem.

    Each output line is the input object plus ``"judge": {factor: {label, name, probs}}``, ``"line"`` (its
    1-based line number) and, for a poem the judges were not trained on (not 4 lines, mixed or unusual line
    lengths, mostly unknown characters), ``"warning"``. A line that cannot be used is skipped and reported as
    ``"line N: reason"`` in the returned error list; blank lines are ignored. Returns (poems written, errors).
    """
    errors: list[str] = []
    pending: list[tuple[int, dict[str, Any], str]] = []
    n_ok = 0
    vocab = next(iter(judges.values())).vocab

    def flush() -> None:
        nonlocal n_ok
        for (lineno, obj, content), pred in zip(pending, classify(judges, [c for _, _, c in pending], batch_size)):
            row = {**obj, "line": lineno, "judge": pred}
            warnings = poem_warnings(content, vocab)
            if warnings:
                row["warning"] = "; ".join(warnings)
            out_stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            n_ok += 1
        pending.clear()

    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(source, "rb")) if isinstance(source, (str, os.PathLike)) else source
        for lineno, start, raw in _raw_lines(stream):
            try:
                text = _decode(lineno, start, raw)
                if not text.strip():
                    continue
                pending.append((lineno, *_jsonl_poem(text)))
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


def _check_paths(source: str, target: str | None) -> None:
    """The input must exist; the output may not be the input (it would be emptied before being read)."""
    if source != STDIO and not Path(source).is_file():
        raise FileNotFoundError(f"input file {source} does not exist")
    if source == STDIO or target in (None, STDIO):
        return
    out = Path(target)
    same = out.resolve() == Path(source).resolve() or (out.exists() and os.path.samefile(out, source))
    if same:
        raise ValueError(f"--output {target} is the input file {source}; write the tagged poems to another file")


def _run(judges: dict[str, Judge], source: str, target: str | None) -> tuple[int, list[str]]:
    """Classify ``source`` (a path or '-') into ``target`` (a path, written atomically, or stdout)."""
    stream: str | BinaryIO = sys.stdin.buffer if source == STDIO else source
    with flush_denormal():  # long repetitive lines drive the GRU into slow denormal floats
        if target in (None, STDIO):
            return classify_jsonl(judges, stream, sys.stdout)
        result: list[tuple[int, list[str]]] = []

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as out:
                result.append(classify_jsonl(judges, stream, out))

        atomic_write(target, write)
        return result[0]


def _cmd_classify(args: argparse.Namespace) -> int:
    _check_paths(args.input, args.output)
    device = resolve_device(args.device)
    judges = {}
    for factor, path in _judge_files(args.checkpoint).items():
        try:
            judges[factor] = load_judge(path, device=device)
        except Exception as exc:  # corrupt, truncated or foreign file: say which one, in one line
            raise ValueError(f"cannot load judge checkpoint {path}: {exc}") from None
    n_ok, errors = _run(judges, args.input, args.output)
    name = "<stdin>" if args.input == STDIO else args.input
    for err in errors:
        print(f"mixpoet classify: {name}: {err}", file=sys.stderr)
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
    p.add_argument(
        "--input",
        required=True,
        help="JSON lines (UTF-8), one poem per line, its lines joined by '|' in 'content'; '-' reads standard input",
    )
    p.add_argument(
        "--output", help="write the tagged JSON lines to this file (not the input; '-' or default: standard output)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available, else cpu)")
    p.set_defaults(func=_cmd_classify)
