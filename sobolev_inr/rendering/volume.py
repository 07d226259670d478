"""NeRF volume rendering (nerf-pytorch's coarse pass) with the rendered colour's tangents.

The tangents are the derivatives of each rendered pixel colour with respect to that pixel's own
coordinates ``(x, y)`` (see :mod:`sobolev_inr.rendering.rays`): per pixel step to the right (along
the width) and per pixel step down (along the height), the order and the unit of kornia's
normalised Sobel on the image (``spatial_gradient(normalized=True)``), so they compare directly
with Sobel targets of the training views. They are carried in forward mode through the rays, NDC,
the sample points, the field and compositing, where the original code called ``autograd.grad``
once per colour channel with the pixel coordinates as the leaf; both give the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor

from .rays import NDCSpace, Rays, to_ndc

# (points (P, 3), point tangents (T, P, 3) or None) -> (raw (P, 4), raw tangents (T, P, 4) or None)
Field = Callable[[Tensor, Optional[Tensor]], Tuple[Tensor, Optional[Tensor]]]

LAST_INTERVAL = 1e10  # nerf-pytorch's length of the last interval: it ends every ray opaque
TRANSMITTANCE_EPS = 1e-10  # nerf-pytorch's cumprod(1 - alpha + 1e-10)
LOG_INVERSE_EPS = math.log(1.0 / TRANSMITTANCE_EPS)


@dataclass
class Composite:
    """What :func:`composite` returns, per ray: rgb (R, 3); rgb_tangents (T, R, 3) or None;
    depth, disparity, acc (R,) (depth and disparity in the units of ``t``: NDC when sampling in
    NDC); weights (R, S)."""

    rgb: Tensor
    rgb_tangents: Optional[Tensor]
    depth: Tensor
    disparity: Tensor
    acc: Tensor
    weights: Tensor


@dataclass
class RenderedRays:
    """What :func:`render_rays` returns: rgb (R, 3); rgb_tangents (T, R, 3), d rgb / d pixel
    coordinate per pixel step (``T = 2``: d/dx, d/dy for :func:`~.rays.pixel_rays`), or None;
    depth, disparity, acc (R,)."""

    rgb: Tensor
    rgb_tangents: Optional[Tensor]
    depth: Tensor
    disparity: Tensor
    acc: Tensor


def sample_along_rays(num_rays: int, num_samples: int, near: float, far: float, lindisp: bool = False,
                      perturb: bool = True, generator: Optional[torch.Generator] = None,
                      offsets: Optional[Tensor] = None, device: Optional[Union[str, torch.device]] = None,
                      dtype: torch.dtype = torch.float32) -> Tensor:
    """nerf-pytorch's stratified sample depths ``t (R, S)`` between ``near`` and ``far``.

    ``num_samples`` evenly spaced bins, linear in ``t`` or, with ``lindisp``, in ``1 / t`` (needs
    ``near > 0``; in NDC, where near = 0 and far = 1, linear in ``t`` already is linear in the
    scene's disparity). With ``perturb`` each sample moves to ``lower + (upper - lower) u`` in the
    interval between the midpoints around it, ``u`` ~ U[0, 1) per sample: ``offsets`` (R, S) if
    given, else drawn from ``generator`` (on ``device``). ``t`` does not depend on the pixel
    coordinates, so a sample point ``o + t d`` has the tangent ``do + t dd``.
    """
    if lindisp and near <= 0:
        raise ValueError(f"lindisp samples linearly in 1 / t and needs near > 0, got near = {near} "
                         "(in NDC, near = 0, sample linearly in t: that is linear in disparity)")
    fractions = torch.linspace(0.0, 1.0, num_samples, device=device, dtype=dtype)
    if lindisp:
        t = 1.0 / (1.0 / near * (1.0 - fractions) + 1.0 / far * fractions)
    else:
        t = near * (1.0 - fractions) + far * fractions
    t = t.expand(num_rays, num_samples)
    if not perturb:
        return t
    if offsets is None:
        if generator is None:
            raise ValueError("perturb needs the random offsets: pass a torch.Generator or offsets (R, S)")
        offsets = torch.rand((num_rays, num_samples), generator=generator, device=device, dtype=dtype)
    elif offsets.shape != (num_rays, num_samples):
        raise ValueError(f"offsets must be (R, S) = ({num_rays}, {num_samples}), got {tuple(offsets.shape)}")
    mids = 0.5 * (t[..., 1:] + t[..., :-1])
    upper = torch.cat((mids, t[..., -1:]), -1)
    lower = torch.cat((t[..., :1], mids), -1)
    return lower + (upper - lower) * offsets


def _exclusive_cumsum(x: Tensor) -> Tensor:
    """sum_{j < k} x_j along the last axis, without subtracting (the last entry may be huge)."""
    return torch.cat((torch.zeros_like(x[..., :1]), torch.cumsum(x[..., :-1], -1)), -1)


def composite(raw: Tensor, t_vals: Tensor, direction_norm: Tensor, raw_tangents: Optional[Tensor] = None,
              direction_norm_tangents: Optional[Tensor] = None, noise: Optional[Tensor] = None,
              white_background: bool = False) -> Composite:
    """nerf-pytorch's ``raw2outputs`` and, given tangents, the exact tangents of the rendered colour.

    raw (R, S, 4): per sample (r, g, b, density) before activation; t_vals (R, S) sample depths;
    direction_norm (R,) = |d| of the rays ``t`` is measured along; raw_tangents (T, R, S, 4) and
    direction_norm_tangents (T, R): their tangents (``None`` is zero where the other is given);
    noise (R, S): added to the density before the ReLU (nerf-pytorch's ``raw_noise_std``
    regularisation), a constant. The formula, per ray:

        c = sigmoid(raw[:3]), sigma = relu(raw[3] + noise), delta_k = (t_{k+1} - t_k) |d|, with
        t_S - t_{S-1} = 1e10; x_k = sigma_k delta_k; alpha_k = 1 - exp(-x_k);
        T_k = prod_{j<k} (1 - alpha_j + 1e-10); w_k = alpha_k T_k; rgb = sum w c
        (+ 1 - sum w with ``white_background``); depth = sum w t; acc = sum w;
        disparity = 1 / max(1e-10, depth / acc).

    Its tangent, exactly for this formula (the ReLU's derivative is 0 where raw + noise <= 0):
    dx = dsigma delta + sigma d|d| (t_{k+1} - t_k); dalpha = exp(-x) dx; d log T_k = -sum_{j<k}
    r_j dx_j with r = exp(-x) / (exp(-x) + 1e-10) = sigmoid(log(1e10) - x), which avoids dividing
    by (1 - alpha + 1e-10); dw = T dalpha + w d log T; drgb = sum (dw c + w c (1 - c) draw).
    Where sigma > 0 the 1e10 last interval makes exp(-x) = 0 and the last dalpha exactly 0, without
    inf * 0. All plain torch operations: autograd back-propagates from rgb and its tangents to raw,
    raw_tangents and direction_norm. Where acc = 0 (no density on the ray, where nerf-pytorch's
    0 / 0 gives NaN) the disparity is 1e10, the value its formula gives for depth 0.
    """
    colours = torch.sigmoid(raw[..., :3])
    density = raw[..., 3] if noise is None else raw[..., 3] + noise
    sigma = torch.relu(density)
    intervals = torch.cat((t_vals[..., 1:] - t_vals[..., :-1], torch.full_like(t_vals[..., :1], LAST_INTERVAL)), -1)
    deltas = intervals * direction_norm[..., None]
    thickness = sigma * deltas  # optical thickness of each interval
    alpha = 1.0 - torch.exp(-thickness)
    survival = 1.0 - alpha + TRANSMITTANCE_EPS
    transmittance = torch.cumprod(torch.cat((torch.ones_like(survival[..., :1]), survival[..., :-1]), -1), -1)
    weights = alpha * transmittance
    rgb = (weights[..., None] * colours).sum(-2)
    acc = weights.sum(-1)
    depth = (weights * t_vals).sum(-1)
    has_density = acc > 0
    depth_over_acc = torch.where(has_density, depth / torch.where(has_density, acc, torch.ones_like(acc)), 0.0)
    disparity = 1.0 / torch.clamp(depth_over_acc, min=1e-10)
    if white_background:
        rgb = rgb + (1.0 - acc[..., None])

    rgb_tangents = None
    if raw_tangents is not None or direction_norm_tangents is not None:
        d_thickness = 0.0
        if raw_tangents is not None:
            d_colours = colours * (1.0 - colours) * raw_tangents[..., :3]  # (T, R, S, 3)
            d_thickness = (density > 0).to(raw.dtype) * raw_tangents[..., 3] * deltas
        if direction_norm_tangents is not None:
            d_thickness = d_thickness + sigma * intervals * direction_norm_tangents[..., None]
        d_alpha = torch.exp(-thickness) * d_thickness
        ratio = torch.sigmoid(LOG_INVERSE_EPS - thickness)  # exp(-x) / (exp(-x) + 1e-10)
        d_log_transmittance = -_exclusive_cumsum(ratio * d_thickness)
        d_weights = transmittance * d_alpha + weights * d_log_transmittance  # (T, R, S)
        rgb_tangents = (d_weights[..., None] * colours).sum(-2)
        if raw_tangents is not None:
            rgb_tangents = rgb_tangents + (weights[..., None] * d_colours).sum(-2)
        if white_background:
            rgb_tangents = rgb_tangents - d_weights.sum(-1)[..., None]
    return Composite(rgb, rgb_tangents, depth, disparity, acc, weights)


def draw_ray_randomness(num_rays: int, num_samples: int, perturb: bool, raw_noise_std: float,
                        generator: Optional[torch.Generator], device: Optional[Union[str, torch.device]] = None,
                        dtype: torch.dtype = torch.float32) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """The random numbers of a batch of rays as :func:`render_rays` draws them from ``generator``: stratified
    offsets (R, S) in [0, 1) with ``perturb`` (else None), then density noise (R, S) of std ``raw_noise_std``
    when it is > 0 (else None). Drawn for the whole batch, so that any split of the batch renders the same."""
    if (perturb or raw_noise_std > 0) and generator is None:
        raise ValueError("perturb and raw_noise_std > 0 need a torch.Generator for their random numbers")
    offsets = noise = None
    if perturb:
        offsets = torch.rand((num_rays, num_samples), generator=generator, device=device, dtype=dtype)
    if raw_noise_std > 0:
        noise = torch.randn((num_rays, num_samples), generator=generator, device=device, dtype=dtype) * raw_noise_std
    return offsets, noise


def render_rays(field: Field, rays: Rays, num_samples: int, near: float, far: float, *,
                ndc: Optional[NDCSpace], perturb: bool, raw_noise_std: float, lindisp: bool = False,
                white_background: bool = False, with_tangents: bool = False,
                generator: Optional[torch.Generator] = None, chunk: Optional[int] = None,
                draws: Optional[Tuple[Optional[Tensor], Optional[Tensor]]] = None) -> RenderedRays:
    """Renders a batch of rays through ``field``, and with ``with_tangents`` the colour's tangents.

    field(points (P, 3), point_tangents (T, P, 3) or None) -> (raw (P, 4), raw_tangents (T, P, 4)
    or None), e.g. ``lambda p, t: (model(p), None) if t is None else value_and_tangents(model, p, t)``
    with :func:`sobolev_inr.derivatives.value_and_tangents` (or ``model.jet(p, t)[:2]``).
    rays: world rays (:func:`~.rays.pixel_rays`), converted to ``ndc`` first when it is given (the
    training camera's NDC space; sample there with near = 0, far = 1). ``num_samples`` depths per
    ray (:func:`sample_along_rays`), stratified with ``perturb``; density noise of std
    ``raw_noise_std`` (nerf-pytorch's training values: ``perturb=True, raw_noise_std=1.0``; test
    views: False, 0). The random numbers come from ``generator`` (on the rays' device), drawn once
    for the whole batch before any chunk, offsets (R, S) then noise (R, S)
    (:func:`draw_ray_randomness`), and serve the value and its tangents alike; or they are given as
    ``draws`` = (offsets, noise), e.g. a slice of a bigger batch's. ``chunk`` renders at most that many rays
    at a time (results do not depend on it); under ``torch.no_grad()`` a whole image then renders in memory
    bounded by the chunk.
    rgb_tangents are per pixel step, (d/dx, d/dy) for pixel rays: kornia's normalised Sobel units.
    """
    if with_tangents and rays.num_tangents is None:
        raise ValueError("with_tangents needs rays that carry tangents (pixel_rays(..., with_tangents=True))")
    num_rays = len(rays)
    device, dtype = rays.origins.device, rays.origins.dtype
    if draws is None:
        offsets, noise = draw_ray_randomness(num_rays, num_samples, perturb, raw_noise_std, generator, device, dtype)
    else:
        offsets, noise = draws
        if (offsets is None) == perturb or (noise is None) == (raw_noise_std > 0):
            raise ValueError("draws must hold offsets exactly when perturb, and noise exactly when raw_noise_std > 0")
    chunk = num_rays if chunk is None else chunk
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    pieces = []
    for start in range(0, num_rays, chunk):
        part = slice(start, start + chunk)
        pieces.append(_render_chunk(
            field, rays.select(part), num_samples, near, far, ndc, lindisp, white_background, with_tangents,
            None if offsets is None else offsets[part], None if noise is None else noise[part], perturb))
    if len(pieces) == 1:
        return pieces[0]
    cat = lambda name, dim=0: torch.cat([getattr(p, name) for p in pieces], dim)  # noqa: E731
    return RenderedRays(cat("rgb"), cat("rgb_tangents", 1) if with_tangents else None, cat("depth"),
                        cat("disparity"), cat("acc"))


def _render_chunk(field: Field, rays: Rays, num_samples: int, near: float, far: float, ndc: Optional[NDCSpace],
                  lindisp: bool, white_background: bool, with_tangents: bool, offsets: Optional[Tensor],
                  noise: Optional[Tensor], perturb: bool) -> RenderedRays:
    """One chunk of :func:`render_rays`, with its random numbers already drawn."""
    if ndc is not None:
        rays = to_ndc(rays, ndc.height, ndc.width, ndc.focal, ndc.near)
    origins, directions = rays.origins, rays.directions
    num_rays = origins.shape[0]
    t_vals = sample_along_rays(num_rays, num_samples, near, far, lindisp=lindisp, perturb=perturb, offsets=offsets,
                               device=origins.device, dtype=origins.dtype)
    points = origins[:, None, :] + t_vals[..., None] * directions[:, None, :]  # (R, S, 3)
    direction_norm = torch.linalg.vector_norm(directions, dim=-1)
    point_tangents = direction_norm_tangents = None
    if with_tangents:
        d_origins, d_directions = rays.origin_tangents, rays.direction_tangents  # (T, R, 3) or None
        point_tangents = 0.0
        if d_origins is not None:
            point_tangents = d_origins[:, :, None, :]
        if d_directions is not None:
            point_tangents = point_tangents + t_vals[..., None] * d_directions[:, :, None, :]
            direction_norm_tangents = (directions * d_directions).sum(-1) / direction_norm  # d|d| = d . dd / |d|
        point_tangents = point_tangents.expand(-1, num_rays, num_samples, 3).reshape(-1, num_rays * num_samples, 3)
    raw, raw_tangents = field(points.reshape(-1, 3), point_tangents)
    raw = raw.reshape(num_rays, num_samples, raw.shape[-1])
    if with_tangents:
        if raw_tangents is None:
            raise ValueError("field returned no raw tangents although point tangents were given")
        raw_tangents = raw_tangents.reshape(raw_tangents.shape[0], num_rays, num_samples, raw.shape[-1])
    else:
        raw_tangents = None
    out = composite(raw, t_vals, direction_norm, raw_tangents, direction_norm_tangents, noise, white_background)
    return RenderedRays(out.rgb, out.rgb_tangents, out.depth, out.disparity, out.acc)
