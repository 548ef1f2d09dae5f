"""The self-check (gpuconv/kernels.py: self_check_failure): before a kernel version's first
use on a GPU, once per process, device, op, version and dtype, it runs on a small built-in
problem against the NumPy reference; a version that fails is never chosen there and an
explicit request for it raises. No GPU here: the tests let the check run on the CPU runtime
(kernels.SELF_CHECK_RUNTIMES) and break a runtime on purpose (tensor-core lanes swapped)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gpuconv import kernels, problems, reference
from gpuconv.dtypes import bfloat16
from gpuconv.geometry import conv2d_geometry, pool2d_geometry
from gpuconv.runtime import get_runtime

from test_tensor_core import SWAP, _emulator_built_with

RESNET_3X3 = conv2d_geometry((2, 64, 14, 14), (64, 64, 3, 3), padding=1)


@pytest.fixture(autouse=True)
def checks_on_the_cpu_runtime(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "SELF_CHECK_RUNTIMES", ("emulator",))
    monkeypatch.delenv(kernels.ENV_SELF_CHECK, raising=False)
    monkeypatch.delenv(kernels.ENV_VERSION, raising=False)
    monkeypatch.setenv("GPUCONV_CACHE_DIR", str(tmp_path))  # autotune.json of the tests here
    kernels.clear_self_checks()
    yield
    kernels.clear_self_checks()


# A spread of kernels: CUDA cores, tensor cores (mma.sync, TF32 against its bound, wgmma in
# both tile configurations), channels-last bias gradient, vectorized max-pool.
PASSING = [("fprop", "v1", np.float64), ("fprop", "v2:64x32", np.float32),
           ("dgrad", "v3", np.float16), ("fprop", "v4", np.float32),
           ("dgrad", "v5:128x128", bfloat16), ("wgrad", "v5", np.float16),
           ("wgrad", "v2", np.float32), ("bgrad", "v3", np.float16),
           ("pool_fwd", "v3", np.float32), ("pool_bwd", "v2", bfloat16)]


@pytest.mark.parametrize("op,version,dtype", PASSING,
                         ids=[f"{o}-{v}-{np.dtype(d).name}" for o, v, d in PASSING])
def test_right_kernels_pass(op, version, dtype):
    assert kernels.run_self_check(get_runtime("emulator"), op, version, dtype) is None


def test_every_version_can_run_the_self_check_problems():
    """A version that cannot run a self-check problem fails its check (it was never tested):
    none of today's can't."""
    for op in kernels.OPS:
        pool = op in ("pool_fwd", "pool_bwd")
        for problem in problems.SELF_CHECK_POOL if pool else problems.SELF_CHECK_CONV:
            g = (pool2d_geometry(problem.x_shape, **problem.kwargs) if pool else
                 conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs))
            for version in kernels.variants(op):
                assert kernels.supports(op, version, g), (op, version, problem.name)
    # between them, the problems reach the paths they are for
    resnet, odd = (conv2d_geometry(p.x_shape, p.w_shape, **p.kwargs)
                   for p in problems.SELF_CHECK_CONV)
    assert odd.C_per_group % 8 and (odd.C_per_group * 9) % 32 and not odd.groups == 1
    assert kernels.bgrad_splits(odd) > 1 and kernels.bgrad_splits(resnet) == 1
    stem, k2 = (pool2d_geometry(p.x_shape, **p.kwargs) for p in problems.SELF_CHECK_POOL)
    assert stem.Q % kernels.POOL_V3_VEC and not k2.Q % kernels.POOL_V3_VEC


def test_a_version_that_cannot_run_a_check_problem_fails(monkeypatch):
    monkeypatch.setattr(kernels, "supports", lambda op, version, g: version != "v2")
    failure = kernels.run_self_check(get_runtime("emulator"), "fprop", "v2", np.float32)
    assert failure == "it cannot run its self-check problem check_resnet_3x3"


def test_a_kernel_with_wrong_lanes_fails_and_the_cuda_cores_pass():
    broken = _emulator_built_with(*SWAP)  # mma fragments of lanes 1 and 5 swapped
    failure = kernels.run_self_check(broken, "fprop", "v3", np.float16)
    assert failure is not None and failure.startswith("max error") and "check_" in failure
    assert kernels.run_self_check(broken, "fprop", "v2", np.float16) is None


class Failing:
    """A runtime whose every launch raises ``error``."""

    name, xp = "emulator", np

    def __init__(self, error):
        self.error = error

    def function(self, source_name, name_expression):
        raise self.error


def test_a_kernel_that_cannot_be_built_or_loaded_fails():
    from gpuconv.runtime.cpu_rt import CompileError

    for error in (RuntimeError("no kernel image is available for execution on the device"),
                  CompileError("g++ failed to compile the kernel module")):
        failure = kernels.run_self_check(Failing(error), "wgrad", "v2", np.float32)
        assert failure.startswith("it raised") and str(error) in failure


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the unwritten output
def test_other_errors_propagate_and_are_not_remembered():
    rt = Failing(MemoryError("out of memory allocating 1 MiB"))
    with pytest.raises(MemoryError) as caught:
        kernels.self_check_failure(rt, "fprop", "v2", np.float32)
    assert any("self-check of fprop v2" in note for note in caught.value.__notes__)
    rt.error = None
    rt.function = lambda source, name: (lambda grid, block, args: None)  # launches: no error
    with pytest.warns(RuntimeWarning, match="failed its self-check"):  # checked anew: it ran
        assert kernels.self_check_failure(rt, "fprop", "v2", np.float32).startswith("max error")


def test_during_graph_capture_it_refuses_to_run(monkeypatch):
    monkeypatch.setattr(kernels, "_capturing", lambda rt: True)
    with pytest.raises(RuntimeError, match="CUDA graph is captured.*GPUCONV_SELF_CHECK=0"):
        kernels.self_check_failure(get_runtime("emulator"), "fprop", "v2", np.float32)
    monkeypatch.setenv(kernels.ENV_SELF_CHECK, "0")
    assert kernels.self_check_failure(get_runtime("emulator"), "fprop", "v2", np.float32) is None


def test_an_explicit_request_for_a_failing_version_raises():
    broken = _emulator_built_with(*SWAP)
    x = np.ones(RESNET_3X3.x_shape, np.float16)
    w = np.ones(RESNET_3X3.w_shape, np.float16)
    y = np.empty(RESNET_3X3.y_shape, np.float16)
    with pytest.warns(RuntimeWarning, match="fprop v3 .float16. failed its self-check"):
        with pytest.raises(RuntimeError, match="fprop v3 .from version=. failed gpuconv's "
                                               "self-check on this device: max error"):
            kernels.conv2d_fprop(broken, RESNET_3X3, x, w, None, y, version="v3")


def test_the_heuristic_falls_back_to_the_cuda_cores(monkeypatch):
    """On a (pretend) sm_90 whose tensor cores give wrong results, the heuristic's v3 fails its
    check: v2 runs instead, with a warning, and the result is right."""
    broken = _emulator_built_with(*SWAP)
    monkeypatch.setattr(kernels, "device_arch", lambda rt: 90)
    assert kernels.heuristic_version("fprop", RESNET_3X3, np.float16, 90) == "v3"
    rng = np.random.default_rng(3)
    x = rng.standard_normal(RESNET_3X3.x_shape).astype(np.float16)
    w = rng.standard_normal(RESNET_3X3.w_shape).astype(np.float16)
    y = np.empty(RESNET_3X3.y_shape, np.float16)
    with pytest.warns(RuntimeWarning, match="fprop v3"):
        assert kernels.select_version("fprop", RESNET_3X3, np.float16, broken) == "v2"
    kernels.conv2d_fprop(broken, RESNET_3X3, x, w, None, y)
    np.testing.assert_allclose(y.astype(np.float64), reference.conv2d(x, w, None, RESNET_3X3),
                               rtol=2e-2, atol=2e-2)


def test_each_check_runs_once_and_can_be_turned_off(monkeypatch):
    rt = get_runtime("emulator")
    runs = []
    real = kernels.run_self_check
    monkeypatch.setattr(kernels, "run_self_check",
                        lambda *a: runs.append(a[1:3]) or real(*a))
    for _ in range(3):
        assert kernels.self_check_failure(rt, "pool_fwd", "v2", np.float32) is None
    assert kernels.self_check_failure(rt, "pool_fwd", "v2", np.float64) is None
    assert runs == [("pool_fwd", "v2"), ("pool_fwd", "v2")]  # float32 once, float64 once
    monkeypatch.setenv(kernels.ENV_SELF_CHECK, "0")
    assert kernels.self_check_failure(rt, "pool_bwd", "v2", np.float32) is None
    assert len(runs) == 2
    # other runtimes: never checked
    monkeypatch.delenv(kernels.ENV_SELF_CHECK)
    monkeypatch.setattr(kernels, "SELF_CHECK_RUNTIMES", ("cuda",))
    assert kernels.self_check_failure(rt, "pool_bwd", "v2", np.float32) is None
    assert len(runs) == 2


def test_autotune_never_times_a_failing_version(monkeypatch):
    from test_selection import A, FakeTimer, Recorder

    monkeypatch.setattr(kernels, "SELF_CHECK_RUNTIMES", ("cuda",))
    monkeypatch.setenv(kernels.ENV_AUTOTUNE, "1")
    monkeypatch.setattr(kernels, "_device_key", lambda rt: "Fake GPU sm_90")
    monkeypatch.setattr(kernels, "run_self_check",
                        lambda rt, op, version, dtype: "max error 9" if version == "v1" else None)
    timer = FakeTimer({"v1": 1.0, "v2": 3.0, "v2:128x128": 3.5, "v2:64x32": 3.2})
    monkeypatch.setattr(kernels, "_time_launch", timer)
    kernels.clear_autotune_memory()
    rt = Recorder("cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kernels.conv2d_fprop(rt, RESNET_3X3, A(), A(), None, A())
    assert sorted(timer.calls) == ["v2", "v2:128x128", "v2:64x32"]  # v1, "fastest", excluded
    assert rt.launches[-1] == "conv2d_fprop_v2_implicit_gemm"
    assert any("fprop v1 (float32) failed its self-check" in str(w.message) for w in caught)
    kernels.clear_autotune_memory()


def test_when_every_fallback_fails_the_call_raises(monkeypatch):
    monkeypatch.setattr(kernels, "run_self_check", lambda *a: "max error 1e9 on check_x")
    with pytest.warns(RuntimeWarning):
        with pytest.raises(RuntimeError, match="every fprop version gpuconv would fall back to "
                                               "failed its self-check"):
            kernels.select_version("fprop", RESNET_3X3, np.float32, get_runtime("emulator"))


def test_a_max_pool_with_wrong_indices_fails(monkeypatch):
    real = kernels.maxpool2d_fwd

    def off_by_one(rt, g, x, y, idx, version=None):
        real(rt, g, x, y, idx, version)
        idx[...] += 1

    monkeypatch.setattr(kernels, "maxpool2d_fwd", off_by_one)
    failure = kernels.run_self_check(get_runtime("emulator"), "pool_fwd", "v2", np.float16)
    assert failure == "wrong max-pool indices on check_stem"
