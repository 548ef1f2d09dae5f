"""`gpuconv bench`: gpuconv's kernels against cuDNN (through PyTorch) and CuPy im2col + matmul
on real network layers, on a GPU.

    gpuconv bench [--quick] [--dtype float32] [--out PATH] [--ops fprop,dgrad,wgrad]
                  [--batches 1,32] [--runs 50] [--all-versions] [--readme JSON]

Per case (layer x batch x op): gpuconv's median milliseconds (CUDA events around each run,
after warm-up, L2 flushed before every run), cuDNN's through PyTorch when torch with CUDA is
importable (TF32 off, so fp32 is fp32; ``cudnn.benchmark`` on, so cuDNN picks its fastest
algorithm, deterministic or not), CuPy im2col + matmul (cuBLAS; fprop and wgrad, skipped where
the im2col buffer would pass ``--im2col-limit-gb``), the ratios, TFLOP/s (conv) or GB/s
(max-pool) and the fraction of the device's peak; max-pool also as a fraction of the
device's copy bandwidth, measured in the same run (a device-to-device copy of a buffer far
larger than L2). The layer lists are ``benchmarks/layers.py``.

A summary per network, batch size and op holds the issue's goals: cuDNN time / gpuconv time
as a geometric mean over the layers (at least 1.0 for float32, 0.8 for float16 and
bfloat16), and every max-pool case at 80% or more of the measured copy bandwidth.

Results go to JSON (device, SM count, clocks, driver, CUDA, CuPy, PyTorch versions, date,
settings, measured copy bandwidth, summary, per-case results) at
``benchmarks/results/<device>-<dtype>-<date>.json`` (``--out`` names another file or
folder) and, when matplotlib is installed, a PNG chart next to it; a whole run (not
``--quick``) written to the default folder of a checkout also regenerates the README's GPU
results (``benchmarks/update_readme.py``).
``readme_table(json_path)`` (``--readme JSON``) renders a Markdown table from such a file;
tables are never typed by hand.

Without a GPU, ``gpuconv bench`` says so and exits 0 (``--readme`` works anywhere).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import re
import statistics
import sys
from pathlib import Path

import numpy as np

from . import kernels
from .dtypes import FLOAT_DTYPES, bfloat16
from .geometry import conv2d_geometry, pool2d_geometry

# fprop_nhwc / dgrad_nhwc / wgrad_nhwc: on channels-last arrays on both sides (gpuconv's
# conv2d_*_nhwc; cuDNN on torch.channels_last tensors): NHWC kernels run them as they are,
# others pay conversions.
CONV_OPS = ("fprop", "dgrad", "wgrad", "fprop_nhwc", "dgrad_nhwc", "wgrad_nhwc")
NHWC_OPS = {"fprop_nhwc": "fprop", "dgrad_nhwc": "dgrad", "wgrad_nhwc": "wgrad"}
POOL_OPS = ("pool_fwd", "pool_bwd")
DTYPES = {d.name: d for d in FLOAT_DTYPES}  # float16, bfloat16, float32, float64

# FP32 / FP64 lanes per SM ("CUDA cores") by compute capability (CUDA C Programming Guide,
# "Arithmetic Instructions" throughput table). fp16 kernels here compute in fp32: FP32 peak.
FP32_LANES = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
              (9, 0): 128, (10, 0): 128, (10, 3): 128, (12, 0): 128}
FP64_LANES = {(7, 0): 32, (8, 0): 32, (9, 0): 64, (10, 0): 64}
# Datasheet peaks when the clock cannot be read: (substring of the device name, FP32 TFLOP/s,
# FP64 TFLOP/s, HBM TB/s), from NVIDIA's H100 / H200 / A100 datasheets.
DATASHEET = [("H200", 67.0, 34.0, 4.8), ("H100 PCIe", 51.0, 26.0, 2.0),
             ("H100", 67.0, 34.0, 3.35), ("A100", 19.5, 9.7, 2.0)]
# Dense (no sparsity) FP16/BF16 tensor-core TFLOP/s with FP32 accumulation, same datasheets:
# the peak a tensor-core (v3) result is a fraction of.
TENSOR_DATASHEET = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0)]
# The fast-kernels goals (issue 5): cuDNN time / gpuconv time, geometric mean over a network's
# layers at one batch size, per conv op and dtype; every max-pool case at this fraction of the
# measured copy bandwidth or more.
SPEED_GOALS = {"float32": 1.0, "float16": 0.8, "bfloat16": 0.8}
POOL_GOAL = 0.8
COPY_BUFFER_BYTES = 512 * 2**20  # the copy-bandwidth probe's buffer: far larger than any L2
COPY_WARMUP = 200                # its warm-up copies


# ----------------------------------------------------------------------------------------
# layer lists


def load_layers():
    """benchmarks/layers.py as a module: from a checkout (next to the package) or from inside
    an installed package (``gpuconv/benchmarks/layers.py`` when the wheel carries it)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "benchmarks" / "layers.py", here.parent / "benchmarks" / "layers.py"):
        if candidate.is_file():
            spec = importlib.util.spec_from_file_location("gpuconv_bench_layers", candidate)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError("benchmarks/layers.py not found next to the gpuconv package: "
                            "run `gpuconv bench` from a source checkout")


def cases(layers, quick: bool, batches, ops):
    """(layer, batch, op, geometry) of every case to run."""
    conv = layers.QUICK_CONV if quick else layers.CONV_LAYERS
    batches = layers.QUICK_BATCHES if quick and batches is None else (batches or layers.BATCHES)
    out = []
    for layer in conv:
        for n in batches:
            g = conv2d_geometry((n, layer.C, layer.H, layer.W),
                                (layer.K, layer.C // layer.groups, layer.R, layer.S),
                                stride=layer.stride, padding=layer.padding, groups=layer.groups)
            out += [(layer, n, op, g) for op in ops if op in CONV_OPS]
    for layer in layers.POOL_LAYERS:
        pool_batches = (32,) if quick else batches
        for n in pool_batches:
            g = pool2d_geometry((n, layer.C, layer.H, layer.W), layer.kernel, layer.stride,
                                layer.padding)
            out += [(layer, n, op, g) for op in ops if op in POOL_OPS]
    return out


# ----------------------------------------------------------------------------------------
# figures


def conv_flops(g) -> int:
    return g.flops


def pool_bytes(g, op: str, itemsize: int) -> int:
    """Compulsory DRAM traffic: fwd reads x, writes y and int64 idx; bwd reads dy and idx and
    writes dx."""
    x, y = g.N * g.C * g.H * g.W, g.N * g.C * g.P * g.Q
    if op == "pool_fwd":
        return x * itemsize + y * (itemsize + 8)
    return y * (itemsize + 8) + x * itemsize


def peaks(info: dict, dtype: str) -> dict:
    """Peak FLOP/s and bytes/s of the device, and where each figure came from."""
    out = {}
    cc = tuple(info.get("compute_capability", (0, 0)))
    lanes = (FP64_LANES.get(cc, 2) if dtype == "float64" else FP32_LANES.get(cc))
    clock_khz, sms = info.get("clock_khz"), info.get("sm_count")
    if lanes and clock_khz and sms:
        out["flops"] = sms * lanes * 2 * clock_khz * 1e3
        out["flops_source"] = (f"computed: {sms} SMs x {lanes} {'FP64' if dtype == 'float64' else 'FP32'}"
                               f" lanes x 2 x {clock_khz / 1e3:.0f} MHz")
    mem_khz, bus = info.get("memory_clock_khz"), info.get("memory_bus_bits")
    if mem_khz and bus:
        out["bytes"] = 2 * mem_khz * 1e3 * bus / 8
        out["bytes_source"] = f"computed: 2 x {mem_khz / 1e3:.0f} MHz x {bus}-bit bus"
    for key, fp32, fp64, tbs in DATASHEET:
        if key in info.get("name", ""):
            if "flops" not in out:
                out["flops"] = (fp64 if dtype == "float64" else fp32) * 1e12
                out["flops_source"] = f"NVIDIA datasheet ({key})"
            if "bytes" not in out:
                out["bytes"] = tbs * 1e12
                out["bytes_source"] = f"NVIDIA datasheet ({key})"
            break
    if dtype in ("float16", "bfloat16"):
        for key, tflops in TENSOR_DATASHEET:
            if key in info.get("name", ""):
                out["tensor_flops"] = tflops * 1e12
                out["tensor_flops_source"] = f"NVIDIA datasheet ({key}), dense FP16/BF16 tensor"
                break
    return out


def result_path(out: str | None, device: str, date: str, dtype: str = "float32",
                quick: bool = False) -> Path:
    """benchmarks/results/<device>-<dtype>-<date>[-quick].json (one file per device, dtype,
    day and kind of run, so the float16, bfloat16 and float32 runs of one session all stay),
    or --out (a .json file, or a folder for that name)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower() or "gpu"
    name = f"{slug}-{dtype}-{date}{'-quick' if quick else ''}.json"
    if out is None:
        root = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
        if not root.parent.is_dir():
            root = Path.cwd()
        return root / name
    path = Path(out)
    return path if path.suffix == ".json" else path / name


# ----------------------------------------------------------------------------------------
# timing (GPU)


def _median_ms(fn, runs: int, warmup: int, flush=None, events=None) -> float:
    """Median of ``runs`` timings of ``fn()`` by CUDA events; ``flush()`` runs (untimed)
    before each; ``events`` makes (start, stop) pairs with record() / elapsed in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if flush is not None:
            flush()
        start, stop, elapsed = events()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(elapsed(start, stop))
    return statistics.median(times)


def _cupy_events():
    import cupy

    return cupy.cuda.Event(), cupy.cuda.Event(), cupy.cuda.get_elapsed_time


def _torch_events():
    import torch

    return (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True),
            lambda a, b: a.elapsed_time(b))


def measure_copy_bandwidth(runs: int, warmup: int, nbytes: int | None = None) -> dict:
    """The device's copy bandwidth: median time of a device-to-device copy of ``nbytes``
    (default COPY_BUFFER_BYTES; read once, written once: 2 * nbytes moved), by CUDA events,
    after at least COPY_WARMUP copies (a few hundred ms on any current GPU: clocks up)."""
    import cupy

    nbytes = COPY_BUFFER_BYTES if nbytes is None else nbytes

    def time_copies() -> float:
        src = cupy.ones(nbytes // 4, np.float32)
        dst = cupy.empty_like(src)
        return _median_ms(lambda: cupy.copyto(dst, src), runs, max(warmup, COPY_WARMUP), None,
                          _cupy_events)

    ms = time_copies()
    cupy.get_default_memory_pool().free_all_blocks()  # the buffers back before the cases
    return {"bytes_per_s": 2 * nbytes / (ms * 1e-3), "ms": ms, "buffer_bytes": nbytes,
            "method": f"cupy.copyto of {nbytes // 2**20} MiB float32, median of {runs} runs, "
                      "bytes read + written"}


def device_info() -> dict:
    import cupy

    dev = cupy.cuda.Device()
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])

    def attr(number):  # cudaDeviceGetAttribute: works where cudaDeviceProp dropped a field
        try:
            return int(rt.deviceGetAttribute(number, dev.id))
        except Exception:
            return None

    info = {"name": name, "compute_capability": [int(dev.compute_capability[:-1]),
                                                 int(dev.compute_capability[-1])],
            "sm_count": int(props["multiProcessorCount"]),
            "clock_khz": attr(13),           # cudaDevAttrClockRate
            "memory_clock_khz": attr(36),    # cudaDevAttrMemoryClockRate
            "memory_bus_bits": attr(37),     # cudaDevAttrGlobalMemoryBusWidth
            "memory_gb": round(props["totalGlobalMem"] / 2**30, 1)}
    versions = {"driver": rt.driverGetVersion(), "cuda_runtime": rt.runtimeGetVersion(),
                "cupy": cupy.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    try:
        import torch

        versions["torch"] = torch.__version__
        versions["cudnn"] = torch.backends.cudnn.version()
    except Exception:
        versions["torch"] = None
    from . import __version__ as gpuconv_version

    versions["gpuconv"] = gpuconv_version
    return {"device": info, "versions": versions}


def _torch():
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        return torch
    except Exception:
        return None


def run_case(layer, n, op, g, dtype, rt, args, torch) -> dict:
    """Time one case; returns its JSON record."""
    import cupy

    rng = cupy.random.default_rng(0)
    rand = lambda shape: rng.standard_normal(shape, dtype=np.float32).astype(dtype)  # noqa: E731
    flush_buf = cupy.empty(64 * 2**20, np.float32)  # 256 MiB > L2 of any current GPU
    flush = (lambda: flush_buf.fill(0)) if not args.no_flush else None
    record = {"network": layer.network, "layer": layer.name, "batch": n, "op": op,
              "geometry": {k: v for k, v in vars(g).items()}}
    ours = {}
    kop, layout = (NHWC_OPS[op], "nhwc") if op in NHWC_OPS else (op, "nchw")
    if op in NHWC_OPS:  # channels-last: (N,C,H,W) / (K,C/G,R,S) views of NHWC / KRSC buffers
        nhwc, nchw = (0, 2, 3, 1), (0, 3, 1, 2)
        x = rand((g.N, g.H, g.W, g.C)).transpose(nchw)
        w = rand((g.K, g.R, g.S, g.C_per_group)).transpose(nchw)
        dy = rand((g.N, g.P, g.Q, g.K)).transpose(nchw)
        b = rand((g.K,))
        if op == "fprop_nhwc":
            out = cupy.empty((g.N, g.P, g.Q, g.K), dtype)
            call = lambda v: kernels.conv2d_fprop_nhwc(  # noqa: E731
                rt, g, x.transpose(nhwc), w.transpose(nhwc), b, out, version=v)
        elif op == "dgrad_nhwc":
            out = cupy.empty((g.N, g.H, g.W, g.C), dtype)
            call = lambda v: kernels.conv2d_dgrad_nhwc(  # noqa: E731
                rt, g, dy.transpose(nhwc), w.transpose(nhwc), out, version=v)
        else:
            out = cupy.empty((g.K, g.R, g.S, g.C_per_group), dtype)
            call = lambda v: kernels.conv2d_wgrad_nhwc(  # noqa: E731
                rt, g, x.transpose(nhwc), dy.transpose(nhwc), out, version=v)
        record["flops"] = conv_flops(g)
    elif op in CONV_OPS:
        x, w, dy = rand(g.x_shape), rand(g.w_shape), rand(g.y_shape)
        b = rand((g.K,))
        out = cupy.empty({"fprop": g.y_shape, "dgrad": g.x_shape, "wgrad": g.w_shape}[op], dtype)
        call = {"fprop": lambda v: kernels.conv2d_fprop(rt, g, x, w, b, out, version=v),
                "dgrad": lambda v: kernels.conv2d_dgrad(rt, g, dy, w, out, version=v),
                "wgrad": lambda v: kernels.conv2d_wgrad(rt, g, x, dy, out, version=v)}[op]
        record["flops"] = conv_flops(g)
    else:
        x = rand(g.x_shape)
        y, idx = cupy.empty(g.y_shape, dtype), cupy.empty(g.y_shape, np.int64)
        kernels.maxpool2d_fwd(rt, g, x, y, idx)
        dy, dx = rand(g.y_shape), cupy.empty(g.x_shape, dtype)
        call = {"pool_fwd": lambda v: kernels.maxpool2d_fwd(rt, g, x, y, idx, version=v),
                "pool_bwd": lambda v: kernels.maxpool2d_bwd(rt, g, dy, idx, dx, version=v)}[op]
        record["bytes"] = pool_bytes(g, op, np.dtype(dtype).itemsize)
    chosen = kernels.select_version(kop, g, dtype, rt, layout=layout)
    record["gpuconv_version"] = chosen
    versions = [v for v in kernels.variants(kop) if kernels.supports(kop, v, g)
                and kernels.dtype_unsupported_reason(kop, v, dtype) is None] \
        if args.all_versions else [chosen]
    # a version that fails its self-check on this device is recorded, not timed
    failed = {v: f for v in versions if (f := kernels.self_check_failure(rt, kop, v, dtype))}
    if failed:
        record["self_check_failures"] = failed
        versions = [v for v in versions if v not in failed]
    for v in versions:
        ours[v] = _median_ms(lambda: call(v), args.runs, args.warmup, flush, _cupy_events)
    record["gpuconv_ms"] = ours[chosen]
    record["gpuconv_ms_by_version"] = ours

    if torch is not None:
        F = torch.nn.functional
        tx = _as_tensor(torch, x)
        if op in CONV_OPS:  # NHWC ops: the channels_last tensors (strides kept), cuDNN's NHWC
            tw, tdy, tb = _as_tensor(torch, w), _as_tensor(torch, dy), _as_tensor(torch, b)
            kw = dict(stride=(g.stride_h, g.stride_w), padding=(g.pad_top, g.pad_left),
                      dilation=(g.dilation_h, g.dilation_w), groups=g.groups)
            fn = {"fprop": lambda: F.conv2d(tx, tw, tb, **kw),
                  "dgrad": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdy, **kw),
                  "wgrad": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tdy, **kw)}[kop]
        else:
            tdy, tidx = _as_tensor(torch, dy), torch.from_dlpack(idx)
            pk = dict(kernel_size=(g.R, g.S), stride=(g.stride_h, g.stride_w),
                      padding=(g.pad_h, g.pad_w))
            fn = {"pool_fwd": lambda: F.max_pool2d(tx, return_indices=True, **pk),
                  "pool_bwd": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                      tdy, tx, list(pk["kernel_size"]), list(pk["stride"]),
                      list(pk["padding"]), [1, 1], False, tidx)}[op]
        cupy.cuda.Device().synchronize()
        record["cudnn_ms"] = _median_ms(fn, args.runs, args.warmup, flush, _torch_events)
        torch.cuda.synchronize()

    if op in ("fprop", "wgrad"):
        record["cupy_im2col_ms"] = _im2col_ms(op, g, x, w, dy, dtype, args, flush)
    return record


def _as_tensor(torch, a):
    """A CuPy array as a torch tensor on the same memory (bfloat16 crosses as its 16 bits)."""
    if a.dtype == bfloat16:
        return torch.from_dlpack(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_dlpack(a)


def im2col_baseline(op: str, g, x, w, dy, xp, as_strided):
    """The im2col + matmul baseline as a function of no arguments, on the array module ``xp``
    (CuPy: cuBLAS; NumPy in the tests): im2col as a strided view of the padded x,
    materialized, times the filters (fprop: (N, G, K/G, P*Q)) or dy (wgrad: (G, K/G,
    C/G*R*S))."""
    G, Cg, Kg = g.groups, g.C_per_group, g.K_per_group

    def im2col():
        xp_ = xp.pad(x, ((0, 0), (0, 0), (g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right)))
        sN, sC, sH, sW = xp_.strides
        view = as_strided(xp_, (g.N, g.C, g.R, g.S, g.P, g.Q),
                          (sN, sC, sH * g.dilation_h, sW * g.dilation_w, sH * g.stride_h,
                           sW * g.stride_w))
        return xp.ascontiguousarray(view).reshape(g.N, G, Cg * g.R * g.S, g.P * g.Q)

    if op == "fprop":
        wm = w.reshape(G, Kg, Cg * g.R * g.S)
        return lambda: xp.matmul(wm, im2col())
    dym = dy.reshape(g.N, G, Kg, g.P * g.Q)
    return lambda: xp.matmul(dym, im2col().transpose(0, 1, 3, 2)).sum(axis=0)


def _im2col_ms(op, g, x, w, dy, dtype, args, flush):
    """CuPy im2col + matmul (cuBLAS) timed; None past --im2col-limit-gb."""
    import cupy
    from cupy.lib.stride_tricks import as_strided

    cols_bytes = g.N * g.C * g.R * g.S * g.P * g.Q * np.dtype(dtype).itemsize
    if cols_bytes > args.im2col_limit_gb * 2**30:
        return None
    fn = im2col_baseline(op, g, x, w, dy, cupy, as_strided)
    return _median_ms(fn, max(3, args.runs // 5), 2, flush, _cupy_events)


def add_ratios(record: dict, peak: dict, copy: dict | None = None) -> dict:
    """The record's ratios to its baselines, rate and fractions of the peaks (and, for
    max-pool, of the measured copy bandwidth ``copy``)."""
    ms = record["gpuconv_ms"]
    for base in ("cudnn_ms", "cupy_im2col_ms"):
        if record.get(base):
            # > 1: gpuconv is faster than the baseline
            record[base.replace("_ms", "_over_gpuconv")] = record[base] / ms
    if "flops" in record:
        record["tflops"] = record["flops"] / (ms * 1e-3) / 1e12
        # A tensor-core kernel is measured against the tensor cores' peak, others against
        # the CUDA cores' (FP32 / FP64 lanes).
        op = NHWC_OPS.get(record["op"], record["op"])
        version = kernels.base_version(record.get("gpuconv_version") or "")
        tensor = (op, version) in kernels.TENSOR_CORE_VERSIONS
        top = peak.get("tensor_flops") if tensor else peak.get("flops")
        if top:
            record["fraction_of_peak"] = record["flops"] / (ms * 1e-3) / top
    else:
        record["gbps"] = record["bytes"] / (ms * 1e-3) / 1e9
        if peak.get("bytes"):
            record["fraction_of_peak"] = record["bytes"] / (ms * 1e-3) / peak["bytes"]
        if copy and copy.get("bytes_per_s"):
            record["fraction_of_copy_bandwidth"] = (record["bytes"] / (ms * 1e-3)
                                                    / copy["bytes_per_s"])
    return record


def geometric_mean(values) -> float:
    values = list(values)
    return float(np.exp(np.mean(np.log(values))))


def summarize(results: list, dtype: str) -> list:
    """One row per (network, batch, op) against the goals: conv ops, cuDNN time / gpuconv
    time as a geometric mean over the layers (None unless every layer has a cuDNN time);
    max-pool, the lowest fraction of the measured copy bandwidth over its cases. ``met``:
    None where there is no goal (the convolutions in float64) or no figure."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["network"], r["batch"], r["op"]), []).append(r)
    rows = []
    for (network, batch, op), cases in groups.items():
        if op in POOL_OPS:
            figures = [r.get("fraction_of_copy_bandwidth") for r in cases]
            value = min(figures) if None not in figures else None
            measure, goal = "lowest fraction of the measured copy bandwidth", POOL_GOAL
        else:
            figures = [r.get("cudnn_over_gpuconv") for r in cases]
            value = geometric_mean(figures) if None not in figures else None
            measure, goal = "cuDNN / gpuconv, geometric mean", SPEED_GOALS.get(dtype)
        rows.append({"network": network, "batch": batch, "op": op, "cases": len(cases),
                     "measure": measure, "value": value, "goal": goal,
                     "met": None if value is None or goal is None else value >= goal})
    return rows


# ----------------------------------------------------------------------------------------
# output: README table, chart


def readme_table(json_path) -> str:
    """Markdown of one results JSON (what the README shows; never typed by hand): a line on the
    device and settings, the summary against the goals, then every case."""
    data = json.loads(Path(json_path).read_text())
    dev, ver = data["device"], data["versions"]
    peak, copy = data.get("peak", {}), data.get("copy_bandwidth")

    def num(v, fmt):
        return "–" if v is None else format(v, fmt)

    def percent(v):
        return num(None if v is None else 100 * v, ".0f")

    about = (f"Measured {data['date']} on {dev['name']} ({dev['sm_count']} SMs), "
             f"{data['dtype']}, CUDA runtime {ver.get('cuda_runtime')}, driver "
             f"{ver.get('driver')}, CuPy {ver.get('cupy')}, PyTorch {ver.get('torch')} "
             f"(cuDNN {ver.get('cudnn')}, TF32 off). Median of {data['settings']['runs']} runs, "
             f"CUDA events, L2 flushed. Ratios > 1: gpuconv faster. Peak: "
             f"{peak.get('flops_source', 'unknown')}; bandwidth: "
             f"{peak.get('bytes_source', 'unknown')}.")
    if copy:
        about += (f" Measured copy bandwidth: {copy['bytes_per_s'] / 1e9:.0f} GB/s "
                  f"({copy['method']}).")
    lines = [about, "",
             "| network | N | op | cases | measure | value | goal | met |",
             "|---|---:|---|---:|---|---:|---:|---|"]
    for row in data.get("summary") or summarize(data["results"], data["dtype"]):
        met = {True: "yes", False: "**no**", None: "–"}[row["met"]]
        lines.append(f"| {row['network']} | {row['batch']} | {row['op']} | {row['cases']} | "
                     f"{row['measure']} | {num(row['value'], '.2f')} | "
                     f"{num(row['goal'], '.1f')} | {met} |")
    lines += ["",
              "| network | layer | N | op | gpuconv ms (version) | cuDNN ms | cuDNN / gpuconv | "
              "im2col+matmul ms | TFLOP/s or GB/s | % of peak | % of copy bw |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["results"]:
        rate = (f"{r['tflops']:.2f} TFLOP/s" if "tflops" in r
                else f"{r['gbps']:.0f} GB/s" if "gbps" in r else "–")
        lines.append(
            f"| {r['network']} | {r['layer']} | {r['batch']} | {r['op']} | "
            f"{r['gpuconv_ms']:.3f} ({r['gpuconv_version']}) | {num(r.get('cudnn_ms'), '.3f')} | "
            f"{num(r.get('cudnn_over_gpuconv'), '.2f')} | {num(r.get('cupy_im2col_ms'), '.3f')} | "
            f"{rate} | {percent(r.get('fraction_of_peak'))} | "
            f"{percent(r.get('fraction_of_copy_bandwidth'))} |")
    return "\n".join(lines)


def is_gpu_result(data) -> bool:
    """Whether a parsed JSON file is a whole ``gpuconv bench`` result (what readme_table reads)."""
    return (isinstance(data, dict)
            and {"device", "versions", "settings", "results", "dtype", "date"} <= set(data)
            and isinstance(data["device"], dict) and {"name", "sm_count"} <= set(data["device"])
            and isinstance(data["settings"], dict) and "runs" in data["settings"]
            and isinstance(data["results"], list))


def gpu_results_markdown(results_dir) -> str:
    """The README's GPU results: per device and dtype, the newest whole (not ``--quick``)
    ``gpuconv bench`` result in ``results_dir`` (summary and cases), or a line saying there is
    none."""
    newest: dict = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not is_gpu_result(data) or data["settings"].get("quick"):
            continue
        key = (data["device"]["name"], data["dtype"])
        if data["date"] >= newest.get(key, ("", None))[0]:
            newest[key] = (data["date"], path)
    if not newest:
        return ("No `gpuconv bench` results in `benchmarks/results/` yet: every GPU speed is "
                "**not measured**.")
    parts = []
    for (device, dtype), (_, path) in sorted(newest.items()):
        parts += [f"#### {device}, {dtype} (`{path.name}`)", "", readme_table(path), ""]
    return "\n".join(parts).rstrip()


def regenerate_readme() -> Path | None:
    """Rebuild the checkout's README results tables (benchmarks/update_readme.py); None when
    gpuconv does not run from a checkout."""
    root = Path(__file__).resolve().parent.parent
    script, readme = root / "benchmarks" / "update_readme.py", root / "README.md"
    if not (script.is_file() and readme.is_file()):
        return None
    spec = importlib.util.spec_from_file_location("gpuconv_update_readme", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([])
    return readme


def write_chart(json_path, png_path=None) -> Path | None:
    """Bar chart of cuDNN time / gpuconv time per case (log scale); None without matplotlib
    or without cuDNN figures."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    data = json.loads(Path(json_path).read_text())
    rows = [r for r in data["results"] if r.get("cudnn_over_gpuconv")]
    if not rows:
        return None
    png_path = Path(png_path) if png_path else Path(json_path).with_suffix(".png")
    labels = [f"{r['network']} {r['layer']} N={r['batch']} {r['op']}" for r in rows]
    fig, ax = plt.subplots(figsize=(10, max(3, 0.22 * len(rows) + 1)))
    ax.barh(range(len(rows)), [r["cudnn_over_gpuconv"] for r in rows],
            color=["tab:green" if r["cudnn_over_gpuconv"] >= 1 else "tab:red" for r in rows])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("cuDNN time / gpuconv time (> 1: gpuconv faster)")
    ax.set_title(f"gpuconv vs cuDNN, {data['device']['name']}, {data['dtype']}, {data['date']}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path


# ----------------------------------------------------------------------------------------
# command line


def parse_args(argv):
    p = argparse.ArgumentParser(prog="gpuconv bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few layers at batch 32")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--out", help="results .json file or folder (default benchmarks/results/)")
    p.add_argument("--ops", default="fprop,dgrad,wgrad,fprop_nhwc,dgrad_nhwc,wgrad_nhwc,"
                   "pool_fwd,pool_bwd",
                   help="comma-separated subset of fprop,dgrad,wgrad,fprop_nhwc,dgrad_nhwc,"
                        "wgrad_nhwc (channels-last arrays),pool_fwd,pool_bwd")
    p.add_argument("--batches", help="comma-separated batch sizes (default 1,32)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per case (median)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--all-versions", action="store_true",
                   help="time every kernel version that supports the case, not only the selected one")
    p.add_argument("--no-flush", action="store_true", help="do not flush L2 between runs")
    p.add_argument("--no-torch", action="store_true", help="skip the cuDNN baseline")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--im2col-limit-gb", type=float, default=4.0,
                   help="skip the im2col baseline when its buffer would exceed this")
    p.add_argument("--readme", metavar="JSON", help="print the README table of a results JSON")
    args = p.parse_args(argv)
    args.ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    bad = [o for o in args.ops if o not in CONV_OPS + POOL_OPS]
    if bad:
        p.error(f"unknown ops {bad}")
    args.batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else None
    return args


def main(argv=None) -> int:
    """Entry point of `gpuconv bench`; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.readme:
        print(readme_table(args.readme))
        return 0
    from .runtime import cuda_available, get_runtime

    if not cuda_available():
        print("gpuconv bench needs a CUDA GPU visible to CuPy; none found, nothing measured. "
              "(`gpuconv bench --readme RESULTS.json` renders an existing result anywhere.)")
        return 0
    layers = load_layers()
    rt = get_runtime("cuda")
    dtype = DTYPES[args.dtype]
    meta = device_info()
    peak = peaks(meta["device"], args.dtype)
    torch = None if args.no_torch else _torch()
    copy = None
    if set(args.ops) & set(POOL_OPS):  # max-pool's yardstick, measured in the same run
        copy = measure_copy_bandwidth(args.runs, args.warmup)
        print(f"copy bandwidth: {copy['bytes_per_s'] / 1e9:.0f} GB/s ({copy['method']})",
              flush=True)
    date = _dt.date.today().isoformat()
    todo = cases(layers, args.quick, args.batches, args.ops)
    results = []
    for i, (layer, n, op, g) in enumerate(todo, 1):
        record = add_ratios(run_case(layer, n, op, g, dtype, rt, args, torch), peak, copy)
        results.append(record)
        print(f"[{i}/{len(todo)}] {layer.network} {layer.name} N={n} {op}: "
              f"gpuconv {record['gpuconv_ms']:.3f} ms ({record['gpuconv_version']})"
              + (f", cuDNN {record['cudnn_ms']:.3f} ms" if record.get("cudnn_ms") else "")
              + (f", im2col {record['cupy_im2col_ms']:.3f} ms" if record.get("cupy_im2col_ms") else ""),
              flush=True)
    data = {"format": 1, "date": date, "dtype": args.dtype, **meta, "peak": peak,
            "settings": {"runs": args.runs, "warmup": args.warmup, "l2_flush": not args.no_flush,
                         "quick": args.quick, "cudnn_benchmark": torch is not None,
                         "tf32": False},
            "copy_bandwidth": copy, "summary": summarize(results, args.dtype),
            "results": results}
    path = result_path(args.out, meta["device"]["name"], date, args.dtype, args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path}")
    for row in data["summary"]:
        print(f"{row['network']} N={row['batch']} {row['op']}: {row['measure']} "
              f"{'–' if row['value'] is None else format(row['value'], '.2f')} "
              f"(goal {row['goal']}, met: {row['met']})")
    if args.out is None and not args.quick:
        try:
            if regenerate_readme():
                print("regenerated the README's results tables")
        except Exception as exc:  # the result is written; a README problem must not hide it
            print(f"could not regenerate the README's results tables: {exc!r}")
    if not args.no_chart:
        png = write_chart(path)
        if png:
            print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
