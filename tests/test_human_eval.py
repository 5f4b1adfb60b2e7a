"""The human-evaluation kit: blind sheets from evaluation poems, strict reading of returned sheets, scores and κ."""

from __future__ import annotations

import csv
import json
import math

import pytest

from mixpoet_lib.cli import app as cli
from mixpoet_lib.evaluate import human as H

SYSTEMS = ("gt", "basic", "aus")
POEM = "春风吹{k}柳|细雨入{k}池|山中{k}寂寂|花落鸟声迟"


def _record(item: int, keyword: str, ok: bool = True, role: str = "inter", requested=(-1, -1)) -> dict:
    return {
        "role": role,
        "item": item,
        "keyword": keyword,
        "length": 5,
        "requested": list(requested),
        "ok": ok,
        "text": POEM.format(k=keyword) if ok else "",
    }


@pytest.fixture()
def run_dir(tmp_path):
    """A run folder with synthetic evaluation poems: 5 keywords; basic failed on item 3, aus has mixture poems."""
    folder = tmp_path / "run" / "eval" / "poems"
    folder.mkdir(parents=True)
    keywords = ["春", "秋", "月", "<b>&", "雪"]
    for system in SYSTEMS:
        records = [_record(i, k, ok=not (system == "basic" and i == 3)) for i, k in enumerate(keywords)]
        if system == "aus":
            records += [_record(i, k, role="mixture", requested=(0, 1)) for i, k in enumerate(keywords)]
        (folder / f"{system}_seed1.json").write_text(json.dumps({"records": records}, ensure_ascii=False), "utf-8")
    return tmp_path / "run"


def _rows(path):
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def _fill(sheet, out, score_of, drop=()):
    """Write a returned sheet: every criterion of poem `id` gets score_of(id, criterion)."""
    rows = [r for r in _rows(sheet) if r["id"] not in drop]
    for r in rows:
        for c in H.CRITERIA:
            r[c] = str(score_of(r["id"], c))
    with open(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


# ----------------------------------------------------------------------------- kappa


def test_qwk_hand_computed_3x3():
    # O has (1,1) (1,2) (2,2) (2,3) (3,3)×2; W off-diagonal 1/4 next door, 1 two apart. Σ W·O = 1/4 + 1/4 = 1/2.
    # E = outer((2,2,2), (1,2,3)) / 6; Σ W·E = 7/6 + 1/3 + 1/2 = 2  →  κ = 1 − (1/2)/2 = 0.75
    assert H.quadratic_weighted_kappa([1, 1, 2, 2, 3, 3], [1, 2, 2, 3, 3, 3], 1, 3) == pytest.approx(0.75)


def test_qwk_identity_opposite_and_undefined():
    scores = [1, 2, 3, 4, 5, 3, 2]
    assert H.quadratic_weighted_kappa(scores, scores) == pytest.approx(1.0)
    assert H.quadratic_weighted_kappa([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    assert H.quadratic_weighted_kappa([1, 2, 3], [3, 2, 1], 1, 3) == pytest.approx(-1.0)
    assert math.isnan(H.quadratic_weighted_kappa([4, 4], [4, 4]))  # no spread: chance agreement is total
    assert math.isnan(H.quadratic_weighted_kappa([], []))
    with pytest.raises(ValueError, match=r"outside 1\.\.5"):
        H.quadratic_weighted_kappa([1, 6], [1, 2])
    with pytest.raises(ValueError, match="equally long"):
        H.quadratic_weighted_kappa([1, 2], [1])


# ----------------------------------------------------------------------------- export


def test_export_is_blind_paired_shuffled_and_seeded(run_dir, tmp_path):
    paths = H.export_sheet(run_dir, tmp_path / "a", n_per_system=3, seed=5)
    sheet, key = _rows(paths["sheet"]), _rows(paths["key"])
    assert list(sheet[0]) == list(H.SHEET_COLUMNS) and "system" not in sheet[0]
    assert [r["id"] for r in sheet] == [f"P{i:03d}" for i in range(1, 10)] == [r["id"] for r in key]
    by_system = {s: sorted(r["keyword"] for r in key if r["system"] == s) for s in SYSTEMS}
    assert by_system["gt"] == by_system["basic"] == by_system["aus"] and len(by_system["gt"]) == 3
    assert "<b>&" not in by_system["gt"]  # basic failed there: the slot is not common to every system
    for r, k in zip(sheet, key):
        assert r["keyword"] == k["keyword"] and r["poem"] == k["poem"].replace("|", " / ")
        assert all(r[c] == "" for c in H.CRITERIA)
    assert [r["system"] for r in key] != sorted(r["system"] for r in key)  # shuffled, not grouped
    again = H.export_sheet(run_dir, tmp_path / "b", n_per_system=3, seed=5)
    assert all(paths[k].read_bytes() == again[k].read_bytes() for k in paths)
    other = H.export_sheet(run_dir, tmp_path / "c", n_per_system=3, seed=6)
    assert other["key"].read_bytes() != paths["key"].read_bytes()


def test_html_sheet_escapes_text(run_dir, tmp_path):
    paths = H.export_sheet(run_dir, tmp_path / "s", n_per_system=4, seed=0, systems=["gt", "aus"])
    page = paths["html"].read_text(encoding="utf-8")
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page
    assert page.count("class='poem'") == 8 and all(c.capitalize() in page for c in H.CRITERIA)
    assert "aus" not in page and "MixPoet" not in page  # nothing names a system


def test_export_mixture_role_and_errors(run_dir, tmp_path):
    paths = H.export_sheet(run_dir, tmp_path / "m", n_per_system=2, seed=0, role="mixture")
    key = _rows(paths["key"])
    assert {r["system"] for r in key} == {"aus"} and {r["requested"] for r in key} == {"0 1"}
    with pytest.raises(ValueError, match="only 4 inter slot"):
        H.export_sheet(run_dir, tmp_path / "x", n_per_system=5)
    with pytest.raises(FileNotFoundError, match="cvae"):
        H.export_sheet(run_dir, tmp_path / "x", n_per_system=1, systems=["cvae"])
    with pytest.raises(ValueError, match="unknown role"):
        H.export_sheet(run_dir, tmp_path / "x", role="both")


# ----------------------------------------------------------------------------- scoring


@pytest.fixture()
def exported(run_dir, tmp_path):
    paths = H.export_sheet(run_dir, tmp_path / "sheet", n_per_system=3, seed=1)
    return paths, {r["id"]: r["system"] for r in _rows(paths["key"])}


def test_scores_means_table3_and_kappa(exported, tmp_path):
    paths, system_of = exported
    base = {"gt": 5, "aus": 4, "basic": 2}
    ids = sorted(system_of)
    a = _fill(paths["sheet"], tmp_path / "alice.csv", lambda i, c: base[system_of[i]])
    # bob: one point lower on the first poem of each system, and he skipped the last poem
    firsts = {min(i for i in ids if system_of[i] == s) for s in base}
    b = _fill(paths["sheet"], tmp_path / "bob.csv", lambda i, c: base[system_of[i]] - (i in firsts), drop=[ids[-1]])
    scores = H.score_sheets([a, b], paths["key"])
    means = scores.means.set_index(["system", "criterion"])
    # gt poems: (5 + 4)/2 = 4.5 on its first poem, 5 elsewhere (or alice alone on the skipped poem)
    assert means.loc[("gt", "fluency"), "mean"] == pytest.approx((4.5 + 5 + 5) / 3)
    assert means.loc[("basic", "overall"), "mean"] == pytest.approx((1.5 + 2 + 2) / 3)
    assert means.loc[("aus", "overall"), "poems"] == 3
    # deviations from 14.5 / 3: −1/3, +1/6, +1/6 → sample variance (1/9 + 2/36) / 2 = 1/12
    assert means.loc[("gt", "overall"), "std"] == pytest.approx(math.sqrt(1 / 12))
    pair = scores.kappa.iloc[0]
    assert (pair["rater_a"], pair["rater_b"], pair["poems"]) == ("alice", "bob", 8)
    assert 0 < pair["all"] < 1 and scores.mean_kappa() == pytest.approx(pair["all"])
    t3 = scores.table3()
    assert list(t3.columns) == ["Flu", "Coh", "Mea", "Aes", "Rel", "Overall"]
    assert t3.loc[("MixPoet-AUS", "paper (MixPoet)"), "Flu"] == "4.18"
    assert t3.loc[("GT (human)", "this kit"), "Flu"] == f"{(4.5 + 10) / 3:.2f}"
    assert scores.table().loc["Basic", "overall"].startswith("1.83 ± ")
    written = H.write_scores(scores, tmp_path / "out")
    assert all(p.is_file() for p in written.values())


def _one_bad_cell(sheet, out, column, value, row=2):
    with open(sheet, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    for r in rows[1:]:
        r[3:9] = ["3"] * 6
    rows[row - 1][rows[0].index(column)] = value
    with open(out, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return out


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("fluency", "6", "column 'fluency': '6' is not a whole number from 1 to 5"),
        ("overall", "", "column 'overall': '' is not a whole number"),
        ("relevance", "4.5", "column 'relevance': '4.5'"),
        ("coherence", "good", "column 'coherence': 'good'"),
        ("id", "P999", "column 'id': 'P999' is not in the key"),
        ("id", "P001", "column 'id': 'P001' appears twice"),
        ("poem", "别的诗", "column 'poem': '别的诗' differs from the key"),
    ],
)
def test_every_bad_cell_is_named_in_one_line(exported, tmp_path, column, value, message):
    paths, _ = exported
    bad = _one_bad_cell(paths["sheet"], tmp_path / "carol.csv", column, value, row=3)
    with pytest.raises(H.SheetError) as err:
        H.score_sheets([bad], paths["key"])
    text = str(err.value)
    assert text.startswith(f"{bad}:3: ") and message in text and "\n" not in text


def test_sheet_level_errors(exported, tmp_path):
    paths, _ = exported
    good = _one_bad_cell(paths["sheet"], tmp_path / "dan.csv", "fluency", "4")
    assert H.score_sheets([good], paths["key"]).kappa.empty  # one rater: no agreement to report
    assert H.read_ratings(good, H.read_key(paths["key"]))["score"].isin([3, 4]).all()
    no_col = tmp_path / "erin.csv"
    no_col.write_text("id,keyword,poem,fluency\nP001,春,x,3\n", encoding="utf-8")
    with pytest.raises(H.SheetError, match=r"erin.csv:1: missing column 'coherence'"):
        H.score_sheets([no_col], paths["key"])
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match="two sheets are named 'dan'"):
        H.score_sheets([good, _one_bad_cell(paths["sheet"], tmp_path / "b" / "dan.csv", "fluency", "4")], paths["key"])
    with pytest.raises(FileNotFoundError):
        H.score_sheets([tmp_path / "nobody.csv"], paths["key"])


def test_cli_export_and_score(run_dir, tmp_path, capsys):
    out = tmp_path / "he"
    assert cli.main(["human-eval", "export", "--run-dir", str(run_dir), "--out", str(out), "--n", "2"]) == 0
    assert "key.csv" in capsys.readouterr().out
    a = _fill(out / "sheet.csv", tmp_path / "r1.csv", lambda i, c: 1 + int(i[1:]) % 5)
    b = _fill(out / "sheet.csv", tmp_path / "r2.csv", lambda i, c: 1 + int(i[1:]) % 5)
    assert cli.main(["human-eval", "score", "--key", str(out / "key.csv"), str(a), str(b), "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "Table 3" in shown and "mean κ (weighted by shared poems): 1.000" in shown
    assert (out / "human_table3.csv").is_file()
    bad = _one_bad_cell(out / "sheet.csv", tmp_path / "r3.csv", "aesthetics", "0")
    assert cli.main(["human-eval", "score", "--key", str(out / "key.csv"), str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "r3.csv:2: column 'aesthetics': '0'" in err
