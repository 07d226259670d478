"""Sobolev losses: value and derivative terms, returned as a dict of named tensors.

Terms, as in the original code (so that ``lambda_der = 1`` means what it meant in the paper):

* ``value``: mean squared error over all samples and channels.
* ``derivative``: per sample, the squared error summed over channels and coordinate axes, then
  averaged over samples (the original ``der_mse``); for ``lapl`` supervision the same on the
  Laplacian (summed over channels).
* ``total``: what is optimised: ``val`` -> value; ``der`` and ``lapl`` -> derivative;
  ``val_der`` -> value + lambda_der * derivative.

The derivative term of a D-input Jacobian can also be *estimated* from K random directions per sample
(``der_estimator = directional``): for v uniform on the unit sphere, E[v v^T] = I / D, so
(D / K) * sum_k ||(J - G) v_k||^2 is an unbiased estimate of ||J - G||^2 (Frobenius), and so is its
gradient with respect to the weights (it is linear in v v^T). The network's J v_k is one forward-mode
tangent each: K tangents instead of D.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class Supervision:
    """What a supervision mode needs from the derivative engine and how it weighs the terms."""

    name: str
    needs: str  # "value" | "jacobian" | "laplacian"
    value_weight: float
    derivative_weight: float  # multiplied by lambda_der where ``uses_lambda``
    uses_lambda: bool


SUPERVISIONS: Dict[str, Supervision] = {
    "val": Supervision("val", "value", 1.0, 0.0, False),
    "val_der": Supervision("val_der", "jacobian", 1.0, 1.0, True),
    "der": Supervision("der", "jacobian", 0.0, 1.0, False),
    "lapl": Supervision("lapl", "laplacian", 0.0, 1.0, False),
}
"""Config name (``supervision``) -> :class:`Supervision`."""


DER_ESTIMATORS = ("exact", "directional")
"""How the derivative term is computed: every Jacobian column, or K random directional derivatives."""


def get_supervision(name: str) -> Supervision:
    if name not in SUPERVISIONS:
        raise ValueError(f"unknown supervision {name!r}; choose from {list(SUPERVISIONS)}")
    return SUPERVISIONS[name]


def sobolev_loss(supervision: str, value: Tensor, target_value: Tensor,
                 derivative: Optional[Tensor] = None, target_derivative: Optional[Tensor] = None,
                 lambda_der: float = 1.0, estimate_factor: float = 1.0) -> Dict[str, Tensor]:
    """Loss terms for one batch.

    value, target_value: (N, C). derivative, target_derivative: the Jacobian (N, C, D) for
    ``val_der``/``der``, the Laplacian (N, C) for ``lapl``, in the same units; ignored for
    ``val``; or K directional derivatives (N, C, K) (:func:`project_jacobian`) with
    ``estimate_factor`` = D / K, which multiplies the per-sample sum so that the term estimates the
    exact one. Returns ``{"value", "derivative" (absent for val), "total"}``.
    """
    sup = get_supervision(supervision)
    if value.shape != target_value.shape:  # (N, C) against (N, 1) or (N,) would broadcast silently
        raise ValueError(f"value shape {tuple(value.shape)} != target shape {tuple(target_value.shape)}")
    terms = {"value": torch.mean((value - target_value) ** 2)}
    if sup.needs == "value":
        terms["total"] = terms["value"]
        return terms
    if derivative is None or target_derivative is None:
        raise ValueError(f"supervision {supervision!r} needs the network's derivative and its target")
    if derivative.shape != target_derivative.shape:
        raise ValueError(f"derivative shape {tuple(derivative.shape)} != target shape {tuple(target_derivative.shape)}")
    err = (derivative - target_derivative) ** 2
    terms["derivative"] = err.reshape(err.shape[0], -1).sum(dim=1).mean()
    if estimate_factor != 1.0:
        terms["derivative"] = terms["derivative"] * estimate_factor
    weight = sup.derivative_weight * (lambda_der if sup.uses_lambda else 1.0)
    total = terms["derivative"] * weight
    if sup.value_weight:
        total = total + sup.value_weight * terms["value"]
    terms["total"] = total
    return terms


def random_unit_directions(num: int, n: int, d: int, generator: torch.Generator) -> Tensor:
    """(num, n, d) directions drawn uniformly on the unit sphere of R^d (normalised Gaussians), so that
    E[v v^T] = I / d; for d = 1 they are +1 or -1. Drawn on the CPU from ``generator``."""
    v = torch.randn(num, n, d, generator=generator)
    return v / v.norm(dim=2, keepdim=True).clamp_min(1e-12)


def project_jacobian(jacobian: Tensor, directions: Tensor) -> Tensor:
    """Directional derivatives J v of a Jacobian (N, C, D) along ``directions`` (K, N, D): (N, C, K)."""
    return torch.einsum("ncd,knd->nck", jacobian, directions)
