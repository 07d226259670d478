"""Self-describing checkpoints, written atomically.

A checkpoint holds everything needed to rebuild the model and continue the run: the model's
constructor arguments (``model_config``) and state, the optimizer state, the epoch and step
counters, the state of the random generator training draws from, and the resolved run config.
Checkpoints are named by the run's unit: ``epoch_XXXXXXX.pt`` or ``step_XXXXXXX.pt``. It is written
to a temporary file in the same folder and renamed over the target, so a kill during the write
leaves the previous checkpoint intact. Loading maps tensors to CPU unless told otherwise.

Checkpoints hold tensors and plain values only (dict, list, tuple, str, int, float, bool, None), so they
load with ``torch.load(..., weights_only=True)``, which runs no code from the file: :func:`save_checkpoint`
turns NumPy arrays into tensors, NumPy scalars into numbers and paths into strings, refuses any other
object (TypeError naming where it is), and stamps the checkpoint with :func:`~sobolev_inr.training.provenance.provenance`
(``package_version``, ``torch_version``, ``git_commit``, ``git_dirty``). A file that holds other objects (a
checkpoint written elsewhere, say with NumPy content) fails to load with :class:`CheckpointError`; if you
trust the file, ``load_checkpoint(path, trusted=True)`` loads it with full unpickling.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import DataError
from .provenance import provenance

CHECKPOINT_PATTERN = re.compile(r"^(epoch|step)_(\d+)\.pt$")
CHECKPOINT_UNITS = ("epoch", "step")
_PLAIN_LEAVES = (str, bytes, int, float, complex, bool, torch.dtype, torch.device, torch.Size)


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


class CheckpointError(DataError):
    """A checkpoint that cannot be loaded safely (it holds objects other than tensors and plain values)."""


def plain_checkpoint(state: Any, where: str = "checkpoint") -> Any:
    """``state`` with only what ``torch.load(weights_only=True)`` loads: tensors, dicts (OrderedDicts kept),
    lists, tuples, sets, str, bytes, int, float, complex, bool, None, torch dtypes, devices and sizes. NumPy
    arrays become tensors, NumPy scalars numbers, paths and ``str`` subclasses strings, named tuples tuples;
    anything else raises TypeError naming where it is. Containers with nothing to convert are returned as
    they are (a model's state dict keeps its ``_metadata``)."""
    if state is None or type(state) in _PLAIN_LEAVES or isinstance(state, torch.Tensor):
        return state
    if isinstance(state, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(state))
    if isinstance(state, np.generic):
        return state.item()
    if isinstance(state, (str, os.PathLike)):
        return os.fspath(state) if isinstance(state, os.PathLike) else str(state)
    if isinstance(state, bool):
        return bool(state)
    if isinstance(state, int):
        return int(state)
    if isinstance(state, float):
        return float(state)
    if isinstance(state, dict):
        items = [(plain_checkpoint(k, f"{where} key {k!r}"), plain_checkpoint(v, f"{where}[{k!r}]"))
                 for k, v in state.items()]
        unchanged = all(a is k and b is v for (a, b), (k, v) in zip(items, state.items()))
        if type(state) in (dict, OrderedDict) and unchanged:
            return state
        return (OrderedDict if isinstance(state, OrderedDict) else dict)(items)
    if isinstance(state, (list, tuple, set, frozenset)):
        kind = list if isinstance(state, list) else set if isinstance(state, (set, frozenset)) else tuple
        items = [plain_checkpoint(v, f"{where}[{i}]") for i, v in enumerate(state)]
        if type(state) is kind and all(a is b for a, b in zip(items, state)):
            return state
        return kind(items)
    raise TypeError(f"{where} is a {type(state).__module__}.{type(state).__qualname__}; checkpoints hold tensors "
                    f"and plain values only (dict, list, tuple, str, int, float, bool, None), so that they load "
                    f"with weights_only=True")


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    """Writes ``state`` to ``path`` atomically (temporary file + rename), as plain values
    (:func:`plain_checkpoint`), with the :func:`~sobolev_inr.training.provenance.provenance` keys it does not set."""
    state = plain_checkpoint({**state, **{k: v for k, v in provenance().items() if k not in state}})
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


def load_checkpoint(path: Path, map_location="cpu", *, trusted: bool = False) -> Dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint` (tensors on CPU by default) with
    ``weights_only=True``. :class:`CheckpointError` (one line) when the file holds other objects, e.g. NumPy
    arrays; ``trusted=True`` loads such a file with full unpickling, which can run code from it: only for
    files you made or trust."""
    if trusted:
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain values"
                              f"{' (' + found.group(1) + ')' if found else ''}, so it does not load with "
                              f"weights_only=True (written elsewhere or by an older version?); if you trust the "
                              f"file, load it with sobolev_inr.training.checkpoints.load_checkpoint(path, trusted=True) and "
                              f"save it again with save_checkpoint") from None


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Deletes all but the newest ``keep`` checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)


def model_from_state(state: Dict[str, Any]):
    """The :class:`~sobolev_inr.models.MLP` a loaded checkpoint describes, its weights loaded."""
    from ..models import MLP

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


def rebuild_run(run_dir: Path, build_task: Callable[[Dict[str, Any], Path], Any]) -> Tuple[Any, Any]:
    """(model, task) of a run's newest checkpoint: its MLP (on the CPU) and the task object
    ``build_task(config, working_dir)`` rebuilds from the run's resolved config, relative paths taken from the
    working directory the run was trained in."""
    model, state = load_run_model(run_dir)
    return model, build_task(state["config"], Path(state.get("working_dir", ".")))


def load_model(path: Path, map_location="cpu"):
    """Rebuilds the :class:`~sobolev_inr.models.MLP` stored in a checkpoint, weights loaded, on the device
    ``map_location`` names (CPU by default, whatever device the run trained on)."""
    model = model_from_state(load_checkpoint(path, map_location))
    return model.to(map_location) if isinstance(map_location, (str, torch.device)) else model
