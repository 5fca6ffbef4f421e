"""Profiles, overrides, validation, results files and the notebooks' set-up cell."""

from __future__ import annotations

import json
import os

import pytest

from distil_utils.artefacts import write_result
from distil_utils.config import PROFILES, get_config
from distil_utils.notebook import ResultsDirError, setup
from distil_utils.results_io import read_result


def test_profiles_resolve_and_overrides_apply(tmp_path):
    for name in PROFILES:
        cfg = get_config(name)
        assert cfg.profile == name
    cfg = get_config("smoke", max_steps=7, glue_tasks=["sst2"], results_dir=str(tmp_path))
    assert cfg.max_steps == 7 and cfg.glue_tasks == ("sst2",)
    assert cfg.out == tmp_path / "smoke"
    assert get_config("smoke", seed=None).seed == get_config("smoke").seed
    assert get_config("paper").teacher == "bert-base-uncased"
    assert get_config("paper").student_layers is None  # -> (0, 2, 4, 7, 9, 11)


@pytest.mark.parametrize("kw, msg", [
    (dict(temperature=0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(alpha_mlm=-2.0), "alpha_mlm"), (dict(glue_tasks=("sst3",)), "sst3"),
    (dict(mlm_prob=1.5), "mlm_prob"), (dict(bogus_key=1), "bogus_key"),
    (dict(ft_ablation_rows=("without L_ce",)), "ft_ablation_rows.*'triple loss'"),
    (dict(ft_ablation_rows=("triple loss", "without L_kd")), "ft_ablation_rows"),
])
def test_bad_settings_are_refused_with_the_name(kw, msg):
    with pytest.raises(ValueError, match=msg):
        get_config("smoke", **kw)


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile"):
        get_config("huge")


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


def test_setup_records_config_and_refuses_another_profiles_results(tmp_path):
    cfg = setup("smoke", "01_x", results_dir=str(tmp_path), max_steps=3)
    rec = json.loads((cfg.out / "config" / "01_x.json").read_text())
    assert rec["config"]["max_steps"] == 3 and "torch" in rec["versions"]
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "PROFILE.json").write_text(json.dumps({"profile": "smoke",
                                                               "teacher": "tiny"}))
    with pytest.raises(ResultsDirError, match="holds results of"):
        setup("cpu", "01_x", results_dir=str(tmp_path))
    with pytest.raises(ResultsDirError, match="teacher"):
        setup("smoke", "01_x", results_dir=str(tmp_path), teacher="bert-base-uncased")


def test_per_task_fine_tuning_overrides_apply_to_their_task_only():
    from distil_utils.finetune import task_config

    cfg = get_config("smoke", ft_task_overrides={"sst2": {"ft_max_train": None,
                                                          "ft_epochs": 2.0}})
    sst2, rte = task_config(cfg, "sst2"), task_config(cfg, "rte")
    assert (sst2.ft_max_train, sst2.ft_epochs) == (None, 2.0)
    assert (rte.ft_max_train, rte.ft_epochs) == (cfg.ft_max_train, cfg.ft_epochs)
    with pytest.raises(ValueError, match="not a GLUE task"):
        get_config("smoke", ft_task_overrides={"SST-2": {"ft_epochs": 1.0}})
    with pytest.raises(ValueError, match="only change fine-tuning settings"):
        get_config("smoke", ft_task_overrides={"sst2": {"max_steps": 5}})


def test_command_line_none_reaches_the_setting_but_notebook_none_leaves_the_profile():
    assert get_config("smoke", mlm_smoothing=None).mlm_smoothing == 0.7  # notebook: profile's
    assert get_config("smoke", explicit_none=("mlm_smoothing",),
                      mlm_smoothing=None).mlm_smoothing is None  # -p mlm_smoothing None
    from distil_utils.distill import config_from_cli

    cli = config_from_cli("smoke", [["mlm_smoothing", "None"]], batch_size=None)
    assert cli.mlm_smoothing is None and cli.batch_size == get_config("smoke").batch_size


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
