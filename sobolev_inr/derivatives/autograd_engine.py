"""The plain-autograd engine: forward mode through the model's ``jet``, the forward Laplacian through
its ``laplacian``, reverse mode by one batched ``autograd.grad``. It serves models other than a plain
:class:`MLP`, double backward, and cross-checks of the fused engine.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn


def jet_tangents(model: nn.Module, coords: Tensor, tangents: Tensor, second_order: bool = False,
                 create_graph: bool = True) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Forward mode by :meth:`MLP.jet` (or a model's own ``jet`` of the same signature).

    coords (N, D); tangents (T, N or 1, D) = d coords / d s. Returns value (N, C), directional
    derivatives (T, N, C) and, if ``second_order``, second directional derivatives (T, N, C).
    """
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        if second_order:
            return model.jet(coords, tangents, second_order=True)
        value, out_tangents = model.jet(coords, tangents)[:2]
        return value, out_tangents, None


def forward_laplacian(model: nn.Module, coords: Tensor, tangents: Tensor, create_graph: bool = True
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    """The forward Laplacian by :meth:`MLP.laplacian` (or a model's own ``laplacian`` of the same
    signature; a model with ``jet`` alone: the sum of its second-order terms).

    coords (N, D); tangents (T, N or 1, D). Returns value (N, C), directional derivatives (T, N, C)
    and the second directional derivatives summed over the T directions (N, C).
    """
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        if hasattr(model, "laplacian"):
            return model.laplacian(coords, tangents)
        value, out_tangents, second = model.jet(coords, tangents, second_order=True)
        return value, out_tangents, second.sum(0)


def reverse_jacobian(model: nn.Module, coords: Tensor, create_graph: bool = True) -> Tuple[Tensor, Tensor]:
    """Value (N, C) and Jacobian (N, C, D) by one batched backward pass over the C outputs.

    Works for any differentiable module. The results depend on ``coords`` itself where it requires
    grad (a loss on them reaches the coordinates), else on a detached copy. ``create_graph=False``
    returns them detached.
    """
    with torch.enable_grad():
        x = coords if coords.requires_grad else coords.detach().requires_grad_(True)
        value = model(x)
        n, c = value.shape
        if c == 1:
            (g,) = torch.autograd.grad(value, x, torch.ones_like(value), create_graph=create_graph)
            jac = g.unsqueeze(1)
        else:
            basis = torch.eye(c, dtype=value.dtype, device=value.device).unsqueeze(1).expand(c, n, c)
            (g,) = torch.autograd.grad(value, x, basis, create_graph=create_graph, is_grads_batched=True)
            jac = g.permute(1, 0, 2)  # (C, N, D) -> (N, C, D)
    if not create_graph:
        value, jac = value.detach(), jac.detach()
    return value, jac


def contract_jacobian(jacobian: Tensor, tangents: Tensor) -> Tensor:
    """Directional derivatives (T, N, C) = J (N, C, D) times tangents (T, N or 1, D), per row."""
    return torch.matmul(jacobian, tangents.unsqueeze(-1)).squeeze(-1)
