"""Sobolev regression of sampled signals: the training half that image and audio tasks share.

A :class:`SobolevRegression` holds training coordinates, values and finite-difference targets, cuts
epochs into batches and computes the loss of a batch with exactly the derivatives its
supervision mode needs (none for ``val``). Tasks subclass it to add evaluation and figures.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .coords import derivative_scale, target_to_units
from .derivatives import value_and_derivatives
from .losses import get_supervision, sobolev_loss


class SobolevRegression:
    """Training samples and loss for fitting ``coords -> values`` with derivative supervision.

    coords: (N, D) network inputs. values: (N, C). jacobian: (N, C, D) first-derivative targets
    per sample step. second_differences: (N, C, D) per-axis second-derivative targets per step
    squared, or None when ``lapl`` is not used. step: (D,) coordinate distance per sample step.
    Targets are converted to ``der_units`` once, here (:mod:`sobolev_inr.coords`), then multiplied by
    ``target_scale`` (1 but for SIREN's Poisson scaling, :func:`sobolev_inr.targets.siren_target_scale`:
    the network then fits ``target_scale`` times the signal).
    """

    psnr_peak = 2.0

    def __init__(self, coords: Tensor, values: Tensor, jacobian: Optional[Tensor], second_differences: Optional[Tensor],
                 step: Sequence[float], supervision: str = "val_der", lambda_der: float = 1.0,
                 der_units: str = "pixel", der_mode: str = "auto", batch_size: int = 0,
                 device: torch.device = torch.device("cpu"), der_engine: str = "auto", der_recompute: bool = False,
                 target_scale: float = 1.0):
        self.supervision = get_supervision(supervision)
        self.lambda_der, self.der_mode, self.device = lambda_der, der_mode, device
        self.der_engine, self.der_recompute = der_engine, der_recompute
        self.batch_size = batch_size
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

    def train_batches(self, generator: torch.Generator) -> Iterator[Optional[Tensor]]:
        """One epoch: ``None`` (the full batch) or random index chunks of ``batch_size``."""
        if self.batch_size <= 0 or self.batch_size >= self.num_samples:
            yield None
            return
        order = torch.randperm(self.num_samples, generator=generator)
        for chunk in order.split(self.batch_size):
            yield chunk.to(self.device)

    def loss(self, model: nn.Module, batch: Optional[Tensor]) -> Dict[str, Tensor]:
        pick = (lambda t: t) if batch is None else (lambda t: t[batch])
        x, y = pick(self.coords), pick(self.values)
        needs = self.supervision.needs
        if needs == "value":
            return sobolev_loss(self.supervision.name, model(x), y)
        d = value_and_derivatives(model, x, scale=self.scale, mode=self.der_mode, laplacian=needs == "laplacian",
                                  engine=self.der_engine,
                                  recompute_tangents=self.der_recompute)
        pred = d.laplacian if needs == "laplacian" else d.jacobian
        return sobolev_loss(self.supervision.name, d.value, y, pred, pick(self.target), self.lambda_der)


class SampledSignalRegression(SobolevRegression):
    """Training on a sampled signal's training samples, evaluation on all its samples (``eval_coords``).

    ``data`` holds coords (all samples), train_coords, train_values, train_jacobian,
    train_second_differences and derivative_step (:class:`~sobolev_inr.data.images.ImageData`,
    :class:`~sobolev_inr.data.audio.AudioData`). ``engine_options``: ``der_engine``, ``der_recompute``,
    ``target_scale``.
    """

    def __init__(self, data, supervision: str = "val_der", lambda_der: float = 1.0, der_units: str = "pixel",
                 der_mode: str = "auto", batch_size: int = 0, eval_chunk_size: int = 65536,
                 device: torch.device = torch.device("cpu"), **engine_options):
        super().__init__(data.train_coords, data.train_values, data.train_jacobian, data.train_second_differences,
                         data.derivative_step, supervision, lambda_der, der_units, der_mode, batch_size, device,
                         **engine_options)
        self.data = data
        self.eval_chunk_size = eval_chunk_size
        self.eval_coords = data.coords.to(device)
        self._cache: Dict[str, Tuple[tuple, Tensor]] = {}

    @property
    def has_heldout(self) -> bool:
        """Whether any sample is held out (``factor = 1`` trains on every one: held-out metrics are absent)."""
        return bool(self.data.heldout.any())

    def once_per_weights(self, name: str, model: nn.Module, compute: Callable[[], Tensor]) -> Tensor:
        """``compute()``, reused while ``model`` and its weights are unchanged (the last evaluation, the
        final metrics and the figures of a run all render the same network once)."""
        key = (id(model), tuple(p._version for p in model.parameters()), tuple(p.data_ptr() for p in model.parameters()))
        hit = self._cache.get(name)
        if hit is None or hit[0] != key:
            hit = self._cache[name] = (key, compute())
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
