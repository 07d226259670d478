"""Command-line and txt-config options (ConfigArgParse), composed per task; device choice; error handling.

A task's entry (:meth:`sobolev_inr.tasks.entry.TaskEntry.add_options`) builds its parser from the
option groups it needs (:func:`add_run_options` with :func:`add_final_eval_options`,
:func:`add_epoch_options` with :func:`add_memory_options`, :func:`add_optimizer_options`,
:func:`add_model_options`, :func:`add_supervision_options`, :func:`add_engine_options`, or all of them
at once: :func:`add_mlp_task_options`) and adds its own. Each group declares
beside its options which of them never make another run (where and how a run goes: device,
logging, the derivative engine) and which may change when a run is resumed (its length), and the
checks argparse cannot make; the parser collects them (:attr:`ArgumentParser.identity`), so a task
that brings its own vocabulary declares its roles in the same place. Option names follow the
original Sobolev-INR code, so its config files run unchanged, with aliases for nerf-pytorch's
vocabulary (``expname``, ``basedir``, ``netwidth``). Unknown keys and bad choices are rejected by
ConfigArgParse with a message naming the key (its default behaviour, kept on purpose).

Only a task's entry reads arguments: :func:`epoch_fit_config` and :func:`run_metadata` turn them into
plain values, and the typed options of :mod:`sobolev_inr.config.options` are built from those.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import configargparse

from ..errors import ConfigError, TrainingError, UserError
from .options import (DER_ESTIMATOR_NAMES, DER_MODE_NAMES, DER_UNIT_NAMES, ENGINE_NAMES, OPERATOR_NAMES,
                      SUPERVISION_NAMES, FinalEvalOptions, ImageSource, MemoryOptions, SupervisionOptions)

NOT_SAVED = {"config", "resume", "overwrite", "debug"}
"""Options that say what to do with a run directory, not what the run is; kept out of the saved config."""

# Choices, kept here as plain names so that building a parser (and --help) imports no torch; the tests
# check that they equal the registries they name (tests/test_cli.py).
ACTIVATION_NAMES = ("elu", "finer", "gauss", "hosc", "relu", "selu", "sigmoid", "sinc", "sine", "softplus", "spder",
                    "spder_arctan", "spder_log", "spder_sqrt", "spder_sqrt_relu", "tanh", "wire")
INIT_NAMES = ("activation", "torch_default", "he")


def _bool(text: str) -> bool:
    """A txt-config boolean for options that default to True (``pe_pi_factor = false``)."""
    value = str(text).strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _positive_float(text: str) -> float:
    """A float > 0 (``spder_eps``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    """A float >= 0 (``act_scale``: 0 = the default)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = the default), got {text}")
    return value


class ArgumentParser(configargparse.ArgumentParser):
    """ConfigArgParse's parser, with its errors as one line (no usage banner) naming the config file,
    and the run-identity roles and checks its option groups declare (:meth:`declare`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.ignored_keys: set = set()
        self.resumable_keys: set = set()
        self.checks: List[Callable[[argparse.Namespace], None]] = []

    def declare(self, ignored: Iterable[str] = (), resumable: Iterable[str] = (),
                check: Optional[Callable[[argparse.Namespace], None]] = None) -> None:
        """Registers keys that never make another run, keys that may change on resume, and a check of
        the parsed options (raising :class:`ConfigError`)."""
        self.ignored_keys.update(ignored)
        self.resumable_keys.update(resumable)
        if check is not None:
            self.checks.append(check)

    @property
    def identity(self):
        """The :class:`~sobolev_inr.training.runs.RunIdentity` of runs configured by this parser."""
        from ..training.runs import RunIdentity

        return RunIdentity(ignored=frozenset(self.ignored_keys), resumable=frozenset(self.resumable_keys),
                           defaults={a.dest: a.default for a in self._actions if a.dest not in NOT_SAVED})

    def error(self, message: str):
        config = getattr(self, "_config_in_use", None)
        where = f" (config: {config})" if config else ""
        self.exit(2, f"error: {message}{where}; `--help` lists the options\n")

    def parse_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        self._config_in_use = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)
        return super().parse_args(argv, namespace)


def make_parser(description: str) -> ArgumentParser:
    """An empty parser with ``--config``; add the option groups the task needs."""
    p = ArgumentParser(description=description)
    p.add_argument("--config", is_config_file=True, help="txt config file (key = value per line)")
    return p


def _at_least(args: argparse.Namespace, minimum: int, keys: Sequence[str]) -> None:
    for key in keys:
        if getattr(args, key) < minimum:
            raise ConfigError(f"{key} must be >= {minimum}, got {getattr(args, key)}")


# ----------------------------------------------------------------------------------------- groups
def add_run_options(p: ArgumentParser) -> None:
    """Run directory, logging, device, seed, what to do with a bad step: every task has these."""
    g = p.add_argument_group("run and logging")
    g.add_argument("--exp_name", "--expname", dest="exp_name", type=str, default=None,
                   help="run name; results go to <logging_root>/<exp_name>/ (default: the config's path "
                        "below configs/, without .txt)")
    g.add_argument("--logging_root", "--basedir", dest="logging_root", type=str, default="./logs",
                   help="where run directories are made")
    g.add_argument("--keep_checkpoints", type=int, default=3, help="newest checkpoints kept (0 = all)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in <logging_root>/<exp_name> from its latest checkpoint (its settings must "
                        "match, but for the run's length and options that do not change the result)")
    g.add_argument("--overwrite", action="store_true", help="delete an existing run directory of the same name first")
    g.add_argument("--no_progress", action="store_true", help="no progress bar (logs only)")
    g.add_argument("--debug", action="store_true", help="show tracebacks for config and data errors")
    g.add_argument("--device", type=str, default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto = CUDA when present, else CPU")
    g.add_argument("--seed", type=int, default=0, help="seed of every RNG (init, batches, noise)")
    g.add_argument("--deterministic", action="store_true", help="ask torch for deterministic algorithms")
    g.add_argument("--nan_policy", type=str, default="stop", choices=("stop", "skip"),
                   help="a step with a non-finite loss or gradient: stop the run (exit 3, the last good checkpoint "
                        "kept) or skip that step")
    g.add_argument("--max_skipped_steps", type=int, default=10,
                   help="nan_policy = skip: this many skipped steps in a row stop the run")
    p.declare(ignored=["exp_name", "logging_root", "keep_checkpoints", "no_progress", "device", "nan_policy",
                       "max_skipped_steps"],
              check=lambda a: (_at_least(a, 0, ["keep_checkpoints"]), _at_least(a, 1, ["max_skipped_steps"])))
    add_final_eval_options(p)


def add_final_eval_options(p: ArgumentParser) -> None:
    """What the end of a run scores and writes (:class:`~sobolev_inr.config.options.FinalEvalOptions`); part of
    :func:`add_run_options`. They may change on ``--resume``, so a finished run can be scored again."""
    g = p.add_argument_group("final evaluation")
    g.add_argument("--final_eval_stride", type=int, default=1,
                   help="score the final model on every k-th sample along each axis (pixels, audio samples, rays of "
                        "the test views, the marching-cubes grid): a big input scored in a fraction of the time; "
                        "1 = all (the papers' protocol); recorded in metrics.json")
    g.add_argument("--skip_final_eval", action="store_true",
                   help="no final evaluation or outputs: metrics.json holds the last summary's evaluation (smoke "
                        "runs; eval.py scores the run later where the task has it)")
    g.add_argument("--no_figures", action="store_true",
                   help="metrics.json only: no figures, renders or videos of the final model")
    p.declare(ignored=["no_figures"], resumable=["final_eval_stride", "skip_final_eval"],
              check=lambda a: FinalEvalOptions.from_config(vars(a)))


def add_memory_options(p: ArgumentParser) -> None:
    """How much memory a training step may hold (:class:`~sobolev_inr.config.options.MemoryOptions`): a bigger
    batch is trained in blocks of rows with their gradients accumulated, the same step in less memory; so none
    of these changes what a run computes (but for float rounding)."""
    g = p.add_argument_group("memory")
    g.add_argument("--max_memory_gb", type=float, default=MemoryOptions.max_memory_gb,
                   help="GB a training step may hold for its backward pass (measured on a probe block); a bigger "
                        "batch is cut into blocks, gradients accumulated; 0 = no limit")
    g.add_argument("--block_size", type=int, default=0,
                   help="samples per forward/backward block (overrides max_memory_gb); 0 = from max_memory_gb")
    p.declare(ignored=["max_memory_gb", "block_size"], check=lambda a: MemoryOptions.from_config(vars(a)))


def add_epoch_options(p: ArgumentParser, num_epochs: int) -> None:
    """Length and cadence of a run counted in epochs (full passes over the training samples)."""
    g = p.add_argument_group("epochs")
    g.add_argument("--num_epochs", type=int, default=num_epochs, help="epochs (full passes over the training samples)")
    g.add_argument("--batch_size", type=int, default=0, help="training samples per step; 0 = full batch")
    g.add_argument("--epochs_til_summary", type=int, default=100, help="epochs between evaluations and log flushes")
    g.add_argument("--epochs_til_ckpt", type=int, default=1000, help="epochs between checkpoints")
    p.declare(ignored=["epochs_til_summary", "epochs_til_ckpt"], resumable=["num_epochs"],
              check=lambda a: (_at_least(a, 1, ["num_epochs", "epochs_til_summary", "epochs_til_ckpt"]),
                               _at_least(a, 0, ["batch_size"])))
    add_memory_options(p)


def add_optimizer_options(p: ArgumentParser, lrate: float, lrate_decay: int = 0) -> None:
    """Adam's learning rate and its decay, gradient clipping."""
    g = p.add_argument_group("optimiser")
    g.add_argument("--lrate", type=float, default=lrate, help="Adam learning rate")
    g.add_argument("--lrate_decay", type=float, default=lrate_decay,
                   help="exponential decay of the learning rate to 0.1x over this many thousand steps "
                        "(nerf-pytorch's); 0 = constant")
    g.add_argument("--clip_grad_norm", type=float, default=0.0, help="clip the gradient norm to this; 0 = off")

    def check(a):
        if a.lrate <= 0:
            raise ConfigError(f"lrate must be > 0, got {a.lrate}")
        if a.lrate_decay < 0 or a.clip_grad_norm < 0:
            raise ConfigError("lrate_decay and clip_grad_norm must be >= 0 (0 = off)")

    p.declare(check=check)


def add_activation_options(g, activations: Sequence[str], w0: float, init: str = "activation") -> None:
    """The per-layer activation list, w0 and the weight init (shared by every MLP-based model group)."""
    g.add_argument("--activations", nargs="+", default=list(activations), choices=ACTIVATION_NAMES, metavar="ACT",
                   help=f"one per activated layer, or one for all; choices: {', '.join(ACTIVATION_NAMES)}")
    g.add_argument("--w0", type=float, default=w0, help="sine/SPDER frequency w0: sin(w0 z)")
    g.add_argument("--spder_eps", type=_positive_float, default=1e-4,
                   help="SPDER: smoothing length of the sqrt, log and sqrt_relu dampings at w0 z = 0, e.g. "
                        "(x^2 + eps^2)^(1/4) for sqrt|x|")
    g.add_argument("--act_scale", type=_non_negative_float, default=0.0,
                   help="the scale of the activations that have one (Gauss and WIRE: the width s of exp(-(s z)^2); "
                        "HOSC: beta; FINER: the first layer's bias range k, U(-k, k)); 0 = the default of the "
                        "activation's paper")
    g.add_argument("--init", type=str, default=init, choices=INIT_NAMES,
                   help="weights: activation = the init of each activation (SIREN's for sine); torch_default = "
                        "nn.Linear's own (the original NeRF code); he = Kaiming normal")


def add_model_options(p: ArgumentParser) -> None:
    """A SIREN-style coordinate MLP: activations, width, depth, input encoding."""
    g = p.add_argument_group("model")
    add_activation_options(g, ["sine"] * 4, 30.0)
    g.add_argument("--hidden_features", "--netwidth", dest="hidden_features", type=int, default=256)
    g.add_argument("--num_hidden_layers", type=int, default=3,
                   help="activated layers minus one (the original code's count); must match activations")
    g.add_argument("--has_pos_encoding", action="store_true", help="NeRF positional encoding of the coordinates")
    g.add_argument("--num_frequencies", type=int, default=0,
                   help="positional-encoding frequencies L; 0 = SIREN's Nyquist rule from the training grid")
    g.add_argument("--pe_pi_factor", type=_bool, default=True,
                   help="positional-encoding frequencies 2^k pi (SIREN's) or, if false, 2^k (nerf-pytorch's)")
    g.add_argument("--has_fourier_feature", action="store_true", help="Gaussian Fourier features of the coordinates")
    g.add_argument("--has_grid_encoding", action="store_true",
                   help="a multiresolution grid encoding of the coordinates (Instant-NGP's: dense levels, then hashed "
                        "ones), with exact input derivatives")
    add_grid_options(g, "grid encoding")
    g.add_argument("--fourier_num_features", type=int, default=256)
    g.add_argument("--fourier_scale", type=float, default=10.0, help="std of the Fourier feature matrix B")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the model's value pass (val supervision, evaluation); slow to start")

    def check(a):
        _at_least(a, 1, ["hidden_features"])
        _at_least(a, 0, ["num_frequencies", "num_hidden_layers"])
        if sum((a.has_pos_encoding, a.has_fourier_feature, a.has_grid_encoding)) > 1:
            raise ConfigError("has_pos_encoding, has_fourier_feature and has_grid_encoding are exclusive; set one")
        check_grid(grid_settings(a))
        a.activations = expand_activation_list(a.activations, a.num_hidden_layers + 1, "num_hidden_layers + 1")

    p.declare(ignored=["compile"], check=check)


def add_mlp_task_options(p: ArgumentParser, num_epochs: int, lrate: float,
                         supervisions: Optional[Sequence[str]] = SUPERVISION_NAMES, default: str = "val_der") -> None:
    """The groups of a task that trains a coordinate MLP for ``num_epochs`` epochs at Adam rate ``lrate``
    (its paper's budget): run, epochs, optimiser, model, supervision (``supervisions``, None for a task with
    its own) and derivative engine."""
    add_run_options(p)
    add_epoch_options(p, num_epochs=num_epochs)
    add_optimizer_options(p, lrate=lrate)
    add_model_options(p)
    if supervisions is not None:
        add_supervision_options(p, supervisions=supervisions, default=default)
    add_engine_options(p)


def expand_activation_list(activations: Sequence[str], wanted: int, where: str) -> List[str]:
    """One name per activated layer: a single name is repeated ``wanted`` times; another length is an
    error naming ``where`` the count comes from (``num_hidden_layers + 1``, ``netdepth``)."""
    activations = list(activations)
    if len(activations) == 1:
        return activations * wanted
    if len(activations) != wanted:
        raise ConfigError(f"activations lists {len(activations)} layers but {where} = {wanted}; give one name per "
                          f"activated layer or a single name")
    return activations


def add_supervision_options(p: ArgumentParser, supervisions: Sequence[str] = SUPERVISION_NAMES,
                            default: str = "val_der", units: bool = True, estimator: bool = True) -> None:
    """What is supervised and how derivative targets are made; ``estimator``: offer the cheaper estimates of
    the Jacobian loss (``der_estimator``, ``der_directions``, ``der_fraction``), for tasks whose loss is
    :class:`~sobolev_inr.tasks.regression.SobolevRegression`'s."""
    g = p.add_argument_group("supervision")
    g.add_argument("--supervision", type=str, default=default, choices=list(supervisions),
                   help="val: values; val_der: values + lambda_der * derivatives; der: derivatives; lapl: Laplacian")
    g.add_argument("--lambda_der", type=float, default=1.0, help="weight of the derivative term in val_der")
    g.add_argument("--der_operator", type=str, default="sobel", choices=OPERATOR_NAMES,
                   help="finite-difference operator for the derivative targets (kornia's normalised sobel or diff)")
    if units:
        g.add_argument("--der_units", type=str, default="pixel", choices=DER_UNIT_NAMES,
                       help="pixel: derivatives per sample step (the paper's lambda_der); coord: per network-input unit")
    if not estimator:
        return
    g.add_argument("--der_estimator", type=str, default="exact", choices=DER_ESTIMATOR_NAMES,
                   help="exact: every Jacobian column; directional: der_directions random unit directions per sample "
                        "and step, D / K * |(J - G) v|^2, an unbiased estimate of the same loss from K forward tangents "
                        "instead of D (val_der, der)")
    g.add_argument("--der_directions", type=int, default=1, help="K, the directions per sample of der_estimator = "
                                                                 "directional")
    g.add_argument("--der_fraction", type=float, default=1.0,
                   help="supervise the derivatives of a random fraction of each batch's samples (drawn every step; "
                        "the values of all of them): the other samples cost a value pass only (val_der, der)")

    p.declare(check=lambda a: SupervisionOptions.from_config(vars(a)))


def add_image_source_options(p: ArgumentParser, filename: str = "skimage:camera"):
    """One image: its source, gray or colour, an optional square resize and crop. Returns the group, for the
    task's own image options (:class:`~sobolev_inr.config.options.ImageSource` holds these)."""
    g = p.add_argument_group("image")
    g.add_argument("--filename", type=str, default=filename,
                   help="Set5 name (baby), a PNG/JPEG path, or skimage:<name> (embedded, no download)")
    g.add_argument("--data_root", type=str, default="../../data", help="root of the data sets (original layout)")
    g.add_argument("--dataset", type=str, default="Set5", help="folder under data_root holding HR/<filename>.png")
    g.add_argument("--is_gray", action="store_true", help="convert to luma (one channel)")
    g.add_argument("--sidelength", type=int, default=0,
                   help="centre-crop to a square and resize to sidelength x sidelength (bilinear, as SIREN's and "
                        "SPDER's Resize); 0 = keep the image as it is")
    g.add_argument("--crop", action="store_true",
                   help="crop an image whose size is not a multiple of the task's factor (top-left part kept)")

    p.declare(check=lambda a: ImageSource.from_config(vars(a)))
    return g


def add_engine_options(p: ArgumentParser, modes: bool = True) -> None:
    """How exact input-derivatives are computed; none of these changes what a run computes. ``modes``:
    offer ``der_mode`` (a task whose derivatives are forward-mode tangents by nature has no choice)."""
    g = p.add_argument_group("derivative engine")
    if modes:
        g.add_argument("--der_mode", type=str, default="auto", choices=DER_MODE_NAMES,
                       help="forward or reverse mode; auto = forward when inputs <= outputs")
    g.add_argument("--der_engine", type=str, default="auto", choices=ENGINE_NAMES,
                   help="fused: hand-written passes for an MLP, the Laplacian's included (auto's choice); "
                        "autograd: plain autograd, e.g. to cross-check the fused engine")
    g.add_argument("--der_recompute", action="store_true",
                   help="forward mode, fused engine: recompute the tangents in the backward pass instead of "
                        "keeping them (less memory, a little more time; see bench/PERFORMANCE.md)")
    p.declare(ignored=["der_mode", "der_engine", "der_recompute"])


def add_eval_chunk_option(p: ArgumentParser, group, what: str) -> None:
    """``--eval_chunk_size``: samples per network call when rendering or scoring (memory, never the result)."""
    group.add_argument("--eval_chunk_size", type=int, default=65536, help=what)
    p.declare(ignored=["eval_chunk_size"], check=lambda a: _at_least(a, 1, ["eval_chunk_size"]))


# ------------------------------------------------------------------------------------ parsing, use
def parse_args(parser: ArgumentParser, argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parses, fills ``exp_name`` from the config path, and runs the groups' checks (ConfigError)."""
    args = parser.parse_args(argv)
    if args.exp_name is None:
        args.exp_name = default_exp_name(args.config)
    for check in parser.checks:
        check(args)
    return args


def default_exp_name(config_path: Optional[str]) -> str:
    """``configs/baby/val_der/sine.txt`` -> ``baby/val_der/sine``; no config -> ``default``."""
    if not config_path:
        return "default"
    parts = Path(config_path).with_suffix("").parts
    if "configs" in parts:
        parts = parts[len(parts) - parts[::-1].index("configs"):]
    return "/".join(parts[-3:])


def resolve_device(name: str):
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = cuda, but torch sees no CUDA device (use device = auto or cpu)")
    return torch.device(name)


def encoding_name(args: argparse.Namespace) -> str:
    if args.has_pos_encoding:
        return "positional"
    if args.has_fourier_feature:
        return "fourier"
    if getattr(args, "has_grid_encoding", False):
        return "grid"
    return "none"


GRID_INTERPOLATIONS = ("linear", "smoothstep")
GRID_KEYS = ("levels", "features", "table_size", "base_resolution", "finest_resolution", "interpolation")
"""The grid encoding's settings, config keys ``grid_<key>``."""


def add_grid_options(g, when: str) -> None:
    """The grid encoding's ``grid_*`` options (Instant-NGP's defaults) into group ``g``; ``when`` starts each help
    (the option that turns the encoding on)."""
    g.add_argument("--grid_levels", type=int, default=16, help=f"{when}: resolution levels")
    g.add_argument("--grid_features", type=int, default=2, help=f"{when}: features per level")
    g.add_argument("--grid_table_size", type=int, default=2 ** 19,
                   help=f"{when}: entries per hashed level (a power of two); a level with fewer vertices is dense")
    g.add_argument("--grid_base_resolution", type=int, default=16, help=f"{when}: cells per axis, coarsest level")
    g.add_argument("--grid_finest_resolution", type=int, default=512,
                   help=f"{when}: cells per axis, finest level (levels in geometric progression between)")
    g.add_argument("--grid_interpolation", type=str, default="smoothstep", choices=GRID_INTERPOLATIONS,
                   help=f"{when}: linear (Instant-NGP's; no second derivatives) or smoothstep weights (C1: the "
                        "Laplacian exists)")


def grid_settings(config: Any) -> Dict[str, Any]:
    """The grid encoding's settings of a parsed namespace or a saved config (keys without ``grid_``)."""
    config = config if isinstance(config, dict) else vars(config)
    return {k: config[f"grid_{k}"] for k in GRID_KEYS if f"grid_{k}" in config}


def check_grid(grid: Dict[str, Any]) -> None:
    """One-line errors for a grid encoding that cannot be built (ConfigError)."""
    for key in ("levels", "features", "table_size", "base_resolution"):
        if key in grid and grid[key] < 1:
            raise ConfigError(f"grid_{key} must be >= 1, got {grid[key]}")
    table = grid.get("table_size")
    if table is not None and table & (table - 1):
        raise ConfigError(f"grid_table_size must be a power of two (the hash is taken modulo it), got {table}")
    base, finest = grid.get("base_resolution"), grid.get("finest_resolution")
    if base is not None and finest is not None and finest < base:
        raise ConfigError(f"grid_finest_resolution ({finest}) must be >= grid_base_resolution ({base})")


def build_model(args: argparse.Namespace, in_features: int, out_features: int, num_frequencies: int):
    """The MLP described by :func:`add_model_options`; ``num_frequencies`` is used when the config leaves it at 0."""
    from ..models import MLP

    model = MLP(in_features=in_features, out_features=out_features, activations=args.activations,
                hidden_features=args.hidden_features, w0=args.w0, encoding=encoding_name(args),
                num_frequencies=args.num_frequencies or num_frequencies,
                fourier_num_features=args.fourier_num_features, fourier_scale=args.fourier_scale,
                fourier_seed=args.seed, init=args.init, pe_pi_factor=args.pe_pi_factor, spder_eps=args.spder_eps,
                act_scale=args.act_scale, grid=grid_settings(args) if args.has_grid_encoding else None)
    if args.compile:
        from ..models import compile_model

        compile_model(model)
    return model


def run_metadata(args: argparse.Namespace) -> Dict[str, Any]:
    """The resolved config as plain values (what config.txt, checkpoints and metrics record)."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in NOT_SAVED}


def fit_config(args: argparse.Namespace, resume: bool, summary_every: int, checkpoint_every: int,
               num_epochs: int = 0, num_steps: int = 0):
    """The :class:`~sobolev_inr.training.loop.FitConfig` of the run and optimiser options, with the run's length
    and cadence in the task's own vocabulary (epochs, or nerf-pytorch's ``N_iters``, ``i_print``, ...)."""
    from ..training.loop import FitConfig

    return FitConfig(lrate=args.lrate, num_epochs=num_epochs, num_steps=num_steps, summary_every=summary_every,
                     checkpoint_every=checkpoint_every, keep_checkpoints=args.keep_checkpoints,
                     lrate_decay_steps=args.lrate_decay * 1000, clip_grad_norm=args.clip_grad_norm,
                     nan_policy=args.nan_policy, max_skipped_steps=args.max_skipped_steps, seed=args.seed,
                     resume=resume, progress=not args.no_progress)


def epoch_fit_config(args: argparse.Namespace, resume: bool):
    """The :class:`~sobolev_inr.training.loop.FitConfig` of an epoch-based task's options."""
    return fit_config(args, resume, args.epochs_til_summary, args.epochs_til_ckpt, num_epochs=args.num_epochs)


def run_entry_point(main: Callable[[Optional[List[str]]], Any], argv: Optional[List[str]] = None) -> None:
    """Runs ``main``; config and data errors become one line on stderr and exit status 2, a run that
    cannot go on (non-finite loss) exit status 3; ``--debug`` shows the traceback too."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        main(argv)
    except UserError as e:
        if "--debug" in argv:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except TrainingError as e:
        if "--debug" in argv:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue from the latest checkpoint", file=sys.stderr)
        sys.exit(130)
