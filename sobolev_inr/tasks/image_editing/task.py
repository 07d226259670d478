"""Poisson image editing with coordinate networks (SIREN's image-editing experiments, Perez et al. 2003).

Two edits, each run through the library's run machinery (:func:`~sobolev_inr.training.experiment.open_run`,
:func:`~sobolev_inr.training.experiment.train_and_report`):

* **Gradient composite** (:func:`run_gradient_composite`): fit f1 and f2 to two images (values, every
  pixel), then fit a third network on gradients only, with target ``alpha grad f1 + (1 - alpha) grad f2``:
  the exact gradients of the two fitted networks (the library's derivative engine). Three runs, in
  ``<logging_root>/<exp_name>/{f1,f2,composite}``; a finished sub-run is reused, not retrained.
* **Seamless cloning** (:func:`run_seamless_cloning`): inside a mask the *source* image's gradients,
  outside it the *target* image's values and gradients. Loss: value MSE over the outside pixels +
  ``lambda_der`` x the gradient error over all pixels (:mod:`sobolev_inr.losses.sobolev`' conventions). One run.

Units: values in [-1, 1]; gradients per pixel step, (d/dx, d/dy) = (along the width, along the height)
(:mod:`sobolev_inr.data.coords`). Mask geometry (centre, radii) is in the network's [-1, 1] coordinates,
(x, y) = (column, row). Gradients fix an image only up to a constant per channel, so the composite's
image is scored after removing the best constant (``psnr_offset_full``).

Big inputs. ``final_metrics(model, stride=k)`` scores every k-th pixel along each axis (``final_eval_shape``
[H', W']): the renders, targets and mask are taken at those pixels, the best constant is fitted on them, and
rho_AG is the spectrum of that subsampled image against the subsampled target's. Renders go through the
network in chunks with a progress bar, and ``write_outputs`` draws the final evaluation's renders (at its
pixels). Training takes the ``memory`` options: a full batch bigger than the budget runs in row blocks whose
gradients add up to the batch's (the clone's own loss has its own blocks, :meth:`SeamlessCloning.loss_blocks`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...config.options import EngineOptions, FinalEvalOptions, MemoryOptions, SupervisionOptions
from ...data.coords import image_grid, image_step
from ...data.images import ImageData, load_image, prepare_image, square_image
from ...data.targets import image_gradient
from ...derivatives import value_and_derivatives
from ...errors import ConfigError, DataError
from ...losses.sobolev import sobolev_loss
from ...metrics import derivative_psnr, poisson_image_psnrs, psnr, remove_offset, to_unit_range
from ...training.checkpoints import latest_checkpoint, load_model
from ...training.loop import FitConfig
from ...training.progress import Progress
from ...training.runs import RunDirectory, RunIdentity
from ..image_regression.task import ImageRegression, gradient_magnitude, strided
from ..regression import RegressionBatch
from . import EditOptions

CLONE_KEYS = ("mask_shape", "mask_centre", "mask_radii", "source_centre", "lambda_der", "der_operator")
"""Config keys only seamless cloning reads (a composite's runs neither record nor compare them)."""
COMPOSITE_KEYS = ("alpha",)
"""Config keys only the gradient composite reads."""
OUTLINE_RGB = (1.0, 0.15, 0.15)


# ------------------------------------------------------------------------------------------ images
def load_image_pair(filename: str, filename2: str, sidelength: int, is_gray: bool = False,
                    data_root: str = "../../data", dataset: str = "Set5") -> Tuple[Tensor, Tensor, List[str], List[str]]:
    """The two images of an edit as (C, H, W) tensors in [-1, 1] of one size and channel count, their
    sources and notes for the log. A 1-channel image beside a 3-channel one is repeated to RGB; images
    of different sizes (after ``sidelength``) are a :class:`DataError`."""
    images, sources, notes = [], [], []
    for name in (filename, filename2):
        loaded = load_image(name, data_root, dataset, is_gray)
        image, resize_notes = square_image(loaded.image, sidelength)
        images.append(image)
        sources.append(loaded.source)
        notes += [f"{loaded.source}: {n}" for n in loaded.notes + resize_notes]
    (a, b), channels = images, max(i.shape[0] for i in images)
    if a.shape[1:] != b.shape[1:]:
        raise DataError(f"the two images differ in size: {sources[0]} is {a.shape[1]}x{a.shape[2]}, {sources[1]} is "
                        f"{b.shape[1]}x{b.shape[2]}; set sidelength to resize both to one square size")
    for i, image in enumerate(images):
        if image.shape[0] != channels:
            images[i] = image.expand(channels, -1, -1).contiguous()
            notes.append(f"{sources[i]} is grayscale beside an RGB image: repeated to 3 channels (is_gray = true "
                         f"fits both in gray)")
    return images[0], images[1], sources, notes


def with_gradient_target(data: ImageData, gradient: Tensor) -> ImageData:
    """``data`` (``factor = 1``: every pixel trained on) with its derivative targets replaced by
    ``gradient (C, 2, H, W)`` per pixel step (for evaluation and training alike)."""
    if data.factor != 1:
        raise ValueError("gradient targets replace the targets of every pixel: prepare the image with factor = 1")
    c, d, h, w = gradient.shape
    flat = gradient.permute(2, 3, 0, 1).reshape(h * w, c, d).contiguous()
    return dataclasses.replace(data, gradient=gradient, train_jacobian=flat)


def shift_pixels(field: Tensor, rows: int, cols: int) -> Tensor:
    """``out[..., r, c] = field[..., r + rows, c + cols]``; positions that fall off the field take its
    nearest edge value. Moves source content by (-rows, -cols) pixels."""
    h, w = field.shape[-2:]
    r = (torch.arange(h) + rows).clamp(0, h - 1)
    c = (torch.arange(w) + cols).clamp(0, w - 1)
    return field[..., r[:, None], c[None, :]]


def outline(mask: Tensor) -> Tensor:
    """(H, W) bool: the pixels of ``mask`` with a 4- or 8-neighbour outside it (its one-pixel border)."""
    outside = (~mask).float()[None, None]
    near_outside = F.max_pool2d(F.pad(outside, (1, 1, 1, 1), value=1.0), 3, stride=1)[0, 0] > 0
    return mask & near_outside


def display_rgb(image: Tensor) -> Tensor:
    """(C, H, W) in [-1, 1] -> (H, W, 3) in [0, 1] for figures (gray repeated)."""
    unit = to_unit_range(image.float()).clamp(0, 1)
    return unit.expand(3, -1, -1).permute(1, 2, 0) if unit.shape[0] == 1 else unit.permute(1, 2, 0)


# -------------------------------------------------------------------------------------------- mask
def edit_mask(shape: str, centre: Sequence[float], radii: Sequence[float], height: int, width: int) -> Tensor:
    """(H, W) bool, True inside an ellipse or rectangle (``centre``, ``radii`` in [-1, 1] coordinates (x, y))."""
    grid = image_grid(height, width, dtype=torch.float64).reshape(height, width, 2)
    u = (grid[..., 0] - centre[0]) / radii[0]
    v = (grid[..., 1] - centre[1]) / radii[1]
    inside = (u ** 2 + v ** 2 <= 1.0) if shape == "ellipse" else (u.abs() <= 1.0) & (v.abs() <= 1.0)
    return inside


def source_shift(centre: Sequence[float], source_centre: Optional[Sequence[float]], height: int, width: int
                 ) -> Tuple[int, int]:
    """(rows, cols): whole pixels from a target pixel in the mask to the source pixel cloned into it."""
    if source_centre is None:
        return 0, 0
    step_x, step_y = image_step(height, width)
    return round((source_centre[1] - centre[1]) / step_y), round((source_centre[0] - centre[0]) / step_x)


# ------------------------------------------------------------------------------------------- tasks
class GradientComposite(ImageRegression):
    """Fit from gradients only (``der``), target ``alpha grad f1 + (1 - alpha) grad f2`` at every pixel.

    image1, image2: (C, H, W) the fitted networks' images; gradient1, gradient2: (C, 2, H, W) their exact
    gradients per pixel step. The value term is logged against ``alpha f1 + (1 - alpha) f2`` (not trained on).
    """

    def __init__(self, image1: Tensor, image2: Tensor, gradient1: Tensor, gradient2: Tensor, alpha: float, *,
                 engine: EngineOptions = EngineOptions(), batch_size: int = 0, eval_chunk_size: int = 65536,
                 device: torch.device = torch.device("cpu"), memory: MemoryOptions = MemoryOptions()):
        blend = alpha * image1 + (1.0 - alpha) * image2
        target = alpha * gradient1 + (1.0 - alpha) * gradient2
        data = with_gradient_target(prepare_image(blend, factor=1, source=f"{alpha} f1 + {1 - alpha} f2"), target)
        super().__init__(data, supervision=SupervisionOptions(supervision="der"), engine=engine, batch_size=batch_size,
                         eval_chunk_size=eval_chunk_size, device=device, memory=memory)
        self.alpha, self.parts = alpha, (image1, image2, gradient1, gradient2)

    def _scores(self, model: nn.Module, stride: int = 1) -> Dict[str, float]:
        """``psnr_grad_full``, ``psnr_offset_full`` and ``rho_ag_full`` at every ``stride``-th pixel."""
        pred, target = self.render(model, stride), strided(self.data.image, stride)
        return {"psnr_grad_full": derivative_psnr(self.render_gradient(model, stride),
                                                  strided(self.data.gradient, stride)),
                "psnr_offset_full": poisson_image_psnrs(pred, target)["psnr_offset"],
                "rho_ag_full": self.rho_ag(model, stride)}

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """The image with the best constant removed (``psnr_offset_full``, as every Poisson run) and the gradient."""
        return self._scores(model)

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, Any]:
        """:meth:`evaluate`'s scores at every ``stride``-th pixel (module docstring), the constant added per
        channel (fitted on those pixels) and ``final_eval_shape``."""
        model.eval()
        pred = self.render(model, stride)
        offset = (remove_offset(pred, strided(self.data.image, stride)) - pred)[:, 0, 0]  # the constant added
        return {**self._scores(model, stride), "alpha": self.alpha, "offset": [round(float(o), 6) for o in offset],
                "final_eval_shape": list(pred.shape[1:])}

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """composite.png: f1, f2, the composite (best constant added) and the value blend; their gradient
        magnitudes below (one colour scale). The composite alone: composite_raw.png (8-bit, best constant added,
        as shown) and composite.npy (the render, (H, W, C) float32, no constant). All at the final evaluation's
        pixels (``final_eval_stride`` in ``metrics``; 1: the image's resolution), from its renders."""
        from ...reporting.outputs import save_array, save_image
        from ...reporting.plots import save_view_grid

        stride = int(metrics.get("final_eval_stride", 1))
        image1, image2, gradient1, gradient2 = (strided(part, stride) for part in self.parts)
        pred, blend = self.render(model, stride), strided(self.data.image, stride)
        aligned = remove_offset(pred, blend)
        save_array(run_dir / "composite.npy", pred)
        save_image(run_dir / "composite_raw.png", aligned)
        a = self.alpha
        grad = gradient_magnitude(self.render_gradient(model, stride))
        rows = [[("f1", display_rgb(image1)), ("f2", display_rgb(image2)),
                 (f"composite from gradients only\n(+ best constant) {metrics['psnr_offset_full']:.2f} dB",
                  display_rgb(aligned)),
                 (f"value blend {a:g} f1 + {1 - a:g} f2", display_rgb(blend))],
                [("|grad f1|", gradient_magnitude(gradient1)), ("|grad f2|", gradient_magnitude(gradient2)),
                 (f"|grad composite| {metrics['psnr_grad_full']:.2f} dB", grad),
                 (f"|target| = |{a:g} grad f1 + {1 - a:g} grad f2|",
                  gradient_magnitude(strided(self.data.gradient, stride)))]]
        save_view_grid(run_dir / "composite.png", rows, shared_scale=True,
                       suptitle=f"gradient composite, alpha = {a:g} (gradient magnitude per pixel step)")


class SeamlessCloning(ImageRegression):
    """Poisson cloning: the source's gradients inside ``mask``, the target's values and gradients outside.

    target, source: (C, H, W) in [-1, 1]; mask: (H, W) bool in target pixels; shift: (rows, cols) from a
    target pixel in the mask to the source pixel whose gradient it takes (:func:`source_shift`).
    Loss: value MSE over the pixels outside the mask + ``lambda_der`` x the derivative term over all pixels.
    """

    def __init__(self, target: Tensor, source: Tensor, mask: Tensor, shift: Tuple[int, int] = (0, 0), *,
                 lambda_der: float = 1.0, der_operator: str = "sobel", engine: EngineOptions = EngineOptions(),
                 batch_size: int = 0, eval_chunk_size: int = 65536, device: torch.device = torch.device("cpu"),
                 memory: MemoryOptions = MemoryOptions()):
        if not mask.any() or mask.all():
            raise ConfigError(f"the mask covers {int(mask.sum())} of {mask.numel()} pixels; cloning needs pixels "
                              f"inside and outside it (change mask_radii)")
        data = prepare_image(target, factor=1, der_operator=der_operator, source="target")
        source_gradient = shift_pixels(image_gradient(source, der_operator), *shift)
        guidance = torch.where(mask, source_gradient, data.gradient)
        supervision = SupervisionOptions(supervision="val_der", lambda_der=lambda_der, der_operator=der_operator)
        super().__init__(with_gradient_target(data, guidance), supervision=supervision, engine=engine,
                         batch_size=batch_size, eval_chunk_size=eval_chunk_size, device=device, memory=memory)
        self.mask, self.source, self.shift = mask, source, shift
        self.outside = (~mask).reshape(-1).to(device)

    def loss(self, model: nn.Module, batch: Optional[RegressionBatch]) -> Dict[str, Tensor]:
        pick = (batch or RegressionBatch()).pick
        d = value_and_derivatives(model, pick(self.coords), scale=self.scale, mode=self.der_mode,
                                  engine=self.der_engine, recompute_tangents=self.der_recompute)
        keep = pick(self.outside)
        return sobolev_loss("val_der", d.value[keep], pick(self.values)[keep], d.jacobian, pick(self.target),
                            self.lambda_der)

    def loss_blocks(self, model: nn.Module, batch: Optional[RegressionBatch]) -> Iterator[Dict[str, Tensor]]:
        """:meth:`loss` in row blocks of at most :meth:`block_rows` (the batch itself when it fits), whose terms
        sum to the batch's: a block's value term is its outside pixels' squared error summed over the batch's
        outside pixels and channels, its derivative term its rows' summed over the batch's rows."""
        batch = batch or RegressionBatch()
        n = self.num_samples if batch.index is None else batch.index.shape[0]
        size = self.block_rows(model, n)
        if size >= n:
            yield self.loss(model, batch)
            return
        index = torch.arange(n, device=self.coords.device) if batch.index is None else batch.index
        outside = int(self.outside[index].sum())
        for start in range(0, n, size):
            rows = index[start:start + size]
            d = value_and_derivatives(model, self.coords[rows], scale=self.scale, mode=self.der_mode,
                                      engine=self.der_engine, recompute_tangents=self.der_recompute)
            keep = self.outside[rows]
            value = ((d.value[keep] - self.values[rows][keep]) ** 2).sum() / (outside * d.value.shape[1])
            derivative = ((d.jacobian - self.target[rows]) ** 2).sum() / n
            yield {"value": value, "derivative": derivative, "total": value + self.lambda_der * derivative}

    def naive_paste(self) -> Tensor:
        """(C, H, W): the source's pixels copied into the mask, the target elsewhere."""
        return torch.where(self.mask, shift_pixels(self.source, *self.shift), self.data.image)

    def _scores(self, model: nn.Module, stride: int = 1) -> Dict[str, float]:
        """PSNR of the values outside the mask and of the gradients inside it, at every ``stride``-th pixel."""
        pred, grad, mask = self.render(model, stride), self.render_gradient(model, stride), strided(self.mask, stride)
        target, guidance = strided(self.data.image, stride), strided(self.data.gradient, stride)
        return {"psnr_outside": psnr(to_unit_range(pred[:, ~mask]), to_unit_range(target[:, ~mask])),
                "psnr_grad_inside": derivative_psnr(grad[..., mask], guidance[..., mask])}

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        return self._scores(model)

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, Any]:
        """:meth:`evaluate`'s scores, the gradients outside the mask and rho_AG against the target, at every
        ``stride``-th pixel (module docstring); ``mask_pixels``: the whole mask's size (the edit's, not what is
        scored)."""
        mask = strided(self.mask, stride)
        if not mask.any() or mask.all():
            raise ConfigError(f"final_eval_stride = {stride} keeps {int(mask.sum())} of {mask.numel()} pixels inside "
                              f"the mask; scoring a clone needs pixels inside and outside it: use a smaller stride")
        model.eval()
        grad, guidance = self.render_gradient(model, stride), strided(self.data.gradient, stride)
        return {**self._scores(model, stride),
                "psnr_grad_outside": derivative_psnr(grad[..., ~mask], guidance[..., ~mask]),
                "rho_ag_full": self.rho_ag(model, stride),  # against the target, which the clone changes in the mask
                "mask_pixels": int(self.mask.sum()), "final_eval_shape": list(mask.shape)}

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """cloning.png: target, source with the mask outline, naive copy-paste, the cloned result; the
        guidance field's gradient magnitude and the network's below. The cloned result alone: cloned.png (8-bit)
        and cloned.npy ((H, W, C) float32 in [-1, 1]). All at the final evaluation's pixels (``final_eval_stride``
        in ``metrics``; 1: the target's resolution), from its renders."""
        from ...reporting.outputs import save_array, save_image
        from ...reporting.plots import save_view_grid

        stride = int(metrics.get("final_eval_stride", 1))
        pred = self.render(model, stride)
        save_image(run_dir / "cloned.png", pred)
        save_array(run_dir / "cloned.npy", pred)
        source_view = display_rgb(self.source).clone()
        source_view[outline(shift_pixels(self.mask, -self.shift[0], -self.shift[1]))] = torch.tensor(OUTLINE_RGB)
        rows = [[("target", display_rgb(strided(self.data.image, stride))),
                 ("source (mask outlined)", strided(source_view.permute(2, 0, 1), stride).permute(1, 2, 0)),
                 ("naive copy-paste", display_rgb(strided(self.naive_paste(), stride))),
                 (f"cloned (outside {metrics['psnr_outside']:.2f} dB)", display_rgb(pred))],
                [("|guidance| (source in, target out)", gradient_magnitude(strided(self.data.gradient, stride))),
                 (f"|grad network| (inside {metrics['psnr_grad_inside']:.2f} dB)",
                  gradient_magnitude(self.render_gradient(model, stride)))]]
        save_view_grid(run_dir / "cloning.png", rows, shared_scale=True,
                       suptitle="seamless cloning (gradient magnitude per pixel step)")


# -------------------------------------------------------------------------------------------- runs
ModelFactory = Callable[[int, int], nn.Module]
"""(channels, sidelength) -> a freshly initialised network with that many outputs for a grid of that
side (the positional encoding's Nyquist rule); the entry script's factory seeds the RNGs first."""
FitConfigFactory = Callable[[bool], FitConfig]
"""The run's FitConfig, given whether the run resumes."""


def without(config: Mapping[str, Any], keys: Sequence[str], **changes) -> Dict[str, Any]:
    """``config`` less ``keys``, with ``changes`` applied: the resolved config of one sub-run."""
    return {**{k: v for k, v in config.items() if k not in keys}, **changes}


def fit_or_reuse(run: RunDirectory, task: ImageRegression, make_model: ModelFactory, fit_config: FitConfigFactory,
                 config: Mapping[str, Any], device: torch.device, supervision: str, summary: Sequence[str],
                 extra_metrics: Optional[Dict[str, Any]] = None, final_eval: FinalEvalOptions = FinalEvalOptions(),
                 progress_bars: bool = False) -> Tuple[nn.Module, Dict[str, Any]]:
    """(model, metrics) of ``run``: trained (new or resumed), or, for a finished run (``skip``), its
    network loaded from the newest checkpoint and its metrics.json. ``final_eval``: what the end of the run
    scores and writes; ``progress_bars``: bars over the task's renders (their durations go to the run's log)."""
    from ...training.experiment import describe_model, train_and_report

    task.progress = Progress(bars=progress_bars) if run.mode == "skip" else Progress(progress_bars, run.print)
    if run.mode == "skip":
        ckpt = latest_checkpoint(run.checkpoints)
        run.close()
        if ckpt is None:
            raise DataError(f"{run.path} is finished but has no checkpoint to reuse; pass --overwrite to redo it")
        return load_model(ckpt, device).eval(), run.read_metrics()
    model = make_model(task.data.channels, min(task.data.shape)).to(device)
    describe_model(model, supervision, device, run)
    metrics = train_and_report("image_editing", model, task, run, fit_config(run.mode == "resume"), config, device,
                               extra_metrics=extra_metrics, summary=summary, final_eval=final_eval)
    return model.eval(), metrics


def run_gradient_composite(options: EditOptions, config: Mapping[str, Any], identity: RunIdentity,
                           make_model: ModelFactory, fit_config: FitConfigFactory,
                           device: torch.device = torch.device("cpu"),
                           resume: bool = False, overwrite: bool = False, progress_bars: bool = False
                           ) -> Dict[str, Any]:
    """Fits f1 (``filename``) and f2 (``filename2``) to values, then the composite to
    ``alpha grad f1 + (1 - alpha) grad f2``; runs in ``<logging_root>/<exp_name>/{f1,f2,composite}``.

    ``config``: the resolved config (plain values). Each sub-run records and compares only the keys it
    reads (f2's image under ``filename``), so a new ``alpha`` reuses f1 and f2. Returns the composite's metrics.
    Every run is scored as ``options.final_eval`` says; the composite's targets are f1's and f2's full renders.
    """
    o = options
    image1, image2, sources, notes = load_image_pair(o.filename, o.filename2, o.sidelength, o.is_gray, o.data_root,
                                                     o.dataset)
    root, name = o.logging_root, o.exp_name
    value_keys = ("edit", "filename2") + COMPOSITE_KEYS + CLONE_KEYS
    configs = {"f1": without(config, value_keys, exp_name=f"{name}/f1"),
               "f2": without(config, value_keys, exp_name=f"{name}/f2", filename=o.filename2),
               "composite": without(config, CLONE_KEYS, exp_name=f"{name}/composite")}
    # Every clash with an existing run is reported before anything trains.
    runs = {part: RunDirectory(root, cfg["exp_name"], resume, overwrite, cfg, identity) for part, cfg in configs.items()}
    engine = o.engine
    fitted = {}
    for part, image, source in (("f1", image1, sources[0]), ("f2", image2, sources[1])):
        run = runs[part]
        if run.mode == "skip":
            run.print(f"reusing {run.path}: a finished run of this config (--overwrite redoes it)")
        else:
            for note in notes:
                run.print(f"note: {note}")
        task = ImageRegression(prepare_image(image, factor=1, source=source), supervision=SupervisionOptions("val"),
                               engine=engine, batch_size=o.batch_size, eval_chunk_size=o.eval_chunk_size,
                               device=device, memory=o.memory)
        model, metrics = fit_or_reuse(run, task, make_model, fit_config, configs[part], device, "val",
                                      ("psnr_full",), {"image": source, "image_shape": list(image.shape)},
                                      o.final_eval, progress_bars)
        fitted[part] = (task.render(model), task.render_gradient(model), metrics)  # the composite's targets
    (img1, grad1, m1), (img2, grad2, m2) = fitted["f1"], fitted["f2"]
    task = GradientComposite(img1, img2, grad1, grad2, o.alpha, engine=engine, batch_size=o.batch_size,
                             eval_chunk_size=o.eval_chunk_size, device=device, memory=o.memory)
    run = runs["composite"]
    if run.mode == "skip":
        run.print(f"reusing {run.path}: a finished run of this config (--overwrite redoes it)")
    extra = {"images": sources, "image_shape": list(img1.shape), "psnr_f1_full": m1.get("psnr_full"),
             "psnr_f2_full": m2.get("psnr_full")}
    _, metrics = fit_or_reuse(run, task, make_model, fit_config, configs["composite"], device, "der (composite)",
                              ("psnr_grad_full", "psnr_offset_full"), extra, o.final_eval, progress_bars)
    return metrics


def run_seamless_cloning(options: EditOptions, config: Mapping[str, Any], identity: RunIdentity,
                         make_model: ModelFactory, fit_config: FitConfigFactory,
                         device: torch.device = torch.device("cpu"),
                         resume: bool = False, overwrite: bool = False, progress_bars: bool = False
                         ) -> Dict[str, Any]:
    """Clones the source (``filename2``) into the target (``filename``) inside the mask; one run in
    ``<logging_root>/<exp_name>``. Returns its metrics."""
    o = options
    centre, radii, source_centre = o.mask_centre, o.mask_radii, o.source_centre
    target, source, sources, notes = load_image_pair(o.filename, o.filename2, o.sidelength, o.is_gray, o.data_root,
                                                     o.dataset)
    _, h, w = target.shape
    mask = edit_mask(o.mask_shape, centre, radii, h, w)
    shift = source_shift(centre, source_centre, h, w)
    task = SeamlessCloning(target, source, mask, shift, lambda_der=o.lambda_der, der_operator=o.der_operator,
                           engine=o.engine, batch_size=o.batch_size, eval_chunk_size=o.eval_chunk_size, device=device,
                           memory=o.memory)
    from ...training.experiment import open_run

    run_config = without(config, COMPOSITE_KEYS)
    run = open_run(o.logging_root, o.exp_name, run_config, identity, resume, overwrite)
    if run.mode != "skip":
        run.print(f"target {sources[0]}, source {sources[1]}, {h}x{w}x{target.shape[0]}; mask {o.mask_shape} "
                  f"of {int(mask.sum())} pixels, source shifted by {shift[0]} rows, {shift[1]} columns")
        for note in notes:
            run.print(f"note: {note}")
    extra = {"images": sources, "image_shape": [h, w, target.shape[0]], "source_shift_pixels": list(shift)}
    _, metrics = fit_or_reuse(run, task, make_model, fit_config, run_config, device, f"val outside + "
                              f"{o.lambda_der:g} x der (clone)", ("psnr_outside", "psnr_grad_inside"), extra,
                              o.final_eval, progress_bars)
    return metrics


def run_image_edit(config: Mapping[str, Any], identity: RunIdentity, make_model: ModelFactory,
                   fit_config: FitConfigFactory, device: torch.device = torch.device("cpu"), resume: bool = False,
                   overwrite: bool = False, progress_bars: bool = False) -> Dict[str, Any]:
    """The edit the resolved ``config`` names (``composite`` or ``clone``); its metrics. ``config`` is what
    the runs record (each its own part of it); :class:`EditOptions` reads and checks it. ``progress_bars``: bars
    over the renders (``--no_progress`` turns them off)."""
    options = EditOptions.from_config(config)
    edits = {"composite": run_gradient_composite, "clone": run_seamless_cloning}
    return edits[options.edit](options, config, identity, make_model, fit_config, device, resume, overwrite,
                               progress_bars)
