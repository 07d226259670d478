"""What a task declares, and the one skeleton that runs every task from an argument list.

A task is a :class:`TaskEntry` registered under its name (:mod:`sobolev_inr.tasks`): its option
groups (:meth:`TaskEntry.add_options`), how it reads its data (:meth:`TaskEntry.load`), how it
builds the model and the task object from them (:meth:`TaskEntry.build`), and, where it has them,
how it rebuilds a finished run (:meth:`TaskEntry.load_run`) and compares runs
(:meth:`TaskEntry.compare`). :meth:`TaskEntry.train` does the rest the same way for every task:
parse, device, the resolved config, the run directory (skip a finished run, resume an interrupted
one), seed, fit, report.

Importing this module imports no torch, so that ``--help`` and the sweep's checks of a run's
arguments stay fast; the task's own modules are imported inside its methods.
"""
from __future__ import annotations

import argparse
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..config import cli
from ..errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from ..training.loop import FitConfig, Periodic, Task
    from ..training.runs import RunDirectory


@dataclass
class Training:
    """What a task builds for one run: the model, the task object, what to print before training, the
    metrics the closing line shows, the task's own entries of ``metrics.json`` and its periodic actions."""

    model: "nn.Module"
    task: "Task"
    notes: Sequence[str] = ()
    summary: Sequence[str] = ("psnr_heldout",)
    extra_metrics: Dict[str, Any] = field(default_factory=dict)
    periodic: Sequence["Periodic"] = ()


class TaskEntry:
    """One task, as the runner, the console command and the sweep see it. Subclasses set :attr:`name`
    and :attr:`description` and implement :meth:`add_options` and :meth:`build`; the rest has defaults."""

    name: str = ""
    description: str = ""
    commands: Tuple[str, ...] = ("train",)
    """The commands this task offers: ``train`` always; ``eval`` and ``compare`` where it has them. Each
    command ``c`` is a method ``c(args, parser)`` with its parser from ``c_parser()``."""

    # ------------------------------------------------------------------------------------ options
    def add_options(self, parser: cli.ArgumentParser) -> None:
        """Adds the task's option groups (:mod:`sobolev_inr.config.cli`) and its own options to ``parser``."""
        raise NotImplementedError

    def train_parser(self) -> cli.ArgumentParser:
        parser = cli.make_parser(self.description)
        self.add_options(parser)
        return parser

    def parser(self, command: str = "train") -> argparse.ArgumentParser:
        """The parser of ``command``; building it imports no torch."""
        self._check_command(command)
        return getattr(self, f"{command}_parser")()

    def _check_command(self, command: str) -> None:
        if command not in self.commands:
            raise UserError(f"task {self.name} has no command {command!r}; its commands: {', '.join(self.commands)}")

    def parse(self, command: str, argv: Sequence[str], prog: Optional[str] = None
              ) -> Tuple[argparse.Namespace, argparse.ArgumentParser]:
        parser = self.parser(command)
        if prog:
            parser.prog = prog
        if isinstance(parser, cli.ArgumentParser):
            return cli.parse_args(parser, list(argv)), parser
        return parser.parse_args(list(argv)), parser

    def run(self, command: str, argv: Sequence[str], callbacks: Sequence[Any] = (), prog: Optional[str] = None
            ) -> Any:
        """Parses ``argv`` for ``command`` and runs it; ``callbacks`` go to the training loop (train only),
        ``prog`` names the command in usage lines. Config and data errors raise
        :class:`~sobolev_inr.errors.UserError`."""
        args, parser = self.parse(command, argv, prog)
        if command == "train":
            return self.train(args, parser, callbacks=callbacks)
        return getattr(self, command)(args, parser)

    # ------------------------------------------------------------------------------------ training
    def load(self, args: argparse.Namespace, metadata: Dict[str, Any], device: "torch.device") -> Any:
        """Reads and checks the task's data before the run directory opens, so that a bad input fails
        without leaving a run behind. Returns what :meth:`build` takes (None by default)."""
        return None

    def build(self, args: argparse.Namespace, metadata: Dict[str, Any], loaded: Any, device: "torch.device",
              run: "RunDirectory") -> Training:
        """The model (on ``device``) and the task object of a run, after the RNGs are seeded: whatever draws
        random numbers (the model's init, then the task's) draws them here, in that order."""
        raise NotImplementedError

    def fit_config(self, args: argparse.Namespace, resume: bool) -> "FitConfig":
        """The run's length, cadence and optimiser; epoch-based by default (:func:`cli.epoch_fit_config`)."""
        return cli.epoch_fit_config(args, resume)

    def train(self, args: argparse.Namespace, parser: cli.ArgumentParser, callbacks: Sequence[Any] = ()
              ) -> Dict[str, Any]:
        """Trains one run and writes its results into ``<logging_root>/<exp_name>/``; returns its metrics
        (those already there when a finished run of the same config is skipped)."""
        from ..training.experiment import describe_model, open_run, train_and_report
        from ..config.options import FinalEvalOptions
        from ..training.loop import seed_everything
        from ..training.progress import Progress

        device = cli.resolve_device(args.device)
        metadata = cli.run_metadata(args)
        start = time.perf_counter()
        loaded = self.load(args, metadata, device)
        run = open_run(args.logging_root, args.exp_name, metadata, parser.identity, args.resume, args.overwrite)
        if run.mode == "skip":
            return run.read_metrics()
        seed_everything(args.seed, args.deterministic)
        training = self.build(args, metadata, loaded, device, run)
        training.task.progress = Progress(bars=not args.no_progress, log=run.print)
        for line in training.notes:
            run.print(line)
        run.print(f"data and model: {time.perf_counter() - start:.1f} s")
        describe_model(training.model, args.supervision, device, run)
        return train_and_report(self.name, training.model, training.task, run,
                                self.fit_config(args, run.mode == "resume"), metadata, device,
                                summary=training.summary, extra_metrics=training.extra_metrics,
                                periodic=training.periodic, callbacks=callbacks,
                                final_eval=FinalEvalOptions.from_config(metadata))

    # ------------------------------------------------------------------------------ finished runs
    def load_run(self, run_dir: Path, device: Union[str, "torch.device"] = "cpu"):
        """(model, task object, metrics) of a finished run, rebuilt from its newest checkpoint and resolved
        config: the task module's ``load_run``, for a task that has one."""
        name = f"{type(self).__module__}.task"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # the task module exists but lacks one of its own imports
                raise
            module = None
        if not hasattr(module, "load_run"):
            raise UserError(f"task {self.name} cannot rebuild a finished run")
        return module.load_run(run_dir, device)

    def compare_parser(self) -> argparse.ArgumentParser:
        """Finished runs and one label each; a task adds its own figure options."""
        p = argparse.ArgumentParser(prog=f"sobolev-inr {self.name} compare",
                                    description=f"Compare finished {self.name} runs in figures.")
        p.add_argument("runs", nargs="+", help="run directories (<logging_root>/<exp_name>)")
        p.add_argument("--labels", nargs="+", help="one label per run (default: the run folder names)")
        return p


def check_finished_runs(parser: argparse.ArgumentParser, runs: Sequence[str], labels: Optional[Sequence[str]],
                        columns: Optional[int] = None) -> None:
    """Every path is a finished run directory (checkpoints/ and metrics.json) and there is one label per
    run (per column, for a grid of ``columns``); else the parser's one-line error."""
    wanted = columns or len(runs)
    if labels and len(labels) != wanted:
        parser.error(f"{wanted} {'columns' if columns else 'runs'} but {len(labels)} labels")
    for run in runs:
        if not (Path(run) / "checkpoints").is_dir() or not (Path(run) / "metrics.json").is_file():
            parser.error(f"{run} is not a finished run directory (no checkpoints/ and metrics.json inside)")


def format_task_list(entries: Sequence[TaskEntry]) -> List[str]:
    """One line per task: its name, its commands and its description."""
    names = [e.name for e in entries]
    commands = [f"[{' | '.join(e.commands)}]" for e in entries]
    width, cwidth = max(map(len, names), default=0), max(map(len, commands), default=0)
    return [f"{n:<{width}}  {c:<{cwidth}}  {e.description}" for n, c, e in zip(names, commands, entries)]


def task_module_attributes(package: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for a task's package: its ``task`` module's names (the task object,
    ``load_run``, ...), imported on first use, so that the package itself imports no torch."""

    def __getattr__(name: str) -> Any:
        module = importlib.import_module(f"{package}.task")
        try:
            return getattr(module, name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
