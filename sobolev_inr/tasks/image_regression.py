"""Image regression (Sobolev-INR paper, section 4.1): fit an MLP to an image from 1/factor^2 of its pixels.

Metrics follow the original protocol (:mod:`sobolev_inr.metrics`): the network is queried on the full
grid and scored on the held-out pixels; derivatives are scored against the full-resolution
targets, per pixel step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch
from torch import nn

from ..coords import derivative_scale
from ..data.images import ImageData
from ..metrics import derivative_psnr, image_quality, psnr, to_unit_range
from ..plots import save_heatmaps, save_image_panels
from ..regression import SobolevRegression, predict, predict_jacobian


class ImageRegression(SobolevRegression):
    """Training on ``data``'s training pixels; evaluation and figures on the full image."""

    psnr_peak = 2.0  # values in [-1, 1]

    def __init__(self, data: ImageData, supervision: str = "val_der", lambda_der: float = 1.0,
                 der_units: str = "pixel", der_mode: str = "auto", batch_size: int = 0,
                 eval_chunk_size: int = 65536, device: torch.device = torch.device("cpu")):
        super().__init__(data.train_coords, data.train_values, data.train_jacobian, data.train_second_differences,
                         data.derivative_step, supervision, lambda_der, der_units, der_mode, batch_size, device)
        self.data = data
        self.eval_chunk_size = eval_chunk_size
        self.eval_coords = data.coords.to(device)

    def render(self, model: nn.Module) -> torch.Tensor:
        """The network's image on the full grid: (C, H, W) in the value range, on CPU."""
        h, w = self.data.shape
        out = predict(model, self.eval_coords, self.eval_chunk_size).cpu()
        return out.T.reshape(-1, h, w)

    def render_gradient(self, model: nn.Module) -> torch.Tensor:
        """The network's derivatives per pixel step on the full grid: (C, 2, H, W), on CPU."""
        h, w = self.data.shape
        scale = derivative_scale(self.data.pixel_step, "pixel").to(self.eval_coords)
        jac = predict_jacobian(model, self.eval_coords, scale, self.eval_chunk_size, self.der_mode).cpu()
        return jac.permute(1, 2, 0).reshape(jac.shape[1], 2, h, w)

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """Held-out PSNR (RGB and luma) and SSIM, as in the paper."""
        q = image_quality(self.render(model), self.data.image, self.data.factor, self.data.heldout)
        return {"psnr_heldout": q["psnr"], "psnr_luma_heldout": q["psnr_luma"], "ssim_heldout": q["ssim"]}

    def final_metrics(self, model: nn.Module) -> Dict[str, float]:
        """Everything ``metrics.json`` reports for an image: held-out and full-grid, values and derivatives."""
        model.eval()
        pred = self.render(model)
        target = self.data.image
        q = image_quality(pred, target, self.data.factor, self.data.heldout)
        full = torch.ones_like(self.data.heldout)
        q_full = image_quality(pred, target, self.data.factor, full)
        grad = self.render_gradient(model)
        mask = self.data.heldout
        return {
            "psnr_heldout": q["psnr"], "psnr_luma_heldout": q["psnr_luma"], "ssim_heldout": q["ssim"],
            "psnr_full": q_full["psnr"], "psnr_luma_full": q_full["psnr_luma"],
            "psnr_train": psnr(to_unit_range(pred[:, ~mask]), to_unit_range(target[:, ~mask])),
            "psnr_der_heldout": derivative_psnr(grad[..., mask], self.data.gradient[..., mask]),
            "psnr_der_full": derivative_psnr(grad, self.data.gradient),
        }

    def write_figures(self, model: nn.Module, run_dir: Path, metrics: Dict[str, float]) -> None:
        """reconstruction.png, error_map.png and gradient_magnitude.png in ``run_dir``."""
        pred = to_unit_range(self.render(model))
        target = to_unit_range(self.data.image)
        save_image_panels(run_dir / "reconstruction.png",
                          [("ground truth", target), (f"reconstruction ({metrics['psnr_heldout']:.2f} dB held-out)", pred)])
        error = (pred - target).abs().mean(dim=0)
        save_heatmaps(run_dir / "error_map.png", [("|reconstruction - ground truth|", error)],
                      suptitle="mean abs error per pixel, values in [0, 1]", label="abs error")
        grad = self.render_gradient(model)
        magnitude = lambda g: g.pow(2).sum(dim=(0, 1)).sqrt()  # noqa: E731  (C, 2, H, W) -> (H, W)
        save_heatmaps(run_dir / "gradient_magnitude.png",
                      [("target |grad|", magnitude(self.data.gradient)),
                       (f"network |grad| ({metrics['psnr_der_heldout']:.2f} dB held-out)", magnitude(grad))],
                      suptitle="gradient magnitude per pixel step (values in [-1, 1] units)", label="|grad|")
