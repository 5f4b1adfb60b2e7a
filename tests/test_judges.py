"""The independent evaluation models: factor judges (train.judges), the character LM (train.charlm) and their shared
fitting loop (train.supervised) (design §6.3–6.4)."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mixpoet_lib import checkpoints as ckpt
from mixpoet_lib._util import seed_everything
from mixpoet_lib.cli.classify import classify_jsonl
from mixpoet_lib.config import FACTOR_NAMES, PhaseConfig, get_profile
from mixpoet_lib.data.vocab import BOS, EOS, SPECIALS, UNK, Vocab
from mixpoet_lib.models import judges as NJ
from mixpoet_lib.train import charlm as L
from mixpoet_lib.train import judges as J
from mixpoet_lib.train import supervised as S

# `smoke_data` (the smoke profile's prepared dataset) comes from tests/conftest.py.
SMOKE = get_profile("smoke")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run these small models single-threaded: on a busy 2-core machine torch's default of 2 intra-op threads
    made this module ~25× slower (292 s instead of 12 s); the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("judge_run")


@pytest.fixture(scope="module")
def smoke_judges(smoke_data, run_dir):
    return J.ensure_judges(smoke_data, SMOKE, run_dir)


@pytest.fixture(scope="module")
def smoke_lm(smoke_data, run_dir):
    return L.ensure_lm(smoke_data, SMOKE, run_dir)


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


# ----------------------------------------------------------------------------- encoding


def test_encode_poem_layout():
    v = Vocab(SPECIALS + tuple("春风秋月"))
    assert NJ.encode_poem(v, "春风|秋月") == [4, 5, EOS, 6, 7]  # <E> ends every line but the last
    assert NJ.encode_poem(v, ["春风", "秋雪"], bos=True, eos=True) == [BOS, 4, 5, EOS, 6, UNK, EOS]


def test_encode_arrays_equals_text_encoding(smoke_data):
    poems = [p.content for p in smoke_data.poems("cqcf_test")]
    arrays = smoke_data.arrays("cqcf_test")
    for bos, eos in ((False, False), (True, True)):
        tok_a, len_a = NJ.encode_arrays(arrays, bos, eos)
        tok_t, len_t = NJ.encode_texts(smoke_data.vocab, poems, bos, eos)
        assert torch.equal(tok_a, tok_t) and torch.equal(len_a, len_t)


# ----------------------------------------------------------------------------- judges


def test_smoke_judges_run_end_to_end(smoke_judges, smoke_data, run_dir):
    assert set(smoke_judges) == set(FACTOR_NAMES)
    for factor, model in smoke_judges.items():
        rep = model.report
        n = len(model.classes)
        cm = np.array(rep["test"]["confusion"])
        assert cm.shape == (n, n)
        assert (
            cm.sum()
            == rep["test"]["n"]
            == sum(p.labels[FACTOR_NAMES.index(factor)] >= 0 for p in smoke_data.poems("cqcf_test"))
        )
        assert 0.0 <= rep["test"]["accuracy"] <= 1.0 and math.isfinite(rep["test"]["macro_f1"])
        assert isinstance(model, NJ.NgramJudge) and SMOKE.eval.judge_kind == "ngram"
        assert rep["steps"] == len(SMOKE.eval.judge_l2) == len(rep["history"])
        assert rep["valid"]["l2"] in SMOKE.eval.judge_l2
        assert rep["valid"]["macro_f1"] == max(h["valid_macro_f1"] for h in rep["history"])
        ck = torch.load(ckpt.judge_path(run_dir, factor), map_location="cpu", weights_only=True)
        assert ck["factor"] == factor and ck["report"]["test"] == rep["test"]
    poems = [p.content for p in smoke_data.poems("cqcf_test")[:5]]
    poems.append(["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"])  # a list of lines works too
    out = J.classify(smoke_judges, poems)
    assert len(out) == len(poems)
    for row in out:
        for factor, model in smoke_judges.items():
            probs = row[factor]["probs"]
            assert len(probs) == len(model.classes) and all(math.isfinite(x) for x in probs)
            assert sum(probs) == pytest.approx(1.0, abs=1e-5)
            assert row[factor]["label"] == int(np.argmax(probs))
            assert row[factor]["name"] == model.classes[row[factor]["label"]]
    with pytest.raises(ValueError, match="no characters"):
        J.classify(smoke_judges, ["|||"])


def test_judge_checkpoint_is_reused_and_equal(smoke_judges, smoke_data, run_dir):
    paths = {f: ckpt.judge_path(run_dir, f) for f in FACTOR_NAMES}
    stamps = {f: p.stat().st_mtime_ns for f, p in paths.items()}
    again = J.ensure_judges(smoke_data, SMOKE, run_dir)
    assert {f: p.stat().st_mtime_ns for f, p in paths.items()} == stamps  # loaded, not retrained
    poems = [p.content for p in smoke_data.poems("cqcf_valid")[:20]]
    for f in FACTOR_NAMES:
        assert _state_equal(again[f], smoke_judges[f])
    assert J.classify(again, poems) == J.classify(smoke_judges, poems)


def test_judge_retrains_when_settings_change(smoke_judges, smoke_data, tmp_path):
    """The n-gram judge is deterministic, so its key holds no seed: another training seed reuses it; another L2
    grid or the BiGRU retrains; an unreadable file is retrained, not fatal."""
    J.ensure_judges(smoke_data, SMOKE, tmp_path, factors=("era",))
    path = ckpt.judge_path(tmp_path, "era")
    before = path.stat().st_mtime_ns
    J.ensure_judges(smoke_data, SMOKE, tmp_path, seed=SMOKE.seed + 1, factors=("era",))
    assert path.stat().st_mtime_ns == before and "seed" not in torch.load(path, weights_only=True)["key"]
    grid = dataclasses.replace(SMOKE, eval=dataclasses.replace(SMOKE.eval, judge_l2=(1e-3,)))
    J.ensure_judges(smoke_data, grid, tmp_path, factors=("era",))
    assert torch.load(path, weights_only=True)["key"]["l2"] == [1e-3]
    bigru = dataclasses.replace(SMOKE, eval=dataclasses.replace(SMOKE.eval, judge_kind="bigru"))
    J.ensure_judges(smoke_data, bigru, tmp_path, seed=SMOKE.seed + 1, factors=("era",))
    assert torch.load(path, weights_only=True)["key"]["seed"] == SMOKE.seed + 1
    assert isinstance(ckpt.load_judge(path), NJ.JudgeClassifier)
    path.write_bytes(b"not a checkpoint")
    J.ensure_judges(smoke_data, SMOKE, tmp_path, factors=("era",))
    assert torch.load(path, weights_only=True)["key"]["judge"] == "ngram"
    with pytest.raises(ValueError, match="judge_kind"):
        dataclasses.replace(SMOKE.eval, judge_kind="cnn")
    with pytest.raises(ValueError, match="judge_l2"):
        dataclasses.replace(SMOKE.eval, judge_l2=())


# ----------------------------------------------------------------------------- the n-gram judge

NGRAM_VOCAB = Vocab(SPECIALS + tuple("春风秋月花"))  # ids 4..8


def _ngram(n_bigrams: int = 2) -> NJ.NgramJudge:
    """A judge knowing the pairs 春风 (4·9 + 5 = 41) and 风秋 (5·9 + 6 = 51); idf 1 except 花 (id 8: 2)."""
    model = NJ.NgramJudge(NGRAM_VOCAB, "era", n_bigrams)
    model.bigram_keys.copy_(torch.tensor([41, 51][:n_bigrams]))
    model.idf[8] = 2.0
    return model


def test_ngram_features_by_hand():
    """'春风|风秋花' → characters 春 风 风 秋 花 and the known pairs 春风, 风秋 (秋花 is unknown; 风|风 crosses a line
    end): tf·idf = 春 1, 风 2, 秋 1, 花 2, 春风 1, 风秋 1, norm √12; padding and specials are no features."""
    model = _ngram()
    tok, ln = model.encode(["春风|风秋花", "月"])
    x = model.features(tok).to_dense()
    want = torch.zeros(2, len(NGRAM_VOCAB) + 2)
    want[0, [4, 5, 6, 8, 9, 10]] = torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0, 1.0]) / math.sqrt(12)
    want[1, 7] = 1.0
    assert torch.allclose(x, want)
    with torch.no_grad():
        model.out.weight.copy_(torch.arange(2 * x.shape[1], dtype=torch.float32).view(2, -1))
        model.out.bias.copy_(torch.tensor([0.5, -0.5]))
    assert torch.allclose(model(tok, ln), want @ model.out.weight.T + model.out.bias)
    assert torch.equal(_ngram(0).features(tok).to_dense()[:, 9:], torch.zeros(2, 0))  # no bigrams known


def test_ngram_judge_counts_its_features_on_the_right_poems():
    """Bigrams: pairs of ≥ NGRAM_MIN_DF (2) training poems, sorted; idf from the pool; characters seen in fewer than
    2 training poems get idf 0."""
    train, _ = NJ.encode_texts(NGRAM_VOCAB, ["春风秋", "春风|月", "风秋|秋月"], False, False)
    pool, _ = NJ.encode_texts(NGRAM_VOCAB, ["春风", "花", "花月", "秋"], False, False)
    model = J.ngram_judge(NGRAM_VOCAB, "living", train, pool)
    assert model.bigram_keys.tolist() == [41, 51]  # 春风 ×2, 风秋 ×2; 秋月 once
    idf = model.idf.tolist()
    n = 4  # pool poems; df: 春 1, 风 1, 秋 1, 月 1, 花 2; 春风 1, 风秋 0

    def want(df: int) -> float:
        return math.log((n + 1) / (df + 1)) + 1

    assert idf[:4] == [0.0] * 4  # specials are never counted
    assert idf[4:8] == pytest.approx([want(1)] * 4)  # 春 2, 风 3, 秋 2, 月 2 training poems
    assert idf[8] == 0.0  # 花: in no training poem (though in two pool poems)
    assert idf[9:] == pytest.approx([want(1), want(0)])


def test_fit_ngram_learns_a_separable_task_and_keeps_the_best_strength():
    vocab, sets = _synthetic_task()
    model = J.ngram_judge(vocab, "living", sets["train"][0], sets["test"][0])
    fit = J.fit_ngram(model, sets["train"], sets["valid"], (1.0, 1e-4))
    assert [h["l2"] for h in fit["history"]] == [1.0, 1e-4] and fit["steps"] == 2
    first_best = max(fit["history"], key=lambda h: h["valid_macro_f1"])  # max() keeps the first of equal scores
    assert fit["best"]["l2"] == first_best["l2"] and fit["best"]["step"] == first_best["step"]
    assert fit["history"][0]["train_loss"] > fit["history"][1]["train_loss"]  # the stronger L2 fits less
    kept = J.evaluate_classifier(model, *sets["valid"])
    assert (kept["accuracy"], kept["macro_f1"]) == (fit["best"]["accuracy"], fit["best"]["macro_f1"])
    ev = J.evaluate_classifier(model, *sets["test"])
    assert ev["accuracy"] >= 0.95 and ev["macro_f1"] >= 0.95 and not model.training
    again = J.ngram_judge(vocab, "living", sets["train"][0], sets["test"][0])
    J.fit_ngram(again, sets["train"], sets["valid"], (1.0, 1e-4))
    assert _state_equal(again, model)  # deterministic: no seed


def _synthetic(n: int, rng: np.random.Generator) -> tuple[list[str], list[int]]:
    """5-character quatrains of filler characters; class k hides 2-4 of its marker characters somewhere."""
    markers = ("兵戈", "田桑", "月花")
    filler = list("之乎者也云山水风雨天日人心春秋")
    poems, labels = [], []
    for _ in range(n):
        k = int(rng.integers(3))
        chars = list(rng.choice(filler, 20))
        for pos in rng.choice(20, int(rng.integers(2, 5)), replace=False):
            chars[pos] = markers[k][int(rng.integers(2))]
        poems.append("|".join("".join(chars[i : i + 5]) for i in range(0, 20, 5)))
        labels.append(k)
    return poems, labels


def _synthetic_task() -> tuple[Vocab, dict[str, tuple[torch.Tensor, ...]]]:
    """The vocabulary and encoded train / valid / test sets (300 / 60 / 150 poems) of :func:`_synthetic`."""
    rng = np.random.default_rng(0)
    vocab = Vocab(SPECIALS + tuple("兵戈田桑月花之乎者也云山水风雨天日人心春秋"))
    sets = {}
    for name, n in (("train", 300), ("valid", 60), ("test", 150)):
        poems, labels = _synthetic(n, rng)
        sets[name] = (*NJ.encode_texts(vocab, poems, False, False), torch.tensor(labels))
    return vocab, sets


def test_judge_learns_a_separable_task():
    vocab, sets = _synthetic_task()
    seed_everything(0)
    model = NJ.JudgeClassifier(vocab, "living", emb=16, hidden=16)
    phase = PhaseConfig(batch_size=32, epochs=8, lr_max=5e-3, warmup_steps=10)
    fit = J.fit_classifier(model, sets["train"], sets["valid"], S.FitSettings(phase, seed=0, desc="judge"))
    assert fit["steps"] == 8 * 10
    ev = J.evaluate_classifier(model, *sets["test"])
    assert ev["accuracy"] >= 0.95 and ev["macro_f1"] >= 0.95


def _tiny_judge(seed: int = 0) -> tuple[NJ.JudgeClassifier, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    vocab = Vocab(SPECIALS + tuple("兵戈田桑月花之乎者也云山水风雨天日人心春秋"))
    poems, _ = _synthetic(12, rng)
    seed_everything(seed)
    model = NJ.JudgeClassifier(vocab, "living", emb=8, hidden=8)
    return model, *NJ.encode_texts(vocab, poems, False, False)


def test_virtual_adversarial_loss_by_its_definition():
    """ε = 0 (no dropout): the perturbed prediction is the clean one, KL 0. ε > 0: the power-iteration direction
    raises the KL more than random directions of the same norm do, it leaves the padding alone, and the loss
    trains the embeddings and the network (not the fixed target)."""
    model, tok, ln = _tiny_judge()
    model.eval()
    assert J.virtual_adversarial_loss(model, tok, ln, eps=0.0).item() == pytest.approx(0.0, abs=1e-7)
    torch.manual_seed(1)
    adv = J.virtual_adversarial_loss(model, tok, ln, eps=2.0)
    emb = model.embed(tok).detach()
    mask = (torch.arange(tok.shape[1])[None, :] < ln[:, None]).float()
    with torch.no_grad():
        clean = torch.log_softmax(model(tok, ln), -1)
        rand = []
        for _ in range(20):
            r = 2.0 * J._unit(torch.randn_like(emb), mask)
            assert torch.all(r[mask == 0] == 0) and torch.allclose(r.flatten(1).norm(dim=1), torch.full((12,), 2.0))
            out = torch.log_softmax(model.classify_embedded(emb + r, ln), -1)
            rand.append(torch.nn.functional.kl_div(out, clean, log_target=True, reduction="batchmean").item())
    assert adv.item() > 0 and adv.item() > 2 * float(np.median(rand))
    adv.backward()
    assert model.embed.weight.grad is not None and model.embed.weight.grad.abs().sum() > 0
    assert model.out.weight.grad is not None and model.out.weight.grad.abs().sum() > 0


def test_vat_judge_draws_unlabelled_poems_and_keys_its_settings(smoke_data, tmp_path):
    """A smoke judge with judge_vat_weight > 0 trains (finite losses) on labelled + unlabelled poems; the setting
    enters its checkpoint key (a supervised judge is not reused for it), and at weight 0 the key is unchanged."""
    bigru = dataclasses.replace(SMOKE, eval=dataclasses.replace(SMOKE.eval, judge_kind="bigru"))
    vat = dataclasses.replace(bigru, eval=dataclasses.replace(bigru.eval, judge_vat_weight=1.0, judge_vat_eps=0.5))
    _, report = J.train_judge(smoke_data, "era", vat, tmp_path)
    assert all(np.isfinite(h["train_loss"]) for h in report["history"])
    key = torch.load(ckpt.judge_path(tmp_path, "era"), weights_only=True)["key"]
    assert key["vat"] == [1.0, 0.5]
    assert "vat" not in J._judge_key(smoke_data, "era", bigru, SMOKE.seed)
    with pytest.raises(ValueError, match="judge_vat_eps"):
        dataclasses.replace(SMOKE.eval, judge_vat_eps=-1.0)


def test_fit_supervised_keeps_the_best_validated_state():
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    x = torch.linspace(-1, 1, 40)[:, None]
    y = 3 * x
    seen: list[float] = []

    def batch_loss(ids: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(x[ids]), y[ids])

    def validate() -> dict[str, float]:
        seen.append(float(model.weight.detach()))
        return {"distance": abs(seen[-1] - 0.5)}  # best near w = 0.5, passed on the way from ~0.2 towards 3

    phase = PhaseConfig(batch_size=8, epochs=20, lr_max=0.05, warmup_steps=1)
    fit = S.fit_supervised(
        model,
        40,
        batch_loss,
        validate,
        S.Selection("distance", False, math.inf),
        S.FitSettings(phase, seed=0, weight_decay=0.0, clip=10.0, betas=(0.9, 0.99)),
    )
    assert fit["steps"] == 100 and len(fit["history"]) == S.VAL_POINTS == len(seen)
    assert [row["step"] for row in fit["history"]][-1] == 100
    best = min(range(len(seen)), key=lambda i: abs(seen[i] - 0.5))
    assert 0 < best < len(seen) - 1  # a state from the middle of the run is restored
    assert fit["best"] == {"step": fit["history"][best]["step"], "distance": abs(seen[best] - 0.5)}
    assert float(model.weight.detach()) == seen[best] and not model.training
    assert S.Selection("f1", True, -1.0).better(0.5, 0.4) and not S.Selection("f1", True, -1.0).better(math.nan, 0.4)


# ----------------------------------------------------------------------------- classify_jsonl


def test_classify_jsonl_reports_malformed_lines_and_continues(smoke_judges, tmp_path):
    rows = [
        json.dumps({"content": "白日依山尽|黄河入海流|欲穷千里目|更上一层楼", "id": "a"}, ensure_ascii=False),
        '{"content": "broken',
        json.dumps({"content": "床前明月光|疑是地上霜|举头望明月|低头思故乡"}, ensure_ascii=False),
        json.dumps({"text": "no content"}),
        "",
        json.dumps([1, 2]),
        json.dumps({"content": "|||"}),
        json.dumps({"content": "春眠不觉晓|处处闻啼鸟|夜来风雨声|花落知多少"}, ensure_ascii=False),
    ]
    path = tmp_path / "poems.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = io.StringIO()
    n_ok, errors = classify_jsonl(smoke_judges, path, out)
    assert n_ok == 3
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 4", "line 6", "line 7"]
    assert "invalid JSON" in errors[0] and "content" in errors[1]
    written = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [w["line"] for w in written] == [1, 3, 8]
    assert written[0]["id"] == "a"
    for w in written:
        assert set(w["judge"]) == set(FACTOR_NAMES)
    same = J.classify(smoke_judges, [w["content"] for w in written])
    assert [w["judge"] for w in written] == same


# ----------------------------------------------------------------------------- character LM


def test_lm_perplexity_falls_and_checkpoint_roundtrips(smoke_lm, smoke_data, run_dir):
    train_poems = [p.content for p in smoke_data.poems("unl_train")[:200]]
    seed_everything(SMOKE.seed)
    cfg = SMOKE.eval
    untrained = NJ.CharLM(smoke_data.vocab, cfg.lm_emb, cfg.lm_hidden, cfg.lm_layers)
    before = L.lm_score(untrained, train_poems).summary()["corpus_ppl"]
    after = L.lm_score(smoke_lm, train_poems).summary()["corpus_ppl"]
    assert after < 0.8 * before

    rep = smoke_lm.report
    assert math.isfinite(rep["valid_char_ppl"]) and rep["n_train"] == len(smoke_data.poems("unl_train"))
    gt = rep["gt_unl_test"]
    assert gt["n"] == len(smoke_data.poems("unl_test")) and gt["mean_lms"] < 0
    assert gt["corpus_ppl"] == pytest.approx(
        L.lm_score(smoke_lm, [p.content for p in smoke_data.poems("unl_test")]).summary()["corpus_ppl"], rel=1e-5
    )

    path = ckpt.lm_path(run_dir)
    stamp = path.stat().st_mtime_ns
    again = L.ensure_lm(smoke_data, SMOKE, run_dir)
    assert path.stat().st_mtime_ns == stamp and _state_equal(again, smoke_lm)
    np.testing.assert_allclose(L.lm_score(again, train_poems[:20]).lms, L.lm_score(smoke_lm, train_poems[:20]).lms)


def test_lm_log_probs_are_normalised_and_match_the_scored_targets(smoke_lm):
    tokens, _ = smoke_lm.encode(["白日依山尽|黄河入海流|欲穷千里目|更上一层楼"])
    with torch.no_grad():
        full = smoke_lm.log_prob(tokens)  # (1, T, V)
        picked = smoke_lm(tokens)  # (1, T-1): log p of each next token
    assert torch.allclose(full.exp().sum(-1), torch.ones(full.shape[:2]), atol=1e-4)
    assert torch.allclose(full[0, :-1].gather(1, tokens[0, 1:, None])[:, 0], picked[0], atol=1e-5)


def test_lm_score_counts_characters_only(smoke_lm):
    poems = ["白日依山尽|黄河入海流|欲穷千里目|更上一层楼", "床前明月光|疑是地上霜|举头望明月|低头思故乡"]
    s = L.lm_score(smoke_lm, poems)
    assert s.n_chars.tolist() == [20, 20]
    assert np.all(s.lms < 0) and np.allclose(s.ppl, np.exp(-s.lms))
    assert L.lm_score(smoke_lm, []).lms.size == 0
