"""SIREN's loss for fitting a signed distance function to an oriented point cloud (``loss_functions.sdf``).

A batch holds B on-surface points (from the cloud, with normals n) followed by B' off-surface points
(uniform in the cube). With Phi the network and g = grad_x Phi, every term is a mean over the WHOLE
batch (on + off, each term zero where it does not apply), times its weight:

* ``sdf``    = lambda_sdf    * mean( |Phi| on the surface )                      (SIREN: 3e3)
* ``inter``  = lambda_inter  * mean( exp(-alpha |Phi|) off the surface )         (SIREN: 1e2, alpha = 1e2)
* ``normal`` = lambda_normal * mean( 1 - cos(g, n) on the surface )              (SIREN: 1e2)
* ``grad``   = lambda_grad   * mean( ||g| - 1| everywhere )                      (SIREN: 5e1, the eikonal term)

``total`` is their sum. Without normals (supervision ``val``: points only) the ``normal`` term is
left out; with them (``val_der``, the derivative supervision) it is SIREN's full loss.

Every term is a sum over rows divided by the batch's size, so a batch cut into blocks of rows
(:func:`sdf_loss` with ``denominator`` = the whole batch's size) has terms that sum to the batch's: gradients
accumulated block by block give the same step in less memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

SDF_SUPERVISIONS = ("val", "val_der")
"""``val``: points only (no normal term); ``val_der``: points and normals (SIREN's full loss)."""


@dataclass(frozen=True)
class SDFLossWeights:
    """The terms' weights and the off-surface sharpness alpha; defaults are SIREN's."""

    sdf: float = 3e3
    inter: float = 1e2
    normal: float = 1e2
    grad: float = 5e1
    inter_alpha: float = 1e2


def sdf_loss(value: Tensor, gradient: Tensor, num_on_surface: int, normals: Optional[Tensor] = None,
             weights: SDFLossWeights = SDFLossWeights(), denominator: Optional[int] = None) -> Dict[str, Tensor]:
    """Weighted terms (module docstring) of a batch: value (N,) = Phi, gradient (N, 3) = grad Phi, both
    in the coordinates' units; the first ``num_on_surface`` rows are on the surface, the rest off it;
    normals (num_on_surface, 3) unit, or None to leave the normal term out. ``denominator``: the size of the
    batch these rows are a block of (default N: the rows are the batch)."""
    if value.dim() != 1 or gradient.shape != (value.shape[0], 3):
        raise ValueError(f"value must be (N,) and gradient (N, 3); got {tuple(value.shape)}, {tuple(gradient.shape)}")
    n = value.shape[0] if denominator is None else denominator
    on, off = value[:num_on_surface], value[num_on_surface:]
    terms = {
        "sdf": weights.sdf * on.abs().sum() / n,
        "inter": weights.inter * torch.exp(-weights.inter_alpha * off.abs()).sum() / n,
    }
    if normals is not None:
        cos = F.cosine_similarity(gradient[:num_on_surface], normals, dim=-1)
        terms["normal"] = weights.normal * (1 - cos).sum() / n
    terms["grad"] = weights.grad * (gradient.norm(dim=-1) - 1).abs().sum() / n
    terms["total"] = sum(terms.values())
    return terms
