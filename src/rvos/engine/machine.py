"""What a run or a benchmark ran on, in words: times and step counts only compare on the same processor."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def processor_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's model name (Linux's ``cpuinfo``, else :func:`platform.processor`), or the architecture when
    neither names it."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return f"{value.strip()} ({platform.machine()})"
    return platform.processor() or platform.machine()


def describe_machine(device: torch.device | str = "cpu") -> str:
    """The device (a GPU's name, or the processor's with its core count) and torch's version."""
    device = torch.device(device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{processor_name()}, {os.cpu_count()} cores")
    return f"{where}, torch {torch.__version__}"
