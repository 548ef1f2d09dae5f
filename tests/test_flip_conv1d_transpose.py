"""True convolution (``flip=True``), conv1d and conv_transpose2d: all three run the conv2d
kernels (fprop, dgrad, wgrad) on reshaped / flipped / role-swapped arrays.

Sections:

1. true convolution: numpy.convolve (seed 000's dropped ball, seed 001's echo), associativity,
   scipy.signal.convolve2d, Sobel, torch with a flipped weight, finite differences;
2. conv1d and its gradients: independent nested loops, torch (F.conv1d, torch.nn.grad),
   finite differences, unbatched input, empty batch;
3. conv_transpose2d and its gradients: torch (F.conv_transpose2d and autograd), the adjoint
   identity with conv2d, finite differences;
4. the kernels on the CPU runtime (and on the GPU, marked ``gpu``) against the references of
   gpuconv.checking, float16/32/64, both kernel versions, outputs NaN-poisoned before launch;
5. invalid arguments: the exception type and the argument named in the message.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest

import gpuconv
from gpuconv import checking, dispatch, grad, kernels
from gpuconv.problems import CONV1D_PROBLEMS, CONV_PROBLEMS, CONV_TRANSPOSE2D_PROBLEMS
from gpuconv.runtime import cuda_available
from helpers import numeric_grad, rng_for  # noqa: E402

DTYPES = list(checking.DTYPES)  # float16, bfloat16, float32, float64


def torch_or_skip():
    return pytest.importorskip("torch")


# ========================================================================================
# 1. true convolution


def test_dropped_ball_distribution_is_numpy_convolve():
    """Seed 000: a ball rolls a units with probability f(a), then b units with g(b); the
    total c has probability sum_{a+b=c} f(a) g(b): the full convolution of f and g."""
    f = np.array([0.1, 0.3, 0.4, 0.2])          # first drop: 0..3 units
    g = np.array([0.5, 0.3, 0.2])               # second drop: 0..2 units
    total = gpuconv.conv1d(f[None, None], g[None, None], padding="full", flip=True)[0, 0]
    np.testing.assert_allclose(total, np.convolve(f, g), rtol=1e-15, atol=1e-15)
    # c = 3 reached as 0+3 (impossible), 1+2, 2+1, 3+0
    assert total[3] == pytest.approx(0.3 * 0.2 + 0.4 * 0.3 + 0.2 * 0.5)
    assert total.sum() == pytest.approx(1.0)     # still a distribution, over 0..5
    assert total.shape == (f.size + g.size - 1,)  # seed 002: m + k - 1


def test_echo_is_a_true_convolution():
    """Seed 001: a signal 1..6 received over 4 paths of strengths 1, 0.9, 0.8, 0.7; the
    sixth sample (the arrow) is 0*0.7 + 0*0.8 + 1*0.9 + 2*1 = 2.9: the kernel is flipped."""
    signal = np.array([0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0], np.float64)
    echo = np.array([1, 0.9, 0.8, 0.7])
    received = gpuconv.conv1d(signal[None], echo[None, None], padding="full", flip=True)[0]
    np.testing.assert_allclose(received, np.convolve(signal, echo), rtol=1e-14, atol=1e-14)
    assert received[5] == pytest.approx(2.9)
    # The cross-correlation (flip=False, what CNNs compute) is numpy.correlate instead.
    corr = gpuconv.conv1d(signal[None], echo[None, None], padding="full")[0]
    np.testing.assert_allclose(corr, np.correlate(signal, echo, mode="full"), atol=1e-14)
    assert not np.allclose(corr, received)


def test_true_convolution_is_associative():
    """Seed 001: signal processing flips the kernel to keep (A*B)*C = A*(B*C)."""
    rng = rng_for("assoc")
    a, b, c = rng.standard_normal(9), rng.standard_normal(4), rng.standard_normal(3)

    def conv(u, v):
        return gpuconv.conv1d(u[None, None], v[None, None], padding="full", flip=True)[0, 0]

    np.testing.assert_allclose(conv(conv(a, b), c), conv(a, conv(b, c)), atol=1e-12)
    np.testing.assert_allclose(conv(a, b), conv(b, a), atol=1e-12)  # and commutative


@pytest.mark.parametrize("mode,padding", [("full", "full"), ("valid", "valid"), ("same", "same")])
@pytest.mark.parametrize("kernel", [(3, 3), (3, 5), (1, 3)])
def test_conv2d_flip_is_scipy_convolve2d(mode, padding, kernel):
    """scipy.signal.convolve2d is a true convolution; 'same' agrees for odd kernels."""
    signal = pytest.importorskip("scipy.signal")
    rng = rng_for("scipy", mode, kernel)
    image, k = rng.standard_normal((9, 11)), rng.standard_normal(kernel)
    got = gpuconv.conv2d(image[None, None], k[None, None], padding=padding, flip=True)[0, 0]
    np.testing.assert_allclose(got, signal.convolve2d(image, k, mode=mode), atol=1e-12)
    corr = gpuconv.conv2d(image[None, None], k[None, None], padding=padding)[0, 0]
    np.testing.assert_allclose(corr, signal.correlate2d(image, k, mode=mode), atol=1e-12)


def test_sobel_true_convolution_negates_the_cross_correlation():
    """Seed 001's Sobel edge filter is antisymmetric under a 180-degree rotation."""
    sobel_x = np.array([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
    image = np.zeros((1, 1, 6, 6))
    image[..., 3:] = 1.0                          # a vertical edge
    corr = gpuconv.conv2d(image, sobel_x[None, None], padding=1)
    true = gpuconv.conv2d(image, sobel_x[None, None], padding=1, flip=True)
    np.testing.assert_array_equal(true, -corr)
    assert corr[0, 0, 2:4, 2].tolist() == [4.0, 4.0]   # the edge lights up


FLIP_CASES = [  # (x shape, w shape, kwargs)
    ((2, 3, 7, 6), (4, 3, 3, 2), dict()),
    ((1, 4, 9, 8), (6, 2, 3, 4), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
    ((2, 2, 5, 6), (3, 2, 4, 2), dict(padding="same")),
    ((1, 2, 4, 5), (2, 2, 2, 3), dict(padding="full", dilation=2)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("case", FLIP_CASES, ids=[str(i) for i in range(len(FLIP_CASES))])
def test_flip_matches_torch_with_a_flipped_weight(case, backend):
    torch = torch_or_skip()
    import torch.nn.functional as F
    x_shape, w_shape, kw = case
    rng = rng_for("flip-torch", case)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    tkw = dict(kw)
    if tkw.get("padding") == "full":
        d = tkw.get("dilation", 1)
        tkw["padding"] = (d * (w_shape[2] - 1), d * (w_shape[3] - 1))
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = F.conv2d(tx, torch.flip(tw, [2, 3]), torch.tensor(b), **tkw)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    with gpuconv.use_backend(backend):
        y = gpuconv.conv2d(x, w, b, **kw, flip=True)
        dx = grad.conv2d_input(x.shape, w, dy, **kw, flip=True)
        dw = grad.conv2d_weight(x, w.shape, dy, **kw, flip=True)
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), atol=1e-12)
    assert dw.flags.c_contiguous


@pytest.mark.parametrize("case", FLIP_CASES, ids=[str(i) for i in range(len(FLIP_CASES))])
def test_flip_gradients_match_finite_differences(case):
    x_shape, w_shape, kw = case
    rng = rng_for("flip-fd", case)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(gpuconv.conv2d(x, w, **kw).shape)

    def loss():
        return float((gpuconv.conv2d(x, w, **kw, flip=True) * dy).sum())

    np.testing.assert_allclose(grad.conv2d_input(x.shape, w, dy, **kw, flip=True),
                               numeric_grad(loss, x), atol=1e-6)
    np.testing.assert_allclose(grad.conv2d_weight(x, w.shape, dy, **kw, flip=True),
                               numeric_grad(loss, w), atol=1e-6)


def test_flip_false_is_the_default_cross_correlation():
    rng = rng_for("default")
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    np.testing.assert_array_equal(gpuconv.conv2d(x, w, flip=False), gpuconv.conv2d(x, w))
    np.testing.assert_array_equal(gpuconv.conv2d(x, w, flip=True),
                                  gpuconv.conv2d(x, np.ascontiguousarray(w[..., ::-1, ::-1])))


# ========================================================================================
# 2. conv1d


def naive_conv1d(x, w, b, stride, pad_left, pad_right, dilation, groups):
    """Nested loops from the formula, independent of geometry.py and reference.py."""
    N, C, L = x.shape
    K, Cg, S = w.shape
    Q = (L + pad_left + pad_right - dilation * (S - 1) - 1) // stride + 1
    Kg = K // groups
    y = np.zeros((N, K, Q))
    for n in range(N):
        for k in range(K):
            for q in range(Q):
                total = 0.0 if b is None else b[k]
                for c in range(Cg):
                    for s in range(S):
                        i = q * stride - pad_left + s * dilation
                        if 0 <= i < L:
                            total += x[n, (k // Kg) * Cg + c, i] * w[k, c, s]
                y[n, k, q] = total
    return y


# (x shape, w shape, stride, padding, dilation, groups, naive (left, right) padding)
CONV1D_CASES = [
    ((2, 3, 11), (4, 3, 3), 1, 0, 1, 1, (0, 0)),
    ((1, 2, 10), (3, 2, 4), 1, "same", 1, 1, (1, 2)),          # even kernel: extra right
    ((1, 2, 10), (3, 2, 3), 1, "same", 2, 1, (2, 2)),
    ((2, 1, 6), (2, 1, 3), 1, "full", 1, 1, (2, 2)),
    ((1, 4, 13), (6, 2, 3), 2, 2, (2,), 2, (2, 2)),            # 1-tuples accepted
    ((2, 4, 9), (4, 1, 2), (3,), (1,), 1, 4, (1, 1)),          # depthwise
    ((1, 1, 5), (1, 1, 5), 1, "valid", 1, 1, (0, 0)),          # kernel = input
]
C1_IDS = [f"c{i}" for i in range(len(CONV1D_CASES))]


def _c1(case):
    x_shape, w_shape, stride, padding, dilation, groups, pads = case
    return x_shape, w_shape, dict(stride=stride, padding=padding, dilation=dilation,
                                  groups=groups), pads


def _unwrap(v):
    return v[0] if isinstance(v, tuple) else v


@pytest.mark.parametrize("case", CONV1D_CASES, ids=C1_IDS)
def test_conv1d_reference_matches_nested_loops(case):
    x_shape, w_shape, kw, pads = _c1(case)
    rng = rng_for("c1-naive", case)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(
        w_shape[0])
    want = naive_conv1d(x, w, b, _unwrap(kw["stride"]), *pads, _unwrap(kw["dilation"]),
                        kw["groups"])
    np.testing.assert_allclose(gpuconv.conv1d(x, w, b, **kw), want, atol=1e-12)
    np.testing.assert_allclose(checking.ref_conv1d(x, w, b, **kw), want, atol=1e-12)
    want_flip = naive_conv1d(x, w[..., ::-1], b, _unwrap(kw["stride"]), *pads,
                             _unwrap(kw["dilation"]), kw["groups"])
    np.testing.assert_allclose(gpuconv.conv1d(x, w, b, **kw, flip=True), want_flip, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("case", CONV1D_CASES, ids=C1_IDS)
def test_conv1d_matches_torch(case, backend):
    torch = torch_or_skip()
    import torch.nn.functional as F
    x_shape, w_shape, kw, pads = _c1(case)
    rng = rng_for("c1-torch", case)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(
        w_shape[0])
    tkw = dict(kw)
    if kw["padding"] == "full":
        tkw["padding"] = pads[0]
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = F.conv1d(tx, tw, tb, **tkw)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    with gpuconv.use_backend(backend):
        y = gpuconv.conv1d(x, w, b, **kw)
        dx = grad.conv1d_input(x.shape, w, dy, **kw)
        dw = grad.conv1d_weight(x, w.shape, dy, **kw)
        db = grad.conv1d_bias(dy)
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), atol=1e-12)
    if not isinstance(tkw["padding"], str):  # torch.nn.grad's helpers take no strings
        np.testing.assert_allclose(dx, torch.nn.grad.conv1d_input(
            x.shape, torch.tensor(w), torch.tensor(dy), **tkw).numpy(), atol=1e-12)
        np.testing.assert_allclose(dw, torch.nn.grad.conv1d_weight(
            torch.tensor(x), w.shape, torch.tensor(dy), **tkw).numpy(), atol=1e-12)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("case", CONV1D_CASES[:5], ids=C1_IDS[:5])
def test_conv1d_gradients_match_finite_differences(case, flip):
    x_shape, w_shape, kw, _ = _c1(case)
    rng = rng_for("c1-fd", case, flip)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(
        w_shape[0])
    dy = rng.standard_normal(gpuconv.conv1d(x, w, **kw).shape)

    def loss():
        return float((gpuconv.conv1d(x, w, b, **kw, flip=flip) * dy).sum())

    np.testing.assert_allclose(grad.conv1d_input(x.shape, w, dy, **kw, flip=flip),
                               numeric_grad(loss, x), atol=1e-6)
    np.testing.assert_allclose(grad.conv1d_weight(x, w.shape, dy, **kw, flip=flip),
                               numeric_grad(loss, w), atol=1e-6)
    np.testing.assert_allclose(grad.conv1d_bias(dy), numeric_grad(loss, b), atol=1e-6)


def test_conv1d_unbatched_and_empty_batch():
    rng = rng_for("c1-unbatched")
    x, w, b = rng.standard_normal((4, 10)), rng.standard_normal((6, 2, 3)), rng.standard_normal(6)
    y = gpuconv.conv1d(x, w, b, padding=1, groups=2, flip=True)
    assert y.shape == (6, 10)
    np.testing.assert_allclose(y, gpuconv.conv1d(x[None], w, b, padding=1, groups=2,
                                                 flip=True)[0])
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(grad.conv1d_input(x.shape, w, dy, padding=1, groups=2),
                               grad.conv1d_input((1,) + x.shape, w, dy[None], padding=1,
                                                 groups=2)[0])
    np.testing.assert_allclose(grad.conv1d_weight(x, w.shape, dy, padding=1, groups=2),
                               grad.conv1d_weight(x[None], w.shape, dy[None], padding=1,
                                                  groups=2))
    np.testing.assert_allclose(grad.conv1d_bias(dy), dy.sum(axis=1))
    x0 = np.zeros((0, 4, 10))
    with gpuconv.use_backend("emulator"):
        y0 = gpuconv.conv1d(x0, w, b, groups=2)
        assert y0.shape == (0, 6, 8)
        assert grad.conv1d_input(x0.shape, w, y0, groups=2).shape == x0.shape
        dw0 = grad.conv1d_weight(x0, w.shape, y0, groups=2)
        assert dw0.shape == w.shape and not dw0.any()


def test_conv1d_keeps_dtype_and_accepts_non_contiguous_input():
    rng = rng_for("c1-dtype")
    x = rng.standard_normal((2, 3, 20)).astype(np.float32)[:, :, ::2]   # strided view
    w = rng.standard_normal((2, 3, 3)).astype(np.float32)
    with gpuconv.use_backend("emulator"):
        y = gpuconv.conv1d(x, w, flip=True)
    assert y.dtype == np.float32 and y.shape == (2, 2, 8)
    np.testing.assert_allclose(y, checking.ref_conv1d(np.ascontiguousarray(x), w, None,
                                                      flip=True), atol=1e-5)


# ========================================================================================
# 3. conv_transpose2d


# (x shape, w shape, kwargs)
CT_CASES = [
    ((2, 3, 4, 5), (3, 2, 3, 3), dict()),
    ((1, 4, 3, 4), (4, 3, 4, 4), dict(stride=2, padding=1)),
    ((2, 2, 4, 3), (2, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 4, 3, 4), (4, 2, 3, 2), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
                                      groups=2, dilation=(2, 1))),
    ((2, 2, 4, 4), (2, 2, 3, 3), dict(stride=1, dilation=2, output_padding=1)),  # op >= stride
    ((1, 6, 3, 3), (6, 1, 3, 3), dict(stride=2, groups=6)),                    # depthwise
    ((1, 2, 5, 5), (2, 1, 3, 3), dict(padding=2)),                             # output 5 - 2 ...
]
CT_IDS = [f"t{i}" for i in range(len(CT_CASES))]


def _ct_arrays(case, tag):
    x_shape, w_shape, kw = case
    rng = rng_for(tag, case)
    groups = kw.get("groups", 1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * groups)
    return rng, x, w, b, kw


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("case", CT_CASES, ids=CT_IDS)
def test_conv_transpose2d_matches_torch_and_autograd(case, backend):
    torch = torch_or_skip()
    import torch.nn.functional as F
    rng, x, w, b, kw = _ct_arrays(case, "ct-torch")
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = F.conv_transpose2d(tx, tw, tb, **kw)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    with gpuconv.use_backend(backend):
        y = gpuconv.conv_transpose2d(x, w, b, **kw)
        dx = grad.conv_transpose2d_input(x.shape, w, dy, **kw)
        dw = grad.conv_transpose2d_weight(x, w.shape, dy, **kw)
        db = grad.conv2d_bias(dy)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), atol=1e-12)
    if backend == "emulator":
        assert dx.flags.c_contiguous and dw.flags.c_contiguous
    np.testing.assert_allclose(checking.ref_conv_transpose2d(x, w, b, **kw), y, atol=1e-12)


@pytest.mark.parametrize("case", CT_CASES, ids=CT_IDS)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case):
    """<conv2d(u, w), x> == <u, conv_transpose2d(x, w)> for every u of the output's shape:
    the transposed convolution is the transpose of the convolution's linear map."""
    rng, x, w, _, kw = _ct_arrays(case, "ct-adjoint")
    ckw = {k: v for k, v in kw.items() if k != "output_padding"}
    y = gpuconv.conv_transpose2d(x, w, **kw)
    u = rng.standard_normal(y.shape)
    lhs = float((gpuconv.conv2d(u, w, **ckw)[:, :, :x.shape[2], :x.shape[3]] * x).sum())
    assert lhs == pytest.approx(float((u * y).sum()), rel=1e-12, abs=1e-12)
    if kw.get("output_padding", 0) == 0:
        # ... and it is conv2d's input gradient with x as grad_output
        np.testing.assert_allclose(y, grad.conv2d_input(y.shape, w, x, **ckw), atol=1e-12)


@pytest.mark.parametrize("case", CT_CASES, ids=CT_IDS)
def test_conv_transpose2d_gradients_match_finite_differences(case):
    rng, x, w, b, kw = _ct_arrays(case, "ct-fd")
    dy = rng.standard_normal(gpuconv.conv_transpose2d(x, w, **kw).shape)

    def loss():
        return float((gpuconv.conv_transpose2d(x, w, b, **kw) * dy).sum())

    np.testing.assert_allclose(grad.conv_transpose2d_input(x.shape, w, dy, **kw),
                               numeric_grad(loss, x), atol=1e-6)
    np.testing.assert_allclose(grad.conv_transpose2d_weight(x, w.shape, dy, **kw),
                               numeric_grad(loss, w), atol=1e-6)
    np.testing.assert_allclose(grad.conv2d_bias(dy), numeric_grad(loss, b), atol=1e-6)


def test_conv_transpose2d_output_sizes_follow_pytorch():
    torch = torch_or_skip()
    import torch.nn.functional as F
    x = np.zeros((1, 1, 5, 6))
    for R, s, p, op, d in [(3, 2, 1, 1, 1), (4, 2, 1, 0, 1), (1, 1, 0, 0, 1), (3, 3, 2, 2, 1),
                           (2, 1, 0, 1, 2), (5, 2, 3, 0, 2)]:
        w = np.zeros((1, 1, R, R))
        got = gpuconv.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op,
                                       dilation=d).shape
        want = F.conv_transpose2d(torch.tensor(x), torch.tensor(w), stride=s, padding=p,
                                  output_padding=op, dilation=d).shape
        assert got == tuple(want)


def test_conv_transpose2d_unbatched_and_empty_batch():
    rng = rng_for("ct-unbatched")
    x, w, b = rng.standard_normal((4, 3, 3)), rng.standard_normal((4, 1, 3, 3)), np.ones(2)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    y = gpuconv.conv_transpose2d(x, w, b, **kw)
    assert y.shape == (2, 6, 6)
    np.testing.assert_allclose(y, gpuconv.conv_transpose2d(x[None], w, b, **kw)[0])
    dy = rng.standard_normal(y.shape)
    assert grad.conv_transpose2d_input(x.shape, w, dy, **kw).shape == x.shape
    np.testing.assert_allclose(grad.conv_transpose2d_weight(x, w.shape, dy, **kw),
                               grad.conv_transpose2d_weight(x[None], w.shape, dy[None], **kw))
    x0 = np.zeros((0, 4, 3, 3))
    with gpuconv.use_backend("emulator"):
        y0 = gpuconv.conv_transpose2d(x0, w, b, **kw)
        assert y0.shape == (0, 2, 6, 6)
        assert grad.conv_transpose2d_input(x0.shape, w, y0, **kw).shape == x0.shape
        assert not grad.conv_transpose2d_weight(x0, w.shape, y0, **kw).any()


# ========================================================================================
# 4. the kernels on the CPU runtime / GPU against gpuconv.checking's references


RUNTIMES = [pytest.param("emulator", id="emulator"),
            pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=RUNTIMES)
def device(request):
    """Runs the public ops on one backend with every kernel output NaN-poisoned."""
    name = request.param
    if name == "cuda" and not cuda_available():
        pytest.skip("no CUDA device visible to CuPy (or CuPy not installed)")
    if name == "cuda":
        import cupy
        dev, host, full = cupy.asarray, cupy.asnumpy, cupy.full
    else:
        dev, host, full = (lambda a: a), np.asarray, np.full
    launches = []

    def poisoned(shape, dtype):
        launches.append(shape)
        return full(shape, np.nan, dtype)

    @contextlib.contextmanager
    def running():
        with gpuconv.use_backend(name), dispatch.output_allocator(poisoned):
            yield
        assert launches, "no kernel output was allocated: the kernels did not run"

    return SimpleNamespace(dev=dev, host=host, running=running)


@pytest.fixture(params=["v1", "v2"])
def version(request, monkeypatch):
    monkeypatch.setenv(kernels.ENV_VERSION, request.param)
    return request.param


def _opt(dev, a):
    return None if a is None else dev(a)


FLIP_PROBLEMS = checking.CHECKS["conv2d_flip"][0]()


def test_flip_problem_list_is_the_intended_one():
    assert {p.name for p in FLIP_PROBLEMS} <= {p.name for p in CONV_PROBLEMS}
    assert len(FLIP_PROBLEMS) == 6


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", FLIP_PROBLEMS, ids=lambda p: p.name)
def test_kernels_conv2d_flip(device, version, problem, dtype):
    x, w, b, dy = checking.conv_inputs(problem, dtype)
    d = device.dev
    with device.running():
        y = gpuconv.conv2d(d(x), d(w), _opt(d, b), **problem.kwargs, flip=True)
        dx = grad.conv2d_input(x.shape, d(w), d(dy), **problem.kwargs, flip=True)
        dw = grad.conv2d_weight(d(x), w.shape, d(dy), **problem.kwargs, flip=True)
    # the flipped kernel's results are the cross-correlation's with a rotated weight
    w_rot = np.ascontiguousarray(w[..., ::-1, ::-1])
    from gpuconv import reference
    from gpuconv.geometry import conv2d_geometry
    g = conv2d_geometry(x.shape, w.shape, **problem.kwargs)
    checking.assert_close(device.host(y), checking.ref_conv2d_flip(x, w, b, **problem.kwargs),
                          dtype, what="conv2d flip")
    checking.assert_close(device.host(dx), reference.conv2d_input(dy, w_rot, g), dtype,
                          what="conv2d_input flip")
    checking.assert_close(device.host(dw), reference.conv2d_weight(x, dy, g)[..., ::-1, ::-1],
                          dtype, what="conv2d_weight flip")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV1D_PROBLEMS, ids=lambda p: p.name)
def test_kernels_conv1d(device, version, problem, dtype):
    x, w, b, dy = checking.conv1d_inputs(problem, dtype)
    d, kw = device.dev, problem.kwargs
    with device.running():
        y = gpuconv.conv1d(d(x), d(w), _opt(d, b), **kw)
        dx = grad.conv1d_input(x.shape, d(w), d(dy), **kw)
        dw = grad.conv1d_weight(d(x), w.shape, d(dy), **kw)
    checking.assert_close(device.host(y), checking.ref_conv1d(x, w, b, **kw), dtype,
                          what="conv1d")
    checking.assert_close(device.host(dx), checking.ref_conv1d_input(dy, w, x.shape, **kw),
                          dtype, what="conv1d_input")
    checking.assert_close(device.host(dw), checking.ref_conv1d_weight(x, dy, w.shape, **kw),
                          dtype, what="conv1d_weight")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV_TRANSPOSE2D_PROBLEMS, ids=lambda p: p.name)
def test_kernels_conv_transpose2d(device, version, problem, dtype):
    x, w, b, dy = checking.conv_transpose2d_inputs(problem, dtype)
    d, kw = device.dev, problem.kwargs
    with device.running():
        y = gpuconv.conv_transpose2d(d(x), d(w), _opt(d, b), **kw)
        dx = grad.conv_transpose2d_input(x.shape, d(w), d(dy), **kw)
        dw = grad.conv_transpose2d_weight(d(x), w.shape, d(dy), **kw)
    checking.assert_close(device.host(y), checking.ref_conv_transpose2d(x, w, b, **kw), dtype,
                          what="conv_transpose2d")
    checking.assert_close(device.host(dx),
                          checking.ref_conv_transpose2d_input(dy, w, x.shape, **kw), dtype,
                          what="conv_transpose2d_input")
    checking.assert_close(device.host(dw),
                          checking.ref_conv_transpose2d_weight(x, dy, w.shape, **kw), dtype,
                          what="conv_transpose2d_weight")


def test_problem_lists_cover_their_edges():
    assert any(p.flip and p.padding == "full" for p in CONV1D_PROBLEMS)
    from gpuconv.geometry import conv_transpose2d_geometry
    geoms = [conv_transpose2d_geometry(p.x_shape, p.w_shape, **p.kwargs)
             for p in CONV_TRANSPOSE2D_PROBLEMS]
    assert any(g.padded for g in geoms)               # the zero-extended path runs
    assert any(kernels.heuristic_version("dgrad", g.conv) == "v2" for g in geoms)


@pytest.mark.parametrize("op", ["conv2d_flip", "conv1d", "conv1d_input", "conv1d_weight",
                                "conv_transpose2d", "conv_transpose2d_input",
                                "conv_transpose2d_weight"])
def test_gpuconv_check_covers_the_new_ops(op):
    assert op in checking.OPS
    problem = checking.CHECKS[op][0]()[0]
    with gpuconv.use_backend("emulator"):
        assert checking.check_case(op, problem, np.float32)


# ========================================================================================
# 5. invalid arguments


f32 = np.float32
X1, W1, DY1 = np.zeros((2, 4, 10), f32), np.zeros((6, 4, 3), f32), np.zeros((2, 6, 8), f32)
XT, WT = np.zeros((2, 4, 5, 5), f32), np.zeros((4, 3, 3, 3), f32)
DYT = np.zeros((2, 3, 7, 7), f32)                    # conv_transpose2d(XT, WT) output
X2, W2 = np.zeros((1, 2, 5, 5), f32), np.zeros((3, 2, 3, 3), f32)

INVALID = [
    # flip
    ("flip_str", TypeError, "flip", lambda: gpuconv.conv2d(X2, W2, flip="yes")),
    ("flip_int", TypeError, "flip", lambda: gpuconv.conv2d(X2, W2, flip=1)),
    ("flip_input_grad", TypeError, "flip",
     lambda: grad.conv2d_input(X2.shape, W2, np.zeros((1, 3, 3, 3), f32), flip=None)),
    ("flip_weight_grad", TypeError, "flip",
     lambda: grad.conv2d_weight(X2, W2.shape, np.zeros((1, 3, 3, 3), f32), flip="no")),
    ("flip_positional", TypeError, "positional",
     lambda: gpuconv.conv2d(X2, W2, None, 1, 0, 1, 1, True)),
    ("flip_conv1d", TypeError, "flip", lambda: gpuconv.conv1d(X1, W1, flip=[True])),
    # conv1d
    ("c1_stride_pair", TypeError, "stride", lambda: gpuconv.conv1d(X1, W1, stride=(1, 2))),
    ("c1_stride_zero", ValueError, "stride", lambda: gpuconv.conv1d(X1, W1, stride=0)),
    ("c1_dilation_pair", TypeError, "dilation", lambda: gpuconv.conv1d(X1, W1, dilation=(1, 1))),
    ("c1_dilation_zero", ValueError, "dilation", lambda: gpuconv.conv1d(X1, W1, dilation=0)),
    ("c1_padding_pair", TypeError, "padding", lambda: gpuconv.conv1d(X1, W1, padding=(1, 1))),
    ("c1_padding_negative", ValueError, "padding", lambda: gpuconv.conv1d(X1, W1, padding=-1)),
    ("c1_padding_string", ValueError, "padding", lambda: gpuconv.conv1d(X1, W1, padding="half")),
    ("c1_same_strided", ValueError, "same",
     lambda: gpuconv.conv1d(X1, W1, stride=2, padding="same")),
    ("c1_input_rank", ValueError, "input", lambda: gpuconv.conv1d(X1[None], W1)),
    ("c1_weight_rank", ValueError, "weight", lambda: gpuconv.conv1d(X1, W1[None])),
    ("c1_bias_shape", ValueError, "bias", lambda: gpuconv.conv1d(X1, W1, np.zeros(5, f32))),
    ("c1_dtype", TypeError, "weight", lambda: gpuconv.conv1d(X1, W1.astype(np.float64))),
    ("c1_channels", ValueError, "C=4", lambda: gpuconv.conv1d(X1, W1[:, :3])),
    ("c1_groups", ValueError, "groups", lambda: gpuconv.conv1d(X1, W1[:, :2], groups=3)),
    ("c1_groups_type", TypeError, "groups", lambda: gpuconv.conv1d(X1, W1, groups=1.0)),
    ("c1_kernel_too_long", ValueError, "weight", lambda: gpuconv.conv1d(X1, np.zeros((1, 4, 11), f32))),
    ("c1_empty_length", ValueError, "input", lambda: gpuconv.conv1d(X1[:, :, :0], W1)),
    ("c1_input_size_len", ValueError, "input_size",
     lambda: grad.conv1d_input((2, 4, 10, 1), W1, DY1)),
    ("c1_input_size_type", TypeError, "input_size", lambda: grad.conv1d_input(10, W1, DY1)),
    ("c1_grad_output_shape", ValueError, "grad_output",
     lambda: grad.conv1d_input(X1.shape, W1, DY1[:, :, :7])),
    ("c1_weight_size", ValueError, "weight_size",
     lambda: grad.conv1d_weight(X1, (6, 4, 3, 1), DY1)),
    ("c1_weight_grad_output", ValueError, "grad_output",
     lambda: grad.conv1d_weight(X1, W1.shape, DY1[:, :5])),
    ("c1_weight_ranks", ValueError, "grad_output",
     lambda: grad.conv1d_weight(X1, W1.shape, DY1[0])),
    ("c1_bias_grad_rank", ValueError, "grad_output", lambda: grad.conv1d_bias(DY1[None])),
    # conv_transpose2d
    ("ct_output_padding", ValueError, "output_padding",
     lambda: gpuconv.conv_transpose2d(XT, WT, output_padding=1)),
    ("ct_output_padding_stride", ValueError, "output_padding",
     lambda: gpuconv.conv_transpose2d(XT, WT, stride=2, output_padding=(1, 2))),
    ("ct_output_padding_negative", ValueError, "output_padding",
     lambda: gpuconv.conv_transpose2d(XT, WT, output_padding=-1)),
    ("ct_output_padding_type", TypeError, "output_padding",
     lambda: gpuconv.conv_transpose2d(XT, WT, stride=2, output_padding=0.5)),
    ("ct_padding_string", TypeError, "padding",
     lambda: gpuconv.conv_transpose2d(XT, WT, padding="same")),
    ("ct_padding_too_large", ValueError, "padding",
     lambda: gpuconv.conv_transpose2d(XT[:, :, :1, :1], WT[..., :1, :1], padding=1)),
    ("ct_stride_zero", ValueError, "stride", lambda: gpuconv.conv_transpose2d(XT, WT, stride=0)),
    ("ct_dilation_zero", ValueError, "dilation",
     lambda: gpuconv.conv_transpose2d(XT, WT, dilation=(1, 0))),
    ("ct_channels", ValueError, "C_in", lambda: gpuconv.conv_transpose2d(XT, WT[:3])),
    ("ct_groups", ValueError, "groups", lambda: gpuconv.conv_transpose2d(XT, WT, groups=3)),
    ("ct_groups_zero", ValueError, "groups", lambda: gpuconv.conv_transpose2d(XT, WT, groups=0)),
    ("ct_bias_shape", ValueError, "bias",
     lambda: gpuconv.conv_transpose2d(XT, WT, np.zeros(4, f32))),
    ("ct_input_rank", ValueError, "input", lambda: gpuconv.conv_transpose2d(XT[0, 0], WT)),
    ("ct_weight_rank", ValueError, "weight", lambda: gpuconv.conv_transpose2d(XT, WT[0])),
    ("ct_mixed_dtype", TypeError, "weight",
     lambda: gpuconv.conv_transpose2d(XT, WT.astype(np.float16))),
    ("ct_input_grad_shape", ValueError, "grad_output",
     lambda: grad.conv_transpose2d_input(XT.shape, WT, DYT[:, :, :6])),
    ("ct_input_size", ValueError, "input_size",
     lambda: grad.conv_transpose2d_input(XT.shape[:2], WT, DYT)),
    ("ct_weight_grad_shape", ValueError, "grad_output",
     lambda: grad.conv_transpose2d_weight(XT, WT.shape, DYT[:, :2])),
    ("ct_weight_size", TypeError, "weight_size",
     lambda: grad.conv_transpose2d_weight(XT, 3, DYT)),
    ("ct_weight_grad_output_padding", ValueError, "output_padding",
     lambda: grad.conv_transpose2d_weight(XT, WT.shape, DYT, output_padding=1)),
]


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_arguments_raise_naming_the_argument(case, monkeypatch):
    _, exc, word, call = case

    def no_launch(*args, **kwargs):
        raise AssertionError("a kernel launch was attempted before validation failed")

    monkeypatch.setattr(dispatch, "run", no_launch)
    with pytest.raises(exc, match=word):
        call()


def test_conv1d_error_names_conv1d_not_a_pair():
    with pytest.raises(TypeError, match=r"1-tuple.*conv1d"):
        gpuconv.conv1d(X1, W1, stride=(1, 2))
    with pytest.raises(ValueError) as info:
        gpuconv.conv1d(X1, np.zeros((1, 4, 11), f32))
    assert "length" in str(info.value) and "(1, " not in str(info.value)


def test_output_padding_rule_matches_torch():
    """output_padding must be smaller than the stride or the dilation of its axis; torch
    raises exactly where gpuconv does."""
    torch = torch_or_skip()
    import torch.nn.functional as F
    x, w = np.zeros((1, 1, 4, 4), f32), np.zeros((1, 1, 3, 3), f32)
    for s in (1, 2, 3):
        for d in (1, 2, 3):
            for op in range(4):
                try:
                    F.conv_transpose2d(torch.tensor(x), torch.tensor(w), stride=s,
                                       output_padding=op, dilation=d)
                    torch_ok = True
                except RuntimeError:
                    torch_ok = False
                try:
                    gpuconv.conv_transpose2d(x, w, stride=s, output_padding=op, dilation=d)
                    ours_ok = True
                except ValueError as error:
                    assert "output_padding" in str(error)
                    ours_ok = False
                assert ours_ok == torch_ok, (s, d, op)


def test_public_api_and_docstrings():
    assert "conv1d" in gpuconv.__all__ and "conv_transpose2d" in gpuconv.__all__
    for fn in (gpuconv.conv1d, gpuconv.conv_transpose2d, grad.conv1d_input, grad.conv1d_weight,
               grad.conv1d_bias, grad.conv_transpose2d_input, grad.conv_transpose2d_weight):
        assert fn.__doc__ and ">>>" in fn.__doc__, fn.__name__
    import doctest
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for fn in (gpuconv.conv1d, gpuconv.conv_transpose2d, grad.conv1d_input, grad.conv1d_weight,
               grad.conv1d_bias, grad.conv_transpose2d_input, grad.conv_transpose2d_weight):
        for test in finder.find(fn, fn.__name__, globs={}):
            runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
