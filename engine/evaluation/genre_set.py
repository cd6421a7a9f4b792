"""The open genre set: songs of genres the training data lacks, for evaluation only.

The pip package `immich-memories-music` (MIT) ships 29 clips of about 30 s, acoustic and
electronic, 68-150 bpm, generated with ACE-Step (no third-party recordings). Its licence file lists
every clip with its tempo, key, seed and genre tag, one line each, e.g.
    calm_acoustic_1.opus                 68 bpm  C major   seed 101  [acoustic]
The listed tempo is what the generator was asked for, not a measurement: on 12 of the 28 songs
the beat tracker (engine.music.audio) finds 4/3, 2/3 or 2x of it, and on most of those the onset
envelope's strongest autocorrelation peak agrees with the tracker (2026-12-01). So the evaluation
scores against the tracked beats, as for any song, and keeps the listed tempo only as a label.
The package's folder holds the clips as tracks/<mood>/<name>.opus (soundfile decodes Opus).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError

PACKAGE = "immich-memories-music"
MODULE = "immich_memories_music"
_TRACK_LINE = re.compile(r"^\s*(?P<file>\S+\.(?:opus|ogg|wav|mp3|flac))\s+(?P<bpm>\d+(?:\.\d+)?)\s*bpm\b"
                         r".*\[(?P<genre>[^\]]+)\]\s*$")


@dataclass(frozen=True)
class GenreSong:
    name: str            # file stem, e.g. "calm_acoustic_1"
    path: Path
    tempo_bpm: float     # as the licence file lists it
    genre: str           # "acoustic" or "electronic"
    mood: str            # the folder: calm, energetic, happy, ...


def parse_track_list(text: str) -> dict[str, tuple[float, str]]:
    """Licence text -> {file name: (tempo in bpm, genre tag)} for every track line."""
    out = {}
    for line in text.splitlines():
        m = _TRACK_LINE.match(line)
        if m:
            out[m["file"]] = (float(m["bpm"]), m["genre"].strip())
    return out


def _installed() -> tuple[Path, Path]:
    """(tracks folder, licence file) of the installed package."""
    import importlib.metadata as md
    import importlib.util
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(f"the open genre set is not installed: pip install {PACKAGE}")
    tracks = Path(list(spec.submodule_search_locations)[0]) / "tracks"
    licences = [f for f in md.distribution(PACKAGE).files or [] if Path(str(f)).name.startswith("LICENSE-MUSIC")]
    if not licences:
        raise EngineError(f"{PACKAGE} is installed without its LICENSE-MUSIC track list")
    return tracks, Path(str(licences[0].locate()))


def genre_songs(tracks: Path | None = None, licence: Path | None = None) -> list[GenreSong]:
    """Every listed track that exists under `tracks` (default: the installed package's), sorted by
    name. A track on disk that the licence does not list is left out (its tempo is unknown)."""
    if tracks is None or licence is None:
        found_tracks, found_licence = _installed()
        tracks, licence = tracks or found_tracks, licence or found_licence
    listed = parse_track_list(Path(licence).read_text(encoding="utf-8"))
    songs = []
    for path in sorted(Path(tracks).glob("*/*")):
        if path.name in listed:
            bpm, genre = listed[path.name]
            songs.append(GenreSong(name=path.stem, path=path, tempo_bpm=bpm, genre=genre, mood=path.parent.name))
    if not songs:
        raise EngineError(f"no listed track found under {tracks}")
    return songs
