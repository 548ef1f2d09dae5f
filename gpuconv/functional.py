"""conv2d and max_pool2d: drop-in for ``torch.nn.functional``'s, on NumPy and CuPy arrays.

Each function: validate the arrays -> build the geometry (which validates the sizes) ->
compute through :mod:`gpuconv.dispatch` on the backend in force.
"""

from __future__ import annotations

from . import dispatch
from .geometry import conv2d_geometry, pool2d_geometry
from .validation import INDEX_DTYPE, check_arrays, check_shape


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
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

    Returns:
        (N, K, P, Q) array (or (K, P, Q) for unbatched input), dtype and library of input.

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
    (y,) = dispatch.run("conv2d_fprop", g, [x, weight, bias], [(g.y_shape, dtype)], lib)
    return y[0] if unbatched else y


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
