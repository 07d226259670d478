"""The inverse-rendering experiment's network: the original code's ``TinyNeRF`` as an :class:`MLP`.

TinyNeRF (megvii-research/Sobolev_INRs, ``Experiments/inverse_rendering/models/nerf.py``) maps a 3-D
point to raw (r, g, b, sigma): nerf-pytorch's positional encoding of the point (``multires`` = L
frequencies 2^k, k < L, **without** SIREN's pi factor, the point itself included: 3 + 6 L features),
``netdepth`` activated layers of ``netwidth`` with one activation each (no skip connection, no view
directions), a linear head to 4 outputs; the renderer applies sigmoid to the colour and ReLU to the
density. Its "sine" is ``torch.sin`` with PyTorch's default ``nn.Linear`` init, i.e. w0 = 1 and
``init = torch_default`` here; the supplement says it used w0 = 1 and He init (``init = he``), and
``init = activation`` gives the library's SIREN init. Built as a plain :class:`MLP` (``encoding =
positional, pe_pi_factor = False``), so the fused derivative engine serves it, checkpoints rebuild it
with ``MLP(**config)``, and nothing else in the library needs to know it is a NeRF. ``i_embed = 1`` puts a
multiresolution grid encoding (:class:`~sobolev_inr.models.encodings.GridEncoding`, Instant-NGP's hash grid, as
nerf-pytorch's hash-grid forks use i_embed 1) in front instead; it reads points in [-1, 1]^3 (NDC: the
forward-facing scenes) and clamps others to that cube.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from .activations import SPDER_EPS
from .mlp import MLP

EMBEDDINGS = {0: "positional", -1: "none", 1: "grid"}
"""nerf-pytorch's ``i_embed``: 0 = positional encoding, -1 = none; 1 = a multiresolution grid encoding (as the
hash-grid forks of nerf-pytorch)."""


def tiny_nerf(activations: Sequence[str], netwidth: int = 256, multires: int = 10, i_embed: int = 0,
              w0: float = 1.0, init: str = "torch_default", pe_pi_factor: bool = False,
              spder_eps: float = SPDER_EPS, act_scale: float = 0.0, grid: Optional[Mapping[str, Any]] = None) -> MLP:
    """TinyNeRF: points (N, 3) -> raw (N, 4) = (r, g, b, sigma) before their activations.

    ``activations``: one name per activated layer (its length is the original's ``netdepth``).
    Defaults are the original code's (8 layers of 256 come from the config). ``grid``: the grid encoding's
    settings with ``i_embed = 1`` (:func:`~sobolev_inr.models.encodings.build_encoding`; None: its defaults).
    """
    if i_embed not in EMBEDDINGS:
        raise ValueError(f"i_embed must be 0 (positional encoding), 1 (grid encoding) or -1 (none), got {i_embed}")
    return MLP(in_features=3, out_features=4, activations=list(activations), hidden_features=netwidth, w0=w0,
               encoding=EMBEDDINGS[i_embed], num_frequencies=multires, init=init, pe_pi_factor=pe_pi_factor,
               spder_eps=spder_eps, act_scale=act_scale, grid=grid if i_embed == 1 else None)
