"""Which settings decide a model's trained weights: the signature of a checkpoint and the key of published weights.

A training phase's checkpoint stores :func:`weight_settings` of its profile, and a checkpoint or a set of published
weights is used only where they agree (mixpoet_lib.checkpoints, mixpoet_lib.train.phases). Bookkeeping settings are
left out; options added after weights were published count only when switched on; bf16 autocast counts as what
it is on this machine (``amp_bf16="auto"`` is on where the hardware has bf16 units), because it can change what
training reaches (docs/experiments.md §8).
"""

from __future__ import annotations

from typing import Any

from mixpoet_lib._util import default_device, jsonable
from mixpoet_lib.config import TrainConfig
from mixpoet_lib.runtime import bf16_choice

__all__ = [
    "NOT_IN_SIGNATURE",
    "AUS_MODELS",
    "CVAE_IGS",
    "SIGNATURE_IF_SET",
    "ACTS_ONLY_IN",
    "C2_ONLY",
    "MODEL_NAMES",
    "FACTOR_MODELS",
    "TUNED_MODELS",
    "weight_settings",
]

MODEL_NAMES = ("basic", "fbasic", "cvae", "igs", "aus", "aus_st")
FACTOR_MODELS = ("igs", "aus", "aus_st")  # these have classifiers and start from the B phases
TUNED_MODELS = ("fbasic", *FACTOR_MODELS)  # these are fine-tuned on the labelled poems (C2) after C1

# TrainConfig fields that never change the trained weights (bookkeeping, validation, diagnostics run under a
# forked RNG): left out of checkpoint signatures and of the published weights' key.
NOT_IN_SIGNATURE = (
    "ckpt_every",
    "log_every",
    "val_batches",
    "cl_val_instances",
    "validate_every",
    "validate_every_epoch",
    "diag_every",
    "diag_samples",
    "diag_chunk",
    "diag_instances",
)
# Options added after checkpoints were published: they count only when switched away from this default, and only
# in the second-stage phases of the models they act in, so existing checkpoints (and the shared DAE/classifier
# phases of a variant) stay valid.
AUS_MODELS = frozenset({"aus", "aus_st"})
CVAE_IGS = frozenset({"cvae", "igs"})
SIGNATURE_IF_SET: dict[str, tuple[Any, frozenset[str]]] = {
    "encode_once": (False, AUS_MODELS),
    "gen_lr_scale": (1.0, AUS_MODELS),
    "gen_shared": (True, AUS_MODELS),
    "mode_seeking_weight": (0.0, AUS_MODELS),
    "readout_weight": (0.0, AUS_MODELS),
    "bow_weight": (0.0, CVAE_IGS | AUS_MODELS),
    "unlikelihood_weight": (0.0, AUS_MODELS),
    "kl_max_weight": (1.0, CVAE_IGS),
    "free_bits_scope": ("dimension", CVAE_IGS),
    "word_dropout": (0.0, CVAE_IGS | AUS_MODELS),
    "label_dropout": (0.0, frozenset({"igs"}) | AUS_MODELS),
}


# Settings that act only in the second-stage phases of some models but were always part of every signature: a phase
# where one does not act records the named profile's own value (``base``) instead of the set one, the value its
# existing checkpoints were signed with, so a variant that changes it reuses the shared DAE and classifier phases.
ACTS_ONLY_IN: dict[str, frozenset[str]] = {
    **dict.fromkeys(("free_bits", "kl_anneal_steps", "kl_anneal_kind"), CVAE_IGS),
    **dict.fromkeys(
        ("ndis", "dis_betas", "dis_decay_exponent", "noise_init", "noise_decay_steps", "rec_warm_steps"), AUS_MODELS
    ),
    # the second stage's schedules: a variant with a longer or shorter C1 / C2 reuses the DAE and the classifiers
    "mixture": frozenset(MODEL_NAMES),
    "finetune": frozenset(TUNED_MODELS),
    **dict.fromkeys(("tau_annealing_steps", "min_tau"), frozenset(FACTOR_MODELS)),  # Gumbel-sampled labels
}
# Settings read by the fine-tune phase (C2) alone: a fine-tuned model's C1 records the named profile's own value
# too, so a variant with a longer fine-tune starts from the profile's C1 checkpoint.
C2_ONLY = ("finetune",)


def weight_settings(
    train: TrainConfig, model: str | None = None, base: TrainConfig | None = None, phase: str | None = None
) -> dict[str, Any]:
    """The TrainConfig fields (as JSON data) that decide the weights of ``model``'s second-stage phases (``None``:
    of any model); an option of :data:`SIGNATURE_IF_SET` counts only when set and only for the models it acts in
    (pass ``model=""`` for a phase where none of them acts: the DAE and the classifiers). With ``base`` (the
    unchanged profile's settings), a field of :data:`ACTS_ONLY_IN` records ``base``'s value where it does not act,
    and in the C1 phase (``phase="c1"``) so do the fields of :data:`C2_ONLY`."""
    values = jsonable(train)
    if base is not None and model is not None:
        own = jsonable(base)
        values.update({k: own[k] for k, models in ACTS_ONLY_IN.items() if model not in models})
        if phase == "c1":
            values.update({k: own[k] for k in C2_ONLY})

    def counts(k: str, v: Any) -> bool:
        if k in NOT_IN_SIGNATURE:
            return False
        if k not in SIGNATURE_IF_SET:
            return True
        default, models = SIGNATURE_IF_SET[k]
        return v != default and (model is None or model in models)

    values["amp_bf16"] = bf16_choice(train.amp_bf16, default_device().type)[0]  # "auto" as this machine resolves it
    return {k: v for k, v in values.items() if counts(k, v)}
