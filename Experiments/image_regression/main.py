"""Image regression with Sobolev training.

    cd Experiments/image_regression
    python main.py --config configs/baby/val_der/sine.txt            # Set5 (link data/ first)
    python main.py --config configs/camera/val_der/sine.txt --num_epochs 300   # embedded default

Results: <logging_root>/<exp_name>/ (metrics.json, figures, checkpoints, TensorBoard events).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

from sobolev_inr.cli import (base_parser, build_model, parse_args, resolve_device, resolved_config,  # noqa: E402
                             run_entry_point)
from sobolev_inr.data.images import load_image, prepare_image  # noqa: E402
from sobolev_inr.models import nyquist_num_frequencies  # noqa: E402
from sobolev_inr.plots import save_training_curves  # noqa: E402
from sobolev_inr.runs import RunDirectory  # noqa: E402
from sobolev_inr.tasks.image_regression import ImageRegression  # noqa: E402
from sobolev_inr.training import FitConfig, fit, run_metrics, seed_everything  # noqa: E402


def config_parser():
    p = base_parser("Fit a coordinate MLP to an image with value and/or derivative supervision.")
    g = p.add_argument_group("image")
    g.add_argument("--filename", type=str, default="skimage:camera",
                   help="Set5 name (baby), a PNG/JPEG path, or skimage:<name> (embedded, no download)")
    g.add_argument("--data_root", type=str, default="../../data", help="root of the data sets (original layout)")
    g.add_argument("--dataset", type=str, default="Set5", help="folder under data_root holding HR/<filename>.png")
    g.add_argument("--is_gray", action="store_true", help="convert to luma (one channel)")
    g.add_argument("--factor", type=int, default=4, help="train on every factor-th pixel in each direction")
    g.add_argument("--crop", action="store_true", help="crop an image whose size is not a multiple of factor")
    g.add_argument("--der_on_downsampled", action="store_true",
                   help="compute derivative targets on the downsampled image (derivative-precision protocol)")
    g.add_argument("--eval_chunk_size", type=int, default=65536, help="pixels per chunk when rendering the full grid")
    # The paper's image-regression budget (supplement, section 1.1; original code's defaults).
    p.set_defaults(num_epochs=50000, lrate=1e-4)
    return p


def main(argv=None):
    args = parse_args(config_parser(), argv)
    device = resolve_device(args.device)
    image, source = load_image(args.filename, args.data_root, args.dataset, args.is_gray)
    data = prepare_image(image, args.factor, args.der_operator, args.der_on_downsampled, args.crop, source)

    config = resolved_config(args)
    run = RunDirectory(args.logging_root, args.exp_name, resume=args.resume, overwrite=args.overwrite, config=config)
    if run.mode == "skip":
        run.print(f"skipping: {run.path} holds a finished run of this config (metrics.json); --overwrite redoes it")
        return run.read_metrics()
    seed_everything(args.seed, args.deterministic)
    model = build_model(args, in_features=2, out_features=data.channels,
                        num_frequencies=nyquist_num_frequencies(min(data.train_shape))).to(device)
    task = ImageRegression(data, args.supervision, args.lambda_der, args.der_units, args.der_mode,
                           args.batch_size, args.eval_chunk_size, device)
    h, w = data.shape
    run.print(f"image: {source}, {h}x{w}x{data.channels}; training on {len(data.train_index)} pixels "
              f"({data.train_shape[0]}x{data.train_shape[1]}), {int(data.heldout.sum())} held out")
    run.print(f"model: {model.config['activations']}, encoding {model.config['encoding']}"
              + (f" (L = {model.config['num_frequencies']})" if model.config["encoding"] == "positional" else "")
              + f"; supervision {args.supervision}; device {device}; run dir {run.path}")

    fit_cfg = FitConfig(num_epochs=args.num_epochs, lrate=args.lrate, epochs_til_summary=args.epochs_til_summary,
                        epochs_til_ckpt=args.epochs_til_ckpt, keep_checkpoints=args.keep_checkpoints,
                        resume=run.mode == "resume", progress=not args.no_progress, nan_policy=args.nan_policy,
                        clip_grad_norm=args.clip_grad_norm)
    result = fit(model, task, fit_cfg, run, config, seed=args.seed)

    metrics = {**run_metrics("image_regression", args, result, model, device), **task.final_metrics(model),
               "image": source, "image_shape": [h, w, data.channels], "factor": data.factor}
    run.write_metrics(metrics)
    task.write_figures(model, run.path, metrics)
    save_training_curves(run.file("scalars.csv"), run.file("curves.png"), title=args.exp_name)
    run.print(f"held-out PSNR {metrics['psnr_heldout']:.2f} dB (luma {metrics['psnr_luma_heldout']:.2f} dB), "
              f"SSIM {metrics['ssim_heldout']:.4f}, derivative PSNR {metrics['psnr_der_heldout']:.2f} dB; "
              f"{result.steps} steps in {result.wall_time_s:.1f} s")
    run.print(f"results: {run.path.resolve()}")
    run.close()
    return metrics


if __name__ == "__main__":
    run_entry_point(main)
