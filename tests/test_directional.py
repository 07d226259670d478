"""The estimates of the Jacobian loss (``der_estimator = directional``, ``der_fraction`` < 1): equal to the exact
loss, and its weight gradient to the exact one, in expectation over the random directions and rows."""
from __future__ import annotations

import math

import pytest
import torch

from derivative_cases import make_coords, make_model, relative_error
from sobolev_inr.config.options import SupervisionOptions
from sobolev_inr.errors import ConfigError
from sobolev_inr.losses.sobolev import project_jacobian, random_unit_directions, sobolev_loss
from sobolev_inr.tasks.regression import RegressionBatch, SobolevRegression

N, C, D = 12, 3, 2


def make_task(estimator="exact", directions=1, supervision="val_der", batch_size=0, seed=3, der_fraction=1.0):
    """A regression problem whose targets are not the network's derivatives (so the loss is not 0)."""
    gen = torch.Generator().manual_seed(seed)
    coords = make_coords(N, D)
    values = torch.randn(N, C, generator=gen, dtype=torch.float64)
    jacobian = torch.randn(N, C, D, generator=gen, dtype=torch.float64)
    options = SupervisionOptions(supervision, lambda_der=0.7, der_estimator=estimator, der_directions=directions,
                                 der_fraction=der_fraction)
    return SobolevRegression(coords, values, jacobian, None, [0.25, 0.5], supervision=options, batch_size=batch_size)


def terms_and_grads(model, task, batch):
    terms = task.loss(model, batch)
    grads = torch.autograd.grad(terms["total"], list(model.parameters()))
    return {k: v.detach() for k, v in terms.items()}, grads


def circle(k: int) -> torch.Tensor:
    """(k, N, 2) directions at k equally spaced angles, the same for every sample: for k >= 3 their
    mean of v v^T is exactly I / 2, the expectation of a uniform direction."""
    angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k) + 0.3
    v = torch.stack([angles.cos(), angles.sin()], dim=1)
    return v[:, None, :].expand(k, N, 2).contiguous()


@pytest.mark.parametrize("supervision", ["val_der", "der"])
def test_equally_spaced_directions_give_the_exact_loss_and_gradient(supervision):
    """The estimate is linear in v v^T: directions whose mean v v^T is I / D give the exact term, the
    exact total and the exact weight gradient (this is what makes the random draw unbiased)."""
    model = make_model(out_features=C)
    exact, exact_grads = terms_and_grads(model, make_task("exact", supervision=supervision), None)
    task = make_task("directional", directions=5, supervision=supervision)
    estimate, grads = terms_and_grads(model, task, RegressionBatch(None, circle(5)))
    assert exact["derivative"] > 0.1
    for key in exact:
        assert relative_error(estimate[key], exact[key]) < 1e-12, key
    for g, ref in zip(grads, exact_grads):
        assert relative_error(g, ref) < 1e-10


def test_a_single_direction_is_not_the_exact_loss():
    """The test above would pass for an estimator that ignored its directions: one direction must differ."""
    model = make_model(out_features=C)
    exact, _ = terms_and_grads(model, make_task("exact"), None)
    estimate, _ = terms_and_grads(model, make_task("directional"), RegressionBatch(None, circle(1)))
    assert abs(estimate["derivative"] - exact["derivative"]) > 1e-3 * exact["derivative"]
    assert torch.equal(estimate["value"], exact["value"])


def test_random_draws_average_to_the_exact_loss_and_gradient():
    """Over many draws from train_batches (the directions a run uses), the mean estimate and the mean weight
    gradient approach the exact ones; the tolerance is 5 standard errors of the mean."""
    model = make_model(out_features=C)
    exact, exact_grads = terms_and_grads(model, make_task("exact"), None)
    task = make_task("directional", directions=1)
    gen = torch.Generator().manual_seed(0)
    draws, values, grad_sum = 400, [], [torch.zeros_like(g) for g in exact_grads]
    for _ in range(draws):
        (batch,) = list(task.train_batches(gen))
        terms, grads = terms_and_grads(model, task, batch)
        values.append(terms["derivative"])
        grad_sum = [s + g for s, g in zip(grad_sum, grads)]
    values = torch.stack(values)
    stderr = values.std() / math.sqrt(draws)
    assert abs(values.mean() - exact["derivative"]) < 5 * stderr
    assert stderr < 0.1 * exact["derivative"]  # the test can tell a biased estimator apart
    flat_mean = torch.cat([(s / draws).flatten() for s in grad_sum])
    flat_exact = torch.cat([g.flatten() for g in exact_grads])
    cosine = torch.dot(flat_mean, flat_exact) / (flat_mean.norm() * flat_exact.norm())
    assert cosine > 0.99
    assert relative_error(flat_mean, flat_exact) < 0.1


@pytest.mark.parametrize("d", [1, 2, 3])
def test_directions_are_unit_vectors_with_second_moment_identity_over_d(d):
    v = random_unit_directions(4, 20000, d, torch.Generator().manual_seed(1)).double()
    assert v.shape == (4, 20000, d)
    assert torch.allclose(v.norm(dim=2), torch.ones(4, 20000, dtype=torch.float64))
    second = torch.einsum("kni,knj->ij", v, v) / (4 * 20000)
    assert relative_error(second, torch.eye(d, dtype=torch.float64) / d) < 0.01


def test_one_input_direction_is_the_exact_loss():
    """D = 1 (audio): every direction is +-1, so the estimate is exact whatever the draw."""
    gen = torch.Generator().manual_seed(2)
    jac, target = torch.randn(7, 2, 1, generator=gen), torch.randn(7, 2, 1, generator=gen)
    v = random_unit_directions(3, 7, 1, gen)
    value = torch.zeros(7, 2)
    exact = sobolev_loss("der", value, value, jac, target)["derivative"]
    estimate = sobolev_loss("der", value, value, project_jacobian(jac, v), project_jacobian(target, v),
                            estimate_factor=1 / 3)["derivative"]
    assert torch.allclose(estimate, exact)


def test_mini_batches_carry_directions_for_their_rows():
    task = make_task("directional", directions=2, batch_size=5)
    batches = list(task.train_batches(torch.Generator().manual_seed(0)))
    assert [len(b.index) for b in batches] == [5, 5, 2]
    assert [tuple(b.directions.shape) for b in batches] == [(2, 5, D), (2, 5, D), (2, 2, D)]
    model = make_model(out_features=C)
    for b in batches:
        assert torch.isfinite(task.loss(model, b)["total"])


@pytest.mark.parametrize("kwargs, words", [
    (dict(estimator="directional", supervision="val"), "estimates the Jacobian loss of val_der or der; supervision = val"),
    (dict(estimator="sampled"), "unknown der_estimator"),
    (dict(estimator="directional", directions=0), "der_directions must be >= 1"),
])
def test_bad_estimator_settings_are_rejected(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        make_task(**kwargs)


def test_directional_loss_needs_directions():
    with pytest.raises(ValueError, match="no directions"):
        make_task("directional").loss(make_model(out_features=C), None)


# ------------------------------------------------------------------------------ der_fraction
def halves(seed=0):
    """Two batches that split the samples into complementary halves for the derivative term."""
    order = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    return [RegressionBatch(der_rows=order[: N // 2].sort().values),
            RegressionBatch(der_rows=order[N // 2:].sort().values)]


@pytest.mark.parametrize("estimator, directions", [("exact", None), ("directional", 5)])
def test_complementary_derivative_rows_average_to_the_full_loss_and_gradient(estimator, directions):
    """The derivative term over a random subset of samples is an unbiased estimate of the term over all: two
    complementary halves average to it exactly; the value term is over all samples in each."""
    model = make_model(out_features=C)
    exact, exact_grads = terms_and_grads(model, make_task(), None)
    task = make_task(estimator, directions=directions or 1)
    task.der_fraction = 0.5
    both = []
    for batch in halves():
        if directions:
            batch.directions = circle(directions)[:, : len(batch.der_rows)]
        both.append(terms_and_grads(model, task, batch))
    for key in exact:
        mean = (both[0][0][key] + both[1][0][key]) / 2
        assert relative_error(mean, exact[key]) < 1e-12, key
    assert relative_error(both[0][0]["value"], exact["value"]) < 1e-12
    assert abs(both[0][0]["derivative"] - exact["derivative"]) > 1e-3 * exact["derivative"]  # a half is not all
    for g0, g1, ref in zip(both[0][1], both[1][1], exact_grads):
        assert relative_error((g0 + g1) / 2, ref) < 1e-10


def test_derivative_rows_are_drawn_per_batch():
    task = make_task(batch_size=5, der_fraction=0.4, estimator="directional", directions=2)
    batches = list(task.train_batches(torch.Generator().manual_seed(0)))
    assert [len(b.der_rows) for b in batches] == [2, 2, 1]
    assert [tuple(b.directions.shape) for b in batches] == [(2, 2, D), (2, 2, D), (2, 1, D)]
    for b in batches:
        assert b.der_rows.max() < len(b.index) and len(set(b.der_rows.tolist())) == len(b.der_rows)
        assert torch.isfinite(task.loss(make_model(out_features=C), b)["total"])


@pytest.mark.parametrize("kwargs, words", [
    (dict(der_fraction=0.0), r"der_fraction must be in \(0, 1\]"),
    (dict(der_fraction=1.5), r"der_fraction must be in \(0, 1\]"),
    (dict(der_fraction=0.5, supervision="val"), "der_fraction < 1 estimates the Jacobian loss of val_der or der"),
])
def test_bad_der_fraction_is_rejected(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        make_task(**kwargs)
