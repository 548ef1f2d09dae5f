"""pytest-benchmark timings of gpuconv's kernels on a GPU (skipped without one).

Run: ``python -m pytest benchmarks/test_gpu_bench.py --benchmark-only``. Each timed call
launches the kernel and synchronizes the device inside the call, so the figure is device
time plus launch overhead. `gpuconv bench` (gpuconv/bench.py) is the fuller comparison, with
CUDA events, cuDNN and im2col baselines and JSON output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gpuconv import kernels
from gpuconv.geometry import conv2d_geometry, pool2d_geometry
from gpuconv.runtime import cuda_available, get_runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layers  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda_available(),
                                 reason="no CUDA device visible to CuPy: GPU benchmarks skipped")]

CASES = [(layer, 32) for layer in layers.QUICK_CONV]


@pytest.fixture(scope="module")
def rt():
    return get_runtime("cuda")


def _sync():
    import cupy

    cupy.cuda.Device().synchronize()


# CUDA-core versions (v2 in each tile configuration) in float32; tensor-core versions in
# float16 (v4 and v5: NCHW arrays, so their layout conversions are timed too; v5 is wgmma on
# compute capability 9.0 only).
CONV_VERSIONS = [("v1", np.float32), ("v2", np.float32), ("v2:128x128", np.float32),
                 ("v2:64x32", np.float32), ("v3", np.float16), ("v4", np.float16),
                 ("v5", np.float16), ("v5:128x128", np.float16)]


@pytest.mark.parametrize("version,dtype", CONV_VERSIONS,
                         ids=[f"{v}-{np.dtype(d).name}" for v, d in CONV_VERSIONS])
@pytest.mark.parametrize("op", ["fprop", "dgrad", "wgrad"])
@pytest.mark.parametrize("layer,n", CASES, ids=[f"{l.network}-{l.name}-N{n}" for l, n in CASES])
def test_conv(benchmark, rt, layer, n, op, version, dtype):
    import cupy

    g = conv2d_geometry((n, layer.C, layer.H, layer.W),
                        (layer.K, layer.C // layer.groups, layer.R, layer.S),
                        stride=layer.stride, padding=layer.padding, groups=layer.groups)
    if version not in kernels.variants(op):
        pytest.skip(f"{op} has no {version}")
    if not kernels.supports(op, version, g):
        pytest.skip(kernels.unsupported_reason(op, version, g))
    if version == "v1" and op == "wgrad" and g.N * g.P * g.Q > 4096:
        pytest.skip("wgrad v1 runs the N*P*Q reduction serially: seconds per call here")
    rng = cupy.random.default_rng(0)
    x = rng.standard_normal(g.x_shape, dtype=np.float32).astype(dtype)
    w = rng.standard_normal(g.w_shape, dtype=np.float32).astype(dtype)
    dy = rng.standard_normal(g.y_shape, dtype=np.float32).astype(dtype)
    out = cupy.empty({"fprop": g.y_shape, "dgrad": g.x_shape, "wgrad": g.w_shape}[op], dtype)
    launch = {"fprop": lambda: kernels.conv2d_fprop(rt, g, x, w, None, out, version=version),
              "dgrad": lambda: kernels.conv2d_dgrad(rt, g, dy, w, out, version=version),
              "wgrad": lambda: kernels.conv2d_wgrad(rt, g, x, dy, out, version=version)}[op]

    def call():
        launch()
        _sync()

    call()  # compile and warm up outside the timing
    benchmark(call)
    benchmark.extra_info["gflop"] = g.flops / 1e9
    benchmark.extra_info["tflops_at_median"] = g.flops / benchmark.stats.stats.median / 1e12


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
@pytest.mark.parametrize("op", ["pool_fwd", "pool_bwd"])
def test_resnet_stem_maxpool(benchmark, rt, op, version):
    import cupy

    layer = layers.POOL_LAYERS[0]
    g = pool2d_geometry((32, layer.C, layer.H, layer.W), layer.kernel, layer.stride, layer.padding)
    x = cupy.random.default_rng(0).standard_normal(g.x_shape, dtype=np.float32)
    y, idx = cupy.empty(g.y_shape, np.float32), cupy.empty(g.y_shape, np.int64)
    kernels.maxpool2d_fwd(rt, g, x, y, idx)
    dx = cupy.empty(g.x_shape, np.float32)
    launch = {"pool_fwd": lambda: kernels.maxpool2d_fwd(rt, g, x, y, idx, version=version),
              "pool_bwd": lambda: kernels.maxpool2d_bwd(rt, g, y, idx, dx, version=version)}[op]

    def call():
        launch()
        _sync()

    call()
    benchmark(call)
