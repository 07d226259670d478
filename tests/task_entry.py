"""Imports an Experiments/<task>/<script>.py entry point as a module, so tests can call its main(argv) in-process."""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_task_main(task: str, script: str = "main"):
    path = REPO / "Experiments" / task / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"{task}_{script}", path)
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved  # the entry scripts put their folders on sys.path for their own imports
    return module


KILLED_RUN = ("import sys; from sobolev_inr.tasks import run_task; from sobolev_inr.training.loop import KillAfterCheckpoint; "
              "run_task(sys.argv[1], sys.argv[4:], sys.argv[2], callbacks=[KillAfterCheckpoint(int(sys.argv[3]))])")


def killed_run_command(task: str, kill_after: int, command: str = "train"):
    """The command line (before the task's arguments) of a run of ``task`` that kills itself (SIGKILL) right
    after its ``kill_after``-th checkpoint, through the training loop's callbacks."""
    return [sys.executable, "-c", KILLED_RUN, task, command, str(kill_after)]


def run_main(module, args, logging_root, **overrides):
    """``module.main`` on ``args`` plus ``--<key> <value>`` per override, logging into ``logging_root``, no
    progress bar; returns what main returns (the run's metrics)."""
    argv = list(args) + ["--logging_root", str(logging_root), "--no_progress"]
    for k, v in overrides.items():
        argv += [f"--{k}", str(v)]
    return module.main(argv)
