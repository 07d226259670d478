"""Video regression with Sobolev training: fit (t, y, x) -> colour from a subsampled grid, score the frames
never trained on.

    cd Experiments/video_regression
    python main.py --config configs/synthetic/val_der_sine.txt      # embedded synthetic clip, no download
    python main.py --config configs/synthetic/val_sine.txt --filename path/to/frames/   # your own clip

Results: <logging_root>/<exp_name>/ (metrics.json with per-frame PSNR and SSIM, reconstruction.gif,
frames.png, per_frame.png, checkpoints, TensorBoard events).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

from sobolev_inr import cli  # noqa: E402
from sobolev_inr.errors import ConfigError  # noqa: E402


def config_parser():
    p = cli.make_parser("Fit a coordinate MLP to a video clip with value and/or derivative supervision.")
    cli.add_run_options(p)
    cli.add_epoch_options(p, num_epochs=100)
    cli.add_optimizer_options(p, lrate=1e-4)
    cli.add_model_options(p)
    cli.add_supervision_options(p, supervisions=("val", "val_der"))
    cli.add_engine_options(p)
    g = p.add_argument_group("video")
    g.add_argument("--filename", type=str, default="synthetic",
                   help="a folder of frames, a video file (GIF; MP4 and others with the video extra), a name under "
                        "<data_root>/Video/, or synthetic[:<frames>] (embedded clip, no download)")
    g.add_argument("--data_root", type=str, default="../../data", help="root of the data sets")
    g.add_argument("--is_gray", action="store_true", help="convert to luma (one channel)")
    g.add_argument("--first_frame", type=int, default=0, help="first frame of the clip kept")
    g.add_argument("--num_frames", type=int, default=0, help="frames kept from first_frame (0 = to the end)")
    g.add_argument("--sidelength", type=int, default=0,
                   help="centre-crop every frame to a square and resize it to sidelength x sidelength (bilinear); "
                        "0 = keep the frames as they are")
    g.add_argument("--time_factor", type=int, default=2,
                   help="train on every time_factor-th frame; the others are interpolated (1 = every frame)")
    g.add_argument("--space_factor", type=int, default=1,
                   help="train on every space_factor-th pixel along y and x (1 = every pixel)")
    g.add_argument("--eval_chunk_size", type=int, default=65536, help="samples per chunk when rendering the clip")

    def check(a):
        cli._at_least(a, 1, ["time_factor", "space_factor", "eval_chunk_size"])
        cli._at_least(a, 0, ["first_frame", "num_frames"])
        if a.sidelength and a.sidelength < 2:
            raise ConfigError(f"sidelength must be 0 (keep the size) or >= 2, got {a.sidelength}")

    p.declare(ignored=["eval_chunk_size"], check=check)
    return p


def main(argv=None):
    parser = config_parser()
    args = cli.parse_args(parser, argv)
    device = cli.resolve_device(args.device)
    metadata = cli.run_metadata(args)

    from sobolev_inr.data.video import describe
    from sobolev_inr.experiment import describe_model, open_run, train_and_report
    from sobolev_inr.models import SIREN_3D_NUM_FREQUENCIES
    from sobolev_inr.tasks.video_regression import video_data_from_config, video_task_from_config
    from sobolev_inr.training import seed_everything

    data = video_data_from_config(vars(args))
    run = open_run(args.logging_root, args.exp_name, metadata, parser.identity, args.resume, args.overwrite)
    if run.mode == "skip":
        return run.read_metrics()
    seed_everything(args.seed, args.deterministic)
    model = cli.build_model(args, in_features=3, out_features=data.channels,
                            num_frequencies=SIREN_3D_NUM_FREQUENCIES).to(device)
    task = video_task_from_config(vars(args), data, device)
    for line in describe(data):
        run.print(line)
    describe_model(model, args.supervision, device, run)
    t, h, w = data.shape
    return train_and_report("video_regression", model, task, run, cli.epoch_fit_config(args, run.mode == "resume"),
                            metadata, device, summary=("psnr_heldout_frames", "ssim_heldout_frames", "psnr_train_frames"),
                            extra_metrics={"video": data.source, "num_frames": t, "height": h, "width": w,
                                           "fps": data.fps, "time_factor": data.time_factor,
                                           "space_factor": data.space_factor,
                                           "num_train_samples": len(data.train_index)})


if __name__ == "__main__":
    cli.run_entry_point(main)
