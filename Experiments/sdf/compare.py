"""Compare finished SDF runs in two figures: their meshes, and Phi on the plane z = 0 beside the true surface.

    python compare.py logs/torus/val_sine logs/torus/val_der_sine logs/spheres_boxes/val_sine \\
        logs/spheres_boxes/val_der_sine --columns 2 --labels val val_der --meshes_out meshes.png --slices_out slices.png
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("sdf", "compare")
if __name__ == "__main__":
    run()
