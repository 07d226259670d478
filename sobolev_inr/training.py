"""One training loop for every task.

A task supplies the pieces that differ (:class:`Task`): how an epoch is cut into batches, the loss
of a batch, and a periodic evaluation. :func:`fit` does the rest the same way for all of them:
Adam, a progress bar, scalars to CSV and TensorBoard, atomic checkpoints every
``epochs_til_ckpt`` epochs and at the end, and ``resume`` continuing the same run (same weights,
optimizer moments and RNG streams, so a resumed run matches an uninterrupted one).
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Protocol, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .checkpoints import (checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints,
                          restore_rng_state, rng_state, save_checkpoint)
from .errors import ConfigError, TrainingError
from .runs import RunDirectory, ScalarLog


class Task(Protocol):
    """What :func:`fit` needs from a task."""

    psnr_peak: float
    """Peak signal value for the training PSNR shown beside the loss (2.0 for [-1, 1] images)."""

    def train_batches(self, generator: torch.Generator) -> Iterable[Any]:
        """The batches of one epoch; random draws use ``generator`` only (it is checkpointed)."""

    def loss(self, model: nn.Module, batch: Any) -> Dict[str, Tensor]:
        """Named loss terms of a batch; ``total`` is optimised, the others are logged."""

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """Held-out metrics, logged every ``epochs_til_summary`` epochs."""


@dataclass
class FitConfig:
    num_epochs: int
    lrate: float
    epochs_til_summary: int = 100
    epochs_til_ckpt: int = 1000
    keep_checkpoints: int = 3
    resume: bool = False
    progress: bool = True
    tensorboard: bool = True
    nan_policy: str = "stop"
    """``stop``: a non-finite loss ends the run (TrainingError), the last good checkpoint kept.
    ``skip``: the step is skipped (no update) and counted in ``train/skipped_steps``."""
    clip_grad_norm: float = 0.0
    """Clip the global gradient norm to this value; 0 = off."""


@dataclass
class FitResult:
    epochs: int
    steps: int
    wall_time_s: float
    """Time spent in fit() over the whole run (resumed sessions added up), evaluation included."""
    train_time_s: float
    """Time spent in optimisation steps alone."""
    final_terms: Dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seeds Python, NumPy and torch (CPU and CUDA); ``deterministic`` also sets torch's flags."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def fit(model: nn.Module, task: Task, cfg: FitConfig, run: RunDirectory, config: Mapping[str, Any],
        seed: int = 0) -> FitResult:
    """Trains ``model`` on ``task``; writes scalars and checkpoints into ``run``.

    ``config`` (the resolved run config) is stored in every checkpoint. ``seed`` seeds the batch
    generator; seed the global RNGs before building the model (:func:`seed_everything`).
    """
    if cfg.num_epochs < 1:
        raise ConfigError(f"num_epochs must be >= 1, got {cfg.num_epochs}")
    if cfg.epochs_til_summary < 1 or cfg.epochs_til_ckpt < 1:
        raise ConfigError("epochs_til_summary and epochs_til_ckpt must be >= 1")
    if cfg.nan_policy not in ("stop", "skip"):
        raise ConfigError(f"unknown nan_policy {cfg.nan_policy!r}; choose from ['stop', 'skip']")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lrate)
    generator = torch.Generator().manual_seed(seed + 1)
    epoch, step, wall, train_time, resumed_skipped = 0, 0, 0.0, 0.0, 0

    if cfg.resume:
        ckpt_file = latest_checkpoint(run.checkpoints)
        if ckpt_file is None:
            run.print(f"resume: no checkpoint in {run.checkpoints}; starting from scratch")
        else:
            state = load_checkpoint(ckpt_file)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            restore_rng_state(state["rng"], generator)
            epoch, step = state["epoch"], state["step"]
            wall, train_time = state.get("wall_time_s", 0.0), state.get("train_time_s", 0.0)
            resumed_skipped = state.get("skipped_steps", 0)
            run.print(f"resume: continuing from {ckpt_file.name} (epoch {epoch}, step {step})")

    log = ScalarLog(run, start_step=step, tensorboard=cfg.tensorboard)
    pending: List[Tuple[int, Dict[str, Tensor]]] = []
    final_terms: Dict[str, float] = {}

    def flush() -> Dict[str, float]:
        """Moves the buffered per-step terms to the logs (one device sync per summary)."""
        nonlocal pending
        last: Dict[str, float] = {}
        if pending:
            names = list(pending[0][1])
            values = torch.stack([torch.stack([t[n] for n in names]) for _, t in pending]).double().cpu().tolist()
            rows = []
            for (s, _), vals in zip(pending, values):
                row = {f"train/{n}": v for n, v in zip(names, vals)}
                if "value" in names:
                    mse = row["train/value"]
                    row["train/psnr"] = 10 * math.log10(task.psnr_peak ** 2 / mse) if mse > 0 else float("inf")
                rows.append((s, row))
            log.write_many(rows)
            last = rows[-1][1]
            totals = [vals[names.index("total")] for vals in values]
            bad = next((s for (s, _), t in zip(pending, totals) if not math.isfinite(t)), None)
            if bad is not None:
                raise TrainingError(f"the loss became non-finite at step {bad}; the last good checkpoint "
                                    f"is kept in {run.checkpoints}")
        pending = []
        return last

    def save(at_epoch: int) -> None:
        save_checkpoint(checkpoint_path(run.checkpoints, at_epoch), {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "model_config": getattr(model, "config", None), "config": dict(config),
            "epoch": at_epoch, "step": step, "rng": rng_state(generator),
            "wall_time_s": wall + (time.perf_counter() - session_start), "train_time_s": train_time,
            "skipped_steps": skipped, "working_dir": os.getcwd(),  # relative paths in config are from here
        })
        prune_checkpoints(run.checkpoints, cfg.keep_checkpoints)

    if epoch >= cfg.num_epochs:
        run.print(f"nothing to train: the run is at epoch {epoch} of {cfg.num_epochs}")
        log.close()
        return FitResult(epoch, step, wall, train_time)

    session_start = time.perf_counter()
    skip_non_finite, skipped = cfg.nan_policy == "skip", resumed_skipped
    bar = tqdm(range(epoch + 1, cfg.num_epochs + 1), initial=epoch, total=cfg.num_epochs, desc=run.path.name,
               disable=not cfg.progress, dynamic_ncols=True, unit="epoch")
    model.train()
    for epoch in bar:
        t0 = time.perf_counter()
        for batch in task.train_batches(generator):
            terms = task.loss(model, batch)
            if skip_non_finite and not torch.isfinite(terms["total"]):
                skipped += 1
                continue
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            if cfg.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            optimizer.step()
            step += 1
            pending.append((step, {k: v.detach() for k, v in terms.items()}))
        train_time += time.perf_counter() - t0

        last_epoch = epoch == cfg.num_epochs
        if epoch % cfg.epochs_til_summary == 0 or last_epoch:
            final_terms = flush() or final_terms
            model.eval()
            with torch.no_grad():
                evaluation = task.evaluate(model)
            model.train()
            log.write(step, {f"eval/{k}": v for k, v in evaluation.items()})
            if skipped:
                log.write(step, {"train/skipped_steps": skipped})
                run.print(f"epoch {epoch}: {skipped} steps with a non-finite loss skipped so far")
            log.flush()
            shown = {"loss": final_terms.get("train/total", float("nan")), "psnr": final_terms.get("train/psnr", float("nan"))}
            shown.update({k: v for k, v in evaluation.items() if k.startswith("psnr")})
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
            run.log_only(f"epoch {epoch} step {step}: " + ", ".join(f"{k} {v:.6g}" for k, v in {**final_terms, **evaluation}.items()))
        if epoch % cfg.epochs_til_ckpt == 0 or last_epoch:
            final_terms = flush() or final_terms
            save(epoch)
    bar.close()
    log.close()
    wall += time.perf_counter() - session_start
    return FitResult(cfg.num_epochs, step, wall, train_time, final_terms)


def run_metrics(task_name: str, args, result: FitResult, model: nn.Module, device: torch.device) -> Dict[str, Any]:
    """The keys every task's ``metrics.json`` shares, beside the task's own quality metrics."""
    from .derivatives import choose_mode

    return {
        "task": task_name, "exp_name": args.exp_name, "supervision": args.supervision,
        "activations": list(args.activations), "encoding": getattr(model, "config", {}).get("encoding"),
        "lambda_der": args.lambda_der, "der_units": args.der_units,
        "der_mode": choose_mode(model.in_features, model.out_features, args.der_mode),
        "epochs": result.epochs, "steps": result.steps, "wall_time_s": round(result.wall_time_s, 3),
        "train_time_s": round(result.train_time_s, 3), "device": str(device), "seed": args.seed,
        "num_params": sum(p.numel() for p in model.parameters()),
        **{f"final_{k.split('/', 1)[1]}": v for k, v in result.final_terms.items() if k.startswith("train/")},
    }
