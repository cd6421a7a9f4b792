"""Waiting in the song's silences: a projection for engine.sampler.diffusion.sample.

The network dances whatever it hears, silence included (the training dancers kept dancing where
their recordings fall silent), so a song with a silent intro, a stop or a silent tail was danced
through its silence. Here every estimate holds the dancer still over each silent stretch
(engine.music.silence): in the pose the dance has where the music starts again after a silent
intro, else where the music stopped (a stop is a freeze, as dancers hit one), of the frames near
there one with both feet down; a silent intro that opens on the animator's start pose waits in
that pose (start_pose_kept carries the key through the wait). The hold is pasted
into every step's estimate, so the network shapes the motion around it as it does around seed
motion: into the held pose and out of it with its own momentum.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..body import layout as L
from ..body import rotations as R
from ..body.motion import Constraints
from ..body.skeleton import FOOT_INDICES, NUM_JOINTS, forward_kinematics

# The held pose is the sounding frame, within this of the silence, whose feet are nearest to level
# (the frame next to the silence may be mid-step: a freeze on one leg); each frame further away
# costs DISTANCE_COST metres of foot-height difference.
ANCHOR_SEARCH_SECONDS = 0.75
DISTANCE_COST = 0.002

Projection = Callable[[torch.Tensor, float], torch.Tensor]


def held_stretches(stretches: Sequence[tuple[int, int]], frames: int,
                   keyed: np.ndarray | None = None) -> list[tuple[int, int, range]]:
    """[(first, last, candidates)] model frames: each silent stretch of the song's `frames` held,
    with the frames (nearest first) whose pose it may hold: the sounding frames at most
    ANCHOR_SEARCH_SECONDS away. A silent intro that opens on the animator's keys (a start pose,
    seed motion) holds its last keyed frame instead. Any other stretch with a key or lock in it
    or among its candidates (`keyed`, (frames,) bool at the model's rate) is theirs to direct.
    A song silent throughout (a muted export; a slice of a song's silent tail) waits in the
    pose it starts in."""
    reach = int(round(ANCHOR_SEARCH_SECONDS * L.MODEL_FPS))
    out = []
    for first, last in stretches:
        last = min(last, frames - 1)
        if first > last:
            continue
        if first == 0 and last == frames - 1:
            candidates = range(0, 1)
        elif first == 0:
            candidates = range(last + 1, min(last + 1 + reach, frames))
        else:
            candidates = range(first - 1, max(first - 1 - reach, -1), -1)
        if not len(candidates):
            continue
        lo, hi = min(first, candidates[-1], candidates[0]), max(last, candidates[0], candidates[-1])
        keys = np.flatnonzero(keyed[lo:hi + 1]) + lo if keyed is not None else np.zeros(0, int)
        if len(keys) and first == 0 and keys[-1] < last and not (~keyed[:keys[-1] + 1]).any():
            candidates = range(keys[-1], keys[-1] + 1)          # the start pose, waited in
        elif len(keys):
            continue
        out.append((first, last, candidates))
    return out


def held_from(first: int, last: int, anchor: int) -> tuple[int, int]:
    """The frames (inclusive) a stretch holds in its anchor's pose: up to the anchor when that
    follows the stretch, else from the frame after it."""
    return (first, anchor - 1) if anchor > last else (anchor + 1, last)


def start_pose_kept(constraints: Constraints | None, held: Sequence[tuple[int, int, range]],
                    fps: float) -> Constraints | None:
    """The constraints with a start pose that a silent intro waits in (held_stretches) keyed on
    through the wait: so it is met exactly there, as the animator's keys are, and the dance
    moves on from it when the music starts. Unchanged when no stretch waits in a key."""
    waits = [(first, last, c[0]) for first, last, c in held if first <= c[0] <= last]   # anchored in a key
    if constraints is None or not waits:
        return constraints
    out = Constraints(constraints.poses.copy(), constraints.trans.copy(), constraints.joint_mask.copy(),
                      constraints.trans_mask.copy(), constraints.fps, constraints.pelvis_turns.copy())
    rows = np.flatnonzero(constraints.joint_mask.any(axis=1) | constraints.trans_mask)
    at_model_rate = L.model_frames(np.arange(constraints.num_frames), fps, np.iinfo(np.int32).max)
    for _, last, anchor in waits:
        key = rows[at_model_rate[rows] <= anchor].max()                   # the start pose's last row
        until = int(np.searchsorted(at_model_rate, last, side="right"))
        for name in ("poses", "trans", "joint_mask", "trans_mask"):
            getattr(out, name)[key + 1:until] = getattr(constraints, name)[key]
        out.pelvis_turns[key + 1:until] = 0.0                           # held: no turn
    return out


def _standing_anchor(x0: torch.Tensor, candidates: range, normalizer: L.Normalizer) -> int:
    """The candidate frame whose feet are nearest to level (the left ankle and toe as high as the
    right ones: both down), the boundary's frame preferred by a little per frame further away."""
    rows = torch.as_tensor(list(candidates), device=x0.device)
    raw = normalizer.denormalize(x0[rows]).double()
    rot = R.sixd_to_matrix(raw[:, L.ROT6D].reshape(len(rows), NUM_JOINTS, 6))
    root = torch.zeros(len(rows), 3, dtype=raw.dtype, device=raw.device)
    feet = forward_kinematics(rot, root)[:, list(FOOT_INDICES), 1]            # heights above the pelvis
    spread = (feet[:, 0] - feet[:, 1]).abs() + (feet[:, 2] - feet[:, 3]).abs()  # left against right
    cost = spread + DISTANCE_COST * torch.arange(len(rows), dtype=raw.dtype, device=raw.device)
    return candidates[int(torch.argmin(cost))]


class SilenceHold:
    """The projection that holds each stretch of `held` (and the frames between it and the chosen
    candidate) in that candidate's pose, height and facing, feet planted and the body not
    travelling. After sampling, `held_frames` tells which frames it held in the last estimate."""

    def __init__(self, held: Sequence[tuple[int, int, range]], normalizer: L.Normalizer):
        self.held, self.normalizer = list(held), normalizer
        raw = torch.zeros(1, L.NUM_CHANNELS)
        raw[:, L.CONTACTS] = 1.0
        self.still = normalizer.normalize(raw)[0]          # planted feet, no travel, normalised
        self.pose = [c for c in range(L.NUM_CHANNELS) if c not in range(L.CONTACTS.start, L.ROOT_VEL.stop)]
        self.spans: list[tuple[int, int]] = []

    def __call__(self, x0: torch.Tensor, signal_level: float) -> torch.Tensor:
        out = x0.clone()
        s = self.still.to(x0)
        self.spans = []
        for first, last, candidates in self.held:
            anchor = _standing_anchor(x0, candidates, self.normalizer)
            a, b = held_from(first, last, anchor)
            out[a:b + 1, self.pose] = x0[anchor, self.pose]
            out[a:b + 1, L.CONTACTS] = s[L.CONTACTS]
            # The velocity is to the next frame: an anchor before the hold is its first still frame.
            out[min(a, anchor):b + 1, L.ROOT_VEL] = s[L.ROOT_VEL]
            # The anchor's own frame is the hold's pose too: the finishing leaves it as drawn with
            # the others (left out, the knees' hinge step eased in on it alone, a 1 mm twitch).
            self.spans.append((min(a, anchor), max(b, anchor)))
        return out

    def held_frames(self, length: int) -> np.ndarray:
        """(length,) bool: the frames the last estimate held still, each hold's anchor included."""
        mask = np.zeros(length, bool)
        for a, b in self.spans:
            mask[a:b + 1] = True
        return mask


def chain(*projections: Projection | None) -> Projection | None:
    """The projections that are not None, applied in order (None when there are none)."""
    given = [p for p in projections if p is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]

    def chained(x0: torch.Tensor, signal_level: float) -> torch.Tensor:
        for p in given:
            x0 = p(x0, signal_level)
        return x0
    return chained
