"""The entry points: they validate the arguments, pick mode and engine, and shape the results
(the package docstring, :mod:`sobolev_inr.derivatives`, explains the choices)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from . import autograd_engine
from .fused import fused_value_and_jacobian, fused_value_and_tangents, is_plain_mlp
from .laplacian import fused_value_and_laplacian

DERIVATIVE_MODES = ("auto", "forward", "reverse")
ENGINES = ("auto", "fused", "autograd")


@dataclass
class Derivatives:
    """value (N, C); jacobian (N, C, D), column d = d value / d coordinate d; laplacian (N, C) or None."""

    value: Tensor
    jacobian: Tensor
    laplacian: Optional[Tensor] = None


def choose_mode(in_features: int, out_features: int, mode: str = "auto") -> str:
    """The cheaper exact mode for a D-input, C-output network: forward when D <= C, else reverse."""
    if mode not in DERIVATIVE_MODES:
        raise ValueError(f"unknown derivative mode {mode!r}; choose from {list(DERIVATIVE_MODES)}")
    if mode != "auto":
        return mode
    return "forward" if in_features <= out_features else "reverse"


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown derivative engine {engine!r}; choose from {list(ENGINES)}")


def value_and_derivatives(model: nn.Module, coords: Tensor, scale: Optional[Tensor] = None, mode: str = "auto",
                          laplacian: bool = False, create_graph: bool = True, engine: str = "auto",
                          recompute_tangents: bool = False) -> Derivatives:
    """Value, Jacobian and optionally Laplacian of ``model`` at ``coords (N, D)``.

    ``create_graph=False`` is for evaluation: nothing is kept for a backward pass.
    Forward mode needs a model with ``jet`` (:class:`~sobolev_inr.models.MLP`); reverse mode works
    for any differentiable module. ``laplacian`` implies forward mode: the forward Laplacian, which
    carries one summed second-order stream with the value and the D tangents. ``engine``: ``"auto"``
    (fused for a plain MLP, with or without Laplacian, else autograd), ``"fused"`` or ``"autograd"``
    (see the package docstring).
    ``recompute_tangents`` (fused engine, forward mode, no Laplacian): the backward pass recomputes the
    layers' tangents instead of keeping them from the forward pass, trading D more matrix products per
    layer for D fewer (N, width) tensors kept per layer (bench/PERFORMANCE.md has the figures); the
    fused Laplacian ignores it (it keeps only the pre-activation streams anyway).
    With ``create_graph=True`` the results are differentiable with respect to the weights and, where
    ``coords`` requires grad, to ``coords``.
    """
    _check_engine(engine)
    if coords.dim() != 2:
        raise ValueError(f"coords must have shape (N, D); got {tuple(coords.shape)}")
    n, d = coords.shape
    out_features = getattr(model, "out_features", None)
    if out_features is None:
        mode = "reverse" if mode == "auto" else mode
    mode = choose_mode(d, out_features or 1, mode)  # validates ``mode`` first
    if laplacian:
        mode = "forward"  # the forward Laplacian: no double backward pass (package docstring)
    if scale is None:
        scale = torch.ones(d, dtype=coords.dtype, device=coords.device)
    scale = torch.as_tensor(scale, dtype=coords.dtype, device=coords.device)
    if scale.shape != (d,):
        raise ValueError(f"scale must have shape ({d},) for coords of shape {tuple(coords.shape)}; "
                         f"got {tuple(scale.shape)}")
    if mode == "forward" and not hasattr(model, "jet"):
        raise TypeError(f"forward-mode derivatives need a model with .jet(); {type(model).__name__} has none")

    fused = is_plain_mlp(model)
    if engine == "fused" and not fused:
        raise ValueError("the fused engine needs an MLP (not a subclass that changes forward, jet or laplacian); "
                         "use engine='autograd'")
    if engine != "autograd" and fused:
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            if laplacian:
                return Derivatives(*fused_value_and_laplacian(model, coords, scale))
            value, jac = fused_value_and_jacobian(model, coords, scale, mode, recompute_tangents)
        return Derivatives(value, jac, None)

    if mode == "forward":
        seeds = torch.diag(scale).unsqueeze(1)  # (D, 1, D): direction d = scale[d] * e_d
        if laplacian:
            value, tangents, lap = autograd_engine.forward_laplacian(model, coords, seeds, create_graph)
        else:
            value, tangents, _ = autograd_engine.jet_tangents(model, coords, seeds, create_graph=create_graph)
            lap = None
        return Derivatives(value, tangents.permute(1, 2, 0), lap)  # (D, N, C) -> (N, C, D)

    value, jac = autograd_engine.reverse_jacobian(model, coords, create_graph)
    return Derivatives(value, jac * scale, None)


def value_and_tangents(model: nn.Module, x: Tensor, tangents: Tensor, engine: str = "auto",
                       create_graph: bool = True, recompute_tangents: bool = False) -> Tuple[Tensor, Tensor]:
    """Value and directional derivatives of ``model`` at ``x`` along given input tangents, in forward mode.

    x: (..., D), any leading shape (e.g. (R, S, 3) sample points of R rays); tangents: (T, ..., D) =
    d x / d s for T directions s, the leading dims broadcastable to those of x (e.g. (T, 1, 1, D)
    for a direction shared by every point, or (T, R, S, D)). Returns value (..., C) and
    out_tangents (T, ..., C) = d value / d s, both in the units of x and s.

    ``engine``: ``"fused"`` (what ``"auto"`` picks for a plain :class:`~sobolev_inr.models.MLP`: the
    encoding's jet maps the tangents to feature tangents, the fused forward pass carries them) or
    ``"autograd"`` (any other module: its own ``jet`` where it has one, else a batched reverse-mode
    Jacobian contracted with the tangents). With ``create_graph=True`` (and grad mode on) both
    results are differentiable, to first order, with respect to the weights, ``x`` and ``tangents``;
    ``create_graph=False`` keeps nothing for a backward pass. ``recompute_tangents`` as in
    :func:`value_and_derivatives` (fused engine only).
    """
    _check_engine(engine)
    lead, d = x.shape[:-1], x.shape[-1]
    if tangents.dim() < 2 or tangents.shape[-1] != d:
        raise ValueError(f"tangents must have shape (T, ..., {d}) for x of shape {tuple(x.shape)}; "
                         f"got {tuple(tangents.shape)}")
    num = tangents.shape[0]
    try:
        broadcast = torch.broadcast_shapes(tangents.shape[1:-1], lead)
    except RuntimeError:
        broadcast = None
    if broadcast != lead:
        raise ValueError(f"tangents of shape {tuple(tangents.shape)} do not broadcast over the leading dims "
                         f"{tuple(lead)} of x")
    n = math.prod(lead)
    coords = x.reshape(n, d)
    if math.prod(tangents.shape[1:-1]) == 1:
        flat_tangents = tangents.reshape(num, 1, d)  # one direction per s, shared by every point
    else:
        flat_tangents = tangents.expand(num, *lead, d).reshape(num, n, d)

    fused = is_plain_mlp(model)
    if engine == "fused" and not fused:
        raise ValueError("the fused engine needs an MLP (not a subclass that changes forward or jet); "
                         "use engine='autograd'")
    create_graph = create_graph and torch.is_grad_enabled()
    if engine != "autograd" and fused:
        with torch.set_grad_enabled(create_graph):
            value, out = fused_value_and_tangents(model, coords, flat_tangents, recompute_tangents)
    elif hasattr(model, "jet"):
        value, out, _ = autograd_engine.jet_tangents(model, coords, flat_tangents, create_graph=create_graph)
    else:
        value, jac = autograd_engine.reverse_jacobian(model, coords, create_graph)
        with torch.set_grad_enabled(create_graph):
            out = autograd_engine.contract_jacobian(jac, flat_tangents)
    c = value.shape[-1]
    return value.reshape(*lead, c), out.reshape(num, *lead, c)
