"""The dancer waits where the song is silent: finding the silences (engine.music.silence), holding
the dance still over them while sampling (engine.sampler.hold), and the finishing leaving the
hold still (engine.finishing.rootpath, the feet). Generation uses the tiny untrained checkpoint:
the hold is the sampler's and the finishing's doing, not something the network learned."""
import re
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.api import draw, finish_draw, generate
from engine.body import layout as L
from engine.body import rotations as R
from engine.body.motion import Constraints
from engine.body.skeleton import joint_positions
from engine.errors import EngineNote
from engine.example import synthesize_example
from engine.finishing.rootpath import bound_root_path
from engine.music.silence import MIN_SILENCE_SECONDS, frame_levels_db, silent_stretches
from engine.sampler.hold import _standing_anchor, held_stretches

SR = 22050


def _sound(seconds: float, gain: float = 1.0) -> np.ndarray:
    """Music that sounds throughout (a click track is silent between its clicks)."""
    return gain * synthesize_example(seconds=seconds, bpm=120.0, sr=SR).mean(axis=1).astype(np.float32)


def _silence(seconds: float, gain: float = 0.0) -> np.ndarray:
    return gain * np.random.default_rng(0).standard_normal(int(seconds * SR)).astype(np.float32)


def test_silences_of_a_second_or_more_are_found_quiet_music_is_not():
    parts = [_sound(2.0), _silence(1.5), _sound(2.0, gain=0.05),      # a passage 26 dB down: music
             _silence(0.5), _sound(2.0), _silence(1.2, gain=1e-4)]      # a short rest; a hiss 60+ dB down
    wave = np.concatenate(parts)
    frames = int(len(wave) / SR * 30)
    found = silent_stretches(wave, SR, frames)
    assert len(found) == 2, found
    (a0, b0), (a1, b1) = found
    assert abs(a0 - 60) <= 1 and abs(b0 - 104) <= 1                    # 2.0-3.5 s
    assert abs(a1 - 240) <= 1 and b1 == frames - 1                      # 8.0 s to the end
    assert all(b - a + 1 >= MIN_SILENCE_SECONDS * 30 for a, b in found)
    # An inaudible DC offset (QA: 0.002, and 0.01) is no sound: the silences are still found.
    for offset in (0.002, 0.01):
        assert silent_stretches(0.9 * wave + offset, SR, frames) == found
    assert silent_stretches(np.zeros(SR * 3, np.float32), SR, 90) == [(0, 89)]   # nothing sounds: all of it
    assert silent_stretches(_sound(4.0), SR, 120) == []


@pytest.mark.parametrize("fps", [24, 25, 29.97, 30, 60])
def test_each_frames_level_is_the_rms_of_its_own_span_about_its_mean(fps):
    """The fast per-span sums give each frame the level of exactly the samples around its time,
    also where a hop is fractional, at the song's ends, and for frames past its end (no samples)."""
    rng = np.random.default_rng(3)
    wave = (0.1 * rng.standard_normal(SR * 2 + 77) + 0.01).astype(np.float32)
    wave[: SR // 2] *= 1e-3                                                 # a quiet start
    frames = int(len(wave) / SR * fps) + 5
    hop = SR / fps
    expected = []
    for k in range(frames):
        lo = min(max(int(round((k - 0.5) * hop)), 0), len(wave))
        hi = min(max(int(round((k + 0.5) * hop)), 0), len(wave))
        span = wave[lo:hi].astype(np.float64)
        expected.append(10 * np.log10(max(span.var(), 1e-12)) if len(span) else -120.0)
    got = frame_levels_db(wave, SR, frames, fps)
    assert got.shape == (frames,)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[0] < -70 < -30 < got[frames // 2] and got[-1] == -120.0


def test_each_silence_waits_in_a_pose_next_to_it_unless_the_animator_keys_it():
    held = held_stretches([(0, 29), (100, 139), (270, 299)], 300)
    assert [(a, b) for a, b, _ in held] == [(0, 29), (100, 139), (270, 299)]
    intro, stop, tail = (c for _, _, c in held)
    assert intro[0] == 30 and list(intro) == sorted(intro)             # after a silent intro: where the music starts
    assert stop[0] == 99 and list(stop) == sorted(stop, reverse=True)  # a stop freezes where the music stopped
    assert tail[0] == 269
    keyed = np.zeros(300, bool)
    keyed[120] = True
    assert [(a, b) for a, b, _ in held_stretches([(0, 29), (100, 139)], 300, keyed)] == [(0, 29)]
    (whole,) = held_stretches([(0, 299)], 300)                          # silent throughout (review: it was
    assert whole[:2] == (0, 299) and list(whole[2]) == [0]             # danced): waits in its first pose
    start = np.zeros(300, bool)
    start[:2] = True                                                    # a start pose on the first frames
    (first, last, candidates), = held_stretches([(0, 29)], 300, start)
    assert (first, last, list(candidates)) == (0, 29, [1])             # is waited in
    start[10] = True                                                    # a second key in the silence
    assert held_stretches([(0, 29)], 300, start) == []                  # makes it the animator's


def test_the_held_pose_has_both_feet_down():
    """Of the frames next to a silence, the one whose feet are level is held, not the nearest
    one mid-step."""
    poses = torch.zeros(3, 24, 3, dtype=torch.float64)
    poses[0, 1] = torch.tensor([-1.2, 0.0, 0.0])                       # nearest: left thigh raised
    poses[1, 4] = torch.tensor([1.5, 0.0, 0.0])                        # then: left knee bent back
    raw = torch.zeros(3, L.NUM_CHANNELS, dtype=torch.float64)
    raw[:, L.ROT6D] = R.matrix_to_6d(R.axis_angle_to_matrix(poses)).reshape(3, -1)
    identity = L.Normalizer(torch.zeros(L.NUM_CHANNELS), torch.ones(L.NUM_CHANNELS))
    assert _standing_anchor(raw.float(), range(3), identity) == 2


def test_a_held_stretch_keeps_its_place_on_a_bounded_floor():
    t = np.arange(300) / 30.0
    trans = np.c_[1.5 * t, np.full(300, 0.9), 0.2 * t]                 # walks 15 m: the bound pulls it in
    held = np.zeros(300, bool)
    held[100:160] = True
    trans[100:160] = trans[99]
    trans[160:] -= trans[160] - trans[99]                               # and walks on from where it stood
    out = bound_root_path(trans, 30.0, None, held=held)
    assert np.abs(out[100:160] - out[99]).max() < 1e-12                 # the waiting dancer does not slide
    step = np.linalg.norm(np.diff(out[:, [0, 2]], axis=0), axis=1)
    assert step.max() < 1.6 * np.linalg.norm([1.5, 0.2]) / 30            # and no jump where it walks on


def _song_with_silences(path):
    sf.write(path, np.concatenate([_sound(2.0), _silence(2.0), _sound(2.0), _silence(1.5)]), SR)
    return path


def _mean_speed(m, seconds) -> float:
    frames = slice(int(seconds[0] * m.fps), int(seconds[1] * m.fps))
    pos = joint_positions(m.poses, m.trans)
    return float(np.linalg.norm(np.diff(pos[frames], axis=0), axis=-1).mean() * m.fps)


def test_the_dancer_waits_in_silence_and_dances_the_music(tmp_path, tiny_weights):
    song = _song_with_silences(tmp_path / "stops.wav")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        waits = generate(song, weights=tiny_weights, steps=2)
    notes = [str(w.message) for w in caught if issubclass(w.category, EngineNote)]
    assert any(n.startswith("the music is silent at 2.0-4.0 s, 6.0-7.5 s") for n in notes), notes
    dances = generate(song, weights=tiny_weights, steps=2, wait_in_silence=False)
    for silence in ((2.3, 3.7), (6.3, 7.5)):
        assert _mean_speed(waits, silence) < 0.01
        assert _mean_speed(dances, silence) > 0.1
    assert _mean_speed(waits, (0.3, 1.7)) > 0.1 and _mean_speed(waits, (4.3, 5.7)) > 0.1


def test_a_start_pose_waited_in_through_a_silent_intro_is_set_off_from_gently(tmp_path, tiny_weights):
    # QA: a start pose kept through a silent intro, and where the music starts the dance left it
    # at 0.9 m/s in one frame. The end of a keyed stillness is now eased out of
    # (engine.finishing.setoff): the first frames after it barely move.
    song = tmp_path / "intro.wav"
    sf.write(song, np.concatenate([_silence(2.0), _sound(3.0)]), SR)
    fps = 24.0
    c = Constraints.empty(120, fps).set_pose(0, np.random.default_rng(1).normal(0.0, 0.3, 72),
                                             root=np.array([0.0, 0.95, 0.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EngineNote)
        d = draw(song, weights=tiny_weights, steps=2, fps=fps, constraints=c)
    m = finish_draw(d)
    e = int(np.flatnonzero(d.constraints.joint_mask.any(axis=1))[-1])              # the wait's last frame
    speed = np.linalg.norm(np.diff(joint_positions(m.poses, m.trans), axis=0), axis=-1).max(axis=1) * fps
    print(f"the wait ends on frame {e}; fastest joint after it: {np.round(speed[e:e + 4], 3)} m/s "
          f"(0.87, 1.39, 1.61 before); 0.5-1.5 s on {np.median(speed[e + 12:e + 36]):.2f}")
    assert 1.7 * fps < e < 2.1 * fps
    assert speed[e:e + 3].max() < 0.1 * np.median(speed[e + 12:e + 36])


def test_the_silence_note_gives_the_songs_own_seconds(tmp_path, tiny_weights):
    # QA: from --start 10 the note said "silent at 0.0-10.0 s", seconds of the slice, not of the
    # song, which is where --start counts (a slice played at half speed: the song's seconds too).
    song = _song_with_silences(tmp_path / "stops.wav")                  # silent at 2.0-4.0 s and 6.0-7.5 s
    for speed in (1.0, 0.5):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            draw(song, weights=tiny_weights, steps=1, start=1.0, speed=speed)
        notes = [str(w.message) for w in caught if issubclass(w.category, EngineNote)]
        assert any(n.startswith("the music is silent at 2.0-4.0 s, 6.0-7.5 s: the dancer waits") for n in notes), notes


def test_a_key_in_a_silence_is_the_animators_to_direct(tmp_path, tiny_weights):
    song = _song_with_silences(tmp_path / "stops.wav")
    c = Constraints.empty(225, 30.0)
    c.joint_mask[90, 18] = True                                         # the left elbow keyed at 3 s
    c.poses[90, 54:57] = [0.0, 0.0, 1.2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = generate(song, weights=tiny_weights, steps=2, constraints=c)
    notes = [str(w.message) for w in caught if issubclass(w.category, EngineNote)]
    assert any(n.startswith("the music is silent at 6.0-7.5 s:") for n in notes), notes
    assert _mean_speed(m, (2.3, 3.7)) > 0.1 and _mean_speed(m, (6.3, 7.5)) < 0.01
    assert np.abs(m.poses[90, 54:57] - [0.0, 0.0, 1.2]).max() < 1e-4


@pytest.mark.parametrize("flag", [[], ["--dance-silence"]])
def test_the_command_line_waits_unless_asked_to_dance_silence(tmp_path, tiny_weights, flag):
    import subprocess
    import sys
    from conftest import REPO
    song = _song_with_silences(tmp_path / "stops.wav")
    out = tmp_path / "dance.npz"
    run = subprocess.run([sys.executable, "-m", "engine", "generate", str(song), "-o", str(out), "--steps", "2",
                          "--weights", str(tiny_weights), "--quiet", *flag], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert ("note: the music is silent at" in run.stderr) == (not flag)


def test_a_start_pose_is_held_through_a_silent_intro(tmp_path, tiny_weights):
    song = tmp_path / "intro.wav"
    sf.write(song, np.concatenate([_silence(2.0), _sound(3.0), _silence(1.5)]), SR)
    fps = 24.0
    c = Constraints.empty(156, fps)
    c.joint_mask[0, 1:] = True                                          # every joint but the pelvis
    c.poses[0, 3:] = np.random.default_rng(1).normal(0.0, 0.3, 69)
    c.joint_mask[96, 18] = True                                         # and an elbow at 4 s
    c.poses[96, 54:57] = [0.0, 0.0, 1.0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = generate(song, weights=tiny_weights, steps=2, fps=fps, constraints=c)
    assert any(str(w.message).startswith("the music is silent at 0.0-2.0 s, 5.0-6.5 s:") for w in caught)
    wait = slice(0, int(1.8 * fps))
    assert np.abs(m.poses[wait, 3:] - c.poses[0, 3:]).max() < 1e-4     # the start pose, all through the wait
    assert _mean_speed(m, (0.0, 1.8)) < 0.01
    assert _mean_speed(m, (2.3, 4.7)) > 0.1
    assert np.abs(m.poses[96, 54:57] - [0.0, 0.0, 1.0]).max() < 1e-4
    # The start pose is the intro's only: the music and the silent tail are the dance's own.
    assert np.abs(m.poses[int(2.5 * fps):, 3:] - c.poses[0, 3:]).max(axis=1).min() > 0.05
    assert _mean_speed(m, (5.3, 6.5)) < 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EngineNote)
        drawn = draw(song, weights=tiny_weights, steps=2, fps=fps, constraints=c)
    keyed = np.flatnonzero(drawn.constraints.joint_mask.any(1))
    assert keyed[-1] == 96 and set(keyed[:-1]) == set(range(len(keyed) - 1)) and 47 <= len(keyed) - 1 <= 49


def test_music_faded_out_by_a_gain_is_a_silence_and_a_gain_above_0_changes_nothing(tmp_path, tiny_weights):
    """QA: a sound strip faded out in Blender's sequencer (its volume keyed from 1 to 0 at frame 61
    and left there) was danced through the part nobody hears (mean joint speed 0.207 m/s over
    frames 80-180) where the same silence inside the file was waited in (0.000 m/s). The silence
    check now hears a gain envelope: music faded from 1 at 1.6 s to 0 at 2.0 s is silent from
    there to its end, as the file silent from 2 s is; a gain of 0 throughout is silence
    throughout; one that stays above 0 (down to 0.4) finds none. Through generate the fade is
    waited in with the same note, and a gain above 0 leaves the dance exactly as without one:
    the features and beats are the file's."""
    from engine.errors import EngineError
    music = _sound(6.0)
    fade = ([0.0, 1.6, 2.0], [1.0, 1.0, 0.0])
    (faded,) = silent_stretches(music, SR, 180, gain=fade)
    (in_file,) = silent_stretches(np.concatenate([_sound(2.0), _silence(4.0)]), SR, 180)
    assert faded[1] == in_file[1] == 179 and abs(faded[0] - in_file[0]) <= 2 and 57 <= faded[0] <= 60
    assert silent_stretches(music, SR, 180, gain=([0.0], [0.0])) == [(0, 179)]
    assert silent_stretches(music, SR, 180, gain=([0.0, 3.0, 3.5], [1.0, 1.0, 0.4])) == []
    assert silent_stretches(music, SR, 180) == []

    song = tmp_path / "music.wav"
    sf.write(song, music, SR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        waits = generate(song, weights=tiny_weights, steps=2, gain=fade)
    notes = [str(w.message) for w in caught if issubclass(w.category, EngineNote)]
    assert any(n.startswith("the music is silent at 2.0-6.0 s: the dancer waits there") for n in notes), notes
    assert _mean_speed(waits, (2.5, 5.8)) < 0.01 and _mean_speed(waits, (0.3, 1.5)) > 0.1
    plain = generate(song, weights=tiny_weights, steps=2)
    quieter = generate(song, weights=tiny_weights, steps=2, gain=([0.0, 3.0, 3.5], [1.0, 1.0, 0.4]))
    np.testing.assert_array_equal(quieter.poses, plain.poses)
    np.testing.assert_array_equal(quieter.trans, plain.trans)
    with pytest.raises(EngineError, match="gain must be a pair"):
        generate(song, weights=tiny_weights, steps=2, gain=([0.0, 1.0], [1.0]))


def test_a_recording_turned_far_down_is_said_to_be_quiet_in_one_span(tmp_path, tiny_weights):
    # QA: a song turned down 60 dB waited through all of it as silence (under -70 dBFS whatever
    # its own level), said as two spans side by side ("0.1-3.3 s, 3.3-10.0 s") and nothing more.
    path = tmp_path / "quiet.wav"
    sf.write(path, 0.001 * np.concatenate([_sound(10.0)]), SR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate(path, weights=tiny_weights, steps=2)
    notes = [str(w.message) for w in caught if issubclass(w.category, EngineNote)]
    said = [n for n in notes if n.startswith("the music is silent at ")]
    assert len(said) == 1 and len(re.findall(r"\d+\.\d-\d+\.\d s", said[0].split(":")[0])) == 1, said   # one span
    assert "the recording is very quiet" in said[0] and "raise its volume" in said[0], said
    # At its own level the same song waits nowhere.
    sf.write(path, np.concatenate([_sound(10.0)]), SR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate(path, weights=tiny_weights, steps=2)
    assert not [w for w in caught if str(w.message).startswith("the music is silent")]
