"""Which file, template instance and launch shape each op uses: the one launch path.

Every op is launched from here, on either runtime (:mod:`gpuconv.runtime`): the GPU through
CuPy, or the CPU runtime. Grid, block and scalar arguments are computed once, here, the same
way for both.

Kernel versions. Each op has several kernel versions (``VERSIONS``): ``v1`` is the simple,
always-correct baseline (one thread per output element, a 1-D grid-stride loop), ``v2`` the
tiled one (implicit GEMM for the convolutions, 2-D launches with 32-bit in-plane indices for
max-pool); fprop, dgrad and wgrad also have ``v3``, the implicit GEMM on tensor cores
(float16 and bfloat16; float32 on TF32 as an opt-in: ``allow_tf32``; mma.sync on sm_80+, a
shuffle emulation elsewhere), and ``v4``, v3 on channels-last (NHWC) tensors: run as they
are by :func:`conv2d_fprop_nhwc` / :func:`conv2d_dgrad_nhwc` / :func:`conv2d_wgrad_nhwc`,
converted to NHWC and back by :func:`conv2d_fprop` / :func:`conv2d_dgrad` /
:func:`conv2d_wgrad`; fprop, dgrad and wgrad ``v5``, v4 on wgmma (the warpgroup MMA of sm_90a;
emulated elsewhere), float16 and bfloat16; bgrad ``v3`` sums channels-last dy as it is (:func:`conv2d_bgrad_nhwc`;
:func:`conv2d_bgrad` converts NCHW dy to NHWC for it); max-pool's ``v3`` is v2 vectorized
(``POOL_V3_VEC`` consecutive outputs per thread, vector stores). fprop and dgrad v2 and v5 also come
in other tile configurations, asked for as versions of their own: ``'v2:128x128'``,
``'v2:64x32'`` and ``'v5:128x128'`` (``TILE_CONFIGS``, ``variants``; ``'v2'`` and ``'v5'`` are
128x64; ``base_version`` strips the configuration).
Which one runs is decided per call, first match wins:

1. the ``version=`` argument of the launcher (``'v1'``, ``'v2'``, ...);
2. ``$GPUCONV_KERNEL_VERSION``: ``'v1'`` (every op) or ``'fprop=v1,wgrad=v2'`` (per op; op
   names in ``OPS``; a tile configuration per op, ``'fprop=v2:128x128'``, since only fprop and
   dgrad have them);
3. autotuning, with ``$GPUCONV_AUTOTUNE=1`` on the GPU only: every version (in every tile
   configuration) that supports the geometry is timed once with CUDA events per (device, op,
   dtype, geometry); the winner is
   cached in memory and in ``autotune.json`` in the cache folder (``$GPUCONV_CACHE_DIR``,
   else ``$XDG_CACHE_HOME/gpuconv``, else ``~/.cache/gpuconv``). On the CPU runtime it falls
   back to the heuristic;
4. the heuristic :func:`heuristic_version` (see there).

A version that cannot run a geometry (``supports``) is refused with ``ValueError`` when asked
for explicitly (1, 2) and skipped by 3 and 4. On the GPU a version must also pass its
self-check (``self_check_failure``: once per process, device model, op, version and dtype,
two small built-in problems against the NumPy reference) before it runs: failing, it raises
``RuntimeError`` when asked for explicitly, autotune leaves it out and the heuristic falls back
to v2, then v1.

Launch shape (v1 kernels): one thread per output element, ``THREADS_PER_BLOCK`` threads per
block, a 1-D grid of ``ceil(count / THREADS_PER_BLOCK)`` blocks capped at ``MAX_GRID_X``. The
kernels loop grid-stride over 64-bit flat indices, so a capped grid still covers every
element: a tensor with more than 2^31 elements (or more than 2^31-1 blocks' worth) is looped
over, never truncated. The v2 and v3 launch shapes are described at their launchers.

Arguments: arrays are C-contiguous arrays of ``rt.xp``, all of one dtype (float16, bfloat16,
float32 or float64: gpuconv.dtypes; max-pool indices int64), outputs overwritten entirely. Sizes go to the kernels as
``numpy.int32`` scalars (CuPy would pass a Python int as 64 bits); each single size must fit
an int32, products of sizes are formed in 64 bits inside the kernels.
"""

from __future__ import annotations

import numpy as np

import contextlib
import contextvars
import functools
import json
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from .dtypes import CUDA_TYPES, SIXTEEN_BIT  # the C++ type each dtype's instances are built for

THREADS_PER_BLOCK = 256
MAX_GRID_X = 2**31 - 1  # CUDA's limit on gridDim.x (compute capability >= 3.0)
MAX_GRID_YZ = 65535     # CUDA's limit on gridDim.y and gridDim.z
INT32_MAX = 2**31 - 1


# The ops that have kernel versions, and (source file, kernel template) of each version.
OPS = ("fprop", "dgrad", "wgrad", "bgrad", "pool_fwd", "pool_bwd")
TEMPLATES = {
    ("fprop", "v1"): ("conv2d_fprop.cu", "conv2d_fprop_v1_direct"),
    ("fprop", "v2"): ("conv2d_fprop.cu", "conv2d_fprop_v2_implicit_gemm"),
    ("fprop", "v3"): ("conv2d_fprop.cu", "conv2d_fprop_v3_mma"),  # tensor cores, 16-bit only
    ("fprop", "v4"): ("conv2d_fprop.cu", "conv2d_fprop_v4_nhwc_mma"),  # v3 on NHWC tensors
    ("fprop", "v5"): ("conv2d_fprop.cu", "conv2d_fprop_v5_nhwc_wgmma"),  # v4 on wgmma (sm_90a)
    ("dgrad", "v1"): ("conv2d_dgrad.cu", "conv2d_dgrad_v1_direct"),
    ("dgrad", "v2"): ("conv2d_dgrad.cu", "conv2d_dgrad_v2_implicit_gemm"),
    ("dgrad", "v3"): ("conv2d_dgrad.cu", "conv2d_dgrad_v3_mma"),  # tensor cores, 16-bit only
    ("dgrad", "v4"): ("conv2d_dgrad.cu", "conv2d_dgrad_v4_nhwc_mma"),  # v3 on NHWC tensors
    ("dgrad", "v5"): ("conv2d_dgrad.cu", "conv2d_dgrad_v5_nhwc_wgmma"),  # v4 on wgmma (sm_90a)
    ("wgrad", "v1"): ("conv2d_wgrad.cu", "conv2d_wgrad_v1_direct"),
    ("wgrad", "v2"): ("conv2d_wgrad.cu", "conv2d_wgrad_v2_implicit_gemm"),
    ("wgrad", "v3"): ("conv2d_wgrad.cu", "conv2d_wgrad_v3_mma"),  # tensor cores, 16-bit only
    ("wgrad", "v4"): ("conv2d_wgrad.cu", "conv2d_wgrad_v4_nhwc_mma"),  # v3 on NHWC tensors
    ("wgrad", "v5"): ("conv2d_wgrad.cu", "conv2d_wgrad_v5_nhwc_wgmma"),  # v4 on wgmma (sm_90a)
    ("bgrad", "v1"): ("conv2d_wgrad.cu", "conv2d_bgrad_v1_direct"),
    ("bgrad", "v2"): ("conv2d_wgrad.cu", "conv2d_bgrad_v2_tree"),
    ("bgrad", "v3"): ("conv2d_wgrad.cu", "conv2d_bgrad_v3_nhwc"),  # channels-last dy
    ("pool_fwd", "v1"): ("maxpool2d.cu", "maxpool2d_fwd_v1_direct"),
    ("pool_fwd", "v2"): ("maxpool2d.cu", "maxpool2d_fwd_v2_plane"),
    ("pool_fwd", "v3"): ("maxpool2d.cu", "maxpool2d_fwd_v3_vec"),  # v2 with vector stores
    ("pool_bwd", "v1"): ("maxpool2d.cu", "maxpool2d_bwd_v1_gather"),
    ("pool_bwd", "v2"): ("maxpool2d.cu", "maxpool2d_bwd_v2_plane"),
    ("pool_bwd", "v3"): ("maxpool2d.cu", "maxpool2d_bwd_v3_vec"),  # v2 with vector stores
}
VERSIONS = {op: tuple(v for (o, v) in TEMPLATES if o == op) for op in OPS}

# Each source file and the kernel templates in it that the ops use. Every template is
# instantiated for every dtype in CUDA_TYPES; the runtimes compile a file once with all of
# these name expressions.
KERNELS: dict[str, tuple[str, ...]] = {}
for (_source, _template) in TEMPLATES.values():
    KERNELS.setdefault(_source, ())
    KERNELS[_source] += (_template,)
KERNELS["conv2d_wgrad.cu"] += ("conv2d_wgrad_v2_sum_splits",)  # split-K's second pass
# Templates instantiated for some dtypes only (every other template: every dtype in
# CUDA_TYPES). The tensor-core kernels multiply 16-bit operands (fp32 accumulation).
TEMPLATE_DTYPES = {f"conv2d_{op}_v3_mma": SIXTEEN_BIT for op in ("fprop", "dgrad", "wgrad")}
TEMPLATE_DTYPES.update({f"conv2d_{op}_v4_nhwc_mma": SIXTEEN_BIT
                        for op in ("fprop", "dgrad", "wgrad")})
# ... and float32 on TF32 tensor cores (an opt-in: see allow_tf32).
for _template in TEMPLATE_DTYPES:
    TEMPLATE_DTYPES[_template] += (np.dtype(np.float32),)
# The wgmma kernels (v5): float16 and bfloat16 only.
TEMPLATE_DTYPES.update({f"conv2d_{op}_v5_nhwc_wgmma": SIXTEEN_BIT
                        for op in ("fprop", "dgrad", "wgrad")})
TF32_BK = 16  # FPROP_TF32_BK, DGRAD_TF32_BK, WGRAD_TF32_BK: v3's float32 reduction tiles
# Versions that run on tensor cores: the heuristic and autotune consider them only on devices
# of compute capability >= TENSOR_CORE_MIN_ARCH (on others, and on the CPU runtime, the
# kernel runs a slow shuffle emulation of the mma: right, but only for explicit requests).
TENSOR_CORE_VERSIONS = {("fprop", "v3"), ("fprop", "v4"), ("dgrad", "v3"), ("dgrad", "v4"),
                        ("wgrad", "v3"), ("wgrad", "v4"), ("fprop", "v5"), ("dgrad", "v5"),
                        ("wgrad", "v5")}
# The versions on wgmma (sm_90a): real only on devices of compute capability WGMMA_ARCH (the GPU
# runtime compiles for sm_90a there); elsewhere an emulation, right but slow.
WGMMA_VERSIONS = {("fprop", "v5"), ("dgrad", "v5"), ("wgrad", "v5")}
WGMMA_ARCH = 90
# The versions that take channels-last (NHWC) arrays (the others NCHW ones).
NHWC_VERSIONS = {("fprop", "v4"), ("dgrad", "v4"), ("wgrad", "v4"), ("bgrad", "v3"),
                 ("fprop", "v5"), ("dgrad", "v5"), ("wgrad", "v5")}
TENSOR_CORE_MIN_ARCH = 80
# Ops with one kernel version so far (v1): nothing to select, so they stay out of OPS /
# TEMPLATES. (op, version) -> (source, template); each op family's section near the end of
# this file registers its own with _add_single_version.
SINGLE_VERSION_TEMPLATES: dict = {}


def _add_single_version(source: str, templates: dict) -> None:
    """Register one source file's v1-only kernels: {op: template}."""
    for op, template in templates.items():
        SINGLE_VERSION_TEMPLATES[(op, "v1")] = (source, template)
    KERNELS[source] = tuple(templates.values())


def _single_version_kernel(op: str, version: str | None) -> tuple[str, str]:
    """(source, template) of a v1-only op (None picks v1; another version is refused)."""
    version = "v1" if version is None else version
    if (op, version) not in SINGLE_VERSION_TEMPLATES:
        have = tuple(v for (o, v) in SINGLE_VERSION_TEMPLATES if o == op)
        raise ValueError(f"{op} has versions {have}, got {version!r}")
    return SINGLE_VERSION_TEMPLATES[(op, version)]


_add_single_version("local_conv2d.cu", {
    "tiled_fprop": "tiled_conv2d_fprop_v1_direct",
    "tiled_dgrad": "tiled_conv2d_dgrad_v1_direct",
    "tiled_wgrad": "tiled_conv2d_wgrad_v1_direct",
    "tiled_bgrad": "tiled_conv2d_bgrad_v1_direct",
})


@dataclass(frozen=True)
class GemmTiles:
    """A v2 implicit-GEMM kernel's tile sizes: Python's mirror of the ``#ifndef`` defaults in
    its .cu file (tests/test_compile.py checks they agree)."""

    prefix: str      # macro prefix in the .cu file, e.g. 'FPROP_V2'
    BM: int          # GEMM rows per block
    BN: int          # GEMM columns per block
    BK: int          # reduction steps per shared-memory stage
    TM: int          # GEMM rows per thread
    TN: int          # GEMM columns per thread
    min_blocks: int  # __launch_bounds__ minimum resident blocks per SM
    config: int = 0  # the kernel's CFG template argument (0: the .cu file's -D defaults)

    @property
    def threads(self) -> int:
        return (self.BM // self.TM) * (self.BN // self.TN)

    @property
    def shape(self) -> str:
        return f"{self.BM}x{self.BN}"


FPROP_V2 = GemmTiles("FPROP_V2", BM=128, BN=64, BK=8, TM=8, TN=4, min_blocks=2)
DGRAD_V2 = GemmTiles("DGRAD_V2", BM=128, BN=64, BK=8, TM=8, TN=4, min_blocks=2)
WGRAD_V2 = GemmTiles("WGRAD_V2", BM=64, BN=64, BK=16, TM=4, TN=4, min_blocks=2)
# Tile configurations: fprop and dgrad v2 also come with other tiles, the CFG template argument
# of their kernels (common.cuh: GemmV2Config, whose table these mirror). A configuration is
# asked for as the version "v2:<BM>x<BN>" ("v2" itself: CFG 0); all give the same bits (BK 8,
# each thread's fixed reduction order). 128x128: 8 x 8 per thread, 4 FMAs per shared-memory
# value, one block per SM; 64x32: 4 x 4 per thread, 128 threads, 4x the blocks of 128x64.
V2_LARGE = dict(BM=128, BN=128, BK=8, TM=8, TN=8, min_blocks=1, config=1)
V2_SMALL = dict(BM=64, BN=32, BK=8, TM=4, TN=4, min_blocks=4, config=2)
TILE_CONFIGS = {(op, "v2"): (default, GemmTiles(default.prefix, **V2_LARGE),
                              GemmTiles(default.prefix, **V2_SMALL))
                for op, default in (("fprop", FPROP_V2), ("dgrad", DGRAD_V2))}


@dataclass(frozen=True)
class MmaTiles:
    """A tensor-core kernel's tile sizes: Python's mirror of its .cu ``#ifndef`` defaults (v3,
    v4, v5), or of a v5 tile configuration (mma.cuh: WgmmaColumns; ``config`` its CFG, WM x WN
    a warp's share of its warpgroup's accumulators)."""

    prefix: str      # macro prefix in the .cu file, e.g. 'FPROP_V3'
    BM: int          # GEMM rows per block
    BN: int          # GEMM columns per block
    BK: int          # reduction steps per shared-memory stage
    WM: int          # GEMM rows per warp (WM/16 m16 fragments)
    WN: int          # GEMM columns per warp (WN/8 n8 fragments)
    min_blocks: int  # __launch_bounds__ minimum resident blocks per SM (sm_80+)
    config: int = 0  # the kernel's CFG template argument (0: the .cu file's -D defaults)

    @property
    def threads(self) -> int:
        return (self.BM // self.WM) * (self.BN // self.WN) * 32

    @property
    def shape(self) -> str:
        return f"{self.BM}x{self.BN}"


FPROP_V3 = MmaTiles("FPROP_V3", BM=128, BN=64, BK=32, WM=32, WN=32, min_blocks=2)
DGRAD_V3 = MmaTiles("DGRAD_V3", BM=128, BN=64, BK=32, WM=32, WN=32, min_blocks=2)
# wgrad v3's GEMM is the transpose of v2's: rows (c, r, s), columns the group's filters; v4
# (NHWC) and v5 (v4 on wgmma) have v3's tiles, with rows (r, s, c).
WGRAD_V3 = MmaTiles("WGRAD_V3", BM=128, BN=64, BK=32, WM=32, WN=32, min_blocks=2)
# fprop and dgrad v5 (wgmma) also come with 128 x 128 tiles, "v5:128x128" (CFG 1, mma.cuh:
# WgmmaColumns): each warpgroup's m64n128k16 accumulators, a warp holding 16 rows x 128
# columns; twice the columns per A slice read from shared memory, 48 KB of stages. The same
# bits as v5 (each accumulator's reduction order does not depend on the columns).
TILE_CONFIGS.update({(op, "v5"): (default, MmaTiles(default.prefix, BM=128, BN=128, BK=32, WM=16,
                                                    WN=128, min_blocks=2, config=1))
                     for op, default in (("fprop", FPROP_V3), ("dgrad", DGRAD_V3))})
# The v4 kernels' pipeline depth (MMA_COPY_STAGES in mma.cuh): both tiles copied by cp.async,
# up to MMA_COPY_STAGES - 1 tiles in flight during the math.
MMA_COPY_STAGES = 3
BGRAD_V2_THREADS = 256        # BGRAD_V2_THREADS in conv2d_wgrad.cu
BGRAD_V3_BLOCK = (32, 8)      # BGRAD_V3_BLOCK_X/Y in conv2d_wgrad.cu: filters x warps
BGRAD_V3_MAX_GRID_X = MAX_GRID_X  # bgrad v3's grid x over filter blocks (tests lower it)
# bgrad v3 splits its N*P*Q rows until about this many blocks run (as wgrad's split: a
# constant, so the summation order is the same on every device), each chunk at least
# BGRAD_V3_MIN_ROWS_PER_SPLIT rows (BGRAD_V3_MIN_ROWS_PER_SPLIT / 8 per warp).
BGRAD_SPLIT_TARGET_BLOCKS = 264
BGRAD_V3_MIN_ROWS_PER_SPLIT = 256
POOL_V2_BLOCK = (32, 8)       # POOL_V2_BLOCK_X/Y in maxpool2d.cu
POOL_V3_BLOCK = (32, 8)       # POOL_V3_BLOCK_X/Y in maxpool2d.cu
POOL_V3_VEC = 4               # POOL_V3_VEC in maxpool2d.cu: consecutive outputs per v3 thread
POOL_V2_MAX_GRID_Z = MAX_GRID_YZ  # max-pool v2's and v3's grid z over planes (tests lower it)
# wgrad v2 splits its N*P*Q reduction until about this many blocks run (2 waves of an H100's
# 132 SMs). A constant, not the device's SM count: the split, hence the summation order, hence
# every bit of dw, is then the same on every device.
WGRAD_SPLIT_TARGET_BLOCKS = 264
WGRAD_MIN_TILES_PER_SPLIT = 4


def name_expression(kernel: str, dtype, config: int = 0) -> str:
    """``'conv2d_fprop_v1_direct<float>'`` for a kernel template and a NumPy dtype (and
    ``'conv2d_fprop_v2_implicit_gemm<float, 1>'`` for tile configuration 1)."""
    try:
        ctype = CUDA_TYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"no kernel instance for dtype {np.dtype(dtype)}; supported: "
                        f"{[str(d) for d in CUDA_TYPES]}") from None
    return f"{kernel}<{ctype}, {config}>" if config else f"{kernel}<{ctype}>"


def name_expressions(source_name: str) -> tuple[str, ...]:
    """Every instance kernels.py can request from one source file."""
    configs = {TEMPLATES[key][1]: [t.config for t in tiles] for key, tiles in TILE_CONFIGS.items()}
    return tuple(name_expression(kernel, dtype, config)
                 for kernel in KERNELS[source_name] for dtype in CUDA_TYPES
                 if dtype in TEMPLATE_DTYPES.get(kernel, CUDA_TYPES)
                 for config in configs.get(kernel, [0]))


def module_group(source_name: str, name_expression: str) -> tuple[str, ...]:
    """The instances the GPU runtime compiles into one module with ``name_expression``: the
    file's wgmma (v5) instances, or all its others. Apart, an NVRTC that cannot build the
    sm_90a-only code fails v5 alone, and v1 to v4 of the same file still build (the CPU
    runtime builds each file as one module: no wgmma there, and one compile is faster)."""
    wgmma = {TEMPLATES[key][1] for key in WGMMA_VERSIONS if TEMPLATES[key][0] == source_name}
    mine = name_expression.split("<")[0] in wgmma
    return tuple(e for e in name_expressions(source_name) if (e.split("<")[0] in wgmma) == mine)


def all_instances() -> list[tuple[str, str]]:
    """(source file, name expression) of every instance kernels.py can request."""
    return [(source, expr) for source in KERNELS for expr in name_expressions(source)]


def grid_1d(count: int, threads: int = THREADS_PER_BLOCK, max_blocks: int | None = None) -> int:
    """Blocks of a 1-D grid-stride launch over ``count`` elements: enough for one element per
    thread, capped at ``max_blocks`` (default ``MAX_GRID_X``); the kernels' loops cover the rest.
    """
    if count <= 0:
        return 0
    cap = MAX_GRID_X if max_blocks is None else max_blocks
    return max(1, min(-(-count // threads), cap))


def launch_shape(count: int) -> tuple[tuple[int], tuple[int]]:
    """(grid, block) of the grid-stride launch over ``count`` elements (grid (0,) for none)."""
    return (grid_1d(count),), (THREADS_PER_BLOCK,)


def _i32(**sizes) -> list:
    """Sizes as int32 kernel scalars; a size that does not fit is refused, never wrapped."""
    out = []
    for name, value in sizes.items():
        value = int(value)
        if not -2**31 <= value < 2**31:
            raise ValueError(f"{name}={value} does not fit the kernels' 32-bit size arguments")
        out.append(np.int32(value))
    return out


def _launch(rt, source: str, kernel: str, dtype, count: int, args: list) -> None:
    """Launch ``kernel<dtype>`` of ``source`` grid-stride over ``count`` elements."""
    grid, block = launch_shape(count)
    if grid[0] == 0:  # nothing to compute (N == 0)
        return
    function = rt.function(source, name_expression(kernel, dtype))
    function(grid, block, tuple(args))


def _launch_grid(rt, op: str, version: str, dtype, grid: tuple, block: tuple, args: list) -> None:
    """Launch the kernel of (op, version) on an explicit grid and block."""
    if min(grid) == 0:
        return
    base, tiles = split_version(op, version)
    source, kernel = TEMPLATES[(op, base)]
    config = tiles.config if tiles is not None else 0
    rt.function(source, name_expression(kernel, dtype, config))(grid, block, tuple(args))


def _conv_sizes(g) -> list:
    """The size arguments every conv kernel takes, in the order the kernels declare them."""
    return _i32(N=g.N, C=g.C, H=g.H, W=g.W, K=g.K, R=g.R, S=g.S, P=g.P, Q=g.Q,
                pad_h=g.pad_top, pad_w=g.pad_left, stride_h=g.stride_h, stride_w=g.stride_w,
                dilation_h=g.dilation_h, dilation_w=g.dilation_w, groups=g.groups)


def _pool_sizes(g) -> list:
    """The size arguments both max-pool kernels take, in the order the kernels declare them."""
    return _i32(N=g.N, C=g.C, H=g.H, W=g.W, R=g.R, S=g.S, P=g.P, Q=g.Q, pad_h=g.pad_h,
                pad_w=g.pad_w, stride_h=g.stride_h, stride_w=g.stride_w,
                dilation_h=g.dilation_h, dilation_w=g.dilation_w)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ----------------------------------------------------------------------------------------
# what each version supports, and the heuristic


def _gemm_shape(op: str, g) -> tuple[int, int, int]:
    """(M, N, K) of one group's implicit GEMM for a conv op (FACTS.md's mapping)."""
    if op == "fprop":
        return g.N * g.P * g.Q, g.K_per_group, g.C_per_group * g.R * g.S
    if op == "dgrad":
        return g.N * g.H * g.W, g.C_per_group, g.K_per_group * g.R * g.S
    if op == "wgrad":
        return g.K_per_group, g.C_per_group * g.R * g.S, g.N * g.P * g.Q
    raise ValueError(op)


def _wgrad_gemm(g, version: str) -> tuple[tuple[int, int, int], "GemmTiles | MmaTiles"]:
    """(M, N, K) of one group's wgrad GEMM as ``version`` runs it, and its tiles: v2 has rows
    = filters and columns = (c, r, s); v3, v4 and v5 the transpose (v4's and v5's rows in
    (r, s, c) order)."""
    M, Ncols, Kred = _gemm_shape("wgrad", g)
    if version in ("v3", "v4", "v5"):
        return (Ncols, M, Kred), WGRAD_V3
    return (M, Ncols, Kred), WGRAD_V2


def wgrad_splits(g, version: str = "v2") -> int:
    """How many pieces wgrad v2 to v5 splits its N*P*Q reduction into (split-K): enough blocks
    for about ``WGRAD_SPLIT_TARGET_BLOCKS``, at least ``WGRAD_MIN_TILES_PER_SPLIT`` BK-tiles per
    piece, no empty piece, and groups*splits within the grid's z limit. A pure function of the
    geometry (and the version's tiles), so the summation order (and every bit of dw) is the
    same on every device."""
    (M, Ncols, Kred), t = _wgrad_gemm(g, version)
    k_tiles = _cdiv(Kred, t.BK)
    blocks = _cdiv(M, t.BM) * _cdiv(Ncols, t.BN) * g.groups
    splits = max(1, _cdiv(WGRAD_SPLIT_TARGET_BLOCKS, blocks))
    splits = min(splits, max(1, k_tiles // WGRAD_MIN_TILES_PER_SPLIT), MAX_GRID_YZ // g.groups)
    splits = max(1, splits)
    per = _cdiv(k_tiles, splits)
    return max(1, _cdiv(k_tiles, per))


def bgrad_splits(g) -> int:
    """How many fixed, contiguous chunks bgrad v3 splits the N*P*Q rows of dy into (grid y):
    enough blocks for about ``BGRAD_SPLIT_TARGET_BLOCKS`` over the ceil(K / 32) filter blocks,
    at least ``BGRAD_V3_MIN_ROWS_PER_SPLIT`` rows per chunk, no empty chunk, within the grid's
    y limit. A pure function of the geometry (not of the device, nor of the grid-x cap), so the
    summation order, hence every bit of db, is the same everywhere."""
    rows = g.N * g.P * g.Q
    if rows <= 0:
        return 1
    filter_blocks = _cdiv(g.K, BGRAD_V3_BLOCK[0])
    splits = max(1, _cdiv(BGRAD_SPLIT_TARGET_BLOCKS, filter_blocks))
    splits = min(splits, max(1, rows // BGRAD_V3_MIN_ROWS_PER_SPLIT), MAX_GRID_YZ)
    per = _cdiv(rows, splits)
    return max(1, _cdiv(rows, per))  # the kernel's chunks: per rows each, none empty


@functools.lru_cache(maxsize=None)
def variants(op: str) -> tuple[str, ...]:
    """Every version of ``op`` with every tile configuration: ``('v1', 'v2', 'v2:128x128',
    'v2:64x32', 'v3', ...)`` (a version's first configuration is the version itself). Cached:
    every launch checks its version against it."""
    out: list[str] = []
    for version in VERSIONS[op]:
        out.append(version)
        out += [f"{version}:{t.shape}" for t in TILE_CONFIGS.get((op, version), ())[1:]]
    return tuple(out)


def base_version(version: str) -> str:
    """The algorithm of a version string: ``'v5:128x128'`` -> ``'v5'`` (what the version sets
    above, NHWC_VERSIONS and the others, hold)."""
    return version.partition(":")[0]


def split_version(op: str, version: str) -> tuple[str, "GemmTiles | MmaTiles | None"]:
    """(version, its tiles) of a version string: ``'v2:128x128'`` -> ``('v2', <128x128>)``;
    ``'v2'`` -> ``('v2', <its default tiles>)`` where it has tile configurations, else
    ``(version, None)``. ValueError for a version or configuration ``op`` does not have."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if version not in variants(op):
        raise ValueError(f"{op} has versions {variants(op)}, got {version!r}")
    base, _, shape = version.partition(":")
    configs = TILE_CONFIGS.get((op, base))
    if configs is None:
        return base, None
    return base, next(t for t in configs if t.shape == shape) if shape else configs[0]


def unsupported_reason(op: str, version: str, g) -> str | None:
    """Why ``version`` of ``op`` cannot run geometry ``g`` (None: it can)."""
    version, config_tiles = split_version(op, version)
    if version == "v1":
        return None
    if op in ("fprop", "dgrad", "wgrad"):
        tiles = config_tiles or {("wgrad", "v2"): WGRAD_V2,
                 ("fprop", "v3"): FPROP_V3, ("fprop", "v4"): FPROP_V3, ("dgrad", "v3"): DGRAD_V3,
                 ("dgrad", "v4"): DGRAD_V3, ("fprop", "v5"): FPROP_V3, ("dgrad", "v5"): DGRAD_V3,
                 ("wgrad", "v3"): WGRAD_V3, ("wgrad", "v4"): WGRAD_V3,
                 ("wgrad", "v5"): WGRAD_V3}[(op, version)]
        M, Ncols, Kred = _gemm_shape(op, g)
        if op == "wgrad":
            (M, Ncols, Kred), _ = _wgrad_gemm(g, version)
        if g.groups > MAX_GRID_YZ:
            return f"groups={g.groups} exceeds the grid's z limit {MAX_GRID_YZ}"
        if _cdiv(Ncols, tiles.BN) > MAX_GRID_YZ:
            return f"{Ncols} GEMM columns need more than {MAX_GRID_YZ} column tiles"
        if _cdiv(M, tiles.BM) > MAX_GRID_X:
            return f"{M} GEMM rows need more than {MAX_GRID_X} row tiles"
        if op in ("fprop", "dgrad") and Kred > INT32_MAX - tiles.BK:
            return f"reduction length {Kred} does not fit the kernel's 32-bit index"
        # fprop / dgrad: a GEMM row's in-plane index; wgrad: the (p, q) digits of its pixels
        plane = g.H * g.W if op == "dgrad" else g.P * g.Q
        if plane > INT32_MAX:
            return f"a plane of {plane} pixels does not fit the kernel's 32-bit in-plane index"
        if op == "wgrad" and max(M, Ncols) > INT32_MAX - tiles.BM:
            return f"GEMM sides {M} x {Ncols} do not fit the kernel's 32-bit indices"
        return None
    if op == "bgrad":
        # v2: a block-stride loop over K and over each plane; v3: a block-stride loop over
        # filter blocks (grid x capped), splits within the grid's y limit (bgrad_splits), row
        # indices in 64 bits: no limit beyond v1's.
        return None
    # max-pool v2 / v3: in-plane indices are 32-bit, one plane row of blocks per grid y
    if g.H * g.W > INT32_MAX or g.P * g.Q > INT32_MAX:
        return "a plane larger than 2^31 elements needs v1's 64-bit in-plane indices"
    rows = g.P if op == "pool_fwd" else g.H
    block_rows = (POOL_V2_BLOCK if version == "v2" else POOL_V3_BLOCK)[1]
    if _cdiv(rows, block_rows) > MAX_GRID_YZ:
        return f"{rows} rows need more than {MAX_GRID_YZ} row blocks"
    return None


def supports(op: str, version: str, g) -> bool:
    return unsupported_reason(op, version, g) is None


def dtype_unsupported_reason(op: str, version: str, dtype) -> str | None:
    """Why ``version`` of ``op`` has no instance for ``dtype`` (None: it has, or dtype None)."""
    allowed = TEMPLATE_DTYPES.get(TEMPLATES[(op, split_version(op, version)[0])][1])
    if dtype is None or allowed is None or np.dtype(dtype) in allowed:
        return None
    return (f"{op} {version} exists for {[d.name for d in allowed]} only, "
            f"not {np.dtype(dtype).name}")


def _on_cuda_device(rt, query):
    """query(cupy) about the current device of a 'cuda' runtime; None for other runtimes or
    when CuPy cannot tell (no device)."""
    if getattr(rt, "name", None) != "cuda":
        return None
    try:
        import cupy

        return query(cupy)
    except Exception:
        return None


def device_sms(rt) -> int | None:
    """The multiprocessor count of the current device of a 'cuda' runtime (else None)."""
    return _on_cuda_device(rt, lambda cupy: _multiprocessors(cupy.cuda.Device().id))


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_id: int) -> int:
    """One attribute query per device (the heuristic asks on every call)."""
    import cupy

    return int(cupy.cuda.runtime.deviceGetAttribute(
        cupy.cuda.runtime.cudaDevAttrMultiProcessorCount, device_id))


def device_arch(rt) -> int | None:
    """The compute capability (e.g. 90) of the current device of a 'cuda' runtime (else None)."""
    return _on_cuda_device(rt, lambda cupy: int(cupy.cuda.Device().compute_capability))


ENV_TF32 = "GPUCONV_ALLOW_TF32"
_tf32: contextvars.ContextVar[bool | None] = contextvars.ContextVar("gpuconv_tf32", default=None)


@contextlib.contextmanager
def allow_tf32(enabled: bool = True):
    """Inside the block, float32 convolutions and their gradients may run on TF32 tensor
    cores (v3 on sm_80+: 10 fraction bits per operand, each product within 2^-9 of exact) when
    the heuristic or autotune finds them suitable, like ``torch.backends.cudnn.allow_tf32``.
    Off by default (float32 stays float32); ``$GPUCONV_ALLOW_TF32=1`` turns it on for the
    process. Local to the thread or task. An explicit ``version="v3"`` runs TF32 whatever this
    says."""
    token = _tf32.set(bool(enabled))
    try:
        yield
    finally:
        _tf32.reset(token)


def tf32_allowed() -> bool:
    """Whether the heuristic / autotune may pick TF32 kernels for float32 (see allow_tf32)."""
    flag = _tf32.get()
    if flag is None:
        return os.environ.get(ENV_TF32, "") not in ("", "0")
    return flag


def runs_on_tf32(op: str, version: str, dtype) -> bool:
    """Whether ``version`` of ``op`` runs float32 ``dtype`` on TF32 tensor cores."""
    return ((op, base_version(version)) in TENSOR_CORE_VERSIONS and dtype is not None
            and np.dtype(dtype) == np.float32)


def runs_well_here(op: str, version: str, dtype, arch: int | None) -> bool:
    """Whether the heuristic / autotune may consider ``version``: it has an instance for
    ``dtype``, and a tensor-core version only on a device with tensor-core mma (sm_80+), for
    float32 (TF32) only when tf32_allowed()."""
    if dtype_unsupported_reason(op, version, dtype) is not None:
        return False
    if runs_on_tf32(op, version, dtype) and not tf32_allowed():
        return False
    if (op, base_version(version)) in WGMMA_VERSIONS:
        return dtype is not None and arch == WGMMA_ARCH
    if (op, base_version(version)) in TENSOR_CORE_VERSIONS:
        return dtype is not None and arch is not None and arch >= TENSOR_CORE_MIN_ARCH
    return True


def tensor_core_suits(op: str, g) -> bool:
    """v3's heuristic: the GEMM is large and fills its 128 x 64 x 32 tiles reasonably.
    fprop / dgrad: at least 32 columns (filters; dgrad: channels), a reduction of at least 64,
    256 pixels. wgrad: at least 32 filters and 64 (c, r, s) taps per group, a reduction
    (N*P*Q) of at least 256. v2's CUDA-core tiles otherwise."""
    if op == "wgrad":
        Kg, CRS, NPQ = _gemm_shape(op, g)
        return Kg >= 32 and CRS >= 64 and NPQ >= 256
    M, Ncols, Kred = _gemm_shape(op, g)
    return Ncols >= 32 and Kred >= 64 and M >= 256


def v2_small_tiles_suit(op: str, g, sms: int | None) -> bool:
    """fprop / dgrad v2's 64x32 tiles instead of 128x64: when 128x64 tiles would leave some of
    the device's ``sms`` multiprocessors without a block (a small GEMM; 64x32 gives 4x the
    blocks). Never without ``sms`` (the CPU runtime)."""
    if sms is None or (op, "v2") not in TILE_CONFIGS:
        return False
    M, Ncols, _ = _gemm_shape(op, g)
    default = TILE_CONFIGS[(op, "v2")][0]
    return _cdiv(M, default.BM) * _cdiv(Ncols, default.BN) * g.groups < sms


def heuristic_version(op: str, g, dtype=None, arch: int | None = None,
                      layout: str = "nchw", sms: int | None = None) -> str:
    """The version the heuristic picks for ``op`` on geometry ``g`` (no measurement).

    * fprop / dgrad: v2 (implicit GEMM) when one group's GEMM fills a tile reasonably: at least
      16 GEMM columns (filters for fprop, channels per group for dgrad), a reduction of at
      least 16 and at least 32 GEMM rows (pixels). Depthwise and few-channels-per-group
      convolutions (1-2 columns of a 64-wide tile) and tiny problems keep v1.
    * fprop / dgrad / wgrad v3 (tensor cores) instead of v2 when ``dtype`` is 16-bit (or
      float32 on TF32, inside :func:`allow_tf32` only), ``arch``
      (the device's compute capability, e.g. 90) is at least 80 and :func:`tensor_core_suits`;
      never without dtype and arch (so never on the CPU runtime, where mma is emulated).
    * fprop / dgrad / wgrad v4 (v3 on channels-last tensors) instead of v3 when the arrays are
      channels-last (``layout='nhwc'``): it runs them as they are, where every other version
      needs a conversion to NCHW and back. On NCHW arrays v4 would need the conversions
      itself, so the heuristic never picks it there (autotune may, if it measures it faster).
    * fprop / dgrad v2's tile configuration: ``'v2:64x32'`` when 128x64 tiles would leave some
      of the device's ``sms`` multiprocessors idle (:func:`v2_small_tiles_suit`), else
      ``'v2'`` (128x64). Never ``'v2:128x128'`` (8 x 8 per thread, one block per SM): not
      timed on a GPU yet; autotune times it.
    * Never fprop / dgrad / wgrad v5 (wgmma): not timed on a GPU yet; autotune times it on
      devices of compute capability 9.0 (where it runs as wgmma), ``version='v5'`` runs it.
    * wgrad: v2 (split-K GEMM) when the reduction N*P*Q is long (>= 256: v1 would run it
      serially in one thread per dw element, with only K*C/groups*R*S threads - a few thousand
      for a depthwise layer) or the filter GEMM is at least 16 x 16.
    * bgrad: v2 (block tree per filter) when N*P*Q >= 256; v3 (channels-last dy read as it
      is) always for channels-last dy (``layout='nhwc'``; it needs no tensor cores), never on
      NCHW dy (it would need a copy to NHWC).
    * max-pool: v2 (2-D launch, 32-bit in-plane index math) whenever it supports the geometry.
      Never v3 (v2 vectorized): it has not been timed on a GPU yet, and becomes the default only
      once a benchmark shows it faster; autotune (``$GPUCONV_AUTOTUNE=1``) times it with the
      others, and ``version='v3'`` runs it.
    """
    if op in ("fprop", "dgrad"):
        M, Ncols, Kred = _gemm_shape(op, g)
        pick = "v2" if (Ncols >= 16 and Kred >= 16 and M >= 32) else "v1"
    elif op == "wgrad":
        M, Ncols, Kred = _gemm_shape(op, g)
        pick = "v2" if (Kred >= 256 or (M >= 16 and Ncols >= 16)) else "v1"
    elif op == "bgrad":
        if layout == "nhwc" and supports(op, "v3", g) and runs_well_here(op, "v3", dtype, arch):
            return "v3"
        pick = "v2" if g.N * g.P * g.Q >= 256 else "v1"
    elif op in ("pool_fwd", "pool_bwd"):
        pick = "v2"
    else:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if (op in ("fprop", "dgrad", "wgrad") and pick == "v2"
            and runs_well_here(op, "v3", dtype, arch)
            and tensor_core_suits(op, g) and supports(op, "v3", g)):
        # float16 / bfloat16 on sm_80+ (dtype and arch given): tensor cores
        nhwc = layout == "nhwc" and (op, "v4") in NHWC_VERSIONS and supports(op, "v4", g)
        return "v4" if nhwc else "v3"
    if pick == "v2" and v2_small_tiles_suit(op, g, sms):
        small = f"v2:{TILE_CONFIGS[(op, 'v2')][2].shape}"
        if supports(op, small, g):
            return small
    return pick if supports(op, pick, g) else "v1"


ENV_VERSION = "GPUCONV_KERNEL_VERSION"
ENV_AUTOTUNE = "GPUCONV_AUTOTUNE"


def env_versions() -> dict[str, str]:
    """$GPUCONV_KERNEL_VERSION parsed: ``'v2'`` -> every op; ``'fprop=v1,wgrad=v2'`` -> per op."""
    text = os.environ.get(ENV_VERSION, "").strip()
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            op, version = (part.strip() for part in item.split("=", 1))
            if op not in OPS:
                raise ValueError(f"{ENV_VERSION}: unknown op {op!r} in {text!r}; ops: {OPS}")
            out[op] = version
        else:
            out.update({op: item for op in OPS})
    for op, version in out.items():
        if version not in variants(op):
            raise ValueError(f"{ENV_VERSION}: {op} has versions {variants(op)}, got {version!r}")
    return out


_forced_versions: contextvars.ContextVar[dict] = contextvars.ContextVar(
    "gpuconv_forced_versions", default={})


@contextlib.contextmanager
def use_versions(**versions):
    """Inside the block, run these versions (``use_versions(fprop="v1", wgrad="v2")``): like
    $GPUCONV_KERNEL_VERSION, but local to the thread or task. ``gpuconv check`` uses it to run
    every version of every kernel."""
    for op, version in versions.items():
        if op not in OPS or version not in variants(op):
            raise ValueError(f"use_versions: unknown op or version {op}={version!r}; versions: "
                             f"{ {o: variants(o) for o in OPS} }")
    token = _forced_versions.set({**_forced_versions.get(), **versions})
    try:
        yield
    finally:
        _forced_versions.reset(token)


def select_version(op: str, g, dtype=None, rt=None, version: str | None = None,
                   launch=None, layout: str = "nchw") -> str:
    """The version of ``op`` to run on ``g``: argument, use_versions, env override, autotune,
    heuristic.

    ``launch(version)`` runs one candidate (autotune times it); without it, or without a GPU
    runtime, autotune falls back to the heuristic. ``layout``: 'nchw', or 'nhwc' for
    channels-last arrays (fprop; see heuristic_version).
    """
    how = "version="
    if version is None:
        version, how = _forced_versions.get().get(op), "use_versions"
    if version is None:
        version, how = env_versions().get(op), ENV_VERSION
    if version is not None:
        reason = unsupported_reason(op, version, g)
        if reason is not None:
            raise ValueError(f"{op} {version} (from {how}) cannot run this geometry: {reason}")
        reason = dtype_unsupported_reason(op, version, dtype)
        if reason is not None:
            raise ValueError(f"{op} {version} (from {how}) cannot run this dtype: {reason}")
        failure = self_check_failure(rt, op, version, dtype)
        if failure is not None:
            raise RuntimeError(f"{op} {version} (from {how}) failed gpuconv's self-check on this "
                               f"device: {failure}")
        return version
    if (launch is not None and rt is not None and getattr(rt, "name", None) == "cuda"
            and os.environ.get(ENV_AUTOTUNE, "") not in ("", "0")):
        return autotune(op, g, dtype, rt, launch, layout)
    pick = heuristic_version(op, g, dtype, device_arch(rt), layout, device_sms(rt))
    # A pick that fails its self-check falls back to v2 (CUDA cores), then to v1 (every op
    # has both).
    for candidate in dict.fromkeys((pick, "v2", "v1")):
        if supports(op, candidate, g) and self_check_failure(rt, op, candidate, dtype) is None:
            return candidate
    raise RuntimeError(f"every {op} version gpuconv would fall back to failed its self-check on "
                       f"this device: {self_check_failure(rt, op, 'v1', dtype)}")


# ----------------------------------------------------------------------------------------
# self-check: before a version's first use on a GPU, once per process, device model, op and
# dtype, it runs on small built-in problems against the NumPy reference. None of gpuconv's
# kernels had run on a GPU when they were written (the CPU runtime tests them): a version that
# gives wrong results there is then never chosen on that device (a warning says so), and an
# explicit request for it raises RuntimeError. A smoke test on two problems per op (a wrong
# kernel may pass it), not a proof.

ENV_SELF_CHECK = "GPUCONV_SELF_CHECK"  # "0": off
SELF_CHECK_RUNTIMES = ("cuda",)        # the runtimes checked (tests add the CPU runtime)
_self_checks: dict[tuple, str | None] = {}  # (device, op, version, dtype) -> failure or None
_self_check_lock = threading.Lock()
_self_checking: contextvars.ContextVar[bool] = contextvars.ContextVar("gpuconv_self_checking",
                                                                      default=False)


def self_check_failure(rt, op: str, version: str, dtype) -> str | None:
    """None when ``version`` of ``op`` gave the reference's results in its self-check on rt's
    device (run on first use: once per process, device model, op, version and dtype), or when
    no check applies (other runtimes, $GPUCONV_SELF_CHECK=0); else what went wrong. An error
    that is not the kernel's (out of memory, a CUDA graph being captured) propagates and is
    not remembered."""
    if (getattr(rt, "name", None) not in SELF_CHECK_RUNTIMES or dtype is None
            or _self_checking.get() or os.environ.get(ENV_SELF_CHECK, "1") == "0"):
        return None
    device = _device_key(rt) if rt.name == "cuda" else f"{rt.name} {id(rt)}"
    key = (device, op, version, np.dtype(dtype).name)
    with _self_check_lock:
        if key in _self_checks:
            return _self_checks[key]
    failure = run_self_check(rt, op, version, dtype)
    with _self_check_lock:
        _self_checks[key] = failure
    if failure is not None:
        warnings.warn(f"gpuconv: {op} {version} ({np.dtype(dtype).name}) failed its self-check on "
                      f"this device and will not be used here: {failure}", RuntimeWarning,
                      stacklevel=2)
    return failure


def clear_self_checks() -> None:
    with _self_check_lock:
        _self_checks.clear()


def _capturing(rt) -> bool:
    """Whether rt's current CUDA stream is capturing a CUDA graph (no host copies then)."""
    if rt.name != "cuda":
        return False
    try:
        import cupy

        return bool(cupy.cuda.get_current_stream().is_capturing())
    except Exception:
        return False


def _kernel_error(exc: BaseException) -> bool:
    """Whether an exception raised by a check is the kernel's own failure (it cannot be built
    or loaded for this device) rather than the circumstances' (memory, a sticky earlier error)."""
    text = f"{type(exc).__name__} {exc}"
    return any(s in text for s in ("CompileError", "CompileException", "no kernel image",
                                   "INVALID_PTX", "invalid PTX", "UNSUPPORTED_PTX"))


def run_self_check(rt, op: str, version: str, dtype) -> str | None:
    """Run ``version`` of ``op`` on rt on each self-check problem and compare with the
    reference (TF32 versions on float32 against their error bound): None if it matches, else
    what went wrong. A build or load error counts as a failure; other errors propagate."""
    from . import problems

    if _capturing(rt):
        raise RuntimeError("gpuconv's self-check cannot run while a CUDA graph is captured: "
                           f"run {op} once before the capture, or set {ENV_SELF_CHECK}=0")
    family = problems.SELF_CHECK_POOL if op in ("pool_fwd", "pool_bwd") else \
        problems.SELF_CHECK_CONV
    token = _self_checking.set(True)  # the check's own launches are not checked again
    try:
        for problem in family:
            try:
                failure = _self_check(rt, op, version, np.dtype(dtype), problem)
            except Exception as exc:
                if not _kernel_error(exc):
                    exc.add_note(f"(in gpuconv's self-check of {op} {version}; "
                                 f"{ENV_SELF_CHECK}=0 turns it off)")
                    raise
                return f"it raised {exc!r}"
            if failure is not None:
                return failure
        return None
    finally:
        _self_checking.reset(token)


def _self_check(rt, op: str, version: str, dtype: np.dtype, problem) -> str | None:
    """One self-check problem: None if the version matches the reference on it."""
    from . import checking, reference
    from .geometry import conv2d_geometry, pool2d_geometry

    xp = rt.xp
    host = (lambda a: a.get()) if xp is not np else np.asarray
    bound = None
    if op in ("pool_fwd", "pool_bwd"):
        g = pool2d_geometry(problem.x_shape, **problem.kwargs)
        if not supports(op, version, g):
            return f"it cannot run its self-check problem {problem.name}"
        x, dy = checking.pool_inputs(problem, dtype)
        want_y, want_idx = reference.max_pool2d(x, g)
        if op == "pool_fwd":
            y, idx = xp.empty(g.y_shape, dtype), xp.empty(g.y_shape, np.int64)
            maxpool2d_fwd(rt, g, xp.asarray(x), y, idx, version)
            if not np.array_equal(host(idx), want_idx):
                return f"wrong max-pool indices on {problem.name}"
            got, want = host(y), want_y
        else:
            dx = xp.empty(g.x_shape, dtype)
            maxpool2d_bwd(rt, g, xp.asarray(dy), xp.asarray(want_idx), dx, version)
            got, want = host(dx), reference.max_pool2d_input(dy, want_idx, g)
    else:
        g = conv2d_geometry(problem.x_shape, problem.w_shape, **problem.kwargs)
        if not supports(op, version, g):
            return f"it cannot run its self-check problem {problem.name}"
        x, w, b, dy = checking.conv_inputs(problem, dtype)
        X, W, DY = xp.asarray(x), xp.asarray(w), xp.asarray(dy)
        operands = None
        if op == "fprop":
            out = xp.empty(g.y_shape, dtype)
            conv2d_fprop(rt, g, X, W, None if b is None else xp.asarray(b), out, version)
            want, operands = reference.conv2d(x, w, b, g), (x, w)
        elif op == "dgrad":
            out = xp.empty(g.x_shape, dtype)
            conv2d_dgrad(rt, g, DY, W, out, version)
            want, operands = reference.conv2d_input(dy, w, g), (dy, w)
        elif op == "wgrad":
            out = xp.empty(g.w_shape, dtype)
            conv2d_wgrad(rt, g, X, DY, out, version)
            want, operands = reference.conv2d_weight(x, dy, g), (x, dy)
        else:  # bgrad
            out = xp.empty((g.K,), dtype)
            conv2d_bgrad(rt, g, DY, out, version)
            want = reference.conv2d_bias(dy)
        if operands is not None and runs_on_tf32(op, version, dtype):
            bound = checking.tf32_bound(op, g, *operands)
        got = host(out)
    result = checking.compare(got, want, dtype, bound=bound)
    return None if result else f"max error {result.max_error:.3g} on {problem.name}"


# ----------------------------------------------------------------------------------------
# autotune: time each candidate once per (device, op, dtype, geometry), cache the winner

_tune_lock = threading.Lock()
_tune_memory: dict[str, str] = {}
AUTOTUNE_FILE = "autotune.json"


def autotune_cache_path() -> Path:
    root = os.environ.get("GPUCONV_CACHE_DIR")
    if root:
        return Path(root) / AUTOTUNE_FILE
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "gpuconv" / AUTOTUNE_FILE


def _device_key(rt) -> str:
    """Names the current device's model (name and compute capability): what autotune's choices
    and the self-checks are kept per. Cheap after the first call per device."""
    import cupy

    return _device_label(cupy.cuda.Device().id)


@functools.lru_cache(maxsize=None)
def _device_label(device_id: int) -> str:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(device_id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"{name} sm_{props['major']}{props['minor']}"


def _time_launch(rt, launch) -> float:
    """Milliseconds of one ``launch()`` on the current CuPy stream, by CUDA events: one
    warm-up (compile, caches), then the best of 3."""
    import cupy

    launch()
    best = float("inf")
    for _ in range(3):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        launch()
        stop.record()
        stop.synchronize()
        best = min(best, cupy.cuda.get_elapsed_time(start, stop))
    return best


def autotune_key(device: str, op: str, dtype, g, layout: str = "nchw") -> str:
    """The cache key of one choice. float32 with TF32 allowed has candidates of its own, so
    its choices are kept apart ('float32+tf32'), and so are channels-last arrays' ('fprop/nhwc':
    the versions that convert them pay for it)."""
    fields = ",".join(f"{k}={v}" for k, v in sorted(vars(g).items()))
    name = np.dtype(dtype).name
    if name == "float32" and tf32_allowed():
        name += "+tf32"
    if layout != "nchw":
        op = f"{op}/{layout}"
    return f"{device}|{op}|{name}|{fields}"


# An entry: {"version": the winner, "candidates": what it was timed against}. A choice made
# among other candidates (a version or tile configuration added since, or an older format
# whose entries were bare version strings) is re-timed.
AUTOTUNE_FORMAT = 2


def _read_cache_file(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
        entries = data.get("entries", {}) if isinstance(data, dict) else {}
        return {str(k): v for k, v in entries.items() if isinstance(v, dict)}
    except (OSError, ValueError):
        return {}  # missing or unreadable (e.g. half-written by an old crash): start afresh


def _write_cache_entry(path: Path, key: str, version: str, candidates: list[str]) -> None:
    """Merge one entry into the JSON file; write a temporary file, then rename it over."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read_cache_file(path)
        entries[key] = {"version": version, "candidates": list(candidates)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".autotune-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"format": AUTOTUNE_FORMAT, "entries": entries}, f, indent=1,
                      sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder only costs re-tuning in the next process


def clear_autotune_memory() -> None:
    with _tune_lock:
        _tune_memory.clear()


def autotune(op: str, g, dtype, rt, launch, layout: str = "nchw") -> str:
    """The fastest supported version of ``op`` for ``g`` on this device (cached)."""
    key = autotune_key(_device_key(rt), op, dtype, g, layout)
    with _tune_lock:
        if key in _tune_memory:
            return _tune_memory[key]
    path = autotune_cache_path()
    arch = device_arch(rt)
    candidates = [v for v in variants(op)
                  if supports(op, v, g) and runs_well_here(op, v, dtype, arch)
                  and self_check_failure(rt, op, v, dtype) is None]
    if not candidates:
        raise RuntimeError(f"every {op} version failed gpuconv's self-check on this device")
    if len(candidates) == 1:  # nothing to choose between: no timing, no file entry
        return candidates[0]
    cached = _read_cache_file(path).get(key, {})
    if cached.get("candidates") == candidates and cached.get("version") in candidates:
        with _tune_lock:
            _tune_memory[key] = cached["version"]
        return cached["version"]
    times = {v: _time_launch(rt, lambda v=v: launch(v)) for v in candidates}
    best = min(candidates, key=lambda v: (times[v], v))
    with _tune_lock:
        _tune_memory[key] = best
    _write_cache_entry(path, key, best, candidates)
    return best


# ----------------------------------------------------------------------------------------
# conv2d


def _gemm_grid(tiles: "GemmTiles | MmaTiles", M: int, Ncols: int, z: int) -> tuple[tuple, tuple]:
    return (_cdiv(M, tiles.BM), _cdiv(Ncols, tiles.BN), z), (tiles.threads,)


def _fprop_launch(rt, g, version, x, w, b, y) -> None:
    if ("fprop", base_version(version)) in NHWC_VERSIONS:  # NCHW in and out: converted, counted
        xp = rt.xp
        y_nhwc = xp.empty((g.N, g.P, g.Q, g.K), y.dtype)
        _fprop_nhwc_launch(rt, g, xp.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                           xp.ascontiguousarray(w.transpose(0, 2, 3, 1)), b, y_nhwc, version)
        y[...] = y_nhwc.transpose(0, 3, 1, 2)
        return
    has_bias = b is not None
    if not has_bias:
        b = rt.xp.zeros(1, y.dtype)  # a valid pointer the kernel never reads (has_bias = 0)
    args = [x, w, b, np.int32(has_bias), y] + _conv_sizes(g)
    if version == "v1":
        _launch(rt, "conv2d_fprop.cu", "conv2d_fprop_v1_direct", y.dtype,
                g.N * g.K * g.P * g.Q, args)
    elif version == "v3":  # tensor cores: the same grid over FPROP_V3's tiles
        M, Ncols, _ = _gemm_shape("fprop", g)
        grid, block = _gemm_grid(FPROP_V3, M, Ncols, g.groups)
        _launch_grid(rt, "fprop", version, y.dtype, grid, block, args)
    else:  # v2 (any tile configuration): grid (row tiles of N*P*Q, filter tiles, groups)
        M, Ncols, _ = _gemm_shape("fprop", g)
        grid, block = _gemm_grid(split_version("fprop", version)[1], M, Ncols, g.groups)
        _launch_grid(rt, "fprop", version, y.dtype, grid, block, args)


def _fprop_nhwc_launch(rt, g, x, w, b, y, version="v4") -> None:
    """v4 or v5 (any tile configuration) on channels-last arrays: x (N,H,W,C),
    w (K,R,S,C/groups), y (N,P,Q,K), C-contiguous; the grid of v3's tiles or the
    configuration's."""
    if b is None:
        b, has_bias = rt.xp.zeros(1, y.dtype), 0  # a valid pointer the kernel never reads
    else:
        has_bias = 1
    M, Ncols, _ = _gemm_shape("fprop", g)
    grid, block = _gemm_grid(split_version("fprop", version)[1] or FPROP_V3, M, Ncols, g.groups)
    _launch_grid(rt, "fprop", version, y.dtype, grid, block,
                 [x, w, b, np.int32(has_bias), y] + _conv_sizes(g))


def conv2d_fprop(rt, g, x, w, b, y, version: str | None = None) -> None:
    """y (N,K,P,Q) = conv2d(x (N,C,H,W), w (K,C/groups,R,S)) + b (K,) or no bias (b None)."""
    v = select_version("fprop", g, y.dtype, rt, version,
                       lambda v: _fprop_launch(rt, g, v, x, w, b, y))
    _fprop_launch(rt, g, v, x, w, b, y)


def _on_nchw_copies(rt, launch, inputs, out) -> None:
    """An NCHW version on channels-last arrays: launch(*NCHW copies of ``inputs``, an NCHW
    result), then the result copied into ``out`` (NHWC order, like the inputs)."""
    xp = rt.xp
    nchw = [xp.ascontiguousarray(a.transpose(0, 3, 1, 2)) for a in inputs]
    result = xp.empty(tuple(out.shape[i] for i in (0, 3, 1, 2)), out.dtype)
    launch(*nchw, result)
    out[...] = result.transpose(0, 2, 3, 1)


def _fprop_nhwc_any(rt, g, version, x, w, b, y) -> None:
    if ("fprop", base_version(version)) in NHWC_VERSIONS:
        _fprop_nhwc_launch(rt, g, x, w, b, y, version)
        return
    _on_nchw_copies(rt, lambda x, w, y: _fprop_launch(rt, g, version, x, w, b, y), [x, w], y)


def conv2d_fprop_nhwc(rt, g, x, w, b, y, version: str | None = None) -> None:
    """conv2d_fprop on channels-last arrays: y (N,P,Q,K) = conv2d(x (N,H,W,C),
    w (K,R,S,C/groups)) + b, all C-contiguous. v4 runs them as they are; any other version
    converts them to NCHW and back (selection: layout 'nhwc')."""
    v = select_version("fprop", g, y.dtype, rt, version,
                       lambda v: _fprop_nhwc_any(rt, g, v, x, w, b, y), layout="nhwc")
    _fprop_nhwc_any(rt, g, v, x, w, b, y)


def _dgrad_launch(rt, g, version, dy, w, dx) -> None:
    if ("dgrad", base_version(version)) in NHWC_VERSIONS:  # NCHW in and out: converted, counted
        xp = rt.xp
        dx_nhwc = xp.empty((g.N, g.H, g.W, g.C), dx.dtype)
        _dgrad_nhwc_launch(rt, g, xp.ascontiguousarray(dy.transpose(0, 2, 3, 1)),
                           _dgrad_v4_filters(xp, g, w), dx_nhwc, version)
        dx[...] = dx_nhwc.transpose(0, 3, 1, 2)
        return
    args = [dy, w, dx] + _conv_sizes(g)
    if version == "v1":
        _launch(rt, "conv2d_dgrad.cu", "conv2d_dgrad_v1_direct", dx.dtype,
                g.N * g.C * g.H * g.W, args)
    elif version == "v3":  # tensor cores: the same grid over DGRAD_V3's tiles
        M, Ncols, _ = _gemm_shape("dgrad", g)
        grid, block = _gemm_grid(DGRAD_V3, M, Ncols, g.groups)
        _launch_grid(rt, "dgrad", version, dx.dtype, grid, block, args)
    else:  # v2 (any tile configuration): grid (row tiles of N*H*W, channel tiles, groups)
        M, Ncols, _ = _gemm_shape("dgrad", g)
        grid, block = _gemm_grid(split_version("dgrad", version)[1], M, Ncols, g.groups)
        _launch_grid(rt, "dgrad", version, dx.dtype, grid, block, args)


def _dgrad_v4_filters(xp, g, w, layout: str = "nchw"):
    """dgrad v4's filters w_t (C, R, S, K/groups) from w (K, C/groups, R, S), or from w in
    (K, R, S, C/groups) order (``layout='nhwc'``): per group, channel-major with the group's
    filters innermost."""
    G, Kg, Cg = g.groups, g.K_per_group, g.C_per_group
    if layout == "nhwc":
        w = w.transpose(0, 3, 1, 2)  # (K, Cg, R, S)
    w5 = w.reshape(G, Kg, Cg, g.R, g.S)
    return xp.ascontiguousarray(w5.transpose(0, 2, 3, 4, 1)).reshape(g.C, g.R, g.S, Kg)


def _dgrad_nhwc_launch(rt, g, dy, w_t, dx, version="v4") -> None:
    """dgrad v4 or v5 (any tile configuration) on channels-last arrays: dy (N,P,Q,K),
    w_t (C,R,S,K/groups), dx (N,H,W,C); the grid of v3's tiles or the configuration's."""
    M, Ncols, _ = _gemm_shape("dgrad", g)
    grid, block = _gemm_grid(split_version("dgrad", version)[1] or DGRAD_V3, M, Ncols, g.groups)
    _launch_grid(rt, "dgrad", version, dx.dtype, grid, block, [dy, w_t, dx] + _conv_sizes(g))


def conv2d_dgrad(rt, g, dy, w, dx, version: str | None = None) -> None:
    """dx (N,C,H,W) = gradient of conv2d with respect to x, from dy (N,K,P,Q) and w."""
    v = select_version("dgrad", g, dx.dtype, rt, version,
                       lambda v: _dgrad_launch(rt, g, v, dy, w, dx))
    _dgrad_launch(rt, g, v, dy, w, dx)


def _dgrad_nhwc_any(rt, g, version, dy, w, dx) -> None:
    if ("dgrad", base_version(version)) in NHWC_VERSIONS:
        _dgrad_nhwc_launch(rt, g, dy, _dgrad_v4_filters(rt.xp, g, w, "nhwc"), dx, version)
        return
    _on_nchw_copies(rt, lambda dy, w, dx: _dgrad_launch(rt, g, version, dy, w, dx), [dy, w], dx)


def conv2d_dgrad_nhwc(rt, g, dy, w, dx, version: str | None = None) -> None:
    """conv2d_dgrad on channels-last arrays: dx (N,H,W,C) from dy (N,P,Q,K) and
    w (K,R,S,C/groups), all C-contiguous. v4 runs them as they are (its filters transposed,
    a small copy); any other version converts them to NCHW and back (layout 'nhwc')."""
    v = select_version("dgrad", g, dx.dtype, rt, version,
                       lambda v: _dgrad_nhwc_any(rt, g, v, dy, w, dx), layout="nhwc")
    _dgrad_nhwc_any(rt, g, v, dy, w, dx)


def _wgrad_launch(rt, g, version, x, dy, dw) -> None:
    if version == "v1":
        _launch(rt, "conv2d_wgrad.cu", "conv2d_wgrad_v1_direct", dw.dtype,
                g.K * g.C_per_group * g.R * g.S, [x, dy, dw] + _conv_sizes(g))
    elif ("wgrad", base_version(version)) in NHWC_VERSIONS:  # NCHW in and out: converted, counted
        xp = rt.xp
        dw_krsc = xp.empty((g.K, g.R, g.S, g.C_per_group), dw.dtype)
        _wgrad_gemm_launch(rt, g, version, xp.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                           xp.ascontiguousarray(dy.transpose(0, 2, 3, 1)), dw_krsc)
        dw[...] = dw_krsc.transpose(0, 3, 1, 2)
    else:
        _wgrad_gemm_launch(rt, g, version, x, dy, dw)


def _wgrad_gemm_launch(rt, g, version, x, dy, dw) -> None:
    """wgrad v2 / v3 (NCHW arrays) or v4 / v5 (x (N,H,W,C), dy (N,P,Q,K), dw (K,R,S,C/groups)).
    v2: grid (filter tiles of K/groups, column tiles of C/groups*R*S, groups*splits); v3 to v5
    (tensor cores) the transpose: (tap tiles, filter tiles, groups*splits). With splits > 1
    each block writes a partial sum into a workspace (accumulator dtype) and a second,
    grid-stride kernel adds the partials in split order into dw."""
    (M, Ncols, _), tiles = _wgrad_gemm(g, version)
    splits = wgrad_splits(g, version)
    acc_dtype = np.float64 if np.dtype(dw.dtype) == np.float64 else np.float32
    count = g.K * g.C_per_group * g.R * g.S
    workspace = rt.xp.empty(count * splits if splits > 1 else 1, acc_dtype)
    grid, block = _gemm_grid(tiles, M, Ncols, g.groups * splits)
    _launch_grid(rt, "wgrad", version, dw.dtype, grid, block,
                 [x, dy, dw, workspace, np.int32(splits)] + _conv_sizes(g))
    if splits > 1:
        _launch(rt, "conv2d_wgrad.cu", "conv2d_wgrad_v2_sum_splits", dw.dtype, count,
                [workspace, dw, np.int64(count), np.int32(splits)])


def conv2d_wgrad(rt, g, x, dy, dw, version: str | None = None) -> None:
    """dw (K,C/groups,R,S) = gradient of conv2d with respect to w, from x and dy."""
    if g.N == 0:  # an empty batch: the sums are empty, and the contract is to do nothing
        return
    v = select_version("wgrad", g, dw.dtype, rt, version,
                       lambda v: _wgrad_launch(rt, g, v, x, dy, dw))
    _wgrad_launch(rt, g, v, x, dy, dw)


def _wgrad_nhwc_any(rt, g, version, x, dy, dw) -> None:
    if ("wgrad", base_version(version)) in NHWC_VERSIONS:
        _wgrad_gemm_launch(rt, g, version, x, dy, dw)
        return
    _on_nchw_copies(rt, lambda x, dy, dw: _wgrad_launch(rt, g, version, x, dy, dw), [x, dy], dw)


def conv2d_wgrad_nhwc(rt, g, x, dy, dw, version: str | None = None) -> None:
    """conv2d_wgrad on channels-last arrays: dw (K,R,S,C/groups) from x (N,H,W,C) and
    dy (N,P,Q,K), all C-contiguous. v4 and v5 run them as they are; any other version converts
    them to NCHW and back (selection: layout 'nhwc')."""
    if g.N == 0:
        return
    v = select_version("wgrad", g, dw.dtype, rt, version,
                       lambda v: _wgrad_nhwc_any(rt, g, v, x, dy, dw), layout="nhwc")
    _wgrad_nhwc_any(rt, g, v, x, dy, dw)


def _bgrad_launch(rt, g, version, dy, db) -> None:
    if version == "v3":  # channels-last kernel: NCHW dy converted here (and counted)
        _bgrad_nhwc_launch(rt, g, rt.xp.ascontiguousarray(dy.transpose(0, 2, 3, 1)), db)
        return
    args = [dy, db] + _i32(N=g.N, K=g.K, P=g.P, Q=g.Q)
    if version == "v1":
        _launch(rt, "conv2d_wgrad.cu", "conv2d_bgrad_v1_direct", db.dtype, g.K, args)
    else:  # v2: one block per filter (block-stride over K past the grid's cap)
        _launch_grid(rt, "bgrad", version, db.dtype, (min(g.K, MAX_GRID_X),),
                     (BGRAD_V2_THREADS,), args)


def conv2d_bgrad(rt, g, dy, db, version: str | None = None) -> None:
    """db (K,) = gradient of conv2d with respect to its bias: dy summed over n, p, q."""
    if g.N == 0:
        return
    v = select_version("bgrad", g, db.dtype, rt, version, lambda v: _bgrad_launch(rt, g, v, dy, db))
    _bgrad_launch(rt, g, v, dy, db)


def _bgrad_nhwc_launch(rt, g, dy, db) -> None:
    """bgrad v3 on channels-last dy (N,P,Q,K), C-contiguous: grid (filter blocks of
    BGRAD_V3_BLOCK[0], capped at BGRAD_V3_MAX_GRID_X; splits), block BGRAD_V3_BLOCK. With
    splits > 1 each block writes partial sums into a workspace (accumulator dtype) and wgrad's
    second pass adds them in split order into db."""
    splits = bgrad_splits(g)
    acc_dtype = np.float64 if np.dtype(db.dtype) == np.float64 else np.float32
    workspace = rt.xp.empty(g.K * splits if splits > 1 else 1, acc_dtype)
    grid = (min(_cdiv(g.K, BGRAD_V3_BLOCK[0]), BGRAD_V3_MAX_GRID_X), splits)
    _launch_grid(rt, "bgrad", "v3", db.dtype, grid, BGRAD_V3_BLOCK,
                 [dy, db, workspace, np.int32(splits)] + _i32(N=g.N, K=g.K, P=g.P, Q=g.Q))
    if splits > 1:
        _launch(rt, "conv2d_wgrad.cu", "conv2d_wgrad_v2_sum_splits", db.dtype, g.K,
                [workspace, db, np.int64(g.K), np.int32(splits)])


def _bgrad_nhwc_any(rt, g, version, dy, db) -> None:
    if version == "v3":
        _bgrad_nhwc_launch(rt, g, dy, db)
    else:  # an NCHW version: sum an NCHW copy
        _bgrad_launch(rt, g, version, rt.xp.ascontiguousarray(dy.transpose(0, 3, 1, 2)), db)


def conv2d_bgrad_nhwc(rt, g, dy, db, version: str | None = None) -> None:
    """conv2d_bgrad on channels-last dy (N,P,Q,K), C-contiguous: db (K,) = dy summed over n,
    p, q. v3 reads dy as it is; v1 / v2 sum an NCHW copy (selection: layout 'nhwc')."""
    if g.N == 0:
        return
    v = select_version("bgrad", g, db.dtype, rt, version,
                       lambda v: _bgrad_nhwc_any(rt, g, v, dy, db), layout="nhwc")
    _bgrad_nhwc_any(rt, g, v, dy, db)


# ----------------------------------------------------------------------------------------
# max-pool


def _pool_grid(version: str, cols: int, rows: int, planes: int) -> tuple[tuple, tuple]:
    """v2: one element per thread; v3: POOL_V3_VEC consecutive columns per thread."""
    (bx, by), per_thread = (POOL_V2_BLOCK, 1) if version == "v2" else (POOL_V3_BLOCK, POOL_V3_VEC)
    return ((_cdiv(cols, bx * per_thread), _cdiv(rows, by), min(planes, POOL_V2_MAX_GRID_Z)),
            (bx, by))


def _pool_fwd_launch(rt, g, version, x, y, idx) -> None:
    args = [x, y, idx] + _pool_sizes(g)
    if version == "v1":
        _launch(rt, "maxpool2d.cu", "maxpool2d_fwd_v1_direct", y.dtype, g.N * g.C * g.P * g.Q,
                args)
    else:  # v2 / v3: blocks of 32 (v3: 32 x 4) x 8 outputs of one plane; grid z loops over
        # the N*C planes
        grid, block = _pool_grid(version, g.Q, g.P, g.N * g.C)
        _launch_grid(rt, "pool_fwd", version, y.dtype, grid, block, args)


def maxpool2d_fwd(rt, g, x, y, idx, version: str | None = None) -> None:
    """y, idx (N,C,P,Q) = max-pool of x (N,C,H,W); idx int64, h*W+w within each plane."""
    v = select_version("pool_fwd", g, y.dtype, rt, version,
                       lambda v: _pool_fwd_launch(rt, g, v, x, y, idx))
    _pool_fwd_launch(rt, g, v, x, y, idx)


def _pool_bwd_launch(rt, g, version, dy, idx, dx) -> None:
    args = [dy, idx, dx] + _pool_sizes(g)
    if version == "v1":
        _launch(rt, "maxpool2d.cu", "maxpool2d_bwd_v1_gather", dx.dtype, g.N * g.C * g.H * g.W,
                args)
    else:  # v2 / v3: blocks of 32 (v3: 32 x 4) x 8 dx elements of one plane; grid z loops
        # over the planes
        grid, block = _pool_grid(version, g.W, g.H, g.N * g.C)
        _launch_grid(rt, "pool_bwd", version, dx.dtype, grid, block, args)


def maxpool2d_bwd(rt, g, dy, idx, dx, version: str | None = None) -> None:
    """dx (N,C,H,W) = sum of dy over the outputs whose idx points at each element (gather)."""
    v = select_version("pool_bwd", g, dx.dtype, rt, version,
                       lambda v: _pool_bwd_launch(rt, g, v, dy, idx, dx))
    _pool_bwd_launch(rt, g, v, dy, idx, dx)


# ----------------------------------------------------------------------------------------
# avg-pool: cuda/avgpool2d.cu (lp_pool2d runs the same kernels on x**p)
#
# g is a geometry.AvgPool2dGeometry. One version each so far (v1: a 1-D grid-stride launch,
# one thread per output element; the backward a fixed-order gather, no atomics), so they
# stay out of OPS / TEMPLATES (nothing to select).

_add_single_version("avgpool2d.cu", {
    "avgpool_fwd": "avgpool2d_fwd_v1_direct",
    "avgpool_bwd": "avgpool2d_bwd_v1_gather",
})


def _avgpool_sizes(g) -> list:
    """The size arguments both avg-pool kernels take, in the order the kernels declare them
    (divisor_override 0: none)."""
    return _i32(N=g.N, C=g.C, H=g.H, W=g.W, R=g.R, S=g.S, P=g.P, Q=g.Q, pad_h=g.pad_h,
                pad_w=g.pad_w, stride_h=g.stride_h, stride_w=g.stride_w,
                count_include_pad=int(g.count_include_pad),
                divisor_override=g.divisor_override)


def avgpool2d_fwd(rt, g, x, y, version: str | None = None) -> None:
    """y (N,C,P,Q) = avg-pool of x (N,C,H,W), PyTorch's divisor rule."""
    source, kernel = _single_version_kernel("avgpool_fwd", version)
    _launch(rt, source, kernel, y.dtype, g.N * g.C * g.P * g.Q, [x, y] + _avgpool_sizes(g))


def avgpool2d_bwd(rt, g, dy, dx, version: str | None = None) -> None:
    """dx (N,C,H,W) = sum of dy / divisor over the windows holding each element (gather)."""
    source, kernel = _single_version_kernel("avgpool_bwd", version)
    _launch(rt, source, kernel, dx.dtype, g.N * g.C * g.H * g.W, [dy, dx] + _avgpool_sizes(g))


# ----------------------------------------------------------------------------------------
# tiled and locally connected (unshared) conv2d: cuda/local_conv2d.cu
#
# g is a geometry.TiledConv2dGeometry (conv2d's sizes plus the tile TH x TW); a locally
# connected layer is the tile (P, Q). Every kernel is v1: a 1-D grid-stride launch, one thread
# per output element (y, dx, dw, db), fixed-order sums, no atomics.


def _tiled_sizes(g) -> list:
    """conv2d's size arguments (without groups) plus the tile, in the kernels' order."""
    return _i32(N=g.N, C=g.C, H=g.H, W=g.W, K=g.K, R=g.R, S=g.S, P=g.P, Q=g.Q,
                pad_h=g.pad_top, pad_w=g.pad_left, stride_h=g.stride_h, stride_w=g.stride_w,
                dilation_h=g.dilation_h, dilation_w=g.dilation_w, TH=g.TH, TW=g.TW)


def tiled_conv2d_fprop(rt, g, x, w, b, y, version: str | None = None) -> None:
    """y (N,K,P,Q) = tiled conv2d of x (N,C,H,W) with w (TH,TW,K,C,R,S), plus b: None, (K,)
    or (K,TH,TW) (the kernel's has_bias 0, 1, 2)."""
    source, kernel = _single_version_kernel("tiled_fprop", version)
    has_bias = 0 if b is None else (1 if b.ndim == 1 else 2)
    if b is None:
        b = rt.xp.zeros(1, y.dtype)  # a valid pointer the kernel never reads (has_bias = 0)
    _launch(rt, source, kernel, y.dtype, g.N * g.K * g.P * g.Q,
            [x, w, b, np.int32(has_bias), y] + _tiled_sizes(g))


def tiled_conv2d_dgrad(rt, g, dy, w, dx, version: str | None = None) -> None:
    """dx (N,C,H,W) = gradient of the tiled conv2d with respect to x, from dy and w."""
    source, kernel = _single_version_kernel("tiled_dgrad", version)
    _launch(rt, source, kernel, dx.dtype, g.N * g.C * g.H * g.W, [dy, w, dx] + _tiled_sizes(g))


def tiled_conv2d_wgrad(rt, g, x, dy, dw, version: str | None = None) -> None:
    """dw (TH,TW,K,C,R,S) = gradient of the tiled conv2d with respect to w, from x and dy."""
    source, kernel = _single_version_kernel("tiled_wgrad", version)
    _launch(rt, source, kernel, dw.dtype, g.TH * g.TW * g.K * g.C * g.R * g.S,
            [x, dy, dw] + _tiled_sizes(g))


def tiled_conv2d_bgrad(rt, g, dy, db, version: str | None = None) -> None:
    """db (K,TH,TW) = dy summed over n and the output positions that use each bank."""
    source, kernel = _single_version_kernel("tiled_bgrad", version)
    _launch(rt, source, kernel, db.dtype, g.K * g.TH * g.TW,
            [dy, db] + _i32(N=g.N, K=g.K, P=g.P, Q=g.Q, TH=g.TH, TW=g.TW))


# ----------------------------------------------------------------------------------------
# conv3d: cuda/conv3d.cu
#
# g is a geometry.Conv3dGeometry (input D, H, W; filter T, R, S; output O, P, Q). One version
# each so far (v1, direct), so conv3d stays out of OPS / TEMPLATES and $GPUCONV_KERNEL_VERSION
# (nothing to select): a 1-D grid-stride launch, one thread per output element (y, dx, dw),
# fixed-order sums, no atomics. The bias gradient has no kernel here: gpuconv.grad.conv3d_bias
# views dy as (N, K, O, P*Q) and runs conv2d_bgrad.

_add_single_version("conv3d.cu", {
    "conv3d_fprop": "conv3d_fprop_v1_direct",
    "conv3d_dgrad": "conv3d_dgrad_v1_direct",
    "conv3d_wgrad": "conv3d_wgrad_v1_direct",
})


def _conv3d_sizes(g) -> list:
    """The size arguments every conv3d kernel takes, in the order the kernels declare them."""
    return _i32(N=g.N, C=g.C, D=g.D, H=g.H, W=g.W, K=g.K, T=g.T, R=g.R, S=g.S, O=g.O, P=g.P,
                Q=g.Q, pad_d=g.pad_front, pad_h=g.pad_top, pad_w=g.pad_left,
                stride_d=g.stride_d, stride_h=g.stride_h, stride_w=g.stride_w,
                dilation_d=g.dilation_d, dilation_h=g.dilation_h, dilation_w=g.dilation_w,
                groups=g.groups)


def conv3d_fprop(rt, g, x, w, b, y, version: str | None = None) -> None:
    """y (N,K,O,P,Q) = conv3d(x (N,C,D,H,W), w (K,C/groups,T,R,S)) + b (K,) or no bias (None)."""
    source, kernel = _single_version_kernel("conv3d_fprop", version)
    has_bias = b is not None
    if not has_bias:
        b = rt.xp.zeros(1, y.dtype)  # a valid pointer the kernel never reads (has_bias = 0)
    _launch(rt, source, kernel, y.dtype, g.N * g.K * g.O * g.P * g.Q,
            [x, w, b, np.int32(has_bias), y] + _conv3d_sizes(g))


def conv3d_dgrad(rt, g, dy, w, dx, version: str | None = None) -> None:
    """dx (N,C,D,H,W) = gradient of conv3d with respect to x, from dy (N,K,O,P,Q) and w."""
    source, kernel = _single_version_kernel("conv3d_dgrad", version)
    _launch(rt, source, kernel, dx.dtype, g.N * g.C * g.D * g.H * g.W,
            [dy, w, dx] + _conv3d_sizes(g))


def conv3d_wgrad(rt, g, x, dy, dw, version: str | None = None) -> None:
    """dw (K,C/groups,T,R,S) = gradient of conv3d with respect to w, from x and dy."""
    source, kernel = _single_version_kernel("conv3d_wgrad", version)
    if g.N == 0:  # an empty batch: the sums are empty, and the contract is to do nothing
        return
    _launch(rt, source, kernel, dw.dtype, g.K * g.C_per_group * g.T * g.R * g.S,
            [x, dy, dw] + _conv3d_sizes(g))
