"""Tests for sobolev_inr.data.targets and sobolev_inr.data.coords: finite-difference targets, their units and axis order.

The analytic signal is f(x, y) = sin(a x) cos(b y) on the image grid of sobolev_inr.data.coords
(x = column, y = row, both in [-1, 1]); a != b so that swapped axes cannot pass.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sobolev_inr.data import coords as C
from sobolev_inr.derivatives import value_and_derivatives
from sobolev_inr.data.targets import (DERIVATIVE_OPERATORS, central_difference, image_gradient, image_laplacian,
                                 image_second_differences)

A, B = 3.0, 2.0
OPERATORS = sorted(DERIVATIVE_OPERATORS)
INTERIOR = (Ellipsis, slice(1, -1), slice(1, -1))


def grid_xy(height, width, dtype=torch.float64):
    g = C.image_grid(height, width, dtype).reshape(height, width, 2)
    return g[..., 0], g[..., 1]


def analytic(height, width):
    """image (1, H, W) and its exact gradient (1, 2, H, W) = [df/dx, df/dy] per coordinate unit."""
    x, y = grid_xy(height, width)
    image = (torch.sin(A * x) * torch.cos(B * y))[None]
    grad = torch.stack((A * torch.cos(A * x) * torch.cos(B * y), -B * torch.sin(A * x) * torch.sin(B * y)))[None]
    return image, grad


class TestCoords:
    def test_image_grid_layout(self):
        g = C.image_grid(3, 4)
        assert g.shape == (12, 2) and g.dtype == torch.float32
        # row-major: entry row * W + col holds (x = col, y = row), the pixel centres of cells tiling [-1, 1]
        assert g[0].tolist() == [-0.75, pytest.approx(-2 / 3)]
        assert g[3].tolist() == [0.75, pytest.approx(-2 / 3)]  # last column of the first row
        assert g[4].tolist() == [-0.75, 0.0]  # first column of the second row
        assert g[11].tolist() == [0.75, pytest.approx(2 / 3)]
        torch.testing.assert_close(g[1], torch.tensor([-0.25, -2.0 / 3]))

    @pytest.mark.parametrize("n", [1, 2, 5, 256])
    def test_pixel_centres_tile_the_square(self, n):
        """Cells of width 2 / n from -1 to 1, values at their centres, symmetric about 0."""
        c = C.pixel_centres(n, torch.float64)
        torch.testing.assert_close(c[0] - 1.0 / n, torch.tensor(-1.0, dtype=torch.float64))
        torch.testing.assert_close(c[-1] + 1.0 / n, torch.tensor(1.0, dtype=torch.float64))
        torch.testing.assert_close(c, -c.flip(0))
        torch.testing.assert_close(c.diff(), torch.full((n - 1,), 2.0 / n, dtype=torch.float64))

    @pytest.mark.parametrize("factor", [2, 3, 4, 8])
    def test_a_coarse_pixel_sits_at_the_mean_of_the_fine_pixels_it_covers(self, factor):
        """An image and its x factor upsampled grid refer to the same continuous positions: the centre of each
        low-resolution pixel is the mean of the centres of the factor x factor high-resolution pixels it covers."""
        h, w = 3, 5
        coarse = C.image_grid(h, w, torch.float64).reshape(h, w, 2)
        fine = C.image_grid(h * factor, w * factor, torch.float64).reshape(h, factor, w, factor, 2)
        torch.testing.assert_close(fine.mean(dim=(1, 3)), coarse, rtol=0, atol=1e-15)

    def test_image_step(self):
        assert C.image_step(5, 9) == (2.0 / 9, 2.0 / 5)
        x, y = grid_xy(5, 9)
        assert (x[0, 1] - x[0, 0]).item() == pytest.approx(C.image_step(5, 9)[0])
        assert (y[1, 0] - y[0, 0]).item() == pytest.approx(C.image_step(5, 9)[1])

    def test_derivative_scale(self):
        step = (0.25, 0.5)
        torch.testing.assert_close(C.derivative_scale(step, "pixel"), torch.tensor(step, dtype=torch.float64))
        torch.testing.assert_close(C.derivative_scale(step, "coord"), torch.ones(2, dtype=torch.float64))

    def test_target_to_units(self):
        per_step = torch.ones(3, 2, 4, 5)
        out = C.target_to_units(per_step, (0.25, 0.5), "coord", axis=1)
        assert torch.all(out[:, 0] == 4.0) and torch.all(out[:, 1] == 2.0)
        out2 = C.target_to_units(per_step, (0.25, 0.5), "coord", axis=1, order=2)
        assert torch.all(out2[:, 0] == 16.0) and torch.all(out2[:, 1] == 4.0)
        assert C.target_to_units(per_step, (0.25, 0.5), "pixel", axis=1) is per_step

    @pytest.mark.parametrize("fn", [lambda u: C.derivative_scale((1.0, 1.0), u),
                                    lambda u: C.target_to_units(torch.ones(2, 3), (1.0, 1.0), u, axis=0)])
    def test_unknown_units_list_choices(self, fn):
        with pytest.raises(ValueError) as info:
            fn("metre")
        assert "pixel" in str(info.value) and "coord" in str(info.value)


class TestImageGradient:
    @pytest.mark.parametrize("operator", OPERATORS)
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_shape_dtype(self, operator, dtype):
        out = image_gradient(torch.rand(3, 7, 9, dtype=dtype), operator)
        assert out.shape == (3, 2, 7, 9) and out.dtype == dtype

    @pytest.mark.parametrize("operator", OPERATORS)
    def test_per_pixel_step_matches_analytic(self, operator):
        h, w = 65, 129
        image, grad = analytic(h, w)
        per_step = grad * torch.tensor(C.image_step(h, w), dtype=torch.float64).view(1, 2, 1, 1)
        err = (image_gradient(image, operator) - per_step)[INTERIOR].abs().max()
        assert err / per_step.abs().max() < 5e-3

    @pytest.mark.parametrize("operator", OPERATORS)
    def test_coord_units_match_analytic(self, operator):
        h, w = 65, 129
        image, grad = analytic(h, w)
        coord = C.target_to_units(image_gradient(image, operator), C.image_step(h, w), "coord", axis=1)
        err = (coord - grad)[INTERIOR].abs().max()
        assert err / grad.abs().max() < 5e-3

    @pytest.mark.parametrize("operator", OPERATORS)
    def test_second_order_convergence(self, operator):
        errors = []
        for h, w in [(25, 33), (49, 65), (97, 129)]:  # the spacing halves on both axes
            image, grad = analytic(h, w)
            coord = C.target_to_units(image_gradient(image, operator), C.image_step(h, w), "coord", axis=1)
            errors.append((coord - grad)[INTERIOR].abs().max().item())
        for coarse, fine in zip(errors[:-1], errors[1:]):
            assert 3.5 < coarse / fine < 4.5

    @pytest.mark.parametrize("operator", OPERATORS)
    def test_axis_zero_is_along_the_width(self, operator):
        h, w = 10, 16
        x, _ = grid_xy(h, w)
        image = (x ** 3 + x)[None]  # varies only along the width
        out = image_gradient(image, operator)
        assert out[:, 1].abs().max().item() < 1e-12
        assert out[:, 0][INTERIOR].abs().min().item() > 1e-3

    @pytest.mark.parametrize("operator", OPERATORS)
    def test_golden_linear_ramp(self, operator):
        # f = 2 col - 3 row: every central difference is exact in the interior
        rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
        out = image_gradient((2 * cols - 3 * rows)[None], operator)
        assert torch.all(out[0, 0][1:-1, 1:-1] == 2.0)
        assert torch.all(out[0, 1][1:-1, 1:-1] == -3.0)

    def test_channels_are_independent(self):
        image = torch.rand(3, 8, 8)
        out = image_gradient(image)
        for c in range(3):
            torch.testing.assert_close(out[c], image_gradient(image[c:c + 1])[0])

    @pytest.mark.parametrize("shape", [(8, 8), (1, 3, 8, 8), (1, 1, 8), (1, 8, 1)])
    def test_bad_shape_raises(self, shape):
        with pytest.raises(ValueError, match="image"):
            image_gradient(torch.rand(*shape))

    def test_unknown_operator_lists_choices(self):
        with pytest.raises(ValueError) as info:
            image_gradient(torch.rand(1, 8, 8), "scharr")
        for name in DERIVATIVE_OPERATORS:
            assert name in str(info.value)

    def test_gradcheck(self):
        image = torch.rand(1, 5, 6, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(image_gradient, (image,))


class TestLaplacian:
    def test_exact_on_quadratic(self):
        rows, cols = torch.meshgrid(torch.arange(9.0, dtype=torch.float64), torch.arange(11.0, dtype=torch.float64),
                                    indexing="ij")
        image = (cols ** 2 + 3 * rows ** 2 + cols * rows - 4 * cols + 1)[None]
        lap = image_laplacian(image)
        assert lap.shape == (1, 9, 11)
        torch.testing.assert_close(lap[0, 1:-1, 1:-1], torch.full((7, 9), 8.0, dtype=torch.float64))
        second = image_second_differences(image)
        assert second.shape == (1, 2, 9, 11)
        assert torch.all(second[0, 0, 1:-1, 1:-1] == 2.0)  # d2/dx2 (along the width) first
        assert torch.all(second[0, 1, 1:-1, 1:-1] == 6.0)

    def test_matches_analytic_in_coord_units(self):
        h, w = 97, 129
        x, y = grid_xy(h, w)
        image = (torch.sin(A * x) * torch.cos(B * y))[None]
        step = C.image_step(h, w)
        second = C.target_to_units(image_second_differences(image), step, "coord", axis=1, order=2)
        expected = -(A ** 2 + B ** 2) * image
        err = (second.sum(1) - expected)[INTERIOR].abs().max()
        assert err / expected.abs().max() < 1e-3

    @pytest.mark.parametrize("shape", [(8, 8), (1, 1, 8, 8), (1, 1, 5)])
    def test_bad_shape_raises(self, shape):
        with pytest.raises(ValueError):
            image_laplacian(torch.rand(*shape))


class TestCentralDifference:
    """The 1-D target (audio); its analytic and end-sample checks live in tests/test_audio.py."""

    @pytest.mark.parametrize("shape, dim", [((9,), -1), ((3, 7), 0), ((3, 7), 1), ((2, 5, 4), -2), ((2, 2), 0)])
    def test_equals_torch_gradient_with_one_sided_ends(self, shape, dim):
        signal = torch.randn(*shape, dtype=torch.float64)
        torch.testing.assert_close(central_difference(signal, dim), torch.gradient(signal, dim=dim, edge_order=1)[0],
                                   rtol=0, atol=0)

    def test_golden_values_per_sample_step(self):
        # independent of torch.gradient: (f[i+1] - f[i-1]) / 2 inside, one-sided at the ends
        signal = torch.tensor([[0.0, 1.0, 4.0, 9.0], [2.0, 2.0, 0.0, -4.0]])
        expected = torch.tensor([[1.0, 2.0, 4.0, 5.0], [0.0, -1.0, -3.0, -4.0]])
        torch.testing.assert_close(central_difference(signal), expected, rtol=0, atol=0)
        torch.testing.assert_close(central_difference(signal.T, dim=0), expected.T, rtol=0, atol=0)

    def test_too_short_raises(self):
        with pytest.raises(ValueError, match="at least 2 samples"):
            central_difference(torch.ones(3, 1), dim=1)

    def test_gradcheck(self):
        signal = torch.rand(2, 6, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(central_difference, (signal,))


class AnalyticModel(nn.Module):
    """f(x, y) = sin(a x) cos(b y) of coordinates (N, 2) = (x, y); no .jet, so reverse mode only."""

    out_features = 1

    def forward(self, coords):
        return (torch.sin(A * coords[:, 0]) * torch.cos(B * coords[:, 1]))[:, None]


class TestNetworkAndTargetAgree:
    """The network's derivative (engine + coords.derivative_scale) and the target share axis order and units."""

    @pytest.mark.parametrize("operator", OPERATORS)
    def test_pixel_units(self, operator):
        h, w = 48, 64
        coords = C.image_grid(h, w, torch.float64)
        image = AnalyticModel()(coords).T.reshape(1, h, w)
        step = C.image_step(h, w)
        jac = value_and_derivatives(AnalyticModel(), coords, scale=C.derivative_scale(step, "pixel"),
                                    mode="reverse", create_graph=False).jacobian  # (H*W, C, 2)
        net = jac.reshape(h, w, 1, 2).permute(2, 3, 0, 1)  # (C, 2, H, W)
        target = image_gradient(image, operator)
        err = (net - target)[INTERIOR].abs().max().item()
        assert err < 0.01 * target[INTERIOR].abs().max().item()
        # the check is sharp enough to see swapped axes or a missing unit conversion
        assert (net.flip(1) - target)[INTERIOR].abs().max().item() > 20 * err
        assert (jac.reshape(h, w, 1, 2).permute(2, 3, 0, 1) / torch.tensor(step, dtype=torch.float64).view(1, 2, 1, 1)
                - target)[INTERIOR].abs().max().item() > 20 * err

    def test_coord_units(self):
        h, w = 48, 64
        coords = C.image_grid(h, w, torch.float64)
        image = AnalyticModel()(coords).T.reshape(1, h, w)
        step = C.image_step(h, w)
        jac = value_and_derivatives(AnalyticModel(), coords, scale=C.derivative_scale(step, "coord"),
                                    mode="reverse", create_graph=False).jacobian
        net = jac.reshape(h, w, 1, 2).permute(2, 3, 0, 1)
        target = C.target_to_units(image_gradient(image, "diff"), step, "coord", axis=1)
        err = (net - target)[INTERIOR].abs().max().item()
        assert err < 0.01 * target[INTERIOR].abs().max().item()


@pytest.mark.parametrize("frames", [2, 3, 6])
@pytest.mark.parametrize("operator", ["sobel", "diff"])
def test_video_gradient_frame_by_frame_equals_the_whole_clip_at_once(frames, operator):
    """The clip's targets are written frame by frame (bounded memory); they equal kornia on the whole clip with
    the time derivative of central_difference, bit for bit."""
    import kornia

    from sobolev_inr.data.targets import central_difference, video_gradient

    clip = torch.rand(frames, 3, 19, 23, generator=torch.Generator().manual_seed(frames))
    space = kornia.filters.spatial_gradient(clip, mode=operator, order=1, normalized=True)
    whole = torch.stack((central_difference(clip, dim=0), space[:, :, 1], space[:, :, 0]), dim=2)
    assert torch.equal(video_gradient(clip, operator), whole)
