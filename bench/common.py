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
