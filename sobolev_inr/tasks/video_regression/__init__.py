"""Video regression: fit (t, y, x) -> colour from a subsampled grid of a clip (Sobel targets in space,
central differences in time) and score the frames never trained on.

    sobolev-inr video_regression --config configs/synthetic/val_der_sine.txt
    cd Experiments/video_regression && python main.py --config configs/synthetic/val_sine.txt --filename frames/

The task object, its metrics and figures: :mod:`.task`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...config import cli
from ...config.options import EngineOptions, MemoryOptions, SupervisionOptions, options_from_config
from ...errors import ConfigError
from .. import register_task
from ..entry import TaskEntry, Training, check_finished_runs, task_module_attributes


@dataclass(frozen=True)
class VideoSource:
    """A clip and its split: a folder of frames, a video file, a name under ``<data_root>/Video/`` or
    ``synthetic[:<frames>]``; ``num_frames`` frames from ``first_frame`` (0: to the end), luma if ``is_gray``,
    centre-cropped and resized to ``sidelength`` if set; trained on every ``time_factor``-th frame and every
    ``space_factor``-th pixel along y and x."""

    filename: str = "synthetic"
    data_root: str = "../../data"
    is_gray: bool = False
    first_frame: int = 0
    num_frames: int = 0
    sidelength: int = 0
    time_factor: int = 2
    space_factor: int = 1

    def __post_init__(self):
        for key in ("time_factor", "space_factor"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("first_frame", "num_frames"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.sidelength and self.sidelength < 2:
            raise ConfigError(f"sidelength must be 0 (keep the size) or >= 2, got {self.sidelength}")

    from_config = classmethod(options_from_config)


@dataclass(frozen=True)
class VideoRegressionOptions:
    """A run's clip, supervision and engine, samples per step (0: full batch) and per render call, and the
    ``memory`` a training step may hold (a bigger step runs in row blocks, gradients accumulated)."""

    source: VideoSource = VideoSource()
    supervision: SupervisionOptions = SupervisionOptions()
    engine: EngineOptions = EngineOptions()
    batch_size: int = 0
    eval_chunk_size: int = 65536
    memory: MemoryOptions = MemoryOptions()

    from_config = classmethod(options_from_config)


def stride_error(stride: int, space_factor: int) -> str:
    """Why ``final_eval_stride`` cannot score a clip trained on every frame and every ``space_factor``-th pixel."""
    return (f"final_eval_stride = {stride} is a multiple of space_factor = {space_factor} and every frame is trained "
            f"on (time_factor = 1): every pixel it scores is a training pixel, none held out; use a stride that is "
            f"not a multiple of space_factor")


def check_final_eval_stride(a) -> None:
    """ConfigError before the run when ``final_eval_stride`` (every k-th pixel of every frame) would score only
    training samples: every frame trained on and k a multiple of ``space_factor`` > 1."""
    stride = getattr(a, "final_eval_stride", 1)
    if a.time_factor == 1 and a.space_factor > 1 and stride % a.space_factor == 0 and not a.skip_final_eval:
        raise ConfigError(stride_error(stride, a.space_factor))


class VideoRegressionEntry(TaskEntry):
    name = "video_regression"
    description = "Fit a coordinate MLP to a video clip with value and/or derivative supervision."
    commands = ("train", "compare")

    def add_options(self, p: cli.ArgumentParser) -> None:
        cli.add_mlp_task_options(p, num_epochs=100, lrate=1e-4, supervisions=("val", "val_der"))
        g = p.add_argument_group("video")
        g.add_argument("--filename", type=str, default="synthetic",
                       help="a folder of frames, a video file (GIF; MP4 and others with the video extra), a name "
                            "under <data_root>/Video/, or synthetic[:<frames>] (embedded clip, no download)")
        g.add_argument("--data_root", type=str, default="../../data", help="root of the data sets")
        g.add_argument("--is_gray", action="store_true", help="convert to luma (one channel)")
        g.add_argument("--first_frame", type=int, default=0, help="first frame of the clip kept")
        g.add_argument("--num_frames", type=int, default=0, help="frames kept from first_frame (0 = to the end)")
        g.add_argument("--sidelength", type=int, default=0,
                       help="centre-crop every frame to a square and resize it to sidelength x sidelength "
                            "(bilinear); 0 = keep the frames as they are")
        g.add_argument("--time_factor", type=int, default=2,
                       help="train on every time_factor-th frame; the others are interpolated (1 = every frame)")
        g.add_argument("--space_factor", type=int, default=1,
                       help="train on every space_factor-th pixel along y and x (1 = every pixel)")
        cli.add_eval_chunk_option(p, g, "samples per chunk when rendering the clip")

        p.declare(check=lambda a: (VideoSource.from_config(vars(a)), check_final_eval_stride(a)))

    def load(self, args, metadata, device):
        from .task import load_video_source

        return load_video_source(VideoSource.from_config(metadata), args.der_operator)

    def build(self, args, metadata, data, device, run) -> Training:
        from ...data.video import describe
        from ...models import SIREN_3D_NUM_FREQUENCIES
        from .task import video_task

        model = cli.build_model(args, in_features=3, out_features=data.channels,
                                num_frequencies=SIREN_3D_NUM_FREQUENCIES).to(device)
        task = video_task(VideoRegressionOptions.from_config(metadata), data, device)
        t, h, w = data.shape
        return Training(model, task, list(describe(data)),
                        summary=("psnr_heldout_frames", "ssim_heldout_frames", "psnr_train_frames"),
                        extra_metrics={"video": data.source, "num_frames": t, "height": h, "width": w,
                                       "fps": data.fps, "time_factor": data.time_factor,
                                       "space_factor": data.space_factor,
                                       "num_train_samples": len(data.train_index)})

    def compare_parser(self):
        p = super().compare_parser()
        p.description = "Compare finished video runs of the same clip in one figure: frames never trained on, " \
                        "and PSNR frame by frame"
        p.add_argument("--frames", type=int, default=4, help="frames shown (spread over those never trained on)")
        p.add_argument("--out", default="compare.png", help="output PNG")
        return p

    def compare(self, args, parser) -> str:
        from pathlib import Path

        from .task import compare_runs

        check_finished_runs(parser, args.runs, args.labels)
        compare_runs(args.runs, Path(args.out), args.labels, args.frames)
        print(f"wrote {args.out}")
        return args.out


register_task(VideoRegressionEntry)
__getattr__ = task_module_attributes(__name__)
