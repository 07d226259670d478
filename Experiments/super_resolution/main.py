"""Single-image super-resolution with an implicit neural representation, beside bicubic upsampling.

    cd Experiments/super_resolution
    python main.py --config configs/camera/x4/val/sine.txt           # paper 004's protocol (camera 512, x4)
    python main.py --config configs/camera/x4/val_der/spder.txt      # SPDER, value + derivative supervision

Fits the image downsampled by sr_factor, renders the network on the original grid and scores it there, beside
PIL's bicubic upsampling of the same low-resolution image. Results: <logging_root>/<exp_name>/.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

from sobolev_inr import cli  # noqa: E402

DOWNSAMPLE_FILTERS = ("bilinear", "bicubic", "box", "lanczos")  # the task's (kept here so --help imports no torch)


def config_parser():
    p = cli.make_parser("Super-resolve an image with a coordinate MLP fitted to its downsampled version.")
    cli.add_run_options(p)
    # Paper 004's budget: 500 full-batch iterations, Adam 1e-4 (SIREN's rate).
    cli.add_epoch_options(p, num_epochs=500)
    cli.add_optimizer_options(p, lrate=1e-4)
    cli.add_model_options(p)
    cli.add_supervision_options(p, supervisions=("val", "val_der"), default="val")
    cli.add_engine_options(p)
    g = cli.add_image_source_options(p)
    g.add_argument("--sr_factor", type=int, default=4,
                   help="downsampling factor of the training image, and upsampling factor of the render (2, 4, 8)")
    g.add_argument("--downsample", type=str, default="bilinear", choices=DOWNSAMPLE_FILTERS,
                   help="PIL filter making the low-resolution image (bilinear: the papers' Resize; antialiased)")
    g.add_argument("--eval_chunk_size", type=int, default=65536, help="pixels per chunk when rendering")

    def check(a):
        cli._at_least(a, 2, ["sr_factor"])
        cli._at_least(a, 1, ["eval_chunk_size"])

    p.declare(ignored=["eval_chunk_size"], check=check)
    return p


def main(argv=None):
    parser = config_parser()
    args = cli.parse_args(parser, argv)
    device = cli.resolve_device(args.device)
    metadata = cli.run_metadata(args)

    from sobolev_inr.experiment import describe_model, open_run, train_and_report
    from sobolev_inr.models import nyquist_num_frequencies
    from sobolev_inr.tasks.super_resolution import super_resolution_task_from_config
    from sobolev_inr.training import seed_everything

    task = super_resolution_task_from_config(metadata, device)
    run = open_run(args.logging_root, args.exp_name, metadata, parser.identity, args.resume, args.overwrite)
    if run.mode == "skip":
        return run.read_metrics()
    seed_everything(args.seed, args.deterministic)
    data = task.data
    model = cli.build_model(args, in_features=2, out_features=data.channels,
                            num_frequencies=nyquist_num_frequencies(min(data.shape))).to(device)
    (h, w), (hh, ww) = data.shape, task.high_shape
    run.print(f"image: {data.source}, {hh}x{ww}x{data.channels}; training on all {h}x{w} pixels of its x{args.sr_factor} "
              f"downsampled version, scored at {hh}x{ww} beside bicubic")
    for note in data.notes:
        run.print(f"note: {note}")
    describe_model(model, args.supervision, device, run)
    return train_and_report("super_resolution", model, task, run, cli.epoch_fit_config(args, run.mode == "resume"),
                            metadata, device, summary=("psnr_heldout", "psnr_bicubic_heldout", "ssim_heldout",
                                                       "ssim_bicubic_heldout"),
                            extra_metrics={"image": data.source, "image_shape": [hh, ww, data.channels]})


if __name__ == "__main__":
    cli.run_entry_point(main)
