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
# # 04 · MixPoet-AUS: a mixed latent space matched by a discriminator
#
# MixPoet-IGS (notebook 03) gives every factor sub-space a Gaussian prior and posterior. The paper's
# model, MixPoet-AUS, drops the Gaussian assumption: both distributions are **implicit samplers** —
# networks fed with Gaussian noise — and the KL term, which has no closed form for such samplers, is
# replaced by an **adversarial game** between posterior and prior samples, conditioned on the labels.
# This notebook trains it (phases C1 and C2 of [design §4.1](../docs/design.md#d4.1)), shows its training curves and the official
# diagnostics, and looks at the mixed latent space itself.

# %% tags=["parameters"]
PROFILE: str = None  # smoke | tutorial | full (None: $MIXPOET_PROFILE, else tutorial)
OVERRIDES: str = ""  # changed settings, e.g. "model.latent_size=64,train.ndis=5" (README, "Profiles")
RUN_DIR: str = None  # where checkpoints and logs go (None: runs/<profile>)
SEED: int = 1234  # seed of every random choice in this notebook
KEYWORD: str = "秋风"  # keyword whose prior samples are projected in section 4

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from mixpoet_lib.evaluate import analysis
from mixpoet_lib import config, paths
from mixpoet_lib.overrides import run_name
from mixpoet_lib.generate.greedy import greedy_decode
from mixpoet_lib.models import losses
from mixpoet_lib import plots
from mixpoet_lib.train import logs
from mixpoet_lib.train import loop as training
from mixpoet_lib.notebook import setup

profile, data = setup(PROFILE, SEED, OVERRIDES)
RUN = run_name(profile.name, OVERRIDES)  # the profile's name, or <profile>-<digest> when settings are changed
RUN_DIR = RUN_DIR or str(paths.runs_dir(RUN))
vocab = data.vocab
print(f"straight-through labels: {profile.train.straight_through_labels}")

# %% [markdown]
# ## 1 · Implicit prior and posterior
#
# For each factor $k$ the prior sampler draws $\varepsilon\sim\mathcal N(0,I)$ and maps it, together with
# the keyword encoding $h_w$ and the label $y_k$, through a small network whose batch normalisation is
# **class-conditional** (its scale and shift are looked up from $y_k$):
#
# $$z_k = g_k(\varepsilon, h_w, y_k),\qquad z=[z_1;z_2].$$
#
# The posterior sampler does the same with the poem encoding $h_x$ as an extra input. Neither has a
# density we can evaluate, so $\operatorname{KL}(q\,\|\,p)$ cannot be computed. What we *can* do is
# draw samples from both and train a discriminator to tell them apart.
#
# ## 2 · Adversarial matching instead of the KL
#
# The discriminator is a projection discriminator with spectral normalisation on every layer:
# $D(z,y)=w^\top\phi(z)+\langle\phi(z),[e_1(y_1);e_2(y_2)]\rangle$. MixPoet uses the **relativistic**
# standard GAN loss, with posterior samples as "real" and prior samples as "fake", and Gaussian
# instance noise $n,n'$ of decaying standard deviation $\sigma$:
#
# $$\mathcal L_D=-\mathbb E\,\log\sigma\bigl(D(z_{\text{post}}+n,y)-D(z_{\text{prior}}+n',y)\bigr),\qquad
#   \mathcal L_G=-\mathbb E\,\log\sigma\bigl(D(z_{\text{prior}}+n',y)-D(z_{\text{post}}+n,y)\bigr).$$
#
# Each batch makes one reconstruction/classifier update (the notebook-03 terms without any KL), then,
# after a reconstruction-only warm-up, three discriminator updates and one update of prior *and*
# posterior against $\mathcal L_G$: the two move towards each other — a symmetric, sample-based stand-in
# for the KL. A hand check of the loss on known scores, $D(\text{real})=2$, $D(\text{fake})=0$:

# %% tags=["nbval-check-output"]
d_loss = losses.relativistic_d_loss(torch.tensor([2.0]), torch.tensor([0.0])).item()
g_loss = losses.relativistic_g_loss(torch.tensor([2.0]), torch.tensor([0.0])).item()
print(f"L_D = {d_loss:.4f} (−log σ(2) = {-np.log(1 / (1 + np.exp(-2))):.4f});  "
      f"L_G = {g_loss:.4f} (−log σ(−2) = {-np.log(1 / (1 + np.exp(2))):.4f})")

# %% [markdown]
# ### Sampling the missing labels
#
# For a factor a poem is not labelled for, the label is drawn from $q(y_k\mid x,w)$ with the Gumbel-max
# trick. The official code takes the argmax and casts it to an integer index, so **no gradient reaches
# the classifier through the sampled label**, and the Gumbel temperature τ — annealed in the logs — has no
# effect on the sample ([design §3.8](../docs/design.md#d3.8)). The kit reproduces that behaviour by default
# (`straight_through_labels=False`): it is what the published model did. The flag switches to a
# straight-through one-hot, through which the reconstruction does train the classifier; notebook 05
# compares both (`aus` vs `aus_st`).

# %%
aus = training.ensure_model("aus", profile, data=data, run_dir=RUN_DIR, progress=False)
c1 = logs.read_log("aus", "c1", profile, run_dir=RUN_DIR)
c2 = logs.read_log("aus", "c2", profile, run_dir=RUN_DIR)
log = pd.concat([c1, c2.assign(step=c2["step"] + c1["step"].max())], ignore_index=True)
val = pd.concat([logs.read_log("aus", "c1", profile, run_dir=RUN_DIR, valid=True),
                 logs.read_log("aus", "c2", profile, run_dir=RUN_DIR, valid=True)
                 .pipe(lambda d: d.assign(step=d["step"] + c1["step"].max()))], ignore_index=True)
print(f"C1 {len(c1)} steps, C2 {len(c2)} steps; last validation perplexity {val['val_ppl'].iloc[-1]:.1f}")

# %% [markdown]
# ## 3 · Training curves and the official diagnostics
#
# Besides the losses, the official trainer tracks two distances every 40 batches ([design §4.8](../docs/design.md#d4.8)), which the
# kit computes in evaluation mode so they do not disturb the batch-norm statistics:
#
# * **prior–posterior distance** — the mean Mahalanobis distance of posterior samples from a Gaussian
#   fitted to prior samples, for one training instance (lower: the matching works);
# * **distance between mixtures** — the mean symmetric Mahalanobis distance between the prior samples
#   of the 6 factor mixtures for one keyword (higher: mixtures are better separated).

# %%
roll = log.rolling(max(1, len(log) // 40), min_periods=1).mean()
fig, axes = plt.subplots(2, 3, figsize=(14, 7))
warm = profile.train.rec_warm_steps
axes[0, 0].plot(log["step"], roll["rec"])
axes[0, 0].set(title="reconstruction loss", xlabel="step")
axes[0, 1].plot(log["step"], roll["d_loss"], label="discriminator $L_D$")
axes[0, 1].plot(log["step"], roll["g_loss"], label="prior/posterior $L_G$")
axes[0, 1].axvline(warm, color="grey", ls=":", label="adversarial steps start")
axes[0, 1].set(title="adversarial losses", xlabel="step")
axes[0, 1].legend()
axes[0, 2].plot(log["step"], roll["xw"], label="supervised CE")
axes[0, 2].plot(log["step"], roll["ent"], label="entropy term")
axes[0, 2].plot(log["step"], roll["w"], label="keyword CE")
axes[0, 2].set(title="classifier terms", xlabel="step")
axes[0, 2].legend()
diag = log.dropna(subset=["diag_prior_post"])
axes[1, 0].plot(diag["step"], diag["diag_prior_post"], ".-", alpha=0.6, label="raw")
axes[1, 0].plot(diag["step"], diag["diag_prior_post"].expanding().mean(), label="cumulative mean (official plot)")
axes[1, 0].set(title="prior–posterior distance", xlabel="step")
axes[1, 0].legend()
axes[1, 1].plot(diag["step"], diag["diag_mixture"], ".-", alpha=0.6, label="raw")
axes[1, 1].plot(diag["step"], diag["diag_mixture"].expanding().mean(), label="cumulative mean")
axes[1, 1].set(title="distance between mixtures", xlabel="step")
axes[1, 1].legend()
axes[1, 2].plot(log["step"], log["tau"], label="Gumbel τ")
axes[1, 2].plot(log["step"], log["sigma"].where(log["step"] > warm), label="instance noise σ")
axes[1, 2].plot(log["step"], log["tf_ratio"], label="teacher forcing")
axes[1, 2].set(title="schedules", xlabel="step")
axes[1, 2].legend()
fig.tight_layout()
plots.save_figure(fig, "04_aus_training", RUN)
plt.show()

# %% [markdown]
# ## 4 · The mixed latent space
#
# For one keyword we draw prior samples under each of the 6 mixtures $(y_1,y_2)$ and project them to two
# dimensions with PCA (t-SNE would need an extra dependency and is not deterministic across versions).
# Left: the whole code $z$ coloured by mixture. Middle and right: each half coloured by its own factor —
# if the sub-spaces are disentangled, the living-experience half separates by $y_1$ and the era half by
# $y_2$. The separation ratio (between-group over within-group scatter) puts a number on it.

# %%
n = 64 if profile.name == "smoke" else 512
z, y = analysis.mixture_prior_samples(aus, vocab, KEYWORD, n_per_mixture=n, seed=SEED)
half = z.shape[1] // 2
names = {f: config.FACTOR_CLASSES_ZH[f] for f in config.FACTOR_NAMES}
mix_names = np.array([f"{names['living'][a]}·{names['era'][b]}" for a, b in y])
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
for ax, (part, colour, title) in zip(axes, ((z, mix_names, "whole z, by mixture"),
                                            (z[:, :half], np.array([names["living"][a] for a in y[:, 0]]), "living sub-space, by living"),
                                            (z[:, half:], np.array([names["era"][b] for b in y[:, 1]]), "era sub-space, by era"))):
    proj, ratio = analysis.pca_2d(part)
    for value in dict.fromkeys(colour):
        sel = colour == value
        ax.scatter(proj[sel, 0], proj[sel, 1], s=6, alpha=0.6, label=value, rasterized=True)
    ax.set(title=f"{title}\n(PC1+PC2: {ratio.sum():.0%} of variance)", xticks=[], yticks=[])
    ax.legend(markerscale=3, fontsize=8)
fig.suptitle(f"prior samples for the keyword {KEYWORD}")
fig.tight_layout()
plots.save_figure(fig, "04_latent_space", RUN)
plt.show()
sep = pd.Series({
    "whole z by mixture": analysis.separation_ratio(z, mix_names),
    "living half by living": analysis.separation_ratio(z[:, :half], y[:, 0]),
    "living half by era": analysis.separation_ratio(z[:, :half], y[:, 1]),
    "era half by era": analysis.separation_ratio(z[:, half:], y[:, 1]),
    "era half by living": analysis.separation_ratio(z[:, half:], y[:, 0]),
}, name="separation ratio")
print(sep.round(3).to_string())

# %% [markdown]
# ## 5 · One keyword, six mixtures
#
# The same keyword decoded greedily (no form constraints yet; notebook 06 does it properly) from one
# prior sample under each mixture:

# %%
for a, b in analysis.MIXTURES:
    lines = greedy_decode(aus, vocab, KEYWORD, 7, labels=(a, b), seed=SEED)
    print(f"{config.label_name('living', a, zh=True)}·{config.label_name('era', b, zh=True)}: {' | '.join(lines)}")

# %%
assert np.isfinite(log["rec"]).all() and np.isfinite(log["d_loss"].dropna()).all()
assert log["rec"].iloc[-max(1, len(log) // 10):].mean() < log["rec"].iloc[: max(1, len(log) // 10)].mean(), \
    "the reconstruction loss did not fall"
if profile.name != "smoke":
    assert sep["living half by living"] > sep["living half by era"], "the living sub-space does not follow its factor"
    assert sep["era half by era"] > sep["era half by living"], "the era sub-space does not follow its factor"

# %% [markdown]
# ## Summary
#
# * MixPoet-AUS replaces Gaussian priors/posteriors by implicit samplers and the KL by a label-conditioned
#   relativistic GAN on the latent space; instance noise keeps the early game stable.
# * Each factor owns half of $z$; the diagnostics and the projections show whether the halves follow their
#   factors and whether the prior and posterior meet.
# * By default missing labels are sampled the official, non-differentiable way; the straight-through
#   variant is an ablation.
#
# ## Exercises
#
# 1. Train `aus_st` (`training.ensure_model("aus_st", profile)`) and compare its classifier terms and
#    separation ratios with `aus`.
# 2. Set `ndis` to 1 in a copy of the profile. What happens to the discriminator loss?
# 3. The prior–posterior distance uses a covariance fitted on 512 samples in a 256-dimensional space. Why
#    is regularising it necessary, and how does the shrinkage change the numbers?
