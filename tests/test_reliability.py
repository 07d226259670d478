"""Runs that survive being killed, and inputs that fail clearly (exit 2, one line, no traceback)."""
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sobolev_inr.training.checkpoints import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from sobolev_inr.training.runs import RunDirectory, read_history
from task_entry import killed_run_command

REPO = Path(__file__).resolve().parents[1]
IMAGE_TASK = REPO / "Experiments" / "image_regression"


def _main(args, **kw):
    return subprocess.run([sys.executable, "main.py", *map(str, args)], cwd=IMAGE_TASK, capture_output=True,
                          text=True, **kw)


FAMILIES = ["finer", "gauss", "hosc", "sinc", "wire"]
"""Issue 26's activations, each killed and resumed with ``--act_scale 3`` (a non-default scale where it has one)."""
KILL_CASES = {  # case: (task, its arguments, the activations metrics.json must record or None)
    "image_regression": ("image_regression", lambda png: ["--filename", png], None),
    "audio_regression": ("audio_regression", lambda png: ["--filename", "synthetic:0.05"], None),
    # mini-batches: the kill lands inside the data order
    "video_regression": ("video_regression",
                         lambda png: ["--filename", "synthetic:5", "--sidelength", "12", "--batch_size", "200"], None),
    **{f"image_regression-{name}": ("image_regression", lambda png, name=name: [
        "--filename", png, "--activations", name, "--num_hidden_layers", 1, "--act_scale", 3.0], [name, name])
       for name in FAMILIES},
}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(KILL_CASES))
def test_kill_9_after_a_checkpoint_then_rerun_gives_the_uninterrupted_result(case, tiny_gray_png, tmp_path):
    """The run kills itself (SIGKILL) right after its 2nd checkpoint (a KillAfterCheckpoint callback), a
    deterministic point whatever the machine's speed; the task's entry script then resumes it."""
    task, task_args, recorded_activations = KILL_CASES[case]
    task_dir = REPO / "Experiments" / task
    common = task_args(tiny_gray_png) + ["--hidden_features", "16", "--num_epochs", 60, "--epochs_til_ckpt", 20,
                                         "--logging_root", tmp_path, "--no_progress", "--supervision", "val_der"]

    def run(args, prefix=(sys.executable, "main.py")):
        return subprocess.run([*prefix, *map(str, args)], cwd=task_dir, capture_output=True, text=True)

    assert run(common + ["--exp_name", "whole"]).returncode == 0
    killed = run(common + ["--exp_name", "killed"], prefix=killed_run_command(task, 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ckpts = tmp_path / "killed" / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpts)] == ["epoch_0000020.pt", "epoch_0000040.pt"]
    assert not (tmp_path / "killed" / "metrics.json").exists()

    rerun = run(common + ["--exp_name", "killed"])  # the same command: detects the run and resumes it
    assert rerun.returncode == 0, rerun.stderr
    assert "resume: continuing from epoch_0000040.pt" in rerun.stdout
    a = load_checkpoint(latest_checkpoint(tmp_path / "whole" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(ckpts))
    assert a["epoch"] == b["epoch"] == 60 and a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    killed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert whole["psnr_heldout"] == killed["psnr_heldout"]
    if recorded_activations is not None:
        assert whole["activations"] == killed["activations"] == recorded_activations
    starts = [(h["mode"], h["start_epoch"]) for h in read_history(tmp_path / "killed")]
    assert starts == [("new", 0), ("resume", 40)]


SLOW_WRITER = textwrap.dedent("""
    import sys, time
    import torch
    from sobolev_inr.training.checkpoints import save_checkpoint

    def slow_save(obj, f, *args, **kwargs):  # a write that hangs halfway
        f.write(b"PK\\x03\\x04partial")
        f.flush()
        time.sleep(30)

    torch.save = slow_save
    save_checkpoint(sys.argv[1], {"epoch": 2, "weights": torch.arange(9)})
""")


def test_kill_during_a_slow_checkpoint_write_keeps_the_previous_one(tmp_path):
    config = {"lrate": 1e-4}
    run = RunDirectory(str(tmp_path.parent), tmp_path.name, config=config)
    run.close()
    path = tmp_path / "checkpoints" / "epoch_0000001.pt"
    save_checkpoint(path, {"epoch": 1, "weights": torch.arange(5)})
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(path)], cwd=REPO)
    deadline = time.time() + 60
    while not list(path.parent.glob("*.tmp")) and time.time() < deadline:
        time.sleep(0.02)
    assert list(path.parent.glob("*.tmp")), "the writer never started its temporary file"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["weights"], torch.arange(5))
    # The next session of the run removes the torn temporary file.
    RunDirectory(str(tmp_path.parent), tmp_path.name, resume=True, config=config).close()
    assert not list(path.parent.glob("*.tmp"))


def _write_corrupt_png(path: Path) -> Path:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:30])
    return path


BAD_INPUTS = {
    "unknown config key": (["--config", "{cfg:learning_rate = 1e-4}"], ["learning_rate"]),
    "bad choice": (["--supervision", "sobolev"], ["--supervision", "invalid choice", "val_der"]),
    "wrong type": (["--num_epochs", "ten"], ["--num_epochs", "invalid int value"]),
    "wrong type in a config file": (["--config", "{cfg:hidden_features = wide}"], ["--hidden_features", "invalid int", "config:"]),
    "missing config file": (["--config", "no/such/config.txt"], ["no/such/config.txt"]),
    "missing data file": (["--filename", "nowhere"], ["nowhere", "HR/nowhere.png", "data/README.md"]),
    "size not a multiple of factor": (["--factor", "3"], ["16x16", "factor = 3", "crop"]),
    "corrupt png": (["--filename", "{corrupt}"], ["cannot read image", "corrupt.png"]),
    "factor larger than the image": (["--factor", "16"], ["factor = 16", "smaller factor"]),
    "zero epochs": (["--num_epochs", "0"], ["num_epochs must be >= 1"]),
    "negative epochs": (["--num_epochs", "-5"], ["num_epochs must be >= 1"]),
    "unwritable logging_root": (["--logging_root", "{file}/runs"], ["cannot write the run directory"]),
    "cuda without a GPU": (["--device", "cuda"], ["no CUDA device"]),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_with_one_line_and_exit_2(case, tiny_gray_png, tmp_path):
    if case == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    args, words = BAD_INPUTS[case]
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    resolved = []
    for a in args:
        if a.startswith("{cfg:"):
            cfg = tmp_path / "bad.txt"
            cfg.write_text(a[5:-1] + "\n")
            a = str(cfg)
        a = a.replace("{corrupt}", str(_write_corrupt_png(tmp_path / "corrupt.png"))).replace("{file}", str(a_file))
        resolved.append(a)
    base = ["--filename", tiny_gray_png, "--logging_root", tmp_path / "logs", "--num_epochs", 1, "--no_progress"]
    proc = _main(base + resolved)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


@pytest.mark.e2e
def test_debug_shows_the_traceback(tiny_gray_png, tmp_path):
    proc = _main(["--filename", "nowhere", "--debug", "--logging_root", tmp_path])
    assert proc.returncode == 2 and "Traceback" in proc.stderr


@pytest.mark.e2e
def test_same_seed_same_run_on_cpu(tiny_gray_png, tmp_path):
    common = ["--filename", tiny_gray_png, "--hidden_features", "16", "--num_epochs", 5, "--logging_root", tmp_path,
              "--no_progress", "--seed", 7, "--deterministic"]
    assert _main(common + ["--exp_name", "a"]).returncode == 0
    assert _main(common + ["--exp_name", "b"]).returncode == 0
    a = load_checkpoint(latest_checkpoint(tmp_path / "a" / "checkpoints"))["model"]
    b = load_checkpoint(latest_checkpoint(tmp_path / "b" / "checkpoints"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
