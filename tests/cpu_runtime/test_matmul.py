"""Tiled shared-memory matmul: correctness, real barriers, both context switches, worker counts."""
import numpy as np
import pytest

from conftest import module

TILE = 16


def run(kern, M, N, K, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((M, K)).astype(np.float32)
    B = rng.standard_normal((K, N)).astype(np.float32)
    C = np.full((M, N), np.nan, np.float32)  # poisoned: an unwritten element fails
    grid = ((N + TILE - 1) // TILE, (M + TILE - 1) // TILE)
    kern(grid, (TILE, TILE), (A, B, C, np.int32(M), np.int32(N), np.int32(K)))
    return C, A.astype(np.float64) @ B.astype(np.float64)


@pytest.fixture(scope="module")
def matmul():
    return module("matmul.cu").get_function("matmul_tiled")


@pytest.mark.parametrize("M,N,K", [(64, 64, 64), (32, 48, 16), (33, 47, 29), (1, 5, 3), (17, 16, 100)])
def test_matmul_matches_numpy(matmul, M, N, K):
    C, ref = run(matmul, M, N, K)
    np.testing.assert_allclose(C, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flag", ["-DNO_BARRIER1", "-DNO_BARRIER2"])
def test_removing_a_barrier_gives_wrong_results(flag):
    kern = module("matmul.cu", options=(flag,)).get_function("matmul_tiled")
    C, ref = run(kern, 64, 64, 64)
    assert not np.allclose(C, ref, rtol=1e-3, atol=1e-3)


def test_ucontext_fallback_passes_matmul():
    kern = module("matmul.cu", options=("-DGPUCONV_CPU_UCONTEXT",)).get_function("matmul_tiled")
    for M, N, K in [(64, 64, 64), (33, 47, 29)]:
        C, ref = run(kern, M, N, K)
        np.testing.assert_allclose(C, ref, rtol=1e-4, atol=1e-4)


def test_nvrtc_options_are_filtered(matmul):
    kern = module("matmul.cu", options=("-arch=sm_90", "-std=c++17", "--use_fast_math", "-DUNUSED=1",
                                        "--define-macro=ALSO_UNUSED")).get_function("matmul_tiled")
    C, ref = run(kern, 20, 20, 20)
    np.testing.assert_allclose(C, ref, rtol=1e-4, atol=1e-4)


def test_results_identical_across_worker_counts(matmul, monkeypatch):
    results = []
    for workers in ("1", "2", "3"):
        monkeypatch.setenv("GPUCONV_CPU_WORKERS", workers)
        results.append(run(matmul, 70, 90, 50, seed=3)[0])
    assert all(np.array_equal(results[0], r) for r in results[1:])
