"""Parsing and validation of the raw corpora: CQCF sample, THU-CCPC, chinese-poetry Tang/Song.

Every reader returns :class:`Poem` records. Problems in the data raise :class:`DataFormatError`
with the file, the line (or array item) and the offending value. For the large unlabelled corpora a
poem that is not a 4×5 or 4×7 quatrain is *skipped and counted* (see :class:`SkipLog`); in the
labelled CQCF sample the same problem is an error, because every labelled poem counts.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

N_CLASSES = (3, 2)  # factor 1 (living experience), factor 2 (historical background)
SHORT_LINE, LONG_LINE = 5, 7  # characters per line of the two quatrain forms
LINE_LENGTHS = (SHORT_LINE, LONG_LINE)
N_LINES = 4  # lines of a quatrain
MAX_KEYWORD_CHARS = 2

_CJK = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+$")
_SPLIT_PUNCT = re.compile(r"[，。！？,.!?]")


class DataFormatError(ValueError):
    """A raw data record that cannot be used; the message names file, line and value."""

    def __init__(self, path: Path | str, line: int | str, message: str) -> None:
        self.path, self.line = str(path), line
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Poem:
    """One quatrain: 4 equal lines of 5 or 7 characters, its keywords and its two factor labels."""

    lines: tuple[str, str, str, str]
    keywords: tuple[str, ...]
    labels: tuple[int, int] = (-1, -1)
    source: str = ""
    origin: str = ""  # "file:line" it came from

    @property
    def length(self) -> int:
        """Characters per line (5 or 7)."""
        return len(self.lines[0])

    @property
    def content(self) -> str:
        """The 4 lines joined by '|', as in the raw files."""
        return "|".join(self.lines)

    def to_json(self) -> dict[str, Any]:
        """Return a plain dict (for the JSON-lines cache)."""
        return {
            "content": self.content,
            "keywords": " ".join(self.keywords),
            "label": list(self.labels),
            "source": self.source,
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Poem:
        """Rebuild a poem written by :meth:`to_json`."""
        lines = tuple(obj["content"].split("|"))
        return cls(
            lines=lines,
            keywords=tuple(obj["keywords"].split()),
            labels=tuple(obj["label"]),
            source=obj["source"],
            origin=obj["origin"],
        )


@dataclass
class SkipLog:
    """Counts of skipped records by source and reason, with one example origin per reason."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, source: str, reason: str, origin: str) -> None:
        """Record one skipped record."""
        self.counts[(source, reason)] += 1
        self.examples.setdefault((source, reason), origin)

    def total(self) -> int:
        """Return the number of skipped records."""
        return sum(self.counts.values())

    def as_rows(self) -> list[dict[str, Any]]:
        """Return one row per (source, reason) with its count and an example origin."""
        return [
            {"source": s, "reason": r, "count": n, "example": self.examples[(s, r)]}
            for (s, r), n in sorted(self.counts.items())
        ]


def is_cjk(text: str) -> bool:
    """True when every character of ``text`` is a CJK ideograph."""
    return bool(_CJK.match(text))


def quatrain_problem(lines: list[str]) -> str | None:
    """Return why ``lines`` is not a 4×5 / 4×7 quatrain of CJK characters, or None if it is one."""
    if len(lines) != N_LINES:
        return "not 4 lines"
    lengths = {len(line) for line in lines}
    if len(lengths) != 1:
        return "lines of different lengths"
    (n,) = lengths
    if n not in LINE_LENGTHS:
        return "line length not 5 or 7"
    if any("□" in line for line in lines):
        return "lost character □"
    if not all(is_cjk(line) for line in lines):
        return "non-CJK character"
    return None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; tolerate BOM and CRLF; raise on bad JSON."""
    with open(path, encoding="utf-8-sig", newline=None) as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, lineno, f"malformed JSON ({exc.msg}): {text[:60]!r}") from None
            if not isinstance(obj, dict):
                raise DataFormatError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _field(obj: dict[str, Any], key: str, path: Path, lineno: int) -> str:
    if key not in obj:
        raise DataFormatError(path, lineno, f"missing field {key!r} (has {sorted(obj)})")
    value = obj[key]
    if not isinstance(value, str):
        raise DataFormatError(path, lineno, f"field {key!r} must be a string, got {value!r}")
    return value


def parse_keywords(text: str, path: Path, lineno: int) -> tuple[str, ...]:
    """Split a space-separated keyword field; each keyword must be 1–2 CJK characters."""
    words = tuple(text.split())
    for word in words:
        if len(word) > MAX_KEYWORD_CHARS:
            raise DataFormatError(path, lineno, f"keyword {word!r} has {len(word)} characters (at most 2)")
        if not is_cjk(word):
            raise DataFormatError(path, lineno, f"keyword {word!r} is not made of CJK characters")
    return words


def parse_label(text: str, path: Path, lineno: int) -> tuple[int, int]:
    """Parse a CQCF label "a b" (a in -1..2, b in -1..1)."""
    parts = text.split()
    if len(parts) != len(N_CLASSES):
        raise DataFormatError(path, lineno, f"label {text!r} must be two integers 'a b'")
    out = []
    for k, (part, n_cls) in enumerate(zip(parts, N_CLASSES)):
        try:
            value = int(part)
        except ValueError:
            raise DataFormatError(
                path, lineno, f"label {text!r}: factor {k + 1} value {part!r} is not an integer"
            ) from None
        if not -1 <= value < n_cls:
            raise DataFormatError(path, lineno, f"label {text!r}: factor {k + 1} value {value} outside -1..{n_cls - 1}")
        out.append(value)
    return out[0], out[1]


def load_cqcf(path: Path, source: str = "cqcf") -> list[Poem]:
    """Read a labelled CQCF sample file; any malformed record is an error."""
    path = Path(path)
    poems = []
    for lineno, obj in read_jsonl(path):
        lines = _field(obj, "content", path, lineno).split("|")
        problem = quatrain_problem(lines)
        if problem:
            raise DataFormatError(path, lineno, f"content {obj['content']!r}: {problem}")
        keywords = parse_keywords(_field(obj, "keywords", path, lineno), path, lineno)
        if not keywords:
            raise DataFormatError(path, lineno, "no keywords")
        labels = parse_label(_field(obj, "label", path, lineno), path, lineno)
        poems.append(Poem(tuple(lines), keywords, labels, source, f"{path.name}:{lineno}"))  # type: ignore[arg-type]
    return poems


def load_ccpc(path: Path, skips: SkipLog, source: str = "ccpc") -> list[Poem]:
    """Read a THU-CCPC file (unlabelled); non-quatrains are skipped and counted in ``skips``."""
    path = Path(path)
    poems = []
    for lineno, obj in read_jsonl(path):
        lines = _field(obj, "content", path, lineno).split("|")
        words = _field(obj, "keywords", path, lineno)
        origin = f"{path.name}:{lineno}"
        problem = quatrain_problem(lines) or (None if all(map(is_cjk, words.split())) else "non-CJK keyword")
        if problem:
            skips.add(source, problem, origin)
            continue
        keywords = parse_keywords(words, path, lineno)
        poems.append(Poem(tuple(lines), keywords, (-1, -1), source, origin))  # type: ignore[arg-type]
    return poems


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc  # imported lazily: only the chinese-poetry reader needs it

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Convert traditional to simplified characters with OpenCC's plain 't2s' table (no phrase rewriting)."""
    return _t2s().convert(text)


def split_paragraphs(paragraphs: list[str]) -> list[str]:
    """Join a poem's paragraphs and split them into lines at Chinese sentence punctuation."""
    pieces = _SPLIT_PUNCT.split("".join(paragraphs))
    return [p.strip() for p in pieces if p.strip()]


def load_chinese_poetry(path: Path, skips: SkipLog, source: str) -> list[Poem]:
    """Read one chinese-poetry JSON array, keep 4×5/4×7 quatrains and convert them to simplified."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            items = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, exc.lineno, f"malformed JSON ({exc.msg})") from None
    if not isinstance(items, list):
        raise DataFormatError(path, 1, f"expected a JSON array of poems, got {type(items).__name__}")
    poems = []
    for index, item in enumerate(items):
        where = f"item {index}"
        if not isinstance(item, dict) or "paragraphs" not in item:
            raise DataFormatError(path, where, "missing field 'paragraphs'")
        paragraphs = item["paragraphs"]
        if not isinstance(paragraphs, list) or not all(isinstance(p, str) for p in paragraphs):
            raise DataFormatError(path, where, f"'paragraphs' must be a list of strings, got {paragraphs!r:.60}")
        lines = split_paragraphs(paragraphs)
        origin = f"{path.name}:{where}"
        problem = quatrain_problem(lines)
        if problem:
            skips.add(source, problem, origin)
            continue
        simple = to_simplified("|".join(lines)).split("|")
        poems.append(Poem(tuple(simple), (), (-1, -1), source, origin))  # type: ignore[arg-type]
    return poems


def normalised_key(poem: Poem) -> str:
    """Return the de-duplication key: the poem's characters, simplified, without separators."""
    return to_simplified("".join(poem.lines))


def label_table(poems: list[Poem]) -> dict[str, int]:
    """Count poems per label value of each factor, both-labelled poems and 5/7-character poems."""
    counts: Counter = Counter()
    for p in poems:
        counts[f"y1={p.labels[0]}"] += 1
        counts[f"y2={p.labels[1]}"] += 1
        counts["both labelled"] += p.labels[0] >= 0 and p.labels[1] >= 0
        counts[f"{p.length}-char"] += 1
    keys = ["y1=-1", "y1=0", "y1=1", "y1=2", "y2=-1", "y2=0", "y2=1", "both labelled", "5-char", "7-char"]
    return {"poems": len(poems), **{k: counts.get(k, 0) for k in keys}}
