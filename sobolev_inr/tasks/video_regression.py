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
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping

import numpy as np
from torch import Tensor, nn

from ..coords import derivative_scale
from ..data.video import VideoData, to_uint8, write_animation
from ..metrics import derivative_psnr, frame_quality, psnr, to_unit_range
from ..regression import SampledSignalRegression, predict, predict_jacobian

FIGURE_FRAMES = 4
"""Held-out frames shown in frames.png."""


def _mean(values: List[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


class VideoRegression(SampledSignalRegression):
    """Training on ``data``'s training samples (mini-batches of ``batch_size``); evaluation, the animation
    and the figures on the whole clip, rendered in chunks of ``eval_chunk_size`` samples."""

    psnr_peak = 2.0  # values in [-1, 1]
    data: VideoData

    def render(self, model: nn.Module) -> Tensor:
        """The network's clip on the full grid: (T, C, H, W) in the value range, on CPU."""
        t, h, w = self.data.shape
        return self.once_per_weights("clip", model, lambda: predict(
            model, self.eval_coords, self.eval_chunk_size).cpu().reshape(t, h, w, -1).permute(0, 3, 1, 2))

    def render_gradient(self, model: nn.Module) -> Tensor:
        """The network's derivatives per sample step on the full grid: (T, C, 3, H, W) [d/dt, d/dy, d/dx], on CPU."""
        t, h, w = self.data.shape
        scale = derivative_scale(self.data.derivative_step, "pixel").to(self.eval_coords)

        def compute():
            jac = predict_jacobian(model, self.eval_coords, scale, self.eval_chunk_size, self.der_mode).cpu()
            return jac.reshape(t, h, w, -1, 3).permute(0, 3, 4, 1, 2)

        return self.once_per_weights("gradient", model, compute)

    def frame_metrics(self, model: nn.Module) -> Dict[str, list]:
        return frame_quality(self.render(model), self.data.frames)

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """PSNR and SSIM of the frames never trained on, PSNR over all held-out samples."""
        per_frame = self.frame_metrics(model)
        held = self.data.heldout_frames
        out = {"psnr_heldout": self._psnr_heldout(model)} if self.has_heldout else {}
        if held:
            out.update(psnr_heldout_frames=_mean([per_frame["psnr"][k] for k in held]),
                       ssim_heldout_frames=_mean([per_frame["ssim"][k] for k in held]))
        return {**out, "psnr_full": psnr(to_unit_range(self.render(model)), to_unit_range(self.data.frames))}

    def _psnr_heldout(self, model: nn.Module) -> float:
        pred, target, mask = self.render(model), self.data.frames, self.data.heldout
        return psnr(to_unit_range(pred.permute(1, 0, 2, 3)[:, mask]), to_unit_range(target.permute(1, 0, 2, 3)[:, mask]))

    def final_metrics(self, model: nn.Module) -> Dict[str, object]:
        """Everything ``metrics.json`` reports for a clip (see the module docstring)."""
        model.eval()
        pred, target, mask = self.render(model), self.data.frames, self.data.heldout
        per_frame = self.frame_metrics(model)
        trained, held = self.data.train_frames, self.data.heldout_frames
        grad = self.render_gradient(model)
        grad_mask = mask[:, None, None].expand_as(grad)
        metrics: Dict[str, object] = {
            "psnr_full": psnr(to_unit_range(pred), to_unit_range(target)),
            "ssim_full": _mean(per_frame["ssim"]),
            "psnr_train_frames": _mean([per_frame["psnr"][k] for k in trained]),
            "ssim_train_frames": _mean([per_frame["ssim"][k] for k in trained]),
            "psnr_der_full": derivative_psnr(grad, self.data.gradient),
            "num_heldout_samples": int(mask.sum()), "num_heldout_frames": len(held),
            "psnr_per_frame": per_frame["psnr"], "ssim_per_frame": per_frame["ssim"], "train_frames": list(trained),
        }
        if held:
            metrics.update(psnr_heldout_frames=_mean([per_frame["psnr"][k] for k in held]),
                           ssim_heldout_frames=_mean([per_frame["ssim"][k] for k in held]))
        if self.has_heldout:
            metrics.update(psnr_heldout=self._psnr_heldout(model),
                           psnr_der_heldout=derivative_psnr(grad[grad_mask], self.data.gradient[grad_mask]))
        return metrics

    def figure_frames(self) -> List[int]:
        """Up to ``FIGURE_FRAMES`` frames never trained on, spread over the clip (trained ones if none is held out)."""
        pool = self.data.heldout_frames or self.data.train_frames
        picks = np.linspace(0, len(pool) - 1, min(FIGURE_FRAMES, len(pool))).round().astype(int)
        return [pool[i] for i in picks]

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, object]) -> None:
        """reconstruction.gif (ground truth | reconstruction, side by side, at the clip's frame rate),
        frames.png (held-out frames: ground truth, reconstruction, error) and per_frame.png (PSNR and SSIM
        per frame, trained frames marked)."""
        from ..plots import save_frame_metrics, save_image_grid

        run_dir = Path(run_dir)
        pred, target = self.render(model), self.data.frames
        side_by_side = np.concatenate([to_uint8(target), to_uint8(pred)], axis=2)
        write_animation(run_dir / "reconstruction.gif", side_by_side, self.data.fps)
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
                     f"pixels per axis")
        held = metrics.get("psnr_heldout_frames")
        title = (f"{held:.2f} dB mean over the frames never trained on" if isinstance(held, float)
                 else f"{metrics['psnr_full']:.2f} dB over the clip")
        save_frame_metrics(run_dir / "per_frame.png", {"PSNR (dB)": per_frame, "SSIM": metrics["ssim_per_frame"]},
                           self.data.train_frames, title=title)
