"""PyTorch integration: autograd functions and ``nn`` modules backed by gpuconv's ops.

Functions, on ``torch.Tensor`` s, with autograd (first-order; the backward pass calls
``gpuconv.grad``), like their ``torch.nn.functional`` namesakes:

* ``conv1d``, ``conv2d``, ``conv3d``, ``conv_transpose2d``
* ``max_pool2d``, ``avg_pool2d``, ``lp_pool2d``

Modules, drop-in replacements for ``torch.nn``'s (subclasses of them that override only
``forward``, plus a ``padding_mode='zeros'`` check for the convolutions): same constructor
arguments and defaults, same parameter names and initialization, so ``state_dict`` s load
either way:

* :class:`Conv1d`, :class:`Conv2d`, :class:`Conv3d`, :class:`ConvTranspose2d` (with
  ``forward(input, output_size=None)`` as in ``torch.nn.ConvTranspose2d``)
* :class:`MaxPool2d`, :class:`AvgPool2d`, :class:`LPPool2d`

The autograd Functions behind them (``Conv1dFunction``, ``Conv2dFunction``, ...) are public
too. ::

    import torch, gpuconv.torch as gt
    model = torch.nn.Sequential(gt.Conv2d(1, 8, 3, padding="same"), torch.nn.ReLU(),
                                gt.MaxPool2d(2))

How tensors reach the kernels, without copies:

* CPU tensors: ``tensor.detach().numpy()`` shares memory; the op runs on the backend in force
  (``auto``: the NumPy reference; ``emulator``: the CUDA kernels on the CPU runtime) and the
  result comes back with ``torch.from_numpy``.
* CUDA tensors: ``cupy.from_dlpack(tensor.detach())`` shares memory; on the tensors' device
  the kernels launch on PyTorch's current stream (wrapped by ``cupy.cuda.Stream.from_external``
  with CuPy 14 and PyTorch 2.10 or newer, ``cupy.cuda.ExternalStream`` otherwise), so they are
  ordered with the surrounding PyTorch work without any synchronization, and the result comes
  back as a view of the tensor PyTorch allocated for it (below; so ``record_stream`` works on
  it), else with ``torch.from_dlpack``. The kernels' outputs (and lp_pool2d's) are allocated by
  PyTorch's caching allocator (``torch.empty`` on the input's device, handed to the kernels
  through DLPack; ``gpuconv.dispatch.output_allocator``), so ``torch.cuda.memory_allocated``
  counts them; temporary copies (a non-contiguous input made contiguous) and a few
  element-wise steps after the kernels (the flip convolutions' weight gradients,
  conv_transpose2d's bias, empty batches) still come from CuPy's pool.

The backend in force at forward time (``gpuconv.use_backend``) is recorded and reused by the
backward pass, which PyTorch may run on another thread.

Install PyTorch with ``pip install gpuconv[torch]``; ``import gpuconv`` never imports torch.
"""

from __future__ import annotations

if __name__ == "torch":  # this file was put on sys.path as a top-level "torch"
    raise ImportError("gpuconv/torch.py was imported as 'torch': do not run scripts from "
                      "inside the gpuconv/ package directory")

try:
    import torch
    from torch import nn
    from torch.autograd.function import once_differentiable
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("gpuconv.torch needs PyTorch, which is not installed: "
                      "pip install gpuconv[torch]") from error

import contextlib
import contextvars

import numpy as np

import gpuconv
import gpuconv.dispatch
from gpuconv import backend as _backend
from gpuconv.dtypes import bfloat16

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose2d", "max_pool2d", "avg_pool2d",
           "lp_pool2d", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d", "MaxPool2d",
           "AvgPool2d", "LPPool2d", "Conv1dFunction", "Conv2dFunction", "Conv3dFunction",
           "ConvTranspose2dFunction", "MaxPool2dFunction", "AvgPool2dFunction",
           "LPPool2dFunction"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ----------------------------------------------------------------------------------------
# tensor <-> array


def _check_tensors(**named):
    """TypeError/ValueError unless the given tensors share one device and a supported dtype."""
    tensors = {n: t for n, t in named.items() if t is not None}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name} must have dtype float16, bfloat16, float32 or float64, "
                            f"got {t.dtype}")
        if t.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} is on device {t.device}: gpuconv runs on cpu and cuda")
    devices = {str(t.device) for t in tensors.values()}
    if len(devices) > 1:
        desc = ", ".join(f"{n}: {t.device}" for n, t in tensors.items())
        raise ValueError(f"all tensors must be on one device, got {desc}")


def _stream(t: torch.Tensor):
    """A context making t's device CuPy's current device, and PyTorch's current stream there
    CuPy's current stream."""
    if not t.is_cuda:
        return contextlib.nullcontext()
    import cupy
    device = t.device.index if t.device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(device)
    stack = contextlib.ExitStack()
    # The device first: CuPy tags a wrapped stream with its current device, and element-wise
    # steps outside the kernels run on the current device.
    stack.enter_context(cupy.cuda.Device(device))
    if hasattr(cupy.cuda.Stream, "from_external") and hasattr(stream, "__cuda_stream__"):
        # CuPy >= 14 and PyTorch >= 2.10: the CUDA stream protocol
        stack.enter_context(cupy.cuda.Stream.from_external(stream))
    else:
        stack.enter_context(cupy.cuda.ExternalStream(stream.cuda_stream, device))
    return stack


_TORCH_DTYPE = {np.dtype(np.float16): torch.float16, bfloat16: torch.bfloat16,
                np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                np.dtype(np.int64): torch.int64}


# The tensors PyTorch allocated for the outputs of the gpuconv calls of the current
# _on_device_of block (see _from_allocated).
_allocated: contextvars.ContextVar[list | None] = contextvars.ContextVar("gpuconv_allocated",
                                                                         default=None)


def _on_device_of(t: torch.Tensor):
    """Run gpuconv ops for tensor t: PyTorch's current stream, outputs from PyTorch's allocator."""
    stack = contextlib.ExitStack()
    stack.enter_context(_stream(t))
    allocated: list = []
    stack.callback(_allocated.reset, _allocated.set(allocated))

    def allocate(shape, dtype):
        tensor = torch.empty(shape, dtype=_TORCH_DTYPE[np.dtype(dtype)], device=t.device)
        allocated.append(tensor)
        return _to_array(tensor)

    stack.enter_context(gpuconv.dispatch.output_allocator(allocate))
    return stack


def _from_allocated(a):
    """A CuPy result as a view of the tensor PyTorch allocated for it in this block (None if it
    is not in one): a tensor PyTorch's caching allocator owns, so ``record_stream`` and its
    stream-ordered reuse see it (a DLPack import would be foreign memory to it)."""
    item = a.dtype.itemsize
    if a.size == 0 or any(s % item for s in a.strides):
        return None
    ptr = a.data.ptr
    for tensor in _allocated.get() or ():
        start = tensor.data_ptr()
        if (tensor.element_size() == item and tensor.dtype == _TORCH_DTYPE.get(a.dtype)
                and start <= ptr < start + tensor.numel() * item):
            return tensor.as_strided(a.shape, [s // item for s in a.strides],
                                     tensor.storage_offset() + (ptr - start) // item)
    return None


def _to_array(t):
    """A tensor -> the NumPy (CPU) or CuPy (CUDA) array sharing its memory; None stays None."""
    if t is None:
        return None
    t = t.detach()
    if t.is_conj() or t.is_neg():  # lazy bits that .numpy() and dtype views refuse
        t = t.resolve_conj().resolve_neg()
    # bfloat16 crosses as its 16 bits (int16): NumPy has no bfloat16 of its own, so torch's
    # .numpy() refuses it; the array side then views the bits as ml_dtypes.bfloat16.
    bf16 = t.dtype == torch.bfloat16
    if bf16:
        t = t.view(torch.int16)
    if t.is_cuda:
        import cupy
        a = cupy.from_dlpack(t)
    else:
        a = t.numpy()
    return a.view(bfloat16) if bf16 else a


def _to_tensor(a):
    """A NumPy or CuPy array -> a torch.Tensor sharing its memory."""
    if not isinstance(a, np.ndarray) and (owned := _from_allocated(a)) is not None:
        return owned
    bf16 = a.dtype == bfloat16
    if bf16:  # as its 16 bits, viewed back as torch.bfloat16 (see _to_array)
        a = a.view(np.int16)
    if isinstance(a, np.ndarray):
        if not a.flags.writeable or any(s < 0 for s in a.strides):
            a = a.copy()
        t = torch.from_numpy(a)
    else:
        t = torch.from_dlpack(a)
    return t.view(torch.bfloat16) if bf16 else t


def _ensure_import(t):
    """Make sure the CuPy side is importable for CUDA tensors, with a clear message."""
    if t.is_cuda:
        try:
            import cupy  # noqa: F401
        except ImportError as error:
            raise ImportError("CUDA tensors need CuPy: pip install gpuconv[cuda12] (or "
                              "[cuda13], matching your driver)") from error


# ----------------------------------------------------------------------------------------
# autograd functions


def _conv_forward(ctx, op, input, weight, bias, geometry):
    """Forward of a convolution-like Function: ``op(input, weight, bias, **geometry)`` on the
    tensors' arrays; records what the backward pass needs (geometry, backend, tensors)."""
    ctx.geometry = geometry
    ctx.backend = _backend.current_backend()
    ctx.has_bias = bias is not None
    ctx.save_for_backward(input, weight)
    with _on_device_of(input):
        y = op(_to_array(input), _to_array(weight), _to_array(bias), **geometry)
        return _to_tensor(y)


def _conv_backward(ctx, grad_output, input_op, weight_op, bias_op):
    """Backward of a convolution-like Function: ``(grad_input, grad_weight, grad_bias)`` from
    ``input_op(input_size, weight, dy, **geometry)``, ``weight_op(input, weight_size, dy,
    **geometry)`` and ``bias_op(dy)``, each run only when needed, on forward's backend."""
    input, weight = ctx.saved_tensors
    need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
    grad_input = grad_weight = grad_bias = None
    with _backend.use_backend(ctx.backend), _on_device_of(grad_output):
        dy = _to_array(grad_output)
        if need_input:
            grad_input = _to_tensor(input_op(tuple(input.shape), _to_array(weight), dy,
                                             **ctx.geometry))
        if need_weight:
            grad_weight = _to_tensor(weight_op(_to_array(input), tuple(weight.shape), dy,
                                               **ctx.geometry))
        if need_bias and ctx.has_bias:
            grad_bias = _to_tensor(bias_op(dy))
    return grad_input, grad_weight, grad_bias


def _conv_function(dims: int):
    """The autograd Function of conv{dims}d: gpuconv.conv{dims}d forward, gpuconv.grad's
    conv{dims}d_input/_weight/_bias backward (looked up at call time). Its ``apply`` takes
    every argument positionally: input, weight, bias, stride, padding, dilation, groups."""
    op = f"conv{dims}d"

    def forward(ctx, input, weight, bias, stride, padding, dilation, groups):
        return _conv_forward(ctx, getattr(gpuconv, op), input, weight, bias,
                             dict(stride=stride, padding=padding, dilation=dilation,
                                  groups=groups))

    @once_differentiable
    def backward(ctx, grad_output):
        grad = gpuconv.grad
        grads = _conv_backward(ctx, grad_output, getattr(grad, f"{op}_input"),
                               getattr(grad, f"{op}_weight"), getattr(grad, f"{op}_bias"))
        return (*grads, None, None, None, None)

    name = f"Conv{dims}dFunction"
    return type(name, (torch.autograd.Function,), {
        "__doc__": f"{op} as an autograd Function: gpuconv.{op} forward, gpuconv.grad.{op}_"
                   f"input/_weight/_bias backward (call through :func:`{op}`; ``apply`` takes "
                   "input, weight, bias, stride, padding, dilation, groups positionally).",
        "__module__": __name__, "__qualname__": name,
        "forward": staticmethod(forward), "backward": staticmethod(backward)})


Conv1dFunction = _conv_function(1)
Conv2dFunction = _conv_function(2)
Conv3dFunction = _conv_function(3)


class ConvTranspose2dFunction(torch.autograd.Function):
    """conv_transpose2d as an autograd Function: gpuconv.conv_transpose2d forward;
    gpuconv.grad.conv_transpose2d_input/_weight and conv2d_bias (of grad_output) backward.

    Call through :func:`conv_transpose2d` (``apply`` takes every argument positionally, in
    PyTorch's order: input, weight, bias, stride, padding, output_padding, groups, dilation).
    """

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, output_padding, groups, dilation):
        return _conv_forward(ctx, gpuconv.conv_transpose2d, input, weight, bias,
                             dict(stride=stride, padding=padding, output_padding=output_padding,
                                  groups=groups, dilation=dilation))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grads = _conv_backward(ctx, grad_output, gpuconv.grad.conv_transpose2d_input,
                               gpuconv.grad.conv_transpose2d_weight, gpuconv.grad.conv2d_bias)
        return (*grads, None, None, None, None, None)


class MaxPool2dFunction(torch.autograd.Function):
    """max_pool2d as an autograd Function returning ``(output, indices)``.

    Call through :func:`max_pool2d` (``apply`` takes input, kernel_size, stride, padding,
    dilation, ceil_mode positionally). The indices are not differentiable.
    """

    @staticmethod
    def forward(ctx, input, kernel_size, stride, padding, dilation, ceil_mode):
        ctx.geometry = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                            dilation=dilation, ceil_mode=ceil_mode)
        ctx.backend = _backend.current_backend()
        ctx.input_size = tuple(input.shape)
        with _on_device_of(input):
            y, idx = gpuconv.max_pool2d(_to_array(input), return_indices=True, **ctx.geometry)
            y, idx = _to_tensor(y), _to_tensor(idx)
        ctx.save_for_backward(idx)
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, grad_indices):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        (idx,) = ctx.saved_tensors
        with _backend.use_backend(ctx.backend), _on_device_of(grad_output):
            dx = gpuconv.grad.max_pool2d_input(_to_array(grad_output), _to_array(idx),
                                               ctx.input_size, **ctx.geometry)
            grad_input = _to_tensor(dx)
        return grad_input, None, None, None, None, None


class AvgPool2dFunction(torch.autograd.Function):
    """avg_pool2d as an autograd Function: gpuconv.avg_pool2d forward,
    gpuconv.grad.avg_pool2d_input backward.

    Call through :func:`avg_pool2d` (``apply`` takes input, kernel_size, stride, padding,
    ceil_mode, count_include_pad, divisor_override positionally).
    """

    @staticmethod
    def forward(ctx, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override):
        ctx.geometry = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                            ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                            divisor_override=divisor_override)
        ctx.backend = _backend.current_backend()
        ctx.input_size = tuple(input.shape)
        with _on_device_of(input):
            return _to_tensor(gpuconv.avg_pool2d(_to_array(input), **ctx.geometry))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grad_input = None
        if ctx.needs_input_grad[0]:
            with _backend.use_backend(ctx.backend), _on_device_of(grad_output):
                grad_input = _to_tensor(gpuconv.grad.avg_pool2d_input(
                    _to_array(grad_output), ctx.input_size, **ctx.geometry))
        return grad_input, None, None, None, None, None, None


class LPPool2dFunction(torch.autograd.Function):
    """lp_pool2d as an autograd Function: gpuconv.lp_pool2d forward,
    gpuconv.grad.lp_pool2d_input backward (which recomputes what it needs from the input).

    Call through :func:`lp_pool2d` (``apply`` takes input, norm_type, kernel_size, stride,
    ceil_mode positionally).
    """

    @staticmethod
    def forward(ctx, input, norm_type, kernel_size, stride, ceil_mode):
        ctx.geometry = dict(norm_type=norm_type, kernel_size=kernel_size, stride=stride,
                            ceil_mode=ceil_mode)
        ctx.backend = _backend.current_backend()
        ctx.save_for_backward(input)
        with _on_device_of(input):
            return _to_tensor(gpuconv.lp_pool2d(_to_array(input), **ctx.geometry))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grad_input = None
        if ctx.needs_input_grad[0]:
            (input,) = ctx.saved_tensors
            with _backend.use_backend(ctx.backend), _on_device_of(grad_output):
                grad_input = _to_tensor(gpuconv.grad.lp_pool2d_input(
                    _to_array(grad_output), _to_array(input), **ctx.geometry))
        return grad_input, None, None, None, None


def _plain(value):
    """torch.Size / lists -> tuples, so gpuconv's argument checks see ints and pairs."""
    return tuple(value) if isinstance(value, (list, torch.Size)) else value


# ----------------------------------------------------------------------------------------
# functional


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation on tensors, like ``torch.nn.functional.conv2d``, with autograd.

    Args:
        input: (N, C, H, W) or (C, H, W) tensor, float16/bfloat16/32/64, on cpu or cuda.
        weight: (K, C/groups, R, S) tensor, same dtype and device. bias: optional (K,) tensor.
        stride, dilation: int or pair. padding: int, pair, ``'valid'``, ``'same'`` or
            ``'full'`` (see :func:`gpuconv.conv2d`). groups: int.

    Returns:
        (N, K, P, Q) (or (K, P, Q)) tensor, input's dtype and device; differentiable with
        respect to input, weight and bias (first order).

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> x = torch.ones(1, 1, 4, 4, requires_grad=True)
        >>> y = gt.conv2d(x, torch.ones(1, 1, 3, 3), padding=1)
        >>> y.shape, y[0, 0, 1, 1].item()
        (torch.Size([1, 1, 4, 4]), 9.0)
        >>> y.sum().backward(); x.grad[0, 0, 0, 0].item()
        4.0
    """
    _check_tensors(input=input, weight=weight, bias=bias)
    _ensure_import(input)
    return Conv2dFunction.apply(input, weight, bias, _plain(stride), _plain(padding),
                                _plain(dilation), groups)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max-pooling on tensors, like ``torch.nn.functional.max_pool2d``, with autograd.

    Args:
        input: (N, C, H, W) or (C, H, W) float tensor, on cpu or cuda.
        kernel_size, stride (default: kernel_size), padding, dilation: int or pair.
        ceil_mode: keep a partial last window. return_indices: also return the argmax.

    Returns:
        (N, C, P, Q) tensor, or ``(output, indices)`` with int64 indices ``h*W + w`` per plane.

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> x = torch.tensor([[[1., 2.], [4., 3.]]], requires_grad=True)
        >>> y, idx = gt.max_pool2d(x, 2, return_indices=True)
        >>> y.item(), idx.item()
        (4.0, 2)
        >>> y.sum().backward(); x.grad.tolist()
        [[[0.0, 0.0], [1.0, 0.0]]]
    """
    _check_tensors(input=input)
    _ensure_import(input)
    y, idx = MaxPool2dFunction.apply(input, _plain(kernel_size),
                                     _pool_stride(stride, kernel_size), _plain(padding),
                                     _plain(dilation), bool(ceil_mode))
    return (y, idx) if return_indices else y


def _pool_stride(stride, kernel_size):
    """A pooling stride as torch.nn.functional reads it: None or empty means kernel_size."""
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        return _plain(kernel_size)
    return _plain(stride)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation on tensors, like ``torch.nn.functional.conv1d``, with autograd.

    Args:
        input: (N, C, L) or (C, L) tensor, float16/bfloat16/32/64, on cpu or cuda.
        weight: (K, C/groups, S) tensor, same dtype and device. bias: optional (K,) tensor.
        stride, dilation: int or 1-tuple. padding: int, 1-tuple, ``'valid'``, ``'same'`` or
            ``'full'`` (see :func:`gpuconv.conv1d`). groups: int.

    Returns:
        (N, K, Q) (or (K, Q)) tensor, input's dtype and device; differentiable with respect
        to input, weight and bias (first order).

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> x = torch.tensor([[[1., 2., 3., 4.]]], requires_grad=True)
        >>> y = gt.conv1d(x, torch.tensor([[[1., -1.]]]))
        >>> y.tolist()
        [[[-1.0, -1.0, -1.0]]]
        >>> y.sum().backward(); x.grad.tolist()
        [[[1.0, 0.0, 0.0, -1.0]]]
    """
    _check_tensors(input=input, weight=weight, bias=bias)
    _ensure_import(input)
    return Conv1dFunction.apply(input, weight, bias, _plain(stride), _plain(padding),
                                _plain(dilation), groups)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D cross-correlation on tensors, like ``torch.nn.functional.conv3d``, with autograd.

    Args:
        input: (N, C, D, H, W) or (C, D, H, W) tensor, float16/bfloat16/32/64, on cpu or cuda.
        weight: (K, C/groups, T, R, S) tensor, same dtype and device. bias: optional (K,).
        stride, dilation: int or triple (depth, height, width). padding: int, triple,
            ``'valid'``, ``'same'`` or ``'full'`` (see :func:`gpuconv.conv3d`). groups: int.

    Returns:
        (N, K, O, P, Q) (or (K, O, P, Q)) tensor, input's dtype and device; differentiable
        with respect to input, weight and bias (first order).

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> x = torch.ones(1, 1, 3, 4, 4, requires_grad=True)
        >>> y = gt.conv3d(x, torch.ones(1, 1, 3, 3, 3), padding=(0, 1, 1))
        >>> y.shape, y[0, 0, 0, 1, 1].item()
        (torch.Size([1, 1, 1, 4, 4]), 27.0)
        >>> y.sum().backward(); x.grad[0, 0, 0, 0, 0].item()
        4.0
    """
    _check_tensors(input=input, weight=weight, bias=bias)
    _ensure_import(input)
    return Conv3dFunction.apply(input, weight, bias, _plain(stride), _plain(padding),
                                _plain(dilation), groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """2-D transposed convolution on tensors, like ``torch.nn.functional.conv_transpose2d``
    (same argument order), with autograd.

    Args:
        input: (N, C_in, H, W) or (C_in, H, W) tensor, float16/bfloat16/32/64, on cpu or cuda.
        weight: (C_in, C_out/groups, R, S) tensor, same dtype and device.
        bias: optional (C_out,) tensor.
        stride, dilation: int or pair. padding: int or pair (no strings).
        output_padding: int or pair, each smaller than its axis's stride or dilation.
        groups: int.

    Returns:
        (N, C_out, H_out, W_out) (or unbatched) tensor with
        ``H_out = (H-1)*stride - 2*padding + dilation*(R-1) + output_padding + 1``;
        differentiable with respect to input, weight and bias (first order).

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> x = torch.tensor([[[[1., 2.], [3., 4.]]]], requires_grad=True)
        >>> y = gt.conv_transpose2d(x, torch.ones(1, 1, 2, 2), stride=2)
        >>> y[0, 0].tolist()
        [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]]
        >>> y.sum().backward(); x.grad[0, 0].tolist()
        [[4.0, 4.0], [4.0, 4.0]]
    """
    _check_tensors(input=input, weight=weight, bias=bias)
    _ensure_import(input)
    return ConvTranspose2dFunction.apply(input, weight, bias, _plain(stride), _plain(padding),
                                         _plain(output_padding), groups, _plain(dilation))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling on tensors, like ``torch.nn.functional.avg_pool2d``, with autograd.

    Args:
        input: (N, C, H, W) or (C, H, W) float tensor, on cpu or cuda.
        kernel_size, stride (default: kernel_size), padding: int or pair.
        ceil_mode: keep a partial last window. count_include_pad: divide by the window's
            size including padding cells (True) or by its input cells only (False).
        divisor_override: None or a nonzero int used as every window's divisor.

    Returns:
        (N, C, P, Q) (or (C, P, Q)) tensor, input's dtype and device; differentiable with
        respect to input (first order).

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> x = torch.arange(16.).reshape(1, 1, 4, 4).requires_grad_()
        >>> y = gt.avg_pool2d(x, 2)
        >>> y[0, 0].tolist()
        [[2.5, 4.5], [10.5, 12.5]]
        >>> y.sum().backward(); x.grad[0, 0, 0].tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    _check_tensors(input=input)
    _ensure_import(input)
    return AvgPool2dFunction.apply(input, _plain(kernel_size),
                                   _pool_stride(stride, kernel_size), _plain(padding),
                                   bool(ceil_mode), bool(count_include_pad), divisor_override)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """2-D power-average (Lp) pooling on tensors, like ``torch.nn.functional.lp_pool2d``,
    with autograd: ``(sum over the window of x**p) ** (1/p)``, PyTorch's quirks included
    (see :func:`gpuconv.lp_pool2d`).

    Args:
        input: (N, C, H, W) or (C, H, W) float tensor, on cpu or cuda.
        norm_type: p, a nonzero real number (``inf``: max of ``|x|``; ``-inf``: min).
        kernel_size, stride (default: kernel_size): int or pair. No padding.
        ceil_mode: keep a partial last window.

    Returns:
        (N, C, P, Q) (or (C, P, Q)) tensor, input's dtype and device; differentiable with
        respect to input (first order; a window whose sum of ``x**p`` is 0 passes no
        gradient, as in PyTorch).

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> x = torch.tensor([[[3., 0.], [0., 4.]]], requires_grad=True)
        >>> y = gt.lp_pool2d(x, 2, 2)       # sqrt(3**2 + 4**2)
        >>> y.item()
        5.0
        >>> y.backward(); x.grad.tolist()   # x / ||x||
        [[[0.6000000238418579, 0.0], [0.0, 0.800000011920929]]]
    """
    _check_tensors(input=input)
    _ensure_import(input)
    return LPPool2dFunction.apply(input, norm_type, _plain(kernel_size),
                                  _pool_stride(stride, kernel_size), bool(ceil_mode))


# ----------------------------------------------------------------------------------------
# modules


def _check_padding_mode(padding_mode, name: str):
    """ValueError unless padding_mode is 'zeros' (the only one gpuconv's kernels implement)."""
    if padding_mode != "zeros":
        raise ValueError(f"gpuconv.torch.{name} supports only padding_mode='zeros', got "
                         f"{padding_mode!r}")


class Conv2d(nn.Conv2d):
    """Drop-in ``torch.nn.Conv2d`` computed by gpuconv (``padding_mode='zeros'`` only).

    Same arguments, defaults, parameters (``weight`` (K, C/groups, R, S), ``bias`` (K,)) and
    initialization as ``torch.nn.Conv2d``, so ``state_dict`` s are interchangeable.

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> conv = gt.Conv2d(3, 8, 3, padding="same")
        >>> conv(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
        >>> torch.nn.Conv2d(3, 8, 3, padding="same").load_state_dict(conv.state_dict())
        <All keys matched successfully>
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None):
        _check_padding_mode(padding_mode, "Conv2d")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)

    def forward(self, input):
        return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)


class MaxPool2d(nn.MaxPool2d):
    """Drop-in ``torch.nn.MaxPool2d`` computed by gpuconv.

    Same arguments and defaults (kernel_size, stride=None, padding=0, dilation=1,
    return_indices=False, ceil_mode=False); returns ``(output, indices)`` with
    ``return_indices=True``.

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> gt.MaxPool2d(2)(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3, 4, 4])
    """

    def forward(self, input):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                          ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class Conv1d(nn.Conv1d):
    """Drop-in ``torch.nn.Conv1d`` computed by gpuconv (``padding_mode='zeros'`` only).

    Same arguments, defaults, parameters (``weight`` (K, C/groups, S), ``bias`` (K,)) and
    initialization as ``torch.nn.Conv1d``, so ``state_dict`` s are interchangeable.

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> conv = gt.Conv1d(2, 4, 5, padding="same")
        >>> conv(torch.zeros(3, 2, 50)).shape
        torch.Size([3, 4, 50])
        >>> torch.nn.Conv1d(2, 4, 5, padding="same").load_state_dict(conv.state_dict())
        <All keys matched successfully>
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None):
        _check_padding_mode(padding_mode, "Conv1d")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)

    def forward(self, input):
        return conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)


class Conv3d(nn.Conv3d):
    """Drop-in ``torch.nn.Conv3d`` computed by gpuconv (``padding_mode='zeros'`` only).

    Same arguments, defaults, parameters (``weight`` (K, C/groups, T, R, S), ``bias`` (K,))
    and initialization as ``torch.nn.Conv3d``, so ``state_dict`` s are interchangeable.

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> conv = gt.Conv3d(3, 8, (2, 3, 3), padding=(0, 1, 1))
        >>> conv(torch.zeros(1, 3, 4, 16, 16)).shape   # 4 frames of 16x16
        torch.Size([1, 8, 3, 16, 16])
        >>> torch.nn.Conv3d(3, 8, (2, 3, 3)).load_state_dict(conv.state_dict())
        <All keys matched successfully>
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None):
        _check_padding_mode(padding_mode, "Conv3d")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)

    def forward(self, input):
        return conv3d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)


class ConvTranspose2d(nn.ConvTranspose2d):
    """Drop-in ``torch.nn.ConvTranspose2d`` computed by gpuconv (``padding_mode='zeros'``,
    the only mode PyTorch supports for it).

    Same arguments, defaults, parameters (``weight`` (C_in, C_out/groups, R, S), ``bias``
    (C_out,)) and initialization as ``torch.nn.ConvTranspose2d``, so ``state_dict`` s are
    interchangeable. ``forward(input, output_size=None)`` takes ``output_size`` as PyTorch's
    does ((H_out, W_out), or the full shape), to pick among the sizes a stride > 1 allows;
    it overrides the module's ``output_padding``.

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> up = gt.ConvTranspose2d(8, 4, 3, stride=2, padding=1)
        >>> x = torch.zeros(1, 8, 5, 5)
        >>> up(x).shape, up(x, output_size=(10, 10)).shape
        (torch.Size([1, 4, 9, 9]), torch.Size([1, 4, 10, 10]))
        >>> torch.nn.ConvTranspose2d(8, 4, 3).load_state_dict(up.state_dict())
        <All keys matched successfully>
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        _check_padding_mode(padding_mode, "ConvTranspose2d")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         output_padding=output_padding, groups=groups, bias=bias,
                         dilation=dilation, padding_mode=padding_mode, device=device,
                         dtype=dtype)

    def forward(self, input, output_size=None):
        # torch.nn.ConvTranspose2d's own helper: output_size -> output_padding, with its checks
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        return conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                output_padding, self.groups, self.dilation)


class AvgPool2d(nn.AvgPool2d):
    """Drop-in ``torch.nn.AvgPool2d`` computed by gpuconv.

    Same arguments and defaults (kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=True, divisor_override=None).

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> gt.AvgPool2d(3, stride=2, padding=1)(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3, 4, 4])
    """

    def forward(self, input):
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)


class LPPool2d(nn.LPPool2d):
    """Drop-in ``torch.nn.LPPool2d`` computed by gpuconv.

    Same arguments and defaults (norm_type, kernel_size, stride=None, ceil_mode=False).

    Example:
        >>> import torch, gpuconv.torch as gt
        >>> gt.LPPool2d(2, 2)(torch.full((1, 1, 4, 4), 3.))   # sqrt(4 * 3**2)
        tensor([[[[6., 6.],
                  [6., 6.]]]])
    """

    def forward(self, input):
        return lp_pool2d(input, float(self.norm_type), self.kernel_size, self.stride,
                         self.ceil_mode)

