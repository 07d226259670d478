"""Video regression with Sobolev training: fit (t, y, x) -> colour from a subsampled grid, score the frames
never trained on.

    python main.py --config configs/synthetic/val_der_sine.txt      # embedded synthetic clip, no download
    python main.py --config configs/synthetic/val_sine.txt --filename path/to/frames/   # your own clip
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("video_regression")
if __name__ == "__main__":
    run()
