"""The common first cell of the numbered notebooks: quiet logging, seeds, plot style, data."""
from __future__ import annotations

import logging

from .config import Profile, get_profile
from .dataset import PreparedData, prepare


def setup(profile_name: str | None, seed: int, prepare_data: bool = True) -> tuple[Profile, PreparedData | None]:
    """Resolve the profile, seed torch and numpy, silence jieba, apply the CJK plot style and prepare the data."""
    import jieba
    import numpy as np
    import torch

    from . import plots, training

    jieba.setLogLevel(logging.INFO)  # jieba logs its dictionary loading to stderr otherwise
    profile = get_profile(profile_name)
    torch.manual_seed(seed)
    np.random.seed(seed)
    font = plots.setup_style()
    data = prepare(profile) if prepare_data else None
    vocab = f" | vocabulary {len(data.vocab)}" if data is not None else ""
    print(f"profile {profile.name} | seed {seed} | device {training.device()} | CJK font {font}{vocab}")
    return profile, data
