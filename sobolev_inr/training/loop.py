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

:func:`fit` is made of named pieces, each usable and testable alone:

* :class:`TrainingState`: model, optimizer, position in the data and counters, checkpointed and
  restored as one object (``state_dict`` / ``load_state_dict``);
* :func:`resume`: loads a run's newest checkpoint into a state;
* :class:`NonFinitePolicy`: what a step with a non-finite loss or gradient does (stop, or skip and count);
* :class:`Summaries`: the scalars (CSV, TensorBoard), the progress bar and the log lines;
* :class:`Callback`: hooks called at each summary and after each checkpoint (:class:`KillAfterCheckpoint`).
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple,
                    Union)

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, TrainingError
from . import memory
from .checkpoints import checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .runs import RunDirectory, ScalarLog

NAN_POLICIES = ("stop", "skip")
LossBlocks = Union[Dict[str, Tensor], Iterator[Dict[str, Tensor]]]
"""A batch's loss terms, or an iterator of its blocks' terms (summing to the batch's)."""


class Task(Protocol):
    """What :func:`fit` and :func:`~sobolev_inr.training.experiment.train_and_report` need from a task.

    Optional: ``train_psnr(terms) -> Optional[float]``, the training PSNR shown beside the loss, from the
    batch's loss terms (floats by name); without it, :func:`train_psnr` derives it from ``psnr_peak``.
    ``loss_blocks(model, batch)``: the batch's loss as an iterator of blocks' terms that sum to
    ``loss(model, batch)``'s (a big batch cut to bound memory, gradients accumulated; :func:`take_step`);
    :func:`fit` uses it instead of ``loss`` where a task has it. ``progress``: a
    :class:`~sobolev_inr.training.progress.Progress` for the long phases of evaluation and outputs, set by
    the runner.
    """

    psnr_peak: float
    """Peak signal value for the training PSNR shown beside the loss (2.0 for [-1, 1] images), computed from the
    loss's ``value`` term (the mean squared error of the values) by :func:`train_psnr`; unused by a task whose
    loss has none or that defines ``train_psnr``."""

    def train_batches(self, generator: torch.Generator) -> Iterable[Any]:
        """The batches of one epoch; every random draw (order, noise) comes from ``generator``, which
        is checkpointed, so that a resumed run draws the same numbers."""

    def loss(self, model: nn.Module, batch: Any) -> Dict[str, Tensor]:
        """Named loss terms of a batch; ``total`` is optimised, the others are logged."""

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """Metrics logged at every summary (held-out PSNR, ...), under ``eval/<name>``."""

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, Any]:
        """The task's quality metrics for ``metrics.json`` at the end of the run, scored on every ``stride``-th
        sample along each axis of the task's evaluation grid (1: all of them, the papers' protocol), with
        ``final_eval_shape``: the shape of the grid scored."""

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """Figures and other files of the finished run, written into ``run_dir``."""


def train_psnr(task: Any, terms: Mapping[str, float]) -> Optional[float]:
    """The training PSNR of a batch's loss ``terms`` (floats by name): the task's own ``train_psnr(terms)`` if
    it has one, else ``10 log10(psnr_peak^2 / terms["value"])`` (inf for a zero error); None when the task has
    no ``psnr_peak`` or the loss no ``value`` term."""
    own = getattr(task, "train_psnr", None)
    if own is not None:
        return own(terms)
    peak, mse = getattr(task, "psnr_peak", None), terms.get("value")
    if peak is None or mse is None:
        return None
    return 10 * math.log10(peak ** 2 / mse) if mse > 0 else float("inf")


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
    """The most memory of the training steps (evaluation excluded): CUDA's most allocated, or on CPU the process's
    peak RSS (reset at each training segment's start on Linux, so loading and evaluation do not count)."""
    peak_memory_kind: str = ""
    last_evaluation: Dict[str, float] = field(default_factory=dict)
    """The last summary's evaluation (``eval/<name>``), of this session."""


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
              loss_terms: Callable[[], LossBlocks], clip_grad_norm: float = 0.0,
              lrate: Optional[float] = None) -> Tuple[Dict[str, Tensor], Tensor, bool]:
    """One optimisation step as :func:`fit` takes it: the loss terms, backward, the gradient norm, and the
    update only if the loss and the norm are finite (clipped to ``clip_grad_norm`` if > 0, at learning
    rate ``lrate`` if given). Returns (terms, gradient norm, whether the update was applied).

    ``loss_terms()`` gives the batch's terms, or an iterator of blocks' terms whose sums are the batch's
    (:meth:`Task.loss_blocks`): each block's ``total`` is backpropagated before the next block is computed,
    so that only one block's graph is held at a time; the returned terms are then the sums (detached).

    The check costs one device synchronisation per step. Benchmarks time this same function, so that
    they measure the step users run (bench/derivatives.py).
    """
    optimizer.zero_grad(set_to_none=True)
    terms = loss_terms()
    if isinstance(terms, Mapping):
        terms["total"].backward()
    else:
        terms = accumulate_blocks(terms)
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


def accumulate_blocks(blocks: Iterable[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    """Backpropagates each block's ``total`` as it comes (gradients add up in ``.grad``) and returns the
    blocks' terms summed, detached."""
    sums: Dict[str, Tensor] = {}
    for block in blocks:
        block["total"].backward()
        for name, value in block.items():
            value = value.detach()
            sums[name] = sums[name] + value if name in sums else value
    if not sums:
        raise ValueError("a batch with no blocks")
    return sums


def _peak_memory_mb(device: torch.device, previous: Optional[float]) -> float:
    """The most memory training has used since the segment began (:func:`~sobolev_inr.training.memory.peak_memory_mb`),
    and never less than ``previous`` (the peak of earlier segments and sessions)."""
    return max(memory.peak_memory_mb(device), previous or 0.0)


class BatchStream:
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


@dataclass
class TrainingState:
    """Everything a run's continuation depends on, checkpointed and restored as one object: the model, the
    optimizer, the position in the data (:class:`BatchStream`), the epoch and step counters, the skipped
    steps, and the time and peak memory of the run so far (earlier sessions included).

    :meth:`state_dict` gives plain values and tensors (the checkpoint's ``model``, ``optimizer``, ``epoch``,
    ``step``, ``rng``, ``wall_time_s``, ``train_time_s``, ``skipped_steps`` and ``peak_memory_mb``);
    :meth:`load_state_dict` restores them, so that the run goes on exactly as if it had not stopped.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: BatchStream
    params: List[nn.Parameter]
    epoch: int = 0
    step: int = 0
    train_time_s: float = 0.0
    """Time in training steps (the device synchronised before each reading), all sessions."""
    skipped_steps: int = 0
    peak_memory_mb: Optional[float] = None
    earlier_wall_time_s: float = 0.0
    """Wall time of the run's earlier sessions (before the latest resume)."""
    session_start: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, model: nn.Module, task: Task, cfg: FitConfig) -> "TrainingState":
        """A fresh state: Adam over the trainable parameters at ``cfg.lrate``, batches drawn from a generator
        seeded with ``cfg.seed + 1``."""
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=cfg.lrate)
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        return cls(model, optimizer, BatchStream(task, generator), params)

    @property
    def device(self) -> torch.device:
        return self.params[0].device if self.params else torch.device("cpu")

    def position(self, unit: str) -> int:
        """Epochs or steps done, in the run's ``unit``."""
        return self.epoch if unit == "epoch" else self.step

    def wall_time_s(self) -> float:
        """Wall time of the run so far, earlier sessions included."""
        return self.earlier_wall_time_s + (time.perf_counter() - self.session_start)

    def state_dict(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch, "step": self.step,
                "rng": {"epoch_start": self.batches.epoch_start_state, "batches_drawn": self.batches.drawn},
                "wall_time_s": self.wall_time_s(), "train_time_s": self.train_time_s,
                "skipped_steps": self.skipped_steps, "peak_memory_mb": self.peak_memory_mb}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]  # checkpoints before step-based runs kept the generator's state at an epoch's end
        self.batches.restore(rng.get("epoch_start", rng.get("generator")), rng.get("batches_drawn", 0))
        self.epoch, self.step = state["epoch"], state["step"]
        self.earlier_wall_time_s, self.train_time_s = state.get("wall_time_s", 0.0), state.get("train_time_s", 0.0)
        self.skipped_steps, self.peak_memory_mb = state.get("skipped_steps", 0), state.get("peak_memory_mb")

    def result(self, final_terms: Optional[Dict[str, float]] = None, wall_time_s: Optional[float] = None) -> FitResult:
        return FitResult(self.epoch, self.step, self.wall_time_s() if wall_time_s is None else wall_time_s,
                         self.train_time_s, dict(final_terms or {}), self.skipped_steps, self.peak_memory_mb,
                         memory.memory_kind(self.device))


def resume(state: TrainingState, run: RunDirectory, cfg: FitConfig) -> Optional[Path]:
    """Loads the newest checkpoint of ``run`` into ``state`` and returns its path; None (and a note) when the
    run has none. ConfigError when the run has trained further than ``cfg`` asks: resume continues a run, it
    cannot shorten it."""
    path = latest_checkpoint(run.checkpoints)
    if path is None:
        run.print(f"resume: no checkpoint in {run.checkpoints}; starting from scratch")
        return None
    saved = load_checkpoint(path)
    done = saved["epoch"] if cfg.unit == "epoch" else saved["step"]
    if done > cfg.length:
        raise ConfigError(f"the run in {run.path} has trained {done} {cfg.unit}s; num_{cfg.unit}s = {cfg.length} is "
                          f"shorter (resume continues a run, it cannot shorten it)")
    state.load_state_dict(saved)
    run.print(f"resume: continuing from {path.name} (epoch {state.epoch}, step {state.step})")
    return path


def write_checkpoint(run: RunDirectory, state: TrainingState, unit: str, metadata: Mapping[str, Any],
                     keep: int) -> Path:
    """Saves ``state`` as the run's checkpoint at its current position, with what rebuilds the model and the
    run (``model_config``, the resolved ``config``, the ``working_dir`` its relative paths start from), then
    keeps the newest ``keep``. Returns the checkpoint's path."""
    path = checkpoint_path(run.checkpoints, state.position(unit), unit)
    save_checkpoint(path, {**state.state_dict(), "model_config": getattr(state.model, "config", None),
                           "config": dict(metadata), "unit": unit, "working_dir": os.getcwd()})
    prune_checkpoints(run.checkpoints, keep)
    return path


@dataclass
class NonFinitePolicy:
    """What a step whose loss or gradient norm is not finite does (``FitConfig.nan_policy``); its update is
    never applied. ``stop``: the run ends there. ``skip``: the step is counted in the state's
    ``skipped_steps`` and training goes on, until ``max_skipped_steps`` in a row end the run."""

    policy: str = "stop"
    max_skipped_steps: int = 10
    in_a_row: int = 0

    @classmethod
    def from_config(cls, cfg: FitConfig) -> "NonFinitePolicy":
        return cls(cfg.nan_policy, cfg.max_skipped_steps)

    @property
    def skips(self) -> bool:
        return self.policy == "skip"

    def bad_step(self, state: TrainingState, what: str) -> Optional[str]:
        """Applies the policy to the bad step ``what`` (where and what it was); returns why the run must stop,
        or None to go on without that update."""
        if not self.skips:
            return f"non-finite loss or gradient at {what}; stopped before applying that update"
        state.skipped_steps += 1
        self.in_a_row += 1
        if self.in_a_row >= self.max_skipped_steps:
            return (f"{self.in_a_row} steps in a row had a non-finite loss or gradient (the last at {what}; "
                    f"max_skipped_steps = {self.max_skipped_steps}); the run cannot go on")
        return None

    def good_step(self) -> None:
        self.in_a_row = 0


def _describe_bad_step(state: TrainingState, unit: str, terms: Mapping[str, Tensor], norm: Tensor) -> str:
    return (f"step {state.step + 1}" + (f" (epoch {state.epoch + 1})" if unit == "epoch" else "")
            + f": loss {float(terms['total'].detach()):.4g}, gradient norm {float(norm):.4g}")


class Summaries:
    """What a run shows and logs: each step's loss terms (kept on the device, written to ``scalars.csv`` and
    TensorBoard at each summary or checkpoint, one device synchronisation each, with the task's training PSNR,
    :func:`train_psnr`), the evaluation of each summary, the progress bar and the log lines.

    A context manager: leaving it closes the logs and the bar; a :class:`TrainingError` raised inside first
    writes the buffered terms, so the logs reach the step that stopped the run."""

    def __init__(self, run: RunDirectory, task: Task, cfg: FitConfig, start_step: int):
        self.run, self.task, self.unit = run, task, cfg.unit
        self.log = ScalarLog(run, start_step=start_step, tensorboard=cfg.tensorboard)
        self.pending: List[Tuple[int, Dict[str, Tensor]]] = []
        self.last_terms: Dict[str, float] = {}
        """The latest logged training terms (``train/<name>``)."""
        self.last_evaluation: Dict[str, float] = {}
        """The latest summary's evaluation (``eval/<name>``)."""
        self.bar = None

    def open_bar(self, length: int, position: int, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=length, initial=position, desc=self.run.path.name, disable=not progress,
                        dynamic_ncols=True, unit=self.unit)

    def add(self, step: int, terms: Mapping[str, Tensor]) -> None:
        """Buffers the loss terms of ``step`` (detached, on their device)."""
        self.pending.append((step, {k: v.detach() for k, v in terms.items()}))

    def flush(self) -> None:
        """Moves the buffered terms to the logs; :attr:`last_terms` becomes the last step's."""
        if not self.pending:
            return
        names = list(self.pending[0][1])
        values = torch.stack([torch.stack([t[n] for n in names]) for _, t in self.pending]).double().cpu().tolist()
        rows = []
        for (s, _), vals in zip(self.pending, values):
            row = {f"train/{n}": v for n, v in zip(names, vals)}
            psnr = train_psnr(self.task, dict(zip(names, vals)))
            if psnr is not None:
                row["train/psnr"] = psnr
            rows.append((s, row))
        self.log.write_many(rows)
        self.pending = []
        self.last_terms = rows[-1][1]

    def skipped(self, step: int, skipped: int) -> None:
        self.log.write(step, {"train/skipped_steps": skipped})

    def advance(self) -> None:
        self.bar.update(1)

    def summary(self, index: int, state: TrainingState, evaluation: Mapping[str, float]) -> Dict[str, float]:
        """Logs the evaluation at ``index`` (the run's unit), shows the loss and PSNRs on the bar, writes the log
        line; returns the summary's values (the last training terms and ``eval/<name>``)."""
        self.log.write(state.step, {**{f"eval/{k}": v for k, v in evaluation.items()},
                                    "time/train_s": state.train_time_s})
        self.log.flush()
        terms = self.last_terms
        shown = {"loss": terms.get("train/total", float("nan"))}
        if "train/psnr" in terms:
            shown["psnr"] = terms["train/psnr"]
        # The evaluation's PSNRs; a task that reports none (shapes) shows what it reports.
        shown.update({k: v for k, v in evaluation.items() if k.startswith("psnr")} or evaluation)
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        where = f"step {state.step}" if self.unit == "step" else f"{self.unit} {index} step {state.step}"
        self.run.log_only(f"{where}: " + ", ".join(
            f"{k} {v:.6g}" for k, v in {**terms, **evaluation}.items()))
        if state.skipped_steps:
            self.run.print(f"{self.unit} {index}: {state.skipped_steps} steps with a non-finite loss or gradient "
                           f"skipped so far")
        self.last_evaluation = {f"eval/{k}": v for k, v in evaluation.items()}
        return {**terms, **self.last_evaluation}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.log.close()

    def __enter__(self) -> "Summaries":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if isinstance(error, TrainingError):
            self.flush()
        self.close()


class Callback:
    """Hooks into :func:`fit` (``fit(..., callbacks=[...])``); override the ones you need, each does nothing
    here. ``index`` counts in the run's unit (epochs or steps); the hooks run in the training process,
    between steps."""

    def on_summary(self, index: int, values: Mapping[str, float]) -> None:
        """After the summary at ``index``: the logged values (``train/<term>``, ``eval/<metric>``)."""

    def on_checkpoint(self, index: int, path: Path) -> None:
        """Right after the checkpoint at ``index`` was written to ``path`` (and older ones pruned)."""


class KillAfterCheckpoint(Callback):
    """Test-only fault injection: the process kills itself (SIGKILL) right after the ``n``-th checkpoint that
    this :func:`fit` writes, a deterministic point at any machine speed, for the tests that a killed run,
    rerun, gives the uninterrupted result (``run_task(name, argv, callbacks=[KillAfterCheckpoint(2)])`` in a
    subprocess: tests/task_entry.py)."""

    def __init__(self, n: int):
        self.n, self.written = n, 0

    def on_checkpoint(self, index: int, path: Path) -> None:
        self.written += 1
        if self.written == self.n:
            os.kill(os.getpid(), signal.SIGKILL)


def _in_eval_mode(model: nn.Module, action: Callable[[], Any]) -> Any:
    """``action()`` with the model in eval mode and gradients off (the caller sets the mode back)."""
    model.eval()
    with torch.no_grad():
        return action()


def _next_batch(state: TrainingState, task: Task, cfg: FitConfig, nonfinite: NonFinitePolicy, summaries: Summaries,
                run: RunDirectory) -> bool:
    """Trains on the next batch (or closes the epoch at its end); True when that completes one unit of the run.
    A non-finite step is left out as ``nonfinite`` says, or ends the run (TrainingError)."""
    more, batch = state.batches.next()
    if not more:
        state.epoch += 1
        return cfg.unit == "epoch"
    blocks = getattr(task, "loss_blocks", None) or task.loss
    terms, norm, applied = take_step(state.optimizer, state.params, lambda: blocks(state.model, batch),
                                     cfg.clip_grad_norm, cfg.lrate_at(state.step) if cfg.lrate_decay_steps else None)
    if not applied:
        stop = nonfinite.bad_step(state, _describe_bad_step(state, cfg.unit, terms, norm))
        if nonfinite.skips:
            summaries.skipped(state.step, state.skipped_steps)
        if stop:
            raise TrainingError(f"{stop}; the last good checkpoint is kept in {run.checkpoints}")
        return False
    nonfinite.good_step()
    state.step += 1
    summaries.add(state.step, terms)
    return cfg.unit == "step"


def fit(model: nn.Module, task: Task, cfg: FitConfig, run: RunDirectory, metadata: Mapping[str, Any],
        periodic: Sequence[Periodic] = (), *, callbacks: Sequence[Callback] = ()) -> FitResult:
    """Trains ``model`` on ``task`` as ``cfg`` says; writes scalars and checkpoints into ``run``.

    ``metadata`` (the resolved run config, plain values) is stored in every checkpoint. ``callbacks`` are
    called at each summary and after each checkpoint (:class:`Callback`). Seed the global RNGs before building
    the model (:func:`seed_everything`); fit itself draws only from its own generator and leaves torch's global
    state as it found it (its grad mode included), but for the CUDA device's peak-memory statistics, which it
    resets to measure the training steps alone.
    """
    cfg.check()
    callbacks = list(callbacks)
    unit, length = cfg.unit, cfg.length
    state = TrainingState.start(model, task, cfg)
    if cfg.resume:
        resume(state, run, cfg)
    run.record_start(state.epoch, state.step)
    summaries = Summaries(run, task, cfg, start_step=state.step)
    state.session_start = time.perf_counter()
    if state.position(unit) >= length:
        run.print(f"nothing to train: the run is at {unit} {state.position(unit)} of {length}")
        summaries.close()
        return state.result(wall_time_s=state.earlier_wall_time_s)

    nonfinite, device, was_training = NonFinitePolicy.from_config(cfg), state.device, model.training
    with summaries:
        summaries.open_bar(length, state.position(unit), cfg.progress)
        memory.reset_peak_memory(device)
        model.train()
        segment_start = time.perf_counter()
        while state.position(unit) < length:
            if not _next_batch(state, task, cfg, nonfinite, summaries, run):
                continue
            summaries.advance()
            index = state.position(unit)
            last = index >= length
            summary = index % cfg.summary_every == 0 or last
            due = [p for p in periodic if index % p.every == 0]
            checkpoint = index % cfg.checkpoint_every == 0 or last
            if not (summary or due or checkpoint):
                continue
            synchronize(device)
            state.train_time_s += time.perf_counter() - segment_start
            state.peak_memory_mb = _peak_memory_mb(device, state.peak_memory_mb)
            if summary:
                summaries.flush()
                values = summaries.summary(index, state, _in_eval_mode(model, lambda: task.evaluate(model)))
                for callback in callbacks:
                    callback.on_summary(index, values)
            if checkpoint:  # before the periodic outputs: a long render that is interrupted loses no training
                summaries.flush()
                path = write_checkpoint(run, state, unit, metadata, cfg.keep_checkpoints)
                for callback in callbacks:
                    callback.on_checkpoint(index, path)
            for p in due:
                _in_eval_mode(model, lambda: p.action(model, index))
            model.train()
            memory.reset_peak_memory(device)  # evaluation and outputs do not count as training memory
            segment_start = time.perf_counter()
    model.train(was_training)
    return dataclasses.replace(state.result(summaries.last_terms), last_evaluation=summaries.last_evaluation)
