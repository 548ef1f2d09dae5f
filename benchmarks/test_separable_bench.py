"""Separable vs full 2-D convolution (seed 002 §9.8): O(w*d) against O(w**d).

A per-channel w x w filter that is an outer product ``u v^T`` (groups = C = K, a Gaussian
blur or Sobel on every channel of an image), for widths w in (3, 7, 15, 31), 'same'
padding: ``gpuconv.separable_conv2d`` (an R x 1 then a 1 x S pass) against ``gpuconv.conv2d``
with the full w x w kernel, on the NumPy reference path and, where a GPU is visible, on the
CUDA kernels (each timed call synchronizes the device inside the call).

Run: ``python -m pytest benchmarks/test_separable_bench.py --benchmark-only``
(``--benchmark-group-by=param:width`` puts each width's pair side by side). Each case stores
its multiply-add count (``macs``), the ratio to the other form's count, and the achieved
multiply-adds per second in ``extra_info``.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv
from gpuconv.geometry import conv2d_geometry
from gpuconv.runtime import cuda_available

WIDTHS = (3, 7, 15, 31)
N, C, H, W = 1, 4, 96, 96   # small enough for the NumPy reference at w = 31 (35 M MACs)


def macs(form: str, w: int) -> int:
    """Multiply-adds of one forward pass ('full': one w x w pass; 'separable': w x 1 then
    1 x w, per channel)."""
    g = conv2d_geometry((N, C, H, W), (C, 1, w, w), padding="same", groups=C)
    if form == "full":
        return g.N * g.K * g.P * g.Q * g.C_per_group * g.R * g.S
    return g.N * g.K * g.P * (g.W * g.C_per_group * g.R + g.Q * g.S)


def _inputs(w: int, xp):
    rng = np.random.default_rng(w)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    u = rng.standard_normal((C, 1, w)).astype(np.float32)
    v = rng.standard_normal((C, w)).astype(np.float32)
    full = (u[:, :, :, None] * v[:, None, None, :]).astype(np.float32)
    return xp.asarray(x), xp.asarray(u), xp.asarray(v), xp.asarray(full)


DEVICES = [pytest.param("numpy", id="numpy"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("form", ["separable", "full"])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("device", DEVICES)
def test_separable_vs_full(benchmark, device, width, form):
    if device == "cuda":
        if not cuda_available():
            pytest.skip("no CUDA device visible to CuPy")
        import cupy as xp

        sync = xp.cuda.Device().synchronize
    else:
        xp, sync = np, (lambda: None)
    x, u, v, full = _inputs(width, xp)

    def separable():
        y = gpuconv.separable_conv2d(x, u, v, padding="same", groups=C)
        sync()
        return y

    def two_d():
        y = gpuconv.conv2d(x, full, padding="same", groups=C)
        sync()
        return y

    call = separable if form == "separable" else two_d
    with gpuconv.use_backend(device):
        rounds = 5 if (device == "numpy" and width >= 15 and form == "full") else 10
        y = benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
        other = two_d() if form == "separable" else separable()
    y, other = (a.get() if hasattr(a, "get") else a for a in (y, other))
    np.testing.assert_allclose(y, other, rtol=2e-3, atol=2e-3 * np.abs(other).max())
    count = macs(form, width)
    benchmark.extra_info.update(
        width=width, form=form, device=device, macs=count,
        macs_full=macs("full", width), macs_separable=macs("separable", width),
        mac_ratio_full_to_separable=macs("full", width) / macs("separable", width),
        gmacs_per_s=count / benchmark.stats.stats.median / 1e9)
