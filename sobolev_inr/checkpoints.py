"""Self-describing checkpoints, written atomically.

A checkpoint holds everything needed to rebuild the model and continue the run: the model's
constructor arguments (``model_config``) and state, the optimizer state, the epoch and step
counters, the state of the random generator training draws from, and the resolved run config.
Checkpoints are named by the run's unit: ``epoch_XXXXXXX.pt`` or ``step_XXXXXXX.pt``. It is written
to a temporary file in the same folder and renamed over the target, so a kill during the write
leaves the previous checkpoint intact. Loading maps tensors to CPU unless told otherwise.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

CHECKPOINT_PATTERN = re.compile(r"^(epoch|step)_(\d+)\.pt$")
CHECKPOINT_UNITS = ("epoch", "step")


def checkpoint_path(directory: Path, index: int, unit: str = "epoch") -> Path:
    """``<directory>/epoch_0000042.pt`` (or ``step_...``) for a checkpoint at epoch or step ``index``."""
    if unit not in CHECKPOINT_UNITS:
        raise ValueError(f"unknown checkpoint unit {unit!r}; choose from {list(CHECKPOINT_UNITS)}")
    return Path(directory) / f"{unit}_{index:07d}.pt"


def list_checkpoints(directory: Path) -> List[Path]:
    """Checkpoints in ``directory``, oldest first (by epoch or step number)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(2)), p.name, p) for p in directory.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, _, p in sorted(found)]


def latest_checkpoint(directory: Path) -> Optional[Path]:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    """Writes ``state`` to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: Path, map_location="cpu") -> Dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint` (tensors on CPU by default)."""
    return torch.load(path, map_location=map_location, weights_only=False)


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Deletes all but the newest ``keep`` checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)


def model_from_state(state: Dict[str, Any]):
    """The :class:`~sobolev_inr.models.MLP` a loaded checkpoint describes, its weights loaded."""
    from .models import MLP

    model = MLP(**state["model_config"])
    model.load_state_dict(state["model"])
    return model


def load_run_model(run_dir: Path):
    """(model, state) of the newest checkpoint of a run directory: its MLP, weights loaded, on the CPU, and the
    checkpoint's contents (the resolved ``config``, the ``working_dir`` relative paths start from, ...).
    FileNotFoundError when the run has no checkpoint."""
    directory = Path(run_dir) / "checkpoints"
    path = latest_checkpoint(directory)
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    state = load_checkpoint(path)
    return model_from_state(state), state


def load_model(path: Path, map_location="cpu"):
    """Rebuilds the :class:`~sobolev_inr.models.MLP` stored in a checkpoint, weights loaded, on the device
    ``map_location`` names (CPU by default, whatever device the run trained on)."""
    model = model_from_state(load_checkpoint(path, map_location))
    return model.to(map_location) if isinstance(map_location, (str, torch.device)) else model
