"""The README's result blocks are generated from results/cpu/summary.json and cannot go stale."""

from __future__ import annotations

import json
import shutil

from distil_utils.config import ROOT
from distil_utils.tools.readme_numbers import main


def test_the_committed_readme_tells_the_committed_numbers(capsys):
    assert main([]) == 0, capsys.readouterr().err


def test_a_changed_number_fails_the_check_until_the_blocks_are_rewritten(tmp_path, capsys):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    (tmp_path / "results" / "cpu").mkdir(parents=True)
    summary = json.loads((ROOT / "results" / "cpu" / "summary.json").read_text())
    for row in summary["metrics"]["targets"]:
        if row["metric"] == "speedup":  # two targets (1.8x, 1.9x) judge the one speed-up
            row["measured"] = 1.5
    (tmp_path / "results" / "cpu" / "summary.json").write_text(json.dumps(summary))
    args = ["--readme", str(readme), "--results", str(tmp_path / "results")]
    assert main(args) == 1
    assert "readme_numbers --write" in capsys.readouterr().err
    assert main([*args, "--write"]) == 0
    assert "**1.50× [1.99, 2.08]**" in readme.read_text()
    assert main(args) == 0


def test_a_readme_without_its_blocks_is_a_clear_error(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no blocks here\n")
    assert main(["--readme", str(readme)]) == 1
    assert "<!-- results:headline -->" in capsys.readouterr().err
