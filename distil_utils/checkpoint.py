"""Training checkpoints that are written atomically and refuse to resume the wrong run.

A checkpoint records a fingerprint of the settings that shape the run; resuming under other
settings, or from a damaged file, is a clear error naming the file — never a silent restart
that overwrites earlier work.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from .results_io import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used for this run."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """`torch.save` to a temporary file, then rename: a kill never leaves half a file."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    return atomic_write(path, lambda p: p.write_bytes(data))


def load_checkpoint(path: str | Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint and check it belongs to the run described by `fingerprint`."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # zip/pickle errors of a truncated file come in many types
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}). "
            "Delete it to start this run again from scratch, or restore it from a backup."
        ) from err
    if not isinstance(payload, dict) or "fingerprint" not in payload:
        raise CheckpointError(f"{path} is not a distil_utils checkpoint (no fingerprint): "
                              "move it away or choose another results directory")
    old = payload["fingerprint"]
    diff = {k: (old.get(k), v) for k, v in fingerprint.items() if old.get(k) != v}
    diff.update({k: (v, None) for k, v in old.items() if k not in fingerprint})
    if diff:
        shown = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(
            f"checkpoint {path} was written by a run with other settings ({shown}). "
            "Resume with the same settings, or use another results directory / delete the "
            "checkpoint to start a new run."
        )
    return payload


def discard_finished(path: str | Path, fingerprint: dict[str, Any]) -> bool:
    """Remove `path` if it is a *finished* run's checkpoint with another fingerprint.

    `fingerprint` is the settings' (`training.run_fingerprint`), without the loop's own
    `world` and with `max_steps` None where epochs derive it. Returns True when it removed the
    file. A damaged file is left for `load_checkpoint` to report.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        old = dict(payload["fingerprint"])
        done = payload["step"] >= old.get("max_steps", float("inf"))
    except Exception:  # noqa: BLE001 (load_checkpoint names the problem when it is resumed)
        return False
    # the loop adds its own max_steps (the settings' may be None: derived from epochs) and world
    loop_keys = {"max_steps", "world"}
    same = {k: v for k, v in old.items() if k not in loop_keys} == \
        {k: v for k, v in fingerprint.items() if k not in loop_keys} \
        and fingerprint.get("max_steps") in (None, old.get("max_steps"))
    if done and not same:
        path.unlink()
        return True
    return False
