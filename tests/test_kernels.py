"""Every kernel against the NumPy reference: op x dtype x problem (gpuconv.problems).

Runs on the CPU runtime (``get_runtime('emulator')``) everywhere, and the same matrix on the
GPU (``get_runtime('cuda')``, marked ``gpu``) where CuPy sees a device. Outputs are
NaN-poisoned before each launch, so an element a kernel fails to write shows as a mismatch.
Comparisons use gpuconv.checking's per-dtype tolerances; max-pool values and indices must
match exactly.

Max-pool inputs are all distinct within each plane (a permutation plus jitter), so the argmax
is unique; ties, NaN, -inf, all -inf windows and ceil_mode windows have their own tests.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from gpuconv import kernels, reference
from gpuconv.checking import assert_close, distinct_values
from gpuconv.geometry import conv2d_geometry, pool2d_geometry
from gpuconv.problems import CONV_PROBLEMS, POOL_PROBLEMS
from gpuconv.runtime import cuda_available, get_runtime

DTYPES = [np.float16, np.float32, np.float64]
IDX_POISON = -7  # what index outputs are filled with before a launch (never a valid index)

RUNTIMES = [
    pytest.param("emulator", id="emulator"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(params=RUNTIMES)
def rt(request):
    if request.param == "cuda" and not cuda_available():
        pytest.skip("no CUDA device visible to CuPy (or CuPy not installed)")
    return get_runtime(request.param)


# ----------------------------------------------------------------------------------------
# helpers


def rng_for(*parts) -> np.random.Generator:
    """A generator seeded from the test's identity, stable from run to run."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


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
    if np.dtype(dtype).kind == "f":
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


def run_maxpool_fwd(rt, g, x):
    y = poisoned(rt, g.y_shape, x.dtype)
    idx = poisoned(rt, g.y_shape, np.int64)
    kernels.maxpool2d_fwd(rt, g, on(rt, x), y, idx)
    return host(y), host(idx)


def check_maxpool_fwd(rt, g, x):
    """Kernel vs reference: values and indices equal exactly (NaN meets NaN)."""
    y, idx = run_maxpool_fwd(rt, g, x)
    y_ref, idx_ref = reference.max_pool2d(x, g)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, idx_ref, err_msg="argmax indices differ")
    np.testing.assert_array_equal(y, y_ref, err_msg="max values differ")
    return y, idx


# ----------------------------------------------------------------------------------------
# conv2d: the problem matrix


CONV_IDS = [p.name for p in CONV_PROBLEMS]
POOL_IDS = [p.name for p in POOL_PROBLEMS]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV_PROBLEMS, ids=CONV_IDS)
def test_conv2d_fprop(rt, problem, dtype):
    g, x, w, b, _ = conv_case(problem, dtype, "fprop")
    y = poisoned(rt, g.y_shape, dtype)
    kernels.conv2d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b), y)
    assert_close(host(y), reference.conv2d(x, w, b, g), dtype, what=f"fprop {problem.name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV_PROBLEMS, ids=CONV_IDS)
def test_conv2d_dgrad(rt, problem, dtype):
    g, _, w, _, dy = conv_case(problem, dtype, "dgrad")
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), dx)
    assert_close(host(dx), reference.conv2d_input(dy, w, g), dtype, what=f"dgrad {problem.name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV_PROBLEMS, ids=CONV_IDS)
def test_conv2d_wgrad(rt, problem, dtype):
    g, x, _, _, dy = conv_case(problem, dtype, "wgrad")
    dw = poisoned(rt, g.w_shape, dtype)
    kernels.conv2d_wgrad(rt, g, on(rt, x), on(rt, dy), dw)
    # The kernel sums float16 products in float (like the reference's float64, the sum itself
    # adds no float16 rounding), so the default tolerance holds for these N*P*Q <= 400 sums.
    assert_close(host(dw), reference.conv2d_weight(x, dy, g), dtype,
                 what=f"wgrad {problem.name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV_PROBLEMS, ids=CONV_IDS)
def test_conv2d_bgrad(rt, problem, dtype):
    g, _, _, _, dy = conv_case(problem, dtype, "bgrad")
    db = poisoned(rt, (g.K,), dtype)
    kernels.conv2d_bgrad(rt, g, on(rt, dy), db)
    assert_close(host(db), reference.conv2d_bias(dy), dtype, what=f"bgrad {problem.name}")


# ----------------------------------------------------------------------------------------
# max-pool: the problem matrix


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", POOL_PROBLEMS, ids=POOL_IDS)
def test_maxpool2d_fwd(rt, problem, dtype):
    g = pool_geometry(problem)
    x = distinct(rng_for("pool_fwd", problem.name, np.dtype(dtype).name), g.x_shape, dtype)
    check_maxpool_fwd(rt, g, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", POOL_PROBLEMS, ids=POOL_IDS)
def test_maxpool2d_bwd(rt, problem, dtype):
    g = pool_geometry(problem)
    rng = rng_for("pool_bwd", problem.name, np.dtype(dtype).name)
    x = distinct(rng, g.x_shape, dtype)
    _, idx = reference.max_pool2d(x, g)
    dy = uniform(rng, g.y_shape, dtype)
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.maxpool2d_bwd(rt, g, on(rt, dy), on(rt, idx), dx)
    assert_close(host(dx), reference.max_pool2d_input(dy, idx, g), dtype,
                 what=f"maxpool bwd {problem.name}")


# ----------------------------------------------------------------------------------------
# max-pool: PyTorch's rules, each on its own


def test_maxpool_ties_take_the_first_maximum(rt):
    # 2x2 windows over a plane of a few repeated values: every window has ties.
    g = pool2d_geometry((2, 3, 8, 9), 3, stride=2, padding=1)
    x = rng_for("ties").integers(0, 3, size=g.x_shape).astype(np.float32)
    check_maxpool_fwd(rt, g, x)
    # A hand-checked window: all four equal -> the first (row-major) index 0.
    g1 = pool2d_geometry((1, 1, 2, 2), 2)
    y, idx = run_maxpool_fwd(rt, g1, np.full((1, 1, 2, 2), 5.0, np.float32))
    assert idx.item() == 0 and y.item() == 5.0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_maxpool_nan_gives_nan_and_the_last_nan_index(rt, dtype):
    g = pool2d_geometry((2, 2, 9, 10), 3, stride=2, padding=1)
    rng = rng_for("nan", np.dtype(dtype).name)
    x = distinct(rng, g.x_shape, dtype)
    x[rng.random(g.x_shape) < 0.15] = np.nan
    y, idx = check_maxpool_fwd(rt, g, x)
    assert np.isnan(y).any() and not np.isnan(y).all()
    # Hand-checked: [[nan, 3], [nan, 1]] -> NaN at the last NaN, index 2.
    g1 = pool2d_geometry((1, 1, 2, 2), 2)
    y1, idx1 = run_maxpool_fwd(rt, g1, np.array([[[[np.nan, 3], [np.nan, 1]]]], dtype))
    assert np.isnan(y1.item()) and idx1.item() == 2


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_maxpool_minus_inf_and_all_minus_inf_windows(rt, dtype):
    # Padding 1: corner windows hold padding plus in-bounds -inf only -> the first in-bounds
    # element's index, never a padding position.
    g = pool2d_geometry((1, 2, 6, 7), 3, stride=2, padding=1)
    rng = rng_for("-inf", np.dtype(dtype).name)
    x = distinct(rng, g.x_shape, dtype)
    x[0, 0] = -np.inf                                    # a plane of -inf: every window
    x[0, 1][rng.random((6, 7)) < 0.5] = -np.inf          # -inf mixed with values
    y, idx = check_maxpool_fwd(rt, g, x)
    assert np.all(y[0, 0] == -np.inf)
    # Top-left window covers rows/cols -1..1: its first in-bounds element is (0, 0) -> 0.
    assert idx[0, 0, 0, 0] == 0
    # Window (1, 2) covers rows 1..3, cols 3..5: first in-bounds element (1, 3) -> 1*7+3.
    assert idx[0, 0, 1, 2] == 1 * 7 + 3


def test_maxpool_ceil_mode_windows_are_clipped(rt):
    # H=W=6, k=3, s=2, ceil_mode: the last window starts at 4 and is clipped to rows 4..5.
    g = pool2d_geometry((1, 1, 6, 6), 3, stride=2, ceil_mode=True)
    assert (g.P, g.Q) == (3, 3)
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    x[0, 0, 4:, 4:] = -np.inf  # the clipped corner window holds only -inf
    y, idx = check_maxpool_fwd(rt, g, x)
    assert y[0, 0, 2, 2] == -np.inf and idx[0, 0, 2, 2] == 4 * 6 + 4
    assert idx[0, 0, 2, 0] == 5 * 6 + 2  # clipped bottom window: max at row 5, col 2
    # With padding and the ceil_mode correction (H=5, k=2, s=2, p=1 -> 3), ties everywhere.
    g = pool2d_geometry((1, 2, 5, 5), 2, stride=2, padding=1, ceil_mode=True)
    check_maxpool_fwd(rt, g, np.ones(g.x_shape, np.float64))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_maxpool_bwd_accumulates_ties_and_overlaps(rt, dtype):
    # Stride 1 over a constant plane: every window picks its first element, so elements
    # shared by several windows receive several gradients.
    g = pool2d_geometry((1, 2, 5, 6), 3, stride=1, padding=1)
    x = np.zeros(g.x_shape, dtype)
    _, idx = check_maxpool_fwd(rt, g, x)
    dy = uniform(rng_for("bwd_ties", np.dtype(dtype).name), g.y_shape, dtype)
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.maxpool2d_bwd(rt, g, on(rt, dy), on(rt, idx), dx)
    assert_close(host(dx), reference.max_pool2d_input(dy, idx, g), dtype)


# ----------------------------------------------------------------------------------------
# launch shapes, empty batches, determinism


@pytest.mark.parametrize("problem", [p for p in CONV_PROBLEMS if p.name in
                                     ("odd_sizes", "groups", "stride2_pad1")],
                         ids=lambda p: p.name)
def test_capped_grid_still_covers_everything(rt, problem, monkeypatch):
    """With the grid capped at 3 blocks, the grid-stride loops cover every element."""
    monkeypatch.setattr(kernels, "MAX_GRID_X", 3)
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
def test_results_are_bitwise_deterministic(rt, dtype):
    problem = next(p for p in CONV_PROBLEMS if p.name == "resnet_3x3_layer")
    g, x, w, b, dy = conv_case(problem, dtype, "determinism")
    x, w, dy = on(rt, x), on(rt, w), on(rt, dy)
    runs = []
    for _ in range(2):
        dx = poisoned(rt, g.x_shape, dtype)
        dw = poisoned(rt, g.w_shape, dtype)
        db = poisoned(rt, (g.K,), dtype)
        kernels.conv2d_dgrad(rt, g, dy, w, dx)
        kernels.conv2d_wgrad(rt, g, x, dy, dw)
        kernels.conv2d_bgrad(rt, g, dy, db)
        runs.append([host(a).tobytes() for a in (dx, dw, db)])
    assert runs[0] == runs[1]


def test_bias_is_added_once(rt):
    g = conv2d_geometry((1, 2, 4, 4), (3, 2, 3, 3))
    x = np.zeros(g.x_shape, np.float32)
    w = np.ones(g.w_shape, np.float32)
    b = np.array([1.5, -2.0, 0.25], np.float32)
    y = poisoned(rt, g.y_shape, np.float32)
    kernels.conv2d_fprop(rt, g, on(rt, x), on(rt, w), on(rt, b), y)
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

    assert cupy_rt.compile_options("90") == ("-std=c++17", "-arch=sm_90")
    assert cupy_rt.arch_option("75") == "-arch=sm_75"
    # A device newer than NVRTC knows is compiled for the newest architecture NVRTC has.
    from cupy.cuda import nvrtc
    newest = max(nvrtc.getSupportedArchs())
    assert cupy_rt.arch_option(str(newest + 50)) == f"-arch=sm_{newest}"
