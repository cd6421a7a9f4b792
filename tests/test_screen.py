"""engine.evaluation.screen: weights scored from a pack of analysed music, with no audio at hand,
give the figures engine.evaluation.evaluate gives from the songs themselves."""
import numpy as np
import pytest

from engine.errors import EngineError
from engine.evaluation import evaluate as E
from engine.evaluation import screen as S
from engine.evaluation.genre_set import GenreSong

from test_evaluate import click_track, pulsing_dance


def tiny_pack(folder):
    """A screen pack of one 4 s validation clip of a click track (no genre songs)."""
    click_track(folder / "val.wav", 5.0)
    val = pulsing_dance("val_song", 4.0)
    val.audio_path = str(folder / "val.wav")
    train = [pulsing_dance(f"train_{i}", 12.0, phase=i * 4) for i in range(2)]
    clips, train_clips = E.scored_clips(train, [val], 4.0)
    pack = folder / "screen.npz"
    S.write_pack(pack, S.pack_arrays(clips, [], len(clips[0].positions), E.reference_features(train_clips)))
    return pack


def test_a_pack_scores_as_the_songs_do(tmp_path, tiny_weights):
    songs = tmp_path / "songs"
    songs.mkdir()
    click_track(songs / "val.wav", 9.0)
    click_track(songs / "electro.wav", 8.5)                        # danced whole: two 4 s pieces
    val = pulsing_dance("val_song", 8.0)
    val.audio_path, val.audio_offset = str(songs / "val.wav"), 0.5
    train = [pulsing_dance(f"train_{i}", 12.0, phase=i * 4, amplitude=0.01 + 0.01 * i) for i in range(3)]
    genre = [GenreSong(name="electro", path=songs / "electro.wav", tempo_bpm=120.0, genre="electronic", mood="happy")]
    seeds = [3, 9]

    generators = {E.DEFAULT_ROW: E.api_generator(tiny_weights, steps=4)}
    expected = E.evaluate(train, [val], clip_seconds=4.0, generators=generators, seeds=seeds,
                          every_seed=(E.DEFAULT_ROW,), genre_set=genre)

    clips = E.cut_clips([val], 4.0)
    frames = len(clips[0].positions)
    pack = tmp_path / "packed" / "screen.npz"
    S.write_pack(pack, S.pack_arrays(clips, E.genre_clips(genre, 4.0), frames,
                                     E.reference_features(E.training_clips(train, frames))))
    for wav in songs.iterdir():                                     # nothing is read from the songs now
        wav.unlink()
    arrays = S.read_pack(pack)
    got = S.score(arrays, pack.parent, tiny_weights, seeds, device="cpu", steps=4)

    mean = f"{E.DEFAULT_ROW}, mean of 2 seeds"
    for key in ("bas_bailando", "pfc", "foot_skating", "jerk", "speed", "fid_k", "div_k", "fid_g"):
        assert got["validation"][key] == pytest.approx(expected[mean][key], rel=1e-6, abs=1e-9), key
        assert got["genres"][key] == pytest.approx(expected[f"genres: {mean}"][key], rel=1e-6, abs=1e-9), key
    assert got["validation"]["num_clips"] == 2 and got["genres"]["num_clips"] == 2
    assert got["validation, spread"]["speed"] > 0                   # two seeds, two dances
    assert S.real_scores(arrays)["fid_k"] == pytest.approx(expected["real"]["fid_k"])


def test_a_file_that_is_not_a_pack_is_refused(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(EngineError, match="not a screen pack"):
        S.read_pack(bad)
    (tmp_path / "y.npz").write_text("garbage")
    with pytest.raises(EngineError, match="not a screen pack"):
        S.read_pack(tmp_path / "y.npz")


def test_an_out_the_pack_cannot_go_to_is_refused_before_the_work(tmp_path, capsys):
    # QA: a folder as --out failed after all the packing; an existing pack was overwritten.
    existing = tmp_path / "screen.npz"
    existing.write_bytes(b"kept")
    for out, says in ((tmp_path, "is a folder"), (existing, "pass --force")):
        assert S.main(["pack", "--out", str(out), "--data", str(tmp_path / "no-such-data")]) == 2  # QA26: 1
        assert says in capsys.readouterr().err
    assert existing.read_bytes() == b"kept"


def test_scoring_needs_neither_librosa_nor_soundfile(tmp_path, tiny_weights):
    """A lent GPU has neither: the packed music is all the score reads."""
    import subprocess
    import sys
    from conftest import REPO
    pack = tiny_pack(tmp_path)
    script = ("import sys; sys.modules['librosa'] = None; sys.modules['soundfile'] = None\n"
              "from engine.evaluation.screen import main\n"
              f"sys.exit(main(['score', '--pack', {str(pack)!r}, '--weights', {str(tiny_weights)!r}, '--steps', '2',"
              f" '--device', 'cpu', '--out', {str(tmp_path / 'screen.json')!r}]))")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "real dancers (validation)" in run.stdout and (tmp_path / "screen.json").is_file()
