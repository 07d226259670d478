"""Tests for sobolev_inr.metrics: PSNR, luma, SSIM (against scikit-image), the held-out protocol."""
from __future__ import annotations

import math

import kornia
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from sobolev_inr.metrics import (LUMA_WEIGHTS, derivative_psnr, heldout_mask, image_quality, luma, psnr, rho_ag,
                                 ssim, to_unit_range)


def smooth_image(channels, h, w, seed=0, dtype=torch.float64):
    """Random but spatially correlated image in [0, 1] (SSIM of white noise says little)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, channels, h, w, generator=gen, dtype=dtype)
    blurred = kornia.filters.gaussian_blur2d(noise, (7, 7), (2.0, 2.0))
    lo, hi = blurred.amin(), blurred.amax()
    return ((blurred - lo) / (hi - lo))[0]


class TestPSNR:
    def test_golden(self):
        target = torch.zeros(2, 2, dtype=torch.float64)
        pred = torch.tensor([[0.1, -0.2], [0.0, 0.3]], dtype=torch.float64)
        mse = (0.01 + 0.04 + 0.0 + 0.09) / 4
        assert psnr(pred, target) == pytest.approx(10 * math.log10(1 / mse), rel=1e-9)
        assert psnr(pred, target, peak=2.0) == pytest.approx(10 * math.log10(4 / mse), rel=1e-9)

    def test_identical_is_inf(self):
        x = torch.rand(3, 8, 8)
        assert psnr(x, x.clone()) == float("inf")

    def test_returns_float(self):
        assert isinstance(psnr(torch.zeros(4), torch.full((4,), 0.5)), float)
        assert psnr(torch.zeros(4), torch.full((4,), 0.5)) == pytest.approx(10 * math.log10(4.0))

    def test_shape_mismatch_raises(self):
        with pytest.raises(ValueError, match="shape"):
            psnr(torch.zeros(3, 4, 4), torch.zeros(1, 4, 4))


class TestLuma:
    @pytest.mark.parametrize("channel,weight", [(0, 65.738 / 256), (1, 129.057 / 256), (2, 25.064 / 256)])
    def test_pure_primaries(self, channel, weight):
        image = torch.zeros(3, 4, 5, dtype=torch.float64)
        image[channel] = 1.0
        y = luma(image)
        assert y.shape == (1, 4, 5)
        torch.testing.assert_close(y, torch.full((1, 4, 5), weight, dtype=torch.float64))

    def test_weights(self):
        assert LUMA_WEIGHTS == (65.738 / 256.0, 129.057 / 256.0, 25.064 / 256.0)

    def test_gray_is_its_own_luma(self):
        image = torch.rand(1, 4, 4)
        assert torch.equal(luma(image), image)

    def test_bad_channels(self):
        with pytest.raises(ValueError, match="1 or 3"):
            luma(torch.rand(2, 4, 4))

    def test_to_unit_range(self):
        torch.testing.assert_close(to_unit_range(torch.tensor([-1.0, 0.0, 1.0])), torch.tensor([0.0, 0.5, 1.0]))


class TestSSIM:
    def test_identical_is_one(self):
        x = smooth_image(3, 32, 32, dtype=torch.float32)
        assert ssim(x, x.clone()) == pytest.approx(1.0, abs=1e-6)

    def test_different_is_below_one(self):
        x, y = smooth_image(1, 32, 32, seed=0), smooth_image(1, 32, 32, seed=1)
        assert ssim(x, y) < 0.9

    def test_map_matches_skimage_in_the_interior(self):
        x, y = smooth_image(1, 40, 48, seed=0), smooth_image(1, 40, 48, seed=1)
        y = 0.7 * x + 0.3 * y
        kmap = kornia.metrics.ssim(x[None], y[None], 11, max_val=1.0)[0, 0].numpy()
        _, smap = structural_similarity(x[0].numpy(), y[0].numpy(), gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0, full=True)
        r = 5  # window radius: the borders are padded differently
        np.testing.assert_allclose(kmap[r:-r, r:-r], smap[r:-r, r:-r], atol=1e-4)
        # and metrics.ssim is the mean of that map
        assert ssim(x, y) == pytest.approx(float(kmap.mean()), abs=1e-9)

    def test_rgb_is_mean_over_channels(self):
        x, y = smooth_image(3, 24, 24, seed=0), smooth_image(3, 24, 24, seed=1)
        per_channel = [ssim(x[c:c + 1], y[c:c + 1]) for c in range(3)]
        assert ssim(x, y) == pytest.approx(sum(per_channel) / 3, abs=1e-9)


class TestHeldoutMask:
    @pytest.mark.parametrize("h,w,factor", [(8, 8, 4), (12, 16, 2), (9, 7, 3)])
    def test_counts(self, h, w, factor):
        mask = heldout_mask(h, w, factor)
        assert mask.dtype == torch.bool and mask.shape == (h, w)
        assert not mask[::factor, ::factor].any()
        assert int(mask.sum()) == h * w - len(range(0, h, factor)) * len(range(0, w, factor))


class TestImageQuality:
    @pytest.fixture
    def target(self):
        return smooth_image(3, 32, 32) * 2 - 1  # training range [-1, 1]

    def test_psnr_uses_only_heldout_pixels(self, target):
        factor = 4
        mask = heldout_mask(32, 32, factor)
        delta = 0.2  # in [-1, 1] units: 0.1 in [0, 1] units
        on_heldout = target + delta * mask
        q = image_quality(on_heldout, target, factor)
        assert q["psnr"] == pytest.approx(20.0, rel=1e-5)
        assert q["psnr_luma"] == pytest.approx(-20 * math.log10(0.1 * sum(LUMA_WEIGHTS)), rel=1e-5)
        assert q["ssim"] < 1.0

        on_train = target + delta * (~mask)
        q = image_quality(on_train, target, factor)
        assert q["psnr"] == float("inf") and q["psnr_luma"] == float("inf")
        assert q["ssim"] < 1.0

    def test_custom_mask(self, target):
        full = torch.ones(32, 32, dtype=torch.bool)
        pred = target.clone()
        pred[:, ::4, ::4] += 0.2
        q = image_quality(pred, target, 4, mask=full)
        mse = (0.1 ** 2) / 16  # one pixel in 16 is off by 0.1 in [0, 1] units
        assert q["psnr"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)

    def test_golden_luma_of_red(self):
        target = -torch.ones(3, 16, 16)  # black
        pred = target.clone()
        pred[0] = 1.0  # pure red
        q = image_quality(pred, target, 2)
        assert q["psnr"] == pytest.approx(10 * math.log10(3.0), rel=1e-6)  # one channel of three is off by 1
        assert q["psnr_luma"] == pytest.approx(-20 * math.log10(65.738 / 256), rel=1e-6)

    @pytest.mark.parametrize("factor", [2, 4])
    def test_ssim_crops_factor_pixels(self, target, factor):
        border = torch.ones(32, 32, dtype=torch.bool)
        border[factor:-factor, factor:-factor] = False
        pred = target + 0.3 * border  # errors only within `factor` pixels of the border
        q = image_quality(pred, target, factor)
        assert q["ssim"] == pytest.approx(1.0, abs=1e-6)
        assert q["psnr"] < 40  # PSNR does see them
        # one pixel further in, SSIM sees it
        inner = torch.zeros(32, 32, dtype=torch.bool)
        inner[factor, factor:-factor] = True
        assert image_quality(target + 0.3 * inner, target, factor)["ssim"] < 1.0 - 1e-4

    def test_ssim_is_luma_ssim_of_the_crop(self, target):
        pred = target + 0.1 * torch.randn_like(target)
        q = image_quality(pred, target, 4)
        p, t = luma(to_unit_range(pred.float())), luma(to_unit_range(target.float()))
        assert q["ssim"] == pytest.approx(ssim(p[:, 4:-4, 4:-4], t[:, 4:-4, 4:-4]), abs=1e-7)

    def test_gray(self):
        target = smooth_image(1, 16, 16) * 2 - 1
        q = image_quality(target + 0.2, target, 2)
        assert q["psnr"] == pytest.approx(20.0, rel=1e-5) and q["psnr_luma"] == pytest.approx(20.0, rel=1e-5)


class TestDerivativePSNR:
    def test_peak_is_target_range(self):
        target = torch.linspace(-2.0, 3.0, 50, dtype=torch.float64)  # range 5
        pred = target + 0.1
        assert derivative_psnr(pred, target) == pytest.approx(10 * math.log10(25 / 0.01), rel=1e-9)

    def test_shift_invariant_peak(self):
        target = torch.rand(1, 2, 8, 8, dtype=torch.float64)
        pred = target + 0.05 * torch.randn_like(target)
        assert derivative_psnr(pred + 7, target + 7) == pytest.approx(derivative_psnr(pred, target), rel=1e-9)

    def test_constant_target_is_nan(self):
        assert math.isnan(derivative_psnr(torch.rand(4), torch.zeros(4)))


# ------------------------------------------------------------------------ Poisson alignments
def test_remove_offset_removes_the_best_constant_per_channel():
    from sobolev_inr.metrics import remove_offset

    target = torch.rand(2, 5, 6) * 2 - 1
    pred = target + torch.tensor([0.3, -0.2]).view(2, 1, 1) + 0.01 * torch.randn(2, 5, 6)
    aligned = remove_offset(pred, target)
    assert torch.allclose((aligned - target).mean(dim=(1, 2)), torch.zeros(2), atol=1e-6)
    for shift in (1e-3, -1e-3):  # no other constant does better
        assert ((aligned - target) ** 2).sum() < ((aligned + shift - target) ** 2).sum()


def test_minmax_rescale_is_sirens_rescale_img():
    from sobolev_inr.metrics import minmax_rescale, poisson_image_psnrs

    x = torch.linspace(-3, 5, 101).reshape(1, 1, 101)
    assert torch.allclose(minmax_rescale(x), (x + 3) / 8)
    clipped = minmax_rescale(x, percentile=10.0)  # clamp to the 10th and 90th percentiles (-2.2, 4.2), then rescale
    assert clipped.min() == 0 and clipped.max() == 1 and (clipped == 0).sum() == 11
    assert torch.equal(minmax_rescale(torch.full((1, 2, 2), 0.7)), torch.full((1, 2, 2), 0.5))
    # An affine copy of the target is perfect for SIREN's alignment, not for ours (which keeps the scale).
    target = torch.rand(1, 16, 16) * 2 - 1
    scores = poisson_image_psnrs(0.5 * target + 0.2, target)
    assert scores["psnr_minmax"] > 60 and scores["psnr_offset"] < 25


class TestRhoAG:
    """SPDER's rho_AG: cosine similarity of amplitude spectra (paper 003, Eq. 5)."""

    def test_identical_and_circularly_shifted_signals_score_one(self):
        image = torch.rand(1, 12, 10) * 2 - 1
        assert rho_ag(image, image) == pytest.approx(1.0, abs=1e-12)
        assert rho_ag(torch.roll(image, shifts=(3, -4), dims=(1, 2)), image) == pytest.approx(1.0, abs=1e-12)

    @pytest.mark.parametrize("c", [0.0, 0.5, 1.0, 3.0])
    def test_golden_value_of_an_offset_cosine(self, c):
        """target = cos(2 pi k n / N) has amplitude N / 2 at +-k; pred = c + target adds c N at 0:
        rho = (N^2 / 2) / (sqrt(c^2 N^2 + N^2 / 2) sqrt(N^2 / 2)) = 1 / sqrt(2 c^2 + 1)."""
        n = torch.arange(16, dtype=torch.float64)
        target = torch.cos(2 * math.pi * 3 * n / 16)[None]
        assert rho_ag(c + target, target, signal_dims=1) == pytest.approx(1 / math.sqrt(2 * c * c + 1), rel=1e-12)

    def test_equals_numpy_fft2_cosine_over_channels(self):
        """An independent computation: numpy's fft2 per channel, |.|, all channels in one vector, cosine."""
        rng = np.random.default_rng(3)
        pred, target = rng.uniform(-1, 1, (3, 9, 14)), rng.uniform(-1, 1, (3, 9, 14))
        a, g = np.abs(np.fft.fft2(pred)).ravel(), np.abs(np.fft.fft2(target)).ravel()
        expected = a @ g / (np.linalg.norm(a) * np.linalg.norm(g))
        assert rho_ag(torch.from_numpy(pred), torch.from_numpy(target)) == pytest.approx(expected, rel=1e-12)

    def test_shape_mismatch_and_zero_signal(self):
        with pytest.raises(ValueError, match="shape"):
            rho_ag(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))
        assert math.isnan(rho_ag(torch.zeros(1, 4, 4), torch.ones(1, 4, 4)))
