"""Importing the library changes nothing: no plotting backend chosen, no torch setting touched."""
import os
import subprocess
import sys

import pytest
from task_entry import REPO

# Imports every module of the package named by argv[1] (at least argv[2] of them) in a fresh interpreter.
# The backend check compares with what the environment chose before any of them ran (MPLBACKEND, a
# matplotlibrc: None when neither sets one), so it holds whatever the machine sets, and it also records
# every matplotlib.use call, so a module that picks the same backend as MPLBACKEND is still caught.
IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import matplotlib
import torch

backend_before = matplotlib.rcParams._get_backend_or_none()
use_calls = []
_use = matplotlib.use
def _recording_use(*args, **kwargs):
    use_calls.append(args)
    return _use(*args, **kwargs)
matplotlib.use = _recording_use

def settings():
    return (torch.get_num_threads(), torch.get_num_interop_threads(), torch.get_default_dtype(),
            torch.random.get_rng_state().tolist(), torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.benchmark, torch.is_grad_enabled())

before = settings()
package_name, at_least = sys.argv[1], int(sys.argv[2])
sys.argv[1:] = []  # the modules must not see this script's arguments
package = importlib.import_module(package_name)
names = [m.name for m in pkgutil.walk_packages(package.__path__, package_name + ".")]
for name in names:
    try:
        importlib.import_module(name)
    except SystemExit as exit:
        raise AssertionError(f"importing {name} ran a program (SystemExit({exit.code!r})); "
                             "put it under if __name__ == '__main__':") from None
assert len(names) >= at_least, names
assert settings() == before, "importing the package changed torch's global settings"
assert "matplotlib.pyplot" not in sys.modules, "a module imports pyplot at import time"
assert not use_calls, f"a module chose the plotting backend at import: matplotlib.use{use_calls[0]}"
backend_after = matplotlib.rcParams._get_backend_or_none()
assert backend_after == backend_before, (
    f"a module chose the plotting backend at import: {backend_before!r} -> {backend_after!r}")
print("ok", len(names))
"""


def _import_everything(package, at_least, pythonpath=None):
    """Runs IMPORT_EVERYTHING in a subprocess with this process's environment (so monkeypatch.setenv reaches it)."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING, package, str(at_least)], cwd=REPO,
                          capture_output=True, text=True, env=env)


@pytest.mark.parametrize("mplbackend", [None, "Agg"], ids=["MPLBACKEND-unset", "MPLBACKEND=Agg"])
def test_importing_every_module_has_no_side_effects(monkeypatch, mplbackend):
    """Holds with MPLBACKEND unset and with MPLBACKEND=Agg (usual on headless servers and in containers)."""
    if mplbackend is None:
        monkeypatch.delenv("MPLBACKEND", raising=False)
    else:
        monkeypatch.setenv("MPLBACKEND", mplbackend)
    done = _import_everything("sobolev_inr", at_least=21)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


@pytest.mark.parametrize("mplbackend", [None, "Agg"], ids=["MPLBACKEND-unset", "MPLBACKEND=Agg"])
@pytest.mark.parametrize("body, expected", [
    ('matplotlib.use("Agg")', "chose the plotting backend"),
    ('matplotlib.rcParams["backend"] = "pdf"', "chose the plotting backend"),
    ("import matplotlib.pyplot", "imports pyplot"),
    ("import sys; sys.exit(0)", "ran a program"),  # an unguarded __main__.py
], ids=["use", "rcParams", "pyplot", "exit"])
def test_the_import_check_catches_a_module_with_side_effects(tmp_path, monkeypatch, mplbackend, body,
                                                                    expected):
    """The check is not vacuous: a submodule that picks a backend fails it, even one that picks the backend
    MPLBACKEND already names (use("Agg") under MPLBACKEND=Agg); so does one that runs a program at import."""
    if mplbackend is None:
        monkeypatch.delenv("MPLBACKEND", raising=False)
    else:
        monkeypatch.setenv("MPLBACKEND", mplbackend)
    package = tmp_path / "picks_a_backend"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plots.py").write_text(f"import matplotlib\n{body}\n")
    done = _import_everything("picks_a_backend", at_least=1, pythonpath=tmp_path)
    assert done.returncode != 0
    assert expected in done.stderr, done.stderr
