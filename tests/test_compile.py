"""torch.compile support (``compile_model``, the --compile option). Compiling is slow on CPU, so these
tests run only with SOBOLEV_INR_TEST_COMPILE=1:

    SOBOLEV_INR_TEST_COMPILE=1 python -m pytest tests/test_compile.py
"""
from __future__ import annotations

import os

import pytest
import torch

from sobolev_inr.derivatives import reference_jacobian, value_and_derivatives
from sobolev_inr.losses.sobolev import sobolev_loss
from sobolev_inr.models import MLP, compile_model

pytestmark = pytest.mark.skipif(os.environ.get("SOBOLEV_INR_TEST_COMPILE") != "1",
                                reason="torch.compile is slow on CPU; set SOBOLEV_INR_TEST_COMPILE=1")


def _model(seed=0):
    torch.manual_seed(seed)
    return MLP(2, 3, ["sine"] * 3, hidden_features=32, w0=30.0)


def test_compiled_model_keeps_class_values_and_state_dict():
    eager, compiled = _model(), compile_model(_model())
    assert isinstance(compiled, MLP)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    x = torch.rand(50, 2) * 2 - 1
    torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-5)


def test_val_and_val_der_training_match_eager():
    x = torch.rand(64, 2) * 2 - 1
    y = torch.randn(64, 3)
    target = torch.randn(64, 3, 2) * 0.01
    for supervision in ("val", "val_der"):
        losses = []
        for compile_it in (False, True):
            model = compile_model(_model()) if compile_it else _model()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            for _ in range(3):
                opt.zero_grad()
                if supervision == "val":
                    loss = sobolev_loss("val", model(x), y)["total"]
                else:
                    d = value_and_derivatives(model, x)
                    loss = sobolev_loss("val_der", d.value, y, d.jacobian, target)["total"]
                loss.backward()
                opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-4), supervision


def test_derivatives_of_a_compiled_model_match_the_reference():
    model = _model()
    x = torch.rand(40, 2) * 2 - 1
    ref = reference_jacobian(model, x).jacobian  # on the eager model: the reference differentiates twice
    compile_model(model)
    for mode in ("forward", "reverse"):
        out = value_and_derivatives(model, x, mode=mode, create_graph=False)
        # relative to the largest entry, as in test_derivatives.py
        assert (out.jacobian - ref).abs().max().item() <= 1e-5 * ref.abs().max().item(), mode
