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


def test_check_stops_at_a_kernel_fault_and_counts_the_rest_as_not_run(monkeypatch):
    """A kernel fault on a GPU (an illegal address: every later launch fails the same way)
    stops the run at its case, named, instead of blaming every case after it; an ordinary
    exception is one failed case and the run goes on."""
    from gpuconv import checking

    real, calls = checking.check_case, []

    def faulting(op, problem, dtype, *args):
        calls.append(problem.name)
        if len(calls) == 2:
            raise ValueError("some bug")
        if len(calls) == 3:
            raise RuntimeError("cudaErrorIllegalAddress: an illegal memory access was "
                               "encountered")
        return real(op, problem, dtype, *args)

    monkeypatch.setattr(checking, "check_case", faulting)
    out = io.StringIO()
    failed = cli.check("numpy", ops=("conv2d",), dtypes=(np.float32,), out=out)
    text = out.getvalue()
    total = len(list(checking.cases(("conv2d",), (np.float32,))))
    assert len(calls) == 3 and failed == 2 + (total - 3)
    assert f"STOPPED after case 3, conv2d [auto] float32 {calls[2]}" in text
    assert f"1 passed, 2 failed, {total - 3} not run" in text
    assert cli.is_sticky_cuda_error(RuntimeError("CUDA_ERROR_MISALIGNED_ADDRESS"))
    assert not cli.is_sticky_cuda_error(MemoryError("out of memory"))


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
    failed = cli.check("emulator", ops=("conv2d", "conv2d_weight", "conv2d_channels_last"),
                       dtypes=(np.float16, np.float64, np.float32), out=out)
    # "[ i/n] op dtype problem runtime kernel error tolerance result"
    rows = [line.split("]", 1)[1].split() for line in out.getvalue().splitlines()
            if line.startswith("[")]
    versions = {(row[0], row[1], row[4]) for row in rows}  # (op, dtype, kernel)
    assert failed == 0
    assert {("conv2d", "float32", "v1"), ("conv2d", "float32", "v2"),
            ("conv2d", "float16", "v3"), ("conv2d_weight", "float16", "v3")} <= versions
    # Each kernel in its own layout: v4 and v5 (NHWC; v5 16-bit only) on channels-last arrays
    # only, where float64 (neither) runs gpuconv's own choice ("auto").
    assert {("conv2d_channels_last", "float16", "v4"), ("conv2d_channels_last", "float32", "v4"),
            ("conv2d_channels_last", "float16", "v5"),
            ("conv2d_channels_last", "float64", "auto")} <= versions
    assert not any(op == "conv2d" and kernel.startswith(("v4", "v5"))
                   for op, _, kernel in versions)
    assert not any(dtype == "float32" and kernel.startswith("v5") for _, dtype, kernel in versions)
    assert {kernel for op, _, kernel in versions
            if op == "conv2d_channels_last"} == {"v4", "v5", "v5:128x128", "auto"}
    # Tensor cores (v3, v4): 16-bit types, and float32 on TF32 checked against the TF32
    # error bound (tolerance column "+tf32"); never float64.
    assert {("conv2d", "float32", "v3"), ("conv2d_weight", "float32", "v3")} <= versions
    assert not any(dtype == "float64" and kernel in ("v3", "v4")
                   for _, dtype, kernel in versions)
    tf32_rows = [row for row in rows if row[1] == "float32" and row[4] in ("v3", "v4")]
    assert tf32_rows and all(row[-2].endswith("+tf32") for row in tf32_rows)
    assert not any(row[-2].endswith("+tf32") for row in rows if row not in tf32_rows)


def test_check_runs_every_v5_on_channels_last_16_bit_arrays():
    """The wgmma kernels (fprop, dgrad and wgrad v5; fprop's and dgrad's 128x128 tiles too) are
    in gpuconv check's channels-last checks, float16 and bfloat16 only, and never in the NCHW
    ones."""
    from gpuconv.checking import kernel_versions
    from gpuconv.dtypes import bfloat16
    from gpuconv.problems import CONV_PROBLEMS

    problem = next(p for p in CONV_PROBLEMS if p.name == "resnet_3x3_layer")
    for op in ("conv2d", "conv2d_input", "conv2d_weight"):
        for dtype in (np.float16, bfloat16):
            assert "v5" in kernel_versions(f"{op}_channels_last", problem, dtype), op
            assert ("v5:128x128" in kernel_versions(f"{op}_channels_last", problem, dtype)) == (
                op != "conv2d_weight"), op
            assert not any(v.startswith("v5") for v in kernel_versions(op, problem, dtype)), op
        assert not any(v.startswith("v5")
                       for v in kernel_versions(f"{op}_channels_last", problem, np.float32)), op


def test_check_runs_max_pool_v3_on_every_dtype():
    """gpuconv check has rows for the vectorized max-pool (v3, forward and backward)."""
    out = io.StringIO()
    failed = cli.check("emulator", ops=("max_pool2d", "max_pool2d_input"), out=out)  # all dtypes
    rows = [line.split("]", 1)[1].split() for line in out.getvalue().splitlines()
            if line.startswith("[")]
    assert failed == 0
    assert {(row[0], row[1]) for row in rows if row[4] == "v3"} == {
        (op, dtype) for op in ("max_pool2d", "max_pool2d_input")
        for dtype in ("float16", "bfloat16", "float32", "float64")}


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
