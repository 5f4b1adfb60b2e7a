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
# 1. one keyword under all six mixtures, 5- and 7-character, with what the independent judges make of them,
#    and the same mixtures pushed apart by a mixture contrast γ (1b);
# 2. the accumulated frequency of the top-K characters in generated versus human poems;
# 3. a walk through the latent space from one mixture to another;
# 4. an interactive generator;
# 5. the paper's Figures 4a–4d and 5, each read against this run.

# %% tags=["parameters"]
PROFILE: str = None  # smoke | tutorial | long | full (None: $MIXPOET_PROFILE, else tutorial)
OVERRIDES: str = ""  # changed settings, e.g. "model.latent_size=64,train.ndis=5" (README, "Profiles")
RUN_DIR: str = None  # where checkpoints and results live (None: runs/<profile>-local)
TRAIN: bool = False  # False: load the published weights of the profile when they exist; True: train here
SEED: int = 1234  # seed of the latent draws in this notebook
KEYWORDS: list = ["秋风", "明月"]  # case-study keywords (each must be in the vocabulary)
MIX_FROM: list = [0, 1]  # interpolation start, [living, era]: military, troubled
MIX_TO: list = [1, 0]  # interpolation end: countryside, prosperous
STEPS: int = 5  # points on the interpolation path
CONTRASTS: list = [0.0, 1.0, 2.0]  # mixture contrasts γ of section 1b (0 = the model as trained)

# %%
import dataclasses
import json
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from mixpoet_lib.evaluate import analysis
from mixpoet_lib.evaluate import figures as paper_data
from mixpoet_lib import paper_figures
from mixpoet_lib import config
from mixpoet_lib.overrides import run_name
from mixpoet_lib.evaluate import evaluation
from mixpoet_lib.evaluate.systems import SYSTEM_TITLES
from mixpoet_lib.generate import generator as generation
from mixpoet_lib.train import charlm, judges
from mixpoet_lib import metrics
from mixpoet_lib import plots
from mixpoet_lib.models.factor_models import FactorModelBase
from mixpoet_lib.notebook import load_or_train, notebook_run_dir, say, setup, show_source

profile, data = setup(PROFILE, SEED, OVERRIDES)
RUN = run_name(profile.name, OVERRIDES)  # the profile's name, or <profile>-<digest> when settings are changed
RUN_DIR = notebook_run_dir(RUN, RUN_DIR)  # the committed reference run is only read
run_dir = RUN_DIR
published = not TRAIN  # the judges and the LM follow the same rule as the generators
vocab = data.vocab
aus = load_or_train("aus", profile, data, run_dir, train=TRAIN)
judge_models = judges.ensure_judges(data, profile, run_dir, log=say, published=published)
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
case_poems = {}  # (keyword, length, mixture) → poem text, for the comparison below


def case_study(keyword: str) -> pd.DataFrame:
    rows = {}
    for mix in analysis.MIXTURES:
        cells = {}
        for length in (5, 7):
            poem = gen.generate(keyword, length, labels=mix, seed=SEED)[0]
            case_poems[(keyword, length, mix)] = poem.text if poem.ok else None
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
_ = Path(run_dir, "samples.json").write_text(json.dumps(samples, ensure_ascii=False, indent=1), encoding="utf-8")

# %% [markdown]
# Six mixtures, but are they six *different* poems? The beam search is deterministic and the latent noise is the
# same for every mixture, so two mixtures can end in nearly the same poem — for instance two that differ only in the
# era label, when the era half of $z$ moves the decoder too little to change its choices. Count it:

# %%
def differing_chars(a: str, b: str) -> int:
    """Positions (of equally long poems) where the two poems have different characters."""
    return sum(x != y for x, y in zip(a.replace("|", ""), b.replace("|", "")))


rows = []
for kw in keywords:
    for length in (5, 7):
        texts = {mixture_name(m): case_poems[(kw, length, m)] for m in analysis.MIXTURES}
        texts = {m: t for m, t in texts.items() if t}
        pairs = [(a, b, differing_chars(texts[a], texts[b])) for i, a in enumerate(texts) for b in list(texts)[i + 1:]]
        closest = min(pairs, key=lambda x: x[2]) if pairs else ("", "", float("nan"))
        rows.append({"keyword": kw, "length": length, "poems": len(texts), "distinct": len(set(texts.values())),
                     "mean differing chars per pair": np.mean([d for *_, d in pairs]) if pairs else np.nan,
                     "closest pair": f"{closest[0]} / {closest[1]}", "its differing chars": closest[2],
                     "of": 4 * length})
distinct = pd.DataFrame(rows)
distinct.round(1)

# %% [markdown]
# ### 1b · Pushing the mixtures apart: the mixture contrast γ
#
# The decoder starts from $s_0=\tanh\big(W[z;\,h_w;\,d_1(y_1);\,d_2(y_2)]+b\big)$: the mixture reaches it twice,
# through the prior draw $z(y,\varepsilon)$ and through the label embeddings $d_k(y_k)$. Draw all six mixtures
# with the *same* noise $\varepsilon$ and average: $\bar z$ and $\bar d_k$ are what the keyword's six poems share,
# $z(y,\varepsilon)-\bar z$ and $d_k(y_k)-\bar d_k$ what one mixture adds. A **mixture contrast** $\gamma\ge 0$
# scales only the second part:
#
# $$\tilde z=\bar z+(1+\gamma)\big(z(y,\varepsilon)-\bar z\big),\qquad
#   \tilde d_k=\bar d_k+(1+\gamma)\big(d_k(y_k)-\bar d_k\big).$$
#
# Since $W$ is linear, this moves the pre-activation of $s_0$ $(1+\gamma)$ times as far from the mixtures' mean,
# the way classifier-free guidance extrapolates away from an unconditional model. $\gamma=0$ is the model as
# trained and the default of every profile; it is a generation-time choice of the kit, not part of the paper
# ([design §5.10](../docs/design.md#d5.10)), and it changes no weight. The two functions:

# %%
show_source(FactorModelBase.contrast_latent, FactorModelBase.decoder_s0)

# %% [markdown]
# The first keyword, 7-character, under the six mixtures and the values of `CONTRASTS` (same seed, so within a
# column only the labels differ, and along a row only γ); under each poem the judges' verdict as above.

# %%
contrast_gens = {}


def contrast_generator(gamma: float) -> generation.Generator:
    """The notebook's generator with ``gen.mixture_contrast = gamma`` (built once per value)."""
    if gamma not in contrast_gens:
        cfg = dataclasses.replace(profile.gen, mixture_contrast=float(gamma))
        contrast_gens[gamma] = generation.Generator(aus, vocab, training_lines=data.training_lines(), gen_cfg=cfg)
    return contrast_gens[gamma]


grid, hits = {}, []
for gamma in CONTRASTS:
    column = {}
    for mix in analysis.MIXTURES:
        poem = contrast_generator(gamma).generate(keywords[0], 7, labels=mix, seed=SEED)[0]
        if not poem.ok:
            column[mixture_name(mix)] = "(no poem: constraints failed)"
            continue
        tag = judges.classify(judge_models, [poem.text])[0]
        ok = [tag[f]["label"] == mix[k] for k, f in enumerate(config.FACTOR_NAMES)]
        hits.append({"γ": gamma, "living ✓": ok[0], "era ✓": ok[1], "text": poem.text})
        marks = [("✓" if o else "✗") + tag[f]["name"] for o, f in zip(ok, config.FACTOR_NAMES)]
        column[mixture_name(mix)] = "\n".join(poem.lines) + f"\n({' · '.join(marks)})"
    grid[f"γ = {gamma:g}"] = column
display(pd.DataFrame(grid).style.set_caption(f"keyword {keywords[0]}, 7-character").set_properties(
    **{"white-space": "pre-wrap", "text-align": "left"}))
hits = pd.DataFrame(hits)
pd.DataFrame({"poems": hits.groupby("γ").size(),
              "living judged as asked": hits.groupby("γ")["living ✓"].sum(),
              "era judged as asked": hits.groupby("γ")["era ✓"].sum(),
              "distinct characters in the six": hits.groupby("γ")["text"].apply(
                  lambda t: len(set("".join(t).replace("|", ""))))})

# %% [markdown]
# **Reading the contrast.** (The stored outputs of this section come from the same execution and weights as
# section 1, the run's fp32 checkpoints, so the γ = 0 column is section 1's 7-character column of 秋风. Published
# weights, where a notebook loads them, are an int8 copy of a run's checkpoints and can write a line or a poem
# differently.) At γ = 0 the judges read the requested living experience in 5 of the 6 poems and the era in 3
# (with the previously published weights, without the read-out: 2 and 4); at γ = 1 in 6 and 5, at γ = 2 again in 6
# and 5 (军旅·盛世 is read as troubled at every γ), and the six poems use 113, 127 and 136 different characters.
# γ = 1 changes part of some poems (军旅·盛世 two or three characters of every line; 田园·盛世 and 田园·乱世 all but
# their first line, the latter now read as troubled) and rewrites the others: 军旅·乱世 becomes a war poem
# (百战英雄剑戟兵) read as troubled, 其他·盛世, read as military at γ = 0, a poem of letters and the court (文章,
# 圣主, 新诗) read as "other". γ = 2 pushes further and lets each mixture pile up its stock words: the military
# poems are made of 英雄, 慷慨, 胡兵, 战场, 百战, 三军, the countryside ones of 溪, 白鸟, 寒鸦, 野僧, 竹篱茅屋, the
# "other · troubled" one of 梅蕊, 诗酒, 红粉, 锦囊.
#
# What the contrast does over all test keywords was measured on the *previously* published weights, the AUS trained
# without the read-out (`docs/experiments.md` §21; 120 test keywords × 3 seeds of notebook 05): γ = 1 lowered its
# six-mixture word Jaccard from 0.063 to 0.043 and lifted its judged living accuracy from 0.65 to 0.82 (military
# recall 0.49 → 0.70) and era from 0.67 to 0.77, at a price: the character LM's perplexity of its poems rose from
# 120 to 154 (human poems: 594, so they move *towards* the human range, not away from it), doubled characters from
# 11 % to 16 % of the poems, and the N samples of *one* mixture became more alike (0.096 → 0.120): what the mixture
# adds to the start state is scaled up, what the noise adds is not. MixPoet-IGS moved the same way (0.062 → 0.045),
# so the contrast did not make AUS's mixtures more diverse than IGS's. Which of the two paths held the style?
# Contrasting only $z$ gave 0.058 and living 0.68, only the label embeddings 0.044 and 0.80: in those weights the
# style came in through the decoder's direct label input, as in fBasic, and the mixed latent space — the paper's
# mechanism — added little of it. That finding is why the tutorial profile now trains AUS with the latent read-out
# (`docs/experiments.md` §22–§23, §25): each sub-space $z_k$ has to let its label $y_k$ be read back, and the prior's
# mixtures now move $z$ almost as far as its noise does (notebook 04: tr Σ 50 against 64; before, 2.6 against 80).
# The trained model now does at γ = 0 much of what γ = 1 did before (notebook 05: six-mixture word Jaccard 0.052,
# below IGS's 0.062 and CVAE's samples' 0.059; living 0.80, era 0.72; and, as with the contrast, a higher LM
# perplexity, 172 against 119). And the paths have swapped: §21's test repeated on these weights
# (`docs/experiments.md` §25, the same 120 keywords × 3 seeds) gives, for γ = 1 on $z$ only, a six-mixture word
# Jaccard of 0.037 and living / era 0.96 / 0.79; on the label embeddings only 0.047 and 0.83 / 0.71; on both 0.036
# and 0.97 / 0.81. Contrasting $z$ alone now does nearly all that the full contrast does: the mixed latent space
# holds the style, as the paper says it should. That is no licence to turn γ up: accuracies above the judges' own
# scores on human poems (0.87 / 0.72) mark stereotyped text, the samples of one mixture grow more alike (0.106 →
# 0.148), lines recur across keywords again (0.028 → 0.051) and the LM perplexity climbs to 231. It is not the
# paper's method; every profile keeps γ = 0.

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
lm = charlm.ensure_lm(data, profile, run_dir, log=say, published=published)
systems = ["gt", "basic", "cvae", "aus"]
models = {s: load_or_train(s, profile, data, run_dir, train=TRAIN) for s in systems if s != "gt"}
ev = evaluation.evaluate(profile, data, run_dir, models, judge_models, lm, systems=systems,
                         seeds=profile.eval.seeds[:1], progress=False)
k_max = 1000
fig, ax = plt.subplots(figsize=(6.5, 4))
curves = {}
for s in systems:
    texts = [r["text"] for r in ev.poems[(s, ev.seeds[0])].role("inter") if r["ok"]]
    curves[s] = metrics.topk_accumulated_frequency(texts, k_max)
    ax.plot(np.arange(1, k_max + 1), curves[s], label=SYSTEM_TITLES[s],
            lw=2.5 if s in ("gt", "aus") else 1.5, color=plots.system_color(s))
ax.set(xscale="log", xlabel="most frequent K characters", ylabel="accumulated frequency",
       title="top-K accumulated character frequency")
ax.legend()
fig.tight_layout()
plots.save_figure(fig, "06_topk_frequency", RUN)
plt.show()
pd.DataFrame({SYSTEM_TITLES[s]: {f"K={k}": c[k - 1] for k in (10, 50, 100, 500)}
              for s, c in curves.items()}).T.round(3)

# %% [markdown]
# **Reading the curves.** Every generator's curve rises far faster than the human one: in the published
# `tutorial` run the 100 most frequent characters make up 61–81 % of all generated text but about a third of the
# human poems, and by 500 characters Basic and CVAE have used up their whole character inventory and MixPoet-AUS
# nearly (99.4 %), where the human curve is still climbing (78 %). Basic is the most concentrated; MixPoet-AUS is
# now the least (61 % in the top 100 against CVAE's 68 %; the previously published AUS, without the read-out, was
# level with CVAE at 67 %) — all three far from human variety.

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
# **Reading the path.** Do not expect smooth curves. The decoder is discrete: the beam search picks whole
# characters, so a small move of $s_0$ can flip one early character and, through the context, the rest of the
# poem; the judges then read a different poem, not a slightly different one. And the middle of the path feeds
# the decoder mixed label embeddings it never saw in training. So a judge probability can go up and down along
# the path — in the published run the 5-character path's P(prosperous) goes 0.96, 0.87, 1.00, 0.93, 0.95 — and
# the style moves in jumps. The 7-character path starts with a war poem (慷慨, 壮士, 剑, 英雄遗恨) read as military
# (0.97) and troubled (P(prosperous) 0.30), both as asked; by t = 0.25 it is a village poem (鸡犬吠柴扉;
# P(countryside) 0.96, P(prosperous) 0.98); from there on the first line stays, the later lines change, and the
# judges' reading hardly moves. The 5-character path jumps between t = 0.25 and 0.5 (P(military) 0.43 → 0.01), and
# its military · troubled end is not what was asked: the judges hesitate between countryside (0.52) and military
# (0.41) and read it as prosperous (0.96). The countryside · prosperous end matches its mixture at both lengths
# (P(countryside) 0.99 and 1.00, P(prosperous) 0.95 and 0.96). (With the previously published AUS, without the
# read-out, neither military end was read as military: P(military) 0.03 and 0.06.) Where the curves are monotone in
# this run:

# %%
for length in (5, 7):
    sub = walk[walk["length"] == length].drop(columns=["length", "t", "poem"])
    for col in sub.columns:
        v = sub[col].to_numpy()
        steps_ = np.diff(np.round(v, 2))  # changes under 0.01 count as flat
        shape = ("monotone" if (steps_ >= 0).all() or (steps_ <= 0).all()
                 else f"not monotone ({sum(np.diff(np.sign(steps_[steps_ != 0])) != 0)} change(s) of direction)")
        print(f"{length}-character, {col}: {' → '.join(f'{x:.2f}' for x in v)}: {shape}")

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

# %% [markdown]
# ## 5 · The paper's Figures 4a–4d and 5
#
# The paper reads its mixed latent space in five figures; here are their counterparts for this run (files
# `fig4a_…`, `fig4b_…`, `fig4c_…`, `fig4d_…`, `fig5_…` under `figures/`). Fig. 3 (factor control) is drawn in
# notebook 05, which scores every system.
#
# **Fig. 4a — prior samples of one keyword under the six mixtures.** For the keyword 春风 we draw 200 prior samples
# $z\sim p(z\mid w,y)$ per mixture from MixPoet-AUS and from MixPoet-IGS, project all of them on the same two
# principal axes, and colour them by mixture. The number in each title is the separation: the spread *between*
# the six mixtures' centres over the spread *within* a mixture. The paper's claim: AUS separates the mixtures,
# IGS (isotropic Gaussian priors) does not.

# %%
igs = load_or_train("igs", profile, data, run_dir, train=TRAIN)
kw4a = "春风" if all(ch in vocab for ch in "春风") else keywords[0]
views = {s: paper_data.prior_projection(m, vocab, keyword=kw4a, n_per_mixture=200, seed=SEED)
         for s, m in (("aus", aus), ("igs", igs))}
fig = paper_figures.fig4a_prior_samples(views, kw4a, profile=RUN)
plt.show()
ratio = views["aus"].separation / max(views["igs"].separation, 1e-9)
say(f"separation of the six mixtures for {kw4a}: MixPoet-AUS {views['aus'].separation:.2f}, "
    f"MixPoet-IGS {views['igs'].separation:.2f} ({ratio:.0f}× larger for AUS)")

# %% [markdown]
# **Reading Fig. 4a.** The printed line says how much more AUS separates the mixtures than IGS in this run. In the
# published `tutorial` run it is 0.68 against 0.01 (53×): IGS's six clouds lie on top of each other, AUS's are
# shifted apart — the MC&PT samples (blue) lie mostly on the right of the first axis, the OT&PT ones (pink) on the
# left — though they still overlap widely, since the noise spreads each cloud over about ±10–15 units. This is the
# latent read-out's doing (`docs/experiments.md` §22–§23, §25): with each sub-space asked to let its label be read
# back, the mixture moves a prior draw almost as far as the noise does (notebook 04: tr Σ 50 against 64). The
# previously published AUS, without the read-out, separated the mixtures by only 0.03: its clouds lay on top of
# each other as IGS's do, the mixture's part of the spread 2.6 against the noise's 80. (The run before that, without
# the mode-seeking term, had 2.28 and six clearly apart clouds about one unit wide: its prior ignored its noise.)
# So the paper's picture — AUS separates the mixtures, IGS does not — is now there in part: the mixtures' centres
# lie apart, their clouds do not.

# %% [markdown]
# **Fig. 4b — do the generated MC&PT poems bridge the human MC and PT poems?** The paper embeds human poems and
# MixPoet's poems with a neural language model and finds that the poems written under the mixture *military
# career & prosperous times* cover and bridge the regions of human military (MC) and human prosperous (PT) poems.
# Here the language model is the character LM of section 2 (trained on human poems only), a poem's embedding is
# the mean of the LM's top-layer hidden states over its characters, the human poems are the labelled CQCF test
# split ('human MC': military but not prosperous, 'human PT': prosperous but not military, 'human MC&PT': both),
# and the generated poems are MixPoet-AUS's MC&PT poems of the evaluation above (one per test keyword, first
# seed). All poems of one projection have one line length, or the length would be the first thing the
# embedding separates.
#
# The picture is a 2-D projection; the question is answered in the full embedding space. Take the line from the
# human MC centre ($t=0$) to the human PT centre ($t=1$) and place each poem's embedding $e$ on it,
# $t=(e-\bar e_{MC})\cdot(\bar e_{PT}-\bar e_{MC})/\lVert\bar e_{PT}-\bar e_{MC}\rVert^2$. A group that bridges
# the two has its centre at $0<t<1$, *close to the line*, and many poems with $0\le t\le 1$. The tables give every
# distance in units of the MC–PT centre distance: where a group's centre lies along the line (`centre t`) and how
# far from it (`off the line`), its distance to each human centre, the share of its poems between the two
# centres, and its own spread (root-mean-square distance of its poems to its centre).

# %%
def bridge_table(groups: dict) -> pd.DataFrame:
    """Where each group of poems lies relative to the human MC → PT line, in MC–PT centre distances."""
    emb = {g: paper_data.lm_embeddings(lm, poems) for g, poems in groups.items() if poems}
    mc, pt = emb["human MC"], emb["human PT"]
    c_mc, c_pt = mc.mean(axis=0), pt.mean(axis=0)
    unit = float(np.linalg.norm(c_pt - c_mc))
    rows = {}
    for g, e in emb.items():
        centre, t = e.mean(axis=0), paper_data.bridge_position(e, mc, pt)
        foot = c_mc + t.mean() * (c_pt - c_mc)  # the centre's projection on the line (t is linear in e)
        rows[g] = {"poems": len(e), "centre t": t.mean(), "off the line": np.linalg.norm(centre - foot) / unit,
                   "to MC centre": np.linalg.norm(centre - c_mc) / unit,
                   "to PT centre": np.linalg.norm(centre - c_pt) / unit,
                   "share 0 ≤ t ≤ 1": np.mean((t >= 0) & (t <= 1)),
                   "spread": np.sqrt(((e - centre) ** 2).sum(axis=1).mean()) / unit}
    return pd.DataFrame(rows).T.astype({"poems": int})


aus_mc_pt = [r for r in ev.poems[("aus", ev.seeds[0])].role("mixture") if r["ok"] and r["requested"] == [0, 0]]
groups4b = {n: {**paper_data.labelled_human_poems(data, length=n),
                "generated MC&PT": [r["text"] for r in aus_mc_pt if r["length"] == n]} for n in (5, 7)}
tables4b = {n: bridge_table(g) for n, g in groups4b.items() if g["generated MC&PT"]}
# the figure shows the line length whose smaller human group is larger
length4b = max(tables4b, key=lambda n: min(len(groups4b[n]["human MC"]), len(groups4b[n]["human PT"])))
view4b = paper_data.bridge_projection(lm, groups4b[length4b])
fig = paper_figures.fig4b_lm_embedding(view4b, "aus")
fig.axes[0].set_title(f"Fig. 4b · {length4b}-character poems embedded by the character LM")
plots.save_figure(fig, paper_figures.FIGURE_NAMES["fig4b"], RUN)
plt.show()
for length, table in tables4b.items():
    g4b, between = table.loc["generated MC&PT"], table["share 0 ≤ t ≤ 1"]
    say(f"{length}-character poems: the generated MC&PT centre lies at t = {g4b['centre t']:.2f} along the "
        f"MC → PT line and {g4b['off the line']:.2f} MC–PT distances off it; {between['generated MC&PT']:.0%} "
        f"of the generated poems lie between the two human centres (human MC {between['human MC']:.0%}, "
        f"human PT {between['human PT']:.0%})")
    display(table.round(2))

# %% [markdown]
# **Reading Fig. 4b.** In this run the generated poems do **not** bridge the human ones. Three things the
# tables of the published `tutorial` run show:
#
# * The character LM barely tells human MC from human PT poems: the two centres are one unit apart while each
#   group's poems spread about four units around their centre, so the two human groups are one overlapping cloud
#   (grey triangles and squares in the picture).
# * MixPoet-AUS's MC&PT poems form a cloud of their own beside it, overlapping it only in part: their centre is 1.5
#   (5-character) and 2.0 (7-character) units off the MC → PT line, farther from either human centre (1.5 and 2.0
#   units from the nearer one, PT) than the two human centres are from each other. Along the line it sits at
#   t = 1.08 and 0.97, at the PT end (the previously published AUS, without the read-out: 1.93 and 1.36, beyond
#   it), so it has come nearer the two human centres, but it lies off the line by more than the line is long.
#   Only 12 % (5-character) and 17 % (7-character) of the generated poems fall between the two human centres
#   (before: 10 % and 10 %; human MC poems 31 % and 18 %, human PT 23 % and 9 %).
# * What the embedding sees first is that a poem was generated, not which mixture was asked for: the generated
#   poems share the generic, concentrated vocabulary of section 2 and Fig. 4c.
#
# So the paper's picture — MC&PT poems covering and joining the MC and PT regions — does not appear here. Two
# limits of the check: the human MC&PT poems that would show where real mixed poems lie are only 5 and 4 in
# the public test split, too few to place; and the embedding is this kit's small character LM, and another
# language model might separate the human groups better.
#
# **Fig. 4c — how concentrated the words are.** The curve of the top-k accumulated *word* frequency (jieba words,
# the paper's unit) over the inter-topic poems of section 2. The paper: Basic's five most frequent words cover
# more than 10 % of its output, MixPoet's curve is flatter.

# %%
word_curves = {s: metrics.topk_accumulated_frequency(
    [r["text"] for r in ev.poems[(s, ev.seeds[0])].role("inter") if r["ok"]], 50, unit="word") for s in systems}
fig = plots.topk_words_figure(word_curves)
plots.save_figure(fig, plots.FIG4C_NAME, RUN)
plt.show()
say("share of all words taken by the 5 most frequent: "
    + ", ".join(f"{SYSTEM_TITLES[s]} {c[4]:.1%}" for s, c in word_curves.items()))

# %% [markdown]
# **Reading Fig. 4c.** Compare the printed top-5 shares: the human poems spread their words thinly (3 % in the
# top five), every generator concentrates far more. In the published run Basic is the most concentrated (10.3 %,
# the paper's "more than 10 %"); MixPoet-AUS (6.0 %; 6.2 % before the read-out) is flatter than Basic but *not*
# flatter than CVAE (5.5 %), so the paper's ordering (MixPoet flattest) holds against Basic only; from about the
# top twenty words on, the two curves are level. (Before CVAE trained with β → 0.01, notebook 03, its share was
# 7.0 % and AUS was the flattest generator by a small margin.) Every generator is still about two to three times the
# human share.

# **Fig. 4d — which keywords call for which mixture.** The keyword classifier $p(y\mid w)$ of MixPoet-AUS, run on
# the keywords of the corpus, ranks for each mixture the keywords it finds most probable. If the model learned
# the factors, military keywords (边, 塞, 征, 剑) should top the military mixtures and rural ones (田, 农, 桑)
# the countryside mixtures.

# %%
cands = paper_data.candidate_keywords(data)
probs4d = paper_data.keyword_mixture_probs(aus, vocab, cands)
top4d = paper_data.top_keywords(cands, probs4d, k=8)
fig = paper_figures.fig4d_keyword_mixtures(top4d, "aus", profile=RUN)
plt.show()
pd.DataFrame({name: [w for w, _ in ranked] for name, ranked in top4d.items()})

# %% [markdown]
# **Reading Fig. 4d.** Read the table column by column. $p(y\mid w)$ only sees the keyword, and in this kit it
# reaches about 0.50 accuracy on living experience and 0.52 on era (notebook 03; for era no better than always
# guessing the majority class), so the rankings are noisy, and no keyword gets more than about 0.5 for any
# mixture. In the published run the military columns carry war words: 英雄 (heroes) leads both, with 将军 and 豪杰
# (generals, champions), and 战场 and 旌旗 (battlefield, banners) under MC&TT — though still not the frontier words 边
# or 塞, and with bare characters such as 大 and 悲 (great, grief) among them. The countryside columns are clear
# too: streams and green hills under CL&PT (溪山, 青山, 溪云, 溪桥), villages and closed gates under CL&TT (山村,
# 烟村, 柴扉, 掩扉, 掩关). The "other" columns gather jade halls and towers (玉堂, 玉楼, 玉阶, 玉壶), elixirs and
# immortals (金丹, 真人, 仙人) and, under OT&TT, poetry (诗思, 诗情). The two military columns share four of their
# eight keywords, the two "other" columns four, the two countryside columns none; MC&TT's 遗民 and 铜驼 (the
# subjects and the bronze camels of a fallen dynasty) fit troubled times, but with an era classifier at chance level
# such fits may be luck. The paper's figure comes from a model trained two orders of magnitude longer.
#
# **Fig. 5 — case studies.** The paper shows one keyword under MC&PT (heroism, confidence) and MC&TT
# (desolation), with the phrases that carry each factor marked, and Basic repeating whole lines across keywords.
# Here the marks come from the independent judges by occlusion: each character is deleted in turn and the
# characters whose deletion lowers the judge's probability of the requested class most are marked (living
# experience and era in their own colours). The last panel lists the lines Basic wrote for more than one keyword.

# %%
cases = []
for mix in ((0, 0), (0, 1)):
    text = case_poems.get((keywords[0], 7, mix))
    if text:
        cases.append(("aus", f"{keywords[0]} · {paper_data.mixture_name(mix)}",
                      paper_data.factor_attribution(judge_models, text, mix)))
basic_texts = [r["text"] for r in ev.poems[("basic", ev.seeds[0])].role("inter") if r["ok"]]
repeats = paper_data.repeated_lines(basic_texts)[:6]
if cases:
    fig = paper_figures.fig5_case_studies(cases, repeats, profile=RUN)
    plt.show()
say(f"Basic reuses {len(paper_data.repeated_lines(basic_texts))} line(s) across the "
    f"{len(basic_texts)} inter-topic poems; the most repeated: "
    + ("; ".join(f"{line} ×{n}" for line, n in repeats[:3]) or "none"))

# %% [markdown]
# **Reading Fig. 5.** The marked characters are the judges' reasons, not the model's. Where they would be
# frontier or war words (征, 戍, 剑, 烽) under a military request, the style would be carried by content, as in
# the paper. In the published run the 秋风 MC&PT poem gets there: a war poem (英雄, 慷慨, 战马, 旌旗), read as
# military with 0.97, and its living marks are 英, 雄 and 泪 (heroes, tears) — content, not function characters.
# Its era is not the asked one: the era judge gives prosperous only 0.37 (heroes' relics, tears, sunset over the
# walls), the heroism and confidence of the paper's MC&PT poem are not there, and the era marks (蹄, 郭, 阳) mean
# little. The MC&TT poem is a traveller's poem (白云, 万里归, 回首江南) with one military line at the end (英雄遗恨,
# the heroes' lasting regret): the living judge gives military only 0.52, and its marks are that line's 英, 雄, 恨;
# the era judge gives troubled 0.19, reading it as prosperous (one mark, 首), and the desolation of the paper's
# MC&TT poem is not there. (With the previously published AUS, without the read-out, neither poem had a war word
# and the living judge gave military 0.25 and 0.20.) The printed count of Basic's reused lines is the paper's
# Fig. 5a failure (36 lines reused, 何处是谁家 four times, even with the anti-generic search); the kit's line-level
# repetition measure over all systems is `shared_lines` in notebook 05.

# %%
# Checks that fail loudly if the case study did not work.
assert len(walk) == 2 * STEPS
assert (distinct["distinct"] >= 2).all(), "all six mixtures of a keyword gave the same poem"
assert all(0 < c[0] <= c[-1] <= 1.0 + 1e-9 for c in curves.values()), "accumulated frequency out of range"
assert all(np.all(np.diff(c[np.isfinite(c)]) >= -1e-12) for c in curves.values()), "accumulated frequency must rise"
ok_rate = np.mean([r["ok"] for s in systems if s != "gt" for r in ev.poems[(s, ev.seeds[0])].role("inter")])
assert ok_rate > 0.8, f"only {ok_rate:.0%} of the poems were generated"  # smoke and tutorial (measured): 100 %
assert tables4b and all(np.isfinite(t.to_numpy(float)).all() for t in tables4b.values()), "Fig. 4b: no numbers"

# %% [markdown]
# ## Summary
#
# * The six mixtures of one keyword, from the same latent noise, give poems that differ — in this run clearly:
#   the table after the case study counts the distinct ones and how many characters separate each pair (in
#   the published run all six are distinct for both keywords and lengths, and even the closest pair of a row
#   differs in 16 of 20 characters; 13 with the previously published AUS, without the read-out). The judges' ticks
#   show how often the requested style is recognisable: here 7 of the 8 countryside poems are read as countryside,
#   6 of the 8 military ones as military (before the read-out 2) and 6 of the 8 "other" ones as other; the era
#   less often, 13 of 24, the troubled one in only 4 of 12 (notebook 05 measures it over all keywords).
# * Pushing the mixtures apart (§1b, mixture contrast γ): for 秋风 the judges read the requested living experience
#   in 5, 6 and 6 of the six poems at γ = 0, 1, 2 and the era in 3, 5 and 5, and γ = 2 piles up each class's stock
#   words. Over all test keywords it was measured only on the previously published weights, without the read-out:
#   there γ = 1 lifted MixPoet-AUS's living accuracy from 0.65 to 0.82, IGS's as much, at a cost in fluency, and
#   nearly all of it through the label embeddings, not $z$. The tutorial AUS now trains with the latent read-out,
#   which makes $z$ carry the mixture, and reads 0.80 at γ = 0 (notebook 05); on these weights the contrast works
#   through $z$ (γ = 1 on $z$ alone: living 0.96, six-mixture Jaccard 0.037; on the label embeddings alone 0.83,
#   0.047; `docs/experiments.md` §25). The contrast is an option, off in every profile.
# * The top-K curves compare how concentrated each system's vocabulary is against human poems: MixPoet-AUS is now
#   the least concentrated generator (61 % of its text in the top 100 characters, CVAE 68 %, Basic 81 %), all far
#   above the human poems (37 %).
# * Moving along a straight line between two mixtures changes the poem in jumps, and the judges' probabilities
#   need not move monotonically (in the published run the 7-character living probabilities and the 5-character
#   P(countryside) do, each in one jump rather than gradually; P(prosperous) does not at either length): the
#   decoder is discrete and the middle of the path is outside what it was trained on.
# * Of the paper's figures, Fig. 4c's ordering is there only in part (Basic above 10 %, MixPoet-AUS far flatter than
#   Basic, but not flatter than CVAE, 6.0 % against 5.5 %); the separated AUS prior of Fig. 4a is now there in part
#   (separation 0.68 against IGS's 0.01, 0.03 before the read-out: the mixtures' centres lie apart, their clouds
#   still overlap); the bridge of Fig. 4b is not: in the character LM's embedding MixPoet-AUS's MC&PT poems lie
#   near the PT end of the line from the human MC to the human PT centre, but off it by more than its length, and
#   few of them between the two centres.
#
# ## Exercises
#
# 1. Interpolate between two mixtures that differ in one factor only (e.g. `MIX_FROM=[0, 0]`,
#    `MIX_TO=[0, 1]`). Which judge probability moves?
# 2. Interpolate only $z$ and keep the label embeddings of A. What changes?
# 3. Compare the top-K curve of MixPoet-AUS when every poem is written under the same mixture with the
#    curve over all six mixtures.
# 4. Keyword against label: take the first keyword of a military column of Fig. 4d and ask for it under a
#    countryside mixture (`write_poems(keyword, 7, "countryside", "prosperous", n=4)`), then a countryside keyword
#    under a military mixture. Do the judges follow the keyword or the requested label?
# 5. Which path carries the style in MixPoet-IGS, which trains without the read-out? Run
#    `scripts/contrast_sweep.py --weights weights/tutorial --gammas 1 --systems igs --path latent --out …` (about
#    ten minutes on two cores), then `--path labels`, and compare with AUS's answer (`docs/experiments.md` §25).
#    `docs/experiments.md` §27 has the kit's own run of this exercise to check yours against.
