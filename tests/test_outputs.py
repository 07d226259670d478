"""Raw outputs (sobolev_inr.reporting.outputs): PNGs at native resolution that read back within 1/255, float .npy in the
task's units, channels last, and the one video writer (MP4 with imageio-ffmpeg, GIF without it)."""
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from sobolev_inr.metrics import to_unit_range
from sobolev_inr.reporting.outputs import has_ffmpeg, save_array, save_image, to_uint8, video_suffix, write_video


@pytest.fixture
def no_ffmpeg(monkeypatch):
    """imageio-ffmpeg hidden, as on an install without the video extra (``import imageio_ffmpeg`` fails)."""
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert not has_ffmpeg() and video_suffix() == ".gif"


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_png_has_native_size_and_channels_and_reads_back_within_one_level(tmp_path, channels, mode):
    image = torch.rand(channels, 16, 12) * 2.4 - 1.2  # some values outside [-1, 1]: clamped
    path = save_image(tmp_path / "x.png", image)
    with Image.open(path) as png:
        assert png.mode == mode and png.size == (12, 16)
        back = np.asarray(png, dtype=np.float64) / 255.0
    expected = to_unit_range(image).clamp(0, 1).permute(1, 2, 0).double().numpy()
    back = back.reshape(expected.shape)
    assert np.abs(back - expected).max() <= 0.5 / 255 + 1e-6


def test_to_uint8_is_channels_last_and_rounds():
    clip = torch.tensor([-1.0, -0.5, 0.0, 1.0, 3.0]).reshape(5, 1, 1, 1).expand(5, 3, 2, 4)
    out = to_uint8(clip)
    assert out.dtype == np.uint8 and out.shape == (5, 2, 4, 3)
    assert out[:, 0, 0, 0].tolist() == [0, 64, 128, 255, 255]


@pytest.mark.parametrize("shape, layout", [((3, 5, 7), (5, 7, 3)), ((4, 1, 5, 7), (4, 5, 7, 1))])
def test_npy_is_float32_channels_last_and_unchanged(tmp_path, shape, layout):
    values = torch.randn(shape, dtype=torch.float64) * 3  # not clamped, not rescaled
    array = np.load(save_array(tmp_path / "x.npy", values))
    assert array.dtype == np.float32 and array.shape == layout
    np.testing.assert_allclose(array, values.float().movedim(-3, -1).numpy(), rtol=0, atol=0)


def test_bad_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="C = 1 or 3"):
        save_image(tmp_path / "x.png", torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        save_array(tmp_path / "x.npy", torch.zeros(4, 4))
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x", np.zeros((3, 4, 4, 3), np.float32), fps=10)


def _moving_bar(t=5, h=16, w=16):
    """(T, H, W, 3) uint8: a bar moving right, few colours (a GIF's palette keeps them exactly)."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    for k in range(t):
        frames[k, :, 2 * k:2 * k + 4, k % 3] = 255
    return frames


def test_video_is_mp4_with_imageio_ffmpeg(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="MP4 needs the video extra: pip install -e '.[video]'")
    assert has_ffmpeg() and video_suffix() == ".mp4"
    frames = _moving_bar()
    path = write_video(tmp_path / "clip", frames, fps=8)
    assert path == tmp_path / "clip.mp4" and path.is_file() and not (tmp_path / "clip.gif").exists()
    decoded = iio.imread(path, plugin="FFMPEG")
    assert decoded.shape == frames.shape
    assert iio.immeta(path, plugin="FFMPEG")["fps"] == pytest.approx(8.0)
    assert np.abs(decoded.astype(float) - frames).mean() < 8.0  # lossy, but the same pictures


def test_mp4_of_odd_size_and_gray_frames(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="MP4 needs the video extra: pip install -e '.[video]'")
    gray = _moving_bar(4, 15, 17)[..., 0]
    decoded = iio.imread(write_video(tmp_path / "gray", gray, fps=10), plugin="FFMPEG")
    assert decoded.shape == (4, 16, 18, 3)  # padded by one row and column (the last repeated) for the codec


def test_video_is_gif_without_imageio_ffmpeg(tmp_path, no_ffmpeg):
    frames = _moving_bar()
    path = write_video(tmp_path / "clip", frames, fps=10)
    assert path == tmp_path / "clip.gif" and not (tmp_path / "clip.mp4").exists()
    decoded = iio.imread(path, plugin="pillow", mode="RGB")
    assert decoded.shape == frames.shape and np.array_equal(decoded, frames)
    gray = write_video(tmp_path / "gray", frames.max(axis=-1, keepdims=True), fps=10)  # still all distinct
    assert iio.imread(gray, plugin="pillow", mode="RGB").shape == frames.shape
