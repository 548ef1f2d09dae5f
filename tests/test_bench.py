"""gpuconv.bench without a GPU: the no-GPU exit, the layer lists, the figures, result paths,
and the JSON -> README table / chart code on a synthetic results file."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import numpy as np

import pytest

from gpuconv import bench, kernels, reference
from gpuconv.dtypes import bfloat16
from gpuconv.geometry import conv2d_geometry, pool2d_geometry
from gpuconv.runtime import cuda_available, get_runtime

ROOT = Path(__file__).resolve().parent.parent


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
    p = bench.result_path(None, "NVIDIA H100 80GB HBM3", "2026-11-02", "float16")
    assert p.name == "nvidia-h100-80gb-hbm3-float16-2026-11-02.json"
    assert p.parent.name == "results"
    # one file per dtype and kind of run: a session's three dtypes and a quick look all stay
    assert bench.result_path(str(tmp_path), "X", "d") == tmp_path / "x-float32-d.json"
    assert bench.result_path(str(tmp_path), "X", "d", "bfloat16", quick=True) == (
        tmp_path / "x-bfloat16-d-quick.json")
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
    copy = {"bytes_per_s": 2.5e12, "ms": 0.4, "buffer_bytes": 2**29, "method": "synthetic copy"}
    results = [bench.add_ratios(conv, peak, copy), bench.add_ratios(pool, peak, copy)]
    data = {"format": 1, "date": "2026-11-02", "dtype": "float32", "copy_bandwidth": copy,
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
    assert pool["fraction_of_copy_bandwidth"] == pytest.approx(0.4)
    assert "fraction_of_copy_bandwidth" not in conv


def test_summary_against_the_goals():
    """Conv ops: cuDNN / gpuconv as a geometric mean over a network's layers at one batch
    size, against 1.0 (float32) or 0.8 (16-bit); max-pool: the lowest fraction of the
    measured copy bandwidth, against 0.8. No figure or no goal: met is None."""
    def conv(layer, ratio, op="fprop", batch=32, network="resnet50"):
        return {"network": network, "layer": layer, "batch": batch, "op": op,
                "cudnn_over_gpuconv": ratio}

    results = [conv("a", 2.0), conv("b", 1.0), conv("c", 1.0),      # geomean 1.26: met
               conv("a", 0.5, op="dgrad"), conv("b", 1.0, op="dgrad"),  # 0.71: not met
               conv("a", 4.0, batch=1), conv("b", None, batch=1),  # a missing cuDNN time
               {"network": "resnet50", "layer": "pool", "batch": 32, "op": "pool_fwd",
                "fraction_of_copy_bandwidth": 0.85},
               {"network": "resnet50", "layer": "pool", "batch": 1, "op": "pool_fwd",
                "fraction_of_copy_bandwidth": 0.5}]
    rows = {(r["batch"], r["op"]): r for r in bench.summarize(results, "float32")}
    assert rows[(32, "fprop")]["value"] == pytest.approx(2 ** (1 / 3)) and rows[(32, "fprop")]["met"]
    assert rows[(32, "fprop")]["cases"] == 3 and "geometric" in rows[(32, "fprop")]["measure"]
    assert rows[(32, "dgrad")]["value"] == pytest.approx(0.5 ** 0.5)
    assert rows[(32, "dgrad")]["met"] is False
    assert rows[(1, "fprop")]["value"] is None and rows[(1, "fprop")]["met"] is None
    assert rows[(32, "pool_fwd")]["met"] is True and rows[(1, "pool_fwd")]["met"] is False
    assert rows[(32, "pool_fwd")]["goal"] == bench.POOL_GOAL == 0.8
    half = {(r["batch"], r["op"]): r for r in bench.summarize(results, "float16")}
    assert half[(32, "dgrad")]["goal"] == 0.8 and half[(32, "dgrad")]["met"] is False
    assert all(r["goal"] is None and r["met"] is None
               for r in bench.summarize(results[:2], "float64"))


def test_readme_table(tmp_path, capsys):
    path, _ = synthetic(tmp_path)
    table = bench.readme_table(path)
    lines = table.splitlines()
    assert "Synthetic GPU (100 SMs)" in lines[0] and "TF32 off" in lines[0]
    assert "Measured copy bandwidth: 2500 GB/s (synthetic copy)" in lines[0]
    # the summary against the goals, then every case
    assert lines[2].startswith("| network | N | op | cases | measure | value | goal | met |")
    assert lines[4] == ("| resnet50 | 32 | fprop | 1 | cuDNN / gpuconv, geometric mean | 0.50 | "
                        "1.0 | **no** |")
    assert lines[5].startswith("| resnet50 | 32 | pool_fwd | 1 | lowest fraction of the measured")
    assert lines[5].endswith("| 0.40 | 0.8 | **no** |")
    assert lines[7].startswith("| network | layer | N | op | gpuconv ms (version) | cuDNN ms")
    assert lines[9].startswith("| resnet50 | layer1 3x3/1 64->64 @56 | 32 | fprop | 2.000 (v2) | "
                               "1.000 | 0.50 | 4.000 |")
    assert lines[9].endswith("| – |")  # no copy-bandwidth fraction for a convolution
    assert lines[10].endswith("| 1000 GB/s | 33 | 40 |") and "| – |" in lines[10]  # no im2col
    assert bench.main(["--readme", str(path)]) == 0
    assert capsys.readouterr().out.strip() == table


def test_chart(tmp_path):
    pytest.importorskip("matplotlib")
    path, _ = synthetic(tmp_path)
    png = bench.write_chart(path)
    assert png == path.with_suffix(".png") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_gets_the_newest_gpu_result_per_dtype(tmp_path):
    """benchmarks/update_readme.py fills the README's gpu marker from the newest gpuconv bench
    result of each dtype; other JSON files (pytest-benchmark's, broken ones) are not results;
    none at all: a line saying so."""
    path, _ = synthetic(tmp_path)
    old = json.loads(path.read_text())
    (tmp_path / "synthetic.json").unlink()
    (tmp_path / "gpu-2026-11-02.json").write_text(json.dumps(old))
    (tmp_path / "gpu-2026-11-05.json").write_text(json.dumps({**old, "date": "2026-11-05"}))
    (tmp_path / "gpu-half.json").write_text(json.dumps({**old, "dtype": "float16"}))
    (tmp_path / "gpu-quick.json").write_text(json.dumps(  # a --quick look: not the table
        {**old, "date": "2026-11-09", "settings": {"runs": 50, "quick": True}}))
    (tmp_path / "other-gpu.json").write_text(json.dumps(
        {**old, "device": {"name": "Other GPU", "sm_count": 8}}))
    (tmp_path / "cpu_bench.json").write_text(json.dumps({"benchmarks": []}))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "partial.json").write_text(json.dumps({k: old[k] for k in (
        "device", "results", "dtype", "date")}))  # no versions, no settings
    text = bench.gpu_results_markdown(tmp_path)
    headings = [line for line in text.splitlines() if line.startswith("####")]
    assert headings == ["#### Other GPU, float32 (`other-gpu.json`)",
                        "#### Synthetic GPU, float16 (`gpu-half.json`)",
                        "#### Synthetic GPU, float32 (`gpu-2026-11-05.json`)"]
    assert "Measured 2026-11-05" in text and "2026-11-09" not in text
    assert text.count("| network | N | op | cases |") == 3
    spec = importlib.util.spec_from_file_location("update_readme",
                                                  ROOT / "benchmarks" / "update_readme.py")
    update = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update)
    readme = "a\n<!-- results:gpu -->\nold\n<!-- /results:gpu -->\nb\n"
    assert update.render(readme, tmp_path) == (
        "a\n<!-- results:gpu -->\n" + text + "\n<!-- /results:gpu -->\nb\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "**not measured**" in update.render(readme, empty)


# ----------------------------------------------------------------------------------------
# the GPU code paths of gpuconv bench, on a NumPy stand-in for CuPy and the CPU runtime: every
# line of run_case, the copy-bandwidth probe and main runs; only the clock is fake (1 ms).


class _Event:
    def record(self):
        pass

    def synchronize(self):
        pass


@pytest.fixture
def numpy_cupy(monkeypatch):
    """sys.modules['cupy'] replaced by NumPy with CUDA events that always measure 1 ms."""
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "numpy-stand-in"
    for name in ("empty", "empty_like", "ones", "zeros", "copyto", "pad", "matmul",
                 "ascontiguousarray"):
        setattr(cupy, name, getattr(np, name))
    pool = types.SimpleNamespace(free_all_blocks=lambda: None)
    cupy.get_default_memory_pool = lambda: pool
    cupy.random = types.SimpleNamespace(default_rng=np.random.default_rng)
    device = types.SimpleNamespace(id=0, compute_capability="90", synchronize=lambda: None)
    runtime = types.SimpleNamespace(
        getDeviceProperties=lambda i: {"name": b"Stand-in GPU", "multiProcessorCount": 4,
                                       "totalGlobalMem": 2**34},
        deviceGetAttribute=lambda attr, i: 1000, driverGetVersion=lambda: 13000,
        runtimeGetVersion=lambda: 13000)
    cupy.cuda = types.SimpleNamespace(Event=_Event, get_elapsed_time=lambda a, b: 1.0,
                                      Device=lambda *a: device, runtime=runtime)
    lib, tricks = types.ModuleType("cupy.lib"), types.ModuleType("cupy.lib.stride_tricks")
    tricks.as_strided = np.lib.stride_tricks.as_strided
    lib.stride_tricks = tricks
    cupy.lib = lib
    for name, module in (("cupy", cupy), ("cupy.lib", lib), ("cupy.lib.stride_tricks", tricks)):
        monkeypatch.setitem(sys.modules, name, module)
    return cupy


TINY = conv2d_geometry((2, 16, 9, 9), (24, 8, 3, 3), padding=1, groups=2)
TINY_POOL = pool2d_geometry((2, 8, 9, 9), 3, 2, 1)
TINY_LAYER = types.SimpleNamespace(network="tiny", name="3x3 16->24 g2")


def bench_args(**kw):
    return types.SimpleNamespace(**{"no_flush": False, "all_versions": True, "runs": 2,
                                    "warmup": 1, "im2col_limit_gb": 4.0, **kw})


@pytest.fixture
def cpu_torch(monkeypatch):
    """PyTorch (the CPU build) as run_case's cuDNN baseline: its ops run on the CPU on the
    stand-in's NumPy arrays (through DLPack, as on CuPy's), with stand-in CUDA events."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(bench, "_torch_events", lambda: (_Event(), _Event(), lambda a, b: 1.0))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    calls = []
    for name in ("conv2d", "max_pool2d"):
        real = getattr(torch.nn.functional, name)
        monkeypatch.setattr(torch.nn.functional, name,
                            lambda *a, _real=real, _name=name, **k: calls.append(_name)
                            or _real(*a, **k))
    return torch, calls


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float16), bfloat16],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("op", bench.CONV_OPS + bench.POOL_OPS)
def test_run_case_runs_every_version_of_every_op(numpy_cupy, cpu_torch, op, dtype):
    torch, calls = cpu_torch
    g = TINY_POOL if op in bench.POOL_OPS else TINY
    record = bench.run_case(TINY_LAYER, g.N, op, g, dtype, get_runtime("emulator"),
                            bench_args(), torch)
    kop = bench.NHWC_OPS.get(op, op)
    expected = [v for v in kernels.variants(kop) if kernels.supports(kop, v, g)
                and kernels.dtype_unsupported_reason(kop, v, dtype) is None]
    assert list(record["gpuconv_ms_by_version"]) == expected and len(expected) >= 3
    assert record["gpuconv_version"] in expected and record["gpuconv_ms"] == 1.0
    assert ("flops" in record) == (op in bench.CONV_OPS)
    assert ("cupy_im2col_ms" in record) == (op in ("fprop", "wgrad"))
    assert record["cudnn_ms"] == 1.0  # PyTorch's op ran (here on the CPU)
    assert calls == (["conv2d"] * 3 if kop == "fprop" else ["max_pool2d"] * 3
                     if op == "pool_fwd" else [])  # warm-up + runs
    record = bench.add_ratios(record, {"flops": 1e12, "bytes": 1e12},
                              {"bytes_per_s": 1e12})
    assert record.get("tflops", record.get("gbps")) > 0


@pytest.mark.parametrize("op", ["fprop", "wgrad"])
def test_the_im2col_baseline_computes_the_convolution(op):
    rng = np.random.default_rng(5)
    g = conv2d_geometry((2, 6, 9, 8), (4, 3, 3, 2), stride=(2, 1), padding=(1, 2),
                        dilation=(1, 2), groups=2)
    x, w, dy = (rng.standard_normal(s) for s in (g.x_shape, g.w_shape, g.y_shape))
    out = bench.im2col_baseline(op, g, x, w, dy, np, np.lib.stride_tricks.as_strided)()
    if op == "fprop":
        np.testing.assert_allclose(out.reshape(g.y_shape), reference.conv2d(x, w, None, g),
                                   rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(out.reshape(g.w_shape), reference.conv2d_weight(x, dy, g),
                                   rtol=1e-10, atol=1e-12)


def test_copy_bandwidth_counts_the_bytes_read_and_written(numpy_cupy, monkeypatch):
    monkeypatch.setattr(bench, "COPY_WARMUP", 2)
    copy = bench.measure_copy_bandwidth(3, 1, nbytes=2**20)
    assert copy["bytes_per_s"] == 2 * 2**20 / 1e-3 and copy["buffer_bytes"] == 2**20
    assert "1 MiB" in copy["method"]


def test_main_writes_the_result_with_its_summary(numpy_cupy, monkeypatch, tmp_path, capsys):
    """gpuconv bench end to end on the stand-in: JSON with the device, the measured copy
    bandwidth, the summary and every case, and the README table of it."""
    import gpuconv.runtime as runtime

    layers = types.SimpleNamespace(
        CONV_LAYERS=[types.SimpleNamespace(network="tiny", name="3x3", C=16, H=9, W=9, K=24,
                                           R=3, S=3, stride=1, padding=1, groups=2)],
        POOL_LAYERS=[types.SimpleNamespace(network="tiny", name="pool", C=8, H=9, W=9,
                                           kernel=3, stride=2, padding=1)],
        BATCHES=(2,), QUICK_CONV=[], QUICK_POOL=[], QUICK_BATCHES=(2,))
    monkeypatch.setattr(bench, "load_layers", lambda: layers)
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    monkeypatch.setattr(runtime, "get_runtime", lambda name: get_runtime("emulator"))
    monkeypatch.setattr(bench, "COPY_BUFFER_BYTES", 2**20)  # host memory here
    monkeypatch.setattr(bench, "COPY_WARMUP", 2)
    assert bench.main(["--out", str(tmp_path), "--runs", "2", "--warmup", "1", "--no-chart",
                       "--ops", "fprop,wgrad_nhwc,pool_bwd"]) == 0
    out = next(tmp_path.glob("stand-in-gpu-float32-*.json"))
    data = json.loads(out.read_text())
    assert data["device"]["name"] == "Stand-in GPU" and data["device"]["sm_count"] == 4
    assert data["copy_bandwidth"]["bytes_per_s"] == 2 * bench.COPY_BUFFER_BYTES / 1e-3
    assert [r["op"] for r in data["results"]] == ["fprop", "wgrad_nhwc", "pool_bwd"]
    assert [(r["op"], r["met"]) for r in data["summary"]] == [
        ("fprop", None), ("wgrad_nhwc", None), ("pool_bwd", False)]  # no cuDNN here
    assert "copy bandwidth:" in capsys.readouterr().out
    assert bench.readme_table(out).count("\n| tiny |") == 6
    assert bench.gpu_results_markdown(tmp_path).startswith("#### Stand-in GPU, float32")
    # no max-pool asked for: no copy-bandwidth probe
    assert bench.main(["--out", str(tmp_path / "conv.json"), "--runs", "2", "--warmup", "1",
                       "--no-chart", "--ops", "dgrad", "--dtype", "float16"]) == 0
    data = json.loads((tmp_path / "conv.json").read_text())
    assert data["copy_bandwidth"] is None and "copy bandwidth:" not in capsys.readouterr().out


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


def test_all_versions_leaves_out_a_version_that_failed_its_self_check(numpy_cupy, monkeypatch):
    monkeypatch.setattr(kernels, "SELF_CHECK_RUNTIMES", ("emulator",))
    monkeypatch.setattr(kernels, "run_self_check",
                        lambda rt, op, v, dtype: "max error 7" if v == "v2:64x32" else None)
    kernels.clear_self_checks()
    try:
        with pytest.warns(RuntimeWarning, match="fprop v2:64x32"):
            record = bench.run_case(TINY_LAYER, TINY.N, "fprop", TINY, np.dtype(np.float32),
                                    get_runtime("emulator"), bench_args(), None)
    finally:
        kernels.clear_self_checks()
    assert record["self_check_failures"] == {"v2:64x32": "max error 7"}
    assert "v2:64x32" not in record["gpuconv_ms_by_version"] and "v2" in record[
        "gpuconv_ms_by_version"]
