"""Camera rays of pixels and their NDC form, with tangents with respect to the pixel coordinates.

Conventions (the original inverse-rendering code's, which are nerf-pytorch's):

* A pixel is ``(x, y) = (column, row)`` in pixel units, integer values at pixel positions, with
  **no half-pixel offset**: pixel ``(x, y)`` casts the ray through image position ``(x, y)``, not
  through its centre ``(x + 0.5, y + 0.5)``. The principal point is ``(W / 2, H / 2)``.
* Camera frame: OpenGL / nerf-pytorch, columns of ``c2w[:3, :3]`` are the camera's right, up and
  back axes; the camera looks along ``-z``. Pixel ``(x, y)`` has the camera-frame direction
  ``((x - W/2) / f, -(y - H/2) / f, -1)`` (image rows go down, camera ``y`` goes up), and the
  world ray is ``origin = c2w[:3, 3]``, ``direction = c2w[:3, :3] @ camera_direction``
  (not normalised: its ``z`` in the camera frame is -1).
* Tangents ``(T, N, 3)`` are derivatives with respect to the pixel coordinates; from
  :func:`pixel_rays`, ``T = 2`` in the order (d/dx, d/dy): per pixel step to the right (along the
  width) and per pixel step down (along the height), the order and the unit of kornia's
  normalised Sobel (``spatial_gradient(normalized=True)``) on the image.
* NDC (:func:`to_ndc`): nerf-pytorch's normalised device coordinates for forward-facing scenes,
  defined by one camera's ``(H, W, f)`` and the near plane ``z = -near`` of the scene's world frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

Index = Union[slice, Tensor]


@dataclass
class Rays:
    """A batch of rays and, optionally, their tangents with respect to the pixel coordinates.

    origins, directions: (N, 3). origin_tangents, direction_tangents: (T, N, 3), d origin / d pixel
    coordinate and d direction / d pixel coordinate (see the module doc for the order and unit).
    ``None`` means zero where the other one is given (pinhole rays: every ray of a camera starts at
    its centre, so ``origin_tangents`` is ``None``); both ``None`` means no tangents were carried.
    """

    origins: Tensor
    directions: Tensor
    origin_tangents: Optional[Tensor] = None
    direction_tangents: Optional[Tensor] = None

    @property
    def num_tangents(self) -> Optional[int]:
        """T, or None when the rays carry no tangents."""
        for tangents in (self.origin_tangents, self.direction_tangents):
            if tangents is not None:
                return tangents.shape[0]
        return None

    def __len__(self) -> int:
        return self.origins.shape[0]

    def select(self, index: Index) -> "Rays":
        """The rays ``index`` (a slice or an index tensor over N), tangents included."""
        pick = lambda tangents: None if tangents is None else tangents[:, index]
        return Rays(self.origins[index], self.directions[index], pick(self.origin_tangents),
                    pick(self.direction_tangents))


@dataclass(frozen=True)
class NDCSpace:
    """The NDC space of a forward-facing scene: the training camera's ``(height, width, focal)``
    in pixels and the world near plane ``z = -near`` (nerf-pytorch: 1.0 after LLFF's bound scaling).

    NDC depends on ``focal / width`` and ``focal / height``; keep the training camera's values when
    rendering at another resolution so that the network is queried in the space it was trained in.
    """

    height: float
    width: float
    focal: float
    near: float = 1.0


def pixel_rays(pixels: Tensor, c2w: Tensor, focal: float, height: float, width: float,
               with_tangents: bool = True) -> Rays:
    """World rays of pinhole pixels, with their tangents with respect to (x, y).

    pixels: (N, 2) float ``(x, y) = (column, row)`` in pixel units, no half-pixel offset (module
    doc); c2w: (3, 4) camera-to-world, or (N, 3, 4) one pose per ray; focal in pixels; principal
    point ``(width / 2, height / 2)``. Returns directions ``R [(x - W/2)/f, -(y - H/2)/f, -1]`` and
    origins ``t`` (N, 3). With tangents: ``direction_tangents`` (2, N, 3) = (R[:, 0] / f,
    -R[:, 1] / f) per pixel step (constant in the pixel, dependent on the pose), and
    ``origin_tangents`` None (zero: the origin is the camera centre for every pixel).
    """
    if pixels.dim() != 2 or pixels.shape[-1] != 2:
        raise ValueError(f"pixels must be (N, 2) = (x, y), got shape {tuple(pixels.shape)}")
    num_rays = pixels.shape[0]
    if c2w.shape not in ((3, 4), (num_rays, 3, 4)):
        raise ValueError(f"c2w must be (3, 4) or (N, 3, 4) with N = {num_rays}, got shape {tuple(c2w.shape)}")
    x, y = pixels.unbind(-1)
    camera_directions = torch.stack(((x - width / 2) / focal, -(y - height / 2) / focal, -torch.ones_like(x)), -1)
    rotation = c2w[..., :3, :3]
    directions = (rotation @ camera_directions.unsqueeze(-1)).squeeze(-1)  # (N, 3)
    origins = c2w[..., :3, 3].expand(num_rays, 3)
    direction_tangents = None
    if with_tangents:
        # d direction / dx = R e_x / f, d direction / dy = -R e_y / f: (2, 3) or (2, N, 3).
        per_axis = torch.stack((rotation[..., :, 0] / focal, -rotation[..., :, 1] / focal))
        direction_tangents = per_axis.unsqueeze(-2).expand(2, num_rays, 3) if per_axis.dim() == 2 else per_axis
    return Rays(origins, directions, None, direction_tangents)


def to_ndc(rays: Rays, height: float, width: float, focal: float, near: float = 1.0) -> Rays:
    """nerf-pytorch's ``ndc_rays``: shift each origin to the plane ``z = -near``, then project.

    After the shift ``o' = o + s d`` with ``s = -(near + o_z) / d_z``, NDC is
    ``o_ndc = (-2f/W o'_x / o'_z, -2f/H o'_y / o'_z, 1 + 2 near / o'_z)`` and
    ``d_ndc = (-2f/W (d_x / d_z - o'_x / o'_z), -2f/H (d_y / d_z - o'_y / o'_z), -2 near / o'_z)``;
    ``t`` in [0, 1] along ``d_ndc`` then covers the world ray from the near plane to infinity,
    linearly in disparity. Tangents are carried by the exact Jacobian-vector products:
    ``ds = -(do_z + s dd_z) / d_z``, ``do' = do + ds d + s dd``, ``d(u / v) = (du - (u / v) dv) / v``
    for each quotient, and ``d(1 / o'_z) = -do'_z / o'_z^2``; they are torch expressions of the
    inputs, so they stay differentiable with respect to the pixel coordinates.
    """
    o, d = rays.origins, rays.directions
    shift = -(near + o[..., 2]) / d[..., 2]
    o = o + shift[..., None] * d
    scale = o.new_tensor([-2.0 * focal / width, -2.0 * focal / height])  # (x, y) NDC scale
    o_ratio = o[..., :2] / o[..., 2:]  # o'_xy / o'_z
    d_ratio = d[..., :2] / d[..., 2:]  # d_xy / d_z
    ndc_origins = torch.cat((scale * o_ratio, 1.0 + 2.0 * near / o[..., 2:]), -1)
    ndc_directions = torch.cat((scale * (d_ratio - o_ratio), -2.0 * near / o[..., 2:]), -1)
    if rays.num_tangents is None:
        return Rays(ndc_origins, ndc_directions)
    do, dd = rays.origin_tangents, rays.direction_tangents
    if do is None:
        do = torch.zeros_like(dd)
    if dd is None:
        dd = torch.zeros_like(do)
    d_shift = -(do[..., 2] + shift * dd[..., 2]) / d[..., 2]  # (T, N)
    do = do + d_shift[..., None] * d + shift[..., None] * dd  # tangent of o' (its z is 0 up to rounding)
    d_o_ratio = (do[..., :2] - o_ratio * do[..., 2:]) / o[..., 2:]
    d_d_ratio = (dd[..., :2] - d_ratio * dd[..., 2:]) / d[..., 2:]
    d_inverse_oz = -do[..., 2:] / o[..., 2:] ** 2  # d(1 / o'_z)
    origin_tangents = torch.cat((scale * d_o_ratio, 2.0 * near * d_inverse_oz), -1)
    direction_tangents = torch.cat((scale * (d_d_ratio - d_o_ratio), -2.0 * near * d_inverse_oz), -1)
    return Rays(ndc_origins, ndc_directions, origin_tangents, direction_tangents)


def image_pixels(height: int, width: int, offset: float = 0.0, dtype: torch.dtype = torch.float32,
                 device: Optional[Union[str, torch.device]] = None, stride: int = 1) -> Tensor:
    """(h*w, 2) pixel coordinates ``(x + offset, y + offset)`` of a whole image, row-major.

    Entry ``row * w + col`` is pixel ``(col, row)``, so ``rgb.reshape(h, w, 3)`` is the image.
    ``offset = 0`` is the training convention (no half-pixel offset); see
    :func:`aligned_pixel_offset` for rendering at another resolution. ``stride`` k keeps every k-th
    pixel along each axis, ``(k i, k j)`` from 0: ``h, w = ceil(height / k), ceil(width / k)``, the
    pixels of ``image[::k, ::k]``.
    """
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    rows, cols = torch.meshgrid(torch.arange(0, height, stride, dtype=dtype, device=device),
                                torch.arange(0, width, stride, dtype=dtype, device=device), indexing="ij")
    return torch.stack((cols.reshape(-1), rows.reshape(-1)), -1) + offset


def strided_shape(height: int, width: int, stride: int) -> Tuple[int, int]:
    """The shape of ``image[::stride, ::stride]`` for an ``height x width`` image (:func:`image_pixels`)."""
    return -(-height // stride), -(-width // stride)


def image_rays(c2w: Tensor, focal: float, height: int, width: int, offset: float = 0.0,
               with_tangents: bool = False, stride: int = 1) -> Rays:
    """Rays of every pixel of an ``height x width`` view from pose ``c2w (3, 4)``, row-major
    (:func:`image_pixels`), for rendering test views; with ``stride`` k those of every k-th pixel along each
    axis only (the same rays as the whole view's at those pixels). Pixels in ``c2w``'s dtype and device."""
    pixels = image_pixels(height, width, offset, dtype=c2w.dtype, device=c2w.device, stride=stride)
    return pixel_rays(pixels, c2w, focal, height, width, with_tangents)


def rescale_intrinsics(height: int, width: int, focal: float, render_factor: float) -> Tuple[int, int, float]:
    """``(height, width, focal)`` of the same camera rendered at ``1 / render_factor`` the resolution.

    nerf-pytorch's ``render_factor``: 4 renders a quarter-size preview, ``H // 4, W // 4, f / 4``;
    a factor below 1 renders larger (0.25: four times the size, e.g. 3024x4032 from a model trained at
    756x1008). The focal length scales with the pixel size, and the principal point stays at the
    centre of the new image. (The original inverse-rendering code divided H, W and focal but kept the
    full-resolution intrinsics matrix K for the rays and the NDC focal, so ``render_factor != 0``
    rendered the wrong part of the view in a wrongly scaled NDC space; do not copy that.)
    Sizes that ``render_factor`` does not divide are floored, as nerf-pytorch does, which moves the
    principal point by under half a new pixel. Keep the training camera's :class:`NDCSpace` for the
    rendered view.
    """
    if render_factor <= 0:
        raise ValueError(f"render_factor must be positive, got {render_factor}")
    new_height = int(math.floor(height / render_factor + 1e-9))
    new_width = int(math.floor(width / render_factor + 1e-9))
    if new_height < 1 or new_width < 1:
        raise ValueError(f"render_factor {render_factor} leaves no pixel of a {height}x{width} image")
    return new_height, new_width, focal / render_factor


def aligned_pixel_offset(render_factor: float) -> float:
    """Pixel offset that makes a view rendered at ``1 / render_factor`` the resolution look at the
    same image positions as the training pixels.

    A model trained with the no-half-pixel-offset convention learns, for the ray through image
    position ``u``, the colour of the pixel area centred at ``u + 0.5``. A pixel ``x'`` of the
    rescaled image covers the area centred at ``(x' + 0.5) render_factor - 0.5`` in training pixel
    positions, so its ray should pass through ``x' + 0.5 (1 - 1 / render_factor)`` in the new
    image's pixel units (pass it as ``offset`` to :func:`image_pixels` / :func:`image_rays`).
    Rendering 4x larger with offset 0 (what nerf-pytorch does) shifts the view by 1.5 new pixels
    up and left. Exact when ``render_factor`` divides the image size.
    """
    return 0.5 * (1.0 - 1.0 / render_factor)
