"""Tooling around the paper: the papermill runner and notebook clean-up, the set-up script,
Colab/Binder links and the distillation and corpus benchmarks.

Nothing in `distil_utils/` (the paper's modules) imports from here (tests/test_layout.py
checks it): the notebooks narrate the paper's modules, these tools run and measure them.
Like the package root, this file imports no third-party package, so that
`python3 -m distil_utils.tools.setup_env` runs on a bare interpreter.
"""
