"""Signed distance fitting from an oriented point cloud (SIREN's SDF experiment), with or without the normals.

    python main.py --config configs/torus/val_der_sine.txt          # embedded shape, CPU budget
    python main.py --point_cloud my_scan.xyz --num_epochs 100       # x y z nx ny nz per line (SIREN's .xyz)
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("sdf")
if __name__ == "__main__":
    run()
