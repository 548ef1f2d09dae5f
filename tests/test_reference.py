"""The NumPy reference against independent nested loops, finite differences, SciPy and the
worked examples of the source documents (../shared/seeds)."""

import numpy as np

from gpuconv.dtypes import FLOAT_DTYPES
import pytest

import naive
from helpers import numeric_grad
from gpuconv import geometry, reference
from gpuconv.checking import distinct_values

# (name, x shape, w shape, stride, padding, dilation, groups): every geometry feature, tiny.
CONV_CASES = [
    ("plain", (2, 3, 6, 5), (4, 3, 3, 2), 1, 0, 1, 1),
    ("1x1", (1, 4, 3, 3), (2, 4, 1, 1), 1, 0, 1, 1),
    ("stride2_pad1", (1, 2, 7, 6), (3, 2, 3, 3), 2, 1, 1, 1),
    ("mixed_stride_pad", (2, 2, 6, 7), (2, 2, 2, 3), (1, 2), (2, 1), 1, 1),
    ("pad_gt_kernel", (1, 1, 4, 4), (1, 1, 2, 2), 3, 3, 1, 1),
    ("dilation", (1, 2, 8, 7), (2, 2, 3, 2), 1, 1, (2, 3), 1),
    ("same_even", (1, 2, 5, 6), (3, 2, 4, 2), 1, "same", 1, 1),
    ("same_dilated", (1, 1, 6, 6), (1, 1, 3, 2), 1, "same", 2, 1),
    ("valid", (1, 2, 5, 5), (1, 2, 3, 3), 2, "valid", 1, 1),
    ("full", (2, 1, 4, 3), (2, 1, 3, 2), 1, "full", 1, 1),
    ("full_strided_dilated", (1, 2, 5, 4), (2, 2, 2, 3), (2, 1), "full", (1, 2), 1),
    ("groups", (2, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2),
    ("depthwise", (1, 3, 5, 6), (3, 1, 3, 3), 2, 1, 1, 3),
    ("depthwise_mult", (1, 2, 4, 4), (4, 1, 2, 2), 1, 0, 1, 2),
]


def _naive_pad(padding, w_shape, stride, dilation):
    """(top, bottom, left, right) worked out here, independently of geometry.py."""
    R, S = w_shape[2:]
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "full":
        return (dh * (R - 1),) * 2 + (dw * (S - 1),) * 2
    if padding == "same":
        th, tw = dh * (R - 1), dw * (S - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (ph, ph, pw, pw)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_reference_matches_nested_loops(case):
    _, x_shape, w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    g = geometry.conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    pad = _naive_pad(padding, w_shape, stride, dilation)
    args = (_pair(stride), pad, _pair(dilation), groups)
    y = naive.conv2d(x, w, b, *args)
    assert g.y_shape == y.shape
    np.testing.assert_allclose(reference.conv2d(x, w, b, g), y, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(reference.conv2d_input(dy, w, g),
                               naive.conv2d_input(x_shape, w, dy, *args), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reference.conv2d_weight(x, dy, g),
                               naive.conv2d_weight(x, w_shape, dy, *args), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reference.conv2d_bias(dy), dy.sum(axis=(0, 2, 3)), rtol=1e-12)


POOL_CASES = [
    ("k2", (2, 2, 6, 6), 2, None, 0, 1, False),
    ("k3s2p1", (1, 2, 7, 8), 3, 2, 1, 1, False),
    ("k3s1", (1, 1, 5, 5), 3, 1, 1, 1, False),
    ("ceil", (1, 2, 7, 6), 3, 2, 0, 1, True),
    ("ceil_correction", (1, 1, 5, 5), 2, 2, 1, 1, True),
    ("rect", (1, 2, 7, 5), (3, 2), (2, 1), (1, 0), 1, False),
    ("dilation", (1, 1, 9, 8), 3, 2, 1, 2, False),
    ("dilation_ceil", (1, 1, 8, 9), (2, 3), (3, 2), 1, (2, 1), True),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[c[0] for c in POOL_CASES])
def test_pool_reference_matches_nested_loops(case):
    _, x_shape, k, s, p, d, ceil = case
    rng = np.random.default_rng(2)
    x = distinct_values(x_shape, np.float64, rng)
    g = geometry.pool2d_geometry(x_shape, k, s, p, d, ceil)
    y, idx = reference.max_pool2d(x, g)
    ny, nidx = naive.max_pool2d(x, _pair(k), _pair(s if s is not None else k), _pair(p),
                                _pair(d), ceil)
    assert y.shape == ny.shape == g.y_shape
    np.testing.assert_array_equal(y, ny)
    np.testing.assert_array_equal(idx, nidx)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(reference.max_pool2d_input(dy, idx, g),
                               naive.max_pool2d_input(dy, idx, x_shape), rtol=1e-12)


def test_pool_special_values_match_pytorch_rules():
    """Ties -> first max; NaN -> NaN with the last NaN's index; all -inf -> first in-bounds."""
    inf, nan = np.inf, np.nan
    x = np.array([[[[1, 1, 5, 0],
                    [0, 1, 5, 2],
                    [nan, 2, -inf, -inf],
                    [3, nan, -inf, -inf]]]])
    g = geometry.pool2d_geometry(x.shape, 2)
    y, idx = reference.max_pool2d(x, g)
    assert y[0, 0, 0, 0] == 1 and idx[0, 0, 0, 0] == 0          # tie of three 1s: the first
    assert y[0, 0, 0, 1] == 5 and idx[0, 0, 0, 1] == 2          # tie of two 5s: the first
    assert np.isnan(y[0, 0, 1, 0]) and idx[0, 0, 1, 0] == 13    # two NaNs: the last one
    assert y[0, 0, 1, 1] == -inf and idx[0, 0, 1, 1] == 10      # all -inf: the first
    # With padding, an all -inf corner window never points into the padding.
    x = np.full((1, 1, 3, 3), -inf)
    g = geometry.pool2d_geometry(x.shape, 3, stride=1, padding=1)
    _, idx = reference.max_pool2d(x, g)
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])
    ny, nidx = naive.max_pool2d(x, (3, 3), (1, 1), (1, 1), (1, 1), False)
    np.testing.assert_array_equal(idx, nidx)


def test_pool_backward_accumulates_overlapping_windows():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the centre is the max of all four 2x2 stride-1 windows
    g = geometry.pool2d_geometry(x.shape, 2, stride=1)
    y, idx = reference.max_pool2d(x, g)
    assert (idx == 4).all()
    dx = reference.max_pool2d_input(np.arange(1.0, 5.0).reshape(1, 1, 2, 2), idx, g)
    assert dx[0, 0, 1, 1] == 10.0 and dx.sum() == 10.0


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
def test_reference_returns_input_dtype(dtype):
    g = geometry.conv2d_geometry((1, 2, 5, 5), (3, 2, 3, 3))
    x = np.ones(g.x_shape, dtype)
    w = np.ones(g.w_shape, dtype)
    assert reference.conv2d(x, w, None, g).dtype == dtype
    assert reference.conv2d_input(np.ones(g.y_shape, dtype), w, g).dtype == dtype
    assert reference.conv2d_weight(x, np.ones(g.y_shape, dtype), g).dtype == dtype
    pg = geometry.pool2d_geometry(x.shape, 2)
    y, idx = reference.max_pool2d(x, pg)
    assert y.dtype == dtype and idx.dtype == np.int64


def test_float16_accumulates_in_float64():
    """2048 ones plus a bias of 1 in float16: a float16 accumulator would stop at 2048."""
    x = np.ones((1, 2048, 1, 1), np.float16)
    w = np.ones((1, 2048, 1, 1), np.float16)
    g = geometry.conv2d_geometry(x.shape, w.shape)
    y = reference.conv2d(x, w, np.array([2.0], np.float16), g)
    assert y.item() == 2050.0


# ---------------------------------------------------------------------------------------
# finite differences (float64): the gradients are the derivatives of the forward pass


@pytest.mark.parametrize("case", [CONV_CASES[i] for i in (2, 5, 6, 10, 12)],
                         ids=[CONV_CASES[i][0] for i in (2, 5, 6, 10, 12)])
def test_conv_gradients_match_finite_differences(case):
    _, x_shape, w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    g = geometry.conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    dy = rng.standard_normal(g.y_shape)
    loss = lambda: float((reference.conv2d(x, w, b, g) * dy).sum())
    np.testing.assert_allclose(reference.conv2d_input(dy, w, g), numeric_grad(loss, x), atol=1e-6)
    np.testing.assert_allclose(reference.conv2d_weight(x, dy, g), numeric_grad(loss, w), atol=1e-6)
    np.testing.assert_allclose(reference.conv2d_bias(dy), numeric_grad(loss, b), atol=1e-6)


@pytest.mark.parametrize("case", [POOL_CASES[i] for i in (1, 2, 4, 6)],
                         ids=[POOL_CASES[i][0] for i in (1, 2, 4, 6)])
def test_pool_gradient_matches_finite_differences(case):
    _, x_shape, k, s, p, d, ceil = case
    rng = np.random.default_rng(4)
    x = distinct_values(x_shape, np.float64, rng)  # unique maxima: the max is differentiable
    g = geometry.pool2d_geometry(x_shape, k, s, p, d, ceil)
    y, idx = reference.max_pool2d(x, g)
    dy = rng.standard_normal(y.shape)
    loss = lambda: float((reference.max_pool2d(x, g)[0] * dy).sum())
    np.testing.assert_allclose(reference.max_pool2d_input(dy, idx, g), numeric_grad(loss, x, 1e-4),
                               atol=1e-6)


# ---------------------------------------------------------------------------------------
# SciPy: single-channel cross-correlation


@pytest.mark.parametrize("mode,padding", [("valid", 0), ("full", "full"), ("same", "same")])
def test_single_channel_matches_scipy_correlate2d(mode, padding):
    scipy_signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(5)
    image, kernel = rng.standard_normal((9, 11)), rng.standard_normal((3, 5))
    g = geometry.conv2d_geometry((1, 1, 9, 11), (1, 1, 3, 5), padding=padding)
    y = reference.conv2d(image[None, None], kernel[None, None], None, g)[0, 0]
    np.testing.assert_allclose(y, scipy_signal.correlate2d(image, kernel, mode=mode), atol=1e-12)


# ---------------------------------------------------------------------------------------
# the source documents' worked examples


def test_seed000_filter_on_data_window_gives_minus_8():
    """Seed 000 section 4.1: 4*0 + 0*0 + 0*0 + 0*0 + 0*1 + 0*1 + 0*0 + 0*1 + -4*2 = -8."""
    window = np.array([[0, 0, 0], [0, 1, 1], [0, 1, 2]], dtype=np.float64)
    kernel = np.array([[4, 0, 0], [0, 0, 0], [0, 0, -4]], dtype=np.float64)
    g = geometry.conv2d_geometry((1, 1, 3, 3), (1, 1, 3, 3))
    assert reference.conv2d(window[None, None], kernel[None, None], None, g).item() == -8.0


def test_seed000_alexnet_first_layer_sizes():
    """96 filters of 11x11x3, stride 4, on 227x227x3: 55x55x96 outputs, 34,848 weights + 96 biases."""
    g = geometry.conv2d_geometry((1, 3, 227, 227), (96, 3, 11, 11), stride=4)
    assert g.y_shape == (1, 96, 55, 55)
    assert np.prod(g.w_shape) == 34_848 and g.K == 96


def test_seed003_6x6_image_with_3x3_kernel():
    """Seed 003: valid 3x3 on 6x6 gives 4x4; with 1-pixel padding ('same') it stays 6x6."""
    assert geometry.conv2d_geometry((1, 1, 6, 6), (1, 1, 3, 3)).y_shape[2:] == (4, 4)
    assert geometry.conv2d_geometry((1, 1, 6, 6), (1, 1, 3, 3), padding=1).y_shape[2:] == (6, 6)
    assert geometry.conv2d_geometry((1, 1, 6, 6), (1, 1, 3, 3), padding="same").y_shape[2:] == (6, 6)


def test_seed002_left_neighbour_difference_marks_vertical_edges():
    """Seed 002 figure 9.6: the kernel [-1, 1] turns a 280x320 image into 280x319 and
    responds only where a vertical edge is."""
    image = np.zeros((1, 1, 280, 320))
    image[..., 100:] = 1.0                     # one vertical edge between columns 99 and 100
    kernel = np.array([-1.0, 1.0]).reshape(1, 1, 1, 2)
    g = geometry.conv2d_geometry(image.shape, kernel.shape)
    y = reference.conv2d(image, kernel, None, g)
    assert y.shape == (1, 1, 280, 319)
    assert (y[..., 99] == 1.0).all() and np.count_nonzero(y) == 280


def _as_1xk_convolution(signal, kernel):
    """A 1-D true convolution as a 1 x K cross-correlation with the flipped kernel, 'full' padding."""
    s = np.asarray(signal, float).reshape(1, 1, 1, -1)
    k = np.asarray(kernel, float)[::-1].reshape(1, 1, 1, -1)
    g = geometry.conv2d_geometry(s.shape, k.shape, padding=(0, k.shape[-1] - 1))
    return reference.conv2d(s, k, None, g).ravel()


def test_seed000_ball_drop_distributions():
    """Seed 000: P(total distance c) = sum_{a+b=c} f(a) g(b) = numpy.convolve(f, g)."""
    f = np.array([0.2, 0.5, 0.3])          # first drop lands 0, 1 or 2 units away
    g_ = np.array([0.1, 0.6, 0.2, 0.1])    # second drop, from another height
    c = _as_1xk_convolution(f, g_)
    np.testing.assert_allclose(c, np.convolve(f, g_), atol=1e-15)
    assert c[3] == pytest.approx(f[0] * g_[3] + f[1] * g_[2] + f[2] * g_[1])
    assert c.sum() == pytest.approx(1.0)   # still a probability distribution


def test_seed001_multipath_echo():
    """Seed 001: a sound through a two-spike response is the sound plus a delayed, quieter copy."""
    sound = np.array([1.0, 0.5, -0.25, 0.0, 0.75])
    echo = np.zeros(4)
    echo[0], echo[3] = 1.0, 0.5            # direct path, and a reflection 3 samples later
    heard = _as_1xk_convolution(sound, echo)
    np.testing.assert_allclose(heard, np.convolve(sound, echo), atol=1e-15)
    expected = np.zeros(8)
    expected[:5] += sound
    expected[3:] += 0.5 * sound
    np.testing.assert_allclose(heard, expected)
