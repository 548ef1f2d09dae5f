"""gpuconv.bench without a GPU: the no-GPU exit, the layer lists, the figures, result paths,
and the JSON -> README table / chart code on a synthetic results file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gpuconv import bench
from gpuconv.geometry import conv2d_geometry, pool2d_geometry
from gpuconv.runtime import cuda_available


def test_without_a_gpu_it_says_so_and_exits_0(capsys):
    if cuda_available():
        pytest.skip("a CUDA device is visible")
    assert bench.main(["--quick"]) == 0
    assert "needs a CUDA GPU" in capsys.readouterr().out


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        bench.main(["--ops", "conv3d"])
    with pytest.raises(SystemExit):
        bench.main(["--dtype", "int8"])


def test_layer_lists():
    layers = bench.load_layers()
    assert len(layers.RESNET50) == 23 and len(layers.VGG16) == 9
    assert len(layers.MOBILENET_V1_DEPTHWISE) == 9
    assert len({(l.C, l.H, l.K, l.R, l.stride) for l in layers.RESNET50}) == 23  # distinct
    assert all(l.groups == l.C == l.K for l in layers.MOBILENET_V1_DEPTHWISE)
    assert layers.BATCHES == (1, 32)
    pool = layers.POOL_LAYERS[0]
    assert (pool.C, pool.H, pool.W, pool.kernel, pool.stride, pool.padding) == (64, 112, 112, 3, 2, 1)
    all_cases = bench.cases(layers, quick=False, batches=None, ops=bench.CONV_OPS + bench.POOL_OPS)
    # 6 conv ops (fprop, dgrad, wgrad, on NCHW and on channels-last arrays), 2 pool ops
    assert len(all_cases) == (23 + 9 + 9) * 2 * 6 + 2 * 2
    # every layer's geometry is valid and its output size the network's
    g = next(g for l, n, op, g in all_cases if l.name.startswith("conv1"))
    assert (g.P, g.Q) == (112, 112)
    g = next(g for l, n, op, g in all_cases if l.name.startswith("stem"))
    assert (g.N, g.P, g.Q) == (1, 56, 56)
    quick = bench.cases(layers, quick=True, batches=None, ops=("fprop", "pool_fwd"))
    assert [n for _, n, _, _ in quick] == [32] * 5


def test_figures():
    g = conv2d_geometry((32, 64, 56, 56), (64, 64, 3, 3), padding=1)
    assert bench.conv_flops(g) == 2 * 32 * 64 * 56 * 56 * 64 * 9
    p = pool2d_geometry((32, 64, 112, 112), 3, 2, 1)
    x, y = 32 * 64 * 112 * 112, 32 * 64 * 56 * 56
    assert bench.pool_bytes(p, "pool_fwd", 4) == 4 * x + 12 * y
    assert bench.pool_bytes(p, "pool_bwd", 2) == 10 * y + 2 * x


def test_peaks_computed_and_from_the_datasheet():
    h100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0], "sm_count": 132,
            "clock_khz": 1980000, "memory_clock_khz": 2619000, "memory_bus_bits": 5120}
    peak = bench.peaks(h100, "float32")
    assert peak["flops"] == pytest.approx(132 * 128 * 2 * 1.98e9)  # ~66.9 TFLOP/s
    assert peak["bytes"] == pytest.approx(3.352e12, rel=1e-3)
    assert "computed" in peak["flops_source"]
    assert bench.peaks(h100, "float64")["flops"] == pytest.approx(132 * 64 * 2 * 1.98e9)
    unknown_clock = {"name": "NVIDIA H200", "compute_capability": [9, 0], "sm_count": 132}
    peak = bench.peaks(unknown_clock, "float32")
    assert peak["flops"] == 67e12 and "datasheet" in peak["flops_source"]
    assert peak["bytes"] == 4.8e12
    assert bench.peaks({"name": "Mystery"}, "float32") == {}


def test_tensor_core_results_are_fractions_of_the_tensor_peak():
    """A v3 (tensor-core) fp16/bf16 result is measured against the dense FP16/BF16 tensor
    peak, a v2 result of the same dtype against the FP32 lanes' peak."""
    h100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0], "sm_count": 132,
            "clock_khz": 1980000}
    for dtype in ("float16", "bfloat16"):
        peak = bench.peaks(h100, dtype)
        assert peak["tensor_flops"] == 989e12 and "tensor" in peak["tensor_flops_source"]
    assert "tensor_flops" not in bench.peaks(h100, "float32")
    peak = bench.peaks(h100, "float16")
    flops = 2 * 32 * 64 * 56 * 56 * 64 * 9
    v3 = bench.add_ratios({"op": "fprop", "gpuconv_ms": 1.0, "gpuconv_version": "v3",
                           "flops": flops}, peak)
    v2 = bench.add_ratios({"op": "fprop", "gpuconv_ms": 1.0, "gpuconv_version": "v2",
                           "flops": flops}, peak)
    v4 = bench.add_ratios({"op": "fprop_nhwc", "gpuconv_ms": 1.0, "gpuconv_version": "v4",
                           "flops": flops}, peak)
    assert v3["fraction_of_peak"] == pytest.approx(flops / 1e-3 / 989e12)
    assert v4["fraction_of_peak"] == v3["fraction_of_peak"]  # NHWC v4: tensor cores too
    assert v2["fraction_of_peak"] == pytest.approx(flops / 1e-3 / peak["flops"])


def test_result_path(tmp_path):
    p = bench.result_path(None, "NVIDIA H100 80GB HBM3", "2026-11-02")
    assert p.name == "nvidia-h100-80gb-hbm3-2026-11-02.json" and p.parent.name == "results"
    assert bench.result_path(str(tmp_path), "X", "d") == tmp_path / "x-d.json"
    assert bench.result_path(str(tmp_path / "r.json"), "X", "d") == tmp_path / "r.json"


def synthetic(tmp_path):
    conv = {"network": "resnet50", "layer": "layer1 3x3/1 64->64 @56", "batch": 32,
            "op": "fprop", "gpuconv_ms": 2.0, "gpuconv_version": "v2",
            "gpuconv_ms_by_version": {"v2": 2.0}, "cudnn_ms": 1.0, "cupy_im2col_ms": 4.0,
            "flops": 2 * 32 * 64 * 56 * 56 * 64 * 9}
    pool = {"network": "resnet50", "layer": "stem max-pool 3x3/2 64 @112", "batch": 32,
            "op": "pool_fwd", "gpuconv_ms": 0.1, "gpuconv_version": "v2", "cudnn_ms": 0.12,
            "bytes": 10**8}
    peak = {"flops": 50e12, "flops_source": "synthetic", "bytes": 3e12, "bytes_source": "synthetic"}
    results = [bench.add_ratios(conv, peak), bench.add_ratios(pool, peak)]
    data = {"format": 1, "date": "2026-11-02", "dtype": "float32",
            "device": {"name": "Synthetic GPU", "sm_count": 100, "compute_capability": [9, 0]},
            "versions": {"driver": 13000, "cuda_runtime": 13000, "cupy": "14.0", "torch": "2.13",
                         "cudnn": 91000},
            "peak": peak, "settings": {"runs": 50}, "results": results}
    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps(data))
    return path, results


def test_ratios(tmp_path):
    _, (conv, pool) = synthetic(tmp_path)
    assert conv["cudnn_over_gpuconv"] == 0.5 and conv["cupy_im2col_over_gpuconv"] == 2.0
    assert conv["tflops"] == pytest.approx(conv["flops"] / 2e-3 / 1e12)
    assert conv["fraction_of_peak"] == pytest.approx(conv["tflops"] / 50)
    assert pool["gbps"] == pytest.approx(1000.0) and pool["fraction_of_peak"] == pytest.approx(1 / 3)


def test_readme_table(tmp_path, capsys):
    path, _ = synthetic(tmp_path)
    table = bench.readme_table(path)
    lines = table.splitlines()
    assert "Synthetic GPU (100 SMs)" in lines[0] and "TF32 off" in lines[0]
    assert lines[2].startswith("| network | layer | N | op | gpuconv ms (version) | cuDNN ms")
    assert lines[4].startswith("| resnet50 | layer1 3x3/1 64->64 @56 | 32 | fprop | 2.000 (v2) | "
                               "1.000 | 0.50 | 4.000 |")
    assert lines[5].endswith("| 1000 GB/s | 33 |") and "| – |" in lines[5]  # no im2col for pools
    assert bench.main(["--readme", str(path)]) == 0
    assert capsys.readouterr().out.strip() == table


def test_chart(tmp_path):
    pytest.importorskip("matplotlib")
    path, _ = synthetic(tmp_path)
    png = bench.write_chart(path)
    assert png == path.with_suffix(".png") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gpu_session_script_runs_its_stages_into_one_archive(tmp_path):
    """benchmarks/gpu_session.sh (the GPU side in device-sized stages): every stage runs, a
    failed or unknown one makes the exit status 1, and the logs come back as one archive."""
    if cuda_available():
        pytest.skip("a CUDA device is visible: the stage would benchmark for real")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    run = subprocess.run(["bash", "benchmarks/gpu_session.sh", "quick-float32", "no-such-stage"],
                         cwd=root, env=env, capture_output=True, text=True)
    assert run.returncode == 1 and "unknown stage no-such-stage" in run.stderr
    with tarfile.open(tmp_path / "gpu-session.tgz") as tar:
        log = tar.extractfile("./quick-float32.log").read().decode()
    assert "== quick-float32: exit 0" in log  # without a GPU the bench says so and exits 0
    run = subprocess.run(["bash", "benchmarks/gpu_session.sh", "quick-float32"], cwd=root,
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
