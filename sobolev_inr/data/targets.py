"""Derivative targets from sampled signals, per sample step (see :mod:`sobolev_inr.data.coords`).

Images are ``(C, H, W)``; first derivatives come back as ``(C, 2, H, W)`` with axis 0 = d/dx
(along the width) and axis 1 = d/dy (along the height), kornia's order. Borders are replicated.

* ``sobel``: kornia's normalised Sobel (the raw response divided by 8), a smoothed unit-spacing
  central difference; the original code's default.
* ``diff``: kornia's normalised central difference, (f[i+1] - f[i-1]) / 2.

Second derivatives (for the Laplacian) use the 3-point stencil f[i+1] - 2 f[i] + f[i-1] per axis,
whose sum is the 5-point discrete Laplacian. All are exact for low-order polynomials and
second-order accurate for smooth signals.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError


def _check_image(image: Tensor) -> None:
    if image.dim() != 3:
        raise ValueError(f"expected an image of shape (C, H, W), got {tuple(image.shape)}")
    if image.shape[1] < 2 or image.shape[2] < 2:
        raise ValueError(f"image must be at least 2x2 pixels, got {tuple(image.shape[1:])}")


BAND_PIXELS = 2 ** 20
"""Pixels per band of rows in which :func:`image_gradient` filters a big image (kornia's convolution holds about
ten times its input: a band bounds that, whatever the image's size)."""


def _kornia_gradient(mode: str) -> Callable[[Tensor], Tensor]:
    def gradient(image: Tensor) -> Tensor:
        _check_image(image)
        c, h, w = image.shape
        rows = max(1, BAND_PIXELS // (c * w))
        if rows >= h:
            return kornia.filters.spatial_gradient(image.unsqueeze(0), mode=mode, order=1, normalized=True).squeeze(0)
        # Bands of rows, each filtered with one row of its neighbours on either side (the 3x3 stencil's reach) and
        # the image's own border replicated at its top and bottom: the same values as the whole image at once.
        out = torch.empty(c, 2, h, w, dtype=image.dtype, device=image.device)
        for start in range(0, h, rows):
            stop = min(start + rows, h)
            low, high = max(start - 1, 0), min(stop + 1, h)
            band = kornia.filters.spatial_gradient(image[None, :, low:high], mode=mode, order=1, normalized=True)
            out[:, :, start:stop] = band[0, :, :, start - low:stop - low]
        return out
    return gradient


DERIVATIVE_OPERATORS: Dict[str, Callable[[Tensor], Tensor]] = {
    "sobel": _kornia_gradient("sobel"),
    "diff": _kornia_gradient("diff"),
}
"""Config name (``der_operator``) -> function (C, H, W) -> (C, 2, H, W), per pixel step."""


def image_gradient(image: Tensor, operator: str = "sobel") -> Tensor:
    """First derivatives of ``image (C, H, W)`` per pixel step: (C, 2, H, W), [d/dx, d/dy]."""
    if operator not in DERIVATIVE_OPERATORS:
        raise ValueError(f"unknown der_operator {operator!r}; choose from {sorted(DERIVATIVE_OPERATORS)}")
    return DERIVATIVE_OPERATORS[operator](image)


def image_second_differences(image: Tensor) -> Tensor:
    """Per-axis second differences of ``image (C, H, W)`` per pixel step squared: (C, 2, H, W).

    Their sum over axis 1 is the 5-point discrete Laplacian.
    """
    _check_image(image)
    padded = F.pad(image.unsqueeze(0), (1, 1, 1, 1), mode="replicate").squeeze(0)
    centre = padded[:, 1:-1, 1:-1]
    out = torch.empty(image.shape[0], 2, *image.shape[1:], dtype=image.dtype, device=image.device)
    # (f[i+1] - 2 f[i]) + f[i-1] per axis, written into the output (no per-axis temporaries to stack).
    for axis, (after, before) in enumerate(((padded[:, 1:-1, 2:], padded[:, 1:-1, :-2]),
                                            (padded[:, 2:, 1:-1], padded[:, :-2, 1:-1]))):
        torch.mul(centre, 2.0, out=out[:, axis])
        torch.sub(after, out[:, axis], out=out[:, axis])
        out[:, axis] += before
    return out


def image_laplacian(image: Tensor) -> Tensor:
    """5-point discrete Laplacian of ``image (C, H, W)`` per pixel step squared: (C, H, W)."""
    return image_second_differences(image).sum(dim=1)


def central_difference(signal: Tensor, dim: int = -1) -> Tensor:
    """First derivative of a sampled 1-D signal per sample step, along ``dim``: same shape as ``signal``.

    Interior samples: the central difference (f[i+1] - f[i-1]) / 2 (second-order accurate); the
    two end samples: the one-sided differences f[1] - f[0] and f[N-1] - f[N-2] (first-order).
    This is ``torch.gradient(signal, dim=dim, edge_order=1)`` with unit spacing.
    The unit is "change per sample step", the unit of the network's derivative with
    ``der_units = pixel`` (:mod:`sobolev_inr.data.coords`). Audio: ``signal (N,)`` or ``(C, N)``.

    (The original audio code took kornia's normalised ``diff`` gradient, which pads by replication
    and so gives half the one-sided difference at the two ends; the interiors agree.)
    """
    n = signal.shape[dim]
    if n < 2:
        raise ValueError(f"central_difference needs at least 2 samples along dim {dim}, got {n}")
    return torch.gradient(signal, dim=dim, edge_order=1)[0]


def second_difference(signal: Tensor, dim: int = -1) -> Tensor:
    """Second derivative of a sampled 1-D signal per sample step squared, along ``dim``: same shape.

    f[i+1] - 2 f[i] + f[i-1], with the ends replicated (as :func:`image_second_differences`).
    """
    n = signal.shape[dim]
    if n < 2:
        raise ValueError(f"second_difference needs at least 2 samples along dim {dim}, got {n}")
    x = signal.movedim(dim, -1)
    padded = torch.cat((x[..., :1], x, x[..., -1:]), dim=-1)
    out = padded[..., 2:] - 2.0 * x + padded[..., :-2]
    return out.movedim(-1, dim)


def video_gradient(frames: Tensor, operator: str = "sobel") -> Tensor:
    """First derivatives of a clip ``frames (T, C, H, W)`` per sample step: (T, C, 3, H, W), in the video's
    coordinate order [d/dt, d/dy, d/dx] (:func:`sobolev_inr.data.coords.video_grid`).

    Space: :func:`image_gradient` of each frame (``operator``, per pixel step); time: :func:`central_difference`
    along the frames (per frame step; one-sided at the first and last frame).
    """
    if frames.dim() != 4:
        raise ValueError(f"expected a clip of shape (T, C, H, W), got {tuple(frames.shape)}")
    if operator not in DERIVATIVE_OPERATORS:
        raise ValueError(f"unknown der_operator {operator!r}; choose from {sorted(DERIVATIVE_OPERATORS)}")
    _check_image(frames[0])
    t = frames.shape[0]
    if t < 2:
        raise ValueError(f"a clip needs at least 2 frames for its time derivative, got {t}")
    # Written into one output frame by frame (kornia on the whole clip held about 20 times the clip).
    out = torch.empty(t, frames.shape[1], 3, *frames.shape[2:], dtype=frames.dtype, device=frames.device)
    spatial = DERIVATIVE_OPERATORS[operator]
    for i in range(t):
        space = spatial(frames[i])  # (C, 2, H, W): x, y
        out[i, :, 1], out[i, :, 2] = space[:, 1], space[:, 0]
    # d/dt per frame step, as central_difference along dim 0: one-sided at the ends, central inside.
    torch.sub(frames[1], frames[0], out=out[0, :, 0])
    torch.sub(frames[-1], frames[-2], out=out[-1, :, 0])
    if t > 2:
        torch.sub(frames[2:], frames[:-2], out=out[1:-1, :, 0])
        out[1:-1, :, 0] *= 0.5
    return out


SIREN_POISSON_FACTORS = {"der": 10.0 * 8.0, "lapl": 1e4}
"""SIREN's Poisson targets (``train_poisson_*_img.py``): the [-1, 1] image times 10, then scipy's unnormalised
Sobel (8 times the per-pixel-step Sobel of :func:`image_gradient`); or the image times 1e4, then scipy's
``laplace`` (the 5-point Laplacian per pixel step squared of :func:`image_laplacian`). Their network
differentiates with respect to [-1, 1] coordinates, so these targets are per coordinate unit (squared)."""


def siren_target_scale(supervision: str, step: Sequence[float]) -> float:
    """The factor k on the per-pixel targets that reproduces SIREN's Poisson scaling: k = 80 step for
    gradients, 1e4 step^2 for the Laplacian (step = coordinate distance per pixel). A network trained on
    them fits k times the image (plus what the supervision cannot see): about 0.63 for SIREN's 256x256
    camera, whichever ``der_units`` the loss is measured in. Needs equal steps along x and y (SIREN's
    images are square)."""
    if supervision not in SIREN_POISSON_FACTORS:
        raise ConfigError(f"target_scaling = siren is SIREN's Poisson scaling, for supervision der or lapl; "
                          f"got supervision = {supervision}")
    if abs(step[0] - step[1]) > 1e-12 * max(step):
        raise ConfigError(f"target_scaling = siren needs a square image (equal pixel steps along x and y, as "
                          f"SIREN's sidelength resize gives); got steps {tuple(step)}: set sidelength")
    order = 1 if supervision == "der" else 2
    return SIREN_POISSON_FACTORS[supervision] * step[0] ** order
