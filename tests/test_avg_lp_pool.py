"""avg_pool2d and lp_pool2d (seed 002 §9.3), forward and input gradient.

* the reference against naive loops written from PyTorch's C++ rules (tiny shapes);
* the public ops (NumPy reference path and the CPU runtime) against torch, forward and
  autograd, over a grid of kernel/stride/padding/ceil_mode/count_include_pad/divisor_override;
* the kernels (cuda/avgpool2d.cu) on the CPU runtime, and on the GPU where there is one,
  against the reference for float16/32/64 over gpuconv.problems.AVGPOOL_PROBLEMS, outputs
  NaN-poisoned before each launch;
* float64 finite differences of both gradients;
* invalid arguments: the exception type and the argument's name in the message.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import gpuconv
from gpuconv import checking, grad, kernels, reference
from gpuconv.checking import assert_close
from gpuconv.geometry import avg_pool2d_geometry
from gpuconv.problems import AVGPOOL_PROBLEMS, LPPOOL_NORMS, LPPOOL_PROBLEMS
from gpuconv.runtime import get_runtime
from helpers import numeric_grad  # noqa: E402

DTYPES = list(checking.DTYPES)  # float16, bfloat16, float32, float64


# ----------------------------------------------------------------------------------------
# naive loops, written from PyTorch's avg_pool2d (aten/src/ATen/native/cpu/AvgPoolKernel.cpp)


def naive_out_size(size, k, s, pad, ceil_mode):
    out = (size + 2 * pad - k + ((s - 1) if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + pad:
        out -= 1
    return out


def naive_avg_pool(x, k, s, pad, ceil_mode=False, count_include_pad=True, divisor=None):
    N, C, H, W = x.shape
    P = naive_out_size(H, k[0], s[0], pad[0], ceil_mode)
    Q = naive_out_size(W, k[1], s[1], pad[1], ceil_mode)
    y = np.zeros((N, C, P, Q))
    div = np.zeros((P, Q))
    for p in range(P):
        for q in range(Q):
            h0, w0 = p * s[0] - pad[0], q * s[1] - pad[1]
            h1, w1 = min(h0 + k[0], H + pad[0]), min(w0 + k[1], W + pad[1])
            pool_size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            if divisor:
                div[p, q] = divisor
            elif count_include_pad:
                div[p, q] = pool_size
            else:
                div[p, q] = (h1 - h0) * (w1 - w0)
            for n in range(N):
                for c in range(C):
                    total = 0.0
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            total += float(x[n, c, h, w])
                    y[n, c, p, q] = total / div[p, q]
    return y, div


def naive_avg_pool_input(dy, x_shape, k, s, pad, div):
    """Scatter: every output adds dy / divisor to each input cell of its window."""
    N, C, H, W = x_shape
    dx = np.zeros(x_shape)
    P, Q = dy.shape[2:]
    for n, c, p, q in itertools.product(range(N), range(C), range(P), range(Q)):
        for r in range(k[0]):
            for t in range(k[1]):
                h, w = p * s[0] - pad[0] + r, q * s[1] - pad[1] + t
                if 0 <= h < H and 0 <= w < W:
                    dx[n, c, h, w] += dy[n, c, p, q] / div[p, q]
    return dx


NAIVE_CASES = [
    # (shape, kernel, stride, pad, ceil_mode, count_include_pad, divisor_override)
    ((1, 2, 5, 5), (2, 2), (2, 2), (1, 1), True, True, None),      # FACTS.md's H=5 k2 s2 p1
    ((2, 1, 6, 7), (3, 3), (2, 2), (1, 1), True, True, None),      # window past padded input
    ((2, 1, 6, 7), (3, 3), (2, 2), (1, 1), True, False, None),
    ((1, 2, 7, 5), (3, 2), (1, 2), (1, 0), False, False, None),
    ((1, 1, 6, 6), (2, 3), (2, 1), (0, 1), False, True, 7),
    ((1, 1, 9, 7), (3, 3), (2, 2), (0, 0), True, True, None),      # partial window, no pad
]


@pytest.mark.parametrize("case", NAIVE_CASES, ids=str)
def test_reference_matches_naive_loops(case):
    shape, k, s, pad, ceil_mode, cip, div = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    g = avg_pool2d_geometry(shape, k, s, pad, ceil_mode, cip, div)
    want, divisors = naive_avg_pool(x, k, s, pad, ceil_mode, cip, div)
    np.testing.assert_allclose(reference.avg_pool2d(x, g), want, rtol=1e-13, atol=1e-13)
    dy = rng.standard_normal(want.shape)
    np.testing.assert_allclose(reference.avg_pool2d_input(dy, g),
                               naive_avg_pool_input(dy, shape, k, s, pad, divisors),
                               rtol=1e-13, atol=1e-13)


def test_reference_lp_matches_naive_loops():
    """lp = (sum x**p * R*S / divisor)**(1/p): a plain p-norm for full windows."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 2.0, (1, 2, 7, 7))
    for p, ceil_mode in ((2, False), (3, True), (1.5, True)):
        g = avg_pool2d_geometry(x.shape, 3, 2, 0, ceil_mode)
        powered, divisors = naive_avg_pool(x ** p, (3, 3), (2, 2), (0, 0), ceil_mode)
        want = (powered * 9) ** (1 / p)
        np.testing.assert_allclose(reference.lp_pool2d(x, g, p), want, rtol=1e-13)
        # full windows: the p-norm of the window itself
        assert math.isclose(want[0, 0, 0, 0], np.sum(x[0, 0, :3, :3] ** p) ** (1 / p))


def test_ceil_mode_window_past_the_padded_input_divides_by_its_clipped_size():
    """H=6, k3, s2, p1, ceil_mode: the last window spans rows 5..7 of which only 5..6 lie in
    the padded input (6 = H + pad - 1): divisor 2*3 with count_include_pad, not 9."""
    g = avg_pool2d_geometry((1, 1, 6, 5), 3, 2, 1, True)
    assert (g.P, g.Q) == (4, 3)
    assert g.divisor(3, 1) == 2 * 3 and g.divisor(0, 0) == 9 and g.divisor(1, 1) == 9
    x = np.ones((1, 1, 6, 5))
    y = gpuconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True)
    assert y[0, 0, 3, 1] == pytest.approx(3 / 6)   # 3 input cells / 6
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)   # corner: 4 input cells / 9


# ----------------------------------------------------------------------------------------
# against torch

def _torch():
    return pytest.importorskip("torch")


AVG_TORCH_CASES = [
    dict(kernel_size=k, stride=s, padding=p, ceil_mode=cm, count_include_pad=cip,
         divisor_override=d)
    for k, s, p in [(2, None, 0), (3, 2, 1), ((3, 2), (2, 1), (1, 1)), (3, 1, 1), ((2, 4), 3, (1, 2))]
    for cm in (False, True) for cip in (True, False) for d in (None, 3)
]


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_avg_pool2d_and_its_gradient_match_torch(backend):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 10))
    with gpuconv.use_backend(backend):
        for kw in AVG_TORCH_CASES:
            tx = torch.tensor(x, requires_grad=True)
            ty = F.avg_pool2d(tx, **kw)
            dy = rng.standard_normal(tuple(ty.shape))
            ty.backward(torch.tensor(dy))
            y = gpuconv.avg_pool2d(x, **kw)
            np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=str(kw))
            dx = grad.avg_pool2d_input(dy, x.shape, **kw)
            np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=str(kw))


def test_avg_pool2d_float32_and_unbatched_match_torch():
    torch = _torch()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 7, 8)).astype(np.float32)
    for backend in ("numpy", "emulator"):
        with gpuconv.use_backend(backend):
            y = gpuconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        want = torch.nn.functional.avg_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True,
                                              count_include_pad=False).numpy()
        assert y.shape == want.shape == (3, 4, 5) and y.dtype == np.float32
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


LP_TORCH_CASES = [dict(kernel_size=k, stride=s, ceil_mode=cm)
                  for k, s in [(2, None), (3, 2), ((2, 3), (1, 2))] for cm in (False, True)]


@pytest.mark.parametrize("norm_type", [1, 2, 3, 1.5, -1, float("inf"), float("-inf")])
@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_lp_pool2d_and_its_gradient_match_torch(norm_type, backend):
    """Including negative inputs: NaN exactly where torch gives NaN (odd p with a negative
    window sum, a negative base with a non-integer p), and zero windows."""
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 7, 8))
    x[0, 0, :2, :2] = 0.0   # an all-zero window: y = 0, no gradient (PyTorch's rule)
    with gpuconv.use_backend(backend):
        for kw in LP_TORCH_CASES:
            tx = torch.tensor(x, requires_grad=True)
            ty = F.lp_pool2d(tx, norm_type, **kw)
            dy = rng.standard_normal(tuple(ty.shape))
            ty.backward(torch.tensor(dy))
            y = gpuconv.lp_pool2d(x, norm_type, **kw)
            np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12,
                                       equal_nan=True, err_msg=str(kw))
            dx = grad.lp_pool2d_input(dy, x, norm_type, **kw)
            np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12,
                                       equal_nan=True, err_msg=str(kw))


def test_lp_pool2d_float16_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(5)
    x = rng.uniform(0.2, 2.0, (1, 3, 8, 9)).astype(np.float16)
    want = torch.nn.functional.lp_pool2d(torch.tensor(x), 2, 3, 2, ceil_mode=True).numpy()
    with gpuconv.use_backend("emulator"):
        y = gpuconv.lp_pool2d(x, 2, 3, 2, ceil_mode=True)
    assert y.dtype == np.float16
    assert_close(y, want, np.float16)


def test_l2_pooling_is_the_window_norm():
    """Seed 002: L2-norm pooling is the square root of the window's sum of squares."""
    x = np.array([[[[3.0, 0.0, 1.0, 2.0], [0.0, 4.0, 2.0, 4.0]]]])
    np.testing.assert_allclose(gpuconv.lp_pool2d(x, 2, 2), [[[[5.0, 5.0]]]])


# ----------------------------------------------------------------------------------------
# the kernels on a runtime vs the reference


def _poisoned(xp, shape, dtype):
    out = xp.empty(shape, dtype)
    out.fill(np.nan)
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", AVGPOOL_PROBLEMS, ids=lambda p: p.name)
def test_avgpool_kernels_match_reference(rt, problem, dtype):
    g = avg_pool2d_geometry(problem.x_shape, **problem.kwargs)
    rng = np.random.default_rng(6)
    x = rng.standard_normal(g.x_shape).astype(dtype)
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    y = _poisoned(rt.xp, g.y_shape, dtype)
    kernels.avgpool2d_fwd(rt, g, rt.xp.asarray(x), y)
    assert_close(_host(y), reference.avg_pool2d(x, g), dtype, what=f"fwd {problem.name}")
    dx = _poisoned(rt.xp, g.x_shape, dtype)
    kernels.avgpool2d_bwd(rt, g, rt.xp.asarray(dy), dx)
    assert_close(_host(dx), reference.avg_pool2d_input(dy, g), dtype,
                 what=f"bwd {problem.name}")


def _host(a):
    return a if isinstance(a, np.ndarray) else a.get()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", LPPOOL_PROBLEMS, ids=lambda p: p.name)
def test_lp_pool_on_the_kernels_matches_reference(rt, problem, dtype):
    g = avg_pool2d_geometry(problem.x_shape, problem.kernel_size, problem.stride, 0,
                            problem.ceil_mode)
    kw = dict(kernel_size=problem.kernel_size, stride=problem.stride,
              ceil_mode=problem.ceil_mode)
    rng = np.random.default_rng(7)
    x = rng.uniform(0.5, 1.5, g.x_shape).astype(dtype)
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    with gpuconv.use_backend(rt.name):
        for p in LPPOOL_NORMS:
            assert_close(gpuconv.lp_pool2d(x, p, **kw), reference.lp_pool2d(x, g, p), dtype,
                         what=f"lp{p} {problem.name}")
            assert_close(grad.lp_pool2d_input(dy, x, p, **kw),
                         reference.lp_pool2d_input(dy, x, g, p), dtype,
                         what=f"lp{p} grad {problem.name}")


def test_kernels_are_deterministic():
    rt = get_runtime("emulator")
    g = avg_pool2d_geometry((2, 3, 15, 14), 3, 1, 1)
    dy = np.random.default_rng(8).standard_normal(g.y_shape).astype(np.float32)
    results = []
    for _ in range(3):
        dx = _poisoned(np, g.x_shape, np.float32)
        kernels.avgpool2d_bwd(rt, g, dy, dx)
        results.append(dx)
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_only_version_v1_exists():
    g = avg_pool2d_geometry((1, 1, 4, 4), 2)
    with pytest.raises(ValueError, match="versions"):
        kernels.avgpool2d_fwd(get_runtime("emulator"), g, np.zeros((1, 1, 4, 4)),
                              np.zeros((1, 1, 2, 2)), version="v2")


# ----------------------------------------------------------------------------------------
# finite differences (float64)


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                dict(kernel_size=(2, 3), stride=1, count_include_pad=False,
                                     padding=(1, 1)),
                                dict(kernel_size=2, divisor_override=3)], ids=str)
def test_avg_pool_gradient_by_finite_differences(kw):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 2, 6, 5))
    dy = rng.standard_normal(gpuconv.avg_pool2d(x, **kw).shape)
    want = numeric_grad(lambda: np.sum(gpuconv.avg_pool2d(x, **kw) * dy), x)
    for backend in ("numpy", "emulator"):
        with gpuconv.use_backend(backend):
            np.testing.assert_allclose(grad.avg_pool2d_input(dy, x.shape, **kw), want,
                                       rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("norm_type", [2, 3, 1.5])
def test_lp_pool_gradient_by_finite_differences(norm_type):
    rng = np.random.default_rng(10)
    x = rng.uniform(0.3, 1.5, (1, 2, 7, 6))
    kw = dict(kernel_size=3, stride=2, ceil_mode=True)
    dy = rng.standard_normal(gpuconv.lp_pool2d(x, norm_type, **kw).shape)
    want = numeric_grad(lambda: np.sum(gpuconv.lp_pool2d(x, norm_type, **kw) * dy), x)
    for backend in ("numpy", "emulator"):
        with gpuconv.use_backend(backend):
            np.testing.assert_allclose(grad.lp_pool2d_input(dy, x, norm_type, **kw), want,
                                       rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------------------
# API details and invalid arguments


def test_exports_and_docstrings():
    for fn in (gpuconv.avg_pool2d, gpuconv.lp_pool2d, grad.avg_pool2d_input,
               grad.lp_pool2d_input):
        assert fn.__doc__ and ">>>" in fn.__doc__, fn.__name__
    assert {"avg_pool2d", "lp_pool2d"} <= set(gpuconv.__all__)


def test_docstring_examples_pass():
    import doctest
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for fn in (gpuconv.avg_pool2d, gpuconv.lp_pool2d, grad.avg_pool2d_input,
               grad.lp_pool2d_input):
        for test in finder.find(fn, fn.__name__, globs={}):
            runner.run(test)
    assert runner.failures == 0 and runner.tries >= 4


def test_empty_batch():
    x = np.zeros((0, 2, 6, 6), np.float32)
    y = gpuconv.avg_pool2d(x, 2)
    assert y.shape == (0, 2, 3, 3) and y.dtype == np.float32
    with gpuconv.use_backend("emulator"):
        assert grad.avg_pool2d_input(y, x.shape, 2).shape == x.shape
        assert gpuconv.lp_pool2d(x, 2, 2).shape == (0, 2, 3, 3)
        assert grad.lp_pool2d_input(y, x, 2, 2).shape == x.shape


X = np.zeros((1, 2, 6, 6), np.float32)


@pytest.mark.parametrize("call,exc,name", [
    (lambda: gpuconv.avg_pool2d(X, 2, padding=2), ValueError, "padding"),
    (lambda: gpuconv.avg_pool2d(X, 0), ValueError, "kernel_size"),
    (lambda: gpuconv.avg_pool2d(X, 2, stride=0), ValueError, "stride"),
    (lambda: gpuconv.avg_pool2d(X, 7), ValueError, "kernel_size"),
    (lambda: gpuconv.avg_pool2d(X, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda: gpuconv.avg_pool2d(X, 2, divisor_override=1.5), TypeError, "divisor_override"),
    (lambda: gpuconv.avg_pool2d(X, 2, count_include_pad="yes"), TypeError,
     "count_include_pad"),
    (lambda: gpuconv.avg_pool2d(X, 2, ceil_mode="no"), TypeError, "ceil_mode"),
    (lambda: gpuconv.avg_pool2d(X[0, 0], 2), ValueError, "input"),
    (lambda: gpuconv.avg_pool2d(X.astype(np.int32), 2), TypeError, "input"),
    (lambda: gpuconv.avg_pool2d([[1.0]], 1), TypeError, "input"),
    (lambda: grad.avg_pool2d_input(np.zeros((1, 2, 2, 2)), (1, 2, 6, 6), 2), ValueError,
     "grad_output"),
    (lambda: grad.avg_pool2d_input(np.zeros((1, 2, 3, 3)), (2, 6, 6), 2), ValueError,
     "input_size"),
    (lambda: gpuconv.lp_pool2d(X, 0, 2), ValueError, "norm_type"),
    (lambda: gpuconv.lp_pool2d(X, float("nan"), 2), ValueError, "norm_type"),
    (lambda: gpuconv.lp_pool2d(X, "2", 2), TypeError, "norm_type"),
    (lambda: gpuconv.lp_pool2d(X, True, 2), TypeError, "norm_type"),
    (lambda: gpuconv.lp_pool2d(X, 2, 2, stride=(1, 0)), ValueError, "stride"),
    (lambda: grad.lp_pool2d_input(np.zeros((1, 2, 3, 3), np.float32), X[0], 2, 2),
     ValueError, "input"),
    (lambda: grad.lp_pool2d_input(np.zeros((1, 2, 3, 3)), X, 2, 2), TypeError, "input"),
    (lambda: grad.lp_pool2d_input(np.zeros((1, 2, 2, 3), np.float32), X, 2, 2), ValueError,
     "grad_output"),
])
def test_invalid_arguments_name_the_argument(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_lp_pool2d_result_comes_from_the_output_allocator():
    """gpuconv.torch hands PyTorch's allocator to dispatch.output_allocator: lp_pool2d's result
    (computed after the average-pool kernel) is written into memory from it too."""
    from gpuconv import dispatch

    given = []

    def allocate(shape, dtype):
        given.append(np.zeros(shape, dtype))
        return given[-1]

    x = np.abs(np.random.default_rng(0).standard_normal((2, 3, 6, 6))).astype(np.float32)
    with dispatch.output_allocator(allocate):
        y = gpuconv.lp_pool2d(x, 2, 2)
    assert any(np.shares_memory(y, a) for a in given)
    np.testing.assert_allclose(y, np.sqrt((x.reshape(2, 3, 3, 2, 3, 2) ** 2).sum(axis=(3, 5))),
                               rtol=1e-5)
