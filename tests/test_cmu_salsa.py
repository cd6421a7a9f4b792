"""CMU salsa loader (engine/training/data/cmu_salsa.py) and the any-skeleton BVH reader, on a small
SecondLife-style BVH written here (Y up, scaled units, a 120-fps header on 60-fps motion)."""
from __future__ import annotations

import numpy as np
import pytest

from engine.outputs.bvh import euler_to_matrix, read_bvh_skeleton
from engine.training.data.cache import detect_kind, load_source
from engine.training.data.cmu_salsa import SETTLE_S, SOURCE_FPS, load_cmu_salsa, load_salsa_file
from engine.body.layout import MODEL_FPS
from engine.errors import EngineError
from engine.outputs.retarget import SMPL_LEG_LENGTH
from engine.body.skeleton import FOOT_INDICES, JOINT_INDEX, joint_positions

# name, parent, offset (file units: the hip about 0.63 above the floor, like the CMU files)
SKELETON = [
    ("hip", None, (0.0, 0.0, 0.0)), ("abdomen", "hip", (0.0, 0.16, -0.006)), ("chest", "abdomen", (0.0, 0.09, -0.004)),
    ("neck", "chest", (0.0, 0.17, -0.017)), ("head", "neck", (0.0, 0.055, 0.01)),
    ("lCollar", "chest", (0.02, 0.15, -0.038)), ("lShldr", "lCollar", (0.069, -0.015, 0.011)),
    ("lForeArm", "lShldr", (0.22, -0.013, 0.004)), ("lHand", "lForeArm", (0.176, 0.006, 0.055)),
    ("rCollar", "chest", (-0.02, 0.15, -0.038)), ("rShldr", "rCollar", (-0.069, -0.015, 0.011)),
    ("rForeArm", "rShldr", (-0.22, -0.013, 0.004)), ("rHand", "rForeArm", (-0.176, 0.006, 0.055)),
    ("lButtock", "hip", (0.069, 0.034, 0.01)), ("lThigh", "lButtock", (0.0, -0.013, -0.017)),
    ("lShin", "lThigh", (0.0, -0.288, 0.006)), ("lFoot", "lShin", (-0.006, -0.352, -0.04)),
    ("rButtock", "hip", (-0.069, 0.034, 0.01)), ("rThigh", "rButtock", (0.0, -0.013, -0.017)),
    ("rShin", "rThigh", (0.0, -0.288, 0.006)), ("rFoot", "rShin", (0.006, -0.352, -0.04)),
]
END_SITES = {"head": (0.0, 0.1, 0.0), "lHand": (0.05, 0.0, 0.0), "rHand": (-0.05, 0.0, 0.0),
             "lFoot": (0.009, -0.029, 0.095), "rFoot": (-0.009, -0.029, 0.095)}
FRAMES = 150          # 2.5 s at 60 fps


def motion_channels(frames=FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """(root position (T,3), rotations in degrees (T,J,3) as Z, X, Y): the hip walks 0.3 along x,
    the left arm swings, the right knee bends, the chest twists."""
    t = np.linspace(0, 1, frames)
    rot = np.zeros((frames, len(SKELETON), 3))
    names = [s[0] for s in SKELETON]
    rot[:, names.index("lShldr"), 0] = -60 * np.sin(2 * np.pi * t)       # Z: arm up and down
    rot[:, names.index("lShldr"), 2] = 30 * t                             # Y: arm forward
    rot[:, names.index("lForeArm"), 2] = 70 * t
    rot[:, names.index("rThigh"), 1] = -40 * t                            # X: thigh forward
    rot[:, names.index("rShin"), 1] = 60 * t                              # knee bends back
    rot[:, names.index("chest"), 2] = 25 * np.sin(2 * np.pi * t)
    rot[:, names.index("hip"), 2] = 20 * t                                # the dancer turns
    root = np.stack([0.3 * t, 0.63 + 0.02 * np.sin(4 * np.pi * t), np.zeros_like(t)], axis=1)
    return root, rot


def write_salsa_bvh(path, frames=FRAMES):
    lines = ["HIERARCHY"]

    def joint(i, depth):
        name, _, off = SKELETON[i]
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if i == 0 else 'JOINT'} {name}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        lines.append(f"{pad}  CHANNELS " + ("6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if i == 0
                                            else "3 Zrotation Xrotation Yrotation"))
        for k, (_, parent, _) in enumerate(SKELETON):
            if parent == name:
                joint(k, depth + 1)
        if name in END_SITES:
            e = END_SITES[name]
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET {e[0]} {e[1]} {e[2]}", pad + "  }"])
        lines.append(pad + "}")

    joint(0, 0)
    root, rot = motion_channels(frames)
    order = _file_order()
    lines += ["MOTION", f"Frames: {frames}", "Frame Time: 0.008333"]
    for t in range(frames):
        values = list(root[t]) + [v for j in order for v in rot[t, j]]
        lines.append(" ".join(f"{v:.6f}" for v in values))
    path.write_text("\n".join(lines) + "\n")
    return path


def _file_order() -> list[int]:
    out = []

    def visit(i):
        out.append(i)
        for k, (_, parent, _) in enumerate(SKELETON):
            if parent == SKELETON[i][0]:
                visit(k)
    visit(0)
    return out


def bvh_positions(frames=FRAMES) -> dict[str, np.ndarray]:
    """World positions (file units, Y up) of every joint, by forward kinematics written here."""
    root, rot = motion_channels(frames)
    names = [s[0] for s in SKELETON]
    glob, pos = {}, {}
    for i in _file_order():
        name, parent, off = SKELETON[i]
        local = euler_to_matrix(np.radians(rot[:, i]), "ZXY")
        if parent is None:
            glob[name], pos[name] = local, root
        else:
            glob[name] = glob[parent] @ local
            pos[name] = pos[parent] + glob[parent] @ np.array(off)
    assert set(pos) == set(names)
    return pos


def test_reader_keeps_the_skeleton_and_end_sites(tmp_path):
    sk = read_bvh_skeleton(write_salsa_bvh(tmp_path / "60_99_scaled.bvh"))
    assert sk.num_frames == FRAMES and sk.frame_time == pytest.approx(0.008333)
    assert sk.names[0] == "hip" and sk.parents[sk.names.index("lShin")] == sk.names.index("lThigh")
    np.testing.assert_allclose(sk.end_sites[sk.names.index("lFoot")], END_SITES["lFoot"])
    assert np.isnan(sk.end_sites[sk.names.index("lShin")]).all()


def test_salsa_bvh_loads_as_smpl_motion_following_its_limbs(tmp_path):
    path = write_salsa_bvh(tmp_path / "60_99_scaled.bvh")
    seq = load_salsa_file(path)
    assert seq.name == "salsa_60_99" and seq.style == "salsa" and seq.fps == MODEL_FPS
    # 60 fps whatever the header says (120), the settling frames dropped, resampled to the model's rate.
    kept = FRAMES - round(SETTLE_S * SOURCE_FPS)
    assert seq.num_frames == int((kept - 1) / SOURCE_FPS * MODEL_FPS + 1e-6) + 1
    pos = bvh_positions()
    step = round(SOURCE_FPS / MODEL_FPS)
    src = {k: v[round(SETTLE_S * SOURCE_FPS)::step][:seq.num_frames] for k, v in pos.items()}
    smpl = joint_positions(seq.poses, seq.trans)
    for a, b, sa, sb in (("left_shoulder", "left_elbow", "lShldr", "lForeArm"),
                         ("left_elbow", "left_wrist", "lForeArm", "lHand"),
                         ("right_hip", "right_knee", "rThigh", "rShin"),
                         ("right_knee", "right_ankle", "rShin", "rFoot"),
                         ("left_hip", "left_knee", "lThigh", "lShin")):
        u = src[sb] - src[sa]
        v = smpl[:, JOINT_INDEX[b]] - smpl[:, JOINT_INDEX[a]]
        cos = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        assert cos.min() > 0.999, (a, b, cos.min())
    # The root travels 0.3 file units along x, scaled by leg length into SMPL metres.
    offset = {name: np.array(off) for name, _, off in SKELETON}
    leg = np.mean([np.linalg.norm(offset[f"{s}Shin"]) + np.linalg.norm(offset[f"{s}Foot"]) for s in "lr"])
    travel = seq.trans[-1, 0] - seq.trans[0, 0]
    want = (src["hip"][-1, 0] - src["hip"][0, 0]) * SMPL_LEG_LENGTH / leg
    assert travel == pytest.approx(want, rel=0.02)
    # Feet on the floor.
    low = smpl[:, list(FOOT_INDICES), 1].min(axis=1)
    assert abs(low.min()) < 1e-6 and np.median(low) < 0.03


def test_salsa_folder_is_a_training_source_without_music(tmp_path):
    data = tmp_path / "cmu_salsa"
    data.mkdir()
    write_salsa_bvh(data / "60_98_scaled.bvh")
    write_salsa_bvh(data / "61_98_scaled.bvh")
    assert detect_kind(data) == "cmu_salsa"
    assert [s.name for s in load_cmu_salsa(data)] == ["salsa_60_98", "salsa_61_98"]
    items = load_source(data, tmp_path / "cache", log=None)
    assert [it.name for it in items] == ["salsa_60_98", "salsa_61_98"]
    assert all(it.music is None and it.style == "salsa" and it.motion.shape[0] > 60 for it in items)


def test_too_short_take_is_skipped_with_a_warning(tmp_path):
    path = write_salsa_bvh(tmp_path / "60_97_scaled.bvh", frames=60)
    with pytest.warns(UserWarning, match="under 2 s"):
        assert load_salsa_file(path) is None


def test_a_folder_of_other_bvh_files_keeps_their_frame_rates_and_takes_its_name_as_style(tmp_path):
    # QA26: any folder of BVH files was read as CMU salsa: 60 fps whatever the header said (a
    # 30 fps take played twice as fast), style "salsa", names "salsa_*".
    from engine.body.motion import Motion
    from engine.outputs.bvh import write_bvh
    data = tmp_path / "My Moves"
    data.mkdir()
    rng = np.random.default_rng(0)
    for stem, fps, seconds in (("take_a", 30.0, 8.0), ("take_b", 120.0, 3.0)):
        T = int(fps * seconds)
        t = np.arange(T)[:, None] / fps
        poses = 0.2 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6, 72))
        trans = np.concatenate([0.1 * t, np.full((T, 1), 0.95), np.zeros((T, 1))], axis=1)
        write_bvh(Motion(poses=poses, trans=trans, fps=fps), data / f"{stem}.bvh")
    assert detect_kind(data) == "bvh"
    seqs = {s.name: s for s in load_source(data, tmp_path / "cache", log=None)}
    assert sorted(seqs) == ["take_a", "take_b"]
    assert all(s.style == "my_moves" and s.music is None for s in seqs.values())
    assert seqs["take_a"].motion.shape[0] == pytest.approx(8.0 * MODEL_FPS, abs=2)
    assert seqs["take_b"].motion.shape[0] == pytest.approx(3.0 * MODEL_FPS, abs=2)
    broken = data / "take_c.bvh"
    broken.write_text((data / "take_b.bvh").read_text().replace("Frame Time: 0.0083333333", "Frame Time: 5"))
    with pytest.raises(EngineError, match="take_c.bvh: its Frame Time"):
        load_source(data, tmp_path / "cache2", log=None)


def test_a_change_of_the_retargeting_makes_bvh_caches_stale_and_no_other(tmp_path, monkeypatch):
    # QA27: the rigs' hinge twist changed what CMU salsa reads as, under the same cache key.
    from engine.training.data import cache
    data = tmp_path / "cmu_salsa"
    data.mkdir()
    write_salsa_bvh(data / "60_98_scaled.bvh")
    other = tmp_path / "tang"
    other.mkdir()
    (other / "manifest.json").write_text("{}")
    before = cache.cache_key("cmu_salsa", data), cache.cache_key("tang2018", other)
    monkeypatch.setattr(cache, "RETARGET_VERSION", cache.RETARGET_VERSION + 1)
    after = cache.cache_key("cmu_salsa", data), cache.cache_key("tang2018", other)
    assert after[0] != before[0] and after[1] == before[1]
