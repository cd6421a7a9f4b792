"""engine.outputs.preview: a stick-figure mp4 with video and audio streams."""
import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.example import make_example_song
from engine.body.motion import Motion
from engine.outputs.preview import render_preview
from engine.body.skeleton import REST_PELVIS_HEIGHT


def _dance(seconds=2.0, fps=30.0):
    t = np.arange(int(seconds * fps)) / fps
    poses = np.zeros((len(t), 72))
    poses[:, 16 * 3 + 2] = -1.0 + 0.4 * np.sin(2 * np.pi * t)     # left shoulder waves
    poses[:, 1] = 0.8 * t                                          # turning
    trans = np.stack([0.3 * np.sin(t), REST_PELVIS_HEIGHT + 0.03 * np.sin(4 * np.pi * t), 0.2 * t], axis=1)
    return Motion(poses=poses, trans=trans, fps=fps)


def _probe(path):
    """ffmpeg -i prints the container's streams (imageio-ffmpeg ships no ffprobe)."""
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                         capture_output=True, text=True).stderr
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", out)
    h, m, s = duration.groups()
    return out, 3600 * int(h) + 60 * int(m) + float(s)


def _first_frame(path, size):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert tuple(meta["size"]) == size
    frame = np.frombuffer(next(reader), np.uint8).reshape(size[1], size[0], 3)
    reader.close()
    return frame


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return make_example_song(tmp_path_factory.mktemp("song") / "song.wav", seconds=6.0)


def test_video_with_audio(tmp_path, song):
    path = render_preview(_dance(), tmp_path / "preview.mp4", audio_path=song, audio_start=1.5)
    info, duration = _probe(path)
    assert re.search(r"Video: h264.*yuv420p.*640x480", info)
    assert "Audio: aac" in info
    assert duration == pytest.approx(2.0, abs=0.1)
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 60
    frame = _first_frame(path, (640, 480)).astype(int)
    red = (frame[..., 0] > 150) & (frame[..., 1] < 100) & (frame[..., 2] < 100)     # right limbs
    blue = (frame[..., 2] > 120) & (frame[..., 0] < 100)                            # left limbs
    assert red.sum() > 100 and blue.sum() > 100
    assert not list(tmp_path.glob(".*"))                                             # no temp left


def test_motion_audio_is_used_and_fps_capped(tmp_path, song):
    motion = _dance(seconds=1.0, fps=60.0)
    motion.audio_path, motion.audio_start = str(song), 0.5
    path = render_preview(motion, tmp_path / "p.mp4", width=321, height=241, max_fps=30)
    info, _ = _probe(path)
    assert "Audio: aac" in info and "320x240" in info and "30 fps" in info
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 30


def test_silent_preview(tmp_path):
    info, _ = _probe(render_preview(_dance(seconds=0.5), tmp_path / "p.mp4"))
    assert "Video: h264" in info and "Audio" not in info


def test_mistakes(tmp_path, song):
    motion = _dance(seconds=0.5)
    with pytest.raises(EngineError, match="folder"):
        render_preview(motion, tmp_path / "missing" / "p.mp4")
    with pytest.raises(EngineError, match="not found"):
        render_preview(motion, tmp_path / "p.mp4", audio_path=tmp_path / "none.wav")
    with pytest.raises(EngineError, match="beyond the end"):
        render_preview(motion, tmp_path / "p.mp4", audio_path=song, audio_start=60.0)


def test_cancel_leaves_nothing(tmp_path):
    with pytest.raises(Cancelled):
        render_preview(_dance(), tmp_path / "p.mp4", progress=lambda fraction, message: fraction < 0.5)
    assert list(tmp_path.iterdir()) == []


def test_the_video_gets_a_new_files_permissions(tmp_path):
    import os
    mask = os.umask(0o022)
    os.umask(mask)
    out = render_preview(_dance(seconds=0.5), tmp_path / "p.mp4")
    assert (out.stat().st_mode & 0o777) == 0o666 & ~mask
