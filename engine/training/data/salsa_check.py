"""Check the CMU salsa retargeting on the real files: `python -m engine salsa-check [FILES or FOLDER]`.

Per file: frames and seconds at the true 60 fps, how closely SMPL's limbs follow the BVH's (cosine
per limb over every frame, at the source rate), and the loaded sequence's feet (lowest foot joint
per frame). Measurement, not a test: it needs the real data (SHARED_DATA/cmu_salsa, the default).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ...errors import EngineError
from ...body.skeleton import FOOT_INDICES, JOINT_INDEX, joint_positions
from ...outputs.retarget import Retargeter, Y_TO_Z, auto_map, bvh_pose, bvh_rig
from .cache import SHARED_DATA
from .cmu_salsa import SOURCE_FPS, load_salsa_file

LIMBS = (("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
         ("right_knee", "right_ankle"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
         ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("spine3", "neck"))
# The torso is not aligned (its rest pose is taken as SMPL's), so SMPL's chest->neck keeps its own
# angle to the capture's (a constant few degrees): reported apart from the limbs.
TORSO = "spine3->neck"


def check_file(path) -> dict | None:
    """Figures for one file (None for one too short to train on, which the loader skips): frames and seconds at 60 fps, how well SMPL's limbs follow the
    BVH's (mean and 1st-percentile cosine per limb over all frames, at the source rate), and
    the loaded sequence's lowest foot joint per frame (median and 95th percentile, metres)."""
    from ...outputs.bvh import read_bvh_skeleton
    skeleton = read_bvh_skeleton(path)
    rig = bvh_rig(skeleton)
    ret = Retargeter(rig, auto_map(rig))
    rotations, location = bvh_pose(skeleton, rig, ret.root_bone)
    poses, trans, _, _ = ret.from_rig(rotations, location, np.ones(rotations.shape[:2], bool))
    T, J = skeleton.rotations.shape[:2]
    glob = np.empty_like(skeleton.rotations)
    pos = np.empty((T, J, 3))
    for j, p in enumerate(skeleton.parents):
        glob[:, j] = skeleton.rotations[:, j] if p < 0 else glob[:, p] @ skeleton.rotations[:, j]
        pos[:, j] = skeleton.root_position if p < 0 else pos[:, p] + glob[:, p] @ skeleton.offsets[j]
    bvh_world = pos @ (rig.object_matrix[:3, :3]).T                       # Blender axes
    smpl_world = joint_positions(poses, trans) @ Y_TO_Z.T @ ret.frame[:3, :3].T
    cos = {}
    for a, b in LIMBS:
        if ret.bone_of[JOINT_INDEX[b]] < 0:
            continue
        u = bvh_world[:, ret.bone_of[JOINT_INDEX[b]]] - bvh_world[:, ret.bone_of[JOINT_INDEX[a]]]
        v = smpl_world[:, JOINT_INDEX[b]] - smpl_world[:, JOINT_INDEX[a]]
        c = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        cos[f"{a}->{b}"] = (float(c.mean()), float(np.percentile(c, 1)))
    seq = load_salsa_file(path)
    if seq is None:                 # too short to train on: the loader skips it (and warns)
        return None
    low = joint_positions(seq.poses, seq.trans)[:, list(FOOT_INDICES), 1].min(axis=1)
    return {"frames": T, "seconds_at_60": T / SOURCE_FPS, "header_fps": 1.0 / skeleton.frame_time,
            "scale": ret.scale, "cos": cos, "loaded_frames": seq.num_frames, "loaded_fps": seq.fps,
            "lowest_foot_median": float(np.median(low)), "lowest_foot_p95": float(np.percentile(low, 95)),
            "pelvis_height_median": float(np.median(seq.trans[:, 1]))}


def main(argv=None) -> int:
    """Print check_file's figures for each file."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m engine salsa-check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, default=[SHARED_DATA / "cmu_salsa"],
                   help="BVH files or folders of them (default: the shared CMU salsa folder)")
    args = p.parse_args(argv)
    missing = [str(a) for a in args.paths if not a.exists()]
    if missing:
        print(f"error: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    files = [f for a in args.paths for f in ([a] if a.is_file() else sorted(a.glob("*.bvh")))]
    if not files:
        print(f"error: no .bvh file in {', '.join(str(a) for a in args.paths)}", file=sys.stderr)
        return 2
    failed = 0
    for f in files:
        try:
            r = check_file(f)
        except EngineError as e:       # one bad file: said, and the others still checked
            print(f"{f.name}: error: {e}", file=sys.stderr)
            failed += 1
            continue
        if r is None:
            print(f"{f.name}: skipped, as the training data loader skips it (too short to train on)")
            continue
        limbs = {k: v for k, v in r["cos"].items() if k != TORSO}
        worst = min(limbs.items(), key=lambda kv: kv[1][0])
        mean = np.mean([c[0] for c in limbs.values()])
        print(f"{f.name}: {r['frames']} frames = {r['seconds_at_60']:.1f} s at 60 fps (header {r['header_fps']:.0f}); "
              f"{r['loaded_frames']} at {r['loaded_fps']:.0f} fps; scale {r['scale']:.3f}; "
              f"limb cosine mean {mean:.6f}, "
              f"lowest {worst[0]} {worst[1][0]:.6f} (1st pct {min(c[1] for c in limbs.values()):.6f}); "
              f"chest->neck {r['cos'][TORSO][0]:.4f}; "
              f"lowest foot median {100 * r['lowest_foot_median']:.1f} cm, p95 {100 * r['lowest_foot_p95']:.1f} cm; "
              f"pelvis median {r['pelvis_height_median']:.3f} m")
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
