"""Tests for sobolev_inr.data.images: loading from every source, and the train / held-out split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sobolev_inr.data.coords import image_grid, image_step
from sobolev_inr.data.images import load_image, prepare_image, resize_image, resolve_image_path
from sobolev_inr.data.targets import image_gradient, image_second_differences
from sobolev_inr.errors import ConfigError, DataError

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def rgb_array():
    return np.random.default_rng(0).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)


class TestLoadSkimage:
    def test_camera(self):
        image, source, _ = load_image("skimage:camera")
        assert image.shape == (1, 512, 512) and image.dtype == torch.float32
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert image.min() < -0.9 and image.max() > 0.9  # the full range is used
        assert "camera" in source

    def test_astronaut(self):
        image, *_ = load_image("skimage:astronaut")
        assert image.shape == (3, 512, 512)
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert not torch.equal(image[0], image[1])

    def test_is_gray(self):
        rgb, *_ = load_image("skimage:astronaut")
        gray, *_ = load_image("skimage:astronaut", is_gray=True)
        assert gray.shape == (1, 512, 512)
        # PIL's 'L' conversion: Y = (299 R + 587 G + 114 B) / 1000, rounded to 8 bits
        expected = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
        assert (gray - expected).abs().max() < 2.5 / 255 * 2

    def test_unknown_skimage_image(self):
        with pytest.raises(DataError, match="camera"):
            load_image("skimage:lena")

    def test_empty_filename(self):
        with pytest.raises(ConfigError):
            load_image("")


class TestLoadFile:
    def test_absolute_path(self, tmp_path, rgb_array):
        path = write_png(tmp_path / "img.png", rgb_array)
        image, source, _ = load_image(str(path))
        assert image.shape == (3, 12, 16)
        expected = torch.from_numpy(rgb_array).permute(2, 0, 1).float() / 255 * 2 - 1
        torch.testing.assert_close(image, expected, rtol=0, atol=1e-6)
        assert source == str(path)

    def test_gray_png_stays_one_channel(self, tmp_path):
        array = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
        image, *_ = load_image(str(write_png(tmp_path / "g.png", array)))
        assert image.shape == (1, 12, 16)
        torch.testing.assert_close(image[0], torch.from_numpy(array).float() / 255 * 2 - 1, rtol=0, atol=1e-6)

    def test_sixteen_bit_gray_is_rescaled_not_clipped(self, tmp_path):
        array = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 341)  # 0 .. 65131
        image, *_ = load_image(str(write_png(tmp_path / "g16.png", array)))
        assert image.shape == (1, 12, 16)
        expected = torch.from_numpy(array.astype(np.float32)) / 65535 * 2 - 1
        torch.testing.assert_close(image[0], expected, rtol=0, atol=1e-6)

    def test_gray_with_alpha_stays_one_channel(self, tmp_path):
        array = np.random.default_rng(2).integers(0, 256, size=(6, 8, 2), dtype=np.uint8)
        path = tmp_path / "la.png"
        Image.fromarray(array, mode="LA").save(path)
        image, *_ = load_image(str(path))
        assert image.shape == (1, 6, 8)
        torch.testing.assert_close(image[0], torch.from_numpy(array[..., 0]).float() / 255 * 2 - 1,
                                   rtol=0, atol=1e-6)

    def test_alpha_is_dropped_and_the_notes_say_so(self, tmp_path):
        array = np.random.default_rng(1).integers(0, 256, size=(6, 8, 4), dtype=np.uint8)
        image, source, notes = load_image(str(write_png(tmp_path / "a.png", array)))
        assert image.shape == (3, 6, 8)
        torch.testing.assert_close(image, torch.from_numpy(array[..., :3]).permute(2, 0, 1).float() / 255 * 2 - 1,
                                   rtol=0, atol=1e-6)
        assert len(notes) == 1 and "alpha channel" in notes[0] and "dropped" in notes[0] and source in notes[0]

    def test_no_notes_for_a_plain_rgb_image(self, tmp_path, rgb_array):
        assert load_image(str(write_png(tmp_path / "p.png", rgb_array))).notes == []

    def test_original_layout(self, tmp_path, rgb_array):
        path = write_png(tmp_path / "root" / "MySet" / "HR" / "pic.png", rgb_array)
        image, source, _ = load_image("pic", data_root=str(tmp_path / "root"), dataset="MySet")
        assert image.shape == (3, 12, 16)
        assert Path(source) == path
        assert resolve_image_path("pic", str(tmp_path / "root"), "MySet") == path

    def test_missing_file_names_the_path(self, tmp_path):
        with pytest.raises(DataError) as info:
            load_image("nothere", data_root=str(tmp_path), dataset="Set5")
        assert str(tmp_path / "Set5" / "HR" / "nothere.png") in str(info.value)

    def test_missing_path_with_suffix(self, tmp_path):
        missing = tmp_path / "gone.png"
        with pytest.raises(DataError) as info:
            load_image(str(missing), data_root=str(tmp_path))
        assert str(missing) in str(info.value)

    def test_truncated_png(self, tmp_path, rgb_array):
        good = write_png(tmp_path / "good.png", np.tile(rgb_array, (8, 8, 1)))
        bad = tmp_path / "bad.png"
        bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
        with pytest.raises(DataError) as info:
            load_image(str(bad))
        assert str(bad) in str(info.value)

    def test_garbage_png(self, tmp_path):
        bad = tmp_path / "garbage.png"
        bad.write_bytes(b"this is not an image")
        with pytest.raises(DataError, match="cannot read"):
            load_image(str(bad))


def ramp_image(c=3, h=16, w=24):
    gen = torch.Generator().manual_seed(0)
    return torch.rand(c, h, w, generator=gen) * 2 - 1


def _keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5: PIL's BICUBIC)."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t < 1, near, np.where(t < 2, far, 0.0))


def _reference_upsample_1d(signal: np.ndarray, out_size: int) -> np.ndarray:
    """Cubic upsampling along the last axis, written from the convention alone: output pixel i has its centre at
    input position (i + 0.5) * in / out - 0.5 (half-pixel centres); weights are the kernel at the distance to each
    input pixel centre, the input pixels beyond the border dropped and the rest renormalised (PIL's border)."""
    n = signal.shape[-1]
    out = np.empty(signal.shape[:-1] + (out_size,))
    for i in range(out_size):
        centre = (i + 0.5) * n / out_size
        taps = np.arange(max(int(centre - 2 + 0.5), 0), min(int(centre + 2 + 0.5), n))
        w = _keys_cubic(taps + 0.5 - centre)
        out[..., i] = signal[..., taps] @ (w / w.sum())
    return out


class TestResize:
    def test_bicubic_upsampling_equals_the_keys_cubic_reference(self):
        """The super-resolution baseline (PIL's BICUBIC, paper 004's) against an independent implementation."""
        image = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (2, 7, 9)))
        ours = resize_image(image, (28, 18), "bicubic").double().numpy()
        ref = _reference_upsample_1d(_reference_upsample_1d(image.numpy(), 18).swapaxes(1, 2), 28).swapaxes(1, 2)
        np.testing.assert_allclose(ours, ref, atol=2e-6)  # PIL computes in float32

    @pytest.mark.parametrize("factor", [2, 4])
    def test_an_upsampled_ramp_lands_on_the_fine_grid(self, factor):
        """The grid convention and the resampling agree: a linear ramp sampled at the coarse pixel centres and
        upsampled by the (linear-exact) cubic equals the ramp sampled at the fine pixel centres (away from the
        border, where the kernel is cut); box-downsampling the fine ramp gives the coarse one everywhere."""
        h, w = 6, 8
        ramp = lambda g: (0.3 * g[:, 0] - 0.7 * g[:, 1] + 0.1).float()  # noqa: E731
        coarse = ramp(image_grid(h, w, torch.float64)).reshape(1, h, w)
        fine = ramp(image_grid(h * factor, w * factor, torch.float64)).reshape(1, h * factor, w * factor)
        up = resize_image(coarse, (h * factor, w * factor), "bicubic")
        border = 2 * factor
        torch.testing.assert_close(up[:, border:-border, border:-border], fine[:, border:-border, border:-border],
                                   rtol=0, atol=2e-6)
        torch.testing.assert_close(resize_image(fine, (h, w), "box"), coarse, rtol=0, atol=2e-6)

    def test_unknown_filter_and_tiny_sizes_are_refused(self):
        image = torch.zeros(1, 8, 8)
        with pytest.raises(ConfigError, match="bicubic"):
            resize_image(image, (4, 4), "cubic")
        with pytest.raises(ConfigError, match=">= 2"):
            resize_image(image, (1, 4))


class TestPrepareImage:
    @pytest.mark.parametrize("factor", [1, 2, 4])
    def test_train_pixels(self, factor):
        image = ramp_image()
        data = prepare_image(image, factor)
        h, w = 16 // factor, 24 // factor
        assert data.train_shape == (h, w)
        assert data.train_index.shape == (h * w,)
        grid = image_grid(16, 24).reshape(16, 24, 2)
        torch.testing.assert_close(data.train_coords, grid[::factor, ::factor].reshape(-1, 2))
        expected_values = image[:, ::factor, ::factor].permute(1, 2, 0).reshape(-1, 3)
        assert torch.equal(data.train_values, expected_values)
        assert data.train_values.shape == (h * w, 3)

    @pytest.mark.parametrize("factor", [2, 4])
    def test_heldout(self, factor):
        data = prepare_image(ramp_image(), factor)
        assert int(data.heldout.sum()) == 16 * 24 - (16 // factor) * (24 // factor)
        assert not data.heldout.reshape(-1)[data.train_index].any()

    def test_properties(self):
        data = prepare_image(ramp_image(c=1), 4, source="src")
        assert data.channels == 1 and data.shape == (16, 24) and data.factor == 4 and data.source == "src"
        assert data.pixel_step == image_step(16, 24)
        assert data.coords.shape == (16 * 24, 2)

    @pytest.mark.parametrize("operator", ["sobel", "diff"])
    def test_targets_at_full_resolution(self, operator):
        image = ramp_image()
        data = prepare_image(image, 4, der_operator=operator)
        grad = image_gradient(image, operator)
        assert torch.equal(data.gradient, grad)
        assert data.derivative_step == image_step(16, 24)
        expected = grad[:, :, ::4, ::4].permute(2, 3, 0, 1).reshape(-1, 3, 2)
        assert torch.equal(data.train_jacobian, expected)
        second = image_second_differences(image)[:, :, ::4, ::4].permute(2, 3, 0, 1).reshape(-1, 3, 2)
        assert torch.equal(data.train_second_differences, second)

    def test_jacobian_is_row_major_with_x_first(self):
        # an image that varies only along the width: d/dy targets are zero, d/dx ones are not
        x = image_grid(16, 24).reshape(16, 24, 2)[..., 0]
        data = prepare_image((x ** 2)[None], 2, der_operator="diff")
        assert data.train_jacobian[:, 0, 1].abs().max() == 0
        assert data.train_jacobian[:, 0, 0].abs().max() > 0
        # sample i is pixel (row, col) = divmod(train_index[i], W)
        i = 7
        row, col = divmod(int(data.train_index[i]), 24)
        assert torch.equal(data.train_jacobian[i], data.gradient[:, :, row, col])

    @pytest.mark.parametrize("factor", [2, 4])
    def test_der_on_downsampled(self, factor):
        image = ramp_image()
        data = prepare_image(image, factor, der_on_downsampled=True)
        step = image_step(16, 24)
        assert data.derivative_step == pytest.approx((factor * step[0], factor * step[1]))
        small = image[:, ::factor, ::factor]
        expected = image_gradient(small).permute(2, 3, 0, 1).reshape(-1, 3, 2)
        torch.testing.assert_close(data.train_jacobian, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(data.train_second_differences,
                                   image_second_differences(small).permute(2, 3, 0, 1).reshape(-1, 3, 2))
        # the full-resolution gradient for evaluation is unchanged
        assert torch.equal(data.gradient, image_gradient(image))

    def test_not_a_multiple_of_factor(self):
        image = ramp_image(h=18, w=23)
        with pytest.raises(DataError, match="multiple"):
            prepare_image(image, 4)
        data = prepare_image(image, 4, crop=True)
        assert data.shape == (16, 20) and data.train_shape == (4, 5)
        assert torch.equal(data.image, image[:, :16, :20])

    def test_bad_factor(self):
        with pytest.raises(ConfigError):
            prepare_image(ramp_image(), 0)
        with pytest.raises(DataError, match="smaller factor"):
            prepare_image(ramp_image(h=16, w=32), 16)  # a 1x2 training grid
        assert prepare_image(ramp_image(), 8).train_shape == (2, 3)  # 2x3 is enough


class TestRealData:
    def test_set5_baby(self):
        if not (REAL_DATA / "Set5" / "HR" / "baby.png").is_file():
            pytest.skip(f"real data not found at {REAL_DATA / 'Set5' / 'HR' / 'baby.png'}")
        image, source, _ = load_image("baby", data_root=str(REAL_DATA), dataset="Set5")
        assert image.shape == (3, 512, 512) and image.dtype == torch.float32
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert Path(source).name == "baby.png"
        data = prepare_image(image, 4, source=source)
        assert data.train_values.shape == (128 * 128, 3)
        assert int(data.heldout.sum()) == 512 * 512 - 128 * 128
