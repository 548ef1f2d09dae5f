"""Sanitizer mode (ASan + UBSan): out-of-bounds global and shared accesses reported with block/thread."""
import pytest

from conftest import KERNELS, run_python
from gpuconv.runtime import cpu_rt

SCRIPT = """
import numpy as np
from gpuconv.runtime import cpu_rt
m = cpu_rt.RawModule(code=open({path!r}).read())
x = np.arange(100, dtype=np.float32)
y = np.zeros(100, np.float32)
m.get_function("in_bounds")((4,), (32,), (x, y, np.int32(100)))   # clean kernels run clean
assert (y == 2 * x).all()
print("in_bounds ok", flush=True)
{launch}
print("no error reported", flush=True)
"""


@pytest.fixture(scope="module")
def env():
    try:
        return cpu_rt.sanitizer_env()
    except RuntimeError as e:
        pytest.skip(str(e))


def run(env, launch):
    return run_python(SCRIPT.format(path=str(KERNELS / "oob.cu"), launch=launch), env=env, timeout=300)


def test_out_of_bounds_global_write(env):
    r = run(env, 'm.get_function("oob_global_write")((4,), (32,), (x, y, np.int32(100)))')
    assert "in_bounds ok" in r.stdout, r.stderr
    assert r.returncode != 0 and "no error reported" not in r.stdout
    assert "heap-buffer-overflow" in r.stderr and "WRITE of size 4" in r.stderr, r.stderr
    assert "CUDA block (3,0,0) thread (4,0,0)" in r.stderr, r.stderr
    assert "outside the bounds of kernel argument 1 (array of 400 bytes" in r.stderr, r.stderr


def test_out_of_bounds_static_shared_read(env):
    r = run(env, 'm.get_function("oob_shared_read")((1,), (32,), (x, y))')
    assert r.returncode != 0 and "no error reported" not in r.stdout, r.stdout + r.stderr
    assert "heap-buffer-overflow" in r.stderr and "READ of size 4" in r.stderr, r.stderr
    assert "CUDA block (0,0,0) thread (31,0,0)" in r.stderr, r.stderr


def test_out_of_bounds_dynamic_shared_read(env):
    r = run(env, 'm.get_function("oob_dyn_shared_read")((1,), (32,), (x, y), shared_mem=128)')
    assert r.returncode != 0 and "no error reported" not in r.stdout, r.stdout + r.stderr
    assert "use-after-poison" in r.stderr and "READ of size 4" in r.stderr, r.stderr
    assert "CUDA block (0,0,0) thread (31,0,0)" in r.stderr, r.stderr


def test_sanitizer_mode_needs_the_preload(monkeypatch):
    monkeypatch.setenv("GPUCONV_CPU_SANITIZE", "1")
    with pytest.raises(RuntimeError, match="sanitizer_env"):
        cpu_rt.RawModule(code=(KERNELS / "oob.cu").read_text())
