"""Quality metrics, computed as the original code computes them so our numbers compare with the papers'.

Images enter in the training range [-1, 1] as ``(C, H, W)`` and are mapped to [0, 1] first.

* ``psnr``: 10 log10(peak^2 / MSE).
* ``luma``: Y = (65.738 R + 129.057 G + 25.064 B) / 256 with R, G, B in [0, 1] (BT.601 weights,
  no +16 offset, no clamping), as the Sobolev-INR code; a 1-channel image is its own luma.
* ``ssim``: kornia's SSIM with an 11-pixel Gaussian window, averaged over the map.
* :func:`image_quality`: the paper's protocol: luma PSNR over the held-out pixels, SSIM over the
  whole luma image cropped by ``factor`` pixels at every border, and RGB PSNR beside them.
* :func:`frame_quality`: a clip's PSNR and SSIM frame by frame.
* :func:`derivative_psnr`: PSNR of derivative maps against their targets, with the target's
  dynamic range (max - min) as the peak.
* :func:`rho_ag`: SPDER's frequency similarity rho_AG (paper 003, Eq. 5), the cosine similarity of the
  amplitude spectra of prediction and ground truth.

An image fitted from its gradient alone is fixed only up to a constant (from its Laplacian, up to a
harmonic function), so Poisson reconstructions are scored after an alignment:

* :func:`remove_offset` (ours): the prediction shifted by the constant, per channel, that best
  matches the target (least squares: the mean difference);
* :func:`minmax_rescale` (SIREN's summaries): each image mapped to [0, 1] by its own min and max,
  the prediction first clamped to its (p, 100 - p) percentiles (SIREN's ``rescale_img``); this also
  removes a scale.
"""
from __future__ import annotations

from typing import Dict, Optional

import kornia
import torch
from torch import Tensor

from .data.coords import heldout_mask

LUMA_WEIGHTS = (65.738 / 256.0, 129.057 / 256.0, 25.064 / 256.0)


def psnr(pred: Tensor, target: Tensor, peak: float = 1.0) -> float:
    """PSNR in dB; +inf when the two are identical. ``pred`` and ``target`` must have the same shape."""
    if pred.shape != target.shape:  # broadcasting would average over a different set of pairs
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    mse = torch.mean((pred.double() - target.double()) ** 2).item()
    if mse == 0.0:
        return float("inf")
    return 10.0 * torch.log10(torch.tensor(peak ** 2 / mse, dtype=torch.float64)).item()


def to_unit_range(image: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1]."""
    return image * 0.5 + 0.5


def luma(image: Tensor) -> Tensor:
    """(C, H, W) in [0, 1] -> (1, H, W); C must be 1 or 3."""
    if image.shape[0] == 1:
        return image
    if image.shape[0] != 3:
        raise ValueError(f"luma needs 1 or 3 channels, got {image.shape[0]}")
    w = torch.tensor(LUMA_WEIGHTS, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * w).sum(dim=0, keepdim=True)


def ssim(pred: Tensor, target: Tensor, window_size: int = 11) -> float:
    """Mean SSIM of two (C, H, W) images in [0, 1] (kornia, Gaussian window, sigma 1.5)."""
    return kornia.metrics.ssim(pred.unsqueeze(0), target.unsqueeze(0), window_size, max_val=1.0).mean().item()


def image_quality(pred: Tensor, target: Tensor, factor: int, mask: Optional[Tensor] = None) -> Dict[str, float]:
    """The image-regression metrics for ``pred``, ``target`` (C, H, W) in [-1, 1].

    ``mask`` (H, W) selects the pixels PSNR is measured on (default: the held-out pixels for
    ``factor``). SSIM is on the whole luma image cropped by ``factor`` pixels at each border.
    Returns ``psnr`` (all channels), ``psnr_luma`` and ``ssim``.
    """
    p, t = to_unit_range(pred.float()), to_unit_range(target.float())
    if mask is None:
        mask = heldout_mask(t.shape[1], t.shape[2], factor, device=t.device)
    yp, yt = luma(p), luma(t)
    crop = (slice(None), slice(factor, -factor or None), slice(factor, -factor or None))
    return {
        "psnr": psnr(p[:, mask], t[:, mask]),
        "psnr_luma": psnr(yp[:, mask], yt[:, mask]),
        "ssim": ssim(yp[crop], yt[crop]),
    }


def frame_quality(pred: Tensor, target: Tensor) -> Dict[str, list]:
    """Per-frame quality of a clip, ``pred`` and ``target`` (T, C, H, W) in [-1, 1]: ``psnr`` (all channels,
    values mapped to [0, 1], peak 1) and ``ssim`` (of the luma, whole frame, as :func:`ssim`), lists of T floats."""
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    p, t = to_unit_range(pred.float()), to_unit_range(target.float())
    yp, yt = torch.stack([luma(f) for f in p]), torch.stack([luma(f) for f in t])
    ssims = kornia.metrics.ssim(yp, yt, 11, max_val=1.0).mean(dim=(1, 2, 3))
    return {"psnr": [psnr(a, b) for a, b in zip(p, t)], "ssim": ssims.tolist()}


def derivative_psnr(pred: Tensor, target: Tensor) -> float:
    """PSNR of derivatives against their targets, peak = target.max() - target.min()."""
    peak = (target.max() - target.min()).item()
    if peak == 0.0:
        return float("nan")
    return psnr(pred, target, peak=peak)


def remove_offset(pred: Tensor, target: Tensor) -> Tensor:
    """``pred (C, ...)`` plus, per channel, the constant that minimises its squared error to ``target``."""
    diff = (target.double() - pred.double()).reshape(pred.shape[0], -1).mean(dim=1)
    return pred + diff.to(pred.dtype).reshape(-1, *[1] * (pred.dim() - 1))


def minmax_rescale(image: Tensor, percentile: float = 0.0) -> Tensor:
    """``image`` mapped to [0, 1] by its min and max over all entries, after clamping it to its
    (percentile, 100 - percentile) percentiles; a constant image maps to 0.5 (SIREN's ``rescale_img``)."""
    x = image.double()
    if percentile > 0.0:
        q = torch.tensor([percentile / 100.0, 1.0 - percentile / 100.0], dtype=x.dtype)
        lo, hi = torch.quantile(x.flatten(), q).tolist()
        x = x.clamp(lo, hi)
    lo, hi = x.min(), x.max()
    if hi == lo:
        return torch.full_like(image, 0.5)
    return ((x - lo) / (hi - lo)).to(image.dtype)


SIREN_PRED_PERCENTILE = 1e-2
"""SIREN's Poisson summaries clamp the prediction to its 0.01 and 99.99 percentiles before rescaling."""


def poisson_image_psnrs(pred: Tensor, target: Tensor) -> Dict[str, float]:
    """PSNRs of a Poisson reconstruction ``pred`` against ``target`` (C, H, W) in [-1, 1], peak 1 on [0, 1]:
    ``psnr_offset`` (:func:`remove_offset`, ours) and ``psnr_minmax`` (:func:`minmax_rescale`, SIREN's)."""
    return {
        "psnr_offset": psnr(to_unit_range(remove_offset(pred, target)), to_unit_range(target)),
        "psnr_minmax": psnr(minmax_rescale(pred, SIREN_PRED_PERCENTILE), minmax_rescale(target)),
    }


def rho_ag(pred: Tensor, target: Tensor, signal_dims: int = 2) -> float:
    """SPDER's rho_AG (paper 003, Eq. 5): the cosine similarity of the amplitude spectra |FFT| of ``pred`` and
    ``target``, in [0, 1] (1: the same amplitude at every frequency).

    The FFT runs over the last ``signal_dims`` dimensions (2 for images ``(C, H, W)``, 1 for audio ``(C, N)``);
    the amplitudes of all leading entries (channels) form one vector, as the paper forms one from a
    single channel. Values are used as given: images in [-1, 1], the range SPDER computes it in (the
    zero-frequency amplitude depends on it). Phases are ignored, so a circular shift of either leaves it
    at 1, and the ordering of the frequencies (SPDER's zero-centring, ``fftshift``) does not change it.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    dims = tuple(range(-signal_dims, 0))
    a = torch.fft.fftn(pred.double(), dim=dims).abs().flatten()
    g = torch.fft.fftn(target.double(), dim=dims).abs().flatten()
    norm = (a.norm() * g.norm()).item()
    if norm == 0.0:
        return float("nan")
    return (a @ g).item() / norm
