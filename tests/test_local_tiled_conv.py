"""Locally connected (unshared) and tiled convolution (seed 002 §9.5): gpuconv.local_conv2d,
gpuconv.tiled_conv2d and their gradients in gpuconv.grad.

* the reference (gpuconv.reference.tiled_conv2d*) against nested loops written here from the
  formulas, and against PyTorch (which has no such op: ``F.unfold`` + einsum with the
  per-position weights, gradients by autograd);
* the identities: tile (1, 1) is conv2d, tile (P, Q) is local_conv2d (forward and gradients);
* the kernels (cuda/local_conv2d.cu) on the CPU runtime, and on the GPU where there is one,
  against the reference for float16/32/64 over gpuconv.problems.TILED_PROBLEMS, outputs
  NaN-poisoned before each launch; a capped grid; bitwise determinism; an empty batch;
* float64 finite differences of the gradients through the kernels;
* invalid arguments: the exception type and the argument named.
"""

from __future__ import annotations


import numpy as np
import pytest

import gpuconv
from gpuconv import checking, grad, kernels, reference
from gpuconv.checking import assert_close
from gpuconv.geometry import (conv2d_geometry, local_conv2d_geometry, tiled_conv2d_geometry)
from gpuconv.problems import CONV_PROBLEMS, LOCAL_PROBLEMS, TILED_PROBLEMS
from gpuconv.runtime import cuda_available
from helpers import rng_for  # noqa: E402

DTYPES = list(checking.DTYPES)  # float16, bfloat16, float32, float64
dtype_ids = lambda d: np.dtype(d).name  # noqa: E731



def uniform(rng, shape, dtype=np.float64) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def on(rt, a):
    return rt.xp.ascontiguousarray(rt.xp.asarray(a))


def host(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.get()


def poisoned(rt, shape, dtype):
    return rt.xp.full(shape, np.nan, dtype)


def case(problem, dtype, salt=""):
    """(g, x, w, b, dy) of a TiledConvProblem in ``dtype``."""
    g = tiled_conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    rng = rng_for(salt, problem.name, np.dtype(dtype).name)
    b_shape = {None: None, "channel": (g.K,), "tile": g.tile_bias_shape}[problem.bias]
    return (g, uniform(rng, g.x_shape, dtype), uniform(rng, g.w_shape, dtype),
            None if b_shape is None else uniform(rng, b_shape, dtype),
            uniform(rng, g.y_shape, dtype))


# ----------------------------------------------------------------------------------------
# nested loops, from the formulas (independent of gpuconv.reference)


def naive_forward(x, w, b, stride, pads, dilation):
    """y[n,k,p,q] = bias + sum x[n,c,p*sh-pt+r*dh, q*sw-pl+s*dw] * w[p%TH, q%TW, k,c,r,s]."""
    N, C, H, W = x.shape
    TH, TW, K, _, R, S = w.shape
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = stride, dilation, pads
    P = (H + pt + pb - dh * (R - 1) - 1) // sh + 1
    Q = (W + pl + pr - dw * (S - 1) - 1) // sw + 1
    y = np.zeros((N, K, P, Q))
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    total = 0.0
                    if b is not None:
                        total = float(b[k] if b.ndim == 1 else b[k, p % TH, q % TW])
                    for c in range(C):
                        for r in range(R):
                            for s in range(S):
                                h, v = p * sh - pt + r * dh, q * sw - pl + s * dw
                                if 0 <= h < H and 0 <= v < W:
                                    total += x[n, c, h, v] * w[p % TH, q % TW, k, c, r, s]
                    y[n, k, p, q] = total
    return y


def naive_gradients(x, w, dy, stride, pads, dilation):
    """(dx, dw, db (K, TH, TW)) by scattering every term of the forward sum."""
    N, C, H, W = x.shape
    TH, TW, K, _, R, S = w.shape
    (sh, sw), (dh, dwl), (pt, _, pl, _) = stride, dilation, pads
    P, Q = dy.shape[2:]
    dx, dw, db = np.zeros(x.shape), np.zeros(w.shape), np.zeros((K, TH, TW))
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    g = dy[n, k, p, q]
                    db[k, p % TH, q % TW] += g
                    for c in range(C):
                        for r in range(R):
                            for s in range(S):
                                h, v = p * sh - pt + r * dh, q * sw - pl + s * dwl
                                if 0 <= h < H and 0 <= v < W:
                                    dx[n, c, h, v] += g * w[p % TH, q % TW, k, c, r, s]
                                    dw[p % TH, q % TW, k, c, r, s] += g * x[n, c, h, v]
    return dx, dw, db


def geometry_args(g):
    return ((g.stride_h, g.stride_w), (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right),
            (g.dilation_h, g.dilation_w))


@pytest.mark.parametrize("problem", TILED_PROBLEMS, ids=lambda p: p.name)
def test_reference_matches_nested_loops(problem):
    g, x, w, b, dy = case(problem, np.float64, "naive")
    args = geometry_args(g)
    np.testing.assert_allclose(reference.tiled_conv2d(x, w, b, g), naive_forward(x, w, b, *args),
                               rtol=1e-12, atol=1e-12)
    dx, dw, db = naive_gradients(x, w, dy, *args)
    np.testing.assert_allclose(reference.tiled_conv2d_input(dy, w, g), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reference.tiled_conv2d_weight(x, dy, g), dw, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(reference.tiled_conv2d_bias(dy, g), db, rtol=1e-12, atol=1e-12)


def test_hand_checked_example():
    """Two banks alternating along the width: +1 and -1 1x1 filters."""
    x = np.arange(8.0).reshape(1, 1, 2, 4)
    w = np.array([1.0, -1.0]).reshape(1, 2, 1, 1, 1, 1)
    want = np.array([[[[0.0, -1.0, 2.0, -3.0], [4.0, -5.0, 6.0, -7.0]]]])
    np.testing.assert_array_equal(gpuconv.tiled_conv2d(x, w), want)
    with gpuconv.use_backend("emulator"):
        np.testing.assert_array_equal(gpuconv.tiled_conv2d(x, w), want)


# ----------------------------------------------------------------------------------------
# PyTorch: F.unfold + einsum (no such op in PyTorch), gradients by autograd


def torch_tiled(torch, x, w, b, stride, padding, dilation):
    """Tiled / locally connected conv2d written with F.unfold: gather each position's bank
    w[p % TH, q % TW], then one einsum over (c, r, s)."""
    F = torch.nn.functional
    N = x.shape[0]
    TH, TW, K, C, R, S = w.shape
    cols = F.unfold(x, (R, S), dilation=dilation, padding=padding, stride=stride)  # (N, CRS, L)
    g = conv2d_geometry(tuple(x.shape), (K, C, R, S), stride, padding, dilation)
    rows = torch.arange(g.P) % TH
    columns = torch.arange(g.Q) % TW
    w_full = w[rows][:, columns].reshape(g.P * g.Q, K, C * R * S)       # (L, K, CRS)
    y = torch.einsum("nlp,pkl->nkp", cols, w_full).reshape(N, K, g.P, g.Q)
    if b is not None:
        y = y + (b.reshape(1, K, 1, 1) if b.dim() == 1 else b[:, rows][:, :, columns][None])
    return y


@pytest.mark.parametrize("problem", [p for p in TILED_PROBLEMS if not isinstance(p.padding, str)],
                         ids=lambda p: p.name)
def test_reference_and_kernels_match_torch_unfold(problem):
    torch = pytest.importorskip("torch")
    g, x, w, b, dy = case(problem, np.float64, "torch")
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    y = torch_tiled(torch, tx, tw, tb, problem.stride, problem.padding, problem.dilation)
    (y * torch.tensor(dy)).sum().backward()
    local = problem.tile is None
    fwd = gpuconv.local_conv2d if local else gpuconv.tiled_conv2d
    dx_fn = grad.local_conv2d_input if local else grad.tiled_conv2d_input
    dw_fn = grad.local_conv2d_weight if local else grad.tiled_conv2d_weight
    for backend in ("numpy", "emulator"):
        with gpuconv.use_backend(backend):
            np.testing.assert_allclose(fwd(x, w, b, **problem.kwargs), y.detach().numpy(),
                                       rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(dx_fn(x.shape, w, dy, **problem.kwargs), tx.grad.numpy(),
                                       rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(dw_fn(x, w.shape, dy, **problem.kwargs), tw.grad.numpy(),
                                       rtol=1e-10, atol=1e-12)
            if b is not None:
                if b.ndim == 1:
                    db = grad.conv2d_bias(dy)
                elif local:
                    db = grad.local_conv2d_bias(dy)
                else:
                    db = grad.tiled_conv2d_bias(dy, (g.TH, g.TW))
                np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------
# identities: tile (1, 1) is conv2d; tile (P, Q) is local_conv2d

IDENTITY_CONV = [p for p in CONV_PROBLEMS if p.groups == 1 and p.name in
                 ("tiny_3x3", "odd_sizes", "stride2_pad1", "mixed_stride", "dilation2",
                  "same_even", "full")]


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("problem", IDENTITY_CONV, ids=lambda p: p.name)
def test_tile_1x1_is_conv2d(problem, backend):
    rng = rng_for("conv identity", problem.name)
    g = conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    x, w = uniform(rng, g.x_shape), uniform(rng, g.w_shape)
    b, dy = uniform(rng, (g.K,)), uniform(rng, g.y_shape)
    w6 = w[None, None]
    kw = problem.kwargs
    kw.pop("groups")
    with gpuconv.use_backend(backend):
        assert_close(gpuconv.tiled_conv2d(x, w6, b, **kw), gpuconv.conv2d(x, w, b, **kw))
        assert_close(gpuconv.tiled_conv2d(x, w6, b.reshape(-1, 1, 1), **kw),
                     gpuconv.conv2d(x, w, b, **kw))
        assert_close(grad.tiled_conv2d_input(x.shape, w6, dy, **kw),
                     grad.conv2d_input(x.shape, w, dy, **kw))
        assert_close(grad.tiled_conv2d_weight(x, w6.shape, dy, **kw)[0, 0],
                     grad.conv2d_weight(x, w.shape, dy, **kw))
        assert_close(grad.tiled_conv2d_bias(dy, 1)[:, 0, 0], grad.conv2d_bias(dy))


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("problem", TILED_PROBLEMS, ids=lambda p: p.name)
def test_tile_of_the_output_size_is_local_conv2d(problem, backend):
    """The same numbers, bit for bit: local_conv2d is tiled_conv2d with tile (P, Q)."""
    g0 = conv2d_geometry(problem.x_shape, problem.w_shape[2:], **problem.kwargs)
    rng = rng_for("local identity", problem.name)
    x = uniform(rng, problem.x_shape)
    w = uniform(rng, (g0.P, g0.Q, g0.K, g0.C, g0.R, g0.S))
    b, dy = uniform(rng, (g0.K, g0.P, g0.Q)), uniform(rng, g0.y_shape)
    kw = problem.kwargs
    with gpuconv.use_backend(backend):
        pairs = [
            (gpuconv.local_conv2d(x, w, b, **kw), gpuconv.tiled_conv2d(x, w, b, **kw)),
            (grad.local_conv2d_input(x.shape, w, dy, **kw),
             grad.tiled_conv2d_input(x.shape, w, dy, **kw)),
            (grad.local_conv2d_weight(x, w.shape, dy, **kw),
             grad.tiled_conv2d_weight(x, w.shape, dy, **kw)),
            (grad.local_conv2d_bias(dy), grad.tiled_conv2d_bias(dy, (g0.P, g0.Q))),
        ]
    for local, tiled in pairs:
        np.testing.assert_array_equal(local, tiled)
    # and a locally connected layer's bias gradient is dy summed over the batch
    np.testing.assert_allclose(pairs[3][0], dy.sum(axis=0), rtol=1e-12)


def test_local_conv2d_with_a_channel_bias():
    problem = LOCAL_PROBLEMS[0]
    g, x, w, _, _ = case(problem, np.float64, "channel bias")
    b = np.array([0.5, -2.0])
    with gpuconv.use_backend("emulator"):
        y0 = gpuconv.local_conv2d(x, w)
        np.testing.assert_allclose(gpuconv.local_conv2d(x, w, b), y0 + b.reshape(1, -1, 1, 1),
                                   rtol=1e-14, atol=1e-14)


# ----------------------------------------------------------------------------------------
# the kernels against the reference, every dtype, NaN-poisoned outputs


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("problem", TILED_PROBLEMS, ids=lambda p: p.name)
def test_kernels_match_the_reference(rt, problem, dtype):
    g, x, w, b, dy = case(problem, dtype, "kernels")
    y = poisoned(rt, g.y_shape, dtype)
    kernels.tiled_conv2d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b), y)
    assert_close(host(y), reference.tiled_conv2d(x, w, b, g), dtype, what="fprop")
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.tiled_conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), dx)
    assert_close(host(dx), reference.tiled_conv2d_input(dy, w, g), dtype, what="dgrad")
    dw = poisoned(rt, g.w_shape, dtype)
    kernels.tiled_conv2d_wgrad(rt, g, on(rt, x), on(rt, dy), dw)
    assert_close(host(dw), reference.tiled_conv2d_weight(x, dy, g), dtype, what="wgrad")
    db = poisoned(rt, g.tile_bias_shape, dtype)
    kernels.tiled_conv2d_bgrad(rt, g, on(rt, dy), db)
    assert_close(host(db), reference.tiled_conv2d_bias(dy, g), dtype, what="bgrad")


def test_banks_past_the_output_get_zero_gradient():
    problem = next(p for p in TILED_PROBLEMS if p.name == "tile_past_output")
    g, x, _, _, dy = case(problem, np.float64, "unused")
    assert (g.TH, g.TW) == (4, 5) and (g.P, g.Q) == (3, 3)
    with gpuconv.use_backend("emulator"):
        dw = grad.tiled_conv2d_weight(x, g.w_shape, dy, **problem.kwargs)
        db = grad.tiled_conv2d_bias(dy, (g.TH, g.TW))
    assert not dw[3].any() and not dw[:, 3:].any() and not db[:, 3].any()
    assert dw[:3, :3].all()


@pytest.mark.parametrize("problem", [p for p in TILED_PROBLEMS
                                     if p.name in ("tile_2x3_odd", "local_strided")],
                         ids=lambda p: p.name)
def test_capped_grid_still_covers_everything(rt, problem, monkeypatch):
    monkeypatch.setattr(kernels, "MAX_GRID_X", 2)
    dtype = np.float32
    g, x, w, b, dy = case(problem, dtype, "capped")
    y, dx = poisoned(rt, g.y_shape, dtype), poisoned(rt, g.x_shape, dtype)
    dw, db = poisoned(rt, g.w_shape, dtype), poisoned(rt, g.tile_bias_shape, dtype)
    kernels.tiled_conv2d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b), y)
    kernels.tiled_conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), dx)
    kernels.tiled_conv2d_wgrad(rt, g, on(rt, x), on(rt, dy), dw)
    kernels.tiled_conv2d_bgrad(rt, g, on(rt, dy), db)
    assert_close(host(y), reference.tiled_conv2d(x, w, b, g), dtype)
    assert_close(host(dx), reference.tiled_conv2d_input(dy, w, g), dtype)
    assert_close(host(dw), reference.tiled_conv2d_weight(x, dy, g), dtype)
    assert_close(host(db), reference.tiled_conv2d_bias(dy, g), dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=dtype_ids)
def test_results_are_bitwise_deterministic(rt, dtype):
    problem = next(p for p in TILED_PROBLEMS if p.name == "tile_mixed")
    g, x, w, b, dy = case(problem, dtype, "determinism")
    runs = []
    for _ in range(2):
        outs = [poisoned(rt, g.y_shape, dtype), poisoned(rt, g.x_shape, dtype),
                poisoned(rt, g.w_shape, dtype), poisoned(rt, g.tile_bias_shape, dtype)]
        kernels.tiled_conv2d_fprop(rt, g, on(rt, x), on(rt, w), on(rt, b), outs[0])
        kernels.tiled_conv2d_dgrad(rt, g, on(rt, dy), on(rt, w), outs[1])
        kernels.tiled_conv2d_wgrad(rt, g, on(rt, x), on(rt, dy), outs[2])
        kernels.tiled_conv2d_bgrad(rt, g, on(rt, dy), outs[3])
        runs.append([host(a).tobytes() for a in outs])
    assert runs[0] == runs[1]


def test_only_version_v1_exists(rt):
    g, x, w, b, _ = case(TILED_PROBLEMS[0], np.float32, "version")
    y = poisoned(rt, g.y_shape, np.float32)
    kernels.tiled_conv2d_fprop(rt, g, on(rt, x), on(rt, w), on(rt, b), y, version="v1")
    with pytest.raises(ValueError, match="tiled_fprop has versions"):
        kernels.tiled_conv2d_fprop(rt, g, on(rt, x), on(rt, w), on(rt, b), y, version="v2")


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="no CUDA device visible to CuPy")
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_public_api_on_cupy_arrays(dtype):
    import cupy

    problem = next(p for p in TILED_PROBLEMS if p.name == "tile_2x3_odd")
    g, x, w, b, dy = case(problem, dtype, "cupy")
    y = gpuconv.tiled_conv2d(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), **problem.kwargs)
    assert isinstance(y, cupy.ndarray)
    assert_close(y.get(), reference.tiled_conv2d(x, w, b, g), dtype)
    dw = grad.tiled_conv2d_weight(cupy.asarray(x), w.shape, cupy.asarray(dy), **problem.kwargs)
    assert_close(dw.get(), reference.tiled_conv2d_weight(x, dy, g), dtype)


# ----------------------------------------------------------------------------------------
# the public API: unbatched input, empty batch, non-contiguous input


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_unbatched_input_and_gradients(backend):
    problem = next(p for p in TILED_PROBLEMS if p.name == "tile_2x3_odd")
    g, x, w, b, dy = case(problem, np.float64, "unbatched")
    kw = problem.kwargs
    with gpuconv.use_backend(backend):
        np.testing.assert_allclose(gpuconv.tiled_conv2d(x[0], w, b, **kw),
                                   gpuconv.tiled_conv2d(x[:1], w, b, **kw)[0], rtol=1e-14)
        np.testing.assert_allclose(grad.tiled_conv2d_input(x.shape[1:], w, dy[0], **kw),
                                   grad.tiled_conv2d_input((1,) + x.shape[1:], w, dy[:1], **kw)[0],
                                   rtol=1e-14)
        np.testing.assert_allclose(grad.tiled_conv2d_weight(x[0], w.shape, dy[0], **kw),
                                   grad.tiled_conv2d_weight(x[:1], w.shape, dy[:1], **kw),
                                   rtol=1e-14)
        np.testing.assert_allclose(grad.tiled_conv2d_bias(dy[0], (2, 3)),
                                   grad.tiled_conv2d_bias(dy[:1], (2, 3)), rtol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_empty_batch(backend):
    x = np.zeros((0, 2, 5, 5), np.float32)
    w = np.ones((2, 2, 3, 2, 3, 3), np.float32)
    with gpuconv.use_backend(backend):
        assert gpuconv.tiled_conv2d(x, w).shape == (0, 3, 3, 3)
        dw = grad.tiled_conv2d_weight(x, w.shape, np.zeros((0, 3, 3, 3), np.float32))
        assert dw.shape == w.shape and not dw.any()
        assert grad.local_conv2d_bias(np.zeros((0, 3, 3, 3), np.float32)).shape == (3, 3, 3)


def test_non_contiguous_input_is_read_correctly():
    problem = LOCAL_PROBLEMS[0]
    g, x, w, b, _ = case(problem, np.float32, "strided")
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # same values
    assert not xt.flags.c_contiguous
    with gpuconv.use_backend("emulator"):
        assert_close(gpuconv.local_conv2d(xt, w, b), reference.tiled_conv2d(x, w, b, g),
                     np.float32)


# ----------------------------------------------------------------------------------------
# float64 finite differences through the kernels


@pytest.mark.parametrize("problem", [p for p in TILED_PROBLEMS
                                     if p.name in ("tile_mixed", "local_valid", "tile_same_even")],
                         ids=lambda p: p.name)
def test_gradients_match_finite_differences(problem):
    """L = sum(y * dy): dL/dx, dL/dw, dL/db by central differences at a few elements."""
    g, x, w, b, dy = case(problem, np.float64, "fd")
    if b is None:
        b = np.zeros(g.tile_bias_shape)
    local = problem.tile is None
    fwd = gpuconv.local_conv2d if local else gpuconv.tiled_conv2d
    kw = problem.kwargs

    def loss(x_, w_, b_):
        return float((fwd(x_, w_, b_, **kw) * dy).sum())

    with gpuconv.use_backend("emulator"):
        dx = (grad.local_conv2d_input if local else grad.tiled_conv2d_input)(x.shape, w, dy, **kw)
        dw = (grad.local_conv2d_weight if local else grad.tiled_conv2d_weight)(x, w.shape, dy, **kw)
        if b.ndim == 1:
            db = grad.conv2d_bias(dy)
        else:
            db = grad.local_conv2d_bias(dy) if local else grad.tiled_conv2d_bias(dy, (g.TH, g.TW))
        rng = rng_for("fd points", problem.name)
        eps = 1e-4
        for which, (arr, analytic) in enumerate(((x, dx), (w, dw), (b, db))):
            for flat in rng.choice(arr.size, size=min(6, arr.size), replace=False):
                idx = np.unravel_index(flat, arr.shape)
                args_plus = [x.copy(), w.copy(), b.copy()]
                args_minus = [x.copy(), w.copy(), b.copy()]
                args_plus[which][idx] += eps
                args_minus[which][idx] -= eps
                numeric = (loss(*args_plus) - loss(*args_minus)) / (2 * eps)
                assert numeric == pytest.approx(analytic[idx], rel=1e-7, abs=1e-8), \
                    (["x", "w", "b"][which], idx)


# ----------------------------------------------------------------------------------------
# invalid arguments: the type of the exception and the argument named

X = np.zeros((2, 3, 6, 6), np.float32)
W_TILED = np.zeros((2, 2, 4, 3, 3, 3), np.float32)
W_LOCAL = np.zeros((4, 4, 4, 3, 3, 3), np.float32)
DY = np.zeros((2, 4, 4, 4), np.float32)


@pytest.mark.parametrize("call, error, words", [
    (lambda: gpuconv.tiled_conv2d(X, W_TILED[0]), ValueError, "weight must be 6-D"),
    (lambda: gpuconv.tiled_conv2d(X[0, 0], W_TILED), ValueError, "input must be"),
    (lambda: gpuconv.tiled_conv2d(X, W_TILED.astype(np.float64)), TypeError, "weight has dtype"),
    (lambda: gpuconv.tiled_conv2d(X.astype(np.int32), W_TILED), TypeError, "input must have dtype"),
    (lambda: gpuconv.tiled_conv2d(X.tolist(), W_TILED), TypeError, "input must be a numpy"),
    (lambda: gpuconv.tiled_conv2d(X, np.zeros((0, 2, 4, 3, 3, 3), np.float32)), ValueError,
     "tile height TH=0"),
    (lambda: gpuconv.tiled_conv2d(X, np.zeros((2, 2, 4, 5, 3, 3), np.float32)), ValueError,
     "weight of shape (2, 2, 4, 5, 3, 3) expects C=5"),
    (lambda: gpuconv.tiled_conv2d(X, np.zeros((2, 2, 4, 3, 7, 3), np.float32)), ValueError,
     "weight: kernel size"),
    (lambda: gpuconv.tiled_conv2d(X, W_TILED, np.zeros(5, np.float32)), ValueError,
     "bias has shape (5,)"),
    (lambda: gpuconv.tiled_conv2d(X, W_TILED, np.zeros((4, 4, 4), np.float32)), ValueError,
     "bias has shape (4, 4, 4)"),
    (lambda: gpuconv.tiled_conv2d(X, W_TILED, np.zeros((4, 2), np.float32)), ValueError,
     "bias must be 1-D or 3-D"),
    (lambda: gpuconv.tiled_conv2d(X, W_TILED, stride=0), ValueError, "stride must be positive"),
    (lambda: gpuconv.tiled_conv2d(X, W_TILED, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: gpuconv.tiled_conv2d(X, W_TILED, padding="same", stride=2), ValueError,
     "padding='same'"),
    (lambda: gpuconv.tiled_conv2d(X, W_TILED, dilation=(1.5, 1)), TypeError, "dilation must be"),
    (lambda: gpuconv.local_conv2d(X, W_TILED), ValueError,
     "weight of shape (2, 2, 4, 3, 3, 3) has (2, 2) output positions"),
    (lambda: gpuconv.local_conv2d(X, W_LOCAL, stride=2), ValueError, "(P, Q, K, C, R, S)"),
    (lambda: gpuconv.local_conv2d(X, W_LOCAL, np.zeros((4, 2, 2), np.float32)), ValueError,
     "bias has shape (4, 2, 2)"),
    (lambda: grad.tiled_conv2d_input((2, 3, 6), W_TILED, DY), ValueError, "input_size"),
    (lambda: grad.tiled_conv2d_input((2, 3, 7, 6), W_TILED, DY), ValueError, "grad_output has shape"),
    (lambda: grad.local_conv2d_input(X.shape, W_LOCAL, DY[:, :2]), ValueError,
     "grad_output has shape"),
    (lambda: grad.tiled_conv2d_weight(X, (2, 2, 4, 3, 3), DY), ValueError, "weight_size must have 6"),
    (lambda: grad.tiled_conv2d_weight(X, 7, DY), TypeError, "weight_size must be a sequence"),
    (lambda: grad.tiled_conv2d_weight(X, W_TILED.shape, DY[0]), ValueError, "grad_output is 3-D"),
    (lambda: grad.local_conv2d_weight(X, W_TILED.shape, DY), ValueError, "output positions"),
    (lambda: grad.tiled_conv2d_bias(DY, 0), ValueError, "tile_size must be positive"),
    (lambda: grad.tiled_conv2d_bias(DY, "2"), TypeError, "tile_size must be"),
    (lambda: grad.local_conv2d_bias(DY[0, 0]), ValueError, "grad_output must be"),
    (lambda: grad.local_conv2d_bias(DY.astype(np.int64)), TypeError, "grad_output must have dtype"),
])
def test_invalid_arguments_name_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value), str(info.value)


def test_geometry_objects():
    g = tiled_conv2d_geometry((2, 3, 6, 6), (2, 2, 4, 3, 3, 3), padding=1)
    assert (g.N, g.P, g.Q, g.TH, g.TW, g.groups) == (2, 6, 6, 2, 2, 1)
    assert g.w_shape == (2, 2, 4, 3, 3, 3) and g.tile_bias_shape == (4, 2, 2)
    assert g.y_shape == (2, 4, 6, 6) and g.x_shape == (2, 3, 6, 6)
    # 'same' with an even kernel: asymmetric padding, output = input size
    lg = local_conv2d_geometry((1, 3, 7, 6), (7, 6, 5, 3, 4, 2), padding="same")
    assert (lg.P, lg.Q, lg.TH, lg.TW) == (7, 6, 7, 6)
    assert (lg.pad_top, lg.pad_bottom, lg.pad_left, lg.pad_right) == (1, 2, 0, 1)
    with pytest.raises(ValueError, match="output positions"):
        local_conv2d_geometry((1, 3, 7, 6), (4, 2, 5, 3, 4, 2), padding="same")
