"""distil_utils: the tested code behind the DistilBERT reproduction notebooks.

Kept import-light on purpose: `python -m distil_utils.tools.setup_env` must run with nothing but
the standard library installed, so this file imports no third-party package. Import the
submodules you need (`from distil_utils import student, losses`).
"""

__version__ = "0.1.0"
