"""Helpers shared by the test files (the `rt` fixture itself lives in conftest.py)."""

import zlib

import numpy as np
import pytest

# Where kernel tests run: the CPU runtime always, the GPU where CuPy sees one.
RUNTIMES = [
    pytest.param("emulator", id="emulator"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]


def rng_for(*parts) -> np.random.Generator:
    """A generator seeded from the test's identity, stable from run to run."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every element of ``a``
    (changed in place and restored)."""
    out = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        keep = a[i]
        a[i] = keep + eps
        up = f()
        a[i] = keep - eps
        down = f()
        a[i] = keep
        out[i] = (up - down) / (2 * eps)
    return out
