"""NeRF-style rendering with the derivatives of each rendered pixel with respect to its coordinates.

``rays``: pinhole rays of pixels (nerf-pytorch's conventions, no half-pixel offset), NDC, whole
views and rescaled intrinsics. ``volume``: stratified sampling, compositing and the batch renderer,
each carrying forward-mode tangents d/dx, d/dy per pixel step (kornia's normalised Sobel units).
``render``: test views as images.
"""
from .rays import (NDCSpace, Rays, aligned_pixel_offset, image_pixels, image_rays, pixel_rays, rescale_intrinsics,
                   strided_shape, to_ndc)
from .render import RenderedImage, render_image
from .volume import (Composite, Field, RenderedRays, composite, draw_ray_randomness, render_rays,
                     sample_along_rays)

__all__ = ["NDCSpace", "Rays", "aligned_pixel_offset", "image_pixels", "image_rays", "pixel_rays",
           "rescale_intrinsics", "strided_shape", "to_ndc", "RenderedImage", "render_image", "Composite", "Field",
           "RenderedRays", "composite", "draw_ray_randomness", "render_rays", "sample_along_rays"]
