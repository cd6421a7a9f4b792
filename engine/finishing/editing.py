"""Make the animator's constraints hold exactly while the body keeps its own momentum through them.

The sampler steers the dance towards the constraints (in-painting), but its result only
approximates them. Here each constrained joint gets a correction OFFSET, never a pull onto the
pose: at a keyed frame, the rotation that turns the generated pose into the keyed one; between
two keys of the same joint, the corrections are interpolated with a C1 cubic (offset_curve)
across the whole gap; before the first key and after the last one, the correction fades to zero
over FADE_SECONDS with zero slope at its end. The generated motion is left-multiplied by the
correction, so its velocity passes through every key (plus the slow change of the correction):
the dancer flows through a key instead of stopping dead on it or whipping into it.
Keyed frames then receive the keyed values verbatim, so the error there is exactly zero.

A hold is where the animator asks for one: a joint keyed with the same rotation on two keys in
a row keeps that rotation in between. A fully keyed run (seed motion at the start, or a run at
the end that a regenerated section must join) is a stretch of consecutive keys, and the same
interpolant joins the free motion to it with a continuous velocity.

Root keys work alike on the position. Across the floor, beyond the first and last root key the
offset holds rather than fades: a dancer moved by a key stays moved. In height, a key is a dip or
a rise there, not a new floor level: its offset fades like a joint's (and returns to zero between
keys more than two fades apart), and the legs bend or stretch so that the feet stay where they
were (a lowered root is a crouch on the same feet). What a key lifts the hips above a standing
dancer's is a jump instead: it takes off and lands as a jump does (_root_rise).

The keyed facing is met earlier, while sampling (engine.sampler.facing); the offsets here take
up what is left of it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..body import rotations as R
from ..body.holds import alike, same_pose_keyed
from ..body.curves import (dip_knots, jump_curve, jump_ease_frames, offset_curve, smoothstep,
                           unwrapped_rotation_vectors)
from ..body.motion import Constraints
from ..body.skeleton import BODY_PARTS, FOOT_INDICES, JOINT_INDEX, NUM_JOINTS, REST_PELVIS_HEIGHT, joint_positions
from ..defaults import INPAINT_MIN_RUN_SECONDS, PACED_KEY_SECONDS
from .feet import (AIRBORNE_HEIGHT, LEGS, MAX_AIRTIME_SECONDS, PLANTED_HEIGHT, ankle_positions, reach_ankles,
                   true_runs)

# Beyond the first and last key of a joint its correction fades out over this long: slowly
# enough that the fade's rate of turn stays small next to the dance's own (a 1 rad correction
# fades at at most 1.5 rad/s).
FADE_SECONDS = 1.0
# Near a leg's own keys the IK that keeps its foot in place under a root height key fades out
# over this long, so that the leg meets its keys without a jump.
LEG_KEY_FADE_SECONDS = 0.25


def _with_holds(keyed: np.ndarray, given: torch.Tensor, spins: np.ndarray | None = None,
                same_pose: Callable[[int, int], bool] | None = None
                ) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """A joint keyed with the same rotation on two keys in a row is held in between, where the
    pose keyed on both is the same (`same_pose`, from same_pose_frames; None: regardless): those
    frames become keys of that rotation. keyed (T,) bool, given (T,4) quaternions; `spins` (T,),
    the pelvis's keyed whole turns (Constraints.pelvis_turns): the same pose a whole turn on is a
    spin, not a hold. Returns (keyed, given, held (T,) bool: the frames of each hold, its two keys
    included)."""
    held = np.zeros(len(keyed), bool)
    k = np.flatnonzero(keyed)
    if len(k) < 2:
        return keyed, given, held
    keyed, given = keyed.copy(), given.clone()
    q0, q1 = given[k[:-1]], given[k[1:]]
    same_rotation = alike(q0.numpy(), q1.numpy())
    if spins is not None:
        same_rotation &= spins[k[1:]] == 0
    for a, b, same in zip(k[:-1], k[1:], same_rotation.tolist()):
        if same and b > a + 1 and (same_pose is None or same_pose(a, b)):
            keyed[a + 1:b] = True
            given[a + 1:b] = given[a]
            held[a:b + 1] = True
    return keyed, given, held


def same_pose_frames(constraints: Constraints, q_given: torch.Tensor | None = None) -> Callable[[int, int], bool]:
    """f(a, b) -> whether the keys on frames a and b are the same pose keyed twice, which holds
    (engine.body.holds.same_pose_keyed, the add-on's rule too)."""
    n = constraints.num_frames
    q = (q_given if q_given is not None else R.axis_angle_to_quat(
        torch.from_numpy(constraints.poses).reshape(n, NUM_JOINTS, 3))).numpy()
    mask, placed, trans = constraints.joint_mask, constraints.trans_mask, constraints.trans

    def same(a: int, b: int) -> bool:
        return same_pose_keyed(mask[a:b + 1], q[[a, b]], placed[a:b + 1], trans[[a, b]])
    return same


LEG_JOINTS = frozenset(JOINT_INDEX[name] for name in BODY_PARTS["legs"])

# A hold of these joints (the pelvis's turn and both legs) freezes the stance: with the feet
# planted, the root cannot travel either (it slid a statue 1.6 m across the floor in a second).
STANCE_JOINTS = [0, 1, 2, 4, 5, 7, 8]


def _held_root(trans: np.ndarray, keyed: np.ndarray, given: np.ndarray,
               stance_held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root keys (keyed (T,), given (T,3)) with the root held where the stance is (stance_held
    (T,) bool, from the stance joints' holds): through each such span the root stays at its key
    at either end (both keys the same, or only one keyed), else where the dance has it at the
    span's start. Root keys that differ at both ends are the animator's move: not held."""
    keyed, given = keyed.copy(), given.copy()
    edges = np.flatnonzero(np.diff(np.r_[0, stance_held.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2] - 1):
        ends = [f for f in (a, b) if keyed[f]]
        if len(ends) == 2 and np.abs(given[a] - given[b]).max() > 1e-6:
            continue
        keyed[a:b + 1] = True
        given[a:b + 1] = given[ends[0]] if ends else trans[a]
    return keyed, given


def _keyed_winding(pelvis: torch.Tensor, key_frames: np.ndarray, keyed: torch.Tensor,
                   spins: np.ndarray) -> np.ndarray:
    """(T,) extra turn about the vertical, whole turns at the keys, so that the pelvis (T,4), which
    meets each keyed facing `keyed` (K,4) at `key_frames`, also turns between consecutive keys the
    way the keys do: the short way from one keyed heading to the next, as Blender shows keys under
    half a turn apart, plus the whole turns `spins` (K,) the keys ask for (a keyed spin). The
    corrections that meet each key go the short way from the dance's facing there, so where the
    dance turned the other way round between two keys (a keyed turn of 120 degrees danced as 240
    the other way), the keys were met and the turn was lost (weights/TRAINING.md, "Keyed spins")."""
    if len(key_frames) < 2:
        return np.zeros(len(pelvis))
    danced = np.unwrap(R.heading(R.quat_to_matrix(pelvis)).numpy())[key_frames]
    wanted = R.heading(R.quat_to_matrix(keyed)).numpy()
    turn = R.wrap_angle(np.diff(wanted)) + 2 * np.pi * spins[1:]
    whole = np.round((turn - np.diff(danced)) / (2 * np.pi))
    if not whole.any():
        return np.zeros(len(pelvis))
    at_keys = 2 * np.pi * np.concatenate([[0.0], np.cumsum(whole)])
    return offset_curve(key_frames, at_keys[:, None], len(pelvis), None)[:, 0]


def apply_constraints(poses: np.ndarray, trans: np.ndarray, constraints: Constraints, fps: float,
                      fade_seconds: float = FADE_SECONDS, grounded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return copies of (poses (T,72), trans (T,3)) that satisfy `constraints` exactly.
    `grounded`: the dance has been through the feet step with these keys on (finish_motion puts
    them on again after it, as the step moves the root a little): it stands on the floor (y = 0)
    and already jumps the keys. What is left of a root key is eased, not timed as a jump (a
    timed jump of 2.6 cm bumped the hips at 2 g at the apex), and a foot in the air rises with
    the body (_raised_on_planted_feet)."""
    poses, trans = poses.astype(np.float64).copy(), trans.astype(np.float64).copy()
    T, n = len(poses), constraints.num_frames
    fade = fade_seconds * fps
    q_all = R.axis_angle_to_quat(torch.from_numpy(poses).reshape(T, NUM_JOINTS, 3))
    q_given = R.axis_angle_to_quat(torch.from_numpy(constraints.poses).reshape(n, NUM_JOINTS, 3))
    out_mask = np.zeros((T, NUM_JOINTS), bool)
    out_values = torch.zeros(T, NUM_JOINTS, 4, dtype=torch.float64)
    stance_held = np.ones(T, bool)
    pelvis_keys = None
    spins = np.zeros(T)
    spins[:n] = constraints.pelvis_turns
    jump_fades = {} if grounded else _jump_fades(constraints, trans, fps, fade)
    same_pose = same_pose_frames(constraints, q_given)
    for j in range(NUM_JOINTS):
        keyed = np.zeros(T, bool)
        keyed[:n] = constraints.joint_mask[:, j]
        if not keyed.any():
            stance_held &= j not in STANCE_JOINTS
            continue
        # A leg keyed only where the hips jump (tucked) folds as the body leaves the floor, over
        # the jump's rise: eased in over the second before, it folded on the floor, the body
        # crouching on it, and the feet left the floor 0.7 s before the hips did.
        joint_fade = fade
        if j in LEG_JOINTS and jump_fades and all(f in jump_fades for f in np.flatnonzero(keyed)):
            joint_fade = max(jump_fades[f] for f in np.flatnonzero(keyed))
        given = torch.zeros(T, 4, dtype=torch.float64)
        given[:n] = q_given[:, j]
        keyed, given, held = _with_holds(keyed, given, spins if j == 0 else None, same_pose)
        if j in STANCE_JOINTS:
            stance_held &= held
        k = np.flatnonzero(keyed)
        if j == 0:
            pelvis_keys = (k, given[k], spins[k])
        # Correction at each key, as a rotation vector (the short way round): given = delta * generated.
        dq = R.quat_mul(given[k], R.quat_conjugate(q_all[k, j]))
        delta = unwrapped_rotation_vectors(R.quat_to_axis_angle(dq).numpy())
        blend = torch.from_numpy(offset_curve(k, delta, T, joint_fade, paced=PACED_KEY_SECONDS * fps))
        q_all[:, j] = R.quat_mul(R.axis_angle_to_quat(blend), q_all[:, j])
        out_mask[:, j] = keyed
        out_values[keyed, j] = given[keyed]
    if pelvis_keys is not None:
        turn = R.vertical_axis_angle(torch.from_numpy(_keyed_winding(q_all[:, 0], *pelvis_keys)))
        q_all[:, 0] = R.quat_mul(R.axis_angle_to_quat(turn), q_all[:, 0])
    q_all[out_mask] = out_values[out_mask]                    # keyed values verbatim
    out = R.quat_to_axis_angle(q_all).reshape(T, -1).numpy()

    keyed = np.zeros(T, bool)
    keyed[:n] = constraints.trans_mask
    given_trans = np.zeros((T, 3))
    given_trans[:n] = np.where(constraints.trans_mask[:, None], constraints.trans, 0.0)
    if stance_held.any():
        keyed, given_trans = _held_root(trans, keyed, given_trans, stance_held)
    if keyed.any():
        k = np.flatnonzero(keyed)
        offsets = given_trans[k] - trans[k]
        paced = PACED_KEY_SECONDS * fps
        trans[:, [0, 2]] += offset_curve(k, offsets[:, [0, 2]], T, None, paced=paced, travel=True)
        rise, crouching = _root_rise(k, offsets[:, 1], None if grounded else given_trans[k, 1], T, fade, fps)
        if np.abs(rise).max() > 1e-9:
            out = _raised_on_planted_feet(out, trans, rise, k, out_mask, fps, grounded, crouching)
            trans[:, 1] += rise
        trans[k] = given_trans[k]
    mask = np.zeros(out.shape, bool)
    mask[:n] = np.repeat(constraints.joint_mask, 3, axis=1)
    out[mask] = constraints.poses[mask[:n]]                   # exactly the numbers given
    return out, trans


# How far above a standing dancer's hips a root key is a jump: up to RISE_ON_TOES it is a rise
# the legs take on the floor (up on the toes, or a floor a little off), from JUMP_ONLY nothing but
# a jump reaches it, and in between it is partly either (continuously: a key a millimetre
# higher is not another move). Real dancers' hips, LAFAN1's targets, are rarely above the
# first: with every key over standing height a jump, taken off for at the last moment from a few
# centimetres, they were missed by 0.2-0.4 cm more at 5 and 15 frames.
RISE_ON_TOES, JUMP_ONLY = 0.05, 0.15
# A keyed jump sinks this share of its height below standing to push off and to land into (the
# legs bend on planted feet): without it, a landing stopped dead at standing height (QA).
JUMP_CROUCH = 0.3


def _split_rise(key_frames: np.ndarray, offsets: np.ndarray, heights: np.ndarray,
                fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Root keys at frames (K,) with height offsets (K,) at keyed heights (K,) -> (eased, jump):
    the part of a key's offset that lifts the hips above a standing dancer's is a jump (the feet
    cannot stay on the floor; for keys well above it, RISE_ON_TOES and JUMP_ONLY), the rest a
    dip or a rise the legs take on planted feet. Keys in a run of consecutive keyed frames (seed
    motion, a kept clip) carry their own motion: all of it eases, joining the run's own rate."""
    keyed = np.zeros(int(key_frames[-1]) + 1, bool)
    keyed[key_frames] = True
    min_run = max(2, int(round(INPAINT_MIN_RUN_SECONDS * fps)))
    in_run = keyed_runs(keyed[:, None], min_run)[key_frames, 0]
    above = heights - REST_PELVIS_HEIGHT
    jumping = smoothstep(np.clip((above - RISE_ON_TOES) / (JUMP_ONLY - RISE_ON_TOES), 0.0, 1.0))
    jump = np.where(in_run, 0.0, jumping * np.clip(np.minimum(above, offsets), 0.0, None))
    return offsets - jump, jump


def _root_rise(key_frames: np.ndarray, offsets: np.ndarray, heights: np.ndarray | None, length: int, fade: float,
               fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(length,) the root's height correction through its keys' offsets (K,) at keyed heights
    (K,): a dip or rise eased in and out over `fade` frames (dip_knots), plus a jump's part
    that takes off and lands as a jump (jump_curve). Eased over a second like the rest, hips
    keyed 0.5 m over standing ones had the feet off the floor 2 s for 1 s of keys (QA).
    `heights` None: no jumps, all of it eased. Also (length,) bool: the frames where a jump
    crouches to push off or to land."""
    if heights is None:
        eased, jump = offsets, np.zeros_like(offsets)
    else:
        eased, jump = _split_rise(key_frames, offsets, heights, fps)
    paced = PACED_KEY_SECONDS * fps
    jumping = _hips_jump(key_frames, jump, length, fps)
    return (offset_curve(*dip_knots(key_frames, eased[:, None], fade), length, fade, paced=paced)[:, 0]
            + jumping), jumping < 0


def _keyed_jumps(constraints: Constraints, trans: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(root keys' frames (K,), the jump part of each (K,), _split_rise) for the dance `trans`
    (T,3) before the constraints are put on."""
    k = np.flatnonzero(constraints.trans_mask[:len(trans)])
    heights = constraints.trans[k, 1]
    return k, (_split_rise(k, heights - trans[k, 1], heights, fps)[1] if len(k) else np.zeros(0))


def _jump_fades(constraints: Constraints, trans: np.ndarray, fps: float, fade: float) -> dict[int, float]:
    """{root key's frame: frames over which legs keyed there fold} for the root keys that jump
    (_split_rise) in the dance `trans` (T,3) before the constraints: a jump that lifts the feet
    AIRBORNE_HEIGHT or more folds them over its rise from its crouch, a smaller one over longer,
    up to the `fade` of any key for one of no height. Hips keyed 7 cm over a standing dancer's
    (a rise on the toes, 2 mm of it a jump) folded the legs over the 1.2 frames of that jump's
    rise, and the foot leapt 37 cm in the frame after a start pose (11.7 m/s)."""
    k, jump = _keyed_jumps(constraints, trans, fps)
    ease = jump_ease_frames(jump, fps, JUMP_CROUCH)
    airborne = smoothstep(np.clip(jump / AIRBORNE_HEIGHT, 0.0, 1.0))
    return {int(f): float(e + (1.0 - a) * max(fade - e, 0.0))
            for f, h, e, a in zip(k, jump, ease, airborne) if h > 0}


def _hips_jump(key_frames: np.ndarray, jump: np.ndarray, length: int, fps: float) -> np.ndarray:
    """(length,) the hips' jumps through the jump parts (K,) of their keys (_split_rise)."""
    return jump_curve(key_frames, jump, length, fps, hang=MAX_AIRTIME_SECONDS * fps, crouch=JUMP_CROUCH)


def keyed_jump_lift(constraints: Constraints, drawn: tuple[np.ndarray, np.ndarray],
                    keyed: tuple[np.ndarray, np.ndarray], fps: float) -> np.ndarray:
    """(T,) metres by which jumps that root keys ask for lift the feet on each frame: where a root
    key lifts both feet off the floor (hips keyed up, legs tucked), from its takeoff to its
    landing (jump_curve: the hips' jump, or the feet's where the hips are not keyed over a
    standing dancer's), how much higher the lowest foot is than the dance drew it; fully once
    that jump is AIRBORNE_HEIGHT up, in proportion below.
    0 around keys that leave the feet as low as the dance drew them, and without root keys.
    `drawn` and `keyed`: the dance's (poses (T,72), trans (T,3)) before and after apply_constraints.
    The floor step grounds the rest (the network's own float): put on the floor, a jump keyed
    with tucked legs came down 0.8 m between its keys."""
    T = len(keyed[1])
    k, hips_jump = _keyed_jumps(constraints, drawn[1], fps)
    if not len(k):
        return np.zeros(T)

    def lowest(poses, trans, frames):
        return np.clip(joint_positions(poses[frames], trans[frames])[:, list(FOOT_INDICES), 1].min(axis=1), 0.0, None)

    at_keys = np.clip(lowest(*keyed, k) - lowest(*drawn, k), 0.0, None)
    # Timed by the hips' own jump where the keys have one (_root_rise's, crouch and all): the
    # legs tucking for a jump lift the feet before the hips leave the floor, and left up, they
    # curled under hips not yet rising; grounded, the body crouches on them and springs from the
    # crouch. Where only the legs lift the feet (tucked under hips at standing height), by the feet.
    lifted = at_keys > 0
    jumps = np.maximum(_hips_jump(k, hips_jump * lifted, T, fps),
                       jump_curve(k, np.where(hips_jump > 0, 0.0, at_keys), T, fps, hang=MAX_AIRTIME_SECONDS * fps))
    share = np.clip(jumps / AIRBORNE_HEIGHT, 0.0, 1.0)
    if not share.any():
        return np.zeros(T)
    every = np.arange(T)
    return share * np.clip(lowest(*keyed, every) - lowest(*drawn, every), 0.0, None)


def _raised_on_planted_feet(poses: np.ndarray, trans: np.ndarray, rise: np.ndarray, root_keys: np.ndarray,
                            joint_keyed: np.ndarray, fps: float, grounded: bool = False,
                            crouching: np.ndarray | None = None) -> np.ndarray:
    """Poses whose legs bend (or stretch) so that the ankles stay where they were while the root
    rises by `rise` (T,): a lowered root key is a crouch on the same feet, not feet in the floor.
    A leg the animator posed at the root keys around a frame (a full-pose key) is theirs: there
    the whole body moves with the root, as before. Not beyond the first or last root key where
    that key ends a run of keyed frames (seed motion, a kept clip): the dance drawn beyond it is
    free, and its feet stay planted while the root's offset fades (lifted with the whole body
    after an idle clip standing 7 cm higher, both feet floated off the floor: QA). Elsewhere the
    IK fades out over LEG_KEY_FADE_SECONDS towards the leg's own keys. joint_keyed (T, 24): the
    joints keyed or held on each frame (a held leg is as much the animator's as a keyed one).
    `grounded`: the dance stands on the floor at y = 0, so a foot in the air can be told (below).
    `crouching` (T,) bool: where a keyed jump crouches to push off or land (_root_rise); the legs
    bend there whoever posed them at the key (moved down with the body, the feet of a lone
    tucked key went into the floor, and the floor step took the crouch back out)."""
    from scipy.ndimage import distance_transform_edt
    T, n = len(poses), len(joint_keyed)
    targets = ankle_positions(poses, trans)
    raised = trans.copy()
    raised[:, 1] += rise
    weight = np.zeros((T, 2))
    frames = np.arange(T)
    before = np.searchsorted(root_keys, frames, side="right") - 1       # the root key at or before
    after = np.minimum(np.searchsorted(root_keys, frames, side="left"), len(root_keys) - 1)
    inside = (before >= 0) & (root_keys[after] >= frames)               # on or between root keys
    min_run = max(2, int(round(INPAINT_MIN_RUN_SECONDS * fps)))
    for col, leg in enumerate(LEGS.values()):
        leg_keyed = np.zeros(T, bool)
        leg_keyed[:n] = legs_keyed(joint_keyed)[:, col]
        lone = leg_keyed & ~keyed_runs(leg_keyed[:, None], min_run)[:, 0]    # keyed, not in a run
        posed = leg_keyed[root_keys[after]] & (root_keys[after] >= frames)
        posed |= (before >= 0) & leg_keyed[root_keys[np.maximum(before, 0)]]
        nearest = root_keys[np.where(before >= 0, np.maximum(before, 0), after)]
        posed &= inside | lone[nearest]
        distance = distance_transform_edt(~leg_keyed) if leg_keyed.any() else np.full(T, np.inf)
        if crouching is not None:
            posed &= ~crouching
        weight[:, col] = (~posed) * np.clip(distance / max(1.0, LEG_KEY_FADE_SECONDS * fps), 0.0, 1.0)
    if grounded:
        # A foot already in the air rises with the body: held where it was, a hanging leg was
        # stretched towards a place it could not reach, and the IK folded its knee to 64 degrees
        # and its ankle to 120 (QA: the keys of a jump put on again after the feet step). A
        # lowered root still bends every leg, so that no foot goes down with it into the floor.
        sole = joint_positions(poses, trans)[:, [[leg[2], leg[3]] for leg in LEGS.values()], 1].min(axis=-1)
        on_floor = 1.0 - smoothstep(np.clip((sole - PLANTED_HEIGHT) / (AIRBORNE_HEIGHT - PLANTED_HEIGHT), 0.0, 1.0))
        weight *= np.where((rise > 0)[:, None], on_floor, 1.0)
    weight *= (np.abs(rise) > 1e-9)[:, None]
    return reach_ankles(poses, raised, targets, weight)


def keyed_runs(mask: np.ndarray, min_frames: int) -> np.ndarray:
    """(T, J) key mask -> the same with only runs of at least `min_frames` consecutive keyed
    frames of each joint kept."""
    out = np.zeros_like(mask, dtype=bool)
    for j in np.flatnonzero(mask.any(axis=0)):
        for a, b in true_runs(mask[:, j], min_frames):
            out[a:b, j] = True
    return out


def keyed_runs_at(constraints: Constraints | None, fps: float, length: int, model_fps: float) -> Constraints | None:
    """The keys of `constraints` that form runs of at least INPAINT_MIN_RUN_SECONDS (the dance
    around a regenerated range, seed motion, a locked body part), resampled to `model_fps` for
    `length` frames: a model frame between two keyed output frames takes their slerp (a position
    between them, linearly). None without such runs."""
    if constraints is None:
        return None
    min_frames = max(2, int(round(INPAINT_MIN_RUN_SECONDS * fps)))
    joints = keyed_runs(constraints.joint_mask, min_frames)
    root = keyed_runs(constraints.trans_mask[:, None], min_frames)[:, 0]
    if not joints.any() and not root.any():
        return None
    n = constraints.num_frames
    at = np.arange(length) / model_fps * fps                 # each model frame's place in output frames
    i0 = np.minimum(np.floor(at + 1e-9).astype(int), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = np.clip(at - i0, 0.0, 1.0)
    on_frame = w < 1e-6
    inside = at <= n - 1 + 1e-6
    joint_mask = joints[i0] & (joints[i1] | on_frame[:, None]) & inside[:, None]
    trans_mask = root[i0] & (root[i1] | on_frame) & inside
    # Unconstrained frames may hold anything (NaN in a constraints file): zeros there.
    given_poses = np.where(np.repeat(constraints.joint_mask, 3, axis=1), constraints.poses, 0.0)
    given_trans = np.where(constraints.trans_mask[:, None], constraints.trans, 0.0)
    q = R.axis_angle_to_quat(torch.from_numpy(given_poses).reshape(n, NUM_JOINTS, 3))
    between = R.quat_slerp(q[i0], q[i1], torch.from_numpy(w)[:, None, None])
    poses = R.quat_to_axis_angle(between).reshape(length, -1).numpy()
    trans = (1 - w)[:, None] * given_trans[i0] + w[:, None] * given_trans[i1]
    return Constraints(poses=poses, trans=trans, joint_mask=joint_mask, trans_mask=trans_mask, fps=model_fps)


def keys_at_model_rate(constraints: Constraints | None, fps: float, length: int, model_fps: float) -> Constraints | None:
    """Every key of `constraints` at `model_fps` for `length` frames: runs as keyed_runs_at
    resamples them, each other key on its nearest model frame. The dance is made to meet them
    before its feet are cleaned up, so that the feet are planted on the motion that passes
    through the keys: the corrections that meet a key bend the legs and move the root, and
    made after the cleanup they slid planted feet at up to 2.8 m/s and sank them 5 cm around
    each key. The output's own keys are still met exactly at the end (apply_constraints)."""
    if constraints is None:
        return None
    runs = keyed_runs_at(constraints, fps, length, model_fps)
    poses, trans = np.zeros((length, NUM_JOINTS * 3)), np.zeros((length, 3))
    joint_mask, trans_mask = np.zeros((length, NUM_JOINTS), bool), np.zeros(length, bool)
    if runs is not None:
        poses[:], trans[:], joint_mask[:], trans_mask[:] = runs.poses, runs.trans, runs.joint_mask, runs.trans_mask
    min_frames = max(2, int(round(INPAINT_MIN_RUN_SECONDS * fps)))
    lone_joints = constraints.joint_mask & ~keyed_runs(constraints.joint_mask, min_frames)
    lone_root = constraints.trans_mask & ~keyed_runs(constraints.trans_mask[:, None], min_frames)[:, 0]
    nearest = np.round(np.arange(constraints.num_frames) * model_fps / fps).astype(int)
    for f in np.flatnonzero((lone_joints.any(axis=1) | lone_root) & (nearest < length)):
        m = nearest[f]
        joints = lone_joints[f] & ~joint_mask[m]
        block = poses[m].reshape(NUM_JOINTS, 3)
        block[joints] = constraints.poses[f].reshape(NUM_JOINTS, 3)[joints]
        joint_mask[m] |= joints
        if lone_root[f] and not trans_mask[m]:
            trans[m], trans_mask[m] = constraints.trans[f], True
    if not joint_mask.any() and not trans_mask.any():
        return None
    return Constraints(poses=poses, trans=trans, joint_mask=joint_mask, trans_mask=trans_mask, fps=model_fps,
                       pelvis_turns=_spins_at(constraints, nearest, joint_mask[:, 0]))


def _spins_at(constraints: Constraints, nearest: np.ndarray, pelvis_keyed: np.ndarray) -> np.ndarray:
    """The keyed whole turns (Constraints.pelvis_turns) on the model frames whose pelvis keys
    `pelvis_keyed` (L,) resample them: each on the first keyed model frame at or after its own
    frame's `nearest`, so a spin stays between the same two keys."""
    out = np.zeros(len(pelvis_keyed))
    keyed = np.flatnonzero(pelvis_keyed)
    for f in np.flatnonzero(constraints.pelvis_turns):
        at = np.searchsorted(keyed, nearest[f])
        if at < len(keyed):
            out[keyed[at]] += constraints.pelvis_turns[f]
    return out


def keyed_spin_frames(constraints: Constraints) -> np.ndarray:
    """(T,) bool: the frames from a pelvis key to the next one that asks whole turns
    (Constraints.pelvis_turns), both keys included. The animator sets the pace of a keyed spin:
    a speed bound that eased the pelvis there would take the short way and unwind whole turns
    (three turns keyed a second apart were danced as two)."""
    out = np.zeros(constraints.num_frames, bool)
    keys = np.flatnonzero(constraints.joint_mask[:, 0])
    for a, b in zip(keys[:-1], keys[1:]):
        if constraints.pelvis_turns[b]:
            out[a:b + 1] = True
    return out


def leg_keys(constraints: Constraints) -> tuple[np.ndarray, np.ndarray]:
    """How the feet cleanup treats the keyed legs: (given (T, 2), pinned (T, 2)) in feet.LEGS'
    order. Given: legs keyed in runs (seed motion, a regenerated range's surroundings, a locked
    leg) or held between two keys of the same rotation, left as they are. Pinned: legs keyed on
    a lone frame, whose foot is planted where the key puts it when the key's foot is low (a
    stance around it on a spot of its own slid the foot away from the key and back)."""
    T = constraints.num_frames
    q = R.axis_angle_to_quat(torch.from_numpy(constraints.poses).reshape(T, NUM_JOINTS, 3))
    keyed = legs_keyed(constraints.joint_mask)
    runs = legs_keyed(keyed_runs(constraints.joint_mask, max(2, int(round(INPAINT_MIN_RUN_SECONDS * constraints.fps)))))
    holds = np.zeros((T, 2), bool)
    same_pose = same_pose_frames(constraints, q)
    for col, leg in enumerate(LEGS.values()):
        spans = [_with_holds(constraints.joint_mask[:, j], q[:, j], same_pose=same_pose)[2] for j in leg[:3]
                 if constraints.joint_mask[:, j].any()]
        holds[:, col] = np.logical_or.reduce(spans) if spans else False
    given = runs | holds
    return given, keyed & ~given


def legs_keyed(joint_mask: np.ndarray) -> np.ndarray:
    """(T, 24) key mask -> (T, 2) in feet.LEGS' order: frames where a leg's hip, knee or ankle is keyed."""
    return np.stack([joint_mask[:, list(leg[:3])].any(axis=1) for leg in LEGS.values()], axis=1)


def legs_hang_from_new_hips(c: Constraints, fps: float) -> bool:
    """Whether legs are kept (keyed on a second or more of consecutive frames) where the pelvis,
    whose turn carries them, is not: their feet then go wherever the new hips put them."""
    legs = legs_keyed(keyed_runs(c.joint_mask, max(2, int(round(fps))))).any(axis=1)
    return int((legs & ~c.joint_mask[:, 0]).sum()) >= fps


def anchor_times(constraints: Constraints | None, fps: float) -> np.ndarray:
    """Frames the beat warp must leave in place: keys of at least half the body, or of the root."""
    if constraints is None:
        return np.zeros(0)
    strong = (constraints.joint_mask.sum(axis=1) >= NUM_JOINTS // 2) | constraints.trans_mask
    return np.flatnonzero(strong) / fps


# A root held this far above a standing dancer's hips is past any rise or jump: the feet leave the
# floor around it (often a take that stands a character on another level than its rest pose).
# The add-on says so; the keys are still met.
RAISED_ROOT_METRES = 0.3


# m/s. The training dancers' pelvis never crossed the floor faster than 2.4 m/s (tang2018 and
# JustLMD: 99.9th percentile 2.07, fastest frame 2.39); root keys twice that far apart for their
# time are a slip (centimetres typed as metres, a key on the wrong frame), met by a rush.
RUSHED_ROOT_SPEED = 4.8


def rushed_root_keys(constraints: Constraints, fps: float) -> tuple[float, float, float] | None:
    """(time, next time, m/s) of the two consecutive root keys furthest apart across the floor for
    their time, when that is faster than RUSHED_ROOT_SPEED; else None."""
    frames = np.flatnonzero(constraints.trans_mask)
    if len(frames) < 2:
        return None
    across = np.linalg.norm(np.diff(constraints.trans[frames][:, [0, 2]], axis=0), axis=1)
    speed = across / (np.diff(frames) / fps)
    k = int(np.argmax(speed))
    return (frames[k] / fps, frames[k + 1] / fps, float(speed[k])) if speed[k] > RUSHED_ROOT_SPEED else None


# A root key this low has no body under it: hips under the floor (a sign slip, another floor level).
SUNK_ROOT_METRES = 0.1


def _root_keys_among(constraints: Constraints, among: np.ndarray | None) -> np.ndarray:
    """The frames with a root key, of those marked in `among` (T,) bool where given."""
    mask = constraints.trans_mask if among is None else constraints.trans_mask & among
    return np.flatnonzero(mask)


def sunk_root_frames(constraints: Constraints, among: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(frames whose root is keyed lower than SUNK_ROOT_METRES above the floor, the lowest key's
    height), of the frames `among` (T,) bool where given."""
    held = _root_keys_among(constraints, among)
    low = constraints.trans[held, 1] < SUNK_ROOT_METRES
    return held[low], float(constraints.trans[held[low], 1].min()) if low.any() else 0.0


def raised_root_frames(constraints: Constraints, among: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(frames whose root is held more than RAISED_ROOT_METRES above a standing dancer's hips,
    the most it is held above them there, metres), of the frames `among` (T,) bool where given."""
    held = _root_keys_among(constraints, among)
    above = constraints.trans[held, 1] - REST_PELVIS_HEIGHT
    high = above > RAISED_ROOT_METRES
    return held[high], float(above[high].max()) if high.any() else 0.0
