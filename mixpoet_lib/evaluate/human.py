"""Human evaluation of poem quality as in the paper's Table 3: blind rating sheets out, raters' scores in.

**Export.** :func:`choose_poems` takes the evaluation's poems of each system (``<run_dir>/eval/poems``, read by
:func:`read_run_poems`) and draws ``n`` keyword slots that every system filled, the same slots for all systems
(a paired design: every system is rated on the same keywords). The rows are shuffled with the seed and numbered
in that shuffled order, so neither the order nor the id tells a rater which system wrote a poem.
:func:`write_sheet` writes ``sheet.csv`` (for a spreadsheet), ``sheet.html`` (to print) and ``key.csv``, the only
file that maps ids to systems; it stays with whoever scores and never goes to a rater.

**Scoring.** Each rater fills the six criteria (1-5) of the sheet and returns it under a file name of their own
(the file's stem names the rater). :func:`score_sheets` checks every cell against the key and stops at the first
bad one with a one-line :class:`SheetError` (file, line, column, value). A returned sheet may leave out rows (a
rater who rated only part of the poems) but may not add, repeat or alter them. A poem's score on a criterion is
the mean over its raters; per system the table gives mean ± sample std over poems. Agreement is the quadratic
weighted kappa of every pair of raters on the (poem, criterion) cells both rated.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixpoet_lib._util import write_text_atomic
from mixpoet_lib.evaluate.systems import DETERMINISTIC, SYSTEM_TITLES, SYSTEMS, poems_path

__all__ = [
    "CRITERIA",
    "CRITERION_INFO",
    "PAPER_TABLE3",
    "PAPER_KAPPA",
    "PAPER_NAMES",
    "SheetError",
    "SheetPoem",
    "read_run_poems",
    "choose_poems",
    "write_sheet",
    "export_sheet",
    "read_key",
    "read_ratings",
    "quadratic_weighted_kappa",
    "pairwise_kappa",
    "HumanScores",
    "score_ratings",
    "score_sheets",
    "write_scores",
]

CRITERIA: tuple[str, ...] = ("fluency", "coherence", "meaningfulness", "aesthetics", "relevance", "overall")
# criterion → (column title of the paper's table, question put to the rater, Chinese name)
CRITERION_INFO: dict[str, tuple[str, str, str]] = {
    "fluency": ("Flu", "Does each line read smoothly and follow the grammar of classical poetry?", "通顺"),
    "coherence": ("Coh", "Do the four lines hang together, each following from the one before?", "连贯"),
    "meaningfulness": ("Mea", "Does the poem say something, with a clear theme or feeling?", "有意义"),
    "aesthetics": ("Aes", "Is the poem beautiful: imagery, wording, the pleasure of reading it?", "美感"),
    "relevance": ("Rel", "Is the poem about its keyword?", "扣题"),
    "overall": ("Overall", "Your overall judgement of the poem's quality.", "总体"),
}
MIN_SCORE, MAX_SCORE = 1, 5
SHEET_COLUMNS = ("id", "keyword", "poem", *CRITERIA, "comment")
KEY_COLUMNS = ("id", "system", "keyword", "length", "item", "requested", "eval_seed", "role", "poem")
LINE_SEP = " / "  # how a sheet shows the line breaks of a poem

# The paper's Table 3 (criteria in CRITERIA order). Set 1: poems from random keywords; set 2: poems written under
# each of the six factor mixtures. κ = 0.67 between the two raters of each poem.
PAPER_TABLE3: dict[str, dict[str, tuple[float, ...]]] = {
    "inter": {
        "Basic": (3.00, 2.54, 2.30, 2.71, 2.54, 2.35),
        "USPG": (3.09, 2.65, 2.61, 2.98, 2.73, 2.63),
        "CVAE": (3.34, 2.78, 2.64, 3.13, 2.70, 2.81),
        "MRL": (3.91, 3.66, 3.36, 3.73, 3.19, 3.55),
        "MixPoet": (4.18, 4.10, 3.75, 4.10, 3.39, 3.98),
        "GT": (4.25, 4.36, 4.19, 4.20, 3.99, 4.25),
    },
    "mixture": {"fBasic": (3.26, 3.28, 2.75, 3.25, 2.36, 2.96), "MixPoet": (4.08, 4.28, 3.85, 4.12, 2.92, 3.96)},
}
PAPER_KAPPA = 0.67
PAPER_NAMES: dict[str, str] = {"gt": "GT", "basic": "Basic", "fbasic": "fBasic", "cvae": "CVAE", "aus": "MixPoet"}
ROLES = ("inter", "mixture")


class SheetError(ValueError):
    """A rating sheet or key that cannot be used; the message names the file, line, column and value."""


@dataclass(frozen=True)
class SheetPoem:
    """One row of a rating sheet and of its key."""

    id: str
    system: str
    keyword: str
    length: int
    item: int  # index of the keyword among the evaluation's test items
    requested: tuple[int, int]  # the mixture a poem was written under ((-1, -1): none)
    eval_seed: int
    role: str
    text: str  # lines joined by '|'


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")


def read_run_poems(
    run_dir: str | Path, systems: Sequence[str] | None = None, eval_seed: int | None = None
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """The evaluation records of each system from ``<run_dir>/eval/poems`` and the generation seed they came from.

    ``eval_seed`` defaults to the lowest seed with files; deterministic systems (GT, Basic) are stored once, under
    the first seed, and read from there. A missing file raises FileNotFoundError naming it.
    """
    folder = Path(run_dir) / "eval" / "poems"
    systems = list(systems or [s for s in SYSTEMS if any(folder.glob(f"{s}_seed*.json"))])
    if not systems:
        raise FileNotFoundError(f"no evaluation poems in {folder}; run notebook 05 (or `mixpoet reproduce`) first")
    if eval_seed is None:
        seeds = sorted(int(p.stem.rsplit("_seed", 1)[1]) for s in systems for p in folder.glob(f"{s}_seed*.json"))
        eval_seed = seeds[0] if seeds else 1
    out = {}
    for system in systems:
        path = poems_path(run_dir, system, eval_seed)
        if not path.exists() and system in DETERMINISTIC:
            stored = sorted(folder.glob(f"{system}_seed*.json"), key=lambda p: int(p.stem.rsplit("_seed", 1)[1]))
            path = stored[0] if stored else path
        if not path.exists():
            raise FileNotFoundError(f"no poems of system {system!r} at {path}")
        out[system] = json.loads(path.read_text(encoding="utf-8"))["records"]
    return out, eval_seed


def _slots(records: Sequence[Mapping[str, Any]], role: str) -> dict[tuple[int, int, int], Mapping[str, Any]]:
    """The usable records of one role by slot (item, requested mixture)."""
    usable = [r for r in records if r["role"] == role and r["ok"]]
    return {(int(r["item"]), int(r["requested"][0]), int(r["requested"][1])): r for r in usable}


def choose_poems(
    poems: Mapping[str, Sequence[Mapping[str, Any]]],
    n_per_system: int,
    seed: int,
    role: str = "inter",
    eval_seed: int = 0,
) -> list[SheetPoem]:
    """Draw ``n_per_system`` slots every system filled, take each system's poem there, shuffle, number P001, P002, …

    ``poems`` maps system → evaluation records (see :mod:`mixpoet_lib.evaluate.systems`); ``role`` is 'inter'
    (one poem per keyword, the paper's set 1) or 'mixture' (poems written under a given factor mixture, set 2).
    """
    _check_role(role)
    if n_per_system < 1:
        raise ValueError(f"n_per_system must be ≥ 1, got {n_per_system}")
    if not poems:
        raise ValueError("no systems to put on the sheet")
    by_system = {s: _slots(recs, role) for s, recs in poems.items()}
    common = sorted(set.intersection(*(set(v) for v in by_system.values())))
    if len(common) < n_per_system:
        raise ValueError(
            f"only {len(common)} {role} slot(s) hold a poem of every system ({', '.join(poems)}); "
            f"asked for {n_per_system}"
        )
    rng = np.random.default_rng(seed)
    picked = [common[i] for i in sorted(rng.choice(len(common), n_per_system, replace=False).tolist())]
    rows = [(s, slot, by_system[s][slot]) for s in poems for slot in picked]
    width = max(3, len(str(len(rows))))
    out = []
    for k, i in enumerate(rng.permutation(len(rows)).tolist()):
        system, (item, *req), rec = rows[i]
        pid = f"P{k + 1:0{width}d}"
        out.append(
            SheetPoem(pid, system, rec["keyword"], rec["length"], item, (req[0], req[1]), eval_seed, role, rec["text"])
        )
    return out


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text with a UTF-8 byte-order mark (so spreadsheet programs read the Chinese correctly)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return "\ufeff" + buf.getvalue()


_HTML_HEAD = """<!DOCTYPE html>
<html lang="zh"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: "Noto Serif CJK SC", "Songti SC", serif; margin: 2em; }}
.poem {{ border: 1px solid #999; padding: 0.6em 1em; margin: 0 0 1em 0; page-break-inside: avoid; }}
.poem h2 {{ font-size: 1em; margin: 0 0 0.4em 0; }}
.lines {{ font-size: 1.4em; line-height: 1.6; margin: 0.3em 0 0.6em 1em; }}
table {{ border-collapse: collapse; }} td {{ padding: 0.15em 0.6em; }} .box {{ letter-spacing: 0.6em; }}
</style></head><body>
<h1>{title}</h1>
<p>Rate every poem on each criterion from 1 (very poor) to 5 (excellent). The poems come in a random order from
several sources, human poets among them; judge each on its own. Enter your scores in the CSV sheet under the
poem's id (or circle them here and have them typed in). 请按各项标准为每首诗打1至5分。</p>
<table>{criteria}</table>
"""


def sheet_html(poems: Sequence[SheetPoem], title: str = "Poem rating sheet") -> str:
    """A printable HTML sheet: the criteria, then each poem (id, keyword, lines) with a 1-5 box per criterion."""
    esc = html.escape
    criteria = "".join(
        f"<tr><td><b>{esc(c.capitalize())}</b> {esc(zh)}</td><td>{esc(q)}</td></tr>"
        for c, (_, q, zh) in CRITERION_INFO.items()
    )
    parts = [_HTML_HEAD.format(title=esc(title), criteria=criteria)]
    scale = " ".join(str(v) for v in range(MIN_SCORE, MAX_SCORE + 1))
    for p in poems:
        lines = "<br>".join(esc(line) for line in p.text.split("|"))
        boxes = "".join(
            f"<tr><td>{esc(c.capitalize())} {esc(CRITERION_INFO[c][2])}</td><td class='box'>{scale}</td></tr>"
            for c in CRITERIA
        )
        parts.append(
            f"<div class='poem'><h2>{esc(p.id)} · keyword 关键词: {esc(p.keyword)}</h2>"
            f"<div class='lines'>{lines}</div><table>{boxes}</table></div>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_sheet(poems: Sequence[SheetPoem], out_dir: str | Path, title: str = "Poem rating sheet") -> dict[str, Path]:
    """Write ``sheet.csv`` and ``sheet.html`` (for the raters) and ``key.csv`` (for the scorer) into ``out_dir``."""
    out = Path(out_dir)
    sheet_rows = [[p.id, p.keyword, p.text.replace("|", LINE_SEP), *[""] * len(CRITERIA), ""] for p in poems]
    key_rows = [
        [p.id, p.system, p.keyword, p.length, p.item, f"{p.requested[0]} {p.requested[1]}", p.eval_seed, p.role, p.text]
        for p in poems
    ]
    return {
        "sheet": write_text_atomic(out / "sheet.csv", _csv_text(SHEET_COLUMNS, sheet_rows)),
        "html": write_text_atomic(out / "sheet.html", sheet_html(poems, title)),
        "key": write_text_atomic(out / "key.csv", _csv_text(KEY_COLUMNS, key_rows)),
    }


def export_sheet(
    run_dir: str | Path,
    out_dir: str | Path,
    n_per_system: int = 40,
    seed: int = 0,
    systems: Sequence[str] | None = None,
    eval_seed: int | None = None,
    role: str = "inter",
) -> dict[str, Path]:
    """Read a run's evaluation poems, draw the sheet (:func:`choose_poems`) and write it (:func:`write_sheet`)."""
    _check_role(role)
    poems, eval_seed = read_run_poems(run_dir, systems, eval_seed)
    if role == "mixture":
        poems = {s: r for s, r in poems.items() if any(x["role"] == "mixture" for x in r)}
    return write_sheet(choose_poems(poems, n_per_system, seed, role, eval_seed), out_dir)


# ----------------------------------------------------------------------------------------------
# reading returned sheets
# ----------------------------------------------------------------------------------------------


def _rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every non-blank data row of a CSV file that has the ``required`` columns."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise SheetError(f"{path}:1: missing column {missing[0]!r} (the header must name {', '.join(required)})")
        out = []
        for row in reader:
            if any(cell.strip() for cell in row):
                out.append((reader.line_num, {h: (row[i] if i < len(row) else "") for i, h in enumerate(header)}))
    return out


def read_key(path: str | Path) -> dict[str, SheetPoem]:
    """The poems of a sheet by id, from the ``key.csv`` :func:`write_sheet` wrote."""
    path = Path(path)
    key: dict[str, SheetPoem] = {}
    for line, r in _rows(path, KEY_COLUMNS):
        try:
            req = tuple(int(v) for v in r["requested"].split())
            poem = SheetPoem(
                r["id"].strip(),
                r["system"].strip(),
                r["keyword"],
                int(r["length"]),
                int(r["item"]),
                (req[0], req[1]),
                int(r["eval_seed"]),
                r["role"].strip(),
                r["poem"],
            )
        except (ValueError, IndexError):
            raise SheetError(f"{path}:{line}: not a row of a key file written by `mixpoet human-eval export`") from None
        if poem.id in key:
            raise SheetError(f"{path}:{line}: column 'id': {poem.id!r} appears twice")
        key[poem.id] = poem
    if not key:
        raise SheetError(f"{path}: the key holds no poems")
    return key


def _score(path: Path, line: int, column: str, value: str) -> int:
    """A cell's score: a whole number MIN_SCORE..MAX_SCORE ('4' or '4.0'), else a SheetError naming the cell."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (number.is_integer() and MIN_SCORE <= number <= MAX_SCORE):
        raise SheetError(f"{path}:{line}: column {column!r}: {value!r} is not a whole number from 1 to 5")
    return int(number)


def _same_poem(sheet_text: str, key_text: str) -> bool:
    strip = str.maketrans("", "", " /|\u3000\t")
    return sheet_text.translate(strip) == key_text.translate(strip)


def read_ratings(path: str | Path, key: Mapping[str, SheetPoem], rater: str | None = None) -> pd.DataFrame:
    """One returned sheet as a long table (rater, id, system, criterion, score); every cell checked against ``key``.

    The rater is named by ``rater`` or the file's stem. Rows may be missing; an id not in the key, an id given
    twice, a poem whose text differs from the key's, or a score that is not a whole number 1-5 raise SheetError.
    """
    path = Path(path)
    rater = rater or path.stem
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line, r in _rows(path, ("id", *CRITERIA)):
        pid = r["id"].strip()
        if pid not in key:
            raise SheetError(f"{path}:{line}: column 'id': {r['id']!r} is not in the key")
        if pid in seen:
            raise SheetError(f"{path}:{line}: column 'id': {pid!r} appears twice")
        seen.add(pid)
        if "poem" in r and not _same_poem(r["poem"], key[pid].text):
            raise SheetError(
                f"{path}:{line}: column 'poem': {r['poem']!r} differs from the key's {pid} (another export?)"
            )
        for c in CRITERIA:
            score = _score(path, line, c, r[c])
            rows.append({"rater": rater, "id": pid, "system": key[pid].system, "criterion": c, "score": score})
    if not rows:
        raise SheetError(f"{path}: no rated poem in this sheet")
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# agreement and scores
# ----------------------------------------------------------------------------------------------


def quadratic_weighted_kappa(
    a: Sequence[int] | np.ndarray,
    b: Sequence[int] | np.ndarray,
    min_rating: int = MIN_SCORE,
    max_rating: int = MAX_SCORE,
) -> float:
    """Cohen's kappa with quadratic weights of two raters' scores of the same items.

    κ = 1 − Σ_ij W_ij O_ij / Σ_ij W_ij E_ij with W_ij = (i − j)² / (K − 1)², O the observed K × K table of score
    pairs and E = outer(histogram of a, histogram of b) / N, the table two independent raters with the same
    score frequencies would give. 1 = perfect agreement, 0 = chance, negative = worse than chance. nan when
    E puts no weight off the diagonal (both raters always gave one and the same score) or there are no items.
    """
    x, y = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two equally long 1-D score lists, got shapes {x.shape} and {y.shape}")
    k = max_rating - min_rating + 1
    if k < 2:  # noqa: PLR2004 (a scale needs two points)
        raise ValueError(f"need max_rating > min_rating, got {min_rating}..{max_rating}")
    bad = (x < min_rating) | (x > max_rating) | (y < min_rating) | (y > max_rating)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"score pair {x[i]}, {y[i]} (item {i}) outside {min_rating}..{max_rating}")
    if not len(x):
        return math.nan
    observed = np.zeros((k, k))
    np.add.at(observed, (x - min_rating, y - min_rating), 1.0)
    expected = np.outer(observed.sum(1), observed.sum(0)) / len(x)
    idx = np.arange(k)
    weights = (idx[:, None] - idx[None, :]) ** 2 / (k - 1) ** 2
    denom = float((weights * expected).sum())
    return 1.0 - float((weights * observed).sum()) / denom if denom > 0 else math.nan


def pairwise_kappa(ratings: pd.DataFrame) -> pd.DataFrame:
    """Quadratic weighted kappa of every pair of raters on the (poem, criterion) cells both rated.

    One row per pair: raters, shared poems, κ over all shared cells ('all') and per criterion.
    """
    wide = ratings.pivot_table(index=["id", "criterion"], columns="rater", values="score", aggfunc="first")
    raters = sorted(wide.columns)
    rows = []
    for i, ra in enumerate(raters):
        for rb in raters[i + 1 :]:
            both = wide[[ra, rb]].dropna()
            row: dict[str, Any] = {"rater_a": ra, "rater_b": rb, "poems": both.index.get_level_values("id").nunique()}
            row["all"] = quadratic_weighted_kappa(both[ra].astype(int), both[rb].astype(int))
            for c in CRITERIA:
                part = both[both.index.get_level_values("criterion") == c]
                row[c] = quadratic_weighted_kappa(part[ra].astype(int), part[rb].astype(int))
            rows.append(row)
    return pd.DataFrame(rows, columns=["rater_a", "rater_b", "poems", "all", *CRITERIA])


@dataclass
class HumanScores:
    """Scored sheets: the raw ratings, per system × criterion statistics and the raters' pairwise agreement."""

    ratings: pd.DataFrame  # rater, id, system, criterion, score
    means: pd.DataFrame  # system, criterion, mean, std, poems, ratings
    kappa: pd.DataFrame  # see pairwise_kappa
    role: str = "inter"

    def table(self, digits: int = 2) -> pd.DataFrame:
        """Systems × criteria, 'mean ± std' over poems (each poem's score: the mean over its raters)."""
        out = pd.DataFrame(index=[s for s in _system_order(self.means["system"])], columns=list(CRITERIA))
        for _, r in self.means.iterrows():
            out.loc[r["system"], r["criterion"]] = f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}"
        out.index = [SYSTEM_TITLES.get(s, s) for s in out.index]
        return out.fillna("—")

    def table3(self, digits: int = 2) -> pd.DataFrame:
        """The paper's Table 3 layout: a row per system with the paper's row (where it has the system) below it."""
        paper = PAPER_TABLE3[self.role]
        rows, index = [], []
        for system in _system_order(self.means["system"]):
            part = self.means[self.means["system"] == system].set_index("criterion")["mean"]
            rows.append([f"{part[c]:.{digits}f}" if c in part else "—" for c in CRITERIA])
            index.append((SYSTEM_TITLES.get(system, system), "this kit"))
            name = PAPER_NAMES.get(system)
            if name in paper:
                rows.append([f"{v:.2f}" for v in paper[name]])
                index.append((SYSTEM_TITLES.get(system, system), f"paper ({name})"))
        columns = [CRITERION_INFO[c][0] for c in CRITERIA]
        return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["system", "source"]), columns=columns)

    def mean_kappa(self) -> float:
        """κ over all cells, averaged over rater pairs weighted by their shared poems (nan with fewer than 2 raters)."""
        ok = self.kappa.dropna(subset=["all"])
        return float(np.average(ok["all"], weights=ok["poems"])) if len(ok) and ok["poems"].sum() else math.nan


def _system_order(systems: pd.Series) -> list[str]:
    present = set(systems)
    return [s for s in SYSTEMS if s in present] + sorted(present - set(SYSTEMS))


def score_ratings(ratings: pd.DataFrame, role: str = "inter") -> HumanScores:
    """Means and sample stds per system and criterion over poems (a poem's score averaged over raters), and κ."""
    per_poem = ratings.groupby(["system", "criterion", "id"])["score"].mean().reset_index()
    grouped = per_poem.groupby(["system", "criterion"])["score"]
    means = grouped.agg(mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, poems="count")
    means["ratings"] = ratings.groupby(["system", "criterion"])["score"].count()
    return HumanScores(ratings, means.reset_index(), pairwise_kappa(ratings), role)


def score_sheets(sheets: Sequence[str | Path], key_path: str | Path) -> HumanScores:
    """Read the key and every returned sheet (one per rater, named by its file stem) and score them."""
    if not sheets:
        raise ValueError("no rating sheets given")
    key = read_key(key_path)
    stems = [Path(s).stem for s in sheets]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"two sheets are named {twice[0]!r}: give each rater's file its own name (it names the rater)")
    roles = {p.role for p in key.values()}
    ratings = pd.concat([read_ratings(s, key) for s in sheets], ignore_index=True)
    return score_ratings(ratings, roles.pop() if len(roles) == 1 else "inter")


def write_scores(scores: HumanScores, out_dir: str | Path) -> dict[str, Path]:
    """Write ``human_means.csv``, ``human_table3.csv`` and ``human_kappa.csv`` into ``out_dir``."""
    out = Path(out_dir)
    return {
        "means": write_text_atomic(out / "human_means.csv", scores.means.to_csv(index=False)),
        "table3": write_text_atomic(out / "human_table3.csv", scores.table3().to_csv()),
        "kappa": write_text_atomic(out / "human_kappa.csv", scores.kappa.to_csv(index=False)),
    }
