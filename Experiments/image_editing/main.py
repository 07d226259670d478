"""Poisson image editing with SIREN (SIREN's image-editing experiments): a gradient composite or seamless cloning.

    cd Experiments/image_editing
    python main.py --config configs/composite_astronaut_coffee.txt   # f1, f2 on values, a third net on gradients
    python main.py --config configs/clone_astronaut_coffee.txt       # the astronaut's face into the coffee

Results: <logging_root>/<exp_name>/ (composite: its f1/, f2/ and composite/ runs, composite.png in
composite/; clone: one run with cloning.png), each with metrics.json, checkpoints and TensorBoard events.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

from sobolev_inr import cli  # noqa: E402

EDITS = ("composite", "clone")  # sobolev_inr.tasks.image_editing.EDITS (kept here so --help imports no torch)
MASK_SHAPES = ("ellipse", "rectangle")


def config_parser():
    p = cli.make_parser("Poisson image editing with coordinate networks: a gradient composite of two images, "
                        "or seamless cloning of a source region into a target.")
    cli.add_run_options(p)
    # A CPU budget: each value fit, the composite and the clone train this many full-batch steps.
    cli.add_epoch_options(p, num_epochs=200)
    cli.add_optimizer_options(p, lrate=1e-4)
    cli.add_model_options(p)
    cli.add_engine_options(p)
    g = p.add_argument_group("images")
    g.add_argument("--edit", type=str, default="composite", choices=EDITS,
                   help="composite: fit a net to alpha grad f1 + (1 - alpha) grad f2; clone: source gradients "
                        "inside the mask, target values and gradients outside")
    g.add_argument("--filename", type=str, default="skimage:astronaut",
                   help="image 1 (composite) / the target (clone): skimage:<name> (embedded), a PNG/JPEG path, "
                        "or a Set5 name")
    g.add_argument("--filename2", type=str, default="skimage:coffee",
                   help="image 2 (composite) / the source (clone), as filename")
    g.add_argument("--data_root", type=str, default="../../data", help="root of the data sets (Set5 names)")
    g.add_argument("--dataset", type=str, default="Set5", help="folder under data_root holding HR/<filename>.png")
    g.add_argument("--sidelength", type=int, default=128,
                   help="centre-crop both images to a square and resize to sidelength x sidelength (0 = keep "
                        "their size, which must then agree)")
    g.add_argument("--is_gray", action="store_true", help="convert both images to luma (one channel)")
    g.add_argument("--eval_chunk_size", type=int, default=65536, help="pixels per chunk when rendering the full grid")
    g = p.add_argument_group("gradient composite")
    g.add_argument("--alpha", type=float, default=0.5, help="weight of f1's gradient, in [0, 1]")
    g = p.add_argument_group("seamless cloning (coordinates (x, y) = (column, row), each in [-1, 1])")
    g.add_argument("--mask_shape", type=str, default="ellipse", choices=MASK_SHAPES,
                   help="the region of the target that receives the source")
    g.add_argument("--mask_centre", type=float, nargs=2, default=[0.0, 0.0], metavar=("X", "Y"),
                   help="centre of the mask in the target")
    g.add_argument("--mask_radii", type=float, nargs=2, default=[0.3, 0.3], metavar=("RX", "RY"),
                   help="half-width and half-height of the mask")
    g.add_argument("--source_centre", type=float, nargs=2, default=None, metavar=("X", "Y"),
                   help="where in the source the cloned region is centred (default: mask_centre, no offset)")
    g.add_argument("--lambda_der", type=float, default=1.0,
                   help="weight of the gradient term (per pixel step) against the value term outside the mask")
    g.add_argument("--der_operator", type=str, default="sobel", choices=cli.OPERATOR_NAMES,
                   help="finite-difference operator of the image gradients (kornia's normalised sobel or diff)")

    def check(a):
        from sobolev_inr.tasks.image_editing import check_edit_config

        cli._at_least(a, 1, ["eval_chunk_size"])
        check_edit_config(vars(a))

    p.declare(ignored=["eval_chunk_size"], check=check)
    return p


def main(argv=None):
    parser = config_parser()
    args = cli.parse_args(parser, argv)
    device = cli.resolve_device(args.device)
    metadata = cli.run_metadata(args)

    from sobolev_inr.models import nyquist_num_frequencies
    from sobolev_inr.tasks.image_editing import run_image_edit
    from sobolev_inr.training import seed_everything

    def make_model(channels, sidelength):
        seed_everything(args.seed, args.deterministic)
        return cli.build_model(args, in_features=2, out_features=channels,
                               num_frequencies=nyquist_num_frequencies(sidelength))

    return run_image_edit(metadata, parser.identity, make_model, lambda resume: cli.epoch_fit_config(args, resume),
                          device, args.resume, args.overwrite)


if __name__ == "__main__":
    cli.run_entry_point(main)
