"""One training loop for every task.

A task supplies the pieces that differ (:class:`Task`): how an epoch is cut into batches, the loss
of a batch, a periodic evaluation, and its final metrics and outputs. :func:`fit` does the rest the
same way for all of them: Adam with an optional exponential learning-rate decay, a progress bar,
scalars to CSV and TensorBoard, atomic checkpoints, a check of every step for non-finite values,
and ``resume`` continuing the same run (same weights, optimizer moments, data order and random
draws, so a resumed run matches an uninterrupted one, also when it was stopped inside an epoch).

A run is measured in epochs (full passes over the task's batches: the image and audio tasks) or
in optimisation steps (batches drawn across epochs, reshuffled at each epoch's start: NeRF's
``N_iters``); summaries and checkpoints count in the same unit.
"""
from __future__ import annotations

import math
import os
import random
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoints import checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .errors import ConfigError, TrainingError
from .runs import RunDirectory, ScalarLog

NAN_POLICIES = ("stop", "skip")
KILL_AFTER_CHECKPOINT_ENV = "SOBOLEV_INR_KILL_AFTER_CHECKPOINT"
"""Fault injection for the kill tests: with this variable set to N, the process kills itself (SIGKILL)
right after the N-th checkpoint it writes, a deterministic point at any machine speed."""


class Task(Protocol):
    """What :func:`fit` and :func:`~sobolev_inr.experiment.train_and_report` need from a task."""

    psnr_peak: float
    """Peak signal value for the training PSNR shown beside the loss (2.0 for [-1, 1] images), computed from the
    loss's ``value`` term; unused by a task whose loss has none."""

    def train_batches(self, generator: torch.Generator) -> Iterable[Any]:
        """The batches of one epoch; every random draw (order, noise) comes from ``generator``, which
        is checkpointed, so that a resumed run draws the same numbers."""

    def loss(self, model: nn.Module, batch: Any) -> Dict[str, Tensor]:
        """Named loss terms of a batch; ``total`` is optimised, the others are logged."""

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """Metrics logged at every summary (held-out PSNR, ...), under ``eval/<name>``."""

    def final_metrics(self, model: nn.Module) -> Dict[str, Any]:
        """The task's quality metrics for ``metrics.json`` at the end of the run."""

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """Figures and other files of the finished run, written into ``run_dir``."""


@dataclass
class Periodic:
    """An action run every ``every`` epochs or steps (the run's unit) after the step that reaches it,
    e.g. rendering the test views every 50,000 steps. ``action(model, index)``; the model is in eval
    mode and gradients are off. A checkpoint due at the same step is written first, so a run killed
    during a long action loses no training; resumed, it goes on from that step without repeating the
    action (what a run must have at its end belongs in the task's ``write_outputs``)."""

    every: int
    action: Callable[[nn.Module, int], None]
    name: str = ""


@dataclass
class FitConfig:
    """How :func:`fit` trains: length, optimiser and schedule, cadence, policies. Plain values only.

    Give exactly one of ``num_epochs`` and ``num_steps``; ``summary_every`` and ``checkpoint_every``
    count in that unit. The learning rate of the k-th step (k = 0, 1, ...) is
    ``lrate * lrate_decay_rate ** (k / lrate_decay_steps)`` (nerf-pytorch's schedule, which applies
    the step's rate one step later), or ``lrate`` when ``lrate_decay_steps`` is 0.
    """

    lrate: float
    num_epochs: int = 0
    num_steps: int = 0
    summary_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    lrate_decay_steps: float = 0.0
    lrate_decay_rate: float = 0.1
    clip_grad_norm: float = 0.0
    """Clip the global gradient norm to this value; 0 = off."""
    nan_policy: str = "stop"
    """Every step's loss and gradient norm are checked before the update is applied. ``stop``: the first
    non-finite one ends the run (TrainingError, exit 3; the last good checkpoint kept). ``skip``: the
    step is skipped (no update) and counted; ``max_skipped_steps`` skipped in a row end the run."""
    max_skipped_steps: int = 10
    seed: int = 0
    """Seeds the generator that orders batches and draws the task's random numbers."""
    resume: bool = False
    progress: bool = True
    tensorboard: bool = True

    @property
    def unit(self) -> str:
        return "epoch" if self.num_epochs else "step"

    @property
    def length(self) -> int:
        return self.num_epochs or self.num_steps

    def check(self) -> None:
        """ConfigError naming the first value that cannot work."""
        if (self.num_epochs > 0) == (self.num_steps > 0) or min(self.num_epochs, self.num_steps) < 0:
            raise ConfigError(f"give the run's length as num_epochs or num_steps (exactly one >= 1), got "
                              f"num_epochs = {self.num_epochs}, num_steps = {self.num_steps}")
        for key in ("summary_every", "checkpoint_every", "max_skipped_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.nan_policy not in NAN_POLICIES:
            raise ConfigError(f"unknown nan_policy {self.nan_policy!r}; choose from {list(NAN_POLICIES)}")
        if self.lrate <= 0 or self.lrate_decay_steps < 0 or self.clip_grad_norm < 0:
            raise ConfigError("lrate must be > 0, and lrate_decay_steps and clip_grad_norm >= 0")

    def lrate_at(self, step: int) -> float:
        """Learning rate of the step that follows ``step`` completed steps."""
        if not self.lrate_decay_steps:
            return self.lrate
        return self.lrate * self.lrate_decay_rate ** (step / self.lrate_decay_steps)


@dataclass
class FitResult:
    epochs: int
    steps: int
    wall_time_s: float
    """Time spent in fit() over the whole run (resumed sessions added up), evaluation included."""
    train_time_s: float
    """Time spent in training steps alone (device synchronised before each reading of the clock)."""
    final_terms: Dict[str, float] = field(default_factory=dict)
    skipped_steps: int = 0
    peak_memory_mb: Optional[float] = None
    """CUDA: the most memory allocated during training steps (evaluation excluded); CPU: the process's peak RSS."""
    peak_memory_kind: str = ""


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seeds Python, NumPy and torch (CPU and CUDA); ``deterministic`` also sets torch's flags.

    For entry scripts, before building the model: it sets process-wide state on purpose.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work, so that a clock read afterwards measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gradient_norm(params: Sequence[nn.Parameter]) -> Tensor:
    """Global L2 norm of the parameters' gradients (a 0-dim tensor on their device)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


def take_step(optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter],
              loss_terms: Callable[[], Dict[str, Tensor]], clip_grad_norm: float = 0.0,
              lrate: Optional[float] = None) -> Tuple[Dict[str, Tensor], Tensor, bool]:
    """One optimisation step as :func:`fit` takes it: the loss terms, backward, the gradient norm, and the
    update only if the loss and the norm are finite (clipped to ``clip_grad_norm`` if > 0, at learning
    rate ``lrate`` if given). Returns (terms, gradient norm, whether the update was applied).

    The check costs one device synchronisation per step. Benchmarks time this same function, so that
    they measure the step users run (bench/derivatives.py).
    """
    terms = loss_terms()
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    norm = _gradient_norm(params)
    if not bool(torch.isfinite(terms["total"].detach() + norm.to(terms["total"].device))):
        return terms, norm, False
    if clip_grad_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, clip_grad_norm, norm)
    if lrate is not None:
        for group in optimizer.param_groups:
            group["lr"] = lrate
    optimizer.step()
    return terms, norm, True


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)


class _Batches:
    """The task's batches across epochs, with the position needed to resume inside an epoch: the
    generator's state at the start of the current epoch and how many of its batches were drawn."""

    def __init__(self, task: Task, generator: torch.Generator):
        self.task, self.generator = task, generator
        self.epoch_start_state = generator.get_state()
        self.drawn = 0
        self._it: Iterator[Any] = iter(task.train_batches(generator))

    def restore(self, epoch_start_state: Tensor, drawn: int) -> None:
        """Back to batch ``drawn`` of the epoch that began with ``epoch_start_state`` (replays its draws)."""
        self.generator.set_state(epoch_start_state)
        self.epoch_start_state = epoch_start_state
        self._it = iter(self.task.train_batches(self.generator))
        for _ in range(drawn):
            next(self._it)
        self.drawn = drawn

    def next(self) -> Tuple[bool, Any]:
        """(True, batch), or (False, None) at the end of an epoch (the next call starts a new one)."""
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch_start_state = self.generator.get_state()
            self._it = iter(self.task.train_batches(self.generator))
            self.drawn = 0
            return False, None
        self.drawn += 1
        return True, batch


def fit(model: nn.Module, task: Task, cfg: FitConfig, run: RunDirectory, metadata: Mapping[str, Any],
        periodic: Sequence[Periodic] = ()) -> FitResult:
    """Trains ``model`` on ``task`` as ``cfg`` says; writes scalars and checkpoints into ``run``.

    ``metadata`` (the resolved run config, plain values) is stored in every checkpoint. Seed the global
    RNGs before building the model (:func:`seed_everything`); fit itself draws only from its own
    generator and leaves torch's global state as it found it (its grad mode included), but for the
    CUDA device's peak-memory statistics, which it resets to measure the training steps alone.
    """
    cfg.check()
    unit, length = cfg.unit, cfg.length
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    optimizer = torch.optim.Adam(params, lr=cfg.lrate)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    batches = _Batches(task, generator)
    epoch, step, wall, train_time, skipped, prev_peak = 0, 0, 0.0, 0.0, 0, None

    if cfg.resume:
        ckpt_file = latest_checkpoint(run.checkpoints)
        if ckpt_file is None:
            run.print(f"resume: no checkpoint in {run.checkpoints}; starting from scratch")
        else:
            state = load_checkpoint(ckpt_file)
            done = state["epoch"] if unit == "epoch" else state["step"]
            if done > length:
                raise ConfigError(f"the run in {run.path} has trained {done} {unit}s; num_{unit}s = {length} is "
                                  f"shorter (resume continues a run, it cannot shorten it)")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            rng = state["rng"]  # checkpoints before step-based runs kept the generator's state at an epoch's end
            batches.restore(rng.get("epoch_start", rng.get("generator")), rng.get("batches_drawn", 0))
            epoch, step = state["epoch"], state["step"]
            wall, train_time = state.get("wall_time_s", 0.0), state.get("train_time_s", 0.0)
            skipped, prev_peak = state.get("skipped_steps", 0), state.get("peak_memory_mb")
            run.print(f"resume: continuing from {ckpt_file.name} (epoch {epoch}, step {step})")
    run.record_start(epoch, step)

    position = lambda: epoch if unit == "epoch" else step  # noqa: E731
    log = ScalarLog(run, start_step=step, tensorboard=cfg.tensorboard)
    pending: List[Tuple[int, Dict[str, Tensor]]] = []
    final_terms: Dict[str, float] = {}
    session_start = time.perf_counter()
    kill_after, saved_count = int(os.environ.get(KILL_AFTER_CHECKPOINT_ENV, "0") or 0), [0]

    def flush() -> Dict[str, float]:
        """Moves the buffered per-step terms to the logs (one device sync per summary)."""
        nonlocal pending
        if not pending:
            return {}
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
        pending = []
        return rows[-1][1]

    def peak_memory() -> Optional[float]:
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
        else:
            peak = _peak_rss_mb()
        return max(peak, prev_peak or 0.0)

    def save() -> None:
        save_checkpoint(checkpoint_path(run.checkpoints, position(), unit), {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "model_config": getattr(model, "config", None), "config": dict(metadata),
            "epoch": epoch, "step": step, "unit": unit,
            "rng": {"epoch_start": batches.epoch_start_state, "batches_drawn": batches.drawn},
            "wall_time_s": wall + (time.perf_counter() - session_start), "train_time_s": train_time,
            "skipped_steps": skipped, "peak_memory_mb": peak_memory(),
            "working_dir": os.getcwd(),  # relative paths in the config are from here
        })
        prune_checkpoints(run.checkpoints, cfg.keep_checkpoints)
        saved_count[0] += 1
        if kill_after and saved_count[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def stop(message: str) -> None:
        flush()
        log.close()
        bar.close()
        raise TrainingError(f"{message}; the last good checkpoint is kept in {run.checkpoints}")

    if position() >= length:
        run.print(f"nothing to train: the run is at {unit} {position()} of {length}")
        log.close()
        return FitResult(epoch, step, wall, train_time, skipped_steps=skipped, peak_memory_mb=prev_peak,
                         peak_memory_kind=_memory_kind(device))

    from tqdm.auto import tqdm

    bar = tqdm(total=length, initial=position(), desc=run.path.name, disable=not cfg.progress, dynamic_ncols=True,
               unit=unit)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    was_training = model.training
    model.train()
    consecutive_bad = 0
    segment_start = time.perf_counter()
    while position() < length:
        more, batch = batches.next()
        if not more:
            epoch += 1
            if unit == "step":
                continue
            advanced = True
        else:
            terms, norm, applied = take_step(optimizer, params, lambda: task.loss(model, batch), cfg.clip_grad_norm,
                                             cfg.lrate_at(step) if cfg.lrate_decay_steps else None)
            if not applied:
                what = (f"step {step + 1}" + (f" (epoch {epoch + 1})" if unit == "epoch" else "")
                        + f": loss {float(terms['total'].detach()):.4g}, gradient norm {float(norm):.4g}")
                if cfg.nan_policy == "stop":
                    stop(f"non-finite loss or gradient at {what}; stopped before applying that update")
                skipped += 1
                consecutive_bad += 1
                log.write(step, {"train/skipped_steps": skipped})
                if consecutive_bad >= cfg.max_skipped_steps:
                    stop(f"{consecutive_bad} steps in a row had a non-finite loss or gradient (the last at {what}; "
                         f"max_skipped_steps = {cfg.max_skipped_steps}); the run cannot go on")
                continue
            consecutive_bad = 0
            step += 1
            pending.append((step, {k: v.detach() for k, v in terms.items()}))
            advanced = unit == "step"
        if not advanced:
            continue
        bar.update(1)
        index = position()
        last = index >= length
        summary = index % cfg.summary_every == 0 or last
        due = [p for p in periodic if index % p.every == 0]
        checkpoint = index % cfg.checkpoint_every == 0 or last
        if not (summary or due or checkpoint):
            continue
        synchronize(device)
        train_time += time.perf_counter() - segment_start
        prev_peak = peak_memory()
        if summary:
            final_terms = flush() or final_terms
            model.eval()
            with torch.no_grad():
                evaluation = task.evaluate(model)
            log.write(step, {**{f"eval/{k}": v for k, v in evaluation.items()}, "time/train_s": train_time})
            log.flush()
            shown = {"loss": final_terms.get("train/total", float("nan"))}
            if "train/psnr" in final_terms:
                shown["psnr"] = final_terms["train/psnr"]
            # The evaluation's PSNRs; a task that reports none (shapes) shows what it reports.
            shown.update({k: v for k, v in evaluation.items() if k.startswith("psnr")} or evaluation)
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
            run.log_only(f"{unit} {index} step {step}: " + ", ".join(
                f"{k} {v:.6g}" for k, v in {**final_terms, **evaluation}.items()))
            if skipped:
                run.print(f"{unit} {index}: {skipped} steps with a non-finite loss or gradient skipped so far")
        if checkpoint:  # before the periodic outputs: a long render that is interrupted loses no training
            final_terms = flush() or final_terms
            save()
        for p in due:
            model.eval()
            with torch.no_grad():
                p.action(model, index)
        model.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)  # evaluation and outputs do not count as training memory
        segment_start = time.perf_counter()
    bar.close()
    log.close()
    model.train(was_training)
    wall += time.perf_counter() - session_start
    return FitResult(epoch, step, wall, train_time, final_terms, skipped, prev_peak, _memory_kind(device))


def _memory_kind(device: torch.device) -> str:
    return "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss"


def run_metrics(task_name: str, metadata: Mapping[str, Any], result: FitResult, model: nn.Module,
                device: torch.device) -> Dict[str, Any]:
    """The keys every task's ``metrics.json`` shares, beside the task's own quality metrics.

    ``metadata``: the resolved run config (plain values); the keys a task does not have are left out.
    """
    shared = ("exp_name", "supervision", "activations", "lambda_der", "der_units", "der_mode", "der_estimator",
              "der_directions", "der_fraction", "seed")
    per_1k = 1000.0 * result.train_time_s / result.steps if result.steps else None
    return {
        "task": task_name, **{k: metadata[k] for k in shared if k in metadata},
        "encoding": getattr(model, "config", {}).get("encoding"),
        "epochs": result.epochs, "steps": result.steps, "wall_time_s": round(result.wall_time_s, 3),
        "train_time_s": round(result.train_time_s, 3),
        "time_per_1k_steps_s": round(per_1k, 3) if per_1k is not None else None,
        "peak_memory_mb": round(result.peak_memory_mb, 1) if result.peak_memory_mb is not None else None,
        "peak_memory_kind": result.peak_memory_kind, "skipped_steps": result.skipped_steps,
        "device": str(device), "num_params": sum(p.numel() for p in model.parameters()),
        **{f"final_{k.split('/', 1)[1]}": v for k, v in result.final_terms.items() if k.startswith("train/")},
    }
