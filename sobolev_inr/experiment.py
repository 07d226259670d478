"""What every task's main.py does around its own data and task: open the run, train, report.

A task script parses its options, loads its data, builds the model and its task object, and
hands them to :func:`train_and_report`; that way the run directory, the metrics names, the
figures and the printed summary are the same for every task.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Iterable, Optional

import torch
from torch import nn

from .cli import resolved_config
from .plots import save_training_curves
from .runs import RunDirectory
from .training import FitConfig, fit, run_metrics


def open_run(args: argparse.Namespace) -> RunDirectory:
    """The run directory ``<logging_root>/<exp_name>`` for these options (see :class:`RunDirectory`)."""
    run = RunDirectory(args.logging_root, args.exp_name, resume=args.resume, overwrite=args.overwrite,
                       config=resolved_config(args))
    if run.mode == "skip":
        run.print(f"skipping: {run.path} holds a finished run of this config (metrics.json); --overwrite redoes it")
    return run


def describe_model(model: nn.Module, args: argparse.Namespace, device: torch.device, run: RunDirectory) -> None:
    cfg = model.config
    run.print(f"model: {cfg['activations']}, encoding {cfg['encoding']}"
              + (f" (L = {cfg['num_frequencies']})" if cfg["encoding"] == "positional" else "")
              + f"; supervision {args.supervision}; device {device}; run dir {run.path}")


def train_and_report(task_name: str, args: argparse.Namespace, model: nn.Module, task: Any, run: RunDirectory,
                     device: torch.device, extra_metrics: Optional[Dict[str, Any]] = None,
                     summary: Iterable[str] = ("psnr_heldout",)) -> Dict[str, Any]:
    """Trains ``model`` on ``task`` (:func:`fit`), then writes ``metrics.json``, the task's outputs
    (``task.write_outputs``) and ``curves.png``; prints the ``summary`` metrics and the run directory.

    ``task`` is a :class:`~sobolev_inr.training.Task` with ``final_metrics(model)`` and
    ``write_outputs(model, run_dir, metrics)``.
    """
    fit_cfg = FitConfig(num_epochs=args.num_epochs, lrate=args.lrate, epochs_til_summary=args.epochs_til_summary,
                        epochs_til_ckpt=args.epochs_til_ckpt, keep_checkpoints=args.keep_checkpoints,
                        resume=run.mode == "resume", progress=not args.no_progress, nan_policy=args.nan_policy,
                        clip_grad_norm=args.clip_grad_norm)
    result = fit(model, task, fit_cfg, run, resolved_config(args), seed=args.seed)
    metrics = {**run_metrics(task_name, args, result, model, device), **task.final_metrics(model),
               **(extra_metrics or {})}
    run.write_metrics(metrics)
    task.write_outputs(model, run.path, metrics)
    save_training_curves(run.file("scalars.csv"), run.file("curves.png"), title=args.exp_name)
    shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in summary if isinstance(metrics.get(k), (int, float)))
    run.print(f"{shown}; {result.steps} steps in {result.wall_time_s:.1f} s")
    run.print(f"results: {run.path.resolve()}")
    run.close()
    return metrics
