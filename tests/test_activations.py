"""Tests for sobolev_inr.models.activations: jets (f, f', f''), their gradients, and the inits."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sobolev_inr.models.activations import ACTIVATIONS, SPDER, SPDER_EPS, build_activation

ALL = sorted(ACTIVATIONS)
SPDERS = ["spder", "spder_sqrt", "spder_log", "spder_arctan", "spder_sqrt_relu"]
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
    return lambda z: torch.sin(W0 * z) * delta(z)


REFERENCE_VALUES = {
    "sine": lambda z: torch.sin(W0 * z),
    "relu": torch.relu,
    "elu": F.elu,
    "selu": F.selu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "tanh": torch.tanh,
    "spder": _spder_ref(lambda z: torch.sqrt(z.abs() + SPDER_EPS)),
    "spder_sqrt": _spder_ref(lambda z: torch.sqrt(z.abs() + SPDER_EPS)),
    "spder_log": _spder_ref(lambda z: torch.log(z.abs() + SPDER_EPS)),
    "spder_arctan": _spder_ref(torch.atan),
    "spder_sqrt_relu": _spder_ref(lambda z: torch.sqrt(torch.relu(z) + SPDER_EPS)),
}


class TestRegistry:
    def test_every_activation_has_a_reference(self):
        assert set(REFERENCE_VALUES) == set(ACTIVATIONS)

    @pytest.mark.parametrize("name", ALL)
    def test_smoke(self, name):
        act = build_activation(name, W0)
        z = torch.randn(5, 7)
        assert act(z).shape == (5, 7)
        assert isinstance(repr(act), str)

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

    @pytest.mark.parametrize("name", ["sine", "spder_arctan", "sigmoid", "softplus", "tanh"])
    def test_matches_finite_differences_of_the_second_derivative(self, name):
        """A check that does not go through the activation's own autograd graph (smooth activations)."""
        act = build_activation(name, W0)
        z, eps = _z()[:-1], 1e-6
        d3f = act.jet(z, 3)[3]
        fd = (act.jet(z + eps, 2)[2] - act.jet(z - eps, 2)[2]) / (2 * eps)
        torch.testing.assert_close(d3f, fd, rtol=1e-4, atol=1e-4 * d3f.abs().max().item())

    @pytest.mark.parametrize("name", ["spder", "spder_sqrt", "spder_log"])
    def test_spder_at_zero_is_the_limit_from_either_side(self, name):
        """delta has a kink at 0, where f'' jumps; f'''(0) is the one-sided limit (the same from both sides)."""
        act = build_activation(name, W0)
        d3f = act.jet(torch.tensor([-1e-12, 0.0, 1e-12], dtype=torch.float64), 3)[3]
        assert torch.isfinite(d3f).all()
        torch.testing.assert_close(d3f[1].expand(2), d3f[[0, 2]], rtol=1e-6, atol=0)

    def test_sine_reuses_its_first_derivative(self):
        _, df, _, d3f = build_activation("sine", W0).jet(_z(), 3)
        torch.testing.assert_close(d3f, -(W0 ** 2) * df, rtol=0, atol=0)

    @pytest.mark.parametrize("name", ALL)
    def test_gradcheck(self, name):
        act = build_activation(name, 5.0)
        z = (torch.linspace(-1.5, 1.5, 12, dtype=torch.float64) + 0.0123).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: act.jet(t, order=3), (z,), eps=1e-6, atol=1e-5, rtol=1e-4)


class TestSPDERAtZero:
    @pytest.mark.parametrize("name", SPDERS)
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_jet_is_finite_at_zero(self, name, dtype):
        act = build_activation(name, W0)
        z = torch.tensor([0.0, -0.0, 1e-12, -1e-12], dtype=dtype)
        for t in act.jet(z, order=2):
            assert torch.isfinite(t).all()

    @pytest.mark.parametrize("name", SPDERS)
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_training_gradient_is_finite_at_zero(self, name, dtype):
        act = build_activation(name, W0)
        z = torch.tensor([0.0, 0.5, -0.5], dtype=dtype, requires_grad=True)
        f, df, d2f = act.jet(z, order=2)
        loss = (f ** 2).sum() + (df ** 2).sum() + (d2f ** 2).sum()
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(grad).all()

    @pytest.mark.parametrize("name", ["spder", "spder_sqrt", "spder_log", "spder_sqrt_relu"])
    def test_value_at_zero(self, name):
        # sin(0) * delta(0) = 0; f'(0) = w0 * delta(0) for the guarded deltas.
        act = build_activation(name, W0)
        f, df, _ = act.jet(torch.zeros(1, dtype=torch.float64), 2)
        delta0 = {"spder": math.sqrt(SPDER_EPS), "spder_sqrt": math.sqrt(SPDER_EPS),
                  "spder_log": math.log(SPDER_EPS), "spder_sqrt_relu": math.sqrt(SPDER_EPS)}[name]
        assert f.item() == 0.0
        assert df.item() == pytest.approx(W0 * delta0, rel=1e-12)


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
