"""The open genre set's loader, on a folder and licence file made here."""
import numpy as np
import pytest
import soundfile as sf

from engine.errors import EngineError
from engine.evaluation.genre_set import genre_songs, parse_track_list

LICENCE = """All music in this directory was generated locally.

calm/
  calm_acoustic_1.opus                 68 bpm  C major   seed 101  [acoustic]
  calm_electronic_s411.opus            72 bpm  D major   seed 411  [electronic]

energetic/
  energetic_electronic_2.opus         150 bpm  G minor   seed 202  [electronic]
"""


def test_parse_track_list_reads_tempo_and_genre():
    tracks = parse_track_list(LICENCE)
    assert tracks == {"calm_acoustic_1.opus": (68.0, "acoustic"),
                      "calm_electronic_s411.opus": (72.0, "electronic"),
                      "energetic_electronic_2.opus": (150.0, "electronic")}


def test_genre_songs_pairs_files_with_their_listed_tempo(tmp_path):
    (tmp_path / "tracks" / "calm").mkdir(parents=True)
    (tmp_path / "tracks" / "energetic").mkdir()
    wave = np.zeros(4800, np.float32)
    for rel in ("calm/calm_acoustic_1.opus", "energetic/energetic_electronic_2.opus", "calm/unlisted.opus"):
        sf.write(tmp_path / "tracks" / rel, wave, 48000, format="OGG", subtype="OPUS")
    licence = tmp_path / "LICENSE-MUSIC"
    licence.write_text(LICENCE)
    songs = genre_songs(tmp_path / "tracks", licence)
    assert [(s.name, s.tempo_bpm, s.genre, s.mood) for s in songs] == [
        ("calm_acoustic_1", 68.0, "acoustic", "calm"), ("energetic_electronic_2", 150.0, "electronic", "energetic")]
    assert sf.info(songs[0].path).samplerate == 48000
    with pytest.raises(EngineError, match="no listed track"):
        genre_songs(tmp_path / "LICENSE-MUSIC-nowhere", licence)
