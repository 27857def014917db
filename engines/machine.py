"""The machine a measurement ran on: CPU model, usable cores, instruction sets, memory.

Every speed figure fakewatch prints (``fakewatch engine bench``, the benchmark scripts)
names the machine it came from with :func:`describe_machine`.
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path


def cpu_info() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def cpu_flags() -> set[str]:
    """The instruction-set flags the kernel reports (``avx512f``, ``avx512_bf16``, ...)."""
    return set(cpu_info().get("flags", "").split())


KIND_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimddp",
    "bf16",
    "i8mm",
    "sve",
)
"""The instruction sets that decide which kernels a runtime runs at f32, bf16 and int8:
AVX2/AVX-512 widths, VNNI dot products (int8), AVX-512 BF16 and AMX (bf16, int8), and
their Arm counterparts (dot product, BF16, int8 matrix multiply, SVE)."""


def cpu_kind(flags: set[str] | None = None) -> list[str]:
    """The CPU's kind for reduced-precision parity: its architecture and which of
    :data:`KIND_FLAGS` it has, sorted.

    Two CPUs of the same kind run the same runtime kernels, so their bf16 and int8
    results match; a check measured on one kind is not trusted on another (a CPU without
    AVX-512 BF16, for one, runs "bf16" through other kernels, or in f32).
    """
    present = cpu_flags() if flags is None else flags
    if flags is None:
        # Arm kernels list their features under "Features", not "flags"
        present |= set(cpu_info().get("Features", "").split())
    return [platform.machine() or "unknown", *sorted(f for f in KIND_FLAGS if f in present)]


def usable_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def memory_gib() -> float | None:
    """Total memory in GiB, from ``/proc/meminfo`` (None where it cannot be read)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return None


def cpu_name() -> str:
    """The CPU's model name (the architecture where the kernel does not say)."""
    return cpu_info().get("model name") or platform.processor() or platform.machine()


def describe_machine(load: bool = False) -> str:
    """One line: CPU model, usable cores, memory and Python; with ``load`` the load
    average too (a machine shared with other work shows it there)."""
    memory = memory_gib()
    text = f"{cpu_name()}, {usable_cores()} CPUs"
    if memory is not None:
        text += f", {memory:.1f} GiB memory"
    text += f", Python {platform.python_version()}"
    if load:
        text += ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return text
