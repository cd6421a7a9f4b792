"""Where the dance faces: the keyed facing, met while sampling (a projection for
engine.sampler.diffusion.sample), and with nothing keyed, the front.

The network barely reads a keyed facing from its key input (at the keys it faced 1.46 rad away,
median, against 1.72 with no keys), but a dance turned about the vertical is as likely as the
dance itself (training turns every window to a random heading). So while the dance's shape is
being decided, the sampler's estimate is turned to face where the keys face, and the later steps
shape the body and its steps around that facing; engine.finishing.editing's correction offsets
take up what is left (0.07 rad, median).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..body import layout as L
from ..body import rotations as R
from ..body.curves import offset_curve
from ..body.motion import Constraints
from ..defaults import FRONT_AGAIN_SECONDS

# The estimate is turned while its signal level (alpha-bar) is under this: the first half of the
# many-step schedule, two of the student's four steps. Turned at every step, the network fought
# the turn near the end and the hands whipped more near keys (python -m engine
# evaluate-inbetween, 3 seeds: whip median 1.26 against 1.09 unturned); turned only early, whip
# median 1.06 and each seed's worst clip 1.55 on average (unturned 2.71), and the LAFAN1 gap
# errors fall at every gap (weights/TRAINING.md, "The keyed facing, while sampling").
FACING_SIGNAL_LEVEL = 0.5
_TURNED = list(range(L.PELVIS_6D.start, L.PELVIS_6D.stop)) + list(range(L.ROOT_VEL.start, L.ROOT_VEL.stop))


def facing_alignment(constraints: Constraints | None, length: int, fps: float, normalizer: L.Normalizer,
                     until: float = FACING_SIGNAL_LEVEL) -> Callable[[torch.Tensor, float], torch.Tensor] | None:
    """A projection for the sampler (engine.sampler.diffusion.sample's `project`): normalised
    (length, C) motion at the model's rate and its step's signal level -> while that is under
    `until`, the motion turned about the vertical, frame by frame, so that it faces as keyed on
    every frame with a keyed pelvis (between those frames the turn is offset_curve's C1 cubic,
    beyond them it holds: front_beyond_the_keys turns the drawn dance there, after sampling,
    so the draw itself is the one these keys always gave); afterwards the motion as it is. None
    when no frame keys the pelvis."""
    if constraints is None or not constraints.joint_mask[:, 0].any():
        return None
    rows = np.flatnonzero(constraints.joint_mask[:, 0])
    model_frames = L.model_frames(rows, fps, length)
    model_frames, first = np.unique(model_frames, return_index=True)      # one key per model frame
    wanted = R.heading(R.axis_angle_to_matrix(torch.from_numpy(constraints.poses[rows[first], :3]))).numpy()
    frames = torch.from_numpy(model_frames)

    def align(x0: torch.Tensor, signal_level: float) -> torch.Tensor:
        if signal_level >= until:
            return x0
        raw = normalizer.denormalize(x0).double()                               # (length, C)
        have = L.pelvis_heading(raw[frames]).cpu().numpy()
        miss = np.unwrap(R.wrap_angle(wanted - have))                 # each the short way, no jumps
        turn = offset_curve(model_frames, miss[:, None], len(raw), None)[:, 0]
        turned = L.turn_about_vertical(raw, torch.from_numpy(turn))
        out = x0.clone()
        out[:, _TURNED] = normalizer.normalize(turned.to(x0.dtype))[:, _TURNED]
        return out
    return align


def front_beyond_the_keys(raw: torch.Tensor, constraints: Constraints, fps: float) -> torch.Tensor:
    """(T, C) denormalised motion at the model's rate, sampled with `constraints` keying the
    pelvis -> the same, turned about the vertical before the first keyed facing and after the
    last, where the dance goes on for twice FRONT_AGAIN_SECONDS, to face the front on average
    there, turned over FRONT_AGAIN_SECONDS from the key's facing; the keyed frames as they are.
    A shorter end keeps the key's facing: turned there, the dance moved more near its last keys
    (python -m engine evaluate-inbetween, keys every 2 s: whip median 1.03 -> 1.12). After
    sampling only: turned while sampling too, the network drew other dances around the keys (a
    hand burst 1.43x into a key where it had been 1.10x)."""
    rows = np.flatnonzero(constraints.joint_mask[:, 0])
    if not len(rows):
        return raw
    keyed = np.unique(L.model_frames(rows, fps, len(raw)))
    heading = L.pelvis_heading(raw).cpu().numpy()
    ramp = max(1, round(FRONT_AGAIN_SECONDS * L.MODEL_FPS))
    frames, turns = list(keyed), [0.0] * len(keyed)
    last, first = int(keyed[-1]) + ramp, int(keyed[0]) - ramp
    if last + ramp <= len(heading):
        frames.append(last)
        turns.append(-_mean_angle(heading[last:]))
    if first - ramp >= 0:
        frames.insert(0, first)
        turns.insert(0, -_mean_angle(heading[:first + 1]))
    if len(frames) == len(keyed):
        return raw
    turn = offset_curve(np.asarray(frames), np.asarray(turns)[:, None], len(raw), None)[:, 0]
    return L.turn_about_vertical(raw, torch.from_numpy(turn).to(raw.dtype))


def _mean_angle(angles: np.ndarray) -> float:
    """The circular mean of `angles` (radians), in [-pi, pi]."""
    return float(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean()))


def keys_facing_or_path(constraints: Constraints | None) -> bool:
    """Whether the animator's keys say where the dancer faces or goes (a pelvis rotation or a root
    position on any frame): then they decide the facing, not facing_front."""
    return constraints is not None and bool(constraints.place_or_facing_keyed.any())


def facing_front(raw: torch.Tensor) -> torch.Tensor:
    """(T, C) denormalised motion -> the same dance turned about the vertical (through its start)
    so that its pelvis faces the front, +Z (the rest pose's facing, and the character's own front
    once retargeted), on average over the dance. Training turned every window to a random heading,
    so the drawn heading is arbitrary: 2 of 6 seeds danced with their backs to the animator."""
    heading = L.pelvis_heading(raw)
    mean = torch.atan2(torch.sin(heading).mean(), torch.cos(heading).mean())
    return L.turn_about_vertical(raw, -mean)
