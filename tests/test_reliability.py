"""Reliability of the kernel path: determinism, thread safety, special values, array handling
on the CPU runtime (the GPU variants run where CuPy sees a device)."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import gpuconv
from gpuconv import checking, grad, kernels, reference
from gpuconv.geometry import conv2d_geometry
from gpuconv.problems import CONV_PROBLEMS, POOL_PROBLEMS

CONV = next(p for p in CONV_PROBLEMS if p.name == "groups")
POOL = next(p for p in POOL_PROBLEMS if p.name == "k3s2_overlap")


def _all_outputs(dtype=np.float32):
    """Every op's outputs on the emulator for one conv and one pool problem (max-pool also
    with its vectorized v3)."""
    x, w, b, dy = checking.conv_inputs(CONV, dtype)
    xp, dyp = checking.pool_inputs(POOL, dtype)
    kw = CONV.kwargs
    with gpuconv.use_backend("emulator"):
        y = gpuconv.conv2d(x, w, b, **kw)
        yp, idx = gpuconv.max_pool2d(xp, return_indices=True, **POOL.kwargs)
        with kernels.use_versions(pool_fwd="v3", pool_bwd="v3"):
            yp3, idx3 = gpuconv.max_pool2d(xp, return_indices=True, **POOL.kwargs)
            dxp3 = grad.max_pool2d_input(dyp, idx3, xp.shape, **POOL.kwargs)
        return [y, grad.conv2d_input(x.shape, w, dy, **kw), grad.conv2d_weight(x, w.shape, dy, **kw),
                grad.conv2d_bias(dy), yp, idx,
                grad.max_pool2d_input(dyp, idx, xp.shape, **POOL.kwargs), yp3, idx3, dxp3]


def test_outputs_are_bitwise_identical_run_to_run():
    first, second = _all_outputs(), _all_outputs()
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()


_DIGEST = """
import hashlib, sys
sys.path.insert(0, {tests!r})
import test_reliability as t
print(hashlib.sha256(b"".join(a.tobytes() for a in t._all_outputs())).hexdigest())
"""


def test_outputs_are_identical_across_cpu_worker_counts_and_fiber_orders():
    """The CPU runtime with 1 and with 3 worker threads (blocks run in other orders), and with
    the threads of a block resumed in reverse order, or greedily (one warp runs ahead), between
    barriers."""
    digests = set()
    for workers, order in (("1", "forward"), ("3", "forward"), ("2", "reverse"),
                           ("2", "greedy")):
        env = dict(os.environ, GPUCONV_CPU_WORKERS=workers, GPUCONV_CPU_FIBER_ORDER=order)
        run = subprocess.run([sys.executable, "-c", _DIGEST.format(tests=os.path.dirname(__file__))],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        digests.add(run.stdout.strip())
    assert len(digests) == 1


def test_two_threads_launching_at_once_get_right_answers():
    x, w, b, dy = checking.conv_inputs(CONV, np.float64)
    g = conv2d_geometry(CONV.x_shape, CONV.w_shape, **CONV.kwargs)
    want = reference.conv2d(x, w, b, g)
    errors = []

    def work():
        try:
            with gpuconv.use_backend("emulator"):  # the backend is local to each thread
                for _ in range(3):
                    checking.assert_close(gpuconv.conv2d(x, w, b, **CONV.kwargs), want)
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_special_values_propagate_like_the_reference():
    """NaN and +-Inf inside the input flow through conv and its gradients as in IEEE
    arithmetic (the kernels and the reference agree element by element)."""
    x, w, b, dy = checking.conv_inputs(CONV, np.float32)
    x[0, 0, 2, 3], x[1, 2, 5, 5], x[1, 4, 0, 0] = np.nan, np.inf, -np.inf
    dy[0, 1, 1, 1] = np.nan
    g = conv2d_geometry(CONV.x_shape, CONV.w_shape, **CONV.kwargs)
    kw = CONV.kwargs
    with gpuconv.use_backend("emulator"):
        y = gpuconv.conv2d(x, w, b, **kw)
        dx = grad.conv2d_input(x.shape, w, dy, **kw)
        dw = grad.conv2d_weight(x, w.shape, dy, **kw)
    assert np.isnan(y).any() and np.isinf(y).any()
    checking.assert_close(y, reference.conv2d(x, w, b, g), what="y")
    checking.assert_close(dx, reference.conv2d_input(dy, w, g), what="dx")
    checking.assert_close(dw, reference.conv2d_weight(x, dy, g), what="dw")


def test_non_contiguous_and_read_only_inputs_on_the_kernels():
    x, w, b, dy = checking.conv_inputs(CONV, np.float32)
    x_view = np.asfortranarray(x)
    x_view.flags.writeable = False
    with gpuconv.use_backend("emulator"):
        got = gpuconv.conv2d(x_view, w[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1], b, **CONV.kwargs)
        want = gpuconv.conv2d(x, w, b, **CONV.kwargs)
    assert got.tobytes() == want.tobytes()


def test_empty_batch_on_the_kernels():
    with gpuconv.use_backend("emulator"):
        y = gpuconv.conv2d(np.zeros((0, 3, 5, 5), np.float32), np.ones((2, 3, 3, 3), np.float32))
        p, idx = gpuconv.max_pool2d(np.zeros((0, 2, 4, 4)), 2, return_indices=True)
    assert y.shape == (0, 2, 3, 3) and p.shape == (0, 2, 2, 2) and idx.dtype == np.int64


# ---------------------------------------------------------------------------------------
# GPU only (skipped without a CUDA device)

def _cupy_or_skip():
    from gpuconv.runtime import cuda_available
    if not cuda_available():
        pytest.skip("no CUDA device visible to CuPy")
    import cupy
    return cupy


@pytest.mark.gpu
def test_mixed_array_libraries_are_refused():
    cupy = _cupy_or_skip()
    x, w, b, _ = checking.conv_inputs(CONV, np.float32)
    with pytest.raises(TypeError, match="one library"):
        gpuconv.conv2d(cupy.asarray(x), w, **CONV.kwargs)


@pytest.mark.gpu
def test_gpu_runs_are_bitwise_identical():
    cupy = _cupy_or_skip()
    x, w, b, dy = (cupy.asarray(a) for a in checking.conv_inputs(CONV, np.float32))
    runs = [(gpuconv.conv2d(x, w, b, **CONV.kwargs), grad.conv2d_weight(x, w.shape, dy, **CONV.kwargs),
             grad.conv2d_input(x.shape, w, dy, **CONV.kwargs)) for _ in range(2)]
    for a, b_ in zip(*runs):
        assert cupy.asnumpy(a).tobytes() == cupy.asnumpy(b_).tobytes()


@pytest.mark.gpu
def test_tensor_beyond_2_to_the_31_elements():
    """A 1x1 convolution over 2^31 + 2 * 32769 float16 elements: the elements past 2^31 must
    be computed too (y = 2x + 1, exact in float16 for these small integers)."""
    cupy = _cupy_or_skip()
    if cupy.cuda.Device().mem_info[0] < 12 * 2**30:
        pytest.skip("needs 12 GiB of free GPU memory")
    H, W = 32768, 32770                                   # 2 * H * W > 2^31
    flat = cupy.empty(2 * H * W, cupy.float16)  # x = i % 7, filled 2^28 at a time (2 GiB of
    for start in range(0, flat.size, 2**28):    # int64 indices at once, not 17)
        stop = min(flat.size, start + 2**28)
        flat[start:stop] = (cupy.arange(start, stop, dtype=cupy.int64) % 7).astype(cupy.float16)
    x = flat.reshape(2, 1, H, W)
    assert x.size > 2**31
    w = cupy.full((1, 1, 1, 1), 2, cupy.float16)
    b = cupy.ones(1, cupy.float16)
    y = gpuconv.conv2d(x, w, b)
    flat_x, flat_y = x.ravel(), y.ravel()
    for start in (0, 2**31 - 5, x.size - 1000):
        got = cupy.asnumpy(flat_y[start:start + 1000]).astype(np.float64)
        want = 2 * cupy.asnumpy(flat_x[start:start + 1000]).astype(np.float64) + 1
        np.testing.assert_array_equal(got, want)


def test_the_gpu_runtime_builds_wgmma_apart_from_the_other_versions():
    """On the GPU each file's wgmma (v5) instances are a module of their own: an NVRTC that
    cannot build the sm_90a code fails v5 alone, not v1 to v4 of the same op. The CPU runtime
    builds each file as one module. (No GPU here: the module builder is a recorder.)"""
    from gpuconv import kernels
    from gpuconv.runtime import Runtime

    built = []

    class Module:
        def __init__(self, names):
            self.names = names

        def get_function(self, name):
            assert name in self.names
            return name

    def build(source_name, code, names):
        built.append((source_name, set(names)))
        return Module(names)

    gpu, cpu = (Runtime(name, np, build, grouped=name == "cuda") for name in ("cuda", "emulator"))
    for source in ("conv2d_fprop.cu", "maxpool2d.cu"):
        everything = set(kernels.name_expressions(source))
        v5 = {e for e in everything if e.startswith("conv2d_fprop_v5_nhwc_wgmma<")}
        built.clear()
        gpu.function(source, sorted(everything - v5)[0])
        for e in sorted(v5):
            gpu.function(source, e)
        assert built == ([(source, everything - v5)] + ([(source, v5)] * len(v5) if v5 else []))
        # fprop v5: float16, bfloat16, each in 2 tile configurations; max-pool: no wgmma
        assert len(v5) == (4 if source == "conv2d_fprop.cu" else 0)
        built.clear()
        cpu.function(source, sorted(everything)[0])
        assert built == [(source, everything)]
