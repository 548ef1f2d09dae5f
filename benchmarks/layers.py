"""The layers `gpuconv bench` measures (batch sizes are applied by the benchmark).

* ResNet-50 (torchvision, "v1.5": the stride sits on the 3x3 conv of each stage's first block),
  224x224 input: every distinct conv layer shape, the downsampling 1x1 projections included.
* VGG-16, 224x224: its distinct 3x3 layers (all stride 1, padding 1).
* MobileNet-v1, 224x224: its distinct depthwise 3x3 layers (groups == C == K).
* The ResNet stem max-pool, k3 s2 p1 on (N, 64, 112, 112).

Plain data, no imports from gpuconv: `gpuconv.bench` loads this file by path.
"""

from __future__ import annotations

from collections import namedtuple

ConvLayer = namedtuple("ConvLayer", "network name C H W K R S stride padding groups")
PoolLayer = namedtuple("PoolLayer", "network name C H W kernel stride padding")

BATCHES = (1, 32)


def _resnet50() -> list[ConvLayer]:
    layers = [ConvLayer("resnet50", "conv1 7x7/2 3->64 @224", 3, 224, 224, 64, 7, 7, 2, 3, 1)]
    # (stage, input size, in channels of the first block, width, out channels)
    stages = [("layer1", 56, 64, 64, 256), ("layer2", 56, 256, 128, 512),
              ("layer3", 28, 512, 256, 1024), ("layer4", 14, 1024, 512, 2048)]
    seen = set()
    for stage, size, c_in, width, c_out in stages:
        stride = 1 if stage == "layer1" else 2
        out = size // stride
        candidates = [
            # first block: 1x1 reduce at the input size, 3x3 (strided), 1x1 expand, projection
            (f"{stage} 1x1 {c_in}->{width} @{size}", c_in, size, width, 1, 1, 0),
            (f"{stage} 3x3/{stride} {width}->{width} @{size}", width, size, width, 3, stride, 1),
            (f"{stage} 1x1 {width}->{c_out} @{out}", width, out, c_out, 1, 1, 0),
            (f"{stage} proj 1x1/{stride} {c_in}->{c_out} @{size}", c_in, size, c_out, 1, stride, 0),
            # the other blocks: 1x1 reduce from c_out, 3x3 stride 1 (1x1 expand as above)
            (f"{stage} 1x1 {c_out}->{width} @{out}", c_out, out, width, 1, 1, 0),
            (f"{stage} 3x3 {width}->{width} @{out}", width, out, width, 3, 1, 1),
        ]
        for name, c, hw, k, r, s, p in candidates:
            key = (c, hw, k, r, s, p)
            if key in seen:  # layer1's projection is the 64->256 1x1 expand again
                continue
            seen.add(key)
            layers.append(ConvLayer("resnet50", name, c, hw, hw, k, r, r, s, p, 1))
    return layers


def _vgg16() -> list[ConvLayer]:
    shapes = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56),
              (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 14)]
    return [ConvLayer("vgg16", f"3x3 {c}->{k} @{hw}", c, hw, hw, k, 3, 3, 1, 1, 1)
            for c, k, hw in shapes]


def _mobilenet_v1_depthwise() -> list[ConvLayer]:
    # (channels, input size, stride) of each distinct depthwise 3x3 layer
    shapes = [(32, 112, 1), (64, 112, 2), (128, 56, 1), (128, 56, 2), (256, 28, 1),
              (256, 28, 2), (512, 14, 1), (512, 14, 2), (1024, 7, 1)]
    return [ConvLayer("mobilenet_v1", f"dw 3x3/{s} {c} @{hw}", c, hw, hw, c, 3, 3, s, 1, c)
            for c, hw, s in shapes]


RESNET50 = _resnet50()
VGG16 = _vgg16()
MOBILENET_V1_DEPTHWISE = _mobilenet_v1_depthwise()
CONV_LAYERS = RESNET50 + VGG16 + MOBILENET_V1_DEPTHWISE
POOL_LAYERS = [PoolLayer("resnet50", "stem max-pool 3x3/2 64 @112", 64, 112, 112, 3, 2, 1)]

# --quick: one layer of each kind
QUICK_CONV = [RESNET50[2], RESNET50[5], VGG16[5], MOBILENET_V1_DEPTHWISE[2]]
QUICK_BATCHES = (32,)
