"""Inverse rendering with Sobolev training: NeRF (one coarse TinyNeRF) on a forward-facing scene.

    python train.py --config configs/fern/val_der/relu.txt       # LLFF fern (link data/ first)
    python eval.py  --config configs/fern/val_der/relu.txt       # score.txt for the test views
    python train.py --config configs/synthetic/val_der/relu.txt  # embedded scene, no download

The original experiment's configs run unchanged; every default below is the original train.py's.
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("inverse_rendering")
if __name__ == "__main__":
    run()
