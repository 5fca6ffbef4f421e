"""Find — or rebuild — what earlier notebooks produce, so each notebook can run alone."""

from __future__ import annotations

from typing import Any

from .config import Config


def ensure_models(cfg: Config) -> tuple[Any, str, str]:
    """(tokenizer, teacher path or Hub name, student path) for the profile.

    Reuses `results/<profile>/teacher` and `results/<profile>/student` when notebooks 01-03
    have run; otherwise runs the same steps they run (adaptation, distillation), resuming any
    checkpoint they left.
    """
    from .distill import prepare_corpus, prepare_teacher, prepare_tokenizer, run_distillation

    tokenizer = prepare_tokenizer(cfg)
    student_dir = cfg.out / "student"
    cached_teacher = cfg.out / "teacher" / "config.json"
    if (student_dir / "config.json").exists() and (cached_teacher.exists() or cfg.adapt_steps <= 0):
        teacher_path = str(cfg.out / "teacher") if cached_teacher.exists() else cfg.teacher
        return tokenizer, teacher_path, str(student_dir)
    train, held = prepare_corpus(cfg, tokenizer)
    teacher, teacher_path, _ = prepare_teacher(cfg, tokenizer, train, held)
    if not (student_dir / "config.json").exists():
        run_distillation(cfg, teacher, tokenizer, train, name="student")
    return tokenizer, teacher_path, str(student_dir)
