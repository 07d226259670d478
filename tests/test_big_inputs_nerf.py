"""Inverse rendering with big inputs (issue 25): chunked renders and blocked training steps give the numbers of
unchunked ones, the final evaluation at a stride scores the strided pixels of the full render, the long phases
show progress and log their durations, a smoke run renders nothing at its end, and the render chunks bound the
memory. All on the embedded synthetic scene at 32x24 with a tiny network: each test takes a few seconds."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from sobolev_inr.data.scenes import load_llff, make_synthetic_scene
from sobolev_inr.models.nerf import tiny_nerf
from sobolev_inr.tasks import inverse_rendering as ir
from sobolev_inr.training.loop import accumulate_blocks
from sobolev_inr.training.progress import Progress
from task_entry import REPO, load_task_main

TASK_DIR = REPO / "Experiments" / "inverse_rendering"
TRAIN = load_task_main("inverse_rendering", "train")
EVAL = load_task_main("inverse_rendering", "eval")
SAMPLES = 8
UNCHUNKED = dict(chunk=10 ** 9, netchunk=10 ** 9)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    """The synthetic scene at 32x24 (images/), 10 views: test views 0 and 8."""
    return make_synthetic_scene(tmp_path_factory.mktemp("scene") / "tiny", width=32, height=24, num_views=10,
                                factors=(2,))


def make_task(scene_dir, supervision="val_der", block_size=0, **render):
    scene = load_llff(scene_dir, 1)
    train_ids, test_ids = scene.split(8)
    return ir.InverseRendering(scene, train_ids, test_ids, stride=2, batch_size=64, supervision=supervision,
                               render=ir.RenderOptions(num_samples=SAMPLES, **render), eval_rays=0,
                               block_size=block_size)


def make_model():
    torch.manual_seed(0)
    return tiny_nerf(["relu", "sine", "relu"], netwidth=16, multires=4).eval()


class Recording(Progress):
    """A Progress whose bars record their updates and descriptions (instead of drawing) and whose phases log
    into a list."""

    def __init__(self, log):
        super().__init__(bars=False, log=log.append)
        object.__setattr__(self, "bars_made", [])

    def bar(self, iterable=None, total=None, desc="", unit="it"):
        bar = RecordedBar(total, desc, unit)
        self.bars_made.append(bar)
        return bar


@dataclasses.dataclass
class RecordedBar:
    total: int
    desc: str
    unit: str
    updates: list = dataclasses.field(default_factory=list)
    descriptions: list = dataclasses.field(default_factory=list)
    closed: bool = False

    def update(self, n):
        self.updates.append(n)

    def set_description(self, desc, refresh=True):
        self.descriptions.append(desc)

    def close(self):
        self.closed = True


def assert_same_render(a, b):
    for name in ("rgb", "depth", "disparity", "acc"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("stride", [1, 2])
def test_chunked_renders_equal_one_chunk(scene_dir, stride):
    """Views and their derivative renders in 22-ray chunks (5 for derivatives) and 37-point network chunks (which
    split rays) equal those rendered in one piece; the bar counts every ray once, within each view."""
    model = make_model()
    small = make_task(scene_dir, chunk=22, netchunk=37)
    whole = make_task(scene_dir, **UNCHUNKED)
    lines = []
    small.progress = Recording(lines)
    a, b = small.test_renders(model, stride=stride), whole.test_renders(model, stride=stride)
    h, w = (24, 32) if stride == 1 else (12, 16)
    for view in (0, 8):
        assert a[view].rgb.shape == (h, w, 3)
        assert_same_render(a[view], b[view])
    ga, gb = small.test_gradients(model, stride), whole.test_gradients(model, stride)
    for view in (0, 8):
        assert ga[view].shape == (h, w, 3, 2)
        torch.testing.assert_close(ga[view], gb[view], rtol=1e-5, atol=1e-6)
    renders, gradients = small.progress.bars_made
    for bar in (renders, gradients):
        assert bar.unit == "ray" and bar.total == 2 * h * w and sum(bar.updates) == bar.total and bar.closed
        assert len(bar.updates) > 2 * 2  # several updates within each view
    assert renders.descriptions == ["test view 0 (1/2)", "test view 8 (2/2)"]
    assert [line.split(":")[0] for line in lines] == [f"test renders (2 views of {h}x{w})",
                                                       f"derivative renders (2 views of {h}x{w})"]


def test_blocked_training_step_equals_the_whole_batch(scene_dir):
    """loss_blocks with blocks of 5 rays (stratified samples and density noise on): the accumulated gradients
    and the summed terms are those of the batch's loss (float64)."""
    model = make_model().double().train()
    tasks = [make_task(scene_dir, block_size=size) for size in (0, 5)]
    for task in tasks:
        task.rays = ir.TrainingRays(*(t.double() if t.is_floating_point() else t for t in
                                      (task.rays.pixels, task.rays.views, task.rays.rgb, task.rays.gradient)))
        task.poses = task.poses.double()
    batch = (torch.arange(3, 3 + 7 * 23, 7), 1234)
    results = []
    for task in tasks:
        model.zero_grad()
        terms = accumulate_blocks(task.loss_blocks(model, batch))
        results.append((terms, [p.grad.clone() for p in model.parameters()]))
    (whole, g_whole), (blocked, g_blocked) = results
    assert sorted(whole) == sorted(blocked) == ["derivative", "total", "value"]
    for name in whole:
        assert blocked[name].item() == pytest.approx(whole[name].item(), rel=1e-12), name
    for a, b in zip(g_whole, g_blocked):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    assert len(list(tasks[1].loss_blocks(model, batch))) == 5  # 23 rays: 5 + 5 + 5 + 5 + 3


def test_final_eval_stride_2_scores_the_strided_pixels(scene_dir):
    """final_metrics(stride=2) scores 12x16 of each 24x32 test view: the pixels (2i, 2j) of the full render,
    which is also the render at render factor 2 (2 divides the size), against image[::2, ::2]."""
    model = make_model()
    task = make_task(scene_dir)
    full = task.final_metrics(model, stride=1)
    strided = task.final_metrics(model, stride=2)
    assert full["final_eval_shape"] == [2, 24, 32] and full["heldout_stride"] == 1
    assert strided["final_eval_shape"] == [2, 12, 16] and strided["heldout_size"] == [12, 16]
    assert strided["heldout_stride"] == 2 and strided["heldout_views"] == [0, 8]

    direct = {v: task.render_view(model, task.poses[v], render_factor=2) for v in task.test_ids}
    renders = task.test_renders(model, stride=2)
    for v in task.test_ids:
        assert_same_render(renders[v], direct[v])
    truth = {v: task.scene.images[v][::2, ::2] for v in task.test_ids}
    scores = ir.score_views({v: ir.to_uint8(r.rgb).astype(np.float32) / 255 for v, r in direct.items()}, truth)
    np.testing.assert_allclose(strided["psnr_heldout_per_view"], scores.psnr, atol=1e-3)
    np.testing.assert_allclose(strided["ssim_heldout_per_view"], scores.ssim, atol=1e-4)
    # the strided derivative render is the full one's strided pixels, scored against the full Sobel's
    gradients, full_gradients = task.test_gradients(model, 2), task.test_gradients(model, 1)
    for v in task.test_ids:
        torch.testing.assert_close(gradients[v], full_gradients[v][::2, ::2], rtol=1e-5, atol=1e-6)
    assert abs(strided["psnr_der_heldout"] - full["psnr_der_heldout"]) < 3.0  # an estimate of the same score


TINY = ["--netwidth", "16", "--N_samples", "8", "--N_rand", "64", "--eval_rays", "32", "--chunk", "64",
        "--llff_factor", "2", "--factor", "2", "--N_iters", "2"]


def test_strided_final_evaluation_run_shows_progress_and_records_what_was_scored(scene_dir, tmp_path, capsys):
    config = TASK_DIR / "configs/synthetic/val_der/relu.txt"
    metrics = TRAIN.main(["--config", str(config), *TINY, "--datadir", str(scene_dir), "--basedir", str(tmp_path),
                          "--expname", "strided", "--final_eval_stride", "2"])
    bars = capsys.readouterr().err
    assert "test renders" in bars and "derivative renders" in bars and "ray/s" in bars
    run = tmp_path / "strided"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["final_eval_stride"] == 2 and saved["final_eval_skipped"] is False
    assert saved["final_eval_shape"] == [2, 6, 8] and saved["heldout_size"] == [6, 8]  # the 12x16 views, every 2nd
    assert np.isfinite(saved["psnr_heldout"]) and np.isfinite(saved["psnr_der_heldout"])
    assert metrics["psnr_heldout"] == saved["psnr_heldout"]
    assert sorted(p.name for p in (run / "testset_000002_stride2").glob("???.png")) == ["000.png", "008.png"]
    assert not (run / "testset_000002").exists()  # no full render at the end: eval.py renders it when asked
    log = (run / "log.txt").read_text()
    for phase in ("test renders (2 views of 6x8): ", "derivative renders (2 views of 6x8): ", "final evaluation: ",
                  "outputs: "):
        assert phase in log, phase
    assert log.count("test renders (") == 1  # the figures reuse the final evaluation's renders
    # eval.py renders the test views whole and replaces the strided scores
    scores = EVAL.main(["--config", str(config), *TINY, "--datadir", str(scene_dir), "--basedir", str(tmp_path),
                        "--expname", "strided", "--no_progress"])
    assert "test renders (2 views of 12x16): " in capsys.readouterr().out
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["heldout_size"] == [12, 16] and saved["heldout_stride"] == 1 == scores["heldout_stride"]
    assert saved["psnr_heldout"] == scores["psnr_heldout"] and saved["final_eval_stride"] == 2
    assert (run / "testset_000002" / "score.txt").is_file()
    # --render_only: the spiral (and --render_test the test views) with bars and phase lines
    common = ["--config", str(config), *TINY, "--datadir", str(scene_dir), "--basedir", str(tmp_path),
              "--expname", "strided", "--render_only", "--render_factor", "2"]
    TRAIN.main(common)
    TRAIN.main(common + ["--render_test"])
    out, bars = capsys.readouterr()
    frames = len(ir.load_task(ir.InverseRenderingOptions.from_config(json.loads((run / "config.json").read_text())),
                              torch.device("cpu"), run).scene.render_poses)
    assert f"spiral video ({frames} frames of 6x8): " in out and "test renders (2 views of 12x16): " in out
    assert "spiral video: " in bars and "test renders: " in bars and "ray" in bars
    assert list((run / "renderonly_path_000002").glob("rgb.*"))
    assert (run / "renderonly_test_000002" / "008.png").is_file()


def test_smoke_run_of_an_original_config_renders_nothing_at_its_end(scene_dir, tmp_path, monkeypatch):
    """The original config's cadences (i_img 500, i_testset 50k, i_video 400k) fire nothing at step 2, and
    --skip_final_eval neither scores nor writes outputs: metrics.json holds the last summary's evaluation."""
    def forbidden(*args, **kwargs):
        raise AssertionError("rendered at the end of a smoke run")

    for name in ("final_metrics", "write_outputs", "write_testset", "write_video", "write_progress"):
        monkeypatch.setattr(ir.InverseRendering, name, forbidden)
    config = TASK_DIR / "configs/fern/val_der/sine.txt"
    metrics = TRAIN.main(["--config", str(config), *TINY, "--datadir", str(scene_dir), "--basedir", str(tmp_path),
                          "--expname", "smoke", "--skip_final_eval", "--no_progress"])
    assert metrics["steps"] == 2 and metrics["final_eval_skipped"] is True
    assert np.isfinite(metrics["psnr_heldout_rays"]) and "psnr_heldout" not in metrics
    run = tmp_path / "smoke"
    assert json.loads((run / "metrics.json").read_text())["final_eval_skipped"] is True
    assert not list(run.glob("testset_*")) and not (run / "progress.png").exists()
    assert "final evaluation skipped" in (run / "log.txt").read_text()


MEMORY_SCRIPT = textwrap.dedent("""
    import gc, json, sys
    import torch
    from sobolev_inr.data.scenes import load_llff
    from sobolev_inr.models.nerf import tiny_nerf
    from sobolev_inr.tasks import inverse_rendering as ir
    from sobolev_inr.training.memory import current_rss_mb, peak_rss_mb, reset_peak_rss

    torch.set_num_threads(1)
    scene = load_llff(sys.argv[1], 1)
    train_ids, test_ids = scene.split(8)
    model = tiny_nerf(["relu", "relu", "relu"], netwidth=32, multires=4).eval()

    def render(chunk, netchunk):
        task = ir.InverseRendering(scene, train_ids, test_ids, stride=4, eval_rays=0,
                                   render=ir.RenderOptions(num_samples=32, chunk=chunk, netchunk=netchunk))
        return task.render_view(model, task.poses[0], render_factor=0.2)  # 120x160 = 19,200 rays

    render(512, 4096)  # warm up (torch's lazily allocated state, the allocator's arenas) at the small chunk
    increase = {}
    for name, chunk, netchunk in (("small", 512, 4096), ("large", 10 ** 9, 10 ** 9)):
        gc.collect()
        if not reset_peak_rss():
            print(json.dumps(None)); sys.exit()
        before = current_rss_mb()
        out = render(chunk, netchunk)
        increase[name] = peak_rss_mb() - before
        del out
    print(json.dumps(increase))
""")


def test_render_chunks_bound_the_memory(scene_dir):
    """A 120x160 view with 32 samples per ray (614,400 points through a 3x32 network) in a fresh process: with
    512-ray chunks and 4,096-point network chunks the peak resident memory grows by under 8 MB (a chunk's points,
    samples and activations take about 2 MB, the view's rays and outputs 1 MB; measured 0.1 to 1.8 MB), under a
    fifth of what one chunk for the whole view adds (its activations alone are 79 MB a layer; measured 232 MB)."""
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(scene_dir)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    increase = json.loads(proc.stdout.strip().splitlines()[-1])
    if increase is None:
        pytest.skip("the peak resident memory cannot be reset here (/proc/self/clear_refs, Linux only)")
    assert increase["large"] > 100, increase
    assert increase["small"] < 8 and increase["small"] < increase["large"] / 5, increase
