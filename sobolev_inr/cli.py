"""Shared command-line and txt-config options (ConfigArgParse), device choice and error handling.

Entry scripts build their parser from these groups, add their task's own options, and call
:func:`run_entry_point`. Option names follow the original Sobolev-INR code, so its config
files run unchanged; unknown keys and bad choices are rejected by ConfigArgParse with a message
naming the key (its default behaviour, kept on purpose).
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import configargparse
import torch

from .derivatives import DERIVATIVE_MODES, ENGINES as DERIVATIVE_ENGINES, compile_model
from .coords import DER_UNITS
from .errors import ConfigError, TrainingError, UserError
from .losses import SUPERVISIONS
from .models import ACTIVATIONS, MLP, expand_activations
from .targets import DERIVATIVE_OPERATORS

NOT_SAVED = {"config", "resume", "overwrite", "debug"}


class ArgumentParser(configargparse.ArgumentParser):
    """ConfigArgParse's parser, with its errors as one line (no usage banner), naming the config file."""

    def error(self, message: str):
        config = getattr(self, "_config_in_use", None)
        where = f" (config: {config})" if config else ""
        self.exit(2, f"error: {message}{where}; `--help` lists the options\n")

    def parse_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        self._config_in_use = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)
        return super().parse_args(argv, namespace)


def base_parser(description: str) -> ArgumentParser:
    """A parser with the options every task shares; tasks add theirs and set their defaults."""
    p = ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="txt config file (key = value per line)")

    g = p.add_argument_group("run and logging")
    g.add_argument("--exp_name", type=str, default=None,
                   help="run name; results go to <logging_root>/<exp_name>/ (default: the config's path "
                        "below configs/, without .txt)")
    g.add_argument("--logging_root", type=str, default="./logs", help="where run directories are made")
    g.add_argument("--epochs_til_summary", type=int, default=100, help="epochs between evaluations and log flushes")
    g.add_argument("--epochs_til_ckpt", type=int, default=1000, help="epochs between checkpoints")
    g.add_argument("--keep_checkpoints", type=int, default=3, help="newest checkpoints kept (0 = all)")
    g.add_argument("--resume", action="store_true", help="continue the run in <logging_root>/<exp_name> from its latest checkpoint")
    g.add_argument("--overwrite", action="store_true", help="delete an existing run directory of the same name first")
    g.add_argument("--no_progress", action="store_true", help="no progress bar (logs only)")
    g.add_argument("--debug", action="store_true", help="show tracebacks for config and data errors")

    g = p.add_argument_group("training")
    g.add_argument("--lrate", type=float, default=1e-4, help="Adam learning rate")
    g.add_argument("--num_epochs", type=int, default=1000, help="epochs (full passes over the training samples)")
    g.add_argument("--batch_size", type=int, default=0, help="training samples per step; 0 = full batch")
    g.add_argument("--seed", type=int, default=0, help="seed of every RNG (init, batches)")
    g.add_argument("--deterministic", action="store_true", help="ask torch for deterministic algorithms")
    g.add_argument("--device", type=str, default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto = CUDA when present, else CPU")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the model's value pass (val supervision, evaluation); slow to start")
    g.add_argument("--nan_policy", type=str, default="stop", choices=("stop", "skip"),
                   help="on a non-finite loss: stop (keeping the last good checkpoint) or skip that step")
    g.add_argument("--clip_grad_norm", type=float, default=0.0, help="clip the gradient norm to this; 0 = off")

    g = p.add_argument_group("model")
    g.add_argument("--activations", nargs="+", default=["sine", "sine", "sine", "sine"], choices=sorted(ACTIVATIONS),
                   metavar="ACT", help=f"one per activated layer, or one for all; choices: {', '.join(sorted(ACTIVATIONS))}")
    g.add_argument("--w0", type=float, default=30.0, help="sine/SPDER frequency w0")
    g.add_argument("--hidden_features", type=int, default=256)
    g.add_argument("--num_hidden_layers", type=int, default=3,
                   help="activated layers minus one (the original code's count); must match activations")
    g.add_argument("--has_pos_encoding", action="store_true", help="NeRF positional encoding of the coordinates")
    g.add_argument("--num_frequencies", type=int, default=0,
                   help="positional-encoding frequencies L; 0 = SIREN's Nyquist rule from the training grid")
    g.add_argument("--has_fourier_feature", action="store_true", help="Gaussian Fourier features of the coordinates")
    g.add_argument("--fourier_num_features", type=int, default=256)
    g.add_argument("--fourier_scale", type=float, default=10.0, help="std of the Fourier feature matrix B")

    g = p.add_argument_group("supervision")
    g.add_argument("--supervision", type=str, default="val_der", choices=list(SUPERVISIONS),
                   help="val: values; val_der: values + lambda_der * derivatives; der: derivatives; lapl: Laplacian")
    g.add_argument("--lambda_der", type=float, default=1.0, help="weight of the derivative term in val_der")
    g.add_argument("--der_operator", type=str, default="sobel", choices=sorted(DERIVATIVE_OPERATORS),
                   help="finite-difference operator for the derivative targets")
    g.add_argument("--der_units", type=str, default="pixel", choices=list(DER_UNITS),
                   help="pixel: derivatives per sample step (the paper's lambda_der); coord: per network-input unit")
    g.add_argument("--der_mode", type=str, default="auto", choices=list(DERIVATIVE_MODES),
                   help="how exact input-derivatives are computed; auto = forward mode when inputs <= outputs")
    g.add_argument("--der_engine", type=str, default="auto", choices=list(DERIVATIVE_ENGINES),
                   help="fused: hand-written passes for an MLP (auto's choice without Laplacian); autograd: "
                        "plain autograd, e.g. to cross-check the fused engine (lapl always uses autograd)")
    g.add_argument("--der_recompute", action="store_true",
                   help="forward mode, fused engine: recompute the tangents in the backward pass instead of "
                        "keeping them (less memory, a little more time; see bench/PERFORMANCE.md)")
    return p


def parse_args(parser: configargparse.ArgumentParser, argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parses, fills ``exp_name`` from the config path, and checks values argparse cannot."""
    args = parser.parse_args(argv)
    if args.exp_name is None:
        args.exp_name = default_exp_name(args.config)
    for key in ("num_epochs", "hidden_features", "epochs_til_summary", "epochs_til_ckpt"):
        if getattr(args, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(args, key)}")
    for key in ("batch_size", "num_frequencies", "num_hidden_layers", "keep_checkpoints"):
        if getattr(args, key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {getattr(args, key)}")
    if args.clip_grad_norm < 0:
        raise ConfigError(f"clip_grad_norm must be >= 0 (0 = off), got {args.clip_grad_norm}")
    if args.lrate <= 0:
        raise ConfigError(f"lrate must be > 0, got {args.lrate}")
    if args.has_pos_encoding and args.has_fourier_feature:
        raise ConfigError("has_pos_encoding and has_fourier_feature are exclusive; set one")
    try:
        args.activations = expand_activations(args.activations, args.num_hidden_layers)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return args


def default_exp_name(config_path: Optional[str]) -> str:
    """``configs/baby/val_der/sine.txt`` -> ``baby/val_der/sine``; no config -> ``default``."""
    if not config_path:
        return "default"
    parts = Path(config_path).with_suffix("").parts
    if "configs" in parts:
        parts = parts[len(parts) - parts[::-1].index("configs"):]
    return "/".join(parts[-3:])


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
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
    return "none"


def build_model(args: argparse.Namespace, in_features: int, out_features: int, num_frequencies: int) -> MLP:
    """The MLP described by the model options; ``num_frequencies`` is used when the config leaves it at 0."""
    model = MLP(in_features=in_features, out_features=out_features, activations=args.activations,
                hidden_features=args.hidden_features, w0=args.w0, encoding=encoding_name(args),
                num_frequencies=args.num_frequencies or num_frequencies,
                fourier_num_features=args.fourier_num_features, fourier_scale=args.fourier_scale,
                fourier_seed=args.seed)
    if getattr(args, "compile", False):
        compile_model(model)
    return model


def resolved_config(args: argparse.Namespace) -> Dict[str, Any]:
    return {k: v for k, v in sorted(vars(args).items()) if k not in NOT_SAVED}


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
