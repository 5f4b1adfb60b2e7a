"""The common first cell of the numbered notebooks: quiet logging, seeds, plot style, data."""

from __future__ import annotations

import logging

import jieba

from mixpoet_lib import plots
from mixpoet_lib._util import default_device, seed_everything
from mixpoet_lib.config import Profile, get_profile
from mixpoet_lib.data.dataset import PreparedData, prepare


def setup(
    profile_name: str | None, seed: int, overrides: str = "", prepare_data: bool = True
) -> tuple[Profile, PreparedData | None]:
    """Resolve the profile (with the notebook's ``OVERRIDES``, e.g. ``"model.latent_size=64"``), seed every
    generator, silence jieba, apply the CJK plot style and prepare the data."""
    jieba.setLogLevel(logging.INFO)  # jieba logs its dictionary loading to stderr otherwise
    profile = get_profile(profile_name, overrides or None)
    seed_everything(seed)
    font = plots.setup_style()
    data = prepare(profile) if prepare_data else None
    vocab = f" | vocabulary {len(data.vocab)}" if data is not None else ""
    print(f"profile {profile.name} | seed {seed} | device {default_device()} | CJK font {font}{vocab}")
    return profile, data
