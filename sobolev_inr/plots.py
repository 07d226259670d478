"""Figures every task writes into its run directory (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from .runs import read_scalars  # noqa: E402


def _as_display(image: Tensor) -> Tuple[np.ndarray, Optional[str]]:
    """(C, H, W) in [0, 1] -> array for imshow and the colormap (gray for one channel)."""
    array = image.detach().float().clamp(0, 1).cpu().numpy()
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.transpose(array, (1, 2, 0)), None


def save_image_panels(path: Path, panels: Sequence[Tuple[str, Tensor]], suptitle: str = "") -> None:
    """Side-by-side images, each (C, H, W) in [0, 1], with titles."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    for ax, (title, image) in zip(axes[0], panels):
        array, cmap = _as_display(image)
        ax.imshow(array, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_heatmaps(path: Path, panels: Sequence[Tuple[str, Tensor]], suptitle: str = "", shared_scale: bool = True,
                  cmap: str = "magma", label: str = "") -> None:
    """Side-by-side (H, W) maps with colour bars; ``shared_scale`` uses one range for all panels."""
    arrays = [p.detach().float().cpu().numpy() for _, p in panels]
    vmax = max(float(np.percentile(a, 99.5)) for a in arrays) if shared_scale else None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (title, _), array in zip(axes[0], panels, arrays):
        im = ax.imshow(array, cmap=cmap, vmin=0, vmax=vmax if shared_scale else float(np.percentile(array, 99.5)),
                       interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_training_curves(scalars_csv: Path, path: Path, title: str = "") -> None:
    """Loss terms (log scale) and PSNR (train and held-out) against the step, from scalars.csv."""
    series = read_scalars(scalars_csv)
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4))
    for name, label in (("train/value", "value"), ("train/derivative", "derivative"), ("train/total", "total")):
        if name in series:
            steps, values = series[name]
            ax_loss.plot(steps, values, label=label, linewidth=1)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    for name, label in (("train/psnr", "train"), ("eval/psnr_heldout", "held-out"), ("eval/psnr_luma_heldout", "held-out luma")):
        if name in series:
            steps, values = series[name]
            ax_psnr.plot(steps, values, label=label, marker="o" if name.startswith("eval") else None,
                         markersize=3, linewidth=1)
    ax_psnr.set_xlabel("step")
    ax_psnr.set_ylabel("PSNR (dB)")
    ax_psnr.legend()
    ax_psnr.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
