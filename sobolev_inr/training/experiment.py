"""What every task's entry script does around its own data and task: open the run, train, report.

A task script parses its options, loads its data, builds the model and its task object, and hands
them with plain values (a :class:`~sobolev_inr.training.loop.FitConfig` and the resolved config) to
:func:`train_and_report`; that way the run directory, the metrics names, the figures and the
printed summary are the same for every task.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from ..config.options import FinalEvalOptions
from ..errors import TrainingError
from .loop import Callback, FitConfig, Periodic, Task, fit
from .progress import QUIET, Progress
from .runs import RunDirectory, RunIdentity, run_metrics


def open_run(logging_root: str, exp_name: str, metadata: Mapping[str, Any], identity: RunIdentity,
             resume: bool = False, overwrite: bool = False) -> RunDirectory:
    """The run directory ``<logging_root>/<exp_name>`` for this config (see :class:`RunDirectory`)."""
    run = RunDirectory(logging_root, exp_name, resume=resume, overwrite=overwrite, config=metadata, identity=identity)
    if run.mode == "skip":
        run.print(f"skipping: {run.path} holds a finished run of this config (metrics.json); --overwrite redoes it")
    return run


def describe_model(model: nn.Module, supervision: str, device: torch.device, run: RunDirectory) -> None:
    cfg = model.config
    run.print(f"model: {cfg['activations']}, encoding {cfg['encoding']}"
              + (f" (L = {cfg['num_frequencies']})" if cfg["encoding"] == "positional" else "")
              + f"; supervision {supervision}; device {device}; run dir {run.path}")


def train_and_report(task_name: str, model: nn.Module, task: Task, run: RunDirectory, fit_cfg: FitConfig,
                     metadata: Mapping[str, Any], device: torch.device, extra_metrics: Optional[Dict[str, Any]] = None,
                     summary: Iterable[str] = ("psnr_heldout",), periodic: Sequence[Periodic] = (),
                     callbacks: Sequence[Callback] = (), final_eval: FinalEvalOptions = FinalEvalOptions()
                     ) -> Dict[str, Any]:
    """Trains ``model`` on ``task`` (:func:`fit`), then writes ``metrics.json``, the task's outputs
    (``task.write_outputs``) and ``curves.png``; prints the ``summary`` metrics and the run directory.
    ``callbacks`` hook into the training loop (:class:`~sobolev_inr.training.loop.Callback`); ``final_eval``
    says what the end of the run scores (a stride, or the last summary's evaluation only) and whether it
    writes figures, and is recorded in ``metrics.json``. Each phase after training logs its duration, through
    the task's ``progress`` where it has one.

    A run whose final metrics are not numbers (NaN) stops with :class:`TrainingError` instead of
    "finishing" with null metrics.
    """
    result = fit(model, task, fit_cfg, run, metadata, periodic, callbacks=callbacks)
    progress: Progress = getattr(task, "progress", QUIET)
    model.eval()
    if final_eval.skip_final_eval:
        quality = {k.split("/", 1)[1]: v for k, v in result.last_evaluation.items()}
        run.print("final evaluation skipped (skip_final_eval): metrics.json holds the last summary's evaluation")
    else:
        with progress.phase("final evaluation"):
            quality = task.final_metrics(model, stride=final_eval.final_eval_stride)
    bad = sorted(k for k, v in quality.items() if isinstance(v, float) and math.isnan(v))
    if bad:
        raise TrainingError(f"the trained model's metrics are not numbers ({', '.join(bad)}); the run did not "
                            f"converge to anything finite: its checkpoints are in {run.checkpoints}")
    metrics = {**run_metrics(task_name, metadata, result, model, device), **quality, **(extra_metrics or {}),
               "final_eval_stride": None if final_eval.skip_final_eval else final_eval.final_eval_stride,
               "final_eval_skipped": final_eval.skip_final_eval}
    run.write_metrics(metrics)
    if not (final_eval.no_figures or final_eval.skip_final_eval):
        with progress.phase("outputs"):
            task.write_outputs(model, run.path, metrics)
            from ..reporting.plots import save_training_curves

            save_training_curves(run.file("scalars.csv"), run.file("curves.png"), title=run.path.name)
    shown = [f"{k} {metrics[k]:.4g}" for k in summary if isinstance(metrics.get(k), (int, float))]
    closing = f"{result.steps} steps in {result.wall_time_s:.1f} s"
    run.print(f"{', '.join(shown)}; {closing}" if shown else closing)
    run.print(f"results: {run.path.resolve()}")
    run.close()
    return metrics
