"""Tone (ping/ze) and rhyme resources of THU-CRRD, and the quatrain form rules of MixPoet (design §5.4).

Everything here is a pure function of a :class:`ToneRhyme` (the three CRRD lists, loaded once) and its
arguments, so tests can build tiny hand-made instances. Functions take the resource as the keyword
argument ``tr``; when it is omitted they use :func:`default_tone_rhyme`, which finds the CRRD folder on
disk. Tone symbols: ``'P'`` level (平), ``'Z'`` oblique (仄), ``'B'`` both (a polyphonic character
listed in both files), ``'?'`` neither. Position templates use ``0`` level, ``1`` oblique, ``-1`` free.

Behaviours kept from the official code (``codes/rhythm_tool.py`` and ``codes/filter.py``) and worth knowing:

* **Membership, not pronunciation.** A character "is P" if it occurs in ``pingsheng.txt`` and "is Z" if it
  occurs in ``zesheng.txt``. A polyphonic character is therefore both, and a character in neither file
  (e.g. 一, which CRRD leaves out) matches *neither* P nor Z: the 14 recogniser templates have no free
  position, so a line holding such a character is unrecognised (type -1), except at the first character
  of a 7-character line, which the recogniser ignores.
* **Check order 0, 1, 3, 2.** The official recogniser tries the type-0 templates, then type 1, then
  type 3, then type 2, and returns the first match (:data:`CHECK_ORDER`). The order only matters for lines
  with polyphonic characters, which can match templates of two types.
* **Rhyme class without disambiguation.** The official filter resolves polyphonic rhyme characters with
  ``pingshui_amb.pkl`` (a 121 MB Git-LFS file that is usually missing); its own fallback, used here, is
  the *first* class listed for the character in ``pingshui.txt``.
* **Tone bans in the beam (design §5.4).** A level position bans every character of the oblique
  list and an oblique position every character of the level list, so polyphonic characters are banned at
  every constrained position and characters in neither list are never banned.

**Two checks of a finished poem.** :func:`check_poem` is the generator's own check (the official recogniser's
first matching type, the first listed rhyme class); it is what the beam search's post-filter enforces.
:func:`check_verse` is the reader's check used to score poems (``docs/metrics.md`` counts what each rule of
the official check rejects in human poems): a line may be read as any type whose templates it fits
(polyphonic characters take either tone; 一, which CRRD leaves out, is oblique; other unlisted characters
fit either tone), the poem passes when some first-line type gives a pattern every line fits, and it rhymes
when the last characters of lines 2 and 4 share a level rhyme class (any class listed for them in
``pingshui.txt`` or the ``pingsheng.txt`` line, i.e. rhyme group, they sit on); line 1 may rhyme or not.

The files also hold two stray non-Han symbols (a full-width ``Ｑ`` among the level characters, U+FFFD
among the oblique ones). They are kept in the lists, as in the official string-containment test, but the
vocabulary masks only ever mark CJK ideographs.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from mixpoet_lib import paths
from mixpoet_lib.data.corpora import LONG_LINE, N_LINES, SHORT_LINE

LEVEL, OBLIQUE, FREE = 0, 1, -1
N_RHYME_CLASSES = 30
LEVEL_FILE, OBLIQUE_FILE, RHYME_FILE = "pingsheng.txt", "zesheng.txt", "pingshui.txt"
CRRD_SUBDIR = Path("thu-aipoet") / "CRRD"

UNRECOGNISED = -1  # line_type: right length, no template matches
BAD_LENGTH = -2  # line_type: length is neither 5 nor 7
TABLE_FIELDS = 2  # a line of a CRRD table: CHARACTER CLASS

# Recogniser templates for 5-character lines (design §5.4), keyed by line type.
TEMPLATES_5: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {
        0: ("PPPZZ", "PPZZZ", "ZPPZZ", "ZPZPZ", "PPZPZ"),  # level-start, oblique-end
        1: ("ZZZPP", "PZZPP"),  # oblique-start, level-end
        2: ("PPZZP", "ZPPZP", "PPPZP"),  # level-start, level-end
        3: ("PZPPZ", "PZZPZ", "ZZPPZ", "ZZZPZ"),  # oblique-start, oblique-end
    }
)
CHECK_ORDER: tuple[int, ...] = (0, 1, 3, 2)  # official order of the template checks; first match wins
_OPPOSITE = {"P": "Z", "Z": "P"}
# 7-character lines: character 1 is ignored; characters 2-7 are a head contrasting with the 5-char
# template's 2nd symbol, followed by the 5-char template (e.g. PPZZP -> ZPPZZP).
TEMPLATES_7: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {t: tuple(_OPPOSITE[s[1]] + s for s in ts) for t, ts in TEMPLATES_5.items()}
)

# Poem-level rules (design §5.4).
POEM_PATTERNS: Mapping[int, tuple[int, int, int, int]] = MappingProxyType(
    {0: (0, 1, 3, 2), 1: (1, 2, 0, 1), 2: (2, 1, 3, 2), 3: (3, 2, 0, 1)}
)
POSITION_TEMPLATES: Mapping[int, Mapping[int, tuple[int, ...]]] = MappingProxyType(
    {
        5: MappingProxyType({0: (-1, 0, 0, 1, 1), 1: (-1, 1, 1, 0, 0), 2: (0, 0, 1, 1, 0), 3: (-1, 1, 0, 0, 1)}),
        7: MappingProxyType(
            {
                0: (-1, 1, -1, 0, 0, 1, 1),
                1: (-1, 0, -1, 1, 1, 0, 0),
                2: (-1, 1, 0, 0, 1, 1, 0),
                3: (-1, 0, -1, 1, 0, 0, 1),
            }
        ),
    }
)


@dataclass(frozen=True, repr=False)
class ToneRhyme:
    """The CRRD lists: level and oblique characters, and each character's Pingshui rhyme classes."""

    level: frozenset[str]
    oblique: frozenset[str]
    rhyme_classes: Mapping[str, tuple[int, ...]] = field(default_factory=dict, hash=False)
    level_groups: tuple[str, ...] = ()  # the non-empty lines of pingsheng.txt (one rhyme group each)
    oblique_groups: tuple[str, ...] = ()  # the non-empty lines of zesheng.txt
    n_rhyme_entries: int = 0  # non-empty lines of pingshui.txt (before merging repeated pairs)

    def __repr__(self) -> str:
        return (
            f"ToneRhyme(level={len(self.level)} chars, oblique={len(self.oblique)} chars, "
            f"both={len(self.both)}, rhyme_classes={len(self.rhyme_classes)} chars)"
        )

    @property
    def both(self) -> frozenset[str]:
        """Characters listed in both tone files (polyphonic)."""
        return self.level & self.oblique

    @functools.cached_property
    def group_classes(self) -> Mapping[str, frozenset[int]]:
        """Level rhyme classes by rhyme group: a character on line i of ``pingsheng.txt`` gets class i + 1.

        The file's 30 lines are the 30 Pingshui level rhymes in class order; empty unless there are 30 lines.
        """
        table: dict[str, set[int]] = {}
        if len(self.level_groups) == N_RHYME_CLASSES:
            for i, group in enumerate(self.level_groups, start=1):
                for ch in group:
                    table.setdefault(ch, set()).add(i)
        return MappingProxyType({ch: frozenset(cs) for ch, cs in table.items()})

    @classmethod
    def from_strings(
        cls, level: str, oblique: str, rhymes: Mapping[str, int | Sequence[int]] | None = None
    ) -> ToneRhyme:
        """Build a small instance by hand (whitespace ignored), e.g. for tests."""
        table = {ch: (c,) if isinstance(c, int) else tuple(c) for ch, c in (rhymes or {}).items()}
        return cls(frozenset("".join(level.split())), frozenset("".join(oblique.split())), MappingProxyType(table))


# ----------------------------------------------------------------------------- loading


def _read_text(path: Path) -> str:
    """Read a UTF-8 file (BOM allowed), with a clear error when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"CRRD file not found: {path} (expected {path.name} in {path.parent})")
    return path.read_bytes().decode("utf-8-sig")


def _read_groups(path: Path) -> tuple[str, ...]:
    """Return a tone file's non-empty lines with all whitespace removed (CRLF or LF)."""
    groups = ("".join(line.split()) for line in _read_text(path).splitlines())
    return tuple(g for g in groups if g)


def _read_rhymes(path: Path) -> tuple[dict[str, tuple[int, ...]], int]:
    """Parse ``CHAR CLASS`` lines into char -> classes (file order, repeats merged) and the entry count."""
    table: dict[str, list[int]] = {}
    entries = 0
    for lineno, raw in enumerate(_read_text(path).splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != TABLE_FIELDS or len(fields[0]) != 1:
            raise ValueError(f"{path} line {lineno}: expected 'CHARACTER CLASS', got {raw.strip()!r}")
        ch, value = fields
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= N_RHYME_CLASSES):
            raise ValueError(
                f"{path} line {lineno}: rhyme class must be an integer in 1..{N_RHYME_CLASSES}, got {value!r}"
            )
        cls = int(value)
        entries += 1
        classes = table.setdefault(ch, [])
        if cls not in classes:
            classes.append(cls)
    return {ch: tuple(cs) for ch, cs in table.items()}, entries


def load_tone_rhyme(crrd_dir: Path | str) -> ToneRhyme:
    """Load ``pingsheng.txt``, ``zesheng.txt`` and ``pingshui.txt`` from a CRRD folder."""
    crrd_dir = Path(crrd_dir)
    level_groups = _read_groups(crrd_dir / LEVEL_FILE)
    oblique_groups = _read_groups(crrd_dir / OBLIQUE_FILE)
    rhymes, entries = _read_rhymes(crrd_dir / RHYME_FILE)
    return ToneRhyme(
        level=frozenset("".join(level_groups)),
        oblique=frozenset("".join(oblique_groups)),
        rhyme_classes=MappingProxyType(rhymes),
        level_groups=level_groups,
        oblique_groups=oblique_groups,
        n_rhyme_entries=entries,
    )


def find_crrd_dir(root: Path | str | None = None) -> Path:
    """Locate the CRRD folder: ``root`` (a CRRD, raw or data folder), else <data>/raw, else $MIXPOET_MIRROR."""
    if root is not None:
        base = Path(root).expanduser()
        candidates = [base, base / CRRD_SUBDIR, base / "raw" / CRRD_SUBDIR]
    else:
        mirror = paths.mirror_dir()
        candidates = [paths.raw_dir() / CRRD_SUBDIR]
        if mirror is not None:  # the mirror may name the raw folder or the data folder holding it
            candidates += [mirror / CRRD_SUBDIR, mirror / "raw" / CRRD_SUBDIR]
    for cand in candidates:
        if (cand / LEVEL_FILE).is_file():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    fetch = "mixpoet data fetch" + (f" --data-dir {root}" if root is not None else "")
    raise FileNotFoundError(
        f"the tone and rhyme lists (CRRD {LEVEL_FILE}) are not there (tried: {tried}); "
        f"run `{fetch}` to download them, or set ${paths.ENV_MIRROR} to a local copy of the raw files"
    )


@functools.lru_cache(maxsize=4)
def _cached_load(crrd_dir: str) -> ToneRhyme:
    return load_tone_rhyme(Path(crrd_dir))


def default_tone_rhyme(data_dir: Path | str | None = None) -> ToneRhyme:
    """Return the CRRD resources found by :func:`find_crrd_dir`, loaded once per folder and cached."""
    return _cached_load(os.fspath(find_crrd_dir(data_dir).resolve()))


def _res(tr: ToneRhyme | None) -> ToneRhyme:
    return tr if tr is not None else default_tone_rhyme()


# ----------------------------------------------------------------------------- characters


def tone_of(ch: str, *, tr: ToneRhyme | None = None) -> str:
    """Tone symbol of one character: 'P' level, 'Z' oblique, 'B' both lists, '?' neither."""
    tr = _res(tr)
    is_p, is_z = ch in tr.level, ch in tr.oblique
    return "B" if is_p and is_z else "P" if is_p else "Z" if is_z else "?"


def tone_string(line: str, *, tr: ToneRhyme | None = None) -> str:
    """Tone symbols of every character of a line, e.g. '床前明月光' -> 'PPPZP'."""
    tr = _res(tr)
    return "".join(tone_of(ch, tr=tr) for ch in line)


def rhyme_classes_of(ch: str, *, tr: ToneRhyme | None = None) -> tuple[int, ...]:
    """All Pingshui classes listed for a character (file order; empty if none)."""
    return _res(tr).rhyme_classes.get(ch, ())


def rhyme_class(ch: str, *, tr: ToneRhyme | None = None) -> int | None:
    """First listed Pingshui class of a character (the official fallback without pingshui_amb.pkl)."""
    classes = rhyme_classes_of(ch, tr=tr)
    return classes[0] if classes else None


def is_cjk(token: str) -> bool:
    """True for a single CJK ideograph (any Unicode block, compatibility forms included)."""
    return len(token) == 1 and unicodedata.name(token, "").startswith(("CJK UNIFIED", "CJK COMPAT"))


# ----------------------------------------------------------------------------- lines


def _matches(tones: str, template: str) -> bool:
    """Membership match: 'P' accepts P or B, 'Z' accepts Z or B, '?' matches nothing."""
    return all(t == s or t == "B" for t, s in zip(tones, template, strict=True))


def line_type(line: str, *, tr: ToneRhyme | None = None) -> int:
    """Rule-based tonal type 0..3 of a 5/7-char line (design §5.4); -1 unrecognised, -2 wrong length."""
    if len(line) == SHORT_LINE:
        tones, templates = tone_string(line, tr=tr), TEMPLATES_5
    elif len(line) == LONG_LINE:
        tones, templates = tone_string(line[1:], tr=tr), TEMPLATES_7
    else:
        return BAD_LENGTH
    for t in CHECK_ORDER:
        if any(_matches(tones, tpl) for tpl in templates[t]):
            return t
    return UNRECOGNISED


def position_template(line_type: int, length: int) -> tuple[int, ...]:
    """Per-position tone constraint of a line type (0 level, 1 oblique, -1 free), design §5.4."""
    if length not in POSITION_TEMPLATES:
        raise ValueError(f"line length must be 5 or 7, got {length!r}")
    if line_type not in POSITION_TEMPLATES[length]:
        raise ValueError(f"line type must be 0..3, got {line_type!r}")
    return POSITION_TEMPLATES[length][line_type]


def poem_pattern(first_line_type: int) -> tuple[int, int, int, int]:
    """Line types of lines 1-4 fixed by line 1's type (design §5.4)."""
    if first_line_type not in POEM_PATTERNS:
        raise ValueError(f"first line type must be 0..3, got {first_line_type!r}")
    return POEM_PATTERNS[first_line_type]


# ----------------------------------------------------------------------------- poems


def rhyme_class_for_poem(lines: Sequence[str], *, tr: ToneRhyme | None = None) -> int | None:
    """Poem rhyme class: that of line 1's last character, else line 2's, else None."""
    tr = _res(tr)
    for line in lines[:2]:
        cls = rhyme_class(line[-1], tr=tr) if line else None
        if cls is not None:
            return cls
    return None


@dataclass(frozen=True)
class FormReport:
    """Result of :func:`check_poem`: recognised vs expected line types and the rhyme check."""

    types: tuple[int, ...]  # recognised type of each line (-1 unrecognised, -2 bad length)
    expected: tuple[int, ...] | None  # types implied by line 1; None if line 1 is unrecognised
    pattern_ok: bool
    rhyme_ok: bool
    rhyme_class: int | None
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", self.pattern_ok and self.rhyme_ok)


def _quatrain(lines: Sequence[str] | str) -> list[str]:
    """The 4 lines of a poem given as a list or one '|'-joined string (ValueError for another count)."""
    lines = lines.split("|") if isinstance(lines, str) else list(lines)
    if len(lines) != N_LINES:
        raise ValueError(f"a quatrain needs exactly 4 lines, got {len(lines)}: {lines!r}")
    return lines


def check_poem(lines: Sequence[str] | str, *, tr: ToneRhyme | None = None) -> FormReport:
    """Check a 4-line poem (list, or one string joined by '|') against the tone pattern (design §5.4) and rhyme.

    This is the generator's check (official recogniser, first listed rhyme class); :func:`check_verse` is the
    reader's one.
    """
    lines = _quatrain(lines)
    tr = _res(tr)
    types = tuple(line_type(line, tr=tr) for line in lines)
    expected = poem_pattern(types[0]) if types[0] >= 0 else None
    same_length = len({len(line) for line in lines}) == 1
    pattern_ok = expected is not None and same_length and types == expected
    cls = rhyme_class_for_poem(lines, tr=tr)
    rhyme_ok = cls is not None and all(
        bool(line) and cls in rhyme_classes_of(line[-1], tr=tr) for line in (lines[1], lines[3])
    )
    return FormReport(types, expected, pattern_ok, rhyme_ok, cls)


# ----------------------------------------------------------------------------- the reader's check

# Tones for common characters that CRRD lists in neither file (一 is an entering, i.e. oblique, tone).
VERSE_TONES: Mapping[str, str] = MappingProxyType({"一": "Z"})
# What check_verse can find wrong, in the order it reports it.
VERSE_FAILURES = ("shape", "irregular line", "pattern", "oblique rhyme", "no shared rhyme")


def verse_tone(ch: str, *, tr: ToneRhyme | None = None) -> str:
    """Tone symbol for the reader's check: CRRD's, gaps filled from :data:`VERSE_TONES` ('?' fits either tone)."""
    tone = tone_of(ch, tr=tr)
    return VERSE_TONES.get(ch, tone) if tone == "?" else tone


def verse_line_types(line: str, *, tr: ToneRhyme | None = None) -> frozenset[int]:
    """Every line type 0..3 with a recogniser template the line fits ('B' and '?' characters fit both tones)."""
    if len(line) == SHORT_LINE:
        body, templates = line, TEMPLATES_5
    elif len(line) == LONG_LINE:
        body, templates = line[1:], TEMPLATES_7
    else:
        return frozenset()
    tones = [verse_tone(ch, tr=tr) for ch in body]
    return frozenset(
        t for t, tpls in templates.items() if any(all(x == s or x in "B?" for x, s in zip(tones, tpl)) for tpl in tpls)
    )


def verse_rhyme_classes(ch: str, *, tr: ToneRhyme | None = None) -> frozenset[int]:
    """Level rhyme classes of a character: every class ``pingshui.txt`` lists, plus its ``pingsheng.txt`` group's."""
    tr = _res(tr)
    return frozenset(tr.rhyme_classes.get(ch, ())) | tr.group_classes.get(ch, frozenset())


@dataclass(frozen=True)
class VerseReport:
    """Result of :func:`check_verse`: the types each line fits, the patterns the poem fits, the shared rhymes."""

    types: tuple[frozenset[int], ...]
    patterns: tuple[int, ...]  # first-line types whose poem pattern every line fits
    rhymes: frozenset[int]  # level rhyme classes lines 2 and 4 share
    failures: tuple[str, ...]  # the broken rules, named as in VERSE_FAILURES

    @property
    def pattern_ok(self) -> bool:
        """The four lines follow one tone pattern."""
        return bool(self.patterns)

    @property
    def rhyme_ok(self) -> bool:
        """Lines 2 and 4 rhyme."""
        return bool(self.rhymes)

    @property
    def ok(self) -> bool:
        """A regulated quatrain to a reader: one tone pattern and a level rhyme."""
        return not self.failures


def check_verse(lines: Sequence[str] | str, *, tr: ToneRhyme | None = None) -> VerseReport:
    """The reader's check of a 4-line poem (list or '|'-joined): see the module doc; failures as in VERSE_FAILURES."""
    lines = _quatrain(lines)
    tr = _res(tr)
    types = tuple(verse_line_types(line, tr=tr) for line in lines)
    shape_ok = len({len(line) for line in lines}) == 1 and len(lines[0]) in (SHORT_LINE, LONG_LINE)
    patterns = tuple(t for t in POEM_PATTERNS if shape_ok and all(p in ts for p, ts in zip(POEM_PATTERNS[t], types)))
    ends = [line[-1] if line else "" for line in (lines[1], lines[3])]
    rhymes = verse_rhyme_classes(ends[0], tr=tr) & verse_rhyme_classes(ends[1], tr=tr) if all(ends) else frozenset()
    failures = []
    if not shape_ok:
        failures.append("shape")
    elif not all(types):
        failures.append("irregular line")
    elif not patterns:
        failures.append("pattern")
    if not rhymes:
        oblique = any(ch and verse_tone(ch, tr=tr) == "Z" for ch in ends)
        failures.append("oblique rhyme" if oblique else "no shared rhyme")
    return VerseReport(types, patterns, rhymes, tuple(failures))


# ----------------------------------------------------------------------------- vocabulary masks


def tone_masks(vocab: Sequence[str], *, tr: ToneRhyme | None = None) -> dict[str, np.ndarray]:
    """Boolean masks over token ids: 'level', 'oblique', 'both' (CJK tokens in those lists)."""
    tr = _res(tr)
    cjk = np.fromiter((is_cjk(tok) for tok in vocab), dtype=bool, count=len(vocab))
    level = cjk & np.fromiter((tok in tr.level for tok in vocab), dtype=bool, count=len(vocab))
    oblique = cjk & np.fromiter((tok in tr.oblique for tok in vocab), dtype=bool, count=len(vocab))
    return {"level": level, "oblique": oblique, "both": level & oblique}


def rhyme_mask(vocab: Sequence[str], cls: int, *, tr: ToneRhyme | None = None) -> np.ndarray:
    """Boolean mask of token ids whose character lists rhyme class ``cls``."""
    tr = _res(tr)
    return np.fromiter((cls in tr.rhyme_classes.get(tok, ()) for tok in vocab), dtype=bool, count=len(vocab))


def tone_ban_mask(masks: Mapping[str, np.ndarray], value: int) -> np.ndarray:
    """Ids banned at a position of template value 0 (the oblique list), 1 (the level list) or -1 (none)."""
    if value == LEVEL:
        return masks["oblique"].copy()
    if value == OBLIQUE:
        return masks["level"].copy()
    if value == FREE:
        return np.zeros_like(masks["level"])
    raise ValueError(f"template value must be 0, 1 or -1, got {value!r}")
