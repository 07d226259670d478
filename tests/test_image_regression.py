"""End-to-end tests of Experiments/image_regression/main.py: configs, errors, outputs, resume, a real fit."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from task_entry import load_task_main, run_main
import torch

from sobolev_inr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "Experiments" / "image_regression"
SHIPPED_CONFIGS = sorted((TASK_DIR / "configs").rglob("*.txt"))


MAIN = load_task_main("image_regression")


def _run(args, tmp_path, **overrides):
    return run_main(MAIN, args, tmp_path, **overrides)


@pytest.mark.e2e
def test_every_shipped_config_runs_two_steps(tiny_rgb_png, tmp_path, monkeypatch):
    """Parse, build, train 2 steps, evaluate; figures are left out here (checked by the next test)."""
    monkeypatch.setattr("sobolev_inr.tasks.image_regression.ImageRegression.write_outputs", lambda *a, **k: None)
    monkeypatch.setattr("sobolev_inr.reporting.plots.save_training_curves", lambda *a, **k: None)
    assert len(SHIPPED_CONFIGS) == 30 + 6 + 13 + 6 + 12 + 6 + 12  # Set5, camera, activation study, Poisson, SPDER,
    # precision, issue 26's families (val and val_der for five activations and the grid)
    for cfg in SHIPPED_CONFIGS:
        poisson, every_pixel = "poisson" in cfg.parts, "poisson" in cfg.parts or "spder" in cfg.parts
        sizes = {"sidelength": 16} if every_pixel else {}  # Poisson and SPDER configs resize to 256x256
        metrics = _run(["--config", str(cfg)], tmp_path, filename=tiny_rgb_png, num_epochs=2, hidden_features=16,
                       **sizes)
        assert metrics["steps"] == 2, cfg
        score = "psnr_offset_full" if poisson else "psnr_full" if every_pixel else "psnr_heldout"
        assert np.isfinite(metrics[score]) and 0 < metrics["rho_ag_full"] <= 1, cfg
        text = cfg.read_text()
        assert metrics["supervision"] in text, cfg


@pytest.mark.e2e
def test_run_directory_contents_and_metric_names(tiny_rgb_png, tmp_path):
    _run([], tmp_path, filename=tiny_rgb_png, num_epochs=3, hidden_features=16, exp_name="a/b", supervision="val_der",
         epochs_til_summary=1)
    run = tmp_path / "a" / "b"
    for name in ("config.txt", "metrics.json", "scalars.csv", "log.txt", "reconstruction.png", "error_map.png",
                 "gradient_magnitude.png", "laplacian.png", "curves.png"):
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").glob("epoch_*.pt"))
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("psnr_heldout", "psnr_full", "psnr_luma_heldout", "ssim_heldout", "psnr_der_heldout", "steps",
                "psnr_grad_heldout", "psnr_grad_full", "psnr_lapl_heldout", "psnr_lapl_full",
                "wall_time_s", "device", "supervision", "activations"):
        assert key in metrics, key
    assert metrics["psnr_grad_heldout"] == metrics["psnr_der_heldout"]
    assert "psnr_offset_full" not in metrics  # value-supervised: the image itself is scored
    assert metrics["activations"] == ["sine"] * 4
    # The saved config reproduces the run's options.
    parser = MAIN.config_parser()
    again = parser.parse_args(["--config", str(run / "config.txt")])
    assert again.exp_name == "a/b" and again.num_epochs == 3 and again.hidden_features == 16


@pytest.mark.e2e
def test_original_config_with_unknown_key_is_rejected(tmp_path):
    cfg = tmp_path / "bad.txt"
    cfg.write_text("exp_name = baby/val_der/sine\nfilename = baby\nsupervision = val_der\n"
                   "activations = [sine, sine, sine, sine]\nlearning_rate = 1e-4\n")
    proc = subprocess.run([sys.executable, "main.py", "--config", str(cfg), "--logging_root", str(tmp_path)],
                          cwd=TASK_DIR, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "learning_rate" in proc.stderr and "unrecognized" in proc.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("line, words", [
    ("supervision = sobolev", ["supervision", "val_der", "lapl"]),
    ("activations = [sine, swish, sine, sine]", ["activations", "swish", "spder"]),
    ("der_units = metres", ["der_units", "pixel", "coord"]),
])
def test_bad_choice_is_rejected_naming_key_and_choices(tmp_path, line, words):
    cfg = tmp_path / "bad.txt"
    cfg.write_text(f"filename = skimage:camera\n{line}\n")
    proc = subprocess.run([sys.executable, "main.py", "--config", str(cfg)], cwd=TASK_DIR, capture_output=True, text=True)
    assert proc.returncode == 2
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


@pytest.mark.e2e
@pytest.mark.parametrize("args, words", [
    (["--filename", "no_such_image"], ["no_such_image", "Set5/HR/no_such_image.png", "data/README.md"]),
    (["--factor", "5"], ["not a multiple of factor = 5", "crop"]),
    (["--num_epochs", "0"], ["num_epochs must be >= 1"]),
    (["--activations", "sine", "sine", "--num_hidden_layers", "3"], ["num_hidden_layers"]),
    (["--has_pos_encoding", "--has_fourier_feature"], ["exclusive"]),
    (["--target_scaling", "siren", "--supervision", "val_der"], ["target_scaling = siren", "der or lapl"]),
    (["--target_scaling", "siren", "--supervision", "der", "--filename", "skimage:coffee"],
     ["square image", "sidelength"]),
    (["--sidelength", "1"], ["sidelength must be 0"]),
    (["--der_estimator", "directional", "--supervision", "val"], ["der_estimator = directional", "val_der or der"]),
    (["--der_directions", "0"], ["der_directions must be >= 1"]),
    (["--der_fraction", "0"], ["der_fraction must be in (0, 1]"]),
    (["--der_fraction", "0.5", "--supervision", "lapl"], ["der_fraction < 1", "val_der or der"]),
])
def test_bad_values_fail_with_one_line(tiny_rgb_png, tmp_path, args, words):
    argv = ["--filename", str(tiny_rgb_png)] + args if args[0] != "--filename" else args
    proc = subprocess.run([sys.executable, "main.py", *argv, "--logging_root", str(tmp_path)], cwd=TASK_DIR,
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:")
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


@pytest.mark.e2e
def test_cuda_requested_without_gpu_is_a_clear_error(tiny_rgb_png, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        _run([], tmp_path, filename=tiny_rgb_png, num_epochs=1, device="cuda")


@pytest.mark.e2e
def test_existing_run_is_skipped_refused_or_overwritten_never_silently_replaced(tiny_rgb_png, tmp_path):
    common = ["--filename", str(tiny_rgb_png), "--hidden_features", "8", "--exp_name", "r"]
    first = _run(common, tmp_path, num_epochs=2)
    stamp = (tmp_path / "r" / "metrics.json").stat().st_mtime_ns
    again = _run(common, tmp_path, num_epochs=2)  # same config: a finished run is skipped
    assert again == json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert (tmp_path / "r" / "metrics.json").stat().st_mtime_ns == stamp
    # How derivatives are computed is not what is computed: another engine still finds the run finished.
    _run(common + ["--der_engine", "autograd", "--der_recompute"], tmp_path, num_epochs=2)
    assert (tmp_path / "r" / "metrics.json").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match=r"lrate: 0.0001 -> 0.001.*--overwrite"):
        _run(common, tmp_path, num_epochs=2, lrate=1e-3)
    with pytest.raises(ConfigError, match=r"num_epochs: 2 -> 4.*--resume"):
        _run(common, tmp_path, num_epochs=4)
    redone = _run(common + ["--overwrite"], tmp_path, num_epochs=2, lrate=1e-3)
    assert redone["steps"] == 2 and first["steps"] == 2


@pytest.mark.e2e
def test_overwrite_refuses_to_delete_a_folder_that_is_not_a_run(tiny_rgb_png, tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(ConfigError, match="does not look like a run directory"):
        _run(["--filename", str(tiny_rgb_png), "--exp_name", "notes", "--overwrite"], tmp_path, num_epochs=1)
    assert (precious / "thesis.tex").read_text() == "keep me"


@pytest.mark.e2e
@pytest.mark.parametrize("supervision, extra", [
    ("val_der", []), ("val", ["--batch_size", "20"]),
    # the directions and the derivative rows are drawn again alike
    ("val_der", ["--der_estimator", "directional", "--der_fraction", "0.5", "--batch_size", "20"]),
])
def test_resume_matches_uninterrupted_run(tiny_rgb_png, tmp_path, supervision, extra):
    common = ["--filename", str(tiny_rgb_png), "--hidden_features", "16", "--supervision", supervision,
              "--epochs_til_ckpt", "2", *extra]
    full = _run(common + ["--exp_name", "full"], tmp_path, num_epochs=6)
    _run(common + ["--exp_name", "split"], tmp_path, num_epochs=3)  # an interrupted run: stops at epoch 3
    resumed = _run(common + ["--exp_name", "split", "--resume"], tmp_path, num_epochs=6)
    a = torch.load(tmp_path / "full" / "checkpoints" / "epoch_0000006.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoints" / "epoch_0000006.pt", weights_only=False)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert full["steps"] == resumed["steps"]
    assert full["psnr_heldout"] == resumed["psnr_heldout"]


def test_short_fit_on_embedded_camera_reaches_psnr_floor(tmp_path):
    """SIREN on the cameraman (embedded), 128x128 crop, trained on 1/4 of the pixels."""
    from sobolev_inr.data.images import load_image, prepare_image
    from sobolev_inr.models import MLP
    from sobolev_inr.tasks.image_regression import ImageRegression
    from sobolev_inr.training.loop import FitConfig, fit, seed_everything
    from sobolev_inr.training.runs import RunDirectory

    image, source, _ = load_image("skimage:camera")
    image = image[:, 160:288, 192:320]  # the cameraman's head and camera: edges and flat regions
    data = prepare_image(image, factor=2, source=source)
    seed_everything(0)
    model = MLP(2, 1, ["sine"] * 3, hidden_features=64)
    task = ImageRegression(data, supervision="val_der")
    before = task.evaluate(model)["psnr_heldout"]
    run = RunDirectory(str(tmp_path), "camera")
    fit(model, task, FitConfig(num_epochs=150, lrate=1e-3, summary_every=50, progress=False,
                               tensorboard=False), run, {})
    after = task.final_metrics(model)
    assert after["psnr_heldout"] > 25.0, after
    assert after["psnr_heldout"] > before + 10
    assert after["psnr_der_heldout"] > 20.0, after


@pytest.mark.e2e
def test_derivative_engines_train_alike(tiny_rgb_png, tmp_path):
    """--der_engine and --der_recompute change how the Jacobian is computed, not the run's result."""
    common = ["--filename", str(tiny_rgb_png), "--hidden_features", "16", "--supervision", "val_der"]
    runs = {name: _run(common + ["--exp_name", name, *extra], tmp_path, num_epochs=5)
            for name, extra in [("fused", []), ("recompute", ["--der_recompute"]),
                                ("autograd", ["--der_engine", "autograd"])]}
    for name in ("recompute", "autograd"):
        assert runs[name]["final_total"] == pytest.approx(runs["fused"]["final_total"], rel=1e-4), name
        assert runs[name]["psnr_heldout"] == pytest.approx(runs["fused"]["psnr_heldout"], abs=1e-3), name


@pytest.mark.e2e
@pytest.mark.parametrize("options", [
    ["--supervision", "der"],
    ["--supervision", "lapl"],
    ["--supervision", "val_der", "--der_units", "coord", "--der_operator", "diff"],
    ["--supervision", "val_der", "--der_on_downsampled"],
    ["--supervision", "val_der", "--has_pos_encoding", "--activations", "relu"],
    ["--supervision", "val_der", "--has_fourier_feature", "--fourier_num_features", "8"],
    ["--supervision", "val_der", "--activations", "spder_arctan", "--is_gray"],
    ["--supervision", "val_der", "--der_mode", "reverse", "--batch_size", "7"],
    ["--supervision", "der", "--der_estimator", "directional", "--der_directions", "2", "--is_gray"],
    ["--supervision", "val_der", "--der_fraction", "0.25", "--batch_size", "9"],
])
def test_option_combinations_train(tiny_rgb_png, tmp_path, options):
    metrics = _run(["--filename", str(tiny_rgb_png), *options], tmp_path, num_epochs=2, hidden_features=16)
    assert metrics["steps"] >= 2
    assert np.isfinite(metrics["final_total"])


@pytest.mark.e2e
def test_resume_refuses_a_changed_config_and_records_every_start(tiny_rgb_png, tmp_path):
    """--resume compares configs as a rerun does: the run's length and options that do not change the
    result may differ, anything else is refused naming the keys; history.jsonl records every start."""
    from sobolev_inr.training.runs import read_history

    common = ["--filename", str(tiny_rgb_png), "--hidden_features", "8", "--exp_name", "r", "--epochs_til_ckpt", "2"]
    _run(common, tmp_path, num_epochs=2)
    before = (tmp_path / "r" / "config.json").read_text()
    with pytest.raises(ConfigError, match=r"--resume: .*lrate: 0.0001 -> 0.01"):
        _run(common + ["--resume"], tmp_path, num_epochs=4, lrate=1e-2)
    with pytest.raises(ConfigError, match=r"seed: 0 -> 1.*supervision: val_der -> val"):
        _run(common + ["--resume", "--seed", "1", "--supervision", "val"], tmp_path, num_epochs=4)
    assert (tmp_path / "r" / "config.json").read_text() == before  # the refused runs changed nothing
    resumed = _run(common + ["--resume", "--der_engine", "autograd", "--device", "cpu"], tmp_path, num_epochs=4)
    assert resumed["steps"] == 4
    history = read_history(tmp_path / "r")
    assert [(h["mode"], h["start_epoch"]) for h in history] == [("new", 0), ("resume", 2)]
    assert set(history[1]["changed"]) == {"num_epochs: 2 -> 4", "der_engine: auto -> autograd", "device: auto -> cpu"}
    assert history[1]["config"]["num_epochs"] == 4 and history[0]["config"]["num_epochs"] == 2


@pytest.mark.e2e
def test_factor_one_trains_on_every_pixel_and_reports_no_held_out_metrics(tiny_rgb_png, tmp_path):
    metrics = _run(["--filename", str(tiny_rgb_png), "--factor", "1"], tmp_path, num_epochs=2, hidden_features=8,
                   exp_name="f1", epochs_til_summary=1)
    assert not [k for k in metrics if k.endswith("_heldout")], metrics
    assert metrics["num_heldout_samples"] == 0
    for key in ("psnr_full", "psnr_luma_full", "ssim_full", "psnr_der_full", "psnr_grad_full", "psnr_lapl_full"):
        assert np.isfinite(metrics[key]), key
    saved = (tmp_path / "f1" / "metrics.json").read_text()
    assert "NaN" not in saved and "null" not in saved.replace('"time_per_1k_steps_s": null', "")
    assert "no held-out metrics" in (tmp_path / "f1" / "log.txt").read_text()


# ----------------------------------------------------------------------------- Poisson reconstruction
def test_siren_target_scaling_reproduces_sirens_poisson_targets(tmp_path):
    """target_scaling = siren with der_units = coord gives SIREN's targets exactly: scipy's Sobel of 10 x the
    [-1, 1] image and scipy's laplace of 1e4 x the image, per [-1, 1] coordinate unit (train_poisson_*_img.py)."""
    import scipy.ndimage

    args = MAIN.config_parser().parse_args(["--filename", "skimage:camera", "--is_gray", "--sidelength", "32",
                                            "--factor", "1", "--der_units", "coord", "--target_scaling", "siren"])
    from sobolev_inr.tasks.image_regression import ImageRegressionOptions, image_task

    for supervision in ("der", "lapl"):
        task = image_task(ImageRegressionOptions.from_config({**vars(args), "supervision": supervision}))
        image = task.data.image[0].double().numpy()  # (H, W) in [-1, 1]
        if supervision == "der":
            # our target columns are (d/dx, d/dy) = (along the width, along the height)
            siren = np.stack([scipy.ndimage.sobel(10 * image, axis=1), scipy.ndimage.sobel(10 * image, axis=0)], -1)
            ours = task.target.reshape(32, 32, 2).double().numpy()
        else:
            siren = scipy.ndimage.laplace(1e4 * image)
            ours = task.target.reshape(32, 32).double().numpy()
        np.testing.assert_allclose(ours, siren, rtol=1e-4, atol=1e-3 * np.abs(siren).max())


def test_an_analytic_image_is_recovered_from_its_exact_gradient_up_to_a_constant():
    """Supervised on its exact gradient only, a SIREN recovers f = 0.4 sin(pi x) cos(pi y) + 0.3 up to the
    constant, which the gradient cannot see: offset-aligned PSNR high, the raw one limited by the offset."""
    from sobolev_inr.data.coords import image_grid, image_step
    from sobolev_inr.metrics import psnr, remove_offset, to_unit_range
    from sobolev_inr.models import MLP
    from sobolev_inr.tasks.regression import SobolevRegression

    torch.manual_seed(0)
    h = w = 24
    coords = image_grid(h, w)
    x, y = coords.T
    value = (0.4 * torch.sin(torch.pi * x) * torch.cos(torch.pi * y) + 0.3)[:, None]
    step = image_step(h, w)
    exact = torch.stack([0.4 * torch.pi * torch.cos(torch.pi * x) * torch.cos(torch.pi * y) * step[0],
                         -0.4 * torch.pi * torch.sin(torch.pi * x) * torch.sin(torch.pi * y) * step[1]], -1)
    task = SobolevRegression(coords, value, exact[:, None, :], None, step, supervision="der")
    model = MLP(2, 1, ["sine"] * 3, hidden_features=32, w0=10.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(300):
        optimizer.zero_grad()
        task.loss(model, None)["total"].backward()
        optimizer.step()
    with torch.no_grad():
        pred = model(coords).T.reshape(1, h, w)
    target = value.T.reshape(1, h, w)
    aligned = psnr(to_unit_range(remove_offset(pred, target)), to_unit_range(target))
    raw = psnr(to_unit_range(pred), to_unit_range(target))
    assert aligned > 38.0, aligned
    assert raw < aligned - 10.0, (raw, aligned)  # the offset was not learnt: only the gradient was seen


@pytest.mark.e2e
def test_poisson_run_reports_aligned_psnrs_and_laplacian_figure(tmp_path):
    metrics = _run(["--filename", "skimage:camera", "--is_gray", "--sidelength", "16", "--factor", "1",
                    "--supervision", "lapl", "--der_units", "coord", "--target_scaling", "siren"], tmp_path,
                   num_epochs=2, hidden_features=16, exp_name="p", epochs_til_summary=1)
    for key in ("psnr_offset_full", "psnr_minmax_full", "psnr_grad_full", "psnr_lapl_full", "psnr_full"):
        assert np.isfinite(metrics[key]), key
    assert metrics["target_scale"] == pytest.approx(1e4 * (2 / 16) ** 2)  # 1e4 step^2, step = 2 / 16
    assert (tmp_path / "p" / "laplacian.png").is_file()
    assert "psnr_offset_full" in (tmp_path / "p" / "scalars.csv").read_text()


def _read_png(path):
    """(H, W, C) float64 in [0, 1] of an 8-bit PNG, and its mode."""
    from PIL import Image

    with Image.open(path) as png:
        array, mode = np.asarray(png, dtype=np.float64) / 255.0, png.mode
    return (array[..., None] if array.ndim == 2 else array), mode


@pytest.mark.e2e
@pytest.mark.parametrize("image, channels, mode", [("tiny_rgb_png", 3, "RGB"), ("tiny_gray_png", 1, "L"),
                                                   ("poisson", 1, "L")])
def test_raw_reconstruction_is_saved_at_native_resolution(image, channels, mode, request, tmp_path):
    """reconstruction.npy is the render ((H, W, C) float32, in the image's units: divided by target_scale);
    reconstruction_raw.png is it at 8 bits, within 1/255 of its values mapped to [0, 1] (a Poisson one as shown:
    the best constant removed); reconstruction.png stays the figure."""
    from sobolev_inr.metrics import remove_offset, to_unit_range
    from sobolev_inr.tasks.image_regression import load_run

    if image == "poisson":
        args = ["--filename", "skimage:camera", "--is_gray", "--sidelength", "16", "--factor", "1", "--supervision",
                "lapl", "--der_units", "coord", "--target_scaling", "siren"]
    else:
        args = ["--filename", str(request.getfixturevalue(image))]
    _run(args, tmp_path, exp_name="r", num_epochs=2, hidden_features=16, epochs_til_summary=2)
    run = tmp_path / "r"
    model, task, _ = load_run(run)
    render = task.render(model)
    assert (task.target_scale != 1.0) == (image == "poisson")
    array = np.load(run / "reconstruction.npy")
    assert array.dtype == np.float32 and array.shape == (16, 16, channels)
    np.testing.assert_allclose(array, render.permute(1, 2, 0).numpy(), rtol=1e-6, atol=1e-6)
    png, png_mode = _read_png(run / "reconstruction_raw.png")
    assert png_mode == mode and png.shape == (16, 16, channels)
    shown = remove_offset(render, task.data.image) if task.is_poisson else render
    expected = to_unit_range(shown).clamp(0, 1).permute(1, 2, 0).double().numpy()
    assert np.abs(png - expected).max() <= 1 / 255
    assert _read_png(run / "reconstruction.png")[0].shape != png.shape  # the figure, not the image


@pytest.mark.e2e
def test_load_run_rebuilds_a_finished_run_and_compare_draws_it(tiny_rgb_png, tmp_path):
    from sobolev_inr.tasks.image_regression import load_run

    common = dict(filename=tiny_rgb_png, num_epochs=3, hidden_features=16, factor=2)
    metrics = _run([], tmp_path, exp_name="val", supervision="val", **common)
    _run([], tmp_path, exp_name="val_der", **common)
    model, task, saved = load_run(tmp_path / "val")
    assert saved == metrics
    assert task.final_metrics(model)["psnr_heldout"] == pytest.approx(metrics["psnr_heldout"], abs=1e-9)
    compare = load_task_main("image_regression", "compare")
    compare.main([str(tmp_path / "val"), str(tmp_path / "val_der"), "--out", str(tmp_path / "c.png")])
    assert (tmp_path / "c.png").stat().st_size > 10_000
