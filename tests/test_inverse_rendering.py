"""End-to-end tests of Experiments/inverse_rendering (train.py, eval.py) and the task behind them."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sobolev_inr.data.scenes import make_synthetic_scene
from sobolev_inr.errors import DataError
from sobolev_inr.reporting.outputs import video_suffix
from sobolev_inr.tasks import inverse_rendering as ir
from sobolev_inr.training.checkpoints import latest_checkpoint, load_checkpoint
from task_entry import REPO, load_task_main

TASK_DIR = REPO / "Experiments" / "inverse_rendering"
ORIGINAL = sorted(p for p in (TASK_DIR / "configs").rglob("*.txt")
                  if p.parts[-3] in ("fern", "flower", "fortress", "horns", "leaves", "orchids", "room", "trex"))
SHIPPED = sorted((TASK_DIR / "configs").rglob("*.txt"))
TRAIN = load_task_main("inverse_rendering", "train")
EVAL = load_task_main("inverse_rendering", "eval")
FERN = REPO.parent / "shared" / "data" / "nerf_llff_data" / "fern"

# A tiny run: few samples and rays, a narrow network, every periodic output off.
TINY = ["--netwidth", "16", "--N_samples", "8", "--N_rand", "64", "--i_print", "1", "--i_img", "1000",
        "--i_weights", "1000", "--i_testset", "1000", "--i_video", "1000", "--eval_rays", "32", "--chunk", "512",
        "--no_progress"]


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory):
    """The synthetic scene at 32x24 (images/; images_2/ is 16x12), 10 views: test views 0 and 8."""
    return make_synthetic_scene(tmp_path_factory.mktemp("scene") / "tiny", width=32, height=24, num_views=10,
                                factors=(2,))


def _train(args, tmp_path, **overrides):
    argv = list(args) + ["--basedir", str(tmp_path)]
    for k, v in overrides.items():
        argv += [f"--{k}", str(v)]
    return TRAIN.main(argv)


def test_the_original_32_configs_are_unchanged_and_shipped():
    assert len(ORIGINAL) == 32
    for path in ORIGINAL:
        scene, sup, act = path.parts[-3], path.parts[-2], path.stem
        assert path.read_text() == (f"expname = {scene}/{sup}/{act}\n\ndatadir = ../../data/nerf_llff_data/{scene}\n"
                                    f"supervision = {sup}\nactivations = [{', '.join([act] * 8)}]\n")


def test_original_defaults_are_the_original_train_py(tmp_path):
    args = TRAIN.config_parser().parse_args(["--config", str(TASK_DIR / "configs/fern/val_der/relu.txt")])
    assert (args.lrate, args.lrate_decay, args.N_iters, args.N_rand, args.N_samples, args.netdepth, args.netwidth,
            args.multires, args.raw_noise_std, args.perturb, args.llffhold, args.llff_factor, args.factor,
            args.chunk, args.netchunk, args.i_print, args.i_weights, args.i_testset, args.i_video) == (
        5e-4, 250, 400000, 1024, 128, 8, 256, 10, 1.0, 1.0, 8, 4, 4, 32768, 65536, 100, 10000, 50000, 400000)
    assert (args.w0, args.init, args.pe_pi_factor, args.i_embed, args.N_importance) == (1.0, "torch_default", False,
                                                                                        0, 0)


@pytest.mark.e2e
def test_every_shipped_config_trains_a_few_steps(tiny_scene, tmp_path, monkeypatch):
    """Parse, load (the tiny scene stands in for the LLFF scenes), train 2 steps, score the test views."""
    monkeypatch.setattr(ir.InverseRendering, "write_outputs", lambda *a, **k: None)
    monkeypatch.setattr("sobolev_inr.reporting.plots.save_training_curves", lambda *a, **k: None)
    assert len(SHIPPED) == 32 + 4 + 4 + 2  # + issue 26's FINER and grid configs
    for cfg in SHIPPED:
        metrics = _train(["--config", str(cfg), *TINY], tmp_path, datadir=tiny_scene, llff_factor=2, factor=2,
                         N_iters=2)
        assert metrics["steps"] == 2, cfg
        assert np.isfinite(metrics["psnr_heldout"]) and metrics["heldout_views"] == [0, 8], cfg
        assert metrics["supervision"] in cfg.read_text(), cfg


@pytest.mark.e2e
def test_no_ndc_and_lindisp_reach_the_renderer(tiny_scene, tmp_path):
    """The original parsed them and never passed them on: here each changes the rays and the result."""
    common = ["--config", str(TASK_DIR / "configs/synthetic/val/relu.txt"), *TINY, "--N_iters", "2"]
    scene = dict(datadir=tiny_scene, llff_factor=2, factor=2)
    results = {name: _train(common + ["--expname", name, *flags], tmp_path, **scene)["psnr_heldout"]
               for name, flags in {"ndc": [], "world": ["--no_ndc"], "disp": ["--no_ndc", "--lindisp"]}.items()}
    assert "samples per ray in NDC t in [0, 1]" in (tmp_path / "ndc" / "log.txt").read_text()
    for name in ("world", "disp"):
        assert "samples per ray in depth [" in (tmp_path / name / "log.txt").read_text()
    assert len(set(results.values())) == 3, results


@pytest.mark.e2e
def test_run_directory_outputs_and_eval_scores(tiny_scene, tmp_path):
    argv = ["--config", str(TASK_DIR / "configs/synthetic/val_der/relu.txt"), *TINY, "--expname", "r",
            "--datadir", str(tiny_scene), "--llff_factor", "2", "--factor", "2", "--N_iters", "4",
            "--i_testset", "2", "--i_video", "4", "--i_img", "2", "--render_factor", "2"]
    metrics = _train(argv, tmp_path)
    run = tmp_path / "r"
    for name in ("config.txt", "metrics.json", "scalars.csv", "history.jsonl", "log.txt", "curves.png",
                 "heldout_views.png", "derivatives.png", "progress.png", "spiral_000004_rgb" + video_suffix(),
                 "spiral_000004_disp" + video_suffix()):
        assert (run / name).is_file(), name
    import imageio.v3 as iio

    plugin = "FFMPEG" if video_suffix() == ".mp4" else "pillow"
    rgb, disp = (iio.imread(run / f"spiral_000004_{k}{video_suffix()}", plugin=plugin) for k in ("rgb", "disp"))
    # (a GIF merges a frame identical to the one before it, so without the video extra the counts may differ)
    assert rgb.shape[0] > 1 and disp.shape[0] > 1 and rgb.shape[1:] == disp.shape[1:] and rgb.shape[-1] == 3
    for step in (2, 4):
        assert sorted(p.name for p in (run / f"testset_{step:06d}").glob("*.png")) == [
            "000.png", "000_disp.png", "008.png", "008_disp.png"]
    for key in ("psnr_heldout", "ssim_heldout", "psnr_der_heldout", "time_per_1k_steps_s", "peak_memory_mb", "steps",
                "supervision", "activations", "scene", "heldout_views"):
        assert key in metrics, key
    # eval.py: score.txt for every testset, paired by view index; another resolution beside it.
    scores = EVAL.main(argv + ["--basedir", str(tmp_path), "--eval_llff_factor", "1"])
    text = (run / "testset_000004" / "score.txt").read_text().splitlines()
    assert [line.split()[0] for line in text[:2]] == ["000.png", "008.png"] and text[2].startswith("Mean PSNR:")
    assert scores["psnr_heldout"] == pytest.approx(metrics["psnr_heldout"], abs=1e-9)
    assert (run / "testset_000002" / "score.txt").is_file()
    assert scores["heldout_size_24x32"] == [24, 32]
    assert sorted(p.name for p in (run / "testset_000004_24x32").glob("???.png")) == ["000.png", "008.png"]
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["psnr_heldout_24x32"] == scores["psnr_heldout_24x32"]
    assert json.loads((run / "testset_000004" / "scores.json").read_text())["psnr_heldout"] == saved["psnr_heldout"]
    # the report tool collects the run (not the testset scores) and draws its held-out view
    from sobolev_inr.report import make_report

    out = make_report(tmp_path, out=tmp_path / "report")
    assert (out / "report.md").read_text().count("| r |") == 1
    assert (out / "heldout_views.png").stat().st_size > 5000


def test_table_7_numbers_match_the_original_run_names():
    from sobolev_inr.report import load_references, match_reference

    refs = load_references()
    assert match_reference("fern/val/relu", refs)["psnr_heldout"] == 24.26
    assert match_reference("logs/fern/val_der/sine", refs)["ssim_heldout"] == 0.755
    assert match_reference("trex/val_der/sine", refs)["psnr_heldout_3024x4032"] == 22.88
    small = match_reference("fern_small/val/relu", refs)  # trained at 378x504: Table 7 only where it is scored
    assert "psnr_heldout" not in small and small["psnr_heldout_756x1008"] == 24.26
    assert match_reference("fern_small/val/sine", refs) is None  # Table 7 has no value-only sine row


def _write(path, array):
    Image.fromarray((array * 255).round().astype(np.uint8)).save(path)


def test_eval_pairs_renders_by_view_index_not_by_listing_order(tmp_path):
    rng = np.random.default_rng(0)
    truth = {v: (rng.integers(0, 256, (6, 8, 3)) / 255.0).astype(np.float32) for v in (0, 8, 16)}
    folder = tmp_path / "testset_000010"
    folder.mkdir()
    for view in (16, 0, 8):  # written out of order, beside files that are not renders
        _write(folder / f"{view:03d}.png", truth[view])
        _write(folder / f"{view:03d}_disp.png", truth[view][..., 0:1].repeat(3, -1))
    scores = ir.score_renders(folder, truth)
    assert scores.views == [0, 8, 16] and all(p == float("inf") for p in scores.psnr)
    (folder / "008.png").rename(folder / "tmp.png")
    (folder / "016.png").rename(folder / "008.png")  # shuffled names: view 8's file holds view 16
    (folder / "tmp.png").rename(folder / "016.png")
    swapped = ir.score_renders(folder, truth)
    assert swapped.psnr[0] == float("inf") and swapped.psnr[1] < 20 and swapped.psnr[2] < 20
    (folder / "016.png").unlink()
    with pytest.raises(DataError, match=r"renders of views \[0, 8\], the test views are \[0, 8, 16\]"):
        ir.score_renders(folder, truth)
    _write(folder / "016.png", np.zeros((3, 4, 3)))
    with pytest.raises(DataError, match="016.png is 4x3, its ground truth 8x6"):
        ir.score_renders(folder, truth)


def test_score_txt_is_the_original_format():
    scores = ir.ViewScores([0, 8], [24.123456, 25.00005], [0.81234, 0.79999], 6, 8)
    assert scores.score_txt() == ("000.png PSNR: 24.1235, SSIM: 0.8123\n008.png PSNR: 25.0001, SSIM: 0.8000\n"
                                  "Mean PSNR: 24.5618, Mean SSIM: 0.8062\n")


@pytest.mark.e2e
def test_resume_matches_the_uninterrupted_run(tiny_scene, tmp_path):
    """Perturbation and density noise on: their draws come from the checkpointed generator."""
    common = ["--config", str(TASK_DIR / "configs/synthetic/val_der/sine.txt"), *TINY, "--datadir", str(tiny_scene),
              "--llff_factor", "2", "--factor", "2", "--i_weights", "3"]
    _train(common + ["--expname", "whole", "--N_iters", "7"], tmp_path)
    _train(common + ["--expname", "split", "--N_iters", "3"], tmp_path)
    _train(common + ["--expname", "split", "--N_iters", "7", "--resume"], tmp_path)
    a = load_checkpoint(latest_checkpoint(tmp_path / "whole" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "split" / "checkpoints"))
    assert a["step"] == b["step"] == 7
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.e2e
@pytest.mark.slow
def test_kill_9_after_a_checkpoint_then_rerun_gives_the_uninterrupted_result(tiny_scene, tmp_path):
    """train.py kills itself (SIGKILL) right after its 2nd checkpoint, at step 6, where a test render is also
    due: the checkpoint is written before the render, so the rerun of the same command loses no training."""
    import signal

    from task_entry import killed_run_command

    common = ["--config", str(TASK_DIR / "configs/synthetic/val_der/sine.txt"), *TINY, "--datadir", str(tiny_scene),
              "--llff_factor", "2", "--factor", "2", "--i_weights", "3", "--i_testset", "6", "--N_iters", "8",
              "--basedir", str(tmp_path)]

    def run(name, prefix=(sys.executable, "train.py")):
        return subprocess.run([*prefix, *common, "--expname", name], cwd=TASK_DIR, capture_output=True, text=True)

    assert run("whole").returncode == 0
    killed = run("killed", prefix=killed_run_command("inverse_rendering", 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "killed" / "checkpoints" / "step_0000006.pt").exists()
    assert not (tmp_path / "killed" / "testset_000006").exists()  # killed before the render
    rerun = run("killed")
    assert rerun.returncode == 0, rerun.stderr
    assert "resume: continuing from step_0000006.pt" in rerun.stdout
    a = load_checkpoint(latest_checkpoint(tmp_path / "whole" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "killed" / "checkpoints"))
    assert a["step"] == b["step"] == 8
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    again = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert whole["psnr_heldout"] == again["psnr_heldout"]


def test_task_loss_matches_the_original_three_autograd_calls(tiny_scene):
    """The task's val_der loss and its weight gradients equal the original's: pixel coordinates as the
    leaf, rgb rendered through the same rays, three autograd.grad calls, der_mse."""
    from sobolev_inr.data.scenes import load_llff
    from sobolev_inr.models.nerf import tiny_nerf

    scene = load_llff(tiny_scene, 2)
    train_ids, test_ids = scene.split(8)
    task = ir.InverseRendering(scene, train_ids, test_ids, stride=2, batch_size=32,
                               render=ir.RenderOptions(num_samples=8), supervision="val_der")
    torch.manual_seed(0)
    model = tiny_nerf(["relu", "sine", "relu"], netwidth=16, multires=4).double()
    task.rays = ir.TrainingRays(*(t.double() if t.is_floating_point() else t for t in
                                  (task.rays.pixels, task.rays.views, task.rays.rgb, task.rays.gradient)))
    task.poses = task.poses.double()
    index = torch.arange(0, len(task.rays), 7)[:20]
    terms = task.loss(model, (index, 123))
    grads = torch.autograd.grad(terms["total"], list(model.parameters()))

    reference = task.loss_by_autograd(model, (index, 123))["total"]
    assert terms["total"].item() == pytest.approx(reference.item(), rel=1e-10)
    for g, r in zip(grads, torch.autograd.grad(reference, list(model.parameters()))):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-12)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_synthetic_scene_reaches_a_psnr_floor(tmp_path):
    argv = ["--config", str(TASK_DIR / "configs/synthetic/val_der/relu.txt"), "--expname", "fit", "--no_progress",
            "--llff_factor", "4", "--factor", "1", "--N_samples", "24", "--netwidth", "64", "--N_iters", "400",
            "--i_print", "100", "--i_img", "10000", "--i_weights", "10000", "--i_testset", "10000", "--i_video", "10000",
            "--lrate", "2e-3"]
    metrics = _train(argv, tmp_path)
    assert metrics["psnr_heldout"] > 17.0, metrics["psnr_heldout"]


BAD = {
    "count mismatch": ("count", ["2 images", "3 poses"]),
    "missing images_k": ("missing", ["images_4", "llff_make_images"]),
    "corrupt image": ("corrupt", ["cannot read", "000.png"]),
    "no training view": ("hold1", ["llffhold = 1", "leaves none to train on"]),
    "no scene": ("nowhere", ["nowhere not found", "data/README.md", "datadir = synthetic"]),
    "fine network": ("fine", ["N_importance"]),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenes_and_options_fail_with_one_line(case, tiny_scene, tmp_path):
    import shutil

    kind, words = BAD[case]
    scene = tmp_path / "scene"
    shutil.copytree(tiny_scene, scene)
    extra = ["--llff_factor", "2"]
    if kind == "count":
        for p in sorted((scene / "images_2").glob("*.png"))[2:]:
            p.unlink()
        np.save(scene / "poses_bounds.npy", np.load(scene / "poses_bounds.npy")[:3])
    elif kind == "missing":
        extra = ["--llff_factor", "4"]
    elif kind == "corrupt":
        first = sorted((scene / "images_2").glob("*.png"))[0]
        first.write_bytes(first.read_bytes()[:40])
    elif kind == "hold1":
        extra += ["--llffhold", "1"]
    elif kind == "nowhere":
        scene = tmp_path / "nowhere"
    elif kind == "fine":
        extra += ["--N_importance", "64"]
    proc = subprocess.run([sys.executable, "train.py", "--datadir", str(scene), *extra, "--basedir", str(tmp_path / "l"),
                           "--expname", "x", "--N_iters", "1"], cwd=TASK_DIR, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)


@pytest.mark.skipif(not (FERN / "images_8").is_dir(), reason=f"LLFF fern is not at {FERN} (see data/README.md)")
def test_fern_small_configs_load_fern_at_llff_factor_8(tmp_path):
    args = TRAIN.config_parser().parse_args(["--config", str(TASK_DIR / "configs/fern_small/val_der/relu.txt"),
                                             "--datadir", str(FERN)])
    task = ir.load_task(ir.InverseRenderingOptions.from_config(vars(args)), torch.device("cpu"), tmp_path)
    assert (task.height, task.width) == (378, 504) and task.test_ids == [0, 8, 16]
    assert len(task.rays) == 17 * len(range(0, 378, task.stride)) * len(range(0, 504, task.stride))
