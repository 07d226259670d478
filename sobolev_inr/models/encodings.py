"""Input encodings of coordinates; each reports ``out_dim`` and propagates derivatives exactly.

An encoding maps coordinates ``x: (N, D)`` to features ``(N, out_dim)``. Its :meth:`jet` also maps
tangents ``t: (T, N, D)`` (first directional derivatives of ``x``) and, optionally, second-order
terms ``h: (T, N, D)``, so that :meth:`sobolev_inr.models.mlp.MLP.jet` can carry exact input
derivatives through the whole network in forward mode. :meth:`Encoding.jet_summed` gives the
features' second directional derivatives summed over the T directions at once (the forward
Laplacian's input, :meth:`~sobolev_inr.models.mlp.MLP.laplacian`), for coordinates, which are affine in
themselves. The encodings: none, NeRF's positional encoding, Gaussian Fourier features (fixed buffers), and
Instant-NGP's multiresolution grid (:class:`GridEncoding`, trainable tables).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

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


GRID_INTERPOLATIONS = ("linear", "smoothstep")
"""Interpolation weights of :class:`GridEncoding` (the config's ``grid_interpolation``)."""

HASH_PRIMES = (1, 2654435761, 805459861)
"""Instant-NGP's spatial-hash primes, one per axis (Mueller et al. 2022, eq. 4; tiny-cuda-nn's first three)."""

GRID_INIT = 1e-4
"""Tables start U(-GRID_INIT, GRID_INIT), as Instant-NGP's."""


def grid_resolutions(levels: int, base_resolution: int, finest_resolution: int) -> List[int]:
    """Cells per axis of each level: N_l = floor(N_min b^l), b = (N_max / N_min)^(1 / (L - 1)) (Instant-NGP
    eq. 2-3), the last level exactly ``finest_resolution``."""
    if levels == 1:
        return [base_resolution]
    growth = math.exp((math.log(finest_resolution) - math.log(base_resolution)) / (levels - 1))
    sizes = [int(math.floor(base_resolution * growth ** level + 1e-6)) for level in range(levels - 1)]
    return [min(n, finest_resolution) for n in sizes] + [finest_resolution]


class GridEncoding(Encoding):
    """Instant-NGP's multiresolution grid encoding (Mueller et al. 2022) in plain PyTorch, for x (N, D),
    D = 1, 2 or 3, with exact input derivatives through the interpolation weights.

    Geometry: x in [-1, 1]^D (clamped there: outside, the features are constant and their derivatives
    zero) maps to u = (x + 1) / 2 in [0, 1]^D and, on level l with N_l cells per axis
    (:func:`grid_resolutions`), to the grid position p = N_l u + 1/2. The half-cell shift (tiny-cuda-nn
    shifts by half a cell too) keeps the cube's faces and centre off most levels' vertices: smoothstep
    weights have zero slope at vertices, so where every level had a vertex the features' derivative
    would vanish. Vertex coordinates run over 0 .. N_l + 1: (N_l + 2)^D vertices per level.

    Tables: level l holds ``features`` numbers per vertex, dense (row-major index, axis 0 fastest) while
    (N_l + 2)^D <= ``table_size``, else ``table_size`` entries indexed by the spatial hash
    (XOR_d v_d pi_d) mod ``table_size`` (:data:`HASH_PRIMES`; :meth:`vertex_index`). All levels share one
    parameter ``table`` (sum of the level sizes, features), initialised U(-1e-4, 1e-4).

    Features: per level the 2^D corners of the cell around p, weighted by prod_d w(f_d) or w(1 - f_d)
    with f = p - floor(p); concatenated over levels, level-major: out_dim = levels x features (the input
    itself is not appended, as in Instant-NGP). ``interpolation``: ``linear`` (w(f) = f, Instant-NGP's:
    the features' first derivatives jump across cell faces and their pure second derivatives, hence
    the Laplacian, are zero inside a cell; mixed ones are not) or ``smoothstep`` (w(f) = 3f^2 - 2f^3: C1,
    second derivatives exist inside cells (almost everywhere), so the Laplacian can be supervised).
    The features are linear in ``table``: every output of :meth:`jet` and :meth:`jet_summed` back-propagates
    to it in ordinary autograd. Memory: one level at a time, (N, 2^D) weights and their derivatives.
    """

    def __init__(self, in_features: int, levels: int = 16, features: int = 2, table_size: int = 2 ** 19,
                 base_resolution: int = 16, finest_resolution: int = 512, interpolation: str = "smoothstep"):
        super().__init__()
        if in_features not in (1, 2, 3):
            raise ValueError(f"the grid encoding takes 1-D, 2-D or 3-D inputs, got {in_features}-D")
        for key, value in (("levels", levels), ("features", features), ("table_size", table_size),
                           ("base_resolution", base_resolution)):
            if value < 1:
                raise ValueError(f"grid {key} must be >= 1, got {value}")
        if table_size & (table_size - 1):
            raise ValueError(f"grid table_size must be a power of two (the hash is taken modulo it), got {table_size}")
        if finest_resolution < base_resolution:
            raise ValueError(f"grid finest_resolution ({finest_resolution}) must be >= base_resolution "
                             f"({base_resolution})")
        if interpolation not in GRID_INTERPOLATIONS:
            raise ValueError(f"unknown grid interpolation {interpolation!r}; choose from {list(GRID_INTERPOLATIONS)}")
        d = in_features
        self.in_features, self.features, self.table_size = d, features, table_size
        self.interpolation = interpolation
        self.resolutions = grid_resolutions(levels, base_resolution, finest_resolution)
        self.hashed = [(n + 2) ** d > table_size for n in self.resolutions]
        sizes = [table_size if hashed else (n + 2) ** d for n, hashed in zip(self.resolutions, self.hashed)]
        self.offsets = [sum(sizes[:level]) for level in range(levels)]
        self.out_dim = levels * features
        self.table = nn.Parameter(torch.empty(sum(sizes), features).uniform_(-GRID_INIT, GRID_INIT))
        # Per level and axis, what a vertex coordinate is multiplied by: the dense stride or the hash prime.
        mult = [[HASH_PRIMES[a] if hashed else (n + 2) ** a for a in range(d)]
                for n, hashed in zip(self.resolutions, self.hashed)]
        self.register_buffer("multipliers", torch.tensor(mult, dtype=torch.int64), persistent=False)
        # Corner c of a cell: bits (2^D, D), c = sum_a bit_a 2^(D - 1 - a).
        bits = [[(c >> (d - 1 - a)) & 1 for a in range(d)] for c in range(2 ** d)]
        self.register_buffer("corners", torch.tensor(bits, dtype=torch.int64), persistent=False)

    @property
    def levels(self) -> int:
        return len(self.resolutions)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, resolutions={self.resolutions}, features={self.features}, "
                f"table_size={self.table_size}, hashed_levels={sum(self.hashed)}, interpolation={self.interpolation}")

    def vertex_index(self, level: int, vertices: Tensor) -> Tensor:
        """Row of level ``level``'s table (from its first row) of integer vertex coordinates ``vertices (..., D)``
        in 0 .. N_l + 1: sum_a v_a (N_l + 2)^a on a dense level, (XOR_a v_a pi_a) mod table_size on a hashed one."""
        scaled = vertices * self.multipliers[level]
        if not self.hashed[level]:
            return scaled.sum(-1)
        index = scaled[..., 0]
        for a in range(1, self.in_features):
            index = torch.bitwise_xor(index, scaled[..., a])
        return torch.bitwise_and(index, self.table_size - 1)

    def _profile(self, f: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The 1-D weight w(f) of the upper vertex and its first and second derivatives, f in [0, 1]."""
        if self.interpolation == "linear":
            return f, torch.ones_like(f), torch.zeros_like(f)
        return f * f * (3.0 - 2.0 * f), 6.0 * f * (1.0 - f), 6.0 - 12.0 * f

    def _level(self, x: Tensor, inside: Tensor, level: int, order: int):
        """Level ``level`` at clamped x (N, D): its corner rows E (N, 2^D, F) and the corner weights w (N, 2^D),
        with ``order`` >= 1 their input gradients G (N, D, 2^D) and with ``order`` 2 their Hessians
        H (N, D * D, 2^D), row d * D + e = d^2 w / dx_d dx_e. ``inside`` (N, D): 1 where x was in [-1, 1]."""
        n_cells = self.resolutions[level]
        p = (x + 1.0) * (0.5 * n_cells) + 0.5  # (N, D) in [1/2, N_l + 1/2]
        cell = torch.floor(p).detach()
        f = p - cell
        vertices = cell.long().unsqueeze(1) + self.corners  # (N, 2^D, D)
        rows = self.vertex_index(level, vertices) + self.offsets[level]
        corner_rows = self.table.index_select(0, rows.reshape(-1))
        corner_rows = corner_rows.view(x.shape[0], -1, self.features)
        s, ds, d2s = self._profile(f)
        up = self.corners.to(x.dtype)  # (2^D, D): 1 where the corner is the upper vertex on that axis
        sign = 2.0 * up - 1.0
        a = (1.0 - up) + sign * s.unsqueeze(1)  # (N, 2^D, D): per-axis factors w(f) or 1 - w(f)
        weights = a.prod(-1)
        if order == 0:
            return corner_rows, weights, None, None
        k = inside * (0.5 * n_cells)  # dp / dx, zero where x was clamped
        da = sign * (ds * k).unsqueeze(1)  # (N, 2^D, D)
        d = self.in_features
        axes = range(d)

        def product(factors):
            out = factors[0]
            for factor in factors[1:]:
                out = out * factor
            return out

        grad = torch.stack([product([da[..., i]] + [a[..., j] for j in axes if j != i]) for i in axes], 1)
        if order == 1:
            return corner_rows, weights, grad, None
        d2a = sign * (d2s * k * k).unsqueeze(1)
        hess = []
        for i in axes:
            for j in axes:
                if i == j:
                    hess.append(product([d2a[..., i]] + [a[..., m] for m in axes if m != i]))
                else:
                    hess.append(product([da[..., i], da[..., j]] + [a[..., m] for m in axes if m not in (i, j)]))
        return corner_rows, weights, grad, torch.stack(hess, 1)

    def _clamped(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return x.clamp(-1.0, 1.0), ((x >= -1.0) & (x <= 1.0)).to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, D) in [-1, 1] -> features (N, levels x features)."""
        xc, inside = self._clamped(x)
        out = []
        for level in range(self.levels):
            rows, w, _, _ = self._level(xc, inside, level, 0)
            out.append(torch.bmm(w.unsqueeze(1), rows).squeeze(1))
        return torch.cat(out, -1)

    def jet(self, x, t, h=None):
        """Features (N, K), tangents (T, N, K) = J t and, with ``h``, second-order terms t^T H t + J h (T, N, K)."""
        n, d = x.shape
        t = t.expand(t.shape[0], n, d)
        xc, inside = self._clamped(x)
        pairs = (t.unsqueeze(-1) * t.unsqueeze(-2)).reshape(t.shape[0], n, d * d) if h is not None else None
        values, tangents, seconds = [], [], []
        for level in range(self.levels):
            rows, w, grad, hess = self._level(xc, inside, level, 2 if h is not None else 1)
            values.append(torch.bmm(w.unsqueeze(1), rows).squeeze(1))
            jac = torch.bmm(grad, rows)  # (N, D, F): d features / dx
            tangents.append(torch.einsum("tnd,ndf->tnf", t, jac))
            if h is not None:
                hf = torch.bmm(hess, rows)  # (N, D * D, F)
                seconds.append(torch.einsum("tnk,nkf->tnf", pairs, hf) + torch.einsum("tnd,ndf->tnf", h, jac))
        second = torch.cat(seconds, -1) if h is not None else None
        return torch.cat(values, -1), torch.cat(tangents, -1), second

    def jet_summed(self, x, t):
        """As :meth:`jet` with zero second-order input terms, the second directional derivatives summed over
        the T directions without forming them: sum_j t_j^T H t_j = <sum_j t_j t_j^T, H>, contracted on the
        corner weights (N, 2^D) before the corner rows are read."""
        n, d = x.shape
        t = t.expand(t.shape[0], n, d)
        xc, inside = self._clamped(x)
        moments = torch.einsum("tnd,tne->nde", t, t).reshape(n, 1, d * d)
        values, tangents, seconds = [], [], []
        for level in range(self.levels):
            rows, w, grad, hess = self._level(xc, inside, level, 2)
            values.append(torch.bmm(w.unsqueeze(1), rows).squeeze(1))
            tangents.append(torch.einsum("tnd,ndf->tnf", t, torch.bmm(grad, rows)))
            seconds.append(torch.bmm(torch.bmm(moments, hess), rows).squeeze(1))
        return torch.cat(values, -1), torch.cat(tangents, -1), torch.cat(seconds, -1)


ENCODINGS = ("none", "positional", "fourier", "grid")


def build_encoding(name: str, in_features: int, num_frequencies: int = 4, fourier_num_features: int = 256,
                   fourier_scale: float = 10.0, fourier_seed: int = 0, pe_pi_factor: bool = True,
                   grid: Optional[Mapping[str, Any]] = None) -> Encoding:
    """Builds an encoding by config name (one of ``ENCODINGS``); ``grid``: the grid encoding's settings (keys
    as the ``grid_*`` options without the prefix, :class:`GridEncoding`'s arguments; absent keys keep their
    defaults, Instant-NGP's)."""
    builders: Dict[str, callable] = {
        "none": lambda: IdentityEncoding(in_features),
        "positional": lambda: positional_encoding(in_features, num_frequencies, pe_pi_factor),
        "fourier": lambda: fourier_features(in_features, fourier_num_features, fourier_scale, fourier_seed),
        "grid": lambda: GridEncoding(in_features, **dict(grid or {})),
    }
    if name not in builders:
        raise ValueError(f"unknown encoding {name!r}; choose from {list(ENCODINGS)}")
    return builders[name]()
