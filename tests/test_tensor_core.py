"""The tensor-core path (cuda/mma.cuh, conv2d_*_v3_mma) without a
tensor core.

On the CPU runtime (and sm_75) mma.cuh's ``mma_m16n8k16`` and ``ldmatrix`` are emulations built
from warp shuffles that keep the PTX ISA's per-lane fragment layouts. These tests

* check the emulations themselves, element by element, against NumPy and the layouts of the
  PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type"; "ldmatrix"), with a
  test kernel that builds each lane's fragments straight from the documented formulas;
* show that the lane mapping matters: built with ``-DGPUCONV_TEST_SWAP_LANES=1`` (the kernels
  think lanes 1 and 5 are each other: their fragment rows swap) both the unit kernel and the
  v3 convolution give wrong results;
* run fprop, dgrad and wgrad v3 against the reference on geometries aimed at their tiles (several tiles along every
  GEMM side, groups, both filter-copy paths), prove each of its barriers matters, check that
  it is bitwise deterministic, and check its selection rules (float16 only; the heuristic
  takes it on sm_80+ only).

The whole problem matrix for v3 is in tests/test_kernels.py; NVRTC / SASS checks (HMMA, LDSM,
LDGSTS on sm_80 / sm_90) in tests/test_compile.py. Tests marked ``gpu`` run the same unit
kernels on a real GPU (the PTX instructions) where CuPy sees one.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import kernels, reference
from gpuconv.dtypes import bfloat16
from gpuconv.checking import assert_close, compare
from gpuconv.geometry import conv2d_geometry
from gpuconv.problems import CONV_PROBLEMS, ConvProblem
from gpuconv.runtime import Runtime, cuda_available, get_runtime
from gpuconv.sources import source_text

from test_kernels import conv_case, host, misaligned, on, poisoned, rng_for
from test_kernels import run_tf32 as run_kernel_tf32

# ----------------------------------------------------------------------------------------
# unit kernels: one warp, fragments built from the PTX ISA formulas

UNIT_KERNELS = r"""
// D (16x8, f32) = A (16x16, row-major) * B (16x8, row-major: B[k][n]) + C, one warp; A and B
// of type T (__half: f16, __nv_bfloat16: bf16, as raw 16-bit words). Each lane builds its
// fragments element by element from the PTX ISA formulas (groupID = lane >> 2,
// threadID_in_group = lane % 4), not from any helper of mma.cuh.
template <typename T>
__global__ void mma_unit(const unsigned short* A, const unsigned short* B, const float* C,
                         float* D) {
    const int lane = fragment_lane();
    const int groupID = lane >> 2, threadID_in_group = lane % 4;
    unsigned a[4] = {0u, 0u, 0u, 0u}, b[2] = {0u, 0u};
    float d[4];
    for (int i = 0; i < 8; ++i) {  // a0..a7: two per f16x2 register, low half first
        const int row = (i < 2 || (i >= 4 && i < 6)) ? groupID : groupID + 8;
        const int col = i < 4 ? (threadID_in_group * 2) + (i & 0x1)
                              : (threadID_in_group * 2) + (i & 0x1) + 8;
        a[i / 2] |= (unsigned)A[row * 16 + col] << (16 * (i & 1));
    }
    for (int i = 0; i < 4; ++i) {  // b0..b3
        const int row = i < 2 ? (threadID_in_group * 2) + (i & 0x1)
                              : (threadID_in_group * 2) + (i & 0x1) + 8;
        const int col = groupID;
        b[i / 2] |= (unsigned)B[row * 8 + col] << (16 * (i & 1));
    }
    for (int i = 0; i < 4; ++i) {  // c0..c3
        const int row = i < 2 ? groupID : groupID + 8;
        const int col = (threadID_in_group * 2) + (i & 0x1);
        d[i] = C[row * 8 + col];
    }
    mma_m16n8k16<T>(d, a, b);
    for (int i = 0; i < 4; ++i) {
        const int row = i < 2 ? groupID : groupID + 8;
        const int col = (threadID_in_group * 2) + (i & 0x1);
        D[row * 8 + col] = d[i];
    }
}

// ldmatrix: `src` holds NUM 8x8 matrices (matrix i, row r, col c at i*64 + r*8 + c). They
// are stored in shared memory rows in reverse order within each matrix (row r of matrix i in
// tile row 8*i + 7 - r), so only the per-lane addresses tell ldmatrix where each row is.
// out[lane * NUM + i] = this lane's register r[i].
template <int NUM, bool TRANS>
__global__ void ldmatrix_unit(const unsigned short* src, unsigned* out) {
    __shared__ __align__(16) unsigned short tile[32][16];
    const int lane = threadIdx.x;
    for (int e = lane; e < 32 * 8; e += 32) {
        const int i = e / 64, r = (e / 8) % 8, c = e % 8;
        tile[8 * i + 7 - r][c] = e < NUM * 64 ? src[e] : (unsigned short)0xffff;
    }
    __syncthreads();
    const int i = (lane / 8) % NUM, r = lane % 8;  // lanes past 8*NUM: any valid row
    unsigned regs[NUM];
    ldmatrix<NUM, TRANS>(regs, &tile[8 * i + 7 - r][0]);
    for (int k = 0; k < NUM; ++k) out[lane * NUM + k] = regs[k];
}
"""


def ldmatrix_name(num: int, trans: bool) -> str:
    return f"ldmatrix_unit<{num}, {'true' if trans else 'false'}>"


MMA_UNIT = {np.dtype(np.float16): "mma_unit<__half>", bfloat16: "mma_unit<__nv_bfloat16>"}
SIXTEEN_BIT = list(MMA_UNIT)
UNIT_NAMES = tuple(MMA_UNIT.values()) + tuple(ldmatrix_name(n, t) for n in (1, 2, 4) for t in (False, True))


def unit_source() -> str:
    return source_text("common.cuh") + "\n" + source_text("mma.cuh") + "\n" + UNIT_KERNELS


_modules: dict = {}


def build_units(source: str, names: tuple, runtime: str = "emulator", options: tuple = ()):
    """A module of unit kernels (``source`` with instances ``names``) on the CPU runtime or
    the GPU, built once per (source, runtime, options)."""
    key = (source, names, runtime, options)
    if key not in _modules:
        if runtime == "emulator":
            from gpuconv.runtime import cpu_rt

            _modules[key] = cpu_rt.RawModule(code=source, options=options,
                                             name_expressions=names)
        else:
            import cupy

            from gpuconv.runtime import cupy_rt

            cc = cupy.cuda.Device().compute_capability  # sm_90a on 9.0, as the runtime
            _modules[key] = cupy.RawModule(code=source,
                                           options=cupy_rt.compile_options(cc) + options,
                                           name_expressions=names)
    return _modules[key]


def unit_module(runtime: str = "emulator", options: tuple = ()):
    return build_units(unit_source(), UNIT_NAMES, runtime, options)


RUNTIMES = [pytest.param("emulator", id="emulator"),
            pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=RUNTIMES)
def runtime(request):
    if request.param == "cuda" and not cuda_available():
        pytest.skip("no CUDA device visible to CuPy (or CuPy not installed)")
    return request.param


def _arrays(runtime):
    if runtime == "emulator":
        return np, (lambda a: a)
    import cupy

    return cupy, cupy.asnumpy


def run_mma_unit(runtime, A, B, C, options=()):
    xp, back = _arrays(runtime)
    D = xp.full((16, 8), np.nan, np.float32)
    f = unit_module(runtime, options).get_function(MMA_UNIT[A.dtype])
    f((1,), (32,), (xp.asarray(A.view(np.uint16)), xp.asarray(B.view(np.uint16)),
                    xp.asarray(C), D))
    return back(D)


def small_integers(rng, shape, dtype):
    return rng.integers(-4, 5, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=lambda d: d.name)
def test_mma_emulation_is_exact_on_integers(runtime, dtype):
    """Small integers: every product and sum is exact in fp32, so D must equal A*B + C
    bit for bit, whatever the summation order."""
    rng = rng_for("mma exact")
    A = small_integers(rng, (16, 16), dtype)
    B = small_integers(rng, (16, 8), dtype)
    C = small_integers(rng, (16, 8), np.float32)
    D = run_mma_unit(runtime, A, B, C)
    expected = A.astype(np.float64) @ B.astype(np.float64) + C
    np.testing.assert_array_equal(D, expected.astype(np.float32))


@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=lambda d: d.name)
def test_mma_emulation_on_random_halves(runtime, dtype):
    """Random 16-bit values: their products are exact in fp32 (11 + 11 or 8 + 8 significant
    bits), so only the fp32 sums round."""
    rng = rng_for("mma random")
    A = rng.uniform(-1, 1, (16, 16)).astype(dtype)
    B = rng.uniform(-1, 1, (16, 8)).astype(dtype)
    C = rng.uniform(-1, 1, (16, 8)).astype(np.float32)
    D = run_mma_unit(runtime, A, B, C)
    expected = A.astype(np.float64) @ B.astype(np.float64) + C
    np.testing.assert_allclose(D, expected, rtol=1e-5, atol=1e-5)


def test_mma_emulation_sees_every_element():
    """One-hot A and B: D = A*B picks out single elements, so an element read from the
    wrong place (or not at all) shows; 16 x 8 single products and 16 x 16 x 8 in all."""
    rng = rng_for("mma one-hot")
    for _ in range(6):
        A = np.zeros((16, 16), np.float16)
        B = np.zeros((16, 8), np.float16)
        rows, ks, cols = rng.integers(0, 16), rng.integers(0, 16), rng.integers(0, 8)
        A[rows, ks] = 3.0
        B[ks, cols] = 5.0
        D = run_mma_unit("emulator", A, B, np.zeros((16, 8), np.float32))
        expected = np.zeros((16, 8), np.float32)
        expected[rows, cols] = 15.0
        np.testing.assert_array_equal(D, expected)
    # Identity A: D = B (padded to 16 rows: B is 16 x 8) reads every B element once.
    B = (np.arange(128).reshape(16, 8) - 64).astype(np.float16)
    D = run_mma_unit("emulator", np.eye(16, dtype=np.float16), B, np.zeros((16, 8), np.float32))
    np.testing.assert_array_equal(D, B.astype(np.float32))


def expected_ldmatrix(mats: np.ndarray, trans: bool) -> np.ndarray:
    """PTX ISA ldmatrix: lane l receives, per matrix i, the f16x2 word
    {M_i[l/4][2(l%4)], M_i[l/4][2(l%4)+1]} (low half first), or with .trans
    {M_i[2(l%4)][l/4], M_i[2(l%4)+1][l/4]}."""
    num = mats.shape[0]
    out = np.zeros((32, num), np.uint32)
    for lane in range(32):
        for i in range(num):
            m = mats[i].T if trans else mats[i]
            lo, hi = m[lane // 4, 2 * (lane % 4)], m[lane // 4, 2 * (lane % 4) + 1]
            out[lane, i] = int(lo) | (int(hi) << 16)
    return out


@pytest.mark.parametrize("num", [1, 2, 4])
@pytest.mark.parametrize("trans", [False, True], ids=["plain", "trans"])
def test_ldmatrix_emulation_distributes_like_the_ptx_isa(runtime, num, trans):
    xp, back = _arrays(runtime)
    mats = (np.arange(num * 64, dtype=np.uint16) * 37 + 11).reshape(num, 8, 8)  # all distinct
    out = xp.zeros((32, num), np.uint32)
    unit_module(runtime).get_function(ldmatrix_name(num, trans))((1,), (32,), (xp.asarray(mats.ravel()), out))
    np.testing.assert_array_equal(back(out), expected_ldmatrix(mats, trans))


def test_ldmatrix_x4_gives_the_mma_a_fragment():
    """The v3 kernel's A load: ldmatrix.x4 with lane l pointing at row l % 16, column
    (l / 16) * 8 of a 16x16 tile yields a[0..3] exactly as the mma A layout defines them."""
    A = (np.arange(256, dtype=np.uint16) * 7 + 3).reshape(16, 16)
    # The four 8x8 quarters in the order lanes 0-7, 8-15, 16-23, 24-31 address them.
    quarters = np.stack([A[0:8, 0:8], A[8:16, 0:8], A[0:8, 8:16], A[8:16, 8:16]])
    got = expected_ldmatrix(quarters, trans=False)
    for lane in range(32):
        g, t = lane >> 2, lane % 4
        want = [int(A[r, c]) | (int(A[r, c + 1]) << 16) for r, c in
                ((g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8))]
        assert list(got[lane]) == want


# ----------------------------------------------------------------------------------------
# the lane mapping matters


SWAP = ("-DGPUCONV_TEST_SWAP_LANES=1",)


def test_swapping_two_lanes_breaks_the_unit_mma():
    rng = rng_for("mma swap")
    A = small_integers(rng, (16, 16), np.float16)
    B = small_integers(rng, (16, 8), np.float16)
    C = small_integers(rng, (16, 8), np.float32)
    expected = (A.astype(np.float64) @ B.astype(np.float64) + C).astype(np.float32)
    np.testing.assert_array_equal(run_mma_unit("emulator", A, B, C), expected)
    D = run_mma_unit("emulator", A, B, C, options=SWAP)
    assert not np.array_equal(D, expected), "swapping lanes 1 and 5 did not change D"


def _emulator_built_with(*options) -> Runtime:
    from gpuconv.runtime import cpu_rt

    modules: dict = {}

    def build(source_name, code, name_expressions):
        key = (source_name, name_expressions)
        if key not in modules:
            modules[key] = cpu_rt.RawModule(code, options=tuple(options),
                                            name_expressions=name_expressions)
        return modules[key]

    return Runtime("emulator", np, build)


RESNET = next(p for p in CONV_PROBLEMS if p.name == "resnet_3x3_layer")


def run_v3(rt, problem, tag="v3", w_offset=0):
    g, x, w, b, _ = conv_case(problem, np.float16, tag)
    if w_offset:  # w at an address that is not 16-byte aligned (still C-contiguous)
        w = misaligned(w, w_offset)
    y = poisoned(rt, g.y_shape, np.float16)
    kernels.conv2d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b), y,
                         version="v3")
    return host(y), reference.conv2d(x, w, b, g)


def run_dgrad_v3(rt, problem, tag="v3"):
    g, _, w, _, dy = conv_case(problem, np.float16, tag)
    dx = poisoned(rt, g.x_shape, np.float16)
    kernels.conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), dx, version="v3")
    return host(dx), reference.conv2d_input(dy, w, g)


def run_wgrad_v3(rt, problem, tag="v3", dy_offset=0):
    g, x, _, _, dy = conv_case(problem, np.float16, tag)
    if dy_offset:  # dy at an address that is not 16-byte aligned (still C-contiguous)
        dy = misaligned(dy, dy_offset)
    dw = poisoned(rt, g.w_shape, np.float16)
    kernels.conv2d_wgrad(rt, g, on(rt, x), on(rt, dy), dw, version="v3")
    return host(dw), reference.conv2d_weight(x, dy, g)


RUN = {"fprop": run_v3, "dgrad": run_dgrad_v3, "wgrad": run_wgrad_v3}
V3_OPS = list(RUN)
# Barriers each v3 kernel has (common.cuh's ids): wgrad's epilogue writes straight from the
# fragments, without the staging barrier 7.
V3_BARRIERS = [(op, b) for op in V3_OPS for b in (5, 6, 7) if (op, b) != ("wgrad", 7)]


@pytest.mark.parametrize("op", V3_OPS)
def test_swapping_two_lanes_breaks_the_v3_convolution(op):
    y, expected = RUN[op](get_runtime("emulator"), RESNET)
    assert_close(y, expected, np.float16, what=f"{op} v3 resnet_3x3_layer")
    y, expected = RUN[op](_emulator_built_with(*SWAP), RESNET)
    assert not compare(y, expected, np.float16), f"{op} v3 with lanes 1, 5 swapped still matched"


@pytest.mark.parametrize("op,barrier", V3_BARRIERS)
def test_dropping_a_barrier_breaks_v3(op, barrier, monkeypatch):
    """Built without barrier ``barrier`` (common.cuh's block_sync ids: 5 = first tile, 6 = per
    tile, 7 = epilogue staging), v3 gives wrong results on the CPU runtime. The mma and
    ldmatrix emulations are warp rendezvous, which keep the warps of a block in near lockstep
    in thread order; resuming the threads last-first (GPUCONV_CPU_FIBER_ORDER=reverse) lets a
    warp read rows that lower warps have not stored yet. Both orders are right with every
    barrier."""
    rt = _emulator_built_with(f"-DGPUCONV_TEST_DROP_SYNC={barrier}")
    broken = []
    for order in ("forward", "reverse"):
        monkeypatch.setenv("GPUCONV_CPU_FIBER_ORDER", order)
        y, expected = RUN[op](get_runtime("emulator"), RESNET)
        assert_close(y, expected, np.float16, what=f"{op} v3 with every barrier, {order} order")
        y, expected = RUN[op](rt, RESNET)
        broken.append(not compare(y, expected, np.float16))
    assert any(broken), f"{op} v3 without barrier {barrier} still matched in both fiber orders"


# ----------------------------------------------------------------------------------------
# v3 on geometries aimed at its tiles (128 x 64 x 32)

V3_PROBLEMS = [
    ConvProblem("v3_every_side_tiled", "2 groups; per group GEMM 264 x 96 x 360: 3 row tiles, "
                "2 filter tiles, 12 k tiles, each last one partial; cp.async path (360 % 8 == 0)",
                N=2, C=80, H=12, W=11, K=192, R=3, S=3, padding=1, groups=2),
    ConvProblem("v3_scalar_filter_path", "C/groups*R*S = 75 (not a multiple of 8): the guarded "
                "16-bit filter loads; stride 2, dilation 2", N=1, C=3, H=40, W=37, K=40, R=5,
                S=5, stride=2, padding=3, dilation=2),
    ConvProblem("v3_one_k16_step", "reduction of exactly 16 (half a k tile), 1x1 filter",
                N=3, C=16, H=9, W=7, K=24, R=1, S=1),
]


@pytest.mark.parametrize("problem", V3_PROBLEMS, ids=[p.name for p in V3_PROBLEMS])
@pytest.mark.parametrize("op", V3_OPS)
def test_v3_against_the_reference(op, problem):
    """(dgrad's GEMM: pixels x channels per group x filters per group * R * S; wgrad's:
    C/groups*R*S x filters per group x N*P*Q; the same problems give them several tiles along
    each side too.)"""
    y, expected = RUN[op](get_runtime("emulator"), problem)
    assert_close(y, expected, np.float16, what=f"{op} v3 {problem.name}")


def test_v3_with_misaligned_filters_takes_the_scalar_path():
    """w not 16-byte aligned: cp.async's 16-byte vectors would be misaligned, so the kernel
    must use the guarded 16-bit loads even though C/groups*R*S % 8 == 0."""
    y, expected = run_v3(get_runtime("emulator"), RESNET, w_offset=1)
    assert_close(y, expected, np.float16, what="fprop v3, w misaligned")


@pytest.mark.parametrize("op", V3_OPS)
def test_v3_is_bitwise_deterministic(op):
    rt = get_runtime("emulator")
    y1, _ = RUN[op](rt, V3_PROBLEMS[0], tag="det")
    y2, _ = RUN[op](rt, V3_PROBLEMS[0], tag="det")
    assert y1.tobytes() == y2.tobytes()


# wgrad v3: its reduction runs over pixels (n, p, q), tiles of 32 that cross image
# boundaries, split-K over them; dy rows are copied by cp.async when P*Q % 8 == 0.
WGRAD_V3_PROBLEMS = [
    ConvProblem("wgrad_v3_tiny_images", "P*Q = 6: each 32-pixel tile spans 6 images (walks "
                "across image boundaries); scalar dy path", N=13, C=20, H=3, W=2, K=70, R=3,
                S=3, padding=1),
    ConvProblem("wgrad_v3_split_k", "N*P*Q = 4096 pixels, a 64-filter tile and 2 tap tiles: "
                "several splits; cp.async dy path (P*Q = 256)", N=4, C=32, H=16, W=16, K=64,
                R=3, S=3, padding=1),
]


@pytest.mark.parametrize("problem", WGRAD_V3_PROBLEMS, ids=[p.name for p in WGRAD_V3_PROBLEMS])
def test_wgrad_v3_against_the_reference(problem):
    g = conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    dw, expected = run_wgrad_v3(get_runtime("emulator"), problem)
    assert_close(dw, expected, np.float16, what=f"wgrad v3 {problem.name}")
    if problem.name == "wgrad_v3_split_k":
        assert kernels.wgrad_splits(g, "v3") > 1


DY_WALK = r"""
// One thread runs wgrad v3's dy loader with no filter in range (Kg_left = 0: it reads no
// memory) from pixel j_first for one tile of BK = 32 pixels; out = (n, pq) before and after.
__global__ void dy_loader_walk(const __half* dy, long long j_first, int N, int P, int Q,
                               long long* out) {
    __shared__ __align__(16) unsigned short tile[64][40];
    WgradV3DyLoader<__half, 64, 32, 256> loader;
    loader.init(dy, j_first, 0, 0, N, 1, P, Q, 0);
    out[0] = loader.n; out[1] = loader.pq;
    loader.load(&tile[0][0]);
    out[2] = loader.n; out[3] = loader.pq;
}
"""


@pytest.mark.parametrize("P, Q, j_first", [(7, 5, 0), (46341, 46341, 0),
                                            (46341, 46341, 2 * 46341**2 - 16)])
def test_wgrad_v3_dy_walk_past_2_to_the_31_pixels_per_plane(P, Q, j_first):
    """The pixel walk of wgrad v3's dy loader in 64 bits: a 46341 x 46341 plane has more than
    2^31 pixels (nothing is allocated: the loader has no filter to read)."""
    walk = build_units(source_text("conv2d_wgrad.cu") + DY_WALK, ("dy_loader_walk",))
    out = np.zeros(4, np.int64)
    walk.get_function("dy_loader_walk")((1,), (1,), (np.zeros(8, np.float16), np.int64(j_first),
                                                     np.int32(3), np.int32(P), np.int32(Q), out))
    plane, j_next = P * Q, j_first + 32
    assert out.tolist() == [j_first // plane, j_first % plane, j_next // plane, j_next % plane]


def test_wgrad_v3_with_misaligned_dy_takes_the_scalar_path():
    dw, expected = run_wgrad_v3(get_runtime("emulator"), WGRAD_V3_PROBLEMS[1], dy_offset=1)
    assert_close(dw, expected, np.float16, what="wgrad v3, dy misaligned")


# v3 for float32: TF32 tensor cores

def run_tf32(rt, problem, op="fprop", offset=0):
    return run_kernel_tf32(rt, op, problem, "tf32", offset)


@pytest.mark.parametrize("problem", V3_PROBLEMS + WGRAD_V3_PROBLEMS + [RESNET],
                         ids=lambda p: p.name)
@pytest.mark.parametrize("op", V3_OPS)
def test_tf32_is_tf32_and_within_its_bound(op, problem):
    """Within the TF32 bound of the float64 reference, and really TF32: outside float32's own
    tolerance (a float32 kernel would be inside it)."""
    y, expected, bound = run_tf32(get_runtime("emulator"), problem, op)
    assert compare(y, expected, np.float32, bound=bound)
    if problem is RESNET:
        assert not compare(y, expected, np.float32), f"{op} float32 v3 matched like float32"


@pytest.mark.parametrize("op", V3_OPS)
def test_tf32_with_misaligned_operands_takes_the_scalar_path(op):
    y, expected, bound = run_tf32(get_runtime("emulator"), RESNET, op, offset=1)
    assert compare(y, expected, np.float32, bound=bound)


@pytest.mark.parametrize("op", V3_OPS)
def test_swapping_two_lanes_breaks_tf32(op):
    y, expected, bound = run_tf32(_emulator_built_with(*SWAP), RESNET, op)
    assert not compare(y, expected, np.float32, bound=bound)


@pytest.mark.parametrize("op, barrier", [(op, b) for op in V3_OPS for b in (5, 6)])
def test_dropping_a_barrier_breaks_tf32(op, barrier, monkeypatch):
    rt = _emulator_built_with(f"-DGPUCONV_TEST_DROP_SYNC={barrier}")
    broken = []
    for order in ("forward", "reverse"):
        monkeypatch.setenv("GPUCONV_CPU_FIBER_ORDER", order)
        y, expected, bound = run_tf32(rt, RESNET, op)
        broken.append(not compare(y, expected, np.float32, bound=bound))
    assert any(broken), f"{op} tf32 without barrier {barrier} still matched in both orders"


def test_tf32_is_chosen_only_when_allowed(monkeypatch):
    """float32 on TF32 is an opt-in: the heuristic takes fprop v3 for float32 on sm_80+ only
    inside allow_tf32 (or with $GPUCONV_ALLOW_TF32=1); an explicit version runs it anyway."""
    monkeypatch.delenv(kernels.ENV_TF32, raising=False)
    h = kernels.heuristic_version
    assert h("fprop", RESNET_3X3, np.float32, 90) == "v2"
    with kernels.allow_tf32():
        assert h("fprop", RESNET_3X3, np.float32, 90) == "v3"
        assert h("fprop", RESNET_3X3, np.float32, 75) == "v2"      # no tf32 mma there
        assert h("fprop", RESNET_3X3, np.float32, None) == "v2"    # CPU runtime
        assert h("fprop", RESNET_3X3, np.float64, 90) == "v2"
        assert h("dgrad", RESNET_3X3, np.float32, 90) == "v3"
        assert h("wgrad", RESNET_3X3, np.float32, 90) == "v3"
        with kernels.allow_tf32(False):
            assert h("fprop", RESNET_3X3, np.float32, 90) == "v2"
    monkeypatch.setenv(kernels.ENV_TF32, "1")
    assert h("fprop", RESNET_3X3, np.float32, 90) == "v3"
    assert kernels.select_version("fprop", RESNET_3X3, np.float32, version="v3") == "v3"
    assert gpuconv.allow_tf32 is kernels.allow_tf32


def test_autotune_keeps_tf32_choices_apart(monkeypatch):
    monkeypatch.delenv(kernels.ENV_TF32, raising=False)
    plain = kernels.autotune_key("GPU", "fprop", np.float32, RESNET_3X3)
    with kernels.allow_tf32():
        assert kernels.autotune_key("GPU", "fprop", np.float32, RESNET_3X3) == plain.replace(
            "|float32|", "|float32+tf32|")
        assert "+tf32" not in kernels.autotune_key("GPU", "fprop", np.float16, RESNET_3X3)


def test_v3_adds_the_bias_once():
    """x = 1, w = 1/8 over 16 channels x 9 taps: 18.0, + bias 0.25 = 18.25 (exact in
    float16) at every output: the bias is added once per element, whatever its tile."""
    g = conv2d_geometry((1, 16, 6, 6), (32, 16, 3, 3))
    rt = get_runtime("emulator")
    x = np.ones(g.x_shape, np.float16)
    w = np.full(g.w_shape, 0.125, np.float16)
    b = np.full((g.K,), 0.25, np.float16)
    y = poisoned(rt, g.y_shape, np.float16)
    kernels.conv2d_fprop(rt, g, x, w, b, y, version="v3")
    np.testing.assert_array_equal(y, np.full(g.y_shape, 18.25, np.float16))


# ----------------------------------------------------------------------------------------
# selection


RESNET_3X3 = conv2d_geometry((32, 64, 56, 56), (64, 64, 3, 3), padding=1)
DEPTHWISE = conv2d_geometry((32, 512, 14, 14), (512, 1, 3, 3), padding=1, groups=512)
FEW_FILTERS = conv2d_geometry((8, 64, 32, 32), (16, 64, 3, 3), padding=1)


@pytest.mark.parametrize("op", V3_OPS)
def test_v3_exists_for_16_bit_types_and_float32_only(op):
    source = f"conv2d_{op}.cu"
    for ctype in ("__half", "__nv_bfloat16", "float"):  # float: TF32
        assert f"conv2d_{op}_v3_mma<{ctype}>" in kernels.name_expressions(source)
    assert f"conv2d_{op}_v3_mma<double>" not in kernels.name_expressions(source)
    with pytest.raises(ValueError, match="float16"):
        kernels.select_version(op, RESNET_3X3, np.float64, version="v3")
    assert kernels.select_version(op, RESNET_3X3, np.float32, version="v3") == "v3"
    for dtype in SIXTEEN_BIT:
        assert kernels.select_version(op, RESNET_3X3, dtype, version="v3") == "v3"


def test_heuristic_takes_tensor_cores_for_float16_on_sm80_and_newer():
    h = kernels.heuristic_version
    assert h("fprop", RESNET_3X3, np.float16, 90) == "v3"
    assert h("fprop", RESNET_3X3, np.float16, 80) == "v3"
    assert h("fprop", RESNET_3X3, np.float16, 75) == "v2"     # no m16n8k16: emulated there
    assert h("fprop", RESNET_3X3, bfloat16, 90) == "v3"
    assert h("fprop", RESNET_3X3, bfloat16, 75) == "v2"
    assert h("fprop", RESNET_3X3, np.float32, 90) == "v2"     # no float32 instance
    assert h("fprop", RESNET_3X3, np.float16, None) == "v2"   # CPU runtime: emulated
    assert h("fprop", RESNET_3X3) == "v2"                     # no dtype, no device
    assert h("fprop", DEPTHWISE, np.float16, 90) == "v1"      # 1 filter per group
    assert h("fprop", FEW_FILTERS, np.float16, 90) == "v2"    # 16 filters: a 64-wide tile 1/4 full
    assert h("dgrad", RESNET_3X3, np.float16, 90) == "v3"
    assert h("dgrad", RESNET_3X3, np.float32, 90) == "v2"
    assert h("dgrad", DEPTHWISE, np.float16, 90) == "v1"
    assert h("wgrad", RESNET_3X3, np.float16, 90) == "v3"
    assert h("wgrad", RESNET_3X3, np.float16, 75) == "v2"
    assert h("wgrad", RESNET_3X3, np.float32, 90) == "v2"
    assert h("wgrad", DEPTHWISE, np.float16, 90) == "v2"      # 1 filter per group: split-K v2


def test_cpu_runtime_keeps_v2_unless_asked():
    from test_selection import A, Recorder

    rt = Recorder("emulator")
    kernels.conv2d_fprop(rt, RESNET_3X3, A(np.float16), A(np.float16), None, A(np.float16))
    kernels.conv2d_fprop(rt, RESNET_3X3, A(np.float16), A(np.float16), None, A(np.float16),
                         version="v3")
    assert rt.launches == ["conv2d_fprop_v2_implicit_gemm", "conv2d_fprop_v3_mma"]


def test_autotune_times_v3_only_where_it_has_tensor_cores(monkeypatch, tmp_path):
    from test_selection import Recorder

    monkeypatch.setenv("GPUCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(kernels.ENV_AUTOTUNE, "1")
    monkeypatch.delenv(kernels.ENV_VERSION, raising=False)
    timed = []

    def fake_time(rt, launch):
        launch()
        timed.append(rt.launches[-1])
        return {"conv2d_fprop_v3_mma": 1.0}.get(rt.launches[-1], 2.0)

    monkeypatch.setattr(kernels, "_time_launch", fake_time)
    monkeypatch.setenv(kernels.ENV_SELF_CHECK, "0")  # a Recorder computes nothing to check
    kernels.clear_autotune_memory()
    try:
        for arch, dtype, expect in ((90, np.float16, "conv2d_fprop_v3_mma"),
                                    (75, np.float16, None), (90, np.float32, None)):
            monkeypatch.setattr(kernels, "device_arch", lambda rt, arch=arch: arch)
            monkeypatch.setattr(kernels, "_device_key", lambda rt, arch=arch: f"Fake GPU sm_{arch}")
            rt = Recorder("cuda")
            timed.clear()
            # Real arrays: v4 (NHWC) is a candidate too, and its NCHW launcher converts them.
            x, w = np.zeros(RESNET_3X3.x_shape, dtype), np.zeros(RESNET_3X3.w_shape, dtype)
            kernels.conv2d_fprop(rt, RESNET_3X3, x, w, None, np.empty(RESNET_3X3.y_shape, dtype))
            assert ("conv2d_fprop_v3_mma" in timed) == (expect is not None), (arch, dtype, timed)
            assert ("conv2d_fprop_v4_nhwc_mma" in timed) == (expect is not None), (arch, timed)
            if expect:
                assert rt.launches[-1] == expect
    finally:
        kernels.clear_autotune_memory()
