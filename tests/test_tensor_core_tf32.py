"""The TF32 tensor-core building blocks of cuda/mma.cuh (``to_tf32``, ``mma_m16n8k8_tf32``,
``mma_tf32_gemm_mainloop``) without a tensor core.

On the CPU runtime (and sm_75) they are bit math and warp-shuffle emulations that keep the PTX
ISA's per-lane fragment layouts ("Matrix Fragments for mma.m16n8k8", .tf32). These tests

* check ``to_tf32`` bit for bit against a NumPy rounding written in float64 arithmetic (not
  the kernel's bit trick): ties away from zero, denormals, rounding up to infinity, NaN, Inf;
* check the unit mma against NumPy, with a test kernel that builds each lane's fragments
  straight from the documented formulas: exact on small integers, within fp32 summation error
  on random tf32 values; every A and B element reaches exactly the D elements it should;
  operands that were not rounded are truncated (what the emulation documents);
* show that the lane mapping matters (``-DGPUCONV_TEST_SWAP_LANES=1``, see test_tensor_core.py);
* run a GEMM through ``mma_tf32_gemm_mainloop`` with simple loaders (several tiles along every
  side, partial ones included; B copied by plain stores or by cp.async) against NumPy, and prove
  that its two barriers matter;
* compile the unit kernels with NVRTC for sm_75 (emulation) and sm_80 / sm_90 (the PTX
  instructions): no warnings, no spills, and the intended instructions in the PTX and SASS.

Tests marked ``gpu`` run the same unit kernels on a real GPU where CuPy sees one.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv.runtime import cuda_available
from gpuconv.sources import source_text
from helpers import RUNTIMES, rng_for
from test_tensor_core import SWAP, _arrays, build_units, small_integers

# ----------------------------------------------------------------------------------------
# unit kernels

GEMM_BM, GEMM_BN, GEMM_BK, GEMM_WM, GEMM_WN = 64, 32, 16, 32, 16
GEMM_THREADS = (GEMM_BM // GEMM_WM) * (GEMM_BN // GEMM_WN) * 32

TF32_UNIT_KERNELS = r"""
// out[i] = to_tf32(x[i]), the register bits.
__global__ void to_tf32_unit(const float* x, unsigned* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        out[i] = to_tf32(x[i]);
}

// One warp per block, problem blockIdx.x: D = A (16x8, row-major) * B (8x8, row-major:
// B[k][n]) + C (16x8). A and B arrive as register bits, so a test can pass words that did not
// come from to_tf32. Each lane builds its fragments element by element from the PTX ISA
// formulas (groupID = lane >> 2, threadID_in_group = lane % 4), not from any helper of mma.cuh.
__global__ void mma_tf32_unit(const unsigned* A, const unsigned* B, const float* C, float* D) {
    A += blockIdx.x * 128; B += blockIdx.x * 64; C += blockIdx.x * 128; D += blockIdx.x * 128;
    const int lane = fragment_lane();
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    unsigned a[4], b[2];
    float d[4];
    for (int i = 0; i < 4; ++i) {  // a0..a3
        const int row = (i == 0 || i == 2) ? groupID : groupID + 8;
        const int col = i < 2 ? threadID_in_group : threadID_in_group + 4;
        a[i] = A[row * 8 + col];
    }
    for (int i = 0; i < 2; ++i) {  // b0, b1
        const int row = i == 0 ? threadID_in_group : threadID_in_group + 4;
        const int col = groupID;
        b[i] = B[row * 8 + col];
    }
    for (int i = 0; i < 4; ++i) {  // c0..c3
        const int row = i < 2 ? groupID : groupID + 8;
        const int col = (threadID_in_group * 2) + (i & 0x1);
        d[i] = C[row * 8 + col];
    }
    mma_m16n8k8_tf32(d, a, b);
    for (int i = 0; i < 4; ++i) {
        const int row = i < 2 ? groupID : groupID + 8;
        const int col = (threadID_in_group * 2) + (i & 0x1);
        D[row * 8 + col] = d[i];
    }
}

// D (M x N, row-major) = A (M x K, row-major) * B^T, B stored as N x K rows (the GEMM's
// columns are reduction-contiguous, as the mainloop keeps them in shared memory), through
// mma_tf32_gemm_mainloop; one block per BM x BN tile.
// GEMM_BM, GEMM_BN, GEMM_BK, GEMM_WM, GEMM_WN, GEMM_THREADS: defined from Python (below).
#define GEMM_PITCH (GEMM_BK + MMA_TF32_SMEM_SKEW)

// A: each thread gathers WORDS elements of the BM x BK tile, rounded with to_tf32 (zeros
// outside the matrix), and stores them at a_smem[row][kk].
struct GemmALoader {
    enum { WORDS = GEMM_BM * GEMM_BK / GEMM_THREADS };
    const float* A;
    int M, K, m0, k0;
    __device__ void load(unsigned (&regs)[WORDS]) {
        for (int e = 0; e < WORDS; ++e) {
            const int idx = (int)threadIdx.x + e * GEMM_THREADS;
            const int row = m0 + idx / GEMM_BK, k = k0 + idx % GEMM_BK;
            regs[e] = row < M && k < K ? to_tf32(A[(long long)row * K + k]) : 0u;
        }
        k0 += GEMM_BK;
    }
    __device__ void store(const unsigned (&regs)[WORDS], float* tile) {
        for (int e = 0; e < WORDS; ++e) {
            const int idx = (int)threadIdx.x + e * GEMM_THREADS;
            tile[(idx / GEMM_BK) * GEMM_PITCH + idx % GEMM_BK] = __uint_as_float(regs[e]);
        }
    }
};

// B, straight into the free stage: ASYNC = false rounds each element with to_tf32 and stores
// it; ASYNC = true copies rows in 16-byte cp.async chunks as they are (K % 4 == 0; words used
// as stored, so the test passes values that are tf32 already).
template <bool ASYNC>
struct GemmBLoader {
    const float* B;
    int N, K, n0, k0;
    __device__ void load(float* tile) {
        if (ASYNC) {
            for (int idx = threadIdx.x; idx < GEMM_BN * GEMM_BK / 4; idx += GEMM_THREADS) {
                const int col = idx / (GEMM_BK / 4), kk = (idx % (GEMM_BK / 4)) * 4;
                const bool inside = n0 + col < N && k0 + kk < K;
                const float* src = inside ? B + (long long)(n0 + col) * K + k0 + kk : B;
                cp_async_16(tile + col * GEMM_PITCH + kk, src, inside ? 16 : 0);
            }
        } else {
            for (int idx = threadIdx.x; idx < GEMM_BN * GEMM_BK; idx += GEMM_THREADS) {
                const int col = idx / GEMM_BK, kk = idx % GEMM_BK;
                const bool inside = n0 + col < N && k0 + kk < K;
                tile[col * GEMM_PITCH + kk] =
                    inside ? __uint_as_float(to_tf32(B[(long long)(n0 + col) * K + k0 + kk]))
                           : 0.0f;
            }
        }
        k0 += GEMM_BK;
    }
};

template <bool ASYNC_B>
__global__ void __launch_bounds__(GEMM_THREADS)
tf32_gemm_unit(const float* A, const float* B, float* D, int M, int N, int K) {
    __shared__ __align__(16) float a_smem[2][GEMM_BM][GEMM_PITCH];
    __shared__ __align__(16) float b_smem[2][GEMM_BN][GEMM_PITCH];
    const int m0 = (int)blockIdx.x * GEMM_BM, n0 = (int)blockIdx.y * GEMM_BN;
    GemmALoader a{A, M, K, m0, 0};
    GemmBLoader<ASYNC_B> b{B, N, K, n0, 0};
    float acc[GEMM_WM / 16][GEMM_WN / 8][4] = {};
    mma_tf32_gemm_mainloop<GEMM_BM, GEMM_BN, GEMM_BK, GEMM_WM, GEMM_WN>(
        a, b, (K + GEMM_BK - 1) / GEMM_BK, acc, a_smem, b_smem);
    // acc[i][j][e] is D[row][col] of fragment (i, j) in the C/D layout.
    const int warp = (int)threadIdx.x / 32, lane = fragment_lane();
    const int warp_m = (warp % (GEMM_BM / GEMM_WM)) * GEMM_WM;
    const int warp_n = (warp / (GEMM_BM / GEMM_WM)) * GEMM_WN;
    for (int i = 0; i < GEMM_WM / 16; ++i)
        for (int j = 0; j < GEMM_WN / 8; ++j)
            for (int e = 0; e < 4; ++e) {
                const int row = m0 + warp_m + i * 16 + (lane >> 2) + (e >= 2 ? 8 : 0);
                const int col = n0 + warp_n + j * 8 + 2 * (lane & 3) + (e & 1);
                if (row < M && col < N) D[(long long)row * N + col] = acc[i][j][e];
            }
}
"""
GEMM_DEFINES = "".join(f"#define GEMM_{name} {value}\n" for name, value in (
    ("BM", GEMM_BM), ("BN", GEMM_BN), ("BK", GEMM_BK), ("WM", GEMM_WM), ("WN", GEMM_WN),
    ("THREADS", GEMM_THREADS)))

TF32_UNIT_NAMES = ("to_tf32_unit", "mma_tf32_unit", "tf32_gemm_unit<false>",
                   "tf32_gemm_unit<true>")


def tf32_unit_source() -> str:
    return "\n".join([source_text("common.cuh"), source_text("mma.cuh"), GEMM_DEFINES,
                      TF32_UNIT_KERNELS])


def tf32_module(runtime: str = "emulator", options: tuple = ()):
    """The unit kernels, built once per runtime and options."""
    return build_units(tf32_unit_source(), TF32_UNIT_NAMES, runtime, options)


@pytest.fixture(params=RUNTIMES)
def runtime(request):
    if request.param == "cuda" and not cuda_available():
        pytest.skip("no CUDA device visible to CuPy (or CuPy not installed)")
    return request.param


# ----------------------------------------------------------------------------------------
# NumPy's tf32


def tf32_round(x) -> np.ndarray:
    """float32 -> the nearest tf32 (10 fraction bits), ties away from zero, as float32: the
    rounding of PTX cvt.rna.tf32.f32, computed in float64 arithmetic rather than with the
    kernel's bit trick. A magnitude m * 2**e (0.5 <= m < 1) has tf32 steps of 2**(e - 11),
    but never below 2**-136 (fp32's denormal step 2**-149 with 13 bits dropped); a result of
    2**128 or more is infinity. NaN and infinity pass through."""
    x = np.asarray(x, np.float32)
    magnitude = np.abs(x.astype(np.float64))
    finite = np.isfinite(magnitude)
    _, exponent = np.frexp(np.where(finite & (magnitude > 0), magnitude, 1.0))
    step = np.ldexp(1.0, np.maximum(exponent - 11, -136))
    rounded = np.floor(magnitude / step + 0.5) * step  # exact: step is a power of two
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(finite, np.copysign(rounded, x), x).astype(np.float32)


def tf32_truncate(x) -> np.ndarray:
    """What the tensor core (and the emulation) reads from a raw fp32 word: its top 19 bits."""
    return (np.asarray(x, np.float32).view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)


def bits(x) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


def from_bits(words) -> np.ndarray:
    return np.asarray(words, np.uint32).view(np.float32)


# ----------------------------------------------------------------------------------------
# to_tf32


def run_to_tf32(runtime, x: np.ndarray) -> np.ndarray:
    xp, back = _arrays(runtime)
    out = xp.zeros(x.shape, np.uint32)
    tf32_module(runtime).get_function("to_tf32_unit")(
        (64,), (256,), (xp.asarray(x), out, np.int32(x.size)))
    return back(out)


# Hand-picked bit patterns: (input, expected output) where the rounding is the point.
EDGE_CASES = [
    (0x3F800000, 0x3F800000),  # 1.0 is a tf32
    (0x3F801000, 0x3F802000),  # 1 + half a tf32 ulp: a tie, away from zero (up)
    (0xBF801000, 0xBF802000),  # -(1 + half an ulp): away from zero (down)
    (0x3F803000, 0x3F804000),  # a tie above an odd tf32: up as well
    (0x3F800FFF, 0x3F800000),  # just below the tie
    (0x3F801001, 0x3F802000),  # just above the tie
    (0x3FFFF000, 0x40000000),  # fraction all ones + tie: carries into the exponent
    (0x7F7FE000, 0x7F7FE000),  # the largest finite tf32
    (0x7F7FEFFF, 0x7F7FE000),  # just below the last tie: stays finite
    (0x7F7FF000, 0x7F800000),  # the last tie rounds to infinity
    (0x7F7FFFFF, 0x7F800000),  # the largest fp32 too
    (0xFF7FFFFF, 0xFF800000),  # and its negative to -infinity
    (0x7F800000, 0x7F800000),  # +inf
    (0xFF800000, 0xFF800000),  # -inf
    (0x00000000, 0x00000000),  # +0
    (0x80000000, 0x80000000),  # -0 keeps its sign
    (0x00000001, 0x00000000),  # the smallest denormal rounds to 0
    (0x80000FFF, 0x80000000),  # ... to -0
    (0x00001000, 0x00002000),  # a denormal tie rounds up to the smallest tf32 denormal
    (0x007FFFFF, 0x00800000),  # the largest denormal rounds up to the smallest normal
    (0x007FEFFF, 0x007FE000),  # a denormal rounding down
]
QUIET_NANS = [0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0x7FC01000]
SIGNALLING_NANS = [0x7F800001, 0xFF800FFF, 0x7FBFFFFF]  # payload partly or only in low bits


def random_floats(rng) -> np.ndarray:
    """Every class of fp32: random bit patterns (all exponents, denormals, NaNs), values near
    ties at random exponents, and ordinary numbers."""
    words = rng.integers(0, 2**32, size=60_000, dtype=np.uint64).astype(np.uint32)
    near_tie = (rng.integers(0, 2**19, size=20_000, dtype=np.uint64).astype(np.uint32) << 13)
    near_tie |= (0x1000 + rng.integers(-2, 3, size=near_tie.size)).astype(np.uint32)
    ordinary = bits(rng.normal(0, 100, size=20_000).astype(np.float32))
    return from_bits(np.concatenate([words, near_tie, ordinary]))


def is_nan_bits(words: np.ndarray) -> np.ndarray:
    return (words & 0x7FFFFFFF) > 0x7F800000


def test_numpy_tf32_rounding_agrees_with_the_hand_picked_cases():
    """The reference itself, on the cases where the rule is spelled out above."""
    x = from_bits([i for i, _ in EDGE_CASES])
    np.testing.assert_array_equal(bits(tf32_round(x)), np.array([o for _, o in EDGE_CASES],
                                                                np.uint32))


def test_to_tf32_rounds_like_cvt_rna(runtime):
    x = from_bits([i for i, _ in EDGE_CASES] + QUIET_NANS + SIGNALLING_NANS)
    x = np.concatenate([x, random_floats(rng_for("to_tf32"))])
    got = run_to_tf32(runtime, x)
    nan_in = np.isnan(x)
    assert not np.any(got & 0x1FFF), "a tf32 keeps its 13 low bits zero"
    np.testing.assert_array_equal(got[~nan_in], bits(tf32_round(x[~nan_in])))
    np.testing.assert_array_equal(got[: len(EDGE_CASES)],
                                  np.array([o for _, o in EDGE_CASES], np.uint32))
    # NaN stays NaN (the ISA fixes no payload). A signalling NaN whose payload sits in the
    # dropped bits is the emulation's choice (quieted, sign kept); the hardware is only held
    # to quiet NaNs.
    quiet = nan_in & ((bits(x) & 0x00400000) != 0)
    assert is_nan_bits(got[quiet]).all()
    if runtime == "emulator":
        assert is_nan_bits(got[nan_in]).all()
        np.testing.assert_array_equal(got[nan_in] >> 31, bits(x[nan_in]) >> 31)


# ----------------------------------------------------------------------------------------
# the unit mma


def run_mma_tf32(runtime, A, B, C, options=()):
    """D for a batch of problems: A (P, 16, 8), B (P, 8, 8) as float32 (their bits are the
    registers) or uint32 words; C (P, 16, 8)."""
    xp, back = _arrays(runtime)
    A, B = (np.ascontiguousarray(np.asarray(m).view(np.uint32)) for m in (A, B))
    problems = A.shape[0]
    D = xp.full((problems, 16, 8), np.nan, np.float32)
    tf32_module(runtime, options).get_function("mma_tf32_unit")(
        (problems,), (32,), (xp.asarray(A), xp.asarray(B),
                             xp.asarray(np.ascontiguousarray(C, np.float32)), D))
    return back(D)


def expected_mma(A, B, C) -> np.ndarray:
    return A.astype(np.float64) @ B.astype(np.float64) + C


def sum_error_bound(A, B, C) -> np.ndarray:
    """Generous fp32 summation error of 8 exact products and C, in whatever order."""
    return 16 * 2.0**-24 * (np.abs(A.astype(np.float64)) @ np.abs(B) + np.abs(C)) + 1e-30


def test_mma_tf32_is_exact_on_integers(runtime):
    """Small integers: every product and sum is exact in fp32, so D must equal A*B + C
    bit for bit, whatever the summation order."""
    rng = rng_for("mma tf32 exact")
    A = small_integers(rng, (4, 16, 8), np.float32)
    B = small_integers(rng, (4, 8, 8), np.float32)
    C = small_integers(rng, (4, 16, 8), np.float32)
    np.testing.assert_array_equal(run_mma_tf32(runtime, A, B, C),
                                  expected_mma(A, B, C).astype(np.float32))


def test_mma_tf32_on_random_tf32_values(runtime):
    rng = rng_for("mma tf32 random")
    A = tf32_round(rng.uniform(-1, 1, (8, 16, 8)))
    scale = np.ldexp(1.0, rng.integers(-8, 9, (8, 1, 1)))  # each problem its own magnitude
    B = tf32_round(rng.uniform(-1, 1, (8, 8, 8)) * scale)
    C = rng.uniform(-1, 1, (8, 16, 8)).astype(np.float32)
    D = run_mma_tf32(runtime, A, B, C)
    expected = expected_mma(A, B, C)
    assert np.all(np.abs(D - expected) <= sum_error_bound(A, B, C)), np.max(np.abs(D - expected))


def test_every_a_and_b_element_reaches_exactly_its_d_elements(runtime):
    """Perturb one element at a time: A[r][k] must change row r of D (every column: B has no
    zeros) and nothing else; B[k][n] column n and nothing else. All 128 + 64 perturbations
    (and the unperturbed problem) run as one batch; each D is also exact against NumPy."""
    rng = rng_for("mma tf32 every element")
    base_A = (rng.integers(1, 4, (16, 8)) * rng.choice([-1, 1], (16, 8))).astype(np.float32)
    base_B = (rng.integers(1, 4, (8, 8)) * rng.choice([-1, 1], (8, 8))).astype(np.float32)
    A = np.repeat(base_A[None], 1 + 128 + 64, axis=0)
    B = np.repeat(base_B[None], 1 + 128 + 64, axis=0)
    for e in range(128):
        A[1 + e].flat[e] += 8.0
    for e in range(64):
        B[1 + 128 + e].flat[e] += 8.0
    C = np.zeros((A.shape[0], 16, 8), np.float32)
    D = run_mma_tf32(runtime, A, B, C)
    np.testing.assert_array_equal(D, expected_mma(A, B, C).astype(np.float32))
    for e in range(128):
        r, k = divmod(e, 8)
        changed = D[1 + e] != D[0]
        want = np.zeros((16, 8), bool)
        want[r, :] = True
        assert np.array_equal(changed, want), f"A[{r}][{k}] changed D at {np.argwhere(changed)}"
    for e in range(64):
        k, n = divmod(e, 8)
        changed = D[1 + 128 + e] != D[0]
        want = np.zeros((16, 8), bool)
        want[:, n] = True
        assert np.array_equal(changed, want), f"B[{k}][{n}] changed D at {np.argwhere(changed)}"


def test_mma_tf32_emulation_truncates_unrounded_operands():
    """Raw fp32 words: the emulation reads the top 19 bits, i.e. truncates (what mma.cuh
    documents; the ISA leaves tf32's register layout to the implementation, so the GPU is not
    held to it). 1 + 0.75 tf32 ulp reads as 1, where to_tf32 would give 1 + 1 ulp."""
    A = np.full((1, 16, 8), 1.0 + 0.75 * 2.0**-10, np.float32)
    B = np.eye(8, dtype=np.float32)[None] * np.float32(1.0 + 0.5 * 2.0**-10)
    D = run_mma_tf32("emulator", A, B, np.zeros((1, 16, 8), np.float32))
    np.testing.assert_array_equal(D, np.ones((1, 16, 8), np.float32))
    assert tf32_round(A[0, 0, 0]) == np.float32(1.0 + 2.0**-10)
    rng = rng_for("mma tf32 raw words")
    A = rng.uniform(-1, 1, (4, 16, 8)).astype(np.float32)
    B = rng.uniform(-1, 1, (4, 8, 8)).astype(np.float32)
    C = rng.uniform(-1, 1, (4, 16, 8)).astype(np.float32)
    D = run_mma_tf32("emulator", A, B, C)
    At, Bt = tf32_truncate(A), tf32_truncate(B)
    expected = expected_mma(At, Bt, C)
    assert np.all(np.abs(D - expected) <= sum_error_bound(At, Bt, C))


def test_swapping_two_lanes_breaks_the_unit_mma_tf32():
    rng = rng_for("mma tf32 swap")
    A = small_integers(rng, (1, 16, 8), np.float32)
    B = small_integers(rng, (1, 8, 8), np.float32)
    C = small_integers(rng, (1, 16, 8), np.float32)
    expected = expected_mma(A, B, C).astype(np.float32)
    np.testing.assert_array_equal(run_mma_tf32("emulator", A, B, C), expected)
    D = run_mma_tf32("emulator", A, B, C, options=SWAP)
    assert not np.array_equal(D, expected), "swapping lanes 1 and 5 did not change D"


# ----------------------------------------------------------------------------------------
# the GEMM mainloop


def run_tf32_gemm(runtime, A, B, async_b=False, options=()):
    """D = A @ B.T through mma_tf32_gemm_mainloop: A (M, K), B (N, K), float32."""
    xp, back = _arrays(runtime)
    (M, K), N = A.shape, B.shape[0]
    D = xp.full((M, N), np.nan, np.float32)
    grid = (-(-M // GEMM_BM), -(-N // GEMM_BN))
    name = f"tf32_gemm_unit<{'true' if async_b else 'false'}>"
    tf32_module(runtime, options).get_function(name)(
        grid, (GEMM_THREADS,), (xp.asarray(A), xp.asarray(B), D, np.int32(M), np.int32(N),
                                np.int32(K)))
    return back(D)


def gemm_case(tag, M, N, K):
    rng = rng_for("tf32 gemm", tag, M, N, K)
    A = rng.uniform(-1, 1, (M, K)).astype(np.float32)
    B = rng.uniform(-1, 1, (N, K)).astype(np.float32)
    return A, B


def assert_gemm_close(D, A, B):
    """Against float64 of the tf32-rounded inputs, within fp32 summation error."""
    At, Bt = tf32_round(A).astype(np.float64), tf32_round(B).astype(np.float64)
    expected = At @ Bt.T
    bound = 4 * A.shape[1] * 2.0**-24 * (np.abs(At) @ np.abs(Bt).T) + 1e-30
    error = np.abs(D - expected)
    assert np.all(error <= bound), f"max error {np.nanmax(error)} (bound {bound.max()})"


# (M, N, K): tiles of 64 x 32 x 16. 150 x 70 x 52: 3 x 3 block tiles and 4 k tiles, the last
# of each partial (22 rows, 6 columns, 4 k); 64 x 32 x 16: exactly one of each; 40 x 100 x 100:
# one partial row tile, 4 column tiles, 7 k tiles.
GEMM_SHAPES = [(150, 70, 52), (64, 32, 16), (40, 100, 100)]


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=["x".join(map(str, s)) for s in GEMM_SHAPES])
def test_tf32_gemm_mainloop_against_numpy(runtime, shape):
    """Both operands rounded by the loaders with to_tf32; the unrounded fp32 product would
    differ by far more than the bound (a sanity check that rounding is what is compared)."""
    A, B = gemm_case("rounded", *shape)
    D = run_tf32_gemm(runtime, A, B)
    assert_gemm_close(D, A, B)
    exact = A.astype(np.float64) @ B.astype(np.float64).T
    assert np.max(np.abs(D - exact)) > 1e-4


@pytest.mark.parametrize("shape", GEMM_SHAPES[:1], ids=["150x70x52"])
def test_tf32_gemm_mainloop_with_cp_async_b(runtime, shape):
    """B copied into shared memory by cp_async_16 (zero-filled past the matrix), its words
    used as stored: the test passes tf32 values, so the result is the rounded product."""
    A, B = gemm_case("cp.async", *shape)
    B = tf32_round(B)
    D = run_tf32_gemm(runtime, A, B, async_b=True)
    assert_gemm_close(D, A, B)


def test_swapping_two_lanes_breaks_the_tf32_gemm():
    A, B = gemm_case("swap", 64, 32, 16)
    assert_gemm_close(run_tf32_gemm("emulator", A, B), A, B)
    D = run_tf32_gemm("emulator", A, B, options=SWAP)
    At, Bt = tf32_round(A).astype(np.float64), tf32_round(B).astype(np.float64)
    assert np.max(np.abs(D - At @ Bt.T)) > 1e-3, "swapping lanes 1 and 5 did not change D"


@pytest.mark.parametrize("barrier", [5, 6])
def test_dropping_a_barrier_breaks_the_tf32_gemm(barrier, monkeypatch):
    """Built without barrier ``barrier`` (5 = first tile, 6 = per tile; common.cuh), the GEMM
    goes wrong on the CPU runtime in at least one fiber order (see test_tensor_core.py's
    test_dropping_a_barrier_breaks_v3 for why the order matters); with every barrier it is
    right in both."""
    A, B = gemm_case("barrier", 150, 70, 52)
    At, Bt = tf32_round(A).astype(np.float64), tf32_round(B).astype(np.float64)
    broken = []
    for order in ("forward", "reverse"):
        monkeypatch.setenv("GPUCONV_CPU_FIBER_ORDER", order)
        assert_gemm_close(run_tf32_gemm("emulator", A, B), A, B)
        D = run_tf32_gemm("emulator", A, B, options=(f"-DGPUCONV_TEST_DROP_SYNC={barrier}",))
        broken.append(not np.allclose(D, At @ Bt.T, rtol=1e-5, atol=1e-5))
    assert any(broken), f"the tf32 GEMM without barrier {barrier} still matched in both orders"


# ----------------------------------------------------------------------------------------
# NVRTC: the emulation for sm_75, the PTX instructions for sm_80 / sm_90


def nvrtc_unit(arch: str):
    """Compile the unit kernels; return (PTX, log, cubin, {mangled: name expression})."""
    from test_compile import _nvrtc, _whole_elf

    nvrtc = _nvrtc()
    prog = nvrtc.createProgram(tf32_unit_source(), "tf32_units.cu", (), ())
    try:
        for expr in TF32_UNIT_NAMES:
            nvrtc.addNameExpression(prog, expr)
        try:
            nvrtc.compileProgram(prog, ("-std=c++17", f"-arch={arch}", "-Xptxas=-v"))
        except nvrtc.NVRTCError as error:
            raise AssertionError(f"NVRTC failed on the tf32 unit kernels for {arch}: {error}\n"
                                 f"{nvrtc.getProgramLog(prog)}") from None
        names = {nvrtc.getLoweredName(prog, expr): expr for expr in TF32_UNIT_NAMES}
        return (nvrtc.getPTX(prog).decode(), nvrtc.getProgramLog(prog),
                _whole_elf(nvrtc.getCUBIN(prog)), names)
    finally:
        nvrtc.destroyProgram(prog)


@pytest.mark.parametrize("arch", ["sm_75", "sm_80", "sm_90"])
def test_nvrtc_compiles_the_tf32_units(arch):
    from test_compile import parse_ptxas, warnings_in

    ptx, log, _, names = nvrtc_unit(arch)
    assert not warnings_in(log), f"NVRTC warnings ({arch}):\n{log}"
    rows = parse_ptxas(log, names)
    assert {r.kernel for r in rows} == set(TF32_UNIT_NAMES)
    assert not [r for r in rows if r.spill_stores or r.spill_loads], log
    tensor_core = arch != "sm_75"
    assert ("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in ptx) == tensor_core
    assert ("cvt.rna.tf32.f32" in ptx) == tensor_core
    assert ("cp.async.cg.shared.global" in ptx) == tensor_core
    assert ("shfl.sync" in ptx) != tensor_core


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_sass_tf32_gemm_runs_on_tensor_cores(arch, tmp_path):
    """HMMA.1688.F32.TF32 for every m16n8k8 of the unrolled k loop (BK/8 x WM/16 x WN/8 per
    tile); no shuffles (no emulation) and no local memory."""
    from test_compile import find_cuobjdump, sass_by_kernel, sass_counts

    if find_cuobjdump() is None:
        pytest.skip("cuobjdump not found: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")
    _, _, cubin, names = nvrtc_unit(arch)
    sass = sass_by_kernel(cubin, names, tmp_path)
    for kernel in ("tf32_gemm_unit<false>", "tf32_gemm_unit<true>"):
        counts = sass_counts(sass[kernel], r"\b((?:HMMA|LDL|STL|SHFL)(?:\.[A-Z0-9]+)*)\b")
        print(kernel, arch, counts)
        hmma = sum(n for k, n in counts.items() if k.startswith("HMMA") and "TF32" in k)
        assert hmma >= (GEMM_BK // 8) * (GEMM_WM // 16) * (GEMM_WN // 8), counts
        assert not any(k.startswith(("LDL", "STL", "SHFL")) for k in counts), counts
