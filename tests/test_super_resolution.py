"""Super-resolution (Experiments/super_resolution): the low-resolution input, the bicubic baseline, the scores on the
high-resolution grid, every shipped config, bad configs, and a fit that must beat a floor."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sobolev_inr.data.images import prepare_image, resize_image
from sobolev_inr.data.targets import image_gradient
from sobolev_inr.errors import DataError
from sobolev_inr.metrics import psnr, to_unit_range
from sobolev_inr.tasks.super_resolution import (SuperResolution, SuperResolutionOptions, low_resolution,
                                                super_resolution_task)
from task_entry import REPO, load_task_main, run_main

TASK_DIR = REPO / "Experiments" / "super_resolution"
SHIPPED_CONFIGS = sorted((TASK_DIR / "configs").rglob("*.txt"))
MAIN = load_task_main("super_resolution")


def _run(args, tmp_path, **overrides):
    return run_main(MAIN, args, tmp_path, **overrides)


def _config(**overrides):
    """The task's options: its defaults with ``overrides``."""
    return SuperResolutionOptions.from_config({**vars(MAIN.config_parser().parse_args([])), **overrides})


@pytest.mark.e2e
def test_every_shipped_config_runs_two_steps(tmp_path, monkeypatch):
    """camera x2, x4, x8 x val, val_der x SIREN, ReLU + PE, SPDER, on a 32x32 camera with small layers."""
    monkeypatch.setattr("sobolev_inr.tasks.super_resolution.SuperResolution.write_outputs", lambda *a, **k: None)
    monkeypatch.setattr("sobolev_inr.reporting.plots.save_training_curves", lambda *a, **k: None)
    assert len(SHIPPED_CONFIGS) == 3 * 2 * 3
    for cfg in SHIPPED_CONFIGS:
        metrics = _run(["--config", str(cfg)], tmp_path, sidelength=32, num_epochs=2, hidden_features=16)
        factor = int(cfg.parent.parent.name[1:])
        assert metrics["steps"] == 2 and metrics["sr_factor"] == factor, cfg
        assert metrics["low_shape"] == [32 // factor] * 2 and metrics["high_shape"] == [32, 32], cfg
        assert metrics["supervision"] == cfg.parent.name, cfg
        for key in ("psnr_heldout", "psnr_bicubic_heldout", "ssim_heldout", "rho_ag_heldout", "psnr_train"):
            assert np.isfinite(metrics[key]), (cfg, key)


@pytest.mark.e2e
def test_run_directory_outputs_and_metric_names(tmp_path):
    _run(["--sidelength", "32", "--sr_factor", "2", "--supervision", "val_der"], tmp_path, num_epochs=3,
         hidden_features=16, exp_name="sr", epochs_til_summary=1)
    run = tmp_path / "sr"
    for name in ("config.txt", "metrics.json", "scalars.csv", "log.txt", "super_resolution.png", "error_map.png",
                 "curves.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("psnr_heldout", "psnr_luma_heldout", "ssim_heldout", "rho_ag_heldout", "psnr_grad_heldout",
                "psnr_bicubic_heldout", "psnr_luma_bicubic_heldout", "ssim_bicubic_heldout", "rho_ag_bicubic_heldout",
                "psnr_grad_bicubic_heldout", "psnr_train", "steps", "wall_time_s", "task", "image"):
        assert key in metrics, key
    assert metrics["task"] == "super_resolution" and metrics["image_shape"] == [32, 32, 1]
    assert "eval/psnr_heldout" in (run / "scalars.csv").read_text()


@pytest.mark.e2e
def test_raw_outputs_are_the_super_resolved_image_and_the_baseline_at_full_resolution(tmp_path):
    """super_resolved.npy is the network's render on the original's grid ((H, W, C) float32 in [-1, 1]);
    super_resolved.png and bicubic.png are it and the baseline at 8 bits, H x W, within 1/255 of [0, 1]."""
    from PIL import Image

    from sobolev_inr.training.checkpoints import load_run_model

    _run(["--sidelength", "32", "--sr_factor", "4"], tmp_path, num_epochs=2, hidden_features=16, exp_name="sr",
         epochs_til_summary=2)
    run = tmp_path / "sr"
    model, state = load_run_model(run)
    options = SuperResolutionOptions.from_config(state["config"])
    task = super_resolution_task(options, base_dir=state.get("working_dir", "."))
    render = task.render(model.eval())
    array = np.load(run / "super_resolved.npy")
    assert array.dtype == np.float32 and array.shape == (32, 32, 1)
    np.testing.assert_allclose(array, render.permute(1, 2, 0).numpy(), rtol=1e-6, atol=1e-6)
    for name, image in (("super_resolved.png", render), ("bicubic.png", task.bicubic)):
        with Image.open(run / name) as png:
            assert png.mode == "L" and png.size == (32, 32), name
            back = np.asarray(png, dtype=np.float64) / 255.0
        expected = to_unit_range(image[0]).clamp(0, 1).double().numpy()
        assert np.abs(back - expected).max() <= 1 / 255, name


def test_the_input_is_the_filtered_downsample_and_the_baseline_its_bicubic_upsample():
    task = super_resolution_task(_config(sidelength=64, sr_factor=4, downsample="box"))
    high = task.high
    assert high.shape == (1, 64, 64) and task.data.shape == (16, 16)
    torch.testing.assert_close(task.data.image, high.reshape(1, 16, 4, 16, 4).mean(dim=(2, 4)), rtol=0, atol=1e-6)
    torch.testing.assert_close(task.bicubic, resize_image(task.data.image, (64, 64), "bicubic"))
    # every low-resolution pixel is trained on; nothing of the high-resolution image is
    assert task.num_samples == 16 * 16 and not task.data.heldout.any()


def test_scores_are_on_the_high_resolution_image():
    """psnr_heldout of a render equal to the original is infinite; of the bicubic baseline, its own PSNR."""
    task = super_resolution_task(_config(sidelength=32, sr_factor=2))
    assert task.scores(task.high)["psnr_heldout"] == float("inf")
    expected = psnr(to_unit_range(task.bicubic), to_unit_range(task.high))
    assert task.scores(task.bicubic, "bicubic_")["psnr_bicubic_heldout"] == pytest.approx(expected)


def test_derivative_targets_come_from_the_low_resolution_image_per_its_pixel_step():
    task = super_resolution_task(_config(sidelength=32, sr_factor=4, supervision="val_der"))
    low = task.data.image
    expected = image_gradient(low, "sobel").permute(2, 3, 0, 1).reshape(-1, 1, 2)
    torch.testing.assert_close(task.target, expected)
    torch.testing.assert_close(task.scale, torch.tensor([2 / 8, 2 / 8]))  # per low-resolution pixel step


def test_a_smooth_image_is_super_resolved_better_than_a_floor():
    """A band-limited image seen at 16x16 is recovered at 64x64: the network's render beats 45 dB (measured 51.5 dB;
    bicubic 48.2 dB)."""
    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    high = (0.6 * torch.sin(2.0 * x + 1.0) * torch.cos(1.5 * y) + 0.2 * torch.cos(3.0 * x * y))[None]
    low = low_resolution(high, 4, "box")
    task = SuperResolution(prepare_image(low, 1), high, 4)
    from sobolev_inr.models import MLP

    model = MLP(2, 1, ["sine"] * 3, 64, w0=10.0)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(300):
        optimizer.zero_grad()
        task.loss(model, None)["total"].backward()
        optimizer.step()
    assert task.evaluate(model)["psnr_heldout"] > 45.0


@pytest.mark.e2e
@pytest.mark.parametrize("argv, words", [
    (["--sr_factor", "1"], "sr_factor must be >= 2"),
    (["--supervision", "der"], "invalid choice"),
    (["--downsample", "nearest"], "invalid choice"),
    (["--filename", "skimage:text", "--sr_factor", "8"], "not a multiple of sr_factor = 8"),
])
def test_bad_configs_end_in_one_line(argv, words, tmp_path):
    proc = subprocess.run([sys.executable, "main.py", *argv, "--logging_root", str(tmp_path)], cwd=TASK_DIR,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_crop_makes_a_multiple_of_the_factor():
    task = super_resolution_task(_config(filename="skimage:text", sr_factor=8, crop=True))
    assert task.high_shape == (168, 448) and task.data.shape == (21, 56)
    assert any("cropped from 172x448" in n for n in task.data.notes)
    with pytest.raises(DataError, match="leaves 1x1"):
        low_resolution(torch.zeros(1, 8, 8), 8)
