"""Inverse rendering (Sobolev-INR paper, section 4.3): NeRF (one coarse TinyNeRF, nerf-pytorch's
vocabulary) on a forward-facing LLFF scene with value and/or derivative supervision of the rendered
colours; ``eval`` scores the test views as the original eval.py did.

    sobolev-inr inverse_rendering --config configs/fern/val_der/relu.txt
    sobolev-inr inverse_rendering eval --config configs/fern/val_der/relu.txt
    cd Experiments/inverse_rendering && python train.py --config configs/synthetic/val_der/relu.txt

The original experiment's configs run unchanged; every default is the original train.py's. The task
object, rendering and scoring: :mod:`.task`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ...config import cli
from ...config.options import EngineOptions, SupervisionOptions, options_from_config
from ...errors import ConfigError
from .. import register_task
from ..entry import TaskEntry, Training, task_module_attributes


@dataclass(frozen=True)
class SceneOptions:
    """The LLFF scene (a folder with ``poses_bounds.npy`` and ``images_<llff_factor>/``, or ``synthetic``),
    every ``llffhold``-th view held out, 360-degree poses spherified, a missing ``images_<k>/`` made on
    request."""

    datadir: str = "../../data/nerf_llff_data/fern"
    llff_factor: int = 4
    llffhold: int = 8
    spherify: bool = False
    llff_make_images: bool = False

    from_config = classmethod(options_from_config)


@dataclass(frozen=True)
class RayOptions:
    """How rays are sampled and rendered, in nerf-pytorch's keys (the task turns them into
    :class:`~sobolev_inr.tasks.inverse_rendering.task.RenderOptions` with the scene's depth range)."""

    N_samples: int = 128
    perturb: float = 1.0
    raw_noise_std: float = 1.0
    no_ndc: bool = False
    lindisp: bool = False
    white_bkgd: bool = False
    chunk: int = 1024 * 32
    netchunk: int = 1024 * 64

    from_config = classmethod(options_from_config)


@dataclass(frozen=True)
class NeRFOptions:
    """TinyNeRF: one activation per layer, ``netwidth`` channels, ``multires`` encoding frequencies
    (``i_embed`` -1: none; 1: the multiresolution grid encoding of the ``grid_*`` settings), the sine/SPDER
    ``w0`` and ``spder_eps``, the weight init, 2^k pi frequencies (``pe_pi_factor``), torch.compile."""

    activations: Sequence[str] = ("sine",) * 8
    netwidth: int = 256
    multires: int = 10
    i_embed: int = 0
    w0: float = 1.0
    init: str = "torch_default"
    pe_pi_factor: bool = False
    spder_eps: float = 1e-4
    act_scale: float = 0.0
    compile: bool = False
    grid_levels: int = 16
    grid_features: int = 2
    grid_table_size: int = 2 ** 19
    grid_base_resolution: int = 16
    grid_finest_resolution: int = 512
    grid_interpolation: str = "smoothstep"

    from_config = classmethod(options_from_config)

    def grid(self):
        """The grid encoding's settings (keys without ``grid_``) with ``i_embed = 1``, else None."""
        return cli.grid_settings(vars(self)) if self.i_embed == 1 else None


@dataclass(frozen=True)
class InverseRenderingOptions:
    """A run's scene, rays, network, supervision and engine; every ``factor``-th pixel of each training view,
    ``N_rand`` rays per step (trained ``block_size`` at a time, gradients accumulated; 0: all at once), the
    derivative loss logged under val supervision (``show_der_loss``), and ``eval_rays`` held-out pixels scored
    at every summary."""

    scene: SceneOptions = SceneOptions()
    rays: RayOptions = RayOptions()
    model: NeRFOptions = NeRFOptions()
    supervision: SupervisionOptions = SupervisionOptions()
    engine: EngineOptions = EngineOptions()
    factor: int = 4
    N_rand: int = 1024
    block_size: int = 0
    show_der_loss: bool = False
    eval_rays: int = 4096

    from_config = classmethod(options_from_config)


class InverseRenderingEntry(TaskEntry):
    name = "inverse_rendering"
    description = ("Train a NeRF (TinyNeRF: one coarse network) on a forward-facing scene with value and/or "
                   "derivative supervision (the Sobolev-INR paper's inverse rendering).")
    commands = ("train", "eval")

    def add_options(self, p: cli.ArgumentParser) -> None:
        cli.add_run_options(p)
        cli.add_optimizer_options(p, lrate=5e-4, lrate_decay=250)
        g = p.add_argument_group("iterations (nerf-pytorch's vocabulary)")
        g.add_argument("--N_iters", type=int, default=400000, help="optimisation steps")
        g.add_argument("--N_rand", type=int, default=1024, help="rays per step (random over all training views)")
        g.add_argument("--i_print", type=int, default=100, help="steps between logged scalars and held-out pixel PSNR")
        g.add_argument("--i_img", type=int, default=500,
                       help="steps between quick looks: a test view at 1/4 resolution into progress.png")
        g.add_argument("--i_weights", type=int, default=10000, help="steps between checkpoints")
        g.add_argument("--i_testset", type=int, default=50000, help="steps between test-view renders (testset_<iter>/)")
        g.add_argument("--i_video", type=int, default=400000,
                       help="steps between spiral videos (spiral_<iter>_rgb.mp4, .gif without ffmpeg)")
        g.add_argument("--chunk", type=int, default=1024 * 32,
                       help="rays rendered at a time for whole views (memory: test renders, videos, the final "
                            "evaluation; a quarter of it for derivative renders); results do not depend on it")
        g.add_argument("--netchunk", type=int, default=1024 * 64,
                       help="points per network call when rendering (memory); results do not depend on it")
        g.add_argument("--block_size", type=int, default=0,
                       help="rays per forward/backward block of a training step (memory: gradients of the N_rand "
                            "rays accumulated over blocks, the same step up to float rounding); 0 = all at once")
        g.add_argument("--eval_rays", type=int, default=4096,
                       help="held-out pixels (fixed, random over the test views) scored at every i_print; 0 = none")

        g = p.add_argument_group("model (TinyNeRF)")
        cli.add_activation_options(g, ["sine"] * 8, w0=1.0, init="torch_default")
        g.add_argument("--netdepth", type=int, default=8, help="activated layers (must match activations)")
        g.add_argument("--netwidth", "--hidden_features", dest="netwidth", type=int, default=256,
                       help="channels per layer")
        g.add_argument("--multires", type=int, default=10, help="positional-encoding frequencies L of the 3-D point")
        g.add_argument("--i_embed", type=int, default=0, choices=(0, -1, 1),
                       help="0 = positional encoding, -1 = none, 1 = multiresolution grid encoding (the grid_* "
                            "options; points in [-1, 1]^3, NDC: others are clamped to the cube)")
        cli.add_grid_options(g, "i_embed 1")
        g.add_argument("--pe_pi_factor", type=cli._bool, default=False,
                       help="encoding frequencies 2^k pi (SIREN's) instead of nerf-pytorch's 2^k (false: the original)")
        g.add_argument("--use_viewdirs", action="store_true",
                       help="(nerf-pytorch) view directions: not in this experiment")
        g.add_argument("--multires_views", type=int, default=4, help="(nerf-pytorch) with use_viewdirs only")
        g.add_argument("--N_importance", type=int, default=0, help="(nerf-pytorch) fine samples: 0, one coarse network")
        g.add_argument("--compile", action="store_true", help="torch.compile the network's value pass")

        g = p.add_argument_group("rendering")
        g.add_argument("--N_samples", type=int, default=128, help="samples per ray")
        g.add_argument("--perturb", type=float, default=1.0, help="1 = stratified samples in training, 0 = fixed")
        g.add_argument("--raw_noise_std", type=float, default=1.0, help="std of the noise on density in training")
        g.add_argument("--no_ndc", action="store_true",
                       help="sample world depths between the scene bounds instead of NDC (non-forward-facing scenes)")
        g.add_argument("--lindisp", action="store_true", help="sample linearly in disparity (with no_ndc)")
        g.add_argument("--white_bkgd", action="store_true", help="composite over a white background")
        g.add_argument("--render_factor", type=float, default=0,
                       help="videos and render_only at 1/render_factor of the training resolution (0 = full)")
        g.add_argument("--render_only", action="store_true",
                       help="render the spiral path (or the test views with render_test) from the latest checkpoint")
        g.add_argument("--render_test", action="store_true", help="with render_only: the test views")

        g = p.add_argument_group("data (LLFF)")
        g.add_argument("--datadir", type=str, default="../../data/nerf_llff_data/fern",
                       help="an LLFF scene folder (poses_bounds.npy, images_<k>/), or 'synthetic' (embedded, generated "
                            "into <basedir>/<expname>/data/)")
        g.add_argument("--llff_factor", type=int, default=4,
                       help="LLFF downsample of the images: images_<llff_factor>/")
        g.add_argument("--factor", type=int, default=4,
                       help="training pixel stride: every factor-th pixel of each training view (the original "
                            "train.py's "
                            "name; not the LLFF downsample, see llff_factor)")
        g.add_argument("--llffhold", type=int, default=8, help="every llffhold-th view is a test view")
        g.add_argument("--spherify", action="store_true", help="(360-degree scenes) spherify the poses")
        g.add_argument("--llff_make_images", action="store_true",
                       help="create a missing images_<llff_factor>/ by resizing images/ (never done silently)")

        g = p.add_argument_group("evaluation (eval.py; train.py accepts them so one config serves both)")
        g.add_argument("--eval_llff_factor", type=int, default=0,
                       help="also render and score the test views at this LLFF downsample (e.g. 1 for the full "
                            "images); "
                            "0 = only the training resolution")
        g.add_argument("--align_pixels", type=cli._bool, default=True,
                       help="at another resolution, shift the pixel grid so each rendered pixel looks at the area it "
                            "covers (false: the original convention, pixel (x, y) through position (x, y))")
        g.add_argument("--rerender", action="store_true", help="render the test views again even where renders exist")

        cli.add_supervision_options(p, supervisions=("val", "val_der", "der"), units=False, estimator=False)
        p.add_argument("--show_der_loss", action="store_true",
                       help="with supervision = val: log the derivative loss too")
        cli.add_engine_options(p, modes=False)

        def check(a):
            cli._at_least(a, 1, ["N_iters", "N_rand", "i_print", "i_img", "i_weights", "i_testset", "i_video", "chunk",
                                 "netchunk", "netdepth", "netwidth", "multires", "factor", "llff_factor"])
            cli._at_least(a, 0, ["eval_rays", "block_size"])
            cli._at_least(a, 2, ["N_samples"])
            a.activations = cli.expand_activation_list(a.activations, a.netdepth, "netdepth")
            cli.check_grid(cli.grid_settings(a))
            if a.N_importance:
                raise ConfigError(f"N_importance = {a.N_importance}: this experiment trains one coarse network (the "
                                  f"original's TinyNeRF); set N_importance = 0")
            if a.use_viewdirs:
                raise ConfigError("use_viewdirs: TinyNeRF takes the 3-D point only (no view directions), as the "
                                  "original")
            if a.lindisp and not a.no_ndc:
                raise ConfigError("lindisp needs no_ndc: in NDC, samples linear in t are already linear in disparity")
            if a.render_factor < 0:
                raise ConfigError(f"render_factor must be >= 0 (0 = full resolution), got {a.render_factor}")

        p.declare(ignored=["i_print", "i_img", "i_weights", "i_testset", "i_video", "chunk", "netchunk", "block_size",
                           "eval_rays", "render_factor", "render_only", "render_test", "llff_make_images",
                           "show_der_loss", "compile", "eval_llff_factor", "align_pixels", "rerender"],
                  resumable=["N_iters"], check=check)

    def eval_parser(self) -> cli.ArgumentParser:
        """One vocabulary: a config runs with both train and eval (its evaluation options included)."""
        return self.train_parser()

    def load(self, args, metadata, device):
        from .task import load_task

        if args.datadir == "synthetic":
            return None  # generated into the run directory, once it is open
        return load_task(InverseRenderingOptions.from_config(metadata), device, Path(args.logging_root) / args.exp_name)

    def build(self, args, metadata, task, device, run) -> Training:
        from ...training.loop import Periodic
        from .task import build_model, load_task

        options = InverseRenderingOptions.from_config(metadata)
        task = task or load_task(options, device, run.path)
        notes = task.describe()
        model = build_model(options.model).to(device)
        render_factor = args.render_factor or 1.0
        periodic = [
            Periodic(args.i_img, lambda m, step: task.write_progress(m, run.file("progress.png"), step), "progress"),
            Periodic(args.i_testset, lambda m, step: task.write_testset(m, run.file(f"testset_{step:06d}")),
                     "testset"),
            Periodic(args.i_video, lambda m, step: task.write_video(m, run.path, f"spiral_{step:06d}_",
                                                                     render_factor), "video"),
        ]
        # psnr_heldout_rays: the last summary's, what a run with skip_final_eval reports
        return Training(model, task, notes, summary=("psnr_heldout", "ssim_heldout", "psnr_der_heldout",
                                                     "psnr_heldout_rays"),
                        extra_metrics=task.record(), periodic=periodic)

    def fit_config(self, args, resume):
        return cli.fit_config(args, resume, summary_every=args.i_print, checkpoint_every=args.i_weights,
                              num_steps=args.N_iters)

    def train(self, args, parser, callbacks=()):
        if args.render_only:
            from .task import render_only

            return render_only(Path(args.logging_root) / args.exp_name, cli.resolve_device(args.device),
                               test_views=args.render_test, render_factor=args.render_factor or 1.0,
                               progress=_progress(args))
        return super().train(args, parser, callbacks)

    def eval(self, args, parser):
        from .task import evaluate_run

        return evaluate_run(Path(args.logging_root) / args.exp_name, cli.resolve_device(args.device),
                            args.eval_llff_factor, args.align_pixels, args.rerender, progress=_progress(args))


def _progress(args):
    """eval and render_only run outside a run directory: bars unless ``--no_progress``, phase lines printed."""
    from ...training.progress import Progress

    return Progress(bars=not args.no_progress, log=print)


register_task(InverseRenderingEntry)
__getattr__ = task_module_attributes(__name__)
