"""Single-image super-resolution (SPDER's protocol): fit the image downsampled by ``sr_factor``, render
the network on the original grid and score it there, beside PIL's bicubic upsampling.

    sobolev-inr super_resolution --config configs/camera/x4/val/sine.txt
    cd Experiments/super_resolution && python main.py --config configs/camera/x4/val_der/spder.txt

The task object, its metrics and figures: :mod:`.task`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...config import cli
from ...config.options import EngineOptions, ImageSource, MemoryOptions, SupervisionOptions, options_from_config
from .. import register_task
from ..entry import TaskEntry, Training, task_module_attributes

DOWNSAMPLE_FILTERS = ("bilinear", "bicubic", "box", "lanczos")  # the task's (named here so --help imports no torch)


@dataclass(frozen=True)
class SuperResolutionOptions:
    """A run's image, supervision and engine, the factor it is downsampled by and upsampled by again
    (``sr_factor``), the PIL filter that downsamples it, the samples per render call, and the ``memory`` a
    training step may hold (a bigger step runs in row blocks)."""

    source: ImageSource = ImageSource()
    supervision: SupervisionOptions = SupervisionOptions(supervision="val")
    engine: EngineOptions = EngineOptions()
    sr_factor: int = 4
    downsample: str = "bilinear"
    eval_chunk_size: int = 65536
    memory: MemoryOptions = MemoryOptions()

    from_config = classmethod(options_from_config)


class SuperResolutionEntry(TaskEntry):
    name = "super_resolution"
    description = "Super-resolve an image with a coordinate MLP fitted to its downsampled version."

    def add_options(self, p: cli.ArgumentParser) -> None:
        # SPDER's budget: 500 full-batch iterations, Adam 1e-4 (SIREN's rate).
        cli.add_mlp_task_options(p, num_epochs=500, lrate=1e-4, supervisions=("val", "val_der"), default="val")
        g = cli.add_image_source_options(p)
        g.add_argument("--sr_factor", type=int, default=4,
                       help="downsampling factor of the training image, and upsampling factor of the render (2, 4, 8)")
        g.add_argument("--downsample", type=str, default="bilinear", choices=DOWNSAMPLE_FILTERS,
                       help="PIL filter making the low-resolution image (bilinear: the papers' Resize; antialiased)")
        cli.add_eval_chunk_option(p, g, "pixels per chunk when rendering")
        p.declare(check=lambda a: cli._at_least(a, 2, ["sr_factor"]))

    def load(self, args, metadata, device):
        from .task import super_resolution_task

        return super_resolution_task(SuperResolutionOptions.from_config(metadata), device)

    def build(self, args, metadata, task, device, run) -> Training:
        from ...models import nyquist_num_frequencies

        data = task.data
        model = cli.build_model(args, in_features=2, out_features=data.channels,
                                num_frequencies=nyquist_num_frequencies(min(data.shape))).to(device)
        (h, w), (hh, ww) = data.shape, task.high_shape
        notes = [f"image: {data.source}, {hh}x{ww}x{data.channels}; training on all {h}x{w} pixels of its "
                 f"x{args.sr_factor} downsampled version, scored at {hh}x{ww} beside bicubic",
                 *(f"note: {note}" for note in data.notes)]
        return Training(model, task, notes,
                        summary=("psnr_heldout", "psnr_bicubic_heldout", "ssim_heldout", "ssim_bicubic_heldout"),
                        extra_metrics={"image": data.source, "image_shape": [hh, ww, data.channels]})


register_task(SuperResolutionEntry)
__getattr__ = task_module_attributes(__name__)
