"""The song's analysis in a second process, started before torch is imported.

A fresh `python -m engine generate` spends about a second importing torch and loading the
weights, and about two decoding the song and analysing it (librosa and numba imports
included). Neither needs the other until sampling starts, so on a machine with two cores or more
the command forks a child for the music first (engine.music imports no torch) and collects its
engine.music.audio.DanceMusic when the network needs it.

Only where `fork` is the platform's safe default (Linux): a child must not need to re-import
anything, or there is nothing to gain. Elsewhere, or on one core, `start` returns None and the
music is analysed in line as before.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import warnings

from ..errors import EngineError, EngineNote


def _child(send, source: str, start: float, duration: float | None, song_beats: bool = False) -> None:
    try:
        from .audio import music_for_dance
        # The analysis's notes (EngineNote: a file cut short, ...) go to the parent, which says them.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EngineNote)
            music = music_for_dance(source, start=start, duration=duration, song_beats=song_beats)
        notes = [(str(w.message), w.category) for w in caught if issubclass(w.category, EngineNote)]
        send.send((True, (music, notes)))
    except EngineError as e:
        send.send((False, str(e)))
    except KeyboardInterrupt:          # Ctrl-C reaches the whole process group: the parent reports it
        pass
    except Exception:                  # anything else: the parent analyses in line, which shows the error
        send.send((None, None))
    finally:
        send.close()


class MusicInBackground:
    """A running analysis of one file slice: `result()` waits for it."""

    def __init__(self, source, start: float, duration: float | None, song_beats: bool = False):
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(send, str(source), start, duration, song_beats),
                                              daemon=True)
        self._process.start()
        send.close()

    def result(self):
        """The DanceMusic, or None if the child failed unexpectedly (then analyse in line)."""
        try:
            ok, value = self._receive.recv()
        except EOFError:               # the child died without a word
            ok, value = None, None
        finally:
            self._receive.close()
            self._process.join()
        if ok is False:
            raise EngineError(value)
        if not ok:
            return None
        music, notes = value
        for message, category in notes:
            warnings.warn(message, category)
        return music

    def cancel(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._receive.close()


def start(source, start: float = 0.0, duration: float | None = None, song_beats: bool = False) -> MusicInBackground | None:
    """Start analysing a file slice in a child process, where that pays; else None."""
    if not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2 or "torch" in sys.modules:
        return None                    # fork after torch has started its threads is not safe
    return MusicInBackground(source, start, duration, song_beats)
