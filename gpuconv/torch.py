"""PyTorch integration: autograd functions and ``nn`` modules backed by gpuconv's ops.

``gpuconv.torch.conv2d`` / ``max_pool2d`` take and return ``torch.Tensor`` s, support
autograd (first-order; the backward pass calls ``gpuconv.grad``), and
:class:`Conv2d` / :class:`MaxPool2d` are drop-in replacements for ``torch.nn.Conv2d`` /
``torch.nn.MaxPool2d``: same constructor arguments and defaults, same parameter names and
initialization, so ``state_dict`` s load either way::

    import torch, gpuconv.torch as gt
    model = torch.nn.Sequential(gt.Conv2d(1, 8, 3, padding="same"), torch.nn.ReLU(),
                                gt.MaxPool2d(2))

How tensors reach the kernels, without copies:

* CPU tensors: ``tensor.detach().numpy()`` shares memory; the op runs on the backend in force
  (``auto``: the NumPy reference; ``emulator``: the CUDA kernels on the CPU runtime) and the
  result comes back with ``torch.from_numpy``.
* CUDA tensors: ``cupy.from_dlpack(tensor.detach())`` shares memory; the kernels launch on
  PyTorch's current stream (wrapped by ``cupy.cuda.Stream.from_external``, or
  ``cupy.cuda.ExternalStream`` on CuPy 13), so they are ordered with the surrounding PyTorch
  work without any synchronization, and the result comes back with ``torch.from_dlpack``.
  The kernels' outputs are allocated by PyTorch's caching allocator (``torch.empty`` on the
  input's device, handed to the kernels through DLPack; ``gpuconv.dispatch.output_allocator``),
  so ``torch.cuda.memory_allocated`` counts them; temporary copies (a non-contiguous input
  made contiguous) still come from CuPy's pool.

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

import numpy as np

import gpuconv
import gpuconv.dispatch
from gpuconv import backend as _backend

__all__ = ["conv2d", "max_pool2d", "Conv2d", "MaxPool2d", "Conv2dFunction",
           "MaxPool2dFunction"]

_DTYPES = (torch.float16, torch.float32, torch.float64)


# ----------------------------------------------------------------------------------------
# tensor <-> array


def _check_tensors(**named):
    """TypeError/ValueError unless the given tensors share one device and a supported dtype."""
    tensors = {n: t for n, t in named.items() if t is not None}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name} must have dtype float16, float32 or float64, got {t.dtype}")
        if t.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} is on device {t.device}: gpuconv runs on cpu and cuda")
    devices = {str(t.device) for t in tensors.values()}
    if len(devices) > 1:
        desc = ", ".join(f"{n}: {t.device}" for n, t in tensors.items())
        raise ValueError(f"all tensors must be on one device, got {desc}")


def _stream(t: torch.Tensor):
    """A context making PyTorch's current stream on t's device CuPy's current stream."""
    if not t.is_cuda:
        return contextlib.nullcontext()
    import cupy
    device = t.device.index if t.device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(device)
    if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy >= 14: the CUDA stream protocol
        return cupy.cuda.Stream.from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, device)


_TORCH_DTYPE = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                np.dtype(np.float64): torch.float64, np.dtype(np.int64): torch.int64}


def _on_device_of(t: torch.Tensor):
    """Run gpuconv ops for tensor t: PyTorch's current stream, outputs from PyTorch's allocator."""
    stack = contextlib.ExitStack()
    stack.enter_context(_stream(t))
    stack.enter_context(gpuconv.dispatch.output_allocator(
        lambda shape, dtype: _to_array(torch.empty(shape, dtype=_TORCH_DTYPE[np.dtype(dtype)],
                                                   device=t.device))))
    return stack


def _to_array(t):
    """A tensor -> the NumPy (CPU) or CuPy (CUDA) array sharing its memory; None stays None."""
    if t is None:
        return None
    t = t.detach()
    if t.is_cuda:
        import cupy
        return cupy.from_dlpack(t)
    if t.is_conj() or t.is_neg():  # lazy bits that .numpy() refuses
        t = t.resolve_conj().resolve_neg()
    return t.numpy()


def _to_tensor(a):
    """A NumPy or CuPy array -> a torch.Tensor sharing its memory."""
    if isinstance(a, np.ndarray):
        if not a.flags.writeable or any(s < 0 for s in a.strides):
            a = a.copy()
        return torch.from_numpy(a)
    return torch.from_dlpack(a)


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


class Conv2dFunction(torch.autograd.Function):
    """conv2d as an autograd Function: gpuconv.conv2d forward, gpuconv.grad backward.

    Call through :func:`conv2d` (``Conv2dFunction.apply`` takes every argument
    positionally: input, weight, bias, stride, padding, dilation, groups).
    """

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups):
        ctx.geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        ctx.backend = _backend.current_backend()
        ctx.has_bias = bias is not None
        ctx.save_for_backward(input, weight)
        with _on_device_of(input):
            y = gpuconv.conv2d(_to_array(input), _to_array(weight), _to_array(bias),
                               **ctx.geometry)
            return _to_tensor(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_input = grad_weight = grad_bias = None
        with _backend.use_backend(ctx.backend), _on_device_of(grad_output):
            dy = _to_array(grad_output)
            if need_input:
                grad_input = _to_tensor(gpuconv.grad.conv2d_input(
                    tuple(input.shape), _to_array(weight), dy, **ctx.geometry))
            if need_weight:
                grad_weight = _to_tensor(gpuconv.grad.conv2d_weight(
                    _to_array(input), tuple(weight.shape), dy, **ctx.geometry))
            if need_bias and ctx.has_bias:
                grad_bias = _to_tensor(gpuconv.grad.conv2d_bias(dy))
        return grad_input, grad_weight, grad_bias, None, None, None, None


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


def _plain(value):
    """torch.Size / lists -> tuples, so gpuconv's argument checks see ints and pairs."""
    return tuple(value) if isinstance(value, (list, torch.Size)) else value


# ----------------------------------------------------------------------------------------
# functional


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation on tensors, like ``torch.nn.functional.conv2d``, with autograd.

    Args:
        input: (N, C, H, W) or (C, H, W) tensor, float16/32/64, on cpu or cuda.
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
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        stride = kernel_size
    y, idx = MaxPool2dFunction.apply(input, _plain(kernel_size), _plain(stride),
                                     _plain(padding), _plain(dilation), bool(ceil_mode))
    return (y, idx) if return_indices else y


# ----------------------------------------------------------------------------------------
# modules


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
        if padding_mode != "zeros":
            raise ValueError(f"gpuconv.torch.Conv2d supports only padding_mode='zeros', got "
                             f"{padding_mode!r}")
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
