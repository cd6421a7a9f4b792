"""Random keys for training a key-aware network (issue 13; CondMDI, Cohan et al. 2024).

Each training window is given, as input, some of its own clean motion, drawn the way animators
key it, and the loss stays the plain reconstruction of the whole window. So the network learns
to plan the motion through the keys: arriving at a key with its own momentum instead of being
pulled onto it afterwards. Kinds, per window:
- nothing (a share KEYLESS_SHARE, so generation without keys stays as good as before);
- sparse full-pose keys: 1-4 frames, the whole body and the root height;
- a body part on every frame (the panel's Keep toggles: arms, legs, torso or head);
- seed motion: the opening 0.3-2 s, everything but the foot contacts.
"""
from __future__ import annotations

import torch

from ..body import layout as L
from ..body.skeleton import BODY_PARTS, NUM_JOINTS
from ..sampler.model import with_keys

KEYLESS_SHARE = 0.4
KINDS = ("keyframes", "body part", "seed")
KIND_WEIGHTS = (0.6, 0.25, 0.15)
MAX_KEYFRAMES = 4
SEED_FRAMES = (int(0.3 * L.MODEL_FPS), int(2.0 * L.MODEL_FPS))

_POSE = L.joint_channels(range(NUM_JOINTS)) + list(range(L.ROOT_Y.start, L.ROOT_Y.stop))
_ALL_BUT_CONTACTS = [c for c in range(L.NUM_CHANNELS) if c not in range(L.CONTACTS.start, L.CONTACTS.stop)]


def random_key_mask(batch: int, frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, frames, NUM_CHANNELS) bool: which channels of which frames each window is given."""
    mask = torch.zeros(batch, frames, L.NUM_CHANNELS, dtype=torch.bool)
    parts = sorted(p for p in BODY_PARTS if p != "all")
    kinds = torch.multinomial(torch.tensor(KIND_WEIGHTS), batch, replacement=True, generator=generator)
    keyless = torch.rand(batch, generator=generator) < KEYLESS_SHARE
    for b in range(batch):
        if keyless[b]:
            continue
        kind = KINDS[int(kinds[b])]
        if kind == "keyframes":
            n = int(torch.randint(1, MAX_KEYFRAMES + 1, (1,), generator=generator))
            rows = torch.randperm(frames, generator=generator)[:n]
            mask[b, rows.unsqueeze(1), torch.tensor(_POSE)] = True
        elif kind == "body part":
            part = parts[int(torch.randint(len(parts), (1,), generator=generator))]
            mask[b, :, L.joint_channels(BODY_PARTS[part])] = True
        else:
            n = int(torch.randint(SEED_FRAMES[0], SEED_FRAMES[1] + 1, (1,), generator=generator))
            mask[b, :n, _ALL_BUT_CONTACTS] = True
    return mask


def with_random_keys(music: torch.Tensor, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A batch's conditioning (B, T, F) with key channels drawn from its clean windows x0 (B, T, C)
    (normalised) appended: (B, T, F + KEY_CHANNELS), on x0's device."""
    return with_keys(music, x0, random_key_mask(x0.shape[0], x0.shape[1], generator).to(x0.device))
