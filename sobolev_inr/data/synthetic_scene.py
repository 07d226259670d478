"""An embedded forward-facing scene, rendered here and written in LLFF's layout: no download needed.

Four textured rectangles, rendered exactly (ray-plane intersection, bilinear texture lookup, 2x2
samples per pixel averaged), seen by 20 cameras spread over a small disc around the origin, all
looking at a point 4.5 units down -z:

* background, depth 6, 9.6 x 7.2: scikit-image's astronaut (bundled with the package), top 3/4;
* checker, depth 3, 1 x 1, fronto-parallel: a 6 x 6 checkerboard whose squares carry colour ramps;
* rings, depth about 4.2, 1.8 x 1.4, turned 25 degrees about the vertical: smooth colour rings;
* disc, depth about 2.2, 0.78 x 0.52, tilted 15 degrees: a shaded disc on a colour ramp.

Hard edges (plane borders, checker squares, the disc, occlusions that shift between views) and
smooth ramps, so value and derivative supervision differ. World frame as OpenGL: x right, y up,
z towards the viewer; units are arbitrary (the loader rescales).

Files, exactly what :func:`~sobolev_inr.data.llff.load_llff` reads::

    poses_bounds.npy          LLFF's raw convention: (down, right, back) columns, full-size hwf,
                              near/far = the nearest and farthest surface depth each view sees
    images/image000.png ...   full size (160 x 120 by default), 8-bit RGB
    images_2/, images_4/      the full-size render (before 8-bit rounding) averaged over 2x2 / 4x4
                              pixel blocks: the same as rendering at that size with more samples
    synthetic_scene.json      the manifest, written last: parameters and each file's SHA-256

Pixels follow COLMAP's convention, which LLFF's real images obey: pixel (column i, row j) covers
[i, i + 1) x [j, j + 1) on the image plane, principal point (W/2, H/2), so its centre is seen in
the camera direction ((i + 0.5 - W/2) / f, -(j + 0.5 - H/2) / f, -1). Block averages then keep the
same convention at every factor.

Where it goes: a config's ``datadir = synthetic`` means this scene; the task makes it (once) in
:func:`synthetic_scene_path` of its run directory's ``data/`` folder, i.e.
``<basedir>/<expname>/data/synthetic_planes/``, and loads it with ``load_llff`` like any LLFF scene.
Deterministic (no random numbers): the same parameters give the same bytes. A complete folder
(manifest present, every checksum right) is reused untouched; anything else is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Dict, Iterable, List, Tuple

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from .llff import POSES_BOUNDS_FILE, image_folder_name, list_images, look_frame, opengl_to_llff

SYNTHETIC_DATADIR = "synthetic"
"""The ``datadir`` value that selects this scene."""
SYNTHETIC_SCENE_NAME = "synthetic_planes"
MANIFEST_FILE = "synthetic_scene.json"
GENERATOR_VERSION = 1
"""Bumped when the rendering changes; geometry and textures are also fingerprinted (:func:`scene_fingerprint`)."""
SYNTHETIC_SCENE_DEFAULTS = MappingProxyType({
    "width": 160,          # full-size images, pixels
    "height": 120,
    "num_views": 20,
    "factors": (2, 4),     # downsampled copies images_<k>/
    "supersample": 2,      # samples per pixel along each axis
    "fov_degrees": 50.0,   # horizontal field of view
})
FOCUS_POINT = np.array([0.0, 0.0, -4.5])
CAMERA_SPREAD = (0.45, 0.3, 0.08)
"""Half-extent of the camera centres along x, y (an ellipse) and z (a ripple)."""


@dataclass(frozen=True)
class TexturedPlane:
    """A rectangle ``centre +- half_width * right +- half_height * up`` with an RGB texture.

    ``texture`` (Ht, Wt, 3) float64 in [0, 1], row 0 along the +up edge, column 0 along -right.
    Texture coordinates (s, t) in [0, 1]: s along right, t against up; texel centres at
    ((col + 0.5) / Wt, (row + 0.5) / Ht); lookups are bilinear, clamped at the border.
    """

    name: str
    centre: np.ndarray
    right: np.ndarray
    up: np.ndarray
    half_width: float
    half_height: float
    texture: np.ndarray

    def point(self, s, t) -> np.ndarray:
        """World points (..., 3) at texture coordinates ``s, t``."""
        s, t = np.asarray(s, float)[..., None], np.asarray(t, float)[..., None]
        return self.centre + (2 * s - 1) * self.half_width * self.right + (1 - 2 * t) * self.half_height * self.up

    def colour(self, s, t) -> np.ndarray:
        """Bilinear texture colours (..., 3) at ``s, t``."""
        rows, cols = self.texture.shape[:2]
        x = np.clip(np.asarray(s, float) * cols - 0.5, 0, cols - 1)
        y = np.clip(np.asarray(t, float) * rows - 0.5, 0, rows - 1)
        x0, y0 = np.minimum(x.astype(int), cols - 2), np.minimum(y.astype(int), rows - 2)
        fx, fy = (x - x0)[..., None], (y - y0)[..., None]
        tex = self.texture
        top = tex[y0, x0] * (1 - fx) + tex[y0, x0 + 1] * fx
        bottom = tex[y0 + 1, x0] * (1 - fx) + tex[y0 + 1, x0 + 1] * fx
        return top * (1 - fy) + bottom * fy

    def intersect(self, origin: np.ndarray, directions: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ray parameters (R,) (inf where missed), and texture coordinates s, t (R,), of rays ``origin + l d``."""
        normal = np.cross(self.right, self.up)
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = ((self.centre - origin) @ normal) / (directions @ normal)
        offset = origin + distance[:, None] * directions - self.centre
        a, b = offset @ self.right, offset @ self.up
        hit = (distance > 1e-9) & (np.abs(a) <= self.half_width) & (np.abs(b) <= self.half_height)
        return np.where(hit, distance, np.inf), (a / self.half_width + 1) / 2, (1 - b / self.half_height) / 2


def _texel_grid(rows: int, cols: int) -> Tuple[np.ndarray, np.ndarray]:
    """Texel-centre coordinates (s, t), each (rows, cols), in [0, 1]."""
    t, s = np.meshgrid((np.arange(rows) + 0.5) / rows, (np.arange(cols) + 0.5) / cols, indexing="ij")
    return s, t


def _ramp(start, end, amount: np.ndarray) -> np.ndarray:
    return np.asarray(start, float) + (np.asarray(end, float) - np.asarray(start, float)) * amount[..., None]


def _astronaut_texture() -> np.ndarray:
    import skimage.data

    photo = skimage.data.astronaut()[:384].astype(np.float64) / 255.0  # (384, 512, 3), the 4:3 top
    return photo.reshape(192, 2, 256, 2, 3).mean(axis=(1, 3))  # 2x2 box filter: about one texel per pixel


def _checker_texture() -> np.ndarray:
    s, t = _texel_grid(96, 96)
    dark = ((np.floor(s * 6) + np.floor(t * 6)) % 2 == 0)[..., None]
    return np.where(dark, _ramp((0.10, 0.20, 0.60), (0.15, 0.65, 0.30), s),
                    _ramp((0.95, 0.85, 0.45), (0.90, 0.45, 0.40), t))


def _rings_texture() -> np.ndarray:
    s, t = _texel_grid(96, 128)
    radius = np.hypot((s - 0.4) * 1.8, (t - 0.55) * 1.4)  # world-proportional distance from a centre
    phases = np.array([0.0, 2.0, 4.0])
    return 0.5 + 0.35 * np.sin(2 * np.pi * 2.5 * radius[..., None] + phases)


def _disc_texture() -> np.ndarray:
    s, t = _texel_grid(64, 96)
    background = _ramp((0.85, 0.20, 0.15), (0.95, 0.85, 0.20), s)
    dx, dy = (s - 0.5) * 0.9, (t - 0.5) * 0.6
    inside = (np.hypot(dx, dy) < 0.24)[..., None]
    shade = np.clip(1.0 - np.hypot(dx + 0.08, dy + 0.08) / 0.4, 0, 1)  # lit from the upper left
    return np.where(inside, _ramp((0.05, 0.10, 0.35), (0.75, 0.85, 1.0), shade), background)


def _rotation_y(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([np.cos(a), 0.0, -np.sin(a)])


def synthetic_planes() -> Tuple[TexturedPlane, ...]:
    """The scene's rectangles, farthest first (world frame as in the module docstring)."""
    x, y = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    tilt = np.radians(15.0)
    return (
        TexturedPlane("background", np.array([0.0, 0.0, -6.0]), x, y, 4.8, 3.6, _astronaut_texture()),
        TexturedPlane("rings", np.array([1.0, -0.3, -4.2]), _rotation_y(25.0), y, 0.9, 0.7, _rings_texture()),
        TexturedPlane("checker", np.array([-0.75, 0.35, -3.0]), x, y, 0.5, 0.5, _checker_texture()),
        TexturedPlane("disc", np.array([0.3, -0.3, -2.2]), x, np.array([0.0, np.cos(tilt), -np.sin(tilt)]),
                      0.39, 0.26, _disc_texture()),
    )


def synthetic_camera_poses(num_views: int) -> np.ndarray:
    """Camera-to-world poses (N, 3, 4), columns (right, up, back, centre), OpenGL convention.

    Centres on a golden-angle spiral filling an ellipse of half-axes 0.45 x 0.3 at z ~ 0 (a
    +-0.08 ripple in z), each camera looking at (0, 0, -4.5) with world +y as up.
    """
    golden_angle = np.pi * (3.0 - np.sqrt(5.0))
    poses = []
    for k in range(num_views):
        radius, angle = np.sqrt((k + 0.5) / num_views), k * golden_angle
        centre = np.array([CAMERA_SPREAD[0] * radius * np.cos(angle), CAMERA_SPREAD[1] * radius * np.sin(angle),
                           CAMERA_SPREAD[2] * np.cos(3 * angle)])
        poses.append(look_frame(centre - FOCUS_POINT, np.array([0.0, 1.0, 0.0]), centre))
    return np.stack(poses)


def synthetic_focal(width: int, fov_degrees: float) -> float:
    """Focal length in pixels for a horizontal field of view of ``fov_degrees`` over ``width`` pixels."""
    return (width / 2) / np.tan(np.radians(fov_degrees) / 2)


def render_view(pose: np.ndarray, planes: Iterable[TexturedPlane], height: int, width: int, focal: float,
                supersample: int) -> Tuple[np.ndarray, np.ndarray]:
    """One view: colours (H, W, 3) float64 in [0, 1] (mean of supersample^2 samples) and the depths
    (H * s, W * s) of every sample along the viewing axis (inf where a ray hits nothing)."""
    offsets = (np.arange(supersample) + 0.5) / supersample
    xs = (np.arange(width)[:, None] + offsets).reshape(-1) - width / 2
    ys = (np.arange(height)[:, None] + offsets).reshape(-1) - height / 2
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    camera_dirs = np.stack([grid_x / focal, -grid_y / focal, -np.ones_like(grid_x)], -1).reshape(-1, 3)
    directions = camera_dirs @ pose[:, :3].T  # viewing-axis component 1, so ray parameter = depth
    planes = list(planes)
    depth = np.full(len(directions), np.inf)
    nearest = np.full(len(directions), -1)
    s_hit, t_hit = np.zeros(len(directions)), np.zeros(len(directions))
    for index, plane in enumerate(planes):  # z-buffer: the nearest plane along each ray
        distance, s, t = plane.intersect(pose[:, 3], directions)
        nearer = distance < depth
        depth[nearer], nearest[nearer], s_hit[nearer], t_hit[nearer] = distance[nearer], index, s[nearer], t[nearer]
    colour = np.zeros((len(directions), 3))
    for index, plane in enumerate(planes):
        seen = nearest == index
        colour[seen] = plane.colour(s_hit[seen], t_hit[seen])
    colour = colour.reshape(height, supersample, width, supersample, 3).mean(axis=(1, 3))
    return colour, depth.reshape(height * supersample, width * supersample)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    h, w, c = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _parameters(overrides: Dict) -> Dict:
    unknown = sorted(set(overrides) - set(SYNTHETIC_SCENE_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown synthetic scene parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(SYNTHETIC_SCENE_DEFAULTS)}")
    params = {**SYNTHETIC_SCENE_DEFAULTS, **overrides}
    params["factors"] = tuple(int(k) for k in params["factors"])
    for key in ("width", "height", "num_views", "supersample"):
        if int(params[key]) != params[key] or params[key] < 1:
            raise ConfigError(f"synthetic scene {key} must be a positive integer, got {params[key]!r}")
        params[key] = int(params[key])
    if params["num_views"] < 2:
        raise ConfigError(f"synthetic scene num_views must be >= 2, got {params['num_views']}")
    bad = [k for k in params["factors"] if k < 2 or params["width"] % k or params["height"] % k]
    if bad:
        raise ConfigError(f"synthetic scene factors {bad} must be >= 2 and divide width {params['width']} and "
                          f"height {params['height']}")
    if not 10.0 <= params["fov_degrees"] <= 60.0:
        raise ConfigError(f"synthetic scene fov_degrees must lie in [10, 60] (the background covers no more), "
                          f"got {params['fov_degrees']}")
    params["fov_degrees"] = float(params["fov_degrees"])
    return params


def _write_scene(folder: Path, params: Dict) -> None:
    """Renders every view and writes the LLFF files into ``folder``, the manifest last."""
    width, height, factors = params["width"], params["height"], params["factors"]
    focal = synthetic_focal(width, params["fov_degrees"])
    planes = synthetic_planes()
    poses = synthetic_camera_poses(params["num_views"])
    rows = []
    written: List[Path] = []
    for name in [image_folder_name(1)] + [image_folder_name(k) for k in factors]:
        (folder / name).mkdir()
    for view, pose in enumerate(poses):
        colour, depth = render_view(pose, planes, height, width, focal, params["supersample"])
        if not np.all(np.isfinite(depth)):
            raise ConfigError(f"synthetic scene: rays of view {view} miss every plane; reduce fov_degrees")
        for k in (1,) + factors:
            path = folder / image_folder_name(k) / f"image{view:03d}.png"
            Image.fromarray(_to_uint8(colour if k == 1 else _block_mean(colour, k))).save(path)
            written.append(path)
        llff_pose = opengl_to_llff(pose)  # (3, 4): down, right, back, centre
        hwf = np.array([[height], [width], [focal]], dtype=np.float64)
        rows.append(np.concatenate([np.concatenate([llff_pose, hwf], 1).reshape(-1), [depth.min(), depth.max()]]))
    with open(folder / POSES_BOUNDS_FILE, "wb") as f:
        np.save(f, np.stack(rows).astype(np.float64))
    written.append(folder / POSES_BOUNDS_FILE)
    manifest = {"generator": "sobolev_inr.data.synthetic_scene", "version": GENERATOR_VERSION,
                "parameters": _jsonable(params), "fingerprint": scene_fingerprint(planes, poses),
                "files": {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(written)}}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _jsonable(params: Dict) -> Dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def scene_fingerprint(planes: Iterable[TexturedPlane], poses: np.ndarray) -> str:
    """SHA-256 of the planes (placement, size, texture texels) and camera poses: a folder made from
    other geometry or textures (another scikit-image astronaut, say) is not complete."""
    digest = hashlib.sha256()
    for plane in planes:
        for array in (plane.centre, plane.right, plane.up, [plane.half_width, plane.half_height], plane.texture):
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(poses, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_complete(path, **overrides) -> bool:
    """Whether ``path`` holds the whole scene for these parameters and this generator: manifest
    (version, parameters, fingerprint), every file with its checksum, and no stray image beside them
    (which would break the one-to-one match of images and poses)."""
    folder = Path(path)
    try:
        params = _parameters(overrides)
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        if (manifest.get("version") != GENERATOR_VERSION or manifest.get("parameters") != _jsonable(params)
                or manifest.get("fingerprint") != scene_fingerprint(synthetic_planes(),
                                                                     synthetic_camera_poses(params["num_views"]))):
            return False
        files = manifest["files"]
        for name, digest in files.items():
            if _sha256(folder / name) != digest:
                return False
        image_folders = {name.split("/")[0] for name in files if "/" in name}
        listed = {(folder / name) for name in files}
        return all(set(list_images(folder / d)) <= listed for d in image_folders)
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


def _is_generated_name(name: str) -> bool:
    return (name in (MANIFEST_FILE, POSES_BOUNDS_FILE, "images") or name.startswith(".images_")
            or (name.startswith("images_") and name[len("images_"):].isdigit()))


def make_synthetic_scene(path, **overrides) -> Path:
    """Writes the scene into ``path`` (LLFF layout) unless it is already complete; returns ``path``.

    ``overrides``: any of :data:`SYNTHETIC_SCENE_DEFAULTS`. Built in a temporary sibling folder
    and renamed into place, so an interrupted build leaves nothing that looks complete; an existing
    incomplete (or differently parametrised) folder is replaced, provided it holds only names this
    generator writes.
    """
    params = _parameters(overrides)
    folder = Path(path).expanduser()
    if is_complete(folder, **overrides):
        return folder
    if folder.exists():
        foreign = sorted(p.name for p in folder.iterdir() if not _is_generated_name(p.name)) if folder.is_dir() else [""]
        if foreign:
            raise DataError(f"{folder} exists and holds {', '.join(foreign[:3]) or 'a file'} that the synthetic scene "
                            f"does not write; move it away or choose another folder for the synthetic scene")
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _write_scene(partial, params)
        if folder.exists():
            shutil.rmtree(folder)
        try:
            partial.rename(folder)
        except OSError:  # another process finished first
            if not is_complete(folder, **overrides):
                raise
            shutil.rmtree(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return folder


def synthetic_scene_path(base_dir) -> Path:
    """Where the scene lives under ``base_dir`` (the run directory's ``data/``): ``base_dir/synthetic_planes``."""
    return Path(base_dir) / SYNTHETIC_SCENE_NAME
