"""Poisson image editing with SIREN (SIREN's image-editing experiments): a gradient composite or seamless cloning.

    python main.py --config configs/composite_astronaut_coffee.txt   # f1, f2 on values, a third net on gradients
    python main.py --config configs/clone_astronaut_coffee.txt       # the astronaut's face into the coffee
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("image_editing")
if __name__ == "__main__":
    run()
