"""Artefacts: results files carry their provenance, and the stamps of models and fine-tuning
runs depend only on what makes them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from distil_utils import artefacts
from distil_utils.artefacts import write_result
from distil_utils.config import get_config
from distil_utils.results_io import read_result


def test_results_files_carry_provenance(tmp_path):
    cfg = get_config("smoke", results_dir=str(tmp_path))
    path = write_result(cfg.out / "x.json", {"acc": 1.5}, cfg, model="m")
    data = read_result(path)
    prov = data["provenance"]
    assert data["metrics"] == {"acc": 1.5}
    assert prov["profile"] == "smoke" and prov["seed"] == 42 and prov["model"] == "m"
    assert prov["versions"]["torch"] and prov["command"]
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "not the mode open() would give"
    (cfg.out / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        read_result(cfg.out / "bad.json")
    with pytest.raises(FileNotFoundError, match="reproduce"):
        read_result(cfg.out / "missing.json")


def test_ablation_choices_change_no_model_or_fine_tuning_stamp():
    """Which ablation rows are fine-tuned is not how any model is made: changing it must
    leave the teacher, the students and every fine-tuning run current."""
    from distil_utils.artefacts import student_stamp, teacher_stamp
    from distil_utils.ft_runs import run_stamp

    a = get_config("smoke")
    b = get_config("smoke", ft_ablation_rows=("triple loss",), ft_ablation_full=False)
    assert teacher_stamp(a) == teacher_stamp(b) and student_stamp(a) == student_stamp(b)
    assert run_stamp("x", "sst2", a, 42) == run_stamp("x", "sst2", b, 42)
    with pytest.raises(ValueError, match="ft_ablation_full"):
        get_config("smoke", ft_task_overrides={"sst2": {"ft_ablation_full": False}})


def test_the_committed_cpu_results_were_made_under_this_codes_cpu_settings():
    """A change of the cpu profile's settings must come with a fresh `results/cpu`: every
    results file made from the profile's settings records their digest, and it is this code's.
    (Stamps now also key on the method's code and the library versions, so a method edit makes
    `--skip-done` re-make the models by design; the settings are what must never drift
    silently between the README's numbers and config.py.)"""
    import glob
    import json

    from distil_utils.config import ROOT, get_config

    expected = artefacts.provenance(get_config("cpu"))["settings_sha256"]
    recorded = {}
    for path in sorted(glob.glob(str(ROOT / "results" / "cpu" / "*.json"))):
        prov = json.loads(Path(path).read_text()).get("provenance") or {}
        if "settings_sha256" in prov and not Path(path).name.endswith("_history.json") \
                and Path(path).name != "teacher_adaptation.json":  # resolved by the recipe
            recorded[Path(path).name] = prov["settings_sha256"]
    assert len(recorded) >= 8
    assert {k: v for k, v in recorded.items() if v != expected} == {}


def test_results_files_hold_no_machine_paths_and_moved_folders_are_still_judged(tmp_path):
    """Paths in results files are relative to the results folder (or the repository), so a
    copied or moved results folder is still checked against the models beside it."""
    import shutil

    cfg = get_config("smoke", results_dir=str(tmp_path / "a"))
    model = cfg.out / "student"
    model.mkdir(parents=True)
    artefacts.write_stamp(model, artefacts.make_stamp("student", {"seed": 1}, {}))
    (model / "config.json").write_text("{}")
    path = write_result(cfg.out / "glue_student.json", {"model": str(model), "n": 1}, cfg,
                        student=str(model), data=str(artefacts.ROOT / "notebooks"))
    text = path.read_text()
    assert str(tmp_path) not in text and str(artefacts.ROOT) not in text
    data = read_result(path)
    assert data["metrics"]["model"] == "student" and data["provenance"]["data"] == "notebooks"
    assert artefacts.portable("/elsewhere/data") == os.path.relpath("/elsewhere/data",
                                                                   artefacts.ROOT)
    assert artefacts.portable("sentence-transformers/all-MiniLM-L6-v2") == \
        "sentence-transformers/all-MiniLM-L6-v2"  # a Hub name is not a path
    assert artefacts.stale_models(data["provenance"], cfg.out) == []

    moved = tmp_path / "b" / "smoke"
    shutil.copytree(cfg.out, moved)  # the results folder moved: its student made again
    artefacts.write_stamp(moved / "student", artefacts.make_stamp("student", {"seed": 2}, {}))
    assert artefacts.stale_models(data["provenance"], moved) == ["student (student)"]
    assert artefacts.stale_models(data["provenance"], cfg.out) == []


@pytest.mark.parametrize("cut", ["before the old folder moved", "after the old folder moved"])
def test_a_model_swap_cut_by_a_kill_keeps_the_complete_new_folder(tmp_path, cut, tokenizer):
    """save_model writes NAME's new folder completely, then swaps it in; a kill inside the swap
    leaves `.NAME.new` (complete), which the next writer's clean-up puts in place."""
    from helpers import make_tiny_bert

    from distil_utils.results_io import clean_temporaries

    out = tmp_path / "smoke"
    path = artefacts.save_model(make_tiny_bert(layers=2), tokenizer, out / "student",
                                artefacts.make_stamp("student", {"seed": 1}, {}))
    newer = artefacts.save_model(make_tiny_bert(layers=2), tokenizer, out / "newer",
                                 artefacts.make_stamp("student", {"seed": 2}, {}))
    newer.rename(out / ".student.new")  # the swap was cut: a complete new folder beside...
    if cut == "after the old folder moved":
        path.rename(out / ".student.old")  # ...the old one, moved aside or not yet
    clean_temporaries(out)
    assert artefacts.read_stamp(out / "student")["settings"] == {"seed": 2}
    assert sorted(p.name for p in out.iterdir()) == ["student"]


def test_weights_are_part_of_a_models_identity(tmp_path, tokenizer):
    """Another model's weights copied over a stamped folder (the stamp kept) are caught: the
    folder is stale, its digest changes (so results files describing it are stale too)."""
    import shutil

    from helpers import make_tiny_bert

    stamp = artefacts.make_stamp("student", {"seed": 1}, {})
    path = artefacts.save_model(make_tiny_bert(layers=2), tokenizer, tmp_path / "student", stamp)
    other = artefacts.save_model(make_tiny_bert(layers=2, seed=5), tokenizer, tmp_path / "row",
                                 artefacts.make_stamp("student", {"seed": 2}, {}))
    recorded = artefacts.read_stamp(path)["weights"]["model.safetensors"]
    assert recorded["size"] > 0 and len(recorded["sha256"]) == 64
    assert artefacts.is_current(path, stamp)
    before = artefacts.artefact_digest(path)
    os.utime(path / "model.safetensors")  # touched, same bytes: still the same model
    assert artefacts.is_current(path, stamp) and artefacts.artefact_digest(path) == before
    shutil.copy(other / "model.safetensors", path / "model.safetensors")
    assert "not the one saved with its stamp" in artefacts.stale_reason(path, stamp)
    assert artefacts.artefact_digest(path) != before
    (path / "model.safetensors").unlink()
    assert "is missing" in artefacts.stale_reason(path, stamp)


# --- issue 26, point 1: code, libraries and data are inputs like settings -------------------

@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the package's source for the code digests to read, so a test may edit it."""
    import shutil

    copy = tmp_path / "distil_utils"
    shutil.copytree(artefacts.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(artefacts, "PACKAGE", copy)
    return copy


def test_the_methods_code_is_in_the_stamp_its_comments_are_not(package_copy):
    """Masking 80/10/10 turned into all-[MASK] re-makes the student and names the file; a
    comment, a docstring or a reformat does not; presentation code moves no model."""
    cfg = get_config("smoke")
    before = artefacts.student_stamp(cfg)
    masking = package_copy / "masking.py"
    text = masking.read_text()
    masking.write_text('"""Another docstring."""\n# a comment\n' +
                       text.split('"""', 2)[2].replace("\n\n\n", "\n\n\n\n"))
    assert artefacts.student_stamp(cfg)["digest"] == before["digest"]
    figures = package_copy / "figures.py"
    figures.write_text(figures.read_text() + "\nX = 1\n")  # presentation: no model re-made
    assert artefacts.student_stamp(cfg)["digest"] == before["digest"]
    assert "0.8" in text, "the test edits the 80% [MASK] share"
    masking.write_text(text.replace("0.8", "1.0", 1))
    after = artefacts.student_stamp(cfg)
    assert after["digest"] != before["digest"]
    assert artefacts.teacher_stamp(get_config("cpu"))["code"]["distil_utils/masking.py"] == \
        after["code"]["distil_utils/masking.py"]


def test_a_stale_model_names_the_code_library_or_data_that_changed(tmp_path, monkeypatch,
                                                                     package_copy):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    cfg = get_config("smoke")
    artefacts.write_stamp(folder, artefacts.student_stamp(cfg))
    assert artefacts.stale_reason(folder, artefacts.student_stamp(cfg)) is None
    losses = package_copy / "losses.py"
    losses.write_text(losses.read_text() + "\nEXTRA = 2\n")
    assert "code distil_utils/losses.py changed" in \
        artefacts.stale_reason(folder, artefacts.student_stamp(cfg))
    losses.write_text(losses.read_text().replace("\nEXTRA = 2\n", ""))
    monkeypatch.setattr(artefacts, "number_libraries",
                        lambda: {"torch": "1.13.0", "transformers": "4.30.0"})
    reason = artefacts.stale_reason(folder, artefacts.student_stamp(cfg))
    assert "torch: " in reason and "'1.13.0'" in reason and "transformers" in reason


def test_the_data_read_is_in_the_stamp_by_content(tmp_path):
    """An edited corpus file re-makes the teacher and student made from it; flipped SST-2 dev
    labels re-run the fine-tuning (a `data_dir` copy with the same content changes nothing)."""
    import shutil

    from distil_utils.ft_runs import run_stamp
    from distil_utils.tasks import TASKS

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat .\n" * 50)
    cfg = get_config("smoke", corpus=(str(corpus),), adapt_steps=5)
    teacher, student = artefacts.teacher_stamp(cfg), artefacts.student_stamp(cfg)
    assert teacher["data"] == {"corpus.txt": artefacts.file_sha256(corpus)}
    corpus.write_text("the dog sat on the mat .\n" * 50)  # same size, other text
    assert artefacts.teacher_stamp(cfg)["digest"] != teacher["digest"]
    assert artefacts.student_stamp(cfg)["digest"] != student["digest"]

    data = tmp_path / "data"
    sst2 = data / TASKS["sst2"].dataset
    sst2.mkdir(parents=True)
    (sst2 / "train.jsonl").write_text('{"sentence": "good", "label": 1, "idx": 0}\n')
    (sst2 / "validation.jsonl").write_text('{"sentence": "bad", "label": 0, "idx": 0}\n')
    ft = get_config("smoke", data_dir=str(data))
    stamp = run_stamp("x", "sst2", ft, 42)
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    assert run_stamp("x", "sst2", get_config("smoke", data_dir=str(copy)), 42) == stamp
    (sst2 / "validation.jsonl").write_text('{"sentence": "bad", "label": 1, "idx": 0}\n')
    assert run_stamp("x", "sst2", ft, 42)["data"]["glue/sst2/validation"] != \
        stamp["data"]["glue/sst2/validation"]
