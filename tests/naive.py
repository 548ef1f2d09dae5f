"""Nested-loop versions of every op, written from the formulas and independent of
gpuconv.reference (no geometry objects, no padding tricks): the reference is checked
against these on tiny shapes.

Padding is given per side as (top, bottom, left, right); max-pool padding per axis.
"""

import math

import numpy as np


def out_size(size, before, after, k, stride, dilation):
    return (size + before + after - dilation * (k - 1) - 1) // stride + 1


def conv2d(x, w, b, stride, pad, dilation, groups):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = stride, dilation, pad
    P, Q = out_size(H, pt, pb, R, sh, dh), out_size(W, pl, pr, S, sw, dw)
    Kg = K // groups
    y = np.zeros((N, K, P, Q))
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    total = 0.0 if b is None else float(b[k])
                    for c in range(Cg):
                        for r in range(R):
                            for s in range(S):
                                h = p * sh - pt + r * dh
                                v = q * sw - pl + s * dw
                                if 0 <= h < H and 0 <= v < W:
                                    total += float(x[n, (k // Kg) * Cg + c, h, v]) * float(w[k, c, r, s])
                    y[n, k, p, q] = total
    return y


def conv2d_input(x_shape, w, dy, stride, pad, dilation, groups):
    N, C, H, W = x_shape
    K, Cg, R, S = w.shape
    (sh, sw), (dh, dw), (pt, _, pl, _) = stride, dilation, pad
    Kg = K // groups
    dx = np.zeros(x_shape)
    for n in range(N):
        for k in range(K):
            for p in range(dy.shape[2]):
                for q in range(dy.shape[3]):
                    for c in range(Cg):
                        for r in range(R):
                            for s in range(S):
                                h = p * sh - pt + r * dh
                                v = q * sw - pl + s * dw
                                if 0 <= h < H and 0 <= v < W:
                                    dx[n, (k // Kg) * Cg + c, h, v] += float(dy[n, k, p, q]) * float(w[k, c, r, s])
    return dx


def conv2d_weight(x, w_shape, dy, stride, pad, dilation, groups):
    N, C, H, W = x.shape
    K, Cg, R, S = w_shape
    (sh, sw), (dh, dw), (pt, _, pl, _) = stride, dilation, pad
    Kg = K // groups
    dw_ = np.zeros(w_shape)
    for k in range(K):
        for c in range(Cg):
            for r in range(R):
                for s in range(S):
                    total = 0.0
                    for n in range(N):
                        for p in range(dy.shape[2]):
                            for q in range(dy.shape[3]):
                                h = p * sh - pt + r * dh
                                v = q * sw - pl + s * dw
                                if 0 <= h < H and 0 <= v < W:
                                    total += float(dy[n, k, p, q]) * float(x[n, (k // Kg) * Cg + c, h, v])
                    dw_[k, c, r, s] = total
    return dw_


def max_pool2d(x, kernel, stride, pad, dilation, ceil_mode):
    """PyTorch's CPU loop: scan the in-bounds window row-major, keep v > max or isnan(v)."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pad, dilation

    def size(n, k, s, p, d):
        out = math.floor((n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) / s) + 1
        if ceil_mode and (out - 1) * s >= n + p:
            out -= 1
        return out

    P, Q = size(H, kh, sh, ph, dh), size(W, kw, sw, pw, dw)
    y = np.zeros((N, C, P, Q))
    idx = np.zeros((N, C, P, Q), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for p in range(P):
                for q in range(Q):
                    h0, w0 = p * sh - ph, q * sw - pw
                    while h0 < 0:
                        h0 += dh
                    while w0 < 0:
                        w0 += dw
                    best, best_i = -math.inf, h0 * W + w0
                    for h in range(h0, min(p * sh - ph + (kh - 1) * dh + 1, H), dh):
                        for v in range(w0, min(q * sw - pw + (kw - 1) * dw + 1, W), dw):
                            val = float(x[n, c, h, v])
                            if val > best or math.isnan(val):
                                best, best_i = val, h * W + v
                    y[n, c, p, q], idx[n, c, p, q] = best, best_i
    return y, idx


def max_pool2d_input(dy, idx, x_shape):
    dx = np.zeros(x_shape)
    N, C, H, W = x_shape
    for n in range(N):
        for c in range(C):
            for p in range(dy.shape[2]):
                for q in range(dy.shape[3]):
                    i = int(idx[n, c, p, q])
                    dx[n, c, i // W, i % W] += float(dy[n, c, p, q])
    return dx
