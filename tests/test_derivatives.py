"""Tests for sobolev_inr.derivatives: the batched Jacobian / Laplacian engines and the forward-mode
tangents against per-channel (per-direction) autograd, gradients, and no hidden global state.

relative error = max |engine - reference| / max |reference| (the absolute error where the reference
is identically zero, as the Laplacian of a ReLU network without encoding).
"""
from __future__ import annotations

import threading

import pytest
import torch
from torch import nn
from torch.func import functional_call

from sobolev_inr import derivatives
from sobolev_inr.derivatives import (DERIVATIVE_MODES, ENGINES, Derivatives, choose_mode, cpu_blocks,
                                     reference_jacobian, reference_laplacian, reference_tangents,
                                     value_and_derivatives, value_and_tangents)
from sobolev_inr.models import ACTIVATIONS, ENCODINGS, MLP

from derivative_cases import make_coords, make_model, relative_error

ALL_ACTIVATIONS = sorted(ACTIVATIONS)
MODES = ("forward", "reverse", "auto")
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["f32", "f64"]
# Every explicit engine (the fused one has a hand-written backward pass); TestEngineAndModeLists
# fails if the module offers one that is not listed here, or renames one.
JACOBIAN_ENGINES = ["fused", "autograd"]


def derive(model, coords, engine, **kwargs) -> Derivatives:
    """value_and_derivatives with an explicit ``engine``."""
    return value_and_derivatives(model, coords, engine=engine, **kwargs)


class TestEngineAndModeLists:
    """The lists these tests run over are the ones the module offers: a new or renamed engine or mode
    fails here instead of going untested."""

    def test_engines(self):
        assert sorted(ENGINES) == sorted(["auto", *JACOBIAN_ENGINES])

    def test_modes(self):
        assert sorted(DERIVATIVE_MODES) == sorted(MODES)

    def test_public_api(self):
        assert sorted(derivatives.__all__) == sorted(
            ["Derivatives", "choose_mode", "DERIVATIVE_MODES", "ENGINES", "value_and_derivatives",
             "value_and_tangents", "reference_jacobian", "reference_laplacian", "reference_tangents"])
        for name in derivatives.__all__:
            assert hasattr(derivatives, name), name


class TestChooseMode:
    @pytest.mark.parametrize("d,c,expected", [(2, 3, "forward"), (1, 2, "forward"), (2, 1, "reverse"),
                                              (1, 1, "forward"), (2, 2, "forward"), (3, 3, "forward"),
                                              (3, 1, "reverse")])
    def test_auto(self, d, c, expected):
        assert choose_mode(d, c) == expected
        assert choose_mode(d, c, "auto") == expected

    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    def test_explicit_mode_is_kept(self, mode):
        assert choose_mode(2, 3, mode) == mode
        assert choose_mode(3, 1, mode) == mode

    def test_unknown_mode_lists_choices(self):
        with pytest.raises(ValueError) as info:
            choose_mode(2, 3, "finite")
        for mode in DERIVATIVE_MODES:
            assert mode in str(info.value)


class TestSmoke:
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
    def test_shapes_and_dtype(self, mode, dtype):
        model = make_model(dtype=dtype)
        x = make_coords(20, dtype=dtype)
        out = value_and_derivatives(model, x, mode=mode)
        assert isinstance(out, Derivatives)
        assert out.value.shape == (20, 3) and out.value.dtype == dtype
        assert out.jacobian.shape == (20, 3, 2) and out.jacobian.dtype == dtype
        assert out.laplacian is None
        torch.testing.assert_close(out.value, model(x), rtol=1e-6, atol=1e-6)

    @pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
    def test_laplacian_shape(self, dtype):
        out = value_and_derivatives(make_model(dtype=dtype), make_coords(20, dtype=dtype), laplacian=True)
        assert out.laplacian.shape == (20, 3) and out.laplacian.dtype == dtype

    def test_unknown_mode_raises(self):
        with pytest.raises(ValueError, match="forward"):
            value_and_derivatives(make_model(), make_coords(), mode="finite")

    def test_unknown_mode_raises_with_laplacian(self):
        with pytest.raises(ValueError):
            value_and_derivatives(make_model(), make_coords(), mode="finite", laplacian=True)

    def test_unknown_engine_lists_choices(self):
        with pytest.raises(ValueError) as info:
            value_and_derivatives(make_model(), make_coords(), engine="jax")
        for engine in ENGINES:
            assert engine in str(info.value)

    def test_fused_engine_refuses_what_it_cannot_do(self):
        class OwnJet(MLP):  # a subclass whose jet the fused engine does not reimplement
            def jet(self, x, tangents, second_order=False):
                return super().jet(x, tangents, second_order)

        own = OwnJet(2, 3, ["sine"] * 2, hidden_features=8).double()
        with pytest.raises(ValueError, match="autograd"):
            value_and_derivatives(own, make_coords(), laplacian=True, engine="fused")
        plain = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        with pytest.raises(ValueError, match="autograd"):
            value_and_derivatives(plain, make_coords(), mode="reverse", engine="fused")

    def test_forward_mode_needs_jet(self):
        plain = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        with pytest.raises(TypeError, match="jet"):
            value_and_derivatives(plain, make_coords(), mode="forward")

    def test_reverse_mode_works_without_jet_or_out_features(self):
        plain = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        x = make_coords()
        out = value_and_derivatives(plain, x)  # auto falls back to reverse
        ref = reference_jacobian(plain, x)
        assert relative_error(out.jacobian, ref.jacobian) < TOL[torch.float64]


@pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
class TestJacobianAgainstReference:
    """Every activation x encoding x mode x dtype x engine, for an RGB-like (C=3) and a gray (C=1) output."""

    def test_jacobian(self, activation, encoding, mode, dtype, engine):
        for out_features in (1, 3):
            model = make_model(activation, encoding, out_features=out_features, dtype=dtype)
            x = make_coords(24, dtype=dtype)
            out = derive(model, x, engine, mode=mode, create_graph=False)
            ref = reference_jacobian(model, x)
            assert out.jacobian.shape == (24, out_features, 2)
            assert relative_error(out.jacobian, ref.jacobian) < TOL[dtype], f"C = {out_features}"
            assert relative_error(out.value, ref.value.detach()) < TOL[dtype], f"C = {out_features}"


@pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
class TestScale:
    def test_scale_multiplies_columns(self, activation, encoding, mode, dtype, engine):
        model = make_model(activation, encoding, dtype=dtype)
        x = make_coords(24, dtype=dtype)
        scale = torch.tensor([0.25, 3.0], dtype=torch.float64)  # any dtype is accepted
        scaled = derive(model, x, engine, scale=scale, mode=mode, create_graph=False).jacobian
        ref = reference_jacobian(model, x).jacobian
        assert relative_error(scaled, ref * scale.to(dtype)) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
class TestLaplacianAgainstReference:
    def test_laplacian(self, activation, encoding, dtype):
        model = make_model(activation, encoding, dtype=dtype)
        x = make_coords(24, dtype=dtype)
        out = value_and_derivatives(model, x, laplacian=True, create_graph=False)
        ref = reference_laplacian(model, x)
        assert relative_error(out.laplacian, ref) < TOL[dtype]
        # the Jacobian that comes with it is right too
        assert relative_error(out.jacobian, reference_jacobian(model, x).jacobian) < TOL[dtype]

    def test_laplacian_with_scale(self, activation, encoding, dtype):
        model = make_model(activation, encoding, dtype=dtype)
        x = make_coords(24, dtype=dtype)
        scale = torch.tensor([0.5, 2.0], dtype=dtype)
        out = value_and_derivatives(model, x, scale=scale, laplacian=True, create_graph=False)
        # sum_d scale_d^2 d2f/dx_d^2, from per-axis second derivatives by nested autograd
        xr = x.detach().requires_grad_(True)
        value = model(xr)
        expected = torch.zeros_like(value)
        for c in range(value.shape[1]):
            (g,) = torch.autograd.grad(value[:, c].sum(), xr, create_graph=True)
            for d in range(x.shape[1]):
                if g.requires_grad:
                    (h,) = torch.autograd.grad(g[:, d].sum(), xr, retain_graph=True)
                    expected[:, c] += scale[d] ** 2 * h[:, d].detach()
        assert relative_error(out.laplacian, expected) < TOL[dtype]


class TestOtherShapes:
    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    @pytest.mark.parametrize("d,c", [(1, 1), (1, 3), (3, 1), (3, 2), (2, 2)])
    @pytest.mark.parametrize("mode", MODES)
    def test_jacobian(self, d, c, mode, engine):
        model = make_model("sine", "positional", in_features=d, out_features=c)
        x = make_coords(20, d=d)
        out = derive(model, x, engine, mode=mode)
        assert out.jacobian.shape == (20, c, d)
        assert relative_error(out.jacobian, reference_jacobian(model, x).jacobian) < 1e-10

    @pytest.mark.parametrize("d,c", [(1, 1), (3, 2)])
    def test_laplacian(self, d, c):
        model = make_model("sine", "positional", in_features=d, out_features=c)
        x = make_coords(20, d=d)
        out = value_and_derivatives(model, x, laplacian=True)
        assert relative_error(out.laplacian, reference_laplacian(model, x)) < 1e-10

    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    def test_deeper_network(self, engine):
        model = make_model("sine", "fourier", layers=3, hidden=32)
        x = make_coords(64)
        for mode in ("forward", "reverse"):
            out = derive(model, x, engine, mode=mode)
            assert relative_error(out.jacobian, reference_jacobian(model, x).jacobian) < 1e-10


def _weight_grads(model, loss):
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


class TestCreateGraph:
    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    @pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
    @pytest.mark.parametrize("encoding", ["none", "fourier"])
    def test_weight_gradients_match_reference(self, activation, encoding, mode, engine):
        for out_features in (1, 3):
            model = make_model(activation, encoding, out_features=out_features, layers=3, hidden=16)
            x = make_coords(24)
            target = torch.randn(24, out_features, 2, dtype=torch.float64)
            scale = torch.tensor([0.5, 2.0], dtype=torch.float64)

            out = derive(model, x, engine, scale=scale, mode=mode, create_graph=True)
            loss = ((out.jacobian - target) ** 2).sum() + (out.value ** 2).sum()
            grads = _weight_grads(model, loss)

            ref = reference_jacobian(model, x, create_graph=True)
            ref_loss = ((ref.jacobian * scale - target) ** 2).sum() + (ref.value ** 2).sum()
            ref_grads = _weight_grads(model, ref_loss)

            assert any(g.abs().max() > 0 for g in ref_grads)
            for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
                assert relative_error(g, r) < 1e-9 or (g - r).abs().max().item() < 1e-12, \
                    f"d loss / d {name}, C = {out_features}"

    def test_auto_mode_weight_gradients(self):
        for out_features in (1, 3):
            model = make_model("sine", "positional", out_features=out_features)
            x = make_coords(24)
            grads = _weight_grads(model, (value_and_derivatives(model, x).jacobian ** 2).sum())
            ref_grads = _weight_grads(model, (reference_jacobian(model, x, create_graph=True).jacobian ** 2).sum())
            for g, r in zip(grads, ref_grads):
                assert relative_error(g, r) < 1e-9

    @pytest.mark.parametrize("activation", ["sine", "spder", "tanh", "softplus"])
    def test_laplacian_weight_gradients(self, activation):
        model = make_model(activation, "positional")
        x = make_coords(16)
        out = value_and_derivatives(model, x, laplacian=True, create_graph=True)
        grads = _weight_grads(model, (out.laplacian ** 2).sum())

        xr = x.detach().requires_grad_(True)
        value = model(xr)
        lap = []
        for c in range(value.shape[1]):
            (g,) = torch.autograd.grad(value[:, c].sum(), xr, create_graph=True)
            lap.append(sum(torch.autograd.grad(g[:, d].sum(), xr, create_graph=True)[0][:, d] for d in range(2)))
        ref_grads = _weight_grads(model, (torch.stack(lap, 1) ** 2).sum())
        for g, r in zip(grads, ref_grads):
            assert relative_error(g, r) < 1e-9

    def test_value_only_loss(self):
        """A loss on the value alone (Jacobian unused) back-propagates like model(x)'s."""
        for engine in JACOBIAN_ENGINES:
            for mode in ("forward", "reverse"):
                model = make_model("sine", "positional")
                x = make_coords()
                grads = _weight_grads(model, (derive(model, x, engine, mode=mode).value ** 2).sum())
                ref_grads = _weight_grads(model, (model(x) ** 2).sum())
                for g, r in zip(grads, ref_grads):
                    assert relative_error(g, r) < 1e-10

    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    @pytest.mark.parametrize("out_features", [1, 3])
    def test_no_graph_when_not_asked(self, mode, out_features, engine):
        model = make_model(out_features=out_features)
        out = derive(model, make_coords(), engine, mode=mode, create_graph=False)
        for t in (out.value, out.jacobian):
            assert t.grad_fn is None and not t.requires_grad

    def test_no_graph_for_laplacian(self):
        out = value_and_derivatives(make_model(), make_coords(), laplacian=True, create_graph=False)
        for t in (out.value, out.jacobian, out.laplacian):
            assert t.grad_fn is None and not t.requires_grad

    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    def test_graph_when_asked(self, mode, engine):
        out = derive(make_model(), make_coords(), engine, mode=mode, create_graph=True)
        assert out.jacobian.grad_fn is not None and out.value.grad_fn is not None

    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    def test_works_under_no_grad(self, mode, engine):
        model = make_model()
        x = make_coords()
        with torch.no_grad():
            out = derive(model, x, engine, mode=mode, create_graph=False)
        assert relative_error(out.jacobian, reference_jacobian(model, x).jacobian) < 1e-10


class _JacobianOf(nn.Module):
    """Wraps ``model`` so that torch.func.functional_call can swap its weights for gradcheck inputs."""

    def __init__(self, model, mode, engine):
        super().__init__()
        self.model, self.mode, self.engine = model, mode, engine

    def forward(self, coords):
        out = derive(self.model, coords, self.engine, mode=self.mode, create_graph=True)
        return out.value, out.jacobian


class TestGradcheck:
    """The derivatives are hand-made (jets, and the fused engine's backward pass): gradcheck them."""

    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    @pytest.mark.parametrize("activation,encoding", [("sine", "none"), ("tanh", "none"), ("spder", "none"),
                                                     ("sine", "positional")])
    def test_wrt_weights(self, activation, encoding, mode, engine):
        model = make_model(activation, encoding, hidden=5, layers=2)
        wrapper = _JacobianOf(model, mode, engine)
        names = [f"model.{k}" for k, _ in model.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
        x = make_coords(5)

        def fn(*ps):
            return functional_call(wrapper, dict(zip(names, ps)), (x,))

        assert torch.autograd.gradcheck(fn, params)

    def test_forward_mode_wrt_coords(self):
        model = make_model("sine", "positional", hidden=8)
        x = make_coords(4).requires_grad_(True)
        for engine in JACOBIAN_ENGINES:
            assert torch.autograd.gradcheck(
                lambda c: derive(model, c, engine, mode="forward").jacobian, (x,))

    def test_laplacian_wrt_coords(self):
        model = make_model("tanh", "fourier", hidden=8)
        x = make_coords(4).requires_grad_(True)
        assert torch.autograd.gradcheck(
            lambda c: value_and_derivatives(model, c, laplacian=True).laplacian, (x,))


def _saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for the backward pass while ``fn()`` builds its graph."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return total, out


class TestFusedEngineOptions:
    """Row blocks spread over worker threads, and tangents recomputed in the backward pass."""

    @pytest.mark.parametrize("recompute", [False, True])
    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    def test_many_row_blocks_match_reference(self, monkeypatch, mode, recompute):
        monkeypatch.setattr(cpu_blocks, "BLOCK_ELEMENTS", 16 * 37)  # 9 blocks of <= 37 rows at width 16
        threads = torch.get_num_threads()
        torch.set_num_threads(2)  # two workers, each with its own blocks
        try:
            for activation, encoding in [("sine", "positional"), ("relu", "positional"), ("tanh", "none")]:
                model = make_model(activation, encoding, layers=3, hidden=16)
                target = torch.randn(300, 3, 2, dtype=torch.float64)

                def gradients(jacobian_of):
                    x = make_coords(300).requires_grad_(True)
                    value, jac = jacobian_of(x)
                    loss = ((jac - target) ** 2).sum() + (value ** 2).sum()
                    return torch.autograd.grad(loss, [x, *model.parameters()])

                def fused(x):
                    out = value_and_derivatives(model, x, mode=mode, engine="fused", recompute_tangents=recompute)
                    return out.value, out.jacobian

                def per_channel_loop(x):  # reference_jacobian, without detaching x
                    value = model(x)
                    columns = [torch.autograd.grad(value[:, i].sum(), x, create_graph=True)[0] for i in range(3)]
                    return value, torch.stack(columns, dim=1)

                grads, ref_grads = gradients(fused), gradients(per_channel_loop)
                names = ["coords"] + [name for name, _ in model.named_parameters()]
                for name, g, r in zip(names, grads, ref_grads):
                    assert relative_error(g, r) < 1e-9, f"{activation}: d loss / d {name}"
        finally:
            torch.set_num_threads(threads)

    @pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
    @pytest.mark.parametrize("encoding", ["none", "positional"])
    def test_recomputed_tangents_give_the_same_gradients(self, activation, encoding):
        model = make_model(activation, encoding, layers=3, hidden=16)
        target = torch.randn(24, 3, 2, dtype=torch.float64)
        grads = {}
        for recompute in (False, True):
            x = make_coords(24).requires_grad_(True)
            out = value_and_derivatives(model, x, mode="forward", engine="fused", recompute_tangents=recompute)
            loss = ((out.jacobian - target) ** 2).sum() + (out.value ** 2).sum()
            grads[recompute] = torch.autograd.grad(loss, [x, *model.parameters()])
        for g, r in zip(grads[True], grads[False]):
            assert relative_error(g, r) < 1e-12

    @pytest.mark.parametrize("activation", ["sine", "relu"])
    def test_recomputed_tangents_keep_less(self, activation):
        """Per layer the forward pass keeps the jet alone: D fewer (N, width) tensors."""
        model = make_model(activation, "positional", layers=3, hidden=32)
        x = make_coords(64)
        kept, _ = _saved_bytes(lambda: value_and_derivatives(model, x, mode="forward", engine="fused"))
        lean, _ = _saved_bytes(lambda: value_and_derivatives(model, x, mode="forward", engine="fused",
                                                             recompute_tangents=True))
        layer_tensor = 64 * 32 * 8  # one (N, width) float64 tensor
        assert kept - lean == 3 * 2 * layer_tensor  # 3 layers x D = 2 tangents

    def test_reverse_mode_keeps_no_products_a_relu_layer_does_not_read(self):
        """ReLU (f'' = 0) keeps f alone of its jet and no vector-Jacobian products a_l; tanh keeps
        f, f', f'' and a_l: 2 L + (L - 1) more (C N, width) tensors for L layers."""
        x = make_coords(64)
        kept = {}
        for activation in ("relu", "tanh"):
            model = make_model(activation, "positional", out_features=1, layers=3, hidden=32)
            kept[activation], _ = _saved_bytes(lambda: value_and_derivatives(model, x, mode="reverse", engine="fused"))
        assert kept["tanh"] - kept["relu"] == (2 * 3 + 2) * 64 * 32 * 8


# ------------------------------------------------------------------------------ gradients to coords
GRADCHECK_MODELS = [("sine", "none"), ("sine", "positional"), ("relu", "none"), ("relu", "positional"),
                    ("tanh", "none"), ("tanh", "positional")]


class TestGradientsToCoords:
    """Every engine and mode passes d loss / d coords: gradcheck of coords -> (value, Jacobian)."""

    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    @pytest.mark.parametrize("activation,encoding", GRADCHECK_MODELS)
    def test_value_and_jacobian(self, activation, encoding, mode, engine):
        model = make_model(activation, encoding, hidden=6, layers=2)
        x = make_coords(4).requires_grad_(True)

        def fn(c):
            out = derive(model, c, engine, mode=mode, scale=torch.tensor([0.5, 2.0]))
            return out.value, out.jacobian

        assert torch.autograd.gradcheck(fn, (x,))

    @pytest.mark.parametrize("activation,encoding", GRADCHECK_MODELS)
    def test_laplacian(self, activation, encoding):
        model = make_model(activation, encoding, hidden=6, layers=2)
        x = make_coords(4).requires_grad_(True)

        def fn(c):
            out = value_and_derivatives(model, c, laplacian=True, scale=torch.tensor([0.5, 2.0]))
            return out.value, out.jacobian, out.laplacian

        assert torch.autograd.gradcheck(fn, (x,))

    def test_reverse_mode_of_a_plain_module(self):
        plain = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        x = make_coords(4).requires_grad_(True)

        def fn(c):
            out = value_and_derivatives(plain, c, mode="reverse", engine="autograd")
            return out.value, out.jacobian

        assert torch.autograd.gradcheck(fn, (x,))

    @pytest.mark.parametrize("create_graph", [False, True])
    def test_coords_without_grad_stay_detached(self, create_graph):
        """Coordinates that do not require grad are not made to: the results do not reach them."""
        x = make_coords(6)
        out = value_and_derivatives(make_model(), x, mode="reverse", engine="autograd", create_graph=create_graph)
        assert not x.requires_grad and x.grad_fn is None
        assert out.jacobian.requires_grad == create_graph


# ------------------------------------------------------------------------------------ hidden state
def _in_new_thread(fn):
    """fn() in a thread started for it: what torch settings a new thread starts from."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


class TestNoHiddenState:
    """Library calls leave torch's global settings as they found them."""

    @pytest.mark.parametrize("mode", ["forward", "reverse"])
    def test_fused_workers_leave_the_thread_count_new_threads_start_with(self, monkeypatch, mode):
        """torch.set_num_threads(1) in a worker also sets the count every new thread starts from;
        the pool puts it back, and its workers still run with 1 thread."""
        previous = torch.get_num_threads()
        torch.set_num_threads(2)
        monkeypatch.setattr(cpu_blocks, "_pool", None)  # this test's call starts the workers
        pools = []
        start_pool = cpu_blocks.worker_pool

        def recorded_pool(count):
            pools.append(start_pool(count))
            return pools[-1]

        monkeypatch.setattr(cpu_blocks, "worker_pool", recorded_pool)
        try:
            before = _in_new_thread(torch.get_num_threads)
            model = make_model("sine", "positional", layers=2, hidden=16)
            x = make_coords(2048).requires_grad_(True)  # 2 row blocks at 2 threads
            out = value_and_derivatives(model, x, mode=mode, engine="fused")
            used_by_forward = len(pools)
            (out.value.sum() + (out.jacobian ** 2).sum()).backward()
            after = _in_new_thread(torch.get_num_threads)

            assert 0 < used_by_forward < len(pools)  # both passes ran on the workers
            assert before == after == 2
            assert torch.get_num_threads() == 2
            started = threading.Barrier(2, timeout=30)  # one probe on each of the two workers

            def probe():
                started.wait()
                return threading.current_thread().name, torch.get_num_threads()

            seen = [f.result() for f in [pools[0].submit(probe) for _ in range(2)]]
            assert len({name for name, _ in seen}) == 2
            assert [count for _, count in seen] == [1, 1]
        finally:
            if cpu_blocks._pool is not None:
                cpu_blocks._pool.executor.shutdown()
            torch.set_num_threads(previous)

    @pytest.mark.parametrize("call", ["fused-forward", "fused-reverse", "autograd-forward", "autograd-reverse",
                                      "laplacian", "tangents-fused", "tangents-autograd"])
    @pytest.mark.parametrize("flipped", [False, True], ids=["defaults", "flipped"])
    def test_global_settings_unchanged(self, call, flipped):
        """Default dtype, RNG state, grad mode, deterministic algorithms and thread count, from torch's
        defaults and from their opposites (so that a call resetting them to the defaults fails too)."""
        model = make_model("sine", "positional", hidden=16)
        x = make_coords(64)
        dtype, deterministic = torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled()
        try:
            if flipped:
                torch.set_default_dtype(torch.float64)
                torch.use_deterministic_algorithms(True)
            with torch.set_grad_enabled(not flipped):
                settings = lambda: (torch.get_default_dtype(), torch.is_grad_enabled(),  # noqa: E731
                                    torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
                before, rng = settings(), torch.get_rng_state()
                if call.startswith("tangents"):
                    value_and_tangents(model, x, torch.randn(2, 64, 2, dtype=torch.float64,
                                                             generator=torch.Generator().manual_seed(0)),
                                       engine=call.split("-")[1])
                elif call == "laplacian":
                    value_and_derivatives(model, x, laplacian=True)
                else:
                    engine, mode = call.split("-")
                    value_and_derivatives(model, x, engine=engine, mode=mode)
                assert settings() == before
                assert torch.equal(torch.get_rng_state(), rng)
        finally:
            torch.set_default_dtype(dtype)
            torch.use_deterministic_algorithms(deterministic)


# -------------------------------------------------------------------------------- value_and_tangents
def make_tangents(shape, dtype=torch.float64, seed=2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype)


# (x shape, tangents shape): points as a batch and as (rays, samples); tangents per point, then shared
# by the samples of a ray, then by every point.
TANGENT_SHAPES = [((10, 3), (2, 10, 3)), ((3, 4, 3), (2, 3, 4, 3)), ((3, 4, 3), (2, 3, 1, 3)),
                  ((3, 4, 3), (2, 1, 1, 3)), ((10, 3), (2, 1, 3))]


class _ScaledMLP(MLP):
    """An MLP subclass with its own forward and jet (twice the output): served by the autograd engine."""

    def forward(self, x):
        return 2 * super().forward(x)

    def jet(self, x, tangents, second_order=False):
        value, out, second = super().jet(x, tangents, second_order)
        return 2 * value, 2 * out, (2 * second if second is not None else None)


@pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
class TestTangentsAgainstReference:
    def test_value_and_tangents(self, activation, encoding, dtype, engine):
        model = make_model(activation, encoding, in_features=3, out_features=4, dtype=dtype)
        for x_shape, t_shape in TANGENT_SHAPES:
            x = make_coords(x_shape[0] * (x_shape[1] if len(x_shape) == 3 else 1), d=3, dtype=dtype)
            x = x.reshape(x_shape)
            tangents = make_tangents(t_shape, dtype)
            value, out = value_and_tangents(model, x, tangents, engine=engine, create_graph=False)
            ref_value, ref_out = reference_tangents(model, x, tangents)
            assert value.shape == x_shape[:-1] + (4,) and out.shape == (2,) + x_shape[:-1] + (4,)
            assert value.dtype == out.dtype == dtype
            assert relative_error(out, ref_out) < TOL[dtype], (x_shape, t_shape)
            assert relative_error(value, ref_value.detach()) < TOL[dtype], (x_shape, t_shape)



@pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
class TestTangentGradientsAgainstReference:
    def test_gradients_of_a_loss_on_the_tangents(self, activation, encoding, engine):
        """Weight and tangent gradients of a loss on value and tangents equal the reference's (float64)."""
        model = make_model(activation, encoding, in_features=3, out_features=4, layers=3, hidden=16)
        x = make_coords(12, d=3).reshape(3, 4, 3)
        target = make_tangents((2, 3, 4, 4), seed=3)

        def gradients(tangents_of):
            tangents = make_tangents((2, 3, 4, 3)).requires_grad_(True)
            value, out = tangents_of(x, tangents)
            loss = ((out - target) ** 2).sum() + (value ** 2).sum()
            return torch.autograd.grad(loss, [tangents, *model.parameters()], allow_unused=True)

        grads = gradients(lambda x, t: value_and_tangents(model, x, t, engine=engine))
        ref_grads = gradients(lambda x, t: reference_tangents(model, x, t, create_graph=True))
        names = ["tangents"] + [name for name, _ in model.named_parameters()]
        assert any(r is not None and r.abs().max() > 0 for r in ref_grads[1:])
        for name, g, r in zip(names, grads, ref_grads):
            g = torch.zeros_like(r) if g is None and r is not None else g
            r = torch.zeros_like(g) if r is None and g is not None else r
            assert relative_error(g, r) < 1e-9 or (g - r).abs().max().item() < 1e-12, f"d loss / d {name}"


class _TangentsOf(nn.Module):
    """value_and_tangents of ``model`` at x along fixed ``tangents``, for gradcheck through functional_call."""

    def __init__(self, model, tangents, engine):
        super().__init__()
        self.model, self.tangents, self.engine = model, tangents, engine

    def forward(self, x):
        return value_and_tangents(self.model, x, self.tangents, engine=self.engine)


class TestValueAndTangents:
    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    @pytest.mark.parametrize("tangent_shape", [(2, 2, 2, 3), (2, 1, 1, 3)], ids=["per-point", "shared"])
    @pytest.mark.parametrize("activation,encoding", [("sine", "none"), ("sine", "positional"),
                                                     ("relu", "positional"), ("tanh", "fourier")])
    def test_gradcheck_wrt_x_and_tangents(self, activation, encoding, tangent_shape, engine):
        model = make_model(activation, encoding, in_features=3, out_features=2, hidden=6, layers=2)
        x = make_coords(4, d=3).reshape(2, 2, 3).requires_grad_(True)
        tangents = make_tangents(tangent_shape).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x, t: value_and_tangents(model, x, t, engine=engine), (x, tangents))

    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    def test_gradcheck_wrt_weights(self, engine):
        model = make_model("sine", "positional", in_features=3, out_features=2, hidden=5, layers=2)
        wrapper = _TangentsOf(model, make_tangents((2, 4, 3)), engine)
        names = [f"model.{k}" for k, _ in model.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
        x = make_coords(4, d=3)

        def fn(*ps):
            return functional_call(wrapper, dict(zip(names, ps)), (x,))

        assert torch.autograd.gradcheck(fn, params)

    def test_nerf_rays(self):
        """What a NeRF renderer feeds: R * S ray samples (R*S, 3) and their tangents with respect to the
        two pixel coordinates (2, R*S, 3), an MLP of 3 inputs and 4 outputs with positional encoding."""
        rays, samples = 6, 5
        torch.manual_seed(0)
        model = MLP(3, 4, ["relu"] * 3, hidden_features=32, encoding="positional", num_frequencies=4)
        x = make_coords(rays * samples, d=3, dtype=torch.float32)
        tangents = make_tangents((2, rays * samples, 3), dtype=torch.float32)
        ref_value, ref_out = reference_tangents(model, x, tangents)
        for engine in ("auto", *JACOBIAN_ENGINES):
            value, out = value_and_tangents(model, x, tangents, engine=engine)
            assert value.shape == (rays * samples, 4) and out.shape == (2, rays * samples, 4)
            assert relative_error(out, ref_out) < TOL[torch.float32], engine
            assert relative_error(value, ref_value.detach()) < TOL[torch.float32], engine
            assert out.grad_fn is not None

    @pytest.mark.parametrize("engine", ["auto", "autograd"])
    def test_module_without_jet(self, engine):
        plain = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 4)).double()
        x = make_coords(12, d=3).reshape(3, 4, 3)
        tangents = make_tangents((2, 3, 4, 3))
        value, out = value_and_tangents(plain, x, tangents, engine=engine)
        ref_value, ref_out = reference_tangents(plain, x, tangents)
        assert relative_error(out, ref_out) < TOL[torch.float64]
        assert relative_error(value, ref_value.detach()) < TOL[torch.float64]
        x.requires_grad_(True)
        tangents.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x, t: value_and_tangents(plain, x, t, engine=engine), (x, tangents))
        with pytest.raises(ValueError, match="autograd"):
            value_and_tangents(plain, x, tangents, engine="fused")

    def test_module_with_its_own_jet(self):
        torch.manual_seed(0)
        model = _ScaledMLP(3, 2, ["sine"] * 2, hidden_features=8, encoding="positional", num_frequencies=2).double()
        x = make_coords(10, d=3)
        tangents = make_tangents((2, 10, 3))
        value, out = value_and_tangents(model, x, tangents)  # auto: autograd, through _ScaledMLP.jet
        ref_value, ref_out = reference_tangents(model, x, tangents)
        assert relative_error(out, ref_out) < TOL[torch.float64]
        assert relative_error(value, ref_value.detach()) < TOL[torch.float64]
        with pytest.raises(ValueError, match="autograd"):
            value_and_tangents(model, x, tangents, engine="fused")

    @pytest.mark.parametrize("engine", JACOBIAN_ENGINES)
    def test_no_graph_when_not_asked(self, engine):
        model = make_model(in_features=3)
        x = make_coords(8, d=3).requires_grad_(True)
        tangents = make_tangents((2, 8, 3)).requires_grad_(True)
        for create_graph, grad_mode in [(False, True), (True, False)]:
            with torch.set_grad_enabled(grad_mode):
                value, out = value_and_tangents(model, x, tangents, engine=engine, create_graph=create_graph)
            assert value.grad_fn is None and out.grad_fn is None

    @pytest.mark.parametrize("recompute", [False, True])
    def test_many_row_blocks(self, monkeypatch, recompute):
        """The fused engine's row blocks on two workers: the same gradients as the autograd engine."""
        monkeypatch.setattr(cpu_blocks, "BLOCK_ELEMENTS", 16 * 37)
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            model = make_model("tanh", "positional", in_features=3, out_features=4, layers=3, hidden=16)
            target = make_tangents((2, 300, 4), seed=3)
            results = {}
            for engine in JACOBIAN_ENGINES:
                x = make_coords(300, d=3).requires_grad_(True)
                tangents = make_tangents((2, 300, 3)).requires_grad_(True)
                value, out = value_and_tangents(model, x, tangents, engine=engine, recompute_tangents=recompute)
                loss = ((out - target) ** 2).sum() + (value ** 2).sum()
                results[engine] = torch.autograd.grad(loss, [x, tangents, *model.parameters()])
            for g, r in zip(results["fused"], results["autograd"]):
                assert relative_error(g, r) < 1e-9
        finally:
            torch.set_num_threads(threads)

    def test_bad_shapes_raise(self):
        model = make_model(in_features=3)
        x = make_coords(8, d=3).reshape(2, 4, 3)
        for bad in [make_tangents((2, 2, 4, 2)), make_tangents((3,)), make_tangents((2, 3, 4, 3)),
                    make_tangents((2, 2, 4, 4, 3))]:
            with pytest.raises(ValueError, match="tangents"):
                value_and_tangents(model, x, bad)
        with pytest.raises(ValueError, match="engine"):
            value_and_tangents(model, x, make_tangents((2, 2, 4, 3)), engine="jax")



def test_gpu_batches_are_one_block_unless_tangents_are_recomputed():
    """On a GPU the fused engine runs the batch as one block; recomputing tangents cuts it into blocks of
    at most RECOMPUTE_BLOCK_ELEMENTS (so that the backward pass holds one block's tangents at a time)."""
    from sobolev_inr.derivatives.cpu_blocks import RECOMPUTE_BLOCK_ELEMENTS, row_blocks

    gpu = torch.device("cuda")
    n, width = 131072, 256  # a NeRF step: 1024 rays x 128 samples, 256 wide
    assert row_blocks(n, width, gpu) == [(0, n)]
    blocks = row_blocks(n, width, gpu, recompute=True)
    assert blocks[0][0] == 0 and blocks[-1][1] == n and all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert len(blocks) == 4 and max((b - a) * width for a, b in blocks) <= RECOMPUTE_BLOCK_ELEMENTS
    assert row_blocks(100, width, gpu, recompute=True) == [(0, 100)]
