"""Sobolev regression of sampled signals: the training half that image and audio tasks share.

A :class:`SobolevRegression` holds training coordinates, values and finite-difference targets, cuts
epochs into batches and computes the loss of a batch with exactly the derivatives its
supervision mode needs (none for ``val``). Tasks subclass it to add evaluation and figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..config.options import EngineOptions, SupervisionOptions
from ..data.coords import derivative_scale, target_to_units
from ..derivatives import value_and_derivatives, value_and_tangents
from ..losses.sobolev import get_supervision, project_jacobian, random_unit_directions, sobolev_loss


@dataclass
class RegressionBatch:
    """One batch of a :class:`SobolevRegression`: ``index`` (B,) of the samples, or None for all of them;
    ``der_rows`` (M,): the positions in the batch whose derivatives are supervised when ``der_fraction`` < 1
    (else None: all); ``directions`` (K, M, D): the random unit directions of the ``directional`` estimator
    for those rows, else None."""

    index: Optional[Tensor] = None
    directions: Optional[Tensor] = None
    der_rows: Optional[Tensor] = None

    def pick(self, t: Tensor) -> Tensor:
        return t if self.index is None else t[self.index]


class SobolevRegression:
    """Training samples and loss for fitting ``coords -> values`` with derivative supervision.

    coords: (N, D) network inputs. values: (N, C). jacobian: (N, C, D) first-derivative targets
    per sample step. second_differences: (N, C, D) per-axis second-derivative targets per step
    squared, or None when ``lapl`` is not used. step: (D,) coordinate distance per sample step.
    Targets are converted to ``der_units`` once, here (:mod:`sobolev_inr.data.coords`), then multiplied by
    ``target_scale`` (1 but for SIREN's Poisson scaling, :func:`sobolev_inr.data.targets.siren_target_scale`:
    the network then fits ``target_scale`` times the signal).
    ``supervision`` (:class:`~sobolev_inr.config.options.SupervisionOptions`): what is supervised, ``lambda_der``,
    ``der_units``, and the estimators of the Jacobian term: ``der_estimator`` ``exact`` (every Jacobian
    column) or ``directional`` (``der_directions`` random unit directions per sample and batch,
    forward-mode tangents; an unbiased estimate of the same term, :mod:`sobolev_inr.losses.sobolev`), and
    ``der_fraction`` in (0, 1] (the derivative term of each batch is the mean over a random ``der_fraction``
    of its samples, drawn anew every batch; the value term stays the mean over all of them; the other
    samples cost a value pass only). ``engine`` (:class:`~sobolev_inr.config.options.EngineOptions`): how the
    derivatives are computed (a plain name such as ``"val_der"`` stands for its options with the defaults).
    ``batch_size``: samples per step, 0 = full batch.
    """

    psnr_peak = 2.0

    def __init__(self, coords: Tensor, values: Tensor, jacobian: Optional[Tensor], second_differences: Optional[Tensor],
                 step: Sequence[float], *, supervision: Union[str, SupervisionOptions] = SupervisionOptions(),
                 engine: EngineOptions = EngineOptions(), batch_size: int = 0,
                 device: torch.device = torch.device("cpu"), target_scale: float = 1.0):
        if isinstance(supervision, str):
            supervision = SupervisionOptions(supervision=supervision)
        self.options, self.engine = supervision, engine
        self.supervision = get_supervision(supervision.supervision)
        self.der_estimator, self.der_directions = supervision.der_estimator, int(supervision.der_directions)
        self.der_fraction, self.lambda_der = float(supervision.der_fraction), supervision.lambda_der
        self.der_mode, self.der_engine, self.der_recompute = engine.der_mode, engine.der_engine, engine.der_recompute
        self.device, self.batch_size = device, batch_size
        der_units = supervision.der_units
        self.scale = derivative_scale(step, der_units).to(device=device, dtype=coords.dtype)
        self.coords = coords.to(device)
        self.values = values.to(device)
        self.target = None
        needs = self.supervision.needs
        if needs == "jacobian":
            self.target = target_to_units(jacobian, step, der_units, axis=2).to(device)
        elif needs == "laplacian":
            if second_differences is None:
                raise ValueError("lapl supervision needs second-difference targets")
            self.target = target_to_units(second_differences, step, der_units, axis=2, order=2).sum(dim=2).to(device)
        self.target_scale = float(target_scale)
        if self.target is not None and self.target_scale != 1.0:
            self.target = self.target * self.target_scale

    @property
    def num_samples(self) -> int:
        return self.coords.shape[0]

    def train_batches(self, generator: torch.Generator) -> Iterator[RegressionBatch]:
        """One epoch: the full batch, or random chunks of ``batch_size`` samples; each batch carries its
        derivative rows (``der_fraction`` < 1) and directions (directional estimator), drawn from
        ``generator`` (so a resumed run draws the same ones)."""
        n = self.num_samples
        if self.batch_size <= 0 or self.batch_size >= n:
            chunks = [None]
        else:
            chunks = torch.randperm(n, generator=generator).split(self.batch_size)
        for chunk in chunks:
            rows = n if chunk is None else len(chunk)
            der_rows = None
            if self.der_fraction < 1.0:
                m = max(1, round(self.der_fraction * rows))
                der_rows = torch.randperm(rows, generator=generator)[:m].sort().values
                rows = m
            directions = None
            if self.der_estimator == "directional":
                directions = random_unit_directions(self.der_directions, rows, self.coords.shape[1], generator)
                directions = directions.to(device=self.device, dtype=self.coords.dtype)
            yield RegressionBatch(None if chunk is None else chunk.to(self.device), directions,
                                  None if der_rows is None else der_rows.to(self.device))

    def loss(self, model: nn.Module, batch: Optional[RegressionBatch]) -> Dict[str, Tensor]:
        """Loss terms of ``batch`` (None: every sample, exact derivatives)."""
        batch = batch or RegressionBatch()
        x, y = batch.pick(self.coords), batch.pick(self.values)
        needs = self.supervision.needs
        if needs == "value":
            return sobolev_loss(self.supervision.name, model(x), y)
        target = batch.pick(self.target)
        rest_value = None
        if self.der_fraction < 1.0:
            if batch.der_rows is None:
                raise ValueError("der_fraction < 1: the batch has no der_rows (take batches from train_batches)")
            rest = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            rest[batch.der_rows] = False
            rest_value, rest_y = model(x[rest]), y[rest]  # the samples whose derivatives are not supervised
            x, y, target = x[batch.der_rows], y[batch.der_rows], target[batch.der_rows]
        if self.der_estimator == "directional":
            if batch.directions is None:
                raise ValueError("der_estimator = directional: the batch has no directions (take batches from "
                                 "train_batches)")
            value, tangents = value_and_tangents(model, x, batch.directions * self.scale, engine=self.der_engine,
                                                 recompute_tangents=self.der_recompute)
            pred, target = tangents.permute(1, 2, 0), project_jacobian(target, batch.directions)
            factor = x.shape[1] / batch.directions.shape[0]  # D / K
        else:
            d = value_and_derivatives(model, x, scale=self.scale, mode=self.der_mode, laplacian=needs == "laplacian",
                                      engine=self.der_engine, recompute_tangents=self.der_recompute)
            value, pred, factor = d.value, (d.laplacian if needs == "laplacian" else d.jacobian), 1.0
        if rest_value is not None:  # the value term stays the mean over every sample of the batch
            value, y = torch.cat([value, rest_value]), torch.cat([y, rest_y])
        return sobolev_loss(self.supervision.name, value, y, pred, target, self.lambda_der, estimate_factor=factor)


class SampledSignalRegression(SobolevRegression):
    """Training on a sampled signal's training samples, evaluation on all its samples (``eval_coords``).

    ``data`` holds coords (all samples), train_coords, train_values, train_jacobian,
    train_second_differences and derivative_step (:class:`~sobolev_inr.data.images.ImageData`,
    :class:`~sobolev_inr.data.audio.AudioData`, :class:`~sobolev_inr.data.video.VideoData`); the other
    arguments are :class:`SobolevRegression`'s, and ``eval_chunk_size`` the samples per network call when
    rendering (memory only).
    """

    def __init__(self, data, *, supervision: Union[str, SupervisionOptions] = SupervisionOptions(),
                 engine: EngineOptions = EngineOptions(), batch_size: int = 0, eval_chunk_size: int = 65536,
                 device: torch.device = torch.device("cpu"), target_scale: float = 1.0):
        super().__init__(data.train_coords, data.train_values, data.train_jacobian, data.train_second_differences,
                         data.derivative_step, supervision=supervision, engine=engine, batch_size=batch_size,
                         device=device, target_scale=target_scale)
        self.data = data
        self.eval_chunk_size = eval_chunk_size
        self.eval_coords = data.coords.to(device)
        self.once_per_weights = OncePerWeights()
        """``once_per_weights(name, model, compute)``: the last evaluation, the final metrics and the figures of
        a run all render the same network once."""

    @property
    def has_heldout(self) -> bool:
        """Whether any sample is held out (``factor = 1`` trains on every one: held-out metrics are absent)."""
        return bool(self.data.heldout.any())


class OncePerWeights:
    """A cache of results computed from a model: ``cache(name, model, compute)`` returns ``compute()``, reused
    while ``model`` and its weights are unchanged (an optimiser step or a load changes their versions)."""

    def __init__(self):
        self._entries: Dict[str, Tuple[tuple, Any]] = {}

    def __call__(self, name: str, model: nn.Module, compute: Callable[[], Any]) -> Any:
        params = list(model.parameters())
        key = (id(model), tuple(p._version for p in params), tuple(p.data_ptr() for p in params))
        hit = self._entries.get(name)
        if hit is None or hit[0] != key:
            hit = self._entries[name] = (key, compute())
        return hit[1]


def predict(model: nn.Module, coords: Tensor, chunk_size: int = 65536) -> Tensor:
    """Network output at ``coords (N, D)`` in chunks, without a graph: (N, C) on the coords' device."""
    with torch.no_grad():
        return torch.cat([model(c) for c in coords.split(max(chunk_size, 1))])


def predict_jacobian(model: nn.Module, coords: Tensor, scale: Tensor, chunk_size: int = 65536,
                     mode: str = "auto") -> Tensor:
    """Jacobian (N, C, D) at ``coords`` in chunks, without a graph (``scale`` as in the engine)."""
    parts = [value_and_derivatives(model, c, scale=scale, mode=mode, create_graph=False).jacobian
             for c in coords.split(max(chunk_size, 1))]
    return torch.cat(parts)


def predict_laplacian(model: nn.Module, coords: Tensor, scale: Tensor, chunk_size: int = 65536) -> Tensor:
    """Laplacian (N, C) at ``coords`` in chunks, without a graph (``scale`` as in the engine: the sum of
    ``scale[d]^2`` times the second derivatives along axis d)."""
    parts = [value_and_derivatives(model, c, scale=scale, laplacian=True, create_graph=False).laplacian
             for c in coords.split(max(chunk_size, 1))]
    return torch.cat(parts)
