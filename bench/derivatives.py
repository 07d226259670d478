"""Cost of derivative supervision: one training step per method, against the value-only step.

For each case (an RGB image at the Baby protocol size, a gray image at the Bird gray protocol size,
audio at Bach's training size; NeRF steps at the original's shape and at fern_small's, ``nerf-*``, where ``reference`` is the
original's three ``autograd.grad`` calls through the renderer and the modes are forward only),
times one full training step as ``fit()`` takes it (loss, backward, gradient check, Adam) of:

* ``val``: value supervision only (the baseline every ratio refers to);
* ``reference``: the published code's per-channel loop of ``torch.autograd.grad(create_graph=True)``;
* ``forward`` / ``reverse``: this package's fused engine in each mode (``auto`` picks the one marked *);
* ``forward-recompute``: forward mode with ``recompute_tangents`` (the ``--der_recompute`` option: the
  backward pass recomputes the tangents instead of keeping them);
* ``directional``: not the exact Jacobian but its loss estimated along one random unit direction per
  sample (``--der_estimator directional``: one forward tangent instead of D; the directions are drawn in
  the step, as training draws them);
* ``fraction``: the exact derivative term on a random quarter of the samples, the value on all
  (``--der_fraction 0.25``, auto mode; the rows are drawn in the step);
* ``forward-autograd`` / ``reverse-autograd``: the same modes in plain autograd (the engine before
  the fused one, kept for the Laplacian and for models other than MLP);
* ``forward-func`` (with ``--methods all``): torch.func, ``vmap`` of ``jvp`` over the D directions;
* with ``--compile``: ``val-compiled``, the value step under ``torch.compile``, and
  ``forward-autograd-compiled``, the explicit tangent pass (``MLP.jet``) and its loss under
  ``torch.compile``, whose elementwise work inductor fuses.

The Laplacian cases (``gray128-lapl``, ``gray256-lapl``: the gray camera image resized to 128x128 and
256x256, full batch, SIREN 4x256, the ``lapl`` loss against the 5-point Laplacian per pixel step) time:

* ``val``: the value step (the baseline);
* ``nested``: SIREN's ``diff_operators.laplace``, the gradient by ``autograd.grad(create_graph=True)``
  and its divergence by one more such call per axis;
* ``jet-peer``: the collapsed Taylor-mode Laplacian of jet-for-pytorch, vmapped over the batch, imported
  from its wheel (``JET_WHEEL_GLOB``; it needs Python >= 3.12 and is reported "not available: <reason>"
  where it cannot run);
* ``lapl-autograd``: this package's forward Laplacian in plain autograd (``MLP.laplacian``);
* ``lapl``: the fused forward Laplacian (what ``value_and_derivatives(..., laplacian=True)`` runs).

Their check compares every Laplacian with ``reference_laplacian`` (float32, relative error <= 1e-4), and
the table ends with the goals of the fused step: <= 3x the value step, >= 2.5x faster than ``nested``,
faster than the peer, peak memory <= 2.5x the value step's.

Before timing anything it checks every method's Jacobian against the reference loop (float32,
relative error = max |ours - ref| / max |ref| <= 1e-5) and stops if one differs. Each method steps in
its own worker process (its memory allocator then settles as in a training run); in each round every
method takes a block of consecutive steps while the others wait (so that drifting load falls on all
of them alike), and the median over all timed steps is reported. Peak memory of a step: on CPU, each (case, method) runs in its own subprocess
(setup, one warm-up step, then peak RSS during one step minus the RSS before it; glibc is told to
return freed blocks to the system, ``MALLOC_MMAP_THRESHOLD_``, so that RSS follows the live tensors);
on CUDA, ``torch.cuda.max_memory_allocated`` minus the allocation before the step.

    python bench/derivatives.py --cases rgb-siren rgb-relu-pe gray-siren gray-relu-pe   # images
    python bench/derivatives.py --cases audio-siren                                   # audio
    python bench/derivatives.py --cases nerf-relu-cpu nerf-sine-cpu nerf-relu nerf-sine   # inverse rendering
    python bench/derivatives.py --cases rgb-siren --threads 1 --methods all --compile
    python bench/derivatives.py --cases gray128-lapl gray256-lapl                     # Laplacian
    python bench/derivatives.py --cases gray-finer gray-gauss gray-wire gray-sinc gray-hosc gray-grid  # families

Prints a table and writes JSON to ``bench/results/derivatives_<device>_<threads>threads[_<cases>].json``
(``--out``). All cases take about 15 minutes on a loaded 2-core CPU; run the image cases and the audio
case as two commands to stay under 8 minutes each.
Benchmarks print; tests assert: nothing here fails on a timing.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sobolev_inr.data.coords import derivative_scale  # noqa: E402
from sobolev_inr.data.images import load_image, prepare_image, resize_image  # noqa: E402
from sobolev_inr.derivatives import (choose_mode, reference_jacobian, reference_laplacian,  # noqa: E402
                                     value_and_derivatives)
from sobolev_inr.config.options import EngineOptions, SupervisionOptions  # noqa: E402
from sobolev_inr.data.targets import image_laplacian  # noqa: E402
from sobolev_inr.losses.sobolev import sobolev_loss  # noqa: E402
from sobolev_inr.models import MLP, nyquist_num_frequencies  # noqa: E402
from sobolev_inr.tasks.regression import SobolevRegression  # noqa: E402
from sobolev_inr.training.loop import take_step  # noqa: E402
from common import machine_line, machine_record  # noqa: E402  (bench/common.py)

TOLERANCE = 1e-5  # float32 relative error of the Jacobian against the reference loop
BASE_METHODS = ("val", "reference", "forward", "forward-recompute", "reverse", "forward-autograd", "reverse-autograd",
                "directional", "fraction")
EXTRA_METHODS = ("forward-func",)
COMPILED_METHODS = ("val-compiled", "forward-autograd-compiled")


# ------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    name: str
    description: str
    activation: str
    encoding: str
    build: Optional[Callable[[], Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]]
    """-> coords (N, D), values (N, C), jacobian targets (N, C, D) per step, scale (D,)."""
    num_frequencies: int = 4
    w0: float = 30.0
    layers: int = 4
    width: int = 256
    grid: Optional[Dict[str, object]] = None
    """The grid encoding's settings (``encoding = "grid"``), as ``MLP(grid=...)`` takes them."""


def _image(filename: str, size: Optional[int], gray: bool):
    image, source, _ = load_image(filename, is_gray=gray)
    if size is not None and image.shape[-1] != size:
        image = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(-1, 1)
    data = prepare_image(image, factor=4, source=source)
    scale = derivative_scale(data.derivative_step, "pixel").float()
    return data.train_coords, data.train_values, data.train_jacobian, scale


def _rgb():
    # Baby (Set5) is 512x512 RGB; skimage's astronaut has the same size and ships with the package.
    return _image("skimage:astronaut", 512, gray=False)


def _gray():
    # Bird (Set5) is 288x288, converted to luma; camera resized to that size stands in for it.
    return _image("skimage:camera", 288, gray=True)


def _audio():
    # Bach: 308207 samples, every 5th for training = 61642; a synthetic chirp of that length stands in.
    n = 308207
    t = torch.linspace(-100.0, 100.0, n)
    k = torch.arange(n, dtype=torch.float64) / 44100.0
    signal = (0.6 * torch.sin(2 * math.pi * (220 + 300 * k) * k) + 0.3 * torch.sin(2 * math.pi * 1760 * k)).float()
    signal = signal / signal.abs().max()
    diff = torch.zeros_like(signal)
    diff[1:-1] = (signal[2:] - signal[:-2]) / 2.0  # central differences, per sample step
    idx = torch.arange(0, n, 5)
    step = torch.tensor([200.0 / (n - 1)])
    return t[idx, None], signal[idx, None], diff[idx, None, None], step


CASES: Dict[str, Case] = {
    "rgb-siren": Case("rgb-siren", "RGB image, 128x128 training px (Baby protocol), SIREN 4x256", "sine", "none", _rgb),
    "rgb-relu-pe": Case("rgb-relu-pe", "RGB image, 128x128 training px, ReLU+PE 4x256", "relu", "positional", _rgb,
                        num_frequencies=nyquist_num_frequencies(128)),
    "gray-siren": Case("gray-siren", "gray image, 72x72 training px (Bird gray protocol), SIREN 4x256", "sine",
                       "none", _gray),
    "gray-relu-pe": Case("gray-relu-pe", "gray image, 72x72 training px, ReLU+PE 4x256", "relu", "positional",
                         _gray, num_frequencies=nyquist_num_frequencies(72)),
    "audio-siren": Case("audio-siren", "audio, 61642 training samples (Bach / 5), SIREN 4x256", "sine", "none",
                        _audio),
}

FAMILY_CASES: Dict[str, Case] = {
    **{f"gray-{name}": Case(f"gray-{name}", f"gray image, 72x72 training px (Bird gray protocol), {label} 4x256", name,
                            "none", _gray)
       for name, label in (("finer", "FINER"), ("gauss", "Gauss"), ("wire", "WIRE (real)"), ("sinc", "sinc"),
                           ("hosc", "HOSC"))},
    "gray-grid": Case("gray-grid", "gray image, 72x72 training px, grid encoding (16 levels x 2, 2^19, 16-512, "
                      "smoothstep) + ReLU 2x64", "relu", "grid", _gray, layers=2, width=64,
                      grid=dict(levels=16, features=2, table_size=2 ** 19, base_resolution=16, finest_resolution=512,
                                interpolation="smoothstep")),
}
"""The INR families of issue 26 at the Bird gray protocol's size (``--cases`` them; not in the default run)."""
IMAGE_CASES: Dict[str, Case] = {**CASES, **FAMILY_CASES}


@dataclass
class NerfCase:
    """One training step of the inverse-rendering task: ``rays`` rays x ``samples`` samples through a
    TinyNeRF of ``depth`` x ``width`` (nerf-pytorch's encoding, L = 10), NDC, views of ``size``."""

    name: str
    description: str
    activation: str
    depth: int
    width: int
    rays: int
    samples: int
    size: Tuple[int, int]


NERF_CASES: Dict[str, NerfCase] = {
    "nerf-relu": NerfCase("nerf-relu", "NeRF step at the original's shape: ReLU+PE 8x256, 1024 rays x 128 samples",
                          "relu", 8, 256, 1024, 128, (756, 1008)),
    "nerf-sine": NerfCase("nerf-sine", "NeRF step at the original's shape: SIREN+PE 8x256, 1024 rays x 128 samples",
                          "sine", 8, 256, 1024, 128, (756, 1008)),
    "nerf-relu-cpu": NerfCase("nerf-relu-cpu", "NeRF step at fern_small's shape: ReLU+PE 4x128, 1024 rays x 48 samples",
                              "relu", 4, 128, 1024, 48, (378, 504)),
    "nerf-sine-cpu": NerfCase("nerf-sine-cpu", "NeRF step at fern_small's shape: SIREN+PE 4x128, 1024 rays x 48 samples",
                              "sine", 4, 128, 1024, 48, (378, 504)),
}
NERF_METHODS = ("val", "reference", "forward", "forward-recompute", "forward-autograd")


def build_nerf(case: NerfCase, device: torch.device, method: str = "forward", seed: int = 0):
    """(model, task, batch) for one NeRF step: two random views (one trained on) of a forward-facing camera
    pair, the task's own rays (stride 4) and its loss; the batch is the first ``case.rays`` of a fixed order."""
    from sobolev_inr.data.scenes import LLFFScene
    from sobolev_inr.models.nerf import tiny_nerf
    from sobolev_inr.tasks.inverse_rendering import InverseRendering, RenderOptions

    h, w = case.size
    gen = torch.Generator().manual_seed(seed)
    images = F.avg_pool2d(torch.rand(2, 3, h + 6, w + 6, generator=gen), 7, stride=1).permute(0, 2, 3, 1).numpy()
    poses = np.tile(np.eye(3, 4, dtype=np.float32), (2, 1, 1))
    poses[1, 0, 3] = 0.1
    scene = LLFFScene(images=images, poses=poses, bounds=np.array([[1.33, 20.0]] * 2, np.float32), height=h, width=w,
                      focal=0.8 * w, render_poses=poses, image_paths=[], factor=1, scale=1.0, center_view=0,
                      source_hwf=(h, w, 0.8 * w), datadir=Path("(random views)"))
    mode, _, variant = method.partition("-")
    engine = EngineOptions(der_engine="autograd" if variant == "autograd" else "auto",
                           der_recompute=variant == "recompute")
    task = InverseRendering(scene, [0], [1], stride=4, batch_size=case.rays,
                            render=RenderOptions(num_samples=case.samples),
                            supervision="val" if method == "val" else "val_der", engine=engine, device=device,
                            eval_rays=0)
    torch.manual_seed(seed)
    model = tiny_nerf([case.activation] * case.depth, case.width).to(device)
    index = torch.randperm(len(task.rays), generator=gen)[:case.rays].to(device)
    return model, task, (index, seed)


def make_nerf_step(method: str, model, task, batch):
    """One training step through ``training.take_step``: the task's loss (``reference``: the original's
    three autograd.grad calls, :meth:`~sobolev_inr.tasks.inverse_rendering.InverseRendering.loss_by_autograd`)."""
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=5e-4)
    loss = task.loss_by_autograd if method == "reference" else task.loss

    def step():
        terms, _, applied = take_step(optimizer, params, lambda: loss(model, batch))
        assert applied, f"{method}: non-finite loss"
        return terms["total"]

    return step


NERF_CHECK_RAYS = 128
"""Rays of the timed batch whose derivatives are checked: every ray takes the same code path, and the
reference's graph for a whole batch at the original's shape (about 12 GB for SIREN on the CPU) would stay
in this process's memory while the workers time the methods."""


def check_nerf(case: NerfCase, methods: List[str], device: torch.device) -> Dict[str, float]:
    """Relative error of each method's d rgb / d pixel against the original's autograd way, on the first
    ``NERF_CHECK_RAYS`` rays of the batch; exits if > tolerance."""
    errors = {}
    for method in methods:
        if method in ("val", "reference"):
            continue
        model, task, (rays, *rest) = build_nerf(case, device, method)
        batch = (rays[:NERF_CHECK_RAYS], *rest)
        _, ref = task.jacobian_by_autograd(model, batch)
        ours = task.render_batch(model, batch[0], batch[1], with_tangents=True).rgb_tangents.permute(1, 2, 0)
        errors[method] = ((ours - ref).abs().max() / ref.abs().max()).item()
        if not errors[method] <= TOLERANCE:
            raise SystemExit(f"{case.name}/{method}: d rgb / d pixel relative error {errors[method]:.2e} exceeds "
                             f"{TOLERANCE:.0e} against the original's autograd way; not timing anything")
    return errors


# -------------------------------------------------------------------------------- Laplacian cases
@dataclass
class LaplCase:
    """A ``lapl`` training step (the Laplacian supervised by the 5-point Laplacian of the image, per
    pixel step) on the gray camera image at ``size`` x ``size``, full batch, SIREN 4x256 (w0 = 30)."""

    name: str
    description: str
    size: int
    activation: str = "sine"
    w0: float = 30.0


LAPL_CASES: Dict[str, LaplCase] = {
    "gray128-lapl": LaplCase("gray128-lapl", "lapl step, gray camera 128x128 (full batch), SIREN 4x256", 128),
    "gray256-lapl": LaplCase("gray256-lapl", "lapl step, gray camera 256x256 (full batch), SIREN 4x256", 256),
}
LAPL_METHODS = ("val", "nested", "jet-peer", "lapl-autograd", "lapl")
LAPL_TOLERANCE = 1e-4  # float32 relative error of each method's Laplacian against reference_laplacian
LAPL_GOALS = {"step_x_val": 3.0, "speedup_vs_nested": 2.5, "memory_x_val": 2.5}
JET_WHEEL_GLOB = "/tmp/jet/jet_for_pytorch-*.whl"
"""Where the peer's wheel is looked for (``--jet-wheel`` or the ``JET_WHEEL`` environment variable override it):
``pip download jet-for-pytorch --no-deps --python-version 3.12 --only-binary=:all: -d /tmp/jet``."""


def build_lapl(case: LaplCase, device: torch.device, seed: int = 0):
    """(model, coords (N, 2), values (N, 1), Laplacian target (N, 1) per pixel step squared, scale (2,))."""
    image, source, _ = load_image("skimage:camera", is_gray=True)
    image = resize_image(image, (case.size, case.size))
    data = prepare_image(image, factor=1, source=source)
    target = image_laplacian(image).reshape(image.shape[0], -1).T.contiguous()  # pixel order of data.coords
    scale = derivative_scale(data.derivative_step, "pixel").float()
    torch.manual_seed(seed)
    model = MLP(2, image.shape[0], [case.activation] * 4, hidden_features=256, w0=case.w0)
    return (model.to(device), data.train_coords.to(device), data.train_values.to(device), target.to(device),
            scale.to(device))


def nested_laplacian(model: MLP, x: torch.Tensor, scale: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """SIREN's ``diff_operators.laplace`` in torch: the gradient by ``autograd.grad(create_graph=True)``,
    then its divergence by one ``autograd.grad`` per axis (and per channel), each with a graph.
    Returns value (N, C) and sum_d scale_d^2 d^2 f / d x_d^2 (N, C)."""
    x = x.detach().requires_grad_(True)
    value = model(x)
    columns = []
    for c in range(value.shape[1]):
        (grad,) = torch.autograd.grad(value[:, c], x, torch.ones_like(value[:, c]), create_graph=True)
        grad = grad * scale * scale  # per pixel step, squared
        div = 0.0
        for d in range(x.shape[1]):
            div = div + torch.autograd.grad(grad[:, d], x, torch.ones_like(grad[:, d]), create_graph=True)[0][:, d]
        columns.append(div)
    return value, torch.stack(columns, dim=1)


class PeerUnavailable(RuntimeError):
    """The peer method cannot run here; the message says why (it is reported, not raised to the user)."""


def import_jet_peer():
    """The ``jet`` package of jet-for-pytorch, imported from its wheel (it needs Python >= 3.12)."""
    import glob

    wheel = os.environ.get("JET_WHEEL") or next(iter(sorted(glob.glob(JET_WHEEL_GLOB))), None)
    if wheel is None:
        raise PeerUnavailable(f"no jet-for-pytorch wheel at {JET_WHEEL_GLOB} (see JET_WHEEL_GLOB in bench/derivatives.py)")
    if wheel not in sys.path:
        sys.path.insert(0, wheel)
    try:
        import jet
    except SyntaxError as e:
        raise PeerUnavailable(f"jet-for-pytorch needs Python >= 3.12 ({Path(e.filename or '').name}:{e.lineno} "
                              f"uses newer syntax); this is Python {sys.version.split()[0]}") from None
    except ImportError as e:
        raise PeerUnavailable(f"jet-for-pytorch does not import: {e}") from None
    return jet


def peer_laplacian_fn(model: MLP, scale: torch.Tensor):
    """x (N, D) -> (value (N, C), Laplacian per pixel step (N, C)) by jet-for-pytorch's collapsed Taylor-mode
    Laplacian of one point, vmapped over the batch: the Laplacian of u -> model(scale u) at u = x / scale.
    The value, which the ``lapl`` loss reports but does not optimise, is a forward pass without a graph."""
    jet = import_jet_peer()

    def at_point(u):  # (D,) -> (C,)
        return model((u * scale).unsqueeze(0)).squeeze(0)

    batched = torch.func.vmap(jet.laplacian(at_point, (torch.zeros_like(scale),), collapsed=True))

    def fn(x):
        with torch.no_grad():
            value = model(x)
        return value, batched(x / scale)

    return fn


def lapl_fn(method: str, model: MLP, scale: torch.Tensor):
    """(coords) -> (value, Laplacian) with a graph for training, for one Laplacian method."""
    if method == "nested":
        return lambda x: nested_laplacian(model, x, scale)
    if method == "jet-peer":
        return peer_laplacian_fn(model, scale)
    engine = "autograd" if method == "lapl-autograd" else "fused"

    def fn(x):
        out = value_and_derivatives(model, x, scale=scale, laplacian=True, engine=engine)
        return out.value, out.laplacian

    return fn


def make_lapl_step(method: str, model: MLP, x, y, target, scale):
    """One ``lapl`` training step (``val``: the value step) through ``training.take_step``."""
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-4)
    if method == "val":
        def loss_terms():
            return sobolev_loss("val", model(x), y)
    else:
        derivs = lapl_fn(method, model, scale)

        def loss_terms():
            value, lap = derivs(x)
            return sobolev_loss("lapl", value, y, lap, target)

    def step():
        terms, _, applied = take_step(optimizer, params, loss_terms)
        assert applied, f"{method}: non-finite loss"
        return terms["total"]

    return step


def check_laplacians(case: LaplCase, methods: List[str], device: torch.device
                     ) -> Tuple[Dict[str, float], Dict[str, str]]:
    """Relative error of each method's Laplacian against :func:`reference_laplacian` (nested per-channel,
    per-axis autograd); exits if one is > tolerance. Methods that cannot run here are returned with the reason."""
    model, x, _, _, scale = build_lapl(case, device)
    ref = reference_laplacian(lambda u: model(u * scale), x / scale).detach()  # the scaled Laplacian at x
    peak = ref.abs().max().item()
    errors, unavailable = {}, {}
    for method in methods:
        if method == "val":
            continue
        try:
            _, lap = lapl_fn(method, model, scale)(x)
        except PeerUnavailable as e:
            unavailable[method] = str(e)
            continue
        except Exception as e:  # noqa: BLE001  the peer is third-party code: report, do not crash
            if method != "jet-peer":
                raise
            unavailable[method] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            continue
        errors[method] = (lap.detach().reshape(ref.shape) - ref).abs().max().item() / peak
        del lap
        if not errors[method] <= LAPL_TOLERANCE:
            raise SystemExit(f"{case.name}/{method}: Laplacian relative error {errors[method]:.2e} exceeds "
                             f"{LAPL_TOLERANCE:.0e} against reference_laplacian; not timing anything")
    return errors, unavailable


def run_lapl_case(args, case: LaplCase, device: torch.device) -> dict:
    methods = [m for m in (args.methods or LAPL_METHODS) if m in LAPL_METHODS]
    methods = (["val"] if "val" not in methods else []) + methods
    print(f"\n{case.name}: {case.description}; N = {case.size ** 2}, D = 2, C = 1; device {device}", flush=True)
    errors, unavailable = check_laplacians(case, methods, device)
    print("  Laplacians match reference_laplacian: " + ", ".join(f"{m} {e:.1e}" for m, e in errors.items()),
          flush=True)
    for m, reason in unavailable.items():
        print(f"  {m}: not available: {reason}", flush=True)
    timed = [m for m in methods if m not in unavailable]
    times = time_methods(case, timed, device, args.repeats, args.warmup, args.threads, args.block)
    memory = measure_memory(case, timed, device, args.threads) if not args.no_memory else {m: None for m in timed}
    rows = summarise(timed, times, memory, errors, auto="lapl", reference="nested")
    for m, row in rows.items():
        row["auto"] = m == "lapl"  # what value_and_derivatives(..., laplacian=True) runs by default
    for m in methods:
        if m in unavailable:
            rows[m] = {"seconds": None, "available": False, "reason": f"not available: {unavailable[m]}"}
    rows = {m: rows[m] for m in methods}
    print_table(rows, reference="nested", error="lapl err")
    goals = lapl_goals(rows)
    for line in goals["lines"]:
        print("  " + line, flush=True)
    return {"case": case.name, "description": case.description, "N": case.size ** 2, "D": 2, "C": 1,
            "activation": case.activation, "tolerance": LAPL_TOLERANCE, "methods": rows, "goals": goals}


def lapl_goals(rows: Dict[str, dict]) -> dict:
    """Our fused ``lapl`` step against the goals: <= 3x the value step, >= 2.5x faster than ``nested``,
    faster than the peer, peak memory <= 2.5x the value step's."""
    ours = rows.get("lapl", {})
    if not ours.get("seconds"):
        return {"lines": ["goals: lapl was not timed"]}
    out = {"step_x_val": ours["ratio_to_val"], "speedup_vs_nested": ours.get("speedup_vs_reference"),
           "memory_x_val": ours.get("memory_ratio_to_val")}
    peer = rows.get("jet-peer")
    out["speedup_vs_peer"] = peer["seconds"] / ours["seconds"] if peer and peer.get("seconds") else None

    def line(label, value, goal, ok):
        shown = f"{value:.2f}" if value is not None else "-"
        return f"{label}: {shown} (goal {goal}){'' if value is None else ' met' if ok(value) else ' NOT met'}"

    out["lines"] = [
        line("lapl step / val step", out["step_x_val"], "<= 3.0", lambda v: v <= LAPL_GOALS["step_x_val"]),
        line("nested step / lapl step", out["speedup_vs_nested"], ">= 2.5",
             lambda v: v >= LAPL_GOALS["speedup_vs_nested"]),
        line("jet-peer step / lapl step", out["speedup_vs_peer"], "> 1", lambda v: v > 1.0)
        + ("" if out["speedup_vs_peer"] is not None else f" ({peer.get('reason', 'not run') if peer else 'not run'})"),
        line("lapl peak memory / val", out["memory_x_val"], "<= 2.5", lambda v: v <= LAPL_GOALS["memory_x_val"]),
    ]
    return out


def setup_step(case_name: str, method: str, device: torch.device):
    """The timed step of (case, method) on ``device``."""
    if case_name in NERF_CASES:
        return make_nerf_step(method, *build_nerf(NERF_CASES[case_name], device, method))
    if case_name in LAPL_CASES:
        return make_lapl_step(method, *build_lapl(LAPL_CASES[case_name], device))
    model, x, y, target, scale = build(IMAGE_CASES[case_name], device)
    return make_step(method, model, x, y, target, scale)


# ---------------------------------------------------------------------------------------- methods
def _func_derivatives(model: MLP, x: torch.Tensor, scale: torch.Tensor):
    """torch.func: vmap of jvp over the D scaled unit directions; value computed once (unbatched)."""
    from torch.func import functional_call, jvp, vmap

    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}

    def f(coords):
        return functional_call(model, state, (coords,))

    seeds = torch.diag(scale).unsqueeze(1).expand(-1, x.shape[0], -1)  # (D, N, D)
    value, tangents = vmap(lambda t: jvp(f, (x,), (t,)))(seeds)
    return value[0], tangents.permute(1, 2, 0)


def derivative_fn(method: str, model: MLP, scale: torch.Tensor):
    """(coords) -> (value, jacobian) with a graph for training, for one derivative method."""
    base = method.replace("-compiled", "")
    if base == "reference":
        def fn(x):
            out = reference_jacobian(model, x, create_graph=True)
            return out.value, out.jacobian * scale
    elif base == "forward-func":
        def fn(x):
            return _func_derivatives(model, x, scale)
    else:
        mode, _, variant = base.partition("-")
        engine = "autograd" if variant == "autograd" else "fused"
        recompute = variant == "recompute"

        def fn(x):
            out = value_and_derivatives(model, x, scale=scale, mode=mode, engine=engine, recompute_tangents=recompute)
            return out.value, out.jacobian
    return fn


def make_step(method: str, model: MLP, x, y, target, scale, lambda_der: float = 1.0):
    """One training step for ``method``, through the code ``fit()`` runs (``training.take_step``: loss,
    backward, gradient-norm check, Adam); returns a callable.

    ``val`` and this package's methods compute their loss with the regression task that main.py uses
    (:class:`~sobolev_inr.tasks.regression.SobolevRegression`, full batch); ``reference`` and ``forward-func``
    put their own derivatives into the same loss (:func:`~sobolev_inr.losses.sobolev.sobolev_loss`).
    """
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-4)
    base = method.replace("-compiled", "")
    if base == "val" or base in ("forward", "reverse", "forward-recompute", "forward-autograd", "reverse-autograd"):
        mode, _, variant = base.partition("-")
        supervision = SupervisionOptions("val" if base == "val" else "val_der", lambda_der=lambda_der)
        engine = EngineOptions(der_mode="auto" if base == "val" else mode,
                               der_engine="autograd" if variant == "autograd" else "auto",
                               der_recompute=variant == "recompute")
        task = SobolevRegression(x, y, target, None, scale.tolist(), supervision=supervision, engine=engine,
                                 device=x.device)

        def loss_terms():
            return task.loss(model, None)
    elif base in ("directional", "fraction"):
        supervision = SupervisionOptions("val_der", lambda_der=lambda_der,
                                         der_estimator="directional" if base == "directional" else "exact",
                                         der_fraction=0.25 if base == "fraction" else 1.0)
        task = SobolevRegression(x, y, target, None, scale.tolist(), supervision=supervision, device=x.device)
        generator = torch.Generator().manual_seed(0)

        def loss_terms():
            (batch,) = task.train_batches(generator)
            return task.loss(model, batch)
    else:
        derivs = derivative_fn(method, model, scale)

        def loss_terms():
            value, jac = derivs(x)
            return sobolev_loss("val_der", value, y, jac, target, lambda_der)
    if method.endswith("-compiled"):
        loss_terms = torch.compile(loss_terms)

    def step():
        terms, _, applied = take_step(optimizer, params, loss_terms)
        assert applied, f"{method}: non-finite loss"
        return terms["total"]

    return step


def methods_for(args) -> List[str]:
    methods = list(BASE_METHODS)
    if args.methods == ["all"]:
        methods += list(EXTRA_METHODS)
    elif args.methods:
        methods = list(args.methods)
        if "val" not in methods:
            methods.insert(0, "val")
    if args.compile:
        methods += [m for m in COMPILED_METHODS if m not in methods]
    return methods


def build(case: Case, device: torch.device, seed: int = 0):
    x, y, target, scale = case.build()
    torch.manual_seed(seed)
    model = MLP(x.shape[1], y.shape[1], [case.activation] * case.layers, hidden_features=case.width, w0=case.w0,
                encoding=case.encoding, num_frequencies=case.num_frequencies, grid=case.grid)
    return model.to(device), x.to(device), y.to(device), target.to(device), scale.to(device)


def check_jacobians(case: Case, methods: List[str], device: torch.device) -> Dict[str, float]:
    """Relative error of every derivative method's Jacobian against the reference loop; exits if > tolerance."""
    model, x, _, _, scale = build(case, device)
    ref = reference_jacobian(model, x)
    ref_jac = ref.jacobian.detach() * scale
    peak = ref_jac.abs().max().item()
    errors = {}
    for method in methods:
        if method.startswith(("val", "reference", "directional", "fraction")):
            continue  # no Jacobian to check (the estimates are tested in tests/test_directional.py)
        fn = derivative_fn(method, model, scale)
        if method.endswith("-compiled"):
            fn = torch.compile(fn)
        value, jac = fn(x)
        err = (jac.detach() - ref_jac).abs().max().item() / peak
        verr = (value.detach() - ref.value.detach()).abs().max().item() / ref.value.abs().max().item()
        errors[method] = err
        if not (err <= TOLERANCE and verr <= TOLERANCE):
            raise SystemExit(f"{case.name}/{method}: Jacobian relative error {err:.2e} (value {verr:.2e}) exceeds "
                             f"{TOLERANCE:.0e} against the reference loop; not timing anything")
    return errors


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _worker(conn, case_name: str, method: str, device: str, threads: Optional[int], warmup: int) -> None:
    """One method in its own process: set up, warm up, then time a block of consecutive steps per request."""
    try:
        if threads:
            torch.set_num_threads(threads)
        dev = torch.device(device)
        step = setup_step(case_name, method, dev)
        for _ in range(warmup + (2 if method.endswith("-compiled") else 0)):
            step()
        _sync(dev)
        conn.send("ready")
        while True:
            count = conn.recv()
            if not count:
                break
            seconds = []
            for _ in range(count):
                _sync(dev)
                t0 = time.perf_counter()
                step()
                _sync(dev)
                seconds.append(time.perf_counter() - t0)
            conn.send(seconds)
    except Exception as e:  # reported by the parent
        conn.send(f"error: {type(e).__name__}: {e}")
    finally:
        conn.close()


def time_methods(case: Case, methods: List[str], device: torch.device, repeats: int, warmup: int,
                 threads: Optional[int], block: int = 3) -> Dict[str, List[float]]:
    """Seconds per step of each method: one process per method (each allocator in its own steady
    state, as in a training run); in each of ``repeats`` rounds every method takes ``block``
    consecutive steps while the others wait, so that drifting load falls on all methods alike and no
    method is timed right after another one's step (a process that has just stepped slows the next
    for a while: single steps interleaved across processes inflated the value step by up to 1.6x)."""
    ctx = mp.get_context("spawn")
    workers = {}
    for m in methods:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, case.name, m, str(device), threads, warmup), daemon=True)
        proc.start()
        workers[m] = (parent, proc)
    times: Dict[str, List[float]] = {m: [] for m in methods}
    try:
        for m, (conn, _) in workers.items():
            msg = conn.recv()
            if msg != "ready":
                raise SystemExit(f"{case.name}/{m}: {msg}")
        for _ in range(repeats):
            for m, (conn, _) in workers.items():
                conn.send(block)
                msg = conn.recv()
                if isinstance(msg, str):
                    raise SystemExit(f"{case.name}/{m}: {msg}")
                times[m].extend(msg)
    finally:
        for conn, proc in workers.values():
            try:
                conn.send(0)
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=30)
    return times


# ----------------------------------------------------------------------------------------- memory
def _rss_mb() -> Tuple[float, float]:
    status = Path("/proc/self/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    return rss, hwm


def memory_probe(case_name: str, method: str, device: torch.device) -> Dict[str, float]:
    """Peak memory of one step above the memory held before it (after setup and one warm-up step)."""
    step = setup_step(case_name, method, device)
    step()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return {"peak_mb": (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20, "baseline_mb": base / 2 ** 20}
    base, _ = _rss_mb()
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
    step()
    _, peak = _rss_mb()
    return {"peak_mb": peak - base, "baseline_mb": base}


def measure_memory(case: Case, methods: List[str], device: torch.device, threads: Optional[int],
                   parallel: int = 3) -> Dict[str, Optional[float]]:
    """Peak memory of one step per method (MB). On CPU each method runs in a fresh process, a few at a
    time (a process's RSS does not depend on the others)."""
    out: Dict[str, Optional[float]] = {}
    if device.type == "cuda":
        for method in methods:
            out[method] = memory_probe(case.name, method, device)["peak_mb"]
            gc.collect()
            torch.cuda.empty_cache()
        return out
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    pending = list(methods)
    running: Dict[str, subprocess.Popen] = {}
    while pending or running:
        while pending and len(running) < parallel:
            method = pending.pop(0)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", case.name, method, "--device", "cpu"]
            if threads:
                cmd += ["--threads", str(threads)]
            running[method] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        method = next(iter(running))
        proc = running.pop(method)
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            print(f"  memory probe {case.name}/{method} failed: {stderr.strip().splitlines()[-1:]}", flush=True)
            out[method] = None
        else:
            out[method] = json.loads(stdout.strip().splitlines()[-1])["peak_mb"]
    return {m: out[m] for m in methods}


# ------------------------------------------------------------------------------------------ report
def run_device(args, device: torch.device) -> List[dict]:
    methods = methods_for(args)
    results = []
    for name in args.cases:
        if name in NERF_CASES:
            results.append(run_nerf_case(args, NERF_CASES[name], device))
            continue
        if name in LAPL_CASES:
            results.append(run_lapl_case(args, LAPL_CASES[name], device))
            continue
        case = IMAGE_CASES[name]
        model, x, y, _, _ = build(case, torch.device("cpu"))
        d, c, n = x.shape[1], y.shape[1], x.shape[0]
        auto = choose_mode(d, c)
        print(f"\n{name}: {case.description}; N = {n}, D = {d}, C = {c}; auto mode = {auto}; device {device}",
              flush=True)
        errors = check_jacobians(case, methods, device)
        print("  Jacobians match the reference loop: " + ", ".join(f"{m} {e:.1e}" for m, e in errors.items()),
              flush=True)
        times = time_methods(case, methods, device, args.repeats, args.warmup, args.threads, args.block)
        memory = measure_memory(case, methods, device, args.threads) if not args.no_memory else {m: None for m in methods}
        rows = summarise(methods, times, memory, errors, auto)
        print_table(rows)
        results.append({"case": name, "description": case.description, "N": n, "D": d, "C": c, "auto_mode": auto,
                        "activation": case.activation, "encoding": case.encoding, "methods": rows})
    return results


def run_nerf_case(args, case: NerfCase, device: torch.device) -> dict:
    methods = [m for m in methods_for(args) if m in NERF_METHODS]
    print(f"\n{case.name}: {case.description}; D = 2 pixel coordinates, C = 3 colours; device {device}", flush=True)
    errors = check_nerf(case, methods, device)
    print("  d rgb / d pixel match the original's autograd way: " + ", ".join(f"{m} {e:.1e}" for m, e in errors.items()),
          flush=True)
    times = time_methods(case, methods, device, args.repeats, args.warmup, args.threads, args.block)
    memory = measure_memory(case, methods, device, args.threads) if not args.no_memory else {m: None for m in methods}
    rows = summarise(methods, times, memory, errors, auto="forward")
    print_table(rows)
    return {"case": case.name, "description": case.description, "rays": case.rays, "samples": case.samples,
            "depth": case.depth, "width": case.width, "activation": case.activation, "methods": rows}


def summarise(methods, times, memory, errors, auto: str, reference: str = "reference") -> Dict[str, dict]:
    """One row per method: median seconds per step and its ratios to val and to the reference method
    (``reference``: the published loop; ``nested`` for the Laplacian cases), peak memory."""
    med = {m: statistics.median(t) for m, t in times.items()}
    return {m: {"seconds": med[m], "seconds_all": times[m], "ratio_to_val": med[m] / med["val"],
                "speedup_vs_reference": (med[reference] / med[m]) if reference in med else None,
                "peak_mb": memory.get(m),
                "memory_ratio_to_val": (memory[m] / memory["val"]) if memory.get(m) and memory.get("val") else None,
                "jacobian_rel_err": errors.get(m), "auto": m.split("-")[0] == auto} for m in methods}


def print_table(rows: Dict[str, dict], reference: str = "ref", error: str = "jac err") -> None:
    print(f"  {'method':<27}{'s/step':>9}{'x val':>8}{reference + '/this':>13}{'peak MB':>10}{'x val':>8}{error:>10}")
    for m, r in rows.items():
        if r.get("available") is False:
            print(f"  {m:<27}{r['reason']}", flush=True)
            continue
        mark = "*" if r["auto"] else " "
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "-"
        mratio = f"{r['memory_ratio_to_val']:.2f}" if r["memory_ratio_to_val"] is not None else "-"
        speed = f"{r['speedup_vs_reference']:.2f}" if r["speedup_vs_reference"] is not None else "-"
        err = f"{r['jacobian_rel_err']:.1e}" if r["jacobian_rel_err"] is not None else "-"
        print(f"  {m + mark:<27}{r['seconds']:>9.4f}{r['ratio_to_val']:>8.2f}{speed:>13}{peak:>10}{mratio:>8}{err:>10}",
              flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES),
                   choices=list(IMAGE_CASES) + list(NERF_CASES) + list(LAPL_CASES),
                   help=f"default: the image and audio cases; INR families: {', '.join(FAMILY_CASES)}; NeRF cases: "
                        f"{', '.join(NERF_CASES)}; Laplacian cases: {', '.join(LAPL_CASES)}")
    p.add_argument("--methods", nargs="+", default=None,
                   help=f"subset of {BASE_METHODS + EXTRA_METHODS} ('all' adds {EXTRA_METHODS}), or for the "
                        f"Laplacian cases of {LAPL_METHODS}; val is always run")
    p.add_argument("--compile", action="store_true", help=f"also time {COMPILED_METHODS} (slow to compile on CPU)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (median of all steps reported)")
    p.add_argument("--block", type=int, default=3, help="consecutive timed steps per method in each round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per method first")
    p.add_argument("--device", default="auto", help="auto (CPU, and CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/derivatives_<device>.json)")
    p.add_argument("--memory-probe", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe[0], args.memory_probe[1], torch.device(args.device))))
        return
    if args.device == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    for device in devices:
        info = {**machine_record(device, argv), "repeats": args.repeats, "block": args.block, "tolerance": TOLERANCE}
        print(f"{machine_line(device)}; {args.repeats} rounds of {args.block} steps per method, medians", flush=True)
        results = run_device(args, device)
        tag = "" if args.cases == list(CASES) else "_" + "_".join(args.cases)
        out = args.out or REPO / "bench" / "results" / f"derivatives_{device.type}_{torch.get_num_threads()}threads{tag}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": info, "cases": results}, indent=1))
        print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
