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
# # 01 · Data preparation: from raw poems to training tensors
#
# **MixPoet** (Yi et al., AAAI 2020) writes Chinese classical quatrains (绝句): four lines of five or
# seven characters, from a keyword, a line length and two *influence factors* that shape the style:
#
# | factor | symbol | values |
# |---|---|---|
# | living experience (生活经历) | $y_1$ | 0 military career (军旅) · 1 countryside life (田园) · 2 other (其他) |
# | historical background (历史背景) | $y_2$ | 0 prosperous times (盛世) · 1 troubled times (乱世) |
#
# The model is *semi-supervised*: a small corpus carries factor labels, a large one carries none, and
# a poem may be labelled for one factor but not the other (label $-1$). This notebook builds every
# dataset the later notebooks use, and shows what is in it:
#
# 1. the raw sources, downloaded from their public origins at pinned commits and checked by sha256;
# 2. the labelled sample and its label statistics (checked against the counts of [design §2.3](../docs/design.md#d2.3));
# 3. the unlabelled pool, traditional → simplified conversion, de-duplication and the evaluation splits;
# 4. keywords for poems that have none (TF-IDF over jieba words);
# 5. the vocabulary and one poem followed from raw JSON to tensor ids;
# 6. the tone (平仄) and rhyme resources that generation will enforce.
#
# All of the logic lives in the tested library `mixpoet_lib`; the notebook calls it and explains it.

# %% tags=["parameters"]
PROFILE: str = None  # smoke | tutorial | long | full (None: $MIXPOET_PROFILE, else tutorial)
OVERRIDES: str = ""  # changed settings, e.g. "model.latent_size=64,train.ndis=5" (README, "Profiles")
RUN_DIR: str = None  # where run artefacts go (None: runs/<profile>-local)
SEED: int = 1234  # seed of every random choice in this notebook

# %%
import json
import logging
import tempfile
from pathlib import Path

import jieba
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

from mixpoet_lib import config
from mixpoet_lib.overrides import run_name
from mixpoet_lib.data import corpora
from mixpoet_lib.data import dataset
from mixpoet_lib.data import fetch
from mixpoet_lib import plots
from mixpoet_lib.data import rhythm
from mixpoet_lib.notebook import notebook_run_dir
from mixpoet_lib.data.batching import make_batch

jieba.setLogLevel(logging.INFO)  # jieba logs its dictionary loading to stderr otherwise
profile = config.get_profile(PROFILE, OVERRIDES or None)
RUN = run_name(profile.name, OVERRIDES)  # the profile's name, or <profile>-<digest> when settings are changed
RUN_DIR = notebook_run_dir(RUN, RUN_DIR)  # the committed reference run is only read
font = plots.setup_style()
pd.set_option("display.width", 140)
print("profile:", profile.name, "| seed:", SEED, "| CJK font:", font)

# %% [markdown]
# ## 1 · The sources
#
# | source | what | size here | labels |
# |---|---|---|---|
# | **CQCF sample** (THUNLP-AIPoet/MixPoet, `preprocess/`) | the public sample of the *Chinese Quatrain Corpus with Factors* | 10,870 / 590 / 590 poems (train / valid / test) | both factors, −1 where not annotated |
# | **THU-CCPC v1.0** valid + test (THUNLP-AIPoet/Datasets) | quatrains from Sui to Ming, simplified, with 1–4 keywords | 7,979 + 9,976 poems | none |
# | **chinese-poetry** 全唐诗 / 全宋诗 (MIT licence) | every Tang and Song poem, traditional script, punctuated | 311,855 poems, ≈100k of them quatrains | none |
# | **THU-CRRD** | level/oblique tone lists and the 30 level-tone Pingshui rhyme classes | 3 small text files | — |
#
# The paper trained on the full CQCF (49,451 labelled poems) and on CQC (117,392 unlabelled quatrains).
# Neither is public. **This kit therefore runs a different experiment from the paper:** the labelled
# set is the public sample (about a fifth of CQCF), and the unlabelled pool is CCPC valid + test plus the
# quatrains of chinese-poetry (CCPC *train* is not in the public snapshot). After de-duplication the
# pool holds about 118k quatrains — close to CQC's size, but not the same poems.
#
# `mixpoet_lib.data.fetch` downloads each file from its public URL at a pinned commit, verifies its sha256,
# and writes it atomically. With `MIXPOET_MIRROR=/path/to/raw` (or `--mirror`) it copies from a local
# mirror instead, verifying the same hashes.

# %%
from mixpoet_lib.data.registry import load_registry

registry = load_registry()
files = dataset.required_files(profile.data)
print(f"{len(registry)} files in the registry; this profile reads {len(files)} of them")
pd.DataFrame([{"group": f.group, "file": f.name, "bytes": f.size, "sha256": f.sha256[:12] + "…"}
              for f in files]).groupby("group").agg(files=("file", "count"), bytes=("bytes", "sum"))

# %%
data = dataset.prepare(profile, log=print)
summary = data.summary

# %% [markdown]
# ## 2 · The labelled sample (CQCF)
#
# Each record is a JSON line with `content` (four lines joined by `|`), `keywords` (1–4 words of 1–2
# characters) and `label` = `"a b"`, the values of $y_1$ and $y_2$ with −1 for "not annotated".
# The reader validates every field and stops with the file, line and value on any problem
# (a labelled poem is too precious to drop silently):

# %% tags=["nbval-check-output"]
raw = fetch.raw_path("mixpoet/cqcf_train_sample.json")
with open(raw, encoding="utf-8") as fh:
    first = json.loads(fh.readline())
print(first)
poem = corpora.load_cqcf(raw)[0]
print(poem.lines, poem.keywords, poem.labels, poem.length)

# %% tags=["nbval-check-output"]
with tempfile.TemporaryDirectory() as tmp:
    bad = Path(tmp) / "bad.json"
    bad.write_text(json.dumps(first, ensure_ascii=False) + "\n"
                   + '{"label": "-1 3", "content": "细读养生主|长歌归去来|山僧借水品|溪父送琴材", "keywords": "山僧"}\n',
                   encoding="utf-8")
    try:
        corpora.load_cqcf(bad)
    except corpora.DataFormatError as err:
        print(str(err).replace(tmp, "<tmp>"))

# %% [markdown]
# The label statistics below are computed from the files and must match the table of [design §2.3](../docs/design.md#d2.3),
# which was measured independently on the same files. The assertion makes the notebook fail loudly
# if the data ever changes.

# %% tags=["nbval-check-output"]
labels = pd.DataFrame({k: v for k, v in summary["labels"].items() if k.startswith("cqcf_") and k != "cqcf_train_pairs"}).T
expected = {  # design §2.3, "Label statistics of the CQCF sample"
    "cqcf_train": [10870, 4025, 2434, 2296, 2115, 5782, 2736, 2352, 1063, 4984, 5886],
    "cqcf_valid": [590, 221, 133, 119, 117, 320, 142, 128, 49, 285, 305],
    "cqcf_test": [590, 221, 133, 119, 117, 320, 141, 129, 49, 256, 334],
}
assert labels.loc[list(expected)].values.tolist() == list(expected.values()), "label statistics differ from design §2.3"
print(labels.to_string())

# %% tags=["nbval-check-output"]
pairs = summary["labels"]["cqcf_train_pairs"]
assert pairs == {"1 -1": 2147, "-1 0": 2019, "-1 1": 2006, "0 -1": 1922, "2 -1": 1713,
                 "2 0": 402, "0 1": 332, "0 0": 180, "1 0": 135, "1 1": 14}
print(pd.Series(pairs, name="poems").to_string())

# %% [markdown]
# Most labelled poems carry **only one** of the two labels: only 1,063 train poems have both. That is
# why the model has to treat a missing label as a latent variable even inside the labelled set
# (Kingma et al.'s M2 objective, notebook 03). Some mixtures are very rare — countryside life in
# troubled times has 14 poems, "other" in troubled times none at all — so the model can only learn
# those mixtures by *combining* what each factor's sub-space learnt separately. That is the idea of
# the mixed latent space.

# %%
fig = plots.label_distribution(summary["labels"])
plots.save_figure(fig, "01_label_distribution", RUN)
plt.show()

# %%
fig = plots.cooccurrence_heatmap(pairs)
plots.save_figure(fig, "01_label_cooccurrence", RUN)
plt.show()

# %% [markdown]
# In the bar charts the unlabelled bar is the tallest for both factors in every split: for each factor, over a
# third (living) or half (era) of the labelled sample is *not* labelled. The heatmap counts only poems labelled
# for both factors: a handful of cells hold nearly all of them, and *other* in troubled times is empty.

# %% [markdown]
# ## 3 · The unlabelled pool, de-duplication and the evaluation splits
#
# chinese-poetry stores whole poems in traditional script with punctuation. The reader joins the
# paragraphs, splits at `，。！？`, keeps only 4×5 and 4×7 quatrains of CJK characters, and converts
# them to simplified script with OpenCC's plain `t2s` table (not `tw2sp`, which would rewrite
# modern phrases). Records that are not quatrains are **skipped and counted** by reason; a malformed
# JSON file or a missing field is an error.
#
# The same poem often appears in several sources (a Tang quatrain is in CCPC *and* in 全唐诗, sometimes
# in CQCF too). Poems are de-duplicated by their simplified characters, and the order in which splits
# claim poems guarantees that **no poem of an evaluation split is in any training pool**:
#
# 1. CQCF test, CQCF valid, CQCF train (labelled poems keep their labels);
# 2. `unl_test` and `unl_valid`: seeded samples of 4,500 CCPC test / valid poems (the paper held out
#    4,500 of each) — only poems that are not already in CQCF;
# 3. everything else goes to the unlabelled training pool `unl_train`, minus anything already claimed.

# %%
print(dataset.format_summary(summary))

# %%
train_keys = {corpora.normalised_key(p) for s in dataset.TRAIN_SPLITS for p in data.poems(s)}
for split in dataset.EVAL_SPLITS:
    leaked = sum(corpora.normalised_key(p) in train_keys for p in data.poems(split))
    assert leaked == 0, f"{leaked} poems of {split} are also in a training pool"
print("no evaluation poem is in a training pool")

# %%
fig = plots.length_split(summary["line_lengths"])
plots.save_figure(fig, "01_length_split", RUN)
plt.show()

# %% [markdown]
# The unlabelled training pool dwarfs everything else, and in it seven-character quatrains outnumber five-character
# ones several times over; the labelled sample is closer to half and half.
# The evaluation therefore draws its test keywords half from each length (notebook 05), so that neither form
# dominates the scores.

# %% [markdown]
# ## 4 · Keywords
#
# MixPoet is conditioned on one keyword per instance, and a poem with $k$ keywords becomes $k$ training
# instances ([design §2.6](../docs/design.md#d2.6)). CCPC and CQCF ship keywords; chinese-poetry does not. jieba's own extractors
# drop every one-character word, yet a fifth of CCPC's keywords are single characters (暮, 石, 侯 …). So
# `mixpoet_lib.data.keywords` segments each line with jieba (HMM off, dictionary extended with the CCPC/CQCF
# keywords), keeps words of 1–2 characters that are not function words, and ranks them by
#
# $$\operatorname{tfidf}(w, p) = \operatorname{tf}(w, p)\,\Bigl(\log\frac{1+N}{1+\operatorname{df}(w)} + 1\Bigr),$$
#
# with the document frequencies counted on the $N$ unlabelled poems themselves (not jieba's modern-Chinese
# IDF table).

# %%
rng = np.random.default_rng(SEED)
pool = data.poems("unl_train")
examples = []
for source in ("ccpc", "tang", "song"):
    candidates = [p for p in pool if p.source == source]
    for i in rng.choice(len(candidates), size=min(3, len(candidates)), replace=False):
        p = candidates[i]
        examples.append({"source": source, "poem": p.content, "keywords": " ".join(p.keywords),
                         "given": "yes" if source == "ccpc" else "TF-IDF"})
pd.DataFrame(examples)

# %% [markdown]
# ## 5 · Vocabulary, instances and one poem end to end
#
# The vocabulary counts the characters of the training pools, most frequent first (ties by code point,
# so it is identical on every machine). Ids 0–3 are reserved: `PAD`, `UNK`, `<E>` (end), `<B>` (begin);
# rarer characters than the profile's cut-off map to `UNK`. The character frequencies follow Zipf's law:

# %%
train_texts = [p.content for s in dataset.TRAIN_SPLITS for p in data.poems(s)]
fig = plots.char_frequency_rank(train_texts)
plots.save_figure(fig, "01_char_frequency", RUN)
plt.show()
vocab = data.vocab
print(f"vocabulary: {len(vocab)} ids; the 20 most frequent characters: {''.join(vocab.tokens[4:24])}")

# %% [markdown]
# On log–log axes the counts fall steadily with the rank over the first thousand or so ranks — roughly a power law
# (Zipf's law), bending downwards — and then drop into a long tail of characters seen a handful of times or once. The most frequent characters (the dots,
# named in the box) are function words and the stock images of classical verse — 不, 人, 风, 山 … — the
# characters a generator that plays safe will over-use (notebook 06 measures that).

# %% [markdown]
# Now one labelled poem from JSON to the tensors the model sees. Each keyword gives one instance;
# the poem enters the encoder as one sequence `<B> line1 line2 line3 line4 <E>`, the decoder targets are
# the four lines, each ending in `<E>` and padded to 8, and the line length reaches the model as a
# one-hot vector ([0, 1] for five characters, [1, 0] for seven — the official order).

# %%
arrays = data.arrays("cqcf_train")
instance = 0
batch = make_batch(arrays, np.array([instance]))
p_index = int(arrays.poem_index[instance])
print("poem     :", data.poems("cqcf_train")[p_index].content)
print("keyword  :", vocab.decode(batch["keys"][0]), "→", batch["keys"][0].tolist())
print("poem ids :", batch["poems"][0].tolist())
print("line 1   :", batch["lines"][0, 0].tolist(), "=", vocab.decode(batch["lines"][0, 0]))
print("length   :", batch["length"][0].tolist(), "| labels:", batch["labels"][0].tolist(),
      "| mask:", batch["label_mask"][0].tolist())
print({k: tuple(v.shape) for k, v in batch.items()})

# %% [markdown]
# ## 6 · Tones and rhyme
#
# Classical quatrains follow tonal patterns: every character is level (平, P) or oblique (仄, Z), and
# the even positions of a line must alternate. MixPoet's generator enforces one of four line types,
# recognised by 14 templates per length ([design §5.4](../docs/design.md#d5.4)). Tones come from THU-CRRD lists, *not* from modern
# Mandarin: entering-tone characters such as 白 国 石 十 竹 are oblique in classical prosody although
# their modern tones are level. A character in both lists (polyphonic) matches both; a character in
# neither list (一 is missing from CRRD) matches nothing.
#
# | type | meaning | 5-character position template (0 level, 1 oblique, −1 free) |
# |---|---|---|
# | 0 | level start, oblique end | −1 0 0 1 1 |
# | 1 | oblique start, level end | −1 1 1 0 0 |
# | 2 | level start, level end | 0 0 1 1 0 |
# | 3 | oblique start, oblique end | −1 1 0 0 1 |

# %% tags=["nbval-check-output"]
tr = rhythm.default_tone_rhyme()
famous = {
    "王之涣 登鹳雀楼": "白日依山尽|黄河入海流|欲穷千里目|更上一层楼",
    "孟浩然 春晓": "春眠不觉晓|处处闻啼鸟|夜来风雨声|花落知多少",
    "王昌龄 出塞": "秦时明月汉时关|万里长征人未还|但使龙城飞将在|不教胡马度阴山",
    "王翰 凉州词": "葡萄美酒夜光杯|欲饮琵琶马上催|醉卧沙场君莫笑|古来征战几人回",
}
rows = []
for title, text in famous.items():
    report = rhythm.check_poem(text, tr=tr)
    for i, line in enumerate(text.split("|")):
        cls = rhythm.rhyme_class(line[-1], tr=tr)
        rows.append({"poem": title if i == 0 else "", "line": line, "tones": rhythm.tone_string(line, tr=tr),
                     "type": report.types[i], "expected": report.expected[i] if report.expected else "",
                     "rhyme class": "" if cls is None else cls, "form ok": report.ok if i == 0 else ""})
print(pd.DataFrame(rows).to_string(index=False))

# %% [markdown]
# `P`/`Z` are level/oblique, `B` both (polyphonic), `?` neither list. Real poems do not always pass the
# strict rule: 春晓 rhymes in oblique tones (晓 鸟 少), which the level-tone Pingshui classes used by
# MixPoet cannot express, and one character missing from the lists (一 in 登鹳雀楼) is enough to leave a
# line unrecognised. How often human poems pass is worth knowing before we demand it of a model:

# %%
sample = data.poems("unl_test")
passed = np.mean([rhythm.check_poem(p.lines, tr=tr).ok for p in sample])
recognised = np.mean([rhythm.line_type(p.lines[0], tr=tr) >= 0 for p in sample])
print(f"held-out human poems ({len(sample)}): first line recognised {recognised:.1%}, "
      f"whole poem passes tone pattern + rhyme {passed:.1%}")

# %% [markdown]
# The data summary also goes into the run folder, where the pipeline's report picks it up.

# %%
run_dir = Path(RUN_DIR)
run_dir.mkdir(parents=True, exist_ok=True)
_ = (run_dir / "data_summary.json").write_text(json.dumps(
    {**summary, "form_pass_rate_unl_test": round(float(passed), 4), "dataset": data.root.name},
    ensure_ascii=False, indent=1), encoding="utf-8")

# %% [markdown]
# ## Summary
#
# * The data pipeline is `mixpoet data prepare` (or `dataset.prepare(profile)`): raw files → validated
#   poems → de-duplicated splits → keywords → vocabulary → `(keyword, poem)` instances as integer arrays,
#   cached under a hash of the inputs and settings, so a rerun is instant and any change rebuilds.
# * The labelled set is small and mostly half-labelled; some factor mixtures barely exist. The
#   unlabelled pool is large. That imbalance is the reason for a semi-supervised model.
# * The form rules (tone pattern, rhyme) are strict and approximate at once: they rely on character
#   lists, not on readings in context.
#
# ## Exercises
#
# 1. Change `max_vocab` in the `tutorial` profile and look at the UNK rate on the evaluation splits.
# 2. Which keywords does the TF-IDF extractor give for 静夜思 (床前明月光|疑是地上霜|举头望明月|低头思故乡)?
#    Would you have chosen the same?
# 3. Find the share of held-out poems whose only problem is a character missing from both tone lists.
