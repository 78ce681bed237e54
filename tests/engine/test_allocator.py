"""The training process keeps the memory a step frees (glibc only)."""

import ctypes
import sys

import pytest

from rvos.engine.allocator import retain_freed_memory


def glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not glibc(), reason="glibc's mallopt only")
def test_glibc_takes_the_thresholds():
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True  # again, as a second run in the same process does


def test_elsewhere_nothing_is_set(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert retain_freed_memory() is False
