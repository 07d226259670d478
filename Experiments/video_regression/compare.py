"""Compare finished video runs in one figure: frames never trained on, and PSNR frame by frame.

    python compare.py logs/synthetic/val_sine logs/synthetic/val_der_sine --labels val val_der --out compare.png
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sobolev_inr.tasks.video_regression import compare_runs  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (<logging_root>/<exp_name>) of the same clip")
    p.add_argument("--labels", nargs="+", help="one label per run (default: the run folder names)")
    p.add_argument("--frames", type=int, default=4, help="frames shown (spread over those never trained on)")
    p.add_argument("--out", default="compare.png", help="output PNG")
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        p.error(f"{len(args.runs)} runs but {len(args.labels)} labels")
    for run in args.runs:
        if not (Path(run) / "checkpoints").is_dir() or not (Path(run) / "metrics.json").is_file():
            p.error(f"{run} is not a finished run directory (no checkpoints/ and metrics.json inside)")
    compare_runs(args.runs, Path(args.out), args.labels, args.frames)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
