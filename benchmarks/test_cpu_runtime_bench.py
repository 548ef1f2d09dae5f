"""CPU runtime launch cost: 64x64x64 tiled SGEMM (16 blocks x 256 threads, 16x16 tiles) from Python.

Run: python -m pytest benchmarks/test_cpu_runtime_bench.py --benchmark-only
Target on the 2-core CI machine: under 3 ms per launch (median).
"""
from pathlib import Path

import numpy as np
import pytest

from gpuconv.runtime import cpu_rt

MATMUL = Path(__file__).resolve().parents[1] / "tests" / "cpu_runtime" / "kernels" / "matmul.cu"


@pytest.fixture(scope="module")
def matmul():
    return cpu_rt.RawModule(code=MATMUL.read_text()).get_function("matmul_tiled")


@pytest.mark.parametrize("n", [64, 128])
def test_cpu_runtime_tiled_matmul(benchmark, matmul, n):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(np.float32)
    B = rng.standard_normal((n, n)).astype(np.float32)
    C = np.zeros((n, n), np.float32)
    args = (A, B, C, np.int32(n), np.int32(n), np.int32(n))
    grid = (n // 16, n // 16)
    benchmark(matmul, grid, (16, 16), args)
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-4, atol=1e-3)
    benchmark.extra_info.update(blocks=grid[0] * grid[1], threads_per_block=256)
