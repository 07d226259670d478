"""Whole views: render a test pose as an image, at the training resolution or another one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .rays import NDCSpace, aligned_pixel_offset, image_rays, rescale_intrinsics, strided_shape
from .volume import Field, render_rays


@dataclass
class RenderedImage:
    """A rendered view: rgb (H, W, 3); depth, disparity, acc (H, W) (depth and disparity in NDC
    ``t`` units when rendered in NDC)."""

    rgb: Tensor
    depth: Tensor
    disparity: Tensor
    acc: Tensor


def render_image(field: Field, c2w: Tensor, height: int, width: int, focal: float, num_samples: int,
                 near: float, far: float, *, ndc: Optional[NDCSpace], lindisp: bool = False,
                 white_background: bool = False, render_factor: float = 1.0, align_pixels: bool = False,
                 chunk: int = 32768, stride: int = 1) -> RenderedImage:
    """Renders the view from ``c2w (3, 4)`` of a camera ``(height, width, focal)`` (pixels), for evaluation.

    Test-time rendering as nerf-pytorch's ``render_path``: no perturbation, no density noise, no
    graph (``torch.no_grad``), ``chunk`` rays at a time, ``field(points, None)`` (values only).
    ``render_factor`` renders at ``1 / render_factor`` the resolution with the intrinsics rescaled
    (:func:`~.rays.rescale_intrinsics`; 0.25 renders four times larger); ``ndc`` stays the training
    camera's NDC space whatever the resolution. ``align_pixels`` shifts the rescaled pixel grid by
    :func:`~.rays.aligned_pixel_offset` so that each rendered pixel looks at the image area it
    covers (off by default: the original convention, pixel ``(x, y)`` through position ``(x, y)``).
    ``stride`` k then renders every k-th pixel along each axis only, ``(k i, k j)``: the same rays as the
    whole view's at those pixels, an image ``ceil(height / k) x ceil(width / k)`` (that is, ``view[::k, ::k]``;
    a cheaper score of the same view, unlike ``render_factor``, which changes the pixels).
    Memory: ``chunk`` rays at a time (and the field's own chunks), whatever the view's size; the
    outputs, 6 floats per pixel, come on top.
    """
    height, width, focal = rescale_intrinsics(height, width, focal, render_factor)
    offset = aligned_pixel_offset(render_factor) if align_pixels else 0.0
    with torch.no_grad():
        rays = image_rays(c2w, focal, height, width, offset=offset, stride=stride)
        out = render_rays(field, rays, num_samples, near, far, ndc=ndc, perturb=False, raw_noise_std=0.0,
                          lindisp=lindisp, white_background=white_background, chunk=chunk)
    height, width = strided_shape(height, width, stride)
    return RenderedImage(out.rgb.reshape(height, width, 3), out.depth.reshape(height, width),
                         out.disparity.reshape(height, width), out.acc.reshape(height, width))
