"""Generation speed: poems per second of a :class:`~mixpoet_lib.generate.generator.Generator`.

End to end (the whole relaxation ladder) and raw decode (one forced-end beam search per line).

Used by ``mixpoet bench`` (:mod:`mixpoet_lib.cli.bench`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from mixpoet_lib.config import GenConfig
from mixpoet_lib.data.rhythm import ToneRhyme, default_tone_rhyme
from mixpoet_lib.data.vocab import SPECIALS, Vocab
from mixpoet_lib.generate.constraints import NO_FORM_CHECK, STRICT
from mixpoet_lib.generate.generator import Generator
from mixpoet_lib.models.generators import PoetBase

__all__ = ["GenerationBenchmark", "benchmark_generation"]


@dataclass(frozen=True)
class GenerationBenchmark:
    """Throughput of :func:`benchmark_generation`."""

    poems_per_s: float  # end to end: the full ladder as a user would run it (wall clock)
    decode_poems_per_s: float  # raw decode: exactly one forced-end beam search per line, no retries (wall clock)
    seconds: float
    decode_seconds: float
    cpu_seconds: float  # process CPU time (all threads): with one thread, the cost on an idle core
    decode_cpu_seconds: float
    threads: int
    n_poems: int
    length: int
    beam: int
    max_batch_poems: int
    relaxation_counts: dict[int, int]
    n_ok: int


def benchmark_generation(
    model: PoetBase,
    vocab: Vocab | Sequence[str],
    n_poems: int,
    length: int,
    beam: int,
    *,
    tone_rhyme: ToneRhyme | None = None,
    max_batch_poems: int = 128,
    training_lines: Iterable[str] | None = None,
    seed: int = 0,
    keywords: Sequence[str] | None = None,
) -> GenerationBenchmark:
    """Time ``n_poems`` poems of one length at one beam size (keywords: the most frequent real tokens).

    Returns end-to-end poems/s (the ladder, retries included; with random weights the strict rung runs
    all L + extra_steps positions before the forced-end rung) and raw decode poems/s (the ladder started
    at ``no_form_check``, i.e. exactly one forced-end beam search per line: what a trained model costs
    when its lines end at L), in wall-clock and process-CPU time. Thread count: torch's current setting.
    """
    vocab = vocab if isinstance(vocab, Vocab) else Vocab(tuple(vocab))
    if keywords is None:
        pool = [t for t in vocab.tokens[len(SPECIALS) :] if len(t) == 1]
        keywords = [pool[i % len(pool)] for i in range(n_poems)]
    keywords = list(keywords)[:n_poems]
    cfg = GenConfig(beam_size=beam, repetition_rule="attested" if training_lines is not None else "intended")
    tr = tone_rhyme if tone_rhyme is not None else default_tone_rhyme()
    timings, cpu, results = {}, {}, {}
    for name, start in (("decode", NO_FORM_CHECK), ("e2e", STRICT)):
        gen = Generator(model, vocab, tr, training_lines, cfg, min_relaxation=start, max_batch_poems=max_batch_poems)
        t0, c0 = time.perf_counter(), time.process_time()
        results[name] = gen.generate(keywords, length, seed=seed)
        timings[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
    poems = results["e2e"]
    counts: dict[int, int] = {}
    for p in poems:
        counts[p.relaxation] = counts.get(p.relaxation, 0) + 1
    return GenerationBenchmark(
        len(poems) / timings["e2e"],
        len(results["decode"]) / timings["decode"],
        timings["e2e"],
        timings["decode"],
        cpu["e2e"],
        cpu["decode"],
        torch.get_num_threads(),
        len(poems),
        length,
        beam,
        max_batch_poems,
        dict(sorted(counts.items())),
        sum(p.ok for p in poems),
    )
