"""Which file, template instance and launch shape each op uses: the one launch path.

Every op is launched from here, on either runtime (:mod:`gpuconv.runtime`): the GPU through
CuPy, or the CPU runtime. Grid, block and scalar arguments are computed once, here, the same
way for both.

Launch shape (v1 kernels): one thread per output element, ``THREADS_PER_BLOCK`` threads per
block, a 1-D grid of ``ceil(count / THREADS_PER_BLOCK)`` blocks capped at ``MAX_GRID_X``. The
kernels loop grid-stride over 64-bit flat indices, so a capped grid still covers every
element: a tensor with more than 2^31 elements (or more than 2^31-1 blocks' worth) is looped
over, never truncated.

Arguments: arrays are C-contiguous arrays of ``rt.xp``, all of one dtype (float16, float32 or
float64; max-pool indices int64), outputs overwritten entirely. Sizes go to the kernels as
``numpy.int32`` scalars (CuPy would pass a Python int as 64 bits); each single size must fit
an int32, products of sizes are formed in 64 bits inside the kernels.
"""

from __future__ import annotations

import numpy as np

THREADS_PER_BLOCK = 256
MAX_GRID_X = 2**31 - 1  # CUDA's limit on gridDim.x (compute capability >= 3.0)

# The C++ type each supported dtype is instantiated with.
CUDA_TYPES = {
    np.dtype(np.float16): "__half",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}

# Each source file and the kernel templates in it that the ops use. Every template is
# instantiated for every dtype in CUDA_TYPES; the runtimes compile a file once with all of
# these name expressions.
KERNELS = {
    "conv2d_fprop.cu": ("conv2d_fprop_v1_direct",),
    "conv2d_dgrad.cu": ("conv2d_dgrad_v1_direct",),
    "conv2d_wgrad.cu": ("conv2d_wgrad_v1_direct", "conv2d_bgrad_v1_direct"),
    "maxpool2d.cu": ("maxpool2d_fwd_v1_direct", "maxpool2d_bwd_v1_gather"),
}


def name_expression(kernel: str, dtype) -> str:
    """``'conv2d_fprop_v1_direct<float>'`` for a kernel template and a NumPy dtype."""
    try:
        return f"{kernel}<{CUDA_TYPES[np.dtype(dtype)]}>"
    except KeyError:
        raise TypeError(f"no kernel instance for dtype {np.dtype(dtype)}; supported: "
                        f"{[str(d) for d in CUDA_TYPES]}") from None


def name_expressions(source_name: str) -> tuple[str, ...]:
    """Every instance kernels.py can request from one source file."""
    return tuple(name_expression(kernel, dtype)
                 for kernel in KERNELS[source_name] for dtype in CUDA_TYPES)


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


# ----------------------------------------------------------------------------------------
# conv2d


def conv2d_fprop(rt, g, x, w, b, y) -> None:
    """y (N,K,P,Q) = conv2d(x (N,C,H,W), w (K,C/groups,R,S)) + b (K,) or no bias (b None)."""
    has_bias = b is not None
    if not has_bias:
        b = rt.xp.zeros(1, y.dtype)  # a valid pointer the kernel never reads (has_bias = 0)
    _launch(rt, "conv2d_fprop.cu", "conv2d_fprop_v1_direct", y.dtype, g.N * g.K * g.P * g.Q,
            [x, w, b, np.int32(has_bias), y] + _conv_sizes(g))


def conv2d_dgrad(rt, g, dy, w, dx) -> None:
    """dx (N,C,H,W) = gradient of conv2d with respect to x, from dy (N,K,P,Q) and w."""
    _launch(rt, "conv2d_dgrad.cu", "conv2d_dgrad_v1_direct", dx.dtype, g.N * g.C * g.H * g.W,
            [dy, w, dx] + _conv_sizes(g))


def conv2d_wgrad(rt, g, x, dy, dw) -> None:
    """dw (K,C/groups,R,S) = gradient of conv2d with respect to w, from x and dy."""
    if g.N == 0:  # an empty batch: the sums are empty, and the contract is to do nothing
        return
    _launch(rt, "conv2d_wgrad.cu", "conv2d_wgrad_v1_direct", dw.dtype,
            g.K * g.C_per_group * g.R * g.S, [x, dy, dw] + _conv_sizes(g))


def conv2d_bgrad(rt, g, dy, db) -> None:
    """db (K,) = gradient of conv2d with respect to its bias: dy summed over n, p, q."""
    if g.N == 0:
        return
    _launch(rt, "conv2d_wgrad.cu", "conv2d_bgrad_v1_direct", db.dtype, g.K,
            [dy, db] + _i32(N=g.N, K=g.K, P=g.P, Q=g.Q))


# ----------------------------------------------------------------------------------------
# max-pool


def maxpool2d_fwd(rt, g, x, y, idx) -> None:
    """y, idx (N,C,P,Q) = max-pool of x (N,C,H,W); idx int64, h*W+w within each plane."""
    _launch(rt, "maxpool2d.cu", "maxpool2d_fwd_v1_direct", y.dtype, g.N * g.C * g.P * g.Q,
            [x, y, idx] + _pool_sizes(g))


def maxpool2d_bwd(rt, g, dy, idx, dx) -> None:
    """dx (N,C,H,W) = sum of dy over the outputs whose idx points at each element (gather)."""
    _launch(rt, "maxpool2d.cu", "maxpool2d_bwd_v1_gather", dx.dtype, g.N * g.C * g.H * g.W,
            [dy, idx, dx] + _pool_sizes(g))
