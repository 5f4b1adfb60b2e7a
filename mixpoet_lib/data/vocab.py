"""Character vocabulary with the official reserved ids PAD=0, UNK=1, <E>=2, <B>=3 (design §2.5)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mixpoet_lib._util import write_json_atomic

PAD, UNK, EOS, BOS = 0, 1, 2, 3
SPECIALS = ("PAD", "UNK", "<E>", "<B>")
N_SPECIALS = len(SPECIALS)  # ids below this are reserved; real characters start here


@dataclass(frozen=True)
class Vocab:
    """An id ↔ character table; ids below :data:`N_SPECIALS` are the reserved specials."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.tokens[:N_SPECIALS]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}, got {self.tokens[:N_SPECIALS]}")
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
            if i >= N_SPECIALS:
                out.append(self.tokens[i])
        return "".join(out)

    def unknown(self, text: str) -> list[str]:
        """Return the characters of ``text`` that are not in the vocabulary (in order, distinct)."""
        return list(dict.fromkeys(ch for ch in text if ch not in self))

    def save(self, path: Path) -> None:
        """Write the vocabulary as JSON (atomically)."""
        write_json_atomic(path, {"specials": list(SPECIALS), "tokens": list(self.tokens[N_SPECIALS:])}, sort_keys=False)

    @classmethod
    def load(cls, path: Path) -> Vocab:
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
