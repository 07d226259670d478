"""LLFF forward-facing scenes, loaded as nerf-pytorch loads them (poses, bounds, images, render path).

A scene folder (LLFF's layout, as released with NeRF)::

    <datadir>/poses_bounds.npy   (N, 17) float64, one row per view, rows in image-file-name order
    <datadir>/images/            full-size images (optional)
    <datadir>/images_<k>/        the same images downsampled by k (LLFF made them with
                                 ImageMagick's ``mogrify -resize <100/k>%``)

A row of ``poses_bounds.npy`` is a 3x5 matrix stored row-major, then (near, far): ``[R | t | hwf]``,
R's columns the camera's (down, right, back) axes in world coordinates, t its centre, hwf the
(height, width, focal) of the full-size images in pixels; near and far bound the depths (along
the viewing axis, world units) of the scene points the view sees.

:func:`load_llff` computes what nerf-pytorch's ``load_llff_data`` computes (read in
yenchenlin/nerf-pytorch ``load_llff.py``; megvii-research/Sobolev_INRs carries an unchanged copy),
in the same order and float32 where it is float32:

1. images from ``images_<factor>/`` (``images/`` for factor 1), files ending in JPG, jpg or png,
   sorted by name, RGB / 255 (an alpha channel is dropped); H, W from them, focal = hwf focal / factor;
2. rotation columns reordered from (down, right, back) to (right, up, back): [col 1, -col 0, col 2];
3. translations and bounds multiplied by ``scale = 1 / (min bound * bd_factor)``, so that the
   nearest bound becomes 1 / bd_factor (NDC's near plane at depth 1 then lies in front of the scene);
4. ``recenter``: every pose left-multiplied by the inverse of the average pose (centre = mean
   camera centre, back axis = normalised sum of back axes, up from the summed up axes), so that
   the mean camera sits at the origin looking down -z;
5. ``spherify`` (360-degree scenes): the frame moved to the point nearest to all viewing axes,
   scaled to unit RMS camera distance, and a 120-pose circle as render path; otherwise the
   spiral render path of ``render_path_spiral`` (:func:`spiral_render_poses`).

Departures, none of which changes a number: ``images/`` is not required when ``images_<k>/``
exists (nerf-pytorch reads its first file to size a resize that it then does not need); factor 1
reads ``images/`` (nerf-pytorch would look for ``images_1/``); ``path_zflat`` gives 60 poses
(nerf-pytorch's ``N_views /= 2`` makes a float that current NumPy rejects); grey images are
replicated to RGB (nerf-pytorch's ``[..., :3]`` fails on them). Errors where nerf-pytorch printed a
line and returned None, or went on: a missing folder, a count mismatch, an unreadable file, images
of different sizes, views with different focal lengths, and images whose size is not the hwf
size / factor (the focal length would not fit them).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from .images import open_image

POSES_BOUNDS_FILE = "poses_bounds.npy"
IMAGE_SUFFIXES = ("JPG", "jpg", "png")
"""File endings nerf-pytorch loads (case-sensitive, as its ``endswith`` tests)."""
SPIRAL_FRAMES = 120
SPIRAL_ROTATIONS = 2
SPHERE_FRAMES = 120
README_HINT = "data/README.md tells how to link the LLFF data (ln -s /path/to/nerf_llff_data data/nerf_llff_data)"


@dataclass
class LLFFScene:
    """A forward-facing scene: N views of H x W pixels with their cameras.

    Conventions (nerf-pytorch's, which OpenGL shares):

    * ``poses`` (N, 3, 4) float32, camera-to-world ``[right | up | back | centre]``: the columns
      are the camera's x (right), y (up) and z (back) axes and its centre, in world coordinates.
      A camera looks down its -z axis; pixel (column i, row j) lies in the camera direction
      ((i - W/2) / focal, -(j - H/2) / focal, -1) as nerf-pytorch's ``get_rays`` casts it
      (principal point at (W/2, H/2); COLMAP's pixel centres would be at i + 0.5, j + 0.5).
    * World frame: the raw frame multiplied by ``scale`` and, with ``recenter``, moved so that the
      average camera is at the origin with axes (right, up, back) = (x, y, z): the cameras look
      roughly down -z, which is what NDC expects. Units: nearest bound = 1 / bd_factor.
    * ``images`` (N, H, W, 3) float32 in [0, 1], RGB, row 0 at the top; view n is the n-th file
      by name and row n of ``poses_bounds.npy``.
    * ``bounds`` (N, 2) float32 (near, far) depths along each viewing axis, in world units.
    * ``focal`` in pixels at the loaded resolution (the raw focal / ``factor``); ``height``, ``width``
      those of the loaded images.
    * ``render_poses`` (M, 3, 4) float32, same convention: the spiral (or circle) for videos.
    * ``center_view``: the view whose centre is nearest to the average camera centre,
      nerf-pytorch's held-out view when ``llffhold <= 0`` (see :func:`holdout_views`).
    * ``source_hwf``: (H, W, focal) of view 0 as ``poses_bounds.npy`` states it (full size).
    * ``notes``: what loading did besides reading (e.g. a folder created by ``make_missing``).
    """

    images: np.ndarray
    poses: np.ndarray
    bounds: np.ndarray
    height: int
    width: int
    focal: float
    render_poses: np.ndarray
    image_paths: List[Path]
    factor: int
    scale: float
    center_view: int
    source_hwf: Tuple[float, float, float]
    datadir: Path
    notes: List[str] = field(default_factory=list)

    @property
    def num_views(self) -> int:
        return self.images.shape[0]

    def split(self, llffhold: int = 8) -> Tuple[np.ndarray, np.ndarray]:
        """(train_ids, test_ids): every ``llffhold``-th view held out, or ``center_view`` if <= 0."""
        return holdout_views(self.num_views, llffhold, center_view=self.center_view)


def holdout_views(num_views: int, llffhold: int, center_view: Optional[int] = None
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Splits view indices into (train_ids, test_ids), int64 arrays in increasing order.

    ``llffhold > 0``: views 0, llffhold, 2 llffhold, ... are held out (0, 8, 16 of fern's 20 for
    8, the NeRF paper's protocol). ``llffhold <= 0``: nerf-pytorch's fallback, one held-out view,
    ``center_view`` (the camera nearest to the average camera centre, :attr:`LLFFScene.center_view`).
    nerf-pytorch's validation views are its test views; every other view trains.
    """
    if num_views < 2:
        raise DataError(f"a train/test split needs at least 2 views, the scene has {num_views}")
    if llffhold > 0:
        test = np.arange(0, num_views, llffhold)
    else:
        if center_view is None:
            raise ConfigError("llffhold <= 0 holds out the view nearest to the mean camera: pass center_view "
                              "(LLFFScene.center_view), or set llffhold > 0 (8 in the NeRF paper)")
        if not 0 <= center_view < num_views:
            raise ConfigError(f"center_view = {center_view} is not a view index of a {num_views}-view scene")
        test = np.array([center_view])
    train = np.setdiff1d(np.arange(num_views), test)
    if len(train) == 0:
        raise ConfigError(f"llffhold = {llffhold} holds out all {num_views} views and leaves none to train on; "
                          f"use llffhold >= 2 (8 in the NeRF paper) or llffhold = 0 for one held-out view")
    if len(test) == 0:
        raise ConfigError(f"llffhold = {llffhold} leaves no test view among {num_views} views")
    return train.astype(np.int64), test.astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# Pose geometry (nerf-pytorch's math; arrays keep the dtype they come in, float32 as there).

def _normalize(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def look_frame(back: np.ndarray, up: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(3, 4) camera-to-world pose with z along ``back``, y the part of ``up`` orthogonal to it, x = y cross z."""
    z = _normalize(back)
    x = _normalize(np.cross(up, z))
    y = _normalize(np.cross(z, x))
    return np.stack([x, y, z, centre], axis=1)


def average_pose(poses: np.ndarray) -> np.ndarray:
    """The mean camera of ``poses (N, 3, 4)``: mean centre, summed back and up axes. (3, 4)."""
    return look_frame(poses[:, :, 2].sum(0), poses[:, :, 1].sum(0), poses[:, :, 3].mean(0))


def _to_4x4(poses: np.ndarray) -> np.ndarray:
    """(N, 3, 4) -> (N, 4, 4) float64 with the bottom row (0, 0, 0, 1)."""
    out = np.zeros((poses.shape[0], 4, 4))
    out[:, :3, :4] = poses
    out[:, 3, 3] = 1.0
    return out


def recenter_poses(poses: np.ndarray) -> np.ndarray:
    """``poses`` expressed in the frame of their average pose (float64 product, input dtype out)."""
    average = _to_4x4(average_pose(poses)[None])[0]
    return (np.linalg.inv(average) @ _to_4x4(poses))[:, :3, :4].astype(poses.dtype)


def spherify_poses(poses: np.ndarray, bounds: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nerf-pytorch's ``spherify_poses``: (poses, render_poses (120, 3, 4), bounds), for 360-degree scenes.

    The origin moves to the point nearest (least squares) to all viewing axes, z towards the mean
    camera offset from it, and everything is scaled to unit RMS camera distance. The render path is
    a circle of 120 poses at the cameras' mean height, ``linspace(0, 2 pi, 120)`` (both ends: the
    first and last frames coincide, as there).
    """
    axes = poses[:, :, 2:3]
    centres = poses[:, :, 3:4]
    projectors = np.eye(3) - axes * np.transpose(axes, (0, 2, 1))  # onto the plane normal to each axis
    offsets = -projectors @ centres
    nearest_point = np.squeeze(-np.linalg.inv((np.transpose(projectors, (0, 2, 1)) @ projectors).mean(0))
                               @ offsets.mean(0))
    z = _normalize((poses[:, :, 3] - nearest_point).mean(0))
    x = _normalize(np.cross([0.1, 0.2, 0.3], z))
    y = _normalize(np.cross(z, x))
    frame = np.stack([x, y, z, nearest_point], axis=1)
    moved = (np.linalg.inv(_to_4x4(frame[None])) @ _to_4x4(poses))[:, :3, :4]
    radius = np.sqrt(np.mean(np.sum(np.square(moved[:, :, 3]), -1)))
    scale = 1.0 / radius
    moved[:, :, 3] *= scale
    bounds = bounds * np.float32(scale)  # float32 product, as nerf-pytorch's in-place bds *= sc
    height = np.mean(moved[:, :, 3], 0)[2]
    circle_radius = np.sqrt((radius * scale) ** 2 - height ** 2)
    path = []
    for theta in np.linspace(0.0, 2.0 * np.pi, SPHERE_FRAMES):
        origin = np.array([circle_radius * np.cos(theta), circle_radius * np.sin(theta), height])
        back = _normalize(origin)
        right = _normalize(np.cross(back, [0.0, 0.0, -1.0]))
        path.append(np.stack([right, _normalize(np.cross(back, right)), back, origin], axis=1))
    return moved.astype(np.float32), np.stack(path).astype(np.float32), bounds.astype(np.float32)


def spiral_render_poses(poses: np.ndarray, bounds: np.ndarray, path_zflat: bool = False) -> np.ndarray:
    """nerf-pytorch's spiral video path around the average pose: (120, 3, 4), or (60, 3, 4) if ``path_zflat``.

    Every camera looks at the focus point, ``focus_depth`` in front of the average camera, with
    ``1 / focus_depth = 0.25 / (0.9 min bound) + 0.75 / (5 max bound)``; the centres follow
    ``radii * (cos theta, -sin theta, -sin(theta / 2))`` in the average camera's frame over 2 turns,
    radii the 90th percentile of |camera centre| per axis. ``path_zflat``: one turn, no motion along
    z, the path moved 0.1 x 0.9 min bound forward. (nerf-pytorch also computes a ``zdelta`` that
    ``render_path_spiral`` never reads.)
    """
    centre_pose = average_pose(poses)
    up = _normalize(poses[:, :, 1].sum(0))
    close_depth, far_depth = bounds.min() * 0.9, bounds.max() * 5.0
    focus_depth = 1.0 / (0.25 / close_depth + 0.75 / far_depth)
    radii = np.percentile(np.abs(poses[:, :, 3]), 90, axis=0)
    frames, rotations = SPIRAL_FRAMES, SPIRAL_ROTATIONS
    if path_zflat:
        centre_pose[:, 3] = centre_pose[:, 3] + (-close_depth * 0.1) * centre_pose[:, 2]
        radii[2] = 0.0
        frames, rotations = SPIRAL_FRAMES // 2, 1
    scales = np.append(radii, 1.0)
    focus_point = centre_pose @ np.array([0.0, 0.0, -focus_depth, 1.0])
    path = []
    for theta in np.linspace(0.0, 2.0 * np.pi * rotations, frames + 1)[:-1]:
        centre = centre_pose @ (np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * 0.5), 1.0]) * scales)
        path.append(look_frame(centre - focus_point, up, centre))
    return np.stack(path).astype(np.float32)


def llff_to_opengl(raw_rotations: np.ndarray) -> np.ndarray:
    """(..., 3, 3+) LLFF (down, right, back, ...) columns -> (right, up, back, ...), nerf-pytorch's reordering."""
    return np.concatenate([raw_rotations[..., 1:2], -raw_rotations[..., 0:1], raw_rotations[..., 2:]], axis=-1)


def opengl_to_llff(poses: np.ndarray) -> np.ndarray:
    """The inverse of :func:`llff_to_opengl`: (right, up, back, ...) -> (down, right, back, ...)."""
    return np.concatenate([-poses[..., 1:2], poses[..., 0:1], poses[..., 2:]], axis=-1)


# ----------------------------------------------------------------------------------------------------
# Files.

def image_folder_name(factor: int) -> str:
    return "images" if factor == 1 else f"images_{factor}"


def list_images(folder: Path) -> List[Path]:
    """The image files of ``folder`` that nerf-pytorch loads, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.name.endswith(IMAGE_SUFFIXES) and p.is_file()),
                  key=lambda p: p.name)


def _image_folders(datadir: Path) -> List[str]:
    names = [p.name for p in datadir.iterdir() if p.is_dir() and (p.name == "images" or p.name.startswith("images_"))]
    return sorted(names)


def read_rgb(path: Path) -> Image.Image:
    """An 8-bit RGB PIL image (grey replicated, alpha dropped); DataError naming the file otherwise."""
    image = open_image(path)
    if image.mode not in ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr"):
        raise DataError(f"image {path} has PIL mode {image.mode} (not 8 bits per channel); save it as an 8-bit PNG/JPEG")
    return image.convert("RGB")


def _make_downsampled_folder(datadir: Path, factor: int) -> str:
    """Writes ``images_<factor>/`` from the finest existing source; returns a note saying what it did.

    Source: ``images/`` if present (one resampling, as LLFF made its folders), else the nearest
    finer ``images_<j>`` with j dividing ``factor``. Filter: PIL's Lanczos (a = 3), the closest to
    ImageMagick's default for shrinking (Lanczos); size = source size * j / factor, rounded.
    Written to a temporary folder, then renamed, so an interrupted run leaves no half folder.
    """
    candidates = [1] + [j for j in range(factor - 1, 1, -1) if factor % j == 0]
    source_factor = next((j for j in candidates if (datadir / image_folder_name(j)).is_dir()
                          and list_images(datadir / image_folder_name(j))), None)
    target = datadir / image_folder_name(factor)
    if source_factor is None:
        raise DataError(f"cannot make {target}: it needs the full-size images/ or an images_<j> with j dividing "
                        f"{factor}, and {datadir} has {', '.join(_image_folders(datadir)) or 'no image folder'}")
    source = datadir / image_folder_name(source_factor)
    ratio = factor // source_factor
    partial = datadir / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        for path in list_images(source):
            image = read_rgb(path)
            size = (int(np.floor(image.width / ratio + 0.5)), int(np.floor(image.height / ratio + 0.5)))
            image.resize(size, Image.Resampling.LANCZOS).save(partial / f"{path.stem}.png")
        try:
            partial.rename(target)
        except OSError:  # another process made it meanwhile: keep theirs
            if not target.is_dir():
                raise
            shutil.rmtree(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return f"created {target} from {source} (PIL Lanczos, 1/{ratio} of the size), as make_missing asked"


def _load_images(folder: Path) -> Tuple[np.ndarray, List[Path]]:
    paths = list_images(folder)
    if not paths:
        return np.zeros((0, 0, 0, 3), np.float32), paths
    first = read_rgb(paths[0])
    images = np.empty((len(paths), first.height, first.width, 3), np.float32)
    for n, path in enumerate(paths):
        image = first if n == 0 else read_rgb(path)
        if image.size != first.size:
            raise DataError(f"image {path} is {image.width}x{image.height} but {paths[0].name} is "
                            f"{first.width}x{first.height}; all images of {folder} must have one size")
        images[n] = (np.asarray(image, dtype=np.float64) / 255.0).astype(np.float32)  # as nerf-pytorch: / 255. then float32
    return images, paths


def _read_poses_bounds(datadir: Path) -> np.ndarray:
    if not datadir.is_dir():
        raise DataError(f"LLFF scene folder {datadir} not found; {README_HINT}, or set datadir = synthetic "
                        f"for the embedded scene")
    path = datadir / POSES_BOUNDS_FILE
    if not path.is_file():
        raise DataError(f"{path} not found: {datadir} is not an LLFF scene folder (it needs {POSES_BOUNDS_FILE} "
                        f"and images_<k>/); {README_HINT}")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if array.ndim != 2 or array.shape[1] != 17 or array.shape[0] < 1:
        raise DataError(f"{path} has shape {array.shape}; LLFF's is (N, 17): a 3x5 [R | t | hwf] per view, then near, far")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{path} holds non-finite numbers")
    return array.astype(np.float64)


def load_llff(datadir: Union[str, Path], factor: int, recenter: bool = True, bd_factor: Optional[float] = 0.75,
              spherify: bool = False, path_zflat: bool = False, make_missing: bool = False) -> LLFFScene:
    """Loads the LLFF scene in ``datadir`` at 1/``factor`` of the full size, as nerf-pytorch does.

    ``bd_factor = None`` skips the scaling (scale 1). A missing ``images_<factor>/`` is an error
    unless ``make_missing`` (the task's ``llff_make_images``), which creates it once (see
    :func:`_make_downsampled_folder`) and says so in ``notes``. See the module docstring for each
    step and :class:`LLFFScene` for the conventions.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ConfigError(f"llff_factor must be an integer >= 1 (1 = full size images/), got {factor!r}")
    factor = int(factor)
    if bd_factor is not None and not bd_factor > 0:
        raise ConfigError(f"bd_factor must be > 0 (0.75 in nerf-pytorch), got {bd_factor}")
    datadir = Path(datadir).expanduser()
    raw = _read_poses_bounds(datadir)
    notes: List[str] = []
    folder = datadir / image_folder_name(factor)
    if not folder.is_dir():
        if not make_missing:
            existing = ", ".join(_image_folders(datadir)) or "none"
            raise DataError(f"{folder} not found (image folders in {datadir}: {existing}); choose llff_factor "
                            f"among them, or set llff_make_images = True (make_missing=True) to create "
                            f"{folder.name}/ once by resizing the full-size images")
        notes.append(_make_downsampled_folder(datadir, factor))
    images, paths = _load_images(folder)
    if len(paths) != raw.shape[0]:
        raise DataError(f"{folder} holds {len(paths)} images ({'/'.join(IMAGE_SUFFIXES)}) but "
                        f"{datadir / POSES_BOUNDS_FILE} has {raw.shape[0]} poses; they must match one to one")
    height, width = images.shape[1:3]
    raw_matrices = raw[:, :15].reshape(-1, 3, 5)
    source_hwf = tuple(float(v) for v in raw_matrices[0, :, 4])
    if not np.allclose(raw_matrices[:, 2, 4], raw_matrices[0, 2, 4], rtol=1e-6):
        raise DataError(f"{datadir / POSES_BOUNDS_FILE} gives the views different focal lengths "
                        f"({raw_matrices[:, 2, 4].min():g} to {raw_matrices[:, 2, 4].max():g}); one camera is expected")
    expected = (source_hwf[0] / factor, source_hwf[1] / factor)
    if abs(height - expected[0]) > 1 or abs(width - expected[1]) > 1:
        raise DataError(f"images in {folder} are {width}x{height}, but {POSES_BOUNDS_FILE} says the full size is "
                        f"{source_hwf[1]:g}x{source_hwf[0]:g}, i.e. {expected[1]:g}x{expected[0]:g} at factor "
                        f"{factor}: the focal length would not fit these images; check the folder's contents")

    matrices = raw_matrices.copy()
    matrices[:, 0, 4], matrices[:, 1, 4] = height, width
    matrices[:, 2, 4] /= factor
    matrices = llff_to_opengl(matrices).astype(np.float32)  # (N, 3, 5): right, up, back, centre, hwf
    focal = float(matrices[0, 2, 4])  # float32, as nerf-pytorch carries it in the pose array
    poses = np.ascontiguousarray(matrices[:, :, :4])
    bounds = raw[:, 15:17].astype(np.float32)

    scale = 1.0 if bd_factor is None else 1.0 / (float(bounds.min()) * bd_factor)
    poses[:, :, 3] *= np.float32(scale)
    bounds *= np.float32(scale)
    if recenter:
        poses = recenter_poses(poses)
    if spherify:
        poses, render_poses, bounds = spherify_poses(poses, bounds)
    else:
        render_poses = spiral_render_poses(poses, bounds, path_zflat)
    distances = np.sum(np.square(average_pose(poses)[:, 3] - poses[:, :, 3]), -1)
    return LLFFScene(images=images, poses=poses.astype(np.float32), bounds=bounds.astype(np.float32),
                     height=int(height), width=int(width), focal=focal, render_poses=render_poses,
                     image_paths=paths, factor=factor, scale=scale, center_view=int(np.argmin(distances)),
                     source_hwf=source_hwf, datadir=datadir, notes=notes)
