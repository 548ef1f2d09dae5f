"""Comparing a result with the reference: tolerances per dtype, in one place.

An element passes when ``|actual - expected| <= atol + rtol * |expected|``. NaN must meet NaN,
and infinities must be equal. 16-bit results carry the rounding of the output (and of
16-bit inputs), so their tolerances are the widest (bfloat16, with 8 significant bits, wider
than float16's 11); float64 leaves room only for a different summation order.
"""

from __future__ import annotations

import contextvars
import dataclasses
from dataclasses import dataclass

import numpy as np

from .dtypes import FLOAT_DTYPES, bfloat16

TOLERANCES = {
    np.dtype(np.float16): (1e-2, 1e-2),   # (atol, rtol): about 10 ulps of a float16 near 1
    bfloat16: (2e-2, 2e-2),               # 2.5 ulps of a bfloat16 near 1 (8 significant bits)
    np.dtype(np.float32): (1e-4, 1e-4),
    np.dtype(np.float64): (1e-10, 1e-10),
}


# TF32 (float32 operands on tensor cores, an opt-in: kernels.allow_tf32). Every operand keeps 10
# of float32's 23 fraction bits (rounded to nearest by the kernels), so each product is
# within 2^-9 of exact: a convolution's error is at most 2^-9 * sum |x * w|, the convolution of
# |x| with |w| — allowed on top of float32's tolerance wherever a check runs on TF32.
TF32_PRODUCT_ERROR = 2.0 ** -9
_on_tf32: contextvars.ContextVar[bool] = contextvars.ContextVar("gpuconv_check_tf32",
                                                                default=False)


def tolerance(dtype) -> tuple[float, float]:
    """(atol, rtol) for results of this dtype."""
    return TOLERANCES[np.dtype(dtype)]


@dataclass
class Comparison:
    ok: bool
    max_error: float
    atol: float
    rtol: float
    report: str
    bounded: bool = False  # an error bound (TF32) was allowed on top of atol + rtol*|ref|

    def __bool__(self) -> bool:
        return self.ok


def compare(actual, expected, dtype=None, scale: float = 1.0, bound=None) -> Comparison:
    """Compare two arrays element by element; ``report`` lists the first mismatches.

    ``scale`` widens the tolerance for results that sum many terms (e.g. a long reduction);
    ``bound`` (an array like ``expected``) is an error bound allowed on top (TF32).
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    atol, rtol = tolerance(dtype if dtype is not None else expected.dtype)
    atol, rtol = atol * scale, rtol * scale
    if actual.shape != expected.shape:
        return Comparison(False, float("inf"), atol, rtol,
                          f"shape {actual.shape} != expected {expected.shape}")
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(e)
    same_inf = np.isinf(e) & (a == e)
    with np.errstate(invalid="ignore"):
        err = np.abs(a - e)
        allowed = atol + rtol * np.abs(e)
        if bound is not None:
            allowed = allowed + np.asarray(bound, np.float64)
        bad = ~(both_nan | same_inf | (err <= allowed))
    finite_err = np.where(both_nan | same_inf, 0.0, err)
    if np.isnan(finite_err).any():  # NaN where a number was expected (or the reverse)
        max_error = float("nan")
    else:
        max_error = float(finite_err.max()) if finite_err.size else 0.0
    if not bad.any():
        return Comparison(True, max_error, atol, rtol, "", bound is not None)
    where = np.argwhere(bad)[:5]
    lines = [f"{int(bad.sum())} of {bad.size} elements differ (max error {max_error:.3g}, "
             f"atol {atol:g}, rtol {rtol:g}); first:"]
    for idx in where:
        t = tuple(int(i) for i in idx)
        lines.append(f"  at {t}: got {a[t]!r}, expected {e[t]!r}")
    return Comparison(False, max_error, atol, rtol, "\n".join(lines), bound is not None)


def assert_close(actual, expected, dtype=None, scale: float = 1.0, what: str = "") -> None:
    """Raise AssertionError with the first mismatches when ``compare`` fails."""
    result = compare(actual, expected, dtype, scale)
    if not result:
        raise AssertionError((what + ": " if what else "") + result.report)


# ----------------------------------------------------------------------------------------
# inputs and the op matrix (shared by `gpuconv check` and the tests)

DTYPES = FLOAT_DTYPES  # float16, bfloat16, float32, float64


def conv_inputs(problem, dtype, seed: int = 0):
    """(x, w, b, dy) for a ConvProblem: standard normal values rounded to ``dtype``."""
    from .geometry import conv2d_geometry
    rng = np.random.default_rng(seed)
    g = conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    x = rng.standard_normal(g.x_shape).astype(dtype)
    w = rng.standard_normal(g.w_shape).astype(dtype)
    b = rng.standard_normal(g.K).astype(dtype) if problem.bias else None
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    return x, w, b, dy


def distinct_values(shape, dtype, rng) -> np.ndarray:
    """Values distinct within every plane (last two axes) and exact in ``dtype``.

    A shuffled range per plane, centred on 0, plus sub-integer jitter where the dtype can
    hold it. Max-pool checks use them so every window has a unique maximum: no accidental
    ties (float16 holds every integer up to 2048, which bounds the plane size). bfloat16 holds
    integers only up to 256, so its planes take consecutive bfloat16 values instead: the bit
    patterns of 1.0, 1.0078125, ... and their negatives.
    """
    plane = shape[-2] * shape[-1]
    planes = int(np.prod(shape[:-2]))
    if np.dtype(dtype) == np.float16 and plane > 4096:
        raise ValueError(f"a float16 plane of {plane} elements cannot hold distinct integers")
    if planes == 0:
        return np.zeros(shape, dtype)
    if np.dtype(dtype) == bfloat16:
        half = -(-plane // 2)
        if 0x3F80 + half > 0x7F80:  # past the largest finite bfloat16
            raise ValueError(f"a bfloat16 plane of {plane} elements is too large")
        positive = (np.arange(half, dtype=np.uint16) + np.uint16(0x3F80)).view(bfloat16)
        pool = np.concatenate([positive, -positive])[:plane]
        return np.stack([rng.permutation(pool) for _ in range(planes)]).reshape(shape)
    values = np.stack([rng.permutation(plane) for _ in range(planes)]).astype(np.float64)
    values -= plane // 2
    if np.dtype(dtype) != np.float16:  # float32 / float64 hold the jitter
        values += rng.uniform(0.0, 0.5, values.shape)
    return values.reshape(shape).astype(dtype)


def pool_inputs(problem, dtype, seed: int = 0):
    """(x, dy) for a PoolProblem; x has distinct values within every (n, c) plane."""
    from .geometry import pool2d_geometry
    rng = np.random.default_rng(seed)
    g = pool2d_geometry(problem.x_shape, **problem.kwargs)
    x = distinct_values(g.x_shape, dtype, rng)
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    return x, dy


def _conv_case(problem, dtype):
    """Inputs, geometry and keyword arguments of a conv2d check."""
    from .geometry import conv2d_geometry
    x, w, b, dy = conv_inputs(problem, dtype)
    return x, w, b, dy, conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)


def tf32_bound(op: str, g, first, second):
    """The TF32 error bound of a conv2d kernel op: TF32_PRODUCT_ERROR times the same op on the
    operands' magnitudes — fprop (x, w): conv2d(|x|, |w|); dgrad (dy, w): conv2d_input(|dy|,
    |w|); wgrad (x, dy): conv2d_weight(|x|, |dy|)."""
    from . import reference
    a, b = (np.abs(np.asarray(t).astype(np.float64)) for t in (first, second))
    magnitude = {"fprop": lambda: reference.conv2d(a, b, None, g),
                 "dgrad": lambda: reference.conv2d_input(a, b, g),
                 "wgrad": lambda: reference.conv2d_weight(a, b, g)}[op]()
    return TF32_PRODUCT_ERROR * magnitude


def _check_conv2d(problem, dtype, dev, host):
    from . import functional, reference
    x, w, b, _, g = _conv_case(problem, dtype)
    got = functional.conv2d(dev(x), dev(w), None if b is None else dev(b), **problem.kwargs)
    bound = tf32_bound("fprop", g, x, w) if _on_tf32.get() else None
    return compare(host(got), reference.conv2d(x, w, b, g), dtype, bound=bound)


_NHWC, _NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _channels_last_result(got, host, expected, dtype, bound, operands) -> Comparison:
    """compare() of a result that must be channels-last when one of its ``operands`` is (PyTorch's
    rule): its values (its (N,H,W,C) buffer brought to the host), and its layout where it was
    computed. Operands that are C-contiguous too (one channel, one pixel, 1x1 filters) are
    NCHW as well, and then either layout of the result passes; so does a result that is both."""
    from .validation import is_channels_last
    result = compare(host(got.transpose(_NHWC)), expected.transpose(_NHWC), dtype,
                     bound=None if bound is None else bound.transpose(_NHWC))
    both = got.flags.c_contiguous and got.transpose(_NHWC).flags.c_contiguous
    if (result and any(is_channels_last(a) for a in operands) and not both
            and not is_channels_last(got)):
        return dataclasses.replace(result, ok=False, report="the result is not channels-last")
    return result


def _check_conv2d_channels_last(problem, dtype, dev, host):
    """conv2d on channels-last x and w (buffers (N,H,W,C) and (K,R,S,C/groups) seen as NCHW, as
    torch.channels_last gives them): the result must be channels-last too, with conv2d's
    values."""
    from . import functional, reference
    x, w, b, _, g = _conv_case(problem, dtype)
    x_cl = dev(np.ascontiguousarray(x.transpose(_NHWC))).transpose(_NCHW)
    w_cl = dev(np.ascontiguousarray(w.transpose(_NHWC))).transpose(_NCHW)
    got = functional.conv2d(x_cl, w_cl, None if b is None else dev(b), **problem.kwargs)
    bound = tf32_bound("fprop", g, x, w) if _on_tf32.get() else None
    return _channels_last_result(got, host, reference.conv2d(x, w, b, g), dtype, bound,
                                 (x_cl, w_cl))


def _check_conv2d_input_channels_last(problem, dtype, dev, host):
    """grad.conv2d_input on channels-last dy and w: dx channels-last, with dgrad's values."""
    from . import grad, reference
    x, w, _, dy, g = _conv_case(problem, dtype)
    dy_cl = dev(np.ascontiguousarray(dy.transpose(_NHWC))).transpose(_NCHW)
    w_cl = dev(np.ascontiguousarray(w.transpose(_NHWC))).transpose(_NCHW)
    got = grad.conv2d_input(x.shape, w_cl, dy_cl, **problem.kwargs)
    bound = tf32_bound("dgrad", g, dy, w) if _on_tf32.get() else None
    return _channels_last_result(got, host, reference.conv2d_input(dy, w, g), dtype, bound,
                                 (dy_cl, w_cl))


def _check_conv2d_weight_channels_last(problem, dtype, dev, host):
    """grad.conv2d_weight on channels-last x and dy: dw channels-last (PyTorch: when the input
    is), with wgrad's values."""
    from . import grad, reference
    x, w, _, dy, g = _conv_case(problem, dtype)
    x_cl = dev(np.ascontiguousarray(x.transpose(_NHWC))).transpose(_NCHW)
    dy_cl = dev(np.ascontiguousarray(dy.transpose(_NHWC))).transpose(_NCHW)
    got = grad.conv2d_weight(x_cl, w.shape, dy_cl, **problem.kwargs)
    bound = tf32_bound("wgrad", g, x, dy) if _on_tf32.get() else None
    return _channels_last_result(got, host, reference.conv2d_weight(x, dy, g), dtype, bound,
                                 (x_cl,))


def _check_conv2d_input(problem, dtype, dev, host):
    from . import grad, reference
    x, w, _, dy, g = _conv_case(problem, dtype)
    got = grad.conv2d_input(x.shape, dev(w), dev(dy), **problem.kwargs)
    bound = tf32_bound("dgrad", g, dy, w) if _on_tf32.get() else None
    return compare(host(got), reference.conv2d_input(dy, w, g), dtype, bound=bound)


def _check_conv2d_weight(problem, dtype, dev, host):
    from . import grad, reference
    x, w, _, dy, g = _conv_case(problem, dtype)
    got = grad.conv2d_weight(dev(x), w.shape, dev(dy), **problem.kwargs)
    bound = tf32_bound("wgrad", g, x, dy) if _on_tf32.get() else None
    return compare(host(got), reference.conv2d_weight(x, dy, g), dtype, bound=bound)


def _check_conv2d_bias(problem, dtype, dev, host):
    from . import grad, reference
    *_, dy, _ = _conv_case(problem, dtype)
    return compare(host(grad.conv2d_bias(dev(dy))), reference.conv2d_bias(dy), dtype)


def _check_conv2d_bias_channels_last(problem, dtype, dev, host):
    """grad.conv2d_bias on a channels-last dy (an (N,P,Q,K) buffer seen as NCHW): db's
    values."""
    from . import grad, reference
    *_, dy, _ = _conv_case(problem, dtype)
    dy_cl = dev(np.ascontiguousarray(dy.transpose(_NHWC))).transpose(_NCHW)
    return compare(host(grad.conv2d_bias(dy_cl)), reference.conv2d_bias(dy), dtype)


def _check_max_pool2d(problem, dtype, dev, host):
    """Values within tolerance and indices exactly equal."""
    from . import functional, reference
    from .geometry import pool2d_geometry
    x, _ = pool_inputs(problem, dtype)
    want_y, want_idx = reference.max_pool2d(x, pool2d_geometry(problem.x_shape, **problem.kwargs))
    y, idx = functional.max_pool2d(dev(x), return_indices=True, **problem.kwargs)
    result = compare(host(y), want_y, dtype)
    idx = host(idx)
    if result and not np.array_equal(idx, want_idx):
        bad = np.argwhere(idx != want_idx)[:5]
        result = Comparison(False, result.max_error, result.atol, result.rtol,
                            "indices differ at " + ", ".join(str(tuple(b)) for b in bad))
    return result


def _check_max_pool2d_input(problem, dtype, dev, host):
    from . import grad, reference
    from .geometry import pool2d_geometry
    x, dy = pool_inputs(problem, dtype)
    g = pool2d_geometry(problem.x_shape, **problem.kwargs)
    _, idx = reference.max_pool2d(x, g)
    got = grad.max_pool2d_input(dev(dy), dev(idx), x.shape, **problem.kwargs)
    return compare(host(got), reference.max_pool2d_input(dy, idx, g), dtype)


def _conv_problems():
    from .problems import CONV_PROBLEMS
    return CONV_PROBLEMS


def _pool_problems():
    from .problems import POOL_PROBLEMS
    return POOL_PROBLEMS


# ----------------------------------------------------------------------------------------
# true convolution (flip), conv1d and conv_transpose2d: their references, written through the
# 2-D reference in float64 (so the formulas stay in gpuconv.reference / gpuconv.geometry),
# and their checks. Arrays are batched NumPy arrays; results come back in the input dtype.

# The references live in gpuconv.reference; these take the ops' own arguments.


def ref_conv2d_flip(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """True 2-D convolution: the cross-correlation with the kernel rotated by 180 degrees."""
    from . import reference
    from .geometry import conv2d_geometry
    g = conv2d_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    return reference.conv2d_flip(x, w, b, g)


def ref_conv1d(x, w, b, stride=1, padding=0, dilation=1, groups=1, flip=False):
    from . import reference
    from .geometry import conv1d_geometry
    g = conv1d_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    return reference.conv1d(x, w, b, g, flip)


def ref_conv1d_input(dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1, flip=False):
    from . import reference
    from .geometry import conv1d_geometry
    g = conv1d_geometry(x_shape, w.shape, stride, padding, dilation, groups)
    return reference.conv1d_input(dy, w, g, flip)


def ref_conv1d_weight(x, dy, w_shape, stride=1, padding=0, dilation=1, groups=1, flip=False):
    from . import reference
    from .geometry import conv1d_geometry
    g = conv1d_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    return reference.conv1d_weight(x, dy, g, flip)


def _transpose_geometry(x_shape, w_shape, stride, padding, output_padding, groups, dilation):
    from .geometry import conv_transpose2d_geometry
    return conv_transpose2d_geometry(x_shape, w_shape, stride, padding, output_padding, groups,
                                     dilation)


def ref_conv_transpose2d(x, w, b, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    from . import reference
    g = _transpose_geometry(x.shape, w.shape, stride, padding, output_padding, groups, dilation)
    return reference.conv_transpose2d(x, w, b, g)


def ref_conv_transpose2d_input(dy, w, x_shape, stride=1, padding=0, output_padding=0, groups=1,
                               dilation=1):
    from . import reference
    g = _transpose_geometry(x_shape, w.shape, stride, padding, output_padding, groups, dilation)
    return reference.conv_transpose2d_input(dy, w, g)


def ref_conv_transpose2d_weight(x, dy, w_shape, stride=1, padding=0, output_padding=0, groups=1,
                                dilation=1):
    from . import reference
    g = _transpose_geometry(x.shape, w_shape, stride, padding, output_padding, groups, dilation)
    return reference.conv_transpose2d_weight(x, dy, g)


def _normal_inputs(x_shape, w_shape, y_shape, n_bias, bias, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(n_bias).astype(dtype) if bias else None
    dy = rng.standard_normal(y_shape).astype(dtype)
    return x, w, b, dy


def conv1d_inputs(problem, dtype, seed: int = 0):
    """(x, w, b, dy) for a Conv1dProblem: standard normal values rounded to ``dtype``."""
    from .geometry import conv1d_geometry
    kw = problem.kwargs
    g = conv1d_geometry(problem.x_shape, problem.w_shape, kw["stride"], kw["padding"],
                        kw["dilation"], kw["groups"])
    return _normal_inputs(problem.x_shape, problem.w_shape, (g.N, g.K, g.Q), g.K, problem.bias,
                          dtype, seed)


def conv_transpose2d_inputs(problem, dtype, seed: int = 0):
    """(x, w, b, dy) for a ConvTranspose2dProblem (dy has the transposed conv's output shape)."""
    from .geometry import conv_transpose2d_geometry
    g = conv_transpose2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    return _normal_inputs(problem.x_shape, problem.w_shape, g.y_shape, g.y_shape[1],
                          problem.bias, dtype, seed)


def _check_conv2d_flip(problem, dtype, dev, host):
    from . import functional
    x, w, b, _ = conv_inputs(problem, dtype)
    got = functional.conv2d(dev(x), dev(w), None if b is None else dev(b), **problem.kwargs,
                            flip=True)
    return compare(host(got), ref_conv2d_flip(x, w, b, **problem.kwargs), dtype)


def _check_conv1d(problem, dtype, dev, host):
    from . import functional
    x, w, b, _ = conv1d_inputs(problem, dtype)
    got = functional.conv1d(dev(x), dev(w), None if b is None else dev(b), **problem.kwargs)
    return compare(host(got), ref_conv1d(x, w, b, **problem.kwargs), dtype)


def _check_conv1d_input(problem, dtype, dev, host):
    from . import grad
    x, w, _, dy = conv1d_inputs(problem, dtype)
    got = grad.conv1d_input(x.shape, dev(w), dev(dy), **problem.kwargs)
    return compare(host(got), ref_conv1d_input(dy, w, x.shape, **problem.kwargs), dtype)


def _check_conv1d_weight(problem, dtype, dev, host):
    from . import grad
    x, w, _, dy = conv1d_inputs(problem, dtype)
    got = grad.conv1d_weight(dev(x), w.shape, dev(dy), **problem.kwargs)
    return compare(host(got), ref_conv1d_weight(x, dy, w.shape, **problem.kwargs), dtype)


def _check_conv_transpose2d(problem, dtype, dev, host):
    from . import functional
    x, w, b, _ = conv_transpose2d_inputs(problem, dtype)
    got = functional.conv_transpose2d(dev(x), dev(w), None if b is None else dev(b),
                                      **problem.kwargs)
    return compare(host(got), ref_conv_transpose2d(x, w, b, **problem.kwargs), dtype)


def _check_conv_transpose2d_input(problem, dtype, dev, host):
    from . import grad
    x, w, _, dy = conv_transpose2d_inputs(problem, dtype)
    got = grad.conv_transpose2d_input(x.shape, dev(w), dev(dy), **problem.kwargs)
    return compare(host(got), ref_conv_transpose2d_input(dy, w, x.shape, **problem.kwargs),
                   dtype)


def _check_conv_transpose2d_weight(problem, dtype, dev, host):
    from . import grad
    x, w, _, dy = conv_transpose2d_inputs(problem, dtype)
    got = grad.conv_transpose2d_weight(dev(x), w.shape, dev(dy), **problem.kwargs)
    return compare(host(got), ref_conv_transpose2d_weight(x, dy, w.shape, **problem.kwargs),
                   dtype)


def _flip_problems():
    """conv2d problems whose kernels are not symmetric under a 180-degree rotation, with
    asymmetric padding, dilation and groups (a flip that landed on the wrong axis shows)."""
    from .problems import CONV_PROBLEMS
    names = ("odd_sizes", "rect_kernel", "same_even", "dilation2", "full", "groups")
    return [p for p in CONV_PROBLEMS if p.name in names]


def _conv1d_problems():
    from .problems import CONV1D_PROBLEMS
    return CONV1D_PROBLEMS


def _conv_transpose2d_problems():
    from .problems import CONV_TRANSPOSE2D_PROBLEMS
    return CONV_TRANSPOSE2D_PROBLEMS


# conv3d (gpuconv.problems.CONV3D_PROBLEMS)


def conv3d_inputs(problem, dtype, seed: int = 0):
    """(x, w, b, dy) for a Conv3dProblem: standard normal values rounded to ``dtype``."""
    from .geometry import conv3d_geometry
    rng = np.random.default_rng(seed)
    g = conv3d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    x = rng.standard_normal(g.x_shape).astype(dtype)
    w = rng.standard_normal(g.w_shape).astype(dtype)
    b = rng.standard_normal(g.K).astype(dtype) if problem.bias else None
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    return x, w, b, dy, g


def _check_conv3d(problem, dtype, dev, host):
    from . import functional, reference
    x, w, b, _, g = conv3d_inputs(problem, dtype)
    got = functional.conv3d(dev(x), dev(w), None if b is None else dev(b), **problem.kwargs)
    return compare(host(got), reference.conv3d(x, w, b, g), dtype)


def _check_conv3d_input(problem, dtype, dev, host):
    from . import grad, reference
    x, w, _, dy, g = conv3d_inputs(problem, dtype)
    got = grad.conv3d_input(x.shape, dev(w), dev(dy), **problem.kwargs)
    return compare(host(got), reference.conv3d_input(dy, w, g), dtype)


def _check_conv3d_weight(problem, dtype, dev, host):
    from . import grad, reference
    x, w, _, dy, g = conv3d_inputs(problem, dtype)
    got = grad.conv3d_weight(dev(x), w.shape, dev(dy), **problem.kwargs)
    return compare(host(got), reference.conv3d_weight(x, dy, g), dtype)


def _check_conv3d_bias(problem, dtype, dev, host):
    from . import grad, reference
    *_, dy, _ = conv3d_inputs(problem, dtype)
    return compare(host(grad.conv3d_bias(dev(dy))), reference.conv3d_bias(dy), dtype)


def _conv3d_problems():
    from .problems import CONV3D_PROBLEMS
    return CONV3D_PROBLEMS


# tiled / locally connected conv2d (gpuconv.problems.TILED_PROBLEMS, LOCAL_PROBLEMS)


def tiled_inputs(problem, dtype, seed: int = 0):
    """(x, w, b, dy, g) for a TiledConvProblem: standard normal values rounded to ``dtype``;
    b is None, (K,) or (K, TH, TW) as the problem says."""
    from .geometry import tiled_conv2d_geometry
    rng = np.random.default_rng(seed)
    g = tiled_conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    x = rng.standard_normal(g.x_shape).astype(dtype)
    w = rng.standard_normal(g.w_shape).astype(dtype)
    b_shape = {None: None, "channel": (g.K,), "tile": g.tile_bias_shape}[problem.bias]
    b = None if b_shape is None else rng.standard_normal(b_shape).astype(dtype)
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    return x, w, b, dy, g


def _tiled_checks(local: bool):
    """The four checks (forward, input, weight, bias gradients) of tiled_conv2d, or of
    local_conv2d (the same problems' tile is then (P, Q))."""
    from . import functional, grad, reference

    forward = functional.local_conv2d if local else functional.tiled_conv2d
    input_grad = grad.local_conv2d_input if local else grad.tiled_conv2d_input
    weight_grad = grad.local_conv2d_weight if local else grad.tiled_conv2d_weight

    def check(problem, dtype, dev, host):
        x, w, b, _, g = tiled_inputs(problem, dtype)
        got = forward(dev(x), dev(w), None if b is None else dev(b), **problem.kwargs)
        return compare(host(got), reference.tiled_conv2d(x, w, b, g), dtype)

    def check_input(problem, dtype, dev, host):
        x, w, _, dy, g = tiled_inputs(problem, dtype)
        got = input_grad(x.shape, dev(w), dev(dy), **problem.kwargs)
        return compare(host(got), reference.tiled_conv2d_input(dy, w, g), dtype)

    def check_weight(problem, dtype, dev, host):
        x, w, _, dy, g = tiled_inputs(problem, dtype)
        got = weight_grad(dev(x), w.shape, dev(dy), **problem.kwargs)
        return compare(host(got), reference.tiled_conv2d_weight(x, dy, g), dtype)

    def check_bias(problem, dtype, dev, host):
        *_, dy, g = tiled_inputs(problem, dtype)
        got = (grad.local_conv2d_bias(dev(dy)) if local
               else grad.tiled_conv2d_bias(dev(dy), (g.TH, g.TW)))
        return compare(host(got), reference.tiled_conv2d_bias(dy, g), dtype)

    return check, check_input, check_weight, check_bias


def _check_tiled(which: int, local: bool):
    return lambda problem, dtype, dev, host: _tiled_checks(local)[which](problem, dtype, dev,
                                                                         host)


def _tiled_problems():
    from .problems import TILED_PROBLEMS
    return TILED_PROBLEMS


def _local_problems():
    from .problems import LOCAL_PROBLEMS
    return LOCAL_PROBLEMS


# ----------------------------------------------------------------------------------------
# avg-pool, lp-pool, separable conv2d


def _worst(results) -> Comparison:
    """The first failing comparison, else the one with the largest error."""
    results = list(results)
    failed = [r for r in results if not r]
    return failed[0] if failed else max(results, key=lambda r: r.max_error)


def _avgpool_case(problem, dtype, seed: int = 0):
    """(x, dy, geometry) of an avg-pool problem: standard normal x and dy."""
    from .geometry import avg_pool2d_geometry
    rng = np.random.default_rng(seed)
    g = avg_pool2d_geometry(problem.x_shape, **problem.kwargs)
    return (rng.standard_normal(g.x_shape).astype(dtype),
            rng.standard_normal(g.y_shape).astype(dtype), g)


def _check_avg_pool2d(problem, dtype, dev, host):
    from . import functional, reference
    x, _, g = _avgpool_case(problem, dtype)
    return compare(host(functional.avg_pool2d(dev(x), **problem.kwargs)),
                   reference.avg_pool2d(x, g), dtype)


def _check_avg_pool2d_input(problem, dtype, dev, host):
    from . import grad, reference
    x, dy, g = _avgpool_case(problem, dtype)
    got = grad.avg_pool2d_input(dev(dy), x.shape, **problem.kwargs)
    return compare(host(got), reference.avg_pool2d_input(dy, g), dtype)


def _lp_case(problem, dtype):
    """(x, dy, geometry, kwargs) of an lp-pool problem: x in [0.5, 1.5] (no NaN from a
    negative base), dy standard normal."""
    from .geometry import avg_pool2d_geometry
    rng = np.random.default_rng(1)
    kwargs = dict(kernel_size=problem.kernel_size, stride=problem.stride,
                  ceil_mode=problem.ceil_mode)
    g = avg_pool2d_geometry(problem.x_shape, padding=0, **kwargs)
    x = rng.uniform(0.5, 1.5, g.x_shape).astype(dtype)
    return x, rng.standard_normal(g.y_shape).astype(dtype), g, kwargs


def _check_lp_pool2d(problem, dtype, dev, host):
    from . import functional, reference
    from .problems import LPPOOL_NORMS
    x, _, g, kwargs = _lp_case(problem, dtype)
    return _worst(compare(host(functional.lp_pool2d(dev(x), p, **kwargs)),
                          reference.lp_pool2d(x, g, p), dtype) for p in LPPOOL_NORMS)


def _check_lp_pool2d_input(problem, dtype, dev, host):
    from . import grad, reference
    from .problems import LPPOOL_NORMS
    x, dy, g, kwargs = _lp_case(problem, dtype)
    return _worst(compare(host(grad.lp_pool2d_input(dev(dy), dev(x), p, **kwargs)),
                          reference.lp_pool2d_input(dy, x, g, p), dtype) for p in LPPOOL_NORMS)


def _avgpool_problems():
    from .problems import AVGPOOL_PROBLEMS
    return AVGPOOL_PROBLEMS


def _lppool_problems():
    from .problems import LPPOOL_PROBLEMS
    return LPPOOL_PROBLEMS


def _separable_case(problem, dtype):
    """(x, u, v, b, dy, g, w) of a separable problem: factors u (K, C/groups, R), v (K, S),
    and w the outer-product kernel in float64 (of the factors rounded to ``dtype``)."""
    from .geometry import conv2d_geometry
    rng = np.random.default_rng(2)
    g = conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    x = rng.standard_normal(g.x_shape).astype(dtype)
    u = rng.standard_normal((g.K, g.C_per_group, g.R)).astype(dtype)
    v = rng.standard_normal((g.K, g.S)).astype(dtype)
    b = rng.standard_normal(g.K).astype(dtype) if problem.bias else None
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    w = u.astype(np.float64)[:, :, :, None] * v.astype(np.float64)[:, None, None, :]
    return x, u, v, b, dy, g, w


# 16-bit: the intermediate pass output is rounded to the dtype too (and sums R, then S terms):
# an error of about eps x the intermediate's magnitude. bfloat16's eps is 8x float16's, on a
# base tolerance 2x as wide: 4 x 8 / 2 = 16.
_SEPARABLE_SCALE = {np.dtype(np.float16): 4.0, bfloat16: 16.0}


def _check_separable_conv2d(problem, dtype, dev, host):
    from . import functional, reference
    x, u, v, b, _, g, w = _separable_case(problem, dtype)
    got = functional.separable_conv2d(dev(x), dev(u), dev(v), None if b is None else dev(b),
                                      **problem.kwargs)
    want = reference.conv2d(x.astype(np.float64), w, None if b is None else
                            b.astype(np.float64), g)
    return compare(host(got), want, dtype, _SEPARABLE_SCALE.get(np.dtype(dtype), 1.0))


def _check_separable_conv2d_input(problem, dtype, dev, host):
    from . import grad, reference
    x, u, v, _, dy, g, w = _separable_case(problem, dtype)
    got = grad.separable_conv2d_input(x.shape, dev(u), dev(v), dev(dy), **problem.kwargs)
    return compare(host(got), reference.conv2d_input(dy.astype(np.float64), w, g), dtype,
                   _SEPARABLE_SCALE.get(np.dtype(dtype), 1.0))


def _check_separable_conv2d_weight(problem, dtype, dev, host):
    """Both factor gradients against the 2-D weight gradient contracted with the factors."""
    from . import grad, reference
    x, u, v, _, dy, g, w = _separable_case(problem, dtype)
    du, dv = grad.separable_conv2d_weight(dev(x), dev(u), dev(v), dev(dy), **problem.kwargs)
    dw = reference.conv2d_weight(x.astype(np.float64), dy.astype(np.float64), g)
    scale = _SEPARABLE_SCALE.get(np.dtype(dtype), 1.0)
    return _worst([
        compare(host(du), np.einsum("kcrs,ks->kcr", dw, v.astype(np.float64)), dtype, scale),
        compare(host(dv), np.einsum("kcrs,kcr->ks", dw, u.astype(np.float64)), dtype, scale)])


def _separable_problems():
    from .problems import SEPARABLE_PROBLEMS
    return SEPARABLE_PROBLEMS


# The check matrix: op -> (its problem list, its check). A check runs the public op on one
# problem in one dtype, with ``dev``/``host`` moving arrays to and from the backend's library,
# and compares the result with the reference. A new op adds one entry here.
CHECKS = {
    "conv2d": (_conv_problems, _check_conv2d),
    "conv2d_channels_last": (_conv_problems, _check_conv2d_channels_last),
    "conv2d_input_channels_last": (_conv_problems, _check_conv2d_input_channels_last),
    "conv2d_input": (_conv_problems, _check_conv2d_input),
    "conv2d_weight": (_conv_problems, _check_conv2d_weight),
    "conv2d_weight_channels_last": (_conv_problems, _check_conv2d_weight_channels_last),
    "conv2d_bias": (_conv_problems, _check_conv2d_bias),
    "conv2d_bias_channels_last": (_conv_problems, _check_conv2d_bias_channels_last),
    "max_pool2d": (_pool_problems, _check_max_pool2d),
    "max_pool2d_input": (_pool_problems, _check_max_pool2d_input),
    "avg_pool2d": (_avgpool_problems, _check_avg_pool2d),
    "avg_pool2d_input": (_avgpool_problems, _check_avg_pool2d_input),
    "lp_pool2d": (_lppool_problems, _check_lp_pool2d),
    "lp_pool2d_input": (_lppool_problems, _check_lp_pool2d_input),
    "separable_conv2d": (_separable_problems, _check_separable_conv2d),
    "separable_conv2d_input": (_separable_problems, _check_separable_conv2d_input),
    "separable_conv2d_weight": (_separable_problems, _check_separable_conv2d_weight),
    "conv2d_flip": (_flip_problems, _check_conv2d_flip),
    "conv1d": (_conv1d_problems, _check_conv1d),
    "conv1d_input": (_conv1d_problems, _check_conv1d_input),
    "conv1d_weight": (_conv1d_problems, _check_conv1d_weight),
    "conv_transpose2d": (_conv_transpose2d_problems, _check_conv_transpose2d),
    "conv_transpose2d_input": (_conv_transpose2d_problems, _check_conv_transpose2d_input),
    "conv_transpose2d_weight": (_conv_transpose2d_problems, _check_conv_transpose2d_weight),
    "conv3d": (_conv3d_problems, _check_conv3d),
    "conv3d_input": (_conv3d_problems, _check_conv3d_input),
    "conv3d_weight": (_conv3d_problems, _check_conv3d_weight),
    "conv3d_bias": (_conv3d_problems, _check_conv3d_bias),
    "tiled_conv2d": (_tiled_problems, _check_tiled(0, local=False)),
    "tiled_conv2d_input": (_tiled_problems, _check_tiled(1, local=False)),
    "tiled_conv2d_weight": (_tiled_problems, _check_tiled(2, local=False)),
    "tiled_conv2d_bias": (_tiled_problems, _check_tiled(3, local=False)),
    "local_conv2d": (_local_problems, _check_tiled(0, local=True)),
    "local_conv2d_input": (_local_problems, _check_tiled(1, local=True)),
    "local_conv2d_weight": (_local_problems, _check_tiled(2, local=True)),
    "local_conv2d_bias": (_local_problems, _check_tiled(3, local=True)),
}
OPS = tuple(CHECKS)


# The ops whose kernels come in several versions (gpuconv.kernels.variants: every version in
# every tile configuration): the check runs each of them once per version the geometry and
# dtype allow.
KERNEL_OPS = {"conv2d": "fprop", "conv2d_channels_last": "fprop", "conv2d_input": "dgrad",
              "conv2d_input_channels_last": "dgrad", "conv2d_weight": "wgrad",
              "conv2d_weight_channels_last": "wgrad",
              "conv2d_bias": "bgrad", "conv2d_bias_channels_last": "bgrad",
              "max_pool2d": "pool_fwd", "max_pool2d_input": "pool_bwd"}


def _kernel_geometry(op: str, problem):
    """The geometry the kernel of a KERNEL_OPS check runs on."""
    from .geometry import conv2d_geometry, pool2d_geometry
    if op.startswith("max_pool2d"):
        return pool2d_geometry(problem.x_shape, **problem.kwargs)
    g = conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
    if op.startswith("conv2d_bias"):  # grad.conv2d_bias: dy as a depthwise 1x1 conv's output
        return conv2d_geometry(g.y_shape, (g.K, 1, 1, 1), groups=g.K)
    return g


def kernel_versions(op: str, problem, dtype) -> tuple:
    """Every kernel version that can run this check (empty for single-version ops)."""
    from . import kernels
    if op not in KERNEL_OPS:
        return ()
    kop, g = KERNEL_OPS[op], _kernel_geometry(op, problem)
    # Each kernel in its own layout: the NCHW versions in the NCHW checks, the NHWC versions
    # (kernels.NHWC_VERSIONS: the v4 and v5 convolutions, bgrad v3) in the *_channels_last
    # ones (elsewhere they would run the same kernels through layout copies). Where none
    # fits, gpuconv's own choice (version None) runs.
    nhwc = op.endswith("_channels_last")
    return tuple(v for v in kernels.variants(kop) if kernels.supports(kop, v, g)
                 and kernels.dtype_unsupported_reason(kop, v, dtype) is None
                 and ((kop, kernels.base_version(v)) in kernels.NHWC_VERSIONS) == nhwc)


def check_case(op: str, problem, dtype, to_device=lambda a: a, to_host=np.asarray,
               version: str | None = None) -> Comparison:
    """Run one op of the public API on ``problem`` in ``dtype`` and compare it with the reference.

    ``to_device``/``to_host`` move arrays to the backend's library (CuPy for the GPU);
    ``version`` forces that kernel version (None: the one gpuconv would choose).
    """
    from . import kernels
    forced = {KERNEL_OPS[op]: version} if version is not None else {}
    dtype = np.dtype(dtype)
    # TF32 runs where a tensor-core version is forced on float32, and is then held to its
    # error bound; gpuconv's own choice (version None) is checked with TF32 off, its default.
    on_tf32 = (version is not None and op in KERNEL_OPS
               and kernels.runs_on_tf32(KERNEL_OPS[op], version, dtype))
    token = _on_tf32.set(on_tf32)
    try:
        with kernels.use_versions(**forced), kernels.allow_tf32(on_tf32):
            return CHECKS[op][1](problem, dtype, to_device, to_host)
    finally:
        _on_tf32.reset(token)


def cases(ops=None, dtypes=DTYPES, versions: bool = False):
    """Every (op, dtype, problem, version) of the matrix; with ``versions``, every kernel
    version of the multi-version ops, else version None (gpuconv's own choice)."""
    for op in ops or OPS:
        for dtype in dtypes:
            for problem in CHECKS[op][0]():
                for version in (kernel_versions(op, problem, np.dtype(dtype)) if versions
                                else ()) or (None,):
                    yield op, np.dtype(dtype), problem, version
