"""Coordinate grids and derivative units: the one place where pixels become coordinates.

Image convention (the original code's and kornia's): a coordinate is ``(x, y) = (column, row)``,
each normalised to [-1, 1] over the image (x = 2 col / (W - 1) - 1), and a grid is flattened
row-major, so pixel ``(row, col)`` is entry ``row * W + col``. Derivatives therefore come in
the order (d/dx, d/dy) = (along the width, along the height), which is also the order of
``kornia.filters.spatial_gradient``.

Units. The network sees coordinates in [-1, 1]; Sobel and finite-difference targets measure change
per pixel (or sample) step. ``der_units = "pixel"`` (default, the original code's and the paper's
``lambda_der``) expresses both per step; ``der_units = "coord"`` expresses both per unit of the
network's input coordinate. A derivative per coordinate unit is ``1 / step`` times the
per-step one, where ``step`` is the coordinate distance between neighbouring samples
(``2 / (W - 1)`` along x).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

DER_UNITS = ("pixel", "coord")


def image_grid(height: int, width: int, dtype=torch.float32) -> Tensor:
    """(H*W, 2) coordinates (x, y) in [-1, 1], row-major over pixels."""
    xs = torch.linspace(-1.0, 1.0, width, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, height, dtype=dtype)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((x.reshape(-1), y.reshape(-1)), dim=-1)


def heldout_mask(height: int, width: int, factor: int, device=None) -> Tensor:
    """(H, W) bool, True on the pixels off the training grid ``[::factor, ::factor]`` (all False for
    ``factor = 1``, where every pixel is trained on)."""
    mask = torch.ones(height, width, dtype=torch.bool, device=device)
    mask[::factor, ::factor] = False
    return mask


def image_step(height: int, width: int) -> Tuple[float, float]:
    """Coordinate distance between neighbouring pixels, (along x, along y)."""
    return 2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)


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
