"""Oriented point clouds for SDF fitting: readers (.xyz, .ply, .obj), mesh sampling, normalisation, a PLY writer.

Sources (:func:`load_point_cloud`):

* ``shape:<name>``: an embedded shape with a known SDF (:mod:`sobolev_inr.geometry.shapes`), sampled
  to ``num_points`` points with their normals;
* ``.xyz``: whitespace text, ``x y z nx ny nz`` per line (SIREN's point clouds, read there with
  ``np.genfromtxt``), or ``x y z`` when no normals are needed; ``#`` starts a comment;
* ``.ply`` (ascii or binary_little_endian): a mesh with faces is sampled to ``num_points`` points
  with the normals of their faces, uniformly by area; a vertex-only PLY is taken as it is, with its
  ``nx ny nz`` properties when it has them;
* ``.obj``: ``v`` and ``f`` lines (polygons fanned into triangles), sampled the same way; an OBJ
  without faces is a point cloud without normals.

Normals are made unit length on loading; face normals follow the right-hand rule of the face's
vertex order. :func:`normalise` maps a cloud into [-1, 1]^3 as SIREN's ``dataio.PointCloud`` does
and returns the transform, so that outputs can be mapped back to the input's coordinates.
Arrays are float64 numpy unless said otherwise; a file that cannot be used is a :class:`DataError`
naming it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import DataError
from .shapes import SHAPE_PREFIX, AnalyticShape, get_shape

FORMATS = (".xyz", ".ply", ".obj")


@dataclass
class PointCloud:
    """points (N, 3); normals (N, 3) unit, outward, or None; ``shape``: the analytic shape it was sampled
    from (embedded sources), else None; ``notes``: what was done on loading."""

    points: np.ndarray
    normals: Optional[np.ndarray]
    source: str
    shape: Optional[AnalyticShape] = None
    notes: List[str] = field(default_factory=list)

    @property
    def num_points(self) -> int:
        return self.points.shape[0]


@dataclass(frozen=True)
class Normalisation:
    """``x_normalised = (x - centre) * scale``: a shift and a uniform scale (normals and signs unchanged;
    distances are multiplied by ``scale``). centre: (3,) in the input's units."""

    centre: Tuple[float, float, float]
    scale: float

    def apply(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - np.asarray(self.centre)) * self.scale

    def invert(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) / self.scale + np.asarray(self.centre)

    def as_dict(self) -> Dict[str, object]:
        return {"centre": [float(c) for c in self.centre], "scale": float(self.scale),
                "meaning": "x_normalised = (x_input - centre) * scale"}


def normalise(points: np.ndarray) -> Tuple[np.ndarray, Normalisation]:
    """SIREN's ``dataio.PointCloud`` normalisation: subtract the mean, then map [min, max] over all
    coordinates (one range for the three axes, keeping the aspect ratio) to [-1, 1].
    Returns the normalised points (N, 3) float64 and the transform (:func:`normalisation`)."""
    transform = normalisation(points)
    return transform.apply(points), transform


def normalisation(points: np.ndarray) -> Normalisation:
    """The transform of :func:`normalise`, from per-axis reductions only (no centred copy of the cloud: the
    extremes of ``points - mean`` are those of ``points`` minus the mean, exactly, rounding being monotone)."""
    mean = points.mean(axis=0, dtype=np.float64)
    low = float((points.min(axis=0) - mean).min())
    high = float((points.max(axis=0) - mean).max())
    if not high > low:
        raise DataError("the point cloud has no extent (all points are equal): it cannot be normalised")
    return Normalisation(tuple(float(c) for c in mean + (low + high) / 2), 2.0 / (high - low))


NORMALISE_CHUNK = 1 << 20
"""Rows per chunk when a cloud is normalised into float32 (the float64 temporaries stay this small)."""


def face_normals_and_areas(vertices: np.ndarray, faces: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Unit normals (F, 3) (right-hand rule; zero for degenerate faces) and areas (F,) of triangles."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    cross = np.cross(b - a, c - a)
    norm = np.linalg.norm(cross, axis=1)
    return cross / np.where(norm > 0, norm, 1.0)[:, None], 0.5 * norm


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator
                ) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform by area on a triangle mesh (V, 3), (F, 3) int, and their faces' unit normals."""
    normals, areas = face_normals_and_areas(vertices, faces)
    total = areas.sum()
    if not total > 0:
        raise DataError("the mesh has no area (every face is degenerate)")
    face = rng.choice(len(faces), size=n, p=areas / total)
    r1, r2 = rng.uniform(size=n), rng.uniform(size=n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)  # uniform barycentric weights
    tri = vertices[faces[face]]  # (n, 3 corners, 3)
    return np.einsum("nk,nkd->nd", w, tri), normals[face]


def _fan(polygons: List[List[int]]) -> np.ndarray:
    """Polygons (vertex index lists) fanned into triangles (F, 3)."""
    tris = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


# ------------------------------------------------------------------------------------------ readers
def read_xyz(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Points (N, 3) and normals (N, 3) or None, from ``x y z [nx ny nz]`` lines: numpy's parser reads the
    file in blocks into one (N, 6) float64 array (no list of lines); points and normals are views of it."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": an empty cloud, said below
            data = np.loadtxt(path, dtype=np.float64, comments="#", ndmin=2, encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not an .xyz point cloud (binary content, not text)") from None
    except ValueError as e:
        raise DataError(f"{path}: not an .xyz point cloud (x y z [nx ny nz] per line): {e}") from None
    if data.size == 0:
        return np.zeros((0, 3)), None
    if data.shape[1] not in (3, 6):
        raise DataError(f"{path}: {data.shape[1]} numbers per line; an .xyz point cloud has 3 (x y z) or 6 "
                        f"(x y z nx ny nz)")
    return data[:, :3], (data[:, 3:] if data.shape[1] == 6 else None)


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _ply_header(raw: bytes, path: Path):
    """(format, [(element name, count, [(property name, type, list count type or None)])], body offset)."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise DataError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header)")
    body = raw.index(b"\n", end) + 1
    fmt, elements = None, []
    for line in raw[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property" and words[1] == "list":
                elements[-1][2].append((words[4], _PLY_TYPES[words[3]], _PLY_TYPES[words[2]]))
            elif words[0] == "property":
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]], None))
        except (IndexError, KeyError, ValueError):
            raise DataError(f"{path}: bad PLY header line {line!r}") from None
    if fmt not in ("ascii", "binary_little_endian"):
        raise DataError(f"{path}: PLY format {fmt!r} is not supported (ascii or binary_little_endian)")
    return fmt, elements, body


def _read_ply_ascii(text: str, elements, path: Path) -> Dict[str, object]:
    lines = iter(line for line in text.splitlines() if line.strip())
    out: Dict[str, object] = {}
    for name, count, props in elements:
        if all(p[2] is None for p in props):
            rows = [next(lines).split()[:len(props)] for _ in range(count)]
            table = np.asarray(rows, dtype=np.float64).reshape(count, len(props))
            out[name] = {p[0]: table[:, i] for i, p in enumerate(props)}
        else:  # one list property (faces): its count first, then the indices
            polys = []
            for _ in range(count):
                words = next(lines).split()
                k = int(words[0])
                polys.append([int(w) for w in words[1:1 + k]])
            out[name] = {"lists": polys}
    return out


def _read_ply_binary(raw: bytes, offset: int, elements, path: Path) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for name, count, props in elements:
        if all(p[2] is None for p in props):
            dtype = np.dtype([(p[0], "<" + p[1]) for p in props])
            table = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
            offset += dtype.itemsize * count
            out[name] = {p[0]: table[p[0]] for p in props}  # views of the file's bytes: converted once, by _columns
            continue
        if len(props) != 1:
            raise DataError(f"{path}: PLY element {name!r} mixes a list with other properties (not supported)")
        _, item, count_type = props[0]
        tri = np.dtype([("k", "<" + count_type), ("i", "<" + item, (3,))])
        if offset + tri.itemsize * count <= len(raw):
            table = np.frombuffer(raw, dtype=tri, count=count, offset=offset)
            if np.all(table["k"] == 3):  # all triangles: read at once
                out[name] = {"triangles": table["i"].astype(np.int64)}
                offset += tri.itemsize * count
                continue
        polys, size_k, size_i = [], np.dtype(count_type).itemsize, np.dtype(item).itemsize
        for _ in range(count):
            k = int(np.frombuffer(raw, "<" + count_type, 1, offset)[0])
            polys.append(np.frombuffer(raw, "<" + item, k, offset + size_k).tolist())
            offset += size_k + k * size_i
        out[name] = {"lists": polys}
    return out


def _columns(element: Dict[str, np.ndarray], names: Tuple[str, ...]) -> np.ndarray:
    """The named columns of a PLY element as one (N, len(names)) float64 array, each converted straight into it."""
    out = np.empty((len(element[names[0]]), len(names)), dtype=np.float64)
    for i, name in enumerate(names):
        out[:, i] = element[name]
    return out


def read_ply(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Vertices (V, 3), faces (F, 3) int (polygons fanned) or None, vertex normals (V, 3) or None."""
    raw = Path(path).read_bytes()
    fmt, elements, body = _ply_header(raw, path)
    try:
        if fmt == "ascii":
            data = _read_ply_ascii(raw[body:].decode("ascii"), elements, path)
        else:
            data = _read_ply_binary(raw, body, elements, path)
    except (StopIteration, ValueError, UnicodeDecodeError, IndexError):
        raise DataError(f"{path}: the PLY body is shorter than its header says or does not parse") from None
    vertex = data.get("vertex")
    if vertex is None or not all(k in vertex for k in "xyz"):
        raise DataError(f"{path}: the PLY file has no vertex element with x, y, z")
    vertices = _columns(vertex, ("x", "y", "z"))
    normals = _columns(vertex, ("nx", "ny", "nz")) if all(k in vertex for k in ("nx", "ny", "nz")) else None
    faces = None
    face = data.get("face")
    if face:
        faces = face["triangles"] if "triangles" in face else _fan(face["lists"])
        if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise DataError(f"{path}: a face refers to a vertex that does not exist")
    return vertices, faces, normals


def read_obj(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Vertices (V, 3) and faces (F, 3) int or None (``f`` polygons fanned; 1-based and negative indices)."""
    vertices, polygons = [], []
    try:
        text = Path(path).read_text(errors="strict")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text OBJ file") from None
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            if words[0] == "v":
                vertices.append([float(w) for w in words[1:4]])
                if len(vertices[-1]) != 3:
                    raise ValueError
            elif words[0] == "f":
                idx = [int(re.split("/", w)[0]) for w in words[1:]]
                polygons.append([i - 1 if i > 0 else len(vertices) + i for i in idx])
        except ValueError:
            raise DataError(f"{path}, line {number}: cannot parse {line.strip()!r}") from None
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = _fan(polygons) if polygons else None
    if faces is not None and faces.size and (faces.min() < 0 or faces.max() >= len(v)):
        raise DataError(f"{path}: a face refers to a vertex that does not exist")
    return v, faces


def write_ply(path: Path, vertices: np.ndarray, faces: Optional[np.ndarray] = None,
              normals: Optional[np.ndarray] = None) -> None:
    """Binary little-endian PLY: float32 vertices (and ``nx ny nz`` normals), ``uchar int`` triangle lists."""
    vertices = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    names = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals is not None else [])
    header = ["ply", "format binary_little_endian 1.0", "comment written by sobolev_inr",
              f"element vertex {len(vertices)}", *(f"property float {n}" for n in names)]
    columns = vertices if normals is None else np.concatenate([vertices, np.asarray(normals, np.float32)], 1)
    body = np.ascontiguousarray(columns, dtype="<f4").tobytes()
    if faces is not None:
        faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        table = np.empty(len(faces), dtype=np.dtype([("k", "u1"), ("i", "<i4", (3,))]))
        table["k"], table["i"] = 3, faces
        body += table.tobytes()
    Path(path).write_bytes(("\n".join(header + ["end_header"]) + "\n").encode("ascii") + body)


# ------------------------------------------------------------------------------------------ loading
def _unit_normals(normals: np.ndarray, where: str) -> np.ndarray:
    """``normals`` made unit length in place (the loaders' own arrays: no copy of a big cloud); returned."""
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    bad = int((~(length[:, 0] > 0)).sum())
    if bad:
        raise DataError(f"{where}: {bad} normals have zero length (or are not numbers)")
    normals /= length
    return normals


def load_point_cloud(source: str, num_points: int = 100_000, seed: int = 0) -> PointCloud:
    """The cloud named by ``source`` (module docstring), in its own coordinates; ``num_points`` is used for
    embedded shapes and meshes (which are sampled), ``seed`` for that sampling."""
    if source.startswith(SHAPE_PREFIX):
        shape = get_shape(source[len(SHAPE_PREFIX):])
        points, normals = shape.sample(num_points, seed)
        return PointCloud(points, normals, source, shape, [f"embedded shape {shape.name}: {num_points} points "
                                                           f"sampled uniformly by area, normals = SDF gradient"])
    path = Path(source)
    if not path.exists():
        raise DataError(f"point cloud {source} not found (a path to an .xyz, .ply or .obj file, or one of "
                        f"shape:sphere, shape:torus, shape:spheres_boxes)")
    if path.is_dir():
        raise DataError(f"point cloud {source} is a directory, not a file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"point cloud {source}: unknown format {suffix or '(no suffix)'!r}; use one of "
                        f"{', '.join(FORMATS)}")
    notes: List[str] = []
    if suffix == ".xyz":
        points, normals = read_xyz(path)
        faces = None
    elif suffix == ".ply":
        points, faces, normals = read_ply(path)
    else:
        (points, faces), normals = read_obj(path), None
    if faces is not None and len(faces):
        rng = np.random.default_rng(seed)
        points, normals = sample_mesh(points, faces, num_points, rng)
        notes.append(f"mesh of {len(faces)} triangles sampled to {num_points} points uniformly by area, "
                     f"normals = face normals")
    if points.shape[0] == 0:
        raise DataError(f"point cloud {source} holds no points")
    if not np.isfinite(points).all():
        raise DataError(f"point cloud {source}: some coordinates are not finite numbers")
    if normals is not None:
        normals = _unit_normals(normals, f"point cloud {source}")
    return PointCloud(points, normals, str(source), None, notes)


@dataclass
class NormalisedCloud:
    """A cloud in the SDF task's coordinates: points (N, 3) float32 in [-1, 1]^3, normals (N, 3) float32 or
    None, ``transform`` from the input's coordinates; ``shape`` the analytic shape (input coordinates)
    of an embedded source, else None."""

    points: np.ndarray
    normals: Optional[np.ndarray]
    transform: Normalisation
    source: str
    shape: Optional[AnalyticShape] = None
    notes: List[str] = field(default_factory=list)

    @property
    def num_points(self) -> int:
        return self.points.shape[0]

    def true_sdf(self, x: np.ndarray) -> Optional[np.ndarray]:
        """The exact signed distance (M,) at normalised points ``x (M, 3)``, in normalised units (the shape's SDF
        times ``transform.scale``); None when the source has no analytic shape."""
        if self.shape is None:
            return None
        return self.transform.scale * self.shape.sdf(self.transform.invert(x))


def normalise_cloud(cloud: PointCloud) -> NormalisedCloud:
    """``cloud`` mapped into [-1, 1]^3 by :func:`normalise` (normals are unchanged by a shift and a uniform scale).
    The float32 points are written chunk by chunk (the same numbers as ``normalise(points)[0].astype(float32)``),
    so that a big cloud is not copied in float64 on the way."""
    transform = normalisation(cloud.points)
    points = np.empty(cloud.points.shape, dtype=np.float32)
    for start in range(0, len(points), NORMALISE_CHUNK):
        rows = slice(start, start + NORMALISE_CHUNK)
        points[rows] = transform.apply(cloud.points[rows])
    normals = None if cloud.normals is None else cloud.normals.astype(np.float32)
    return NormalisedCloud(points, normals, transform, cloud.source, cloud.shape, list(cloud.notes))
