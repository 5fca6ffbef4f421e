"""The notebooks' first cell after `parameters`: one config, recorded; quiet logs; plot theme.

Kept here so every notebook starts the same way and the set-up itself is tested.
"""

from __future__ import annotations

import ast
import logging
import os
import random
from pathlib import Path
from typing import Any

from .artefacts import portable
from .config import PROFILES, Config, get_config
from .figures import save
from .results_io import lock_results, read_json, versions, write_json
from .validation import declared_spelling


class ResultsDirError(RuntimeError):
    """A results directory holds another profile's results."""


class ParameterError(ValueError):
    """A notebook parameter set under a name the notebook does not declare."""


DEFAULT_PROFILE = "smoke"
PROFILE_ENV = "DISTIL_PROFILE"
INJECTED_HEADER = "# Parameters"  # papermill's first line of the cell it injects


def read_parameters(namespace: dict[str, Any]) -> str:
    """Settle the parameters cell's names, however the notebook was started; return the profile.

    - `papermill nb.ipynb out.ipynb -p seed 7` defines `seed`; the runner and the distillation
      command line take any case, so it is read as `SEED` here (said in one line). A name that is
      no parameter in any case is an error naming the declared ones: papermill itself only warns.
    - `PROFILE = None` (as committed): `$DISTIL_PROFILE` if set (Binder's start script and a
      `DISTIL_PROFILE=cpu jupyter lab` set it), else "smoke" — a profile is chosen without
      editing, and so dirtying, the tracked notebook.

    papermill's injected cell is found in IPython's input history (`In`), right after the
    parameters cell it overrides; interactive kernels have none and only the profile applies.
    """
    history = [str(c) for c in namespace.get("In", [])]
    at = [i for i, c in enumerate(history) if c.startswith(INJECTED_HEADER)]
    if at and at[-1] > 0:
        declared, injected = _names(history[at[-1] - 1]), _names(history[at[-1]])
        for name in injected:
            spelled = declared_spelling(name, declared)
            if spelled not in declared:
                raise ParameterError(
                    f"parameter {name!r} is not declared by this notebook (its parameters: "
                    f"{sorted(declared)}, in any case, e.g. -p seed 7); check the spelling")
            if spelled != name:
                namespace[spelled] = namespace[name]
                print(f"parameter {name} = {namespace[name]!r} read as {spelled}")
    if namespace.get("PROFILE") is None:
        env = os.environ.get(PROFILE_ENV)
        if env and env not in PROFILES:
            raise ParameterError(f"{PROFILE_ENV}={env!r} is not a profile; choose one of "
                                 f"{sorted(PROFILES)} (or unset it for {DEFAULT_PROFILE!r})")
        namespace["PROFILE"] = env or DEFAULT_PROFILE
    return namespace["PROFILE"]


def _names(source: str) -> list[str]:
    """The names a cell of `NAME = value` lines assigns (nothing for code that does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [t.id for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


def setup(profile: str, notebook: str, **overrides: Any) -> Config:
    """Resolve profile + overrides, seed everything, record the config and versions.

    Refuses a results directory written by another profile (or another teacher): mixing
    them would silently put two runs' numbers in one table.
    """
    import numpy as np
    import torch

    cfg = get_config(profile, **overrides)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "datasets", "evaluate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
    except ImportError:
        pass
    lock_results(cfg.out, f"notebook {notebook}")  # one writer; refused while another runs
    check_results_dir(cfg)
    write_json(cfg.out / "config" / f"{notebook}.json",
               {"notebook": notebook, "config": portable(cfg.to_dict(), cfg.out),
                "versions": versions()})
    _plot_theme()
    print(f"profile {cfg.profile!r} · results in {relative(cfg.out, cfg)} · seed {cfg.seed} · "
          f"data {'Hub' if not cfg.data_dir else 'local mirror ' + Path(cfg.data_dir).name}")
    print(" · ".join(f"{k} {v}" for k, v in versions().items() if k != "platform"))
    return cfg


def check_results_dir(cfg: Config) -> None:
    """Write or check `results/<profile>/PROFILE.json` (profile name and teacher)."""
    marker = cfg.out / "PROFILE.json"
    mine = {"profile": cfg.profile, "teacher": cfg.teacher}
    if marker.exists():
        theirs = read_json(marker)  # damaged: an error naming the file and the fix
        if not isinstance(theirs, dict):
            raise ResultsDirError(f"{marker} is not a profile marker ({theirs!r}): delete it "
                                  "(it is written again) if this folder holds this profile")
        if theirs != mine:
            raise ResultsDirError(
                f"{cfg.out} holds results of {theirs}, not {mine}. Use another RESULTS_DIR, "
                "or delete that directory to start this profile afresh."
            )
    else:
        write_json(marker, mine)


def _plot_theme() -> None:
    try:
        import seaborn as sns

        sns.set_theme(context="notebook", style="whitegrid")
    except ImportError:
        pass


def save_figure(fig: Any, cfg: Config, name: str) -> list[Path]:
    """Save a matplotlib figure as PNG and SVG under `results/<profile>/figures/`."""
    return save(fig, cfg.out / "figures", name)


def batch_run() -> bool:
    """True in a kernel that `python -m distil_utils.tools.reproduce` (papermill) started."""
    return bool(os.environ.get("DISTIL_COMMAND"))


def quiet_progress() -> None:
    """Keep executed notebooks readable: no per-file bars from datasets (map, casting),
    transformers (loading and writing weights) or Trainer.

    In a batch run (papermill) a progress bar would be saved as frozen "0%" text, so tqdm is
    switched off too, and Trainer's raw-dict fallback with it. Call this before the suite's
    modules are imported: they bind `tqdm.auto.tqdm` (which reads TQDM_DISABLE) at import.
    Interactive kernels keep their live bars.
    """
    if batch_run():
        os.environ["TQDM_DISABLE"] = "1"
        import tqdm.auto

        class _Off(tqdm.auto.tqdm):  # also for loops that pass disable=False explicitly
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **{**kwargs, "disable": True})

        tqdm.auto.tqdm = _Off
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    if batch_run():
        import transformers.trainer as trainer_module

        # Trainer picks PrinterCallback (print(logs)) when tqdm is disabled; a bare
        # TrainerCallback does nothing.
        trainer_module.PrinterCallback = transformers.TrainerCallback


def relative(path: Any, cfg: Config) -> str:
    """`path` as `results/<profile>/...` (no machine path in an executed notebook)."""
    try:
        return str(Path("results") / Path(path).resolve().relative_to(cfg.out.resolve().parent))
    except ValueError:
        return Path(str(path)).name if Path(str(path)).is_absolute() else str(path)
