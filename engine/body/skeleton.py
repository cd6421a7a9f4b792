"""The SMPL skeleton: joint names, parents, neutral rest offsets, body parts, forward kinematics.

Every other module takes these facts from here; nothing else lists joints.
Coordinates are SMPL's: metres, Y up, the body facing +Z.
"""
from __future__ import annotations

import numpy as np

from ..errors import EngineError

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)

# Neutral SMPL joint offsets from the parent joint (metres, Y up), as used by EDGE and smpl2bvh.
REST_OFFSETS = np.array([
    [0.0, 0.0, 0.0], [0.05858, -0.08228, -0.01766], [-0.06031, -0.09051, -0.01354],
    [0.00444, 0.12440, -0.03839], [0.04345, -0.38647, 0.00804], [-0.04326, -0.38369, -0.00484],
    [0.00449, 0.13796, 0.02682], [-0.01479, -0.42687, -0.03743], [0.01906, -0.42005, -0.03456],
    [-0.00226, 0.05603, 0.00286], [0.04105, -0.06029, 0.12204], [-0.03484, -0.06211, 0.13032],
    [-0.01339, 0.21164, -0.03347], [0.07170, 0.11400, -0.01890], [-0.08295, 0.11247, -0.02371],
    [0.01011, 0.08894, 0.05041], [0.12292, 0.04521, -0.01905], [-0.11323, 0.04685, -0.00847],
    [0.25533, -0.01565, -0.02295], [-0.26013, -0.01437, -0.03127], [0.26571, 0.01270, -0.00737],
    [-0.26911, 0.00679, -0.00603], [0.08669, -0.01064, -0.01559], [-0.08875, -0.00865, -0.01011],
], dtype=np.float64)

# The axes real dancers' knees and elbows bend about, in the parent bone's frame (the thigh's, the
# upper arm's; at SMPL's rest pose, the world's axes): the mean bend axis over tang2018's frames
# bent more than 20 degrees, the left side's averaged with the right's mirror image. Knees keep
# within 47 (left) and 56 (right) degrees of theirs; elbows spread wider (the data's right elbow
# turns past 90 degrees off it on 0.4% of bent frames).
_LEFT_BEND_AXES = {"knee": (0.941, 0.104, -0.323), "elbow": (-0.017, -0.930, 0.368)}


def bend_axis(joint: str) -> np.ndarray:
    """The unit axis a knee or elbow ('left_knee', 'right_elbow', ...) bends about, in its parent
    bone's frame: positive turns about it bend the limb the way a real joint bends. The right
    side's is the left's mirror image across SMPL's x = 0 plane (an axial vector: x kept)."""
    side, kind = joint.split("_", 1)
    axis = np.array(_LEFT_BEND_AXES[kind]) * (1.0 if side == "left" else np.array([1.0, -1.0, -1.0]))
    return axis / np.linalg.norm(axis)


# Height of the pelvis above the floor in the neutral rest pose: the lowest point (the toes)
# sits this far below the pelvis.
def _rest_positions() -> np.ndarray:
    pos = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        pos[j] = pos[PARENTS[j]] + REST_OFFSETS[j]
    return pos

REST_POSITIONS = _rest_positions()
REST_PELVIS_HEIGHT = float(-REST_POSITIONS[:, 1].min())

# Foot joints whose contact with the floor the model predicts (EDGE's choice: ankles and toes).
FOOT_JOINTS: tuple[str, ...] = ("left_ankle", "right_ankle", "left_foot", "right_foot")
FOOT_INDICES = tuple(JOINT_INDEX[n] for n in FOOT_JOINTS)

BODY_PARTS: dict[str, tuple[str, ...]] = {
    "left_arm": ("left_collar", "left_shoulder", "left_elbow", "left_wrist", "left_hand"),
    "right_arm": ("right_collar", "right_shoulder", "right_elbow", "right_wrist", "right_hand"),
    "left_leg": ("left_hip", "left_knee", "left_ankle", "left_foot"),
    "right_leg": ("right_hip", "right_knee", "right_ankle", "right_foot"),
    "torso": ("pelvis", "spine1", "spine2", "spine3"),
    "head": ("neck", "head"),
}
BODY_PARTS["arms"] = BODY_PARTS["left_arm"] + BODY_PARTS["right_arm"]
BODY_PARTS["legs"] = BODY_PARTS["left_leg"] + BODY_PARTS["right_leg"]
BODY_PARTS["all"] = JOINT_NAMES


def _mirror_name(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name

# Index of each joint's left/right counterpart, for mirroring augmentation.
MIRROR_INDICES: tuple[int, ...] = tuple(JOINT_INDEX[_mirror_name(n)] for n in JOINT_NAMES)


def joint_indices(names_or_parts) -> list[int]:
    """Joint indices for a mix of joint names and body-part names ("arms", "left_knee", ...)."""
    if isinstance(names_or_parts, str):
        names_or_parts = [names_or_parts]
    out: list[int] = []
    for item in names_or_parts:
        if item in BODY_PARTS:
            names = BODY_PARTS[item]
        elif item in JOINT_INDEX:
            names = (item,)
        else:
            known = ", ".join(sorted(BODY_PARTS))
            # A user's word (Constraints.set_pose, follow): one line, as every input mistake is.
            raise EngineError(f"unknown joint or body part {item!r} (body parts: {known}; or an SMPL joint name)")
        out.extend(JOINT_INDEX[n] for n in names if JOINT_INDEX[n] not in out)
    return sorted(out)


def forward_kinematics(rotmats: "torch.Tensor", root_pos: "torch.Tensor",
                       offsets: "torch.Tensor | None" = None) -> "torch.Tensor":
    """Joint positions from local rotation matrices.

    rotmats (..., 24, 3, 3) local (parent-relative) rotations, root_pos (..., 3).
    Returns (..., 24, 3) world positions.
    """
    import torch  # here, not at the top: the skeleton's facts (and bone mapping) need no torch
    if offsets is None:
        offsets = torch.as_tensor(REST_OFFSETS, dtype=rotmats.dtype, device=rotmats.device)
    global_rot = [rotmats[..., 0, :, :]]
    positions = [root_pos]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        positions.append(positions[p] + (global_rot[p] @ offsets[j].unsqueeze(-1)).squeeze(-1))
        global_rot.append(global_rot[p] @ rotmats[..., j, :, :])
    return torch.stack(positions, dim=-2)


def joint_positions(poses: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Numpy convenience: (T,72) axis-angle and (T,3) root translation to (T,24,3) positions."""
    import torch
    from .rotations import axis_angle_to_matrix
    rot = axis_angle_to_matrix(torch.as_tensor(poses, dtype=torch.float64).reshape(-1, NUM_JOINTS, 3))
    return forward_kinematics(rot, torch.as_tensor(trans, dtype=torch.float64)).numpy()
