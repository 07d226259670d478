"""From a network's signed distance to a triangle mesh: Phi on a grid (in chunks), marching cubes.

The grid covers the cube [-bound, bound]^3 (the normalised coordinates the SDF task trains in) with
``resolution`` points per axis, both ends included (voxel = 2 bound / (resolution - 1)), as SIREN's
``sdf_meshing.create_mesh``. Axis order: ``values[i, j, k]`` is Phi at (x_i, y_j, z_k).

A ``stride`` k keeps every k-th point of that grid per axis (indices 0, k, 2k, ...: ``len(range(0, R, k))``
points per axis, voxel k times as big; its last point is bound only where k divides R - 1): a coarser grid
whose points are points of the full one, so that what it scores is a subset of what the full grid scores.
Grids are evaluated ``chunk_size`` points at a time, so that memory is bounded by the chunk and the output.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..training.progress import QUIET, Progress


def grid_axis(resolution: int, bound: float = 1.0, stride: int = 1) -> np.ndarray:
    """The coordinates of one axis: every ``stride``-th of ``resolution`` points from -bound to bound."""
    return np.linspace(-bound, bound, resolution)[::stride]


def grid_points(resolution: int, bound: float = 1.0, stride: int = 1) -> np.ndarray:
    """All grid points (n^3, 3) float64, (x, y, z), x slowest: row ``(i n + j) n + k`` is (x_i, y_j, z_k)."""
    axis = grid_axis(resolution, bound, stride)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def grid_chunks(axis: np.ndarray, chunk_size: int) -> Iterator[Tuple[slice, np.ndarray]]:
    """The points of the cube grid on ``axis`` (n,) in row order (:func:`grid_points`), ``chunk_size`` rows at
    a time: (rows, points (rows, 3) float64) without building the whole grid."""
    n = len(axis)
    chunk_size = max(int(chunk_size), 1)
    for start in range(0, n ** 3, chunk_size):
        index = np.arange(start, min(start + chunk_size, n ** 3))
        yield slice(start, start + len(index)), np.stack([axis[index // (n * n)], axis[(index // n) % n],
                                                          axis[index % n]], axis=1)


def evaluate_on_grid(function: Callable[[np.ndarray], np.ndarray], resolution: int, chunk_size: int = 65536,
                     bound: float = 1.0, stride: int = 1, progress: Progress = QUIET, desc: str = "grid",
                     dtype: type = np.float32) -> np.ndarray:
    """``function`` (points (M, 3) float64 -> (M,) values) on the grid, (n, n, n) of ``dtype``, ``chunk_size``
    points per call, with a ``progress`` bar over the chunks."""
    axis = grid_axis(resolution, bound, stride)
    n = len(axis)
    out = np.empty(n ** 3, dtype=dtype)
    chunks = range(0, n ** 3, max(int(chunk_size), 1))
    for rows, points in progress.bar(grid_chunks(axis, chunk_size), total=len(chunks), desc=desc, unit="chunk"):
        out[rows] = function(points)
    return out.reshape(n, n, n)


def evaluate_grid(model: nn.Module, resolution: int, chunk_size: int = 65536,
                  device: torch.device = torch.device("cpu"), bound: float = 1.0, stride: int = 1,
                  progress: Progress = QUIET) -> np.ndarray:
    """Phi on the grid (module docstring), (n, n, n) float32, evaluated ``chunk_size`` points at a time without
    a graph (peak memory: one chunk's activations, plus the float32 output)."""

    def phi(points: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(points.astype(np.float32)).to(device)
            return model(x)[:, 0].cpu().numpy()

    return evaluate_on_grid(phi, resolution, chunk_size, bound, stride, progress, desc="Phi on the grid")


def marching_cubes(values: np.ndarray, bound: float = 1.0, level: float = 0.0, stride: int = 1,
                   voxel: Optional[float] = None) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The ``level`` set of a grid of signed distances (module docstring) as a mesh: vertices (V, 3) in the
    grid's coordinates, triangles (F, 3) int whose right-hand normals point outward (towards Phi > level).
    None when Phi does not cross ``level``. ``stride`` > 1 meshes every stride-th grid point per axis
    (a coarser mesh of the same grid, e.g. for a figure). ``voxel``: the spacing of ``values``'s points
    (default 2 bound / (n - 1): a grid from -bound to bound; a strided grid's is its full grid's times the
    stride); the first point is always at -bound.

    The grid is padded with one layer of outside values first, so that a surface cut by the cube's
    faces is closed there (its cap lies within a voxel outside the cube).
    """
    from skimage.measure import marching_cubes as skimage_marching_cubes

    resolution = values.shape[0]
    if values.shape != (resolution,) * 3 or resolution < 2:
        raise ValueError(f"values must be a cube of at least 2^3 points, got {values.shape}")
    voxel = (2.0 * bound / (resolution - 1) if voxel is None else voxel) * stride
    values = values[::stride, ::stride, ::stride]
    finite = values[np.isfinite(values)]
    if finite.size == 0 or not (finite.min() < level < finite.max()):
        return None
    outside = max(float(finite.max()), level + voxel)
    padded = np.pad(np.nan_to_num(values, nan=outside), 1, constant_values=outside)
    verts, faces, _, _ = skimage_marching_cubes(padded, level=level, spacing=(voxel,) * 3)
    return verts - (bound + voxel), faces.astype(np.int64)
