"""Poisson image editing with coordinate networks (SIREN's image-editing experiments): a gradient
composite of two images (three runs: f1 and f2 on values, the composite on gradients) or seamless
cloning of a source region into a target (one run).

    sobolev-inr image_editing --config configs/composite_astronaut_coffee.txt
    cd Experiments/image_editing && python main.py --config configs/clone_astronaut_coffee.txt

The task objects, the runs and their figures: :mod:`.task`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ...config import cli
from ...config.options import EngineOptions, FinalEvalOptions, MemoryOptions, options_from_config
from ...errors import ConfigError
from .. import register_task
from ..entry import TaskEntry, task_module_attributes

EDITS = ("composite", "clone")
MASK_SHAPES = ("ellipse", "rectangle")


def check_mask_geometry(shape: str, centre: Sequence[float], radii: Sequence[float],
                        source_centre: Optional[Sequence[float]] = None) -> None:
    """ConfigError unless the mask (``centre`` and ``radii`` in [-1, 1] coordinates, (x, y)) lies in the
    image, where it is placed in the target and where it is taken from in the source."""
    if shape not in MASK_SHAPES:
        raise ConfigError(f"unknown mask_shape {shape!r}; choose from {list(MASK_SHAPES)}")
    if min(radii) <= 0:
        raise ConfigError(f"mask_radii must be > 0, got {list(radii)}")
    for key, (cx, cy) in (("mask_centre", centre), ("source_centre", source_centre or centre)):
        for axis, c, r in (("x", cx, radii[0]), ("y", cy, radii[1])):
            if c - r < -1.0 or c + r > 1.0:
                raise ConfigError(f"the mask at {key} = [{cx}, {cy}] with mask_radii = [{radii[0]}, {radii[1]}] "
                                  f"spans {axis} from {c - r:.3g} to {c + r:.3g}, outside the image's [-1, 1]; move "
                                  f"it or shrink the radii")


@dataclass(frozen=True)
class EditOptions:
    """An edit: which (``composite`` or ``clone``), its two images (``filename``: image 1 or the target,
    ``filename2``: image 2 or the source) at one ``sidelength``, the composite's ``alpha`` (weight of image
    1's gradient), the clone's mask (shape, centre and radii in [-1, 1] coordinates (x, y)), where in the
    source it is taken from, its gradient weight and operator; the engine, samples per step and per render
    call, the ``memory`` a training step may hold (row blocks), what the end of each run scores
    (``final_eval``), and where the runs go. Checked once, before anything is loaded or written."""

    edit: str = "composite"
    filename: str = "skimage:astronaut"
    filename2: str = "skimage:coffee"
    data_root: str = "../../data"
    dataset: str = "Set5"
    sidelength: int = 128
    is_gray: bool = False
    alpha: float = 0.5
    mask_shape: str = "ellipse"
    mask_centre: Sequence[float] = (0.0, 0.0)
    mask_radii: Sequence[float] = (0.3, 0.3)
    source_centre: Optional[Sequence[float]] = None
    lambda_der: float = 1.0
    der_operator: str = "sobel"
    engine: EngineOptions = EngineOptions()
    batch_size: int = 0
    eval_chunk_size: int = 65536
    memory: MemoryOptions = MemoryOptions()
    final_eval: FinalEvalOptions = FinalEvalOptions()
    logging_root: str = "./logs"
    exp_name: str = "default"

    def __post_init__(self):
        if self.edit not in EDITS:
            raise ConfigError(f"unknown edit {self.edit!r}; choose from {list(EDITS)}")
        if self.sidelength < 0 or self.sidelength == 1:
            raise ConfigError(f"sidelength must be 0 (keep the images' size) or >= 2, got {self.sidelength}")
        if self.edit == "composite" and not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.edit == "clone":
            check_mask_geometry(self.mask_shape, self.mask_centre, self.mask_radii, self.source_centre)

    from_config = classmethod(options_from_config)


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

        p.declare(check=lambda a: EditOptions.from_config(vars(a)))

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
                              args.resume, args.overwrite, progress_bars=not args.no_progress)


register_task(ImageEditingEntry)
__getattr__ = task_module_attributes(__name__)
