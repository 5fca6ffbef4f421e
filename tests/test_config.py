"""Profiles, overrides and the checks `config.validate` makes (temperature, loss weights,
speed settings); the `colab` profile."""

from __future__ import annotations

import pytest

from distil_utils.config import PROFILES, get_config


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


def test_command_line_none_reaches_the_setting_but_notebook_none_leaves_the_profile():
    assert get_config("smoke", mlm_smoothing=None).mlm_smoothing == 0.7  # notebook: profile's
    assert get_config("smoke", explicit_none=("mlm_smoothing",),
                      mlm_smoothing=None).mlm_smoothing is None  # -p mlm_smoothing None
    from distil_utils.distill import config_from_cli

    cli = config_from_cli("smoke", [["mlm_smoothing", "None"]], batch_size=None)
    assert cli.mlm_smoothing is None and cli.batch_size == get_config("smoke").batch_size


def test_temperature_and_weights():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        get_config("smoke", temperature=0.0)
    with pytest.raises(ValueError, match="alpha_ce must be >= 0"):
        get_config("smoke", alpha_ce=-1.0)


def test_bad_speed_settings_are_errors():
    with pytest.raises(ValueError, match="distill_autocast"):
        get_config("smoke", distill_autocast="int8")
    with pytest.raises(ValueError, match="distill_chunk_rows"):
        get_config("smoke", distill_chunk_rows=0)


def test_colab_profile_is_the_paper_model_online(monkeypatch):
    from distil_utils.config import get_config

    monkeypatch.delenv("DISTIL_DATA_DIR", raising=False)
    cfg = get_config("colab")
    assert cfg.teacher == "bert-base-uncased" and cfg.adapt_steps == 0
    assert cfg.student_layers == (0, 2, 4, 7, 9, 11)
    assert cfg.data_dir is None  # the Hub: Colab has no local mirror
    assert "wikipedia" not in cfg.corpus  # downloads in minutes, not hours
