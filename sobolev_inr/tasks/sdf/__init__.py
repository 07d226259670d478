"""Signed distance fitting from an oriented point cloud (SIREN's SDF experiment): points only (val) or
points and normals (val_der); marching cubes, Chamfer, normal consistency, IoU.

    sobolev-inr sdf --config configs/torus/val_der_sine.txt
    cd Experiments/sdf && python main.py --point_cloud my_scan.xyz --num_epochs 100

The task object, its loss, metrics and figures: :mod:`.task`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...config import cli
from ...config.options import EngineOptions, MemoryOptions, options_from_config
from ...errors import ConfigError
from .. import register_task
from ..entry import TaskEntry, Training, check_finished_runs, task_module_attributes

SUPERVISIONS = ("val", "val_der")  # sobolev_inr.losses.sdf.SDF_SUPERVISIONS, named here so --help imports no torch
LOSS_WEIGHTS = ("lambda_sdf", "lambda_inter", "lambda_normal", "lambda_grad")


def check_stride(stride: int, mc_resolution: int) -> None:
    """ConfigError when every ``stride``-th point of the marching-cubes grid (``final_eval_stride``) leaves fewer
    than 2 per axis."""
    if stride > mc_resolution - 1:
        raise ConfigError(f"final_eval_stride {stride} leaves 1 point per axis of the mc_resolution {mc_resolution} "
                          f"grid; use final_eval_stride <= {mc_resolution - 1}")


@dataclass(frozen=True)
class SDFOptions:
    """A run's point cloud (``shape:<name>`` or a file; ``num_points`` sampled from a shape or mesh, drawn with
    ``seed``), what is supervised (val: points only; val_der: points and normals), the weights of SIREN's loss
    terms and its off-surface ``inter_alpha``, the marching-cubes grid, on-surface points per step (0: all)
    and points per evaluation call; ``memory``: points per forward/backward block (a batch is cut into blocks,
    gradients accumulated)."""

    point_cloud: str = "shape:torus"
    num_points: int = 100000
    seed: int = 0
    supervision: str = "val_der"
    lambda_sdf: float = 3e3
    lambda_inter: float = 1e2
    lambda_normal: float = 1e2
    lambda_grad: float = 5e1
    inter_alpha: float = 1e2
    mc_resolution: int = 128
    batch_size: int = 250000
    eval_chunk_size: int = 65536
    engine: EngineOptions = EngineOptions()
    memory: MemoryOptions = MemoryOptions()

    def __post_init__(self):
        if self.supervision not in SUPERVISIONS:
            raise ConfigError(f"unknown supervision {self.supervision!r}; choose from {list(SUPERVISIONS)}")
        if self.num_points < 1:
            raise ConfigError(f"num_points must be >= 1, got {self.num_points}")
        if self.mc_resolution < 8:
            raise ConfigError(f"mc_resolution must be >= 8, got {self.mc_resolution}")
        for key in LOSS_WEIGHTS:
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not self.inter_alpha > 0:
            raise ConfigError(f"inter_alpha must be > 0, got {self.inter_alpha}")

    from_config = classmethod(options_from_config)


class SDFEntry(TaskEntry):
    name = "sdf"
    description = "Fit a signed distance function to an oriented point cloud (SIREN's SDF loss)."
    commands = ("train", "compare")

    def add_options(self, p: cli.ArgumentParser) -> None:
        # SIREN's train_sdf.py / README: 10,000 epochs of 250,000 on-surface points per step, Adam 1e-4,
        # a SIREN of 3 hidden layers of 256 (the model group's defaults). A GPU budget: the configs shrink it.
        cli.add_mlp_task_options(p, num_epochs=10000, lrate=1e-4, supervisions=None)  # its own supervision below
        p.set_defaults(batch_size=250000)
        g = p.add_argument_group("sdf")
        g.add_argument("--point_cloud", type=str, default="shape:torus",
                       help="shape:sphere, shape:torus or shape:spheres_boxes (embedded shapes with a known SDF, no "
                            "download), or a path to an .xyz (x y z [nx ny nz]), .ply or .obj file")
        g.add_argument("--num_points", type=int, default=100000,
                       help="points sampled from an embedded shape or a mesh (.ply/.obj with faces); an .xyz or a "
                            "vertex-only PLY is used as it is")
        g.add_argument("--supervision", type=str, default="val_der", choices=SUPERVISIONS,
                       help="val: points only (sdf, inter, grad terms); val_der: points and normals (adds the "
                            "normal term: SIREN's full loss)")
        g.add_argument("--lambda_sdf", type=float, default=3e3, help="weight of mean |Phi| on the surface (SIREN: 3e3)")
        g.add_argument("--lambda_inter", type=float, default=1e2,
                       help="weight of mean exp(-inter_alpha |Phi|) off the surface (SIREN: 1e2)")
        g.add_argument("--lambda_normal", type=float, default=1e2,
                       help="weight of mean 1 - cos(grad Phi, n) on the surface (val_der; SIREN: 1e2)")
        g.add_argument("--lambda_grad", type=float, default=5e1, help="weight of mean ||grad Phi| - 1| (SIREN: 5e1)")
        g.add_argument("--inter_alpha", type=float, default=1e2, help="alpha of the off-surface term (SIREN: 1e2)")
        g.add_argument("--mc_resolution", type=int, default=128,
                       help="grid points per axis over [-1, 1]^3 for marching cubes, IoU and the mesh metrics")
        cli.add_eval_chunk_option(p, g, "points per chunk when evaluating Phi")
        # batch_size (epoch options): on-surface points per step, as many off-surface points are added;
        # 0 or >= the cloud's size = the whole cloud.

        p.declare(check=lambda a: (SDFOptions.from_config(vars(a)), check_stride(a.final_eval_stride, a.mc_resolution)))

    def load(self, args, metadata, device):
        from ...errors import DataError
        from .task import load_cloud

        cloud = load_cloud(SDFOptions.from_config(metadata))
        if args.supervision == "val_der" and cloud.normals is None:
            raise DataError(f"point cloud {args.point_cloud} has no normals; supervision val_der fits them "
                            f"(use supervision = val, or a cloud with x y z nx ny nz)")
        return cloud

    def build(self, args, metadata, cloud, device, run) -> Training:
        from ...models import SIREN_3D_NUM_FREQUENCIES
        from .task import sdf_task

        model = cli.build_model(args, in_features=3, out_features=1,
                                num_frequencies=SIREN_3D_NUM_FREQUENCIES).to(device)
        task = sdf_task(SDFOptions.from_config(metadata), cloud, device)
        notes = [f"point cloud {cloud.source}: {cloud.num_points} points, "
                 f"{'with' if cloud.normals is not None else 'without'} normals; normalised to [-1, 1]^3 by "
                 f"x' = (x - centre) * scale, centre {[round(c, 6) for c in cloud.transform.centre]}, "
                 f"scale {cloud.transform.scale:.6g}", *cloud.notes]
        return Training(model, task, notes, summary=("chamfer_l1", "normal_consistency", "iou", "sdf_error_uniform"),
                        extra_metrics={"point_cloud": cloud.source, "has_normals": cloud.normals is not None,
                                       "normalisation": cloud.transform.as_dict(),
                                       "mesh_file": "mesh.ply, in the input's coordinates (normalisation undone)"})

    def compare_parser(self):
        p = super().compare_parser()
        p.description = "Compare finished SDF runs in two figures: their meshes, and Phi on the plane z = 0 " \
                        "beside the true surface; runs are laid out row by row"
        p.add_argument("--columns", type=int, default=0, help="runs per row (default: all in one row)")
        p.add_argument("--meshes_out", default="meshes.png", help="output PNG of the meshes")
        p.add_argument("--slices_out", default="slices.png", help="output PNG of the slices")
        return p

    def compare(self, args, parser):
        from pathlib import Path

        from .task import compare_runs

        columns = args.columns or len(args.runs)
        if columns < 1 or len(args.runs) % columns:
            parser.error(f"{len(args.runs)} runs do not fill rows of --columns {columns}")
        check_finished_runs(parser, args.runs, args.labels, columns)
        compare_runs(args.runs, columns, Path(args.meshes_out), Path(args.slices_out), args.labels)
        print(f"wrote {args.meshes_out} and {args.slices_out}")
        return args.meshes_out, args.slices_out


register_task(SDFEntry)
__getattr__ = task_module_attributes(__name__)
