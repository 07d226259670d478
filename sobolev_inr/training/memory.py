"""Memory of a training step: measured (peak resident memory on Linux, CUDA's allocator) and bounded
(how many samples one forward/backward block may hold within a budget).

Full-batch training of a large signal is cut into row blocks whose gradients are accumulated (exact for
a loss that is a mean over samples, see :meth:`~sobolev_inr.tasks.regression.SobolevRegression.loss_blocks`);
the block size comes from a budget in GB through :func:`bytes_per_sample`, which measures what autograd
keeps for the backward pass of a small probe block.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import torch

GB = 2 ** 30
HEADROOM = 1.5
"""What a block holds at its peak over what autograd saves for its backward pass (the gradients of the
activations being formed, the forward's temporaries); measured on CPU with the image task's SIREN."""


def saved_bytes(compute: Callable[[], Any]) -> int:
    """Runs ``compute()`` and returns the bytes of the tensors autograd saved for its backward pass (each
    storage once); the graph is dropped on return."""
    storages = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[(s.device, s.data_ptr())] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = compute()
    del result
    return sum(storages.values())


def bytes_per_sample(loss_of_rows: Callable[[int], Any], rows: int = 512) -> float:
    """Bytes a training step keeps per sample for backward: the slope of :func:`saved_bytes` of
    ``loss_of_rows(n)`` (the loss of the first ``n`` samples) between ``rows / 2`` and ``rows`` samples,
    so that the parameters (saved once, whatever the block) do not count."""
    half = max(rows // 2, 1)
    small, large = saved_bytes(lambda: loss_of_rows(half)), saved_bytes(lambda: loss_of_rows(rows))
    return max(large - small, 1) / max(rows - half, 1)


def rows_within(budget_gb: float, per_sample: float, headroom: float = HEADROOM) -> int:
    """The most samples a block may hold so that ``headroom`` times their saved bytes stay within
    ``budget_gb`` (at least 1)."""
    return max(1, int(budget_gb * GB / (per_sample * headroom)))


def reset_peak_rss() -> bool:
    """Resets this process's peak resident set size (Linux: ``/proc/self/clear_refs``); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_mb() -> Optional[float]:
    """This process's resident memory now, MB (None off Linux)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def peak_rss_mb() -> float:
    """This process's peak resident memory since start or the last :func:`reset_peak_rss`, MB."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
    return peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)


def reset_peak_memory(device: torch.device) -> None:
    """Starts a new peak-memory measurement: CUDA's allocator statistics, or the process's peak RSS."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_rss()


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since :func:`reset_peak_memory`: CUDA's most allocated, or the process's peak RSS, MB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return peak_rss_mb()


def memory_kind(device: torch.device) -> str:
    return "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss"
