"""Which sampler a generation gets: a few-step student's own schedule, or the many-step teacher.

A student (engine.training.distill) was distilled from its teacher at fixed settings: the teacher's step
count, guidance and autoguidance, recorded in the student's file. It stands for the teacher at
exactly those settings, in a few passes per window, so it is used when they are what is asked
(the defaults) and the quality is "fast". Anything else (quality "best", other steps or guidance)
needs the teacher itself: its file is looked for beside the student, under the name the student
records or under TEACHER_NAME.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import EngineError

QUALITIES = ("fast", "best")
TEACHER_NAME = "dance_teacher.safetensors"   # where the shipped teacher lives beside a shipped student


def teacher_beside(student_path: Path, record: dict) -> Path | None:
    """The teacher's weights file in the student's folder, if there is one."""
    from .checkpoint import read_metadata
    student_path = Path(student_path).resolve()
    for name in dict.fromkeys([record.get("teacher"), TEACHER_NAME]):
        if not name:
            continue
        path = student_path.parent / name
        if path.resolve() == student_path or not path.is_file():
            continue
        try:
            if "student" not in read_metadata(path):
                return path
        except EngineError:
            continue
    return None


def uses_student(record: dict | None, quality: str, steps: int | None, guidance: float, autoguidance: float) -> bool:
    """Whether a student with this `record` stands for the teacher at the asked settings."""
    if quality not in QUALITIES:
        raise EngineError(f"unknown quality {quality!r}: use {' or '.join(QUALITIES)}")
    if record is None or quality == "best":
        return False
    same_steps = steps is None or steps in (record.get("teacher_steps"), record["steps"])
    return same_steps and float(guidance) == float(record["guidance"]) \
        and float(autoguidance) == float(record["autoguidance"])


def choose_weights(weights_path: Path, record: dict | None, quality: str, steps: int | None, guidance: float,
                   autoguidance: float) -> Path:
    """The file to sample with: the given one, or the teacher beside a student that cannot serve.
    EngineError (one line) when a student cannot serve and no teacher is there."""
    if record is None or uses_student(record, quality, steps, guidance, autoguidance):
        return Path(weights_path)
    teacher = teacher_beside(weights_path, record)
    if teacher is None:
        raise EngineError(
            f"{Path(weights_path).name} is a {record['steps']}-step student of a teacher at "
            f"{record.get('teacher_steps', '?')} steps, guidance {record['guidance']:g}, autoguidance "
            f"{record['autoguidance']:g}; other settings or quality 'best' need the teacher's weights "
            f"({TEACHER_NAME} beside it, or pass them as the weights)")
    return teacher
