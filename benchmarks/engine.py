"""Segmentation engines against this CPU's measured peak and torch eager, and what each
reduced precision costs in accuracy.

Usage (from the repository root):

    .venv/bin/python benchmarks/engine.py [--bundle BUNDLE] [--batch 1,8,32] [--seconds 3]
        [--peak-seconds 2] [--calibration PATH ...] [--data DIR] [--recipe YAML]
        [--no-accuracy] [--out FILE]

The markdown report goes to stdout (and to ``--out``); progress goes to stderr. It holds:

1. the machine: CPU, cores, the instruction sets that matter, memory, library versions;
2. the peak arithmetic rate of this CPU, measured by a small C loop compiled here with
   ``cc -O2 -march=native`` and run on one thread per core: ``_mm512_fmadd_ps`` for f32
   (``_mm256_fmadd_ps`` without AVX-512), ``_mm512_dpbf16_ps`` for bf16 (AVX512_BF16,
   64 FLOPs an instruction) and ``_mm512_dpbusd_epi32`` for int8 (AVX512_VNNI, 128
   operations an instruction). Each core's rate is its best 20 ms window and the cores
   are summed. Without a C compiler the peak is estimated from ``/proc/cpuinfo`` (cores
   x GHz x FLOPs per cycle) and the report says so. ``torch.matmul`` of 2048 x 2048 at f32
   and bf16 is given beside it as the rate a tuned library reaches;
3. every engine that runs here (torch eager f32, the baseline; onnxruntime f32; openvino
   f32, bf16 and static int8) timed by :func:`fakewatch.engines.bench.bench` in
   interleaved turns: crops/s, p50/p99 ms a batch, the ratio to torch eager at the same
   batch, GFLOP/s (crops/s x FLOPs a crop) and the fraction of the peak of the engine's
   own precision (int8 operations are counted as the same FLOPs). The int8 twin is built
   in a temporary copy of the bundle by ``fakewatch engine build --precision int8``;
4. where openvino's time goes at batch 8 in bf16 (OpenVINO ``PERF_COUNT``), by layer kind;
5. the accuracy cost of bf16 and int8: the largest mask and crop-score differences
   against openvino f32 on real face crops, and the frame AUC on the recipe's held-out
   validation media (what ``fakewatch evaluate BUNDLE --held-out-of recipes/default.yaml``
   evaluates), which needs the development samples in ``../shared/data``;
6. last, the ratios: crops/s against torch eager and the fraction of peak.

Calibration media for int8: ``--calibration``, else the recipe's real faces that are not
held out (``../shared/data/real-faces``), else the demo clip fetched from PyPI.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fakewatch.engines.bench import BenchResult
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.faces import Face, FaceDetector
    from fakewatch.engines.runtimes import Engine

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_RECIPE = ROOT / "recipes" / "default.yaml"
DEMO_CACHE = ROOT / ".cache" / "demo"
BASELINE = "torch/cpu/f32"
REFERENCE = "openvino/cpu/f32"
TARGET_FRACTION = 0.70
CPU_OPTIONS = (
    ("torch", "f32"),
    ("onnxruntime", "f32"),
    ("openvino", "f32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
)
RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "avx512_fp16",
)
PRECISIONS = ("f32", "bf16", "int8")


def log(message: str) -> None:
    """Progress, kept off stdout (which carries the report)."""
    print(message, file=sys.stderr, flush=True)


# --- the machine -------------------------------------------------------------------------


def cpuinfo() -> dict[str, str]:
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
    return set(cpuinfo().get("flags", "").split())


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return None


def _core_name(info: dict[str, str], flags: set[str]) -> str:
    """AMD's core generation from the family number (the model name may not say)."""
    if info.get("vendor_id") != "AuthenticAMD":
        return ""
    family = info.get("cpu family", "")
    if family == "25":
        return ": Zen 4" if "avx512f" in flags else ": Zen 3"
    return {"23": ": Zen / Zen 2", "26": ": Zen 5"}.get(family, "")


def _version(module: str) -> str:
    try:
        imported = __import__(module)
    except ImportError:
        return "not installed"
    return str(getattr(imported, "__version__", "?"))


def machine_section() -> list[str]:
    info = cpuinfo()
    flags = cpu_flags()
    present = [f for f in RELEVANT_FLAGS if f in flags]
    absent = [f for f in RELEVANT_FLAGS if f not in flags]
    memory = _memory_gib()
    from fakewatch.engines.defaults import installed_version

    compiler = find_compiler()
    lines = [
        "## Machine",
        "",
        f"- CPU: {info.get('model name', platform.processor() or platform.machine())} "
        f"(family {info.get('cpu family', '?')}, model {info.get('model', '?')}"
        f"{_core_name(info, flags)}), "
        f"{cpu_count()} cores usable by this process (os.cpu_count() {os.cpu_count()}), "
        f"{info.get('cpu MHz', '?')} MHz reported",
        f"- instruction sets: {' '.join(present) or '-'}; absent: {' '.join(absent) or '-'}",
        f"- memory: {memory:.1f} GiB" if memory else "- memory: unknown",
        f"- load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, torch {_version('torch')}, "
        f"onnxruntime {_version('onnxruntime')}, openvino {_version('openvino')}, "
        f"fakewatch {installed_version()}",
        f"- C compiler: {_compiler_version(compiler) if compiler else 'none found'}",
    ]
    return lines


# --- peak arithmetic rate ------------------------------------------------------------------

PEAK_SOURCE = r"""
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* 16 independent accumulators (12 with AVX2's 16 registers) hide the instruction
   latency; ROUNDS x that many instructions run between two clock reads. */
#define ROUNDS 2048
#define R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define R16(X) R12(X) X(12) X(13) X(14) X(15)

typedef struct {
    int cpu;
    double seconds, window, seed;
    double best, ops, elapsed, sink;
} job_t;

static pthread_barrier_t barrier;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Runs STEP (REPEAT: 12 or 16 instructions of OPS operations each) until j->seconds
   have passed; records the operations done, the time, and the best rate over j->window. */
#define TIMED(OPS, STEP, REPEAT, COUNT)                                           \
    pin(j->cpu);                                                                  \
    pthread_barrier_wait(&barrier);                                               \
    double per_round = (double)ROUNDS * (COUNT) * (OPS);                          \
    double start = now(), mark = start, end, done = 0, since = 0;                 \
    do {                                                                          \
        for (int r = 0; r < ROUNDS; r++) { REPEAT(STEP) }                         \
        done += per_round;                                                        \
        since += per_round;                                                       \
        end = now();                                                              \
        if (end - mark >= j->window) {                                            \
            if (since / (end - mark) > j->best) j->best = since / (end - mark);   \
            since = 0;                                                            \
            mark = end;                                                           \
        }                                                                         \
    } while (end - start < j->seconds);                                           \
    j->ops = done;                                                                \
    j->elapsed = end - start;                                                     \
    if (j->best == 0) j->best = done / (end - start);

#if defined(__AVX512F__)
#define F32_ISA "avx512f:_mm512_fmadd_ps"
#define F32_OPS 32
static void *kernel_f32(void *arg) {
    job_t *j = arg;
    __m512 a = _mm512_set1_ps((float)(1.0 - 1e-7 * j->seed));
    __m512 b = _mm512_set1_ps((float)(1e-7 * j->seed));
#define D(i) __m512 c##i = _mm512_set1_ps((float)(i) * (float)j->seed);
#define S(i) c##i = _mm512_fmadd_ps(c##i, a, b);
#define A(i) sink += _mm512_reduce_add_ps(c##i);
    R16(D)
    TIMED(F32_OPS, S, R16, 16)
    float sink = 0;
    R16(A)
    j->sink = sink;
#undef D
#undef S
#undef A
    return NULL;
}
#elif defined(__AVX2__) && defined(__FMA__)
#define F32_ISA "avx2:_mm256_fmadd_ps"
#define F32_OPS 16
static void *kernel_f32(void *arg) {
    job_t *j = arg;
    __m256 a = _mm256_set1_ps((float)(1.0 - 1e-7 * j->seed));
    __m256 b = _mm256_set1_ps((float)(1e-7 * j->seed));
    float lanes[8];
#define D(i) __m256 c##i = _mm256_set1_ps((float)(i) * (float)j->seed);
#define S(i) c##i = _mm256_fmadd_ps(c##i, a, b);
#define A(i) _mm256_storeu_ps(lanes, c##i); for (int k = 0; k < 8; k++) sink += lanes[k];
    R12(D)
    TIMED(F32_OPS, S, R12, 12)
    float sink = 0;
    R12(A)
    j->sink = sink;
#undef D
#undef S
#undef A
    return NULL;
}
#endif

#if defined(__AVX512BF16__)
#define BF16_ISA "avx512_bf16:_mm512_dpbf16_ps"
#define BF16_OPS 64
static void *kernel_bf16(void *arg) {
    job_t *j = arg;
    __m512 x = _mm512_set1_ps((float)(1e-3 * j->seed));
    __m512bh a = _mm512_cvtne2ps_pbh(x, x);
#define D(i) __m512 c##i = _mm512_set1_ps((float)(i));
#define S(i) c##i = _mm512_dpbf16_ps(c##i, a, a);
#define A(i) sink += _mm512_reduce_add_ps(c##i);
    R16(D)
    TIMED(BF16_OPS, S, R16, 16)
    float sink = 0;
    R16(A)
    j->sink = sink;
#undef D
#undef S
#undef A
    return NULL;
}
#endif

#if defined(__AVX512VNNI__)
#define INT8_ISA "avx512_vnni:_mm512_dpbusd_epi32"
#define INT8_OPS 128
static void *kernel_int8(void *arg) {
    job_t *j = arg;
    __m512i a = _mm512_set1_epi8((char)(1 + (int)j->seed));
    __m512i b = _mm512_set1_epi8((char)(2 + (int)j->seed));
#define D(i) __m512i c##i = _mm512_set1_epi32(i);
#define S(i) c##i = _mm512_dpbusd_epi32(c##i, a, b);
#define A(i) sink += _mm512_reduce_add_epi32(c##i);
    R16(D)
    TIMED(INT8_OPS, S, R16, 16)
    long sink = 0;
    R16(A)
    j->sink = (double)sink;
#undef D
#undef S
#undef A
    return NULL;
}
#elif defined(__AVXVNNI__)
#define INT8_ISA "avx_vnni:_mm256_dpbusd_avx_epi32"
#define INT8_OPS 64
static void *kernel_int8(void *arg) {
    job_t *j = arg;
    __m256i a = _mm256_set1_epi8((char)(1 + (int)j->seed));
    __m256i b = _mm256_set1_epi8((char)(2 + (int)j->seed));
    int lanes[8];
#define D(i) __m256i c##i = _mm256_set1_epi32(i);
#define S(i) c##i = _mm256_dpbusd_avx_epi32(c##i, a, b);
#define A(i) _mm256_storeu_si256((__m256i *)lanes, c##i); \
             for (int k = 0; k < 8; k++) sink += lanes[k];
    R12(D)
    TIMED(INT8_OPS, S, R12, 12)
    long sink = 0;
    R12(A)
    j->sink = (double)sink;
#undef D
#undef S
#undef A
    return NULL;
}
#endif

#if defined(__x86_64__)
#define CLOCK_ISA "x86_64:dependent-add-chain"
/* one dependent 1-cycle add after another: instructions per second = cycles per second */
static void *kernel_clock(void *arg) {
    job_t *j = arg;
    unsigned long x = (unsigned long)j->seed, y = 1;
#define S(i) __asm__ volatile("add %1, %0" : "+r"(x) : "r"(y));
    TIMED(1, S, R16, 16)
    j->sink = (double)x;
#undef S
    return NULL;
}
#endif

/* one line: NAME ISA OPS_PER_INSTRUCTION BEST_GOPS SUSTAINED_GOPS THREADS */
static void run(const char *name, const char *isa, int ops, void *(*kernel)(void *),
                int threads, double seconds, double seed) {
    cpu_set_t allowed;
    int cpus[1024], n = 0;
    sched_getaffinity(0, sizeof allowed, &allowed);
    for (int c = 0; c < CPU_SETSIZE && n < 1024; c++)
        if (CPU_ISSET(c, &allowed)) cpus[n++] = c;
    pthread_t *tid = calloc(threads, sizeof *tid);
    job_t *jobs = calloc(threads, sizeof *jobs);
    pthread_barrier_init(&barrier, NULL, threads);
    double window = seconds / 5 < 0.02 ? seconds / 5 : 0.02;
    for (int t = 0; t < threads; t++) {
        jobs[t].cpu = cpus[t % (n ? n : 1)];
        jobs[t].seconds = seconds;
        jobs[t].window = window;
        jobs[t].seed = seed;
        pthread_create(&tid[t], NULL, kernel, &jobs[t]);
    }
    double best = 0, sustained = 0, sink = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        best += jobs[t].best;
        sustained += jobs[t].ops / jobs[t].elapsed;
        sink += jobs[t].sink;
    }
    pthread_barrier_destroy(&barrier);
    printf("%s %s %d %.3f %.3f %d %g\n", name, isa, ops, best / 1e9, sustained / 1e9, threads,
           sink);
    fflush(stdout);
    free(tid);
    free(jobs);
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    double seconds = atof(argv[1]);
    int threads = atoi(argv[2]);
    double seed = atof(argv[3]);
#ifdef CLOCK_ISA
    run("clock", CLOCK_ISA, 1, kernel_clock, threads, seconds / 4, seed);
#endif
#ifdef F32_ISA
    run("f32", F32_ISA, F32_OPS, kernel_f32, threads, seconds, seed);
#else
    printf("f32 none 0 0 0 %d 0\n", threads);
#endif
#ifdef BF16_ISA
    run("bf16", BF16_ISA, BF16_OPS, kernel_bf16, threads, seconds, seed);
#else
    printf("bf16 none 0 0 0 %d 0\n", threads);
#endif
#ifdef INT8_ISA
    run("int8", INT8_ISA, INT8_OPS, kernel_int8, threads, seconds, seed);
#else
    printf("int8 none 0 0 0 %d 0\n", threads);
#endif
    return 0;
}
"""


@dataclass(frozen=True)
class Peak:
    """The peak rate of one precision on all cores (GFLOP/s; int8: 10^9 operations/s)."""

    precision: str
    gflops: float
    method: str  # "measured" or "estimated"
    kernel: str
    ops_per_instruction: int = 0
    sustained_gflops: float | None = None
    cores: int = 0
    ghz: float | None = None  # clock of each core while measured (or as reported)

    @property
    def per_cycle(self) -> float | None:
        """Operations per cycle and core."""
        return self.gflops / (self.cores * self.ghz) if self.cores and self.ghz else None


def find_compiler() -> str | None:
    """``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return None


def _compiler_version(compiler: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        return out.splitlines()[0] if out else compiler
    return compiler


def measure_peak(
    seconds: float = 2.0, threads: int | None = None, compiler: str | None = None
) -> dict[str, Peak]:
    """Compile :data:`PEAK_SOURCE` with ``-O2 -march=native`` in a temporary folder and
    run it on ``threads`` (default: every usable core) pinned threads.

    Returns the precisions this compiler and CPU have a kernel for. Raises
    :class:`RuntimeError` without a compiler or when the build or run fails.
    """
    compiler = compiler or find_compiler()
    if compiler is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on the PATH")
    threads = threads or cpu_count()
    with tempfile.TemporaryDirectory(prefix="fakewatch-peak-") as tmp:
        source, binary = Path(tmp) / "peak.c", Path(tmp) / "peak"
        source.write_text(PEAK_SOURCE)
        build = subprocess.run(
            [compiler, "-O2", "-march=native", "-pthread", str(source), "-o", str(binary)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if build.returncode != 0:
            raise RuntimeError(f"{compiler} could not build the peak loop: {build.stderr[-600:]}")
        # the seed comes from the command line so that nothing can be folded at build time
        ran = subprocess.run(
            [str(binary), f"{seconds:.6f}", str(threads), "1"],
            capture_output=True,
            text=True,
            timeout=60 + 4 * seconds,
        )
    if ran.returncode != 0:
        raise RuntimeError(f"the peak loop failed ({ran.returncode}): {ran.stderr[-600:]}")
    rows = [line.split() for line in ran.stdout.splitlines()]
    clock = next((float(r[3]) / int(r[5]) for r in rows if r[0] == "clock"), None)
    peaks: dict[str, Peak] = {}
    for name, kernel, ops, best, sustained, cores, _sink in rows:
        if kernel == "none" or name == "clock":
            continue
        peaks[name] = Peak(
            name, float(best), "measured", kernel, int(ops), float(sustained), int(cores), clock
        )
    if "f32" not in peaks:
        raise RuntimeError("the compiler has no FMA kernel for this CPU (no AVX2/FMA)")
    return peaks


def estimate_peak(flags: set[str] | None = None, cores: int | None = None) -> dict[str, Peak]:
    """cores x GHz x FLOPs per cycle from ``/proc/cpuinfo``, assuming two full-width FMA
    pipes per core: an upper bound, for machines without a C compiler."""
    flags = cpu_flags() if flags is None else flags
    cores = cores or cpu_count()
    ghz = _max_ghz()
    if "avx512f" in flags:
        lanes, isa = 16, "avx512f"
    elif "avx2" in flags and "fma" in flags:
        lanes, isa = 8, "avx2+fma"
    else:
        lanes, isa = 4, "sse (mul + add)"
    per_cycle = {"f32": 2 * lanes * 2}
    if "avx512_bf16" in flags:
        per_cycle["bf16"] = 2 * per_cycle["f32"]
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        per_cycle["int8"] = 4 * per_cycle["f32"]
    return {
        name: Peak(
            name,
            cores * ghz * value,
            "estimated",
            f"{cores} cores x {ghz:.2f} GHz x {value} FLOP/cycle ({isa}, 2 FMA pipes assumed)",
            cores=cores,
            ghz=ghz,
        )
        for name, value in per_cycle.items()
    }


def _max_ghz() -> float:
    """The highest clock the kernel reports: cpufreq's maximum, else ``cpu MHz``."""
    with contextlib.suppress(OSError, ValueError):
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        return int(khz) / 1e6
    mhz = [0.0]
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz.append(float(line.split(":", 1)[1]))
    return max(mhz) / 1e3 or 2.0


def peak_flops(seconds: float) -> tuple[dict[str, Peak], str | None]:
    """The measured peaks, or the estimate and the reason the measurement failed."""
    try:
        return measure_peak(seconds), None
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        return estimate_peak(), str(error)


def library_gemm(seconds: float = 1.0, n: int = 2048) -> dict[str, float]:
    """Best GFLOP/s of ``torch.matmul`` of two n x n matrices on all threads, per dtype."""
    try:
        import torch
    except ImportError:
        return {}
    rates: dict[str, float] = {}
    for name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        torch.matmul(a, b)
        best, spent = 0.0, 0.0
        while spent < seconds:
            start = time.perf_counter()
            torch.matmul(a, b)
            elapsed = time.perf_counter() - start
            spent += elapsed
            best = max(best, 2 * n**3 / elapsed / 1e9)
        rates[name] = best
    return rates


def peak_section(
    peaks: dict[str, Peak], reason: str | None, gemm: dict[str, float], seconds: float
) -> list[str]:
    lines = ["## Peak arithmetic rate of this CPU", ""]
    if reason:
        lines += [
            f"**Not measured** ({reason}): estimated from /proc/cpuinfo as cores x GHz x "
            "FLOPs per cycle, an upper bound.",
            "",
        ]
    else:
        lines += [
            f"Measured: a C loop (`cc -O2 -march=native`) of 16 independent accumulators on "
            f"one pinned thread per core for {seconds:g} s a precision; each core's best "
            "20 ms window, summed over the cores (sustained = whole run). int8 counts "
            "operations (multiply + add = 2), as FLOP/s. GHz: each core's clock during the "
            "run, from a chain of dependent one-cycle adds.",
            "",
        ]
    lines += [
        "| precision | kernel | ops/instr | cores x GHz | FLOP/cycle/core | peak GFLOP/s "
        "| sustained GFLOP/s | torch.matmul 2048 GFLOP/s | matmul / peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in PRECISIONS:
        peak = peaks.get(name)
        if peak is None:
            lines.append(f"| {name} | no kernel for this CPU/compiler |" + " - |" * 7)
            continue
        sustained = f"{peak.sustained_gflops:.0f}" if peak.sustained_gflops else "-"
        matmul = gemm.get(name)
        lines.append(
            f"| {name} | {peak.method}: {peak.kernel} | {peak.ops_per_instruction or '-'} "
            f"| {peak.cores} x {_num(peak.ghz, '.2f')} | {_num(peak.per_cycle, '.1f')} "
            f"| {peak.gflops:.0f} | {sustained} "
            f"| {f'{matmul:.0f}' if matmul else '-'} "
            f"| {f'{matmul / peak.gflops:.0%}' if matmul else '-'} |"
        )
    return lines


# --- engines -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One engine at one batch size."""

    label: str
    precision: str
    batch: int
    crops_per_s: float
    p50_ms: float
    p99_ms: float
    calls: int
    vs_torch: float | None
    gflops: float | None
    peak_fraction: float | None


def cells(
    results: Sequence[BenchResult],
    engines: Sequence[Engine],
    peaks: dict[str, Peak],
    flops: float | None,
) -> list[Cell]:
    """Bench results with their ratio to torch eager f32 and to the matching peak."""
    precision = {e.info.label: e.info.precision for e in engines}
    base = {r.batch: r.crops_per_s for r in results if r.label == BASELINE}
    out = []
    for r in results:
        gflops = r.crops_per_s * flops / 1e9 if flops else None
        peak = peaks.get(precision[r.label])
        out.append(
            Cell(
                r.label,
                precision[r.label],
                r.batch,
                r.crops_per_s,
                r.p50_ms,
                r.p99_ms,
                len(r.latencies_s),
                r.crops_per_s / base[r.batch] if r.batch in base else None,
                gflops,
                gflops / peak.gflops if gflops and peak else None,
            )
        )
    return out


def measure_engines(
    engines: Sequence[Engine],
    batches: tuple[int, ...],
    seconds: float,
    peaks: dict[str, Peak],
    flops: float | None,
) -> list[Cell]:
    """:func:`fakewatch.engines.bench.bench` (interleaved turns) turned into cells."""
    from fakewatch.engines.bench import bench

    return cells(bench(list(engines), batches, seconds), engines, peaks, flops)


def prepare_bundle(
    source: Path, folder: Path, calibration: Sequence[Path]
) -> tuple[EngineBundle, list[str]]:
    """Copy ``source`` to ``folder`` and build there every reduced precision that has no
    passing parity check yet (``fakewatch engine build --backend openvino``)."""
    from fakewatch.cli.main import main as fakewatch
    from fakewatch.engines.bundle import EngineBundle

    shutil.copytree(source, folder)
    notes: list[str] = []
    for precision in ("bf16", "int8"):
        check = EngineBundle.load(folder).manifest.precision_check("openvino", precision)
        if check is not None and check.passed:
            notes.append(
                f"openvino/{precision}: the bundle's recorded parity check (largest score "
                f"difference {check.score_max_abs_diff:.4f} on {check.crops} crops)"
            )
            continue
        if not calibration:
            notes.append(f"openvino/{precision}: not built (no calibration media)")
            continue
        log(f"building openvino/{precision} in {folder} ...")
        started = time.perf_counter()
        out, err = io.StringIO(), io.StringIO()
        argv = ["engine", "build", str(folder), "--backend", "openvino"]
        argv += ["--precision", precision, "--calibration", *map(str, calibration)]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = fakewatch(argv)
        said = (out.getvalue() + err.getvalue()).strip().splitlines()
        notes.append(
            f"openvino/{precision}: `fakewatch engine build --precision {precision}` "
            f"(exit {status}, {time.perf_counter() - started:.0f} s): "
            + (said[-1] if said else "no output")
        )
    return EngineBundle.load(folder), notes


def open_cpu_engines(bundle: EngineBundle) -> tuple[list[Engine], list[str]]:
    """Every CPU backend/precision that opens on ``bundle``, and why the others did not."""
    from fakewatch.engines.runtimes import BackendUnavailable, open_engine

    engines, skipped = [], []
    for backend, precision in CPU_OPTIONS:
        try:
            engines.append(open_engine(bundle, backend, "cpu", precision))
        except (BackendUnavailable, ImportError) as error:
            skipped.append(f"{backend}/cpu/{precision}: {error}")
    return engines, skipped


def engine_section(
    table: Sequence[Cell],
    engines: Sequence[Engine],
    skipped: Sequence[str],
    notes: Sequence[str],
    flops: float | None,
    seconds: float,
) -> list[str]:
    lines = [
        "## Engines",
        "",
        f"`fakewatch.engines.bench.bench`: {seconds:g} s per engine and batch size, in "
        "interleaved turns; ratios are to torch eager f32 at the same batch; GFLOP/s = "
        "crops/s x "
        + (f"{flops / 1e9:.2f} GFLOP a crop" if flops else "FLOPs a crop (unknown: no torch)")
        + " (int8 counted as the same FLOPs); % peak is against the peak of the engine's "
        "own precision.",
        "",
    ]
    lines += [f"- {e.info.label}: {e.info.detail}" for e in engines]
    lines += [f"- skipped {reason}" for reason in skipped]
    lines += [f"- {note}" for note in notes]
    lines += [
        "",
        "| engine | batch | calls | crops/s | p50 ms | p99 ms | x crops/s vs torch "
        "| GFLOP/s | % of peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in table:
        lines.append(
            f"| {c.label} | {c.batch} | {c.calls} | {c.crops_per_s:.1f} | {c.p50_ms:.1f} "
            f"| {c.p99_ms:.1f} | {_num(c.vs_torch, '.2f')} | {_num(c.gflops, '.0f')} "
            f"| {_pct(c.peak_fraction)} |"
        )
    return lines


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


# --- where openvino's time goes ----------------------------------------------------------


@dataclass
class LayerKind:
    """Layers of one kind in OpenVINO's executed graph, summed."""

    kind: str
    nodes: int = 0
    seconds: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0
    primitives: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str
    primitive: str
    shape: str
    seconds: float
    flops: float
    bytes: float


ELEMENT_BYTES = {"bf16": 2, "f16": 2, "f32": 4, "i8": 1, "u8": 1, "i32": 4}


def _conv_kind(node_type: str, weights: list[int]) -> str:
    kh, kw = weights[-2], weights[-1]
    if node_type == "GroupConvolution":
        return f"depthwise conv {kh}x{kw}" if weights[2] == 1 else f"group conv {kh}x{kw}"
    return f"conv {kh}x{kw}"


def _static(shape: Any, batch: int) -> list[int] | None:
    dims = []
    for i, dim in enumerate(shape):
        if dim.is_static:
            dims.append(dim.get_length())
        elif i == 0:
            dims.append(batch)
        else:
            return None
    return dims


def profile_openvino(
    bundle: EngineBundle, precision: str = "bf16", batch: int = 8, runs: int = 5
) -> tuple[list[LayerKind], list[Layer], float]:
    """OpenVINO's per-layer times (``PERF_COUNT``) at ``batch``, grouped by layer kind,
    with the FLOPs and approximate bytes of each convolution from its shapes."""
    import openvino as ov

    from fakewatch.engines.bench import sample_crops

    graph = bundle.path("onnx_int8" if precision == "int8" else "onnx")
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "PERF_COUNT": "YES",
    }
    compiled = ov.Core().compile_model(str(graph), "CPU", config)
    request = compiled.create_infer_request()
    crops = sample_crops(bundle.spec.input_size, batch)
    request.infer({0: crops})
    times: dict[str, float] = {}
    types: dict[str, tuple[str, str]] = {}
    wall = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        request.infer({0: crops})
        wall += time.perf_counter() - start
        for info in request.get_profiling_info():
            times[info.node_name] = times.get(info.node_name, 0.0) + info.real_time.total_seconds()
            types[info.node_name] = (info.node_type, info.exec_type)
    kinds: dict[str, LayerKind] = {}
    layers: list[Layer] = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        name = op.get_friendly_name()
        if name not in times:
            continue
        node_type, primitive = types[name]
        seconds = times[name] / runs
        kind, flops, moved, shape_text = node_type, 0.0, 0.0, ""
        out = _static(op.get_output_partial_shape(0), batch) if op.get_output_size() else None
        if node_type in ("Convolution", "GroupConvolution") and op.get_input_size() >= 2:
            data = _static(op.input(0).get_partial_shape(), batch)
            weights = _static(op.input(1).get_partial_shape(), batch)
            if data and weights and out:
                kind = _conv_kind(node_type, weights)
                per_output = math.prod(weights[-3:]) if node_type == "Convolution" else None
                if per_output is None:  # GroupConvolution: (G, Cout/G, Cin/G, kh, kw)
                    per_output = math.prod(weights[2:])
                flops = 2.0 * math.prod(out) * per_output
                element = ELEMENT_BYTES.get(precision, 4)
                moved = element * (math.prod(data) + math.prod(out) + math.prod(weights))
                shape_text = f"{data[1]}->{out[1]} ch at {out[2]}x{out[3]}"
        group = kinds.setdefault(kind, LayerKind(kind))
        group.nodes += 1
        group.seconds += seconds
        group.flops += flops
        group.bytes += moved
        group.primitives.add(primitive)
        layers.append(Layer(name, kind, primitive, shape_text, seconds, flops, moved))
    ordered = sorted(kinds.values(), key=lambda k: k.seconds, reverse=True)
    return ordered, sorted(layers, key=lambda x: x.seconds, reverse=True), wall / runs


def breakdown_section(
    kinds: Sequence[LayerKind],
    layers: Sequence[Layer],
    wall_s: float,
    precision: str,
    batch: int,
    peak: Peak | None,
) -> list[str]:
    total_time = sum(k.seconds for k in kinds) or 1.0
    total_flops = sum(k.flops for k in kinds) or 1.0
    lines = [
        f"## Where openvino/{precision} spends its time (batch {batch}, PERF_COUNT)",
        "",
        f"Layer times summed over OpenVINO's executed graph: {total_time * 1000:.1f} ms a "
        f"batch (wall {wall_s * 1000:.1f} ms with profiling on). FLOPs and bytes (inputs + "
        "outputs + weights, once each: a lower bound on traffic) from each convolution's "
        "shapes. Per-layer times are OpenVINO's own timers, so a large layer can come out "
        "a few percent above the loop's peak.",
        "",
        "| layer kind | nodes | time share | FLOP share | GFLOP/s in these layers "
        "| % of peak | FLOP/byte | primitives |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in kinds[:8]:
        rate = k.flops / k.seconds / 1e9 if k.seconds and k.flops else None
        intensity = k.flops / k.bytes if k.bytes else None
        lines.append(
            f"| {k.kind} | {k.nodes} | {k.seconds / total_time:.1%} | "
            f"{k.flops / total_flops:.1%} | {_num(rate, '.0f')} "
            f"| {_pct(rate / peak.gflops if rate and peak else None)} "
            f"| {_num(intensity, '.0f')} | {', '.join(sorted(k.primitives))} |"
        )
    lines += [
        "",
        "Slowest single layers:",
        "",
        "| layer | kind | shape | time share | GFLOP/s |",
        "|---|---|---|---|---|",
    ]
    for layer in layers[:6]:
        rate = layer.flops / layer.seconds / 1e9 if layer.seconds and layer.flops else None
        lines.append(
            f"| {layer.name[:48]} | {layer.kind} | {layer.shape or '-'} "
            f"| {layer.seconds / total_time:.1%} | {_num(rate, '.0f')} |"
        )
    return lines


def why_section(
    table: Sequence[Cell],
    layers: Sequence[Layer] | None,
    profiled: str,
    peaks: dict[str, Peak],
    gemm: dict[str, float],
) -> list[str]:
    """The short explanation, every figure in it from this run."""
    best = max(
        (c for c in table if c.peak_fraction is not None),
        key=lambda c: c.peak_fraction or 0.0,
        default=None,
    )
    lines = ["## How far from peak, and why", ""]
    if best is None:
        return [*lines, "No engine figure could be set against a peak."]
    met = "met" if (best.peak_fraction or 0) >= TARGET_FRACTION else "not met"
    text = (
        f"The target of {TARGET_FRACTION:.0%} of peak is **{met}**: the best engine, "
        f"{best.label} at batch {best.batch}, reaches {_pct(best.peak_fraction)} of the "
        f"{best.precision} peak"
    )
    single = [c.peak_fraction for c in table if c.batch == 1 and c.peak_fraction is not None]
    if single and best.batch != 1 and max(single) < (best.peak_fraction or 0) - 0.05:
        text += (
            f" (at batch 1 at most {max(single):.0%}: each layer's work is small, so thread "
            "hand-offs and thin layers weigh more)"
        )
    text += ". "
    shares = [
        f"{gemm[p] / peaks[p].gflops:.0%} of the {p} peak"
        for p in ("f32", "bf16")
        if gemm.get(p) and p in peaks
    ]
    if shares:
        text += "For scale, torch.matmul of 2048 x 2048 reaches " + " and ".join(shares) + ". "
    peak = peaks.get(profiled)
    if layers and peak is not None:
        total_time = sum(x.seconds for x in layers) or 1.0
        total_flops = sum(x.flops for x in layers) or 1.0
        slow = [
            x for x in layers if x.seconds > 0 and x.flops / x.seconds < 0.25 * peak.gflops * 1e9
        ]
        slow_time = sum(x.seconds for x in slow)
        slow_flops = sum(x.flops for x in slow)
        fast_time = max(total_time - slow_time, 1e-12)
        groups: dict[str, list[Layer]] = {}
        for layer in slow:
            groups.setdefault(layer.kind, []).append(layer)
        named = sorted(groups.items(), key=lambda g: -sum(x.seconds for x in g[1]))
        parts = []
        for kind, members in named[:6]:
            share = sum(x.seconds for x in members) / total_time
            if share < 0.005:
                continue
            shapes = ", ".join(x.shape for x in members if x.shape and len(members) <= 3)
            parts.append(f"{kind} x{len(members)}{f' ({shapes})' if shapes else ''} {share:.0%}")
        others = (total_flops - slow_flops) / fast_time / 1e9 / peak.gflops
        without = total_flops / fast_time / 1e9 / peak.gflops
        text += (
            f"In openvino/{profiled}'s profile the layers that run below a quarter of the "
            f"peak take {slow_time / total_time:.0%} of the time for "
            f"{slow_flops / total_flops:.0%} of the FLOPs ({'; '.join(parts)}), while the "
            f"others run at {others:.0%} of peak; were the slow layers free, the engine "
            f"would reach {without:.0%}. "
        )
        reasons = []
        kinds = {x.kind for x in slow}
        if any(k.startswith("depthwise") for k in kinds):
            depthwise = [x for x in layers if x.kind.startswith("depthwise")]
            dense = [x for x in layers if x.kind == "conv 3x3"]
            reasons.append(
                "depthwise convolutions do 9 multiply-adds per element they read, so memory "
                "traffic rather than arithmetic sets their pace" + _intensity(depthwise, dense)
            )
        thin = [x.shape for x in slow if _thin(x.shape)]
        if thin:
            reasons.append(
                f"convolutions with 4 channels or fewer on one side ({', '.join(thin)}: the "
                "stem's RGB input or the one-channel mask head) leave most vector lanes empty"
            )
        if any(x.flops == 0 for x in slow):
            reasons.append(
                "upsampling, concatenation, conversions and layout reorders move data and "
                "do no FLOPs at all"
            )
        if reasons:
            text += "The reasons: " + "; ".join(reasons) + "."
    return [*lines, text]


def _intensity(depthwise: Sequence[Layer], dense: Sequence[Layer]) -> str:
    """`` (N FLOP/byte here, M for the dense 3x3 convolutions)``."""

    def ratio(group: Sequence[Layer]) -> float | None:
        moved = sum(x.bytes for x in group)
        return sum(x.flops for x in group) / moved if moved else None

    low, high = ratio(depthwise), ratio(dense)
    if low is None:
        return ""
    return f" ({low:.0f} FLOP/byte here" + (
        f", {high:.0f} for the dense 3x3 convolutions)" if high else ")"
    )


def _thin(shape: str) -> bool:
    """``3->32 ch at ...`` or ``16->1 ch at ...``: at most 4 channels on one side."""
    if "->" not in shape:
        return False
    left, _, rest = shape.partition("->")
    right = rest.split(" ", 1)[0]
    return min(int(left), int(right)) <= 4


# --- accuracy ----------------------------------------------------------------------------


class MemoFaceDetector:
    """A face detector that remembers its answer for each frame it has seen, so that the
    same media evaluated with several engines is detected once."""

    def __init__(self, detector: FaceDetector) -> None:
        self._detector = detector
        self._seen: dict[bytes, list[Face]] = {}

    def detect(self, frame: np.ndarray) -> list[Face]:
        key = hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16)
        key.update(str(frame.shape).encode())
        digest = key.digest()
        if digest not in self._seen:
            self._seen[digest] = self._detector.detect(frame)
        return self._seen[digest]


@dataclass(frozen=True)
class Media:
    """What the accuracy part runs on, and where it came from."""

    calibration: list[Path]
    calibration_note: str
    parity: list[Path]
    parity_note: str
    holdout: Any | None  # training.evaluate.EvaluationData
    holdout_note: str


def find_media(data: Path, recipe: Path, calibration: Sequence[Path], want_holdout: bool) -> Media:
    """Calibration media (never held out), real crops for parity (held out when there is
    the development data) and the recipe's held-out validation media."""
    if not data.is_dir():
        reason = f"the development samples are not at {data}"
        if calibration:
            chosen, source = list(calibration), "--calibration"
        else:
            try:
                chosen = [_demo_clip()]
                source = f"the demo clip {chosen[0]} (from PyPI)"
            except ValueError as error:
                chosen, source = [], f"none ({error})"
        return Media(
            chosen,
            source,
            chosen,
            f"{source}: the int8 ranges were calibrated on these crops",
            None,
            f"skipped: {reason}; it needs the recipe's held-out media",
        )
    try:
        from fakewatch.training.config import load_config
        from fakewatch.training.evaluate import read_evaluation_data, split_data
    except ImportError as error:  # the train extra is missing
        return Media(
            list(calibration),
            "--calibration" if calibration else "none",
            list(calibration),
            "--calibration",
            None,
            f"skipped: {error} (install fakewatch[train])",
        )
    config = load_config(recipe)
    everything = read_evaluation_data([source.path for source in config.data])
    kept = split_data(config, "validation")
    held = {r.path.resolve() for r in kept.index.reals}
    held |= {p.real.resolve() for p in kept.index.pairs}
    real_faces = (data / "real-faces").resolve()
    if calibration:
        chosen, source = list(calibration), "--calibration"
    else:
        reals = [r.path.resolve() for r in everything.index.reals]
        chosen = [p for p in reals if p.is_relative_to(real_faces) and p not in held]
        source = f"{len(chosen)} files of {real_faces} that {recipe.name} does not hold out"
    parity = sorted(held)
    note = f"{len(parity)} real media the recipe holds out (not used for calibration)"
    frames = f"{len(kept.index.reals)} real media and {len(kept.index.pairs)} real/fake pairs"
    return Media(
        chosen,
        source,
        parity,
        note,
        kept if want_holdout else None,
        f"{recipe.name}'s validation split: sources {config.split.validation_sources}, "
        f"identities {config.split.validation_identities}; {frames}"
        if want_holdout
        else "skipped (--no-accuracy)",
    )


def _demo_clip() -> Path:
    from fakewatch.training.demo_clip import fetch_demo_clip

    return Path(fetch_demo_clip(DEMO_CACHE))


@dataclass(frozen=True)
class Parity:
    label: str
    crops: int
    max_mask_diff: float
    mean_mask_diff: float
    max_score_diff: float


def parity(engines: Sequence[Engine], crops: np.ndarray) -> list[Parity]:
    """Every engine against openvino f32 (``engines.precision.compare``) on ``crops``."""
    from fakewatch.engines.precision import compare

    reference = next(e for e in engines if e.info.label == REFERENCE)
    out = []
    for engine in engines:
        if engine is reference:
            continue
        check = compare(reference, engine, crops, tolerance=1.0, calibration="benchmark")
        out.append(
            Parity(
                engine.info.label,
                check.crops,
                check.max_abs_diff,
                check.mean_abs_diff,
                check.score_max_abs_diff,
            )
        )
    return out


@dataclass(frozen=True)
class HoldoutScore:
    label: str
    n_real: int
    n_fake: int
    frame_auc: float | None
    video_auc: float | None
    scores: np.ndarray
    threshold: float
    seconds: float


def holdout_scores(
    engines: Sequence[Engine], data: Any, detector: FaceDetector, max_frames: int = 150
) -> list[HoldoutScore]:
    """Frame and video AUC of each engine on the held-out data, with the evaluator
    ``fakewatch evaluate`` uses (the same frames, detector, crops and scoring)."""
    from fakewatch.engines.aggregate import DEFAULT_WINDOW
    from fakewatch.training.evaluate import Evaluator
    from fakewatch.training.metrics import binary_metrics, video_metrics

    out = []
    for engine in engines:
        own = engine.bundle.manifest.thresholds.get("suspect")
        threshold = own.value if own is not None else 0.5
        log(f"evaluating {engine.info.label} on the held-out media ...")
        start = time.perf_counter()
        result = Evaluator(engine, detector, DEFAULT_WINDOW, max_frames).run(
            data, engine.info.label, progress=False
        )
        frame = binary_metrics(np.asarray(result.frame_labels), result.frame_scores, threshold)
        video = video_metrics(result.videos, DEFAULT_WINDOW, threshold) if result.videos else None
        out.append(
            HoldoutScore(
                engine.info.label,
                frame.n_real,
                frame.n_fake,
                frame.auc,
                None if video is None else video.auc,
                np.asarray(result.frame_scores, dtype=float),
                threshold,
                time.perf_counter() - start,
            )
        )
    return out


def accuracy_section(
    media: Media,
    parity_rows: Sequence[Parity] | None,
    parity_error: str | None,
    holdout: Sequence[HoldoutScore] | None,
) -> list[str]:
    lines = [
        "## Accuracy cost of reduced precision",
        "",
        f"Calibration media for int8: {media.calibration_note}.",
        "",
        f"### Against openvino f32 on real face crops ({media.parity_note})",
        "",
    ]
    if parity_rows is None:
        lines.append(f"Skipped: {parity_error}")
    else:
        lines += [
            "| engine | crops | largest mask difference | mean mask difference "
            "| largest crop-score difference |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {p.label} | {p.crops} | {p.max_mask_diff:.4f} | {p.mean_mask_diff:.5f} "
            f"| {p.max_score_diff:.4f} |"
            for p in parity_rows
        ]
    lines += ["", "### Held-out validation (frame AUC)", ""]
    if holdout is None:
        lines.append(f"Skipped: {media.holdout_note}.")
        return lines
    lines += [
        f"{media.holdout_note}. Scored as `fakewatch evaluate` scores them; faces are "
        "detected once and reused by the later engines, so only the first row's time "
        "includes detection. Decisions flipped: frames on the other side of the bundle's "
        "`suspect` threshold than with f32.",
        "",
    ]
    reference = next((h for h in holdout if h.label == REFERENCE), None)
    lines += [
        "| engine | frames real/fake | frame AUC | change vs f32 | video AUC | change vs f32 "
        "| largest frame-score change | decisions flipped at suspect | evaluation s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for h in holdout:
        same = reference is not None and len(reference.scores) == len(h.scores)
        ref_auc = reference.frame_auc if reference else None
        ref_video = reference.video_auc if reference else None
        score_change = (
            f"{np.abs(h.scores - reference.scores).max():.4f}"
            if same and reference is not None and len(h.scores)
            else "-"
        )
        flips = (
            str(int(((h.scores >= h.threshold) != (reference.scores >= h.threshold)).sum()))
            if same and reference is not None
            else "-"
        )
        lines.append(
            f"| {h.label} | {h.n_real}/{h.n_fake} | {_num(h.frame_auc, '.4f')} "
            f"| {_delta(h.frame_auc, ref_auc)} | {_num(h.video_auc, '.3f')} "
            f"| {_delta(h.video_auc, ref_video)} | {score_change} | {flips} "
            f"| {h.seconds:.0f} |"
        )
    return lines


def _delta(value: float | None, reference: float | None) -> str:
    return "-" if value is None or reference is None else f"{value - reference:+.4f}"


# --- ratios ------------------------------------------------------------------------------


def ratios_section(table: Sequence[Cell], batches: tuple[int, ...]) -> list[str]:
    labels = list(dict.fromkeys(c.label for c in table))
    by = {(c.label, c.batch): c for c in table}
    head = "| engine | " + " | ".join(f"batch {b}" for b in batches) + " |"
    rule = "|---|" + "---|" * len(batches)

    def row(label: str, value: Callable[[Cell], str]) -> str:
        return (
            f"| {label} | "
            + " | ".join(value(by[label, b]) if (label, b) in by else "-" for b in batches)
            + " |"
        )

    lines = ["## Ratios", "", "crops/s against torch eager f32 at the same batch:", ""]
    lines += [head, rule, *(row(label, lambda c: _num(c.vs_torch, ".2f")) for label in labels)]
    lines += ["", "Fraction of the measured peak of the engine's precision:", ""]
    lines += [head, rule, *(row(label, lambda c: _pct(c.peak_fraction)) for label in labels)]
    best = max(table, key=lambda c: c.peak_fraction or 0.0, default=None)
    if best is not None and best.peak_fraction is not None:
        verdict = "met" if best.peak_fraction >= TARGET_FRACTION else "NOT met"
        lines += [
            "",
            f"Target {TARGET_FRACTION:.0%} of peak: {verdict} (best {best.label} at batch "
            f"{best.batch}: {best.peak_fraction:.1%}; {best.vs_torch or 0:.2f}x torch eager).",
        ]
    return lines


# --- the command -------------------------------------------------------------------------


def _batches(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="default: the shipped one")
    parser.add_argument("--batch", type=_batches, default=(1, 8, 32), help="e.g. 1,8,32")
    parser.add_argument("--seconds", type=float, default=3.0, help="per engine and batch")
    parser.add_argument("--peak-seconds", type=float, default=2.0, help="per precision")
    parser.add_argument("--gemm-seconds", type=float, default=1.0, help="per dtype")
    parser.add_argument("--calibration", type=Path, nargs="+", default=[], help="int8 media")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="development samples")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="held-out split")
    parser.add_argument("--max-frames", type=int, default=150, help="held out: per video")
    parser.add_argument("--profile-batch", type=int, default=8, help="PERF_COUNT batch")
    parser.add_argument(
        "--no-accuracy", action="store_true", help="skip the held-out AUC evaluation"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> Iterator[list[str]]:
    """The report, one section at a time (so that it can be printed as it is made)."""
    from fakewatch.engines.bench import flops_per_crop
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.defaults import default_bundle_path

    source = args.bundle or default_bundle_path()
    original = EngineBundle.load(source)
    yield [
        f"# Engine benchmark: {original.manifest.name} ({original.spec.architecture}/"
        f"{original.spec.encoder}, {original.spec.input_size} px)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; bundle {source}. Timings on a machine shared "
        "with other work are noisy; compare ratios taken in the same run.",
    ]
    yield machine_section()

    log(f"measuring the peak ({args.peak_seconds:g} s a precision) ...")
    peaks, reason = peak_flops(args.peak_seconds)
    log("torch.matmul ceiling ...")
    gemm = library_gemm(args.gemm_seconds)
    yield peak_section(peaks, reason, gemm, args.peak_seconds)

    media = find_media(args.data, args.recipe, args.calibration, not args.no_accuracy)
    with tempfile.TemporaryDirectory(prefix="fakewatch-engine-bench-") as tmp:
        bundle, notes = prepare_bundle(source, Path(tmp) / "bundle", media.calibration)
        engines, skipped = open_cpu_engines(bundle)
        flops = flops_per_crop(bundle.spec)
        log(f"timing {len(engines)} engines at batches {args.batch}, {args.seconds:g} s each ...")
        table = measure_engines(engines, args.batch, args.seconds, peaks, flops)
        yield engine_section(table, engines, skipped, notes, flops, args.seconds)

        layers = None
        labels = {e.info.label for e in engines}
        precision = "bf16" if "openvino/cpu/bf16" in labels else "f32"
        if f"openvino/cpu/{precision}" in labels:
            log(f"profiling openvino/{precision} at batch {args.profile_batch} ...")
            kinds, layers, wall = profile_openvino(bundle, precision, args.profile_batch)
            yield breakdown_section(
                kinds, layers, wall, precision, args.profile_batch, peaks.get(precision)
            )
        yield why_section(table, layers, precision, peaks, gemm)

        openvino = [e for e in engines if e.info.backend == "openvino"]
        parity_rows, parity_error = None, None
        if REFERENCE in labels:
            from fakewatch.engines.faces import default_face_detector
            from fakewatch.engines.precision import collect_crops

            detector = MemoFaceDetector(default_face_detector())
            try:
                log("parity on real face crops ...")
                crops = collect_crops(media.parity, bundle, detector)
                parity_rows = parity(engines, crops)
            except ValueError as error:
                parity_error = str(error)
            holdout = None
            if media.holdout is not None:
                holdout = holdout_scores(openvino, media.holdout, detector, args.max_frames)
        else:
            parity_error = f"{REFERENCE} did not open"
            holdout = None
        yield accuracy_section(media, parity_rows, parity_error, holdout)
        for engine in engines:
            engine.close()
    yield ratios_section(table, args.batch)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    report: list[str] = []
    for section in run(args):
        text = "\n".join(section) + "\n"
        print(text, flush=True)
        report.append(text)
    log(f"done in {time.perf_counter() - started:.0f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(report))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
