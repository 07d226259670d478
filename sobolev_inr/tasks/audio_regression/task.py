"""Audio regression (Sobolev-INR paper, supplement section 2): fit an MLP to a clip from 1 in ``factor`` samples.

Metrics follow the original audio code: the network is queried at every sample of the clip and
scored on the held-out samples (all those off the ``::factor`` training grid) with
PSNR = 10 log10(1 / MSE), peak 1 for a signal normalised to [-1, 1] by its peak. Derivatives are
scored per sample step against the central-difference targets of the full-rate signal.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

from torch import Tensor, nn

from ...data.audio import AudioData, write_wav
from ...data.coords import derivative_scale
from ...errors import ConfigError
from ...metrics import derivative_psnr, psnr, rho_ag
from ..image_regression import stride_error
from ..regression import SampledSignalRegression, cache_name, predict, predict_jacobian

ZOOM_SAMPLES = 600
"""Length of the zoomed window of the waveform figure (the original code's 600 samples)."""


class AudioRegression(SampledSignalRegression):
    """Training on ``data``'s training samples; evaluation, WAV and figures on the whole clip.

    With ``factor = 1`` every sample is trained on: the held-out metrics are then absent (not NaN).
    """

    psnr_peak = 1.0  # the original audio code's PSNR: 10 log10(1 / MSE) on a signal in [-1, 1]
    data: AudioData

    def render(self, model: nn.Module, stride: int = 1) -> Tensor:
        """The network's signal at every ``stride``-th sample (1: every sample): (N',), on CPU."""
        return self.once_per_weights(cache_name("signal", stride), model, lambda: predict(
            model, self.eval_coords[::stride], self.eval_chunk_size, progress=self.progress, desc="signal").cpu()[:, 0])

    def render_derivative(self, model: nn.Module, stride: int = 1) -> Tensor:
        """The network's derivative per sample step at every ``stride``-th sample: (N',), on CPU."""
        scale = derivative_scale(self.data.sample_step, "pixel").to(self.eval_coords)
        return self.once_per_weights(cache_name("derivative", stride), model, lambda: predict_jacobian(
            model, self.eval_coords[::stride], scale, self.eval_chunk_size, self.der_mode, progress=self.progress,
            desc="derivative").cpu()[:, 0, 0])

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """Held-out PSNR (peak 1), as the original code reports it; all samples when nothing is held out."""
        pred, target, mask = self.render(model), self.data.samples, self.data.heldout
        if not self.has_heldout:
            return {"psnr_full": psnr(pred, target)}
        return {"psnr_heldout": psnr(pred[mask], target[mask])}

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, Any]:
        """What ``metrics.json`` reports for a clip: held-out (when any sample is held out), training and all
        samples, values and derivatives, scored on every ``stride``-th sample (1: all of them; the targets and
        the held-out mask taken at the same samples); ``final_eval_shape`` [N']."""
        if self.has_heldout and not self.data.heldout[::stride].any():
            raise ConfigError(stride_error(stride, self.data.factor, "sample"))
        model.eval()
        pred, target, mask = self.render(model, stride), self.data.samples[::stride], self.data.heldout[::stride]
        der, der_target = self.render_derivative(model, stride), self.data.derivative[::stride]
        metrics = {
            "psnr_full": psnr(pred, target),
            "psnr_train": psnr(pred[~mask], target[~mask]),
            "psnr_der_full": derivative_psnr(der, der_target),
            "rho_ag_full": rho_ag(pred, target, signal_dims=1),  # SPDER's Table 2 reports it for audio too
            "num_heldout_samples": int(mask.sum()), "final_eval_shape": [pred.shape[0]],
        }
        if self.has_heldout:
            metrics.update(psnr_heldout=psnr(pred[mask], target[mask]),
                           psnr_der_heldout=derivative_psnr(der[mask], der_target[mask]))
        return metrics

    def zoom_window(self, stride: int = 1) -> Tuple[int, int]:
        """``ZOOM_SAMPLES`` samples of the clip taken at every ``stride``-th sample, centred on its loudest one
        (start, stop)."""
        samples = self.data.samples[::stride]
        n = samples.shape[0]
        length = min(ZOOM_SAMPLES, n)
        centre = int(samples.abs().argmax())
        start = min(max(centre - length // 2, 0), n - length)
        return start, start + length

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Mapping[str, Any]) -> None:
        """reconstruction.wav and ground_truth.wav (16-bit, the clip's rate), waveform.png, spectrogram.png; from
        the final evaluation's samples (``final_eval_stride`` k in ``metrics``: every k-th sample, written at the
        rate divided by k), not rendered again."""
        from ...reporting.plots import save_spectrograms, save_waveforms

        run_dir = Path(run_dir)
        stride = int(metrics.get("final_eval_stride", 1))
        model.eval()
        pred, target = self.render(model, stride), self.data.samples[::stride]
        rate = self.data.rate if stride == 1 else max(1, round(self.data.rate / stride))
        write_wav(run_dir / "reconstruction.wav", pred, rate)
        write_wav(run_dir / "ground_truth.wav", target, rate)
        error = pred - target
        heldout = f"{metrics['psnr_heldout']:.2f} dB held-out, " if self.has_heldout else ""
        every = f" (every {stride}th sample scored)" if stride > 1 else ""
        title = (f"{heldout}{metrics['psnr_full']:.2f} dB all samples (peak 1); "
                 f"trained on 1 in {self.data.factor} samples{every}")
        marks = (~self.data.heldout[::stride]).nonzero()[:, 0]  # the training samples among those shown
        save_waveforms(run_dir / "waveform.png",
                       [("ground truth", target), ("reconstruction", pred), ("error (rec. - g.t.)", error)],
                       rate, zoom=self.zoom_window(stride), marks=marks, suptitle=title)
        save_spectrograms(run_dir / "spectrogram.png",
                          [("ground truth", target), ("reconstruction", pred), ("error (rec. - g.t.)", error)],
                          rate, suptitle=title)
