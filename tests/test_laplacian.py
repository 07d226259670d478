"""Tests for the forward Laplacian: the fused engine (:mod:`sobolev_inr.derivatives.laplacian`) and the
plain-autograd one (:meth:`MLP.laplacian`) against nested autograd, their gradients, row blocks, and
no hidden global state.

relative error = max |engine - reference| / max |reference| (the absolute error where the reference is
identically zero, as the Laplacian of a ReLU network without encoding).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from sobolev_inr.derivatives import cpu_blocks, reference_laplacian, value_and_derivatives
from sobolev_inr.derivatives.fused import is_plain_mlp
from sobolev_inr.derivatives.laplacian import fused_value_and_laplacian
from sobolev_inr.models import ACTIVATIONS, ENCODINGS, MLP
from sobolev_inr.models.encodings import build_encoding

from derivative_cases import make_coords, make_model, relative_error

ALL_ACTIVATIONS = sorted(ACTIVATIONS)
ENGINES = ["fused", "autograd"]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["f32", "f64"]


def nested_laplacian(model, x, scale=None, create_graph=False) -> torch.Tensor:
    """sum_d scale_d^2 d^2 f / d x_d^2 (N, C) by nested per-channel, per-axis autograd (``x`` kept if it
    requires grad, so that a loss reaches it)."""
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = model(x)
        out = torch.zeros_like(value)
        columns = []
        for c in range(value.shape[1]):
            (g,) = torch.autograd.grad(value[:, c].sum(), x, create_graph=True)
            lap = 0.0
            for d in range(x.shape[1]):
                (h,) = torch.autograd.grad(g[:, d].sum(), x, create_graph=create_graph, retain_graph=True)
                lap = lap + (1.0 if scale is None else scale[d] ** 2) * h[:, d]
            columns.append(lap)
    out = torch.stack(columns, dim=1)
    return out if create_graph else out.detach()


class TestModelsAndEncodings:
    """The autograd path's building blocks: MLP.laplacian and the encodings' summed second-order term."""

    @pytest.mark.parametrize("encoding", ["positional", "fourier"])
    def test_jet_summed_is_the_sum_of_the_jet(self, encoding):
        enc = build_encoding(encoding, 3, num_frequencies=2, fourier_num_features=5, fourier_scale=2.0).double()
        x, t = make_coords(7, d=3), torch.randn(4, 7, 3, dtype=torch.float64)
        value, tangent, second = enc.jet(x, t, torch.zeros_like(t))
        v, tg, s = enc.jet_summed(x, t)
        for a, b in [(v, value), (tg, tangent), (s, second.sum(0))]:
            torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)

    def test_identity_encoding_has_no_second_order_term(self):
        x, t = make_coords(5), torch.randn(2, 5, 2, dtype=torch.float64)
        assert build_encoding("none", 2).jet_summed(x, t)[2] is None

    @pytest.mark.parametrize("encoding", ENCODINGS)
    def test_mlp_laplacian_is_the_sum_of_the_jet(self, encoding):
        model = make_model("tanh", encoding)
        x, t = make_coords(24), torch.randn(3, 24, 2, dtype=torch.float64)
        value, out, lap = model.laplacian(x, t)
        ref_value, ref_out, second = model.jet(x, t, second_order=True)
        for a, b in [(value, ref_value), (out, ref_out), (lap, second.sum(0))]:
            assert relative_error(a, b) < 1e-12


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
class TestAgainstNestedAutograd:
    """Every activation x encoding x dtype, both engines, for C = 1 and 3, with and without ``scale``."""

    def test_laplacian(self, activation, encoding, dtype):
        scale = torch.tensor([0.5, 2.0], dtype=dtype)
        for out_features in (1, 3):
            model = make_model(activation, encoding, out_features=out_features, dtype=dtype)
            x = make_coords(24, dtype=dtype)
            ref = reference_laplacian(model, x).detach()
            # scale: the Laplacian of u -> model(scale u) at u = x / scale
            ref_scaled = reference_laplacian(lambda u: model(u * scale), x / scale).detach()
            for engine in ENGINES:
                out = value_and_derivatives(model, x, laplacian=True, engine=engine, create_graph=False)
                where = f"{engine}, C = {out_features}"
                assert out.laplacian.shape == (24, out_features) and out.laplacian.dtype == dtype, where
                assert relative_error(out.laplacian, ref) < TOL[dtype], where
                assert relative_error(out.value, model(x).detach()) < TOL[dtype], where
                out = value_and_derivatives(model, x, scale=scale, laplacian=True, engine=engine, create_graph=False)
                assert relative_error(out.laplacian, ref_scaled) < TOL[dtype], f"{where}, with scale"


class TestOtherShapes:
    @pytest.mark.parametrize("engine", ENGINES)
    @pytest.mark.parametrize("d,c", [(1, 1), (1, 3), (3, 1), (3, 2)])
    @pytest.mark.parametrize("encoding", ["none", "positional"])
    def test_dimensions(self, d, c, encoding, engine):
        model = make_model("sine", encoding, in_features=d, out_features=c)
        x = make_coords(20, d=d)
        scale = torch.linspace(0.5, 2.0, d, dtype=torch.float64)
        out = value_and_derivatives(model, x, scale=scale, laplacian=True, engine=engine)
        assert out.laplacian.shape == (20, c) and out.jacobian.shape == (20, c, d)
        assert relative_error(out.laplacian, nested_laplacian(model, x, scale)) < 1e-10

    def test_deeper_network_and_the_jacobian_that_comes_with_it(self):
        from sobolev_inr.derivatives import reference_jacobian

        model = make_model("sine", "fourier", layers=4, hidden=32)
        x = make_coords(64)
        out = value_and_derivatives(model, x, laplacian=True, engine="fused")
        assert relative_error(out.laplacian, reference_laplacian(model, x)) < 1e-10
        assert relative_error(out.jacobian, reference_jacobian(model, x).jacobian) < 1e-10

    def test_auto_is_fused_for_a_plain_mlp(self, monkeypatch):
        from sobolev_inr.derivatives import api

        calls = []
        monkeypatch.setattr(api, "fused_value_and_laplacian", lambda *a: calls.append(1) or fused_value_and_laplacian(*a))
        value_and_derivatives(make_model(), make_coords(24), laplacian=True)
        assert calls == [1]


def _weight_grads(model, loss):
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(model.parameters(), grads)]


class TestGradients:
    @pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
    @pytest.mark.parametrize("encoding", ["none", "fourier"])
    def test_weight_gradients_equal_the_autograd_path(self, activation, encoding):
        """A loss on the Laplacian alone (the ``lapl`` supervision) and one on all three results."""
        for out_features in (1, 3):
            model = make_model(activation, encoding, out_features=out_features, layers=3, hidden=16)
            x = make_coords(24)
            scale = torch.tensor([0.5, 2.0], dtype=torch.float64)
            target = torch.randn(24, out_features, dtype=torch.float64)
            for full in (False, True):
                grads = {}
                for engine in ENGINES:
                    out = value_and_derivatives(model, x, scale=scale, laplacian=True, engine=engine)
                    loss = ((out.laplacian - target) ** 2).sum()
                    if full:
                        loss = loss + (out.value ** 2).sum() + (out.jacobian ** 2).sum()
                    grads[engine] = _weight_grads(model, loss)
                for (name, _), g, r in zip(model.named_parameters(), grads["fused"], grads["autograd"]):
                    assert relative_error(g, r) < 1e-10 or (g - r).abs().max().item() < 1e-12, \
                        f"d loss / d {name}, C = {out_features}, full = {full}"

    @pytest.mark.parametrize("engine", ENGINES)
    @pytest.mark.parametrize("activation", ["sine", "tanh", "spder"])
    def test_weight_gradients_equal_nested_autograd(self, activation, engine):
        model = make_model(activation, "positional")
        x = make_coords(16)
        out = value_and_derivatives(model, x, laplacian=True, engine=engine)
        grads = _weight_grads(model, (out.laplacian ** 2).sum())
        ref_grads = _weight_grads(model, (nested_laplacian(model, x, create_graph=True) ** 2).sum())
        for g, r in zip(grads, ref_grads):
            assert relative_error(g, r) < 1e-9

    @pytest.mark.parametrize("encoding", ENCODINGS)
    def test_gradients_to_the_coords_equal_nested_autograd(self, encoding):
        model = make_model("tanh", encoding)
        grads = []
        for laplacian_of in (lambda x: value_and_derivatives(model, x, laplacian=True, engine="fused").laplacian,
                             lambda x: nested_laplacian(model, x, create_graph=True)):
            x = make_coords(16).requires_grad_(True)
            (g,) = torch.autograd.grad((laplacian_of(x) ** 2).sum(), x)
            grads.append(g)
        assert relative_error(*grads) < 1e-9


class _LaplacianOf(nn.Module):
    def __init__(self, model, engine):
        super().__init__()
        self.model, self.engine = model, engine

    def forward(self, coords, scale):
        out = value_and_derivatives(self.model, coords, scale=scale, laplacian=True, engine=self.engine)
        return out.value, out.jacobian, out.laplacian


GRADCHECK_MODELS = [("sine", "none"), ("spder", "none"), ("relu", "fourier"), ("softplus", "positional")]


class TestGradcheck:
    """The fused Function's hand-written backward pass, in float64 at small sizes."""

    @pytest.mark.parametrize("activation,encoding", GRADCHECK_MODELS)
    def test_wrt_weights(self, activation, encoding):
        model = make_model(activation, encoding, out_features=2, hidden=4, layers=2)
        wrapper = _LaplacianOf(model, "fused")
        names = [f"model.{k}" for k, _ in model.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
        x, scale = make_coords(5), torch.tensor([0.5, 2.0], dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda *ps: functional_call(wrapper, dict(zip(names, ps)), (x, scale)),
                                        params)

    @pytest.mark.parametrize("activation,encoding", GRADCHECK_MODELS)
    def test_wrt_coords_and_scale(self, activation, encoding):
        """Coordinates reach h0 (and t0, s0 through an encoding); ``scale`` reaches the shared tangents t0."""
        model = make_model(activation, encoding, out_features=2, hidden=6, layers=2)
        wrapper = _LaplacianOf(model, "fused")
        x = make_coords(4).requires_grad_(True)
        scale = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(wrapper, (x, scale))


class TestRowBlocks:
    def test_many_row_blocks_on_two_workers(self, monkeypatch):
        monkeypatch.setattr(cpu_blocks, "BLOCK_ELEMENTS", 16 * 4 * 37)  # 9 blocks of <= 37 rows (4 streams, width 16)
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            for activation, encoding in [("sine", "none"), ("relu", "positional"), ("tanh", "fourier")]:
                model = make_model(activation, encoding, layers=3, hidden=16)
                target = torch.randn(300, 3, dtype=torch.float64)
                grads = {}
                for engine in ENGINES:
                    x = make_coords(300).requires_grad_(True)
                    out = value_and_derivatives(model, x, laplacian=True, engine=engine)
                    loss = ((out.laplacian - target) ** 2).sum() + (out.value ** 2).sum() + out.jacobian.sum()
                    grads[engine] = torch.autograd.grad(loss, [x, *model.parameters()])
                names = ["coords"] + [name for name, _ in model.named_parameters()]
                for name, g, r in zip(names, grads["fused"], grads["autograd"]):
                    assert relative_error(g, r) < 1e-9, f"{activation}: d loss / d {name}"
        finally:
            torch.set_num_threads(threads)


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for the backward pass while ``fn()`` builds its graph."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


class TestMemoryAndGraph:
    def test_keeps_only_the_pre_activation_streams(self):
        """Per row: the first layer's u (its tangent products are (1, H) without encoding), then
        [u; tu_1; tu_2; su] of each later layer; besides, the inputs and the parameters."""
        layers, hidden, n = 3, 32, 64
        model = make_model("sine", "none", layers=layers, hidden=hidden)
        x = make_coords(n)
        kept = _saved_bytes(lambda: value_and_derivatives(model, x, laplacian=True, engine="fused"))
        params = sum(p.numel() for p in model.parameters())
        expected = (n * hidden + 2 * hidden + (layers - 1) * 4 * n * hidden + n * 2 + 2 * 2 + params) * 8
        assert kept == expected

    @pytest.mark.parametrize("engine", ENGINES)
    def test_no_graph_when_not_asked(self, engine):
        model, x = make_model(), make_coords(24).requires_grad_(True)
        out = value_and_derivatives(model, x, laplacian=True, engine=engine, create_graph=False)
        assert out.laplacian.grad_fn is None and out.value.grad_fn is None
        with torch.no_grad():
            out = value_and_derivatives(model, x, laplacian=True, engine=engine)
        assert out.laplacian.grad_fn is None

    def test_graph_when_asked(self):
        out = value_and_derivatives(make_model(), make_coords(24), laplacian=True, engine="fused")
        assert out.laplacian.grad_fn is not None and out.jacobian.grad_fn is not None


class _ScaledMLP(MLP):
    """An MLP subclass with its own forward and jet (twice the output): served by the autograd path."""

    def forward(self, x):
        return 2 * super().forward(x)

    def jet(self, x, tangents, second_order=False):
        value, out, second = super().jet(x, tangents, second_order)
        return 2 * value, 2 * out, (2 * second if second is not None else None)


class TestOtherModelsAndBadInputs:
    def test_subclass_with_its_own_jet_uses_the_autograd_path(self):
        torch.manual_seed(0)
        model = _ScaledMLP(2, 2, ["sine"] * 2, hidden_features=8, encoding="positional", num_frequencies=2).double()
        assert not is_plain_mlp(model)
        x = make_coords(10)
        out = value_and_derivatives(model, x, laplacian=True)
        assert relative_error(out.laplacian, reference_laplacian(model, x)) < 1e-10
        with pytest.raises(ValueError, match="autograd"):
            value_and_derivatives(model, x, laplacian=True, engine="fused")

    def test_module_without_jet_raises(self):
        plain = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        with pytest.raises(TypeError, match="jet"):
            value_and_derivatives(plain, make_coords(24), laplacian=True)

    def test_bad_arguments_raise(self):
        model, x = make_model(), make_coords(24)
        with pytest.raises(ValueError, match="engine"):
            value_and_derivatives(model, x, laplacian=True, engine="jax")
        with pytest.raises(ValueError, match="scale"):
            value_and_derivatives(model, x, scale=torch.ones(3, dtype=torch.float64), laplacian=True)
        with pytest.raises(ValueError, match="coords"):
            value_and_derivatives(model, x[0], laplacian=True)
        with pytest.raises(ValueError, match="mode"):
            value_and_derivatives(model, x, mode="finite", laplacian=True)


class TestNoHiddenState:
    @pytest.mark.parametrize("engine", ENGINES)
    def test_global_settings_unchanged(self, engine, monkeypatch):
        monkeypatch.setattr(cpu_blocks, "BLOCK_ELEMENTS", 16 * 4 * 37)  # several blocks, on the workers
        previous = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            settings = lambda: (torch.get_default_dtype(), torch.is_grad_enabled(),  # noqa: E731
                                torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
            before, rng = settings(), torch.get_rng_state()
            model = make_model(hidden=16)
            rng = torch.get_rng_state()
            out = value_and_derivatives(model, make_coords(300).requires_grad_(True), laplacian=True, engine=engine)
            out.laplacian.sum().backward()
            assert settings() == before
            assert torch.equal(torch.get_rng_state(), rng)
        finally:
            torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("activation, encoding", [("sine", "none"), ("relu", "positional"), ("tanh", "fourier")])
@pytest.mark.parametrize("channels", [1, 3])
def test_fused_equals_the_reference_on_cuda(activation, encoding, channels):
    cuda = torch.device("cuda")
    torch.manual_seed(0)
    model = MLP(2, channels, [activation] * 3, hidden_features=64, encoding=encoding, num_frequencies=4,
                fourier_num_features=16, fourier_scale=2.0).to(cuda)
    x = torch.rand(4096, 2, device=cuda) * 2 - 1
    scale = torch.tensor([2 / 511, 2 / 511], device=cuda)
    out = value_and_derivatives(model, x, scale=scale, laplacian=True, engine="fused")
    ref = nested_laplacian(model, x, scale, create_graph=True)
    assert relative_error(out.laplacian, ref.detach()) < 1e-5
    target = torch.randn_like(ref)
    grads = _weight_grads(model, ((out.laplacian - target) ** 2).sum())
    ref_grads = _weight_grads(model, ((ref - target) ** 2).sum())
    for g, r in zip(grads, ref_grads):
        assert relative_error(g, r) < 1e-4
