"""Comparing a result with the reference: tolerances per dtype, in one place.

An element passes when ``|actual - expected| <= atol + rtol * |expected|``. NaN must meet NaN,
and infinities must be equal. float16 results carry the rounding of the output (and of
float16 inputs), so its tolerances are the widest; float64 leaves room only for a different
summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCES = {
    np.dtype(np.float16): (1e-2, 1e-2),   # (atol, rtol): about 10 ulps of a float16 near 1
    np.dtype(np.float32): (1e-4, 1e-4),
    np.dtype(np.float64): (1e-10, 1e-10),
}


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

    def __bool__(self) -> bool:
        return self.ok


def compare(actual, expected, dtype=None, scale: float = 1.0) -> Comparison:
    """Compare two arrays element by element; ``report`` lists the first mismatches.

    ``scale`` widens the tolerance for results that sum many terms (e.g. a long reduction).
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
        bad = ~(both_nan | same_inf | (err <= atol + rtol * np.abs(e)))
    finite_err = np.where(both_nan | same_inf, 0.0, err)
    max_error = float(np.nanmax(finite_err)) if finite_err.size else 0.0
    if np.isnan(finite_err).any():
        max_error = float("nan")
    if not bad.any():
        return Comparison(True, max_error, atol, rtol, "")
    where = np.argwhere(bad)[:5]
    lines = [f"{int(bad.sum())} of {bad.size} elements differ (max error {max_error:.3g}, "
             f"atol {atol:g}, rtol {rtol:g}); first:"]
    for idx in where:
        t = tuple(int(i) for i in idx)
        lines.append(f"  at {t}: got {a[t]!r}, expected {e[t]!r}")
    return Comparison(False, max_error, atol, rtol, "\n".join(lines))


def assert_close(actual, expected, dtype=None, scale: float = 1.0, what: str = "") -> None:
    """Raise AssertionError with the first mismatches when ``compare`` fails."""
    result = compare(actual, expected, dtype, scale)
    if not result:
        raise AssertionError((what + ": " if what else "") + result.report)


# ----------------------------------------------------------------------------------------
# inputs and the op matrix (shared by `gpuconv check` and the tests)

DTYPES = (np.float16, np.float32, np.float64)


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
    ties (float16 holds every integer up to 2048, which bounds the plane size).
    """
    plane = shape[-2] * shape[-1]
    planes = int(np.prod(shape[:-2]))
    if np.dtype(dtype) == np.float16 and plane > 4096:
        raise ValueError(f"a float16 plane of {plane} elements cannot hold distinct integers")
    if planes == 0:
        return np.zeros(shape, dtype)
    values = np.stack([rng.permutation(plane) for _ in range(planes)]).astype(np.float64)
    values -= plane // 2
    if np.dtype(dtype) != np.float16:
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


def _check_conv2d(problem, dtype, dev, host):
    from . import functional, reference
    x, w, b, _, g = _conv_case(problem, dtype)
    got = functional.conv2d(dev(x), dev(w), None if b is None else dev(b), **problem.kwargs)
    return compare(host(got), reference.conv2d(x, w, b, g), dtype)


def _check_conv2d_input(problem, dtype, dev, host):
    from . import grad, reference
    x, w, _, dy, g = _conv_case(problem, dtype)
    got = grad.conv2d_input(x.shape, dev(w), dev(dy), **problem.kwargs)
    return compare(host(got), reference.conv2d_input(dy, w, g), dtype)


def _check_conv2d_weight(problem, dtype, dev, host):
    from . import grad, reference
    x, w, _, dy, g = _conv_case(problem, dtype)
    got = grad.conv2d_weight(dev(x), w.shape, dev(dy), **problem.kwargs)
    return compare(host(got), reference.conv2d_weight(x, dy, g), dtype)


def _check_conv2d_bias(problem, dtype, dev, host):
    from . import grad, reference
    *_, dy, _ = _conv_case(problem, dtype)
    return compare(host(grad.conv2d_bias(dev(dy))), reference.conv2d_bias(dy), dtype)


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


# The check matrix: op -> (its problem list, its check). A check runs the public op on one
# problem in one dtype, with ``dev``/``host`` moving arrays to and from the backend's library,
# and compares the result with the reference. A new op adds one entry here.
CHECKS = {
    "conv2d": (_conv_problems, _check_conv2d),
    "conv2d_input": (_conv_problems, _check_conv2d_input),
    "conv2d_weight": (_conv_problems, _check_conv2d_weight),
    "conv2d_bias": (_conv_problems, _check_conv2d_bias),
    "max_pool2d": (_pool_problems, _check_max_pool2d),
    "max_pool2d_input": (_pool_problems, _check_max_pool2d_input),
}
OPS = tuple(CHECKS)


def check_case(op: str, problem, dtype, to_device=lambda a: a, to_host=np.asarray) -> Comparison:
    """Run one op of the public API on ``problem`` in ``dtype`` and compare it with the reference.

    ``to_device``/``to_host`` move arrays to the backend's library (CuPy for the GPU).
    """
    return CHECKS[op][1](problem, np.dtype(dtype), to_device, to_host)


def cases(ops=None, dtypes=DTYPES):
    """Every (op, dtype, problem) of the matrix."""
    for op in ops or OPS:
        for dtype in dtypes:
            for problem in CHECKS[op][0]():
                yield op, np.dtype(dtype), problem
