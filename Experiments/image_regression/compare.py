"""Compare finished image-regression runs in one figure (reconstructions and gradient magnitudes).

    python compare.py logs/baby/val/sine logs/baby/val_der/sine --labels "val" "val+der" --out compare.png
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sobolev_inr.tasks.image_regression import compare_runs  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (<logging_root>/<exp_name>)")
    p.add_argument("--labels", nargs="+", help="one label per run (default: the run folder names)")
    p.add_argument("--crop", nargs=4, type=int, metavar=("ROW0", "ROW1", "COL0", "COL1"), help="show a crop")
    p.add_argument("--out", default="compare.png", help="output PNG")
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        p.error(f"{len(args.runs)} runs but {len(args.labels)} labels")
    for run in args.runs:
        if not (Path(run) / "checkpoints").is_dir():
            p.error(f"{run} is not a run directory (no checkpoints/ inside)")
    compare_runs(args.runs, Path(args.out), args.labels, args.crop)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
