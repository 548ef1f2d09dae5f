"""Build cache: corrupted/truncated builds are rebuilt, concurrent builders agree, errors are readable."""
import os
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest

from conftest import REPO, KERNELS, run_python, source
from gpuconv.runtime import cpu_rt

RUN_MATMUL = """
import numpy as np
from gpuconv.runtime import cpu_rt
m = cpu_rt.RawModule(code=open({path!r}).read(), options=({opt!r},))
A = np.ones((20, 20), np.float32); C = np.zeros((20, 20), np.float32)
m.get_function("matmul_tiled")((2, 2), (16, 16), (A, A, C, np.int32(20), np.int32(20), np.int32(20)))
assert (C == 20).all()
print("ok")
"""


def fresh_cache(tmp_path):
    env = dict(os.environ)
    env["GPUCONV_CACHE_DIR"] = str(tmp_path)
    return env


def run_matmul(env, opt="-DUNIQUE=0"):
    return run_python(RUN_MATMUL.format(path=str(KERNELS / "matmul.cu"), opt=opt), env=env)


def libs(tmp_path):
    return sorted((tmp_path / "cpu").glob("*.so"))


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUCONV_CACHE_DIR", str(tmp_path / "a"))
    assert cpu_rt.cache_dir() == tmp_path / "a" / "cpu"
    monkeypatch.delenv("GPUCONV_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cpu_rt.cache_dir() == tmp_path / "xdg" / "gpuconv" / "cpu"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing_checksum"])
def test_damaged_cached_library_is_rebuilt(tmp_path, damage):
    env = fresh_cache(tmp_path)
    r = run_matmul(env)
    assert r.stdout.strip() == "ok", r.stderr
    (so,) = libs(tmp_path)
    good = so.read_bytes()
    if damage == "truncate":  # as if the machine died half-way through writing
        so.write_bytes(good[: len(good) // 3])
    elif damage == "garbage":
        so.write_bytes(b"\0" * len(good))
    else:
        so.with_suffix(".ok").unlink()
    (tmp_path / "cpu" / "build-leftover-xyz").mkdir()  # an interrupted build's temporary folder
    r = run_matmul(env)
    assert r.stdout.strip() == "ok", r.stderr
    assert so.read_bytes() == good or len(so.read_bytes()) == len(good)


def test_two_processes_building_at_once(tmp_path):
    env = fresh_cache(tmp_path)
    opt = f"-DUNIQUE={uuid.uuid4().int % 10**9}"
    code = RUN_MATMUL.format(path=str(KERNELS / "matmul.cu"), opt=opt)
    env["PYTHONPATH"] = str(REPO)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all(o[0].strip() == "ok" for o in outs), outs
    assert len(libs(tmp_path)) == 1
    assert not [p for p in (tmp_path / "cpu").iterdir() if p.name.startswith("build-")]


def test_compile_error_shows_the_log():
    with pytest.raises(cpu_rt.CompileError) as e:
        cpu_rt.RawModule(code='extern "C" __global__ void broken(float* x) { x[0] = undeclared_name; }')
    assert "undeclared_name" in str(e.value) and "was not declared" in str(e.value)
    assert "kernel.cu:1" in str(e.value)


def test_missing_compiler_says_install_gpp(monkeypatch):
    monkeypatch.setenv("GPUCONV_CXX", "/nonexistent/g++")
    with pytest.raises(cpu_rt.CompilerNotFoundError, match=r"apt-get install g\+\+"):
        cpu_rt.RawModule(code=source("matmul.cu"))
    monkeypatch.delenv("GPUCONV_CXX")
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(cpu_rt.CompileError, match="no-such-compiler-xyz.*not found"):
        cpu_rt.RawModule(code=source("matmul.cu"))


def test_in_process_cache_returns_the_same_library():
    a = cpu_rt.RawModule(code=source("matmul.cu"))
    b = cpu_rt.RawModule(source("matmul.cu"))
    assert a._lib is b._lib


def test_two_python_threads_launching_at_once():
    kern = cpu_rt.RawModule(code=source("matmul.cu")).get_function("matmul_tiled")
    errors = []

    def work(seed):
        try:
            A = np.random.default_rng(seed).standard_normal((40, 40)).astype(np.float32) + seed
            for _ in range(10):
                C = np.zeros((40, 40), np.float32)
                kern((3, 3), (16, 16), (A, A, C, np.int32(40), np.int32(40), np.int32(40)))
                np.testing.assert_allclose(C, A.astype(np.float64) @ A, rtol=1e-4, atol=1e-3)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
