"""Calibrate the metrics on a published run's poems and print the tables of docs/metrics.md (Markdown).

    MIXPOET_MIRROR=... .venv/bin/python scripts/metrics_calibration.py [--run runs/tutorial] [--profile tutorial]
        [--figures FOLDER] [--results FILE]

It reads the cached evaluation poems (``<run>/eval/poems/*.json``, GT = the human poems), prepares the
profile's data, loads the published judges and char LM (``weights/<profile>``; it never trains), and prints:
the Jaccard unit calibration, the LMS candidates ranked, the form-check breakdown, and every metric of the kit
rescored on these poems with the side-by-side with the paper. ``--results`` also writes that summary as JSON
(the shape of ``results.json``'s summary, paper and claims entries); ``--figures`` saves the Fig. 3 / Fig. 4c
counterparts.
Nothing in the run folder is changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixpoet_lib import metrics as M  # noqa: E402
from mixpoet_lib import plots  # noqa: E402
from mixpoet_lib.checkpoints import load_judge, load_lm, published_meta  # noqa: E402
from mixpoet_lib.config import FACTOR_CLASSES, get_profile  # noqa: E402
from mixpoet_lib.data import rhythm as R  # noqa: E402
from mixpoet_lib.data.dataset import prepare  # noqa: E402
from mixpoet_lib.data.vocab import EOS, PAD  # noqa: E402
from mixpoet_lib.evaluate import claims, report, scoring  # noqa: E402
from mixpoet_lib.evaluate.evaluation import build_scorers  # noqa: E402
from mixpoet_lib.evaluate.systems import SYSTEM_TITLES, SystemPoems  # noqa: E402

UNITS = ("char", "word_all", "word", "bigram")
UNIT_NAMES = {
    "char": "character sets",
    "word_all": "jieba words (all)",
    "word": "jieba words of ≥ 2 characters",
    "bigram": "character bigrams within lines",
}


def load_poems(run: Path) -> dict[tuple[str, int], SystemPoems]:
    """Every cached poems file of the run, keyed (system, seed)."""
    out = {}
    for path in sorted((run / "eval" / "poems").glob("*_seed*.json")):
        obj = json.loads(path.read_text(encoding="utf-8"))
        sp = SystemPoems(obj["system"], int(obj["seed"]), obj["records"], obj["seconds"], obj["n_generated"])
        out[(sp.system, sp.seed)] = sp
    if not out:
        raise SystemExit(f"no poems files in {run / 'eval' / 'poems'}")
    return out


def inter(sp: SystemPoems) -> tuple[list[str], list[str]]:
    recs = [r for r in sp.role("inter") if r["ok"]]
    return [r["text"] for r in recs], [r["keyword"] for r in recs]


def groups(sp: SystemPoems, role: str) -> list[list[str]]:
    out: dict[int, list[str]] = {}
    for r in sp.role(role):
        if r["ok"]:
            out.setdefault(r["item"], []).append(r["text"])
    return list(out.values())


def mean_over_seeds(poems: dict, fn) -> dict[str, float]:
    per: dict[str, list[float]] = {}
    for (system, _), sp in poems.items():
        per.setdefault(system, []).append(fn(sp))
    return {s: float(np.nanmean(v)) if np.isfinite(v).any() else np.nan for s, v in per.items()}


def _cell(v: object, digits: int) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}f}" if np.isfinite(v) else "—"
    return str(v)


def md_table(df: pd.DataFrame, digits: int = 3) -> str:
    head = "| " + " | ".join([df.index.name or "", *map(str, df.columns)]) + " |"
    sep = "|---" * (len(df.columns) + 1) + "|"
    body = [
        "| " + " | ".join([str(i), *(_cell(v, digits) for v in row)]) + " |" for i, row in zip(df.index, df.to_numpy())
    ]
    return "\n".join([head, sep, *body])


def jaccard_calibration(poems: dict) -> str:
    """Inter-topic Jaccard (%) per unit and system, and the intra-topic variants on the chosen unit."""
    rows = {}
    for unit in UNITS:
        rows[UNIT_NAMES[unit]] = mean_over_seeds(poems, lambda sp, u=unit: 100 * M.inter_topic_jaccard(*_ik(sp, u)))
    df = pd.DataFrame(rows).T[[s for s in ("gt", "basic", "cvae", "igs", "aus", "aus_st") if s in _systems(poems)]]
    df.columns = [SYSTEM_TITLES[s] for s in df.columns]
    df.index.name = "inter-topic Jaccard (%)"
    intra = {}
    for role, name in (("intra", "N samples / Basic top-N beams"), ("mixture", "6 mixtures")):
        for unit in ("char", "word_all", "word"):
            vals = mean_over_seeds(
                poems,
                lambda sp, r=role, u=unit: 100 * M.intra_topic_jaccard(groups(sp, r), u) if groups(sp, r) else np.nan,
            )
            intra[f"{name}, {UNIT_NAMES[unit]}"] = vals
    di = pd.DataFrame(intra).T[[c for c in ("basic", "cvae", "igs", "aus", "aus_st") if c in _systems(poems)]]
    di.columns = [SYSTEM_TITLES[s] for s in di.columns]
    di.index.name = "intra-topic Jaccard (%)"
    return md_table(df) + "\n\n" + md_table(di, 2)


def _ik(sp: SystemPoems, unit: str):
    texts, kws = inter(sp)
    return texts, 100_000, 0, unit, kws


def _systems(poems: dict) -> set[str]:
    return {s for s, _ in poems}


@torch.no_grad()
def char_logprobs(lm, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per poem: the LM log-prob of every character target and the target ids."""
    lm.eval()
    tokens, _ = lm.encode(texts)
    logp = lm(tokens).numpy()
    tgt = tokens[:, 1:].numpy()
    is_char = (tgt != PAD) & (tgt != EOS)
    return [(logp[i][is_char[i]], tgt[i][is_char[i]]) for i in range(len(texts))]


def lms_candidates(poems: dict, data, lm, reference: tuple[float, float]) -> str:
    """Mean per system of each LMS candidate, and each candidate's rank of the human poems."""
    counts = np.ones(len(data.vocab))
    for p in data.poems("unl_train"):
        for line in p.lines:
            np.add.at(counts, data.vocab.encode(line), 1)
    log_uni = np.log(counts / counts.sum())
    mu, sd = reference

    def scores(sp: SystemPoems) -> dict[str, float]:
        per = char_logprobs(lm, inter(sp)[0])
        lp = np.array([x.mean() for x, _ in per])
        uni = np.array([log_uni[ids].mean() for _, ids in per])
        return {
            "LM log-prob (mean log p per char)": lp.mean(),
            "SLOR (log p − unigram log p, per char)": (lp - uni).mean(),
            "NormLP ratio (log p / unigram log p)": (lp / uni).mean(),
            "minus abs(log-prob − human mean)": -np.abs(lp - mu).mean(),
            "closeness exp(−z²/2) (chosen)": M.human_closeness(lp.tolist(), mu, sd),
        }

    per_system: dict[str, list[dict[str, float]]] = {}
    for (system, _), sp in poems.items():
        per_system.setdefault(system, []).append(scores(sp))
    order = [s for s in SYSTEM_TITLES if s in per_system]
    df = pd.DataFrame({SYSTEM_TITLES[s]: pd.DataFrame(per_system[s]).mean() for s in order})
    df["rank of GT (1 = best)"] = [str(int((df.loc[i] > df.loc[i, "GT (human)"]).sum()) + 1) for i in df.index]
    df.index.name = "candidate (higher is better)"
    return md_table(df)


def official_breakdown(texts: list[str], tr) -> Counter:
    """Which rule of the generator's check (check_poem) each human poem fails (a poem may fail several)."""
    out: Counter = Counter()
    for text in texts:
        lines = text.split("|")
        rep = R.check_poem(lines, tr=tr)
        if rep.ok:
            out["passes"] += 1
            continue
        unknown = ["?" in R.tone_string(x[1:] if len(x) == R.LONG_LINE else x, tr=tr) for x in lines]
        if not rep.pattern_ok and rep.types[0] < 0:
            out["line 1 unrecognised" + (" (holds 一 or another unlisted character)" if unknown[0] else "")] += 1
        elif not rep.pattern_ok:
            for i in (i for i in range(1, 4) if rep.types[i] != rep.expected[i]):
                fits = rep.expected[i] in R.verse_line_types(lines[i], tr=tr)
                kind = "fits the expected type but first-match gave another" if fits else "does not fit"
                out[f"a line 2–4 {kind}" + (" (holds an unlisted character)" if unknown[i] else "")] += 1
        if not rep.rhyme_ok:
            shared = R.verse_rhyme_classes(lines[1][-1], tr=tr) & R.verse_rhyme_classes(lines[3][-1], tr=tr)
            out[
                "rhyme: lines 2 and 4 rhyme, but not in the class taken from line 1 / the first listed one"
                if shared
                else "rhyme: lines 2 and 4 share no level rhyme class"
            ] += 1
    return out


def _fits(line: str, tr, unlisted_free: bool) -> set[int]:
    """Types a line fits with polyphones either way; unlisted characters free (and 一 oblique) if asked."""
    if len(line) not in (R.SHORT_LINE, R.LONG_LINE):
        return set()
    body, templates = (line, R.TEMPLATES_5) if len(line) == R.SHORT_LINE else (line[1:], R.TEMPLATES_7)
    tones = [R.verse_tone(ch, tr=tr) if unlisted_free else R.tone_of(ch, tr=tr) for ch in body]
    free = "B?" if unlisted_free else "B"
    return {
        t for t, tpls in templates.items() if any(all(x == y or x in free for x, y in zip(tones, tp)) for tp in tpls)
    }


EXPECTED_TYPE, ANY_FIRST_TYPE, UNLISTED_TONES, SHARED_RHYME, GROUP_RHYME = range(1, 6)  # the steps of STEPS


def _step_ok(lines: list[str], step: int, tr) -> bool:
    """The poem passes with the first ``step`` relaxations of :data:`STEPS` applied (0: the generator's check)."""
    if step == 0:
        return R.check_poem(lines, tr=tr).ok
    if len({len(x) for x in lines}) != 1:
        return False
    fits = [_fits(x, tr, step >= UNLISTED_TONES) for x in lines]
    first = [R.line_type(lines[0], tr=tr)] if step == EXPECTED_TYPE else list(R.POEM_PATTERNS)
    pattern = any(t >= 0 and all(R.POEM_PATTERNS[t][i] in fits[i] for i in range(1, 4)) for t in first)
    if step >= ANY_FIRST_TYPE:
        pattern = any(all(R.POEM_PATTERNS[t][i] in fits[i] for i in range(4)) for t in first)
    if step < SHARED_RHYME:
        return pattern and R.check_poem(lines, tr=tr).rhyme_ok
    if step == SHARED_RHYME:
        shared = set(R.rhyme_classes_of(lines[1][-1], tr=tr)) & set(R.rhyme_classes_of(lines[3][-1], tr=tr))
        return pattern and bool(shared)
    return pattern and R.check_verse(lines, tr=tr).rhyme_ok


STEPS = (
    "the generator's check (check_poem)",
    "+ lines 2–4 pass when they fit the expected type (not only the recogniser's first match)",
    "+ line 1 may be read as any type it fits",
    "+ 一 read as oblique, other unlisted characters as either tone",
    "+ rhyme: lines 2 and 4 share any listed class; line 1 may or may not rhyme",
    "+ rhyme classes also from the pingsheng.txt rhyme groups (= check_verse)",
)


def stepwise(named: dict[str, list[str]], tr) -> str:
    out = ["| relaxation (cumulative) | " + " | ".join(named) + " |", "|---" * (len(named) + 1) + "|"]
    for step, text in enumerate(STEPS):
        rates = [np.mean([_step_ok(p.split("|"), step, tr) for p in texts]) for texts in named.values()]
        out.append(f"| {text} | " + " | ".join(f"{r:.1%}" for r in rates) + " |")
    return "\n".join(out)


def form_tables(poems: dict, data, tr) -> str:
    gt = inter(poems[("gt", min(s for g, s in poems if g == "gt"))])[0]
    test = ["|".join(p.lines) for p in data.poems("unl_test")]
    parts = []
    for name, texts in ((f"GT ({len(gt)} evaluation poems)", gt), (f"unl_test ({len(test)} poems)", test)):
        off = official_breakdown(texts, tr)
        verse = Counter(f for t in texts for f in R.check_verse(t, tr=tr).failures)
        ok = sum(R.check_verse(t, tr=tr).ok for t in texts)
        parts.append(
            f"**{name}** — generator's check passes {off['passes'] / len(texts):.1%}; reader's check "
            f"passes {ok / len(texts):.1%}\n"
        )
        parts.append("| generator's check: failing rule | share of poems |\n|---|---|")
        parts += [f"| {k} | {v / len(texts):.1%} |" for k, v in off.most_common() if k != "passes"]
        parts.append("\n| reader's check: failing rule | share of poems |\n|---|---|")
        parts += [f"| {k} | {verse[k] / len(texts):.1%} |" for k in R.VERSE_FAILURES if verse[k]]
        parts.append("")
    parts.append(stepwise({"GT": gt, "unl_test": test}, tr))
    return "\n".join(parts)


def published_file(profile, name: str) -> Path:
    found = published_meta(profile, name)
    if found is None:
        raise SystemExit(f"no published {name} in weights/{profile.name}")
    return found[0]


def judge_table(ceiling: dict) -> str:
    """Accuracy, macro-F1 and per-class recall / F1 of each judge on CQCF test."""
    out = ["| judge | n | accuracy | macro-F1 | per-class recall | per-class F1 |", "|---|---|---|---|---|---|"]
    for factor, rep in ceiling.items():
        cm = np.asarray(rep["confusion"], dtype=float)
        names = FACTOR_CLASSES[factor]
        recall = ", ".join(f"{c} {v:.3f}" for c, v in zip(names, np.diag(cm) / cm.sum(1)))
        f1 = ", ".join(f"{c} {v:.3f}" for c, v in zip(names, rep["per_class_f1"]))
        out.append(f"| {factor} | {rep['n']} | {rep['accuracy']:.3f} | {rep['macro_f1']:.3f} | {recall} | {f1} |")
    return "\n".join(out)


def rescore(poems: dict, scorers) -> pd.DataFrame:
    rows = []
    for (system, seed), sp in poems.items():
        rows += scoring.score_rows(sp, system, seed, scorers)
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "tutorial"))
    ap.add_argument("--profile", default="tutorial")
    ap.add_argument("--figures", default=None)
    ap.add_argument("--results", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run).resolve()
    profile = get_profile(args.profile)
    data = prepare(profile)
    poems = load_poems(run)
    lm = load_lm(published_file(profile, "char_lm"))
    judge_models = {f: load_judge(published_file(profile, f"judge_{f}")) for f in ("living", "era")}
    scorers, about = build_scorers(data, judge_models, lm, profile.eval.max_pairs, profile.seed)
    tr = R.default_tone_rhyme()
    print("## Jaccard unit\n\n" + jaccard_calibration(poems) + "\n")
    ref = (about["lms_reference"]["mean"], about["lms_reference"]["std"])
    print(f"## LMS candidates (reference: {about['lms_reference']})\n\n" + lms_candidates(poems, data, lm, ref) + "\n")
    print("## Form check\n\n" + form_tables(poems, data, tr) + "\n")
    summary = scoring.summarise(rescore(poems, scorers))
    lines = report.markdown_result_groups({"summary": summary.assign(length="all").to_dict("records")})
    print("## All metrics, rescored\n\n" + "\n".join(lines))
    ceiling = {f: j.report["test"] for f, j in judge_models.items()}
    print("\n## Judges on CQCF test (the ceiling)\n\n" + judge_table(ceiling))
    n_keywords = len(next(sp for (system, _), sp in poems.items() if system == "gt").role("inter"))
    side = report.paper_section(summary, n_keywords)
    print("\n## Side by side\n\n" + "\n".join(report.markdown_paper({"paper": side})))
    verdicts = claims.claims(summary, ceiling=ceiling)
    rows = [f"| {r.claim} | {r.verdict} | {r.evidence} |" for r in verdicts.itertuples()]
    print("\n## Claims\n\n| claim | verdict | evidence |\n|---|---|---|\n" + "\n".join(rows))
    if args.results:
        obj = {
            "summary": summary.to_dict("records"),
            "paper": side,
            "claims": verdicts.to_dict("records"),
            "references": about,
        }
        Path(args.results).write_text(json.dumps(obj, ensure_ascii=False, indent=1, default=float), encoding="utf-8")
    if args.figures:
        plots.setup_style()
        fig = plots.factor_control_figure(summary, ceiling)
        plots.save_figure(fig, plots.FIG3_NAME, folder=Path(args.figures))
        fig = plots.topk_words_figure(scoring.topk_word_curves(poems))
        plots.save_figure(fig, plots.FIG4C_NAME, folder=Path(args.figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
