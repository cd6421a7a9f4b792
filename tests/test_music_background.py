"""The command line's song analysis in a second process (engine.music.background): the same
result as in line, errors that still read as one line, and a slice it was not made from ignored."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import REPO
from engine.api import generate
from engine.music.audio import music_for_dance

# Run in a fresh interpreter: the analysis forks only before torch is imported, as in the command.
_IN_BACKGROUND = """
import json, sys
from engine.errors import EngineError
from engine.music import background
pending = background.start(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
assert pending is not None and "torch" not in sys.modules
try:
    m = pending.result()
except EngineError as e:
    print(json.dumps({"error": str(e)}))
else:
    print(json.dumps({"seconds": m.seconds, "features": m.features.tolist(), "beats": m.beats.tolist(),
                      "source": list(m.source)}))
"""


def _in_background(song, start, duration) -> dict:
    r = subprocess.run([sys.executable, "-c", _IN_BACKGROUND, str(song), str(start), str(duration)], cwd=REPO,
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def test_the_background_analysis_is_the_inline_one(click_song):
    got = _in_background(click_song, 1.0, 4.0)
    want = music_for_dance(click_song, start=1.0, duration=4.0)
    assert got["seconds"] == want.seconds and list(got["source"]) == list(want.source)
    np.testing.assert_array_equal(np.asarray(got["features"], np.float32), want.features)
    np.testing.assert_array_equal(np.asarray(got["beats"]), want.beats)
    assert len(want.beats) > 0


def test_a_background_error_is_the_inline_error(tmp_path):
    song = tmp_path / "garbage.wav"
    song.write_bytes(b"RIFF" + np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    got = _in_background(song, 0.0, 2.0)
    assert "cannot read audio file" in got["error"] and "\n" not in got["error"]


def test_an_analysis_of_another_slice_is_not_used(click_song, tiny_weights):
    wrong = music_for_dance(click_song, start=0.0, duration=3.0)      # another slice of the same file
    kwargs = dict(start=1.0, duration=3.0, weights=tiny_weights, seed=3)
    with_wrong = generate(click_song, analysed_music=wrong, **kwargs)
    plain = generate(click_song, **kwargs)
    np.testing.assert_array_equal(with_wrong.poses, plain.poses)
    right = music_for_dance(click_song, start=1.0, duration=3.0)
    np.testing.assert_array_equal(generate(click_song, analysed_music=right, **kwargs).poses, plain.poses)


_NOTES_IN_BACKGROUND = """
import sys, warnings
from engine.errors import EngineNote
from engine.music import background
pending = background.start(sys.argv[1], 0.0, None)
assert pending is not None
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pending.result()
print([str(w.message) for w in caught if issubclass(w.category, EngineNote)])
"""


def test_the_background_analysis_passes_its_notes_on(tmp_path):
    # A file cut short is said by the analysis (engine.music.audio); from the second process the
    # note was lost, and the command said nothing.
    import soundfile as sf
    whole, cut = tmp_path / "whole.mp3", tmp_path / "cut.mp3"
    sf.write(str(whole), 0.3 * np.random.default_rng(0).standard_normal(6 * 44100), 44100, format="MP3")
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    r = subprocess.run([sys.executable, "-c", _NOTES_IN_BACKGROUND, str(cut)], cwd=REPO,
                       capture_output=True, text=True, check=True)
    assert "cut.mp3 ends after" in r.stdout and "its header says 6.00 s" in r.stdout
