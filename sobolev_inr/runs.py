"""The run directory: where every task writes the same things the same way.

``<logging_root>/<exp_name>/`` holds

* ``config.txt``: the resolved config, loadable again with ``--config``;
* ``log.txt``: what the run printed;
* ``scalars.csv``: every logged scalar, long format ``step,name,value``;
* ``tensorboard/``: the same scalars as TensorBoard events;
* ``checkpoints/epoch_XXXXXXX.pt``: self-describing checkpoints (:mod:`sobolev_inr.checkpoints`);
* ``metrics.json``: the final metrics, a flat object; its presence marks a finished run;
* figures as PNG.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from tqdm.auto import tqdm

from .errors import ConfigError

METRICS_FILE = "metrics.json"


class RunDirectory:
    """Creates and guards a run directory.

    An existing directory is never silently reused: a finished run (``metrics.json`` present) or
    one with checkpoints is refused unless ``resume`` (continue from the latest checkpoint) or
    ``overwrite`` (delete it and start afresh) is given.
    """

    def __init__(self, logging_root: str, exp_name: str, resume: bool = False, overwrite: bool = False):
        if not exp_name or exp_name.strip("/.") == "":
            raise ConfigError("exp_name must name a run directory (e.g. exp_name = camera/val_der/sine)")
        self.path = Path(logging_root) / exp_name
        self.checkpoints = self.path / "checkpoints"
        finished = (self.path / METRICS_FILE).exists()
        started = any(self.checkpoints.glob("epoch_*.pt")) if self.checkpoints.is_dir() else False
        if overwrite and self.path.exists():
            shutil.rmtree(self.path)
        elif finished and not resume:
            raise ConfigError(f"run directory {self.path} holds a finished run (metrics.json); "
                              f"pass --overwrite to redo it, --resume to extend it, or choose another exp_name")
        elif started and not resume:
            raise ConfigError(f"run directory {self.path} holds checkpoints of an unfinished run; "
                              f"pass --resume to continue it or --overwrite to start afresh")
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create run directory {self.path} (logging_root = {logging_root}): {e.strerror}") from None
        self._log = open(self.path / "log.txt", "a", encoding="utf-8")

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
        """Writes the final metrics (non-finite floats become null, as JSON has no NaN)."""
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
        if start_step and self.csv_path.exists():
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




