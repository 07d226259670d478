"""Images for regression: loading from any source, and the train/held-out split with derivative targets.

Sources, all named by ``filename``:

* ``skimage:<name>``: an image bundled with scikit-image (``skimage:camera``, ``skimage:astronaut``,
  ...), the embedded default that needs no download;
* a path to a PNG/JPEG file, absolute or relative to the working directory;
* a bare name, resolved as the original code does: ``<data_root>/<dataset>/HR/<filename>.png``.

Values are mapped to [-1, 1]. Protocol (paper 000): derivative targets are computed at full
resolution, then values and derivatives are taken at every ``factor``-th pixel in both
directions for training; all other pixels are held out for evaluation. With
``der_on_downsampled`` the targets are computed on the downsampled image instead (the
derivative-precision protocol), and are then per *training-grid* step (``factor`` pixels).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..errors import ConfigError, DataError
from .coords import heldout_mask, image_grid, image_step
from .targets import image_gradient, image_second_differences

SKIMAGE_PREFIX = "skimage:"
SKIMAGE_IMAGES = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins", "grass", "gravel",
                  "immunohistochemistry", "moon", "page", "rocket", "text")
"""scikit-image images that ship inside the package (no download)."""
HIGH_DEPTH_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
"""PIL modes of 16-bit grayscale files (older Pillow opens 16-bit PNGs as 'I'); scaled by 1 / 65535."""


def _skimage_image(name: str) -> Image.Image:
    if name not in SKIMAGE_IMAGES:
        raise DataError(f"unknown scikit-image image {name!r}; bundled ones: {', '.join(SKIMAGE_IMAGES)}")
    import skimage.data

    array = getattr(skimage.data, name)()
    return Image.fromarray(np.asarray(array))


def resolve_image_path(filename: str, data_root: str, dataset: str) -> Path:
    """A file path for ``filename`` (an existing path, or the original layout); DataError if none."""
    direct = Path(filename).expanduser()
    if direct.suffix and direct.is_file():
        return direct
    candidate = Path(data_root) / dataset / "HR" / f"{filename}.png"
    if candidate.is_file():
        return candidate
    raise DataError(
        f"image {filename!r} not found: looked for the file {direct} and for {candidate} "
        f"(data_root = {data_root}, dataset = {dataset}). Link the data set into the project's data/ folder "
        f"(see data/README.md, e.g. `ln -s /path/to/Set5 data/`), set data_root, or use filename = skimage:camera")


class LoadedImage(NamedTuple):
    """An image as loaded: ``image`` (C, H, W) float32 in [-1, 1] (C = 1 or 3), a description of its
    ``source``, and ``notes`` on what loading did to it that a user should know (an alpha channel
    dropped), for the run's log."""

    image: Tensor
    source: str
    notes: List[str]


def open_image(path: Path) -> Image.Image:
    """The image file at ``path``, fully read (the file closed); DataError naming the file if it cannot be."""
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def load_image(filename: str, data_root: str = "../../data", dataset: str = "Set5", is_gray: bool = False
               ) -> LoadedImage:
    """Loads ``filename`` (see the module docstring for the sources) as a :class:`LoadedImage`.

    ``is_gray`` converts to luma (PIL's 'L', as the original code). A grayscale source stays one
    channel; an alpha channel is dropped, and the notes say so.
    """
    if not filename:
        raise ConfigError("filename is required (a Set5 name such as baby, a path, or skimage:camera)")
    if filename.startswith(SKIMAGE_PREFIX):
        img = _skimage_image(filename[len(SKIMAGE_PREFIX):])
        source = f"scikit-image {filename[len(SKIMAGE_PREFIX):]}"
    else:
        path = resolve_image_path(filename, data_root, dataset)
        img = open_image(path)
        source = str(path)
    notes = []
    if "A" in img.getbands():
        notes.append(f"{source} has an alpha channel (PIL mode {img.mode}); it is dropped, the colour channels are "
                     f"fitted as they are (not composited over a background)")
    if img.mode in HIGH_DEPTH_GRAY_MODES:
        # 16-bit grayscale (PNG, TIFF): PIL's convert("L") clips to 255 instead of rescaling.
        array, depth = np.array(img, dtype=np.float32), 65535.0
    elif img.mode == "F":
        raise DataError(f"image {source} is floating point (PIL mode F), whose value range is unknown; "
                        f"save it as an 8- or 16-bit PNG")
    else:
        if img.mode in ("1", "L", "LA", "La") or is_gray:
            img = img.convert("L")
        else:
            img = img.convert("RGB")
        array, depth = np.array(img, dtype=np.float32), 255.0
    del img
    # In place on one float32 array (and one channel-first copy of a colour image): a big image is not copied
    # several times; the same values as array / depth * 2 - 1 computed out of place.
    array /= depth
    tensor = torch.from_numpy(array)
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()
    return LoadedImage(tensor.mul_(2.0).sub_(1.0), source, notes)


RESAMPLE_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "box": Image.BOX,
                    "lanczos": Image.LANCZOS}
"""PIL's resampling filters by name. PIL places pixel centres at half-pixel positions (the project's convention,
:mod:`sobolev_inr.data.coords`) and widens a filter's support by the scale when shrinking (it antialiases);
``bicubic`` is Keys' cubic with a = -0.5 (OpenCV's INTER_CUBIC and torch's use a = -0.75)."""


def resize_image(image: Tensor, size: Tuple[int, int], method: str = "bilinear") -> Tensor:
    """``image (C, H, W)`` resized to ``size = (height, width)`` by PIL's ``method`` filter
    (:data:`RESAMPLE_FILTERS`), in float without an 8-bit round trip, so values keep their range (and a
    cubic's overshoot). ``bilinear`` is what SIREN's and SPDER's ``Resize(sidelength)`` do to their PIL
    images; ``bicubic`` is the super-resolution baseline of paper 004 (PIL's BICUBIC)."""
    height, width = int(size[0]), int(size[1])
    if height < 2 or width < 2:
        raise ConfigError(f"cannot resize an image to {height}x{width}; both sides must be >= 2 pixels")
    if method not in RESAMPLE_FILTERS:
        raise ConfigError(f"unknown resampling filter {method!r}; choose from {sorted(RESAMPLE_FILTERS)}")
    if (height, width) == tuple(image.shape[1:]):
        return image
    channels = [Image.fromarray(c.numpy().astype(np.float32), mode="F").resize((width, height), RESAMPLE_FILTERS[method])
                for c in image.float()]
    return torch.stack([torch.from_numpy(np.asarray(c, dtype=np.float32).copy()) for c in channels])


def square_image(image: Tensor, sidelength: int) -> Tuple[Tensor, List[str]]:
    """``image (C, H, W)`` centre-cropped to a square and resized to ``sidelength`` x ``sidelength`` by
    :func:`resize_image` (bilinear); 0 keeps it as it is. Returns the image and notes for the run's log."""
    if not sidelength:
        return image, []
    notes = []
    _, h, w = image.shape
    if h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = image[:, top:top + side, left:left + side]
        notes.append(f"centre-cropped {h}x{w} to {side}x{side} before resizing (no distortion)")
    notes.append(f"resized from {image.shape[1]}x{image.shape[2]} to {sidelength}x{sidelength} (bilinear)")
    return resize_image(image, (sidelength, sidelength)), notes


@dataclass
class ImageData:
    """An image, its training samples and derivative targets. Shapes: C channels, H x W pixels.

    image: (C, H, W) in [-1, 1]. coords: (H*W, 2) (x, y) in [-1, 1], row-major. train_index:
    (N,) indices into the flattened grid of the training pixels. train_values: (N, C).
    train_jacobian: (N, C, 2) targets per ``derivative_step`` ([d/dx, d/dy]).
    train_second_differences: (N, C, 2) per-axis second differences per step squared (their sum
    is the Laplacian target). derivative_step: coordinate distance per unit of the targets, (x, y). gradient:
    (C, 2, H, W) full-resolution targets per pixel step, for evaluation and figures.
    heldout: (H, W) bool. train_shape: the training grid (h, w).
    """

    image: Tensor
    coords: Tensor
    train_index: Tensor
    train_values: Tensor
    train_jacobian: Tensor
    train_second_differences: Tensor
    derivative_step: Tuple[float, float]
    gradient: Tensor
    heldout: Tensor
    train_shape: Tuple[int, int]
    factor: int
    source: str = ""
    notes: List[str] = field(default_factory=list)
    """What loading did to the image (an alpha channel dropped, ...), for the run's log."""

    @property
    def channels(self) -> int:
        return self.image.shape[0]

    @property
    def shape(self) -> Tuple[int, int]:
        return self.image.shape[1], self.image.shape[2]

    @property
    def pixel_step(self) -> Tuple[float, float]:
        return image_step(*self.shape)

    @property
    def train_coords(self) -> Tensor:
        return self.coords[self.train_index]


def _flatten_targets(per_axis: Tensor) -> Tensor:
    """(C, 2, h, w) -> (h*w, C, 2), row-major like the coordinate grid."""
    c, d, h, w = per_axis.shape
    return per_axis.permute(2, 3, 0, 1).reshape(h * w, c, d)


def prepare_image(image: Tensor, factor: int = 4, der_operator: str = "sobel", der_on_downsampled: bool = False,
                  crop: bool = False, source: str = "", notes: Sequence[str] = ()) -> ImageData:
    """Splits ``image (C, H, W)`` into training and held-out pixels and computes the targets.

    An image whose size is not a multiple of ``factor`` is an error (as in the original code)
    unless ``crop``, which keeps the top-left multiple.
    """
    if factor < 1:
        raise ConfigError(f"factor must be >= 1, got {factor}")
    c, h, w = image.shape
    if h % factor or w % factor:
        if not crop:
            raise DataError(f"image size {h}x{w} ({source or 'image'}) is not a multiple of factor = {factor}; "
                            f"set crop = True to crop it to {h - h % factor}x{w - w % factor}, or change factor")
        image = image[:, : h - h % factor, : w - w % factor].contiguous()
        c, h, w = image.shape
    if h // factor < 2 or w // factor < 2:
        raise DataError(f"factor = {factor} leaves a training grid of {h // factor}x{w // factor} pixels "
                        f"for a {h}x{w} image ({source or 'image'}); use a smaller factor")
    rows = torch.arange(0, h, factor)
    cols = torch.arange(0, w, factor)
    train_index = (rows[:, None] * w + cols[None, :]).reshape(-1)
    gradient = image_gradient(image, der_operator)
    if der_on_downsampled:
        small = image[:, ::factor, ::factor].contiguous()
        train_grad = image_gradient(small, der_operator)
        train_second = image_second_differences(small)
        step = tuple(s * factor for s in image_step(h, w))
    else:
        train_grad = gradient[:, :, ::factor, ::factor]
        train_second = image_second_differences(image)[:, :, ::factor, ::factor]
        step = image_step(h, w)
    heldout = heldout_mask(h, w, factor)
    flat = image.reshape(c, -1).T
    return ImageData(
        image=image, coords=image_grid(h, w), train_index=train_index, train_values=flat[train_index].contiguous(),
        train_jacobian=_flatten_targets(train_grad).contiguous(),
        train_second_differences=_flatten_targets(train_second).contiguous(),
        derivative_step=step, gradient=gradient, heldout=heldout, train_shape=(len(rows), len(cols)),
        factor=factor, source=source, notes=list(notes))
