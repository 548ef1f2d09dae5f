"""64-bit index math, checked without allocating a tensor of 2^31 elements.

* common.cuh's helpers (offset4, split4, div_up, the grid-stride bounds) run in a tiny probe
  kernel on the CPU runtime with sizes whose products pass 2^31 and 2^32, against Python's
  exact integers; the probe also compiles with NVRTC.
* kernels.py's launch shapes for huge geometries: the v1 grid is capped at 2^31-1 blocks in
  x and the kernels' grid-stride loops cover the rest (never truncated); a v2 kernel whose
  tile grid would not fit is never selected (the heuristic falls back to v1) and is refused
  when asked for; sizes reach the kernels as int32 and a size that does not fit is refused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpuconv import kernels
from gpuconv.geometry import conv2d_geometry, pool2d_geometry
from gpuconv.sources import source_text

PROBE = source_text("common.cuh") + r'''
// One thread per case: case i reads dims/indices cases[8*i .. 8*i+7] =
// (D1, D2, D3, i0, i1, i2, i3, divisor) and writes out[8*i ..] =
// (offset4, split4 -> i0, i1, i2, i3, div_up(offset4, divisor), 0, 0).
extern "C" __global__ void index_math_probe(const long long* cases, long long* out, int count) {
    for (long long i = grid_first_index(); i < count; i += grid_stride()) {
        const long long* c = cases + 8 * i;
        long long* o = out + 8 * i;
        const long long flat = offset4(c[3], c[4], c[5], c[6], c[0], c[1], c[2]);
        o[0] = flat;
        split4(flat, c[0], c[1], c[2], o[1], o[2], o[3], o[4]);
        o[5] = div_up(flat, c[7]);
        o[6] = 0;
        o[7] = 0;
    }
}

// Every thread records its first index and the stride, and counts its visits to each element.
extern "C" __global__ void grid_stride_probe(long long count, long long* first, long long* stride,
                                             int* visits) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    first[t] = grid_first_index();
    stride[t] = grid_stride();
    for (long long i = grid_first_index(); i < count; i += grid_stride()) visits[i] += 1;
}
'''

# (D1, D2, D3, i0, i1, i2, i3, divisor): products beyond 2^31 and 2^32 and near 2^62.
CASES = [
    (3, 4, 5, 1, 2, 3, 4, 7),                                   # small, exact
    (256, 1024, 1024, 63, 255, 1023, 1023, 256),                # N*C*H*W = 2^34
    (70000, 70000, 70000, 2, 69999, 69999, 69999, 3),           # > 2^50
    (2**20, 2**20, 2**20, 2**2, 2**20 - 1, 2**20 - 1, 2**20 - 1, 2**31 - 1),  # ~2^62
]


def expected(case):
    D1, D2, D3, i0, i1, i2, i3, divisor = case
    flat = ((i0 * D1 + i1) * D2 + i2) * D3 + i3
    assert flat < 2**63
    return [flat, i0, i1, i2, i3, -(-flat // divisor), 0, 0]


@pytest.fixture(scope="module")
def probe():
    from gpuconv.runtime import cpu_rt

    return cpu_rt.RawModule(PROBE)


def test_offset_split_div_up_in_64_bits(probe):
    cases = np.array(CASES, np.int64)
    out = np.full((len(CASES), 8), -1, np.int64)
    probe.get_function("index_math_probe")((1,), (32,), (cases, out, np.int32(len(CASES))))
    for case, row in zip(CASES, out.tolist()):
        assert row == expected(case), case
    assert out[1, 0] > 2**32 and out[2, 0] > 2**49


def test_grid_stride_loop_covers_every_element_once(probe):
    blocks, threads, count = 3, 32, 1000  # 96 threads, about 10 iterations each
    first = np.full(blocks * threads, -1, np.int64)
    stride = np.full(blocks * threads, -1, np.int64)
    visits = np.zeros(count, np.int32)
    probe.get_function("grid_stride_probe")((blocks,), (threads,),
                                            (np.int64(count), first, stride, visits))
    assert first.tolist() == list(range(blocks * threads))
    assert set(stride.tolist()) == {blocks * threads}
    assert np.all(visits == 1)


def test_probe_compiles_with_nvrtc():
    pytest.importorskip("cupy", reason="CuPy is not installed: no NVRTC to compile with")
    from cupy.cuda import nvrtc

    prog = nvrtc.createProgram(PROBE, "index_math_probe.cu", (), ())
    try:
        nvrtc.compileProgram(prog, ("-std=c++17", "-arch=sm_75"))
    finally:
        nvrtc.destroyProgram(prog)


# ----------------------------------------------------------------------------------------
# launch shapes


@pytest.mark.parametrize("count", [1, 255, 256, 257, 10**6, 2**31 - 1, 2**31, 2**32 + 5,
                                   (2**31 - 1) * 256, (2**31 - 1) * 256 + 1, 2**40, 2**50])
def test_launch_shape_is_capped_and_covers_the_count(count):
    (grid,), (block,) = kernels.launch_shape(count)
    assert 1 <= grid <= kernels.MAX_GRID_X == 2**31 - 1
    assert block == kernels.THREADS_PER_BLOCK
    threads = grid * block
    iterations = math.ceil(count / threads)  # grid-stride iterations of thread 0
    assert threads * iterations >= count      # covered, not truncated
    if count <= kernels.MAX_GRID_X * block:
        assert iterations == 1                # one element per thread while the grid allows
    # The flat indices a thread visits stay below 2^63: no long long overflow in the loop.
    assert count + threads < 2**63


def test_launch_shape_of_nothing():
    assert kernels.launch_shape(0) == ((0,), (kernels.THREADS_PER_BLOCK,))


class _Recorder:
    """A runtime stand-in that records launches instead of running them."""

    xp = np

    def __init__(self):
        self.launches = []

    def function(self, source_name, name_expression):
        def launch(grid, block, args):
            self.launches.append((source_name, name_expression, grid, block, args))
        return launch


class _Array:
    """Just enough of an array for kernels.py: a dtype, no storage."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


def test_huge_conv_launches_are_looped_not_truncated():
    # x and y have 256*512*2048*2048 = 2^39 elements: 2^31 blocks of 256 threads would be
    # needed, one more than CUDA's limit. Never allocated here.
    g = conv2d_geometry((256, 512, 2048, 2048), (512, 512, 3, 3), padding=1)
    rt = _Recorder()
    a = _Array(np.float32)
    kernels.conv2d_fprop(rt, g, a, a, a, a, version="v1")
    kernels.conv2d_dgrad(rt, g, a, a, a, version="v1")
    kernels.conv2d_wgrad(rt, g, a, a, a, version="v1")
    kernels.conv2d_bgrad(rt, g, a, a, version="v1")
    counts = [g.N * g.K * g.P * g.Q, g.N * g.C * g.H * g.W, g.K * g.C * g.R * g.S, g.K]
    assert counts[0] == counts[1] == 2**39
    for (source, expr, grid, block, args), count in zip(rt.launches, counts):
        assert expr.endswith("<float>")
        assert grid[0] == min(-(-count // block[0]), 2**31 - 1)
        assert grid[0] * block[0] * math.ceil(count / (grid[0] * block[0])) >= count
        sizes = [a for a in args if isinstance(a, np.generic)]
        assert all(s.dtype == np.int32 for s in sizes), (expr, [s.dtype for s in sizes])
    assert rt.launches[0][2] == (2**31 - 1,)  # fprop: capped grid, the loop does the rest
    assert rt.launches[1][2] == (2**31 - 1,)  # dgrad likewise


def test_huge_pool_launch_and_int32_sizes():
    g = pool2d_geometry((64, 128, 8192, 8192), 3, stride=2, padding=1)  # x: 2^39 elements
    rt = _Recorder()
    a = _Array(np.float16)
    kernels.maxpool2d_fwd(rt, g, a, a, _Array(np.int64), version="v1")
    kernels.maxpool2d_bwd(rt, g, a, _Array(np.int64), a, version="v1")
    (_, fwd, fwd_grid, _, _), (_, bwd, bwd_grid, _, _) = rt.launches
    assert fwd == "maxpool2d_fwd_v1_direct<__half>" and bwd == "maxpool2d_bwd_v1_gather<__half>"
    assert fwd_grid == (2**37 // 256,)  # y: 2^37 elements, one per thread
    assert bwd_grid == (2**31 - 1,)     # dx: 2^39 elements, the grid is capped, the loop covers
    # v2 (selected by default): 32 x 8 blocks of one plane, grid z over the 8192 planes.
    rt = _Recorder()
    kernels.maxpool2d_fwd(rt, g, a, a, _Array(np.int64))
    kernels.maxpool2d_bwd(rt, g, a, _Array(np.int64), a)
    (_, fwd, fwd_grid, fwd_block, _), (_, bwd, bwd_grid, _, _) = rt.launches
    assert fwd == "maxpool2d_fwd_v2_plane<__half>" and bwd == "maxpool2d_bwd_v2_plane<__half>"
    assert fwd_block == (32, 8)
    assert fwd_grid == (4096 // 32, 4096 // 8, 64 * 128) and bwd_grid == (8192 // 32, 8192 // 8, 8192)
    # v3: 4 columns per thread, so a quarter of v2's block columns.
    rt = _Recorder()
    kernels.maxpool2d_fwd(rt, g, a, a, _Array(np.int64), version="v3")
    kernels.maxpool2d_bwd(rt, g, a, _Array(np.int64), a, version="v3")
    (_, fwd, fwd_grid, fwd_block, _), (_, bwd, bwd_grid, bwd_block, _) = rt.launches
    assert fwd == "maxpool2d_fwd_v3_vec<__half>" and bwd == "maxpool2d_bwd_v3_vec<__half>"
    assert fwd_block == bwd_block == (32, 8)
    assert fwd_grid == (4096 // 128, 4096 // 8, 64 * 128) and bwd_grid == (8192 // 128, 8192 // 8, 8192)


def test_huge_conv_v2_selection_and_grids():
    # x and y with 2^39 elements: 2^30 GEMM rows, 2^23 row tiles of 128 for fprop / dgrad v2.
    g = conv2d_geometry((256, 512, 2048, 2048), (512, 512, 3, 3), padding=1)
    rt = _Recorder()
    a = _Array(np.float32)
    kernels.conv2d_fprop(rt, g, a, a, a, a)
    kernels.conv2d_dgrad(rt, g, a, a, a)
    assert [launch[1] for launch in rt.launches] == ["conv2d_fprop_v2_implicit_gemm<float>",
                                                     "conv2d_dgrad_v2_implicit_gemm<float>"]
    assert rt.launches[0][2] == rt.launches[1][2] == (2**23, 512 // 64, 1)
    # 2^38 GEMM rows would need 2^31 row tiles: never selected, refused when asked for.
    g = conv2d_geometry((2**16, 1, 2048, 2048), (16, 1, 1, 1))
    assert kernels.heuristic_version("fprop", g) == "v1"
    with pytest.raises(ValueError, match="row tiles"):
        kernels.conv2d_fprop(_Recorder(), g, a, a, None, a, version="v2")
    # wgrad v2 on 64 filters of 64 x 3 x 3: a 1 x 9 tile grid, the 2^38-long reduction split
    # (split-K) 30 ways in z, then the second pass.
    g = conv2d_geometry((256, 64, 2048, 2048), (64, 64, 3, 3), padding=1)
    rt = _Recorder()
    a = _Array(np.float32)
    kernels.conv2d_wgrad(rt, g, a, a, a)
    (_, expr, grid, block, args), (_, expr2, grid2, _, args2) = rt.launches
    splits = kernels.wgrad_splits(g)
    assert expr == "conv2d_wgrad_v2_implicit_gemm<float>" and block == (256,)
    assert grid == (1, 64 * 9 // 64, splits) and splits == 30
    assert expr2 == "conv2d_wgrad_v2_sum_splits<float>"
    assert all(s.dtype == np.int32 for s in args[4:]) and args2[2].dtype == np.int64


def test_a_size_beyond_int32_is_refused():
    g = conv2d_geometry((1, 1, 2**31, 1), (1, 1, 1, 1))
    with pytest.raises(ValueError, match="H=2147483648"):
        kernels.conv2d_fprop(_Recorder(), g, _Array(np.float32), _Array(np.float32), None,
                             _Array(np.float32))


def test_every_dtype_has_an_instance_and_others_are_refused():
    for dtype in (np.float16, np.float32, np.float64):
        assert kernels.name_expression("k", dtype).startswith("k<")
    with pytest.raises(TypeError, match="int32"):
        kernels.name_expression("k", np.int32)
