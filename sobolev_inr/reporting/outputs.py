"""A run's raw outputs: images and clips at their native resolution, and videos, beside the matplotlib figures.

The tasks hold images as (C, H, W) and clips as (T, C, H, W) tensors, C = 1 (gray) or 3 (RGB), values in
[-1, 1]. Written here:

* :func:`save_image`: an 8-bit PNG, one pixel per pixel (mode ``L`` for gray, ``RGB`` for colour), value
  x stored as ``round(255 * clamp((x + 1) / 2, 0, 1))`` (:func:`to_uint8`), so that it reads back within
  1/255 of the values mapped to [0, 1];
* :func:`save_array`: the values themselves, float32 ``.npy``, in the task's units ([-1, 1], unclamped),
  channels last: (H, W, C) for an image, (T, H, W, C) for a clip;
* :func:`write_video`: the one video writer: ``<stem>.mp4`` (H.264 through imageio's ffmpeg plugin) when
  the ``video`` extra (imageio-ffmpeg) is installed, ``<stem>.gif`` (Pillow, looping) otherwise; it returns
  the path it wrote.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

PathLike = Union[str, Path]
VIDEO_QUALITY = 8
"""imageio's ffmpeg quality (0-10, its default 5) for MP4s."""


def to_uint8(values: Tensor) -> np.ndarray:
    """Channels-first values in [-1, 1], (C, H, W) or (T, C, H, W), as channels-last uint8 (H, W, C) or
    (T, H, W, C): ``round(255 * clamp((x + 1) / 2, 0, 1))``."""
    x = ((values.detach().cpu().float().clamp(-1.0, 1.0) * 0.5 + 0.5) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(x.movedim(-3, -1).numpy())


def save_image(path: PathLike, image: Tensor) -> Path:
    """``image`` (C, H, W) in [-1, 1], C = 1 or 3, as an 8-bit PNG of H x W pixels (gray or RGB) at ``path``."""
    from PIL import Image

    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"save_image takes a (C, H, W) image with C = 1 or 3, got shape {tuple(image.shape)}")
    array = to_uint8(image)
    path = Path(path)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
    return path


def save_array(path: PathLike, values: Tensor) -> Path:
    """``values``, an image (C, H, W) or a clip (T, C, H, W) in the task's units, as float32 ``.npy``, channels
    last: (H, W, C) or (T, H, W, C), the values unchanged (not clamped)."""
    if values.dim() not in (3, 4):
        raise ValueError(f"save_array takes (C, H, W) or (T, C, H, W) values, got shape {tuple(values.shape)}")
    path = Path(path)
    np.save(path, np.ascontiguousarray(values.detach().cpu().float().movedim(-3, -1).numpy()))
    return path


def has_ffmpeg() -> bool:
    """Whether imageio-ffmpeg (the ``video`` extra, with its ffmpeg binary) is installed: videos are then MP4."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def video_suffix() -> str:
    """The suffix :func:`write_video` gives its file here: ``.mp4`` with imageio-ffmpeg, else ``.gif``."""
    return ".mp4" if has_ffmpeg() else ".gif"


def write_video(path_stem: PathLike, frames: np.ndarray, fps: float) -> Path:
    """``frames`` uint8, (T, H, W) gray or (T, H, W, C) with C = 1 or 3, at ``fps`` frames per second, as
    ``<path_stem>.mp4`` when imageio-ffmpeg is installed (H.264, yuv420p; a frame of odd height or width gets
    its last row or column repeated, as the codec needs even sizes), else as a looping ``<path_stem>.gif``
    (Pillow, no encoder needed; a frame lasts ``round(1000 / fps)`` ms, and Pillow merges a frame identical
    to the one before into it, lasting both). Returns the path written."""
    import imageio.v3 as iio

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] not in (1, 3)):
        raise ValueError(f"write_video takes uint8 frames (T, H, W) or (T, H, W, 1 | 3), got {frames.dtype} "
                         f"{frames.shape}")
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    stem = Path(path_stem)
    if has_ffmpeg():
        path = stem.with_name(stem.name + ".mp4")
        _, h, w, _ = frames.shape
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        iio.imwrite(path, frames, plugin="FFMPEG", fps=fps, codec="libx264", quality=VIDEO_QUALITY,
                    pixelformat="yuv420p", macro_block_size=1, ffmpeg_log_level="error")
    else:
        path = stem.with_name(stem.name + ".gif")
        iio.imwrite(path, frames, plugin="pillow", duration=int(round(1000.0 / fps)), loop=0)
    return path
