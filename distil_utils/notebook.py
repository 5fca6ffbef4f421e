"""The notebooks' first cell after `parameters`: one config, recorded; quiet logs; plot theme.

Kept here so every notebook starts the same way and the set-up itself is tested.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any

from .config import Config, get_config
from .figures import save
from .results_io import lock_results, versions, write_json


class ResultsDirError(RuntimeError):
    """A results directory holds another profile's results."""


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
               {"notebook": notebook, "config": cfg.to_dict(), "versions": versions()})
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
        theirs = json.loads(marker.read_text())
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
