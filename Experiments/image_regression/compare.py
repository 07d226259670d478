"""Compare finished image-regression runs in one figure (reconstructions and gradient magnitudes).

    python compare.py logs/baby/val/sine logs/baby/val_der/sine --labels "val" "val+der" --out compare.png
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("image_regression", "compare")
if __name__ == "__main__":
    run()
