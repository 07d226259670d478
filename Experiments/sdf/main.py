"""Signed distance fitting from an oriented point cloud (SIREN's SDF experiment), with or without the normals.

    cd Experiments/sdf
    python main.py --config configs/torus/val_der_sine.txt          # embedded shape, CPU budget
    python main.py --point_cloud my_scan.xyz --num_epochs 100       # x y z nx ny nz per line (SIREN's .xyz)

Results: <logging_root>/<exp_name>/ (metrics.json, mesh.ply in the input's coordinates, shape.png,
slices.png, curves.png, checkpoints, TensorBoard events).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

from sobolev_inr import cli  # noqa: E402
from sobolev_inr.errors import ConfigError  # noqa: E402

SUPERVISIONS = ("val", "val_der")  # sobolev_inr.sdf_loss.SDF_SUPERVISIONS, named here so --help imports no torch


def config_parser():
    p = cli.make_parser("Fit a signed distance function to an oriented point cloud (SIREN's SDF loss).")
    cli.add_run_options(p)
    # SIREN's train_sdf.py / README: 10,000 epochs of 250,000 on-surface points per step, Adam 1e-4,
    # a SIREN of 3 hidden layers of 256 (the model group's defaults). A GPU budget: the configs shrink it.
    cli.add_epoch_options(p, num_epochs=10000)
    p.set_defaults(batch_size=250000)
    cli.add_optimizer_options(p, lrate=1e-4)
    cli.add_model_options(p)
    cli.add_engine_options(p)
    g = p.add_argument_group("sdf")
    g.add_argument("--point_cloud", type=str, default="shape:torus",
                   help="shape:sphere, shape:torus or shape:spheres_boxes (embedded shapes with a known SDF, no "
                        "download), or a path to an .xyz (x y z [nx ny nz]), .ply or .obj file")
    g.add_argument("--num_points", type=int, default=100000,
                   help="points sampled from an embedded shape or a mesh (.ply/.obj with faces); an .xyz or a "
                        "vertex-only PLY is used as it is")
    g.add_argument("--supervision", type=str, default="val_der", choices=SUPERVISIONS,
                   help="val: points only (sdf, inter, grad terms); val_der: points and normals (adds the normal "
                        "term: SIREN's full loss)")
    g.add_argument("--lambda_sdf", type=float, default=3e3, help="weight of mean |Phi| on the surface (SIREN: 3e3)")
    g.add_argument("--lambda_inter", type=float, default=1e2,
                   help="weight of mean exp(-inter_alpha |Phi|) off the surface (SIREN: 1e2)")
    g.add_argument("--lambda_normal", type=float, default=1e2,
                   help="weight of mean 1 - cos(grad Phi, n) on the surface (val_der; SIREN: 1e2)")
    g.add_argument("--lambda_grad", type=float, default=5e1, help="weight of mean ||grad Phi| - 1| (SIREN: 5e1)")
    g.add_argument("--inter_alpha", type=float, default=1e2, help="alpha of the off-surface term (SIREN: 1e2)")
    g.add_argument("--mc_resolution", type=int, default=128,
                   help="grid points per axis over [-1, 1]^3 for marching cubes, IoU and the mesh metrics")
    g.add_argument("--eval_chunk_size", type=int, default=65536, help="points per chunk when evaluating Phi")
    # batch_size (epoch options): on-surface points per step, as many off-surface points are added;
    # 0 or >= the cloud's size = the whole cloud.

    def check(a):
        cli._at_least(a, 1, ["num_points", "eval_chunk_size"])
        cli._at_least(a, 8, ["mc_resolution"])
        for key in ("lambda_sdf", "lambda_inter", "lambda_normal", "lambda_grad"):
            if getattr(a, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(a, key)}")
        if not a.inter_alpha > 0:
            raise ConfigError(f"inter_alpha must be > 0, got {a.inter_alpha}")

    p.declare(ignored=["eval_chunk_size"], check=check)
    return p


def main(argv=None):
    parser = config_parser()
    args = cli.parse_args(parser, argv)
    device = cli.resolve_device(args.device)
    metadata = cli.run_metadata(args)

    from sobolev_inr.data.pointclouds import load_point_cloud, normalise_cloud
    from sobolev_inr.errors import DataError
    from sobolev_inr.experiment import describe_model, open_run, train_and_report
    from sobolev_inr.models import SIREN_3D_NUM_FREQUENCIES
    from sobolev_inr.tasks.sdf import sdf_task_from_config
    from sobolev_inr.training import seed_everything

    cloud = normalise_cloud(load_point_cloud(args.point_cloud, args.num_points, args.seed))
    if args.supervision == "val_der" and cloud.normals is None:
        raise DataError(f"point cloud {args.point_cloud} has no normals; supervision val_der fits them "
                        f"(use supervision = val, or a cloud with x y z nx ny nz)")
    run = open_run(args.logging_root, args.exp_name, metadata, parser.identity, args.resume, args.overwrite)
    if run.mode == "skip":
        return run.read_metrics()
    seed_everything(args.seed, args.deterministic)
    model = cli.build_model(args, in_features=3, out_features=1, num_frequencies=SIREN_3D_NUM_FREQUENCIES).to(device)
    task = sdf_task_from_config(vars(args), cloud, device)
    run.print(f"point cloud {cloud.source}: {cloud.num_points} points, "
              f"{'with' if cloud.normals is not None else 'without'} normals; normalised to [-1, 1]^3 by "
              f"x' = (x - centre) * scale, centre {[round(c, 6) for c in cloud.transform.centre]}, "
              f"scale {cloud.transform.scale:.6g}")
    for note in cloud.notes:
        run.print(note)
    describe_model(model, args.supervision, device, run)
    summary = ("chamfer_l1", "normal_consistency", "iou", "sdf_error_uniform")
    return train_and_report("sdf", model, task, run, cli.epoch_fit_config(args, run.mode == "resume"), metadata,
                            device, summary=summary,
                            extra_metrics={"point_cloud": cloud.source, "has_normals": cloud.normals is not None,
                                           "normalisation": cloud.transform.as_dict(),
                                           "mesh_file": "mesh.ply, in the input's coordinates (normalisation undone)"})


if __name__ == "__main__":
    cli.run_entry_point(main)
