"""Exact derivatives of a network's output with respect to its input coordinates.

One call gives the value ``(N, C)``, the Jacobian ``(N, C, D)`` for all output channels at once and,
when asked, the Laplacian ``(N, C)``. Two exact modes:

* ``forward``: carries D tangents (and, for the Laplacian, D second-order terms) through the
  network alongside the value (:meth:`MLP.jet`). Costs about (1 + D) value passes; the better
  choice when D < C (RGB images: D = 2, C = 3).
* ``reverse``: one batched ``torch.autograd.grad`` over the C output channels (``is_grads_batched``,
  a vmap, not a Python loop). Costs about C backward passes; the better choice when C <= D
  (grayscale images, audio).

``mode="auto"`` picks forward when D < C, else reverse. The Laplacian always uses forward mode
(second-order tangents), which avoids a double backward pass. Both modes are differentiable:
with ``create_graph=True`` a loss on the result back-propagates to the weights.

``scale`` (D,) changes the unit of the derivatives: the result is d f / d u with x = scale * u,
i.e. the Jacobian's column d is multiplied by ``scale[d]`` and the Laplacian sums
``scale[d]^2 d^2 f / d x_d^2``. With ``scale`` = coordinate distance per pixel step this gives
derivatives per pixel step, the unit of the Sobel targets (see :mod:`sobolev_inr.coords`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

DERIVATIVE_MODES = ("auto", "forward", "reverse")


@dataclass
class Derivatives:
    """value (N, C); jacobian (N, C, D), column d = d value / d coordinate d; laplacian (N, C) or None."""

    value: Tensor
    jacobian: Tensor
    laplacian: Optional[Tensor] = None


def choose_mode(in_features: int, out_features: int, mode: str = "auto") -> str:
    """The cheaper exact mode for a D-input, C-output network: forward when D < C, else reverse."""
    if mode not in DERIVATIVE_MODES:
        raise ValueError(f"unknown derivative mode {mode!r}; choose from {list(DERIVATIVE_MODES)}")
    if mode != "auto":
        return mode
    return "forward" if in_features < out_features else "reverse"


def value_and_derivatives(model: nn.Module, coords: Tensor, scale: Optional[Tensor] = None, mode: str = "auto",
                          laplacian: bool = False, create_graph: bool = True) -> Derivatives:
    """Value, Jacobian and optionally Laplacian of ``model`` at ``coords (N, D)``.

    ``create_graph=False`` is for evaluation: nothing is kept for a backward pass.
    Forward mode needs a model with ``jet`` (:class:`~sobolev_inr.models.MLP`); reverse mode works
    for any differentiable module.
    """
    n, d = coords.shape
    out_features = getattr(model, "out_features", None)
    if out_features is None:
        mode = "reverse" if mode == "auto" else mode
    mode = "forward" if laplacian else choose_mode(d, out_features or 1, mode)
    if scale is None:
        scale = torch.ones(d, dtype=coords.dtype, device=coords.device)
    scale = torch.as_tensor(scale, dtype=coords.dtype, device=coords.device)

    if mode == "forward":
        if not hasattr(model, "jet"):
            raise TypeError(f"forward-mode derivatives need a model with .jet(); {type(model).__name__} has none")
        seeds = torch.diag(scale).unsqueeze(1)  # (D, 1, D): direction d = scale[d] * e_d
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            value, tangents, second = model.jet(coords, seeds, second_order=laplacian)
        jac = tangents.permute(1, 2, 0)  # (D, N, C) -> (N, C, D)
        lap = second.sum(0) if laplacian else None
        return Derivatives(value, jac, lap)

    with torch.enable_grad():
        x = coords.detach().requires_grad_(True)
        value = model(x)
        c = value.shape[1]
        if c == 1:
            (g,) = torch.autograd.grad(value, x, torch.ones_like(value), create_graph=create_graph)
            jac = g.unsqueeze(1)
        else:
            basis = torch.eye(c, dtype=value.dtype, device=value.device).unsqueeze(1).expand(c, n, c)
            (g,) = torch.autograd.grad(value, x, basis, create_graph=create_graph, is_grads_batched=True)
            jac = g.permute(1, 0, 2)  # (C, N, D) -> (N, C, D)
    jac = jac * scale
    if not create_graph:
        value, jac = value.detach(), jac.detach()
    return Derivatives(value, jac, None)


def reference_jacobian(model: nn.Module, coords: Tensor, create_graph: bool = False) -> Derivatives:
    """The published code's way: one ``autograd.grad`` per output channel, in a Python loop.

    Kept as the independent reference that tests and benchmarks compare the engine with.
    """
    x = coords.detach().requires_grad_(True)
    with torch.enable_grad():
        value = model(x)
        columns = [torch.autograd.grad(value[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[0]
                   for i in range(value.shape[1])]
    return Derivatives(value, torch.stack(columns, dim=1), None)


def reference_laplacian(model: nn.Module, coords: Tensor) -> Tensor:
    """Laplacian (N, C) by nested per-channel, per-axis autograd; slow, for tests only."""
    x = coords.detach().requires_grad_(True)
    with torch.enable_grad():
        value = model(x)
        out = []
        for i in range(value.shape[1]):
            (g,) = torch.autograd.grad(value[:, i].sum(), x, create_graph=True)
            lap = sum(torch.autograd.grad(g[:, d].sum(), x, retain_graph=True)[0][:, d] for d in range(x.shape[1]))
            out.append(lap)
    return torch.stack(out, dim=1)
