"""Image regression (Sobolev-INR paper, section 4.1): fit an MLP to an image from 1/factor^2 of its pixels.

Metrics follow the original protocol (:mod:`sobolev_inr.metrics`): the network is queried on the full
grid and scored on the held-out pixels; derivatives are scored against the full-resolution
targets, per pixel step: the gradient against the Sobel (or diff) target (``psnr_grad_*``, also
reported as ``psnr_der_*``, the name every task uses for its first derivatives) and the Laplacian
against the 5-point one (``psnr_lapl_*``).

Every evaluation also reports SPDER's frequency similarity ``rho_ag_full`` (paper 003: the cosine similarity of
the amplitude spectra of the rendered and the true image, in [-1, 1] values; :func:`sobolev_inr.metrics.rho_ag`).

Poisson reconstruction (SIREN's, ``supervision`` ``der`` or ``lapl``, usually with ``factor = 1``): the
image is fixed only up to what the supervision cannot see, so the value metrics add ``psnr_offset_full``
(the best constant removed, ours) and ``psnr_minmax_full`` (each image rescaled to [0, 1] by its min
and max, as SIREN's summaries show them); see :func:`sobolev_inr.metrics.poisson_image_psnrs`.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Dict, Mapping

import torch
from torch import Tensor, nn

from ...config.options import ImageSource
from ...data.coords import derivative_scale
from ...errors import ConfigError
from ...data.images import ImageData, LoadedImage, load_image, square_image
from ...metrics import (derivative_psnr, image_quality, poisson_image_psnrs, psnr, remove_offset, rho_ag,
                       to_unit_range)
from ...data.targets import image_laplacian
from ..regression import (SampledSignalRegression, cache_name, predict, predict_jacobian, predict_laplacian,
                          strided_grid, strided_shape)
from . import ImageRegressionOptions, stride_error


class ImageRegression(SampledSignalRegression):
    """Training on ``data``'s training pixels; evaluation and figures on the full image.

    With ``factor = 1`` every pixel is trained on and nothing is held out: the held-out metrics are
    then absent (not NaN), and the full-image ones stand alone. With a ``target_scale`` k (SIREN's
    Poisson scaling) the network fits k times the image; renders divide by k, so that every metric and
    figure is in the image's own units.
    """

    psnr_peak = 2.0  # values in [-1, 1]
    data: ImageData

    @property
    def is_poisson(self) -> bool:
        """Supervised on derivatives only (``der``, ``lapl``): the image is known up to a constant or more."""
        return self.supervision.value_weight == 0.0

    def grid(self, stride: int = 1) -> Tensor:
        """Coordinates of every ``stride``-th pixel of the full grid along each axis: (H' W', 2), row-major."""
        return strided_grid(self.eval_coords, self.data.shape, stride)

    def render(self, model: nn.Module, stride: int = 1) -> Tensor:
        """The network's image on every ``stride``-th pixel of the full grid (1: all of it): (C, H', W') in the
        value range, on CPU."""
        h, w = strided_shape(self.data.shape, stride)
        return self.once_per_weights(cache_name("image", stride), model, lambda: predict(
            model, self.grid(stride), self.eval_chunk_size, progress=self.progress,
            desc="image").cpu().T.reshape(-1, h, w) / self.target_scale)

    def render_gradient(self, model: nn.Module, stride: int = 1) -> Tensor:
        """The network's derivatives per pixel step on every ``stride``-th pixel of the full grid: (C, 2, H', W'),
        on CPU."""
        h, w = strided_shape(self.data.shape, stride)
        scale = derivative_scale(self.data.pixel_step, "pixel").to(self.eval_coords)

        def compute():
            jac = predict_jacobian(model, self.grid(stride), scale, self.eval_chunk_size, self.der_mode,
                                   progress=self.progress, desc="gradient").cpu()
            return jac.permute(1, 2, 0).reshape(jac.shape[1], 2, h, w) / self.target_scale

        return self.once_per_weights(cache_name("gradient", stride), model, compute)

    def render_laplacian(self, model: nn.Module, stride: int = 1) -> Tensor:
        """The network's Laplacian per pixel step squared on every ``stride``-th pixel of the full grid:
        (C, H', W'), on CPU."""
        h, w = strided_shape(self.data.shape, stride)
        scale = derivative_scale(self.data.pixel_step, "pixel").to(self.eval_coords)

        def compute():
            lap = predict_laplacian(model, self.grid(stride), scale, self.eval_chunk_size, progress=self.progress,
                                    desc="Laplacian").cpu()
            return lap.T.reshape(-1, h, w) / self.target_scale

        return self.once_per_weights(cache_name("laplacian", stride), model, compute)

    @cached_property
    def laplacian_target(self) -> torch.Tensor:
        """The 5-point Laplacian of the full image per pixel step squared: (C, H, W)."""
        return image_laplacian(self.data.image)

    def rho_ag(self, model: nn.Module, stride: int = 1) -> float:
        """rho_AG of the rendered image on every ``stride``-th pixel (a Poisson reconstruction with the best
        constant removed, the constant being what its supervision cannot see)."""
        pred, target = self.render(model, stride), strided(self.data.image, stride)
        return rho_ag(remove_offset(pred, target) if self.is_poisson else pred, target)

    def check_stride(self, stride: int) -> None:
        """ConfigError when scoring every ``stride``-th pixel would leave no held-out pixel to score (a stride
        that is a multiple of ``factor`` picks training pixels only)."""
        if self.has_heldout and not strided(self.data.heldout, stride).any():
            raise ConfigError(stride_error(stride, self.data.factor, "pixel"))

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """Held-out PSNR (RGB and luma) and SSIM, as in the paper; full-image ones when nothing is held out;
        the offset-aligned PSNR for a Poisson reconstruction; rho_AG of the full image."""
        pred, target = self.render(model), self.data.image
        spectrum = {"rho_ag_full": self.rho_ag(model)}
        if self.is_poisson:
            return {"psnr_offset_full": poisson_image_psnrs(pred, target)["psnr_offset"], **spectrum}
        if not self.has_heldout:
            q = image_quality(pred, target, self.data.factor, torch.ones_like(self.data.heldout))
            return {"psnr_full": q["psnr"], "psnr_luma_full": q["psnr_luma"], "ssim_full": q["ssim"], **spectrum}
        q = image_quality(pred, target, self.data.factor, self.data.heldout)
        return {"psnr_heldout": q["psnr"], "psnr_luma_heldout": q["psnr_luma"], "ssim_heldout": q["ssim"], **spectrum}

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, Any]:
        """Everything ``metrics.json`` reports for an image: held-out (when any pixel is held out) and
        full-grid, values and derivatives, scored on every ``stride``-th pixel along each axis (1: every pixel;
        the targets and the held-out mask are taken at the same pixels, SSIM's border crop is ``factor``
        pixels of the full grid, rounded up to whole strided pixels); ``final_eval_shape`` [H', W']."""
        self.check_stride(stride)
        model.eval()
        pred, target, mask = self.render(model, stride), strided(self.data.image, stride), strided(self.data.heldout,
                                                                                                     stride)
        crop = -(-self.data.factor // stride)
        q_full = image_quality(pred, target, crop, torch.ones_like(mask))
        grad, lap = self.render_gradient(model, stride), self.render_laplacian(model, stride)
        grad_target, lap_target = strided(self.data.gradient, stride), strided(self.laplacian_target, stride)
        grad_full = derivative_psnr(grad, grad_target)
        metrics = {
            "psnr_full": q_full["psnr"], "psnr_luma_full": q_full["psnr_luma"],
            "psnr_train": psnr(to_unit_range(pred[:, ~mask]), to_unit_range(target[:, ~mask])),
            "psnr_grad_full": grad_full, "psnr_der_full": grad_full,
            "psnr_lapl_full": derivative_psnr(lap, lap_target), "rho_ag_full": self.rho_ag(model, stride),
            "num_heldout_samples": int(mask.sum()), "final_eval_shape": list(pred.shape[1:]),
        }
        if self.is_poisson:
            metrics.update({f"{k}_full": v for k, v in poisson_image_psnrs(pred, target).items()},
                           target_scale=self.target_scale)
        if not self.has_heldout:
            return {**metrics, "ssim_full": q_full["ssim"]}
        q = image_quality(pred, target, crop, mask)
        grad_heldout = derivative_psnr(grad[..., mask], grad_target[..., mask])
        return {"psnr_heldout": q["psnr"], "psnr_luma_heldout": q["psnr_luma"], "ssim_heldout": q["ssim"],
                "psnr_grad_heldout": grad_heldout, "psnr_der_heldout": grad_heldout,
                "psnr_lapl_heldout": derivative_psnr(lap[:, mask], lap_target[:, mask]), **metrics}

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """reconstruction.png (figure: ground truth and reconstruction), error_map.png, gradient_magnitude.png and
        laplacian.png in ``run_dir`` (a Poisson reconstruction is shown with the best constant removed); and the
        reconstruction alone: reconstruction_raw.png (8-bit, gray or RGB, as shown: a Poisson one with the best
        constant removed) and reconstruction.npy (the render, (H, W, C) float32 in [-1, 1] units, divided by
        ``target_scale``, no constant removed). All at the final evaluation's pixels (``final_eval_stride`` in
        ``metrics``; 1: the image's resolution), drawn from its renders (not rendered again)."""
        from ...reporting.outputs import save_array, save_image
        from ...reporting.plots import save_heatmaps, save_image_panels

        stride = int(metrics.get("final_eval_stride", 1))
        pred, target = self.render(model, stride), strided(self.data.image, stride)
        save_array(run_dir / "reconstruction.npy", pred)
        if self.is_poisson:
            pred = remove_offset(pred, target)
        save_image(run_dir / "reconstruction_raw.png", pred)
        pred, target = to_unit_range(pred), to_unit_range(target)
        where = "held-out" if self.has_heldout else "all pixels, all trained on"
        if stride > 1:
            where += f", every {stride}th pixel"
        shown = metrics["psnr_heldout" if self.has_heldout else "psnr_full"]
        title = f"reconstruction ({shown:.2f} dB {where})"
        if self.is_poisson:
            title = (f"from its {'gradient' if self.supervision.name == 'der' else 'Laplacian'}, constant removed\n"
                     f"({metrics['psnr_offset_full']:.2f} dB; SIREN's min-max {metrics['psnr_minmax_full']:.2f} dB)")
        save_image_panels(run_dir / "reconstruction.png", [("ground truth", target), (title, pred)])
        error = (pred - target).abs().mean(dim=0)
        save_heatmaps(run_dir / "error_map.png", [("|reconstruction - ground truth|", error)],
                      suptitle="mean abs error per pixel, values in [0, 1]", label="abs error")
        grad = self.render_gradient(model, stride)
        shown = metrics["psnr_der_heldout" if self.has_heldout else "psnr_der_full"]
        save_heatmaps(run_dir / "gradient_magnitude.png",
                      [("target |grad|", gradient_magnitude(strided(self.data.gradient, stride))),
                       (f"network |grad| ({shown:.2f} dB {where})", gradient_magnitude(grad))],
                      suptitle="gradient magnitude per pixel step (values in [-1, 1] units)", label="|grad|")
        shown = metrics["psnr_lapl_heldout" if self.has_heldout else "psnr_lapl_full"]
        save_heatmaps(run_dir / "laplacian.png",
                      [("target (5-point Laplacian)", strided(self.laplacian_target, stride).mean(dim=0)),
                       (f"network Laplacian ({shown:.2f} dB {where})",
                        self.render_laplacian(model, stride).mean(dim=0))],
                      suptitle="Laplacian per pixel step squared (values in [-1, 1] units), mean over channels",
                      cmap="RdBu_r", label="Laplacian", signed=True)


def strided(image: Tensor, stride: int) -> Tensor:
    """Every ``stride``-th pixel along each axis of ``image (..., H, W)`` (a view)."""
    return image[..., ::stride, ::stride]


def gradient_magnitude(gradient: torch.Tensor) -> torch.Tensor:
    """(C, 2, H, W) derivatives -> (H, W): the root of their squares summed over channels and axes."""
    return gradient.pow(2).sum(dim=(0, 1)).sqrt()


def load_image_source(source: ImageSource, base_dir: Path = Path(".")) -> LoadedImage:
    """The image ``source`` names, centre-cropped to a square and resized to its ``sidelength`` if set; its
    relative paths are taken from ``base_dir`` (a run's working directory)."""
    source = source.relative_to(base_dir)
    image, name, notes = load_image(source.filename, source.data_root, source.dataset, source.is_gray)
    image, resize_notes = square_image(image, source.sidelength)
    return LoadedImage(image, name, [*notes, *resize_notes])


def image_task(options: ImageRegressionOptions, device: torch.device = torch.device("cpu"),
               base_dir: Path = Path(".")) -> ImageRegression:
    """The :class:`ImageRegression` of a run's options (what the entry builds, and what :func:`load_run`
    rebuilds); relative paths are taken from ``base_dir``."""
    from ...data.images import prepare_image
    from ...data.targets import siren_target_scale

    image, name, notes = load_image_source(options.source, base_dir)
    supervision = options.supervision
    data = prepare_image(image, options.factor, supervision.der_operator, options.der_on_downsampled,
                         options.source.crop, name, notes)
    siren = options.target_scaling == "siren"
    target_scale = siren_target_scale(supervision.supervision, data.derivative_step) if siren else 1.0
    return ImageRegression(data, supervision=supervision, engine=options.engine, batch_size=options.batch_size,
                           eval_chunk_size=options.eval_chunk_size, device=device, target_scale=target_scale,
                           memory=options.memory)


def load_run(run_dir: Path, device: torch.device = torch.device("cpu")):
    """(model, ImageRegression task, metrics) of a finished image-regression run, rebuilt from its
    newest checkpoint and resolved config."""
    import json

    from ...training.checkpoints import rebuild_run

    model, task = rebuild_run(run_dir, lambda config, base: image_task(ImageRegressionOptions.from_config(config),
                                                                       device, base))
    metrics_file = Path(run_dir) / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else task.final_metrics(model.to(device))
    return model.to(device).eval(), task, metrics


def compare_runs(run_dirs, out: Path, labels=None, crop=None) -> None:
    """One figure comparing finished runs on the same image: reconstructions (top) and gradient
    magnitudes (bottom), the ground truth and its Sobel target first. ``crop``: (row0, row1, col0, col1)."""
    from matplotlib.figure import Figure

    loaded = [load_run(d) for d in run_dirs]
    labels = labels or [Path(d).name for d in run_dirs]
    task0 = loaded[0][1]
    rows, cols = (slice(crop[0], crop[1]), slice(crop[2], crop[3])) if crop else (slice(None), slice(None))
    images = [("ground truth", to_unit_range(task0.data.image))]
    grads = [("target (Sobel)", gradient_magnitude(task0.data.gradient))]
    for (model, task, metrics), label in zip(loaded, labels):
        images.append((f"{label}\n{metrics['psnr_luma_heldout']:.2f} dB, SSIM {metrics['ssim_heldout']:.3f}",
                       to_unit_range(task.render(model))))
        grads.append((f"{label}\nderivative {metrics['psnr_der_heldout']:.2f} dB",
                      gradient_magnitude(task.render_gradient(model))))
    vmax = float(grads[0][1].quantile(0.995))
    fig = Figure(figsize=(3.6 * len(images), 7.4))
    axes = fig.subplots(2, len(images), squeeze=False)
    for ax, (title, img) in zip(axes[0], images):
        arr = img[:, rows, cols].clamp(0, 1).permute(1, 2, 0).numpy()
        ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    for ax, (title, g) in zip(axes[1], grads):
        ax.imshow(g[rows, cols].numpy(), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
