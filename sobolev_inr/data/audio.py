"""Audio for regression: WAV loading, an embedded synthetic signal, and the train/held-out split.

Sources, all named by ``filename``:

* ``synthetic`` or ``synthetic:<seconds>``: a signal generated here (an exponential chirp from
  110 Hz to 1760 Hz with its 2nd and 3rd harmonics under a slow amplitude envelope, 44.1 kHz,
  3 s by default), the embedded default that needs no download;
* a path to a WAV file, absolute or relative to the working directory;
* a bare name, resolved as the original code does: ``<data_root>/Audio/<filename>`` (our layout,
  ``data_root = ../../data``), then ``<data_root>/<filename>`` (the original audio code's
  ``data_root = ../../data/Audio``).

WAVs are read with :func:`scipy.io.wavfile.read`: 8-bit unsigned, 16/24/32-bit integer and 32/64-bit
float, any sample rate. Several channels are mixed down to one (their mean); the signal is then
divided by its peak absolute value, so it spans [-1, 1] (the original code's normalisation).

Protocol (Sobolev-INR paper, section 2 of the supplement; the original audio code): the time axis
is the network input, sample ``i`` of ``N`` at ``t_i = -T + 2 T i / (N - 1)`` with ``T =
time_scale`` (100: SIREN's audio scaling, which makes w0 = 30 cover audio frequencies); training
on every ``factor``-th sample (nearest-neighbour downscaling), evaluation on all the others.
Derivative targets are central differences of the full-rate signal per sample step
(:func:`sobolev_inr.data.targets.central_difference`), taken at the training samples.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .targets import central_difference, second_difference

SYNTHETIC_PREFIX = "synthetic"
SYNTHETIC_RATE = 44100
SYNTHETIC_SECONDS = 3.0
AUDIO_FOLDER = "Audio"
"""Folder under ``data_root`` holding the clips (``data/Audio/gt_bach.wav``), as in the original layout."""


@dataclass
class AudioSignal:
    """A mono signal normalised by its peak: samples (N,) float32 in [-1, 1], ``rate`` in Hz.

    ``source`` describes where it came from; ``notes`` what was done to it on loading (mix-down).
    """

    samples: Tensor
    rate: int
    source: str
    notes: List[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return self.samples.shape[0]

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.rate


def synthetic_signal(seconds: float = SYNTHETIC_SECONDS, rate: int = SYNTHETIC_RATE) -> np.ndarray:
    """The embedded test signal, (N,) float64 with peak 1, N = round(seconds * rate).

    An exponential chirp whose fundamental rises from 110 Hz to 1760 Hz (four octaves) over the
    clip, with harmonics 2 and 3 at amplitudes 1/2 and 1/4 (up to 5.3 kHz), under an amplitude
    envelope 0.6 + 0.4 sin(2 pi 1.5 t). Deterministic: no random numbers.
    """
    n = int(round(seconds * rate))
    if n < 2:
        raise ConfigError(f"synthetic signal of {seconds} s at {rate} Hz has {n} samples; ask for a longer one")
    t = np.arange(n, dtype=np.float64) / rate
    f0, f1 = 110.0, 1760.0
    k = math.log(f1 / f0) / seconds  # instantaneous frequency f0 exp(k t)
    phase = 2.0 * math.pi * f0 / k * np.expm1(k * t)
    tone = np.sin(phase) + 0.5 * np.sin(2.0 * phase) + 0.25 * np.sin(3.0 * phase)
    signal = (0.6 + 0.4 * np.sin(2.0 * math.pi * 1.5 * t)) * tone
    return signal / np.max(np.abs(signal))


def _parse_synthetic(filename: str) -> float:
    rest = filename[len(SYNTHETIC_PREFIX):]
    if rest == "":
        return SYNTHETIC_SECONDS
    try:
        seconds = float(rest[1:]) if rest.startswith(":") else float("nan")
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"filename {filename!r}: write synthetic or synthetic:<seconds> with seconds > 0 "
                          f"(e.g. synthetic:3)")
    return seconds


def resolve_audio_path(filename: str, data_root: str) -> Path:
    """A file path for ``filename`` (an existing path, or the original layouts); DataError if none."""
    candidates = [Path(filename).expanduser(), Path(data_root) / AUDIO_FOLDER / filename, Path(data_root) / filename]
    for path in candidates:
        if path.is_file():
            return path
    for path in candidates:
        if path.is_dir():
            raise DataError(f"audio file {filename!r}: {path} is a directory, not a WAV file")
    looked = ", ".join(str(p) for p in dict.fromkeys(candidates))
    raise DataError(f"audio file {filename!r} not found: looked for {looked} (data_root = {data_root}). "
                    f"Link the clips into the project's data/Audio folder (see data/README.md), set data_root, "
                    f"or use filename = synthetic")


def read_wav(path: Path) -> Tuple[int, np.ndarray, List[str]]:
    """Reads a WAV file: (rate, samples (N,) float64 normalised by their peak, notes).

    8-bit files are unsigned (zero at 128); 24-bit ones come from scipy as left-justified int32.
    Either way the peak normalisation makes the integer scale irrelevant. DataError for an
    empty, unreadable, non-WAV, sample-less, non-finite or silent file.
    """
    import scipy.io.wavfile

    path = Path(path)
    if path.stat().st_size == 0:
        raise DataError(f"audio file {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings(record=True) as caught:  # e.g. unknown chunks: shown as notes, not lost
            warnings.simplefilter("always")
            rate, data = scipy.io.wavfile.read(str(path), mmap=False)
    except (ValueError, EOFError, OSError, KeyError, IndexError, TypeError) as e:
        text = str(e).strip() or type(e).__name__
        what = "is not a WAV file" if "not understood" in text or "RIFF" in text else "cannot be read as a WAV file"
        raise DataError(f"audio file {path} {what} ({text})") from None
    notes = [f"scipy: {w.message}" for w in caught]
    data = np.asarray(data)
    # One float64 array (N,) in the end, made in place where possible: a long clip is not copied several times.
    if data.dtype == np.uint8:
        values = data.astype(np.float64)
        values -= 128.0
    elif data.dtype.kind in "iuf":
        # Several channels: their float64 mean straight from the samples (no float64 copy of every channel).
        values = data if data.ndim == 2 else np.asarray(data, dtype=np.float64)
    else:
        raise DataError(f"audio file {path} holds samples of type {data.dtype}, which this loader does not read")
    del data
    if values.ndim == 2:
        channels = values.shape[1]
        if channels > 1:
            kind = "stereo" if channels == 2 else f"{channels}-channel"
            notes.append(f"{kind} mixed down to mono (mean of {channels} channels)")
        values = values.mean(axis=1, dtype=np.float64)
    if values.size == 0:
        raise DataError(f"audio file {path} holds no samples")
    if not np.isfinite(values).all():
        raise DataError(f"audio file {path} holds non-finite samples (NaN or inf)")
    peak = float(max(values.max(), -values.min()))
    if peak == 0.0:
        raise DataError(f"audio file {path} is silent (every sample is 0), so it cannot be normalised by its peak")
    values /= peak  # values is this function's own array (scipy's, read without mmap, or a conversion of it)
    return int(rate), values, notes


def load_audio(filename: str, data_root: str = "../../data") -> AudioSignal:
    """The signal named by ``filename`` (see the module doc), mono, float32, peak-normalised."""
    if not filename:
        raise ConfigError("filename is required (gt_bach.wav, a path to a WAV file, or synthetic)")
    if filename == SYNTHETIC_PREFIX or filename.startswith(SYNTHETIC_PREFIX + ":"):
        seconds = _parse_synthetic(filename)
        values = synthetic_signal(seconds)
        return AudioSignal(torch.from_numpy(values.astype(np.float32)), SYNTHETIC_RATE,
                           f"synthetic chirp + harmonics, {seconds:g} s")
    path = resolve_audio_path(filename, data_root)
    rate, values, notes = read_wav(path)
    return AudioSignal(torch.from_numpy(values.astype(np.float32)), rate, str(path), notes)


def time_axis(num_samples: int, time_scale: float = 100.0, dtype=torch.float32) -> Tensor:
    """(N, 1) network inputs: sample i at -T + 2 T i / (N - 1), T = ``time_scale`` (computed in float64)."""
    return torch.linspace(-time_scale, time_scale, num_samples, dtype=torch.float64).to(dtype).unsqueeze(1)


def time_step(num_samples: int, time_scale: float = 100.0) -> float:
    """Distance on the time axis between neighbouring samples: 2 T / (N - 1)."""
    return 2.0 * time_scale / max(num_samples - 1, 1)


@dataclass
class AudioData:
    """A signal, its training samples and derivative targets. N samples, n = ceil(N / factor) for training.

    samples: (N,) in [-1, 1]. coords: (N, 1) on [-time_scale, time_scale]. train_index: (n,)
    sample indices 0, factor, 2 factor, ... train_values: (n, 1). train_jacobian: (n, 1, 1) and
    train_second_differences: (n, 1, 1): targets per sample step (squared). derivative: (N,)
    full-rate first-derivative targets per sample step, for evaluation and figures. heldout: (N,)
    bool, True off the training grid.
    """

    samples: Tensor
    rate: int
    coords: Tensor
    train_index: Tensor
    train_values: Tensor
    train_jacobian: Tensor
    train_second_differences: Tensor
    derivative: Tensor
    heldout: Tensor
    factor: int
    time_scale: float
    source: str = ""
    notes: List[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return self.samples.shape[0]

    @property
    def sample_step(self) -> Tuple[float]:
        """Coordinate distance per sample step, (D,) = (1,): the unit of the derivative targets."""
        return (time_step(self.num_samples, self.time_scale),)

    @property
    def derivative_step(self) -> Tuple[float]:
        """The unit of the derivative targets (the name :class:`~sobolev_inr.data.images.ImageData` uses)."""
        return self.sample_step

    @property
    def train_coords(self) -> Tensor:
        return self.coords[self.train_index]


def prepare_audio(signal: AudioSignal, factor: int = 5, time_scale: float = 100.0) -> AudioData:
    """Splits ``signal`` into training samples (every ``factor``-th) and held-out ones; computes targets."""
    if factor < 1:
        raise ConfigError(f"factor must be >= 1, got {factor}")
    if not (time_scale > 0 and math.isfinite(time_scale)):
        raise ConfigError(f"time_scale must be a positive number, got {time_scale}")
    samples = signal.samples.float()
    n = samples.shape[0]
    if n < 2 * factor or n < 4:
        raise DataError(f"audio {signal.source or ''} has {n} samples, too few to train on every "
                        f"{factor}-th one and evaluate on the rest (need at least {max(2 * factor, 4)})")
    train_index = torch.arange(0, n, factor)
    derivative = central_difference(samples)
    second = second_difference(samples)
    heldout = torch.ones(n, dtype=torch.bool)
    heldout[train_index] = False
    return AudioData(
        samples=samples, rate=signal.rate, coords=time_axis(n, time_scale), train_index=train_index,
        train_values=samples[train_index].unsqueeze(1).contiguous(),
        train_jacobian=derivative[train_index].reshape(-1, 1, 1).contiguous(),
        train_second_differences=second[train_index].reshape(-1, 1, 1).contiguous(),
        derivative=derivative, heldout=heldout, factor=factor, time_scale=float(time_scale),
        source=signal.source, notes=list(signal.notes))


def write_wav(path: Path, samples: Tensor, rate: int) -> None:
    """Writes ``samples (N,)`` in [-1, 1] as a 16-bit PCM WAV at ``rate`` Hz (values outside are clipped)."""
    import scipy.io.wavfile

    array = samples.detach().double().cpu().clamp(-1.0, 1.0).numpy()
    scipy.io.wavfile.write(str(path), int(rate), np.round(array * 32767.0).astype(np.int16))


def describe(data: AudioData) -> Sequence[str]:
    """Log lines describing ``data``: source, length, split, time axis, loading notes."""
    lines = [f"audio: {data.source}, {data.num_samples} samples at {data.rate} Hz "
             f"({data.num_samples / data.rate:.2f} s), normalised to peak 1"]
    lines += [f"audio: {note}" for note in data.notes]
    lines.append(f"training on {len(data.train_index)} samples (1 in {data.factor}), "
                 f"{int(data.heldout.sum())} held out; time axis [-{data.time_scale:g}, {data.time_scale:g}], "
                 f"{data.sample_step[0]:.4g} per sample")
    return lines
