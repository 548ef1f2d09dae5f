"""wgmma (cuda/mma.cuh: WgmmaTile, wgmma_m64nNk16) without a Hopper GPU.

The v5 kernels multiply on wgmma, the warpgroup MMA of sm_90a, whose operands are read from
shared memory through matrix descriptors. Off sm_90a (here: the CPU runtime) mma.cuh emulates
it, each warp running mma.m16n8k16 over the shared-memory coordinates the descriptors
describe. These tests pin down the two facts that emulation rests on, from the PTX ISA:

* the shared-memory layouts: WgmmaTile::at is the ISA's canonical K-major layout without
  swizzling, ((8, m), (T, 2k)) : ((T, SBO), (1, LBO)) in CuTe terms, and WgmmaMnTile::at
  (wgrad v5: both operands transposed, imm-trans 1) its MN-major one, ((T, 1, m), (8, k)) :
  ((1, T, SBO), (T, LBO)), each written here independently from the ISA's table;
* the accumulator layout: warp w of the warpgroup holds rows 16w .. 16w + 15 of D, register
  4j + e at row 16w + g (+8 for e >= 2), column 8j + 2t + (e & 1) (g = lane / 4, t = lane %
  4): a unit kernel's raw registers, placed by that rule on the host, must give A * B.

Swapping two lanes (-DGPUCONV_TEST_SWAP_LANES) must break it. Tests marked ``gpu`` run the
same unit kernel on a GPU (wgmma itself on compute capability 9.0). The v5 kernels
themselves: tests/test_nhwc.py, tests/test_kernels.py; their SASS (HGMMA on sm_90a):
tests/test_compile.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv.dtypes import bfloat16
from gpuconv.sources import source_text

from test_kernels import rng_for
from test_tensor_core import SWAP, _arrays, build_units, runtime  # noqa: F401 (fixture)

ROWS, N, K = 64, 64, 16  # one m64n64k16 (and one m64n128k16: columns=128 below)
WIDE_N = 128              # fprop / dgrad v5's 128 x 128 tile configuration

WGMMA_UNIT = r"""
// D (64 x NC, f32) = A (64 x 16, row-major) * B, with B given as Bt (NC x 16: row n holds
// column n of B) - one warpgroup (128 threads), one m64nNCk16 (NC = 64 or 128). A and Bt go
// into shared tiles at ATile::at / BTile::at (K-major WgmmaTile<ROWS, 16>, or MN-major
// WgmmaMnTile<ROWS, 16> where A_MN / B_MN); at[row * 16 + kk] records where A's element went.
// out[thread * NC / 2 + r] = this thread's accumulator register r (d[r / 4][r % 4]), in the
// instruction's own order.
template <bool MN, int ROWS> struct UnitTile { typedef WgmmaTile<ROWS, 16> type; };
template <int ROWS> struct UnitTile<true, ROWS> { typedef WgmmaMnTile<ROWS, 16> type; };

template <typename T, bool A_MN, bool B_MN, int NC>
__global__ void wgmma_unit(const unsigned short* A, const unsigned short* Bt, float* out,
                           int* at) {
    typedef typename UnitTile<A_MN, 64>::type ATile;
    typedef typename UnitTile<B_MN, NC>::type BTile;
    __shared__ __align__(128) unsigned short a_tile[ATile::ELEMENTS];
    __shared__ __align__(128) unsigned short b_tile[BTile::ELEMENTS];
    for (int e = threadIdx.x; e < NC * 16; e += 128) {
        const int row = e / 16, kk = e % 16;
        b_tile[BTile::at(row, kk)] = Bt[e];
        if (row < 64) {
            a_tile[ATile::at(row, kk)] = A[e];
            at[e] = ATile::at(row, kk);
        }
    }
#if GPUCONV_WGMMA_PTX
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // stores -> async proxy
#endif
    __syncthreads();
    float d[NC / 8][4];
    for (int j = 0; j < NC / 8; ++j)
        for (int e = 0; e < 4; ++e) d[j][e] = 0.0f;
    wgmma_fence_operands<NC>(d);
    wgmma_fence();
    wgmma_m64nNk16<T, ATile, BTile, NC>(d, a_tile, b_tile);
    wgmma_commit_and_wait();
    wgmma_fence_operands<NC>(d);
    for (int r = 0; r < NC / 2; ++r) out[threadIdx.x * (NC / 2) + r] = d[r / 4][r % 4];
}

// at[row * 32 + kk] = WgmmaMnTile<ROWS, 32>::at(row, kk): wgrad v5's stages (ROWS = 128 taps
// of x, 64 filters of dy; BK = 32 pixels).
__global__ void wgmma_mn_at_unit(int* at128, int* at64) {
    for (int e = threadIdx.x; e < 128 * 32; e += blockDim.x) {
        at128[e] = WgmmaMnTile<128, 32>::at(e / 32, e % 32);
        if (e < 64 * 32) at64[e] = WgmmaMnTile<64, 32>::at(e / 32, e % 32);
    }
}

// Descriptor i of (start[i], lbo[i], sbo[i]); offset[i] / offset_mn[i] = where it puts
// element (7, 9) of a K-major / MN-major slice.
__global__ void wgmma_descriptor_unit(const long long* start, const int* lbo, const int* sbo,
                                      unsigned long long* desc, int* offset, int* offset_mn,
                                      int count) {
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        desc[i] = wgmma_descriptor((unsigned long long)start[i], lbo[i], sbo[i]);
        offset[i] = wgmma_descriptor_offset(desc[i], 7, 9);
        offset_mn[i] = wgmma_descriptor_offset<true>(desc[i], 7, 9);
    }
}

// Thread t's piece of a 64 x 32 WgmmaTile stage (4 pieces per row): row[t], byte[t] (offset).
__global__ void wgmma_piece_unit(int* row, int* byte) {
    for (int t = 0; t < 256; ++t) {
        int r, piece;
        WgmmaTile<64, 32>::piece(t, 4, r, piece);
        row[t] = r;
        byte[t] = 2 * WgmmaTile<64, 32>::at(r, 8 * piece);
    }
}

// out[0] = GPUCONV_WGMMA_PTX as this module was compiled: 1 where wgmma is the instruction.
__global__ void wgmma_probe(int* out) { out[0] = GPUCONV_WGMMA_PTX; }
"""
CTYPES = {np.dtype(np.float16): "__half", bfloat16: "__nv_bfloat16"}
# Operand layouts of the unit kernel: (A MN-major, B MN-major). K-major both: fprop / dgrad
# v5; MN-major both: wgrad v5; the mixed ones pin down that each operand's imm-trans is its own.
MAJORS = [(False, False), (True, True), (False, True), (True, False)]
MAJOR_IDS = ["k_k", "mn_mn", "k_mn", "mn_k"]


def unit_name(dtype, a_mn: bool = False, b_mn: bool = False, columns: int = N) -> str:
    flag = lambda mn: "true" if mn else "false"  # noqa: E731
    return f"wgmma_unit<{CTYPES[np.dtype(dtype)]}, {flag(a_mn)}, {flag(b_mn)}, {columns}>"


# m64n128k16 in the layouts a kernel reads it in: K-major both (fprop / dgrad v5:128x128)
WIDE_MAJORS = [(False, False)]
NAMES = tuple(unit_name(d, *m) for d in CTYPES for m in MAJORS) + tuple(
    unit_name(d, *m, WIDE_N) for d in CTYPES for m in WIDE_MAJORS) + (
    "wgmma_mn_at_unit", "wgmma_descriptor_unit", "wgmma_piece_unit", "wgmma_probe")


def run_wgmma_unit(where, A, Bt, options=(), majors=(False, False)):
    """(raw registers (128, columns / 2), at (64, 16)) of the unit kernel on runtime
    ``where``, A and Bt (columns x 16: 64 or 128) in the layouts ``majors`` (A MN-major, B
    MN-major)."""
    xp, back = _arrays(where)
    module = unit_module(where, options)
    columns = Bt.shape[0]
    out = xp.full((128, columns // 2), np.nan, np.float32)
    at = xp.full((ROWS, K), -1, np.int32)
    module.get_function(unit_name(A.dtype, *majors, columns))((1,), (128,), (
        xp.asarray(A.view(np.uint16)), xp.asarray(Bt.view(np.uint16)), out, at))
    return back(out), back(at)


def unit_module(where, options=()):
    source = source_text("common.cuh") + "\n" + source_text("mma.cuh") + "\n" + WGMMA_UNIT
    return build_units(source, NAMES, where, options)


def place_by_the_isa(registers: np.ndarray) -> np.ndarray:
    """D (64 x columns) from each thread's registers (columns / 2 of them) by the PTX ISA's
    m64nNk16 D layout."""
    columns = 2 * registers.shape[1]
    D = np.full((ROWS, columns), np.nan, np.float32)
    for thread in range(128):
        warp, lane = divmod(thread, 32)
        g, t = divmod(lane, 4)
        for r in range(columns // 2):
            j, e = divmod(r, 4)
            D[16 * warp + g + 8 * (e >= 2), 8 * j + 2 * t + (e & 1)] = registers[thread, r]
    return D


def canonical_k_major_offset(row: int, kk: int, lbo_bytes: int, sbo_bytes: int) -> int:
    """The PTX ISA's K-major, no-swizzle canonical layout ((8, m), (T, 2k)) : ((T, SBO),
    (1, LBO)) for 16-bit elements (T = 8 per 16 bytes), as an element offset."""
    T = 8
    return ((row % 8) * T + (row // 8) * (sbo_bytes // 2)
            + (kk % T) + (kk // T) * (lbo_bytes // 2))


def canonical_mn_major_offset(row: int, kk: int, lbo_bytes: int, sbo_bytes: int) -> int:
    """The PTX ISA's MN-major, no-swizzle canonical layout ((T, 1, m), (8, k)) : ((1, T, SBO),
    (T, LBO)) for 16-bit elements (T = 8), as an element offset: row = (i, 0, row group),
    kk = (kk in its core matrix, core matrix along K)."""
    T = 8
    return ((row % T) + (row // T) * (sbo_bytes // 2)
            + (kk % 8) * T + (kk // 8) * (lbo_bytes // 2))


SHAPES = [(m, N) for m in MAJORS] + [(m, WIDE_N) for m in WIDE_MAJORS]
SHAPE_IDS = MAJOR_IDS + [f"{MAJOR_IDS[MAJORS.index(m)]}_n{WIDE_N}" for m in WIDE_MAJORS]


@pytest.mark.parametrize("majors,columns", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", list(CTYPES), ids=lambda d: d.name)
def test_wgmma_gives_a_times_b_in_the_isa_d_layout(runtime, dtype, majors, columns):  # noqa: F811
    rng = rng_for("wgmma unit")
    A = rng.uniform(-1, 1, (ROWS, K)).astype(dtype)
    Bt = rng.uniform(-1, 1, (columns, K)).astype(dtype)
    registers, _ = run_wgmma_unit(runtime, A, Bt, majors=majors)
    expected = A.astype(np.float64) @ Bt.astype(np.float64).T
    np.testing.assert_allclose(place_by_the_isa(registers), expected, rtol=1e-5, atol=1e-5)


def test_wgmma_tile_is_the_isa_canonical_layout():
    A = np.zeros((ROWS, K), np.float16)
    _, at = run_wgmma_unit("emulator", A, A)
    lbo, sbo = 128, K * 16  # WgmmaTile<64, 16>: LBO = 128 bytes, SBO = BK * 16 bytes
    expected = np.array([[canonical_k_major_offset(r, kk, lbo, sbo) for kk in range(K)]
                         for r in range(ROWS)])
    np.testing.assert_array_equal(at, expected)
    assert sorted(at.ravel()) == list(range(ROWS * K))  # a permutation: no element shared


def test_wgmma_mn_tile_is_the_isa_canonical_mn_major_layout():
    A = np.zeros((ROWS, K), np.float16)
    _, at = run_wgmma_unit("emulator", A, A, majors=(True, True))
    lbo, sbo = 128, K * 16 + 16  # WgmmaMnTile<64, 16>: LBO = 128 bytes, SBO = BK * 16 + 16
    expected = np.array([[canonical_mn_major_offset(r, kk, lbo, sbo) for kk in range(K)]
                         for r in range(ROWS)])
    np.testing.assert_array_equal(at, expected)
    assert len(set(at.ravel().tolist())) == ROWS * K  # no element shared
    assert at.max() < (ROWS // 8) * sbo // 2  # inside WgmmaMnTile::ELEMENTS


@pytest.mark.parametrize("majors,columns", SHAPES, ids=SHAPE_IDS)
def test_wgmma_emulation_sees_every_element(majors, columns):
    """One-hot A and Bt: each D element is one product, so a fragment element read from the
    wrong core matrix (or row, or lane) shows."""
    rng = rng_for("wgmma one-hot")
    for _ in range(6):
        A = np.zeros((ROWS, K), np.float16)
        Bt = np.zeros((columns, K), np.float16)
        row, kk, col = rng.integers(0, ROWS), rng.integers(0, K), rng.integers(0, columns)
        A[row, kk], Bt[col, kk] = 3.0, 5.0
        registers, _ = run_wgmma_unit("emulator", A, Bt, majors=majors)
        expected = np.zeros((ROWS, columns), np.float32)
        expected[row, col] = 15.0
        np.testing.assert_array_equal(place_by_the_isa(registers), expected)


@pytest.mark.parametrize("majors,columns", [((False, False), N), ((True, True), N),
                                            ((False, False), WIDE_N)],
                         ids=["k_k", "mn_mn", f"k_k_n{WIDE_N}"])
def test_swapping_two_lanes_breaks_the_wgmma_emulation(majors, columns):
    rng = rng_for("wgmma swap")
    A = rng.uniform(-1, 1, (ROWS, K)).astype(np.float16)
    Bt = rng.uniform(-1, 1, (columns, K)).astype(np.float16)
    registers, _ = run_wgmma_unit("emulator", A, Bt, SWAP, majors=majors)
    expected = A.astype(np.float64) @ Bt.astype(np.float64).T
    assert not np.allclose(place_by_the_isa(registers), expected, rtol=1e-3, atol=1e-3)


def test_wgmma_descriptor_has_the_isa_bit_fields():
    """The PTX ISA's "Matrix Descriptor Format": bits 13-0 the start address, 29-16 the
    leading dimension byte offset, 45-32 the stride dimension byte offset, each encoded as
    (x & 0x3FFFF) >> 4; base offset (51-49) and swizzle mode (63-62) 0 here (no swizzle);
    every other bit 0. And the offset the emulation reads element (7, 9) at: K-major, row 7 of
    the first row group, K core matrix 1, element 1 = 7 * 16 + LBO + 2 bytes; MN-major, kk 1
    of K core matrix 1, element 7 of it = LBO + 16 + 7 * 2 bytes."""
    cases = [(0, 128, 512), (0x1230, 128, 256), (0x3FFF0, 16, 0x3FFF0), (0x40010, 256, 1024),
             (227 * 1024 - 16, 128, 8192)]
    start = np.array([c[0] for c in cases], np.int64)
    lbo = np.array([c[1] for c in cases], np.int32)
    sbo = np.array([c[2] for c in cases], np.int32)
    desc = np.zeros(len(cases), np.uint64)
    offset = np.zeros(len(cases), np.int32)
    offset_mn = np.zeros(len(cases), np.int32)
    unit_module("emulator").get_function("wgmma_descriptor_unit")(
        (1,), (32,), (start, lbo, sbo, desc, offset, offset_mn, np.int32(len(cases))))
    for (s, lb, sb), d, off, off_mn in zip(cases, desc.tolist(), offset.tolist(),
                                           offset_mn.tolist()):
        encode = lambda x: (x & 0x3FFFF) >> 4  # noqa: E731
        assert d & 0x3FFF == encode(s)
        assert (d >> 16) & 0x3FFF == encode(lb)
        assert (d >> 32) & 0x3FFF == encode(sb)
        assert d & ~((0x3FFF) | (0x3FFF << 16) | (0x3FFF << 32)) == 0  # base offset, swizzle: 0
        assert off == 7 * 16 + encode(lb) * 16 + 2
        assert off_mn == encode(lb) * 16 + 16 + 7 * 2


def test_wgmma_loaders_pieces_cover_the_stage_without_bank_conflicts():
    """The loaders' thread -> piece map for a wgmma stage (WgmmaTile::piece): every 16-byte piece
    of the 64 x 32 tile exactly once, and each 8 consecutive threads (what one 16-byte shared
    store serves at a time) on 8 different 16-byte bank groups; each warp on 8 whole rows."""
    row = np.zeros(256, np.int32)
    offset = np.zeros(256, np.int32)
    unit_module("emulator").get_function("wgmma_piece_unit")((1,), (1,), (row, offset))
    assert sorted(offset.tolist()) == list(range(0, 64 * 32 * 2, 16))
    for first in range(0, 256, 8):
        assert len({(o // 16) % 8 for o in offset[first:first + 8]}) == 8, first
    for warp in range(8):
        rows = row[32 * warp:32 * warp + 32]
        assert sorted(set(rows.tolist())) == list(range(8 * warp, 8 * warp + 8))


@pytest.mark.parametrize("rows", [128, 64], ids=["x_taps", "dy_filters"])
def test_wgrad_v5_pieces_cover_the_mn_stages_without_bank_conflicts(rows):
    """WgmmaMnTile<ROWS, 32>::at under the thread -> piece map that wgrad v5's loaders
    document (WgradV4XLoader, WgradV4DyLoader: thread t copies piece t % (ROWS / 8), 8 rows,
    of pixel t / (ROWS / 8), + 256 / (ROWS / 8) per pass, to at(8 * piece, pixel)): every
    16-byte piece of the stage once; each 8 consecutive threads (one 16-byte store phase, 128
    contiguous bytes of one pixel in global memory) on 8 different bank groups, which is what
    WgmmaMnTile's 16 extra bytes per row group are for."""
    at128 = np.zeros(128 * 32, np.int32)
    at64 = np.zeros(64 * 32, np.int32)
    unit_module("emulator").get_function("wgmma_mn_at_unit")((1,), (128,), (at128, at64))
    at = (at128 if rows == 128 else at64).reshape(rows, 32)
    per_pixel = rows // 8
    byte = []
    for pass_ in range(32 // (256 // per_pixel)):
        for t in range(256):
            pixel = t // per_pixel + pass_ * (256 // per_pixel)
            byte.append(2 * at[8 * (t % per_pixel), pixel])
    assert len(set(byte)) == rows * 32 // 8  # every piece exactly once
    assert all(b % 16 == 0 for b in byte)
    for first in range(0, len(byte), 8):
        assert len({(b // 16) % 8 for b in byte[first:first + 8]}) == 8, first


@pytest.mark.gpu
def test_the_gpu_runtime_builds_wgmma_on_compute_capability_9():
    """The v5 kernels multiply with wgmma only in a module built for sm_90a: the GPU
    runtime's compile options (through CuPy, which adds arch options of its own) must give
    that on compute capability 9.0, and the emulation elsewhere."""
    from gpuconv.runtime import cuda_available
    if not cuda_available():
        pytest.skip("no CUDA device visible to CuPy (or CuPy not installed)")
    import cupy

    out = cupy.zeros(1, np.int32)
    unit_module("cuda").get_function("wgmma_probe")((1,), (1,), (out,))
    expected = 1 if cupy.cuda.Device().compute_capability == "90" else 0
    assert int(out.get()[0]) == expected
