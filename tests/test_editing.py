"""Keys the dance moves through (engine.finishing.editing), no pops (engine.finishing.turns.limit_joint_speeds and the
leg IK), staying on stage (engine.finishing.rootpath): on hand-made motion with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.body import rotations as R
from engine.body.curves import offset_curve
from engine.finishing.editing import apply_constraints
from engine.evaluation.evaluate_inbetween import angular_speed, key_flow
from engine.body.motion import Constraints
from engine.errors import EngineError
from engine.finishing.rootpath import IN_PLACE_SWAY, bound_root_path
from engine.body.skeleton import JOINT_INDEX, NUM_JOINTS, REST_PELVIS_HEIGHT, forward_kinematics, joint_positions
from engine.finishing.turns import MAX_JOINT_SPEED, limit_joint_speeds
from rotation_checks import rotation_error

FPS = 30.0


def _dance(T, seed=0, amplitude=0.5):
    """Every joint swinging at its own tempo (0.4-1.2 Hz), the root swaying."""
    t = np.arange(T) / FPS
    rng = np.random.default_rng(seed)
    poses = np.zeros((T, 72))
    for c in range(72):
        poses[:, c] = amplitude * np.sin(2 * np.pi * rng.uniform(0.4, 1.2) * t + rng.uniform(0, 6))
    trans = np.stack([0.2 * np.sin(t), np.full(T, REST_PELVIS_HEIGHT), 0.2 * np.cos(1.3 * t)], 1)
    return poses, trans


def _keys_every(source, T, seconds=2.0):
    c = Constraints.empty(T, FPS)
    keys = np.arange(0, T, int(seconds * FPS))
    for k in keys:
        c.set_pose(int(k), source[k])
    return c, keys


def test_keys_are_met_exactly_and_the_body_flows_through_them():
    T = 300
    generated, trans = _dance(T)
    real, _ = _dance(T, seed=5)                # keys far from what was "generated"
    c, keys = _keys_every(real, T)
    poses, _ = apply_constraints(generated, trans, c, FPS)
    m = np.repeat(c.joint_mask, 3, axis=1)
    assert rotation_error(poses[m], c.poses[m]) < 1e-6
    ratios, whip = key_flow(joint_positions(poses, trans), keys, FPS)
    assert min(ratios) >= 0.5            # no dead stop at a key (the old ease gave 0.04)
    assert whip <= 1.3                   # and no whip into it
    assert angular_speed(poses, FPS).max() < 1.5 * angular_speed(generated, FPS).max()


def test_a_jump_curve_takes_off_and_lands_without_overshoot_slowing_into_the_apex_at_g():
    from engine.body.curves import GRAVITY, jump_curve
    heights = np.array([0.0, 0.5, 0.3, 0.0, 0.2])
    frames = np.array([0, 60, 75, 150, 200])
    curve = jump_curve(frames, heights, 240, FPS)
    assert np.allclose(curve[frames], heights)
    fall = np.sqrt(6 * heights / GRAVITY) * FPS          # eased to decelerate at g
    assert np.all(curve[:int(60 - fall[1])] == 0) and curve[int(60 - fall[1]) + 1] > 0      # takes off late
    assert np.all(curve[int(np.ceil(75 + fall[2])):200 - int(fall[4])] == 0)               # lands, stays down
    assert curve.max() <= 0.5 + 1e-12 and curve.min() >= 0.0
    assert np.all(np.diff(curve[40:61]) >= -1e-12) and np.all(np.diff(curve[60:76]) <= 1e-12)
    assert np.abs(np.diff(curve[30:61], 2)).max() * FPS ** 2 <= 1.05 * GRAVITY     # no harder than a fall
    assert np.all(curve[int(np.ceil(200 + fall[4])):] == 0)      # and after the last key too
    apart = np.array([30, 120]), np.array([0.3, 0.3])
    assert jump_curve(*apart, 200, FPS)[75] == pytest.approx(0.3)                  # one long hang
    assert jump_curve(*apart, 200, FPS, hang=0.6 * FPS)[75] == 0                  # two jumps


def test_the_correction_is_smooth_across_the_whole_gap():
    curve = offset_curve(np.array([30, 90]), np.array([[1.0], [-0.5]]), 200, fade=30)
    assert curve[30, 0] == pytest.approx(1.0) and curve[90, 0] == pytest.approx(-0.5)
    assert np.all(curve[:1] == 0) and np.all(curve[121:] == 0)       # faded out beyond the keys
    slope = np.diff(curve[:, 0])
    assert np.abs(np.diff(slope)).max() < 0.01                        # C1: no kink anywhere
    assert np.abs(slope).max() < 2.0 / 30                             # spread over the gap, not a jump


def test_keys_that_pace_the_motion_are_flowed_through_at_the_keys_own_rate():
    """An animator blocking a joint, a key every 8 frames, turning it steadily faster than the
    dance drew it: the corrections that meet the keys grow steadily too. Paused at each key (an
    isolated key's slope 0), the joint turned at the drawn rate on the keys and at up to 1.5
    times the keys' extra rate between them: it shook at the keys' pace (with keys from a real
    dancer every 8 frames, whole-body jerk 216 against the dancer's 91). Keys that pace the
    motion are now a run: the joint turns at the keys' own steady rate."""
    T, every = 120, 8
    t = np.arange(T) / FPS
    generated = np.zeros((T, 72))
    keyed = np.zeros((T, 72))
    elbow = 3 * JOINT_INDEX["left_elbow"]
    generated[:, elbow] = 1.0 * t                  # drawn turning at 1 rad/s
    keyed[:, elbow] = 2.0 * t                      # keyed turning at 2 rad/s
    c, keys = _keys_every(keyed, T, seconds=every / FPS)
    poses, _ = apply_constraints(generated, _dance(T)[1], c, FPS)
    speed = angular_speed(poses, FPS)[keys[1]:keys[-2], JOINT_INDEX["left_elbow"]]
    assert np.abs(speed - 2.0).max() < 0.05, speed.round(2)


def test_root_keys_that_pace_the_travel_move_the_dancer_at_their_own_rate():
    """Root keys every 8 frames leading the dancer across the floor at 1 m/s where the dance drew
    it in place: paused at each key, the dancer stopped on every key and rushed at 1.5 m/s
    between them (with a real dancer's pose and root keyed every 8 frames, whole-body jerk 251
    against the dancer's 91; now 141). It now travels at the keys' steady 1 m/s."""
    T, every = 120, 8
    poses = np.zeros((T, 72))
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (T, 1))
    c = Constraints.empty(T, FPS)
    keys = np.arange(0, T, every)
    for k in keys:
        c.set_pose(int(k), poses[k], joints=[], root=[k / FPS, REST_PELVIS_HEIGHT, 0.0])
    _, moved = apply_constraints(poses, trans, c, FPS)
    speed = np.linalg.norm(np.diff(moved[keys[1]:keys[-2], [0, 2]], axis=0), axis=-1) * FPS
    assert np.abs(speed - 1.0).max() < 0.02, speed.round(2)


def test_root_keys_off_the_drawn_path_carry_the_dancer_through_them_without_surges():
    """Full poses keyed every 4 s, their root places far from the drawn path (QA: poses copied from
    another take, 2.1 m from the draw per gap): the correction carries the dancer from key to key,
    and paused at every key it moved the hips in surges, at 0.27x their speed around each key.
    It now flows through a key where the travel goes on, and turns back only with zero speed."""
    T, every = 600, int(4 * FPS)
    generated, trans = _dance(T)                                   # sways near the origin
    keys = np.arange(0, T, every)
    path = np.stack([0.6 * keys / FPS, np.full(len(keys), REST_PELVIS_HEIGHT),
                     0.5 * np.sin(keys / FPS / 3)], 1)             # keyed: 0.6 m/s across the floor
    c = Constraints.empty(T, FPS)
    for k, place in zip(keys, path):
        c.set_pose(int(k), generated[k], joints=[], root=place)
    _, moved = apply_constraints(generated, trans, c, FPS)
    assert np.abs(moved[keys] - path).max() < 1e-9
    speed = np.linalg.norm(np.diff(moved[:, [0, 2]], axis=0), axis=-1) * FPS
    near = [speed[k - 2:k + 2].mean() / np.r_[speed[k - 25:k - 5], speed[k + 5:k + 25]].mean() for k in keys[1:-1]]
    print("hips speed near keys over around:", np.round(near, 2))
    assert min(near) >= 0.8
    # Keys that turn the travel back: the correction stops there and never overshoots them.
    back = offset_curve(np.array([0, 100, 200, 300]), np.array([[0.0], [2.0], [1.0], [3.0]]), 301, None,
                        travel=True)[:, 0]
    assert back[0:101].max() <= 2.0 + 1e-9 and back[100:201].min() >= 1.0 - 1e-9
    assert abs(back[101] - back[100]) < 1e-3 and abs(back[201] - back[200]) < 1e-3
    # Two keys close together, then a long gap: no rate of theirs carried past the next key (QA: 0.2 m).
    for frames in ([0, 1, 100], [0, 10, 100], [0, 50, 51, 150]):
        values = np.array([[0.0], [1.0], [0.0]] if len(frames) == 3 else [[0.0], [1.0], [1.1], [0.0]])
        pair = offset_curve(np.array(frames), values, frames[-1] + 1, None, paced=24, travel=True)
        assert pair.max() <= values.max() + 1e-9, frames



def test_a_pose_keyed_twice_is_held_and_only_there():
    T = 120
    generated, trans = _dance(T)
    pose = _dance(T, seed=3)[0][0]
    c = Constraints.empty(T, FPS).set_pose(30, pose).set_pose(60, pose)
    c.set_pose(90, _dance(T, seed=4)[0][0], joints=["left_arm"])
    poses, _ = apply_constraints(generated, trans, c, FPS)
    held = poses[30:61].reshape(31, NUM_JOINTS, 3)
    assert rotation_error(held.reshape(-1, 3), np.tile(pose.reshape(NUM_JOINTS, 3), (31, 1))) < 1e-6
    assert angular_speed(poses[62:], FPS).max() > 1.0          # moving again after the hold



def test_joints_alike_on_two_keys_of_a_changing_pose_are_no_hold():
    """The whole body keyed on two different poses (Blender's Whole Character keying set) holds
    nothing, not even the joints that happen to be alike on both (QA25: the ankles, at rest on
    both, froze for 5 s and the feet skated). The same pose twice, or a part keyed twice alike
    with others keyed between, still holds."""
    from engine.finishing.editing import leg_keys
    T = 120
    generated, trans = _dance(T)
    first, second = _dance(T, seed=3)[0][0], _dance(T, seed=4)[0][0]
    ankles = [JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]]
    for pose in (first, second):
        pose.reshape(NUM_JOINTS, 3)[ankles] = 0.0                     # alike on both keys
    c = Constraints.empty(T, FPS).set_pose(30, first).set_pose(90, second)
    poses, _ = apply_constraints(generated, trans, c, FPS)
    between = poses[35:86].reshape(-1, NUM_JOINTS, 3)[:, ankles]
    assert np.linalg.norm(between, axis=-1).max() > 0.2                # they dance between the keys
    given, pinned = leg_keys(c)
    assert not given.any() and pinned[[30, 90]].all()
    # An arm keyed alike twice while the legs are keyed between: the arm's pose twice, a hold.
    c = Constraints.empty(T, FPS).set_pose(30, first, joints=["left_arm"]).set_pose(90, first, joints=["left_arm"])
    c.set_pose(60, second, joints=["legs"])
    poses, _ = apply_constraints(generated, trans, c, FPS)
    arm = [JOINT_INDEX[n] for n in ("left_shoulder", "left_elbow")]
    held = poses[30:91].reshape(-1, NUM_JOINTS, 3)[:, arm]
    assert np.abs(held - first.reshape(NUM_JOINTS, 3)[arm]).max() < 1e-6

def test_partial_keys_locks_seed_motion_and_root_keys_are_exact():
    T = 240
    generated, trans = _dance(T)
    real, real_trans = _dance(T, seed=9)
    c = Constraints.empty(T, FPS).seed_motion(real[:20], real_trans[:20] + 1.0)       # seed motion
    c.follow(real, ["right_arm"])                                                      # a body-part lock
    c.set_pose(100, real[100], joints=["legs"], root=np.array([0.5, 0.9, 0.2]))       # partial key + root
    poses, out_trans = apply_constraints(generated, trans, c, FPS)
    m = np.repeat(c.joint_mask, 3, axis=1)
    assert rotation_error(poses[m], c.poses[m]) < 1e-6
    assert np.abs(out_trans[c.trans_mask] - c.trans[c.trans_mask]).max() < 1e-9
    # The root flows out of the seed with its own velocity plus a slow offset (no jump).
    step = np.linalg.norm(np.diff(out_trans, axis=0), axis=1)
    assert step[18:25].max() < 2 * np.linalg.norm(np.diff(trans, axis=0), axis=1).max() + 0.02


def test_a_fully_keyed_run_at_the_end_is_joined_without_a_seam():
    """The add-on regenerates a section and joins it to the dance after it: a run of full keys
    at the end of the range. The velocity flows into the run: no kink at its first frame."""
    T = 150
    generated, trans = _dance(T)
    existing, _ = _dance(T, seed=2)
    c = Constraints.empty(T, FPS)
    for f in range(120, T):
        c.set_pose(f, existing[f])
    poses, _ = apply_constraints(generated, trans, c, FPS)
    q = R.axis_angle_to_quat(torch.from_numpy(poses).reshape(T, NUM_JOINTS, 3))
    w = R.quat_to_axis_angle(R.quat_mul(q[1:], R.quat_conjugate(q[:-1]))).numpy()      # per-frame turn
    accel = np.linalg.norm(np.diff(w, axis=0), axis=-1)                               # (T-2, 24)
    at_seam = accel[116:122].max()
    elsewhere = np.percentile(accel[:100], 99)
    assert at_seam < 2.0 * elsewhere


def test_planted_pops_are_limited_to_the_bound_and_keys_stay():
    T = 200
    poses, _ = _dance(T, amplitude=0.3)
    poses[100:, 3 * JOINT_INDEX["left_knee"]] += 0.96              # the knee jumps 55 degrees in one frame
    poses[150:, 3 * JOINT_INDEX["left_elbow"] + 1] += 2.1           # the elbow twists 120 degrees
    fixed = np.zeros((T, NUM_JOINTS), bool)
    fixed[60] = True
    out, rebuilt = limit_joint_speeds(poses, FPS, fixed=fixed)
    assert rebuilt >= 2
    assert (angular_speed(out, FPS) <= np.array(MAX_JOINT_SPEED) + 1e-6).all()
    assert np.allclose(out[60], poses[60]) and np.allclose(out[:80], poses[:80])
    assert max(MAX_JOINT_SPEED) <= 40.0


def test_a_pop_on_the_last_frame_is_held_off_unless_the_frame_is_keyed():
    """A pop the dance's end cuts has nothing after it to ease to: eased onto the popped frame,
    the limb would still whip in the last frames. It is held at the pose before the pop instead;
    a keyed last frame is a real destination and stays."""
    T = 120
    poses, _ = _dance(T, amplitude=0.3)
    elbow = JOINT_INDEX["left_elbow"]
    poses[-1, 3 * elbow + 1] += 2.1                                 # the elbow twists 120 degrees
    out, rebuilt = limit_joint_speeds(poses, FPS)
    assert rebuilt == 1
    assert (angular_speed(out, FPS) <= np.array(MAX_JOINT_SPEED) + 1e-6).all()
    np.testing.assert_allclose(out[:-1], poses[:-1])
    arm = [3 * k + i for k in (elbow, JOINT_INDEX["left_wrist"]) for i in range(3)]
    np.testing.assert_allclose(out[-1, arm], poses[-2, arm], atol=1e-9)
    fixed = np.zeros((T, NUM_JOINTS), bool)
    fixed[-1] = True
    keyed, _ = limit_joint_speeds(poses, FPS, fixed=fixed)
    np.testing.assert_allclose(keyed[-1], poses[-1])
    assert (angular_speed(keyed, FPS) <= np.array(MAX_JOINT_SPEED) + 1e-6).all()


def test_the_leg_ik_does_not_flip_a_nearly_straight_knee():
    """A nearly straight leg's bend plane is noise: IK must bend the knee forward every frame,
    not flip it back and forth (the hip and knee popping by 50 degrees)."""
    from engine.finishing.feet import LEGS, _global_rotations, _positions, _two_bone_ik
    T = 40
    rng = np.random.default_rng(0)
    poses = np.zeros((T, 72))
    poses[:, 3 * JOINT_INDEX["left_knee"]] = 1e-3 * rng.standard_normal(T)   # straight, jittering
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (T, 1))
    local, pos = _positions(poses, trans)
    glob = _global_rotations(local)
    leg = LEGS["left"]
    target = pos[:, leg[2]] + torch.tensor([0.0, 0.12, 0.05], dtype=torch.float64)   # a bent knee reaches it
    _two_bone_ik(local, glob, pos, leg, target, torch.arange(T))
    out = R.matrix_to_axis_angle(local).reshape(T, -1).numpy()
    assert angular_speed(out, FPS)[:, list(leg[:2])].max() < 1.0
    assert (out[:, 3 * JOINT_INDEX["left_knee"]] > 0.3).all()                # bent forward, heel back


def test_the_leg_ik_reaches_its_target_where_the_knee_bends_off_its_hinge():
    """A knee bent partly sideways bends about a blend of its hinge and its plane: one pass of
    the IK then falls short (3.2 cm here). The passes that put keyed legs close it, and the
    miss the IK reports is the one forward kinematics gives."""
    from engine.finishing.feet import LEGS, REACH_PASSES, _global_rotations, _positions, _two_bone_ik
    T = 40
    poses = np.zeros((T, 72))
    knee, hip = 3 * JOINT_INDEX["left_knee"], 3 * JOINT_INDEX["left_hip"]
    poses[:, knee] = 0.4
    poses[:, knee + 2] = np.linspace(0.5, 0.8, T)                 # bent, partly sideways
    poses[:, hip + 1] = 0.6                                       # the thigh turned out
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (T, 1))
    local, pos = _positions(poses, trans)
    glob = _global_rotations(local)
    leg = LEGS["left"]
    target = pos[:, leg[2]] + torch.tensor([0.05, 0.15, 0.1], dtype=torch.float64)
    miss = _two_bone_ik(local, glob, pos, leg, target, torch.arange(T), passes=REACH_PASSES)
    reached = forward_kinematics(local, torch.from_numpy(trans))[:, leg[2]]
    assert (reached - target).norm(dim=-1).max() < 1e-4
    assert torch.allclose(miss, (reached - target).norm(dim=-1), atol=1e-9)
    assert torch.allclose(_global_rotations(local)[:, leg[2]], glob[:, leg[2]], atol=1e-9)   # the foot keeps its turn



def _knee_bends(poses: np.ndarray, side: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """(angle between the knee's bend axis and its hinge, bend angle) per frame, radians."""
    from engine.finishing.feet import LEGS
    from engine.body.skeleton import REST_OFFSETS, bend_axis
    hip, knee, ankle, _ = LEGS[side]
    thigh = REST_OFFSETS[knee] / np.linalg.norm(REST_OFFSETS[knee])
    local = R.axis_angle_to_matrix(torch.from_numpy(poses).reshape(len(poses), -1, 3)).numpy()
    shin = local[:, knee] @ (REST_OFFSETS[ankle] / np.linalg.norm(REST_OFFSETS[ankle]))
    normal = np.cross(thigh, shin)
    hinge = bend_axis(f"{side}_knee")
    off = np.arccos(np.clip(normal @ hinge / np.linalg.norm(normal, axis=-1), -1, 1))
    return off, np.arctan2(np.linalg.norm(normal, axis=-1), shin @ thigh)


def _leg_bent_backwards(frames: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A dancer standing, the left knee bent backwards and sideways more and more over the
    frames (the right one bent forward as a real knee bends), lowest foot on the floor."""
    poses = np.zeros((frames, 72))
    knee = 3 * JOINT_INDEX["left_knee"]
    poses[:, knee] = np.linspace(-0.2, -0.4, frames)                 # heel forward: the wrong way
    poses[:, knee + 2] = np.linspace(0.0, 0.2, frames)
    poses[:, 3 * JOINT_INDEX["right_knee"]] = 0.6
    poses[:, 3 * JOINT_INDEX["right_knee"] + 1] = 0.3                 # bent forward, twisted
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (frames, 1))
    trans[:, 1] -= joint_positions(poses[:1], trans[:1])[0, :, 1].min()
    return poses, trans


def test_a_knee_bent_backwards_bends_forward_with_the_foot_where_it_was():
    """A knee the network bends off its hinge (backwards, sideways) is turned back within
    KNEE_HINGE_TOLERANCE of it: its bend's angle kept, the thigh swung so that ankle, toe and
    sole stay put. A knee that bends as real knees do is left alone."""
    from engine.finishing.feet import KNEE_HINGE_TOLERANCE, LEGS, _global_rotations, _keep_knees_on_hinge
    poses, trans = _leg_bent_backwards()
    before_off, before_bend = _knee_bends(poses)
    assert before_off.min() > np.radians(90)
    local = R.axis_angle_to_matrix(torch.from_numpy(poses).reshape(len(poses), -1, 3))
    glob = _global_rotations(local)
    _keep_knees_on_hinge(local, np.zeros((len(poses), 2), bool), ease_frames=15, spread_frames=4)
    out = R.matrix_to_axis_angle(local).reshape(len(poses), -1).numpy()
    off, bend = _knee_bends(out)
    assert off.max() <= KNEE_HINGE_TOLERANCE + np.radians(0.5)   # the hinge is not quite square to the thigh
    assert bend == pytest.approx(before_bend, abs=1e-9)
    def knee_ahead(poses):       # the knee's distance in front of the hip-ankle line (m)
        hip, knee, ankle, _ = LEGS["left"]
        pos = joint_positions(poses, trans)
        line = (pos[:, ankle] - pos[:, hip]) / np.linalg.norm(pos[:, ankle] - pos[:, hip], axis=-1, keepdims=True)
        rel = pos[:, knee] - pos[:, hip]
        return (rel - (rel * line).sum(-1, keepdims=True) * line)[:, 2]
    assert (knee_ahead(poses) < -0.01).all() and (knee_ahead(out) > 0.005).all()   # heel back now
    feet = [j for leg in LEGS.values() for j in leg[2:]]
    assert np.abs(joint_positions(out, trans)[:, feet] - joint_positions(poses, trans)[:, feet]).max() < 1e-9
    assert torch.allclose(_global_rotations(local)[:, feet], glob[:, feet], atol=1e-9)
    right = [3 * j + k for j in LEGS["right"] for k in range(3)]
    assert np.abs(out[:, right] - poses[:, right]).max() < 1e-12              # within its hinge: as drawn


def test_the_feet_step_keeps_a_keyed_backwards_knee_and_eases_away_from_it(monkeypatch):
    """A leg keyed bent backwards stays as keyed on its key; away from the key the knee bends
    forward, eased in between (the knee moves no faster than the feet step moves it anyway)."""
    from engine.finishing import feet
    from engine.finishing.feet import KNEE_HINGE_TOLERANCE, LEGS, lock_feet
    poses, trans = _leg_bent_backwards()
    pinned = np.zeros((len(poses), 2), bool)
    pinned[20, 0] = True
    knee = JOINT_INDEX["left_knee"]

    def fastest_knee(out):
        return np.linalg.norm(np.diff(joint_positions(out, trans)[:, knee], axis=0), axis=-1).max()
    with monkeypatch.context() as m:
        m.setattr(feet, "KNEE_HINGE_TOLERANCE", np.pi)                     # no hinge
        unhinged = fastest_knee(lock_feet(poses, trans, FPS, pinned_legs=pinned)[0])
    out, _ = lock_feet(poses, trans, FPS, pinned_legs=pinned)
    keyed = [3 * j + k for j in LEGS["left"][:3] for k in range(3)]
    assert np.abs(out[20, keyed] - poses[20, keyed]).max() < 1e-9
    off, _ = _knee_bends(out)
    assert off[np.r_[0:4, 36:40]].max() <= KNEE_HINGE_TOLERANCE + np.radians(3)   # the turn eased in time
    assert fastest_knee(out) < unhinged + 0.005

@pytest.mark.parametrize("radius", [0.0, 0.6, 2.0])
def test_stage_radius_keeps_the_root_near_the_start(radius):
    T = int(120 * FPS)
    t = np.arange(T) / FPS
    walk = np.stack([0.3 * t + 0.2 * np.sin(2 * np.pi * t), np.full(T, 0.9), 0.1 * t], 1)   # drifting away
    out = bound_root_path(walk, FPS, radius)
    reach = np.linalg.norm(out[:, [0, 2]] - walk[0, [0, 2]], axis=1)
    assert reach.max() <= max(radius, IN_PLACE_SWAY) + 1e-9
    assert np.allclose(out[:, 1], walk[:, 1])
    if radius == 0:
        assert reach.max() > 0.05                                 # the pelvis still sways in place
    step = np.linalg.norm(np.diff(out[:, [0, 2]], axis=0), axis=1)
    assert step.max() < np.linalg.norm(np.diff(walk[:, [0, 2]], axis=0), axis=1).max() + 1e-9


def test_corrections_near_half_a_turn_do_not_spin_through_zero():
    """A key facing backwards, then one facing backwards a little the other way round: the
    pelvis's correction goes the short way between them, not a whole turn."""
    T = 120
    generated = np.zeros((T, 72))
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (T, 1))
    c = Constraints.empty(T, FPS)
    c.set_pose(30, np.r_[[0.0, np.pi - 0.1, 0.0], np.zeros(69)], joints=["pelvis"])
    c.set_pose(90, np.r_[[0.0, -(np.pi - 0.1), 0.0], np.zeros(69)], joints=["pelvis"])
    poses, _ = apply_constraints(generated, trans, c, FPS)
    turned = angular_speed(poses, FPS)[30:90, 0].sum() / FPS
    assert turned < 0.5                           # 0.2 rad the short way, not 6 the long way


def _heading(poses: np.ndarray) -> np.ndarray:
    m = R.axis_angle_to_matrix(torch.as_tensor(poses[:, :3])).numpy()
    return np.unwrap(np.arctan2(m[:, 0, 2], m[:, 2, 2]))


@pytest.mark.parametrize("own_turn", [0.0, -2 * np.pi])
def test_a_keyed_spin_turns_the_way_the_keys_do(own_turn):
    """Pelvis keys a third of a turn apart, on a dance that stands still or turns a whole turn the
    other way: each key was met and the spin lost (the corrections go the short way from the
    dance's facing at each key); the dance now turns with the keys, the short way from each keyed
    heading to the next, and still meets every key exactly."""
    T, keyed = 120, [20, 35, 50, 65, 80]
    generated = np.zeros((T, 72))
    generated[:, 1] = np.linspace(0.0, own_turn, T)            # the dance's own heading (about Y)
    generated[:, :3] = R.quat_to_axis_angle(R.axis_angle_to_quat(torch.as_tensor(generated[:, :3]))).numpy()
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (T, 1))
    c = Constraints.empty(T, FPS)
    for i, f in enumerate(keyed):
        c.set_pose(f, np.r_[[0.0, R.wrap_angle(i * 2 * np.pi / 3), 0.0], np.zeros(69)], joints=["pelvis"])
    poses, _ = apply_constraints(generated, trans, c, FPS)
    heading = _heading(poses)
    assert np.diff(heading[keyed]) == pytest.approx(np.full(4, 2 * np.pi / 3), abs=1e-6)
    assert rotation_error(poses[keyed, :3], c.poses[keyed, :3]) < 1e-6
    # Turns the keys do not ask for are left as they were: a dance that turns with its keys.
    c = Constraints.empty(T, FPS)
    for f in keyed:
        c.set_pose(f, generated[f], joints=["pelvis"])
    poses, _ = apply_constraints(generated, trans, c, FPS)
    assert np.abs(_heading(poses) - _heading(generated)).max() < 1e-6


def test_a_spin_keyed_in_whole_turns_spins_and_is_no_hold():
    """The same facing keyed three times, with a whole turn asked between each (pelvis_turns, as
    an Euler Z of 0, 360 and 720 degrees gives): the dance spins twice, each key met exactly, and
    the same pose on two keys is not a hold. Through resampling to the model's rate (a 60 fps
    dance) the spins stay between the same keys."""
    from engine.finishing.editing import keys_at_model_rate
    T, keyed = 120, [20, 50, 80]
    generated, trans = np.zeros((T, 72)), np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (T, 1))
    c = Constraints.empty(T, FPS)
    for f in keyed:
        c.set_pose(f, np.zeros(72), joints=["pelvis"])
    c.pelvis_turns[keyed] = [0, 1, -1]                     # a turn counter-clockwise, then one back
    poses, _ = apply_constraints(generated, trans, c, FPS)
    heading = _heading(poses)
    assert np.diff(heading[keyed]) == pytest.approx([2 * np.pi, -2 * np.pi], abs=1e-6)
    assert rotation_error(poses[keyed, :3], c.poses[keyed, :3]) < 1e-6
    assert np.abs(np.diff(heading)).max() * FPS < 12.0     # a spin at a dancer's pace, not a snap
    c.pelvis_turns[:] = 0                                  # the same keys, no turns: a hold
    poses, _ = apply_constraints(generated, trans, c, FPS)
    assert np.abs(poses[20:81, :3]).max() < 1e-9
    fine = Constraints.empty(2 * T, 2 * FPS)
    for f in keyed:
        fine.set_pose(2 * f + 1, np.zeros(72), joints=["pelvis"])
    fine.pelvis_turns[[101, 161]] = [1, 1]
    model = keys_at_model_rate(fine, 2 * FPS, T, FPS)
    pelvis_keys = np.flatnonzero(model.joint_mask[:, 0])
    assert len(pelvis_keys) == 3 and model.pelvis_turns[pelvis_keys].tolist() == [0, 1, 1]


@pytest.mark.parametrize("turns, message", [
    (np.r_[0.5, np.zeros(4)], "whole numbers of turns"),
    (np.r_[0.0, 1.0, np.zeros(3)], "without a pelvis key"),
    (np.zeros(4), "shape"),
])
def test_keyed_turns_are_checked_and_travel_in_the_constraints_file(tmp_path, turns, message):
    c = Constraints.empty(5, FPS).set_pose(0, np.zeros(72)).set_pose(3, np.zeros(72))
    c.pelvis_turns[3] = 2
    path = tmp_path / "keys.npz"
    c.save_npz(path)
    assert Constraints.load_npz(path).pelvis_turns.tolist() == [0, 0, 0, 2, 0]
    with pytest.raises(EngineError, match=message):
        Constraints(c.poses, c.trans, c.joint_mask, c.trans_mask, FPS, turns)
    unset = Constraints(c.poses, c.trans, c.joint_mask, c.trans_mask, FPS, [0, np.nan, np.nan, 2, np.nan])
    assert unset.pelvis_turns.tolist() == [0, 0, 0, 2, 0]    # NaN off the keys: unset, as in poses
    Constraints.empty(5, FPS).save_npz(path)               # files without spins stay as they were
    assert "pelvis_turns" not in np.load(path).files


def test_inbetweening_evaluation_runs_on_a_clip(click_song, tiny_weights):
    """engine.evaluation.evaluate_inbetween's two measurements, end to end on a made-up 'real' clip."""
    from engine.evaluation import evaluate_inbetween as E
    poses, trans = _dance(150, amplitude=0.3)
    clip = E.RealClip("made-up", poses, trans, str(click_song), 0.5)
    args = E.parse_args(["--steps", "1", "--weights", str(tiny_weights)])
    keys = E.score_keys([clip], args)
    assert keys["key error rad (max)"] < 1e-4 and keys["fastest joint rad/s"] < 40
    assert 0 < keys["flow ratio (mean)"] and 0 < keys["whip ratio (max clip)"]
    assert keys["dances scored"] == len(args.seeds)                   # one clip, each seed
    assert (keys["dances whipping past 1.3"] > 0) == (keys["whip ratio (max clip)"] > 1.3)
    assert keys["dances whipping past 1.3"] <= keys["dances scored"]
    assert keys["real clips scored"] == 1
    real_whip = keys["whip ratio of the real dancer (max clip)"]
    assert keys["real clips whipping past 1.3"] == float(real_whip > 1.3)
    assert "root error m (max)" not in keys
    rooted = E.score_keys([clip], E.parse_args(["--steps", "1", "--weights", str(tiny_weights), "--seeds", "0",
                                                "--root-keys"]))
    assert rooted["root error m (max)"] < 1e-3 and rooted["key error rad (max)"] < 1e-4
    lafan = E.score_lafan([clip], args)
    assert set(lafan) == set(E.GAPS)
    assert all(row["model"] > 0 and row["slerp"] > 0 for row in lafan.values())
    # The split: the pelvis's place and the pose about it each at most the whole error's bound
    # (both are means of distances no larger than place + pose).
    for row in lafan.values():
        for who in ("model", "slerp"):
            assert row[f"{who} place"] >= 0 and row[f"{who} pose"] > 0
            assert row[who] <= row[f"{who} place"] + row[f"{who} pose"] + 1e-9


def test_a_lowered_root_key_is_a_crouch_on_the_same_feet():
    # One root key 10 cm below the dance: a dip there, on the same feet; not a dance sunk into
    # the floor from start to end.
    from engine.finishing.feet import ankle_positions
    T, k = 240, 120
    poses, trans = _dance(T, amplitude=0.2)
    c = Constraints.empty(T, FPS)
    c.trans[k], c.trans_mask[k] = trans[k] + [0.0, -0.10, 0.0], True
    out, out_trans = apply_constraints(poses, trans, c, FPS)
    assert np.abs(out_trans[k] - c.trans[k]).max() < 1e-9
    far = np.r_[0:k - 2 * int(FPS), k + 2 * int(FPS):T]
    assert np.abs(out_trans[far] - trans[far]).max() < 1e-9 and np.abs(out[far] - poses[far]).max() < 1e-9
    assert np.abs(ankle_positions(out, out_trans) - ankle_positions(poses, trans)).max() < 2e-3
    knee = 3 * JOINT_INDEX["left_knee"]
    assert out[k, knee] > poses[k, knee] + 0.2                     # the knees bend for it


def test_root_keys_leave_the_stage_bound_on():
    # A start pose that includes the root must not switch off "dance in place".
    from engine.api import finish_motion
    T = int(20 * FPS)
    t = np.arange(T) / FPS
    poses = np.zeros((T, 72))
    walk = np.stack([0.3 * t, np.full(T, REST_PELVIS_HEIGHT), 0.1 * t], 1)          # drifting away
    c = Constraints.empty(T, FPS)
    c.trans[0], c.trans_mask[0] = walk[0], True
    m = finish_motion(poses, walk, T / FPS, T, FPS, np.zeros(0), c, stage_radius=0.0, finishing=("floor",),
                      contacts30=np.zeros((T, 4)))
    assert np.abs(m.trans[0] - walk[0]).max() < 1e-9
    assert np.linalg.norm(m.trans[:, [0, 2]] - walk[0, [0, 2]], axis=1).max() <= IN_PLACE_SWAY + 1e-6


def test_a_full_pose_key_lowered_moves_the_whole_body_with_the_root():
    # Legs posed by the animator at the root key (a full-pose key): the legs are theirs, so near
    # the key the whole body moves with the root rather than crouching on the old feet.
    from engine.finishing.feet import ankle_positions
    T, k = 240, 120
    poses, trans = _dance(T, amplitude=0.2)
    c = Constraints.empty(T, FPS)
    c.set_pose(k, poses[k], root=trans[k] + [0.0, -0.10, 0.0])
    out, out_trans = apply_constraints(poses, trans, c, FPS)
    near = np.arange(k - 5, k + 6)
    drop = ankle_positions(out, out_trans)[near, :, 1] - ankle_positions(poses, trans)[near, :, 1]
    assert np.abs(drop - (out_trans[near, 1] - trans[near, 1])[:, None]).max() < 2e-3
    assert drop.max() < -0.09


def test_after_a_seed_standing_higher_the_dance_settles_on_its_own_feet():
    # QA: an idle clip kept as seed motion stood 7 cm higher than the dance drawn after it; the
    # root's rise faded out over a second after the clip with the whole body, so both feet
    # floated 6-7 cm off the floor, the legs tucked under level hips. The legs now keep the
    # drawn feet there, settling the hips onto them.
    from engine.finishing.feet import ankle_positions
    T, seed = 240, 40
    poses, trans = _dance(T, amplitude=0.2)
    for side in ("left", "right"):                     # dancing on bent knees, the way dancers do
        poses[:, 3 * JOINT_INDEX[f"{side}_hip"]] -= 0.45
        poses[:, 3 * JOINT_INDEX[f"{side}_knee"]] += 0.9
    c = Constraints.empty(T, FPS).seed_motion(poses[:seed], trans[:seed] + [0.0, 0.07, 0.0])
    out, out_trans = apply_constraints(poses, trans, c, FPS)
    assert np.abs(out_trans[:seed] - c.trans[:seed]).max() < 1e-9          # the seed as given
    after = np.arange(seed + int(0.3 * FPS), seed + int(1.0 * FPS))
    lift = ankle_positions(out, out_trans)[after, :, 1] - ankle_positions(poses, trans)[after, :, 1]
    print(f"ankles above the drawn ones after the seed: up to {lift.max() * 100:.1f} cm; hips {np.round((out_trans - trans)[after[::5], 1] * 100, 1)} cm")
    assert (out_trans[after, 1] - trans[after, 1]).max() > 0.02              # the hips settle over the fade
    assert np.abs(lift).max() < 0.01                                         # on the drawn feet


def test_a_root_raised_out_of_the_legs_reach_lifts_the_feet_no_more_than_itself():
    # Straightened as far as they go, the legs keep the feet as low as they can: never higher
    # than moving with the root would put them (a pass of the IK out of reach can overshoot).
    from engine.finishing.feet import ankle_positions
    T = 240
    poses, trans = _dance(T, amplitude=0.3, seed=3)
    for k, up in ((60, 0.03), (120, 0.08), (180, 0.15)):
        c = Constraints.empty(T, FPS)
        c.trans[k], c.trans_mask[k] = trans[k] + [0.0, up, 0.0], True
        out, out_trans = apply_constraints(poses, trans, c, FPS)
        lift = ankle_positions(out, out_trans)[:, :, 1] - ankle_positions(poses, trans)[:, :, 1]
        rise = (out_trans[:, 1] - trans[:, 1])[:, None]
        assert (lift <= np.maximum(rise, 0.0) + 1e-6).all()
        assert (lift[rise[:, 0] >= 0] >= -1e-6).all()
        assert (lift >= -5e-3).all()          # a jump's crouch first (rise < 0): the knees bend, within the IK's reach
        assert lift[k].min() < up - 1e-3                 # a leg still reaches down some way


def test_the_speed_guard_eases_a_limb_as_one():
    """A knee flipping over its bound in one frame while the hip turns against it to keep the ankle
    in place (as the leg IK does): rebuilt alone, the knee threw the foot 34 cm in a frame (QA
    pass). The guard eases the whole leg across the stretch: no foot moves faster than before."""
    T, fps = 40, FPS
    poses = np.zeros((T, 72))
    hip, knee = JOINT_INDEX["left_hip"], JOINT_INDEX["left_knee"]
    flip = np.where(np.arange(T) < 20, 1.0, -1.0)
    poses[:, 3 * hip] = -0.35 * flip                      # the thigh and the shin mirror each other
    poses[:, 3 * knee] = 0.7 * flip
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (T, 1))
    ankle = JOINT_INDEX["left_ankle"]
    before = joint_positions(poses, trans)[:, ankle]
    out, rebuilt = limit_joint_speeds(poses, fps)
    assert rebuilt >= 1
    speed = angular_speed(out, fps)
    assert (speed <= np.asarray(MAX_JOINT_SPEED) + 1e-6).all()
    after = joint_positions(out, trans)[:, ankle]
    step = lambda p: np.linalg.norm(np.diff(p, axis=0), axis=1).max()
    assert step(after) <= step(before) + 0.01, (step(before), step(after))


def test_keyed_runs_are_resampled_to_the_model_rate_and_single_keys_left_out():
    from engine.finishing.editing import keyed_runs_at
    fps, n = 24.0, 48
    c = Constraints.empty(n, fps)
    c.trans_mask[:24] = True
    c.trans[:, 0] = np.arange(n) / fps                     # the root walks 1 m/s
    c.joint_mask[30, 5] = True                             # a single key: not a run
    c.joint_mask[:24, 3] = True
    c.poses[:, 9] = np.arange(n) / fps                     # joint 3 turns 1 rad/s about x
    runs = keyed_runs_at(c, fps, 60, 30.0)
    keyed = np.flatnonzero(runs.trans_mask)
    assert keyed[0] == 0 and keyed[-1] == 28               # model frames up to the last keyed time (23/24 s)
    assert np.allclose(runs.trans[keyed, 0], keyed / 30.0)
    assert np.allclose(runs.poses[keyed, 9], keyed / 30.0)
    assert (runs.joint_mask[:, 3] == runs.trans_mask).all() and not runs.joint_mask[:, 5].any()
    # What unconstrained frames hold does not matter (a constraints file may put NaN there).
    c.poses[24:, :9] = np.nan                              # joints 0-2, unkeyed there
    c.trans[24:] = np.nan
    again = keyed_runs_at(c, fps, 60, 30.0)
    assert np.isfinite(again.poses).all() and np.isfinite(again.trans).all()
    assert np.allclose(again.trans[keyed, 0], keyed / 30.0)


def test_root_keys_no_dancer_could_reach_get_a_note(click_song, tiny_weights):
    # QA: a root key 1000 m away (centimetres typed as metres) was met by a 530 m/s rush, unsaid.
    import warnings
    from engine.api import generate
    from engine.errors import EngineNote
    from engine.finishing.editing import RUSHED_ROOT_SPEED, rushed_root_keys
    keys = Constraints.empty(120, 30.0)

    def root_key(frame, x, z):
        keys.trans[frame], keys.trans_mask[frame] = [x, REST_PELVIS_HEIGHT, z], True
    root_key(30, 0.0, 0.0)
    root_key(60, 1.0, 0.5)                                   # 1.1 m in a second: a walk
    assert rushed_root_keys(keys, 30.0) is None
    root_key(90, 100.0, 0.5)
    first, second, speed = rushed_root_keys(keys, 30.0)
    assert (first, second) == (2.0, 3.0) and speed == pytest.approx(99.0) and speed > RUSHED_ROOT_SPEED
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate(click_song, weights=tiny_weights, steps=2, constraints=keys)
    notes = [str(w.message) for w in caught if issubclass(w.category, EngineNote)]
    assert any("2.00 s and 3.00 s are 99.0 m/s apart" in n for n in notes), notes


def test_lone_keys_are_met_at_the_model_rate_on_their_nearest_frame():
    from engine.finishing.editing import keys_at_model_rate
    fps, n = 24.0, 48
    c = Constraints.empty(n, fps)
    c.joint_mask[:24, 3] = True                            # a run: resampled as keyed_runs_at does
    c.poses[:, 9] = np.arange(n) / fps
    c.set_pose(30, np.full(72, 0.2))                       # a lone full-pose key at 1.25 s
    c.trans_mask[30], c.trans[30] = True, (0.5, 0.9, -0.2)
    early = keys_at_model_rate(c, fps, 60, 30.0)
    m = int(round(30 * 30.0 / fps))                        # model frame 38 (1.2667 s), the nearest
    assert early.joint_mask[m].all() and early.trans_mask[m] and np.allclose(early.poses[m], 0.2)
    assert np.allclose(early.trans[m], (0.5, 0.9, -0.2))
    assert early.joint_mask.sum(axis=1)[[m - 1, m + 1]].tolist() == [0, 0]
    run = np.flatnonzero(early.joint_mask[:m, 3])
    assert run[-1] == 28 and np.allclose(early.poses[run, 9], run / 30.0)


def test_a_held_stance_holds_the_root_too():
    # Review: the same full pose keyed twice froze the body while the root travelled 1.6 m, a
    # statue sliding across the floor; with the root keyed the same at both, it wandered 14 cm.
    T = 120
    generated, trans = _dance(T)
    trans[:, 0] += np.arange(T) / FPS                      # the drawn dance travels 1 m/s
    pose = _dance(T, seed=3)[0][0]
    c = Constraints.empty(T, FPS).set_pose(30, pose).set_pose(60, pose)
    poses, moved = apply_constraints(generated, trans, c, FPS)
    assert np.abs(moved[30:61] - moved[30]).max() < 1e-9   # standing still through the hold
    assert np.abs(np.diff(moved[61:, 0])).max() > 0.02     # and travelling on after it
    c.trans_mask[[30, 60]], c.trans[[30, 60]] = True, (0.3, 0.85, 0.1)
    _, moved = apply_constraints(generated, trans, c, FPS)
    assert np.abs(moved[30:61] - [0.3, 0.85, 0.1]).max() < 1e-9
    # The same pose keyed at two places is a move, no hold (QA27: held, the statue slid 1.09 m).
    c.trans[60] = (1.3, 0.85, 0.1)
    poses, moved = apply_constraints(generated, trans, c, FPS)
    assert angular_speed(poses[33:58], FPS).max() > 1.0 and np.abs(moved[60] - [1.3, 0.85, 0.1]).max() < 1e-9
    # Arms alone held keep the root's own path: only a held stance (pelvis and legs) stands still.
    c = Constraints.empty(T, FPS).set_pose(30, pose, joints=["left_arm"]).set_pose(60, pose, joints=["left_arm"])
    _, moved = apply_constraints(generated, trans, c, FPS)
    assert np.allclose(moved, trans)


def test_planted_feet_stay_planted_and_on_the_floor_around_keys():
    # Review: around three full-pose keys (another dance's poses) 85-95% of the foot frames on the
    # floor slid faster than 0.25 m/s, up to 2.8 m/s, and sank 4.6-4.9 cm: the corrections that
    # meet a key were made after the feet were planted. Shipped student, 10 s click song.
    import soundfile as sf
    from engine.api import generate
    from engine.evaluation.bench import SR, make_click_track
    from engine.finishing.feet import FOOT_JOINTS
    wave = make_click_track(10.0, 120.0, SR)
    source = generate(wave, sample_rate=SR, seed=7, quality="fast")
    keys = [60, 150, 240]
    c = Constraints.empty(source.num_frames, source.fps)
    for k in keys:
        c.set_pose(k, source.poses[k])
    for with_root in (False, True):
        if with_root:
            c.trans_mask[keys], c.trans[keys] = True, source.trans[keys]
        m = generate(wave, sample_rate=SR, seed=0, quality="fast", constraints=c)
        feet = joint_positions(m.poses, m.trans)[:, FOOT_JOINTS]
        near = np.zeros(m.num_frames - 1, bool)
        for k in keys:
            near[k - 15:k + 15] = True
        on_floor = (feet[1:, :, 1] < 0.05) & (feet[:-1, :, 1] < 0.05) & near[:, None]
        speed = np.linalg.norm(np.diff(feet[:, :, [0, 2]], axis=0), axis=-1) * m.fps
        sliding = (on_floor & (speed > 0.25)).sum() / max(1, on_floor.sum())
        lowest = feet[np.flatnonzero(near)][:, :, 1].min()
        print(f"root keyed {with_root}: {on_floor.sum()} foot frames on the floor near keys, {sliding:.0%} sliding, "
              f"lowest {100 * lowest:.1f} cm")
        assert sliding < 0.2 and lowest > -0.01
        assert rotation_error(m.poses[keys].reshape(-1, 3), c.poses[keys].reshape(-1, 3)) < 1e-6


def test_root_keys_at_heights_no_dancer_stands_at_get_a_note(click_song, tiny_weights):
    # Review: from the command line a root key in centimetres (93) flew the dancer 92 m up and one
    # at y = -0.5 sank it 60 cm into the floor, unsaid (only the add-on noted raised hips).
    import warnings
    from engine.api import generate
    from engine.errors import EngineNote, RootHeightNote
    for height, said, kind in ((REST_PELVIS_HEIGHT, None, None),
                               (93.0, "92.04 m above a standing dancer's hips", RootHeightNote),
                               (-0.5, "0.50 m under the floor", RootHeightNote),
                               (0.05, "only 0.05 m above the floor", RootHeightNote)):
        keys = Constraints.empty(60, 30.0)
        keys.trans[30], keys.trans_mask[30] = [0.0, height, 0.0], True
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generate(click_song, weights=tiny_weights, steps=2, constraints=keys, duration=2.0)
        notes = [w for w in caught if issubclass(w.category, EngineNote) and "root keys at 1.00 s" in str(w.message)]
        assert len(notes) == (said is not None), [str(w.message) for w in caught]
        assert said is None or (said in str(notes[0].message) and notes[0].category is kind)


def test_a_jump_keyed_on_the_root_takes_off_and_lands_as_a_jump():
    """QA: hips keyed 0.5 m above a standing dancer's for a second (three keys, legs tucked). The
    floor step put the tucked body back on the floor between the keys, and the keys' offsets,
    put back on at the end, spread over a second either side: the hips rose 16 cm over the keyed
    height beside the keys and the feet were off the floor for 2.5 s. Now the hips meet the keys
    from below, and the feet leave the floor only for the keys and a jump's rise either side."""
    from engine.api import finish_motion
    from engine.body.curves import GRAVITY
    from engine.body.skeleton import FOOT_JOINTS
    T, up = 240, 0.5
    poses, trans = _dance(T, amplitude=0.1, seed=2)
    c = Constraints.empty(T, FPS)
    keys = (60, 75, 90)
    for f in keys:
        tucked = poses[f].copy()
        for side in ("left", "right"):
            tucked[3 * JOINT_INDEX[f"{side}_hip"]] = np.radians(-80)
            tucked[3 * JOINT_INDEX[f"{side}_knee"]] = np.radians(110)
        c.set_pose(f, tucked, joints=["legs"], root=np.array([trans[f, 0], REST_PELVIS_HEIGHT + up, trans[f, 2]]))
    m = finish_motion(poses, trans, T / FPS, T, FPS, np.zeros(0), c)
    assert np.abs(m.trans[list(keys)] - c.trans[list(keys)]).max() < 1e-9
    hips = m.trans[:, 1]
    print(f"hips highest beside the keys {hips[30:121].max():.3f} (keyed {REST_PELVIS_HEIGHT + up:.3f})")
    assert hips[30:121].max() < REST_PELVIS_HEIGHT + up + 0.01
    feet = [JOINT_INDEX[name] for name in FOOT_JOINTS]
    lowest = joint_positions(m.poses, m.trans)[:, feet, 1].min(axis=1)
    airborne = np.flatnonzero(lowest > 0.1)
    fall = np.sqrt(6 * up / GRAVITY) * FPS                 # eased to decelerate at g
    print(f"both feet off the floor frames {airborne.min()}-{airborne.max()}; the jump rises over {fall:.1f} frames")
    assert len(airborne) <= keys[-1] - keys[0] + 2 * fall + 4
    assert airborne.min() >= keys[0] - fall - 2 and airborne.max() <= keys[-1] + fall + 2


def test_only_root_keys_whose_feet_leave_the_floor_are_kept_off_it():
    """The floor step leaves alone the lift of a root key's jump (keyed_jump_lift), and only
    that: root keys standing on the floor (full poses copied from another take, the hips'
    place with them) leave it to put a drawn float or folded legs back on the floor between them,
    as before (QA: folded legs hung both feet up to 49 cm for 2.3 s between such keys)."""
    from engine.body.skeleton import FOOT_JOINTS
    from engine.finishing.editing import keyed_jump_lift
    T = 240
    poses, trans = _dance(T, amplitude=0.1, seed=4)
    feet = [JOINT_INDEX[name] for name in FOOT_JOINTS]
    trans[:, 1] -= joint_positions(poses, trans)[:, feet, 1].min(axis=1)        # feet on the floor
    standing = Constraints.empty(T, FPS)
    for f in (30, 90, 150):
        standing.set_pose(f, poses[f], root=trans[f])
    assert keyed_jump_lift(standing, (poses, trans), (poses, trans), FPS).max() < 1e-6
    floating = trans + [0.0, 0.06, 0.0]              # drawn floating: the floor step's to put down
    assert keyed_jump_lift(standing, (poses, floating), (poses, floating), FPS).max() < 1e-6
    jumping = Constraints.empty(T, FPS)
    lifted = trans.copy()
    lifted[100:111, 1] += 0.4
    for f in (100, 110):
        jumping.set_pose(f, poses[f], root=lifted[f])
    lift = keyed_jump_lift(jumping, (poses, trans), (poses, lifted), FPS)
    assert np.abs(lift[100:111] - 0.4).max() < 1e-6
    assert np.abs(np.delete(lift, np.arange(100, 111))).max() < 1e-6


def test_legs_hanging_in_a_keyed_jump_keep_their_drawn_pose():
    """QA: hips keyed 0.5 m up on three frames, the legs left to the dance. The keys put on again
    after the feet step (apply_constraints on a grounded dance) held each hanging ankle where it
    was while they raised the body the last few centimetres, and the IK folded a knee to 64
    degrees and its ankle to 120 in mid-air. A foot in the air now rises with the body; a foot on
    the floor still stays there, the leg bending under a lowered root."""
    from engine.finishing.feet import ankle_positions
    T, k = 120, 60
    poses, trans = _dance(T, amplitude=0.05, seed=1)
    air = trans + [0.0, 0.4, 0.0]                              # both feet 40 cm up
    c = Constraints.empty(T, FPS)
    c.trans[k], c.trans_mask[k] = air[k] + [0.0, 0.05, 0.0], True
    out, out_trans = apply_constraints(poses, air, c, FPS, grounded=True)
    legs = [3 * JOINT_INDEX[f"{side}_{part}"] + i for side in ("left", "right") for part in ("hip", "knee", "ankle")
            for i in range(3)]
    print(f"legs turned by at most {np.abs(out[:, legs] - poses[:, legs]).max():.2e} rad")
    assert np.abs(out[:, legs] - poses[:, legs]).max() < 1e-9
    lift = ankle_positions(out, out_trans)[:, :, 1] - ankle_positions(poses, air)[:, :, 1]
    assert np.allclose(lift, (out_trans[:, 1] - air[:, 1])[:, None])
    feet = [JOINT_INDEX[name] for name in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    standing = trans - [0.0, joint_positions(poses, trans)[:, feet, 1].min(), 0.0]    # on the floor
    c.trans[k] = standing[k] - [0.0, 0.1, 0.0]
    out, out_trans = apply_constraints(poses, standing, c, FPS, grounded=True)
    assert np.abs(ankle_positions(out, out_trans) - ankle_positions(poses, standing)).max() < 2e-3


def test_legs_keyed_tucked_for_a_jump_fold_in_the_air_from_a_crouch():
    """Legs keyed tucked where the hips are keyed 0.5 m up fold as the body leaves the floor, over
    the jump's rise, not over the second before the key (they folded on the floor, the body
    crouched on them, and the feet left the floor 0.7 s before the hips); and a lone such key
    crouches to push off and to land like any jump (moved down with the body, posed legs put
    the feet into the floor, and the floor step took the crouch back out)."""
    from engine.api import finish_motion
    from engine.body.curves import jump_ease_frames
    from engine.finishing.editing import JUMP_CROUCH
    T, key = 240, 120
    poses, trans = _dance(T, amplitude=0.05, seed=6)
    c = Constraints.empty(T, FPS)
    tucked = poses[key].copy()
    for side in ("left", "right"):
        tucked[3 * JOINT_INDEX[f"{side}_hip"]] = np.radians(-80)
        tucked[3 * JOINT_INDEX[f"{side}_knee"]] = np.radians(110)
    c.set_pose(key, tucked, joints=["legs"], root=np.array([trans[key, 0], REST_PELVIS_HEIGHT + 0.5, trans[key, 2]]))
    m = finish_motion(poses, trans, T / FPS, T, FPS, np.zeros(0), c)
    print(f"hips lowest before the takeoff {m.trans[key - 40:key, 1].min():.3f}, after landing "
          f"{m.trans[key:key + 40, 1].min():.3f} (drawn {trans[key, 1]:.3f})")
    assert m.trans[key - 40:key, 1].min() < trans[key, 1] - 0.08          # crouches to push off
    assert m.trans[key:key + 40, 1].min() < trans[key, 1] - 0.08          # and to land
    # The legs fold over the jump's rise: on the frames before it, nothing of the key's tuck.
    rise = int(np.ceil(jump_ease_frames(np.array([0.5]), FPS, JUMP_CROUCH)[0]))
    free = Constraints.empty(T, FPS)
    free.trans[key], free.trans_mask[key] = c.trans[key], True
    untucked, _ = apply_constraints(poses, trans, free, FPS)
    out, _ = apply_constraints(poses, trans, c, FPS)
    thighs = [3 * JOINT_INDEX[f"{side}_hip"] for side in ("left", "right")]
    print(f"thighs turned by the tuck {rise} frames before the key: {np.abs(out - untucked)[key - rise, thighs].max():.2e} rad")
    assert np.abs(out - untucked)[:key - rise, thighs].max() < 0.02


def test_a_start_pose_risen_on_the_toes_leaves_its_legs_at_the_dances_pace():
    """A full-pose key on the first frame with the hips 7 cm over a standing dancer's (a rise on
    the toes: 2 mm of it counts as a jump) and legs posed otherwise than the dance drew them.
    The legs folded over that tiny jump's rise (1.2 frames) and the foot leapt 37 cm in the
    frame after the start pose (a validation song, seed 41: 11.7 m/s); a jump too small to lift
    the feet now lets the legs' correction fade as any key's does."""
    T = 90
    poses, trans = _dance(T, amplitude=0.05, seed=3)
    trans[:, 1] = REST_PELVIS_HEIGHT + 0.05                 # the dance drawn a little up
    start = poses[0].copy()
    for side, sign in (("left", 1.0), ("right", -1.0)):      # the key's legs: one forward, one back
        start[3 * JOINT_INDEX[f"{side}_hip"]] += sign * 0.8
        start[3 * JOINT_INDEX[f"{side}_knee"]] += 0.6
    c = Constraints.empty(T, FPS)
    c.set_pose(0, start, root=np.array([trans[0, 0], REST_PELVIS_HEIGHT + 0.07, trans[0, 2]]))
    out, out_trans = apply_constraints(poses, trans, c, FPS)
    assert np.abs(out[0] - start).max() < 1e-9
    step = np.linalg.norm(np.diff(joint_positions(out, out_trans), axis=0), axis=-1) * FPS     # m/s
    drawn = np.linalg.norm(np.diff(joint_positions(poses, trans), axis=0), axis=-1) * FPS
    print(f"fastest joint out of the key {step[0].max():.2f} m/s, the dance's own {drawn.max():.2f} m/s")
    # A 0.8 rad correction faded over a second moves a foot well under 2 m/s more than the dance.
    assert step[:3].max() < drawn.max() + 2.0


def test_still_before_eases_out_of_the_first_frames_pose_and_leaves_the_next_key_and_the_rest_as_drawn():
    """A start pose held before the dance (engine.finishing.setoff, after the keys are put on):
    every joint and the root ease out of frame 0's pose, back on the dance with keys alone by
    SETOFF_SECONDS; a joint keyed again within that time meets its key exactly, passing it at the
    same rate as without."""
    from engine.finishing.setoff import SETOFF_SECONDS, set_off_from_stillness
    T = 120
    poses, trans = _dance(T, amplitude=0.4, seed=8)
    trans[:, 0] += 0.02 * np.arange(T)                      # travelling 0.6 m/s
    c = Constraints.empty(T, FPS).set_pose(0, poses[3], joints=["torso", "legs", "right_arm"], root=trans[3])
    elbow = JOINT_INDEX["left_elbow"]
    c.set_pose(6, poses[20], joints=["left_elbow"])          # one arm keyed again soon after
    plain = apply_constraints(poses, trans, c, FPS)
    out, out_trans = set_off_from_stillness(*plain, FPS, c.joint_mask, c.trans_mask)
    on_key = np.repeat(c.joint_mask[0], 3)
    assert np.abs(out[0] - plain[0][0]).max() < 1e-12 and np.abs(out[0, on_key] - poses[3, on_key]).max() < 1e-12
    assert np.abs(out_trans[0] - trans[3]).max() < 1e-12
    assert rotation_error(out[6, 3 * elbow:3 * elbow + 3], poses[20, 3 * elbow:3 * elbow + 3]) < 1e-9
    first = angular_speed(out[:2], FPS)[0]           # every joint, keyed on frame 0 or not
    drawn = angular_speed(plain[0][:2], FPS)[0]
    print(f"first frame's turn: {first.max():.3f} rad/s, {drawn.max():.3f} keyed alone; "
          f"root {np.linalg.norm(out_trans[1] - out_trans[0]) * FPS:.3f} m/s")
    assert first.max() < 0.1 * drawn.max() and np.linalg.norm(out_trans[1] - out_trans[0]) * FPS < 0.05
    # At the elbow's next key the correction is over, rate and all (zero slope there).
    rate = angular_speed(out[5:8], FPS)[:, elbow]
    rate_plain = angular_speed(plain[0][5:8], FPS)[:, elbow]
    assert abs(rate[1] - rate_plain[1]) < 1e-9 and abs(rate[0] - rate_plain[0]) < 0.5 * rate_plain[0]   # catching up
    after = int(np.ceil(SETOFF_SECONDS * FPS))
    assert np.abs(out[after:] - plain[0][after:]).max() < 1e-9 and np.abs(out_trans[after:] - plain[1][after:]).max() < 1e-9


def test_an_animation_arriving_moving_is_carried_on_out_of_the_first_frame_then_the_dance():
    """An intro moving into the dance's first frame (engine.finishing.setoff.Arrival): the dance
    leaves that frame at the speed the animation arrives with (not the drawn one, not still),
    is the drawn dance with keys alone by SETOFF_SECONDS, and meets a joint's next key exactly; a
    joint the animator holds (the same pose keyed next) stays held; standing still is the
    arrival at zero speed, as before."""
    from engine.finishing.setoff import SETOFF_SECONDS, Arrival, set_off_from_stillness
    T = 120
    poses, trans = _dance(T, amplitude=0.4, seed=9)
    c = Constraints.empty(T, FPS).set_pose(0, poses[0], root=trans[0])
    elbow, knee = JOINT_INDEX["left_elbow"], JOINT_INDEX["right_knee"]
    c.set_pose(9, poses[9], joints=["left_elbow"])           # keyed again soon after
    c.set_pose(6, poses[0], joints=["right_knee"])           # held: the same pose keyed again
    plain = apply_constraints(poses, trans, c, FPS)
    # The animation before: every joint turning 2 rad/s about its own axis, the root at 1 m/s sideways.
    rates = np.tile([0.0, 0.0, 2.0], (NUM_JOINTS, 1))
    q0 = R.axis_angle_to_quat(torch.from_numpy(plain[0][0]).reshape(NUM_JOINTS, 3))
    before = R.quat_to_axis_angle(R.quat_mul(R.axis_angle_to_quat(torch.from_numpy(-rates / FPS)), q0)).reshape(-1).numpy()
    arrival = Arrival.between((before, plain[1][0] - [1.0 / FPS, 0.0, 0.0]), (plain[0][0], plain[1][0]), FPS)
    assert np.abs(arrival.turn_rates - rates).max() < 1e-9 and np.abs(arrival.root_velocity - [1.0, 0, 0]).max() < 1e-9
    out, out_trans = set_off_from_stillness(*plain, FPS, c.joint_mask, c.trans_mask, arrival=arrival)
    assert np.abs(out[0] - plain[0][0]).max() < 1e-12 and np.abs(out_trans[0] - plain[1][0]).max() < 1e-12
    first = angular_speed(out[:2], FPS)[0]
    moving = np.ones(NUM_JOINTS, bool)
    moving[knee] = False
    print(f"first frame's turn {first[moving].min():.3f}-{first[moving].max():.3f} rad/s (arriving at 2), "
          f"the drawn {angular_speed(plain[0][:2], FPS)[0].max():.3f}; "
          f"root {np.linalg.norm(out_trans[1] - out_trans[0]) * FPS:.3f} m/s")
    assert np.abs(first[moving] - 2.0).max() < 0.15                    # leaves as it arrived
    assert np.linalg.norm(out_trans[1] - out_trans[0]) * FPS == pytest.approx(1.0, abs=0.1)
    assert first[knee] < 1e-6                                           # a hold stays a hold
    assert rotation_error(out[9, 3 * elbow:3 * elbow + 3], poses[9, 3 * elbow:3 * elbow + 3]) < 1e-9
    after = int(np.ceil(SETOFF_SECONDS * FPS))
    assert np.abs(out[after:] - plain[0][after:]).max() < 1e-9 and np.abs(out_trans[after:] - plain[1][after:]).max() < 1e-9
    still = set_off_from_stillness(*plain, FPS, c.joint_mask, c.trans_mask, arrival=Arrival.still())
    plain_still = set_off_from_stillness(*plain, FPS, c.joint_mask, c.trans_mask)
    assert np.array_equal(still[0], plain_still[0]) and np.array_equal(still[1], plain_still[1])
    # No jolt on the way: the turn rate changes between frames no more than setting off from
    # standing makes it (its catch-up), nor than an arrival within a frame of still would.
    jolt = {name: np.abs(np.diff(angular_speed(o[:after + 2], FPS), axis=0)).max()
            for name, o in (("moving", out), ("still", still[0]))}
    print(f"largest change of turn rate between frames: {jolt['moving']:.3f} rad/s arriving, {jolt['still']:.3f} still")
    assert jolt["moving"] < jolt["still"] + 0.1
    # A pose or a place changed within one frame (faster than any dancer) is a cut, not a motion.
    cut = Arrival.between((before * 0 + 2.0, plain[1][0] - [0.5, 0.0, 0.0]), (plain[0][0], plain[1][0]), FPS)
    assert cut.is_still


def test_an_animation_jumping_into_the_first_frame_arrives_still_where_it_jumps():
    """pose_beside_without_cuts: a joint (or the root) whose last step into the dance is far
    larger than the step before it (a stepped key) takes the first frame's value, so it arrives
    still; a steady motion and an ease out of a key keep theirs."""
    from engine.finishing.setoff import Arrival, pose_beside_without_cuts
    poses, trans = np.zeros((3, 72)), np.zeros((3, 3))
    steady, cut, eased = JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_elbow"], JOINT_INDEX["spine1"]
    poses[:, 3 * steady + 2] = [0.0, 0.05, 0.10]          # 1.5 rad/s both steps
    poses[:, 3 * cut] = [0.2, 0.2, 0.7]                   # still, then 15 rad/s: a stepped key
    poses[:, 3 * eased] = [0.3, 0.3, 0.31]                # still, then 0.3 rad/s: an ease out of a key
    trans[:, 0] = [0.0, 0.0, 0.15]                        # the root pops 15 cm
    before, place = pose_beside_without_cuts(poses, trans, FPS)
    arrival = Arrival.between((before, place), (poses[2], trans[2]), FPS)
    rates = np.linalg.norm(arrival.turn_rates, axis=1)
    print(f"steady {rates[steady]:.2f}, cut {rates[cut]:.2f}, eased {rates[eased]:.2f} rad/s; "
          f"root {np.linalg.norm(arrival.root_velocity):.2f} m/s")
    assert rates[steady] == pytest.approx(1.5, rel=1e-6) and rates[eased] == pytest.approx(0.3, rel=1e-6)
    assert rates[cut] == 0.0 and not arrival.root_velocity.any()
    trans[:, 0] = [0.0, 0.03, 0.06]                       # walking in at 0.9 m/s: carried on
    _, place = pose_beside_without_cuts(poses, trans, FPS)
    assert np.linalg.norm(Arrival.between((before, place), (poses[2], trans[2]), FPS).root_velocity) == pytest.approx(0.9)
