"""The NumPy reference on a real layer: ResNet-50 conv2_x 3x3 (N=8, 64->64, 56x56, pad 1).

Run: ``python -m pytest benchmarks/test_reference_bench.py`` (pytest-benchmark). Besides
the timing table, each case stores its GFLOP/s in ``extra_info``.
"""

import numpy as np
import pytest

from gpuconv import reference
from gpuconv.geometry import conv2d_geometry

G = conv2d_geometry((8, 64, 56, 56), (64, 64, 3, 3), padding=1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(G.x_shape).astype(np.float32)
    w = rng.standard_normal(G.w_shape).astype(np.float32)
    b = rng.standard_normal(G.K).astype(np.float32)
    dy = rng.standard_normal(G.y_shape).astype(np.float32)
    return x, w, b, dy


@pytest.mark.parametrize("op", ["forward", "input_grad", "weight_grad"])
def test_reference_resnet50_layer(benchmark, data, op):
    x, w, b, dy = data
    call = {"forward": lambda: reference.conv2d(x, w, b, G),
            "input_grad": lambda: reference.conv2d_input(dy, w, G),
            "weight_grad": lambda: reference.conv2d_weight(x, dy, G)}[op]
    result = benchmark.pedantic(call, rounds=7, iterations=1, warmup_rounds=1)
    assert np.isfinite(result).all()
    benchmark.extra_info["gflops"] = G.flops / benchmark.stats.stats.median / 1e9
