"""Reference derivatives by per-channel and per-direction ``autograd.grad`` loops: slow, simple, and
independent of the engines (they call ``model(x)`` and ``torch.autograd`` only), so that tests and
benchmarks compare the engines with them."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from .api import Derivatives


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


def reference_tangents(model: nn.Module, x: Tensor, tangents: Tensor,
                       create_graph: bool = False) -> Tuple[Tensor, Tensor]:
    """Value (..., C) and directional derivatives (T, ..., C) of ``model`` at ``x (..., D)`` along
    ``tangents (T, ..., D)`` (broadcast over the leading dims), one direction at a time.

    Each direction v by the double-vjp trick: g(u) = J^T u by one ``autograd.grad`` with a graph,
    then J v = d (g . v) / d u by a second one. With ``create_graph`` the results are differentiable
    with respect to the weights and the tangents (``x`` enters detached). Slow, for tests only.
    """
    lead, d = x.shape[:-1], x.shape[-1]
    tangents = tangents.expand(tangents.shape[0], *lead, d)
    xr = x.detach().reshape(-1, d).requires_grad_(True)
    with torch.enable_grad():
        value = model(xr)
        dummy = torch.zeros_like(value, requires_grad=True)  # u: the co-tangent the vjp is linear in
        (vjp,) = torch.autograd.grad(value, xr, dummy, create_graph=True)
        out = [torch.autograd.grad(vjp, dummy, v.reshape(-1, d), create_graph=create_graph, retain_graph=True)[0]
               for v in tangents]
    c = value.shape[-1]
    return value.reshape(*lead, c), torch.stack(out).reshape(tangents.shape[0], *lead, c)
