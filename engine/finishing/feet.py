"""Grounded feet: put the dancer on the floor, pin planted feet and re-step sliding ones with
two-bone leg IK.

Diffusion output floats, sinks and skates a little. Here (1) the root height is corrected so the
lowest foot touches the floor whenever a foot is planted (interpolated through jumps, never below
the floor), and (2) each planted run of a foot pins its ankle to one spot on the floor; the hip
and knee are re-solved analytically, and the foot holds its mid-stance orientation, so a planted
sole neither pivots nor rocks. Pins ease in and out as a correction to the drawn foot's path,
over a few frames or more, so nothing pops and a released foot never races after its path.

(3) Where a foot is on the floor but sliding, it is re-stepped. The network often moves the
dancer by gliding both feet along the floor at once, so the body accelerates with nothing to
push from (EDGE's PFC measures exactly this; weights/TRAINING.md, "Beat warp and feet,
revisited"). A sliding foot instead plants for STANCE_FRACTION of a stepping cycle, then
swings, lifted, to its next spot. The two feet are half a cycle apart, so one of them is always
down. The cycle lasts about STEP_CYCLE_SECONDS; beat_cycle fits it to the music so that steps
land on beats.

(4) The leg IK solves each leg alone; where the two legs would then go through each other, the
knees turn apart about their hip-ankle lines (_turn_knees_apart), the feet staying put.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d, maximum_filter1d, minimum_filter1d

from ..body import rotations as R
from ..body.curves import SMOOTHSTEP_PEAK_OVER_MEAN, envelope, smoothstep, smoothstep_slope
from ..body.limbs import deepest_meeting, leg_capsules
from ..body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, REST_OFFSETS, bend_axis, forward_kinematics
from ..defaults import PACED_KEY_SECONDS

PLANTED_HEIGHT = 0.06      # m above the floor under which a foot joint may be planted
PLANTED_SPEED = 0.35       # m/s horizontal speed under which a low foot counts as planted
MIN_RUN_SECONDS = 0.08     # shorter contacts are noise
# The longest a dancer is in the air: a jump's airtime, 2 sqrt(2h / g), for a 44 cm rise; in
# the air means both feet higher than AIRBORNE_HEIGHT (m).
MAX_AIRTIME_SECONDS = 0.6
AIRBORNE_HEIGHT = 0.1
FADE_SECONDS = 0.15        # pins fade in/out over at least this long
# Re-stepping a sliding foot (weights/TRAINING.md, "Beat warp and feet, revisited"): cycles of
# 0.6-0.8 s scored alike on the validation split; the longer one steps less frantically.
STEP_CYCLE_SECONDS = 0.8   # one plant and one swing of the same foot
STANCE_FRACTION = 0.55     # share of the cycle a sliding foot stays planted
# How a re-stepped foot swings (weights/TRAINING.md, "Swings whose toe clears the floor"): the
# ankle rises over the first LIFT_OFF_SHARE of the swing, holds its lift while the foot travels
# (eased, over the middle SWING_TRAVEL_SHARE; more of a short swing, within MAX_SWING_SPEED) and
# sets down over the last; the sole keeps its planted orientation until the foot sets off and
# from when it arrives. The lift is STEP_LIFT, or more where the toe, hanging under the ankle
# as the network draws the foot, would pass within TOE_CLEARANCE of the floor as the foot
# travels (up to MAX_STEP_LIFT). A moving toe within 5 cm of the floor skims (issue 15's
# definition); 1.5 cm spare. Against the swing before (8 cm on a sine, travel over 70%, the sole
# let go at lift-off), 3 seeds, style any: skimming 27.1% -> 13.2% on validation and 27.2% ->
# 12.8% on the genre set; the lift costs kinetic realism (FID_k 27.5 -> 30.4 and 26.6 -> 29.0).
# This is a finishing patch over a network that glides its feet: debt until a retraining.
STEP_LIFT = 0.08
SWING_TRAVEL_SHARE = 0.6
LIFT_OFF_SHARE = 0.3
TOE_CLEARANCE = 0.065
MAX_STEP_LIFT = 0.2
# The ankle's height target is Gaussian-smoothed over this before the leg IK: a short swing's
# lift, planned frame by frame, rose and set down in a frame or two, and the knees jerked there
# (twice the real dancers' knee jerk: 196 against 89 m/s^3, half of it within 2 frames of a
# stance's edge). The smoothing lifts a stance's edge frame by a few millimetres, as a heel
# peels off (the contacts still count it). One frame, 3 seeds of the validation songs: knee jerk
# 141, jerk 82.6 -> 73.0, FID_k 31.0 -> 29.8, skimming unchanged (weights/TRAINING.md, "Smoother
# lifts"). 0.05 s did more (knee jerk 125, FID_k 28.9, skimming 8.8%) but ate into stances of a
# few frames, where a character's own planted feet then slid (tests/test_character_feet.py).
LIFT_SMOOTHING_SECONDS = 0.033
# A planted foot holds one orientation while the network turns it by up to 45 degrees (95% of
# stance frames), and follows the network fully from 90 (a turn on that foot); in between it is
# blended. Holding through larger turns twists the ankle; it scored the same (TRAINING.md). The
# foot then turns about the ball of the foot, not the ankle (_pivot_about_toe): turned about the
# ankle, its toe swept the floor (skimming 13.2% -> 11.0% of validation frames with the pivot).
SOLE_RELEASE_DEGREES = (45.0, 90.0)
# The network's own swings (a foot it raises between two stances, which is not re-stepped) lift
# off before they travel and set down after: the foot holds its stance's spot for up to
# OWN_SWING_HOLD_SECONDS (at most the share a re-stepped swing holds) and eases into its drawn
# path over OWN_SWING_EASE_SECONDS; the rest of the path keeps its timing. Where its toe would
# still move faster than PLANTED_SPEED within TOE_CLEARANCE of the floor, the ankle is raised
# there. Before, such a foot left and reached its stances sliding along the floor: skimming
# 11.0% -> 8.2% of validation frames, 10.4% -> 5.8% on the genre set, FID_k +0.2 and -0.05
# (weights/TRAINING.md, "The network's own swings lift off").
OWN_SWING_HOLD_SECONDS = 0.07
OWN_SWING_EASE_SECONDS = 0.07
MAX_REACH = 0.97           # share of the leg's length IK may put a foot from its hip
REACH_SLACK = 0.01         # m a straight leg may fall short of its planted spot
# The fastest a re-stepped foot swings (eased peak, m/s): the training dancers' ankles move
# faster than 5.0 m/s in 0.1% of frames (tang2018 and JustLMD training split, 30 fps).
MAX_SWING_SPEED = 5.0
# The shortest swing (s). Two stances a frame or two apart (a stance of the stepping cycle, then
# the drawn foot's own plant; 5% of swings on 6 open-genre songs) rushed the foot 15-40 cm, up
# and down, in one or two frames; in place (the stage pulling the hips in) such a swing left the
# planted knee nearly straight and turning past the joint-speed guard's bound, whose rebuild
# then slid the foot (a waltz's feet skating in 21% of contact frames; with this, none).
MIN_SWING_SECONDS = 0.25
# The most a pin's correction may add to the drawn foot's speed as it eases in or out (m/s). A
# stance that pinned a foot the network was already lifting, released over the fixed fade, flung
# it after the drawn foot at 8-14 m/s (QA: 16 of 47 dances on unseen songs passed 8 m/s; on 28
# genre-set dances 6 did, now 1). 2.5 rather than 1.5: longer catch-ups slide low feet, genre-set
# foot skating 15.2% against 14.5% (13.7% before; seed spread 7), the same kicks removed.
MAX_CATCH_UP_SPEED = 2.5
# The knee is a hinge (skeleton.bend_axis: real dancers' knees keep within 47-56 degrees of it).
# The network draws knees bent up to 154 degrees off it: nearly straight legs bent backwards or
# sideways (4.5% of seed 0's validation frames bent over 5 degrees lay past 45 degrees off the
# hinge; a backwards knee is what an animator sees). Where the drawn bend strays further than
# KNEE_HINGE_TOLERANCE, its axis is turned back towards that bound (eased in time), the bend's
# angle kept, and the thigh swung so that ankle and foot stay where they were.
KNEE_HINGE_TOLERANCE = np.radians(55)
KNEE_HINGE_EASE_SECONDS = 0.5   # eased in this long away from a leg's keys (the animator's knee, as keyed)
# Both legs at once (weights/TRAINING.md, "Knees turned apart"). The leg IK solves one leg at a
# time and bends its knee in the plane the network drew it in; a foot the feet step moves nearer
# the other (a stance on its mean spot, a swing on the straight line between spots) carries that
# knee across too, and planned alone the legs went through each other twice as often as drawn
# (4.3% -> 9.2% of validation frames). The IK's one free choice, the knee's swivel about the
# hip-ankle line, is made with both legs in view: where two limbs of the two legs meet closer
# than LEGS_APART_CLEARANCE beyond touching (engine.body.limbs), the legs the feet step moves
# turn about that line, each by its share of the turn that parts them, up to MAX_KNEE_SWIVEL,
# spread and eased over neighbouring frames. Feet and soles stay where the feet step put them.
LEGS_APART_CLEARANCE = 0.01          # m
MAX_KNEE_SWIVEL = 0.8                # rad
KNEE_SWIVEL_PASSES = 4
KNEE_SWIVEL_STEP = 0.3               # rad one pass may add on a frame
KNEE_SWIVEL_SPREAD_SECONDS = 0.23    # a frame's turn reaches this far (a window) before easing
KNEE_SWIVEL_EASE_SECONDS = 0.13      # Gaussian sigma of the turn over time

LEGS = {  # (hip, knee, ankle, toe) per side
    "left": tuple(JOINT_INDEX[n] for n in ("left_hip", "left_knee", "left_ankle", "left_foot")),
    "right": tuple(JOINT_INDEX[n] for n in ("right_hip", "right_knee", "right_ankle", "right_foot")),
}
FOOT_JOINTS = [j for leg in LEGS.values() for j in leg[2:]]
LEG_IK_JOINTS = [j for leg in LEGS.values() for j in leg[:3]]   # what the two-bone IK turns: hip, knee, ankle


def _global_rotations(local: torch.Tensor) -> torch.Tensor:
    out = [local[:, 0]]
    for j in range(1, NUM_JOINTS):
        out.append(out[PARENTS[j]] @ local[:, j])
    return torch.stack(out, dim=1)


def _positions(poses: np.ndarray, trans: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    local = R.axis_angle_to_matrix(torch.from_numpy(poses).reshape(-1, NUM_JOINTS, 3))
    return local, forward_kinematics(local, torch.from_numpy(trans))


def true_runs(mask: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[start, stop) of True runs at least min_len long."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(a, b) for a, b in zip(starts, stops) if b - a >= min_len]


def _through_supports(lowest: np.ndarray, supported: np.ndarray) -> np.ndarray:
    """(T,) the root's height correction that puts the lowest foot on the floor where the body is
    `supported`, interpolated between supports (through jumps)."""
    if supported.sum() < 2:
        return np.full(len(lowest), -np.median(lowest))
    frames = np.arange(len(lowest))
    return np.interp(frames, frames[supported], -lowest[supported])


def ground(poses: np.ndarray, trans: np.ndarray, fps: float, jump_lift: np.ndarray | None = None) -> np.ndarray:
    """Root path with height corrected so that planted frames touch the floor (y = 0).
    `jump_lift` (T,): metres by which jumps that root keys ask for lift the feet
    (engine.finishing.editing.keyed_jump_lift); the floor is found under the feet without it,
    so the keys' jump stays as it is (QA: a keyed long jump put back on the floor between its
    keys, and put back up at the end, went 16 cm over the keyed height beside them)."""
    _, pos = _positions(poses, trans)
    feet = pos[:, FOOT_JOINTS].numpy()
    lowest = feet[:, :, 1].min(axis=1)
    unlifted = lowest if jump_lift is None else lowest - jump_lift      # where the feet would be without the jump
    speed = np.linalg.norm(np.gradient(feet[:, :, [0, 2]], axis=0), axis=-1).min(axis=1) * fps
    # Whether the body is supported: its lowest foot is nearly still. Not a height test, since
    # the height itself is what is being corrected.
    supported = speed < PLANTED_SPEED
    correction = _through_supports(unlifted, supported)
    # Nobody stays in the air longer than a jump lasts: where both feet would be off the floor
    # (by AIRBORNE_HEIGHT) for longer than MAX_AIRTIME_SECONDS, the legs are folded up under a
    # root held high, and the body stands on its lowest foot there (QA: a regenerated range
    # between root keys floated both feet up to 49 cm for 2.3 s, the hips held at the keys' height).
    airborne = unlifted + correction > AIRBORNE_HEIGHT
    long_flights = true_runs(airborne, int(round(MAX_AIRTIME_SECONDS * fps)) + 1)
    for a, b in long_flights:
        supported[a:b] = True
    if long_flights:
        correction = _through_supports(unlifted, supported)
    correction = gaussian_filter1d(correction, sigma=max(1.0, 0.05 * fps), mode="nearest")
    correction = np.maximum(correction, -lowest)          # never through the floor
    out = trans.copy()
    out[:, 1] += correction
    return out


# Passes of the leg IK that puts keyed legs' ankles (reach_ankles). One pass is exact only where
# the knee bends in the plane of thigh and shin; where it bends about (or towards) its hinge
# instead, the ankle falls short, and each further pass, from where the last one left the leg,
# closes most of the rest. Out of reach a pass can end further off than the one before it, so
# each frame keeps the pass that brought its ankle closest. The feet step (lock_feet) runs one
# pass: there it falls short by over 1 cm on 5% of frames (up to 11 cm), and four passes cut
# that to 1.2% and skimming by 0.8 points, but swings then land with the knee snapping straight
# (leg joints over 12 rad/s, which the training dancers never reach, on 4.7 frames per 1000
# against 3.5) and FID_k rose by 0.5 in every seed (weights/TRAINING.md, "The leg IK in passes").
REACH_PASSES = 4
# Where the feet step's one pass leaves an ankle under the floor (the knee bent about its hinge
# while the stance's spot is on the floor: QA, full-pose keys from another dance, a planted ankle
# 5 cm under it with the toe on the floor), that frame takes the passes above, eased in over this
# depth so the frames beside it, just above the floor, do not jump.
UNDER_FLOOR_EASE_METRES = 0.01


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _two_bone_ik(local: torch.Tensor, glob: torch.Tensor, pos: torch.Tensor, leg, target: torch.Tensor,
                 frames: torch.Tensor, sole: torch.Tensor | None = None, passes: int = 1,
                 above_floor: bool = False) -> torch.Tensor:
    """Move the ankle of `leg` to `target` (F,3) on `frames`, editing the local rotations of hip,
    knee and ankle in place (`passes` passes, see REACH_PASSES; each frame keeps its closest).
    The foot keeps its world orientation, or takes `sole` (F,3,3) where given. `above_floor`:
    frames whose ankle the passes leave under the floor take REACH_PASSES, eased in by depth
    (UNDER_FLOOR_EASE_METRES). Returns each frame's miss (F,) in metres."""
    hip, knee, ankle, _ = leg
    H = pos[frames, hip]
    knee_offset = torch.as_tensor(REST_OFFSETS[knee], dtype=pos.dtype)
    ankle_offset = torch.as_tensor(REST_OFFSETS[ankle], dtype=pos.dtype)
    hip_glob, knee_glob = glob[frames, hip], glob[frames, knee]
    K, A = pos[frames, knee], pos[frames, ankle]

    def one_pass(hip_glob, knee_glob, K, A):
        hip_glob, knee_glob = _ik_pass(H, K, A, hip_glob, knee_glob, target)
        K = H + hip_glob @ knee_offset
        A = K + knee_glob @ ankle_offset
        return hip_glob, knee_glob, K, A

    def closest_of(passes, first):
        """(hip, knee, miss, ankle) of the pass that brought each frame's ankle closest."""
        hip_glob, knee_glob, K, A = state = first
        best = (hip_glob, knee_glob, (A - target).norm(dim=-1), A)
        for _ in range(passes - 1):
            hip_glob, knee_glob, K, A = state = one_pass(*state)
            miss = (A - target).norm(dim=-1)
            closer = miss < best[2]
            best = (torch.where(closer[:, None, None], hip_glob, best[0]),
                    torch.where(closer[:, None, None], knee_glob, best[1]),
                    torch.minimum(miss, best[2]), torch.where(closer[:, None], A, best[3]))
        return best

    first = one_pass(hip_glob, knee_glob, K, A)
    best_hip, best_knee, best_miss, best_A = closest_of(passes, first)
    depth = (-best_A[:, 1]).clamp_min(0) * (target[:, 1] >= 0)
    if above_floor and passes < REACH_PASSES and bool((depth > 0).any()):
        deep_hip, deep_knee, deep_miss, _ = closest_of(REACH_PASSES, first)
        w = (depth / UNDER_FLOOR_EASE_METRES).clamp(max=1.0)[:, None]
        best_hip = R.quat_to_matrix(R.quat_slerp(R.matrix_to_quat(best_hip), R.matrix_to_quat(deep_hip), w))
        best_knee = R.quat_to_matrix(R.quat_slerp(R.matrix_to_quat(best_knee), R.matrix_to_quat(deep_knee), w))
        best_miss = torch.where(w[:, 0] > 0, deep_miss, best_miss)
    sole = glob[frames, ankle] if sole is None else sole
    local[frames, hip] = glob[frames, PARENTS[hip]].transpose(-1, -2) @ best_hip
    local[frames, knee] = best_hip.transpose(-1, -2) @ best_knee
    local[frames, ankle] = best_knee.transpose(-1, -2) @ sole
    return best_miss


def _ik_pass(H: torch.Tensor, K: torch.Tensor, A: torch.Tensor, hip_glob: torch.Tensor, knee_glob: torch.Tensor,
             target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of two-bone IK from hip H, knee K and ankle A (F,3) with the hip's and knee's world
    rotations (F,3,3): bend the knee to the target's distance, then swing the leg onto it.
    Returns the new world rotations of hip and knee."""
    u, v = H - K, A - K
    l1, l2 = u.norm(dim=-1), v.norm(dim=-1)
    d = (target - H).norm(dim=-1).clamp(min=(l1 - l2).abs() + 1e-4, max=l1 + l2 - 1e-4)
    cos0 = ((u * v).sum(-1) / (l1 * l2)).clamp(-1, 1)
    cos1 = ((l1 ** 2 + l2 ** 2 - d ** 2) / (2 * l1 * l2)).clamp(-1, 1)
    phi = torch.acos(cos1) - torch.acos(cos0)
    # The knee bends in the plane of thigh and shin. A (nearly) straight leg has no such plane:
    # its cross product is noise whose sign can flip from one frame to the next, and bending about
    # a flipped axis throws the knee the wrong way (a pop of the hip and knee by 50 degrees in one
    # frame). Where the plane's normal strays from the knee's own hinge (its -x axis, the way a
    # real knee bends, heel going back) the hinge is blended in, fully from 60 degrees on.
    hinge = -knee_glob[..., 0]
    normal = torch.cross(u, v, dim=-1)
    normal = _unit(normal)
    agree = ((normal * hinge).sum(-1, keepdim=True) - 0.5) / 0.4
    trust = agree.clamp(0.0, 1.0)
    axis = trust * normal + (1 - trust) * hinge
    axis = _unit(axis)
    bend = R.axis_angle_to_matrix(axis * phi[:, None])
    A_new = K + (bend @ v.unsqueeze(-1)).squeeze(-1)
    swing = _rotation_between(A_new - H, target - H)
    return swing @ hip_glob, swing @ bend @ knee_glob


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = _unit(a), _unit(b)
    axis = torch.cross(a, b, dim=-1)
    angle = torch.atan2(axis.norm(dim=-1), (a * b).sum(-1))
    axis = _unit(axis)
    return R.axis_angle_to_matrix(axis * angle[:, None])


def _low_and_planted(pos: np.ndarray, fps: float, leg) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, whether this leg's foot is near the floor, and whether it is planted there (low
    and nearly still for at least MIN_RUN_SECONDS)."""
    _, _, ankle, toe = leg
    floor = pos[:, FOOT_JOINTS, 1].min()
    foot = pos[:, [ankle, toe]]
    low = (foot[:, :, 1] - floor).min(axis=1) < PLANTED_HEIGHT + (pos[:, ankle, 1] - pos[:, toe, 1]).clip(0).mean()
    speed = np.linalg.norm(np.gradient(foot[:, :, [0, 2]], axis=0), axis=-1).min(axis=1) * fps
    planted = np.zeros(len(pos), dtype=bool)
    for a, b in true_runs(low & (speed < PLANTED_SPEED), max(2, int(round(MIN_RUN_SECONDS * fps)))):
        planted[a:b] = True
    return low, planted


def _leg_reach(pos: np.ndarray, leg) -> np.ndarray:
    """Per frame, how far from its hip IK may put this leg's ankle. A leg the network already
    holds straight may stay so (give or take REACH_SLACK); IK straightens no other."""
    hip, knee, ankle, _ = leg
    length = np.linalg.norm(pos[:, knee] - pos[:, hip], axis=-1) + np.linalg.norm(pos[:, ankle] - pos[:, knee], axis=-1)
    return np.maximum(MAX_REACH * length, np.linalg.norm(pos[:, ankle] - pos[:, hip], axis=-1) + REACH_SLACK)


def _spot(ankle_path: np.ndarray, a: int, b: int) -> np.ndarray:
    """Where a foot planted over frames [a, b) stands: its mean place, on its lowest height."""
    spot = ankle_path[a:b].mean(axis=0)
    spot[1] = ankle_path[a:b, 1].min()
    return spot


def swing_lift(u: np.ndarray) -> np.ndarray:
    """Share of a swing's lift the ankle is raised at each point `u` in (0, 1) of the swing: eased
    up over the first LIFT_OFF_SHARE, held, eased down over the last."""
    return smoothstep(np.clip(np.minimum(u, 1 - u) / LIFT_OFF_SHARE, 0.0, 1.0))


def time_cycle(frames: int, fps: float) -> np.ndarray:
    """The stepping cycle position of each frame when there is no beat to step on."""
    return np.arange(frames) / fps / STEP_CYCLE_SECONDS


def beat_cycle(times: np.ndarray, music_beats: np.ndarray) -> np.ndarray | None:
    """The stepping cycle position at each of `times` (seconds) so that every stance starts on a
    music beat: a cycle spans the even number of beats nearest STEP_CYCLE_SECONDS, so the feet,
    half a cycle apart, take turns landing on beats. None with fewer than two beats."""
    beats = np.sort(np.asarray(music_beats, dtype=np.float64))
    if len(beats) < 2:
        return None
    period = float(np.median(np.diff(beats)))
    beats_per_cycle = 2 * max(1, int(round(STEP_CYCLE_SECONDS / (2 * period))))
    times = np.asarray(times, dtype=np.float64)
    index = np.interp(times, beats, np.arange(len(beats), dtype=np.float64))
    index = np.where(times < beats[0], (times - beats[0]) / period, index)   # the beat grid goes on
    index = np.where(times > beats[-1], len(beats) - 1 + (times - beats[-1]) / period, index)
    return index / beats_per_cycle


def _fade_frames(fps: float) -> int:
    return max(1, int(round(FADE_SECONDS * fps)))


def _fade_edges(target: np.ndarray, weight: np.ndarray, fade: int) -> None:
    """Fade each held stretch of `weight` in and out over `fade` frames, holding its edge target,
    so that nothing pops. Edits both arrays in place."""
    T = len(weight)
    for a, b in true_runs(weight > 0, 1):
        for k in range(1, fade + 1):
            w = 1.0 - k / (fade + 1)
            for i, edge in ((a - k, a), (b - 1 + k, b - 1)):
                if 0 <= i < T and w > weight[i]:
                    weight[i], target[i] = w, target[edge]


def _ease_corrections(target: np.ndarray, weight: np.ndarray, drawn: np.ndarray, fade: int, fps: float,
                      given: np.ndarray | None = None) -> None:
    """Ease each held stretch of `weight` (its `target` for the foot's `drawn` path) in and out:
    next to it the foot keeps its drawn path plus the stretch's correction at its edge (target -
    drawn), eased to nothing over at least `fade` frames, and over as many as keep the change of
    correction within MAX_CATCH_UP_SPEED. Blended towards a fixed edge target instead, a foot
    the network was already lifting was dragged after it over the fade at 8-14 m/s. Where two
    stretches' eases would overlap, the correction passes from one edge's to the other's
    across the gap. Frames where `given` (T,) marks the leg's pose as given bound a gap as a
    stretch whose correction is nothing, so the foot reaches them as given. Edits both arrays
    in place; eased frames get weight 1."""
    T = len(weight)
    fixed = np.zeros(T, bool) if given is None else np.asarray(given, bool)
    runs = true_runs((weight > 0) | fixed, 1)
    if not runs:
        return

    def edge_correction(e: int) -> np.ndarray:
        return np.zeros(3) if fixed[e] else target[e] - drawn[e]

    def frames_for(correction: np.ndarray) -> int:
        return max(fade, int(np.ceil(SMOOTHSTEP_PEAK_OVER_MEAN * np.linalg.norm(correction) * fps
                                     / MAX_CATCH_UP_SPEED)))

    def smooth(u: np.ndarray) -> np.ndarray:
        return smoothstep(np.clip(u, 0.0, 1.0))

    gaps = [(None, runs[0][0])] + [(runs[i][1], runs[i + 1][0]) for i in range(len(runs) - 1)] + [(runs[-1][1], None)]
    for after, before in gaps:                       # free frames between a run's end and the next's start
        lo, hi = (0 if after is None else after), (T if before is None else before)
        if hi <= lo:
            continue
        i = np.arange(lo, hi)
        left = None if after is None else edge_correction(after - 1)
        right = None if before is None else edge_correction(before)
        n_left = 0 if left is None else frames_for(left)
        n_right = 0 if right is None else frames_for(right)
        correction = np.zeros((len(i), 3))
        if left is not None and right is not None and hi - lo < n_left + n_right:
            s = smooth((i - lo + 1) / (hi - lo + 1))
            correction = (1 - s)[:, None] * left + s[:, None] * right
        else:
            if left is not None:
                correction += (1 - smooth((i - lo + 1) / (n_left + 1)))[:, None] * left
            if right is not None:
                correction += (1 - smooth((hi - i) / (n_right + 1)))[:, None] * right
        eased = np.abs(correction).max(axis=1) > 0
        target[i[eased]] = drawn[i[eased]] + correction[eased]
        weight[i[eased]] = 1.0


def _played_share(n: int, hold: float, ease: float) -> np.ndarray:
    """(n,) share of a swing's drawn path played by each of its n frames, when it is played from
    the stance before it to the one after at a rate that is nothing for `hold` frames at each
    end and eases to the drawn pace over `ease` frames (no hold and no ease: as drawn)."""
    mid = np.arange(n + 1) + 0.5                 # the n + 1 steps from the stance before to the one after
    if ease <= 0:
        rate = (np.minimum(mid, n + 1 - mid) > hold).astype(np.float64)
    else:
        rate = (smoothstep(np.clip((mid - hold) / ease, 0.0, 1.0))
                * smoothstep(np.clip((n + 1 - mid - hold) / ease, 0.0, 1.0)))
    return np.cumsum(rate)[:-1] / max(rate.sum(), 1e-12)


def _own_swing(pos: np.ndarray, fps: float, leg, b0: int, a1: int, spot0: np.ndarray,
               spot1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The network's own swing of this leg over frames [b0, a1), from the stance ending at b0 - 1
    (planted on `spot0`) to the one starting at a1 (on `spot1`): (ankle target (n,3), sole held
    (n,) bool, where the foot has not set off or has arrived). The drawn path, moved from spot to
    spot, is played from the first stance's edge to the next's at a rate that is nothing while
    the foot lifts off and sets down and eases to the drawn pace in between; where the toe still
    moves faster than PLANTED_SPEED within TOE_CLEARANCE of the floor, the ankle is raised.

    The re-timed path is faster between its ends than drawn: a short swing held and eased by the
    full amounts reached 10 m/s (QA, a 3-minute song). The ends are shortened until the foot is
    no faster than MAX_SWING_SPEED, or than the network drew it."""
    ankle_path = pos[:, leg[2]]
    n = a1 - b0
    hold = min((1 - SWING_TRAVEL_SHARE) / 2 * (n + 1), OWN_SWING_HOLD_SECONDS * fps)
    ease = OWN_SWING_EASE_SECONDS * fps
    fastest = max(MAX_SWING_SPEED / fps, np.linalg.norm(np.diff(ankle_path[b0 - 1:a1 + 1], axis=0), axis=-1).max())
    for shorter in (1.0, 0.75, 0.5, 0.25, 0.0):
        path, held = _lifted_off_path(pos, fps, leg, b0, a1, spot0, spot1, shorter * hold, shorter * ease)
        if np.linalg.norm(np.diff(np.concatenate([spot0[None], path, spot1[None]]), axis=0), axis=-1).max() <= fastest:
            break
    return path, held


def _lifted_off_path(pos: np.ndarray, fps: float, leg, b0: int, a1: int, spot0: np.ndarray, spot1: np.ndarray,
                     hold: float, ease: float) -> tuple[np.ndarray, np.ndarray]:
    """_own_swing's path and held sole for a hold and an ease of the given frames."""
    _, _, ankle, toe = leg
    n = a1 - b0
    ankle_path = pos[:, ankle]
    played = _played_share(n, hold, ease)
    source = b0 - 1 + played * (n + 1)
    path = np.stack([np.interp(source, np.arange(len(pos)), ankle_path[:, k]) for k in range(3)], axis=1)
    path += (1 - played)[:, None] * (spot0 - ankle_path[b0 - 1]) + played[:, None] * (spot1 - ankle_path[a1])
    around = np.concatenate([spot0[None, [0, 2]], path[:, [0, 2]], spot1[None, [0, 2]]])
    steps = np.linalg.norm(np.diff(around, axis=0), axis=-1)       # to each frame, and on from the last
    moving = np.maximum(steps[:-1], steps[1:]) * fps > PLANTED_SPEED
    toe_drop = pos[b0:a1, ankle, 1] - pos[b0:a1, toe, 1]       # the toe under the ankle, as drawn
    k = np.arange(1, n + 1)
    edge = max(hold + ease, 1.0)
    at_stances = smoothstep(np.clip(k / edge, 0.0, 1.0)) * smoothstep(np.clip((n + 1 - k) / edge, 0.0, 1.0))
    # Raised around each frame that needs it (the most over the easing's reach, smoothed), eased
    # in and out at the stances, and there by as much more as the easing takes off.
    need = np.where(moving, np.maximum(0.0, TOE_CLEARANCE + toe_drop - path[:, 1]), 0.0)
    need = need / np.maximum(at_stances, 1e-3)
    reach = max(1, int(round(ease)))
    need = envelope(need, reach, mode="constant")
    path[:, 1] += np.minimum(need, MAX_STEP_LIFT) * at_stances
    return path, (played <= 0.0) | (played >= 1.0)


def _joined_across_short_gaps(stances: list[tuple[int, int]], low: np.ndarray, shortest: int,
                              can_stand) -> list[tuple[int, int]]:
    """`stances` (frame runs in order) with each two that are under `shortest` frames apart, the
    foot low between, joined into one where `can_stand(a, b)` allows it."""
    out: list[tuple[int, int]] = []
    for a, b in stances:
        if out and a - out[-1][1] < shortest and low[out[-1][1]:a].all() and can_stand(out[-1][0], b):
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def step_plan(pos: np.ndarray, fps: float, leg, cycle: np.ndarray, given: np.ndarray | None = None,
              pinned: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where this leg's ankle should be: (target (T,3), weight (T,) in [0, 1], planted (T,) bool,
    sole held (T,) bool: planted, lifting off or setting down).

    Planted runs keep their spot. Sliding frames (low, not still) follow the stepping cycle
    `cycle` (T,), each frame's position in cycles: a stance from each whole number for
    STANCE_FRACTION of the cycle, planted on the stance's mean spot, then a lifted, eased swing
    to the next spot; two stances under MIN_SWING_SECONDS apart, the foot low between, are one
    where the leg reaches a single spot from all their frames. Between two stances where the network raises the foot itself, its own
    swing keeps its path, lifting off and setting down first (_own_swing). The hips keep the
    network's path, so no foot is planted beyond the leg's reach (a locked knee dragging the
    foot): a planted run whose spot the hips carry out of reach is stepped as well, and a stance
    ends where its spot goes out of reach. Frames where
    `given` (T,) marks the leg's pose as given belong to no stance and no swing. A frame
    `pinned` (T,) (a lone key of the leg) with its foot low is planted, and its stance stands
    where the key puts the foot; with its foot up it is given.
    """
    hip, _, ankle, toe = leg
    ankle_path = pos[:, ankle]
    reach = _leg_reach(pos, leg)

    def out_of_reach(a: int, b: int, spot: np.ndarray) -> np.ndarray:
        return np.linalg.norm(pos[a:b, hip] - spot, axis=-1) > reach[a:b]

    low, planted = _low_and_planted(pos, fps, leg)
    low_key = low.copy()
    min_swing = int(round(MIN_SWING_SECONDS * fps))
    if pinned is not None and pinned.any():
        planted = planted | (pinned & low)
        given = (pinned & ~low) if given is None else given | (pinned & ~low)
    given_planted = None
    if given is not None:
        given_planted = planted & given           # where the given foot itself stands
        low, planted = low & ~given, planted & ~given
    in_stance = (np.asarray(cycle) % 1.0) < STANCE_FRACTION
    stepping = low & ~planted
    # A stance that a planted run stretches out of reach is stepped through instead; repeat,
    # since stepping can merge stances anew. Each pass only adds frames, so this ends.
    while True:
        stances = true_runs((planted & ~stepping) | (stepping & in_stance), 2)
        too_long = [(a, b) for a, b in stances if (planted[a:b] & ~stepping[a:b]).any()
                    and out_of_reach(a, b, _spot(ankle_path, a, b)).any()]
        if not too_long:
            break
        for a, b in too_long:
            stepping[a:b] |= low[a:b]
    # Stances closer than a swing's shortest length, the foot low between, become one stance
    # where the leg reaches its spot from all of its frames. Stepped, a 4-frame swing after a
    # 2-frame stance put 74% of its lift in one frame and turned the knee at 18 rad/s (weights/
    # TRAINING.md, "Stances a short gap apart are one"). Out of reach they stay apart: the joined
    # stance would be stepped through on the cycle, lifting a foot that stands still.
    stances = _joined_across_short_gaps(stances, low, min_swing,
                                        lambda a, b: not out_of_reach(a, b, _spot(ankle_path, a, b)).any())
    # Where the leg's own keys come closer together than a step, they pace it: the stepping
    # cycle neither plants nor re-steps the foot between them (its stances there fought the
    # keys: each keyed frame popped out of a planted foot, or a swing the keys spread over 16
    # frames was squeezed into 8). The foot stands only where consecutive keys put it down,
    # and goes as drawn (the network's motion through the keys) everywhere else there.
    paced = _paced_by_keys(np.zeros(len(pos), bool) if pinned is None else pinned,
                           int(round(PACED_KEY_SECONDS * fps)))
    if paced.any():
        stances = sorted([r for a, b in stances for r in _runs_outside(paced, a, b)]
                         + _keyed_stances(pinned, paced, low_key))

    target = ankle_path.copy()
    weight = np.zeros(len(pos))
    stance = np.zeros(len(pos), dtype=bool)
    released = np.zeros(len(pos), dtype=bool)      # between keys that move the foot: as drawn
    sole_held = np.zeros(len(pos), dtype=bool)
    spots = []
    min_stance = max(2, int(round(MIN_RUN_SECONDS * fps)))
    for a, b in stances:
        spot = _spot(ankle_path, a, b)
        # A stance next to a given run stands where the given foot stands at the run's edge: on
        # a spot of its own, a foot that the network slides had to rush between that spot and
        # the given foot (a regenerated range's joins: 29 cm in a frame). Where the given foot
        # is not standing there (mid-swing), or between two given runs (a short range), the
        # foot goes as drawn, as the corrections join it to the given frames: pinned to a
        # swinging foot's place, it hung in the air and then snapped 30 cm in a frame.
        after, before = _beside_given(given, a, b)
        # A gap too short for a step, the foot down throughout and at the given run's edge,
        # joins the stance to that run and it stands where the given foot does: a hold's foot,
        # still down where the dance set off again, slid 38 cm along the floor over the 2
        # frames between the hold and the network's next stance (QA).
        joined = None
        if given is not None and not (after or before):
            for start, step in ((a, -1), (b - 1, 1)):
                edge = _given_across_low_gap(given, low, start, step, min_swing)
                if edge is not None and low_key[edge]:
                    joined = edge
                    a, b = (edge + 1, b) if step < 0 else (a, edge)
                    break
        # A stance through a key, or just after or before one whose foot is down, stands where
        # the key puts the foot; through keys that put it in different places, it is split
        # (_split_at_keys).
        keys = np.flatnonzero(pinned[a:b]) + a if pinned is not None else np.zeros(0, int)
        if not len(keys) and pinned is not None:
            keys = [f for f in (a - 1, b) if 0 <= f < len(pinned) and pinned[f] and low_key[f]]
        pieces = [(a, b, None)]
        if sum(a <= k < b for k in keys) > 1:
            pieces = _split_at_keys(a, b, keys, ankle_path)
            for (_, b0, _), (a1, _, _) in zip(pieces[:-1], pieces[1:]):
                released[b0:a1] = True
        elif len(keys):
            pieces = [(a, b, ankle_path[keys[0]].copy())]
        elif joined is not None:
            pieces = [(a, b, ankle_path[joined].copy())]
        elif after and before:
            continue
        elif after or before:
            edge = a - 1 if after else b
            if not (given_planted[edge] and _given_foot_still(ankle_path, given, edge, -1 if after else 1, fps)):
                continue
            pieces = [(a, b, ankle_path[edge].copy())]
        for a, b, path in pieces:
            path = np.broadcast_to(_spot(ankle_path, a, b) if path is None else path, (b - a, 3))
            (near,) = np.nonzero(~out_of_reach(a, b, path))
            if len(near) < 2:
                continue
            path = path[near[0]:near[-1] + 1]
            a, b = a + near[0], a + near[-1] + 1          # the stance ends where its spot is out of reach
            target[a:b], weight[a:b], stance[a:b] = path, 1.0, True
            spots.append((a, b, path[0].copy(), path[-1].copy()))
    released |= paced & ~stance
    if given_planted is not None:
        # The given foot standing at a given run's edge is a stance the free frames step to or
        # from: a foot the network slides along the floor into the given frames is re-stepped
        # to where the given foot stands (it skated 1-1.6 cm a frame for 9 frames into a
        # regenerated range's join). One frame long, it gives up none of its frames to a swing.
        # The given foot counts as standing at the edge when it is planted within a shortest
        # stance of it (the edge frame's own speed is measured across the free frame beside it).
        for g0, g1 in true_runs(given, 1):
            for edge, beside_free, around in ((g0, g0 > 0, slice(g0, g0 + min_stance)),
                                              (g1 - 1, g1 < len(given), slice(max(0, g1 - min_stance), g1))):
                if beside_free and low_key[edge] and given_planted[around].any() \
                        and _given_foot_still(ankle_path, given, edge, 1 if edge == g0 else -1, fps):
                    spots.append((edge, edge + 1, ankle_path[edge].copy(), ankle_path[edge].copy()))
        spots.sort(key=lambda s: s[0])
    for i in range(len(spots) - 1):
        (a0, b0, first0, spot0), (a1, b1, spot1, last1) = spots[i], spots[i + 1]
        if b0 >= a1 or released[b0:a1].any():
            continue
        if not low[b0:a1].all():                 # the network raises the foot: its own swing
            if given is None or not given[b0:a1].any():
                target[b0:a1], sole_held[b0:a1] = _own_swing(pos, fps, leg, b0, a1, spot0, spot1)
                weight[b0:a1] = 1.0
            continue
        # A swing across a long way in a few frames whips the foot (and the knee, straight at
        # lift-off, by 20 rad/s): it takes frames from both stances until its eased peak speed
        # is within MAX_SWING_SPEED, and until it lasts MIN_SWING_SECONDS.
        # Frames over which travel eased from rest to rest (peak 1.5x its mean speed) stays
        # within MAX_SWING_SPEED.
        travel_frames = SMOOTHSTEP_PEAK_OVER_MEAN * np.linalg.norm(spot1 - spot0) * fps / MAX_SWING_SPEED
        need = max(int(np.ceil(travel_frames)), int(round(MIN_SWING_SECONDS * fps)) + 1)
        while a1 - b0 + 1 < need and (b0 - a0 > min_stance or b1 - a1 > min_stance):
            if b0 - a0 > min_stance:
                b0 -= 1
            if b1 - a1 > min_stance and a1 - b0 + 1 < need:
                a1 += 1
        stance[b0:a1] = False
        spots[i], spots[i + 1] = (a0, b0, first0, spot0), (a1, b1, spot1, last1)
        u = (np.arange(b0, a1) - b0 + 1) / (a1 - b0 + 1)     # a swing along the floor, lifted
        # The foot lifts off before it travels and sets down after: travel is eased over the
        # middle SWING_TRAVEL_SHARE of the swing, the lift over all of it. A swing too short for
        # that within MAX_SWING_SPEED travels over more of it: stances are not cut for the lift-off.
        share = min(1.0, max(SWING_TRAVEL_SHARE, travel_frames / (a1 - b0 + 1)))
        v = np.clip((u - 0.5) / share + 0.5, 0.0, 1.0)
        eased = smoothstep(v)
        target[b0:a1] = spot0 + eased[:, None] * (spot1 - spot0)
        # Lifted enough for the toe, at the drawn foot's pitch, to clear TOE_CLEARANCE where the
        # foot travels faster than its mean travel speed (the middle 58% of the eased travel;
        # asked of all of it, where the lift is still rising, every swing rose higher and the
        # dances' kinetic realism paid for it). The sole keeps its planted orientation while
        # the foot lifts off and sets down: turned about the ankle there, the toe swept the floor.
        lift_share = swing_lift(u)
        travelling = (v > 0) & (v < 1)
        lifted = smoothstep_slope(v) >= 1.0
        toe_drop = pos[b0:a1, ankle, 1] - pos[b0:a1, toe, 1]
        needed = (TOE_CLEARANCE + toe_drop - target[b0:a1, 1]) / np.maximum(lift_share, 1e-6)
        lift = min(max(STEP_LIFT, needed[lifted].max(initial=0.0)), MAX_STEP_LIFT)
        target[b0:a1, 1] += lift * lift_share
        sole_held[b0:a1] = ~travelling
        weight[b0:a1] = 1.0
    # A key bounds the eases as given frames do: eased across it, a stance's correction moved
    # the frames beside a key that stays as keyed (a 5 cm pop into it).
    fixed = given if pinned is None else pinned if given is None else given | pinned
    _ease_corrections(target, weight, ankle_path, _fade_frames(fps), fps, fixed)
    # A swing passing further from the hip than the leg reaches is drawn in towards the hip.
    away = target - pos[:, hip]
    distance = np.linalg.norm(away, axis=-1, keepdims=True)
    target = pos[:, hip] + away * np.minimum(1.0, reach[:, None] / np.maximum(distance, 1e-9))
    return target, weight, stance, sole_held | stance


def _paced_by_keys(pinned: np.ndarray, closest: int) -> np.ndarray:
    """(T,) bool: the frames from each of a leg's keys `pinned` (T,) to the next one where that
    is at most `closest` frames on, both keys included."""
    paced = np.zeros(len(pinned), bool)
    keys = np.flatnonzero(pinned)
    for k0, k1 in zip(keys[:-1], keys[1:]):
        if k1 - k0 <= closest:
            paced[k0:k1 + 1] = True
    return paced


def _runs_outside(mask: np.ndarray, a: int, b: int) -> list[tuple[int, int]]:
    """The runs of frames in [a, b) that `mask` (T,) leaves out, two frames or longer."""
    return [(a + x, a + y) for x, y in true_runs(~mask[a:b], 2)]


def _keyed_stances(pinned: np.ndarray, paced: np.ndarray, down: np.ndarray) -> list[tuple[int, int]]:
    """A leg's keys `pinned` (T,), the frames they pace (_paced_by_keys) and where its foot is
    down (T,) -> (first key, last key + 1) of each stretch of consecutive keys, two or more, each
    pacing the next with the foot down at both (_split_at_keys then splits a stretch where its
    keys put the foot in different places)."""
    keys = np.flatnonzero(pinned)
    runs, first = [], None
    for k0, k1 in zip(keys[:-1], keys[1:]):
        linked = bool(down[k0] and down[k1] and paced[k0:k1 + 1].all())
        if linked and first is None:
            first = k0
        elif not linked and first is not None:
            runs.append((first, k0 + 1))
            first = None
    if first is not None:
        runs.append((first, keys[-1] + 1))
    return runs


# Keys of a leg inside one stance whose feet lie within this (m) of the first one's are one
# planted foot, which follows them from key to key (it creeps no further than the keys do);
# a key further away starts another stance.
KEYED_SPOT_TOLERANCE = 0.05


def _split_at_keys(a: int, b: int, keys: np.ndarray, ankle_path: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """The stance [a, b) through the leg's keys `keys` (sorted frames inside it), with the keyed
    ankle positions `ankle_path` (T, 3) -> its pieces (a', b', path (b' - a', 3)), in order.
    Keys within KEYED_SPOT_TOLERANCE of their piece's first key are one piece, planted along
    the keys' positions (held before the first and after the last); the frames between pieces
    are in none. Held on one spot through keys that put the foot elsewhere, the keyed frames
    (left as keyed) popped out of the held foot and back: with a key every 8 frames, 7 times
    the real dancers' ankle jerk."""
    groups = [[keys[0]]]
    for k in keys[1:]:
        if np.linalg.norm(ankle_path[k] - ankle_path[groups[-1][0]]) <= KEYED_SPOT_TOLERANCE:
            groups[-1].append(k)
        else:
            groups.append([k])
    pieces = []
    for i, g in enumerate(groups):
        lo, hi = (a if i == 0 else g[0]), (b if i == len(groups) - 1 else g[-1] + 1)
        frames = np.arange(lo, hi)
        path = np.stack([np.interp(frames, g, ankle_path[g, axis]) for axis in range(3)], axis=1)
        pieces.append((lo, hi, path))
    return pieces


def _run_reference(a: int, b: int, pinned: np.ndarray | None, given: np.ndarray | None = None) -> int:
    """The frame whose foot a held run [a, b) keeps: its first pinned frame (a key), else its frame
    next to given frames (the foot there must meet the given foot's), else its middle."""
    keys = np.flatnonzero(pinned[a:b]) if pinned is not None else ()
    if len(keys):
        return a + int(keys[0])
    after, before = _beside_given(given, a, b)
    return a if after else b - 1 if before else (a + b - 1) // 2


def _held_sole(sole: torch.Tensor, held: np.ndarray, fade: int, pinned: np.ndarray | None = None,
               given: np.ndarray | None = None) -> torch.Tensor:
    """(T,3,3) world orientations of a foot -> the same, held at its run's reference orientation
    (_run_reference: a pinned frame's, the one next to `given` frames, else its middle's)
    through each run of `held` (a stance with its lift-off and set-down) and eased back at its
    edges: a planted foot neither swivels nor rocks. Where the network turns the foot further
    than SOLE_RELEASE_DEGREES from that orientation, the hold is let go, so the foot pivots with
    the dancer's turn."""
    quats = R.matrix_to_quat(sole)
    target = quats.numpy().copy()
    weight = np.zeros(len(held))
    for a, b in true_runs(held, 1):
        target[a:b] = target[_run_reference(a, b, pinned, given)]
        weight[a:b] = 1.0
    _fade_edges(target, weight, fade)
    # Where the dancer turns on the planted foot, let the foot pivot rather than wring the ankle.
    turned = 2 * np.degrees(np.arccos(np.clip(np.abs((quats.numpy() * target).sum(-1)), 0.0, 1.0)))
    full, none = SOLE_RELEASE_DEGREES
    weight = weight * np.clip((none - turned) / (none - full), 0.0, 1.0)
    return R.quat_to_matrix(R.quat_slerp(quats, torch.from_numpy(target), torch.from_numpy(weight)[:, None]))


def _pivot_about_toe(drawn: torch.Tensor, held: torch.Tensor, sole_held: np.ndarray, toe_offset: np.ndarray,
                     moving: np.ndarray, fade: int, pinned: np.ndarray | None = None,
                     given: np.ndarray | None = None) -> np.ndarray:
    """(T,3) horizontal shift of a leg's ankle target so that where the held sole turns away from
    its run's middle orientation (`held` against `drawn`, (T,3,3) world orientations; a pivot,
    _held_sole), the foot turns about its toe (`toe_offset`, the toe joint's rest offset from the
    ankle) rather than about its ankle: the ball of the foot stays and the heel swings. Between
    two held runs across frames the step plan moves (`moving`: a swing) the shift passes linearly
    from one run's edge to the other's; elsewhere it eases to nothing over `fade` frames. A run next
    to `given` frames turns about its frame there (_run_reference): about its middle, a stance
    whose foot the network turned shifted the ankle off the given foot's spot by the toe's
    swing, and the foot jumped 13 cm in a frame into a regenerated range's join."""
    T = len(sole_held)
    shift = np.zeros((T, 3))
    runs = true_runs(sole_held, 1)
    if not runs:
        return shift
    for a, b in runs:
        middle = drawn[_run_reference(a, b, pinned, given)].numpy()
        shift[a:b] = middle @ toe_offset - held[a:b].numpy() @ toe_offset
    shift[:, 1] = 0.0                           # about the vertical only: the toe keeps its height
    # The gaps around the runs: each follows a run's last frame (`after`, None before the first)
    # and precedes the next run's first (`before`, None after the last).
    for after, before in zip([None] + [b for _, b in runs], [a for a, _ in runs] + [None]):
        lo, hi = (0 if after is None else after), (T if before is None else before)
        if hi <= lo:
            continue
        if after is not None and before is not None and moving[lo:hi].all():
            s = (np.arange(lo, hi) - lo + 1) / (hi - lo + 1)
            shift[lo:hi] = (1 - s)[:, None] * shift[after - 1] + s[:, None] * shift[before]
            continue
        for k in range(1, fade + 1):
            ease = 1 - smoothstep(k / (fade + 1))
            if after is not None and lo + k - 1 < hi:
                shift[lo + k - 1] += ease * shift[after - 1]
            if before is not None and hi - k >= lo:
                shift[hi - k] += ease * shift[before]
    return shift


def _given_across_low_gap(given: np.ndarray, low: np.ndarray, start: int, step: int, longest: int) -> int | None:
    """The given frame reached from frame `start` going `step` (-1: back, 1: on) across at most
    `longest` free frames on which the foot is low; None if the foot leaves the floor first, or
    none is reached."""
    f = start + step
    for _ in range(longest + 1):
        if not 0 <= f < len(given):
            return None
        if given[f]:
            return f if f != start + step else None      # right beside: _beside_given's case
        if not low[f]:
            return None
        f += step
    return None


def _given_foot_still(ankle_path: np.ndarray, given: np.ndarray, edge: int, inward: int, fps: float) -> bool:
    """Whether the given foot at a given run's `edge` stays there: its ankle moves less than a
    planted foot may (PLANTED_SPEED, in any direction) to the run's next frame `inward` (+1 or
    -1). A toe that has landed while the heel still sets down counts as planted; a stance beside
    the run, held on the ankle's place at the edge, stopped the leg there for two frames in mid
    air (10 cm up) before the kept dance set it down (QA: a regenerated range's end join, the
    knee's angular acceleration 1.7 times the rest of the dance's)."""
    nxt = edge + inward
    if not (0 <= nxt < len(given) and given[nxt]):
        return True
    return bool(np.linalg.norm(ankle_path[nxt] - ankle_path[edge]) * fps < PLANTED_SPEED)


def _beside_given(given: np.ndarray | None, a: int, b: int) -> tuple[bool, bool]:
    """Whether frames [a, b) follow a given frame, and whether one follows them."""
    if given is None:
        return False, False
    return bool(a > 0 and given[a - 1]), bool(b < len(given) and given[b])


# How close (m) a stance's spot must be to the given foot beside it to count as the same place.
SAME_SPOT = 0.01


def _stands_where_given(target: np.ndarray, ankle_path: np.ndarray, given: np.ndarray | None, a: int,
                        b: int) -> bool:
    """Whether the stance [a, b), planted on `target`, stands where the foot of a given frame
    next to it stands (`ankle_path`, the leg's ankle as posed)."""
    after, before = _beside_given(given, a, b)
    return bool((after and np.linalg.norm(target[a] - ankle_path[a - 1]) < SAME_SPOT)
                or (before and np.linalg.norm(target[b - 1] - ankle_path[b]) < SAME_SPOT))


def _free_ramp(given: np.ndarray, fade: int) -> np.ndarray:
    """(T,) frames where a leg's pose is given -> (T,) share of the re-stepping applied: 0 there,
    rising to 1 over `fade` frames away from them."""
    if not given.any():
        return np.ones(len(given))
    from scipy.ndimage import distance_transform_edt
    return np.clip(distance_transform_edt(~given) / (fade + 1), 0.0, 1.0)


def lock_feet(poses: np.ndarray, trans: np.ndarray, fps: float, cycle: np.ndarray | None = None,
              given_legs: np.ndarray | None = None,
              pinned_legs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pin planted feet and re-step sliding ones (step_plan) on the stepping cycle `cycle` (T,)
    (default: time_cycle). The left foot's stances start at whole cycles, the right foot's
    half a cycle later. Where `given_legs` (T, 2) marks a leg's pose as given (the dance around a
    regenerated range, seed motion, a locked leg: runs of keys that engine.finishing.editing
    restores verbatim), that leg is left as it is, and a stance next to those frames plants
    where it stood (step_plan). Re-stepped there, the keys' corrections changed from frame to
    frame, and interpolated into the free frames next to them they swung the leg (a foot rushing
    29 cm in a frame into the join of a regenerated range). `pinned_legs` (T, 2): lone keys of
    a leg, planted where they put the foot (step_plan). Returns (poses, contacts (T,4))."""
    local, pos = _positions(poses, trans)
    glob = _global_rotations(local)
    T = len(poses)
    cycle = time_cycle(T, fps) if cycle is None else np.asarray(cycle, dtype=np.float64)
    contacts = np.zeros((T, 4), dtype=np.float32)
    new_local = local.clone()
    swivel_weight = np.zeros((T, 2))
    hinge_kept = np.zeros((T, 2), bool)
    for col, leg in enumerate(LEGS.values()):
        given = None if given_legs is None else np.asarray(given_legs[:, col], bool)
        pinned = None if pinned_legs is None else np.asarray(pinned_legs[:, col], bool)
        target, weight, stance, sole_held = step_plan(pos.numpy(), fps, leg, cycle - 0.5 * col, given, pinned)
        contacts[stance, col] = contacts[stance, col + 2] = 1.0
        # The re-stepping eases in away from the given frames: the leg IK at full weight on the
        # first free frame could swing the knee to another plane than the given leg's (a 17 cm
        # knee jump at a regenerated range's join), and a stance's held sole is its middle's
        # orientation, not the given foot's. A stance planted where the given foot stood holds
        # that place from the first frame (eased in, the foot went out and back by 5 cm); its
        # sole still turns in over the ramp (held at once, the foot pitched 7 cm in a frame).
        # A stance beside the given frames that stands elsewhere (a key in it puts the foot
        # there) eases in over the ramp too: held from its first frame, the foot jumped from the
        # given foot to the key's spot in one frame (36 cm, 11 m/s, after seed motion).
        free = np.ones(T) if given is None else _free_ramp(given, _fade_frames(fps))
        placed = free.copy()
        ankle_path = pos[:, leg[2]].numpy()
        for a, b in true_runs(stance, 1):
            if _stands_where_given(target, ankle_path, given, a, b):
                placed[a:b] = 1.0
        weight = weight * placed
        if pinned is not None and pinned.any():
            # The keyed leg stays as keyed. In a stance the frames around it stand where its foot
            # stands; a key outside any stance (its foot low inside a swing) has the IK ease in
            # away from it: at full weight next to it, the swing's lift turned a leg 23-31 rad/s
            # into and out of the key.
            next_to_stance = stance | np.r_[stance[1:], False] | np.r_[False, stance[:-1]]
            loose = pinned & ~next_to_stance
            if loose.any():
                weight = weight * _free_ramp(loose, _fade_frames(fps))
            weight[pinned] = 0.0
        frames = torch.from_numpy(np.flatnonzero(weight > 0))
        if len(frames):
            held_sole = _held_sole(glob[:, leg[2]], sole_held, _fade_frames(fps), pinned, given)
            target = target + _pivot_about_toe(glob[:, leg[2]], held_sole, sole_held, REST_OFFSETS[leg[3]],
                                               weight > 0, _fade_frames(fps), pinned, given)
            target[:, 1] = gaussian_filter1d(target[:, 1], LIFT_SMOOTHING_SECONDS * fps, mode="nearest")
            w = torch.from_numpy(weight[frames.numpy()])[:, None]
            blended = w * torch.from_numpy(target[frames.numpy()]) + (1 - w) * pos[frames, leg[2]]
            held = R.matrix_to_quat(held_sole[frames])
            drawn = R.matrix_to_quat(glob[frames, leg[2]])
            sole = R.quat_to_matrix(R.quat_slerp(drawn, held, torch.from_numpy(free[frames.numpy()])[:, None]))
            _two_bone_ik(new_local, glob, pos, leg, blended, frames, sole, passes=1,   # one: see REACH_PASSES
                         above_floor=True)
        # The knee turns only where the IK moves the leg, eased in away from given and keyed frames.
        kept = np.zeros(T, bool) if given is None else given.copy()
        if pinned is not None:
            kept |= pinned
        swivel_weight[:, col] = weight * _free_ramp(kept, _fade_frames(fps))
        hinge_kept[:, col] = kept
    _keep_knees_on_hinge(new_local, hinge_kept, int(round(KNEE_HINGE_EASE_SECONDS * fps)),
                         max(1, int(round(KNEE_SWIVEL_EASE_SECONDS * fps))))
    _turn_knees_apart(new_local, trans, swivel_weight, fps)
    poses_out = np.array(poses).reshape(T, NUM_JOINTS, 3)       # the IK turns only these joints
    poses_out[:, LEG_IK_JOINTS] = R.matrix_to_axis_angle(new_local[:, LEG_IK_JOINTS]).numpy()
    return poses_out.reshape(T, -1), contacts


def _spread(step: np.ndarray, frames: int) -> np.ndarray:
    """Each frame's nonzero `step` reaching `frames` (a window) around it, its sign kept; frames
    with a step of their own keep it."""
    reach = maximum_filter1d(np.maximum(step, 0.0), frames) + minimum_filter1d(np.minimum(step, 0.0), frames)
    return np.where(step != 0, step, reach)


def _keep_knees_on_hinge(local: torch.Tensor, kept: np.ndarray, ease_frames: int, spread_frames: int) -> None:
    """Turn each knee's bend back towards KNEE_HINGE_TOLERANCE of its hinge: the bend's angle kept
    (so the hip-ankle distance), the thigh swung to put the ankle back, the foot's world
    orientation kept. A leg `kept` (T, 2) there (keyed, given) with its knee off the hinge stays
    as it is, the turn eased in over `ease_frames` away from it; a kept knee on its hinge needs no
    turn, and the frames beside it get the whole of theirs (eased down towards every key, the
    network's own knee came back beside it: a full-pose key met with a faster knee, QA27). Edits
    hips', knees' and ankles' local rotations in `local` in place."""
    for c, (hip, knee, ankle, _) in enumerate(LEGS.values()):
        hinge = torch.as_tensor(bend_axis(JOINT_NAMES[knee]), dtype=local.dtype)
        knee_offset = torch.as_tensor(REST_OFFSETS[knee], dtype=local.dtype)
        ankle_offset = torch.as_tensor(REST_OFFSETS[ankle], dtype=local.dtype)
        thigh = _unit(knee_offset).expand(len(local), 3)              # in the thigh's frame
        hinge = _unit(hinge - (hinge * thigh[0]).sum() * thigh[0])    # square to the thigh, as bend axes are
        shin = local[:, knee] @ _unit(ankle_offset)
        normal = torch.cross(thigh, shin, dim=-1)
        bend = torch.atan2(normal.norm(dim=-1), (thigh * shin).sum(-1))
        normal = _unit(normal)
        off = torch.acos((normal * hinge).sum(-1).clamp(-1, 1))
        excess = (off - KNEE_HINGE_TOLERANCE).clamp_min(0)
        weight = _free_ramp(kept[:, c] & (excess > 0).numpy(), ease_frames)
        # Spread and eased over time, so the turn starts and ends at the motion's own pace rather
        # than where the knee crosses the bound (turned exactly to it, the kink met a full-pose key
        # a little faster than the fastest step around it); never past the hinge. A brief excess
        # is turned back in part: knees at most 67 degrees off on seed 0's validation dances.
        need = excess.numpy() * weight
        eased = gaussian_filter1d(maximum_filter1d(need, spread_frames), max(1.0, spread_frames / 2.0), mode="nearest")
        excess = torch.minimum(torch.as_tensor(eased * weight, dtype=local.dtype), off)
        frames = torch.nonzero(excess > 0).flatten()
        if not len(frames):
            continue
        towards = _unit(torch.cross(normal[frames], hinge.expand(len(frames), 3), dim=-1))
        axis = R.axis_angle_to_matrix(towards * excess[frames, None]) @ normal[frames, :, None]
        new_shin = R.axis_angle_to_matrix(axis[..., 0] * bend[frames, None]) @ thigh[frames, :, None]
        knee_local = _rotation_between(shin[frames], new_shin[..., 0]) @ local[frames, knee]
        ankle_from_hip = knee_offset + local[frames, knee] @ ankle_offset
        swing = _rotation_between(knee_offset + knee_local @ ankle_offset, ankle_from_hip)
        local[frames, ankle] = (swing @ knee_local).transpose(-1, -2) @ local[frames, knee] @ local[frames, ankle]
        local[frames, hip] = local[frames, hip] @ swing
        local[frames, knee] = knee_local


def _turn_knees_apart(local: torch.Tensor, trans: np.ndarray, weight: np.ndarray, fps: float) -> None:
    """Turn each leg about its hip-ankle line where the legs would go through each other
    (LEGS_APART_CLEARANCE), by up to `weight` (T, 2) of the turn; edits the hips', knees' and
    ankles' local rotations in `local` in place, keeping ankles and soles where they are."""
    if not (weight > 0).any():
        return
    glob = _global_rotations(local)
    pos = forward_kinematics(local, torch.from_numpy(trans)).numpy()
    legs = list(LEGS.values())
    hip = [pos[:, leg[0]] for leg in legs]
    axis = [(pos[:, leg[2]] - pos[:, leg[0]]) / np.linalg.norm(pos[:, leg[2]] - pos[:, leg[0]], axis=-1, keepdims=True)
            for leg in legs]

    def turned_by(c: int, angle: np.ndarray) -> torch.Tensor:
        """(T,3,3) leg c's turn by `angle` (T,) about its hip-ankle line."""
        return R.axis_angle_to_matrix(torch.from_numpy(axis[c] * angle[:, None])).to(glob.dtype)

    turn = np.zeros((len(pos), 2))
    spread = max(1, int(round(KNEE_SWIVEL_SPREAD_SECONDS * fps)))
    for _ in range(KNEE_SWIVEL_PASSES):
        turned = pos.copy()
        for c, leg in enumerate(legs):       # only the knee moves: the ankle is on the line, the foot keeps its place
            turned[:, leg[1]] = hip[c] + (turned_by(c, turn[:, c]).numpy() @ (pos[:, leg[1]] - hip[c])[..., None])[..., 0]
        depth, p, q = deepest_meeting(leg_capsules(turned, "left"), leg_capsules(turned, "right"))
        need = np.maximum(depth + LEGS_APART_CLEARANCE, 0.0)
        if not need.any():
            break
        apart = (p - q) / np.maximum(np.linalg.norm(p - q, axis=-1, keepdims=True), 1e-9)
        # How far a radian of each leg's turn parts the limbs where they meet (m/rad); the turn
        # is shared between the legs by least squares, weighted by how free each leg is.
        gain = np.stack([(np.cross(axis[0], p - hip[0]) * apart).sum(-1),
                         -(np.cross(axis[1], q - hip[1]) * apart).sum(-1)], axis=1)
        shared = (weight * gain ** 2).sum(axis=1)
        movable = (need > 0) & (shared > 1e-6)
        for c in (0, 1):
            step = np.where(movable, need * weight[:, c] * gain[:, c] / np.maximum(shared, 1e-6), 0.0)
            step = _spread(np.clip(step, -KNEE_SWIVEL_STEP, KNEE_SWIVEL_STEP), spread)
            turn[:, c] = np.clip(turn[:, c] + gaussian_filter1d(step, KNEE_SWIVEL_EASE_SECONDS * fps, mode="nearest"),
                                 -MAX_KNEE_SWIVEL, MAX_KNEE_SWIVEL) * (weight[:, c] > 0)
    for c, (hip_j, knee_j, ankle_j, _) in enumerate(legs):
        angle = turn[:, c] * weight[:, c]
        if not np.any(angle):
            continue
        rotation = turned_by(c, angle)
        hip_glob, knee_glob = rotation @ glob[:, hip_j], rotation @ glob[:, knee_j]
        local[:, hip_j] = glob[:, PARENTS[hip_j]].transpose(-1, -2) @ hip_glob
        local[:, knee_j] = hip_glob.transpose(-1, -2) @ knee_glob
        local[:, ankle_j] = knee_glob.transpose(-1, -2) @ glob[:, ankle_j]


def ankle_positions(poses: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(T, 2, 3) world positions of the ankles, in LEGS' order."""
    _, pos = _positions(poses, trans)
    return pos[:, [leg[2] for leg in LEGS.values()]].numpy()


def reach_ankles(poses: np.ndarray, trans: np.ndarray, targets: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Poses with each leg's ankle moved towards `targets` (T, 2, 3), by `weight` (T, 2) in [0, 1]
    (two-bone IK of hip and knee in REACH_PASSES passes; the foot keeps its world orientation).
    Out of reach, the IK can end further off than the leg started: such a frame keeps its
    untouched leg."""
    local, pos = _positions(poses, trans)
    glob = _global_rotations(local)
    out = local.clone()
    for col, leg in enumerate(LEGS.values()):
        rows = np.flatnonzero(weight[:, col] > 0)
        if not len(rows):
            continue
        w = torch.from_numpy(weight[rows, col])[:, None]
        frames = torch.from_numpy(rows)
        target = w * torch.from_numpy(targets[rows, col]) + (1 - w) * pos[frames, leg[2]]
        miss = _two_bone_ik(out, glob, pos, leg, target, frames, passes=REACH_PASSES)
        further = frames[miss >= (pos[frames, leg[2]] - target).norm(dim=-1)]
        joints = list(leg[:3])
        out[further[:, None], joints] = local[further[:, None], joints]
    return R.matrix_to_axis_angle(out).reshape(len(poses), -1).numpy()


def clean_feet(poses: np.ndarray, trans: np.ndarray, fps: float, cycle: np.ndarray | None = None,
               given_legs: np.ndarray | None = None,
               pinned_legs: np.ndarray | None = None,
               jump_lift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground the dancer (leaving the lift `jump_lift` (T,) of jumps that root keys ask for,
    ground's), then pin planted feet and re-step sliding ones (lock_feet; legs marked
    in `given_legs` (T, 2) are left as drawn, `pinned_legs` planted where their keys put them).
    Returns (poses, trans, contacts)."""
    trans = ground(poses, trans, fps, jump_lift)
    poses, contacts = lock_feet(poses, trans, fps, cycle, given_legs, pinned_legs)
    return toes_above_floor(poses, trans), trans, contacts


# Beside a frame the animator keyed with a toe under the floor, the pitch that lifts the toes of
# the free frames eases in over this long: lifted on the next frame, the foot flicked 5 cm in one
# frame out of a start pose keyed with the hips 2.6 cm under standing (1.5 m/s).
KEYED_TOE_EASE_SECONDS = 0.2


def toes_above_floor(poses: np.ndarray, trans: np.ndarray, fixed: np.ndarray | None = None,
                     fps: float | None = None) -> np.ndarray:
    """Pitch a foot up, about its ankle, where its toe is under the floor: the leg IK turns the
    foot with the shin, and that can tip a toe a few centimetres under it (so can the beat warp's
    resampling and the speed guard's easing after it). Frames where `fixed` (T, 24) bool holds the
    ankle (the animator's keys) are left as they are; where such a key has the toe under the
    floor, the frames beside it are pitched up gradually, over KEYED_TOE_EASE_SECONDS at `fps`."""
    local, pos = _positions(poses, trans)
    glob = _global_rotations(local)
    out = np.array(poses).reshape(len(poses), NUM_JOINTS, 3)     # only the pitched ankles change
    for _, knee, ankle, toe in LEGS.values():
        under = pos[:, toe, 1] < 0
        share = torch.ones(len(poses), dtype=pos.dtype)
        if fixed is not None:
            keyed = torch.from_numpy(np.asarray(fixed[:, ankle], bool))
            keyed_under = (keyed & under).numpy()
            if keyed_under.any() and fps is not None:
                from scipy.ndimage import distance_transform_edt
                ease = max(1.0, KEYED_TOE_EASE_SECONDS * fps)
                share = torch.from_numpy(smoothstep(np.clip(distance_transform_edt(~keyed_under) / ease, 0.0, 1.0)))
            under &= ~keyed
        frames = torch.nonzero(under).flatten()
        if not len(frames):
            continue
        v = pos[frames, toe] - pos[frames, ankle]
        want = v.clone()
        want[:, 1] = -pos[frames, ankle, 1]                       # the toe on the floor
        horizontal = v[:, [0, 2]]
        length = (v.norm(dim=-1) ** 2 - want[:, 1] ** 2).clamp_min(0).sqrt()
        want[:, [0, 2]] = horizontal / horizontal.norm(dim=-1, keepdim=True).clamp_min(1e-9) * length[:, None]
        pitch = R.matrix_to_axis_angle(_rotation_between(v, want)) * share[frames, None].to(v)
        turned = R.axis_angle_to_matrix(pitch) @ glob[frames, ankle]
        out[frames.numpy(), ankle] = R.matrix_to_axis_angle(glob[frames, knee].transpose(-1, -2) @ turned).numpy()
    return out.reshape(len(poses), -1)
