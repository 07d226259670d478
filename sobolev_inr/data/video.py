"""Video for regression: loading clips from any source, an embedded synthetic clip, the train/held-out split.

Sources, all named by ``filename``:

* ``synthetic`` or ``synthetic:<frames>``: a clip generated here (:func:`synthetic_clip`: two textured
  shapes moving over a slowly panning scikit-image photo, 128 x 128 pixels, 33 frames by default: 1 + 16 k, so that every
  held-out frame of a time_factor of 2 or 4 is interpolated), the
  embedded default that needs no download;
* a folder of frames (PNG, JPEG, BMP, TIFF), taken in natural name order (``frame2`` before ``frame10``);
* a video file: GIF through Pillow, MP4/AVI/MOV/MKV/WEBM through imageio's ffmpeg plugin (the ``video``
  extra, ``pip install -e ".[video]"``, ships its own ffmpeg binary);
* a bare name, looked up as ``<data_root>/Video/<filename>`` (file or folder).

Frames are mapped to [-1, 1] as images are (:mod:`sobolev_inr.data.images`), and may be cut to
``num_frames`` from ``first_frame`` and centre-cropped and resized to ``sidelength`` (each frame as
:func:`~sobolev_inr.data.images.square_image`). A long clip is not copied several times: only the frames kept
are read (a folder's files) or decoded (a video file's, none after the last one kept), then converted frame by
frame into one float32 clip, mapped to [-1, 1] in place; the training samples are picked from it without a
channels-last copy of the clip or of its derivative targets.

Protocol (the image task's, one axis more): derivative targets are computed on the full clip
(:func:`sobolev_inr.data.targets.video_gradient`: Sobel per pixel step in space, central differences per frame
step in time), then values and targets are taken on the training grid, every ``time_factor``-th frame
and every ``space_factor``-th pixel along y and x; every other sample is held out. The frames never
trained on (``t % time_factor != 0``) are interpolated by the network: the held-out set that matters.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataError
from .coords import video_grid, video_step
from .images import open_image, square_image
from .targets import video_gradient

SYNTHETIC_PREFIX = "synthetic"
SYNTHETIC_FRAMES = 33
SYNTHETIC_SIZE = 128
SYNTHETIC_FPS = 12.0
VIDEO_FOLDER = "Video"
"""Folder under ``data_root`` where bare names are looked up (``data/Video/<name>``)."""
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PILLOW_VIDEO_SUFFIXES = (".gif",)
FFMPEG_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_FPS = 25.0
"""Frame rate assumed for a folder of frames (and for files that do not say theirs)."""


class LoadedVideo(NamedTuple):
    """A clip as loaded: ``frames`` (T, C, H, W) float32 in [-1, 1] (C = 1 or 3), its ``fps``, a description
    of its ``source``, and ``notes`` on what loading did to it, for the run's log."""

    frames: Tensor
    fps: float
    source: str
    notes: List[str]


# ---------------------------------------------------------------------------------------- synthetic
def _skimage_rgb(name: str, size: int) -> Tensor:
    """A scikit-image photo as (3, size, size) in [0, 1]: centre-cropped to a square, resized (antialiased)."""
    import skimage.data
    from PIL import Image

    array = np.asarray(getattr(skimage.data, name)())
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    h, w = array.shape[:2]
    side = min(h, w)
    array = array[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side, :3]
    image = Image.fromarray(array).resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _sample(texture: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Bilinear samples of ``texture (3, h, w)`` at texture coordinates ``u, v (H, W)`` in [-1, 1]
    (x along the width, y along the height; outside: the border colour): (3, H, W)."""
    grid = torch.stack((u, v), dim=-1).unsqueeze(0)
    return F.grid_sample(texture.unsqueeze(0), grid, mode="bilinear", padding_mode="border",
                         align_corners=False).squeeze(0)


def synthetic_clip(frames: int = SYNTHETIC_FRAMES, size: int = SYNTHETIC_SIZE) -> Tensor:
    """The embedded test clip: (T, 3, size, size) float32 in [0, 1], deterministic (no random numbers).

    A window of scikit-image's astronaut pans right by about 0.4 pixel per frame; over it a disc textured
    with the ``chelsea`` cat crosses the frame diagonally while its texture turns, and a square textured
    with the ``coffee`` photo moves right to left, turning 90 degrees over the clip. Edges are
    antialiased over about one pixel, so the clip is smooth enough for finite differences to be
    meaningful, with motion of 1-3 pixels per frame (the time derivative is not small).
    """
    if frames < 2 or size < 8:
        raise ConfigError(f"the synthetic clip needs at least 2 frames of 8 x 8 pixels, asked for {frames} frames of "
                          f"{size} x {size}")
    background = _skimage_rgb("astronaut", int(round(size * 1.25)))
    cat, coffee = _skimage_rgb("chelsea", size), _skimage_rgb("coffee", size)
    centres = (2.0 * torch.arange(size, dtype=torch.float32) + 1.0) / size - 1.0  # pixel centres in [-1, 1]
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    pixel = 2.0 / size
    out = []
    for k in range(frames):
        s = k / max(frames - 1, 1)  # 0 -> 1 over the clip
        # The background: a window 0.8 of the enlarged photo's width, panning right.
        pan = -0.2 + 0.4 * s * min(1.0, 0.5 * frames * pixel)
        frame = _sample(background, 0.8 * x + pan, 0.8 * y)
        # A disc, radius 0.3, crossing from the top left to the bottom right; its texture turns by 60 degrees.
        cx, cy, radius, turn = -0.45 + 0.9 * s, -0.4 + 0.7 * s, 0.3, math.radians(60.0) * s
        dx, dy = x - cx, y - cy
        u = (math.cos(turn) * dx + math.sin(turn) * dy) / radius
        v = (-math.sin(turn) * dx + math.cos(turn) * dy) / radius
        alpha = ((radius - torch.sqrt(dx * dx + dy * dy)) / pixel + 0.5).clamp(0.0, 1.0)
        frame = alpha * _sample(cat, 0.6 * u, 0.6 * v - 0.2) + (1.0 - alpha) * frame
        # A square, half-side 0.22, moving right to left along the bottom, turning by 90 degrees.
        cx, cy, half, turn = 0.55 - 1.0 * s, 0.5, 0.22, math.radians(90.0) * s
        dx, dy = x - cx, y - cy
        u = (math.cos(turn) * dx + math.sin(turn) * dy) / half
        v = (-math.sin(turn) * dx + math.cos(turn) * dy) / half
        inside = (half * (1.0 - torch.maximum(u.abs(), v.abs()))) / pixel + 0.5  # distance to the edge, in pixels
        alpha = inside.clamp(0.0, 1.0)
        frame = alpha * _sample(coffee, 0.5 * u, 0.5 * v) + (1.0 - alpha) * frame
        out.append(frame)
    return torch.stack(out).clamp(0.0, 1.0)


def _parse_synthetic(filename: str) -> int:
    if filename == SYNTHETIC_PREFIX:
        return SYNTHETIC_FRAMES
    text = filename[len(SYNTHETIC_PREFIX) + 1:]
    try:
        frames = int(text)
    except ValueError:
        raise ConfigError(f"filename = {filename}: write synthetic or synthetic:<frames> (an integer), e.g. "
                          f"synthetic:32") from None
    return frames


# ------------------------------------------------------------------------------------------ loading
def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _to_frames(array: np.ndarray, source: str, is_gray: bool) -> Tuple[Tensor, List[str]]:
    """(T, H, W[, C]) uint8/uint16/float array -> (T, C, H, W) float32 in [0, 1], C = 1 or 3 (luma if ``is_gray``).

    One float clip is allocated and filled frame by frame (each frame converted, divided, reordered to
    channels first, its luma taken), so that a long clip costs its decoded bytes and one float32 copy, not a
    float copy per step."""
    notes = []
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise DataError(f"{source}: expected frames of shape (T, H, W[, C]), got an array of shape {array.shape}")
    if array.shape[-1] in (2, 4):
        notes.append(f"{source} has an alpha channel; it is dropped (the colours are fitted as they are)")
        array = array[..., : array.shape[-1] - 1]
    if array.dtype == np.uint8:
        peak = 255.0
    elif array.dtype == np.uint16:
        peak = 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        peak = None
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise DataError(f"{source}: floating-point frames must lie in [0, 1], got [{low:g}, {high:g}]")
    else:
        raise DataError(f"{source}: unsupported frame type {array.dtype}; save 8- or 16-bit frames")
    t, h, w, c = array.shape
    gray = is_gray and c != 1
    frames = torch.empty(t, 1 if gray else c, h, w, dtype=torch.float32)
    for k in range(t):
        frame = torch.from_numpy(np.asarray(array[k], dtype=np.float32))  # (H, W, C): this frame's float copy
        if peak is not None:
            frame /= peak
        frame = frame.permute(2, 0, 1)
        frames[k] = _luma(frame.contiguous()) if gray else frame
    return frames, notes


def _luma(frame: Tensor) -> Tensor:
    """(C, H, W) in [0, 1] -> (1, H, W): :func:`sobolev_inr.metrics.luma` (gray frames as they are)."""
    from ..metrics import luma

    return frame if frame.shape[0] == 1 else luma(frame)


def _luma_frames(frames: Tensor) -> Tensor:
    """(T, C, H, W) in [0, 1] -> (T, 1, H, W), the luma of every frame (:func:`sobolev_inr.metrics.luma`)."""
    return frames if frames.shape[1] == 1 else torch.stack([_luma(f) for f in frames])


def _frame_files(folder: Path) -> List[Path]:
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=_natural_key)
    if not files:
        raise DataError(f"folder {folder} holds no frames ({', '.join(FRAME_SUFFIXES)} files)")
    return files


def _read_frame_folder(folder: Path, is_gray: bool, keep: slice) -> Tuple[Tensor, int, List[str]]:
    """The frames ``keep`` of the folder's frames (only those files are read), their total number, notes."""
    files = _frame_files(folder)
    total, kept = len(files), files[keep]
    images = []
    for path in kept:
        image = open_image(path)
        image = image.convert("L" if is_gray else "RGB") if image.mode not in ("I;16", "I") else image
        images.append(np.asarray(image))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        sizes = sorted({f"{a.shape[1]}x{a.shape[0]}" for a in images})
        raise DataError(f"the frames in {folder} differ in size ({', '.join(sizes)}); every frame must have the same "
                        f"size")
    if not images:
        return torch.empty(0), total, []
    frames, notes = _to_frames(np.stack(images), str(folder), is_gray)
    return frames, total, [f"{total} frames from {files[0].name} to {files[-1].name} (natural name order)", *notes]


def _read_video_file(path: Path, is_gray: bool, keep: slice) -> Tuple[Tensor, Optional[int], float, List[str]]:
    """The frames ``keep`` (start, stop) of a video file, decoded one at a time (none after ``keep.stop``), the
    number of frames in the file (None when decoding stopped before its end), its frame rate and notes."""
    suffix = path.suffix.lower()
    if suffix not in PILLOW_VIDEO_SUFFIXES + FFMPEG_VIDEO_SUFFIXES:
        raise DataError(f"{path}: unknown video type {suffix!r}; give a folder of frames, a GIF, or one of "
                        f"{', '.join(FFMPEG_VIDEO_SUFFIXES)}")
    import imageio.v3 as iio

    if suffix in FFMPEG_VIDEO_SUFFIXES:
        from ..reporting.outputs import has_ffmpeg

        if not has_ffmpeg():
            raise DataError(f"reading {path} needs imageio's ffmpeg plugin: pip install -e \".[video]\" (or "
                            f"imageio-ffmpeg); or extract its frames into a folder and give the folder")
    plugin = "pillow" if suffix in PILLOW_VIDEO_SUFFIXES else "FFMPEG"
    kept, total = [], 0
    try:
        for frame in iio.imiter(path, plugin=plugin):
            if keep.stop is not None and total >= keep.stop:
                total = None  # the file holds more frames than asked for: not decoded, not counted
                break
            if total >= keep.start:
                kept.append(np.asarray(frame))
            total += 1
        meta = iio.immeta(path, plugin=plugin)
    except Exception as e:  # imageio's plugins raise many types for a broken file
        raise DataError(f"cannot read video {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        ) from None
    fps = float(meta.get("fps") or 0.0)
    if not fps and meta.get("duration"):
        fps = 1000.0 / float(meta["duration"])  # Pillow: milliseconds per frame
    if not kept:
        return torch.empty(0), total, fps or DEFAULT_FPS, []
    frames, notes = _to_frames(np.stack(kept), str(path), is_gray)
    return frames, total, fps or DEFAULT_FPS, notes


def resolve_video_path(filename: str, data_root: str) -> Path:
    """A file or folder for ``filename`` (an existing path, or ``<data_root>/Video/<filename>``); DataError if none."""
    direct = Path(filename).expanduser()
    if direct.exists():
        return direct
    candidate = Path(data_root) / VIDEO_FOLDER / filename
    if candidate.exists():
        return candidate
    raise DataError(f"video {filename!r} not found: looked for {direct} and {candidate} (data_root = {data_root}); "
                    f"give a folder of frames or a video file, or use filename = synthetic (embedded, no download)")


def load_video(filename: str, data_root: str = "../../data", is_gray: bool = False, num_frames: int = 0,
               first_frame: int = 0) -> LoadedVideo:
    """Loads ``filename`` (see the module docstring for the sources) as a :class:`LoadedVideo` of frames
    ``first_frame`` to ``first_frame + num_frames`` (0: to the end); ``is_gray`` converts to luma."""
    if not filename:
        raise ConfigError("filename is required (a folder of frames, a video file, or synthetic)")
    if num_frames < 0 or first_frame < 0:
        raise ConfigError(f"num_frames and first_frame must be >= 0, got {num_frames} and {first_frame}")
    notes: List[str] = []
    keep = slice(first_frame, first_frame + num_frames if num_frames else None)
    if filename == SYNTHETIC_PREFIX or filename.startswith(SYNTHETIC_PREFIX + ":"):
        total = _parse_synthetic(filename)
        frames = synthetic_clip(total)
        frames = _luma_frames(frames) if is_gray else frames
        source, fps = f"synthetic clip ({total} frames, {SYNTHETIC_SIZE}x{SYNTHETIC_SIZE}, generated)", SYNTHETIC_FPS
        frames = frames[keep]
    else:
        path = resolve_video_path(filename, data_root)
        source = str(path)
        if path.is_dir():
            (frames, total, notes), fps = _read_frame_folder(path, is_gray, keep), DEFAULT_FPS
        else:
            frames, total, fps, notes = _read_video_file(path, is_gray, keep)
    stop = total if not num_frames else first_frame + num_frames
    if total is not None and (first_frame >= total or stop > total):
        raise DataError(f"{source} has {total} frames; first_frame = {first_frame}, num_frames = {num_frames} asks "
                        f"for frames {first_frame} to {stop - 1}")
    if (first_frame, stop) != (0, total):
        notes.append(f"frames {first_frame} to {stop - 1}" + (f" of {total}" if total is not None else ""))
    if frames.shape[0] < 2:
        raise DataError(f"{source} has a single frame; a video needs at least 2 (fit one image with "
                        f"Experiments/image_regression)")
    return LoadedVideo(frames.mul_(2.0).sub_(1.0), fps, source, notes)  # [0, 1] -> [-1, 1] in place: no copy


def square_frames(frames: Tensor, sidelength: int) -> Tuple[Tensor, List[str]]:
    """Every frame of ``frames (T, C, H, W)`` centre-cropped to a square and resized to ``sidelength`` (bilinear,
    :func:`~sobolev_inr.data.images.square_image`); 0 keeps them. Returns the frames and notes for the log."""
    if not sidelength:
        return frames, []
    resized = [square_image(f, sidelength) for f in frames]
    return torch.stack([f for f, _ in resized]), resized[0][1]


# ---------------------------------------------------------------------------------------- the split
@dataclass
class VideoData:
    """A clip, its training samples and derivative targets. Shapes: T frames of C channels, H x W pixels.

    frames: (T, C, H, W) in [-1, 1]. coords: (T*H*W, 3) (t, y, x) in [-1, 1], row-major over
    (frame, row, column) (:func:`sobolev_inr.data.coords.video_grid`). train_index: (N,) indices of the training
    samples into that grid. train_values: (N, C). train_jacobian: (N, C, 3) targets per sample step,
    [d/dt, d/dy, d/dx]. derivative_step: coordinate distance per sample step, (t, y, x). gradient:
    (T, C, 3, H, W) full-clip targets per sample step, for evaluation. heldout: (T, H, W) bool.
    train_frames: indices of the frames on the training grid.
    """

    frames: Tensor
    coords: Tensor
    train_index: Tensor
    train_values: Tensor
    train_jacobian: Tensor
    derivative_step: Tuple[float, float, float]
    gradient: Tensor
    heldout: Tensor
    train_frames: List[int]
    time_factor: int
    space_factor: int
    fps: float = DEFAULT_FPS
    source: str = ""
    notes: List[str] = field(default_factory=list)
    train_second_differences: None = None
    """Video has no Laplacian supervision (``val``, ``val_der``)."""

    @property
    def channels(self) -> int:
        return self.frames.shape[1]

    @property
    def shape(self) -> Tuple[int, int, int]:
        """(T, H, W)."""
        return self.frames.shape[0], self.frames.shape[2], self.frames.shape[3]

    @property
    def train_coords(self) -> Tensor:
        return self.coords[self.train_index]

    @property
    def heldout_frames(self) -> List[int]:
        """Frames never trained on (interpolated, or extrapolated past the last training frame)."""
        trained = set(self.train_frames)
        return [k for k in range(self.shape[0]) if k not in trained]


def prepare_video(frames: Tensor, time_factor: int = 2, space_factor: int = 1, der_operator: str = "sobel",
                  fps: float = DEFAULT_FPS, source: str = "", notes: Sequence[str] = ()) -> VideoData:
    """Splits ``frames (T, C, H, W)`` into training and held-out samples and computes the targets."""
    if time_factor < 1 or space_factor < 1:
        raise ConfigError(f"time_factor and space_factor must be >= 1, got {time_factor} and {space_factor}")
    t, c, h, w = frames.shape
    if t < 2:
        raise DataError(f"{source or 'the clip'} has a single frame; a video needs at least 2")
    train_t, rows, cols = torch.arange(0, t, time_factor), torch.arange(0, h, space_factor), torch.arange(0, w, space_factor)
    if len(train_t) < 2:
        raise DataError(f"time_factor = {time_factor} leaves {len(train_t)} training frame of {t} ({source or 'clip'}); "
                        f"use a smaller time_factor or more frames")
    if len(rows) < 2 or len(cols) < 2:
        raise DataError(f"space_factor = {space_factor} leaves a training grid of {len(rows)}x{len(cols)} pixels for "
                        f"{h}x{w} frames; use a smaller space_factor")
    grid = (train_t[:, None, None], rows[None, :, None], cols[None, None, :])  # the training grid, broadcast
    train_index = ((grid[0] * h + grid[1]) * w + grid[2]).reshape(-1)
    gradient = video_gradient(frames, der_operator)
    # The training samples, picked straight from the (T, H, W)-indexed views: no channels-last copy of the clip.
    train_values = frames.permute(0, 2, 3, 1)[grid].reshape(-1, c).contiguous()
    train_jacobian = gradient.permute(0, 3, 4, 1, 2)[grid].reshape(-1, c, 3).contiguous()
    heldout = torch.ones(t, h, w, dtype=torch.bool)
    heldout[grid] = False
    return VideoData(frames=frames, coords=video_grid(t, h, w), train_index=train_index,
                     train_values=train_values, train_jacobian=train_jacobian,
                     derivative_step=video_step(t, h, w), gradient=gradient, heldout=heldout,
                     train_frames=train_t.tolist(), time_factor=time_factor, space_factor=space_factor, fps=fps,
                     source=source, notes=list(notes))


def describe(data: VideoData) -> List[str]:
    """Lines for the run's log: the clip, its training grid and what is held out."""
    t, h, w = data.shape
    extrapolated = [k for k in data.heldout_frames if k > data.train_frames[-1]]
    lines = [f"video: {data.source}: {t} frames of {h}x{w}, {data.channels} channel(s), {data.fps:g} fps",
             *[f"note: {n}" for n in data.notes],
             f"training grid: every {data.time_factor} frame(s) and every {data.space_factor} pixel(s): "
             f"{len(data.train_frames)} frames x {len(range(0, h, data.space_factor))}x{len(range(0, w, data.space_factor))}"
             f" = {len(data.train_index)} samples; {len(data.heldout_frames)} frames never trained on, "
             f"{int(data.heldout.sum())} samples held out"]
    if extrapolated:
        lines.append(f"note: frames {extrapolated[0]}-{extrapolated[-1]} lie after the last training frame: they are "
                     f"extrapolated, not interpolated (a clip of 1 + k * time_factor frames has none)")
    return lines
