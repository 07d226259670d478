"""Tests for sobolev_inr.models.activations: jets (f, f', f''), their gradients, and the inits."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sobolev_inr.models.activations import (ACTIVATIONS, GAUSS_SCALE, HOSC_BETA, SPDER, SPDER_EPS, WIRE_SCALE,
                                            build_activation)

ALL = sorted(ACTIVATIONS)
SPDERS = ["spder", "spder_sqrt", "spder_log", "spder_arctan", "spder_sqrt_relu"]
USES_W0 = ["sine", *SPDERS, "finer", "wire", "sinc", "hosc"]
W0 = 30.0


def _z(dtype=torch.float64) -> torch.Tensor:
    """Random points of both signs (none within 1e-3 of a kink), plus z exactly 0 at the end."""
    z = torch.randn(64, dtype=dtype)
    z = torch.where(z.abs() < 1e-3, z + 0.01, z)
    return torch.cat((z, torch.zeros(1, dtype=dtype)))


def _autograd_derivatives(act, z):
    """f'(z), f''(z) of the activation's own value by two nested autograd passes (elementwise)."""
    z = z.detach().clone().requires_grad_(True)
    f = act(z)
    (g,) = torch.autograd.grad(f.sum(), z, create_graph=True)
    if g.requires_grad:
        (h,) = torch.autograd.grad(g.sum(), z, allow_unused=True)
        h = torch.zeros_like(z) if h is None else h
    else:  # piecewise-linear activations: f' does not depend on z
        h = torch.zeros_like(z)
    return g.detach(), h.detach()


# Independent definitions of each value (torch's own functions, or the formula from the papers).
def _spder_ref(delta):
    """SPDER as paper 003's code computes it: sin(x) delta(x) of x = w0 z; delta here in its smooth form."""
    return lambda z: torch.sin(W0 * z) * delta(W0 * z)


def _smooth_abs(x):
    return torch.sqrt(x * x + SPDER_EPS ** 2)


REFERENCE_VALUES = {
    "sine": lambda z: torch.sin(W0 * z),
    "relu": torch.relu,
    "elu": F.elu,
    "selu": F.selu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "tanh": torch.tanh,
    "spder": _spder_ref(lambda x: torch.sqrt(_smooth_abs(x))),
    "spder_sqrt": _spder_ref(lambda x: torch.sqrt(_smooth_abs(x))),
    "spder_log": _spder_ref(lambda x: torch.log(_smooth_abs(x))),
    "spder_arctan": _spder_ref(torch.atan),
    # (x + sqrt(x^2 + eps^2)) / 2 = eps / 2 exp(asinh(x / eps)), without cancellation for x << 0
    "spder_sqrt_relu": _spder_ref(lambda x: math.sqrt(SPDER_EPS / 2) * torch.exp(0.5 * torch.asinh(x / SPDER_EPS))),
    # issue 26's families at their defaults (act_scale 0): FINER with |z| smoothed by the same length as SPDER's
    "finer": lambda z: torch.sin(W0 * (_smooth_abs(z) + 1) * z),
    "gauss": lambda z: torch.exp(-(GAUSS_SCALE * z) ** 2),
    "wire": lambda z: torch.cos(W0 * z) * torch.exp(-(WIRE_SCALE * z) ** 2),
    "sinc": lambda z: torch.sinc(W0 * z),
    "hosc": lambda z: torch.tanh(HOSC_BETA * torch.sin(W0 * z)),
}


class TestRegistry:
    def test_every_activation_has_a_reference(self):
        assert set(REFERENCE_VALUES) == set(ACTIVATIONS)

    @pytest.mark.parametrize("name", ALL)
    def test_smoke(self, name):
        act = build_activation(name, W0)
        z = torch.randn(5, 7)
        assert act(z).shape == (5, 7)
        # the repr names the class and the frequency w0 exactly where the activation uses it (a model's
        # printout shows it), e.g. Sine(w0=30.0), SPDER(w0=30.0, delta='sqrt', eps=0.0001), ReLU(), Gauss(scale=10.0)
        text = repr(act)
        assert text.startswith(f"{type(act).__name__}(") and text.endswith(")"), text
        assert (f"w0={W0}" in text) == act.uses_w0 == (name in USES_W0), text

    def test_unknown_name_lists_valid_names(self):
        with pytest.raises(ValueError) as info:
            build_activation("swish")
        message = str(info.value)
        assert "swish" in message
        for name in ACTIVATIONS:
            assert name in message

    def test_unknown_spder_delta(self):
        with pytest.raises(ValueError, match="sqrt"):
            SPDER(W0, "cube")

    def test_spder_alias_is_sqrt(self):
        z = _z()
        a, b = build_activation("spder", W0), build_activation("spder_sqrt", W0)
        for x, y in zip(a.jet(z, 2), b.jet(z, 2)):
            torch.testing.assert_close(x, y, rtol=0, atol=0)

    def test_w0_is_used(self):
        z = _z()
        torch.testing.assert_close(build_activation("sine", 7.0)(z), torch.sin(7.0 * z))


class TestJet:
    @pytest.mark.parametrize("name", ALL)
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_shape_dtype_and_orders(self, name, dtype):
        act = build_activation(name, W0)
        z = torch.randn(3, 4, dtype=dtype)
        f0, d0, s0 = act.jet(z, order=0)
        assert d0 is None and s0 is None
        f1, d1, s1 = act.jet(z, order=1)
        assert s1 is None
        f2, d2, s2 = act.jet(z, order=2)
        for t in (f0, f1, f2, d1, d2, s2):
            assert t.shape == z.shape and t.dtype == dtype
        torch.testing.assert_close(f0, f2, rtol=0, atol=0)
        torch.testing.assert_close(d1, d2, rtol=0, atol=0)

    @pytest.mark.parametrize("name", ALL)
    def test_value_matches_independent_definition(self, name):
        z = _z()
        torch.testing.assert_close(build_activation(name, W0).jet(z, 2)[0], REFERENCE_VALUES[name](z),
                                   rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize("name", ALL)
    def test_derivatives_match_autograd(self, name):
        act = build_activation(name, W0)
        z = _z()  # float64, both signs, and exactly 0 as the last entry
        f, df, d2f = act.jet(z, order=2)
        g, h = _autograd_derivatives(act, z)
        torch.testing.assert_close(df, g, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(d2f, h, rtol=1e-10, atol=1e-8)
        g, h = _autograd_derivatives(REFERENCE_VALUES[name], z[:-1])  # the independent definition, off kinks
        torch.testing.assert_close(df[:-1], g, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(d2f[:-1], h, rtol=1e-10, atol=1e-8)

    @pytest.mark.parametrize("name", ALL)
    def test_derivatives_match_finite_differences(self, name):
        """A check that does not go through the activation's own autograd graph."""
        act = build_activation(name, W0)
        z = _z()[:-1]
        eps = 1e-5
        f_plus, df_plus, _ = act.jet(z + eps, 1)
        f_minus, df_minus, _ = act.jet(z - eps, 1)
        _, df, d2f = act.jet(z, 2)
        torch.testing.assert_close(df, (f_plus - f_minus) / (2 * eps), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(d2f, (df_plus - df_minus) / (2 * eps), rtol=1e-4, atol=1e-3)

    @pytest.mark.parametrize("name", ALL)
    def test_gradcheck(self, name):
        act = build_activation(name, 5.0)
        z = torch.linspace(-1.5, 1.5, 12, dtype=torch.float64) + 0.0123  # away from every kink
        z.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: act.jet(t, order=2), (z,), eps=1e-6, atol=1e-6, rtol=1e-4)


class TestThirdDerivative:
    """order=3 adds f''' (the fused forward Laplacian's backward pass reads it)."""

    @pytest.mark.parametrize("name", ALL)
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_order_three_adds_d3f_and_keeps_the_rest(self, name, dtype):
        act = build_activation(name, W0)
        z = torch.randn(3, 4, dtype=dtype)
        jet3 = act.jet(z, order=3)
        assert len(jet3) == 4
        assert jet3[3].shape == z.shape and jet3[3].dtype == dtype
        for x, y in zip(jet3[:3], act.jet(z, order=2)):
            torch.testing.assert_close(x, y, rtol=0, atol=0)

    @pytest.mark.parametrize("name", ALL)
    def test_matches_autograd_of_the_second_derivative(self, name):
        act = build_activation(name, W0)
        z = _z()[:-1].requires_grad_(True)  # float64, both signs, away from every kink
        _, _, d2f, d3f = act.jet(z, order=3)
        expected = torch.autograd.grad(d2f.sum(), z, allow_unused=True)[0] if d2f.requires_grad else None
        expected = torch.zeros_like(z) if expected is None else expected
        torch.testing.assert_close(d3f.detach(), expected, rtol=1e-10, atol=1e-8)

    @pytest.mark.parametrize("name", ["sine", "spder_arctan", "sigmoid", "softplus", "tanh", "finer", "gauss", "wire",
                                      "sinc", "hosc"])
    def test_matches_finite_differences_of_the_second_derivative(self, name):
        """A check that does not go through the activation's own autograd graph (smooth activations)."""
        act = build_activation(name, W0)
        z, eps = _z()[:-1], 1e-6
        d3f = act.jet(z, 3)[3]
        fd = (act.jet(z + eps, 2)[2] - act.jet(z - eps, 2)[2]) / (2 * eps)
        torch.testing.assert_close(d3f, fd, rtol=1e-4, atol=1e-4 * d3f.abs().max().item())

    def test_sine_reuses_its_first_derivative(self):
        _, df, _, d3f = build_activation("sine", W0).jet(_z(), 3)
        torch.testing.assert_close(d3f, -(W0 ** 2) * df, rtol=0, atol=0)

    @pytest.mark.parametrize("name", ALL)
    def test_gradcheck(self, name):
        act = build_activation(name, 5.0)
        z = (torch.linspace(-1.5, 1.5, 12, dtype=torch.float64) + 0.0123).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: act.jet(t, order=3), (z,), eps=1e-6, atol=1e-5, rtol=1e-4)


GUARDED = ["spder", "spder_sqrt", "spder_log", "spder_sqrt_relu"]
"""The SPDERs whose damping is singular or kinked at 0 in the paper and smooth here (length SPDER_EPS)."""


def _near_zero(eps: float = SPDER_EPS) -> torch.Tensor:
    """z within 10 eps / w0 of 0 (x = w0 z within 10 eps), 0 and the smallest magnitudes included, float64."""
    z = torch.linspace(-10 * eps / W0, 10 * eps / W0, 2001, dtype=torch.float64)
    return torch.cat((z, torch.tensor([0.0, -0.0, 1e-300, -1e-300, 5e-324], dtype=torch.float64)))


def _second_derivative_bound(name: str, eps: float, x_max: float) -> float:
    """An upper bound of |f''| for |x| <= x_max (x = w0 z), from f'' = w0^2 (2 cos delta' + sin delta'' - sin delta):
    |f''| <= w0^2 (max|delta| + 2 max|delta'| + max|x delta''|), with the smooth forms' maxima in closed form
    (sqrt: delta' and x delta'' at most 1 / (2 sqrt(eps)) each; log: 1 / (2 eps) and 1 / eps; sqrt_relu:
    1 / (2 sqrt(eps)) and 3 / (4 sqrt(eps)))."""
    q = x_max ** 2 + eps ** 2
    if name in ("spder", "spder_sqrt"):
        return W0 ** 2 * (q ** 0.25 + 1.5 / math.sqrt(eps))
    if name == "spder_log":
        return W0 ** 2 * (max(abs(math.log(eps)), abs(0.5 * math.log(q))) + 2.0 / eps)
    return W0 ** 2 * (q ** 0.25 + 1.75 / math.sqrt(eps))


class TestSPDERAtZero:
    """The paper's dampings sqrt|x|, log|x|, sqrt(relu(x)) are singular or kinked at 0; the smooth forms keep
    f, f', f'', f''' finite, continuous and bounded there."""

    @pytest.mark.parametrize("name", SPDERS)
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_jet_is_finite_near_and_at_zero(self, name, dtype):
        act = build_activation(name, W0)
        for t in act.jet(_near_zero().to(dtype), order=3):
            assert torch.isfinite(t).all()

    @pytest.mark.parametrize("name", GUARDED)
    def test_second_derivative_is_bounded_near_zero(self, name):
        z = _near_zero()
        d2f = build_activation(name, W0).jet(z, order=2)[2]
        bound = _second_derivative_bound(name, SPDER_EPS, W0 * z.abs().max().item())
        assert d2f.abs().max().item() <= bound

    @pytest.mark.parametrize("name", SPDERS)
    def test_each_derivative_is_the_slope_of_the_one_before_across_zero(self, name):
        """f, f' and f'' are differentiable at 0, so continuous there: the difference quotient of each across 0
        equals the next entry of the jet at 0. (A guard that adds eps to |x| made f'' jump at 0: its difference
        quotient there blew up instead.)"""
        act = build_activation(name, W0)
        h = 1e-3 * SPDER_EPS / W0  # well inside the smoothing length
        side = act.jet(torch.tensor([-h, h], dtype=torch.float64), order=3)
        at_zero = act.jet(torch.zeros(1, dtype=torch.float64), order=3)
        for k in range(3):
            slope = (side[k][1] - side[k][0]).item() / (2 * h)
            assert slope == pytest.approx(at_zero[k + 1].item(), rel=1e-4, abs=1e-9), k

    @pytest.mark.parametrize("name", GUARDED)
    def test_derivatives_equal_autograd_at_and_near_zero(self, name):
        """Where the guard acts, f' and f'' equal autograd's of the independent smooth definition too."""
        act = build_activation(name, W0)
        z = _near_zero()[::50]
        _, df, d2f = act.jet(z, order=2)
        g, h = _autograd_derivatives(REFERENCE_VALUES[name], z)
        torch.testing.assert_close(df, g, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(d2f, h, rtol=1e-9, atol=1e-9 * h.abs().max().item())

    @pytest.mark.parametrize("name", GUARDED)
    def test_the_paper_s_damping_beyond_eps(self, name):
        """For |x| >> eps the smooth forms are sqrt|x|, log|x| (relative error ~ (eps / x)^2) and sqrt(relu(x))
        (within eps / (2 sqrt|x|) below 0)."""
        x = torch.tensor([-3.0, -0.5, 0.2, 1.0, 4.0], dtype=torch.float64)
        f = build_activation(name, W0)(x / W0)
        paper = {"spder": torch.sqrt(x.abs()), "spder_sqrt": torch.sqrt(x.abs()), "spder_log": torch.log(x.abs()),
                 "spder_sqrt_relu": torch.sqrt(torch.relu(x))}[name]
        atol = SPDER_EPS / (2 * math.sqrt(0.5)) if name == "spder_sqrt_relu" else 1e-6
        torch.testing.assert_close(f, torch.sin(x) * paper, rtol=1e-6, atol=atol)

    @pytest.mark.parametrize("name", SPDERS)
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_training_gradient_is_finite_at_zero(self, name, dtype):
        act = build_activation(name, W0)
        z = torch.tensor([0.0, 0.5, -0.5], dtype=dtype, requires_grad=True)
        f, df, d2f = act.jet(z, order=2)
        loss = (f ** 2).sum() + (df ** 2).sum() + (d2f ** 2).sum()
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(grad).all()

    @pytest.mark.parametrize("name", GUARDED)
    def test_value_at_zero(self, name):
        # sin(0) delta(0) = 0; f'(0) = w0 delta(0): sqrt(eps), log(eps), sqrt(eps / 2).
        act = build_activation(name, W0)
        f, df, _ = act.jet(torch.zeros(1, dtype=torch.float64), 2)
        delta0 = {"spder": math.sqrt(SPDER_EPS), "spder_sqrt": math.sqrt(SPDER_EPS),
                  "spder_log": math.log(SPDER_EPS), "spder_sqrt_relu": math.sqrt(SPDER_EPS / 2)}[name]
        assert f.item() == 0.0
        assert df.item() == pytest.approx(W0 * delta0, rel=1e-12)

    @pytest.mark.parametrize("name", GUARDED)
    def test_eps_is_the_smoothing_length(self, name):
        """spder_eps reaches the damping: f'(0) = w0 delta(0) follows it; a non-positive eps is refused."""
        for eps in (1e-6, 1e-2):
            act = build_activation(name, W0, spder_eps=eps)
            assert act.eps == eps
            df0 = act.jet(torch.zeros(1, dtype=torch.float64), 1)[1].item()
            delta0 = {"spder_log": math.log(eps), "spder_sqrt_relu": math.sqrt(eps / 2)}.get(name, math.sqrt(eps))
            assert df0 == pytest.approx(W0 * delta0, rel=1e-12)
        with pytest.raises(ValueError, match="eps"):
            SPDER(W0, "sqrt", eps=0.0)


def _layer(fan_in, fan_out=512):
    return nn.Linear(fan_in, fan_out)


class TestInit:
    @pytest.mark.parametrize("name", ["sine"] + SPDERS)
    def test_siren_first_layer(self, name):
        layer = _layer(2)
        build_activation(name, W0).init_first(layer)
        bound = 1.0 / 2
        w = layer.weight
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() > 0.9 * bound  # fills the range (nn.Linear's default would exceed it)

    @pytest.mark.parametrize("name", ["sine"] + SPDERS)
    @pytest.mark.parametrize("w0", [1.0, 30.0])
    def test_siren_hidden_layer(self, name, w0):
        layer = _layer(64)
        build_activation(name, w0).init_hidden(layer)
        bound = math.sqrt(6.0 / 64) / w0
        w = layer.weight
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() > 0.9 * bound
        # uniform: std = bound / sqrt(3)
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)

    @pytest.mark.parametrize("name,std", [
        ("relu", lambda n_in, n_out: math.sqrt(2.0 / n_in)),
        ("softplus", lambda n_in, n_out: math.sqrt(2.0 / n_in)),
        ("elu", lambda n_in, n_out: math.sqrt(1.5505188080679277 / n_in)),
        ("selu", lambda n_in, n_out: 1.0 / math.sqrt(n_in)),
        ("sigmoid", lambda n_in, n_out: math.sqrt(2.0 / (n_in + n_out))),
        ("tanh", lambda n_in, n_out: math.sqrt(2.0 / (n_in + n_out))),
    ])
    def test_normal_inits(self, name, std):
        n_in, n_out = 128, 512  # 65536 weights: the sample std is within ~0.3% of the true one
        layer = _layer(n_in, n_out)
        build_activation(name).init_hidden(layer)
        w = layer.weight
        assert w.std().item() == pytest.approx(std(n_in, n_out), rel=0.03)
        assert abs(w.mean().item()) < 0.05 * std(n_in, n_out)

    def test_relu_first_layer_is_kaiming(self):
        layer = _layer(256, 256)
        build_activation("relu").init_first(layer)
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2.0 / 256), rel=0.03)

    def test_mlp_torch_default_init_is_what_nn_linear_draws(self):
        """The original TinyNeRF's init: the same seed gives nn.Linear's own weights, layer by layer."""
        from sobolev_inr.models import MLP

        torch.manual_seed(3)
        model = MLP(3, 4, ["sine"] * 2, hidden_features=32, w0=1.0, init="torch_default")
        torch.manual_seed(3)
        plain = [torch.nn.Linear(3, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 4)]
        for ours, theirs in zip([*model.hidden, model.output], plain):
            assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)

    def test_mlp_he_init_is_kaiming_normal_everywhere(self):
        from sobolev_inr.models import MLP

        model = MLP(64, 256, ["sine"] * 2, hidden_features=256, init="he")
        for layer in [*model.hidden, model.output]:
            fan_in = layer.weight.shape[1]
            assert layer.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.05)
        with pytest.raises(ValueError, match="unknown init"):
            MLP(2, 3, ["sine"], init="xavier")

    def test_mlp_uses_the_inits(self):
        from sobolev_inr.models import MLP

        model = MLP(2, 3, ["sine", "sine", "sine"], hidden_features=64, w0=W0)
        assert model.hidden[0].weight.abs().max().item() <= 0.5
        bound = math.sqrt(6.0 / 64) / W0
        for layer in list(model.hidden[1:]) + [model.output]:
            assert layer.weight.abs().max().item() <= bound
