"""Input encodings of coordinates; each reports ``out_dim`` and propagates derivatives exactly.

An encoding maps coordinates ``x: (N, D)`` to features ``(N, out_dim)``. Its :meth:`jet` also maps
tangents ``t: (T, N, D)`` (first directional derivatives of ``x``) and, optionally, second-order
terms ``h: (T, N, D)``, so that :meth:`sobolev_inr.models.mlp.MLP.jet` can carry exact input
derivatives through the whole network in forward mode. :meth:`Encoding.jet_summed` gives the
features' second directional derivatives summed over the T directions at once (the forward
Laplacian's input, :meth:`~sobolev_inr.models.mlp.MLP.laplacian`), for coordinates, which are affine in
themselves.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

Jet = Tuple[Tensor, Optional[Tensor], Optional[Tensor]]


def nyquist_num_frequencies(samples: int) -> int:
    """Number of NeRF frequencies for a signal of ``samples`` points per axis on [-1, 1].

    SIREN's ``PosEncodingNeRF`` rule: the highest frequency 2^(L-1) stays below the Nyquist rate
    of the sampling grid, L = floor(log2(samples / 4)). For a 128-pixel training grid: L = 5.
    """
    if samples < 8:
        return 1
    return int(math.floor(math.log2(samples / 4.0)))


SIREN_3D_NUM_FREQUENCIES = 10
"""SIREN's positional encoding of 3-D inputs (video (t, y, x), shapes (x, y, z)): its ``PosEncodingNeRF`` takes
10 frequencies whatever the grid, where 1-D and 2-D inputs follow :func:`nyquist_num_frequencies`."""


class Encoding(nn.Module):
    out_dim: int

    def jet(self, x: Tensor, t: Tensor, h: Optional[Tensor] = None) -> Jet:
        raise NotImplementedError

    def jet_summed(self, x: Tensor, t: Tensor) -> Jet:
        """Features (N, out_dim), their tangents (T, N, out_dim) and the sum over the T directions of
        their second directional derivatives (N, out_dim), or None where that is zero; ``x`` is taken
        as affine in the directions (its own second-order term is zero)."""
        value, tangent, second = self.jet(x, t, torch.zeros_like(t))
        return value, tangent, second.sum(0)


class IdentityEncoding(Encoding):
    """No encoding: the MLP sees the coordinates themselves."""

    def __init__(self, in_features: int):
        super().__init__()
        self.out_dim = in_features

    def forward(self, x: Tensor) -> Tensor:
        return x

    def jet(self, x, t, h=None):
        return x, t, h

    def jet_summed(self, x, t):
        return x, t, None


class SinusoidalEncoding(Encoding):
    """Features ``[x (optional), sin(x B^T)_k, cos(x B^T)_k, ...]`` for a fixed matrix ``B (K, D)``.

    sin and cos of each projection are interleaved, in the order of B's rows. Both NeRF's
    positional encoding and Gaussian Fourier features are instances.
    """

    def __init__(self, projection: Tensor, include_input: bool):
        super().__init__()
        self.register_buffer("projection", projection.clone())
        self.include_input = include_input
        k, d = projection.shape
        self.out_dim = 2 * k + (d if include_input else 0)

    def _assemble(self, x_part: Optional[Tensor], sin: Tensor, cos: Tensor) -> Tensor:
        trig = torch.stack((sin, cos), dim=-1).flatten(-2)  # (..., 2K): sin_0, cos_0, sin_1, ...
        return torch.cat((x_part, trig), dim=-1) if self.include_input else trig

    def forward(self, x: Tensor) -> Tensor:
        p = x @ self.projection.T
        return self._assemble(x, torch.sin(p), torch.cos(p))

    def jet(self, x, t, h=None):
        b = self.projection.T
        p = x @ b  # (N, K)
        tp = t @ b  # (T, N, K)
        s, c = torch.sin(p), torch.cos(p)
        value = self._assemble(x, s, c)
        tangent = self._assemble(t, c * tp, -s * tp)
        second = None
        if h is not None:
            hp = h @ b
            tp2 = tp * tp
            second = self._assemble(h, -s * tp2 + c * hp, -c * tp2 - s * hp)
        return value, tangent, second

    def jet_summed(self, x, t):
        """As :meth:`jet` with zero second-order input terms, summed over directions without forming
        them one by one: sum_j d^2 sin(p) = -sin(p) sum_j (t_j b)^2, likewise cos."""
        b = self.projection.T
        p, tp = x @ b, t @ b  # (N, K), (T, N, K)
        s, c = torch.sin(p), torch.cos(p)
        squares = (tp * tp).sum(0)  # (N, K)
        value = self._assemble(x, s, c)
        tangent = self._assemble(t, c * tp, -s * tp)
        second = self._assemble(torch.zeros_like(x), -s * squares, -c * squares)
        return value, tangent, second


def positional_encoding(in_features: int, num_frequencies: int, pi_factor: bool = True) -> SinusoidalEncoding:
    """NeRF's gamma(p) = (p, sin(2^k pi p_j), cos(2^k pi p_j)) for k < L, ordered (k, j) as SIREN's.

    ``pi_factor = False`` drops the pi: sin(2^k p_j), as nerf-pytorch's ``get_embedder`` (the original
    inverse-rendering code), whose frequencies are thus 1/pi of SIREN's for the same L. (nerf-pytorch
    orders the features (k, sin/cos, j); the order does not change what the network can represent.)
    """
    if num_frequencies < 1:
        raise ValueError(f"num_frequencies must be >= 1, got {num_frequencies}")
    scale = math.pi if pi_factor else 1.0
    rows = [(2.0 ** k) * scale * torch.eye(in_features)[j] for k in range(num_frequencies) for j in range(in_features)]
    return SinusoidalEncoding(torch.stack(rows), include_input=True)


def fourier_features(in_features: int, num_features: int, scale: float, seed: int = 0) -> SinusoidalEncoding:
    """Gaussian Fourier features (Tancik et al. 2020): [sin(2 pi B x), cos(2 pi B x)], B ~ N(0, scale^2).

    B is drawn from its own seeded generator, so the encoding does not disturb the global RNG
    and is stored with the model (a buffer), as checkpoints need.
    """
    gen = torch.Generator().manual_seed(seed)
    b = torch.randn(num_features, in_features, generator=gen) * scale
    return SinusoidalEncoding(2.0 * math.pi * b, include_input=False)


ENCODINGS = ("none", "positional", "fourier")


def build_encoding(name: str, in_features: int, num_frequencies: int = 4, fourier_num_features: int = 256,
                   fourier_scale: float = 10.0, fourier_seed: int = 0, pe_pi_factor: bool = True,
                   grid: Optional[Mapping[str, Any]] = None) -> Encoding:
    """Builds an encoding by config name (one of ``ENCODINGS``); ``grid``: the grid encoding's settings (keys
    as the ``grid_*`` options without the prefix; absent keys keep their defaults)."""
    builders: Dict[str, callable] = {
        "none": lambda: IdentityEncoding(in_features),
        "positional": lambda: positional_encoding(in_features, num_frequencies, pe_pi_factor),
        "fourier": lambda: fourier_features(in_features, fourier_num_features, fourier_scale, fourier_seed),
    }
    if name not in builders:
        raise ValueError(f"unknown encoding {name!r}; choose from {list(ENCODINGS)}")
    return builders[name]()
