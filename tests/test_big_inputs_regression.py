"""Big inputs for the image, super-resolution and audio tasks (issue 25): blocked training equals unblocked, chunked
evaluation equals unchunked, ``final_metrics(stride=k)`` scores the subsampled grid it says (``final_eval_shape``)
without rendering the full one and the outputs reuse its renders, and ``max_memory_gb`` bounds the peak memory of a
training step, measured in a subprocess."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sobolev_inr.config.options import MemoryOptions, SupervisionOptions
from sobolev_inr.data.audio import AudioSignal, prepare_audio
from sobolev_inr.data.coords import derivative_scale, image_grid, image_step
from sobolev_inr.data.images import prepare_image
from sobolev_inr.data.targets import image_gradient, image_laplacian
from sobolev_inr.derivatives import value_and_derivatives
from sobolev_inr.errors import ConfigError
from sobolev_inr.metrics import derivative_psnr, image_quality, luma, psnr, ssim, to_unit_range
from sobolev_inr.models import MLP
from sobolev_inr.tasks.audio_regression.task import AudioRegression
from sobolev_inr.tasks.image_regression.task import ImageRegression
from sobolev_inr.tasks.regression import RegressionBatch
from sobolev_inr.tasks.super_resolution.task import SuperResolution, low_resolution
from sobolev_inr.training.loop import take_step
from sobolev_inr.training.progress import Progress

UNBLOCKED = MemoryOptions(block_size=0, max_memory_gb=0)
BLOCKED = MemoryOptions(block_size=5)


def _image(c: int = 3, side: int = 12) -> torch.Tensor:
    """(c, side, side) in [-1, 1] with structure along both axes."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    channels = [torch.sin(3 * x) * torch.cos(2 * y), x * y, torch.cos(4 * x + y)]
    return torch.stack(channels[:c]).float()


def _signal(n: int = 120) -> AudioSignal:
    t = torch.arange(n, dtype=torch.float32)
    return AudioSignal(torch.sin(0.3 * t) * 0.8 + 0.2 * torch.cos(0.11 * t), 1000, "test")


def image_task(memory=UNBLOCKED, supervision=SupervisionOptions("val_der"), factor=3, batch_size=0,
               eval_chunk_size=65536):
    data = prepare_image(_image(side=24), factor=factor)  # 64 training pixels; a 12x12 grid at stride 2
    return ImageRegression(data, supervision=supervision, batch_size=batch_size, eval_chunk_size=eval_chunk_size,
                           memory=memory)


def sr_task(memory=UNBLOCKED, supervision=SupervisionOptions("val_der"), eval_chunk_size=65536):
    high = _image(side=16)
    low = prepare_image(low_resolution(high, 2), 1, supervision.der_operator)
    return SuperResolution(low, high, 2, supervision=supervision, eval_chunk_size=eval_chunk_size, memory=memory)


def audio_task(memory=UNBLOCKED, supervision=SupervisionOptions("val_der", der_operator="diff"), factor=3,
               batch_size=0, eval_chunk_size=65536):
    return AudioRegression(prepare_audio(_signal(), factor, time_scale=2.0), supervision=supervision,
                           batch_size=batch_size, eval_chunk_size=eval_chunk_size, memory=memory)


TASKS = {"image": (image_task, 2, 3), "super_resolution": (sr_task, 2, 3), "audio": (audio_task, 1, 1)}
"""name -> (builder, in_features, out_features)."""


def _twin_models(in_features: int, out_features: int):
    """Two small SIRENs with the same initial weights."""
    torch.manual_seed(0)
    a = MLP(in_features, out_features, ["sine"] * 2, hidden_features=16)
    b = MLP(in_features, out_features, ["sine"] * 2, hidden_features=16)
    b.load_state_dict(a.state_dict())
    return a, b


def _train(task, model: nn.Module, steps: int = 3):
    """``steps`` Adam steps as ``fit`` takes them (``take_step`` over ``loss_blocks``, batches from a seeded
    generator); returns each step's terms and the number of blocks of the first step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = list(model.parameters())
    generator = torch.Generator().manual_seed(0)
    history, blocks = [], []

    def counted(batch):
        for terms in task.loss_blocks(model, batch):
            blocks.append(1)
            yield terms

    while len(history) < steps:
        for batch in task.train_batches(generator):
            blocks.clear()
            terms, _, applied = take_step(optimizer, params, lambda: counted(batch))
            assert applied
            history.append(({k: float(v) for k, v in terms.items()}, len(blocks)))
            if len(history) == steps:
                break
    return [h[0] for h in history], history[0][1]


SUPERVISIONS = [
    ("val", {}),
    ("val_der", {}),
    ("val_der", {"der_fraction": 0.4}),
    ("val_der", {"der_estimator": "directional", "der_directions": 2}),
    ("der", {"der_estimator": "directional", "der_directions": 1, "der_fraction": 0.5}),
    ("lapl", {}),
]


# ------------------------------------------------------------------------------------------- blocked training
@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("supervision,extra", SUPERVISIONS, ids=lambda v: str(v) if v else "")
def test_blocked_training_takes_the_unblocked_steps(name, supervision, extra):
    """Three steps in blocks of 5 rows (several blocks, some without derivative rows when der_fraction < 1) give
    the parameters and loss terms of the same steps taken on the whole batch."""
    build, d, c = TASKS[name]
    options = SupervisionOptions(supervision, **extra, der_operator="diff" if name == "audio" else "sobel")
    a, b = _twin_models(d, c)
    whole, whole_blocks = _train(build(UNBLOCKED, options), a)
    blocked, num_blocks = _train(build(BLOCKED, options), b)
    assert whole_blocks == 1 and num_blocks >= 3
    for (name_a, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name_a)
    for terms, ref in zip(blocked, whole):
        assert terms.keys() == ref.keys()
        for key in ref:
            assert terms[key] == pytest.approx(ref[key], rel=1e-5), key


@pytest.mark.parametrize("name", ["image", "audio"])
def test_blocked_minibatches_take_the_unblocked_steps(name):
    """Mini-batches (``batch_size``) bigger than a block are cut too, their random rows included."""
    build, d, c = TASKS[name]
    options = SupervisionOptions("val_der", der_fraction=0.5, der_operator="diff" if name == "audio" else "sobel")
    a, b = _twin_models(d, c)
    whole, _ = _train(build(UNBLOCKED, options, batch_size=14), a)
    blocked, num_blocks = _train(build(BLOCKED, options, batch_size=14), b)
    assert num_blocks >= 2
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    assert [t["total"] for t in blocked] == pytest.approx([t["total"] for t in whole], rel=1e-5)


def test_block_terms_sum_to_the_batch_terms_and_a_batch_that_fits_is_one_loss():
    """The blocks' terms add up to ``loss``'s; a batch within the block size is ``loss`` itself, and so is any batch
    under the default budget (a small image is trained as before)."""
    model, _ = _twin_models(2, 3)
    task = image_task(MemoryOptions(block_size=4), SupervisionOptions("val_der", der_fraction=0.5))
    batch = next(iter(task.train_batches(torch.Generator().manual_seed(1))))
    ref = task.loss(model, batch)
    blocks = list(task.loss_blocks(model, batch))
    assert len(blocks) >= 3
    for key in ref:
        assert float(sum(b[key].detach() for b in blocks)) == pytest.approx(float(ref[key].detach()), rel=1e-5), key
    for memory in (MemoryOptions(block_size=task.num_samples), MemoryOptions()):
        fits = image_task(memory, SupervisionOptions("val_der", der_fraction=0.5))
        (only,) = list(fits.loss_blocks(model, batch))
        for key in ref:
            assert torch.equal(only[key], ref[key]), key


def test_the_budget_sets_the_block_size_and_says_so():
    """``max_memory_gb`` picks blocks from a probe (a smaller budget, smaller blocks), measured once and logged once."""
    model, _ = _twin_models(2, 3)
    data = prepare_image(_image(side=32), factor=1)  # 1,024 rows: more than a probe
    lines, sizes = [], []
    for budget in (1e-4, 4e-4):
        task = ImageRegression(data, memory=MemoryOptions(max_memory_gb=budget))
        task.progress = Progress(log=lines.append)
        for _ in range(2):
            list(task.loss_blocks(model, RegressionBatch()))
        sizes.append(task.block_rows(model, task.num_samples))
    assert 1 < sizes[0] < sizes[1] < 1024
    assert len(lines) == 2 and lines[0].startswith(f"training steps in {-(-1024 // sizes[0])} blocks of {sizes[0]:,}")


# ------------------------------------------------------------------------------------------ chunked evaluation
@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("stride", [1, 2])
def test_chunked_evaluation_equals_unchunked(name, stride):
    build, d, c = TASKS[name]
    model, _ = _twin_models(d, c)
    whole = build(eval_chunk_size=65536).final_metrics(model, stride)
    chunked = build(eval_chunk_size=7).final_metrics(model, stride)
    assert whole.keys() == chunked.keys()
    for key, value in whole.items():
        if isinstance(value, float):
            assert chunked[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        else:
            assert chunked[key] == value, key


# --------------------------------------------------------------------------------------------- strided scoring
class Calls:
    """Counts the rows of every network evaluation of a task module (predict, predict_jacobian, ...)."""

    def __init__(self, monkeypatch, module, names):
        self.rows = []
        for name in names:
            original = getattr(module, name)

            def wrapped(model, coords, *args, _original=original, **kwargs):
                self.rows.append(coords.shape[0])
                return _original(model, coords, *args, **kwargs)

            monkeypatch.setattr(module, name, wrapped)


def _scale(step):
    return derivative_scale(step, "pixel")


@pytest.mark.parametrize("stride", [1, 2])
def test_image_metrics_at_a_stride_are_those_of_the_subsampled_grid(stride, monkeypatch, tmp_path):
    import sobolev_inr.tasks.image_regression.task as module

    model, _ = _twin_models(2, 3)
    task = image_task()
    calls = Calls(monkeypatch, module, ["predict", "predict_jacobian", "predict_laplacian"])
    metrics = task.final_metrics(model, stride)
    data, s = task.data, stride
    h, w = data.shape
    shape = [math.ceil(h / s), math.ceil(w / s)]
    assert metrics["final_eval_shape"] == shape
    assert calls.rows == [shape[0] * shape[1]] * 3  # image, gradient, Laplacian: on the strided grid only
    coords = image_grid(h, w).view(h, w, 2)[::s, ::s].reshape(-1, 2)
    d = value_and_derivatives(model, coords, scale=_scale(data.pixel_step), laplacian=True, create_graph=False)
    pred = d.value.T.reshape(3, *shape)
    grad = d.jacobian.permute(1, 2, 0).reshape(3, 2, *shape)
    lap = d.laplacian.T.reshape(3, *shape)
    target, mask = data.image[:, ::s, ::s], data.heldout[::s, ::s]
    q = image_quality(pred, target, math.ceil(data.factor / s), mask)
    expected = {"psnr_heldout": q["psnr"], "ssim_heldout": q["ssim"], "num_heldout_samples": int(mask.sum()),
                "psnr_grad_heldout": derivative_psnr(grad[..., mask], data.gradient[..., ::s, ::s][..., mask]),
                "psnr_lapl_full": derivative_psnr(lap, image_laplacian(data.image)[:, ::s, ::s]),
                "psnr_train": psnr(to_unit_range(pred[:, ~mask]), to_unit_range(target[:, ~mask]))}
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-5), key
    # The outputs are drawn from the same renders, at the scored pixels.
    task.write_outputs(model, tmp_path, {**metrics, "final_eval_stride": stride})
    assert len(calls.rows) == 3
    assert np.load(tmp_path / "reconstruction.npy").shape == (*shape, 3)
    assert (tmp_path / "laplacian.png").is_file()


@pytest.mark.parametrize("stride", [1, 2])
def test_super_resolution_metrics_at_a_stride_are_those_of_the_subsampled_grid(stride, monkeypatch, tmp_path):
    import sobolev_inr.tasks.super_resolution.task as module

    model, _ = _twin_models(2, 3)
    task = sr_task()
    calls = Calls(monkeypatch, module, ["predict", "predict_jacobian"])
    metrics = task.final_metrics(model, stride)
    s, (h, w) = stride, task.high_shape
    shape = [math.ceil(h / s), math.ceil(w / s)]
    assert metrics["final_eval_shape"] == shape and metrics["high_shape"] == [h, w]
    assert sorted(calls.rows) == sorted([shape[0] * shape[1]] * 2 + [task.num_samples])  # + the low-res fit
    coords = image_grid(h, w).view(h, w, 2)[::s, ::s].reshape(-1, 2)
    d = value_and_derivatives(model, coords, scale=_scale(image_step(h, w)), create_graph=False)
    pred, grad = d.value.T.reshape(3, *shape), d.jacobian.permute(1, 2, 0).reshape(3, 2, *shape)
    high, bicubic = task.high[:, ::s, ::s], task.bicubic[:, ::s, ::s]
    p, t = to_unit_range(pred), to_unit_range(high)
    high_grad = image_gradient(task.high)[..., ::s, ::s]
    expected = {"psnr_heldout": psnr(p, t), "ssim_heldout": ssim(luma(p), luma(t)),
                "psnr_bicubic_heldout": psnr(to_unit_range(bicubic), t),
                "psnr_grad_heldout": derivative_psnr(grad, high_grad),
                "psnr_grad_bicubic_heldout": derivative_psnr(image_gradient(task.bicubic)[..., ::s, ::s], high_grad)}
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-5), key
    task.write_outputs(model, tmp_path, {**metrics, "final_eval_stride": stride})
    assert len(calls.rows) == 3
    assert np.load(tmp_path / "super_resolved.npy").shape == (*shape, 3)


@pytest.mark.parametrize("stride", [1, 2])
def test_audio_metrics_at_a_stride_are_those_of_the_subsampled_clip(stride, monkeypatch, tmp_path):
    import scipy.io.wavfile

    import sobolev_inr.tasks.audio_regression.task as module

    model, _ = _twin_models(1, 1)
    task = audio_task()
    calls = Calls(monkeypatch, module, ["predict", "predict_jacobian"])
    metrics = task.final_metrics(model, stride)
    data, s = task.data, stride
    n = math.ceil(data.num_samples / s)
    assert metrics["final_eval_shape"] == [n] and calls.rows == [n, n]
    d = value_and_derivatives(model, data.coords[::s], scale=_scale(data.sample_step), create_graph=False)
    pred, der = d.value[:, 0], d.jacobian[:, 0, 0]
    target, mask, der_target = data.samples[::s], data.heldout[::s], data.derivative[::s]
    expected = {"psnr_heldout": psnr(pred[mask], target[mask]), "psnr_full": psnr(pred, target),
                "psnr_train": psnr(pred[~mask], target[~mask]),
                "psnr_der_heldout": derivative_psnr(der[mask], der_target[mask]),
                "num_heldout_samples": int(mask.sum())}
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-5), key
    task.write_outputs(model, tmp_path, {**metrics, "final_eval_stride": stride})
    assert len(calls.rows) == 2
    rate, written = scipy.io.wavfile.read(tmp_path / "reconstruction.wav")
    assert written.shape == (n,) and rate == round(data.rate / s)


def test_a_stride_that_scores_training_samples_only_is_refused():
    """A stride that is a multiple of ``factor`` picks the training grid: refused by the task and by the parser
    (before a run starts), unless the final evaluation is skipped."""
    from sobolev_inr.tasks import get_task

    model, _ = _twin_models(2, 3)
    with pytest.raises(ConfigError, match="multiple of factor"):
        image_task(factor=3).final_metrics(model, 6)
    with pytest.raises(ConfigError, match="multiple of factor"):
        audio_task(factor=3).final_metrics(_twin_models(1, 1)[0], 3)
    image = ["--filename", "skimage:camera", "--factor", "2"]
    with pytest.raises(ConfigError, match="final_eval_stride = 4 is a multiple of factor = 2"):
        get_task("image_regression").parse("train", [*image, "--final_eval_stride", "4"])
    get_task("image_regression").parse("train", [*image, "--final_eval_stride", "3"])
    get_task("image_regression").parse("train", [*image, "--final_eval_stride", "4", "--skip_final_eval"])
    with pytest.raises(ConfigError, match="every sample it scores is a training sample"):
        get_task("audio_regression").parse("train", ["--factor", "5", "--final_eval_stride", "10"])


# ---------------------------------------------------------------------------------------------- memory budget
def _clear_refs_writable() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


MEMORY_STEP = """
import json, sys
import torch
torch.set_num_threads(1)
from sobolev_inr.config.options import MemoryOptions
from sobolev_inr.models import MLP
from sobolev_inr.training import memory
from sobolev_inr.training.loop import take_step


def build(name, side, options):
    # 65,536 training samples at side 256 (every one trained on), val_der: about 180 MB for a step's backward pass
    if name == "image":
        from sobolev_inr.data.images import prepare_image
        from sobolev_inr.tasks.image_regression.task import ImageRegression
        y, x = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
        image = torch.stack([torch.sin(3 * x) * torch.cos(2 * y), x * y, torch.cos(4 * x)])
        return ImageRegression(prepare_image(image, factor=1), memory=options), 2, 3
    if name == "audio":
        from sobolev_inr.data.audio import AudioSignal, prepare_audio
        from sobolev_inr.tasks.audio_regression.task import AudioRegression
        t = torch.arange(side * side, dtype=torch.float32)
        signal = AudioSignal(torch.sin(0.03 * t) * 0.8, 44100, "test")
        return AudioRegression(prepare_audio(signal, 1), memory=options), 1, 1
    from sobolev_inr.data.video import prepare_video, synthetic_clip
    from sobolev_inr.tasks.video_regression.task import VideoRegression
    frames = synthetic_clip(16, max(side // 4, 8)) * 2 - 1  # 16 frames of (side / 4)^2 pixels
    return VideoRegression(prepare_video(frames, 1, 1), supervision="val_der", memory=options), 3, 3


name = sys.argv[2]
small, in_features, out_features = build(name, 16, MemoryOptions(block_size=0, max_memory_gb=0))
torch.manual_seed(0)
model = MLP(in_features, out_features, ["sine"] * 3, hidden_features=64)
params = list(model.parameters())
optimizer = torch.optim.Adam(params, lr=1e-4)
take_step(optimizer, params, lambda: small.loss_blocks(model, None))  # one-time allocations: not the step's
grown = {}
for label, options in (("blocked", MemoryOptions(max_memory_gb=float(sys.argv[1]))),
                       ("unblocked", MemoryOptions(block_size=0, max_memory_gb=0))):
    task = build(name, 256, options)[0]
    before = memory.current_rss_mb()
    memory.reset_peak_rss()
    take_step(optimizer, params, lambda: task.loss_blocks(model, None))
    grown[label] = memory.peak_rss_mb() - before
print(json.dumps(grown))
"""


@pytest.mark.skipif(not _clear_refs_writable(), reason="the peak RSS cannot be reset here (/proc/self/clear_refs "
                    "is not writable: not Linux, or a sandbox forbids it)")
@pytest.mark.parametrize("name", ["image", "audio", "video"])
def test_max_memory_gb_bounds_the_peak_memory_of_a_full_batch_step(name):
    """One full-batch val_der step on 65,536 samples (a 256x256 image, a clip of as many audio samples, 16 frames
    of 64x64; about 180 MB for its backward pass) with a 0.06 GB budget: the process's peak resident memory grows
    by less than the budget (+10 %: HEADROOM is an estimate) and by less than half of what the unblocked step
    takes. Measured in a fresh process, one thread, with glibc's mmap threshold fixed at 128 kB so that each
    block's freed memory goes back to the system and the peak measures what the step holds (with glibc's default
    dynamic threshold the allocator keeps a few tens of MB of freed memory for reuse on top of that, a fixed
    amount whatever the input's size)."""
    budget_gb = 0.06
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(MEMORY_STEP), str(budget_gb), name],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    grown = json.loads(result.stdout.strip().splitlines()[-1])
    budget_mb = budget_gb * 1024
    assert grown["unblocked"] > 2 * budget_mb, grown  # the test is meaningful: the whole step needs more
    assert grown["blocked"] < 1.1 * budget_mb, grown
    assert grown["blocked"] < 0.5 * grown["unblocked"], grown


# ---------------------------------------------------------------------------------------- targets and loading
@pytest.mark.parametrize("operator", ["sobel", "diff"])
def test_gradient_targets_in_bands_of_rows_are_those_of_the_whole_image(operator, monkeypatch):
    """A big image's Sobel/diff targets are filtered in bands of rows (bounded memory): the same values, bit for bit,
    as kornia's filter of the whole image, borders included; and the second differences are the 3-point stencil."""
    import kornia

    from sobolev_inr.data import targets

    image = torch.rand(3, 23, 17) * 2 - 1
    whole = kornia.filters.spatial_gradient(image[None], mode=operator, order=1, normalized=True)[0]
    monkeypatch.setattr(targets, "BAND_PIXELS", 3 * 17 * 4)  # bands of 4 rows, the last one of 3
    assert torch.equal(targets.image_gradient(image, operator), whole)
    padded = torch.nn.functional.pad(image[None], (1, 1, 1, 1), mode="replicate")[0]
    centre = padded[:, 1:-1, 1:-1]
    dxx = padded[:, 1:-1, 2:] - 2.0 * centre + padded[:, 1:-1, :-2]
    dyy = padded[:, 2:, 1:-1] - 2.0 * centre + padded[:, :-2, 1:-1]
    assert torch.equal(targets.image_second_differences(image), torch.stack((dxx, dyy), dim=1))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "float32"])
@pytest.mark.parametrize("channels", [0, 1, 2, 3])
def test_wav_samples_are_converted_as_before_without_channel_copies(dtype, channels, tmp_path):
    """read_wav mixes channels down from the integer samples and normalises in place: the values of the float64
    formula it replaced, ((samples - offset) as float64).mean(channels) / peak, bit for bit."""
    import scipy.io.wavfile

    from sobolev_inr.data.audio import read_wav

    rng = np.random.default_rng(0)
    shape = (1001,) if channels == 0 else (1001, channels)
    if dtype == "float32":
        samples = (rng.standard_normal(shape) * 0.3).astype(np.float32)
    else:
        info = np.iinfo(dtype)
        samples = rng.integers(info.min // 2 if info.min else 0, info.max // 2, shape).astype(dtype)
    path = tmp_path / "clip.wav"
    scipy.io.wavfile.write(path, 8000, samples)
    _, values, _ = read_wav(path)
    ref = samples.astype(np.float64) - (128.0 if dtype == "uint8" else 0.0)
    ref = ref.mean(axis=1) if ref.ndim == 2 else ref
    ref = ref / np.max(np.abs(ref))
    assert values.dtype == np.float64 and np.array_equal(values, ref)


def test_an_image_loads_to_the_values_of_the_out_of_place_formula(tmp_path):
    """load_image converts in place: the values of array / 255 * 2 - 1 computed out of place, channel first."""
    from PIL import Image

    from sobolev_inr.data.images import load_image

    rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    image = load_image(str(tmp_path / "rgb.png")).image
    expected = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous() * 2.0 - 1.0
    assert image.is_contiguous() and torch.equal(image, expected)
