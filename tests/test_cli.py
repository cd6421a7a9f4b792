"""The command line's and batch.py's option checks: one shared validation (engine.options), run
before any generation starts, one clear line per mistake."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, terminated_once
from engine.errors import EngineError
from engine.options import BODY_PART_NAMES, check_options, parse_body_parts

BATCH = REPO / "blender_addon" / "batch.py"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=REPO, capture_output=True, text=True)


def test_generate_help_names_the_styles_command_that_exists():
    text = " ".join(_cli("generate", "--help").stdout.split())
    assert "--list-styles" not in text and "python -m engine styles" in text
    assert "--stage-radius" in text and "0 = dance in place" in text
    styles = _cli("styles")
    assert styles.returncode == 0 and "chacha" in styles.stdout.split()


@pytest.mark.parametrize("extra,message", [
    (["--scale", "-1"], "scale must be more than 0"),
    (["--duration", "60"], "runs past the end of the song"),
    (["--start", "6.5"], "past the end of the song"),
    (["--stage-radius", "-2"], "stage radius"),
    (["--steps", "0"], "steps"),
    (["--guidance", "nan"], "guidance"),
    (["--seed", "99999999999999999999"], "seed must be a whole number from 0 to 2147483647"),
    (["--seed", "-5"], "seed must be a whole number"),
])
def test_options_are_refused_before_any_generation(click_song, tiny_weights, tmp_path, extra, message):
    out = tmp_path / "d.npz"
    # No --quiet: had generation started, the progress bar would have written to stderr too.
    r = _cli("generate", click_song, "-o", out, "--weights", tiny_weights, *extra)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and message in r.stderr
    assert "dancing" not in r.stderr and not out.exists()


@pytest.mark.parametrize("tool", sorted(__import__("engine.__main__", fromlist=["TOOLS"]).TOOLS))
def test_every_tool_has_its_own_help(tool):
    # QA: 'salsa-check --help' took --help for a file name and printed nothing.
    r = _cli(tool, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: python -m engine {tool}"), r.stdout[:200] + r.stderr[-500:]


def test_salsa_check_names_a_missing_path(tmp_path):
    r = _cli("salsa-check", tmp_path / "missing")
    assert r.returncode == 2 and "not found" in r.stderr


def test_a_folder_as_the_song_is_called_a_folder(tmp_path):
    r = _cli("generate", tmp_path, "-o", tmp_path / "d.npz")
    assert r.returncode == 2 and "is a folder" in r.stderr and "not found" not in r.stderr


def test_a_web_address_or_an_output_ending_in_a_slash_is_refused_in_its_own_words(click_song, tmp_path):
    # QA: a URL said "song not found: http:/example.com/song.mp3" (one slash folded away), and
    # "-o dir.npz/" wrote the file dir.npz.
    r = _cli("generate", "http://example.com/song.mp3", "-o", tmp_path / "d.npz")
    assert r.returncode == 2 and "is a web address" in r.stderr and "http://example.com" in r.stderr
    r = _cli("generate", click_song, "-o", f"{tmp_path / 'dir.npz'}/")
    assert r.returncode == 2 and "ends in a slash" in r.stderr and not (tmp_path / "dir.npz").exists()


def test_the_same_output_twice_is_an_error(click_song, tmp_path):
    r = _cli("generate", click_song, "-o", tmp_path / "d.bvh", "-o", tmp_path / "sub" / ".." / "d.bvh")
    assert r.returncode == 2 and "given twice" in r.stderr


def test_an_output_that_is_an_input_is_refused_even_with_force(tmp_path):
    # Review: `-o clip.mp4 --force` replaced the song (a video) with the preview, and `-o keys.npz`
    # replaced the --constraints file with the dance; batch.py already refused the same.
    song, keys = tmp_path / "clip.mp4", tmp_path / "keys.npz"
    song.write_bytes(b"the user's video")
    keys.write_bytes(b"the user's keys")
    for extra, said in ((["-o", song], "is the song"), (["--constraints", keys, "-o", keys], "is the --constraints file")):
        r = _cli("generate", song, *extra, "--force")
        assert r.returncode == 2 and said in r.stderr and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert song.read_bytes() == b"the user's video" and keys.read_bytes() == b"the user's keys"


@pytest.mark.parametrize("extra", [["--quality", "Fast"], ["--seed", "1.5"], ["--up-axis", "w"]])
def test_an_option_typo_is_one_line(click_song, tmp_path, extra):
    # QA: argparse printed a 14-line usage block before the error.
    r = _cli("generate", click_song, "-o", tmp_path / "d.npz", *extra)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert r.stderr.startswith("error: ") and "--help" in r.stderr


def test_an_npz_output_is_written_under_exactly_its_name(click_song, tiny_weights, tmp_path):
    # QA: "-o U.NPZ" wrote U.NPZ.npz (numpy adds the suffix it lacks, in that case), so a second run
    # without --force replaced that file unchecked.
    out = tmp_path / "U.NPZ"
    r = _cli("generate", click_song, "-o", out, "--weights", tiny_weights, "--steps", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["U.NPZ"]
    r = _cli("generate", click_song, "-o", out, "--weights", tiny_weights, "--steps", "2", "--quiet")
    assert r.returncode == 2 and "already exists" in r.stderr

    # The .npz reads back whole, the music's beats too (QA26: load_npz dropped them).
    from engine.body.motion import Motion
    again = Motion.load_npz(out)
    assert again.beat_times.size > 0 and again.beat_times.dtype == np.float64
    again.save_npz(tmp_path / "again.npz")
    assert np.array_equal(Motion.load_npz(tmp_path / "again.npz").beat_times, again.beat_times)


def test_an_unknown_command_names_every_command():
    # QA26: argparse named only its own two, "choose from 'generate', 'styles'".
    r = _cli("nosuchcmd")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert all(name in r.stderr for name in ("generate", "styles", "train", "distill", "evaluate", "bench"))

def test_an_unwritable_output_folder_is_refused_before_generating(click_song, tiny_weights, tmp_path):
    # /proc exists but takes no new files, even for root (a read-only file system behaves alike;
    # QA: a traceback after the whole generation).
    for bad in ("/proc/dance.npz", "/proc/dance.bvh"):
        r = _cli("generate", click_song, "-o", tmp_path / "ok.npz", "-o", bad, "--weights", tiny_weights)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "cannot be written" in r.stderr
        assert "dancing" not in r.stderr and not (tmp_path / "ok.npz").exists()
    # An output "folder" that is a file is named as one (QA33: "the folder ... does not exist").
    (tmp_path / "take.txt").write_text("x")
    r = _cli("generate", click_song, "-o", tmp_path / "take.txt" / "dance.npz", "--weights", tiny_weights)
    assert r.returncode == 2 and f"{tmp_path / 'take.txt'} is a file, not a folder" in r.stderr, r.stderr


def test_a_garbage_mp3_gives_one_line(tmp_path, tiny_weights):
    song = tmp_path / "garbage.mp3"
    song.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    (tmp_path / "sub").mkdir()
    r = _cli("generate", song, "-o", tmp_path / "d.npz", "--weights", tiny_weights, "--quiet")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "cannot read audio file" in r.stderr and "Note:" not in r.stderr


def test_shared_validation_in_python():
    check_options(style="any", styles=["any"], steps=1, fps=24, start=0, duration=5, guidance=2, autoguidance=1,
                  scale=100, stage_radius=0, song_seconds=5.0)
    with pytest.raises(EngineError, match="unknown style 'cha-cha'; available: any, chacha"):
        check_options(style="cha-cha", styles=["any", "chacha"])
    with pytest.raises(EngineError, match="runs past the end"):
        check_options(start=2.0, duration=4.0, song_seconds=5.0)
    check_options(guidance_lowpass=0.0, sampling_eta=1.0, seed=2**31 - 1)
    for seed in (2**31, -1, 1.5, True):
        with pytest.raises(EngineError, match="seed must be a whole number from 0"):
            check_options(seed=seed)
    with pytest.raises(EngineError, match="guidance_lowpass must be 0"):
        check_options(guidance_lowpass=float("nan"))
    with pytest.raises(EngineError, match="sampling_eta must be between 0"):
        check_options(sampling_eta=1.5)
    check_options(sampling_solver="ddim", sampling_eta=0.5)
    with pytest.raises(EngineError, match="unknown sampling solver 'euler'; available: ddim, dpm2m"):
        check_options(sampling_solver="euler")
    with pytest.raises(EngineError, match="needs the ddim solver"):
        check_options(sampling_solver="dpm2m", sampling_eta=0.5)
    assert parse_body_parts("arms, left_leg") == ["arms", "left_leg"]
    assert "arms" in BODY_PART_NAMES and "root" not in BODY_PART_NAMES
    assert parse_body_parts("arms,root", allow_root=True) == ["arms", "root"]
    with pytest.raises(EngineError, match="unknown body part"):
        parse_body_parts("root")
    with pytest.raises(EngineError, match="unknown body part.*wings"):
        parse_body_parts("wings", allow_root=True)


def test_api_uses_the_same_validation(click_song, tiny_weights):
    from engine.api import generate
    with pytest.raises(EngineError, match="stage radius"):
        generate(click_song, weights=tiny_weights, steps=1, stage_radius=-1.0)
    with pytest.raises(EngineError, match="runs past the end"):
        generate(click_song, weights=tiny_weights, steps=1, duration=30.0)
    with pytest.raises(EngineError, match="sampling_eta"):
        generate(click_song, weights=tiny_weights, steps=1, sampling_eta=-0.1)


def test_fallback_style_list_is_the_training_styles():
    from engine.defaults import TRAINING_STYLES
    from engine.training.train import BASE_STYLES
    assert "chacha" in TRAINING_STYLES and "cha-cha" not in TRAINING_STYLES
    assert BASE_STYLES == list(TRAINING_STYLES)
    props = (REPO / "blender_addon" / "properties.py").read_text()
    assert "FALLBACK_STYLES = TRAINING_STYLES" in props


def _batch(tmp_path, *args):
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, str(BATCH), "--", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)


def test_batch_refuses_zero_steps_and_unknown_parts_before_opening_anything(tmp_path, tiny_weights):
    pytest.importorskip("bpy")
    missing = tmp_path / "missing.blend"        # would be "not found" if the scene were opened first
    r = _batch(tmp_path, "--blend", missing, "--steps", "0", "--weights", tiny_weights)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == ["error: steps must be a whole number from 1 to 1000, got 0"]
    r = _batch(tmp_path, "--blend", missing, "--keep", "arms,wings", "--weights", tiny_weights)
    assert r.returncode == 1 and "unknown body part(s) wings" in r.stderr
    r = _batch(tmp_path, "--blend", missing, "--stage-radius", "-1", "--weights", tiny_weights)
    assert r.returncode == 1 and "stage radius" in r.stderr
    r = _batch(tmp_path, "--blend", missing, "--seed", str(2**31), "--weights", tiny_weights)
    assert r.returncode == 1 and "seed must be a whole number from 0 to 2147483647" in r.stderr
    # Nothing to save would throw the dance away; an existing output needs --force.
    r = _batch(tmp_path, "--blend", missing, "--weights", tiny_weights)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: nothing would be saved: give --out-blend, --out-bvh or --out-npz"]
    taken = tmp_path / "taken.npz"
    taken.write_bytes(b"the animator's file")
    r = _batch(tmp_path, "--blend", missing, "--weights", tiny_weights, "--out-npz", taken)
    assert r.returncode == 1 and "exists: pass --force" in r.stderr and taken.read_bytes() == b"the animator's file"
    # A mistyped value is the same one line and exit 1 (argparse printed its usage, exit 2), and
    # a file that is no .blend is named so before Blender prints its own error.
    r = _batch(tmp_path, "--blend", missing, "--seed", "abc")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("error: argument --seed: invalid int value")
    r = _batch(tmp_path, "--blend", taken, "--weights", tiny_weights, "--out-npz", tmp_path / "o.npz")
    assert r.returncode == 1 and r.stderr.strip() == f"error: cannot open {taken}: not a .blend file"
    assert "Error" not in r.stdout
    # An output that is another output or an input: one line, even with --force (QA: --out-bvh
    # naming the --blend scene or the --audio song replaced it with BVH text).
    song = tmp_path / "song.wav"
    song.write_bytes(b"the animator's song")
    for extra, message in ((["--audio", song, "--out-bvh", song], "is the --audio file"),
                           (["--out-npz", taken, "--out-bvh", tmp_path / "sub" / ".." / "taken.npz"], "is also given as"),
                           (["--out-npz", missing], "is the --blend file")):
        r = _batch(tmp_path, "--blend", missing, "--weights", tiny_weights, "--force", *extra)
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [r.stderr.strip()] and message in r.stderr, r.stderr
    assert song.read_bytes() == b"the animator's song" and taken.read_bytes() == b"the animator's file"
    # Each output must be named as what it holds (review: `--out-bvh x.npz` wrote BVH text there).
    for flag, name in (("--out-bvh", "x.npz"), ("--out-blend", "i.txt"), ("--out-npz", "d.bvh")):
        r = _batch(tmp_path, "--blend", missing, "--weights", tiny_weights, flag, tmp_path / name)
        assert r.returncode == 1 and "the file name must end in" in r.stderr and not (tmp_path / name).exists()


def test_batch_without_a_song_names_its_audio_option(tmp_path, tiny_weights):
    # The panel's words ("add the song in the Video Sequencer") would send a shell user to a menu.
    pytest.importorskip("bpy")
    r = _batch(tmp_path, "--weights", tiny_weights, "--out-npz", tmp_path / "d.npz")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: no song: the scene has no sound strip; give one with --audio FILE"], r.stderr
    assert not (tmp_path / "d.npz").exists()


def test_batch_with_several_songs_in_the_scene_names_its_audio_option(tmp_path, tiny_weights):
    # QA: "select one in the sequencer or pick it in the Dance panel", a headless tool's user told
    # to use the UI.
    bpy = pytest.importorskip("bpy")
    import soundfile as sf
    bpy.ops.wm.read_factory_settings(use_empty=True)
    from blender_addon.blender_compat import top_strips
    strips = top_strips(bpy.context.scene.sequence_editor_create())          # `strips`, or `sequences` before 4.4
    for k in range(2):
        sf.write(tmp_path / f"song{k}.wav", np.zeros(22050, np.float32), 22050)
        strips.new_sound(f"song{k}", str(tmp_path / f"song{k}.wav"), k + 1, 1)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "two.blend"))
    r = _batch(tmp_path, "--blend", tmp_path / "two.blend", "--weights", tiny_weights, "--out-npz", tmp_path / "d.npz")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: 2 sound strips in the scene and none picked: name the song with --audio FILE"], r.stderr
    assert not (tmp_path / "d.npz").exists()


def test_batch_says_which_option_fixes_a_wrong_armature(tmp_path, tiny_weights):
    # QA: --armature Cube was told to "press 'Create SMPL Dancer'", a panel's button.
    bpy = pytest.importorskip("bpy")
    import soundfile as sf
    bpy.ops.wm.read_factory_settings(use_empty=False)          # the default scene's Cube
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "cube.blend"))
    sf.write(tmp_path / "song.wav", np.zeros(22050, np.float32), 22050)
    r = _batch(tmp_path, "--blend", tmp_path / "cube.blend", "--audio", tmp_path / "song.wav", "--armature", "Cube",
               "--weights", tiny_weights, "--out-npz", tmp_path / "d.npz")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (
        "error: 'Cube' is not an armature: give --armature an armature's name, or leave it out for the scene's "
        "SMPL dancer or a new one"), r.stderr
    assert not (tmp_path / "d.npz").exists()


def test_batch_checks_its_song_and_frame_start_as_the_command_line_does(tmp_path, tiny_weights):
    # QA: --audio FOLDER said "audio file not found" once the scene was built (the command line: "is
    # a folder"); --frame-start outside Blender's frames, or a song running past its last frame,
    # was clamped without a word (a dance at frames 1048574-1048765).
    pytest.importorskip("bpy")
    import soundfile as sf
    missing = tmp_path / "missing.blend"        # would be "not found" if the scene were opened first
    out = ["--weights", tiny_weights, "--out-npz", tmp_path / "d.npz"]
    for audio, said in ((tmp_path, f"the song {tmp_path} is a folder, not an audio file"),
                        (tmp_path / "none.wav", f"song not found: {tmp_path / 'none.wav'}")):
        r = _batch(tmp_path, "--blend", missing, "--audio", audio, *out)
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [f"error: {said}"], r.stderr
    for frame in (-100000000, -1048575, 1048575):
        r = _batch(tmp_path, "--blend", missing, "--frame-start", frame, *out)
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [
            f"error: --frame-start must be a frame from -1048574 to 1048574 (Blender's range), got {frame}"], r.stderr
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros(8 * 22050, np.float32), 22050)                  # 8 s: 192 frames at 24 fps
    r = _batch(tmp_path, "--audio", song, "--fps", 24, "--frame-start", 1048574 - 190, *out)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: --frame-start 1048384: the song (8.0 s) would play to frame 1048575, past Blender's last frame "
        "1048574"], r.stderr
    assert "dance:" not in r.stdout and not (tmp_path / "d.npz").exists()


def test_batch_refuses_a_file_that_is_no_audio_before_loading_the_model(tmp_path, tiny_weights):
    # QA: its progress line ("0% loading the model") came first, then the error.
    pytest.importorskip("bpy")
    garbage = tmp_path / "song.mp3"
    garbage.write_bytes(b"this is no audio\n" * 100)
    r = _batch(tmp_path, "--audio", garbage, "--weights", tiny_weights, "--out-npz", tmp_path / "d.npz")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"error: cannot read audio file {garbage}: not a supported audio format, or corrupt"], r.stderr
    assert "dance:" not in r.stdout and not (tmp_path / "d.npz").exists()


def _batch_options(tmp_path, tiny_weights, *options):
    """batch.py's options checked (check_args) in a fresh bpy process -> (the run, the keep toggles)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import batch; "
            "a = batch.parse_args(['x', '--', *sys.argv[3:], '--weights', sys.argv[2]]); batch.check_args(a); "
            "print(sorted(a.keep_toggles))")
    r = subprocess.run([sys.executable, "-c", code, str(BATCH.parent), str(tiny_weights), *options],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    return r, (r.stdout.strip().splitlines() or [""])[-1]


def test_batch_keep_accepts_the_engines_part_names(tmp_path, tiny_weights):
    pytest.importorskip("bpy")
    r, toggles = _batch_options(tmp_path, tiny_weights, "--keep", "arms,root")
    assert r.returncode == 0, r.stderr[-2000:]
    assert toggles == "['left_arm', 'right_arm', 'root']"
    assert _batch_options(tmp_path, tiny_weights, "--keep", "all")[1] == "['head', 'left_arm', 'legs', 'right_arm', 'torso']"
    # QA: both legs, which --help lists, were refused one at a time; together they are the legs.
    r, toggles = _batch_options(tmp_path, tiny_weights, "--keep", "left_leg,right_leg,head")
    assert r.returncode == 0 and toggles == "['head', 'legs']", r.stderr[-2000:]
    r, _ = _batch_options(tmp_path, tiny_weights, "--keep", "left_leg,arms")    # one leg alone it cannot keep
    assert r.returncode != 0 and "left_leg alone is not one of them" in r.stderr.strip().splitlines()[-1]


def test_batch_says_when_steps_override_the_fast_quality(tmp_path, tiny_weights):
    """QA: --quality fast --steps 10 ran the slow many-step model without a word, where the command
    line says so."""
    pytest.importorskip("bpy")
    r, _ = _batch_options(tmp_path, tiny_weights, "--quality", "fast", "--steps", "10")
    assert r.returncode == 0 and "quality 'fast' uses the many-step model" in r.stderr, r.stderr[-2000:]
    r, _ = _batch_options(tmp_path, tiny_weights, "--quality", "fast")
    assert "many-step" not in r.stderr


def test_batch_reads_its_options_with_or_without_the_separator(tmp_path):
    # With the bpy module, `python batch.py --help` has no Blender options to skip; inside the
    # Blender binary, everything before `--` is Blender's and must not be read.
    pytest.importorskip("bpy")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import batch; "
            "print(batch.parse_args([str(batch.Path(batch.__file__)), '--seed', '7']).seed, "
            "batch.parse_args(['/usr/bin/blender', '-b', '--python', 'batch.py', '--', '--seed', '5']).seed, "
            "batch.parse_args(['/usr/bin/blender', '-b', '--seed', '9']).seed)")
    r = subprocess.run([sys.executable, "-c", code, str(BATCH.parent)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "7 5 0"
    # It also leaves no Blender session folder behind (os._exit skips Blender's own clean-up).
    temp = tmp_path / "temp"
    temp.mkdir()
    r = subprocess.run([sys.executable, str(BATCH), "--help"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300, env={**os.environ, "TMPDIR": str(temp)})
    assert r.returncode == 0 and "--out-blend" in r.stdout
    assert list(temp.iterdir()) == []


def test_a_note_is_a_line_of_its_own_under_the_progress_bar(click_song, tiny_weights, tmp_path):
    # Quality fast with no student beside the weights: the engine notes that the many-step model
    # dances. Printed while the bar is drawn, the note must not be glued onto the bar's line.
    r = _cli("generate", click_song, "-o", tmp_path / "d.npz", "--weights", tiny_weights, "--steps", "2",
             "--quality", "fast")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.replace("\r", "\n").splitlines()
    notes = [line for line in lines if "note:" in line]
    assert notes == ["note: no few-step student beside tiny.safetensors: quality 'fast' uses the many-step model"]


def test_a_constraints_file_that_is_not_one_gets_one_clear_line(tmp_path, click_song):
    bad = tmp_path / "keys.npz"
    bad.write_bytes(click_song.read_bytes())                  # a WAV under an .npz name
    single = tmp_path / "one.npy"
    np.save(single, np.zeros(3))
    thin = tmp_path / "thin.npz"
    np.savez(thin, poses=np.zeros((2, 72)))
    for path, message in ((tmp_path / "none.npz", "constraints file not found"), (bad, "not an .npz archive"),
                          (single, "not an .npz archive"), (thin, "lacks trans, joint_mask, trans_mask")):
        r = _cli("generate", click_song, "-o", tmp_path / "d.npz", "--constraints", path)
        assert r.returncode == 2 and message in r.stderr and "pickle" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_the_solver_flag_reaches_the_sampler(click_song, tiny_weights, tmp_path):
    from engine.api import generate
    outs = {}
    for solver in ("ddim", "dpm2m"):
        outs[solver] = tmp_path / f"{solver}.npz"
        # 4 steps: the second-order solver extrapolates on the middle ones only (first order into t = 0).
        r = _cli("generate", click_song, "-o", outs[solver], "--weights", tiny_weights, "--steps", "4",
                 "--solver", solver, "--quiet")
        assert r.returncode == 0, r.stderr
    poses = {k: np.load(v)["poses"] for k, v in outs.items()}
    assert not np.allclose(poses["ddim"], poses["dpm2m"], atol=1e-5)
    direct = generate(str(click_song), weights=tiny_weights, steps=4, sampling_solver="ddim")
    np.testing.assert_allclose(poses["ddim"], direct.poses, atol=1e-4)
    r = _cli("generate", click_song, "-o", tmp_path / "x.npz", "--weights", tiny_weights, "--solver", "euler")
    assert r.returncode == 2 and "invalid choice: 'euler'" in r.stderr and not (tmp_path / "x.npz").exists()


def test_tools_check_their_options_in_one_line():
    # Review: `evaluate-inbetween --clips 0` blamed the data folder; `bench --lengths 0` was a traceback.
    for args, said in ((["evaluate-inbetween", "--clips", "0"], "--clips must be 1 or more"),
                       (["bench", "--lengths", "0"], "song lengths must be"), (["bench", "--steps", "0"], "--steps must be")):
        r = _cli(*args)
        assert r.returncode == 2 and said in r.stderr and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr


def test_a_one_frame_dance_is_said_in_the_singular_and_never_as_zero_seconds(tmp_path, tiny_weights):
    # QA: a 10 ms song printed "1 frames at 30 fps (0.0 s)".
    import soundfile as sf
    song = tmp_path / "blip.wav"
    sf.write(song, np.zeros(441, np.float32), 44100)
    r = _cli("generate", song, "-o", tmp_path / "blip.npz", "--weights", tiny_weights, "--steps", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "1 frame at 30 fps (0.033 s)" in r.stdout, r.stdout


def test_sigterm_while_the_preview_renders_leaves_no_temporary_file(tmp_path, tiny_weights):
    # QA: SIGTERM (kill, timeout, a batch scheduler) while the preview rendered ended the process at
    # once and left its hidden .preview-PID-*.mp4 in the output folder; Ctrl-C was clean.
    import signal
    import soundfile as sf
    from engine.example import make_click_track
    song = tmp_path / "song.wav"
    sf.write(song, make_click_track(20.0, 120.0, 22050), 22050)      # a preview of some seconds to render
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "engine", "generate", str(song), "-o", str(out / "d.npz"),
                             "-o", str(out / "d.mp4"), "--weights", str(tiny_weights), "--steps", "1", "--quiet"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr = terminated_once(proc, lambda: any("mp4" in p.name for p in out.iterdir()))   # ffmpeg writes
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1] == "terminated", stderr
    assert sorted(p.name for p in out.iterdir()) == []                # the temp files removed: no d.npz, no d.mp4


@pytest.fixture
def pythons_own_ctrl_c():
    """Python's own Ctrl-C handler in place, as in a fresh command, whatever the suite ran before."""
    import signal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signal_name, exit_status, said", [("SIGTERM", 143, "terminated"),
                                                             ("SIGINT", 130, "interrupted")])
def test_a_signal_that_a_library_turns_into_another_exception_still_ends_the_command_as_that_signal(
        monkeypatch, capsys, pythons_own_ctrl_c, signal_name, exit_status, said):
    # CI: SIGTERM while matplotlib drew the preview came out of pybind11's argument conversion as
    # a TypeError ("incompatible function arguments"): a traceback and exit status 1.
    import signal
    import time
    import engine.__main__ as cli

    def library_call(argv):
        try:
            signal.raise_signal(getattr(signal, signal_name))    # to this thread: handled at once
            time.sleep(5)                                    # the handler raises here
        except BaseException:
            raise TypeError("incompatible function arguments") from None
        return 0

    monkeypatch.setattr(cli, "_main", library_call)
    assert cli.main([]) == exit_status
    assert capsys.readouterr().err.strip() == said


def test_ctrl_c_that_the_command_reports_itself_is_said_once(monkeypatch, capsys, pythons_own_ctrl_c):
    import signal
    import time
    import engine.__main__ as cli
    from engine.errors import in_one_line

    def interrupted_command(argv):
        def command():
            signal.raise_signal(signal.SIGINT)
            time.sleep(5)                                    # KeyboardInterrupt here
            return 0
        return in_one_line(command)                          # says "interrupted", 130

    monkeypatch.setattr(cli, "_main", interrupted_command)
    assert cli.main([]) == 130
    assert capsys.readouterr().err.splitlines() == ["interrupted"]


def test_an_error_with_no_signal_is_not_taken_for_one(monkeypatch):
    import engine.__main__ as cli

    def broken(argv):
        raise TypeError("a real bug")

    monkeypatch.setattr(cli, "_main", broken)
    with pytest.raises(TypeError, match="a real bug"):
        cli.main([])


def test_song_beats_puts_a_slice_on_its_whole_songs_beats(tiny_weights, tmp_path):
    # QA: --start 1 --duration 4 of this song danced every beat half a beat off the whole song's.
    from engine.evaluation.genre_set import genre_songs
    from engine.music.audio import music_for_dance
    song = next(s.path for s in genre_songs() if s.name == "happy_electronic_s411")
    whole = music_for_dance(song).beats
    for flag, on_them in (([], False), (["--song-beats"], True)):
        out = tmp_path / f"d{len(flag)}.npz"
        r = _cli("generate", song, "--start", 1, "--duration", 4, "--weights", tiny_weights, "--steps", 2,
                 "-o", out, "--quiet", *flag)
        assert r.returncode == 0, r.stderr
        beats = np.load(out)["beat_times"] + 1.0
        off = np.median(np.abs(beats[:, None] - whole[None]).min(axis=1))
        assert (off < 1e-6) == on_them and (off > 0.2) != on_them, off
