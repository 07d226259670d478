"""Sobolev losses: value and derivative terms, returned as a dict of named tensors.

Terms, as in the original code (so that ``lambda_der = 1`` means what it meant in the paper):

* ``value``: mean squared error over all samples and channels.
* ``derivative``: per sample, the squared error summed over channels and coordinate axes, then
  averaged over samples (the original ``der_mse``); for ``lapl`` supervision the same on the
  Laplacian (summed over channels).
* ``total``: what is optimised: ``val`` -> value; ``der`` and ``lapl`` -> derivative;
  ``val_der`` -> value + lambda_der * derivative.
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


def get_supervision(name: str) -> Supervision:
    if name not in SUPERVISIONS:
        raise ValueError(f"unknown supervision {name!r}; choose from {list(SUPERVISIONS)}")
    return SUPERVISIONS[name]


def sobolev_loss(supervision: str, value: Tensor, target_value: Tensor,
                 derivative: Optional[Tensor] = None, target_derivative: Optional[Tensor] = None,
                 lambda_der: float = 1.0) -> Dict[str, Tensor]:
    """Loss terms for one batch.

    value, target_value: (N, C). derivative, target_derivative: the Jacobian (N, C, D) for
    ``val_der``/``der``, the Laplacian (N, C) for ``lapl``, in the same units; ignored for
    ``val``. Returns ``{"value", "derivative" (absent for val), "total"}``.
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
    weight = sup.derivative_weight * (lambda_der if sup.uses_lambda else 1.0)
    total = terms["derivative"] * weight
    if sup.value_weight:
        total = total + sup.value_weight * terms["value"]
    terms["total"] = total
    return terms
