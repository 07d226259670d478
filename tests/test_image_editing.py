"""Poisson image editing (Experiments/image_editing/main.py, sobolev_inr.tasks.image_editing): the shipped
configs, reuse of the composite's sub-runs, bad configs, and cloning that does what Perez et al. describe."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from task_entry import load_task_main, run_main

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "Experiments" / "image_editing"
SHIPPED_CONFIGS = sorted((TASK_DIR / "configs").glob("*.txt"))
MAIN = load_task_main("image_editing")
TINY = {"sidelength": 16, "hidden_features": 16, "num_epochs": 2}


def _run(args, tmp_path, **overrides):
    return run_main(MAIN, args, tmp_path, **overrides)


def _no_figures(monkeypatch):
    for name in ("tasks.image_regression.ImageRegression", "tasks.image_editing.GradientComposite",
                 "tasks.image_editing.SeamlessCloning"):
        monkeypatch.setattr(f"sobolev_inr.{name}.write_outputs", lambda *a, **k: None)
    monkeypatch.setattr("sobolev_inr.reporting.plots.save_training_curves", lambda *a, **k: None)


@pytest.mark.e2e
def test_every_shipped_config_runs_two_steps(tmp_path, monkeypatch):
    """Parse, load the embedded images (tiny), train 2 steps per fit, report the edit's metrics."""
    _no_figures(monkeypatch)
    edits = set()
    assert SHIPPED_CONFIGS
    for cfg in SHIPPED_CONFIGS:
        metrics = _run(["--config", str(cfg)], tmp_path, **TINY)
        assert metrics["steps"] == 2, cfg
        keys = ("psnr_grad_full", "psnr_offset_full") if "alpha" in metrics else ("psnr_outside", "psnr_grad_inside")
        for key in keys:
            assert np.isfinite(metrics[key]), (cfg, key)
        assert 0 < metrics["rho_ag_full"] <= 1, cfg
        edits.add("composite" if "alpha" in metrics else "clone")
    assert edits == {"composite", "clone"}


def _assert_raw_image(png, npy):
    """The result alone at the image's resolution: an 8-bit PNG and the float32 (H, W, C) render beside it."""
    from PIL import Image

    array = np.load(npy)
    assert array.dtype == np.float32 and array.ndim == 3 and array.shape[-1] in (1, 3)
    with Image.open(png) as image:
        assert image.size == (array.shape[1], array.shape[0]) and image.mode == ("L" if array.shape[-1] == 1 else "RGB")


@pytest.mark.e2e
def test_composite_writes_three_runs_and_reuses_finished_ones(tmp_path):
    common = ["--edit", "composite", "--exp_name", "c", "--filename", "skimage:camera", "--filename2", "skimage:brick"]
    first = _run(common, tmp_path, **TINY)
    root = tmp_path / "c"
    for part in ("f1", "f2", "composite"):
        for name in ("config.txt", "metrics.json", "log.txt", "scalars.csv", "curves.png"):
            assert (root / part / name).is_file(), (part, name)
        assert list((root / part / "checkpoints").glob("epoch_*.pt")), part
        assert list((root / part / "tensorboard").glob("events.out.tfevents.*")), part
    assert (root / "composite" / "composite.png").is_file()
    _assert_raw_image(root / "composite" / "composite_raw.png", root / "composite" / "composite.npy")
    assert "filename2" not in json.loads((root / "f2" / "config.json").read_text())
    assert json.loads((root / "f2" / "config.json").read_text())["filename"] == "skimage:brick"
    stamps = {p: (root / p / "metrics.json").stat().st_mtime_ns for p in ("f1", "f2", "composite")}

    assert _run(common, tmp_path, **TINY) == first  # all three finished: nothing retrained
    assert {p: (root / p / "metrics.json").stat().st_mtime_ns for p in stamps} == stamps

    # An interrupted edit (the composite never finished): f1 and f2 are loaded from their checkpoints, and
    # the composite trained on their gradients matches the first one.
    (root / "composite" / "metrics.json").unlink()
    for ckpt in (root / "composite" / "checkpoints").glob("*.pt"):
        ckpt.unlink()
    again = _run(common, tmp_path, **TINY)
    for part in ("f1", "f2"):
        assert (root / part / "metrics.json").stat().st_mtime_ns == stamps[part], part
        assert len((root / part / "history.jsonl").read_text().splitlines()) == 1, part
    for key in ("psnr_grad_full", "psnr_offset_full", "final_total"):
        assert again[key] == pytest.approx(first[key], rel=1e-6), key


@pytest.mark.e2e
def test_clone_writes_its_run_and_figure(tmp_path):
    metrics = _run(["--edit", "clone", "--exp_name", "k", "--mask_radii", "0.4", "0.3", "--source_centre", "0.2", "0.1"],
                   tmp_path, **TINY)
    run = tmp_path / "k"
    assert (run / "cloning.png").is_file() and (run / "metrics.json").is_file()
    _assert_raw_image(run / "cloned.png", run / "cloned.npy")
    assert metrics["source_shift_pixels"] == [round(0.1 / (2 / 16)), round(0.2 / (2 / 16))]  # pixel step 2 / 16
    assert metrics["mask_pixels"] > 0 and "alpha" not in json.loads((run / "config.json").read_text())


def test_cloning_keeps_the_target_outside_and_the_source_gradients_inside(tmp_path):
    """Target T, source S = T + 0.4 + B with a bump B that vanishes at the mask's edge: the Poisson solution
    is T + B (the source's detail, the target's level); a copy-paste would be off by 0.4 inside."""
    from sobolev_inr.data.coords import image_grid
    from sobolev_inr.metrics import psnr, to_unit_range
    from sobolev_inr.models import MLP
    from sobolev_inr.tasks.image_editing import SeamlessCloning, edit_mask
    from sobolev_inr.training.loop import FitConfig, fit
    from sobolev_inr.training.runs import RunDirectory

    side = 32
    x, y = image_grid(side, side).T.reshape(2, 1, side, side)
    target = 0.5 * torch.sin(2.0 * x + 1.0) * torch.cos(1.5 * y) - 0.2
    bump = 0.5 * torch.exp(-(x ** 2 + y ** 2) / (2 * 0.15 ** 2))
    source = target + 0.4 + bump
    mask = edit_mask("ellipse", (0.0, 0.0), (0.6, 0.6), side, side)
    task = SeamlessCloning(target, source, mask, lambda_der=10.0, der_operator="diff")
    torch.manual_seed(0)
    model = MLP(2, 1, ["sine"] * 3, hidden_features=64)
    fit(model, task, FitConfig(num_epochs=150, lrate=1e-3, summary_every=150, progress=False, tensorboard=False),
        RunDirectory(str(tmp_path), "clone"), {})
    metrics = task.final_metrics(model)
    assert metrics["psnr_outside"] > 35.0, metrics
    assert metrics["psnr_grad_inside"] > 30.0, metrics
    result, expected = to_unit_range(task.render(model)), to_unit_range(target + bump)
    inside = mask
    assert psnr(result[:, inside], expected[:, inside]) > 30.0
    assert psnr(to_unit_range(task.naive_paste())[:, inside], expected[:, inside]) < 20.0


@pytest.mark.e2e
@pytest.mark.parametrize("args, words", [
    (["--edit", "blend"], ["edit", "composite", "clone"]),
    (["--alpha", "1.5"], ["alpha must be in [0, 1]", "1.5"]),
    (["--edit", "clone", "--mask_centre", "0.9", "0", "--mask_radii", "0.3", "0.3"], ["mask_centre", "outside", "[-1, 1]"]),
    (["--edit", "clone", "--source_centre", "0", "-0.8"], ["source_centre", "outside"]),
    (["--edit", "clone", "--mask_radii", "0.001", "0.001"], ["mask covers 0", "mask_radii"]),
    (["--sidelength", "0", "--filename", "skimage:camera", "--filename2", "skimage:coffee"],
     ["differ in size", "512x512", "400x600", "sidelength"]),
    (["--filename2", "skimage:no_such"], ["no_such"]),
])
def test_bad_configs_fail_with_one_line_and_write_nothing(tmp_path, args, words):
    logs = tmp_path / "logs"
    proc = subprocess.run([sys.executable, "main.py", *args, "--logging_root", str(logs), "--num_epochs", "1"],
                          cwd=TASK_DIR, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)
    assert not logs.exists(), "a bad config left a run directory"
