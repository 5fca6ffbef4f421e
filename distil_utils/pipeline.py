"""Find — or rebuild — what earlier notebooks produce, so each notebook can run alone."""

from __future__ import annotations

from typing import Any

from .artefacts import StaleArtefactError, require_current, student_stamp, teacher_stamp
from .config import Config
from .distill import prepare_corpus, prepare_teacher, run_distillation
from .teacher import prepare_tokenizer, teacher_is_saved, teacher_path


def ensure_models(cfg: Config) -> tuple[Any, str, str]:
    """(tokenizer, teacher path or Hub name, student path) for the profile.

    Reuses the teacher and student that notebooks 01-03 made under these settings (their
    stamps), runs the same steps when they are missing, and refuses a student made under
    other settings rather than silently fine-tuning or overwriting it.
    """
    tokenizer = prepare_tokenizer(cfg)
    student_dir = cfg.out / "student"
    fix = (f"Run notebook 03 with this notebook's settings (python -m distil_utils.tools.reproduce "
           f"--profile {cfg.profile} --only 03), give this notebook the settings 03 ran with, "
           f"or delete {student_dir} to have it made again here.")
    if (student_dir / "config.json").exists():
        require_current(student_dir, student_stamp(cfg), fix)
        if teacher_is_saved(cfg):
            try:
                require_current(cfg.out / "teacher", teacher_stamp(cfg), fix)
            except StaleArtefactError as err:
                raise StaleArtefactError(f"the student is current but its teacher is not: "
                                         f"{err}") from None
        return tokenizer, teacher_path(cfg), str(student_dir)
    train, held = prepare_corpus(cfg, tokenizer)
    teacher, path, _ = prepare_teacher(cfg, tokenizer, train, held)
    run_distillation(cfg, teacher, tokenizer, train, name="student")
    return tokenizer, path, str(student_dir)
