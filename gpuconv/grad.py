"""Gradients, drop-in for ``torch.nn.grad``'s conv2d_input / conv2d_weight (plus bias and
max-pool input gradients).

With stride > 1 several input sizes give the same output size, which is why the input (or
weight) size is passed explicitly, as in PyTorch.
"""

from __future__ import annotations

from . import dispatch
from .geometry import conv2d_geometry, pool2d_geometry
from .validation import check_arrays, check_indices, check_shape


def _batched_size(size, name: str, grad_output):
    """input_size with 3 or 4 entries -> (4-tuple, unbatched?); must match grad_output's rank."""
    try:
        dims = tuple(size)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {size!r}") from None
    if len(dims) not in (3, 4):
        raise ValueError(f"{name} must have 3 or 4 entries, got {len(dims)}: {size!r}")
    if len(dims) != grad_output.ndim:
        raise ValueError(f"{name} {dims} has {len(dims)} entries but grad_output is "
                         f"{grad_output.ndim}-D (shape {tuple(grad_output.shape)})")
    return ((1,) + dims if len(dims) == 3 else dims), len(dims) == 3


def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv2d with respect to its input, like ``torch.nn.grad.conv2d_input``.

    ``dx[n,c,h,w] = sum dy[n,k,p,q] * weight[k,c,r,s]`` over every (k,p,q,r,s) whose tap
    reads (h, w): a "full" cross-correlation of dy with the 180-degree-rotated kernel.

    Args:
        input_size: shape (N, C, H, W) (or (C, H, W)) of the forward input.
        weight: (K, C/groups, R, S) array. grad_output: (N, K, P, Q) array, same dtype.
        stride, padding, dilation, groups: as given to :func:`gpuconv.conv2d`.

    Returns:
        dx of shape ``input_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> w = np.ones((1, 1, 2, 2)); dy = np.ones((1, 1, 2, 2))
        >>> gpuconv.grad.conv2d_input((1, 1, 3, 3), w, dy)[0, 0]
        array([[1., 2., 1.],
               [2., 4., 2.],
               [1., 2., 1.]])
    """
    lib, dtype = check_arrays({"weight": weight, "grad_output": grad_output},
                              float_names=("weight", "grad_output"),
                              ranks={"weight": (4,), "grad_output": (3, 4)})
    x_shape, unbatched = _batched_size(input_size, "input_size", grad_output)
    dy = grad_output[None] if unbatched else grad_output
    g = conv2d_geometry(x_shape, weight.shape, stride, padding, dilation, groups)
    check_shape(dy, g.y_shape, "grad_output", f"input_size {tuple(input_size)} with this weight "
                "and geometry")
    (dx,) = dispatch.run("conv2d_dgrad", g, [dy, weight], [(g.x_shape, dtype)], lib)
    return dx[0] if unbatched else dx


def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv2d with respect to its weight, like ``torch.nn.grad.conv2d_weight``.

    ``dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * input[n, c', p*sh - pt + r*dh, q*sw - pl + s*dw]``
    (c' = c within k's group). The reduction runs in a fixed order: results are deterministic.

    Args:
        input: (N, C, H, W) or (C, H, W) array. weight_size: (K, C/groups, R, S).
        grad_output: (N, K, P, Q) array (or (K, P, Q)), same dtype as input.

    Returns:
        dw of shape ``weight_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(9.).reshape(1, 1, 3, 3); dy = np.ones((1, 1, 2, 2))
        >>> gpuconv.grad.conv2d_weight(x, (1, 1, 2, 2), dy)[0, 0]
        array([[ 8., 12.],
               [20., 24.]])
    """
    lib, dtype = check_arrays({"input": input, "grad_output": grad_output},
                              float_names=("input", "grad_output"),
                              ranks={"input": (3, 4), "grad_output": (3, 4)})
    if input.ndim != grad_output.ndim:
        raise ValueError(f"input is {input.ndim}-D but grad_output is {grad_output.ndim}-D")
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    dy = grad_output[None] if unbatched else grad_output
    try:
        w_shape = tuple(weight_size)
    except TypeError:
        raise TypeError(f"weight_size must be a sequence of ints, got {weight_size!r}") from None
    g = conv2d_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    check_shape(dy, g.y_shape, "grad_output", f"input of shape {tuple(x.shape)} with "
                f"weight_size {w_shape} and this geometry")
    (dw,) = dispatch.run("conv2d_wgrad", g, [x, dy], [(g.w_shape, dtype)], lib)
    return dw


def conv2d_bias(grad_output):
    """Gradient of conv2d with respect to its bias: ``db[k] = sum_{n,p,q} dy[n,k,p,q]``.

    Args:
        grad_output: (N, K, P, Q) or (K, P, Q) float array.

    Returns:
        db of shape (K,), reduced in a fixed order (deterministic).

    Example:
        >>> import numpy as np, gpuconv
        >>> gpuconv.grad.conv2d_bias(np.ones((2, 3, 4, 4), np.float32))
        array([32., 32., 32.], dtype=float32)
    """
    lib, dtype = check_arrays({"grad_output": grad_output}, float_names=("grad_output",),
                              ranks={"grad_output": (3, 4)})
    dy = grad_output[None] if grad_output.ndim == 3 else grad_output
    N, K, P, Q = dy.shape
    if min(K, P, Q) < 1:
        raise ValueError(f"grad_output must have non-zero K, P and Q, got shape {tuple(dy.shape)}")
    # dy's sizes, described as the output of a depthwise 1x1 convolution, for the launch code.
    g = conv2d_geometry((N, K, P, Q), (K, 1, 1, 1), groups=K)
    (db,) = dispatch.run("conv2d_bgrad", g, [dy], [((K,), dtype)], lib)
    return db


def max_pool2d_input(grad_output, indices, input_size, kernel_size, stride=None, padding=0,
                     dilation=1, ceil_mode=False):
    """Gradient of max_pool2d with respect to its input, through the argmax mask.

    ``dx[n, c, idx[n,c,p,q]] += dy[n,c,p,q]`` for every output; where windows overlap the
    contributions add up (computed as a deterministic gather, one thread per dx element).

    Args:
        grad_output: (N, C, P, Q) or (C, P, Q) float array.
        indices: int64 array of the same shape, as returned by ``max_pool2d(...,
            return_indices=True)``.
        input_size: shape of the forward input; the other arguments as given to max_pool2d.

    Returns:
        dx of shape ``input_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.array([[[1., 2.], [4., 3.]]]); y, idx = gpuconv.max_pool2d(x, 2, return_indices=True)
        >>> gpuconv.grad.max_pool2d_input(np.ones_like(y), idx, x.shape, 2)
        array([[[0., 0.],
                [1., 0.]]])
    """
    lib, dtype = check_arrays({"grad_output": grad_output, "indices": indices},
                              float_names=("grad_output",),
                              ranks={"grad_output": (3, 4), "indices": (3, 4)})
    x_shape, unbatched = _batched_size(input_size, "input_size", grad_output)
    dy = grad_output[None] if unbatched else grad_output
    idx = indices[None] if unbatched and indices.ndim == 3 else indices
    g = pool2d_geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode)
    check_shape(dy, g.y_shape, "grad_output", f"input_size {tuple(input_size)} with this "
                "pooling geometry")
    check_indices(idx, g.y_shape, g.H * g.W)
    (dx,) = dispatch.run("maxpool2d_bwd", g, [dy, idx], [(g.x_shape, dtype)], lib)
    return dx[0] if unbatched else dx
