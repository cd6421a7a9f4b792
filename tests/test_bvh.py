"""engine.outputs.bvh: exact round trips, file structure, and Blender's own importer/exporter."""
import numpy as np
import pytest
import torch

from engine.outputs.bvh import euler_to_matrix, matrix_to_euler_zxy, read_bvh, write_bvh
from engine.errors import EngineError
from engine.body.motion import Motion
from engine.body.rotations import axis_angle_to_matrix
from engine.body.skeleton import JOINT_NAMES, PARENTS, joint_positions

Y_TO_Z = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])


def _matrices(poses):
    return axis_angle_to_matrix(torch.as_tensor(poses).reshape(-1, 24, 3)).numpy()


def _random_motion(frames=40, fps=30.0, seed=0):
    rng = np.random.default_rng(seed)
    poses = rng.normal(0.0, 1.2, (frames, 72))            # wide angles: many beyond 90 degrees
    trans = rng.normal(0.0, 1.5, (frames, 3))
    return Motion(poses=poses, trans=trans, fps=fps)


@pytest.mark.parametrize("up_axis", ["Y", "Z"])
@pytest.mark.parametrize("scale", [1.0, 100.0, 0.01])
def test_round_trip(tmp_path, up_axis, scale):
    motion = _random_motion()
    path = write_bvh(motion, tmp_path / "dance.bvh", up_axis=up_axis, scale=scale)
    for back in (read_bvh(path, up_axis=up_axis, scale=scale), read_bvh(path)):   # given or inferred
        assert back.num_frames == motion.num_frames and back.fps == 30.0
        assert np.abs(_matrices(back.poses) - _matrices(motion.poses)).max() < 1e-5
        assert np.abs(back.trans - motion.trans).max() < 1e-5


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 60.0])
def test_frame_rate_survives(tmp_path, fps):
    back = read_bvh(write_bvh(_random_motion(frames=3, fps=fps), tmp_path / "a.bvh"))
    assert back.fps == fps


def test_file_structure(tmp_path):
    motion = _random_motion(frames=5)
    text = write_bvh(motion, tmp_path / "a.bvh", up_axis="Z", scale=100.0).read_text()
    lines = text.splitlines()
    assert lines[0] == "HIERARCHY" and lines[1] == "ROOT pelvis"
    names = [ln.split()[1] for ln in lines if ln.strip().startswith(("ROOT", "JOINT"))]
    assert sorted(names) == sorted(JOINT_NAMES)
    assert text.count("End Site") == sum(1 for j in range(24) if j not in PARENTS)
    assert text.count("CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation") == 1
    assert text.count("CHANNELS 3 Zrotation Xrotation Yrotation") == 23
    motion_at = lines.index("MOTION")
    assert lines[motion_at + 1] == "Frames: 5" and lines[motion_at + 2].startswith("Frame Time: 0.0333333")
    first = np.array(lines[motion_at + 3].split(), dtype=float)
    assert first.shape == (3 + 24 * 3,)
    # Z up: the root position is (x, -z, y) * scale
    np.testing.assert_allclose(first[:3], Y_TO_Z @ motion.trans[0] * 100.0, atol=1e-5)


def test_euler_zxy_including_gimbal_lock():
    rng = np.random.default_rng(1)
    angles = rng.uniform(-np.pi, np.pi, (200, 3))
    angles[:50, 1] = np.pi / 2                           # exactly locked
    angles[50:100, 1] = -np.pi / 2 + 1e-9                # almost locked
    m = euler_to_matrix(angles, "ZXY")
    np.testing.assert_allclose(euler_to_matrix(matrix_to_euler_zxy(m), "ZXY"), m, atol=1e-6)


def test_mistakes(tmp_path):
    motion = _random_motion(frames=2)
    with pytest.raises(EngineError, match="folder"):
        write_bvh(motion, tmp_path / "missing" / "a.bvh")
    with pytest.raises(EngineError, match="up axis"):
        write_bvh(motion, tmp_path / "a.bvh", up_axis="X")
    with pytest.raises(EngineError, match="scale"):
        write_bvh(motion, tmp_path / "a.bvh", scale=0.0)
    bad = Motion(poses=np.full((2, 72), np.nan), trans=np.zeros((2, 3)), fps=30.0)
    with pytest.raises(EngineError, match="NaN"):
        write_bvh(bad, tmp_path / "a.bvh")
    with pytest.raises(EngineError, match="not found"):
        read_bvh(tmp_path / "none.bvh")
    text = write_bvh(motion, tmp_path / "a.bvh").read_text()
    (tmp_path / "renamed.bvh").write_text(text.replace("left_elbow", "LeftForeArm"))
    with pytest.raises(EngineError, match="left_elbow"):
        read_bvh(tmp_path / "renamed.bvh")
    (tmp_path / "junk.bvh").write_text("not a bvh at all")
    with pytest.raises(EngineError):
        read_bvh(tmp_path / "junk.bvh")


def _blender_armature(bpy):
    return next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")


@pytest.mark.parametrize("up_axis, forward, up, scale", [("Y", "-Z", "Y", 1.0), ("Z", "Y", "Z", 1.0),
                                                          ("Z", "Y", "Z", 100.0)])
def test_blender_imports_it_exactly(tmp_path, up_axis, forward, up, scale):
    """Blender's importer rebuilds the same joint positions (Z up in Blender's world)."""
    bpy = pytest.importorskip("bpy")
    motion = _random_motion(frames=6, seed=2)
    path = write_bvh(motion, tmp_path / "a.bvh", up_axis=up_axis, scale=scale)
    expected = joint_positions(motion.poses, motion.trans) @ Y_TO_Z.T * scale      # (T, 24, 3)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=str(path), axis_forward=forward, axis_up=up)
    arm = _blender_armature(bpy)
    world = np.array(arm.matrix_world)
    for frame in range(motion.num_frames):
        bpy.context.scene.frame_set(1 + frame)          # the importer starts at frame 1
        heads = np.array([(world @ np.append(np.array(arm.pose.bones[n].head), 1.0))[:3] for n in JOINT_NAMES])
        assert np.abs(heads - expected[frame]).max() < 1e-4 * scale


def test_reads_blenders_own_export(tmp_path):
    """A BVH written by Blender (Z up, its channel layout) reads back to the same motion."""
    bpy = pytest.importorskip("bpy")
    motion = _random_motion(frames=6, seed=3)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=str(write_bvh(motion, tmp_path / "a.bvh")))
    arm = _blender_armature(bpy)
    bpy.context.view_layer.objects.active = arm
    arm.select_set(True)
    scene = bpy.context.scene
    scene.render.fps = 30
    assert bpy.ops.export_anim.bvh(filepath=str(tmp_path / "blender.bvh"), frame_start=1,
                                   frame_end=motion.num_frames) == {"FINISHED"}
    back = read_bvh(tmp_path / "blender.bvh")           # axes and scale inferred
    assert back.num_frames == motion.num_frames and back.fps == 30.0
    assert np.abs(_matrices(back.poses) - _matrices(motion.poses)).max() < 1e-4
    assert np.abs(back.trans - motion.trans).max() < 1e-4


@pytest.mark.parametrize("kind", ["bvh", "npz"])
def test_an_interrupted_write_leaves_the_old_file_whole_and_no_temporary_file(tmp_path, monkeypatch, kind):
    # QA: Ctrl-C while a long dance's BVH was written left a file saying 18000 frames and holding
    # 7199 under its real name, and a rerun refused to overwrite it.
    path = tmp_path / f"dance.{kind}"
    path.write_text("the earlier take")
    motion = _random_motion()

    def interrupted(f, *args, **kwargs):
        f.write(b"half a file" if "b" in getattr(f, "mode", "b") else "half a file")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savetxt" if kind == "bvh" else "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bvh(motion, path) if kind == "bvh" else motion.save_npz(path)
    assert path.read_text() == "the earlier take"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    monkeypatch.undo()
    write_bvh(motion, path) if kind == "bvh" else motion.save_npz(path)       # and then written whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    if kind == "bvh":
        assert read_bvh(path).poses.shape == motion.poses.shape
    else:
        assert Motion.load_npz(path).poses.shape == motion.poses.shape


def test_outputs_stopped_between_their_renames_are_all_new(tmp_path, monkeypatch):
    # QA27: Ctrl-C between two of the command line's renames left a new .npz beside an old .bvh.
    import os
    from engine import files
    paths = [tmp_path / "a.npz", tmp_path / "a.bvh"]
    for p in paths:
        p.write_text("old")
    real_replace, calls = os.replace, []

    def interrupted_once(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(files.os, "replace", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        with files.written_whole(*paths) as temps:
            for t in temps:
                t.write_text("new")
    assert [p.read_text() for p in paths] == ["new", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bvh", "a.npz"]


def test_ctrl_c_twice_while_the_outputs_are_renamed_leaves_them_all_new(tmp_path, monkeypatch):
    # QA28: a second Ctrl-C while an interrupted set was being finished left a.mp4 old.
    import os
    import signal
    from engine import files
    paths = [tmp_path / "a.npz", tmp_path / "a.bvh", tmp_path / "a.mp4"]
    for p in paths:
        p.write_text("old")
    real_replace = os.replace

    def pressed_each_time(src, dst):
        real_replace(src, dst)
        os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(files.os, "replace", pressed_each_time)
    # Ctrl-C as a shell delivers it to Python: Blender's module, imported by earlier tests, may
    # have taken the handler or blocked the signal.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # Blocking Ctrl-C on the main thread alone let it through where another thread took it (after
    # the add-on's tests had run in the same process, the third rename was cut off).
    try:
        with pytest.raises(KeyboardInterrupt):
            with files.written_whole(*paths) as temps:
                for t in temps:
                    t.write_text("new")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)
    assert [p.read_text() for p in paths] == ["new", "new", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bvh", "a.mp4", "a.npz"]
