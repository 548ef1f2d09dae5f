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


def _col2im(cols: np.ndarray, g: Conv2dGeometry) -> np.ndarray:
    """Sum the per-tap contributions cols (N, C, R, S, P, Q) back onto the input (N, C, H, W):
    one strided slice-add per filter tap (r, s) into the padded input, then crop the padding."""
    Hp = g.H + g.pad_top + g.pad_bottom
    Wp = g.W + g.pad_left + g.pad_right
    dx_padded = np.zeros((g.N, g.C, Hp, Wp), dtype=ACC)
    for r in range(g.R):
        h0 = r * g.dilation_h
        for s in range(g.S):
            w0 = s * g.dilation_w
            dx_padded[:, :, h0:h0 + g.stride_h * (g.P - 1) + 1:g.stride_h,
                            w0:w0 + g.stride_w * (g.Q - 1) + 1:g.stride_w] += cols[:, :, r, s]
    return dx_padded[:, :, g.pad_top:g.pad_top + g.H, g.pad_left:g.pad_left + g.W]


def conv2d_input(dy: np.ndarray, w: np.ndarray, g: Conv2dGeometry) -> np.ndarray:
    """Input gradient dx (N, C, H, W) of the forward pass.

    Each output position spreads dy[n,k,p,q] * w[k,c,:,:] back over the input patch it read
    ("col2im"): one strided slice-add per filter tap (r, s).
    """
    dyg = dy.astype(ACC, copy=False).reshape(g.N, g.groups, g.K_per_group, g.P, g.Q)
    cols = np.einsum("ngkpq,gkcrs->ngcrspq", dyg, _grouped_weight(w, g), optimize=True)
    cols = cols.reshape(g.N, g.C, g.R, g.S, g.P, g.Q)
    return _col2im(cols, g).astype(dy.dtype)


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


# ----------------------------------------------------------------------------------------
# avg-pool and lp-pool (geometry.AvgPool2dGeometry; PyTorch's divisor rule is there):
#
#   y[n,c,p,q]  = sum of x over the window's input cells / divisor(p, q)
#   dx[n,c,h,w] = sum of dy[n,c,p,q] / divisor(p, q) over the windows holding (h, w)
#   lp:  y = (R*S * avg_pool2d(x**p))**(1/p)      (PyTorch's formula: with ceil_mode the
#        partial window's sum is scaled by R*S / its divisor, not left a plain sum)


def _avg_divisors(g) -> np.ndarray:
    """divisor(p, q) of every output, (P, Q) float64."""
    return np.array([[g.divisor(p, q) for q in range(g.Q)] for p in range(g.P)], dtype=ACC)


def avg_pool2d(x: np.ndarray, g) -> np.ndarray:
    """Avg-pool forward: y (N, C, P, Q); padding (and cells past it) add 0."""
    sums = _pool_windows(x.astype(ACC), g, fill=0.0).sum(axis=-1)
    return (sums / _avg_divisors(g)).astype(x.dtype)


def avg_pool2d_input(dy: np.ndarray, g) -> np.ndarray:
    """Avg-pool backward: each output spreads dy / divisor over its window (slice-add per tap)."""
    share = dy.astype(ACC) / _avg_divisors(g)
    need_h = (g.P - 1) * g.stride_h + g.R
    need_w = (g.Q - 1) * g.stride_w + g.S
    padded = np.zeros((g.N, g.C, max(need_h, g.H + g.pad_h), max(need_w, g.W + g.pad_w)), ACC)
    for r in range(g.R):
        for s in range(g.S):
            padded[:, :, r:r + g.stride_h * (g.P - 1) + 1:g.stride_h,
                   s:s + g.stride_w * (g.Q - 1) + 1:g.stride_w] += share
    return padded[:, :, g.pad_h:g.pad_h + g.H, g.pad_w:g.pad_w + g.W].astype(dy.dtype)


def lp_pool2d(x: np.ndarray, g, norm_type: float) -> np.ndarray:
    """Lp-pool forward (g without padding): ``(R*S * avg(x**p))**(1/p)``; p = +-inf: max /
    min of |x| over the window."""
    x64 = x.astype(ACC)
    p = float(norm_type)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if np.isinf(p):
            fill = -np.inf if p > 0 else np.inf
            win = _pool_windows(np.abs(x64), g, fill=fill)
            y = win.max(axis=-1) if p > 0 else win.min(axis=-1)
        else:
            y = (avg_pool2d(x64 ** p, g) * (g.R * g.S)) ** (1.0 / p)
    return y.astype(x.dtype)


def lp_pool2d_input(dy: np.ndarray, x: np.ndarray, g, norm_type: float) -> np.ndarray:
    """Lp-pool backward (finite p): ``dx = x**(p-1) * avg_pool2d_input(dy * y / avg)`` with
    ``avg = avg_pool2d(x**p)``, ``y = (R*S*avg)**(1/p)``; windows whose avg is 0 pass 0
    (PyTorch's rule)."""
    x64 = x.astype(ACC)
    p = float(norm_type)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        avg = avg_pool2d(x64 ** p, g)
        y = (avg * (g.R * g.S)) ** (1.0 / p)
        share = np.where(avg == 0, 0.0, dy.astype(ACC) * y / np.where(avg == 0, 1.0, avg))
        dx = x64 ** (p - 1) * avg_pool2d_input(share, g)
    return dx.astype(dy.dtype)


# ----------------------------------------------------------------------------------------
# conv3d: the conv2d formulas with a depth axis (input D, filter T, output O; padding
# front/back), on NCDHW arrays and a geometry.Conv3dGeometry:
#
#   y[n,k,o,p,q]  = b[k] + sum_{c,t,r,s} x[n, c, o*sd - pf + t*dd, p*sh - pt + r*dh,
#                                         q*sw - pl + s*dw] * w[k,c,t,r,s]
#   dx            = the scatter of dy[n,k,o,p,q] * w[k,c,:,:,:] over the patch each output read
#   dw[k,c,t,r,s] = sum_{n,o,p,q} dy[n,k,o,p,q] * x[n, c, (the same tap)]
#   db[k]         = sum_{n,o,p,q} dy[n,k,o,p,q]

from .geometry import Conv3dGeometry  # noqa: E402  (annotations of this section)


def _conv3d_windows(x: np.ndarray, g: Conv3dGeometry) -> np.ndarray:
    """The input patch under every output position: shape (N, G, C/G, O, P, Q, T, R, S)."""
    xp = np.pad(x.astype(ACC, copy=False),
                ((0, 0), (0, 0), (g.pad_front, g.pad_back), (g.pad_top, g.pad_bottom),
                 (g.pad_left, g.pad_right)))
    spans = (g.dilation_d * (g.T - 1) + 1, g.dilation_h * (g.R - 1) + 1,
             g.dilation_w * (g.S - 1) + 1)
    win = sliding_window_view(xp, spans, axis=(2, 3, 4))  # (N, C, D', H', W', span_d, span_h, span_w)
    win = win[:, :, ::g.stride_d, ::g.stride_h, ::g.stride_w,
              ::g.dilation_d, ::g.dilation_h, ::g.dilation_w]
    win = win[:, :, :g.O, :g.P, :g.Q]                                  # (N, C, O, P, Q, T, R, S)
    return win.reshape(g.N, g.groups, g.C_per_group, g.O, g.P, g.Q, g.T, g.R, g.S)


def _grouped_weight3d(w: np.ndarray, g: Conv3dGeometry) -> np.ndarray:
    """w (K, C/G, T, R, S) -> (G, K/G, C/G, T, R, S) in float64."""
    return w.astype(ACC, copy=False).reshape(g.groups, g.K_per_group, g.C_per_group,
                                             g.T, g.R, g.S)


def conv3d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Conv3dGeometry) -> np.ndarray:
    """Forward 3-D cross-correlation plus bias: y (N, K, O, P, Q)."""
    y = np.einsum("ngcopqtrs,gkctrs->ngkopq", _conv3d_windows(x, g), _grouped_weight3d(w, g),
                  optimize=True).reshape(g.y_shape)
    if b is not None:
        y = y + b.astype(ACC).reshape(1, g.K, 1, 1, 1)
    return y.astype(x.dtype)


def conv3d_input(dy: np.ndarray, w: np.ndarray, g: Conv3dGeometry) -> np.ndarray:
    """Input gradient dx (N, C, D, H, W): one strided slice-add per filter tap (t, r, s)."""
    dyg = dy.astype(ACC, copy=False).reshape(g.N, g.groups, g.K_per_group, g.O, g.P, g.Q)
    cols = np.einsum("ngkopq,gkctrs->ngctrsopq", dyg, _grouped_weight3d(w, g), optimize=True)
    cols = cols.reshape(g.N, g.C, g.T, g.R, g.S, g.O, g.P, g.Q)
    dx_padded = np.zeros((g.N, g.C, g.D + g.pad_front + g.pad_back, g.H + g.pad_top + g.pad_bottom,
                          g.W + g.pad_left + g.pad_right), dtype=ACC)
    for t in range(g.T):
        d0 = t * g.dilation_d
        for r in range(g.R):
            h0 = r * g.dilation_h
            for s in range(g.S):
                w0 = s * g.dilation_w
                dx_padded[:, :, d0:d0 + g.stride_d * (g.O - 1) + 1:g.stride_d,
                                h0:h0 + g.stride_h * (g.P - 1) + 1:g.stride_h,
                                w0:w0 + g.stride_w * (g.Q - 1) + 1:g.stride_w] += cols[:, :, t, r, s]
    dx = dx_padded[:, :, g.pad_front:g.pad_front + g.D, g.pad_top:g.pad_top + g.H,
                   g.pad_left:g.pad_left + g.W]
    return dx.astype(dy.dtype)


def conv3d_weight(x: np.ndarray, dy: np.ndarray, g: Conv3dGeometry) -> np.ndarray:
    """Weight gradient dw (K, C/G, T, R, S): each tap correlates the input with dy."""
    dyg = dy.astype(ACC, copy=False).reshape(g.N, g.groups, g.K_per_group, g.O, g.P, g.Q)
    dw = np.einsum("ngkopq,ngcopqtrs->gkctrs", dyg, _conv3d_windows(x, g), optimize=True)
    return dw.reshape(g.w_shape).astype(x.dtype)


def conv3d_bias(dy: np.ndarray) -> np.ndarray:
    """Bias gradient db (K,): dy (N, K, O, P, Q) summed over batch and positions."""
    return dy.astype(ACC, copy=False).sum(axis=(0, 2, 3, 4)).astype(dy.dtype)


# ----------------------------------------------------------------------------------------
# tiled and locally connected (unshared) conv2d (seed 002 §9.5)
#
#   y[n,k,p,q]        = bias + sum_{c,r,s} x[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw] * w[p%TH, q%TW, k,c,r,s]
#   dx[n,c,h,w]       = sum_{k,p,q,r,s : h = p*sh - pt + r*dh, w = ...} dy[n,k,p,q] * w[p%TH, q%TW, k,c,r,s]
#   dw[th,tw,k,c,r,s] = sum_{n, p%TH=th, q%TW=tw} dy[n,k,p,q] * x[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw]
#   db[k,th,tw]       = sum_{n, p%TH=th, q%TW=tw} dy[n,k,p,q]        (a (K,) bias: conv2d_bias)
#
# The output positions of bank (th, tw) are y[:, :, th::TH, tw::TW]: on them the op is an
# ordinary conv2d with weight w[th, tw]. Each function below loops over the banks and does
# exactly that (a bank used by no position - a tile larger than the output - gets zeros).


def _banks(g):
    """(th, tw) of every filter bank, row-major."""
    return [(th, tw) for th in range(g.TH) for tw in range(g.TW)]


def tiled_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g) -> np.ndarray:
    """Tiled forward pass y (N, K, P, Q); ``b`` is None, (K,) or (K, TH, TW)."""
    win = _conv_windows(x, g)[:, 0]                                   # (N, C, P, Q, R, S)
    w64 = w.astype(ACC, copy=False)
    y = np.zeros(g.y_shape, dtype=ACC)
    for th, tw in _banks(g):
        y[:, :, th::g.TH, tw::g.TW] = np.einsum("ncpqrs,kcrs->nkpq", win[:, :, th::g.TH, tw::g.TW],
                                                 w64[th, tw], optimize=True)
        if b is not None and b.ndim == 3:
            y[:, :, th::g.TH, tw::g.TW] += b[:, th, tw].astype(ACC).reshape(1, g.K, 1, 1)
    if b is not None and b.ndim == 1:
        y += b.astype(ACC).reshape(1, g.K, 1, 1)
    return y.astype(x.dtype)


def tiled_conv2d_input(dy: np.ndarray, w: np.ndarray, g) -> np.ndarray:
    """Input gradient dx (N, C, H, W): each output spreads dy * its bank back over its patch."""
    dy64 = dy.astype(ACC, copy=False)
    w64 = w.astype(ACC, copy=False)
    cols = np.zeros((g.N, g.C, g.R, g.S, g.P, g.Q), dtype=ACC)
    for th, tw in _banks(g):
        cols[..., th::g.TH, tw::g.TW] = np.einsum("nkpq,kcrs->ncrspq",
                                                  dy64[:, :, th::g.TH, tw::g.TW], w64[th, tw],
                                                  optimize=True)
    return _col2im(cols, g).astype(dy.dtype)


def tiled_conv2d_weight(x: np.ndarray, dy: np.ndarray, g) -> np.ndarray:
    """Weight gradient dw (TH, TW, K, C, R, S): bank (th, tw) correlates x with its outputs' dy."""
    win = _conv_windows(x, g)[:, 0]
    dy64 = dy.astype(ACC, copy=False)
    dw = np.zeros(g.w_shape, dtype=ACC)
    for th, tw in _banks(g):
        dw[th, tw] = np.einsum("nkpq,ncpqrs->kcrs", dy64[:, :, th::g.TH, tw::g.TW],
                               win[:, :, th::g.TH, tw::g.TW], optimize=True)
    return dw.astype(x.dtype)


def tiled_conv2d_bias(dy: np.ndarray, g) -> np.ndarray:
    """Gradient db (K, TH, TW) of a per-filter-and-bank bias: dy summed over n and the
    positions that use each bank."""
    dy64 = dy.astype(ACC, copy=False)
    db = np.zeros(g.tile_bias_shape, dtype=ACC)
    for th, tw in _banks(g):
        db[:, th, tw] = dy64[:, :, th::g.TH, tw::g.TW].sum(axis=(0, 2, 3))
    return db.astype(dy.dtype)


# ----------------------------------------------------------------------------------------
# true convolution, conv1d and conv_transpose2d: composed from the 2-D reference above


def conv2d_flip(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Conv2dGeometry) -> np.ndarray:
    """True 2-D convolution: the cross-correlation with the kernel rotated by 180 degrees."""
    return conv2d(x, w[..., ::-1, ::-1], b, g)


def _as_2d_weight(w: np.ndarray, flip: bool) -> np.ndarray:
    """A conv1d weight (K, C/G, S) as the (K, C/G, 1, S) weight of a conv2d, flipped if asked."""
    w4 = w[:, :, None, :]
    return w4[..., ::-1] if flip else w4


def conv1d(x, w, b, g: Conv2dGeometry, flip: bool = False) -> np.ndarray:
    """conv1d (g from geometry.conv1d_geometry, H = R = P = 1): conv2d of the (N, C, 1, L) view."""
    return conv2d(x[:, :, None, :], _as_2d_weight(w, flip), b, g)[:, :, 0, :]


def conv1d_input(dy, w, g: Conv2dGeometry, flip: bool = False) -> np.ndarray:
    return conv2d_input(dy[:, :, None, :], _as_2d_weight(w, flip), g)[:, :, 0, :]


def conv1d_weight(x, dy, g: Conv2dGeometry, flip: bool = False) -> np.ndarray:
    dw = conv2d_weight(x[:, :, None, :], dy[:, :, None, :], g)
    return (dw[..., ::-1] if flip else dw)[:, :, 0, :]


def _extend(a: np.ndarray, shape) -> np.ndarray:
    """``a`` zero-padded at the bottom/right to ``shape`` (output_padding rows and columns)."""
    return np.pad(a, [(0, t - s) for s, t in zip(a.shape, shape)])


def conv_transpose2d(x, w, b, g) -> np.ndarray:
    """conv_transpose2d (g: geometry.ConvTranspose2dGeometry): the input gradient of the
    equivalent conv2d ``g.conv``, with x as its output gradient, plus bias."""
    y = conv2d_input(_extend(x.astype(ACC), g.conv.y_shape), w.astype(ACC), g.conv)
    if b is not None:
        y = y + b.astype(ACC).reshape(1, -1, 1, 1)
    return y.astype(x.dtype)


def conv_transpose2d_input(dy, w, g) -> np.ndarray:
    """Its input gradient: a conv2d forward of dy, cropped to the input size."""
    return conv2d(dy, w, None, g.conv)[:, :, :g.H_in, :g.W_in]


def conv_transpose2d_weight(x, dy, g) -> np.ndarray:
    """Its weight gradient: conv2d_weight with the roles of input and output swapped."""
    return conv2d_weight(dy, _extend(x, g.conv.y_shape), g.conv).astype(x.dtype)
