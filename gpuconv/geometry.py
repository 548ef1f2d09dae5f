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
