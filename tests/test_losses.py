"""Tests for sobolev_inr.losses.sobolev: the named terms of the Sobolev loss against hand computations."""
from __future__ import annotations

import pytest
import torch

from sobolev_inr.losses.sobolev import SUPERVISIONS, get_supervision, sobolev_loss

N, C, D = 5, 3, 2


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    return dict(value=r(N, C), target_value=r(N, C), jac=r(N, C, D), target_jac=r(N, C, D),
                lap=r(N, C), target_lap=r(N, C))


def hand_value(b):
    total = 0.0
    for i in range(N):
        for c in range(C):
            total += (b["value"][i, c].item() - b["target_value"][i, c].item()) ** 2
    return total / (N * C)


def hand_derivative(pred, target):
    """Per sample: squared error summed over every other index; then the mean over samples."""
    per_sample = []
    for i in range(pred.shape[0]):
        per_sample.append(sum(v ** 2 for v in (pred[i] - target[i]).reshape(-1).tolist()))
    return sum(per_sample) / len(per_sample)


class TestTerms:
    def test_val(self, batch):
        terms = sobolev_loss("val", batch["value"], batch["target_value"])
        assert set(terms) == {"value", "total"}
        assert terms["value"].item() == pytest.approx(hand_value(batch), rel=1e-12)
        assert terms["total"].item() == terms["value"].item()

    def test_val_ignores_derivatives(self, batch):
        terms = sobolev_loss("val", batch["value"], batch["target_value"], batch["jac"], batch["target_jac"])
        assert "derivative" not in terms

    @pytest.mark.parametrize("lambda_der", [1.0, 0.1, 7.0])
    def test_val_der(self, batch, lambda_der):
        terms = sobolev_loss("val_der", batch["value"], batch["target_value"], batch["jac"], batch["target_jac"],
                             lambda_der=lambda_der)
        assert set(terms) == {"value", "derivative", "total"}
        der = hand_derivative(batch["jac"], batch["target_jac"])
        assert terms["value"].item() == pytest.approx(hand_value(batch), rel=1e-12)
        assert terms["derivative"].item() == pytest.approx(der, rel=1e-12)
        assert terms["total"].item() == pytest.approx(hand_value(batch) + lambda_der * der, rel=1e-12)

    def test_derivative_is_summed_not_averaged_over_channels_and_axes(self, batch):
        terms = sobolev_loss("der", batch["value"], batch["target_value"], batch["jac"], batch["target_jac"])
        mse = torch.mean((batch["jac"] - batch["target_jac"]) ** 2).item()
        assert terms["derivative"].item() == pytest.approx(mse * C * D, rel=1e-12)

    @pytest.mark.parametrize("lambda_der", [1.0, 0.1])
    def test_der(self, batch, lambda_der):
        terms = sobolev_loss("der", batch["value"], batch["target_value"], batch["jac"], batch["target_jac"],
                             lambda_der=lambda_der)
        der = hand_derivative(batch["jac"], batch["target_jac"])
        assert terms["total"].item() == pytest.approx(der, rel=1e-12)  # lambda_der does not apply
        assert terms["value"].item() == pytest.approx(hand_value(batch), rel=1e-12)  # still reported

    def test_lapl(self, batch):
        terms = sobolev_loss("lapl", batch["value"], batch["target_value"], batch["lap"], batch["target_lap"],
                             lambda_der=0.5)
        der = hand_derivative(batch["lap"], batch["target_lap"])
        assert terms["derivative"].item() == pytest.approx(der, rel=1e-12)
        assert terms["total"].item() == pytest.approx(der, rel=1e-12)

    def test_zero_when_exact(self, batch):
        terms = sobolev_loss("val_der", batch["value"], batch["value"].clone(), batch["jac"], batch["jac"].clone())
        assert terms["total"].item() == 0.0

    def test_terms_are_scalars_and_differentiable(self, batch):
        value = batch["value"].clone().requires_grad_(True)
        jac = batch["jac"].clone().requires_grad_(True)
        terms = sobolev_loss("val_der", value, batch["target_value"], jac, batch["target_jac"], lambda_der=2.0)
        for t in terms.values():
            assert t.dim() == 0
        terms["total"].backward()
        torch.testing.assert_close(value.grad, 2 * (value - batch["target_value"]).detach() / (N * C))
        torch.testing.assert_close(jac.grad, 2.0 * 2 * (jac - batch["target_jac"]).detach() / N)


class TestBadInput:
    @pytest.mark.parametrize("supervision", ["val_der", "der", "lapl"])
    def test_missing_derivative(self, batch, supervision):
        with pytest.raises(ValueError, match="derivative"):
            sobolev_loss(supervision, batch["value"], batch["target_value"])
        with pytest.raises(ValueError, match="derivative"):
            sobolev_loss(supervision, batch["value"], batch["target_value"], batch["jac"], None)

    def test_shape_mismatch(self, batch):
        with pytest.raises(ValueError, match="shape"):
            sobolev_loss("val_der", batch["value"], batch["target_value"], batch["jac"], batch["target_jac"][:, :, :1])
        with pytest.raises(ValueError, match="shape"):
            sobolev_loss("der", batch["value"], batch["target_value"], batch["jac"].transpose(1, 2).contiguous(),
                         batch["target_jac"])

    @pytest.mark.parametrize("supervision", ["val", "val_der"])
    def test_value_shape_mismatch(self, batch, supervision):
        # (N, C) against (N, 1) would broadcast into a different mean
        with pytest.raises(ValueError, match="shape"):
            sobolev_loss(supervision, batch["value"], batch["target_value"][:, :1], batch["jac"], batch["target_jac"])

    def test_unknown_supervision_lists_choices(self, batch):
        with pytest.raises(ValueError) as info:
            sobolev_loss("val_lapl", batch["value"], batch["target_value"])
        for name in SUPERVISIONS:
            assert name in str(info.value)

    def test_get_supervision(self):
        assert get_supervision("val_der").needs == "jacobian"
        assert get_supervision("lapl").needs == "laplacian"
        assert get_supervision("val").needs == "value"
