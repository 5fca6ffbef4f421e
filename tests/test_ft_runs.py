"""ft_runs: one stamped record per fine-tuning run, found again only when whole and current."""

from __future__ import annotations

import json

import pytest

from distil_utils import ft_runs
from distil_utils.config import get_config


def test_a_record_is_found_again_and_a_damaged_one_is_run_again(tmp_path, capsys):
    cfg = get_config("smoke", results_dir=str(tmp_path))
    stamp, rid, done = ft_runs.lookup(cfg, "some-hub-model", "sst2", 42)
    assert done is None
    ft_runs.record(cfg, rid, stamp, {"metrics": {"accuracy": 75.0}})
    assert ft_runs.lookup(cfg, "some-hub-model", "sst2", 42)[2] == {"metrics": {"accuracy": 75.0}}
    path = cfg.out / "ft_runs" / f"{rid}.json"
    for damaged in ("[]", json.dumps({"stamp": stamp}), "{cut"):  # no metrics, no JSON
        path.write_text(damaged)
        assert ft_runs.lookup(cfg, "some-hub-model", "sst2", 42)[2] is None
        assert "not a finished run's record" in capsys.readouterr().out


@pytest.mark.parametrize("other", [{"seed": 7}, {"what": "rte"}])
def test_a_record_of_other_settings_is_not_found(tmp_path, other):
    cfg = get_config("smoke", results_dir=str(tmp_path))
    stamp, rid, _ = ft_runs.lookup(cfg, "m", "sst2", 42)
    ft_runs.record(cfg, rid, stamp, {"metrics": {"accuracy": 75.0}})
    args = {"what": "sst2", "seed": 42} | other
    assert ft_runs.lookup(cfg, "m", args["what"], args["seed"])[2] is None
