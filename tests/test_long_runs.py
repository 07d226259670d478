"""The pieces every task's big inputs and long runs rely on: phase timing, gradient accumulation over loss
blocks, the saved-tensor probe behind max_memory_gb, the peak-RSS reset, and the common final-evaluation
options (skip, no figures) as a run records them."""
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from sobolev_inr.config.options import FinalEvalOptions, MemoryOptions
from sobolev_inr.errors import ConfigError
from sobolev_inr.training import memory
from sobolev_inr.training.loop import accumulate_blocks, take_step
from sobolev_inr.training.progress import QUIET, Progress
from sobolev_inr.tasks import run_task


def test_phase_logs_its_duration_and_quiet_logs_nothing():
    lines = []
    with Progress(bars=False, log=lines.append).phase("final evaluation"):
        pass
    assert len(lines) == 1 and lines[0].startswith("final evaluation: ") and lines[0].endswith(" s")
    with QUIET.phase("anything"):
        pass  # no log function to call: nothing printed (nothing to assert but that it runs)
    assert list(QUIET.chunks([1, 2, 3], "chunks")) == [1, 2, 3]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))


def test_take_step_with_blocks_equals_one_batch():
    x, y = torch.randn(64, 2), torch.randn(64, 1)

    def whole(model):
        return {"total": ((model(x) - y) ** 2).mean(), "value": ((model(x) - y) ** 2).mean()}

    def blocks(model):
        for rows in torch.arange(64).split(10):  # uneven blocks: weights n_b / n
            mse = ((model(x[rows]) - y[rows]) ** 2).mean() * len(rows) / 64
            yield {"total": mse, "value": mse}

    results = []
    for loss in (whole, blocks):
        model = _model()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        terms, norm, applied = take_step(optimizer, list(model.parameters()), lambda: loss(model))
        results.append((model, terms, norm, applied))
    (m1, t1, n1, a1), (m2, t2, n2, a2) = results
    assert a1 and a2
    assert torch.allclose(t1["total"].detach(), t2["total"], atol=1e-7)
    assert torch.allclose(n1, n2, atol=1e-6)
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(p, q, atol=1e-7)


def test_accumulate_blocks_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="no blocks"):
        accumulate_blocks(iter([]))


def test_bytes_per_sample_measures_what_backward_keeps():
    width = 64
    model = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))
    x = torch.randn(4096, 2)
    per_sample = memory.bytes_per_sample(lambda n: model(x[:n]).pow(2).mean(), rows=1024)
    # Saved per sample: the input (2), both Linear outputs' tanh results and inputs (a few width-wide rows of
    # float32): between one and ~8 rows of width floats, not the parameters (they do not grow with n).
    assert 4 * width <= per_sample <= 8 * 4 * width
    assert memory.rows_within(1.0, per_sample) == int(2 ** 30 / (per_sample * memory.HEADROOM))
    assert memory.rows_within(1e-12, per_sample) == 1


def test_peak_rss_resets_and_sees_a_big_allocation():
    if not memory.reset_peak_rss():
        pytest.skip("/proc/self/clear_refs is not writable here: the peak RSS cannot be reset")
    before = memory.current_rss_mb()
    big = torch.ones(64 * 2 ** 20 // 4)  # 64 MB, touched
    assert memory.peak_rss_mb() - before >= 60
    del big
    memory.reset_peak_rss()
    assert memory.peak_rss_mb() - memory.current_rss_mb() < 30


@pytest.mark.parametrize("options, message", [({"final_eval_stride": 0}, "final_eval_stride"),
                                              ({"block_size": -1}, "block_size"),
                                              ({"max_memory_gb": -1.0}, "max_memory_gb")])
def test_bad_final_eval_and_memory_options_are_rejected(options, message):
    with pytest.raises(ConfigError, match=message):
        FinalEvalOptions.from_config(options) if "final" in message else MemoryOptions.from_config(options)


def test_a_bad_stride_on_the_command_line_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sobolev_inr", "image_regression", "--sidelength", "32",
                             "--num_epochs", "1", "--final_eval_stride", "0", "--logging_root", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: final_eval_stride must be >= 1 (1 = every sample), got 0"]


def test_skip_final_eval_and_no_figures_are_recorded(tmp_path):
    common = ["--sidelength", "32", "--num_epochs", "4", "--epochs_til_summary", "2", "--logging_root", str(tmp_path),
              "--no_progress"]
    run_task("image_regression", [*common, "--exp_name", "skipped", "--skip_final_eval"])
    run_task("image_regression", [*common, "--exp_name", "metrics_only", "--no_figures"])
    skipped = json.loads((tmp_path / "skipped" / "metrics.json").read_text())
    assert skipped["final_eval_skipped"] is True and skipped["final_eval_stride"] is None
    assert isinstance(skipped["psnr_heldout"], float)  # the last summary's evaluation
    assert "psnr_grad_heldout" not in skipped  # final-only metrics are absent, not made up
    assert not list((tmp_path / "skipped").glob("*.png"))
    metrics_only = json.loads((tmp_path / "metrics_only" / "metrics.json").read_text())
    assert metrics_only["final_eval_skipped"] is False and "psnr_grad_heldout" in metrics_only
    assert not list((tmp_path / "metrics_only").glob("*.png"))
    log = (tmp_path / "metrics_only" / "log.txt").read_text()
    assert "final evaluation: " in log and "data and model: " in log


def test_a_long_waveform_is_drawn_as_its_envelope(tmp_path):
    """A clip longer than 2 ENVELOPE_BINS samples is drawn from per-bin minima and maxima (which keep every
    extreme of the signal) and its spectrogram has at most SPECTROGRAM_FRAMES frames; both figures are written."""
    import numpy as np

    from sobolev_inr.reporting import plots

    signal = np.sin(np.arange(50_001) * 0.37).astype(np.float32)
    low, high, centres = plots._envelope(signal, 100)
    assert len(low) == len(high) == len(centres) == 100
    assert low.min() == signal.min() and high.max() == signal.max()
    edges = np.linspace(0, len(signal), 101).astype(np.int64)
    assert high[7] == signal[edges[7]:edges[8]].max() and low[7] == signal[edges[7]:edges[8]].min()
    clip = torch.from_numpy(signal).repeat(4)  # 200k samples: more than 2 * ENVELOPE_BINS
    plots.save_waveforms(tmp_path / "w.png", [("a", clip), ("error", clip * 0.1)], 44100, zoom=(0, 500))
    plots.save_spectrograms(tmp_path / "s.png", [("a", clip)], 44100)
    assert (tmp_path / "w.png").stat().st_size > 0 and (tmp_path / "s.png").stat().st_size > 0
