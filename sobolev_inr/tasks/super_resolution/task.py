"""Single-image super-resolution (paper 004's Algorithm 1, paper 003's A.5): fit a network to a low-resolution
image, render it on the high-resolution grid, and score that against the high-resolution original, beside
bicubic upsampling of the same low-resolution image.

Both grids follow the one pixel-centre convention of :mod:`sobolev_inr.data.coords` (cells tiling [-1, 1]), so a
low-resolution pixel sits at the mean of the high-resolution pixels it was made from, as the resampling
filters (PIL's) assume. Paper 004 placed both grids by ``linspace(-1, 1, n)``, which puts the two images'
border pixels at the same coordinates although they are (factor - 1) / 2 high-resolution pixels apart.

* The low-resolution image is the high-resolution one downsampled by ``sr_factor`` with PIL's ``downsample``
  filter (``bilinear``: what the papers' ``Resize`` does to a PIL image; ``bicubic``, ``box``, ``lanczos``).
* Training is :class:`~sobolev_inr.tasks.regression.SobolevRegression` on every low-resolution pixel; derivative
  targets come from the low-resolution image (Sobel per low-resolution pixel step), in the same units as the
  network's derivative, as in image regression.
* Scores on the high-resolution image, all of it unseen at that resolution, under the names every task uses
  for what it did not train on: ``psnr_heldout`` (all channels, values in [0, 1], peak 1), ``psnr_luma_heldout``,
  ``ssim_heldout`` (on luma, the whole image), ``rho_ag_heldout``, ``psnr_grad_heldout`` (the network's
  derivative per high-resolution pixel step against the Sobel of the original); the same with ``bicubic``
  for the baseline, and ``psnr_train`` for the fit of the low-resolution image.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import torch
from torch import Tensor, nn

from ...config.options import EngineOptions, MemoryOptions, SupervisionOptions
from ...data.coords import derivative_scale, image_grid, image_step
from ...data.images import ImageData, prepare_image, resize_image
from ...data.targets import image_gradient
from ...errors import DataError
from ...metrics import derivative_psnr, luma, psnr, rho_ag, ssim, to_unit_range
from ..image_regression.task import strided
from ..regression import SampledSignalRegression, cache_name, predict, predict_jacobian, strided_grid, strided_shape
from . import SuperResolutionOptions

DOWNSAMPLE_FILTERS = ("bilinear", "bicubic", "box", "lanczos")


def low_resolution(image: Tensor, sr_factor: int, method: str = "bilinear", source: str = "image") -> Tensor:
    """``image (C, H, W)`` downsampled by ``sr_factor`` along both axes (H and W must be multiples of it) with
    PIL's ``method`` filter: (C, H / sr_factor, W / sr_factor)."""
    _, h, w = image.shape
    if sr_factor < 2:
        raise DataError(f"sr_factor must be >= 2, got {sr_factor}")
    if h % sr_factor or w % sr_factor:
        raise DataError(f"the {h}x{w} image ({source}) is not a multiple of sr_factor = {sr_factor}; set crop = True "
                        f"to crop it to {h - h % sr_factor}x{w - w % sr_factor}, or set sidelength")
    if h // sr_factor < 2 or w // sr_factor < 2:
        raise DataError(f"sr_factor = {sr_factor} leaves {h // sr_factor}x{w // sr_factor} pixels of the {h}x{w} "
                        f"image ({source}); use a smaller factor or a larger image")
    return resize_image(image, (h // sr_factor, w // sr_factor), method)


class SuperResolution(SampledSignalRegression):
    """Trains on every pixel of ``low`` (:class:`ImageData`, factor 1); renders and scores on the grid of
    ``high`` (C, H, W) in [-1, 1], whose size is ``sr_factor`` times the low-resolution one."""

    psnr_peak = 2.0  # values in [-1, 1]
    data: ImageData

    def __init__(self, low: ImageData, high: Tensor, sr_factor: int, *,
                 supervision: SupervisionOptions = SupervisionOptions(supervision="val"),
                 engine: EngineOptions = EngineOptions(), eval_chunk_size: int = 65536,
                 device: torch.device = torch.device("cpu"), memory: MemoryOptions = MemoryOptions()):
        super().__init__(low, supervision=supervision, engine=engine, eval_chunk_size=eval_chunk_size, device=device,
                         memory=memory)
        self.high, self.sr_factor, self.der_operator = high, sr_factor, supervision.der_operator
        self.high_coords = image_grid(*high.shape[1:]).to(device)

    @property
    def high_shape(self) -> Tuple[int, int]:
        return self.high.shape[1], self.high.shape[2]

    @cached_property
    def bicubic(self) -> Tensor:
        """The baseline: the low-resolution image upsampled to the high-resolution grid by PIL's bicubic."""
        return resize_image(self.data.image, self.high_shape, "bicubic")

    @cached_property
    def high_gradient(self) -> Tensor:
        """The original's gradient (``der_operator``) per high-resolution pixel step: (C, 2, H, W)."""
        return image_gradient(self.high, self.der_operator)

    def render(self, model: nn.Module, stride: int = 1) -> Tensor:
        """The network on every ``stride``-th pixel of the high-resolution grid along each axis (1: all of it):
        (C, H', W') in the value range, on CPU."""
        h, w = strided_shape(self.high_shape, stride)
        return self.once_per_weights(cache_name("image", stride), model, lambda: predict(
            model, strided_grid(self.high_coords, self.high_shape, stride), self.eval_chunk_size,
            progress=self.progress, desc="image").cpu().T.reshape(-1, h, w))

    def render_low(self, model: nn.Module) -> Tensor:
        """The network on the grid it was trained on: (C, h, w), on CPU."""
        h, w = self.data.shape
        return self.once_per_weights("low", model, lambda: predict(
            model, self.eval_coords, self.eval_chunk_size, progress=self.progress, desc="low resolution").cpu().T
            .reshape(-1, h, w))

    def render_gradient(self, model: nn.Module, stride: int = 1) -> Tensor:
        """The network's derivatives per high-resolution pixel step on every ``stride``-th pixel of that grid:
        (C, 2, H', W'), on CPU."""
        h, w = self.high_shape
        hs, ws = strided_shape(self.high_shape, stride)
        scale = derivative_scale(image_step(h, w), "pixel").to(self.high_coords)

        def compute():
            jac = predict_jacobian(model, strided_grid(self.high_coords, self.high_shape, stride), scale,
                                   self.eval_chunk_size, self.der_mode, progress=self.progress, desc="gradient").cpu()
            return jac.permute(1, 2, 0).reshape(jac.shape[1], 2, hs, ws)

        return self.once_per_weights(cache_name("gradient", stride), model, compute)

    def scores(self, image: Tensor, prefix: str = "", stride: int = 1) -> Dict[str, float]:
        """PSNR (all channels, luma), SSIM (luma) and rho_AG of ``image`` (C, H', W') in [-1, 1] against every
        ``stride``-th pixel of the original."""
        high = strided(self.high, stride)
        p, t = to_unit_range(image.float()), to_unit_range(high.float())
        return {f"psnr_{prefix}heldout": psnr(p, t), f"psnr_luma_{prefix}heldout": psnr(luma(p), luma(t)),
                f"ssim_{prefix}heldout": ssim(luma(p), luma(t)), f"rho_ag_{prefix}heldout": rho_ag(image, high)}

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        return self.scores(self.render(model))

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, Any]:
        """The network and the bicubic baseline on the high-resolution image, and the fit of the low-resolution
        one; the high-resolution scores on every ``stride``-th pixel along each axis (1: every pixel; the
        original, the bicubic image and their gradients taken at the same pixels), ``final_eval_shape`` [H', W'];
        the fit of the low-resolution image on all of its pixels."""
        model.eval()
        bicubic = strided(self.bicubic, stride)
        high_gradient = strided(self.high_gradient, stride)
        bicubic_grad = strided(image_gradient(self.bicubic, self.der_operator), stride)
        image = self.render(model, stride)
        return {**self.scores(image, stride=stride), **self.scores(bicubic, "bicubic_", stride),
                "psnr_grad_heldout": derivative_psnr(self.render_gradient(model, stride), high_gradient),
                "psnr_grad_bicubic_heldout": derivative_psnr(bicubic_grad, high_gradient),
                "psnr_train": psnr(to_unit_range(self.render_low(model)), to_unit_range(self.data.image)),
                "sr_factor": self.sr_factor, "low_shape": list(self.data.shape), "high_shape": list(self.high_shape),
                "final_eval_shape": list(image.shape[1:])}

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """super_resolution.png (the low-resolution input, bicubic, the network, the original, whole and a centre
        crop) and error_map.png (|error| of bicubic and of the network, one colour scale); super_resolved.png
        (8-bit, gray or RGB) and super_resolved.npy (the network's render, (H, W, C) float32 in [-1, 1]), and
        bicubic.png (the baseline, 8-bit). All at the final evaluation's pixels (``final_eval_stride`` in
        ``metrics``; 1: the original's resolution), drawn from its render (not rendered again)."""
        from ...reporting.outputs import save_array, save_image
        from ...reporting.plots import save_heatmaps, save_image_grid

        stride = int(metrics.get("final_eval_stride", 1))
        image, bicubic, high = self.render(model, stride), strided(self.bicubic, stride), strided(self.high, stride)
        save_image(run_dir / "super_resolved.png", image)
        save_array(run_dir / "super_resolved.npy", image)
        save_image(run_dir / "bicubic.png", bicubic)
        h, w = high.shape[1:]
        low = torch.repeat_interleave(torch.repeat_interleave(self.data.image, self.sr_factor, 1), self.sr_factor, 2)
        shown = f" (every {stride}th pixel)" if stride > 1 else ""
        panels = [(f"input {self.data.shape[0]}x{self.data.shape[1]} (nearest x{self.sr_factor})",
                   strided(low, stride)),
                  (f"bicubic {metrics['psnr_bicubic_heldout']:.2f} dB", bicubic),
                  (f"network {metrics['psnr_heldout']:.2f} dB", image),
                  (f"original {self.high_shape[0]}x{self.high_shape[1]}{shown}", high)]
        rows, cols = slice(h * 3 // 8, h * 5 // 8), slice(w * 3 // 8, w * 5 // 8)
        grid = [[(t, to_unit_range(x)) for t, x in panels],
                [(f"{t.split(' ')[0]}, centre crop", to_unit_range(x[:, rows, cols])) for t, x in panels]]
        save_image_grid(run_dir / "super_resolution.png", grid,
                        suptitle=f"x{self.sr_factor} super-resolution (PSNR on the {h}x{w} original{shown}, peak 1)")
        errors = [("|bicubic - original|", (bicubic - high).abs().mean(0) / 2),
                  ("|network - original|", (image - high).abs().mean(0) / 2)]
        save_heatmaps(run_dir / "error_map.png", errors, suptitle="mean abs error per pixel, values in [0, 1]",
                      label="abs error")


def super_resolution_task(options: SuperResolutionOptions, device: torch.device = torch.device("cpu"),
                          base_dir: Path = Path(".")) -> SuperResolution:
    """The :class:`SuperResolution` of a run's options (the entry's, and a reload's); relative paths are taken
    from ``base_dir``."""
    from ..image_regression.task import load_image_source

    image, name, notes = load_image_source(options.source, base_dir)
    factor = options.sr_factor
    _, h, w = image.shape
    if options.source.crop and (h % factor or w % factor):
        image = image[:, : h - h % factor, : w - w % factor].contiguous()
        notes = [*notes, f"cropped from {h}x{w} to {image.shape[1]}x{image.shape[2]} (a multiple of sr_factor)"]
    low = low_resolution(image, factor, options.downsample, name)
    notes = [*notes, f"downsampled x{factor} to {low.shape[1]}x{low.shape[2]} ({options.downsample})"]
    data = prepare_image(low, 1, options.supervision.der_operator, source=name, notes=notes)
    return SuperResolution(data, image, factor, supervision=options.supervision, engine=options.engine,
                           eval_chunk_size=options.eval_chunk_size, device=device, memory=options.memory)
