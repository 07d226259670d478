"""Audio regression (Sobolev-INR paper, supplement section 2): fit an MLP to a clip from 1 in ``factor`` samples.

Metrics follow the original audio code: the network is queried at every sample of the clip and
scored on the held-out samples (all those off the ``::factor`` training grid) with
PSNR = 10 log10(1 / MSE), peak 1 for a signal normalised to [-1, 1] by its peak. Derivatives are
scored per sample step against the central-difference targets of the full-rate signal.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

from torch import Tensor, nn

from ...data.audio import AudioData, write_wav
from ...data.coords import derivative_scale
from ...metrics import derivative_psnr, psnr, rho_ag
from ..regression import SampledSignalRegression, predict, predict_jacobian

ZOOM_SAMPLES = 600
"""Length of the zoomed window of the waveform figure (the original code's 600 samples)."""


class AudioRegression(SampledSignalRegression):
    """Training on ``data``'s training samples; evaluation, WAV and figures on the whole clip.

    With ``factor = 1`` every sample is trained on: the held-out metrics are then absent (not NaN).
    """

    psnr_peak = 1.0  # the original audio code's PSNR: 10 log10(1 / MSE) on a signal in [-1, 1]
    data: AudioData

    def render(self, model: nn.Module) -> Tensor:
        """The network's signal at every sample: (N,), on CPU."""
        return self.once_per_weights("signal", model, lambda: predict(
            model, self.eval_coords, self.eval_chunk_size).cpu()[:, 0])

    def render_derivative(self, model: nn.Module) -> Tensor:
        """The network's derivative per sample step at every sample: (N,), on CPU."""
        scale = derivative_scale(self.data.sample_step, "pixel").to(self.eval_coords)
        return self.once_per_weights("derivative", model, lambda: predict_jacobian(
            model, self.eval_coords, scale, self.eval_chunk_size, self.der_mode).cpu()[:, 0, 0])

    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """Held-out PSNR (peak 1), as the original code reports it; all samples when nothing is held out."""
        pred, target, mask = self.render(model), self.data.samples, self.data.heldout
        if not self.has_heldout:
            return {"psnr_full": psnr(pred, target)}
        return {"psnr_heldout": psnr(pred[mask], target[mask])}

    def final_metrics(self, model: nn.Module, stride: int = 1) -> Dict[str, float]:
        """What ``metrics.json`` reports for a clip: held-out (when any sample is held out), training and all
        samples, values and derivatives."""
        model.eval()
        pred, target, mask = self.render(model), self.data.samples, self.data.heldout
        der, der_target = self.render_derivative(model), self.data.derivative
        metrics = {
            "psnr_full": psnr(pred, target),
            "psnr_train": psnr(pred[~mask], target[~mask]),
            "psnr_der_full": derivative_psnr(der, der_target),
            "rho_ag_full": rho_ag(pred, target, signal_dims=1),  # SPDER's Table 2 reports it for audio too
            "num_heldout_samples": int(mask.sum()),
        }
        if self.has_heldout:
            metrics.update(psnr_heldout=psnr(pred[mask], target[mask]),
                           psnr_der_heldout=derivative_psnr(der[mask], der_target[mask]))
        return metrics

    def zoom_window(self) -> Tuple[int, int]:
        """``ZOOM_SAMPLES`` samples centred on the loudest sample of the clip (start, stop)."""
        n = self.data.num_samples
        length = min(ZOOM_SAMPLES, n)
        centre = int(self.data.samples.abs().argmax())
        start = min(max(centre - length // 2, 0), n - length)
        return start, start + length

    def write_outputs(self, model: nn.Module, run_dir: Path, metrics: Dict[str, float]) -> None:
        """reconstruction.wav and ground_truth.wav (16-bit, the clip's rate), waveform.png, spectrogram.png."""
        from ...reporting.plots import save_spectrograms, save_waveforms

        run_dir = Path(run_dir)
        model.eval()
        pred, target = self.render(model), self.data.samples
        write_wav(run_dir / "reconstruction.wav", pred, self.data.rate)
        write_wav(run_dir / "ground_truth.wav", target, self.data.rate)
        error = pred - target
        heldout = f"{metrics['psnr_heldout']:.2f} dB held-out, " if self.has_heldout else ""
        title = (f"{heldout}{metrics['psnr_full']:.2f} dB all samples (peak 1); "
                 f"trained on 1 in {self.data.factor} samples")
        save_waveforms(run_dir / "waveform.png",
                       [("ground truth", target), ("reconstruction", pred), ("error (rec. - g.t.)", error)],
                       self.data.rate, zoom=self.zoom_window(), marks=self.data.train_index, suptitle=title)
        save_spectrograms(run_dir / "spectrogram.png",
                          [("ground truth", target), ("reconstruction", pred), ("error (rec. - g.t.)", error)],
                          self.data.rate, suptitle=title)
