"""One launch path: pick the runtime, move the arrays there, compute, bring results back.

The public functions validate and build the geometry, then call :func:`run` with an op
name. ``numpy`` runs the reference; ``cuda`` and ``emulator`` run the CUDA kernels through
``gpuconv.kernels`` on the GPU or on the CPU runtime. No op knows where it runs.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from . import backend, reference

# op -> (reference function taking (*inputs, g), name of the gpuconv.kernels launcher)
_OPS = {
    "conv2d_fprop": (reference.conv2d, "conv2d_fprop"),
    # channels-last arrays: x (N,H,W,C), w (K,R,S,C/groups) -> y (N,P,Q,K)
    "conv2d_fprop_nhwc": (lambda x, w, b, g: np.ascontiguousarray(reference.conv2d(
        _nchw(x), _nchw(w), b, g).transpose(0, 2, 3, 1)), "conv2d_fprop_nhwc"),
    "conv2d_dgrad": (reference.conv2d_input, "conv2d_dgrad"),
    # channels-last: dy (N,P,Q,K), w (K,R,S,C/groups) -> dx (N,H,W,C)
    "conv2d_dgrad_nhwc": (lambda dy, w, g: np.ascontiguousarray(reference.conv2d_input(
        _nchw(dy), _nchw(w), g).transpose(0, 2, 3, 1)), "conv2d_dgrad_nhwc"),
    "conv2d_wgrad": (reference.conv2d_weight, "conv2d_wgrad"),
    # channels-last: x (N,H,W,C), dy (N,P,Q,K) -> dw (K,R,S,C/groups)
    "conv2d_wgrad_nhwc": (lambda x, dy, g: np.ascontiguousarray(reference.conv2d_weight(
        _nchw(x), _nchw(dy), g).transpose(0, 2, 3, 1)), "conv2d_wgrad_nhwc"),
    "conv2d_bgrad": (lambda dy, g: reference.conv2d_bias(dy), "conv2d_bgrad"),
    # channels-last: dy (N,P,Q,K) -> db (K,), summed over axes 0, 1, 2
    "conv2d_bgrad_nhwc": (lambda dy, g: reference.conv2d_bias(dy.transpose(0, 3, 1, 2)),
                          "conv2d_bgrad_nhwc"),
    "maxpool2d_fwd": (reference.max_pool2d, "maxpool2d_fwd"),
    "maxpool2d_bwd": (reference.max_pool2d_input, "maxpool2d_bwd"),
    # avg-pool (lp-pool runs it on x**p): cuda/avgpool2d.cu
    "avgpool2d_fwd": (reference.avg_pool2d, "avgpool2d_fwd"),
    "avgpool2d_bwd": (reference.avg_pool2d_input, "avgpool2d_bwd"),
    # tiled / locally connected conv2d (local = tiled with tile (P, Q)): cuda/local_conv2d.cu
    "tiled_conv2d_fprop": (reference.tiled_conv2d, "tiled_conv2d_fprop"),
    "tiled_conv2d_dgrad": (reference.tiled_conv2d_input, "tiled_conv2d_dgrad"),
    "tiled_conv2d_wgrad": (reference.tiled_conv2d_weight, "tiled_conv2d_wgrad"),
    "tiled_conv2d_bgrad": (reference.tiled_conv2d_bias, "tiled_conv2d_bgrad"),
    # conv3d: cuda/conv3d.cu (its bias gradient runs conv2d_bgrad on dy viewed as 4-D)
    "conv3d_fprop": (reference.conv3d, "conv3d_fprop"),
    "conv3d_dgrad": (reference.conv3d_input, "conv3d_dgrad"),
    "conv3d_wgrad": (reference.conv3d_weight, "conv3d_wgrad"),
}


def _nchw(a):
    """An (N,H,W,C)-ordered array as a C-contiguous (N,C,H,W) one."""
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


_output_allocator: contextvars.ContextVar = contextvars.ContextVar("gpuconv_output_allocator",
                                                                 default=None)


@contextlib.contextmanager
def output_allocator(allocate):
    """Inside the block, kernel outputs come from ``allocate(shape, dtype)``.

    ``gpuconv.torch`` uses it so that outputs live in PyTorch's caching allocator. An array
    that is not of the runtime's library (CuPy on the GPU, NumPy on the CPU runtime) is not
    used, and the runtime allocates as usual.
    """
    token = _output_allocator.set(allocate)
    try:
        yield
    finally:
        _output_allocator.reset(token)


def allocate_result(shape, dtype, lib: str):
    """An empty result array of library ``lib`` ('numpy' or 'cupy'): from the
    ``output_allocator`` in force when it gives one of that library, else a new one."""
    allocate = _output_allocator.get()
    if allocate is not None:
        from .validation import library
        out = allocate(shape, dtype)
        if library(out) == lib and out.flags.c_contiguous:
            return out
    return (_cupy() if lib == "cupy" else np).empty(shape, dtype)


def _cupy():
    import cupy
    return cupy


def run(op: str, g, inputs: list, outputs: list, lib: str) -> list:
    """Compute ``op`` over ``inputs`` (None allowed, e.g. no bias).

    ``outputs`` lists (shape, dtype) of the results; ``lib`` is the callers' array library,
    and the results are returned as arrays of that library.
    """
    reference_fn, kernel_name = _OPS[op]
    where = backend.resolve(on_gpu_arrays=(lib == "cupy"))
    if g.N == 0:  # an empty batch: nothing to launch; sums over it are zero
        results = [np.zeros(shape, dtype) for shape, dtype in outputs]
    elif where == "numpy":
        host = [None if a is None else _to_numpy(a) for a in inputs]
        results = reference_fn(*host, g)
        results = list(results) if isinstance(results, tuple) else [results]
    else:
        from . import kernels
        from .runtime import get_runtime
        rt = get_runtime(where)
        # CuPy inputs are computed on their own device (validation made sure it is one).
        device = inputs[0].device if lib == "cupy" else contextlib.nullcontext()
        with device:
            args = [None if a is None else rt.xp.ascontiguousarray(_to_runtime(a, where))
                    for a in inputs]
            results = [allocate_result(shape, dtype, "cupy" if where == "cuda" else "numpy")
                       for shape, dtype in outputs]
            getattr(kernels, kernel_name)(rt, g, *args, *results)
    return [_to_library(r, lib) for r in results]


def _to_numpy(a):
    return a if isinstance(a, np.ndarray) else _cupy().asnumpy(a)


def _to_runtime(a, where: str):
    return _cupy().asarray(a) if where == "cuda" else _to_numpy(a)


def _to_library(a, lib: str):
    if lib == "cupy":
        return _cupy().asarray(a)
    return _to_numpy(a)
