"""Tests for sobolev_inr.training.loop.fit: non-finite steps, step-based runs resumed inside an epoch, the
learning-rate schedule, the run's record (history, time, memory), and global state left as found."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sobolev_inr.errors import ConfigError, TrainingError
from sobolev_inr.models import MLP
from sobolev_inr.training.checkpoints import latest_checkpoint, list_checkpoints, load_checkpoint
from sobolev_inr.training.loop import FitConfig, Periodic, fit
from sobolev_inr.training.runs import RunDirectory, read_history, read_scalars
from sobolev_inr.training.runs import run_metrics


def quiet(**kw) -> FitConfig:
    return FitConfig(**{"lrate": 1e-3, "progress": False, "tensorboard": False, **kw})


class _Curve:
    """Fit sin(3x) on 32 points; full batch, so one step per epoch. ``bad`` maps 1-based call numbers to
    "loss" (the loss is NaN) or "grad" (the loss is finite, its gradient infinite)."""

    psnr_peak = 2.0

    def __init__(self, bad=None):
        self.bad, self.calls = dict(bad or {}), 0
        self.x = torch.linspace(-1, 1, 32).unsqueeze(1)

    def train_batches(self, generator):
        yield None

    def loss(self, model, batch):
        self.calls += 1
        value = torch.mean((model(self.x) - torch.sin(3 * self.x)) ** 2)
        kind = self.bad.get(self.calls)
        if kind == "loss":
            value = value * float("nan")
        elif kind == "grad":
            value = value + torch.sqrt(model(self.x).sum() * 0.0)  # sqrt'(0) = inf: finite value, infinite gradient
        return {"value": value, "total": value}

    def evaluate(self, model):
        return {}


def _model(seed=0):
    torch.manual_seed(seed)
    return MLP(1, 1, ["sine"] * 2, hidden_features=8)


class TestNonFiniteSteps:
    @pytest.mark.parametrize("kind, words", [("loss", "loss nan"), ("grad", r"loss 0\.\d+, gradient norm (inf|nan)")])
    def test_stop_at_the_first_bad_step_keeps_the_last_good_checkpoint(self, tmp_path, kind, words):
        model = _model()
        run = RunDirectory(str(tmp_path), "nan")
        task = _Curve({4: kind})
        with pytest.raises(TrainingError, match=rf"at step 4 \(epoch 4\): {words}.*last good checkpoint"):
            fit(model, task, quiet(num_epochs=10, summary_every=5, checkpoint_every=2), run, {})
        assert task.calls == 4  # stopped at the bad step, not at the next summary (epoch 5)
        last = load_checkpoint(latest_checkpoint(run.checkpoints))
        assert last["epoch"] == 2
        assert all(torch.isfinite(v).all() for v in model.state_dict().values())  # the bad update was not applied
        assert max(s for s, n, v in _rows(run)) == 3  # steps 1-3 logged, nothing after

    def test_skip_counts_and_continues(self, tmp_path):
        model = _model()
        run = RunDirectory(str(tmp_path), "skip")
        result = fit(model, _Curve({3: "loss", 5: "grad"}), quiet(num_epochs=6, nan_policy="skip"), run, {})
        assert result.skipped_steps == 2 and result.steps == 4 and result.epochs == 6
        assert all(torch.isfinite(p).all() for p in model.parameters())
        assert run_metrics("t", {}, result, model, torch.device("cpu"))["skipped_steps"] == 2

    def test_skip_stops_after_too_many_in_a_row(self, tmp_path):
        run = RunDirectory(str(tmp_path), "skip")
        bad = {i: "loss" for i in range(3, 100)}
        with pytest.raises(TrainingError, match=r"4 steps in a row.*max_skipped_steps = 4"):
            fit(_model(), _Curve(bad), quiet(num_epochs=50, nan_policy="skip", max_skipped_steps=4), run, {})


def _rows(run):
    from sobolev_inr.training.runs import read_scalars_rows

    return read_scalars_rows(run.file("scalars.csv"))


class _NoisyBatches:
    """Mini-batches of a 1-D fit with a random permutation per epoch and per-batch noise drawn from the
    generator (what a NeRF task draws: ray order, stratified offsets, density noise)."""

    psnr_peak = 2.0

    def __init__(self, n=40, batch=8):
        self.x = torch.linspace(-1, 1, n).unsqueeze(1)
        self.y = torch.sin(4 * self.x)
        self.batch = batch

    def train_batches(self, generator):
        order = torch.randperm(len(self.x), generator=generator)
        for idx in order.split(self.batch):
            yield idx, torch.randn(len(idx), 1, generator=generator) * 0.01

    def loss(self, model, batch):
        idx, noise = batch
        value = torch.mean((model(self.x[idx] + noise) - self.y[idx]) ** 2)
        return {"value": value, "total": value}

    def evaluate(self, model):
        return {}


class TestStepRuns:
    def test_resume_inside_an_epoch_equals_the_uninterrupted_run(self, tmp_path):
        """5 batches per epoch; stopped at step 7 (inside epoch 2), resumed to step 13."""
        cfg = dict(num_steps=13, checkpoint_every=7, summary_every=4, lrate_decay_steps=10.0)
        whole_model = _model(1)
        whole = fit(whole_model, _NoisyBatches(), quiet(**cfg), RunDirectory(str(tmp_path), "whole"), {})
        part_model = _model(1)
        fit(part_model, _NoisyBatches(), quiet(**{**cfg, "num_steps": 7}), RunDirectory(str(tmp_path), "part"), {})
        assert [p.name for p in list_checkpoints(tmp_path / "part" / "checkpoints")] == ["step_0000007.pt"]
        resumed_model = _model(99)  # other initial weights: everything must come from the checkpoint
        run = RunDirectory(str(tmp_path), "part", resume=True)
        resumed = fit(resumed_model, _NoisyBatches(), quiet(**cfg, resume=True), run, {})
        assert (resumed.steps, resumed.epochs) == (whole.steps, whole.epochs) == (13, 2)
        for a, b in zip(whole_model.parameters(), resumed_model.parameters()):
            assert torch.equal(a, b)
        assert [(h["mode"], h["start_step"]) for h in read_history(tmp_path / "part")] == [("new", 0), ("resume", 7)]

    def test_learning_rate_decays_as_nerf_pytorch(self, tmp_path, monkeypatch):
        """lr of step k (0-based) = lrate * 0.1 ** (k / decay_steps)."""
        used = []
        original_step = torch.optim.Adam.step

        def step(self, *a, **k):
            used.append(self.param_groups[0]["lr"])
            return original_step(self, *a, **k)

        monkeypatch.setattr(torch.optim.Adam, "step", step)
        cfg = quiet(num_steps=9, lrate=5e-4, lrate_decay_steps=4.0, lrate_decay_rate=0.1)
        fit(_model(), _NoisyBatches(), cfg, RunDirectory(str(tmp_path), "lr"), {})
        assert used == pytest.approx([5e-4 * 0.1 ** (k / 4.0) for k in range(9)], rel=1e-12)

    def test_periodic_actions_run_on_their_multiples(self, tmp_path):
        calls = []
        fit(_model(), _NoisyBatches(), quiet(num_steps=12),
            RunDirectory(str(tmp_path), "p"), {}, periodic=[Periodic(5, lambda m, i: calls.append((i, m.training)))])
        assert calls == [(5, False), (10, False)]

    def test_length_must_be_given_once(self, tmp_path):
        with pytest.raises(ConfigError, match="exactly one"):
            fit(_model(), _Curve(), quiet(num_epochs=2, num_steps=3), RunDirectory(str(tmp_path), "x"), {})
        with pytest.raises(ConfigError, match="exactly one"):
            fit(_model(), _Curve(), quiet(), RunDirectory(str(tmp_path), "y"), {})

    def test_resume_cannot_shorten_a_run(self, tmp_path):
        fit(_model(), _Curve(), quiet(num_epochs=4), RunDirectory(str(tmp_path), "r"), {})
        with pytest.raises(ConfigError, match="has trained 4 epochs; num_epochs = 2 is shorter"):
            fit(_model(), _Curve(), quiet(num_epochs=2, resume=True), RunDirectory(str(tmp_path), "r", resume=True), {})


class TestRecord:
    def test_time_and_memory_are_recorded(self, tmp_path):
        run = RunDirectory(str(tmp_path), "rec")
        model = _model()
        result = fit(model, _Curve(), quiet(num_epochs=6, summary_every=2), run, {"exp_name": "rec", "seed": 0})
        times = read_scalars(run.file("scalars.csv"))["time/train_s"]
        assert times[0] == [2, 4, 6] and times[1] == sorted(times[1]) and times[1][0] > 0
        metrics = run_metrics("t", {"exp_name": "rec", "seed": 0}, result, model, torch.device("cpu"))
        assert metrics["peak_memory_mb"] > 10 and metrics["peak_memory_kind"] == "cpu_peak_rss"
        assert metrics["time_per_1k_steps_s"] == pytest.approx(1000 * result.train_time_s / 6, rel=1e-2)
        assert metrics["exp_name"] == "rec" and "supervision" not in metrics  # only keys the task has


def test_fit_leaves_global_state_as_it_found_it(tmp_path):
    """No hidden state: the global RNGs, grad mode, default dtype, thread count and the model's mode."""
    model = _model()
    model.eval()
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(), torch.get_default_dtype(),
              torch.get_num_threads(), torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled())
    fit(model, _NoisyBatches(), quiet(num_steps=6, summary_every=3), RunDirectory(str(tmp_path), "g"), {})
    after = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(), torch.get_default_dtype(),
             torch.get_num_threads(), torch.is_grad_enabled(), torch.are_deterministic_algorithms_enabled())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    assert before[3:] == after[3:]
    assert not model.training


@pytest.mark.parametrize("names, panel", [
    (["train/value", "train/derivative", "train/total", "train/psnr", "eval/psnr_heldout"], "PSNR (dB)"),
    (["train/sdf", "train/inter", "train/grad", "train/total", "eval/surface_abs_phi"], "evaluation"),  # no PSNR
])
def test_training_curves_draw_every_loss_term_and_the_evaluation(tmp_path, monkeypatch, names, panel):
    import warnings

    import sobolev_inr.reporting.plots as plots

    lines = ["step,name,value"] + [f"{s},{n},{0.5 / s + 0.1}" for s in (1, 2, 3) for n in names]
    (tmp_path / "scalars.csv").write_text("\n".join(lines) + "\n")
    drawn, figure = {}, plots.figure

    def recording_figure(*a, **k):
        fig, drawn["axes"] = figure(*a, **k)
        return fig, drawn["axes"]

    monkeypatch.setattr(plots, "figure", recording_figure)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "No artists with labels found to put in legend"
        plots.save_training_curves(tmp_path / "scalars.csv", tmp_path / "curves.png")
    loss_axes, eval_axes = drawn["axes"][0]
    loss_labels = {line.get_label() for line in loss_axes.get_lines()}
    assert loss_labels == {n[len("train/"):] for n in names if n.startswith("train/") and n != "train/psnr"}
    assert eval_axes.get_ylabel() == panel and eval_axes.get_lines()
    assert (tmp_path / "curves.png").stat().st_size > 0


class TestPieces:
    """fit's named pieces: callbacks, the training state as one checkpointed object, the task's training PSNR."""

    def test_callbacks_see_every_summary_and_checkpoint(self, tmp_path):
        from sobolev_inr.training.loop import Callback

        class Recorder(Callback):
            def __init__(self):
                self.summaries, self.checkpoints = [], []

            def on_summary(self, index, values):
                self.summaries.append((index, sorted(values)))

            def on_checkpoint(self, index, path):
                self.checkpoints.append((index, path.name, path.exists()))

        recorder = Recorder()
        fit(_model(), _NoisyBatches(), quiet(num_steps=10, summary_every=4, checkpoint_every=5),
            RunDirectory(str(tmp_path), "cb"), {}, callbacks=[recorder])
        assert [i for i, _ in recorder.summaries] == [4, 8, 10]
        assert recorder.summaries[0][1] == ["train/psnr", "train/total", "train/value"]
        assert recorder.checkpoints == [(5, "step_0000005.pt", True), (10, "step_0000010.pt", True)]

    def test_the_kill_callback_fires_once_after_its_checkpoint(self, monkeypatch):
        from sobolev_inr.training.loop import KillAfterCheckpoint

        kill = KillAfterCheckpoint(3)
        killed = []
        monkeypatch.setattr("os.kill", lambda pid, sig: killed.append(sig))
        for i in range(5):
            kill.on_checkpoint(i, None)
        assert len(killed) == 1  # after the 3rd checkpoint only

    def test_training_state_round_trip_continues_the_same_run(self, tmp_path):
        """state_dict() of a state part-way through an epoch, loaded into a fresh state, draws the same batches."""
        from sobolev_inr.training.loop import TrainingState

        cfg = quiet(num_steps=3)
        a = TrainingState.start(_model(1), _NoisyBatches(), cfg)
        for _ in range(3):
            a.batches.next()
        a.step, a.skipped_steps = 3, 1
        b = TrainingState.start(_model(2), _NoisyBatches(), cfg)
        b.load_state_dict(a.state_dict())
        assert (b.step, b.skipped_steps, b.batches.drawn) == (3, 1, 3)
        for (more_a, batch_a), (more_b, batch_b) in [(a.batches.next(), b.batches.next()) for _ in range(4)]:
            assert more_a == more_b and (not more_a or torch.equal(batch_a[1], batch_b[1]))
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.equal(p, q)

    def test_a_task_may_give_its_own_training_psnr(self, tmp_path):
        class OwnPsnr(_Curve):
            def train_psnr(self, terms):
                return 42.0

        class NoPeak(_Curve):
            psnr_peak = None

        for task, expected in ((OwnPsnr(), [42.0, 42.0]), (NoPeak(), None)):
            run = RunDirectory(str(tmp_path), type(task).__name__)
            fit(_model(), task, quiet(num_epochs=2), run, {})
            assert read_scalars(run.file("scalars.csv")).get("train/psnr", (None, None))[1] == expected

    def test_fit_checkpoints_load_with_weights_only_and_record_provenance(self, tmp_path):
        from sobolev_inr.training.provenance import PROVENANCE_KEYS

        run = RunDirectory(str(tmp_path), "w")
        model = _model()
        result = fit(model, _NoisyBatches(), quiet(num_steps=7, checkpoint_every=5), run, {"exp_name": "w", "seed": 0})
        for path in list_checkpoints(run.checkpoints):
            state = torch.load(path, weights_only=True)
            assert set(PROVENANCE_KEYS) <= set(state) and state["config"] == {"exp_name": "w", "seed": 0}
        run.write_metrics(run_metrics("t", {"exp_name": "w", "seed": 0}, result, model, torch.device("cpu")))
        written = run.read_metrics()
        assert set(PROVENANCE_KEYS) <= set(written) and written["torch_version"] == str(torch.__version__)
