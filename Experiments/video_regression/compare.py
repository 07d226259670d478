"""Compare finished video runs in one figure: frames never trained on, and PSNR frame by frame.

    python compare.py logs/synthetic/val_sine logs/synthetic/val_der_sine --labels val val_der --out compare.png
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("video_regression", "compare")
if __name__ == "__main__":
    run()
