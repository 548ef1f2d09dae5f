"""`gpuconv check`: the table, the exit status, and a failure that must be reported."""

import io
import subprocess
import sys

import numpy as np

from gpuconv import cli, reference


def test_check_numpy_runtime_passes_and_prints_the_table():
    out = io.StringIO()
    failed = cli.check("numpy", ops=("conv2d", "max_pool2d"), dtypes=(np.float32,), out=out)
    text = out.getvalue()
    assert failed == 0
    assert "conv2d" in text and "max_pool2d" in text and "resnet_stem" in text
    assert "0 failed" in text and "FAIL" not in text


def test_check_reports_a_wrong_result_and_fails(monkeypatch):
    real = reference.conv2d
    monkeypatch.setattr(reference, "conv2d", lambda x, w, b, g: real(x, w, b, g) * 1.01)
    out = io.StringIO()
    failed = cli.check("numpy", ops=("conv2d",), dtypes=(np.float64,), out=out)
    assert failed > 0 and "FAIL" in out.getvalue() and "differ" in out.getvalue()


def test_module_entry_point_exit_status():
    ok = subprocess.run([sys.executable, "-m", "gpuconv", "check", "--runtime", "numpy",
                         "--op", "conv2d_bias", "--dtype", "float64"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "passed, 0 failed" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "gpuconv", "check", "--op", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_bench_without_gpu_says_so_and_exits_cleanly():
    from gpuconv.runtime import cuda_available
    if cuda_available():
        import pytest
        pytest.skip("a GPU is present: bench would measure")
    run = subprocess.run([sys.executable, "-m", "gpuconv", "bench", "--quick"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "needs a CUDA GPU" in run.stdout + run.stderr


def test_check_runs_every_kernel_version_on_a_kernel_runtime():
    out = io.StringIO()
    failed = cli.check("emulator", ops=("conv2d",), dtypes=(np.float16, np.float32), out=out)
    rows = [line.split() for line in out.getvalue().splitlines() if line.startswith("[")]
    versions = {(row[3], row[6]) for row in rows}  # (dtype, kernel)
    assert failed == 0
    assert {("float32", "v1"), ("float32", "v2"), ("float16", "v3")} <= versions
    assert ("float32", "v3") not in versions  # tensor-core kernels are float16 only


def test_use_versions_forces_and_restores():
    from gpuconv import kernels
    from gpuconv.geometry import conv2d_geometry
    g = conv2d_geometry((2, 64, 14, 14), (64, 64, 3, 3), padding=1)
    chosen = kernels.select_version("fprop", g, np.float32)
    other = "v1" if chosen != "v1" else "v2"
    with kernels.use_versions(fprop=other):
        assert kernels.select_version("fprop", g, np.float32) == other
        assert kernels.select_version("fprop", g, np.float32, version=chosen) == chosen
    assert kernels.select_version("fprop", g, np.float32) == chosen
    import pytest
    with pytest.raises(ValueError, match="use_versions"):
        with kernels.use_versions(fprop="v9"):
            pass
