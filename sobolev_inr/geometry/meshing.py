"""From a network's signed distance to a triangle mesh: Phi on a grid (in chunks), marching cubes.

The grid covers the cube [-bound, bound]^3 (the normalised coordinates the SDF task trains in) with
``resolution`` points per axis, both ends included (voxel = 2 bound / (resolution - 1)), as SIREN's
``sdf_meshing.create_mesh``. Axis order: ``values[i, j, k]`` is Phi at (x_i, y_j, z_k).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..tasks.regression import predict


def grid_axis(resolution: int, bound: float = 1.0) -> np.ndarray:
    """The ``resolution`` coordinates of one axis, from -bound to bound."""
    return np.linspace(-bound, bound, resolution)


def grid_points(resolution: int, bound: float = 1.0) -> np.ndarray:
    """All grid points (R^3, 3), (x, y, z), x slowest: row ``(i R + j) R + k`` is (x_i, y_j, z_k)."""
    axis = grid_axis(resolution, bound)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def evaluate_grid(model: nn.Module, resolution: int, chunk_size: int = 65536,
                  device: torch.device = torch.device("cpu"), bound: float = 1.0) -> np.ndarray:
    """Phi on the grid, (R, R, R) float32, evaluated ``chunk_size`` points at a time without a graph."""
    axis = torch.linspace(-bound, bound, resolution, device=device)
    rows = []
    for x in axis:  # one x-slab at a time keeps the coordinates' memory at R^2
        yz = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
        coords = torch.cat([x.expand(yz.shape[0], 1), yz], dim=1)
        rows.append(predict(model, coords, chunk_size)[:, 0].reshape(resolution, resolution).cpu())
    return torch.stack(rows).numpy().astype(np.float32)


def marching_cubes(values: np.ndarray, bound: float = 1.0, level: float = 0.0, stride: int = 1
                   ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The ``level`` set of a grid of signed distances (module docstring) as a mesh: vertices (V, 3) in the
    grid's coordinates, triangles (F, 3) int whose right-hand normals point outward (towards Phi > level).
    None when Phi does not cross ``level``. ``stride`` > 1 meshes every stride-th grid point per axis
    (a coarser mesh of the same grid, e.g. for a figure).

    The grid is padded with one layer of outside values first, so that a surface cut by the cube's
    faces is closed there (its cap lies within a voxel outside the cube).
    """
    from skimage.measure import marching_cubes as skimage_marching_cubes

    resolution = values.shape[0]
    if values.shape != (resolution,) * 3 or resolution < 2:
        raise ValueError(f"values must be a cube of at least 2^3 points, got {values.shape}")
    voxel = 2.0 * bound / (resolution - 1) * stride
    values = values[::stride, ::stride, ::stride]
    finite = values[np.isfinite(values)]
    if finite.size == 0 or not (finite.min() < level < finite.max()):
        return None
    outside = max(float(finite.max()), level + voxel)
    padded = np.pad(np.nan_to_num(values, nan=outside), 1, constant_values=outside)
    verts, faces, _, _ = skimage_marching_cubes(padded, level=level, spacing=(voxel,) * 3)
    return verts - (bound + voxel), faces.astype(np.int64)
