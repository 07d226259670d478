"""Inverse rendering (Sobolev-INR paper, supplement 1.2 and 4.2): NeRF on a forward-facing scene with
derivative supervision, as the original ``Experiments/inverse_rendering`` trained it.

Protocol (the original's, see ../shared/PROTOCOLS.md): every ``llffhold``-th view held out; training
rays at every ``factor``-th pixel (stride, from 0) of each training view, shuffled, ``N_rand`` per step,
reshuffled each epoch; derivative targets kornia's normalised Sobel (or ``diff``) of each training view
at the loaded resolution, before the stride, per pixel step, x to the right and y down; the network's
derivative is that of each rendered pixel colour with respect to its own pixel coordinates, carried in
forward mode through rays, NDC, samples, network and compositing (:mod:`sobolev_inr.rendering`);
``val_der`` loss = MSE + lambda_der x mean over rays of the squared error summed over (r_x, r_y, g_x,
g_y, b_x, b_y). Test views are rendered whole and scored as the original ``eval.py`` scores them: the
render saved as an 8-bit PNG, read back, PSNR (peak 1) and kornia SSIM (window 11) per view against
the ground-truth image, paired by view index, then averaged. ``final_eval_stride`` k scores every k-th
pixel of each test view along each axis instead (the pixels ``(k i, k j)``: the same rays as the whole
render's there, against the ground-truth pixels ``image[::k, ::k]``, no resampling), so the scores
estimate the full render's from 1/k^2 of its rays (SSIM is then that of the strided images).

Long phases (test renders, derivative renders, videos, the progress image) show a bar over the rays they
render (``progress``, set by the runner; quiet by default) and log their duration.

Randomness: each step's stratified offsets and density noise come from a device generator seeded by a
number drawn from the training generator, so a resumed run draws the same numbers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ...config.options import EngineOptions, SupervisionOptions, resolve_path
from ...data.scenes import LLFFScene
from ...data.targets import image_gradient
from ...derivatives import value_and_tangents
from ...errors import ConfigError, DataError
from ...losses.sobolev import sobolev_loss
from ...metrics import derivative_psnr, psnr, rho_ag, ssim
from ...rendering import (NDCSpace, RenderedImage, draw_ray_randomness, image_rays, pixel_rays, render_image,
                          render_rays, strided_shape)
from ...training.progress import QUIET, Progress
from . import InverseRenderingOptions, NeRFOptions, RayOptions, SceneOptions

RENDER_NAME = re.compile(r"^(\d{3,})\.png$")
"""Test renders are ``<testset dir>/NNN.png``, NNN the view index (``000.png``, ``008.png``, ...)."""


@dataclass
class RenderOptions:
    """How rays are rendered: samples per ray, stratification and density noise in training, NDC or
    world depths ``near``..``far``, sampling linear in disparity, white background."""

    num_samples: int = 128
    perturb: bool = True
    raw_noise_std: float = 1.0
    ndc: bool = True
    near: float = 0.0
    far: float = 1.0
    lindisp: bool = False
    white_background: bool = False
    chunk: int = 32768
    """Rays per chunk when rendering whole views (memory, not results)."""
    netchunk: int = 65536
    """Points per network call when rendering without a graph (memory, not results)."""


@dataclass
class TrainingRays:
    """The training rays of a scene: pixels (N, 2) = (x, y) in pixel units; views (N,) the view of
    each; rgb (N, 3) in [0, 1]; gradient (N, 3, 2) the Sobel targets per pixel step, (d/dx, d/dy) per
    channel, i.e. (r_x, r_y, g_x, g_y, b_x, b_y) when flattened."""

    pixels: Tensor
    views: Tensor
    rgb: Tensor
    gradient: Tensor

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def to(self, device: torch.device) -> "TrainingRays":
        return TrainingRays(*(t.to(device) for t in (self.pixels, self.views, self.rgb, self.gradient)))


def view_gradient(image: np.ndarray, operator: str) -> Tensor:
    """Sobel (or diff) derivatives of a view ``(H, W, 3)`` in [0, 1]: (H, W, 3, 2) per pixel step."""
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    return image_gradient(chw, operator).permute(2, 3, 0, 1)  # (C, 2, H, W) -> (H, W, C, 2)


def training_rays(scene: LLFFScene, views: Sequence[int], stride: int, der_operator: str) -> TrainingRays:
    """Every ``stride``-th pixel (from 0, in both directions) of each view in ``views``, with its colour
    and the derivative targets computed on the whole view at the loaded resolution (so that they carry
    information from the pixels the value loss never sees)."""
    h, w = scene.height, scene.width
    rows, cols = np.arange(0, h, stride), np.arange(0, w, stride)
    grid_y, grid_x = np.meshgrid(rows, cols, indexing="ij")
    pixels = torch.from_numpy(np.stack((grid_x.ravel(), grid_y.ravel()), -1).astype(np.float32))
    parts = {"pixels": [], "views": [], "rgb": [], "gradient": []}
    for view in views:
        image = scene.images[view]
        parts["pixels"].append(pixels)
        parts["views"].append(torch.full((len(pixels),), int(view), dtype=torch.long))
        parts["rgb"].append(torch.from_numpy(image[::stride, ::stride].reshape(-1, 3).copy()).float())
        parts["gradient"].append(view_gradient(image, der_operator)[::stride, ::stride].reshape(-1, 3, 2))
    return TrainingRays(**{k: torch.cat(v) for k, v in parts.items()})


def network_field(model: nn.Module, engine: str = "auto", recompute_tangents: bool = False, netchunk: int = 65536,
                  on_points: Optional[Callable[[int], None]] = None):
    """The renderer's field: points (P, 3) and tangents (T, P, 3) or None -> raw (P, 4) and raw tangents.

    Tangents through :func:`~sobolev_inr.derivatives.value_and_tangents` (the fused engine for an MLP).
    Without a graph (rendering test views) the points go through the network ``netchunk`` at a time, and
    ``on_points(n)`` is told of each piece's ``n`` points when done (a progress bar, :class:`RayCount`).
    """
    def field(points: Tensor, tangents: Optional[Tensor]):
        pieces = [slice(None)] if torch.is_grad_enabled() else [
            slice(s, s + netchunk) for s in range(0, points.shape[0], netchunk)]
        values, parts = [], []
        for p in pieces:
            if tangents is None:
                values.append(model(points[p]))
            else:
                value, tangent = value_and_tangents(model, points[p], tangents[:, p], engine=engine,
                                                    recompute_tangents=recompute_tangents)
                values.append(value)
                parts.append(tangent)
            if on_points is not None:
                on_points(values[-1].shape[0])
        return torch.cat(values), (torch.cat(parts, dim=1) if parts else None)

    return field


class RayCount:
    """Counts the rays rendered into a progress ``bar`` (unit: rays) from the points the field evaluates,
    ``num_samples`` per ray; a ``netchunk`` of points at a time, so the bar moves within a view."""

    def __init__(self, bar: Any, num_samples: int):
        self.bar, self.num_samples, self.points, self.shown = bar, num_samples, 0, 0

    def __call__(self, points: int) -> None:
        self.points += points
        rays = self.points // self.num_samples
        if rays > self.shown:
            self.bar.update(rays - self.shown)
            self.shown = rays

    def describe(self, desc: str) -> None:
        """Names what the bar renders now (e.g. the view)."""
        self.bar.set_description(desc, refresh=False)


@dataclass
class ViewScores:
    """Scores of rendered test views against their ground truth, paired by view index."""

    views: List[int]
    psnr: List[float]
    ssim: List[float]
    height: int
    width: int
    rho_ag: List[float] = field(default_factory=list)
    """SPDER's rho_AG per view (colours mapped to [-1, 1], the range the image tasks compute it in)."""
    stride: int = 1
    """Every ``stride``-th pixel of each view along each axis was scored (``height x width`` is that grid)."""

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def mean_ssim(self) -> float:
        return float(np.mean(self.ssim))

    def score_txt(self) -> str:
        """The original eval.py's ``score.txt``: ``NNN.png PSNR: x, SSIM: y`` per view, then the means
        (4 decimals, rounded half up); NNN is the view index."""
        four = lambda x: Decimal(str(x)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)  # noqa: E731
        lines = [f"{v:03d}.png PSNR: {four(p)}, SSIM: {four(s)}" for v, p, s in zip(self.views, self.psnr, self.ssim)]
        lines.append(f"Mean PSNR: {four(self.mean_psnr)}, Mean SSIM: {four(self.mean_ssim)}")
        return "\n".join(lines) + "\n"

    def metrics(self, suffix: str = "") -> Dict[str, Any]:
        """``psnr_heldout``, ``ssim_heldout`` (means) and the per-view lists, the key names every task uses;
        ``heldout_size`` the grid scored per view and ``heldout_stride`` its pixel stride (1: every pixel)."""
        spectrum = {f"rho_ag_heldout{suffix}": float(np.mean(self.rho_ag))} if self.rho_ag else {}
        return {f"psnr_heldout{suffix}": self.mean_psnr, f"ssim_heldout{suffix}": self.mean_ssim, **spectrum,
                f"psnr_heldout_per_view{suffix}": self.psnr, f"ssim_heldout_per_view{suffix}": self.ssim,
                f"heldout_views{suffix}": self.views, f"heldout_size{suffix}": [self.height, self.width],
                f"heldout_stride{suffix}": self.stride}


SPIRAL_FPS = 30.0
"""Frame rate of the spiral videos (:meth:`InverseRendering.write_video`; nerf-pytorch's)."""


def to_uint8(image: Tensor) -> np.ndarray:
    """(H, W, 3) in [0, 1] -> uint8, as the original saved renders (``255 * clip(x, 0, 1)``, truncated)."""
    return (255.0 * image.detach().clamp(0, 1).cpu().numpy()).astype(np.uint8)


def disparity_uint8(disparity: Tensor, top: float) -> np.ndarray:
    """A disparity map (H, W) as uint8, ``top`` mapped to 255 (the map's own maximum, or a whole video's)."""
    return (255 * (disparity.cpu() / top).clamp(0, 1).numpy()).astype(np.uint8)


def read_render(path: Path) -> np.ndarray:
    """A saved render ``NNN.png`` as eval.py reads it back: (H, W, 3) float32 in [0, 1] (8-bit / 255)."""
    from ...data.llff import read_rgb

    return np.asarray(read_rgb(path), dtype=np.float32) / 255.0


def find_renders(testset_dir: Path) -> Dict[int, Path]:
    """``{view index: NNN.png}`` in a testset folder (other files, e.g. depth maps, are ignored)."""
    found = {}
    for path in Path(testset_dir).iterdir():
        match = RENDER_NAME.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def score_renders(testset_dir: Path, truth: Mapping[int, np.ndarray]) -> ViewScores:
    """Scores the renders ``NNN.png`` in ``testset_dir`` against ``truth`` ({view index: (H, W, 3) in
    [0, 1]}), paired by view index. DataError when the views or the sizes do not match."""
    renders = find_renders(testset_dir)
    if sorted(renders) != sorted(truth):
        raise DataError(f"{testset_dir} holds renders of views {sorted(renders)}, the test views are "
                        f"{sorted(truth)}; render them again (eval.py --rerender) or check llffhold")
    return score_views({v: read_render(path) for v, path in renders.items()}, truth, names=renders)


def score_views(renders: Mapping[int, np.ndarray], truth: Mapping[int, np.ndarray], stride: int = 1,
                names: Optional[Mapping[int, Any]] = None) -> ViewScores:
    """Scores 8-bit renders ({view index: (H, W, 3) in [0, 1], k / 255}) against ``truth``, paired by view
    index, as eval.py does (:func:`score_renders` reads them from PNGs); ``stride`` is recorded. ``names``:
    what to call a render in errors (its file)."""
    views, psnrs, ssims, rhos = [], [], [], []
    for view in sorted(truth):
        pred = np.asarray(renders[view], dtype=np.float32)
        target = np.asarray(truth[view], dtype=np.float32)
        if pred.shape != target.shape:
            name = (names or {}).get(view, f"the render of view {view}")
            raise DataError(f"{name} is {pred.shape[1]}x{pred.shape[0]}, its ground truth "
                            f"{target.shape[1]}x{target.shape[0]}: renders and images of another resolution")
        p, t = torch.from_numpy(pred).permute(2, 0, 1), torch.from_numpy(target).permute(2, 0, 1)
        views.append(view)
        psnrs.append(psnr(p, t))
        ssims.append(ssim(p, t))
        rhos.append(rho_ag(2 * p - 1, 2 * t - 1))
    h, w = next(iter(truth.values())).shape[:2]
    return ViewScores(views, psnrs, ssims, h, w, rhos, stride)


def testset_dirs(run_dir: Path) -> Dict[int, Path]:
    """``{step: testset_<step>/}`` of a run (renders at the training resolution), by step."""
    found = {}
    for path in Path(run_dir).glob("testset_*"):
        match = re.fullmatch(r"testset_(\d+)", path.name)
        if match and path.is_dir():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def _weights_key(model: nn.Module) -> tuple:
    """Changes whenever the model's weights do (another model, or an optimiser step): what caches of its
    renders are keyed by."""
    return id(model), tuple(p._version for p in model.parameters())


class InverseRendering:
    """Training rays and their loss, held-out evaluation, test renders and figures of one scene.

    ``scene``: the loaded views (:func:`~sobolev_inr.data.scenes.load_llff`); ``train_ids``/``test_ids``
    the split; ``stride`` the training pixel stride (the original train.py's ``factor``); ``batch_size``
    rays per step (``N_rand``), trained ``block_size`` rays at a time (0: all at once; :meth:`loss_blocks`);
    ``render``: :class:`RenderOptions`. Derivative supervision needs only forward-mode tangents (D = 2 pixel
    coordinates), whatever ``supervision``. ``progress``: bars and phase durations of the long renders (set by
    the runner; quiet by default).
    """

    psnr_peak = 1.0  # colours in [0, 1]
    progress: Progress = QUIET

    def __init__(self, scene: LLFFScene, train_ids: Sequence[int], test_ids: Sequence[int], *, stride: int = 4,
                 batch_size: int = 1024, render: RenderOptions = RenderOptions(),
                 supervision: Union[str, SupervisionOptions] = SupervisionOptions(),
                 engine: EngineOptions = EngineOptions(), device: torch.device = torch.device("cpu"),
                 show_der_loss: bool = False, eval_rays: int = 4096, block_size: int = 0):
        if isinstance(supervision, str):
            supervision = SupervisionOptions(supervision=supervision)
        if supervision.supervision not in ("val", "val_der", "der"):
            raise ConfigError(f"inverse rendering supervises val, val_der or der, not {supervision.supervision}")
        self.scene, self.device, self.render_options = scene, device, render
        self.train_ids, self.test_ids = [int(v) for v in train_ids], [int(v) for v in test_ids]
        if block_size < 0:
            raise ConfigError(f"block_size must be >= 0 (0 = the whole batch at once), got {block_size}")
        self.stride, self.batch_size, self.block_size = stride, batch_size, block_size
        self.supervision, self.lambda_der = supervision.supervision, supervision.lambda_der
        self.der_operator = supervision.der_operator
        self.der_engine, self.der_recompute, self.show_der_loss = engine.der_engine, engine.der_recompute, show_der_loss
        self.rays = training_rays(scene, self.train_ids, stride, self.der_operator).to(device)
        self.poses = torch.from_numpy(scene.poses).float().to(device)
        self.height, self.width, self.focal = scene.height, scene.width, float(scene.focal)
        self.ndc = NDCSpace(self.height, self.width, self.focal, 1.0) if render.ndc else None
        self.eval_set = self._eval_rays(eval_rays)
        self._render_cache: Tuple[tuple, Dict[int, RenderedImage]] = ((), {})
        self._gradient_cache: Tuple[tuple, Dict[int, Tensor]] = ((), {})

    # ------------------------------------------------------------------------------------ training
    @property
    def needs_tangents(self) -> bool:
        return self.supervision != "val" or self.show_der_loss

    def train_batches(self, generator: torch.Generator) -> Iterator[Tuple[Tensor, int]]:
        """One epoch: the training rays shuffled, ``batch_size`` at a time (the last batch may be short),
        each with the seed of its stratified offsets and density noise."""
        order = torch.randperm(len(self.rays), generator=generator)
        for index in order.split(self.batch_size):
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
            yield index.to(self.device), seed

    def _generator(self, seed: Optional[int]) -> Optional[torch.Generator]:
        """The generator of a training batch's random numbers (None where its rays draw none: test renders)."""
        r = self.render_options
        if seed is None or not (r.perturb or r.raw_noise_std > 0):
            return None
        return torch.Generator(device=self.device).manual_seed(seed)

    def _render_rays(self, field, rays, seed: Optional[int] = None, with_tangents: bool = False,
                     chunk: Optional[int] = None, draws: Optional[Tuple[Optional[Tensor], Optional[Tensor]]] = None):
        """``rays`` through ``field`` with this task's render options. With ``seed`` (training) the stratified
        offsets and density noise are drawn from a generator it seeds, or given as ``draws`` (a slice of a
        batch's, :meth:`loss_blocks`); without either (test renders) there are none."""
        r = self.render_options
        training = seed is not None or draws is not None
        return render_rays(field, rays, r.num_samples, r.near, r.far, ndc=self.ndc, perturb=training and r.perturb,
                           raw_noise_std=r.raw_noise_std if training else 0.0, lindisp=r.lindisp,
                           white_background=r.white_background, with_tangents=with_tangents,
                           generator=None if draws is not None else self._generator(seed), chunk=chunk, draws=draws)

    def render_batch(self, model: nn.Module, index: Tensor, seed: Optional[int], with_tangents: bool,
                     draws: Optional[Tuple[Optional[Tensor], Optional[Tensor]]] = None):
        """Renders training rays ``index`` as a training step does; with tangents, rgb_tangents (2, R, 3) per
        pixel step."""
        r = self.render_options
        rays = pixel_rays(self.rays.pixels[index], self.poses[self.rays.views[index]], self.focal, self.height,
                          self.width, with_tangents=with_tangents)
        return self._render_rays(network_field(model, self.der_engine, self.der_recompute, r.netchunk), rays, seed,
                                 with_tangents, draws=draws)

    def loss_blocks(self, model: nn.Module, batch: Tuple[Tensor, int]) -> Iterator[Dict[str, Tensor]]:
        """The batch's loss as blocks of ``block_size`` rays (one block when 0 or the batch is smaller), for
        :func:`~sobolev_inr.training.loop.take_step` to backpropagate one at a time: only one block's graph is
        held. Each ray keeps the random numbers the whole batch draws (drawn once, then sliced), and each
        block's terms are its share ``n_b / N`` of the batch's means, so the blocks sum to :meth:`loss` up to
        float rounding, and so do the accumulated gradients."""
        index, seed = batch
        if self.block_size <= 0 or len(index) <= self.block_size:
            yield self.loss(model, batch)
            return
        r = self.render_options
        draws = draw_ray_randomness(len(index), r.num_samples, r.perturb, r.raw_noise_std, self._generator(seed),
                                    self.device, self.poses.dtype)
        for start in range(0, len(index), self.block_size):
            part = slice(start, start + self.block_size)
            block = index[part]
            share = len(block) / len(index)
            terms = self._loss(model, block, None, tuple(None if d is None else d[part] for d in draws))
            yield {name: value * share for name, value in terms.items()}

    def loss(self, model: nn.Module, batch: Tuple[Tensor, int]) -> Dict[str, Tensor]:
        index, seed = batch
        return self._loss(model, index, seed)

    def _loss(self, model: nn.Module, index: Tensor, seed: Optional[int],
              draws: Optional[Tuple[Optional[Tensor], Optional[Tensor]]] = None) -> Dict[str, Tensor]:
        out = self.render_batch(model, index, seed, with_tangents=self.needs_tangents, draws=draws)
        target = self.rays.rgb[index]
        if self.supervision == "val":
            terms = sobolev_loss("val", out.rgb, target)
            if self.show_der_loss:  # logged, not optimised
                err = (out.rgb_tangents.permute(1, 2, 0) - self.rays.gradient[index]) ** 2
                terms["derivative"] = err.reshape(err.shape[0], -1).sum(1).mean().detach()
            return terms
        jacobian = out.rgb_tangents.permute(1, 2, 0)  # (2, R, 3) -> (R, 3, 2): (r_x, r_y, g_x, ...)
        return sobolev_loss(self.supervision, out.rgb, target, jacobian, self.rays.gradient[index], self.lambda_der)

    def loss_by_autograd(self, model: nn.Module, batch: Tuple[Tensor, int]) -> Dict[str, Tensor]:
        """The published code's way to the same loss (:meth:`jacobian_by_autograd`), kept as the
        independent reference that tests and ``bench/derivatives.py`` compare :meth:`loss` with."""
        index, _ = batch
        rgb, jacobian = self.jacobian_by_autograd(model, batch)
        return sobolev_loss(self.supervision, rgb, self.rays.rgb[index], jacobian, self.rays.gradient[index],
                            self.lambda_der)

    def jacobian_by_autograd(self, model: nn.Module, batch: Tuple[Tensor, int]) -> Tuple[Tensor, Tensor]:
        """(rgb (R, 3), d rgb / d pixel (R, 3, 2)) of training rays the published code's way: the pixel
        coordinates as an autograd leaf, the colour rendered through plain autograd, and one
        ``autograd.grad(create_graph=True)`` per colour channel (same rays, same random draws as :meth:`loss`)."""
        index, seed = batch
        pixels = self.rays.pixels[index].clone().requires_grad_(True)
        rays = pixel_rays(pixels, self.poses[self.rays.views[index]], self.focal, self.height, self.width,
                          with_tangents=False)
        out = self._render_rays(lambda p, t: (model(p), None), rays, seed)
        columns = [torch.autograd.grad(out.rgb[:, c].sum(), pixels, create_graph=True)[0] for c in range(3)]
        return out.rgb, torch.stack(columns, dim=1)  # (R, 3, 2): (r_x, r_y), (g_x, g_y), (b_x, b_y)

    # ---------------------------------------------------------------------------------- evaluation
    def _eval_rays(self, count: int) -> Optional[TrainingRays]:
        """A fixed random set of held-out pixels (of the test views), for the held-out PSNR curve."""
        if count <= 0 or not self.test_ids:
            return None
        gen = torch.Generator().manual_seed(0)
        h, w = self.height, self.width
        views = torch.tensor(self.test_ids)[torch.randint(len(self.test_ids), (count,), generator=gen)]
        flat = torch.randint(h * w, (count,), generator=gen)
        pixels = torch.stack(((flat % w).float(), (flat // w).float()), -1)
        images = torch.from_numpy(self.scene.images)
        rgb = images[views, flat // w, flat % w].float()
        return TrainingRays(pixels, views, rgb, torch.zeros(count, 3, 2)).to(self.device)

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """PSNR on a fixed random set of held-out pixels (test rendering: no stratification, no noise)."""
        if self.eval_set is None:
            return {}
        r = self.render_options
        rays = pixel_rays(self.eval_set.pixels, self.poses[self.eval_set.views], self.focal, self.height, self.width,
                          with_tangents=False)
        pred = self._render_rays(network_field(model, netchunk=r.netchunk), rays, chunk=r.chunk).rgb
        return {"psnr_heldout_rays": psnr(pred, self.eval_set.rgb)}

    @contextlib.contextmanager
    def counting_rays(self, desc: str, total: int) -> Iterator[RayCount]:
        """A progress bar over ``total`` rays to render (the task's ``progress``; quiet by default): pass the
        :class:`RayCount` it yields as ``count`` to the render methods."""
        bar = self.progress.bar(total=total, desc=desc, unit="ray")
        try:
            yield RayCount(bar, self.render_options.num_samples)
        finally:
            bar.close()

    def view_shape(self, render_factor: float = 1.0, stride: int = 1) -> Tuple[int, int]:
        """(H, W) of a view rendered at ``1 / render_factor`` the resolution, every ``stride``-th pixel."""
        from ...rendering import rescale_intrinsics

        h, w, _ = rescale_intrinsics(self.height, self.width, self.focal, render_factor)
        return strided_shape(h, w, stride)

    def render_view(self, model: nn.Module, c2w: Tensor, render_factor: float = 1.0,
                    align_pixels: bool = False, stride: int = 1, count: Optional[RayCount] = None) -> RenderedImage:
        """A whole view from pose ``c2w (3, 4)`` at ``1 / render_factor`` the training resolution; with ``stride``
        k every k-th pixel along each axis (:func:`~sobolev_inr.rendering.render_image`). ``chunk`` rays and
        ``netchunk`` points at a time (memory); ``count`` follows the rays rendered."""
        r = self.render_options
        return render_image(network_field(model, netchunk=r.netchunk, on_points=count), c2w.to(self.device),
                            self.height, self.width, self.focal, r.num_samples, r.near, r.far, ndc=self.ndc,
                            lindisp=r.lindisp, white_background=r.white_background, render_factor=render_factor,
                            align_pixels=align_pixels, chunk=r.chunk, stride=stride)

    def render_view_gradient(self, model: nn.Module, view: int, stride: int = 1,
                             count: Optional[RayCount] = None) -> Tensor:
        """The network's derivatives of a test view at the training resolution (every ``stride``-th pixel along
        each axis): (H, W, 3, 2) per training pixel step; once per state of the weights."""
        key = _weights_key(model)
        if self._gradient_cache[0] != key:
            self._gradient_cache = (key, {})
        if (view, stride) not in self._gradient_cache[1]:
            self._gradient_cache[1][(view, stride)] = self._render_view_gradient(model, view, stride, count)
        return self._gradient_cache[1][(view, stride)]

    def _render_view_gradient(self, model: nn.Module, view: int, stride: int = 1,
                              count: Optional[RayCount] = None) -> Tensor:
        r = self.render_options
        rays = image_rays(self.poses[view], self.focal, self.height, self.width, with_tangents=True, stride=stride)
        with torch.no_grad():
            out = self._render_rays(network_field(model, self.der_engine, netchunk=r.netchunk, on_points=count), rays,
                                    with_tangents=True, chunk=max(r.chunk // 4, 1))
        h, w = self.view_shape(stride=stride)
        return out.rgb_tangents.permute(1, 2, 0).reshape(h, w, 3, 2).cpu()

    def test_gradients(self, model: nn.Module, stride: int = 1) -> Dict[int, Tensor]:
        """:meth:`render_view_gradient` of every test view, with a bar over the rays of those not rendered yet."""
        key = _weights_key(model)
        cached = self._gradient_cache[1] if self._gradient_cache[0] == key else {}
        todo = [v for v in self.test_ids if (v, stride) not in cached]
        h, w = self.view_shape(stride=stride)
        if todo:
            with self.progress.phase(f"derivative renders ({len(todo)} views of {h}x{w})"), \
                    self.counting_rays("derivative renders", len(todo) * h * w) as count:
                for i, view in enumerate(todo):
                    count.describe(f"derivatives of view {view} ({i + 1}/{len(todo)})")
                    self.render_view_gradient(model, view, stride, count)
        return {v: self.render_view_gradient(model, v, stride) for v in self.test_ids}

    def test_renders(self, model: nn.Module, render_factor: float = 1.0, align_pixels: bool = False,
                     stride: int = 1) -> Dict[int, RenderedImage]:
        """Every test view rendered (at the training resolution by default; every ``stride``-th pixel along each
        axis), with a bar over their rays; once per state of the weights."""
        key = (*_weights_key(model), render_factor, align_pixels, stride)
        if self._render_cache[0] != key:
            was = model.training
            model.eval()
            h, w = self.view_shape(render_factor, stride)
            n = len(self.test_ids)
            renders = {}
            with self.progress.phase(f"test renders ({n} views of {h}x{w})"), \
                    self.counting_rays("test renders", n * h * w) as count:
                for i, view in enumerate(self.test_ids):
                    count.describe(f"test view {view} ({i + 1}/{n})")
                    renders[view] = self.render_view(model, self.poses[view], render_factor, align_pixels, stride,
                                                     count)
            model.train(was)
            self._render_cache = (key, renders)
        return self._render_cache[1]

    def write_testset(self, model: nn.Module, out_dir: Path, render_factor: float = 1.0,
                      align_pixels: bool = False, stride: int = 1) -> Path:
        """Renders the test views into ``out_dir``: ``NNN.png`` (the render, NNN the view index, what
        eval.py scores) and ``NNN_disp.png`` (disparity, normalised per view); at ``1 / render_factor``
        the training resolution, every ``stride``-th pixel (:meth:`render_view`)."""
        from PIL import Image

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for view, rendered in self.test_renders(model, render_factor, align_pixels, stride).items():
            Image.fromarray(to_uint8(rendered.rgb)).save(out_dir / f"{view:03d}.png")
            disp = rendered.disparity
            Image.fromarray(disparity_uint8(disp, max(float(disp.max()), 1e-12))).save(out_dir / f"{view:03d}_disp.png")
        return out_dir

    def write_video(self, model: nn.Module, out_dir: Path, name: str, render_factor: float = 1.0) -> List[Path]:
        """The spiral path (``scene.render_poses``) as videos at 30 fps, ``<name>rgb`` and ``<name>disp`` (disparity,
        one scale for the whole path), at ``1 / render_factor`` the resolution, through
        :func:`sobolev_inr.reporting.outputs.write_video`: MP4 as nerf-pytorch's with the ``video`` extra
        (imageio-ffmpeg), looping GIFs without it; a bar over the frames' rays. Returns the two paths written."""
        from ...reporting.outputs import write_video

        poses = list(self.scene.render_poses)
        h, w = self.view_shape(render_factor)
        rgb, disp = [], []
        label = f"spiral video {name.rstrip('_')}".rstrip()
        with self.progress.phase(f"{label} ({len(poses)} frames of {h}x{w})"), \
                self.counting_rays("spiral video", len(poses) * h * w) as count:
            for i, pose in enumerate(poses):
                count.describe(f"spiral frame {i + 1}/{len(poses)}")
                rendered = self.render_view(model, torch.from_numpy(np.asarray(pose, dtype=np.float32)), render_factor,
                                            count=count)
                rgb.append(to_uint8(rendered.rgb))
                disp.append(rendered.disparity.cpu())
            top = max(float(d.max()) for d in disp) or 1.0
            disp = [disparity_uint8(d, top) for d in disp]
            return [write_video(Path(out_dir) / f"{name}{kind}", np.stack(frames), SPIRAL_FPS)
                    for kind, frames in (("rgb", rgb), ("disp", disp))]

    def write_progress(self, model: nn.Module, path: Path, step: int, render_factor: float = 4.0) -> float:
        """A quick look at a running job: one test view (a different one each time) rendered at
        ``1 / render_factor`` the resolution beside its ground truth, into ``path``; returns its PSNR."""
        from PIL import Image

        if not self.test_ids:
            return float("nan")
        view = self.test_ids[step % len(self.test_ids)]
        h, w = self.view_shape(render_factor)
        with self.progress.phase(f"{Path(path).name} at step {step} (view {view}, {h}x{w})"), \
                self.counting_rays(f"{Path(path).name}: view {view}", h * w) as count:
            rendered = self.render_view(model, self.poses[view], render_factor, count=count).rgb.cpu().clamp(0, 1)
        gt = Image.fromarray((255 * self.scene.images[view]).astype(np.uint8)).resize((w, h), Image.BOX)
        gt = torch.from_numpy(np.asarray(gt, dtype=np.float32) / 255.0)
        value = psnr(rendered, gt)
        side = torch.cat((gt, rendered), dim=1)
        Image.fromarray(to_uint8(side)).save(path)
        return value

    def truth(self, stride: int = 1) -> Dict[int, np.ndarray]:
        """The test views' ground truth {view: (H, W, 3) in [0, 1]}; every ``stride``-th pixel along each axis
        (``image[::k, ::k]``: the pixels a strided render renders, not resampled)."""
        return {v: self.scene.images[v][::stride, ::stride] for v in self.test_ids}

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, Any]:
        """Held-out views as eval.py scores them (8-bit renders, PSNR and SSIM per view, their means), and the
        derivative PSNR of the test views (network against Sobel of the ground truth, per pixel step).

        ``stride`` k (``--final_eval_stride``) scores every k-th pixel along each axis, ``(k i, k j)``: the
        render's rays at those pixels against the ground-truth pixels ``image[::k, ::k]`` and the Sobel
        targets (of the whole image, as at stride 1) there; nothing is resampled, so the PSNRs are those of
        1/k^2 of the pixels of the full evaluation, in 1/k^2 of the time. ``final_eval_shape`` is
        [views, H, W] of the grid scored."""
        if not self.test_ids:
            return {}
        model.eval()
        renders = self.test_renders(model, stride=stride)
        scores = score_views({v: to_uint8(r.rgb).astype(np.float32) / 255.0 for v, r in renders.items()},
                             self.truth(stride), stride)
        gradients = self.test_gradients(model, stride)
        grads = torch.stack([gradients[v] for v in self.test_ids])
        targets = torch.stack([view_gradient(self.scene.images[v], self.der_operator)[::stride, ::stride]
                               for v in self.test_ids])
        return {**scores.metrics(), "psnr_der_heldout": derivative_psnr(grads, targets),
                "num_heldout_views": len(self.test_ids),
                "final_eval_shape": [len(self.test_ids), scores.height, scores.width]}

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """``testset_<steps>/`` (the final test renders, for eval.py, unless a periodic render wrote them),
        ``heldout_views.png`` (ground truth, render, error, disparity per test view) and ``derivatives.png``
        (Sobel of the ground truth against the network's derivative, magnitudes), all from the final
        evaluation's renders. After a strided final evaluation (``final_eval_stride`` k > 1) the renders are
        those of every k-th pixel, written to ``testset_<steps>_stride<k>/`` (which eval.py does not score;
        it renders ``testset_<steps>/`` whole when asked)."""
        from ...reporting.plots import save_view_grid

        if not self.test_ids:
            return
        stride = int(metrics.get("final_eval_stride", 1))
        final = Path(run_dir) / (f"testset_{metrics['steps']:06d}" + (f"_stride{stride}" if stride > 1 else ""))
        if not (final.is_dir() and find_renders(final)):
            self.write_testset(model, final, stride=stride)
        renders, truth = self.test_renders(model, stride=stride), self.truth(stride)
        rows = []
        for view in self.test_ids:
            gt = torch.from_numpy(np.ascontiguousarray(truth[view]))
            pred = renders[view].rgb.cpu().clamp(0, 1)
            rows.append([(f"view {view}: ground truth", gt),
                         ("render", pred),
                         ("|error| (mean over RGB)", (pred - gt).abs().mean(-1)),
                         ("disparity", renders[view].disparity.cpu())])
        every = f", every {stride}th pixel" if stride > 1 else ""
        save_view_grid(Path(run_dir) / "heldout_views.png", rows,
                       suptitle=f"held-out views{every}: {metrics.get('psnr_heldout', float('nan')):.2f} dB, "
                                f"SSIM {metrics.get('ssim_heldout', float('nan')):.3f}")
        rows = []
        gradients = self.test_gradients(model, stride)
        for view in self.test_ids:
            target = view_gradient(self.scene.images[view], self.der_operator)[::stride, ::stride]
            magnitude = lambda g: g.pow(2).sum((-2, -1)).sqrt()  # noqa: E731  (H, W, 3, 2) -> (H, W)
            rows.append([(f"view {view}: |Sobel| of ground truth", magnitude(target)),
                         ("|d render / d pixel|", magnitude(gradients[view]))])
        save_view_grid(Path(run_dir) / "derivatives.png", rows, shared_scale=True,
                       suptitle=f"derivatives per pixel step{every}: "
                                f"{metrics.get('psnr_der_heldout', float('nan')):.2f} dB")

    def describe(self) -> List[str]:
        """Log lines: the scene, the split, the rays, the rendering."""
        s, r = self.scene, self.render_options
        lines = [f"scene: {s.datadir}, {s.num_views} views of {s.height}x{s.width} (LLFF factor {s.factor}), focal "
                 f"{self.focal:.2f} px; training views {self.train_ids}, test views {self.test_ids}",
                 f"training rays: 1 pixel in {self.stride}x{self.stride} of each training view (stride {self.stride}), "
                 f"{len(self.rays)} in all, "
                 f"{self.batch_size} per step; {r.num_samples} samples per ray in "
                 + ("NDC t in [0, 1]" if r.ndc else f"depth [{r.near:.3g}, {r.far:.3g}]")
                 + f"; derivative targets {self.der_operator} at {s.height}x{s.width}"]
        return lines + [f"note: {note}" for note in s.notes]

    def record(self) -> Dict[str, Any]:
        """What metrics.json records about the data, beside the metrics."""
        return {"scene": str(self.scene.datadir), "image_shape": [self.height, self.width, 3],
                "llff_factor": self.scene.factor, "stride": self.stride, "train_views": self.train_ids,
                "num_train_rays": len(self.rays)}


def render_options(rays: RayOptions, scene: LLFFScene) -> RenderOptions:
    """The :class:`RenderOptions` of a run's ray options (nerf-pytorch's keys); world depths from the scene's
    bounds without NDC (0.9 x the nearest bound to the farthest, as nerf-pytorch)."""
    ndc = not rays.no_ndc
    near, far = (0.0, 1.0) if ndc else (float(scene.bounds.min()) * 0.9, float(scene.bounds.max()))
    return RenderOptions(num_samples=rays.N_samples, perturb=rays.perturb > 0, raw_noise_std=rays.raw_noise_std,
                         ndc=ndc, near=near, far=far, lindisp=rays.lindisp, white_background=rays.white_bkgd,
                         chunk=rays.chunk, netchunk=rays.netchunk)


def load_scene_of(options: SceneOptions, run_dir: Path, llff_factor: Optional[int] = None) -> LLFFScene:
    """The scene the options name, at ``llff_factor`` (default the options'); relative paths from here, the
    synthetic scene made once in ``<run_dir>/data/``."""
    from ...data.scenes import load_scene

    return load_scene(options.datadir, llff_factor or options.llff_factor, synthetic_base_dir=Path(run_dir) / "data",
                      recenter=True, bd_factor=0.75, spherify=options.spherify, make_missing=options.llff_make_images)


def load_task(options: InverseRenderingOptions, device: torch.device, run_dir: Path) -> InverseRendering:
    """The :class:`InverseRendering` task of a run's options (what train and eval build)."""
    scene = load_scene_of(options.scene, run_dir)
    train_ids, test_ids = scene.split(options.scene.llffhold)
    return InverseRendering(scene, train_ids, test_ids, stride=options.factor, batch_size=options.N_rand,
                            render=render_options(options.rays, scene), supervision=options.supervision,
                            engine=options.engine, device=device, show_der_loss=options.show_der_loss,
                            eval_rays=options.eval_rays, block_size=options.block_size)


def build_model(options: NeRFOptions) -> nn.Module:
    """TinyNeRF from a run's model options (:func:`~sobolev_inr.models.nerf.tiny_nerf`)."""
    from ...models.nerf import tiny_nerf

    model = tiny_nerf(list(options.activations), options.netwidth, options.multires, options.i_embed, options.w0,
                      options.init, options.pe_pi_factor, options.spder_eps, options.act_scale, options.grid())
    if options.compile:
        from ...models import compile_model

        compile_model(model)
    return model


def load_trained(run_dir: Path, device: torch.device) -> Tuple[nn.Module, InverseRenderingOptions, int]:
    """(model, the run's options, step) of a run's latest checkpoint; DataError if it has none."""
    from ...training.checkpoints import latest_checkpoint, load_checkpoint, model_from_state

    ckpt = latest_checkpoint(Path(run_dir) / "checkpoints")
    if ckpt is None:
        raise DataError(f"no checkpoint in {Path(run_dir) / 'checkpoints'}: train the run first (python train.py with "
                        f"the same config), or check basedir and expname")
    state = load_checkpoint(ckpt)
    options = InverseRenderingOptions.from_config(state["config"])
    return model_from_state(state).to(device).eval(), options, state["step"]


def run_views(run_dir: Path) -> Tuple[Dict[int, np.ndarray], Dict[int, Path]]:
    """(ground truth, renders) of a finished run's test views at the training resolution: {view: (H, W, 3)
    in [0, 1]} and {view: the latest ``testset_<iter>/NNN.png``}. Relative data paths are resolved from the
    working directory the run was trained in (recorded in its checkpoints)."""
    from ...training.checkpoints import latest_checkpoint, load_checkpoint

    run_dir = Path(run_dir)
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    options = SceneOptions.from_config(json.loads((run_dir / "config.json").read_text()))
    base = Path(load_checkpoint(ckpt).get("working_dir", ".")) if ckpt else Path(".")
    if options.datadir != "synthetic":
        options = dataclasses.replace(options, datadir=resolve_path(options.datadir, base))
    scene = load_scene_of(options, run_dir)
    _, test_ids = scene.split(options.llffhold)
    sets = testset_dirs(run_dir)
    renders = find_renders(sets[max(sets)]) if sets else {}
    return {int(v): scene.images[v] for v in test_ids}, renders


def render_only(run_dir: Path, device: torch.device, test_views: bool = False, render_factor: float = 1.0,
                progress: Progress = QUIET) -> Path:
    """nerf-pytorch's ``render_only``: the spiral path (or the test views) of a trained run, into
    ``renderonly_<path|test>_<step>/``; ``progress`` shows the rays rendered and logs the phases' durations."""
    model, options, step = load_trained(run_dir, device)
    task = load_task(options, device, run_dir)
    task.progress = progress
    out = Path(run_dir) / f"renderonly_{'test' if test_views else 'path'}_{step:06d}"
    out.mkdir(parents=True, exist_ok=True)
    if test_views:
        task.write_testset(model, out)
    else:
        task.write_video(model, out, "", render_factor)
    print(f"rendered {'the test views' if test_views else 'the spiral path'} of {run_dir} at step {step}: {out}")
    return out


def write_scores(testset_dir: Path, scores: ViewScores, step: Optional[int] = None) -> None:
    """``score.txt`` (the original's format) and ``scores.json`` (the same numbers with the key names of
    every task's metrics.json, which eval.py also updates) in a testset folder."""
    testset_dir = Path(testset_dir)
    (testset_dir / "score.txt").write_text(scores.score_txt())
    (testset_dir / "scores.json").write_text(json.dumps({**scores.metrics(), "step": step}, indent=2) + "\n")


def evaluate_run(run_dir: Path, device: torch.device, eval_llff_factor: int = 0, align_pixels: bool = True,
                 rerender: bool = False, progress: Progress = QUIET) -> Dict[str, Any]:
    """Scores the test views of a trained run as the original eval.py did: for every ``testset_<iter>/``
    without a score, each render ``NNN.png`` against the ground truth of view NNN (by index), into
    ``score.txt`` and ``scores.json``; the latest checkpoint's views are rendered first when no folder holds
    them. With ``eval_llff_factor`` the views are also rendered and scored at that LLFF downsample in
    ``testset_<iter>_<H>x<W>/``. The run's metrics.json gains the scores, which are returned (``psnr_heldout``
    and the other keys of every pixel, ``heldout_stride`` 1, replacing a strided final evaluation's).
    ``progress`` shows the rays rendered and logs each phase's duration."""
    run_dir = Path(run_dir)
    model, options, step = load_trained(run_dir, device)
    task = load_task(options, device, run_dir)
    task.progress = progress
    print(f"evaluating {run_dir} (checkpoint at step {step}); test views {task.test_ids}")
    latest = run_dir / f"testset_{step:06d}"
    if rerender or not (latest.is_dir() and find_renders(latest)):
        print(f"rendering the test views into {latest}")
        task.write_testset(model, latest)
    truth, results = task.truth(), {}
    for at_step, folder in testset_dirs(run_dir).items():
        if at_step != step and (folder / "score.txt").exists():
            continue  # an older testset already scored (the original's rule)
        with progress.phase(f"scores of {folder.name}"):
            scores = score_renders(folder, truth)
        write_scores(folder, scores, at_step)
        results[at_step] = scores
        print(f"{folder}:\n{scores.score_txt()}", end="")
    update = results[step].metrics()
    if eval_llff_factor and eval_llff_factor != options.scene.llff_factor:
        scene = load_scene_of(options.scene, run_dir, eval_llff_factor)
        render_factor = eval_llff_factor / options.scene.llff_factor
        other = run_dir / f"testset_{step:06d}_{scene.height}x{scene.width}"
        if rerender or not (other.is_dir() and find_renders(other)):
            print(f"rendering the test views at {scene.height}x{scene.width} (LLFF factor {eval_llff_factor}) "
                  f"into {other}")
            task.write_testset(model, other, render_factor=render_factor, align_pixels=align_pixels)
        scores = score_renders(other, {v: scene.images[v] for v in task.test_ids})
        write_scores(other, scores, step)
        print(f"{other}:\n{scores.score_txt()}", end="")
        update.update(scores.metrics(f"_{scene.height}x{scene.width}"))
    metrics_file = run_dir / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        metrics.update(update)
        metrics_file.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return update

