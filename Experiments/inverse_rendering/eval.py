"""Scores the test views of a trained inverse-rendering run: score.txt as the original eval.py wrote it.

    python eval.py --config configs/fern/val_der/relu.txt                    # renders at the training resolution
    python eval.py --config configs/fern_small/val_der/relu.txt --eval_llff_factor 4   # and at LLFF factor 4

For every ``<basedir>/<expname>/testset_<iter>/`` without a score it pairs each render ``NNN.png``
with the ground truth of view NNN (by index, not by listing order), checks counts and sizes, and
writes ``score.txt`` (``NNN.png PSNR: x, SSIM: y``, then the means) and ``scores.json``; the test
views of the latest checkpoint are rendered first when no testset folder holds them. With
``eval_llff_factor`` the views are also rendered and scored at another LLFF downsample (e.g. 1, the
full images) in ``testset_<iter>_<H>x<W>/``. The run's metrics.json gains the scores.
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # noqa: E702
from sobolev_inr.tasks import TaskScript  # noqa: E402

config_parser, main, run = TaskScript("inverse_rendering", "eval")
if __name__ == "__main__":
    run()
