"""Signed distance fitting (SIREN, section 4.2): a network Phi whose zero set is the surface of an oriented point cloud.

Training follows SIREN's ``PointCloud`` data set and ``loss_functions.sdf`` (:mod:`sobolev_inr.losses.sdf`):
each step takes ``batch_size`` points of the cloud (a random permutation cut into batches, one epoch =
one pass, a last partial batch dropped as SIREN's ``len = N // batch``) and as many off-surface points
uniform in [-1, 1]^3. Supervision ``val`` fits the points alone, ``val_der`` the points and their
normals (grad Phi = n: the derivative supervision). Phi's gradient comes from the derivative engine.

Evaluation, in normalised coordinates (the cloud mapped into [-1, 1]^3, :mod:`sobolev_inr.geometry.pointclouds`):

* every summary (cheap): ``surface_abs_phi`` = mean |Phi| on a fixed subset of the cloud and, for an
  embedded shape, ``sdf_error_uniform`` on a fixed set of uniform points;
* at the end: Phi on a ``mc_resolution``^3 grid over [-1, 1]^3, its zero set by marching cubes, and
  ``chamfer_l1`` and ``normal_consistency`` (:mod:`sobolev_inr.geometry.metrics`) between that mesh
  (sampled uniformly by area) and the cloud; for an embedded shape also ``sdf_error_uniform``,
  ``sdf_error_near`` (points of the cloud moved by N(0, NEAR_SIGMA^2) per axis), ``iou`` of
  {Phi < 0} against {SDF < 0} on the grid's points, and ``chamfer_l1_floor``: the Chamfer-L1 between the
  cloud and a second, independent sample of the true surface of the same size (what a perfect mesh
  would score, since both sides are finite samples). A network whose Phi does not cross 0 has no
  mesh: its mesh metrics are null.

Big inputs. ``final_metrics(model, stride=k)`` evaluates Phi on every k-th point per axis of the
marching-cubes grid (``len(range(0, mc_resolution, k))``^3 points: a subset of the full grid's, voxel k times
as big; ``final_eval_shape``), meshes that grid, scores IoU on it, and takes every k-th point of each metric
point set (the cloud's metric rows, the uniform and near-surface points; the mesh is sampled to as many
points as the cloud's rows kept). That grid is evaluated once, in chunks of ``eval_chunk_size`` points with a
progress bar, and reused by ``write_outputs`` (mesh.ply and shape.png are meshed from the grid the final
metrics scored). A training batch bigger than the memory options allow (:class:`MemoryOptions`: a block size
in points, or a budget in GB measured on a probe block) is cut into blocks of on- and off-surface points whose
loss terms sum to the batch's (:meth:`SDFFitting.loss_blocks`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ...config.options import EngineOptions, MemoryOptions, resolve_path
from ...derivatives import value_and_derivatives
from ...geometry.meshing import evaluate_grid, evaluate_on_grid, grid_axis, marching_cubes
from ...geometry.metrics import chamfer_l1, inside_iou, normal_consistency, sdf_error
from ...geometry.pointclouds import NormalisedCloud, load_point_cloud, normalise_cloud, sample_mesh, write_ply
from ...geometry.shapes import SHAPE_PREFIX
from ...losses.sdf import SDF_SUPERVISIONS, SDFLossWeights, sdf_loss
from ...training import memory as memory_probe
from ...training.progress import QUIET, Progress
from ..regression import OncePerWeights, predict
from . import SDFOptions, check_stride

NUM_SUMMARY_POINTS = 4096
"""Points of the fixed sets the periodic evaluation uses (cloud subset, uniform points)."""
NUM_METRIC_POINTS = 100_000
"""At most this many points of the cloud, of the mesh's samples and of the uniform and near-surface sets
enter the final metrics."""
NEAR_SIGMA = 0.01
"""Per-axis standard deviation (normalised units) of the near-surface points of ``sdf_error_near``."""
FIGURE_MAX_FACES = 20_000
"""The shape figure meshes a coarser stride of the grid until it has at most this many triangles."""
SLICE_RESOLUTION = 200
PROBE_POINTS = 512
"""Points (half on, half off the surface) of the probe that measures a training step's memory per point."""
BLOCK_HEADROOM = 2.0
"""Peak memory of an SDF training block over what autograd saves for its backward pass (the eikonal and normal
terms backpropagate through grad Phi: a double backward); measured on CPU with a SIREN of 3 x 128, 1.5 to 2.2."""


@dataclass
class SDFBatch:
    """index (B,): rows of the cloud on the surface; off_surface (B, 3): points uniform in [-1, 1]^3."""

    index: Tensor
    off_surface: Tensor


class SDFFitting:
    """Fitting Phi to ``cloud`` (normalised) with SIREN's loss; ``supervision`` in ``val``, ``val_der``.

    ``batch_size``: on-surface points per step (0 or >= the cloud's size: all of them, one step per epoch).
    ``der_mode``, ``der_engine``: the derivative engine's options for grad Phi (auto picks reverse mode:
    one output, three inputs). ``memory``: how many points one forward/backward block may hold
    (:meth:`loss_blocks`). ``progress``: bars and phase lines of the grid evaluation (set by the runner).
    """

    progress: Progress = QUIET
    psnr_peak = float("nan")
    """Required by :class:`~sobolev_inr.training.loop.Task`, unused: the training PSNR is computed from a ``value``
    loss term, and an SDF loss has none (its terms are ``sdf``, ``inter``, ``normal``, ``grad``)."""

    def __init__(self, cloud: NormalisedCloud, supervision: str = "val_der", *,
                 weights: SDFLossWeights = SDFLossWeights(), engine: EngineOptions = EngineOptions(),
                 batch_size: int = 0, device: torch.device = torch.device("cpu"), mc_resolution: int = 128,
                 eval_chunk_size: int = 65536, memory: MemoryOptions = MemoryOptions()):
        if supervision not in SDF_SUPERVISIONS:
            raise ValueError(f"unknown supervision {supervision!r}; choose from {list(SDF_SUPERVISIONS)}")
        if supervision == "val_der" and cloud.normals is None:
            raise ValueError("supervision val_der needs normals; the cloud has none")
        self.cloud, self.supervision, self.weights = cloud, supervision, weights
        self.batch_size, self.device = batch_size, device
        self.mc_resolution, self.eval_chunk_size, self.memory = mc_resolution, eval_chunk_size, memory
        self._block_points: Dict[int, int] = {}  # points per block by model, from the memory probe
        self._logged_blocks: Optional[Tuple[int, int]] = None  # (points, block) of the last "in blocks" line
        self.der_mode, self.der_engine = engine.der_mode, engine.der_engine
        self.points = torch.from_numpy(cloud.points).float().to(device)
        self.normals = None if cloud.normals is None else torch.from_numpy(cloud.normals).float().to(device)
        # Fixed evaluation sets, drawn from their own seed (not the training generator: resuming is unaffected).
        rng = np.random.default_rng(12345)
        n = cloud.num_points
        self.metric_rows = np.sort(rng.permutation(n)[:NUM_METRIC_POINTS])
        self.summary_rows = self.metric_rows[rng.permutation(len(self.metric_rows))[:NUM_SUMMARY_POINTS]]
        self.uniform = rng.uniform(-1, 1, size=(NUM_METRIC_POINTS, 3)).astype(np.float32)
        near = cloud.points[self.metric_rows] + rng.normal(0, NEAR_SIGMA, size=(len(self.metric_rows), 3))
        self.near = near.astype(np.float32)
        self.has_shape = cloud.shape is not None
        if self.has_shape:
            self.uniform_sdf = cloud.true_sdf(self.uniform)
            self.near_sdf = cloud.true_sdf(self.near)
        self._once_per_weights = OncePerWeights()

    # ------------------------------------------------------------------------------------- training
    def train_batches(self, generator: torch.Generator) -> Iterator[SDFBatch]:
        """One epoch: a permutation of the cloud cut into ``batch_size`` rows (the last partial batch dropped),
        each with as many uniform off-surface points, all drawn from ``generator``."""
        n = self.cloud.num_points
        size = n if self.batch_size <= 0 or self.batch_size >= n else self.batch_size
        perm = torch.randperm(n, generator=generator)
        for k in range(n // size):
            index = perm[k * size:(k + 1) * size]
            off = torch.rand(size, 3, generator=generator) * 2 - 1
            yield SDFBatch(index.to(self.device), off.to(self.device))

    def loss(self, model: nn.Module, batch: SDFBatch) -> Dict[str, Tensor]:
        """SIREN's SDF loss terms of ``batch`` (:func:`~sobolev_inr.losses.sdf.sdf_loss`)."""
        return self._terms(model, batch.index, batch.off_surface)

    def _terms(self, model: nn.Module, index: Tensor, off_surface: Tensor, denominator: Optional[int] = None
               ) -> Dict[str, Tensor]:
        """The loss terms of the on-surface rows ``index`` and the ``off_surface`` points, each a sum over these
        rows divided by ``denominator`` (default: their number; a block's: its batch's)."""
        on = self.points[index]
        x = torch.cat([on, off_surface])
        d = value_and_derivatives(model, x, mode=self.der_mode, engine=self.der_engine)
        normals = self.normals[index] if self.supervision == "val_der" else None
        return sdf_loss(d.value[:, 0], d.jacobian[:, 0, :], on.shape[0], normals, self.weights, denominator)

    def block_points(self, model: nn.Module, batch: SDFBatch) -> int:
        """Points (on + off surface) one block may hold: ``memory.block_size``, else as many as fit
        ``memory.max_memory_gb`` (what autograd keeps per point, measured once per model on a probe of the
        batch's first :data:`PROBE_POINTS` points, :func:`~sobolev_inr.training.memory.bytes_per_sample`, times
        :data:`BLOCK_HEADROOM`), else the whole batch (also a batch within the probe). Logs one line
        (``progress.log``) when the batch is cut."""
        points = 2 * len(batch.index)
        if self.memory.block_size > 0:
            size = self.memory.block_size
        elif self.memory.max_memory_gb <= 0 or points <= PROBE_POINTS:
            return points
        else:
            if id(model) not in self._block_points:
                def loss_of_points(n: int) -> Tensor:
                    half = max(n // 2, 1)
                    return self._terms(model, batch.index[:half], batch.off_surface[:half])["total"]

                per_point = memory_probe.bytes_per_sample(loss_of_points, PROBE_POINTS)
                self._block_points[id(model)] = memory_probe.rows_within(self.memory.max_memory_gb, per_point,
                                                                         BLOCK_HEADROOM)
            size = self._block_points[id(model)]
        if size < points and self._logged_blocks != (points, size):
            self._logged_blocks = (points, size)
            budget = (f"block_size {size:,}" if self.memory.block_size > 0
                      else f"max_memory_gb {self.memory.max_memory_gb:g}")
            self.progress.log(f"training steps in {-(-points // (2 * max(size // 2, 1)))} blocks of {size:,} points "
                              f"({budget})")
        return size

    def loss_blocks(self, model: nn.Module, batch: SDFBatch) -> Iterator[Dict[str, Tensor]]:
        """The loss of ``batch`` in blocks of at most :meth:`block_points` points, each half on the surface and
        half off it (the batch's pairs of rows in order), whose terms sum to :meth:`loss`'s: every term is a sum
        over rows divided by the batch's size. One block (the :meth:`loss` itself) when the batch fits."""
        size = len(batch.index)
        half = max(self.block_points(model, batch) // 2, 1)
        if half >= size:
            yield self.loss(model, batch)
            return
        for start in range(0, size, half):
            rows = slice(start, start + half)
            yield self._terms(model, batch.index[rows], batch.off_surface[rows], denominator=2 * size)

    # ----------------------------------------------------------------------------------- evaluation
    def _phi(self, model: nn.Module, x: np.ndarray) -> np.ndarray:
        coords = torch.from_numpy(np.asarray(x, np.float32)).to(self.device)
        return predict(model, coords, self.eval_chunk_size, progress=self.progress,
                       desc="Phi at points")[:, 0].cpu().double().numpy()

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """Cheap metrics for every summary (module docstring)."""
        metrics = {"surface_abs_phi": float(np.abs(self._phi(model, self.cloud.points[self.summary_rows])).mean())}
        if self.has_shape:
            rows = slice(0, NUM_SUMMARY_POINTS)
            metrics["sdf_error_uniform"] = sdf_error(self._phi(model, self.uniform[rows]), self.uniform_sdf[rows])
        return metrics

    def grid(self, model: nn.Module, stride: int = 1) -> np.ndarray:
        """Phi on every ``stride``-th point per axis of the ``mc_resolution``^3 grid over [-1, 1]^3, (n, n, n)
        (:mod:`sobolev_inr.geometry.meshing`), evaluated once per weights and stride, in chunks, with a bar."""
        return self._once_per_weights(f"grid/{stride}", model, lambda: evaluate_grid(
            model, self.mc_resolution, self.eval_chunk_size, self.device, stride=stride, progress=self.progress))

    def grid_voxel(self, stride: int = 1) -> float:
        """The spacing of :meth:`grid`'s points, normalised units."""
        return 2.0 / (self.mc_resolution - 1) * stride

    def mesh(self, model: nn.Module, stride: int = 1) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """The zero set of :meth:`grid` (of that ``stride``): vertices (V, 3) normalised, triangles (F, 3); None if
        Phi does not cross 0."""
        return self._once_per_weights(f"mesh/{stride}", model, lambda: marching_cubes(
            self.grid(model, stride), voxel=self.grid_voxel(stride)))

    def figure_mesh(self, model: nn.Module, stride: int = 1) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """The mesh of :meth:`mesh`, or of a coarser stride of its grid until it has at most ``FIGURE_MAX_FACES``
        triangles (matplotlib draws every one); Phi is not evaluated again."""
        mesh, coarser = self.mesh(model, stride), 1
        while mesh is not None and len(mesh[1]) > FIGURE_MAX_FACES:
            coarser += 1
            mesh = marching_cubes(self.grid(model, stride), stride=coarser, voxel=self.grid_voxel(stride))
        return mesh

    def true_inside(self, stride: int = 1) -> Optional[np.ndarray]:
        """{SDF < 0} of the embedded shape on :meth:`grid`'s points, (n, n, n) bool, computed in chunks (None
        without a shape)."""
        if not self.has_shape:
            return None
        return evaluate_on_grid(lambda p: self.cloud.true_sdf(p) < 0, self.mc_resolution, self.eval_chunk_size,
                                stride=stride, progress=self.progress, desc="true SDF on the grid", dtype=bool)

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, Any]:
        """What ``metrics.json`` reports (module docstring); distances in normalised units. ``stride`` k: every
        k-th grid point per axis and every k-th point of each metric point set (module docstring, Big inputs)."""
        check_stride(stride, self.mc_resolution)
        n = len(grid_axis(self.mc_resolution, stride=stride))
        model.eval()
        cloud, rows = self.cloud, self.metric_rows[::stride]
        metrics: Dict[str, Any] = {
            "surface_abs_phi": float(np.abs(self._phi(model, cloud.points[rows])).mean()),
            "mc_resolution": self.mc_resolution, "num_points": cloud.num_points,
            "final_eval_shape": [n, n, n], "final_eval_points": len(rows),
        }
        mesh = self.mesh(model, stride)
        metrics.update(chamfer_l1=None, chamfer_l1_input_units=None, normal_consistency=None,
                       mesh_vertices=0, mesh_faces=0)
        if mesh is not None:
            verts, faces = mesh
            samples, sample_normals = sample_mesh(verts, faces, len(rows), np.random.default_rng(0))
            chamfer = chamfer_l1(samples, cloud.points[rows])
            metrics.update(chamfer_l1=chamfer, chamfer_l1_input_units=chamfer / cloud.transform.scale,
                           mesh_vertices=len(verts), mesh_faces=len(faces))
            if cloud.normals is not None:
                metrics["normal_consistency"] = normal_consistency(cloud.points[rows], cloud.normals[rows],
                                                                   samples, sample_normals)
        if self.has_shape:
            fresh = cloud.transform.apply(cloud.shape.sample(len(rows), seed=98765)[0])
            every = slice(None, None, stride)
            metrics["chamfer_l1_floor"] = chamfer_l1(fresh, cloud.points[rows])
            metrics.update(sdf_error_uniform=sdf_error(self._phi(model, self.uniform[every]), self.uniform_sdf[every]),
                           sdf_error_near=sdf_error(self._phi(model, self.near[every]), self.near_sdf[every]),
                           iou=inside_iou(self.grid(model, stride) < 0, self.true_inside(stride)))
        return metrics

    def slices(self, model: nn.Module) -> Dict[str, Tuple[np.ndarray, Optional[np.ndarray]]]:
        """Phi and the true SDF (or None) on the planes x = 0, y = 0, z = 0 of the normalised cube,
        each (S, S) over [-1, 1]^2: rows along the plane's second axis, columns along its first."""
        axis = np.linspace(-1, 1, SLICE_RESOLUTION)
        a, b = np.meshgrid(axis, axis, indexing="xy")  # a: columns, b: rows
        out = {}
        for name, fixed in (("x", 0), ("y", 1), ("z", 2)):
            free = [k for k in range(3) if k != fixed]
            pts = np.zeros((a.size, 3))
            pts[:, free[0]], pts[:, free[1]] = a.reshape(-1), b.reshape(-1)
            true = self.cloud.true_sdf(pts)
            out[name] = (self._phi(model, pts).reshape(a.shape), None if true is None else true.reshape(a.shape))
        return out

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """mesh.ply (binary, in the INPUT's coordinates: the normalisation undone), shape.png (the input points
        and the mesh from three views) and slices.png (Phi on three planes, zero level drawn). The mesh is the
        final metrics' (``metrics["final_eval_stride"]``'s grid, already evaluated)."""
        from ...reporting.plots import save_mesh_views, save_sdf_slices

        run_dir = Path(run_dir)
        model.eval()
        stride = int(metrics.get("final_eval_stride", 1))
        mesh = self.mesh(model, stride)
        title = (f"Chamfer-L1 {metrics['chamfer_l1']:.4g} (normalised units)" if metrics.get("chamfer_l1") is not None
                 else "no surface: Phi does not cross 0 on the grid")
        if metrics.get("iou") is not None:
            title += f", IoU {metrics['iou']:.3f}"
        if mesh is not None:
            verts, faces = mesh
            write_ply(run_dir / "mesh.ply", self.cloud.transform.invert(verts), faces)
        shown = self.cloud.points[self.summary_rows]
        save_mesh_views(run_dir / "shape.png", self.figure_mesh(model, stride), shown,
                        suptitle=f"{self.cloud.source}: {title}")
        save_sdf_slices(run_dir / "slices.png", self.slices(model),
                        suptitle=f"Phi on the planes through the centre (normalised units); {title}")


def load_cloud(options: SDFOptions, base_dir: Path = Path(".")) -> NormalisedCloud:
    """The options' point cloud (an embedded shape, or a file relative to ``base_dir``), normalised into
    [-1, 1]^3."""
    source = options.point_cloud
    if not source.startswith(SHAPE_PREFIX):
        source = resolve_path(source, base_dir)
    return normalise_cloud(load_point_cloud(source, options.num_points, options.seed))


def sdf_task(options: SDFOptions, cloud: Optional[NormalisedCloud] = None, device: torch.device = torch.device("cpu"),
             base_dir: Path = Path(".")) -> SDFFitting:
    """The :class:`SDFFitting` of a run's options (what the entry builds and :func:`load_run` rebuilds), on
    ``cloud`` if given, else on the options' point cloud."""
    cloud = cloud if cloud is not None else load_cloud(options, base_dir)
    weights = SDFLossWeights(options.lambda_sdf, options.lambda_inter, options.lambda_normal, options.lambda_grad,
                             options.inter_alpha)
    return SDFFitting(cloud, options.supervision, weights=weights, engine=options.engine,
                      batch_size=options.batch_size, device=device, mc_resolution=options.mc_resolution,
                      eval_chunk_size=options.eval_chunk_size, memory=options.memory)


def load_run(run_dir: Path, device: torch.device = torch.device("cpu")):
    """(model, SDFFitting task, metrics) of a finished SDF run, rebuilt from its newest checkpoint and resolved
    config."""
    import json

    from ...training.checkpoints import rebuild_run

    model, task = rebuild_run(run_dir, lambda config, base: sdf_task(SDFOptions.from_config(config),
                                                                     device=device, base_dir=base))
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return model.to(device).eval(), task, metrics


def compare_runs(run_dirs: Sequence[Path], columns: int, meshes_out: Path, slices_out: Path,
                 labels: Optional[Sequence[str]] = None) -> None:
    """Two figures of finished runs laid out in rows of ``columns`` (e.g. one row per shape, one column per
    model and supervision): their meshes from one view, and Phi on the plane z = 0 with the true surface dashed
    (embedded shapes). Titles: ``labels`` (one per column) and each run's IoU or Chamfer-L1."""
    from ...reporting.plots import save_mesh_grid, save_sdf_slice_grid

    labels = list(labels or [])
    mesh_rows, slice_rows = [], []
    for i, run_dir in enumerate(run_dirs):
        model, task, metrics = load_run(run_dir)
        label = labels[i % columns] if labels else Path(run_dir).name
        score = (f"IoU {metrics['iou']:.3f}" if metrics.get("iou") is not None else
                 f"Chamfer-L1 {metrics['chamfer_l1']:.4f}" if metrics.get("chamfer_l1") is not None else "no surface")
        title = f"{label}\n{Path(run_dir).parent.name}: {score}"
        if i % columns == 0:
            mesh_rows.append([])
            slice_rows.append([])
        phi, true = task.slices(model)["z"]
        mesh_rows[-1].append((title, task.figure_mesh(model)))
        slice_rows[-1].append((title, phi, true))
    for path in (meshes_out, slices_out):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_mesh_grid(meshes_out, mesh_rows)
    save_sdf_slice_grid(slices_out, slice_rows)
