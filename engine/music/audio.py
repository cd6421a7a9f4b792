"""Song in, model conditioning out: decoding, EDGE-style music features, beat times.

Everything is resampled onto one grid, FEATURE_SR = MODEL_FPS * HOP samples per second with a
hop of HOP samples, so that one feature frame is exactly one motion frame (EDGE's choice:
30 fps * 512 = 15360 Hz). Decoding streams the file block by block through a soxr resampler,
so a long song never sits in memory at its native rate.
"""
from __future__ import annotations

import contextlib
import functools
import math
import numbers
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..defaults import MODEL_FPS, WINDOW_FRAMES
from ..errors import EngineError, EngineNote
from .numba_cache import librosa as cached_librosa   # imported on first use, its kernels cached
from .metre import metrical_tempo
from .silence import SOUNDING_DB, frame_levels_db, silent_stretches_of

HOP = 512                          # samples per feature frame (EDGE)
FEATURE_SR = MODEL_FPS * HOP       # the rate every waveform is resampled to
N_MFCC = 20
N_CHROMA = 12
N_MELS = 128                       # librosa's default mel bands, from which the MFCCs come

# The 35 feature channels per frame, in order (EDGE's "baseline" features), defined once here.
_CHANNEL_SIZES = (
    ("onset_envelope", 1),     # onset strength (spectral flux of the mel spectrum)
    ("mfcc", N_MFCC),          # timbre
    ("chroma_cens", N_CHROMA), # harmony, smoothed and energy-normalised
    ("onset_peak", 1),         # 1 on frames where an onset is picked
    ("beat", 1),               # 1 on frames where the beat tracker puts a beat
)
FEATURE_CHANNELS: dict[str, slice] = {}
for _name, _size in _CHANNEL_SIZES:
    _at = sum(s.stop - s.start for s in FEATURE_CHANNELS.values())
    FEATURE_CHANNELS[_name] = slice(_at, _at + _size)
NUM_MUSIC_FEATURES = 35
assert max(s.stop for s in FEATURE_CHANNELS.values()) == NUM_MUSIC_FEATURES

_BLOCK = 1 << 16                   # frames decoded at a time
_MIN_ANALYSIS_SAMPLES = 1 << 16    # shorter clips are zero-padded: librosa's CQT needs ~2 s
# Analysis chunks and their overlap (the CQT and CENS smoothing reach ~2 s): a long song is cut
# into one chunk per worker thread, each 30 s to 3 minutes long (a peak of about 0.12 GB each).
_CHUNK_S, _MIN_CHUNK_S, _MARGIN_S = 180.0, 30.0, 5.0
_MAX_WORKERS = 8
_SILENCE_PEAK = 1e-4               # below this peak amplitude (-80 dBFS) a clip counts as silent

# Mixing to mono. The channels' mean is what a mono speaker plays, but where the channels are in
# opposite phase (a polarity-flipped channel, a miswired recording) it cancels: a song playing
# loud in stereo reached the beat tracker as near silence and was danced to no beat. Where the
# mean keeps less than MIX_CANCELLED of the channels' mean power, the first channel is taken
# instead. Uncorrelated channels of equal power keep half of it, so real stereo never comes near.
MIX_CANCELLED = 0.1

# Recording level. The first MFCC is the frame's mean log-mel power in absolute dB, so the same
# song turned down 10 dB would get another (calmer) dance. Each clip's log-mel spectrum is
# shifted so that its level (song_level_db) is REFERENCE_LEVEL_DB before the MFCCs: the level
# within a song (a quiet verse, a loud chorus) still moves the first MFCC, the file's gain no
# longer does. A slice of a file is levelled as the whole file is (whole_song_level_db), so a
# regenerated quiet bridge stays as quiet as it is in the whole song's dance. The reference is
# the median level of tang2018's 51 training songs (10-90%: 22.1-33.1 dB), so a typical
# training song keeps the features the network learned on.
REFERENCE_LEVEL_DB = 28.85         # dB of total mel power, librosa's scale (ref 1)

# Tempo that drifts (a live band speeding up, rubato). librosa's beat tracker holds one tempo
# for the whole song, so a song going from 80 to 130 bpm was danced to a 120 bpm grid, 0.2 s
# off its beats for the first 10 s. The local tempo (autocorrelation over TEMPO_WINDOW_S,
# drawn towards the song's global tempo so it cannot jump an octave) is median-smoothed; where
# it moves by more than TEMPO_DRIFT, the tracker follows it. Steady songs keep the one tempo:
# of tang2018's 55 songs and the open genre set's 28, four trigger it, with identical beats.
TEMPO_WINDOW_S = 8.0               # librosa's default autocorrelation window
TEMPO_PRIOR_OCTAVES = 0.25         # spread of the pull towards the global tempo
TEMPO_SMOOTHING_S = 6.0            # median over this long: a fill or a break is not a tempo change
TEMPO_DRIFT = 1.08                 # 95th over 5th percentile of the local tempo that counts as drift


# ----------------------------------------------------------------------------- decoding

def load_audio(source, sample_rate: float | None = None, start: float = 0.0,
               duration: float | None = None, speed: float = 1.0) -> tuple[np.ndarray, int]:
    """Decode a song (or take a numpy waveform) as mono float32 at FEATURE_SR.

    source: a path to any file libsndfile reads (wav, flac, ogg, mp3, ...; others go through
    ffmpeg when imageio-ffmpeg is installed), or a numpy array (S,), (S, C) or (C, S); the
    shorter axis of a 2-D array is taken as channels. sample_rate: the rate of a numpy source
    (required then); a file's header gives its own rate, so it is ignored for files.
    start, duration: seconds; only that slice is decoded.
    speed: the audio as played `speed` times as fast as recorded, pitch and all (a tape, or a
    sound strip retimed in Blender's sequencer): the slice, start and duration still in the
    source's own seconds, comes out 1/speed as long.
    Returns (wave (S',) float32, FEATURE_SR).
    """
    if start is None:
        start = 0.0
    if isinstance(speed, bool) or not isinstance(speed, numbers.Real) or not (math.isfinite(speed) and speed > 0):
        raise EngineError(f"audio speed must be a positive number (1 = as recorded), got {speed!r}")
    if not math.isfinite(start) or start < 0:
        raise EngineError(f"audio start must be a time in seconds >= 0, got {start}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise EngineError(f"audio duration must be a positive number of seconds, got {duration}")
    check_source(source)
    if isinstance(source, np.ndarray):
        wave = _from_array(source, sample_rate, start, duration, speed)
    else:
        wave = _from_file(Path(source), start, duration, speed)
    return wave, FEATURE_SR


def check_source(source) -> None:
    """One line for a song that is neither a file path nor a numpy waveform (its type, never the
    value: a list was printed whole, 1.6 MB), or an empty waveform."""
    if not isinstance(source, (np.ndarray, str, Path)):
        raise EngineError(f"audio must be a file path or a numpy array, got {type(source).__name__}")
    if isinstance(source, np.ndarray) and source.size == 0:
        raise EngineError("the audio waveform is empty (0 samples)")


def _from_array(x: np.ndarray, sample_rate, start: float, duration, speed: float = 1.0) -> np.ndarray:
    import soxr
    from ..options import check_sample_rate
    check_sample_rate(sample_rate)
    if np.issubdtype(x.dtype, np.integer):  # PCM integers: full scale is 1.0 (unsigned: centred)
        info = np.iinfo(x.dtype)
        x = (x.astype(np.float32) - (info.max + 1) / 2 * (info.min == 0)) / float((info.max - info.min + 1) / 2)
    elif not np.issubdtype(x.dtype, np.floating):
        raise EngineError(f"a numpy waveform must hold numbers, got dtype {x.dtype}")
    if x.ndim == 2:
        x = _mono(x if x.shape[0] >= x.shape[1] else x.T)
    elif x.ndim != 1:
        raise EngineError(f"a numpy waveform must be 1-D or 2-D (samples, channels), got shape {x.shape}")
    total = x.shape[0]
    first = int(round(start * sample_rate))
    if first >= total:
        raise EngineError(f"audio start {start:.10g} s is at or beyond the end of the audio "
                          f"({total / sample_rate:.10g} s long)")
    last = total if duration is None else min(total, first + int(round(duration * sample_rate)))
    x = np.ascontiguousarray(x[first:last], dtype=np.float32)
    if not np.isfinite(x).all():
        raise EngineError("the audio waveform holds NaN or infinite samples")
    if sample_rate * speed != FEATURE_SR:     # played faster, its samples come at a higher rate
        x = soxr.resample(x, sample_rate * speed, FEATURE_SR, quality="HQ").astype(np.float32, copy=False)
    if x.size == 0:      # a sample or two, gone in resampling
        if last < total:                   # the waveform has more: the duration asked is what is short
            raise EngineError(_too_short_duration(duration, sample_rate))
        raise EngineError(f"the audio waveform is too short to dance ({total - first} sample"
                          f"{'s' * (total - first != 1)} at {sample_rate:g} Hz)")
    return x


@contextlib.contextmanager
def _native_stderr_silenced():
    """Discard what native libraries write to the process's stderr meanwhile: libsndfile's mp3
    decoder (mpg123) prints "Note: Illegal Audio-MPEG-Header ..." lines for a corrupt file, on
    top of the one clear error the caller gets. Python's own sys.stderr is left alone."""
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):
        yield                          # no real file descriptor (embedded): nothing to silence
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def audio_seconds(path) -> float | None:
    """The length of an audio file in seconds from its header, without decoding it; None when
    libsndfile cannot read the header (formats that go through ffmpeg) or it gives no length,
    and when soundfile is not installed (the add-on's panel before its dependencies are)."""
    try:
        import soundfile as sf
        with _native_stderr_silenced():
            info = sf.info(str(path))
    except Exception:
        return None
    if not info.samplerate or info.frames <= 0:
        return None
    return info.frames / info.samplerate


def waveform_seconds(x, sample_rate) -> float | None:
    """The length of a numpy waveform in seconds (samples along its longer axis, as load_audio
    reads it); None when it is not one load_audio would take."""
    shape = np.shape(x)
    if not shape or len(shape) > 2 or not sample_rate or not math.isfinite(sample_rate) or sample_rate <= 0:
        return None
    return max(shape) / float(sample_rate)


def check_readable(path) -> None:
    """EngineError in one line if `path` is no audio file that load_audio decodes, read from its
    first samples only: a script can say so before a model loads (batch.py printed its first
    progress line, then the error)."""
    path = Path(path)
    with _native_stderr_silenced():
        import soundfile as sf
        try:
            sf.info(str(path))
            return
        except Exception:
            pass
    try:
        _from_file(path, 0.0, _PROBE_SECONDS)
    except EngineError as e:
        if not str(e).startswith("start + duration"):     # a file shorter than the probe reads
            raise


# check_readable decodes this much of a file libsndfile cannot open (through ffmpeg).
_PROBE_SECONDS = 0.05


def _from_file(path: Path, start: float, duration, speed: float = 1.0) -> np.ndarray:
    with _native_stderr_silenced():
        return _from_file_loud(path, start, duration, speed)


def _from_file_loud(path: Path, start: float, duration, speed: float = 1.0) -> np.ndarray:
    import soundfile as sf   # the audio libraries load on use: training from packed data needs none
    if path.is_dir():
        raise EngineError(f"audio path is a folder, not a file: {path}")
    if not path.exists():
        raise EngineError(f"audio file not found: {path}")
    if not path.is_file():
        raise EngineError(f"audio path is not a file: {path}")
    try:
        f = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError):
        return _from_ffmpeg(path, start, duration, speed)   # formats libsndfile lacks (m4a, aac, ...)
    with f:
        sr, total = f.samplerate, f.frames
        if total == 0:
            raise EngineError(f"audio file contains no audio (0 samples): {path}")
        first = int(round(start * sr))
        if first >= total:
            # Enough digits that a start just under the end does not read as the end itself.
            raise EngineError(f"audio start {start:.10g} s is at or beyond the end of {path.name} "
                              f"({total / sr:.10g} s long)")
        count = total - first if duration is None else min(total - first, int(round(duration * sr)))
        try:
            f.seek(first)
            # Played `speed` times as fast, the file's samples come at sr * speed.
            read = _Blocks(f, count)
            wave = _stream_resample(read, sr * speed, count, path)
        except (sf.SoundFileError, RuntimeError) as e:
            raise EngineError(f"cannot decode audio file {path}: {e}") from None
        if read.short:
            warnings.warn(f"{path.name} ends after {(first + read.count) / sr:.2f} s, where its header says "
                          f"{total / sr:.2f} s (a file cut short?): the dance is as long as the audio", EngineNote)
    if wave.size == 0:   # a sample or two, gone in resampling
        if count < total - first:          # the file has more: the duration asked is what is short
            raise EngineError(_too_short_duration(duration, sr))
        raise EngineError(f"audio file is too short to dance ({count} sample{'s' * (count != 1)} at {sr} Hz): {path}")
    return wave


def _too_short_duration(duration: float, sr: float) -> str:
    """The one line for a duration that holds no sample to dance (the file is not to blame)."""
    n = int(round(duration * sr))
    return f"duration {duration:g} s is too short to dance: it holds {n} sample{'s' * (n != 1)} at {sr:g} Hz"


def _mix_cancels(mix_power: float, channel_power: float) -> bool:
    """Whether the channels' mean lost most of their power to opposite phases (MIX_CANCELLED)."""
    return channel_power > 0 and mix_power < MIX_CANCELLED * channel_power


def _channel_power(x: np.ndarray) -> float:
    """Mean over the channels of (S, C) samples of their summed squares (no copy of x)."""
    return sum(float(np.dot(x[:, c], x[:, c])) for c in range(x.shape[1])) / x.shape[1]


def _mono(x: np.ndarray) -> np.ndarray:
    """(S, C) samples to mono: the channels' mean, or the first channel where the mean cancels."""
    x = x.astype(np.float32, copy=False)
    mix = x.mean(axis=1)
    if x.shape[1] > 1 and _mix_cancels(float(np.dot(mix, mix)), _channel_power(x)):
        return np.ascontiguousarray(x[:, 0])
    return mix


class _Blocks:
    """(n, C) float32 blocks of `count` samples from a SoundFile's position, ending where its
    samples do: a file cut short (a half-downloaded MP3) holds fewer than its header counts, and
    soundfile's blocks() filled the rest with copies of its last block (QA: 8 s danced where the
    file held 3.95, the beats going on over repeated audio). `count`, `short`: what was read."""

    def __init__(self, f, count: int):
        self.f, self.wanted, self.count, self.short = f, count, 0, False

    def __iter__(self):
        while self.count < self.wanted:
            asked = min(_BLOCK, self.wanted - self.count)
            block = self.f.read(frames=asked, dtype="float32", always_2d=True)
            self.count += len(block)
            if len(block):
                yield block
            if len(block) < asked:
                self.short = True
                return


class _Resampled:
    """A mono signal resampled to FEATURE_SR chunk by chunk into one growing buffer."""

    def __init__(self, sr: float, count: int):
        import soxr
        self.out = np.empty(int(math.ceil(count * FEATURE_SR / sr)) + 64, np.float32)
        self.rs = soxr.ResampleStream(sr, FEATURE_SR, 1, dtype="float32", quality="HQ") if sr != FEATURE_SR else None
        self.n = 0

    def _put(self, chunk: np.ndarray) -> None:
        if self.n + len(chunk) > len(self.out):   # a header that undercounted its frames
            self.out = np.concatenate([self.out, np.empty(len(chunk) + len(self.out) // 2, np.float32)])
        self.out[self.n:self.n + len(chunk)] = chunk
        self.n += len(chunk)

    def add(self, mono: np.ndarray) -> None:
        self._put(self.rs.resample_chunk(mono) if self.rs else mono)

    def result(self) -> np.ndarray:
        if self.rs:
            self._put(self.rs.resample_chunk(np.zeros(0, np.float32), last=True))
        return self.out[:self.n]


def _stream_resample(blocks, sr: float, count: int, path: Path) -> np.ndarray:
    """Mix blocks (n, C) to mono (_mono's rule, over the whole file) and resample to FEATURE_SR
    on the fly; memory ~ the output (twice it for a file of several channels)."""
    mix, first = _Resampled(sr, count), None
    mix_power = channel_power = 0.0
    for block in blocks:
        mono = block.mean(axis=1, dtype=np.float32)
        if not np.isfinite(mono).all():
            raise EngineError(f"audio file holds NaN or infinite samples: {path}")
        mix.add(mono)
        if block.shape[1] > 1:
            first = first or _Resampled(sr, count)
            first.add(np.ascontiguousarray(block[:, 0]))
            mix_power += float(np.dot(mono, mono))
            channel_power += _channel_power(block)
    return first.result() if first and _mix_cancels(mix_power, channel_power) else mix.result()


def _from_ffmpeg(path: Path, start: float, duration, speed: float = 1.0) -> np.ndarray:
    """Fallback decoder: imageio-ffmpeg's binary, stereo at FEATURE_SR on stdout, mixed by _mono."""
    unreadable = f"cannot read audio file {path}: not a supported audio format, or corrupt"
    try:
        import imageio_ffmpeg
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        raise EngineError(unreadable) from None
    # Seeking after -i decodes from the start and drops what comes before `start`: seeking the
    # input (-ss before -i), even to 0, dropped an AAC file's first 1024 samples (23 ms: the
    # dance a frame short and its beats a frame early against what plays).
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path)] + (["-ss", f"{start:.6f}"] if start > 0 else [])
    if duration is not None:
        cmd += ["-t", f"{duration:.6f}"]
    # Stereo, for _mono's rule (a mono file comes 3 dB down, which the level correction ignores).
    cmd += ["-vn", "-ac", "2", "-ar", str(FEATURE_SR), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wave = _mono(np.frombuffer(proc.stdout[: len(proc.stdout) // 8 * 8], np.float32).reshape(-1, 2))
    if proc.returncode != 0 and wave.size == 0:
        raise EngineError(unreadable)
    if wave.size == 0:
        if start > 0:
            raise EngineError(f"audio start {start:.10g} s is at or beyond the end of {path.name}")
        if duration is not None and round(duration * FEATURE_SR) == 0:     # ffmpeg's -t gave no sample
            raise EngineError(_too_short_duration(duration, FEATURE_SR))
        raise EngineError(f"audio file contains no audio (0 samples): {path}")
    if not np.isfinite(wave).all():
        raise EngineError(f"audio file holds NaN or infinite samples: {path}")
    got = wave.size / FEATURE_SR
    # Formats libsndfile cannot read have no length to check options against up front
    # (options.check_options); a slice that ends early is said here instead of danced shorter.
    if duration is not None and got < duration - speed / MODEL_FPS:      # a frame's worth, as it is played
        raise EngineError(f"start + duration = {start + duration:g} s runs past the end of {path.name} "
                          f"({start + got:.2f} s long): at most {got:.2f} s from {start:g} s")
    if speed != 1.0:
        import soxr
        wave = soxr.resample(wave, FEATURE_SR * speed, FEATURE_SR, quality="HQ").astype(np.float32, copy=False)
    return wave


# ----------------------------------------------------------------------------- analysis

def _grid(wave: np.ndarray, sr: float, fps: float) -> tuple[np.ndarray, float, int]:
    """Resample onto a rate near FEATURE_SR that is an exact multiple of fps: (y, rate, hop).

    For fps 24/30/60 the rate stays FEATURE_SR (hop 640/512/256); for fps 25 it becomes 15350
    Hz (hop 614). Spectral features thus see nearly the same rate whatever the frame rate,
    and frame k starts exactly at k / fps seconds.
    """
    import soxr
    if not (math.isfinite(fps) and fps > 0):
        raise EngineError(f"frame rate must be a positive number, got {fps}")
    hop = max(1, int(round(FEATURE_SR / fps)))
    rate = fps * hop
    rate = int(rate) if float(rate).is_integer() else float(rate)
    y = np.asarray(wave, dtype=np.float32).reshape(-1)
    if abs(rate - sr) > 1e-9 * rate and y.size:
        y = soxr.resample(y, sr, rate, quality="HQ").astype(np.float32, copy=False)
    return y, rate, hop


def _padded(y: np.ndarray) -> np.ndarray:
    return np.pad(y, (0, max(0, _MIN_ANALYSIS_SAMPLES - y.size)))


def _analysis_workers() -> int:
    """Threads for the chunks: librosa's FFTs and sparse products release the GIL."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:                 # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_WORKERS))


def _chunked(fn, y: np.ndarray, hop: int, rate: float) -> np.ndarray:
    """Apply a frame-wise feature fn(segment) -> (C, F) in chunks with overlap, side by side.

    The STFT and CQT of a whole 10-minute song take ~0.5 GB; chunks of at most _CHUNK_S seconds,
    each analysed with _MARGIN_S seconds of real signal either side and the margins cut off,
    keep that bounded. A song long enough is cut into one chunk per worker (none under
    _MIN_CHUNK_S), analysed in threads. Frame k of a segment starting at sample s0*hop is global
    frame s0 + k.
    """
    y = _padded(y)
    frames = 1 + len(y) // hop                             # librosa's centred frame count
    workers = _analysis_workers()
    per_second = rate / hop
    chunk_s = min(_CHUNK_S, max(_MIN_CHUNK_S, frames / per_second / workers))
    chunk, margin = max(1, int(math.ceil(chunk_s * per_second))), int(_MARGIN_S * per_second)

    def part(a: int) -> np.ndarray:
        b = min(a + chunk, frames)
        s0 = max(0, a - margin)
        seg = y[s0 * hop: min(len(y), (b + margin) * hop)]
        return fn(_padded(seg))[:, a - s0: b - s0]

    starts = range(0, frames, chunk)
    if workers == 1 or len(starts) == 1:
        return np.concatenate([part(a) for a in starts], axis=1)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(min(workers, len(starts))) as pool:
        return np.concatenate(list(pool.map(part, starts)), axis=1)


def _spectra(y: np.ndarray, rate: float, hop: int, chroma: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Log-mel spectrogram (128, F) in dB, and chroma CENS (12, F) if asked.

    The mel power is frame-local, so it is computed in chunks and converted to dB on the whole
    song (librosa's top_db floor depends on the global maximum): the result equals librosa's
    own onset_strength(y)/mfcc(y) inputs.
    """
    librosa = cached_librosa()

    def spectra(seg: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=seg, sr=rate, hop_length=hop, n_mels=N_MELS)
        if not chroma:
            return mel
        # tuning=0: A440 assumed; estimating it per clip is slow and makes windows disagree.
        cens = librosa.feature.chroma_cens(y=seg, sr=rate, hop_length=hop, n_chroma=N_CHROMA, tuning=0.0)
        frames = min(mel.shape[1], cens.shape[1])
        return np.concatenate([mel[:, :frames], cens[:, :frames]])

    def quietly(seg: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):      # numpy's error state is per thread
            return spectra(seg)

    # Float samples far beyond full scale (a peak of 1e18) overflow the float32 mel power: said in
    # one line, without numpy's overflow warnings (printed as notes) before it, and before
    # librosa's beat tracker stops on it with a traceback.
    with np.errstate(over="ignore", invalid="ignore"):
        both = _chunked(quietly, y, hop, rate)
        mel_db = librosa.power_to_db(both[:N_MELS])
    if not np.isfinite(mel_db).all():
        raise EngineError(_non_finite_features(y))
    return mel_db, (both[N_MELS:] if chroma else None)


def song_level_db(mel_db: np.ndarray) -> float:
    """A clip's recording level: the median, over its sounding frames, of the frame's total mel
    power in dB (librosa's scale, ref 1). Moves one for one with the file's gain."""
    frame_db = 10.0 * np.log10(np.maximum(np.power(10.0, mel_db / 10.0).sum(axis=0), 1e-20))
    sounding = frame_db >= frame_db.max() - SOUNDING_DB
    return float(np.median(frame_db[sounding]))


def _levelled(mel_db: np.ndarray, silent: bool, level_db: float | None) -> np.ndarray:
    """The log-mel spectrum shifted by REFERENCE_LEVEL_DB - level_db (the clip's own level when
    None); silence stays silence."""
    if silent:
        return mel_db
    return mel_db + (REFERENCE_LEVEL_DB - (song_level_db(mel_db) if level_db is None else level_db))


def _level_of_wave(wave: np.ndarray, sr: float) -> float:
    y, rate, hop = _grid(wave, sr, MODEL_FPS)
    return song_level_db(_spectra(y, rate, hop, chroma=False)[0])


@functools.lru_cache(maxsize=16)
def _cached_file_level_db(path: str, size: int, mtime_ns: int, speed: float) -> float:
    return _level_of_wave(*load_audio(path, speed=speed))


def _file_identity(path) -> tuple[str, int, int]:
    """A file as a remembered analysis knows it: (resolved path, size, modification time)."""
    path = Path(path)
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _a_part(start: float, duration: float | None, slice_samples: int, speed: float) -> bool:
    """Whether a slice (slice_samples long at FEATURE_SR, played at `speed`) is a part of its
    song rather than all of it: it starts later, or stopped before the song's end."""
    ran_to_the_end = duration is None or slice_samples < duration / speed * FEATURE_SR - 1
    return bool(start) or not ran_to_the_end


def file_level_db(path, speed: float = 1.0) -> float:
    """A whole file's song_level_db (played at `speed`, load_audio), remembered while the file is
    unchanged."""
    return _cached_file_level_db(*_file_identity(path), float(speed))


def whole_song_level_db(source, sample_rate: float | None, start: float, duration: float | None,
                        slice_samples: int, speed: float = 1.0) -> float | None:
    """The level a slice of `source` is brought to REFERENCE_LEVEL_DB from: the whole file's (or
    array's) song_level_db when the slice (slice_samples long at FEATURE_SR, played at `speed`)
    is part of it; None (the slice's own) when it is all of it. A file's level is remembered
    (file_level_db), so regenerating its sections is not slower."""
    if not _a_part(start, duration, slice_samples, speed):
        return None
    if isinstance(source, np.ndarray):
        return _level_of_wave(*load_audio(source, sample_rate, speed=speed))
    return file_level_db(source, speed)


# A slice's beats can be the whole song's (music_for_dance(song_beats=True): the add-on, whose
# regenerated sections and trimmed strips must meet the dance around them on the same beats, and
# `--song-beats`). Tracked on the slice alone, 15% of 5-s slices of the training songs and 28%
# of the open genre set's sat off the whole song's beats by more than 0.3 of a beat (mostly on
# the off-beat): a regenerated section danced the same bars to other beats than the dance
# around it (QA). Alone is the default and the field's way (its evaluation tracks each clip's
# beats on the clip): on the whole song's, the honest evaluation's BAS (FACT), scored against
# each clip's own beats, fell from 0.671 to 0.629 (weights/TRAINING.md).
# Where the whole song's tracker leaves a slice with fewer beats than this share of the slice's
# own (it trims weak beats at a song's ends: a quiet outro), the slice keeps its own.
WHOLE_SONG_BEAT_COVERAGE = 0.75


@functools.lru_cache(maxsize=16)
def _cached_file_beats(path: str, size: int, mtime_ns: int, speed: float) -> np.ndarray:
    return detect_beats(*load_audio(path, speed=speed))[0]


def whole_song_beats(source, sample_rate: float | None, start: float, duration: float | None,
                     slice_samples: int, speed: float = 1.0) -> np.ndarray | None:
    """The beats (seconds from the slice's start, within it) of a slice of `source`, tracked on
    the whole file (or array), played at `speed`, when the slice (slice_samples long at
    FEATURE_SR) is part of it; None (the slice's own) when it is all of it. A file's beats are
    remembered while it is unchanged, so regenerating its sections is not slower."""
    if not _a_part(start, duration, slice_samples, speed):
        return None
    whole = waveform_seconds(source, sample_rate) if isinstance(source, np.ndarray) else audio_seconds(source)
    if whole is not None and (start or 0.0) < speed / MODEL_FPS \
            and (start or 0.0) + slice_samples / FEATURE_SR * speed > whole - speed / MODEL_FPS:
        return None      # all of it but a frame's rounding at an end (a strip playing the whole file)
    if isinstance(source, np.ndarray):
        beats = detect_beats(*load_audio(source, sample_rate, speed=speed))[0]
    else:
        beats = _cached_file_beats(*_file_identity(source), float(speed))
    beats = beats - float(start or 0.0) / speed
    return beats[(beats >= 0.0) & (beats < slice_samples / FEATURE_SR)]


def with_beats(features: np.ndarray, beats: np.ndarray, fps: float = MODEL_FPS) -> np.ndarray:
    """Music features (N, 35) with their beat channel set to `beats` (seconds) instead."""
    features = features.copy()
    frames = np.round(np.asarray(beats) * fps).astype(int)
    features[:, FEATURE_CHANNELS["beat"]] = 0.0
    features[frames[(frames >= 0) & (frames < len(features))], FEATURE_CHANNELS["beat"]] = 1.0
    return features


def _envelope(mel_db: np.ndarray, rate: float, hop: int) -> np.ndarray:
    return cached_librosa().onset.onset_strength(S=mel_db, sr=rate, hop_length=hop)   # (F,)


def _is_silent(y: np.ndarray) -> bool:
    return y.size == 0 or float(np.abs(y).max()) < _SILENCE_PEAK


def _beat_frames(env: np.ndarray, silent: bool, rate: float, hop: int) -> tuple[np.ndarray, float]:
    """Beat frames and tempo from the onset envelope; a silent clip has neither."""
    if silent:
        return np.zeros(0, np.int64), 0.0
    librosa = cached_librosa()
    # One tempogram serves the song's tempo and its local tempo (a third of the analysis' beat
    # time was computing it twice).
    window = int(librosa.time_to_frames(TEMPO_WINDOW_S, sr=rate, hop_length=hop))
    import scipy.fft
    with scipy.fft.set_workers(_analysis_workers()):       # one FFT per frame: split among the cores
        tempogram = librosa.feature.tempogram(onset_envelope=env, sr=rate, hop_length=hop, win_length=window)
    overall = float(librosa.feature.tempo(tg=tempogram, sr=rate, hop_length=hop)[0])
    if overall <= 0:                # no periodicity at all: librosa's own answer
        tempo, beats = librosa.beat.beat_track(onset_envelope=env, sr=rate, hop_length=hop)
        return np.asarray(beats, np.int64), float(np.atleast_1d(tempo)[0])
    overall = metrical_tempo(tempogram, rate, hop, overall)   # not at 3/2 or 3/4 of the beat
    local = _drifting_tempo(tempogram, rate, hop, overall)
    tempo = overall if local is None else local     # the tracker's tempo, estimated once
    # librosa's trim drops the beats at the song's ends whose onsets are weaker than the song's,
    # often steady music there (QA: a clipped 128-bpm track had no beat in its first 3.3 s; F
    # against the known beats 0.94, untrimmed 1.00). Untrimmed was tried and not shipped: it
    # changes the network's beat input at every song's start, and with it the draws near keys
    # (the shipped weights' flow-through-a-key test, seed 0: 0.72x -> 1.54x; weights/TRAINING.md).
    _, beats = librosa.beat.beat_track(onset_envelope=env, sr=rate, hop_length=hop, bpm=tempo)
    return np.asarray(beats, np.int64), float(np.median(tempo))


def _drifting_tempo(tempogram: np.ndarray, rate: float, hop: int, overall: float) -> np.ndarray | None:
    """The smoothed local tempo per envelope frame (bpm) where it drifts from the song's `overall`
    tempo, else None. tempogram: librosa's, over TEMPO_WINDOW_S, of the onset envelope."""
    from scipy.ndimage import median_filter
    librosa = cached_librosa()
    frames_per_s = rate / hop
    edge = int(TEMPO_WINDOW_S / 2 * frames_per_s)     # nearer the ends the window is mostly padding
    smoothing = int(TEMPO_SMOOTHING_S * frames_per_s) | 1
    if tempogram.shape[-1] <= 2 * edge + smoothing:
        return None
    local = librosa.feature.tempo(tg=tempogram, sr=rate, hop_length=hop, aggregate=None,
                                  start_bpm=overall, std_bpm=TEMPO_PRIOR_OCTAVES).astype(np.float64)
    local[:edge], local[-edge:] = local[edge], local[-edge - 1]
    local = 2.0 ** median_filter(np.log2(np.maximum(local, 1.0)), size=smoothing, mode="nearest")
    low, high = np.percentile(local, [5, 95])
    return local if high / low > TEMPO_DRIFT else None


def _analyse(wave: np.ndarray, sr: float, fps: float, features: bool = True, level_db: float | None = None):
    """Everything at once, sharing one onset envelope: (features (N, 35) or None, beat frames, tempo).
    level_db: the recording level to correct (whole_song_level_db); None: the wave's own."""
    librosa = cached_librosa()
    n = int(round(len(wave) / sr * fps))
    y, rate, hop = _grid(wave, sr, fps)
    mel_db, cens = _spectra(y, rate, hop, chroma=features)     # finite, or one line (_spectra)
    env = _envelope(mel_db, rate, hop)
    silent = _is_silent(y)
    beats, tempo = _beat_frames(env, silent, rate, hop)
    beats = _sounding(beats[beats < n], wave, sr, n, fps)
    if not features:
        return None, beats, tempo
    frames = min(env.shape[0], mel_db.shape[1], cens.shape[1])
    feats = np.zeros((n, NUM_MUSIC_FEATURES), np.float32)          # (N, 35), zero past the end
    k = min(n, frames)
    feats[:k, FEATURE_CHANNELS["onset_envelope"]] = env[:k, None]
    levelled = _levelled(mel_db[:, :k], silent, level_db)
    feats[:k, FEATURE_CHANNELS["mfcc"]] = librosa.feature.mfcc(S=levelled, n_mfcc=N_MFCC).T
    feats[:k, FEATURE_CHANNELS["chroma_cens"]] = cens[:, :k].T
    if not silent:
        peaks = librosa.onset.onset_detect(onset_envelope=env, sr=rate, hop_length=hop)
        feats[peaks[peaks < k], FEATURE_CHANNELS["onset_peak"]] = 1.0
    feats[beats[beats < k], FEATURE_CHANNELS["beat"]] = 1.0
    if not np.isfinite(feats).all():
        raise EngineError(_non_finite_features(y))
    return feats, beats, tempo


def _sounding(beats: np.ndarray, wave: np.ndarray, sr: float, frames: int, fps: float) -> np.ndarray:
    """The beat frames that are not in a silent stretch (silence.silent_stretches_of): the tracker
    carries its grid on through a silent intro, a stop or the tail (QA: 9 beats listed in a 5-s
    silence mid-song), where nothing plays to dance to."""
    if not len(beats):
        return beats
    keep = np.ones(len(beats), bool)
    for first, last in silent_stretches_of(frame_levels_db(wave, sr, frames, fps), fps):
        keep &= (beats < first) | (beats > last)
    return beats[keep]


def _non_finite_features(y: np.ndarray) -> str:
    """The one line for music features that came out NaN or infinite (_spectra, _analyse)."""
    peak = float(np.abs(y).max()) if y.size else 0.0
    loud = f": the audio peaks at {peak:.3g} times full scale" if peak > 1 else ""
    return f"music features came out non-finite{loud} (is the audio valid?)"


def music_features(wave: np.ndarray, sr: float, fps: float = MODEL_FPS,
                   level_db: float | None = None) -> np.ndarray:
    """EDGE's 35 "baseline" music features per motion frame: (N, 35) float32, N = round(S/sr*fps).

    Channels, in order (see FEATURE_CHANNELS): onset envelope 1, MFCC 20, chroma CENS 12,
    onset-peak one-hot 1, beat one-hot 1. Computed with librosa on a grid of hop
    round(FEATURE_SR/fps) at rate fps*hop (the wave is resampled to it), so frame k covers
    time k/fps. Silence gives finite values (MFCC at its floor, zero chroma, no peaks or beats).
    The MFCCs are at REFERENCE_LEVEL_DB: the wave's own level is corrected, or level_db when
    given (the whole song's, for a slice of it).
    """
    return _analyse(wave, sr, fps, level_db=level_db)[0]


def detect_beats(wave: np.ndarray, sr: float) -> tuple[np.ndarray, float]:
    """Music beats with librosa's dynamic-programming beat tracker (Ellis 2007).

    Returns (beat times in seconds (B,), tempo in BPM). Beats lie on the MODEL_FPS feature
    grid, the same beats as the features' beat channel. Silence gives no beats and tempo 0.0.
    """
    _, beats, tempo = _analyse(wave, sr, MODEL_FPS, features=False)
    return beats / float(MODEL_FPS), tempo


def features_and_beats(wave: np.ndarray, sr: float, fps: float = MODEL_FPS,
                       level_db: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """music_features and detect_beats of one wave in one analysis (one spectrogram, one onset
    envelope): (features (N, 35), beat times in seconds, tempo). level_db: as for _analyse."""
    feats, beats, tempo = _analyse(wave, sr, fps, level_db=level_db)
    return feats, beats / float(fps), tempo


# ----------------------------------------------------------------------------- songs

@dataclass
class Song:
    """A decoded song slice with its analysis, ready to condition the model."""
    wave: np.ndarray                 # (S,) float32 mono at sr
    sr: int                          # FEATURE_SR
    features: np.ndarray             # (N, NUM_MUSIC_FEATURES) float32 at fps
    fps: float
    beat_times: np.ndarray = field(default_factory=lambda: np.zeros(0))  # seconds from `start`
    tempo: float = 0.0               # BPM, 0.0 when no beat was found
    path: str | None = None          # the file, if the song came from one
    start: float = 0.0               # seconds into the file of sample 0

    @property
    def duration(self) -> float:
        return len(self.wave) / self.sr

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])


def load_song(source, sample_rate: float | None = None, start: float = 0.0,
              duration: float | None = None, fps: float = MODEL_FPS) -> Song:
    """load_audio + music_features + beats, sharing one onset envelope; beats at `fps`'s grid."""
    wave, sr = load_audio(source, sample_rate, start, duration)
    level_db = whole_song_level_db(source, sample_rate, start, duration, len(wave))
    feats, beats, tempo = _analyse(wave, sr, fps, level_db=level_db)
    path = str(source) if isinstance(source, (str, Path)) else None
    return Song(wave=wave, sr=sr, features=feats, fps=float(fps), beat_times=beats / float(fps),
                tempo=tempo, path=path, start=float(start or 0.0))


@dataclass
class DanceMusic:
    """What the dance needs from a song slice: the network's features and the music's beats."""
    seconds: float                   # length of the slice
    frames: int                      # MODEL_FPS frames the dance has for it (both ends included)
    features: np.ndarray             # (max(frames, a window), 35) at MODEL_FPS, silence-padded
    beats: np.ndarray                # beat times in seconds from the slice's start, within it
    source: tuple | None             # music_source(...) of what it was made from (None: a waveform)
    silences: list = field(default_factory=list)   # [(first, last)] silent frames (engine.music.silence)
    loudest_db: float = 0.0          # the loudest frame's RMS level, dBFS (engine.music.silence)
    levels_db: np.ndarray | None = None   # (frames,) each frame's level, dBFS (silence.frame_levels_db)


def music_source(source, start: float = 0.0, duration: float | None = None, speed: float = 1.0,
                 song_beats: bool = False) -> tuple | None:
    """What identifies a file's slice and its analysis (None for a waveform, which has no name to compare)."""
    if not isinstance(source, (str, Path)):
        return None
    return (str(Path(source).resolve()), float(start or 0.0), None if duration is None else float(duration),
            float(speed), bool(song_beats))


def music_for_dance(source, sample_rate: float | None = None, start: float = 0.0,
                    duration: float | None = None, speed: float = 1.0, song_beats: bool = False) -> DanceMusic:
    """Decode a song slice (played at `speed`: load_audio) and analyse it for generation. A song
    shorter than one window is padded with silence to a full window for its features; its beats
    come from the song alone. `song_beats`: a slice's beats (and the features' beat channel) are
    the whole file's (whole_song_beats)."""
    wave, sr = load_audio(source, sample_rate=sample_rate, start=start, duration=duration, speed=speed)
    seconds = len(wave) / sr
    frames = max(2, int(math.ceil(seconds * MODEL_FPS)) + 1)
    padded = max(frames, WINDOW_FRAMES)
    pad_samples = int(math.ceil(padded / MODEL_FPS * sr)) - len(wave)
    padded_wave = np.pad(wave, (0, max(0, pad_samples)))
    level_db = whole_song_level_db(source, sample_rate, start, duration, len(wave), speed)
    if pad_samples <= sr // 10:    # a frame or two of padding: one analysis gives features and beats
        features, beats, _tempo = features_and_beats(padded_wave, sr, fps=MODEL_FPS, level_db=level_db)
        beats = beats[beats < seconds]
    else:
        features = music_features(padded_wave, sr, fps=MODEL_FPS, level_db=level_db)
        beats, _tempo = detect_beats(wave, sr)
    songs = whole_song_beats(source, sample_rate, start, duration, len(wave), speed) if song_beats else None
    if songs is not None and len(songs) >= WHOLE_SONG_BEAT_COVERAGE * len(beats):
        beats, features = songs, with_beats(features, songs)
    levels_db = frame_levels_db(wave, sr, frames)
    return DanceMusic(seconds=seconds, frames=frames, features=features[:padded], beats=np.asarray(beats),
                      source=music_source(source, start, duration, speed, song_beats),
                      silences=silent_stretches_of(levels_db), loudest_db=float(levels_db.max()),
                      levels_db=levels_db)
