"""Video regression: fit an MLP (t, y, x) -> colour to a clip from a subsampled grid in time and space.

The protocol is the image task's with one axis more (:mod:`sobolev_inr.data.video`): training on every
``time_factor``-th frame and every ``space_factor``-th pixel, with ``val_der`` adding the clip's
derivatives, Sobel in space and central differences in time, per sample step. The network is queried
on the whole clip in chunks and scored frame by frame (:func:`sobolev_inr.metrics.frame_quality`: PSNR
of the colours in [0, 1], SSIM of the luma):

* ``psnr_heldout_frames`` / ``ssim_heldout_frames``: the mean over the frames never trained on (the
  interpolated frames: the held-out set that matters);
* ``psnr_train_frames`` / ``ssim_train_frames``: the mean over the frames on the training grid (whole frames,
  so with ``space_factor`` > 1 they include pixels never trained on);
* ``psnr_heldout``: over every held-out sample at once (as the image task's), ``psnr_full``: over the clip;
* ``psnr_der_heldout`` / ``psnr_der_full``: the network's derivatives against the full-clip targets;
* ``psnr_per_frame``, ``ssim_per_frame``: the per-frame lists.

Big inputs. ``final_metrics(model, stride=k)`` scores every k-th pixel along y and x of EVERY frame
(``final_eval_shape`` [T, H', W'], H' = ceil(H / k)): frames are not strided, since the frames never trained on
are the held-out set that matters and a time stride that is a multiple of ``time_factor`` would drop them all.
The targets (frames, derivative targets, held-out mask) are taken at the same pixels, and SSIM is that of the
strided frames. Renders go through the network in chunks of ``eval_chunk_size`` samples with a progress bar,
and ``write_outputs`` draws the final evaluation's renders (the videos and figures at the scored pixels), so
the clip is rendered once. Training takes the regression's ``memory`` options (row blocks, exact gradient
accumulation: :meth:`~sobolev_inr.tasks.regression.SobolevRegression.loss_blocks`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ...config.options import resolve_path
from ...data.coords import derivative_scale
from ...data.video import VideoData, load_video, prepare_video, square_frames
from ...errors import ConfigError
from ...metrics import derivative_psnr, frame_quality, psnr, to_unit_range
from ...reporting.outputs import save_array, to_uint8, write_video
from ..regression import SampledSignalRegression, predict, predict_jacobian
from . import VideoRegressionOptions, VideoSource, stride_error

FIGURE_FRAMES = 4
"""Held-out frames shown in frames.png."""
SSIM_MIN_SIDE = 6
"""The smallest frame side SSIM's 11-pixel window (reflect-padded by 5) can score."""


def _mean(values: List[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def strided(clip: Tensor, stride: int) -> Tensor:
    """Every ``stride``-th pixel along y and x of ``clip (..., H, W)``, every frame (a view)."""
    return clip[..., ::stride, ::stride]


def _cache_name(name: str, stride: int) -> str:
    """The render cache's entry of ``name`` at ``stride`` (stride 1: the summaries' renders, shared)."""
    return name if stride == 1 else f"{name}@{stride}"


class VideoRegression(SampledSignalRegression):
    """Training on ``data``'s training samples (mini-batches of ``batch_size``, row blocks within ``memory``);
    evaluation, the animation and the figures on the whole clip (or every ``stride``-th pixel of each frame),
    rendered in chunks of ``eval_chunk_size`` samples."""

    psnr_peak = 2.0  # values in [-1, 1]
    data: VideoData

    def grid(self, stride: int = 1) -> Tensor:
        """Coordinates of every ``stride``-th pixel along y and x of every frame: (T H' W', 3), row-major."""
        if stride == 1:
            return self.eval_coords
        t, h, w = self.data.shape
        return self.eval_coords.view(t, h, w, 3)[:, ::stride, ::stride].reshape(-1, 3)

    def strided_shape(self, stride: int = 1) -> List[int]:
        """[T, H', W'] of :meth:`grid` (``final_eval_shape``)."""
        t, h, w = self.data.shape
        return [t, -(-h // stride), -(-w // stride)]

    def render(self, model: nn.Module, stride: int = 1) -> Tensor:
        """The network's clip on every ``stride``-th pixel of each frame (1: the full grid): (T, C, H', W') in the
        value range, on CPU."""
        t, h, w = self.strided_shape(stride)
        return self.once_per_weights(_cache_name("clip", stride), model, lambda: predict(
            model, self.grid(stride), self.eval_chunk_size, progress=self.progress,
            desc="clip").cpu().reshape(t, h, w, -1).permute(0, 3, 1, 2))

    def render_gradient(self, model: nn.Module, stride: int = 1) -> Tensor:
        """The network's derivatives per sample step on every ``stride``-th pixel of each frame: (T, C, 3, H', W')
        [d/dt, d/dy, d/dx], on CPU."""
        t, h, w = self.strided_shape(stride)
        scale = derivative_scale(self.data.derivative_step, "pixel").to(self.eval_coords)

        def compute():
            jac = predict_jacobian(model, self.grid(stride), scale, self.eval_chunk_size, self.der_mode,
                                   progress=self.progress, desc="clip derivatives").cpu()
            return jac.reshape(t, h, w, -1, 3).permute(0, 3, 4, 1, 2)

        return self.once_per_weights(_cache_name("gradient", stride), model, compute)

    def frame_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, list]:
        """PSNR and SSIM of every frame (:func:`~sobolev_inr.metrics.frame_quality`) at every ``stride``-th pixel,
        once per weights."""
        return self.once_per_weights(_cache_name("frame_quality", stride), model, lambda: frame_quality(
            self.render(model, stride), strided(self.data.frames, stride)))

    def _frame_means(self, model: nn.Module, frames: Sequence[int], suffix: str, stride: int = 1) -> Dict[str, float]:
        """``psnr_<suffix>`` and ``ssim_<suffix>``: the means of the per-frame metrics over ``frames``."""
        per_frame = self.frame_metrics(model, stride)
        return {f"psnr_{suffix}": _mean([per_frame["psnr"][k] for k in frames]),
                f"ssim_{suffix}": _mean([per_frame["ssim"][k] for k in frames])}

    def _psnr_full(self, model: nn.Module, stride: int = 1) -> float:
        return psnr(to_unit_range(self.render(model, stride)), to_unit_range(strided(self.data.frames, stride)))

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """PSNR and SSIM of the frames never trained on, PSNR over all held-out samples."""
        out = {"psnr_heldout": self._psnr_heldout(model)} if self.has_heldout else {}
        if self.data.heldout_frames:
            out.update(self._frame_means(model, self.data.heldout_frames, "heldout_frames"))
        return {**out, "psnr_full": self._psnr_full(model)}

    def _psnr_heldout(self, model: nn.Module, stride: int = 1) -> float:
        pred, target = self.render(model, stride), strided(self.data.frames, stride)
        mask = strided(self.data.heldout, stride)
        return psnr(to_unit_range(pred.permute(1, 0, 2, 3)[:, mask]),
                    to_unit_range(target.permute(1, 0, 2, 3)[:, mask]))

    def check_stride(self, stride: int) -> None:
        """ConfigError when every ``stride``-th pixel holds no held-out sample while the clip has some (every frame
        trained on, ``stride`` a multiple of ``space_factor``), or leaves frames too small for SSIM's window."""
        if self.has_heldout and not strided(self.data.heldout, stride).any():
            raise ConfigError(stride_error(stride, self.data.space_factor))
        _, h, w = self.strided_shape(stride)
        if min(h, w) < SSIM_MIN_SIDE:
            raise ConfigError(f"final_eval_stride = {stride} leaves frames of {h}x{w} pixels; SSIM's "
                              f"{2 * SSIM_MIN_SIDE - 1}-pixel window needs at least {SSIM_MIN_SIDE} per side: use a "
                              f"smaller stride")

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, object]:
        """Everything ``metrics.json`` reports for a clip (see the module docstring), at every ``stride``-th pixel
        of each frame; ``final_eval_shape`` [T, H', W']."""
        self.check_stride(stride)
        model.eval()
        mask = strided(self.data.heldout, stride)
        per_frame = self.frame_metrics(model, stride)
        trained, held = self.data.train_frames, self.data.heldout_frames
        grad, grad_target = self.render_gradient(model, stride), strided(self.data.gradient, stride)
        grad_mask = mask[:, None, None].expand_as(grad)
        metrics: Dict[str, object] = {
            "psnr_full": self._psnr_full(model, stride),
            "ssim_full": _mean(per_frame["ssim"]),
            **self._frame_means(model, trained, "train_frames", stride),
            "psnr_der_full": derivative_psnr(grad, grad_target),
            "num_heldout_samples": int(mask.sum()), "num_heldout_frames": len(held),
            "psnr_per_frame": per_frame["psnr"], "ssim_per_frame": per_frame["ssim"], "train_frames": list(trained),
            "final_eval_shape": self.strided_shape(stride),
        }
        if held:
            metrics.update(self._frame_means(model, held, "heldout_frames", stride))
        if self.has_heldout:
            metrics.update(psnr_heldout=self._psnr_heldout(model, stride),
                           psnr_der_heldout=derivative_psnr(grad[grad_mask], grad_target[grad_mask]))
        return metrics

    def figure_frames(self, num: int = FIGURE_FRAMES) -> List[int]:
        """Up to ``num`` frames never trained on, spread over the clip (trained ones if none is held out)."""
        pool = self.data.heldout_frames or self.data.train_frames
        picks = np.linspace(0, len(pool) - 1, min(num, len(pool))).round().astype(int)
        return [pool[i] for i in picks]

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, object]) -> None:
        """reconstruction.npy (the rendered clip, (T, H, W, C) float32 in [-1, 1]), reconstruction.mp4 (or .gif
        without imageio-ffmpeg: the rendered clip alone, at its resolution and frame rate), side_by_side.mp4
        (or .gif: ground truth | reconstruction), frames.png (held-out frames: ground truth, reconstruction,
        error) and per_frame.png (PSNR and SSIM per frame, trained frames marked). All drawn from the final
        evaluation's render, at its pixels (``final_eval_stride`` k in ``metrics``: every k-th pixel along y and x,
        the ground truth likewise; 1: the clip's resolution): the clip is not rendered again."""
        from ...reporting.plots import save_frame_metrics, save_image_grid

        run_dir = Path(run_dir)
        stride = int(metrics.get("final_eval_stride", 1))
        pred, target = self.render(model, stride), strided(self.data.frames, stride)
        save_array(run_dir / "reconstruction.npy", pred)
        write_video(run_dir / "reconstruction", to_uint8(pred), self.data.fps)
        side_by_side = np.concatenate([to_uint8(target), to_uint8(pred)], axis=2)
        write_video(run_dir / "side_by_side", side_by_side, self.data.fps)
        shown = self.figure_frames()
        per_frame = metrics["psnr_per_frame"]
        gt, rec = to_unit_range(target), to_unit_range(pred.clamp(-1.0, 1.0))
        error = ((rec - gt).abs().mean(dim=1, keepdim=True) * 4.0).clamp(0.0, 1.0)
        kind = "never trained on" if self.data.heldout_frames else "trained on"
        save_image_grid(run_dir / "frames.png", [
            [(f"frame {k}: ground truth", gt[k]) for k in shown],
            [(f"frame {k}: {per_frame[k]:.2f} dB", rec[k]) for k in shown],
            [(f"frame {k}: |error| x 4", error[k]) for k in shown]],
            suptitle=f"frames {kind}; trained on 1 in {self.data.time_factor} frames, 1 in {self.data.space_factor} "
                     f"pixels per axis" + (f"; scored and shown at every {stride}th pixel" if stride > 1 else ""))
        held = metrics.get("psnr_heldout_frames")
        title = (f"{held:.2f} dB mean over the frames never trained on" if isinstance(held, float)
                 else f"{metrics['psnr_full']:.2f} dB over the clip")
        save_frame_metrics(run_dir / "per_frame.png", {"PSNR (dB)": per_frame, "SSIM": metrics["ssim_per_frame"]},
                           self.data.train_frames, title=title)


def load_video_source(source: VideoSource, der_operator: str = "sobel", base_dir: Path = Path(".")) -> VideoData:
    """The clip and split ``source`` describes, with ``der_operator`` targets in space; relative paths are
    taken from ``base_dir`` (a run's working directory)."""
    filename = source.filename
    if not filename.startswith("synthetic") and (Path(base_dir) / filename).exists():
        filename = resolve_path(filename, base_dir)
    clip = load_video(filename, resolve_path(source.data_root, base_dir), source.is_gray, source.num_frames,
                      source.first_frame)
    frames, resize_notes = square_frames(clip.frames, source.sidelength)
    return prepare_video(frames, source.time_factor, source.space_factor, der_operator, clip.fps, clip.source,
                         [*clip.notes, *resize_notes])


def video_task(options: VideoRegressionOptions, data: Optional[VideoData] = None,
               device: torch.device = torch.device("cpu"), base_dir: Path = Path(".")) -> VideoRegression:
    """The :class:`VideoRegression` of a run's options (what the entry builds and :func:`load_run` rebuilds),
    on ``data`` if given, else on the clip its source names."""
    if data is None:
        data = load_video_source(options.source, options.supervision.der_operator, base_dir)
    return VideoRegression(data, supervision=options.supervision, engine=options.engine,
                           batch_size=options.batch_size, eval_chunk_size=options.eval_chunk_size, device=device,
                           memory=options.memory)


def load_run(run_dir: Path, device: torch.device = torch.device("cpu")):
    """(model, VideoRegression task, metrics) of a finished video run, rebuilt from its newest checkpoint and
    resolved config."""
    import json

    from ...training.checkpoints import rebuild_run

    model, task = rebuild_run(run_dir, lambda config, base: video_task(VideoRegressionOptions.from_config(config),
                                                                       device=device, base_dir=base))
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return model.to(device).eval(), task, metrics


def compare_runs(run_dirs: Sequence[Path], out: Path, labels: Optional[Sequence[str]] = None, num_frames: int = 4
                 ) -> None:
    """One figure comparing finished runs on the same clip: ``num_frames`` frames never trained on (ground
    truth, then each run's, with its PSNR), and every run's PSNR frame by frame below (trained frames filled)."""
    from matplotlib.figure import Figure

    loaded = [load_run(d) for d in run_dirs]
    labels = list(labels or [Path(d).name for d in run_dirs])
    task0 = loaded[0][1]
    shown = task0.figure_frames(num_frames)
    rows = [("ground truth", to_unit_range(task0.data.frames), None)]
    rows += [(label, to_unit_range(task.render(model).clamp(-1.0, 1.0)), metrics["psnr_per_frame"])
             for (model, task, metrics), label in zip(loaded, labels)]
    fig = Figure(figsize=(2.6 * len(shown), 2.7 * (len(rows) + 1)))
    grid = fig.add_gridspec(len(rows) + 1, len(shown))
    for r, (label, clip, per_frame) in enumerate(rows):
        for c, k in enumerate(shown):
            ax = fig.add_subplot(grid[r, c])
            frame = clip[k].permute(1, 2, 0).numpy()
            ax.imshow(frame[..., 0] if frame.shape[-1] == 1 else frame, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(f"{label}, frame {k}" + (f"\n{per_frame[k]:.2f} dB" if per_frame else ""), fontsize=8)
            ax.axis("off")
    plot = fig.add_subplot(grid[-1, :])  # the last row, full width
    trained = np.zeros(task0.data.shape[0], dtype=bool)
    trained[task0.data.train_frames] = True
    for i, (label, _, per_frame) in enumerate(rows[1:]):
        values = np.asarray(per_frame)
        frames = np.arange(len(values))
        plot.plot(frames, values, color=f"C{i}", linewidth=1, label=label)
        plot.plot(frames[trained], values[trained], "o", color=f"C{i}", markersize=3)
        plot.plot(frames[~trained], values[~trained], "o", mfc="none", color=f"C{i}", markersize=4)
    plot.set_xlabel("frame (filled: trained on; hollow: never trained on)")
    plot.set_ylabel("PSNR (dB)")
    plot.grid(alpha=0.3)
    plot.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
