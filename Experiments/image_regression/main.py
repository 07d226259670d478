"""Image regression with Sobolev training.

    cd Experiments/image_regression
    python main.py --config configs/baby/val_der/sine.txt            # Set5 (link data/ first)
    python main.py --config configs/camera/val_der/sine.txt --num_epochs 300   # embedded default

Results: <logging_root>/<exp_name>/ (metrics.json, figures, checkpoints, TensorBoard events).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

from sobolev_inr import cli  # noqa: E402


def config_parser():
    p = cli.make_parser("Fit a coordinate MLP to an image with value and/or derivative supervision.")
    cli.add_run_options(p)
    # The paper's image-regression budget (supplement, section 1.1; original code's defaults).
    cli.add_epoch_options(p, num_epochs=50000)
    cli.add_optimizer_options(p, lrate=1e-4)
    cli.add_model_options(p)
    cli.add_supervision_options(p)
    cli.add_engine_options(p)
    g = cli.add_image_source_options(p)
    g.add_argument("--target_scaling", type=str, default="none", choices=["none", "siren"],
                   help="siren: SIREN's Poisson targets (x10 image + unnormalised Sobel for der, x1e4 Laplacian for "
                        "lapl, per [-1, 1] coordinate unit): the network fits k = 80 step (der) or 1e4 step^2 (lapl) "
                        "times the image; metrics divide by k. Needs a square image")
    g.add_argument("--factor", type=int, default=4,
                   help="train on every factor-th pixel in each direction (1 = every pixel, nothing held out)")
    g.add_argument("--der_on_downsampled", action="store_true",
                   help="compute derivative targets on the downsampled image (derivative-precision protocol)")
    g.add_argument("--eval_chunk_size", type=int, default=65536, help="pixels per chunk when rendering the full grid")

    def check(a):
        cli._at_least(a, 1, ["eval_chunk_size"])
        if a.target_scaling == "siren" and a.supervision not in ("der", "lapl"):
            raise cli.ConfigError(f"target_scaling = siren is SIREN's Poisson scaling, for supervision der or lapl; "
                                  f"got supervision = {a.supervision}")

    p.declare(ignored=["eval_chunk_size"], check=check)
    return p


def main(argv=None):
    parser = config_parser()
    args = cli.parse_args(parser, argv)
    device = cli.resolve_device(args.device)
    metadata = cli.run_metadata(args)

    from sobolev_inr.experiment import describe_model, open_run, train_and_report
    from sobolev_inr.models import nyquist_num_frequencies
    from sobolev_inr.tasks.image_regression import image_task_from_config
    from sobolev_inr.training import seed_everything

    task = image_task_from_config(metadata, device)
    run = open_run(args.logging_root, args.exp_name, metadata, parser.identity, args.resume, args.overwrite)
    if run.mode == "skip":
        return run.read_metrics()
    seed_everything(args.seed, args.deterministic)
    data = task.data
    model = cli.build_model(args, in_features=2, out_features=data.channels,
                            num_frequencies=nyquist_num_frequencies(min(data.train_shape))).to(device)
    h, w = data.shape
    run.print(f"image: {data.source}, {h}x{w}x{data.channels}; training on {len(data.train_index)} pixels "
              f"({data.train_shape[0]}x{data.train_shape[1]}), {int(data.heldout.sum())} held out")
    for note in data.notes:
        run.print(f"note: {note}")
    if not task.has_heldout and not task.is_poisson:
        run.print("note: factor = 1 trains on every pixel: no held-out metrics (metrics.json reports the "
                  "full-image ones, psnr_full, psnr_luma_full, ssim_full)")
    describe_model(model, args.supervision, device, run)
    if task.target_scale != 1.0:
        run.print(f"note: target_scaling = siren: the targets are {task.target_scale:.4f} times the image's, so the "
                  f"network fits {task.target_scale:.4f} times the image; metrics and figures divide by it")
    if task.is_poisson:
        summary = ("psnr_offset_full", "psnr_minmax_full", "psnr_grad_full", "psnr_lapl_full")
    elif task.has_heldout:
        summary = ("psnr_heldout", "psnr_luma_heldout", "ssim_heldout", "psnr_grad_heldout")
    else:
        summary = ("psnr_full", "psnr_luma_full", "ssim_full", "psnr_grad_full")
    return train_and_report("image_regression", model, task, run, cli.epoch_fit_config(args, run.mode == "resume"),
                            metadata, device, summary=summary,
                            extra_metrics={"image": data.source, "image_shape": [h, w, data.channels],
                                           "factor": data.factor})


if __name__ == "__main__":
    cli.run_entry_point(main)
