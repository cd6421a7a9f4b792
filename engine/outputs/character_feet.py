"""Planted feet on a character's own proportions: leg IK for the retargeting (pure numpy).

The retargeting (engine/outputs/retarget.py) points the character's limbs where SMPL's limbs point and
scales the root path by the character's leg length. Where its thigh and shin proportions differ
from SMPL's, a foot the dance plants then slides, sinks or floats. Here each stance pins the
character's ankle to one spot on the floor (the SMPL ankle's planted spot, scaled as the root
is, at the character's own ankle height, raised as far as SMPL raises its heel) and re-solves
its thigh and shin analytically, the knee bending in the plane the SMPL knee bends in. Pins fade
in and out over a few frames; swing frames keep the plain retarget. Where the character's leg
cannot reach a spot without straightening further than the dance holds it, the foot is lifted a
little (a knee snapping straight would pop); where even that fails (legs far wilder than a
dance's), the foot is drawn in and slides.

With a toe bone, a stance holds the ball of the foot (the toe bone's head) on its spot rather
than the ankle, the ankle behind it as the dance turns the foot (SMPL's foot, which
engine.finishing.feet holds through its stances and pivots about its toe), also on the frames
next to the stance where SMPL's toe stays on the floor while its heel rises or sets down
(rolling). The feet keep the dance's orientation, except that a foot whose ball would sink
below its rest height plus SMPL's toe lift (as far as SMPL's toe is off its floor, scaled, up to
the swing's TOE_CLEARANCE) is pitched up about its ankle, its toe bent up about the ball where
its tip would go under the floor (Retargeter._soles_above_floor). SMPL's foot is short and its
ankle low; on a long foot with a high ankle (QA: ankle 25 cm up, ball 42 cm ahead) the dance's
foot pitch swung the ball 6 cm and the toe's tip 11 cm under the floor, and dragged the ball
along it (mostly next to stances, the heel rising about a ball the ankle's pin did not hold,
and in low swings).

Everything here works in the world (Blender axes, Z up, floor z = 0) on (T,3) points and (T,3,3)
rotations; the Retargeter turns the results back into its armature space.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..body.curves import envelope, unit_vectors
from .bone_mapping import RetargetError
# retarget imports this module lazily: no cycle
from .retarget import SMPL_TOE_HEIGHT, axis_angle_to_matrix, matrix_to_axis_angle

STRAIGHT_SLACK = 1e-4           # share of the leg's length an unreachable spot stays short by
STRAIGHT_DEGREES = 3.0          # a leg bent less than this has no side for its knee: the hinge decides
# SMPL metres SMPL's toe may creep, next to a stance, while the character's ball stays on the
# stance's spot (rolling): the engine's own creep 0.7 cm at most (QA, a 12-s dance), and a
# foot that slides on does not drag the spot along.
ROLL_SPOT = 0.02
TOE_BEND_EASE_SECONDS = 0.15    # a toe bent to keep its tip off the floor bends in and out this long
# pitched_above: the share of an offset's length that a steadying direction's heading weighs
# against the offset's own horizontal part (it rules within about 11 degrees of straight down).
STEADY_HEADING = 0.2


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the True runs of a (T,) bool array."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def contact_columns(contacts, frames: int) -> np.ndarray:
    """(T,2) or (T,4) contact flags -> (T,2) bool per leg (left, right). With four columns (the
    engine's FOOT_JOINTS order: ankles, then toes) the ankle columns decide, since the ankle is
    what gets pinned."""
    c = np.asarray(contacts)
    if c.ndim != 2 or c.shape[0] != frames or c.shape[1] not in (2, 4):
        raise RetargetError(f"contacts must be (T,2) or (T,4) for the {frames} frames, got {c.shape}")
    return c[:, :2] > 0.5 if c.dtype.kind == "f" else c[:, :2].astype(bool)


def _low(ankle: np.ndarray, rest_height: float, scale: float, toe: np.ndarray | None,
         toe_rest_height: float) -> np.ndarray:
    """(T,) whether the ankle (T,3 world), or the toe where the rig has one, is within
    PLANTED_HEIGHT (scaled to the character) of its rest height above the floor; False on NaN."""
    from ..finishing.feet import PLANTED_HEIGHT   # torch-backed module: import late
    with np.errstate(invalid="ignore"):
        low = ankle[:, 2] - rest_height < PLANTED_HEIGHT * scale
        if toe is not None:
            low |= toe[:, 2] - toe_rest_height < PLANTED_HEIGHT * scale
    return low


def derive_contacts(ankle: np.ndarray, rest_height: float, scale: float, fps: float,
                    toe: np.ndarray | None = None, toe_rest_height: float = 0.0) -> np.ndarray:
    """(T,) whether the character's ankle (T,3 world) is planted: low (the ankle, or the toe (T,3)
    where the rig has one, within PLANTED_HEIGHT of its rest height above the floor; a dance
    often plants the ball of the foot with the heel up) and the ankle slower than PLANTED_SPEED,
    both scaled to the character, for at least MIN_RUN_SECONDS, as engine.finishing.feet judges SMPL's feet."""
    from ..finishing.feet import MIN_RUN_SECONDS, PLANTED_SPEED   # torch-backed module: import late
    low = _low(ankle, rest_height, scale, toe, toe_rest_height)
    speed = np.linalg.norm(np.gradient(ankle[:, :2], axis=0), axis=-1) * fps if len(ankle) > 1 else np.zeros(len(ankle))
    still = low & (speed < PLANTED_SPEED * scale)
    shortest = max(2, int(round(MIN_RUN_SECONDS * fps)))
    # A blip shorter than a run between two still runs (one fast frame) does not split a stance
    # into two spots, which would slide the foot from one to the other.
    for a, b in _runs(~still):
        if 0 < a and b < len(still) and b - a < shortest:
            still[a:b] = True
    planted = np.zeros(len(ankle), bool)
    for a, b in _runs(still):
        if b - a >= shortest:
            planted[a:b] = True
    return planted


def given_stances(ankle: np.ndarray, toe: np.ndarray | None, planted: np.ndarray, rest_height: float,
                  toe_rest_height: float, scale: float, fps: float) -> np.ndarray:
    """(T,) frames on which a given pose of the character (the dance kept around a regenerated
    range, an animator's full-pose key) stands on this foot: ankle and toe (T,3 world, NaN where
    no pose is given) low and still through a run of given frames (derive_contacts), or low on
    a given frame inside a planted run of the dance (`planted` (T,), a key the stance passes)."""
    known = np.isfinite(ankle).all(axis=1)
    stood = np.zeros(len(ankle), bool)
    for a, b in _runs(known):
        stood[a:b] = derive_contacts(ankle[a:b], rest_height, scale, fps,
                                     None if toe is None else toe[a:b], toe_rest_height)
    low = _low(ankle, rest_height, scale, toe, toe_rest_height)
    return stood | (known & low & np.asarray(planted, bool))


def stance_heights(smpl_ankle_z: np.ndarray, smpl_rest_height: float, rest_height: float,
                   smpl_toe_z: np.ndarray | None = None, foot_drop: np.ndarray | None = None,
                   toe_height: float = 0.0) -> np.ndarray:
    """(T,) the character's planted ankle height above the floor, from SMPL's ankle and toe heights
    (already scaled into the world; SMPL's rest toes on its floor).

    With a toe bone: the foot stands on its own lowest point, the heel (the ankle at its rest
    height) or the ball (the toe at its rest height, the ankle `foot_drop` above it as the foot is
    turned on that frame), lifted as far as SMPL's foot is off its floor (the lower of its heel's
    and ball's lift). The character's own foot decides how far a heel rises: SMPL's heel rise,
    scaled by the legs, raised a steeper or shorter foot's ball off the floor (a generated
    Rigify rig's toes stood 1.6-3.1 cm up). Without one: the rest ankle height plus however far
    SMPL's ankle is above its own rest height (a heel that rises rises; a sinking one does not)."""
    ankle_lift = np.maximum(0.0, smpl_ankle_z - smpl_rest_height)
    if smpl_toe_z is None or foot_drop is None:
        return rest_height + ankle_lift
    lift = np.minimum(ankle_lift, np.maximum(0.0, smpl_toe_z))
    return np.maximum(rest_height, toe_height + foot_drop) + lift


def rolling(planted: np.ndarray, smpl_toe: np.ndarray, scale: float, fps: float) -> np.ndarray:
    """(T,) the frames next to each planted run (T,) on which SMPL's toe (T,3 world, scaled, its
    floor at z = 0) stays on the floor where it stood at the run's edge: low and slow as
    engine.finishing.feet judges a planted foot (PLANTED_HEIGHT, PLANTED_SPEED, scaled) and
    within ROLL_SPOT of that place: the heel rising about the ball before the foot lifts off, or
    setting down after the ball lands."""
    from ..finishing.feet import PLANTED_HEIGHT, PLANTED_SPEED   # torch-backed module: import late
    speed = np.linalg.norm(np.gradient(smpl_toe[:, :2], axis=0), axis=-1) * fps if len(smpl_toe) > 1 else np.zeros(len(smpl_toe))
    still = (smpl_toe[:, 2] < (SMPL_TOE_HEIGHT + PLANTED_HEIGHT) * scale) & (speed < PLANTED_SPEED * scale)
    out = np.zeros(len(planted), bool)
    for a, b in _runs(still & ~planted):
        for edge, frames in ((a - 1, np.arange(a, b)), (b, np.arange(b - 1, a - 1, -1))):
            if 0 <= edge < len(planted) and planted[edge]:
                away = np.linalg.norm(smpl_toe[frames, :2] - smpl_toe[edge, :2], axis=-1) > ROLL_SPOT * scale
                out[frames[:np.argmax(away) if away.any() else len(frames)]] = True
    return out


def stance_targets(planted: np.ndarray, smpl_ankle: np.ndarray, free_ankle: np.ndarray, height: np.ndarray,
                   fade: int, given: np.ndarray | None = None, ball: np.ndarray | None = None,
                   rolled: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where the character's ankle should be: (target (T,3) world, weight (T,) in [0, 1]).

    Each planted run holds one spot on the floor: the mean of the SMPL ankle's path (already
    scaled into the world) over the run, at `height` (T,) above the floor (stance_heights). With
    `ball` (T,3), the ball of the foot's offset from the ankle as the foot is turned on each
    frame, the spot is the ball's (the mean of SMPL's ankle plus that offset) and the ankle
    stands behind it as the foot is turned: a foot the dance turns on its stance pivots about
    its ball, the heel swinging, as SMPL's does (engine.finishing.feet._pivot_about_toe), where
    about the ankle a long foot's ball swept the floor. A foot held still stands where it did.
    `rolled` (T,) frames next to a run (rolling) stand on that run's spot too, the ankle behind
    the ball as the foot is turned (a heel rising about the ball before lift-off): there a long
    foot pinned by its ankle alone faded to its free path while SMPL's toe stood still. A run
    through frames where `given` (T,3; NaN elsewhere) says where the ankle stands (a given pose's
    own ankle, given_stances) keeps it there, and its other frames stand on the spot of the
    nearest such frame (its ball's, with `ball`: there the given foot's own): on a spot of its
    own, the foot slid into the dance kept around a regenerated range (1 cm a frame for 8
    frames, then 2.5 cm in one). Around a run the
    correction (spot minus the free, plain-retarget ankle at the run's edge) fades out over
    `fade` frames on the free ankle's own path; two runs' fades that meet add up, so in a short
    gap the foot swings as the dance swings it, from one spot to the next, without a jump.
    """
    T = len(planted)
    shift = np.zeros((T, 3))               # correction of the free ankle outside the runs
    weight = np.zeros(T)
    planted = np.asarray(planted, bool)
    runs = _runs(planted if rolled is None else planted | rolled)
    k = np.arange(1, fade + 1)
    w = 1.0 - k / (fade + 1)
    places = []
    for a, b in runs:
        place = np.empty((b - a, 3))
        turned = np.zeros((b - a, 2)) if ball is None else ball[a:b, :2]
        stance = planted[a:b]                                   # the run's own stance, not its rolled frames
        if not stance.any():        # rolled frames whose stance is given (held by keys): they stand as the dance does
            stance = np.ones(b - a, bool)
        place[:, :2], place[:, 2] = (smpl_ankle[a:b, :2] + turned)[stance].mean(axis=0) - turned, height[a:b]
        own = np.flatnonzero(np.isfinite(given[a:b]).all(axis=1)) if given is not None else ()
        if len(own):
            distance = np.abs(np.arange(b - a)[:, None] - own[None])
            nearest = own[distance.argmin(axis=1)]
            place[:, :2] = given[a + nearest, :2] + turned[nearest] - turned
            # The given ankle's height against the dance's stands for the run's next frames too,
            # fading over `fade` frames (QA: a Mixamo start pose's ankle 1.8 cm under the
            # dance's stance height rose at once, the knee moving 7 cm in that frame).
            rise = given[a + nearest, 2] - place[nearest, 2]
            place[:, 2] += rise * np.clip(1.0 - distance.min(axis=1) / (fade + 1), 0.0, 1.0)
            place[own] = given[a + own]
        places.append(place)
        for i, edge, at in ((a - k, a, 0), (b - 1 + k, b - 1, -1)):
            keep = (i >= 0) & (i < T)
            shift[i[keep]] += w[keep, None] * (place[at] - free_ankle[edge])
            weight[i[keep]] += w[keep]
    over = np.maximum(weight, 1.0)         # where fades overlap, their mean correction
    target = free_ankle + shift / over[:, None]
    weight = np.minimum(weight, 1.0)
    for (a, b), place in zip(runs, places):
        target[a:b], weight[a:b] = place, 1.0
    return target, weight


def pitched_above(offset: np.ndarray, base: np.ndarray, lowest: np.ndarray,
                  steady: np.ndarray | None = None) -> np.ndarray:
    """(N,3,3) world turns about horizontal axes (pitches) that lift the point `offset` (N,3) from
    a pivot at height `base` (N,) to at least `lowest` (N,) above the floor, its length and
    heading kept (engine.finishing.feet.toes_above_floor's turn of SMPL's foot, here numpy and
    Z up): the identity where it is high enough; straight up where even that is too low.
    `steady` (N,3): a direction whose heading steadies the offset's where the offset points
    nearly straight down and has next to no heading of its own (a toe under a foot on tiptoe:
    its heading swung half a turn from frame to frame and the toe flicked 60 degrees, QA30)."""
    length = np.linalg.norm(offset, axis=-1)
    up = np.clip(lowest - base, -length, length)
    want = offset.copy()
    low = offset[:, 2] < up
    across = offset * [1.0, 1.0, 0.0]
    if steady is not None:
        across = across + STEADY_HEADING * length[:, None] * unit_vectors(steady * [1.0, 1.0, 0.0])
    heading = unit_vectors(across[low])
    want[low] = heading * np.sqrt(length[low] ** 2 - up[low] ** 2)[:, None]
    want[low, 2] = up[low]
    return _between(offset, want)


def eased_in_time(turns: np.ndarray, spread: int) -> np.ndarray:
    """(T,3,3) turns, the identity where none is needed -> turns at least as large, each begun
    `spread` frames before it is needed and ended as long after, their axes smoothed over as long
    (a frame without a turn borrows the nearest one's axis). The toe bend that keeps a tip off the
    floor follows the ball's height and heading frame by frame: a ball landing in two frames bent
    the toe 40 degrees in one, and its axis, swinging 35 degrees a frame under a 70-degree bend,
    flicked the toe as far (QA30, QA32)."""
    rotvec = matrix_to_axis_angle(turns)
    angle = np.linalg.norm(rotvec, axis=-1)
    turning = np.flatnonzero(angle > 1e-9)
    if spread < 1 or not len(turning):
        return turns
    t = np.arange(len(angle))
    after = turning[np.clip(np.searchsorted(turning, t), 0, len(turning) - 1)]
    before = turning[np.clip(np.searchsorted(turning, t) - 1, 0, len(turning) - 1)]
    nearest = np.where(np.abs(before - t) < np.abs(after - t), before, after)
    axis = rotvec[nearest] / angle[nearest, None]
    # Smoothed as vectors weighted by the turn, so that large turns steer the axis (the toe's
    # pitches face its foot's way: neighbouring axes lie close and their mean is one of them).
    axis = unit_vectors(gaussian_filter1d(axis * np.maximum(angle, 1e-3)[:, None], spread / 2.0, axis=0,
                                          mode="nearest"))
    eased = envelope(angle, spread)
    return axis_angle_to_matrix(axis * np.maximum(eased, angle)[:, None])


def within_reach(goal: np.ndarray, hip: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Goals (N,3) no further than `reach` (N,) from the hip (N,3): one out of reach is raised
    straight up until the leg reaches it (the foot stays where it is on the floor and lifts a
    little, rather than sliding), or, where even that fails, drawn in towards the hip."""
    off = goal - hip
    far = np.linalg.norm(off, axis=-1) > reach
    flat2 = off[:, 0] ** 2 + off[:, 1] ** 2
    out = goal.copy()
    lift = far & (flat2 < reach ** 2)
    out[lift, 2] = hip[lift, 2] - np.sqrt(reach[lift] ** 2 - flat2[lift])
    pull = far & ~lift
    out[pull] = hip[pull] + off[pull] * (reach[pull] / np.linalg.norm(off[pull], axis=-1))[:, None]
    return out


def _rotation(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(N,3,3) rotations about unit axes (N,3) by angles (N,)."""
    return axis_angle_to_matrix(axis * np.asarray(angle)[..., None]).reshape(-1, 3, 3)


def _between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,3,3) smallest rotations taking directions a onto b (N,3)."""
    a, b = unit_vectors(a), unit_vectors(b)
    axis = np.cross(a, b)
    angle = np.arctan2(np.linalg.norm(axis, axis=-1), np.sum(a * b, axis=-1))
    return _rotation(unit_vectors(axis), angle)


def two_bone_ik(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, target: np.ndarray,
                hinge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thigh and shin turns that put the ankle on `target`: (S (N,3,3), B (N,3,3)) world rotations,
    the thigh's new world rotation S @ thigh, the shin's S @ B @ shin.

    hip, knee, ankle, target (N,3) world points; hinge (N,3) the unit axis the knee bends about
    (SMPL's knee: its -x, heel going back). The knee bends in the plane of thigh and shin, on
    the side the dance bends it; a leg within STRAIGHT_DEGREES of straight has no such plane
    (the cross product's sign is noise), so there the hinge gives the axis and the side: no flips. A spot out of
    reach leaves the leg as straight (or as folded) as it goes, towards it (no NaN)."""
    u, v = hip - knee, ankle - knee
    l1, l2 = np.linalg.norm(u, axis=-1), np.linalg.norm(v, axis=-1)
    d = np.clip(np.linalg.norm(target - hip, axis=-1), np.abs(l1 - l2) + STRAIGHT_SLACK * (l1 + l2),
                (1.0 - STRAIGHT_SLACK) * (l1 + l2))
    normal = unit_vectors(np.cross(u, v))
    agree = np.sum(normal * hinge, axis=-1, keepdims=True)
    # The axis: the plane's normal (the least motion of the knee for a change of reach, wherever
    # the dance's twists and SMPL's knock-kneed rest leg turn that plane), the hinge where the
    # leg is too straight to have one.
    bend = np.degrees(np.arccos(np.clip(np.sum(u * v, axis=-1) / (l1 * l2), -1.0, 1.0)))
    trust = np.clip((180.0 - bend - STRAIGHT_DEGREES / 3) / (STRAIGHT_DEGREES * 2 / 3), 0.0, 1.0)[:, None]
    n = unit_vectors(trust * np.where(agree < 0, -normal, normal) + (1.0 - trust) * hinge)
    # Turning the shin by t about n (through the knee) gives u . R v = a + b cos t + e sin t; the
    # ankle is d from the hip where that equals (l1^2 + l2^2 - d^2) / 2. The hinge need not be
    # square to the leg (a knee the dance twists), so solve for t rather than take a cosine rule.
    along = np.sum(v * n, axis=-1)
    a = np.sum(u * n, axis=-1) * along
    b = np.sum(u * (v - along[:, None] * n), axis=-1)
    e = np.sum(u * np.cross(n, v), axis=-1)
    r = np.hypot(b, e)
    want = 0.5 * (l1 ** 2 + l2 ** 2 - d ** 2)
    spread = np.arccos(np.clip((want - a) / np.maximum(r, 1e-12), -1.0, 1.0))
    phase = np.arctan2(e, b)
    # Two turns reach: the knee on either side of the hip-ankle line. Take the smaller, so the
    # knee stays on the side the dance puts it and never swings round to the other (a knee the
    # dance twists or bends a little sideways is common); where the leg is near straight (no
    # side to stay on), the one that bends about the hinge, heel going back.
    turns = np.stack([phase + spread, phase - spread])
    turns = np.where(r > 1e-12, (turns + np.pi) % (2 * np.pi) - np.pi, 0.0)
    sides = [np.sum(np.cross(u, np.einsum("nab,nb->na", _rotation(n, t), v)) * hinge, axis=-1) for t in turns]
    straight = bend > 180.0 - STRAIGHT_DEGREES
    pick = np.where(straight, sides[0] >= sides[1], np.abs(turns[0]) <= np.abs(turns[1]))
    turn = _rotation(n, np.where(pick, turns[0], turns[1]))
    new_ankle = knee + np.einsum("nab,nb->na", turn, v)
    swing = _between(new_ankle - hip, target - hip)
    return swing, turn
