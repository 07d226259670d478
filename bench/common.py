"""What the benchmark scripts share: the record of the machine a result came from and its printed line."""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Dict, List, Optional

import torch


def machine_record(device: torch.device, argv: Optional[List[str]] = None) -> Dict[str, object]:
    """Device, CPU, thread count, versions, the command line and the time, for a results JSON."""
    args = sys.argv[1:] if argv is None else argv
    return {
        "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "command": " ".join(["python", sys.argv[0]] + [str(a) for a in args]),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def machine_line(device: torch.device) -> str:
    """The one line each benchmark prints first: device, torch, threads and CPUs."""
    return f"device {device}; torch {torch.__version__}; {torch.get_num_threads()} threads on {os.cpu_count()} CPUs"


def loglog_slope(xs: List[float], ys: List[float]) -> Optional[float]:
    """Least-squares slope of log y against log x (1 = linear, 0 = flat); None with fewer than two usable
    points (positive x and y, at least two distinct x)."""
    import math

    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len({lx for lx, _ in pairs}) < 2:
        return None
    mx, my = sum(lx for lx, _ in pairs) / len(pairs), sum(ly for _, ly in pairs) / len(pairs)
    return sum((lx - mx) * (ly - my) for lx, ly in pairs) / sum((lx - mx) ** 2 for lx, _ in pairs)


def text_table(headers: List[str], rows: List[List[str]]) -> str:
    """An aligned plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def markdown_table(headers: List[str], rows: List[List[str]]) -> str:
    """A markdown table of string cells."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
