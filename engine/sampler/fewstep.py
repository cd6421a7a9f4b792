"""Which sampler a generation gets: a few-step student or its many-step teacher.

A student (engine.training.distill) was distilled from its teacher at fixed settings: the
teacher's step count, guidance and autoguidance, recorded in the student's file. It stands for
the teacher at exactly those settings, in a few passes per window, so it serves quality "fast"
at those settings; anything else needs the teacher. Either file may be the one given:
- a student: quality "best" or other settings use its teacher, found beside it under the file
  name the student records;
- a teacher (the shipped default): quality "fast" uses the student found beside it under
  STUDENT_NAME, when the settings are the ones it stands for and the student was distilled from
  this file: from exactly these weights (by checksum), or from an earlier version of them under
  the same name (a teacher fine-tuned in place keeps its fast option until it is distilled
  again; `distilled_from_this` tells which, and the bench says so).
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from ..defaults import QUALITIES
from ..errors import EngineError, EngineNote

STUDENT_NAME = "dance_fast.safetensors"      # the shipped few-step student beside the shipped teacher


def teacher_beside(student_path: Path, record: dict) -> Path | None:
    """The teacher's weights file in the student's folder (under the name it records), if there is one."""
    from .checkpoint import read_metadata
    student_path = Path(student_path).resolve()
    if not record.get("teacher"):
        return None
    path = student_path.parent / record["teacher"]
    if path.resolve() == student_path or not path.is_file():
        return None
    try:
        return path if "student" not in read_metadata(path) else None
    except EngineError:
        return None


@functools.lru_cache(maxsize=8)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    """The first 16 hex digits of a file's sha256, as engine.training.distill records a teacher's."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


def distilled_from_this(record: dict, teacher_path: Path) -> bool:
    """Whether the student with this `record` was distilled from exactly these weights."""
    return record.get("teacher_sha256") == file_digest(teacher_path)


def student_beside(teacher_path: Path) -> tuple[Path, dict] | None:
    """(path, record) of a student of this teacher (these weights, or an earlier version of them
    under the same file name) in its folder, if there is one."""
    import json
    from .checkpoint import read_metadata
    path = Path(teacher_path).resolve().parent / STUDENT_NAME
    if not path.is_file() or path == Path(teacher_path).resolve():
        return None
    try:
        record = json.loads(read_metadata(path).get("student", "null"))
    except (EngineError, ValueError):
        return None
    if not record or not (record.get("teacher") == Path(teacher_path).name or distilled_from_this(record, teacher_path)):
        return None
    return path, record


def check_quality(quality: str) -> None:
    if quality not in QUALITIES:
        raise EngineError(f"unknown quality {quality!r}: use {' or '.join(QUALITIES)}")


def uses_student(record: dict | None, quality: str, steps: int | None, guidance: float, autoguidance: float) -> bool:
    """Whether a student with this `record` stands for the teacher at the asked settings."""
    check_quality(quality)
    if record is None or quality == "best":
        return False
    same_steps = steps is None or steps in (record.get("teacher_steps"), record["steps"])
    return same_steps and float(guidance) == float(record["guidance"]) \
        and float(autoguidance) == float(record["autoguidance"])


def choose_weights(weights_path: Path, record: dict | None, quality: str, steps: int | None, guidance: float,
                   autoguidance: float) -> Path:
    """The file to sample with, given the weights file and its student `record` (None: a teacher).
    EngineError (one line) when a student cannot serve and no teacher is there."""
    if record is None:                              # a teacher: itself, or its student for "fast"
        check_quality(quality)
        found = student_beside(weights_path) if quality == "fast" else None
        if found is not None and uses_student(found[1], quality, steps, guidance, autoguidance):
            return found[0]
        if quality == "fast":
            _say_fast_is_the_teacher(found[1] if found is not None else None, Path(weights_path).name)
        return Path(weights_path)
    if uses_student(record, quality, steps, guidance, autoguidance):
        return Path(weights_path)
    teacher = teacher_beside(weights_path, record)
    if teacher is None:
        raise EngineError(
            f"{Path(weights_path).name} is a {record['steps']}-step student of a teacher at "
            f"{record.get('teacher_steps', '?')} steps, guidance {record['guidance']:g}, autoguidance "
            f"{record['autoguidance']:g}; other settings or quality 'best' need the teacher's weights "
            f"({record.get('teacher', 'its file')} beside it, or pass them as the weights); quality 'fast' "
            "with no steps given samples the student")
    if quality == "fast":
        _say_fast_is_the_teacher(record, teacher.name)
    else:      # QA26: the student's file given, the teacher beside it danced without a word
        import warnings
        warnings.warn(f"{Path(weights_path).name} is a few-step student: quality '{quality}' dances with its teacher "
                      f"{teacher.name} (quality 'fast' samples the student)", EngineNote, stacklevel=3)
    return teacher


def _say_fast_is_the_teacher(record: dict | None, teacher_name: str) -> None:
    """Quality "fast" asked, the many-step model used: say so (a user would otherwise wait for the
    slow path without knowing why)."""
    import warnings
    if record is None:
        warnings.warn(f"no few-step student beside {teacher_name}: quality 'fast' uses the many-step model",
                      EngineNote, stacklevel=3)
    else:
        warnings.warn(f"the few-step student serves only {record.get('teacher_steps', '?')} steps, guidance "
                      f"{record['guidance']:g} and autoguidance {record['autoguidance']:g}: these settings use "
                      f"the many-step model ({teacher_name})", EngineNote, stacklevel=3)
