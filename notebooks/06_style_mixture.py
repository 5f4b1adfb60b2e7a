# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Style mixtures: one keyword, six styles
#
# MixPoet's point is that a poem's style is a **mixture of factors**: *living experience* (military,
# countryside, other) and *historical background* (prosperous, troubled). Fixing the two labels picks one of
# six regions of the latent space; sampling inside a region, or moving between regions, changes the poem
# while the keyword stays the same. This notebook is the case study of [design §7.1](../docs/design.md#d7.1):
#
# 1. one keyword under all six mixtures, 5- and 7-character, with what the independent judges make of them;
# 2. the accumulated frequency of the top-K characters in generated versus human poems;
# 3. a walk through the latent space from one mixture to another;
# 4. an interactive generator.

# %% tags=["parameters"]
PROFILE: str = None  # smoke | tutorial | full (None: $MIXPOET_PROFILE, else tutorial)
OVERRIDES: str = ""  # changed settings, e.g. "model.latent_size=64,train.ndis=5" (README, "Profiles")
RUN_DIR: str = None  # where checkpoints and results live (None: runs/<profile>)
PUBLISHED: bool = None  # no checkpoint in the run folder → use weights/<profile>/ if they match (None: $MIXPOET_PUBLISHED)
SEED: int = 1234  # seed of the latent draws in this notebook
KEYWORDS: list = ["秋风", "明月"]  # case-study keywords (each must be in the vocabulary)
MIX_FROM: list = [0, 1]  # interpolation start, [living, era]: military, troubled
MIX_TO: list = [1, 0]  # interpolation end: countryside, prosperous
STEPS: int = 5  # points on the interpolation path

# %%
import json
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from mixpoet_lib.evaluate import analysis
from mixpoet_lib import config
from mixpoet_lib.overrides import run_name
from mixpoet_lib.evaluate import evaluation
from mixpoet_lib.evaluate.systems import SYSTEM_TITLES
from mixpoet_lib.generate import generator as generation
from mixpoet_lib.train import charlm, judges
from mixpoet_lib import metrics
from mixpoet_lib import paths
from mixpoet_lib import plots
from mixpoet_lib import checkpoints as publish
from mixpoet_lib.train import loop as training
from mixpoet_lib.notebook import setup

profile, data = setup(PROFILE, SEED, OVERRIDES)
RUN = run_name(profile.name, OVERRIDES)  # the profile's name, or <profile>-<digest> when settings are changed
RUN_DIR = RUN_DIR or str(paths.runs_dir(RUN))
run_dir = RUN_DIR
published = publish.use_published_default() if PUBLISHED is None else bool(PUBLISHED)
vocab = data.vocab
aus = training.ensure_model("aus", profile, data=data, run_dir=run_dir, progress=False, published=published)
judge_models = judges.ensure_judges(data, profile, run_dir, published=published)
gen = generation.Generator(aus, vocab, training_lines=data.training_lines(), gen_cfg=profile.gen)
keywords = [k for k in KEYWORDS if all(ch in vocab and vocab.id(ch) >= 4 for ch in k)]
assert keywords, f"none of the keywords {KEYWORDS} is in the vocabulary"
print("case-study keywords:", keywords)


def mixture_name(mix, zh: bool = True) -> str:
    """'军旅·乱世' for (0, 1)."""
    return "·".join(config.label_name(f, int(v), zh=zh) for f, v in zip(config.FACTOR_NAMES, mix))


# %% [markdown]
# ## 1 · One keyword under the six mixtures
#
# For each mixture $(y_1,y_2)$ the generator draws $z\sim p(z\mid w,y_1,y_2)$ from the AUS prior and runs
# the constrained beam search. The same seed is used for every mixture, so only the labels differ
# between the cells of a row. Under each poem: the judges' verdict (living · era), with ✓ where it
# matches the requested label.

# %%
def case_study(keyword: str) -> pd.DataFrame:
    rows = {}
    for mix in analysis.MIXTURES:
        cells = {}
        for length in (5, 7):
            poem = gen.generate(keyword, length, labels=mix, seed=SEED)[0]
            if not poem.ok:
                cells[f"{length}-char"] = "(no poem: constraints failed)"
                continue
            tag = judges.classify(judge_models, [poem.text])[0]
            marks = [("✓" if tag[f]["label"] == mix[k] else "✗") + tag[f]["name"]
                     for k, f in enumerate(config.FACTOR_NAMES)]
            relax = "" if poem.relaxation == 0 else f" [{poem.relaxation_name}]"
            cells[f"{length}-char"] = "\n".join(poem.lines) + f"\n({' · '.join(marks)}){relax}"
        rows[mixture_name(mix)] = cells
    return pd.DataFrame(rows).T


samples = []
for kw in keywords:
    grid = case_study(kw)
    display(grid.style.set_caption(f"keyword {kw}").set_properties(**{"white-space": "pre-wrap",
                                                                      "text-align": "left"}))
    samples += [{"title": f"{kw} · {mix} · {col}", "content": "|".join(cell.split("\n")[:4])}
                for mix, row in grid.iterrows() for col, cell in row.items() if not cell.startswith("(no poem")]
# the run report shows these as its sample poems per mixture
Path(run_dir, "samples.json").write_text(json.dumps(samples, ensure_ascii=False, indent=1), encoding="utf-8")

# %% [markdown]
# ## 2 · Do generated poems lean on a few characters?
#
# Generic generators reuse a small set of safe characters (月, 风, 山, 人, …). One way to see it: sort the
# characters of a set of poems by frequency and plot the share of all character occurrences taken by the
# top $K$, $F(K)=\sum_{i\le K} n_{(i)}/\sum_i n_i$. A curve that rises faster than the human one means a
# more concentrated, less varied vocabulary.
#
# The poems are the inter-topic poems of notebook 05 (first generation seed): the cached ones when
# notebook 05 has run with the same settings, otherwise they are generated now.

# %%
lm = charlm.ensure_lm(data, profile, run_dir, published=published)
systems = ["gt", "basic", "cvae", "aus"]
models = {s: training.ensure_model(s, profile, data=data, run_dir=run_dir, progress=False, published=published)
          for s in systems if s != "gt"}
ev = evaluation.evaluate(profile, data, run_dir, models, judge_models, lm, systems=systems,
                         seeds=profile.eval.seeds[:1], progress=False)
k_max = 1000
fig, ax = plt.subplots(figsize=(6.5, 4))
curves = {}
for s in systems:
    texts = [r["text"] for r in ev.poems[(s, ev.seeds[0])].role("inter") if r["ok"]]
    curves[s] = metrics.topk_accumulated_frequency(texts, k_max)
    ax.plot(np.arange(1, k_max + 1), curves[s], label=SYSTEM_TITLES[s],
            lw=2.5 if s in ("gt", "aus") else 1.5, color="k" if s == "gt" else None)
ax.set(xscale="log", xlabel="most frequent K characters", ylabel="accumulated frequency",
       title="top-K accumulated character frequency")
ax.legend()
fig.tight_layout()
plots.save_figure(fig, "06_topk_frequency", RUN)
plt.show()
pd.DataFrame({SYSTEM_TITLES[s]: {f"K={k}": c[k - 1] for k in (10, 50, 100, 500)}
              for s, c in curves.items()}).T.round(3)

# %% [markdown]
# ## 3 · Walking from one mixture to another
#
# Draw one noise vector $\varepsilon$ and push it through the prior twice, under mixture A and under
# mixture B: $z_A=g(\varepsilon,w,y^A)$, $z_B=g(\varepsilon,w,y^B)$. On the straight line between them,
#
# $$z_t=(1-t)\,z_A+t\,z_B,\qquad y_t=(1-t)\,\mathrm{onehot}(y^A)+t\,\mathrm{onehot}(y^B),$$
#
# and the decoder starts from $s_0=\tanh(W[z_t;h_w;d(y_t)])$: the label embeddings are mixed too, which
# the decoder never saw during training (it only saw one-hot labels), so the middle of the path is an
# extrapolation. The judges' probabilities along the path show whether the style moves with it.

# %%
kw = keywords[0]
ts, s0 = analysis.interpolate_mixtures(aus, vocab, kw, tuple(MIX_FROM), tuple(MIX_TO), steps=STEPS, seed=SEED)
path_rows = []
for length in (5, 7):
    poems = gen.generate_from_s0(kw, length, s0, seed=SEED)
    tags = judges.classify(judge_models, [p.text if p.ok else "" for p in poems])
    for t, p, tag in zip(ts, poems, tags):
        path_rows.append({"length": length, "t": t, "poem": " / ".join(p.lines) if p.ok else "(failed)",
                          f"P({config.label_name('living', MIX_FROM[0])})": tag["living"]["probs"][MIX_FROM[0]],
                          f"P({config.label_name('living', MIX_TO[0])})": tag["living"]["probs"][MIX_TO[0]],
                          f"P({config.label_name('era', MIX_TO[1])})": tag["era"]["probs"][MIX_TO[1]]})
walk = pd.DataFrame(path_rows)
print(f"keyword {kw}: {mixture_name(MIX_FROM)} (t=0) → {mixture_name(MIX_TO)} (t=1)")
display(walk.round(3))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
for ax, length in zip(axes, (5, 7)):
    sub = walk[walk["length"] == length].set_index("t").drop(columns=["length", "poem"])
    sub.plot(ax=ax, marker="o")
    ax.set(title=f"{length}-character · {kw}", xlabel="t (0 = A, 1 = B)", ylabel="judge probability",
           ylim=(0, 1))
fig.suptitle(f"{mixture_name(MIX_FROM)} → {mixture_name(MIX_TO)}")
fig.tight_layout()
plots.save_figure(fig, "06_interpolation", RUN)
plt.show()

# %% [markdown]
# ## 4 · Try it yourself
#
# The widget below calls the same generator. Pick a keyword (one or two characters that the vocabulary
# knows), a length, the two factors (`infer` lets $p(y\mid w)$ choose) and the number of poems, then press
# **Run Interact**. Outside a live kernel (for instance in the executed copies of this notebook) the widget
# does nothing, so the cell after it shows one call of the same function.

# %%
def write_poems(keyword: str = keywords[0], length: int = 7, living: str = "military", era: str = "troubled",
                n: int = 3, seed: int = SEED) -> None:
    """Print n poems for the chosen keyword, length and factors (errors are printed, not raised)."""
    try:
        poems = gen.generate(keyword, length, labels=(living, era), n_samples=n, seed=seed)
    except ValueError as exc:
        print(f"cannot generate: {exc}")
        return
    for p in poems:
        used = mixture_name(p.labels)
        if not p.ok:
            print(f"[{used}] no poem: the constraints failed on line {p.failed_line + 1}")
            continue
        relax = "" if p.relaxation == 0 else f"   (relaxed: {p.relaxation_name})"
        print(f"[{used}]{relax}\n" + "\n".join(p.lines) + "\n")


widgets.interact_manual(
    write_poems,
    keyword=widgets.Text(value=keywords[0], description="keyword"),
    length=widgets.Dropdown(options=[5, 7], value=7, description="length"),
    living=widgets.Dropdown(options=["infer", *config.FACTOR_CLASSES["living"]], value="military",
                            description="living"),
    era=widgets.Dropdown(options=["infer", *config.FACTOR_CLASSES["era"]], value="troubled", description="era"),
    n=widgets.IntSlider(value=3, min=1, max=8, description="poems"),
    seed=widgets.IntText(value=SEED, description="seed"),
);

# %%
write_poems(keywords[0], 7, "military", "troubled", n=2)
write_poems(keywords[0], 5, "countryside", "prosperous", n=2)
write_poems("星辰大海", 7)  # a bad input: reported, not raised

# %%
# Checks that fail loudly if the case study did not work.
assert len(walk) == 2 * STEPS
assert all(0 < c[0] <= c[-1] <= 1.0 + 1e-9 for c in curves.values()), "accumulated frequency out of range"
assert all(np.all(np.diff(c[np.isfinite(c)]) >= -1e-12) for c in curves.values()), "accumulated frequency must rise"
if profile.name != "smoke":
    ok_rate = np.mean([r["ok"] for s in systems if s != "gt" for r in ev.poems[(s, ev.seeds[0])].role("inter")])
    assert ok_rate > 0.8, f"only {ok_rate:.0%} of the poems were generated"

# %% [markdown]
# ## Summary
#
# * The six mixtures of one keyword give six different poems from the same latent noise; the judges'
#   ticks show how often the requested style is recognisable (notebook 05 measures it over all keywords).
# * The top-K curves compare how concentrated each system's vocabulary is against human poems.
# * Moving along a straight line between two mixtures changes the poem gradually or in jumps; the judges'
#   probabilities show whether the style follows the latent.
#
# ## Exercises
#
# 1. Interpolate between two mixtures that differ in one factor only (e.g. `MIX_FROM=[0, 0]`,
#    `MIX_TO=[0, 1]`). Which judge probability moves?
# 2. Interpolate only $z$ and keep the label embeddings of A. What changes?
# 3. Compare the top-K curve of MixPoet-AUS when every poem is written under the same mixture with the
#    curve over all six mixtures.
