"""Single-image super-resolution with an implicit neural representation, beside bicubic upsampling.

    python main.py --config configs/camera/x4/val/sine.txt           # paper 004's protocol (camera 512, x4)
    python main.py --config configs/camera/x4/val_der/spder.txt      # SPDER, value + derivative supervision

Fits the image downsampled by sr_factor, renders the network on the original grid and scores it there, beside
PIL's bicubic upsampling of the same low-resolution image. Results: <logging_root>/<exp_name>/.
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("super_resolution")
if __name__ == "__main__":
    run()
