"""Coordinate grids and derivative units: the one place where pixels become coordinates.

Image convention: a coordinate is ``(x, y) = (column, row)`` (kornia's order), and a grid is flattened
row-major, so pixel ``(row, col)`` is entry ``row * W + col``. Derivatives therefore come in the order
(d/dx, d/dy) = (along the width, along the height), which is also the order of
``kornia.filters.spatial_gradient``.

Pixel centres (one convention for every resolution). An image covers the square [-1, 1] x [-1, 1]
whatever its size; pixel ``col`` of a row of W pixels is the cell [2 col / W - 1, 2 (col + 1) / W - 1]
and its value sits at the cell's centre, x = (2 col + 1) / W - 1 (:func:`pixel_centres`). This is the
half-pixel convention of PIL, OpenCV and torch's ``align_corners=False`` resampling, so an image, its
downsampled or upsampled versions and a network fitted to any of them all refer to the same continuous
positions: the centre of a low-resolution pixel is the mean of the centres of the high-resolution pixels
it covers (super-resolution trains on one grid and renders another). The original code's grid put the
first and last pixel centres at -1 and 1 (``linspace(-1, 1, W)``, "align corners"), whose spacing
2 / (W - 1) depends on the resolution; within one resolution the two differ only by the scale
(W - 1) / W of the coordinates (0.998 at 512 pixels).

Units. The network sees coordinates in [-1, 1]; Sobel and finite-difference targets measure change
per pixel (or sample) step. ``der_units = "pixel"`` (default, the original code's and the paper's
``lambda_der``) expresses both per step; ``der_units = "coord"`` expresses both per unit of the
network's input coordinate. A derivative per coordinate unit is ``1 / step`` times the
per-step one, where ``step`` is the coordinate distance between neighbouring samples
(``2 / W`` along x for an image).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

DER_UNITS = ("pixel", "coord")


def pixel_centres(n: int, dtype=torch.float32) -> Tensor:
    """(n,) centres of n pixels that tile [-1, 1]: (2 i + 1) / n - 1 (see the module docstring)."""
    return (2.0 * torch.arange(n, dtype=torch.float64) + 1.0).div(n).sub(1.0).to(dtype)


def image_grid(height: int, width: int, dtype=torch.float32) -> Tensor:
    """(H*W, 2) pixel centres (x, y) in (-1, 1), row-major over pixels (:func:`pixel_centres` along each axis)."""
    y, x = torch.meshgrid(pixel_centres(height, dtype), pixel_centres(width, dtype), indexing="ij")
    return torch.stack((x.reshape(-1), y.reshape(-1)), dim=-1)


def heldout_mask(height: int, width: int, factor: int, device=None) -> Tensor:
    """(H, W) bool, True on the pixels off the training grid ``[::factor, ::factor]`` (all False for
    ``factor = 1``, where every pixel is trained on)."""
    mask = torch.ones(height, width, dtype=torch.bool, device=device)
    mask[::factor, ::factor] = False
    return mask


def image_step(height: int, width: int) -> Tuple[float, float]:
    """Coordinate distance between neighbouring pixel centres, (along x, along y): (2 / W, 2 / H)."""
    return 2.0 / width, 2.0 / height


def video_grid(frames: int, height: int, width: int, dtype=torch.float32) -> Tensor:
    """(T*H*W, 3) sample centres (t, y, x) in (-1, 1) of a clip of T frames of H x W pixels, flattened
    row-major over (frame, row, column): sample ``(k, row, col)`` is entry ``(k * H + row) * W + col``.

    Video keeps SIREN's axis order (t, y, x), the order of the clip's array (T, H, W), not the images'
    (x, y); every axis follows :func:`pixel_centres` (frame k at (2 k + 1) / T - 1).
    """
    t, y, x = torch.meshgrid(pixel_centres(frames, dtype), pixel_centres(height, dtype), pixel_centres(width, dtype),
                             indexing="ij")
    return torch.stack((t.reshape(-1), y.reshape(-1), x.reshape(-1)), dim=-1)


def video_step(frames: int, height: int, width: int) -> Tuple[float, float, float]:
    """Coordinate distance between neighbouring samples of a clip, (along t, along y, along x): (2 / T, 2 / H, 2 / W)."""
    return 2.0 / frames, 2.0 / height, 2.0 / width


def derivative_scale(step: Sequence[float], units: str) -> Tensor:
    """(D,) factor that turns d/d(network input) into derivatives in ``units`` (see module doc).

    Passed as ``scale`` to :func:`sobolev_inr.derivatives.value_and_derivatives`.
    """
    _check_units(units)
    step = torch.as_tensor(step, dtype=torch.float64)
    return step if units == "pixel" else torch.ones_like(step)


def target_to_units(per_step: Tensor, step: Sequence[float], units: str, axis: int, order: int = 1) -> Tensor:
    """Converts finite-difference targets measured per sample step into ``units``.

    per_step: derivatives with the coordinate axes along dimension ``axis`` (size D, same order
    as ``step``); ``order`` 1 for first derivatives, 2 for per-axis second derivatives.
    """
    _check_units(units)
    if units == "pixel":
        return per_step
    shape = [1] * per_step.dim()
    shape[axis] = -1
    step = torch.as_tensor(step, dtype=per_step.dtype, device=per_step.device).reshape(shape)
    return per_step / step ** order


def _check_units(units: str) -> None:
    if units not in DER_UNITS:
        raise ValueError(f"unknown der_units {units!r}; choose from {list(DER_UNITS)}")
