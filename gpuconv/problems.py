"""The curated problem list: every op is checked over these geometries.

Each entry says which edge it covers. The list lives in the package (not only under
``tests/``) because ``gpuconv check`` runs it from an installed wheel too. Sizes stay small
enough that the whole matrix runs on the CPU runtime in seconds; real network layers use a
batch of 1-2 and a few channels fewer where that keeps the edge the layer is here for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvProblem:
    name: str
    why: str
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        return (self.K, self.C // self.groups, self.R, self.S)

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


@dataclass(frozen=True)
class PoolProblem:
    name: str
    why: str
    N: int
    C: int
    H: int
    W: int
    kernel_size: object
    stride: object = None
    padding: object = 0
    dilation: object = 1
    ceil_mode: bool = False

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def kwargs(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    dilation=self.dilation, ceil_mode=self.ceil_mode)


CONV_PROBLEMS = [
    ConvProblem("tiny_3x3", "smallest useful case: one 3x3 filter, valid padding",
                N=1, C=1, H=5, W=5, K=1, R=3, S=3),
    ConvProblem("pointwise_1x1", "1x1 filter: a pure channel mix (a GEMM)",
                N=2, C=8, H=7, W=7, K=12, R=1, S=1),
    ConvProblem("odd_sizes", "odd, prime sizes everywhere: no size is a multiple of any tile",
                N=3, C=5, H=13, W=11, K=7, R=3, S=5, padding=(1, 2)),
    ConvProblem("rect_kernel", "non-square kernel and input, no padding",
                N=2, C=3, H=9, W=17, K=4, R=2, S=5),
    ConvProblem("stride2_pad1", "stride 2 with padding 1 (downsampling layer)",
                N=2, C=6, H=15, W=14, K=10, R=3, S=3, stride=2, padding=1),
    ConvProblem("mixed_stride", "different strides per axis (1, 2)",
                N=2, C=4, H=10, W=13, K=6, R=3, S=3, stride=(1, 2), padding=1),
    ConvProblem("pad_gt_stride", "padding 3 larger than stride 2 and than half the kernel",
                N=1, C=3, H=8, W=9, K=5, R=3, S=3, stride=2, padding=3),
    ConvProblem("dilation2", "dilated 3x3 (atrous), dilation (2, 3)",
                N=2, C=4, H=16, W=15, K=5, R=3, S=3, dilation=(2, 3), padding=2),
    ConvProblem("same_even", "padding='same' with an even kernel: asymmetric padding (extra bottom/right)",
                N=2, C=3, H=9, W=8, K=4, R=4, S=2, padding="same"),
    ConvProblem("same_dilated", "padding='same' with dilation",
                N=1, C=4, H=11, W=10, K=3, R=3, S=4, padding="same", dilation=2),
    ConvProblem("full", "padding='full': every partial overlap, output H+R-1",
                N=2, C=2, H=6, W=7, K=3, R=3, S=4, padding="full"),
    ConvProblem("groups", "grouped convolution, 3 groups",
                N=2, C=6, H=9, W=9, K=9, R=3, S=3, padding=1, groups=3),
    ConvProblem("depthwise", "depthwise: groups == C == K",
                N=2, C=8, H=12, W=11, K=8, R=3, S=3, padding=1, groups=8),
    ConvProblem("depthwise_mult", "depthwise with channel multiplier 2, stride 2",
                N=1, C=4, H=13, W=12, K=8, R=5, S=5, padding=2, stride=2, groups=4),
    ConvProblem("first_layer_c3", "C=3 image input with a 7x7 stride-2 stem filter",
                N=1, C=3, H=31, W=29, K=8, R=7, S=7, stride=2, padding=3),
    ConvProblem("batch1_nobias", "batch 1, no bias",
                N=1, C=16, H=8, W=8, K=16, R=3, S=3, padding=1, bias=False),
    ConvProblem("kernel_eq_input", "kernel as large as the input: a 1x1 output",
                N=3, C=4, H=5, W=6, K=7, R=5, S=6),
    ConvProblem("resnet_3x3_layer", "a ResNet-50 conv2_x 3x3 layer shape (64->64 at 14x14 here, batch 2)",
                N=2, C=64, H=14, W=14, K=64, R=3, S=3, padding=1),
    ConvProblem("resnet_downsample_1x1", "a ResNet-50 1x1 stride-2 projection shortcut",
                N=2, C=32, H=14, W=14, K=64, R=1, S=1, stride=2),
    ConvProblem("vgg_wide", "a VGG-style layer: many output channels",
                N=1, C=16, H=10, W=10, K=96, R=3, S=3, padding=1),
    ConvProblem("alexnet_stem_small", "AlexNet's first layer shape: 11x11 stride 4 (input 63x63)",
                N=1, C=3, H=63, W=63, K=8, R=11, S=11, stride=4),
]

POOL_PROBLEMS = [
    PoolProblem("k2s2", "the classic 2x2 stride-2 pool", N=2, C=3, H=8, W=8, kernel_size=2),
    PoolProblem("odd_k2s2", "odd input: the last row/column is dropped", N=2, C=2, H=9, W=7,
                kernel_size=2),
    PoolProblem("k3s2_overlap", "overlapping windows (ResNet stem shape): backward accumulates",
                N=2, C=4, H=15, W=14, kernel_size=3, stride=2, padding=1),
    PoolProblem("k3s1", "stride 1: each input in up to 9 windows", N=1, C=3, H=7, W=9,
                kernel_size=3, stride=1, padding=1),
    PoolProblem("ceil_mode", "ceil_mode keeps a partial last window", N=2, C=2, H=10, W=11,
                kernel_size=3, stride=2, ceil_mode=True),
    PoolProblem("ceil_mode_correction", "ceil_mode whose last window would start in the padding "
                "(H=5, k=2, s=2, p=1 -> 3)", N=1, C=2, H=5, W=5, kernel_size=2, stride=2,
                padding=1, ceil_mode=True),
    PoolProblem("rect_mixed", "rectangular kernel, mixed stride and padding", N=2, C=3, H=12,
                W=10, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    PoolProblem("dilation", "dilated pooling window", N=1, C=3, H=13, W=12, kernel_size=3,
                stride=2, padding=1, dilation=2),
    PoolProblem("global", "kernel as large as the input: global max-pool", N=2, C=5, H=6, W=7,
                kernel_size=(6, 7)),
    PoolProblem("resnet_stem", "ResNet stem max-pool k3 s2 p1 (112x112 scaled to 28x28)",
                N=1, C=8, H=28, W=28, kernel_size=3, stride=2, padding=1),
]


# The GPU self-check's problems (gpuconv.kernels.self_check_failure): each version of the
# conv2d and max-pool kernels runs them all once on a GPU before its first use. Two per family,
# small, between them reaching the kernels' main paths: whole and partial tiles, 16-byte pieces
# and element loads (6 channels per group), a bias and none, several bgrad splits (900 rows),
# max-pool's vector stores (8 outputs a row) and its element-wise rows (14).
SELF_CHECK_CONV = [
    ConvProblem("check_resnet_3x3", "a ResNet 3x3 layer, batch 2: 4 row tiles (one partial), "
                "whole reduction tiles, 16-byte pieces", N=2, C=64, H=14, W=14, K=64, R=3, S=3,
                padding=1),
    ConvProblem("check_grouped_odd", "2 groups of 6 channels and 10 filters, 900 rows: partial "
                "reduction tiles, element loads, no bias, 3 bgrad splits", N=4, C=12, H=15,
                W=15, K=20, R=3, S=3, padding=1, groups=2, bias=False),
]
SELF_CHECK_POOL = [
    PoolProblem("check_stem", "ResNet stem max-pool k3 s2 p1 at 28x28: 14 outputs a row",
                N=1, C=8, H=28, W=28, kernel_size=3, stride=2, padding=1),
    PoolProblem("check_k2s2", "2x2 stride 2 at 16x16: 8 outputs a row (vector stores)", N=2,
                C=3, H=16, W=16, kernel_size=2),
]

# ----------------------------------------------------------------------------------------
# avg-pool / lp-pool (gpuconv.avg_pool2d, gpuconv.lp_pool2d) and separable conv2d


@dataclass(frozen=True)
class AvgPoolProblem:
    name: str
    why: str
    N: int
    C: int
    H: int
    W: int
    kernel_size: object
    stride: object = None
    padding: object = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: object = None

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def kwargs(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
                    divisor_override=self.divisor_override)


AVGPOOL_PROBLEMS = [
    AvgPoolProblem("k2s2", "the classic 2x2 stride-2 pool; odd width drops the last column",
                   N=2, C=3, H=8, W=9, kernel_size=2),
    AvgPoolProblem("k3s2_pad", "overlapping windows with padding 1, padding cells counted",
                   N=2, C=2, H=11, W=10, kernel_size=3, stride=2, padding=1),
    AvgPoolProblem("k3s2_pad_exclude", "the same without count_include_pad: edge windows "
                   "divide by their input cells only", N=2, C=2, H=11, W=10, kernel_size=3,
                   stride=2, padding=1, count_include_pad=False),
    AvgPoolProblem("ceil_past_padding", "ceil_mode window running past the padded input: "
                   "PyTorch clips the divisor there (H=6, k3, s2, p1: last window 2 rows)",
                   N=1, C=3, H=6, W=8, kernel_size=3, stride=2, padding=1, ceil_mode=True),
    AvgPoolProblem("ceil_no_pad", "ceil_mode partial window without padding (lp-pool's case)",
                   N=2, C=2, H=9, W=7, kernel_size=3, stride=2, ceil_mode=True),
    AvgPoolProblem("rect_mixed_override", "rectangular kernel, mixed stride/padding, "
                   "divisor_override=5", N=2, C=3, H=10, W=12, kernel_size=(3, 2),
                   stride=(2, 1), padding=(1, 0), divisor_override=5),
    AvgPoolProblem("k3s1", "stride 1: each input in up to 9 windows (backward gathers 9)",
                   N=1, C=2, H=7, W=9, kernel_size=3, stride=1, padding=1,
                   count_include_pad=False),
    AvgPoolProblem("global", "kernel as large as the input: global average pool",
                   N=2, C=5, H=6, W=7, kernel_size=(6, 7)),
]

# lp_pool2d has no padding: the avg-pool problems without it, with these norms.
LPPOOL_NORMS = (2, 3)
LPPOOL_PROBLEMS = [p for p in AVGPOOL_PROBLEMS if p.padding == 0 and p.divisor_override is None]

SEPARABLE_PROBLEMS = [
    ConvProblem("sep_sobel_depthwise", "per-channel 3x3 filter (groups=C), padding 1",
                N=2, C=3, H=9, W=10, K=3, R=3, S=3, padding=1, groups=3),
    ConvProblem("sep_mixing_strided", "channel mixing in the R x 1 pass, stride 2, 5x3",
                N=2, C=4, H=13, W=11, K=6, R=5, S=3, stride=2, padding=(2, 1)),
    ConvProblem("sep_same_dilated", "padding='same' with an even kernel and dilation",
                N=1, C=2, H=10, W=9, K=3, R=4, S=2, padding="same", dilation=2),
    ConvProblem("sep_grouped_full", "2 groups, padding='full', mixed stride, no bias",
                N=2, C=4, H=7, W=8, K=4, R=3, S=4, padding="full", stride=(1, 2), groups=2,
                bias=False),
    ConvProblem("sep_wide_15", "a 15-wide separable kernel (the benchmark's case), per channel",
                N=1, C=2, H=20, W=21, K=2, R=15, S=15, padding=7, groups=2),
]


# ----------------------------------------------------------------------------------------
# tiled / locally connected conv2d (gpuconv.tiled_conv2d, gpuconv.local_conv2d)


@dataclass(frozen=True)
class TiledConvProblem:
    """A tiled conv2d: weight (TH, TW, K, C, R, S). ``tile=None`` is a locally connected
    layer: the tile is the output size (P, Q). ``bias``: None, 'channel' (K,) or 'tile'
    (K, TH, TW), i.e. (K, P, Q) for a locally connected layer."""

    name: str
    why: str
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    tile: object = None
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    bias: object = "tile"

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)

    @property
    def w_shape(self):
        """(TH, TW, K, C, R, S), with the output size as the tile when ``tile`` is None."""
        from .geometry import conv2d_geometry
        if self.tile is None:
            g = conv2d_geometry(self.x_shape, (self.K, self.C, self.R, self.S), **self.kwargs)
            tile = (g.P, g.Q)
        else:
            tile = tuple(self.tile)
        return tile + (self.K, self.C, self.R, self.S)


TILED_PROBLEMS = [
    TiledConvProblem("tile_1x1", "tile (1, 1) with a (K,) bias: ordinary convolution",
                     N=2, C=3, H=7, W=6, K=4, R=3, S=3, tile=(1, 1), padding=1, bias="channel"),
    TiledConvProblem("tile_2x3_odd", "tile (2, 3) dividing neither P=7 nor Q=10; odd sizes",
                     N=2, C=2, H=9, W=11, K=3, R=3, S=2, tile=(2, 3)),
    TiledConvProblem("tile_mixed", "tile (3, 2), stride (1, 2), dilation (2, 1), padding (2, 1)",
                     N=2, C=2, H=10, W=9, K=3, R=3, S=3, tile=(3, 2), stride=(1, 2),
                     padding=(2, 1), dilation=(2, 1)),
    TiledConvProblem("tile_same_even", "padding='same' with an even kernel (asymmetric), tile 2x2",
                     N=1, C=3, H=6, W=7, K=2, R=4, S=2, tile=(2, 2), padding="same",
                     bias="channel"),
    TiledConvProblem("tile_past_output", "tile (4, 5) larger than the 3x3 output: unused banks "
                     "get zero gradient", N=2, C=2, H=5, W=5, K=2, R=3, S=3, tile=(4, 5)),
    TiledConvProblem("local_valid", "locally connected, valid padding, (K, P, Q) bias",
                     N=2, C=3, H=6, W=7, K=2, R=3, S=3),
    TiledConvProblem("local_strided", "locally connected, stride 2, padding 1, no bias",
                     N=1, C=2, H=9, W=8, K=3, R=3, S=3, stride=2, padding=1, bias=None),
    TiledConvProblem("local_full", "locally connected, padding='full', (K,) bias",
                     N=2, C=2, H=4, W=5, K=2, R=2, S=3, padding="full", bias="channel"),
]
LOCAL_PROBLEMS = [p for p in TILED_PROBLEMS if p.tile is None]


# ----------------------------------------------------------------------------------------
# conv1d (conv2d with H = 1) and conv_transpose2d (conv2d dgrad run forward)


@dataclass(frozen=True)
class Conv1dProblem:
    name: str
    why: str
    N: int
    C: int
    L: int
    K: int
    S: int
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True
    flip: bool = False

    @property
    def x_shape(self):
        return (self.N, self.C, self.L)

    @property
    def w_shape(self):
        return (self.K, self.C // self.groups, self.S)

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups, flip=self.flip)


@dataclass(frozen=True)
class ConvTranspose2dProblem:
    name: str
    why: str
    N: int
    C_in: int
    H: int
    W: int
    C_out: int
    R: int
    S: int
    stride: object = 1
    padding: object = 0
    output_padding: object = 0
    groups: int = 1
    dilation: object = 1
    bias: bool = True

    @property
    def x_shape(self):
        return (self.N, self.C_in, self.H, self.W)

    @property
    def w_shape(self):
        return (self.C_in, self.C_out // self.groups, self.R, self.S)

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding,
                    output_padding=self.output_padding, groups=self.groups,
                    dilation=self.dilation)


CONV1D_PROBLEMS = [
    Conv1dProblem("echo_full_flip", "seed 001's echo: a 4-tap decay as a true convolution with "
                  "padding='full' (numpy.convolve)", N=1, C=1, L=14, K=1, S=4, padding="full",
                  flip=True, bias=False),
    Conv1dProblem("valid_3tap", "a 3-tap filter, valid padding, several channels",
                  N=2, C=3, L=17, K=4, S=3),
    Conv1dProblem("same_even_flip", "'same' with an even kernel (extra element right), flipped",
                  N=2, C=2, L=9, K=3, S=4, padding="same", flip=True),
    Conv1dProblem("stride2_dilation2", "stride 2, dilation 2, padding 3 > stride",
                  N=2, C=4, L=23, K=5, S=3, stride=2, padding=3, dilation=2),
    Conv1dProblem("groups_mult2", "4 groups with channel multiplier 2, flipped",
                  N=1, C=4, L=16, K=8, S=5, padding=2, groups=4, flip=True),
    Conv1dProblem("wide", "32 -> 32 channels: large enough for the implicit-GEMM kernels",
                  N=2, C=32, L=40, K=32, S=3, padding=1),
]

CONV_TRANSPOSE2D_PROBLEMS = [
    ConvTranspose2dProblem("plain", "stride 1, no padding: output H + R - 1 (a 'full' conv)",
                           N=2, C_in=3, H=5, W=6, C_out=4, R=3, S=3),
    ConvTranspose2dProblem("upsample_k4s2p1", "DCGAN-style 4x4 stride-2 padding-1 upsampling: "
                           "output exactly 2H x 2W", N=2, C_in=8, H=6, W=7, C_out=4, R=4, S=4,
                           stride=2, padding=1),
    ConvTranspose2dProblem("output_padding", "k3 s2 p1 with output_padding 1: the input size of "
                           "a stride-2 conv2d of an even size", N=1, C_in=4, H=5, W=5, C_out=3,
                           R=3, S=3, stride=2, padding=1, output_padding=1),
    ConvTranspose2dProblem("mixed", "stride (2, 3), padding (1, 2), output_padding (1, 2), "
                           "dilation (2, 1)", N=2, C_in=3, H=4, W=5, C_out=5, R=3, S=4,
                           stride=(2, 3), padding=(1, 2), output_padding=(1, 2), dilation=(2, 1)),
    ConvTranspose2dProblem("op_ge_stride", "output_padding 1 with stride 1 (allowed by dilation "
                           "2): x is zero-extended by one row/column for the dgrad kernel",
                           N=2, C_in=2, H=5, W=4, C_out=3, R=3, S=2, dilation=2,
                           output_padding=1),
    ConvTranspose2dProblem("groups", "3 groups, stride 2", N=2, C_in=6, H=5, W=5, C_out=9, R=3,
                           S=3, stride=2, groups=3),
    ConvTranspose2dProblem("wide", "32 -> 32 channels, stride 2: the implicit-GEMM kernels",
                           N=1, C_in=32, H=7, W=7, C_out=32, R=3, S=3, stride=2, padding=1,
                           bias=False),
]


# ----------------------------------------------------------------------------------------
# conv3d (seed 002 §9.7: volumes and video). Input depth D, filter depth T, output depth O.


@dataclass(frozen=True)
class Conv3dProblem:
    name: str
    why: str
    N: int
    C: int
    D: int
    H: int
    W: int
    K: int
    T: int
    R: int
    S: int
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True

    @property
    def x_shape(self):
        return (self.N, self.C, self.D, self.H, self.W)

    @property
    def w_shape(self):
        return (self.K, self.C // self.groups, self.T, self.R, self.S)

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


CONV3D_PROBLEMS = [
    Conv3dProblem("pointwise_1x1x1", "1x1x1 filter: a pure channel mix at every voxel",
                  N=2, C=6, D=3, H=5, W=4, K=5, T=1, R=1, S=1),
    Conv3dProblem("odd_sizes", "odd, prime sizes, a different kernel size and padding per axis",
                  N=2, C=3, D=5, H=7, W=11, K=5, T=3, R=3, S=2, padding=(1, 0, 1)),
    Conv3dProblem("stride_1_2_2", "stride (1, 2, 2): spatial downsampling that keeps every frame "
                  "(C3D / I3D style)", N=2, C=4, D=5, H=9, W=8, K=6, T=3, R=3, S=3,
                  stride=(1, 2, 2), padding=1),
    Conv3dProblem("dilation", "dilation (2, 1, 3) with matching padding",
                  N=1, C=3, D=7, H=6, W=9, K=4, T=3, R=3, S=3, dilation=(2, 1, 3),
                  padding=(2, 1, 3)),
    Conv3dProblem("groups", "grouped convolution, 3 groups",
                  N=2, C=6, D=4, H=6, W=5, K=9, T=3, R=3, S=3, padding=1, groups=3),
    Conv3dProblem("depthwise_stride_d", "depthwise with channel multiplier 2, stride 2 in depth "
                  "only", N=1, C=4, D=7, H=6, W=6, K=8, T=3, R=3, S=3, stride=(2, 1, 1),
                  padding=1, groups=4),
    Conv3dProblem("same_even", "padding='same' with even kernel sizes: asymmetric padding "
                  "(extra back/bottom/right)", N=2, C=3, D=5, H=6, W=7, K=4, T=2, R=4, S=2,
                  padding="same"),
    Conv3dProblem("full", "padding='full': every partial overlap, output D+T-1 x H+R-1 x W+S-1",
                  N=1, C=2, D=3, H=4, W=5, K=3, T=2, R=3, S=2, padding="full"),
    Conv3dProblem("kernel_eq_input", "kernel as large as the input: a 1x1x1 output, no bias",
                  N=2, C=3, D=3, H=4, W=5, K=4, T=3, R=4, S=5, bias=False),
    Conv3dProblem("video_layer", "a small video layer: 4 RGB frames of 16x16, 8 filters 3x3x3 "
                  "(C3D's first layer, scaled down)", N=1, C=3, D=4, H=16, W=16, K=8, T=3,
                  R=3, S=3, padding=1),
]
