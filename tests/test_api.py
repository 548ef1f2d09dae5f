"""The public API's PyTorch semantics: shapes, unbatched input, empty batches, padding
modes, array handling, backends, docstring examples."""

import doctest

import numpy as np

from gpuconv.dtypes import FLOAT_DTYPES
import pytest

import gpuconv
from gpuconv import backend, grad, reference
from gpuconv.geometry import conv2d_geometry

rng = np.random.default_rng(7)
X = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
W = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)
B = rng.standard_normal(6).astype(np.float32)


@pytest.mark.parametrize("padding,expected_hw", [
    (0, (7, 7)), ("valid", (7, 7)), (1, (9, 9)), ((2, 0), (11, 7)),
    ("same", (9, 8)), ("full", (11, 9))])
def test_conv2d_output_sizes(padding, expected_hw):
    y = gpuconv.conv2d(X, W, B, padding=padding, groups=2)
    assert y.shape == (2, 6) + expected_hw and y.dtype == np.float32


def test_same_padding_puts_the_extra_row_bottom_right():
    """An even 2x2 kernel with 'same': PyTorch pads 0 on top/left and 1 on bottom/right."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.zeros((1, 1, 2, 2))
    w[0, 0, 0, 0] = 1.0          # picks the top-left tap: y[p, q] = x[p, q]
    y = gpuconv.conv2d(x, w, padding="same")
    np.testing.assert_array_equal(y, x)


def test_unbatched_input_everywhere():
    x3 = X[0]
    y = gpuconv.conv2d(x3, W, B, padding=1, groups=2)
    np.testing.assert_allclose(y, gpuconv.conv2d(X[:1], W, B, padding=1, groups=2)[0])
    dy = np.ones_like(y)
    dx = grad.conv2d_input(x3.shape, W, dy, padding=1, groups=2)
    assert dx.shape == x3.shape
    dw = grad.conv2d_weight(x3, W.shape, dy, padding=1, groups=2)
    assert dw.shape == W.shape
    assert grad.conv2d_bias(dy).shape == (6,)
    p, idx = gpuconv.max_pool2d(x3, 2, return_indices=True)
    assert p.shape == (4, 4, 4) and idx.shape == (4, 4, 4)
    dxp = grad.max_pool2d_input(np.ones_like(p), idx, x3.shape, 2)
    np.testing.assert_array_equal(dxp, grad.max_pool2d_input(
        np.ones_like(p)[None], idx[None], (1,) + x3.shape, 2)[0])


def test_empty_batch_returns_empty_results_of_the_right_shape():
    x0 = np.zeros((0, 4, 9, 8), np.float32)
    y = gpuconv.conv2d(x0, W, B, groups=2)
    assert y.shape == (0, 6, 7, 7) and y.dtype == np.float32
    assert grad.conv2d_input(x0.shape, W, y, groups=2).shape == x0.shape
    dw = grad.conv2d_weight(x0, W.shape, y, groups=2)
    assert dw.shape == W.shape and not dw.any()        # a sum over nothing is zero
    db = grad.conv2d_bias(y)
    assert db.shape == (6,) and not db.any()
    p, idx = gpuconv.max_pool2d(x0, 2, return_indices=True)
    assert p.shape == (0, 4, 4, 4) and idx.dtype == np.int64
    assert grad.max_pool2d_input(p, idx, x0.shape, 2).shape == x0.shape


def test_return_indices_false_returns_only_the_output():
    y = gpuconv.max_pool2d(X, 3, stride=2, padding=1)
    assert isinstance(y, np.ndarray) and y.shape == (2, 4, 5, 4)


def test_ceil_mode_correction():
    """FACTS.md: H=5, k=2, s=2, p=1 with ceil_mode gives 3, not 4."""
    y = gpuconv.max_pool2d(np.zeros((1, 1, 5, 5), np.float32), 2, stride=2, padding=1, ceil_mode=True)
    assert y.shape == (1, 1, 3, 3)
    y = gpuconv.max_pool2d(np.zeros((1, 1, 6, 6), np.float32), 3, stride=2, ceil_mode=True)
    assert y.shape == (1, 1, 3, 3)       # floor mode would give 2


def test_indices_are_plane_offsets_h_times_W_plus_w():
    x = np.zeros((2, 3, 4, 6), np.float32)
    x[1, 2, 3, 5] = 1.0
    _, idx = gpuconv.max_pool2d(x, (2, 3), return_indices=True)
    assert idx.dtype == np.int64 and idx[1, 2, 1, 1] == 3 * 6 + 5


def test_non_contiguous_and_read_only_inputs_are_read_correctly():
    x = np.asfortranarray(X)[:, :, ::-1]                  # neither C-contiguous nor positive-strided
    w = W.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)
    x.flags.writeable = False
    expected = gpuconv.conv2d(np.ascontiguousarray(x), np.ascontiguousarray(w), B, groups=2)
    np.testing.assert_array_equal(gpuconv.conv2d(x, w, B, groups=2), expected)


def test_use_backend_nests_and_restores(monkeypatch):
    monkeypatch.delenv("GPUCONV_BACKEND", raising=False)
    assert gpuconv.current_backend() == "auto"
    with gpuconv.use_backend("numpy"):
        assert gpuconv.current_backend() == "numpy"
        with gpuconv.use_backend("emulator"):
            assert gpuconv.current_backend() == "emulator"
        assert gpuconv.current_backend() == "numpy"
    assert gpuconv.current_backend() == "auto"
    monkeypatch.setenv("GPUCONV_BACKEND", "numpy")
    assert gpuconv.current_backend() == "numpy"
    assert backend.resolve(on_gpu_arrays=False) == "numpy"


def test_auto_runs_numpy_arrays_on_the_reference(monkeypatch):
    monkeypatch.delenv("GPUCONV_BACKEND", raising=False)
    assert backend.resolve(on_gpu_arrays=False) == "numpy"
    assert backend.resolve(on_gpu_arrays=True) == "cuda"
    g = conv2d_geometry(X.shape, W.shape, groups=2)
    np.testing.assert_array_equal(gpuconv.conv2d(X, W, B, groups=2), reference.conv2d(X, W, B, g))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
def test_results_keep_the_input_dtype(dtype):
    x, w = X.astype(dtype), W.astype(dtype)
    y = gpuconv.conv2d(x, w, groups=2)
    assert y.dtype == dtype
    assert grad.conv2d_input(x.shape, w, y, groups=2).dtype == dtype
    assert grad.conv2d_weight(x, w.shape, y, groups=2).dtype == dtype
    assert grad.conv2d_bias(y).dtype == dtype
    p, idx = gpuconv.max_pool2d(x, 2, return_indices=True)
    assert p.dtype == dtype and idx.dtype == np.int64
    assert grad.max_pool2d_input(p, idx, x.shape, 2).dtype == dtype


def test_gradients_with_stride_need_input_size():
    """Stride 2: H = 7 and H = 8 both give P = 3; input_size picks the one asked for."""
    w = np.ones((1, 1, 3, 3))
    dy = np.ones((1, 1, 3, 3))
    assert grad.conv2d_input((1, 1, 7, 7), w, dy, stride=2).shape == (1, 1, 7, 7)
    dx8 = grad.conv2d_input((1, 1, 8, 8), w, dy, stride=2)
    assert dx8.shape == (1, 1, 8, 8) and not dx8[0, 0, 7].any()  # the last row is never read


@pytest.mark.parametrize("module", ["gpuconv.functional", "gpuconv.grad", "gpuconv.backend"])
def test_docstring_examples_run(module):
    import importlib
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_every_public_function_has_a_docstring_with_an_example():
    for fn in (gpuconv.conv2d, gpuconv.max_pool2d, grad.conv2d_input, grad.conv2d_weight,
               grad.conv2d_bias, grad.max_pool2d_input, gpuconv.use_backend):
        assert fn.__doc__ and ">>>" in fn.__doc__, fn.__name__
