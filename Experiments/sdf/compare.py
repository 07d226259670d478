"""Compare finished SDF runs in two figures: their meshes, and Phi on the plane z = 0 beside the true surface.

    python compare.py logs/torus/val_sine logs/torus/val_der_sine logs/spheres_boxes/val_sine \
        logs/spheres_boxes/val_der_sine --columns 2 --labels val val_der --meshes_out meshes.png --slices_out slices.png
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sobolev_inr.tasks.sdf import compare_runs  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (<logging_root>/<exp_name>), row by row")
    p.add_argument("--columns", type=int, default=0, help="runs per row (default: all in one row)")
    p.add_argument("--labels", nargs="+", help="one label per column (default: the run folder names)")
    p.add_argument("--meshes_out", default="meshes.png", help="output PNG of the meshes")
    p.add_argument("--slices_out", default="slices.png", help="output PNG of the slices")
    args = p.parse_args(argv)
    columns = args.columns or len(args.runs)
    if columns < 1 or len(args.runs) % columns:
        p.error(f"{len(args.runs)} runs do not fill rows of --columns {columns}")
    if args.labels and len(args.labels) != columns:
        p.error(f"{columns} columns but {len(args.labels)} labels")
    for run in args.runs:
        if not (Path(run) / "checkpoints").is_dir() or not (Path(run) / "metrics.json").is_file():
            p.error(f"{run} is not a finished run directory (no checkpoints/ and metrics.json inside)")
    compare_runs(args.runs, columns, Path(args.meshes_out), Path(args.slices_out), args.labels)
    print(f"wrote {args.meshes_out} and {args.slices_out}")


if __name__ == "__main__":
    main()
