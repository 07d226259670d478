"""Figures every task writes into its run directory.

Figures are matplotlib ``Figure`` objects drawn and saved without pyplot, so nothing here selects a
backend or touches pyplot's global state (a user's interactive session is left as it was), and no
display is needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..training.runs import read_scalars


def figure(rows: int, cols: int, figsize: Tuple[float, float], **kwargs):
    """A pyplot-free figure and its (rows, cols) axes array (``squeeze=False``)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=False, **kwargs)


def _as_display(image: Tensor) -> Tuple[np.ndarray, Optional[str]]:
    """(C, H, W) in [0, 1] -> array for imshow and the colormap (gray for one channel)."""
    array = image.detach().float().clamp(0, 1).cpu().numpy()
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.transpose(array, (1, 2, 0)), None


def save_image_panels(path: Path, panels: Sequence[Tuple[str, Tensor]], suptitle: str = "") -> None:
    """Side-by-side images, each (C, H, W) in [0, 1], with titles."""
    save_image_grid(path, [panels], suptitle)


def save_image_grid(path: Path, rows: Sequence[Sequence[Tuple[str, Tensor]]], suptitle: str = "") -> None:
    """Rows of images, each (C, H, W) in [0, 1] (one channel in gray), with titles."""
    cols = max(len(row) for row in rows)
    fig, axes = figure(len(rows), cols, (4.2 * cols, 4.4 * len(rows)))
    for ax in axes.flat:
        ax.axis("off")
    for row_axes, row in zip(axes, rows):
        for ax, (title, image) in zip(row_axes, row):
            array, cmap = _as_display(image)
            ax.imshow(array, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (4.4 * len(rows))) if suptitle else None)  # room for the suptitle
    fig.savefig(path, dpi=110)


def save_heatmaps(path: Path, panels: Sequence[Tuple[str, Tensor]], suptitle: str = "", shared_scale: bool = True,
                  cmap: str = "magma", label: str = "", signed: bool = False) -> None:
    """Side-by-side (H, W) maps with colour bars; ``shared_scale`` uses one range for all panels.
    The range is [0, the 99.5th percentile], or with ``signed`` (maps of both signs, e.g. a Laplacian)
    symmetric about 0: +-(the 99.5th percentile of |map|)."""
    arrays = [p.detach().float().cpu().numpy() for _, p in panels]
    top = [float(np.percentile(np.abs(a) if signed else a, 99.5)) for a in arrays]
    fig, axes = figure(1, len(panels), (4.6 * len(panels), 4.2))
    for ax, (title, _), array, own_top in zip(axes[0], panels, arrays, top):
        vmax = max(top) if shared_scale else own_top
        im = ax.imshow(array, cmap=cmap, vmin=-vmax if signed else 0, vmax=vmax, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def save_view_grid(path: Path, rows: Sequence[Sequence[Tuple[str, Tensor]]], suptitle: str = "",
                   shared_scale: bool = False, cmap: str = "magma") -> None:
    """A grid of panels, one row per view: images (H, W, 3) in [0, 1] as they are, maps (H, W) with a
    colour map (one colour scale for all maps when ``shared_scale``, else each its own, 0 to the
    99.5th percentile)."""
    maps = [p.detach().float().cpu().numpy() for row in rows for _, p in row if p.dim() == 2]
    vmax = max(float(np.percentile(m, 99.5)) for m in maps) if shared_scale and maps else None
    first = rows[0][0][1]
    aspect = first.shape[1] / first.shape[0]
    cols = max(len(row) for row in rows)
    fig, axes = figure(len(rows), cols, (3.2 * aspect * cols + 0.4, 3.2 * len(rows) + 0.6))
    for ax in axes.flat:
        ax.axis("off")
    for r, row in enumerate(rows):
        for c, (title, panel) in enumerate(row):
            array = panel.detach().float().cpu().numpy()
            ax = axes[r, c]
            if array.ndim == 3:
                ax.imshow(np.clip(array, 0, 1), interpolation="nearest")
            else:
                top = vmax if vmax is not None else float(np.percentile(array, 99.5))
                im = ax.imshow(array, cmap=cmap, vmin=0, vmax=top or None, interpolation="nearest")
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            ax.set_title(title, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0, 1, 0.96) if suptitle else None)
    fig.savefig(path, dpi=100)


TRAINING_CURVE_PSNRS = (("train/psnr", "train"), ("eval/psnr_heldout", "held-out"),
                        ("eval/psnr_luma_heldout", "held-out luma"), ("eval/psnr_heldout_frames", "frames never trained on"))
"""The PSNR series curves.png draws, when the run has them."""


def save_training_curves(scalars_csv: Path, path: Path, title: str = "") -> None:
    """Loss terms (log scale) and PSNR (train and held-out) against the step, from scalars.csv; a task that
    logs no PSNR (shapes) gets its evaluation metrics in the second panel instead."""
    series = read_scalars(scalars_csv)
    fig, axes = figure(1, 2, (11, 4))
    ax_loss, ax_eval = axes[0]
    known = ("train/value", "train/derivative")
    terms = [n for n in known if n in series] + sorted(
        n for n in series if n.startswith("train/") and n not in known + ("train/psnr", "train/total"))
    for name in terms + (["train/total"] if "train/total" in series else []):
        steps, values = series[name]
        ax_loss.plot(steps, values, label=name[len("train/"):], linewidth=1)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    if terms or "train/total" in series:
        ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    shown = [(n, label) for n, label in TRAINING_CURVE_PSNRS if n in series]
    ylabel = "PSNR (dB)"
    if not shown:
        shown = [(n, n[len("eval/"):]) for n in sorted(series) if n.startswith("eval/")]
        ylabel = "evaluation"
        if shown and all(min(series[n][1]) > 0 for n, _ in shown):
            ax_eval.set_yscale("log")
    for name, label in shown:
        steps, values = series[name]
        ax_eval.plot(steps, values, label=label, marker="o" if name.startswith("eval") else None,
                     markersize=3, linewidth=1)
    ax_eval.set_xlabel("step")
    ax_eval.set_ylabel(ylabel)
    if shown:
        ax_eval.legend()
    ax_eval.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def save_frame_metrics(path: Path, metrics: Mapping[str, Sequence[float]], trained_frames: Sequence[int],
                       title: str = "") -> None:
    """A clip's quality frame by frame: one panel per metric (``{"PSNR (dB)": [...], "SSIM": [...]}``), the
    frames on the training grid filled, the others (never trained on) hollow."""
    trained = set(int(k) for k in trained_frames)
    fig, axes = figure(1, len(metrics), (5.2 * len(metrics), 3.6))
    for ax, (label, values) in zip(axes[0], metrics.items()):
        frames = np.arange(len(values))
        ax.plot(frames, values, color="0.6", linewidth=1)
        on = np.array([k in trained for k in frames])
        ax.plot(frames[on], np.asarray(values)[on], "o", color="C0", markersize=4, label="trained frames")
        ax.plot(frames[~on], np.asarray(values)[~on], "o", mfc="none", color="C3", markersize=5,
                label="frames never trained on")
        ax.set_xlabel("frame")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


ENVELOPE_BINS = 4000
"""A waveform longer than twice this many samples is drawn as the min and max of this many bins (a figure
7 inches wide at 100 dpi shows no more; plotting every sample of a 5-minute clip held gigabytes)."""
SPECTROGRAM_FRAMES = 4000
"""At most this many spectrogram frames: a longer clip's hop grows (the window stays), for the same reason."""


def _envelope(array: np.ndarray, bins: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(min, max, centre sample index) of ``bins`` consecutive, nearly equal parts of ``array (N,)``."""
    edges = np.linspace(0, len(array), bins + 1).astype(np.int64)
    low, high = np.minimum.reduceat(array, edges[:-1]), np.maximum.reduceat(array, edges[:-1])
    return low, high, (edges[:-1] + edges[1:] - 1) / 2.0


def save_waveforms(path: Path, panels: Sequence[Tuple[str, Tensor]], rate: int, zoom: Optional[Tuple[int, int]] = None,
                   marks: Optional[Tensor] = None, suptitle: str = "") -> None:
    """Signals ``(N,)`` stacked in rows against time in seconds: the whole clip (as its min-max envelope when
    it is longer than 2 :data:`ENVELOPE_BINS` samples), and beside it the samples ``zoom = (start, stop)``.
    ``marks``: sample indices drawn as dots on the first row's zoom (e.g. the training samples). The first
    rows share their y range; the last row (an error) gets its own."""
    arrays = [p.detach().cpu().numpy() for _, p in panels]
    n = len(arrays[0])
    t = np.arange(n) / rate
    cols = 2 if zoom else 1
    fig, axes = figure(len(panels), cols, (7.0 * cols, 2.0 * len(panels) + 0.6), sharex="col")
    lim = max(float(np.abs(a).max()) for a in arrays[:-1]) * 1.05 if len(arrays) > 1 else None
    for row, ((title, _), array) in enumerate(zip(panels, arrays)):
        last = row == len(panels) - 1 and len(panels) > 1
        ylim = (float(np.abs(array).max()) * 1.05 or 1.0) if last else lim
        for col in range(cols):
            ax = axes[row, col]
            colour = "C3" if last else "C0"
            if col == 0 and n > 2 * ENVELOPE_BINS:  # a long clip: its min-max envelope, what the pixels can show
                low, high, centres = _envelope(array, ENVELOPE_BINS)
                ax.fill_between(centres / rate, low, high, color=colour, linewidth=0.4)
            else:
                part = slice(*zoom) if col == 1 else slice(None)
                ax.plot(t[part], array[part], linewidth=0.4 if col == 0 else 0.9, color=colour)
            if col == 1 and row == 0 and marks is not None:
                idx = marks.cpu().numpy()
                idx = idx[(idx >= zoom[0]) & (idx < zoom[1])]
                ax.plot(t[idx], array[idx], "o", markersize=2.5, color="C1", label="training samples")
                ax.legend(loc="upper right", fontsize=7)
            if ylim:
                ax.set_ylim(-ylim, ylim)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(title, fontsize=9)
                if zoom:
                    ax.axvspan(t[zoom[0]], t[min(zoom[1], n) - 1], color="C2", alpha=0.3)
            if row == len(panels) - 1:
                ax.set_xlabel("time (s)")
    if zoom:
        axes[0, 1].set_title(f"zoom: samples {zoom[0]}-{zoom[1]}", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save_spectrograms(path: Path, panels: Sequence[Tuple[str, Tensor]], rate: int, n_fft: int = 1024,
                      dynamic_range_db: float = 100.0, suptitle: str = "") -> None:
    """Magnitude spectrograms (dB, Hann window of ``n_fft``, hop n_fft / 4, or longer for a clip of more than
    :data:`SPECTROGRAM_FRAMES` frames) of signals ``(N,)``, one per row, on one colour scale: the loudest bin of
    all panels down ``dynamic_range_db``."""
    n_fft = max(16, min(n_fft, min(len(p) for _, p in panels)))
    hop = max(n_fft // 4, -(-len(panels[0][1]) // SPECTROGRAM_FRAMES))
    window = torch.hann_window(n_fft, dtype=torch.float64)
    specs = []
    for _, signal in panels:
        x = signal.detach().double().cpu()
        mag = torch.stft(x, n_fft, hop_length=hop, window=window, center=True, return_complex=True).abs()
        specs.append((20.0 * torch.log10(mag + 1e-12)).numpy())
    vmax = max(float(s.max()) for s in specs)
    duration = len(panels[0][1]) / rate
    fig, axes = figure(len(panels), 1, (10, 2.4 * len(panels) + 0.6), sharex=True)
    for ax, (title, _), spec in zip(axes[:, 0], panels, specs):
        im = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=vmax - dynamic_range_db, vmax=vmax,
                       extent=(0.0, duration, 0.0, rate / 2000.0), interpolation="nearest")
        ax.set_ylabel("frequency (kHz)")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="dB")
    axes[-1, 0].set_xlabel("time (s)")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _mesh_bounds(arrays: Sequence[np.ndarray]) -> Tuple[np.ndarray, float]:
    """(centre (3,), half-width) of the cube holding every array of points (N, 3); the unit cube if none."""
    arrays = [a for a in arrays if a is not None and len(a)]
    if not arrays:
        return np.zeros(3), 1.0
    low = np.min([a.min(axis=0) for a in arrays], axis=0)
    high = np.max([a.max(axis=0) for a in arrays], axis=0)
    return (low + high) / 2, max(float((high - low).max()) / 2, 1e-9)


def _draw_mesh(ax, mesh: Optional[Tuple[np.ndarray, np.ndarray]], elev: float, azim: float, centre: np.ndarray,
               half: float) -> None:
    """A triangle mesh on a 3-D axes, shaded by |cos| to a light at the camera; "no surface" for None."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    if mesh is None:
        ax.text2D(0.5, 0.5, "no surface", ha="center", transform=ax.transAxes)
    else:
        verts, faces = mesh
        tri = verts[faces]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        e, a = np.radians(elev), np.radians(azim)
        light = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
        shade = 0.25 + 0.75 * np.abs(normal @ light)
        colour = np.clip(shade[:, None] * np.array([[0.55, 0.7, 0.95]]), 0, 1)
        ax.add_collection3d(Poly3DCollection(tri, facecolors=colour, edgecolors="none", linewidths=0))
    _set_view(ax, elev, azim, centre, half)


def _set_view(ax, elev: float, azim: float, centre: np.ndarray, half: float) -> None:
    """A 3-D axes seen from (elevation, azimuth) in degrees, on the cube of half-width ``half`` about ``centre``."""
    ax.view_init(elev=elev, azim=azim)
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
        setter(c - half, c + half)
    ax.set_box_aspect((1, 1, 1))
    ax.tick_params(labelsize=6)


def save_mesh_views(path: Path, mesh: Optional[Tuple[np.ndarray, np.ndarray]],
                    points: Optional[np.ndarray] = None,
                    views: Sequence[Tuple[float, float]] = ((25, -60), (25, 30), (85, -90)), suptitle: str = "") -> None:
    """A triangle mesh (vertices (V, 3), faces (F, 3)) shaded from a few views ((elevation, azimuth) in degrees,
    lit from the camera), after a panel of ``points`` (N, 3) (the input) when given; axes (x, y, z) in the
    mesh's units. ``mesh`` None: the panels say there is no surface."""
    cols = len(views) + (points is not None)
    fig = Figure(figsize=(4.0 * cols, 4.4))
    centre, half = _mesh_bounds([mesh[0] if mesh is not None else None, points])
    if points is not None:
        ax = fig.add_subplot(1, cols, 1, projection="3d")
        ax.scatter(points[:, 0], points[:, 1], points[:, 2], s=0.5, c=points[:, 2], cmap="viridis", depthshade=False)
        _set_view(ax, *views[0], centre, half)
        ax.set_title("input points", fontsize=9)
    for i, (elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, cols, i + 1 + (points is not None), projection="3d")
        _draw_mesh(ax, mesh, elev, azim, centre, half)
        ax.set_title(f"elev {elev:g}, azim {azim:g}", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save_mesh_grid(path: Path, rows: Sequence[Sequence[Tuple[str, Optional[Tuple[np.ndarray, np.ndarray]]]]],
                   view: Tuple[float, float] = (25, -60)) -> None:
    """Rows of titled meshes (vertices (V, 3), faces (F, 3), or None), each from one ``view``, on the cube of
    [-1, 1]^3 (the SDF task's normalised coordinates): several runs side by side."""
    cols = max(len(row) for row in rows)
    fig = Figure(figsize=(3.6 * cols, 3.7 * len(rows)))
    for r, row in enumerate(rows):
        for c, (title, mesh) in enumerate(row):
            ax = fig.add_subplot(len(rows), cols, r * cols + c + 1, projection="3d")
            _draw_mesh(ax, mesh, *view, np.zeros(3), 1.0)
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _draw_sdf_slice(fig, ax, phi: np.ndarray, true: Optional[np.ndarray], scale: float, title: str,
                    labels: Tuple[str, str]) -> None:
    """Phi (S, S) over [-1, 1]^2 in a diverging map clipped at +-``scale``, its zero level in black, the true
    one (when given) dashed in green, with a colour bar."""
    image = ax.imshow(phi, origin="lower", extent=(-1, 1, -1, 1), cmap="RdBu_r", vmin=-scale, vmax=scale)
    if phi.min() < 0 < phi.max():
        ax.contour(phi, levels=[0.0], colors="k", linewidths=1.2, extent=(-1, 1, -1, 1), origin="lower")
    if true is not None and true.min() < 0 < true.max():
        ax.contour(true, levels=[0.0], colors="limegreen", linewidths=1.0, linestyles="--", extent=(-1, 1, -1, 1),
                   origin="lower")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def _slice_scale(phis: Sequence[np.ndarray]) -> float:
    """The colour range of signed-distance maps: the 99th percentile of |Phi| over all of them."""
    return max(float(np.percentile(np.abs(np.concatenate([p.reshape(-1) for p in phis])), 99)), 1e-6)


def save_sdf_slices(path: Path, slices, suptitle: str = "") -> None:
    """Signed distances on planes over [-1, 1]^2: ``slices`` maps a name (the fixed axis: "x") to (Phi (S, S),
    the true SDF (S, S) or None), rows along the plane's second free axis, columns along its first.
    A diverging map symmetric about 0 (clipped at the 99th percentile of |Phi|), Phi's zero level in black,
    the true one dashed in green."""
    names = list(slices)
    fig, axes = figure(1, len(names), (4.4 * len(names), 4.0))
    scale = _slice_scale([v[0] for v in slices.values()])
    for ax, name in zip(axes[0], names):
        phi, true = slices[name]
        free = [k for k in "xyz" if k != name]
        title = f"{name} = 0" + (" (dashed: true surface)" if true is not None else "")
        _draw_sdf_slice(fig, ax, phi, true, scale, title, (free[0], free[1]))
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save_sdf_slice_grid(path: Path, rows: Sequence[Sequence[Tuple[str, np.ndarray, Optional[np.ndarray]]]],
                        labels: Tuple[str, str] = ("x", "y")) -> None:
    """Rows of titled signed-distance slices (Phi (S, S), the true SDF or None) over [-1, 1]^2 (as
    :func:`save_sdf_slices`), each row on its own colour range: several runs side by side."""
    cols = max(len(row) for row in rows)
    fig, axes = figure(len(rows), cols, (4.2 * cols, 3.9 * len(rows)))
    for r, row in enumerate(rows):
        scale = _slice_scale([phi for _, phi, _ in row])
        for c, (title, phi, true) in enumerate(row):
            _draw_sdf_slice(fig, axes[r, c], phi, true, scale, title, labels)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
