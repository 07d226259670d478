"""Sobolev regression of sampled signals: the training half that image and audio tasks share.

A :class:`SobolevRegression` holds training coordinates, values and finite-difference targets, cuts
epochs into batches and computes the loss of a batch with exactly the derivatives its
supervision mode needs (none for ``val``), in row blocks whose gradients add up to the batch's when the
batch would hold more than its memory budget (:meth:`SobolevRegression.loss_blocks`). Tasks subclass it to
add evaluation and figures; :func:`predict` and its kin evaluate a network in chunks, with a progress bar.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..config.options import EngineOptions, MemoryOptions, SupervisionOptions
from ..data.coords import derivative_scale, target_to_units
from ..derivatives import value_and_derivatives, value_and_tangents
from ..losses.sobolev import Supervision, get_supervision, project_jacobian, random_unit_directions, sobolev_loss
from ..training import memory as memory_probe
from ..training.progress import QUIET, Progress

PROBE_ROWS = 512
"""Rows of the probe block that measures a training step's memory per sample (:meth:`SobolevRegression.block_rows`)."""


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
    ``batch_size``: samples per step, 0 = full batch. ``memory``
    (:class:`~sobolev_inr.config.options.MemoryOptions`): how much a step may hold; a bigger batch is trained in
    row blocks whose gradients add up to the batch's (:meth:`loss_blocks`).
    """

    psnr_peak = 2.0
    progress: Progress = QUIET
    """Bars and phase lines of the long phases (the runner sets the run's; the default shows nothing)."""

    def __init__(self, coords: Tensor, values: Tensor, jacobian: Optional[Tensor], second_differences: Optional[Tensor],
                 step: Sequence[float], *, supervision: Union[str, SupervisionOptions] = SupervisionOptions(),
                 engine: EngineOptions = EngineOptions(), batch_size: int = 0,
                 device: torch.device = torch.device("cpu"), target_scale: float = 1.0,
                 memory: MemoryOptions = MemoryOptions()):
        if isinstance(supervision, str):
            supervision = SupervisionOptions(supervision=supervision)
        self.options, self.engine = supervision, engine
        self.supervision = get_supervision(supervision.supervision)
        self.der_estimator, self.der_directions = supervision.der_estimator, int(supervision.der_directions)
        self.der_fraction, self.lambda_der = float(supervision.der_fraction), supervision.lambda_der
        self.der_mode, self.der_engine, self.der_recompute = engine.der_mode, engine.der_engine, engine.der_recompute
        self.device, self.batch_size, self.memory = device, batch_size, memory
        self._block_rows: Optional[int] = None  # from the memory budget, measured once (block_rows)
        self._logged_blocks: Optional[Tuple[int, int]] = None  # (rows, block) of the last "in blocks" line
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
        if self.supervision.needs == "value":
            return self._terms(model, batch.pick(self.coords), batch.pick(self.values), None, None, None)
        self._check_batch(batch)
        return self._terms(model, batch.pick(self.coords), batch.pick(self.values), batch.pick(self.target),
                           batch.der_rows, batch.directions)

    def _check_batch(self, batch: RegressionBatch) -> None:
        if self.der_fraction < 1.0 and batch.der_rows is None:
            raise ValueError("der_fraction < 1: the batch has no der_rows (take batches from train_batches)")
        if self.der_estimator == "directional" and batch.directions is None:
            raise ValueError("der_estimator = directional: the batch has no directions (take batches from "
                             "train_batches)")

    def _terms(self, model: nn.Module, x: Tensor, y: Tensor, target: Optional[Tensor], der_rows: Optional[Tensor],
               directions: Optional[Tensor]) -> Dict[str, Tensor]:
        """Loss terms of the rows ``x (B, D)``, ``y (B, C)`` with derivative targets ``target`` (B, ...), the
        derivatives supervised at positions ``der_rows`` (M,) only (None: all) along ``directions`` (K, M, D)
        (directional estimator; else None): means over the B rows (values) and the M rows (derivatives)."""
        if self.supervision.needs == "value":
            return sobolev_loss(self.supervision.name, model(x), y)
        needs = self.supervision.needs
        rest_value = None
        if der_rows is not None:
            rest = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            rest[der_rows] = False
            rest_value, rest_y = model(x[rest]), y[rest]  # the samples whose derivatives are not supervised
            x, y, target = x[der_rows], y[der_rows], target[der_rows]
        if self.der_estimator == "directional":
            value, tangents = value_and_tangents(model, x, directions * self.scale, engine=self.der_engine,
                                                 recompute_tangents=self.der_recompute)
            pred, target = tangents.permute(1, 2, 0), project_jacobian(target, directions)
            factor = x.shape[1] / directions.shape[0]  # D / K
        else:
            d = value_and_derivatives(model, x, scale=self.scale, mode=self.der_mode, laplacian=needs == "laplacian",
                                      engine=self.der_engine, recompute_tangents=self.der_recompute)
            value, pred, factor = d.value, (d.laplacian if needs == "laplacian" else d.jacobian), 1.0
        if rest_value is not None:  # the value term stays the mean over every sample of the batch
            value, y = torch.cat([value, rest_value]), torch.cat([y, rest_y])
        return sobolev_loss(self.supervision.name, value, y, pred, target, self.lambda_der, estimate_factor=factor)

    def loss_blocks(self, model: nn.Module, batch: Optional[RegressionBatch]) -> Iterator[Dict[str, Tensor]]:
        """The loss of ``batch`` as the terms of consecutive row blocks that sum to :meth:`loss`'s (so that
        accumulating the blocks' gradients gives the batch's, exactly, in the memory of one block): a block of
        ``b`` of the batch's ``n`` rows, ``m_b`` of its ``m`` derivative rows, contributes its value mean times
        ``b / n`` and its derivative mean times ``m_b / m``; ``total`` weighs them as
        :func:`~sobolev_inr.losses.sobolev.sobolev_loss` does. A batch within :meth:`block_rows` is one block,
        :meth:`loss` itself (so a run that needs no blocks computes what it computed before)."""
        batch = batch or RegressionBatch()
        n = self.num_samples if batch.index is None else batch.index.shape[0]
        size = self.block_rows(model, n)
        if size >= n:
            yield self.loss(model, batch)
            return
        values_only = self.supervision.needs == "value"
        if not values_only:
            self._check_batch(batch)
        for start, stop in self._block_bounds(n, size, None if values_only else batch.der_rows):
            yield self._block_terms(model, batch, n, start, stop)

    def block_rows(self, model: nn.Module, n: int) -> int:
        """Rows per block of a batch of ``n``: ``memory.block_size``, else as many as ``memory.max_memory_gb``
        holds (what autograd keeps per row for a step, measured once on a probe of :data:`PROBE_ROWS` training
        rows, each with its derivatives: an upper bound when ``der_fraction`` < 1), else ``n`` (also for a batch
        of at most :data:`PROBE_ROWS`). Logs one line (``progress.log``) when a batch is cut."""
        if self.memory.block_size > 0:
            size = self.memory.block_size
        elif self.memory.max_memory_gb <= 0 or n <= PROBE_ROWS:
            return n
        else:
            if self._block_rows is None:
                rows = min(PROBE_ROWS, self.num_samples)
                per_sample = memory_probe.bytes_per_sample(lambda k: self._probe_terms(model, k), rows)
                self._block_rows = memory_probe.rows_within(self.memory.max_memory_gb, per_sample)
            size = self._block_rows
        if size < n and self._logged_blocks != (n, size):
            self._logged_blocks = (n, size)
            budget = (f"block_size {size:,}" if self.memory.block_size > 0
                      else f"max_memory_gb {self.memory.max_memory_gb:g}")
            self.progress.log(f"training steps in {-(-n // size)} blocks of {size:,} samples ({budget})")
        return size

    def _probe_terms(self, model: nn.Module, rows: int) -> Dict[str, Tensor]:
        """The loss of the first ``rows`` training samples with every derivative supervised (directions: the
        first axis; their values do not change what is kept)."""
        x, y = self.coords[:rows], self.values[:rows]
        target = None if self.target is None else self.target[:rows]
        directions = None
        if self.der_estimator == "directional" and self.supervision.needs != "value":
            directions = torch.zeros(self.der_directions, rows, x.shape[1], dtype=x.dtype, device=x.device)
            directions[..., 0] = 1.0
        return self._terms(model, x, y, target, None, directions)

    @staticmethod
    def _block_bounds(n: int, size: int, der_rows: Optional[Tensor]) -> List[Tuple[int, int]]:
        """(start, stop) of consecutive blocks of ``size`` rows covering ``n``; with ``der_rows`` (sorted
        positions), a block holding none of them is merged into its neighbour, so that every block has a
        derivative term (a ``der`` or ``lapl`` block without one would have nothing to backpropagate)."""
        bounds = [(a, min(a + size, n)) for a in range(0, n, size)]
        if der_rows is None:
            return bounds
        starts = torch.tensor([a for a, _ in bounds] + [n], device=der_rows.device)
        counts = torch.searchsorted(der_rows, starts).diff().tolist()
        merged: List[Tuple[int, int]] = []
        pending = None  # the start of blocks without derivative rows, waiting for the next block that has some
        for (a, b), count in zip(bounds, counts):
            if count == 0:
                pending = a if pending is None else pending
                continue
            merged.append((a if pending is None else pending, b))
            pending = None
        if pending is not None:  # trailing blocks without derivative rows join the last block
            merged[-1] = (merged[-1][0], n)
        return merged

    def _block_terms(self, model: nn.Module, batch: RegressionBatch, n: int, start: int, stop: int
                     ) -> Dict[str, Tensor]:
        """The terms of rows ``start:stop`` of ``batch`` (of ``n`` rows), weighted as parts of the batch's."""
        rows = slice(start, stop)
        index = None if batch.index is None else batch.index[rows]

        def pick(t: Tensor) -> Tensor:
            return t[rows] if index is None else t[index]

        share = (stop - start) / n
        if self.supervision.needs == "value":
            terms = self._terms(model, pick(self.coords), pick(self.values), None, None, None)
            return weighted_terms(self.supervision, self.lambda_der, terms, share, 0.0)
        der_rows, directions, der_weight = None, batch.directions, share
        if batch.der_rows is not None:
            first, last = torch.searchsorted(batch.der_rows, torch.tensor([start, stop], device=batch.der_rows.device))
            first, last = int(first), int(last)
            der_rows = batch.der_rows[first:last] - start
            der_weight = (last - first) / batch.der_rows.shape[0]
            if directions is not None:
                directions = directions[:, first:last]
        elif directions is not None:
            directions = directions[:, rows]
        target = None if self.target is None else pick(self.target)
        terms = self._terms(model, pick(self.coords), pick(self.values), target, der_rows, directions)
        return weighted_terms(self.supervision, self.lambda_der, terms, share, der_weight)


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
                 device: torch.device = torch.device("cpu"), target_scale: float = 1.0,
                 memory: MemoryOptions = MemoryOptions()):
        super().__init__(data.train_coords, data.train_values, data.train_jacobian, data.train_second_differences,
                         data.derivative_step, supervision=supervision, engine=engine, batch_size=batch_size,
                         device=device, target_scale=target_scale, memory=memory)
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


def weighted_terms(supervision: Supervision, lambda_der: float, terms: Dict[str, Tensor], value_weight: float,
                   derivative_weight: float) -> Dict[str, Tensor]:
    """A block's ``terms`` (means over its rows) as its part of a batch's: ``value`` times ``value_weight`` (its
    share of the batch's rows), ``derivative`` times ``derivative_weight`` (its share of the derivative rows), and
    ``total`` recombined from them as :func:`~sobolev_inr.losses.sobolev.sobolev_loss` combines its terms."""
    out = {"value": terms["value"] * value_weight}
    if "derivative" not in terms:
        out["total"] = out["value"]
        return out
    out["derivative"] = terms["derivative"] * derivative_weight
    total = out["derivative"] * (supervision.derivative_weight * (lambda_der if supervision.uses_lambda else 1.0))
    if supervision.value_weight:
        total = total + supervision.value_weight * out["value"]
    out["total"] = total
    return out


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


def cache_name(name: str, stride: int) -> str:
    """The render cache's (:class:`OncePerWeights`) entry of ``name`` at final-evaluation ``stride`` (stride 1:
    the plain name, shared with the summaries' renders)."""
    return name if stride == 1 else f"{name}@{stride}"


def strided_shape(shape: Sequence[int], stride: int) -> List[int]:
    """The shape of every ``stride``-th sample along each axis of a grid of ``shape``."""
    return [-(-int(n) // stride) for n in shape]


def strided_grid(coords: Tensor, shape: Sequence[int], stride: int) -> Tensor:
    """The rows of ``coords (prod(shape), D)``, a row-major grid of ``shape``, at every ``stride``-th index along
    each axis: (prod(strided_shape), D), row-major; ``coords`` itself for stride 1 (the final evaluation's grid
    at ``final_eval_stride``)."""
    if stride == 1:
        return coords
    grid = coords.view(*shape, coords.shape[-1])[(slice(None, None, stride),) * len(shape)]
    return grid.reshape(-1, coords.shape[-1])


def predict(model: nn.Module, coords: Tensor, chunk_size: int = 65536, *, progress: Progress = QUIET,
            desc: str = "render") -> Tensor:
    """Network output at ``coords (N, D)`` in chunks of ``chunk_size`` rows, without a graph: (N, C) on the
    coords' device; ``progress`` shows a bar over the chunks (``desc``) when there are several."""
    with torch.no_grad():
        return torch.cat([model(c) for c in progress.chunks(coords.split(max(chunk_size, 1)), desc)])


def predict_jacobian(model: nn.Module, coords: Tensor, scale: Tensor, chunk_size: int = 65536, mode: str = "auto", *,
                     progress: Progress = QUIET, desc: str = "derivatives") -> Tensor:
    """Jacobian (N, C, D) at ``coords`` in chunks, without a graph (``scale`` as in the engine); ``progress`` as
    in :func:`predict`."""
    parts = [value_and_derivatives(model, c, scale=scale, mode=mode, create_graph=False).jacobian
             for c in progress.chunks(coords.split(max(chunk_size, 1)), desc)]
    return torch.cat(parts)


def predict_laplacian(model: nn.Module, coords: Tensor, scale: Tensor, chunk_size: int = 65536, *,
                      progress: Progress = QUIET, desc: str = "Laplacian") -> Tensor:
    """Laplacian (N, C) at ``coords`` in chunks, without a graph (``scale`` as in the engine: the sum of
    ``scale[d]^2`` times the second derivatives along axis d); ``progress`` as in :func:`predict`."""
    parts = [value_and_derivatives(model, c, scale=scale, laplacian=True, create_graph=False).laplacian
             for c in progress.chunks(coords.split(max(chunk_size, 1)), desc)]
    return torch.cat(parts)
