"""The add-on from the outside: batch.py as a subprocess, build.py's zip installed with Blender's
own extension installer into a throw-away user folder, and the dependency installer offline."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import scene_io  # noqa: E402
from conftest import REPO, terminated_once  # noqa: E402
from engine.body.motion import Motion  # noqa: E402
from engine.body.skeleton import JOINT_INDEX  # noqa: E402
from rotation_checks import rotation_error  # noqa: E402
from test_addon_scene_io import add_wav  # noqa: E402

BATCH = REPO / "blender_addon" / "batch.py"


def _isolated_env(tmp_path) -> dict:
    """Blender's user folders (config, extensions) inside tmp_path, never the real ones."""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    env.pop("PYTHONPATH", None)
    return env


def test_batch_end_to_end_keeps_the_files_keys(tmp_path, tiny_weights):
    song = add_wav(tmp_path, 2.0)
    # A scene made by an animator: a dancer with one keyed elbow, saved.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = 25
    bpy.context.scene.frame_end = 20                          # shorter than the song: batch grows it
    obj = scene_io.create_smpl_armature(bpy.context, "Dancer", with_mesh=False)
    pb = obj.pose.bones["left_elbow"]
    pb.rotation_quaternion = (0.8, 0.2, 0.5, 0.26)
    pb.keyframe_insert("rotation_quaternion", frame=12)
    aa = scene_io.read_motion(obj, 12, 12).poses[0, 3 * JOINT_INDEX["left_elbow"]:][:3]
    scene_blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(scene_blend))

    out_blend, out_bvh = tmp_path / "out.blend", tmp_path / "out.bvh"
    run = subprocess.run(
        [sys.executable, str(BATCH), "--", "--blend", str(scene_blend), "--audio", str(song), "--weights",
         str(tiny_weights), "--steps", "2", "--seed", "3", "--stage-radius", "0",
         "--out-blend", str(out_blend), "--out-bvh", str(out_bvh)],
        capture_output=True, text=True, env=_isolated_env(tmp_path), timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "dance: done" in run.stdout and out_bvh.stat().st_size > 1000

    bpy.ops.wm.open_mainfile(filepath=str(out_blend))
    obj = bpy.data.objects["Dancer"]
    action = obj.animation_data.action
    assert action.name == "Dance song any s3 take 1" and action.frame_range[:] == pytest.approx((1, 50))
    from engine.api import dance_style
    from engine.defaults import TRAINING_STYLES
    assert action["dance_drawn_style"] == dance_style("any", TRAINING_STYLES, 3, song)   # which style "any" danced
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (1, 50)
    assert "note: the scene's frame range is now 1-50 (it was 1-20)" in run.stderr      # and said so (QA33)
    got = scene_io.read_motion(obj, 12, 12).poses[0, 3 * JOINT_INDEX["left_elbow"]:][:3]
    assert rotation_error(got, aa) < 1e-4                     # the file's key came out exactly
    from engine.finishing.rootpath import IN_PLACE_SWAY                  # --stage-radius 0 reached the engine
    pelvis = scene_io.read_motion(obj, 1, 50).trans[:, [0, 2]]
    assert np.linalg.norm(pelvis[:, None] - pelvis[None], axis=2).max() <= 2 * IN_PLACE_SWAY + 0.01

    # --out-npz carries the dance's seed, style and beats (it said seed 0, style any, no beats).
    out_npz = tmp_path / "out.npz"
    run = subprocess.run(
        [sys.executable, str(BATCH), "--", "--blend", str(scene_blend), "--audio", str(song), "--weights",
         str(tiny_weights), "--steps", "2", "--seed", "7", "--out-npz", str(out_npz)],
        capture_output=True, text=True, env=_isolated_env(tmp_path), timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    saved = np.load(out_npz)
    from engine.api import dance_style
    from engine.defaults import TRAINING_STYLES
    assert int(saved["seed"]) == 7 and len(saved["beat_times"]) >= 1
    assert str(saved["style"]) == dance_style("any", TRAINING_STYLES, 7, song)   # the style "any" drew

    # Another song into a scene that has one: both would play in the saved file; batch.py says so
    # (QA: two overlapping songs, no word).
    other = tmp_path / "other.wav"
    other.write_bytes(song.read_bytes())
    run = subprocess.run(
        [sys.executable, str(BATCH), "--", "--blend", str(out_blend), "--audio", str(other), "--weights",
         str(tiny_weights), "--steps", "2", "--out-npz", str(tmp_path / "other.npz")],
        capture_output=True, text=True, env=_isolated_env(tmp_path), timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "still play beside other.wav" in run.stderr, run.stderr[-2000:]

    # A mistake: one line on stderr, exit status 1.
    bad = subprocess.run([sys.executable, str(BATCH), "--", "--audio", str(tmp_path / "nope.mp3"),
                          "--out-npz", str(tmp_path / "nope.npz")],
                         capture_output=True, text=True, env=_isolated_env(tmp_path), timeout=120, cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("error: song not found")


def test_batch_regenerates_a_frame_range_headless(tmp_path, tiny_weights):
    # QA: batch.py had no frame range and overrode one saved in the .blend: a section of a dance
    # could not be regenerated headless.
    song = add_wav(tmp_path, 2.0)
    first_run = tmp_path / "first.blend"
    common = [sys.executable, str(BATCH), "--", "--audio", str(song), "--weights", str(tiny_weights), "--steps", "2"]
    run = subprocess.run(common + ["--fps", "25", "--seed", "3", "--out-blend", str(first_run)],
                         capture_output=True, text=True, env=_isolated_env(tmp_path), timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    bpy.ops.wm.open_mainfile(filepath=str(first_run))
    obj = next(o for o in bpy.data.objects if o.type == 'ARMATURE')
    before = scene_io.read_motion(obj, 1, 50)
    drawn = obj.animation_data.action["dance_drawn_style"]

    out_blend, out_npz = tmp_path / "section.blend", tmp_path / "section.npz"
    run = subprocess.run(common + ["--blend", str(first_run), "--seed", "8", "--frame-range", "20", "30",
                                   "--out-blend", str(out_blend), "--out-npz", str(out_npz)],
                         capture_output=True, text=True, env=_isolated_env(tmp_path), timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "frames 20-30" in run.stdout
    bpy.ops.wm.open_mainfile(filepath=str(out_blend))
    obj = next(o for o in bpy.data.objects if o.type == 'ARMATURE')
    take = obj.animation_data.action
    assert take.name == "Dance song any s8 take 1" and take["dance_drawn_style"] == drawn   # the dance's style
    after = scene_io.read_motion(obj, 1, 50)
    outside = np.r_[0:19, 30:50]
    assert np.abs(after.poses[outside] - before.poses[outside]).max() < 1e-5                # the rest as it was
    assert np.abs(after.poses[19:30] - before.poses[19:30]).max() > 1e-3                    # the section anew
    assert Motion.load_npz(out_npz).num_frames == 11                                         # the section alone

    bad = subprocess.run(common + ["--blend", str(first_run), "--frame-range", "30", "20", "--out-npz",
                                   str(tmp_path / "x.npz")],
                         capture_output=True, text=True, env=_isolated_env(tmp_path), timeout=300, cwd=tmp_path)
    assert bad.returncode == 1 and "--frame-range needs FIRST <= LAST" in bad.stderr


def test_the_extension_ships_the_checkpoints_not_the_training_notes():
    # QA: TRAINING.md (117 kB) and a training config with the build machine's data paths were
    # packed beside the weights.
    import importlib.util
    spec = importlib.util.spec_from_file_location("build", REPO / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    shipped = build.default_weights()
    assert "dance.safetensors" in shipped and all(name.endswith(".safetensors") for name in shipped)


def test_built_extension_installs_and_dances(tmp_path, tiny_weights):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, str(REPO / "build.py"), "--out", str(dist), "--weights", str(tiny_weights)],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    (zip_path,) = dist.glob("*.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "vendor/engine/api.py" in names and "vendor/weights/dance.safetensors" in names
    assert not any("__pycache__" in n for n in names)
    assert not any(n.startswith(("vendor/engine/training/", "vendor/engine/evaluation/")) for n in names)
    assert "bench_keys.py" not in names                      # a developer's benchmark, not the runtime

    song = add_wav(tmp_path, 1.5)
    script = tmp_path / "install.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, bpy
        bpy.ops.wm.read_factory_settings(use_empty=True)
        assert bpy.ops.extensions.package_install_files(
            filepath={str(zip_path)!r}, repo="user_default", enable_on_install=True) == {{'FINISHED'}}
        import engine
        root = bpy.utils.user_resource('EXTENSIONS')
        assert engine.__path__[0].startswith(root), (engine.__path__, root)   # the vendored engine
        scene = bpy.context.scene
        scene.render.fps = 30
        editor = scene.sequence_editor_create()
        (editor.strips if hasattr(editor, "strips") else editor.sequences).new_sound("song", {str(song)!r}, 1, 1)   # before 4.4: sequences
        assert bpy.ops.dance.create_dancer() == {{'FINISHED'}}
        scene.dance.steps, scene.dance.quality = 2, 'BEST'
        assert bpy.ops.dance.generate() == {{'FINISHED'}}
        action = scene.dance.armature.animation_data.action
        print("OK", action.name, action.frame_range[1])
        # Disabled, its engine's folder leaves sys.path; enabled again, it dances as before.
        import addon_utils
        addon_utils.disable("bl_ext.user_default.dance_generator", default_set=True)
        assert not any("dance_generator" in p for p in sys.path), sys.path
        addon_utils.enable("bl_ext.user_default.dance_generator", default_set=True)
        assert bpy.ops.dance.generate() == {{'FINISHED'}}
        print("AGAIN", scene.dance.armature.animation_data.action.name)
        # An upgrade in the same session re-imports the add-on's modules (Blender forgets them):
        # the engine is then imported anew too, not kept from the version before.
        engine_before = sys.modules["engine"]
        addon_utils.disable("bl_ext.user_default.dance_generator", default_set=True)
        for name in [n for n in sys.modules if n.startswith("bl_ext.user_default.dance_generator")]:
            del sys.modules[name]
        addon_utils.enable("bl_ext.user_default.dance_generator", default_set=True)
        assert bpy.ops.dance.generate() == {{'FINISHED'}}
        assert sys.modules["engine"] is not engine_before and sys.modules["engine"].__path__[0].startswith(root)
        print("UPGRADED", scene.dance.armature.animation_data.action.name)
        sys.stdout.flush()
        import shutil; shutil.rmtree(bpy.app.tempdir, ignore_errors=True)   # what a normal exit removes
        os._exit(0)
    """))
    env = _isolated_env(tmp_path)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "OK Dance song any s0 take 1 45.0" in run.stdout
    assert "AGAIN Dance song any s0 take 2" in run.stdout
    assert "UPGRADED Dance song any s0 take 3" in run.stdout
    assert (tmp_path / "blender_user" / "extensions" / "user_default" / "dance_generator").is_dir()


def test_dependency_installer_reports_offline_plainly(tmp_path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    from blender_addon import preferences
    cmd = preferences.pip_command(str(tmp_path))
    assert cmd[:3] == [sys.executable, "-m", "pip"] and "--target" in cmd and "torch" in cmd
    assert any(c.startswith("numpy==") for c in cmd)             # Blender's numpy stays in charge
    # An index that refuses connections (loopback) stands in for "offline".
    env = dict(os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_NO_CACHE_DIR="1",
               PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS="", PIP_RETRIES="0")
    with pytest.raises(RuntimeError, match=r"offline.*install\.log"):
        preferences.install_dependencies(str(tmp_path / "deps"), env=env)
    assert (tmp_path / "deps" / "install.log").is_file()


def test_batch_killed_while_dancing_says_so_and_leaves_nothing_behind(tmp_path, tiny_weights):
    # SIGTERM (a timeout, a render farm's scheduler) ended batch.py at once: no cleanup, Blender's
    # session folder left in the temporary folder, and no line saying why.
    import signal
    song = add_wav(tmp_path, 20.0)
    out, temp = tmp_path / "out", tmp_path / "temp"
    out.mkdir()
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, str(BATCH), "--", "--audio", str(song), "--weights", str(tiny_weights),
                             "--steps", "400", "--out-blend", str(out / "shot.blend"), "--out-bvh",
                             str(out / "dance.bvh"), "--out-npz", str(out / "dance.npz")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**_isolated_env(tmp_path), "TMPDIR": str(temp)})
    # "dance:   0% ...": the dance is being drawn
    stderr = terminated_once(proc, lambda: proc.stdout.readline().startswith("dance:"))
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1] == "terminated", stderr
    assert list(out.iterdir()) == [] and list(temp.iterdir()) == [], (list(out.iterdir()), list(temp.iterdir()))
