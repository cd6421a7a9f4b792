"""Planted feet on the character's own proportions (engine/outputs/character_feet.py, Retargeter.to_rig
with contacts or fps) and the floor of rigs without toe bones, numpy only.

The character here has thighs 20% longer and shins 30% shorter than SMPL's, so the plain
retarget (limbs along SMPL's limbs, root scaled by leg length) slides and sinks its planted
feet. The SMPL dance is a random motion whose feet engine.finishing.feet has planted (its contacts).
(Much wilder legs, SMPL's knee folded shut or flung straight, leave a planted spot out of the
character's reach, and the foot is then lifted or drawn in: see the module's notes.)
"""
from __future__ import annotations

import numpy as np
import pytest
from test_retarget import MIXAMO, Y_TO_Z, angle_between, dance, fk_world, humanoid, make_rig, smpl_heads

from engine.finishing.feet import clean_feet, true_runs
from engine.outputs.retarget import SMPL_ANKLE_HEIGHT, SMPL_TOE_HEIGHT, Retargeter, RetargetError, auto_map
from engine.body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, REST_PELVIS_HEIGHT, joint_positions

FPS = 30.0
LEG_JOINTS = {JOINT_INDEX[f"{s}_{j}"] for s in ("left", "right") for j in ("hip", "knee", "ankle")}


def odd_legged_rig(seed=3):
    """SMPL's skeleton with thighs 1.2 and shins 0.7 times as long, standing on z = 0."""
    heads = smpl_heads(1.0)
    out = heads.copy()
    for j in range(1, NUM_JOINTS):
        off = heads[j] - heads[PARENTS[j]]
        off = off * (1.2 if "knee" in JOINT_NAMES[j] else 0.7 if "ankle" in JOINT_NAMES[j] else 1.0)
        out[j] = out[PARENTS[j]] + off
    out -= [0.0, 0.0, out[:, 2].min()]
    return make_rig(humanoid(MIXAMO, out, np.random.default_rng(seed)))


def odd_legged_fbx_rig():
    """The same character as Mixamo's FBX imports: Y-up centimetres in armature space, the object
    turned back to Z up and scaled to metres, then turned 30 degrees about Z and moved."""
    odd = odd_legged_rig()
    heads = odd.world_heads()
    joints = np.array([heads[odd.names.index(MIXAMO[j])] if j in MIXAMO else np.zeros(3) for j in JOINT_NAMES])
    to_yup_cm = Y_TO_Z.T * 100.0
    bones = [(n, p, to_yup_cm @ h, to_yup_cm @ t, r, d)
             for n, p, h, t, r, d in humanoid(MIXAMO, joints, np.random.default_rng(9))]
    yaw = np.radians(30)
    obj = np.eye(4)
    obj[:3, :3] = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]) @ Y_TO_Z * 0.01
    obj[:3, 3] = (2.0, -1.0, 0.0)
    return make_rig(bones, obj)


@pytest.fixture(scope="module")
def planted_dance():
    # The motion played over 4 s: over 3 s the right foot's stances were 3-5 frames long (swings
    # last at least 0.25 s), all edges, where a character's own contacts may start or end a
    # frame off SMPL's.
    poses, trans = dance(T=120, seed=0)
    poses = 0.3 * poses                                              # turns of up to ~15 degrees
    for side in ("left", "right"):                                   # knees that bend as knees do
        k = 3 * JOINT_INDEX[f"{side}_knee"]
        poses[:, k], poses[:, k + 1:k + 3] = 2.0 * np.abs(poses[:, k]), 0.0
    poses, trans, contacts = clean_feet(poses, trans, FPS)
    assert contacts[:, :2].sum(axis=0).min() >= 15          # both feet stand for a while (0.5 s)
    return poses, trans, contacts


def leg_points(ret, out, rig, side):
    heads = fk_world(rig, out.rotations, out.root_bone, out.root_location)
    return [heads[:, ret.bone_of[JOINT_INDEX[f"{side}_{j}"]]] for j in ("hip", "knee", "ankle")]


def knee_side(hip, knee, ankle):
    """(T,3) unit direction of the knee away from the hip-ankle line."""
    axis = (ankle - hip) / np.linalg.norm(ankle - hip, axis=-1, keepdims=True)
    off = knee - hip
    off = off - np.sum(off * axis, axis=-1, keepdims=True) * axis
    return off / np.maximum(np.linalg.norm(off, axis=-1, keepdims=True), 1e-12)


def knee_angle(hip, knee, ankle):
    u, v = hip - knee, ankle - knee
    cos = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def ball_points(ret, out, rig, side):
    """(T,3) world heads of a leg's toe bone (the ball of the foot)."""
    return fk_world(rig, out.rotations, out.root_bone, out.root_location)[:, ret.bone_of[JOINT_INDEX[f"{side}_foot"]]]


def smpl_foot_turn(poses, side):
    """(T-1,) degrees SMPL's foot turns in the world from each frame to the next."""
    from engine.outputs.retarget import smpl_global_rotations
    G = smpl_global_rotations(poses)[:, JOINT_INDEX[f"{side}_ankle"]]
    cos = (np.trace(np.swapaxes(G[1:], -1, -2) @ G[:-1], axis1=1, axis2=2) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


@pytest.mark.parametrize("make", [odd_legged_rig, odd_legged_fbx_rig])
def test_planted_ankles_hold_still_at_floor_height(planted_dance, make):
    poses, trans, contacts = planted_dance
    rig = make()
    ret = Retargeter(rig, auto_map(rig))
    plain = ret.to_rig(poses, trans)
    planted = ret.to_rig(poses, trans, contacts=contacts, fps=FPS)
    assert np.isfinite(planted.rotations).all()
    smpl = joint_positions(poses, trans)
    for col, side in enumerate(("left", "right")):
        stance = contacts[:, col] > 0.5
        both = stance[1:] & stance[:-1]
        before = leg_points(ret, plain, rig, side)[2]
        after = leg_points(ret, planted, rig, side)[2]
        # The ball of the foot holds still; the ankle too, but where the dance turns the foot
        # on its stance, it swings about the ball (the random dance turns it 5 degrees in a frame).
        ball = ball_points(ret, planted, rig, side)
        assert np.linalg.norm(np.diff(ball[:, :2], axis=0), axis=-1)[both].max() < 1e-3   # < 1 mm per frame
        step = np.linalg.norm(np.diff(after[:, :2], axis=0), axis=-1)[both]
        foot = np.linalg.norm(ball - after, axis=-1).max()
        assert (step <= 1e-3 + foot * np.radians(smpl_foot_turn(poses, side)[both])).all()
        assert np.linalg.norm(np.diff(before[:, :2], axis=0), axis=-1)[both].max() > 3e-3   # it did slide
        # The foot stands on its own lowest point, heel (ankle) or ball (toe), at that point's rest
        # height, lifted as far as SMPL's foot is off its floor (scaled), never lower; higher only
        # where the hips lift it (the leg held no straighter than the dance holds it). The thighs
        # and shins differ from SMPL's, the feet do not: a heel rise scaled by the legs (the rule
        # before) lifted the ball off the floor.
        heads = fk_world(rig, planted.rotations, planted.root_bone, planted.root_location)
        rest = rig.world_heads()
        ankle, toe = (ret.bone_of[JOINT_INDEX[f"{side}_{j}"]] for j in ("ankle", "foot"))
        lowest = np.minimum(heads[:, ankle, 2] - rest[ankle, 2], heads[:, toe, 2] - rest[toe, 2])
        smpl_lift = np.maximum(0.0, np.minimum(smpl[:, JOINT_INDEX[f"{side}_ankle"], 1] - SMPL_ANKLE_HEIGHT,
                                               smpl[:, JOINT_INDEX[f"{side}_foot"], 1] - SMPL_TOE_HEIGHT))
        height = lowest[stance] - ret.scale * smpl_lift[stance]
        assert height.min() > -1e-6
        assert np.median(height) < 1e-3 and height.max() < 0.02


def test_the_ik_knee_bends_forward_like_smpls(planted_dance):
    poses, trans, contacts = planted_dance
    rig = odd_legged_rig()
    ret = Retargeter(rig, auto_map(rig))
    out = ret.to_rig(poses, trans, contacts=contacts, fps=FPS)
    smpl = joint_positions(poses, trans)
    for col, side in enumerate(("left", "right")):
        hip, knee, ankle = leg_points(ret, out, rig, side)
        s_hip, s_knee, s_ankle = (smpl[:, JOINT_INDEX[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))
        frames = (contacts[:, col] > 0.5) & (knee_angle(hip, knee, ankle) < 170.0)   # bent enough to tell
        assert frames.sum() >= 5
        want = knee_side(s_hip, s_knee, s_ankle) @ ret._D.T     # SMPL's knee direction, in the world
        cos = np.sum(knee_side(hip, knee, ankle) * want, axis=-1)[frames]
        assert cos.min() > 0.8
        # No pops: the knee turns no faster than in the plain retarget (give or take 3 degrees).
        plain = ret.to_rig(poses, trans)
        fastest = [np.abs(np.diff(knee_angle(*leg_points(ret, o, rig, side)))).max() for o in (out, plain)]
        assert fastest[0] < fastest[1] + 3.0


def test_knees_bend_in_smpls_leg_plane_when_the_hips_sink():
    """SMPL's legs at rest (nearly straight, bent ~10 degrees, more out than forward) and its hips
    5 cm lower than they reach: the character's planted feet stay on the floor, so its knees
    bend further, in the plane SMPL's legs show, forward (not backwards)."""
    rig = odd_legged_rig()
    ret = Retargeter(rig, auto_map(rig))
    T = 12
    trans = np.zeros((T, 3))
    trans[:, 0] = np.linspace(0.0, 0.04, T)                          # a little sway
    trans[:, 1] = REST_PELVIS_HEIGHT - 0.05
    out = ret.to_rig(np.zeros((T, 72)), trans, contacts=np.ones((T, 2), bool))
    forward = ret._D @ [0.0, 0.0, 1.0]                               # where SMPL (and so the character) faces
    smpl = joint_positions(np.zeros((T, 72)), trans)
    for side in ("left", "right"):
        hip, knee, ankle = leg_points(ret, out, rig, side)
        rest = rig.world_heads()[ret.bone_of[JOINT_INDEX[f"{side}_ankle"]], 2]
        np.testing.assert_allclose(ankle[:, 2], rest, atol=1e-9)
        assert np.abs(ankle[:, :2] - ankle[0, :2]).max() < 1e-9
        assert knee_angle(hip, knee, ankle).max() < 165.0
        side_now = knee_side(hip, knee, ankle)
        want = knee_side(*(smpl[:, JOINT_INDEX[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))) @ ret._D.T
        assert np.sum(side_now * want, axis=-1).min() > 0.95
        assert (side_now @ forward).min() > 0.3


def foot_points(ret, out, rig, side):
    """(T,3) world points of a leg's ankle, ball (the toe bone's head) and toe tip (its tail)."""
    W = fk_world(rig, out.rotations, out.root_bone, out.root_location, matrices=True)
    ankle, toe = (ret.bone_of[JOINT_INDEX[f"{side}_{j}"]] for j in ("ankle", "foot"))
    return W[:, ankle, :3, 3], W[:, toe, :3, 3], W[:, toe, :3, 3] + rig.lengths[toe] * W[:, toe, :3, 1]


def sole_floors(ret, rig, poses, trans, side):
    """Heights above the dance's floor the ball (T,) and the toe's tip (scalar) may not go under:
    the ball its rest height plus SMPL's toe lift (scaled, up to TOE_CLEARANCE), the tip the
    floor (or its rest height, where it rests under the lowest joint)."""
    from engine.finishing.feet import TOE_CLEARANCE
    toe = ret.bone_of[JOINT_INDEX[f"{side}_foot"]]
    deform = np.array(rig.deform)
    rest_floor = rig.world_heads()[deform, 2].min()
    lift = np.clip(joint_positions(poses, trans)[:, JOINT_INDEX[f"{side}_foot"], 1] - SMPL_TOE_HEIGHT, 0.0, TOE_CLEARANCE)
    return (rig.world_heads()[toe, 2] - rest_floor + ret.scale * lift,
            min(0.0, rig.world_tails()[toe, 2] - rest_floor))


def test_swing_frames_and_the_rest_of_the_body_keep_the_plain_retarget(planted_dance):
    from engine.outputs.character_feet import rolling
    poses, trans, contacts = planted_dance
    rig = odd_legged_rig()
    ret = Retargeter(rig, auto_map(rig))
    plain = ret.to_rig(poses, trans)
    planted = ret.to_rig(poses, trans, contacts=contacts, fps=FPS)
    fade = 5                                               # engine.finishing.feet.FADE_SECONDS at 30 fps, rounded up
    smpl = joint_positions(poses, trans)
    for col, side in enumerate(("left", "right")):
        # A stance, the frames beside it where SMPL's toe stays on the floor (its heel rising
        # about the ball), and their fades.
        stance = contacts[:, col] > 0.5
        toe = ret.scale * smpl[:, JOINT_INDEX[f"{side}_foot"]] @ Y_TO_Z.T
        stood = stance | rolling(stance, toe, ret.scale, FPS)
        near = np.convolve(stood, np.ones(2 * fade + 1), "same") > 0
        assert (~near).sum() >= 5
        leg = [ret.bone_of[JOINT_INDEX[f"{side}_{j}"]] for j in ("hip", "knee")]
        same = np.abs(np.sum(planted.rotations[:, leg] * plain.rotations[:, leg], axis=-1))   # q and -q alike
        assert same[~near].min() > 1 - 1e-12
        assert same[near].min() < 1 - 1e-4
    legs = [ret.bone_of[j] for j in LEG_JOINTS]
    toes = [ret.bone_of[JOINT_INDEX[f"{s}_foot"]] for s in ("left", "right")]
    others = [b for b in range(len(rig.names)) if b not in legs + toes]
    np.testing.assert_allclose(planted.rotations[:, others], plain.rotations[:, others], atol=1e-12)
    np.testing.assert_allclose(planted.root_location, plain.root_location, atol=1e-12)
    # The feet keep the dance's orientation, but for pitches up (about the ankle, the heading
    # kept) that put a ball about to sink below its floor exactly on it.
    for side in ("left", "right"):
        (a0, b0, _), (a1, b1, tip) = (foot_points(ret, o, rig, side) for o in (plain, planted))
        ball_floor, tip_floor = sole_floors(ret, rig, poses, trans, side)
        f0, f1 = b0 - a0, b1 - a1
        pitched = np.linalg.norm(f1 - f0, axis=-1) > 1e-9
        assert 0 < pitched.sum() < 0.5 * len(pitched)
        heading = lambda f: f[:, :2] / np.linalg.norm(f[:, :2], axis=-1, keepdims=True)   # noqa: E731
        np.testing.assert_allclose(heading(f1[pitched]), heading(f0[pitched]), atol=1e-9)
        assert (f1[pitched, 2] > f0[pitched, 2]).all()
        np.testing.assert_allclose(b1[pitched, 2] - ret.frame[2, 3], ball_floor[pitched], atol=1e-9)
        assert (b1[:, 2] - ret.frame[2, 3] >= ball_floor - 1e-9).all()
        assert (tip[:, 2] - ret.frame[2, 3] >= tip_floor - 1e-9).all()
    # Read back, every mapped joint but the legs' and feet's is the dance's own (the ankles'
    # local rotations change with the re-solved knees; their world orientation is checked above).
    back, back_trans, _, _ = ret.from_rig(planted.rotations, planted.root_location,
                                          np.ones(planted.rotations.shape[:2], bool))
    feet = {JOINT_INDEX[f"{s}_foot"] for s in ("left", "right")}
    kept = [j for j, b in enumerate(ret.bone_of) if b >= 0 and j not in LEG_JOINTS | feet]
    err = angle_between(poses.reshape(-1, 24, 3)[:, kept], back.reshape(-1, 24, 3)[:, kept])
    assert err.max() < 1e-4
    assert np.abs(back_trans - trans).max() < 1e-6


def test_contacts_found_from_the_characters_own_ankles(planted_dance):
    poses, trans, contacts = planted_dance
    rig = odd_legged_rig()
    ret = Retargeter(rig, auto_map(rig))
    plain = ret.to_rig(poses, trans)
    found = ret.to_rig(poses, trans, fps=FPS)
    for col, side in enumerate(("left", "right")):
        both = (contacts[1:, col] > 0.5) & (contacts[:-1, col] > 0.5)
        slide = [np.linalg.norm(np.diff(leg_points(ret, o, rig, side)[2][:, :2], axis=0), axis=-1)[both].mean()
                 for o in (plain, found)]
        assert slide[1] < 0.5 * slide[0]
    # Without contacts or a frame rate (or with plant_feet=False), the plain retarget.
    off = ret.to_rig(poses, trans, contacts=contacts, fps=FPS, plant_feet=False)
    np.testing.assert_array_equal(off.rotations, plain.rotations)


def test_a_spot_out_of_reach_straightens_the_leg_without_nan(planted_dance):
    poses, trans, _ = planted_dance
    rig = odd_legged_rig()
    ret = Retargeter(rig, auto_map(rig))
    lifted = trans + [0.0, 0.3, 0.0]                                 # the dancer 30 cm up in the air
    contacts = np.ones((len(poses), 2), bool)
    out = ret.to_rig(poses, lifted, contacts=contacts)
    assert np.isfinite(out.rotations).all() and np.isfinite(out.root_location).all()
    hip, knee, ankle = leg_points(ret, out, rig, "left")
    length = np.linalg.norm(knee - hip, axis=-1) + np.linalg.norm(ankle - knee, axis=-1)
    assert (np.linalg.norm(ankle - hip, axis=-1) <= length + 1e-9).all()
    with pytest.raises(RetargetError, match="contacts"):
        ret.to_rig(poses, trans, contacts=np.ones((3, 2), bool))


def big_footed_rig(ankle_share=0.55, foot=0.35):
    """SMPL's skeleton with big feet (QA's t11_bigfeet.py): the ankle `ankle_share` of the way
    from the knee to SMPL's ankle (25 cm up), the ball `foot` ahead of it, 2 cm up (42 cm from
    the ankle), and the toe bone's tip 8 cm further on, on the floor (SMPL's foot: the ankle
    7 cm up, the toe 14 cm ahead)."""
    heads = smpl_heads(1.0)
    for side in ("left", "right"):
        knee, ankle, toe = (JOINT_INDEX[f"{side}_{j}"] for j in ("knee", "ankle", "foot"))
        heads[ankle] = heads[knee] + (heads[ankle] - heads[knee]) * ankle_share
        heads[toe] = [heads[ankle, 0], heads[ankle, 1] - foot, 0.02]
    toes = {MIXAMO[f"{side}_foot"] for side in ("left", "right")}
    return make_rig([(n, p, h, np.asarray(h) + [0.0, -0.08, -0.02] if n in toes else t, r, d)
                     for n, p, h, t, r, d in humanoid(MIXAMO, heads, np.random.default_rng(5))])


def test_a_big_foot_turned_on_its_stance_pivots_about_its_ball():
    """QA (t11_bigfeet.py): a character with big feet, the ankle 25 cm above the sole and the
    ball 42 cm ahead of it. The stance pinned the ankle alone and the foot took the dance's
    orientation, so where the dance turned a planted foot (a heel rising, a swivel) the long
    foot swung its ball along the floor about the ankle: here, the heel raised 25 degrees and
    the foot turned 20 degrees through a stance, the ball slid 18 cm (11 mm a frame). Now the
    stance holds the ball, the ankle behind it as the foot is turned, as SMPL's feet pivot
    about the ball (engine.finishing.feet._pivot_about_toe), standing on the floor."""
    rig = big_footed_rig()
    ret = Retargeter(rig, auto_map(rig))
    T = 40
    poses, trans = np.zeros((T, 72)), np.zeros((T, 3))
    trans[:, 1] = REST_PELVIS_HEIGHT - 0.03
    u = np.clip((np.arange(T) - 5) / 25, 0.0, 1.0)
    u = u * u * (3 - 2 * u)
    k = 3 * JOINT_INDEX["left_ankle"]
    poses[:, k], poses[:, k + 1] = np.radians(25) * u, np.radians(20) * u     # toes down (heel up), then a swivel
    out = ret.to_rig(poses, trans, contacts=np.ones((T, 2), bool), fps=FPS)
    ankle, ball, _ = foot_points(ret, out, rig, "left")
    assert np.linalg.norm(ball[:, :2] - ball[0, :2], axis=-1).max() < 1e-3
    np.testing.assert_allclose(ball[:, 2] - ret.frame[2, 3], sole_floors(ret, rig, poses, trans, "left")[0], atol=1e-6)
    assert np.linalg.norm(ankle[:, :2] - ankle[0, :2], axis=-1).max() > 0.15   # the heel swung round
    assert ankle[:, 2].max() - ankle[:, 2].min() > 0.1                          # and rose


def test_a_big_foot_stands_on_its_sole(planted_dance):
    """QA (t11_bigfeet.py, ankle 25 cm up, ball 42 cm ahead): the feet took the dance's
    orientation, and SMPL's foot pitch, harmless on its short foot, swung the long foot's ball
    6.4 cm and its toe's tip 11.5 cm under the floor and dragged them along it: the ball was
    within 2 cm of its rest height and moving faster than 0.3 m/s in 58-61% of its low frames,
    up to 4.7 m/s (a foot of SMPL's size: 9%, 1.65 m/s). Here on the random dance the ball
    sank 11 cm below its rest height and the tip 15 cm under the floor, and 71% of the ball's
    low frames (103 of 146) moved (now 36%; SMPL's foot on this rig 19%). Now a foot whose
    ball would sink below its rest height plus SMPL's toe lift is pitched up about its ankle,
    its toe bent up about the ball where the tip would go under the floor, and a heel rising
    next to a stance rolls about the ball (engine.outputs.character_feet.rolling)."""
    poses, trans, contacts = planted_dance
    rig = big_footed_rig()
    ret = Retargeter(rig, auto_map(rig))
    out = ret.to_rig(poses, trans, contacts=contacts, fps=FPS)
    low = moving = 0
    for side in ("left", "right"):
        _, ball, tip = foot_points(ret, out, rig, side)
        ball_floor, tip_floor = sole_floors(ret, rig, poses, trans, side)
        height = ball[:, 2] - ret.frame[2, 3]
        assert height.min() >= ball_floor.min() - 1e-9 and (height >= ball_floor - 1e-9).all()
        assert (tip[:, 2] - ret.frame[2, 3] >= tip_floor - 1e-9).all()
        near = height[1:] - ball_floor.min() < 0.02
        speed = np.linalg.norm(np.diff(ball[:, :2], axis=0), axis=-1) * FPS
        low, moving = low + near.sum(), moving + (near & (speed > 0.3)).sum()
    assert moving < 0.45 * low                                                  # was 71%, now 36%


def toeless_rig(foot_tail):
    """SMPL's proportions without toe bones; the foot bone's tail where foot_tail(ankle, toe) says."""
    heads = smpl_heads(1.0)
    names = {j: n for j, n in MIXAMO.items() if j not in ("left_foot", "right_foot")}
    bones = humanoid(names, heads, np.random.default_rng(4))
    for side in ("left", "right"):
        i = [b[0] for b in bones].index(names[f"{side}_ankle"])
        name, parent, head, _, roll, deform = bones[i]
        bones[i] = (name, parent, head, foot_tail(head, heads[JOINT_INDEX[f"{side}_foot"]]), roll, deform)
    return make_rig(bones)


@pytest.mark.parametrize("foot_tail, sole", [
    (lambda ankle, toe: toe, "tail"),                                            # reaching for the toes
    (lambda ankle, toe: ankle + [0.0, -0.1, 0.0], "ratio"),                      # level, pointing forward
])
def test_a_toeless_rig_stands_on_its_soles(foot_tail, sole):
    rig = toeless_rig(foot_tail)
    ret = Retargeter(rig, auto_map(rig))
    out = ret.to_rig(np.zeros((1, 72)), np.array([[0.0, REST_PELVIS_HEIGHT, 0.0]]))
    heads = fk_world(rig, out.rotations, out.root_bone, out.root_location)[0]
    ankles = heads[[ret.bone_of[JOINT_INDEX[f"{s}_ankle"]] for s in ("left", "right")], 2]
    assert heads[:, 2].min() == pytest.approx(ankles.min())              # the ankles are the lowest heads
    if sole == "tail":
        # The foot bones' tails (SMPL's toe joints, on SMPL's floor) stand on the floor.
        assert ankles.min() == pytest.approx(smpl_heads(1.0)[[7, 8], 2].min(), abs=1e-9)
    else:
        assert ankles.min() == pytest.approx(ret.scale * SMPL_ANKLE_HEIGHT, abs=1e-9)
    assert ankles.min() > 0.05                                           # not the ankles on the floor


@pytest.mark.parametrize("toe_bone", [False, True])
def test_a_toeless_foot_keeps_its_sole_front_above_its_rest_height(planted_dance, toe_bone):
    """QA: with no toe bone mapped, the sole's front was never pitched up: a Second Life foot
    bone, which reaches the toe's tip, and a MakeHuman foot, whose toe bone its map leaves out,
    took their tips 1.8 cm under their rest height. The front of the sole is the lowest tail of
    the foot bone and the unmapped bones under it."""
    poses, trans, contacts = planted_dance
    heads = smpl_heads(1.0)
    names = {j: n for j, n in MIXAMO.items() if j not in ("left_foot", "right_foot")}
    bones = humanoid(names, heads, np.random.default_rng(4))
    ends = {}
    for side in ("left", "right"):
        foot = names[f"{side}_ankle"]
        i = [b[0] for b in bones].index(foot)
        name, parent, head, _, roll, deform = bones[i]
        ball, tip = heads[JOINT_INDEX[f"{side}_foot"]], heads[JOINT_INDEX[f"{side}_foot"]] + [0.0, -0.12, 0.0]
        if toe_bone:       # an unmapped toe bone from the ball to the tip
            bones[i] = (name, parent, head, ball, roll, deform)
            bones.append((foot + "Toe", foot, ball, tip, 0.0, True))
            bones.append((foot + "Toe_end", foot + "Toe", tip, tip + [0.0, -0.01, 0.0], 0.0, False))
            ends[side] = foot + "Toe_end"
        else:              # the foot bone reaches the tip
            bones[i] = (name, parent, head, tip, roll, deform)
            bones.append((foot + "_end", foot, tip, tip + [0.0, -0.01, 0.0], 0.0, False))
            ends[side] = foot + "_end"
    rig = make_rig(bones)
    ret = Retargeter(rig, names)        # the toe bone left out, as MakeHuman's map does (auto_map now maps it)
    out = ret.to_rig(poses, trans, contacts=contacts, fps=FPS)
    world = fk_world(rig, out.rotations, out.root_bone, out.root_location)
    still = ret.to_rig(np.zeros((1, 72)), np.array([[0.0, REST_PELVIS_HEIGHT, 0.0]]))
    standing = fk_world(rig, still.rotations, still.root_bone, still.root_location)[0]
    floor = ret.frame[2, 3]
    for side, end in ends.items():
        b = rig.names.index(end)
        rest = standing[b, 2] - floor
        print(side, f"tip rest {rest:.3f}, lowest in the dance {world[:, b, 2].min() - floor:.3f}")
        assert (world[:, b, 2] - floor >= rest - 1e-6).all()


def test_two_bone_ik_reaches_exactly_and_a_straight_leg_bends_about_the_hinge():
    from engine.outputs.character_feet import two_bone_ik
    rng = np.random.default_rng(0)
    N = 200
    hip = rng.normal(0, 0.1, (N, 3)) + [0, 0, 0.9]
    thigh = rng.normal(0, 1, (N, 3))
    thigh = 0.45 * thigh / np.linalg.norm(thigh, axis=-1, keepdims=True)
    shin = rng.normal(0, 1, (N, 3))
    shin = 0.3 * shin / np.linalg.norm(shin, axis=-1, keepdims=True)
    knee, ankle = hip + thigh, hip + thigh + shin
    hinge = rng.normal(0, 1, (N, 3))
    hinge /= np.linalg.norm(hinge, axis=-1, keepdims=True)
    goal = hip + rng.uniform(0.2, 0.7, (N, 1)) * rng.normal(0, 1, (N, 3)) / np.sqrt(3)
    swing, turn = two_bone_ik(hip, knee, ankle, goal, hinge)
    new_knee = hip + np.einsum("nab,nb->na", swing, thigh)
    new_ankle = new_knee + np.einsum("nab,nb->na", swing @ turn, shin)
    d = np.linalg.norm(goal - hip, axis=-1)
    reachable = (d > 0.16) & (d < 0.74)
    assert np.abs(new_ankle - goal)[reachable].max() < 1e-9                  # exact where it can be
    assert np.isfinite(new_ankle).all()
    # Out of reach: the leg points at the goal, as straight (or folded) as it goes.
    off = new_ankle - hip
    cos = np.sum(off * (goal - hip), -1) / np.linalg.norm(off, axis=-1) / d
    assert cos[~reachable].min() > 1 - 1e-9
    # A straight leg (no plane of its own) bends about the hinge, whichever way that points.
    hip1, knee1, ankle1 = np.array([[0, 0, 0.9]]), np.array([[0, 0, 0.45]]), np.array([[0, 0, 0.15]])
    for axis in ([-1.0, 0, 0], [1.0, 0, 0]):
        swing, turn = two_bone_ik(hip1, knee1, ankle1, np.array([[0, 0, 0.25]]), np.array([axis]))
        k = hip1 + swing[0] @ (knee1 - hip1)[0]
        a = k + (swing[0] @ turn[0]) @ (ankle1 - knee1)[0]
        assert np.allclose(a, [[0, 0, 0.25]], atol=1e-9)
        assert np.dot(np.cross(hip1[0] - k[0], a[0] - k[0]), axis) > 0.05


def test_a_planted_leg_turns_no_faster_than_the_engines_joint_bounds():
    """The hips drop 13 cm in one frame over planted feet: the plain retarget only translates,
    but the planting IK must fold the knees at once (QA, a 3-minute song: a character's shin
    turned 48 degrees in a frame where SMPL's knee turned 23). The engine's joint-speed guard
    eases thigh and shin together across a stretch, within SMPL's bounds for hip and knee."""
    from engine.finishing.turns import MAX_JOINT_SPEED
    rig = odd_legged_rig()
    ret = Retargeter(rig, auto_map(rig))
    T = 40
    trans = np.zeros((T, 3))
    trans[:, 1] = np.where(np.arange(T) < 20, REST_PELVIS_HEIGHT - 0.02, REST_PELVIS_HEIGHT - 0.15)
    out = ret.to_rig(np.zeros((T, 72)), trans, contacts=np.ones((T, 2), bool), fps=FPS)
    q = out.rotations / np.linalg.norm(out.rotations, axis=-1, keepdims=True)
    step = 2 * np.arccos(np.clip(np.abs(np.sum(q[1:] * q[:-1], axis=-1)), 0.0, 1.0)) * FPS   # (T-1, B) rad/s
    for side in ("left", "right"):
        for j in ("hip", "knee"):
            joint = JOINT_INDEX[f"{side}_{j}"]
            assert step[:, ret.bone_of[joint]].max() <= MAX_JOINT_SPEED[joint] + 1e-6
        hip, knee, ankle = leg_points(ret, out, rig, side)
        assert knee_angle(hip, knee, ankle)[-1] < knee_angle(hip, knee, ankle)[0] - 20   # the knee did fold


def test_a_stance_into_given_poses_stands_where_their_foot_stands(planted_dance):
    """A regenerated range on a character: the dance kept after it is written as it was, its
    feet where the old dance planted them, which need not be where this dance's own stance
    spot (the mean of SMPL's ankle over the run) lies. A stance running into those frames
    stands on their spot, the ball of the foot where the given foot's ball stands, from its
    first frame; on its own spot it slid into the kept dance (QA: 1 cm a frame for 8 frames,
    then 2.5 cm in one)."""
    poses, trans, contacts = planted_dance
    rig = odd_legged_rig()
    ret = Retargeter(rig, auto_map(rig))
    a, b = max(true_runs(contacts[:, 0] > 0.5, 1), key=lambda r: r[1] - r[0])
    cut = (a + b) // 2
    plain = ret.to_rig(poses, trans, contacts=contacts, fps=FPS)
    feet = ret.foot_points(plain.rotations, plain.root_location)       # (T,2,2,3) world
    given = np.full_like(feet, np.nan)
    given[cut:] = feet[cut:] + (0.04, -0.03, 0.0)                       # the old dance stood 5 cm away
    out = ret.to_rig(poses, trans, contacts=contacts, fps=FPS, given_feet=given)
    ankle = leg_points(ret, out, rig, "left")[2]
    assert np.allclose(ret.foot_points(out.rotations, out.root_location)[:, 0, 0], ankle)
    assert np.abs(ankle[cut:b] - given[cut:b, 0, 0]).max() < 1e-9         # the given ankles, as given
    spot = given[cut, 0, 1, :2]
    ball = ball_points(ret, out, rig, "left")
    assert np.linalg.norm(ball[a:b, :2] - spot, axis=-1).max() < 1e-3     # the whole stance on the given spot
    before = ball_points(ret, plain, rig, "left")
    assert np.linalg.norm(before[a:cut, :2] - spot, axis=-1).min() > 0.045


def test_a_toe_pointing_straight_down_bends_up_the_way_its_foot_faces():
    """A toe under a foot on tiptoe points nearly straight down, its own heading a few millimetres
    that swing from frame to frame: bent up to keep its tip off the floor about its own heading,
    it flicked 60 degrees a frame (QA30). The foot's heading steadies it: the toe bends forward."""
    from engine.outputs import character_feet as cf
    n = 12
    side = np.where(np.arange(n) % 2 == 0, 0.002, -0.002)          # 2 mm to one side, then the other
    offset = np.column_stack([side, np.zeros(n), np.full(n, -0.063)])
    base, lowest = np.zeros(n), np.full(n, -0.02)
    foot = np.tile([0.0, -0.1, -0.08], (n, 1))                      # the foot faces -Y, pitched down
    for steady in (None, foot):
        tips = np.einsum("nab,nb->na", cf.pitched_above(offset, base, lowest, steady), offset)
        assert np.abs(tips[:, 2] - lowest).max() < 1e-9                 # lifted to the floor's bound
        cosines = np.sum(tips[1:] * tips[:-1], axis=-1) / np.sum(tips[1:] ** 2, axis=-1)
        swing = np.degrees(np.arccos(np.clip(cosines, -1, 1))).max()
        if steady is None:
            assert swing > 90.0                 # unsteadied, the tip swings from side to side
        else:
            assert swing < 20.0
            assert (tips[:, 1] < -0.05).all()   # bent up towards the foot's front


def test_a_toe_bend_begins_before_it_is_needed_and_ends_after():
    """The toe bend that keeps a tip off the floor follows the ball's height frame by frame (a
    ball landing in two frames bent the toe 40 degrees in one, QA30): eased in time it is never
    less than needed, and turns a fraction as fast."""
    from engine.outputs import character_feet as cf
    from engine.outputs.retarget import axis_angle_to_matrix, matrix_to_axis_angle
    needed = np.zeros(30)
    needed[12:17] = np.radians(60.0)
    turns = axis_angle_to_matrix(np.outer(needed, [1.0, 0.0, 0.0]))
    eased = np.linalg.norm(matrix_to_axis_angle(cf.eased_in_time(turns, 3)), axis=-1)
    assert (eased >= needed - 1e-9).all()
    assert np.degrees(np.abs(np.diff(eased))).max() < 25.0      # 60 degrees in a frame, unless eased
    assert eased[0] < 1e-6 and eased[-1] < 1e-6                 # and only around where it is needed
    assert cf.eased_in_time(np.tile(np.eye(3), (5, 1, 1)), 3).tolist() == np.tile(np.eye(3), (5, 1, 1)).tolist()
