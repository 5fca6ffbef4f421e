"""`python -m benchmarks.speed_cli`: the speed and size comparison's command line end to end."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.speed_cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # ~12 s
def test_cli_end_to_end(classifier_pair, tmp_path, data_dir, capsys, monkeypatch):
    root, _ = classifier_pair
    monkeypatch.setenv("DISTIL_DATA_DIR", data_dir)
    torch.set_num_threads(2)  # the run asks for 1 and must give the 2 back
    try:
        res = main(["--teacher", str(root / "teacher"), "--student", str(root / "student"),
                    "--task", "stsb", "--max-examples", "6", "--repeats", "2", "--threads",
                    "1", "--results-dir", str(tmp_path)])
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(1)
    out = capsys.readouterr().out
    assert "BERT-base (paper)" in out and "DistilBERT (paper)" in out and "written:" in out
    assert "fresh" in out  # masked-LM checkpoints: the timing head is new, and we say so
    saved = json.loads((tmp_path / "smoke" / "speed.json").read_text())["metrics"]
    assert threads_after == 2  # --threads applies to the run only
    assert saved["threads"] == 1 and saved["examples"] == 6 and saved["task"] == "stsb"
    assert saved["ratios"]["params"] < 1 and saved["ratios"]["speedup"] > 0
    assert len(saved["grid"]) == 2 * 2 * 2  # 2 models × smoke's 2 batch sizes × 2 lengths
    assert len(saved["grid_ratios"]) == 4
    for suffix in ("png", "svg"):
        assert (tmp_path / "smoke" / "figures" / f"speed_latency_grid.{suffix}").stat().st_size
    assert res["models"]["student"]["layers"] == 2 and res["models"]["teacher"]["layers"] == 4
