"""Self-describing weights: one safetensors file holds the network, its config, the normaliser
statistics, the style names and the channel layout, so nothing is ever unpickled. It may also hold
a guide network (autoguidance, engine.sampler.diffusion.autoguided) under the `guide.` prefix, which shares
the main network's normalisers, styles and layout. A few-step student (engine.training.distill) records
`student` in its metadata: its own timesteps and the guidance baked into it; engine.api samples
it with that schedule, one pass per step."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from safetensors import safe_open

from ..body import layout as L
from ..defaults import MOTION_ONLY_STYLES
from ..errors import EngineError
from .model import Denoiser, ModelConfig

FORMAT = "dance-diffusion/1"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "dance.safetensors"


def layout_description() -> dict:
    return {"fps": L.MODEL_FPS, "window": L.WINDOW_FRAMES, "channels": L.NUM_CHANNELS,
            "contacts": [L.CONTACTS.start, L.CONTACTS.stop], "root_vel": [L.ROOT_VEL.start, L.ROOT_VEL.stop],
            "root_y": [L.ROOT_Y.start, L.ROOT_Y.stop], "rot6d": [L.ROT6D.start, L.ROT6D.stop]}


@dataclass
class Checkpoint:
    model: Denoiser
    normalizer: L.Normalizer          # motion channels
    music_normalizer: L.Normalizer    # music feature channels
    styles: list[str]
    info: dict = field(default_factory=dict)   # how it was trained: free-form, for the record
    guide: Denoiser | None = None              # the autoguidance network, when the file has one
    guide_info: dict = field(default_factory=dict)
    student: dict | None = None                # a few-step student's record: steps, timesteps, guidance, teacher

    @property
    def is_student(self) -> bool:
        return self.student is not None


def drawable_styles(styles: list[str], info: dict) -> list[str]:
    """The styles style "any" draws from (engine.api.dance_style): those the weights learned with
    their music, which training records in their info as "danced_styles". Weights from before
    that record: every style but "any" and MOTION_ONLY_STYLES (the shipped data's pop, learned
    without music). A run on other data listed styles it had no dances of, and style "any" drew
    them (QA: an AIST++-only model danced "chacha"; one with CMU salsa, music-less "salsa")."""
    recorded = info.get("danced_styles") if isinstance(info, dict) else None
    if isinstance(recorded, list):
        return [s for s in styles if s in recorded]
    return [s for s in styles if s != "any" and s not in MOTION_ONLY_STYLES]


def save(path, model: Denoiser, normalizer: L.Normalizer, music_normalizer: L.Normalizer, styles: list[str],
         info: dict | None = None, guide: Denoiser | None = None, guide_info: dict | None = None,
         student: dict | None = None) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors["normalizer.mean"] = normalizer.mean.cpu().contiguous()
    tensors["normalizer.std"] = normalizer.std.cpu().contiguous()
    tensors["normalizer.music_mean"] = music_normalizer.mean.cpu().contiguous()
    tensors["normalizer.music_std"] = music_normalizer.std.cpu().contiguous()
    metadata = {"format": FORMAT, "config": json.dumps(model.cfg.to_dict()), "styles": json.dumps(styles),
                "layout": json.dumps(layout_description()), "info": json.dumps(info or {})}
    if guide is not None:
        tensors.update({f"guide.{k}": v.detach().cpu().contiguous() for k, v in guide.state_dict().items()})
        metadata["guide_config"] = json.dumps(guide.cfg.to_dict())
        metadata["guide_info"] = json.dumps(guide_info or {})
    if student is not None:
        metadata["student"] = json.dumps(student)
    write_safetensors(tensors, path, metadata)


def write_safetensors(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write under a temporary name and move it in place, so no half-written file ever has the
    real name; with the permissions the user's umask gives new files (safetensors writes 0600,
    which kept other users from weights they were given); and the same bytes for the same
    contents (a student records its teacher's file checksum, and a teacher rebuilt elsewhere from
    the same networks must be that file)."""
    import os
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(_with_sorted_metadata(safetensors_bytes(tensors, metadata=metadata)))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp.replace(path)


def _with_sorted_metadata(blob: bytes) -> bytes:
    """A safetensors file's bytes with its metadata in key order: safetensors writes it in the
    order of a hash map seeded anew in each process, so the same contents gave other bytes."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-(8 + len(text)) % 8)         # the tensors' bytes stay 8-byte aligned, as safetensors has them
    return len(text).to_bytes(8, "little") + text + blob[8 + size:]


def read_metadata(path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise EngineError(f"the weights {path} are a folder, not a .safetensors file")
    if not path.is_file():
        raise EngineError(f"weights file not found: {path} (train one with 'python -m engine train' or pass --weights)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise EngineError(f"weights file {path} is not a valid safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise EngineError(f"weights file {path} is not a dance model (format {meta.get('format')!r}, expected {FORMAT!r})")
    return meta


def load(path=None, device="cpu") -> Checkpoint:
    """Load a checkpoint (the shipped weights by default) onto `device`, in eval mode."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
        styles = json.loads(meta["styles"])
        stored_layout = json.loads(meta["layout"])
        if stored_layout != layout_description():
            raise EngineError(f"weights file {path} was trained for another channel layout: {stored_layout}")
        model = _network(cfg, tensors, "model.")
        guide = _network(ModelConfig.from_dict(json.loads(meta["guide_config"])), tensors, "guide.") \
            if "guide_config" in meta else None
        normalizer = L.Normalizer(tensors["normalizer.mean"], tensors["normalizer.std"])
        music_normalizer = L.Normalizer(tensors["normalizer.music_mean"], tensors["normalizer.music_std"])
        student = json.loads(meta["student"]) if "student" in meta else None
        if student is not None and not (isinstance(student.get("timesteps"), list) and student["timesteps"]):
            raise EngineError(f"weights file {path} is a few-step student without its timesteps")
    except EngineError:
        raise
    except (KeyError, RuntimeError, ValueError, json.JSONDecodeError, SafetensorError) as e:
        raise EngineError(f"weights file {path} is damaged or incomplete ({str(e).splitlines()[0]})") from None
    return Checkpoint(model.to(device).eval(), normalizer, music_normalizer, styles, json.loads(meta.get("info", "{}")),
                      guide.to(device).eval() if guide is not None else None, json.loads(meta.get("guide_info", "{}")),
                      student)


def _network(cfg: ModelConfig, tensors: dict, prefix: str) -> Denoiser:
    net = Denoiser(cfg)
    net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return net
