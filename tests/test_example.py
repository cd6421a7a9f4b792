"""engine.example: the bundled synthetic song and the click track."""
import numpy as np
import pytest
import soundfile as sf

from engine.music.audio import detect_beats, load_audio
from engine.errors import EngineError
from engine.example import make_click_track, make_example_song


def test_example_song_file(tmp_path):
    path = make_example_song(tmp_path / "example.wav", seconds=8.0, bpm=120)
    info = sf.info(str(path))
    assert (info.format, info.samplerate, info.channels) == ("WAV", 44100, 2)
    assert info.frames == 8 * 44100
    data, _ = sf.read(str(path))
    assert 0.7 < np.abs(data).max() <= 0.8 + 1e-3
    assert np.abs(data[:, 0] - data[:, 1]).max() > 0.01          # a real stereo mix


def test_example_song_is_deterministic(tmp_path):
    a = make_example_song(tmp_path / "a.wav", seconds=4.0)
    b = make_example_song(tmp_path / "b.wav", seconds=4.0)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("bpm", [100, 120])
def test_example_song_beats_fall_on_the_kicks(tmp_path, bpm):
    path = make_example_song(tmp_path / "s.wav", seconds=10.0, bpm=bpm)
    wave, sr = load_audio(path)
    beats, tempo = detect_beats(wave, sr)
    period = 60.0 / bpm
    assert tempo == pytest.approx(bpm, rel=0.03)
    assert np.median(np.diff(beats)) == pytest.approx(period, abs=0.04)
    phase = (beats + period / 2) % period - period / 2           # distance to the nearest kick
    assert np.median(np.abs(phase)) < 0.05                      # on the kicks, not the off-beats


def test_click_track():
    sr = 8000
    clicks = make_click_track(2.0, 120, sr)
    assert clicks.dtype == np.float32 and clicks.shape == (2 * sr,)
    loud = np.flatnonzero(np.abs(clicks) > 0.1)
    onsets = loud[np.r_[True, np.diff(loud) > sr // 10]] / sr
    np.testing.assert_allclose(onsets, [0.0, 0.5, 1.0, 1.5], atol=2e-3)


def test_mistakes(tmp_path):
    with pytest.raises(EngineError, match="folder"):
        make_example_song(tmp_path / "missing" / "song.wav")
    with pytest.raises(EngineError):
        make_click_track(-1.0, 120, 44100)


def test_the_example_command_leaves_a_users_files_unless_forced(tmp_path):
    # Review: `python -m engine.example --out DIR` replaced a user's song.wav and dance.bvh there
    # without --force, wrote the song before refusing --steps 0, and --seconds 0 was a traceback.
    import subprocess
    import sys
    mine = tmp_path / "song.wav"
    mine.write_bytes(b"my own song")
    for extra, said in (([], "already has song.wav: add --force"), (["--steps", "0", "--force"], "--steps must be"),
                        (["--seconds", "0", "--force"], "--seconds must be")):
        run = subprocess.run([sys.executable, "-m", "engine.example", "--out", str(tmp_path), *extra],
                             capture_output=True, text=True)
        assert run.returncode == 2 and said in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert mine.read_bytes() == b"my own song"
