"""Every size, padding and ceil_mode formula of gpuconv, in one place.

The reference, the kernels' launch code and validation all read their sizes from the
geometry objects built here, so a formula can never disagree between them.

Vocabulary (DESIGN.md): input ``N, C, H, W``; filter ``K, R, S``; output ``P, Q``.
Rules follow PyTorch (FACTS.md):

* conv output: ``P = floor((H + pad_top + pad_bottom - dilation_h*(R-1) - 1) / stride_h) + 1``
* ``padding='valid'`` is 0; ``'same'`` (stride 1 only) pads ``dilation*(k-1)`` in total,
  ``total//2`` on the top/left and the rest on the bottom/right; ``'full'`` pads
  ``dilation*(k-1)`` on every side (output ``H + d*(k-1)``, seed 002's m+k-1).
* max-pool output: the conv formula with the same padding on both sides, plus ``stride-1``
  in the numerator under ``ceil_mode``, after which a window that would start inside the
  right padding is dropped.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

PADDING_STRINGS = ("valid", "same", "full")


# ----------------------------------------------------------------------------------------
# argument normalisation


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def pair(value, name: str, *, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints -> a pair of ints, each >= minimum; else ValueError/TypeError."""
    if _is_int(value):
        values = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        values = (int(value[0]), int(value[1]))
    elif isinstance(value, (tuple, list)) and len(value) == 1 and _is_int(value[0]):
        values = (int(value[0]), int(value[0]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return values


def _size(shape, name: str, rank: int) -> tuple[int, ...]:
    """A shape given by the caller (input_size, weight_size) -> a tuple of non-negative ints."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}") from None
    if not all(_is_int(d) for d in dims):
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}")
    if len(dims) != rank:
        raise ValueError(f"{name} must have {rank} entries, got {len(dims)}: {shape!r}")
    if any(d < 0 for d in dims):
        raise ValueError(f"{name} must not contain negative sizes, got {shape!r}")
    return tuple(int(d) for d in dims)


def conv_output_size(size: int, pad_before: int, pad_after: int, kernel: int,
                     stride: int, dilation: int) -> int:
    """Output length of a cross-correlation along one axis (PyTorch's formula)."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size: int, pad: int, kernel: int, stride: int, dilation: int,
                     ceil_mode: bool) -> int:
    """Output length of a max-pool along one axis, with PyTorch's ceil_mode correction."""
    numerator = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # the last window would start inside the right padding
    return out


# ----------------------------------------------------------------------------------------
# conv2d


@dataclass(frozen=True)
class Conv2dGeometry:
    """Sizes of one conv2d problem: x (N,C,H,W) * w (K,C/groups,R,S) -> y (N,K,P,Q)."""

    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    P: int
    Q: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    groups: int

    @property
    def C_per_group(self) -> int:
        return self.C // self.groups

    @property
    def K_per_group(self) -> int:
        return self.K // self.groups

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.K, self.C_per_group, self.R, self.S)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.K, self.P, self.Q)

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of the forward pass (the same for each gradient)."""
        return 2 * self.N * self.K * self.P * self.Q * self.C_per_group * self.R * self.S


def _conv_padding(padding, R: int, S: int, stride, dilation) -> tuple[int, int, int, int]:
    """padding argument -> (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"padding must be an int, a pair of ints or one of "
                             f"{PADDING_STRINGS}, got {padding!r}")
        if padding == "valid":
            return (0, 0, 0, 0)
        total_h, total_w = dilation[0] * (R - 1), dilation[1] * (S - 1)
        if padding == "full":
            return (total_h, total_h, total_w, total_w)
        if stride != (1, 1):
            raise ValueError(f"padding='same' is not supported for strided convolutions "
                             f"(stride={stride})")
        return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
    ph, pw = pair(padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


def conv2d_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1) -> Conv2dGeometry:
    """Validate a conv2d call's sizes and hyper-parameters and return its geometry.

    ``x_shape`` is (N, C, H, W) and ``w_shape`` is (K, C/groups, R, S). Raises ValueError or
    TypeError naming the argument for every invalid combination.
    """
    N, C, H, W = _size(x_shape, "input", 4)
    K, Cg, R, S = _size(w_shape, "weight", 4)
    stride = pair(stride, "stride", minimum=1)
    dilation = pair(dilation, "dilation", minimum=1)
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    for name, value in (("input channels C", C), ("input height H", H), ("input width W", W)):
        if value < 1:
            raise ValueError(f"input must have non-zero sizes, got {name}={value} "
                             f"(input shape {tuple(x_shape)})")
    for name, value in (("out channels K", K), ("in channels per group", Cg),
                        ("kernel height R", R), ("kernel width S", S)):
        if value < 1:
            raise ValueError(f"weight must have non-zero sizes, got {name}={value} "
                             f"(weight shape {tuple(w_shape)})")
    if C % groups:
        raise ValueError(f"groups={groups} must divide the input channels C={C}")
    if K % groups:
        raise ValueError(f"groups={groups} must divide the output channels K={K} "
                         f"(weight shape {tuple(w_shape)})")
    if Cg * groups != C:
        raise ValueError(f"weight shape {tuple(w_shape)} expects {Cg * groups} input channels "
                         f"(weight.shape[1]={Cg} x groups={groups}), but input has C={C}")
    top, bottom, left, right = _conv_padding(padding, R, S, stride, dilation)
    eff_r, eff_s = dilation[0] * (R - 1) + 1, dilation[1] * (S - 1) + 1
    if H + top + bottom < eff_r or W + left + right < eff_s:
        raise ValueError(
            f"weight: kernel size {(R, S)} (dilated {(eff_r, eff_s)}) is larger than the padded "
            f"input {(H + top + bottom, W + left + right)}")
    P = conv_output_size(H, top, bottom, R, stride[0], dilation[0])
    Q = conv_output_size(W, left, right, S, stride[1], dilation[1])
    return Conv2dGeometry(N=N, C=C, H=H, W=W, K=K, R=R, S=S, P=P, Q=Q,
                          pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right,
                          stride_h=stride[0], stride_w=stride[1],
                          dilation_h=dilation[0], dilation_w=dilation[1], groups=groups)


# ----------------------------------------------------------------------------------------
# max-pool


@dataclass(frozen=True)
class Pool2dGeometry:
    """Sizes of one 2-D pooling problem: x (N,C,H,W) -> y (N,C,P,Q) with an R x S window."""

    N: int
    C: int
    H: int
    W: int
    R: int
    S: int
    P: int
    Q: int
    pad_h: int
    pad_w: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    ceil_mode: bool

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.P, self.Q)


def _window_without_input(size, out, kernel, stride, pad, dilation):
    """Index of the first pooling window along one axis whose taps all fall in the padding,
    or None. Only windows starting in the left padding can (the ceil_mode correction keeps
    every window's start before the end of the input); PyTorch would return -inf and an
    index outside the plane for such a window, gpuconv refuses the geometry instead."""
    i = 0
    while i < out and i * stride < pad:
        start = i * stride - pad
        first_tap = -(start // dilation)            # smallest j with start + j*dilation >= 0
        if first_tap >= kernel or start + first_tap * dilation >= size:
            return i
        i += 1
    return None


def pool2d_geometry(x_shape, kernel_size, stride=None, padding=0, dilation=1,
                    ceil_mode=False) -> Pool2dGeometry:
    """Validate a max_pool2d call and return its geometry (stride defaults to kernel_size)."""
    N, C, H, W = _size(x_shape, "input", 4)
    R, S = pair(kernel_size, "kernel_size", minimum=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = (R, S)
    stride = pair(stride, "stride", minimum=1)
    pad = pair(padding, "padding", minimum=0)
    dilation = pair(dilation, "dilation", minimum=1)
    if not isinstance(ceil_mode, (bool, int)) or isinstance(ceil_mode, float):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    for name, value in (("channels C", C), ("height H", H), ("width W", W)):
        if value < 1:
            raise ValueError(f"input must have non-zero sizes, got {name}={value} "
                             f"(input shape {tuple(x_shape)})")
    # PyTorch: pad must be at most half of the (undilated) kernel size.
    if pad[0] > R // 2 or pad[1] > S // 2:
        raise ValueError(f"padding {pad} must be at most half of kernel_size {(R, S)}")
    P = pool_output_size(H, pad[0], R, stride[0], dilation[0], bool(ceil_mode))
    Q = pool_output_size(W, pad[1], S, stride[1], dilation[1], bool(ceil_mode))
    if P < 1 or Q < 1:
        raise ValueError(f"kernel_size {(R, S)} with dilation {dilation} and padding {pad} "
                         f"is larger than the input {(H, W)}: output would be {(P, Q)}")
    for axis, size, out, k, s, p, d in (("height", H, P, R, stride[0], pad[0], dilation[0]),
                                        ("width", W, Q, S, stride[1], pad[1], dilation[1])):
        window = _window_without_input(size, out, k, s, p, d)
        if window is not None:
            raise ValueError(
                f"padding {pad} with dilation {dilation} puts pooling window {window} along the "
                f"{axis} entirely in the padding (kernel_size {(R, S)}, input {(H, W)}): it "
                f"would have no input element to take the maximum of")
    return Pool2dGeometry(N=N, C=C, H=H, W=W, R=R, S=S, P=P, Q=Q, pad_h=pad[0], pad_w=pad[1],
                          stride_h=stride[0], stride_w=stride[1], dilation_h=dilation[0],
                          dilation_w=dilation[1], ceil_mode=bool(ceil_mode))


# ----------------------------------------------------------------------------------------
# avg-pool (and lp-pool, an avg-pool of x**p): max-pool's sizes and checks, plus the divisor


@dataclass(frozen=True)
class AvgPool2dGeometry:
    """Sizes of one 2-D average-pooling problem: x (N,C,H,W) -> y (N,C,P,Q), R x S window.

    P, Q, the padding rule and the ceil_mode correction are max-pool's (no dilation: PyTorch's
    avg_pool2d has none). Window (p, q) along h (w alike), PyTorch's rule
    (aten/src/ATen/native/cpu/AvgPoolKernel.cpp)::

        first = p*stride_h - pad_h
        end   = min(first + R, H + pad_h)     # a ceil_mode window is clipped to the padded input
        lo, hi = max(first, 0), min(end, H)   # the rows holding input

    divisor = ``divisor_override`` when nonzero, else ``(end-first)*(end_w-first_w)`` with
    ``count_include_pad``, else ``(hi-lo)*(hi_w-lo_w)``. See :func:`avg_pool_window`.
    """

    N: int
    C: int
    H: int
    W: int
    R: int
    S: int
    P: int
    Q: int
    pad_h: int
    pad_w: int
    stride_h: int
    stride_w: int
    ceil_mode: bool
    count_include_pad: bool
    divisor_override: int   # 0: none (PyTorch refuses 0 as an override, so 0 is free)
    dilation_h: int = 1     # always 1; present so max-pool's window helpers apply unchanged
    dilation_w: int = 1

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H, self.W)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.P, self.Q)

    def divisor(self, p: int, q: int) -> int:
        """What output (p, q)'s window sum is divided by."""
        if self.divisor_override:
            return self.divisor_override
        first_h, end_h, lo_h, hi_h = avg_pool_window(p, self.H, self.pad_h, self.R, self.stride_h)
        first_w, end_w, lo_w, hi_w = avg_pool_window(q, self.W, self.pad_w, self.S, self.stride_w)
        if self.count_include_pad:
            return (end_h - first_h) * (end_w - first_w)
        return (hi_h - lo_h) * (hi_w - lo_w)


def avg_pool_window(index: int, size: int, pad: int, kernel: int,
                    stride: int) -> tuple[int, int, int, int]:
    """(first, end, lo, hi) of avg-pool window ``index`` along one axis: it spans
    [first, end) of the padded axis (end clipped to ``size + pad``), and [lo, hi) of the input."""
    first = index * stride - pad
    end = min(first + kernel, size + pad)
    return first, end, max(first, 0), min(end, size)


def avg_pool2d_geometry(x_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None) -> AvgPool2dGeometry:
    """Validate an avg_pool2d call and return its geometry (stride defaults to kernel_size).

    Sizes, padding (at most half the kernel) and ceil_mode follow max_pool2d with dilation 1;
    ``count_include_pad`` must be a bool, ``divisor_override`` None or a nonzero int.
    """
    g = pool2d_geometry(x_shape, kernel_size, stride, padding, 1, ceil_mode)
    if not isinstance(count_include_pad, (bool, int)) or isinstance(count_include_pad, float):
        raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
    if divisor_override is None:
        divisor = 0
    else:
        if not _is_int(divisor_override):
            raise TypeError(f"divisor_override must be None or an int, got {divisor_override!r}")
        divisor = int(divisor_override)
        if divisor == 0:
            raise ValueError("divisor_override must not be zero (None: the window's count)")
        if not -2**31 <= divisor < 2**31:
            raise ValueError(f"divisor_override={divisor} does not fit the kernels' 32-bit "
                             f"argument")
    return AvgPool2dGeometry(N=g.N, C=g.C, H=g.H, W=g.W, R=g.R, S=g.S, P=g.P, Q=g.Q,
                             pad_h=g.pad_h, pad_w=g.pad_w, stride_h=g.stride_h,
                             stride_w=g.stride_w, ceil_mode=g.ceil_mode,
                             count_include_pad=bool(count_include_pad),
                             divisor_override=divisor)


# ----------------------------------------------------------------------------------------
# tiled and locally connected (unshared) conv2d (seed 002 §9.5)


@dataclass(frozen=True)
class TiledConv2dGeometry(Conv2dGeometry):
    """Sizes of one tiled conv2d: x (N,C,H,W) * w (TH,TW,K,C,R,S) -> y (N,K,P,Q).

    Output position (p, q) uses filter bank ``w[p % TH, q % TW]``; every spatial formula is
    conv2d's (``groups`` is always 1). A locally connected layer is tile (TH, TW) = (P, Q).
    """

    TH: int
    TW: int

    @property
    def w_shape(self) -> tuple[int, int, int, int, int, int]:
        return (self.TH, self.TW, self.K, self.C, self.R, self.S)

    @property
    def tile_bias_shape(self) -> tuple[int, int, int]:
        """Shape of a bias per filter and bank, (K, TH, TW)."""
        return (self.K, self.TH, self.TW)


def tiled_conv2d_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1) -> TiledConv2dGeometry:
    """Validate a tiled conv2d call's sizes and return its geometry.

    ``x_shape`` is (N, C, H, W) and ``w_shape`` is (TH, TW, K, C, R, S): a TH x TW grid of
    conv2d filter banks. The spatial sizes and padding rules (int, pair, 'valid', 'same',
    'full') are conv2d's. A tile larger than the output is allowed: its extra banks are used
    by no output position (their gradient is zero).
    """
    TH, TW, K, C, R, S = _size(w_shape, "weight", 6)
    for name, value in (("tile height TH", TH), ("tile width TW", TW)):
        if value < 1:
            raise ValueError(f"weight must have non-zero sizes, got {name}={value} "
                             f"(weight shape {tuple(w_shape)})")
    x_dims = _size(x_shape, "input", 4)
    if C >= 1 and x_dims[1] >= 1 and C != x_dims[1]:
        raise ValueError(f"weight of shape {tuple(w_shape)} expects C={C} input channels "
                         f"(weight.shape[3]), but input has C={x_dims[1]}")
    g = conv2d_geometry(x_dims, (K, C, R, S), stride, padding, dilation, 1)
    return TiledConv2dGeometry(**vars(g), TH=TH, TW=TW)


def local_conv2d_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1) -> TiledConv2dGeometry:
    """Validate a locally connected conv2d call: ``w_shape`` (P, Q, K, C, R, S) must name one
    filter bank per output position, i.e. its first two sizes must be the output size."""
    g = tiled_conv2d_geometry(x_shape, w_shape, stride, padding, dilation)
    if (g.TH, g.TW) != (g.P, g.Q):
        raise ValueError(f"weight of shape {tuple(w_shape)} has {(g.TH, g.TW)} output positions, "
                         f"but input of shape {tuple(x_shape)} with this stride, padding and "
                         f"dilation gives an output of {(g.P, g.Q)} (weight must be "
                         f"(P, Q, K, C, R, S))")
    return g


# ----------------------------------------------------------------------------------------
# conv1d: a conv2d with H = R = 1 (the 2-D formulas above, one place for them)


def single(value, name: str, *, minimum: int, op: str = "conv1d") -> int:
    """An int or a 1-tuple of ints -> an int >= minimum (1-D ops); else ValueError/TypeError."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not _is_int(value):
        raise TypeError(f"{name} must be an int or a 1-tuple of ints for {op}, got {value!r}")
    if value < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def conv1d_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1) -> Conv2dGeometry:
    """Validate a conv1d call's sizes and return the geometry of the equivalent conv2d.

    ``x_shape`` is (N, C, L) and ``w_shape`` is (K, C/groups, S); the result describes the
    conv2d of x (N, C, 1, L) with w (K, C/groups, 1, S): ``W`` is L, ``S`` the kernel length
    and ``Q`` the output length, with H = R = P = 1. Checks that would otherwise report 2-D
    sizes run here first, so every message names conv1d's own arguments.
    """
    N, C, L = _size(x_shape, "input", 3)
    K, Cg, S = _size(w_shape, "weight", 3)
    stride = single(stride, "stride", minimum=1)
    dilation = single(dilation, "dilation", minimum=1)
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"padding must be an int, a 1-tuple of ints or one of "
                             f"{PADDING_STRINGS}, got {padding!r}")
        if padding == "same" and stride != 1:
            raise ValueError(f"padding='same' is not supported for strided convolutions "
                             f"(stride={stride})")
        padding_2d = padding
    else:
        padding_2d = (0, single(padding, "padding", minimum=0))
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    if C < 1 or L < 1:
        raise ValueError(f"input must have non-zero sizes, got C={C}, L={L} "
                         f"(input shape {tuple(x_shape)})")
    if K < 1 or Cg < 1 or S < 1:
        raise ValueError(f"weight must have non-zero sizes, got shape {tuple(w_shape)}")
    if C % groups or K % groups or Cg * groups != C:
        raise ValueError(f"groups={groups} must divide the input channels C={C} and the output "
                         f"channels K={K}, and weight.shape[1]={Cg} x groups must equal C "
                         f"(weight shape {tuple(w_shape)})")
    _, _, left, right = _conv_padding(padding_2d, 1, S, (1, stride), (1, dilation))
    if L + left + right < dilation * (S - 1) + 1:
        raise ValueError(f"weight: kernel length {S} (dilated {dilation * (S - 1) + 1}) is "
                         f"larger than the padded input length {L + left + right}")
    return conv2d_geometry((N, C, 1, L), (K, Cg, 1, S), (1, stride), padding_2d, (1, dilation),
                           groups)


# ----------------------------------------------------------------------------------------
# conv_transpose2d: the input gradient of a conv2d, run forward


@dataclass(frozen=True)
class ConvTranspose2dGeometry:
    """Sizes of one conv_transpose2d: x (N, C_in, H_in, W_in) with w (C_in, C_out/groups, R, S)
    -> y (N, C_out, H_out, W_out), where

        H_out = (H_in - 1)*stride_h - 2*pad_h + dilation_h*(R - 1) + output_padding_h + 1

    ``conv`` is the conv2d whose input gradient this is: its input is y (``conv.x_shape``), its
    weight is w (K = C_in, C = C_out) and its output has the shape of x, except that it is
    one row / column longer per ``output_padding >= stride`` step (PyTorch allows
    output_padding up to max(stride, dilation) - 1); those extra positions of the conv2d's
    output are zeros here, taps no input element feeds.
    """

    conv: Conv2dGeometry
    H_in: int
    W_in: int
    output_padding_h: int
    output_padding_w: int

    @property
    def N(self) -> int:
        return self.conv.N

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        """The transposed convolution's input (N, C_in, H_in, W_in)."""
        return (self.conv.N, self.conv.K, self.H_in, self.W_in)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        """The transposed convolution's output (N, C_out, H_out, W_out)."""
        return self.conv.x_shape

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return self.conv.w_shape

    @property
    def padded(self) -> bool:
        """True when the conv2d's output is larger than x (output_padding >= stride)."""
        return (self.conv.P, self.conv.Q) != (self.H_in, self.W_in)


def conv_transpose_output_size(size: int, pad: int, kernel: int, stride: int, dilation: int,
                               output_padding: int) -> int:
    """Output length of a transposed convolution along one axis (PyTorch's formula)."""
    return (size - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1


def conv_transpose2d_geometry(x_shape, w_shape, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1) -> ConvTranspose2dGeometry:
    """Validate a conv_transpose2d call's sizes (PyTorch's argument order) and return its
    geometry. ``x_shape`` is (N, C_in, H, W), ``w_shape`` (C_in, C_out/groups, R, S); padding
    is an int or a pair (no strings, as in PyTorch)."""
    N, C_in, H, W = _size(x_shape, "input", 4)
    K, C_out_g, R, S = _size(w_shape, "weight", 4)
    stride = pair(stride, "stride", minimum=1)
    if isinstance(padding, str):
        raise TypeError(f"padding must be an int or a pair of ints for conv_transpose2d "
                        f"(no padding strings), got {padding!r}")
    pad = pair(padding, "padding", minimum=0)
    out_pad = pair(output_padding, "output_padding", minimum=0)
    dilation = pair(dilation, "dilation", minimum=1)
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    if min(C_in, H, W) < 1:
        raise ValueError(f"input must have non-zero sizes, got shape {tuple(x_shape)}")
    if min(K, C_out_g, R, S) < 1:
        raise ValueError(f"weight must have non-zero sizes, got shape {tuple(w_shape)}")
    if K != C_in:
        raise ValueError(f"weight shape {tuple(w_shape)} expects {K} input channels "
                         f"(weight.shape[0]), but input has C_in={C_in}")
    if C_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels C_in={C_in}")
    for axis, op, s, d in (("height", out_pad[0], stride[0], dilation[0]),
                           ("width", out_pad[1], stride[1], dilation[1])):
        if op >= s and op >= d:  # PyTorch's rule
            raise ValueError(f"output_padding must be smaller than either stride or dilation, "
                             f"got output_padding={out_pad}, stride={stride}, "
                             f"dilation={dilation} ({axis})")
    H_out = conv_transpose_output_size(H, pad[0], R, stride[0], dilation[0], out_pad[0])
    W_out = conv_transpose_output_size(W, pad[1], S, stride[1], dilation[1], out_pad[1])
    if H_out < 1 or W_out < 1:
        raise ValueError(f"padding {pad} is too large: input {(H, W)} with kernel {(R, S)}, "
                         f"stride {stride}, dilation {dilation} and output_padding {out_pad} "
                         f"gives output size {(H_out, W_out)}")
    conv = conv2d_geometry((N, C_out_g * groups, H_out, W_out), w_shape, stride, pad, dilation,
                           groups)
    # The conv2d's output covers x; it is longer exactly when output_padding >= stride.
    assert conv.P >= H and conv.Q >= W, (conv, x_shape)
    return ConvTranspose2dGeometry(conv=conv, H_in=H, W_in=W, output_padding_h=out_pad[0],
                                   output_padding_w=out_pad[1])


# ----------------------------------------------------------------------------------------
# conv3d (volumes and video, seed 002 §9.7). Vocabulary: input depth D (frames of a video,
# slices of a scan), filter depth T, output depth O; height/width as in conv2d (H, W / R, S /
# P, Q). Padding per side: front/back (depth), top/bottom, left/right.


def triple(value, name: str, *, minimum: int) -> tuple[int, int, int]:
    """An int or a triple of ints (or a 1-tuple) -> a triple of ints, each >= minimum."""
    if _is_int(value):
        values = (int(value),) * 3
    elif isinstance(value, (tuple, list)) and len(value) == 3 and all(_is_int(v) for v in value):
        values = tuple(int(v) for v in value)
    elif isinstance(value, (tuple, list)) and len(value) == 1 and _is_int(value[0]):
        values = (int(value[0]),) * 3
    else:
        raise TypeError(f"{name} must be an int or a triple of ints, got {value!r}")
    if min(values) < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return values


@dataclass(frozen=True)
class Conv3dGeometry:
    """Sizes of one conv3d problem: x (N,C,D,H,W) * w (K,C/groups,T,R,S) -> y (N,K,O,P,Q)."""

    N: int
    C: int
    D: int
    H: int
    W: int
    K: int
    T: int
    R: int
    S: int
    O: int
    P: int
    Q: int
    pad_front: int
    pad_back: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    stride_d: int
    stride_h: int
    stride_w: int
    dilation_d: int
    dilation_h: int
    dilation_w: int
    groups: int

    @property
    def C_per_group(self) -> int:
        return self.C // self.groups

    @property
    def K_per_group(self) -> int:
        return self.K // self.groups

    @property
    def x_shape(self) -> tuple[int, int, int, int, int]:
        return (self.N, self.C, self.D, self.H, self.W)

    @property
    def w_shape(self) -> tuple[int, int, int, int, int]:
        return (self.K, self.C_per_group, self.T, self.R, self.S)

    @property
    def y_shape(self) -> tuple[int, int, int, int, int]:
        return (self.N, self.K, self.O, self.P, self.Q)

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of the forward pass (the same for each gradient)."""
        return (2 * self.N * self.K * self.O * self.P * self.Q
                * self.C_per_group * self.T * self.R * self.S)


def _conv3d_padding(padding, kernel, stride, dilation) -> tuple[int, int, int, int, int, int]:
    """padding argument -> (front, back, top, bottom, left, right), through conv2d's
    ``_conv_padding`` (depth and height as one pair, width as another), so the 'same' /
    'full' formulas stay in one place."""
    T, R, S = kernel
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"padding must be an int, a triple of ints or one of "
                             f"{PADDING_STRINGS}, got {padding!r}")
        if padding == "same" and stride != (1, 1, 1):
            raise ValueError(f"padding='same' is not supported for strided convolutions "
                             f"(stride={stride})")
        depth_height, width = padding, padding
    else:
        pd, ph, pw = triple(padding, "padding", minimum=0)
        depth_height, width = (pd, ph), (pw, pw)
    one = (1, 1)  # 'same' is already checked against the stride above
    front, back, top, bottom = _conv_padding(depth_height, T, R, one, dilation[:2])
    left, right, _, _ = _conv_padding(width, S, S, one, (dilation[2], dilation[2]))
    return front, back, top, bottom, left, right


def conv3d_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1) -> Conv3dGeometry:
    """Validate a conv3d call's sizes and hyper-parameters and return its geometry.

    ``x_shape`` is (N, C, D, H, W) and ``w_shape`` is (K, C/groups, T, R, S); stride, padding
    and dilation are ints or (depth, height, width) triples; padding may also be 'valid',
    'same' (stride 1; the extra plane of an even kernel goes back/bottom/right) or 'full'.
    Raises ValueError or TypeError naming the argument for every invalid combination.
    """
    N, C, D, H, W = _size(x_shape, "input", 5)
    K, Cg, T, R, S = _size(w_shape, "weight", 5)
    stride = triple(stride, "stride", minimum=1)
    dilation = triple(dilation, "dilation", minimum=1)
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    for name, value in (("input channels C", C), ("input depth D", D), ("input height H", H),
                        ("input width W", W)):
        if value < 1:
            raise ValueError(f"input must have non-zero sizes, got {name}={value} "
                             f"(input shape {tuple(x_shape)})")
    for name, value in (("out channels K", K), ("in channels per group", Cg),
                        ("kernel depth T", T), ("kernel height R", R), ("kernel width S", S)):
        if value < 1:
            raise ValueError(f"weight must have non-zero sizes, got {name}={value} "
                             f"(weight shape {tuple(w_shape)})")
    if C % groups:
        raise ValueError(f"groups={groups} must divide the input channels C={C}")
    if K % groups:
        raise ValueError(f"groups={groups} must divide the output channels K={K} "
                         f"(weight shape {tuple(w_shape)})")
    if Cg * groups != C:
        raise ValueError(f"weight shape {tuple(w_shape)} expects {Cg * groups} input channels "
                         f"(weight.shape[1]={Cg} x groups={groups}), but input has C={C}")
    front, back, top, bottom, left, right = _conv3d_padding(padding, (T, R, S), stride, dilation)
    padded = (D + front + back, H + top + bottom, W + left + right)
    effective = tuple(d * (k - 1) + 1 for d, k in zip(dilation, (T, R, S)))
    if any(p < e for p, e in zip(padded, effective)):
        raise ValueError(f"weight: kernel size {(T, R, S)} (dilated {effective}) is larger than "
                         f"the padded input {padded}")
    O = conv_output_size(D, front, back, T, stride[0], dilation[0])
    P = conv_output_size(H, top, bottom, R, stride[1], dilation[1])
    Q = conv_output_size(W, left, right, S, stride[2], dilation[2])
    return Conv3dGeometry(N=N, C=C, D=D, H=H, W=W, K=K, T=T, R=R, S=S, O=O, P=P, Q=Q,
                          pad_front=front, pad_back=back, pad_top=top, pad_bottom=bottom,
                          pad_left=left, pad_right=right, stride_d=stride[0],
                          stride_h=stride[1], stride_w=stride[2], dilation_d=dilation[0],
                          dilation_h=dilation[1], dilation_w=dilation[2], groups=groups)
