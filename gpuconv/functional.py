"""conv2d and max_pool2d: drop-in for ``torch.nn.functional``'s, on NumPy and CuPy arrays.

Each function: validate the arrays -> build the geometry (which validates the sizes) ->
compute through :mod:`gpuconv.dispatch` on the backend in force.
"""

from __future__ import annotations

from . import dispatch
from .geometry import conv2d_geometry, pool2d_geometry
from .validation import (INDEX_DTYPE, check_arrays, check_shape, is_channels_last,
                         on_inputs_device)


@on_inputs_device
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False):
    """2-D cross-correlation of ``input`` with ``weight``, plus ``bias``, like ``F.conv2d``.

    ``y[n,k,p,q] = bias[k] + sum_{c,r,s} input[n, g*C/G + c, p*sh - pad_top + r*dh,
    q*sw - pad_left + s*dw] * weight[k,c,r,s]`` (zero outside the input, ``g`` = k's group).

    Args:
        input: (N, C, H, W) or unbatched (C, H, W) array, float16/32/64, NumPy or CuPy.
        weight: (K, C/groups, R, S) array of the same dtype and library.
        bias: optional (K,) array.
        stride, dilation: int or (h, w) pair, positive.
        padding: int or (h, w) pair, or ``'valid'`` (0), ``'same'`` (output size = input
            size, stride 1 only; extra padding bottom/right for even kernels) or ``'full'``
            (every partial overlap: ``d*(k-1)`` on each side, output ``H + d*(R-1)``).
        groups: splits C and K into this many independent groups (C for depthwise).
        flip: keyword-only; True computes a true convolution (the kernel rotated by 180
            degrees: ``weight[..., ::-1, ::-1]``) instead of the cross-correlation.

    Returns:
        (N, K, P, Q) array (or (K, P, Q) for unbatched input), dtype and library of input.
        A channels-last input or weight (:func:`is_channels_last`, e.g.
        ``x_nhwc.transpose(0, 3, 1, 2)``) gives a channels-last output, as in PyTorch,
        computed without a layout conversion by the NHWC kernel (v4) where it runs.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        >>> w = np.ones((1, 1, 3, 3), np.float32)
        >>> gpuconv.conv2d(x, w)[0, 0]
        array([[45., 54.],
               [81., 90.]], dtype=float32)
    """
    lib, dtype = check_arrays({"input": input, "weight": weight, "bias": bias},
                              float_names=("input", "weight", "bias"),
                              ranks={"input": (3, 4), "weight": (4,), "bias": (1,)})
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    g = conv2d_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None:
        check_shape(bias, (g.K,), "bias", f"weight of shape {tuple(weight.shape)} (K={g.K})")
    w = _flipped(weight) if _flip_flag(flip) else weight  # true convolution: rotated kernel
    if is_channels_last(x) or is_channels_last(weight):
        # Channels-last in, channels-last out (PyTorch's rule: input or weight channels-last):
        # the NHWC kernel reads x as it is, and y is an (N,P,Q,K) array seen as (N,K,P,Q).
        nhwc = (0, 2, 3, 1)
        (y,) = dispatch.run("conv2d_fprop_nhwc", g, [x.transpose(nhwc), w.transpose(nhwc), bias],
                            [((g.N, g.P, g.Q, g.K), dtype)], lib)
        y = y.transpose(0, 3, 1, 2)
    else:
        (y,) = dispatch.run("conv2d_fprop", g, [x, w, bias], [(g.y_shape, dtype)], lib)
    return y[0] if unbatched else y


@on_inputs_device
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max-pooling like ``F.max_pool2d``, optionally with the argmax indices.

    Padding reads as -inf and must be at most half the kernel size; ``stride`` defaults to
    ``kernel_size``. Indices are int64 ``h*W + w`` within each (n, c) plane. Ties give the
    first maximum in row-major window order; a window holding NaN gives NaN and the index of
    its last NaN; an all -inf window points at its first in-bounds element. ``ceil_mode``
    keeps a partial last window unless it would start inside the right padding.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W) float array, NumPy or CuPy.
        kernel_size, stride, padding, dilation: int or (h, w) pair.

    Returns:
        y of shape (N, C, P, Q) (or (C, P, Q)), or ``(y, indices)`` with ``return_indices``.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.array([[[1., 2.], [4., 3.]]], np.float32)
        >>> y, idx = gpuconv.max_pool2d(x, 2, return_indices=True)
        >>> float(y[0, 0, 0]), int(idx[0, 0, 0])
        (4.0, 2)
    """
    lib, dtype = check_arrays({"input": input}, float_names=("input",),
                              ranks={"input": (3, 4)})
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    g = pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y, idx = dispatch.run("maxpool2d_fwd", g, [x],
                          [(g.y_shape, dtype), (g.y_shape, INDEX_DTYPE)], lib)
    if unbatched:
        y, idx = y[0], idx[0]
    return (y, idx) if return_indices else y


# ----------------------------------------------------------------------------------------
# avg_pool2d and lp_pool2d (seed 002, section 9.3: average and L2-norm pooling), and
# separable_conv2d (section 9.8: a rank-1 kernel as two 1-D passes)
#
# avg_pool2d runs cuda/avgpool2d.cu. lp_pool2d is PyTorch's formula on top of it:
# (R*S * avg_pool2d(x**p))**(1/p), the elementwise powers computed with the arrays' own
# library (NumPy or CuPy; float16 / bfloat16 through float32, rounded back once per step, like
# PyTorch's half arithmetic). separable_conv2d runs the conv2d kernels twice.

import contextlib as _contextlib  # noqa: E402
import math as _math  # noqa: E402
import numbers as _numbers  # noqa: E402

import numpy as _np  # noqa: E402

from .geometry import avg_pool2d_geometry  # noqa: E402


def _array_module(lib: str):
    """(numpy or cupy, a function making a context that silences NumPy's floating-point
    warnings: NaN for a negative base is PyTorch's answer too)."""
    if lib == "cupy":
        import cupy
        return cupy, _contextlib.nullcontext
    return _np, lambda: _np.errstate(all="ignore")


from . import dtypes as _dtypes  # noqa: E402
from .dtypes import compute_dtype as _compute_dtype  # noqa: E402


def _norm_type(norm_type) -> float:
    """lp_pool2d's p as a float: a real number, not 0 (PyTorch divides by it), not NaN."""
    if not isinstance(norm_type, _numbers.Real) or isinstance(norm_type, bool):
        raise TypeError(f"norm_type must be a real number, got {norm_type!r}")
    p = float(norm_type)
    if p == 0 or _math.isnan(p):
        raise ValueError(f"norm_type must be nonzero and not NaN, got {norm_type!r} "
                         f"(the result is a (1/norm_type)-th power)")
    return p


@on_inputs_device
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling, like ``F.avg_pool2d`` (PyTorch's divisor rules exactly).

    ``y[n,c,p,q] = sum of input over the window's in-bounds cells / divisor(p, q)``. Padding
    adds zeros. The divisor is ``divisor_override`` when given, else the window's size
    counting padding cells (``count_include_pad=True``; a ``ceil_mode`` window that runs past
    the padded input counts only the cells up to its edge) or only input cells (False).
    ``stride`` defaults to ``kernel_size``; padding must be at most half the kernel;
    ``ceil_mode`` keeps a partial last window unless it would start in the right padding.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W) array, float16/32/64, NumPy or CuPy.
        kernel_size, stride, padding: int or (h, w) pair.
        ceil_mode, count_include_pad: bool. divisor_override: None or a nonzero int.

    Returns:
        (N, C, P, Q) (or (C, P, Q)) array, dtype and library of input; P, Q as for
        :func:`max_pool2d` with dilation 1.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        >>> gpuconv.avg_pool2d(x, 2)[0, 0]
        array([[ 2.5,  4.5],
               [10.5, 12.5]], dtype=float32)
        >>> round(float(gpuconv.avg_pool2d(x, 3, stride=2, padding=1)[0, 0, 0, 0]), 4)
        1.1111
        >>> # (0 + 1 + 4 + 5) / 9: the corner window counts its 5 padding cells
    """
    lib, dtype = check_arrays({"input": input}, float_names=("input",),
                              ranks={"input": (3, 4)})
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    g = avg_pool2d_geometry(x.shape, kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override)
    (y,) = dispatch.run("avgpool2d_fwd", g, [x], [(g.y_shape, dtype)], lib)
    return y[0] if unbatched else y


@on_inputs_device
def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """2-D power-average (Lp) pooling, like ``F.lp_pool2d``: ``(sum over window of x**p)**(1/p)``.

    Computed as PyTorch does: ``(R*S * avg_pool2d(x**p, kernel_size, stride, 0, ceil_mode))
    ** (1/p)``. So (PyTorch's quirks, kept): with ``ceil_mode`` a partial last window's sum
    is scaled by ``R*S / cells`` (avg_pool2d's divisor counts only the cells up to the
    input's edge); a negative window sum (odd p, negative inputs) or a negative input with
    non-integer p gives NaN. ``norm_type=2`` is L2-norm pooling (seed 002); ``inf`` gives
    the max of ``|x|`` over the window and ``-inf`` the min of ``|x|`` (PyTorch >= 2.3 does
    the same); 0 and NaN are refused.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W) float array, NumPy or CuPy.
        norm_type: p, a nonzero real number (int or float, may be +-inf).
        kernel_size, stride: int or (h, w) pair (stride defaults to kernel_size). No padding.

    Returns:
        (N, C, P, Q) (or (C, P, Q)) array, dtype and library of input.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.array([[[3., 0.], [0., 4.]]])
        >>> gpuconv.lp_pool2d(x, 2, 2)   # sqrt(3**2 + 4**2)
        array([[[5.]]])
    """
    lib, dtype = check_arrays({"input": input}, float_names=("input",),
                              ranks={"input": (3, 4)})
    p = _norm_type(norm_type)
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    g = avg_pool2d_geometry(x.shape, kernel_size, stride, 0, ceil_mode)
    xp, quiet = _array_module(lib)
    if _math.isinf(p):  # max (or min) of |x|: PyTorch's max_pool2d formulation
        sign = 1 if p > 0 else -1
        y = sign * max_pool2d(sign * xp.abs(x), kernel_size, stride, 0, 1, ceil_mode)
        return y[0] if unbatched else y
    ct = _compute_dtype(dtype)
    with quiet():
        powered = (x.astype(ct) ** p).astype(dtype)
    (avg,) = dispatch.run("avgpool2d_fwd", g, [powered], [(g.y_shape, dtype)], lib)
    y = dispatch.allocate_result(g.y_shape, dtype, lib)  # the result: gpuconv.torch's memory
    with quiet():
        y[...] = ((avg.astype(ct) * (g.R * g.S)) ** (1.0 / p)).astype(dtype)
    return y[0] if unbatched else y


def _separable_passes(x_shape, weight_h, weight_w, stride, padding, dilation, groups):
    """Check a separable_conv2d call's sizes; return (geometry of the equivalent conv2d,
    pass-1 weight, pass-1 keywords, pass-2 weight, pass-2 keywords)."""
    from .geometry import conv2d_geometry as _conv_geometry, pair as _pair

    K, Cg, R = weight_h.shape
    if tuple(weight_w.shape[:1]) != (K,):
        raise ValueError(f"weight_w has shape {tuple(weight_w.shape)}, but weight_h of shape "
                         f"{tuple(weight_h.shape)} has K={K} filters: weight_w must be (K, S) "
                         f"= ({K}, S)")
    S = weight_w.shape[1]
    g = _conv_geometry(x_shape, (K, Cg, R, S), stride, padding, dilation, groups)
    if isinstance(padding, str):
        pad1 = pad2 = padding  # 'valid' / 'same' / 'full' split per axis as in the 2-D op
    else:
        pad_h, pad_w = _pair(padding, "padding", minimum=0)
        pad1, pad2 = (pad_h, 0), (0, pad_w)
    pass1 = dict(stride=(g.stride_h, 1), padding=pad1, dilation=(g.dilation_h, 1),
                 groups=g.groups)
    pass2 = dict(stride=(1, g.stride_w), padding=pad2, dilation=(1, g.dilation_w), groups=K)
    return g, weight_h[:, :, :, None], pass1, weight_w[:, None, None, :], pass2


@on_inputs_device
def separable_conv2d(input, weight_h, weight_w, bias=None, stride=1, padding=0, dilation=1,
                     groups=1):
    """Conv2d with a separable (rank-1 in space) kernel, as two 1-D passes (seed 002, 9.8).

    Equal to ``conv2d(input, w, bias, stride, padding, dilation, groups)`` with the outer-
    product kernel ``w[k, c, r, s] = weight_h[k, c, r] * weight_w[k, s]``, computed as

    1. an R x 1 convolution with ``weight_h``, which mixes the channels (grouped like
       conv2d): ``t = conv2d(input, weight_h[..., None], stride=(sh, 1), padding=(ph, 0),
       dilation=(dh, 1), groups)``, shape (N, K, P, W);
    2. a 1 x S depthwise convolution (groups=K) with ``weight_w``, plus bias:
       ``y = conv2d(t, weight_w[:, None, None, :], bias, stride=(1, sw), padding=(0, pw),
       dilation=(1, dw), groups=K)``, shape (N, K, P, Q).

    Multiply-adds: ``N*K*P*(W*C/groups*R + Q*S)`` instead of ``N*K*P*Q*C/groups*R*S``: O(w*d)
    instead of O(w**d) for a w-wide kernel in d = 2 dimensions. ``groups=C`` with K = C
    filters each channel with its own separable kernel (a Sobel or Gaussian filter per
    channel). Both passes run the conv2d kernels (backend, dtypes as :func:`conv2d`); the
    intermediate t is stored in the input dtype (one extra rounding for float16).
    :func:`separable_factors` splits a rank-1 kernel into the two factors. Gradients:
    ``grad.separable_conv2d_input`` / ``separable_conv2d_weight`` / ``conv2d_bias``.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W) float array, NumPy or CuPy.
        weight_h: (K, C/groups, R) vertical factors. weight_w: (K, S) horizontal factors.
        bias: optional (K,). stride, padding, dilation, groups: as :func:`conv2d`
            (padding 'valid' / 'same' / 'full' too).

    Returns:
        (N, K, P, Q) (or (K, P, Q)) array, as conv2d with the (K, C/groups, R, S) kernel.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(16.).reshape(1, 1, 4, 4)
        >>> u, v = np.array([[[1., 2., 1.]]]), np.array([[-1., 0., 1.]])   # Sobel, x-gradient
        >>> gpuconv.separable_conv2d(x, u, v)[0, 0]
        array([[8., 8.],
               [8., 8.]])
    """
    lib, dtype = check_arrays({"input": input, "weight_h": weight_h, "weight_w": weight_w,
                               "bias": bias},
                              float_names=("input", "weight_h", "weight_w", "bias"),
                              ranks={"input": (3, 4), "weight_h": (3,), "weight_w": (2,),
                                     "bias": (1,)})
    x_shape = (1,) + tuple(input.shape) if input.ndim == 3 else tuple(input.shape)
    g, w1, pass1, w2, pass2 = _separable_passes(x_shape, weight_h, weight_w, stride, padding,
                                                dilation, groups)
    if bias is not None:
        check_shape(bias, (g.K,), "bias", f"weight_h of shape {tuple(weight_h.shape)} "
                    f"(K={g.K})")
    t = conv2d(input, w1, None, **pass1)
    return conv2d(t, w2, bias, **pass2)


@on_inputs_device
def separable_factors(weight, rtol=None):
    """Split a rank-1 kernel into the factors :func:`separable_conv2d` takes (by SVD).

    * a 2-D kernel ``k`` (R, S) -> ``(u, v)`` of shapes (R,), (S,) with ``k = outer(u, v)``;
    * a conv2d weight (K, C/groups, R, S) -> ``(weight_h, weight_w)`` of shapes
      (K, C/groups, R), (K, S) with ``weight[k, c, r, s] = weight_h[k, c, r] * weight_w[k, s]``
      (each filter, seen as a (C/groups*R) x S matrix, must have rank 1).

    Normalisation: ``v`` (each ``weight_w[k]``) has largest magnitude 1 and all the scale is
    in ``u``, whose largest-magnitude entry is positive (Sobel gives [1, 2, 1] and
    [-1, 0, 1]). An all-zero kernel gives zero factors. Computed in float64 on the host;
    returned in the weight's dtype and library.

    Args:
        weight: (R, S) or (K, C/groups, R, S) float array, NumPy or CuPy.
        rtol: the largest allowed ratio of the second to the first singular value; default
            ``32 * eps`` of the weight's dtype.

    Raises:
        ValueError: naming the filter, when a kernel is not rank 1 within ``rtol`` (or holds
            NaN / inf).

    Example:
        >>> import numpy as np, gpuconv
        >>> sobel = np.array([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
        >>> u, v = gpuconv.separable_factors(sobel)
        >>> np.round(u, 12), np.round(v, 12)
        (array([1., 2., 1.]), array([-1.,  0.,  1.]))
    """
    lib, dtype = check_arrays({"weight": weight}, float_names=("weight",),
                              ranks={"weight": (2, 4)})
    if rtol is None:
        rtol = 32 * _dtypes.eps(dtype)
    if not isinstance(rtol, _numbers.Real) or isinstance(rtol, bool) or not rtol >= 0:
        raise ValueError(f"rtol must be a non-negative number, got {rtol!r}")
    host = weight if lib == "numpy" else weight.get()
    w = _np.asarray(host, dtype=_np.float64)
    mats = w.reshape(1, w.shape[0], w.shape[1]) if w.ndim == 2 else \
        w.reshape(w.shape[0], w.shape[1] * w.shape[2], w.shape[3])
    if min(mats.shape) == 0:
        raise ValueError(f"weight must have non-zero sizes, got shape {tuple(w.shape)}")
    if not _np.isfinite(mats).all():
        raise ValueError("weight holds NaN or infinity: it has no rank-1 factorisation")
    us, vs = [], []
    for k, m in enumerate(mats):
        U, sigma, Vt = _np.linalg.svd(m, full_matrices=False)
        where = "weight" if w.ndim == 2 else f"weight[{k}]"
        if sigma[0] == 0:
            us.append(_np.zeros(m.shape[0]))
            vs.append(_np.zeros(m.shape[1]))
            continue
        if len(sigma) > 1 and sigma[1] > rtol * sigma[0]:
            raise ValueError(
                f"{where} is not separable: it is not rank 1 (singular values "
                f"{sigma[0]:.6g}, {sigma[1]:.6g}, ...; ratio {sigma[1] / sigma[0]:.3g} > rtol "
                f"{rtol:.3g})")
        u, v = U[:, 0] * sigma[0], Vt[0]
        scale = v[_np.argmax(_np.abs(v))]       # v's largest magnitude becomes 1
        u, v = u * abs(scale), v / abs(scale)
        if u[_np.argmax(_np.abs(u))] < 0:        # u's largest-magnitude entry positive
            u, v = -u, -v
        # SVD rounding noise where the kernel has exact zeros (Sobel's middle column): 0.
        noise = 8 * _np.finfo(_np.float64).eps
        u = _np.where(_np.abs(u) <= noise * _np.abs(u).max(), 0.0, u)
        v = _np.where(_np.abs(v) <= noise, 0.0, v)
        us.append(u)
        vs.append(v)
    if w.ndim == 2:
        u, v = us[0], vs[0]
    else:
        u = _np.stack(us).reshape(w.shape[0], w.shape[1], w.shape[2])
        v = _np.stack(vs)
    u, v = u.astype(dtype), v.astype(dtype)
    if lib == "cupy":
        import cupy
        u, v = cupy.asarray(u), cupy.asarray(v)
    return u, v


# ----------------------------------------------------------------------------------------
# true convolution (flip), conv1d and conv_transpose2d: the conv2d kernels, reused
#
# * flip=True rotates the kernel by 180 degrees (reverses its spatial axes) before the
#   cross-correlation kernels run, which turns them into a true convolution (seed 001).
# * conv1d is conv2d with H = R = 1: (N, C, L) is viewed as (N, C, 1, L).
# * conv_transpose2d(x, w) is the input gradient of the conv2d whose input has the
#   transposed convolution's output size, with x in the role of grad_output (dgrad kernel).

from .geometry import conv1d_geometry, conv_transpose2d_geometry  # noqa: E402


def _flip_flag(flip) -> bool:
    """The ``flip`` keyword checked: a bool (NumPy's too), else TypeError."""
    if not isinstance(flip, bool) and type(flip).__name__ != "bool_":
        raise TypeError(f"flip must be a bool, got {flip!r}")
    return bool(flip)


def _flipped(w):
    """The kernel rotated by 180 degrees: reversed along its two last (spatial) axes.
    A view; the launch path makes it contiguous."""
    return w[..., ::-1, ::-1]


def _zero_extended(a, shape):
    """``a`` (N, C, h, w) in the top-left corner of a zero array of ``shape`` (a itself when the
    shapes agree); same library and dtype."""
    if tuple(a.shape) == tuple(shape):
        return a
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy as xp
    else:
        import numpy as xp
    out = xp.zeros(shape, a.dtype)
    out[:, :, :a.shape[2], :a.shape[3]] = a
    return out


@on_inputs_device
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False):
    """1-D cross-correlation of ``input`` with ``weight``, plus ``bias``, like ``F.conv1d``.

    ``y[n,k,q] = bias[k] + sum_{c,s} input[n, g*C/G + c, q*stride - pad + s*dilation] *
    weight[k,c,s]`` (zero outside the input). Runs the conv2d kernels with H = R = 1.

    Args:
        input: (N, C, L) or unbatched (C, L) array, float16/32/64, NumPy or CuPy.
        weight: (K, C/groups, S) array of the same dtype and library.
        bias: optional (K,) array.
        stride, dilation: positive int (or 1-tuple).
        padding: int (or 1-tuple), ``'valid'``, ``'same'`` (stride 1 only; the extra element
            on the right for even kernels) or ``'full'`` (``dilation*(S-1)`` on each side).
        groups: splits C and K into this many independent groups.
        flip: keyword-only; True computes a true convolution (``weight[..., ::-1]``): with
            ``padding='full'`` it equals ``numpy.convolve(input, weight)`` (mode 'full').

    Returns:
        (N, K, Q) array (or (K, Q) for unbatched input), dtype and library of input.

    Example:
        >>> import numpy as np, gpuconv
        >>> signal = np.array([[1., 2., 3.]]); echo = np.array([[[1., 0., 0.5]]])
        >>> gpuconv.conv1d(signal, echo, padding="full", flip=True)   # np.convolve
        array([[1. , 2. , 3.5, 1. , 1.5]])
    """
    lib, dtype = check_arrays({"input": input, "weight": weight, "bias": bias},
                              float_names=("input", "weight", "bias"),
                              ranks={"input": (2, 3), "weight": (3,), "bias": (1,)})
    unbatched = input.ndim == 2
    x = input[None] if unbatched else input
    g = conv1d_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None:
        check_shape(bias, (g.K,), "bias", f"weight of shape {tuple(weight.shape)} (K={g.K})")
    w = weight[:, :, None, :]                                   # (K, C/G, 1, S)
    w = _flipped(w) if _flip_flag(flip) else w
    (y,) = dispatch.run("conv2d_fprop", g, [x[:, :, None, :], w, bias], [(g.y_shape, dtype)],
                        lib)
    y = y.reshape(g.N, g.K, g.Q)
    return y[0] if unbatched else y


@on_inputs_device
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """2-D transposed convolution ("deconvolution"), like ``F.conv_transpose2d``.

    Every input element scatters ``input[n,ci,i,j] * weight[ci,co,r,s]`` onto output
    ``(i*sh - pad_h + r*dh, j*sw - pad_w + s*dw)``: the input gradient of a conv2d with the
    same weight, stride, padding, dilation and groups, computed by the conv2d dgrad kernel.
    Output size ``H_out = (H-1)*sh - 2*pad_h + dh*(R-1) + output_padding_h + 1``.

    Args:
        input: (N, C_in, H, W) or unbatched (C_in, H, W) array, float16/32/64, NumPy or CuPy.
        weight: (C_in, C_out/groups, R, S) array of the same dtype and library.
        bias: optional (C_out,) array.
        stride, dilation: int or (h, w) pair, positive.
        padding: int or (h, w) pair, >= 0 (removed from each side of the output; no strings).
        output_padding: int or (h, w) pair added to the bottom/right of the output; each must
            be smaller than the stride or the dilation of its axis (PyTorch's rule).
        groups: splits C_in and C_out into this many independent groups.

    Returns:
        (N, C_out, H_out, W_out) array (or unbatched), dtype and library of input.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.array([[[1., 2.], [3., 4.]]]); w = np.ones((1, 1, 2, 2))
        >>> gpuconv.conv_transpose2d(x, w)
        array([[[ 1.,  3.,  2.],
                [ 4., 10.,  6.],
                [ 3.,  7.,  4.]]])
    """
    lib, dtype = check_arrays({"input": input, "weight": weight, "bias": bias},
                              float_names=("input", "weight", "bias"),
                              ranks={"input": (3, 4), "weight": (4,), "bias": (1,)})
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    g = conv_transpose2d_geometry(x.shape, weight.shape, stride, padding, output_padding, groups,
                                  dilation)
    C_out = g.y_shape[1]
    if bias is not None:
        check_shape(bias, (C_out,), "bias", f"weight of shape {tuple(weight.shape)} and "
                    f"groups={g.conv.groups} (C_out={C_out})")
    dy = _zero_extended(x, g.conv.y_shape)  # the conv2d's output (longer when output_padding >= stride)
    (y,) = dispatch.run("conv2d_dgrad", g.conv, [dy, weight], [(g.y_shape, dtype)], lib)
    if bias is not None:
        y += bias.reshape(1, C_out, 1, 1)
    return y[0] if unbatched else y


# ----------------------------------------------------------------------------------------
# conv3d: volumes and video (seed 002 §9.7), cuda/conv3d.cu
#
# Vocabulary: input depth D (video frames, scan slices), filter depth T, output depth O;
# height and width as in conv2d (H, W / R, S / P, Q).

from .geometry import conv3d_geometry  # noqa: E402


@on_inputs_device
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D cross-correlation of ``input`` with ``weight``, plus ``bias``, like ``F.conv3d``.

    ``y[n,k,o,p,q] = bias[k] + sum_{c,t,r,s} input[n, g*C/G + c, o*sd - pad_front + t*dd,
    p*sh - pad_top + r*dh, q*sw - pad_left + s*dw] * weight[k,c,t,r,s]`` (zero outside the
    input, ``g`` = k's group). Depth comes first: a video is (N, C, frames, H, W).

    Args:
        input: (N, C, D, H, W) or unbatched (C, D, H, W) array, float16/32/64, NumPy or CuPy.
        weight: (K, C/groups, T, R, S) array of the same dtype and library (T: filter depth).
        bias: optional (K,) array.
        stride, dilation: int or (depth, height, width) triple, positive.
        padding: int or (depth, height, width) triple, or ``'valid'`` (0), ``'same'`` (output
            size = input size, stride 1 only; the extra plane of an even kernel goes
            back/bottom/right) or ``'full'`` (``d*(k-1)`` on each side, output
            ``D + d*(T-1)``, ...).
        groups: splits C and K into this many independent groups (C for depthwise).

    Returns:
        (N, K, O, P, Q) array (or (K, O, P, Q) for unbatched input), dtype and library of input.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(27, dtype=np.float32).reshape(1, 1, 3, 3, 3)
        >>> w = np.ones((1, 1, 2, 2, 2), np.float32)
        >>> gpuconv.conv3d(x, w)[0, 0]
        array([[[ 52.,  60.],
                [ 76.,  84.]],
        <BLANKLINE>
               [[124., 132.],
                [148., 156.]]], dtype=float32)
    """
    lib, dtype = check_arrays({"input": input, "weight": weight, "bias": bias},
                              float_names=("input", "weight", "bias"),
                              ranks={"input": (4, 5), "weight": (5,), "bias": (1,)})
    unbatched = input.ndim == 4
    x = input[None] if unbatched else input
    g = conv3d_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None:
        check_shape(bias, (g.K,), "bias", f"weight of shape {tuple(weight.shape)} (K={g.K})")
    (y,) = dispatch.run("conv3d_fprop", g, [x, weight, bias], [(g.y_shape, dtype)], lib)
    return y[0] if unbatched else y


# ----------------------------------------------------------------------------------------
# tiled and locally connected (unshared) convolution (seed 002 §9.5): one kernel family,
# cuda/local_conv2d.cu; a locally connected layer is the tiled one with tile (P, Q).

from .geometry import local_conv2d_geometry, tiled_conv2d_geometry  # noqa: E402


def _tiled_forward(input, weight, bias, make_geometry, bias_name: str):
    lib, dtype = check_arrays({"input": input, "weight": weight, "bias": bias},
                              float_names=("input", "weight", "bias"),
                              ranks={"input": (3, 4), "weight": (6,), "bias": (1, 3)})
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    g = make_geometry(x.shape)
    if bias is not None and tuple(bias.shape) not in ((g.K,), g.tile_bias_shape):
        raise ValueError(f"bias has shape {tuple(bias.shape)}, but weight of shape "
                         f"{tuple(weight.shape)} needs (K,) = {(g.K,)} or {bias_name} = "
                         f"{g.tile_bias_shape}")
    (y,) = dispatch.run("tiled_conv2d_fprop", g, [x, weight, bias], [(g.y_shape, dtype)], lib)
    return y[0] if unbatched else y


@on_inputs_device
def local_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1):
    """Locally connected ("unshared") 2-D convolution: every output position has its own filters.

    ``y[n,k,p,q] = bias + sum_{c,r,s} input[n, c, p*sh - pad_top + r*dh, q*sw - pad_left + s*dw]
    * weight[p,q,k,c,r,s]`` (zero outside the input; a cross-correlation, like conv2d). Seed 002
    §9.5's unshared convolution; PyTorch has no such op (its closest analogue is ``F.unfold``
    followed by an einsum with the per-position weights). It is :func:`tiled_conv2d` with a
    tile of the output's size, and runs the same kernels.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W) array, float16/32/64, NumPy or CuPy.
        weight: (P, Q, K, C, R, S) array of the same dtype and library: ``weight[p, q]`` is
            the ordinary (K, C, R, S) conv2d filter bank of output position (p, q). (P, Q) must
            be the output size that the input, stride, padding and dilation give.
        bias: optional (K, P, Q) array (one bias per output unit, as the book suggests for
            locally connected layers) or (K,) (shared across positions).
        stride, dilation: int or (h, w) pair, positive.
        padding: int or (h, w) pair, or ``'valid'``, ``'same'`` (stride 1) or ``'full'``, as
            in :func:`gpuconv.conv2d`.

    Returns:
        (N, K, P, Q) array (or (K, P, Q) for unbatched input), dtype and library of input.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.arange(9.).reshape(1, 1, 3, 3)
        >>> w = np.zeros((2, 2, 1, 1, 2, 2)); w[0, 0, 0, 0, 0, 0] = 1; w[1, 1, 0, 0, 1, 1] = 1
        >>> gpuconv.local_conv2d(x, w)[0, 0]     # position (0,0) takes its top-left, (1,1) its bottom-right
        array([[0., 0.],
               [0., 8.]])
    """
    return _tiled_forward(input, weight, bias,
                          lambda x_shape: local_conv2d_geometry(x_shape, weight.shape, stride,
                                                                padding, dilation), "(K, P, Q)")


@on_inputs_device
def tiled_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1):
    """Tiled 2-D convolution: a TH x TW grid of filter banks, cycled through across space.

    ``y[n,k,p,q] = bias + sum_{c,r,s} input[n, c, p*sh - pad_top + r*dh, q*sw - pad_left + s*dw]
    * weight[p % TH, q % TW, k, c, r, s]`` (seed 002 §9.5: a compromise between a convolutional
    and a locally connected layer). Tile (1, 1) is :func:`gpuconv.conv2d` with
    ``weight[0, 0]``; tile (P, Q) is :func:`local_conv2d`. PyTorch has no such op (with
    ``F.unfold``: gather ``weight[p % TH, q % TW]`` per position, then an einsum).

    Args:
        input: (N, C, H, W) or unbatched (C, H, W) array, float16/32/64, NumPy or CuPy.
        weight: (TH, TW, K, C, R, S) array of the same dtype and library; ``weight[th, tw]``
            is an ordinary (K, C, R, S) conv2d filter bank. Any tile >= 1 is allowed; banks
            past the output size are used by no position.
        bias: optional (K,) array (shared by every bank) or (K, TH, TW) (tiled like the
            weight: position (p, q) adds ``bias[k, p % TH, q % TW]``).
        stride, dilation, padding: as in :func:`gpuconv.conv2d` (no groups).

    Returns:
        (N, K, P, Q) array (or (K, P, Q) for unbatched input), dtype and library of input.

    Example:
        >>> import numpy as np, gpuconv
        >>> x = np.ones((1, 1, 2, 4))
        >>> w = np.stack([np.ones((1, 1, 1, 1)), -np.ones((1, 1, 1, 1))])[None]  # tile (1, 2)
        >>> gpuconv.tiled_conv2d(x, w)[0, 0]     # columns alternate between the two banks
        array([[ 1., -1.,  1., -1.],
               [ 1., -1.,  1., -1.]])
    """
    return _tiled_forward(input, weight, bias,
                          lambda x_shape: tiled_conv2d_geometry(x_shape, weight.shape, stride,
                                                                padding, dilation), "(K, TH, TW)")
