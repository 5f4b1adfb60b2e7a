"""A generated quatrain (:class:`GeneratedPoem`) and the bookkeeping of one poem while it is being decoded.

:class:`PoemState` holds what the :class:`~mixpoet_lib.generate.generator.Generator` knows about one poem between
lines: its request, its own random generator, the chosen lines with their rungs and scores, the characters
used so far, the tone pattern and rhyme class fixed by the first lines, and where it failed.
:meth:`PoemState.result` turns it into the finished :class:`GeneratedPoem`. :func:`eval_mode` is the
eval-and-inference block every decoding runs in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mixpoet_lib.data.rhythm import ToneRhyme, check_poem
from mixpoet_lib.generate.constraints import N_LINES, RELAXATION_LEVELS
from mixpoet_lib.generate.requests import PoemRequest

__all__ = ["GeneratedPoem", "PoemState", "clone_rng", "eval_mode"]


@dataclass(frozen=True)
class GeneratedPoem:
    """One generated quatrain (or a failed attempt: ``ok=False`` and no lines).

    ``relaxation`` is the highest rung of :data:`RELAXATION_LEVELS` any line needed (0 = strict); for a
    failed poem it is the last rung tried. ``score`` is the mean over lines of the average log-probability
    per generated token (``<E>`` included; higher is better, nan when failed). ``form_ok`` says whether
    the finished poem passes :func:`~mixpoet_lib.data.rhythm.check_poem` (tone pattern and rhyme).
    """

    keyword: str
    length: int
    labels: tuple[int, int]  # the labels used (inferred where -1 was given; (-1, -1) for basic / cvae)
    lines: tuple[str, ...]
    ok: bool
    relaxation: int
    score: float
    form_ok: bool
    line_relaxation: tuple[int, ...] = ()
    line_scores: tuple[float, ...] = ()
    sample: int = 0
    pattern: tuple[int, ...] | None = None  # line types fixed by line 1
    rhyme_class: int | None = None
    failed_line: int | None = None  # 0-based line on which a failed poem stopped

    @property
    def relaxation_name(self) -> str:
        """Name of the relaxation rung (``'strict'``, ``'forced_end'``, …)."""
        return RELAXATION_LEVELS[self.relaxation]

    @property
    def text(self) -> str:
        """The poem as one string, lines joined by '|' (empty when generation failed)."""
        return "|".join(self.lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (with the relaxation name)."""
        out = dataclasses.asdict(self)
        out["relaxation_name"] = self.relaxation_name
        if isinstance(out["score"], float) and math.isnan(out["score"]):
            out["score"] = None
        return out


@dataclass
class PoemState:
    """One poem between lines: its request and random generator, the lines chosen so far and its form state."""

    req: PoemRequest
    rng: torch.Generator
    lines: list[str] = field(default_factory=list)
    line_levels: list[int] = field(default_factory=list)
    line_scores: list[float] = field(default_factory=list)
    used: set[int] = field(default_factory=set)
    pattern: tuple[int, ...] | None = None
    rhyme: int | None = None
    failed_line: int | None = None
    last_level: int = 0
    labels: tuple[int, int] = (-1, -1)

    @property
    def active(self) -> bool:
        """False once a line found no candidate on any rung."""
        return self.failed_line is None

    def result(self, tr: ToneRhyme) -> GeneratedPoem:
        """The finished poem (failed when a line found no candidate or fewer than four lines were chosen)."""
        r = self.req
        if not self.active or len(self.lines) < N_LINES:
            return GeneratedPoem(
                r.keyword,
                r.length,
                self.labels,
                (),
                False,
                self.last_level,
                float("nan"),
                False,
                tuple(self.line_levels),
                tuple(self.line_scores),
                r.sample,
                self.pattern,
                self.rhyme,
                self.failed_line if self.failed_line is not None else len(self.lines),
            )
        lines = tuple(self.lines)
        return GeneratedPoem(
            r.keyword,
            r.length,
            self.labels,
            lines,
            True,
            max(self.line_levels),
            float(np.mean(self.line_scores)),
            check_poem(lines, tr=tr).ok,
            tuple(self.line_levels),
            tuple(self.line_scores),
            r.sample,
            self.pattern,
            self.rhyme,
            None,
        )


def clone_rng(rng: torch.Generator) -> torch.Generator:
    """A new CPU generator in the same state as ``rng``."""
    g = torch.Generator()
    g.set_state(rng.get_state())
    return g


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and inference mode for the block; the model's train/eval flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
