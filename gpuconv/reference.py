"""NumPy reference of every op: the truth the kernels are checked against.

Each function is the formula written with array operations and nothing clever: the input is
padded, the sliding windows are taken as a view (``sliding_window_view``), and the sums are
``einsum`` contractions accumulated in float64. Results come back in the input dtype.

Every function takes NCHW arrays and a geometry object from :mod:`gpuconv.geometry` (which
holds every size and padding); validation happens before these are called.

Formulas (cross-correlation, as in PyTorch; ``g`` indexes the group)::

    y[n,k,p,q]   = b[k] + sum_{c,r,s} x[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw] * w[k,c,r,s]
    dx[n,c,h,w]  = sum_{k,p,q,r,s : h = p*sh - pt + r*dh, w = q*sw - pl + s*dw} dy[n,k,p,q] * w[k,c,r,s]
    dw[k,c,r,s]  = sum_{n,p,q} dy[n,k,p,q] * x[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw]
    db[k]        = sum_{n,p,q} dy[n,k,p,q]

(``x`` outside the input reads as 0; seed 003: dA is a "full" convolution of dZ with the
kernel rotated by 180 degrees, which is what the scatter in :func:`conv2d_input` computes.)
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .geometry import Conv2dGeometry, Pool2dGeometry

ACC = np.float64  # accumulation type of every reference sum


# ----------------------------------------------------------------------------------------
# conv2d


def _conv_windows(x: np.ndarray, g: Conv2dGeometry) -> np.ndarray:
    """The input patch under every output position: shape (N, G, C/G, P, Q, R, S).

    Zero-pads x (possibly asymmetrically), takes dilated R x S windows, keeps every
    stride-th window position and drops positions past the output size.
    """
    xp = np.pad(x.astype(ACC, copy=False),
                ((0, 0), (0, 0), (g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right)))
    span_h = g.dilation_h * (g.R - 1) + 1
    span_w = g.dilation_w * (g.S - 1) + 1
    win = sliding_window_view(xp, (span_h, span_w), axis=(2, 3))   # (N, C, Hp', Wp', span_h, span_w)
    win = win[:, :, ::g.stride_h, ::g.stride_w, ::g.dilation_h, ::g.dilation_w]
    win = win[:, :, :g.P, :g.Q]                                      # (N, C, P, Q, R, S)
    return win.reshape(g.N, g.groups, g.C_per_group, g.P, g.Q, g.R, g.S)


def _grouped_weight(w: np.ndarray, g: Conv2dGeometry) -> np.ndarray:
    """w (K, C/G, R, S) -> (G, K/G, C/G, R, S) in float64."""
    return w.astype(ACC, copy=False).reshape(g.groups, g.K_per_group, g.C_per_group, g.R, g.S)


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Conv2dGeometry) -> np.ndarray:
    """Forward cross-correlation plus bias: y (N, K, P, Q)."""
    y = np.einsum("ngcpqrs,gkcrs->ngkpq", _conv_windows(x, g), _grouped_weight(w, g),
                  optimize=True).reshape(g.y_shape)
    if b is not None:
        y = y + b.astype(ACC).reshape(1, g.K, 1, 1)
    return y.astype(x.dtype)


def conv2d_input(dy: np.ndarray, w: np.ndarray, g: Conv2dGeometry) -> np.ndarray:
    """Input gradient dx (N, C, H, W) of the forward pass.

    Each output position spreads dy[n,k,p,q] * w[k,c,:,:] back over the input patch it read
    ("col2im"): one strided slice-add per filter tap (r, s).
    """
    dyg = dy.astype(ACC, copy=False).reshape(g.N, g.groups, g.K_per_group, g.P, g.Q)
    cols = np.einsum("ngkpq,gkcrs->ngcrspq", dyg, _grouped_weight(w, g), optimize=True)
    cols = cols.reshape(g.N, g.C, g.R, g.S, g.P, g.Q)
    Hp = g.H + g.pad_top + g.pad_bottom
    Wp = g.W + g.pad_left + g.pad_right
    dx_padded = np.zeros((g.N, g.C, Hp, Wp), dtype=ACC)
    for r in range(g.R):
        h0 = r * g.dilation_h
        for s in range(g.S):
            w0 = s * g.dilation_w
            dx_padded[:, :, h0:h0 + g.stride_h * (g.P - 1) + 1:g.stride_h,
                            w0:w0 + g.stride_w * (g.Q - 1) + 1:g.stride_w] += cols[:, :, r, s]
    dx = dx_padded[:, :, g.pad_top:g.pad_top + g.H, g.pad_left:g.pad_left + g.W]
    return dx.astype(dy.dtype)


def conv2d_weight(x: np.ndarray, dy: np.ndarray, g: Conv2dGeometry) -> np.ndarray:
    """Weight gradient dw (K, C/G, R, S): each tap correlates the input with dy."""
    dyg = dy.astype(ACC, copy=False).reshape(g.N, g.groups, g.K_per_group, g.P, g.Q)
    dw = np.einsum("ngkpq,ngcpqrs->gkcrs", dyg, _conv_windows(x, g), optimize=True)
    return dw.reshape(g.w_shape).astype(x.dtype)


def conv2d_bias(dy: np.ndarray) -> np.ndarray:
    """Bias gradient db (K,): dy summed over batch and positions."""
    return dy.astype(ACC, copy=False).sum(axis=(0, 2, 3)).astype(dy.dtype)


# ----------------------------------------------------------------------------------------
# max-pool


def _pool_windows(a: np.ndarray, g: Pool2dGeometry, fill) -> np.ndarray:
    """Windows (N, C, P, Q, R*S) of ``a`` padded with ``fill``.

    The right/bottom padding is widened when ceil_mode or dilation lets the last window
    reach past the declared padding; those extra cells are padding too.
    """
    need_h = (g.P - 1) * g.stride_h + g.dilation_h * (g.R - 1) + 1
    need_w = (g.Q - 1) * g.stride_w + g.dilation_w * (g.S - 1) + 1
    extra_h = max(g.pad_h, need_h - g.H - g.pad_h)
    extra_w = max(g.pad_w, need_w - g.W - g.pad_w)
    padded = np.pad(a, ((0, 0), (0, 0), (g.pad_h, extra_h), (g.pad_w, extra_w)),
                    constant_values=fill)
    span_h = g.dilation_h * (g.R - 1) + 1
    span_w = g.dilation_w * (g.S - 1) + 1
    win = sliding_window_view(padded, (span_h, span_w), axis=(2, 3))
    win = win[:, :, ::g.stride_h, ::g.stride_w, ::g.dilation_h, ::g.dilation_w][:, :, :g.P, :g.Q]
    return win.reshape(a.shape[0], a.shape[1], g.P, g.Q, g.R * g.S)


def max_pool2d(x: np.ndarray, g: Pool2dGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool forward: (y, idx), idx int64 ``h*W + w`` within each (n, c) plane.

    PyTorch's rules: the window is scanned row-major keeping ``v > max or isnan(v)``, so
    ties give the first maximum, any NaN gives NaN with the index of the last NaN, and
    padding (-inf) never becomes an index: an all -inf window points at its first in-bounds
    element.
    """
    vals = _pool_windows(x.astype(ACC), g, fill=-np.inf)
    plane_index = np.arange(g.H * g.W, dtype=np.int64).reshape(1, 1, g.H, g.W)
    where = _pool_windows(plane_index, g, fill=-1)[0, 0]           # (P, Q, R*S), -1 = padding
    in_bounds = where >= 0
    nan = np.isnan(vals)
    has_nan = nan.any(axis=-1)
    y = np.where(has_nan, np.nan, np.max(np.where(nan, -np.inf, vals), axis=-1))
    first_max = np.argmax((vals == y[..., None]) & in_bounds, axis=-1)
    last_nan = vals.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    pos = np.where(has_nan, last_nan, first_max)
    idx = np.take_along_axis(np.broadcast_to(where, vals.shape), pos[..., None], axis=-1)[..., 0]
    return y.astype(x.dtype), np.ascontiguousarray(idx, dtype=np.int64)


def max_pool2d_input(dy: np.ndarray, idx: np.ndarray, g: Pool2dGeometry) -> np.ndarray:
    """Max-pool backward: dx[n, c, idx] += dy for every output (overlapping windows add up)."""
    planes = g.N * g.C
    offsets = np.arange(planes, dtype=np.int64).reshape(g.N, g.C, 1, 1) * (g.H * g.W) + idx
    dx = np.bincount(offsets.ravel(), weights=dy.astype(ACC).ravel(),
                     minlength=planes * g.H * g.W)
    return dx.reshape(g.x_shape).astype(dy.dtype)
