"""The curated problem list: every op is checked over these geometries.

Each entry says which edge it covers. The list lives in the package (not only under
``tests/``) because ``gpuconv check`` runs it from an installed wheel too. Sizes stay small
enough that the whole matrix runs on the CPU runtime in seconds; real network layers use a
batch of 1-2 and a few channels fewer where that keeps the edge the layer is here for.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
