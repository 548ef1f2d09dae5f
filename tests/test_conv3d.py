"""conv3d (seed 002 §9.7: volumes and video) and its gradients.

Vocabulary: input depth D, filter depth T, output depth O (height and width as in conv2d).

* geometry: output sizes and padding against PyTorch and the formulas;
* reference: against independent nested loops (tiny shapes), against PyTorch (forward and
  autograd), and against float64 finite differences;
* kernels (cuda/conv3d.cu, plus conv2d's bias kernels on dy viewed as 4-D): on the CPU runtime
  everywhere and on the GPU where CuPy sees one (marked ``gpu``), against the reference for
  float16/32/64 over gpuconv.problems.CONV3D_PROBLEMS, outputs NaN-poisoned before each launch;
* the public API: unbatched and non-contiguous inputs, empty batches, dtypes, determinism;
* invalid arguments: the exception type and a message that names the argument.
"""

from __future__ import annotations


import numpy as np
import pytest

import gpuconv
from gpuconv import checking, grad, kernels, reference
from gpuconv.checking import assert_close
from gpuconv.geometry import conv2d_geometry, conv3d_geometry
from gpuconv.problems import CONV3D_PROBLEMS, Conv3dProblem
from gpuconv.runtime import get_runtime
from helpers import numeric_grad, rng_for  # noqa: E402

DTYPES = list(checking.DTYPES)  # float16, bfloat16, float32, float64
PROBLEM_IDS = [p.name for p in CONV3D_PROBLEMS]



# ----------------------------------------------------------------------------------------
# helpers




def case(problem, dtype, what):
    g = conv3d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    rng = rng_for(what, problem.name, np.dtype(dtype).name)
    x = rng.uniform(-1, 1, g.x_shape).astype(dtype)
    w = rng.uniform(-1, 1, g.w_shape).astype(dtype)
    b = rng.uniform(-1, 1, g.K).astype(dtype) if problem.bias else None
    dy = rng.uniform(-1, 1, g.y_shape).astype(dtype)
    return g, x, w, b, dy


def on(rt, a):
    return rt.xp.ascontiguousarray(rt.xp.asarray(a))


def host(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.get()


def poisoned(rt, shape, dtype):
    """NaN everywhere: an element a kernel fails to write shows as a mismatch."""
    return rt.xp.full(shape, np.nan, dtype)


# ----------------------------------------------------------------------------------------
# independent nested loops (written from the formulas; no geometry object, no padding tricks)


def naive_conv3d(x, w, b, stride, pad, dilation, groups):
    """pad = ((front, back), (top, bottom), (left, right))."""
    N, C, D, H, W = x.shape
    K, Cg, T, R, S = w.shape
    sizes = (D, H, W)
    kernel = (T, R, S)
    out = [(sizes[a] + pad[a][0] + pad[a][1] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
           for a in range(3)]
    Kg = K // groups
    y = np.zeros((N, K, *out))
    for n in range(N):
        for k in range(K):
            for o in range(out[0]):
                for p in range(out[1]):
                    for q in range(out[2]):
                        total = 0.0 if b is None else float(b[k])
                        for c in range(Cg):
                            for t in range(T):
                                for r in range(R):
                                    for s in range(S):
                                        d = o * stride[0] - pad[0][0] + t * dilation[0]
                                        h = p * stride[1] - pad[1][0] + r * dilation[1]
                                        v = q * stride[2] - pad[2][0] + s * dilation[2]
                                        if 0 <= d < D and 0 <= h < H and 0 <= v < W:
                                            total += (float(x[n, (k // Kg) * Cg + c, d, h, v])
                                                      * float(w[k, c, t, r, s]))
                        y[n, k, o, p, q] = total
    return y


def naive_conv3d_grads(x, w, dy, stride, pad, dilation, groups):
    """(dx, dw, db) by scattering every forward term's derivative."""
    N, C, D, H, W = x.shape
    K, Cg, T, R, S = w.shape
    Kg = K // groups
    dx, dw = np.zeros(x.shape), np.zeros(w.shape)
    db = dy.sum(axis=(0, 2, 3, 4))
    for n, k, o, p, q in np.ndindex(dy.shape):
        for c, t, r, s in np.ndindex(Cg, T, R, S):
            d = o * stride[0] - pad[0][0] + t * dilation[0]
            h = p * stride[1] - pad[1][0] + r * dilation[1]
            v = q * stride[2] - pad[2][0] + s * dilation[2]
            if 0 <= d < D and 0 <= h < H and 0 <= v < W:
                ci = (k // Kg) * Cg + c
                dx[n, ci, d, h, v] += dy[n, k, o, p, q] * w[k, c, t, r, s]
                dw[k, c, t, r, s] += dy[n, k, o, p, q] * x[n, ci, d, h, v]
    return dx, dw, db


# (name, x_shape, w_shape, stride, padding as given, padding per side, dilation, groups)
TINY = [
    ("valid", (1, 2, 4, 4, 3), (3, 2, 2, 3, 2), (1, 1, 1), 0, ((0, 0), (0, 0), (0, 0)),
     (1, 1, 1), 1),
    ("stride_pad", (2, 2, 5, 4, 5), (2, 2, 3, 2, 3), (2, 1, 2), (1, 0, 2),
     ((1, 1), (0, 0), (2, 2)), (1, 1, 1), 1),
    ("dilation_groups", (1, 4, 5, 5, 4), (4, 2, 2, 2, 2), (1, 1, 1), 1,
     ((1, 1), (1, 1), (1, 1)), (2, 1, 2), 2),
    ("same_even", (1, 2, 3, 4, 5), (2, 2, 2, 3, 4), (1, 1, 1), "same",
     ((0, 1), (1, 1), (1, 2)), (1, 1, 1), 1),
    ("full_depthwise", (1, 3, 2, 3, 3), (3, 1, 2, 2, 2), (1, 1, 1), "full",
     ((1, 1), (1, 1), (1, 1)), (1, 1, 1), 3),
]


# ----------------------------------------------------------------------------------------
# geometry


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 3, 8, 9, 10), (4, 3, 3, 3, 3), dict()),
    ((1, 2, 7, 8, 9), (3, 2, 3, 2, 4), dict(stride=(1, 2, 3), padding=(1, 0, 2))),
    ((1, 4, 9, 9, 9), (4, 1, 3, 3, 3), dict(dilation=(3, 2, 1), padding=2, groups=4)),
    ((1, 2, 5, 6, 7), (2, 2, 2, 4, 3), dict(padding="same")),
    ((1, 2, 5, 6, 7), (2, 2, 2, 4, 3), dict(padding="same", dilation=(2, 3, 1))),
    ((1, 2, 5, 6, 7), (2, 2, 2, 4, 3), dict(padding="valid", stride=2)),
    ((1, 2, 3, 3, 3), (2, 2, 3, 3, 3), dict(stride=5)),
])
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_output_size_matches_torch(x_shape, w_shape, kwargs):
    torch = pytest.importorskip("torch")
    g = conv3d_geometry(x_shape, w_shape, **kwargs)
    y = torch.nn.functional.conv3d(torch.zeros(x_shape), torch.zeros(w_shape), **kwargs)
    assert g.y_shape == tuple(y.shape)


def test_same_padding_with_even_kernels_puts_the_extra_plane_back_bottom_right():
    g = conv3d_geometry((1, 1, 5, 6, 7), (1, 1, 2, 4, 2), padding="same")
    assert (g.pad_front, g.pad_back, g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == \
        (0, 1, 1, 2, 0, 1)
    assert (g.O, g.P, g.Q) == (5, 6, 7)


def test_full_padding_gives_every_partial_overlap():
    g = conv3d_geometry((1, 1, 4, 5, 6), (1, 1, 2, 3, 4), padding="full", dilation=(1, 2, 1))
    assert (g.O, g.P, g.Q) == (4 + 1, 5 + 2 * 2, 6 + 3)
    assert (g.pad_front, g.pad_back, g.pad_top, g.pad_bottom) == (1, 1, 4, 4)


def test_geometry_names_and_sizes():
    g = conv3d_geometry((2, 6, 4, 16, 16), (9, 2, 3, 3, 3), padding=1, groups=3)
    assert g.x_shape == (2, 6, 4, 16, 16) and g.w_shape == (9, 2, 3, 3, 3)
    assert g.y_shape == (2, 9, 4, 16, 16)
    assert (g.C_per_group, g.K_per_group) == (2, 3)
    assert g.flops == 2 * 2 * 9 * 4 * 16 * 16 * 2 * 27


# ----------------------------------------------------------------------------------------
# reference


@pytest.mark.parametrize("name, x_shape, w_shape, stride, padding, pads, dilation, groups", TINY,
                         ids=[c[0] for c in TINY])
def test_reference_matches_nested_loops(name, x_shape, w_shape, stride, padding, pads, dilation,
                                        groups):
    rng = rng_for("naive", name)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    g = conv3d_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    assert (g.pad_front, g.pad_back, g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == \
        sum(pads, ())
    want = naive_conv3d(x, w, b, stride, pads, dilation, groups)
    np.testing.assert_allclose(reference.conv3d(x, w, b, g), want, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(g.y_shape)
    dx, dw, db = naive_conv3d_grads(x, w, dy, stride, pads, dilation, groups)
    np.testing.assert_allclose(reference.conv3d_input(dy, w, g), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reference.conv3d_weight(x, dy, g), dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reference.conv3d_bias(dy), db, rtol=1e-12, atol=1e-12)


def _torch_kwargs(problem):
    """PyTorch has no padding='full': give it as the symmetric padding it is."""
    kwargs = dict(problem.kwargs)
    if kwargs["padding"] == "full":
        g = conv3d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
        kwargs["padding"] = (g.pad_front, g.pad_top, g.pad_left)
    return kwargs


@pytest.mark.parametrize("problem", CONV3D_PROBLEMS, ids=PROBLEM_IDS)
def test_reference_matches_torch_forward_and_autograd(problem):
    torch = pytest.importorskip("torch")
    g, x, w, b, dy = case(problem, np.float64, "torch")
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = None if b is None else torch.from_numpy(b).requires_grad_()
    yt = torch.nn.functional.conv3d(xt, wt, bt, **_torch_kwargs(problem))
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(reference.conv3d(x, w, b, g), yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(reference.conv3d_input(dy, w, g), xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(reference.conv3d_weight(x, dy, g), wt.grad.numpy(), atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(reference.conv3d_bias(dy), bt.grad.numpy(), atol=1e-12)


def test_gradients_take_torch_nn_grad_arguments():
    """grad.conv3d_input / conv3d_weight: the positional signature of torch.nn.grad's."""
    torch = pytest.importorskip("torch")
    p = CONV3D_PROBLEMS[PROBLEM_IDS.index("stride_1_2_2")]
    g, x, w, _, dy = case(p, np.float64, "nn.grad")
    args = (p.stride, p.padding, p.dilation, p.groups)
    want_dx = torch.nn.grad.conv3d_input(x.shape, torch.from_numpy(w), torch.from_numpy(dy), *args)
    want_dw = torch.nn.grad.conv3d_weight(torch.from_numpy(x), w.shape, torch.from_numpy(dy), *args)
    for backend in ("numpy", "emulator"):
        with gpuconv.use_backend(backend):
            np.testing.assert_allclose(grad.conv3d_input(x.shape, w, dy, *args), want_dx.numpy(),
                                       atol=1e-12)
            np.testing.assert_allclose(grad.conv3d_weight(x, w.shape, dy, *args),
                                       want_dw.numpy(), atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("name, x_shape, w_shape, stride, padding, pads, dilation, groups",
                         [TINY[i] for i in (1, 2, 3)], ids=[TINY[i][0] for i in (1, 2, 3)])
def test_gradients_match_finite_differences(backend, name, x_shape, w_shape, stride, padding,
                                            pads, dilation, groups):
    """float64: the gradient ops (reference, or the kernels on the CPU runtime) are the
    derivatives of the forward pass."""
    rng = rng_for("fd", name)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = conv3d_geometry(x_shape, w_shape, **kw)
    dy = rng.standard_normal(g.y_shape)
    loss = lambda: float((reference.conv3d(x, w, b, g) * dy).sum())  # noqa: E731
    with gpuconv.use_backend(backend):
        dx = grad.conv3d_input(x.shape, w, dy, **kw)
        dw = grad.conv3d_weight(x, w.shape, dy, **kw)
        db = grad.conv3d_bias(dy)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), atol=1e-6)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), atol=1e-6)
    np.testing.assert_allclose(db, numeric_grad(loss, b), atol=1e-6)


# ----------------------------------------------------------------------------------------
# kernels against the reference (CPU runtime everywhere; GPU where there is one)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV3D_PROBLEMS, ids=PROBLEM_IDS)
def test_fprop_kernel(rt, problem, dtype):
    g, x, w, b, _ = case(problem, dtype, "fprop")
    y = poisoned(rt, g.y_shape, dtype)
    kernels.conv3d_fprop(rt, g, on(rt, x), on(rt, w), None if b is None else on(rt, b), y)
    assert_close(host(y), reference.conv3d(x, w, b, g), dtype, what=f"fprop {problem.name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV3D_PROBLEMS, ids=PROBLEM_IDS)
def test_dgrad_kernel(rt, problem, dtype):
    g, _, w, _, dy = case(problem, dtype, "dgrad")
    dx = poisoned(rt, g.x_shape, dtype)
    kernels.conv3d_dgrad(rt, g, on(rt, dy), on(rt, w), dx)
    assert_close(host(dx), reference.conv3d_input(dy, w, g), dtype, what=f"dgrad {problem.name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV3D_PROBLEMS, ids=PROBLEM_IDS)
def test_wgrad_kernel(rt, problem, dtype):
    g, x, _, _, dy = case(problem, dtype, "wgrad")
    dw = poisoned(rt, g.w_shape, dtype)
    kernels.conv3d_wgrad(rt, g, on(rt, x), on(rt, dy), dw)
    # float16 products are summed in float (N*O*P*Q <= 1024 terms here): default tolerance.
    assert_close(host(dw), reference.conv3d_weight(x, dy, g), dtype,
                 what=f"wgrad {problem.name}")


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("problem", CONV3D_PROBLEMS, ids=PROBLEM_IDS)
def test_bgrad_kernels_on_dy_viewed_as_4d(rt, problem, dtype, version):
    """What grad.conv3d_bias launches: conv2d's bias kernels on dy as (N, K, O, P*Q)."""
    g, _, _, _, dy = case(problem, dtype, "bgrad")
    dy4 = dy.reshape(g.N, g.K, g.O, g.P * g.Q)
    g2 = conv2d_geometry(dy4.shape, (g.K, 1, 1, 1), groups=g.K)
    db = poisoned(rt, (g.K,), dtype)
    kernels.conv2d_bgrad(rt, g2, on(rt, dy4), db, version=version)
    assert_close(host(db), reference.conv3d_bias(dy), dtype, what=f"bgrad {problem.name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_public_ops_on_the_runtime(rt, dtype):
    """The public functions under use_backend(rt.name), with arrays of the runtime's library."""
    p = CONV3D_PROBLEMS[PROBLEM_IDS.index("groups")]
    g, x, w, b, dy = case(p, dtype, "public")
    with gpuconv.use_backend(rt.name):
        y = gpuconv.conv3d(on(rt, x), on(rt, w), on(rt, b), **p.kwargs)
        dx = grad.conv3d_input(x.shape, on(rt, w), on(rt, dy), **p.kwargs)
        dw = grad.conv3d_weight(on(rt, x), w.shape, on(rt, dy), **p.kwargs)
        db = grad.conv3d_bias(on(rt, dy))
    assert type(y) is type(on(rt, x))
    assert_close(host(y), reference.conv3d(x, w, b, g), dtype, what="conv3d")
    assert_close(host(dx), reference.conv3d_input(dy, w, g), dtype, what="conv3d_input")
    assert_close(host(dw), reference.conv3d_weight(x, dy, g), dtype, what="conv3d_weight")
    assert_close(host(db), reference.conv3d_bias(dy), dtype, what="conv3d_bias")


def test_capped_grid_still_covers_everything(rt, monkeypatch):
    """With the grid capped at 3 blocks, the grid-stride loops cover every element."""
    monkeypatch.setattr(kernels, "MAX_GRID_X", 3)
    p = CONV3D_PROBLEMS[PROBLEM_IDS.index("video_layer")]
    g, x, w, b, dy = case(p, np.float32, "capped")
    assert g.N * g.K * g.O * g.P * g.Q > 3 * kernels.THREADS_PER_BLOCK
    y, dx, dw = (poisoned(rt, s, np.float32) for s in (g.y_shape, g.x_shape, g.w_shape))
    kernels.conv3d_fprop(rt, g, on(rt, x), on(rt, w), on(rt, b), y)
    kernels.conv3d_dgrad(rt, g, on(rt, dy), on(rt, w), dx)
    kernels.conv3d_wgrad(rt, g, on(rt, x), on(rt, dy), dw)
    assert_close(host(y), reference.conv3d(x, w, b, g), np.float32, what="fprop")
    assert_close(host(dx), reference.conv3d_input(dy, w, g), np.float32, what="dgrad")
    assert_close(host(dw), reference.conv3d_weight(x, dy, g), np.float32, what="wgrad")


def test_results_are_bitwise_deterministic(rt):
    p = CONV3D_PROBLEMS[PROBLEM_IDS.index("stride_1_2_2")]
    g, x, w, b, dy = case(p, np.float32, "determinism")
    runs = []
    for _ in range(2):
        y, dx, dw = (poisoned(rt, s, np.float32) for s in (g.y_shape, g.x_shape, g.w_shape))
        kernels.conv3d_fprop(rt, g, on(rt, x), on(rt, w), on(rt, b), y)
        kernels.conv3d_dgrad(rt, g, on(rt, dy), on(rt, w), dx)
        kernels.conv3d_wgrad(rt, g, on(rt, x), on(rt, dy), dw)
        runs.append([host(a).tobytes() for a in (y, dx, dw)])
    assert runs[0] == runs[1]


def test_only_v1_exists():
    p = CONV3D_PROBLEMS[0]
    g, x, w, b, dy = case(p, np.float32, "version")
    rt = get_runtime("emulator")
    with pytest.raises(ValueError, match="conv3d_fprop has versions"):
        kernels.conv3d_fprop(rt, g, x, w, b, np.empty(g.y_shape, np.float32), version="v2")
    assert kernels.KERNELS["conv3d.cu"] == ("conv3d_fprop_v1_direct", "conv3d_dgrad_v1_direct",
                                            "conv3d_wgrad_v1_direct")


# ----------------------------------------------------------------------------------------
# public API details


@pytest.fixture(params=["numpy", "emulator"])
def backend(request):
    with gpuconv.use_backend(request.param):
        yield request.param


def test_unbatched_input(backend):
    rng = rng_for("unbatched")
    x = rng.standard_normal((3, 4, 6, 5))           # (C, D, H, W)
    w = rng.standard_normal((2, 3, 3, 3, 3))
    b = rng.standard_normal(2)
    y = gpuconv.conv3d(x, w, b, padding=1)
    assert y.shape == (2, 4, 6, 5)
    np.testing.assert_allclose(y, gpuconv.conv3d(x[None], w, b, padding=1)[0], atol=1e-12)
    dx = grad.conv3d_input(x.shape, w, y, padding=1)
    dw = grad.conv3d_weight(x, w.shape, y, padding=1)
    db = grad.conv3d_bias(y)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (2,)
    np.testing.assert_allclose(dx, grad.conv3d_input((1,) + x.shape, w, y[None], padding=1)[0],
                               atol=1e-12)
    np.testing.assert_allclose(dw, grad.conv3d_weight(x[None], w.shape, y[None], padding=1),
                               atol=1e-12)


def test_non_contiguous_inputs_are_read_correctly(backend):
    rng = rng_for("strided")
    base = rng.standard_normal((2, 3, 5, 6, 14))
    x = base[..., ::2]                               # every other column: a strided view
    w = rng.standard_normal((3, 3, 2, 2, 2)).transpose(0, 1, 4, 3, 2)
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    np.testing.assert_allclose(gpuconv.conv3d(x, w, stride=(1, 2, 1)),
                               gpuconv.conv3d(x.copy(), w.copy(), stride=(1, 2, 1)), atol=1e-12)


def test_empty_batch(backend):
    x = np.zeros((0, 2, 3, 4, 5), np.float32)
    w = np.ones((4, 2, 2, 2, 2), np.float32)
    y = gpuconv.conv3d(x, w)
    assert y.shape == (0, 4, 2, 3, 4) and y.dtype == np.float32
    assert grad.conv3d_input(x.shape, w, y).shape == x.shape
    dw = grad.conv3d_weight(x, w.shape, y)
    assert dw.shape == w.shape and not dw.any()
    db = grad.conv3d_bias(y)
    assert db.shape == (4,) and not db.any()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_results_keep_the_input_dtype(backend, dtype):
    x = np.ones((1, 2, 3, 3, 3), dtype)
    w = np.ones((2, 2, 2, 2, 2), dtype)
    y = gpuconv.conv3d(x, w)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.full((1, 2, 2, 2, 2), 16, dtype))
    assert grad.conv3d_input(x.shape, w, y).dtype == dtype
    assert grad.conv3d_weight(x, w.shape, y).dtype == dtype
    assert grad.conv3d_bias(y).dtype == dtype


def test_input_size_picks_among_sizes_with_the_same_output(backend):
    """Stride 2: D = 5 and D = 6 both give O = 2; input_size says which one."""
    w = np.ones((1, 1, 3, 1, 1))
    dy = np.ones((1, 1, 2, 1, 1))
    assert grad.conv3d_input((1, 1, 5, 1, 1), w, dy, stride=2).shape == (1, 1, 5, 1, 1)
    dx6 = grad.conv3d_input((1, 1, 6, 1, 1), w, dy, stride=2)
    assert dx6.shape == (1, 1, 6, 1, 1) and dx6[0, 0, 5, 0, 0] == 0  # the last frame is unread


def test_conv3d_over_a_flat_volume_is_conv2d(backend):
    """D = T = 1: conv3d is conv2d of each frame (seed 002: the same layer, one more axis)."""
    rng = rng_for("flat")
    x = rng.standard_normal((2, 4, 1, 9, 8))
    w = rng.standard_normal((6, 2, 1, 3, 3))
    b = rng.standard_normal(6)
    y3 = gpuconv.conv3d(x, w, b, stride=(1, 2, 1), padding=(0, 1, 1), groups=2)
    y2 = gpuconv.conv2d(x[:, :, 0], w[:, :, 0], b, stride=(2, 1), padding=1, groups=2)
    np.testing.assert_allclose(y3[:, :, 0], y2, atol=1e-12)


def test_exported():
    assert gpuconv.conv3d is gpuconv.functional.conv3d and "conv3d" in gpuconv.__all__
    for fn in (gpuconv.conv3d, grad.conv3d_input, grad.conv3d_weight, grad.conv3d_bias):
        assert fn.__doc__ and ">>>" in fn.__doc__, fn.__name__


def test_gpuconv_check_covers_conv3d():
    from gpuconv import checking
    for op in ("conv3d", "conv3d_input", "conv3d_weight", "conv3d_bias"):
        assert op in checking.OPS
        assert checking.CHECKS[op][0]() is CONV3D_PROBLEMS
    with gpuconv.use_backend("numpy"):
        assert checking.check_case("conv3d_input", CONV3D_PROBLEMS[1], np.float32)


def test_problem_list_covers_its_edges():
    geoms = {p.name: conv3d_geometry(p.x_shape, p.w_shape, **p.kwargs) for p in CONV3D_PROBLEMS}
    assert (geoms["pointwise_1x1x1"].T, geoms["pointwise_1x1x1"].R) == (1, 1)
    assert geoms["depthwise_stride_d"].C_per_group == 1
    assert geoms["same_even"].pad_back != geoms["same_even"].pad_front
    assert (geoms["kernel_eq_input"].O, geoms["kernel_eq_input"].P) == (1, 1)
    v = geoms["video_layer"]
    assert (v.N, v.C, v.D, v.H, v.W, v.K, v.T, v.R, v.S) == (1, 3, 4, 16, 16, 8, 3, 3, 3)
    assert all(isinstance(p, Conv3dProblem) for p in CONV3D_PROBLEMS)


# ----------------------------------------------------------------------------------------
# invalid arguments: the exception type, and a message that names the argument

X = np.zeros((1, 4, 5, 6, 7), np.float32)
Wt = np.zeros((2, 4, 3, 3, 3), np.float32)
DY = np.zeros((1, 2, 3, 4, 5), np.float32)


@pytest.mark.parametrize("call, exc, needle", [
    (lambda: gpuconv.conv3d(X[0, 0], Wt), ValueError, "input"),                 # 3-D input
    (lambda: gpuconv.conv3d(X, Wt[0]), ValueError, "weight"),                   # 4-D weight
    (lambda: gpuconv.conv3d(X, Wt, np.zeros(3, np.float32)), ValueError, "bias"),
    (lambda: gpuconv.conv3d(X, Wt.astype(np.float64)), TypeError, "weight"),
    (lambda: gpuconv.conv3d(X.astype(np.int32), Wt), TypeError, "input"),
    (lambda: gpuconv.conv3d(X.tolist(), Wt), TypeError, "input"),
    (lambda: gpuconv.conv3d(X, Wt, stride=0), ValueError, "stride"),
    (lambda: gpuconv.conv3d(X, Wt, stride=(1, 2)), TypeError, "stride"),
    (lambda: gpuconv.conv3d(X, Wt, dilation=(1, 0, 1)), ValueError, "dilation"),
    (lambda: gpuconv.conv3d(X, Wt, padding=-1), ValueError, "padding"),
    (lambda: gpuconv.conv3d(X, Wt, padding=(1, 1)), TypeError, "padding"),
    (lambda: gpuconv.conv3d(X, Wt, padding="half"), ValueError, "padding"),
    (lambda: gpuconv.conv3d(X, Wt, padding="same", stride=(1, 2, 1)), ValueError, "same"),
    (lambda: gpuconv.conv3d(X, Wt, groups=3), ValueError, "groups"),
    (lambda: gpuconv.conv3d(X, Wt, groups=0), ValueError, "groups"),
    (lambda: gpuconv.conv3d(X, Wt, groups=1.0), TypeError, "groups"),
    (lambda: gpuconv.conv3d(X, np.zeros((2, 2, 3, 3, 3), np.float32)), ValueError, "weight"),
    (lambda: gpuconv.conv3d(X, np.zeros((2, 4, 6, 3, 3), np.float32)), ValueError, "kernel"),
    (lambda: gpuconv.conv3d(X, Wt, dilation=(3, 1, 1)), ValueError, "kernel"),
    (lambda: gpuconv.conv3d(X[:, :, :0], Wt), ValueError, "input"),
    (lambda: grad.conv3d_input((1, 4, 5, 6), Wt, DY), ValueError, "input_size"),
    (lambda: grad.conv3d_input((1, 4, 5), Wt, DY), ValueError, "input_size"),
    (lambda: grad.conv3d_input(5, Wt, DY), TypeError, "input_size"),
    (lambda: grad.conv3d_input((1, 4, 5, 6, 8), Wt, DY), ValueError, "grad_output"),
    (lambda: grad.conv3d_input(X.shape, Wt, DY.astype(np.float16)), TypeError, "grad_output"),
    (lambda: grad.conv3d_weight(X, 3, DY), TypeError, "weight_size"),
    (lambda: grad.conv3d_weight(X, (2, 4, 3, 3), DY), ValueError, "weight"),
    (lambda: grad.conv3d_weight(X, Wt.shape, DY[0]), ValueError, "grad_output"),
    (lambda: grad.conv3d_weight(X, (2, 4, 3, 3, 2), DY), ValueError, "grad_output"),
    (lambda: grad.conv3d_bias(DY[0, 0]), ValueError, "grad_output"),
    (lambda: grad.conv3d_bias(DY[:, :, :0]), ValueError, "grad_output"),
    (lambda: grad.conv3d_bias(DY.astype(np.int64)), TypeError, "grad_output"),
], ids=lambda v: None)
def test_invalid_arguments_raise_naming_the_argument(call, exc, needle):
    with pytest.raises(exc) as info:
        call()
    assert needle in str(info.value), str(info.value)


def test_torch_tensors_are_refused_with_a_hint():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="input must be a numpy.ndarray or cupy.ndarray"):
        gpuconv.conv3d(torch.zeros(1, 1, 3, 3, 3), Wt[:1, :1])
