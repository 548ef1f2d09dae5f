"""Gradients, drop-in for ``torch.nn.grad``'s conv2d_input / conv2d_weight (plus bias and
max-pool input gradients).

With stride > 1 several input sizes give the same output size, which is why the input (or
weight) size is passed explicitly, as in PyTorch.
"""

from __future__ import annotations

from . import dispatch
from .geometry import conv2d_geometry, pool2d_geometry
from .validation import (check_arrays, check_indices, check_shape, is_channels_last,
                         on_inputs_device)


def _batched_size(size, name: str, grad_output=None, batched_rank: int = 4):
    """A size argument with ``batched_rank`` or one fewer entries -> (batched tuple,
    unbatched?); when grad_output is given it must have the same rank."""
    dims = _sequence(size, name)
    if len(dims) not in (batched_rank - 1, batched_rank):
        raise ValueError(f"{name} must have {batched_rank - 1} or {batched_rank} entries, got "
                         f"{len(dims)}: {size!r}")
    if grad_output is not None and len(dims) != grad_output.ndim:
        raise ValueError(f"{name} {dims} has {len(dims)} entries but grad_output is "
                         f"{grad_output.ndim}-D (shape {tuple(grad_output.shape)})")
    unbatched = len(dims) == batched_rank - 1
    return ((1,) + dims if unbatched else dims), unbatched


def _input_and_grad_output(input, grad_output, batched_rank: int):
    """The arrays of a weight gradient: checked, of one rank (both batched or both not), and
    returned batched as ``(lib, dtype, x, dy, unbatched)``."""
    ranks = (batched_rank - 1, batched_rank)
    lib, dtype = check_arrays({"input": input, "grad_output": grad_output},
                              float_names=("input", "grad_output"),
                              ranks={"input": ranks, "grad_output": ranks})
    if input.ndim != grad_output.ndim:
        raise ValueError(f"input is {input.ndim}-D but grad_output is {grad_output.ndim}-D")
    unbatched = input.ndim == batched_rank - 1
    x = input[None] if unbatched else input
    dy = grad_output[None] if unbatched else grad_output
    return lib, dtype, x, dy, unbatched


def _sequence(size, name: str) -> tuple:
    """A size argument (weight_size, ...) as a tuple; TypeError naming it otherwise."""
    try:
        return tuple(size)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {size!r}") from None


@on_inputs_device
def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 flip=False):
    """Gradient of conv2d with respect to its input, like ``torch.nn.grad.conv2d_input``.

    ``dx[n,c,h,w] = sum dy[n,k,p,q] * weight[k,c,r,s]`` over every (k,p,q,r,s) whose tap
    reads (h, w): a "full" cross-correlation of dy with the 180-degree-rotated kernel.

    Args:
        input_size: shape (N, C, H, W) (or (C, H, W)) of the forward input.
        weight: (K, C/groups, R, S) array. grad_output: (N, K, P, Q) array, same dtype.
        stride, padding, dilation, groups: as given to :func:`gpuconv.conv2d`.
        flip: keyword-only; the gradient of ``conv2d(..., flip=True)`` (true convolution).

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
    w = _flipped(weight) if _flip_flag(flip) else weight  # true convolution: rotated kernel
    if is_channels_last(dy) or is_channels_last(weight):
        # Channels-last dy or weight gives a channels-last dx (as in PyTorch): the NHWC kernel
        # reads dy as it is, and dx is an (N,H,W,C) array seen as (N,C,H,W).
        nhwc = (0, 2, 3, 1)
        (dx,) = dispatch.run("conv2d_dgrad_nhwc", g, [dy.transpose(nhwc), w.transpose(nhwc)],
                             [((g.N, g.H, g.W, g.C), dtype)], lib)
        dx = dx.transpose(0, 3, 1, 2)
    else:
        (dx,) = dispatch.run("conv2d_dgrad", g, [dy, w], [(g.x_shape, dtype)], lib)
    return dx[0] if unbatched else dx


@on_inputs_device
def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  flip=False):
    """Gradient of conv2d with respect to its weight, like ``torch.nn.grad.conv2d_weight``.

    ``dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * input[n, c', p*sh - pt + r*dh, q*sw - pl + s*dw]``
    (c' = c within k's group). The reduction runs in a fixed order: results are deterministic.

    Args:
        input: (N, C, H, W) or (C, H, W) array. weight_size: (K, C/groups, R, S).
        grad_output: (N, K, P, Q) array (or (K, P, Q)), same dtype as input.
        flip: keyword-only; the gradient of ``conv2d(..., flip=True)`` (true convolution):
            the cross-correlation's dw rotated by 180 degrees.

    Returns:
        dw of shape ``weight_size``; channels-last when ``input`` is (as in PyTorch).

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(9.).reshape(1, 1, 3, 3); dy = np.ones((1, 1, 2, 2))
        >>> gpuconv.grad.conv2d_weight(x, (1, 1, 2, 2), dy)[0, 0]
        array([[ 8., 12.],
               [20., 24.]])
    """
    lib, dtype, x, dy, unbatched = _input_and_grad_output(input, grad_output, batched_rank=4)
    w_shape = _sequence(weight_size, "weight_size")
    g = conv2d_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    check_shape(dy, g.y_shape, "grad_output", f"input of shape {tuple(x.shape)} with "
                f"weight_size {w_shape} and this geometry")
    flip = _flip_flag(flip)  # checked before the launch
    if is_channels_last(x):
        # A channels-last input gives a channels-last dw (as in PyTorch): the NHWC kernel reads
        # x as it is (dy too when it is channels-last), and dw is a (K,R,S,C/groups) array
        # seen as (K,C/groups,R,S).
        nhwc = (0, 2, 3, 1)
        (dw,) = dispatch.run("conv2d_wgrad_nhwc", g, [x.transpose(nhwc), dy.transpose(nhwc)],
                             [((g.K, g.R, g.S, g.C_per_group), dtype)], lib)
        dw = dw.transpose(0, 3, 1, 2)
    else:
        (dw,) = dispatch.run("conv2d_wgrad", g, [x, dy], [(g.w_shape, dtype)], lib)
    if flip:  # dL/dw = rot180(dL/d rot180(w)), channels-last kept, C-contiguous otherwise
        dw = _flipped(dw).copy(order="K" if is_channels_last(dw) else "C")
    return dw


@on_inputs_device
def conv2d_bias(grad_output):
    """Gradient of conv2d with respect to its bias: ``db[k] = sum_{n,p,q} dy[n,k,p,q]``.

    Args:
        grad_output: (N, K, P, Q) or (K, P, Q) float array; a channels-last one (an
            (N,P,Q,K) buffer seen as (N,K,P,Q)) is summed as it is, without an NCHW copy.

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
    if is_channels_last(dy):  # an (N,P,Q,K) buffer: summed as it is (bgrad v3), no NCHW copy
        (db,) = dispatch.run("conv2d_bgrad_nhwc", g, [dy.transpose(0, 2, 3, 1)],
                             [((K,), dtype)], lib)
    else:
        (db,) = dispatch.run("conv2d_bgrad", g, [dy], [((K,), dtype)], lib)
    return db


@on_inputs_device
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


# ----------------------------------------------------------------------------------------
# avg_pool2d, lp_pool2d and separable_conv2d gradients (functional.py has the forward ops)


@on_inputs_device
def avg_pool2d_input(grad_output, input_size, kernel_size, stride=None, padding=0,
                     ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Gradient of avg_pool2d with respect to its input.

    ``dx[n,c,h,w] = sum of dy[n,c,p,q] / divisor(p, q)`` over the windows holding (h, w)
    (the divisor as in :func:`gpuconv.avg_pool2d`); computed as a deterministic gather, one
    thread per dx element, no atomics.

    Args:
        grad_output: (N, C, P, Q) or (C, P, Q) float array.
        input_size: shape of the forward input; the other arguments as given to avg_pool2d.

    Returns:
        dx of shape ``input_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> gpuconv.grad.avg_pool2d_input(np.ones((1, 1, 1, 1)), (1, 1, 2, 3), 2)
        array([[[[0.25, 0.25, 0.  ],
                 [0.25, 0.25, 0.  ]]]])
    """
    from .geometry import avg_pool2d_geometry

    lib, dtype = check_arrays({"grad_output": grad_output}, float_names=("grad_output",),
                              ranks={"grad_output": (3, 4)})
    x_shape, unbatched = _batched_size(input_size, "input_size", grad_output)
    dy = grad_output[None] if unbatched else grad_output
    g = avg_pool2d_geometry(x_shape, kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override)
    check_shape(dy, g.y_shape, "grad_output", f"input_size {tuple(input_size)} with this "
                "pooling geometry")
    (dx,) = dispatch.run("avgpool2d_bwd", g, [dy], [(g.x_shape, dtype)], lib)
    return dx[0] if unbatched else dx


@on_inputs_device
def lp_pool2d_input(grad_output, input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Gradient of lp_pool2d with respect to its input (the gradient of PyTorch's formula).

    With ``avg = avg_pool2d(x**p)`` and the forward output ``y = (R*S*avg)**(1/p)``:
    ``dx = x**(p-1) * avg_pool2d_input(dy * y / avg)``, where a window whose ``avg`` is 0
    passes no gradient (PyTorch's rule). It needs the forward input; ``avg`` and ``y`` are
    recomputed from it (one avg-pool launch), so the forward output need not be kept. For
    ``norm_type=+-inf`` it is max-pool's gradient through the argmax of ``+-|x|``, times
    ``sign(x)``.

    Args:
        grad_output: (N, C, P, Q) or (C, P, Q) float array.
        input: the forward input, (N, C, H, W) or (C, H, W), same dtype.
        norm_type, kernel_size, stride, ceil_mode: as given to lp_pool2d.

    Returns:
        dx of the shape of ``input``.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.array([[[3., 0.], [0., 4.]]])
        >>> gpuconv.grad.lp_pool2d_input(np.ones((1, 1, 1)), x, 2, 2)   # x / ||x||
        array([[[0.6, 0. ],
                [0. , 0.8]]])
    """
    from .functional import _array_module, _compute_dtype, _norm_type, max_pool2d
    from .geometry import avg_pool2d_geometry

    lib, dtype = check_arrays({"grad_output": grad_output, "input": input},
                              float_names=("grad_output", "input"),
                              ranks={"grad_output": (3, 4), "input": (3, 4)})
    if input.ndim != grad_output.ndim:
        raise ValueError(f"input is {input.ndim}-D but grad_output is {grad_output.ndim}-D")
    p = _norm_type(norm_type)
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    dy = grad_output[None] if unbatched else grad_output
    g = avg_pool2d_geometry(x.shape, kernel_size, stride, 0, ceil_mode)
    check_shape(dy, g.y_shape, "grad_output", f"input of shape {tuple(x.shape)} with this "
                "pooling geometry")
    xp, quiet = _array_module(lib)
    if p in (float("inf"), float("-inf")):
        sign = 1 if p > 0 else -1
        _, idx = max_pool2d(sign * xp.abs(x), kernel_size, stride, 0, 1, ceil_mode,
                            return_indices=True)
        back = max_pool2d_input(dy, idx, x.shape, kernel_size, stride, 0, 1, ceil_mode)
        dx = (xp.sign(x) * back).astype(dtype)
        return dx[0] if unbatched else dx
    ct = _compute_dtype(dtype)
    with quiet():
        powered = (x.astype(ct) ** p).astype(dtype)
    (avg,) = dispatch.run("avgpool2d_fwd", g, [powered], [(g.y_shape, dtype)], lib)
    with quiet():
        avg_c = avg.astype(ct)
        y = ((avg_c * (g.R * g.S)) ** (1.0 / p)).astype(dtype).astype(ct)
        zero = avg_c == 0
        share = xp.where(zero, 0, dy.astype(ct) * y / xp.where(zero, 1, avg_c)).astype(dtype)
    (back,) = dispatch.run("avgpool2d_bwd", g, [share], [(g.x_shape, dtype)], lib)
    with quiet():
        dx = (x.astype(ct) ** (p - 1) * back.astype(ct)).astype(dtype)
    return dx[0] if unbatched else dx


@on_inputs_device
def separable_conv2d_input(input_size, weight_h, weight_w, grad_output, stride=1, padding=0,
                           dilation=1, groups=1):
    """Gradient of separable_conv2d with respect to its input, through the two passes.

    ``dt = conv2d_input(t_size, weight_w, dy)`` (pass 2, depthwise 1 x S) then
    ``dx = conv2d_input(input_size, weight_h, dt)`` (pass 1, R x 1): equal to
    ``conv2d_input`` with the outer-product kernel, at the separable cost.

    Args:
        input_size: shape of the forward input, (N, C, H, W) or (C, H, W).
        weight_h: (K, C/groups, R). weight_w: (K, S). grad_output: (N, K, P, Q) or (K, P, Q).
        stride, padding, dilation, groups: as given to :func:`gpuconv.separable_conv2d`.

    Returns:
        dx of shape ``input_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> u, v = np.ones((1, 1, 2)), np.ones((1, 2))
        >>> gpuconv.grad.separable_conv2d_input((1, 1, 3, 3), u, v, np.ones((1, 1, 2, 2)))[0, 0]
        array([[1., 2., 1.],
               [2., 4., 2.],
               [1., 2., 1.]])
    """
    from .functional import _separable_passes

    lib, dtype = check_arrays({"weight_h": weight_h, "weight_w": weight_w,
                               "grad_output": grad_output},
                              float_names=("weight_h", "weight_w", "grad_output"),
                              ranks={"weight_h": (3,), "weight_w": (2,),
                                     "grad_output": (3, 4)})
    x_shape, unbatched = _batched_size(input_size, "input_size")
    if (grad_output.ndim == 3) != unbatched:
        raise ValueError(f"input_size {tuple(input_size)} and grad_output "
                         f"({grad_output.ndim}-D) must both be batched or both unbatched")
    g, w1, pass1, w2, pass2 = _separable_passes(x_shape, weight_h, weight_w, stride, padding,
                                                dilation, groups)
    check_shape(grad_output, g.y_shape[1:] if unbatched else g.y_shape, "grad_output",
                f"input_size {tuple(input_size)} with these weights and geometry")
    t_shape = (g.N, g.K, g.P, g.W)
    dt = conv2d_input(t_shape[1:] if unbatched else t_shape, w2, grad_output, **pass2)
    return conv2d_input(tuple(input_size), w1, dt, **pass1)


@on_inputs_device
def separable_conv2d_weight(input, weight_h, weight_w, grad_output, stride=1, padding=0,
                            dilation=1, groups=1):
    """Gradients of separable_conv2d with respect to both factors: ``(d weight_h, d weight_w)``.

    With ``t`` = pass 1's output (recomputed from ``input``): ``d weight_w`` is pass 2's
    depthwise weight gradient ``conv2d_weight(t, (K,1,1,S), dy)``, and ``d weight_h`` is pass
    1's weight gradient from ``dt = conv2d_input(t_size, weight_w, dy)``. Equivalently
    ``d weight_h[k,c,r] = sum_s dW[k,c,r,s] * weight_w[k,s]`` and ``d weight_w[k,s] =
    sum_{c,r} dW[k,c,r,s] * weight_h[k,c,r]`` with dW the conv2d weight gradient of the
    outer-product kernel. Both factors are needed (each one's gradient depends on the other).
    The bias gradient is :func:`conv2d_bias`.

    Args:
        input: (N, C, H, W) or (C, H, W). weight_h: (K, C/groups, R). weight_w: (K, S).
        grad_output: (N, K, P, Q) or (K, P, Q). The rest as given to separable_conv2d.

    Returns:
        (grad_weight_h of shape (K, C/groups, R), grad_weight_w of shape (K, S)).

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(9.).reshape(1, 1, 3, 3); u, v = np.ones((1, 1, 2)), np.ones((1, 2))
        >>> du, dv = gpuconv.grad.separable_conv2d_weight(x, u, v, np.ones((1, 1, 2, 2)))
        >>> du, dv
        (array([[[20., 44.]]]), array([[28., 36.]]))
    """
    from .functional import _separable_passes, conv2d

    lib, dtype = check_arrays({"input": input, "weight_h": weight_h, "weight_w": weight_w,
                               "grad_output": grad_output},
                              float_names=("input", "weight_h", "weight_w", "grad_output"),
                              ranks={"input": (3, 4), "weight_h": (3,), "weight_w": (2,),
                                     "grad_output": (3, 4)})
    if input.ndim != grad_output.ndim:
        raise ValueError(f"input is {input.ndim}-D but grad_output is {grad_output.ndim}-D")
    x_shape = (1,) + tuple(input.shape) if input.ndim == 3 else tuple(input.shape)
    g, w1, pass1, w2, pass2 = _separable_passes(x_shape, weight_h, weight_w, stride, padding,
                                                dilation, groups)
    check_shape(grad_output, g.y_shape[1:] if input.ndim == 3 else g.y_shape, "grad_output",
                f"input of shape {tuple(input.shape)} with these weights and geometry")
    t = conv2d(input, w1, None, **pass1)
    d_w = conv2d_weight(t, tuple(w2.shape), grad_output, **pass2)
    dt = conv2d_input(tuple(t.shape), w2, grad_output, **pass2)
    d_h = conv2d_weight(input, tuple(w1.shape), dt, **pass1)
    return d_h.reshape(weight_h.shape), d_w.reshape(weight_w.shape)


# ----------------------------------------------------------------------------------------
# tiled and locally connected (unshared) conv2d (gpuconv.tiled_conv2d / local_conv2d)

from .geometry import _size, local_conv2d_geometry, pair, tiled_conv2d_geometry  # noqa: E402


def _tiled_input(make_geometry, input_size, weight, grad_output, stride, padding, dilation):
    lib, dtype = check_arrays({"weight": weight, "grad_output": grad_output},
                              float_names=("weight", "grad_output"),
                              ranks={"weight": (6,), "grad_output": (3, 4)})
    x_shape, unbatched = _batched_size(input_size, "input_size", grad_output)
    dy = grad_output[None] if unbatched else grad_output
    g = make_geometry(x_shape, weight.shape, stride, padding, dilation)
    check_shape(dy, g.y_shape, "grad_output", f"input_size {tuple(input_size)} with this weight "
                "and geometry")
    (dx,) = dispatch.run("tiled_conv2d_dgrad", g, [dy, weight], [(g.x_shape, dtype)], lib)
    return dx[0] if unbatched else dx


def _tiled_weight(make_geometry, input, weight_size, grad_output, stride, padding, dilation):
    lib, dtype, x, dy, _ = _input_and_grad_output(input, grad_output, batched_rank=4)
    w_shape = _size(weight_size, "weight_size", 6)
    g = make_geometry(x.shape, w_shape, stride, padding, dilation)
    check_shape(dy, g.y_shape, "grad_output", f"input of shape {tuple(x.shape)} with "
                f"weight_size {w_shape} and this geometry")
    (dw,) = dispatch.run("tiled_conv2d_wgrad", g, [x, dy], [(g.w_shape, dtype)], lib)
    return dw


def _tiled_bias(grad_output, tile):
    """db (K, TH, TW) from dy (N, K, P, Q); tile None means (P, Q) (locally connected)."""
    lib, dtype = check_arrays({"grad_output": grad_output}, float_names=("grad_output",),
                              ranks={"grad_output": (3, 4)})
    dy = grad_output[None] if grad_output.ndim == 3 else grad_output
    N, K, P, Q = dy.shape
    if min(K, P, Q) < 1:
        raise ValueError(f"grad_output must have non-zero K, P and Q, got shape {tuple(dy.shape)}")
    TH, TW = (P, Q) if tile is None else tile
    # dy's sizes, described as the output of a 1x1 tiled convolution, for the launch code.
    g = tiled_conv2d_geometry((N, 1, P, Q), (TH, TW, K, 1, 1, 1))
    (db,) = dispatch.run("tiled_conv2d_bgrad", g, [dy], [(g.tile_bias_shape, dtype)], lib)
    return db


@on_inputs_device
def tiled_conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1):
    """Gradient of :func:`gpuconv.tiled_conv2d` with respect to its input.

    ``dx[n,c,h,w] = sum dy[n,k,p,q] * weight[p % TH, q % TW, k, c, r, s]`` over every
    (k, p, q, r, s) whose tap reads (h, w); a deterministic gather, one thread per dx element.

    Args:
        input_size: shape (N, C, H, W) (or (C, H, W)) of the forward input.
        weight: (TH, TW, K, C, R, S) array. grad_output: (N, K, P, Q) array, same dtype.
        stride, padding, dilation: as given to :func:`gpuconv.tiled_conv2d`.

    Returns:
        dx of shape ``input_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> w = np.stack([np.ones((1, 1, 1, 1)), -np.ones((1, 1, 1, 1))])[None]  # tile (1, 2)
        >>> gpuconv.grad.tiled_conv2d_input((1, 1, 1, 4), w, np.ones((1, 1, 1, 4)))[0, 0]
        array([[ 1., -1.,  1., -1.]])
    """
    return _tiled_input(tiled_conv2d_geometry, input_size, weight, grad_output, stride, padding,
                        dilation)


@on_inputs_device
def tiled_conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1):
    """Gradient of :func:`gpuconv.tiled_conv2d` with respect to its weight.

    ``dw[th,tw,k,c,r,s] = sum dy[n,k,p,q] * input[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw]``
    over n and the positions p = th, th+TH, ..., q = tw, tw+TW, ... that use bank (th, tw)
    (zero for a bank no position uses); a fixed-order sum per element: deterministic.

    Args:
        input: (N, C, H, W) or (C, H, W) array. weight_size: (TH, TW, K, C, R, S).
        grad_output: (N, K, P, Q) array (or (K, P, Q)), same dtype as input.

    Returns:
        dw of shape ``weight_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(4.).reshape(1, 1, 1, 4)
        >>> gpuconv.grad.tiled_conv2d_weight(x, (1, 2, 1, 1, 1, 1), np.ones((1, 1, 1, 4))).ravel()
        array([2., 4.])
    """
    return _tiled_weight(tiled_conv2d_geometry, input, weight_size, grad_output, stride, padding,
                         dilation)


@on_inputs_device
def tiled_conv2d_bias(grad_output, tile_size):
    """Gradient of a tiled conv2d's (K, TH, TW) bias: ``db[k,th,tw]`` = dy summed over n and
    the positions that use bank (th, tw). (A (K,) bias's gradient is :func:`conv2d_bias`.)

    Args:
        grad_output: (N, K, P, Q) or (K, P, Q) float array.
        tile_size: (TH, TW) (or an int for both), the first two sizes of the weight.

    Returns:
        db of shape (K, TH, TW).

    Example:
        >>> import numpy as np, gpuconv
        >>> gpuconv.grad.tiled_conv2d_bias(np.ones((2, 1, 3, 4)), (2, 2))[0]  # rows 0,2 | row 1
        array([[8., 8.],
               [4., 4.]])
    """
    return _tiled_bias(grad_output, pair(tile_size, "tile_size", minimum=1))


@on_inputs_device
def local_conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1):
    """Gradient of :func:`gpuconv.local_conv2d` with respect to its input.

    ``dx[n,c,h,w] = sum dy[n,k,p,q] * weight[p, q, k, c, r, s]`` over every (k, p, q, r, s)
    whose tap reads (h, w) (the tiled kernels with tile (P, Q)).

    Args:
        input_size: shape (N, C, H, W) (or (C, H, W)) of the forward input.
        weight: (P, Q, K, C, R, S) array. grad_output: (N, K, P, Q) array, same dtype.
        stride, padding, dilation: as given to :func:`gpuconv.local_conv2d`.

    Returns:
        dx of shape ``input_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> w = np.ones((2, 2, 1, 1, 2, 2)); dy = np.ones((1, 1, 2, 2))
        >>> gpuconv.grad.local_conv2d_input((1, 1, 3, 3), w, dy)[0, 0]
        array([[1., 2., 1.],
               [2., 4., 2.],
               [1., 2., 1.]])
    """
    return _tiled_input(local_conv2d_geometry, input_size, weight, grad_output, stride, padding,
                        dilation)


@on_inputs_device
def local_conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1):
    """Gradient of :func:`gpuconv.local_conv2d` with respect to its weight.

    ``dw[p,q,k,c,r,s] = sum_n dy[n,k,p,q] * input[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw]``.

    Args:
        input: (N, C, H, W) or (C, H, W) array. weight_size: (P, Q, K, C, R, S).
        grad_output: (N, K, P, Q) array (or (K, P, Q)), same dtype as input.

    Returns:
        dw of shape ``weight_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(9.).reshape(1, 1, 3, 3); dy = np.ones((1, 1, 2, 2))
        >>> gpuconv.grad.local_conv2d_weight(x, (2, 2, 1, 1, 2, 2), dy)[1, 1, 0, 0]
        array([[4., 5.],
               [7., 8.]])
    """
    return _tiled_weight(local_conv2d_geometry, input, weight_size, grad_output, stride, padding,
                         dilation)


@on_inputs_device
def local_conv2d_bias(grad_output):
    """Gradient of a locally connected layer's (K, P, Q) bias: dy summed over the batch.
    (A (K,) bias's gradient is :func:`conv2d_bias`.)

    Args:
        grad_output: (N, K, P, Q) or (K, P, Q) float array.

    Returns:
        db of shape (K, P, Q).

    Example:
        >>> import numpy as np, gpuconv
        >>> gpuconv.grad.local_conv2d_bias(np.ones((3, 2, 1, 2)))
        array([[[3., 3.]],
        <BLANKLINE>
               [[3., 3.]]])
    """
    return _tiled_bias(grad_output, None)


# ----------------------------------------------------------------------------------------
# conv3d gradients (input depth D, filter depth T, output depth O; cuda/conv3d.cu)

from .geometry import conv3d_geometry  # noqa: E402


@on_inputs_device
def conv3d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv3d with respect to its input, like ``torch.nn.grad.conv3d_input``.

    ``dx[n,c,d,h,w] = sum dy[n,k,o,p,q] * weight[k,c,t,r,s]`` over every (k,o,p,q,t,r,s) whose
    tap reads (d, h, w): a "full" cross-correlation of dy with the kernel reversed along all
    three axes; computed as a gather, one thread per dx element (deterministic, no atomics).

    Args:
        input_size: shape (N, C, D, H, W) (or (C, D, H, W)) of the forward input.
        weight: (K, C/groups, T, R, S) array. grad_output: (N, K, O, P, Q) array, same dtype.
        stride, padding, dilation, groups: as given to :func:`gpuconv.conv3d`.

    Returns:
        dx of shape ``input_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> w = np.ones((1, 1, 2, 1, 1)); dy = np.ones((1, 1, 2, 1, 1))
        >>> gpuconv.grad.conv3d_input((1, 1, 3, 1, 1), w, dy)[0, 0, :, 0, 0]
        array([1., 2., 1.])
    """
    lib, dtype = check_arrays({"weight": weight, "grad_output": grad_output},
                              float_names=("weight", "grad_output"),
                              ranks={"weight": (5,), "grad_output": (4, 5)})
    x_shape, unbatched = _batched_size(input_size, "input_size", grad_output, 5)
    dy = grad_output[None] if unbatched else grad_output
    g = conv3d_geometry(x_shape, weight.shape, stride, padding, dilation, groups)
    check_shape(dy, g.y_shape, "grad_output", f"input_size {tuple(input_size)} with this weight "
                "and geometry")
    (dx,) = dispatch.run("conv3d_dgrad", g, [dy, weight], [(g.x_shape, dtype)], lib)
    return dx[0] if unbatched else dx


@on_inputs_device
def conv3d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv3d with respect to its weight, like ``torch.nn.grad.conv3d_weight``.

    ``dw[k,c,t,r,s] = sum_{n,o,p,q} dy[n,k,o,p,q] * input[n, c', o*sd - pf + t*dd,
    p*sh - pt + r*dh, q*sw - pl + s*dw]`` (c' = c within k's group), one thread per dw element
    summing in a fixed order: deterministic.

    Args:
        input: (N, C, D, H, W) or (C, D, H, W) array. weight_size: (K, C/groups, T, R, S).
        grad_output: (N, K, O, P, Q) array (or (K, O, P, Q)), same dtype as input.
        stride, padding, dilation, groups: as given to :func:`gpuconv.conv3d`.

    Returns:
        dw of shape ``weight_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(3.).reshape(1, 1, 3, 1, 1); dy = np.ones((1, 1, 2, 1, 1))
        >>> gpuconv.grad.conv3d_weight(x, (1, 1, 2, 1, 1), dy)[0, 0, :, 0, 0]
        array([1., 3.])
    """
    lib, dtype, x, dy, unbatched = _input_and_grad_output(input, grad_output, batched_rank=5)
    w_shape = _sequence(weight_size, "weight_size")
    g = conv3d_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    check_shape(dy, g.y_shape, "grad_output", f"input of shape {tuple(x.shape)} with "
                f"weight_size {w_shape} and this geometry")
    (dw,) = dispatch.run("conv3d_wgrad", g, [x, dy], [(g.w_shape, dtype)], lib)
    return dw


@on_inputs_device
def conv3d_bias(grad_output):
    """Gradient of conv3d with respect to its bias: ``db[k] = sum_{n,o,p,q} dy[n,k,o,p,q]``.

    Runs conv2d's bias-gradient kernels on dy viewed as (N, K, O, P*Q) (the same sum, in a
    fixed order: deterministic).

    Args:
        grad_output: (N, K, O, P, Q) or (K, O, P, Q) float array.

    Returns:
        db of shape (K,).

    Example:
        >>> import numpy as np, gpuconv
        >>> gpuconv.grad.conv3d_bias(np.ones((2, 3, 4, 5, 5), np.float32))
        array([200., 200., 200.], dtype=float32)
    """
    lib, dtype = check_arrays({"grad_output": grad_output}, float_names=("grad_output",),
                              ranks={"grad_output": (4, 5)})
    dy = grad_output[None] if grad_output.ndim == 4 else grad_output
    N, K, O, P, Q = dy.shape
    if min(K, O, P, Q) < 1:
        raise ValueError(f"grad_output must have non-zero K, O, P and Q, got shape "
                         f"{tuple(dy.shape)}")
    dy4 = dy.reshape(N, K, O, P * Q)
    # dy's sizes, described as the output of a depthwise 1x1 conv2d, for the launch code.
    g = conv2d_geometry((N, K, O, P * Q), (K, 1, 1, 1), groups=K)
    (db,) = dispatch.run("conv2d_bgrad", g, [dy4], [((K,), dtype)], lib)
    return db


# ----------------------------------------------------------------------------------------
# true convolution (flip), conv1d and conv_transpose2d gradients: the conv2d kernels, reused
# (see the matching section of functional.py)

from .functional import _flip_flag, _flipped, _zero_extended  # noqa: E402
from .geometry import conv1d_geometry, conv_transpose2d_geometry  # noqa: E402


@on_inputs_device
def conv1d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 flip=False):
    """Gradient of conv1d with respect to its input, like ``torch.nn.grad.conv1d_input``.

    ``dx[n,c,l] = sum dy[n,k,q] * weight[k,c,s]`` over every (k, q, s) whose tap reads l
    (the conv2d dgrad kernel with H = R = 1).

    Args:
        input_size: shape (N, C, L) (or (C, L)) of the forward input.
        weight: (K, C/groups, S) array. grad_output: (N, K, Q) array (or (K, Q)), same dtype.
        stride, padding, dilation, groups, flip: as given to :func:`gpuconv.conv1d`.

    Returns:
        dx of shape ``input_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> gpuconv.grad.conv1d_input((1, 1, 3), np.ones((1, 1, 2)), np.ones((1, 1, 2)))
        array([[[1., 2., 1.]]])
    """
    lib, dtype = check_arrays({"weight": weight, "grad_output": grad_output},
                              float_names=("weight", "grad_output"),
                              ranks={"weight": (3,), "grad_output": (2, 3)})
    x_shape, unbatched = _batched_size(input_size, "input_size", grad_output, 3)
    dy = grad_output[None] if unbatched else grad_output
    g = conv1d_geometry(x_shape, weight.shape, stride, padding, dilation, groups)
    check_shape(dy, (g.N, g.K, g.Q), "grad_output", f"input_size {tuple(input_size)} with this "
                "weight and geometry")
    w = weight[:, :, None, :]                                   # (K, C/G, 1, S)
    w = _flipped(w) if _flip_flag(flip) else w
    (dx,) = dispatch.run("conv2d_dgrad", g, [dy[:, :, None, :], w], [(g.x_shape, dtype)], lib)
    dx = dx.reshape(g.N, g.C, g.W)
    return dx[0] if unbatched else dx


@on_inputs_device
def conv1d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  flip=False):
    """Gradient of conv1d with respect to its weight, like ``torch.nn.grad.conv1d_weight``.

    ``dw[k,c,s] = sum_{n,q} dy[n,k,q] * input[n, c', q*stride - pad + s*dilation]`` (c' = c
    within k's group), reduced in a fixed order (deterministic).

    Args:
        input: (N, C, L) or (C, L) array. weight_size: (K, C/groups, S).
        grad_output: (N, K, Q) array (or (K, Q)), same dtype as input.
        stride, padding, dilation, groups, flip: as given to :func:`gpuconv.conv1d`.

    Returns:
        dw of shape ``weight_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(4.).reshape(1, 1, 4)
        >>> gpuconv.grad.conv1d_weight(x, (1, 1, 2), np.ones((1, 1, 3)))
        array([[[3., 6.]]])
    """
    lib, dtype, x, dy, unbatched = _input_and_grad_output(input, grad_output, batched_rank=3)
    w_shape = _sequence(weight_size, "weight_size")
    if len(w_shape) != 3:
        raise ValueError(f"weight_size must have 3 entries (K, C/groups, S), got {weight_size!r}")
    g = conv1d_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    check_shape(dy, (g.N, g.K, g.Q), "grad_output", f"input of shape {tuple(x.shape)} with "
                f"weight_size {w_shape} and this geometry")
    flip = _flip_flag(flip)  # checked before the launch
    (dw,) = dispatch.run("conv2d_wgrad", g, [x[:, :, None, :], dy[:, :, None, :]],
                         [(g.w_shape, dtype)], lib)
    if flip:  # dL/dw = rot180(dL/d rot180(w)), on the (K, C/G, 1, S) array
        dw = _flipped(dw).copy()
    return dw.reshape(g.K, g.C_per_group, g.S)


@on_inputs_device
def conv1d_bias(grad_output):
    """Gradient of conv1d with respect to its bias: ``db[k] = sum_{n,q} dy[n,k,q]``.

    (:func:`conv2d_bias` would read a 3-D (N, K, L) array as unbatched (K, P, Q).)

    Args:
        grad_output: (N, K, Q) or (K, Q) float array.

    Returns:
        db of shape (K,), reduced in a fixed order (deterministic).

    Example:
        >>> import numpy as np, gpuconv
        >>> gpuconv.grad.conv1d_bias(np.ones((2, 3, 4), np.float32))
        array([8., 8., 8.], dtype=float32)
    """
    check_arrays({"grad_output": grad_output}, float_names=("grad_output",),
                 ranks={"grad_output": (2, 3)})
    dy = grad_output[None] if grad_output.ndim == 2 else grad_output
    return conv2d_bias(dy[:, :, None, :])


@on_inputs_device
def conv_transpose2d_input(input_size, weight, grad_output, stride=1, padding=0,
                           output_padding=0, groups=1, dilation=1):
    """Gradient of conv_transpose2d with respect to its input.

    A conv2d forward pass of ``grad_output`` with the same weight (conv2d fprop kernel):
    ``dx[n,ci,i,j] = sum dy[n,co,i*sh - ph + r*dh, j*sw - pw + s*dw] * weight[ci,co,r,s]``.

    Args:
        input_size: shape (N, C_in, H, W) (or (C_in, H, W)) of the forward input.
        weight: (C_in, C_out/groups, R, S) array.
        grad_output: (N, C_out, H_out, W_out) array (or unbatched), same dtype.
        stride, padding, output_padding, groups, dilation: as given to
            :func:`gpuconv.conv_transpose2d` (PyTorch's order).

    Returns:
        dx of shape ``input_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> w = np.ones((1, 1, 2, 2)); dy = np.ones((1, 1, 3, 3))
        >>> gpuconv.grad.conv_transpose2d_input((1, 1, 2, 2), w, dy)[0, 0]
        array([[4., 4.],
               [4., 4.]])
    """
    lib, dtype = check_arrays({"weight": weight, "grad_output": grad_output},
                              float_names=("weight", "grad_output"),
                              ranks={"weight": (4,), "grad_output": (3, 4)})
    x_shape, unbatched = _batched_size(input_size, "input_size", grad_output, 4)
    dy = grad_output[None] if unbatched else grad_output
    g = conv_transpose2d_geometry(x_shape, weight.shape, stride, padding, output_padding, groups,
                                  dilation)
    check_shape(dy, g.y_shape, "grad_output", f"input_size {tuple(input_size)} with this weight "
                "and geometry")
    (dx,) = dispatch.run("conv2d_fprop", g.conv, [dy, weight, None], [(g.conv.y_shape, dtype)],
                         lib)
    if g.padded:  # drop the conv2d's outputs past x (output_padding >= stride)
        dx = dx[:, :, :g.H_in, :g.W_in].copy()
    return dx[0] if unbatched else dx


@on_inputs_device
def conv_transpose2d_weight(input, weight_size, grad_output, stride=1, padding=0,
                            output_padding=0, groups=1, dilation=1):
    """Gradient of conv_transpose2d with respect to its weight.

    The conv2d weight gradient with the roles swapped (conv2d wgrad kernel): grad_output is
    the conv2d's input and ``input`` its output gradient,
    ``dw[ci,co,r,s] = sum_{n,i,j} input[n,ci,i,j] * dy[n, co', i*sh - ph + r*dh, j*sw - pw + s*dw]``.

    Args:
        input: (N, C_in, H, W) or (C_in, H, W) array. weight_size: (C_in, C_out/groups, R, S).
        grad_output: (N, C_out, H_out, W_out) array (or unbatched), same dtype as input.
        stride, padding, output_padding, groups, dilation: as given to
            :func:`gpuconv.conv_transpose2d`.

    Returns:
        dw of shape ``weight_size``.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.array([[[[1., 2.], [3., 4.]]]]); dy = np.ones((1, 1, 3, 3))
        >>> gpuconv.grad.conv_transpose2d_weight(x, (1, 1, 2, 2), dy)[0, 0]
        array([[10., 10.],
               [10., 10.]])
    """
    lib, dtype, x, dy, unbatched = _input_and_grad_output(input, grad_output, batched_rank=4)
    w_shape = _sequence(weight_size, "weight_size")
    g = conv_transpose2d_geometry(x.shape, w_shape, stride, padding, output_padding, groups,
                                  dilation)
    check_shape(dy, g.y_shape, "grad_output", f"input of shape {tuple(x.shape)} with "
                f"weight_size {w_shape} and this geometry")
    x_as_dy = _zero_extended(x, g.conv.y_shape)  # the conv2d's output gradient
    (dw,) = dispatch.run("conv2d_wgrad", g.conv, [dy, x_as_dy], [(g.w_shape, dtype)], lib)
    return dw
