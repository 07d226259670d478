"""Issue 26's activations (finer, gauss, wire, sinc, hosc): jets against autograd and high-precision references,
the smoothed and series points, act_scale, inits, the derivative engines on MLPs with non-default scales, and the
shipped configs of each family running a few steps (e2e).

The generic tests (tests/test_activations.py, test_derivatives.py, test_laplacian.py) already run every registry
name at its defaults; these add what is particular to the new families.
"""
from __future__ import annotations

import math
from pathlib import Path

import mpmath
import numpy as np
import pytest
import torch
from torch import nn

from sobolev_inr.derivatives import reference_jacobian, reference_laplacian, value_and_derivatives
from sobolev_inr.models import MLP
from sobolev_inr.models.activations import (FINER_BIAS_RANGE, GAUSS_SCALE, HOSC_BETA, SINC_SERIES_BELOW, SPDER_EPS,
                                            WIRE_SCALE, build_activation)
from sobolev_inr.tasks import run_task

from derivative_cases import make_coords, relative_error

NEW = ["finer", "gauss", "hosc", "sinc", "wire"]
SCALED = ["finer", "gauss", "hosc", "wire"]
"""The families with an ``act_scale``: FINER's first-layer bias range k, Gauss's and WIRE's s, HOSC's beta."""
W0 = 30.0
REPO = Path(__file__).resolve().parents[1]


def _smooth_abs(z, eps=SPDER_EPS):
    return torch.sqrt(z * z + eps * eps)


def reference(name: str, w0: float = W0, scale: float = 0.0, eps: float = SPDER_EPS):
    """Each family's value as its paper writes it (FINER's |z| in its smooth form), for autograd to differentiate."""
    s = scale or {"gauss": GAUSS_SCALE, "wire": WIRE_SCALE, "hosc": HOSC_BETA}.get(name, 0.0)
    return {"finer": lambda z: torch.sin(w0 * (_smooth_abs(z, eps) + 1) * z),
            "gauss": lambda z: torch.exp(-(s * z) ** 2),
            "wire": lambda z: torch.cos(w0 * z) * torch.exp(-(s * z) ** 2),
            "sinc": lambda z: torch.sinc(w0 * z),
            "hosc": lambda z: torch.tanh(s * torch.sin(w0 * z))}[name]


def autograd_jet(fn, z):
    """f, f', f'', f''' of an elementwise ``fn`` by three nested autograd passes."""
    z = z.detach().clone().requires_grad_(True)
    out = [fn(z)]
    for k in range(3):
        (g,) = torch.autograd.grad(out[-1].sum(), z, create_graph=k < 2)
        out.append(g)
    return [t.detach() for t in out]


def _points(dtype=torch.float64):
    """Both signs over a few units of 1 / w0 and beyond, none within 1e-3 of 0 (sinc's series and FINER's smoothing
    are tested on their own below)."""
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(256, generator=gen, dtype=dtype) * 0.3
    return torch.where(z.abs() < 1e-3, z + 0.01, z)


class TestJets:
    @pytest.mark.parametrize("name", NEW)
    @pytest.mark.parametrize("scale", [0.0, 3.0])
    def test_all_three_derivatives_equal_autograd_of_the_paper_s_function(self, name, scale):
        z = _points()
        jet = build_activation(name, W0, scale=scale).jet(z, order=3)
        for k, (ours, ref) in enumerate(zip(jet, autograd_jet(reference(name, scale=scale), z))):
            assert relative_error(ours, ref) < 1e-12, f"order {k}"

    @pytest.mark.parametrize("name", NEW)
    def test_lower_orders_are_the_same_tensors_values(self, name):
        act = build_activation(name, W0)
        z = _points()
        full = act.jet(z, 3)
        for order in (0, 1, 2):
            part = act.jet(z, order)
            assert len(part) == 3 and all(t is None for t in part[order + 1:])
            for a, b in zip(part[:order + 1], full):
                torch.testing.assert_close(a, b, rtol=0, atol=0)

    @pytest.mark.parametrize("name", NEW)
    def test_gradcheck_through_the_third_derivative(self, name):
        act = build_activation(name, 5.0, spder_eps=1e-2, scale=2.0 if name != "finer" else 0.0)
        near = [0.0, 1e-3, -4e-3, 0.5 / (5 * math.pi), -1.0 / (5 * math.pi)]  # FINER's smoothing, sinc's series edge
        z = torch.cat((torch.linspace(-1.5, 1.5, 12, dtype=torch.float64) + 0.0123, torch.tensor(near).double()))
        z.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: act.jet(t, order=3), (z,), eps=1e-6, atol=1e-5, rtol=1e-4)

    @pytest.mark.parametrize("name", NEW)
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_finite_everywhere_and_float32_close_to_float64(self, name, dtype):
        act = build_activation(name, W0)
        extremes = torch.tensor([0.0, -0.0, 1e-30, -1e-8, 5e-5, -5e-5, 1e3, -1e4], dtype=dtype)
        for k, t in enumerate(act.jet(extremes, 3)):
            assert t.dtype == dtype and torch.isfinite(t).all(), f"order {k}"
        if dtype == torch.float32:
            # the phase in float32 is off by ~ 6e-8 of itself (at most ~ 1e-5 here), times the next derivative
            z = _points()
            for k, (ours, exact) in enumerate(zip(act.jet(z.float(), 3), act.jet(z, 3))):
                peak = exact.abs().max().item()
                assert (ours.double() - exact).abs().max().item() <= 1e-4 * peak + 1e-6, f"order {k}"


def _sinc_derivatives(u: float):
    """sin(u)/u and its first three derivatives in u, by its Taylor series in 50-digit arithmetic (exact for |u| <= 20
    to far below double precision)."""
    with mpmath.workdps(50):
        u = mpmath.mpf(u)
        out = [mpmath.mpf(0)] * 4
        for k in range(80):
            c = mpmath.mpf(-1) ** k / mpmath.factorial(2 * k + 1)
            for n in range(4):
                if 2 * k >= n:
                    out[n] += c * mpmath.ff(2 * k, n) * (u ** (2 * k - n) if 2 * k > n else 1)
        return [float(v) for v in out]


class TestSincAtZeroAndAtTheSeriesEdge:
    """sin(pi x) / (pi x): finite at 0 with all four entries, a Taylor series for |pi x| < 1, the closed form beyond;
    checked against a 50-digit reference in float64 and float32, with w0 = 1 / pi so that u = pi w0 z = z."""

    U = [0.0, 1e-300, -1e-30, 1e-12, -1e-8, 1e-6, -1e-4, 1e-2, 0.1, -0.5, 0.9, 0.999999, -1.0, 1.000001, 1.1, 1.5,
         -2.0, 3.0, 7.5, -15.0]

    @pytest.mark.parametrize("dtype,rtol,atol", [(torch.float64, 1e-13, 1e-15), (torch.float32, 3e-6, 3e-7)])
    def test_jet_equals_the_high_precision_reference(self, dtype, rtol, atol):
        act = build_activation("sinc", 1.0 / math.pi)
        jet = act.jet(torch.tensor(self.U, dtype=dtype), 3)
        ref = torch.tensor([_sinc_derivatives(u) for u in self.U], dtype=torch.float64).T
        scale = (math.pi * act.w0) ** torch.arange(4, dtype=torch.float64)  # 1 up to rounding
        for n in range(4):
            torch.testing.assert_close(jet[n].double(), ref[n] * scale[n], rtol=rtol, atol=atol, msg=f"order {n}")

    def test_values_at_zero(self):
        f, df, d2f, d3f = build_activation("sinc", W0).jet(torch.zeros(1, dtype=torch.float64), 3)
        k = math.pi * W0
        assert (f.item(), df.item(), d3f.item()) == (1.0, 0.0, 0.0)
        assert d2f.item() == pytest.approx(-k * k / 3, rel=1e-15)

    def test_continuous_across_the_series_edge(self):
        """Both sides of |u| = 1 agree to rounding: the series and the closed form meet."""
        act = build_activation("sinc", 1.0 / math.pi)
        edge = SINC_SERIES_BELOW
        for side in (1.0, -1.0):
            z = torch.tensor([side * edge * (1 - 1e-15), side * edge], dtype=torch.float64)
            for n, t in enumerate(act.jet(z, 3)):
                assert abs(t[1].item() - t[0].item()) < 1e-13, (side, n)

    def test_training_gradient_is_finite_at_zero(self):
        z = torch.tensor([0.0, 1e-9, -0.3], dtype=torch.float64, requires_grad=True)
        loss = sum((t ** 2).sum() for t in build_activation("sinc", W0).jet(z, 3))
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(grad).all()


class TestFinerSmoothing:
    """|z| in sin(w0 (|z| + 1) z) is smoothed to sqrt(z^2 + eps^2) (eps = spder_eps), so that f'' and f''' exist and
    are continuous at 0; beyond eps the function and its derivative are the paper's."""

    def test_each_derivative_is_the_slope_of_the_one_before_across_zero(self):
        act = build_activation("finer", W0)
        h = 1e-3 * SPDER_EPS
        side = act.jet(torch.tensor([-h, h], dtype=torch.float64), 3)
        at_zero = act.jet(torch.zeros(1, dtype=torch.float64), 3)
        for k in range(3):
            slope = (side[k][1] - side[k][0]).item() / (2 * h)
            assert slope == pytest.approx(at_zero[k + 1].item(), rel=1e-5, abs=1e-6), k

    def test_values_at_zero(self):
        """phi = (a + 1) z with a = sqrt(z^2 + eps^2): phi'(0) = 1 + eps, phi''(0) = 0, phi'''(0) = 3 / eps."""
        eps = SPDER_EPS
        f, df, d2f, d3f = build_activation("finer", W0).jet(torch.zeros(1, dtype=torch.float64), 3)
        assert f.item() == 0.0 and d2f.item() == 0.0
        assert df.item() == pytest.approx(W0 * (1 + eps), rel=1e-14)
        assert d3f.item() == pytest.approx(W0 * (3 / eps - W0 ** 2 * (1 + eps) ** 3), rel=1e-12)

    def test_derivatives_near_zero_equal_autograd_of_the_smooth_definition(self):
        z = torch.linspace(-20 * SPDER_EPS, 20 * SPDER_EPS, 401, dtype=torch.float64)
        jet = build_activation("finer", W0).jet(z, 3)
        for k, (ours, ref) in enumerate(zip(jet, autograd_jet(reference("finer"), z))):
            assert relative_error(ours, ref) < 1e-11, k

    def test_the_paper_s_function_beyond_eps(self):
        """The smoothing moves |z| by at most eps^2 / (2|z|), so the phase w0 (|z| + 1) z by at most w0 eps^2 / 2
        (1.5e-7 here): f and f' are the paper's to within that, times w0 (2|z| + 1) for f'."""
        z = torch.tensor([-1.2, -0.3, -0.01, 0.02, 0.4, 1.5], dtype=torch.float64)
        f, df, _ = build_activation("finer", W0).jet(z, 2)
        arg = W0 * (z.abs() + 1) * z
        phase = W0 * SPDER_EPS ** 2 / 2
        torch.testing.assert_close(f, torch.sin(arg), rtol=0, atol=1.01 * phase)
        paper_df = W0 * (2 * z.abs() + 1) * torch.cos(arg)
        torch.testing.assert_close(df, paper_df, rtol=0, atol=1.01 * phase * W0 * 4 + 1e-9)

    def test_spder_eps_is_the_smoothing_length(self):
        for eps in (1e-6, 1e-2):
            act = build_activation("finer", W0, spder_eps=eps)
            assert act.eps == eps and f"eps={eps}" in repr(act)
            assert act.jet(torch.zeros(1, dtype=torch.float64), 1)[1].item() == pytest.approx(W0 * (1 + eps))
        model = MLP(2, 1, ["finer"] * 2, hidden_features=8, spder_eps=1e-3)
        assert model.activations[0].eps == 1e-3 and model.config["spder_eps"] == 1e-3
        with pytest.raises(ValueError, match="eps"):
            build_activation("finer", W0, spder_eps=0.0)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_no_overflow_or_nan_for_a_tiny_eps(self, dtype):
        """eps^4 / a^5 would underflow to 0 / 0 in float32; the jet is written in (eps / a)^2 instead."""
        act = build_activation("finer", W0, spder_eps=1e-12)
        for t in act.jet(torch.tensor([0.0, 1e-13, -1e-6, 0.5], dtype=dtype), 3):
            assert torch.isfinite(t).all()


class TestActScale:
    @pytest.mark.parametrize("name,default,attr", [("gauss", GAUSS_SCALE, "scale"), ("wire", WIRE_SCALE, "scale"),
                                                   ("hosc", HOSC_BETA, "beta"),
                                                   ("finer", FINER_BIAS_RANGE, "bias_range")])
    def test_zero_is_the_paper_default_and_a_value_is_used(self, name, default, attr):
        assert getattr(build_activation(name, W0), attr) == default
        act = build_activation(name, W0, scale=2.5)
        assert getattr(act, attr) == 2.5 and f"={2.5}" in repr(act)
        with pytest.raises(ValueError, match="act_scale"):
            build_activation(name, W0, scale=-1.0)

    @pytest.mark.parametrize("name", ["gauss", "wire", "hosc"])
    def test_scale_changes_the_function(self, name):
        z = _points()
        a, b = (build_activation(name, W0, scale=s).jet(z, 3) for s in (0.0, 3.0))
        for x, y in zip(a, b):
            assert (x - y).abs().max().item() > 1e-3
        torch.testing.assert_close(b[0], reference(name, scale=3.0)(z), rtol=1e-13, atol=1e-13)

    @pytest.mark.parametrize("name", ["sinc"])
    def test_families_without_a_scale_ignore_it(self, name):
        z = _points()
        for x, y in zip(build_activation(name, W0).jet(z, 3), build_activation(name, W0, scale=4.0).jet(z, 3)):
            torch.testing.assert_close(x, y, rtol=0, atol=0)

    def test_the_model_records_act_scale_and_passes_it_to_every_layer(self):
        model = MLP(2, 1, ["gauss", "hosc", "wire", "finer"], hidden_features=8, act_scale=3.0)
        assert model.config["act_scale"] == 3.0
        assert [model.activations[0].scale, model.activations[1].beta, model.activations[2].scale,
                model.activations[3].bias_range] == [3.0, 3.0, 3.0, 3.0]
        rebuilt = MLP(**model.config)
        assert repr(rebuilt.activations) == repr(model.activations)


def _linear(fan_in, fan_out=512):
    return nn.Linear(fan_in, fan_out)


def _fills(t, bound):
    """Within [-bound, bound] and reaching 0.9 of it (a uniform draw of thousands of entries does)."""
    return t.abs().max().item() <= bound and t.abs().max().item() > 0.9 * bound


class TestInit:
    @pytest.mark.parametrize("k", [0.0, 4.0])
    def test_finer_first_layer_siren_weights_and_wide_bias(self, k):
        layer = _linear(2)
        build_activation("finer", W0, scale=k).init_first(layer)
        assert _fills(layer.weight, 1.0 / 2)
        assert _fills(layer.bias, k or FINER_BIAS_RANGE)
        assert layer.bias.std().item() == pytest.approx((k or FINER_BIAS_RANGE) / math.sqrt(3), rel=0.15)

    @pytest.mark.parametrize("name", ["finer", "sinc", "hosc"])
    @pytest.mark.parametrize("w0", [1.0, 30.0])
    def test_siren_inits(self, name, w0):
        first, hidden = _linear(3), _linear(64)
        act = build_activation(name, w0)
        act.init_first(first)
        act.init_hidden(hidden)
        assert _fills(first.weight, 1.0 / 3)
        bound = math.sqrt(6.0 / 64) / w0
        assert _fills(hidden.weight, bound)
        assert hidden.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        if name != "finer":  # nn.Linear's bias, U(+-1/sqrt(n)), left as drawn
            assert first.bias.abs().max().item() <= 1 / math.sqrt(3)

    @pytest.mark.parametrize("name", ["gauss", "wire"])
    def test_nn_linear_s_own_init(self, name):
        act = build_activation(name, W0)
        for n, init in ((3, act.init_first), (64, act.init_hidden)):
            layer = _linear(n)
            init(layer)
            bound = 1 / math.sqrt(n)
            assert _fills(layer.weight, bound) and layer.bias.abs().max().item() <= bound
            assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)

    def test_mlp_uses_them(self):
        model = MLP(2, 1, ["finer", "gauss", "wire"], hidden_features=64, w0=W0)
        assert _fills(model.hidden[0].weight, 0.5) and model.hidden[0].bias.abs().max().item() <= FINER_BIAS_RANGE
        for layer in (model.hidden[1], model.hidden[2], model.output):  # Gauss's, WIRE's and the output (WIRE's)
            assert layer.weight.abs().max().item() <= 1 / math.sqrt(64)


@pytest.mark.parametrize("name,scale", [(n, s) for n in NEW for s in (0.0, 3.0)])
class TestEnginesOnModels:
    """An MLP of each family (3 layers, a non-default scale too), float64: the fused engine and plain autograd give
    the Jacobian and the Laplacian of nested autograd, in forward and reverse mode, with equal weight gradients."""

    @staticmethod
    def _model(name, scale, out_features=2):
        torch.manual_seed(0)
        return MLP(2, out_features, [name] * 3, hidden_features=16, w0=W0, act_scale=scale, spder_eps=1e-3).double()

    def test_jacobian_and_laplacian(self, name, scale):
        model = self._model(name, scale)
        x = make_coords(20)
        jac, lap = reference_jacobian(model, x).jacobian, reference_laplacian(model, x)
        for engine in ("fused", "autograd"):
            for mode in ("forward", "reverse"):
                out = value_and_derivatives(model, x, engine=engine, mode=mode, create_graph=False)
                assert relative_error(out.jacobian, jac) < 1e-10, (engine, mode)
            out = value_and_derivatives(model, x, engine=engine, laplacian=True, create_graph=False)
            assert relative_error(out.laplacian, lap) < 1e-10, engine
            assert relative_error(out.jacobian, jac) < 1e-10, engine

    def test_weight_gradients_of_a_sobolev_loss_agree(self, name, scale):
        model = self._model(name, scale)
        x = make_coords(20)
        target = torch.randn(20, 2, dtype=torch.float64)
        grads = {}
        for engine in ("fused", "autograd"):
            out = value_and_derivatives(model, x, engine=engine, laplacian=True)
            loss = (out.value ** 2).sum() + (out.jacobian ** 2).sum() + ((out.laplacian - target) ** 2).sum()
            grads[engine] = torch.autograd.grad(loss, list(model.parameters()))
        for (pname, _), g, r in zip(model.named_parameters(), grads["fused"], grads["autograd"]):
            assert relative_error(g, r) < 1e-10 or (g - r).abs().max().item() < 1e-12, pname


# ------------------------------------------------------------------------------------------------ shipped configs
FAMILY_CONFIGS = sorted(
    [p for p in (REPO / "Experiments" / "image_regression" / "configs" / "families").rglob("*.txt")
     if p.parent.name in NEW]
    + [p for task in ("audio_regression", "video_regression", "sdf", "inverse_rendering")
       for p in (REPO / "Experiments" / task / "configs" / "families").glob("*.txt") if p.stem in NEW])


def test_every_family_has_its_configs():
    names = {str(p.relative_to(REPO / "Experiments")) for p in FAMILY_CONFIGS}
    expected = {f"image_regression/configs/families/{n}/{s}.txt" for n in NEW for s in ("val", "val_der")}
    expected |= {f"audio_regression/configs/families/{n}.txt" for n in NEW}
    expected |= {"video_regression/configs/families/wire.txt", "sdf/configs/families/hosc.txt",
                 "inverse_rendering/configs/families/finer.txt"}
    assert names == expected
    for path in FAMILY_CONFIGS:
        text = path.read_text()
        name = path.parent.name if path.parent.name in NEW else path.stem
        assert f"activations = [{', '.join([name] * 4)}]" in text, path
        assert max(len(line) for line in text.splitlines()) <= 120, path


@pytest.fixture(scope="module")
def tiny_wav(tmp_path_factory):
    import scipy.io.wavfile

    t = np.arange(882) / 44100
    path = tmp_path_factory.mktemp("wav") / "tiny.wav"
    scipy.io.wavfile.write(path, 44100, np.round(np.sin(2 * np.pi * 440 * t) * 20000).astype(np.int16))
    return path


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from sobolev_inr.data.scenes import make_synthetic_scene

    return make_synthetic_scene(tmp_path_factory.mktemp("scene") / "tiny", width=32, height=24, num_views=10,
                                factors=(2,))


def _tiny_args(task, tmp_path, request):
    """Overrides that shrink a run to a few steps on a tiny input."""
    if task == "image_regression":
        return ["--filename", str(request.getfixturevalue("tiny_gray_png")), "--num_epochs", "2",
                "--hidden_features", "16", "--epochs_til_summary", "1"]
    if task == "audio_regression":
        return ["--filename", str(request.getfixturevalue("tiny_wav")), "--num_epochs", "2", "--hidden_features", "16"]
    if task == "video_regression":
        return ["--filename", "synthetic:5", "--sidelength", "16", "--num_epochs", "2", "--batch_size", "0",
                "--hidden_features", "16", "--epochs_til_summary", "1"]
    if task == "sdf":
        return ["--num_points", "400", "--batch_size", "200", "--num_epochs", "1", "--hidden_features", "16",
                "--mc_resolution", "16"]
    return ["--datadir", str(request.getfixturevalue("tiny_scene")), "--llff_factor", "2", "--factor", "2",
            "--N_iters", "2", "--netwidth", "16", "--N_samples", "8", "--N_rand", "64", "--i_print", "1",
            "--i_img", "1000", "--i_weights", "1000", "--i_testset", "1000", "--i_video", "1000", "--eval_rays", "32",
            "--chunk", "512", "--basedir", str(tmp_path)]


@pytest.mark.e2e
@pytest.mark.parametrize("config", FAMILY_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "Experiments")))
def test_each_family_config_trains_a_few_steps(config, tmp_path, request, one_thread, monkeypatch):
    """Parse, build, train 2 steps and score, on a tiny input (figures left out where a task's own tests check them)."""
    task = config.relative_to(REPO / "Experiments").parts[0]
    monkeypatch.setattr("sobolev_inr.reporting.plots.save_training_curves", lambda *a, **k: None)
    owner = {"image_regression": "ImageRegression", "audio_regression": "AudioRegression",
             "inverse_rendering": "InverseRendering"}.get(task)
    if owner:
        monkeypatch.setattr(f"sobolev_inr.tasks.{task}.{owner}.write_outputs", lambda *a, **k: None)
    root = [] if task == "inverse_rendering" else ["--logging_root", str(tmp_path)]  # NeRF: --basedir, in the args
    argv = ["--config", str(config), *root, "--no_progress", *_tiny_args(task, tmp_path, request)]
    metrics = run_task(task, argv)
    assert metrics["steps"] == 2, config
    assert metrics["supervision"] in config.read_text(), config
    name = config.parent.name if config.parent.name in NEW else config.stem
    assert metrics.get("activations", [name] * 4) == [name] * 4, config
    scores = [v for k, v in metrics.items() if k.startswith(("psnr", "sdf_error")) and isinstance(v, float)]
    assert scores and all(np.isfinite(scores)), (config, scores)


@pytest.mark.e2e
@pytest.mark.parametrize("task, script", [("image_regression", "main.py"), ("audio_regression", "main.py"),
                                          ("video_regression", "main.py"), ("sdf", "main.py"),
                                          ("inverse_rendering", "train.py")])
def test_a_negative_scale_stops_with_one_line_and_exit_2(task, script, tmp_path):
    import subprocess
    import sys

    root = "--basedir" if task == "inverse_rendering" else "--logging_root"
    proc = subprocess.run([sys.executable, script, "--activations", "gauss", "--act_scale", "-1", root, str(tmp_path),
                           "--no_progress"], cwd=REPO / "Experiments" / task, capture_output=True, text=True,
                          timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: argument --act_scale: must be >= 0"), lines[0]
    assert not any(tmp_path.iterdir())
