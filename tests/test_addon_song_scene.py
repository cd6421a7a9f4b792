"""A song in Blender 5.0's Sequencer Scene (blender_addon.song_scene), in the real bpy module.

The Video Sequencer of 5.0 shows its workspace's Sequencer Scene, which may be another scene
than the dancer's: a song dropped there was 'no sound strip' to the add-on. Blender 4.x has no
sequencer scene, so these run in the 5.0 module (CI: .ci/addon-in-blender 5.0.1)."""
from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import operators, scene_io, song_scene  # noqa: E402
from blender_addon import blender_compat as compat  # noqa: E402
from engine.errors import EngineError  # noqa: E402
from addon_helpers import enabled_addon  # noqa: E402
from test_addon_scene_io import add_wav  # noqa: E402

pytestmark = pytest.mark.skipif("sequencer_scene" not in bpy.types.WorkSpace.bl_rna.properties,
                                reason="Blender 5.0's Sequencer Scene: not in this bpy")

FPS = 24
SONG_SECONDS = 2.5


@pytest.fixture
def addon(tiny_weights):
    with enabled_addon(tiny_weights) as scene:
        yield scene


def _edit_scene(dancer_scene, tmp_path, song_frame=10, shot_frame=5, fps=FPS):
    """A sequencer scene 'Edit' picked in the workspace, holding the song from `song_frame` and a
    scene strip showing the dancer's scene from `shot_frame` (the manual's set-up)."""
    dancer_scene.render.fps, dancer_scene.render.fps_base = FPS, 1.0
    edit = bpy.data.scenes.new("Edit")
    edit.render.fps, edit.render.fps_base = fps, 1.0
    song = scene_io.add_sound_strip(edit, str(add_wav(tmp_path, SONG_SECONDS)), frame_start=song_frame, channel=1)
    shot = compat.top_strips(edit.sequence_editor).new_scene("Shot", dancer_scene, 2, shot_frame)
    bpy.context.workspace.sequencer_scene = edit
    assert bpy.context.scene == dancer_scene and compat.sequencer_scene(bpy.context) == edit
    return edit, song, shot


def test_a_song_in_the_sequencer_scene_is_danced_where_its_scene_strip_shows_the_dancer(addon, tmp_path):
    scene = addon
    edit, song, shot = _edit_scene(scene, tmp_path, song_frame=10, shot_frame=5)
    assert bpy.ops.dance.create_dancer() == {'FINISHED'}
    obj = scene.dance.armature
    scene.dance.steps, scene.dance.quality = 2, 'BEST'
    # The shot shows the dancer's frame 1 on the edit's frame 5: the song's first frame, the
    # edit's 10, is the dancer's 6, and all 2.5 s of it are heard there.
    p = operators.plan(scene, scene.dance, compat.sequencer_scene(bpy.context))
    heard = round(SONG_SECONDS * FPS)
    assert (p.first, p.last, p.strip) == (6, 6 + heard - 1, song)
    assert p.start_seconds == pytest.approx(0.0)
    request = operators.build_request(bpy.context)
    assert (request.frame_start, request.num_frames) == (6, heard)
    assert any("Video Sequencer's scene 'Edit'" in n and "'Shot'" in n for n in request.notes)
    # Without the sequencer scene (Blender 4.x), the same scene has no song.
    with pytest.raises(scene_io.NoSoundStrip):
        operators.plan(scene, scene.dance)

    assert bpy.ops.dance.generate() == {'FINISHED'}
    action = obj.animation_data.action
    assert tuple(action.frame_range) == (6.0, 6.0 + heard - 1)
    assert not compat.all_strips(scene) and len(compat.all_strips(edit)) == 2     # nothing added or moved
    assert (song.frame_start, shot.frame_start) == (10, 5)


def test_the_shot_trimmed_and_offset_moves_and_cuts_the_song(addon, tmp_path):
    scene = addon
    edit, song, shot = _edit_scene(scene, tmp_path, song_frame=10, shot_frame=5)
    shot.animation_offset_start = 3        # the shot starts 3 frames into the dancer's scene
    shot.frame_final_end = 40              # and ends (its right handle) on the edit's frame 40
    where = song_scene.where_the_song_plays(scene, edit)
    assert (where.scene, where.shift, where.shown) == (edit, 1 + 3 - 5, (5, 40))
    p = operators.plan(scene, scene.dance, edit)
    # Heard with the dancer on the edit's frames 10-39: the dancer's 9-38, from the file's start.
    assert (p.first, p.last) == (9, 38)
    assert p.start_seconds == pytest.approx(0.0)
    assert p.file_seconds(38) == pytest.approx(29 / FPS)
    # A shot that starts after the song has begun: the dance starts there, that far into the song.
    shot.frame_final_start = 20
    p = operators.plan(scene, scene.dance, edit)
    assert (p.first, p.start_seconds) == (19, pytest.approx(10 / FPS))
    # The song's volume keyed on the edit's frames is read there, moved with the frames.
    song.volume = 0.5
    assert np.allclose(operators.plan(scene, scene.dance, edit).span.volumes, 0.5)


def test_where_the_sequencer_scene_cannot_be_danced_one_line_says_what_to_do(addon, tmp_path):
    scene = addon
    edit, song, shot = _edit_scene(scene, tmp_path)
    shot.mute = True                                       # nothing shows the dancer's scene
    with pytest.raises(EngineError, match=r"no scene strip there shows 'Scene': add one \(Add > Scene > Scene\)"):
        operators.plan(scene, scene.dance, edit)
    shot.mute = False
    other = compat.top_strips(edit.sequence_editor).new_scene("Shot 2", scene, 3, 100)
    with pytest.raises(EngineError, match="different timings"):
        operators.plan(scene, scene.dance, edit)
    compat.top_strips(edit.sequence_editor).remove(other)
    edit.render.fps = 30
    with pytest.raises(EngineError, match="runs at 30 fps, and 'Scene' at 24: set both to the same frame rate"):
        operators.plan(scene, scene.dance, edit)
    edit.render.fps = FPS
    shot.frame_final_start, shot.frame_final_end = 200, 240   # shown only after the song has ended
    with pytest.raises(EngineError, match="they never meet"):
        operators.plan(scene, scene.dance, edit)
    assert len(compat.all_strips(edit)) == 2 and song.frame_start == 10    # nothing of the user's changed


def test_the_dancers_own_song_comes_first(addon, tmp_path):
    scene = addon
    edit, _, _ = _edit_scene(scene, tmp_path)
    own = scene_io.add_sound_strip(scene, str(add_wav(tmp_path, 1.0, "own.wav")), frame_start=30)
    p = operators.plan(scene, scene.dance, edit)
    assert p.strip == own and p.first == 30 and not p.song_scene.is_elsewhere
    assert bpy.ops.dance.create_dancer() == {'FINISHED'}
    notes = operators.build_request(bpy.context).notes           # and says the edit's song plays too
    assert any("'Edit' also plays 'song.wav'" in n and "follows 'own.wav'" in n for n in notes), notes
    # A muted scratch track (or one at volume 0) is no song: the edit's is danced (QA: it hid it).
    for silence in ("mute", "volume"):
        setattr(own, silence, True if silence == "mute" else 0.0)
        p = operators.plan(scene, scene.dance, edit)
        assert p.song_scene.is_elsewhere and p.strip.name == "song.wav" and p.first == 6
        setattr(own, silence, False if silence == "mute" else 1.0)
    # The sequencer showing the dancer's own scene is no other scene.
    assert song_scene.where_the_song_plays(scene, scene).scene == scene


def test_batch_dances_the_song_of_a_saved_files_sequencer_scene(tmp_path, tiny_weights):
    import os
    import subprocess
    import sys
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    _edit_scene(scene, tmp_path, song_frame=10, shot_frame=5)
    scene_io.create_smpl_armature(bpy.context, "Dancer", with_mesh=False)
    blend = tmp_path / "edit.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    batch = os.path.join(os.path.dirname(operators.__file__), "batch.py")
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    env.pop("PYTHONPATH", None)
    # Without --audio, and with --audio naming the song the edit already plays (QA: it was added
    # to the dancer's scene again, the two copies playing 5 frames apart).
    for audio in ([], ["--audio", str(tmp_path / "song.wav")]):
        out = tmp_path / "out.blend"
        run = subprocess.run([sys.executable, batch, "--", "--blend", str(blend), "--weights", str(tiny_weights),
                              "--steps", "2", "--out-blend", str(out), "--force"] + audio,
                             capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "Video Sequencer's scene 'Edit'" in run.stderr, run.stderr[-2000:]
        bpy.ops.wm.open_mainfile(filepath=str(out))
        action = bpy.data.objects["Dancer"].animation_data.action
        assert tuple(action.frame_range) == (6.0, 6.0 + round(SONG_SECONDS * FPS) - 1)
        assert not compat.all_strips(bpy.data.scenes["Scene"])           # no song added to the dancer's scene
        assert len(compat.all_strips(bpy.data.scenes["Edit"])) == 2
