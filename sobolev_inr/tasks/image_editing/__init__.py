"""Poisson image editing with coordinate networks (SIREN's image-editing experiments): a gradient
composite of two images (three runs: f1 and f2 on values, the composite on gradients) or seamless
cloning of a source region into a target (one run).

    sobolev-inr image_editing --config configs/composite_astronaut_coffee.txt
    cd Experiments/image_editing && python main.py --config configs/clone_astronaut_coffee.txt

The task objects, the runs and their figures: :mod:`.task`.
"""
from __future__ import annotations

from ...config import cli
from .. import register_task
from ..entry import TaskEntry, task_module_attributes

EDITS = ("composite", "clone")  # the task module's EDITS (named here so --help imports no torch)
MASK_SHAPES = ("ellipse", "rectangle")


class ImageEditingEntry(TaskEntry):
    name = "image_editing"
    description = ("Poisson image editing with coordinate networks: a gradient composite of two images, or "
                   "seamless cloning of a source region into a target.")

    def add_options(self, p: cli.ArgumentParser) -> None:
        # A CPU budget: each value fit, the composite and the clone train this many full-batch steps.
        cli.add_mlp_task_options(p, num_epochs=200, lrate=1e-4, supervisions=None)  # the edit fixes what is fitted
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
        cli.add_eval_chunk_option(p, g, "pixels per chunk when rendering the full grid")
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
            from .task import check_edit_config

            check_edit_config(vars(a))

        p.declare(check=check)

    def train(self, args, parser, callbacks=()):
        """An edit is several runs (the composite's f1, f2 and composite), each opened, skipped or resumed
        on its own: :func:`.task.run_image_edit` does what :meth:`TaskEntry.train` does for one."""
        from ...models import nyquist_num_frequencies
        from ...training.loop import seed_everything
        from .task import run_image_edit

        def make_model(channels, sidelength):
            seed_everything(args.seed, args.deterministic)
            return cli.build_model(args, in_features=2, out_features=channels,
                                   num_frequencies=nyquist_num_frequencies(sidelength))

        return run_image_edit(cli.run_metadata(args), parser.identity, make_model,
                              lambda resume: cli.epoch_fit_config(args, resume), cli.resolve_device(args.device),
                              args.resume, args.overwrite)


register_task(ImageEditingEntry)
__getattr__ = task_module_attributes(__name__)
