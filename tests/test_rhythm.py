"""Tests of mixpoet_lib.data.rhythm: CRRD loading, tones, the 14-template recogniser and the quatrain rules."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from mixpoet_lib.data import rhythm as R

# `mirror_dir` (the raw-data mirror, skipping when absent) comes from tests/conftest.py.


@pytest.fixture(scope="module")
def crrd_dir(mirror_dir: Path) -> Path:
    return mirror_dir / "thu-aipoet" / "CRRD"


@pytest.fixture(scope="module")
def tr(crrd_dir: Path) -> R.ToneRhyme:
    return R.load_tone_rhyme(crrd_dir)


@pytest.fixture(scope="module")
def ccpc_test(mirror_dir: Path) -> list[dict]:
    path = mirror_dir / "thu-aipoet" / "CCPC" / "ccpc_test_v1.0.json"
    with path.open(encoding="utf-8") as fin:
        return [json.loads(line) for line in fin if line.strip()]


# A tiny hand-made resource: a = level only, b = oblique only, c = both (polyphonic), d = neither.
TINY = R.ToneRhyme.from_strings("ac", "bc", {"a": 1, "c": (3, 7), "e": 7})
SYM = {"P": "a", "Z": "b"}


def spell(template: str) -> str:
    """Write a P/Z template with the unambiguous characters a (P) and b (Z)."""
    return "".join(SYM[s] for s in template)


# ----------------------------------------------------------------------------- loading


def test_real_files_counts(tr: R.ToneRhyme, crrd_dir: Path) -> None:
    # The real files use CRLF, so this load also exercises CRLF handling.
    assert b"\r\n" in (crrd_dir / "pingshui.txt").read_bytes()
    assert len(tr.level_groups) == 30
    assert len(tr.oblique_groups) == 75
    assert tr.n_rhyme_entries == 2191
    assert len(tr.both) == 1841
    assert (len(tr.level), len(tr.oblique), len(tr.rhyme_classes)) == (9544, 13035, 2107)
    assert sum(len(c) > 1 for c in tr.rhyme_classes.values()) == 64  # characters with more than one distinct class
    assert {c for cs in tr.rhyme_classes.values() for c in cs} == set(range(1, 31))
    assert not any(ch.isspace() for ch in tr.level | tr.oblique)


def test_rhyme_classes_in_file_order(tr: R.ToneRhyme) -> None:
    # pingshui.txt lists 还 under 15 (line 1081) and then under 16 (line 1209).
    assert R.rhyme_classes_of("还", tr=tr) == (15, 16)
    assert R.rhyme_class("还", tr=tr) == 15
    assert R.rhyme_class("枝", tr=tr) == 4
    assert R.rhyme_class("流", tr=tr) == R.rhyme_class("楼", tr=tr) == 26
    assert R.rhyme_class("国", tr=tr) is None  # entering tone: no level rhyme class
    assert R.rhyme_class("间", tr=tr) is None  # in both tone files but missing from pingshui.txt


def write_crrd(folder: Path, level: str, oblique: str, rhymes: str, newline: str = "\n", bom: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("pingsheng.txt", level), ("zesheng.txt", oblique), ("pingshui.txt", rhymes)):
        data = text.replace("\n", newline).encode("utf-8")
        (folder / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return folder


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
def test_load_tolerates_crlf_bom_and_spaces(tmp_path: Path, newline: str, bom: bool) -> None:
    folder = write_crrd(
        tmp_path / "crrd", "东同 铜\n\n江窗\n", "董动\n", "东 1\n同  1\n 江\t3 \n\n东 1\n东 2\n", newline, bom
    )
    tr = R.load_tone_rhyme(folder)
    assert tr.level == frozenset("东同铜江窗")
    assert tr.oblique == frozenset("董动")
    assert tr.level_groups == ("东同铜", "江窗")
    assert tr.oblique_groups == ("董动",)
    assert dict(tr.rhyme_classes) == {"东": (1, 2), "同": (1,), "江": (3,)}
    assert tr.n_rhyme_entries == 5
    assert "\ufeff" not in tr.level and "\ufeff" not in tr.rhyme_classes


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("东", "'东'"),
        ("东 1 2", "'东 1 2'"),
        ("东西 1", "'东西 1'"),
        ("东 x", "'x'"),
        ("东 0", "'0'"),
        ("东 31", "'31'"),
        ("东 -1", "'-1'"),
        ("东 1.5", "'1.5'"),
    ],
)
def test_malformed_pingshui_line(tmp_path: Path, line: str, value: str) -> None:
    folder = write_crrd(tmp_path / "crrd", "东", "董", f"同 1\n\n{line}\n", "\r\n")
    with pytest.raises(ValueError, match=r"pingshui\.txt line 3") as err:
        R.load_tone_rhyme(folder)
    assert value in str(err.value)


@pytest.mark.parametrize("missing", ["pingsheng.txt", "zesheng.txt", "pingshui.txt"])
def test_missing_file(tmp_path: Path, missing: str) -> None:
    folder = write_crrd(tmp_path / "crrd", "东", "董", "东 1\n")
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        R.load_tone_rhyme(folder)


def test_default_loader_and_folder_search(
    mirror_dir: Path, crrd_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert R.find_crrd_dir(crrd_dir) == crrd_dir
    assert R.find_crrd_dir(mirror_dir) == crrd_dir
    assert R.find_crrd_dir(mirror_dir.parent) == crrd_dir  # a data folder holding raw/
    monkeypatch.setenv("MIXPOET_DATA_DIR", str(tmp_path / "empty-data"))  # nothing fetched there
    for mirror in (mirror_dir, mirror_dir.parent):
        monkeypatch.setenv("MIXPOET_MIRROR", str(mirror))
        assert R.find_crrd_dir() == crrd_dir
    first = R.default_tone_rhyme()
    assert first is R.default_tone_rhyme(mirror_dir)  # cached per folder
    assert R.tone_of("明") == "P"  # functions fall back to the default resource
    monkeypatch.delenv("MIXPOET_MIRROR")
    with pytest.raises(FileNotFoundError, match=r"run `mixpoet data fetch` .*MIXPOET_MIRROR"):
        R.find_crrd_dir()
    with pytest.raises(FileNotFoundError, match=r"not there .*run `mixpoet data fetch --data-dir "):
        R.find_crrd_dir(tmp_path)


# ----------------------------------------------------------------------------- characters


def test_tone_of_known_characters(tr: R.ToneRhyme) -> None:
    for ch in "白国石十竹黑月":  # entering-tone characters: oblique in CRRD, level in modern Mandarin
        assert R.tone_of(ch, tr=tr) == "Z", ch
    for ch in "明光前床头低乡":
        assert R.tone_of(ch, tr=tr) == "P", ch
    for ch in "思望看":  # polyphonic, in both files
        assert R.tone_of(ch, tr=tr) == "B", ch
    assert R.tone_of("一", tr=tr) == "?"  # CRRD leaves 一 out of both lists
    assert R.tone_of("x", tr=tr) == "?"
    assert R.tone_string("低头思故乡", tr=tr) == "PPBZP"


# ----------------------------------------------------------------------------- recogniser

SPEC_TEMPLATES_5 = {  # design §5.4 (official recogniser templates)
    0: ["PPPZZ", "PPZZZ", "ZPPZZ", "ZPZPZ", "PPZPZ"],
    1: ["ZZZPP", "PZZPP"],
    2: ["PPZZP", "ZPPZP", "PPPZP"],
    3: ["PZPPZ", "PZZPZ", "ZZPPZ", "ZZZPZ"],
}
# Characters 2-7 of a 7-character line: a head opposite to the 5-char template's 2nd symbol, then the
# 5-char template (written out by hand; these are the 14 checks of the official rhythm_tool.py).
SPEC_TEMPLATES_7 = {
    0: ["ZPPPZZ", "ZPPZZZ", "ZZPPZZ", "ZZPZPZ", "ZPPZPZ"],
    1: ["PZZZPP", "PPZZPP"],
    2: ["ZPPZZP", "ZZPPZP", "ZPPPZP"],
    3: ["PPZPPZ", "PPZZPZ", "PZZPPZ", "PZZZPZ"],
}


def test_template_tables_match_spec() -> None:
    assert {t: list(ts) for t, ts in R.TEMPLATES_5.items()} == SPEC_TEMPLATES_5
    assert {t: list(ts) for t, ts in R.TEMPLATES_7.items()} == SPEC_TEMPLATES_7
    assert sum(map(len, R.TEMPLATES_5.values())) == sum(map(len, R.TEMPLATES_7.values())) == 14


@pytest.mark.parametrize(("ltype", "template"), [(t, s) for t, ts in SPEC_TEMPLATES_5.items() for s in ts])
def test_each_5char_template(ltype: int, template: str) -> None:
    assert R.line_type(spell(template), tr=TINY) == ltype


@pytest.mark.parametrize(("ltype", "template"), [(t, s) for t, ts in SPEC_TEMPLATES_7.items() for s in ts])
def test_each_7char_template(ltype: int, template: str) -> None:
    # Character 1 is ignored: level, oblique, polyphonic or unknown, the result is the same.
    for first in "abcd":
        assert R.line_type(first + spell(template), tr=TINY) == ltype


def test_first_match_wins_with_polyphonic_characters() -> None:
    # a=P, b=Z, c=both. 'acbab' = P?ZPZ matches PPZPZ (type 0) and PZZPZ (type 3): type 0 wins.
    assert R.line_type("acbab", tr=TINY) == 0
    assert R.line_type("abbab", tr=TINY) == 3  # the same line without the polyphonic character
    # 'bbbac' = ZZZP? matches ZZZPP (type 1) and ZZZPZ (type 3): type 1 wins.
    assert R.line_type("bbbac", tr=TINY) == 1
    assert R.line_type("bbbab", tr=TINY) == 3
    # 'aabbc' matches PPZZZ (0) and PPZZP (2): type 0 wins; all-polyphonic lines are type 0.
    assert R.line_type("aabbc", tr=TINY) == 0
    assert R.line_type("ccccc", tr=TINY) == 0
    assert R.line_type("dcccccc", tr=TINY) == 0
    # 7 characters: 'd'+'cbbbac' = ?ZZZP? after the ignored first character -> types 1 and 3 -> 1.
    assert R.line_type("dcbbbac", tr=TINY) == 1


def reference_line_type(tones: str, order: tuple[int, ...]) -> int:
    """Brute-force recogniser over a tone string (P/Z/B/?) with a given check order."""
    table = SPEC_TEMPLATES_5 if len(tones) == 5 else SPEC_TEMPLATES_7
    for t in order:
        for tpl in table[t]:
            if all(x == s or x == "B" for x, s in zip(tones, tpl)):
                return t
    return -1


def test_check_order_of_types_2_and_3_never_matters() -> None:
    # The official code checks 0, 1, 3, 2; a natural reading lists 0, 1, 2, 3. Exhaustively, no tone string makes
    # these orders disagree (a line matching both 2 and 3 ends in two polyphonic characters and then
    # already matches a type-0 template), and line_type agrees with the brute-force reference.
    chars = {"P": "a", "Z": "b", "B": "c", "?": "d"}
    for n in (5, 6):
        for tones in itertools.product("PZB?", repeat=n):
            s = "".join(tones)
            official, listed = reference_line_type(s, (0, 1, 3, 2)), reference_line_type(s, (0, 1, 2, 3))
            assert official == listed, s
            line = "".join(chars[x] for x in s)
            assert R.line_type(line if n == 5 else "d" + line, tr=TINY) == official, s


def test_unknown_characters_match_nothing() -> None:
    assert R.line_type("aaabd", tr=TINY) == -1  # PPPZ? : the last char is in neither list
    assert R.line_type("aaabb", tr=TINY) == 0
    assert R.line_type("daaabb", tr=TINY) == -2  # 6 characters
    assert R.line_type("dbaaabb", tr=TINY) == 0  # 7 characters: an unknown first character is ignored
    assert R.line_type("bdaaabb", tr=TINY) == -1  # ... but not in position 2


@pytest.mark.parametrize("line", ["", "a", "abab", "ababab", "abababab", "床前明月光啊"])
def test_wrong_length(line: str) -> None:
    assert R.line_type(line, tr=TINY) == -2


@pytest.mark.parametrize(
    ("line", "tones", "ltype"),
    [
        # famous lines; hand check: PPPZP = PPPZP (type 2); ZPBPZ: type-0 ZPZPZ with 望 as Z; ...
        ("床前明月光", "PPPZP", 2),
        ("疑是地上霜", "PZZZP", -1),  # no template ends Z-Z-P after P-Z
        ("举头望明月", "ZPBPZ", 0),
        ("低头思故乡", "PPBZP", 2),  # PPZZP with 思 as Z
        ("白日依山尽", "ZZPPZ", 3),
        ("黄河入海流", "PPZZP", 2),
        ("更上一层楼", "BZ?PP", -1),  # 一 is in neither list
        ("春眠不觉晓", "PPBZZ", 0),  # PPPZZ (不 as P) is checked first
        ("渭城朝雨浥轻尘", "ZPPZZBP", 1),  # drop 渭: PPZZ?P = PPZZPP (type-1 head P + PZZPP)
        ("劝君更尽一杯酒", "ZPBZ?PZ", -1),
    ],
)
def test_line_type_famous_lines(tr: R.ToneRhyme, line: str, tones: str, ltype: int) -> None:
    assert R.tone_string(line, tr=tr) == tones
    assert R.line_type(line, tr=tr) == ltype


# (poem index in ccpc_test_v1.0.json, line number 0-3, text, tone string, type), derived by hand:
CCPC_LINES = [
    (0, 0, "猛上临光殿", "ZZBPZ", 3),  # every type-0 template has P in position 2: ZZPPZ with 临 as P
    (0, 1, "生擒归命侯", "PPPZP", 2),  # exactly PPPZP
    (0, 2, "师心无学术", "PPPZZ", 0),  # exactly PPPZZ
    (0, 3, "与子失贻谋", "BZZPP", 1),  # ZZZPP with 与 as Z
    (1, 0, "送子目力短", "ZZZZZ", -1),  # all oblique: no template
    (1, 3, "子也当念予", "ZZBZB", -1),  # ZZ-start templates ZZZPP/ZZPPZ/ZZZPZ all need P at 念 (Z)
    (4, 2, "东溟一杯水", "PB?PZ", -1),  # 一 in neither list
    (6, 0, "樱桃何累累", "PPPBB", 0),  # PPPZZ with both 累 as Z, before PPPZP (type 2)
    (4976, 0, "江城无地可开颜", "PPPZZPP", 1),  # drop 江: PPZZPP = head P + PZZPP
    (4977, 1, "想见当年叩谏时", "ZZBPZZP", 2),  # drop 想: ZBPZZP = head Z + PPZZP (当 as P)
    (4979, 1, "百年老子一裘披", "ZPZZ?PP", -1),  # 一 at position 5
    (4980, 0, "一片珠帘障玉楼", "?ZPPBZP", 2),  # 一 is ignored at position 1: ZPPBZP = Z + PPZZP
]


@pytest.mark.parametrize(("poem", "row", "line", "tones", "ltype"), CCPC_LINES)
def test_line_type_ccpc_lines(
    tr: R.ToneRhyme, ccpc_test: list[dict], poem: int, row: int, line: str, tones: str, ltype: int
) -> None:
    assert ccpc_test[poem]["content"].split("|")[row] == line
    assert R.tone_string(line, tr=tr) == tones
    assert R.line_type(line, tr=tr) == ltype


# ----------------------------------------------------------------------------- poem rules


def test_position_templates_match_spec_table() -> None:
    table = {  # design §5.4: (5-character, 7-character)
        0: ((-1, 0, 0, 1, 1), (-1, 1, -1, 0, 0, 1, 1)),
        1: ((-1, 1, 1, 0, 0), (-1, 0, -1, 1, 1, 0, 0)),
        2: ((0, 0, 1, 1, 0), (-1, 1, 0, 0, 1, 1, 0)),
        3: ((-1, 1, 0, 0, 1), (-1, 0, -1, 1, 0, 0, 1)),
    }
    for t, (five, seven) in table.items():
        assert R.position_template(t, 5) == five
        assert R.position_template(t, 7) == seven
        # 7 characters = a free position, a head opposite to the 5-char 2nd position, the 5-char template
        assert seven == (-1, 1 - five[1], *five)
    with pytest.raises(ValueError, match="6"):
        R.position_template(0, 6)
    with pytest.raises(ValueError, match="4"):
        R.position_template(4, 5)


def test_poem_patterns() -> None:
    assert dict(R.POEM_PATTERNS) == {0: (0, 1, 3, 2), 1: (1, 2, 0, 1), 2: (2, 1, 3, 2), 3: (3, 2, 0, 1)}
    assert R.poem_pattern(3) == (3, 2, 0, 1)
    with pytest.raises(ValueError, match="-1"):
        R.poem_pattern(-1)


XIANGSI = "红豆生南国|春来发几枝|愿君多采撷|此物最相思"  # 王维《相思》, as in ccpc_test_v1.0.json


def test_check_poem_passing_quatrain(tr: R.ToneRhyme, ccpc_test: list[dict]) -> None:
    # By hand: 红豆生南国 PZPPZ = type 3 (exact PZPPZ), so the poem must be (3, 2, 0, 1);
    # 春来发几枝 PPZBP matches PPZZP (type 2); 愿君多采撷 ZPPZZ (type 0); 此物最相思 ZZZBB matches
    # ZZZPP (type 1; no type-0 template starts ZZ?). Rhyme: 国 is an entering (oblique) tone with no
    # rhyme class, so the class comes from line 2's 枝 (class 4, 支); line 4's 思 is listed under 4.
    assert any(p["content"] == XIANGSI for p in ccpc_test)
    lines = XIANGSI.split("|")
    assert [R.tone_string(x, tr=tr) for x in lines] == ["PZPPZ", "PPZBP", "ZPPZZ", "ZZZBB"]
    report = R.check_poem(lines, tr=tr)
    assert report.types == report.expected == (3, 2, 0, 1)
    assert report.rhyme_class == 4
    assert report.pattern_ok and report.rhyme_ok and report.ok
    assert R.check_poem(XIANGSI, tr=tr) == report  # '|'-joined input


def test_check_poem_failing_quatrains(tr: R.ToneRhyme) -> None:
    # 登鹳雀楼: line 4 holds 一 (in neither list) -> unrecognised; rhyme from line 2 (流, 26) and 楼 is 26.
    report = R.check_poem(["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"], tr=tr)
    assert report.types == (3, 2, 0, -1) and report.expected == (3, 2, 0, 1)
    assert report.rhyme_class == 26 and report.rhyme_ok
    assert not report.pattern_ok and not report.ok
    # 江雪 rhymes in the oblique (entering) tone: no line-1/line-2 rhyme class, and the pattern fails too.
    report = R.check_poem("千山鸟飞绝|万径人踪灭|孤舟蓑笠翁|独钓寒江雪", tr=tr)
    assert report.types == (0, 3, 2, 3) and report.expected == (0, 1, 3, 2)
    assert report.rhyme_class is None
    assert not report.rhyme_ok and not report.pattern_ok and not report.ok
    # 静夜思: line 2 疑是地上霜 is unrecognised (-1), but it rhymes (光/霜/乡 are all class 22).
    report = R.check_poem("床前明月光|疑是地上霜|举头望明月|低头思故乡", tr=tr)
    assert report.types == (2, -1, 0, 2) and report.rhyme_class == 22
    assert report.rhyme_ok and not report.pattern_ok


def test_check_poem_odd_input() -> None:
    report = R.check_poem(["aaabb", "abab", "", "aaabbbbb"], tr=TINY)
    assert report.types == (0, -2, -2, -2)
    assert report.expected == (0, 1, 3, 2)
    assert not report.ok and not report.pattern_ok
    report = R.check_poem(["", "", "", ""], tr=TINY)
    assert report.types == (-2,) * 4 and report.expected is None and report.rhyme_class is None
    assert not report.ok
    # mixed lengths never pass, even if every line has the expected type
    mixed = R.check_poem(["aabba", "dabbbaa", "abaab", "aabba"], tr=TINY)
    assert mixed.types == mixed.expected == (2, 1, 3, 2) and mixed.rhyme_ok
    assert not mixed.pattern_ok and not mixed.ok
    with pytest.raises(ValueError, match="got 3"):
        R.check_poem(["aaabb", "aaabb", "aaabb"], tr=TINY)
    with pytest.raises(ValueError, match="got 5"):
        R.check_poem("a|b|c|d|e", tr=TINY)


def test_rhyme_with_tiny_resource() -> None:
    # classes: a -> 1, c -> (3, 7), e -> 7; b and d have none.
    assert R.rhyme_class("c", tr=TINY) == 3 and R.rhyme_class("b", tr=TINY) is None
    assert R.rhyme_class_for_poem(["bbbba", "bbbbc"], tr=TINY) == 1
    assert R.rhyme_class_for_poem(["bbbbb", "bbbbc", "", ""], tr=TINY) == 3  # falls back to line 2
    assert R.rhyme_class_for_poem(["bbbbd", "bbbbb"], tr=TINY) is None
    assert R.rhyme_class_for_poem(["", "bbbbe"], tr=TINY) == 7
    # a polyphonic rhyme character matches any of its listed classes: poem class 7 (from e), line 2 ends
    # in c (3, 7), line 4 in e: rhyme ok; the pattern is checked separately.
    assert R.check_poem(["bbbbe", "bbbbc", "bbbbb", "bbbbe"], tr=TINY).rhyme_ok
    assert R.check_poem(["bbbbe", "bbbba", "bbbbb", "bbbbe"], tr=TINY).rhyme_ok is False  # a is class 1
    assert R.check_poem(["bbbbe", "bbbbe", "bbbbb", "bbbbd"], tr=TINY).rhyme_ok is False  # d has none
    # a fully synthetic regular quatrain: type 2 line 1 -> (2, 1, 3, 2); all rhymes in class 7
    poem = ["aabbe", "bbbae", "abaab", "aabbe"]
    assert [R.tone_string(x, tr=TINY) for x in poem] == ["PPZZ?", "ZZZP?", "PZPPZ", "PPZZ?"]
    tiny = R.ToneRhyme.from_strings("ace", "bc", {"a": 1, "c": (3, 7), "e": 7})
    assert R.check_poem(poem, tr=tiny).ok


def test_ccpc_test_regression(tr: R.ToneRhyme, ccpc_test: list[dict]) -> None:
    # Regression numbers for the whole CCPC test split (9,976 quatrains) under these rules.
    reports = [R.check_poem(p["content"], tr=tr) for p in ccpc_test]
    assert len(reports) == 9976
    assert sum(r.ok for r in reports) == 3690
    assert sum(r.ok for r, p in zip(reports, ccpc_test) if len(p["content"]) == 23) == 1416


# ----------------------------------------------------------------------------- the reader's check


def test_check_verse_on_real_quatrains(tr: R.ToneRhyme) -> None:
    # 登鹳雀楼 fails the generator's check only because CRRD leaves out 一; read as oblique, 更上一层楼 is BBZPP,
    # type 1 as the pattern (3, 2, 0, 1) needs, and 流/楼 share class 26.
    report = R.check_verse("白日依山尽|黄河入海流|欲穷千里目|更上一层楼", tr=tr)
    assert report.ok and report.patterns == (3,) and report.rhymes == {26} and report.types[3] == {1}
    # 相思: the polyphonic 思 makes line 4 fit types 1 and 3; the reader takes the one the pattern needs
    report = R.check_verse(XIANGSI, tr=tr)
    assert report.ok and report.types[3] == {1, 3} and report.rhymes == {4}
    # 江雪 rhymes in the oblique tone and breaks the pattern; 静夜思 rhymes but line 2 fits no template
    assert R.check_verse("千山鸟飞绝|万径人踪灭|孤舟蓑笠翁|独钓寒江雪", tr=tr).failures == ("pattern", "oblique rhyme")
    report = R.check_verse("床前明月光|疑是地上霜|举头望明月|低头思故乡", tr=tr)
    assert report.failures == ("irregular line",) and report.rhyme_ok and not report.pattern_ok


def test_check_verse_tones_and_rhyme_groups() -> None:
    # d is in neither list: it fits both tones for the reader (the generator's recogniser matches it with none)
    assert R.verse_line_types("aaabd", tr=TINY) == {0, 2} and R.line_type("aaabd", tr=TINY) == -1
    assert R.verse_tone("一", tr=TINY) == "Z" and R.verse_tone("d", tr=TINY) == "?"
    # the 30 lines of pingsheng.txt are the rhyme groups: a level character without a pingshui.txt entry takes
    # its group's class (line 2 here: class 2)
    groups = ("a", "ef", *(chr(0x4E00 + i) for i in range(28)))
    tr = R.ToneRhyme(frozenset("".join(groups)), frozenset("b"), {"a": (1,)}, level_groups=groups)
    assert R.verse_rhyme_classes("f", tr=tr) == {2} and R.rhyme_classes_of("f", tr=tr) == ()
    assert R.verse_rhyme_classes("a", tr=tr) == {1} and R.verse_rhyme_classes("b", tr=tr) == frozenset()
    report = R.check_verse(["aaabb", "bbbaf", "abaab", "aabbe"], tr=tr)  # lines 2 and 4 rhyme on group 2 only
    assert report.ok and report.rhymes == {2}
    assert R.check_poem(["aaabb", "bbbaf", "abaab", "aabbe"], tr=tr).rhyme_ok is False
    mixed = R.check_verse(["aaabb", "bbbaf", "abaab", "aabbeee"], tr=tr)
    assert mixed.failures == ("shape",) and not mixed.patterns
    with pytest.raises(ValueError, match="got 3"):
        R.check_verse(["aaabb", "aaabb", "aaabb"], tr=tr)


def test_check_verse_ccpc_test_regression(tr: R.ToneRhyme, ccpc_test: list[dict]) -> None:
    # the reader's check passes 6,974 of the 9,976 CCPC test quatrains (the generator's check: 3,690)
    assert sum(R.check_verse(p["content"], tr=tr).ok for p in ccpc_test) == 6974


# ----------------------------------------------------------------------------- vocabulary masks


def test_tone_masks_and_bans() -> None:
    tiny = R.ToneRhyme.from_strings("明思Ｑ", "月思", {"明": 23, "思": (4,), "枝": 4, "月": 30})
    vocab = ["<PAD>", "<B>", "<E>", "UNK", "明", "月", "思", "一", "Ｑ", "明月", "枝"]
    masks = R.tone_masks(vocab, tr=tiny)
    assert set(masks) == {"level", "oblique", "both"}
    as_list = {k: [vocab[i] for i in np.flatnonzero(v)] for k, v in masks.items()}
    assert as_list == {"level": ["明", "思"], "oblique": ["月", "思"], "both": ["思"]}  # Ｑ is not CJK
    assert all(m.dtype == bool and m.shape == (len(vocab),) for m in masks.values())
    ban = {v: [vocab[i] for i in np.flatnonzero(R.tone_ban_mask(masks, v))] for v in (0, 1, -1)}
    assert ban == {0: ["月", "思"], 1: ["明", "思"], -1: []}  # polyphonic 思 banned at both; 一 never
    with pytest.raises(ValueError, match="2"):
        R.tone_ban_mask(masks, 2)
    assert [vocab[i] for i in np.flatnonzero(R.rhyme_mask(vocab, 4, tr=tiny))] == ["思", "枝"]
    assert not R.rhyme_mask(vocab, 5, tr=tiny).any()


def test_tone_masks_real(tr: R.ToneRhyme) -> None:
    vocab = ["<B>", "明", "月", "思", "一", "枝", "还"]
    masks = R.tone_masks(vocab, tr=tr)
    assert masks["level"].tolist() == [False, True, False, True, False, True, True]
    assert masks["oblique"].tolist() == [False, False, True, True, False, False, False]
    assert R.rhyme_mask(vocab, 16, tr=tr).tolist() == [False] * 6 + [True]  # 还's second class
