"""Big inputs for the SDF, video and image-editing tasks (issue 25): chunked evaluation equals unchunked, blocked
training equals unblocked, ``final_metrics(stride=k)`` scores the subsampled grid it says (``final_eval_shape``)
and the outputs reuse its evaluation; the SDF memory knobs bound the peak memory measured in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sobolev_inr.config.options import MemoryOptions
from sobolev_inr.models.mlp import MLP
from sobolev_inr.training.loop import take_step

UNBLOCKED = MemoryOptions(block_size=0, max_memory_gb=0)
pytestmark = pytest.mark.usefixtures("one_thread")  # small fits: one thread is faster on shared cores


def _twin_models(in_features: int, out_features: int, width: int = 16):
    """Two identical small SIRENs (the same initial weights)."""
    torch.manual_seed(0)
    a = MLP(in_features, out_features, ["sine"] * 3, hidden_features=width)
    b = MLP(in_features, out_features, ["sine"] * 3, hidden_features=width)
    b.load_state_dict(a.state_dict())
    return a, b


def _train(task, model, steps: int = 3, lrate: float = 1e-3):
    """``steps`` Adam steps over ``task``'s batches (drawn from a seeded generator), as ``fit`` takes them:
    through ``loss_blocks``; returns each step's terms."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lrate)
    params = list(model.parameters())
    generator = torch.Generator().manual_seed(0)
    history = []
    while len(history) < steps:
        for batch in task.train_batches(generator):
            terms, _, applied = take_step(optimizer, params, lambda: task.loss_blocks(model, batch))
            assert applied
            history.append({k: float(v) for k, v in terms.items()})
            if len(history) == steps:
                break
    return history


def _assert_same_parameters(a: nn.Module, b: nn.Module, atol: float = 1e-5):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=atol, rtol=1e-4, msg=name)


def _peak_growth_mb(script: str) -> dict:
    """Runs ``script`` (which prints one JSON line) in a fresh interpreter, one thread; its parsed output."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=120, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _clear_refs_writable() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


needs_clear_refs = pytest.mark.skipif(not _clear_refs_writable(), reason="the peak RSS cannot be reset here "
                                      "(/proc/self/clear_refs is not writable: not Linux, or a sandbox forbids it)")


# ---------------------------------------------------------------------------------------------------------- SDF
class SphereSDF(nn.Module):
    """Phi(x) = |x| - radius: an exact SDF (so that the grid has a surface), not an MLP."""

    def __init__(self, radius: float = 0.5):
        super().__init__()
        self.radius = radius

    def forward(self, x):
        return x.norm(dim=-1, keepdim=True) - self.radius


def _sdf_task(num_points: int = 2000, **kwargs):
    from sobolev_inr.geometry.pointclouds import load_point_cloud, normalise_cloud
    from sobolev_inr.tasks.sdf import SDFFitting

    cloud = normalise_cloud(load_point_cloud("shape:sphere", num_points))
    return SDFFitting(cloud, "val_der", **kwargs)


class TestSDF:
    def test_grid_in_small_chunks_equals_one_chunk(self):
        from sobolev_inr.geometry.meshing import evaluate_grid, grid_points

        model, _ = _twin_models(3, 1)
        whole = evaluate_grid(model, 11, chunk_size=11 ** 3)
        chunked = evaluate_grid(model, 11, chunk_size=37)  # chunks across x-slabs, a partial last one
        np.testing.assert_allclose(chunked, whole, atol=1e-6)
        with torch.no_grad():
            direct = model(torch.from_numpy(grid_points(11)).float())[:, 0].numpy().reshape(11, 11, 11)
        np.testing.assert_allclose(whole, direct, atol=1e-6)
        small, big = _sdf_task(mc_resolution=11, eval_chunk_size=37), _sdf_task(mc_resolution=11)
        np.testing.assert_allclose(small.grid(model), big.grid(model), atol=1e-6)

    def test_loss_blocks_sum_to_the_loss_and_blocked_training_matches(self):
        model, twin = _twin_models(3, 1)
        blocked = _sdf_task(400, batch_size=200, memory=MemoryOptions(block_size=64))
        whole = _sdf_task(400, batch_size=200, memory=UNBLOCKED)
        batch = next(iter(whole.train_batches(torch.Generator().manual_seed(1))))
        from sobolev_inr.training.progress import Progress

        lines = []
        blocked.progress = Progress(log=lines.append)
        blocks = list(blocked.loss_blocks(model, batch))
        assert lines == ["training steps in 7 blocks of 64 points (block_size 64)"]
        assert len(blocks) == 7  # 200 on + 200 off points, 32 + 32 per block: 6 full, 1 of 8 + 8
        loss = whole.loss(model, batch)
        assert set(blocks[0]) == set(loss) == {"sdf", "inter", "normal", "grad", "total"}
        for name, value in loss.items():
            torch.testing.assert_close(sum(b[name] for b in blocks), value, atol=1e-5, rtol=1e-5)
        assert len(list(whole.loss_blocks(model, batch))) == 1
        history_blocked, history_whole = _train(blocked, model), _train(whole, twin)
        for a, b in zip(history_blocked, history_whole):
            assert a["total"] == pytest.approx(b["total"], rel=1e-4)
        _assert_same_parameters(model, twin)

    def test_max_memory_gb_sizes_the_blocks_from_the_probe(self):
        model, _ = _twin_models(3, 1, width=32)
        task = _sdf_task(4000, memory=MemoryOptions(max_memory_gb=1e-4))  # ~100 kB: a few hundred points
        batch = next(iter(task.train_batches(torch.Generator().manual_seed(0))))
        points = task.block_points(model, batch)
        from sobolev_inr.tasks.sdf.task import BLOCK_HEADROOM
        from sobolev_inr.training.memory import GB, bytes_per_sample

        per_point = bytes_per_sample(lambda n: task._terms(model, batch.index[:n // 2], batch.off_surface[:n // 2])
                                     ["total"])
        assert points == int(1e-4 * GB / (per_point * BLOCK_HEADROOM)) and 8 < points < 4000
        assert len(list(task.loss_blocks(model, batch))) == -(-4000 // (points // 2))

    def test_final_eval_stride_scores_every_other_grid_point_and_outputs_reuse_the_grid(self, tmp_path, monkeypatch):
        from sobolev_inr.geometry import meshing
        from sobolev_inr.geometry.metrics import chamfer_l1, normal_consistency, occupancy_iou, sdf_error
        from sobolev_inr.geometry.pointclouds import sample_mesh
        from sobolev_inr.tasks.sdf import task as sdf_module

        task = _sdf_task(3000, mc_resolution=21)
        model = SphereSDF(0.5)
        calls = []
        monkeypatch.setattr(sdf_module, "evaluate_grid", lambda *a, **k: calls.append(k) or meshing.evaluate_grid(
            *a, **k))
        metrics = task.final_metrics(model, stride=2)
        assert metrics["final_eval_shape"] == [11, 11, 11] and metrics["final_eval_points"] == 1500
        # The same numbers, computed directly on every other point of the full grid and of the point sets.
        full = meshing.evaluate_grid(model, 21)
        np.testing.assert_array_equal(task.grid(model, 2), full[::2, ::2, ::2])
        verts, faces = meshing.marching_cubes(full, stride=2)
        assert (metrics["mesh_vertices"], metrics["mesh_faces"]) == (len(verts), len(faces))
        rows = task.metric_rows[::2]
        points = task.cloud.points[rows]
        samples, normals = sample_mesh(verts, faces, len(rows), np.random.default_rng(0))
        assert metrics["chamfer_l1"] == pytest.approx(chamfer_l1(samples, points), rel=1e-9)
        assert metrics["normal_consistency"] == pytest.approx(
            normal_consistency(points, task.cloud.normals[rows], samples, normals), rel=1e-9)
        true = task.cloud.true_sdf(meshing.grid_points(21, stride=2))
        assert metrics["iou"] == pytest.approx(occupancy_iou(full[::2, ::2, ::2].reshape(-1), true), rel=1e-12)
        phi = np.linalg.norm(task.uniform[::2].astype(np.float64), axis=1) - 0.5
        assert metrics["sdf_error_uniform"] == pytest.approx(sdf_error(phi, task.uniform_sdf[::2]), rel=1e-5)
        assert len(calls) == 1
        # The outputs mesh the grid the metrics scored: Phi is not evaluated on a grid again.
        task.write_outputs(model, tmp_path, {**metrics, "final_eval_stride": 2})
        assert len(calls) == 1 and (tmp_path / "mesh.ply").is_file() and (tmp_path / "shape.png").is_file()
        # A stride that leaves a single grid point per axis says so.
        from sobolev_inr.errors import ConfigError

        with pytest.raises(ConfigError, match="final_eval_stride 21 leaves 1 point"):
            task.final_metrics(model, stride=21)

    @needs_clear_refs
    def test_the_memory_knobs_bound_the_peak_memory(self):
        """Peak RSS growth (a subprocess, the peak reset before each measurement): the grid in chunks of 1,024
        points stays under 32 MB (one chunk's activations are 1 MB a layer, the grid 0.3 MB; the rest is the
        allocator's and the interpreter's noise, seen up to 13 MB) against about 250 MB for the grid in one chunk;
        a training step of 16,384 points under max_memory_gb = 0.02 grows by at most the budget plus 8 MB (index
        tensors, allocator slack), against over 100 MB unblocked."""
        growth = _peak_growth_mb("""
            import json
            import torch
            from sobolev_inr.config.options import MemoryOptions
            from sobolev_inr.geometry.meshing import evaluate_grid
            from sobolev_inr.geometry.pointclouds import load_point_cloud, normalise_cloud
            from sobolev_inr.models.mlp import MLP
            from sobolev_inr.tasks.sdf import SDFFitting
            from sobolev_inr.training import memory
            from sobolev_inr.training.loop import take_step

            torch.set_num_threads(1)
            torch.manual_seed(0)
            out = {}
            model = MLP(3, 1, ["sine"] * 3, hidden_features=256)
            for name, chunk in (("grid_small", 1024), ("grid_big", 40 ** 3)):
                evaluate_grid(model, 6, chunk)
                base = memory.current_rss_mb()
                memory.reset_peak_rss()
                evaluate_grid(model, 40, chunk)
                out[name] = memory.peak_rss_mb() - base
            cloud = normalise_cloud(load_point_cloud("shape:sphere", 8192))
            model = MLP(3, 1, ["sine"] * 3, hidden_features=128)
            optimizer = torch.optim.Adam(model.parameters(), 1e-4)
            params = list(model.parameters())
            for name, options in (("step_budget", MemoryOptions(max_memory_gb=0.02)),
                                  ("step_whole", MemoryOptions(block_size=0, max_memory_gb=0))):
                task = SDFFitting(cloud, "val_der", memory=options)
                batch = next(iter(task.train_batches(torch.Generator().manual_seed(0))))
                task.block_points(model, batch)  # the probe, before the measurement
                warm_up = type(batch)(batch.index[:256], batch.off_surface[:256])  # autograd's and Adam's first use
                take_step(optimizer, params, lambda: task.loss_blocks(model, warm_up))
                base = memory.current_rss_mb()
                memory.reset_peak_rss()
                take_step(optimizer, params, lambda: task.loss_blocks(model, batch))
                out[name] = memory.peak_rss_mb() - base
            print(json.dumps(out))
        """)
        assert growth["grid_small"] < 32, growth
        assert growth["grid_big"] > 5 * max(growth["grid_small"], 4), growth
        assert growth["step_budget"] < 0.02 * 1024 + 8, growth
        assert growth["step_whole"] > 3 * growth["step_budget"], growth


# -------------------------------------------------------------------------------------------------------- video
def _video_task(time_factor: int = 2, space_factor: int = 1, **kwargs):
    from sobolev_inr.data.video import prepare_video, synthetic_clip
    from sobolev_inr.tasks.video_regression.task import VideoRegression

    frames = synthetic_clip(5, 13) * 2 - 1  # 5 frames of 13 x 13: odd, so a stride of 2 keeps 7 x 7
    data = prepare_video(frames, time_factor, space_factor)
    return VideoRegression(data, supervision="val_der", **kwargs)


class TestVideo:
    def test_renders_in_small_chunks_equal_one_chunk(self):
        model, _ = _twin_models(3, 3)
        small, big = _video_task(eval_chunk_size=7), _video_task(eval_chunk_size=10 ** 6)
        torch.testing.assert_close(small.render(model), big.render(model), atol=1e-6, rtol=0)
        torch.testing.assert_close(small.render_gradient(model), big.render_gradient(model), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(small.render(model, 2), big.render(model)[..., ::2, ::2], atol=1e-6, rtol=0)

    def test_blocked_training_matches_the_full_batch(self):
        model, twin = _twin_models(3, 3)
        blocked, whole = _video_task(memory=MemoryOptions(block_size=150)), _video_task(memory=UNBLOCKED)
        assert len(list(blocked.loss_blocks(model, None))) == 4  # 3 frames of 13 x 13 = 507 samples
        _train(blocked, model)
        _train(whole, twin)
        _assert_same_parameters(model, twin)

    def test_final_eval_stride_scores_every_other_pixel_of_every_frame_and_outputs_reuse_the_render(
            self, tmp_path, monkeypatch):
        from sobolev_inr.data.coords import derivative_scale
        from sobolev_inr.metrics import derivative_psnr, frame_quality, psnr, to_unit_range
        from sobolev_inr.tasks.regression import predict_jacobian
        from sobolev_inr.tasks.video_regression import task as video_module

        task = _video_task(space_factor=2)
        model, _ = _twin_models(3, 3)
        metrics = task.final_metrics(model, stride=2)
        assert metrics["final_eval_shape"] == [5, 7, 7]
        # Directly: the network at every other pixel of every frame, against the frames and targets there.
        coords = task.data.coords.view(5, 13, 13, 3)[:, ::2, ::2]
        with torch.no_grad():
            pred = model(coords.reshape(-1, 3)).reshape(5, 7, 7, 3).permute(0, 3, 1, 2)
        target = task.data.frames[..., ::2, ::2]
        assert metrics["psnr_full"] == pytest.approx(psnr(to_unit_range(pred), to_unit_range(target)), abs=1e-4)
        quality = frame_quality(pred, target)
        np.testing.assert_allclose(metrics["psnr_per_frame"], quality["psnr"], atol=1e-4)
        np.testing.assert_allclose(metrics["ssim_per_frame"], quality["ssim"], atol=1e-5)
        assert metrics["psnr_heldout_frames"] == pytest.approx(np.mean([quality["psnr"][k] for k in (1, 3)]), abs=1e-4)
        mask = task.data.heldout[:, ::2, ::2]
        assert metrics["num_heldout_samples"] == int(mask.sum()) == 2 * 49  # frames 1 and 3: the kept pixels
        scale = derivative_scale(task.data.derivative_step, "pixel")
        jac = predict_jacobian(model, coords.reshape(-1, 3), scale).reshape(5, 7, 7, 3, 3).permute(0, 3, 4, 1, 2)
        assert metrics["psnr_der_full"] == pytest.approx(derivative_psnr(jac, task.data.gradient[..., ::2, ::2]),
                                                         abs=1e-4)
        # The outputs draw that render: the network is not queried again.
        calls = []
        monkeypatch.setattr(video_module, "predict", lambda *a, **k: calls.append(1))
        monkeypatch.setattr(video_module, "predict_jacobian", lambda *a, **k: calls.append(1))
        task.write_outputs(model, tmp_path, {**metrics, "final_eval_stride": 2})
        assert not calls and np.load(tmp_path / "reconstruction.npy").shape == (5, 7, 7, 3)

    def test_a_stride_that_scores_training_pixels_only_is_refused(self):
        from sobolev_inr.errors import ConfigError

        task = _video_task(time_factor=1, space_factor=2)
        with pytest.raises(ConfigError, match="multiple of space_factor = 2"):
            task.final_metrics(_twin_models(3, 3)[0], stride=4)
        with pytest.raises(ConfigError, match="frames of 3x3 pixels"):  # SSIM's window needs 6
            _video_task().final_metrics(_twin_models(3, 3)[0], stride=5)

    def test_a_part_of_a_long_clip_reads_only_its_frames(self, tmp_path, monkeypatch):
        """first_frame / num_frames: only those files of a folder are opened, and the frames equal the slice of
        the whole clip (one float32 clip, mapped to [-1, 1] in place)."""
        import imageio.v3 as iio
        from PIL import Image

        from sobolev_inr.data import video as video_data

        frames = (np.random.default_rng(0).uniform(size=(9, 8, 10, 3)) * 255).astype(np.uint8)
        for k, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp_path / f"frame{k}.png")
        whole = video_data.load_video(str(tmp_path))
        torch.testing.assert_close(whole.frames, torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 * 2 - 1)
        opened = []
        original = video_data.open_image
        monkeypatch.setattr(video_data, "open_image", lambda path: opened.append(path.name) or original(path))
        part = video_data.load_video(str(tmp_path), first_frame=3, num_frames=4)
        assert opened == [f"frame{k}.png" for k in range(3, 7)]
        assert torch.equal(part.frames, whole.frames[3:7]) and part.notes[-1] == "frames 3 to 6 of 9"
        iio.imwrite(tmp_path / "clip.gif", frames, duration=80, loop=0)
        gif = video_data.load_video(str(tmp_path / "clip.gif"), first_frame=2, num_frames=3)
        assert gif.frames.shape == (3, 3, 8, 10) and gif.notes[-1] == "frames 2 to 4"  # the rest is not decoded


# ----------------------------------------------------------------------------------------------- image editing
def _images(size: int = 13):
    """Two smooth RGB images (3, size, size) in [-1, 1]."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    a = torch.stack([torch.sin(3 * x), torch.cos(2 * y), torch.sin(2 * x * y)]) * 0.8
    b = torch.stack([torch.cos(3 * y), torch.sin(2 * x + y), torch.cos(x - y)]) * 0.8
    return a, b


def _composite(**kwargs):
    from sobolev_inr.data.targets import image_gradient
    from sobolev_inr.tasks.image_editing.task import GradientComposite

    a, b = _images()
    return GradientComposite(a, b, image_gradient(a, "sobel"), image_gradient(b, "sobel"), 0.3, **kwargs)


def _clone(**kwargs):
    from sobolev_inr.tasks.image_editing.task import SeamlessCloning, edit_mask

    target, source = _images()
    return SeamlessCloning(target, source, edit_mask("ellipse", (0.1, 0.0), (0.5, 0.4), 13, 13), (1, -1),
                           lambda_der=3.0, **kwargs)


EDITS = {"composite": _composite, "clone": _clone}


class TestImageEditing:
    @pytest.mark.parametrize("edit", sorted(EDITS))
    def test_renders_in_small_chunks_equal_one_chunk(self, edit):
        model, _ = _twin_models(2, 3)
        small, big = EDITS[edit](eval_chunk_size=7), EDITS[edit](eval_chunk_size=10 ** 6)
        torch.testing.assert_close(small.render(model), big.render(model), atol=1e-6, rtol=0)
        torch.testing.assert_close(small.render_gradient(model), big.render_gradient(model), atol=1e-5, rtol=1e-5)
        assert small.final_metrics(model) == pytest.approx(big.final_metrics(model), rel=1e-5)

    @pytest.mark.parametrize("edit", sorted(EDITS))
    def test_blocked_training_matches_the_full_batch(self, edit):
        model, twin = _twin_models(2, 3)
        blocked, whole = EDITS[edit](memory=MemoryOptions(block_size=50)), EDITS[edit](memory=UNBLOCKED)
        blocks, loss = list(blocked.loss_blocks(model, None)), whole.loss(model, None)
        assert len(blocks) == 4  # 169 pixels
        for name, value in loss.items():
            torch.testing.assert_close(sum(b[name] for b in blocks), value, atol=1e-6, rtol=1e-5)
        _train(blocked, model)
        _train(whole, twin)
        _assert_same_parameters(model, twin)

    def test_final_eval_stride_of_the_clone_scores_every_other_pixel(self, tmp_path, monkeypatch):
        from sobolev_inr.data.coords import derivative_scale
        from sobolev_inr.metrics import derivative_psnr, psnr, rho_ag, to_unit_range
        from sobolev_inr.tasks.image_regression import task as image_module
        from sobolev_inr.tasks.regression import predict_jacobian

        task, (model, _) = _clone(), _twin_models(2, 3)
        metrics = task.final_metrics(model, stride=2)
        assert metrics["final_eval_shape"] == [7, 7] and metrics["mask_pixels"] == int(task.mask.sum())
        coords = task.eval_coords.view(13, 13, 2)[::2, ::2].reshape(-1, 2)
        with torch.no_grad():
            pred = model(coords).T.reshape(3, 7, 7)
        grad = predict_jacobian(model, coords, derivative_scale(task.data.pixel_step, "pixel"))
        grad = grad.permute(1, 2, 0).reshape(3, 2, 7, 7)
        mask, target, guidance = task.mask[::2, ::2], task.data.image[:, ::2, ::2], task.data.gradient[..., ::2, ::2]
        assert metrics["psnr_outside"] == pytest.approx(
            psnr(to_unit_range(pred[:, ~mask]), to_unit_range(target[:, ~mask])), abs=1e-4)
        assert metrics["psnr_grad_inside"] == pytest.approx(derivative_psnr(grad[..., mask], guidance[..., mask]),
                                                            abs=1e-4)
        assert metrics["psnr_grad_outside"] == pytest.approx(derivative_psnr(grad[..., ~mask], guidance[..., ~mask]),
                                                             abs=1e-4)
        assert metrics["rho_ag_full"] == pytest.approx(rho_ag(pred, target), abs=1e-5)
        calls = []
        monkeypatch.setattr(image_module, "predict", lambda *a, **k: calls.append(1))
        monkeypatch.setattr(image_module, "predict_jacobian", lambda *a, **k: calls.append(1))
        task.write_outputs(model, tmp_path, {**metrics, "final_eval_stride": 2})
        assert not calls and np.load(tmp_path / "cloned.npy").shape == (7, 7, 3)
        from sobolev_inr.errors import ConfigError

        with pytest.raises(ConfigError, match="inside and outside"):
            task.final_metrics(model, stride=13)

    def test_final_eval_stride_of_the_composite_scores_every_other_pixel(self, tmp_path):
        from sobolev_inr.metrics import derivative_psnr, poisson_image_psnrs, remove_offset, rho_ag

        task, (model, _) = _composite(), _twin_models(2, 3)
        metrics = task.final_metrics(model, stride=2)
        assert metrics["final_eval_shape"] == [7, 7]
        full, grad = task.render(model), task.render_gradient(model)
        pred, target = full[:, ::2, ::2], task.data.image[:, ::2, ::2]
        assert metrics["psnr_grad_full"] == pytest.approx(
            derivative_psnr(grad[..., ::2, ::2], task.data.gradient[..., ::2, ::2]), abs=1e-4)
        assert metrics["psnr_offset_full"] == pytest.approx(poisson_image_psnrs(pred, target)["psnr_offset"], abs=1e-4)
        assert metrics["rho_ag_full"] == pytest.approx(rho_ag(remove_offset(pred, target), target), abs=1e-5)
        np.testing.assert_allclose(metrics["offset"], (remove_offset(pred, target) - pred)[:, 0, 0], atol=1e-5)
        task.write_outputs(model, tmp_path, {**metrics, "final_eval_stride": 2})
        assert np.load(tmp_path / "composite.npy").shape == (7, 7, 3)
