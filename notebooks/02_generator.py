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
# # 02 · The generator: an encoder–decoder that writes a quatrain line by line
#
# Every model in this kit — the Basic baseline, the CVAE, MixPoet-IGS and MixPoet-AUS — shares one
# network that turns a *conditioning vector* into four lines of verse. This notebook builds that
# network, explains each of its inputs, and pre-trains it as a **denoising auto-encoder** (phase A of the
# paper's training, [design §4.1](../docs/design.md#d4.1)). The later notebooks only change what the conditioning vector is.
#
# | piece | what it computes | size (paper) |
# |---|---|---|
# | character embedding | $e(c)\in\mathbb R^{E}$ (one table for poem, keyword and decoder input) | $E=256$ |
# | poem encoder (bidirectional GRU) | $h_x=[\overrightarrow{h}_T;\overleftarrow{h}_1]$ over `<B>` + 4 lines + `<E>` | $2H=1024$ |
# | keyword encoder (bidirectional **tanh RNN**, not a GRU) | $h_w$ over `<B>` keyword `<E>` | $2E=512$ |
# | decoder input (`map_x`) | $u_t=\tanh\bigl(W_x[e(x_{t-1});c_i]\bigr)$ | $E+C\to H$ |
# | line decoder (GRU) | $s_t=\operatorname{GRU}(u_t,\,s_{t-1})$ | $H=512$ |
# | output projection | $p(x_t\mid x_{<t},\dots)=\operatorname{softmax}(W_o s_t)$ | $H\to\lvert V\rvert$ |
# | inter-line context | $c_{i+1}=\tanh\bigl(W_c[c_i; f(s^{(i)}_{1..T})]\bigr)$, $c_1=0$ | $C=512$ |
#
# Dropout (0.15) sits on the encoders' input embeddings and on $u_t$. There is no attention: the only
# way an earlier line reaches a later one is the context vector $c_i$.

# %% tags=["parameters"]
PROFILE: str = None  # smoke | tutorial | long | full (None: $MIXPOET_PROFILE, else tutorial)
OVERRIDES: str = ""  # changed settings, e.g. "model.latent_size=64,train.ndis=5" (README, "Profiles")
RUN_DIR: str = None  # where checkpoints and logs go (None: runs/<profile>-local)
SEED: int = 1234  # seed of every random choice in this notebook
TRAIN: bool = False  # False: load the published weights of the profile when they exist; True: train here

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mixpoet_lib.data import batching
from mixpoet_lib import config
from mixpoet_lib.overrides import run_name
from mixpoet_lib.generate.greedy import greedy_decode
from mixpoet_lib.models import generators as models
from mixpoet_lib.models import layers
from mixpoet_lib import plots
from mixpoet_lib.train import schedules
from mixpoet_lib.models import losses
from mixpoet_lib.models.generators import BasicGenerator, PoetBase
from mixpoet_lib.notebook import (
    load_or_train, notebook_run_dir, pretrained_or_logged, run_log, setup, show_source,
)
from mixpoet_lib.train import steps

profile, data = setup(PROFILE, SEED, OVERRIDES)
RUN = run_name(profile.name, OVERRIDES)  # the profile's name, or <profile>-<digest> when settings are changed
RUN_DIR = notebook_run_dir(RUN, RUN_DIR)  # the committed reference run is only read
vocab = data.vocab

# %% [markdown]
# ## 1 · Conditioning: keyword, length and line position
#
# MixPoet decodes each of the four lines separately. A model first squeezes its conditioning input $c$
# into a start vector, once per poem,
#
# $$\tilde s=\tanh(W_s\,c)\in\mathbb R^{H-6},$$
#
# where $c=[h_x;h_w]$ for the DAE (the keyword and the *corrupted* poem), $c=h_w$ for the Basic model and
# $c=[z;h_w;d_1(y_1);d_2(y_2)]$ for MixPoet (latent code, keyword, factor labels). Line $i$ then starts its
# GRU from
#
# $$s^{(i)}_0=\bigl[\,\tilde s;\ \ell;\ \pi_i\,\bigr]\in\mathbb R^{H},$$
#
# the tanh output *followed by* two one-hots that no weight matrix touches: $\ell$, the 2-dimensional length
# one-hot ([1, 0] for seven characters, [0, 1] for five — the official order), and $\pi_i$, the one-hot of
# the line position. Length and position are the only reason line 3 of a seven-character poem knows it
# must stop after seven characters and not rhyme. The code, for the DAE and for every model:

# %%
show_source(BasicGenerator.decoder_s0, PoetBase.init_decoder_state)

# %% [markdown]
# One decoder step, $u_t=\tanh(W_x[e(x_{t-1});c_i])$, then the GRU and the output projection (generation
# calls exactly this; training runs the same maths for all positions at once in `PoetBase.decode`):

# %%
show_source(PoetBase.decode_step)

# %% [markdown]
#
# The paper-size network, built here with a fixed vocabulary of 5,547 characters (the size the official
# preprocessing gave on its data), has this many parameters per module:

# %% tags=["nbval-check-output"]
paper = models.BasicGenerator(config.get_profile("full").model, vocab_size=5547)
sizes = {name: layers.count_parameters(module) for name, module in paper.named_children()}
print(pd.Series(sizes, name="parameters").to_string())
print(f"total: {layers.count_parameters(paper):,}")

# %% [markdown]
# ## 2 · Denoising: why corrupt the input poem?
#
# In phase A the decoder is trained to rewrite a poem from the keyword and an encoding of the poem
# itself. Without noise this is a copy task: the encoder would store the characters and the decoder
# would learn nothing about verse. So ⌈10 %⌉ of the input characters are replaced by `UNK` (2 of 20
# for a five-character poem, 3 of 28 for a seven-character one) and the model must restore them:
#
# $$\mathcal L_{\text{rec}}=-\frac14\sum_{i=1}^{4}\frac{1}{\lvert x^{(i)}\rvert}\sum_{t}\log p\bigl(x^{(i)}_t\mid x^{(i)}_{<t},\,c_i,\,s^{(i)}_0(\tilde x, w)\bigr),$$
#
# the per-line mean cross-entropy over the line's characters and its `<E>`, averaged over the four lines
# (padding never counts). That is the whole objective of phase A, $\mathcal L_{\text{DAE}}=\mathcal L_{\text{rec}}$,
# and, on clean poems and without $h_x$, of the Basic model. The loss, then the step that minimises it — the
# function the training loop calls for every batch:

# %%
show_source(losses.line_cross_entropy, steps.dae_step, steps.basic_step)

# %% [markdown]
# The corruption is drawn from a seeded generator per batch, so a resumed run sees exactly the corrupted
# inputs an uninterrupted run would have seen:

# %%
arrays = data.arrays("cqcf_train")
rng = np.random.default_rng(SEED)
clean = batching.make_batch(arrays, np.array([0, 1]))
noisy = batching.make_batch(arrays, np.array([0, 1]), corrupt_ratio=profile.train.dae_corrupt_ratio, rng=rng)
show = lambda ids: "".join("□" if i == 1 else vocab.tokens[i] for i in ids.tolist() if i > 3 or i == 1)
for a, b in zip(clean["poems"], noisy["poems"]):
    print(show(a), "→", show(b))

# %% [markdown]
# ## 3 · Teacher forcing and scheduled sampling
#
# During training the decoder normally sees the *gold* previous character (teacher forcing). At
# generation time it sees its own predictions, so errors compound ("exposure bias"). Scheduled sampling
# closes the gap: at each time step one Bernoulli($r$) draw decides, for the whole batch, whether the
# decoder is fed the gold character or the argmax of its own previous output (no gradient through that
# choice). The ratio is updated once per epoch, and the value set at the end of epoch $e-1$ is the one
# used *during* epoch $e$ (epochs counted from 1), so with burn-in $b$, decay $d$ and floor $r_{\min}$:
#
# $$r_e=\begin{cases}1 & e-1\le b\\ \max\bigl(e^{-\alpha (e-1)},\,r_{\min}\bigr),\ \alpha=-\ln r_{\min}/d & \text{otherwise.}\end{cases}$$
#
# With the official DAE values ($b=2$, $d=6$, $r_{\min}=0.85$) epochs 1–3 run at 1, epoch 4 at
# $e^{-3\alpha}=0.922$, epoch 5 at $e^{-4\alpha}=0.897$ — the list printed below, indexed by the epoch that
# uses the value. The learning rate warms up linearly, then decays as $(\text{warm-up}/s)^{0.55}$ ([design §4.3](../docs/design.md#d4.3), [§4.2](../docs/design.md#d4.2)).
# Both are pure functions of the library, checked here against the official values:

# %% tags=["nbval-check-output"]
dae = config.get_profile("full").train.dae
ratios = [round(schedules.teacher_forcing_ratio(e, dae.tf_burn_in, dae.tf_decay, dae.tf_min), 3) for e in range(1, 11)]
print("official DAE teacher-forcing ratio per epoch:", ratios)
mix = config.get_profile("full").train.mixture
lrs = {s: f"{schedules.learning_rate(s, mix.lr_max, mix.lr_min, mix.warmup_steps, mix.decay_exponent):.3g}"
       for s in (1, 3000, 6000, 12000, 18000)}
print("official mixture learning rate at step s:", lrs)
assert ratios == [1.0, 1.0, 1.0, 0.922, 0.897, 0.873, 0.85, 0.85, 0.85, 0.85]

# %% [markdown]
# The official schedules were made for 10 epochs of 869–1,512 batches on a GPU. The `tutorial` profile
# keeps their shape but compresses them (shorter warm-up, fewer steps, a larger peak learning rate) so
# that the network learns something useful in minutes on a laptop CPU:

# %%
pd.DataFrame({name: {"batch": p.batch_size, "max steps": p.max_steps, "lr max": p.lr_max, "warm-up": p.warmup_steps}
              for name, p in (("official (full)", config.get_profile("full").train.dae), (profile.name, profile.train.dae))}).T

# %% [markdown]
# ## 4 · Pre-training (phase A)
#
# The DAE itself is not published — only the generators built on it are — so with `TRAIN=False` and the
# published weights of this profile present, the next cell shows the training log of the published run
# (committed under `runs/<profile>/logs/`) instead of spending ≈ 11 minutes re-training it. With `TRAIN=True`,
# or without published weights (the `smoke` profile, changed settings), it trains the DAE here. Training is
# resumable: kill the kernel mid-way and rerun the cell, and it continues from its last checkpoint to the same
# final weights.

# %%
dae_model = pretrained_or_logged("dae", profile, data, RUN_DIR, train=TRAIN)
log = run_log("shared", "dae", profile, RUN_DIR)
val = run_log("shared", "dae", profile, RUN_DIR, valid=True)
print(f"{len(log)} steps; last validation: loss {val['val_rec'].iloc[-1]:.3f}, perplexity {val['val_ppl'].iloc[-1]:.1f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
smooth = log.rolling(max(1, len(log) // 50), min_periods=1).mean()
axes[0].plot(log["step"], smooth["loss"], label="train (smoothed)")
axes[0].plot(val["step"], val["val_rec"], "o-", label="validation")
axes[0].set(title="reconstruction loss", xlabel="step")
axes[0].legend()
axes[1].plot(val["step"], val["val_ppl"], "o-")
axes[1].set(title="validation perplexity", xlabel="step", yscale="log")
axes[2].plot(log["step"], log["lr"], label="learning rate")
axes[2].set(title="learning rate (—) and teacher forcing (--)", xlabel="step", ylabel="learning rate")
ax2 = axes[2].twinx()
ax2.plot(log["step"], log["tf_ratio"], "--", color="C1")
ax2.set(ylim=(0, 1.05), ylabel="teacher-forcing ratio $r$")
ax2.grid(False)
fig.tight_layout()
plots.save_figure(fig, "02_dae_training", RUN)
plt.show()

# %% [markdown]
# **Reading the curves.** Left: the training loss drops steeply in the first few hundred steps (the decoder
# learns which characters are frequent and where lines end), then keeps falling slowly; the validation loss
# (on corrupted poems too) follows it closely, so the DAE is not over-fitting. Middle: validation perplexity
# is still falling at the last point — the `tutorial` profile stops long before convergence (the official
# schedule has ten epochs). Right: the learning rate warms up linearly and then decays. The dashed
# teacher-forcing line is the point to notice: in the `tutorial` profile the DAE runs a single epoch, and the
# ratio only changes between epochs, so it stays at 1.0 — **scheduled sampling did not run in this profile**
# ([design §4.3](../docs/design.md#d4.3), [§4.9](../docs/design.md#d4.9)); the decoder only ever saw gold
# previous characters. The numbers of this run:

# %%
tenth = max(1, len(log) // 10)
drop = (1 - val["val_ppl"].iloc[-1] / val["val_ppl"].iloc[-2]) if len(val) > 1 else float("nan")
print(f"training loss: mean of the first 10% of steps {log['loss'].iloc[:tenth].mean():.2f}, "
      f"of the last 10% {log['loss'].iloc[-tenth:].mean():.2f}")
print(f"validation perplexity {val['val_ppl'].iloc[0]:.0f} → {val['val_ppl'].iloc[-1]:.0f}; "
      f"the last validation interval still lowered it by {drop:.0%}")
tf = log["tf_ratio"]
print("teacher-forcing ratio: " + ("1.0 at every step — scheduled sampling never ran" if tf.min() == 1.0
                                   else f"from {tf.max():.3f} down to {tf.min():.3f}"))

# %% [markdown]
# ## 5 · The Basic generator and its first poems
#
# The DAE needs a poem as input, so it cannot write a new one. The **Basic** baseline drops the poem
# encoder from the decoder's initial state and is trained further from the DAE weights to write from
# the keyword alone (the paper's "Basic" system is its generator without latent variables; how the kit
# builds it is [design §3.9](../docs/design.md#d3.9)). Greedy decoding — always the most probable next character, no
# tone or rhyme constraint — shows what the network has learnt by itself:

# %%
basic = load_or_train("basic", profile, data, RUN_DIR, train=TRAIN)
keywords = ["明月", "秋风", "边塞", "田家", "故乡", "春雨"]
for kw in keywords:
    for length in (5, 7):
        lines = greedy_decode(basic, vocab, kw, length)
        print(f"{kw} {length}: {' | '.join(lines)}")

# %% [markdown]
# Greedy output tends to repeat characters and common phrases: the most probable continuation is
# usually a generic one. Notebook 05 adds the constrained beam search (tone pattern, rhyme, no repeated
# characters) that turns these raw continuations into regular quatrains.

# %%
first, last = log["loss"].iloc[: max(1, len(log) // 10)].mean(), log["loss"].iloc[-max(1, len(log) // 10):].mean()
print(f"training loss: first 10% of steps {first:.2f} → last 10% {last:.2f}")
assert last < first, "the DAE did not learn: its loss did not fall"
print(f"validation perplexity {val['val_ppl'].iloc[-1]:.0f} vs {len(vocab)} for uniform guessing")
assert val["val_ppl"].iloc[-1] < len(vocab), "the DAE predicts no better than uniform guessing"

# %% [markdown]
# ## Summary
#
# * One encoder–decoder serves all models; they differ only in the conditioning vector $s_0$.
# * Length and line position enter every line's initial state; earlier lines reach later ones only
#   through the context vector $c_i$.
# * Denoising pre-training gives a decoder that writes verse; scheduled sampling would prepare it for
#   feeding on its own predictions, but only over several epochs (the `tutorial` DAE never used it).
# * The objective of phase A and of the Basic model is the line cross-entropy alone; `steps.dae_step` is the
#   whole update.
#
# ## Exercises
#
# 1. Set the corruption ratio to 0 in a copy of the `smoke` profile and compare the validation loss with
#    and without noise. Why is the noiseless loss misleading?
# 2. Change the teacher-forcing minimum to 0.5. What happens to the training loss, and to the greedy poems?
# 3. The context module only sees the decoder states of the previous line. Which mistakes in the greedy
#    poems could a model with access to *all* previous lines avoid?
