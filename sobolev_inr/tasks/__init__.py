"""The tasks, by name: each a subpackage whose ``__init__`` declares its :class:`~.entry.TaskEntry`
(options, data, model and task, finished runs, comparisons) and whose ``task`` module holds the task
object the training loop drives (its loss, evaluation, outputs).

    from sobolev_inr.tasks import run_task, task_names
    metrics = run_task("image_regression", ["--config", "my.txt", "--num_epochs", "300"])

A new task is one module defining a :class:`~.entry.TaskEntry` subclass and a call of
:func:`register_task`; ``Experiments/<task>/main.py`` is then a shim of a few lines
(:class:`TaskScript`). Looking a task up imports its declaration only (no torch).
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Dict, List, Optional, Sequence, Union

from ..errors import UserError
from .entry import TaskEntry, Training, check_finished_runs

__all__ = ["TaskEntry", "Training", "TaskScript", "check_finished_runs", "get_task", "register_task", "run_task",
           "task_names", "unregister_task"]

BUILTIN_TASKS = ("image_regression", "audio_regression", "inverse_rendering", "image_editing", "super_resolution",
                 "video_regression", "sdf")
"""The shipped tasks, each declared in ``sobolev_inr.tasks.<name>`` (imported when first asked for)."""

_REGISTRY: Dict[str, TaskEntry] = {}


def register_task(entry: Union[TaskEntry, type]) -> Union[TaskEntry, type]:
    """Adds a task under ``entry.name`` (an instance, or a class to instantiate: usable as a class
    decorator) and returns ``entry`` as given. A second task of the same name is an error."""
    instance = entry() if isinstance(entry, type) else entry
    if not instance.name:
        raise ValueError(f"{type(instance).__name__} has no name")
    known = _REGISTRY.get(instance.name)
    if known is not None and type(known) is not type(instance):
        raise ValueError(f"a task named {instance.name!r} is already registered ({type(known).__name__})")
    _REGISTRY[instance.name] = instance
    return entry


def unregister_task(name: str) -> None:
    """Removes a registered task (tests register toy tasks and remove them again)."""
    _REGISTRY.pop(name, None)


def get_task(name: str) -> TaskEntry:
    """The registered task ``name``; a shipped task is imported on first use."""
    if name not in _REGISTRY and name in BUILTIN_TASKS:
        importlib.import_module(f"{__name__}.{name}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"no task named {name!r}; the tasks: {', '.join(task_names())}") from None


def task_names() -> List[str]:
    """Every task: the shipped ones and those registered since."""
    return sorted(set(BUILTIN_TASKS) | set(_REGISTRY))


def run_task(name: str, argv: Sequence[str] = (), command: str = "train", callbacks: Sequence[Any] = ()) -> Any:
    """Runs ``command`` of task ``name`` on an argument list, as its entry script or the console command
    would (what ``train`` returns: the run's metrics). Errors propagate (:class:`UserError` for configs
    and data); :func:`sobolev_inr.config.cli.run_entry_point` turns them into exit statuses."""
    return get_task(name).run(command, argv, callbacks=callbacks)


class TaskScript:
    """An entry script of a task folder, as a shim:

        from sobolev_inr.tasks import TaskScript
        config_parser, main, run = TaskScript("image_regression")
        if __name__ == "__main__": run()

    ``config_parser()`` builds the command's parser (the sweep checks runs with it), ``main(argv)`` runs
    it and raises on errors (tests call it), ``run()`` runs it on ``sys.argv`` with exit statuses.
    """

    def __init__(self, task: str, command: str = "train"):
        self.task, self.command = task, command

    def config_parser(self):
        return get_task(self.task).parser(self.command)

    def main(self, argv: Optional[Sequence[str]] = None) -> Any:
        return run_task(self.task, sys.argv[1:] if argv is None else argv, self.command)

    def run(self, argv: Optional[Sequence[str]] = None) -> Any:
        from ..config.cli import run_entry_point

        return run_entry_point(self.main, argv)

    def __iter__(self):
        return iter((self.config_parser, self.main, self.run))
