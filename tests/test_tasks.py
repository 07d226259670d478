"""The task registry, the TaskScript shims, the sobolev-inr command, and a new task in one module
(examples/toy_task, the worked example of docs/adding_a_task.md)."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sobolev_inr.errors import UserError
from sobolev_inr.tasks import BUILTIN_TASKS, TaskEntry, get_task, register_task, run_task, task_names, unregister_task

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "examples" / "toy_task"


@pytest.fixture
def toy_task(monkeypatch):
    """The example's module imported (which registers toy_sine), and unregistered afterwards."""
    monkeypatch.syspath_prepend(str(TOY))
    sys.modules.pop("toy_task", None)
    import toy_task  # noqa: F401

    yield get_task("toy_sine")
    unregister_task("toy_sine")
    sys.modules.pop("toy_task", None)


def _console(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sobolev_inr", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_every_shipped_task_is_registered_with_a_script_per_command():
    """Each task folder's shims name its task and, together, every command it offers."""
    assert set(BUILTIN_TASKS) <= set(task_names())
    for name in BUILTIN_TASKS:
        entry = get_task(name)
        assert entry.name == name and entry.description and entry.commands[0] == "train"
        shimmed = set()
        for path in (REPO / "Experiments" / name).glob("*.py"):
            task, command = re.search(r'TaskScript\("(\w+)"(?:, "(\w+)")?\)', path.read_text()).groups()
            assert task == name, path
            shimmed.add(command or "train")
        assert shimmed == set(entry.commands), (name, shimmed)
    assert get_task("inverse_rendering").commands == ("train", "eval")


def test_entry_scripts_are_shims_of_the_registry():
    for path in sorted(REPO.glob("Experiments/*/*.py")):
        code = [line for line in path.read_text().split('"""')[-1].splitlines() if line.strip()]
        assert len(code) <= 5, (path, code)
        assert "TaskScript(" in "\n".join(code) and "def " not in "\n".join(code), path


def test_unknown_tasks_and_commands_and_a_second_task_of_a_name_are_refused():
    with pytest.raises(UserError, match=r"no task named 'nope'; the tasks: audio_regression, "):
        get_task("nope")
    with pytest.raises(UserError, match="task sdf has no command 'eval'; its commands: train, compare"):
        run_task("sdf", [], command="eval")
    with pytest.raises(UserError, match="task audio_regression cannot rebuild a finished run"):
        get_task("audio_regression").load_run("logs/any")

    class Impostor(TaskEntry):
        name = "image_regression"

    with pytest.raises(ValueError, match="a task named 'image_regression' is already registered"):
        register_task(Impostor)


@pytest.mark.e2e
def test_a_toy_task_in_one_module_registers_and_fits(toy_task, tmp_path):
    assert "toy_sine" in task_names()
    common = ["--logging_root", str(tmp_path), "--no_progress", "--num_epochs", "150"]
    val_der = run_task("toy_sine", common + ["--exp_name", "val_der"])
    val = run_task("toy_sine", common + ["--exp_name", "val", "--supervision", "val"])
    assert val_der["psnr_heldout"] > 40.0, val_der
    assert val_der["psnr_der_heldout"] > val["psnr_der_heldout"] + 3.0, (val_der, val)
    saved = json.loads((tmp_path / "val_der" / "metrics.json").read_text())
    assert saved["psnr_heldout"] == pytest.approx(val_der["psnr_heldout"]) and saved["task"] == "toy_sine"
    assert (tmp_path / "val_der" / "curve.pt").is_file() and (tmp_path / "val_der" / "config.txt").is_file()
    assert run_task("toy_sine", common + ["--exp_name", "val_der"]) == saved  # a finished run is skipped
    with pytest.raises(UserError, match="task toy_sine cannot rebuild a finished run"):
        toy_task.load_run(tmp_path / "val_der")


@pytest.mark.e2e
def test_the_toy_shim_runs_as_a_script(tmp_path):
    proc = subprocess.run([sys.executable, "main.py", "--num_epochs", "2", "--logging_root", str(tmp_path),
                           "--no_progress"], cwd=TOY, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "default" / "metrics.json").is_file()
    proc = subprocess.run([sys.executable, "main.py", "--num_samples", "many"], cwd=TOY, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "argument --num_samples: invalid int value: 'many'" in proc.stderr


@pytest.mark.e2e
def test_the_command_lists_tasks_and_refuses_unknown_ones(tmp_path):
    proc = _console("list", cwd=tmp_path)
    assert proc.returncode == 0
    listed = [line.split()[0] for line in proc.stdout.splitlines()]
    assert listed == sorted(BUILTIN_TASKS)
    assert "inverse_rendering  [train | eval]   " in proc.stdout
    proc = _console("nope", cwd=tmp_path)
    assert proc.returncode == 2 and "no task named 'nope'" in proc.stderr
    proc = _console("sdf", "bogus", cwd=tmp_path)
    assert proc.returncode == 2 and "task sdf has no command 'bogus'; its commands: train, compare" in proc.stderr
    proc = _console("inverse_rendering", "eval", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: sobolev-inr inverse_rendering eval")
    assert "--eval_llff_factor" in proc.stdout
    proc = _console("image_regression", "--num_epochs", "0", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: num_epochs must be >= 1, got 0"
    assert not (tmp_path / "logs").exists()


@pytest.mark.e2e
def test_the_command_trains_a_task_from_any_folder(tmp_path):
    proc = _console("image_regression", "--num_epochs", "2", "--sidelength", "16", "--hidden_features", "8",
                    "--exp_name", "cam", "--no_progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "logs" / "cam" / "metrics.json").read_text())
    assert metrics["task"] == "image_regression" and metrics["image"] == "scikit-image camera"


@pytest.mark.slow
@pytest.mark.e2e
def test_an_installed_wheel_trains_and_sweeps_outside_the_clone(tmp_path):
    """The wheel in a fresh virtual environment (its dependencies from this interpreter's site-packages):
    the image task on the embedded default and a two-run sweep, from a folder outside the clone."""
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the clone
    shutil.copytree(REPO / "sobolev_inr", source / "sobolev_inr", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python, command = venv / "bin" / "python", venv / "bin" / "sobolev-inr"
    wheel = next(wheels.glob("sobolev_inr-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import sobolev_inr; print(sobolev_inr.__file__)"], cwd=work,
                           capture_output=True, text=True, check=True).stdout
    assert str(venv) in where, where  # the wheel's copy, not the clone's
    run = subprocess.run([str(command), "image_regression", "--num_epochs", "3", "--sidelength", "32",
                          "--hidden_features", "16", "--exp_name", "camera", "--no_progress"], cwd=work,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert json.loads((work / "logs" / "camera" / "metrics.json").read_text())["steps"] == 3
    (work / "tiny.txt").write_text("num_epochs = 2\nsidelength = 16\nhidden_features = 8\n")
    (work / "sweep.txt").write_text("task = image_regression\nlogging_root = runs\ntiny.txt\n"
                                    "grid supervision = [val, val_der]\n")
    sweep = subprocess.run([str(command), "sweep", "sweep.txt"], cwd=work, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    assert "2 done, 0 skipped, 0 failed" in sweep.stdout
    for supervision in ("val", "val_der"):
        run = work / "runs" / "sweep" / "tiny" / f"supervision={supervision}"
        assert json.loads((run / "config.json").read_text())["supervision"] == supervision
