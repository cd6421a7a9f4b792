"""Music-to-dance engine: pure torch/numpy/librosa, no Blender needed.

    from engine import generate
    motion = generate("song.mp3", style="any", seed=0)

Heavy modules load lazily so that `import engine` stays quick.
"""

__all__ = ["generate", "Motion", "Constraints", "EngineError", "Cancelled"]


def __getattr__(name):
    if name == "generate":
        from .api import generate
        return generate
    if name in ("Motion", "Constraints"):
        from .body import motion
        return getattr(motion, name)
    if name in ("EngineError", "Cancelled"):
        from . import errors
        return getattr(errors, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
