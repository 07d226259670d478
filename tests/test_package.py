"""Importing the library changes nothing: no plotting backend chosen, no torch setting touched."""
import subprocess
import sys

from task_entry import REPO

IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import torch

def settings():
    return (torch.get_num_threads(), torch.get_num_interop_threads(), torch.get_default_dtype(),
            torch.random.get_rng_state().tolist(), torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.benchmark, torch.is_grad_enabled())

before = settings()
import sobolev_inr
names = [m.name for m in pkgutil.walk_packages(sobolev_inr.__path__, "sobolev_inr.")]
for name in names:
    importlib.import_module(name)
assert len(names) > 20, names
assert settings() == before, "importing sobolev_inr changed torch's global settings"
assert "matplotlib.pyplot" not in sys.modules, "a module imports pyplot at import time"
if "matplotlib" in sys.modules:
    import matplotlib
    assert matplotlib.rcParams._get_backend_or_none() is None, "a module chose the plotting backend at import"
print("ok", len(names))
"""


def test_importing_every_module_has_no_side_effects():
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
