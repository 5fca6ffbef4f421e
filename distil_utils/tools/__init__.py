"""The suite's runner: the papermill runner and its notebook files and run log, the installer,
the Colab/Binder links.

Nothing in the paper's tiers imports from here (tests/test_layout.py checks it). The harnesses
that measure the method (benchmarks, the reference-algorithm oracle, the GPU check) live beside
the package in `benchmarks/`. Like the package root, this file imports no third-party package,
so that `python3 -m distil_utils.tools.setup_env` runs on a bare interpreter.
"""
