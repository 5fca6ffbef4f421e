"""Find — or rebuild — what earlier notebooks produce, so each notebook can run alone."""

from __future__ import annotations

from typing import Any

from .config import Config


def ensure_models(cfg: Config) -> tuple[Any, str, str]:
    """(tokenizer, teacher path or Hub name, student path) for the profile.

    Reuses `results/<profile>/teacher` and `results/<profile>/student` when notebooks 01-03
    made them under this config's settings (their stamps, `artefacts`); runs the same steps
    they run (adaptation, distillation, resuming any checkpoint they left) when they are
    missing; and refuses a student made under other settings (e.g. notebook 03 run with
    another MAX_STEPS) rather than silently fine-tuning it or overwriting it.
    """
    from .artefacts import StaleArtefactError, require_current, student_stamp, teacher_stamp
    from .distill import prepare_corpus, run_distillation
    from .teacher import prepare_teacher, prepare_tokenizer

    tokenizer = prepare_tokenizer(cfg)
    student_dir = cfg.out / "student"
    teacher_saved = cfg.adapt_steps > 0 or cfg.teacher == "tiny"
    teacher_path = str(cfg.out / "teacher") if teacher_saved else cfg.teacher
    fix = (f"Run notebook 03 with this notebook's settings (python -m distil_utils.tools.reproduce "
           f"--profile {cfg.profile} --only 03), give this notebook the settings 03 ran with, "
           f"or delete {student_dir} to have it made again here.")
    if (student_dir / "config.json").exists():
        require_current(student_dir, student_stamp(cfg), fix)
        if teacher_saved:
            try:
                require_current(cfg.out / "teacher", teacher_stamp(cfg), fix)
            except StaleArtefactError as err:
                raise StaleArtefactError(f"the student is current but its teacher is not: "
                                         f"{err}") from None
        return tokenizer, teacher_path, str(student_dir)
    train, held = prepare_corpus(cfg, tokenizer)
    teacher, teacher_path, _ = prepare_teacher(cfg, tokenizer, train, held)
    run_distillation(cfg, teacher, tokenizer, train, name="student")
    return tokenizer, teacher_path, str(student_dir)
