"""How well a surface is recovered: Chamfer distance, normal consistency, SDF error, occupancy IoU.

All distances are in the units of the coordinates given (the SDF task passes its normalised
coordinates, where the shape spans [-1, 1] along its longest centred extent).

* :func:`chamfer_l1`: Chamfer-L1 = (mean over a of min_b |a - b| + mean over b of min_a |a - b|) / 2,
  Euclidean distances between two point sets (the mean of the two mean nearest-neighbour distances);
* :func:`normal_consistency`: the mean over the reference points of |cos| between the reference
  normal and the normal of the nearest point of the other set (|.|: a mesh's orientation is not scored);
* :func:`sdf_error`: mean |Phi - SDF| over given points;
* :func:`occupancy_iou`: |{Phi < 0} and {SDF < 0}| / |{Phi < 0} or {SDF < 0}| over given points.

Nearest neighbours come from :class:`scipy.spatial.cKDTree` (exact).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def nearest(reference: np.ndarray, queries: np.ndarray):
    """(distances (Q,), indices (Q,)) of each query's nearest reference point; both (., 3)."""
    return cKDTree(reference).query(queries, k=1)


def chamfer_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Chamfer-L1 between point sets a (N, 3) and b (M, 3) (module docstring)."""
    if len(a) == 0 or len(b) == 0:
        raise ValueError("Chamfer distance needs two non-empty point sets")
    return 0.5 * (float(nearest(b, a)[0].mean()) + float(nearest(a, b)[0].mean()))


def normal_consistency(points: np.ndarray, normals: np.ndarray, other_points: np.ndarray,
                       other_normals: np.ndarray) -> float:
    """Mean |cos| between ``normals`` (N, 3) at ``points`` and ``other_normals`` at the nearest of
    ``other_points`` (M, 3); normals are normalised here, in [0, 1], 1 = every normal agrees."""
    _, index = nearest(other_points, points)
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    m = other_normals[index] / np.linalg.norm(other_normals[index], axis=1, keepdims=True)
    return float(np.abs((n * m).sum(axis=1)).mean())


def sdf_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean |pred - true| over the points where both were evaluated (same shape)."""
    return float(np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64)).mean())


def occupancy_iou(pred: np.ndarray, true: np.ndarray) -> float:
    """IoU of the insides {pred < 0} and {true < 0} (same shape); 1.0 when both are empty."""
    return inside_iou(np.asarray(pred) < 0, np.asarray(true) < 0)


def inside_iou(pred_inside: np.ndarray, true_inside: np.ndarray) -> float:
    """IoU of two boolean insides (same shape), e.g. occupancies computed chunk by chunk; 1.0 when both are empty."""
    union = np.logical_or(pred_inside, true_inside).sum()
    return float(np.logical_and(pred_inside, true_inside).sum() / union) if union else 1.0
