"""Parsing and validation of the raw sources, on small files the tests write and on the mirror."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixpoet_lib.data.corpora import (
    DataFormatError,
    Poem,
    SkipLog,
    label_table,
    load_ccpc,
    load_chinese_poetry,
    load_cqcf,
    normalised_key,
    quatrain_problem,
    split_paragraphs,
    to_simplified,
)

GOOD = {"label": "-1 1", "content": "细读养生主|长歌归去来|山僧借水品|溪父送琴材", "keywords": "山僧 长歌 归去 细读"}


def write_lines(path: Path, records: list, newline: str = "\n", bom: bool = False) -> Path:
    text = newline.join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records) + newline
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def test_cqcf_good_record(tmp_path):
    (poem,) = load_cqcf(write_lines(tmp_path / "a.json", [GOOD]))
    assert poem.lines == ("细读养生主", "长歌归去来", "山僧借水品", "溪父送琴材")
    assert poem.keywords == ("山僧", "长歌", "归去", "细读")
    assert poem.labels == (-1, 1) and poem.length == 5 and poem.origin == "a.json:1"


def test_crlf_bom_and_blank_lines_are_tolerated(tmp_path):
    path = write_lines(tmp_path / "b.json", [GOOD, "", GOOD], newline="\r\n", bom=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n\r\n" in path.read_bytes()
    assert len(load_cqcf(path)) == 2


@pytest.mark.parametrize(
    "record, needle",
    [
        ('{"label": "-1 1", "content": ', "malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"content": GOOD["content"], "keywords": "山僧"}), "missing field 'label'"),
        (json.dumps({**GOOD, "keywords": "山僧借水"}), "keyword '山僧借水' has 4 characters"),
        (json.dumps({**GOOD, "label": "-1 2"}), "factor 2 value 2 outside -1..1"),
        (json.dumps({**GOOD, "label": "3 0"}), "factor 1 value 3 outside -1..2"),
        (json.dumps({**GOOD, "label": "x 0"}), "is not an integer"),
        (json.dumps({**GOOD, "label": "0"}), "must be two integers"),
        (json.dumps({**GOOD, "content": "细读养生主|长歌归去来|山僧借水品"}), "not 4 lines"),
        (json.dumps({**GOOD, "content": "细读养生|长歌归去|山僧借水|溪父送琴"}), "line length not 5 or 7"),
        (json.dumps({**GOOD, "content": "细读养生主|长歌归去来|山僧借水品|溪父送琴材料"}), "different lengths"),
    ],
)
def test_cqcf_errors_name_file_line_and_value(tmp_path, record, needle):
    path = write_lines(tmp_path / "bad.json", [GOOD, record])
    with pytest.raises(DataFormatError) as err:
        load_cqcf(path)
    assert needle in str(err.value)
    assert str(err.value).startswith(f"{path}:2:")
    assert err.value.line == 2


def test_ccpc_skips_non_quatrains_but_rejects_bad_json(tmp_path):
    good = {"dynasty": "Tang", "author": "x", "title": "t", "content": GOOD["content"], "keywords": "山僧"}
    records = [
        good,
        {**good, "content": "细读养生主|长歌归去来"},
        {**good, "content": "细读养生□|长歌归去来|山僧借水品|溪父送琴材"},
    ]
    skips = SkipLog()
    poems = load_ccpc(write_lines(tmp_path / "c.json", records), skips)
    assert len(poems) == 1 and poems[0].labels == (-1, -1)
    assert dict(skips.counts) == {("ccpc", "not 4 lines"): 1, ("ccpc", "lost character □"): 1}
    assert skips.examples[("ccpc", "not 4 lines")] == "c.json:2"
    with pytest.raises(DataFormatError, match=r"c2.json:1: malformed JSON"):
        load_ccpc(write_lines(tmp_path / "c2.json", ["{oops"]), SkipLog())
    with pytest.raises(DataFormatError, match="keyword '山僧借' has 3 characters"):
        load_ccpc(write_lines(tmp_path / "c3.json", [{**good, "keywords": "山僧借"}]), SkipLog())


def test_chinese_poetry_split_convert_and_skip(tmp_path):
    items = [
        {"author": "李白", "title": "靜夜思", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
        {"author": "x", "title": "long", "paragraphs": ["一二三四五，六七八九十。"] * 3},
        {"author": "x", "title": "mixed", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月光，低頭思故鄉。"]},
    ]
    path = tmp_path / "poet.tang.0.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    skips = SkipLog()
    (poem,) = load_chinese_poetry(path, skips, "tang")
    assert poem.content == "床前明月光|疑是地上霜|举头望明月|低头思故乡"
    assert poem.keywords == () and poem.source == "tang" and poem.origin == "poet.tang.0.json:item 0"
    assert skips.total() == 2
    path.write_text(json.dumps([{"title": "no paragraphs"}]), encoding="utf-8")
    with pytest.raises(DataFormatError, match="item 0: missing field 'paragraphs'"):
        load_chinese_poetry(path, SkipLog(), "tang")
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(DataFormatError, match="malformed JSON"):
        load_chinese_poetry(path, SkipLog(), "tang")


def test_helpers():
    assert split_paragraphs(["秦川雄帝宅，函谷壯皇居。", "綺殿千尋起！離宮百雉餘？"]) == [
        "秦川雄帝宅",
        "函谷壯皇居",
        "綺殿千尋起",
        "離宮百雉餘",
    ]
    assert to_simplified("舉頭望明月") == "举头望明月"
    assert quatrain_problem(["床前明月光"] * 4) is None
    assert quatrain_problem(["床前明月,"] * 4) == "non-CJK character"
    a = Poem(("舉頭望明月",) * 4, ("明月",))
    b = Poem(("举头望明月",) * 4, ())
    assert normalised_key(a) == normalised_key(b)
    assert Poem.from_json(a.to_json()) == a


def test_real_cqcf_label_table_matches_spec(mirror_dir):
    poems = load_cqcf(mirror_dir / "mixpoet" / "cqcf_test_sample.json")
    assert label_table(poems) == {
        "poems": 590,
        "y1=-1": 221,
        "y1=0": 133,
        "y1=1": 119,
        "y1=2": 117,
        "y2=-1": 320,
        "y2=0": 141,
        "y2=1": 129,
        "both labelled": 49,
        "5-char": 256,
        "7-char": 334,
    }


def test_real_chinese_poetry_file_counts(mirror_dir):
    # SOURCES.md counts 45 five- and 86 seven-character quatrains in poet.tang.0.json (before □ filtering)
    skips = SkipLog()
    poems = load_chinese_poetry(mirror_dir / "chinese-poetry" / "全唐诗" / "poet.tang.0.json", skips, "tang")
    lost = skips.counts[("tang", "lost character □")] + skips.counts[("tang", "non-CJK character")]
    assert len(poems) + lost == 45 + 86
    assert all(p.length in (5, 7) for p in poems)
