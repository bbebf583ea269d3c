"""Peak memory of this process: its resident set on the host (Linux ``/proc``), and the CUDA
allocator's statistics on a GPU.

On the host the peak resident set is the kernel's high-water mark (``VmHWM``), which writing 5 to
``/proc/self/clear_refs`` resets to the current resident set, so the peak of one stretch of work
can be read without a fresh process. Where that file cannot be written the high-water mark covers
the whole process (``peak_reset`` says which).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
from pathlib import Path

import torch

__all__ = [
    "MMAP_THRESHOLD",
    "PeakMeter",
    "device_allocated",
    "device_peaks",
    "mmap_large_allocations",
    "peak_resident",
    "reset_device_peak",
    "reset_peak_resident",
    "resident",
]

MMAP_THRESHOLD = 64 * 1024
"""with ``mmap_large_allocations``: allocations from this size up get mappings of their own"""
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_STATUS = Path("/proc/self/status")


def _status_bytes(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except OSError:
        return None
    return None


def resident() -> int:
    """The resident set now (on a host without /proc: the peak so far)."""
    now = _status_bytes("VmRSS")
    return now if now is not None else peak_resident()


def peak_resident() -> int:
    """The resident set's high-water mark since the process started or the last reset."""
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_resident() -> bool:
    """Reset the high-water mark to the resident set now; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def mmap_large_allocations() -> bool:
    """Have glibc serve allocations of ``MMAP_THRESHOLD`` bytes and more with mappings of their own,
    unmapped when freed; False where that is not glibc.

    By default glibc raises that threshold as large blocks are freed (up to 32 MiB), after which
    tensors come from its heaps and freed ones stay resident for reuse: the resident set then
    exceeds the memory the live tensors need (one APPS update's peak: 18.70 GiB against 17.41
    with this setting). With a fixed threshold the resident set follows the live tensors, as the
    CUDA allocator's ``max_memory_allocated`` does on a GPU; the price is a page fault for every
    page of every new tensor (the same update: 669 s against 406 s).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def reset_device_peak(device: torch.device) -> None:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)


def device_allocated(device: torch.device) -> int:
    torch.cuda.synchronize(device)
    return int(torch.cuda.memory_allocated(device))


def device_peaks(device: torch.device) -> tuple[int, int]:
    """(peak allocated, peak reserved) bytes since the last ``reset_device_peak``."""
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device)), int(torch.cuda.max_memory_reserved(device))


class PeakMeter:
    """The memory an update is measured in: the CUDA allocator's on a GPU, else the resident set."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.on_gpu = device.type == "cuda"
        self.reserved = 0
        """GPU: the largest peak reserved by the allocator over every ``take_peak``"""
        self.resettable = True
        """False where the host's high-water mark could not be reset (it then covers the process)"""

    def in_use(self) -> int:
        return device_allocated(self.device) if self.on_gpu else resident()

    def take_peak(self) -> int:
        """The peak since the last call (or the process's start), then reset."""
        if self.on_gpu:
            allocated, reserved = device_peaks(self.device)
            self.reserved = max(self.reserved, reserved)
            reset_device_peak(self.device)
            return allocated
        peak = peak_resident()
        self.resettable = reset_peak_resident() and self.resettable
        return peak
