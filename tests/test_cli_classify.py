"""`mixpoet classify`: tags good lines, reports malformed ones by line number, one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from mixpoet_lib.cli import app as cli
from mixpoet_lib.config import get_profile
from mixpoet_lib.train.judges import ensure_judges


@pytest.fixture(scope="module")
def judge_dir(smoke_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    ensure_judges(smoke_data, get_profile("smoke"), run)
    return run / "checkpoints"


def test_classify_tags_and_reports(judge_dir, tmp_path, capsys):
    src = tmp_path / "poems.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"content": "床前明月光|疑是地上霜|举头望明月|低头思故乡"}, ensure_ascii=False),
                "{not json",
                json.dumps(
                    {"content": "秦时明月汉时关|万里长征人未还|但使龙城飞将在|不教胡马度阴山", "id": 7},
                    ensure_ascii=False,
                ),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "tagged.jsonl"
    code = cli.main(["classify", "--checkpoint", str(judge_dir), "--input", str(src), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "line 2:" in err and "2 poem(s) tagged, 1 malformed" in err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == [1, 3] and rows[1]["id"] == 7
    for r in rows:
        assert set(r["judge"]) == {"living", "era"}
        assert r["judge"]["living"]["name"] in ("military", "countryside", "other")
        assert sum(r["judge"]["era"]["probs"]) == pytest.approx(1.0, abs=1e-4)


def test_classify_bad_inputs(judge_dir, tmp_path, capsys):
    assert cli.main(["classify", "--checkpoint", str(tmp_path / "none"), "--input", str(tmp_path / "x.jsonl")]) == 1
    assert "does not exist" in capsys.readouterr().err
    src = tmp_path / "p.jsonl"
    src.write_text('{"content": "床前明月光|疑是地上霜|举头望明月|低头思故乡"}\n', encoding="utf-8")
    broken = tmp_path / "judge_era.pt"
    broken.write_bytes(b"not a checkpoint")
    assert cli.main(["classify", "--checkpoint", str(broken), "--input", str(src)]) == 1
    assert "cannot load judge checkpoint" in capsys.readouterr().err
    assert cli.main(["classify", "--checkpoint", str(judge_dir / "judge_living.pt"), "--input", str(src)]) == 0
