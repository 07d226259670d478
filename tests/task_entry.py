"""Imports an Experiments/<task>/main.py as a module, so tests can call its main(argv) in-process."""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_task_main(task: str):
    path = REPO / "Experiments" / task / "main.py"
    spec = importlib.util.spec_from_file_location(f"{task}_main", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
