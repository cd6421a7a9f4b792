import numpy as np
import torch
from scipy.spatial.transform import Rotation

from engine.body import layout as L
from engine.body import rotations as R
from engine.body.skeleton import BODY_PARTS, JOINT_NAMES, MIRROR_INDICES, joint_indices, joint_positions, REST_POSITIONS


def random_axis_angle(n, scale=2.0, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3)) * scale)


def test_axis_angle_matches_scipy_and_round_trips():
    aa = random_axis_angle(500)
    m = R.axis_angle_to_matrix(aa)
    assert np.allclose(m.numpy(), Rotation.from_rotvec(aa.numpy()).as_matrix(), atol=1e-12)
    back = R.axis_angle_to_matrix(R.matrix_to_axis_angle(m))
    assert torch.allclose(back, m, atol=1e-12)
    assert torch.allclose(R.sixd_to_matrix(R.matrix_to_6d(m)), m, atol=1e-12)


def test_small_angles_keep_precision():
    aa = torch.tensor([[1e-9, 0, 0], [0, 3e-7, 0]], dtype=torch.float64)
    assert torch.allclose(R.quat_to_axis_angle(R.axis_angle_to_quat(aa)), aa, rtol=1e-6, atol=1e-15)


def test_slerp_midpoint_halves_angle():
    q0 = R.axis_angle_to_quat(torch.zeros(1, 3, dtype=torch.float64))
    q1 = R.axis_angle_to_quat(torch.tensor([[0, 0, 2.0]], dtype=torch.float64))
    mid = R.quat_to_axis_angle(R.quat_slerp(q0, q1, torch.tensor([[0.5]], dtype=torch.float64)))
    assert torch.allclose(mid, torch.tensor([[0, 0, 1.0]], dtype=torch.float64), atol=1e-12)


def test_pack_unpack_round_trip():
    T = 50
    poses = random_axis_angle(T * 24, scale=0.5).reshape(T, 72)
    trans = torch.cumsum(torch.from_numpy(np.random.default_rng(1).normal(size=(T, 3)) * 0.01), 0)
    x = L.pack(poses, trans)
    assert x.shape == (T, L.NUM_CHANNELS) == (T, 151)
    p2, t2, contacts = L.unpack(x, start_xz=trans[0, [0, 2]])
    assert torch.allclose(t2, trans, atol=1e-12)
    assert torch.allclose(R.axis_angle_to_matrix(p2.reshape(-1, 3)), R.axis_angle_to_matrix(poses.reshape(-1, 3)), atol=1e-10)
    assert set(contacts.unique().tolist()) <= {0.0, 1.0}


def test_contacts_flag_still_feet_only():
    T = 10
    poses = torch.zeros(T, 72, dtype=torch.float64)
    still = L.pack(poses, torch.zeros(T, 3, dtype=torch.float64))
    moving = L.pack(poses, torch.stack([torch.arange(T) * 0.05, torch.zeros(T), torch.zeros(T)], 1).double())
    assert still[:, L.CONTACTS].eq(1).all()
    assert moving[:, L.CONTACTS].eq(0).all()


def test_joint_channels_follow_names():
    ch = L.joint_channels(["left_arm"])
    assert len(ch) == 6 * len(BODY_PARTS["left_arm"])
    j = JOINT_NAMES.index("left_elbow")
    assert L.ROT6D.start + 6 * j in ch
    assert joint_indices("arms") == sorted(joint_indices("left_arm") + joint_indices("right_arm"))
    # The pelvis's own slice (the facing and the turn rebuild use it) is the pelvis's channels.
    assert list(range(L.PELVIS_6D.start, L.PELVIS_6D.stop)) == L.joint_channels(["pelvis"])


def test_mirror_table_is_an_involution_that_swaps_sides():
    for i, m in enumerate(MIRROR_INDICES):
        assert MIRROR_INDICES[m] == i
        a, b = JOINT_NAMES[i], JOINT_NAMES[m]
        assert a.replace("left", "X").replace("right", "X") == b.replace("left", "X").replace("right", "X")


def test_fk_of_rest_pose_matches_rest_table():
    pos = joint_positions(np.zeros((1, 72)), np.zeros((1, 3)))[0]
    assert np.allclose(pos, REST_POSITIONS, atol=1e-12)
    # The head is above the pelvis, the feet below, left joints at +x (SMPL convention).
    assert pos[JOINT_NAMES.index("head"), 1] > 0.5 > pos[JOINT_NAMES.index("left_foot"), 1] + 1.3
    assert pos[JOINT_NAMES.index("left_hip"), 0] > 0 > pos[JOINT_NAMES.index("right_hip"), 0]
