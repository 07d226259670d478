"""Image regression with Sobolev training.

    cd Experiments/image_regression
    python main.py --config configs/baby/val_der/sine.txt            # Set5 (link data/ first)
    python main.py --config configs/camera/val_der/sine.txt --num_epochs 300   # embedded default

Results: <logging_root>/<exp_name>/ (metrics.json, figures, checkpoints, TensorBoard events).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

from sobolev_inr.cli import base_parser, build_model, parse_args, resolve_device, run_entry_point  # noqa: E402
from sobolev_inr.data.images import load_image, prepare_image  # noqa: E402
from sobolev_inr.experiment import describe_model, open_run, train_and_report  # noqa: E402
from sobolev_inr.models import nyquist_num_frequencies  # noqa: E402
from sobolev_inr.tasks.image_regression import ImageRegression  # noqa: E402
from sobolev_inr.training import seed_everything  # noqa: E402


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

    run = open_run(args)
    if run.mode == "skip":
        return run.read_metrics()
    seed_everything(args.seed, args.deterministic)
    model = build_model(args, in_features=2, out_features=data.channels,
                        num_frequencies=nyquist_num_frequencies(min(data.train_shape))).to(device)
    task = ImageRegression(data, args.supervision, args.lambda_der, args.der_units, args.der_mode,
                           args.batch_size, args.eval_chunk_size, device,
                           der_engine=args.der_engine, der_recompute=args.der_recompute)
    h, w = data.shape
    run.print(f"image: {source}, {h}x{w}x{data.channels}; training on {len(data.train_index)} pixels "
              f"({data.train_shape[0]}x{data.train_shape[1]}), {int(data.heldout.sum())} held out")
    describe_model(model, args, device, run)
    metrics = train_and_report("image_regression", args, model, task, run, device,
                               extra_metrics={"image": source, "image_shape": [h, w, data.channels],
                                              "factor": data.factor},
                               summary=("psnr_heldout", "psnr_luma_heldout", "ssim_heldout", "psnr_der_heldout"))
    return metrics


if __name__ == "__main__":
    run_entry_point(main)
