"""``benchmarks/engine.py``: the measured peak and one engine cell give sane figures.

The peak loop is compiled and run for a few milliseconds (without a C compiler the
estimate from /proc/cpuinfo is what the benchmark falls back to, and what is checked);
one cell times torch eager and openvino f32 at batch 1 for 0.2 s each.
"""

from __future__ import annotations

import math

import pytest

from fakewatch.engines.bench import flops_per_crop
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.defaults import default_bundle_path
from fakewatch.engines.runtimes import open_engine
from tests.support.scripts import benchmark_script

engine_benchmark = benchmark_script("engine")
BASELINE = engine_benchmark.BASELINE
Peak = engine_benchmark.Peak
estimate_peak = engine_benchmark.estimate_peak
find_compiler = engine_benchmark.find_compiler
measure_engines = engine_benchmark.measure_engines
peak_flops = engine_benchmark.peak_flops
peak_section = engine_benchmark.peak_section
ratios_section = engine_benchmark.ratios_section


def _sane(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def peaks() -> dict[str, Peak]:
    measured, reason = peak_flops(0.05)
    if find_compiler() is None:
        assert reason is not None
        assert all(p.method == "estimated" for p in measured.values())
    return measured


def test_the_peak_is_measured_here_or_estimated_without_a_compiler(
    peaks: dict[str, Peak],
) -> None:
    assert "f32" in peaks
    for peak in peaks.values():
        assert _sane(peak.gflops), peak
        assert peak.cores >= 1
        assert _sane(peak.ghz), peak
        assert _sane(peak.per_cycle), peak
        if peak.method == "measured":
            assert peak.ops_per_instruction in (16, 32, 64, 128)
            assert _sane(peak.sustained_gflops)
    assert "| f32 |" in "\n".join(peak_section(peaks, None, {}, 0.05))


def test_the_estimate_from_cpuinfo_is_positive() -> None:
    estimate = estimate_peak()
    assert _sane(estimate["f32"].gflops)
    assert estimate["f32"].method == "estimated"
    # with no AVX at all it still gives a figure (4-wide mul + add)
    assert _sane(estimate_peak(flags=set(), cores=1)["f32"].gflops)


def test_one_engine_cell_against_torch_eager(peaks: dict[str, Peak]) -> None:
    pytest.importorskip("torch")
    bundle = EngineBundle.load(default_bundle_path())
    engines = [open_engine(bundle, backend, "cpu", "f32") for backend in ("torch", "openvino")]
    flops = flops_per_crop(bundle.spec)
    assert _sane(flops)
    table = measure_engines(engines, (1,), 0.2, peaks, flops)
    assert [c.label for c in table] == [BASELINE, "openvino/cpu/f32"]
    for cell in table:
        assert cell.batch == 1 and cell.calls >= 6  # 3 turns of at least 2 calls
        for value in (cell.crops_per_s, cell.p50_ms, cell.p99_ms, cell.gflops):
            assert _sane(value), cell
        assert _sane(cell.vs_torch) and _sane(cell.peak_fraction), cell
        assert cell.peak_fraction is not None and cell.peak_fraction < 1.5, cell
    assert table[0].vs_torch == pytest.approx(1.0)
    ratios = "\n".join(ratios_section(table, (1,)))
    assert ratios.startswith("## Ratios") and "openvino/cpu/f32" in ratios
