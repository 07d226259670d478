"""The run directory: where every task writes the same things the same way.

``<logging_root>/<exp_name>/`` holds

* ``config.txt``: the resolved config, loadable again with ``--config``;
* ``log.txt``: what the run printed;
* ``scalars.csv``: every logged scalar, long format ``step,name,value``;
* ``tensorboard/``: the same scalars as TensorBoard events;
* ``checkpoints/epoch_XXXXXXX.pt`` (or ``step_XXXXXXX.pt``): self-describing checkpoints
  (:mod:`sobolev_inr.training.checkpoints`);
* ``history.jsonl``: one line per start of the run (first or resumed): when, from which step,
  the resolved config and what changed since the previous start;
* ``metrics.json``: the final metrics, a flat object; its presence marks a finished run. Every task's
  shares the keys of :func:`run_metrics` and the :func:`~sobolev_inr.training.provenance.provenance` keys
  (``package_version``, ``torch_version``, ``git_commit``, ``git_dirty``);
* figures as PNG.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from tqdm.auto import tqdm

from ..errors import ConfigError
from .checkpoints import latest_checkpoint
from .provenance import provenance

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .loop import FitResult

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
RECORDED_CONFIG_KEYS = ("exp_name", "supervision", "activations", "lambda_der", "der_units", "der_mode",
                        "der_estimator", "der_directions", "der_fraction", "seed")
"""Config keys that :func:`run_metrics` repeats in ``metrics.json``, so that the report and the sweeps group runs
by them without reading ``config.json``: the run's name and seed, and the Sobolev-training options (which
supervision, which derivatives and how they are estimated). A task without one of them leaves it out."""


@dataclass(frozen=True)
class RunIdentity:
    """Which config keys make a run the run it is, for rerun detection and ``--resume``.

    ``ignored``: keys that never make another run: where and how it runs, not what it computes
    (device, logging, progress bars, the derivative engine; the engines agree to rounding,
    tests/test_derivatives.py). ``resumable``: keys that may change when a run is continued with
    ``--resume`` (a longer ``num_epochs``), which otherwise tell a finished run from a longer one.
    Every other key must match. ``defaults``: the options' defaults; a key that a saved config lacks
    (a run made before the option existed) matches when the new value is its default. Each task's
    parser builds one from its option groups (:mod:`sobolev_inr.config.cli`), so a task that brings its
    own options declares their role too.
    """

    ignored: AbstractSet[str] = field(default_factory=frozenset)
    resumable: AbstractSet[str] = field(default_factory=frozenset)
    defaults: Mapping[str, object] = field(default_factory=dict)


class RunDirectory:
    """Creates and guards a run directory; ``mode`` says what the caller should do with it.

    An existing directory is never silently overwritten. ``mode`` is

    * ``"new"``: a fresh run (no directory yet, or ``overwrite`` deleted the old one);
    * ``"resume"``: continue from the latest checkpoint: asked for with ``resume``, or an
      unfinished run (checkpoints, no ``metrics.json``) whose config matches this one;
    * ``"skip"``: a finished run (``metrics.json``) with the same config and epochs: nothing to do.

    Any other clash (a different config, also with ``resume``) raises :class:`ConfigError` naming the
    differing keys; ``identity`` says which keys may differ (:class:`RunIdentity`).
    """

    def __init__(self, logging_root: str, exp_name: str, resume: bool = False, overwrite: bool = False,
                 config: Optional[Mapping[str, object]] = None, identity: RunIdentity = RunIdentity()):
        if not exp_name or exp_name.strip("/.") == "":
            raise ConfigError("exp_name must name a run directory (e.g. exp_name = camera/val_der/sine)")
        self.path = Path(logging_root) / exp_name
        self.checkpoints = self.path / "checkpoints"
        self.identity = identity
        self.config = dict(config or {})
        self.previous_config: Optional[Dict[str, object]] = None
        self.mode = self._decide(resume, overwrite, self.config)
        if overwrite and self.path.exists():
            if not self._looks_like_run():
                raise ConfigError(f"refusing to delete {self.path} for --overwrite: it does not look like a run "
                                  f"directory (no config.json, metrics.json, log.txt or checkpoints/)")
            shutil.rmtree(self.path)
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            for stale in self.checkpoints.glob("*.tmp"):  # left by a kill during a checkpoint write
                stale.unlink()
            self._log = open(self.path / "log.txt", "a", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot write the run directory {self.path} (logging_root = {logging_root}): "
                              f"{e.strerror or e}") from None
        if self.mode != "skip":
            self.file("config.txt").write_text(format_config(self.config))
            self.file("config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True, default=str) + "\n")

    def _decide(self, resume: bool, overwrite: bool, config: Dict[str, object]) -> str:
        if overwrite or not self.path.exists():
            return "new"
        finished = (self.path / METRICS_FILE).exists()
        started = self.checkpoints.is_dir() and latest_checkpoint(self.checkpoints) is not None
        if not finished and not started:
            return "new"  # a directory with no checkpoint holds nothing worth keeping
        saved = self.saved_config()
        ignored, resumable = set(self.identity.ignored), set(self.identity.resumable)
        if saved is not None:  # options added since the run was made count as their defaults
            saved = {**{k: v for k, v in self.identity.defaults.items() if k in config}, **saved}
        self.previous_config = saved
        changed = _differences(saved, config, ignored | resumable) if saved is not None else ["(no config.json)"]
        if resume:
            if not started:
                raise ConfigError(f"run directory {self.path} holds a finished run but no checkpoint to resume "
                                  f"from; pass --overwrite to redo it or choose another exp_name")
            if changed:
                may = ", ".join(sorted(resumable)) or "none"
                raise ConfigError(f"--resume: run directory {self.path} holds a run with other settings "
                                  f"({'; '.join(changed)}); a resumed run continues with the settings it was trained "
                                  f"with (may change on resume: {may}, and options that do not change the result); "
                                  f"pass --overwrite to start afresh, or choose another exp_name")
            return "resume"
        if finished:
            longer = _differences(saved, config, ignored | (set(saved) | set(config)) - resumable)
            if not changed and not longer:
                return "skip"
            raise ConfigError(f"run directory {self.path} holds a finished run with other settings "
                              f"({'; '.join(changed or longer)}); pass --resume to extend it, --overwrite to redo it, "
                              f"or choose another exp_name")
        if changed:
            raise ConfigError(f"run directory {self.path} holds an unfinished run with other settings "
                              f"({'; '.join(changed)}); pass --overwrite to start afresh or choose another exp_name")
        return "resume"

    def record_start(self, epoch: int, step: int) -> None:
        """Appends this start of the run (first or resumed) to ``history.jsonl``: the time, where training
        starts, the resolved config and what changed since the config the directory held before."""
        entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "mode": self.mode, "start_epoch": epoch,
                 "start_step": step, "changed": _differences(self.previous_config, self.config, ())
                 if self.previous_config is not None else [], "config": self.config}
        with open(self.file(HISTORY_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True, default=str) + "\n")

    def _looks_like_run(self) -> bool:
        return any((self.path / name).exists() for name in ("config.json", METRICS_FILE, "log.txt", "checkpoints"))

    def saved_config(self) -> Optional[Dict[str, object]]:
        path = self.file("config.json")
        return json.loads(path.read_text()) if path.exists() else None

    def read_metrics(self) -> Dict[str, object]:
        return json.loads(self.file(METRICS_FILE).read_text())

    def print(self, *parts) -> None:
        """Prints to the terminal (above any progress bar) and appends to log.txt."""
        line = " ".join(str(p) for p in parts)
        tqdm.write(line)
        self.log_only(line)

    def log_only(self, line: str) -> None:
        """Appends a line to log.txt without printing it."""
        self._log.write(line + "\n")
        self._log.flush()

    def file(self, name: str) -> Path:
        return self.path / name

    def write_metrics(self, metrics: Mapping[str, object]) -> Path:
        """Writes the final metrics (non-finite floats become null, as JSON has no NaN); :func:`run_metrics`
        gives them the :func:`~sobolev_inr.training.provenance.provenance` keys."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        path = self.file(METRICS_FILE)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    def close(self) -> None:
        self._log.close()


class ScalarLog:
    """Appends scalars to ``scalars.csv`` and TensorBoard; reads them back for plots."""

    def __init__(self, run: RunDirectory, start_step: int = 0, tensorboard: bool = True):
        self.csv_path = run.file("scalars.csv")
        if self.csv_path.exists():
            self._truncate_after(start_step)
        new = not self.csv_path.exists()
        self._file = open(self.csv_path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["step", "name", "value"])
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(run.file("tensorboard")), purge_step=start_step or None)

    def _truncate_after(self, step: int) -> None:
        """Drops rows logged after ``step`` (written before a kill, redone on resume)."""
        rows = read_scalars_rows(self.csv_path)
        with open(self.csv_path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["step", "name", "value"])
            w.writerows(r for r in rows if r[0] <= step)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self._csv.writerow([step, name, repr(float(value))])
            if self._tb is not None:
                self._tb.add_scalar(name, value, step)

    def write_many(self, rows: Iterable[Tuple[int, Mapping[str, float]]]) -> None:
        for step, values in rows:
            self.write(step, values)
        self.flush()

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def run_metrics(task_name: str, metadata: Mapping[str, Any], result: "FitResult", model: "nn.Module",
                device: "torch.device", *, config_keys: Sequence[str] = RECORDED_CONFIG_KEYS) -> Dict[str, Any]:
    """The keys every task's ``metrics.json`` shares, beside the task's own quality metrics: the task, the
    ``config_keys`` of the resolved run config ``metadata`` that it has (:data:`RECORDED_CONFIG_KEYS`), the
    model's encoding and size, the training record of :func:`~sobolev_inr.training.loop.fit` (length, time,
    memory, skipped steps, the last logged loss terms as ``final_<term>``), and the
    :func:`~sobolev_inr.training.provenance.provenance` keys."""
    per_1k = 1000.0 * result.train_time_s / result.steps if result.steps else None
    return {
        "task": task_name, **{k: metadata[k] for k in config_keys if k in metadata},
        "encoding": getattr(model, "config", {}).get("encoding"),
        "epochs": result.epochs, "steps": result.steps, "wall_time_s": round(result.wall_time_s, 3),
        "train_time_s": round(result.train_time_s, 3),
        "time_per_1k_steps_s": round(per_1k, 3) if per_1k is not None else None,
        "peak_memory_mb": round(result.peak_memory_mb, 1) if result.peak_memory_mb is not None else None,
        "peak_memory_kind": result.peak_memory_kind, "skipped_steps": result.skipped_steps,
        "device": str(device), "num_params": sum(p.numel() for p in model.parameters()),
        **{f"final_{k.split('/', 1)[1]}": v for k, v in result.final_terms.items() if k.startswith("train/")},
        **provenance(),
    }


def format_config(config: Dict[str, Any]) -> str:
    """A txt config (ConfigArgParse syntax) that reproduces ``config`` with ``--config``."""
    lines = []
    for key, value in config.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"{key} = [{', '.join(str(v) for v in value)}]")
        elif value is not None:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def _differences(old: Mapping[str, object], new: Mapping[str, object], ignored) -> List[str]:
    """``key: old -> new`` for every key that differs, ignoring ``ignored``."""
    normalise = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  (JSON has no tuples)
    keys = sorted((set(old) | set(new)) - set(ignored))
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in keys if normalise(old.get(k)) != normalise(new.get(k))]


def read_history(run_dir: Path) -> List[Dict[str, Any]]:
    """The entries of a run directory's ``history.jsonl``, oldest first (one per start of the run)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_scalars_rows(path: Path) -> List[Tuple[int, str, float]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)
        return [(int(s), n, float(v)) for s, n, v in reader]


def read_scalars(path: Path) -> Dict[str, Tuple[List[int], List[float]]]:
    """scalars.csv -> {name: (steps, values)}."""
    series: Dict[str, Tuple[List[int], List[float]]] = defaultdict(lambda: ([], []))
    for step, name, value in read_scalars_rows(path):
        series[name][0].append(step)
        series[name][1].append(value)
    return dict(series)




