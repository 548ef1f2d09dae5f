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
