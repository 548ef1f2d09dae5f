"""Every kernel version against the NumPy reference: op x version x dtype x problem
(gpuconv.problems, plus the partial-tile problems V2_EDGE_PROBLEMS below).

Runs on the CPU runtime (``get_runtime('emulator')``) everywhere, and the same matrix on the
GPU (``get_runtime('cuda')``, marked ``gpu``) where CuPy sees a device. Outputs are
NaN-poisoned before each launch, so an element a kernel fails to write shows as a mismatch.
Comparisons use gpuconv.checking's per-dtype tolerances; max-pool values and indices must
match exactly.

Each launcher is called with an explicit ``version=``, so every version is checked on every
problem whatever the selection heuristic would pick. A last section proves that the v2
kernels' barriers matter: built with ``-DGPUCONV_TEST_DROP_SYNC=<id>`` (one barrier compiled
away), the CPU runtime's run-ahead scheduler makes them produce wrong results.

Max-pool inputs are all distinct within each plane (a permutation plus jitter), so the argmax
is unique; ties, NaN, -inf, all -inf windows and ceil_mode windows have their own tests. Max-pool
v3 (POOL_V3_VEC outputs per thread, vector stores) is also held bitwise to v1 on ties, NaN and
arbitrary indices, with its vector stores and their scalar fallbacks (row tails, misaligned
arrays) each reached.
"""

from __future__ import annotations


import numpy as np
import pytest

from gpuconv import checking, kernels, reference
from gpuconv.checking import assert_close, compare, distinct_values
from gpuconv.dtypes import SIXTEEN_BIT  # the tensor-core (v3) kernels' dtypes
from gpuconv.geometry import conv2d_geometry, pool2d_geometry
from gpuconv.problems import CONV_PROBLEMS, ConvProblem, POOL_PROBLEMS, PoolProblem
from gpuconv.runtime import Runtime, cuda_available, get_runtime
from helpers import rng_for  # noqa: E402

DTYPES = list(checking.DTYPES)  # float16, bfloat16, float32, float64

# Problems sized against the v2 tiles (fprop/dgrad 128 x 64 x 8, wgrad 64 x 64 x 16): every
# GEMM side one past a tile, grouped convolutions that take the GEMM path, and a long
# wgrad reduction that is split across many blocks (split-K).
V2_EDGE_PROBLEMS = [
    ConvProblem("v2_fprop_edges", "fprop GEMM 129 x 65 x 9: each side one past a tile "
                "(wgrad 65 x 9 x 129)", N=1, C=1, H=5, W=45, K=65, R=3, S=3),
    ConvProblem("v2_dgrad_edges", "dgrad GEMM 129 x 65 x 9: each side one past a tile",
                N=1, C=65, H=3, W=43, K=1, R=3, S=3, padding=1),
    ConvProblem("v2_groups_same_even", "2 groups of 24 channels, 'same' with an even kernel "
                "(asymmetric padding)", N=2, C=48, H=9, W=10, K=40, R=4, S=2, padding="same",
                groups=2),
    ConvProblem("v2_groups_strided_dilated", "2 groups, stride (2, 3), padding (2, 1), "
                "dilation (2, 1)", N=2, C=32, H=17, W=15, K=48, R=3, S=3, stride=(2, 3),
                padding=(2, 1), dilation=(2, 1), groups=2),
    ConvProblem("v2_wgrad_split_k", "N*P*Q = 1600: wgrad v2 splits the reduction 25 ways",
                N=4, C=8, H=20, W=20, K=16, R=3, S=3, padding=1),
]
ALL_CONV_PROBLEMS = CONV_PROBLEMS + V2_EDGE_PROBLEMS
# Problems sized against max-pool v3's rows of POOL_V3_VEC (4) outputs per thread, 32 x 4
# columns per block: whole vectors (Q, and W for the backward, multiples of 4) and scalar tails,
# over one and two block columns, with overlapping, dilated and ceil_mode windows.
POOL_EDGE_PROBLEMS = [
    PoolProblem("v3_wide_tail", "Q = 131: two block columns, a 3-output scalar tail; W = 262 "
                "(backward: a 2-element tail)", N=1, C=2, H=5, W=262, kernel_size=2),
    PoolProblem("v3_wide_vector", "Q = 132 and W = 264: whole vectors over two block columns",
                N=1, C=2, H=4, W=264, kernel_size=2),
    PoolProblem("v3_k3s1_vector", "stride 1 (each input in up to 9 windows), Q = W = 16, "
                "two block rows", N=2, C=2, H=11, W=16, kernel_size=3, stride=1, padding=1),
    PoolProblem("v3_dilated_vector", "dilation 2, stride 1: Q = 20 (W = 22: a tail)", N=1, C=3,
                H=9, W=22, kernel_size=3, stride=1, padding=1, dilation=2),
    PoolProblem("v3_ceil_vector", "ceil_mode: Q = 8 whole vectors, the last window clipped",
                N=1, C=2, H=9, W=16, kernel_size=3, stride=2, ceil_mode=True),
    PoolProblem("v3_k3s2_vector", "the ResNet stem's k3 s2 p1 with Q = 16, W = 32", N=1, C=3,
                H=17, W=32, kernel_size=3, stride=2, padding=1),
]
ALL_POOL_PROBLEMS = POOL_PROBLEMS + POOL_EDGE_PROBLEMS
IDX_POISON = -7  # what index outputs are filled with before a launch (never a valid index)



# ----------------------------------------------------------------------------------------
# helpers




def uniform(rng, shape, dtype) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def distinct(rng, shape, dtype) -> np.ndarray:
    """Values all distinct within each (n, c) plane, in random order (a permutation plus
    jitter: gpuconv.checking.distinct_values), so every window has a unique maximum."""
    out = distinct_values(shape, dtype, rng)
    flat = out.reshape(-1, shape[-2] * shape[-1])
    assert all(len(np.unique(row)) == row.size for row in flat), "inputs not distinct"
    return out


def on(rt, a):
    """A host array as an array of the runtime's array module."""
    return rt.xp.ascontiguousarray(rt.xp.asarray(a))


def host(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.get()


def poisoned(rt, shape, dtype):
    if np.dtype(dtype) in checking.DTYPES:
        return rt.xp.full(shape, np.nan, dtype)
    return rt.xp.full(shape, IDX_POISON, dtype)


def conv_case(problem, dtype, op):
    g = conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    rng = rng_for(op, problem.name, np.dtype(dtype).name)
    x = uniform(rng, g.x_shape, dtype)
    w = uniform(rng, g.w_shape, dtype)
    b = uniform(rng, (g.K,), dtype) if problem.bias else None
    dy = uniform(rng, g.y_shape, dtype)
    return g, x, w, b, dy


def pool_geometry(problem):
    return pool2d_geometry(problem.x_shape, problem.kernel_size, problem.stride,
                           problem.padding, problem.dilation, problem.ceil_mode)


def run_maxpool_fwd(rt, g, x, version=None):
    y = poisoned(rt, g.y_shape, x.dtype)
    idx = poisoned(rt, g.y_shape, np.int64)
    kernels.maxpool2d_fwd(rt, g, on(rt, x), y, idx, version=version)
    return host(y), host(idx)


def check_maxpool_fwd(rt, g, x, version=None):
    """Kernel vs reference: values and indices equal exactly (NaN meets NaN)."""
    y, idx = run_maxpool_fwd(rt, g, x, version)
    y_ref, idx_ref = reference.max_pool2d(x, g)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, idx_ref, err_msg="argmax indices differ")
    # (in float64, exactly: NumPy's testing sees NaN as NaN only in its own float types)
    np.testing.assert_array_equal(y.astype(np.float64), y_ref.astype(np.float64),
                                  err_msg="max values differ")
    return y, idx


# ----------------------------------------------------------------------------------------
# conv2d: the problem matrix


CONV_IDS = [p.name for p in ALL_CONV_PROBLEMS]
POOL_IDS = [p.name for p in ALL_POOL_PROBLEMS]
VERSIONS = ["v1", "v2"]  # every op has both (kernels.VERSIONS; checked below)
# Versions some ops have beyond these, each with its own dtypes and test below.
# Tensor cores (*_tensor_core, *_tf32); v4 is v3 on NHWC arrays and v5 v4 on wgmma (also
# tests/test_nhwc.py); bgrad v3 sums NHWC dy (here through NCHW arrays, every dtype;
# tests/test_bgrad_nhwc.py); max-pool v3 is vectorized (every max-pool test).
EXTRA_VERSIONS = {"fprop": ["v3", "v4", "v5"], "dgrad": ["v3", "v4", "v5"],
                  "wgrad": ["v3", "v4", "v5"], "bgrad": ["v3"], "pool_fwd": ["v3"], "pool_bwd": ["v3"]}
POOL_VERSIONS = VERSIONS + ["v3"]  # what every max-pool test runs, on every dtype


def test_every_op_has_the_versions_tested_here():
    assert all(kernels.VERSIONS[op] == tuple(VERSIONS + EXTRA_VERSIONS.get(op, []))
               for op in kernels.OPS)
    assert all(kernels.VERSIONS[op] == tuple(POOL_VERSIONS) for op in ("pool_fwd", "pool_bwd"))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", ALL_CONV_PROBLEMS, ids=CONV_IDS)
@pytest.mark.parametrize("version", VERSIONS)
def test_conv2d_fprop(rt, version, problem, dtype):
    g, x, w, b, _ = conv_case(problem, dtype, "fprop")
    y = poisoned(rt, g.y_shape, dtype)
    kernels.conv2d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b), y,
                         version=version)
    assert_close(host(y), reference.conv2d(x, w, b, g), dtype,
                 what=f"fprop {version} {problem.name}")


@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=lambda d: d.name)
@pytest.mark.parametrize("problem", ALL_CONV_PROBLEMS, ids=CONV_IDS)
@pytest.mark.parametrize("version", ["v3", "v4", "v5", "v5:128x128"])
def test_conv2d_fprop_tensor_core(rt, version, problem, dtype):
    """fprop v3, v4 (v3 on NHWC copies) and v5 (v4 on wgmma, also in its 128x128 tile
    configuration; mma.sync m16n8k16; on the CPU runtime its shuffle emulation with the same
    per-lane fragment layouts: tests/test_tensor_core.py) over the whole matrix, float16 and
    bfloat16."""
    g, x, w, b, _ = conv_case(problem, dtype, "fprop")
    y = poisoned(rt, g.y_shape, dtype)
    kernels.conv2d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b), y,
                         version=version)
    assert_close(host(y), reference.conv2d(x, w, b, g), dtype,
                 what=f"fprop {version} {problem.name}")


def run_tf32(rt, op, problem, tag, offset=0, version="v3"):
    """(result, reference, TF32 error bound) of conv2d ``op`` v3 (or v4) on float32
    (TF32) inputs of ``problem``; ``offset`` misaligns w and dy (the operands copied by
    cp.async)."""
    g, x, w, b, dy = conv_case(problem, np.float32, tag)
    if offset:
        w, dy = misaligned(w, offset), misaligned(dy, offset)
    if op == "fprop":
        out = poisoned(rt, g.y_shape, np.float32)
        kernels.conv2d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b),
                             out, version=version)
        return host(out), reference.conv2d(x, w, b, g), checking.tf32_bound(op, g, x, w)
    if op == "dgrad":
        out = poisoned(rt, g.x_shape, np.float32)
        kernels.conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), out, version=version)
        return host(out), reference.conv2d_input(dy, w, g), checking.tf32_bound(op, g, dy, w)
    out = poisoned(rt, g.w_shape, np.float32)
    kernels.conv2d_wgrad(rt, g, on(rt, x), on(rt, dy), out, version=version)
    return host(out), reference.conv2d_weight(x, dy, g), checking.tf32_bound(op, g, x, dy)


def misaligned(a: np.ndarray, offset: int, xp=np):
    """A C-contiguous copy of ``a`` at ``offset`` elements past an aligned buffer's start (not
    16-byte aligned for offset 1), an array of ``xp`` (NumPy, or CuPy for the GPU)."""
    buf = xp.zeros(a.size + offset, a.dtype)
    buf[offset:] = xp.asarray(a.ravel())
    return buf[offset:].reshape(a.shape)


@pytest.mark.parametrize("problem", ALL_CONV_PROBLEMS, ids=CONV_IDS)
@pytest.mark.parametrize("op,version", [("fprop", "v3"), ("fprop", "v4"), ("dgrad", "v3"),
                                        ("dgrad", "v4"), ("wgrad", "v3"), ("wgrad", "v4")])
def test_conv2d_tf32(rt, op, version, problem):
    """v3 (and v4) for float32: TF32 tensor cores (mma.sync m16n8k8; the shuffle
    emulation on the CPU runtime), within the TF32 error bound (gpuconv.checking.tf32_bound)
    of the reference."""
    out, expected, bound = run_tf32(rt, op, problem, op, version=version)
    result = compare(out, expected, np.float32, bound=bound)
    assert result, f"{op} {version} tf32 {problem.name}: {result.report}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", ALL_CONV_PROBLEMS, ids=CONV_IDS)
@pytest.mark.parametrize("version", VERSIONS)
def test_conv2d_dgrad(rt, version, problem, dtype):
    g, _, w, _, dy = conv_case(problem, dtype, "dgrad")
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), dx, version=version)
    assert_close(host(dx), reference.conv2d_input(dy, w, g), dtype,
                 what=f"dgrad {version} {problem.name}")


@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=lambda d: d.name)
@pytest.mark.parametrize("problem", ALL_CONV_PROBLEMS, ids=CONV_IDS)
@pytest.mark.parametrize("version", ["v3", "v4", "v5", "v5:128x128"])
def test_conv2d_dgrad_tensor_core(rt, version, problem, dtype):
    """dgrad v3, v4 (v3 on NHWC copies) and v5 (v4 on wgmma, also in its 128x128 tile
    configuration; tensor cores, the shuffle emulation on the CPU runtime), float16 and
    bfloat16."""
    g, _, w, _, dy = conv_case(problem, dtype, "dgrad")
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), dx, version=version)
    assert_close(host(dx), reference.conv2d_input(dy, w, g), dtype,
                 what=f"dgrad {version} {problem.name}")


# fprop and dgrad v2's other tile configurations (kernels.TILE_CONFIGS: "v2:128x128",
# "v2:64x32"): the same reduction order per output as v2's 128 x 64, so the same bits.
V2_CONFIGS = [v for v in kernels.variants("fprop") if v.startswith("v2:")]


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float16)],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("problem", ALL_CONV_PROBLEMS, ids=CONV_IDS)
@pytest.mark.parametrize("version", V2_CONFIGS)
@pytest.mark.parametrize("op", ["fprop", "dgrad"])
def test_conv2d_v2_tile_configurations_give_v2s_bits(rt, op, version, problem, dtype):
    g, x, w, b, dy = conv_case(problem, dtype, op)
    out = {}
    for v in ("v2", version):
        if op == "fprop":
            out[v] = poisoned(rt, g.y_shape, dtype)
            kernels.conv2d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b),
                                 out[v], version=v)
        else:
            out[v] = poisoned(rt, g.x_shape, dtype)
            kernels.conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), out[v], version=v)
    expected = reference.conv2d(x, w, b, g) if op == "fprop" else reference.conv2d_input(dy, w, g)
    assert_close(host(out[version]), expected, dtype, what=f"{op} {version} {problem.name}")
    assert host(out[version]).tobytes() == host(out["v2"]).tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", ALL_CONV_PROBLEMS, ids=CONV_IDS)
@pytest.mark.parametrize("version", VERSIONS)
def test_conv2d_wgrad(rt, version, problem, dtype):
    g, x, _, _, dy = conv_case(problem, dtype, "wgrad")
    dw = poisoned(rt, g.w_shape, dtype)
    kernels.conv2d_wgrad(rt, g, on(rt, x), on(rt, dy), dw, version=version)
    # The kernels sum float16 products in float (like the reference's float64, the sum itself
    # adds no float16 rounding), so the default tolerance holds for these N*P*Q <= 1600 sums.
    assert_close(host(dw), reference.conv2d_weight(x, dy, g), dtype,
                 what=f"wgrad {version} {problem.name}")


@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=lambda d: d.name)
@pytest.mark.parametrize("problem", ALL_CONV_PROBLEMS, ids=CONV_IDS)
@pytest.mark.parametrize("version", ["v3", "v4", "v5"])
def test_conv2d_wgrad_tensor_core(rt, version, problem, dtype):
    """wgrad v3, v4 (v3 on NHWC copies) and v5 (v4 on wgmma; tensor cores, split-K; shuffle
    emulation on the CPU runtime), float16 and bfloat16."""
    g, x, _, _, dy = conv_case(problem, dtype, "wgrad")
    dw = poisoned(rt, g.w_shape, dtype)
    kernels.conv2d_wgrad(rt, g, on(rt, x), on(rt, dy), dw, version=version)
    assert_close(host(dw), reference.conv2d_weight(x, dy, g), dtype,
                 what=f"wgrad {version} {problem.name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", ALL_CONV_PROBLEMS, ids=CONV_IDS)
@pytest.mark.parametrize("version", VERSIONS + EXTRA_VERSIONS["bgrad"])
def test_conv2d_bgrad(rt, version, problem, dtype):
    g, _, _, _, dy = conv_case(problem, dtype, "bgrad")
    db = poisoned(rt, (g.K,), dtype)
    kernels.conv2d_bgrad(rt, g, on(rt, dy), db, version=version)
    assert_close(host(db), reference.conv2d_bias(dy), dtype,
                 what=f"bgrad {version} {problem.name}")


def test_edge_problems_reach_the_cases_they_are_for():
    """The partial-tile problems really produce partial tiles and several wgrad splits."""
    geoms = {p.name: conv2d_geometry(p.x_shape, p.w_shape, **p.kwargs) for p in V2_EDGE_PROBLEMS}
    t = kernels.FPROP_V2
    assert kernels._gemm_shape("fprop", geoms["v2_fprop_edges"]) == (t.BM + 1, t.BN + 1, t.BK + 1)
    t = kernels.DGRAD_V2
    assert kernels._gemm_shape("dgrad", geoms["v2_dgrad_edges"]) == (t.BM + 1, t.BN + 1, t.BK + 1)
    assert kernels.wgrad_splits(geoms["v2_wgrad_split_k"]) == 25
    assert kernels.wgrad_splits(geoms["v2_fprop_edges"]) == 2
    for name in ("v2_groups_same_even", "v2_groups_strided_dilated"):
        g = geoms[name]
        assert g.groups > 1 and all(kernels.heuristic_version(op, g) == "v2"
                                    for op in ("fprop", "dgrad", "wgrad"))


# ----------------------------------------------------------------------------------------
# max-pool: the problem matrix


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", ALL_POOL_PROBLEMS, ids=POOL_IDS)
@pytest.mark.parametrize("version", POOL_VERSIONS)
def test_maxpool2d_fwd(rt, version, problem, dtype):
    g = pool_geometry(problem)
    x = distinct(rng_for("pool_fwd", problem.name, np.dtype(dtype).name), g.x_shape, dtype)
    check_maxpool_fwd(rt, g, x, version)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", ALL_POOL_PROBLEMS, ids=POOL_IDS)
@pytest.mark.parametrize("version", POOL_VERSIONS)
def test_maxpool2d_bwd(rt, version, problem, dtype):
    g = pool_geometry(problem)
    rng = rng_for("pool_bwd", problem.name, np.dtype(dtype).name)
    x = distinct(rng, g.x_shape, dtype)
    _, idx = reference.max_pool2d(x, g)
    dy = uniform(rng, g.y_shape, dtype)
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.maxpool2d_bwd(rt, g, on(rt, dy), on(rt, idx), dx, version=version)
    assert_close(host(dx), reference.max_pool2d_input(dy, idx, g), dtype,
                 what=f"maxpool bwd {version} {problem.name}")


# ----------------------------------------------------------------------------------------
# max-pool: PyTorch's rules, each on its own


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("version", POOL_VERSIONS)
def test_maxpool_ties_take_the_first_maximum(rt, version, dtype):
    # 2x2 windows over a plane of a few repeated values: every window has ties.
    g = pool2d_geometry((2, 3, 8, 9), 3, stride=2, padding=1)
    x = rng_for("ties").integers(0, 3, size=g.x_shape).astype(dtype)
    check_maxpool_fwd(rt, g, x, version)
    # A hand-checked window: all four equal -> the first (row-major) index 0.
    g1 = pool2d_geometry((1, 1, 2, 2), 2)
    y, idx = run_maxpool_fwd(rt, g1, np.full((1, 1, 2, 2), 5.0, dtype), version)
    assert idx.item() == 0 and y.item() == 5.0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("version", POOL_VERSIONS)
def test_maxpool_nan_gives_nan_and_the_last_nan_index(rt, version, dtype):
    g = pool2d_geometry((2, 2, 9, 10), 3, stride=2, padding=1)
    rng = rng_for("nan", np.dtype(dtype).name)
    x = distinct(rng, g.x_shape, dtype)
    x[rng.random(g.x_shape) < 0.15] = np.nan
    y, idx = check_maxpool_fwd(rt, g, x, version)
    assert np.isnan(y).any() and not np.isnan(y).all()
    # Hand-checked: [[nan, 3], [nan, 1]] -> NaN at the last NaN, index 2.
    g1 = pool2d_geometry((1, 1, 2, 2), 2)
    y1, idx1 = run_maxpool_fwd(rt, g1, np.array([[[[np.nan, 3], [np.nan, 1]]]], dtype), version)
    assert np.isnan(y1.item()) and idx1.item() == 2


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("version", POOL_VERSIONS)
def test_maxpool_minus_inf_and_all_minus_inf_windows(rt, version, dtype):
    # Padding 1: corner windows hold padding plus in-bounds -inf only -> the first in-bounds
    # element's index, never a padding position.
    g = pool2d_geometry((1, 2, 6, 7), 3, stride=2, padding=1)
    rng = rng_for("-inf", np.dtype(dtype).name)
    x = distinct(rng, g.x_shape, dtype)
    x[0, 0] = -np.inf                                    # a plane of -inf: every window
    x[0, 1][rng.random((6, 7)) < 0.5] = -np.inf          # -inf mixed with values
    y, idx = check_maxpool_fwd(rt, g, x, version)
    assert np.all(y[0, 0] == -np.inf)
    # Top-left window covers rows/cols -1..1: its first in-bounds element is (0, 0) -> 0.
    assert idx[0, 0, 0, 0] == 0
    # Window (1, 2) covers rows 1..3, cols 3..5: first in-bounds element (1, 3) -> 1*7+3.
    assert idx[0, 0, 1, 2] == 1 * 7 + 3


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("version", POOL_VERSIONS)
def test_maxpool_ceil_mode_windows_are_clipped(rt, version, dtype):
    # H=W=6, k=3, s=2, ceil_mode: the last window starts at 4 and is clipped to rows 4..5.
    g = pool2d_geometry((1, 1, 6, 6), 3, stride=2, ceil_mode=True)
    assert (g.P, g.Q) == (3, 3)
    x = np.arange(36).astype(dtype).reshape(1, 1, 6, 6)  # exact in every dtype
    x[0, 0, 4:, 4:] = -np.inf  # the clipped corner window holds only -inf
    y, idx = check_maxpool_fwd(rt, g, x, version)
    assert y[0, 0, 2, 2] == -np.inf and idx[0, 0, 2, 2] == 4 * 6 + 4
    assert idx[0, 0, 2, 0] == 5 * 6 + 2  # clipped bottom window: max at row 5, col 2
    # With padding and the ceil_mode correction (H=5, k=2, s=2, p=1 -> 3), ties everywhere.
    g = pool2d_geometry((1, 2, 5, 5), 2, stride=2, padding=1, ceil_mode=True)
    check_maxpool_fwd(rt, g, np.ones(g.x_shape, dtype), version)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("version", POOL_VERSIONS)
def test_maxpool_bwd_accumulates_ties_and_overlaps(rt, version, dtype):
    # Stride 1 over a constant plane: every window picks its first element, so elements
    # shared by several windows receive several gradients.
    g = pool2d_geometry((1, 2, 5, 6), 3, stride=1, padding=1)
    x = np.zeros(g.x_shape, dtype)
    _, idx = check_maxpool_fwd(rt, g, x, version)
    dy = uniform(rng_for("bwd_ties", np.dtype(dtype).name), g.y_shape, dtype)
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.maxpool2d_bwd(rt, g, on(rt, dy), on(rt, idx), dx, version=version)
    assert_close(host(dx), reference.max_pool2d_input(dy, idx, g), dtype)


# ----------------------------------------------------------------------------------------
# max-pool v3: bitwise v1, vector stores and their scalar fallbacks

V = kernels.POOL_V3_VEC


def test_pool_edge_problems_reach_the_cases_they_are_for():
    """Whole vectors and scalar tails in y (Q) and dx (W), and more than one block column."""
    geoms = {p.name: pool_geometry(p) for p in POOL_EDGE_PROBLEMS}
    columns = kernels.POOL_V3_BLOCK[0] * V  # outputs per block row
    assert geoms["v3_wide_tail"].Q == columns + 3 and geoms["v3_wide_tail"].W % V == 2
    assert geoms["v3_wide_vector"].Q == columns + V and geoms["v3_wide_vector"].W % V == 0
    assert geoms["v3_k3s1_vector"].P > kernels.POOL_V3_BLOCK[1]
    assert geoms["v3_dilated_vector"].Q % V == 0 and geoms["v3_dilated_vector"].W % V != 0
    g = geoms["v3_ceil_vector"]
    assert g.Q % V == 0 and (g.Q - 1) * g.stride_w + g.S > g.W  # the last window is clipped
    assert all(geoms[n].Q % V == 0 and geoms[n].W % V == 0
               for n in ("v3_k3s1_vector", "v3_k3s2_vector"))


def bits(a) -> np.ndarray:
    """The raw bytes of an array (NaN payloads and signed zeros included)."""
    return np.ascontiguousarray(host(a)).view(np.uint8)


def address(a) -> int:
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def run_pool(rt, version, g, x, dy, idx=None):
    """(y, idx, dx) of ``version``: forward on x, backward of dy through ``idx`` (default: the
    forward's own indices)."""
    y, fwd_idx = run_maxpool_fwd(rt, g, x, version)
    idx = fwd_idx if idx is None else idx
    dx = poisoned(rt, g.x_shape, x.dtype)
    kernels.maxpool2d_bwd(rt, g, on(rt, dy), on(rt, idx), dx, version=version)
    return y, fwd_idx, host(dx)


# Overlapping windows, each with whole vectors (Q and W multiples of 4) and with row tails.
BITWISE_GEOMETRIES = {
    "k3s1_vector": ((2, 3, 10, 20), 3, 1, 1),
    "k3s1_tail": ((2, 3, 10, 19), 3, 1, 1),
    "k3s2p1_vector": ((2, 3, 11, 32), 3, 2, 1),
    "k3s2p1_tail": ((2, 3, 11, 30), 3, 2, 1),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(BITWISE_GEOMETRIES))
def test_maxpool_v3_is_bitwise_v1(rt, name, dtype):
    """Values from {0, 1, 2} (ties in every window) with some -inf and NaN: v3's y, idx and dx
    have v1's bits; and a backward through arbitrary in-plane indices (most outside the
    windows, which both ignore) too."""
    shape, k, s, pad = BITWISE_GEOMETRIES[name]
    g = pool2d_geometry(shape, k, stride=s, padding=pad)
    rng = rng_for("v3 bitwise", name, np.dtype(dtype).name)
    x = rng.integers(0, 3, size=g.x_shape).astype(dtype)
    x[rng.random(g.x_shape) < 0.05] = -np.inf
    x[rng.random(g.x_shape) < 0.05] = np.nan
    dy = uniform(rng, g.y_shape, dtype)
    want, got = run_pool(rt, "v1", g, x, dy), run_pool(rt, "v3", g, x, dy)
    for what, a, b in zip(("y", "idx", "dx"), want, got):
        assert np.array_equal(bits(a), bits(b)), f"v3 {what} differs from v1's"
    assert (np.diff(want[1], axis=-1) == 0).any()  # windows sharing an argmax: dx sums
    arbitrary = rng.integers(0, g.H * g.W, size=g.y_shape)
    want = run_pool(rt, "v1", g, x, dy, arbitrary)[2]
    assert np.array_equal(bits(want), bits(run_pool(rt, "v3", g, x, dy, arbitrary)[2]))


# Which arrays start one element past a 16-byte boundary: v3 then stores them element by element.
MOVED = [(), ("in",), ("out",), ("idx",), ("in", "out", "idx")]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("moved", MOVED, ids=lambda m: "+".join(m) or "aligned")
def test_maxpool_v3_misaligned_arrays(rt, moved, dtype):
    """Q and W multiples of 4, so aligned arrays take the vector stores: x / dy ("in"),
    y / dx ("out") and idx each moved off alignment on its own (the others keep vector
    stores) give the same results as all aligned: v1's bits."""
    g = pool2d_geometry((2, 3, 9, 32), 3, stride=2, padding=1)
    assert g.Q % V == 0 and g.W % V == 0
    rng = rng_for("v3 misaligned", np.dtype(dtype).name)
    x = rng.integers(0, 5, size=g.x_shape).astype(dtype)
    dy = uniform(rng, g.y_shape, dtype)
    want = run_pool(rt, "v1", g, x, dy)

    def place(a, role):  # a host array on the runtime, moved off alignment if asked
        out = misaligned(a, 1, rt.xp) if role in moved else on(rt, a)
        assert (address(out) % 16 != 0) == (role in moved)
        return out

    y = place(np.full(g.y_shape, np.nan, dtype), "out")
    idx = place(np.full(g.y_shape, IDX_POISON, np.int64), "idx")
    kernels.maxpool2d_fwd(rt, g, place(x, "in"), y, idx, version="v3")
    dx = place(np.full(g.x_shape, np.nan, dtype), "out")
    kernels.maxpool2d_bwd(rt, g, place(dy, "in"), place(want[1], "idx"), dx, version="v3")
    for what, a, b in zip(("y", "idx", "dx"), want, (y, idx, dx)):
        assert np.array_equal(bits(a), bits(b)), f"v3 {what} differs from v1's"


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_maxpool_planes_past_the_grid_z_cap(rt, version, monkeypatch):
    """With the grid's z capped at 2, the kernels loop over all 9 planes (v2 and v3 share the
    cap, POOL_V2_MAX_GRID_Z)."""
    monkeypatch.setattr(kernels, "POOL_V2_MAX_GRID_Z", 2)
    g = pool2d_geometry((3, 3, 9, 16), 3, stride=2, padding=1)
    assert kernels._pool_grid(version, g.Q, g.P, g.N * g.C)[0][2] == 2
    rng = rng_for("pool grid z", version)
    x = distinct(rng, g.x_shape, np.float32)
    _, idx = check_maxpool_fwd(rt, g, x, version)
    dy = uniform(rng, g.y_shape, np.float32)
    dx = poisoned(rt, g.x_shape, np.float32)
    kernels.maxpool2d_bwd(rt, g, on(rt, dy), on(rt, idx), dx, version=version)
    assert_close(host(dx), reference.max_pool2d_input(dy, idx, g), np.float32)


# ----------------------------------------------------------------------------------------
# launch shapes, empty batches, determinism


@pytest.mark.parametrize("problem", [p for p in CONV_PROBLEMS if p.name in
                                     ("odd_sizes", "groups", "stride2_pad1")],
                         ids=lambda p: p.name)
@pytest.mark.parametrize("version", VERSIONS)
def test_capped_grid_still_covers_everything(rt, version, problem, monkeypatch):
    """With the grid capped at 3 blocks (1-D grids: v1, wgrad v2's second pass, bgrad v2) or
    at 2 in z (max-pool v2's planes), the grid-stride loops cover every element."""
    monkeypatch.setattr(kernels, "MAX_GRID_X", 3)
    monkeypatch.setattr(kernels, "POOL_V2_MAX_GRID_Z", 2)
    # fprop / dgrad v2 launch exactly one block per tile (no grid-stride loop): under a cap of
    # 3 blocks they refuse larger geometries (ValueError), so they run v1 here.
    monkeypatch.setenv(kernels.ENV_VERSION, "v1" if version == "v1" else
                       "fprop=v1,dgrad=v1,wgrad=v2,bgrad=v2,pool_fwd=v2,pool_bwd=v2")
    dtype = np.float32
    g, x, w, b, dy = conv_case(problem, dtype, "capped")
    y = poisoned(rt, g.y_shape, dtype)
    kernels.conv2d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b), y)
    assert_close(host(y), reference.conv2d(x, w, b, g), dtype)
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), dx)
    assert_close(host(dx), reference.conv2d_input(dy, w, g), dtype)
    dw = poisoned(rt, g.w_shape, dtype)
    kernels.conv2d_wgrad(rt, g, on(rt, x), on(rt, dy), dw)
    assert_close(host(dw), reference.conv2d_weight(x, dy, g), dtype)
    db = poisoned(rt, (g.K,), dtype)
    kernels.conv2d_bgrad(rt, g, on(rt, dy), db)
    assert_close(host(db), reference.conv2d_bias(dy), dtype)
    pg = pool2d_geometry(g.x_shape, 3, stride=2, padding=1)
    xp = distinct(rng_for("capped pool", problem.name), pg.x_shape, dtype)
    _, idx = check_maxpool_fwd(rt, pg, xp)
    dyp = uniform(rng_for("capped pool dy"), pg.y_shape, dtype)
    dxp = poisoned(rt, pg.x_shape, dtype)
    kernels.maxpool2d_bwd(rt, pg, on(rt, dyp), on(rt, idx), dxp)
    assert_close(host(dxp), reference.max_pool2d_input(dyp, idx, pg), dtype)


def test_empty_batch_launches_nothing(rt):
    g = conv2d_geometry((0, 3, 5, 5), (4, 3, 3, 3))
    x, w = rt.xp.zeros(g.x_shape, np.float32), rt.xp.ones(g.w_shape, np.float32)
    y, dy = rt.xp.zeros(g.y_shape, np.float32), rt.xp.zeros(g.y_shape, np.float32)
    kernels.conv2d_fprop(rt, g, x, w, None, y)
    kernels.conv2d_dgrad(rt, g, dy, w, rt.xp.zeros(g.x_shape, np.float32))
    dw = poisoned(rt, g.w_shape, np.float32)
    kernels.conv2d_wgrad(rt, g, x, dy, dw)  # contract: nothing launched, dw untouched
    assert np.isnan(host(dw)).all()
    pg = pool2d_geometry((0, 2, 4, 4), 2)
    kernels.maxpool2d_fwd(rt, pg, rt.xp.zeros(pg.x_shape, np.float32),
                          rt.xp.zeros(pg.y_shape, np.float32), rt.xp.zeros(pg.y_shape, np.int64))


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("version", VERSIONS)
def test_results_are_bitwise_deterministic(rt, version, dtype):
    problem = next(p for p in CONV_PROBLEMS if p.name == "resnet_3x3_layer")
    g, x, w, b, dy = conv_case(problem, dtype, "determinism")
    x, w, dy = on(rt, x), on(rt, w), on(rt, dy)
    runs = []
    for _ in range(2):
        dx = poisoned(rt, g.x_shape, dtype)
        dw = poisoned(rt, g.w_shape, dtype)
        db = poisoned(rt, (g.K,), dtype)
        kernels.conv2d_dgrad(rt, g, dy, w, dx, version=version)
        kernels.conv2d_wgrad(rt, g, x, dy, dw, version=version)  # v2: split 5 ways here
        kernels.conv2d_bgrad(rt, g, dy, db, version=version)
        runs.append([host(a).tobytes() for a in (dx, dw, db)])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("version", VERSIONS)
def test_bias_is_added_once(rt, version):
    g = conv2d_geometry((1, 2, 4, 4), (3, 2, 3, 3))
    x = np.zeros(g.x_shape, np.float32)
    w = np.ones(g.w_shape, np.float32)
    b = np.array([1.5, -2.0, 0.25], np.float32)
    y = poisoned(rt, g.y_shape, np.float32)
    kernels.conv2d_fprop(rt, g, on(rt, x), on(rt, w), on(rt, b), y, version=version)
    np.testing.assert_array_equal(host(y), np.broadcast_to(b[None, :, None, None], g.y_shape))


# ----------------------------------------------------------------------------------------
# runtime selection


def test_runtimes_are_cached_and_named():
    rt = get_runtime("emulator")
    assert rt is get_runtime("emulator") and rt.name == "emulator" and rt.xp is np
    f = rt.function("maxpool2d.cu", "maxpool2d_fwd_v1_direct<float>")
    assert f is rt.function("maxpool2d.cu", "maxpool2d_fwd_v1_direct<float>")
    with pytest.raises(ValueError, match="runtime name"):
        get_runtime("opencl")


def test_cuda_runtime_without_a_device_says_so():
    if cuda_available():
        pytest.skip("a CUDA device is visible")
    assert cuda_available() is False
    with pytest.raises(RuntimeError, match="emulator"):
        get_runtime("cuda")


def test_cupy_compile_options():
    pytest.importorskip("cupy", reason="CuPy is not installed")
    from gpuconv.runtime import cupy_rt

    # Compute capability 9.0 gets sm_90a's arch-specific features (wgmma: the v5 kernels).
    assert cupy_rt.compile_options("90") == ("-std=c++17", "-arch=sm_90a")
    assert cupy_rt.arch_option("75") == "-arch=sm_75"
    assert cupy_rt.arch_option("80") == "-arch=sm_80"
    # A device newer than NVRTC knows is compiled for the newest architecture NVRTC has.
    from cupy.cuda import nvrtc
    newest = max(nvrtc.getSupportedArchs())
    assert cupy_rt.arch_option(str(newest + 50)) == f"-arch=sm_{newest}"


# ----------------------------------------------------------------------------------------
# the v2 kernels' barriers matter


def _runtime_dropping_barrier(barrier: int) -> Runtime:
    """An emulator runtime whose modules are built with barrier ``barrier`` compiled away."""
    from gpuconv.runtime import cpu_rt

    modules: dict = {}

    def build(source_name, code, name_expressions):
        key = (source_name, name_expressions)
        if key not in modules:
            modules[key] = cpu_rt.RawModule(
                code, options=(f"-DGPUCONV_TEST_DROP_SYNC={barrier}",),
                name_expressions=name_expressions)
        return modules[key]

    return Runtime("emulator", np, build)


# (op, barrier id): common.cuh numbers the barriers (block_sync).
DROPPED = [("fprop", 1), ("fprop", 2), ("dgrad", 1), ("dgrad", 2), ("wgrad", 1), ("wgrad", 2),
           ("bgrad", 3), ("bgrad", 4)]


def _run_op(rt, op, g, x, w, b, dy, version="v2"):
    if op == "fprop":
        out = poisoned(rt, g.y_shape, x.dtype)
        kernels.conv2d_fprop(rt, g, x, w, b, out, version=version)
        return out, reference.conv2d(x, w, b, g)
    if op == "dgrad":
        out = poisoned(rt, g.x_shape, x.dtype)
        kernels.conv2d_dgrad(rt, g, dy, w, out, version=version)
        return out, reference.conv2d_input(dy, w, g)
    if op == "wgrad":
        out = poisoned(rt, g.w_shape, x.dtype)
        kernels.conv2d_wgrad(rt, g, x, dy, out, version="v2")
        return out, reference.conv2d_weight(x, dy, g)
    out = poisoned(rt, (g.K,), x.dtype)
    kernels.conv2d_bgrad(rt, g, dy, out, version="v2")
    return out, reference.conv2d_bias(dy)


# ... and the v2 tile configurations' main loop (the same gemm_mainloop, other tiles).
DROPPED_CONFIGS = [(op, barrier, version) for op in ("fprop", "dgrad") for barrier in (1, 2)
                   for version in V2_CONFIGS]


@pytest.mark.parametrize("op,barrier,version", [(o, b, "v2") for o, b in DROPPED] + DROPPED_CONFIGS,
                         ids=[f"{o}-sync{b}" for o, b in DROPPED]
                         + [f"{o}-sync{b}-{v}" for o, b, v in DROPPED_CONFIGS])
def test_dropping_a_barrier_breaks_v2(op, barrier, version):
    """Built without barrier ``barrier`` (GPUCONV_TEST_DROP_SYNC), the v2 kernel computes wrong
    results on the CPU runtime; the normal build of the same launch is right."""
    problem = next(p for p in CONV_PROBLEMS if p.name == "resnet_3x3_layer")
    g, x, w, b, dy = conv_case(problem, np.float32, "drop sync")
    out, expected = _run_op(get_runtime("emulator"), op, g, x, w, b, dy, version)
    assert_close(out, expected, np.float32, what=f"{op} {version} with every barrier")
    out, expected = _run_op(_runtime_dropping_barrier(barrier), op, g, x, w, b, dy, version)
    assert not compare(out, expected, np.float32), (
        f"{op} {version} without barrier {barrier} still matched the reference")
