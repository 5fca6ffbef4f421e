"""The notebooks' set-up cell: it records the config and refuses another profile's results."""

from __future__ import annotations

import json

import pytest

from distil_utils.notebook import (
    PROFILE_ENV,
    ParameterError,
    ResultsDirError,
    read_parameters,
    setup,
)


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
    for damaged in ("{not json", "[]"):  # a damaged marker is named, with the fix
        (tmp_path / "cpu" / "PROFILE.json").write_text(damaged)
        with pytest.raises((ValueError, ResultsDirError), match="PROFILE.json.*delete it"):
            setup("cpu", "01_x", results_dir=str(tmp_path))


# --- the parameters a notebook reads (issue 24: one spelling, a profile without editing) -----

def _papermill_namespace(params: str, injected: str, **values):
    """A kernel's globals as papermill leaves them: `In` holds the parameters cell, then the
    cell papermill injected (its first line is "# Parameters"), and both cells' names."""
    return {"In": ["", "import os", params, "# Parameters\n" + injected], **values}


def test_papermill_lower_case_names_are_read_as_the_declared_parameters(capsys):
    ns = _papermill_namespace("PROFILE = None\nSEED = None\nMAX_STEPS = None",
                              "seed = 7\nmax_steps = 20\nPROFILE = 'cpu'\n",
                              PROFILE="cpu", SEED=None, MAX_STEPS=None, seed=7, max_steps=20)
    assert read_parameters(ns) == "cpu"
    assert ns["SEED"] == 7 and ns["MAX_STEPS"] == 20
    assert "seed = 7 read as SEED" in capsys.readouterr().out


def test_a_name_no_parameter_spells_is_an_error_naming_the_declared_ones():
    ns = _papermill_namespace("PROFILE = None\nMAX_STEPS = None", "max_stpes = 20\n",
                              PROFILE=None, MAX_STEPS=None, max_stpes=20)
    with pytest.raises(ParameterError, match=r"'max_stpes'.*MAX_STEPS"):
        read_parameters(ns)


def test_profile_none_reads_distil_profile_else_smoke(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert read_parameters({"PROFILE": None}) == "smoke"
    monkeypatch.setenv(PROFILE_ENV, "binder")
    ns = {"PROFILE": None}
    assert read_parameters(ns) == "binder" and ns["PROFILE"] == "binder"
    assert read_parameters({"PROFILE": "cpu"}) == "cpu"  # set explicitly: the variable waits
    monkeypatch.setenv(PROFILE_ENV, "laptop")
    with pytest.raises(ParameterError, match="DISTIL_PROFILE='laptop'.*choose one of"):
        read_parameters({"PROFILE": None})


def test_an_interactive_kernel_without_an_injected_cell_keeps_its_values(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    ns = {"In": ["", "PROFILE = None\nSEED = 3", "seed = 'a local variable'"],
          "PROFILE": None, "SEED": 3, "seed": "a local variable"}
    assert read_parameters(ns) == "smoke" and ns["SEED"] == 3
