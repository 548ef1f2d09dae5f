"""Faults become KernelError (with block and thread), never a crash or a hang."""
import numpy as np
import pytest

from conftest import KERNELS, run_python, module
from gpuconv.runtime.cpu_rt import KernelError


@pytest.fixture(scope="module")
def faults():
    return module("faults.cu")


def launch(faults, name, grid, block, args=None, **kw):
    out = np.zeros(4096, np.int32)
    faults.get_function(name)(grid, block, args or (out,), **kw)


def test_divergent_barrier(faults):
    with pytest.raises(KernelError, match=r"divergent barrier: block \(0,0,0\) thread \(0,0,0\) waits in "
                                          r"__syncthreads at kernel.cu:\d+, but block \(0,0,0\) thread \(16,0,0\) "
                                          r"waits at kernel.cu:\d+"):
        launch(faults, "divergent_barrier", 1, 32)


def test_deadlock_barrier_vs_warp(faults):
    with pytest.raises(KernelError, match=r"deadlock: block \(0,0,0\) thread \(31,0,0\) waits in __syncthreads"
                                          r".*__shfl_sync .* waits in block \(0,0,0\) thread \(0,0,0\)"):
        launch(faults, "deadlock_bar_warp", 1, 32)


def test_warp_intrinsics_that_do_not_match(faults):
    with pytest.raises(KernelError, match=r"warp divergence: .*__ballot_sync.*__shfl_sync.* in block \(0,0,0\) "
                                          r"thread \(1,0,0\)"):
        launch(faults, "warp_mismatch", 1, 2)


def test_warp_mask_names_exited_lane(faults):
    with pytest.raises(KernelError, match=r"names lane 5 which exited.* block \(1,0,0\) thread \(\d+,0,0\)"):
        launch(faults, "exited_lane", 3, 32)


def test_trap(faults):
    with pytest.raises(KernelError, match=r"__trap\(\) called in block \(2,0,0\) thread \(7,0,0\)"):
        launch(faults, "trap_kernel", 3, 32)


@pytest.mark.parametrize("grid,block,smem,match", [
    (1, 1025, 0, r"block \(1025,1,1\) exceeds the limits"),
    (1, (512, 2, 2), 0, r"has 2048 threads > 1024"),
    (1, (33, 33), 0, r"has 1089 threads > 1024"),
    (1, (1, 1, 65), 0, r"exceeds the limits \(1024,1024,64\)"),
    (1, (2048, 1), 0, r"exceeds the limits \(1024,1024,64\)"),
    ((1, 65536), 1, 0, r"grid \(1,65536,1\) exceeds"),
    ((1, 1, 65536), 1, 0, r"grid \(1,1,65536\) exceeds"),
    (0, 1, 0, r"zero-size grid"),
    (1, (4, 0), 0, r"zero-size grid .* or block"),
    (1, 32, 227 * 1024 + 1, r"232449 bytes of dynamic shared memory > 227 KiB"),
])
def test_invalid_launch_configuration(faults, grid, block, smem, match):
    with pytest.raises(KernelError, match="invalid launch configuration: .*" + match):
        launch(faults, "noop", grid, block, shared_mem=smem)
    launch(faults, "noop", 1, 32, shared_mem=227 * 1024)  # the limit itself is fine, and the module still works


def test_module_keeps_working_after_faults(faults):
    for name in ("divergent_barrier", "deadlock_bar_warp", "exited_lane"):
        with pytest.raises(KernelError):
            launch(faults, name, 3, 64)
    out = np.zeros(64, np.int32)
    module("warp.cu").get_function("bar_votes")((1,), (64,), (np.ones(64, np.int32), out))
    assert out[:3].tolist() == [64, 1, 1]


def test_fiber_stack_overflow_in_subprocess():
    code = f"""
import numpy as np
from gpuconv.runtime import cpu_rt
m = cpu_rt.RawModule(code=open({str(KERNELS / 'faults.cu')!r}).read())
k = m.get_function("stack_overflow")
out = np.zeros(64, np.int32)
k((1,), (8,), (out, np.int32(4)))  # shallow recursion is fine
try:
    k((2,), (8,), (out, np.int32(1000)))  # thread 3 recurses ~1 MB deep on a 64 KiB stack
except cpu_rt.KernelError as e:
    print("KernelError:", e)
k((1,), (8,), (out, np.int32(4)))
print("still alive")
"""
    r = run_python(code)
    text = r.stdout + r.stderr
    assert "fiber stack overflow" in text, text
    assert "block (0,0,0) thread (3,0,0)" in text, text
    # the guard page turns it into an exception; the interpreter survives
    assert r.returncode == 0 and "KernelError: stack_overflow: fiber stack overflow" in r.stdout, text
    assert "still alive" in r.stdout
