"""A quick look at a dance without Blender: stick-figure mp4 with the song's audio.

Joints come from skeleton.joint_positions; a pinhole camera looks at the dancer from a 3/4
front view and glides after the root (the root path Gaussian-smoothed), over a floor grid at
y = 0, so floating or sinking feet show. Each frame is drawn by matplotlib's Agg backend into
one reused figure (only line data change) and piped as raw RGBA to the ffmpeg binary of
imageio-ffmpeg, which encodes H.264 (yuv420p, plays everywhere) and muxes the audio slice.
"""
from __future__ import annotations

import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..body.motion import Motion
from ..body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, joint_positions
from ..errors import Cancelled, EngineError
from ..files import written_whole

_CAM_DISTANCE = 4.5          # metres from the followed point
_CAM_AZIMUTH = math.radians(35)    # 0 = straight in front (SMPL faces +Z)
_CAM_ELEVATION = math.radians(12)
_VIEW_HEIGHT = 2.5           # metres visible vertically at the followed point
_FOLLOW_SIGMA_S = 0.6        # smoothing of the camera path, seconds
_GRID_STEP, _GRID_HALF = 0.5, 4.0   # floor grid spacing and half-extent, metres
_NEAR = 0.2                  # near clipping plane, metres
_BEAT_FLASH_S = 0.07         # the beat marker lights this long around each music beat
_COLOURS = {"left": "#1f77b4", "right": "#d62728", "centre": "#333333"}


def _side(name: str) -> str:
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"


def _bones_by_side() -> dict[str, list[tuple[int, int]]]:
    bones: dict[str, list[tuple[int, int]]] = {k: [] for k in _COLOURS}
    for j in range(1, NUM_JOINTS):
        bones[_side(JOINT_NAMES[j])].append((PARENTS[j], j))
    return bones


class _Camera:
    """Fixed viewing direction, position following a target; projects to normalised screen units."""

    def __init__(self):
        ca, sa = math.cos(_CAM_AZIMUTH), math.sin(_CAM_AZIMUTH)
        ce, se = math.cos(_CAM_ELEVATION), math.sin(_CAM_ELEVATION)
        self.back = _CAM_DISTANCE * np.array([sa * ce, se, ca * ce])   # target -> camera
        f = -self.back / np.linalg.norm(self.back)
        r = np.cross(f, [0.0, 1.0, 0.0])
        r /= np.linalg.norm(r)
        self.basis = np.stack([r, np.cross(r, f), f])                    # rows: right, up, forward
        self.half_height = 0.5 * _VIEW_HEIGHT / _CAM_DISTANCE            # tan(fov / 2)

    def project(self, points: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(..., 3) world -> (..., 3) camera (x, y, depth)."""
        return (points - (target + self.back)) @ self.basis.T

    @staticmethod
    def to_screen(cam: np.ndarray) -> np.ndarray:
        """(..., 2, 3) camera-space segments -> (..., 2, 2) screen, clipped at the near plane (NaN if behind)."""
        a, b = cam[..., 0, :], cam[..., 1, :]
        za, zb = a[..., 2:], b[..., 2:]
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = np.clip((_NEAR - za) / (zb - za), 0.0, 1.0)
            tb = np.clip((_NEAR - zb) / (za - zb), 0.0, 1.0)
        a, b = np.where(za < _NEAR, a + ta * (b - a), a), np.where(zb < _NEAR, b + tb * (a - b), b)
        hidden = ((za < _NEAR) & (zb < _NEAR))[..., 0]
        seg = np.stack([a, b], axis=-2)
        scr = seg[..., :2] / np.maximum(seg[..., 2:], _NEAR)
        return np.where(hidden[..., None, None], np.nan, scr)


def _polyline(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, 2, 2) segments -> x, y arrays with NaN breaks: one Line2D draws them all."""
    s = np.concatenate([segments, np.full((segments.shape[0], 1, 2), np.nan)], axis=1).reshape(-1, 2)
    return s[:, 0], s[:, 1]


def _audio_length(path: Path) -> float | None:
    """Seconds of audio in the file, or None where libsndfile cannot tell (ffmpeg may still read it)."""
    import soundfile as sf
    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return info.frames / info.samplerate if info.frames > 0 else None


def _smooth(path: np.ndarray, sigma_frames: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d
    return gaussian_filter1d(path, sigma_frames, axis=0, mode="nearest") if sigma_frames > 0 else path


def render_preview(motion: Motion, path, audio_path=None, audio_start: float = 0.0,
                   width: int = 640, height: int = 480, max_fps: float = 30.0, progress=None) -> Path:
    """Render `motion` as a stick-figure H.264 mp4 at `path`; returns the path.

    audio_path: the song to mux (the slice from audio_start seconds, as long as the motion);
    None uses motion.audio_path / motion.audio_start when the motion has them, else no audio.
    Frames are drawn at min(motion.fps, max_fps). progress(fraction, message) is called per
    frame; returning False stops the render and raises Cancelled.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise EngineError(f"cannot write preview: folder does not exist: {path.parent}")
    if audio_path is None and motion.audio_path:
        audio_path, audio_start = motion.audio_path, motion.audio_start
    if audio_path is not None:
        audio_path = Path(audio_path)
        if not audio_path.is_file():
            raise EngineError(f"preview audio file not found: {audio_path}")
        if not (math.isfinite(audio_start) and audio_start >= 0):
            raise EngineError(f"preview audio start must be >= 0 seconds, got {audio_start}")
        length = _audio_length(audio_path)
        if length is not None and audio_start >= length:
            raise EngineError(f"preview audio start {audio_start:.2f} s is beyond the end of "
                              f"{audio_path.name} ({length:.2f} s long)")
    if motion.num_frames == 0:
        raise EngineError("cannot preview an empty motion (0 frames)")
    if not (np.isfinite(motion.poses).all() and np.isfinite(motion.trans).all()):
        raise EngineError("cannot preview: the motion holds NaN or infinite values")
    width, height = int(width) // 2 * 2, int(height) // 2 * 2      # yuv420p needs even sizes
    if width < 64 or height < 64:
        raise EngineError(f"preview size must be at least 64x64, got {width}x{height}")

    fps = float(min(motion.fps, max_fps))
    count = max(1, int(math.floor(motion.duration * fps + 1e-6)))
    frames = np.minimum(np.round(np.arange(count) * motion.fps / fps).astype(int), motion.num_frames - 1)
    joints = joint_positions(motion.poses[frames], motion.trans[frames])        # (K, 24, 3)
    follow = _smooth(joints[:, JOINT_INDEX["pelvis"]], _FOLLOW_SIGMA_S * fps)   # (K, 3)
    follow[:, 1] = follow[:, 1] - 0.15                                          # centre a bit below the pelvis
    duration = count / fps

    import imageio_ffmpeg
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [exe, "-y", "-nostdin", "-loglevel", "error",
           "-f", "rawvideo", "-pix_fmt", "rgba", "-s", f"{width}x{height}", "-r", f"{fps:.6f}", "-i", "-"]
    if audio_path is not None:
        cmd += ["-ss", f"{audio_start:.6f}", "-t", f"{duration:.6f}", "-i", str(audio_path),
                "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "160k"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-t", f"{duration:.6f}", "-f", "mp4"]
    # The hidden name is ffmpeg's to create, so the video gets the permissions any new file gets
    # (mkstemp's would be private, 0600, unlike the .bvh and .npz beside it).
    log = tempfile.TemporaryFile()
    with written_whole(path) as (tmp,):
        proc = subprocess.Popen(cmd + [str(tmp)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            draw = _Figure(width, height, motion)
            for k in range(count):
                frame = draw(joints[k], follow[k], frames[k] / motion.fps)
                try:
                    proc.stdin.write(frame)
                except BrokenPipeError:
                    break
                if progress is not None and progress((k + 1) / count, "rendering preview") is False:
                    raise Cancelled("preview cancelled")
            proc.stdin.close()
            rc = proc.wait()
            if rc != 0:
                log.seek(0)
                msg = log.read().decode(errors="replace").strip().splitlines()
                raise EngineError(f"ffmpeg failed to write the preview: {msg[-1] if msg else f'exit code {rc}'}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return path


class _Figure:
    """One matplotlib figure reused for every frame; calling it returns the frame's RGBA bytes."""

    def __init__(self, width: int, height: int, motion: Motion):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        dpi = 100
        self.fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
        self.canvas = FigureCanvasAgg(self.fig)
        ax = self.fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        self.cam = _Camera()
        h = self.cam.half_height
        ax.set_xlim(-h * width / height, h * width / height)
        ax.set_ylim(-h, h)
        self.grid = ax.plot([], [], color="#cccccc", lw=0.8)[0]
        self.shadow = ax.plot([], [], color="#bbbbbb", lw=3, solid_capstyle="round")[0]
        self.bones = _bones_by_side()
        self.lines = {side: ax.plot([], [], color=c, lw=3, solid_capstyle="round")[0]
                      for side, c in _COLOURS.items()}
        self.head = ax.plot([], [], "o", color=_COLOURS["centre"], ms=12)[0]
        self.clock = ax.text(0.02, 0.97, "", transform=ax.transAxes, va="top", family="monospace", fontsize=10)
        ax.text(0.98, 0.97, f"{motion.style}  seed {motion.seed}", transform=ax.transAxes, ha="right",
                va="top", fontsize=9, color="#666666")
        self.beat = ax.plot([0.95], [0.06], "o", transform=ax.transAxes, ms=14, color="#ff9900")[0]
        self.beat_times = np.asarray(motion.beat_times, np.float64)
        self.size = (width, height)

    def _grid_segments(self, target: np.ndarray) -> np.ndarray:
        cx = round(target[0] / _GRID_STEP) * _GRID_STEP
        cz = round(target[2] / _GRID_STEP) * _GRID_STEP
        ticks = np.arange(-_GRID_HALF, _GRID_HALF + 1e-9, _GRID_STEP)
        lo, hi = -_GRID_HALF, _GRID_HALF
        along_z = [[[cx + t, 0, cz + lo], [cx + t, 0, cz + hi]] for t in ticks]
        along_x = [[[cx + lo, 0, cz + t], [cx + hi, 0, cz + t]] for t in ticks]
        return np.array(along_z + along_x)                                 # (G, 2, 3)

    def __call__(self, joints: np.ndarray, target: np.ndarray, time_s: float) -> bytes:
        proj = self.cam.project
        self.grid.set_data(*_polyline(_Camera.to_screen(proj(self._grid_segments(target), target))))
        flat = joints * np.array([1.0, 0.0, 1.0])                         # shadow on the floor
        for side, bones in self.bones.items():
            idx = np.array(bones)                                          # (B, 2) parent, child
            self.lines[side].set_data(*_polyline(_Camera.to_screen(proj(joints[idx], target))))
        all_bones = np.array([b for bones in self.bones.values() for b in bones])
        self.shadow.set_data(*_polyline(_Camera.to_screen(proj(flat[all_bones], target))))
        head = proj(joints[JOINT_INDEX["head"]], target)
        self.head.set_data([head[0] / max(head[2], _NEAR)], [head[1] / max(head[2], _NEAR)])
        self.clock.set_text(f"{time_s:6.2f} s")
        near_beat = self.beat_times.size and np.min(np.abs(self.beat_times - time_s)) < _BEAT_FLASH_S
        self.beat.set_visible(bool(near_beat))
        self.canvas.draw()
        buf = self.canvas.buffer_rgba()
        if buf.shape[:2] != (self.size[1], self.size[0]):
            raise EngineError(f"preview frame came out {buf.shape[1]}x{buf.shape[0]}, expected {self.size[0]}x{self.size[1]}")
        return bytes(buf)
