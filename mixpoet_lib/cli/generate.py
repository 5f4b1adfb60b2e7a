"""``mixpoet generate``: write quatrains from a checkpoint (registered by :mod:`mixpoet_lib.cli.app`).

Example::

    mixpoet generate --checkpoint runs/tutorial/aus.pt --keyword 朔风 --length 7 \\
        --living military --era troubled -n 3 --seed 1 [--json]

One row per poem, its four lines joined by '|', followed by the relaxation rung the poem needed
(see :mod:`mixpoet_lib.generate.generator`). A poem that could not be generated says so. Exit status: 0 when
every poem was generated, 3 when at least one failed, 1 on an error (one line on stderr). A checkpoint of a
phase that has not reached its planned steps is refused unless ``--allow-unfinished`` (then a warning says
how far it got).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mixpoet_lib.checkpoints import load_generator
from mixpoet_lib.cli.settings import add_set_option, overrides_from_args
from mixpoet_lib.config import FACTOR_CLASSES, MAX_BEAM, REPETITION_RULES, GenConfig, label_name, parse_label
from mixpoet_lib.data.rhythm import default_tone_rhyme, find_crrd_dir, load_tone_rhyme
from mixpoet_lib.generate.constraints import MAX_RELAXATION
from mixpoet_lib.generate.generator import Generator
from mixpoet_lib.generate.poems import GeneratedPoem
from mixpoet_lib.generate.requests import FACTORED_KINDS
from mixpoet_lib.overrides import apply_overrides
from mixpoet_lib.runtime import flush_denormal, resolve_device

EXIT_SOME_FAILED = 3
MAX_SAMPLES = 1000  # -n: poems per keyword
MAX_POEMS = 10_000  # keywords × n in one call (the poems are held in memory until printed)


def register(subparsers: Any) -> None:
    """Add the ``generate`` sub-command."""
    p = subparsers.add_parser(
        "generate",
        help="generate quatrains from a checkpoint",
        description="Generate quatrains with the constrained beam search (docs/design.md §5).",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint file (.pt): a training checkpoint (runs/<profile>/checkpoints/<model>_<phase>.pt) "
        "or a generation checkpoint with its vocabulary",
    )
    _add_input_options(p)
    _add_search_options(p)
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available, else cpu); checked first"
    )
    p.add_argument("--json", action="store_true", help="print the poems as JSON")
    p.add_argument(
        "--allow-unfinished",
        action="store_true",
        help="use a checkpoint whose phase stopped before its planned steps (with a warning)",
    )
    add_set_option(
        p,
        "change generation settings (gen.* only; applied after --beam / --no-novelty), "
        "e.g. --set gen.z_candidates=1,gen.extra_steps=5",
    )
    p.set_defaults(func=_cmd_generate)


def _add_input_options(p: argparse.ArgumentParser) -> None:
    """The vocabulary and data folder, and what to write: keywords, length, labels, how many poems."""
    p.add_argument(
        "--vocab", help="vocab.json of the model (default: from the checkpoint, else the dataset its profile names)"
    )
    p.add_argument(
        "--data-dir",
        help="data folder holding the processed dataset and raw/ with the tone and rhyme lists "
        "(default: $MIXPOET_DATA_DIR or <repo>/data; fill it with `mixpoet data fetch`)",
    )
    p.add_argument(
        "--keyword",
        action="append",
        required=True,
        help="1-2 character keyword (repeat the option for several keywords)",
    )
    p.add_argument("--length", default="7", help="characters per line: 5 or 7 (default 7)")
    p.add_argument(
        "--living",
        default="-1",
        help=f"living-experience label: {', '.join(FACTOR_CLASSES['living'])}, or -1 to infer (default)",
    )
    p.add_argument(
        "--era",
        default="-1",
        help=f"historical-background label: {', '.join(FACTOR_CLASSES['era'])}, or -1 to infer (default)",
    )
    p.add_argument(
        "-n", "--n-samples", default="1", help=f"poems per keyword, 1..{MAX_SAMPLES} (default 1; ≤ {MAX_POEMS} in all)"
    )
    p.add_argument("--seed", default="0", help="seed of the latent samples (default 0)")
    p.add_argument(
        "--distinct",
        action="store_true",
        help="n poems from the n best distinct first lines of one beam (for the basic model)",
    )


def _add_search_options(p: argparse.ArgumentParser) -> None:
    """The beam search: size, repetition rule, relaxation, novelty filter, rhythm tables."""
    p.add_argument(
        "--beam",
        default=None,
        help=f"beam size, 1..{MAX_BEAM} (default {GenConfig().beam_size}); time and memory grow with beam × "
        f"vocabulary, and a wider beam finds no better 5- or 7-character line",
    )
    p.add_argument(
        "--repetition-rule",
        choices=REPETITION_RULES,
        default=None,
        help="in-line repetition rule (default: attested = doubling only where human poems double, needs the "
        "training lines; intended = any doubling of the previous character; official = the original window)",
    )
    p.add_argument(
        "--strict", action="store_true", help="no relaxation ladder: fail a poem as the official generator does"
    )
    p.add_argument(
        "--training-lines",
        help="training_lines.txt for the novelty filter (default: the one named by the checkpoint, if any)",
    )
    p.add_argument("--no-novelty", action="store_true", help="switch the novelty filter off")
    p.add_argument(
        "--crrd", help="CRRD folder with pingsheng.txt, zesheng.txt, pingshui.txt (default: found in the data folder)"
    )


def _int(value: str, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


def _training_lines(args: argparse.Namespace, meta: dict[str, Any], ckpt: Path) -> tuple[set[str] | None, str]:
    if args.no_novelty:
        return None, "novelty filter off (--no-novelty)"
    path = None
    if args.training_lines:
        path = Path(args.training_lines)
        if not path.is_file():
            raise FileNotFoundError(f"training lines not found: {path}")
    else:
        cand = meta.get("training_lines_path")
        if cand:
            cand = Path(cand) if Path(cand).is_absolute() else ckpt.parent / cand
            path = cand if cand.is_file() else None
    if path is None:
        return None, "novelty filter off (no training lines; pass --training-lines)"
    return set(path.read_text(encoding="utf-8").split()), f"novelty filter on ({path})"


def _gen_config(args: argparse.Namespace, novelty: bool = True) -> GenConfig:
    """The generation settings: --beam, the novelty filter's state, then the ``gen.*`` overrides of --set."""
    beam = _int(args.beam, "--beam") if args.beam is not None else GenConfig().beam_size
    if not 1 <= beam <= MAX_BEAM:
        raise ValueError(f"--beam must be in 1..{MAX_BEAM}, got {beam} (see mixpoet generate --help)")
    overrides = overrides_from_args(args)
    other = [k for k in overrides if not k.startswith("gen.")]
    if other:
        raise ValueError(f"mixpoet generate takes only gen.* settings in --set, not {', '.join(other)}")
    return apply_overrides(
        GenConfig(beam_size=beam, novelty_filter=novelty), {k[len("gen.") :]: v for k, v in overrides.items()}, "gen."
    )


def _cmd_generate(args: argparse.Namespace) -> int:
    length = _int(args.length, "--length")
    if length not in (5, 7):
        raise ValueError(f"--length must be 5 or 7, got {length}")
    n = _int(args.n_samples, "-n")
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"-n must be in 1..{MAX_SAMPLES}, got {n}")
    if n * len(args.keyword) > MAX_POEMS:
        raise ValueError(f"{len(args.keyword)} keywords × -n {n} = {n * len(args.keyword)} poems; at most {MAX_POEMS}")
    seed = _int(args.seed, "--seed")
    _gen_config(args)  # bad --beam / --set fail before the model is loaded
    labels = (parse_label("living", args.living), parse_label("era", args.era))  # names or ids
    device = resolve_device(args.device)  # an unknown or absent device fails before any loading
    tr = load_tone_rhyme(find_crrd_dir(args.crrd)) if args.crrd else default_tone_rhyme(args.data_dir)
    ckpt = Path(args.checkpoint)
    model, vocab, meta = load_generator(ckpt, device=device, vocab=args.vocab, data_dir=args.data_dir)
    _check_finished(model, ckpt, args.allow_unfinished)
    lines, novelty_note = _training_lines(args, meta, ckpt)
    cfg = _gen_config(args, lines is not None)
    rule = args.repetition_rule or cfg.repetition_rule
    if rule == "attested" and lines is None:  # the attested doubling table is measured on the training lines
        rule, novelty_note = "intended", novelty_note + "; repetition rule intended (attested needs training lines)"
    gen = Generator(
        model,
        vocab,
        tr,
        lines,
        cfg,
        device=device,
        repetition_rule=rule,
        max_relaxation=0 if args.strict else MAX_RELAXATION,
    )
    with flush_denormal():
        if args.distinct:
            poems = gen.top_n_distinct(args.keyword, length, n, labels=labels, seed=seed)
        else:
            poems = gen.generate(args.keyword, length, labels=labels, n_samples=n, seed=seed)
    if args.json:
        print(json.dumps([p.to_dict() for p in poems], ensure_ascii=False, indent=1))
    else:
        kind = getattr(model, "kind", "?")
        print(
            f"# model {kind} · {length}-character · seed {seed} · beam {cfg.beam_size}"
            f"{_asked(kind, labels)} · {novelty_note}"
        )
        for i, p in enumerate(poems, 1):
            print(_poem_row(i, p, kind))
    return 0 if all(p.ok for p in poems) else EXIT_SOME_FAILED


def _check_finished(model: Any, ckpt: Path, allow: bool) -> None:
    """Refuse a checkpoint whose phase stopped before its planned steps, unless ``allow`` (then warn)."""
    info = getattr(model, "training_info", None) or {}
    if info.get("complete", True):
        return
    where = f"step {info.get('step')} of {info.get('total_steps')}"
    if not allow:
        raise ValueError(
            f"{ckpt} is unfinished ({where}); finish it with `mixpoet train` or pass --allow-unfinished to use it"
        )
    print(f"mixpoet: warning: {ckpt} is unfinished ({where}); generating with it anyway", file=sys.stderr)


def _asked(kind: str, labels: tuple[int, int]) -> str:
    """The requested factor labels, for the header of a factor model's output (-1: inferred, or fbasic's unknown)."""
    if kind not in FACTORED_KINDS:
        return ""
    missing = "unknown" if kind == "fbasic" else "infer"
    return " · asked " + " ".join(
        f"{f}={label_name(f, v) if v >= 0 else missing}" for f, v in zip(("living", "era"), labels)
    )


def _poem_row(i: int, p: GeneratedPoem, kind: str) -> str:
    """One numbered output row: keyword (and labels), the poem or why it failed."""
    head = f"{i:>2}. [{p.keyword}"
    if kind in FACTORED_KINDS:
        head += f" · {label_name('living', p.labels[0])}/{label_name('era', p.labels[1])}"
    head += "]"
    if p.ok:
        form = "form ok" if p.form_ok else "form NOT ok"
        return f"{head} {p.text}    (relaxation {p.relaxation}: {p.relaxation_name} · {form} · score {p.score:.3f})"
    return (
        f"{head} generation FAILED on line {(p.failed_line or 0) + 1}: no candidate survived "
        f"up to relaxation {p.relaxation} ({p.relaxation_name})"
    )
