"""Keep a generated dancer on the floor area: dancers step and travel, but a long song must not
walk them off to infinity, and a user may ask for a small stage or for dancing in place.

By default (`steer_on_floor`) the dancer keeps to a floor of FLOOR_RADIUS the way ballroom couples
keep to theirs: a dancer travelling out past half the radius curves back along it, at its own
speed, the whole body turning with its path. Squashing the path instead slowed the travel: on
whole songs the dancer stood pressed against the rim, travelling at 0.37-0.45 m/s where it had
drawn 0.54-0.56 (weights/TRAINING.md, "Steering along the floor"). Keys of the dancer's place
or facing must be met as keyed, so a dance the steering would have turned by such a key (a start
pose is before any turn), and every user-set stage radius, keep the squash (`keep_on_floor`,
`bound_root_path`).

The squash splits the path into its slow drift (a 2 s Gaussian low-pass) and the quick travel on
top (steps, sways). Without a stage radius the drift is squashed radially into a disc of
FLOOR_RADIUS and the quick travel is kept as it was. With a stage radius r the quick travel is squashed into a disc
of q = r/2 (between IN_PLACE_SWAY and QUICK_TRAVEL) and the drift into r - q, so the root never
leaves the disc of radius r while steps and sways keep their size; r = 0 keeps only the sway,
within IN_PLACE_SWAY. Each squash is a tanh of the distance: smooth, slope 1 near the centre.
This runs before the feet are cleaned (engine.finishing.feet), which plants and re-steps the feet on the
new path, so pulling the root in does not make the feet slide.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from ..body import rotations as R
from ..body.curves import smoothstep
from ..defaults import FLOOR_RADIUS, FRONT_AGAIN_SECONDS
from .turns import about_y, yaw_of

# Dancing in place: the pelvis still sways and shifts its weight from foot to foot, within this
# many metres of the start (about half a step: a step of the training dancers is 0.3-0.6 m).
IN_PLACE_SWAY = 0.15
QUICK_TRAVEL = 0.5         # m: a step or a lunge on top of the drift, kept whole on a big stage
DRIFT_SECONDS = 2.0


# Steering (steer_on_floor). Below STEER_FROM of the radius the path is the network's own. From
# there on, the share of its heading that may point outwards falls (a smoothstep) from all of it
# to STEER_INWARD pointing inwards at STEER_FULL; heading further out than that turns the dance at
# a curvature of (the excess) / STEER_CURVE_M, never faster than MAX_STEER_RATE: a slow curve
# beside a dancer's own turns (a rebuilt half turn peaks at 7.5 rad/s). A dancer travelling
# straight on circles the floor at about three quarters of its radius.
STEER_FROM = 0.5
STEER_FULL = 0.85
STEER_INWARD = 0.3
STEER_CURVE_M = 0.5
MAX_STEER_RATE = 1.5       # rad/s
# Past STEER_FULL the allowed heading keeps turning inwards, straight in at the rim, along a curve
# half as wide. Held at STEER_INWARD, with the curve's proportional pull a dancer whose own
# heading wandered (its turns) settled into orbiting past the rim, pressed back onto it by the
# soft rim: on an 8-minute song (QA) 27% of frames beyond 3.9 m, one stretch of 119 s, travel
# there 39% slower than drawn; now 1%, travel kept 0.99 of the drawn overall (was 0.89).
STEER_CURVE_RIM_M = 0.25


def _squash(xz: np.ndarray, radius: float) -> np.ndarray:
    """Radial tanh squash of (T,2) offsets into the open disc of `radius`."""
    r = np.linalg.norm(xz, axis=1, keepdims=True)
    return xz * (radius * np.tanh(r / radius) / np.maximum(r, 1e-9))


def bound_root_path(trans: np.ndarray, fps: float, radius: float | None = None,
                    drift_seconds: float = DRIFT_SECONDS, held: np.ndarray | None = None) -> np.ndarray:
    """(T,3) Y-up root path -> the same path kept on the stage around its first frame:
    radius None = the default floor (drift within FLOOR_RADIUS), 0 = in place, r > 0 = within r m.
    held: (T,) bool, frames where the dancer stands still (engine.sampler.hold). The path is bounded
    as if they were cut out, and they keep the correction of the frame before them (the first
    frame after, for a hold at the start): a dancer waiting in a silence does not slide."""
    if held is not None and held.any() and not held.all():
        moving = np.flatnonzero(~held)
        correction = np.zeros_like(trans)
        correction[moving] = bound_root_path(trans[moving], fps, radius, drift_seconds) - trans[moving]
        before = np.maximum.accumulate(np.where(~held, np.arange(len(held)), -1))
        source = np.where(before >= 0, before, moving[0])
        return trans + correction[source]
    out = trans.copy()
    xz = trans[:, [0, 2]] - trans[:1, [0, 2]]
    if len(xz) < 3:
        return out
    drift = gaussian_filter1d(xz, sigma=drift_seconds * fps, axis=0, mode="nearest")
    if radius is None:
        bounded = xz - drift + _squash(drift, FLOOR_RADIUS)
    else:
        # The drift is taken with the path point-reflected about its first frame, so that drift
        # and quick travel both start at the start, the centre of the stage.
        pad = min(len(xz) - 1, int(4 * drift_seconds * fps))
        reflected = np.concatenate([-xz[pad:0:-1], xz])
        drift = gaussian_filter1d(reflected, sigma=drift_seconds * fps, axis=0, mode="nearest")[pad:]
        quick = float(np.clip(radius / 2, IN_PLACE_SWAY, QUICK_TRAVEL))
        bounded = _squash(xz - drift, quick)
        if radius > quick:
            bounded = bounded + _squash(drift, radius - quick)
    out[:, [0, 2]] = trans[:1, [0, 2]] + bounded
    return out


def _soft_rim(xz: np.ndarray, knee: float, radius: float) -> np.ndarray:
    """(T,2) offsets unchanged within `knee`, beyond it pressed (tanh) into the open disc of `radius`."""
    r = np.linalg.norm(xz, axis=1, keepdims=True)
    over = np.maximum(r - knee, 0.0)
    pressed = knee + (radius - knee) * np.tanh(over / (radius - knee))
    return np.where(r > knee, xz * pressed / np.maximum(r, 1e-9), xz)


def steering_turns(trans: np.ndarray, fps: float, radius: float = FLOOR_RADIUS,
                   held: np.ndarray | None = None, drift_seconds: float = DRIFT_SECONDS) -> np.ndarray:
    """(T,3) Y-up root path -> (T,) turn about the vertical (rad, about +Y, counter-clockwise seen
    from above) to give the dance at each frame so that its travel curves back inside `radius`.

    The heading is the path's 2 s low-pass (steps and sways to and fro do not steer). Where the
    turned path is further than STEER_FROM * radius from the start and heads further outwards than
    allowed there (see STEER_INWARD), the angle grows at a curvature of the excess over
    STEER_CURVE_M (past STEER_FULL * radius: ever more inwards, at STEER_CURVE_RIM_M), capped at
    MAX_STEER_RATE, turning the heading the short way to the floor's tangent. `held` frames (a dancer waiting in a silence) do not turn."""
    T = len(trans)
    turn = np.zeros(T)
    if T < 3:
        return turn
    step = np.diff(trans[:, [0, 2]], axis=0)
    heading = gaussian_filter1d(step, sigma=drift_seconds * fps, axis=0, mode="nearest")
    near, full = STEER_FROM * radius, STEER_FULL * radius
    max_turn = MAX_STEER_RATE / fps
    waiting = np.zeros(T, bool) if held is None else np.asarray(held, bool)
    # Plain floats: a 10-minute song is 18,000 frames of this loop.
    x = z = angle = 0.0
    c, s = 1.0, 0.0                                     # about_y(angle) on (x, z)
    for t, (hx, hz, dx, dz) in enumerate(np.hstack([heading, step]).tolist()):
        r = math.hypot(x, z)
        if r > near and not waiting[t + 1]:
            ux, uz = c * hx + s * hz, c * hz - s * hx
            speed = math.hypot(ux, uz)
            outwards = (x * ux + z * uz) / (r * speed) if speed > 1e-12 else 0.0
            allowed = 1.0 - (1.0 + STEER_INWARD) * smoothstep(min((r - near) / (full - near), 1.0))
            curve = STEER_CURVE_M
            if r > full:
                allowed -= (1.0 - STEER_INWARD) * min((r - full) / (radius - full), 1.0)
                curve = STEER_CURVE_RIM_M
            if outwards > allowed:
                amount = min((outwards - allowed) * speed / curve, max_turn)
                # A growing angle turns (x, z) towards (z, -x): the way that lowers cross(at, u),
                # at = (x, z) being where the turned path is.
                angle += amount if x * uz - z * ux <= 0 else -amount
                c, s = math.cos(angle), math.sin(angle)
        turn[t + 1] = angle
        x, z = x + c * dx + s * dz, z + c * dz - s * dx     # frame t+1's travel, turned by its angle
    return turn


def _mean_heading(root: Rotation) -> float:
    """Circular mean of the rotations' headings about the vertical (turns.yaw_of)."""
    heading = yaw_of(root)
    return float(np.arctan2(np.sin(heading).mean(), np.cos(heading).mean()))


def steer_on_floor(poses: np.ndarray, trans: np.ndarray, fps: float, radius: float = FLOOR_RADIUS,
                   held: np.ndarray | None = None, turn: np.ndarray | None = None,
                   facing_kept_from: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T,72) axis-angle poses and (T,3) Y-up root path -> the same dance kept on a floor of
    `radius` around its first frame by curving its travel (steering_turns): every frame's root
    orientation and onward travel are turned about the vertical by that frame's angle, so the
    dance is the same in the dancer's own frame and the feet, cleaned afterwards, step along the
    curve. Travel keeps its speed. A last soft rim (identity within STEER_FULL * radius) keeps the
    rare path that a fast straight run carries past the curve inside the radius. `turn`: the
    steering_turns already worked out for these arguments. `facing_kept_from` (a frame): the
    steered dance from there on is then turned so that it faces, on average, where the dance
    faced before (the front: engine.sampler.facing), the turn eased in over FRONT_AGAIN_SECONDS
    after that frame (0: the whole dance turned about its start, nothing eased; kept only where
    the dance goes on for twice FRONT_AGAIN_SECONDS after it, as engine.sampler.facing). After the last
    key of a facing or a place it was not: steered, a dance with a start pose faced 32 degrees
    off the front on average (QA)."""
    turn = steering_turns(trans, fps, radius, held) if turn is None else turn
    out_poses, out = poses.copy(), trans.copy()
    if not turn.any():
        return out_poses, out
    root = Rotation.from_rotvec(poses[:, :3])
    ramp = max(1, round(FRONT_AGAIN_SECONDS * fps))
    if facing_kept_from is not None and (facing_kept_from == 0 or facing_kept_from + 2 * ramp <= len(turn)):
        after = slice(facing_kept_from, None)
        ease = np.ones(len(turn))
        if facing_kept_from > 0:
            ease = smoothstep(np.clip((np.arange(len(turn)) - facing_kept_from) / ramp, 0.0, 1.0))
        back = 0.0
        for _ in range(3):      # the eased frames turn back only partly: what they miss, turned again
            eased = turn + back * ease
            back += R.wrap_angle(_mean_heading(root[after]) - _mean_heading(about_y(eased[after]) * root[after]))
        turn = turn + back * ease
    turned = about_y(turn)
    out_poses[:, :3] = (turned * root).as_rotvec()
    step = np.zeros_like(trans)
    step[1:] = np.diff(trans, axis=0)
    step[:, 1] = 0.0
    travelled = np.cumsum(turned.apply(step), axis=0)[:, [0, 2]]
    out[:, [0, 2]] = trans[:1, [0, 2]] + _soft_rim(travelled, STEER_FULL * radius, radius)
    return out_poses, out


def keep_on_floor(poses: np.ndarray, trans: np.ndarray, fps: float, radius: float | None = None,
                  held: np.ndarray | None = None, fixed_times: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The finishing's "floor" step: (T,72) poses and (T,3) Y-up root path at `fps` -> the dance
    kept on its floor. `radius` None: steered on the default floor (steer_on_floor), unless the
    steering would have turned the dance by a keyed time (`fixed_times`, seconds: keys of the
    dancer's place or facing), which it must meet as keyed; then, and for a user-set radius, the
    path is squashed (bound_root_path) and the poses are kept. After the last such key (with none,
    the whole dance), the steered dance faces where it faced before on average (the front:
    engine.sampler.facing)."""
    if radius is None:
        turn = steering_turns(trans, fps, FLOOR_RADIUS, held)
        last = -1 if fixed_times is None or len(fixed_times) == 0 else int(np.ceil(np.max(fixed_times) * fps))
        if not turn[:last + 1].any():
            return steer_on_floor(poses, trans, fps, FLOOR_RADIUS, held, turn, facing_kept_from=last + 1)
    return poses, bound_root_path(trans, fps, radius, held=held)
