"""Self-describing checkpoints, written atomically.

A checkpoint holds everything needed to rebuild the model and continue the run: the model's
constructor arguments (``model_config``) and state, the optimizer state, the epoch and step
counters, every RNG state that training draws from, and the resolved run config. It is written
to a temporary file in the same folder and renamed over the target, so a kill during the write
leaves the previous checkpoint intact. Loading maps tensors to CPU unless told otherwise.
"""
from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d+)\.pt$")


def checkpoint_path(directory: Path, epoch: int) -> Path:
    return Path(directory) / f"epoch_{epoch:07d}.pt"


def list_checkpoints(directory: Path) -> List[Path]:
    """Checkpoints in ``directory``, oldest epoch first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: Path) -> Optional[Path]:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def rng_state(generator: Optional[torch.Generator] = None) -> Dict[str, Any]:
    """Every RNG state training may draw from."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: Dict[str, Any], generator: Optional[torch.Generator] = None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


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


def load_model(path: Path, map_location="cpu"):
    """Rebuilds the :class:`~sobolev_inr.models.MLP` stored in a checkpoint, weights loaded."""
    from .models import MLP

    state = load_checkpoint(path, map_location)
    model = MLP(**state["model_config"])
    model.load_state_dict(state["model"])
    return model
