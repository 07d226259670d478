"""Typed options: small frozen dataclasses built once from the parsed arguments, or from a finished run's
saved config, each checked once (:class:`~sobolev_inr.errors.ConfigError`, also a ValueError), and taken
by the library's constructors instead of a dozen loose strings and floats. Importing this module imports
no torch, so that ``--help`` stays fast; the name tuples are the registries' (tests/test_cli.py checks).

    supervision = SupervisionOptions.from_config(vars(args))    # or a checkpoint's state["config"]
    task = ImageRegression(data, supervision=supervision, engine=EngineOptions.from_config(vars(args)))
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Type, TypeVar, Union, get_type_hints

from ..errors import ConfigError

SUPERVISION_NAMES = ("val", "val_der", "der", "lapl")
JACOBIAN_SUPERVISIONS = ("val_der", "der")
OPERATOR_NAMES = ("diff", "sobel")
DER_UNIT_NAMES = ("pixel", "coord")
DER_MODE_NAMES = ("auto", "forward", "reverse")
ENGINE_NAMES = ("auto", "fused", "autograd")
DER_ESTIMATOR_NAMES = ("exact", "directional")

Options = TypeVar("Options")


def options_from_config(cls: Type[Options], config: Mapping[str, Any]) -> Options:
    """``cls`` from the keys of ``config`` (a parsed namespace's vars, or a saved config) that name its
    fields; a field that is itself an options dataclass is built from the same config (the config is flat,
    the options nest); absent keys keep their defaults, other keys are ignored."""
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = options_from_config(hints[f.name], config)
        elif f.name in config:
            values[f.name] = config[f.name]
    return cls(**values)


def resolve_path(path: str, base_dir: Union[str, Path]) -> str:
    """``path`` as given when absolute, else relative to ``base_dir`` (a run's working directory)."""
    return path if Path(path).is_absolute() else str(Path(base_dir) / path)


def _choice(key: str, value: str, names) -> None:
    if value not in names:
        raise ConfigError(f"unknown {key} {value!r}; choose from {list(names)}")


@dataclass(frozen=True)
class SupervisionOptions:
    """What a Sobolev regression supervises, and how its derivative targets are made and estimated.

    ``supervision``: val (values), val_der (values + ``lambda_der`` x first derivatives), der (first
    derivatives), lapl (the Laplacian). ``der_units``: pixel = derivatives per sample step (the paper's
    ``lambda_der``), coord = per network-input unit. ``der_operator``: the finite-difference stencil of the
    targets (kornia's normalised Sobel, or central differences). ``der_estimator`` directional: an unbiased
    estimate of the Jacobian loss from ``der_directions`` random directions per sample; ``der_fraction`` < 1:
    the derivative term on that random fraction of each batch (both for val_der and der only).
    """

    supervision: str = "val_der"
    lambda_der: float = 1.0
    der_units: str = "pixel"
    der_operator: str = "sobel"
    der_estimator: str = "exact"
    der_directions: int = 1
    der_fraction: float = 1.0

    def __post_init__(self):
        _choice("supervision", self.supervision, SUPERVISION_NAMES)
        _choice("der_units", self.der_units, DER_UNIT_NAMES)
        _choice("der_operator", self.der_operator, OPERATOR_NAMES)
        _choice("der_estimator", self.der_estimator, DER_ESTIMATOR_NAMES)
        if self.der_directions < 1:
            raise ConfigError(f"der_directions must be >= 1, got {self.der_directions}")
        if not 0.0 < self.der_fraction <= 1.0:
            raise ConfigError(f"der_fraction must be in (0, 1], got {self.der_fraction}")
        for what, active in (("der_estimator = directional", self.der_estimator == "directional"),
                             ("der_fraction < 1", self.der_fraction < 1.0)):
            if active and self.supervision not in JACOBIAN_SUPERVISIONS:
                raise ConfigError(f"{what} estimates the Jacobian loss of val_der or der; supervision = "
                                  f"{self.supervision} has none")

    from_config = classmethod(options_from_config)


@dataclass(frozen=True)
class EngineOptions:
    """How exact input-derivatives are computed; none of these changes what a run computes. ``der_mode``:
    forward or reverse mode (auto = forward when inputs <= outputs); ``der_engine``: the fused hand-written
    passes or plain autograd; ``der_recompute``: forward mode, fused engine: recompute the tangents in the
    backward pass instead of keeping them (less memory, a little more time)."""

    der_mode: str = "auto"
    der_engine: str = "auto"
    der_recompute: bool = False

    def __post_init__(self):
        _choice("der_mode", self.der_mode, DER_MODE_NAMES)
        _choice("der_engine", self.der_engine, ENGINE_NAMES)

    from_config = classmethod(options_from_config)


@dataclass(frozen=True)
class ImageSource:
    """One image: ``filename`` is a Set5 name (looked up as ``<data_root>/<dataset>/HR/<name>.png``), a PNG or
    JPEG path, or ``skimage:<name>`` (embedded, no download); ``is_gray``: its luma; ``sidelength`` > 0:
    centre-cropped to a square and resized (bilinear); ``crop``: cut to a multiple of the task's stride."""

    filename: str = "skimage:camera"
    data_root: str = "../../data"
    dataset: str = "Set5"
    is_gray: bool = False
    sidelength: int = 0
    crop: bool = False

    def __post_init__(self):
        if self.sidelength and self.sidelength < 2:
            raise ConfigError(f"sidelength must be 0 (keep the size) or >= 2, got {self.sidelength}")

    def relative_to(self, base_dir: Union[str, Path]) -> "ImageSource":
        """The same source with relative paths (an existing file, the data root) taken from ``base_dir``."""
        filename = self.filename
        if not filename.startswith("skimage:") and (Path(base_dir) / filename).is_file():
            filename = resolve_path(filename, base_dir)
        return dataclasses.replace(self, filename=filename, data_root=resolve_path(self.data_root, base_dir))

    from_config = classmethod(options_from_config)


@dataclass(frozen=True)
class FinalEvalOptions:
    """What the end of a run scores and writes (every task has these options).

    ``final_eval_stride`` k: score the final model on every k-th sample along each axis of the task's
    evaluation grid (pixels, audio samples, the pixels of video frames, the rays of the test views, the
    marching-cubes grid), so that a big input is scored in 1/k^dims of the time; 1 scores everything, as the
    papers do. ``skip_final_eval``: no final evaluation at all; ``metrics.json`` then holds the last
    summary's evaluation. ``no_figures``: write ``metrics.json`` only, no figures, renders or videos.
    What was scored is recorded in ``metrics.json`` (``final_eval_stride``, ``final_eval_shape``,
    ``final_eval_skipped``).
    """

    final_eval_stride: int = 1
    skip_final_eval: bool = False
    no_figures: bool = False

    def __post_init__(self):
        if self.final_eval_stride < 1:
            raise ConfigError(f"final_eval_stride must be >= 1 (1 = every sample), got {self.final_eval_stride}")

    from_config = classmethod(options_from_config)


@dataclass(frozen=True)
class MemoryOptions:
    """How much memory a training step may hold. A batch bigger than that (a full batch of a big image or
    clip) is cut into blocks of rows whose gradients are accumulated: the same step, in less memory.

    ``block_size`` > 0: samples per block; else ``max_memory_gb`` > 0: blocks as big as fit that many GB
    (measured from a small probe block: what autograd keeps for backward, times
    :data:`~sobolev_inr.training.memory.HEADROOM`); both 0: the whole batch at once. The data, the model and
    the process itself come on top of the budget.
    """

    block_size: int = 0
    max_memory_gb: float = 4.0

    def __post_init__(self):
        if self.block_size < 0:
            raise ConfigError(f"block_size must be >= 0 (0 = from max_memory_gb), got {self.block_size}")
        if self.max_memory_gb < 0:
            raise ConfigError(f"max_memory_gb must be >= 0 (0 = no limit), got {self.max_memory_gb}")

    from_config = classmethod(options_from_config)
