"""Shapes with a known signed distance function, and oriented point clouds sampled on their surfaces.

The embedded defaults of the SDF task (``shape:<name>``, no download). Each shape is a disjoint union
of primitives (spheres, a torus, axis-aligned boxes): for disjoint primitives the minimum of their
SDFs is the union's exact SDF, inside too (a point inside one primitive is nearest to that
primitive's own surface), so the SDF error and IoU the task reports are measured against the true
distance. Convention: negative inside, positive outside, |grad| = 1 almost everywhere.

Points are drawn uniformly by area, each primitive's surface exactly (no meshing): a primitive is
chosen with probability proportional to its area, then a point uniform on it. They lie on the
zero set to rounding; the normal of a point is the SDF's gradient there (the outward unit normal).
All arrays are float64 numpy, coordinates (x, y, z) in the shape's own units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from ..errors import ConfigError

SHAPE_PREFIX = "shape:"


@dataclass(frozen=True)
class Sphere:
    centre: Tuple[float, float, float]
    radius: float

    def sdf(self, p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """SDF (N,) and its gradient (N, 3) at ``p (N, 3)``."""
        d = p - np.asarray(self.centre)
        r = np.linalg.norm(d, axis=1)
        return r - self.radius, d / np.maximum(r, 1e-300)[:, None]

    @property
    def area(self) -> float:
        return 4 * math.pi * self.radius ** 2

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.normal(size=(n, 3))
        return np.asarray(self.centre) + self.radius * u / np.linalg.norm(u, axis=1, keepdims=True)


@dataclass(frozen=True)
class Torus:
    """A torus around the z axis through ``centre``: tube radius ``minor`` about a circle of radius ``major``."""

    centre: Tuple[float, float, float]
    major: float
    minor: float

    def sdf(self, p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        d = p - np.asarray(self.centre)
        rho = np.linalg.norm(d[:, :2], axis=1)
        q = np.stack([rho - self.major, d[:, 2]], axis=1)
        length = np.linalg.norm(q, axis=1)
        radial = d[:, :2] / np.maximum(rho, 1e-300)[:, None]
        grad = np.concatenate([radial * q[:, :1], q[:, 1:]], axis=1) / np.maximum(length, 1e-300)[:, None]
        return length - self.minor, grad

    @property
    def area(self) -> float:
        return 4 * math.pi ** 2 * self.major * self.minor

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform by area: the tube angle v has density proportional to (major + minor cos v) (rejection)."""
        vs = np.empty(0)
        while vs.size < n:
            v = rng.uniform(0, 2 * math.pi, size=2 * n)
            keep = rng.uniform(0, self.major + self.minor, size=2 * n) < self.major + self.minor * np.cos(v)
            vs = np.concatenate([vs, v[keep]])
        v, u = vs[:n], rng.uniform(0, 2 * math.pi, size=n)
        ring = self.major + self.minor * np.cos(v)
        return np.asarray(self.centre) + np.stack([ring * np.cos(u), ring * np.sin(u), self.minor * np.sin(v)], axis=1)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: ``centre`` and ``half`` side lengths."""

    centre: Tuple[float, float, float]
    half: Tuple[float, float, float]

    def sdf(self, p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        d = p - np.asarray(self.centre)
        q = np.abs(d) - np.asarray(self.half)
        outside = np.maximum(q, 0.0)
        out_len = np.linalg.norm(outside, axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        sign = np.where(d < 0, -1.0, 1.0)
        grad_out = sign * outside / np.maximum(out_len, 1e-300)[:, None]
        grad_in = sign * (np.arange(3) == q.argmax(axis=1)[:, None])  # the nearest face's normal
        grad = np.where((out_len > 0)[:, None], grad_out, grad_in)
        return out_len + inside, grad

    @property
    def area(self) -> float:
        a, b, c = self.half
        return 8 * (a * b + b * c + a * c)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """A face chosen by area (axis k, side +-1), then a point uniform on it."""
        h = np.asarray(self.half)
        face_areas = np.array([h[1] * h[2], h[0] * h[2], h[0] * h[1]])
        axis = rng.choice(3, size=n, p=face_areas / face_areas.sum())
        p = rng.uniform(-1, 1, size=(n, 3)) * h
        p[np.arange(n), axis] = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0) * h[axis]
        return np.asarray(self.centre) + p


@dataclass(frozen=True)
class AnalyticShape:
    """A disjoint union of primitives: SDF = min of theirs (exact, see the module docstring)."""

    name: str
    parts: Tuple[object, ...]

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Signed distance (N,) at ``p (N, 3)``."""
        return self.sdf_and_gradient(p)[0]

    def sdf_and_gradient(self, p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Signed distance (N,) and its gradient (N, 3) (that of the nearest primitive)."""
        p = np.asarray(p, dtype=np.float64).reshape(-1, 3)
        values, grads = zip(*(part.sdf(p) for part in self.parts))
        nearest = np.argmin(np.stack(values), axis=0)
        rows = np.arange(p.shape[0])
        return np.stack(values)[nearest, rows], np.stack(grads)[nearest, rows]

    def sample(self, n: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """``n`` points uniform by area on the surface and their outward unit normals, both (n, 3)."""
        rng = np.random.default_rng(seed)
        areas = np.array([part.area for part in self.parts])
        counts = rng.multinomial(n, areas / areas.sum())
        points = np.concatenate([part.sample(int(k), rng) for part, k in zip(self.parts, counts)])
        points = points[rng.permutation(n)]
        return points, self.sdf_and_gradient(points)[1]


SHAPES: Dict[str, Callable[[], AnalyticShape]] = {
    "sphere": lambda: AnalyticShape("sphere", (Sphere((0.0, 0.0, 0.0), 0.8),)),
    "torus": lambda: AnalyticShape("torus", (Torus((0.0, 0.0, 0.0), 0.6, 0.25),)),
    # Two spheres and two boxes, apart from each other (gaps of 0.1 to 0.2).
    "spheres_boxes": lambda: AnalyticShape("spheres_boxes", (
        Sphere((-0.4, -0.3, 0.0), 0.35),
        Sphere((0.35, 0.35, 0.15), 0.25),
        Box((0.25, -0.35, -0.1), (0.2, 0.25, 0.3)),
        Box((-0.35, 0.4, -0.05), (0.3, 0.15, 0.2)),
    )),
}
"""The embedded shapes by name (``shape:<name>``)."""


def get_shape(name: str) -> AnalyticShape:
    """The shape called ``name`` (without the ``shape:`` prefix); ConfigError listing the names otherwise."""
    if name not in SHAPES:
        raise ConfigError(f"unknown embedded shape {name!r}; choose from "
                          f"{', '.join(SHAPE_PREFIX + k for k in SHAPES)}")
    return SHAPES[name]()


def shape_names() -> Sequence[str]:
    return tuple(SHAPES)
