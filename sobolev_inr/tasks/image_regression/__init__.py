"""Image regression (Sobolev-INR paper, section 4.1): fit an MLP to an image from 1/factor^2 of its
pixels, scored on the others; SIREN's Poisson reconstruction with ``supervision`` der or lapl.

    sobolev-inr image_regression --config configs/baby/val_der/sine.txt
    cd Experiments/image_regression && python main.py --config configs/camera/val_der/sine.txt

The task object, its metrics and figures: :mod:`.task`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...config import cli
from ...config.options import EngineOptions, ImageSource, MemoryOptions, SupervisionOptions, options_from_config
from .. import register_task
from ..entry import TaskEntry, Training, check_finished_runs, task_module_attributes


@dataclass(frozen=True)
class ImageRegressionOptions:
    """A run's image, supervision and engine, and the task's own options: train on every ``factor``-th
    pixel in each direction (1: every pixel, nothing held out), derivative targets of the downsampled image
    (``der_on_downsampled``), SIREN's Poisson ``target_scaling``, samples per step (0: full batch) and per
    render call, and the ``memory`` a training step may hold (a bigger step runs in row blocks)."""

    source: ImageSource = ImageSource()
    supervision: SupervisionOptions = SupervisionOptions()
    engine: EngineOptions = EngineOptions()
    factor: int = 4
    der_on_downsampled: bool = False
    target_scaling: str = "none"
    batch_size: int = 0
    eval_chunk_size: int = 65536
    memory: MemoryOptions = MemoryOptions()

    from_config = classmethod(options_from_config)


class ImageRegressionEntry(TaskEntry):
    name = "image_regression"
    description = "Fit a coordinate MLP to an image with value and/or derivative supervision."
    commands = ("train", "compare")

    def add_options(self, p: cli.ArgumentParser) -> None:
        # The paper's image-regression budget (supplement, section 1.1; original code's defaults).
        cli.add_mlp_task_options(p, num_epochs=50000, lrate=1e-4)
        g = cli.add_image_source_options(p)
        g.add_argument("--target_scaling", type=str, default="none", choices=["none", "siren"],
                       help="siren: SIREN's Poisson targets (x10 image + unnormalised Sobel for der, x1e4 Laplacian "
                            "for lapl, per [-1, 1] coordinate unit): the network fits k = 80 step (der) or 1e4 step^2 "
                            "(lapl) times the image; metrics divide by k. Needs a square image")
        g.add_argument("--factor", type=int, default=4,
                       help="train on every factor-th pixel in each direction (1 = every pixel, nothing held out)")
        g.add_argument("--der_on_downsampled", action="store_true",
                       help="compute derivative targets on the downsampled image (derivative-precision protocol)")
        cli.add_eval_chunk_option(p, g, "pixels per chunk when rendering the full grid")

        def check(a):
            if a.target_scaling == "siren" and a.supervision not in ("der", "lapl"):
                raise cli.ConfigError(f"target_scaling = siren is SIREN's Poisson scaling, for supervision der or "
                                      f"lapl; got supervision = {a.supervision}")
            check_final_eval_stride(a, "pixel")

        p.declare(check=check)

    def load(self, args, metadata, device):
        from .task import image_task

        return image_task(ImageRegressionOptions.from_config(metadata), device)

    def build(self, args, metadata, task, device, run) -> Training:
        from ...models import nyquist_num_frequencies

        data = task.data
        model = cli.build_model(args, in_features=2, out_features=data.channels,
                                num_frequencies=nyquist_num_frequencies(min(data.train_shape))).to(device)
        h, w = data.shape
        notes = [f"image: {data.source}, {h}x{w}x{data.channels}; training on {len(data.train_index)} pixels "
                 f"({data.train_shape[0]}x{data.train_shape[1]}), {int(data.heldout.sum())} held out",
                 *(f"note: {note}" for note in data.notes)]
        if not task.has_heldout and not task.is_poisson:
            notes.append("note: factor = 1 trains on every pixel: no held-out metrics (metrics.json reports the "
                         "full-image ones, psnr_full, psnr_luma_full, ssim_full)")
        if task.target_scale != 1.0:
            notes.append(f"note: target_scaling = siren: the targets are {task.target_scale:.4f} times the image's, "
                         f"so the network fits {task.target_scale:.4f} times the image; metrics and figures divide "
                         f"by it")
        if task.is_poisson:
            summary = ("psnr_offset_full", "psnr_minmax_full", "psnr_grad_full", "psnr_lapl_full")
        elif task.has_heldout:
            summary = ("psnr_heldout", "psnr_luma_heldout", "ssim_heldout", "psnr_grad_heldout")
        else:
            summary = ("psnr_full", "psnr_luma_full", "ssim_full", "psnr_grad_full")
        return Training(model, task, notes, summary,
                        extra_metrics={"image": data.source, "image_shape": [h, w, data.channels],
                                       "factor": data.factor})

    def compare_parser(self):
        p = super().compare_parser()
        p.description = "Compare finished image-regression runs in one figure (reconstructions and gradient " \
                        "magnitudes): compare logs/baby/val/sine logs/baby/val_der/sine --labels val val+der"
        p.add_argument("--crop", nargs=4, type=int, metavar=("ROW0", "ROW1", "COL0", "COL1"), help="show a crop")
        p.add_argument("--out", default="compare.png", help="output PNG")
        return p

    def compare(self, args, parser) -> str:
        from pathlib import Path

        from .task import compare_runs

        check_finished_runs(parser, args.runs, args.labels)
        compare_runs(args.runs, Path(args.out), args.labels, args.crop)
        print(f"wrote {args.out}")
        return args.out


def stride_error(stride: int, factor: int, what: str) -> str:
    """Why ``final_eval_stride`` cannot score a signal trained on every ``factor``-th ``what`` (pixel, sample)."""
    return (f"final_eval_stride = {stride} is a multiple of factor = {factor}: every {what} it scores is a training "
            f"{what}, none held out; use a stride that is not a multiple of factor")


def check_final_eval_stride(a, what: str) -> None:
    """ConfigError before the run when ``final_eval_stride`` would score only training samples (a multiple of
    ``factor`` > 1 picks the training grid, which starts at the first sample): no held-out sample to score."""
    stride, factor = a.final_eval_stride, a.factor
    if factor > 1 and stride % factor == 0 and not a.skip_final_eval:
        raise cli.ConfigError(stride_error(stride, factor, what))


register_task(ImageRegressionEntry)

__getattr__ = task_module_attributes(__name__)
