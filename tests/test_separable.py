"""separable_conv2d (seed 002 §9.8): a rank-1 kernel run as an R x 1 then a 1 x S pass.

* equal to conv2d with the outer-product kernel (stride, padding incl. 'same'/'full',
  dilation, groups, bias, unbatched) on the reference path and on the kernels (CPU runtime;
  GPU where present), float16/32/64 over gpuconv.problems.SEPARABLE_PROBLEMS;
* against torch (forward and autograd of F.conv2d with the outer product of the factors);
* gradients: input and both factors, by float64 finite differences too;
* separable_factors: Sobel, Gaussian, per-filter factorisation of a 4-D weight, refusal of
  rank-2 kernels;
* invalid arguments name the argument.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv import checking, grad
from gpuconv.checking import check_case
from gpuconv.problems import SEPARABLE_PROBLEMS
from gpuconv.runtime import cuda_available
from helpers import numeric_grad  # noqa: E402

DTYPES = list(checking.DTYPES)  # float16, bfloat16, float32, float64
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def outer(u, v):
    """(K, C/g, R) x (K, S) -> the conv2d weight (K, C/g, R, S)."""
    return u[:, :, :, None] * v[:, None, None, :]


def factors(rng, K, Cg, R, S, dtype=np.float64):
    return (rng.standard_normal((K, Cg, R)).astype(dtype),
            rng.standard_normal((K, S)).astype(dtype))


CASES = [
    # (x shape, K, R, S, kwargs)
    ((2, 3, 9, 10), 3, 3, 3, dict(padding=1, groups=3)),
    ((2, 4, 11, 10), 6, 3, 4, dict()),
    ((2, 4, 11, 10), 6, 3, 4, dict(stride=2, padding=1)),
    ((1, 4, 12, 9), 2, 5, 3, dict(stride=(2, 1), padding=(2, 0), dilation=(1, 2))),
    ((2, 2, 10, 9), 3, 4, 2, dict(padding="same", dilation=2)),
    ((1, 2, 7, 8), 2, 3, 4, dict(padding="full", stride=(1, 2))),
    ((2, 4, 9, 9), 4, 3, 3, dict(padding="valid", groups=2)),
    ((2, 4, 9, 9), 8, 3, 5, dict(padding=(1, 2), groups=4)),     # channel multiplier 2
]


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_equals_conv2d_with_the_outer_product_kernel(case, backend):
    shape, K, R, S, kw = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    u, v = factors(rng, K, shape[1] // kw.get("groups", 1), R, S)
    b = rng.standard_normal(K)
    with gpuconv.use_backend(backend):
        y = gpuconv.separable_conv2d(x, u, v, b, **kw)
        want = gpuconv.conv2d(x, outer(u, v), b, **kw)
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
        dy = rng.standard_normal(y.shape)
        np.testing.assert_allclose(grad.separable_conv2d_input(x.shape, u, v, dy, **kw),
                                   grad.conv2d_input(x.shape, outer(u, v), dy, **kw),
                                   rtol=1e-12, atol=1e-12)
        du, dv = grad.separable_conv2d_weight(x, u, v, dy, **kw)
        dw = grad.conv2d_weight(x, (K, u.shape[1], R, S), dy, **kw)
        np.testing.assert_allclose(du, np.einsum("kcrs,ks->kcr", dw, v), rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(dv, np.einsum("kcrs,kcr->ks", dw, u), rtol=1e-11, atol=1e-11)


def test_matches_torch_forward_and_autograd():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    for shape, K, R, S, kw in CASES:
        if kw.get("padding") == "full":
            continue  # a gpuconv extension; torch has no 'full' padding
        x = rng.standard_normal(shape)
        u, v = factors(rng, K, shape[1] // kw.get("groups", 1), R, S)
        b = rng.standard_normal(K)
        tx, tu, tv, tb = (torch.tensor(a, requires_grad=True) for a in (x, u, v, b))
        ty = F.conv2d(tx, tu[:, :, :, None] * tv[:, None, None, :], tb, **kw)
        dy = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(gpuconv.separable_conv2d(x, u, v, b, **kw),
                                   ty.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(grad.separable_conv2d_input(x.shape, u, v, dy, **kw),
                                   tx.grad.numpy(), rtol=1e-10, atol=1e-10)
        du, dv = grad.separable_conv2d_weight(x, u, v, dy, **kw)
        np.testing.assert_allclose(du, tu.grad.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(dv, tv.grad.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(grad.conv2d_bias(dy), tb.grad.numpy(), rtol=1e-12)


def test_unbatched_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 8, 7))
    u, v = factors(rng, 3, 1, 3, 3)
    y = gpuconv.separable_conv2d(x, u, v, padding=1, groups=3)
    np.testing.assert_allclose(y, gpuconv.separable_conv2d(x[None], u, v, padding=1,
                                                            groups=3)[0])
    dy = np.ones_like(y)
    dx = grad.separable_conv2d_input(x.shape, u, v, dy, padding=1, groups=3)
    assert dx.shape == x.shape
    du, dv = grad.separable_conv2d_weight(x, u, v, dy, padding=1, groups=3)
    assert du.shape == u.shape and dv.shape == v.shape


def test_sobel_on_each_channel_is_the_2d_sobel():
    """Seed 001's Sobel filter: [1, 2, 1]^T [-1, 0, 1] on every channel (groups = C)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 12, 12))
    u, v = gpuconv.separable_factors(np.broadcast_to(SOBEL_X, (3, 1, 3, 3)).copy())
    y = gpuconv.separable_conv2d(x, u, v, padding=1, groups=3)
    want = gpuconv.conv2d(x, np.broadcast_to(SOBEL_X, (3, 1, 3, 3)).copy(), padding=1, groups=3)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------
# the kernels (two conv2d passes) on a runtime: the check matrix's separable entries

RUNTIMES = [pytest.param("emulator", id="emulator"),
            pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("op", ["separable_conv2d", "separable_conv2d_input",
                                "separable_conv2d_weight"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", SEPARABLE_PROBLEMS, ids=lambda p: p.name)
def test_kernels_match_reference(problem, dtype, op, runtime):
    if runtime == "cuda" and not cuda_available():
        pytest.skip("no CUDA device visible to CuPy (or CuPy not installed)")
    with gpuconv.use_backend(runtime):
        result = check_case(op, problem, dtype)
    assert result, result.report


# ----------------------------------------------------------------------------------------
# finite differences (float64)


def test_gradients_by_finite_differences():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 7, 6))
    u, v = factors(rng, 3, 2, 3, 2)
    kw = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2))
    f = lambda: gpuconv.separable_conv2d(x, u, v, **kw)  # noqa: E731
    dy = rng.standard_normal(f().shape)
    for backend in ("numpy", "emulator"):
        with gpuconv.use_backend(backend):
            np.testing.assert_allclose(grad.separable_conv2d_input(x.shape, u, v, dy, **kw),
                                       numeric_grad(lambda: np.sum(f() * dy), x), rtol=1e-6, atol=1e-8)
            du, dv = grad.separable_conv2d_weight(x, u, v, dy, **kw)
            np.testing.assert_allclose(du, numeric_grad(lambda: np.sum(f() * dy), u), rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(dv, numeric_grad(lambda: np.sum(f() * dy), v), rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------------------
# separable_factors


def test_sobel_factors_are_the_textbook_ones():
    u, v = gpuconv.separable_factors(SOBEL_X)
    np.testing.assert_allclose(u, [1, 2, 1], atol=1e-12)
    np.testing.assert_allclose(v, [-1, 0, 1], atol=1e-12)
    np.testing.assert_allclose(np.outer(u, v), SOBEL_X, atol=1e-12)
    u, v = gpuconv.separable_factors(SOBEL_X.T)   # the y-gradient Sobel
    np.testing.assert_allclose(np.outer(u, v), SOBEL_X.T, atol=1e-12)
    assert np.abs(v).max() == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gaussian_factors_in_every_dtype(dtype):
    g1 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    k = np.outer(g1, g1).astype(dtype)
    u, v = gpuconv.separable_factors(k)
    assert u.dtype == v.dtype == np.dtype(dtype) and u.shape == v.shape == (5,)
    tol = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-6, "float64": 1e-14}[np.dtype(dtype).name]
    np.testing.assert_allclose(np.outer(u.astype(np.float64), v.astype(np.float64)),
                               k.astype(np.float64), atol=tol)


def test_factors_of_a_conv_weight_per_filter():
    rng = np.random.default_rng(5)
    u, v = factors(rng, 4, 3, 3, 5)
    w = outer(u, v)
    fu, fv = gpuconv.separable_factors(w)
    assert fu.shape == (4, 3, 3) and fv.shape == (4, 5)
    np.testing.assert_allclose(outer(fu, fv), w, atol=1e-12)
    x = rng.standard_normal((1, 3, 9, 9))
    np.testing.assert_allclose(gpuconv.separable_conv2d(x, fu, fv, padding=1),
                               gpuconv.conv2d(x, w, padding=1), atol=1e-12)


def test_zero_kernel_gives_zero_factors():
    u, v = gpuconv.separable_factors(np.zeros((3, 2), np.float32))
    assert not u.any() and not v.any() and u.shape == (3,) and v.shape == (2,)


def test_rank_two_kernels_are_refused():
    laplace = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="weight is not separable"):
        gpuconv.separable_factors(laplace)
    rng = np.random.default_rng(6)
    u, v = factors(rng, 3, 2, 3, 3)
    w = outer(u, v)
    w[1, 0] += 0.01 * rng.standard_normal((3, 3))    # filter 1 is no longer rank 1
    with pytest.raises(ValueError, match=r"weight\[1\] is not separable"):
        gpuconv.separable_factors(w)
    # ... unless the tolerance allows it
    gpuconv.separable_factors(w, rtol=0.5)
    # filters whose channels have different horizontal factors are not rank 1 either
    w2 = np.stack([np.outer([1.0, 2.0], [1.0, 0.0]), np.outer([1.0, 2.0], [0.0, 1.0])])[None]
    with pytest.raises(ValueError, match="not separable"):
        gpuconv.separable_factors(w2)


# ----------------------------------------------------------------------------------------
# API details and invalid arguments


def test_exports_and_docstrings():
    import doctest
    fns = (gpuconv.separable_conv2d, gpuconv.separable_factors, grad.separable_conv2d_input,
           grad.separable_conv2d_weight)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for fn in fns:
        assert fn.__doc__ and ">>>" in fn.__doc__, fn.__name__
        for test in finder.find(fn, fn.__name__, globs={}):
            runner.run(test)
    assert runner.failures == 0 and runner.tries >= 4
    assert {"separable_conv2d", "separable_factors"} <= set(gpuconv.__all__)


def test_empty_batch():
    x = np.zeros((0, 2, 6, 6), np.float32)
    u, v = np.ones((2, 2, 3), np.float32), np.ones((2, 3), np.float32)
    y = gpuconv.separable_conv2d(x, u, v)
    assert y.shape == (0, 2, 4, 4)
    assert grad.separable_conv2d_input(x.shape, u, v, y).shape == x.shape
    du, dv = grad.separable_conv2d_weight(x, u, v, y)
    assert not du.any() and not dv.any()


X = np.zeros((1, 4, 8, 8))
U = np.ones((2, 4, 3))
V = np.ones((2, 3))


@pytest.mark.parametrize("call,exc,name", [
    (lambda: gpuconv.separable_conv2d(X, U[0], V), ValueError, "weight_h"),
    (lambda: gpuconv.separable_conv2d(X, U, V[0]), ValueError, "weight_w"),
    (lambda: gpuconv.separable_conv2d(X, U, np.ones((3, 3))), ValueError, "weight_w"),
    (lambda: gpuconv.separable_conv2d(X, U, V.astype(np.float32)), TypeError, "weight_w"),
    (lambda: gpuconv.separable_conv2d(X, U, V, np.ones(3)), ValueError, "bias"),
    (lambda: gpuconv.separable_conv2d(X, np.ones((2, 3, 3)), V), ValueError, "input"),
    (lambda: gpuconv.separable_conv2d(X, U, V, stride=0), ValueError, "stride"),
    (lambda: gpuconv.separable_conv2d(X, U, V, padding="same", stride=2), ValueError,
     "padding"),
    (lambda: gpuconv.separable_conv2d(X, U, V, padding=-1), ValueError, "padding"),
    (lambda: gpuconv.separable_conv2d(X, U, V, groups=3), ValueError, "groups"),
    (lambda: gpuconv.separable_conv2d(X, U, np.ones((2, 9))), ValueError, "weight"),
    (lambda: gpuconv.separable_conv2d(X[0, 0], U, V), ValueError, "input"),
    (lambda: grad.separable_conv2d_input((1, 4, 8, 8), U, V, np.zeros((1, 2, 5, 5))),
     ValueError, "grad_output"),
    (lambda: grad.separable_conv2d_input((4, 8, 8), U, V, np.zeros((1, 2, 6, 6))),
     ValueError, "input_size"),
    (lambda: grad.separable_conv2d_weight(X, U, V, np.zeros((1, 2, 5, 5))), ValueError,
     "grad_output"),
    (lambda: gpuconv.separable_factors(np.ones(3)), ValueError, "weight"),
    (lambda: gpuconv.separable_factors(np.ones((2, 2), np.int64)), TypeError, "weight"),
    (lambda: gpuconv.separable_factors(np.full((2, 2), np.nan)), ValueError, "weight"),
    (lambda: gpuconv.separable_factors(np.ones((2, 2)), rtol=-1), ValueError, "rtol"),
])
def test_invalid_arguments_name_the_argument(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
