"""Audio regression with Sobolev training (the task: sobolev_inr.tasks.audio_regression).

    python main.py --config configs/bach/val_der_sine.txt              # SIREN's Bach clip (link data/ first)
    python main.py --config configs/synthetic/val_der_sine.txt --num_epochs 300   # embedded default
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("audio_regression")
if __name__ == "__main__":
    run()
