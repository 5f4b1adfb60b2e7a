"""Character vocabulary with the official reserved ids PAD=0, UNK=1, <E>=2, <B>=3 (spec §1.3)."""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PAD, UNK, EOS, BOS = 0, 1, 2, 3
SPECIALS = ("PAD", "UNK", "<E>", "<B>")


@dataclass(frozen=True)
class Vocab:
    """An id ↔ character table; ids below 4 are the reserved specials."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.tokens[:4]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}, got {self.tokens[:4]}")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, ch: str) -> int:
        """Return the id of a character (UNK for unknown ones)."""
        return self._index.get(ch, UNK)  # type: ignore[attr-defined]

    def __contains__(self, ch: str) -> bool:
        return ch in self._index  # type: ignore[attr-defined]

    def encode(self, text: str) -> list[int]:
        """Return the ids of every character of ``text``."""
        return [self.id(ch) for ch in text]

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> str:
        """Turn ids back into text, dropping specials (and stopping at <E> by default)."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS and stop_at_eos:
                break
            if i >= len(SPECIALS):
                out.append(self.tokens[i])
        return "".join(out)

    def unknown(self, text: str) -> list[str]:
        """Return the characters of ``text`` that are not in the vocabulary (in order, distinct)."""
        return list(dict.fromkeys(ch for ch in text if ch not in self))

    def save(self, path: Path) -> None:
        """Write the vocabulary as JSON (atomically)."""
        write_json_atomic(Path(path), {"specials": list(SPECIALS), "tokens": list(self.tokens[4:])})

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        """Read a vocabulary written by :meth:`save`."""
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
        if obj.get("specials") != list(SPECIALS):
            raise ValueError(f"{path}: unexpected specials {obj.get('specials')!r}")
        return cls(SPECIALS + tuple(obj["tokens"]))


def build_vocab(texts: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> Vocab:
    """Count characters (ignoring '|'), keep those seen ≥ min_freq, most frequent first, ties by code point."""
    if min_freq < 1:
        raise ValueError(f"min_freq must be ≥ 1, got {min_freq}")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be ≥ 1 or None, got {max_size}")
    counts: Counter = Counter()
    for text in texts:
        counts.update(text.replace("|", ""))
    ranked = sorted((c for c, n in counts.items() if n >= min_freq), key=lambda c: (-counts[c], c))
    if max_size is not None:
        ranked = ranked[:max_size]
    return Vocab(SPECIALS + tuple(ranked))


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
