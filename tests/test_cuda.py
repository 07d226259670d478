"""CUDA: the engines against the reference loop, a short fit, and a CUDA run's checkpoint on the CPU.

Marked ``cuda``: they skip with a reason where torch sees no GPU (CI); run them on a GPU machine with
``python -m pytest -m cuda``.
"""
from __future__ import annotations

import json

import pytest
import torch

from sobolev_inr.training.checkpoints import latest_checkpoint, load_checkpoint, load_model
from sobolev_inr.derivatives import (reference_jacobian, reference_tangents, value_and_derivatives,
                                     value_and_tangents)
from sobolev_inr.models import MLP
from task_entry import load_task_main

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


def _relative(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


GRID = dict(levels=4, features=2, table_size=2 ** 10, base_resolution=4, finest_resolution=64,
            interpolation="smoothstep")  # dense coarse levels, hashed fine ones


@pytest.mark.parametrize("activation, encoding", [("sine", "none"), ("relu", "positional"), ("tanh", "fourier"),
                                                  ("finer", "none"), ("gauss", "none"), ("wire", "none"),
                                                  ("sinc", "none"), ("hosc", "none"), ("relu", "grid")])
@pytest.mark.parametrize("engine", ["fused", "autograd"])
@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize("channels", [1, 3])
def test_engines_equal_the_reference_on_cuda(activation, encoding, engine, mode, channels):
    torch.manual_seed(0)
    model = MLP(2, channels, [activation] * 3, hidden_features=64, encoding=encoding, num_frequencies=4,
                fourier_num_features=16, fourier_scale=2.0, grid=GRID if encoding == "grid" else None).to(CUDA)
    x = torch.rand(4096, 2, device=CUDA) * 2 - 1
    scale = torch.tensor([2 / 511, 2 / 511], device=CUDA)
    ref = reference_jacobian(model, x)
    out = value_and_derivatives(model, x, scale=scale, mode=mode, engine=engine)
    assert _relative(out.value, ref.value) < 1e-5
    assert _relative(out.jacobian, ref.jacobian * scale) < 1e-5
    # weight gradients of a loss on value and Jacobian, against the reference's
    target = torch.randn_like(out.jacobian)
    params = list(model.parameters())
    grads = torch.autograd.grad(((out.jacobian - target) ** 2).sum() + out.value.square().sum(), params)
    ref = reference_jacobian(model, x, create_graph=True)
    ref_grads = torch.autograd.grad(((ref.jacobian * scale - target) ** 2).sum() + ref.value.square().sum(), params)
    for g, r in zip(grads, ref_grads):
        assert _relative(g, r) < 1e-4


def test_tangents_of_nerf_points_on_cuda():
    torch.manual_seed(0)
    model = MLP(3, 4, ["relu"] * 4, hidden_features=64, encoding="positional", num_frequencies=10,
                pe_pi_factor=False).to(CUDA)
    x = torch.rand(512, 32, 3, device=CUDA) * 2 - 1
    tangents = torch.randn(2, 512, 32, 3, device=CUDA) * 1e-3
    value, out = value_and_tangents(model, x, tangents)
    ref_value, ref_out = reference_tangents(model, x, tangents)
    assert _relative(value, ref_value) < 1e-5 and _relative(out, ref_out) < 1e-5


@pytest.mark.e2e
def test_short_fit_on_cuda_and_its_checkpoint_on_the_cpu(tiny_gray_png, tmp_path):
    """The same run on the GPU and on the CPU reaches the same quality; the GPU run's checkpoint loads and
    continues on the CPU."""
    main = load_task_main("image_regression")
    common = ["--filename", str(tiny_gray_png), "--hidden_features", "32", "--logging_root", str(tmp_path),
              "--no_progress", "--epochs_til_ckpt", "50", "--lrate", "1e-3", "--factor", "2"]
    metrics = main.main(common + ["--exp_name", "gpu", "--device", "cuda", "--num_epochs", "100"])
    on_cpu = main.main(common + ["--exp_name", "cpu", "--device", "cpu", "--num_epochs", "100"])
    assert metrics["device"].startswith("cuda") and metrics["peak_memory_kind"] == "cuda_max_allocated"
    assert metrics["peak_memory_mb"] > 0 and metrics["time_per_1k_steps_s"] > 0
    # 100 steps fit the 8x8 training pixels (about 54 dB on the CPU); both devices get there
    assert metrics["psnr_train"] > 40 and abs(metrics["psnr_train"] - on_cpu["psnr_train"]) < 3, (metrics, on_cpu)
    assert abs(metrics["psnr_heldout"] - on_cpu["psnr_heldout"]) < 0.5, (metrics, on_cpu)
    ckpt = latest_checkpoint(tmp_path / "gpu" / "checkpoints")
    state = load_checkpoint(ckpt)  # map_location cpu by default
    assert all(t.device.type == "cpu" for t in state["model"].values())
    cpu_model = load_model(ckpt)
    gpu_model = load_model(ckpt, map_location="cuda")
    x = torch.rand(1000, 2) * 2 - 1
    with torch.no_grad():
        assert _relative(cpu_model(x), gpu_model(x.to(CUDA)).cpu()) < 1e-5
    # The run continues on the CPU (the device does not make another run).
    resumed = main.main(common + ["--exp_name", "gpu", "--device", "cpu", "--num_epochs", "120", "--resume"])
    assert resumed["device"] == "cpu" and resumed["steps"] == 120
    saved = json.loads((tmp_path / "gpu" / "metrics.json").read_text())
    assert saved["steps"] == 120


def test_recomputed_tangents_in_blocks_on_cuda():
    """--der_recompute on a GPU: the batch runs in blocks (cpu_blocks.RECOMPUTE_BLOCK_ELEMENTS), same numbers."""
    from sobolev_inr.derivatives.cpu_blocks import row_blocks

    torch.manual_seed(0)
    model = MLP(3, 4, ["relu"] * 3, hidden_features=256, encoding="positional", num_frequencies=10,
                pe_pi_factor=False).to(CUDA)
    x = torch.rand(40000, 3, device=CUDA) * 2 - 1
    tangents = torch.randn(2, 40000, 3, device=CUDA) * 1e-3
    assert len(row_blocks(40000, 256, CUDA, recompute=True)) > 1
    value, out = value_and_tangents(model, x, tangents, recompute_tangents=True)
    ref_value, ref_out = value_and_tangents(model, x, tangents)
    assert torch.equal(value, ref_value) and _relative(out, ref_out) < 1e-6
    params = list(model.parameters())
    grads = torch.autograd.grad(out.square().sum() + value.square().sum(), params)
    ref_grads = torch.autograd.grad(ref_out.square().sum() + ref_value.square().sum(), params)
    for g, r in zip(grads, ref_grads):
        assert _relative(g, r) < 1e-5
